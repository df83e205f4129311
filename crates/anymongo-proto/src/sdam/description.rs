//! Server and topology descriptions, and parsing a `hello` reply into a [`ServerDescription`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{Bson, Document, RawDocument};

use crate::options::{ServerAddress, TagSet};

/// The kind of deployment the client believes it is connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TopologyType {
    /// A direct connection to one server.
    Single,
    /// A replica set whose primary is not known.
    ReplicaSetNoPrimary,
    /// A replica set with a known primary.
    ReplicaSetWithPrimary,
    /// One or more mongos routers.
    Sharded,
    /// A load balancer in front of the deployment.
    LoadBalanced,
    /// Not yet discovered.
    #[default]
    Unknown,
}

impl TopologyType {
    /// The spec's name of the type (`ReplicaSetNoPrimary`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            TopologyType::Single => "Single",
            TopologyType::ReplicaSetNoPrimary => "ReplicaSetNoPrimary",
            TopologyType::ReplicaSetWithPrimary => "ReplicaSetWithPrimary",
            TopologyType::Sharded => "Sharded",
            TopologyType::LoadBalanced => "LoadBalanced",
            TopologyType::Unknown => "Unknown",
        }
    }

    /// Parses a spec name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Single" => TopologyType::Single,
            "ReplicaSetNoPrimary" => TopologyType::ReplicaSetNoPrimary,
            "ReplicaSetWithPrimary" => TopologyType::ReplicaSetWithPrimary,
            "Sharded" => TopologyType::Sharded,
            "LoadBalanced" => TopologyType::LoadBalanced,
            "Unknown" => TopologyType::Unknown,
            _ => return None,
        })
    }

    /// Whether this is one of the two replica set types.
    pub fn is_replica_set(&self) -> bool {
        matches!(
            self,
            TopologyType::ReplicaSetNoPrimary | TopologyType::ReplicaSetWithPrimary
        )
    }
}

impl fmt::Display for TopologyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one server is, as far as the client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ServerType {
    Standalone,
    Mongos,
    RsPrimary,
    RsSecondary,
    RsArbiter,
    RsOther,
    RsGhost,
    /// Not yet checked, but another member names it as primary.
    PossiblePrimary,
    LoadBalancer,
    #[default]
    Unknown,
}

impl ServerType {
    /// The spec's name of the type (`RSPrimary`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ServerType::Standalone => "Standalone",
            ServerType::Mongos => "Mongos",
            ServerType::RsPrimary => "RSPrimary",
            ServerType::RsSecondary => "RSSecondary",
            ServerType::RsArbiter => "RSArbiter",
            ServerType::RsOther => "RSOther",
            ServerType::RsGhost => "RSGhost",
            ServerType::PossiblePrimary => "PossiblePrimary",
            ServerType::LoadBalancer => "LoadBalancer",
            ServerType::Unknown => "Unknown",
        }
    }

    /// Parses a spec name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Standalone" => ServerType::Standalone,
            "Mongos" => ServerType::Mongos,
            "RSPrimary" => ServerType::RsPrimary,
            "RSSecondary" => ServerType::RsSecondary,
            "RSArbiter" => ServerType::RsArbiter,
            "RSOther" => ServerType::RsOther,
            "RSGhost" => ServerType::RsGhost,
            "PossiblePrimary" => ServerType::PossiblePrimary,
            "LoadBalancer" => ServerType::LoadBalancer,
            "Unknown" => ServerType::Unknown,
            _ => return None,
        })
    }

    /// The spec's data-bearing types: Standalone, Mongos, RSPrimary, RSSecondary.
    pub fn is_data_bearing(&self) -> bool {
        matches!(
            self,
            ServerType::Standalone
                | ServerType::Mongos
                | ServerType::RsPrimary
                | ServerType::RsSecondary
        )
    }

    /// Whether the server is known to be reachable (anything but Unknown and PossiblePrimary).
    pub fn is_available(&self) -> bool {
        !matches!(self, ServerType::Unknown | ServerType::PossiblePrimary)
    }
}

impl fmt::Display for ServerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server's `topologyVersion`: its process id and a counter that grows with each state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopologyVersion {
    pub process_id: ObjectId,
    pub counter: i64,
}

impl TopologyVersion {
    /// Reads `{processId: <ObjectId>, counter: <int>}`; `None` if the document is not that shape.
    pub fn from_document(doc: &Document) -> Option<Self> {
        let process_id = doc.get_object_id("processId").ok()?;
        let counter = doc.get("counter").and_then(bson_as_i64)?;
        Some(TopologyVersion {
            process_id,
            counter,
        })
    }

