//! `update_one`, `update_many` and `replace_one`.
//!
//! The update is validated before anything is sent (CRUD spec): an update document holds only
//! `$`-operators, a pipeline is not empty, a replacement has no `$`-keys; otherwise the action
//! fails with [`ErrorKind::InvalidArgument`](crate::error::ErrorKind::InvalidArgument).
//!
//! With an unacknowledged write concern (`w: 0`) the command is sent with `moreToCome` and the
//! server sends no reply: the [`UpdateResult`] then has zero counts and no `upserted_id`, as in
//! the official driver.

use std::borrow::Borrow;
use std::future::IntoFuture;

use bson::{Bson, Document};
use serde::Serialize;

use super::bulk_write::{
    bulk_error, is_unacknowledged, run_statements, write_command_options, Totals,
};
use super::{option_setters, Collection};
use crate::error::{BulkWriteFailure, Result};
use crate::operation::{
    replacement_document, UpdateBody, UpdateModifications, UpdateStatement, WriteKind,
};
use crate::options::WriteConcern;
use crate::rt::BoxFuture;

/// What an update or replace did. An unacknowledged (`w: 0`) write gets no reply, so its
/// result is all zeros and `upserted_id: None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateResult {
    /// Documents matched by the filter (0 when the write upserted).
    pub matched_count: u64,
    /// Documents actually changed.
    pub modified_count: u64,
    /// The `_id` of the inserted document, when the write upserted.
    pub upserted_id: Option<Bson>,
}

/// Options of `update_one` and `update_many`.
#[derive(Clone, Debug, Default)]
pub struct UpdateOptions {
    /// Which array elements `$[<identifier>]` updates.
    pub array_filters: Option<Vec<Document>>,
    pub bypass_document_validation: Option<bool>,
    /// Insert a document when nothing matches.
    pub upsert: Option<bool>,
    pub collation: Option<Document>,
    /// An index to use: its name (string) or key pattern (document).
    pub hint: Option<Bson>,
    pub write_concern: Option<WriteConcern>,
    /// Variables for `$expr` and pipelines (`let`).
    pub let_vars: Option<Document>,
    pub comment: Option<Bson>,
    /// `update_one` only: which matching document to update (MongoDB 8.0+).
    pub sort: Option<Document>,
}

/// Options of `replace_one`.
#[derive(Clone, Debug, Default)]
pub struct ReplaceOptions {
    pub bypass_document_validation: Option<bool>,
    /// Insert the replacement when nothing matches.
    pub upsert: Option<bool>,
    pub collation: Option<Document>,
    /// An index to use: its name (string) or key pattern (document).
    pub hint: Option<Bson>,
    pub write_concern: Option<WriteConcern>,
    /// Variables for `$expr` (`let`).
    pub let_vars: Option<Document>,
    pub comment: Option<Bson>,
    /// Which matching document to replace (MongoDB 8.0+).
    pub sort: Option<Document>,
}

/// The action of [`Collection::update_one`] and [`Collection::update_many`].
#[must_use = "actions do nothing unless awaited"]
pub struct Update<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    update: UpdateModifications,
    multi: bool,
    options: UpdateOptions,
}

impl<T> std::fmt::Debug for Update<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update")
            .field("filter", &self.filter)
            .field("update", &self.update)
            .field("multi", &self.multi)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> Update<'_, T> {
    option_setters! {
        /// Insert a document when nothing matches.
        upsert: bool,
        /// Which array elements `$[<identifier>]` updates.
        array_filters: Vec<Document>,
        /// An index to use: its name or key pattern.
        hint: Bson,
        /// String comparison rules.
        collation: Document,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Variables for `$expr` and pipelines.
        let_vars: Document,
        /// Skip document validation.
        bypass_document_validation: bool,
        /// `update_one` only: which matching document to update (MongoDB 8.0+).
        sort: Document,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<UpdateOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }

    /// The update statement these arguments make (validated).
    fn statement(&self) -> Result<UpdateStatement> {
        let mut s = UpdateStatement::new(
            self.filter.clone(),
            UpdateBody::Modifications(self.update.clone()),
            self.multi,
        );
        s.upsert = self.options.upsert;
        s.array_filters = self.options.array_filters.clone();
        s.collation = self.options.collation.clone();
        s.hint = self.options.hint.clone();
        s.sort = self.options.sort.clone();
        s.to_document()?;
        Ok(s)
    }
}

/// The action of [`Collection::replace_one`].
#[must_use = "actions do nothing unless awaited"]
pub struct Replace<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    replacement: Result<Document>,
    options: ReplaceOptions,
}

