//! `distinct`.

use std::future::IntoFuture;
use std::time::Duration;

use bson::{Bson, Document};

use super::aggregate::read_concern_document;
use super::{option_setters, Collection};
use crate::error::Result;
use crate::operation::Distinct as DistinctOp;
use crate::options::{ReadConcern, ReadPreference};
use crate::rt::BoxFuture;

/// Options of `distinct`.
#[derive(Clone, Debug, Default)]
pub struct DistinctOptions {
    pub max_time: Option<Duration>,
    pub collation: Option<Document>,
    pub comment: Option<Bson>,
    pub hint: Option<Bson>,
    pub read_preference: Option<ReadPreference>,
    pub read_concern: Option<ReadConcern>,
}

/// The action of [`Collection::distinct`].
#[must_use = "actions do nothing unless awaited"]
pub struct Distinct<'a, T> {
    coll: &'a Collection<T>,
    field: String,
    filter: Document,
    options: DistinctOptions,
}

impl<T> std::fmt::Debug for Distinct<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distinct")
            .field("field", &self.field)
            .field("filter", &self.filter)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> Distinct<'_, T> {
    option_setters! {
        /// A server-side time limit.
        max_time: Duration,
        /// String comparison rules.
        collation: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// An index to use (name or key pattern).
        hint: Bson,
        /// Where to read from.
        read_preference: ReadPreference,
        /// The read concern of this read.
        read_concern: ReadConcern,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<DistinctOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> Collection<T> {
    /// The distinct values of `field_name` among the documents matching `filter`.
    pub fn distinct(&self, field_name: impl AsRef<str>, filter: Document) -> Distinct<'_, T> {
        Distinct {
            coll: self,
            field: field_name.as_ref().to_string(),
            filter,
            options: DistinctOptions::default(),
        }
    }
}

impl DistinctOptions {
    fn to_command_fields(&self, handle_rc: Option<&ReadConcern>) -> Document {
        let mut d = Document::new();
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
        if let Some(rc) = read_concern_document(self.read_concern.as_ref(), handle_rc) {
            d.insert("readConcern", rc);
        }
        d
    }
}

impl<'a, T: Send + Sync> IntoFuture for Distinct<'a, T> {
    type Output = Result<Vec<Bson>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let op = DistinctOp {
                db: coll.db.name().to_string(),
                collection: coll.name.clone(),
                key: self.field,
                query: self.filter,
                options: self.options.to_command_fields(coll.read_concern.as_ref()),
                read_preference: self
                    .options
                    .read_preference
                    .clone()
                    .or_else(|| coll.read_preference.clone()),
            };
            coll.db.client().execute(op).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn distinct_options_become_command_fields() {
        let opts = DistinctOptions {
            hint: Some(Bson::Document(doc! { "a": 1 })),
            comment: Some(Bson::from("c")),
            max_time: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        assert_eq!(
            opts.to_command_fields(None),
            doc! { "comment": "c", "hint": { "a": 1 }, "maxTimeMS": 10i64 }
        );
    }
}
