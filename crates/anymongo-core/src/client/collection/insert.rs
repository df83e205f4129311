//! `insert_one` and `insert_many`: documents get an `_id` if they lack one, and are sent as
//! OP_MSG document sequences in as many batches as the server's limits require.

use std::borrow::Borrow;
use std::future::IntoFuture;

use bson::{Bson, RawDocumentBuf};
use serde::Serialize;

use super::bulk_write::{
    bulk_error, is_unacknowledged, run_statements, write_command_options, Totals,
};
use super::{option_setters, with_id, Collection};
use crate::error::{BulkWriteFailure, Error, ErrorKind, Result, WriteFailure};
use crate::operation::WriteKind;
use crate::options::WriteConcern;
use crate::rt::BoxFuture;

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
            let result = match self.inner.run().await {
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
        Box::pin(self.run())
    }
}

impl<T: Send + Sync> InsertMany<'_, T> {
    /// Runs the insert (shared by `insert_many` and `insert_one`, whose futures box it once).
    async fn run(self) -> Result<InsertManyResult> {
        let docs = self.docs?;
        let coll = self.coll;
        let wc = self
            .options
            .write_concern
            .as_ref()
            .or(coll.write_concern.as_ref());
        let options = write_command_options(
            wc,
            self.options.bypass_document_validation,
            self.options.comment.as_ref(),
            None,
        );
        let (raw, ids): (Vec<_>, Vec<_>) = docs.into_iter().unzip();
        let ordered = self.options.ordered.unwrap_or(true);
        let outcomes = run_statements(
            coll,
            WriteKind::Insert,
            raw,
            ordered,
            options,
            is_unacknowledged(wc),
        )
        .await?;
        let mut inserted = std::collections::HashMap::new();
        for outcome in &outcomes {
            // An ordered insert stops at its first error: later documents were never run.
            let end = match (ordered, outcome.write_errors.iter().map(|w| w.index).min()) {
                (true, Some(first_error)) => first_error,
                _ => outcome.range.end,
            };
            let range = outcome.range.start..end;
            for (i, id) in ids.iter().enumerate().take(range.end).skip(range.start) {
                if !outcome.write_errors.iter().any(|w| w.index == i) {
                    inserted.insert(i, id.clone());
                }
            }
        }
        let mut totals = Totals::default();
        totals.add(&outcomes, |i| i);
        if !totals.write_errors.is_empty() || totals.write_concern_error.is_some() {
            return Err(bulk_error(BulkWriteFailure {
                write_errors: totals.write_errors,
                write_concern_error: totals.write_concern_error,
                inserted_ids: inserted.into_iter().collect(),
                ..BulkWriteFailure::default()
            }));
        }
        Ok(InsertManyResult {
            inserted_ids: inserted,
        })
    }
}
