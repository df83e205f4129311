//! Types shared by the connection string parser, discovery, selection and the client.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// The address of a server: a TCP host and port, or a Unix domain socket path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerAddress {
    /// A host name or IP literal (IPv6 without brackets) and a port.
    Tcp { host: String, port: u16 },
    /// A Unix domain socket path (e.g. `/tmp/mongodb-27017.sock`).
    Unix { path: String },
}

impl ServerAddress {
    /// The default MongoDB port.
    pub const DEFAULT_PORT: u16 = 27017;

    /// A TCP address. Host names are compared case-insensitively, so they are lowercased.
    pub fn tcp(host: impl AsRef<str>, port: u16) -> Self {
        ServerAddress::Tcp {
            host: host.as_ref().to_ascii_lowercase(),
            port,
        }
    }

    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a path ending in `.sock`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty host".into());
        }
        if s.ends_with(".sock") {
            return Ok(ServerAddress::Unix {
                path: s.to_string(),
            });
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| format!("unterminated IPv6 literal in '{s}'"))?;
            let host = &rest[..end];
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p if p.starts_with(':') => Some(&p[1..]),
                _ => return Err(format!("unexpected characters after IPv6 literal in '{s}'")),
            };
            (host, port)
        } else {
            match s.rfind(':') {
                Some(i) if s[..i].contains(':') => {
                    return Err(format!("IPv6 literal must be enclosed in brackets: '{s}'"))
                }
                Some(i) => (&s[..i], Some(&s[i + 1..])),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(format!("empty host in '{s}'"));
        }
        let port = match port {
            None => Self::DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("invalid port in '{s}'")),
                Ok(p) => p,
            },
        };
        Ok(ServerAddress::tcp(host, port))
    }

    /// The host (or socket path).
    pub fn host(&self) -> &str {
        match self {
            ServerAddress::Tcp { host, .. } => host,
            ServerAddress::Unix { path } => path,
        }
    }

    /// The port, for TCP addresses.
    pub fn port(&self) -> Option<u16> {
        match self {
            ServerAddress::Tcp { port, .. } => Some(*port),
            ServerAddress::Unix { .. } => None,
        }
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix { path } => f.write_str(path),
        }
    }
}

/// A tag set: a server matches when it has every tag of the set.
pub type TagSet = HashMap<String, String>;

/// Which servers a read may go to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Copy, Default)]
pub enum ReadPreferenceMode {
    #[default]
    Primary,
    PrimaryPreferred,
    Secondary,
    SecondaryPreferred,
    Nearest,
}

impl ReadPreferenceMode {
    /// The name the server and the URI use (`primaryPreferred`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReadPreferenceMode::Primary => "primary",
            ReadPreferenceMode::PrimaryPreferred => "primaryPreferred",
            ReadPreferenceMode::Secondary => "secondary",
            ReadPreferenceMode::SecondaryPreferred => "secondaryPreferred",
            ReadPreferenceMode::Nearest => "nearest",
        }
    }

    /// Parses a mode name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "primary" => ReadPreferenceMode::Primary,
            "primarypreferred" => ReadPreferenceMode::PrimaryPreferred,
            "secondary" => ReadPreferenceMode::Secondary,
            "secondarypreferred" => ReadPreferenceMode::SecondaryPreferred,
            "nearest" => ReadPreferenceMode::Nearest,
            _ => return None,
        })
    }
}

/// A read preference: mode, tag sets and maximum staleness.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ReadPreference {
    pub mode: ReadPreferenceMode,
    /// Tag sets tried in order; the first that matches any server wins. Empty means "any".
    pub tag_sets: Vec<TagSet>,
    /// `maxStalenessSeconds`; `None` means no maximum.
    pub max_staleness: Option<Duration>,
    /// Hedged reads (deprecated by the server; carried for the `$readPreference` document only).
    pub hedge: Option<bool>,
}

