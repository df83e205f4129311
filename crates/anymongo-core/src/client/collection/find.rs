//! `find` and `find_one`.

use std::future::IntoFuture;
use std::time::Duration;

use bson::{doc, Bson, Document};
use serde::de::DeserializeOwned;

use super::{option_setters, Collection};
use crate::cursor::{Cursor, CursorOptions};
use crate::error::{Error, Result};
use crate::operation::Find as FindOp;
use crate::options::{ReadConcern, ReadPreference};
use crate::rt::BoxFuture;

/// Options of `find` and `find_one`.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    pub sort: Option<Document>,
    pub projection: Option<Document>,
    pub skip: Option<u64>,
    /// A negative limit means a single batch of `|limit|` documents.
    pub limit: Option<i64>,
    pub batch_size: Option<u32>,
    pub hint: Option<Bson>,
    pub collation: Option<Document>,
    pub comment: Option<Bson>,
    pub max_time: Option<Duration>,
    /// `maxAwaitTimeMS` for tailable awaitData cursors' `getMore`.
    pub max_await_time: Option<Duration>,
    pub allow_disk_use: Option<bool>,
    pub let_vars: Option<Document>,
    pub min: Option<Document>,
    pub max: Option<Document>,
    pub return_key: Option<bool>,
    pub show_record_id: Option<bool>,
    pub no_cursor_timeout: Option<bool>,
    pub allow_partial_results: Option<bool>,
    /// `tailable` / `awaitData`.
    pub cursor_type: Option<CursorType>,
    pub read_preference: Option<ReadPreference>,
    pub read_concern: Option<ReadConcern>,
}

/// The kind of cursor `find` opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CursorType {
    #[default]
    NonTailable,
    Tailable,
    TailableAwait,
}

