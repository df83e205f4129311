//! Connection strings (`mongodb://` and `mongodb+srv://`), sans-IO.
//!
//! [`parse`] turns a connection string into [`ClientOptions`] plus warnings, following the
//! Connection String, URI Options, Auth and Initial DNS Seedlist Discovery specifications:
//!
//! - A malformed URI (bad scheme, bad host or port, unescaped reserved characters in the user
//!   information, an option without `=`, ...) and the combinations the specs forbid (conflicting
//!   TLS options, `directConnection=true` with several hosts, invalid credentials, ...) are errors
//!   ([`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)).
//! - An unknown option key, an invalid option value or a repeated option is a warning; the option
//!   is ignored (for repeats, the last value wins).
//!
//! Keys are case-insensitive; values are percent-decoded. Booleans are `true` or `false` (the
//! legacy `1`/`yes`/... spellings are warned about and ignored); integer options are 32-bit except
//! `wTimeoutMS` and `timeoutMS`. Options are separated by `&` only (not `;`). An unknown
//! `authMechanism` is an error, not a warning, so that a typo never silently changes how the
//! client authenticates. Values in `authMechanismProperties` must not contain `,`.
//!
//! Only `tls`/`ssl=true` and `mongodb+srv` enable TLS; other `tls*` options do not turn it on by
//! themselves. Neither error messages nor warnings ever contain a password.
//!
//! DNS resolution of `mongodb+srv` is not done here: the result records the request in
//! [`ClientOptions::srv`] and leaves `hosts` empty; the driver's `ClientOptions::parse(uri).await`
//! does the lookups (the rules are [`crate::dns::seedlist`]'s).

mod auth;
mod options;

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::options::{ClientOptions, ServerAddress, SrvInfo};

/// A parsed connection string: the options and what the parser warned about.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedUri {
    pub options: ClientOptions,
    /// One message per ignored option or questionable value, in the order found.
    pub warnings: Vec<String>,
}

/// Parses a `mongodb://` or `mongodb+srv://` connection string.
pub fn parse(uri: &str) -> Result<ParsedUri> {
    match parse_inner(uri) {
        Ok(mut parsed) => {
            for w in &mut parsed.warnings {
                *w = redact(w, uri, false);
            }
            Ok(parsed)
        }
        Err(message) => Err(Error::invalid_argument(redact(&message, uri, true))),
    }
}

impl ClientOptions {
    /// Parses a connection string without DNS lookups, logging its warnings with
    /// `tracing::warn!` and dropping them. A `mongodb+srv` URI gives options whose `hosts` are
    /// empty: a client started with them looks the SRV and TXT records up itself, and
    /// `ClientOptions::parse(uri).await` (from a runtime adapter's `ClientOptionsExt`) gives
    /// them resolved.
    pub fn parse_without_srv_resolution(uri: &str) -> Result<ClientOptions> {
        let parsed = parse(uri)?;
        for w in &parsed.warnings {
            tracing::warn!(target: "anymongo::uri", "{w}");
        }
        Ok(parsed.options)
    }
}

impl FromStr for ClientOptions {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ClientOptions::parse_without_srv_resolution(s)
    }
}

/// Applies the default options an SRV host publishes in its TXT record (the record's strings
/// concatenated, e.g. `replicaSet=rs0&authSource=admin`) to options parsed from a `mongodb+srv`
/// URI, then re-checks the cross-option rules (call it after replacing the seed list with the
/// SRV results). Only `authSource`, `replicaSet` and `loadBalanced` are allowed; an option the
/// URI already set is not overridden. Returns warnings for invalid values.
pub fn apply_txt_record(options: &mut ClientOptions, txt: &str) -> Result<Vec<String>> {
    let fail = |m: String| Error::invalid_argument(format!("TXT record: {m}"));
    let pairs = split_query(txt).map_err(fail)?;
    let mut warnings = Vec::new();
    for p in pairs {
        match p.key.as_str() {
            "authsource" => {
                if p.value.is_empty() {
                    return Err(fail("option 'authSource' must not be empty".into()));
                }
                if options.auth_source.is_some() {
                    continue;
                }
                if let Some(c) = options.credential.as_mut() {
                    auth::apply_source(c, &p.value).map_err(fail)?;
                }
                options.auth_source = Some(p.value);
            }
            "replicaset" if p.value.is_empty() => {
                warnings.push("TXT record: ignoring option 'replicaSet': empty value".into());
            }
            "replicaset" => {
                options.repl_set_name.get_or_insert(p.value);
            }
            "loadbalanced" => match p.value.as_str() {
                "true" | "false" => {
                    options.load_balanced.get_or_insert(p.value == "true");
                }
                _ => warnings.push(format!(
                    "TXT record: ignoring option '{}': invalid value '{}'",
                    p.name, p.value
                )),
            },
            _ => {
                return Err(fail(format!(
                    "option '{}' is not allowed (only authSource, replicaSet and loadBalanced)",
                    p.name
                )))
            }
        }
    }
    options.validate()?;
    Ok(warnings)
}

