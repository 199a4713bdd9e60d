#![no_main]
//! Fuzz target `decode`: the body is [`kscflow_fuzz::decode`], shared with the
//! stable corpus replay in `tests/fuzz_corpus.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kscflow_fuzz::decode(data));