impl ReadPreference {
    /// `primary`.
    pub fn primary() -> Self {
        Self::default()
    }

    /// A read preference of `mode` with no tags and no staleness limit.
    pub fn with_mode(mode: ReadPreferenceMode) -> Self {
        ReadPreference {
            mode,
            ..Default::default()
        }
    }
}

/// The read concern level.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReadConcernLevel {
    Local,
    Majority,
    Linearizable,
    Available,
    Snapshot,
    /// A level this driver does not know; sent as is.
    Custom(String),
}

impl ReadConcernLevel {
    /// The level's name.
    pub fn as_str(&self) -> &str {
        match self {
            ReadConcernLevel::Local => "local",
            ReadConcernLevel::Majority => "majority",
            ReadConcernLevel::Linearizable => "linearizable",
            ReadConcernLevel::Available => "available",
            ReadConcernLevel::Snapshot => "snapshot",
            ReadConcernLevel::Custom(s) => s,
        }
    }

    /// Parses a level name.
    pub fn parse(s: &str) -> Self {
        match s {
            "local" => ReadConcernLevel::Local,
            "majority" => ReadConcernLevel::Majority,
            "linearizable" => ReadConcernLevel::Linearizable,
            "available" => ReadConcernLevel::Available,
            "snapshot" => ReadConcernLevel::Snapshot,
            other => ReadConcernLevel::Custom(other.to_string()),
        }
    }
}

/// A read concern.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReadConcern {
    /// `None` is the server's default.
    pub level: Option<ReadConcernLevel>,
}

/// The `w` of a write concern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Acknowledgment {
    /// `w: <n>`.
    Nodes(u32),
    /// `w: "majority"`.
    Majority,
    /// `w: "<tag set name>"`.
    Custom(String),
}

/// A write concern.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct WriteConcern {
    pub w: Option<Acknowledgment>,
    /// `wtimeoutMS`.
    pub w_timeout: Option<Duration>,
    /// `journal` (`j`).
    pub journal: Option<bool>,
}

impl WriteConcern {
    /// Whether writes with this concern are acknowledged (anything but `w: 0` without `j: true`).
    pub fn is_acknowledged(&self) -> bool {
        !matches!(self.w, Some(Acknowledgment::Nodes(0))) || self.journal == Some(true)
    }

    /// Whether every field is unset (the server's default).
    pub fn is_empty(&self) -> bool {
        self.w.is_none() && self.w_timeout.is_none() && self.journal.is_none()
    }
}

/// An authentication mechanism.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Copy)]
pub enum AuthMechanism {
    ScramSha1,
    ScramSha256,
    Plain,
    MongoDbX509,
    Gssapi,
    MongoDbAws,
    MongoDbOidc,
    /// MONGODB-CR (removed from servers; recognised only to report it).
    MongoDbCr,
}

impl AuthMechanism {
    /// The mechanism's name as MongoDB spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMechanism::ScramSha1 => "SCRAM-SHA-1",
            AuthMechanism::ScramSha256 => "SCRAM-SHA-256",
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::MongoDbX509 => "MONGODB-X509",
            AuthMechanism::Gssapi => "GSSAPI",
            AuthMechanism::MongoDbAws => "MONGODB-AWS",
            AuthMechanism::MongoDbOidc => "MONGODB-OIDC",
            AuthMechanism::MongoDbCr => "MONGODB-CR",
        }
    }

    /// Parses a mechanism name (exact, as the spec requires).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SCRAM-SHA-1" => AuthMechanism::ScramSha1,
            "SCRAM-SHA-256" => AuthMechanism::ScramSha256,
            "PLAIN" => AuthMechanism::Plain,
            "MONGODB-X509" => AuthMechanism::MongoDbX509,
            "GSSAPI" => AuthMechanism::Gssapi,
            "MONGODB-AWS" => AuthMechanism::MongoDbAws,
            "MONGODB-OIDC" => AuthMechanism::MongoDbOidc,
            "MONGODB-CR" => AuthMechanism::MongoDbCr,
            _ => return None,
        })
    }
}

/// Credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Default)]
pub struct Credential {
    pub username: Option<String>,
    pub password: Option<String>,
    /// The database to authenticate against (`authSource`).
    pub source: Option<String>,
    pub mechanism: Option<AuthMechanism>,
    /// `authMechanismProperties`.
    pub mechanism_properties: Option<bson::Document>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("source", &self.source)
            .field("mechanism", &self.mechanism)
            .field("mechanism_properties", &self.mechanism_properties)
            .finish()
    }
}

/// A wire compressor the client offers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Copy)]
pub enum Compressor {
    Snappy,
    /// zlib with an optional level (-1 to 9; -1 is zlib's default).
    Zlib {
        level: Option<i32>,
    },
    Zstd,
}

impl Compressor {
    /// The name used in the handshake and the URI.
    pub fn name(&self) -> &'static str {
        match self {
            Compressor::Snappy => "snappy",
            Compressor::Zlib { .. } => "zlib",
            Compressor::Zstd => "zstd",
        }
    }

    /// The OP_COMPRESSED compressor id.
    pub fn id(&self) -> u8 {
        match self {
            Compressor::Snappy => 1,
            Compressor::Zlib { .. } => 2,
            Compressor::Zstd => 3,
        }
    }
}

/// TLS settings from the connection string or the application.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TlsOptions {
    /// `tlsCAFile`: PEM file of trusted CA certificates (else the bundled web PKI roots).
    pub ca_file: Option<String>,
    /// `tlsCertificateKeyFile`: PEM file with the client certificate and private key.
    pub cert_key_file: Option<String>,
    /// `tlsCertificateKeyFilePassword`. Never printed.
    pub cert_key_file_password: Option<Redacted>,
    /// `tlsAllowInvalidCertificates`.
    pub allow_invalid_certificates: Option<bool>,
    /// `tlsAllowInvalidHostnames`.
    pub allow_invalid_hostnames: Option<bool>,
    /// `tlsInsecure` (implies both of the above).
    pub insecure: Option<bool>,
    /// `tlsDisableOCSPEndpointCheck`.
    pub disable_ocsp_endpoint_check: Option<bool>,
    /// `tlsDisableCertificateRevocationCheck`.
    pub disable_certificate_revocation_check: Option<bool>,
}

/// A secret string whose `Debug` is `<redacted>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `serverMonitoringMode`: how servers are monitored (SDAM).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Copy, Default)]
pub enum ServerMonitoringMode {
    /// Use the streaming protocol, except on FaaS platforms (the default).
    #[default]
    Auto,
    /// Always use the streaming protocol when the server supports it.
    Stream,
    /// Always poll.
    Poll,
}

impl ServerMonitoringMode {
    /// The option value (`auto`, `stream`, `poll`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ServerMonitoringMode::Auto => "auto",
            ServerMonitoringMode::Stream => "stream",
            ServerMonitoringMode::Poll => "poll",
        }
    }

    /// Parses an option value (exact, lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => ServerMonitoringMode::Auto,
            "stream" => ServerMonitoringMode::Stream,
            "poll" => ServerMonitoringMode::Poll,
            _ => return None,
        })
    }
}

/// `uuidRepresentation`: how legacy UUIDs are encoded (a driver extension carried for the codec
/// layer).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Copy)]
pub enum UuidRepresentation {
    Unspecified,
    Standard,
    JavaLegacy,
    CSharpLegacy,
    PythonLegacy,
}

