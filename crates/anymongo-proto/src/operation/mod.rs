//! Operations as sans-IO builders and parsers: each turns its arguments into a [`Command`] for a
//! given server, and a server reply into its result. The client executes them: it selects a
//! server, checks out a connection, sends the command, and hands the reply back.

mod admin_commands;
mod aggregate;
pub mod cursor_ops;
mod find_and_modify;
pub mod handshake;
mod read_commands;
mod run_command;
mod update;
mod write;

pub use admin_commands::AdminCommand;
pub use aggregate::{count_documents_pipeline, parse_count_documents, Aggregate, AggregateTarget};
pub use cursor_ops::{CursorInfo, Find, GetMore, KillCursors};
pub use find_and_modify::{FindAndModify, Modification};
pub use handshake::{HandshakeRequest, StreamDescription};
pub use read_commands::{Count, CursorCommand, Distinct, ListDatabases};
pub use run_command::RunCommand;

pub use update::{
    replacement_document, validate_replacement, DeleteStatement, UpdateBody, UpdateModifications,
    UpdateStatement,
};
pub use write::{WriteCommand, WriteKind, WriteOutcome};

use std::borrow::Cow;
use std::sync::OnceLock;

use bson::{Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{CommandError, Error, ErrorKind, Result};
use crate::options::ReadPreference;
use crate::wire::{CommandBody, DocumentSequenceRef};

/// A command ready to be sent: its body, target database and OP_MSG document sequences.
///
/// It borrows what it can from the operation that built it (the body of a `run_command`, an
/// insert's documents), so building one copies nothing big; the connection encodes it straight
/// into its write buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Command<'a> {
    /// The database the command runs against (`$db`).
    pub target_db: Cow<'a, str>,
    /// The command body, without `$db` (its first key is the command name).
    pub body: Cow<'a, Document>,
    /// `$readPreference`, sent after the body's fields (see
    /// [`set_read_preference`](Self::set_read_preference)). The plain modes borrow a document
    /// built once.
    pub read_preference: Option<Cow<'static, Document>>,
    /// Kind-1 sections (e.g. `documents` of an insert).
    pub sequences: Vec<DocumentSequenceRef<'a>>,
    /// Send with `moreToCome` and expect no reply (unacknowledged writes).
    pub more_to_come: bool,
}

impl<'a> Command<'a> {
    /// A command of an owned `body` (named after its first key).
    pub fn new(target_db: impl Into<Cow<'a, str>>, body: Document) -> Self {
        Self::with_body(target_db.into(), Cow::Owned(body))
    }

    /// A command that borrows its body and database name (nothing is copied).
    pub fn borrowed(target_db: &'a str, body: &'a Document) -> Self {
        Self::with_body(Cow::Borrowed(target_db), Cow::Borrowed(body))
    }

    fn with_body(target_db: Cow<'a, str>, body: Cow<'a, Document>) -> Self {
        Command {
            target_db,
            body,
            read_preference: None,
            sequences: Vec::new(),
            more_to_come: false,
        }
    }

    /// The command name (the body's first key; empty for an empty body).
    pub fn name(&self) -> &str {
        self.body.keys().next().map_or("", String::as_str)
    }

    /// Sets `$readPreference` (only meaningful for non-primary reads). A body that already has
    /// one (a user's `run_command`) gets it replaced in place.
    pub fn set_read_preference(&mut self, rp: &ReadPreference) {
        if self.body.contains_key("$readPreference") {
            self.body
                .to_mut()
                .insert("$readPreference", read_preference_document(rp));
        } else {
            self.read_preference = Some(shared_read_preference_document(rp));
        }
    }

    /// The body as the wire encoder takes it: the body's fields, `$readPreference`, `$db`.
    pub fn wire_body(&self) -> CommandBody<'_> {
        CommandBody {
            document: &self.body,
            read_preference: self.read_preference.as_deref(),
            db: &self.target_db,
        }
    }

    /// The body as sent: `body` plus `$readPreference` and `$db`.
    pub fn to_raw_body(&self) -> Result<RawDocumentBuf> {
        let mut bytes = Vec::new();
        self.wire_body().write(&mut bytes)?;
        Ok(RawDocumentBuf::from_bytes(bytes)?)
    }

    /// The whole command as one document, sequences folded in as arrays (for events and logs).
    pub fn to_document(&self) -> Document {
        let mut doc = self.body.clone().into_owned();
        if let Some(rp) = &self.read_preference {
            doc.insert("$readPreference", rp.clone().into_owned());
        }
        for seq in &self.sequences {
            let docs: Vec<Bson> = seq
                .documents
                .iter()
                .filter_map(|d| crate::wire::raw::to_document(d).ok().map(Bson::Document))
                .collect();
            doc.insert(seq.identifier, docs);
        }
        doc.insert("$db", self.target_db.as_ref());
        doc
    }
}

