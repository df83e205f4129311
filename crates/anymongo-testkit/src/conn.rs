//! One connection: read messages, apply fail points, run commands, write replies.
//! A malformed message closes the connection; nothing here panics on client input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anymongo_proto::options::Compressor;
use anymongo_proto::wire::{
    encode, Body, Decoder, DocumentSequence, Message, MsgFlags, OpMsg, OpReply,
    DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN,
};
use bson::{doc, Bson, Document, RawDocumentBuf};

use crate::answer::Answer;
use crate::commands::{self, ConnState, Produced};
use crate::faults::{self, FaultAction};
use crate::server::{lock, CommandRecord, Shared};
use crate::tls::TlsIdentity;

trait Transport: Read + Write + Send {}
impl<T: Read + Write + Send> Transport for T {}

/// How the request arrived, hence how to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Msg,
    Query,
}

/// A parsed command request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) request_id: i32,
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) db: String,
    pub(crate) cmd: Document,
    /// The OP_MSG document sequences as received: an insert stores these bytes instead of
    /// encoding its documents again.
    pub(crate) sequences: Vec<DocumentSequence>,
    /// Whether `sequences` were decoded into `cmd` (see [`Request::fold`]).
    pub(crate) folded: bool,
    pub(crate) more_to_come: bool,
    pub(crate) checksum: bool,
    pub(crate) compressor_id: Option<u8>,
    /// An OP_QUERY on something other than `<db>.$cmd`.
    pub(crate) legacy_query: bool,
    /// The client set `exhaustAllowed`.
    pub(crate) exhaust: bool,
    /// Made up by the server to continue an exhaust stream (not logged).
    pub(crate) synthetic: bool,
}

impl Request {
    /// Decodes the document sequences into `cmd` (each sequence's identifier set to the array of
    /// its documents), once. `None` if a document cannot be decoded.
    pub(crate) fn fold(&mut self) -> Option<()> {
        if self.folded {
            return Some(());
        }
        for seq in &self.sequences {
            let docs: Option<Vec<Bson>> = seq
                .documents
                .iter()
                .map(|d| to_doc(d).map(Bson::Document))
                .collect();
            self.cmd.insert(seq.identifier.clone(), docs?);
        }
        self.folded = true;
        Some(())
    }
}

enum Step {
    Continue,
    Close,
    /// The reply went out with `moreToCome`: handle this follow-up request without reading.
    Stream(Box<Request>),
}

