//! Connection String spec tests (`connection-string/tests/*.json`), and the comparison helpers
//! the URI options runner shares: a case gives `valid`, `warning`, `hosts`, `auth` and `options`;
//! `null` means "no assertion". Options are compared through a normalized view of
//! `ClientOptions` keyed by the lowercased URI option name.

use std::path::Path;

use anymongo_proto::options::{Acknowledgment, ClientOptions, Compressor, ServerAddress};
use anymongo_proto::uri;
use serde_json::{json, Map, Value};

use anymongo_proto::testing::specs::{Outcome, Report};

/// No case is skipped.
const SKIPS: &[(&str, &str)] = &[];

pub fn run(root: &Path, report: &mut Report) {
    run_dir(
        root,
        report,
        "connection-string",
        &root.join("connection-string/tests"),
        SKIPS,
    );
}

/// Runs every file of a folder in the connection string test format.
pub fn run_dir(_root: &Path, report: &mut Report, suite: &str, dir: &Path, skips: &[(&str, &str)]) {
    report.described_tests(suite, dir, skips, check_case);
}

/// Checks one case of the connection string / URI options format.
pub fn check_case(t: &Value) -> Outcome {
    let uri_str = t["uri"].as_str().unwrap_or("");
    let valid = t["valid"].as_bool().unwrap_or(true);
    let parsed = uri::parse(uri_str);
    let parsed = match (valid, parsed) {
        (false, Err(_)) => return Outcome::Pass,
        (false, Ok(p)) => {
            return Outcome::Fail(format!(
                "expected an error, parsed {:?} (warnings {:?})",
                p.options, p.warnings
            ))
        }
        (true, Err(e)) => return Outcome::Fail(format!("expected success, got {e}")),
        (true, Ok(p)) => p,
    };
    if let Some(w) = t["warning"].as_bool() {
        if w == parsed.warnings.is_empty() {
            return Outcome::Fail(format!(
                "expected warning: {w}, got warnings {:?}",
                parsed.warnings
            ));
        }
    }
    if let Err(e) = check_hosts(&t["hosts"], &parsed.options) {
        return Outcome::Fail(e);
    }
    if let Err(e) = check_auth(&t["auth"], &parsed.options) {
        return Outcome::Fail(e);
    }
    if let Err(e) = check_options(&t["options"], &parsed.options) {
        return Outcome::Fail(e);
    }
    Outcome::Pass
}

fn check_hosts(expected: &Value, opts: &ClientOptions) -> Result<(), String> {
    let Some(expected) = expected.as_array() else {
        return Ok(());
    };
    if expected.len() != opts.hosts.len() {
        return Err(format!("expected hosts {expected:?}, got {:?}", opts.hosts));
    }
    for (e, got) in expected.iter().zip(&opts.hosts) {
        if let Some(host) = e["host"].as_str() {
            if host != got.host() {
                return Err(format!("expected host {host}, got {got:?}"));
            }
        }
        if let Some(port) = e["port"].as_u64() {
            if got.port().map(u64::from) != Some(port) {
                return Err(format!("expected port {port}, got {got:?}"));
            }
        }
        if let Some(ty) = e["type"].as_str() {
            let got_ty = match got {
                ServerAddress::Unix { .. } => "unix",
                ServerAddress::Tcp { host, .. } if host.contains(':') => "ip_literal",
                ServerAddress::Tcp { host, .. } if host.parse::<std::net::Ipv4Addr>().is_ok() => {
                    "ipv4"
                }
                ServerAddress::Tcp { .. } => "hostname",
            };
            if ty != got_ty {
                return Err(format!("expected host type {ty}, got {got_ty} for {got:?}"));
            }
        }
    }
    Ok(())
}

fn check_auth(expected: &Value, opts: &ClientOptions) -> Result<(), String> {
    if expected.is_null() {
        return Ok(());
    }
    let cred = opts.credential.as_ref();
    let fields = [
        ("username", cred.and_then(|c| c.username.clone())),
        ("password", cred.and_then(|c| c.password.clone())),
        ("db", opts.default_database.clone()),
    ];
    for (key, got) in fields {
        // A null expectation means "no assertion" in this format.
        if let Some(want) = expected[key].as_str() {
            if got.as_deref() != Some(want) {
                return Err(format!("auth.{key}: expected {want:?}, got {got:?}"));
            }
        }
    }
    Ok(())
}

fn check_options(expected: &Value, opts: &ClientOptions) -> Result<(), String> {
    let Some(expected) = expected.as_object() else {
        return Ok(());
    };
    let got = normalized_options(opts);
    for (k, want) in expected {
        let key = k.to_ascii_lowercase();
        let have = got.get(&key).unwrap_or(&Value::Null);
        if !json_eq(want, have) {
            return Err(format!("option {k}: expected {want}, got {have}"));
        }
    }
    Ok(())
}

