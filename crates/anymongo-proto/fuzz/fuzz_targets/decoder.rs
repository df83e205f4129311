//! Fuzz target: the wire `Decoder` on arbitrary bytes fed in arbitrary chunks.
//!
//! How to run (needs nightly; not part of CI):
//!
//! ```sh
//! cargo install cargo-fuzz
//! cd crates/anymongo-proto
//! cargo +nightly fuzz run decoder
//! ```
//!
//! Input layout: byte 0 = how many chunk sizes follow (0-7, modulo 8); then that many bytes, each
//! a chunk size (0 means 1); the rest is the byte stream, fed in those chunk sizes (cycled),
//! alternately through `feed` and through `spare`/`commit`.
//!
//! Invariants checked: no panic; after an error the decoder keeps returning that error; every
//! decoded message, re-encoded without compression, decodes to the same message.

#![no_main]

use anymongo_proto::wire::{encode, Decoder, Message};
use libfuzzer_sys::fuzz_target;

/// Small enough to exercise the size checks, large enough for real messages.
const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![stream.len().max(1)]
    } else {
        sizes.iter().map(|s| usize::from(*s).max(1)).collect()
    };

    let mut decoder = Decoder::new(MAX);
    let mut remaining = stream;
    let mut i = 0;
    while !remaining.is_empty() {
        let len = sizes[i % sizes.len()].min(remaining.len());
        let (chunk, tail) = remaining.split_at(len);
        remaining = tail;
        if i % 2 == 0 {
            decoder.feed(chunk);
        } else {
            let spare = decoder.spare(len);
            assert!(spare.len() >= len);
            spare[..len].copy_from_slice(chunk);
            decoder.commit(len);
        }
        i += 1;
        loop {
            match decoder.decode() {
                Ok(Some(msg)) => check_round_trip(&msg),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        decoder.decode(),
                        Err(e),
                        "a poisoned decoder repeats its error"
                    );
                    return;
                }
            }
        }
    }
});

fn check_round_trip(msg: &Message) {
    let mut bytes = Vec::new();
    encode(msg, None, &mut bytes).expect("a decoded message re-encodes");
    let mut again = Decoder::new(bytes.len());
    again.feed(&bytes);
    let decoded = again
        .decode()
        .expect("a re-encoded message decodes")
        .expect("a whole message");
    assert_eq!(decoded.request_id, msg.request_id);
    assert_eq!(decoded.response_to, msg.response_to);
    assert_eq!(decoded.body, msg.body);
    assert_eq!(again.buffered(), 0);
}
