//! Index management: `create_index`, `create_indexes`, `list_indexes`, `list_index_names`,
//! `drop_index`, `drop_indexes`, and the [`IndexModel`] they take and give.

use std::future::IntoFuture;
use std::time::Duration;

use bson::{Bson, Document};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{option_setters, write_concern_document, Collection};
use crate::cursor::{Cursor, CursorOptions};
use crate::error::{Error, Result};
use crate::operation::{AdminCommand, CursorCommand, CursorInfo};
use crate::options::WriteConcern;
use crate::rt::BoxFuture;

/// An index: its key pattern and options. (De)serializes as the server's index document
/// (`{key, name, unique, ...}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexModel {
    /// The key pattern, e.g. `{a: 1, b: -1}` or `{t: "text"}`.
    pub keys: Document,
    pub options: Option<IndexOptions>,
}

/// The version of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexVersion {
    V0,
    V1,
    V2,
    /// A version this driver does not name.
    Custom(u32),
}

/// Options of an index (the fields of its index document other than `key`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexOptions {
    /// Deprecated by the server (ignored since 4.2).
    pub background: Option<bool>,
    /// TTL: documents expire this long after their indexed date (`expireAfterSeconds`).
    pub expire_after: Option<Duration>,
    /// Generated from the key pattern when unset (`a_1_b_-1`).
    pub name: Option<String>,
    pub sparse: Option<bool>,
    pub storage_engine: Option<Document>,
    pub unique: Option<bool>,
    pub version: Option<IndexVersion>,
    pub default_language: Option<String>,
    pub language_override: Option<String>,
    /// `textIndexVersion`.
    pub text_index_version: Option<u32>,
    pub weights: Option<Document>,
    /// `2dsphereIndexVersion`.
    pub sphere_2d_index_version: Option<u32>,
    pub bits: Option<u32>,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub partial_filter_expression: Option<Document>,
    pub collation: Option<Document>,
    pub wildcard_projection: Option<Document>,
    pub hidden: Option<bool>,
    /// Other fields the server reported or the caller wants sent, as is.
    pub other: Document,
}

fn int(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.fract() == 0.0 => Some(*v as i64),
        _ => None,
    }
}

fn float(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::Double(v) => Some(*v),
        _ => None,
    }
}

impl IndexOptions {
    /// A builder (every field unset).
    pub fn builder() -> IndexOptionsBuilder {
        IndexOptionsBuilder::default()
    }

    /// The index document fields these options add.
    fn write_into(&self, d: &mut Document) {
        let mut put = |k: &str, v: Option<Bson>| {
            if let Some(v) = v {
                d.insert(k, v);
            }
        };
        put("name", self.name.clone().map(Bson::String));
        put("background", self.background.map(Bson::Boolean));
        put(
            "expireAfterSeconds",
            self.expire_after
                .map(|t| Bson::Int64(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))),
        );
        put("sparse", self.sparse.map(Bson::Boolean));
        put(
            "storageEngine",
            self.storage_engine.clone().map(Bson::Document),
        );
        put("unique", self.unique.map(Bson::Boolean));
        put(
            "v",
            self.version.map(|v| {
                Bson::Int32(match v {
                    IndexVersion::V0 => 0,
                    IndexVersion::V1 => 1,
                    IndexVersion::V2 => 2,
                    IndexVersion::Custom(n) => n as i32,
                })
            }),
        );
        put(
            "default_language",
            self.default_language.clone().map(Bson::String),
        );
        put(
            "language_override",
            self.language_override.clone().map(Bson::String),
        );
        put("textIndexVersion", self.text_index_version.map(int32_or_64));
        put("weights", self.weights.clone().map(Bson::Document));
        put(
            "2dsphereIndexVersion",
            self.sphere_2d_index_version.map(int32_or_64),
        );
        put("bits", self.bits.map(int32_or_64));
        put("max", self.max.map(Bson::Double));
        put("min", self.min.map(Bson::Double));
        put(
            "partialFilterExpression",
            self.partial_filter_expression.clone().map(Bson::Document),
        );
        put("collation", self.collation.clone().map(Bson::Document));
        put(
            "wildcardProjection",
            self.wildcard_projection.clone().map(Bson::Document),
        );
        put("hidden", self.hidden.map(Bson::Boolean));
        for (k, v) in &self.other {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
    }