impl<T> std::fmt::Debug for Replace<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replace")
            .field("filter", &self.filter)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> Replace<'_, T> {
    option_setters! {
        /// Insert the replacement when nothing matches.
        upsert: bool,
        /// An index to use: its name or key pattern.
        hint: Bson,
        /// String comparison rules.
        collation: Document,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Variables for `$expr`.
        let_vars: Document,
        /// Skip document validation.
        bypass_document_validation: bool,
        /// Which matching document to replace (MongoDB 8.0+).
        sort: Document,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<ReplaceOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T: Send + Sync> Collection<T> {
    /// Updates the first document matching `query` with an update document (`$set`, ...) or
    /// an aggregation pipeline.
    pub fn update_one(
        &self,
        query: Document,
        update: impl Into<UpdateModifications>,
    ) -> Update<'_, T> {
        Update {
            coll: self,
            filter: query,
            update: update.into(),
            multi: false,
            options: UpdateOptions::default(),
        }
    }

    /// Updates every document matching `query`. A write error is an
    /// [`ErrorKind::BulkWrite`](crate::error::ErrorKind::BulkWrite) error with the counts so far.
    pub fn update_many(
        &self,
        query: Document,
        update: impl Into<UpdateModifications>,
    ) -> Update<'_, T> {
        Update {
            coll: self,
            filter: query,
            update: update.into(),
            multi: true,
            options: UpdateOptions::default(),
        }
    }
}

impl<T: Serialize + Send + Sync> Collection<T> {
    /// Replaces the first document matching `query` with `replacement` (serialized with serde;
    /// it must not contain `$`-operators).
    pub fn replace_one(&self, query: Document, replacement: impl Borrow<T>) -> Replace<'_, T> {
        Replace {
            coll: self,
            filter: query,
            replacement: replacement_document(replacement.borrow()),
            options: ReplaceOptions::default(),
        }
    }
}

/// The common part of an update, replace, or delete of this module: options of the command.
pub(super) struct CommandOptions<'o> {
    pub write_concern: Option<&'o WriteConcern>,
    pub bypass_document_validation: Option<bool>,
    pub comment: Option<&'o Bson>,
    pub let_vars: Option<&'o Document>,
}

/// Sends one update statement and interprets the reply: a one-document write failure is
/// `ErrorKind::Write`, a multi-document one `ErrorKind::BulkWrite` with partial counts.
async fn run_update<T>(
    coll: &Collection<T>,
    statement: UpdateStatement,
    multi: bool,
    options: CommandOptions<'_>,
) -> Result<UpdateResult> {
    let wc = options.write_concern.or(coll.write_concern.as_ref());
    let command_options = write_command_options(
        wc,
        options.bypass_document_validation,
        options.comment,
        options.let_vars,
    );
    let outcomes = run_statements(
        coll,
        WriteKind::Update,
        vec![statement.to_raw()?],
        true,
        command_options,
        is_unacknowledged(wc),
    )
    .await?;
    let mut totals = Totals::default();
    totals.add(&outcomes, |i| i);
    let upserted_id = totals.upserted.values().next().cloned();
    let result = UpdateResult {
        matched_count: totals.n.saturating_sub(totals.upserted.len() as u64),
        modified_count: totals.n_modified,
        upserted_id,
    };
    if totals.failed() {
        if !multi {
            if let Some(e) = totals.single_error() {
                return Err(e);
            }
        }
        return Err(bulk_error(BulkWriteFailure {
            write_errors: totals.write_errors,
            write_concern_error: totals.write_concern_error,
            matched_count: result.matched_count,
            modified_count: result.modified_count,
            upserted_ids: totals.upserted,
            ..Default::default()
        }));
    }
    Ok(result)
}

impl<'a, T: Send + Sync> IntoFuture for Update<'a, T> {
    type Output = Result<UpdateResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let statement = self.statement()?;
            let o = &self.options;
            let options = CommandOptions {
                write_concern: o.write_concern.as_ref(),
                bypass_document_validation: o.bypass_document_validation,
                comment: o.comment.as_ref(),
                let_vars: o.let_vars.as_ref(),
            };
            run_update(self.coll, statement, self.multi, options).await
        })
    }
}

impl<'a, T: Send + Sync> IntoFuture for Replace<'a, T> {
    type Output = Result<UpdateResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut s = UpdateStatement::new(
                self.filter,
                UpdateBody::Replacement(self.replacement?),
                false,
            );
            let o = &self.options;
            s.upsert = o.upsert;
            s.collation = o.collation.clone();
            s.hint = o.hint.clone();
            s.sort = o.sort.clone();
            let options = CommandOptions {
                write_concern: o.write_concern.as_ref(),
                bypass_document_validation: o.bypass_document_validation,
                comment: o.comment.as_ref(),
                let_vars: o.let_vars.as_ref(),
            };
            run_update(self.coll, s, false, options).await
        })
    }
}
