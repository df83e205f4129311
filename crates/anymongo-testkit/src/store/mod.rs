//! The in-memory collection store behind the CRUD and catalog commands.
//!
//! Split by concern: [`filter`] (query operators, BSON order, array paths), [`update`] (update
//! operators), [`project`] (projections), [`expr`] (aggregation expressions), [`aggregate`]
//! (pipeline stages), [`indexes`] (secondary and unique indexes). This module holds the
//! collections, cursors and the commands that use them.
//!
//! Every command works on the [`Store`] it is given under the server's lock; a later
//! transactional store can hand a command a per-session snapshot of `dbs` the same way.

mod aggregate;
mod expr;
mod filter;
mod indexes;
mod project;
mod update;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use anymongo_proto::wire::DocumentSequence;
use bson::{doc, oid::ObjectId, Bson, Document, RawDocumentBuf};

use crate::answer::{Answer, CursorReply};
use crate::error::CommandError;

use aggregate::Item;
pub(crate) use filter::as_f64;
use filter::{compare, get_path, matches, values_equal};
use indexes::{duplicate_key_error, Index};
use project::{project, Projection};

/// Default first batch size of `find` / `aggregate`, like mongod.
const DEFAULT_BATCH: usize = 101;
/// A batch never carries more than this many bytes of documents (mongod: 16 MiB).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// At most this many cursors are open at once; the oldest is dropped beyond it.
const MAX_CURSORS: usize = 10_000;

type CmdResult = Result<Document, CommandError>;

/// A stored document: encoded (served as is) and parsed (for matching, sorting and updating).
#[derive(Debug)]
struct Stored {
    /// Parsed on first use when the document arrived as bytes only.
    doc: OnceLock<Document>,
    raw: Arc<RawDocumentBuf>,
    /// The `_id` key.
    key: IdKey,
}

impl Stored {
    /// `raw` is the document's encoding when the caller has it (the bytes an insert received).
    fn new(doc: Document, raw: Option<RawDocumentBuf>) -> Result<Self, CommandError> {
        let key = id_key(doc.get("_id").unwrap_or(&Bson::Null));
        let raw = match raw {
            Some(raw) => raw,
            None => RawDocumentBuf::try_from(&doc)
                .map_err(|e| CommandError::bad_value(format!("cannot store the document: {e}")))?,
        };
        Ok(Stored {
            doc: OnceLock::from(doc),
            raw: Arc::new(raw),
            key,
        })
    }

    /// A document known by its bytes (validated on the wire) and the key of its `_id`.
    fn from_raw(raw: RawDocumentBuf, key: IdKey) -> Self {
        Stored {
            doc: OnceLock::new(),
            raw: Arc::new(raw),
            key,
        }
    }

    /// The parsed document (decoded from the bytes on first use).
    fn doc(&self) -> &Document {
        // Stored bytes were validated when inserted, so they decode; were they not to, the
        // document would match as empty (it is still served as received).
        self.doc
            .get_or_init(|| Document::try_from(&**self.raw).unwrap_or_default())
    }
}

/// Encodes a document made up by a command (a projection, `$count`, a catalog entry).
fn encoded(doc: &Document) -> Result<Arc<RawDocumentBuf>, CommandError> {
    RawDocumentBuf::try_from(doc)
        .map(Arc::new)
        .map_err(|e| CommandError::bad_value(format!("cannot encode a result document: {e}")))
}

/// A canonical key for an `_id` value (numbers compare by value, like the server).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct IdKey(Vec<u8>);

fn id_key(v: &Bson) -> IdKey {
    // The common `_id` types, without encoding a document.
    match v {
        Bson::ObjectId(oid) => {
            let mut k = Vec::with_capacity(13);
            k.push(0x07);
            k.extend_from_slice(&oid.bytes());
            return IdKey(k);
        }
        Bson::String(s) => {
            let mut k = Vec::with_capacity(s.len() + 1);
            k.push(0x02);
            k.extend_from_slice(s.as_bytes());
            return IdKey(k);
        }
        _ => {}
    }
    if let Some(f) = as_f64(v) {
        // Integral values by their integer, others by their bits (distinct tags: no collisions).
        let mut k = Vec::with_capacity(9);
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            k.push(b'i');
            k.extend_from_slice(&(f as i64).to_be_bytes());
        } else {
            k.push(b'f');
            k.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        return IdKey(k);
    }
    let mut k = vec![v.element_type() as u8];
    if let Ok(bytes) = doc! { "": v.clone() }.to_vec() {
        k.extend_from_slice(&bytes);
    }
    IdKey(k)
}

/// One collection: its documents in insertion order, the `_id` index and secondary indexes.
#[derive(Debug)]
struct Collection {
    /// `db.coll`, for error messages.
    ns: String,
    docs: BTreeMap<u64, Stored>,
    ids: HashMap<IdKey, u64>,
    next_seq: u64,
    indexes: Vec<Index>,
}

impl Collection {
    fn new(ns: String) -> Self {
        Collection {
            ns,
            docs: BTreeMap::new(),
            ids: HashMap::new(),
            next_seq: 0,
            indexes: Vec::new(),
        }
    }

    /// The duplicate-key error of the `_id` index.
    fn duplicate_id(&self, id: &Bson) -> CommandError {
        duplicate_key_error(
            &self.ns,
            "_id_",
            &doc! { "_id": 1 },
            std::slice::from_ref(id),
        )
    }

    /// Whether a unique secondary index needs each stored document parsed.
    fn has_unique_indexes(&self) -> bool {
        self.indexes.iter().any(|i| i.unique)
    }

    fn insert(&mut self, doc: Document, raw: Option<RawDocumentBuf>) -> Result<(), CommandError> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        self.insert_stored(Stored::new(doc, raw)?, &id)
    }

    /// Inserts `stored` (whose `_id` is `id`) unless its `_id`, or a unique index's key, is
    /// taken.
    fn insert_stored(&mut self, stored: Stored, id: &Bson) -> Result<(), CommandError> {
        if self.ids.contains_key(&stored.key) {
            return Err(self.duplicate_id(id));
        }
        let seq = self.next_seq;
        let mut keys = Vec::with_capacity(self.indexes.len());
        if self.has_unique_indexes() {
            for idx in &self.indexes {
                keys.push(idx.check(&self.ns, stored.doc(), seq)?);
            }
        }
        for (idx, k) in self.indexes.iter_mut().zip(keys) {
            idx.add(k, seq);
        }
        self.next_seq += 1;
        self.ids.insert(stored.key.clone(), seq);
        self.docs.insert(seq, stored);
        Ok(())
    }

    /// Replaces the document stored under `seq` (its `_id` is unchanged) unless a unique index
    /// refuses the new one.
    fn replace(&mut self, seq: u64, doc: Document) -> Result<(), CommandError> {
        let stored = Stored::new(doc, None)?;
        if self.has_unique_indexes() {
            let mut keys = Vec::with_capacity(self.indexes.len());
            for idx in &self.indexes {
                keys.push(idx.check(&self.ns, stored.doc(), seq)?);
            }
            if let Some(old) = self.docs.get(&seq) {
                let old = old.doc().clone();
                for idx in &mut self.indexes {
                    idx.remove(&old, seq);
                }
            }
            for (idx, k) in self.indexes.iter_mut().zip(keys) {
                idx.add(k, seq);
            }
        }
        self.docs.insert(seq, stored);
        Ok(())
    }

    fn get(&self, seq: u64) -> Option<&Document> {
        self.docs.get(&seq).map(Stored::doc)
    }

    fn remove(&mut self, seq: u64) {
        if let Some(d) = self.docs.remove(&seq) {
            self.ids.remove(&d.key);
            if self.has_unique_indexes() {
                let doc = d.doc();
                for idx in &mut self.indexes {
                    idx.remove(doc, seq);
                }
            }
        }
    }

    /// Sequence numbers of the documents matching `filter`, in insertion order.
    fn matching(&self, filter: &Document) -> Result<Vec<u64>, CommandError> {
        // Fast paths: `{}` and `{_id: <scalar>}` (no document needs parsing).
        if filter.is_empty() {
            return Ok(self.docs.keys().copied().collect());
        }
        if filter.len() == 1 {
            if let Some(v) = filter.get("_id") {
                let plain = match v {
                    Bson::Document(d) => !d.keys().any(|k| k.starts_with('$')),
                    Bson::RegularExpression(_) | Bson::Array(_) | Bson::Null => false,
                    _ => true,
                };
                if plain {
                    return Ok(self.ids.get(&id_key(v)).copied().into_iter().collect());
                }
            }
        }
        let mut out = Vec::new();
        for (seq, d) in &self.docs {
            if matches(d.doc(), filter)? {
                out.push(*seq);
            }
        }
        Ok(out)
    }
}

