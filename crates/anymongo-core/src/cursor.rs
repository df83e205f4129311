//! Cursors: a [`futures::Stream`] of documents that fetches batches with `getMore` on the server
//! that opened it, and kills itself (`killCursors`) in the background when dropped early.
//!
//! Raw documents without re-parsing, two ways (both as in the official driver):
//! - `cursor.with_type::<RawDocumentBuf>()` (or a `Collection<RawDocumentBuf>`): the stream hands
//!   out each buffered reply document as is; no serde pass, no copy.
//! - [`Cursor::advance`] then [`Cursor::current`] (a borrowed `&RawDocument`) or
//!   [`Cursor::deserialize_current`], on a cursor of any type.
//!
//! Tailable cursors (`CursorType::Tailable` / `TailableAwait`) stay open at the end of the data:
//! the stream keeps sending `getMore` until documents arrive or the server closes the cursor;
//! only a tailable awaitData cursor's `getMore` carries `maxTimeMS` (the `max_await_time`).

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bson::{Bson, RawDocument, RawDocumentBuf};
use futures::Stream;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::operation::cursor_ops::split_namespace;
use crate::operation::{CursorInfo, GetMore};
use crate::options::ServerAddress;
use crate::rt::BoxFuture;

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
    pub(crate) buffer: VecDeque<RawDocumentBuf>,
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

/// Decodes raw BSON into a `T` without serde, or declines (`None`).
type FastDecode<T> = fn(&[u8]) -> Option<T>;

/// A stream of `T`s from a server cursor.
pub struct Cursor<T> {
    client: Client,
    address: ServerAddress,
    state: CursorState,
    options: CursorOptions,
    get_more: Option<BoxFuture<'static, Result<CursorInfo>>>,
    /// The document [`Cursor::advance`] moved to.
    current: Option<RawDocumentBuf>,
    /// A decoder that skips serde, when `T` is [`bson::Document`] (see [`fast_decode`]).
    fast: Option<FastDecode<T>>,
    _marker: PhantomData<fn() -> T>,
}

/// Turns a reply document into a `T`: moved as is when `T` is `RawDocumentBuf`, else
/// deserialized.
pub(crate) fn convert<T: DeserializeOwned + 'static>(raw: RawDocumentBuf) -> Result<T> {
    if TypeId::of::<T>() == TypeId::of::<RawDocumentBuf>() {
        let mut slot = Some(raw);
        if let Some(t) = (&mut slot as &mut dyn Any)
            .downcast_mut::<Option<T>>()
            .and_then(Option::take)
        {
            return Ok(t);
        }
        return Err(Error::internal("raw document conversion failed"));
    }
    bson::deserialize_from_slice::<T>(raw.as_bytes()).map_err(Error::from)
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
            fast: None,
            _marker: PhantomData,
        })
    }

    /// Moves to the next document; `Ok(false)` at the end. Read it with
    /// [`current`](Self::current) or [`deserialize_current`](Self::deserialize_current).
    pub async fn advance(&mut self) -> Result<bool> {
        self.current = None;
        match futures::future::poll_fn(|cx| self.poll_next_raw(cx)).await {
            Some(Ok(doc)) => {
                self.current = Some(doc);
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => Ok(false),
        }
    }

    /// The document the last successful [`advance`](Self::advance) moved to, borrowed from the
    /// reply without parsing (an empty document before the first `advance` or at the end).
    pub fn current(&self) -> &RawDocument {
        match &self.current {
            Some(doc) => doc.as_ref(),
            None => empty_document(),
        }
    }

    /// The next raw document, as sent by the server (no parsing).
    pub async fn next_raw(&mut self) -> Option<Result<RawDocumentBuf>> {
        futures::future::poll_fn(|cx| self.poll_next_raw(cx)).await
    }

    /// Decodes documents straight from raw BSON when `T` is [`bson::Document`] (the common
    /// case), instead of through serde.
    pub(crate) fn with_fast_documents(mut self) -> Self
    where
        T: 'static,
    {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<bson::Document>() {
            self.fast = Some(|bytes| {
                let doc: Box<dyn std::any::Any> = Box::new(fast_decode::document(bytes)?);
                doc.downcast::<T>().ok().map(|t| *t)
            });
        }
        self
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
                buffer: VecDeque::new(),
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
            fast: None,
            _marker: PhantomData,
        }
    }

    fn limit_reached(&self) -> bool {
        matches!(self.options.limit, Some(l) if l > 0 && self.state.returned >= l)
    }

    /// Polls for the next raw document.
    fn poll_next_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RawDocumentBuf>>> {
        loop {
            if self.limit_reached() {
                self.kill();
                return Poll::Ready(None);
            }
            if let Some(doc) = self.state.buffer.pop_front() {
                self.state.returned += 1;
                return Poll::Ready(Some(Ok(doc)));
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
        match futures::ready!(this.poll_next_raw(cx)) {
            None => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(raw)) => {
                if let Some(value) = this.fast.and_then(|decode| decode(raw.as_bytes())) {
                    return Poll::Ready(Some(Ok(value)));
                }
                Poll::Ready(Some(convert::<T>(raw)))
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
    use bson::{doc, Document};

    #[test]
    fn raw_documents_are_moved_not_parsed() {
        let raw = RawDocumentBuf::try_from(&doc! { "a": 1, "b": "x" }).unwrap();
        let ptr = raw.as_bytes().as_ptr();
        let out: RawDocumentBuf = convert(raw).unwrap();
        assert_eq!(out.as_bytes().as_ptr(), ptr, "the same buffer, not a copy");
        let raw = RawDocumentBuf::try_from(&doc! { "a": 1 }).unwrap();
        let parsed: Document = convert(raw).unwrap();
        assert_eq!(parsed, doc! { "a": 1 });
        #[derive(serde::Deserialize, Debug)]
        struct A {
            #[allow(dead_code)]
            a: String,
        }
        let raw = RawDocumentBuf::try_from(&doc! { "a": 1 }).unwrap();
        assert!(convert::<A>(raw).is_err(), "a type mismatch is an error");
        assert!(empty_document().is_empty());
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
                        // Whatever it accepts, the bson crate reads the same way.
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
