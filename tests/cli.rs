//! The command line as a user meets it: exit statuses (DESIGN.md: 0 nothing
//! flagged, 1 findings, 2 could not run), clear messages for bad input,
//! never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

mod common;
use common::{fixture, kscflow, run, stderr, stdout};

/// Exit 2, a message mentioning `needle`, and no panic.
fn assert_refused(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}\nstdout: {}", stdout(o));
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A minimal classic pcap (µs, little-endian) with the given link type.
fn pcap(linktype: u32, packets: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&linktype.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        v.extend_from_slice(&(1_768_467_600u32 + i as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(p);
    }
    v
}

/// A raw-IP TCP SYN from 10.0.1.20:50000 to 10.0.0.10:13000.
fn syn_13000() -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 1, 20], [10, 0, 0, 10], 64)
        .tcp(50000, 13000, 7, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

#[test]
fn garbage_empty_and_gzip_files_exit_2_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let garbage = write(d.path(), "garbage.pcap", b"this is not a capture at all, just text\n");
    let empty = write(d.path(), "empty.pcap", b"");
    let gz = write(d.path(), "x.pcap.gz", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4]);
    for reader in ["fast", "libpcap"] {
        assert_refused(&run(&["audit", "--reader", reader, garbage.to_str().unwrap()]), "garbage.pcap");
        assert_refused(&run(&["audit", "--reader", reader, empty.to_str().unwrap()]), "empty (0 bytes)");
        assert_refused(&run(&["audit", "--reader", reader, gz.to_str().unwrap()]), "gzip-compressed");
    }
    assert_refused(&run(&["audit", "/nonexistent/capture.pcap"]), "/nonexistent/capture.pcap");
}

#[test]
fn truncated_capture_keeps_what_came_before_and_says_where() {
    let d = tempfile::tempdir().unwrap();
    let syn = syn_13000();
    let mut bytes = pcap(101, &[&syn, &syn, &syn]);
    let cut = bytes.len() - 10; // inside the last record
    bytes.truncate(cut);
    let f = write(d.path(), "cut.pcap", &bytes);
    for reader in ["fast", "libpcap"] {
        let o = run(&["audit", "--reader", reader, "--format", "json", f.to_str().unwrap()]);
        assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["capture"]["packets"], 2, "{reader}: the two whole packets are kept");
        let err = r["capture"]["files"][0]["error"].as_str().unwrap_or_default().to_string();
        assert!(err.contains("stopped after packet 2"), "{reader}: {err}");
        assert_eq!(r["flows"][0]["server_port"], 13000);
        assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    }
}

#[test]
fn unsupported_link_type_alone_exits_2_and_beside_others_is_a_counted_skip() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "user0.pcap", &pcap(147, &[b"\x01\x02\x03\x04", b"\x05\x06"]));
    for reader in ["fast", "libpcap"] {
        assert_refused(&run(&["audit", "--reader", reader, f.to_str().unwrap()]), "link type 147 is not decoded");
    }
    let ok = write(d.path(), "raw.pcap", &pcap(101, &[&syn_13000()]));
    let o = run(&["audit", "--format", "json", ok.to_str().unwrap(), f.to_str().unwrap()]);
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["capture"]["skipped"]["unsupported_link_type"], 2);
    assert_eq!(r["capture"]["files"][1]["link_types"][0], "LINKTYPE_147 (not decoded)");
    assert_eq!(r["flows"][0]["server_port"], 13000);
}

