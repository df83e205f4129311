//! The incremental decoder and the message parsers.

use std::fmt;
use std::ops::Range;

use bson::{RawDocument, RawDocumentBuf};

use super::{
    compression, read_i32, read_u32, Body, DocumentSequence, Header, Message, MsgFlags, OpCode,
    OpMsg, OpQuery, OpReply, WireError, COMPRESSED_PREFIX_LEN, HEADER_LEN,
};

/// The smallest buffer the decoder allocates.
const INITIAL_CAPACITY: usize = 16 * 1024;
/// Buffers grown past this are released once empty (so one large message does not pin memory
/// on an idle connection).
const SHRINK_ABOVE: usize = 1024 * 1024;
/// A message longer than this is received into a buffer of its own (see [`LargeBody`]), not
/// into the decoder's buffer.
const LARGE_ABOVE: usize = 256 * 1024;
/// While a large body is received, socket reads land in a buffer region of about this size
/// (small enough to stay in cache) before they are appended to the body.
const LARGE_CHUNK: usize = 256 * 1024;
/// Header, flags and section kind: where an OP_MSG's kind-0 body starts.
const BODY_OFFSET: usize = HEADER_LEN + 4 + 1;

/// A large message being received.
///
/// Its bytes are appended to `body`, which grows with them (never ahead: a peer announcing a large
/// message pays for what it sends) and is never zero-filled
/// (socket reads go through the decoder's small buffer, which stays in cache), so the decoder's
/// buffer never grows to a large message's size: nothing multi-megabyte is zero-filled, nor
/// kept on an idle connection. For an OP_MSG whose only section is its kind-0 body (a large
/// reply batch), `body` holds only that document: when complete it *is* the reply document,
/// never copied. Any other message is received whole and parsed as usual.
#[derive(Debug)]
struct LargeBody {
    header: Header,
    /// `Some` for a body-only OP_MSG (then `body` starts at [`BODY_OFFSET`] of the message),
    /// `None` for a whole message.
    flags: Option<MsgFlags>,
    /// The bytes so far; `len` of them when complete.
    body: Vec<u8>,
    len: usize,
}

impl LargeBody {
    /// Makes room for `n` more bytes: the body grows with the bytes received (doubling, up to
    /// the announced length), never ahead of them, so a peer that announces a large message
    /// and then sends little of it costs little.
    fn reserve(&mut self, n: usize) {
        let (len, cap) = (self.body.len(), self.body.capacity());
        if cap - len >= n {
            return;
        }
        let want = cap
            .saturating_mul(2)
            .max(len + n)
            .min(self.len.max(len + n));
        self.body.reserve_exact(want - len);
    }
}

