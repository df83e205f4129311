//! `ClientOptions::parse(uri).await`: parsing a connection string, with the SRV and TXT lookups of
//! `mongodb+srv`.

use std::future::IntoFuture;
use std::sync::Arc;

use super::{DnsError, DnsResolver, Resolver, ResolverConfig};
use crate::error::{Error, Result};
use crate::options::ClientOptions;
use crate::proto::dns::seedlist;
use crate::rt::{BoxFuture, Runtime};

/// Looks up the SRV and TXT records of options parsed from a `mongodb+srv` URI whose hosts are
/// still to be found ([`ClientOptions::needs_srv_resolution`]) and applies them per the Initial
/// DNS Seedlist Discovery spec (see [`seedlist::apply`]): the hosts, `srvMaxHosts`, the TXT
/// record's `authSource`, `replicaSet` and `loadBalanced`, then the cross-option rules. Other
/// options are left as they are. Warnings about the TXT record's values are logged.
pub async fn resolve_srv(options: &mut ClientOptions, resolver: &dyn Resolver) -> Result<()> {
    if !options.needs_srv_resolution() {
        return Ok(());
    }
    let Some(srv) = options.srv.clone() else {
        return Ok(());
    };
    let query = srv.srv_query_name();
    let (records, txt) = futures::join!(
        resolver.lookup_srv(&query),
        resolver.lookup_txt(&srv.hostname)
    );
    let records = records.map_err(|e| {
        Error::dns_resolve(format!(
            "the SRV lookup of '{query}' found no hosts for the connection string: {e}"
        ))
    })?;
    let txt = match txt {
        Ok(txt) => txt,
        Err(DnsError::NotFound { .. }) => Vec::new(),
        Err(e) => {
            return Err(Error::dns_resolve(format!(
                "the TXT lookup of '{}' failed: {e}",
                srv.hostname
            )))
        }
    };
    let warnings = seedlist::apply(options, &records, &txt, &mut rand::rng())?;
    for w in warnings {
        tracing::warn!(target: "anymongo::uri", "{w}");
    }
    Ok(())
}

/// Parses a connection string and, for `mongodb+srv`, resolves its hosts: the action of
/// `ClientOptions::parse(uri)` (an adapter's `ClientOptionsExt`). Configure it with
/// [`resolver_config`](Self::resolver_config) or [`resolver`](Self::resolver), then `.await` it.
///
/// The lookups run on the runtime the action was created on (the one `ClientOptions::parse`
/// was called from); a `mongodb://` URI needs no runtime at all.
#[must_use = "an action does nothing until it is awaited"]
pub struct ParseConnectionString {
    uri: String,
    runtime: std::result::Result<Arc<dyn Runtime>, Error>,
    resolver_config: Option<ResolverConfig>,
    resolver: Option<Arc<dyn Resolver>>,
}

impl std::fmt::Debug for ParseConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URI may hold a password: never printed.
        f.debug_struct("ParseConnectionString")
            .field("resolver_config", &self.resolver_config)
            .field("custom_resolver", &self.resolver.is_some())
            .finish_non_exhaustive()
    }
}

impl ParseConnectionString {
    /// Parses `uri`; DNS lookups (for `mongodb+srv`) run on `runtime` (or fail with its error).
    pub fn new(uri: impl Into<String>, runtime: Result<Arc<dyn Runtime>>) -> Self {
        ParseConnectionString {
            uri: uri.into(),
            runtime,
            resolver_config: None,
            resolver: None,
        }
    }

    /// The DNS configuration for the lookups (and, kept in the options, for the client's SRV
    /// polling and host names): e.g. `ResolverConfig::cloudflare()`, or name servers of your own.
    pub fn resolver_config(mut self, config: ResolverConfig) -> Self {
        self.resolver_config = Some(config);
        self
    }

    /// A resolver of the application's own for the lookups (give it to the client too, with
    /// [`ClientBuilder::resolver`](crate::client::ClientBuilder::resolver), for SRV polling).
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }
}

impl IntoFuture for ParseConnectionString {
    type Output = Result<ClientOptions>;
    type IntoFuture = BoxFuture<'static, Result<ClientOptions>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut options = ClientOptions::parse_without_srv_resolution(&self.uri)?;
            if let Some(config) = self.resolver_config {
                options.resolver_config = Some(config);
            }
            if options.needs_srv_resolution() {
                let resolver = match self.resolver {
                    Some(r) => r,
                    None => Arc::new(DnsResolver::new(
                        self.runtime?,
                        options.resolver_config.clone().unwrap_or_default(),
                    )),
                };
                resolve_srv(&mut options, &*resolver).await?;
            }
            Ok(options)
        })
    }
}
