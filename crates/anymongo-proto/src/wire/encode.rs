//! Message encoding into a caller-owned buffer.

use crate::options::Compressor;

use bson::{Document, RawDocument, RawDocumentBuf};

use super::{
    bson_encode, compression, Body, DocumentSequence, Header, Message, MsgFlags, OpCode, OpQuery,
    OpReply, WireError, COMPRESSED_PREFIX_LEN, HEADER_LEN,
};

/// Appends one whole encoded message to `out` (a caller-owned buffer; reuse it between messages).
///
/// With a `compressor`, the message is wrapped in OP_COMPRESSED. When an OP_MSG has
/// [`MsgFlags::CHECKSUM_PRESENT`], its CRC-32C is computed over the uncompressed message and
/// appended. `msg.compressor_id` is ignored. Whether a command may be compressed at all is the
/// caller's decision (see [`super::command_may_be_compressed`]). On error `out` is left as it was.
pub fn encode(
    msg: &Message,
    compressor: Option<&Compressor>,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len();
    let result = match compressor {
        None => encode_plain(msg, out),
        Some(c) => encode_compressed(msg, c, out),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends one whole OP_MSG request (`responseTo` 0) made of borrowed parts: the same bytes as
/// [`encode`] of the equivalent [`Message`], without first copying the body and the document
/// sequences into one. With a `compressor`, it is wrapped in OP_COMPRESSED. On error `out` is
/// left as it was.
pub fn encode_op_msg(
    request_id: i32,
    flags: MsgFlags,
    body: &RawDocument,
    sequences: &[DocumentSequence],
    compressor: Option<&Compressor>,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len();
    let result = match compressor {
        None => encode_msg_plain(request_id, 0, flags, body, sequences, out),
        Some(c) => {
            let mut plain = Vec::with_capacity(msg_size_hint(body, sequences));
            encode_msg_plain(request_id, 0, flags, body, sequences, &mut plain)
                .and_then(|()| wrap_compressed(request_id, 0, OpCode::Msg, &plain, c, out))
        }
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_compressed(msg: &Message, c: &Compressor, out: &mut Vec<u8>) -> Result<(), WireError> {
    let mut plain = Vec::with_capacity(size_hint(&msg.body));
    encode_plain(msg, &mut plain)?;
    wrap_compressed(
        msg.request_id,
        msg.response_to,
        msg.body.op_code(),
        &plain,
        c,
        out,
    )
}

/// Appends the OP_COMPRESSED form of the encoded message `plain` (whose opcode is `op`).
fn wrap_compressed(
    request_id: i32,
    response_to: i32,
    op: OpCode,
    plain: &[u8],
    c: &Compressor,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let body = plain.get(HEADER_LEN..).unwrap_or_default();
    let uncompressed_size = i32::try_from(body.len())
        .map_err(|_| WireError::Encode("message larger than 2 GiB".to_string()))?;
    let start = out.len();
    out.reserve(HEADER_LEN + COMPRESSED_PREFIX_LEN + body.len() / 2 + 64);
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&op.as_i32().to_le_bytes());
    out.extend_from_slice(&uncompressed_size.to_le_bytes());
    out.push(c.id());
    compression::compress(c, body, out)?;
    finish_header_ids(request_id, response_to, OpCode::Compressed, start, out)
}

/// Writes the header of the message that starts at `start` and ends at `out.len()`.
fn finish_header(msg: &Message, op: OpCode, start: usize, out: &mut [u8]) -> Result<(), WireError> {
    finish_header_ids(msg.request_id, msg.response_to, op, start, out)
}

fn finish_header_ids(
    request_id: i32,
    response_to: i32,
    op: OpCode,
    start: usize,
    out: &mut [u8],
) -> Result<(), WireError> {
    let length = i32::try_from(out.len() - start)
        .map_err(|_| WireError::Encode("message larger than 2 GiB".to_string()))?;
    let header = Header {
        length,
        request_id,
        response_to,
        op_code: op.as_i32(),
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(())
}

fn msg_size_hint(body: &RawDocument, sequences: &[DocumentSequence]) -> usize {
    body.as_bytes().len()
        + sequences
            .iter()
            .map(|s| {
                s.identifier.len()
                    + 6
                    + s.documents
                        .iter()
                        .map(|d| d.as_bytes().len())
                        .sum::<usize>()
            })
            .sum::<usize>()
        + HEADER_LEN
        + 32
}

fn size_hint(body: &Body) -> usize {
    let docs: usize = match body {
        Body::Msg(m) => return msg_size_hint(&m.body, &m.sequences),
        Body::Query(q) => {
            q.full_collection_name.len()
                + q.query.as_bytes().len()
                + q.return_fields_selector
                    .as_ref()
                    .map_or(0, |d| d.as_bytes().len())
        }
        Body::Reply(r) => r.documents.iter().map(|d| d.as_bytes().len()).sum(),
    };
    docs + HEADER_LEN + 32
}

fn encode_plain(msg: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.reserve(size_hint(&msg.body));
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    match &msg.body {
        Body::Msg(m) => {
            out.truncate(start);
            encode_msg_plain(
                msg.request_id,
                msg.response_to,
                m.flags,
                &m.body,
                &m.sequences,
                out,
            )
        }
        Body::Query(q) => {
            write_query(q, out)?;
            finish_header(msg, OpCode::Query, start, out)
        }
        Body::Reply(r) => {
            write_reply(r, out)?;
            finish_header(msg, OpCode::Reply, start, out)
        }
    }
}

fn write_cstring(s: &str, what: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    if s.as_bytes().contains(&0) {
        return Err(WireError::Encode(format!("{what} contains a NUL byte")));
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

/// Appends an uncompressed OP_MSG: header, flags, the kind-0 body, the kind-1 sequences and,
/// with [`MsgFlags::CHECKSUM_PRESENT`], the CRC-32C.
fn encode_msg_plain(
    request_id: i32,
    response_to: i32,
    flags: MsgFlags,
    body: &RawDocument,
    sequences: &[DocumentSequence],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len();
    out.reserve(msg_size_hint(body, sequences));
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    write_msg(flags, body, sequences, out)?;
    finish_msg(request_id, response_to, flags, start, out)
}

fn write_msg(
    flags: MsgFlags,
    body: &RawDocument,
    sequences: &[DocumentSequence],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    out.extend_from_slice(&flags.0.to_le_bytes());
    out.push(0);
    out.extend_from_slice(body.as_bytes());
    for seq in sequences {
        write_sequence(&seq.identifier, &seq.documents, out)?;
    }
    Ok(())
}

/// Appends one kind-1 section.
fn write_sequence(
    identifier: &str,
    documents: &[RawDocumentBuf],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    out.push(1);
    let size_at = out.len();
    out.extend_from_slice(&[0u8; 4]);
    write_cstring(identifier, "document sequence identifier", out)?;
    for doc in documents {
        out.extend_from_slice(doc.as_bytes());
    }
    let size = i32::try_from(out.len() - size_at)
        .map_err(|_| WireError::Encode("document sequence larger than 2 GiB".to_string()))?;
    out[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

/// A command body given by parts and written as one document: the fields of `document`, then
/// `$readPreference` (if any), then `$db`.
#[derive(Clone, Copy, Debug)]
pub struct CommandBody<'a> {
    /// The command's own fields (its name first).
    pub document: &'a Document,
    /// `$readPreference`, when one must be sent.
    pub read_preference: Option<&'a Document>,
    /// The target database, sent as `$db`.
    pub db: &'a str,
}

impl CommandBody<'_> {
    /// Appends the body as one BSON document.
    pub fn write(&self, out: &mut Vec<u8>) -> crate::Result<()> {
        let start = bson_encode::open(out);
        for (key, value) in self.document {
            bson_encode::write_element(key, value, out)?;
        }
        if let Some(rp) = self.read_preference {
            bson_encode::write_document_element("$readPreference", rp, out)?;
        }
        bson_encode::write_str_element("$db", self.db, out)?;
        bson_encode::close(start, out)
    }
}

/// An OP_MSG kind-1 section made of borrowed documents (e.g. one batch of an insert).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DocumentSequenceRef<'a> {
    /// The command argument the documents belong to (`documents`, `updates`, `deletes`).
    pub identifier: &'a str,
    /// The documents, already serialized.
    pub documents: &'a [RawDocumentBuf],
}

/// Appends one whole OP_MSG request (`responseTo` 0) whose body is encoded from `body`'s parts
/// straight into `out`: no intermediate document is built. Otherwise the same bytes as
/// [`encode_op_msg`] of the equivalent serialized body and sequences, with a checksum when
/// `flags` asks for one and wrapped in OP_COMPRESSED with a `compressor`. On error `out` is
/// left as it was (a key containing NUL is the same error as serializing with `bson`).
pub fn encode_command(
    request_id: i32,
    flags: MsgFlags,
    body: CommandBody<'_>,
    sequences: &[DocumentSequenceRef<'_>],
    compressor: Option<&Compressor>,
    out: &mut Vec<u8>,
) -> crate::Result<()> {
    let start = out.len();
    let result = match compressor {
        None => encode_command_plain(request_id, flags, body, sequences, out),
        Some(c) => {
            let mut plain = Vec::with_capacity(1024);
            encode_command_plain(request_id, flags, body, sequences, &mut plain).and_then(|()| {
                wrap_compressed(request_id, 0, OpCode::Msg, &plain, c, out).map_err(Into::into)
            })
        }
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_command_plain(
    request_id: i32,
    flags: MsgFlags,
    body: CommandBody<'_>,
    sequences: &[DocumentSequenceRef<'_>],
    out: &mut Vec<u8>,
) -> crate::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&flags.0.to_le_bytes());
    out.push(0);
    body.write(out)?;
    for seq in sequences {
        write_sequence(seq.identifier, seq.documents, out)?;
    }
    finish_msg(request_id, 0, flags, start, out)?;
    Ok(())
}

/// Fills in the header of the OP_MSG that starts at `start` (and its checksum, if flagged).
fn finish_msg(
    request_id: i32,
    response_to: i32,
    flags: MsgFlags,
    start: usize,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let checksum = flags.contains(MsgFlags::CHECKSUM_PRESENT);
    if checksum {
        // The length field counts the checksum, which covers the header too.
        out.extend_from_slice(&[0u8; 4]);
    }
    finish_header_ids(request_id, response_to, OpCode::Msg, start, out)?;
    if checksum {
        let end = out.len() - 4;
        let crc = crc32c::crc32c(&out[start..end]);
        out[end..].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

fn write_query(q: &OpQuery, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.extend_from_slice(&q.flags.to_le_bytes());
    write_cstring(&q.full_collection_name, "full collection name", out)?;
    out.extend_from_slice(&q.number_to_skip.to_le_bytes());
    out.extend_from_slice(&q.number_to_return.to_le_bytes());
    out.extend_from_slice(q.query.as_bytes());
    if let Some(sel) = &q.return_fields_selector {
        out.extend_from_slice(sel.as_bytes());
    }
    Ok(())
}

fn write_reply(r: &OpReply, out: &mut Vec<u8>) -> Result<(), WireError> {
    let n = i32::try_from(r.documents.len())
        .map_err(|_| WireError::Encode("too many documents".to_string()))?;
    out.extend_from_slice(&r.response_flags.to_le_bytes());
    out.extend_from_slice(&r.cursor_id.to_le_bytes());
    out.extend_from_slice(&r.starting_from.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    for doc in &r.documents {
        out.extend_from_slice(doc.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Decoder, DocumentSequence};
    use bson::doc;

    fn raw(d: Document) -> RawDocumentBuf {
        RawDocumentBuf::try_from(&d).unwrap()
    }

    /// The old way: serialize body + `$readPreference` + `$db` with `bson`, then encode.
    fn reference(
        request_id: i32,
        flags: MsgFlags,
        body: CommandBody<'_>,
        sequences: &[DocumentSequenceRef<'_>],
        compressor: Option<&Compressor>,
    ) -> Vec<u8> {
        let mut whole = body.document.clone();
        if let Some(rp) = body.read_preference {
            whole.insert("$readPreference", rp.clone());
        }
        whole.insert("$db", body.db);
        let owned: Vec<DocumentSequence> = sequences
            .iter()
            .map(|s| DocumentSequence {
                identifier: s.identifier.to_string(),
                documents: s.documents.to_vec(),
            })
            .collect();
        let mut out = Vec::new();
        encode_op_msg(request_id, flags, &raw(whole), &owned, compressor, &mut out).unwrap();
        out
    }

    #[test]
    fn commands_encode_to_the_same_bytes_as_encode_op_msg() {
        let find =
            doc! { "find": "coll", "filter": { "_id": 1 }, "limit": -1, "singleBatch": true };
        let hello = doc! { "hello": 1 };
        let rp = doc! { "mode": "secondaryPreferred", "tags": [{ "dc": "ny" }] };
        let docs: Vec<RawDocumentBuf> = (0..3)
            .map(|i| raw(doc! { "_id": i, "x": "y".repeat(i as usize * 40) }))
            .collect();
        let insert = doc! { "insert": "coll", "ordered": true, "writeConcern": { "w": 1 } };
        let seqs = [DocumentSequenceRef {
            identifier: "documents",
            documents: &docs,
        }];
        let empty_seq = [DocumentSequenceRef {
            identifier: "updates",
            documents: &[],
        }];
        let cases: Vec<(CommandBody<'_>, &[DocumentSequenceRef<'_>])> = vec![
            (
                CommandBody {
                    document: &hello,
                    read_preference: None,
                    db: "admin",
                },
                &[],
            ),
            (
                CommandBody {
                    document: &find,
                    read_preference: Some(&rp),
                    db: "test",
                },
                &[],
            ),
            (
                CommandBody {
                    document: &insert,
                    read_preference: None,
                    db: "db",
                },
                &seqs,
            ),
            (
                CommandBody {
                    document: &insert,
                    read_preference: None,
                    db: "db",
                },
                &empty_seq,
            ),
        ];
        let compressors = [
            None,
            Some(Compressor::Snappy),
            Some(Compressor::Zlib { level: None }),
            Some(Compressor::Zlib { level: Some(9) }),
            Some(Compressor::Zstd),
        ];
        let flag_sets = [
            MsgFlags::empty(),
            MsgFlags::CHECKSUM_PRESENT,
            MsgFlags::MORE_TO_COME,
            MsgFlags::EXHAUST_ALLOWED | MsgFlags::CHECKSUM_PRESENT,
        ];
        for (body, sequences) in &cases {
            for compressor in &compressors {
                for flags in flag_sets {
                    let expected = reference(7, flags, *body, sequences, compressor.as_ref());
                    // Appended after what the buffer already holds, as into a reused buffer.
                    let mut out = vec![1, 2, 3];
                    encode_command(7, flags, *body, sequences, compressor.as_ref(), &mut out)
                        .unwrap();
                    assert_eq!(&out[..3], &[1, 2, 3]);
                    assert_eq!(
                        &out[3..],
                        &expected[..],
                        "{body:?} {compressor:?} {flags:?}"
                    );
                    // And it decodes back to the command.
                    let mut decoder = Decoder::new(1 << 20);
                    decoder.feed(&out[3..]);
                    let msg = decoder.decode().unwrap().unwrap();
                    match msg.body {
                        Body::Msg(m) => {
                            let back = Document::try_from(m.body.as_ref()).unwrap();
                            assert_eq!(back.get_str("$db").unwrap(), body.db);
                            assert_eq!(m.sequences.len(), sequences.len());
                        }
                        other => panic!("not an OP_MSG: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn an_unencodable_command_leaves_the_buffer_as_it_was() {
        let bad = doc! { "find": "c", "filter": { "a\0": 1 } };
        let body = CommandBody {
            document: &bad,
            read_preference: None,
            db: "db",
        };
        for compressor in [None, Some(Compressor::Snappy)] {
            let mut out = vec![9, 9];
            let err = encode_command(
                1,
                MsgFlags::empty(),
                body,
                &[],
                compressor.as_ref(),
                &mut out,
            )
            .unwrap_err();
            assert!(
                matches!(err.kind(), crate::ErrorKind::Bson { .. }),
                "{err:?}"
            );
            assert_eq!(out, vec![9, 9]);
        }
        let docs = [raw(doc! { "x": 1 })];
        let nul_identifier = [DocumentSequenceRef {
            identifier: "docu\0ments",
            documents: &docs,
        }];
        let ok_body = doc! { "insert": "c" };
        let mut out = Vec::new();
        let body = CommandBody {
            document: &ok_body,
            read_preference: None,
            db: "db",
        };
        let err = encode_command(1, MsgFlags::empty(), body, &nul_identifier, None, &mut out)
            .unwrap_err();
        assert!(
            matches!(err.kind(), crate::ErrorKind::InvalidArgument { .. }),
            "{err:?}"
        );
        assert!(out.is_empty());
    }
}
