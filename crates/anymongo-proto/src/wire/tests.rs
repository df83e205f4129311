//! Unit and property tests of the wire codec.

use bson::{doc, rawdoc, Bson, Document, RawDocumentBuf};
use proptest::prelude::*;

use super::compression::{NOOP_ID, SNAPPY_ID};
use super::*;
use crate::options::Compressor;

const MAX: usize = DEFAULT_MAX_MESSAGE_SIZE;

fn compressors() -> Vec<Compressor> {
    vec![
        Compressor::Snappy,
        Compressor::Zlib { level: None },
        Compressor::Zlib { level: Some(1) },
        Compressor::Zstd,
    ]
}

fn encoded(msg: &Message, c: Option<&Compressor>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, c, &mut out).expect("encode");
    out
}

/// Decodes every message in `bytes`, fed all at once.
fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, WireError> {
    let mut d = Decoder::new(MAX);
    d.feed(bytes);
    let mut out = Vec::new();
    while let Some(m) = d.decode()? {
        out.push(m);
    }
    assert_eq!(d.buffered(), 0, "trailing bytes left in the decoder");
    Ok(out)
}

fn decode_one(bytes: &[u8]) -> Result<Message, WireError> {
    let mut d = Decoder::new(MAX);
    d.feed(bytes);
    d.decode().map(|m| m.expect("a whole message"))
}

