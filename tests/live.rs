//! `kscflow live` on the loopback interface, with real traffic.
//!
//! Capturing needs root: as another user these tests say so and pass
//! without running (CI runs as root). The traffic is made by the fixture
//! generator (`kscflow-fixtures traffic`: real rustls TLS 1.3 handshakes
//! 127.0.0.2 -> 127.0.0.1:13000, clear text to 14000, UDP 15000), whose
//! binary `cargo test --workspace` builds next to kscflow's. Nothing is
//! sent to any address but 127.0.0.1 and 127.0.0.2.
//!
//! The tests that capture or bind hold [`common::machine_lock`] ("live")
//! while they run, so two copies of the suite on one machine take turns
//! instead of seeing each other's traffic and ports.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

fn kscflow() -> &'static str {
    env!("CARGO_BIN_EXE_kscflow")
}

/// Held by each test that captures on lo or binds a port (see the top).
fn live_lock() -> common::MachineLock {
    common::machine_lock("live")
}

fn root() -> bool {
    if kscflow::privileges::is_root() {
        return true;
    }
    eprintln!("SKIPPED: live capture on lo needs root");
    false
}

/// A running `kscflow live`, its standard error read line by line.
struct Live {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Live {
    fn start(args: &[&str]) -> Live {
        let mut child = Command::new(kscflow())
            .arg("live")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kscflow runs");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut live = Live { child, lines, log: Vec::new() };
        live.wait_for("capturing on lo");
        live
    }

    /// Waits (10 s at most) for a standard-error line containing `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(l) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.log.push(l.clone());
            if l.contains(text) {
                return l;
            }
        }
        panic!("no line with {text:?} from kscflow live; it said:\n{}", self.log.join("\n"));
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the exit; returns (status code, time it took, stdout).
    fn end(mut self, within: Duration) -> (i32, Duration, String) {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut out).unwrap();
                return (st.code().unwrap_or(-1), t.elapsed(), out);
            }
            if t.elapsed() > within {
                let _ = self.child.kill();
                panic!("kscflow live did not stop within {within:?}; it said:\n{}", self.log.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A temporary directory the dropped-to user (nobody) can write into.
fn open_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    d
}

fn traffic_maker() -> PathBuf {
    let p = Path::new(kscflow()).with_file_name("kscflow-fixtures");
    assert!(p.exists(), "{} is missing: run the tests with `cargo test --workspace`", p.display());
    p
}

fn uid_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string()
}

fn flow<'a>(report: &'a serde_json::Value, server_port: u64, transport: &str) -> &'a serde_json::Value {
    report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["server_port"] == server_port && f["transport"] == transport)
        .unwrap_or_else(|| panic!("no {transport} {server_port} flow in {report:#}"))
}

