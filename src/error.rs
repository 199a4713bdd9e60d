//! Error types of the cold path: loading rules and inventories, opening
//! captures, writing reports.
//!
//! The hot path never returns these: a bad packet is a counted skip
//! ([`crate::decode::Skip`]), not an error. Everything here is something the
//! user must fix, so every message says what and where: file, line, column
//! and field for the TOML files (ripgrep's and etherparse's habit of
//! carrying the location in the error itself).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem in a rules or inventory file, located to the character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<built-in>` for the compiled-in rules).
    pub path: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column (in characters), 0 when unknown.
    pub column: usize,
    /// What is wrong and, where it helps, what would be valid.
    pub message: String,
}

impl ConfigError {
    /// An error at byte offset `span.start` of `text`.
    pub fn at(path: &Path, text: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let (line, column) = match span {
            Some(s) => line_col(text, s.start),
            None => (0, 0),
        };
        ConfigError { path: path.to_path_buf(), line, column, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: {}", self.path.display(), self.line, self.column, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// 1-based (line, column) of byte `offset` in `text`; columns count characters.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses TOML into `T`, turning a syntax or schema error into a located
/// [`ConfigError`]. Shared by the rules and the inventory loaders.
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // toml's message is one line; keep it and add our own location.
        let msg = e.message().trim().replace('\n', " ");
        ConfigError::at(path, text, e.span(), msg)
    })
}

/// Everything that can stop a run; maps to exit status 2 (DESIGN.md).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Capture { path: PathBuf, message: String },
    #[error("invalid BPF filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("{what}: {source}")]
    Write { what: String, source: std::io::Error },
    #[error("no interface {interface:?} here; the interfaces are: {available}")]
    Interface { interface: String, available: String },
    #[error("interface {interface}: {message}")]
    Live { interface: String, message: String },
    #[error("cannot drop privileges to user {user:?}: {message}")]
    Privileges { user: String, message: String },
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
}

impl Error {
    /// True when the error is a closed pipe on output (`kscflow … | head`),
    /// which is not a failure (ripgrep's rule).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        // 'é' is two bytes: the '=' after it is the 4th character.
        assert_eq!(line_col(t, t.find("= 2").unwrap()), (2, 4));
        assert_eq!(line_col(t, 10_000), (3, 1));
    }

    #[test]
    fn toml_errors_are_located() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: u8,
        }
        let e = parse_toml::<S>(Path::new("x.toml"), "a = 1\nb = 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        assert!(e.to_string().starts_with("x.toml:2:1: unknown field `b`"), "{e}");
    }
}
