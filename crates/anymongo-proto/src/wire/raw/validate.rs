//! Full structural validation of BSON documents.

use bson::raw::{RawBsonRef, RawDocument, RawIter};

use crate::wire::WireError;

/// Checks that `bytes` is exactly one valid BSON document: its declared length equals
/// `bytes.len()`, and every element, recursively, parses (types, lengths, terminators, UTF-8 of
/// keys and strings, nested documents, arrays and code-with-scope scopes).
///
/// The walk uses an explicit stack, so arbitrarily deep nesting cannot overflow the call stack.
/// A single pass over the bytes (`certainly_valid`) accepts the common case; anything it is
/// not sure about goes through the element-by-element walk of the `bson` crate, which gives the
/// error.
pub fn validate_document(bytes: &[u8]) -> Result<(), WireError> {
    validate_document_depth(bytes).map(drop)
}

/// [`validate_document`], also returning how deeply the document nests (the document itself is
/// level 1; each embedded document, array or code-with-scope scope adds one).
pub fn validate_document_depth(bytes: &[u8]) -> Result<usize, WireError> {
    if let Some(depth) = check(bytes) {
        return Ok(depth);
    }
    validate_with_bson(bytes)
}

/// The element-by-element walk with the `bson` crate's raw iterators (the reference); returns
/// the depth.
fn validate_with_bson(bytes: &[u8]) -> Result<usize, WireError> {
    let doc = RawDocument::from_bytes(bytes).map_err(bson_err)?;
    let mut stack: Vec<RawIter<'_>> = Vec::new();
    stack.push(doc.iter_elements());
    let mut depth = 1;
    while let Some(iter) = stack.last_mut() {
        let Some(next) = iter.next() else {
            stack.pop();
            continue;
        };
        let element = next.map_err(bson_err)?;
        match element.value().map_err(bson_err)? {
            RawBsonRef::Document(d) => stack.push(d.iter_elements()),
            RawBsonRef::Array(a) => stack.push(a.iter_elements()),
            RawBsonRef::JavaScriptCodeWithScope(c) => stack.push(c.scope.iter_elements()),
            _ => {}
        }
        depth = depth.max(stack.len());
    }
    Ok(depth)
}

/// The length of the value of an element of BSON type `kind` that starts at `at` in `b`, read
/// from the type and the value's length prefix alone: no UTF-8 or nested check, but strings must
/// end in their NUL and embedded documents in theirs. `None` for an unknown type, a length that
/// does not fit `b`, or a missing terminator. For walks that skip over elements by their lengths
/// (the caller decides what a `None` means, usually "read it the general way").
pub fn element_value_len(b: &[u8], kind: u8, at: usize) -> Option<usize> {
    let prefixed = |extra: usize| -> Option<usize> {
        usize::try_from(i32_at(b, at)?).ok()?.checked_add(extra)
    };
    let ends_in_nul = |len: usize| {
        at.checked_add(len)
            .and_then(|end| end.checked_sub(1))
            .and_then(|last| b.get(last))
            == Some(&0)
    };
    let after_cstring = |from: usize| Some(from + b.get(from..)?.iter().position(|&c| c == 0)? + 1);
    let len = match kind {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x10 => 4,
        0x13 => 16,
        0x07 => 12,
        0x08 => 1,
        0x06 | 0x0A | 0xFF | 0x7F => 0,
        0x02 | 0x0D | 0x0E => {
            let len = prefixed(4)?;
            if len == 4 || !ends_in_nul(len) {
                return None;
            }
            len
        }
        0x03 | 0x04 | 0x0F => {
            let len = prefixed(0)?;
            if len < 5 || !ends_in_nul(len) {
                return None;
            }
            len
        }
        0x05 => prefixed(5)?,
        0x0C => prefixed(16)?,
        0x0B => after_cstring(after_cstring(at)?)? - at,
        _ => return None,
    };
    (at.checked_add(len)? <= b.len()).then_some(len)
}