#[test]
fn live_loopback_tls_plaintext_udp_and_privilege_drop() {
    if !root() {
        return;
    }
    let _lock = live_lock();
    let dir = open_dir();
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[[host]]\nname = \"ksc\"\naddr = \"127.0.0.1\"\nrole = \"administration-server\"\n\n\
         [[host]]\nname = \"agent\"\naddr = \"127.0.0.2\"\nrole = \"managed-device\"\n",
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let events = dir.path().join("events.jsonl");
    let mut live = Live::start(&[
        "-i",
        "lo",
        "--inventory",
        inv.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--report-every",
        "1",
    ]);
    // The parser runs as nobody from the first packet on.
    let said = live.log.iter().find(|l| l.contains("now running as")).cloned().unwrap_or_default();
    assert!(said.contains("nobody (uid 65534"), "{said}");
    let uid = uid_of(live.child.id());
    assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "{uid}");

    let made = Command::new(traffic_maker()).arg("traffic").status().unwrap();
    assert!(made.success(), "the traffic maker failed");
    // A periodic report after the traffic: it is judged while running.
    live.wait_for("3 conversations");
    let periodic: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(flow(&periodic, 14000, "tcp")["verdict"], "insecure");

    // Finished connections reach the events file once their 5 s linger
    // passes, on the wall clock when the interface is quiet.
    let deadline = Instant::now() + Duration::from_secs(15);
    let written = |e: &str| e.matches("\"server_port\":13000").count() == 2 && e.contains("\"server_port\":14000");
    while !written(&std::fs::read_to_string(&events).unwrap_or_default()) {
        assert!(Instant::now() < deadline, "no events written; kscflow said:\n{}", live.log.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // logrotate: move the events file away, SIGHUP, more traffic.
    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&events, &rotated).unwrap();
    live.signal("-HUP");
    std::thread::sleep(Duration::from_millis(500));
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"after the rotation", "127.0.0.2:15000").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    live.signal("-TERM");
    let (code, _, findings) = live.end(Duration::from_secs(5));
    assert_eq!(code, 1, "findings (plaintext on 14000) make the exit status 1");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let tls = flow(&r, 13000, "tcp");
    assert_eq!((tls["verdict"].as_str(), tls["connections"].as_u64()), (Some("expected"), Some(2)), "{tls:#}");
    assert_eq!(tls["tls"]["version"], "TLS 1.3", "{tls:#}");
    assert_eq!(tls["rule"], "agent");
    assert_eq!(flow(&r, 14000, "tcp")["verdict"], "insecure");
    let udp = flow(&r, 15000, "udp");
    assert_eq!((udp["verdict"].as_str(), udp["client"].as_str()), (Some("expected"), Some("127.0.0.1")));
    assert!(r["capture"]["drops"]["received"].as_u64().unwrap() > 0, "{:#}", r["capture"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(r["capture"]["sensor"].as_str(), Some(host.trim()), "the sensor's name");

    // Each finding once, though judged every second.
    let lines: Vec<serde_json::Value> = findings.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{findings}");
    assert_eq!((lines[0]["finding"].as_str(), lines[0]["server_port"].as_u64()), (Some("insecure"), Some(14000)));

    // The rotated file has the TCP connections; the new one what came after.
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&events).unwrap();
    assert_eq!(old.lines().filter(|l| l.contains("\"server_port\":13000")).count(), 2, "{old}");
    assert!(old.lines().any(|l| l.contains("\"server_port\":14000")), "{old}");
    assert!(new.lines().any(|l| l.contains("\"server_port\":15000")), "{new}");
    assert!(!new.contains("\"server_port\":13000"), "{new}");
}

#[test]
fn live_stops_within_a_second_of_sigterm_on_a_silent_interface() {
    if !root() {
        return;
    }
    let _lock = live_lock();
    let dir = open_dir();
    let report = dir.path().join("report.json");
    // A filter nothing on lo matches: the interface is silent for kscflow.
    let live = Live::start(&["-i", "lo", "--filter", "udp port 9", "-o", report.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(700));
    live.signal("-TERM");
    let (code, took, _) = live.end(Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(code, 0);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["capture"]["packets"], 0);
    assert_eq!(r["capture"]["files"][0]["path"], "live:lo");
}

#[test]
fn machine_lock_makes_a_second_holder_wait_until_the_first_lets_go() {
    // A name of this process's own: the live tests' lock is not touched.
    let name = format!("lock-selftest-{}", std::process::id());
    let first = common::machine_lock(&name);
    let (tx, rx) = mpsc::channel();
    let second = std::thread::spawn({
        let name = name.clone();
        move || {
            let lock = common::machine_lock(&name);
            tx.send(()).unwrap();
            lock
        }
    });
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err(), "taken twice at once");
    drop(first);
    rx.recv_timeout(Duration::from_secs(10)).expect("the second holder never got the lock");
    drop(second.join().unwrap());
    let _ = std::fs::remove_file(std::env::temp_dir().join(format!("kscflow-{name}.lock")));
}

#[test]
fn live_unknown_interface_exits_2_and_lists_the_interfaces() {
    let o = Command::new(kscflow()).args(["live", "-i", "nosuch0"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no interface \"nosuch0\"") && err.contains("lo"), "{err}");
}

#[test]
fn live_bad_user_or_filter_exits_2_with_the_reason() {
    let run = |args: &[&str]| {
        let o = Command::new(kscflow()).arg("live").args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run(&["-i", "lo", "--user", "no-such-user-here", "--duration", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (fcode, ferr) = run(&["-i", "lo", "--filter", "tcp port banana", "--duration", "1"]);
    assert_eq!(fcode, Some(2), "{ferr}");
    if kscflow::privileges::is_root() {
        assert!(err.contains("no-such-user-here") && err.contains("no such user"), "{err}");
        assert!(ferr.contains("invalid BPF filter"), "{ferr}");
    } else {
        // Not root: opening the interface is refused first, and says why.
        assert!(err.contains("CAP_NET_RAW") && ferr.contains("CAP_NET_RAW"), "{err}\n{ferr}");
    }
}
