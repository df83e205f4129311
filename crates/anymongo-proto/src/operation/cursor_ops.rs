//! Commands that open or continue cursors: `find`, `getMore`, `killCursors`, and the parsing of
//! the `cursor` sub-document every cursor-returning command replies with.

use std::time::Duration;

use bson::{doc, Bson, Document, RawArray, RawBsonRef, RawDocumentBuf};

use super::{Command, Operation, Retryability};
use crate::error::{Error, Result};
use crate::operation::StreamDescription;
use crate::options::ReadPreference;
use crate::wire::validate_document;

/// The `cursor` sub-document of a reply: its id, namespace and first (or next) batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorInfo {
    /// The server's cursor id; 0 means the cursor is exhausted.
    pub id: i64,
    /// The namespace `db.collection` the cursor iterates.
    pub ns: String,
    /// The documents of this batch, in the reply's own buffer (see [`CursorBatch`]).
    pub batch: CursorBatch,
    /// `postBatchResumeToken`, for change streams (validated).
    pub post_batch_resume_token: Option<RawDocumentBuf>,
}

impl CursorInfo {
    /// Parses `{cursor: {id, ns, firstBatch|nextBatch}}`, keeping the reply's buffer for the
    /// batch (no per-document allocation).
    ///
    /// The batch's documents are framed (each entry is an embedded document whose length fits
    /// the array and which ends in NUL) but their contents are not validated: whoever decodes a
    /// document validates it (see [`CursorBatch`]).
    pub fn parse(reply: RawDocumentBuf) -> Result<Self> {
        let cursor = reply
            .get_document("cursor")
            .map_err(|_| Error::invalid_response("reply has no 'cursor' document"))?;
        // One pass over the cursor document (a lookup per field would walk it once each).
        let (mut id, mut ns, mut batch, mut token) = (None, None, None, None);
        for element in cursor {
            let (key, value) =
                element.map_err(|e| Error::invalid_response(format!("bad cursor: {e}")))?;
            match (key.as_str(), value) {
                ("id", v) if id.is_none() => id = Some(integer(v)),
                ("ns", v) if ns.is_none() => ns = Some(v.as_str().unwrap_or("")),
                ("firstBatch" | "nextBatch", RawBsonRef::Array(a)) if batch.is_none() => {
                    batch = Some(a)
                }
                ("postBatchResumeToken", RawBsonRef::Document(d)) if token.is_none() => {
                    token = Some(d)
                }
                _ => {}
            }
        }
        let id = id
            .flatten()
            .ok_or_else(|| Error::invalid_response("cursor has no numeric 'id'"))?;
        let ns = ns.unwrap_or("").to_string();
        let batch: &RawArray = batch
            .ok_or_else(|| Error::invalid_response("cursor has no 'firstBatch' or 'nextBatch'"))?;
        let array = batch.as_bytes();
        // Where the array lies in the reply: it is a sub-slice of the reply's bytes.
        let base = (array.as_ptr() as usize)
            .checked_sub(reply.as_bytes().as_ptr() as usize)
            .filter(|b| b.saturating_add(array.len()) <= reply.as_bytes().len())
            .ok_or_else(|| Error::internal("a batch outside its reply"))?;
        let spans = batch_spans(array, base)?;
        let post_batch_resume_token = match token {
            Some(token) => {
                validate_document(token.as_bytes())?;
                Some(token.to_owned())
            }
            None => None,
        };
        Ok(CursorInfo {
            id,
            ns,
            batch: CursorBatch {
                bytes: reply.into_bytes(),
                spans,
                next: 0,
            },
            post_batch_resume_token,
        })
    }
}

/// An integer of any numeric BSON type (a double only if integral).
fn integer(value: RawBsonRef<'_>) -> Option<i64> {
    match value {
        RawBsonRef::Int32(v) => Some(i64::from(v)),
        RawBsonRef::Int64(v) => Some(v),
        RawBsonRef::Double(v) if v.fract() == 0.0 => Some(v as i64),
        _ => None,
    }
}