impl UuidRepresentation {
    /// The option value.
    pub fn as_str(&self) -> &'static str {
        match self {
            UuidRepresentation::Unspecified => "unspecified",
            UuidRepresentation::Standard => "standard",
            UuidRepresentation::JavaLegacy => "javaLegacy",
            UuidRepresentation::CSharpLegacy => "csharpLegacy",
            UuidRepresentation::PythonLegacy => "pythonLegacy",
        }
    }

    /// Parses an option value, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unspecified" => UuidRepresentation::Unspecified,
            "standard" => UuidRepresentation::Standard,
            "javalegacy" => UuidRepresentation::JavaLegacy,
            "csharplegacy" => UuidRepresentation::CSharpLegacy,
            "pythonlegacy" => UuidRepresentation::PythonLegacy,
            _ => return None,
        })
    }
}

/// What a `mongodb+srv://` URI asks for. Resolving it (SRV and TXT lookups) is not the parser's
/// job.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SrvInfo {
    /// The host name to look up `_{service_name}._tcp.{hostname}` for (lowercased).
    pub hostname: String,
    /// `srvServiceName` (default `mongodb`).
    pub service_name: String,
    /// `srvMaxHosts`; 0 (the default) means no limit.
    pub max_hosts: u32,
    /// The lowest TTL of the SRV records of the lookup that filled `hosts`; the first SRV rescan
    /// is due that long after it (no less than 60 s). `None` while unresolved.
    pub min_ttl: Option<std::time::Duration>,
}

impl SrvInfo {
    /// The default `srvServiceName`.
    pub const DEFAULT_SERVICE_NAME: &'static str = "mongodb";

    /// The DNS name to query for SRV records.
    pub fn srv_query_name(&self) -> String {
        format!("_{}._tcp.{}", self.service_name, self.hostname)
    }
}

/// SOCKS5 proxy settings (`proxyHost`, `proxyPort`, `proxyUsername`, `proxyPassword`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProxyOptions {
    pub host: String,
    /// `None` means the default, 1080.
    pub port: Option<u16>,
    pub username: Option<String>,
    /// Never printed.
    pub password: Option<Redacted>,
}

impl ProxyOptions {
    /// The default SOCKS5 port.
    pub const DEFAULT_PORT: u16 = 1080;

    /// The port to connect to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(Self::DEFAULT_PORT)
    }
}

