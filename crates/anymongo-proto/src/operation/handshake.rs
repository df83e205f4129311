//! The connection handshake: the `hello` command with client metadata, and what its reply says
//! about the server (limits, wire versions, negotiated compressor, auth mechanisms).

use bson::{doc, Bson, Document};

use crate::error::{Error, ErrorKind, Result};
use crate::options::Compressor;

/// The oldest wire version this driver speaks (MongoDB 4.0).
pub const MIN_WIRE_VERSION: i32 = 7;
/// The newest wire version this driver knows (MongoDB 8.2). Discovery
/// ([`sdam`](crate::sdam)) judges compatibility with this same range.
pub const MAX_WIRE_VERSION: i32 = 27;

/// What goes into the handshake's `hello`.
#[derive(Clone, Debug, Default)]
pub struct HandshakeRequest {
    /// `appName`.
    pub app_name: Option<String>,
    /// The runtime adapter's name, reported in `client.platform`.
    pub runtime_name: String,
    /// Compressors the client offers, in preference order.
    pub compressors: Vec<Compressor>,
    /// `loadBalanced=true`.
    pub load_balanced: bool,
    /// `saslSupportedMechs: "<db>.<user>"`, when a SCRAM mechanism must be negotiated.
    pub sasl_supported_mechs: Option<String>,
    /// `speculativeAuthenticate`, the first step of authentication sent with the handshake.
    pub speculative_authenticate: Option<Document>,
}

impl HandshakeRequest {
    /// Whether the first handshake must use OP_MSG `hello` instead of legacy OP_QUERY `isMaster`.
    pub fn uses_op_msg(&self) -> bool {
        self.load_balanced
    }

    /// The handshake command. `legacy` selects `isMaster` (for OP_QUERY) over `hello`.
    pub fn command(&self, legacy: bool) -> Document {
        let mut cmd = if legacy {
            doc! { "isMaster": 1, "helloOk": true }
        } else {
            doc! { "hello": 1 }
        };
        cmd.insert("client", self.client_metadata());
        let names: Vec<Bson> = self
            .compressors
            .iter()
            .map(|c| Bson::String(c.name().to_string()))
            .collect();
        cmd.insert("compression", names);
        if self.load_balanced {
            cmd.insert("loadBalanced", true);
        }
        if let Some(mechs) = &self.sasl_supported_mechs {
            cmd.insert("saslSupportedMechs", mechs.clone());
        }
        if let Some(spec) = &self.speculative_authenticate {
            cmd.insert("speculativeAuthenticate", spec.clone());
        }
        cmd
    }

    /// The `client` metadata document of the handshake spec.
    pub fn client_metadata(&self) -> Document {
        let mut md = Document::new();
        if let Some(name) = &self.app_name {
            md.insert("application", doc! { "name": name.clone() });
        }
        md.insert(
            "driver",
            doc! { "name": "anymongo", "version": env!("CARGO_PKG_VERSION") },
        );
        md.insert(
            "os",
            doc! {
                "type": os_type(),
                "name": std::env::consts::OS,
                "architecture": std::env::consts::ARCH,
            },
        );
        md.insert("platform", format!("Rust / {}", self.runtime_name));
        md
    }
}

fn os_type() -> &'static str {
    match std::env::consts::OS {
        "linux" | "android" => "Linux",
        "macos" | "ios" => "Darwin",
        "windows" => "Windows",
        "freebsd" | "openbsd" | "netbsd" | "dragonfly" => "BSD",
        _ => "Unix",
    }
}