/// The byte ranges (offset by `base`) of the embedded documents of the BSON array `a` (whose
/// length and terminator are already checked). Checks the array's framing only: every element
/// is a document (type 3) with a UTF-8 key, a length of at least 5 that fits the array, and a
/// terminating NUL; the array ends right after its last element.
fn batch_spans(a: &[u8], base: usize) -> Result<Vec<(usize, usize)>> {
    let bad = |what: &str| Error::invalid_response(format!("bad batch: {what}"));
    let end = a.len().checked_sub(1).ok_or_else(|| bad("too short"))?;
    let mut spans = Vec::new();
    let mut pos = 4;
    loop {
        let kind = *a.get(pos).ok_or_else(|| bad("truncated"))?;
        if kind == 0 {
            if pos != end {
                return Err(bad("bytes after the terminator"));
            }
            return Ok(spans);
        }
        let key_start = pos + 1;
        let key_len = a
            .get(key_start..end)
            .and_then(|k| k.iter().position(|&c| c == 0))
            .ok_or_else(|| bad("unterminated key"))?;
        let key = a.get(key_start..key_start + key_len).unwrap_or_default();
        if !key.is_ascii() && std::str::from_utf8(key).is_err() {
            return Err(bad("a key is not UTF-8"));
        }
        if kind != 0x03 {
            return Err(Error::invalid_response("a batch entry is not a document"));
        }
        let doc = key_start + key_len + 1;
        let len = crate::wire::read_i32(a, doc)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l >= 5)
            .ok_or_else(|| bad("a document length is invalid"))?;
        let stop = doc
            .checked_add(len)
            .filter(|&s| s <= end)
            .ok_or_else(|| bad("a document overruns the batch"))?;
        if a.get(stop - 1) != Some(&0) {
            return Err(bad("a document is not terminated"));
        }
        spans.push((base + doc, base + stop));
        pos = stop;
    }
}

/// The documents of one cursor batch (`firstBatch` / `nextBatch`), held as one buffer (the
/// reply's bytes) plus the byte range of each document: a batch of any size is one allocation.
///
/// The documents are consumed front to back ([`pop_front`](Self::pop_front)). Each document's
/// length prefix and terminator are right, but its elements have **not** been validated (the
/// reply is validated once, by whoever decodes each document): check a document with
/// [`validate_document`] (or read it with `bson`'s raw accessors, which return errors) before
/// trusting it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CursorBatch {
    bytes: Vec<u8>,
    /// `(start, end)` of each document in `bytes`, in order.
    spans: Vec<(usize, usize)>,
    /// The index in `spans` of the next document to hand out.
    next: usize,
}

impl CursorBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch holding copies of `documents` (each must be one BSON document's bytes, as a
    /// `RawDocumentBuf` is).
    pub fn from_documents<D: AsRef<[u8]>>(documents: impl IntoIterator<Item = D>) -> Self {
        let mut batch = CursorBatch::new();
        for d in documents {
            let d = d.as_ref();
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(d);
            batch.spans.push((start, batch.bytes.len()));
        }
        batch
    }

    /// How many documents are left.
    pub fn len(&self) -> usize {
        self.spans.len() - self.next
    }

    /// Whether no documents are left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next document's bytes (unvalidated), without taking it.
    pub fn front(&self) -> Option<&[u8]> {
        self.spans.get(self.next).map(|&s| self.slice(s))
    }

    /// Takes the next document's bytes (unvalidated).
    pub fn pop_front(&mut self) -> Option<&[u8]> {
        let span = self.pop_span()?;
        Some(self.slice(span))
    }

    /// The documents left, in order (unvalidated bytes).
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans[self.next..].iter().map(|&s| self.slice(s))
    }

    /// Takes the next document's byte range (read it with [`CursorBatch::slice`]; valid until
    /// the batch is replaced).
    pub fn pop_span(&mut self) -> Option<(usize, usize)> {
        let span = *self.spans.get(self.next)?;
        self.next += 1;
        Some(span)
    }

    /// The bytes of a range returned by [`CursorBatch::pop_span`] (empty if out of range).
    pub fn slice(&self, (start, end): (usize, usize)) -> &[u8] {
        self.bytes.get(start..end).unwrap_or_default()
    }
}

/// Splits `db.collection` (the collection may contain dots).
pub fn split_namespace(ns: &str) -> Option<(&str, &str)> {
    ns.split_once('.')
}

