//! Raw BSON, read straight from the bytes: little-endian integers, the length of an element's
//! value, structural validation, the one-pass decoder to [`bson::Document`], and [`decode`],
//! which turns one (unvalidated) reply document into any `T` by the cheapest way that checks it.
//!
//! Every walk here is bounded by the slice it reads (no index can go past it) and either
//! iterative or depth-limited, so no input can overflow the stack.

mod fast_decode;
#[cfg(test)]
mod tests;
mod validate;

use std::any::{Any, TypeId};

use bson::RawDocumentBuf;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub use validate::{element_value_len, validate_document, validate_document_depth};

/// Reads a little-endian i32 at `at`, or `None` past the end.
#[inline]
pub fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(s.try_into().ok()?))
}

/// Reads a little-endian u32 at `at`, or `None` past the end.
#[inline]
pub fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    read_i32(b, at).map(|v| v as u32)
}

/// `value` as a `T`, if `U` is `T` (no allocation: the value moves through an `Option`).
fn cast<U: 'static, T: 'static>(value: U) -> Option<T> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}

/// How deeply nested a document the driver decodes into a [`bson::Document`] or a `T`, counting
/// the document itself as level 1: MongoDB's own default `maxBSONDepth` (stored documents may
/// nest 100 levels, and a reply's envelope adds a few). A deeper reply is an `InvalidResponse`
/// error, never a stack overflow: decoding it is safe at any depth, but a `Document` that deep
/// recurses when it is dropped, cloned, compared, printed or encoded again.
/// ([`RawDocumentBuf`] replies, which nothing walks recursively, are handed out at any depth.)
pub const MAX_DOCUMENT_DEPTH: usize = 200;

/// Stack a serde deserialization may use per level of nesting: measured at about 26 KiB in an
/// unoptimized build (the bson crate's deserializer, per nested document), under 3 KiB in an
/// optimized one.
const SERDE_STACK_PER_LEVEL: usize = if cfg!(debug_assertions) {
    32 * 1024
} else {
    8 * 1024
};
/// Stack any deserialization may use besides its nesting (the visitor of a large struct).
const SERDE_STACK_BASE: usize = 128 * 1024;

/// Validates one (unvalidated) document and turns it into a `T`: a `bson::Document` by the
/// one-pass decoder (which validates everything it accepts and never recurses), copied out as
/// is when `T` is `RawDocumentBuf`, else deserialized with serde. A malformed document, or one
/// nested deeper than [`MAX_DOCUMENT_DEPTH`] (for anything but `RawDocumentBuf`), is an
/// `InvalidResponse` error.
///
/// Serde recurses once per level of nesting, using far more stack per level in a debug build
/// than a runtime's worker thread has for a document as deep as MongoDB stores: when the
/// current thread's stack has not enough room left for the document's depth, the
/// deserialization runs on a stack of its own, grown for it.
pub fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T> {
    if TypeId::of::<T>() == TypeId::of::<bson::Document>() {
        let doc = decode_document(bytes)?;
        return cast(doc).ok_or_else(|| Error::internal("document conversion failed"));
    }
    if TypeId::of::<T>() == TypeId::of::<RawDocumentBuf>() {
        validate_document(bytes)?;
        let raw = RawDocumentBuf::from_bytes(bytes.to_vec())
            .map_err(|e| Error::invalid_response(format!("invalid document: {e}")))?;
        return cast(raw).ok_or_else(|| Error::internal("raw document conversion failed"));
    }
    deserialize(bytes)
}

/// Validates one (unvalidated) document and deserializes it into a `T` with serde, on a stack
/// grown for its depth when the current one has not room enough (see [`decode`], which also
/// takes the faster ways for `Document` and `RawDocumentBuf`). A malformed document, or one
/// nested deeper than [`MAX_DOCUMENT_DEPTH`], is an `InvalidResponse` error.
pub fn deserialize<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let depth = validate_document_depth(bytes)?;
    if depth > MAX_DOCUMENT_DEPTH {
        return Err(too_deep());
    }
    let need = SERDE_STACK_BASE + depth * SERDE_STACK_PER_LEVEL;
    stacker::maybe_grow(need, need + SERDE_STACK_BASE, || {
        bson::deserialize_from_slice::<T>(bytes).map_err(Error::from)
    })
}

/// Decodes one (unvalidated) document into a [`bson::Document`] without recursion; malformed
/// BSON, or nesting deeper than [`MAX_DOCUMENT_DEPTH`], is an `InvalidResponse` error.
pub fn decode_document(bytes: &[u8]) -> Result<bson::Document> {
    match fast_decode::document(bytes, MAX_DOCUMENT_DEPTH) {
        Ok(doc) => Ok(doc),
        Err(fast_decode::Declined::TooDeep) => Err(too_deep()),
        Err(fast_decode::Declined::Malformed) => {
            // The validator says precisely what is wrong.
            validate_document(bytes)?;
            Err(Error::invalid_response("invalid BSON document"))
        }
    }
}

fn too_deep() -> Error {
    Error::invalid_response(format!(
        "a document is nested more than {MAX_DOCUMENT_DEPTH} levels deep (MongoDB stores at \
         most 100)"
    ))
}

/// Converts a reply (whose contents the wire decoder has not validated) into a `Document`,
/// validating it on the way, without recursion; malformed BSON or nesting deeper than
/// [`MAX_DOCUMENT_DEPTH`] is an `InvalidResponse` error.
pub fn to_document(raw: &bson::RawDocument) -> Result<bson::Document> {
    decode_document(raw.as_bytes())
}

/// Converts one value of a reply into a [`bson::Bson`] without recursion (see
/// [`decode_document`]); malformed BSON or too deep a nesting is an `InvalidResponse` error.
pub fn to_bson(value: bson::RawBsonRef<'_>) -> Result<bson::Bson> {
    use bson::{Bson, RawBsonRef};
    Ok(match value {
        RawBsonRef::Document(d) => Bson::Document(decode_document(d.as_bytes())?),
        // Decoded as an array, not through a Document: an array's keys are ignored (repeated
        // ones would collapse in a Document).
        RawBsonRef::Array(a) => match fast_decode::array(a.as_bytes(), MAX_DOCUMENT_DEPTH) {
            Ok(items) => Bson::Array(items),
            Err(fast_decode::Declined::TooDeep) => return Err(too_deep()),
            Err(fast_decode::Declined::Malformed) => {
                validate_document(a.as_bytes())?;
                return Err(Error::invalid_response("invalid BSON array"));
            }
        },
        RawBsonRef::JavaScriptCodeWithScope(c) => {
            Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope {
                code: c.code.to_string(),
                scope: decode_document(c.scope.as_bytes())?,
            })
        }
        other => Bson::try_from(other)
            .map_err(|e| Error::invalid_response(format!("invalid BSON value: {e}")))?,
    })
}

/// `depth` levels of `{"0": {"0": ... {}}}` (`kind` 0x03) or of nested arrays (0x04) as bytes,
/// written directly (the bson crate's encoder recurses too).
#[cfg(test)]
pub(crate) fn nested_document(depth: usize, kind: u8) -> Vec<u8> {
    let depth = depth.max(1);
    let mut out = Vec::with_capacity(depth * 8);
    for level in (1..depth).rev() {
        let len = i32::try_from(5 + level * 8).unwrap_or(i32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[kind, b'0', 0]);
    }
    out.extend_from_slice(&[5, 0, 0, 0, 0]);
    out.resize(out.len() + depth - 1, 0);
    out
}