    /// The document form, as a streaming `hello` sends it.
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        d.insert("processId", self.process_id);
        d.insert("counter", self.counter);
        d
    }

    /// Whether `new` is more recent than or as recent as `current`, per the SDAM comparison rules:
    /// a missing version on either side, or a different process id, counts as more recent.
    pub fn is_fresher_or_equal(current: Option<&Self>, new: Option<&Self>) -> bool {
        compare_topology_versions(current, new) != std::cmp::Ordering::Greater
    }
}

/// Compares `current` with `new` as the spec's `compareTopologyVersion` does: `Less` when either is
/// missing or the process ids differ (the new one is assumed more recent), else by counter.
pub fn compare_topology_versions(
    current: Option<&TopologyVersion>,
    new: Option<&TopologyVersion>,
) -> std::cmp::Ordering {
    match (current, new) {
        (Some(c), Some(n)) if c.process_id == n.process_id => c.counter.cmp(&n.counter),
        _ => std::cmp::Ordering::Less,
    }
}

/// Reads a number of any BSON numeric type as `i64` (doubles only when integral).
pub(crate) fn bson_as_i64(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.is_finite() && d.abs() < 9.0e18 => Some(*d as i64),
        _ => None,
    }
}

fn bson_truthy(b: Option<&Bson>) -> bool {
    match b {
        Some(Bson::Boolean(v)) => *v,
        Some(Bson::Int32(i)) => *i != 0,
        Some(Bson::Int64(i)) => *i != 0,
        Some(Bson::Double(d)) => *d != 0.0,
        _ => false,
    }
}

/// The client's view of one server, from its most recent check.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerDescription {
    /// The address the client connects to (not `me`).
    pub address: ServerAddress,
    pub server_type: ServerType,
    /// The last error checking or using this server.
    pub error: Option<String>,
    /// The average round trip time (EWMA, alpha 0.2); `None` while Unknown.
    pub round_trip_time: Option<Duration>,
    /// The minimum of the last 10 RTT samples (zero until two samples were taken).
    pub min_round_trip_time: Option<Duration>,
    pub last_write_date: Option<bson::DateTime>,
    /// `lastWrite.opTime`, opaque.
    pub op_time: Option<Bson>,
    /// `minWireVersion`; `None` until a reply reports it (compared as 0).
    pub min_wire_version: Option<i32>,
    /// `maxWireVersion`; `None` until a reply reports it (compared as 0).
    pub max_wire_version: Option<i32>,
    pub me: Option<ServerAddress>,
    pub hosts: BTreeSet<ServerAddress>,
    pub passives: BTreeSet<ServerAddress>,
    pub arbiters: BTreeSet<ServerAddress>,
    pub tags: TagSet,
    pub set_name: Option<String>,
    pub set_version: Option<i64>,
    pub election_id: Option<ObjectId>,
    /// The server's opinion of who the primary is.
    pub primary: Option<ServerAddress>,
    /// When the server was last checked (monotonic); `None` is "infinity ago".
    pub last_update_time: Option<Instant>,
    pub logical_session_timeout_minutes: Option<i64>,
    pub topology_version: Option<TopologyVersion>,
    pub iscryptd: Option<bool>,
    /// Whether the server answered `helloOk: true` (so monitors use `hello`, not legacy hello).
    pub hello_ok: bool,
    pub max_message_size_bytes: Option<i64>,
    pub max_bson_object_size: Option<i64>,
    pub max_write_batch_size: Option<i64>,
    /// The compressors the server agreed to.
    pub compression: Vec<String>,
    /// `serviceId` (servers behind a load balancer).
    pub service_id: Option<ObjectId>,
}

impl ServerDescription {
    /// A default (Unknown) description of `address`.
    pub fn new(address: ServerAddress) -> Self {
        ServerDescription {
            address,
            server_type: ServerType::Unknown,
            error: None,
            round_trip_time: None,
            min_round_trip_time: None,
            last_write_date: None,
            op_time: None,
            min_wire_version: None,
            max_wire_version: None,
            me: None,
            hosts: BTreeSet::new(),
            passives: BTreeSet::new(),
            arbiters: BTreeSet::new(),
            tags: TagSet::new(),
            set_name: None,
            set_version: None,
            election_id: None,
            primary: None,
            last_update_time: None,
            logical_session_timeout_minutes: None,
            topology_version: None,
            iscryptd: None,
            hello_ok: false,
            max_message_size_bytes: None,
            max_bson_object_size: None,
            max_write_batch_size: None,
            compression: Vec::new(),
            service_id: None,
        }
    }