#[test]
fn broken_rules_and_inventory_exit_2_with_location() {
    let d = tempfile::tempdir().unwrap();
    let rules = write(d.path(), "r.toml", b"schema = 1\n[[rule]]\nid = \"x\"\ninitiator = [\"managed-devise\"]\n");
    let o = run(&["rules", "--check", rules.to_str().unwrap()]);
    assert_refused(&o, "r.toml:");
    // toml reports the missing required fields at the table; a role typo
    // is reported where it stands once the entry is complete.
    let rules = write(
        d.path(),
        "r2.toml",
        b"schema = 1\n[[rule]]\nid = \"x\"\ninitiator = [\"managed-devise\"]\nresponder = [\"any\"]\ntransport = \"tcp\"\nports = [1]\ntls = \"none\"\npurpose = \"p\"\nseed = []\n",
    );
    let o = run(&["rules", "--check", rules.to_str().unwrap()]);
    assert_refused(
        &o,
        "r2.toml:4:14: rule `x`, field `initiator`: unknown role `managed-devise`; valid roles: administration-server",
    );
    let o = run(&["audit", "--rules", rules.to_str().unwrap(), fixture("loopback-tls.pcap").to_str().unwrap()]);
    assert_refused(&o, "r2.toml:4:14");

    let inv = write(
        d.path(),
        "inv.toml",
        b"[[host]]\nname = \"ksc\"\naddr = \"10.0.0.256\"\nrole = \"administration-server\"\n",
    );
    let o = run(&["check-inventory", inv.to_str().unwrap()]);
    assert_refused(&o, "inv.toml:3:8: host `ksc`, field `addr`: `10.0.0.256` is not an IP address");
    let o = run(&["audit", "--inventory", inv.to_str().unwrap(), fixture("loopback-tls.pcap").to_str().unwrap()]);
    assert_refused(&o, "inv.toml:3:8");

    let inv = write(
        d.path(),
        "inv2.toml",
        b"[[host]]\nname = \"ksc\"\naddr = \"10.0.0.1\"\nroles = [\"administration-server\", \"sql-server\"]\n",
    );
    assert_refused(&run(&["check-inventory", inv.to_str().unwrap()]), "unknown role `sql-server`; valid roles:");
    let inv =
        write(d.path(), "inv3.toml", b"[[host]]\nname = \"ksc\"\naddr = \"10.0.0.1\"\nrole = \"dbms\"\nport = 1\n");
    assert_refused(&run(&["check-inventory", inv.to_str().unwrap()]), "unknown field `port`, expected one of");
    assert_refused(&run(&["check-inventory", "/nonexistent.toml"]), "cannot read");
}