/// The `find` command.
#[derive(Debug, Clone, Default)]
pub struct Find {
    pub db: String,
    pub collection: String,
    /// The query filter. The first [`build`](Operation::build) moves it into the command body
    /// (kept for a retry), leaving an empty document here.
    pub filter: Document,
    /// Options as command fields: sort, projection, skip, limit, batchSize, hint, collation,
    /// comment, maxTimeMS, allowDiskUse, let, singleBatch, tailable, awaitData, ...
    /// Moved into the command body by the first build, like `filter`.
    pub options: Document,
    pub read_preference: Option<ReadPreference>,
    /// The command body, put together by the first build.
    body: Option<Document>,
}

impl Find {
    /// A `find` of `filter` in `db.collection`, with `options` as command fields.
    pub fn new(
        db: impl Into<String>,
        collection: impl Into<String>,
        filter: Document,
        options: Document,
        read_preference: Option<ReadPreference>,
    ) -> Self {
        Find {
            db: db.into(),
            collection: collection.into(),
            filter,
            options,
            read_preference,
            body: None,
        }
    }
}

impl Find {
    /// A `find` whose whole command body (`find`, `filter`, then the options) is already put
    /// together; `filter` and `options` stay empty.
    pub fn from_body(
        db: impl Into<String>,
        collection: impl Into<String>,
        body: Document,
        read_preference: Option<ReadPreference>,
    ) -> Self {
        Find {
            body: Some(body),
            ..Find::new(
                db,
                collection,
                Document::new(),
                Document::new(),
                read_preference,
            )
        }
    }
}

impl Operation for Find {
    type Output = CursorInfo;

    fn name(&self) -> &str {
        "find"
    }

    fn retryability(&self) -> Retryability {
        Retryability::Read
    }