    /// An Unknown description of `address` carrying `error` (and the error's topologyVersion).
    pub fn unknown_with_error(
        address: ServerAddress,
        error: impl Into<String>,
        topology_version: Option<TopologyVersion>,
    ) -> Self {
        let mut sd = Self::new(address);
        sd.error = Some(error.into());
        sd.topology_version = topology_version;
        sd
    }

    /// Parses a `hello` (or legacy hello) reply received from `address` at `now`. A reply that is
    /// not `ok: 1`, or whose fields have the wrong types, gives an Unknown description with an
    /// error. `round_trip_time` is stored as is (the [`Topology`](super::Topology) averages it).
    pub fn from_hello(
        address: ServerAddress,
        reply: &Document,
        round_trip_time: Option<Duration>,
        now: Instant,
    ) -> Self {
        match parse_hello(address.clone(), reply, round_trip_time, now) {
            Ok(sd) => sd,
            Err(msg) => {
                let mut sd = Self::unknown_with_error(address, msg, None);
                // A failed reply still carries a topologyVersion worth keeping for comparisons.
                sd.topology_version = reply
                    .get_document("topologyVersion")
                    .ok()
                    .and_then(TopologyVersion::from_document);
                sd.last_update_time = Some(now);
                sd
            }
        }
    }

    /// [`from_hello`](Self::from_hello) for a raw reply; undecodable BSON gives an Unknown
    /// description with an error.
    pub fn from_raw_hello(
        address: ServerAddress,
        reply: &RawDocument,
        round_trip_time: Option<Duration>,
        now: Instant,
    ) -> Self {
        match crate::wire::raw::to_document(reply) {
            Ok(doc) => Self::from_hello(address, &doc, round_trip_time, now),
            Err(e) => {
                let mut sd =
                    Self::unknown_with_error(address, format!("invalid hello reply: {e}"), None);
                sd.last_update_time = Some(now);
                sd
            }
        }
    }

    /// Whether the two descriptions are equal in the fields the spec's "Server Description
    /// Equality" compares (everything but RTTs, update times, lastWrite and handshake limits).
    pub fn equivalent(&self, other: &ServerDescription) -> bool {
        self.address == other.address
            && self.server_type == other.server_type
            && self.error == other.error
            && self.min_wire_version == other.min_wire_version
            && self.max_wire_version == other.max_wire_version
            && self.me == other.me
            && self.hosts == other.hosts
            && self.passives == other.passives
            && self.arbiters == other.arbiters
            && self.tags == other.tags
            && self.set_name == other.set_name
            && self.election_id == other.election_id
            && self.set_version == other.set_version
            && self.primary == other.primary
            && self.logical_session_timeout_minutes == other.logical_session_timeout_minutes
            && self.topology_version == other.topology_version
            && self.iscryptd == other.iscryptd
    }

    /// Whether the server is reachable (not Unknown nor PossiblePrimary).
    pub fn is_available(&self) -> bool {
        self.server_type.is_available()
    }

    /// Every member this server reports: hosts, passives and arbiters.
    pub fn members(&self) -> impl Iterator<Item = &ServerAddress> {
        self.hosts
            .iter()
            .chain(self.passives.iter())
            .chain(self.arbiters.iter())
    }
}

fn parse_address_list(reply: &Document, key: &str) -> Result<BTreeSet<ServerAddress>, String> {
    let mut out = BTreeSet::new();
    match reply.get(key) {
        None | Some(Bson::Null) => {}
        Some(Bson::Array(items)) => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| format!("hello reply field '{key}' holds a non-string"))?;
                let addr = ServerAddress::parse(s)
                    .map_err(|e| format!("hello reply field '{key}': {e}"))?;
                out.insert(addr);
            }
        }
        Some(_) => return Err(format!("hello reply field '{key}' is not an array")),
    }
    Ok(out)
}

fn opt_str<'a>(reply: &'a Document, key: &str) -> Result<Option<&'a str>, String> {
    match reply.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("hello reply field '{key}' is not a string")),
    }
}

fn opt_i64(reply: &Document, key: &str) -> Result<Option<i64>, String> {
    match reply.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(b) => bson_as_i64(b)
            .map(Some)
            .ok_or_else(|| format!("hello reply field '{key}' is not a number")),
    }
}