/// Serves one accepted connection until it closes or the server is killed.
pub(crate) fn serve(shared: Arc<Shared>, stream: TcpStream, id: u32, epoch: u64) {
    struct Guard(Arc<Shared>, u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            lock(&self.0.live).remove(&self.1);
            self.0.open_conns.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _guard = Guard(shared.clone(), id);
    // A second handle on the socket, to notice a client that hangs up while a reply is held back
    // (awaitable hello, delays): the connection then closes at once, as on a real server.
    let peer = stream.try_clone().ok();
    let plaintext = match &shared.cfg.tls {
        Some(identity) if identity.allow_plaintext => match TlsIdentity::starts_tls(&stream) {
            Some(tls) => !tls,
            // Closed before a first message: nothing to serve.
            None => return,
        },
        _ => false,
    };
    let transport: Box<dyn Transport> = match &shared.cfg.tls {
        Some(_) if plaintext => {
            shared.plaintext_conns.fetch_add(1, Ordering::SeqCst);
            Box::new(stream)
        }
        Some(identity) => match rustls::ServerConnection::new(identity.config.clone()) {
            Ok(conn) => Box::new(rustls::StreamOwned::new(conn, stream)),
            Err(_) => return,
        },
        None => Box::new(stream),
    };
    let mut conn = Conn {
        shared,
        transport,
        decoder: Decoder::new(DEFAULT_MAX_MESSAGE_SIZE),
        state: ConnState::new(id, epoch),
        epoch,
        next_request_id: 1,
        out: Vec::new(),
        hello_bytes: None,
        peer,
    };
    conn.run();
}

struct Conn {
    shared: Arc<Shared>,
    transport: Box<dyn Transport>,
    decoder: Decoder,
    state: ConnState,
    epoch: u64,
    next_request_id: i32,
    out: Vec<u8>,
    /// Fast mode: this connection's encoded hello reply.
    hello_bytes: Option<Vec<u8>>,
    /// The raw socket, for [`Conn::peer_closed`].
    peer: Option<TcpStream>,
}

impl Conn {
    fn killed(&self) -> bool {
        self.shared.epoch.load(Ordering::SeqCst) != self.epoch
    }

    /// Whether the client closed its end (checked without consuming any bytes it sent).
    fn peer_closed(&self) -> bool {
        let Some(socket) = &self.peer else {
            return false;
        };
        if socket.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let closed = matches!(socket.peek(&mut byte), Ok(0));
        let _ = socket.set_nonblocking(false);
        closed
    }

    fn run(&mut self) {
        loop {
            if self.killed() {
                return;
            }
            match self.decoder.decode() {
                Ok(Some(msg)) => {
                    let Some(mut req) = parse_request(msg) else {
                        return;
                    };
                    loop {
                        match self.handle(req) {
                            Step::Continue => break,
                            Step::Close => return,
                            Step::Stream(next) => req = *next,
                        }
                    }
                }
                Ok(None) => {
                    let buf = self.decoder.spare(16 * 1024);
                    match self.transport.read(buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => self.decoder.commit(n),
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Sleeps up to `d`, waking early (returning false) if the server was killed or the client
    /// hung up.
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.killed() || self.peer_closed() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }

    fn handle(&mut self, mut req: Request) -> Step {
        let fast = self.shared.cfg.fast;
        // The document sequences are decoded into the command (for the log, fail points,
        // handlers and the store), except an insert's in fast mode: the store keeps their bytes
        // and parses a document only if a later command needs it (handlers still fold them).
        if !(fast && req.name == "insert") && req.fold().is_none() {
            return Step::Close;
        }
        if !fast && !req.synthetic {
            self.shared.record(CommandRecord {
                connection_id: self.state.id,
                name: req.name.clone(),
                db: req.db.clone(),
                command: req.cmd.clone(),
                compressor_id: req.compressor_id,
                op_query: req.kind == Kind::Query,
            });
        }
        if fast && commands::is_hello(&req.name) && self.replay_hello(&req) {
            return Step::Continue;
        }
        let mut action = FaultAction::None;
        if !fast && req.name != "configureFailPoint" {
            // The handshake's own hello already counts as coming from its appName (as with
            // mongod, where fail points with `appName` can block the handshake).
            let app_name = if !self.state.handshaken && commands::is_hello(&req.name) {
                commands::handshake_app_name(&req.cmd)
            } else {
                self.state.app_name.clone()
            };
            let fp = {
                let mut s = lock(&self.shared.scripted);
                let hit = faults::trigger(&mut s.fail_points, &req.name, app_name.as_deref());
                if hit.as_ref().is_some_and(|(_, from_command)| *from_command) {
                    s.fail_command_entered += 1;
                }
                hit.map(|(fp, _)| fp)
            };
            if let Some(fp) = fp {
                if let Some(b) = fp.block {
                    if !self.nap(b) {
                        return Step::Close;
                    }
                }
                action = fp.action;
            }
        }
        if let FaultAction::Delay(d) = action {
            if !self.nap(d) {
                return Step::Close;
            }
            action = FaultAction::None;
        }
        let needs_reply = matches!(
            action,
            FaultAction::None | FaultAction::CloseAfterHalf | FaultAction::WriteConcernError { .. }
        );
        let mut reply = Answer::Doc(doc! { "ok": 1.0 });
        if needs_reply {
            match commands::produce(&self.shared, &mut self.state, &mut req) {
                Produced::Doc(d) => reply = d,
                Produced::Fault(f) => {
                    action = f;
                    if let FaultAction::Delay(d) = action {
                        if !self.nap(d) {
                            return Step::Close;
                        }
                        action = FaultAction::None;
                    }
                    // Actions that still reply use the built-in reply.
                    if matches!(
                        action,
                        FaultAction::None
                            | FaultAction::CloseAfterHalf
                            | FaultAction::WriteConcernError { .. }
                    ) {
                        reply = match commands::builtin(&self.shared, &mut self.state, &mut req) {
                            Produced::Doc(d) => d,
                            Produced::Wait(..) => {
                                commands::hello(&self.shared, &mut self.state, &req).into()
                            }
                            Produced::Fault(_) => reply,
                        };
                    }
                }
                Produced::Wait(d, counter, fields) => {
                    // Awaitable hello: wait for a topology change or the timeout.
                    let end = Instant::now() + d;
                    while Instant::now() < end
                        && self.shared.topology_counter.load(Ordering::SeqCst) == counter
                    {
                        if !self.nap(Duration::from_millis(10)) {
                            return Step::Close;
                        }
                    }
                    let mut hello = commands::hello(&self.shared, &mut self.state, &req);
                    commands::merge(&mut hello, &fields);
                    reply = hello.into();
                }
            }
        }
        match action {
            FaultAction::CloseBeforeReply => Step::Close,
            FaultAction::Garbage => {
                let mut bytes = Vec::new();
                bytes.extend_from_slice(&40_i32.to_le_bytes());
                bytes.extend_from_slice(&self.take_request_id().to_le_bytes());
                bytes.extend_from_slice(&req.request_id.to_le_bytes());
                bytes.extend_from_slice(&0x7eadbeef_i32.to_le_bytes());
                bytes.extend_from_slice(b"this is not a mongodb message!!!");
                bytes.truncate(40);
                self.write_raw(&bytes)
            }
            FaultAction::OversizedHeader => {
                let len = i32::try_from(DEFAULT_MAX_MESSAGE_SIZE + 1).unwrap_or(i32::MAX);
                let mut bytes = Vec::new();
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&self.take_request_id().to_le_bytes());
                bytes.extend_from_slice(&req.request_id.to_le_bytes());
                bytes.extend_from_slice(&2013_i32.to_le_bytes());
                debug_assert_eq!(bytes.len(), HEADER_LEN);
                self.write_raw(&bytes)
            }
            FaultAction::Error {
                code,
                code_name,
                errmsg,
                labels,
            } => {
                let mut d =
                    doc! { "ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name };
                let labels = labels.unwrap_or_else(|| retryable_label(&self.shared, &req, code));
                if !labels.is_empty() {
                    d.insert("errorLabels", labels);
                }
                append_topology_version(&self.shared, &mut d);
                self.send(&req, d.into())
            }
            FaultAction::WriteConcernError {
                code,
                code_name,
                errmsg,
                labels,
            } => {
                let d = reply.doc_mut();
                d.insert(
                    "writeConcernError",
                    doc! { "code": code, "codeName": code_name, "errmsg": errmsg },
                );
                let labels = labels.unwrap_or_else(|| retryable_label(&self.shared, &req, code));
                if !labels.is_empty() {
                    d.insert("errorLabels", labels);
                }
                append_topology_version(&self.shared, d);
                self.send(&req, reply)
            }
            FaultAction::CloseAfterHalf => {
                if self.encode_reply(&req, &reply, false).is_err() {
                    return Step::Close;
                }
                let half = self.out.len() / 2;
                let bytes = self.out.get(..half).unwrap_or_default().to_vec();
                let _ = self.transport.write_all(&bytes);
                let _ = self.transport.flush();
                Step::Close
            }
            FaultAction::None | FaultAction::Delay(_) => self.send(&req, reply),
        }
    }

    fn take_request_id(&mut self) -> i32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        id
    }

    fn compressor_for(&self, req: &Request) -> Option<Compressor> {
        let id = req.compressor_id?;
        self.shared
            .cfg
            .compressors
            .iter()
            .find(|c| c.id() == id)
            .copied()
    }

    /// Encodes the reply into `self.out`; returns its request id.
    fn encode_reply(
        &mut self,
        req: &Request,
        reply: &Answer,
        more_to_come: bool,
    ) -> Result<i32, ()> {
        let raw = reply.encode().ok_or(())?;
        let body = match req.kind {
            Kind::Msg => {
                let mut m = OpMsg::new(raw);
                if req.checksum {
                    m.flags.insert(MsgFlags::CHECKSUM_PRESENT);
                }
                if more_to_come {
                    m.flags.insert(MsgFlags::MORE_TO_COME);
                }
                Body::Msg(m)
            }
            Kind::Query => Body::Reply(OpReply {
                // AwaitCapable, plus QueryFailure for an unsupported legacy query.
                response_flags: if req.legacy_query { 8 | 2 } else { 8 },
                cursor_id: 0,
                starting_from: 0,
                documents: vec![raw],
            }),
        };
        let request_id = self.take_request_id();
        let msg = Message {
            request_id,
            response_to: req.request_id,
            body,
            compressor_id: None,
        };
        self.out.clear();
        let comp = self.compressor_for(req);
        encode(&msg, comp.as_ref(), &mut self.out).map_err(|_| ())?;
        Ok(request_id)
    }

    fn send(&mut self, req: &Request, mut reply: Answer) -> Step {
        if req.more_to_come {
            return Step::Continue;
        }
        if self.shared.rs.is_some() && !reply.contains_key("$clusterTime") {
            // Replica-set members gossip the cluster time, like mongod.
            let ts = crate::replset::cluster_time();
            let cluster_time = doc! {
                "clusterTime": ts,
                "signature": { "hash": Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; 20] }), "keyId": 0_i64 },
            };
            match &mut reply {
                // `ok` stays last: a cursor reply puts its extra fields before it.
                Answer::Cursor(c) => {
                    c.extra.insert("operationTime", ts);
                    c.extra.insert("$clusterTime", cluster_time);
                }
                Answer::Doc(reply) => {
                    let ok = reply.remove("ok");
                    reply.insert("operationTime", ts);
                    reply.insert("$clusterTime", cluster_time);
                    if let Some(ok) = ok {
                        reply.insert("ok", ok);
                    }
                }
            }
        }
        let next_cmd = exhaust_follow_up(req, &reply);
        let reply_id = match self.encode_reply(req, &reply, next_cmd.is_some()) {
            Ok(id) => id,
            Err(()) => {
                // A reply that cannot be encoded (too large): say so instead.
                let err = doc! { "ok": 0.0, "code": 10334, "codeName": "BSONObjectTooLarge", "errmsg": "reply too large" }.into();
                if self.encode_reply(req, &err, false).is_err() {
                    return Step::Close;
                }
                return self.write_out();
            }
        };
        if self.shared.cfg.fast
            && commands::is_hello(&req.name)
            && hello_is_cacheable(req)
            && self.hello_bytes.is_none()
        {
            self.hello_bytes = Some(self.out.clone());
        }
        match (self.write_out(), next_cmd) {
            (Step::Continue, Some(cmd)) => Step::Stream(Box::new(Request {
                request_id: reply_id,
                kind: req.kind,
                name: req.name.clone(),
                db: req.db.clone(),
                cmd,
                sequences: Vec::new(),
                folded: true,
                more_to_come: false,
                checksum: req.checksum,
                compressor_id: req.compressor_id,
                legacy_query: false,
                exhaust: true,
                synthetic: true,
            })),
            (step, _) => step,
        }
    }

    fn write_out(&mut self) -> Step {
        let out = std::mem::take(&mut self.out);
        let step = self.write_raw(&out);
        self.out = out;
        step
    }

    /// Fast mode: replays the cached hello reply with this request's ids.
    fn replay_hello(&mut self, req: &Request) -> bool {
        if !hello_is_cacheable(req) {
            return false;
        }
        let Some(mut bytes) = self.hello_bytes.clone() else {
            return false;
        };
        let rid = self.take_request_id();
        if let Some(h) = bytes.get_mut(4..12) {
            h[..4].copy_from_slice(&rid.to_le_bytes());
            h[4..].copy_from_slice(&req.request_id.to_le_bytes());
        }
        // A failed write surfaces as a failed read on the next loop turn.
        let _ = self.write_raw(&bytes);
        true
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Step {
        match self
            .transport
            .write_all(bytes)
            .and_then(|()| self.transport.flush())
        {
            Ok(()) => Step::Continue,
            Err(_) => Step::Close,
        }
    }
}

/// With `exhaustAllowed`, an awaitable hello or a getMore whose cursor stays open is answered
/// with `moreToCome`, and the server carries on as if the client had sent this command again
/// (an exhaust follow-up's `responseTo` is the previous reply's request id).
fn exhaust_follow_up(req: &Request, reply: &Answer) -> Option<Document> {
    if !req.exhaust || req.kind != Kind::Msg {
        return None;
    }
    if !reply.is_ok() {
        return None;
    }
    if commands::is_hello(&req.name)
        && req.cmd.contains_key("topologyVersion")
        && req.cmd.contains_key("maxAwaitTimeMS")
    {
        let Answer::Doc(reply) = reply else {
            return None;
        };
        let mut cmd = req.cmd.clone();
        cmd.insert(
            "topologyVersion",
            reply.get_document("topologyVersion").ok()?.clone(),
        );
        return Some(cmd);
    }
    if req.name == "getMore" {
        let open = reply.cursor_id().is_some_and(|id| id != 0);
        return open.then(|| req.cmd.clone());
    }
    None
}

fn hello_is_cacheable(req: &Request) -> bool {
    req.kind == Kind::Msg
        && req.compressor_id.is_none()
        && !req.checksum
        && !req.more_to_come
        && ![
            "topologyVersion",
            "speculativeAuthenticate",
            "saslSupportedMechs",
            "compression",
            "client",
        ]
        .iter()
        .any(|k| req.cmd.contains_key(k))
}

/// The NotPrimaryError category of mongod's error codes: InterruptedDueToReplStateChange,
/// NotWritablePrimary, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, PrimarySteppedDown.
fn is_not_primary_code(code: i32) -> bool {
    matches!(code, 11602 | 10107 | 13435 | 13436 | 189)
}

/// A replica-set member appends its `topologyVersion` to a reply whose error, or write concern
/// error, is of the NotPrimaryError category (mongod's appendErrorLabelsAndTopologyVersion), so
/// that drivers can tell a stale error from a fresh one. Done for the built-in errors and those of
/// fail points; a reply scripted whole (a handler's or a queued document) is sent as given.
pub(crate) fn append_topology_version(shared: &Shared, d: &mut Document) {
    if shared.rs.is_none() {
        return;
    }
    let code = |d: &Document| {
        d.get("code")
            .and_then(crate::store::as_f64)
            .map(|c| c as i32)
    };
    let failed = d
        .get("ok")
        .and_then(crate::store::as_f64)
        .is_some_and(|ok| ok != 1.0);
    let not_primary = (failed && code(d).is_some_and(is_not_primary_code))
        || d.get_document("writeConcernError")
            .ok()
            .and_then(code)
            .is_some_and(is_not_primary_code);
    if !not_primary || d.contains_key("topologyVersion") {
        return;
    }
    let ok = d.remove("ok");
    d.insert("topologyVersion", commands::topology_version(shared));
    if let Some(ok) = ok {
        d.insert("ok", ok);
    }
}

/// mongod 4.4+ labels errors of retryable writes with retryable codes itself.
fn retryable_label(shared: &Shared, req: &Request, code: i32) -> Vec<String> {
    if shared.cfg.max_wire_version >= 9
        && req.cmd.contains_key("txnNumber")
        && commands::is_write(&req.name)
        && faults::is_retryable_write_code(code)
    {
        vec!["RetryableWriteError".to_string()]
    } else {
        Vec::new()
    }
}

fn to_doc(raw: &RawDocumentBuf) -> Option<Document> {
    Document::try_from(raw.as_ref()).ok()
}

/// Turns a decoded message into a command request; `None` for messages a server never accepts.
pub(crate) fn parse_request(msg: Message) -> Option<Request> {
    match msg.body {
        Body::Msg(m) => {
            let cmd = to_doc(&m.body)?;
            let sequences = m.sequences;
            let folded = sequences.is_empty();
            let name = cmd.keys().next()?.clone();
            let db = cmd.get_str("$db").unwrap_or_default().to_string();
            Some(Request {
                request_id: msg.request_id,
                kind: Kind::Msg,
                name,
                db,
                more_to_come: m.flags.contains(MsgFlags::MORE_TO_COME),
                checksum: m.flags.contains(MsgFlags::CHECKSUM_PRESENT),
                exhaust: m.flags.contains(MsgFlags::EXHAUST_ALLOWED),
                compressor_id: msg.compressor_id,
                cmd,
                sequences,
                folded,
                legacy_query: false,
                synthetic: false,
            })
        }
        Body::Query(q) => {
            let mut cmd = to_doc(&q.query)?;
            if let Ok(inner) = cmd.get_document("$query") {
                cmd = inner.clone();
            }
            let (db, legacy_query) = match q.full_collection_name.strip_suffix(".$cmd") {
                Some(db) => (db.to_string(), false),
                None => (String::new(), true),
            };
            let name = cmd.keys().next().cloned().unwrap_or_default();
            Some(Request {
                request_id: msg.request_id,
                kind: Kind::Query,
                name,
                db,
                cmd,
                sequences: Vec::new(),
                folded: true,
                more_to_come: false,
                checksum: false,
                compressor_id: msg.compressor_id,
                legacy_query,
                exhaust: false,
                synthetic: false,
            })
        }
        Body::Reply(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anymongo_proto::wire::{DocumentSequence, OpQuery};

    fn raw(d: &Document) -> RawDocumentBuf {
        RawDocumentBuf::try_from(d).unwrap()
    }

    #[test]
    fn op_msg_sequences_fold_into_the_body() {
        let mut m = OpMsg::new(raw(&doc! { "insert": "c", "$db": "db" }));
        m.flags = MsgFlags(MsgFlags::MORE_TO_COME.0 | MsgFlags::EXHAUST_ALLOWED.0);
        m.sequences.push(DocumentSequence {
            identifier: "documents".into(),
            documents: vec![raw(&doc! { "_id": 1 }), raw(&doc! { "_id": 2 })],
        });
        let mut req = parse_request(Message::new(7, Body::Msg(m))).unwrap();
        assert!(!req.folded && !req.cmd.contains_key("documents"));
        req.fold().unwrap();
        req.fold().unwrap();
        assert_eq!(
            (req.name.as_str(), req.db.as_str(), req.request_id),
            ("insert", "db", 7)
        );
        assert!(req.more_to_come && req.exhaust && !req.checksum);
        assert_eq!(
            req.cmd.get_array("documents").unwrap(),
            &vec![
                Bson::Document(doc! { "_id": 1 }),
                Bson::Document(doc! { "_id": 2 })
            ]
        );
    }

    #[test]
    fn op_query_commands_and_legacy_reads() {
        let q = |ns: &str, d: Document| {
            parse_request(Message::new(
                1,
                Body::Query(OpQuery {
                    flags: 0,
                    full_collection_name: ns.into(),
                    number_to_skip: 0,
                    number_to_return: -1,
                    query: raw(&d),
                    return_fields_selector: None,
                }),
            ))
            .unwrap()
        };
        let r = q(
            "admin.$cmd",
            doc! { "$query": { "isMaster": 1 }, "$readPreference": {} },
        );
        assert_eq!(
            (r.name.as_str(), r.db.as_str(), r.legacy_query),
            ("isMaster", "admin", false)
        );
        let r = q("db.coll", doc! { "x": 1 });
        assert!(r.legacy_query);
        let reply = Message::new(
            1,
            Body::Reply(OpReply {
                response_flags: 0,
                cursor_id: 0,
                starting_from: 0,
                documents: vec![],
            }),
        );
        assert!(
            parse_request(reply).is_none(),
            "clients do not send OP_REPLY"
        );
    }

    #[test]
    fn exhaust_follow_ups() {
        let req = |name: &str, cmd: Document, exhaust: bool| Request {
            request_id: 1,
            kind: Kind::Msg,
            name: name.into(),
            db: "admin".into(),
            cmd,
            sequences: Vec::new(),
            folded: true,
            more_to_come: false,
            checksum: false,
            compressor_id: None,
            legacy_query: false,
            exhaust,
            synthetic: false,
        };
        let tv = doc! { "processId": bson::oid::ObjectId::new(), "counter": 3_i64 };
        let hello =
            doc! { "hello": 1, "topologyVersion": { "counter": 0_i64 }, "maxAwaitTimeMS": 10 };
        let reply = doc! { "ok": 1.0, "topologyVersion": tv.clone() };
        let reply = Answer::Doc(reply);
        let next = exhaust_follow_up(&req("hello", hello.clone(), true), &reply).unwrap();
        assert_eq!(next.get_document("topologyVersion").unwrap(), &tv);
        assert!(exhaust_follow_up(&req("hello", hello.clone(), false), &reply).is_none());
        assert!(exhaust_follow_up(&req("hello", doc! { "hello": 1 }, true), &reply).is_none());
        assert!(
            exhaust_follow_up(&req("hello", hello, true), &doc! { "ok": 0.0 }.into()).is_none()
        );
        let gm = doc! { "getMore": 5_i64, "collection": "c" };
        let open = doc! { "ok": 1.0, "cursor": { "id": 5_i64, "nextBatch": [] } }.into();
        let done = doc! { "ok": 1.0, "cursor": { "id": 0_i64, "nextBatch": [] } }.into();
        assert_eq!(
            exhaust_follow_up(&req("getMore", gm.clone(), true), &open),
            Some(gm.clone())
        );
        assert!(exhaust_follow_up(&req("getMore", gm, true), &done).is_none());
    }
}