    fn is_read(&self) -> bool {
        true
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let body = self.body.get_or_insert_with(|| {
            let mut body = doc! {
                "find": self.collection.as_str(),
                "filter": std::mem::take(&mut self.filter),
            };
            body.extend(std::mem::take(&mut self.options));
            body
        });
        Ok(Command::borrowed(&self.db, body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<CursorInfo> {
        CursorInfo::parse(response)
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }
}

/// The `getMore` command.
#[derive(Debug, Clone)]
pub struct GetMore {
    pub db: String,
    pub collection: String,
    pub cursor_id: i64,
    pub batch_size: Option<u32>,
    pub max_time: Option<Duration>,
    pub comment: Option<Bson>,
}

impl Operation for GetMore {
    type Output = CursorInfo;

    fn name(&self) -> &str {
        "getMore"
    }

    /// Never retried (its cursor lives on one server and a retry could skip a batch); a read
    /// for how it is sent.
    fn is_read(&self) -> bool {
        true
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        let mut body = doc! { "getMore": self.cursor_id, "collection": self.collection.as_str() };
        if let Some(n) = self.batch_size.filter(|n| *n > 0) {
            body.insert("batchSize", i64::from(n));
        }
        if let Some(t) = self.max_time {
            body.insert("maxTimeMS", crate::operation::millis(t));
        }
        if let Some(c) = &self.comment {
            body.insert("comment", c.clone());
        }
        Ok(Command::new(self.db.as_str(), body))
    }

    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<CursorInfo> {
        CursorInfo::parse(response)
    }
}

/// The `killCursors` command.
#[derive(Debug, Clone)]
pub struct KillCursors {
    pub db: String,
    pub collection: String,
    pub cursor_ids: Vec<i64>,
}

impl Operation for KillCursors {
    type Output = ();

    fn name(&self) -> &str {
        "killCursors"
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        Ok(Command::new(
            self.db.clone(),
            doc! { "killCursors": self.collection.as_str(), "cursors": self.cursor_ids.as_slice() },
        ))
    }

    fn handle_response(
        &mut self,
        _response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_first_and_next_batches() {
        let reply = RawDocumentBuf::try_from(&doc! {
            "ok": 1, "cursor": { "id": 42i64, "ns": "db.coll.sub", "firstBatch": [{ "a": 1 }, { "a": 2 }] }
        })
        .unwrap();
        let info = CursorInfo::parse(reply).unwrap();
        assert_eq!(info.id, 42);
        assert_eq!(info.batch.len(), 2);
        assert_eq!(split_namespace(&info.ns), Some(("db", "coll.sub")));
        let next = RawDocumentBuf::try_from(&doc! {
            "ok": 1, "cursor": { "id": 0, "ns": "db.c", "nextBatch": [] }
        })
        .unwrap();
        assert_eq!(CursorInfo::parse(next).unwrap().id, 0);
    }

    #[test]
    fn a_batch_is_the_reply_buffer_with_document_offsets() {
        let docs = [doc! { "a": 1 }, doc! { "b": "x", "c": [1] }, doc! {}];
        let reply = RawDocumentBuf::try_from(&doc! {
            "cursor": { "nextBatch": docs.to_vec(), "id": 7i64, "ns": "d.c",
                        "postBatchResumeToken": { "t": 1 } },
            "ok": 1,
        })
        .unwrap();
        let mut info = CursorInfo::parse(reply).unwrap();
        assert_eq!((info.id, info.ns.as_str()), (7, "d.c"));
        assert_eq!(
            info.post_batch_resume_token,
            Some(RawDocumentBuf::try_from(&doc! { "t": 1 }).unwrap())
        );
        let raw: Vec<RawDocumentBuf> = docs
            .iter()
            .map(|d| RawDocumentBuf::try_from(d).unwrap())
            .collect();
        let listed: Vec<&[u8]> = info.batch.iter().collect();
        let expected: Vec<&[u8]> = raw.iter().map(|d| d.as_bytes()).collect();
        assert_eq!(listed, expected);
        assert_eq!(info.batch.len(), 3);
        assert_eq!(info.batch.front(), Some(raw[0].as_bytes()));
        assert_eq!(info.batch.pop_front(), Some(raw[0].as_bytes()));
        assert_eq!(info.batch.len(), 2);
        assert_eq!(info.batch.pop_front(), Some(raw[1].as_bytes()));
        assert_eq!(info.batch.pop_front(), Some(raw[2].as_bytes()));
        assert!(info.batch.is_empty());
        assert_eq!(info.batch.pop_front(), None);
        let copied = CursorBatch::from_documents(raw.iter().map(|d| d.as_bytes()));
        assert_eq!(copied.iter().collect::<Vec<_>>(), expected);
        assert!(CursorBatch::new().is_empty());
    }

    #[test]
    fn corrupt_batches_and_tokens_are_invalid_responses() {
        let reply = RawDocumentBuf::try_from(&doc! {
            "cursor": { "firstBatch": [{ "a": 1 }, { "b": 2 }], "id": 0i64, "ns": "d.c",
                        "postBatchResumeToken": { "t": "x" } },
            "ok": 1,
        })
        .unwrap()
        .into_bytes();
        let mut errors = 0;
        for i in 0..reply.len() {
            for v in [0u8, 1, 3, 4, 0x7F, 0x80, 0xFF] {
                let mut bad = reply.clone();
                bad[i] = v;
                let Ok(raw) = RawDocumentBuf::from_bytes(bad.clone()) else {
                    continue;
                };
                match CursorInfo::parse(raw) {
                    Ok(info) => {
                        // Every document handed on is framed; contents are the reader's job.
                        for d in info.batch.iter() {
                            bson::RawDocument::from_bytes(d).expect("framed");
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(
                            matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
                            "byte {i} = {v:#x}: {e:?}"
                        );
                    }
                }
            }
        }
        assert!(errors > 0);
    }

    #[test]
    fn find_builds_the_same_body_every_time() {
        let desc = crate::operation::aggregate::test_description();
        let expected =
            doc! { "find": "c", "filter": { "a": 1 }, "limit": 1i64, "singleBatch": true };
        let mut op = Find::new(
            "db",
            "c",
            doc! { "a": 1 },
            doc! { "limit": 1i64, "singleBatch": true },
            None,
        );
        for _ in 0..2 {
            let cmd = op.build(&desc).unwrap();
            assert_eq!(*cmd.body, expected);
            assert_eq!(cmd.target_db, "db");
            assert_eq!(cmd.name(), "find");
        }
        let mut op = Find::from_body("db", "c", expected.clone(), None);
        assert_eq!(*op.build(&desc).unwrap().body, expected);
    }

    #[test]
    fn malformed_cursor_replies_are_errors() {
        for bad in [
            doc! { "ok": 1 },
            doc! { "ok": 1, "cursor": { "ns": "a.b", "firstBatch": [] } },
            doc! { "ok": 1, "cursor": { "id": 1i64, "ns": "a.b" } },
            doc! { "ok": 1, "cursor": { "id": 1i64, "ns": "a.b", "firstBatch": [1] } },
        ] {
            let raw = RawDocumentBuf::try_from(&bad).unwrap();
            assert!(CursorInfo::parse(raw).is_err(), "{bad}");
        }
    }
}
