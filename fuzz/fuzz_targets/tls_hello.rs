#![no_main]
//! Fuzz target `tls_hello`: the body is [`kscflow_fuzz::tls_hello`], shared with the
//! stable corpus replay in `tests/fuzz_corpus.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kscflow_fuzz::tls_hello(data));
