//! The async driver: [`Client`], [`Database`], [`Collection`], generic over the runtime only at
//! construction. A thin layer that feeds the sans-IO machines and does I/O only through the
//! [`Runtime`] it was built with.

mod collection;
mod database;
mod executor;
mod srv;
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

use std::time::Duration;

use crate::dns::{DnsResolver, Resolver};
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
    topology: srv::ClientTopology,
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
    resolver: Option<Arc<dyn Resolver>>,
    rescan_floor: Duration,
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

    /// Resolves `mongodb+srv` names (SRV polling, and the SRV lookup at start for options
    /// that still need it) with `resolver` instead of the driver's own DNS client
    /// ([`DnsResolver`] with the options' `resolver_config`).
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// For tests only: lowers the SRV polling spec's 60 s floor on the rescan interval (the
    /// spec's own tests do the same), so that rescans can be observed in seconds.
    #[doc(hidden)]
    pub fn min_srv_rescan_interval(mut self, floor: Duration) -> Self {
        self.rescan_floor = floor;
        self
    }

    /// Builds the client and starts monitoring its servers on the runtime. Options whose
    /// `mongodb+srv` hosts are still to be found are resolved first, on the runtime, in the
    /// background: operations wait for it, and fail with its error if it fails.
    pub fn build(self) -> Result<Client> {
        let resolver = self.resolver.clone().unwrap_or_else(|| {
            Arc::new(DnsResolver::new(
                self.runtime.clone(),
                self.options.resolver_config.clone().unwrap_or_default(),
            ))
        });
        let topology = srv::ClientTopology::start(
            self.runtime.clone(),
            self.options.clone(),
            self.events.clone(),
            srv::SrvSettings {
                resolver,
                rescan_floor: self.rescan_floor,
            },
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
            resolver: None,
            rescan_floor: crate::dns::MIN_RESCAN_INTERVAL,
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

    /// A client for a connection string on `runtime`. A `mongodb+srv` URI is resolved in the
    /// background, on `runtime`. (Adapter crates offer `Client::with_uri_str(uri).await`, which
    /// uses the running runtime and resolves before it returns.)
    pub fn with_uri_str_and_runtime(uri: &str, runtime: Arc<dyn Runtime>) -> Result<Client> {
        Self::with_options_and_runtime(ClientOptions::parse_without_srv_resolution(uri)?, runtime)
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
/// and the `ClientOptionsExt` trait that gives [`ClientOptions`] its async
/// `ClientOptions::parse(uri).await` (with the `mongodb+srv` lookups), on that adapter's running
/// runtime. `$current` is an expression of type `Result<Arc<dyn Runtime>, E>` with
/// `E: Display`, evaluated at each call.
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
            /// A `mongodb+srv` URI is resolved (SRV and TXT records) before it returns.
            fn with_uri_str(
                uri: impl AsRef<str>,
            ) -> $crate::rt::BoxFuture<'static, $crate::Result<$crate::Client>>;

            /// A client with `options`, on the runtime this is called from. Options whose
            /// `mongodb+srv` hosts are still to be found are resolved in the background.
            fn with_options(options: $crate::ClientOptions) -> $crate::Result<$crate::Client>;
        }

        impl ClientExt for $crate::Client {
            fn with_uri_str(
                uri: impl AsRef<str>,
            ) -> $crate::rt::BoxFuture<'static, $crate::Result<$crate::Client>> {
                let parse = <$crate::ClientOptions as ClientOptionsExt>::parse(uri);
                let runtime = $current;
                Box::pin(async move {
                    let options = parse.await?;
                    let runtime = runtime.map_err($crate::Error::invalid_argument_from)?;
                    $crate::Client::with_options_and_runtime(options, runtime)
                })
            }

            fn with_options(options: $crate::ClientOptions) -> $crate::Result<$crate::Client> {
                let runtime = ($current).map_err($crate::Error::invalid_argument_from)?;
                $crate::Client::with_options_and_runtime(options, runtime)
            }
        }

        /// [`ClientOptions::parse`](anymongo_core::ClientOptions) on the running
        #[doc = $runtime]
        /// runtime: `use` this trait, then `ClientOptions::parse(uri).await`.
        pub trait ClientOptionsExt {
            /// Parses the connection string `uri`; for `mongodb+srv`, looks up its SRV and TXT
            /// records on the runtime this is called from. Configure the lookups with
            /// `.resolver_config(..)`, then `.await`.
            fn parse(uri: impl AsRef<str>) -> $crate::dns::ParseConnectionString;
        }

        impl ClientOptionsExt for $crate::ClientOptions {
            fn parse(uri: impl AsRef<str>) -> $crate::dns::ParseConnectionString {
                $crate::dns::ParseConnectionString::new(
                    uri.as_ref(),
                    ($current).map_err($crate::Error::invalid_argument_from),
                )
            }
        }
    };
}