impl FindOptions {
    /// Appends the command fields these options add to `find` to `d`.
    pub(crate) fn append_command_fields(&self, d: &mut Document) -> Result<()> {
        if let Some(v) = &self.sort {
            d.insert("sort", v.clone());
        }
        if let Some(v) = &self.projection {
            d.insert("projection", v.clone());
        }
        if let Some(v) = self.skip {
            let v = i64::try_from(v).map_err(|_| Error::invalid_argument("skip is too large"))?;
            d.insert("skip", v);
        }
        match self.limit {
            Some(l) if l < 0 => {
                d.insert("limit", -l);
                d.insert("singleBatch", true);
            }
            Some(l) if l > 0 => {
                d.insert("limit", l);
            }
            _ => {}
        }
        if let Some(b) = self.batch_size {
            let b = match self.limit {
                Some(l) if l > 0 && i64::from(b) > l => l,
                _ => i64::from(b),
            };
            d.insert("batchSize", b);
        }
        if let Some(v) = &self.hint {
            d.insert("hint", v.clone());
        }
        if let Some(v) = &self.collation {
            d.insert("collation", v.clone());
        }
        if let Some(v) = &self.comment {
            d.insert("comment", v.clone());
        }
        if let Some(v) = self.max_time {
            d.insert("maxTimeMS", crate::operation::millis(v));
        }
        if let Some(v) = self.allow_disk_use {
            d.insert("allowDiskUse", v);
        }
        if let Some(v) = &self.let_vars {
            d.insert("let", v.clone());
        }
        if let Some(v) = &self.min {
            d.insert("min", v.clone());
        }
        if let Some(v) = &self.max {
            d.insert("max", v.clone());
        }
        if let Some(v) = self.return_key {
            d.insert("returnKey", v);
        }
        if let Some(v) = self.show_record_id {
            d.insert("showRecordId", v);
        }
        if let Some(v) = self.no_cursor_timeout {
            d.insert("noCursorTimeout", v);
        }
        if let Some(v) = self.allow_partial_results {
            d.insert("allowPartialResults", v);
        }
        match self.cursor_type {
            Some(CursorType::Tailable) => {
                d.insert("tailable", true);
            }
            Some(CursorType::TailableAwait) => {
                d.insert("tailable", true);
                d.insert("awaitData", true);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The action of [`Collection::find`].
#[must_use = "actions do nothing unless awaited"]
pub struct Find<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    options: FindOptions,
}

impl<T> std::fmt::Debug for Find<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Find")
            .field("filter", &self.filter)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> Find<'_, T> {
    option_setters! {
        /// The order of results.
        sort: Document,
        /// Which fields to return.
        projection: Document,
        /// How many documents to skip.
        skip: u64,
        /// The most documents to return (negative: one batch of at most that many).
        limit: i64,
        /// Documents per batch.
        batch_size: u32,
        /// An index to use (name or key pattern).
        hint: Bson,
        /// String comparison rules.
        collation: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// A server-side time limit for the find.
        max_time: Duration,
        /// The time limit of each getMore of a tailable awaitData cursor.
        max_await_time: Duration,
        /// Let the server use temporary files for large sorts.
        allow_disk_use: bool,
        /// Variables for `$expr` and aggregation expressions.
        let_vars: Document,
        /// The cursor type (tailable, tailable awaitData).
        cursor_type: CursorType,
        /// Where to read from.
        read_preference: ReadPreference,
        /// The read concern of this read.
        read_concern: ReadConcern,
        /// Lower index bound.
        min: Document,
        /// Upper index bound.
        max: Document,
        /// Return only index keys.
        return_key: bool,
        /// Add the record id to each document.
        show_record_id: bool,
        /// Keep an idle cursor open on the server.
        no_cursor_timeout: bool,
        /// Return partial results if some shards are down.
        allow_partial_results: bool,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<FindOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T: DeserializeOwned + Send + Sync> Collection<T> {
    /// Finds the documents matching `filter`. Awaiting gives a [`Cursor`].
    pub fn find(&self, filter: Document) -> Find<'_, T> {
        Find {
            coll: self,
            filter,
            options: FindOptions::default(),
        }
    }

    /// Finds one document matching `filter`.
    pub fn find_one(&self, filter: Document) -> FindOne<'_, T> {
        FindOne {
            inner: Find {
                coll: self,
                filter,
                options: FindOptions::default(),
            },
        }
    }
}

impl<'a, T: DeserializeOwned + Send + Sync + 'static> IntoFuture for Find<'a, T> {
    type Output = Result<Cursor<T>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.open())
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Find<'_, T> {
    /// Runs the `find` and opens its cursor (shared by `find` and `find_one`, whose futures
    /// box it once).
    async fn open(self) -> Result<Cursor<T>> {
        let coll = self.coll;
        // The whole command body in one document (no options document merged in later).
        let mut body = doc! { "find": coll.name.as_str(), "filter": self.filter };
        self.options.append_command_fields(&mut body)?;
        if let Some(rc) = super::aggregate::read_concern_document(
            self.options.read_concern.as_ref(),
            coll.read_concern.as_ref(),
        ) {
            body.insert("readConcern", rc);
        }
        let op = FindOp::from_body(
            coll.db.name(),
            coll.name.as_str(),
            body,
            self.options
                .read_preference
                .clone()
                .or_else(|| coll.read_preference.clone()),
        );
        let cursor_options = CursorOptions {
            batch_size: self.options.batch_size,
            max_time: match self.options.cursor_type {
                Some(CursorType::TailableAwait) => self.options.max_await_time,
                _ => None,
            },
            comment: self.options.comment.clone(),
            limit: self.options.limit.map(i64::abs),
        };
        let (address, info) = coll.db.client().execute_with_address(op).await?;
        Cursor::new(coll.db.client().clone(), address, info, cursor_options)
    }
}

/// The action of [`Collection::find_one`].
#[must_use = "actions do nothing unless awaited"]
pub struct FindOne<'a, T> {
    inner: Find<'a, T>,
}

impl<T> std::fmt::Debug for FindOne<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T> FindOne<'_, T> {
    /// The order of results (the first one is returned).
    pub fn sort(mut self, sort: Document) -> Self {
        self.inner.options.sort = Some(sort);
        self
    }

    /// Which fields to return.
    pub fn projection(mut self, projection: Document) -> Self {
        self.inner.options.projection = Some(projection);
        self
    }

    /// How many documents to skip.
    pub fn skip(mut self, skip: u64) -> Self {
        self.inner.options.skip = Some(skip);
        self
    }

    /// A comment recorded in the server's logs and profiler.
    pub fn comment(mut self, comment: impl Into<Bson>) -> Self {
        self.inner.options.comment = Some(comment.into());
        self
    }

    /// A server-side time limit.
    pub fn max_time(mut self, max_time: Duration) -> Self {
        self.inner.options.max_time = Some(max_time);
        self
    }

    /// Where to read from.
    pub fn read_preference(mut self, rp: ReadPreference) -> Self {
        self.inner.options.read_preference = Some(rp);
        self
    }
}

impl<'a, T: DeserializeOwned + Send + Sync + 'static> IntoFuture for FindOne<'a, T> {
    type Output = Result<Option<T>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(mut self) -> Self::IntoFuture {
        self.inner.options.limit = Some(-1);
        self.inner.options.batch_size = None;
        Box::pin(async move {
            let mut cursor = self.inner.open().await?;
            cursor.next_document().await.transpose()
        })
    }
}