fn opt_i32(reply: &Document, key: &str) -> Result<Option<i32>, String> {
    match opt_i64(reply, key)? {
        None => Ok(None),
        Some(v) => i32::try_from(v)
            .map(Some)
            .map_err(|_| format!("hello reply field '{key}' is out of range")),
    }
}

fn parse_hello(
    address: ServerAddress,
    reply: &Document,
    round_trip_time: Option<Duration>,
    now: Instant,
) -> Result<ServerDescription, String> {
    let ok = reply
        .get("ok")
        .map(|b| bson_truthy(Some(b)))
        .unwrap_or(false);
    if !ok {
        let msg = opt_str(reply, "errmsg")
            .ok()
            .flatten()
            .unwrap_or("hello command failed");
        return Err(match reply.get("code").and_then(bson_as_i64) {
            Some(code) => format!("{msg} (code {code})"),
            None => msg.to_string(),
        });
    }
    let mut sd = ServerDescription::new(address);
    sd.last_update_time = Some(now);
    sd.round_trip_time = round_trip_time;

    let writable = match reply.get("isWritablePrimary") {
        Some(b) => bson_truthy(Some(b)),
        None => bson_truthy(reply.get("ismaster")),
    };
    let set_name = opt_str(reply, "setName")?.map(str::to_string);
    let msg = opt_str(reply, "msg")?;
    sd.server_type = if msg == Some("isdbgrid") {
        ServerType::Mongos
    } else if bson_truthy(reply.get("isreplicaset")) {
        ServerType::RsGhost
    } else if set_name.is_some() {
        if writable {
            ServerType::RsPrimary
        } else if bson_truthy(reply.get("hidden")) {
            ServerType::RsOther
        } else if bson_truthy(reply.get("secondary")) {
            ServerType::RsSecondary
        } else if bson_truthy(reply.get("arbiterOnly")) {
            ServerType::RsArbiter
        } else {
            ServerType::RsOther
        }
    } else {
        ServerType::Standalone
    };
    sd.set_name = set_name;

    sd.min_wire_version = opt_i32(reply, "minWireVersion")?;
    sd.max_wire_version = opt_i32(reply, "maxWireVersion")?;
    sd.me = match opt_str(reply, "me")? {
        Some(s) => {
            Some(ServerAddress::parse(s).map_err(|e| format!("hello reply field 'me': {e}"))?)
        }
        None => None,
    };
    sd.hosts = parse_address_list(reply, "hosts")?;
    sd.passives = parse_address_list(reply, "passives")?;
    sd.arbiters = parse_address_list(reply, "arbiters")?;
    match reply.get("tags") {
        None | Some(Bson::Null) => {}
        Some(Bson::Document(tags)) => {
            for (k, v) in tags {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("hello reply tag '{k}' is not a string"))?;
                sd.tags.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err("hello reply field 'tags' is not a document".into()),
    }
    sd.set_version = opt_i64(reply, "setVersion")?;
    sd.election_id = match reply.get("electionId") {
        None | Some(Bson::Null) => None,
        Some(Bson::ObjectId(oid)) => Some(*oid),
        Some(_) => return Err("hello reply field 'electionId' is not an ObjectId".into()),
    };
    sd.primary = match opt_str(reply, "primary")? {
        Some(s) => {
            Some(ServerAddress::parse(s).map_err(|e| format!("hello reply field 'primary': {e}"))?)
        }
        None => None,
    };
    match reply.get("lastWrite") {
        None | Some(Bson::Null) => {}
        Some(Bson::Document(lw)) => {
            sd.last_write_date = match lw.get("lastWriteDate") {
                Some(Bson::DateTime(dt)) => Some(*dt),
                Some(b) => bson_as_i64(b).map(bson::DateTime::from_millis),
                None => None,
            };
            sd.op_time = lw.get("opTime").cloned();
        }
        Some(_) => return Err("hello reply field 'lastWrite' is not a document".into()),
    }
    sd.logical_session_timeout_minutes = opt_i64(reply, "logicalSessionTimeoutMinutes")?;
    sd.topology_version = match reply.get("topologyVersion") {
        None | Some(Bson::Null) => None,
        Some(Bson::Document(d)) => Some(
            TopologyVersion::from_document(d)
                .ok_or("hello reply field 'topologyVersion' is malformed")?,
        ),
        Some(_) => return Err("hello reply field 'topologyVersion' is not a document".into()),
    };
    sd.iscryptd = reply.get("iscryptd").map(|b| bson_truthy(Some(b)));
    sd.hello_ok = bson_truthy(reply.get("helloOk"));
    sd.max_message_size_bytes = opt_i64(reply, "maxMessageSizeBytes")?;
    sd.max_bson_object_size = opt_i64(reply, "maxBsonObjectSize")?;
    sd.max_write_batch_size = opt_i64(reply, "maxWriteBatchSize")?;
    if let Some(Bson::Array(items)) = reply.get("compression") {
        sd.compression = items
            .iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect();
    }
    sd.service_id = match reply.get("serviceId") {
        Some(Bson::ObjectId(oid)) => Some(*oid),
        _ => None,
    };
    Ok(sd)
}

/// The client's view of the whole deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyDescription {
    pub topology_type: TopologyType,
    pub set_name: Option<String>,
    pub max_set_version: Option<i64>,
    pub max_election_id: Option<ObjectId>,
    /// Every server, keyed (and ordered) by address.
    pub servers: BTreeMap<ServerAddress, ServerDescription>,
    /// False if any server's wire version range does not overlap the driver's.
    pub compatible: bool,
    /// Why `compatible` is false.
    pub compatibility_error: Option<String>,
    pub logical_session_timeout_minutes: Option<i64>,
}