    /// Reads the options out of an index document (all but `key`). Fields of an unexpected type
    /// are kept in `other`.
    fn from_fields(fields: Document) -> Self {
        let mut o = IndexOptions::default();
        for (k, v) in fields {
            let handled = match (k.as_str(), &v) {
                ("name", Bson::String(s)) => {
                    o.name = Some(s.clone());
                    true
                }
                ("background", Bson::Boolean(b)) => {
                    o.background = Some(*b);
                    true
                }
                ("sparse", Bson::Boolean(b)) => {
                    o.sparse = Some(*b);
                    true
                }
                ("unique", Bson::Boolean(b)) => {
                    o.unique = Some(*b);
                    true
                }
                ("hidden", Bson::Boolean(b)) => {
                    o.hidden = Some(*b);
                    true
                }
                ("expireAfterSeconds", v) => match int(v).and_then(|s| u64::try_from(s).ok()) {
                    Some(s) => {
                        o.expire_after = Some(Duration::from_secs(s));
                        true
                    }
                    None => false,
                },
                ("v", v) => match int(v).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => {
                        o.version = Some(match n {
                            0 => IndexVersion::V0,
                            1 => IndexVersion::V1,
                            2 => IndexVersion::V2,
                            n => IndexVersion::Custom(n),
                        });
                        true
                    }
                    None => false,
                },
                ("textIndexVersion" | "2dsphereIndexVersion" | "bits", v) => {
                    match int(v).and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => {
                            match k.as_str() {
                                "textIndexVersion" => o.text_index_version = Some(n),
                                "2dsphereIndexVersion" => o.sphere_2d_index_version = Some(n),
                                _ => o.bits = Some(n),
                            }
                            true
                        }
                        None => false,
                    }
                }
                ("max" | "min", v) => match float(v) {
                    Some(f) => {
                        if k == "max" {
                            o.max = Some(f);
                        } else {
                            o.min = Some(f);
                        }
                        true
                    }
                    None => false,
                },
                ("default_language", Bson::String(s)) => {
                    o.default_language = Some(s.clone());
                    true
                }
                ("language_override", Bson::String(s)) => {
                    o.language_override = Some(s.clone());
                    true
                }
                ("storageEngine", Bson::Document(d)) => {
                    o.storage_engine = Some(d.clone());
                    true
                }
                ("weights", Bson::Document(d)) => {
                    o.weights = Some(d.clone());
                    true
                }
                ("partialFilterExpression", Bson::Document(d)) => {
                    o.partial_filter_expression = Some(d.clone());
                    true
                }
                ("collation", Bson::Document(d)) => {
                    o.collation = Some(d.clone());
                    true
                }
                ("wildcardProjection", Bson::Document(d)) => {
                    o.wildcard_projection = Some(d.clone());
                    true
                }
                _ => false,
            };
            if !handled {
                o.other.insert(k, v);
            }
        }
        o
    }
}

/// Builds [`IndexOptions`].
#[derive(Clone, Debug, Default)]
pub struct IndexOptionsBuilder {
    options: IndexOptions,
}

impl IndexOptionsBuilder {
    option_setters! {
        /// The index name.
        name: String,
        /// Reject duplicate keys.
        unique: bool,
        /// Skip documents without the indexed field.
        sparse: bool,
        /// TTL.
        expire_after: Duration,
        /// Index only documents matching this filter.
        partial_filter_expression: Document,
        /// String comparison rules.
        collation: Document,
        /// Hide the index from the query planner.
        hidden: bool,
        /// Build in the background (ignored by servers 4.2+).
        background: bool,
        /// The index version.
        version: IndexVersion,
        /// Text index field weights.
        weights: Document,
        /// Text index default language.
        default_language: String,
        /// Wildcard index projection.
        wildcard_projection: Document,
        /// Storage engine options.
        storage_engine: Document,
    }