/// Everything a client is configured with: the result of parsing a connection string, or built in
/// code with [`ClientOptions::builder`].
///
/// Fields are `None` when the option was not given; the `effective_*` methods give the value in
/// force (the option, else the spec's default). `Debug` never shows a password.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ClientOptions {
    /// The seed list. For `mongodb+srv` it is empty until the SRV lookup fills it (a client
    /// given options with an SRV host and no hosts resolves them when it starts).
    pub hosts: Vec<ServerAddress>,
    /// Set for `mongodb+srv://` URIs.
    pub srv: Option<SrvInfo>,
    /// How `mongodb+srv` names (and, with name servers of its own, host names) are resolved;
    /// `None` means the system's configuration.
    pub resolver_config: Option<crate::dns::ResolverConfig>,
    /// Credentials, with the auth spec's per-mechanism defaults (source, properties) filled in.
    pub credential: Option<Credential>,
    /// The database in the URI path.
    pub default_database: Option<String>,
    /// `authSource` as given, whether or not credentials are configured (it is also the
    /// credential's `source` when it applies).
    pub auth_source: Option<String>,
    /// `appname`.
    pub app_name: Option<String>,
    /// `readPreference`, `readPreferenceTags`, `maxStalenessSeconds`.
    pub read_preference: Option<ReadPreference>,
    /// `readConcernLevel`.
    pub read_concern: Option<ReadConcern>,
    /// `w`, `wTimeoutMS`, `journal`.
    pub write_concern: Option<WriteConcern>,
    /// `connectTimeoutMS`; zero means no timeout.
    pub connect_timeout: Option<Duration>,
    /// `socketTimeoutMS`; zero means no timeout.
    pub socket_timeout: Option<Duration>,
    /// `serverSelectionTimeoutMS`.
    pub server_selection_timeout: Option<Duration>,
    /// `serverSelectionTryOnce` (single-threaded drivers only; carried, not used).
    pub server_selection_try_once: Option<bool>,
    /// `serverMonitoringMode`.
    pub server_monitoring_mode: Option<ServerMonitoringMode>,
    /// `heartbeatFrequencyMS` (at least 500 ms).
    pub heartbeat_frequency: Option<Duration>,
    /// `localThresholdMS`.
    pub local_threshold: Option<Duration>,
    /// `maxPoolSize`; zero means no maximum.
    pub max_pool_size: Option<u32>,
    /// `minPoolSize`.
    pub min_pool_size: Option<u32>,
    /// `maxConnecting` (positive).
    pub max_connecting: Option<u32>,
    /// `maxIdleTimeMS`; zero means no limit.
    pub max_idle_time: Option<Duration>,
    /// `waitQueueTimeoutMS` (deprecated in favour of `timeoutMS`).
    pub wait_queue_timeout: Option<Duration>,
    /// `compressors` in preference order, with `zlibCompressionLevel` folded into `Zlib`.
    pub compressors: Option<Vec<Compressor>>,
    /// `tls` / `ssl`. `mongodb+srv` sets it to `true` unless the URI says otherwise.
    pub tls: Option<bool>,
    /// The `tls*` options.
    pub tls_options: TlsOptions,
    /// `directConnection`.
    pub direct_connection: Option<bool>,
    /// `loadBalanced`.
    pub load_balanced: Option<bool>,
    /// `replicaSet`.
    pub repl_set_name: Option<String>,
    /// `retryReads`.
    pub retry_reads: Option<bool>,
    /// `retryWrites`.
    pub retry_writes: Option<bool>,
    /// `timeoutMS`; zero means no limit.
    pub timeout: Option<Duration>,
    /// `uuidRepresentation`.
    pub uuid_representation: Option<UuidRepresentation>,
    /// SOCKS5 proxy.
    pub proxy: Option<ProxyOptions>,
    /// `maxAdaptiveRetries` (client backpressure).
    pub max_adaptive_retries: Option<u32>,
    /// `enableOverloadRetargeting` (client backpressure).
    pub enable_overload_retargeting: Option<bool>,
}

impl ClientOptions {
    /// Default `connectTimeoutMS`.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default `serverSelectionTimeoutMS`.
    pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default `heartbeatFrequencyMS`.
    pub const DEFAULT_HEARTBEAT_FREQUENCY: Duration = Duration::from_secs(10);
    /// Smallest allowed `heartbeatFrequencyMS`.
    pub const MIN_HEARTBEAT_FREQUENCY: Duration = Duration::from_millis(500);
    /// Default `localThresholdMS`.
    pub const DEFAULT_LOCAL_THRESHOLD: Duration = Duration::from_millis(15);
    /// Default `maxPoolSize`.
    pub const DEFAULT_MAX_POOL_SIZE: u32 = 100;
    /// Default `maxConnecting`.
    pub const DEFAULT_MAX_CONNECTING: u32 = 2;
    /// Default `maxAdaptiveRetries`.
    pub const DEFAULT_MAX_ADAPTIVE_RETRIES: u32 = 2;

    /// A builder starting from the defaults (one `localhost:27017` host unless hosts are set).
    pub fn builder() -> ClientOptionsBuilder {
        ClientOptionsBuilder {
            options: ClientOptions::default(),
        }
    }

    /// The connect timeout in force; `None` means no timeout (`connectTimeoutMS=0`).
    pub fn effective_connect_timeout(&self) -> Option<Duration> {
        non_zero(
            self.connect_timeout
                .unwrap_or(Self::DEFAULT_CONNECT_TIMEOUT),
        )
    }

    /// The socket timeout in force; `None` means no timeout (the default).
    pub fn effective_socket_timeout(&self) -> Option<Duration> {
        self.socket_timeout.and_then(non_zero)
    }

