//! Server discovery and monitoring spec tests:
//! `server-discovery-and-monitoring/tests/{rs,sharded,single,errors,monitoring,load-balanced}`.
//!
//! Each file builds a `Topology` from its URI, feeds the phases' hello responses and application
//! errors, and checks the outcome: the topology description (and pool generations), or for the
//! monitoring files the SDAM events published.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anymongo_proto::bson::Bson;
use anymongo_proto::options::ServerAddress;
use anymongo_proto::sdam::{
    ApplicationError, ApplicationErrorKind, CheckError, CheckErrorKind, CommandErrorInfo,
    ConnectionPhase, SdamEvent, ServerDescription, ServerType, Topology, TopologyDescription,
    TopologyOptions, TopologyVersion,
};
use serde_json::Value;

use crate::server_selection::{json_to_bson, json_to_doc};
use anymongo_proto::testing::specs::{read_json, Report};

/// Skipped cases: (substring of the case name, reason).
pub const SKIPS: &[(&str, &str)] = &[];

const DIRS: &[&str] = &[
    "rs",
    "sharded",
    "single",
    "errors",
    "monitoring",
    "load-balanced",
];

/// Runs the SDAM suites.
pub fn run(root: &Path, report: &mut Report) {
    let base = root.join("server-discovery-and-monitoring/tests");
    for dir in DIRS {
        let d = base.join(dir);
        for (stem, p) in report.files(&format!("sdam/{dir}"), &d) {
            let name = format!("sdam/{dir}/{stem}");
            report.check(&name, SKIPS, || run_file(&p, dir).into());
        }
    }
}

/// The few URI options these tests use.
fn options_from_uri(uri: &str, dir: &str) -> Result<TopologyOptions, String> {
    let rest = uri
        .strip_prefix("mongodb://")
        .ok_or("not a mongodb:// URI")?;
    let (hosts, query) = match rest.split_once('/') {
        Some((h, q)) => (h, q.strip_prefix('?').unwrap_or(q)),
        None => (rest, ""),
    };
    let mut opts = TopologyOptions::default();
    for h in hosts.split(',') {
        opts.hosts.push(ServerAddress::parse(h)?);
    }
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or("bad option")?;
        match k.to_ascii_lowercase().as_str() {
            "replicaset" => opts.repl_set_name = Some(v.to_string()),
            "directconnection" => opts.direct_connection = Some(v == "true"),
            "loadbalanced" => opts.load_balanced = v == "true",
            other => return Err(format!("unsupported URI option {other}")),
        }
    }
    // The runner README: files in "single" start as TopologyType Single.
    if dir == "single" && opts.direct_connection.is_none() && opts.hosts.len() == 1 {
        opts.direct_connection = Some(true);
    }
    Ok(opts)
}

fn run_file(path: &Path, dir: &str) -> Result<(), String> {
    let t = read_json(path)?;
    let uri = t["uri"].as_str().ok_or("no uri")?;
    let opts = options_from_uri(uri, dir)?;
    let mut now = Instant::now();
    let mut topology = Topology::new(opts, now).map_err(|e| e.to_string())?;
    let monitoring = dir == "monitoring";
    for (i, phase) in t["phases"]
        .as_array()
        .ok_or("no phases")?
        .iter()
        .enumerate()
    {
        let ctx = |e: String| {
            let d = phase
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("phase {i} ({d}): {e}")
        };
        if let Some(responses) = phase.get("responses").and_then(Value::as_array) {
            for r in responses {
                now += Duration::from_millis(10);
                let a = ServerAddress::parse(r[0].as_str().ok_or("bad response")?)?;
                let reply = json_to_doc(&r[1]).map_err(ctx)?;
                if reply.is_empty() {
                    let err = CheckError::new(CheckErrorKind::Network, "network error");
                    topology.handle_hello(&a, Err(err), None, now);
                } else {
                    topology.handle_hello(&a, Ok(&reply), Some(Duration::from_millis(1)), now);
                }
            }
        }
        if let Some(errors) = phase.get("applicationErrors").and_then(Value::as_array) {
            for e in errors {
                let a = ServerAddress::parse(e["address"].as_str().ok_or("no address")?)?;
                if let Some(err) = application_error(e).map_err(ctx)? {
                    topology.handle_application_error(&a, &err);
                }
            }
        }
        // The actions are the caller's business here; drain them.
        while topology.poll_action().is_some() {}
        let outcome = &phase["outcome"];
        if monitoring {
            let mut events = Vec::new();
            while let Some(ev) = topology.poll_event() {
                events.push(ev);
            }
            check_events(&events, outcome["events"].as_array().ok_or("no events")?).map_err(ctx)?;
        } else {
            while topology.poll_event().is_some() {}
            check_outcome(&topology, outcome).map_err(ctx)?;
        }
    }
    Ok(())
}

