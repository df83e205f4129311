//! Interpreting the `key=value` options of a connection string.

use std::collections::HashMap;
use std::time::Duration;

use bson::Document;

use super::auth::{self, AuthInput};
use super::{Pair, UserInfo};
use crate::options::{
    Acknowledgment, AuthMechanism, ClientOptions, Compressor, ProxyOptions, ReadConcern,
    ReadConcernLevel, ReadPreference, ReadPreferenceMode, Redacted, ServerMonitoringMode, TagSet,
    UuidRepresentation, WriteConcern,
};

/// Options whose values are secret: never repeated in a warning or error.
const SECRET_KEYS: &[&str] = &[
    "tlscertificatekeyfilepassword",
    "proxypassword",
    "authmechanismproperties",
];

/// Options that may be given several times, each adding to a list.
const LIST_KEYS: &[&str] = &["readpreferencetags"];

/// Options that are errors when repeated (SOCKS5 spec).
const NO_REPEAT_KEYS: &[&str] = &["proxyhost", "proxyport", "proxyusername", "proxypassword"];

/// Pairs of TLS options that must not both appear (URI options spec).
const TLS_CONFLICTS: &[(&str, &str)] = &[
    ("tlsinsecure", "tlsallowinvalidcertificates"),
    ("tlsinsecure", "tlsallowinvalidhostnames"),
    ("tlsinsecure", "tlsdisableocspendpointcheck"),
    ("tlsinsecure", "tlsdisablecertificaterevocationcheck"),
    ("tlsallowinvalidcertificates", "tlsdisableocspendpointcheck"),
    (
        "tlsallowinvalidcertificates",
        "tlsdisablecertificaterevocationcheck",
    ),
    (
        "tlsdisableocspendpointcheck",
        "tlsdisablecertificaterevocationcheck",
    ),
];

/// Everything gathered from the options before it is assembled into [`ClientOptions`].
#[derive(Default)]
struct State {
    warnings: Vec<String>,
    auth_mechanism: Option<AuthMechanism>,
    auth_source: Option<String>,
    auth_mechanism_properties: Option<Document>,
    gssapi_service_name: Option<String>,
    read_preference_mode: Option<ReadPreferenceMode>,
    read_preference_tags: Vec<TagSet>,
    max_staleness: Option<Option<Duration>>,
    w: Option<Acknowledgment>,
    w_timeout: Option<Duration>,
    w_timeout_deprecated: Option<Duration>,
    journal: Option<bool>,
    read_concern_level: Option<ReadConcernLevel>,
    compressors: Option<Vec<Compressor>>,
    zlib_level: Option<i32>,
    tls: Vec<(String, bool)>,
    proxy_host: Option<String>,
    proxy_port: Option<u16>,
    proxy_username: Option<String>,
    proxy_password: Option<String>,
    srv_service_name: Option<String>,
    srv_max_hosts: Option<u32>,
}

impl State {
    fn invalid(&mut self, pair: &Pair, why: &str) {
        if SECRET_KEYS.contains(&pair.key.as_str()) {
            self.warnings.push(format!(
                "ignoring option '{}': invalid value ({why})",
                pair.name
            ));
        } else {
            self.warnings.push(format!(
                "ignoring option '{}': invalid value '{}' ({why})",
                pair.name, pair.value
            ));
        }
    }
}

