//! A collection-level bulk write over the classic `insert` / `update` / `delete` commands
//! ([`Collection::bulk_write`]), which works on every server version, and the helpers every
//! write action of this module shares (command options, running statements, turning write
//! errors into typed errors).
//!
//! The official driver's `Client::bulk_write` uses MongoDB 8.0's `bulkWrite` command; this one
//! groups models instead: an ordered bulk write sends each run of consecutive models of the same
//! kind as one command (in as many batches as the server's limits require) and stops at the
//! first write error; an unordered one sends all inserts, then all updates, then all deletes,
//! and reports every error. Indexes in results and errors are those of the input models.

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;

use bson::{Bson, Document, RawDocumentBuf};
use serde::Serialize;

use super::{option_setters, with_id, write_concern_document, Collection};
use crate::error::{
    BulkWriteFailure, Error, ErrorKind, Result, WriteConcernError, WriteError, WriteFailure,
};
use crate::operation::{
    replacement_document, DeleteStatement, UpdateBody, UpdateModifications, UpdateStatement,
    WriteCommand, WriteKind, WriteOutcome,
};
use crate::options::WriteConcern;
use crate::rt::BoxFuture;

/// The command-level fields of a write: `writeConcern`, `bypassDocumentValidation`, `comment`,
/// `let`.
pub(super) fn write_command_options(
    write_concern: Option<&WriteConcern>,
    bypass_document_validation: Option<bool>,
    comment: Option<&Bson>,
    let_vars: Option<&Document>,
) -> Document {
    let mut d = Document::new();
    if let Some(wc) = write_concern_document(write_concern) {
        d.insert("writeConcern", wc);
    }
    if let Some(b) = bypass_document_validation {
        d.insert("bypassDocumentValidation", b);
    }
    if let Some(c) = comment {
        d.insert("comment", c.clone());
    }
    if let Some(l) = let_vars {
        d.insert("let", l.clone());
    }
    d
}

/// Whether `wc` asks for unacknowledged (`w: 0`) writes.
pub(super) fn is_unacknowledged(wc: Option<&WriteConcern>) -> bool {
    wc.is_some_and(|wc| !wc.is_acknowledged())
}

/// Sends `statements` as one write command (in batches) and returns every batch's outcome.
pub(super) async fn run_statements<T>(
    coll: &Collection<T>,
    kind: WriteKind,
    statements: Vec<RawDocumentBuf>,
    ordered: bool,
    options: Document,
    unacknowledged: bool,
) -> Result<Vec<WriteOutcome>> {
    let mut op = WriteCommand::new(
        kind,
        coll.db.name(),
        coll.name.clone(),
        statements,
        ordered,
        options,
    );
    op.unacknowledged = unacknowledged;
    coll.db.client().execute_write(&mut op).await
}

/// What the batches of one or more write commands reported, with model indexes.
#[derive(Debug, Default)]
pub(super) struct Totals {
    /// `n` summed: inserted / matched + upserted / deleted.
    pub n: u64,
    pub n_modified: u64,
    pub upserted: BTreeMap<usize, Bson>,
    pub write_errors: Vec<WriteError>,
    pub write_concern_error: Option<WriteConcernError>,
}

impl Totals {
    /// Adds the outcomes of one command, whose statement `i` is model `index_of(i)`.
    pub fn add(&mut self, outcomes: &[WriteOutcome], index_of: impl Fn(usize) -> usize) {
        for outcome in outcomes {
            self.n += outcome.n.max(0) as u64;
            self.n_modified += outcome.n_modified.max(0) as u64;
            for (i, id) in &outcome.upserted {
                self.upserted.insert(index_of(*i), id.clone());
            }
            for w in &outcome.write_errors {
                let mut w = w.clone();
                w.index = index_of(w.index);
                self.write_errors.push(w);
            }
            if outcome.write_concern_error.is_some() {
                self.write_concern_error = outcome.write_concern_error.clone();
            }
        }
    }

    /// Whether anything failed.
    pub fn failed(&self) -> bool {
        !self.write_errors.is_empty() || self.write_concern_error.is_some()
    }