/// The `$readPreference` document for `rp`, borrowed from documents built once when it is a
/// plain mode (no tags, staleness or hedge): every read on a standalone server sends
/// `primaryPreferred`.
fn shared_read_preference_document(rp: &ReadPreference) -> Cow<'static, Document> {
    use crate::options::ReadPreferenceMode as Mode;
    static PLAIN: OnceLock<[Document; 5]> = OnceLock::new();
    if !rp.tag_sets.is_empty() || rp.max_staleness.is_some() || rp.hedge.is_some() {
        return Cow::Owned(read_preference_document(rp));
    }
    let modes = [
        Mode::Primary,
        Mode::PrimaryPreferred,
        Mode::Secondary,
        Mode::SecondaryPreferred,
        Mode::Nearest,
    ];
    let plain = PLAIN.get_or_init(|| modes.map(|mode| bson::doc! { "mode": mode.as_str() }));
    match modes.iter().zip(plain).find(|(mode, _)| **mode == rp.mode) {
        Some((_, doc)) => Cow::Borrowed(doc),
        None => Cow::Owned(read_preference_document(rp)),
    }
}

/// The `$readPreference` document for `rp`.
pub fn read_preference_document(rp: &ReadPreference) -> Document {
    let mut doc = bson::doc! { "mode": rp.mode.as_str() };
    if !rp.tag_sets.is_empty() {
        let sets: Vec<Bson> = rp
            .tag_sets
            .iter()
            .map(|set| {
                let mut d = Document::new();
                let mut keys: Vec<_> = set.iter().collect();
                keys.sort();
                for (k, v) in keys {
                    d.insert(k.clone(), v.clone());
                }
                Bson::Document(d)
            })
            .collect();
        doc.insert("tags", sets);
    }
    if let Some(ms) = rp.max_staleness {
        doc.insert(
            "maxStalenessSeconds",
            i64::try_from(ms.as_secs()).unwrap_or(i64::MAX),
        );
    }
    if let Some(hedge) = rp.hedge {
        doc.insert("hedge", bson::doc! { "enabled": hedge });
    }
    doc
}

/// Whether, and by which rules, the executor may retry an operation after a retryable error.
///
/// Each operation declares its own: the executor has no list of command names, and an
/// operation that says nothing is never retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retryability {
    /// Never retried: a command the user wrote (`run_command`, `run_cursor_command`), `getMore`
    /// (its cursor lives on one server), a write stage, an admin command.
    #[default]
    None,
    /// Retried once under the retryable reads rules (find, aggregate without `$out`/`$merge`,
    /// count, distinct, listCollections/listIndexes/listDatabases).
    Read,
    /// Retried once under the retryable writes rules.
    Write,
}

/// An operation: build a command, parse its reply, and say what the executor must know to run
/// it (how it selects a server, whether it may be retried).
pub trait Operation {
    /// What the operation returns.
    type Output;

    /// The command name (the first key of the command it sends), for events and errors.
    fn name(&self) -> &str;

    /// How the executor may retry the operation. [`Retryability::None`] unless it says otherwise.
    fn retryability(&self) -> Retryability {
        Retryability::None
    }

    /// Whether the operation is a read: it selects a server by its read preference (the primary
    /// when it has none) rather than a writable one, and on a direct connection it is sent with
    /// `$readPreference` as the server selection spec asks of reads. `false` unless it says so.
    fn is_read(&self) -> bool {
        false
    }

    /// Builds the command for a server described by `description`. The command may borrow
    /// from the operation; a retried read builds it again, so keep what a rebuild needs.
    fn build(&mut self, description: &StreamDescription) -> Result<Command<'_>>;

    /// Parses a reply whose `ok` has already been checked.
    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        description: &StreamDescription,
    ) -> Result<Self::Output>;

    /// The read preference, for reads; `None` means the primary.
    fn read_preference(&self) -> Option<&ReadPreference> {
        None
    }
}

