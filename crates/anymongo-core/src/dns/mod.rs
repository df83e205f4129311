//! DNS for `mongodb+srv://`, on the client's own runtime.
//!
//! [`Resolver`] is what the driver asks: SRV and TXT records, and (optionally) the addresses of
//! a host it connects to. The default, [`DnsResolver`], is a stub resolver written once here
//! over the runtime's primitives: it drives the sans-IO [`Lookup`]
//! machine with the runtime's UDP sockets ([`Runtime::bind_udp`]), its TCP connections for
//! truncated answers ([`Runtime::connect`]) and its clock for every timeout, so there is no
//! blocking call, hidden thread or second runtime. It asks the name servers of its
//! [`ResolverConfig`], or of `/etc/resolv.conf` (read for each lookup: a small local file).
//!
//! Applications may plug in their own [`Resolver`] (e.g. one with a cache, or DNS over HTTPS):
//! [`ParseConnectionString::resolver`] and
//! [`ClientBuilder::resolver`](crate::client::ClientBuilder::resolver).
//!
//! [`ParseConnectionString`] is the action behind `ClientOptions::parse(uri).await` (each
//! adapter's `ClientOptionsExt`): it parses the URI and, for `mongodb+srv`, looks up the SRV and
//! TXT records and applies them ([`resolve_srv`]).

mod exchange;
mod parse;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::proto::dns::seedlist::MIN_RESCAN_INTERVAL;
pub use crate::proto::dns::{DnsError, RecordType, ResolverConfig, SrvRecord, TxtRecord};
pub use parse::{resolve_srv, ParseConnectionString};

use crate::proto::dns::{parse_resolv_conf, Answer, Lookup};
use crate::rt::{BoxFuture, Runtime};

/// Where the system's resolver configuration is read from.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// What the driver asks of DNS.
///
/// Implementations must not block the executor: return futures that wait on the runtime (or
/// on nothing).
pub trait Resolver: Send + Sync + 'static {
    /// The SRV records of `name` (`_mongodb._tcp.<host>`). None at all may be reported as
    /// `Ok(vec![])` or as [`DnsError::NotFound`].
    fn lookup_srv(&self, name: &str) -> BoxFuture<'static, Result<Vec<SrvRecord>, DnsError>>;

    /// The TXT records of `name`. None at all may be reported as `Ok(vec![])` or as
    /// [`DnsError::NotFound`] (both mean "no options").
    fn lookup_txt(&self, name: &str) -> BoxFuture<'static, Result<Vec<TxtRecord>, DnsError>>;

    /// The addresses of `host` to connect to on `port`, or `None` to leave host names to the
    /// runtime's resolver ([`Runtime::resolve`], the default).
    fn lookup_host(
        &self,
        host: &str,
        port: u16,
    ) -> Option<BoxFuture<'static, io::Result<Vec<SocketAddr>>>> {
        let _ = (host, port);
        None
    }
}

/// The driver's own stub resolver, over a [`Runtime`] (see the module docs).
///
/// With a [`ResolverConfig`] that names servers it also resolves host names (A, then AAAA
/// records, from those servers); a host they know no address for (NXDOMAIN or no record) is
/// left to the runtime's resolver. With the system's configuration, host names are always the
/// runtime's (which also reads `/etc/hosts`).
#[derive(Clone)]
pub struct DnsResolver {
    runtime: Arc<dyn Runtime>,
    config: ResolverConfig,
    system: PathBuf,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("runtime", &self.runtime.name())
            .field("config", &self.config)
            .finish()
    }
}

impl DnsResolver {
    /// A resolver with `config` on `runtime`.
    pub fn new(runtime: Arc<dyn Runtime>, config: ResolverConfig) -> Self {
        DnsResolver {
            runtime,
            config,
            system: PathBuf::from(RESOLV_CONF),
        }
    }

    /// Reads the system's configuration from `path` instead of `/etc/resolv.conf`.
    pub fn with_resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.system = path.into();
        self
    }

    /// The configuration in force for a lookup: this resolver's, with what it leaves to the
    /// system read from `/etc/resolv.conf`.
    pub fn effective_config(&self) -> Result<ResolverConfig, DnsError> {
        let needs_system = self.config.nameservers.is_empty()
            || self.config.timeout.is_none()
            || self.config.attempts.is_none();
        let system = if needs_system {
            match std::fs::read_to_string(&self.system) {
                Ok(text) => Some(parse_resolv_conf(&text)),
                Err(e) if self.config.nameservers.is_empty() => {
                    return Err(DnsError::Io {
                        message: format!(
                            "cannot read {} for the name servers: {e}",
                            self.system.display()
                        ),
                    })
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let config = self.config.resolved_with(system.as_ref());
        if config.nameservers.is_empty() {
            return Err(DnsError::NoNameservers);
        }
        Ok(config)
    }

    /// Looks up `name`'s records of `record_type`.
    pub fn lookup(
        &self,
        name: &str,
        record_type: RecordType,
    ) -> BoxFuture<'static, Result<Answer, DnsError>> {
        let lookup = self
            .effective_config()
            .and_then(|config| Lookup::new(&config, name, record_type));
        let runtime = self.runtime.clone();
        Box::pin(async move { exchange::run(&runtime, lookup?).await })
    }
}

impl Resolver for DnsResolver {
    fn lookup_srv(&self, name: &str) -> BoxFuture<'static, Result<Vec<SrvRecord>, DnsError>> {
        let answer = self.lookup(name, RecordType::Srv);
        Box::pin(async move { answer.await?.srv() })
    }

    fn lookup_txt(&self, name: &str) -> BoxFuture<'static, Result<Vec<TxtRecord>, DnsError>> {
        let answer = self.lookup(name, RecordType::Txt);
        Box::pin(async move { answer.await?.txt() })
    }

    fn lookup_host(
        &self,
        host: &str,
        port: u16,
    ) -> Option<BoxFuture<'static, io::Result<Vec<SocketAddr>>>> {
        if !self.config.has_nameservers() || host.parse::<IpAddr>().is_ok() {
            return None;
        }
        let this = self.clone();
        let host = host.to_owned();
        Some(Box::pin(async move {
            let mut ips = Vec::new();
            let mut failure = None;
            for record_type in [RecordType::A, RecordType::Aaaa] {
                match this.lookup(&host, record_type).await.and_then(|a| a.ips()) {
                    Ok(found) => ips.extend(found),
                    Err(DnsError::NotFound { .. }) => {}
                    Err(e) => failure = Some(e),
                }
            }
            if !ips.is_empty() {
                return Ok(ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect());
            }
            match failure {
                // The configured servers could not be asked: say so, rather than ask others.
                Some(e) => Err(io::Error::other(format!("resolving {host}: {e}"))),
                // They know no address for it: the runtime's resolver (/etc/hosts, ...) may.
                None => this.runtime.resolve(&host, port).await,
            }
        }))
    }
}

#[cfg(test)]
mod tests;
