//! The MongoDB wire protocol: bytes in, messages out, and back. Sans-IO.
//!
//! # Design
//!
//! - **Messages** are plain data: a [`Message`] is a request id, a `responseTo`, a [`Body`]
//!   ([`OpMsg`], [`OpQuery`] or [`OpReply`]) and, on received messages, the id of the compressor
//!   it arrived wrapped in. Documents are [`bson::RawDocumentBuf`]s: bytes as they were on the
//!   wire, never parsed into a tree here.
//! - **Encoding** ([`encode`]) appends one whole message to a caller-owned `Vec<u8>` that the
//!   caller reuses between messages (the rustls style). The header is reserved first and its
//!   length filled in at the end, so an uncompressed message is written in one pass with no
//!   intermediate buffer. With a compressor the uncompressed message is built once in a scratch
//!   buffer (the OP_MSG checksum is computed over it, as the server does) and its body compressed
//!   straight into `out` behind an OP_COMPRESSED header.
//! - **Decoding** is incremental: a [`Decoder`] owns one growable buffer. Bytes come in through
//!   [`Decoder::feed`] or, without a copy, by reading the socket straight into
//!   [`Decoder::spare`] and calling [`Decoder::commit`]. [`Decoder::decode`] returns whole messages
//!   as they complete; the consumed prefix of the buffer is reclaimed lazily (compacted when space
//!   is needed at the end), so one socket read may carry many messages or a fraction of one.
//!   Once a header is seen, `spare` offers room for the whole message, so a large reply is
//!   read with few calls. OP_COMPRESSED is unwrapped transparently into a reused scratch buffer.
//! - **Validation** of the framing is complete and typed: every length is checked against the
//!   bytes present and the maximum message size before anything is allocated; each document
//!   (body, sequence document, OP_REPLY document) must have a length of at least 5 that fits its
//!   section and end in NUL; OP_MSG checksums are verified; the decompressed size announced by OP_COMPRESSED is checked
//!   against the maximum *before* decompressing and against the actual output after (a
//!   decompression bomb never allocates more than the announced, bounded size). Bad input is a
//!   [`WireError`], never a panic.
//! - **Document contents are validated once, where they are read**, not here: a reply's bytes
//!   would otherwise be walked twice (once here, once by whoever decodes them). Every reader
//!   checks what it uses: the cursor's one-pass decoder validates as it decodes (and the general
//!   path runs [`validate_document`] first), documents handed out raw are checked with
//!   [`validate_document`], and internal readers go through the `bson` raw accessors, which
//!   return errors on malformed input. A decoded message's documents are therefore
//!   [`RawDocumentBuf`]s whose length prefix and terminator are right but whose elements may
//!   still be malformed: never `unwrap` what their accessors return.
//! - **Poisoning**: after a decode error the stream's framing can no longer be trusted, so the
//!   decoder remembers the error and returns it again from every later [`Decoder::decode`]. The
//!   connection owning it must be closed.
//!
//! Compression algorithms live in [`compression`].

mod bson_encode;
pub mod compression;
mod decoder;
mod encode;
pub mod raw;

#[cfg(test)]
mod tests;

use bson::{Document, RawDocumentBuf};

pub use bson_encode::write_document;
pub use decoder::Decoder;
pub use encode::{encode, encode_command, encode_op_msg, CommandBody, DocumentSequenceRef};
pub use raw::{element_value_len, read_i32, read_u32, validate_document};

/// The default maximum size of a message (the server's default `maxMessageSizeBytes`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 48_000_000;

/// The length of a message header.
pub const HEADER_LEN: usize = 16;

/// The length of the OP_COMPRESSED fields that follow the header
/// (`originalOpcode`, `uncompressedSize`, `compressorId`).
pub const COMPRESSED_PREFIX_LEN: usize = 9;

/// A wire protocol opcode this driver speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// OP_REPLY, the legacy reply (to OP_QUERY).
    Reply = 1,
    /// OP_QUERY, the legacy query (used only for the initial handshake).
    Query = 2004,
    /// OP_COMPRESSED, a compressed wrapper around another message.
    Compressed = 2012,
    /// OP_MSG, the modern message.
    Msg = 2013,
}

impl OpCode {
    /// The opcode with this wire value, if known.
    pub fn from_i32(code: i32) -> Option<OpCode> {
        match code {
            1 => Some(OpCode::Reply),
            2004 => Some(OpCode::Query),
            2012 => Some(OpCode::Compressed),
            2013 => Some(OpCode::Msg),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

/// A message header (`MsgHeader`), as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The whole message's length, header included.
    pub length: i32,
    pub request_id: i32,
    pub response_to: i32,
    /// The raw opcode (see [`OpCode::from_i32`]).
    pub op_code: i32,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes of `bytes`, or `None` if it is shorter.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let h = bytes.get(..HEADER_LEN)?;
        Some(Header {
            length: read_i32(h, 0)?,
            request_id: read_i32(h, 4)?,
            response_to: read_i32(h, 8)?,
            op_code: read_i32(h, 12)?,
        })
    }

    /// The header as its 16 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.length.to_le_bytes());
        b[4..8].copy_from_slice(&self.request_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.response_to.to_le_bytes());
        b[12..16].copy_from_slice(&self.op_code.to_le_bytes());
        b
    }
}

