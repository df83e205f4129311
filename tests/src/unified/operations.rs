//! Maps each unified-format operation to the anymongo API and turns its result into BSON for
//! matching. An operation the driver does not offer yet is a skip with the reason "operation X
//! not implemented by the driver".

use anymongo_core::bson::{doc, Bson, Document};
use anymongo_core::client::{
    AggregateOptions, CollectionBulkWriteOptions, CollectionBulkWriteResult, CollectionWriteModel,
    CountOptions, CreateCollectionOptions, DeleteModel, DeleteOptions, DeleteResult,
    DistinctOptions, EstimatedDocumentCountOptions, FindOneAndDeleteOptions,
    FindOneAndReplaceOptions, FindOneAndUpdateOptions, FindOptions, IndexModel, IndexOptions,
    ReplaceModel, ReplaceOptions, ReturnDocument, UpdateModel, UpdateOptions, UpdateResult,
};
use anymongo_core::error::{ErrorKind, WriteFailure};
use anymongo_core::operation::UpdateModifications;
use anymongo_core::{Collection, Database, Error};

use super::entities::{Entities, Entity};
use super::Flow;

/// Operations this runner can run on the driver (the others are skipped).
const IMPLEMENTED: &[&str] = &[
    "insertOne",
    "insertMany",
    "find",
    "findOne",
    "updateOne",
    "updateMany",
    "replaceOne",
    "deleteOne",
    "deleteMany",
    "findOneAndUpdate",
    "findOneAndReplace",
    "findOneAndDelete",
    "bulkWrite",
    "aggregate",
    "countDocuments",
    "estimatedDocumentCount",
    "distinct",
    "createIndex",
    "createCollection",
    "dropCollection",
    "runCommand",
    "failPoint",
];

/// Whether operation `name` is implemented.
pub fn implemented(name: &str) -> bool {
    IMPLEMENTED.contains(&name)
}

/// Whether an array result of operation `name` holds root-level documents (iterated results).
pub fn elements_are_root(name: &str) -> bool {
    matches!(
        name,
        "find"
            | "aggregate"
            | "listCollections"
            | "listDatabases"
            | "listIndexes"
            | "runCursorCommand"
    )
}

/// What an operation gave: a result (BSON; `Null` when it returns nothing) or a driver error.
#[derive(Debug)]
pub enum Outcome {
    /// The operation succeeded.
    Value(Bson),
    /// The operation failed.
    Error(Error),
}

/// The arguments of one operation.
struct Args<'a> {
    op: &'a str,
    d: &'a Document,
}

impl<'a> Args<'a> {
    /// Skips the test if an argument outside `allowed` is present.
    fn allow(&self, allowed: &[&str]) -> Result<(), Flow> {
        match self.d.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Flow::Skip(format!(
                "argument {k} of operation {} not supported by the driver",
                self.op
            ))),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Bson> {
        self.d.get(key)
    }

    fn doc(&self, key: &str) -> Result<Document, Flow> {
        self.opt_doc(key)?
            .ok_or_else(|| Flow::Fail(format!("{}: missing argument {key}", self.op)))
    }