    /// The error of a one-document write (`ErrorKind::Write`), if it failed.
    pub fn single_error(&self) -> Option<Error> {
        let kind = if let Some(w) = self.write_errors.first() {
            WriteFailure::WriteError(w.clone())
        } else {
            WriteFailure::WriteConcernError(self.write_concern_error.clone()?)
        };
        Some(Error::new(ErrorKind::Write(kind)).with_labels(self.labels()))
    }

    /// The error labels of the write concern error, if any.
    pub fn labels(&self) -> Vec<String> {
        self.write_concern_error
            .as_ref()
            .map(|w| w.labels.clone())
            .unwrap_or_default()
    }
}

/// Builds an [`ErrorKind::BulkWrite`] error from a failure with its partial results.
pub(super) fn bulk_error(failure: BulkWriteFailure) -> Error {
    let labels = failure
        .write_concern_error
        .as_ref()
        .map(|w| w.labels.clone())
        .unwrap_or_default();
    Error::new(ErrorKind::BulkWrite(failure)).with_labels(labels)
}

/// Options that apply to a whole [`Collection::bulk_write`].
#[derive(Clone, Debug, Default)]
pub struct CollectionBulkWriteOptions {
    /// Stop at the first error (default true).
    pub ordered: Option<bool>,
    pub bypass_document_validation: Option<bool>,
    pub write_concern: Option<WriteConcern>,
    pub comment: Option<Bson>,
    /// Variables for the filters and pipelines of the updates and deletes.
    pub let_vars: Option<Document>,
}

/// Builder methods that set `self.<field> = Some(value)` on a model.
macro_rules! model_setters {
    ($($(#[$meta:meta])* $name:ident: $ty:ty),* $(,)?) => {$(
        $(#[$meta])*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$name = Some(value.into());
            self
        }
    )*};
}

/// The update of an `UpdateOne` / `UpdateMany` model.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateModel {
    pub filter: Document,
    pub update: UpdateModifications,
    pub upsert: Option<bool>,
    pub array_filters: Option<Vec<Document>>,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
}

impl UpdateModel {
    /// Applies `update` to documents matching `filter`.
    pub fn new(filter: Document, update: impl Into<UpdateModifications>) -> Self {
        UpdateModel {
            filter,
            update: update.into(),
            upsert: None,
            array_filters: None,
            collation: None,
            hint: None,
        }
    }

    model_setters! {
        /// Insert a document when nothing matches.
        upsert: bool,
        /// Which array elements `$[<id>]` updates.
        array_filters: Vec<Document>,
        /// String comparison rules.
        collation: Document,
        /// An index to use (name or key pattern).
        hint: Bson,
    }
}

/// The replacement of a `ReplaceOne` model.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaceModel<T> {
    pub filter: Document,
    pub replacement: T,
    pub upsert: Option<bool>,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
}

impl<T> ReplaceModel<T> {
    /// Replaces the first document matching `filter` with `replacement`.
    pub fn new(filter: Document, replacement: T) -> Self {
        ReplaceModel {
            filter,
            replacement,
            upsert: None,
            collation: None,
            hint: None,
        }
    }

    model_setters! {
        /// Insert the replacement when nothing matches.
        upsert: bool,
        /// String comparison rules.
        collation: Document,
        /// An index to use (name or key pattern).
        hint: Bson,
    }
}

/// The filter of a `DeleteOne` / `DeleteMany` model.
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteModel {
    pub filter: Document,
    pub collation: Option<Document>,
    pub hint: Option<Bson>,
}

impl DeleteModel {
    /// Deletes documents matching `filter`.
    pub fn new(filter: Document) -> Self {
        DeleteModel {
            filter,
            collation: None,
            hint: None,
        }
    }

    model_setters! {
        /// String comparison rules.
        collation: Document,
        /// An index to use (name or key pattern).
        hint: Bson,
    }
}

