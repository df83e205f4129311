//! The cmap-format test files: their shape, the spec's MATCH function, and the final checks
//! shared by the sans-IO and async runners.

use std::time::Duration;

use bson::{Bson, Document};
use serde::Deserialize;

use crate::cmap::{CheckOutFailure, CmapEvent, PoolOptions};
use crate::error::{Error, ErrorKind};

/// One cmap-format test file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CmapFormatTest {
    /// `"unit"` or `"integration"`.
    pub style: String,
    /// What the test checks.
    pub description: String,
    /// Options for the pool.
    #[serde(default)]
    pub pool_options: TestPoolOptions,
    /// What to do.
    #[serde(default)]
    pub operations: Vec<TestOperation>,
    /// The error the main thread must end with, if any.
    #[serde(default)]
    pub error: Option<Document>,
    /// The events expected (a prefix of the non-ignored events).
    #[serde(default)]
    pub events: Vec<Document>,
    /// Event types left out of the comparison.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// A fail point to configure on a live server (integration tests).
    #[serde(default)]
    pub fail_point: Option<Document>,
}

impl CmapFormatTest {
    /// Reads and parses the test file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let value = super::specs::read_json(path)?;
        serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// `poolOptions` of a test, including the test-only ones.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TestPoolOptions {
    #[serde(rename = "maxPoolSize")]
    pub max_pool_size: Option<u32>,
    #[serde(rename = "minPoolSize")]
    pub min_pool_size: Option<u32>,
    #[serde(rename = "maxConnecting")]
    pub max_connecting: Option<u32>,
    #[serde(rename = "maxIdleTimeMS")]
    pub max_idle_time_ms: Option<u64>,
    #[serde(rename = "waitQueueTimeoutMS")]
    pub wait_queue_timeout_ms: Option<u64>,
    /// Background thread interval: this pool populates and prunes on demand and by timer, so the
    /// runners ignore it (as the runner README allows).
    #[serde(rename = "backgroundThreadIntervalMS")]
    pub background_thread_interval_ms: Option<i64>,
    /// Only meaningful with a fail point on a live server.
    #[serde(rename = "appName")]
    pub app_name: Option<String>,
}

impl TestPoolOptions {
    /// The pool options these describe.
    pub fn to_pool_options(&self) -> PoolOptions {
        let mut o = PoolOptions::default();
        if let Some(v) = self.max_pool_size {
            o.max_pool_size = v;
        }
        if let Some(v) = self.min_pool_size {
            o.min_pool_size = v;
        }
        if let Some(v) = self.max_connecting {
            o.max_connecting = v;
        }
        o.max_idle_time = self.max_idle_time_ms.map(Duration::from_millis);
        o.wait_queue_timeout = self.wait_queue_timeout_ms.map(Duration::from_millis);
        o
    }
}

/// One entry of `operations`, as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestOperation {
    pub name: String,
    pub thread: Option<String>,
    pub target: Option<String>,
    pub ms: Option<u64>,
    pub event: Option<String>,
    pub count: Option<usize>,
    pub timeout: Option<u64>,
    pub label: Option<String>,
    pub connection: Option<String>,
    pub interrupt_in_use_connections: Option<bool>,
}

/// An operation, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Start(String),
    Wait(Duration),
    WaitForThread(String),
    WaitForEvent {
        event: String,
        count: usize,
        timeout: Option<Duration>,
    },
    CheckOut {
        label: Option<String>,
    },
    CheckIn {
        label: String,
    },
    Clear {
        interrupt_in_use_connections: bool,
    },
    Close,
    Ready,
}

impl TestOperation {
    /// Checks the fields the operation needs.
    pub fn op(&self) -> Result<Op, String> {
        let need = |v: &Option<String>, field: &str| {
            v.clone()
                .ok_or_else(|| format!("operation {} lacks `{field}`", self.name))
        };
        Ok(match self.name.as_str() {
            "start" => Op::Start(need(&self.target, "target")?),
            "wait" => Op::Wait(Duration::from_millis(
                self.ms.ok_or("operation wait lacks `ms`")?,
            )),
            "waitForThread" => Op::WaitForThread(need(&self.target, "target")?),
            "waitForEvent" => Op::WaitForEvent {
                event: need(&self.event, "event")?,
                count: self.count.ok_or("operation waitForEvent lacks `count`")?,
                timeout: self.timeout.map(Duration::from_millis),
            },
            "checkOut" => Op::CheckOut {
                label: self.label.clone(),
            },
            "checkIn" => Op::CheckIn {
                label: need(&self.connection, "connection")?,
            },
            "clear" => Op::Clear {
                interrupt_in_use_connections: self.interrupt_in_use_connections.unwrap_or(false),
            },
            "close" => Op::Close,
            "ready" => Op::Ready,
            other => return Err(format!("unknown operation {other:?}")),
        })
    }
}

