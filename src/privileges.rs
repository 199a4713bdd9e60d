//! Giving up root once the interface is open (`kscflow live`).
//!
//! Every byte kscflow parses comes from the wire, so the process that
//! parses it must not be root. The capture socket is opened first; then
//! supplementary groups are cleared, then the group, then the user, in
//! that order (once the uid is not 0 the first two are no longer allowed),
//! and the change is checked to be irreversible. The open socket keeps
//! working; nothing that needs a new privileged socket is done afterwards.

use nix::unistd::{self, Gid, Uid, User};

/// The user `live` becomes when started as root without `--user`.
pub const DEFAULT_USER: &str = "nobody";

/// Whether the process is root (and so should drop).
pub fn is_root() -> bool {
    unistd::geteuid().is_root()
}

/// Becomes `name` for good: groups cleared, then gid, then uid.
pub fn drop_to(name: &str) -> Result<(u32, u32), crate::Error> {
    let fail = |message: String| crate::Error::Privileges { user: name.into(), message };
    let user = User::from_name(name)
        .map_err(|e| fail(format!("looking the user up: {e}")))?
        .ok_or_else(|| fail("no such user (see /etc/passwd; --user names another)".into()))?;
    if user.uid.is_root() {
        return Err(fail("that is root: give an unprivileged user".into()));
    }
    unistd::setgroups(&[]).map_err(|e| fail(format!("setgroups: {e}")))?;
    unistd::setgid(user.gid).map_err(|e| fail(format!("setgid({}): {e}", user.gid)))?;
    unistd::setuid(user.uid).map_err(|e| fail(format!("setuid({}): {e}", user.uid)))?;
    // setuid from root sets the real, effective and saved ids: getting
    // root back must now fail.
    if unistd::setuid(Uid::from_raw(0)).is_ok() || unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(fail("root could be regained after dropping; refusing to go on".into()));
    }
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}
