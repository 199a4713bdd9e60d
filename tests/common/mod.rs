//! Helpers the integration tests share: the real binary, the fixtures.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn kscflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kscflow"))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub fn run(args: &[&str]) -> Output {
    kscflow().args(args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An exclusive advisory lock (`flock`) on one file in the temporary
/// directory, shared by every copy of the test suite on the machine: the
/// live tests capture on `lo` and bind 127.0.0.1:13000, 14000 and 15000, so
/// two runs at once (two checkouts, two target directories) would see each
/// other's traffic and ports. The holder of the guard runs; the others
/// wait. Released when the guard is dropped, or when the process dies.
pub struct MachineLock {
    _file: std::fs::File,
}

pub fn machine_lock(name: &str) -> MachineLock {
    use std::os::unix::io::AsRawFd;
    let path = std::env::temp_dir().join(format!("kscflow-{name}.lock"));
    // A file another user created may be read-only to us: flock does not
    // need write access.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .or_else(|_| std::fs::File::open(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let flock = |op: libc::c_int| loop {
        // SAFETY: flock on a descriptor `file` owns and keeps open.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if let Err(e) = flock(libc::LOCK_EX | libc::LOCK_NB) {
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "flock {}: {e}", path.display());
        eprintln!("waiting for {} (held by another test)", path.display());
        flock(libc::LOCK_EX).unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    }
    MachineLock { _file: file }
}
