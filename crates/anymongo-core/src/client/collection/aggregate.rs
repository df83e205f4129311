//! `aggregate` on a collection or a database.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use bson::{doc, Bson, Document};
use serde::de::DeserializeOwned;

use super::{option_setters, write_concern_document, Collection};
use crate::client::Database;
use crate::cursor::{Cursor, CursorOptions};
use crate::error::Result;
use crate::operation::{Aggregate as AggregateOp, AggregateTarget};
use crate::options::{ReadConcern, ReadPreference, WriteConcern};
use crate::rt::BoxFuture;

/// Options of `aggregate`.
#[derive(Clone, Debug, Default)]
pub struct AggregateOptions {
    pub allow_disk_use: Option<bool>,
    /// Documents per batch (first batch and getMore).
    pub batch_size: Option<u32>,
    pub bypass_document_validation: Option<bool>,
    pub collation: Option<Document>,
    pub comment: Option<Bson>,
    /// An index name or key pattern.
    pub hint: Option<Bson>,
    pub max_time: Option<Duration>,
    /// `maxTimeMS` of each `getMore` (for tailable awaitData results such as `$changeStream`).
    pub max_await_time: Option<Duration>,
    pub read_concern: Option<ReadConcern>,
    /// Used only by pipelines ending in `$out` / `$merge`.
    pub write_concern: Option<WriteConcern>,
    pub let_vars: Option<Document>,
    /// Ignored by pipelines ending in `$out` / `$merge` (they run on the primary).
    pub read_preference: Option<ReadPreference>,
}

/// The `readConcern` document of an operation: its own, else its handle's.
pub(crate) fn read_concern_document(
    own: Option<&ReadConcern>,
    handle: Option<&ReadConcern>,
) -> Option<Document> {
    let level = own.or(handle)?.level.as_ref()?;
    Some(doc! { "level": level.as_str() })
}

impl AggregateOptions {
    /// Command fields (not `cursor`, which the operation builds).
    fn to_command_fields(
        &self,
        handle_rc: Option<&ReadConcern>,
        handle_wc: Option<&WriteConcern>,
    ) -> Document {
        let mut d = Document::new();
        if let Some(v) = self.allow_disk_use {
            d.insert("allowDiskUse", v);
        }
        if let Some(v) = self.bypass_document_validation {
            d.insert("bypassDocumentValidation", v);
        }
        if let Some(v) = &self.collation {
            d.insert("collation", v.clone());
        }
        if let Some(v) = &self.comment {
            d.insert("comment", v.clone());
        }
        if let Some(v) = &self.hint {
            d.insert("hint", v.clone());
        }
        if let Some(v) = self.max_time {
            d.insert("maxTimeMS", crate::operation::millis(v));
        }
        if let Some(v) = &self.let_vars {
            d.insert("let", v.clone());
        }
        if let Some(rc) = read_concern_document(self.read_concern.as_ref(), handle_rc) {
            d.insert("readConcern", rc);
        }
        // The operation drops it unless the pipeline writes.
        if let Some(wc) = write_concern_document(self.write_concern.as_ref().or(handle_wc)) {
            d.insert("writeConcern", wc);
        }
        d
    }
}

/// Where an [`Aggregate`] runs.
#[derive(Debug)]
enum Target<'a> {
    Collection {
        db: &'a Database,
        name: &'a str,
        read_preference: Option<&'a ReadPreference>,
        read_concern: Option<&'a ReadConcern>,
        write_concern: Option<&'a WriteConcern>,
    },
    Database(&'a Database),
}

/// The action of [`Collection::aggregate`] and [`Database::aggregate`]. Awaiting gives a
/// `Cursor<Document>`; [`with_type`](Self::with_type) gives a cursor of another type.
#[must_use = "actions do nothing unless awaited"]
pub struct Aggregate<'a, T = Document> {
    target: Target<'a>,
    pipeline: Vec<Document>,
    options: AggregateOptions,
    _marker: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Aggregate<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("target", &self.target)
            .field("pipeline", &self.pipeline)
            .field("options", &self.options)
            .finish()
    }
}

impl<'a, T> Aggregate<'a, T> {
    option_setters! {
        /// Let the server use temporary files.
        allow_disk_use: bool,
        /// Documents per batch.
        batch_size: u32,
        /// Skip document validation (`$out` / `$merge`).
        bypass_document_validation: bool,
        /// String comparison rules.
        collation: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// An index to use (name or key pattern).
        hint: Bson,
        /// A server-side time limit.
        max_time: Duration,
        /// The time limit of each getMore of a tailable awaitData result.
        max_await_time: Duration,
        /// The read concern of this read.
        read_concern: ReadConcern,
        /// The write concern of a `$out` / `$merge`.
        write_concern: WriteConcern,
        /// Variables for the pipeline.
        let_vars: Document,
        /// Where to read from.
        read_preference: ReadPreference,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<AggregateOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }

