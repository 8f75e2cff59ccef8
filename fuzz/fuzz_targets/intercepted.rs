#![no_main]
//! `cargo +nightly fuzz run intercepted`: see `ringway_core::fuzzing::intercepted` for the
//! properties checked (the same function replays the corpus under `cargo test`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_core::fuzzing::intercepted(data));