/// One write of a [`Collection::bulk_write`].
#[derive(Clone, Debug, PartialEq)]
pub enum CollectionWriteModel<T> {
    /// Insert a document (an `_id` is generated if it has none).
    InsertOne(T),
    /// Update the first matching document.
    UpdateOne(UpdateModel),
    /// Update every matching document.
    UpdateMany(UpdateModel),
    /// Replace the first matching document.
    ReplaceOne(ReplaceModel<T>),
    /// Delete the first matching document.
    DeleteOne(DeleteModel),
    /// Delete every matching document.
    DeleteMany(DeleteModel),
}

impl<T> CollectionWriteModel<T> {
    /// `InsertOne(document)`.
    pub fn insert_one(document: T) -> Self {
        CollectionWriteModel::InsertOne(document)
    }

    /// `UpdateOne` with no options.
    pub fn update_one(filter: Document, update: impl Into<UpdateModifications>) -> Self {
        CollectionWriteModel::UpdateOne(UpdateModel::new(filter, update))
    }

    /// `UpdateMany` with no options.
    pub fn update_many(filter: Document, update: impl Into<UpdateModifications>) -> Self {
        CollectionWriteModel::UpdateMany(UpdateModel::new(filter, update))
    }

    /// `ReplaceOne` with no options.
    pub fn replace_one(filter: Document, replacement: T) -> Self {
        CollectionWriteModel::ReplaceOne(ReplaceModel::new(filter, replacement))
    }

    /// `DeleteOne` with no options.
    pub fn delete_one(filter: Document) -> Self {
        CollectionWriteModel::DeleteOne(DeleteModel::new(filter))
    }

    /// `DeleteMany` with no options.
    pub fn delete_many(filter: Document) -> Self {
        CollectionWriteModel::DeleteMany(DeleteModel::new(filter))
    }

    fn kind(&self) -> WriteKind {
        match self {
            CollectionWriteModel::InsertOne(_) => WriteKind::Insert,
            CollectionWriteModel::UpdateOne(_)
            | CollectionWriteModel::UpdateMany(_)
            | CollectionWriteModel::ReplaceOne(_) => WriteKind::Update,
            CollectionWriteModel::DeleteOne(_) | CollectionWriteModel::DeleteMany(_) => {
                WriteKind::Delete
            }
        }
    }
}

/// What a [`Collection::bulk_write`] did. With `w: 0` the counts are 0 and only
/// `inserted_ids` is filled (from the `_id`s the driver sent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionBulkWriteResult {
    pub inserted_count: u64,
    /// Documents matched by updates and replacements (upserts not counted).
    pub matched_count: u64,
    pub modified_count: u64,
    pub deleted_count: u64,
    pub upserted_count: u64,
    /// `_id` of each inserted document, keyed by model index.
    pub inserted_ids: HashMap<usize, Bson>,
    /// `_id` of each upserted document, keyed by model index.
    pub upserted_ids: HashMap<usize, Bson>,
}

/// One statement ready to send, with its model index and (for inserts) its `_id`.
#[derive(Debug)]
struct Prepared {
    index: usize,
    kind: WriteKind,
    statement: RawDocumentBuf,
    inserted_id: Option<Bson>,
}

fn update_statement(m: UpdateModel, multi: bool) -> Result<RawDocumentBuf> {
    let mut s = UpdateStatement::new(m.filter, UpdateBody::Modifications(m.update), multi);
    s.upsert = m.upsert;
    s.array_filters = m.array_filters;
    s.collation = m.collation;
    s.hint = m.hint;
    s.to_raw()
}

fn delete_statement(m: DeleteModel, multi: bool) -> Result<RawDocumentBuf> {
    let mut s = DeleteStatement::new(m.filter, multi);
    s.collation = m.collation;
    s.hint = m.hint;
    s.to_raw()
}

