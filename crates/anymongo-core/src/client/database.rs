//! A database handle.

use std::future::IntoFuture;

use bson::{Document, RawDocumentBuf};

use super::Client;
use crate::error::Result;
use crate::operation::RunCommand;
use crate::options::{ReadConcern, ReadPreference, WriteConcern};
use crate::rt::BoxFuture;
use crate::wire::raw::to_document;

/// A handle to a database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    client: Client,
    name: String,
    pub(crate) read_preference: Option<ReadPreference>,
    pub(crate) read_concern: Option<ReadConcern>,
    pub(crate) write_concern: Option<WriteConcern>,
}

/// Settings a database or collection handle overrides (unset ones are inherited).
#[derive(Clone, Debug, Default)]
pub struct HandleOptions {
    pub read_preference: Option<ReadPreference>,
    pub read_concern: Option<ReadConcern>,
    pub write_concern: Option<WriteConcern>,
}

impl Database {
    pub(crate) fn new(client: Client, name: &str, options: HandleOptions) -> Self {
        let defaults = client.options();
        Database {
            name: name.to_string(),
            read_preference: options
                .read_preference
                .or_else(|| defaults.read_preference.clone()),
            read_concern: options
                .read_concern
                .or_else(|| defaults.read_concern.clone()),
            write_concern: options
                .write_concern
                .or_else(|| defaults.write_concern.clone()),
            client,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client this handle belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The read preference reads through this handle use.
    pub fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }

    /// The read concern reads through this handle use.
    pub fn read_concern(&self) -> Option<&ReadConcern> {
        self.read_concern.as_ref()
    }

    /// The write concern writes through this handle use.
    pub fn write_concern(&self) -> Option<&WriteConcern> {
        self.write_concern.as_ref()
    }

    /// A handle to collection `name` of type `T`.
    pub fn collection<T>(&self, name: &str) -> super::Collection<T> {
        super::Collection::new(self.clone(), name, HandleOptions::default())
    }

    /// A handle to collection `name` with overridden settings.
    pub fn collection_with_options<T>(
        &self,
        name: &str,
        options: HandleOptions,
    ) -> super::Collection<T> {
        super::Collection::new(self.clone(), name, options)
    }

    /// Runs a command against this database. Awaiting gives the reply document.
    pub fn run_command(&self, command: Document) -> RunCommandAction<'_> {
        RunCommandAction {
            db: self,
            command,
            read_preference: None,
        }
    }

    /// Runs a command, returning the reply as raw BSON (validated).
    pub async fn run_raw_command(&self, command: Document) -> Result<RawDocumentBuf> {
        let op = RunCommand::new(self.name.clone(), command, None)?;
        let reply = self.client.execute(op).await?;
        crate::wire::validate_document(reply.as_bytes())?;
        Ok(reply)
    }
}

/// The action of [`Database::run_command`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct RunCommandAction<'a> {
    db: &'a Database,
    command: Document,
    read_preference: Option<ReadPreference>,
}

impl RunCommandAction<'_> {
    /// Runs the command on a server chosen by `read_preference`.
    pub fn selection_criteria(mut self, read_preference: ReadPreference) -> Self {
        self.read_preference = Some(read_preference);
        self
    }
}

impl<'a> IntoFuture for RunCommandAction<'a> {
    type Output = Result<Document>;
    type IntoFuture = BoxFuture<'a, Result<Document>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let op = RunCommand::new(self.db.name.clone(), self.command, self.read_preference)?;
            let raw = self.db.client.execute(op).await?;
            to_document(&raw)
        })
    }
}

// ----- Database-level actions: collections, drop, cursor commands; Client::list_databases. -----

use std::time::Duration;

use bson::{doc, Binary, Bson};
use serde::{Deserialize, Deserializer};

use super::collection::{option_setters, write_concern_document, CursorType, IndexModel};
use crate::cursor::{Cursor, CursorOptions};
use crate::error::Error;
use crate::operation::{AdminCommand, CursorCommand, ListDatabases as ListDatabasesOp};