/// Builds a message from a header (length filled in) and raw body bytes.
fn raw_message(op_code: i32, body: &[u8]) -> Vec<u8> {
    let h = Header {
        length: (HEADER_LEN + body.len()) as i32,
        request_id: 1,
        response_to: 0,
        op_code,
    };
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn sample_msg() -> Message {
    let body = rawdoc! { "insert": "coll", "$db": "test", "ordered": true };
    let docs = vec![
        rawdoc! { "_id": 1, "x": "one" },
        rawdoc! { "_id": 2, "nested": { "a": [1, 2, { "b": null }] } },
    ];
    Message {
        request_id: 42,
        response_to: 7,
        body: Body::Msg(OpMsg::new(body).with_sequence("documents", docs)),
        compressor_id: None,
    }
}

fn sample_query() -> Message {
    Message::new(
        3,
        Body::Query(OpQuery {
            flags: 4,
            full_collection_name: "admin.$cmd".to_string(),
            number_to_skip: 0,
            number_to_return: -1,
            query: rawdoc! { "isMaster": 1, "client": { "driver": "anymongo" } },
            return_fields_selector: None,
        }),
    )
}

fn sample_reply(n: usize) -> Message {
    Message {
        request_id: 9,
        response_to: 3,
        body: Body::Reply(OpReply {
            response_flags: 8,
            cursor_id: -5,
            starting_from: 0,
            documents: (0..n)
                .map(|i| rawdoc! { "i": i as i32, "ok": 1.0 })
                .collect(),
        }),
        compressor_id: None,
    }
}

/// Every sample message, with the expected decoded form for each compressor setting.
fn all_samples() -> Vec<Message> {
    let mut checksummed = sample_msg();
    if let Body::Msg(m) = &mut checksummed.body {
        m.flags.insert(MsgFlags::CHECKSUM_PRESENT);
        m.flags.insert(MsgFlags::EXHAUST_ALLOWED);
    }
    let mut with_selector = sample_query();
    if let Body::Query(q) = &mut with_selector.body {
        q.return_fields_selector = Some(rawdoc! { "a": 1 });
    }
    vec![
        Message::new(
            1,
            Body::Msg(OpMsg::new(rawdoc! { "ping": 1, "$db": "admin" })),
        ),
        sample_msg(),
        checksummed,
        sample_query(),
        with_selector,
        sample_reply(0),
        sample_reply(1),
        sample_reply(3),
    ]
}

// ---------------------------------------------------------------------------------------------
// Layout (against the spec, not just round trips)

#[test]
fn op_msg_layout_matches_the_spec() {
    let body = rawdoc! { "ping": 1 };
    let seq_doc = rawdoc! { "a": 1 };
    let msg = Message {
        request_id: 0x0102_0304,
        response_to: 5,
        body: Body::Msg(OpMsg {
            flags: MsgFlags::MORE_TO_COME,
            body: body.clone(),
            sequences: vec![DocumentSequence {
                identifier: "ids".to_string(),
                documents: vec![seq_doc.clone()],
            }],
        }),
        compressor_id: None,
    };
    let bytes = encoded(&msg, None);
    let mut expected = Vec::new();
    let total = 16 + 4 + 1 + body.as_bytes().len() + 1 + 4 + 4 + seq_doc.as_bytes().len();
    expected.extend_from_slice(&(total as i32).to_le_bytes());
    expected.extend_from_slice(&[4, 3, 2, 1]);
    expected.extend_from_slice(&5i32.to_le_bytes());
    expected.extend_from_slice(&2013i32.to_le_bytes());
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.push(0);
    expected.extend_from_slice(body.as_bytes());
    expected.push(1);
    expected.extend_from_slice(&((4 + 4 + seq_doc.as_bytes().len()) as i32).to_le_bytes());
    expected.extend_from_slice(b"ids\0");
    expected.extend_from_slice(seq_doc.as_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn checksum_is_crc32c_over_everything_before_it() {
    let mut msg = OpMsg::new(rawdoc! { "hello": 1 });
    msg.flags.insert(MsgFlags::CHECKSUM_PRESENT);
    let bytes = encoded(&Message::new(1, Body::Msg(msg)), None);
    let (head, tail) = bytes.split_at(bytes.len() - 4);
    assert_eq!(read_i32(&bytes, 0), Some(bytes.len() as i32));
    assert_eq!(tail, crc32c::crc32c(head).to_le_bytes());
}

#[test]
fn op_compressed_layout() {
    let msg = sample_msg();
    let plain = encoded(&msg, None);
    let bytes = encoded(&msg, Some(&Compressor::Snappy));
    let h = Header::parse(&bytes).unwrap();
    assert_eq!(h.length as usize, bytes.len());
    assert_eq!(h.op_code, OpCode::Compressed as i32);
    assert_eq!((h.request_id, h.response_to), (42, 7));
    assert_eq!(read_i32(&bytes, 16), Some(2013));
    assert_eq!(read_i32(&bytes, 20), Some((plain.len() - 16) as i32));
    assert_eq!(bytes[24], SNAPPY_ID);
    let inner = snap::raw::Decoder::new()
        .decompress_vec(&bytes[25..])
        .unwrap();
    assert_eq!(inner, &plain[16..]);
}

#[test]
fn encode_appends_to_existing_bytes() {
    let msg = sample_msg();
    let one = encoded(&msg, None);
    let mut out = b"xyz".to_vec();
    encode(&msg, None, &mut out).unwrap();
    encode(&msg, None, &mut out).unwrap();
    assert_eq!(&out[..3], b"xyz");
    assert_eq!(&out[3..3 + one.len()], &one[..]);
    assert_eq!(&out[3 + one.len()..], &one[..]);
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_every_body_type_uncompressed() {
    let mut all = Vec::new();
    for msg in all_samples() {
        let bytes = encoded(&msg, None);
        assert_eq!(decode_one(&bytes).unwrap(), msg);
        all.extend_from_slice(&bytes);
    }
    assert_eq!(decode_all(&all).unwrap(), all_samples());
}

#[test]
fn round_trip_every_body_type_with_every_compressor() {
    for c in compressors() {
        for msg in all_samples() {
            let decoded = decode_one(&encoded(&msg, Some(&c))).unwrap();
            assert_eq!(decoded.compressor_id, Some(c.id()));
            assert_eq!(
                Message {
                    compressor_id: None,
                    ..decoded
                },
                msg,
                "{c:?}"
            );
        }
    }
}

#[test]
fn noop_compressed_message_decodes() {
    let msg = sample_msg();
    let plain = encoded(&msg, None);
    let mut body = Vec::new();
    body.extend_from_slice(&2013i32.to_le_bytes());
    body.extend_from_slice(&((plain.len() - 16) as i32).to_le_bytes());
    body.push(NOOP_ID);
    body.extend_from_slice(&plain[16..]);
    let mut bytes = raw_message(2012, &body);
    bytes[4..8].copy_from_slice(&42i32.to_le_bytes());
    bytes[8..12].copy_from_slice(&7i32.to_le_bytes());
    let decoded = decode_one(&bytes).unwrap();
    assert_eq!(decoded.compressor_id, Some(0));
    assert_eq!(decoded.body, msg.body);
}

#[test]
fn from_document_and_accessors() {
    let m = OpMsg::from_document(&doc! { "find": "c", "filter": { "x": 1 } }).unwrap();
    assert_eq!(m.body.get_str("find").unwrap(), "c");
    assert_eq!(m.flags, MsgFlags::default());
    let m = m.with_sequence("documents", vec![rawdoc! {}]);
    assert_eq!(m.sequence("documents").unwrap().documents.len(), 1);
    assert!(m.sequence("updates").is_none());
}

#[test]
fn reply_document_accessors() {
    let msg = sample_msg();
    assert!(msg.body.as_msg().is_some());
    let Body::Msg(m) = &msg.body else { panic!() };
    assert_eq!(msg.body.clone().into_msg().as_ref(), Some(m));
    assert_eq!(msg.body.clone().into_reply_document().unwrap(), m.body);
    let Body::Reply(r) = sample_reply(1).body else {
        panic!()
    };
    assert_eq!(
        sample_reply(1).body.into_reply_document().unwrap(),
        r.documents[0]
    );
    for bad in [
        sample_reply(0).body,
        sample_reply(2).body,
        sample_query().body,
    ] {
        assert!(bad.as_msg().is_none());
        assert!(matches!(
            bad.into_reply_document(),
            Err(WireError::Malformed(_))
        ));
    }
}

#[test]
fn msg_flags_operations() {
    let mut f = MsgFlags::default();
    assert!(!f.contains(MsgFlags::MORE_TO_COME));
    f.insert(MsgFlags::MORE_TO_COME);
    f.insert(MsgFlags::CHECKSUM_PRESENT);
    assert!(f.contains(MsgFlags::MORE_TO_COME | MsgFlags::CHECKSUM_PRESENT));
    f.remove(MsgFlags::MORE_TO_COME);
    assert_eq!(f, MsgFlags::CHECKSUM_PRESENT);
    assert_eq!(MsgFlags::EXHAUST_ALLOWED.0, 1 << 16);
    assert_eq!(MsgFlags(1 << 5 | 1 << 20).unknown_required(), 1 << 5);
}

// ---------------------------------------------------------------------------------------------
// Incremental decoding

#[test]
fn one_byte_at_a_time() {
    for c in [None, Some(Compressor::Zstd)] {
        let mut bytes = Vec::new();
        let msgs = all_samples();
        for m in &msgs {
            encode(m, c.as_ref(), &mut bytes).unwrap();
        }
        let mut d = Decoder::new(MAX);
        let mut got = Vec::new();
        for b in &bytes {
            d.feed(std::slice::from_ref(b));
            while let Some(m) = d.decode().unwrap() {
                got.push(Message {
                    compressor_id: None,
                    ..m
                });
            }
        }
        assert_eq!(got, msgs);
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn two_and_a_half_messages_in_one_chunk() {
    let a = encoded(&sample_msg(), None);
    let b = encoded(&sample_reply(2), None);
    let mut chunk = a.clone();
    chunk.extend_from_slice(&b);
    chunk.extend_from_slice(&a[..10]);
    let mut d = Decoder::new(MAX);
    d.feed(&chunk);
    assert_eq!(d.decode().unwrap(), Some(sample_msg()));
    assert_eq!(d.decode().unwrap(), Some(sample_reply(2)));
    assert_eq!(d.decode().unwrap(), None);
    assert_eq!(d.buffered(), 10, "a partial message stays buffered");
    d.feed(&a[10..]);
    assert_eq!(d.decode().unwrap(), Some(sample_msg()));
    assert_eq!(d.decode().unwrap(), None);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn spare_and_commit_without_copies() {
    let bytes = encoded(&sample_reply(50), None);
    let mut d = Decoder::new(MAX);
    let mut src = &bytes[..];
    let mut reads = 0;
    let mut got = None;
    while got.is_none() {
        let spare = d.spare(8);
        assert!(spare.len() >= 8);
        // The first read is short; once the header is in, the spare region fits the message.
        let n = spare
            .len()
            .min(src.len())
            .min(if reads == 0 { 20 } else { usize::MAX });
        spare[..n].copy_from_slice(&src[..n]);
        src = &src[n..];
        d.commit(n);
        reads += 1;
        got = d.decode().unwrap();
    }
    assert_eq!(
        reads, 2,
        "the second spare region held the rest of the message"
    );
    assert_eq!(got, Some(sample_reply(50)));
}

#[test]
fn buffer_is_compacted_and_reused() {
    let bytes = encoded(&sample_msg(), None);
    let mut d = Decoder::new(MAX);
    // Leave a partial message after each whole one so the start offset moves forward.
    let mut stream = Vec::new();
    for _ in 0..2000 {
        stream.extend_from_slice(&bytes);
    }
    let mut decoded = 0;
    for chunk in stream.chunks(bytes.len() + 7) {
        d.feed(chunk);
        while d.decode().unwrap().is_some() {
            decoded += 1;
        }
    }
    assert_eq!(decoded, 2000);
    assert!(
        d.spare(1).len() < 64 * 1024,
        "buffer stayed small while streaming"
    );
}

#[test]
fn spare_is_never_empty_and_the_decoder_is_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Decoder>();
    let mut d = Decoder::new(MAX);
    assert!(!d.spare(0).is_empty());
    let n = d.spare(0).len();
    d.commit(n);
    assert!(!d.spare(0).is_empty(), "a full buffer grows");
}

#[test]
fn buffered_reports_a_partial_message() {
    let bytes = encoded(&sample_msg(), None);
    let mut d = Decoder::new(MAX);
    d.feed(&bytes[..bytes.len() - 1]);
    assert_eq!(d.decode().unwrap(), None);
    assert_eq!(d.buffered(), bytes.len() - 1);
    assert!(!d.is_poisoned());
}

// ---------------------------------------------------------------------------------------------
// Errors

fn decode_err(bytes: &[u8]) -> WireError {
    match decode_one(bytes) {
        Err(e) => e,
        Ok(m) => panic!("expected an error, decoded {m:?}"),
    }
}

fn msg_body(flags: u32, sections: &[u8]) -> Vec<u8> {
    let mut b = flags.to_le_bytes().to_vec();
    b.extend_from_slice(sections);
    b
}

fn kind0(doc: &RawDocumentBuf) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(doc.as_bytes());
    v
}

#[test]
fn truncated_header_waits_for_more() {
    let mut d = Decoder::new(MAX);
    d.feed(&[20, 0, 0, 0, 1, 0]);
    assert_eq!(d.decode(), Ok(None));
}

#[test]
fn length_shorter_than_a_header() {
    let mut bytes = raw_message(2013, &[]);
    bytes[0..4].copy_from_slice(&15i32.to_le_bytes());
    assert_eq!(
        decode_err(&bytes),
        WireError::MessageTooShort { length: 15 }
    );
    bytes[0..4].copy_from_slice(&(-1i32).to_le_bytes());
    assert_eq!(
        decode_err(&bytes),
        WireError::MessageTooShort { length: -1 }
    );
}

#[test]
fn length_shorter_than_the_opcode_needs() {
    // An OP_MSG of 18 bytes cannot hold its flags.
    let bytes = raw_message(2013, &[0, 0]);
    assert_eq!(
        decode_err(&bytes),
        WireError::MessageTooShort { length: 18 }
    );
    let bytes = raw_message(1, &[0; 10]);
    assert!(matches!(
        decode_err(&bytes),
        WireError::MessageTooShort { .. }
    ));
}

#[test]
fn length_over_the_maximum_fails_before_the_body_arrives() {
    let mut d = Decoder::new(1000);
    let mut header = raw_message(2013, &[]);
    header[0..4].copy_from_slice(&1001i32.to_le_bytes());
    d.feed(&header);
    assert_eq!(
        d.decode(),
        Err(WireError::MessageTooLarge {
            length: 1001,
            max: 1000
        })
    );
    // set_max_message_size applies to later messages.
    let bytes = encoded(&sample_msg(), None);
    let mut d = Decoder::new(10);
    d.set_max_message_size(bytes.len());
    d.feed(&bytes);
    assert!(d.decode().unwrap().is_some());
}

#[test]
fn unknown_opcode() {
    let bytes = raw_message(2010, &[0; 8]);
    assert_eq!(decode_err(&bytes), WireError::UnknownOpCode(2010));
    // Known as soon as the header is in.
    let mut d = Decoder::new(MAX);
    d.feed(&bytes[..16]);
    assert_eq!(d.decode(), Err(WireError::UnknownOpCode(2010)));
}

#[test]
fn unknown_section_kind() {
    let doc = rawdoc! { "ok": 1 };
    let mut sections = kind0(&doc);
    sections.extend_from_slice(&[2, 5, 0, 0, 0, 0]);
    let bytes = raw_message(2013, &msg_body(0, &sections));
    assert_eq!(decode_err(&bytes), WireError::UnknownSectionKind(2));
}

#[test]
fn unknown_required_flag_bits_fail_optional_ones_are_ignored() {
    let doc = rawdoc! { "ok": 1 };
    let bytes = raw_message(2013, &msg_body(1 << 3, &kind0(&doc)));
    assert_eq!(decode_err(&bytes), WireError::UnknownRequiredFlags(1 << 3));
    let bytes = raw_message(2013, &msg_body(1 << 20 | 1 << 1, &kind0(&doc)));
    let m = decode_one(&bytes).unwrap();
    let Body::Msg(m) = m.body else { panic!() };
    assert!(m.flags.contains(MsgFlags::MORE_TO_COME));
    assert_eq!(m.flags.0, 1 << 20 | 1 << 1);
}

#[test]
fn bad_checksum() {
    let mut msg = sample_msg();
    if let Body::Msg(m) = &mut msg.body {
        m.flags.insert(MsgFlags::CHECKSUM_PRESENT);
    }
    let good = encoded(&msg, None);
    // Corrupt a body byte (a value, so the BSON stays valid).
    let mut bad = good.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x01;
    assert!(matches!(
        decode_err(&bad),
        WireError::ChecksumMismatch { .. }
    ));
    // Corrupt the checksum itself.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let expected = read_u32(&bad, bad.len() - 4).unwrap();
    let actual = read_u32(&good, good.len() - 4).unwrap();
    assert_eq!(
        decode_err(&bad),
        WireError::ChecksumMismatch { expected, actual }
    );
    // A checksum flag with no room for the checksum.
    let bytes = raw_message(2013, &msg_body(1, &[0, 0]));
    assert!(matches!(
        decode_err(&bytes),
        WireError::MessageTooShort { .. }
    ));
}

#[test]
fn checksum_survives_compression() {
    let mut msg = sample_msg();
    if let Body::Msg(m) = &mut msg.body {
        m.flags.insert(MsgFlags::CHECKSUM_PRESENT);
    }
    for c in compressors() {
        let d = decode_one(&encoded(&msg, Some(&c))).unwrap();
        assert_eq!(d.body, msg.body);
    }
}

/// `{"s": "hi"}` with the string's length replaced by `len`.
fn doc_with_string_len(len: i32) -> Vec<u8> {
    let mut d = rawdoc! { "s": "hi" }.into_bytes();
    d[7..11].copy_from_slice(&len.to_le_bytes());
    d
}

#[test]
fn invalid_bson_inside_a_document_is_left_to_its_reader() {
    // The decoder checks framing only: a document whose length and terminator are right but
    // whose elements are malformed decodes, and whoever reads it finds the error.
    let bad = doc_with_string_len(100);
    let mut sections = vec![0];
    sections.extend_from_slice(&bad);
    let bytes = raw_message(2013, &msg_body(0, &sections));
    let msg = decode_one(&bytes).expect("the framing is right");
    let body = msg.body.into_reply_document().unwrap();
    assert!(matches!(
        validate_document(body.as_bytes()),
        Err(WireError::InvalidBson(_))
    ));
    assert!(body.get("s").is_err(), "the raw accessors report it");
    let err = crate::operation::check_ok(&body).unwrap_err();
    assert!(
        matches!(err.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
        "{err:?}"
    );
    // A document whose last byte is not NUL is a framing error.
    let mut bad = rawdoc! { "a": 1 }.into_bytes();
    let last = bad.len() - 1;
    bad[last] = 1;
    let mut sections = vec![0];
    sections.extend_from_slice(&bad);
    let bytes = raw_message(2013, &msg_body(0, &sections));
    assert!(matches!(decode_err(&bytes), WireError::InvalidBson(_)));
}

#[test]
fn invalid_utf8_and_bad_element_type_are_invalid_bson() {
    let mut d = rawdoc! { "s": "hi" }.into_bytes();
    d[11] = 0xff; // the 'h'
    assert!(matches!(
        validate_document(&d),
        Err(WireError::InvalidBson(_))
    ));
    let mut d = rawdoc! { "s": "hi" }.into_bytes();
    d[4] = 0x55; // element type
    assert!(matches!(
        validate_document(&d),
        Err(WireError::InvalidBson(_))
    ));
}

#[test]
fn invalid_bson_deep_inside_nested_documents_and_arrays() {
    let good = rawdoc! { "a": { "b": [1, { "c": "xyz" }] } };
    validate_document(good.as_bytes()).unwrap();
    let mut bad = good.into_bytes();
    // Break the innermost string's terminator.
    let end = bad.len();
    let nul = end - 5; // doc, array, inner doc terminators + string NUL
    assert_eq!(bad[nul], 0);
    bad[nul] = b'!';
    assert!(matches!(
        validate_document(&bad),
        Err(WireError::InvalidBson(_))
    ));
    let scope = rawdoc! { "js": (bson::RawJavaScriptCodeWithScope {
        code: "f()".to_string(),
        scope: rawdoc! { "v": 1 },
    }) };
    validate_document(scope.as_bytes()).unwrap();
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let depth = 100_000;
    let mut bytes = Vec::new();
    let mut len = 5 + 8 * depth as i32;
    for _ in 0..depth {
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&[3, b'a', 0]);
        len -= 8;
    }
    bytes.extend_from_slice(&[5, 0, 0, 0, 0]);
    bytes.extend(std::iter::repeat_n(0u8, depth));
    validate_document(&bytes).unwrap();
}

#[test]
fn document_longer_than_its_section() {
    let doc = rawdoc! { "a": 1 };
    let mut bytes = kind0(&doc);
    bytes.truncate(bytes.len() - 1); // declared length now exceeds what is there
    let bytes = raw_message(2013, &msg_body(0, &bytes));
    assert!(matches!(decode_err(&bytes), WireError::InvalidBson(_)));

    // A sequence whose last document runs past the sequence's size.
    let body = rawdoc! { "insert": "c" };
    let seq_doc = rawdoc! { "x": 1 };
    let mut sections = kind0(&body);
    sections.push(1);
    let size = 4 + 2 + seq_doc.as_bytes().len() as i32 - 1;
    sections.extend_from_slice(&size.to_le_bytes());
    sections.extend_from_slice(b"d\0");
    sections.extend_from_slice(seq_doc.as_bytes());
    let bytes = raw_message(2013, &msg_body(0, &sections));
    assert!(matches!(decode_err(&bytes), WireError::InvalidBson(_)));
}

#[test]
fn sequence_size_past_the_message_is_malformed() {
    let body = rawdoc! { "insert": "c" };
    let mut sections = kind0(&body);
    sections.push(1);
    sections.extend_from_slice(&1000i32.to_le_bytes());
    sections.extend_from_slice(b"d\0");
    let bytes = raw_message(2013, &msg_body(0, &sections));
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
    // Identifier without terminator.
    let mut sections = kind0(&body);
    sections.push(1);
    sections.extend_from_slice(&6i32.to_le_bytes());
    sections.extend_from_slice(b"dd");
    let bytes = raw_message(2013, &msg_body(0, &sections));
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
}

#[test]
fn zero_or_two_body_sections() {
    let bytes = raw_message(2013, &msg_body(0, &[]));
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
    let doc = rawdoc! { "a": 1 };
    let mut two = kind0(&doc);
    two.extend_from_slice(&kind0(&doc));
    let bytes = raw_message(2013, &msg_body(0, &two));
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
}

#[test]
fn sequence_before_body_is_accepted_duplicate_identifiers_are_not() {
    let body = rawdoc! { "insert": "c" };
    let seq = |name: &[u8]| {
        let mut v = vec![1];
        v.extend_from_slice(&(4 + name.len() as i32 + 1).to_le_bytes());
        v.extend_from_slice(name);
        v.push(0);
        v
    };
    let mut sections = seq(b"documents");
    sections.extend_from_slice(&kind0(&body));
    let m = decode_one(&raw_message(2013, &msg_body(0, &sections))).unwrap();
    let Body::Msg(m) = m.body else { panic!() };
    assert_eq!(m.sequences[0].identifier, "documents");
    assert!(m.sequences[0].documents.is_empty());
    sections.extend_from_slice(&seq(b"documents"));
    let err = decode_err(&raw_message(2013, &msg_body(0, &sections)));
    assert!(matches!(err, WireError::Malformed(_)));
}

#[test]
fn decompressed_size_mismatch() {
    let msg = sample_msg();
    for c in compressors() {
        let mut bytes = encoded(&msg, Some(&c));
        let size = read_i32(&bytes, 20).unwrap();
        bytes[20..24].copy_from_slice(&(size + 3).to_le_bytes());
        let err = decode_err(&bytes);
        assert!(
            matches!(err, WireError::DecompressedSizeMismatch { expected, .. } if expected == size as usize + 3),
            "{c:?}: {err:?}"
        );
    }
}

#[test]
fn uncompressed_size_over_the_maximum_is_rejected_before_decompressing() {
    let msg = sample_msg();
    let bytes = encoded(&msg, Some(&Compressor::Zlib { level: None }));
    let mut d = Decoder::new(bytes.len() + 10);
    d.feed(&bytes);
    let err = d.decode().unwrap_err();
    let size = usize::try_from(read_i32(&bytes, 20).unwrap()).unwrap();
    assert!(
        matches!(err, WireError::UncompressedTooLarge { uncompressed_size, max }
            if max == bytes.len() + 10 && uncompressed_size == size),
        "{err:?}"
    );
    // A tiny frame claiming 2^31-1 bytes is reported with the size it claims (it was reported
    // as a message of 2^31+15 bytes).
    let mut tiny = bytes.clone();
    tiny[20..24].copy_from_slice(&i32::MAX.to_le_bytes());
    let err = decode_err(&tiny);
    assert!(
        err.to_string()
            .contains("announces 2147483647 uncompressed bytes"),
        "{err}"
    );
    // A negative size is malformed.
    let mut bytes = bytes;
    bytes[20..24].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
}

#[test]
fn unknown_compressor_and_corrupt_data() {
    let mut bytes = encoded(&sample_msg(), Some(&Compressor::Snappy));
    bytes[24] = 9;
    assert_eq!(decode_err(&bytes), WireError::UnknownCompressor(9));
    let mut bytes = encoded(&sample_msg(), Some(&Compressor::Zstd));
    let n = bytes.len();
    for b in &mut bytes[30..n] {
        *b ^= 0x5a;
    }
    let err = decode_err(&bytes);
    assert!(
        matches!(
            err,
            WireError::Compression(_) | WireError::DecompressedSizeMismatch { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn compressed_wrapping_compressed_or_unknown_opcode() {
    let mut bytes = encoded(&sample_msg(), Some(&Compressor::Snappy));
    bytes[16..20].copy_from_slice(&2012i32.to_le_bytes());
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
    bytes[16..20].copy_from_slice(&2005i32.to_le_bytes());
    assert_eq!(decode_err(&bytes), WireError::UnknownOpCode(2005));
    let short = raw_message(2012, &[1, 2, 3]);
    assert!(matches!(
        decode_err(&short),
        WireError::MessageTooShort { .. }
    ));
}

#[test]
fn number_returned_mismatch() {
    let mut bytes = encoded(&sample_reply(1), None);
    bytes[32..36].copy_from_slice(&2i32.to_le_bytes());
    assert_eq!(
        decode_err(&bytes),
        WireError::NumberReturnedMismatch {
            declared: 2,
            actual: 1
        }
    );
    bytes[32..36].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(
        decode_err(&bytes),
        WireError::NumberReturnedMismatch { declared: -1, .. }
    ));
}

#[test]
fn op_query_trailing_bytes_and_missing_terminator() {
    let mut bytes = encoded(&sample_query(), None);
    bytes.extend_from_slice(&rawdoc! {}.into_bytes());
    bytes.push(7);
    let len = bytes.len() as i32;
    bytes[0..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
    let bytes = raw_message(2004, &[0, 0, 0, 0, b'a', b'b']);
    assert!(matches!(decode_err(&bytes), WireError::Malformed(_)));
}

#[test]
fn decoder_is_poisoned_after_an_error() {
    let mut d = Decoder::new(MAX);
    d.feed(&raw_message(77, &[]));
    let err = d.decode().unwrap_err();
    assert_eq!(err, WireError::UnknownOpCode(77));
    assert!(d.is_poisoned());
    d.feed(&encoded(&sample_msg(), None));
    assert_eq!(d.decode(), Err(err.clone()));
    assert_eq!(d.decode(), Err(err));
}

#[test]
fn encode_errors_leave_out_untouched() {
    let msg = Message::new(
        1,
        Body::Msg(OpMsg::new(rawdoc! {}).with_sequence("bad\0name", vec![])),
    );
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        encode(&msg, None, &mut out),
        Err(WireError::Encode(_))
    ));
    assert!(matches!(
        encode(&msg, Some(&Compressor::Snappy), &mut out),
        Err(WireError::Encode(_))
    ));
    assert_eq!(out, vec![1, 2, 3]);
}

#[test]
fn wire_errors_become_invalid_response_errors() {
    let e: crate::Error = WireError::UnknownOpCode(5).into();
    assert!(matches!(
        e.kind(),
        crate::ErrorKind::InvalidResponse { message } if message.contains("unknown opcode 5")
    ));
    let e: crate::Error = WireError::Encode("x".into()).into();
    assert!(matches!(e.kind(), crate::ErrorKind::InvalidArgument { .. }));
}

#[test]
fn uncompressible_commands() {
    assert!(!command_may_be_compressed("hello"));
    assert!(!command_may_be_compressed("isMaster"));
    assert!(!command_may_be_compressed("saslStart"));
    assert!(command_may_be_compressed("find"));
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn arb_bson(depth: u32) -> BoxedStrategy<Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        ".{0,12}".prop_map(Bson::String),
        Just(Bson::Null),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|bytes| Bson::Binary(
            bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes
            }
        )),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => arb_doc(depth - 1).prop_map(Bson::Document),
        1 => proptest::collection::vec(arb_bson(depth - 1), 0..4).prop_map(Bson::Array),
    ]
    .boxed()
}

fn arb_doc(depth: u32) -> BoxedStrategy<Document> {
    proptest::collection::vec(("[a-zA-Z_$][a-zA-Z0-9]{0,6}", arb_bson(depth)), 0..5)
        .prop_map(|pairs| pairs.into_iter().collect())
        .boxed()
}

fn arb_raw() -> impl Strategy<Value = RawDocumentBuf> {
    arb_doc(2).prop_map(|d| RawDocumentBuf::try_from(&d).unwrap())
}

fn arb_op_msg() -> impl Strategy<Value = OpMsg> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        arb_raw(),
        proptest::collection::vec(proptest::collection::vec(arb_raw(), 0..4), 0..3),
    )
        .prop_map(|(checksum, more, high, body, seqs)| {
            let mut flags = MsgFlags((high as u32) << 16);
            if checksum {
                flags.insert(MsgFlags::CHECKSUM_PRESENT);
            }
            if more {
                flags.insert(MsgFlags::MORE_TO_COME);
            }
            OpMsg {
                flags,
                body,
                sequences: seqs
                    .into_iter()
                    .enumerate()
                    .map(|(i, documents)| DocumentSequence {
                        identifier: format!("seq{i}"),
                        documents,
                    })
                    .collect(),
            }
        })
}

fn arb_compressor() -> impl Strategy<Value = Option<Compressor>> {
    prop_oneof![
        Just(None),
        Just(Some(Compressor::Snappy)),
        (-1i32..=9).prop_map(|l| Some(Compressor::Zlib { level: Some(l) })),
        Just(Some(Compressor::Zstd)),
    ]
}

/// Feeds `bytes` in chunks of the given sizes (cycled), collecting messages until an error.
fn feed_in_chunks(
    d: &mut Decoder,
    bytes: &[u8],
    sizes: &[usize],
) -> Result<Vec<Message>, WireError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        // Alternate between feed and spare/commit.
        if i % 2 == 0 {
            d.feed(&rest[..n]);
        } else {
            let spare = d.spare(n);
            spare[..n].copy_from_slice(&rest[..n]);
            d.commit(n);
        }
        rest = &rest[n..];
        while let Some(m) = d.decode()? {
            assert_reencodes(&m);
            out.push(m);
        }
    }
    Ok(out)
}