    /// The options.
    pub fn build(self) -> IndexOptions {
        self.options
    }
}

/// Builds an [`IndexModel`].
#[derive(Clone, Debug, Default)]
pub struct IndexModelBuilder {
    model: IndexModel,
}

impl IndexModelBuilder {
    /// The key pattern.
    pub fn keys(mut self, keys: Document) -> Self {
        self.model.keys = keys;
        self
    }

    /// The options.
    pub fn options(mut self, options: impl Into<Option<IndexOptions>>) -> Self {
        self.model.options = options.into();
        self
    }

    /// The model.
    pub fn build(self) -> IndexModel {
        self.model
    }
}

impl IndexModel {
    /// A builder: `IndexModel::builder().keys(doc! {"a": 1}).build()`.
    pub fn builder() -> IndexModelBuilder {
        IndexModelBuilder::default()
    }

    /// The name the server will give this index: the option if set, else generated from the key
    /// pattern (`{a: 1, b: -1}` → `a_1_b_-1`, `{t: "text"}` → `t_text`).
    pub fn name(&self) -> String {
        if let Some(name) = self.options.as_ref().and_then(|o| o.name.clone()) {
            return name;
        }
        let parts: Vec<String> = self
            .keys
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Bson::String(s) => s.clone(),
                    other => match int(other) {
                        Some(n) => n.to_string(),
                        None => other.to_string(),
                    },
                };
                format!("{k}_{v}")
            })
            .collect();
        parts.join("_")
    }

    /// The index document sent in `createIndexes` (`{key, name, ...options}`).
    pub fn to_index_document(&self) -> Document {
        let mut d = bson::doc! { "key": self.keys.clone(), "name": self.name() };
        if let Some(o) = &self.options {
            o.write_into(&mut d);
        }
        d
    }

    /// Parses an index document as `listIndexes` returns it.
    pub fn from_index_document(mut doc: Document) -> Result<Self> {
        let keys = match doc.remove("key") {
            Some(Bson::Document(k)) => k,
            _ => {
                return Err(Error::invalid_response(
                    "an index document has no 'key' document",
                ))
            }
        };
        Ok(IndexModel {
            keys,
            options: Some(IndexOptions::from_fields(doc)),
        })
    }
}

impl Serialize for IndexModel {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_index_document().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for IndexModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let doc = Document::deserialize(deserializer)?;
        IndexModel::from_index_document(doc).map_err(serde::de::Error::custom)
    }
}

/// The result of `create_index`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateIndexResult {
    pub index_name: String,
}

/// The result of `create_indexes`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateIndexesResult {
    pub index_names: Vec<String>,
}

/// Options of `create_index` / `create_indexes`.
#[derive(Clone, Debug, Default)]
pub struct CreateIndexOptions {
    /// Replica set members that must finish the build (`commitQuorum`: a number or a string).
    pub commit_quorum: Option<Bson>,
    pub max_time: Option<Duration>,
    pub write_concern: Option<WriteConcern>,
    pub comment: Option<Bson>,
}

/// Options of `drop_index` / `drop_indexes`.
#[derive(Clone, Debug, Default)]
pub struct DropIndexOptions {
    pub max_time: Option<Duration>,
    pub write_concern: Option<WriteConcern>,
    pub comment: Option<Bson>,
}

/// Options of `list_indexes` / `list_index_names`.
#[derive(Clone, Debug, Default)]
pub struct ListIndexesOptions {
    pub max_time: Option<Duration>,
    pub batch_size: Option<u32>,
    pub comment: Option<Bson>,
}

fn common_fields(
    max_time: Option<Duration>,
    wc: Option<&WriteConcern>,
    comment: Option<&Bson>,
) -> Document {
    let mut d = Document::new();
    if let Some(t) = max_time {
        d.insert("maxTimeMS", crate::operation::millis(t));
    }
    if let Some(wc) = write_concern_document(wc) {
        d.insert("writeConcern", wc);
    }
    if let Some(c) = comment {
        d.insert("comment", c.clone());
    }
    d
}