/// What a collection is.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CollectionType {
    #[default]
    Collection,
    View,
    Timeseries,
    /// A type this driver does not name.
    Other(String),
}

/// How strictly a validator applies (`validationLevel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationLevel {
    Off,
    Strict,
    Moderate,
    Other(String),
}

/// What a failed validation does (`validationAction`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationAction {
    Error,
    Warn,
    Other(String),
}

/// Options of `create_collection`; also the `options` of a [`CollectionSpecification`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateCollectionOptions {
    pub capped: Option<bool>,
    /// The capped size in bytes.
    pub size: Option<u64>,
    /// The most documents a capped collection keeps.
    pub max: Option<u64>,
    pub storage_engine: Option<Document>,
    pub validator: Option<Document>,
    pub validation_level: Option<ValidationLevel>,
    pub validation_action: Option<ValidationAction>,
    /// A view: the source collection.
    pub view_on: Option<String>,
    /// A view: its pipeline.
    pub pipeline: Option<Vec<Document>>,
    pub collation: Option<Document>,
    pub index_option_defaults: Option<Document>,
    /// `{timeField, metaField, granularity, ...}`.
    pub timeseries: Option<Document>,
    pub expire_after_seconds: Option<Duration>,
    pub change_stream_pre_and_post_images: Option<Document>,
    pub clustered_index: Option<Document>,
    pub encrypted_fields: Option<Document>,
    /// Sent with `create` only.
    pub write_concern: Option<WriteConcern>,
    /// Sent with `create` only.
    pub comment: Option<Bson>,
    /// Other fields, sent or reported as is.
    pub other: Document,
}

fn as_u64(v: &Bson) -> Option<u64> {
    match v {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        Bson::Double(f) if f.fract() == 0.0 && *f >= 0.0 => Some(*f as u64),
        _ => None,
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid_argument(format!("{what} is too large")))
}