    /// The server selection timeout in force.
    pub fn effective_server_selection_timeout(&self) -> Duration {
        self.server_selection_timeout
            .unwrap_or(Self::DEFAULT_SERVER_SELECTION_TIMEOUT)
    }

    /// The heartbeat frequency in force.
    pub fn effective_heartbeat_frequency(&self) -> Duration {
        self.heartbeat_frequency
            .unwrap_or(Self::DEFAULT_HEARTBEAT_FREQUENCY)
    }

    /// The local threshold in force.
    pub fn effective_local_threshold(&self) -> Duration {
        self.local_threshold
            .unwrap_or(Self::DEFAULT_LOCAL_THRESHOLD)
    }

    /// The maximum pool size in force; `None` means no maximum (`maxPoolSize=0`).
    pub fn effective_max_pool_size(&self) -> Option<u32> {
        match self.max_pool_size.unwrap_or(Self::DEFAULT_MAX_POOL_SIZE) {
            0 => None,
            n => Some(n),
        }
    }

    /// The minimum pool size in force.
    pub fn effective_min_pool_size(&self) -> u32 {
        self.min_pool_size.unwrap_or(0)
    }

    /// The `maxConnecting` in force.
    pub fn effective_max_connecting(&self) -> u32 {
        self.max_connecting.unwrap_or(Self::DEFAULT_MAX_CONNECTING)
    }

    /// The idle time after which pooled connections are closed; `None` means never.
    pub fn effective_max_idle_time(&self) -> Option<Duration> {
        self.max_idle_time.and_then(non_zero)
    }

    /// Whether connections use TLS (`tls`/`ssl`, else `true` for `mongodb+srv`, else `false`).
    pub fn tls_enabled(&self) -> bool {
        self.tls.unwrap_or(self.srv.is_some())
    }

    /// Whether the hosts are still to be found by an SRV lookup (`mongodb+srv` options whose
    /// `hosts` are empty).
    pub fn needs_srv_resolution(&self) -> bool {
        self.srv.is_some() && self.hosts.is_empty()
    }

    /// Whether reads are retried (default `true`).
    pub fn effective_retry_reads(&self) -> bool {
        self.retry_reads.unwrap_or(true)
    }

    /// Whether writes are retried (default `true`).
    pub fn effective_retry_writes(&self) -> bool {
        self.retry_writes.unwrap_or(true)
    }

    /// The read preference in force (default `primary`).
    pub fn effective_read_preference(&self) -> ReadPreference {
        self.read_preference.clone().unwrap_or_default()
    }

    /// The server monitoring mode in force (default `auto`).
    pub fn effective_server_monitoring_mode(&self) -> ServerMonitoringMode {
        self.server_monitoring_mode.unwrap_or_default()
    }

    /// The overload retry budget in force (default 2).
    pub fn effective_max_adaptive_retries(&self) -> u32 {
        self.max_adaptive_retries
            .unwrap_or(Self::DEFAULT_MAX_ADAPTIVE_RETRIES)
    }
}