    fn opt_doc(&self, key: &str) -> Result<Option<Document>, Flow> {
        match self.d.get(key) {
            None => Ok(None),
            Some(Bson::Document(d)) => Ok(Some(d.clone())),
            Some(other) => Err(Flow::Fail(format!(
                "{}: argument {key} is not a document: {other}",
                self.op
            ))),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, Flow> {
        match self.d.get(key) {
            None => Ok(None),
            Some(Bson::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(Flow::Fail(format!(
                "{}: argument {key} is not a boolean: {other}",
                self.op
            ))),
        }
    }

    fn opt_i64(&self, key: &str) -> Result<Option<i64>, Flow> {
        match self.d.get(key) {
            None => Ok(None),
            Some(Bson::Int32(i)) => Ok(Some(i64::from(*i))),
            Some(Bson::Int64(i)) => Ok(Some(*i)),
            Some(Bson::Double(f)) if f.fract() == 0.0 => Ok(Some(*f as i64)),
            Some(other) => Err(Flow::Fail(format!(
                "{}: argument {key} is not an integer: {other}",
                self.op
            ))),
        }
    }

    fn opt_docs(&self, key: &str) -> Result<Option<Vec<Document>>, Flow> {
        if self.d.contains_key(key) {
            self.docs(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An update document or pipeline.
    fn update(&self, key: &str) -> Result<UpdateModifications, Flow> {
        match self.d.get(key) {
            Some(Bson::Document(d)) => Ok(UpdateModifications::Document(d.clone())),
            Some(Bson::Array(_)) => Ok(UpdateModifications::Pipeline(self.docs(key)?)),
            other => Err(Flow::Fail(format!(
                "{}: {key} is neither a document nor a pipeline: {other:?}",
                self.op
            ))),
        }
    }

    fn return_document(&self) -> Result<Option<ReturnDocument>, Flow> {
        match self.d.get("returnDocument") {
            None => Ok(None),
            Some(Bson::String(s)) if s.eq_ignore_ascii_case("before") => {
                Ok(Some(ReturnDocument::Before))
            }
            Some(Bson::String(s)) if s.eq_ignore_ascii_case("after") => {
                Ok(Some(ReturnDocument::After))
            }
            Some(other) => Err(Flow::Fail(format!(
                "{}: bad returnDocument {other}",
                self.op
            ))),
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, Flow> {
        match self.opt_i64(key)? {
            None => Ok(None),
            Some(n) => u64::try_from(n)
                .map(Some)
                .map_err(|_| Flow::Fail(format!("{}: argument {key} is negative: {n}", self.op))),
        }
    }

    fn str(&self, key: &str) -> Result<&'a str, Flow> {
        self.d
            .get_str(key)
            .map_err(|_| Flow::Fail(format!("{}: missing string argument {key}", self.op)))
    }

    fn docs(&self, key: &str) -> Result<Vec<Document>, Flow> {
        let arr = self
            .d
            .get_array(key)
            .map_err(|_| Flow::Fail(format!("{}: missing array argument {key}", self.op)))?;
        arr.iter()
            .map(|v| match v {
                Bson::Document(d) => Ok(d.clone()),
                other => Err(Flow::Fail(format!(
                    "{}: {key} holds a non-document {other}",
                    self.op
                ))),
            })
            .collect()
    }
}

fn duration_ms(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Runs operation `op` (`name`, `object`, `arguments`) against the entities. `Err` means the test
/// cannot go on (skip or failure); a driver error is an `Ok(Outcome::Error)`.
pub async fn execute(op: &Document, entities: &Entities) -> Result<Outcome, Flow> {
    let name = op
        .get_str("name")
        .map_err(|_| Flow::Fail("operation without a name".into()))?;
    let object = op
        .get_str("object")
        .map_err(|_| Flow::Fail(format!("operation {name} without an object")))?;
    let empty = Document::new();
    let args = Args {
        op: name,
        d: op.get_document("arguments").unwrap_or(&empty),
    };
    if !implemented(name) {
        return Err(not_implemented(name));
    }
    if object == "testRunner" {
        return Err(Flow::Fail(format!(
            "test runner operation {name} reached the driver dispatcher"
        )));
    }
    match entities.get(object)? {
        Entity::Collection(coll) => collection_op(name, &args, coll).await,
        Entity::Database(db) => database_op(name, &args, db).await,
        Entity::Client(_) => Err(not_implemented(name)),
        Entity::Value(_) => Err(Flow::Fail(format!(
            "operation {name} on a value entity {object}"
        ))),
    }
}

fn not_implemented(name: &str) -> Flow {
    Flow::Skip(format!("operation {name} not implemented by the driver"))
}

fn result<T>(r: anymongo_core::Result<T>, f: impl FnOnce(T) -> Bson) -> Outcome {
    match r {
        Ok(v) => Outcome::Value(f(v)),
        Err(e) => Outcome::Error(e),
    }
}

async fn collection_op(
    name: &str,
    args: &Args<'_>,
    coll: &Collection<Document>,
) -> Result<Outcome, Flow> {
    match name {
        "insertOne" => {
            args.allow(&["document", "bypassDocumentValidation", "comment"])?;
            let mut action = coll.insert_one(args.doc("document")?);
            if let Some(b) = args.opt_bool("bypassDocumentValidation")? {
                action = action.bypass_document_validation(b);
            }
            if let Some(c) = args.get("comment") {
                action = action.comment(c.clone());
            }
            Ok(result(action.await, |r| {
                Bson::Document(doc! { "insertedId": r.inserted_id })
            }))
        }
        "insertMany" => {
            args.allow(&[
                "documents",
                "bypassDocumentValidation",
                "comment",
                "ordered",
            ])?;
            let docs = args.docs("documents")?;
            let mut action = coll.insert_many(docs);
            if let Some(b) = args.opt_bool("bypassDocumentValidation")? {
                action = action.bypass_document_validation(b);
            }
            if let Some(c) = args.get("comment") {
                action = action.comment(c.clone());
            }
            if let Some(o) = args.opt_bool("ordered")? {
                action = action.ordered(o);
            }
            Ok(result(action.await, |r| {
                let mut ids: Vec<_> = r.inserted_ids.into_iter().collect();
                ids.sort_by_key(|(i, _)| *i);
                Bson::Document(doc! { "insertedIds": indexed(ids) })
            }))
        }
        "find" => {
            args.allow(&[
                "filter",
                "sort",
                "projection",
                "skip",
                "limit",
                "batchSize",
                "hint",
                "collation",
                "comment",
                "maxTimeMS",
                "allowDiskUse",
                "let",
                "min",
                "max",
                "returnKey",
                "showRecordId",
                "noCursorTimeout",
                "allowPartialResults",
            ])?;
            let options = FindOptions {
                sort: args.opt_doc("sort")?,
                projection: args.opt_doc("projection")?,
                skip: args.opt_i64("skip")?.map(|s| u64::try_from(s).unwrap_or(0)),
                limit: args.opt_i64("limit")?,
                batch_size: args
                    .opt_i64("batchSize")?
                    .map(|b| u32::try_from(b).unwrap_or(0)),
                hint: args.get("hint").cloned(),
                collation: args.opt_doc("collation")?,
                comment: args.get("comment").cloned(),
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                allow_disk_use: args.opt_bool("allowDiskUse")?,
                let_vars: args.opt_doc("let")?,
                min: args.opt_doc("min")?,
                max: args.opt_doc("max")?,
                return_key: args.opt_bool("returnKey")?,
                show_record_id: args.opt_bool("showRecordId")?,
                no_cursor_timeout: args.opt_bool("noCursorTimeout")?,
                allow_partial_results: args.opt_bool("allowPartialResults")?,
                ..FindOptions::default()
            };
            let filter = args.opt_doc("filter")?.unwrap_or_default();
            let mut cursor = match coll.find(filter).with_options(options).await {
                Ok(c) => c,
                Err(e) => return Ok(Outcome::Error(e)),
            };
            let mut docs = Vec::new();
            while let Some(next) = cursor.next_document().await {
                match next {
                    Ok(d) => docs.push(Bson::Document(d)),
                    Err(e) => return Ok(Outcome::Error(e)),
                }
            }
            Ok(Outcome::Value(Bson::Array(docs)))
        }
        "findOne" => {
            args.allow(&[
                "filter",
                "sort",
                "projection",
                "skip",
                "comment",
                "maxTimeMS",
            ])?;
            let mut action = coll.find_one(args.opt_doc("filter")?.unwrap_or_default());
            if let Some(s) = args.opt_doc("sort")? {
                action = action.sort(s);
            }
            if let Some(p) = args.opt_doc("projection")? {
                action = action.projection(p);
            }
            if let Some(s) = args.opt_i64("skip")? {
                action = action.skip(u64::try_from(s).unwrap_or(0));
            }
            if let Some(c) = args.get("comment") {
                action = action.comment(c.clone());
            }
            if let Some(ms) = args.opt_i64("maxTimeMS")? {
                action = action.max_time(duration_ms(ms));
            }
            Ok(result(action.await, |d| {
                d.map(Bson::Document).unwrap_or(Bson::Null)
            }))
        }
        "updateOne" | "updateMany" => {
            args.allow(&[
                "filter",
                "update",
                "upsert",
                "arrayFilters",
                "collation",
                "hint",
                "let",
                "comment",
                "bypassDocumentValidation",
                "sort",
            ])?;
            let options = UpdateOptions {
                array_filters: args.opt_docs("arrayFilters")?,
                bypass_document_validation: args.opt_bool("bypassDocumentValidation")?,
                upsert: args.opt_bool("upsert")?,
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                let_vars: args.opt_doc("let")?,
                comment: args.get("comment").cloned(),
                sort: args.opt_doc("sort")?,
                ..UpdateOptions::default()
            };
            let filter = args.doc("filter")?;
            let update = args.update("update")?;
            let action = if name == "updateOne" {
                coll.update_one(filter, update)
            } else {
                coll.update_many(filter, update)
            };
            Ok(result(action.with_options(options).await, update_result))
        }
        "replaceOne" => {
            args.allow(&[
                "filter",
                "replacement",
                "upsert",
                "collation",
                "hint",
                "let",
                "comment",
                "bypassDocumentValidation",
                "sort",
            ])?;
            let options = ReplaceOptions {
                bypass_document_validation: args.opt_bool("bypassDocumentValidation")?,
                upsert: args.opt_bool("upsert")?,
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                let_vars: args.opt_doc("let")?,
                comment: args.get("comment").cloned(),
                sort: args.opt_doc("sort")?,
                ..ReplaceOptions::default()
            };
            let action = coll
                .replace_one(args.doc("filter")?, args.doc("replacement")?)
                .with_options(options);
            Ok(result(action.await, update_result))
        }
        "deleteOne" | "deleteMany" => {
            args.allow(&["filter", "collation", "hint", "let", "comment"])?;
            let options = DeleteOptions {
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                let_vars: args.opt_doc("let")?,
                comment: args.get("comment").cloned(),
                ..DeleteOptions::default()
            };
            let filter = args.doc("filter")?;
            let action = if name == "deleteOne" {
                coll.delete_one(filter)
            } else {
                coll.delete_many(filter)
            };
            Ok(result(
                action.with_options(options).await,
                |r: DeleteResult| Bson::Document(doc! { "deletedCount": r.deleted_count as i64 }),
            ))
        }
        "findOneAndUpdate" => {
            args.allow(&[
                "filter",
                "update",
                "arrayFilters",
                "bypassDocumentValidation",
                "maxTimeMS",
                "projection",
                "returnDocument",
                "sort",
                "upsert",
                "collation",
                "hint",
                "let",
                "comment",
            ])?;
            let options = FindOneAndUpdateOptions {
                array_filters: args.opt_docs("arrayFilters")?,
                bypass_document_validation: args.opt_bool("bypassDocumentValidation")?,
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                projection: args.opt_doc("projection")?,
                return_document: args.return_document()?,
                sort: args.opt_doc("sort")?,
                upsert: args.opt_bool("upsert")?,
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                let_vars: args.opt_doc("let")?,
                comment: args.get("comment").cloned(),
                ..FindOneAndUpdateOptions::default()
            };
            let action = coll
                .find_one_and_update(args.doc("filter")?, args.update("update")?)
                .with_options(options);
            Ok(result(action.await, optional_document))
        }
        "findOneAndReplace" => {
            args.allow(&[
                "filter",
                "replacement",
                "bypassDocumentValidation",
                "maxTimeMS",
                "projection",
                "returnDocument",
                "sort",
                "upsert",
                "collation",
                "hint",
                "let",
                "comment",
            ])?;
            let options = FindOneAndReplaceOptions {
                bypass_document_validation: args.opt_bool("bypassDocumentValidation")?,
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                projection: args.opt_doc("projection")?,
                return_document: args.return_document()?,
                sort: args.opt_doc("sort")?,
                upsert: args.opt_bool("upsert")?,
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                let_vars: args.opt_doc("let")?,
                comment: args.get("comment").cloned(),
                ..FindOneAndReplaceOptions::default()
            };
            let action = coll
                .find_one_and_replace(args.doc("filter")?, args.doc("replacement")?)
                .with_options(options);
            Ok(result(action.await, optional_document))
        }
        "findOneAndDelete" => {
            args.allow(&[
                "filter",
                "maxTimeMS",
                "projection",
                "sort",
                "collation",
                "hint",
                "let",
                "comment",
            ])?;
            let options = FindOneAndDeleteOptions {
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                projection: args.opt_doc("projection")?,
                sort: args.opt_doc("sort")?,
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                let_vars: args.opt_doc("let")?,
                comment: args.get("comment").cloned(),
                ..FindOneAndDeleteOptions::default()
            };
            let action = coll
                .find_one_and_delete(args.doc("filter")?)
                .with_options(options);
            Ok(result(action.await, optional_document))
        }
        "bulkWrite" => {
            args.allow(&[
                "requests",
                "ordered",
                "bypassDocumentValidation",
                "comment",
                "let",
            ])?;
            let models = args
                .docs("requests")?
                .iter()
                .map(write_model)
                .collect::<Result<Vec<_>, Flow>>()?;
            let options = CollectionBulkWriteOptions {
                ordered: args.opt_bool("ordered")?,
                bypass_document_validation: args.opt_bool("bypassDocumentValidation")?,
                comment: args.get("comment").cloned(),
                let_vars: args.opt_doc("let")?,
                ..CollectionBulkWriteOptions::default()
            };
            let action = coll.bulk_write(models).with_options(options);
            Ok(result(action.await, bulk_write_result))
        }
        "aggregate" => {
            let options = aggregate_options(args)?;
            let action = coll.aggregate(args.docs("pipeline")?).with_options(options);
            match action.await {
                Ok(cursor) => Ok(drain(cursor).await),
                Err(e) => Ok(Outcome::Error(e)),
            }
        }
        "countDocuments" => {
            args.allow(&[
                "filter",
                "collation",
                "hint",
                "limit",
                "maxTimeMS",
                "skip",
                "comment",
            ])?;
            let options = CountOptions {
                collation: args.opt_doc("collation")?,
                hint: args.get("hint").cloned(),
                limit: args.opt_u64("limit")?,
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                skip: args.opt_u64("skip")?,
                comment: args.get("comment").cloned(),
                ..CountOptions::default()
            };
            let action = coll
                .count_documents(args.opt_doc("filter")?.unwrap_or_default())
                .with_options(options);
            Ok(result(action.await, count))
        }
        "estimatedDocumentCount" => {
            args.allow(&["maxTimeMS", "comment"])?;
            let options = EstimatedDocumentCountOptions {
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                comment: args.get("comment").cloned(),
                ..EstimatedDocumentCountOptions::default()
            };
            let action = coll.estimated_document_count().with_options(options);
            Ok(result(action.await, count))
        }
        "distinct" => {
            args.allow(&[
                "fieldName",
                "filter",
                "maxTimeMS",
                "collation",
                "comment",
                "hint",
            ])?;
            let options = DistinctOptions {
                max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
                collation: args.opt_doc("collation")?,
                comment: args.get("comment").cloned(),
                hint: args.get("hint").cloned(),
                ..DistinctOptions::default()
            };
            let action = coll
                .distinct(
                    args.str("fieldName")?,
                    args.opt_doc("filter")?.unwrap_or_default(),
                )
                .with_options(options);
            Ok(result(action.await, Bson::Array))
        }
        "createIndex" => {
            args.allow(&[
                "keys",
                "name",
                "unique",
                "sparse",
                "hidden",
                "expireAfterSeconds",
            ])?;
            let options = IndexOptions {
                name: args.get("name").and_then(Bson::as_str).map(String::from),
                unique: args.opt_bool("unique")?,
                sparse: args.opt_bool("sparse")?,
                hidden: args.opt_bool("hidden")?,
                expire_after: args
                    .opt_u64("expireAfterSeconds")?
                    .map(std::time::Duration::from_secs),
                ..IndexOptions::default()
            };
            let model = IndexModel {
                keys: args.doc("keys")?,
                options: Some(options),
            };
            Ok(result(coll.create_index(model).await, |r| {
                Bson::String(r.index_name)
            }))
        }
        other => Err(not_implemented(other)),
    }
}

async fn database_op(name: &str, args: &Args<'_>, db: &Database) -> Result<Outcome, Flow> {
    match name {
        "dropCollection" => {
            args.allow(&["collection"])?;
            let coll = db.collection::<Document>(args.str("collection")?);
            Ok(result(coll.drop().await, |()| Bson::Null))
        }
        "aggregate" => {
            let options = aggregate_options(args)?;
            let action = db.aggregate(args.docs("pipeline")?).with_options(options);
            match action.await {
                Ok(cursor) => Ok(drain(cursor).await),
                Err(e) => Ok(Outcome::Error(e)),
            }
        }
        "createCollection" => {
            args.allow(&[
                "collection",
                "viewOn",
                "pipeline",
                "capped",
                "size",
                "max",
                "validator",
                "collation",
            ])?;
            let options = CreateCollectionOptions {
                view_on: args.get("viewOn").and_then(Bson::as_str).map(String::from),
                pipeline: args.opt_docs("pipeline")?,
                capped: args.opt_bool("capped")?,
                size: args.opt_u64("size")?,
                max: args.opt_u64("max")?,
                validator: args.opt_doc("validator")?,
                collation: args.opt_doc("collation")?,
                ..CreateCollectionOptions::default()
            };
            let action = db
                .create_collection(args.str("collection")?)
                .with_options(options);
            Ok(result(action.await, |()| Bson::Null))
        }
        "runCommand" => {
            args.allow(&["command", "commandName", "readPreference"])?;
            let mut action = db.run_command(args.doc("command")?);
            if let Some(rp) = args.opt_doc("readPreference")? {
                action = action.selection_criteria(super::entities::read_preference(&rp)?);
            }
            Ok(result(action.await, Bson::Document))
        }
        other => Err(not_implemented(other)),
    }
}

/// `{"0": v0, "1": v1, ...}` from `(index, value)` pairs.
fn indexed(pairs: impl IntoIterator<Item = (usize, Bson)>) -> Document {
    pairs.into_iter().map(|(i, v)| (i.to_string(), v)).collect()
}

fn count(n: u64) -> Bson {
    Bson::Int64(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Every document of a cursor, or the error that stopped it.
async fn drain(mut cursor: anymongo_core::Cursor<Document>) -> Outcome {
    let mut docs = Vec::new();
    while let Some(next) = cursor.next_document().await {
        match next {
            Ok(d) => docs.push(Bson::Document(d)),
            Err(e) => return Outcome::Error(e),
        }
    }
    Outcome::Value(Bson::Array(docs))
}

/// The options of `aggregate` (collection or database).
fn aggregate_options(args: &Args<'_>) -> Result<AggregateOptions, Flow> {
    args.allow(&[
        "pipeline",
        "allowDiskUse",
        "batchSize",
        "bypassDocumentValidation",
        "collation",
        "comment",
        "hint",
        "maxTimeMS",
        "maxAwaitTimeMS",
        "let",
    ])?;
    Ok(AggregateOptions {
        allow_disk_use: args.opt_bool("allowDiskUse")?,
        batch_size: args
            .opt_u64("batchSize")?
            .map(|b| u32::try_from(b).unwrap_or(u32::MAX)),
        bypass_document_validation: args.opt_bool("bypassDocumentValidation")?,
        collation: args.opt_doc("collation")?,
        comment: args.get("comment").cloned(),
        hint: args.get("hint").cloned(),
        max_time: args.opt_i64("maxTimeMS")?.map(duration_ms),
        max_await_time: args.opt_i64("maxAwaitTimeMS")?.map(duration_ms),
        let_vars: args.opt_doc("let")?,
        ..AggregateOptions::default()
    })
}

fn optional_document(d: Option<Document>) -> Bson {
    d.map(Bson::Document).unwrap_or(Bson::Null)
}

fn update_result(r: UpdateResult) -> Bson {
    let mut d = doc! {
        "matchedCount": r.matched_count as i64,
        "modifiedCount": r.modified_count as i64,
        "upsertedCount": i64::from(r.upserted_id.is_some()),
    };
    if let Some(id) = r.upserted_id {
        d.insert("upsertedId", id);
    }
    Bson::Document(d)
}

fn sorted(map: std::collections::HashMap<usize, Bson>) -> Document {
    let mut pairs: Vec<_> = map.into_iter().collect();
    pairs.sort_by_key(|(i, _)| *i);
    indexed(pairs)
}

fn bulk_write_result(r: CollectionBulkWriteResult) -> Bson {
    Bson::Document(doc! {
        "insertedCount": r.inserted_count as i64,
        "matchedCount": r.matched_count as i64,
        "modifiedCount": r.modified_count as i64,
        "deletedCount": r.deleted_count as i64,
        "upsertedCount": r.upserted_count as i64,
        "insertedIds": sorted(r.inserted_ids),
        "upsertedIds": sorted(r.upserted_ids),
    })
}

/// One `requests` item of `bulkWrite` as a write model.
fn write_model(request: &Document) -> Result<CollectionWriteModel<Document>, Flow> {
    let (kind, body) = request
        .iter()
        .next()
        .ok_or_else(|| Flow::Fail("empty bulkWrite request".into()))?;
    let body = body
        .as_document()
        .ok_or_else(|| Flow::Fail(format!("bulkWrite {kind} is not a document")))?;
    let op = format!("bulkWrite {kind}");
    let args = Args { op: &op, d: body };
    Ok(match kind.as_str() {
        "insertOne" => {
            args.allow(&["document"])?;
            CollectionWriteModel::InsertOne(args.doc("document")?)
        }
        "updateOne" | "updateMany" => {
            args.allow(&[
                "filter",
                "update",
                "upsert",
                "arrayFilters",
                "collation",
                "hint",
            ])?;
            let mut model = UpdateModel::new(args.doc("filter")?, args.update("update")?);
            model.upsert = args.opt_bool("upsert")?;
            model.array_filters = args.opt_docs("arrayFilters")?;
            model.collation = args.opt_doc("collation")?;
            model.hint = args.get("hint").cloned();
            if kind == "updateOne" {
                CollectionWriteModel::UpdateOne(model)
            } else {
                CollectionWriteModel::UpdateMany(model)
            }
        }
        "replaceOne" => {
            args.allow(&["filter", "replacement", "upsert", "collation", "hint"])?;
            let mut model = ReplaceModel::new(args.doc("filter")?, args.doc("replacement")?);
            model.upsert = args.opt_bool("upsert")?;
            model.collation = args.opt_doc("collation")?;
            model.hint = args.get("hint").cloned();
            CollectionWriteModel::ReplaceOne(model)
        }
        "deleteOne" | "deleteMany" => {
            args.allow(&["filter", "collation", "hint"])?;
            let mut model = DeleteModel::new(args.doc("filter")?);
            model.collation = args.opt_doc("collation")?;
            model.hint = args.get("hint").cloned();
            if kind == "deleteOne" {
                CollectionWriteModel::DeleteOne(model)
            } else {
                CollectionWriteModel::DeleteMany(model)
            }
        }
        other => return Err(Flow::Fail(format!("unknown bulkWrite request {other}"))),
    })
}

/// The partial result an error carries, as the operation's result would look (bulk writes).
pub fn partial_result(e: &Error) -> Option<Bson> {
    match e.kind() {
        ErrorKind::BulkWrite(b) => Some(Bson::Document(doc! {
            "insertedCount": b.inserted_ids.len() as i64,
            "insertedIds": indexed(b.inserted_ids.clone()),
            "matchedCount": b.matched_count as i64,
            "modifiedCount": b.modified_count as i64,
            "deletedCount": b.deleted_count as i64,
            "upsertedCount": b.upserted_ids.len() as i64,
            "upsertedIds": indexed(b.upserted_ids.clone()),
        })),
        _ => None,
    }
}

/// What the unified format asserts about an error, read from a driver error.
#[derive(Debug, Clone)]
pub struct ErrorView {
    /// Whether the error did not come from a server reply.
    pub is_client_error: bool,
    /// The message (case-insensitive `errorContains` checks it).
    pub message: String,
    /// The server's code.
    pub code: Option<i32>,
    /// The server's code name.
    pub code_name: Option<String>,
    /// The server's reply, as far as the error keeps it.
    pub response: Option<Document>,
}

impl ErrorView {
    /// Reads `e`.
    pub fn of(e: &Error) -> Self {
        let mut view = ErrorView {
            is_client_error: true,
            message: e.to_string(),
            code: None,
            code_name: None,
            response: None,
        };
        match e.kind() {
            ErrorKind::Command(c) => {
                view.is_client_error = false;
                view.code = Some(c.code);
                view.code_name = Some(c.code_name.clone());
                view.response = Some(doc! {
                    "ok": 0, "code": c.code, "codeName": c.code_name.clone(), "errmsg": c.message.clone()
                });
            }
            ErrorKind::Write(WriteFailure::WriteError(w)) => {
                view.is_client_error = false;
                view.code = Some(w.code);
                view.code_name = w.code_name.clone();
                let mut r = doc! { "code": w.code, "errmsg": w.message.clone() };
                if let Some(details) = &w.details {
                    r.insert("errInfo", details.clone());
                }
                view.response = Some(r);
            }
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
                view.is_client_error = false;
                view.code = Some(w.code);
                view.code_name = Some(w.code_name.clone());
                view.response = Some(doc! {
                    "code": w.code, "codeName": w.code_name.clone(), "errmsg": w.message.clone()
                });
            }
            ErrorKind::BulkWrite(b) => {
                view.is_client_error = false;
                if let Some(w) = b.write_errors.first() {
                    view.code = Some(w.code);
                    view.code_name = w.code_name.clone();
                } else if let Some(w) = &b.write_concern_error {
                    view.code = Some(w.code);
                    view.code_name = Some(w.code_name.clone());
                }
            }
            _ => {}
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anymongo_core::error::{BulkWriteFailure, CommandError, WriteError};

    #[test]
    fn unknown_arguments_skip() {
        let d = doc! { "filter": {}, "rawData": true };
        let args = Args { op: "find", d: &d };
        assert_eq!(
            args.allow(&["filter"]),
            Err(Flow::Skip(
                "argument rawData of operation find not supported by the driver".into()
            ))
        );
        assert_eq!(args.allow(&["filter", "rawData"]), Ok(()));
    }

    #[test]
    fn typed_arguments() {
        let d = doc! { "n": 3.0, "neg": -1, "b": "x", "u": [{ "$set": { "a": 1 } }] };
        let args = Args { op: "op", d: &d };
        assert_eq!(args.opt_i64("n"), Ok(Some(3)));
        assert!(matches!(args.opt_u64("neg"), Err(Flow::Fail(_))));
        assert!(matches!(args.opt_bool("b"), Err(Flow::Fail(_))));
        assert!(matches!(
            args.update("u"),
            Ok(UpdateModifications::Pipeline(p)) if p.len() == 1
        ));
        assert!(matches!(args.update("b"), Err(Flow::Fail(_))));
    }

    #[test]
    fn bulk_write_requests_become_models() {
        let m = write_model(
            &doc! { "updateMany": { "filter": {}, "update": { "$inc": { "x": 1 } }, "upsert": true } },
        );
        assert!(matches!(m, Ok(CollectionWriteModel::UpdateMany(u)) if u.upsert == Some(true)));
        let m = write_model(&doc! { "deleteOne": { "filter": { "_id": 1 }, "hint": "_id_" } });
        assert!(matches!(m, Ok(CollectionWriteModel::DeleteOne(d)) if d.hint.is_some()));
        let m = write_model(
            &doc! { "updateOne": { "filter": {}, "update": {}, "sort": { "_id": 1 } } },
        );
        assert!(matches!(m, Err(Flow::Skip(_))));
        assert!(matches!(
            write_model(&doc! { "upsertOne": {} }),
            Err(Flow::Fail(_))
        ));
    }

    #[test]
    fn results_as_documents() {
        let r = update_result(UpdateResult {
            matched_count: 0,
            modified_count: 0,
            upserted_id: Some(Bson::Int32(4)),
        });
        assert_eq!(
            r,
            Bson::Document(
                doc! { "matchedCount": 0_i64, "modifiedCount": 0_i64, "upsertedCount": 1_i64, "upsertedId": 4 }
            )
        );
        let r = update_result(UpdateResult::default());
        assert_eq!(
            r.as_document().map(|d| d.contains_key("upsertedId")),
            Some(false)
        );
    }

    #[test]
    fn error_views() {
        let e = Error::new(ErrorKind::Command(CommandError {
            code: 8,
            code_name: "UnknownError".into(),
            message: "boom".into(),
            topology_version: None,
        }));
        let v = ErrorView::of(&e);
        assert!(!v.is_client_error);
        assert_eq!(v.code, Some(8));
        assert_eq!(
            v.response.as_ref().and_then(|r| r.get_i32("code").ok()),
            Some(8)
        );
        let v = ErrorView::of(&Error::invalid_argument("bad"));
        assert!(v.is_client_error);
        assert_eq!(v.code, None);
        let mut failure = BulkWriteFailure::default();
        failure.write_errors.push(WriteError {
            index: 1,
            code: 11000,
            code_name: None,
            message: "dup".into(),
            details: None,
        });
        failure.inserted_ids.insert(0, Bson::Int32(1));
        let e = Error::new(ErrorKind::BulkWrite(failure));
        assert_eq!(ErrorView::of(&e).code, Some(11000));
        let partial = partial_result(&e).and_then(|p| p.as_document().cloned());
        assert_eq!(
            partial
                .as_ref()
                .and_then(|p| p.get_i64("insertedCount").ok()),
            Some(1)
        );
        assert_eq!(
            partial.and_then(|p| p.get_document("insertedIds").ok().cloned()),
            Some(doc! { "0": 1 })
        );
    }
}