impl CreateCollectionOptions {
    /// The `create` command fields.
    fn to_command_fields(&self, handle_wc: Option<&WriteConcern>) -> Result<Document> {
        let mut d = Document::new();
        if let Some(v) = self.capped {
            d.insert("capped", v);
        }
        if let Some(v) = self.size {
            d.insert("size", to_i64(v, "size")?);
        }
        if let Some(v) = self.max {
            d.insert("max", to_i64(v, "max")?);
        }
        let docs = [
            ("storageEngine", &self.storage_engine),
            ("validator", &self.validator),
            ("collation", &self.collation),
            ("indexOptionDefaults", &self.index_option_defaults),
            ("timeseries", &self.timeseries),
            (
                "changeStreamPreAndPostImages",
                &self.change_stream_pre_and_post_images,
            ),
            ("clusteredIndex", &self.clustered_index),
            ("encryptedFields", &self.encrypted_fields),
        ];
        for (k, v) in docs {
            if let Some(v) = v {
                d.insert(k, v.clone());
            }
        }
        if let Some(v) = &self.validation_level {
            d.insert(
                "validationLevel",
                match v {
                    ValidationLevel::Off => "off",
                    ValidationLevel::Strict => "strict",
                    ValidationLevel::Moderate => "moderate",
                    ValidationLevel::Other(s) => s.as_str(),
                },
            );
        }
        if let Some(v) = &self.validation_action {
            d.insert(
                "validationAction",
                match v {
                    ValidationAction::Error => "error",
                    ValidationAction::Warn => "warn",
                    ValidationAction::Other(s) => s.as_str(),
                },
            );
        }
        if let Some(v) = &self.view_on {
            d.insert("viewOn", v.clone());
        }
        if let Some(v) = &self.pipeline {
            d.insert(
                "pipeline",
                v.iter().cloned().map(Bson::Document).collect::<Vec<_>>(),
            );
        }
        if let Some(v) = self.expire_after_seconds {
            d.insert(
                "expireAfterSeconds",
                to_i64(v.as_secs(), "expire_after_seconds")?,
            );
        }
        for (k, v) in &self.other {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
        if let Some(wc) = write_concern_document(self.write_concern.as_ref().or(handle_wc)) {
            d.insert("writeConcern", wc);
        }
        if let Some(c) = &self.comment {
            d.insert("comment", c.clone());
        }
        Ok(d)
    }

    /// The document-valued option named `name` on the wire.
    fn document_slot(&mut self, name: &str) -> Option<&mut Option<Document>> {
        Some(match name {
            "storageEngine" => &mut self.storage_engine,
            "validator" => &mut self.validator,
            "collation" => &mut self.collation,
            "indexOptionDefaults" => &mut self.index_option_defaults,
            "timeseries" => &mut self.timeseries,
            "changeStreamPreAndPostImages" => &mut self.change_stream_pre_and_post_images,
            "clusteredIndex" => &mut self.clustered_index,
            "encryptedFields" => &mut self.encrypted_fields,
            _ => return None,
        })
    }

    /// Reads a `listCollections` entry's `options`; fields of an unexpected type go to `other`.
    fn from_document(options: Document) -> Self {
        let mut o = CreateCollectionOptions::default();
        for (k, v) in options {
            let handled = match (k.as_str(), &v) {
                ("capped", Bson::Boolean(b)) => {
                    o.capped = Some(*b);
                    true
                }
                ("size", v) => as_u64(v).map(|n| o.size = Some(n)).is_some(),
                ("max", v) => as_u64(v).map(|n| o.max = Some(n)).is_some(),
                ("expireAfterSeconds", v) => as_u64(v)
                    .map(|n| o.expire_after_seconds = Some(Duration::from_secs(n)))
                    .is_some(),
                ("viewOn", Bson::String(s)) => {
                    o.view_on = Some(s.clone());
                    true
                }
                ("validationLevel", Bson::String(s)) => {
                    o.validation_level = Some(match s.as_str() {
                        "off" => ValidationLevel::Off,
                        "strict" => ValidationLevel::Strict,
                        "moderate" => ValidationLevel::Moderate,
                        other => ValidationLevel::Other(other.to_string()),
                    });
                    true
                }
                ("validationAction", Bson::String(s)) => {
                    o.validation_action = Some(match s.as_str() {
                        "error" => ValidationAction::Error,
                        "warn" => ValidationAction::Warn,
                        other => ValidationAction::Other(other.to_string()),
                    });
                    true
                }
                ("pipeline", Bson::Array(stages)) => {
                    let docs: Option<Vec<Document>> =
                        stages.iter().map(|s| s.as_document().cloned()).collect();
                    docs.map(|d| o.pipeline = Some(d)).is_some()
                }
                (name, Bson::Document(d)) => match o.document_slot(name) {
                    Some(slot) => {
                        *slot = Some(d.clone());
                        true
                    }
                    None => false,
                },
                _ => false,
            };
            if !handled {
                o.other.insert(k, v);
            }
        }
        o
    }
}

/// `info` of a [`CollectionSpecification`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionSpecificationInfo {
    /// Whether the collection is read-only (views are).
    pub read_only: bool,
    /// The collection's UUID (a binary of subtype 4), when the server reported one as such.
    pub uuid: Option<Binary>,
}

/// A collection as `list_collections` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionSpecification {
    pub name: String,
    pub collection_type: CollectionType,
    pub options: CreateCollectionOptions,
    pub info: CollectionSpecificationInfo,
    /// The `_id` index (absent for views and with `nameOnly`).
    pub id_index: Option<IndexModel>,
}

impl CollectionSpecification {
    /// Parses a `listCollections` entry.
    pub fn from_document(mut d: Document) -> Result<Self> {
        let name = match d.remove("name") {
            Some(Bson::String(s)) => s,
            _ => return Err(Error::invalid_response("a collection entry has no 'name'")),
        };
        let collection_type = match d.get_str("type") {
            Ok("collection") | Err(_) => CollectionType::Collection,
            Ok("view") => CollectionType::View,
            Ok("timeseries") => CollectionType::Timeseries,
            Ok(other) => CollectionType::Other(other.to_string()),
        };
        let options = match d.remove("options") {
            Some(Bson::Document(o)) => CreateCollectionOptions::from_document(o),
            _ => CreateCollectionOptions::default(),
        };
        let info = match d.get_document("info") {
            Ok(i) => CollectionSpecificationInfo {
                read_only: i.get_bool("readOnly").unwrap_or(false),
                uuid: match i.get("uuid") {
                    Some(Bson::Binary(b)) => Some(b.clone()),
                    _ => None,
                },
            },
            Err(_) => CollectionSpecificationInfo::default(),
        };
        let id_index = match d.remove("idIndex") {
            Some(Bson::Document(i)) => Some(IndexModel::from_index_document(i)?),
            _ => None,
        };
        Ok(CollectionSpecification {
            name,
            collection_type,
            options,
            info,
            id_index,
        })
    }
}

