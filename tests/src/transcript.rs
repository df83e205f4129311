//! Transcripts: what the driver did during one conformance test, as normalized text, so that
//! runs on different runtimes can be compared line by line.
//!
//! A [`Transcript`] receives the driver's events (through [`Transcript::event_handler`], which
//! [`Env::client`](crate::Env::client) installs) and renders each as one line. Values that
//! legitimately differ between runs are replaced while recording:
//!
//! - request ids, pool connection ids, server connection ids (`connectionId`), cursor ids,
//!   ObjectIds (topology ids, `_id`s, `electionId`, ...), `lsid`s and addresses (ports) become
//!   numbered placeholders in order of first appearance (`<req1>`, `<conn1>`, `<cursor1>`,
//!   `<oid1>`, `<host1>`, ...), so equal values stay equal and distinct ones stay distinct;
//! - dates (`localTime`, ...), timestamps (`operationTime`), `$clusterTime` and durations become
//!   fixed markers or are left out;
//! - `client.platform` (which names the runtime) becomes `Rust / <runtime>`;
//! - heartbeat events, whose number depends on timing, are not recorded.
//!
//! Events of concurrent tasks interleave nondeterministically; a test that runs tasks
//! concurrently gives each its own [`Transcript::lane`] (each lane is ordered by itself, and
//! lanes are rendered one after another by name).
//!
//! The comparer ([`compare_dir`], [`unified_diff`]) reads the transcripts the runner wrote
//! (`<dir>/<test>/<harness>.txt` with `<harness>.status` beside it), prints the parity matrix
//! and fails on any difference between runtimes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anymongo_core::bson::{Bson, Document};
use anymongo_core::cmap::CmapEvent;
use anymongo_core::event::{CommandEvent, Event, EventHandler};
use anymongo_core::sdam::{SdamEvent, ServerDescription, TopologyDescription};
use anymongo_core::{Error, ErrorKind};

