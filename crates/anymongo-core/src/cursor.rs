//! Cursors: a [`futures::Stream`] of documents that fetches batches with `getMore` on the server
//! that opened it, and kills itself (`killCursors`) in the background when dropped early.
//!
//! A batch is buffered as the reply's own bytes plus each document's offsets
//! ([`CursorBatch`]): no allocation per document.
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
use crate::wire::raw::{decode, validate_document};

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
        crate::wire::raw::deserialize::<T>(self.current().as_bytes())
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

    #[test]
    fn the_empty_document_is_valid_and_empty() {
        assert!(empty_document().is_empty());
    }
}