impl<'de> Deserialize<'de> for CollectionSpecification {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let doc = Document::deserialize(deserializer)?;
        CollectionSpecification::from_document(doc).map_err(serde::de::Error::custom)
    }
}

/// A database as `list_databases` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatabaseSpecification {
    pub name: String,
    pub size_on_disk: u64,
    pub empty: bool,
    /// Per-shard sizes (sharded clusters).
    pub shards: Option<Document>,
}

impl DatabaseSpecification {
    /// Parses a `listDatabases` entry.
    pub fn from_document(d: &Document) -> Result<Self> {
        let name = d
            .get_str("name")
            .map_err(|_| Error::invalid_response("a database entry has no 'name'"))?
            .to_string();
        Ok(DatabaseSpecification {
            name,
            size_on_disk: d.get("sizeOnDisk").and_then(as_u64).unwrap_or(0),
            empty: d.get_bool("empty").unwrap_or(false),
            shards: d.get_document("shards").ok().cloned(),
        })
    }
}

/// Options of `list_collections` / `list_collection_names`.
#[derive(Clone, Debug, Default)]
pub struct ListCollectionsOptions {
    pub filter: Option<Document>,
    pub batch_size: Option<u32>,
    pub comment: Option<Bson>,
    /// Only collections the user may read (with `nameOnly`, no privilege needed to list).
    pub authorized_collections: Option<bool>,
}

/// The action of [`Database::list_collections`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct ListCollections<'a> {
    db: &'a Database,
    options: ListCollectionsOptions,
    name_only: bool,
}

/// The action of [`Database::list_collection_names`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct ListCollectionNames<'a> {
    inner: ListCollections<'a>,
}

impl ListCollections<'_> {
    option_setters! {
        /// Only collections whose entry matches this filter (e.g. `{name: "x"}`).
        filter: Document,
        /// Entries per batch.
        batch_size: u32,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
        /// Only collections the user may read.
        authorized_collections: bool,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<ListCollectionsOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }

    fn operation(&self) -> CursorCommand {
        let mut fields = Document::new();
        if let Some(f) = &self.options.filter {
            fields.insert("filter", f.clone());
        }
        if self.name_only {
            fields.insert("nameOnly", true);
        }
        if let Some(a) = self.options.authorized_collections {
            fields.insert("authorizedCollections", a);
        }
        if let Some(c) = &self.options.comment {
            fields.insert("comment", c.clone());
        }
        CursorCommand::list_collections(&self.db.name, fields, self.options.batch_size)
    }
}

impl ListCollectionNames<'_> {
    /// Only collections whose entry matches this filter.
    pub fn filter(mut self, filter: Document) -> Self {
        self.inner.options.filter = Some(filter);
        self
    }

    /// A comment recorded in the server's logs and profiler.
    pub fn comment(mut self, comment: impl Into<Bson>) -> Self {
        self.inner.options.comment = Some(comment.into());
        self
    }

    /// Only collections the user may read.
    pub fn authorized_collections(mut self, value: bool) -> Self {
        self.inner.options.authorized_collections = Some(value);
        self
    }
}

impl<'a> IntoFuture for ListCollections<'a> {
    type Output = Result<Cursor<CollectionSpecification>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let op = self.operation();
            let (address, info) = self.db.client.execute_with_address(op).await?;
            let cursor_options = CursorOptions {
                batch_size: self.options.batch_size,
                comment: self.options.comment.clone(),
                ..Default::default()
            };
            Cursor::new(self.db.client.clone(), address, info, cursor_options)
        })
    }
}

