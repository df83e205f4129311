//! The async driver: [`Client`], [`Database`], [`Collection`], generic over the runtime only at
//! construction. A thin layer that feeds the sans-IO machines and does I/O only through the
//! [`Runtime`] it was built with.

mod collection;
mod database;
mod executor;
mod topology;

pub use crate::operation::UpdateModifications;
pub use collection::{
    Aggregate, AggregateOptions, CountDocuments, CountOptions, CreateIndex, CreateIndexOptions,
    CreateIndexResult, CreateIndexes, CreateIndexesResult, Distinct, DistinctOptions, DropIndex,
    DropIndexOptions, EstimatedDocumentCount, EstimatedDocumentCountOptions, IndexModel,
    IndexModelBuilder, IndexOptions, IndexOptionsBuilder, IndexVersion, ListIndexNames,
    ListIndexes, ListIndexesOptions,
};
pub use collection::{
    Collection, CursorType, Find, FindOne, FindOptions, InsertMany, InsertManyResult, InsertOne,
    InsertOneResult, InsertOptions,
};
pub use collection::{
    CollectionBulkWrite, CollectionBulkWriteOptions, CollectionBulkWriteResult,
    CollectionWriteModel, Delete, DeleteModel, DeleteOptions, DeleteResult, FindOneAndDelete,
    FindOneAndDeleteOptions, FindOneAndReplace, FindOneAndReplaceOptions, FindOneAndUpdate,
    FindOneAndUpdateOptions, Replace, ReplaceModel, ReplaceOptions, ReturnDocument, Update,
    UpdateModel, UpdateOptions, UpdateResult,
};
pub use database::{
    CollectionSpecification, CollectionSpecificationInfo, CollectionType, CreateCollection,
    CreateCollectionOptions, DatabaseSpecification, DropDatabase, DropDatabaseOptions,
    ListCollectionNames, ListCollections, ListCollectionsOptions, ListDatabases,
    ListDatabasesOptions, RunCursorCommand, RunCursorCommandOptions, ValidationAction,
    ValidationLevel,
};
pub use database::{Database, HandleOptions, RunCommandAction};

use std::sync::Arc;

use bson::doc;

use crate::error::Result;
use crate::event::EventHandler;
use crate::options::ClientOptions;
use crate::rt::Runtime;

/// A MongoDB client. Cheap to clone: clones share the connection pools and monitors.
///
/// Created with a runtime from an adapter crate, e.g. `anymongo_tokio::Client::with_uri_str`.
/// All of its background work (monitors, pool maintenance, killing cursors) runs on that
/// runtime. Dropping the last clone shuts it down.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("runtime", &self.inner.runtime.name())
            .field("hosts", &self.inner.options.hosts)
            .finish_non_exhaustive()
    }
}

pub(crate) struct ClientInner {
    runtime: Arc<dyn Runtime>,
    options: ClientOptions,
    events: Option<EventHandler>,
    topology: topology::Topology,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // Never blocks and never needs a runtime context: the topology only signals its tasks.
        self.topology.close();
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    options: ClientOptions,
    runtime: Arc<dyn Runtime>,
    events: Option<EventHandler>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("options", &self.options)
            .field("runtime", &self.runtime.name())
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Delivers every command, pool and discovery event to `handler`.
    pub fn event_handler(mut self, handler: EventHandler) -> Self {
        self.events = Some(handler);
        self
    }

    /// Builds the client and starts monitoring its servers on the runtime.
    pub fn build(self) -> Result<Client> {
        let topology = topology::Topology::start(
            self.runtime.clone(),
            self.options.clone(),
            self.events.clone(),
        )?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                runtime: self.runtime,
                options: self.options,
                events: self.events,
                topology,
            }),
        })
    }
}

impl Client {
    /// A builder for a client with `options` on `runtime`.
    pub fn builder(options: ClientOptions, runtime: Arc<dyn Runtime>) -> ClientBuilder {
        ClientBuilder {
            options,
            runtime,
            events: None,
        }
    }

