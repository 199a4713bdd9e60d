//! The HTML report in a real browser: headless Chromium (Debian's
//! `chromium`, installed by `.ci/setup`) with networking off opens the
//! report of a fixture; the screenshot is not blank, the page asks for
//! nothing over the network, and the SVG as Chromium parsed it has one
//! arrow per conversation and one dashed arrow per missing expectation.
//!
//! Networking off: Chromium runs in a network namespace of its own
//! (`unshare -n`) when that is allowed (root, as in CI), and always with a
//! dead proxy and a resolver that resolves nothing. Requests are read from
//! Chromium's NetLog: those the page starts carry the page's origin as
//! initiator; Chromium's own (component updates, clock) carry none. A
//! control page with an external image proves the detection works.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Chromium's command: $KSCFLOW_CHROMIUM, else `chromium` on the PATH.
fn chromium() -> String {
    let name = std::env::var("KSCFLOW_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&name).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "{name} not found: run .ci/setup (it installs Debian's chromium) or set KSCFLOW_CHROMIUM");
    name
}

/// What one headless run gave.
struct Visit {
    png: Vec<u8>,
    dom: String,
    /// URLs of the requests the page itself started.
    page_requests: Vec<String>,
}

/// Opens `page` in headless Chromium, offline: a screenshot, the DOM as
/// parsed, and the NetLog's page-initiated requests.
fn visit(page: &Path, work: &Path) -> Visit {
    let browser = chromium();
    let offline_ns = Command::new("unshare").args(["-n", "true"]).status().is_ok_and(|s| s.success());
    let run = |extra: &[String], profile: &str| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--proxy-server=socks5://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1280,1600",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", work.join(profile).display()));
        args.extend(extra.iter().cloned());
        args.push(format!("file://{}", page.display()));
        let mut cmd = if offline_ns {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(&browser);
            c
        } else {
            Command::new(&browser)
        };
        let out = cmd.args(&args).output().unwrap();
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let shot = work.join("shot.png");
    let netlog = work.join("netlog.json");
    run(
        &[
            format!("--screenshot={}", shot.display()),
            format!("--log-net-log={}", netlog.display()),
            "--net-log-capture-mode=Everything".into(),
        ],
        "profile-shot",
    );
    let dom = String::from_utf8(run(&["--dump-dom".into()], "profile-dom").stdout).unwrap();
    let log: Value = serde_json::from_slice(&std::fs::read(&netlog).unwrap()).unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64().unwrap();
    let page_requests = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str().is_some_and(|i| i != "not an origin"))
        .map(|e| e["params"]["url"].as_str().unwrap_or_default().to_string())
        .collect();
    Visit { png: std::fs::read(&shot).unwrap(), dom, page_requests }
}

/// (pixels not near white, distinct colours) of a PNG.
fn ink(png_bytes: &[u8]) -> (usize, usize) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "a colour screenshot");
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0;
    for px in buf[..info.buffer_size()].chunks(channels) {
        colours.insert((px[0], px[1], px[2]));
        if px[..3].iter().any(|&c| c < 200) {
            inked += 1;
        }
    }
    (inked, colours.len())
}

#[test]
fn the_html_report_renders_offline_with_its_arrows_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (html, json) = (d.join("report.html"), d.join("report.json"));
    let inv = fixture("missing-agent.inventory.toml");
    for (format, out) in [("html", &html), ("json", &json)] {
        let o = Command::new(env!("CARGO_BIN_EXE_kscflow"))
            .args(["audit", "-i", inv.to_str().unwrap(), fixture("missing-agent.pcap").to_str().unwrap()])
            .args(["--format", format, "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let conversations = v["flows"].as_array().unwrap().len();
    let missing = v["missing"].as_array().unwrap().len();
    assert!(conversations > 0 && missing > 0, "the fixture has both");

    // The control: a page that loads an image from elsewhere is caught.
    let control = d.join("control.html");
    std::fs::write(&control, "<html><body><img src=\"http://example.invalid/x.png\"></body></html>").unwrap();
    let c = visit(&control, &d.join("control"));
    assert_eq!(c.page_requests, ["http://example.invalid/x.png"], "the NetLog shows a page's requests");

    let r = visit(&html, &d.join("report"));
    assert!(r.page_requests.is_empty(), "the report asked for {:?}", r.page_requests);
    let (inked, colours) = ink(&r.png);
    assert!(inked > 20_000, "a blank screenshot: {inked} inked pixels");
    assert!(colours > 50, "a blank screenshot: {colours} colours");
    // The SVG as Chromium parsed it.
    let arrows = r.dom.matches("<path class=\"arrow ").count();
    let dashed = r.dom.matches("<path class=\"arrow missing\"").count();
    assert_eq!(arrows - dashed, conversations, "one arrow per conversation");
    assert_eq!(dashed, missing, "one dashed arrow per missing expectation");
    assert!(r.dom.contains("</svg>") && !r.dom.contains("<script"));
}