/// JSON equality where numbers compare by value.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The options as a map from lowercased URI option name to JSON value (only options that are set).
pub fn normalized_options(o: &ClientOptions) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_ascii_lowercase(), v);
    };
    let ms = |d: std::time::Duration| json!(d.as_millis() as u64);
    if let Some(v) = &o.app_name {
        put("appname", json!(v));
    }
    if let Some(s) = &o.auth_source {
        put("authSource", json!(s));
    }
    if let Some(c) = &o.credential {
        if let Some(mech) = c.mechanism {
            put("authMechanism", json!(mech.as_str()));
        }
        if let Some(p) = &c.mechanism_properties {
            put(
                "authMechanismProperties",
                serde_json::to_value(p).unwrap_or(Value::Null),
            );
        }
    }
    if let Some(cs) = &o.compressors {
        put(
            "compressors",
            Value::Array(cs.iter().map(|c| json!(c.name())).collect()),
        );
        for c in cs {
            if let Compressor::Zlib { level: Some(l) } = c {
                put("zlibCompressionLevel", json!(l));
            }
        }
    }
    let durations = [
        ("connectTimeoutMS", o.connect_timeout),
        ("socketTimeoutMS", o.socket_timeout),
        ("serverSelectionTimeoutMS", o.server_selection_timeout),
        ("heartbeatFrequencyMS", o.heartbeat_frequency),
        ("localThresholdMS", o.local_threshold),
        ("maxIdleTimeMS", o.max_idle_time),
        ("waitQueueTimeoutMS", o.wait_queue_timeout),
        ("timeoutMS", o.timeout),
    ];
    for (k, d) in durations {
        if let Some(d) = d {
            put(k, ms(d));
        }
    }
    let ints = [
        ("maxPoolSize", o.max_pool_size),
        ("minPoolSize", o.min_pool_size),
        ("maxConnecting", o.max_connecting),
        ("maxAdaptiveRetries", o.max_adaptive_retries),
    ];
    for (k, v) in ints {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    let bools = [
        ("directConnection", o.direct_connection),
        ("loadBalanced", o.load_balanced),
        ("retryReads", o.retry_reads),
        ("retryWrites", o.retry_writes),
        ("serverSelectionTryOnce", o.server_selection_try_once),
        ("enableOverloadRetargeting", o.enable_overload_retargeting),
        ("tls", o.tls),
        (
            "tlsAllowInvalidCertificates",
            o.tls_options.allow_invalid_certificates,
        ),
        (
            "tlsAllowInvalidHostnames",
            o.tls_options.allow_invalid_hostnames,
        ),
        ("tlsInsecure", o.tls_options.insecure),
        (
            "tlsDisableOCSPEndpointCheck",
            o.tls_options.disable_ocsp_endpoint_check,
        ),
        (
            "tlsDisableCertificateRevocationCheck",
            o.tls_options.disable_certificate_revocation_check,
        ),
    ];
    for (k, v) in bools {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    if let Some(v) = &o.tls_options.ca_file {
        put("tlsCAFile", json!(v));
    }
    if let Some(v) = &o.tls_options.cert_key_file {
        put("tlsCertificateKeyFile", json!(v));
    }
    if let Some(v) = &o.tls_options.cert_key_file_password {
        put("tlsCertificateKeyFilePassword", json!(v.0));
    }
    if let Some(v) = &o.repl_set_name {
        put("replicaSet", json!(v));
    }
    if let Some(v) = o.server_monitoring_mode {
        put("serverMonitoringMode", json!(v.as_str()));
    }
    if let Some(v) = o.uuid_representation {
        put("uuidRepresentation", json!(v.as_str()));
    }
    if let Some(rc) = &o.read_concern {
        if let Some(level) = &rc.level {
            put("readConcernLevel", json!(level.as_str()));
        }
    }
    if let Some(wc) = &o.write_concern {
        match &wc.w {
            Some(Acknowledgment::Nodes(n)) => put("w", json!(n)),
            Some(Acknowledgment::Majority) => put("w", json!("majority")),
            Some(Acknowledgment::Custom(s)) => put("w", json!(s)),
            None => {}
        }
        if let Some(d) = wc.w_timeout {
            put("wTimeoutMS", ms(d));
        }
        if let Some(j) = wc.journal {
            put("journal", json!(j));
        }
    }
    if let Some(rp) = &o.read_preference {
        put("readPreference", json!(rp.mode.as_str()));
        if !rp.tag_sets.is_empty() {
            put(
                "readPreferenceTags",
                Value::Array(rp.tag_sets.iter().map(|t| json!(t)).collect()),
            );
        }
        if let Some(d) = rp.max_staleness {
            put("maxStalenessSeconds", json!(d.as_secs()));
        }
    }
    if let Some(srv) = &o.srv {
        put("srvServiceName", json!(srv.service_name));
        put("srvMaxHosts", json!(srv.max_hosts));
    }
    if let Some(p) = &o.proxy {
        put("proxyHost", json!(p.host));
        if let Some(port) = p.port {
            put("proxyPort", json!(port));
        }
        if let Some(u) = &p.username {
            put("proxyUsername", json!(u));
        }
        if let Some(pw) = &p.password {
            put("proxyPassword", json!(pw.0));
        }
    }
    m
}
