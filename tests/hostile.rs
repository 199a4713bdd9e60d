//! Hostile captures: every fixture, damaged in deterministic ways (bytes
//! flipped, records cut, lengths made absurd), through the real binary with
//! both readers. Whatever the damage, kscflow exits 0 or 1 with a report
//! (and says where a file broke) or 2 with a message — never a panic, never
//! a hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    v
}

/// One damaged copy of `bytes`.
fn damage(bytes: &[u8], rng: &mut Rng, kind: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match kind % 4 {
        // Flip a few bytes past the file header: packet contents and
        // record headers alike.
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = 24 + rng.below(b.len().saturating_sub(24));
                if i < b.len() {
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        // Cut anywhere.
        1 => b.truncate(rng.below(b.len())),
        // An absurd record or block length somewhere.
        2 => {
            let i = 24 + rng.below(b.len().saturating_sub(28));
            if i + 4 <= b.len() {
                b[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
            }
        }
        // Garbage after a valid prefix.
        _ => {
            let keep = rng.below(b.len());
            b.truncate(keep);
            for _ in 0..rng.below(4096) {
                b.push(rng.next() as u8);
            }
        }
    }
    b
}

#[test]
fn damaged_captures_never_panic_or_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    let mut refused = 0;
    for cap in captures() {
        let bytes = std::fs::read(&cap).unwrap();
        for kind in 0..4 {
            let damaged = damage(&bytes, &mut rng, kind);
            let f = tmp.path().join(format!("d{kind}-{}", cap.file_name().unwrap().to_string_lossy()));
            std::fs::write(&f, &damaged).unwrap();
            for reader in ["fast", "libpcap"] {
                let mut child = Command::new(env!("CARGO_BIN_EXE_kscflow"))
                    .args(["audit", "--format", "json", "--reader", reader])
                    .arg(&f)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let start = Instant::now();
                loop {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    assert!(start.elapsed() < Duration::from_secs(20), "{} ({reader}): hang", f.display());
                    std::thread::sleep(Duration::from_millis(5));
                }
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!err.contains("panicked"), "{} ({reader}): {err}", f.display());
                match out.status.code() {
                    Some(0) | Some(1) => {
                        let r: serde_json::Value = serde_json::from_slice(&out.stdout)
                            .unwrap_or_else(|e| panic!("{} ({reader}): no report: {e}", f.display()));
                        assert!(r["capture"]["packets"].is_u64());
                    }
                    Some(2) => {
                        assert!(err.starts_with("kscflow: error: "), "{} ({reader}): {err}", f.display());
                        refused += 1;
                    }
                    other => panic!("{} ({reader}): exit {other:?}: {err}", f.display()),
                }
                runs += 1;
            }
        }
    }
    assert!(runs >= 200, "{runs}");
    eprintln!("{runs} runs on damaged captures, {refused} refused with exit 2");
}