#[derive(Debug)]
struct Cursor {
    ns: String,
    docs: VecDeque<Arc<RawDocumentBuf>>,
}

/// The store: databases of collections plus open cursors.
#[derive(Debug)]
pub(crate) struct Store {
    dbs: BTreeMap<String, BTreeMap<String, Collection>>,
    cursors: BTreeMap<i64, Cursor>,
    next_cursor: i64,
    /// Replies of executed retryable writes by (lsid bytes, txnNumber), oldest first.
    retried: HashMap<(Vec<u8>, i64), Document>,
    retried_order: VecDeque<(Vec<u8>, i64)>,
}

/// At most this many retryable-write results are remembered.
const MAX_RETRY_RECORDS: usize = 10_000;

/// The retryable-write identity of a command: `(lsid, txnNumber)` outside a transaction.
pub(crate) fn retry_key(cmd: &Document) -> Option<(Vec<u8>, i64)> {
    if cmd.contains_key("autocommit") {
        return None;
    }
    let txn = cmd.get_i64("txnNumber").ok()?;
    let lsid = cmd.get_document("lsid").ok()?.to_vec().ok()?;
    Some((lsid, txn))
}

impl Default for Store {
    fn default() -> Self {
        Store {
            dbs: BTreeMap::new(),
            cursors: BTreeMap::new(),
            next_cursor: 1_000_000 + i64::from(rand::random::<u16>()),
            retried: HashMap::new(),
            retried_order: VecDeque::new(),
        }
    }
}

fn get_str<'a>(cmd: &'a Document, key: &str) -> Result<&'a str, CommandError> {
    match cmd.get(key) {
        Some(Bson::String(s)) => Ok(s),
        _ => Err(CommandError::bad_value(format!("'{key}' must be a string"))),
    }
}

/// Like [`get_doc_or_empty`], borrowing the document from `cmd`.
fn get_doc_ref<'a>(cmd: &'a Document, key: &str) -> Result<Cow<'a, Document>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(Cow::Owned(Document::new())),
        Some(Bson::Document(d)) => Ok(Cow::Borrowed(d)),
        Some(_) => Err(CommandError::type_mismatch(format!(
            "'{key}' must be a document"
        ))),
    }
}

fn get_doc_or_empty(cmd: &Document, key: &str) -> Result<Document, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(Document::new()),
        Some(Bson::Document(d)) => Ok(d.clone()),
        Some(_) => Err(CommandError::type_mismatch(format!(
            "'{key}' must be a document"
        ))),
    }
}

fn get_i64(cmd: &Document, key: &str) -> Result<Option<i64>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => match as_f64(v) {
            Some(f) => Ok(Some(f as i64)),
            None => Err(CommandError::type_mismatch(format!(
                "'{key}' must be a number"
            ))),
        },
    }
}

fn get_bool(cmd: &Document, key: &str) -> bool {
    match cmd.get(key) {
        Some(Bson::Boolean(b)) => *b,
        Some(v) => as_f64(v).is_some_and(|f| f != 0.0),
        None => false,
    }
}

/// Like [`doc_array`], moving the documents out of `cmd`.
fn take_doc_array(cmd: &mut Document, key: &str) -> Result<Vec<Document>, CommandError> {
    match cmd.get_mut(key) {
        Some(Bson::Array(a)) if a.iter().all(|v| matches!(v, Bson::Document(_))) => {
            Ok(std::mem::take(a)
                .into_iter()
                .filter_map(|v| match v {
                    Bson::Document(d) => Some(d),
                    _ => None,
                })
                .collect())
        }
        Some(Bson::Array(_)) => Err(CommandError::type_mismatch(format!(
            "'{key}' must be an array of documents"
        ))),
        _ => Err(CommandError::bad_value(format!(
            "'{key}' must be an array of documents"
        ))),
    }
}

fn doc_array(cmd: &Document, key: &str) -> Result<Vec<Document>, CommandError> {
    match cmd.get(key) {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|v| match v {
                Bson::Document(d) => Ok(d.clone()),
                _ => Err(CommandError::type_mismatch(format!(
                    "'{key}' must be an array of documents"
                ))),
            })
            .collect(),
        _ => Err(CommandError::bad_value(format!(
            "'{key}' must be an array of documents"
        ))),
    }
}

impl Store {
    fn coll(&self, db: &str, name: &str) -> Option<&Collection> {
        self.dbs.get(db).and_then(|d| d.get(name))
    }

    fn coll_mut(&mut self, db: &str, name: &str) -> &mut Collection {
        self.dbs
            .entry(db.to_string())
            .or_default()
            .entry(name.to_string())
            .or_insert_with(|| Collection::new(format!("{db}.{name}")))
    }

    /// Total number of documents in `db.coll` (for tests).
    pub(crate) fn len(&self, db: &str, coll: &str) -> usize {
        self.coll(db, coll).map_or(0, |c| c.docs.len())
    }