/// Incremental message decoder: feed it bytes in arbitrary chunks, take whole messages out.
///
/// ```
/// # use anymongo_proto::wire::*;
/// # use anymongo_proto::bson::rawdoc;
/// let mut bytes = Vec::new();
/// let msg = Message::new(7, Body::Msg(OpMsg::new(rawdoc! { "ping": 1 })));
/// encode(&msg, None, &mut bytes).unwrap();
///
/// let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
/// let (first, rest) = bytes.split_at(5);
/// decoder.feed(first);
/// assert_eq!(decoder.decode().unwrap(), None);
/// // Or read a socket straight into the decoder's buffer:
/// let spare = decoder.spare(rest.len());
/// spare[..rest.len()].copy_from_slice(rest);
/// decoder.commit(rest.len());
/// assert_eq!(decoder.decode().unwrap(), Some(msg));
/// assert_eq!(decoder.buffered(), 0);
/// ```
pub struct Decoder {
    /// Initialized storage; the undecoded bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_message_size: usize,
    /// Reused buffer for decompressed messages.
    scratch: Vec<u8>,
    /// Reused decompression contexts.
    decompressor: compression::Decompressor,
    /// The error that poisoned the decoder, returned again by every later `decode`.
    poisoned: Option<WireError>,
    /// The large message being received into its body's own buffer, if any.
    large: Option<LargeBody>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buffered())
            .field("capacity", &self.buf.len())
            .field("max_message_size", &self.max_message_size)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Decoder {
    /// A decoder that rejects messages longer than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_message_size,
            scratch: Vec::new(),
            decompressor: compression::Decompressor::new(),
            poisoned: None,
            large: None,
        }
    }

    /// Changes the maximum message size (e.g. to the server's `maxMessageSizeBytes`).
    pub fn set_max_message_size(&mut self, n: usize) {
        self.max_message_size = n;
    }

    /// The maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Buffers `bytes`. Ignored once the decoder is poisoned.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.poisoned.is_some() || bytes.is_empty() {
            return;
        }
        let n = bytes.len();
        self.spare(n)[..n].copy_from_slice(bytes);
        self.commit(n);
    }

    /// A writable region at the end of the buffer, at least `min` bytes long (and never empty),
    /// to read socket bytes into directly; then call [`Decoder::commit`] with the number of bytes
    /// read. Pass the read size you want (e.g. 8 KiB): the region may be larger but is only
    /// guaranteed to be `min`. When the header of a partly received message is buffered, the
    /// region is large enough for the rest of that message, except for a large OP_MSG made of
    /// its body alone, which is read in chunks of a few hundred KiB and appended to the body's
    /// own buffer. The bytes in the region are unspecified.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        let want = match &self.large {
            // The body is appended to its own buffer: read in cache-sized chunks.
            Some(large) => {
                let left = (large.len - large.body.len()).saturating_sub(self.buffered_in_buf());
                min.max(1).max(left.min(LARGE_CHUNK))
            }
            None => min.max(1).max(self.pending_need()),
        };
        if self.buf.len() - self.end < want {
            self.compact();
            if self.buf.len() - self.end < want {
                let target = self.end.saturating_add(want);
                let doubled = (self.buf.len().saturating_mul(2))
                    .min(self.max_message_size.max(INITIAL_CAPACITY));
                let new_len = target.max(doubled).max(INITIAL_CAPACITY);
                self.buf.resize(new_len, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the region returned by the last [`Decoder::spare`] as filled.
    ///
    /// `n` is clamped to that region's length.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(
            n <= self.buf.len() - self.end,
            "commit past the spare region"
        );
        self.end = self.end.saturating_add(n).min(self.buf.len());
    }

    /// Bytes buffered that have not been returned as messages yet. Non-zero when a connection's
    /// read was abandoned mid-message: such a connection cannot be reused.
    pub fn buffered(&self) -> usize {
        let large = self.large.as_ref().map_or(0, |l| {
            l.body.len() + if l.flags.is_some() { BODY_OFFSET } else { 0 }
        });
        large + self.buffered_in_buf()
    }

    /// Bytes in `buf` not yet decoded (or moved into a large body).
    fn buffered_in_buf(&self) -> usize {
        self.end - self.start
    }

    /// Whether an error has poisoned the decoder.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// The next whole message, `Ok(None)` if more bytes are needed, or the error that makes the
    /// stream unusable. OP_COMPRESSED messages are decompressed transparently (the message's
    /// `compressor_id` says which compressor was used). After an error the decoder is poisoned:
    /// every later call returns the same error.
    pub fn decode(&mut self) -> Result<Option<Message>, WireError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if self.large.is_some() {
            return self.decode_large();
        }
        let avail = &self.buf[self.start..self.end];
        let Some(header) = Header::parse(avail) else {
            return Ok(None);
        };
        let length = match check_header(&header, self.max_message_size) {
            Ok(length) => length,
            Err(e) => return Err(self.poison(e)),
        };
        let Some(bytes) = avail.get(..length) else {
            // Whether it is a body-only OP_MSG can be told once its first section's start is in.
            let decided = header.op_code != OpCode::Msg as i32 || avail.len() >= BODY_OFFSET + 4;
            if length > LARGE_ABOVE && decided {
                let large = large_body(&header, avail, length).unwrap_or_else(|| LargeBody {
                    header,
                    flags: None,
                    body: Vec::with_capacity(LARGE_CHUNK),
                    len: length,
                });
                if large.flags.is_some() {
                    self.start += BODY_OFFSET;
                }
                self.large = Some(large);
                return self.decode_large();
            }
            return Ok(None);
        };
        let result = parse_message(
            &header,
            bytes,
            self.max_message_size,
            &mut self.scratch,
            &mut self.decompressor,
        );
        self.consume(length);
        if self.scratch.capacity() > SHRINK_ABOVE {
            self.scratch = Vec::new();
        }
        match result {
            Ok(msg) => Ok(Some(msg)),
            Err(e) => Err(self.poison(e)),
        }
    }

    fn poison(&mut self, e: WireError) -> WireError {
        self.poisoned = Some(e.clone());
        e
    }

    /// Moves buffered bytes into the large body being received; returns its message once
    /// complete.
    fn decode_large(&mut self) -> Result<Option<Message>, WireError> {
        let Some(large) = &mut self.large else {
            return Ok(None);
        };
        let take = (large.len - large.body.len()).min(self.end - self.start);
        if let Some(bytes) = self.buf.get(self.start..self.start + take) {
            large.reserve(take);
            large.body.extend_from_slice(bytes);
        }
        let complete = large.body.len() == large.len;
        self.consume(take);
        if !complete {
            return Ok(None);
        }
        let Some(LargeBody {
            header,
            flags,
            body,
            ..
        }) = self.large.take()
        else {
            return Ok(None);
        };
        let Some(flags) = flags else {
            let result = parse_message(
                &header,
                &body,
                self.max_message_size,
                &mut self.scratch,
                &mut self.decompressor,
            );
            if self.scratch.capacity() > SHRINK_ABOVE {
                self.scratch = Vec::new();
            }
            return match result {
                Ok(msg) => Ok(Some(msg)),
                Err(e) => Err(self.poison(e)),
            };
        };
        match RawDocumentBuf::from_bytes(body) {
            Ok(body) => Ok(Some(Message {
                request_id: header.request_id,
                response_to: header.response_to,
                body: Body::Msg(OpMsg {
                    flags,
                    body,
                    sequences: Vec::new(),
                }),
                compressor_id: None,
            })),
            Err(e) => Err(self.poison(WireError::InvalidBson(e.to_string()))),
        }
    }

    /// Marks `n` buffered bytes as used; once none are left, starts over at the front of the
    /// buffer, releasing it if it grew large.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = Vec::new();
            }
        }
    }

    /// Bytes still missing from the message whose header is buffered (0 if none or invalid).
    /// For a large OP_MSG whose start is not buffered yet, only the bytes needed to tell whether
    /// it can be received straight into its body (see [`large_body`]); a large message already
    /// being received needs none here (it is read in chunks).
    fn pending_need(&self) -> usize {
        let avail = &self.buf[self.start..self.end];
        match Header::parse(avail) {
            Some(h) => match check_header(&h, self.max_message_size) {
                Ok(length)
                    if length > LARGE_ABOVE
                        && h.op_code == OpCode::Msg as i32
                        && avail.len() < BODY_OFFSET + 4 =>
                {
                    BODY_OFFSET + 4 - avail.len()
                }
                Ok(length) => length.saturating_sub(avail.len()),
                Err(_) => 0,
            },
            None => 0,
        }
    }

    /// Moves the undecoded bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