/// OP_MSG `flagBits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgFlags(pub u32);

impl MsgFlags {
    /// A CRC-32C checksum follows the sections.
    pub const CHECKSUM_PRESENT: MsgFlags = MsgFlags(1 << 0);
    /// The sender will send another message without waiting for a reply.
    pub const MORE_TO_COME: MsgFlags = MsgFlags(1 << 1);
    /// The client accepts several replies (`moreToCome`) to this request.
    pub const EXHAUST_ALLOWED: MsgFlags = MsgFlags(1 << 16);
    /// The required bits (0-15) this driver understands.
    const KNOWN_REQUIRED: u32 = (1 << 0) | (1 << 1);
    /// The mask of the required bits.
    const REQUIRED_MASK: u32 = 0xFFFF;

    /// No flags.
    pub const fn empty() -> Self {
        MsgFlags(0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: MsgFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: MsgFlags) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: MsgFlags) {
        self.0 &= !other.0;
    }

    /// The required bits that are set but unknown to this driver (an error when received).
    pub const fn unknown_required(self) -> u32 {
        self.0 & Self::REQUIRED_MASK & !Self::KNOWN_REQUIRED
    }
}

impl std::ops::BitOr for MsgFlags {
    type Output = MsgFlags;
    fn bitor(self, rhs: MsgFlags) -> MsgFlags {
        MsgFlags(self.0 | rhs.0)
    }
}

/// An OP_MSG kind-1 section: documents given as a sequence instead of an array in the body.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentSequence {
    /// The command argument the documents belong to (`documents`, `updates`, `deletes`, `ops`,
    /// `nsInfo`).
    pub identifier: String,
    pub documents: Vec<RawDocumentBuf>,
}

/// An OP_MSG message.
#[derive(Clone, Debug, PartialEq)]
pub struct OpMsg {
    pub flags: MsgFlags,
    /// The kind-0 section: the command or reply document. On a decoded message only its
    /// framing is checked (see the module docs on validation).
    pub body: RawDocumentBuf,
    /// The kind-1 sections, in wire order.
    pub sequences: Vec<DocumentSequence>,
}

impl OpMsg {
    /// An OP_MSG with this body, no flags and no sequences.
    pub fn new(body: RawDocumentBuf) -> Self {
        OpMsg {
            flags: MsgFlags::empty(),
            body,
            sequences: Vec::new(),
        }
    }

    /// An OP_MSG whose body is `doc` serialized.
    pub fn from_document(doc: &Document) -> Result<Self, WireError> {
        let body =
            RawDocumentBuf::try_from(doc).map_err(|e| WireError::InvalidBson(e.to_string()))?;
        Ok(OpMsg::new(body))
    }

    /// Adds a document sequence (builder style).
    pub fn with_sequence(
        mut self,
        identifier: impl Into<String>,
        documents: Vec<RawDocumentBuf>,
    ) -> Self {
        self.sequences.push(DocumentSequence {
            identifier: identifier.into(),
            documents,
        });
        self
    }

    /// The sequence with this identifier, if any.
    pub fn sequence(&self, identifier: &str) -> Option<&DocumentSequence> {
        self.sequences.iter().find(|s| s.identifier == identifier)
    }
}

/// An OP_QUERY message (legacy; used for the first handshake with an unknown server).
#[derive(Clone, Debug, PartialEq)]
pub struct OpQuery {
    pub flags: u32,
    /// `<db>.<collection>`, e.g. `admin.$cmd`.
    pub full_collection_name: String,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    pub query: RawDocumentBuf,
    pub return_fields_selector: Option<RawDocumentBuf>,
}

/// An OP_REPLY message (legacy reply to OP_QUERY).
#[derive(Clone, Debug, PartialEq)]
pub struct OpReply {
    pub response_flags: u32,
    pub cursor_id: i64,
    pub starting_from: i32,
    /// The documents (`numberReturned` is their count); decoded ones are framed, their
    /// contents unvalidated (see the module docs).
    pub documents: Vec<RawDocumentBuf>,
}

/// The body of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Msg(OpMsg),
    Query(OpQuery),
    Reply(OpReply),
}

impl Body {
    /// The opcode this body is sent with (uncompressed).
    pub fn op_code(&self) -> OpCode {
        match self {
            Body::Msg(_) => OpCode::Msg,
            Body::Query(_) => OpCode::Query,
            Body::Reply(_) => OpCode::Reply,
        }
    }

    /// The OP_MSG, if this is one.
    pub fn as_msg(&self) -> Option<&OpMsg> {
        match self {
            Body::Msg(m) => Some(m),
            _ => None,
        }
    }