impl Default for TopologyDescription {
    fn default() -> Self {
        TopologyDescription {
            topology_type: TopologyType::Unknown,
            set_name: None,
            max_set_version: None,
            max_election_id: None,
            servers: BTreeMap::new(),
            compatible: true,
            compatibility_error: None,
            logical_session_timeout_minutes: None,
        }
    }
}

impl TopologyDescription {
    /// The description of the server at `address`.
    pub fn server(&self, address: &ServerAddress) -> Option<&ServerDescription> {
        self.servers.get(address)
    }

    /// The known primary, if any.
    pub fn primary(&self) -> Option<&ServerDescription> {
        self.servers
            .values()
            .find(|s| s.server_type == ServerType::RsPrimary)
    }

    /// Whether the two descriptions are equal for the purpose of SDAM events (server
    /// descriptions compared with [`ServerDescription::equivalent`]).
    pub fn equivalent(&self, other: &TopologyDescription) -> bool {
        self.topology_type == other.topology_type
            && self.set_name == other.set_name
            && self.max_set_version == other.max_set_version
            && self.max_election_id == other.max_election_id
            && self.compatible == other.compatible
            && self.compatibility_error == other.compatibility_error
            && self.logical_session_timeout_minutes == other.logical_session_timeout_minutes
            && self.servers.len() == other.servers.len()
            && self
                .servers
                .iter()
                .zip(other.servers.iter())
                .all(|((a1, s1), (a2, s2))| a1 == a2 && s1.equivalent(s2))
    }