/// Validates a header's length and opcode; returns the length.
fn check_header(h: &Header, max: usize) -> Result<usize, WireError> {
    let length = usize::try_from(h.length)
        .ok()
        .filter(|l| *l >= HEADER_LEN)
        .ok_or(WireError::MessageTooShort { length: h.length })?;
    if length > max {
        return Err(WireError::MessageTooLarge { length, max });
    }
    if OpCode::from_i32(h.op_code).is_none() {
        return Err(WireError::UnknownOpCode(h.op_code));
    }
    Ok(length)
}

/// A body-only [`LargeBody`] for the partly received message of `length` bytes (header
/// checked) that starts `avail`, if it is an OP_MSG whose only section is its kind-0 body and
/// which has no checksum: then the body is everything after [`BODY_OFFSET`], and parsing the
/// whole message would accept exactly what [`RawDocumentBuf::from_bytes`] accepts of the body.
/// Any other message (or one whose start is not buffered yet) is received whole and parsed.
fn large_body(header: &Header, avail: &[u8], length: usize) -> Option<LargeBody> {
    if header.op_code != OpCode::Msg as i32 {
        return None;
    }
    let flags = MsgFlags(read_u32(avail, HEADER_LEN)?);
    if flags.unknown_required() != 0 || flags.contains(MsgFlags::CHECKSUM_PRESENT) {
        return None;
    }
    let len = length.checked_sub(BODY_OFFSET)?;
    let declared = usize::try_from(read_i32(avail, BODY_OFFSET)?).ok()?;
    if *avail.get(BODY_OFFSET - 1)? != 0 || declared != len {
        return None;
    }
    Some(LargeBody {
        header: *header,
        flags: Some(flags),
        body: Vec::with_capacity(LARGE_CHUNK),
        len,
    })
}