fn bson_err(e: bson::error::Error) -> WireError {
    WireError::InvalidBson(e.to_string())
}

fn i32_at(b: &[u8], pos: usize) -> Option<i32> {
    let s = b.get(pos..pos.checked_add(4)?)?;
    Some(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A NUL-terminated UTF-8 string without interior NULs starting at `pos`, ending before
/// `end`; returns the position after its NUL.
fn cstring(b: &[u8], pos: usize, end: usize) -> Option<usize> {
    let s = b.get(pos..end)?;
    let n = s.iter().position(|&c| c == 0)?;
    utf8(&s[..n])?;
    Some(pos + n + 1)
}

/// A length-prefixed, NUL-terminated UTF-8 string at `pos` within `..end`; returns the
/// position after it.
fn string(b: &[u8], pos: usize, end: usize) -> Option<usize> {
    let len = usize::try_from(i32_at(b, pos)?).ok().filter(|&l| l >= 1)?;
    let stop = pos.checked_add(4)?.checked_add(len)?;
    if stop > end {
        return None;
    }
    let s = b.get(pos + 4..stop - 1)?;
    // (Interior NULs are allowed in string values, as the bson crate allows them.)
    if b.get(stop - 1) != Some(&0) {
        return None;
    }
    utf8(s)?;
    Some(stop)
}

/// Whether `s` is UTF-8, checking the common all-ASCII case (keys, most values) word-wise first.
fn utf8(s: &[u8]) -> Option<()> {
    if s.is_ascii() || std::str::from_utf8(s).is_ok() {
        Some(())
    } else {
        None
    }
}

/// How deep the single pass follows nesting (its stack lives on the call stack, no allocation);
/// deeper documents go to the `bson` walk.
const MAX_FAST_DEPTH: usize = 32;

/// One pass over `b` that returns `true` only for a well-formed document, and `false` for a
/// malformed one, for element kinds it leaves to the `bson` walk (code with scope, old binary),
/// or for nesting deeper than [`MAX_FAST_DEPTH`].
/// Stricter than the walk, never looser: `true` means [`validate_with_bson`] accepts `b` too.
#[cfg(test)]
fn certainly_valid(b: &[u8]) -> bool {
    check(b).is_some()
}

/// [`certainly_valid`], returning the depth of a document it accepts.
fn check(b: &[u8]) -> Option<usize> {
    if usize::try_from(i32_at(b, 0)?).ok()? != b.len() || b.len() < 5 || b[b.len() - 1] != 0 {
        return None;
    }
    // `end` is the index of the terminating NUL of the document being walked; `stack[..depth]`
    // holds the enclosing documents' ends.
    let mut stack = [0usize; MAX_FAST_DEPTH];
    let mut depth = 0;
    let mut deepest = 0;
    let mut end = b.len() - 1;
    let mut pos = 4;
    loop {
        if pos == end {
            pos += 1;
            if depth == 0 {
                return (pos == b.len()).then_some(deepest + 1);
            }
            depth -= 1;
            end = *stack.get(depth)?;
            continue;
        }
        if pos > end {
            return None;
        }
        let kind = b[pos];
        pos = cstring(b, pos + 1, end)?;
        let fixed = |n: usize| pos.checked_add(n);
        pos = match kind {
            0x01 | 0x09 | 0x11 | 0x12 => fixed(8)?,
            0x10 => fixed(4)?,
            0x13 => fixed(16)?,
            0x07 => fixed(12)?,
            0x08 => {
                if *b.get(pos)? > 1 {
                    return None;
                }
                fixed(1)?
            }
            0x06 | 0x0A | 0xFF | 0x7F => pos,
            0x02 | 0x0D | 0x0E => string(b, pos, end)?,
            0x0C => string(b, pos, end)?.checked_add(12)?,
            0x0B => {
                let p = cstring(b, pos, end)?;
                cstring(b, p, end)?
            }
            0x05 => {
                let len = usize::try_from(i32_at(b, pos)?).ok()?;
                let subtype = *b.get(pos + 4)?;
                if subtype == 0x02 {
                    return None;
                }
                pos.checked_add(5)?.checked_add(len)?
            }
            0x03 | 0x04 => {
                let len = usize::try_from(i32_at(b, pos)?).ok().filter(|&l| l >= 5)?;
                let stop = pos.checked_add(len)?;
                if stop > end || b[stop - 1] != 0 {
                    return None;
                }
                *stack.get_mut(depth)? = end;
                depth += 1;
                deepest = deepest.max(depth);
                end = stop - 1;
                pos + 4
            }
            _ => return None,
        };
        if pos > end {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Decimal128, RawDocumentBuf, Regex};

    fn rich() -> Vec<u8> {
        let d = doc! {
            "d": 1.5, "s": "héllo", "doc": { "a": [1, 2, { "b": "c" }], "e": {} },
            "bin": Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "undef": Bson::Undefined, "oid": ObjectId::from_bytes([7; 12]), "t": true, "f": false,
            "dt": DateTime::from_millis(5), "null": Bson::Null,
            "re": Regex { pattern: bson::cstr!("a.c").into(), options: bson::cstr!("i").into() },
            "code": Bson::JavaScriptCode("f()".into()), "sym": Bson::Symbol("x".into()),
            "i32": 7, "ts": Bson::Timestamp(bson::Timestamp { time: 1, increment: 2 }),
            "i64": 9i64, "dec": Decimal128::from_bytes([3; 16]),
            "min": Bson::MinKey, "max": Bson::MaxKey,
        };
        RawDocumentBuf::try_from(&d).unwrap().into_bytes()
    }

    #[test]
    fn the_single_pass_accepts_every_ordinary_element_type() {
        assert!(certainly_valid(&rich()));
        assert!(certainly_valid(&[5, 0, 0, 0, 0]));
    }

    #[test]
    fn the_single_pass_leaves_deep_nesting_to_the_walk() {
        let nested = |depth: usize| {
            let mut d = doc! { "x": 1 };
            for _ in 0..depth {
                d = doc! { "n": d };
            }
            RawDocumentBuf::try_from(&d).unwrap().into_bytes()
        };
        assert!(certainly_valid(&nested(MAX_FAST_DEPTH)));
        let deep = nested(MAX_FAST_DEPTH + 1);
        assert!(!certainly_valid(&deep));
        validate_document(&deep).unwrap();
        // Both walks count the same depth (the document itself is level 1).
        assert_eq!(check(&nested(5)), Some(6));
        assert_eq!(validate_with_bson(&nested(5)), Ok(6));
        assert_eq!(validate_document_depth(&deep), Ok(MAX_FAST_DEPTH + 2));
        let huge = crate::wire::raw::nested_document(100_000, 0x04);
        assert_eq!(validate_document_depth(&huge), Ok(100_000));
    }

    #[test]
    fn the_single_pass_never_accepts_what_the_bson_walk_rejects() {
        // Every single-byte corruption of a document with every element type: the fast pass
        // may decline a valid document (the walk then decides), but must never accept an
        // invalid one.
        let good = rich();
        let mut declined = 0;
        for i in 0..good.len() {
            for v in [
                0x00,
                0x01,
                0x02,
                0x05,
                0x0F,
                0x7F,
                0x80,
                0xFF,
                good[i].wrapping_add(1),
            ] {
                let mut bad = good.clone();
                bad[i] = v;
                if certainly_valid(&bad) {
                    assert!(
                        validate_with_bson(&bad).is_ok(),
                        "byte {i} set to {v:#x}: accepted by the fast pass only"
                    );
                } else {
                    declined += 1;
                }
            }
        }
        assert!(declined > 0);
        // Truncations too.
        for n in 0..good.len() {
            assert!(!certainly_valid(&good[..n]));
        }
    }
}
