//! `find_one_and_update`, `find_one_and_replace` and `find_one_and_delete`, through the
//! `findAndModify` command. Each returns the document before (default) or after the change, or
//! `None` when nothing matched (and nothing was upserted).

use std::borrow::Borrow;
use std::future::IntoFuture;
use std::time::Duration;

use bson::{Bson, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{option_setters, write_concern_document, Collection};
use crate::error::{Error, Result};
use crate::operation::{replacement_document, FindAndModify, Modification, UpdateModifications};
use crate::options::WriteConcern;
use crate::rt::BoxFuture;

/// Which version of the document `find_one_and_update` / `find_one_and_replace` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReturnDocument {
    /// The document as it was before the change (the default).
    #[default]
    Before,
    /// The document as it is after the change (or the upserted one).
    After,
}

/// Options of `find_one_and_update`.
#[derive(Clone, Debug, Default)]
pub struct FindOneAndUpdateOptions {
    pub array_filters: Option<Vec<Document>>,
    pub bypass_document_validation: Option<bool>,
    pub max_time: Option<Duration>,
    /// Which fields of the returned document to return.
    pub projection: Option<Document>,
    pub return_document: Option<ReturnDocument>,
    /// Which matching document to update: the first in this order.
    pub sort: Option<Document>,
    pub upsert: Option<bool>,
    pub collation: Option<Document>,
    /// An index to use: its name (string) or key pattern (document).
    pub hint: Option<Bson>,
    pub write_concern: Option<WriteConcern>,
    pub let_vars: Option<Document>,
    pub comment: Option<Bson>,
}

/// Options of `find_one_and_replace`.
#[derive(Clone, Debug, Default)]
pub struct FindOneAndReplaceOptions {
    pub bypass_document_validation: Option<bool>,
    pub max_time: Option<Duration>,
    pub projection: Option<Document>,
    pub return_document: Option<ReturnDocument>,
    pub sort: Option<Document>,
    pub upsert: Option<bool>,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
    pub write_concern: Option<WriteConcern>,
    pub let_vars: Option<Document>,
    pub comment: Option<Bson>,
}

/// Options of `find_one_and_delete`.
#[derive(Clone, Debug, Default)]
pub struct FindOneAndDeleteOptions {
    pub max_time: Option<Duration>,
    pub projection: Option<Document>,
    pub sort: Option<Document>,
    pub write_concern: Option<WriteConcern>,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
    pub let_vars: Option<Document>,
    pub comment: Option<Bson>,
}

/// All findAndModify options in one place, turned into command fields.
#[derive(Default)]
struct Fields<'o> {
    array_filters: Option<&'o Vec<Document>>,
    bypass_document_validation: Option<bool>,
    max_time: Option<Duration>,
    projection: Option<&'o Document>,
    return_document: Option<ReturnDocument>,
    sort: Option<&'o Document>,
    upsert: Option<bool>,
    collation: Option<&'o Document>,
    hint: Option<&'o Bson>,
    write_concern: Option<&'o WriteConcern>,
    let_vars: Option<&'o Document>,
    comment: Option<&'o Bson>,
}

impl Fields<'_> {
    fn to_document(&self) -> Result<Document> {
        let mut d = Document::new();
        if let Some(v) = self.sort {
            d.insert("sort", v.clone());
        }
        if let Some(v) = self.projection {
            d.insert("fields", v.clone());
        }
        if let Some(v) = self.return_document {
            d.insert("new", v == ReturnDocument::After);
        }
        if let Some(v) = self.upsert {
            d.insert("upsert", v);
        }
        if let Some(v) = self.array_filters {
            d.insert("arrayFilters", v.clone());
        }
        if let Some(v) = self.bypass_document_validation {
            d.insert("bypassDocumentValidation", v);
        }
        if let Some(v) = self.collation {
            d.insert("collation", v.clone());
        }
        if let Some(v) = self.hint {
            d.insert("hint", v.clone());
        }
        if let Some(v) = self.max_time {
            let ms = i64::try_from(v.as_millis())
                .map_err(|_| Error::invalid_argument("max_time is too large"))?;
            d.insert("maxTimeMS", ms);
        }
        if let Some(wc) = write_concern_document(self.write_concern) {
            d.insert("writeConcern", wc);
        }
        if let Some(v) = self.comment {
            d.insert("comment", v.clone());
        }
        if let Some(v) = self.let_vars {
            d.insert("let", v.clone());
        }
        Ok(d)
    }
}

