//! Raw BSON to [`bson::Document`] in one pass over the bytes, without serde. Gives `None` for
//! anything it does not handle itself (rare element types, malformed input, deep nesting), and
//! the caller then takes the general serde path, which decides (and reports any error).

use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Decimal128, Document, Timestamp};

/// Deeper documents go the general way.
const MAX_DEPTH: usize = 64;

/// Decodes one whole document.
pub(crate) fn document(bytes: &[u8]) -> Option<Document> {
    let mut r = Reader { b: bytes, pos: 0 };
    let doc = r.document(0)?;
    (r.pos == bytes.len()).then_some(doc)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn cstr(&mut self) -> Option<&'a str> {
        let rest = self.b.get(self.pos..)?;
        let n = rest.iter().position(|&c| c == 0)?;
        let s = std::str::from_utf8(&rest[..n]).ok()?;
        self.pos += n + 1;
        Some(s)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i32()?).ok().filter(|&l| l >= 1)?;
        let s = self.take(len)?;
        let (text, nul) = s.split_at(len - 1);
        if nul != [0] {
            return None;
        }
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// The elements of a document or array, each handed to `add` with its key.
    fn elements(&mut self, depth: usize, mut add: impl FnMut(&'a str, Bson)) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let start = self.pos;
        let len = usize::try_from(self.i32()?).ok().filter(|&l| l >= 5)?;
        let end = start.checked_add(len)?;
        if end > self.b.len() {
            return None;
        }
        loop {
            let kind = *self.b.get(self.pos)?;
            self.pos += 1;
            if kind == 0 {
                return (self.pos == end).then_some(());
            }
            let key = self.cstr()?;
            let value = self.value(kind, depth)?;
            if self.pos >= end {
                return None;
            }
            add(key, value);
        }
    }

    fn document(&mut self, depth: usize) -> Option<Document> {
        let mut doc = Document::new();
        self.elements(depth, |k, v| {
            doc.insert(k, v);
        })?;
        Some(doc)
    }

    fn value(&mut self, kind: u8, depth: usize) -> Option<Bson> {
        Some(match kind {
            0x01 => Bson::Double(f64::from_le_bytes(self.array()?)),
            0x02 => Bson::String(self.string()?),
            0x03 => Bson::Document(self.document(depth + 1)?),
            0x04 => {
                let mut items = Vec::new();
                self.elements(depth + 1, |_, v| items.push(v))?;
                Bson::Array(items)
            }
            0x05 => {
                let len = usize::try_from(self.i32()?).ok()?;
                let subtype = *self.take(1)?.first()?;
                if subtype == 0x02 {
                    return None;
                }
                Bson::Binary(Binary {
                    subtype: BinarySubtype::from(subtype),
                    bytes: self.take(len)?.to_vec(),
                })
            }
            0x06 => Bson::Undefined,
            0x07 => Bson::ObjectId(ObjectId::from_bytes(self.array()?)),
            0x08 => match self.take(1)?.first()? {
                0 => Bson::Boolean(false),
                1 => Bson::Boolean(true),
                _ => return None,
            },
            0x09 => Bson::DateTime(DateTime::from_millis(self.i64()?)),
            0x0A => Bson::Null,
            0x0D => Bson::JavaScriptCode(self.string()?),
            0x0E => Bson::Symbol(self.string()?),
            0x10 => Bson::Int32(self.i32()?),
            0x11 => {
                let increment = u32::from_le_bytes(self.array()?);
                let time = u32::from_le_bytes(self.array()?);
                Bson::Timestamp(Timestamp { time, increment })
            }
            0x12 => Bson::Int64(self.i64()?),
            0x13 => Bson::Decimal128(Decimal128::from_bytes(self.array()?)),
            0xFF => Bson::MinKey,
            0x7F => Bson::MaxKey,
            // Regex, DBPointer, code with scope: the general path.
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    fn sample() -> Document {
        doc! {
            "d": 1.5, "s": "héllo", "doc": { "a": [1, 2, { "b": "c" }], "e": {} , "arr": [] },
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![9; 16] },
            "undef": Bson::Undefined, "oid": ObjectId::from_bytes([7; 12]), "t": true,
            "f": false, "dt": DateTime::from_millis(-5), "null": Bson::Null,
            "code": Bson::JavaScriptCode("f()".into()), "sym": Bson::Symbol("x".into()),
            "i32": -7, "ts": Bson::Timestamp(Timestamp { time: 1, increment: 2 }),
            "i64": 9i64, "dec": Decimal128::from_bytes([3; 16]),
            "min": Bson::MinKey, "max": Bson::MaxKey, "dup": 1, "dup": 2,
        }
    }

    #[test]
    fn decodes_like_the_bson_crate() {
        let raw = RawDocumentBuf::try_from(&sample()).unwrap();
        let expected = Document::try_from(raw.as_ref()).unwrap();
        assert_eq!(document(raw.as_bytes()), Some(expected));
        assert_eq!(document(&[5, 0, 0, 0, 0]), Some(Document::new()));
    }

    #[test]
    fn declines_rare_types_and_never_panics_on_corruption() {
        let re = RawDocumentBuf::try_from(&doc! { "r": bson::Regex {
        pattern: bson::cstr!("a").into(), options: bson::cstr!("i").into() } })
        .unwrap();
        assert_eq!(document(re.as_bytes()), None);
        let good = RawDocumentBuf::try_from(&sample()).unwrap().into_bytes();
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7F, 0xFF, good[i].wrapping_add(1)] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Some(d) = document(&bad) {
                    // Whatever it accepts, full validation accepts too (it is the only
                    // validation a batch document gets)...
                    crate::wire::validate_document(&bad).expect("valid");
                    // ...and the bson crate reads the same way.
                    // (Compared re-encoded: a corrupted double may be NaN.)
                    let raw = bson::RawDocument::from_bytes(&bad).unwrap();
                    let theirs = Document::try_from(raw).expect("bson reads it too");
                    let encode = |d: &Document| RawDocumentBuf::try_from(d).unwrap();
                    assert_eq!(encode(&theirs), encode(&d), "byte {i} = {v:#x}");
                }
            }
        }
        for n in 0..good.len() {
            assert_eq!(document(&good[..n]), None);
        }
    }

    #[test]
    fn deep_nesting_goes_the_general_way() {
        let mut d = doc! { "x": 1 };
        for _ in 0..100 {
            d = doc! { "n": d };
        }
        let raw = RawDocumentBuf::try_from(&d).unwrap();
        assert_eq!(document(raw.as_bytes()), None);
    }
}