/// Parses one whole message (`bytes` includes the header), decompressing OP_COMPRESSED into
/// `scratch`.
pub(super) fn parse_message(
    header: &Header,
    bytes: &[u8],
    max: usize,
    scratch: &mut Vec<u8>,
    decompressor: &mut compression::Decompressor,
) -> Result<Message, WireError> {
    let op = OpCode::from_i32(header.op_code).ok_or(WireError::UnknownOpCode(header.op_code))?;
    if op != OpCode::Compressed {
        return Ok(Message {
            request_id: header.request_id,
            response_to: header.response_to,
            body: parse_body(op, bytes)?,
            compressor_id: None,
        });
    }
    let too_short = WireError::MessageTooShort {
        length: header.length,
    };
    let fields = bytes.get(HEADER_LEN..).ok_or(too_short.clone())?;
    let original = read_i32(fields, 0).ok_or(too_short.clone())?;
    let size = read_i32(fields, 4).ok_or(too_short.clone())?;
    let compressor_id = *fields.get(8).ok_or(too_short)?;
    let compressed = fields.get(COMPRESSED_PREFIX_LEN..).unwrap_or_default();
    let size = usize::try_from(size)
        .map_err(|_| WireError::Malformed(format!("negative uncompressedSize {size}")))?;
    let total = size.saturating_add(HEADER_LEN);
    if total > max {
        return Err(WireError::UncompressedTooLarge {
            uncompressed_size: size,
            max,
        });
    }
    let original_op = match OpCode::from_i32(original) {
        Some(OpCode::Compressed) => {
            return Err(WireError::Malformed(
                "OP_COMPRESSED wrapping OP_COMPRESSED".to_string(),
            ))
        }
        Some(op) => op,
        None => return Err(WireError::UnknownOpCode(original)),
    };
    let total_i32 =
        i32::try_from(total).map_err(|_| WireError::MessageTooLarge { length: total, max })?;
    // Rebuild the original message (header included: an OP_MSG checksum covers it).
    let inner_header = Header {
        length: total_i32,
        request_id: header.request_id,
        response_to: header.response_to,
        op_code: original,
    };
    scratch.clear();
    scratch.extend_from_slice(&inner_header.to_bytes());
    // Allocates at most `size` more bytes, which was checked against the maximum above.
    decompressor.decompress(compressor_id, compressed, size, scratch)?;
    let body = if original_op == OpCode::Msg
        && scratch.capacity() > SHRINK_ABOVE
        && scratch.capacity() / 2 <= scratch.len()
    {
        // The decompressed message is only needed for its body, and a buffer this large is not
        // kept anyway: give it to the body.
        Body::Msg(parse_msg_owned(std::mem::take(scratch))?)
    } else {
        parse_body(original_op, scratch)?
    };
    Ok(Message {
        request_id: header.request_id,
        response_to: header.response_to,
        body,
        compressor_id: Some(compressor_id),
    })
}

/// Parses the body of an uncompressed message of opcode `op` (`bytes` includes the header).
fn parse_body(op: OpCode, bytes: &[u8]) -> Result<Body, WireError> {
    match op {
        OpCode::Msg => parse_msg(bytes).map(Body::Msg),
        OpCode::Query => parse_query(bytes).map(Body::Query),
        OpCode::Reply => parse_reply(bytes).map(Body::Reply),
        OpCode::Compressed => Err(WireError::Malformed(
            "OP_COMPRESSED wrapping OP_COMPRESSED".to_string(),
        )),
    }
}

fn too_short(bytes: &[u8]) -> WireError {
    WireError::MessageTooShort {
        length: i32::try_from(bytes.len()).unwrap_or(i32::MAX),
    }
}

fn parse_msg(bytes: &[u8]) -> Result<OpMsg, WireError> {
    let (flags, body, sequences) = parse_msg_parts(bytes)?;
    let body = bytes.get(body).unwrap_or_default().to_vec();
    Ok(OpMsg {
        flags,
        body: RawDocumentBuf::from_bytes(body)
            .map_err(|e| WireError::InvalidBson(e.to_string()))?,
        sequences,
    })
}

/// [`parse_msg`] for a message the caller owns (`bytes` includes the header): the body reuses
/// the message's buffer (its bytes are moved to the front and the rest is cut off) instead of
/// being copied into a new one.
fn parse_msg_owned(mut bytes: Vec<u8>) -> Result<OpMsg, WireError> {
    let (flags, body, sequences) = parse_msg_parts(&bytes)?;
    let len = body.len();
    bytes.copy_within(body, 0);
    bytes.truncate(len);
    Ok(OpMsg {
        flags,
        body: RawDocumentBuf::from_bytes(bytes)
            .map_err(|e| WireError::InvalidBson(e.to_string()))?,
        sequences,
    })
}

