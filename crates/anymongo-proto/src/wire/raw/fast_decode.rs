//! Raw BSON to [`bson::Document`] in one pass over the bytes, without serde and without
//! recursion: the documents, arrays and code-with-scope scopes being read are kept on an
//! explicit stack, so no input can overflow the call stack, however deep it nests. Every element
//! type is read here (the bson crate's own conversion recurses once per level, which a hostile
//! reply nested a few hundred levels deep turns into a stack overflow that aborts the process).
//!
//! Nesting deeper than the caller's limit is refused ([`Declined::TooDeep`]) rather than
//! decoded: a `Document` that deep could be decoded, but dropping, cloning, comparing or
//! printing it recurses too.

use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, Timestamp};

/// Why [`document`] gave no document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declined {
    /// The bytes are not one valid BSON document (the caller asks the validator for the
    /// precise reason).
    Malformed,
    /// The document nests deeper than the limit it was given.
    TooDeep,
}

/// Decodes one whole document whose nesting (the document itself being level 1) is at most
/// `max_depth` levels.
pub(crate) fn document(bytes: &[u8], max_depth: usize) -> Result<Document, Declined> {
    let top = Container::Doc(Document::new());
    match (Reader { b: bytes, pos: 0 }).run(max_depth.max(1), top)? {
        Bson::Document(d) => Ok(d),
        _ => Err(Malformed),
    }
}

/// Decodes one whole BSON array (a document whose keys are ignored, as the bson crate ignores
/// them) whose nesting, the array itself being level 1, is at most `max_depth` levels.
pub(crate) fn array(bytes: &[u8], max_depth: usize) -> Result<Vec<Bson>, Declined> {
    let top = Container::Array(Vec::new());
    match (Reader { b: bytes, pos: 0 }).run(max_depth.max(1), top)? {
        Bson::Array(items) => Ok(items),
        _ => Err(Malformed),
    }
}

/// What a frame of the stack is building.
enum Container {
    Doc(Document),
    Array(Vec<Bson>),
    /// The scope of a code-with-scope value, which must end exactly at `end_of_value`.
    Scope {
        code: String,
        scope: Document,
        end_of_value: usize,
    },
}

/// One document, array or scope being read.
struct Frame<'a> {
    /// The key of this container in its parent (unused for the top-level document).
    key: &'a str,
    /// Index of the container's terminating NUL.
    nul: usize,
    container: Container,
}

