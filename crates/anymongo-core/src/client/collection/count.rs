//! `count_documents` (an aggregation, as the CRUD spec says) and `estimated_document_count`
//! (the `count` command).

use std::future::IntoFuture;
use std::time::Duration;

use bson::{Bson, Document};

use super::aggregate::read_concern_document;
use super::{option_setters, Collection};
use crate::error::Result;
use crate::operation::{
    count_documents_pipeline, parse_count_documents, Aggregate, AggregateTarget, Count,
};
use crate::options::{ReadConcern, ReadPreference};
use crate::rt::BoxFuture;

/// Options of `count_documents`.
#[derive(Clone, Debug, Default)]
pub struct CountOptions {
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
    pub limit: Option<u64>,
    pub max_time: Option<Duration>,
    pub skip: Option<u64>,
    pub comment: Option<Bson>,
    pub read_preference: Option<ReadPreference>,
    pub read_concern: Option<ReadConcern>,
}

/// Options of `estimated_document_count`.
#[derive(Clone, Debug, Default)]
pub struct EstimatedDocumentCountOptions {
    pub max_time: Option<Duration>,
    pub comment: Option<Bson>,
    pub read_preference: Option<ReadPreference>,
    pub read_concern: Option<ReadConcern>,
}

/// The action of [`Collection::count_documents`].
#[must_use = "actions do nothing unless awaited"]
pub struct CountDocuments<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    options: CountOptions,
}

impl<T> std::fmt::Debug for CountDocuments<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountDocuments")
            .field("filter", &self.filter)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> CountDocuments<'_, T> {
    option_setters! {
        /// String comparison rules.
        collation: Document,
        /// An index to use (name or key pattern).
        hint: Bson,
        /// Count at most this many documents.
        limit: u64,
        /// A server-side time limit.
        max_time: Duration,
        /// Skip this many matching documents.
        skip: u64,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Where to read from.
        read_preference: ReadPreference,
        /// The read concern of this read.
        read_concern: ReadConcern,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<CountOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

/// The action of [`Collection::estimated_document_count`].
#[must_use = "actions do nothing unless awaited"]
pub struct EstimatedDocumentCount<'a, T> {
    coll: &'a Collection<T>,
    options: EstimatedDocumentCountOptions,
}

impl<T> std::fmt::Debug for EstimatedDocumentCount<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstimatedDocumentCount")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> EstimatedDocumentCount<'_, T> {
    option_setters! {
        /// A server-side time limit.
        max_time: Duration,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Where to read from.
        read_preference: ReadPreference,
        /// The read concern of this read.
        read_concern: ReadConcern,
    }

    /// Replaces all options at once.
    pub fn with_options(
        mut self,
        options: impl Into<Option<EstimatedDocumentCountOptions>>,
    ) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> Collection<T> {
    /// Counts the documents matching `filter` exactly (an aggregation with `$match` and
    /// `$group`).
    pub fn count_documents(&self, filter: Document) -> CountDocuments<'_, T> {
        CountDocuments {
            coll: self,
            filter,
            options: CountOptions::default(),
        }
    }

    /// The collection's document count from its metadata (the `count` command): fast, but
    /// may be off after an unclean shutdown or with orphaned documents on a sharded cluster.
    pub fn estimated_document_count(&self) -> EstimatedDocumentCount<'_, T> {
        EstimatedDocumentCount {
            coll: self,
            options: EstimatedDocumentCountOptions::default(),
        }
    }
}

impl CountOptions {
    fn to_command_fields(&self, handle_rc: Option<&ReadConcern>) -> Document {
        let mut d = Document::new();
        if let Some(v) = &self.collation {
            d.insert("collation", v.clone());
        }
        if let Some(v) = &self.hint {
            d.insert("hint", v.clone());
        }
        if let Some(v) = self.max_time {
            d.insert("maxTimeMS", crate::operation::millis(v));
        }
        if let Some(v) = &self.comment {
            d.insert("comment", v.clone());
        }
        if let Some(rc) = read_concern_document(self.read_concern.as_ref(), handle_rc) {
            d.insert("readConcern", rc);
        }
        d
    }
}

impl EstimatedDocumentCountOptions {
    fn to_command_fields(&self, handle_rc: Option<&ReadConcern>) -> Document {
        let mut d = Document::new();
        if let Some(v) = self.max_time {
            d.insert("maxTimeMS", crate::operation::millis(v));
        }
        if let Some(v) = &self.comment {
            d.insert("comment", v.clone());
        }
        if let Some(rc) = read_concern_document(self.read_concern.as_ref(), handle_rc) {
            d.insert("readConcern", rc);
        }
        d
    }
}

impl<'a, T: Send + Sync> IntoFuture for CountDocuments<'a, T> {
    type Output = Result<u64>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let op = Aggregate {
                db: coll.db.name().to_string(),
                target: AggregateTarget::Collection(coll.name.clone()),
                pipeline: count_documents_pipeline(
                    self.filter,
                    self.options.skip,
                    self.options.limit,
                )?,
                options: self.options.to_command_fields(coll.read_concern.as_ref()),
                batch_size: None,
                read_preference: self
                    .options
                    .read_preference
                    .clone()
                    .or_else(|| coll.read_preference.clone()),
            };
            let info = coll.db.client().execute(op).await?;
            // One group, so one document: the cursor is already exhausted.
            parse_count_documents(&info)
        })
    }
}

impl<'a, T: Send + Sync> IntoFuture for EstimatedDocumentCount<'a, T> {
    type Output = Result<u64>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let op = Count {
                db: coll.db.name().to_string(),
                collection: coll.name.clone(),
                options: self.options.to_command_fields(coll.read_concern.as_ref()),
                read_preference: self
                    .options
                    .read_preference
                    .clone()
                    .or_else(|| coll.read_preference.clone()),
            };
            match coll.db.client().execute(op).await {
                // A collection that does not exist has no documents.
                Err(e) if e.is_namespace_not_found() => Ok(0),
                other => other,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ReadConcernLevel;
    use bson::doc;

    #[test]
    fn count_options_become_command_fields() {
        let rc = ReadConcern {
            level: Some(ReadConcernLevel::Local),
        };
        let opts = CountOptions {
            collation: Some(doc! { "locale": "en" }),
            hint: Some(Bson::from("a_1")),
            max_time: Some(Duration::from_secs(2)),
            comment: Some(Bson::from("c")),
            skip: Some(3),
            limit: Some(4),
            ..Default::default()
        };
        // skip and limit go into the pipeline, not the command.
        assert_eq!(
            opts.to_command_fields(Some(&rc)),
            doc! { "collation": { "locale": "en" }, "hint": "a_1", "maxTimeMS": 2000i64,
            "comment": "c", "readConcern": { "level": "local" } }
        );
        let est = EstimatedDocumentCountOptions {
            max_time: Some(Duration::from_millis(7)),
            ..Default::default()
        };
        assert_eq!(est.to_command_fields(None), doc! { "maxTimeMS": 7i64 });
    }
}
