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
///
/// toml refuses a dotted key or table header of more than
/// [`KEY_PARTS_MAX`] parts with "recursion limit" and no span; that one
/// error is located here by [`find_deep_key`]. The scan runs only when toml
/// has already refused the text without a location, so a valid file costs
/// nothing more and the scan only ever reads text toml tokenized cleanly
/// (its syntax errors, deep arrays and inline tables included, come first
/// and carry their own span).
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        if e.span().is_none() {
            if let Some(deep) = find_deep_key(text, KEY_PARTS_MAX) {
                return ConfigError::at(path, text, Some(deep.offset..deep.offset), deep.message());
            }
        }
        // toml's message is one line; keep it and add our own location.
        let msg = e.message().trim().replace('\n', " ");
        ConfigError::at(path, text, e.span(), msg)
    })
}

/// The most parts toml (1.x, without its `unbounded` feature) accepts in one
/// dotted key or table header: it refuses `a.b.….z` once the tables before
/// the last part number 80 (`LIMIT` in toml's `src/de/parser/mod.rs`, checked
/// in `key.rs`). Pinned by the tests below: 80 parts parse, 81 are refused.
pub const KEY_PARTS_MAX: usize = 80;

/// A dotted key or table header with too many parts (see [`find_deep_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeepKey {
    /// Byte offset of the key's first character, or of the header's `[`.
    pub offset: usize,
    /// A `[table]` or `[[array.table]]` header rather than a `key = value`.
    pub header: bool,
    /// The limit it is past.
    pub max_parts: usize,
}

impl DeepKey {
    /// The message, with toml's own words ("recursion limit") in it.
    pub fn message(&self) -> String {
        let what = if self.header { "table header" } else { "dotted key" };
        format!("{what} of more than {} parts is past the recursion limit", self.max_parts)
    }
}

/// The first dotted key or table header of `text` with more than
/// `max_parts` parts, in one linear pass over the bytes, allocating nothing.
///
/// Dots count only in keys: at the start of a top-level line, in a
/// `[header]` or `[[header]]`, and after `{` or `,` in an inline table.
/// Strings (basic, literal, and their multi-line forms), comments, values
/// (`1.5`, times) and array brackets are read past. Arrays and inline
/// tables nested deeper than 128 end the scan with `None`: toml refuses
/// those itself (past 80), at their position.
pub fn find_deep_key(text: &str, max_parts: usize) -> Option<DeepKey> {
    #[derive(Clone, Copy)]
    enum Mode {
        /// At depth 0, before the first non-blank of a line.
        LineStart,
        /// In an inline table, before a key (or its `}`).
        KeyWait,
        /// In a key: where it starts, header or not, parts so far.
        Key { start: usize, header: bool, parts: usize },
        /// In a value, or after a header's `]`, up to the end of the line at
        /// depth 0.
        Value,
    }
    let b = text.as_bytes();
    let mut i = 0;
    let mut mode = Mode::LineStart;
    // The open arrays and inline tables: bit d set when level d is a table.
    let mut tables: u128 = 0;
    let mut depth: u32 = 0;
    while i < b.len() {
        let c = b[i];
        match mode {
            Mode::LineStart | Mode::KeyWait => match c {
                b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                b'#' => i = skip_comment(b, i),
                b'[' if matches!(mode, Mode::LineStart) => {
                    let at = i;
                    i += if b.get(i + 1) == Some(&b'[') { 2 } else { 1 };
                    mode = Mode::Key { start: at, header: true, parts: 1 };
                }
                b'}' if matches!(mode, Mode::KeyWait) => {
                    // `{}`, or a trailing comma (TOML 1.1).
                    depth = depth.saturating_sub(1);
                    mode = Mode::Value;
                    i += 1;
                }
                _ => mode = Mode::Key { start: i, header: false, parts: 1 },
            },
            Mode::Key { start, header, parts } => match c {
                b'"' | b'\'' => i = skip_string(b, i),
                b'.' => {
                    if parts >= max_parts {
                        return Some(DeepKey { offset: start, header, max_parts });
                    }
                    mode = Mode::Key { start, header, parts: parts + 1 };
                    i += 1;
                }
                b'=' | b']' => {
                    mode = Mode::Value;
                    i += 1;
                }
                b'\n' if depth == 0 => mode = Mode::LineStart,
                _ => i += 1,
            },
            Mode::Value => match c {
                b'"' | b'\'' => i = skip_string(b, i),
                b'#' => i = skip_comment(b, i),
                b'[' | b'{' => {
                    if depth >= u128::BITS {
                        return None;
                    }
                    let table = c == b'{';
                    tables = (tables & !(1 << depth)) | (u128::from(table) << depth);
                    depth += 1;
                    if table {
                        mode = Mode::KeyWait;
                    }
                    i += 1;
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    i += 1;
                }
                b',' => {
                    if depth > 0 && tables & (1 << (depth - 1)) != 0 {
                        mode = Mode::KeyWait;
                    }
                    i += 1;
                }
                b'\n' if depth == 0 => {
                    mode = Mode::LineStart;
                    i += 1;
                }
                _ => i += 1,
            },
        }
    }
    None
}

