//! Server selection spec tests: `server-selection/tests/{server_selection,rtt,in_window}`.
//!
//! Topology descriptions are built directly from the files; selection runs through
//! `anymongo_proto::selection`. The in_window frequency tests use a seeded RNG.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anymongo_proto::bson::{self, Bson, Document};
use anymongo_proto::options::{ReadPreference, ReadPreferenceMode, ServerAddress, TagSet};
use anymongo_proto::sdam::{
    ewma, ServerDescription, ServerType, TopologyDescription, TopologyType,
};
use anymongo_proto::selection::{self, Criteria};
use rand::SeedableRng;
use serde_json::Value;

use anymongo_proto::testing::specs::{read_json, Outcome, Report};

/// Skipped cases: (substring of the case name, reason).
pub const SKIPS: &[(&str, &str)] = &[];

/// Converts (relaxed or canonical) extended JSON to BSON.
pub fn json_to_bson(v: &Value) -> Result<Bson, String> {
    Ok(match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(i) => Bson::Int32(i),
                    Err(_) => Bson::Int64(i),
                }
            } else {
                Bson::Double(n.as_f64().ok_or("bad number")?)
            }
        }
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => {
            Bson::Array(items.iter().map(json_to_bson).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => {
            if let Some(Value::String(s)) = map.get("$oid") {
                return bson::oid::ObjectId::parse_str(s)
                    .map(Bson::ObjectId)
                    .map_err(|e| e.to_string());
            }
            if let Some(Value::String(s)) = map.get("$numberLong") {
                return s.parse::<i64>().map(Bson::Int64).map_err(|e| e.to_string());
            }
            if let Some(Value::String(s)) = map.get("$numberInt") {
                return s.parse::<i32>().map(Bson::Int32).map_err(|e| e.to_string());
            }
            if let Some(Value::String(s)) = map.get("$numberDouble") {
                return s
                    .parse::<f64>()
                    .map(Bson::Double)
                    .map_err(|e| e.to_string());
            }
            if let Some(d) = map.get("$date") {
                let ms = match d {
                    Value::Object(o) => match o.get("$numberLong") {
                        Some(Value::String(s)) => s.parse::<i64>().map_err(|e| e.to_string())?,
                        _ => return Err("bad $date".into()),
                    },
                    Value::Number(n) => n.as_i64().ok_or("bad $date")?,
                    _ => return Err("bad $date".into()),
                };
                return Ok(Bson::DateTime(bson::DateTime::from_millis(ms)));
            }
            let mut doc = Document::new();
            for (k, v) in map {
                doc.insert(k.clone(), json_to_bson(v)?);
            }
            Bson::Document(doc)
        }
    })
}

/// Converts a JSON object to a document.
pub fn json_to_doc(v: &Value) -> Result<Document, String> {
    match json_to_bson(v)? {
        Bson::Document(d) => Ok(d),
        other => Err(format!("expected a document, got {other:?}")),
    }
}

fn addr(s: &str) -> Result<ServerAddress, String> {
    ServerAddress::parse(s)
}

fn millis(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Object(_) => match json_to_bson(v).ok()? {
            Bson::Int64(i) => Some(i as f64),
            Bson::Int32(i) => Some(f64::from(i)),
            Bson::Double(d) => Some(d),
            _ => None,
        },
        _ => None,
    }
}

/// Builds a server description from a test file's server object. `base` is time zero for
/// `lastUpdateTime`.
pub fn server_from_json(v: &Value, base: Instant) -> Result<ServerDescription, String> {
    let address = addr(v["address"].as_str().ok_or("server without address")?)?;
    let mut sd = ServerDescription::new(address);
    let ty = v["type"].as_str().ok_or("server without type")?;
    sd.server_type = ServerType::parse(ty).ok_or_else(|| format!("unknown server type {ty}"))?;
    if let Some(rtt) = v.get("avg_rtt_ms").and_then(millis) {
        sd.round_trip_time = Some(Duration::from_secs_f64(rtt / 1000.0));
    }
    if let Some(Value::Object(tags)) = v.get("tags") {
        for (k, val) in tags {
            sd.tags
                .insert(k.clone(), val.as_str().ok_or("non-string tag")?.to_string());
        }
    }
    if let Some(lut) = v.get("lastUpdateTime").and_then(millis) {
        sd.last_update_time = Some(base + Duration::from_millis(lut as u64));
    }
    if let Some(lwd) = v
        .get("lastWrite")
        .and_then(|lw| lw.get("lastWriteDate"))
        .and_then(millis)
    {
        sd.last_write_date = Some(bson::DateTime::from_millis(lwd as i64));
    }
    if sd.server_type != ServerType::Unknown {
        sd.min_wire_version = Some(0);
        sd.max_wire_version = Some(
            v.get("maxWireVersion")
                .and_then(Value::as_i64)
                .map(|w| w as i32)
                .unwrap_or(21),
        );
    }
    Ok(sd)
}