fn application_error(e: &Value) -> Result<Option<ApplicationError>, String> {
    // "beforeHandshakeCompletes" is the connection establishment and hello step.
    let phase = match e["when"].as_str() {
        Some("beforeHandshakeCompletes") => ConnectionPhase::Establishing,
        Some("afterHandshakeCompletes") => ConnectionPhase::Established,
        other => return Err(format!("bad 'when': {other:?}")),
    };
    let kind = match e["type"].as_str() {
        Some("network") => ApplicationErrorKind::Network {
            message: "network error".into(),
        },
        Some("timeout") => ApplicationErrorKind::Timeout {
            message: "timed out".into(),
        },
        Some("command") => {
            let response = json_to_doc(&e["response"])?;
            match CommandErrorInfo::from_response(&response) {
                Some(info) => ApplicationErrorKind::Command {
                    code: info.code,
                    message: info.message,
                    topology_version: info.topology_version,
                },
                // ok: 1 without a write concern error (writeErrors are never looked at).
                None => return Ok(None),
            }
        }
        other => return Err(format!("bad error type {other:?}")),
    };
    let mut err = ApplicationError::new(kind, phase);
    err.generation = e
        .get("generation")
        .and_then(Value::as_u64)
        .map(|g| g as u32);
    err.max_wire_version = e
        .get("maxWireVersion")
        .and_then(Value::as_i64)
        .map(|w| w as i32);
    Ok(Some(err))
}

fn opt_str_eq(field: &str, expected: &Value, got: Option<&str>) -> Result<(), String> {
    let exp = expected.as_str();
    if exp != got {
        return Err(format!("{field}: expected {exp:?}, got {got:?}"));
    }
    Ok(())
}

fn opt_i64_eq(field: &str, expected: &Value, got: Option<i64>) -> Result<(), String> {
    let exp = expected.as_i64();
    if exp != got {
        return Err(format!("{field}: expected {exp:?}, got {got:?}"));
    }
    Ok(())
}

fn type_matches(expected: &str, got: ServerType) -> bool {
    // Multi-threaded clients may treat PossiblePrimary as Unknown (the SDAM spec's note).
    let norm = |t: ServerType| match t {
        ServerType::PossiblePrimary => ServerType::Unknown,
        t => t,
    };
    ServerType::parse(expected).is_some_and(|e| norm(e) == norm(got))
}