/// The index of the newline ending the comment at `i` (or the end).
fn skip_comment(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n)
}

/// The index just past the string opening at `i` (a `"` or `'`): basic and
/// literal, one-line and multi-line. An unterminated one-line string ends
/// before its newline, as toml reads it.
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let basic = q == b'"';
    let mut j = i + 1;
    if b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q) {
        j = i + 3;
        while j < b.len() {
            if basic && b[j] == b'\\' {
                j += 2;
            } else if b[j] == q && b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                // Up to two more quotes belong to the content: `"""a""""`.
                while j < b.len() && b[j] == q {
                    j += 1;
                }
                return j;
            } else {
                j += 1;
            }
        }
        return b.len();
    }
    while j < b.len() {
        match b[j] {
            b'\\' if basic => j += 2,
            b'\n' => return j,
            c if c == q => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
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

    fn dotted(parts: usize) -> String {
        vec!["a"; parts].join(".")
    }

    /// (line, column, header) of the deep key `find_deep_key` finds.
    fn deep(text: &str, max: usize) -> Option<(usize, usize, bool)> {
        find_deep_key(text, max).map(|d| {
            let (l, c) = line_col(text, d.offset);
            (l, c, d.header)
        })
    }

    fn parse(text: &str) -> Result<toml::Table, ConfigError> {
        parse_toml(Path::new("x.toml"), text)
    }

    #[test]
    fn key_limit_is_tomls_own_80_parts_accepted_81_refused_and_located() {
        let m = KEY_PARTS_MAX;
        // At the limit: toml accepts, the scan finds nothing.
        for text in [
            format!("x = 1\n{} = 1\n", dotted(m)),
            format!("x = 1\n[{}]\n", dotted(m)),
            format!("x = 1\n[[{}]]\n", dotted(m)),
            format!("x = {{ {} = 1 }}\n", dotted(m)),
        ] {
            assert!(parse(&text).is_ok(), "{text}");
            assert_eq!(find_deep_key(&text, m), None, "{text}");
        }
        // One part more: toml refuses without a span; located here.
        let cases = [
            (format!("x = 1\n{} = 1\n", dotted(m + 1)), (2, 1), "dotted key"),
            (format!("x = 1\n[{}]\n", dotted(m + 1)), (2, 1), "table header"),
            (format!("x = 1\n  [[{}]]\n", dotted(m + 1)), (2, 3), "table header"),
            (format!("x = [{{ y = {{ {} = 1 }} }}]\n", dotted(m + 1)), (1, 14), "dotted key"),
        ];
        for (text, at, what) in cases {
            assert!(toml::from_str::<toml::Table>(&text).unwrap_err().span().is_none(), "{text}");
            let e = parse(&text).unwrap_err();
            assert_eq!((e.line, e.column), at, "{e}");
            assert!(e.message.starts_with(what) && e.message.contains("recursion limit"), "{e}");
        }
    }

    #[test]
    fn deep_key_counts_dots_in_keys_only() {
        // Quoted parts: their dots are not separators; spaces around dots.
        assert_eq!(deep(r#""a.b.c".'d.e' = 1"#, 2), None);
        assert_eq!(deep(r#""a.b.c".'d.e' . f = 1"#, 2), Some((1, 1, false)));
        assert_eq!(deep("a . b . c = 1\n", 2), Some((1, 1, false)));
        assert_eq!(deep("[ a . b . c ]\n", 2), Some((1, 1, true)));
        assert_eq!(deep("[[\"x.y.z\".b]]\n", 2), None);
        // Dots and brackets in values: numbers, times, strings of every kind.
        let values = r#"f = 1.5e3
t = 1979-05-27T07:32:00.999
b = "a.b.c.d"
l = 'a.b.c.d'
mb = """
[a.b.c.d]
a.b.c.d = 1
"""
ml = '''
[a.b.c.d]
'''
"#;
        assert!(parse(values).is_ok());
        assert_eq!(deep(values, 1), None);
        // Escaped and content quotes do not end a string early.
        let tricky = r#"e = "\" [a.b.c] \\"
q = """x"" [a.b.c]"""""
r = '''x'' [a.b.c]'''''
p = """\""" a.b.c = 1 """
"#;
        assert!(parse(tricky).is_ok(), "{:?}", parse(tricky));
        assert_eq!(deep(tricky, 1), None);
        // After all of them, a real deep key is still found, on its line.
        assert_eq!(deep(&format!("{values}{tricky}k.l = 1\n"), 1), Some((16, 1, false)));
        // An empty string is not the start of a multi-line one.
        assert_eq!(deep("e = \"\"\na.b = 1\n", 1), Some((2, 1, false)));
        assert_eq!(deep("e = ''\na.b = 1\n", 1), Some((2, 1, false)));
    }

    #[test]
    fn deep_key_ignores_comments() {
        let text = "# [a.b.c]\n  # a.b.c = 1\nx = 1 # a.b.c\n[t] # [a.b.c]\ny = [ # a.b.c\n  1, # {a.b.c = 1}\n]\n";
        assert!(parse(text).is_ok());
        assert_eq!(deep(text, 1), None);
        assert_eq!(deep(&format!("{text}# x\nz.z = 1\n"), 1), Some((9, 1, false)));
    }

    #[test]
    fn deep_key_reads_arrays_and_inline_tables() {
        // Lines of an array that start with `[` are values, not headers.
        let text = "x = [\n  [1.5, 2.5],\n  [ [3.5] ],\n]\n";
        assert!(parse(text).is_ok());
        assert_eq!(deep(text, 1), None);
        // Keys inside inline tables count, in arrays too, after `{` or `,`.
        assert_eq!(deep("x = [{ a = 1.5, b.c = 2 }]\n", 1), Some((1, 17, false)));
        assert_eq!(deep("x = [[1.5], {a.b = 2}]\n", 1), Some((1, 14, false)));
        // After an inline table closes, a value again; `{}` is no key.
        assert_eq!(deep("x = [{a = 1}, 1.5, {}]\ny = {a = [1.5]}\n", 1), None);
        // Nested 127 deep (arrays, inline tables): the scan goes on after.
        let arrays = format!("x = {}1.5{}\na.b = 1\n", "[".repeat(127), "]".repeat(127));
        assert_eq!(deep(&arrays, 1), Some((2, 1, false)));
        let tables = format!("x = {}1.5{}\na.b = 1\n", "{a = ".repeat(127), "}".repeat(127));
        assert_eq!(deep(&tables, 1), Some((2, 1, false)));
        // Deeper, it stops and leaves them to toml, which refuses them past
        // 80 at their position (and before any key).
        let deeper = format!("x = {}{}\n{} = 1\n", "[".repeat(5000), "]".repeat(5000), dotted(200));
        assert_eq!(find_deep_key(&deeper, KEY_PARTS_MAX), None);
        let e = parse(&deeper).unwrap_err();
        assert_eq!((e.line, e.column), (1, 85), "{e}");
        assert!(e.message.contains("max recursion depth"), "{e}");
    }

    #[test]
    fn deep_key_leaves_located_errors_to_toml() {
        // A syntax error before a deep key: toml's, where toml says.
        let e = parse(&format!("x = \nb = 1\n{} = 1\n", dotted(200))).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(!e.message.contains("recursion limit"), "{e}");
    }
}