/// Applies the options to `opts` (which already has hosts, SRV and database), validates the
/// credential, and appends warnings.
pub(crate) fn apply(
    opts: &mut ClientOptions,
    pairs: &[Pair],
    userinfo: Option<UserInfo>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let mut st = State::default();

    // Repeats and conflicts are about which keys appear, whatever their values.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in pairs {
        *counts.entry(p.key.as_str()).or_default() += 1;
    }
    for key in NO_REPEAT_KEYS {
        if counts.get(key).copied().unwrap_or(0) > 1 {
            return Err(format!("option '{key}' must not be given more than once"));
        }
    }
    for (a, b) in TLS_CONFLICTS {
        if counts.contains_key(a) && counts.contains_key(b) {
            return Err(format!("options '{a}' and '{b}' must not both be given"));
        }
    }
    let mut warned_repeat: Vec<&str> = Vec::new();
    for p in pairs {
        let k = p.key.as_str();
        if counts.get(k).copied().unwrap_or(0) > 1
            && !LIST_KEYS.contains(&k)
            && k != "tls"
            && k != "ssl"
            && !warned_repeat.contains(&k)
        {
            warned_repeat.push(k);
            st.warnings.push(format!(
                "option '{}' given more than once; the last value is used",
                p.name
            ));
        }
    }
    if counts.contains_key("wtimeout") && counts.contains_key("wtimeoutms") {
        st.warnings.push(
            "deprecated option 'wtimeout' ignored because 'wtimeoutMS' is also given".to_string(),
        );
    }

    for p in pairs {
        apply_one(opts, &mut st, p)?;
    }
    finish(opts, st, userinfo, warnings)
}

