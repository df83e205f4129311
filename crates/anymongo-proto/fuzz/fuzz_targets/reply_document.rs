//! Fuzz target: reply bytes to `Document`, `Bson`, raw and serde values (no stack overflow at any depth).
//!
//! The body and its invariants are `anymongo_proto::testing::fuzz::reply_document`, which `cargo test`
//! also runs, bounded, as a property test. How to run: see `../README.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    anymongo_proto::testing::fuzz::reply_document(data);
});