impl<'a> IntoFuture for ListCollectionNames<'a> {
    type Output = Result<Vec<String>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            // Entries are read raw: with nameOnly only `name` (and `type`) matter.
            let mut cursor = self.inner.await?.with_type::<RawDocumentBuf>();
            let mut names = Vec::new();
            while let Some(entry) = cursor.next_raw().await {
                let entry = entry?;
                let name = entry
                    .get_str("name")
                    .map_err(|_| Error::invalid_response("a collection entry has no 'name'"))?;
                names.push(name.to_string());
            }
            Ok(names)
        })
    }
}

/// The action of [`Database::create_collection`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct CreateCollection<'a> {
    db: &'a Database,
    name: String,
    options: CreateCollectionOptions,
}

impl CreateCollection<'_> {
    option_setters! {
        /// A capped collection.
        capped: bool,
        /// The capped size in bytes.
        size: u64,
        /// The most documents a capped collection keeps.
        max: u64,
        /// Storage engine options.
        storage_engine: Document,
        /// A document validator.
        validator: Document,
        /// How strictly the validator applies.
        validation_level: ValidationLevel,
        /// What a failed validation does.
        validation_action: ValidationAction,
        /// Create a view on this collection.
        view_on: String,
        /// The view's pipeline.
        pipeline: Vec<Document>,
        /// Default collation.
        collation: Document,
        /// Defaults for indexes.
        index_option_defaults: Document,
        /// Time series options.
        timeseries: Document,
        /// TTL of a time series or clustered collection.
        expire_after_seconds: Duration,
        /// Pre- and post-images for change streams.
        change_stream_pre_and_post_images: Document,
        /// A clustered index.
        clustered_index: Document,
        /// Queryable encryption fields.
        encrypted_fields: Document,
        /// The write concern of the create.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<CreateCollectionOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<'a> IntoFuture for CreateCollection<'a> {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let fields = self
                .options
                .to_command_fields(self.db.write_concern.as_ref())?;
            let op = AdminCommand::create_collection(&self.db.name, &self.name, fields);
            self.db.client.execute(op).await?;
            Ok(())
        })
    }
}

/// Options of [`Database::drop`].
#[derive(Clone, Debug, Default)]
pub struct DropDatabaseOptions {
    pub write_concern: Option<WriteConcern>,
    pub comment: Option<Bson>,
}

/// The action of [`Database::drop`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct DropDatabase<'a> {
    db: &'a Database,
    options: DropDatabaseOptions,
}

impl DropDatabase<'_> {
    option_setters! {
        /// The write concern of the drop.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }
}

impl<'a> IntoFuture for DropDatabase<'a> {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut fields = Document::new();
            let wc = self.options.write_concern.as_ref();
            if let Some(wc) = write_concern_document(wc.or(self.db.write_concern.as_ref())) {
                fields.insert("writeConcern", wc);
            }
            if let Some(c) = &self.options.comment {
                fields.insert("comment", c.clone());
            }
            let op = AdminCommand::drop_database(&self.db.name, fields);
            self.db.client.execute(op).await?;
            Ok(())
        })
    }
}

/// Options of [`Database::run_cursor_command`].
#[derive(Clone, Debug, Default)]
pub struct RunCursorCommandOptions {
    /// Where to run the command (default: the primary).
    pub read_preference: Option<ReadPreference>,
    /// The kind of cursor the command opens (for `getMore`'s `maxTimeMS`).
    pub cursor_type: Option<CursorType>,
    /// `batchSize` of each `getMore`.
    pub batch_size: Option<u32>,
    /// `maxTimeMS` of each `getMore` of a tailable awaitData cursor.
    pub max_time: Option<Duration>,
    /// `comment` of each `getMore`.
    pub comment: Option<Bson>,
}

/// The action of [`Database::run_cursor_command`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct RunCursorCommand<'a> {
    db: &'a Database,
    command: Document,
    options: RunCursorCommandOptions,
}