/// Serializes and validates every model (before anything is sent). An invalid model is an
/// invalid argument naming its index.
fn prepare<T: Serialize>(models: Vec<CollectionWriteModel<T>>) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    for (index, model) in models.into_iter().enumerate() {
        let kind = model.kind();
        let built = match model {
            CollectionWriteModel::InsertOne(doc) => with_id(&doc).map(|(raw, id)| (raw, Some(id))),
            CollectionWriteModel::UpdateOne(m) => update_statement(m, false).map(|s| (s, None)),
            CollectionWriteModel::UpdateMany(m) => update_statement(m, true).map(|s| (s, None)),
            CollectionWriteModel::ReplaceOne(m) => replacement_document(&m.replacement)
                .and_then(|r| {
                    let mut s = UpdateStatement::new(m.filter, UpdateBody::Replacement(r), false);
                    s.upsert = m.upsert;
                    s.collation = m.collation;
                    s.hint = m.hint;
                    s.to_raw()
                })
                .map(|s| (s, None)),
            CollectionWriteModel::DeleteOne(m) => delete_statement(m, false).map(|s| (s, None)),
            CollectionWriteModel::DeleteMany(m) => delete_statement(m, true).map(|s| (s, None)),
        };
        let (statement, inserted_id) = built.map_err(|e| match e.kind() {
            ErrorKind::InvalidArgument { message } => {
                Error::invalid_argument(format!("write model {index}: {message}"))
            }
            _ => e,
        })?;
        prepared.push(Prepared {
            index,
            kind,
            statement,
            inserted_id,
        });
    }
    Ok(prepared)
}

/// Splits prepared statements into commands: runs of one kind (ordered) or one group per kind
/// in insert, update, delete order (unordered).
fn group(prepared: Vec<Prepared>, ordered: bool) -> Vec<Vec<Prepared>> {
    let mut groups: Vec<Vec<Prepared>> = Vec::new();
    if ordered {
        for p in prepared {
            match groups.last_mut() {
                Some(last) if last.first().map(|f| f.kind) == Some(p.kind) => last.push(p),
                _ => groups.push(vec![p]),
            }
        }
    } else {
        let mut by_kind: [Vec<Prepared>; 3] = Default::default();
        for p in prepared {
            let slot = match p.kind {
                WriteKind::Insert => 0,
                WriteKind::Update => 1,
                WriteKind::Delete => 2,
            };
            by_kind[slot].push(p);
        }
        groups.extend(by_kind.into_iter().filter(|g| !g.is_empty()));
    }
    groups
}

/// Adds one command's outcomes to the running result.
#[derive(Debug, Default)]
struct Accumulator {
    result: CollectionBulkWriteResult,
    write_errors: Vec<WriteError>,
    write_concern_error: Option<WriteConcernError>,
}

impl Accumulator {
    /// `ordered`: a batch stopped at its first write error, so later statements did not run.
    fn add(&mut self, group: &[Prepared], outcomes: &[WriteOutcome], ordered: bool) {
        let kind = group.first().map(|p| p.kind);
        let index_of = |i: usize| group.get(i).map(|p| p.index).unwrap_or(i);
        let mut totals = Totals::default();
        totals.add(outcomes, index_of);
        match kind {
            Some(WriteKind::Insert) => {
                self.result.inserted_count += totals.n;
                for outcome in outcomes {
                    let first_error = outcome.write_errors.iter().map(|w| w.index).min();
                    for i in outcome.range.clone() {
                        if outcome.write_errors.iter().any(|w| w.index == i) {
                            continue;
                        }
                        if ordered && first_error.is_some_and(|f| i > f) {
                            continue;
                        }
                        if let Some(p) = group.get(i) {
                            if let Some(id) = &p.inserted_id {
                                self.result.inserted_ids.insert(p.index, id.clone());
                            }
                        }
                    }
                }
            }
            Some(WriteKind::Update) => {
                let upserted = totals.upserted.len() as u64;
                self.result.matched_count += totals.n.saturating_sub(upserted);
                self.result.modified_count += totals.n_modified;
                self.result.upserted_count += upserted;
                self.result.upserted_ids.extend(totals.upserted.clone());
            }
            Some(WriteKind::Delete) => self.result.deleted_count += totals.n,
            None => {}
        }
        self.write_errors.extend(totals.write_errors);
        if totals.write_concern_error.is_some() {
            self.write_concern_error = totals.write_concern_error;
        }
    }

