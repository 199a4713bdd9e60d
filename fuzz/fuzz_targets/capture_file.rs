#![no_main]
//! Fuzz target `capture_file`: the body is [`kscflow_fuzz::capture_file`], shared with the
//! stable corpus replay in `tests/fuzz_corpus.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kscflow_fuzz::capture_file(data));
