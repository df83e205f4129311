//! Fuzz target: the wire `Decoder` on arbitrary bytes fed in arbitrary chunks.
//!
//! The body and its invariants are `anymongo_proto::testing::fuzz::decoder`, which `cargo test`
//! also runs, bounded, as a property test. How to run: see `../README.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    anymongo_proto::testing::fuzz::decoder(data);
});