/// What a handshake reply says about the server, for the life of the connection.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamDescription {
    pub min_wire_version: i32,
    pub max_wire_version: i32,
    pub max_bson_object_size: i64,
    pub max_message_size_bytes: i64,
    pub max_write_batch_size: i64,
    /// The server accepts OP_MSG `hello` (so monitors may use it).
    pub hello_ok: bool,
    /// `logicalSessionTimeoutMinutes`; `None` means sessions are not supported.
    pub logical_session_timeout_minutes: Option<i64>,
    /// The first of our compressors the server also listed.
    pub compressor: Option<Compressor>,
    /// `saslSupportedMechs` from the reply.
    pub sasl_supported_mechs: Option<Vec<String>>,
    /// `speculativeAuthenticate` from the reply.
    pub speculative_authenticate: Option<Document>,
    /// `msg: "isdbgrid"`: the server is a mongos.
    pub is_mongos: bool,
    /// `setName`, for replica set members.
    pub set_name: Option<String>,
    /// The server's id for the connection (`connectionId`).
    pub server_connection_id: Option<i64>,
    /// `serviceId` (load-balanced mode).
    pub service_id: Option<bson::oid::ObjectId>,
}

impl StreamDescription {
    /// Parses a successful handshake reply, checking wire-version compatibility and choosing
    /// the compressor: the first of `offered` that the server also listed.
    pub fn from_reply(reply: &Document, offered: &[Compressor]) -> Result<Self> {
        let description = Self::parse(reply, offered)?;
        description.check_wire_version()?;
        Ok(description)
    }

    /// Refuses a server whose wire-version range does not overlap this driver's
    /// ([`MIN_WIRE_VERSION`]..=[`MAX_WIRE_VERSION`]) with an `IncompatibleServer` error.
    pub fn check_wire_version(&self) -> Result<()> {
        let (min_wire_version, max_wire_version) = (self.min_wire_version, self.max_wire_version);
        if min_wire_version > MAX_WIRE_VERSION {
            return Err(Error::new(ErrorKind::IncompatibleServer {
                message: format!(
                    "the server requires wire version {min_wire_version}, but this version of \
                     anymongo only supports up to {MAX_WIRE_VERSION}"
                ),
            }));
        }
        if max_wire_version < MIN_WIRE_VERSION {
            return Err(Error::new(ErrorKind::IncompatibleServer {
                message: format!(
                    "the server reports wire version {max_wire_version}, but this version of \
                     anymongo requires at least {MIN_WIRE_VERSION} (MongoDB 4.0)"
                ),
            }));
        }
        Ok(())
    }