    /// The documents of `db.coll` in insertion order (for tests).
    pub(crate) fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        self.coll(db, coll)
            .map(|c| c.docs.values().map(|s| s.doc().clone()).collect())
            .unwrap_or_default()
    }

    /// Number of open cursors.
    pub(crate) fn open_cursors(&self) -> usize {
        self.cursors.len()
    }

    /// Runs a CRUD / catalog command, or returns `None` when `name` is not one.
    ///
    /// A retryable write (`lsid` + `txnNumber`, no transaction) that already succeeded is not
    /// executed again: its first reply is returned, as mongod does.
    ///
    /// `sequences` are the request's OP_MSG document sequences, `folded` whether they were
    /// decoded into `cmd` (every command but an insert needs them folded). An insert moves its
    /// documents out of `cmd` and stores the bytes they came in.
    pub(crate) fn run(
        &mut self,
        name: &str,
        db: &str,
        cmd: &mut Document,
        sequences: &[DocumentSequence],
        folded: bool,
    ) -> Option<Result<Answer, CommandError>> {
        let key = match name {
            "insert" | "update" | "delete" | "findAndModify" => retry_key(cmd),
            _ => None,
        };
        if let Some(k) = &key {
            if let Some(reply) = self.retried.get(k) {
                return Some(Ok(Answer::Doc(reply.clone())));
            }
        }
        let result = self.execute(name, db, cmd, sequences, folded)?;
        if let (Some(k), Ok(Answer::Doc(reply))) = (key, &result) {
            if self.retried_order.len() >= MAX_RETRY_RECORDS {
                if let Some(old) = self.retried_order.pop_front() {
                    self.retried.remove(&old);
                }
            }
            self.retried.insert(k.clone(), reply.clone());
            self.retried_order.push_back(k);
        }
        Some(result)
    }

    fn execute(
        &mut self,
        name: &str,
        db: &str,
        cmd: &mut Document,
        sequences: &[DocumentSequence],
        folded: bool,
    ) -> Option<Result<Answer, CommandError>> {
        if name == "insert" {
            return Some(self.insert(db, cmd, sequences, folded).map(Answer::Doc));
        }
        let cmd: &Document = cmd;
        let cursor = match name {
            "find" => Some(self.find(db, cmd)),
            "getMore" => Some(self.get_more(db, cmd)),
            "aggregate" => Some(self.aggregate(db, cmd)),
            "listCollections" => Some(self.list_collections(db, cmd)),
            "listIndexes" => Some(self.list_indexes(db, cmd)),
            _ => None,
        };
        if let Some(r) = cursor {
            return Some(r.map(Answer::Cursor));
        }
        let result = match name {
            "killCursors" => self.kill_cursors(cmd),
            "update" => self.update(db, cmd),
            "delete" => self.delete(db, cmd),
            "count" => self.count(db, cmd),
            "distinct" => self.distinct(db, cmd),
            "findAndModify" | "findandmodify" => self.find_and_modify(db, name, cmd),
            "listDatabases" => self.list_databases(cmd),
            "drop" => self.drop_coll(db, cmd),
            "dropDatabase" => {
                self.dbs.remove(db);
                Ok(doc! { "ok": 1.0, "dropped": db })
            }
            "create" => self.create(db, cmd),
            "createIndexes" => self.create_indexes(db, cmd),
            "dropIndexes" => self.drop_indexes(db, cmd),
            _ => return None,
        };
        Some(result.map(Answer::Doc))
    }

    /// Inserts documents (moved out of `cmd`); `Err` only for a malformed command.
    ///
    /// A document that came in an OP_MSG `documents` sequence with its `_id` is stored with the
    /// bytes it came in; others are encoded.
    pub(crate) fn insert(
        &mut self,
        db: &str,
        cmd: &mut Document,
        sequences: &[DocumentSequence],
        folded: bool,
    ) -> CmdResult {
        let coll = get_str(cmd, "insert")?.to_string();
        let ordered = !matches!(cmd.get("ordered"), Some(Bson::Boolean(false)));
        let sequence = sequences
            .iter()
            .find(|s| s.identifier == "documents")
            .map(|s| s.documents.as_slice());
        let pending: Vec<Pending<'_>> = match sequence {
            // Not decoded: the documents are stored as bytes and parsed only if ever needed.
            Some(raws) if !folded => raws.iter().map(Pending::Raw).collect(),
            _ => {
                let docs = take_doc_array(cmd, "documents")?;
                // A folded sequence's documents are exactly `documents` (it replaced any body
                // field), so each has its bytes.
                let raws = sequence
                    .filter(|raws| raws.len() == docs.len())
                    .unwrap_or_default();
                docs.into_iter()
                    .enumerate()
                    .map(|(i, d)| Pending::Doc(d, raws.get(i)))
                    .collect()
            }
        };
        let c = self.coll_mut(db, &coll);
        let mut n = 0;
        let mut errors = Vec::new();
        for (i, p) in pending.into_iter().enumerate() {
            match p.insert_into(c) {
                Ok(()) => n += 1,
                Err(e) => {
                    errors.push(write_error(i, &e));
                    if ordered {
                        break;
                    }
                }
            }
        }
        let mut reply = doc! { "n": n, "ok": 1.0 };
        if !errors.is_empty() {
            reply.insert("writeErrors", errors);
        }
        Ok(reply)
    }

    /// Finds a document by `_id` (tests).
    #[cfg(test)]
    pub(crate) fn find_by_id(&self, db: &str, coll: &str, id: &Bson) -> Option<Document> {
        let c = self.coll(db, coll)?;
        let seq = c.ids.get(&id_key(id))?;
        c.get(*seq).cloned()
    }

    fn find(&mut self, db: &str, cmd: &Document) -> Result<CursorReply, CommandError> {
        let coll = get_str(cmd, "find")?;
        let filter = get_doc_ref(cmd, "filter")?;
        let sort = get_doc_ref(cmd, "sort")?;
        let projection = get_doc_ref(cmd, "projection")?;
        let skip = get_i64(cmd, "skip")?.unwrap_or(0);
        let limit = get_i64(cmd, "limit")?.unwrap_or(0);
        let batch_size = get_i64(cmd, "batchSize")?;
        if skip < 0 || batch_size.is_some_and(|b| b < 0) {
            return Err(CommandError::bad_value("skip and batchSize must be >= 0"));
        }
        let single = get_bool(cmd, "singleBatch") || limit < 0;
        // Reject a bad projection even when nothing matches, like the server.
        let projection = Projection::parse(&projection)?;
        let mut hits: Vec<&Stored> = match self.coll(db, coll) {
            Some(c) => c
                .matching(&filter)?
                .into_iter()
                .filter_map(|s| c.docs.get(&s))
                .collect(),
            None => Vec::new(),
        };
        sort_by_spec(&mut hits, &sort, |s| s.doc())?;
        let take = match limit {
            0 => usize::MAX,
            l => usize::try_from(l.unsigned_abs()).unwrap_or(usize::MAX),
        };
        // Unchanged documents go out as their stored bytes; projected ones are encoded.
        let docs = hits
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(take)
            .map(|s| match &projection {
                None => Ok(s.raw.clone()),
                Some(p) => encoded(&p.apply(s.doc())?),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ns = format!("{db}.{coll}");
        let first = batch_size.map_or(DEFAULT_BATCH, |b| b as usize);
        Ok(self.open_cursor(ns, docs, first, single))
    }

    fn open_cursor(
        &mut self,
        ns: String,
        docs: Vec<Arc<RawDocumentBuf>>,
        batch: usize,
        single: bool,
    ) -> CursorReply {
        let mut rest: VecDeque<Arc<RawDocumentBuf>> = docs.into();
        let first = take_batch(&mut rest, Some(batch));
        let id = if single || rest.is_empty() {
            0
        } else {
            if self.cursors.len() >= MAX_CURSORS {
                if let Some(oldest) = self.cursors.keys().next().copied() {
                    self.cursors.remove(&oldest);
                }
            }
            self.next_cursor += 1;
            let id = self.next_cursor;
            self.cursors.insert(
                id,
                Cursor {
                    ns: ns.clone(),
                    docs: rest,
                },
            );
            id
        };
        CursorReply {
            first: true,
            docs: first,
            id,
            ns,
            extra: Document::new(),
        }
    }

    fn get_more(&mut self, db: &str, cmd: &Document) -> Result<CursorReply, CommandError> {
        let id = match cmd.get("getMore") {
            Some(Bson::Int64(i)) => *i,
            _ => {
                return Err(CommandError::type_mismatch(
                    "field 'getMore' must be of type long",
                ))
            }
        };
        let coll = get_str(cmd, "collection")?;
        let batch = get_i64(cmd, "batchSize")?.filter(|b| *b > 0);
        let ns = format!("{db}.{coll}");
        let Some(cursor) = self.cursors.get_mut(&id) else {
            return Err(CommandError::new(
                43,
                "CursorNotFound",
                format!("cursor id {id} not found"),
            ));
        };
        if cursor.ns != ns {
            return Err(CommandError::new(
                13,
                "Unauthorized",
                format!("requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}", cursor.ns),
            ));
        }
        let next = take_batch(&mut cursor.docs, batch.map(|b| b as usize));
        let out_id = if cursor.docs.is_empty() {
            self.cursors.remove(&id);
            0
        } else {
            id
        };
        Ok(CursorReply {
            first: false,
            docs: next,
            id: out_id,
            ns,
            extra: Document::new(),
        })
    }

    fn kill_cursors(&mut self, cmd: &Document) -> CmdResult {
        get_str(cmd, "killCursors")?;
        let ids = match cmd.get("cursors") {
            Some(Bson::Array(a)) => a.clone(),
            _ => return Err(CommandError::bad_value("'cursors' must be an array")),
        };
        let mut killed = Vec::new();
        let mut not_found = Vec::new();
        for v in ids {
            let id = match v {
                Bson::Int64(i) => i,
                _ => return Err(CommandError::type_mismatch("cursor ids must be longs")),
            };
            if self.cursors.remove(&id).is_some() {
                killed.push(id);
            } else {
                not_found.push(id);
            }
        }
        Ok(doc! {
            "cursorsKilled": killed, "cursorsNotFound": not_found,
            "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0,
        })
    }

    fn update(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "update")?.to_string();
        let updates = doc_array(cmd, "updates")?;
        let ordered = !matches!(cmd.get("ordered"), Some(Bson::Boolean(false)));
        let c = self.coll_mut(db, &coll);
        let (mut n, mut modified) = (0_i32, 0_i32);
        let mut upserted = Vec::new();
        let mut errors = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            match update_one_statement(c, u) {
                Ok(r) => {
                    n += r.matched;
                    modified += r.modified;
                    if let Some(id) = r.upserted {
                        n += 1;
                        upserted.push(Bson::Document(doc! { "index": i as i32, "_id": id }));
                    }
                }
                Err(e) => {
                    errors.push(write_error(i, &e));
                    if ordered {
                        break;
                    }
                }
            }
        }
        let mut reply = doc! { "n": n, "nModified": modified, "ok": 1.0 };
        if !upserted.is_empty() {
            reply.insert("upserted", upserted);
        }
        if !errors.is_empty() {
            reply.insert("writeErrors", errors);
        }
        Ok(reply)
    }

    fn delete(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "delete")?.to_string();
        let deletes = doc_array(cmd, "deletes")?;
        let c = self.coll_mut(db, &coll);
        let mut n = 0_i32;
        for d in &deletes {
            let q = get_doc_or_empty(d, "q")?;
            let limit = get_i64(d, "limit")?.unwrap_or(0);
            if limit != 0 && limit != 1 {
                return Err(CommandError::bad_value("delete limit must be 0 or 1"));
            }
            let mut hits = c.matching(&q)?;
            if limit == 1 {
                hits.truncate(1);
            }
            for s in hits {
                c.remove(s);
                n += 1;
            }
        }
        Ok(doc! { "n": n, "ok": 1.0 })
    }

    fn distinct(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "distinct")?;
        let key = get_str(cmd, "key")?;
        let query = get_doc_or_empty(cmd, "query")?;
        let mut values: Vec<Bson> = Vec::new();
        if let Some(c) = self.coll(db, coll) {
            for seq in c.matching(&query)? {
                let Some(d) = c.get(seq) else { continue };
                let items: Vec<Bson> = filter::path_values(d, key)
                    .into_iter()
                    .flatten()
                    .flat_map(|v| match v {
                        Bson::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    })
                    .collect();
                for item in items {
                    if !values.iter().any(|seen| values_equal(seen, &item)) {
                        values.push(item);
                    }
                }
            }
        }
        values.sort_by(compare);
        Ok(doc! { "values": values, "ok": 1.0 })
    }

    fn find_and_modify(&mut self, db: &str, name: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, name)?.to_string();
        let query = get_doc_or_empty(cmd, "query")?;
        let sort = get_doc_or_empty(cmd, "sort")?;
        let fields = get_doc_or_empty(cmd, "fields")?;
        let remove = get_bool(cmd, "remove");
        let return_new = get_bool(cmd, "new");
        let upsert = get_bool(cmd, "upsert");
        let update = cmd.get("update").cloned();
        if remove == update.is_some() {
            return Err(CommandError::new(
                9,
                "FailedToParse",
                "Either an update or remove=true must be specified",
            ));
        }
        let c = self.coll_mut(db, &coll);
        let mut hits: Vec<&Document> = c
            .matching(&query)?
            .into_iter()
            .filter_map(|s| c.get(s))
            .collect();
        sort_by_spec(&mut hits, &sort, |d| d)?;
        let target = hits.first().map(|d| (*d).clone());
        let target_seq = target
            .as_ref()
            .and_then(|d| c.ids.get(&id_key(d.get("_id").unwrap_or(&Bson::Null))))
            .copied();
        let project_opt = |d: Option<Document>| -> Result<Bson, CommandError> {
            Ok(match d {
                Some(d) => Bson::Document(project(&d, &fields)?),
                None => Bson::Null,
            })
        };
        if remove {
            let n = match target_seq {
                Some(seq) => {
                    c.remove(seq);
                    1
                }
                None => 0,
            };
            return Ok(doc! {
                "lastErrorObject": { "n": n },
                "value": project_opt(target)?,
                "ok": 1.0,
            });
        }
        let q = match &target {
            Some(d) => doc! { "_id": d.get("_id").cloned().unwrap_or(Bson::Null) },
            None => query.clone(),
        };
        let statement = doc! { "q": q, "u": update.unwrap_or(Bson::Null), "upsert": upsert };
        let outcome = update_one_statement(c, &statement)?;
        let mut leo = doc! {
            "n": outcome.matched + i32::from(outcome.upserted.is_some()),
            "updatedExisting": outcome.matched > 0,
        };
        let after_id = match (&outcome.upserted, &target) {
            (Some(id), _) => {
                leo.insert("upserted", id.clone());
                Some(id.clone())
            }
            (None, Some(d)) => d.get("_id").cloned(),
            (None, None) => None,
        };
        let value = if return_new {
            after_id.and_then(|id| c.ids.get(&id_key(&id)).and_then(|seq| c.get(*seq)).cloned())
        } else {
            target
        };
        Ok(doc! { "lastErrorObject": leo, "value": project_opt(value)?, "ok": 1.0 })
    }

    fn count(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "count")?;
        let query = get_doc_or_empty(cmd, "query")?;
        let skip = get_i64(cmd, "skip")?.unwrap_or(0).max(0) as usize;
        let limit = get_i64(cmd, "limit")?.unwrap_or(0).unsigned_abs() as usize;
        let mut n = match self.coll(db, coll) {
            Some(c) => c.matching(&query)?.len(),
            None => 0,
        };
        n = n.saturating_sub(skip);
        if limit > 0 {
            n = n.min(limit);
        }
        Ok(doc! { "n": n as i64, "ok": 1.0 })
    }

    fn aggregate(&mut self, db: &str, cmd: &Document) -> Result<CursorReply, CommandError> {
        let coll = match cmd.get("aggregate") {
            Some(Bson::String(s)) => s.clone(),
            _ => {
                return Err(CommandError::bad_value(
                    "only collection aggregation is supported",
                ))
            }
        };
        let pipeline = doc_array(cmd, "pipeline")?;
        if !cmd.contains_key("cursor") && !get_bool(cmd, "explain") {
            return Err(CommandError::new(
                9,
                "FailedToParse",
                "The 'cursor' option is required, except for aggregate with the explain argument",
            ));
        }
        let cursor_opts = get_doc_or_empty(cmd, "cursor")?;
        let batch =
            get_i64(&cursor_opts, "batchSize")?.map_or(DEFAULT_BATCH, |b| b.max(0) as usize);
        let docs: Vec<Item<'_>> = match self.coll(db, &coll) {
            Some(c) => c.docs.values().map(Item::Stored).collect(),
            None => Vec::new(),
        };
        let docs = aggregate::run(self, db, docs, &pipeline)?;
        let docs = docs
            .into_iter()
            .map(Item::into_raw)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.open_cursor(format!("{db}.{coll}"), docs, batch, false))
    }

    fn list_collections(&mut self, db: &str, cmd: &Document) -> Result<CursorReply, CommandError> {
        let filter = get_doc_or_empty(cmd, "filter")?;
        let name_only = get_bool(cmd, "nameOnly");
        let mut out = Vec::new();
        if let Some(colls) = self.dbs.get(db) {
            for name in colls.keys() {
                let entry = if name_only {
                    doc! { "name": name, "type": "collection" }
                } else {
                    doc! { "name": name, "type": "collection", "options": {},
                    "info": { "readOnly": false }, "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_" } }
                };
                if matches(&entry, &filter)? {
                    out.push(entry);
                }
            }
        }
        let batch = get_i64(&get_doc_or_empty(cmd, "cursor")?, "batchSize")?
            .map_or(DEFAULT_BATCH, |b| b.max(0) as usize);
        let out = out.iter().map(encoded).collect::<Result<Vec<_>, _>>()?;
        Ok(self.open_cursor(format!("{db}.$cmd.listCollections"), out, batch, false))
    }

    fn list_databases(&mut self, cmd: &Document) -> CmdResult {
        let name_only = get_bool(cmd, "nameOnly");
        let filter = get_doc_or_empty(cmd, "filter")?;
        let mut out = Vec::new();
        for (name, colls) in &self.dbs {
            let entry = if name_only {
                doc! { "name": name }
            } else {
                let size: i64 = colls.values().map(|c| c.docs.len() as i64 * 64).sum();
                doc! { "name": name, "sizeOnDisk": size, "empty": colls.values().all(|c| c.docs.is_empty()) }
            };
            if matches(&entry, &filter)? {
                out.push(Bson::Document(entry));
            }
        }
        let mut reply = doc! { "databases": out };
        if !name_only {
            reply.insert("totalSize", 0_i64);
        }
        reply.insert("ok", 1.0);
        Ok(reply)
    }

    fn drop_coll(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "drop")?;
        let existed = self.dbs.get_mut(db).and_then(|d| d.remove(coll));
        let ns = format!("{db}.{coll}");
        if let Some(c) = existed {
            Ok(doc! { "nIndexesWas": (c.indexes.len() + 1) as i32, "ns": ns, "ok": 1.0 })
        } else {
            // mongod 7.0+ treats dropping a missing collection as success.
            Ok(doc! { "ok": 1.0 })
        }
    }

    /// `createIndexes`: creates the collection if needed; an index already there (same name,
    /// key and options) is no change; the same name with another key is IndexKeySpecsConflict
    /// (86), the same key under another name or options IndexOptionsConflict (85); a unique
    /// index over duplicates is DuplicateKey (11000), as mongod's index build fails.
    fn create_indexes(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "createIndexes")?.to_string();
        let specs = match cmd.get("indexes") {
            Some(Bson::Array(a)) if !a.is_empty() => a,
            Some(Bson::Array(_)) => {
                return Err(CommandError::bad_value(
                    "Must specify at least one index to create",
                ))
            }
            _ => {
                return Err(CommandError::new(
                    9,
                    "FailedToParse",
                    "BSON field 'createIndexes.indexes' is missing but a required field",
                ))
            }
        };
        let mut wanted = Vec::with_capacity(specs.len());
        for s in specs {
            let Bson::Document(sd) = s else {
                return Err(CommandError::type_mismatch(
                    "The elements of 'indexes' must be objects",
                ));
            };
            wanted.push(Index::from_spec(sd)?);
        }
        let created = self.coll(db, &coll).is_none();
        let c = self.coll_mut(db, &coll);
        let before = c.indexes.len() + 1;
        let mut fresh = Vec::new();
        for mut idx in wanted {
            let is_id = idx.name == "_id_" || (idx.key.len() == 1 && idx.key.contains_key("_id"));
            if is_id {
                if idx.name != "_id_" {
                    return Err(CommandError::new(
                        85,
                        "IndexOptionsConflict",
                        "Index already exists with a different name: _id_",
                    ));
                }
                continue;
            }
            if let Some(existing) = c
                .indexes
                .iter()
                .chain(fresh.iter())
                .find(|e| e.name == idx.name)
            {
                if existing.same_as(&idx) {
                    continue;
                }
                if existing.key == idx.key {
                    return Err(CommandError::new(
                        85,
                        "IndexOptionsConflict",
                        format!(
                            "An equivalent index already exists with the same name but different \
                             options. Requested index: {}, existing index: {}",
                            idx.to_document(),
                            existing.to_document()
                        ),
                    ));
                }
                return Err(CommandError::new(
                    86,
                    "IndexKeySpecsConflict",
                    format!(
                        "An existing index has the same name as the requested index. When index \
                         names are not specified, they are auto generated and can cause \
                         conflicts. Please refer to our documentation. Requested index: {}, \
                         existing index: {}",
                        idx.to_document(),
                        existing.to_document()
                    ),
                ));
            }
            if let Some(existing) = c
                .indexes
                .iter()
                .chain(fresh.iter())
                .find(|e| e.key == idx.key)
            {
                return Err(CommandError::new(
                    85,
                    "IndexOptionsConflict",
                    format!(
                        "Index already exists with a different name: {}",
                        existing.name
                    ),
                ));
            }
            // Build: every stored document must fit a unique index.
            let mut keys = Vec::with_capacity(c.docs.len());
            for (seq, stored) in &c.docs {
                let k = idx.check(&c.ns, stored.doc(), *seq)?;
                idx.add(k.clone(), *seq);
                keys.push(k);
            }
            fresh.push(idx);
        }
        let added = fresh.len();
        c.indexes.extend(fresh);
        let mut reply = doc! {
            "numIndexesBefore": before as i32,
            "numIndexesAfter": (c.indexes.len() + 1) as i32,
            "createdCollectionAutomatically": created,
        };
        if added == 0 && !created {
            reply.insert("note", "all indexes already exist");
        }
        reply.insert("ok", 1.0);
        Ok(reply)
    }

    fn list_indexes(&mut self, db: &str, cmd: &Document) -> Result<CursorReply, CommandError> {
        let coll = get_str(cmd, "listIndexes")?.to_string();
        let Some(c) = self.coll(db, &coll) else {
            return Err(CommandError::new(
                26,
                "NamespaceNotFound",
                format!("ns does not exist: {db}.{coll}"),
            ));
        };
        let mut out = vec![indexes::id_index_document()];
        out.extend(c.indexes.iter().map(Index::to_document));
        let out = out.iter().map(encoded).collect::<Result<Vec<_>, _>>()?;
        let batch = get_i64(&get_doc_or_empty(cmd, "cursor")?, "batchSize")?
            .map_or(DEFAULT_BATCH, |b| b.max(0) as usize);
        Ok(self.open_cursor(format!("{db}.$cmd.listIndexes.{coll}"), out, batch, false))
    }

    /// `dropIndexes`: by name, by key pattern, a list of names, or `"*"` (all but `_id_`).
    fn drop_indexes(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "dropIndexes")?.to_string();
        let Some(c) = self.dbs.get_mut(db).and_then(|d| d.get_mut(&coll)) else {
            return Err(CommandError::new(
                26,
                "NamespaceNotFound",
                format!("ns not found {db}.{coll}"),
            ));
        };
        let was = (c.indexes.len() + 1) as i32;
        let not_found = |what: String| CommandError::new(27, "IndexNotFound", what);
        let id_drop = || CommandError::new(72, "InvalidOptions", "cannot drop _id index");
        match cmd.get("index") {
            Some(Bson::String(n)) if n == "*" => c.indexes.clear(),
            Some(Bson::String(n)) if n == "_id_" => return Err(id_drop()),
            Some(Bson::String(n)) => match c.indexes.iter().position(|i| &i.name == n) {
                Some(p) => {
                    c.indexes.remove(p);
                }
                None => return Err(not_found(format!("index not found with name [{n}]"))),
            },
            Some(Bson::Array(names)) => {
                for n in names {
                    let Bson::String(n) = n else {
                        return Err(CommandError::type_mismatch("index names must be strings"));
                    };
                    if n == "_id_" {
                        return Err(id_drop());
                    }
                    if !c.indexes.iter().any(|i| &i.name == n) {
                        return Err(not_found(format!("index not found with name [{n}]")));
                    }
                }
                c.indexes
                    .retain(|i| !names.iter().any(|n| n.as_str() == Some(i.name.as_str())));
            }
            Some(Bson::Document(key)) => {
                if key.len() == 1 && key.contains_key("_id") {
                    return Err(id_drop());
                }
                match c.indexes.iter().position(|i| &i.key == key) {
                    Some(p) => {
                        c.indexes.remove(p);
                    }
                    None => return Err(not_found(format!("can't find index with key: {key}"))),
                }
            }
            _ => {
                return Err(CommandError::new(
                    9,
                    "FailedToParse",
                    "BSON field 'dropIndexes.index' is missing but a required field",
                ))
            }
        }
        Ok(doc! { "nIndexesWas": was, "ok": 1.0 })
    }

    fn create(&mut self, db: &str, cmd: &Document) -> CmdResult {
        let coll = get_str(cmd, "create")?.to_string();
        if self.coll(db, &coll).is_some() {
            return Err(CommandError::new(
                48,
                "NamespaceExists",
                format!("Collection {db}.{coll} already exists."),
            ));
        }
        self.coll_mut(db, &coll);
        Ok(doc! { "ok": 1.0 })
    }
}

