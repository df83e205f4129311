//! Cursors: a [`futures::Stream`] of documents that fetches batches with `getMore` on the server
//! that opened it, and kills itself (`killCursors`) in the background when dropped early.
//!
//! A batch is buffered as the reply's own bytes plus each document's offsets
//! ([`CursorBatch`](crate::operation::cursor_ops::CursorBatch)): no allocation per document.
//! The wire decoder only checks a reply's framing; each document is validated exactly once,
//! here, as it is handed out: by the one-pass decoder for `bson::Document` (which validates what
//! it decodes), else by [`validate_document`] before serde or before the bytes are handed out raw.
//! A malformed document is an `InvalidResponse` error, never a panic.
//!
//! Raw documents without parsing, two ways (both as in the official driver):
//! - `cursor.with_type::<RawDocumentBuf>()` (or a `Collection<RawDocumentBuf>`): the stream hands
//!   out each document as a `RawDocumentBuf` (validated, copied out of the batch; no serde pass).
//! - [`Cursor::advance`] then [`Cursor::current`] (a borrowed `&RawDocument`, no copy) or
//!   [`Cursor::deserialize_current`], on a cursor of any type.
//!
//! Tailable cursors (`CursorType::Tailable` / `TailableAwait`) stay open at the end of the data:
//! the stream keeps sending `getMore` until documents arrive or the server closes the cursor;
//! only a tailable awaitData cursor's `getMore` carries `maxTimeMS` (the `max_await_time`).

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bson::{Bson, RawDocument, RawDocumentBuf};
use futures::Stream;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::operation::cursor_ops::{split_namespace, CursorBatch};
use crate::operation::{CursorInfo, GetMore};
use crate::options::ServerAddress;
use crate::rt::BoxFuture;
use crate::wire::validate_document;

/// How a cursor continues: `getMore` options.
#[derive(Clone, Debug, Default)]
pub struct CursorOptions {
    pub batch_size: Option<u32>,
    /// `maxTimeMS` for each `getMore` (tailable awaitData cursors: `maxAwaitTimeMS`).
    pub max_time: Option<Duration>,
    pub comment: Option<Bson>,
    /// The cursor was opened with a limit; stop after this many documents.
    pub limit: Option<i64>,
}

/// The sans-IO part of a cursor: the server cursor id, the namespace and buffered documents.
#[derive(Debug)]
pub(crate) struct CursorState {
    pub(crate) id: i64,
    pub(crate) db: String,
    pub(crate) collection: String,
    pub(crate) buffer: CursorBatch,
    pub(crate) returned: i64,
}

impl CursorState {
    pub(crate) fn new(info: CursorInfo) -> Result<Self> {
        let (db, collection) = split_namespace(&info.ns)
            .map(|(d, c)| (d.to_string(), c.to_string()))
            .ok_or_else(|| {
                Error::invalid_response(format!("cursor namespace '{}' has no '.'", info.ns))
            })?;
        Ok(CursorState {
            id: info.id,
            db,
            collection,
            buffer: info.batch,
            returned: 0,
        })
    }
}

/// A stream of `T`s from a server cursor.
pub struct Cursor<T> {
    client: Client,
    address: ServerAddress,
    state: CursorState,
    options: CursorOptions,
    get_more: Option<BoxFuture<'static, Result<CursorInfo>>>,
    /// Where, in the buffered batch, the (validated) document [`Cursor::advance`] moved to is.
    current: Option<(usize, usize)>,
    _marker: PhantomData<fn() -> T>,
}

/// `value` as a `T`, if `U` is `T` (no allocation: the value moves through an `Option`).
fn cast<U: 'static, T: 'static>(value: U) -> Option<T> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}

/// Validates one (unvalidated) batch document and turns it into a `T`: a `bson::Document` by the
/// one-pass decoder (which validates everything it accepts), copied out as is when `T` is
/// `RawDocumentBuf`, else deserialized. A malformed document is an `InvalidResponse` error.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T> {
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

