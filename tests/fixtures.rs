//! Every fixture of `fixtures/` through the real binary: each
//! `NAME.expect.toml` lists every conversation (with its verdict and rule)
//! and every missing entry the audit must report, and its exit status.
//! The lists must match exactly: an extra or a missing conversation fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    capture: Vec<String>,
    inventory: Option<String>,
    exit: i32,
    #[serde(default)]
    flow: Vec<ExpectFlow>,
    #[serde(default)]
    missing: Vec<ExpectMissing>,
    /// Optional: skipped-packet counts by reason that must be present.
    #[serde(default)]
    skipped: BTreeMap<String, u64>,
    /// Optional: the capture is damaged and the report must say so.
    #[serde(default)]
    damaged: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFlow {
    client: String,
    server: String,
    transport: String,
    server_port: u16,
    verdict: String,
    rule: Option<String>,
    connections: Option<u64>,
    tls: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectMissing {
    host: String,
    expectation: String,
    status: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn expect_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    for dir in [fixtures(), fixtures().join("broken")] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.to_string_lossy().ends_with(".expect.toml") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn check(expect_path: &Path) -> Result<(), String> {
    // Paths in expect files are relative to fixtures/.
    let dir = fixtures();
    let text = std::fs::read_to_string(expect_path).unwrap();
    let exp: Expect = toml::from_str(&text).map_err(|e| format!("bad expect file: {e}"))?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kscflow"));
    cmd.arg("audit").arg("--format").arg("json").arg("--no-progress");
    if let Some(inv) = &exp.inventory {
        cmd.arg("--inventory").arg(dir.join(inv));
    }
    for c in &exp.capture {
        cmd.arg(dir.join(c));
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") {
        return Err(format!("panic: {stderr}"));
    }
    let code = out.status.code().unwrap_or(-1);
    if exp.exit == 2 {
        // The run cannot be done: exit 2, a message, no report.
        return match (code, stderr.trim().is_empty(), out.stdout.is_empty()) {
            (2, false, true) => Ok(()),
            _ => Err(format!("expected exit 2 with a message and no report; got exit {code}, stderr {stderr:?}")),
        };
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("exit {code}, no JSON report ({e}); stderr: {stderr}"))?;
    let mut problems = Vec::new();
    if code != exp.exit {
        problems.push(format!("exit status {code}, expected {}", exp.exit));
    }

    // Conversations: exact set, then the fields each entry pins.
    let key = |c: &str, s: &str, t: &str, p: u64| format!("{t} {c} → {s}:{p}");
    let got: BTreeMap<String, &serde_json::Value> = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                key(
                    f["client"].as_str().unwrap(),
                    f["server"].as_str().unwrap(),
                    f["transport"].as_str().unwrap(),
                    f["server_port"].as_u64().unwrap(),
                ),
                f,
            )
        })
        .collect();
    let mut wanted = BTreeMap::new();
    for f in &exp.flow {
        wanted.insert(key(&f.client, &f.server, &f.transport, f.server_port as u64), f);
    }
    for (k, f) in &wanted {
        let Some(g) = got.get(k) else {
            problems.push(format!("conversation {k} ({}) not reported", f.verdict));
            continue;
        };
        if g["verdict"] != f.verdict.as_str() {
            problems.push(format!("{k}: verdict {} (reason: {}), expected {}", g["verdict"], g["reason"], f.verdict));
        }
        let grule = g["rule"].as_str().map(String::from);
        if grule != f.rule {
            problems.push(format!("{k}: rule {:?}, expected {:?} ({})", grule, f.rule, g["reason"]));
        }
        if let Some(n) = f.connections {
            if g["connections"].as_u64() != Some(n) {
                problems.push(format!("{k}: {} connections, expected {n}", g["connections"]));
            }
        }
        if let Some(v) = &f.tls {
            if g["tls"]["version"].as_str() != Some(v.as_str()) {
                problems.push(format!("{k}: TLS {}, expected {v}", g["tls"]));
            }
        }
    }
    for (k, g) in &got {
        if !wanted.contains_key(k) {
            problems.push(format!("unexpected conversation in the report: {k} {} ({})", g["verdict"], g["reason"]));
        }
    }

    // Missing: exact set of (host, expectation, status).
    let got_m: Vec<(String, String, String)> = report["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["host"].as_str().unwrap().into(),
                m["expectation"].as_str().unwrap().into(),
                m["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want_m: Vec<(String, String, String)> =
        exp.missing.iter().map(|m| (m.host.clone(), m.expectation.clone(), m.status.clone())).collect();
    let mut got_sorted = got_m.clone();
    got_sorted.sort();
    want_m.sort();
    if got_sorted != want_m {
        problems.push(format!("missing entries {got_sorted:?}, expected {want_m:?}"));
    }

    for (reason, n) in &exp.skipped {
        let g = report["capture"]["skipped"][reason].as_u64().unwrap_or(0);
        if g != *n {
            problems.push(format!("skipped {reason}: {g}, expected {n}"));
        }
    }
    let damaged = report["capture"]["files"].as_array().unwrap().iter().any(|f| !f["error"].is_null());
    if damaged != exp.damaged {
        problems.push(format!("damaged = {damaged}, expected {}", exp.damaged));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

#[test]
fn every_fixture_gives_its_expected_verdicts() {
    let files = expect_files();
    assert!(files.len() >= 20, "expected the fixture set in fixtures/, found {} expect files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        match check(f) {
            Ok(()) => eprintln!("ok   {}", f.file_name().unwrap().to_string_lossy()),
            Err(e) => failures.push(format!("{}:\n    {e}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures disagree:\n{}", failures.len(), files.len(), failures.join("\n"));
}