impl FindOneAndUpdateOptions {
    fn fields(&self) -> Fields<'_> {
        Fields {
            array_filters: self.array_filters.as_ref(),
            bypass_document_validation: self.bypass_document_validation,
            max_time: self.max_time,
            projection: self.projection.as_ref(),
            return_document: self.return_document,
            sort: self.sort.as_ref(),
            upsert: self.upsert,
            collation: self.collation.as_ref(),
            hint: self.hint.as_ref(),
            write_concern: self.write_concern.as_ref(),
            let_vars: self.let_vars.as_ref(),
            comment: self.comment.as_ref(),
        }
    }
}

impl FindOneAndReplaceOptions {
    fn fields(&self) -> Fields<'_> {
        Fields {
            bypass_document_validation: self.bypass_document_validation,
            max_time: self.max_time,
            projection: self.projection.as_ref(),
            return_document: self.return_document,
            sort: self.sort.as_ref(),
            upsert: self.upsert,
            collation: self.collation.as_ref(),
            hint: self.hint.as_ref(),
            write_concern: self.write_concern.as_ref(),
            let_vars: self.let_vars.as_ref(),
            comment: self.comment.as_ref(),
            ..Default::default()
        }
    }
}

impl FindOneAndDeleteOptions {
    fn fields(&self) -> Fields<'_> {
        Fields {
            max_time: self.max_time,
            projection: self.projection.as_ref(),
            sort: self.sort.as_ref(),
            collation: self.collation.as_ref(),
            hint: self.hint.as_ref(),
            write_concern: self.write_concern.as_ref(),
            let_vars: self.let_vars.as_ref(),
            comment: self.comment.as_ref(),
            ..Default::default()
        }
    }
}

/// Runs a findAndModify and deserializes what it returns.
async fn run<T: DeserializeOwned>(
    coll: &Collection<T>,
    query: Document,
    modification: Modification,
    mut fields: Fields<'_>,
) -> Result<Option<T>> {
    if fields.write_concern.is_none() {
        fields.write_concern = coll.write_concern.as_ref();
    }
    let op = FindAndModify {
        db: coll.db.name().to_string(),
        collection: coll.name.clone(),
        query,
        modification,
        options: fields.to_document()?,
        unacknowledged: fields.write_concern.is_some_and(|wc| !wc.is_acknowledged()),
    };
    match coll.db.client().execute(op).await? {
        Some(raw) => Ok(Some(crate::wire::raw::deserialize(raw.as_bytes())?)),
        None => Ok(None),
    }
}

/// The action of [`Collection::find_one_and_update`].
#[must_use = "actions do nothing unless awaited"]
pub struct FindOneAndUpdate<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    update: UpdateModifications,
    options: FindOneAndUpdateOptions,
}

/// The action of [`Collection::find_one_and_replace`].
#[must_use = "actions do nothing unless awaited"]
pub struct FindOneAndReplace<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    replacement: Result<Document>,
    options: FindOneAndReplaceOptions,
}

/// The action of [`Collection::find_one_and_delete`].
#[must_use = "actions do nothing unless awaited"]
pub struct FindOneAndDelete<'a, T> {
    coll: &'a Collection<T>,
    filter: Document,
    options: FindOneAndDeleteOptions,
}

macro_rules! debug_action {
    ($name:ident) => {
        impl<T> std::fmt::Debug for $name<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("filter", &self.filter)
                    .field("options", &self.options)
                    .finish_non_exhaustive()
            }
        }
    };
}
debug_action!(FindOneAndUpdate);
debug_action!(FindOneAndReplace);
debug_action!(FindOneAndDelete);

