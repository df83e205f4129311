//! Fuzz target: `check_ok`, the handshake's `StreamDescription` and discovery's reading of a hello.
//!
//! The body and its invariants are `anymongo_proto::testing::fuzz::handshake_reply`, which `cargo test`
//! also runs, bounded, as a property test. How to run: see `../README.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    anymongo_proto::testing::fuzz::handshake_reply(data);
});