fn apply_one(opts: &mut ClientOptions, st: &mut State, p: &Pair) -> Result<(), String> {
    let v = p.value.as_str();
    let key = p.key.as_str();
    if v.is_empty() {
        match key {
            "authsource" => return Err("option 'authSource' must not be empty".into()),
            "readpreferencetags" => {
                st.read_preference_tags.push(TagSet::new());
                return Ok(());
            }
            _ if is_known(key) => {
                st.warnings
                    .push(format!("ignoring option '{}': empty value", p.name));
                return Ok(());
            }
            _ => {}
        }
    }
    match key {
        "appname" => opts.app_name = Some(v.to_string()),
        "authmechanism" => match AuthMechanism::parse(v) {
            Some(m) => st.auth_mechanism = Some(m),
            None => return Err(format!("authentication mechanism '{v}' is not supported")),
        },
        "authsource" => st.auth_source = Some(v.to_string()),
        "authmechanismproperties" => {
            let mut doc = st.auth_mechanism_properties.take().unwrap_or_default();
            for item in v.split(',') {
                match item.split_once(':') {
                    Some((k, val)) if !k.is_empty() => {
                        doc.insert(auth::canonical_property_name(k), val.to_string());
                    }
                    _ => st.warnings.push(
                        "ignoring an 'authMechanismProperties' entry that is not 'KEY:value' \
                         (values must not contain ',')"
                            .to_string(),
                    ),
                }
            }
            st.auth_mechanism_properties = Some(doc);
        }
        "gssapiservicename" => {
            st.warnings.push(
                "option 'gssapiServiceName' is deprecated; use \
                 'authMechanismProperties=SERVICE_NAME:<name>'"
                    .to_string(),
            );
            st.gssapi_service_name = Some(v.to_string());
        }
        "compressors" => {
            let mut list: Vec<Compressor> = Vec::new();
            for name in v.split(',') {
                let c = match name.to_ascii_lowercase().as_str() {
                    "snappy" => Compressor::Snappy,
                    "zlib" => Compressor::Zlib { level: None },
                    "zstd" => Compressor::Zstd,
                    _ => {
                        st.warnings
                            .push(format!("ignoring unsupported compressor '{name}'"));
                        continue;
                    }
                };
                if !list.iter().any(|x| x.id() == c.id()) {
                    list.push(c);
                }
            }
            st.compressors = Some(list);
        }
        "zlibcompressionlevel" => match v.parse::<i32>() {
            Ok(l) if (-1..=9).contains(&l) => st.zlib_level = Some(l),
            _ => st.invalid(p, "an integer from -1 to 9 is required"),
        },
        "connecttimeoutms" => set_ms(st, p, &mut opts.connect_timeout, 0, MAX_I32),
        "sockettimeoutms" => set_ms(st, p, &mut opts.socket_timeout, 0, MAX_I32),
        "serverselectiontimeoutms" => set_ms(st, p, &mut opts.server_selection_timeout, 1, MAX_I32),
        "heartbeatfrequencyms" => set_ms(st, p, &mut opts.heartbeat_frequency, 500, MAX_I32),
        "localthresholdms" => set_ms(st, p, &mut opts.local_threshold, 0, MAX_I32),
        "maxidletimems" => set_ms(st, p, &mut opts.max_idle_time, 0, MAX_I32),
        "waitqueuetimeoutms" => set_ms(st, p, &mut opts.wait_queue_timeout, 1, MAX_I32),
        "timeoutms" => set_ms(st, p, &mut opts.timeout, 0, MAX_I64),
        "wtimeoutms" => {
            let mut d = st.w_timeout;
            set_ms(st, p, &mut d, 0, MAX_I64);
            st.w_timeout = d;
        }
        "wtimeout" => {
            st.warnings
                .push("option 'wtimeout' is deprecated; use 'wTimeoutMS'".to_string());
            let mut d = st.w_timeout_deprecated;
            set_ms(st, p, &mut d, 0, MAX_I64);
            st.w_timeout_deprecated = d;
        }
        "maxpoolsize" => set_u32(st, p, &mut opts.max_pool_size, 0),
        "minpoolsize" => set_u32(st, p, &mut opts.min_pool_size, 0),
        "maxconnecting" => set_u32(st, p, &mut opts.max_connecting, 1),
        "maxadaptiveretries" => set_u32(st, p, &mut opts.max_adaptive_retries, 0),
        "srvmaxhosts" => {
            let mut n = st.srv_max_hosts;
            set_u32(st, p, &mut n, 0);
            st.srv_max_hosts = n;
        }
        "directconnection" => set_bool(st, p, &mut opts.direct_connection),
        "loadbalanced" => set_bool(st, p, &mut opts.load_balanced),
        "retryreads" => set_bool(st, p, &mut opts.retry_reads),
        "retrywrites" => set_bool(st, p, &mut opts.retry_writes),
        "serverselectiontryonce" => set_bool(st, p, &mut opts.server_selection_try_once),
        "enableoverloadretargeting" => set_bool(st, p, &mut opts.enable_overload_retargeting),
        "journal" => {
            let mut j = st.journal;
            set_bool(st, p, &mut j);
            st.journal = j;
        }
        "tls" | "ssl" => match parse_bool(v) {
            Some(b) => st.tls.push((p.name.clone(), b)),
            None => st.invalid(p, "'true' or 'false' is required"),
        },
        "tlsallowinvalidcertificates" => {
            set_bool(st, p, &mut opts.tls_options.allow_invalid_certificates)
        }
        "tlsallowinvalidhostnames" => {
            set_bool(st, p, &mut opts.tls_options.allow_invalid_hostnames)
        }
        "tlsinsecure" => set_bool(st, p, &mut opts.tls_options.insecure),
        "tlsdisableocspendpointcheck" => {
            set_bool(st, p, &mut opts.tls_options.disable_ocsp_endpoint_check)
        }
        "tlsdisablecertificaterevocationcheck" => set_bool(
            st,
            p,
            &mut opts.tls_options.disable_certificate_revocation_check,
        ),
        "tlscafile" => opts.tls_options.ca_file = Some(v.to_string()),
        "tlscertificatekeyfile" => opts.tls_options.cert_key_file = Some(v.to_string()),
        "tlscertificatekeyfilepassword" => {
            opts.tls_options.cert_key_file_password = Some(Redacted(v.to_string()))
        }
        "replicaset" => opts.repl_set_name = Some(v.to_string()),
        "readconcernlevel" => st.read_concern_level = Some(ReadConcernLevel::parse(v)),
        "w" => {
            st.w = match v.parse::<i64>() {
                Ok(n) => match u32::try_from(n) {
                    Ok(n) => Some(Acknowledgment::Nodes(n)),
                    Err(_) => {
                        st.invalid(p, "a non-negative integer or a string is required");
                        return Ok(());
                    }
                },
                Err(_) if v == "majority" => Some(Acknowledgment::Majority),
                Err(_) => Some(Acknowledgment::Custom(v.to_string())),
            }
        }
        "readpreference" => match ReadPreferenceMode::parse(v) {
            Some(m) => st.read_preference_mode = Some(m),
            None => st.invalid(p, "not a read preference mode"),
        },
        "readpreferencetags" => {
            let mut tags = TagSet::new();
            for item in v.split(',') {
                match item.split_once(':') {
                    Some((k, val)) if !k.is_empty() => {
                        tags.insert(k.to_string(), val.to_string());
                    }
                    _ => {
                        st.invalid(p, "'key:value' pairs separated by ',' are required");
                        return Ok(());
                    }
                }
            }
            st.read_preference_tags.push(tags);
        }
        "maxstalenessseconds" => match v.parse::<i64>() {
            Ok(-1) => st.max_staleness = Some(None),
            Ok(n) if n >= 0 && n.unsigned_abs() <= MAX_I32 => {
                st.max_staleness = Some(Some(Duration::from_secs(n.unsigned_abs())));
            }
            _ => st.invalid(p, "-1 or a non-negative integer is required"),
        },
        "servermonitoringmode" => match ServerMonitoringMode::parse(v) {
            Some(m) => opts.server_monitoring_mode = Some(m),
            None => st.invalid(p, "'stream', 'poll' or 'auto' is required"),
        },
        "uuidrepresentation" => match UuidRepresentation::parse(v) {
            Some(u) => opts.uuid_representation = Some(u),
            None => st.invalid(p, "not a UUID representation"),
        },
        "proxyhost" => st.proxy_host = Some(v.to_string()),
        "proxyport" => match v.parse::<u16>() {
            Ok(port) => st.proxy_port = Some(port),
            Err(_) => st.invalid(p, "a port number is required"),
        },
        "proxyusername" => st.proxy_username = Some(v.to_string()),
        "proxypassword" => st.proxy_password = Some(v.to_string()),
        "srvservicename" => st.srv_service_name = Some(v.to_string()),
        _ => st
            .warnings
            .push(format!("ignoring unsupported option '{}'", p.name)),
    }
    Ok(())
}