    /// The OP_MSG, if this is one.
    pub fn into_msg(self) -> Option<OpMsg> {
        match self {
            Body::Msg(m) => Some(m),
            _ => None,
        }
    }

    /// The command reply document: an OP_MSG's body, or the single document of an OP_REPLY.
    /// An OP_REPLY with another number of documents, or an OP_QUERY, is
    /// [`WireError::Malformed`].
    pub fn into_reply_document(self) -> Result<RawDocumentBuf, WireError> {
        match self {
            Body::Msg(m) => Ok(m.body),
            Body::Reply(r) => {
                let n = r.documents.len();
                let mut docs = r.documents.into_iter();
                match (docs.next(), n) {
                    (Some(doc), 1) => Ok(doc),
                    _ => Err(WireError::Malformed(format!(
                        "a command reply OP_REPLY must hold one document, not {n}"
                    ))),
                }
            }
            Body::Query(_) => Err(WireError::Malformed(
                "an OP_QUERY is not a command reply".to_string(),
            )),
        }
    }
}

/// One wire message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub request_id: i32,
    pub response_to: i32,
    pub body: Body,
    /// The id of the compressor the message arrived wrapped in (OP_COMPRESSED), if any.
    /// Ignored by [`encode`], which compresses with the compressor it is given.
    pub compressor_id: Option<u8>,
}

impl Message {
    /// A message with this request id, `responseTo` 0 and this body.
    pub fn new(request_id: i32, body: Body) -> Self {
        Message {
            request_id,
            response_to: 0,
            body,
            compressor_id: None,
        }
    }
}

/// Commands whose messages must never be compressed (OP_COMPRESSED spec).
const UNCOMPRESSIBLE_COMMANDS: &[&str] = &[
    "hello",
    "ismaster",
    "saslstart",
    "saslcontinue",
    "getnonce",
    "authenticate",
    "createuser",
    "updateuser",
    "copydbsaslstart",
    "copydbgetnonce",
    "copydb",
];

/// Whether a command named `name` (its first key) may be sent compressed. Handshake and
/// authentication commands must not be (legacy hello is matched case-insensitively).
pub fn command_may_be_compressed(name: &str) -> bool {
    !UNCOMPRESSIBLE_COMMANDS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// A wire protocol error: the bytes are not a valid message, or a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The header's `messageLength` is smaller than a header (or than the opcode's fixed fields).
    #[error("message length {length} is too short")]
    MessageTooShort { length: i32 },
    /// The message (or its decompressed size) is larger than the maximum message size.
    #[error("message length {length} exceeds the maximum of {max} bytes")]
    MessageTooLarge { length: usize, max: usize },
    /// An OP_COMPRESSED message announces an `uncompressedSize` that makes its original
    /// message (`uncompressed_size` plus the 16-byte header) larger than the maximum message
    /// size.
    #[error(
        "OP_COMPRESSED announces {uncompressed_size} uncompressed bytes, more than the maximum \
         message size of {max} bytes allows"
    )]
    UncompressedTooLarge {
        uncompressed_size: usize,
        max: usize,
    },
    /// The opcode is not one this driver understands.
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    /// An OP_MSG section kind other than 0 or 1.
    #[error("unknown OP_MSG section kind {0}")]
    UnknownSectionKind(u8),
    /// OP_MSG required flag bits (0-15) that this driver does not know are set.
    #[error("unknown required OP_MSG flag bits {0:#x}")]
    UnknownRequiredFlags(u32),
    /// The OP_MSG CRC-32C checksum does not match its contents.
    #[error(
        "OP_MSG checksum mismatch: message says {expected:#010x}, contents hash to {actual:#010x}"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },
    /// A document is not valid BSON.
    #[error("invalid BSON: {0}")]
    InvalidBson(String),
    /// OP_COMPRESSED data did not decompress to the announced size. When the data decompresses to
    /// more than announced, decompression stops early and `actual` is `expected + 1`.
    #[error("decompressed size mismatch: expected {expected} bytes, got {actual}")]
    DecompressedSizeMismatch { expected: usize, actual: usize },
    /// An OP_COMPRESSED compressor id this driver does not know.
    #[error("unknown compressor id {0}")]
    UnknownCompressor(u8),
    /// The compressor or decompressor failed.
    #[error("compression error: {0}")]
    Compression(String),
    /// OP_REPLY's `numberReturned` disagrees with the documents present.
    #[error("OP_REPLY says {declared} documents but holds {actual}")]
    NumberReturnedMismatch { declared: i32, actual: usize },
    /// Any other structural problem (truncated field, missing or duplicate body section, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message could not be encoded (a name containing NUL, a message over 2 GiB, ...).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl From<WireError> for crate::Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Encode(_) => crate::Error::invalid_argument(e.to_string()),
            _ => crate::Error::invalid_response(e.to_string()),
        }
    }
}
