//! `delete_one` and `delete_many`.
//!
//! With an unacknowledged write concern (`w: 0`) the command is sent with `moreToCome` and no
//! reply comes back: the [`DeleteResult`] then says `deleted_count: 0`, as in the official driver.

use std::future::IntoFuture;

use bson::{Bson, Document};

use super::bulk_write::{
    bulk_error, is_unacknowledged, run_statements, write_command_options, Totals,
};
use super::{option_setters, Collection};
use crate::error::{BulkWriteFailure, Result};
use crate::operation::{DeleteStatement, WriteKind};
use crate::options::WriteConcern;
use crate::rt::BoxFuture;

/// What a delete did. An unacknowledged (`w: 0`) write gets no reply, so its count is 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteResult {
    /// Documents deleted.
    pub deleted_count: u64,
}

/// Options of `delete_one` and `delete_many`.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub collation: Option<Document>,
    pub write_concern: Option<WriteConcern>,
    /// An index to use: its name (string) or key pattern (document).
    pub hint: Option<Bson>,
    /// Variables for `$expr` (`let`).
    pub let_vars: Option<Document>,
    pub comment: Option<Bson>,
}

/// The action of [`Collection::delete_one`] and [`Collection::delete_many`].
#[must_use = "actions do nothing unless awaited"]
pub struct Delete<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    multi: bool,
    options: DeleteOptions,
}

impl<T> std::fmt::Debug for Delete<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delete")
            .field("filter", &self.filter)
            .field("multi", &self.multi)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> Delete<'_, T> {
    option_setters! {
        /// String comparison rules.
        collation: Document,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// An index to use: its name or key pattern.
        hint: Bson,
        /// Variables for `$expr`.
        let_vars: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<DeleteOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T: Send + Sync> Collection<T> {
    /// Deletes the first document matching `query`.
    pub fn delete_one(&self, query: Document) -> Delete<'_, T> {
        Delete {
            coll: self,
            filter: query,
            multi: false,
            options: DeleteOptions::default(),
        }
    }

    /// Deletes every document matching `query`. A write error is an
    /// [`ErrorKind::BulkWrite`](crate::error::ErrorKind::BulkWrite) error.
    pub fn delete_many(&self, query: Document) -> Delete<'_, T> {
        Delete {
            coll: self,
            filter: query,
            multi: true,
            options: DeleteOptions::default(),
        }
    }
}

impl<'a, T: Send + Sync> IntoFuture for Delete<'a, T> {
    type Output = Result<DeleteResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let o = &self.options;
            let mut statement = DeleteStatement::new(self.filter.clone(), self.multi);
            statement.collation = o.collation.clone();
            statement.hint = o.hint.clone();
            let wc = o.write_concern.as_ref().or(coll.write_concern.as_ref());
            let options = write_command_options(wc, None, o.comment.as_ref(), o.let_vars.as_ref());
            let outcomes = run_statements(
                coll,
                WriteKind::Delete,
                vec![statement.to_raw()?],
                true,
                options,
                is_unacknowledged(wc),
            )
            .await?;
            let mut totals = Totals::default();
            totals.add(&outcomes, |i| i);
            if totals.failed() {
                if !self.multi {
                    if let Some(e) = totals.single_error() {
                        return Err(e);
                    }
                }
                return Err(bulk_error(BulkWriteFailure {
                    deleted_count: totals.n,
                    write_errors: totals.write_errors,
                    write_concern_error: totals.write_concern_error,
                    ..Default::default()
                }));
            }
            Ok(DeleteResult {
                deleted_count: totals.n,
            })
        })
    }
}
