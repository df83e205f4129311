//! A typed collection handle and its CRUD actions. Each method returns an action: set options
//! with builder methods, then `.await` it, as in the official driver.

use std::borrow::Borrow;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use bson::{doc, oid::ObjectId, Bson, Document, RawDocumentBuf};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::database::HandleOptions;
use super::Database;
use crate::cursor::{Cursor, CursorOptions};
use crate::error::{BulkWriteFailure, Error, ErrorKind, Result, WriteFailure};
use crate::operation::{Find as FindOp, WriteCommand, WriteKind, WriteOutcome};
use crate::options::{ReadConcern, ReadPreference, WriteConcern};
use crate::rt::BoxFuture;

/// A handle to a collection whose documents are `T`. Cheap to clone.
pub struct Collection<T> {
    db: Database,
    name: String,
    read_preference: Option<ReadPreference>,
    read_concern: Option<ReadConcern>,
    write_concern: Option<WriteConcern>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            db: self.db.clone(),
            name: self.name.clone(),
            read_preference: self.read_preference.clone(),
            read_concern: self.read_concern.clone(),
            write_concern: self.write_concern.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("db", &self.db.name())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The result of `insert_one`.
#[derive(Clone, Debug, PartialEq)]
pub struct InsertOneResult {
    /// The `_id` of the inserted document (generated if the document had none).
    pub inserted_id: Bson,
}

/// The result of `insert_many`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InsertManyResult {
    /// The `_id` of each inserted document, keyed by its index in the input.
    pub inserted_ids: std::collections::HashMap<usize, Bson>,
}

impl<T> Collection<T> {
    pub(crate) fn new(db: Database, name: &str, options: HandleOptions) -> Self {
        Collection {
            read_preference: options
                .read_preference
                .or_else(|| db.read_preference.clone()),
            read_concern: options.read_concern.or_else(|| db.read_concern.clone()),
            write_concern: options.write_concern.or_else(|| db.write_concern.clone()),
            name: name.to_string(),
            db,
            _marker: PhantomData,
        }
    }

    /// The collection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `db.collection`.
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.db.name(), self.name)
    }

    /// The database this collection is in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// This collection with another document type.
    pub fn clone_with_type<U>(&self) -> Collection<U> {
        Collection {
            db: self.db.clone(),
            name: self.name.clone(),
            read_preference: self.read_preference.clone(),
            read_concern: self.read_concern.clone(),
            write_concern: self.write_concern.clone(),
            _marker: PhantomData,
        }
    }

    /// The write concern writes through this handle use.
    pub fn write_concern(&self) -> Option<&WriteConcern> {
        self.write_concern.as_ref()
    }

    /// The read preference reads through this handle use.
    pub fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }

    /// The read concern reads through this handle use.
    pub fn read_concern(&self) -> Option<&ReadConcern> {
        self.read_concern.as_ref()
    }
}

/// Serializes `doc` to raw BSON and makes sure it has an `_id` (generated first if missing).
/// Returns the document and its `_id`.
pub(crate) fn with_id<T: Serialize>(doc: &T) -> Result<(RawDocumentBuf, Bson)> {
    let raw = bson::serialize_to_raw_document_buf(doc)?;
    if let Some(id) = raw
        .get("_id")
        .map_err(|e| Error::invalid_argument(e.to_string()))?
    {
        let id = Bson::try_from(id).map_err(|e| Error::invalid_argument(e.to_string()))?;
        return Ok((raw, id));
    }
    let oid = ObjectId::new();
    let mut with = RawDocumentBuf::new();
    with.append(bson::cstr!("_id"), oid);
    for element in raw.iter() {
        let (key, value) = element.map_err(|e| Error::invalid_argument(e.to_string()))?;
        with.append(key, value);
    }
    Ok((with, Bson::ObjectId(oid)))
}