impl Container {
    fn add(&mut self, key: &str, value: Bson) {
        match self {
            Container::Doc(d) | Container::Scope { scope: d, .. } => {
                d.insert(key, value);
            }
            Container::Array(items) => items.push(value),
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

use Declined::Malformed;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Declined> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let s = self.b.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Declined> {
        self.take(N)?.try_into().map_err(|_| Malformed)
    }

    fn i32(&mut self) -> Result<i32, Declined> {
        self.array().map(i32::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, Declined> {
        self.array().map(i64::from_le_bytes)
    }

    fn len(&mut self) -> Result<usize, Declined> {
        usize::try_from(self.i32()?).map_err(|_| Malformed)
    }

    /// A NUL-terminated UTF-8 string that ends before index `limit`.
    fn cstr(&mut self, limit: usize) -> Result<&'a str, Declined> {
        let rest = self.b.get(self.pos..limit).ok_or(Malformed)?;
        let n = rest.iter().position(|&c| c == 0).ok_or(Malformed)?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| Malformed)?;
        self.pos += n + 1;
        Ok(s)
    }

    /// A length-prefixed, NUL-terminated UTF-8 string.
    fn string(&mut self) -> Result<String, Declined> {
        let len = self.len()?;
        if len == 0 {
            return Err(Malformed);
        }
        let s = self.take(len)?;
        let (text, nul) = s.split_at(len - 1);
        if nul != [0] {
            return Err(Malformed);
        }
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| Malformed)
    }

    /// Reads the length of the document or array starting here, checks its framing (at least
    /// five bytes, within `limit`, ending in a NUL) and returns the index of that NUL.
    fn open(&mut self, limit: usize) -> Result<usize, Declined> {
        let start = self.pos;
        let len = self.len()?;
        if len < 5 {
            return Err(Malformed);
        }
        let nul = start.checked_add(len - 1).ok_or(Malformed)?;
        if nul >= limit || self.b.get(nul) != Some(&0) {
            return Err(Malformed);
        }
        Ok(nul)
    }

    fn run(&mut self, max_depth: usize, top: Container) -> Result<Bson, Declined> {
        let nul = self.open(self.b.len())?;
        if nul + 1 != self.b.len() {
            return Err(Malformed);
        }
        let mut stack = vec![Frame {
            key: "",
            nul,
            container: top,
        }];
        loop {
            let top = stack.last_mut().ok_or(Malformed)?;
            if self.pos == top.nul {
                // The container ends: hand it to its parent (or return it).
                self.pos += 1;
                let Some(frame) = stack.pop() else {
                    return Err(Malformed);
                };
                let value = match frame.container {
                    Container::Doc(d) => Bson::Document(d),
                    Container::Array(items) => Bson::Array(items),
                    Container::Scope {
                        code,
                        scope,
                        end_of_value,
                    } => {
                        if self.pos != end_of_value {
                            return Err(Malformed);
                        }
                        Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope { code, scope })
                    }
                };
                match stack.last_mut() {
                    Some(parent) => parent.container.add(frame.key, value),
                    None => {
                        return if self.pos == self.b.len() {
                            Ok(value)
                        } else {
                            Err(Malformed)
                        };
                    }
                }
                continue;
            }
            let limit = top.nul;
            let kind = *self.b.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            let key = self.cstr(limit)?;
            let container = match kind {
                0x03 => Some(Container::Doc(Document::new())),
                0x04 => Some(Container::Array(Vec::new())),
                0x0F => {
                    // Code with scope: total length, code string, scope document.
                    let start = self.pos;
                    let total = self.len()?;
                    let end_of_value = start.checked_add(total).ok_or(Malformed)?;
                    if total < 14 || end_of_value > limit {
                        return Err(Malformed);
                    }
                    let code = self.string()?;
                    Some(Container::Scope {
                        code,
                        scope: Document::new(),
                        end_of_value,
                    })
                }
                _ => None,
            };
            match container {
                Some(container) => {
                    if stack.len() >= max_depth {
                        return Err(Declined::TooDeep);
                    }
                    let limit = match &container {
                        Container::Scope { end_of_value, .. } => *end_of_value,
                        _ => limit,
                    };
                    let nul = self.open(limit)?;
                    stack.push(Frame {
                        key,
                        nul,
                        container,
                    });
                }
                None => {
                    let value = self.leaf(kind, limit)?;
                    if self.pos > limit {
                        return Err(Malformed);
                    }
                    if let Some(top) = stack.last_mut() {
                        top.container.add(key, value);
                    }
                }
            }
        }
    }