/// Parses an OP_MSG (`bytes` includes the header): its flags, where its kind-0 body lies in
/// `bytes` (framing checked), and its document sequences.
fn parse_msg_parts(
    bytes: &[u8],
) -> Result<(MsgFlags, Range<usize>, Vec<DocumentSequence>), WireError> {
    let flags = MsgFlags(read_u32(bytes, HEADER_LEN).ok_or_else(|| too_short(bytes))?);
    let unknown = flags.unknown_required();
    if unknown != 0 {
        return Err(WireError::UnknownRequiredFlags(unknown));
    }
    let sections_start = HEADER_LEN + 4;
    let sections_end = if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
        let end = bytes
            .len()
            .checked_sub(4)
            .filter(|e| *e >= sections_start)
            .ok_or_else(|| too_short(bytes))?;
        let expected = read_u32(bytes, end).ok_or_else(|| too_short(bytes))?;
        let actual = crc32c::crc32c(bytes.get(..end).unwrap_or_default());
        if expected != actual {
            return Err(WireError::ChecksumMismatch { expected, actual });
        }
        end
    } else {
        bytes.len()
    };
    let sections = bytes
        .get(sections_start..sections_end)
        .ok_or_else(|| too_short(bytes))?;

    let mut body: Option<Range<usize>> = None;
    let mut sequences: Vec<DocumentSequence> = Vec::new();
    let mut pos = 0;
    while let Some(&kind) = sections.get(pos) {
        pos += 1;
        match kind {
            0 => {
                let span = frame_document(sections, pos)?;
                let next = span.end;
                if body.replace(span).is_some() {
                    return Err(WireError::Malformed(
                        "OP_MSG has more than one kind-0 section".to_string(),
                    ));
                }
                pos = next;
            }
            1 => {
                let (seq, next) = take_sequence(sections, pos)?;
                if sequences.iter().any(|s| s.identifier == seq.identifier) {
                    return Err(WireError::Malformed(format!(
                        "OP_MSG has two document sequences named {:?}",
                        seq.identifier
                    )));
                }
                sequences.push(seq);
                pos = next;
            }
            other => return Err(WireError::UnknownSectionKind(other)),
        }
    }
    let body =
        body.ok_or_else(|| WireError::Malformed("OP_MSG has no kind-0 section".to_string()))?;
    let body = sections_start + body.start..sections_start + body.end;
    Ok((flags, body, sequences))
}

/// Reads the kind-1 section payload starting at `pos` (its size field); returns the sequence and
/// the position after it.
fn take_sequence(s: &[u8], pos: usize) -> Result<(DocumentSequence, usize), WireError> {
    let size = read_i32(s, pos)
        .ok_or_else(|| WireError::Malformed("truncated document sequence size".to_string()))?;
    let end = usize::try_from(size)
        .ok()
        .filter(|n| *n >= 5)
        .and_then(|n| pos.checked_add(n))
        .filter(|e| *e <= s.len())
        .ok_or_else(|| {
            WireError::Malformed(format!(
                "document sequence size {size} does not fit the {} bytes left",
                s.len() - pos
            ))
        })?;
    let payload = s.get(pos + 4..end).unwrap_or_default();
    let nul = payload.iter().position(|b| *b == 0).ok_or_else(|| {
        WireError::Malformed("document sequence identifier is not terminated".to_string())
    })?;
    let identifier = std::str::from_utf8(payload.get(..nul).unwrap_or_default())
        .map_err(|_| WireError::Malformed("document sequence identifier is not UTF-8".to_string()))?
        .to_string();
    let docs_region = s.get(..end).unwrap_or_default();
    let mut p = pos + 4 + nul + 1;
    let mut documents = Vec::new();
    while p < end {
        let (doc, next) = take_document(docs_region, p)?;
        documents.push(doc);
        p = next;
    }
    Ok((
        DocumentSequence {
            identifier,
            documents,
        },
        end,
    ))
}

/// Reads the document starting at `pos` of `s`, which must fit within `s`.
///
/// Only its framing is checked here (a length of at least 5 that fits, a terminating NUL); its
/// elements are validated once, by whoever reads them (see the module docs).
fn take_document(s: &[u8], pos: usize) -> Result<(RawDocumentBuf, usize), WireError> {
    let span = frame_document(s, pos)?;
    let end = span.end;
    let bytes = s.get(span).unwrap_or_default();
    let doc = RawDocumentBuf::from_bytes(bytes.to_vec())
        .map_err(|e| WireError::InvalidBson(e.to_string()))?;
    Ok((doc, end))
}

/// Where the document starting at `pos` of `s` lies, checking its framing as
/// [`take_document`] does, without copying it.
fn frame_document(s: &[u8], pos: usize) -> Result<Range<usize>, WireError> {
    let left = s.len().saturating_sub(pos);
    let len = read_i32(s, pos).ok_or_else(|| {
        WireError::InvalidBson(format!(
            "truncated document: {left} bytes left, a document length needs 4"
        ))
    })?;
    let end = usize::try_from(len)
        .ok()
        .filter(|n| *n >= 5)
        .and_then(|n| pos.checked_add(n))
        .filter(|e| *e <= s.len())
        .ok_or_else(|| {
            WireError::InvalidBson(format!(
                "document length {len} does not fit the {left} bytes left in its section"
            ))
        })?;
    let bytes = s.get(pos..end).unwrap_or_default();
    RawDocument::from_bytes(bytes).map_err(|e| WireError::InvalidBson(e.to_string()))?;
    Ok(pos..end)
}