    /// Whether a write could be sent now (the SDAM monitoring spec's `hasWritableServer`).
    pub fn has_writable_server(&self) -> bool {
        match self.topology_type {
            TopologyType::Unknown | TopologyType::ReplicaSetNoPrimary => false,
            TopologyType::LoadBalanced => true,
            TopologyType::ReplicaSetWithPrimary => self.primary().is_some(),
            TopologyType::Single | TopologyType::Sharded => {
                self.servers.values().any(|s| s.is_available())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn parse(reply: Document) -> ServerDescription {
        let a = ServerAddress::parse("a:27017").expect("address");
        ServerDescription::from_hello(a, &reply, Some(Duration::from_millis(2)), Instant::now())
    }

    #[test]
    fn server_types() {
        let cases = [
            (doc! {"ok": 1, "msg": "isdbgrid"}, ServerType::Mongos),
            (doc! {"ok": 1, "isreplicaset": true}, ServerType::RsGhost),
            (
                doc! {"ok": 1, "ismaster": true, "setName": "rs"},
                ServerType::RsPrimary,
            ),
            (
                doc! {"ok": 1, "secondary": true, "setName": "rs"},
                ServerType::RsSecondary,
            ),
            (
                doc! {"ok": 1, "secondary": true, "hidden": true, "setName": "rs"},
                ServerType::RsOther,
            ),
            (
                doc! {"ok": 1, "arbiterOnly": true, "setName": "rs"},
                ServerType::RsArbiter,
            ),
            (doc! {"ok": 1, "setName": "rs"}, ServerType::RsOther),
            (
                doc! {"ok": 1.0, "isWritablePrimary": true},
                ServerType::Standalone,
            ),
            (doc! {"ok": 0, "errmsg": "no"}, ServerType::Unknown),
            (doc! {}, ServerType::Unknown),
        ];
        for (reply, expected) in cases {
            assert_eq!(parse(reply.clone()).server_type, expected, "{reply}");
        }
    }

    #[test]
    fn fields_are_parsed_and_hosts_lowercased() {
        let tv = ObjectId::from_bytes([3; 12]);
        let sd = parse(doc! {
            "ok": 1, "isWritablePrimary": true, "setName": "rs", "hosts": ["A:1", "b:2"],
            "passives": ["C"], "arbiters": ["[::1]:5"], "me": "A:1", "primary": "A:1",
            "tags": {"dc": "ny"}, "setVersion": 3_i64, "lastWrite": {"lastWriteDate": bson::DateTime::from_millis(99), "opTime": {"ts": 1}},
            "topologyVersion": {"processId": tv, "counter": 4}, "helloOk": true,
            "maxMessageSizeBytes": 48_000_000, "maxBsonObjectSize": 16_777_216, "maxWriteBatchSize": 100_000,
            "compression": ["zstd"], "logicalSessionTimeoutMinutes": 30, "minWireVersion": 0, "maxWireVersion": 21,
        });
        assert_eq!(sd.me, ServerAddress::parse("a:1").ok());
        assert!(sd.hosts.contains(&ServerAddress::tcp("a", 1)));
        assert!(sd.passives.contains(&ServerAddress::tcp("c", 27017)));
        assert!(sd.arbiters.contains(&ServerAddress::tcp("::1", 5)));
        assert_eq!(sd.tags.get("dc").map(String::as_str), Some("ny"));
        assert_eq!(sd.set_version, Some(3));
        assert_eq!(sd.last_write_date.map(|d| d.timestamp_millis()), Some(99));
        assert!(sd.op_time.is_some());
        assert_eq!(
            sd.topology_version,
            Some(TopologyVersion {
                process_id: tv,
                counter: 4
            })
        );
        assert!(sd.hello_ok);
        assert_eq!(sd.max_write_batch_size, Some(100_000));
        assert_eq!(sd.compression, vec!["zstd".to_string()]);
        assert_eq!(sd.round_trip_time, Some(Duration::from_millis(2)));
        assert_eq!(sd.max_wire_version, Some(21));
    }

    #[test]
    fn malformed_replies_give_unknown_with_an_error() {
        for reply in [
            doc! {"ok": 1, "setName": "rs", "hosts": [1]},
            doc! {"ok": 1, "setName": "rs", "hosts": "a"},
            doc! {"ok": 1, "me": "a:notaport"},
            doc! {"ok": 1, "electionId": "x"},
            doc! {"ok": 1, "maxWireVersion": "x"},
            doc! {"ok": 1, "maxWireVersion": 1_i64 << 40},
            doc! {"ok": 1, "topologyVersion": {"counter": 1}},
            doc! {"ok": 1, "tags": {"a": 1}},
        ] {
            let sd = parse(reply.clone());
            assert_eq!(sd.server_type, ServerType::Unknown, "{reply}");
            assert!(sd.error.is_some(), "{reply}");
        }
    }

    #[test]
    fn topology_version_comparison() {
        let p1 = ObjectId::from_bytes([1; 12]);
        let p2 = ObjectId::from_bytes([2; 12]);
        let tv = |p, c| TopologyVersion {
            process_id: p,
            counter: c,
        };
        use std::cmp::Ordering::*;
        assert_eq!(compare_topology_versions(None, Some(&tv(p1, 1))), Less);
        assert_eq!(compare_topology_versions(Some(&tv(p1, 1)), None), Less);
        assert_eq!(
            compare_topology_versions(Some(&tv(p1, 2)), Some(&tv(p2, 1))),
            Less
        );
        assert_eq!(
            compare_topology_versions(Some(&tv(p1, 2)), Some(&tv(p1, 1))),
            Greater
        );
        assert_eq!(
            compare_topology_versions(Some(&tv(p1, 2)), Some(&tv(p1, 2))),
            Equal
        );
        let d = tv(p1, 7).to_document();
        assert_eq!(TopologyVersion::from_document(&d), Some(tv(p1, 7)));
    }

    #[test]
    fn equality_ignores_rtt_and_update_time() {
        let a = parse(doc! {"ok": 1, "isWritablePrimary": true});
        let mut b = a.clone();
        b.round_trip_time = Some(Duration::from_secs(1));
        b.last_update_time = None;
        assert!(a.equivalent(&b));
        b.error = Some("x".into());
        assert!(!a.equivalent(&b));
    }
}