/// A duration as whole milliseconds for a command field (`maxTimeMS`, `wtimeout`), saturating
/// at `i64::MAX` instead of wrapping for durations no command could mean (the server then
/// rejects or caps it).
pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a numeric field as `f64` (`ok` may be int, long, double or bool).
fn number(value: RawBsonRef<'_>) -> Option<f64> {
    match value {
        RawBsonRef::Int32(v) => Some(f64::from(v)),
        RawBsonRef::Int64(v) => Some(v as f64),
        RawBsonRef::Double(v) => Some(v),
        RawBsonRef::Boolean(b) => Some(if b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// The BSON type's name, with its article, for messages ("a string").
fn bson_type_name(t: bson::spec::ElementType) -> &'static str {
    use bson::spec::ElementType as T;
    match t {
        T::Double => "a double",
        T::String => "a string",
        T::EmbeddedDocument => "a document",
        T::Array => "an array",
        T::Binary => "binary data",
        T::Undefined => "undefined",
        T::ObjectId => "an ObjectId",
        T::Boolean => "a boolean",
        T::DateTime => "a date",
        T::Null => "null",
        T::RegularExpression => "a regular expression",
        T::DbPointer => "a DBPointer",
        T::JavaScriptCode => "JavaScript code",
        T::Symbol => "a symbol",
        T::JavaScriptCodeWithScope => "JavaScript code with scope",
        T::Int32 => "an int32",
        T::Timestamp => "a timestamp",
        T::Int64 => "an int64",
        T::Decimal128 => "a decimal128",
        T::MaxKey => "MaxKey",
        T::MinKey => "MinKey",
    }
}

/// Reads an integer field of any numeric BSON type.
pub(crate) fn get_i64(doc: &RawDocument, key: &str) -> Option<i64> {
    match doc.get(key).ok()?? {
        RawBsonRef::Int32(v) => Some(i64::from(v)),
        RawBsonRef::Int64(v) => Some(v),
        RawBsonRef::Double(v) if v.fract() == 0.0 => Some(v as i64),
        _ => None,
    }
}

/// Turns an `ok: 0` reply into a command error (with labels and topologyVersion); `Ok` otherwise.
pub fn check_ok(reply: &RawDocument) -> Result<()> {
    if ok_is_one(reply.as_bytes()) {
        return Ok(());
    }
    // The wire decoder does not validate contents: malformed BSON before `ok` is a protocol
    // error, not a command error.
    let ok_value = reply
        .get("ok")
        .map_err(|e| Error::invalid_response(format!("invalid BSON in reply: {e}")))?;
    let ok = ok_value.and_then(number);
    if ok == Some(1.0) {
        return Ok(());
    }
    let code = get_i64(reply, "code").unwrap_or(0) as i32;
    let code_name = reply.get_str("codeName").unwrap_or("").to_string();
    let message = match (reply.get_str("errmsg"), ok_value) {
        (Ok(errmsg), _) => errmsg.to_string(),
        (Err(_), None) => "reply has no 'ok' field".to_string(),
        (Err(_), Some(v)) if ok.is_none() => format!(
            "reply's 'ok' field is {}, not a number",
            bson_type_name(v.element_type())
        ),
        (Err(_), Some(_)) => "command failed".to_string(),
    };
    let topology_version = reply
        .get_document("topologyVersion")
        .ok()
        .and_then(|d| crate::wire::raw::to_document(d).ok());
    let labels = error_labels(reply);
    Err(Error::new(ErrorKind::Command(CommandError {
        code,
        code_name,
        message,
        topology_version,
    }))
    .with_labels(labels))
}

/// Whether the top-level `ok` of the document `b` is 1, found by skipping over the elements
/// before it by their lengths alone (a reply's `ok` usually comes last). `false` means "not
/// certainly": the caller then reads the document the general way.
fn ok_is_one(b: &[u8]) -> bool {
    let scan = || -> Option<bool> {
        let end = b.len().checked_sub(1)?;
        let mut pos = 4;
        while pos < end {
            let kind = *b.get(pos)?;
            let key_start = pos + 1;
            // The key, up to its NUL, in one pass that also notes whether it is all ASCII (the
            // usual case, UTF-8 without further checks); only other keys get a UTF-8 check.
            let rest = b.get(key_start..)?;
            let (n, ascii) = cstring_len(rest)?;
            let key = rest.get(..n)?;
            if !ascii && std::str::from_utf8(key).is_err() {
                return None;
            }
            let value = key_start + n + 1;
            if key == b"ok" {
                let v = b.get(value..)?;
                return Some(match kind {
                    0x01 => {
                        v.get(..8)
                            .and_then(|s| s.try_into().ok())
                            .map(f64::from_le_bytes)
                            == Some(1.0)
                    }
                    0x10 => v.get(..4) == Some(&1i32.to_le_bytes()[..]),
                    0x12 => v.get(..8) == Some(&1i64.to_le_bytes()[..]),
                    0x08 => v.first() == Some(&1),
                    _ => false,
                });
            }
            let size = crate::wire::element_value_len(b, kind, value)?;
            pos = value.checked_add(size)?;
        }
        None
    };
    scan() == Some(true)
}

/// The length of the NUL-terminated string at the start of `s` (`None` if unterminated) and
/// whether it is all ASCII, eight bytes at a time.
fn cstring_len(s: &[u8]) -> Option<(usize, bool)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    let mut high = 0u64;
    while let Some(chunk) = s.get(n..n + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // The lowest flagged byte is the first NUL (flags above it may be false positives).
        let zero = w.wrapping_sub(ONES) & !w & HIGHS;
        if zero != 0 {
            let i = (zero.trailing_zeros() / 8) as usize;
            let before = if i == 0 {
                0
            } else {
                w & (u64::MAX >> (64 - 8 * i))
            };
            return Some((n + i, (high | before) & HIGHS == 0));
        }
        high |= w;
        n += 8;
    }
    let mut tail_high = 0u8;
    loop {
        let c = *s.get(n)?;
        if c == 0 {
            return Some((n, high & HIGHS == 0 && tail_high < 0x80));
        }
        tail_high |= c;
        n += 1;
    }
}

/// The `errorLabels` of a reply.
pub(crate) fn error_labels(reply: &RawDocument) -> Vec<String> {
    reply
        .get_array("errorLabels")
        .map(|arr| {
            arr.into_iter()
                .filter_map(|v| v.ok().and_then(|v| v.as_str().map(str::to_string)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn raw(d: Document) -> RawDocumentBuf {
        RawDocumentBuf::try_from(&d).unwrap()
    }

    #[test]
    fn ok_replies_pass() {
        for ok in [
            Bson::Int32(1),
            Bson::Double(1.0),
            Bson::Int64(1),
            Bson::Boolean(true),
        ] {
            check_ok(&raw(doc! { "ok": ok })).unwrap();
        }
    }

    #[test]
    fn error_replies_become_command_errors() {
        let reply = raw(doc! {
            "ok": 0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary",
            "errorLabels": ["RetryableWriteError"], "topologyVersion": { "counter": 3i64 },
        });
        let err = check_ok(&reply).unwrap_err();
        assert_eq!(err.code(), Some(10107));
        assert!(err.contains_label("RetryableWriteError"));
        match err.kind() {
            ErrorKind::Command(c) => {
                assert_eq!(c.code_name, "NotWritablePrimary");
                assert_eq!(c.message, "not primary");
                assert!(c.topology_version.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = check_ok(&raw(doc! { "n": 1 })).unwrap_err();
        assert!(err.to_string().contains("no 'ok'"), "{err}");
        // An `ok` that is there but not a number says so (it used to read "no 'ok' field").
        let err = check_ok(&raw(doc! { "ok": "1" })).unwrap_err();
        assert!(
            err.to_string()
                .contains("'ok' field is a string, not a number"),
            "{err}"
        );
        let err = check_ok(&raw(doc! { "ok": { "a": 1 } })).unwrap_err();
        assert!(err.to_string().contains("is a document"), "{err}");
        let err = check_ok(&raw(doc! { "ok": 0, "errmsg": "boom" })).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn the_quick_ok_scan_agrees_with_the_general_read() {
        let replies = [
            doc! { "ok": 1 },
            doc! { "a": "x", "b": { "c": [1, 2] }, "t": bson::Timestamp { time: 1, increment: 2 }, "ok": 1.0 },
            doc! { "ok": 0.0, "errmsg": "no" },
            doc! { "n": 1i64, "ok": 1i64 },
            doc! { "ok": true },
            doc! { "ok": 2 },
            doc! { "nok": 1 },
            doc! { "o": 1, "okay": 1, "ok": 0 },
        ];
        for d in replies {
            let r = raw(d.clone());
            let general = r.get("ok").ok().flatten().and_then(number) == Some(1.0);
            assert_eq!(ok_is_one(r.as_bytes()), general, "{d}");
            // Never a panic, and never "ok" where the general read disagrees, on corruption.
            let bytes = r.as_bytes().to_vec();
            for i in 0..bytes.len() {
                for v in [0u8, 1, 2, 0x7F, 0xFF] {
                    let mut bad = bytes.clone();
                    bad[i] = v;
                    if ok_is_one(&bad) {
                        if let Ok(doc) = RawDocument::from_bytes(&bad) {
                            assert_eq!(
                                doc.get("ok").ok().flatten().and_then(number),
                                Some(1.0),
                                "{d}: byte {i} = {v}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn read_preferences_are_sent_after_the_body_or_replace_the_users() {
        use crate::options::{ReadPreferenceMode, TagSet};
        let tagged = ReadPreference {
            mode: ReadPreferenceMode::Nearest,
            tag_sets: vec![TagSet::from([("dc".to_string(), "ny".to_string())])],
            ..Default::default()
        };
        for rp in [
            ReadPreference {
                mode: ReadPreferenceMode::PrimaryPreferred,
                ..Default::default()
            },
            ReadPreference {
                mode: ReadPreferenceMode::Secondary,
                max_staleness: Some(std::time::Duration::from_secs(90)),
                ..Default::default()
            },
            tagged,
        ] {
            let mut cmd = Command::new("db", doc! { "find": "c", "filter": {} });
            cmd.set_read_preference(&rp);
            let expected = doc! {
                "find": "c", "filter": {}, "$readPreference": read_preference_document(&rp), "$db": "db",
            };
            let raw = cmd.to_raw_body().unwrap();
            assert_eq!(
                raw.as_bytes(),
                RawDocumentBuf::try_from(&expected).unwrap().as_bytes()
            );
            assert_eq!(cmd.to_document(), expected);
            // A user's own `$readPreference` is replaced where it stands.
            let body = doc! { "count": "c", "$readPreference": { "mode": "x" }, "query": {} };
            let mut cmd = Command::borrowed("db", &body);
            cmd.set_read_preference(&rp);
            let expected = doc! {
                "count": "c", "$readPreference": read_preference_document(&rp), "query": {}, "$db": "db",
            };
            let raw = cmd.to_raw_body().unwrap();
            assert_eq!(
                raw.as_bytes(),
                RawDocumentBuf::try_from(&expected).unwrap().as_bytes()
            );
            assert_eq!(
                body.get_document("$readPreference").unwrap(),
                &doc! { "mode": "x" }
            );
        }
    }

    #[test]
    fn cstring_len_finds_the_nul_and_non_ascii_bytes() {
        for len in 0..40 {
            for at in 0..=len {
                // `len` bytes of 'a', the NUL at `at`, maybe a non-ASCII byte before or after it.
                let mut s = vec![b'a'; len + 1];
                s[at] = 0;
                assert_eq!(cstring_len(&s), Some((at, true)), "{len} {at}");
                for high in 0..len + 1 {
                    if high == at {
                        continue;
                    }
                    let mut t = s.clone();
                    t[high] = 0xC3;
                    assert_eq!(cstring_len(&t), Some((at, high > at)), "{len} {at} {high}");
                }
                // Bytes after the NUL never matter, nor do 0x01 bytes (a borrow edge case).
                let mut u = s.clone();
                u.extend_from_slice(&[1, 0, 0x80]);
                assert_eq!(cstring_len(&u).map(|r| r.0), Some(at));
            }
            assert_eq!(cstring_len(&vec![b'a'; len]), None);
        }
        assert_eq!(cstring_len(&[1, 1, 1, 1, 1, 1, 1, 1, 0]), Some((8, true)));
        assert_eq!(cstring_len(&[0x81, 1, 0]), Some((2, false)));
    }

    #[test]
    fn raw_body_appends_db() {
        let cmd = Command::new("test", doc! { "ping": 1 });
        assert_eq!(cmd.name(), "ping");
        let body = Document::try_from(cmd.to_raw_body().unwrap().as_ref()).unwrap();
        assert_eq!(body, doc! { "ping": 1, "$db": "test" });
    }
}