/// `writeConcern` for a command, when set and not the server default.
pub(crate) fn write_concern_document(wc: Option<&WriteConcern>) -> Option<Document> {
    let wc = wc.filter(|wc| !wc.is_empty())?;
    let mut d = Document::new();
    match &wc.w {
        Some(crate::options::Acknowledgment::Nodes(n)) => {
            d.insert("w", i64::from(*n));
        }
        Some(crate::options::Acknowledgment::Majority) => {
            d.insert("w", "majority");
        }
        Some(crate::options::Acknowledgment::Custom(s)) => {
            d.insert("w", s.clone());
        }
        None => {}
    }
    if let Some(j) = wc.journal {
        d.insert("j", j);
    }
    if let Some(t) = wc.w_timeout {
        d.insert("wtimeout", t.as_millis() as i64);
    }
    Some(d)
}

/// Generates builder methods that set `self.options.<field> = Some(value)`.
macro_rules! option_setters {
    ($($(#[$meta:meta])* $name:ident: $ty:ty),* $(,)?) => {$(
        $(#[$meta])*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.options.$name = Some(value.into());
            self
        }
    )*};
}

/// Options of `insert_one` and `insert_many`.
#[derive(Clone, Debug, Default)]
pub struct InsertOptions {
    pub bypass_document_validation: Option<bool>,
    pub write_concern: Option<WriteConcern>,
    pub comment: Option<Bson>,
    /// `insert_many` only: stop at the first error (default true).
    pub ordered: Option<bool>,
}

/// The action of [`Collection::insert_many`] (and `insert_one`).
#[must_use = "actions do nothing unless awaited"]
pub struct InsertMany<'a, T> {
    coll: &'a Collection<T>,
    docs: Result<Vec<(RawDocumentBuf, Bson)>>,
    options: InsertOptions,
}

impl<T> std::fmt::Debug for InsertMany<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertMany")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> InsertMany<'_, T> {
    option_setters! {
        /// Skip document validation.
        bypass_document_validation: bool,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Stop at the first error (the default) or try every document.
        ordered: bool,
    }
}

/// The action of [`Collection::insert_one`].
#[must_use = "actions do nothing unless awaited"]
pub struct InsertOne<'a, T> {
    inner: InsertMany<'a, T>,
}

impl<T> std::fmt::Debug for InsertOne<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertOne")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl<T> InsertOne<'_, T> {
    /// Skip document validation.
    pub fn bypass_document_validation(mut self, value: bool) -> Self {
        self.inner.options.bypass_document_validation = Some(value);
        self
    }

    /// The write concern of this write.
    pub fn write_concern(mut self, value: WriteConcern) -> Self {
        self.inner.options.write_concern = Some(value);
        self
    }

    /// A comment recorded in the server's logs and profiler.
    pub fn comment(mut self, value: impl Into<Bson>) -> Self {
        self.inner.options.comment = Some(value.into());
        self
    }
}

impl<T: Serialize + Send + Sync> Collection<T> {
    /// Inserts one document. A missing `_id` is generated (an ObjectId) and returned.
    pub fn insert_one(&self, doc: impl Borrow<T>) -> InsertOne<'_, T> {
        InsertOne {
            inner: InsertMany {
                coll: self,
                docs: with_id(doc.borrow()).map(|d| vec![d]),
                options: InsertOptions::default(),
            },
        }
    }

    /// Inserts many documents, in as many batches as the server's limits require.
    pub fn insert_many<I>(&self, docs: I) -> InsertMany<'_, T>
    where
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        let docs = docs
            .into_iter()
            .map(|d| with_id(d.borrow()))
            .collect::<Result<Vec<_>>>();
        InsertMany {
            coll: self,
            docs,
            options: InsertOptions::default(),
        }
    }
}

impl<'a, T: Send + Sync> IntoFuture for InsertOne<'a, T> {
    type Output = Result<InsertOneResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let result = match self.inner.await {
                Ok(r) => r,
                Err(e) => return Err(single_write_error(e)),
            };
            let inserted_id = result.inserted_ids.get(&0).cloned().unwrap_or(Bson::Null);
            Ok(InsertOneResult { inserted_id })
        })
    }
}

/// A one-document write reports its failure as a write error, not a bulk write error.
fn single_write_error(e: Error) -> Error {
    let labels = e.labels().clone();
    match e.kind() {
        ErrorKind::BulkWrite(b) => {
            let kind = if let Some(w) = b.write_errors.first() {
                ErrorKind::Write(WriteFailure::WriteError(w.clone()))
            } else if let Some(wc) = &b.write_concern_error {
                ErrorKind::Write(WriteFailure::WriteConcernError(wc.clone()))
            } else {
                return e;
            };
            Error::new(kind).with_labels(labels)
        }
        _ => e,
    }
}