/// One entry of a write command's `writeErrors`: `{index, code, errmsg}` and the error's own
/// fields (a DuplicateKey's `keyPattern` and `keyValue`).
fn write_error(index: usize, e: &CommandError) -> Bson {
    let mut d = doc! { "index": index as i32, "code": e.code };
    for (k, v) in e.fields() {
        d.insert(k.clone(), v.clone());
    }
    d.insert("errmsg", e.errmsg.clone());
    Bson::Document(d)
}

/// A document an insert is about to store.
enum Pending<'a> {
    /// Parsed, maybe with the bytes it came in.
    Doc(Document, Option<&'a RawDocumentBuf>),
    /// Only the bytes it came in (validated when stored).
    Raw(&'a RawDocumentBuf),
}

impl Pending<'_> {
    fn insert_into(self, c: &mut Collection) -> Result<(), CommandError> {
        let (mut d, raw) = match self {
            Pending::Raw(raw) => {
                // The wire decoder checks framing only: a malformed document is refused here,
                // so every stored document decodes.
                anymongo_proto::wire::validate_document(raw.as_bytes()).map_err(|e| {
                    CommandError::bad_value(format!("cannot read the document: {e}"))
                })?;
                let id = match raw.get("_id") {
                    Ok(Some(v)) => Bson::try_from(v).ok(),
                    _ => None,
                };
                if let Some(id) = id {
                    let stored = Stored::from_raw(raw.clone(), id_key(&id));
                    return c.insert_stored(stored, &id);
                }
                let d = Document::try_from(&**raw).map_err(|e| {
                    CommandError::bad_value(format!("cannot read the document: {e}"))
                })?;
                (d, None)
            }
            Pending::Doc(d, raw) => (d, raw),
        };
        let mut raw = raw.cloned();
        if !d.contains_key("_id") {
            let mut with_id = doc! { "_id": ObjectId::new() };
            with_id.extend(d);
            d = with_id;
            raw = None;
        }
        c.insert(d, raw)
    }
}

