#![no_main]
//! `cargo +nightly fuzz run egress`: see `ringway_core::fuzzing::egress` for the input layout and
//! the properties checked (the same function replays the corpus under `cargo test`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_core::fuzzing::egress(data));