    /// A value that holds no document, of BSON type `kind`, ending before index `limit`.
    fn leaf(&mut self, kind: u8, limit: usize) -> Result<Bson, Declined> {
        Ok(match kind {
            0x01 => Bson::Double(f64::from_le_bytes(self.array()?)),
            0x02 => Bson::String(self.string()?),
            0x05 => {
                let len = self.len()?;
                let subtype = BinarySubtype::from(self.take(1)?[0]);
                let mut bytes = self.take(len)?;
                if subtype == BinarySubtype::BinaryOld {
                    // The old binary subtype repeats the length (of the rest) inside.
                    let (inner, rest) = bytes.split_at_checked(4).ok_or(Malformed)?;
                    let inner = i32::from_le_bytes(inner.try_into().map_err(|_| Malformed)?);
                    if usize::try_from(inner).ok() != Some(rest.len()) {
                        return Err(Malformed);
                    }
                    bytes = rest;
                }
                Bson::Binary(Binary {
                    subtype,
                    bytes: bytes.to_vec(),
                })
            }
            0x06 => Bson::Undefined,
            0x07 => Bson::ObjectId(ObjectId::from_bytes(self.array()?)),
            0x08 => match self.take(1)?[0] {
                0 => Bson::Boolean(false),
                1 => Bson::Boolean(true),
                _ => return Err(Malformed),
            },
            0x09 => Bson::DateTime(DateTime::from_millis(self.i64()?)),
            0x0A => Bson::Null,
            0x0B => {
                let pattern = self.cstr(limit)?;
                let options = self.cstr(limit)?;
                // Options are kept sorted, as the bson crate keeps them.
                let mut sorted: Vec<char> = options.chars().collect();
                sorted.sort_unstable();
                let options: String = sorted.into_iter().collect();
                Bson::RegularExpression(bson::Regex {
                    pattern: pattern.try_into().map_err(|_| Malformed)?,
                    options: options.try_into().map_err(|_| Malformed)?,
                })
            }
            0x0C => {
                // DBPointer (deprecated): the bson crate has no public constructor, so it
                // converts this one element, which holds no document.
                let start = self.pos;
                self.string()?;
                self.take(12)?;
                single_element(kind, &self.b[start..self.pos])?
            }
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
            _ => return Err(Malformed),
        })
    }
}

