//! A typed collection handle and its CRUD actions. Each method returns an action: set options
//! with builder methods, then `.await` it, as in the official driver. One file per family of
//! actions.

mod aggregate;
mod bulk_write;
mod count;
mod delete;
mod distinct;
mod find;
mod find_and_modify;
mod index;
mod insert;
mod update;

pub use aggregate::{Aggregate, AggregateOptions};
pub use bulk_write::{
    CollectionBulkWrite, CollectionBulkWriteOptions, CollectionBulkWriteResult,
    CollectionWriteModel, DeleteModel, ReplaceModel, UpdateModel,
};
pub use count::{
    CountDocuments, CountOptions, EstimatedDocumentCount, EstimatedDocumentCountOptions,
};
pub use delete::{Delete, DeleteOptions, DeleteResult};
pub use distinct::{Distinct, DistinctOptions};
pub use find::{CursorType, Find, FindOne, FindOptions};
pub use find_and_modify::{
    FindOneAndDelete, FindOneAndDeleteOptions, FindOneAndReplace, FindOneAndReplaceOptions,
    FindOneAndUpdate, FindOneAndUpdateOptions, ReturnDocument,
};
pub use index::{
    CreateIndex, CreateIndexOptions, CreateIndexResult, CreateIndexes, CreateIndexesResult,
    DropIndex, DropIndexOptions, IndexModel, IndexModelBuilder, IndexOptions, IndexOptionsBuilder,
    IndexVersion, ListIndexNames, ListIndexes, ListIndexesOptions,
};
pub use insert::{InsertMany, InsertManyResult, InsertOne, InsertOneResult, InsertOptions};
pub use update::{Replace, ReplaceOptions, Update, UpdateOptions, UpdateResult};

use std::marker::PhantomData;

use bson::{doc, oid::ObjectId, Bson, Document, RawDocumentBuf};
use serde::Serialize;

use super::database::HandleOptions;
use super::Database;
use crate::error::{Error, Result};
use crate::options::{ReadConcern, ReadPreference, WriteConcern};

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

/// The bytes of an `_id: ObjectId` element: type, `_id\0`, 12 bytes.
const ID_ELEMENT_LEN: usize = 1 + 4 + 12;

/// Serializes `doc` to raw BSON and makes sure it has an `_id` (generated first if missing).
/// Returns the document and its `_id`.
pub(crate) fn with_id<T: Serialize>(doc: &T) -> Result<(RawDocumentBuf, Bson)> {
    let raw = bson::serialize_to_raw_document_buf(doc)?;
    if !certainly_lacks_top_level_id(raw.as_bytes()) {
        if let Some(id) = raw
            .get("_id")
            .map_err(|e| Error::invalid_argument(e.to_string()))?
        {
            let id = Bson::try_from(id).map_err(|e| Error::invalid_argument(e.to_string()))?;
            return Ok((raw, id));
        }
    }
    // `_id` goes first: a new length, the `_id` element, then the serialized elements and
    // terminator as they are (one copy, no re-parsing of the elements).
    let oid = ObjectId::new();
    let bytes = raw.as_bytes();
    let elements = bytes.get(4..).unwrap_or_default();
    let len = i32::try_from(bytes.len() + ID_ELEMENT_LEN)
        .map_err(|_| Error::invalid_argument("document larger than 2 GiB"))?;
    let mut out = Vec::with_capacity(bytes.len() + ID_ELEMENT_LEN);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(0x07);
    out.extend_from_slice(b"_id\0");
    out.extend_from_slice(&oid.bytes());
    out.extend_from_slice(elements);
    let with =
        RawDocumentBuf::from_bytes(out).map_err(|e| Error::invalid_argument(e.to_string()))?;
    Ok((with, Bson::ObjectId(oid)))
}

/// Whether the BSON document `b` certainly has no top-level `_id`: its elements are walked by
/// their lengths alone, without decoding keys or values. `false` means "has one, or not
/// certain" (the caller then reads it the general way).
fn certainly_lacks_top_level_id(b: &[u8]) -> bool {
    fn cstring_len(b: &[u8], from: usize, end: usize) -> Option<usize> {
        b.get(from..end)?.iter().position(|&c| c == 0)
    }
    let scan = || -> Option<bool> {
        if usize::try_from(crate::wire::read_i32(b, 0)?).ok()? != b.len() || b.last() != Some(&0) {
            return None;
        }
        let end = b.len() - 1;
        let mut pos = 4;
        while pos < end {
            let kind = *b.get(pos)?;
            let key_len = cstring_len(b, pos + 1, end)?;
            if b.get(pos + 1..pos + 1 + key_len)? == b"_id" {
                return Some(false);
            }
            let value = pos + 1 + key_len + 1;
            let size = crate::wire::element_value_len(b, kind, value)?;
            pos = value.checked_add(size)?;
        }
        (pos == end).then_some(true)
    };
    scan() == Some(true)
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
        d.insert("wtimeout", crate::operation::millis(t));
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
pub(crate) use option_setters;

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
            Err(e) if e.is_namespace_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn with_id_puts_a_generated_id_first_and_keeps_the_rest() {
        let (raw, id) = with_id(&doc! { "a": 1, "b": { "c": "d" } }).unwrap();
        let back = Document::try_from(raw.as_ref()).unwrap();
        assert!(matches!(id, Bson::ObjectId(_)));
        assert_eq!(back, doc! { "_id": id, "a": 1, "b": { "c": "d" } });
        let (raw, id) = with_id(&Document::new()).unwrap();
        assert_eq!(
            Document::try_from(raw.as_ref()).unwrap(),
            doc! { "_id": id }
        );
    }

    #[test]
    fn the_quick_id_scan_never_misses_an_id() {
        let docs = [
            doc! {},
            doc! { "a": 1 },
            doc! { "_id": 1 },
            doc! { "a": "x", "b": { "_id": 2 }, "c": [{ "_id": 3 }] },
            doc! { "a": 1.5, "t": bson::Timestamp { time: 1, increment: 2 }, "_id": "late" },
            doc! { "_i": 1, "_idx": 2, "id": 3, "r": bson::Regex { pattern: "a".try_into().unwrap(), options: "i".try_into().unwrap() } },
            doc! { "bin": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0, 1] }, "n": null, "d": bson::DateTime::from_millis(5), "l": 7i64 },
        ];
        for d in docs {
            let raw = RawDocumentBuf::try_from(&d).unwrap();
            let has_id = d.contains_key("_id");
            assert_eq!(certainly_lacks_top_level_id(raw.as_bytes()), !has_id, "{d}");
            // Never a panic, and never "no _id" where the general read finds one.
            let bytes = raw.as_bytes().to_vec();
            for i in 0..bytes.len() {
                for v in [0u8, 1, 0x5F, 0x7F, 0xFF] {
                    let mut bad = bytes.clone();
                    bad[i] = v;
                    if certainly_lacks_top_level_id(&bad) {
                        if let Ok(doc) = bson::RawDocument::from_bytes(&bad) {
                            assert!(
                                !matches!(doc.get("_id"), Ok(Some(_))),
                                "{d}: byte {i} = {v}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn with_id_keeps_an_existing_id() {
        let (raw, id) = with_id(&doc! { "x": 1, "_id": 7 }).unwrap();
        assert_eq!(id, Bson::Int32(7));
        assert_eq!(
            Document::try_from(raw.as_ref()).unwrap(),
            doc! { "x": 1, "_id": 7 }
        );
    }
}