fn is_known(key: &str) -> bool {
    const KNOWN: &[&str] = &[
        "appname",
        "authmechanism",
        "authsource",
        "authmechanismproperties",
        "gssapiservicename",
        "compressors",
        "zlibcompressionlevel",
        "connecttimeoutms",
        "sockettimeoutms",
        "serverselectiontimeoutms",
        "heartbeatfrequencyms",
        "localthresholdms",
        "maxidletimems",
        "waitqueuetimeoutms",
        "timeoutms",
        "wtimeoutms",
        "wtimeout",
        "maxpoolsize",
        "minpoolsize",
        "maxconnecting",
        "maxadaptiveretries",
        "srvmaxhosts",
        "directconnection",
        "loadbalanced",
        "retryreads",
        "retrywrites",
        "serverselectiontryonce",
        "enableoverloadretargeting",
        "journal",
        "tls",
        "ssl",
        "tlsallowinvalidcertificates",
        "tlsallowinvalidhostnames",
        "tlsinsecure",
        "tlsdisableocspendpointcheck",
        "tlsdisablecertificaterevocationcheck",
        "tlscafile",
        "tlscertificatekeyfile",
        "tlscertificatekeyfilepassword",
        "replicaset",
        "readconcernlevel",
        "w",
        "readpreference",
        "readpreferencetags",
        "maxstalenessseconds",
        "servermonitoringmode",
        "uuidrepresentation",
        "proxyhost",
        "proxyport",
        "proxyusername",
        "proxypassword",
        "srvservicename",
    ];
    KNOWN.contains(&key)
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn set_bool(st: &mut State, p: &Pair, slot: &mut Option<bool>) {
    match parse_bool(&p.value) {
        Some(b) => *slot = Some(b),
        None => st.invalid(p, "'true' or 'false' is required"),
    }
}

/// Largest value of a 32-bit integer option (the URI options spec's default width).
const MAX_I32: u64 = i32::MAX.unsigned_abs() as u64;
/// Largest value of a 64-bit integer option (`wTimeoutMS`, `timeoutMS`).
const MAX_I64: u64 = i64::MAX.unsigned_abs();

fn set_u32(st: &mut State, p: &Pair, slot: &mut Option<u32>, min: u32) {
    match p.value.parse::<u32>() {
        Ok(n) if n >= min && u64::from(n) <= MAX_I32 => *slot = Some(n),
        _ => st.invalid(
            p,
            &format!("a 32-bit integer of at least {min} is required"),
        ),
    }
}

fn set_ms(st: &mut State, p: &Pair, slot: &mut Option<Duration>, min: u64, max: u64) {
    match p.value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => *slot = Some(Duration::from_millis(n)),
        _ => st.invalid(
            p,
            &format!("a number of milliseconds from {min} to {max} is required"),
        ),
    }
}