/// The value of one element of BSON type `kind` whose value bytes are `value`, converted by the
/// bson crate (for a type it has no public constructor for; never a nested one).
fn single_element(kind: u8, value: &[u8]) -> Result<Bson, Declined> {
    // A document holding just this element, under the empty key.
    let len = 4 + 1 + 1 + value.len() + 1;
    let mut doc = Vec::with_capacity(len);
    doc.extend_from_slice(&i32::try_from(len).map_err(|_| Malformed)?.to_le_bytes());
    doc.extend_from_slice(&[kind, 0]);
    doc.extend_from_slice(value);
    doc.push(0);
    let raw = bson::RawDocument::from_bytes(&doc).map_err(|_| Malformed)?;
    let value = raw.get("").ok().flatten().ok_or(Malformed)?;
    Bson::try_from(value).map_err(|_| Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    const DEEP: usize = 1000;

    fn sample() -> Document {
        doc! {
            "d": 1.5, "s": "héllo", "doc": { "a": [1, 2, { "b": "c" }], "e": {} , "arr": [] },
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![9; 16] },
            "old": Binary { subtype: BinarySubtype::BinaryOld, bytes: vec![4, 5] },
            "undef": Bson::Undefined, "oid": ObjectId::from_bytes([7; 12]), "t": true,
            "f": false, "dt": DateTime::from_millis(-5), "null": Bson::Null,
            "re": bson::Regex { pattern: bson::cstr!("a.c").into(), options: bson::cstr!("mi").into() },
            "code": Bson::JavaScriptCode("f()".into()), "sym": Bson::Symbol("x".into()),
            "cws": Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code: "g()".into(), scope: doc! { "x": { "y": [1] } },
            }),
            "i32": -7, "ts": Bson::Timestamp(Timestamp { time: 1, increment: 2 }),
            "i64": 9i64, "dec": Decimal128::from_bytes([3; 16]),
            "min": Bson::MinKey, "max": Bson::MaxKey, "dup": 1, "dup": 2,
        }
    }

    /// `sample()` as bytes, with a DBPointer (which only the bson crate can build) appended.
    fn sample_bytes() -> Vec<u8> {
        let mut b = RawDocumentBuf::try_from(&sample()).unwrap().into_bytes();
        b.pop();
        b.extend_from_slice(&[0x0C, b'p', 0]);
        b.extend_from_slice(&5i32.to_le_bytes());
        b.extend_from_slice(b"db.c\0");
        b.extend_from_slice(&[6; 12]);
        b.push(0);
        let len = i32::try_from(b.len()).unwrap();
        b[..4].copy_from_slice(&len.to_le_bytes());
        b
    }

    fn theirs(bytes: &[u8]) -> Option<Document> {
        Document::try_from(bson::RawDocument::from_bytes(bytes).ok()?).ok()
    }

    #[test]
    fn decodes_every_element_type_like_the_bson_crate() {
        let bytes = sample_bytes();
        let expected = theirs(&bytes).unwrap();
        assert_eq!(document(&bytes, 100), Ok(expected));
        assert_eq!(document(&[5, 0, 0, 0, 0], 1), Ok(Document::new()));
    }

    #[test]
    fn never_accepts_what_the_bson_crate_rejects_and_never_panics() {
        let good = sample_bytes();
        let mut rejected = 0;
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x02, 0x7F, 0xFF, good[i].wrapping_add(1)] {
                let mut bad = good.clone();
                bad[i] = v;
                match document(&bad, 100) {
                    Ok(d) => {
                        // Whatever it accepts, full validation accepts too (it is the only
                        // validation a batch document gets)...
                        crate::wire::validate_document(&bad).expect("valid");
                        // ...and the bson crate reads the same way.
                        // (Compared re-encoded: a corrupted double may be NaN.)
                        let theirs = theirs(&bad).expect("bson reads it too");
                        let encode = |d: &Document| RawDocumentBuf::try_from(d).unwrap();
                        assert_eq!(encode(&theirs), encode(&d), "byte {i} = {v:#x}");
                    }
                    Err(why) => {
                        assert_eq!(why, Declined::Malformed);
                        rejected += 1;
                    }
                }
            }
        }
        assert!(rejected > 0);
        for n in 0..good.len() {
            assert_eq!(document(&good[..n], 100), Err(Malformed));
        }
    }

    /// `depth` levels of `{"0": {"0": ... {}}}` (or arrays), written as bytes directly: the
    /// bson crate's own encoder recurses too.
    fn nested(depth: usize, array: bool) -> Vec<u8> {
        crate::wire::raw::nested_document(depth, if array { 0x04 } else { 0x03 })
    }

    /// How deep the first-element chain of `d` goes (the document itself is level 1).
    fn depth_of(d: &Document) -> usize {
        let mut value = d.iter().next().map(|(_, v)| v);
        let mut n = 1;
        while let Some(v) = value {
            value = match v {
                Bson::Document(inner) => inner.iter().next().map(|(_, v)| v),
                Bson::Array(items) => items.first(),
                _ => break,
            };
            n += 1;
        }
        n
    }

    #[test]
    fn nesting_up_to_the_limit_decodes_and_deeper_is_refused() {
        for array in [false, true] {
            let ok = nested(DEEP, array);
            let d = document(&ok, DEEP).unwrap();
            assert_eq!(depth_of(&d), DEEP);
            // (Dropped piecewise: the recursive drop of a 1000-level document is the caller's
            // problem the limit exists for.)
            std::mem::forget(d);
            assert_eq!(
                document(&nested(DEEP + 1, array), DEEP),
                Err(Declined::TooDeep)
            );
        }
        // Arrays at the top too, their keys ignored (even repeated ones).
        let arr = nested(5, true);
        assert_eq!(array(&arr, 5).map(|a| a.len()), Ok(1));
        assert_eq!(array(&arr, 4), Err(Declined::TooDeep));
        let mut repeated = RawDocumentBuf::try_from(&doc! { "0": 1, "1": 2 })
            .unwrap()
            .into_bytes();
        let at = repeated.iter().rposition(|&b| b == b'1').unwrap();
        repeated[at] = b'0';
        assert_eq!(
            array(&repeated, 5),
            Ok(vec![Bson::Int32(1), Bson::Int32(2)])
        );
        // 100,000 levels: refused at once, whatever the stack.
        let huge = nested(100_000, false);
        assert_eq!(document(&huge, 200), Err(Declined::TooDeep));
    }
}
