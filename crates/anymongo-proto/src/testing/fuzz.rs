//! The bodies of the fuzz targets (`crates/anymongo-proto/fuzz`), shared with the bounded
//! property tests that run them in `cargo test` (and so in `.ci/run`). Each takes arbitrary
//! bytes and panics only when an invariant breaks; malformed input must be a typed error.

use bson::{Document, RawDocument};

use crate::error::ErrorKind;
use crate::wire::raw::{decode, decode_document, to_bson, validate_document, MAX_DOCUMENT_DEPTH};
use crate::wire::{encode, Decoder};

/// The wire `Decoder` on arbitrary bytes fed in arbitrary chunks. Byte 0 = how many chunk
/// sizes follow (0-7); then those sizes (0 means 1); the rest is the stream, fed in those
/// sizes (cycled), alternately through `feed` and `spare`/`commit`. After an error the decoder
/// repeats it; every decoded message re-encodes and decodes to itself.
pub fn decoder(data: &[u8]) {
    const MAX: usize = 1 << 20;
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
                Ok(Some(msg)) => {
                    let mut bytes = Vec::new();
                    encode(&msg, None, &mut bytes).expect("a decoded message re-encodes");
                    let mut again = Decoder::new(bytes.len());
                    again.feed(&bytes);
                    let decoded = again.decode().expect("re-decodes").expect("whole");
                    assert_eq!(decoded.body, msg.body);
                }
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
}

/// The connection-string parser on arbitrary UTF-8: never panics; an error is
/// `InvalidArgument`; a parsed URI's options re-validate.
pub fn uri(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match crate::uri::parse(s) {
        Ok(parsed) => assert!(parsed.options.validate().is_ok(), "{s}"),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::InvalidArgument { .. }),
            "{s}: {e:?}"
        ),
    }
}

/// Reply bytes to `Document`, `Bson`, raw and serde values: never panics or overflows the
/// stack; every path agrees with full validation; an accepted document re-encodes to a
/// document the bson crate reads the same way.
pub fn reply_document(data: &[u8]) {
    let valid = validate_document(data).is_ok();
    let doc = decode_document(data);
    let generic = decode::<Document>(data);
    assert_eq!(doc.is_ok(), generic.is_ok());
    let raw = decode::<bson::RawDocumentBuf>(data);
    assert_eq!(
        raw.is_ok(),
        valid,
        "raw documents are exactly the valid ones"
    );
    let typed = decode::<std::collections::BTreeMap<String, bson::Bson>>(data);
    for e in [doc.as_ref().err(), raw.as_ref().err(), typed.as_ref().err()]
        .into_iter()
        .flatten()
    {
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidResponse { .. } | ErrorKind::Bson { .. }
            ),
            "{e:?}"
        );
    }
    if let Ok(d) = &doc {
        assert!(valid, "the one-pass decoder accepted an invalid document");
        let shallow = crate::wire::raw::validate_document_depth(data).unwrap_or(usize::MAX) <= 32;
        if shallow {
            let raw = RawDocument::from_bytes(data).expect("valid");
            let theirs = Document::try_from(raw).expect("the bson crate reads it too");
            let enc = |d: &Document| bson::RawDocumentBuf::try_from(d).map(|r| r.into_bytes());
            assert_eq!(enc(d).ok(), enc(&theirs).ok());
        }
    } else if valid {
        // Only nesting beyond the limit makes a valid document undecodable.
        let depth = crate::wire::raw::validate_document_depth(data).unwrap_or(0);
        assert!(
            depth > MAX_DOCUMENT_DEPTH,
            "a valid document of depth {depth} refused"
        );
    }
    if let Ok(raw) = RawDocument::from_bytes(data) {
        for (_, value) in raw.iter().flatten() {
            let _ = to_bson(value);
        }
    }
}

/// Handshake and command replies: `check_ok`, the handshake's `StreamDescription`, and
/// discovery's reading of a hello, on arbitrary bytes: never a panic; `check_ok` fails only
/// with a command error or an invalid response.
pub fn handshake_reply(data: &[u8]) {
    let Ok(raw) = RawDocument::from_bytes(data) else {
        return;
    };
    if let Err(e) = crate::operation::check_ok(raw) {
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Command(_) | ErrorKind::InvalidResponse { .. }
            ),
            "{e:?}"
        );
    }
    if let Ok(doc) = crate::wire::raw::to_document(raw) {
        if let Ok(d) = crate::operation::StreamDescription::parse(&doc, &[]) {
            let _ = d.check_wire_version();
            assert!(d.max_message_size_bytes > 0 && d.max_bson_object_size > 0);
        }
    }
    let now = std::time::Instant::now();
    let address = crate::options::ServerAddress::tcp("fuzz", 27017);
    let _ = crate::sdam::ServerDescription::from_raw_hello(address, raw, None, now);
}

#[cfg(test)]
mod tests {
    //! Bounded versions of the fuzz targets, run by `cargo test` (and so by `.ci/run`): random
    //! inputs plus mutations of valid ones, a few hundred cases each.

    use super::*;
    use proptest::prelude::*;

    /// A valid reply with nested documents, arrays and every common type, to mutate.
    fn seed_reply() -> Vec<u8> {
        let d = bson::doc! {
            "ok": 0, "code": 10107, "errmsg": "not primary", "codeName": "NotWritablePrimary",
            "topologyVersion": { "processId": bson::oid::ObjectId::from_bytes([1; 12]), "counter": 3_i64 },
            "maxWireVersion": 21, "minWireVersion": 0, "maxMessageSizeBytes": 48_000_000,
            "hosts": ["a:1", "b:2"], "setName": "rs", "nested": { "a": [1, { "b": [2.5, null] }] },
        };
        bson::RawDocumentBuf::try_from(&d).unwrap().into_bytes()
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let seed = seed_reply();
        let n = seed.len();
        proptest::collection::vec((0..n, any::<u8>()), 0..6).prop_map(move |edits| {
            let mut b = seed.clone();
            for (i, v) in edits {
                b[i] = v;
            }
            b
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decoder_target(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            decoder(&data);
        }

        #[test]
        fn uri_target(s in "mongodb(\\+srv)?://[a-zA-Z0-9%:@/?&=,.\\[\\]$ü_-]{0,80}") {
            uri(s.as_bytes());
        }

        #[test]
        fn reply_document_target(data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            mutated(),
        ]) {
            reply_document(&data);
        }

        #[test]
        fn handshake_reply_target(data in mutated()) {
            handshake_reply(&data);
        }
    }

    #[test]
    fn the_targets_take_deep_and_hostile_inputs() {
        for depth in [100, 201, 100_000] {
            let deep = crate::wire::raw::nested_document(depth, 0x03);
            reply_document(&deep);
            handshake_reply(&deep);
        }
        uri(b"mongodb://user:%2FSeCrEt/x@localhost");
    }
}