fn parse_query(bytes: &[u8]) -> Result<OpQuery, WireError> {
    let b = bytes.get(HEADER_LEN..).unwrap_or_default();
    let flags = read_u32(b, 0).ok_or_else(|| too_short(bytes))?;
    let rest = b.get(4..).unwrap_or_default();
    let nul = rest.iter().position(|c| *c == 0).ok_or_else(|| {
        WireError::Malformed("OP_QUERY collection name is not terminated".to_string())
    })?;
    let full_collection_name = std::str::from_utf8(rest.get(..nul).unwrap_or_default())
        .map_err(|_| WireError::Malformed("OP_QUERY collection name is not UTF-8".to_string()))?
        .to_string();
    let mut pos = 4 + nul + 1;
    let number_to_skip = read_i32(b, pos).ok_or_else(|| too_short(bytes))?;
    let number_to_return = read_i32(b, pos + 4).ok_or_else(|| too_short(bytes))?;
    pos += 8;
    let (query, next) = take_document(b, pos)?;
    let return_fields_selector = if next < b.len() {
        let (sel, end) = take_document(b, next)?;
        if end != b.len() {
            return Err(WireError::Malformed(format!(
                "{} bytes after the OP_QUERY returnFieldsSelector",
                b.len() - end
            )));
        }
        Some(sel)
    } else {
        None
    };
    Ok(OpQuery {
        flags,
        full_collection_name,
        number_to_skip,
        number_to_return,
        query,
        return_fields_selector,
    })
}

fn parse_reply(bytes: &[u8]) -> Result<OpReply, WireError> {
    let b = bytes.get(HEADER_LEN..).unwrap_or_default();
    let response_flags = read_u32(b, 0).ok_or_else(|| too_short(bytes))?;
    let cursor_id = b
        .get(4..12)
        .and_then(|s| s.try_into().ok())
        .map(i64::from_le_bytes)
        .ok_or_else(|| too_short(bytes))?;
    let starting_from = read_i32(b, 12).ok_or_else(|| too_short(bytes))?;
    let declared = read_i32(b, 16).ok_or_else(|| too_short(bytes))?;
    let mut pos = 20;
    // Never trust the count for allocation: a document takes at least 5 bytes.
    let room = (b.len() - pos) / 5;
    let mut documents = Vec::with_capacity(usize::try_from(declared).unwrap_or(0).min(room));
    while pos < b.len() {
        let (doc, next) = take_document(b, pos)?;
        documents.push(doc);
        pos = next;
    }
    if usize::try_from(declared).ok() != Some(documents.len()) {
        return Err(WireError::NumberReturnedMismatch {
            declared,
            actual: documents.len(),
        });
    }
    Ok(OpReply {
        response_flags,
        cursor_id,
        starting_from,
        documents,
    })
}

#[cfg(test)]
mod tests {
    use bson::{rawdoc, spec::BinarySubtype, Binary};
    use proptest::prelude::*;

    use super::super::{encode, DEFAULT_MAX_MESSAGE_SIZE};
    use super::*;

    /// An OP_MSG whose body holds `n` bytes of binary data.
    fn big_msg(n: usize, flags: MsgFlags) -> Message {
        let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let body = rawdoc! {
            "ok": 1,
            "data": Binary { subtype: BinarySubtype::Generic, bytes },
        };
        let mut msg = OpMsg::new(body);
        msg.flags = flags;
        Message::new(9, Body::Msg(msg))
    }

