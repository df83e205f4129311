//! The raw-BSON readers against each other: every path rejects exactly what full validation
//! rejects, and a corrupted reply is a typed error wherever the corruption lands.

use super::fast_decode;
use super::*;
use crate::operation::CursorInfo;
use bson::{doc, Document};

#[test]
fn batch_documents_decode_to_raw_documents_and_types() {
    let raw = RawDocumentBuf::try_from(&doc! { "a": 1, "b": "x" }).unwrap();
    let out: RawDocumentBuf = decode(raw.as_bytes()).unwrap();
    assert_eq!(out, raw);
    let parsed: Document = decode(raw.as_bytes()).unwrap();
    assert_eq!(parsed, doc! { "a": 1, "b": "x" });
    #[derive(serde::Deserialize, Debug)]
    struct A {
        #[allow(dead_code)]
        a: String,
    }
    assert!(
        decode::<A>(raw.as_bytes()).is_err(),
        "a type mismatch is an error"
    );
    assert_eq!(cast::<i32, i32>(7), Some(7));
    assert_eq!(cast::<i32, u8>(7), None);
}

/// A struct that reads one field: serde skips the others, so only the validation before it
/// can notice they are malformed.
#[derive(serde::Deserialize, Debug)]
struct OnlyA {
    #[allow(dead_code)]
    a: i32,
}

#[test]
fn every_path_rejects_exactly_what_full_validation_rejects() {
    let good = RawDocumentBuf::try_from(&doc! {
        "a": 1, "s": "héllo", "d": { "x": [1, "two", { "y": true }] }, "f": 1.5,
    })
    .unwrap()
    .into_bytes();
    let mut rejected = 0;
    for i in 0..good.len() {
        for v in [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, good[i].wrapping_add(1)] {
            let mut bad = good.clone();
            bad[i] = v;
            let valid = validate_document(&bad).is_ok();
            rejected += usize::from(!valid);
            let fast = fast_decode::document(&bad);
            assert!(
                valid || fast.is_none(),
                "byte {i} = {v:#x}: fast path accepted"
            );
            let as_doc = decode::<Document>(&bad);
            let as_raw = decode::<RawDocumentBuf>(&bad);
            let as_a = decode::<OnlyA>(&bad);
            if valid {
                assert!(as_raw.is_ok(), "byte {i} = {v:#x}");
                assert!(as_doc.is_ok(), "byte {i} = {v:#x}");
            } else {
                for e in [as_doc.err(), as_raw.err(), as_a.err()] {
                    let e = e.expect("a malformed document is an error");
                    assert!(
                        matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
                        "byte {i} = {v:#x}: {e:?}"
                    );
                }
            }
        }
    }
    assert!(rejected > 0);
}

/// What a client gets from a `find` reply's bytes: the wire decoder, `check_ok`, the cursor
/// info, then every batch document decoded as the cursor does (fast path, else validated).
fn client_result(message: &[u8]) -> Result<Vec<Document>> {
    let mut decoder = crate::wire::Decoder::new(1 << 20);
    decoder.feed(message);
    let reply = decoder
        .decode()?
        .ok_or_else(|| Error::internal("incomplete"))?
        .body
        .into_reply_document()?;
    crate::operation::check_ok(&reply)?;
    let mut info = CursorInfo::parse(reply)?;
    let mut out = Vec::new();
    while let Some(bytes) = info.batch.pop_front() {
        out.push(decode::<Document>(bytes)?);
    }
    Ok(out)
}

#[test]
fn corrupted_replies_are_errors_that_agree_with_full_validation() {
    use crate::wire::{encode, Body, Message, OpMsg};
    let batch = vec![
        doc! { "_id": 1, "text": "héllo", "tags": ["a", "b"], "n": 1.5 },
        doc! { "_id": 2, "user": { "name": "x", "ok": true, "at": bson::DateTime::from_millis(3) } },
    ];
    let reply = RawDocumentBuf::try_from(&doc! {
        "cursor": { "firstBatch": batch.clone(), "id": 0i64, "ns": "db.coll" }, "ok": 1.0,
    })
    .unwrap();
    let mut message = Vec::new();
    encode(
        &Message::new(1, Body::Msg(OpMsg::new(reply.clone()))),
        None,
        &mut message,
    )
    .unwrap();
    assert_eq!(client_result(&message).unwrap(), batch);
    // The reply document starts after the header, the flags and the section kind.
    let body_at = 16 + 4 + 1;
    let cursor = reply.get_document("cursor").unwrap();
    let array = cursor.get_array("firstBatch").unwrap().as_bytes();
    let array_at = body_at + (array.as_ptr() as usize - reply.as_bytes().as_ptr() as usize);
    let docs = array_at + 4..array_at + array.len() - 1;
    let mut errors = 0;
    for i in body_at..message.len() {
        for v in [
            0x00,
            0x01,
            0x03,
            0x7F,
            0x80,
            0xFF,
            message[i].wrapping_add(1),
        ] {
            let mut bad = message.clone();
            bad[i] = v;
            let reply_valid = validate_document(&bad[body_at..]).is_ok();
            match client_result(&bad) {
                Ok(got) => {
                    // Whatever is handed out, full validation and the bson crate agree on.
                    let again = bson::RawDocument::from_bytes(&bad[body_at..])
                        .ok()
                        .and_then(|r| CursorInfo::parse(r.to_owned()).ok())
                        .expect("it parsed once");
                    for (bytes, doc) in again.batch.iter().zip(&got) {
                        validate_document(bytes).expect("handed-out documents are valid");
                        let raw = bson::RawDocument::from_bytes(bytes).unwrap();
                        let theirs = Document::try_from(raw).unwrap();
                        let enc = |d: &Document| RawDocumentBuf::try_from(d).unwrap();
                        assert_eq!(enc(doc), enc(&theirs), "byte {i} = {v:#x}");
                    }
                }
                Err(e) => {
                    errors += 1;
                    assert!(
                        matches!(
                            e.kind(),
                            crate::error::ErrorKind::InvalidResponse { .. }
                                | crate::error::ErrorKind::Command(_)
                        ),
                        "byte {i} = {v:#x}: {e:?}"
                    );
                }
            }
            // A corrupted batch that full validation rejects is always an error.
            if docs.contains(&i) && !reply_valid {
                let e = client_result(&bad).expect_err("a malformed batch is an error");
                assert!(
                    matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
                    "byte {i} = {v:#x}: {e:?}"
                );
            }
        }
    }
    assert!(errors > 0);
}