fn finish(
    opts: &mut ClientOptions,
    mut st: State,
    userinfo: Option<UserInfo>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    // tls / ssl: every instance must agree.
    if let Some((_, first)) = st.tls.first() {
        let first = *first;
        if st.tls.iter().any(|(_, b)| *b != first) {
            return Err("options 'tls' and 'ssl' must all have the same value".into());
        }
        opts.tls = Some(first);
    }

    // SRV.
    match opts.srv.as_mut() {
        Some(srv) => {
            if let Some(name) = st.srv_service_name.take() {
                srv.service_name = name;
            }
            if let Some(n) = st.srv_max_hosts {
                srv.max_hosts = n;
            }
            if opts.tls.is_none() {
                opts.tls = Some(true);
            }
        }
        None => {
            if st.srv_service_name.is_some() {
                return Err(
                    "option 'srvServiceName' requires a mongodb+srv connection string".into(),
                );
            }
            if st.srv_max_hosts.is_some() {
                return Err("option 'srvMaxHosts' requires a mongodb+srv connection string".into());
            }
        }
    }

    // Compression.
    if let Some(mut list) = st.compressors.take() {
        for c in &mut list {
            if let Compressor::Zlib { level } = c {
                *level = st.zlib_level;
            }
        }
        opts.compressors = Some(list);
    }

    // Concerns.
    if let Some(level) = st.read_concern_level.take() {
        opts.read_concern = Some(ReadConcern { level: Some(level) });
    }
    let w_timeout = st.w_timeout.or(st.w_timeout_deprecated);
    if st.w.is_some() || w_timeout.is_some() || st.journal.is_some() {
        opts.write_concern = Some(WriteConcern {
            w: st.w.take(),
            w_timeout,
            journal: st.journal,
        });
    }

    // Read preference.
    if st.read_preference_mode.is_some()
        || !st.read_preference_tags.is_empty()
        || st.max_staleness.is_some()
    {
        opts.read_preference = Some(ReadPreference {
            mode: st.read_preference_mode.unwrap_or_default(),
            tag_sets: std::mem::take(&mut st.read_preference_tags),
            max_staleness: st.max_staleness.flatten(),
            hedge: None,
        });
    }

    // SOCKS5 proxy.
    let has_proxy_detail =
        st.proxy_port.is_some() || st.proxy_username.is_some() || st.proxy_password.is_some();
    match st.proxy_host.take() {
        None if has_proxy_detail => {
            return Err(
                "options 'proxyPort', 'proxyUsername' and 'proxyPassword' require 'proxyHost'"
                    .into(),
            )
        }
        None => {}
        Some(host) => {
            if st.proxy_username.is_some() != st.proxy_password.is_some() {
                return Err(
                    "options 'proxyUsername' and 'proxyPassword' must be given together".into(),
                );
            }
            opts.proxy = Some(ProxyOptions {
                host,
                port: st.proxy_port,
                username: st.proxy_username.take(),
                password: st.proxy_password.take().map(Redacted),
            });
        }
    }

    // Credentials.
    let mut properties = st.auth_mechanism_properties.take();
    if let Some(name) = st.gssapi_service_name.take() {
        let props = properties.get_or_insert_with(Document::new);
        if !props.contains_key("SERVICE_NAME") {
            props.insert("SERVICE_NAME", name);
        }
    }
    opts.auth_source = st.auth_source.take();
    opts.credential = auth::build(AuthInput {
        userinfo,
        mechanism: st.auth_mechanism,
        source: opts.auth_source.clone(),
        properties,
        database: opts.default_database.as_deref(),
        warnings: &mut st.warnings,
    })?;

    warnings.append(&mut st.warnings);
    Ok(())
}