impl RunCursorCommand<'_> {
    option_setters! {
        /// Where to run the command.
        read_preference: ReadPreference,
        /// The kind of cursor the command opens.
        cursor_type: CursorType,
        /// `batchSize` of each `getMore`.
        batch_size: u32,
        /// `maxTimeMS` of each `getMore` (tailable awaitData cursors only).
        max_time: Duration,
        /// `comment` of each `getMore`.
        comment: Bson,
    }
}

impl<'a> IntoFuture for RunCursorCommand<'a> {
    type Output = Result<Cursor<Document>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let op = CursorCommand::user(
                self.db.name.clone(),
                self.command,
                self.options.read_preference.clone(),
            );
            let (address, info) = self.db.client.execute_with_address(op).await?;
            let cursor_options = CursorOptions {
                batch_size: self.options.batch_size,
                max_time: match self.options.cursor_type {
                    Some(CursorType::TailableAwait) => self.options.max_time,
                    _ => None,
                },
                comment: self.options.comment.clone(),
                limit: None,
            };
            Cursor::new(self.db.client.clone(), address, info, cursor_options)
        })
    }
}

impl Database {
    /// The collections (and views) of this database.
    pub fn list_collections(&self) -> ListCollections<'_> {
        ListCollections {
            db: self,
            options: ListCollectionsOptions::default(),
            name_only: false,
        }
    }

    /// The names of the collections (and views) of this database (`nameOnly: true`).
    pub fn list_collection_names(&self) -> ListCollectionNames<'_> {
        ListCollectionNames {
            inner: ListCollections {
                db: self,
                options: ListCollectionsOptions::default(),
                name_only: true,
            },
        }
    }

    /// Creates collection `name` (explicitly: with options such as `capped` or `validator`).
    pub fn create_collection(&self, name: impl AsRef<str>) -> CreateCollection<'_> {
        CreateCollection {
            db: self,
            name: name.as_ref().to_string(),
            options: CreateCollectionOptions::default(),
        }
    }

    /// Drops the whole database.
    pub fn drop(&self) -> DropDatabase<'_> {
        DropDatabase {
            db: self,
            options: DropDatabaseOptions::default(),
        }
    }

    /// Runs a command that replies with a cursor (`{cursor: {id, ns, firstBatch}}`) and iterates
    /// it.
    pub fn run_cursor_command(&self, command: Document) -> RunCursorCommand<'_> {
        RunCursorCommand {
            db: self,
            command,
            options: RunCursorCommandOptions::default(),
        }
    }
}

/// Options of [`Client::list_databases`].
#[derive(Clone, Debug, Default)]
pub struct ListDatabasesOptions {
    pub filter: Option<Document>,
    /// Only databases the user may read.
    pub authorized_databases: Option<bool>,
    pub comment: Option<Bson>,
}

/// The action of [`Client::list_databases`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct ListDatabases<'a> {
    client: &'a Client,
    options: ListDatabasesOptions,
}

impl ListDatabases<'_> {
    option_setters! {
        /// Only databases whose entry matches this filter.
        filter: Document,
        /// Only databases the user may read.
        authorized_databases: bool,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    fn operation(&self) -> ListDatabasesOp {
        let mut options = Document::new();
        if let Some(f) = &self.options.filter {
            options.insert("filter", f.clone());
        }
        if let Some(a) = self.options.authorized_databases {
            options.insert("authorizedDatabases", a);
        }
        if let Some(c) = &self.options.comment {
            options.insert("comment", c.clone());
        }
        ListDatabasesOp { options }
    }
}

impl<'a> IntoFuture for ListDatabases<'a> {
    type Output = Result<Vec<DatabaseSpecification>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let dbs = self.client.execute(self.operation()).await?;
            dbs.iter()
                .map(DatabaseSpecification::from_document)
                .collect()
        })
    }
}

