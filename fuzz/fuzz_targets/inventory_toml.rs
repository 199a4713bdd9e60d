#![no_main]
//! Fuzz target `inventory_toml`: the body is [`kscflow_fuzz::inventory_toml`], shared with the
//! stable corpus replay in `tests/fuzz_corpus.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kscflow_fuzz::inventory_toml(data));
