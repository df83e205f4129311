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