fn check_outcome(topology: &Topology, outcome: &Value) -> Result<(), String> {
    let td = topology.description();
    let ty = outcome["topologyType"].as_str().ok_or("no topologyType")?;
    if td.topology_type.as_str() != ty {
        return Err(format!(
            "topologyType: expected {ty}, got {}",
            td.topology_type
        ));
    }
    if let Some(v) = outcome.get("setName") {
        opt_str_eq("setName", v, td.set_name.as_deref())?;
    }
    if let Some(v) = outcome.get("logicalSessionTimeoutMinutes") {
        opt_i64_eq(
            "logicalSessionTimeoutMinutes",
            v,
            td.logical_session_timeout_minutes,
        )?;
    }
    if let Some(v) = outcome.get("maxSetVersion") {
        opt_i64_eq("maxSetVersion", v, td.max_set_version)?;
    }
    if let Some(v) = outcome.get("maxElectionId") {
        let exp = match json_to_bson(v)? {
            Bson::ObjectId(o) => Some(o),
            Bson::Null => None,
            other => return Err(format!("bad maxElectionId {other:?}")),
        };
        if exp != td.max_election_id {
            return Err(format!(
                "maxElectionId: expected {exp:?}, got {:?}",
                td.max_election_id
            ));
        }
    }
    if let Some(v) = outcome.get("compatible").and_then(Value::as_bool) {
        if v != td.compatible {
            return Err(format!("compatible: expected {v}, got {}", td.compatible));
        }
    }
    let servers = outcome["servers"].as_object().ok_or("no servers")?;
    let mut expected_addrs = Vec::new();
    for (a, s) in servers {
        let a = ServerAddress::parse(a)?;
        let sd = td.server(&a).ok_or_else(|| {
            format!(
                "server {a} missing; have {:?}",
                td.servers.keys().collect::<Vec<_>>()
            )
        })?;
        check_server(topology, sd, s).map_err(|e| format!("server {a}: {e}"))?;
        expected_addrs.push(a);
    }
    if expected_addrs.len() != td.servers.len() {
        return Err(format!(
            "servers: expected {expected_addrs:?}, got {:?}",
            td.servers.keys().collect::<Vec<_>>()
        ));
    }
    Ok(())
}

fn check_server(topology: &Topology, sd: &ServerDescription, s: &Value) -> Result<(), String> {
    let ty = s["type"].as_str().ok_or("no type")?;
    if !type_matches(ty, sd.server_type) {
        return Err(format!(
            "type: expected {ty}, got {} (error {:?})",
            sd.server_type, sd.error
        ));
    }
    if let Some(v) = s.get("setName") {
        opt_str_eq("setName", v, sd.set_name.as_deref())?;
    }
    if let Some(v) = s.get("setVersion") {
        opt_i64_eq("setVersion", v, sd.set_version)?;
    }
    if let Some(v) = s.get("electionId") {
        let exp = match json_to_bson(v)? {
            Bson::ObjectId(o) => Some(o),
            Bson::Null => None,
            other => return Err(format!("bad electionId {other:?}")),
        };
        if exp != sd.election_id {
            return Err(format!(
                "electionId: expected {exp:?}, got {:?}",
                sd.election_id
            ));
        }
    }
    if let Some(v) = s.get("logicalSessionTimeoutMinutes") {
        opt_i64_eq(
            "logicalSessionTimeoutMinutes",
            v,
            sd.logical_session_timeout_minutes,
        )?;
    }
    if let Some(v) = s.get("minWireVersion") {
        opt_i64_eq("minWireVersion", v, sd.min_wire_version.map(i64::from))?;
    }
    if let Some(v) = s.get("maxWireVersion") {
        opt_i64_eq("maxWireVersion", v, sd.max_wire_version.map(i64::from))?;
    }
    if let Some(v) = s.get("topologyVersion") {
        let exp = match json_to_bson(v)? {
            Bson::Document(d) => {
                Some(TopologyVersion::from_document(&d).ok_or("bad expected topologyVersion")?)
            }
            Bson::Null => None,
            other => return Err(format!("bad topologyVersion {other:?}")),
        };
        if exp != sd.topology_version {
            return Err(format!(
                "topologyVersion: expected {exp:?}, got {:?}",
                sd.topology_version
            ));
        }
    }
    if let Some(v) = s.get("error").and_then(Value::as_str) {
        let got = sd.error.as_deref().unwrap_or("");
        if !got.contains(v) {
            return Err(format!("error: expected to contain {v:?}, got {got:?}"));
        }
    }
    if let Some(g) = s
        .get("pool")
        .and_then(|p| p.get("generation"))
        .and_then(Value::as_u64)
    {
        let got = topology.pool_generation(&sd.address);
        if got != Some(g as u32) {
            return Err(format!("pool generation: expected {g}, got {got:?}"));
        }
    }
    Ok(())
}

