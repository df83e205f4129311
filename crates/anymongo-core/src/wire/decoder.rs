//! The incremental decoder and the message parsers.

use std::fmt;

use bson::RawDocumentBuf;

use super::{
    compression, read_i32, read_u32, Body, DocumentSequence, Header, Message, MsgFlags, OpCode,
    OpMsg, OpQuery, OpReply, WireError, COMPRESSED_PREFIX_LEN, HEADER_LEN,
};

/// The smallest buffer the decoder allocates.
const INITIAL_CAPACITY: usize = 16 * 1024;
/// Buffers grown past this are released once empty (so one huge reply does not pin memory).
const SHRINK_ABOVE: usize = 32 * 1024 * 1024;

/// Incremental message decoder: feed it bytes in arbitrary chunks, take whole messages out.
///
/// ```
/// # use anymongo_core::wire::*;
/// # use anymongo_core::bson::rawdoc;
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
    /// region is large enough for the rest of that message. The bytes in it are unspecified.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        let want = min.max(1).max(self.pending_need());
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
        let avail = &self.buf[self.start..self.end];
        let Some(header) = Header::parse(avail) else {
            return Ok(None);
        };
        let length = match check_header(&header, self.max_message_size) {
            Ok(length) => length,
            Err(e) => return Err(self.poison(e)),
        };
        let Some(bytes) = avail.get(..length) else {
            return Ok(None);
        };
        let result = parse_message(
            &header,
            bytes,
            self.max_message_size,
            &mut self.scratch,
            &mut self.decompressor,
        );
        self.start += length;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = Vec::new();
            }
        }
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

    /// Bytes still missing from the message whose header is buffered (0 if none or invalid).
    fn pending_need(&self) -> usize {
        let avail = &self.buf[self.start..self.end];
        match Header::parse(avail) {
            Some(h) => match check_header(&h, self.max_message_size) {
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
        return Err(WireError::MessageTooLarge { length: total, max });
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
    Ok(Message {
        request_id: header.request_id,
        response_to: header.response_to,
        body: parse_body(original_op, scratch)?,
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

    let mut body: Option<RawDocumentBuf> = None;
    let mut sequences: Vec<DocumentSequence> = Vec::new();
    let mut pos = 0;
    while let Some(&kind) = sections.get(pos) {
        pos += 1;
        match kind {
            0 => {
                let (doc, next) = take_document(sections, pos)?;
                if body.replace(doc).is_some() {
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
    Ok(OpMsg {
        flags,
        body,
        sequences,
    })
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
    let doc = RawDocumentBuf::from_bytes(bytes.to_vec())
        .map_err(|e| WireError::InvalidBson(e.to_string()))?;
    Ok((doc, end))
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