impl<T> std::fmt::Debug for Cursor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("id", &self.state.id)
            .field("address", &self.address)
            .field("buffered", &self.state.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<T> Cursor<T> {
    pub(crate) fn new(
        client: Client,
        address: ServerAddress,
        info: CursorInfo,
        options: CursorOptions,
    ) -> Result<Self> {
        Ok(Cursor {
            client,
            address,
            state: CursorState::new(info)?,
            options,
            get_more: None,
            current: None,
            _marker: PhantomData,
        })
    }

    /// Moves to the next document; `Ok(false)` at the end. Read it with
    /// [`current`](Self::current) or [`deserialize_current`](Self::deserialize_current).
    pub async fn advance(&mut self) -> Result<bool> {
        self.current = None;
        match futures::future::poll_fn(|cx| self.poll_buffered(cx)).await {
            Some(Ok(())) => {
                let span = self.take_span()?;
                validate_document(self.state.buffer.slice(span))?;
                self.current = Some(span);
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => Ok(false),
        }
    }

    /// The document the last successful [`advance`](Self::advance) moved to, borrowed from the
    /// reply without parsing (an empty document before the first `advance` or at the end).
    pub fn current(&self) -> &RawDocument {
        let doc = match self.current {
            Some(span) => RawDocument::from_bytes(self.state.buffer.slice(span)).ok(),
            None => None,
        };
        match doc {
            Some(doc) => doc,
            None => empty_document(),
        }
    }

    /// The next raw document, as sent by the server (validated, not parsed).
    pub async fn next_raw(&mut self) -> Option<Result<RawDocumentBuf>> {
        match futures::future::poll_fn(|cx| self.poll_buffered(cx)).await? {
            Ok(()) => Some(
                self.take_span()
                    .and_then(|span| decode::<RawDocumentBuf>(self.state.buffer.slice(span))),
            ),
            Err(e) => Some(Err(e)),
        }
    }

    /// Takes the next buffered document's range (after [`poll_buffered`](Self::poll_buffered)
    /// said one is there), counting it as returned.
    fn take_span(&mut self) -> Result<(usize, usize)> {
        let span = self
            .state
            .buffer
            .pop_span()
            .ok_or_else(|| Error::internal("no buffered document"))?;
        self.state.returned += 1;
        Ok(span)
    }

    /// The server's id for this cursor; 0 once it is exhausted.
    pub fn id(&self) -> i64 {
        self.state.id
    }

    /// Whether the server side is exhausted (buffered documents may remain).
    pub fn is_exhausted(&self) -> bool {
        self.state.id == 0
    }

    /// Converts into a cursor of another type, keeping its position.
    pub fn with_type<U>(mut self) -> Cursor<U> {
        let state = std::mem::replace(
            &mut self.state,
            CursorState {
                id: 0,
                db: String::new(),
                collection: String::new(),
                buffer: CursorBatch::new(),
                returned: 0,
            },
        );
        Cursor {
            client: self.client.clone(),
            address: self.address.clone(),
            state,
            options: self.options.clone(),
            get_more: self.get_more.take(),
            current: self.current.take(),
            _marker: PhantomData,
        }
    }

    fn limit_reached(&self) -> bool {
        matches!(self.options.limit, Some(l) if l > 0 && self.state.returned >= l)
    }

    /// Polls until a document is buffered (`Some(Ok(()))`: take it with
    /// [`take_span`](Self::take_span)), the cursor ends, or a `getMore` fails.
    fn poll_buffered(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<()>>> {
        loop {
            if self.limit_reached() {
                self.kill();
                return Poll::Ready(None);
            }
            if !self.state.buffer.is_empty() {
                return Poll::Ready(Some(Ok(())));
            }
            if self.state.id == 0 {
                return Poll::Ready(None);
            }
            let fut = match &mut self.get_more {
                Some(fut) => fut,
                None => {
                    let op = GetMore {
                        db: self.state.db.clone(),
                        collection: self.state.collection.clone(),
                        cursor_id: self.state.id,
                        batch_size: self.options.batch_size,
                        max_time: self.options.max_time,
                        comment: self.options.comment.clone(),
                    };
                    let client = self.client.clone();
                    let address = self.address.clone();
                    self.get_more.insert(Box::pin(
                        async move { client.execute_on(&address, op).await },
                    ))
                }
            };
            let result = futures::ready!(fut.as_mut().poll(cx));
            self.get_more = None;
            match result {
                Ok(info) => {
                    self.state.id = info.id;
                    self.state.buffer = info.batch;
                }
                Err(e) => {
                    // The server closes a cursor whose getMore failed; do not kill it again.
                    self.state.id = 0;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// Sends `killCursors` in the background if the server cursor is still open.
    fn kill(&mut self) {
        if self.state.id != 0 {
            let id = std::mem::replace(&mut self.state.id, 0);
            self.client.kill_cursor_in_background(
                self.address.clone(),
                self.state.db.clone(),
                self.state.collection.clone(),
                id,
            );
        }
    }
}

/// The empty document [`Cursor::current`] returns before the first `advance` and at the end.
fn empty_document() -> &'static RawDocument {
    // A valid empty document: length 5, terminator 0.
    static BYTES: [u8; 5] = [5, 0, 0, 0, 0];
    match RawDocument::from_bytes(&BYTES) {
        Ok(d) => d,
        Err(_) => unreachable!("a constant empty document is valid"),
    }
}

impl<T: DeserializeOwned> Cursor<T> {
    /// The current document (see [`advance`](Self::advance)) as a `T`.
    pub fn deserialize_current(&self) -> Result<T> {
        bson::deserialize_from_slice::<T>(self.current().as_bytes()).map_err(Error::from)
    }
}

impl<T: DeserializeOwned + 'static> Cursor<T> {
    /// The next document, or `None` at the end.
    pub async fn next_document(&mut self) -> Option<Result<T>> {
        futures::StreamExt::next(self).await
    }
}

impl<T: DeserializeOwned + 'static> Stream for Cursor<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match futures::ready!(this.poll_buffered(cx)) {
            None => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(())) => {
                let span = match this.take_span() {
                    Ok(span) => span,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                Poll::Ready(Some(decode::<T>(this.state.buffer.slice(span))))
            }
        }
    }
}

impl<T> Unpin for Cursor<T> {}

impl<T> Drop for Cursor<T> {
    fn drop(&mut self) {
        // Dropping an in-flight getMore poisons its connection (the pool closes it); the server
        // cursor is killed either way.
        self.get_more = None;
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::CursorInfo;
    use bson::{doc, Document};

    #[test]
    fn batch_documents_decode_to_raw_documents_and_types() {
        let raw = RawDocumentBuf::try_from(&doc! { "a": 1, "b": "x" }).unwrap();
        let out: RawDocumentBuf = decode(raw.as_bytes()).unwrap();
        assert_eq!(out, raw);
        let parsed: Document = decode(raw.as_bytes()).unwrap();
        assert_eq!(parsed, doc! { "a": 1, "b": "x" });
        #[derive(serde::Deserialize, Debug)]
        struct A {
            #[allow(dead_code)]
            a: String,
        }
        assert!(
            decode::<A>(raw.as_bytes()).is_err(),
            "a type mismatch is an error"
        );
        assert!(empty_document().is_empty());
        assert_eq!(cast::<i32, i32>(7), Some(7));
        assert_eq!(cast::<i32, u8>(7), None);
    }

    /// A struct that reads one field: serde skips the others, so only the validation before it
    /// can notice they are malformed.
    #[derive(serde::Deserialize, Debug)]
    struct OnlyA {
        #[allow(dead_code)]
        a: i32,
    }

    #[test]
    fn every_path_rejects_exactly_what_full_validation_rejects() {
        let good = RawDocumentBuf::try_from(&doc! {
            "a": 1, "s": "héllo", "d": { "x": [1, "two", { "y": true }] }, "f": 1.5,
        })
        .unwrap()
        .into_bytes();
        let mut rejected = 0;
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, good[i].wrapping_add(1)] {
                let mut bad = good.clone();
                bad[i] = v;
                let valid = validate_document(&bad).is_ok();
                rejected += usize::from(!valid);
                let fast = fast_decode::document(&bad);
                assert!(
                    valid || fast.is_none(),
                    "byte {i} = {v:#x}: fast path accepted"
                );
                let as_doc = decode::<Document>(&bad);
                let as_raw = decode::<RawDocumentBuf>(&bad);
                let as_a = decode::<OnlyA>(&bad);
                if valid {
                    assert!(as_raw.is_ok(), "byte {i} = {v:#x}");
                    assert!(as_doc.is_ok(), "byte {i} = {v:#x}");
                } else {
                    for e in [as_doc.err(), as_raw.err(), as_a.err()] {
                        let e = e.expect("a malformed document is an error");
                        assert!(
                            matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
                            "byte {i} = {v:#x}: {e:?}"
                        );
                    }
                }
            }
        }
        assert!(rejected > 0);
    }

    /// What a client gets from a `find` reply's bytes: the wire decoder, `check_ok`, the cursor
    /// info, then every batch document decoded as the cursor does (fast path, else validated).
    fn client_result(message: &[u8]) -> Result<Vec<Document>> {
        let mut decoder = crate::wire::Decoder::new(1 << 20);
        decoder.feed(message);
        let reply = decoder
            .decode()?
            .ok_or_else(|| Error::internal("incomplete"))?
            .body
            .into_reply_document()?;
        crate::operation::check_ok(&reply)?;
        let mut info = CursorInfo::parse(reply)?;
        let mut out = Vec::new();
        while let Some(bytes) = info.batch.pop_front() {
            out.push(decode::<Document>(bytes)?);
        }
        Ok(out)
    }

    #[test]
    fn corrupted_replies_are_errors_that_agree_with_full_validation() {
        use crate::wire::{encode, Body, Message, OpMsg};
        let batch = vec![
            doc! { "_id": 1, "text": "héllo", "tags": ["a", "b"], "n": 1.5 },
            doc! { "_id": 2, "user": { "name": "x", "ok": true, "at": bson::DateTime::from_millis(3) } },
        ];
        let reply = RawDocumentBuf::try_from(&doc! {
            "cursor": { "firstBatch": batch.clone(), "id": 0i64, "ns": "db.coll" }, "ok": 1.0,
        })
        .unwrap();
        let mut message = Vec::new();
        encode(
            &Message::new(1, Body::Msg(OpMsg::new(reply.clone()))),
            None,
            &mut message,
        )
        .unwrap();
        assert_eq!(client_result(&message).unwrap(), batch);
        // The reply document starts after the header, the flags and the section kind.
        let body_at = 16 + 4 + 1;
        let cursor = reply.get_document("cursor").unwrap();
        let array = cursor.get_array("firstBatch").unwrap().as_bytes();
        let array_at = body_at + (array.as_ptr() as usize - reply.as_bytes().as_ptr() as usize);
        let docs = array_at + 4..array_at + array.len() - 1;
        let mut errors = 0;
        for i in body_at..message.len() {
            for v in [
                0x00,
                0x01,
                0x03,
                0x7F,
                0x80,
                0xFF,
                message[i].wrapping_add(1),
            ] {
                let mut bad = message.clone();
                bad[i] = v;
                let reply_valid = validate_document(&bad[body_at..]).is_ok();
                match client_result(&bad) {
                    Ok(got) => {
                        // Whatever is handed out, full validation and the bson crate agree on.
                        let again = bson::RawDocument::from_bytes(&bad[body_at..])
                            .ok()
                            .and_then(|r| CursorInfo::parse(r.to_owned()).ok())
                            .expect("it parsed once");
                        for (bytes, doc) in again.batch.iter().zip(&got) {
                            validate_document(bytes).expect("handed-out documents are valid");
                            let raw = bson::RawDocument::from_bytes(bytes).unwrap();
                            let theirs = Document::try_from(raw).unwrap();
                            let enc = |d: &Document| RawDocumentBuf::try_from(d).unwrap();
                            assert_eq!(enc(doc), enc(&theirs), "byte {i} = {v:#x}");
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(
                            matches!(
                                e.kind(),
                                crate::error::ErrorKind::InvalidResponse { .. }
                                    | crate::error::ErrorKind::Command(_)
                            ),
                            "byte {i} = {v:#x}: {e:?}"
                        );
                    }
                }
                // A corrupted batch that full validation rejects is always an error.
                if docs.contains(&i) && !reply_valid {
                    let e = client_result(&bad).expect_err("a malformed batch is an error");
                    assert!(
                        matches!(e.kind(), crate::error::ErrorKind::InvalidResponse { .. }),
                        "byte {i} = {v:#x}: {e:?}"
                    );
                }
            }
        }
        assert!(errors > 0);
    }
}

/// Raw BSON to [`bson::Document`] in one pass over the bytes, without serde. Gives `None` for
/// anything it does not handle itself (rare element types, malformed input, deep nesting), and
/// the caller then takes the general serde path, which decides (and reports any error).
pub(crate) mod fast_decode {
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
}