fn check_event_server(exp: &Value, sd: &ServerDescription) -> Result<(), String> {
    if let Some(a) = exp.get("address").and_then(Value::as_str) {
        if ServerAddress::parse(a)? != sd.address {
            return Err(format!("address: expected {a}, got {}", sd.address));
        }
    }
    if let Some(ty) = exp.get("type").and_then(Value::as_str) {
        if ty != sd.server_type.as_str() {
            return Err(format!(
                "{}: type: expected {ty}, got {}",
                sd.address, sd.server_type
            ));
        }
    }
    for (key, set) in [
        ("hosts", &sd.hosts),
        ("passives", &sd.passives),
        ("arbiters", &sd.arbiters),
    ] {
        if let Some(list) = exp.get(key).and_then(Value::as_array) {
            let want: Result<std::collections::BTreeSet<ServerAddress>, String> = list
                .iter()
                .map(|h| ServerAddress::parse(h.as_str().ok_or("bad host")?))
                .collect();
            if &want? != set {
                return Err(format!("{}: {key} differ: got {set:?}", sd.address));
            }
        }
    }
    if let Some(v) = exp.get("setName") {
        opt_str_eq("setName", v, sd.set_name.as_deref())?;
    }
    if let Some(v) = exp.get("primary") {
        let got = sd.primary.as_ref().map(|p| p.to_string());
        opt_str_eq("primary", v, got.as_deref())?;
    }
    Ok(())
}

fn check_event_topology(exp: &Value, td: &TopologyDescription) -> Result<(), String> {
    let ty = exp["topologyType"].as_str().ok_or("no topologyType")?;
    if ty != td.topology_type.as_str() {
        return Err(format!(
            "topologyType: expected {ty}, got {}",
            td.topology_type
        ));
    }
    if let Some(v) = exp.get("setName") {
        opt_str_eq("setName", v, td.set_name.as_deref())?;
    }
    let servers = exp["servers"].as_array().ok_or("no servers")?;
    if servers.len() != td.servers.len() {
        return Err(format!(
            "expected {} servers, got {}",
            servers.len(),
            td.servers.len()
        ));
    }
    let mut by_addr: BTreeMap<ServerAddress, &Value> = BTreeMap::new();
    for s in servers {
        by_addr.insert(
            ServerAddress::parse(s["address"].as_str().ok_or("no address")?)?,
            s,
        );
    }
    for (a, sd) in &td.servers {
        let s = by_addr
            .get(a)
            .ok_or_else(|| format!("unexpected server {a}"))?;
        check_event_server(s, sd)?;
    }
    Ok(())
}

fn check_events(got: &[SdamEvent], expected: &[Value]) -> Result<(), String> {
    let names: Vec<&str> = got.iter().map(SdamEvent::name).collect();
    if got.len() != expected.len() {
        return Err(format!(
            "expected {} events, got {}: {names:?}",
            expected.len(),
            got.len()
        ));
    }
    for (i, (ev, exp)) in got.iter().zip(expected).enumerate() {
        let obj = exp.as_object().ok_or("bad event")?;
        let (name, body) = obj.iter().next().ok_or("empty event")?;
        if name != ev.name() {
            return Err(format!(
                "event {i}: expected {name}, got {} (all: {names:?})",
                ev.name()
            ));
        }
        let r = match ev {
            SdamEvent::ServerOpening { address, .. } | SdamEvent::ServerClosed { address, .. } => {
                let a = ServerAddress::parse(body["address"].as_str().ok_or("no address")?)?;
                if &a == address {
                    Ok(())
                } else {
                    Err(format!("address: expected {a}, got {address}"))
                }
            }
            SdamEvent::ServerDescriptionChanged {
                address,
                previous,
                new,
                ..
            } => {
                let a = ServerAddress::parse(body["address"].as_str().ok_or("no address")?)?;
                if &a != address {
                    Err(format!("address: expected {a}, got {address}"))
                } else {
                    check_event_server(&body["previousDescription"], previous)
                        .and_then(|_| check_event_server(&body["newDescription"], new))
                }
            }
            SdamEvent::TopologyDescriptionChanged { previous, new, .. } => {
                check_event_topology(&body["previousDescription"], previous)
                    .and_then(|_| check_event_topology(&body["newDescription"], new))
            }
            _ => Ok(()),
        };
        r.map_err(|e| format!("event {i} ({name}): {e}"))?;
    }
    Ok(())
}