fn take_batch(
    rest: &mut VecDeque<Arc<RawDocumentBuf>>,
    batch: Option<usize>,
) -> Vec<Arc<RawDocumentBuf>> {
    let max = batch.unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(max.min(rest.len()));
    let mut bytes = 0;
    while out.len() < max {
        let Some(d) = rest.front() else { break };
        let size = d.as_bytes().len();
        // A lone document always goes out.
        if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
            break;
        }
        bytes += size;
        if let Some(d) = rest.pop_front() {
            out.push(d);
        }
    }
    out
}

struct UpdateOutcome {
    matched: i32,
    modified: i32,
    upserted: Option<Bson>,
}

/// What an update statement's `u` is.
enum UpdateSpec {
    /// Update operators (`$set`, `$inc`, ...).
    Operators(Document),
    /// A replacement document.
    Replacement(Document),
    /// An aggregation pipeline (`$set`, `$unset`, `$project`, `$replaceRoot`, ...).
    Pipeline(Vec<Document>),
}

impl UpdateSpec {
    fn parse(u: Option<&Bson>) -> Result<Self, CommandError> {
        match u {
            Some(Bson::Document(d)) => {
                let is_ops = d.keys().next().is_some_and(|k| k.starts_with('$'));
                if is_ops {
                    if let Some(k) = d.keys().find(|k| !k.starts_with('$')) {
                        return Err(CommandError::new(
                            9,
                            "FailedToParse",
                            format!(
                                "Unknown modifier: {k}. Expected a valid update modifier or \
                                 pipeline-style update specified as an array"
                            ),
                        ));
                    }
                    update::validate(d)?;
                    Ok(UpdateSpec::Operators(d.clone()))
                } else {
                    if let Some(k) = d.keys().find(|k| k.starts_with('$')) {
                        return Err(CommandError::new(
                            52,
                            "DollarPrefixedFieldName",
                            format!("The dollar ($) prefixed field '{k}' in '{k}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."),
                        ));
                    }
                    Ok(UpdateSpec::Replacement(d.clone()))
                }
            }
            Some(Bson::Array(stages)) => {
                let mut pipeline = Vec::with_capacity(stages.len());
                for s in stages {
                    let Bson::Document(sd) = s else {
                        return Err(CommandError::type_mismatch(
                            "Each element of the 'pipeline' array must be an object",
                        ));
                    };
                    let name = sd.keys().next().map(String::as_str).unwrap_or("");
                    if !matches!(
                        name,
                        "$addFields"
                            | "$set"
                            | "$project"
                            | "$unset"
                            | "$replaceRoot"
                            | "$replaceWith"
                    ) {
                        return Err(CommandError::new(
                            72,
                            "InvalidOptions",
                            format!("{name} is not allowed to be used within an update"),
                        ));
                    }
                    pipeline.push(sd.clone());
                }
                aggregate::validate(&pipeline)?;
                Ok(UpdateSpec::Pipeline(pipeline))
            }
            _ => Err(CommandError::type_mismatch(
                "Update argument must be either an object or an array",
            )),
        }
    }