/// The recorded, normalized events of one test (or of one lane of it). Cheap to clone: clones
/// share the same record.
#[derive(Clone, Default)]
pub struct Transcript {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    lines: Vec<String>,
    normalizer: Normalizer,
    lanes: BTreeMap<String, Transcript>,
    sealed: bool,
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Transcript")
            .field("lines", &inner.lines.len())
            .field("lanes", &inner.lanes.keys().collect::<Vec<_>>())
            .field("sealed", &inner.sealed)
            .finish()
    }
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An event handler that records every event into this transcript.
    pub fn event_handler(&self) -> EventHandler {
        let me = self.clone();
        EventHandler::new(move |event| me.record(event))
    }

    /// Records one driver event (heartbeats are dropped; see the module docs).
    pub fn record(&self, event: &Event) {
        let mut inner = self.lock();
        if inner.sealed {
            return;
        }
        if let Some(line) = inner.normalizer.event_line(event) {
            inner.lines.push(line);
        }
    }

    /// Records a line written by the test itself (e.g. `"step: insert 25 documents"`). Ports of
    /// loopback addresses in it are normalized like those of events.
    pub fn note(&self, text: impl AsRef<str>) {
        let mut inner = self.lock();
        if inner.sealed {
            return;
        }
        let line = format!("note: {}", inner.normalizer.text(text.as_ref()));
        inner.lines.push(line);
    }

    /// Records a document (e.g. one the fake server received), normalized like command bodies.
    pub fn note_doc(&self, label: &str, doc: &Document) {
        let mut inner = self.lock();
        if inner.sealed {
            return;
        }
        let rendered = inner.normalizer.document(doc);
        inner.lines.push(format!("note: {label} {rendered}"));
    }

    /// The lane `name` of this transcript: a transcript of its own, for a concurrently running
    /// task (its own order and its own placeholders), rendered after this one's lines.
    pub fn lane(&self, name: &str) -> Transcript {
        let mut inner = self.lock();
        inner.lanes.entry(name.to_owned()).or_default().clone()
    }

    /// Stops recording (this transcript and its lanes): later events are ignored. The runner
    /// seals a test's transcript when the test's future completes, so that stragglers from
    /// background tasks cannot make transcripts differ.
    pub fn seal(&self) {
        let lanes: Vec<Transcript> = {
            let mut inner = self.lock();
            inner.sealed = true;
            inner.lanes.values().cloned().collect()
        };
        for lane in lanes {
            lane.seal();
        }
    }

    /// The recorded lines of this transcript (without its lanes).
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    /// The whole transcript as text: one line per event, then each lane under a `== lane NAME
    /// ==` header.
    pub fn render(&self) -> String {
        let (lines, lanes) = {
            let inner = self.lock();
            (
                inner.lines.clone(),
                inner
                    .lanes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        let mut out = String::new();
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
        for (name, lane) in lanes {
            let _ = writeln!(out, "== lane {name} ==");
            out.push_str(&lane.render());
        }
        out
    }
}

/// Keys whose values are replaced by a fixed marker wherever they appear in a document.
const FIXED_MARKERS: &[(&str, &str)] = &[
    ("$clusterTime", "<clusterTime>"),
    ("operationTime", "<operationTime>"),
    ("localTime", "<localTime>"),
];

/// Arrays of cursor ids (killCursors and its reply).
const CURSOR_ID_ARRAYS: &[&str] = &[
    "cursors",
    "cursorsKilled",
    "cursorsNotFound",
    "cursorsAlive",
    "cursorsUnknown",
];

/// Replaces run-specific values by placeholders numbered in order of first appearance.
#[derive(Default)]
struct Normalizer {
    /// (kind, value) → number.
    seen: HashMap<(&'static str, String), usize>,
    /// kind → how many values of that kind were seen.
    counts: HashMap<&'static str, usize>,
}

impl Normalizer {
    /// The placeholder `<{kind}{n}>` of `value`.
    fn placeholder(&mut self, kind: &'static str, value: String) -> String {
        let n = match self.seen.get(&(kind, value.clone())) {
            Some(n) => *n,
            None => {
                let count = self.counts.entry(kind).or_insert(0);
                *count += 1;
                let n = *count;
                self.seen.insert((kind, value), n);
                n
            }
        };
        format!("<{kind}{n}>")
    }

    fn host(&mut self, address: impl std::fmt::Display) -> String {
        self.placeholder("host", address.to_string())
    }

    fn conn(&mut self, id: u64) -> String {
        self.placeholder("conn", id.to_string())
    }

    fn req(&mut self, id: i32) -> String {
        self.placeholder("req", id.to_string())
    }

    /// Normalizes free text: `127.0.0.1:<port>`, `localhost:<port>` and `[::1]:<port>` become
    /// host placeholders, and the request ids in "request <id>" (a reply to the wrong request)
    /// request placeholders.
    fn text(&mut self, s: &str) -> String {
        let hosts = self.hosts_in_text(s);
        let mut out = String::with_capacity(hosts.len());
        let mut rest = hosts.as_str();
        while let Some(i) = rest.find("request ") {
            let after = &rest[i + "request ".len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str(&rest[..i + "request ".len()]);
            match after[..digits].parse::<i32>() {
                Ok(id) => {
                    let ph = self.req(id);
                    out.push_str(&ph);
                }
                Err(_) => out.push_str(&after[..digits]),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        out
    }

    fn hosts_in_text(&mut self, s: &str) -> String {
        const HOSTS: &[&str] = &["127.0.0.1:", "localhost:", "[::1]:"];
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        loop {
            let next = HOSTS
                .iter()
                .filter_map(|h| rest.find(h).map(|i| (i, *h)))
                .min_by_key(|(i, _)| *i);
            let Some((i, host)) = next else {
                out.push_str(rest);
                return out;
            };
            let after = &rest[i + host.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str(&rest[..i]);
            if digits == 0 {
                out.push_str(host);
            } else {
                let address = format!("{host}{}", &after[..digits]);
                let ph = self.host(address);
                out.push_str(&ph);
            }
            rest = &after[digits..];
        }
    }

    /// A normalized copy of a command, reply or document, rendered as text.
    fn document(&mut self, doc: &Document) -> String {
        self.normalize_doc(doc, None).to_string()
    }

    fn normalize_doc(&mut self, doc: &Document, parent: Option<&str>) -> Document {
        let mut out = Document::new();
        for (key, value) in doc {
            let marker = FIXED_MARKERS.iter().find(|(k, _)| *k == key.as_str());
            let normalized = if let Some((_, marker)) = marker {
                Bson::String((*marker).to_owned())
            } else {
                match (key.as_str(), value) {
                    ("lsid", v) => Bson::String(self.placeholder("lsid", format!("{v:?}"))),
                    ("connectionId", v) => {
                        Bson::String(self.placeholder("serverConn", v.to_string()))
                    }
                    ("platform", Bson::String(_)) if parent == Some("client") => {
                        Bson::String("Rust / <runtime>".to_owned())
                    }
                    ("getMore", v) => self.cursor_id(v),
                    ("id", v) if parent == Some("cursor") => self.cursor_id(v),
                    (k, Bson::Array(items)) if CURSOR_ID_ARRAYS.contains(&k) => {
                        Bson::Array(items.iter().map(|v| self.cursor_id(v)).collect())
                    }
                    (k, v) => self.normalize_value(v, k),
                }
            };
            out.insert(key.clone(), normalized);
        }
        out
    }

    fn normalize_value(&mut self, value: &Bson, key: &str) -> Bson {
        match value {
            Bson::Document(d) => Bson::Document(self.normalize_doc(d, Some(key))),
            Bson::Array(items) => {
                Bson::Array(items.iter().map(|v| self.normalize_value(v, key)).collect())
            }
            Bson::ObjectId(oid) => Bson::String(self.placeholder("oid", oid.to_hex())),
            Bson::DateTime(_) => Bson::String("<date>".to_owned()),
            Bson::Timestamp(_) => Bson::String("<timestamp>".to_owned()),
            Bson::String(s) => Bson::String(self.text(s)),
            other => other.clone(),
        }
    }

    /// Cursor id 0 means "exhausted" and is kept; any other id becomes a placeholder.
    fn cursor_id(&mut self, value: &Bson) -> Bson {
        let id = match value {
            Bson::Int64(i) => *i,
            Bson::Int32(i) => i64::from(*i),
            other => return other.clone(),
        };
        if id == 0 {
            Bson::Int64(0)
        } else {
            Bson::String(self.placeholder("cursor", id.to_string()))
        }
    }

    /// An error, by kind and the fields that identify it (not OS wording).
    fn error(&mut self, error: &Error) -> String {
        let labels: Vec<&str> = error.labels().iter().map(String::as_str).collect();
        let kind = match error.kind() {
            ErrorKind::Command(c) => format!(
                "Command(code={}, codeName={}, message={:?})",
                c.code,
                c.code_name,
                self.text(&c.message)
            ),
            ErrorKind::Io(e) => format!("Io({:?})", e.kind()),
            ErrorKind::Write(w) => format!("Write({w:?})"),
            ErrorKind::BulkWrite(b) => format!(
                "BulkWrite(writeErrors={}, writeConcernError={})",
                b.write_errors.len(),
                b.write_concern_error.is_some()
            ),
            ErrorKind::Shutdown => "Shutdown".to_owned(),
            other => {
                // The variant name and its message, with addresses normalized.
                let debug = format!("{other:?}");
                self.text(&debug)
            }
        };
        if labels.is_empty() {
            kind
        } else {
            format!("{kind} labels={labels:?}")
        }
    }

    fn server(&mut self, sd: &ServerDescription) -> String {
        let mut s = format!("{}:{}", self.host(&sd.address), sd.server_type);
        if let Some(name) = &sd.set_name {
            let _ = write!(s, " setName={name}");
        }
        if let Some(error) = &sd.error {
            let _ = write!(s, " error={:?}", self.text(error));
        }
        s
    }

    fn topology(&mut self, td: &TopologyDescription) -> String {
        let servers: Vec<String> = td.servers.values().map(|sd| self.server(sd)).collect();
        let mut s = format!("{} [{}]", td.topology_type, servers.join(", "));
        if let Some(name) = &td.set_name {
            let _ = write!(s, " setName={name}");
        }
        s
    }

    /// One line for `event`, or `None` for events not recorded (heartbeats).
    fn event_line(&mut self, event: &Event) -> Option<String> {
        Some(match event {
            Event::Command(CommandEvent::Started(e)) => format!(
                "command started {} db={} {} {} on {}: {}",
                e.command_name,
                e.database_name,
                self.req(e.request_id),
                self.conn(e.connection_id),
                self.host(&e.address),
                self.document(&e.command)
            ),
            Event::Command(CommandEvent::Succeeded(e)) => {
                // listDatabases lists every database on the server: state shared by all runs,
                // not behaviour of this one.
                let reply = if e.command_name == "listDatabases" {
                    let mut reply = e.reply.clone();
                    for key in ["databases", "totalSize"] {
                        if reply.contains_key(key) {
                            reply.insert(key, "<server-wide>");
                        }
                    }
                    std::borrow::Cow::Owned(reply)
                } else {
                    std::borrow::Cow::Borrowed(&e.reply)
                };
                format!(
                    "command succeeded {} {} {}: {}",
                    e.command_name,
                    self.req(e.request_id),
                    self.conn(e.connection_id),
                    self.document(&reply)
                )
            }
            Event::Command(CommandEvent::Failed(e)) => format!(
                "command failed {} {} {}: {}",
                e.command_name,
                self.req(e.request_id),
                self.conn(e.connection_id),
                self.error(&e.failure)
            ),
            Event::Cmap(e) => self.cmap(e),
            Event::Sdam(e) => self.sdam(e)?,
        })
    }

    fn cmap(&mut self, e: &CmapEvent) -> String {
        let mut line = format!("cmap {} {}", e.type_name(), self.host(e.address()));
        if let Some(id) = e.connection_id() {
            let _ = write!(line, " {}", self.conn(id));
        }
        match e {
            CmapEvent::PoolCreated { options, .. } => {
                let _ = write!(line, " {options:?}");
            }
            CmapEvent::PoolCleared {
                interrupt_in_use_connections,
                ..
            } => {
                let _ = write!(line, " interrupt={interrupt_in_use_connections}");
            }
            CmapEvent::ConnectionClosed { reason, .. } => {
                let _ = write!(line, " reason={}", reason.as_str());
            }
            CmapEvent::ConnectionCheckOutFailed { reason, .. } => {
                let _ = write!(line, " reason={}", reason.as_str());
            }
            _ => {}
        }
        line
    }

    fn sdam(&mut self, e: &SdamEvent) -> Option<String> {
        Some(match e {
            SdamEvent::ServerHeartbeatStarted { .. }
            | SdamEvent::ServerHeartbeatSucceeded { .. }
            | SdamEvent::ServerHeartbeatFailed { .. } => return None,
            SdamEvent::TopologyOpening { topology_id } => format!(
                "sdam topology opening {}",
                self.placeholder("topology", topology_id.to_hex())
            ),
            SdamEvent::TopologyClosed { topology_id } => format!(
                "sdam topology closed {}",
                self.placeholder("topology", topology_id.to_hex())
            ),
            SdamEvent::TopologyDescriptionChanged { previous, new, .. } => format!(
                "sdam topology changed {} -> {}",
                self.topology(previous),
                self.topology(new)
            ),
            SdamEvent::ServerOpening { address, .. } => {
                format!("sdam server opening {}", self.host(address))
            }
            SdamEvent::ServerClosed { address, .. } => {
                format!("sdam server closed {}", self.host(address))
            }
            SdamEvent::ServerDescriptionChanged { previous, new, .. } => format!(
                "sdam server changed {} -> {}",
                self.server(previous),
                self.server(new)
            ),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Files written by the runner.

/// The directory name of a test's transcripts (`module::test` → `module.test`).
pub fn test_dir_name(test: &str) -> String {
    test.replace("::", ".")
}

/// Writes one cell's transcript and status: `<dir>/<test>/<harness>.txt` and
/// `<dir>/<test>/<harness>.status` (`pass`, `skip: <reason>` or `fail: <message>`).
pub fn write_cell(
    dir: &Path,
    test: &str,
    harness: &str,
    status: &CellStatus,
    transcript: &str,
) -> io::Result<()> {
    let test_dir = dir.join(test_dir_name(test));
    std::fs::create_dir_all(&test_dir)?;
    std::fs::write(test_dir.join(format!("{harness}.txt")), transcript)?;
    std::fs::write(
        test_dir.join(format!("{harness}.status")),
        format!("{}\n", status.to_line()),
    )
}

/// How a cell ended, as the comparer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellStatus {
    /// Passed.
    Pass,
    /// Skipped, with the reason.
    Skip(String),
    /// Failed, with the message.
    Fail(String),
}

impl CellStatus {
    /// The status file's content (one line; newlines in messages are flattened).
    pub fn to_line(&self) -> String {
        match self {
            CellStatus::Pass => "pass".to_owned(),
            CellStatus::Skip(r) => format!("skip: {}", r.replace('\n', " ")),
            CellStatus::Fail(m) => format!("fail: {}", m.replace('\n', " ")),
        }
    }

    /// Parses a status file's content.
    pub fn parse(s: &str) -> CellStatus {
        let s = s.trim_end();
        if s == "pass" {
            CellStatus::Pass
        } else if let Some(r) = s.strip_prefix("skip: ") {
            CellStatus::Skip(r.to_owned())
        } else if let Some(m) = s.strip_prefix("fail: ") {
            CellStatus::Fail(m.to_owned())
        } else {
            CellStatus::Fail(format!("unreadable status {s:?}"))
        }
    }

    fn mark(&self) -> &'static str {
        match self {
            CellStatus::Pass => "pass",
            CellStatus::Skip(_) => "skip",
            CellStatus::Fail(_) => "FAIL",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The comparer.

/// One test's transcripts on every harness, as read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRow {
    /// The test's directory name.
    pub test: String,
    /// Per harness column: the status and transcript, if that cell ran.
    pub cells: Vec<Option<(CellStatus, String)>>,
}

/// The comparison of all tests across all harnesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityReport {
    /// Column names, in order.
    pub harnesses: Vec<String>,
    /// One row per test, sorted by name.
    pub rows: Vec<TestRow>,
}

/// A row's verdict on parity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parity {
    /// Every cell that ran (passed or failed) recorded the same transcript.
    Identical,
    /// Fewer than two cells ran: nothing to compare.
    NotCompared,
    /// These unified diffs (against the first cell that ran) show the differences.
    Different(Vec<String>),
}

impl TestRow {
    /// Compares the transcripts of the cells that ran (skipped cells are not compared: a test
    /// may legitimately not apply to a configuration).
    pub fn parity(&self, harnesses: &[String]) -> Parity {
        let ran: Vec<(&str, &str)> = self
            .cells
            .iter()
            .zip(harnesses)
            .filter_map(|(cell, h)| match cell {
                Some((CellStatus::Skip(_), _)) | None => None,
                Some((_, text)) => Some((h.as_str(), text.as_str())),
            })
            .collect();
        let Some((&(base_name, base), rest)) = ran.split_first() else {
            return Parity::NotCompared;
        };
        if rest.is_empty() {
            return Parity::NotCompared;
        }
        let diffs: Vec<String> = rest
            .iter()
            .filter_map(|&(name, text)| {
                unified_diff(
                    &format!("{}/{base_name}.txt", self.test),
                    base,
                    &format!("{}/{name}.txt", self.test),
                    text,
                )
            })
            .collect();
        if diffs.is_empty() {
            Parity::Identical
        } else {
            Parity::Different(diffs)
        }
    }
}

impl ParityReport {
    /// Builds a report from rows and column names.
    pub fn new(harnesses: Vec<String>, mut rows: Vec<TestRow>) -> Self {
        rows.sort_by(|a, b| a.test.cmp(&b.test));
        ParityReport { harnesses, rows }
    }

    /// Whether every cell that ran passed and every row is identical (or not comparable).
    pub fn ok(&self) -> bool {
        !self.rows.is_empty()
            && self.rows.iter().all(|row| {
                !row.cells
                    .iter()
                    .flatten()
                    .any(|(s, _)| matches!(s, CellStatus::Fail(_)))
                    && !matches!(row.parity(&self.harnesses), Parity::Different(_))
            })
    }

    /// The matrix (one row per test, one column per harness, `identical`, and the number of
    /// transcript lines), then every
    /// failure and every diff, then a summary line.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.test.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = write!(out, "{:width$}", "test");
        for h in &self.harnesses {
            let _ = write!(out, "  {h:>9}");
        }
        let _ = writeln!(out, "  {:>9}  {:>6}", "identical", "events");
        let mut notes = Vec::new();
        let mut diffs = Vec::new();
        let (mut identical, mut different, mut uncompared) = (0, 0, 0);
        for row in &self.rows {
            let _ = write!(out, "{:width$}", row.test);
            for (cell, h) in row.cells.iter().zip(&self.harnesses) {
                let mark = match cell {
                    None => "-",
                    Some((status, _)) => {
                        if let CellStatus::Fail(m) | CellStatus::Skip(m) = status {
                            notes.push(format!(
                                "{} {}/{h}: {m}",
                                status.mark().to_uppercase(),
                                row.test
                            ));
                        }
                        status.mark()
                    }
                };
                let _ = write!(out, "  {mark:>9}");
            }
            let verdict = match row.parity(&self.harnesses) {
                Parity::Identical => {
                    identical += 1;
                    "yes"
                }
                Parity::NotCompared => {
                    uncompared += 1;
                    "-"
                }
                Parity::Different(d) => {
                    different += 1;
                    diffs.extend(d);
                    "NO"
                }
            };
            // How many lines the transcripts have (the first one that ran): 0 means the test
            // built no client through `Env::client`, so its parity says nothing about the driver.
            let lines = row
                .cells
                .iter()
                .flatten()
                .find(|(s, _)| !matches!(s, CellStatus::Skip(_)))
                .map_or("-".to_owned(), |(_, t)| t.lines().count().to_string());
            let _ = writeln!(out, "  {verdict:>9}  {lines:>6}");
        }
        for note in notes {
            let _ = writeln!(out, "{note}");
        }
        for diff in diffs {
            out.push_str(&diff);
        }
        let _ = writeln!(
            out,
            "parity: {identical} identical, {different} different, {uncompared} not compared; {}",
            if self.ok() { "OK" } else { "FAILED" }
        );
        out
    }
}

/// Reads `<dir>/<test>/<harness>.{txt,status}` for every test directory. Columns come in the
/// order of `known` (harnesses found on disk but not in `known` follow, sorted).
pub fn compare_dir(dir: &Path, known: &[&str]) -> io::Result<ParityReport> {
    let mut harnesses: Vec<String> = known.iter().map(|s| (*s).to_owned()).collect();
    // (test, harness → (status, transcript))
    type Cells = BTreeMap<String, (CellStatus, String)>;
    let mut found: Vec<(String, Cells)> = Vec::new();
    let mut extra = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let test = entry.file_name().to_string_lossy().into_owned();
        let mut cells = BTreeMap::new();
        for file in std::fs::read_dir(entry.path())? {
            let path = file?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("status") {
                continue;
            }
            let Some(harness) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let status = CellStatus::parse(&std::fs::read_to_string(&path)?);
            let text = std::fs::read_to_string(path.with_extension("txt")).unwrap_or_default();
            if !harnesses.iter().any(|h| h == harness) {
                extra.insert(harness.to_owned());
            }
            cells.insert(harness.to_owned(), (status, text));
        }
        found.push((test, cells));
    }
    harnesses.extend(extra);
    let rows = found
        .into_iter()
        .map(|(test, mut cells)| TestRow {
            test,
            cells: harnesses.iter().map(|h| cells.remove(h)).collect(),
        })
        .collect();
    Ok(ParityReport::new(harnesses, rows))
}

/// A unified diff (3 lines of context) from `a` to `b`, or `None` when they are equal.
pub fn unified_diff(a_name: &str, a: &str, b_name: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let a_lines: Vec<&str> = a.lines().collect();
    let b_lines: Vec<&str> = b.lines().collect();
    let ops = diff_ops(&a_lines, &b_lines);
    let mut out = format!("--- {a_name}\n+++ {b_name}\n");
    const CONTEXT: usize = 3;
    // Group the edit script into hunks: changes plus up to CONTEXT equal lines around them.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Equal(..)))
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        // Same lines, different line endings or trailing newline.
        out.push_str("@@ line endings or final newline differ @@\n");
        return Some(out);
    }
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        let start = i.saturating_sub(CONTEXT);
        let end = (i + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    for (start, end) in hunks {
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_count, mut b_count) = (0, 0);
        let mut body = String::new();
        for op in &ops[start..end] {
            match *op {
                Op::Equal(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    a_count += 1;
                    b_count += 1;
                    let _ = writeln!(body, " {}", a_lines[i]);
                }
                Op::Delete(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    a_count += 1;
                    let _ = writeln!(body, "-{}", a_lines[i]);
                }
                Op::Insert(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    b_count += 1;
                    let _ = writeln!(body, "+{}", b_lines[j]);
                }
            }
        }
        // Unified diff line numbers are 1-based; an empty range names the line before it.
        let a_from = a_start.unwrap_or(0) + usize::from(a_count > 0);
        let b_from = b_start.unwrap_or(0) + usize::from(b_count > 0);
        let _ = writeln!(out, "@@ -{a_from},{a_count} +{b_from},{b_count} @@");
        out.push_str(&body);
    }
    Some(out)
}

/// One step of an edit script; the indices are the positions in `a` and `b` at that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal(usize, usize),
    Delete(usize, usize),
    Insert(usize, usize),
}

/// A shortest edit script from `a` to `b` (longest common subsequence by dynamic programming;
/// transcripts are small). Very large inputs fall back to "delete all, insert all".
fn diff_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > 25_000_000 {
        let mut ops: Vec<Op> = (0..n).map(|i| Op::Delete(i, 0)).collect();
        ops.extend((0..m).map(|j| Op::Insert(n, j)));
        return ops;
    }
    // lcs[i][j] = LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Equal(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Delete(i, j));
            i += 1;
        } else {
            ops.push(Op::Insert(i, j));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use anymongo_core::bson::{doc, oid::ObjectId};
    use anymongo_core::event::{CommandStartedEvent, CommandSucceededEvent};
    use anymongo_core::options::ServerAddress;

    fn row(test: &str, cells: &[(&str, &str)]) -> TestRow {
        TestRow {
            test: test.to_owned(),
            cells: cells
                .iter()
                .map(|(status, text)| Some((CellStatus::parse(status), (*text).to_owned())))
                .collect(),
        }
    }

    fn harnesses() -> Vec<String> {
        vec!["tokio-ct".into(), "smol".into()]
    }

    #[test]
    fn differing_transcripts_fail_with_a_unified_diff() {
        let a = "cmap ConnectionCreated <host1> <conn1>\ncmap ConnectionReady <host1> <conn1>\n\
                 command started ping\ncommand succeeded ping\n";
        let b = "cmap ConnectionCreated <host1> <conn1>\ncmap ConnectionReady <host1> <conn1>\n\
                 command started ping\ncommand failed ping: Io(UnexpectedEof)\n";
        let report = ParityReport::new(
            harnesses(),
            vec![row("driver.ping", &[("pass", a), ("pass", b)])],
        );
        assert!(!report.ok());
        let Parity::Different(diffs) = report.rows[0].parity(&report.harnesses) else {
            panic!("expected a difference");
        };
        assert_eq!(
            diffs,
            vec![
                "--- driver.ping/tokio-ct.txt\n+++ driver.ping/smol.txt\n@@ -1,4 +1,4 @@\n \
                 cmap ConnectionCreated <host1> <conn1>\n cmap ConnectionReady <host1> <conn1>\n \
                 command started ping\n-command succeeded ping\n+command failed ping: \
                 Io(UnexpectedEof)\n"
                    .to_owned()
            ]
        );
        let rendered = report.render();
        assert!(
            rendered.contains("driver.ping       pass       pass         NO       4\n"),
            "{rendered}"
        );
        assert!(rendered.contains("-command succeeded ping\n"), "{rendered}");
        assert!(
            rendered.ends_with("1 different, 0 not compared; FAILED\n"),
            "{rendered}"
        );
    }

    #[test]
    fn free_text_loses_ports_and_request_ids() {
        let mut n = Normalizer {
            seen: HashMap::new(),
            counts: HashMap::new(),
        };
        assert_eq!(
            n.text(
                "127.0.0.1:4242: the reply answers request 1234, not request 234 (the one sent)"
            ),
            "<host1>: the reply answers request <req1>, not request <req2> (the one sent)"
        );
        assert_eq!(
            n.text("request x, request 234"),
            "request x, request <req2>"
        );
    }

    #[test]
    fn identical_transcripts_succeed() {
        let a = "sdam topology opening <topology1>\ncommand started ping\n";
        let report = ParityReport::new(
            harnesses(),
            vec![
                row("driver.ping", &[("pass", a), ("pass", a)]),
                row("rt.name", &[("pass", ""), ("skip: not here", "other")]),
            ],
        );
        assert!(report.ok(), "{}", report.render());
        assert_eq!(report.rows[0].parity(&report.harnesses), Parity::Identical);
        // Skipped cells are not compared.
        assert_eq!(
            report.rows[1].parity(&report.harnesses),
            Parity::NotCompared
        );
        let rendered = report.render();
        assert!(
            rendered.contains("driver.ping       pass       pass        yes       2\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("SKIP rt.name/smol: not here"),
            "{rendered}"
        );
        assert!(rendered.ends_with("1 identical, 0 different, 1 not compared; OK\n"));
    }

    #[test]
    fn a_failed_cell_fails_the_report_even_when_identical() {
        let report = ParityReport::new(
            harnesses(),
            vec![row("t", &[("pass", "x\n"), ("fail: boom", "x\n")])],
        );
        assert!(!report.ok());
        assert!(report.render().contains("FAIL t/smol: boom"));
    }

    #[test]
    fn diff_hunks_have_context_and_line_numbers() {
        let a: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let b = a
            .replace("line 10\n", "line ten\n")
            .replace("line 20\n", "");
        let diff = unified_diff("a", &a, "b", &b).expect("differs");
        assert_eq!(
            diff,
            "--- a\n+++ b\n@@ -7,7 +7,7 @@\n line 7\n line 8\n line 9\n-line 10\n+line ten\n \
             line 11\n line 12\n line 13\n@@ -17,4 +17,3 @@\n line 17\n line 18\n line 19\n\
             -line 20\n"
        );
        assert_eq!(unified_diff("a", &a, "b", &a), None);
        // Insertion into an empty file.
        assert_eq!(
            unified_diff("a", "", "b", "x\n").as_deref(),
            Some("--- a\n+++ b\n@@ -0,0 +1,1 @@\n+x\n")
        );
    }

    #[test]
    fn write_and_compare_a_directory() {
        let dir = std::env::temp_dir().join(format!(
            "anymongo-parity-test-{}-{}",
            std::process::id(),
            ObjectId::new().to_hex()
        ));
        write_cell(&dir, "m::t", "smol", &CellStatus::Pass, "a\nb\n").expect("write");
        write_cell(&dir, "m::t", "tokio-ct", &CellStatus::Pass, "a\nc\n").expect("write");
        write_cell(
            &dir,
            "m::u",
            "tokio-ct",
            &CellStatus::Skip("why".into()),
            "",
        )
        .expect("write");
        let report = compare_dir(&dir, &["tokio-ct", "tokio-mt", "smol"]).expect("read");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(report.harnesses, ["tokio-ct", "tokio-mt", "smol"]);
        assert_eq!(report.rows.len(), 2);
        assert_eq!(report.rows[0].test, "m.t");
        assert_eq!(report.rows[0].cells[1], None);
        assert!(!report.ok());
        let rendered = report.render();
        assert!(rendered.contains("-c\n+b\n"), "{rendered}");
    }

    fn addr(port: u16) -> ServerAddress {
        ServerAddress::tcp("127.0.0.1", port)
    }

    #[test]
    fn events_are_normalized_to_stable_placeholders() {
        let record = |port: u16, request_id: i32, connection_id: u64, cursor: i64| {
            let t = Transcript::new();
            let oid = ObjectId::new();
            t.record(&Event::Command(CommandEvent::Started(
                CommandStartedEvent {
                    command_name: "insert".into(),
                    database_name: "db".into(),
                    command: doc! {
                        "insert": "c", "documents": [{ "_id": oid }, { "_id": ObjectId::new() }],
                        "lsid": { "id": format!("{oid}") }, "$db": "db",
                    },
                    request_id,
                    address: addr(port),
                    connection_id,
                },
            )));
            t.record(&Event::Command(CommandEvent::Succeeded(CommandSucceededEvent {
                command_name: "find".into(),
                database_name: "db".into(),
                reply: doc! {
                    "cursor": { "id": cursor, "firstBatch": [{ "_id": oid }] },
                    "ok": 1, "operationTime": anymongo_core::bson::Timestamp { time: 1, increment: request_id as u32 },
                    "$clusterTime": { "clusterTime": 5 },
                    "connectionId": connection_id as i64 * 7,
                    "client": { "platform": format!("Rust / rt{port}") },
                    "localTime": anymongo_core::bson::DateTime::now(),
                    "errmsg": format!("seen at 127.0.0.1:{port}, again 127.0.0.1:{port}"),
                },
                request_id,
                address: addr(port),
                connection_id,
                duration: std::time::Duration::from_millis(u64::from(port)),
            })));
            t.record(&Event::Sdam(SdamEvent::ServerHeartbeatStarted {
                address: addr(port),
                awaited: false,
            }));
            t.seal();
            t.record(&Event::Sdam(SdamEvent::TopologyOpening {
                topology_id: ObjectId::new(),
            }));
            t.render()
        };
        let a = record(40001, 17, 3, 987_654);
        let b = record(50002, 99, 8, 123);
        assert_eq!(a, b);
        assert_eq!(
            a,
            "command started insert db=db <req1> <conn1> on <host1>: { \"insert\": \"c\", \
             \"documents\": [{ \"_id\": \"<oid1>\" }, { \"_id\": \"<oid2>\" }], \"lsid\": \
             \"<lsid1>\", \"$db\": \"db\" }\n\
             command succeeded find <req1> <conn1>: { \"cursor\": { \"id\": \"<cursor1>\", \
             \"firstBatch\": [{ \"_id\": \"<oid1>\" }] }, \"ok\": 1, \"operationTime\": \
             \"<operationTime>\", \"$clusterTime\": \"<clusterTime>\", \"connectionId\": \
             \"<serverConn1>\", \"client\": { \"platform\": \"Rust / <runtime>\" }, \
             \"localTime\": \"<localTime>\", \"errmsg\": \"seen at <host1>, again <host1>\" }\n"
        );
    }

    #[test]
    fn lanes_render_after_the_main_lines() {
        let t = Transcript::new();
        t.note("main");
        t.lane("b").note("in b");
        t.lane("a").note("in a at localhost:27017");
        assert_eq!(
            t.render(),
            "note: main\n== lane a ==\nnote: in a at <host1>\n== lane b ==\nnote: in b\n"
        );
    }
}