/// The parts of a connection string, split but not interpreted.
struct Parts<'a> {
    srv: bool,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    database: Option<&'a str>,
    query: Option<&'a str>,
}

fn split(uri: &str) -> Result<Parts<'_>, String> {
    let (srv, rest) = if let Some(rest) = strip_prefix_ci(uri, "mongodb://") {
        (false, rest)
    } else if let Some(rest) = strip_prefix_ci(uri, "mongodb+srv://") {
        (true, rest)
    } else {
        return Err(
            "the connection string must start with 'mongodb://' or 'mongodb+srv://'".into(),
        );
    };
    // The host information ends at the first '/' (or at '?' when there is no path).
    let (authority, path_and_query) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes().get(i) == Some(&b'/') => (&rest[..i], Some(&rest[i + 1..])),
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (database, query) = match path_and_query {
        None => (None, None),
        Some(pq) => match pq.find('?') {
            Some(i) => (Some(&pq[..i]), Some(&pq[i + 1..])),
            None => (Some(pq), None),
        },
    };
    Ok(Parts {
        srv,
        userinfo,
        hosts,
        database: database.filter(|d| !d.is_empty()),
        query,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn parse_inner(uri: &str) -> Result<ParsedUri, String> {
    let parts = split(uri)?;

    let userinfo = parts.userinfo.map(parse_userinfo).transpose()?;
    let hosts = parse_hosts(parts.hosts)?;
    let database = match parts.database {
        Some(db) => Some(parse_database(db)?),
        None => None,
    };

    let mut options = ClientOptions {
        default_database: database,
        ..ClientOptions::default()
    };
    if parts.srv {
        let [host] = hosts.as_slice() else {
            return Err("a mongodb+srv connection string must have exactly one host".into());
        };
        let hostname = match host {
            ParsedHost::Tcp { host, .. } if host.contains(':') => {
                return Err(
                    "a mongodb+srv connection string must name a host, not an IP literal".into(),
                )
            }
            ParsedHost::Tcp {
                host,
                explicit_port: false,
                ..
            } => host.clone(),
            ParsedHost::Tcp { .. } => {
                return Err("a mongodb+srv connection string must not have a port".into())
            }
            ParsedHost::Unix(_) => {
                return Err("a mongodb+srv connection string must name a host, not a socket".into())
            }
        };
        // The hosts stay empty until the SRV lookup fills them.
        options.srv = Some(SrvInfo {
            hostname: hostname.to_ascii_lowercase(),
            service_name: SrvInfo::DEFAULT_SERVICE_NAME.to_string(),
            max_hosts: 0,
            min_ttl: None,
        });
    } else {
        options.hosts = hosts.into_iter().map(ParsedHost::into_address).collect();
    }

    let pairs = match parts.query {
        Some(q) => split_query(q)?,
        None => Vec::new(),
    };
    let mut warnings = Vec::new();
    options::apply(&mut options, &pairs, userinfo, &mut warnings)?;
    options.validate().map_err(|e| match e.kind() {
        crate::ErrorKind::InvalidArgument { message } => message.clone(),
        _ => e.to_string(),
    })?;
    Ok(ParsedUri { options, warnings })
}

/// The user name and password from the user information, percent-decoded.
pub(crate) struct UserInfo {
    pub username: String,
    pub password: Option<String>,
}

fn parse_userinfo(raw: &str) -> Result<UserInfo, String> {
    const MUST_ENCODE: &str =
        "the user name and password must be percent-encoded (RFC 3986 section 2.1)";
    if raw.contains('@') {
        return Err(format!("{MUST_ENCODE}: found an unescaped '@'"));
    }
    let (user, password) = match raw.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (raw, None),
    };
    if password.is_some_and(|p| p.contains(':')) {
        return Err(format!("{MUST_ENCODE}: found more than one unescaped ':'"));
    }
    for c in raw.chars() {
        let allowed = !c.is_ascii() || c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%:".contains(c);
        if !allowed {
            return Err(format!(
                "{MUST_ENCODE}: found a character that must be escaped"
            ));
        }
    }
    let username = decode_strict(user).map_err(|e| format!("{MUST_ENCODE}: user name {e}"))?;
    let password = password
        .map(|p| decode_strict(p).map_err(|e| format!("{MUST_ENCODE}: password {e}")))
        .transpose()?;
    Ok(UserInfo { username, password })
}

/// A host identifier as written.
#[derive(Debug, Clone, PartialEq)]
enum ParsedHost {
    Tcp {
        host: String,
        port: u16,
        explicit_port: bool,
    },
    Unix(String),
}

impl ParsedHost {
    fn into_address(self) -> ServerAddress {
        match self {
            ParsedHost::Tcp { host, port, .. } => ServerAddress::tcp(host, port),
            ParsedHost::Unix(path) => ServerAddress::Unix { path },
        }
    }
}

fn parse_hosts(raw: &str) -> Result<Vec<ParsedHost>, String> {
    if raw.is_empty() {
        return Err("the connection string must name at least one host".into());
    }
    raw.split(',').map(parse_host).collect()
}

fn parse_host(raw: &str) -> Result<ParsedHost, String> {
    if raw.is_empty() {
        return Err("empty host in the host list".into());
    }
    if let Some(rest) = raw.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return Err(format!("unterminated IPv6 literal '{raw}'"));
        };
        let addr_part = literal.split_once("%25").map_or(literal, |(a, _)| a);
        if addr_part.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 literal '{raw}'"));
        }
        let (port, explicit_port) = match after {
            "" => (ServerAddress::DEFAULT_PORT, false),
            p => match p.strip_prefix(':') {
                Some(p) => (parse_port(p, raw)?, true),
                None => return Err(format!("unexpected characters after IPv6 literal '{raw}'")),
            },
        };
        let host = decode_strict(literal).map_err(|e| format!("host '{raw}' {e}"))?;
        return Ok(ParsedHost::Tcp {
            host,
            port,
            explicit_port,
        });
    }
    let decoded = decode_strict(raw).map_err(|e| format!("host '{raw}' {e}"))?;
    if decoded.contains('/') {
        if decoded.ends_with(".sock") {
            return Ok(ParsedHost::Unix(decoded));
        }
        return Err(format!(
            "unsupported host '{decoded}': Unix domain socket paths must end in '.sock' and be \
             percent-encoded"
        ));
    }
    let (host, port) = match decoded.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => {
            return Err(format!(
                "invalid host '{decoded}': IPv6 literals must be enclosed in '[' and ']'"
            ))
        }
        Some((h, p)) => (h, Some(p)),
        None => (decoded.as_str(), None),
    };
    if host.is_empty() {
        return Err(format!("empty host name in '{decoded}'"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "?#[]@\\%".contains(*c))
    {
        return Err(format!("invalid character {c:?} in host '{host}'"));
    }
    let (port, explicit_port) = match port {
        Some(p) => (parse_port(p, &decoded)?, true),
        None => (ServerAddress::DEFAULT_PORT, false),
    };
    Ok(ParsedHost::Tcp {
        host: host.to_string(),
        port,
        explicit_port,
    })
}

fn parse_port(p: &str, host: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port in '{host}': must be 1 to 65535"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port in '{host}': must be 1 to 65535")),
        Ok(port) => Ok(port),
    }
}

