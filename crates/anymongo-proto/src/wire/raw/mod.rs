//! Raw BSON, read straight from the bytes: little-endian integers, the length of an element's
//! value, structural validation, the one-pass decoder to [`bson::Document`], and [`decode`],
//! which turns one (unvalidated) reply document into any `T` by the cheapest way that checks it.
//!
//! Every walk here is bounded by the slice it reads (no index can go past it) and either
//! iterative or depth-limited, so no input can overflow the stack.

pub mod fast_decode;
#[cfg(test)]
mod tests;
mod validate;

use std::any::{Any, TypeId};

use bson::RawDocumentBuf;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub use validate::{element_value_len, validate_document};

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

/// Validates one (unvalidated) document and turns it into a `T`: a `bson::Document` by the
/// one-pass decoder (which validates everything it accepts), copied out as is when `T` is
/// `RawDocumentBuf`, else deserialized. A malformed document is an `InvalidResponse` error.
pub fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T> {
    if TypeId::of::<T>() == TypeId::of::<bson::Document>() {
        if let Some(doc) = fast_decode::document(bytes).and_then(cast) {
            return Ok(doc);
        }
    }
    // Declined by the one-pass decoder, or another type: validated, then the general path.
    validate_document(bytes)?;
    if TypeId::of::<T>() == TypeId::of::<RawDocumentBuf>() {
        let raw = RawDocumentBuf::from_bytes(bytes.to_vec())
            .map_err(|e| Error::invalid_response(format!("invalid document: {e}")))?;
        return cast(raw).ok_or_else(|| Error::internal("raw document conversion failed"));
    }
    bson::deserialize_from_slice::<T>(bytes).map_err(Error::from)
}

/// Converts a reply (whose contents the wire decoder has not validated) into a `Document`,
/// validating it on the way; malformed BSON is an `InvalidResponse` error.
pub fn to_document(raw: &bson::RawDocument) -> Result<bson::Document> {
    decode(raw.as_bytes())
}
