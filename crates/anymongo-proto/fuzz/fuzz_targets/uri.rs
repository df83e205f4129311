//! Fuzz target: the connection-string parser on arbitrary UTF-8.
//!
//! The body and its invariants are `anymongo_proto::testing::fuzz::uri`, which `cargo test`
//! also runs, bounded, as a property test. How to run: see `../README.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    anymongo_proto::testing::fuzz::uri(data);
});