impl<'a, T: Send + Sync> IntoFuture for InsertMany<'a, T> {
    type Output = Result<InsertManyResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let docs = self.docs?;
            let coll = self.coll;
            let wc = self
                .options
                .write_concern
                .as_ref()
                .or(coll.write_concern.as_ref());
            let mut options = Document::new();
            if let Some(b) = self.options.bypass_document_validation {
                options.insert("bypassDocumentValidation", b);
            }
            if let Some(c) = &self.options.comment {
                options.insert("comment", c.clone());
            }
            if let Some(wc) = write_concern_document(wc) {
                options.insert("writeConcern", wc);
            }
            let (raw, ids): (Vec<_>, Vec<_>) = docs.into_iter().unzip();
            let mut op = WriteCommand::new(
                WriteKind::Insert,
                coll.db.name(),
                coll.name.clone(),
                raw,
                self.options.ordered.unwrap_or(true),
                options,
            );
            op.unacknowledged = wc.is_some_and(|wc| !wc.is_acknowledged());
            let outcomes = coll.db.client().execute_write(&mut op).await?;
            let mut failure = BulkWriteFailure::default();
            let mut inserted = std::collections::HashMap::new();
            for outcome in &outcomes {
                for i in outcome.range.clone() {
                    if !outcome.write_errors.iter().any(|w| w.index == i) {
                        inserted.insert(i, ids[i].clone());
                    }
                }
            }
            collect_failures(&outcomes, &mut failure);
            if !failure.write_errors.is_empty() || failure.write_concern_error.is_some() {
                failure.inserted_ids = inserted.into_iter().collect();
                let labels = failure
                    .write_concern_error
                    .as_ref()
                    .map(|w| w.labels.clone())
                    .unwrap_or_default();
                return Err(Error::new(ErrorKind::BulkWrite(failure)).with_labels(labels));
            }
            Ok(InsertManyResult {
                inserted_ids: inserted,
            })
        })
    }
}

/// Gathers the write errors and the last write concern error of all batches.
pub(crate) fn collect_failures(outcomes: &[WriteOutcome], failure: &mut BulkWriteFailure) {
    for outcome in outcomes {
        failure
            .write_errors
            .extend(outcome.write_errors.iter().cloned());
        if outcome.write_concern_error.is_some() {
            failure.write_concern_error = outcome.write_concern_error.clone();
        }
    }
}

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
    /// The command fields these options add to `find`.
    pub(crate) fn to_command_fields(&self) -> Result<Document> {
        let mut d = Document::new();
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
            d.insert("maxTimeMS", v.as_millis() as i64);
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
        Ok(d)
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
        Box::pin(async move {
            let coll = self.coll;
            let mut options = self.options.to_command_fields()?;
            let read_concern = self
                .options
                .read_concern
                .as_ref()
                .or(coll.read_concern.as_ref());
            if let Some(level) = read_concern.and_then(|rc| rc.level.as_ref()) {
                options.insert("readConcern", doc! { "level": level.as_str() });
            }
            let op = FindOp {
                db: coll.db.name().to_string(),
                collection: coll.name.clone(),
                filter: self.filter,
                options,
                read_preference: self
                    .options
                    .read_preference
                    .clone()
                    .or_else(|| coll.read_preference.clone()),
            };
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
        })
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
            let mut cursor = self.inner.await?;
            cursor.next_document().await.transpose()
        })
    }
}

impl<T> Collection<T> {
    /// Drops the collection. Dropping a collection that does not exist succeeds.
    pub async fn drop(&self) -> Result<()> {
        let mut command = doc! { "drop": self.name.clone() };
        if let Some(wc) = write_concern_document(self.write_concern.as_ref()) {
            command.insert("writeConcern", wc);
        }
        match self.db.run_command(command).await {
            Ok(_) => Ok(()),
            // NamespaceNotFound: there was nothing to drop.
            Err(e) if e.code() == Some(26) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