/// Builds a topology description from a test file's `topology_description`.
pub fn topology_from_json(v: &Value, base: Instant) -> Result<TopologyDescription, String> {
    let ty = v["type"].as_str().ok_or("topology without type")?;
    let mut td = TopologyDescription {
        topology_type: TopologyType::parse(ty).ok_or_else(|| format!("unknown topology {ty}"))?,
        ..Default::default()
    };
    for s in v["servers"].as_array().ok_or("no servers")? {
        let sd = server_from_json(s, base)?;
        td.servers.insert(sd.address.clone(), sd);
    }
    Ok(td)
}

/// Parses a test file's `read_preference`.
pub fn read_preference_from_json(v: &Value) -> Result<ReadPreference, String> {
    let mode = v.get("mode").and_then(Value::as_str).unwrap_or("primary");
    let mode = ReadPreferenceMode::parse(mode).ok_or_else(|| format!("bad mode {mode}"))?;
    let mut rp = ReadPreference::with_mode(mode);
    if let Some(sets) = v.get("tag_sets").and_then(Value::as_array) {
        for set in sets {
            let mut tags = TagSet::new();
            for (k, val) in set.as_object().ok_or("tag set not an object")? {
                tags.insert(k.clone(), val.as_str().ok_or("non-string tag")?.to_string());
            }
            rp.tag_sets.push(tags);
        }
    }
    if let Some(ms) = v.get("maxStalenessSeconds").and_then(Value::as_f64) {
        if ms >= 0.0 {
            rp.max_staleness = Some(Duration::from_secs_f64(ms));
        }
    }
    Ok(rp)
}

fn address_set(v: &Value) -> Result<BTreeSet<ServerAddress>, String> {
    v.as_array()
        .ok_or("expected an array of servers")?
        .iter()
        .map(|s| addr(s["address"].as_str().ok_or("server without address")?))
        .collect()
}

/// Runs one selection logic file (shared with the max staleness suite).
pub fn run_selection_file(path: &Path) -> Outcome {
    selection_file(path).into()
}

fn selection_file(path: &Path) -> Result<(), String> {
    let t = read_json(path)?;
    let base = Instant::now();
    let td = topology_from_json(&t["topology_description"], base)?;
    let hb = Duration::from_millis(
        t.get("heartbeatFrequencyMS")
            .and_then(Value::as_u64)
            .unwrap_or(10_000),
    );
    let criteria = match t.get("operation").and_then(Value::as_str).unwrap_or("read") {
        "write" => Criteria::Write,
        _ => Criteria::Read(read_preference_from_json(&t["read_preference"])?),
    };
    let deprioritized: Vec<ServerAddress> = match t.get("deprioritized_servers") {
        Some(v) => address_set(v)?.into_iter().collect(),
        None => Vec::new(),
    };
    let result = selection::suitable_servers(&td, &criteria, hb, &deprioritized);
    if t.get("error").and_then(Value::as_bool) == Some(true) {
        return match result {
            Err(_) => Ok(()),
            Ok(s) => Err(format!(
                "expected an error, got {} suitable servers",
                s.len()
            )),
        };
    }
    let suitable = result.map_err(|e| format!("unexpected error: {e}"))?;
    let got: BTreeSet<ServerAddress> = suitable.iter().map(|s| s.address.clone()).collect();
    if let Some(expected) = t.get("suitable_servers") {
        let expected = address_set(expected)?;
        if got != expected {
            return Err(format!(
                "suitable servers: expected {expected:?}, got {got:?}"
            ));
        }
    }
    let window = selection::in_latency_window(&suitable, Duration::from_millis(15));
    let got: BTreeSet<ServerAddress> = window.iter().map(|s| s.address.clone()).collect();
    let expected = address_set(&t["in_latency_window"])?;
    if got != expected {
        return Err(format!(
            "latency window: expected {expected:?}, got {got:?}"
        ));
    }
    // The full selection must pick a server of the window (or none when it is empty).
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let chosen = selection::select(
        &td,
        &criteria,
        Duration::from_millis(15),
        hb,
        &deprioritized,
        &mut rng,
        |_| 0,
    )
    .map_err(|e| format!("select failed: {e}"))?;
    match chosen {
        Some(a) if expected.contains(&a) => Ok(()),
        None if expected.is_empty() => Ok(()),
        other => Err(format!(
            "select chose {other:?}, expected one of {expected:?}"
        )),
    }
}

