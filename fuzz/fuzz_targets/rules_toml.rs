#![no_main]
//! Fuzz target `rules_toml`: the body is [`kscflow_fuzz::rules_toml`], shared with the
//! stable corpus replay in `tests/fuzz_corpus.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kscflow_fuzz::rules_toml(data));