#[test]
fn builtin_rules_print_and_check() {
    let o = run(&["rules"]);
    assert_eq!(o.status.code(), Some(0));
    let s = stdout(&o);
    assert!(s.contains("agent-legacy") && s.contains("insecure: TCP 14000"), "{s}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/ksc-14.2.toml");
    let o = run(&["rules", "--check", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("valid"));
}

#[test]
fn unknown_flag_and_missing_argument_exit_2() {
    let o = run(&["audit", "--frobnicate", "x.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--frobnicate"));
    assert_eq!(run(&["audit"]).status.code(), Some(2));
    assert_eq!(run(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}

#[test]
fn bad_bpf_filter_exits_2() {
    let o = run(&["audit", "--filter", "tcp port banana", fixture("loopback-tls.pcap").to_str().unwrap()]);
    assert_refused(&o, "invalid BPF filter");
}

#[test]
fn bpf_filter_narrows_the_audit() {
    let f = fixture("loopback-tls.pcap");
    let all = run(&["audit", "--format", "json", f.to_str().unwrap()]);
    let only = run(&["audit", "--format", "json", "--filter", "tcp port 14000", f.to_str().unwrap()]);
    let a: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&only.stdout).unwrap();
    assert!(a["flows"].as_array().unwrap().len() > 1);
    let ports: Vec<u64> = b["flows"].as_array().unwrap().iter().map(|f| f["server_port"].as_u64().unwrap()).collect();
    assert_eq!(ports, vec![14000]);
}

#[test]
fn broken_pipe_is_not_an_error() {
    let mut child = kscflow().args(["rules"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn events_file_has_one_line_per_connection() {
    let d = tempfile::tempdir().unwrap();
    let ev = d.path().join("events.jsonl");
    let o = run(&[
        "audit",
        "--format",
        "json",
        "--events",
        ev.to_str().unwrap(),
        fixture("loopback-tls.pcap").to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let conns: u64 = r["flows"].as_array().unwrap().iter().map(|f| f["connections"].as_u64().unwrap()).sum();
    let text = std::fs::read_to_string(&ev).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let in_scope = lines.iter().filter(|l| l["verdict"] != "out_of_scope").count() as u64;
    assert_eq!(in_scope, conns);
    for l in &lines {
        for k in [
            "client",
            "client_port",
            "server",
            "server_port",
            "transport",
            "start",
            "end",
            "outcome",
            "direction",
            "verdict",
        ] {
            assert!(!l[k].is_null(), "{k} missing in {l}");
        }
    }
}

#[test]
fn discover_prints_a_reusable_inventory() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["discover", fixture("loopback-tls.pcap").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let toml_text = stdout(&o);
    assert!(toml_text.contains("administration-server"), "{toml_text}");
    let inv = write(d.path(), "inv.toml", toml_text.as_bytes());
    let o = run(&["check-inventory", inv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut f = std::fs::OpenOptions::new().append(true).open(&inv).unwrap();
    writeln!(f).unwrap();
}

#[test]
fn text_report_without_inventory_says_roles_are_inferred() {
    let o = run(&["audit", fixture("loopback-tls.pcap").to_str().unwrap()]);
    let s = stdout(&o);
    assert!(s.contains("INFERRED from the traffic"), "{s}");
    assert!(s.contains("INSECURE"), "{s}");
}

#[test]
fn max_flows_bounds_all_threads_together() {
    // Found measuring a flood: the reading thread's table had the whole
    // --max-flows and each worker its share on top (1.5x the cap with 2).
    for threads in ["1", "2", "3"] {
        let o = run(&[
            "audit",
            "--format",
            "json",
            "--max-flows",
            "3",
            "--threads",
            threads,
            fixture("scheme-183039.pcap").to_str().unwrap(),
        ]);
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t = &r["capture"]["flow_table"];
        assert!(t["peak_flows"].as_u64().unwrap() <= 3, "{threads} threads: {t}");
        assert!(t["evicted"].as_u64().unwrap() > 0, "{threads} threads: {t}");
    }
}

#[test]
fn threads_do_not_change_the_result() {
    // Connections are split over threads by address; every fixture must
    // give the same report whatever the number of threads.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let stem = name.rsplit_once('.').unwrap().0;
        let inv = dir.join(format!("{stem}.inventory.toml"));
        let report = |threads: &str| {
            let mut c = kscflow();
            c.args(["audit", "--format", "json", "--threads", threads]);
            if inv.exists() {
                c.arg("--inventory").arg(&inv);
            }
            let o = c.arg(&p).output().unwrap();
            assert!(matches!(o.status.code(), Some(0) | Some(1)), "{name}: {}", stderr(&o));
            let mut r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            // Table housekeeping counters are per-thread sums and depend on
            // when each table was swept; the results must not.
            r["capture"]["flow_table"]["peak_flows"] = serde_json::Value::Null;
            r["capture"]["flow_table"]["timed_out"] = serde_json::Value::Null;
            r
        };
        let (one, three) = (report("1"), report("3"));
        if one != three {
            let (a, b) = (one.to_string(), three.to_string());
            let at = a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or(0);
            panic!("{name}: 1 and 3 threads disagree near …{}…", &a[at.saturating_sub(120)..(at + 80).min(a.len())]);
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}

/// Ethernet frames from `src` to `dst` (IPv4), timestamps one second apart.
fn eth(src: [u8; 4], dst: [u8; 4], dst_mac: [u8; 6], tcp: Option<(u16, u16, u8)>, udp: Option<(u16, u16)>) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, src[3]], dst_mac).ipv4(src, dst, 64);
    let mut v = Vec::new();
    match (tcp, udp) {
        (Some((sp, dp, flags)), _) => {
            let mut t = b.tcp(sp, dp, 1000, 1000);
            if flags & 2 != 0 {
                t = t.syn();
            }
            if flags & 16 != 0 {
                t = t.ack(1);
            }
            t.write(&mut v, &[]).unwrap();
        }
        (None, Some((sp, dp))) => b.udp(sp, dp).write(&mut v, b"hello").unwrap(),
        _ => unreachable!(),
    }
    v
}

/// Audits an Ethernet capture made of `frames` (with `inventory` when
/// given) and returns the JSON report.
fn audit_frames(frames: &[Vec<u8>], inventory: Option<&str>) -> serde_json::Value {
    let d = tempfile::tempdir().unwrap();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let f = write(d.path(), "c.pcap", &pcap(1, &refs));
    audit_file(&f, inventory)
}

/// Audits `capture` (with `inventory` text when given); the JSON report.
fn audit_file(capture: &Path, inventory: Option<&str>) -> serde_json::Value {
    let d = tempfile::tempdir().unwrap();
    let mut c = kscflow();
    c.args(["audit", "--format", "json"]);
    if let Some(text) = inventory {
        c.arg("--inventory").arg(write(d.path(), "inv.toml", text.as_bytes()));
    }
    let o = c.arg(capture).output().unwrap();
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An inventory: an Administration Server at 10.0.0.10 plus `more`.
fn inventory_with(more: &str) -> String {
    format!("[[host]]\nname = \"ksc\"\naddr = \"10.0.0.10\"\nrole = \"administration-server\"\n{more}")
}

#[test]
fn agent_broadcast_is_recognised_without_an_inventory() {
    // Review finding: without an inventory, 10.0.1.255 looked like a host
    // that accepts UDP 15000. The Ethernet broadcast address says otherwise.
    let (dev, ksc) = ([10, 0, 1, 21], [10, 0, 0, 10]);
    let m = [2, 0, 0, 0, 0, 10];
    let frames = [
        eth(dev, ksc, m, Some((50000, 13000, 2)), None),
        eth(ksc, dev, m, Some((13000, 50000, 18)), None),
        eth(dev, [10, 0, 1, 255], [0xff; 6], None, Some((15000, 15000))),
    ];
    let r = audit_frames(&frames, None);
    let b = r["flows"].as_array().unwrap().iter().find(|f| f["server"] == "10.0.1.255").unwrap();
    assert_eq!((b["verdict"].as_str(), b["rule"].as_str()), (Some("expected"), Some("agent-bcast")), "{b}");
}

#[test]
fn a_spoofed_scan_inside_a_network_invents_no_devices() {
    // Review finding: any client address inside a managed-device network
    // became a device that then went "missing".
    let m = [2, 0, 0, 0, 0, 10];
    let frames: Vec<Vec<u8>> =
        (30..40u8).map(|i| eth([10, 0, 1, i], [10, 0, 0, 99], m, Some((40000, 445, 2)), None)).collect();
    let inv = inventory_with("[[host]]\nname = \"lan\"\naddr = \"10.0.1.0/24\"\nrole = \"managed-device\"\n");
    let r = audit_frames(&frames, Some(&inv));
    assert_eq!(r["missing"].as_array().unwrap().len(), 0, "{}", r["missing"]);
}

#[test]
fn a_forged_far_future_timestamp_does_not_make_devices_missing() {
    // Review finding: one packet with a timestamp years ahead stretched the
    // capture's duration past 45 minutes, so a device merely not seen yet
    // became "missing" (exit 1).
    let d = tempfile::tempdir().unwrap();
    let inv = inventory_with(
        "[[host]]\nname = \"ws\"\naddr = \"10.0.1.22\"\nrole = \"managed-device\"\n[[host]]\nname = \"ws21\"\naddr = \"10.0.1.21\"\nrole = \"managed-device\"\n",
    );
    let m = [2, 0, 0, 0, 0, 10];
    let frames = [
        eth([10, 0, 1, 21], [10, 0, 0, 10], m, Some((50000, 13000, 2)), None),
        eth([10, 0, 0, 10], [10, 0, 1, 21], m, Some((13000, 50000, 18)), None),
        eth([10, 9, 9, 9], [10, 0, 0, 10], m, Some((50001, 13000, 2)), None),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let mut bytes = pcap(1, &refs);
    // Move the last record's timestamp ten years ahead.
    let last = bytes.len() - (16 + frames[2].len());
    let ts = u32::from_le_bytes(bytes[last..last + 4].try_into().unwrap()) + 10 * 365 * 86_400;
    bytes[last..last + 4].copy_from_slice(&ts.to_le_bytes());
    let f = write(d.path(), "forged.pcap", &bytes);
    let r = audit_file(&f, Some(&inv));
    let ws = r["missing"].as_array().unwrap().iter().find(|m| m["host"] == "10.0.1.22").unwrap();
    assert_eq!(ws["status"], "unconfirmed", "{ws}");
}

/// The tunnels fixture (ERSPAN II, VXLAN, ERSPAN III) says how much came
/// through each kind of tunnel, in the JSON and in the text, and a report
/// merging it keeps the counts.
#[test]
fn decapsulated_packets_are_counted_per_tunnel_kind() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("t.json");
    let (pcap, inv) = (fixture("tunnels.pcap"), fixture("tunnels.inventory.toml"));
    let o = kscflow()
        .arg("audit")
        .arg(&pcap)
        .arg("--inventory")
        .arg(&inv)
        .args(["--format", "json", "-o"])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let t = &r["capture"]["tunnels"];
    let (erspan, vxlan) = (t["erspan"].as_u64().unwrap_or(0), t["vxlan"].as_u64().unwrap_or(0));
    assert!(erspan > 0 && vxlan > 0, "{t}");
    assert!(erspan + vxlan <= r["capture"]["packets"].as_u64().unwrap(), "{t}");
    let o = kscflow().arg("audit").arg(&pcap).arg("--inventory").arg(&inv).output().unwrap();
    let text = stdout(&o);
    assert!(text.contains("PACKETS DECAPSULATED") && text.contains("(erspan)") && text.contains("(vxlan)"), "{text}");
    let merged = d.path().join("m.json");
    let o =
        kscflow().arg("report").arg(&json).arg(&json).args(["--format", "json", "-o"]).arg(&merged).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_eq!(m["capture"]["tunnels"]["erspan"].as_u64(), Some(2 * erspan), "{}", m["capture"]);
}