    /// Yields `U`s instead.
    pub fn with_type<U>(self) -> Aggregate<'a, U> {
        Aggregate {
            target: self.target,
            pipeline: self.pipeline,
            options: self.options,
            _marker: PhantomData,
        }
    }
}

impl<C> Collection<C> {
    /// Runs an aggregation pipeline. Awaiting gives a `Cursor<Document>`. A pipeline ending in
    /// `$out` or `$merge` is a write: it runs on the primary with the write concern and is not
    /// retried.
    pub fn aggregate(&self, pipeline: impl IntoIterator<Item = Document>) -> Aggregate<'_> {
        Aggregate {
            target: Target::Collection {
                db: &self.db,
                name: &self.name,
                read_preference: self.read_preference.as_ref(),
                read_concern: self.read_concern.as_ref(),
                write_concern: self.write_concern.as_ref(),
            },
            pipeline: pipeline.into_iter().collect(),
            options: AggregateOptions::default(),
            _marker: PhantomData,
        }
    }
}

impl Database {
    /// Runs a database-level aggregation (`aggregate: 1`, e.g. `$currentOp` against `admin`).
    pub fn aggregate(&self, pipeline: impl IntoIterator<Item = Document>) -> Aggregate<'_> {
        Aggregate {
            target: Target::Database(self),
            pipeline: pipeline.into_iter().collect(),
            options: AggregateOptions::default(),
            _marker: PhantomData,
        }
    }
}

impl<'a, T: DeserializeOwned + Send + Sync + 'static> IntoFuture for Aggregate<'a, T> {
    type Output = Result<Cursor<T>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (db, target, rp, rc, wc) = match self.target {
                Target::Collection {
                    db,
                    name,
                    read_preference,
                    read_concern,
                    write_concern,
                } => (
                    db,
                    AggregateTarget::Collection(name.to_string()),
                    read_preference,
                    read_concern,
                    write_concern,
                ),
                Target::Database(db) => (
                    db,
                    AggregateTarget::Database,
                    db.read_preference.as_ref(),
                    db.read_concern.as_ref(),
                    db.write_concern.as_ref(),
                ),
            };
            let op = AggregateOp {
                db: db.name().to_string(),
                target,
                pipeline: self.pipeline,
                options: self.options.to_command_fields(rc, wc),
                batch_size: self.options.batch_size,
                read_preference: self.options.read_preference.clone().or_else(|| rp.cloned()),
            };
            let cursor_options = CursorOptions {
                batch_size: self.options.batch_size,
                max_time: self.options.max_await_time,
                comment: self.options.comment.clone(),
                limit: None,
            };
            let (address, info) = db.client().execute_with_address(op).await?;
            Cursor::new(db.client().clone(), address, info, cursor_options)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ReadConcernLevel;

    #[test]
    fn options_become_command_fields_with_inherited_concerns() {
        let handle_rc = ReadConcern {
            level: Some(ReadConcernLevel::Majority),
        };
        let handle_wc = WriteConcern {
            w: Some(crate::options::Acknowledgment::Majority),
            ..Default::default()
        };
        let opts = AggregateOptions {
            allow_disk_use: Some(true),
            max_time: Some(Duration::from_millis(1500)),
            hint: Some(Bson::from("a_1")),
            let_vars: Some(doc! { "x": 1 }),
            ..Default::default()
        };
        assert_eq!(
            opts.to_command_fields(Some(&handle_rc), Some(&handle_wc)),
            doc! { "allowDiskUse": true, "hint": "a_1", "maxTimeMS": 1500i64, "let": { "x": 1 },
            "readConcern": { "level": "majority" }, "writeConcern": { "w": "majority" } }
        );
        // The operation's own concern wins over the handle's.
        let own = AggregateOptions {
            read_concern: Some(ReadConcern {
                level: Some(ReadConcernLevel::Local),
            }),
            ..Default::default()
        };
        assert_eq!(
            own.to_command_fields(Some(&handle_rc), None),
            doc! { "readConcern": { "level": "local" } }
        );
        assert_eq!(
            AggregateOptions::default().to_command_fields(None, None),
            doc! {}
        );
    }
}