impl Client {
    /// Every database, with its size (`listDatabases`).
    pub fn list_databases(&self) -> ListDatabases<'_> {
        ListDatabases {
            client: self,
            options: ListDatabasesOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_collection_options_become_command_fields() {
        let o = CreateCollectionOptions {
            capped: Some(true),
            size: Some(4096),
            max: Some(10),
            validator: Some(doc! { "a": { "$type": "int" } }),
            validation_level: Some(ValidationLevel::Moderate),
            validation_action: Some(ValidationAction::Warn),
            comment: Some(Bson::from("c")),
            ..Default::default()
        };
        let wc = WriteConcern {
            w: Some(crate::options::Acknowledgment::Nodes(1)),
            ..Default::default()
        };
        assert_eq!(
            o.to_command_fields(Some(&wc)).unwrap(),
            doc! { "capped": true, "size": 4096i64, "max": 10i64,
            "validator": { "a": { "$type": "int" } }, "validationLevel": "moderate",
            "validationAction": "warn", "writeConcern": { "w": 1i64 }, "comment": "c" }
        );
        let too_big = CreateCollectionOptions {
            size: Some(u64::MAX),
            ..Default::default()
        };
        assert!(too_big.to_command_fields(None).is_err());
    }

    #[test]
    fn collection_specifications_parse() {
        let uuid = Binary {
            subtype: bson::spec::BinarySubtype::Uuid,
            bytes: vec![7; 16],
        };
        let spec = CollectionSpecification::from_document(doc! {
            "name": "c", "type": "collection",
            "options": { "capped": true, "size": 4096, "validator": { "a": 1 }, "odd": 1 },
            "info": { "readOnly": false, "uuid": uuid.clone() },
            "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
        })
        .unwrap();
        assert_eq!(spec.name, "c");
        assert_eq!(spec.collection_type, CollectionType::Collection);
        assert_eq!(spec.options.capped, Some(true));
        assert_eq!(spec.options.size, Some(4096));
        assert_eq!(spec.options.validator, Some(doc! { "a": 1 }));
        assert_eq!(spec.options.other, doc! { "odd": 1 });
        assert_eq!(spec.info.uuid, Some(uuid));
        assert_eq!(spec.id_index.unwrap().keys, doc! { "_id": 1 });
        // A view with nameOnly-style entry; a uuid that is not binary is not a uuid.
        let view = CollectionSpecification::from_document(doc! {
            "name": "v", "type": "view", "info": { "readOnly": true, "uuid": "0000" },
        })
        .unwrap();
        assert_eq!(view.collection_type, CollectionType::View);
        assert!(view.info.read_only);
        assert_eq!(view.info.uuid, None);
        assert!(CollectionSpecification::from_document(doc! { "type": "view" }).is_err());
        let o = CreateCollectionOptions::from_document(doc! {
            "viewOn": "c", "pipeline": [{ "$match": {} }], "timeseries": { "timeField": "t" },
            "validationLevel": "strict", "validationAction": "error", "size": -1,
        });
        assert_eq!(o.view_on.as_deref(), Some("c"));
        assert_eq!(o.pipeline, Some(vec![doc! { "$match": {} }]));
        assert_eq!(o.timeseries, Some(doc! { "timeField": "t" }));
        assert_eq!(o.validation_level, Some(ValidationLevel::Strict));
        assert_eq!(o.validation_action, Some(ValidationAction::Error));
        assert_eq!(
            o.other,
            doc! { "size": -1 },
            "a negative size is kept, not a u64"
        );
        // And back into `create` fields.
        let fields = o.to_command_fields(None).unwrap();
        assert_eq!(fields.get_str("viewOn").ok(), Some("c"));
        assert_eq!(
            fields.get_document("timeseries").ok(),
            Some(&doc! { "timeField": "t" })
        );
        assert_eq!(fields.get_i32("size").ok(), Some(-1));
    }

    #[test]
    fn database_specifications_parse() {
        let d = DatabaseSpecification::from_document(
            &doc! { "name": "x", "sizeOnDisk": 8192.0, "empty": false },
        )
        .unwrap();
        assert_eq!(
            d,
            DatabaseSpecification {
                name: "x".into(),
                size_on_disk: 8192,
                empty: false,
                shards: None
            }
        );
        assert!(DatabaseSpecification::from_document(&doc! { "sizeOnDisk": 1 }).is_err());
    }
}