/// The action of [`Collection::create_indexes`].
#[must_use = "actions do nothing unless awaited"]
pub struct CreateIndexes<'a, T> {
    coll: &'a Collection<T>,
    models: Vec<IndexModel>,
    options: CreateIndexOptions,
}

/// The action of [`Collection::create_index`].
#[must_use = "actions do nothing unless awaited"]
pub struct CreateIndex<'a, T> {
    inner: CreateIndexes<'a, T>,
}

/// The action of [`Collection::drop_index`] (`name`) and [`Collection::drop_indexes`] (`*`).
#[must_use = "actions do nothing unless awaited"]
pub struct DropIndex<'a, T> {
    coll: &'a Collection<T>,
    name: String,
    options: DropIndexOptions,
}

/// The action of [`Collection::list_indexes`].
#[must_use = "actions do nothing unless awaited"]
pub struct ListIndexes<'a, T> {
    coll: &'a Collection<T>,
    options: ListIndexesOptions,
}

/// The action of [`Collection::list_index_names`].
#[must_use = "actions do nothing unless awaited"]
pub struct ListIndexNames<'a, T> {
    inner: ListIndexes<'a, T>,
}

macro_rules! debug_options {
    ($($ty:ident $(. $inner:ident)?),*) => {$(
        impl<T> std::fmt::Debug for $ty<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("options", &self$(.$inner)?.options)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
debug_options!(
    CreateIndexes,
    CreateIndex.inner,
    DropIndex,
    ListIndexes,
    ListIndexNames.inner
);

impl<T> CreateIndexes<'_, T> {
    option_setters! {
        /// Replica set members that must finish the build.
        commit_quorum: Bson,
        /// A server-side time limit.
        max_time: Duration,
        /// The write concern of the build.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<CreateIndexOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> CreateIndex<'_, T> {
    /// Replica set members that must finish the build.
    pub fn commit_quorum(mut self, value: impl Into<Bson>) -> Self {
        self.inner.options.commit_quorum = Some(value.into());
        self
    }

    /// A server-side time limit.
    pub fn max_time(mut self, value: Duration) -> Self {
        self.inner.options.max_time = Some(value);
        self
    }

    /// The write concern of the build.
    pub fn write_concern(mut self, value: WriteConcern) -> Self {
        self.inner.options.write_concern = Some(value);
        self
    }

    /// A comment recorded in the server's logs and profiler.
    pub fn comment(mut self, value: impl Into<Bson>) -> Self {
        self.inner.options.comment = Some(value.into());
        self
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<CreateIndexOptions>>) -> Self {
        self.inner.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> DropIndex<'_, T> {
    option_setters! {
        /// A server-side time limit.
        max_time: Duration,
        /// The write concern of the drop.
        write_concern: WriteConcern,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<DropIndexOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> ListIndexes<'_, T> {
    option_setters! {
        /// A server-side time limit.
        max_time: Duration,
        /// Indexes per batch.
        batch_size: u32,
        /// A comment recorded in the server's logs and profiler.
        comment: Bson,
    }

    /// Replaces all options at once.
    pub fn with_options(mut self, options: impl Into<Option<ListIndexesOptions>>) -> Self {
        self.options = options.into().unwrap_or_default();
        self
    }
}

impl<T> ListIndexNames<'_, T> {
    /// A server-side time limit.
    pub fn max_time(mut self, value: Duration) -> Self {
        self.inner.options.max_time = Some(value);
        self
    }

    /// A comment recorded in the server's logs and profiler.
    pub fn comment(mut self, value: impl Into<Bson>) -> Self {
        self.inner.options.comment = Some(value.into());
        self
    }
}

impl<T> Collection<T> {
    /// Creates one index. Its name is the model's, or generated from the key pattern.
    pub fn create_index(&self, index: IndexModel) -> CreateIndex<'_, T> {
        CreateIndex {
            inner: self.create_indexes([index]),
        }
    }

    /// Creates several indexes with one `createIndexes` command.
    pub fn create_indexes(
        &self,
        indexes: impl IntoIterator<Item = IndexModel>,
    ) -> CreateIndexes<'_, T> {
        CreateIndexes {
            coll: self,
            models: indexes.into_iter().collect(),
            options: CreateIndexOptions::default(),
        }
    }

    /// Drops the index `name`. (`"*"` is refused: use [`drop_indexes`](Self::drop_indexes).)
    pub fn drop_index(&self, name: impl AsRef<str>) -> DropIndex<'_, T> {
        DropIndex {
            coll: self,
            name: name.as_ref().to_string(),
            options: DropIndexOptions::default(),
        }
    }

    /// Drops every index but `_id_`.
    pub fn drop_indexes(&self) -> DropIndex<'_, T> {
        DropIndex {
            coll: self,
            name: String::new(),
            options: DropIndexOptions::default(),
        }
    }

    /// The collection's indexes. A collection that does not exist has none.
    pub fn list_indexes(&self) -> ListIndexes<'_, T> {
        ListIndexes {
            coll: self,
            options: ListIndexesOptions::default(),
        }
    }

    /// The names of the collection's indexes.
    pub fn list_index_names(&self) -> ListIndexNames<'_, T> {
        ListIndexNames {
            inner: self.list_indexes(),
        }
    }
}