impl ClientOptions {
    /// Checks the rules that relate options to each other (URI options, load balancer, SRV,
    /// read/write concern, max staleness, pool and TLS rules). The connection string parser calls
    /// it; call it again after changing options in code.
    pub fn validate(&self) -> crate::Result<()> {
        let err = |m: &str| Err(crate::Error::invalid_argument(m));
        if self.hosts.is_empty() && self.srv.is_none() {
            return err("at least one host is required");
        }
        if self.direct_connection == Some(true) {
            if self.hosts.len() > 1 {
                return err("directConnection=true cannot be used with multiple hosts");
            }
            if self.srv.is_some() {
                return err("directConnection=true cannot be used with mongodb+srv");
            }
        }
        let srv_max_hosts = self.srv.as_ref().map_or(0, |s| s.max_hosts);
        if self.load_balanced == Some(true) {
            if self.hosts.len() > 1 {
                return err("loadBalanced=true cannot be used with multiple hosts");
            }
            if self.repl_set_name.is_some() {
                return err("loadBalanced=true cannot be used with replicaSet");
            }
            if self.direct_connection == Some(true) {
                return err("loadBalanced=true cannot be used with directConnection=true");
            }
            if srv_max_hosts > 0 {
                return err("loadBalanced=true cannot be used with a positive srvMaxHosts");
            }
        }
        if srv_max_hosts > 0 && self.repl_set_name.is_some() {
            return err("a positive srvMaxHosts cannot be used with replicaSet");
        }
        if let Some(wc) = &self.write_concern {
            if wc.w == Some(Acknowledgment::Nodes(0)) && wc.journal == Some(true) {
                return err("write concern w=0 cannot be combined with journal=true");
            }
        }
        if let Some(rp) = &self.read_preference {
            if rp.mode == ReadPreferenceMode::Primary {
                if rp.tag_sets.iter().any(|t| !t.is_empty()) {
                    return err("read preference tags cannot be used with mode 'primary'");
                }
                if rp.max_staleness.is_some_and(|d| !d.is_zero()) {
                    return err("maxStalenessSeconds cannot be used with mode 'primary'");
                }
            }
        }
        if self
            .heartbeat_frequency
            .is_some_and(|h| h < Self::MIN_HEARTBEAT_FREQUENCY)
        {
            return err("heartbeatFrequencyMS must be at least 500");
        }
        if let (Some(min), Some(max)) = (self.min_pool_size, self.max_pool_size) {
            if max != 0 && min > max {
                return err("minPoolSize must not be greater than maxPoolSize");
            }
        }
        if self.max_connecting == Some(0) {
            return err("maxConnecting must be positive");
        }
        let t = &self.tls_options;
        let conflicts = [
            (
                t.insecure.is_some(),
                t.allow_invalid_certificates.is_some(),
                "tlsInsecure",
                "tlsAllowInvalidCertificates",
            ),
            (
                t.insecure.is_some(),
                t.allow_invalid_hostnames.is_some(),
                "tlsInsecure",
                "tlsAllowInvalidHostnames",
            ),
            (
                t.insecure.is_some(),
                t.disable_ocsp_endpoint_check.is_some(),
                "tlsInsecure",
                "tlsDisableOCSPEndpointCheck",
            ),
            (
                t.insecure.is_some(),
                t.disable_certificate_revocation_check.is_some(),
                "tlsInsecure",
                "tlsDisableCertificateRevocationCheck",
            ),
            (
                t.allow_invalid_certificates.is_some(),
                t.disable_ocsp_endpoint_check.is_some(),
                "tlsAllowInvalidCertificates",
                "tlsDisableOCSPEndpointCheck",
            ),
            (
                t.allow_invalid_certificates.is_some(),
                t.disable_certificate_revocation_check.is_some(),
                "tlsAllowInvalidCertificates",
                "tlsDisableCertificateRevocationCheck",
            ),
            (
                t.disable_ocsp_endpoint_check.is_some(),
                t.disable_certificate_revocation_check.is_some(),
                "tlsDisableOCSPEndpointCheck",
                "tlsDisableCertificateRevocationCheck",
            ),
        ];
        for (a, b, na, nb) in conflicts {
            if a && b {
                return Err(crate::Error::invalid_argument(format!(
                    "{na} and {nb} cannot both be set"
                )));
            }
        }
        for c in self.compressors.iter().flatten() {
            if let Compressor::Zlib { level: Some(l) } = c {
                if !(-1..=9).contains(l) {
                    return err("zlibCompressionLevel must be between -1 and 9");
                }
            }
        }
        if let Some(p) = &self.proxy {
            if p.username.is_some() != p.password.is_some() {
                return err("proxyUsername and proxyPassword must be given together");
            }
        }
        Ok(())
    }
}

