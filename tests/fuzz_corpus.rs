//! The fuzz corpora, replayed on stable: every file of `fuzz/corpus/TARGET`
//! goes through the very function the fuzz target `TARGET` calls
//! (`fuzz/src/lib.rs`, included here by path), so a regression of anything
//! the fuzzer once found shows in `cargo test` without nightly or
//! libFuzzer. An empty or missing corpus fails: a replay of nothing proves
//! nothing. How the corpora were made: `fuzz/README.md`.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_bodies;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        // A panic names the file: rerun it with `cargo fuzz run TARGET FILE`.
        eprintln!("{}", f.display());
        body(&data);
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn fuzz_corpus_decode() {
    replay("decode", fuzz_bodies::decode);
}

#[test]
fn fuzz_corpus_tls_hello() {
    replay("tls_hello", fuzz_bodies::tls_hello);
}

#[test]
fn fuzz_corpus_rules_toml() {
    replay("rules_toml", fuzz_bodies::rules_toml);
}

#[test]
fn fuzz_corpus_inventory_toml() {
    replay("inventory_toml", fuzz_bodies::inventory_toml);
}

#[test]
fn fuzz_corpus_capture_file() {
    replay("capture_file", fuzz_bodies::capture_file);
}