impl<'a, T: Send + Sync> IntoFuture for CreateIndexes<'a, T> {
    type Output = Result<CreateIndexesResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let index_names: Vec<String> = self.models.iter().map(IndexModel::name).collect();
            let mut options = common_fields(
                self.options.max_time,
                self.options
                    .write_concern
                    .as_ref()
                    .or(coll.write_concern.as_ref()),
                self.options.comment.as_ref(),
            );
            if let Some(q) = &self.options.commit_quorum {
                options.insert("commitQuorum", q.clone());
            }
            let op = AdminCommand::create_indexes(
                coll.db.name(),
                &coll.name,
                self.models
                    .iter()
                    .map(IndexModel::to_index_document)
                    .collect(),
                options,
            )?;
            coll.db.client().execute(op).await?;
            Ok(CreateIndexesResult { index_names })
        })
    }
}

impl<'a, T: Send + Sync> IntoFuture for CreateIndex<'a, T> {
    type Output = Result<CreateIndexResult>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut result = self.inner.await?;
            let index_name = result.index_names.pop().unwrap_or_default();
            Ok(CreateIndexResult { index_name })
        })
    }
}

impl<'a, T: Send + Sync> IntoFuture for DropIndex<'a, T> {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let index = if self.name.is_empty() {
                "*"
            } else if self.name == "*" {
                return Err(Error::invalid_argument(
                    "drop_index(\"*\") would drop every index: use drop_indexes()",
                ));
            } else {
                self.name.as_str()
            };
            let options = common_fields(
                self.options.max_time,
                self.options
                    .write_concern
                    .as_ref()
                    .or(coll.write_concern.as_ref()),
                self.options.comment.as_ref(),
            );
            let op = AdminCommand::drop_indexes(coll.db.name(), &coll.name, index, options);
            coll.db.client().execute(op).await?;
            Ok(())
        })
    }
}

impl<'a, T: Send + Sync> IntoFuture for ListIndexes<'a, T> {
    type Output = Result<Cursor<IndexModel>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let coll = self.coll;
            let options = common_fields(self.options.max_time, None, self.options.comment.as_ref());
            let op = CursorCommand::list_indexes(
                coll.db.name(),
                &coll.name,
                options,
                self.options.batch_size,
            );
            let cursor_options = CursorOptions {
                batch_size: self.options.batch_size,
                max_time: None,
                comment: self.options.comment.clone(),
                limit: None,
            };
            let client = coll.db.client();
            match client.execute_with_address(op).await {
                Ok((address, info)) => Cursor::new(client.clone(), address, info, cursor_options),
                // NamespaceNotFound: a collection that does not exist has no indexes.
                Err(e) if e.is_namespace_not_found() => {
                    let info = CursorInfo {
                        id: 0,
                        ns: coll.namespace(),
                        batch: Default::default(),
                        post_batch_resume_token: None,
                    };
                    let address = client
                        .options()
                        .hosts
                        .first()
                        .cloned()
                        .ok_or_else(|| Error::internal("a client without hosts"))?;
                    Cursor::new(client.clone(), address, info, cursor_options)
                }
                Err(e) => Err(e),
            }
        })
    }
}