    /// The document after this update of `old` (`inserting` for an upsert's new document).
    fn apply(&self, old: &Document, inserting: bool) -> Result<Document, CommandError> {
        match self {
            UpdateSpec::Operators(ops) => update::apply(old, ops, inserting),
            UpdateSpec::Replacement(r) => {
                let mut d = Document::new();
                if let Some(id) = old.get("_id") {
                    d.insert("_id", id.clone());
                }
                for (k, v) in r {
                    if k != "_id" || !d.contains_key("_id") {
                        d.insert(k.clone(), v.clone());
                    }
                }
                if let (Some(a), Some(b)) = (old.get("_id"), r.get("_id")) {
                    if !values_equal(a, b) {
                        return Err(immutable_id());
                    }
                }
                Ok(d)
            }
            UpdateSpec::Pipeline(p) => {
                let empty = Store::default();
                let out = aggregate::run(&empty, "", vec![Item::Made(old.clone())], p)?;
                Ok(out
                    .into_iter()
                    .next()
                    .map(|i| i.doc().clone())
                    .unwrap_or_default())
            }
        }
    }
}

fn immutable_id() -> CommandError {
    CommandError::new(
        66,
        "ImmutableField",
        "Performing an update on the path '_id' would modify the immutable field '_id'",
    )
}

fn update_one_statement(c: &mut Collection, u: &Document) -> Result<UpdateOutcome, CommandError> {
    let q = get_doc_or_empty(u, "q")?;
    let spec = UpdateSpec::parse(u.get("u"))?;
    let multi = get_bool(u, "multi");
    let upsert = get_bool(u, "upsert");
    if multi && matches!(spec, UpdateSpec::Replacement(_)) {
        return Err(CommandError::new(
            9,
            "FailedToParse",
            "multi update is not supported for replacement-style update",
        ));
    }
    let mut hits = c.matching(&q)?;
    if !multi {
        hits.truncate(1);
    }
    if hits.is_empty() {
        if !upsert {
            return Ok(UpdateOutcome {
                matched: 0,
                modified: 0,
                upserted: None,
            });
        }
        let base = update::upsert_base(&q)?;
        let mut new_doc = match &spec {
            UpdateSpec::Replacement(r) => {
                let mut d = r.clone();
                if let (Some(id), false) = (base.get("_id"), d.contains_key("_id")) {
                    d.insert("_id", id.clone());
                }
                d
            }
            other => other.apply(&base, true)?,
        };
        if let (Some(a), Some(b)) = (base.get("_id"), new_doc.get("_id")) {
            if !values_equal(a, b) {
                return Err(immutable_id());
            }
        }
        if !new_doc.contains_key("_id") {
            let mut with_id = doc! { "_id": ObjectId::new() };
            with_id.extend(new_doc);
            new_doc = with_id;
        } else if new_doc.keys().next().map(String::as_str) != Some("_id") {
            // mongod stores `_id` first.
            let id = new_doc.remove("_id").unwrap_or(Bson::Null);
            let mut with_id = doc! { "_id": id };
            with_id.extend(new_doc);
            new_doc = with_id;
        }
        let id = new_doc.get("_id").cloned().unwrap_or(Bson::Null);
        c.insert(new_doc, None)?;
        return Ok(UpdateOutcome {
            matched: 0,
            modified: 0,
            upserted: Some(id),
        });
    }
    let mut out = UpdateOutcome {
        matched: 0,
        modified: 0,
        upserted: None,
    };
    for seq in hits {
        let Some(old) = c.get(seq).cloned() else {
            continue;
        };
        let new_doc = spec.apply(&old, false)?;
        match (old.get("_id"), new_doc.get("_id")) {
            (Some(a), Some(b)) if values_equal(a, b) => {}
            (None, None) => {}
            _ => return Err(immutable_id()),
        }
        out.matched += 1;
        if new_doc != old {
            out.modified += 1;
            c.replace(seq, new_doc)?;
        }
    }
    Ok(out)
}