    /// A client with `options` on `runtime`. (Adapter crates offer `Client::with_options`,
    /// which uses the running runtime.)
    pub fn with_options_and_runtime(
        options: ClientOptions,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Client> {
        Self::builder(options, runtime).build()
    }

    /// A client for a connection string on `runtime`. (Adapter crates offer
    /// `Client::with_uri_str`, which uses the running runtime.)
    pub fn with_uri_str_and_runtime(uri: &str, runtime: Arc<dyn Runtime>) -> Result<Client> {
        Self::with_options_and_runtime(ClientOptions::parse(uri)?, runtime)
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The runtime the client runs on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    /// A handle to database `name`.
    pub fn database(&self, name: &str) -> Database {
        Database::new(self.clone(), name, HandleOptions::default())
    }

    /// A handle to database `name` with overridden settings.
    pub fn database_with_options(&self, name: &str, options: HandleOptions) -> Database {
        Database::new(self.clone(), name, options)
    }

    /// The database named in the connection string, if any.
    pub fn default_database(&self) -> Option<Database> {
        self.inner
            .options
            .default_database
            .as_deref()
            .map(|name| self.database(name))
    }

    /// The names of all databases.
    pub async fn list_database_names(&self) -> Result<Vec<String>> {
        let reply = self
            .database("admin")
            .run_command(doc! { "listDatabases": 1, "nameOnly": true })
            .await?;
        let mut names = Vec::new();
        if let Ok(dbs) = reply.get_array("databases") {
            for db in dbs {
                if let Some(name) = db.as_document().and_then(|d| d.get_str("name").ok()) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// The current view of the deployment, as discovery sees it.
    pub fn topology_description(&self) -> crate::sdam::TopologyDescription {
        self.inner.topology.description()
    }

    /// Stops monitoring and closes every pool. Operations in flight fail; later ones fail with
    /// [`ErrorKind::Shutdown`](crate::ErrorKind::Shutdown).
    pub async fn shutdown(self) {
        self.inner.topology.close();
        self.inner.topology.closed().await;
    }

    pub(crate) fn emit(&self, event: impl FnOnce() -> crate::event::Event) {
        if let Some(handler) = &self.inner.events {
            handler.handle(&event());
        }
    }
}

/// Defines, in an adapter crate, the `ClientExt` trait that gives [`Client`] the official
/// driver's constructors (`Client::with_uri_str(uri).await`, `Client::with_options(options)`)
/// on that adapter's running runtime. `$current` is an expression of type
/// `Result<Arc<dyn Runtime>, E>` with `E: Display`, evaluated at each call.
///
/// Written once here so that every adapter's constructors behave identically.
#[macro_export]
macro_rules! define_client_ext {
    ($runtime:literal, $current:expr) => {
        /// [`Client`](anymongo_core::Client) constructors on the running
        #[doc = $runtime]
        /// runtime: `use` this trait, then `Client::with_uri_str(uri).await`.
        pub trait ClientExt: Sized {
            /// A client for the connection string `uri`, on the runtime this is called from.
            fn with_uri_str(
                uri: impl AsRef<str>,
            ) -> $crate::rt::BoxFuture<'static, $crate::Result<$crate::Client>>;

            /// A client with `options`, on the runtime this is called from.
            fn with_options(options: $crate::ClientOptions) -> $crate::Result<$crate::Client>;
        }

        impl ClientExt for $crate::Client {
            fn with_uri_str(
                uri: impl AsRef<str>,
            ) -> $crate::rt::BoxFuture<'static, $crate::Result<$crate::Client>> {
                let parsed = $crate::ClientOptions::parse(uri.as_ref());
                let runtime = $current;
                Box::pin(async move {
                    let runtime = runtime.map_err($crate::Error::invalid_argument_from)?;
                    $crate::Client::with_options_and_runtime(parsed?, runtime)
                })
            }

            fn with_options(options: $crate::ClientOptions) -> $crate::Result<$crate::Client> {
                let runtime = ($current).map_err($crate::Error::invalid_argument_from)?;
                $crate::Client::with_options_and_runtime(options, runtime)
            }
        }
    };
}