fn rtt_file(path: &Path) -> Result<(), String> {
    let t = read_json(path)?;
    let old = match &t["avg_rtt_ms"] {
        Value::String(s) if s == "NULL" => None,
        v => Some(Duration::from_secs_f64(
            millis(v).ok_or("bad avg_rtt_ms")? / 1000.0,
        )),
    };
    let new = Duration::from_secs_f64(millis(&t["new_rtt_ms"]).ok_or("bad new_rtt_ms")? / 1000.0);
    let expected = millis(&t["new_avg_rtt"]).ok_or("bad new_avg_rtt")?;
    let got = ewma(old, new).as_secs_f64() * 1000.0;
    if (got - expected).abs() > 1e-6 {
        return Err(format!("expected {expected} ms, got {got} ms"));
    }
    Ok(())
}

fn in_window_file(path: &Path) -> Result<(), String> {
    let t = read_json(path)?;
    let base = Instant::now();
    let td = topology_from_json(&t["topology_description"], base)?;
    let mut counts: HashMap<ServerAddress, usize> = HashMap::new();
    for s in t["mocked_topology_state"]
        .as_array()
        .ok_or("no mocked state")?
    {
        counts.insert(
            addr(s["address"].as_str().ok_or("no address")?)?,
            s["operation_count"].as_u64().ok_or("no count")? as usize,
        );
    }
    let iterations = t["iterations"].as_u64().ok_or("no iterations")?;
    let tolerance = t["outcome"]["tolerance"].as_f64().ok_or("no tolerance")?;
    let criteria = Criteria::Read(ReadPreference::with_mode(ReadPreferenceMode::Nearest));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut chosen: BTreeMap<ServerAddress, u64> = BTreeMap::new();
    for _ in 0..iterations {
        let a = selection::select(
            &td,
            &criteria,
            Duration::from_millis(15),
            Duration::from_secs(10),
            &[],
            &mut rng,
            |a| counts.get(a).copied().unwrap_or(0),
        )
        .map_err(|e| e.to_string())?
        .ok_or("no server selected")?;
        *chosen.entry(a).or_default() += 1;
    }
    for (k, v) in t["outcome"]["expected_frequencies"]
        .as_object()
        .ok_or("no frequencies")?
    {
        let expected = v.as_f64().ok_or("bad frequency")?;
        let got = chosen.get(&addr(k)?).copied().unwrap_or(0) as f64 / iterations as f64;
        let ok = if expected == 0.0 || expected == 1.0 {
            got == expected
        } else {
            (got - expected).abs() <= tolerance
        };
        if !ok {
            return Err(format!("{k}: expected frequency {expected}, got {got}"));
        }
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "json") {
                out.push(p);
            }
        }
    }
}

/// Every `.json` file under `dir`, recursively and sorted.
pub fn json_files_recursive(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

fn case_name(suite: &str, root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("{suite}/{}", rel.with_extension("").display())
}

/// Runs the server selection suites.
pub fn run(root: &Path, report: &mut Report) {
    let tests = root.join("server-selection/tests");
    let logic = tests.join("server_selection");
    if logic.is_dir() {
        for p in json_files_recursive(&logic) {
            let name = case_name("server-selection/server_selection", &logic, &p);
            report.check(&name, SKIPS, || selection_file(&p).into());
        }
    } else {
        report.absent("server-selection/server_selection", &logic);
    }
    for (stem, p) in report.files("server-selection/rtt", &tests.join("rtt")) {
        let name = format!("server-selection/rtt/{stem}");
        report.check(&name, SKIPS, || rtt_file(&p).into());
    }
    for (stem, p) in report.files("server-selection/in_window", &tests.join("in_window")) {
        let name = format!("server-selection/in_window/{stem}");
        report.check(&name, SKIPS, || in_window_file(&p).into());
    }
}
