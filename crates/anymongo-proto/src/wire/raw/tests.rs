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
            let fast = fast_decode::document(&bad, MAX_DOCUMENT_DEPTH).ok();
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

/// A struct holding a document, so that serde (not the one-pass decoder) reads the nesting.
#[derive(serde::Deserialize, Debug)]
struct Holder {
    #[serde(rename = "0")]
    inner: bson::Bson,
}

/// Runs `f` on a thread with a 256 KiB stack (a tokio worker has 2 MiB).
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn is_invalid_response(e: &Error) -> bool {
    matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. })
}

#[test]
fn documents_as_deep_as_the_server_allows_decode_on_a_small_stack() {
    // MongoDB stores 100 levels; a reply adds its envelope. Every way a reply becomes a value
    // reads the deepest document the driver accepts, in any build, on 256 KiB (the values are
    // compared on the test's own thread: comparing is recursive, and not the driver's doing).
    for kind in [0x03, 0x04] {
        let bytes = nested_document(MAX_DOCUMENT_DEPTH, kind);
        let input = bytes.clone();
        let (doc, raw, value, holder, again) = on_small_stack(move || {
            let doc: Document = decode(&input).unwrap();
            let raw: RawDocumentBuf = decode(&input).unwrap();
            let value = to_bson(bson::RawBsonRef::Document(&raw)).unwrap();
            let holder: Holder = decode(&input).unwrap();
            let again: Holder = deserialize(&input).unwrap();
            (doc, raw, value, holder, again)
        });
        assert_eq!(raw.as_bytes(), &bytes[..]);
        assert_eq!(RawDocumentBuf::try_from(&doc).unwrap(), raw);
        assert_eq!(value, bson::Bson::Document(doc.clone()));
        assert_eq!(Some(&holder.inner), doc.get("0"));
        assert_eq!(again.inner, holder.inner);
        // Dropping them is not recursive beyond what a small stack takes either.
        on_small_stack(move || drop((doc, value, holder, again)));
    }
}

#[test]
fn deeper_documents_are_errors_never_a_stack_overflow() {
    on_small_stack(|| {
        for depth in [MAX_DOCUMENT_DEPTH + 1, 1_000, 100_000] {
            let bytes = nested_document(depth, 0x03);
            let e = decode::<Document>(&bytes).unwrap_err();
            assert!(is_invalid_response(&e), "{e}");
            assert!(e.to_string().contains("nested more than 200 levels"), "{e}");
            let e = decode::<Holder>(&bytes).unwrap_err();
            assert!(is_invalid_response(&e), "{e}");
            let raw = bson::RawDocument::from_bytes(&bytes).unwrap();
            assert!(is_invalid_response(&to_document(raw).unwrap_err()));
            // Raw documents are handed out at any depth: nothing walks them recursively.
            let raw: RawDocumentBuf = decode(&bytes).unwrap();
            assert_eq!(raw.as_bytes().len(), bytes.len());
        }
    });
}

#[test]
fn deep_error_replies_and_hellos_are_read_without_recursion() {
    on_small_stack(|| {
        // `{ok: 0, topologyVersion: <deep>}`, `{ok: 1, hosts: <deep>}` as an error reply and a
        // hello: the command error loses its topologyVersion (it cannot be a valid one), the
        // hello counts as a failed check; neither overflows the stack.
        for depth in [150, 100_000] {
            let deep = nested_document(depth, 0x03);
            let mut reply = Vec::new();
            reply.extend_from_slice(&[0; 4]);
            reply.extend_from_slice(b"\x01ok\0");
            reply.extend_from_slice(&0f64.to_le_bytes());
            reply.extend_from_slice(b"\x03topologyVersion\0");
            reply.extend_from_slice(&deep);
            reply.push(0);
            let len = i32::try_from(reply.len()).unwrap();
            reply[..4].copy_from_slice(&len.to_le_bytes());
            let raw = bson::RawDocument::from_bytes(&reply).unwrap();
            let e = crate::operation::check_ok(raw).unwrap_err();
            match e.kind() {
                crate::error::ErrorKind::Command(c) => {
                    assert_eq!(c.topology_version.is_some(), depth < MAX_DOCUMENT_DEPTH)
                }
                other => panic!("{other:?}"),
            }
            let now = std::time::Instant::now();
            let address = crate::options::ServerAddress::tcp("h", 1);
            let sd = crate::sdam::ServerDescription::from_raw_hello(address, raw, None, now);
            if depth > MAX_DOCUMENT_DEPTH {
                assert!(sd.error.unwrap().contains("nested more than"));
            }
        }
    });
}