fn parse_database(raw: &str) -> Result<String, String> {
    let db = decode_lenient(raw).map_err(|e| format!("database name {e}"))?;
    if let Some(c) = db.chars().find(|c| "/\\ \"$".contains(*c)) {
        return Err(format!(
            "invalid character {c:?} in the database name '{db}'"
        ));
    }
    Ok(db)
}

/// One `key=value` of the query, decoded; `key` is lowercased for matching.
pub(crate) struct Pair {
    pub key: String,
    pub name: String,
    pub value: String,
}

fn split_query(query: &str) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    for item in query.split('&') {
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            let name = decode_lenient(item).unwrap_or_else(|_| item.to_string());
            return Err(format!(
                "option '{name}' has no value ('key=value' expected)"
            ));
        };
        let name = decode_lenient(k).map_err(|e| format!("option name {e}"))?;
        if name.is_empty() {
            return Err("an option has an empty name".into());
        }
        let value = decode_lenient(v).map_err(|e| format!("value of option '{name}' {e}"))?;
        pairs.push(Pair {
            key: name.to_ascii_lowercase(),
            name,
            value,
        });
    }
    Ok(pairs)
}

/// Percent-decodes, rejecting a '%' not followed by two hex digits and non-UTF-8 results.
fn decode_strict(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !ok {
                return Err("has a '%' that is not followed by two hexadecimal digits".into());
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    decode_lenient(s)
}

/// Percent-decodes, leaving malformed escapes as they are; the result must be UTF-8.
fn decode_lenient(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "is not valid UTF-8 once percent-decoded".to_string())
}