    fn finish(mut self) -> Result<CollectionBulkWriteResult> {
        if self.write_errors.is_empty() && self.write_concern_error.is_none() {
            return Ok(self.result);
        }
        self.write_errors.sort_by_key(|w| w.index);
        let r = self.result;
        Err(bulk_error(BulkWriteFailure {
            write_errors: self.write_errors,
            write_concern_error: self.write_concern_error,
            inserted_ids: r.inserted_ids.into_iter().collect(),
            matched_count: r.matched_count,
            modified_count: r.modified_count,
            deleted_count: r.deleted_count,
            upserted_ids: r.upserted_ids.into_iter().collect(),
        }))
    }
}

/// The action of [`Collection::bulk_write`].
#[must_use = "actions do nothing unless awaited"]
pub struct CollectionBulkWrite<'a, T> {
    coll: &'a Collection<T>,
    models: Vec<CollectionWriteModel<T>>,
    options: CollectionBulkWriteOptions,
}

impl<T> std::fmt::Debug for CollectionBulkWrite<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionBulkWrite")
            .field("models", &self.models.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> CollectionBulkWrite<'_, T> {
    option_setters! {
        /// Stop at the first error (the default) or try every model.
        ordered: bool,
        /// Skip document validation.
        bypass_document_validation: bool,
        /// The write concern of this write.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Variables for the filters and pipelines of updates and deletes.
        let_vars: Document,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<CollectionBulkWriteOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T: Serialize + Send + Sync> Collection<T> {
    /// Runs many inserts, updates, replacements and deletes of this collection with the classic
    /// write commands (every server version). Consecutive models of one kind (all models of a
    /// kind, when unordered) go as one command. A failure is an [`ErrorKind::BulkWrite`] error
    /// whose [`BulkWriteFailure`] holds the write errors, indexed by model, and the partial
    /// results.
    pub fn bulk_write<I>(&self, models: I) -> CollectionBulkWrite<'_, T>
    where
        I: IntoIterator,
        I::Item: Into<CollectionWriteModel<T>>,
    {
        CollectionBulkWrite {
            coll: self,
            models: models.into_iter().map(Into::into).collect(),
            options: CollectionBulkWriteOptions::default(),
        }
    }
}

impl<'a, T: Serialize + Send + Sync> IntoFuture for CollectionBulkWrite<'a, T> {
    type Output = Result<CollectionBulkWriteResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            if self.models.is_empty() {
                return Err(Error::invalid_argument(
                    "bulk_write requires at least one write model",
                ));
            }
            let ordered = self.options.ordered.unwrap_or(true);
            let prepared = prepare(self.models)?;
            let wc = self
                .options
                .write_concern
                .as_ref()
                .or(coll.write_concern.as_ref());
            let unacknowledged = is_unacknowledged(wc);
            let mut acc = Accumulator::default();
            for group in group(prepared, ordered) {
                let kind = match group.first() {
                    Some(p) => p.kind,
                    None => continue,
                };
                // `let` and `bypassDocumentValidation` only mean something to some commands.
                let options = write_command_options(
                    wc,
                    if kind == WriteKind::Delete {
                        None
                    } else {
                        self.options.bypass_document_validation
                    },
                    self.options.comment.as_ref(),
                    if kind == WriteKind::Insert {
                        None
                    } else {
                        self.options.let_vars.as_ref()
                    },
                );
                let statements = group.iter().map(|p| p.statement.clone()).collect();
                let outcomes =
                    run_statements(coll, kind, statements, ordered, options, unacknowledged)
                        .await?;
                if unacknowledged {
                    for p in &group {
                        if let Some(id) = &p.inserted_id {
                            acc.result.inserted_ids.insert(p.index, id.clone());
                        }
                    }
                    continue;
                }
                acc.add(&group, &outcomes, ordered);
                if ordered && !acc.write_errors.is_empty() {
                    break;
                }
            }
            acc.finish()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn models() -> Vec<CollectionWriteModel<Document>> {
        vec![
            CollectionWriteModel::insert_one(doc! { "_id": 1 }),
            CollectionWriteModel::insert_one(doc! { "_id": 2 }),
            CollectionWriteModel::update_one(doc! { "_id": 1 }, doc! { "$set": { "a": 1 } }),
            CollectionWriteModel::delete_one(doc! { "_id": 2 }),
            CollectionWriteModel::insert_one(doc! { "x": 3 }),
            CollectionWriteModel::UpdateMany(
                UpdateModel::new(doc! {}, vec![doc! { "$set": { "b": 1 } }]).upsert(true),
            ),
            CollectionWriteModel::replace_one(doc! { "_id": 9 }, doc! { "r": 1 }),
            CollectionWriteModel::delete_many(doc! {}),
        ]
    }

    fn indexes(groups: &[Vec<Prepared>]) -> Vec<Vec<usize>> {
        groups
            .iter()
            .map(|g| g.iter().map(|p| p.index).collect())
            .collect()
    }

    #[test]
    fn ordered_groups_consecutive_models_of_a_kind() {
        let groups = group(prepare(models()).unwrap(), true);
        assert_eq!(
            indexes(&groups),
            vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5, 6], vec![7]]
        );
        let stmt = |i: usize| {
            let p = groups.iter().flatten().find(|p| p.index == i).unwrap();
            Document::try_from(p.statement.as_ref()).unwrap()
        };
        assert_eq!(stmt(3), doc! { "q": { "_id": 2 }, "limit": 1 });
        assert_eq!(stmt(7), doc! { "q": {}, "limit": 0 });
        assert_eq!(
            stmt(5),
            doc! { "q": {}, "u": [{ "$set": { "b": 1 } }], "multi": true, "upsert": true }
        );
        assert_eq!(stmt(6), doc! { "q": { "_id": 9 }, "u": { "r": 1 } });
        // The insert without an `_id` got one, first.
        assert_eq!(stmt(4).keys().next().map(String::as_str), Some("_id"));
    }

    #[test]
    fn unordered_groups_all_models_of_a_kind() {
        let groups = group(prepare(models()).unwrap(), false);
        assert_eq!(
            indexes(&groups),
            vec![vec![0, 1, 4], vec![2, 5, 6], vec![3, 7]]
        );
    }

    #[test]
    fn invalid_models_are_rejected_with_their_index() {
        let bad: Vec<CollectionWriteModel<Document>> = vec![
            CollectionWriteModel::insert_one(doc! {}),
            CollectionWriteModel::update_one(doc! {}, doc! { "a": 1 }),
        ];
        let err = prepare(bad).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::InvalidArgument { .. }));
        assert!(err.to_string().contains("write model 1"), "{err}");
        let bad: Vec<CollectionWriteModel<Document>> = vec![CollectionWriteModel::replace_one(
            doc! {},
            doc! { "$set": { "a": 1 } },
        )];
        assert!(prepare(bad)
            .unwrap_err()
            .to_string()
            .contains("write model 0"));
    }

    fn write_error(index: usize) -> WriteError {
        WriteError {
            index,
            code: 11000,
            code_name: None,
            message: "E11000 duplicate key".into(),
            details: None,
        }
    }

    #[test]
    fn results_and_errors_use_model_indexes_across_batches() {
        let groups = group(prepare(models()).unwrap(), false);
        let mut acc = Accumulator::default();
        // Inserts (models 0, 1, 4) in two batches; statement 2 (model 4) is a duplicate.
        acc.add(
            &groups[0],
            &[
                WriteOutcome {
                    n: 2,
                    range: 0..2,
                    ..Default::default()
                },
                WriteOutcome {
                    n: 0,
                    range: 2..3,
                    write_errors: vec![write_error(2)],
                    ..Default::default()
                },
            ],
            false,
        );
        // Updates (models 2, 5, 6): statement 1 (model 5) upserted.
        acc.add(
            &groups[1],
            &[WriteOutcome {
                n: 3,
                n_modified: 1,
                upserted: vec![(1, Bson::Int32(42))],
                range: 0..3,
                ..Default::default()
            }],
            false,
        );
        acc.add(
            &groups[2],
            &[WriteOutcome {
                n: 4,
                range: 0..2,
                ..Default::default()
            }],
            false,
        );
        let err = acc.finish().unwrap_err();
        let ErrorKind::BulkWrite(f) = err.kind() else {
            panic!("{err:?}")
        };
        assert_eq!(f.write_errors.len(), 1);
        assert_eq!(f.write_errors[0].index, 4);
        assert_eq!(
            f.inserted_ids.keys().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(f.matched_count, 2);
        assert_eq!(f.modified_count, 1);
        assert_eq!(f.deleted_count, 4);
        assert_eq!(f.upserted_ids.get(&5), Some(&Bson::Int32(42)));
    }

    #[test]
    fn command_options() {
        let wc = WriteConcern {
            w: Some(crate::options::Acknowledgment::Nodes(0)),
            ..Default::default()
        };
        assert!(is_unacknowledged(Some(&wc)));
        assert!(!is_unacknowledged(None));
        assert_eq!(
            write_command_options(
                Some(&wc),
                Some(false),
                Some(&Bson::String("c".into())),
                Some(&doc! { "x": 1 }),
            ),
            doc! {
                "writeConcern": { "w": 0i64 }, "bypassDocumentValidation": false,
                "comment": "c", "let": { "x": 1 },
            }
        );
        assert!(write_command_options(None, None, None, None).is_empty());
    }

    #[test]
    fn ordered_inserts_after_the_first_error_did_not_run() {
        let models: Vec<CollectionWriteModel<Document>> = (0..4)
            .map(|i| CollectionWriteModel::insert_one(doc! { "_id": i }))
            .collect();
        let groups = group(prepare(models).unwrap(), true);
        let mut acc = Accumulator::default();
        acc.add(
            &groups[0],
            &[WriteOutcome {
                n: 1,
                range: 0..4,
                write_errors: vec![write_error(1)],
                ..Default::default()
            }],
            true,
        );
        let err = acc.finish().unwrap_err();
        let ErrorKind::BulkWrite(f) = err.kind() else {
            panic!("{err:?}")
        };
        assert_eq!(f.inserted_ids.keys().copied().collect::<Vec<_>>(), vec![0]);
        assert_eq!(f.write_errors[0].index, 1);
    }

    #[test]
    fn a_clean_run_is_a_result() {
        let groups = group(prepare(models()).unwrap(), true);
        let mut acc = Accumulator::default();
        acc.add(
            &groups[0],
            &[WriteOutcome {
                n: 2,
                range: 0..2,
                ..Default::default()
            }],
            false,
        );
        acc.add(
            &groups[1],
            &[WriteOutcome {
                n: 1,
                n_modified: 1,
                range: 0..1,
                ..Default::default()
            }],
            false,
        );
        let r = acc.finish().unwrap();
        assert_eq!(r.inserted_count, 2);
        assert_eq!(r.matched_count, 1);
        assert_eq!(r.modified_count, 1);
        assert_eq!(r.inserted_ids.get(&1), Some(&Bson::Int32(2)));
        assert!(r.upserted_ids.is_empty());
    }

    #[test]
    fn write_concern_errors_fail_the_bulk_write_with_labels() {
        let groups = group(prepare(models()).unwrap(), true);
        let mut acc = Accumulator::default();
        acc.add(
            &groups[0],
            &[WriteOutcome {
                n: 2,
                range: 0..2,
                write_concern_error: Some(WriteConcernError {
                    code: 64,
                    code_name: "WriteConcernFailed".into(),
                    message: "timed out".into(),
                    details: None,
                    labels: vec!["RetryableWriteError".into()],
                }),
                ..Default::default()
            }],
            false,
        );
        let err = acc.finish().unwrap_err();
        assert!(err.contains_label("RetryableWriteError"));
        let ErrorKind::BulkWrite(f) = err.kind() else {
            panic!("{err:?}")
        };
        assert!(f.write_errors.is_empty());
        assert_eq!(f.inserted_ids.len(), 2);
    }
}