impl<'a, T: Send + Sync> IntoFuture for ListIndexNames<'a, T> {
    type Output = Result<Vec<String>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut cursor = self.inner.await?;
            let mut names = Vec::new();
            while let Some(model) = cursor.next_document().await {
                let model = model?;
                if let Some(name) = model.options.and_then(|o| o.name) {
                    names.push(name);
                }
            }
            Ok(names)
        })
    }
}

/// A `u32` option as BSON: an int32 when it fits (as the official driver sends it), else an
/// int64 rather than a wrapped negative number.
fn int32_or_64(v: u32) -> Bson {
    i32::try_from(v).map_or(Bson::Int64(i64::from(v)), Bson::Int32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn generated_names() {
        let m = |keys| IndexModel::builder().keys(keys).build();
        assert_eq!(m(doc! { "a": 1, "b": -1 }).name(), "a_1_b_-1");
        assert_eq!(m(doc! { "a": 1i64 }).name(), "a_1");
        assert_eq!(m(doc! { "a": 1.0 }).name(), "a_1");
        assert_eq!(
            m(doc! { "t": "text", "x.y": "2dsphere" }).name(),
            "t_text_x.y_2dsphere"
        );
        let named = IndexModel::builder()
            .keys(doc! { "a": 1 })
            .options(IndexOptions::builder().name("mine".to_string()).build())
            .build();
        assert_eq!(named.name(), "mine");
    }

    #[test]
    fn index_documents_round_trip() {
        let model = IndexModel::builder()
            .keys(doc! { "a": 1, "b": -1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .sparse(false)
                    .expire_after(Duration::from_secs(3600))
                    .partial_filter_expression(doc! { "a": { "$gt": 5 } })
                    .version(IndexVersion::V2)
                    .build(),
            )
            .build();
        let d = model.to_index_document();
        assert_eq!(
            d,
            doc! { "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1", "expireAfterSeconds": 3600i64,
            "sparse": false, "unique": true, "v": 2,
            "partialFilterExpression": { "a": { "$gt": 5 } } }
        );
        let back = IndexModel::from_index_document(d).unwrap();
        let mut expected = model.options.clone().unwrap();
        expected.name = Some("a_1_b_-1".into());
        assert_eq!(back.keys, model.keys);
        assert_eq!(back.options, Some(expected));
        // Through serde, as a cursor deserializes it; unknown fields are kept.
        let raw = bson::RawDocumentBuf::try_from(&doc! {
            "v": 2, "key": { "_id": 1 }, "name": "_id_", "ns": "d.c", "expireAfterSeconds": 1.0
        })
        .unwrap();
        let m: IndexModel = bson::deserialize_from_slice(raw.as_bytes()).unwrap();
        let o = m.options.unwrap();
        assert_eq!(o.name.as_deref(), Some("_id_"));
        assert_eq!(o.expire_after, Some(Duration::from_secs(1)));
        assert_eq!(o.other, doc! { "ns": "d.c" });
        // A negative TTL is not a Duration: kept as is rather than rejected.
        let o = IndexOptions::from_fields(doc! { "expireAfterSeconds": -1 });
        assert_eq!(o.expire_after, None);
        assert_eq!(o.other, doc! { "expireAfterSeconds": -1 });
        assert!(IndexModel::from_index_document(doc! { "name": "x" }).is_err());
        let raw = bson::RawDocumentBuf::try_from(&doc! { "name": "x" }).unwrap();
        assert!(bson::deserialize_from_slice::<IndexModel>(raw.as_bytes()).is_err());
    }
}
