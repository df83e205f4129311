//! A `Document` → BSON encoder that appends to a caller's buffer, so a command body is written
//! straight into the connection's write buffer with no intermediate `RawDocumentBuf`.
//!
//! The bytes are exactly those of the `bson` crate (`RawDocumentBuf::try_from(&Document)`), and
//! a key holding a NUL byte fails with the same error (the key is checked by the same `bson`
//! conversion). Nesting is handled by recursion, as in `bson` itself.

use bson::spec::{BinarySubtype, ElementType};
use bson::{Bson, Document};

use crate::error::{Error, Result};

/// Appends `doc` as a BSON document. On error `out` may hold a partial document: the caller
/// truncates it.
pub fn write_document(doc: &Document, out: &mut Vec<u8>) -> Result<()> {
    let start = open(out);
    for (key, value) in doc {
        write_element(key, value, out)?;
    }
    close(start, out)
}

/// Appends one element (`type`, `key`, value) of a document.
pub fn write_element(key: &str, value: &Bson, out: &mut Vec<u8>) -> Result<()> {
    let key: &bson::raw::CStr = key.try_into()?;
    write_key(value.element_type(), key.as_str(), out);
    write_value(value, out)
}

/// Appends a string element (the `$db` of a command).
pub fn write_str_element(key: &str, value: &str, out: &mut Vec<u8>) -> Result<()> {
    let key: &bson::raw::CStr = key.try_into()?;
    write_key(ElementType::String, key.as_str(), out);
    write_string(value, out);
    Ok(())
}

/// Appends a document element (the `$readPreference` of a command).
pub fn write_document_element(key: &str, value: &Document, out: &mut Vec<u8>) -> Result<()> {
    let key: &bson::raw::CStr = key.try_into()?;
    write_key(ElementType::EmbeddedDocument, key.as_str(), out);
    write_document(value, out)
}

/// Reserves a document's length; returns where it starts.
pub(super) fn open(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    start
}

/// Writes the terminator and the length of the document that starts at `start`.
pub(super) fn close(start: usize, out: &mut Vec<u8>) -> Result<()> {
    out.push(0);
    patch_len(start, out)
}