/// Removes anything that could be (part of) the password from a message.
///
/// Messages never repeat the user information itself. But when the password holds an unescaped
/// delimiter ('/', '?', '@', ...), the URI is split in the wrong place and pieces of the password,
/// encoded or decoded, end up in a host, database or option that a message quotes. In that case
/// (the user information the parser found differs from "everything before the last '@'"):
///
/// - in an error, every quoted value ('...' or "...") is redacted: the URI is broken, and any
///   of its values may hold a piece of the password;
/// - in a warning, every quoted value that shares three characters with the would-be password
///   (as written or percent-decoded), or is part of it, is redacted;
/// - then the password itself and its pieces of three characters or more (between delimiters,
///   as written and decoded) are removed wherever they still appear. Shorter pieces are left:
///   removing every 'x' would blank unrelated words without hiding anything.
fn redact(message: &str, uri: &str, is_error: bool) -> String {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, r)| r);
    let Some(at) = after_scheme.rfind('@') else {
        return message.to_string();
    };
    let naive = &after_scheme[..at];
    if split(uri).ok().and_then(|p| p.userinfo) == Some(naive) {
        return message.to_string();
    }
    let Some((_, secret)) = naive.split_once(':') else {
        return message.to_string();
    };
    if secret.is_empty() {
        return message.to_string();
    }
    let decoded = decode_lenient(secret).unwrap_or_else(|_| secret.to_string());
    let forms = [secret, decoded.as_str()];
    let mut out = redact_quoted(message, |value| {
        is_error || forms.iter().any(|form| shares_three(value, form))
    });
    let mut pieces: Vec<&str> = forms.to_vec();
    for form in forms {
        pieces.extend(form.split(['/', ':', '@', '?', '#', ',', '&', '=', '[', ']']));
    }
    pieces.retain(|p| p.chars().count() >= 3);
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for piece in pieces {
        out = out.replace(piece, REDACTED);
    }
    out
}

const REDACTED: &str = "<redacted>";

/// `message` with the contents of its quoted values ('...' and "...") replaced by
/// [`REDACTED`] where `secret` says so.
fn redact_quoted(message: &str, secret: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['\'', '"']) {
        let quote = &rest[open..open + 1];
        let Some(len) = rest[open + 1..].find(quote) else {
            break;
        };
        let value = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..=open]);
        out.push_str(if secret(value) { REDACTED } else { value });
        out.push_str(quote);
        rest = &rest[open + 2 + len..];
    }
    out.push_str(rest);
    out
}

/// Whether `value` and `secret` have three consecutive characters in common, or `value` is
/// a (shorter) part of `secret`.
fn shares_three(value: &str, secret: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    if secret.contains(value) {
        return true;
    }
    let chars: Vec<char> = secret.chars().collect();
    chars.windows(3).any(|w| {
        let piece: String = w.iter().collect();
        value.contains(&piece)
    })
}

#[cfg(test)]
mod tests;