    fn encoded(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, None, &mut out).expect("encode");
        out
    }

    /// Feeds `bytes` through `spare`/`commit` in reads of at most `chunk` bytes, decoding
    /// after each; returns every message and the largest buffer the decoder grew.
    fn decode_in_reads(bytes: &[u8], chunk: usize) -> (Vec<Result<Message, WireError>>, usize) {
        let mut d = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut out = Vec::new();
        let mut max_buf = 0;
        let mut rest = bytes;
        loop {
            loop {
                match d.decode() {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return (out, max_buf);
                    }
                }
            }
            if rest.is_empty() {
                break;
            }
            let spare = d.spare(16 * 1024);
            let n = spare.len().min(chunk).min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            d.commit(n);
            rest = &rest[n..];
            max_buf = max_buf.max(d.buf.len());
            assert!(d.buffered() > 0 || rest.is_empty() || !out.is_empty());
        }
        assert_eq!(d.buffered(), 0, "bytes left in the decoder");
        (out, max_buf)
    }

    #[test]
    fn a_large_body_only_message_is_received_into_its_own_buffer() {
        let msg = big_msg(3 * 1024 * 1024, MsgFlags::empty());
        let bytes = encoded(&msg);
        let (out, max_buf) = decode_in_reads(&bytes, 64 * 1024);
        assert_eq!(out, vec![Ok(msg)]);
        // Never grown to the message's size, so nothing large is left on an idle connection.
        assert!(max_buf <= LARGE_CHUNK, "buffer grew to {max_buf}");
    }

    #[test]
    fn a_large_message_is_counted_as_buffered_until_complete() {
        let bytes = encoded(&big_msg(LARGE_ABOVE + 1000, MsgFlags::empty()));
        let mut d = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
        d.feed(&bytes[..100]);
        assert_eq!(d.decode(), Ok(None));
        assert!(d.large.is_some());
        assert_eq!(d.buffered(), 100);
        d.feed(&bytes[100..bytes.len() - 1]);
        assert_eq!(d.decode(), Ok(None));
        assert_eq!(d.buffered(), bytes.len() - 1);
        d.feed(&bytes[bytes.len() - 1..]);
        assert!(matches!(d.decode(), Ok(Some(_))));
        assert_eq!(d.buffered(), 0);
        assert!(d.large.is_none());
    }

    #[test]
    fn a_large_message_whose_header_arrives_alone_does_not_grow_the_buffer() {
        let msg = big_msg(2 * 1024 * 1024, MsgFlags::empty());
        let bytes = encoded(&msg);
        let mut d = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
        for chunk in [&bytes[..HEADER_LEN], &bytes[HEADER_LEN..HEADER_LEN + 3]] {
            d.feed(chunk);
            assert_eq!(d.decode(), Ok(None));
        }
        // Only what is needed to see the body's start is asked for, not the whole message.
        assert_eq!(d.pending_need(), BODY_OFFSET + 4 - HEADER_LEN - 3);
        let (out, max_buf) = (|| {
            let mut rest = &bytes[HEADER_LEN + 3..];
            let mut max_buf = 0;
            while !rest.is_empty() {
                let spare = d.spare(16 * 1024);
                let n = spare.len().min(rest.len()).min(100_000);
                spare[..n].copy_from_slice(&rest[..n]);
                d.commit(n);
                rest = &rest[n..];
                max_buf = max_buf.max(d.buf.len());
                if let Some(m) = d.decode().unwrap() {
                    return (Some(m), max_buf);
                }
            }
            (None, max_buf)
        })();
        assert_eq!(out, Some(msg));
        assert!(max_buf <= LARGE_CHUNK, "buffer grew to {max_buf}");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn messages_after_a_large_one_in_the_same_read_are_kept() {
        let first = big_msg(LARGE_ABOVE * 2, MsgFlags::MORE_TO_COME);
        let second = Message::new(10, Body::Msg(OpMsg::new(rawdoc! { "ok": 1 })));
        let third = big_msg(LARGE_ABOVE + 7, MsgFlags::empty());
        let mut bytes = encoded(&first);
        bytes.extend_from_slice(&encoded(&second));
        bytes.extend_from_slice(&encoded(&third));
        for chunk in [1000, 100_000, bytes.len()] {
            let (out, _) = decode_in_reads(&bytes, chunk);
            assert_eq!(
                out,
                vec![Ok(first.clone()), Ok(second.clone()), Ok(third.clone())]
            );
        }
    }

    #[test]
    fn large_messages_with_a_checksum_or_a_sequence_are_received_whole_then_parsed() {
        let with_checksum = big_msg(LARGE_ABOVE * 2, MsgFlags::CHECKSUM_PRESENT);
        let Body::Msg(m) = big_msg(LARGE_ABOVE * 2, MsgFlags::empty()).body else {
            unreachable!()
        };
        let with_sequence = Message::new(
            11,
            Body::Msg(m.with_sequence("documents", vec![rawdoc! { "a": 1 }])),
        );
        for msg in [with_checksum, with_sequence] {
            let (out, max_buf) = decode_in_reads(&encoded(&msg), 50_000);
            assert_eq!(out, vec![Ok(msg)]);
            assert!(max_buf <= LARGE_CHUNK, "buffer grew to {max_buf}");
        }
    }

    #[test]
    fn a_large_compressed_message_is_received_whole_then_decompressed() {
        // Pseudo-random bytes, so that the compressed message stays large.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        // Over `SHRINK_ABOVE` once decompressed: the decompression buffer becomes the body.
        let bytes: Vec<u8> = (0..SHRINK_ABOVE + 1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let body = rawdoc! { "data": Binary { subtype: BinarySubtype::Generic, bytes } };
        let msg = Message::new(12, Body::Msg(OpMsg::new(body)));
        let mut wire = Vec::new();
        encode(&msg, Some(&crate::options::Compressor::Snappy), &mut wire).expect("encode");
        assert!(wire.len() > LARGE_ABOVE);
        let (out, max_buf) = decode_in_reads(&wire, 70_000);
        let mut expected = msg;
        expected.compressor_id = Some(compression::SNAPPY_ID);
        assert_eq!(out, vec![Ok(expected)]);
        assert!(max_buf <= LARGE_CHUNK, "buffer grew to {max_buf}");
    }

    /// The large path rejects exactly what the ordinary parse rejects, with the same error.
    #[test]
    fn a_corrupt_large_body_fails_as_the_ordinary_parse_does() {
        let good = encoded(&big_msg(LARGE_ABOVE * 2, MsgFlags::empty()));
        let last = good.len() - 1;
        let mut cases = Vec::new();
        // The body's terminating NUL.
        let mut bad = good.clone();
        bad[last] = 1;
        cases.push(bad);
        // A body length that does not cover the message: not taken by the large path.
        for delta in [-1i32, 1, -1000] {
            let mut bad = good.clone();
            let declared = read_i32(&bad, BODY_OFFSET).unwrap() + delta;
            bad[BODY_OFFSET..BODY_OFFSET + 4].copy_from_slice(&declared.to_le_bytes());
            cases.push(bad);
        }
        // An unknown section kind, and unknown required flag bits.
        let mut bad = good.clone();
        bad[BODY_OFFSET - 1] = 5;
        cases.push(bad);
        let mut bad = good.clone();
        bad[HEADER_LEN] = 0x04;
        cases.push(bad);
        for bad in cases {
            let header = Header::parse(&bad).unwrap();
            let expected = parse_message(
                &header,
                &bad,
                DEFAULT_MAX_MESSAGE_SIZE,
                &mut Vec::new(),
                &mut compression::Decompressor::new(),
            )
            .unwrap_err();
            let (out, _) = decode_in_reads(&bad, 30_000);
            assert_eq!(out, vec![Err(expected.clone())]);
            // Poisoned: the same error again.
            let mut d = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
            d.feed(&bad);
            assert_eq!(d.decode(), Err(expected.clone()));
            assert_eq!(d.decode(), Err(expected));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Any read pattern decodes a large message and its neighbours as one feed does.
        #[test]
        fn prop_large_messages_survive_any_read_sizes(
            size in LARGE_ABOVE - 100..LARGE_ABOVE * 3,
            chunk in 1usize..300_000,
            small_first in any::<bool>(),
        ) {
            let big = big_msg(size, MsgFlags::empty());
            let small = Message::new(3, Body::Msg(OpMsg::new(rawdoc! { "n": 1 })));
            let msgs = if small_first { vec![small, big] } else { vec![big, small] };
            let mut bytes = Vec::new();
            for m in &msgs {
                bytes.extend_from_slice(&encoded(m));
            }
            let (out, _) = decode_in_reads(&bytes, chunk.max(1));
            let expected: Vec<_> = msgs.into_iter().map(Ok).collect();
            prop_assert_eq!(out, expected);
        }
    }
}

#[cfg(test)]
mod large_tests {
    use super::*;
    use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;
    /// A peer that announces a large message and sends only part of it: the decoder holds what
    /// was sent, not what was announced (the body used to be allocated at its announced length).
    #[test]
    fn a_large_announced_message_costs_what_is_sent() {
        for op in [OpCode::Msg as i32, OpCode::Reply as i32] {
            let mut d = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
            let mut start = Vec::new();
            start.extend_from_slice(&40_000_000i32.to_le_bytes());
            start.extend_from_slice(&1i32.to_le_bytes());
            start.extend_from_slice(&0i32.to_le_bytes());
            start.extend_from_slice(&op.to_le_bytes());
            start.extend_from_slice(&0u32.to_le_bytes());
            start.push(0);
            start.extend_from_slice(&(40_000_000i32 - 21).to_le_bytes());
            d.feed(&start);
            d.feed(&[0x10; 100_000]);
            assert_eq!(d.decode(), Ok(None));
            let held = d.large.as_ref().map_or(0, |l| l.body.capacity());
            assert!(held <= 1 << 20, "holds {held} bytes for 100 KB received");
            assert!(d.buf.len() <= 1 << 20);
        }
    }
}