    /// Parses a successful handshake reply without judging wire-version compatibility (a
    /// monitor hands the reply to discovery, which marks the topology incompatible instead).
    pub fn parse(reply: &Document, offered: &[Compressor]) -> Result<Self> {
        let int = |key: &str| -> Option<i64> {
            match reply.get(key)? {
                Bson::Int32(v) => Some(i64::from(*v)),
                Bson::Int64(v) => Some(*v),
                Bson::Double(v) if v.fract() == 0.0 => Some(*v as i64),
                _ => None,
            }
        };
        let positive = |key: &str| int(key).filter(|&v| v > 0);
        let min_wire_version = int("minWireVersion").unwrap_or(0) as i32;
        let max_wire_version = int("maxWireVersion").unwrap_or(0) as i32;
        let server_compressors: Vec<&str> = match reply.get_array("compression") {
            Ok(list) => list.iter().filter_map(Bson::as_str).collect(),
            Err(_) => Vec::new(),
        };
        let compressor = offered
            .iter()
            .find(|c| server_compressors.contains(&c.name()))
            .copied();
        let sasl_supported_mechs = reply.get_array("saslSupportedMechs").ok().map(|list| {
            list.iter()
                .filter_map(Bson::as_str)
                .map(str::to_string)
                .collect()
        });
        Ok(StreamDescription {
            min_wire_version,
            max_wire_version,
            // A limit that is not positive means nothing: the defaults the handshake
            // specification gives for a server that sends none.
            max_bson_object_size: positive("maxBsonObjectSize").unwrap_or(16 * 1024 * 1024),
            max_message_size_bytes: positive("maxMessageSizeBytes").unwrap_or(48_000_000),
            max_write_batch_size: positive("maxWriteBatchSize").unwrap_or(100_000),
            hello_ok: reply.get_bool("helloOk").unwrap_or(false),
            logical_session_timeout_minutes: int("logicalSessionTimeoutMinutes"),
            compressor,
            sasl_supported_mechs,
            speculative_authenticate: reply.get_document("speculativeAuthenticate").ok().cloned(),
            is_mongos: reply.get_str("msg").ok() == Some("isdbgrid"),
            set_name: reply.get_str("setName").ok().map(str::to_string),
            server_connection_id: int("connectionId"),
            service_id: reply.get_object_id("serviceId").ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_op_msg_commands() {
        let req = HandshakeRequest {
            app_name: Some("app".into()),
            runtime_name: "test-rt".into(),
            compressors: vec![Compressor::Zstd, Compressor::Snappy],
            ..Default::default()
        };
        let legacy = req.command(true);
        assert_eq!(legacy.get_i32("isMaster").unwrap(), 1);
        assert!(legacy.get_bool("helloOk").unwrap());
        let md = legacy.get_document("client").unwrap();
        let driver = md.get_document("driver").unwrap();
        assert_eq!(driver.get_str("name").unwrap(), "anymongo");
        let application = md.get_document("application").unwrap();
        assert_eq!(application.get_str("name").unwrap(), "app");
        assert_eq!(md.get_str("platform").unwrap(), "Rust / test-rt");
        let comp = legacy.get_array("compression").unwrap();
        assert_eq!(comp, &vec![Bson::from("zstd"), Bson::from("snappy")]);
        let modern = req.command(false);
        assert_eq!(modern.get_i32("hello").unwrap(), 1);
        assert!(!modern.contains_key("isMaster"));
    }

    #[test]
    fn description_negotiates_compressor_and_limits() {
        let reply = doc! {
            "ok": 1, "isWritablePrimary": true, "minWireVersion": 0, "maxWireVersion": 21,
            "maxMessageSizeBytes": 1000, "compression": ["snappy", "zlib"], "helloOk": true,
        };
        let offered = [
            Compressor::Zstd,
            Compressor::Zlib { level: Some(3) },
            Compressor::Snappy,
        ];
        let d = StreamDescription::from_reply(&reply, &offered).unwrap();
        assert_eq!(d.compressor, Some(Compressor::Zlib { level: Some(3) }));
        assert_eq!(d.max_message_size_bytes, 1000);
        assert!(d.hello_ok);
        assert_eq!(d.logical_session_timeout_minutes, None);
        // Limits that are not positive are the defaults (-1 was used as is, and a too-large
        // document reported as over "the server's maximum of 1").
        let nonsense = doc! {
            "ok": 1, "maxWireVersion": 21, "maxBsonObjectSize": -1,
            "maxMessageSizeBytes": 0, "maxWriteBatchSize": -5,
        };
        let d = StreamDescription::from_reply(&nonsense, &[]).unwrap();
        assert_eq!(d.max_bson_object_size, 16 * 1024 * 1024);
        assert_eq!(d.max_message_size_bytes, 48_000_000);
        assert_eq!(d.max_write_batch_size, 100_000);
    }

    #[test]
    fn incompatible_wire_versions_are_refused() {
        let too_old = doc! { "ok": 1, "minWireVersion": 0, "maxWireVersion": 6 };
        let err = StreamDescription::from_reply(&too_old, &[]).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::IncompatibleServer { .. }),
            "{err}"
        );
        let too_new = doc! { "ok": 1, "minWireVersion": 99, "maxWireVersion": 100 };
        let err = StreamDescription::from_reply(&too_new, &[]).unwrap_err();
        assert!(err.to_string().contains("99"), "{err}");
        // `parse` leaves the judgement to the caller (monitors hand the reply to discovery).
        let parsed = StreamDescription::parse(&too_old, &[]).unwrap();
        assert_eq!(parsed.max_wire_version, 6);
        assert!(matches!(
            parsed.check_wire_version().unwrap_err().kind(),
            ErrorKind::IncompatibleServer { .. }
        ));
        let ok = doc! { "ok": 1, "minWireVersion": 0, "maxWireVersion": 21 };
        assert!(StreamDescription::parse(&ok, &[])
            .unwrap()
            .check_wire_version()
            .is_ok());
    }
}