/// Writes at `start` the length of the bytes from `start` to the end of `out`.
fn patch_len(start: usize, out: &mut [u8]) -> Result<()> {
    let len = i32::try_from(out.len() - start)
        .map_err(|_| Error::invalid_argument("a BSON document larger than 2 GiB"))?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// A key the caller has already checked for NUL bytes (or an array index).
fn write_key(kind: ElementType, key: &str, out: &mut Vec<u8>) {
    out.push(kind as u8);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Like `bson`: a string longer than 2 GiB cannot be in a document the server accepts.
    out.extend_from_slice(&((s.len() + 1) as i32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn write_value(value: &Bson, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Bson::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
        Bson::String(s) | Bson::JavaScriptCode(s) | Bson::Symbol(s) => write_string(s, out),
        Bson::Document(d) => write_document(d, out)?,
        Bson::Array(items) => {
            let start = open(out);
            let mut index = IndexKey::default();
            for item in items {
                write_key(item.element_type(), index.next_key(), out);
                write_value(item, out)?;
            }
            close(start, out)?;
        }
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => {}
        Bson::RegularExpression(re) => {
            // `Regex` holds C strings: no NUL inside, already checked.
            for part in [re.pattern.as_str(), re.options.as_str()] {
                out.extend_from_slice(part.as_bytes());
                out.push(0);
            }
        }
        Bson::JavaScriptCodeWithScope(cws) => {
            let start = open(out);
            write_string(&cws.code, out);
            write_document(&cws.scope, out)?;
            patch_len(start, out)?;
        }
        Bson::Int32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Bson::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Bson::Timestamp(ts) => {
            out.extend_from_slice(&ts.increment.to_le_bytes());
            out.extend_from_slice(&ts.time.to_le_bytes());
        }
        Bson::Binary(bin) => {
            let old = bin.subtype == BinarySubtype::BinaryOld;
            let len = bin.bytes.len() + if old { 4 } else { 0 };
            let len = i32::try_from(len)
                .map_err(|_| Error::invalid_argument("a BSON binary larger than 2 GiB"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.push(u8::from(bin.subtype));
            if old {
                out.extend_from_slice(&(len - 4).to_le_bytes());
            }
            out.extend_from_slice(&bin.bytes);
        }
        Bson::ObjectId(oid) => out.extend_from_slice(&oid.bytes()),
        Bson::DateTime(dt) => out.extend_from_slice(&dt.timestamp_millis().to_le_bytes()),
        Bson::Decimal128(d) => out.extend_from_slice(&d.bytes()),
        Bson::DbPointer(_) => {
            // Deprecated and rare; its fields are private to `bson`, so let it encode the value
            // (inside `{"": value}`: length, type, empty key, value, terminator).
            let mut one = Document::new();
            one.insert("", value.clone());
            let raw = bson::RawDocumentBuf::try_from(&one)?;
            let bytes = raw.as_bytes();
            let value_bytes = bytes
                .get(6..bytes.len().saturating_sub(1))
                .ok_or_else(|| Error::internal("bson encoded a DbPointer oddly"))?;
            out.extend_from_slice(value_bytes);
        }
    }
    Ok(())
}

/// The keys of an array, `"0"`, `"1"`, ..., written in decimal without allocating.
#[derive(Default)]
struct IndexKey {
    next: usize,
    buf: [u8; 20],
}

impl IndexKey {
    fn next_key(&mut self) -> &str {
        let mut n = self.next;
        self.next += 1;
        let mut at = self.buf.len();
        loop {
            at -= 1;
            self.buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[at..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;
    use bson::{doc, Binary, DateTime, Decimal128, JavaScriptCodeWithScope, Regex, Timestamp};

    fn ours(doc: &Document) -> Vec<u8> {
        let mut out = vec![0xAA];
        write_document(doc, &mut out).unwrap();
        out.remove(0);
        out
    }

    fn theirs(doc: &Document) -> Vec<u8> {
        bson::RawDocumentBuf::try_from(doc).unwrap().into_bytes()
    }

    /// A document with a DbPointer (only constructible by parsing bytes).
    fn db_pointer() -> Bson {
        let mut bytes = vec![0u8; 4];
        bytes.push(0x0C);
        bytes.extend_from_slice(b"p\0");
        bytes.extend_from_slice(&6i32.to_le_bytes());
        bytes.extend_from_slice(b"db.co\0");
        bytes.extend_from_slice(&[7u8; 12]);
        bytes.push(0);
        let len = bytes.len() as i32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        let doc = Document::try_from(bson::RawDocument::from_bytes(&bytes).unwrap()).unwrap();
        doc.get("p").unwrap().clone()
    }

    fn every_type() -> Document {
        let inner = doc! { "x": 1, "y": [1, "two", { "z": null }], "empty": {}, "none": [] };
        let long_array: Vec<Bson> = (0..123).map(Bson::Int32).collect();
        let mut doc = doc! {
            "double": 1.5,
            "nan": f64::NAN,
            "string": "héllo",
            "empty_string": "",
            "nul_inside": "a\0b",
            "document": inner.clone(),
            "empty_document": {},
            "array": [1, 2.5, "x", inner.clone(), [[]]],
            "empty_array": [],
            "long_array": long_array,
        };
        doc.extend(doc! {
            "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "binary_old": Binary { subtype: BinarySubtype::BinaryOld, bytes: vec![9, 8] },
            "binary_uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![0; 16] },
            "binary_user": Binary { subtype: BinarySubtype::UserDefined(0x85), bytes: vec![] },
        });
        doc.extend(doc! {
            "undefined": Bson::Undefined,
            "oid": ObjectId::from_bytes([1; 12]),
            "true": true,
            "false": false,
            "date": DateTime::from_millis(-1_234_567),
            "null": Bson::Null,
            "regex": Regex { pattern: "^a.*b$".try_into().unwrap(), options: "im".try_into().unwrap() },
        });
        doc.extend(doc! {
            "code": Bson::JavaScriptCode("function() {}".into()),
            "symbol": Bson::Symbol("sym".into()),
            "code_with_scope": JavaScriptCodeWithScope { code: "x + y".into(), scope: doc! { "x": 1, "y": { "a": [] } } },
            "code_with_empty_scope": JavaScriptCodeWithScope { code: String::new(), scope: doc! {} },
            "int32": -7,
            "timestamp": Timestamp { time: 0x0102_0304, increment: 0x0A0B_0C0D },
            "int64": i64::MIN,
            "decimal": Decimal128::from_bytes([3; 16]),
            "min": Bson::MinKey,
            "max": Bson::MaxKey,
            "db_pointer": db_pointer(),
            "": "empty key",
            "nested": { "a": { "b": { "c": { "d": [{ "e": [] }] } } } },
        });
        doc
    }

    #[test]
    fn bytes_match_the_bson_crate_for_every_element_type() {
        let doc = every_type();
        assert_eq!(ours(&doc), theirs(&doc));
        assert_eq!(ours(&Document::new()), theirs(&Document::new()));
        for (key, value) in &doc {
            let one = doc! { key.as_str(): value.clone() };
            assert_eq!(ours(&one), theirs(&one), "{key}");
        }
    }

    #[test]
    fn element_helpers_match_a_document_with_those_fields() {
        let body = doc! { "find": "c", "filter": { "_id": 1 } };
        let rp = doc! { "mode": "secondary" };
        let mut out = Vec::new();
        let start = open(&mut out);
        for (k, v) in &body {
            write_element(k, v, &mut out).unwrap();
        }
        write_document_element("$readPreference", &rp, &mut out).unwrap();
        write_str_element("$db", "test", &mut out).unwrap();
        close(start, &mut out).unwrap();
        let mut expected = body.clone();
        expected.insert("$readPreference", rp);
        expected.insert("$db", "test");
        assert_eq!(out, theirs(&expected));
    }

    #[test]
    fn a_key_with_nul_fails_like_bson() {
        let nested = doc! { "ok": 1, "sub": { "a\0b": 1 } };
        let in_array = doc! { "arr": [{ "x\0": 1 }] };
        let in_scope =
            doc! { "c": JavaScriptCodeWithScope { code: "x".into(), scope: doc! { "\0": 1 } } };
        for doc in [doc! { "a\0b": 1 }, nested, in_array, in_scope] {
            let theirs: Error = bson::RawDocumentBuf::try_from(&doc).unwrap_err().into();
            let mut out = Vec::new();
            let ours = write_document(&doc, &mut out).unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string());
            assert!(
                matches!(ours.kind(), crate::ErrorKind::Bson { .. }),
                "{ours:?}"
            );
        }
    }

    #[test]
    fn index_keys_count_in_decimal() {
        let mut keys = IndexKey::default();
        let all: Vec<String> = (0..1001).map(|_| keys.next_key().to_string()).collect();
        let expected: Vec<String> = (0..1001).map(|i: usize| i.to_string()).collect();
        assert_eq!(all, expected);
    }
}