fn non_zero(d: Duration) -> Option<Duration> {
    if d.is_zero() {
        None
    } else {
        Some(d)
    }
}

/// Builds [`ClientOptions`] in code; [`build`](ClientOptionsBuilder::build) checks the same
/// cross-option rules as the connection string parser.
#[derive(Clone, Debug, Default)]
pub struct ClientOptionsBuilder {
    options: ClientOptions,
}

macro_rules! builder_setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl ClientOptionsBuilder {
            $(
                $(#[$doc])*
                pub fn $name(mut self, value: impl Into<$ty>) -> Self {
                    self.options.$name = Some(value.into());
                    self
                }
            )*
        }
    };
}

builder_setters! {
    /// Sets the SRV lookup.
    srv: SrvInfo,
    /// Sets the credential (used as given: no defaults are filled in).
    credential: Credential,
    /// Sets the default database.
    default_database: String,
    /// Sets `appname`.
    app_name: String,
    /// Sets the read preference.
    read_preference: ReadPreference,
    /// Sets the read concern.
    read_concern: ReadConcern,
    /// Sets the write concern.
    write_concern: WriteConcern,
    /// Sets `connectTimeoutMS`.
    connect_timeout: Duration,
    /// Sets `socketTimeoutMS`.
    socket_timeout: Duration,
    /// Sets `serverSelectionTimeoutMS`.
    server_selection_timeout: Duration,
    /// Sets `serverSelectionTryOnce`.
    server_selection_try_once: bool,
    /// Sets `serverMonitoringMode`.
    server_monitoring_mode: ServerMonitoringMode,
    /// Sets `heartbeatFrequencyMS`.
    heartbeat_frequency: Duration,
    /// Sets `localThresholdMS`.
    local_threshold: Duration,
    /// Sets `maxPoolSize`.
    max_pool_size: u32,
    /// Sets `minPoolSize`.
    min_pool_size: u32,
    /// Sets `maxConnecting`.
    max_connecting: u32,
    /// Sets `maxIdleTimeMS`.
    max_idle_time: Duration,
    /// Sets `waitQueueTimeoutMS`.
    wait_queue_timeout: Duration,
    /// Sets the compressors.
    compressors: Vec<Compressor>,
    /// Sets `tls`.
    tls: bool,
    /// Sets `directConnection`.
    direct_connection: bool,
    /// Sets `loadBalanced`.
    load_balanced: bool,
    /// Sets `replicaSet`.
    repl_set_name: String,
    /// Sets `retryReads`.
    retry_reads: bool,
    /// Sets `retryWrites`.
    retry_writes: bool,
    /// Sets `timeoutMS`.
    timeout: Duration,
    /// Sets `uuidRepresentation`.
    uuid_representation: UuidRepresentation,
    /// Sets the SOCKS5 proxy.
    proxy: ProxyOptions,
    /// Sets `maxAdaptiveRetries`.
    max_adaptive_retries: u32,
    /// Sets `enableOverloadRetargeting`.
    enable_overload_retargeting: bool,
}

impl ClientOptionsBuilder {
    /// Sets the seed list.
    pub fn hosts(mut self, hosts: impl IntoIterator<Item = ServerAddress>) -> Self {
        self.options.hosts = hosts.into_iter().collect();
        self
    }

    /// Sets the `tls*` options.
    pub fn tls_options(mut self, tls_options: TlsOptions) -> Self {
        self.options.tls_options = tls_options;
        self
    }

    /// Checks the options and returns them. With no hosts and no SRV, the seed list is
    /// `localhost:27017`.
    pub fn build(mut self) -> crate::Result<ClientOptions> {
        if self.options.hosts.is_empty() && self.options.srv.is_none() {
            self.options
                .hosts
                .push(ServerAddress::tcp("localhost", ServerAddress::DEFAULT_PORT));
        }
        self.options.validate()?;
        Ok(self.options)
    }
}