/// How long `waitForEvent` waits when the test gives no timeout.
pub const DEFAULT_WAIT_FOR_EVENT: Duration = Duration::from_secs(10);

/// Why a file cannot run without a server, if it cannot.
pub fn skip_reason(test: &CmapFormatTest) -> Option<String> {
    if test.fail_point.is_some() {
        return Some(
            "integration test: needs a failPoint (blocked or failing hello) on a live server"
                .into(),
        );
    }
    if test.style != "unit" {
        return Some(format!("style {:?} needs a live server", test.style));
    }
    None
}

/// An error an operation raised, as the test files name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestError {
    /// `WaitQueueTimeoutError`, `PoolClosedError`, `PoolClearedError`, or another name.
    pub kind: String,
    /// The error's message.
    pub message: String,
}

/// Names a driver error the way the test files do.
pub fn classify_error(error: &Error) -> TestError {
    let (kind, message) = match error.kind() {
        ErrorKind::Timeout { message } => ("WaitQueueTimeoutError", message.clone()),
        ErrorKind::ConnectionPoolClosed { message } => ("PoolClosedError", message.clone()),
        ErrorKind::ConnectionPoolCleared { message } => ("PoolClearedError", message.clone()),
        _ => ("ConnectionError", error.to_string()),
    };
    TestError {
        kind: kind.to_string(),
        message,
    }
}

/// Names a machine check-out failure the way the test files do.
pub fn classify_failure(reason: CheckOutFailure, error: &Error) -> TestError {
    let mut e = classify_error(error);
    e.kind = match reason {
        CheckOutFailure::Timeout => "WaitQueueTimeoutError",
        CheckOutFailure::PoolClosed => "PoolClosedError",
        CheckOutFailure::PoolCleared => "PoolClearedError",
        CheckOutFailure::ConnectionError => "ConnectionError",
    }
    .to_string();
    e
}

/// The event as a document with the field names of the test files.
pub fn event_to_document(event: &CmapEvent) -> Document {
    let mut d = Document::new();
    d.insert("type", event.type_name());
    d.insert("address", event.address().to_string());
    if let Some(id) = event.connection_id() {
        d.insert("connectionId", id as i64);
    }
    let ms = |dur: &Duration| Bson::Double(dur.as_secs_f64() * 1000.0);
    match event {
        CmapEvent::PoolCreated { options, .. } => {
            let mut o = Document::new();
            o.insert("maxPoolSize", options.max_pool_size as i64);
            o.insert("minPoolSize", options.min_pool_size as i64);
            o.insert("maxConnecting", options.max_connecting as i64);
            if let Some(t) = options.max_idle_time {
                o.insert("maxIdleTimeMS", t.as_millis() as i64);
            }
            if let Some(t) = options.wait_queue_timeout {
                o.insert("waitQueueTimeoutMS", t.as_millis() as i64);
            }
            d.insert("options", o);
        }
        CmapEvent::PoolCleared {
            interrupt_in_use_connections,
            ..
        } => {
            d.insert("interruptInUseConnections", *interrupt_in_use_connections);
        }
        CmapEvent::ConnectionReady { duration, .. }
        | CmapEvent::ConnectionCheckedOut { duration, .. } => {
            d.insert("duration", ms(duration));
        }
        CmapEvent::ConnectionClosed { reason, .. } => {
            d.insert("reason", reason.as_str());
        }
        CmapEvent::ConnectionCheckOutFailed {
            reason, duration, ..
        } => {
            d.insert("reason", reason.as_str());
            d.insert("duration", ms(duration));
        }
        _ => {}
    }
    d
}

fn as_f64(b: &Bson) -> Option<f64> {
    match b {
        Bson::Int32(i) => Some(*i as f64),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    }
}

fn is_placeholder(b: &Bson) -> bool {
    matches!(b, Bson::String(s) if s == "42") || as_f64(b) == Some(42.0)
}