/// Any decoded message re-encodes (uncompressed) and decodes to itself.
fn assert_reencodes(m: &Message) {
    let bytes = encoded(m, None);
    let again = decode_one(&bytes).expect("a re-encoded message decodes");
    assert_eq!(
        again,
        Message {
            compressor_id: None,
            ..m.clone()
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=n overrides, for longer local runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_op_msg_round_trip(
        msgs in proptest::collection::vec((any::<i32>(), any::<i32>(), arb_op_msg()), 1..4),
        compressor in arb_compressor(),
        sizes in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let msgs: Vec<Message> = msgs
            .into_iter()
            .map(|(request_id, response_to, m)| Message {
                request_id,
                response_to,
                body: Body::Msg(m),
                compressor_id: compressor.as_ref().map(|c| c.id()),
            })
            .collect();
        let mut bytes = Vec::new();
        for m in &msgs {
            encode(m, compressor.as_ref(), &mut bytes).unwrap();
        }
        let mut d = Decoder::new(MAX);
        let got = feed_in_chunks(&mut d, &bytes, &sizes).unwrap();
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn prop_garbage_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut d = Decoder::new(4096);
        let _ = feed_in_chunks(&mut d, &bytes, &sizes);
    }

    #[test]
    fn prop_garbage_behind_a_plausible_header_never_panics(
        op_code in prop_oneof![Just(1i32), Just(2004), Just(2012), Just(2013)],
        prefix in proptest::collection::vec(any::<u8>(), 0..16),
        compressor_id in 0u8..5,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        // A right length and opcode, then plausible fixed fields, then noise, so the parsers
        // (not just the header check) see the garbage.
        let mut rest = prefix;
        if op_code == 2012 {
            rest = 2013i32.to_le_bytes().to_vec();
            rest.extend_from_slice(&(body.len() as i32).to_le_bytes());
            rest.push(compressor_id);
        }
        rest.extend_from_slice(&body);
        let bytes = raw_message(op_code, &rest);
        let mut d = Decoder::new(1 << 16);
        let result = feed_in_chunks(&mut d, &bytes, &sizes);
        if let Err(e) = result {
            prop_assert_eq!(d.decode(), Err(e));
        } else {
            prop_assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn prop_mutated_messages_never_panic(
        msg in arb_op_msg(),
        compressor in arb_compressor(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate in any::<prop::sample::Index>(),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut bytes = Vec::new();
        encode(&Message::new(1, Body::Msg(msg)), compressor.as_ref(), &mut bytes).unwrap();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        bytes.truncate(truncate.index(bytes.len() + 1));
        let mut d = Decoder::new(1 << 20);
        let result = feed_in_chunks(&mut d, &bytes, &sizes);
        match result {
            // Poisoned: the same error again.
            Err(e) => prop_assert_eq!(d.decode(), Err(e)),
            // Framing held: the documents' contents were not validated by the decoder, and
            // their reader (the reply conversion) agrees with full validation on every one.
            Ok(messages) => {
                for m in messages {
                    if let Body::Msg(msg) = m.body {
                        let docs = std::iter::once(&msg.body)
                            .chain(msg.sequences.iter().flat_map(|s| &s.documents));
                        for doc in docs {
                            let valid = validate_document(doc.as_bytes()).is_ok();
                            let read = crate::wire::raw::to_document(doc);
                            prop_assert_eq!(valid, read.is_ok(), "{:?}", read);
                            if let Err(e) = read {
                                prop_assert!(
                                    matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
                                    "{:?}", e
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn encode_op_msg_from_parts_equals_encoding_the_message() {
    let body = rawdoc! { "insert": "c", "$db": "d" };
    let sequences = vec![DocumentSequence {
        identifier: "documents".into(),
        documents: vec![rawdoc! { "_id": 1 }, rawdoc! { "_id": 2, "s": "x" }],
    }];
    let mut none: Vec<Option<Compressor>> = vec![None];
    none.extend(compressors().into_iter().map(Some));
    for flags in [
        MsgFlags::empty(),
        MsgFlags::CHECKSUM_PRESENT,
        MsgFlags::MORE_TO_COME,
    ] {
        for c in &none {
            let message = Message {
                request_id: 42,
                response_to: 0,
                body: Body::Msg(OpMsg {
                    flags,
                    body: body.clone(),
                    sequences: sequences.clone(),
                }),
                compressor_id: None,
            };
            let mut whole = vec![9u8];
            encode(&message, c.as_ref(), &mut whole).unwrap();
            let mut parts = vec![9u8];
            encode_op_msg(42, flags, &body, &sequences, c.as_ref(), &mut parts).unwrap();
            assert_eq!(whole, parts, "flags {flags:?}, compressor {c:?}");
            let mut decoder = Decoder::new(MAX);
            decoder.feed(&parts[1..]);
            assert!(decoder.decode().unwrap().is_some());
        }
    }
}

#[test]
fn element_value_len_walks_every_element_type_and_never_panics() {
    use bson::spec::BinarySubtype;
    let d = doc! {
        "double": 1.5, "string": "héllo", "doc": { "a": 1 }, "array": [1, "x"],
        "binary": bson::Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
        "undefined": Bson::Undefined, "oid": bson::oid::ObjectId::new(), "bool": true,
        "date": bson::DateTime::from_millis(5), "null": Bson::Null,
        "regex": bson::Regex { pattern: "a.*".try_into().unwrap(), options: "i".try_into().unwrap() },
        "code": Bson::JavaScriptCode("f()".into()),
        "symbol": Bson::Symbol("s".into()),
        "scope": Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope {
            code: "g()".into(), scope: doc! { "x": 1 },
        }),
        "int": 7, "ts": bson::Timestamp { time: 1, increment: 2 }, "long": 8i64,
        "dec": bson::Decimal128::from_bytes([0; 16]), "min": Bson::MinKey, "max": Bson::MaxKey,
    };
    let raw = RawDocumentBuf::try_from(&d).unwrap();
    let b = raw.as_bytes();
    // Walking by lengths alone visits exactly the elements the bson crate sees, in order.
    let walk = |b: &[u8]| -> Option<Vec<String>> {
        let (mut pos, end, mut keys) = (4, b.len().checked_sub(1)?, Vec::new());
        while pos < end {
            let kind = *b.get(pos)?;
            let n = b.get(pos + 1..)?.iter().position(|&c| c == 0)?;
            keys.push(String::from_utf8(b.get(pos + 1..pos + 1 + n)?.to_vec()).ok()?);
            let value = pos + 1 + n + 1;
            pos = value + element_value_len(b, kind, value)?;
        }
        (pos == end).then_some(keys)
    };
    let expected: Vec<String> = d.keys().cloned().collect();
    assert_eq!(walk(b), Some(expected));
    // Truncated or corrupted bytes give `None` or some walk, never a panic.
    for cut in 0..b.len() {
        let _ = walk(&b[..cut]);
    }
    for i in 0..b.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut c = b.to_vec();
            c[i] = v;
            let _ = walk(&c);
        }
    }
}