/// Sorts `docs` (stably) by the sort specification `sort`, each item's document given by `doc_of`.
fn sort_by_spec<T>(
    docs: &mut [T],
    sort: &Document,
    doc_of: impl Fn(&T) -> &Document,
) -> Result<(), CommandError> {
    if sort.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::new();
    for (k, v) in sort {
        let dir = match as_f64(v) {
            Some(1.0) => 1,
            Some(-1.0) => -1,
            _ => {
                return Err(CommandError::bad_value(format!(
                    "bad sort specification for {k}"
                )))
            }
        };
        keys.push((k.clone(), dir));
    }
    docs.sort_by(|a, b| {
        for (k, dir) in &keys {
            let va = get_path(doc_of(a), k).unwrap_or(&Bson::Null);
            let vb = get_path(doc_of(b), k).unwrap_or(&Bson::Null);
            let o = compare(va, vb);
            if o != Ordering::Equal {
                return if *dir == 1 { o } else { o.reverse() };
            }
        }
        Ordering::Equal
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Store, cmd: Document) -> CmdResult {
        let name = cmd.keys().next().cloned().unwrap_or_default();
        let mut cmd = cmd;
        s.run(&name, "db", &mut cmd, &[], true)
            .expect("a store command")
            .map(Answer::into_document)
    }

    fn seeded() -> Store {
        let mut s = Store::default();
        let docs: Vec<Document> = (0..10)
            .map(|i| doc! { "_id": i, "x": i % 3, "s": format!("v{i}") })
            .collect();
        let r = run(&mut s, doc! { "insert": "c", "documents": docs }).unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 10);
        s
    }

    #[test]
    fn id_keys_compare_numbers_by_value() {
        let k = id_key;
        assert_eq!(k(&Bson::Int32(3)), k(&Bson::Int64(3)));
        assert_eq!(k(&Bson::Int32(3)), k(&Bson::Double(3.0)));
        assert_eq!(k(&Bson::Double(0.0)), k(&Bson::Double(-0.0)));
        assert_ne!(k(&Bson::Int32(3)), k(&Bson::Double(3.5)));
        assert_ne!(k(&Bson::Int32(3)), k(&Bson::String("3".into())));
        assert_ne!(k(&Bson::Int64(1 << 60)), k(&Bson::Int64((1 << 60) + 4096)));
        let oid = ObjectId::new();
        assert_eq!(k(&Bson::ObjectId(oid)), k(&Bson::ObjectId(oid)));
        assert_ne!(k(&Bson::ObjectId(oid)), k(&Bson::ObjectId(ObjectId::new())));
        assert_eq!(
            k(&Bson::Document(doc! { "a": 1 })),
            k(&Bson::Document(doc! { "a": 1 }))
        );
        assert_ne!(k(&Bson::Document(doc! { "a": 1 })), k(&Bson::Null));
    }

    #[test]
    fn inserts_store_the_bytes_they_received() {
        let mut s = Store::default();
        let with_id = doc! { "_id": 1, "x": "a" };
        let without_id = doc! { "x": "b" };
        let raw = |d: &Document| RawDocumentBuf::try_from(d).unwrap();
        let seq = DocumentSequence {
            identifier: "documents".into(),
            documents: vec![raw(&with_id), raw(&without_id)],
        };
        let mut cmd = doc! { "insert": "c", "documents": [with_id.clone(), without_id.clone()] };
        let r = s
            .run("insert", "db", &mut cmd, &[seq], true)
            .unwrap()
            .map(Answer::into_document)
            .unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 2);
        assert!(
            cmd.get_array("documents").unwrap().is_empty(),
            "the documents moved into the store"
        );
        let stored: Vec<&Stored> = s.coll("db", "c").unwrap().docs.values().collect();
        assert_eq!(stored[0].doc(), &with_id);
        assert_eq!(stored[0].raw.as_bytes(), raw(&with_id).as_bytes());
        // The one without `_id` got one first, and is encoded from its new form.
        assert_eq!(
            stored[1].doc().keys().next().map(String::as_str),
            Some("_id")
        );
        assert_eq!(stored[1].raw.as_bytes(), raw(stored[1].doc()).as_bytes());
        // Updates re-encode.
        run(
            &mut s,
            doc! { "update": "c", "updates": [ { "q": { "_id": 1 }, "u": { "$set": { "y": 2 } } } ] },
        )
        .unwrap();
        let d = s.find_by_id("db", "c", &Bson::Int32(1)).unwrap();
        let stored: Vec<&Stored> = s.coll("db", "c").unwrap().docs.values().collect();
        assert_eq!(stored[0].raw.as_bytes(), raw(&d).as_bytes());
        assert_eq!(d, doc! { "_id": 1, "x": "a", "y": 2 });
        // A malformed `documents` is an error and inserts nothing.
        let mut bad = doc! { "insert": "c", "documents": [ { "_id": 9 }, 5 ] };
        assert_eq!(
            s.run("insert", "db", &mut bad, &[], true)
                .unwrap()
                .unwrap_err()
                .code,
            14
        );
        assert_eq!(s.len("db", "c"), 2);
    }

    #[test]
    fn unfolded_inserts_store_bytes_and_parse_on_demand() {
        let mut s = Store::default();
        let raw = |d: &Document| RawDocumentBuf::try_from(d).unwrap();
        let docs = [
            doc! { "_id": 1, "x": 5 },
            doc! { "x": 6 },
            doc! { "_id": 1_i64, "x": 7 },
            doc! { "_id": 2, "x": 8 },
        ];
        let seq = DocumentSequence {
            identifier: "documents".into(),
            documents: docs.iter().map(raw).collect(),
        };
        // The sequence was not decoded into the command.
        let mut cmd = doc! { "insert": "c", "ordered": false };
        let r = s
            .run("insert", "db", &mut cmd, &[seq], false)
            .unwrap()
            .map(Answer::into_document)
            .unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 3);
        let we = r.get_array("writeErrors").unwrap();
        assert_eq!(we.len(), 1, "1_i64 is the same _id as 1");
        let e = we[0].as_document().unwrap();
        assert_eq!(
            (e.get_i32("index").unwrap(), e.get_i32("code").unwrap()),
            (2, 11000)
        );
        let stored: Vec<&Stored> = s.coll("db", "c").unwrap().docs.values().collect();
        assert!(
            stored[0].doc.get().is_none(),
            "not parsed until a command needs it"
        );
        assert_eq!(stored[0].raw.as_bytes(), raw(&docs[0]).as_bytes());
        assert_eq!(
            stored[1].doc().keys().next().map(String::as_str),
            Some("_id")
        );
        // Serving everything or one `_id` needs no parsing.
        run(&mut s, doc! { "find": "c" }).unwrap();
        run(&mut s, doc! { "find": "c", "filter": { "_id": 2 } }).unwrap();
        let stored: Vec<&Stored> = s.coll("db", "c").unwrap().docs.values().collect();
        assert!(stored[0].doc.get().is_none() && stored[2].doc.get().is_none());
        // Matching parses; the parsed form is the document sent.
        let r = run(
            &mut s,
            doc! { "find": "c", "filter": { "x": { "$gte": 6 } } },
        )
        .unwrap();
        let batch = r
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .clone();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1], Bson::Document(docs[3].clone()));
        assert_eq!(s.find_by_id("db", "c", &Bson::Int32(1)).unwrap(), docs[0]);
        run(
            &mut s,
            doc! { "delete": "c", "deletes": [ { "q": { "_id": 2 }, "limit": 1 } ] },
        )
        .unwrap();
        assert_eq!(s.len("db", "c"), 2);
        assert!(s.find_by_id("db", "c", &Bson::Int32(2)).is_none());
    }

    #[test]
    fn duplicate_id_is_write_error_11000() {
        let mut s = seeded();
        let r = run(
            &mut s,
            doc! { "insert": "c", "documents": [ { "_id": 3 }, { "_id": 100 } ] },
        )
        .unwrap();
        assert_eq!(
            r.get_i32("n").unwrap(),
            0,
            "ordered insert stops at the error"
        );
        let we = r.get_array("writeErrors").unwrap();
        assert_eq!(we.len(), 1);
        let e = we[0].as_document().unwrap();
        assert_eq!(e.get_i32("code").unwrap(), 11000);
        assert_eq!(e.get_i32("index").unwrap(), 0);
        let r = run(&mut s, doc! { "insert": "c", "ordered": false, "documents": [ { "_id": 3i64 }, { "_id": 100 } ] }).unwrap();
        assert_eq!(
            r.get_i32("n").unwrap(),
            1,
            "unordered continues; 3i64 equals 3"
        );
    }

    #[test]
    fn find_filters_sorts_and_projects() {
        let mut s = seeded();
        let r = run(&mut s, doc! { "find": "c", "filter": { "x": 1 }, "sort": { "_id": -1 }, "projection": { "s": 1, "_id": 0 } }).unwrap();
        let c = r.get_document("cursor").unwrap();
        assert_eq!(c.get_i64("id").unwrap(), 0);
        let b = c.get_array("firstBatch").unwrap();
        let got: Vec<&Bson> = b.iter().collect();
        assert_eq!(
            got,
            vec![
                &Bson::Document(doc! {"s": "v7"}),
                &Bson::Document(doc! {"s": "v4"}),
                &Bson::Document(doc! {"s": "v1"})
            ]
        );
        let r = run(
            &mut s,
            doc! { "find": "c", "filter": { "_id": { "$in": [1, 2, 99] }, "x": { "$gt": 1 } } },
        )
        .unwrap();
        assert_eq!(
            r.get_document("cursor")
                .unwrap()
                .get_array("firstBatch")
                .unwrap()
                .len(),
            1
        );
        let r = run(
            &mut s,
            doc! { "find": "c", "filter": { "_id": { "$lt": 3 } }, "skip": 1, "limit": 1 },
        )
        .unwrap();
        let b = r
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .clone();
        assert_eq!(
            b,
            vec![Bson::Document(doc! { "_id": 1, "x": 1, "s": "v1" })]
        );
        let e = run(
            &mut s,
            doc! { "find": "c", "filter": { "x": { "$where": 1 } } },
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
    }

    #[test]
    fn cursor_batches_get_more_and_kill() {
        let mut s = seeded();
        let r = run(&mut s, doc! { "find": "c", "batchSize": 4 }).unwrap();
        let c = r.get_document("cursor").unwrap();
        let id = c.get_i64("id").unwrap();
        assert_ne!(id, 0);
        assert_eq!(c.get_array("firstBatch").unwrap().len(), 4);
        let r = run(
            &mut s,
            doc! { "getMore": id, "collection": "c", "batchSize": 4 },
        )
        .unwrap();
        let c = r.get_document("cursor").unwrap();
        assert_eq!(c.get_i64("id").unwrap(), id);
        assert_eq!(c.get_array("nextBatch").unwrap().len(), 4);
        let r = run(
            &mut s,
            doc! { "getMore": id, "collection": "c", "batchSize": 4 },
        )
        .unwrap();
        let c = r.get_document("cursor").unwrap();
        assert_eq!(c.get_i64("id").unwrap(), 0, "exhausted");
        assert_eq!(c.get_array("nextBatch").unwrap().len(), 2);
        let e = run(&mut s, doc! { "getMore": id, "collection": "c" }).unwrap_err();
        assert_eq!(e.code, 43);

        let r = run(&mut s, doc! { "find": "c", "batchSize": 2 }).unwrap();
        let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
        let r = run(
            &mut s,
            doc! { "killCursors": "c", "cursors": [id, 12345_i64] },
        )
        .unwrap();
        assert_eq!(
            r.get_array("cursorsKilled").unwrap(),
            &vec![Bson::Int64(id)]
        );
        assert_eq!(
            r.get_array("cursorsNotFound").unwrap(),
            &vec![Bson::Int64(12345)]
        );
        assert_eq!(s.open_cursors(), 0);

        let r = run(
            &mut s,
            doc! { "find": "c", "batchSize": 2, "singleBatch": true },
        )
        .unwrap();
        assert_eq!(r.get_document("cursor").unwrap().get_i64("id").unwrap(), 0);
    }

    #[test]
    fn updates_and_upserts() {
        let mut s = seeded();
        let r = run(&mut s, doc! { "update": "c", "updates": [ { "q": { "x": 0 }, "u": { "$inc": { "n": 2 }, "$set": { "a.b": true } }, "multi": true } ] }).unwrap();
        assert_eq!(
            (r.get_i32("n").unwrap(), r.get_i32("nModified").unwrap()),
            (4, 4)
        );
        let d = s.find_by_id("db", "c", &Bson::Int32(3)).unwrap();
        assert_eq!(d.get_i32("n").unwrap(), 2);
        assert!(d.get_document("a").unwrap().get_bool("b").unwrap());
        let r = run(&mut s, doc! { "update": "c", "updates": [ { "q": { "_id": 3 }, "u": { "$unset": { "a": "" } } } ] }).unwrap();
        assert_eq!(r.get_i32("nModified").unwrap(), 1);
        let r = run(
            &mut s,
            doc! { "update": "c", "updates": [ { "q": { "_id": 3 }, "u": { "replaced": 1 } } ] },
        )
        .unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 1);
        assert_eq!(
            s.find_by_id("db", "c", &Bson::Int32(3)).unwrap(),
            doc! { "_id": 3, "replaced": 1 }
        );
        let r = run(&mut s, doc! { "update": "c", "updates": [ { "q": { "_id": 50, "k": "v" }, "u": { "$set": { "z": 1 } }, "upsert": true } ] }).unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 1);
        assert_eq!(
            r.get_array("upserted").unwrap()[0]
                .as_document()
                .unwrap()
                .get_i32("_id")
                .unwrap(),
            50
        );
        assert_eq!(
            s.find_by_id("db", "c", &Bson::Int32(50)).unwrap(),
            doc! { "_id": 50, "k": "v", "z": 1 }
        );
        let r = run(
            &mut s,
            doc! { "update": "c", "updates": [ { "q": {}, "u": { "$frobnicate": { "a": "b" } } } ] },
        )
        .unwrap();
        assert_eq!(
            r.get_array("writeErrors").unwrap()[0]
                .as_document()
                .unwrap()
                .get_i32("code")
                .unwrap(),
            9
        );
    }

    #[test]
    fn find_and_modify_and_distinct() {
        let mut s = seeded();
        let r = run(&mut s, doc! { "findAndModify": "c", "query": { "x": 2 }, "sort": { "_id": -1 }, "update": { "$inc": { "x": 10 } }, "new": true }).unwrap();
        assert_eq!(
            r.get_document("value").unwrap(),
            &doc! { "_id": 8, "x": 12, "s": "v8" }
        );
        assert!(r
            .get_document("lastErrorObject")
            .unwrap()
            .get_bool("updatedExisting")
            .unwrap());
        let r = run(&mut s, doc! { "findAndModify": "c", "query": { "_id": 0 }, "update": { "y": 1 }, "fields": { "_id": 0 } }).unwrap();
        assert_eq!(
            r.get_document("value").unwrap(),
            &doc! { "x": 0, "s": "v0" },
            "the old document"
        );
        let r = run(&mut s, doc! { "findAndModify": "c", "query": { "_id": 77 }, "update": { "$set": { "u": 1 } }, "upsert": true, "new": true }).unwrap();
        assert_eq!(
            r.get_document("value").unwrap(),
            &doc! { "_id": 77, "u": 1 }
        );
        assert_eq!(
            r.get_document("lastErrorObject")
                .unwrap()
                .get_i32("upserted")
                .unwrap(),
            77
        );
        let r = run(
            &mut s,
            doc! { "findAndModify": "c", "query": { "_id": 77 }, "remove": true },
        )
        .unwrap();
        assert_eq!(r.get_document("value").unwrap().get_i32("_id").unwrap(), 77);
        let r = run(
            &mut s,
            doc! { "findAndModify": "c", "query": { "_id": 77 }, "remove": true },
        )
        .unwrap();
        assert_eq!(r.get("value"), Some(&Bson::Null));
        assert_eq!(
            run(&mut s, doc! { "findAndModify": "c", "query": {} })
                .unwrap_err()
                .code,
            9
        );
        let r = run(
            &mut s,
            doc! { "distinct": "c", "key": "x", "query": { "_id": { "$lt": 8 } } },
        )
        .unwrap();
        assert_eq!(
            r.get_array("values").unwrap(),
            &vec![Bson::Int32(0), Bson::Int32(1), Bson::Int32(2)]
        );
    }

    #[test]
    fn retryable_writes_execute_once() {
        let mut s = Store::default();
        let lsid = doc! { "id": 1 };
        let cmd = doc! { "insert": "c", "documents": [ { "_id": 1 } ], "lsid": lsid.clone(), "txnNumber": 1_i64 };
        assert_eq!(run(&mut s, cmd.clone()).unwrap().get_i32("n").unwrap(), 1);
        let again = run(&mut s, cmd).unwrap();
        assert_eq!(again.get_i32("n").unwrap(), 1);
        assert!(
            again.get("writeErrors").is_none(),
            "the retry returns the first result"
        );
        let next =
            doc! { "insert": "c", "documents": [ { "_id": 1 } ], "lsid": lsid, "txnNumber": 2_i64 };
        assert!(run(&mut s, next).unwrap().get("writeErrors").is_some());
        let plain = doc! { "insert": "c", "documents": [ { "_id": 1 } ] };
        assert!(run(&mut s, plain).unwrap().get("writeErrors").is_some());
    }

    #[test]
    fn deletes_counts_and_catalog() {
        let mut s = seeded();
        let r = run(
            &mut s,
            doc! { "delete": "c", "deletes": [ { "q": { "x": 1 }, "limit": 1 } ] },
        )
        .unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 1);
        let r = run(
            &mut s,
            doc! { "delete": "c", "deletes": [ { "q": { "x": 1 }, "limit": 0 } ] },
        )
        .unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 2);
        let r = run(&mut s, doc! { "count": "c", "query": {} }).unwrap();
        assert_eq!(r.get_i64("n").unwrap(), 7);
        let r = run(&mut s, doc! { "aggregate": "c", "pipeline": [ { "$match": { "x": 0 } }, { "$count": "k" } ], "cursor": {} }).unwrap();
        let b = r
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .clone();
        assert_eq!(b, vec![Bson::Document(doc! { "k": 4 })]);
        run(&mut s, doc! { "create": "d" }).unwrap();
        assert_eq!(run(&mut s, doc! { "create": "d" }).unwrap_err().code, 48);
        let r = run(&mut s, doc! { "listCollections": 1, "nameOnly": true }).unwrap();
        let names: Vec<_> = r
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .map(|d| {
                d.as_document()
                    .unwrap()
                    .get_str("name")
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, vec!["c", "d"]);
        run(&mut s, doc! { "drop": "c" }).unwrap();
        assert_eq!(s.len("db", "c"), 0);
        let r = run(&mut s, doc! { "listDatabases": 1 }).unwrap();
        assert_eq!(r.get_array("databases").unwrap().len(), 1);
    }
}