impl<T> FindOneAndUpdate<'_, T> {
    option_setters! {
        /// Which array elements `$[<identifier>]` updates.
        array_filters: Vec<Document>,
        /// Skip document validation.
        bypass_document_validation: bool,
        /// A server-side time limit.
        max_time: Duration,
        /// Which fields of the returned document to return.
        projection: Document,
        /// Return the document before (default) or after the update.
        return_document: ReturnDocument,
        /// Update the first matching document in this order.
        sort: Document,
        /// Insert a document when nothing matches.
        upsert: bool,
        /// String comparison rules.
        collation: Document,
        /// An index to use: its name or key pattern.
        hint: Bson,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// Variables for `$expr` and pipelines.
        let_vars: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<FindOneAndUpdateOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> FindOneAndReplace<'_, T> {
    option_setters! {
        /// Skip document validation.
        bypass_document_validation: bool,
        /// A server-side time limit.
        max_time: Duration,
        /// Which fields of the returned document to return.
        projection: Document,
        /// Return the document before (default) or after the replacement.
        return_document: ReturnDocument,
        /// Replace the first matching document in this order.
        sort: Document,
        /// Insert the replacement when nothing matches.
        upsert: bool,
        /// String comparison rules.
        collation: Document,
        /// An index to use: its name or key pattern.
        hint: Bson,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// Variables for `$expr`.
        let_vars: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<FindOneAndReplaceOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> FindOneAndDelete<'_, T> {
    option_setters! {
        /// A server-side time limit.
        max_time: Duration,
        /// Which fields of the returned document to return.
        projection: Document,
        /// Delete the first matching document in this order.
        sort: Document,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// String comparison rules.
        collation: Document,
        /// An index to use: its name or key pattern.
        hint: Bson,
        /// Variables for `$expr`.
        let_vars: Document,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<FindOneAndDeleteOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T: DeserializeOwned + Send + Sync> Collection<T> {
    /// Atomically finds a document matching `filter`, updates it (update document or
    /// pipeline), and returns it as it was before (default) or after.
    pub fn find_one_and_update(
        &self,
        filter: Document,
        update: impl Into<UpdateModifications>,
    ) -> FindOneAndUpdate<'_, T> {
        FindOneAndUpdate {
            coll: self,
            filter,
            update: update.into(),
            options: FindOneAndUpdateOptions::default(),
        }
    }

    /// Atomically finds a document matching `filter`, deletes it, and returns it.
    pub fn find_one_and_delete(&self, filter: Document) -> FindOneAndDelete<'_, T> {
        FindOneAndDelete {
            coll: self,
            filter,
            options: FindOneAndDeleteOptions::default(),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync> Collection<T> {
    /// Atomically finds a document matching `filter`, replaces it, and returns it as it was
    /// before (default) or after.
    pub fn find_one_and_replace(
        &self,
        filter: Document,
        replacement: impl Borrow<T>,
    ) -> FindOneAndReplace<'_, T> {
        FindOneAndReplace {
            coll: self,
            filter,
            replacement: replacement_document(replacement.borrow()),
            options: FindOneAndReplaceOptions::default(),
        }
    }
}

impl<'a, T: DeserializeOwned + Send + Sync> IntoFuture for FindOneAndUpdate<'a, T> {
    type Output = Result<Option<T>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let modification = Modification::Update(self.update);
            run(self.coll, self.filter, modification, self.options.fields()).await
        })
    }
}

impl<'a, T: DeserializeOwned + Send + Sync> IntoFuture for FindOneAndReplace<'a, T> {
    type Output = Result<Option<T>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let modification = Modification::Replace(self.replacement?);
            run(self.coll, self.filter, modification, self.options.fields()).await
        })
    }
}

impl<'a, T: DeserializeOwned + Send + Sync> IntoFuture for FindOneAndDelete<'a, T> {
    type Output = Result<Option<T>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            run(
                self.coll,
                self.filter,
                Modification::Delete,
                self.options.fields(),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Acknowledgment;
    use bson::doc;

    #[test]
    fn update_options_become_find_and_modify_fields() {
        let options = FindOneAndUpdateOptions {
            array_filters: Some(vec![doc! { "e.x": 1 }]),
            bypass_document_validation: Some(true),
            max_time: Some(Duration::from_millis(1500)),
            projection: Some(doc! { "_id": 0 }),
            return_document: Some(ReturnDocument::After),
            sort: Some(doc! { "a": -1 }),
            upsert: Some(true),
            collation: Some(doc! { "locale": "en" }),
            hint: Some(Bson::String("a_1".into())),
            write_concern: Some(WriteConcern {
                w: Some(Acknowledgment::Majority),
                ..Default::default()
            }),
            let_vars: Some(doc! { "v": 1 }),
            comment: Some(Bson::String("c".into())),
        };
        assert_eq!(
            options.fields().to_document().unwrap(),
            doc! {
                "sort": { "a": -1 }, "fields": { "_id": 0 }, "new": true, "upsert": true,
                "arrayFilters": [{ "e.x": 1 }], "bypassDocumentValidation": true,
                "collation": { "locale": "en" }, "hint": "a_1", "maxTimeMS": 1500i64,
                "writeConcern": { "w": "majority" }, "comment": "c", "let": { "v": 1 },
            }
        );
    }

    #[test]
    fn before_is_new_false_and_defaults_send_nothing() {
        let options = FindOneAndReplaceOptions {
            return_document: Some(ReturnDocument::Before),
            ..Default::default()
        };
        assert_eq!(
            options.fields().to_document().unwrap(),
            doc! { "new": false }
        );
        assert!(FindOneAndDeleteOptions::default()
            .fields()
            .to_document()
            .unwrap()
            .is_empty());
        let delete = FindOneAndDeleteOptions {
            sort: Some(doc! { "n": 1 }),
            projection: Some(doc! { "n": 1 }),
            ..Default::default()
        };
        assert_eq!(
            delete.fields().to_document().unwrap(),
            doc! { "sort": { "n": 1 }, "fields": { "n": 1 } }
        );
    }
}