/// The runner README's MATCH: `expected` is a subset of `actual`; `42` and `"42"` stand for
/// "any value that exists".
pub fn matches(expected: &Bson, actual: Option<&Bson>, path: &str) -> Result<(), String> {
    if is_placeholder(expected) {
        return match actual {
            None | Some(Bson::Null) => Err(format!("{path}: expected a value, found none")),
            Some(_) => Ok(()),
        };
    }
    let Some(actual) = actual else {
        return Err(format!("{path}: expected {expected}, found nothing"));
    };
    match (expected, actual) {
        (Bson::Document(e), Bson::Document(a)) => {
            for (k, v) in e {
                matches(v, a.get(k), &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Bson::Array(e), Bson::Array(a)) => {
            for (i, v) in e.iter().enumerate() {
                matches(v, a.get(i), &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => match (as_f64(expected), as_f64(actual)) {
            (Some(e), Some(a)) if e == a => Ok(()),
            (Some(_), _) | (_, Some(_)) => {
                Err(format!("{path}: expected {expected}, got {actual}"))
            }
            _ if expected == actual => Ok(()),
            _ => Err(format!("{path}: expected {expected}, got {actual}")),
        },
    }
}

/// The final checks of the runner README: the main thread's error (type equal, message
/// contained case-insensitively, since drivers add the pool address to it), and every expected
/// event matching the non-ignored events at the same index.
pub fn check_outcome(
    test: &CmapFormatTest,
    events: &[CmapEvent],
    main_error: Option<&TestError>,
) -> Result<(), String> {
    match (&test.error, main_error) {
        (None, None) => {}
        (None, Some(e)) => return Err(format!("unexpected error {e:?}")),
        (Some(expected), None) => return Err(format!("expected error {expected}, got none")),
        (Some(expected), Some(actual)) => {
            if let Ok(kind) = expected.get_str("type") {
                if kind != actual.kind {
                    return Err(format!("expected error type {kind}, got {actual:?}"));
                }
            }
            if let Ok(message) = expected.get_str("message") {
                if !actual
                    .message
                    .to_lowercase()
                    .contains(&message.to_lowercase())
                {
                    return Err(format!(
                        "expected error message {message:?}, got {actual:?}"
                    ));
                }
            }
        }
    }
    let actual: Vec<Document> = events
        .iter()
        .filter(|e| !test.ignore.iter().any(|i| i == e.type_name()))
        .map(event_to_document)
        .collect();
    for (i, expected) in test.events.iter().enumerate() {
        let got = actual.get(i).cloned().map(Bson::Document);
        matches(
            &Bson::Document(expected.clone()),
            got.as_ref(),
            &format!("events[{i}]"),
        )
        .map_err(|e| {
            let types: Vec<String> = actual
                .iter()
                .map(|d| {
                    format!(
                        "{}{}",
                        d.get_str("type").unwrap_or("?"),
                        d.get("connectionId")
                            .map(|c| format!("({c})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!("{e}; actual events: [{}]", types.join(", "))
        })?;
    }
    Ok(())
}

/// How many events of type `name` were emitted (ignore lists do not apply).
pub fn count_events(events: &[CmapEvent], name: &str) -> usize {
    events.iter().filter(|e| e.type_name() == name).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn match_function() {
        let actual = Bson::Document(doc! { "a": 1_i64, "b": "x", "c": { "d": [1, 2] } });
        assert!(matches(&Bson::Document(doc! { "a": 1 }), Some(&actual), "$").is_ok());
        assert!(matches(&Bson::Document(doc! { "a": 42 }), Some(&actual), "$").is_ok());
        assert!(matches(&Bson::Document(doc! { "b": "42" }), Some(&actual), "$").is_ok());
        assert!(matches(&Bson::Document(doc! { "z": 42 }), Some(&actual), "$").is_err());
        assert!(matches(&Bson::Document(doc! { "a": 2 }), Some(&actual), "$").is_err());
        assert!(matches(&Bson::Document(doc! { "b": "y" }), Some(&actual), "$").is_err());
        assert!(matches(
            &Bson::Document(doc! { "c": { "d": [1] } }),
            Some(&actual),
            "$"
        )
        .is_ok());
        assert!(matches(
            &Bson::Document(doc! { "c": { "d": [2] } }),
            Some(&actual),
            "$"
        )
        .is_err());
        assert!(matches(&Bson::Document(doc! { "a": "1" }), Some(&actual), "$").is_err());
    }
}
