//! Command dispatch: queued replies, handlers, the authentication gate and the built-ins
//! (hello / isMaster, ping, buildInfo, endSessions, SASL, configureFailPoint, CRUD via the store).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anymongo_proto::options::{AuthMechanism, Compressor};
use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, DateTime, Document};

use crate::answer::Answer;
use crate::auth::{self, ScramHash, ScramServer, User};
use crate::conn::{Kind, Request};
use crate::error::CommandError;
use crate::faults::{ActiveFailPoint, FailPoint, FaultAction};
use crate::server::{lock, CommandContext, Reply, Shared};

/// Commands refused by a secondary with NotWritablePrimary.
const WRITES: &[&str] = &[
    "insert",
    "update",
    "delete",
    "findAndModify",
    "create",
    "drop",
    "dropDatabase",
    "createIndexes",
    "dropIndexes",
    "findandmodify",
];

/// Whether `name` is a hello spelling.
pub(crate) fn is_hello(name: &str) -> bool {
    matches!(name, "hello" | "isMaster" | "ismaster")
}

/// Whether `name` is a write command.
pub(crate) fn is_write(name: &str) -> bool {
    WRITES.contains(&name)
}

#[derive(Debug)]
enum Sasl {
    AwaitFinal {
        conversation: i32,
        machine: ScramServer,
        skip_empty: bool,
        db: String,
    },
    AwaitEmpty {
        conversation: i32,
        user: String,
        db: String,
    },
}

/// Per-connection state the commands see and change.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) id: u32,
    pub(crate) app_name: Option<String>,
    pub(crate) negotiated: Vec<Compressor>,
    pub(crate) authenticated: Option<(String, String)>,
    sasl: Option<Sasl>,
    pub(crate) handshaken: bool,
    /// The server's listening period this connection belongs to (a kill ends it).
    pub(crate) epoch: u64,
}

impl ConnState {
    pub(crate) fn new(id: u32, epoch: u64) -> Self {
        ConnState {
            id,
            epoch,
            app_name: None,
            negotiated: Vec::new(),
            authenticated: None,
            sasl: None,
            handshaken: false,
        }
    }
}

/// The outcome of running a command.
pub(crate) enum Produced {
    /// Reply with this.
    Doc(Answer),
    /// Misbehave.
    Fault(FaultAction),
    /// Awaitable hello: wait up to this long while the topology counter equals this value, then
    /// reply with the hello merged with the fields given.
    Wait(Duration, i64, Document),
}

/// Runs a command: queued reply, handler, auth gate, built-in.
///
/// A built-in insert moves the documents out of `req.cmd` into the store.
pub(crate) fn produce(shared: &Shared, st: &mut ConnState, req: &mut Request) -> Produced {
    if req.legacy_query {
        return Produced::Doc(
            doc! { "$err": "legacy OP_QUERY reads are not supported", "code": 2 }.into(),
        );
    }
    let (queued, handler) = {
        let mut s = lock(&shared.scripted);
        let q = s.queued.get_mut(&req.name).and_then(|q| q.pop_front());
        let h = if q.is_none() {
            s.handlers.get(&req.name).cloned()
        } else {
            None
        };
        (q, h)
    };
    let scripted = match (queued, handler) {
        (Some(r), _) => Some(r),
        (None, Some(h)) => {
            // A handler sees the whole command.
            if req.fold().is_none() {
                return Produced::Fault(FaultAction::CloseBeforeReply);
            }
            let ctx = CommandContext {
                name: req.name.clone(),
                db: req.db.clone(),
                command: req.cmd.clone(),
                connection_id: st.id,
            };
            Some(
                catch_unwind(AssertUnwindSafe(|| h(&ctx))).unwrap_or_else(|_| {
                    Reply::Error(CommandError::new(1, "InternalError", "handler panicked"))
                }),
            )
        }
        (None, None) => None,
    };
    match scripted {
        Some(Reply::Document(d)) => Produced::Doc(d.into()),
        Some(Reply::Error(e)) => Produced::Doc(e.to_document().into()),
        Some(Reply::Fault(f)) => Produced::Fault(f),
        Some(Reply::Merge(fields)) => match builtin(shared, st, req) {
            Produced::Doc(mut d) => {
                merge(d.doc_mut(), &fields);
                Produced::Doc(d)
            }
            Produced::Wait(dur, counter, mut m) => {
                merge(&mut m, &fields);
                Produced::Wait(dur, counter, m)
            }
            other => other,
        },
        Some(Reply::Default) | None => builtin(shared, st, req),
    }
}

/// The built-in behaviour (no queued replies, no handlers).
///
/// A built-in insert moves the documents out of `req.cmd` into the store.
pub(crate) fn builtin(shared: &Shared, st: &mut ConnState, req: &mut Request) -> Produced {
    let name = req.name.as_str();
    if is_hello(name) {
        if let Some(wait) = awaitable(shared, &req.cmd) {
            return wait;
        }
        return Produced::Doc(hello(shared, st, req).into());
    }
    if req.kind == Kind::Msg && req.db.is_empty() {
        return err(CommandError::new(
            40571,
            "Location40571",
            "OP_MSG requests require a $db argument",
        ));
    }
    let result = match name {
        "saslStart" => sasl_start(shared, st, &req.db, &req.cmd).map(Answer::Doc),
        "saslContinue" => sasl_continue(shared, st, &req.cmd).map(Answer::Doc),
        "authenticate" => Err(mechanism_unavailable(
            cmd_str(&req.cmd, "mechanism").unwrap_or("MONGODB-X509"),
        )),
        "ping" => Ok(doc! { "ok": 1.0 }.into()),
        "buildInfo" | "buildinfo" => Ok(build_info(shared).into()),
        // Everything below needs an authenticated connection when users are configured.
        _ if !shared.cfg.users.is_empty() && st.authenticated.is_none() => {
            Err(CommandError::unauthorized(name))
        }
        _ => match session_fields(shared, name, &req.cmd)
            .and_then(|()| may_run_here(shared, name, &req.cmd))
        {
            Err(e) => Err(e),
            Ok(()) => match name {
                "endSessions" | "killAllSessions" => Ok(doc! { "ok": 1.0 }.into()),
                "configureFailPoint" => configure_fail_point(shared, &req.cmd).map(Answer::Doc),
                "replSetStepDown" => repl_set_step_down(shared, &req.db).map(Answer::Doc),
                _ => match crate::write_concern::WriteConcern::of(shared, name, &req.cmd) {
                    Err(e) => Err(e),
                    Ok(wc) => {
                        let ran = lock(&shared.store).run(
                            name,
                            &req.db,
                            &mut req.cmd,
                            &req.sequences,
                            req.folded,
                        );
                        match ran {
                            Some(Ok(mut answer)) => {
                                if let Some(wc) = wc {
                                    if let Some(wce) = wc.wait(shared, st) {
                                        merge(answer.doc_mut(), &doc! { "writeConcernError": wce });
                                    }
                                }
                                Ok(answer)
                            }
                            Some(Err(e)) => Err(e),
                            None => Err(CommandError::command_not_found(name)),
                        }
                    }
                },
            },
        },
    };
    match result {
        Ok(d) => Produced::Doc(d),
        Err(e) => {
            let mut d = e.to_document();
            crate::conn::append_topology_version(shared, &mut d);
            Produced::Doc(d.into())
        }
    }
}

/// Sets `fields` in `d`, keeping `ok` last.
pub(crate) fn merge(d: &mut Document, fields: &Document) {
    let ok = d.remove("ok");
    for (k, v) in fields {
        d.insert(k.clone(), v.clone());
    }
    if let Some(ok) = ok {
        if !fields.contains_key("ok") {
            d.insert("ok", ok);
        }
    }
}

fn err(e: CommandError) -> Produced {
    Produced::Doc(e.to_document().into())
}

/// The session fields of a command (`lsid`, `txnNumber`, `autocommit`, `startTransaction`),
/// checked as mongod's `initializeOperationSessionInfo` does, then (on a replica-set member)
/// that a `txnNumber` outside a transaction comes with a retryable write.
fn session_fields(shared: &Shared, name: &str, cmd: &Document) -> Result<(), CommandError> {
    let invalid = |m: &str| CommandError::new(72, "InvalidOptions", m);
    let txn_number = cmd.get("txnNumber");
    if txn_number.is_some() && !cmd.contains_key("lsid") {
        return Err(invalid(
            "Transaction number requires a session ID to also be specified",
        ));
    }
    if let Some(txn) = txn_number {
        if shared.rs.is_none() {
            return Err(CommandError::new(
                20,
                "IllegalOperation",
                "Transaction numbers are only allowed on a replica set member or mongos",
            ));
        }
        if crate::store::as_f64(txn).is_some_and(|n| n < 0.0) {
            return Err(invalid("Transaction number cannot be negative"));
        }
    }
    let autocommit = cmd.get("autocommit");
    if autocommit.is_some() && txn_number.is_none() {
        return Err(invalid(
            "'autocommit' field requires a transaction number to also be specified",
        ));
    }
    match autocommit {
        Some(Bson::Boolean(true)) => {
            return Err(invalid("Specifying autocommit=true is not allowed."))
        }
        None if cmd.contains_key("startTransaction") => {
            return Err(invalid(
                "'startTransaction' field requires 'autocommit' field to also be specified",
            ))
        }
        _ => {}
    }
    if matches!(cmd.get("startTransaction"), Some(Bson::Boolean(false))) {
        return Err(invalid("Specifying startTransaction=false is not allowed."));
    }
    if txn_number.is_some() && autocommit.is_none() && !is_retryable_write(name) {
        return Err(CommandError::new(
            50768,
            "Location50768",
            format!(
                "txnNumber may only be provided for multi-document transactions and retryable \
                 write commands. autocommit:false was not provided, and {name} is not a retryable \
                 write command."
            ),
        ));
    }
    Ok(())
}

/// Commands mongod retries as retryable writes (a `txnNumber` outside a transaction).
fn is_retryable_write(name: &str) -> bool {
    matches!(
        name,
        "insert" | "update" | "delete" | "findAndModify" | "findandmodify"
    )
}

/// Where a command may run, as mongod's `Command::secondaryAllowed` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnSecondary {
    /// Anywhere (hello, ping, getMore, killCursors, ...).
    Always,
    /// On a secondary only when the client opted in with a `$readPreference` other than primary.
    OptIn,
    /// On the primary only (writes, catalog changes, transaction commits).
    Never,
}

fn on_secondary(name: &str) -> OnSecondary {
    match name {
        "find" | "aggregate" | "count" | "distinct" | "listCollections" | "listIndexes"
        | "listDatabases" | "dbStats" | "collStats" | "explain" => OnSecondary::OptIn,
        "commitTransaction" | "abortTransaction" => OnSecondary::Never,
        _ if is_write(name) => OnSecondary::Never,
        _ => OnSecondary::Always,
    }
}

/// Whether the `$readPreference` of a command lets it run on a secondary (any mode but primary).
fn secondary_ok(cmd: &Document) -> bool {
    cmd.get_document("$readPreference")
        .ok()
        .and_then(|rp| rp.get_str("mode").ok())
        .is_some_and(|mode| mode != "primary")
}

/// mongod's command dispatch on a replica-set member that is not primary: a command that needs
/// the primary is NotWritablePrimary (10107); one a secondary may serve when asked, without such
/// a `$readPreference` (or inside a transaction), is NotPrimaryNoSecondaryOk (13435).
fn may_run_here(shared: &Shared, name: &str, cmd: &Document) -> Result<(), CommandError> {
    if is_primary(shared) {
        return Ok(());
    }
    let in_transaction = cmd.contains_key("autocommit");
    let policy = on_secondary(name);
    if policy == OnSecondary::Always && !in_transaction {
        return Ok(());
    }
    if policy == OnSecondary::OptIn && !in_transaction {
        if secondary_ok(cmd) {
            return Ok(());
        }
        return Err(CommandError::new(
            13435,
            "NotPrimaryNoSecondaryOk",
            "not primary and secondaryOk=false",
        ));
    }
    let mut e = CommandError::not_writable_primary();
    if shared.cfg.max_wire_version >= 9
        && cmd.contains_key("txnNumber")
        && !in_transaction
        && is_retryable_write(name)
    {
        e.labels.push("RetryableWriteError".to_string());
    }
    Err(e)
}

fn is_primary(shared: &Shared) -> bool {
    match &shared.rs {
        None => true,
        Some((rs, idx)) => lock(rs).primary == Some(*idx),
    }
}

fn version_for(wire: i32) -> &'static str {
    match wire {
        25.. => "8.0.0",
        21..=24 => "7.0.0",
        17..=20 => "6.0.0",
        13..=16 => "5.0.0",
        9..=12 => "4.4.0",
        8 => "4.2.0",
        7 => "4.0.0",
        _ => "3.6.0",
    }
}

fn build_info(shared: &Shared) -> Document {
    let v = version_for(shared.cfg.max_wire_version);
    let parts: Vec<i32> = v
        .split('.')
        .filter_map(|p| p.parse().ok())
        .chain([0])
        .collect();
    doc! { "version": v, "versionArray": parts, "gitVersion": "anymongo-testkit",
    "maxBsonObjectSize": 16_777_216, "bits": 64, "ok": 1.0 }
}

pub(crate) fn topology_version(shared: &Shared) -> Document {
    doc! {
        "processId": *lock(&shared.process_id),
        "counter": shared.topology_counter.load(Ordering::SeqCst),
    }
}

/// An awaitable hello (`topologyVersion` + `maxAwaitTimeMS`) whose topology version is current
/// waits for a change; one from another process or an older counter answers at once.
fn awaitable(shared: &Shared, cmd: &Document) -> Option<Produced> {
    let tv = cmd.get_document("topologyVersion").ok()?;
    let max_await = match cmd.get("maxAwaitTimeMS") {
        Some(v) => crate::store::as_f64(v)?,
        None => return None,
    };
    let current = topology_version(shared);
    let same_process = tv.get("processId") == current.get("processId");
    let counter = shared.topology_counter.load(Ordering::SeqCst);
    let their = tv.get("counter").and_then(crate::store::as_f64)?;
    if same_process && their as i64 == counter {
        let ms = max_await.clamp(0.0, 60_000.0) as u64;
        Some(Produced::Wait(
            Duration::from_millis(ms),
            counter,
            Document::new(),
        ))
    } else {
        None
    }
}

/// `client.application.name` of a handshake command.
pub(crate) fn handshake_app_name(cmd: &Document) -> Option<String> {
    cmd.get_document("client")
        .and_then(|c| c.get_document("application"))
        .and_then(|a| a.get_str("name"))
        .ok()
        .map(str::to_string)
}

/// The hello / isMaster reply for this server and connection.
pub(crate) fn hello(shared: &Shared, st: &mut ConnState, req: &Request) -> Document {
    let cmd = &req.cmd;
    if !st.handshaken {
        st.handshaken = true;
        st.app_name = handshake_app_name(cmd);
        if let Ok(offered) = cmd.get_array("compression") {
            st.negotiated = offered
                .iter()
                .filter_map(|n| n.as_str())
                .filter_map(|n| shared.cfg.compressors.iter().find(|c| c.name() == n))
                .copied()
                .collect();
        }
    }
    let mut d = Document::new();
    let (writable, rs_fields) = match &shared.rs {
        None => (true, None),
        Some((rs, idx)) => {
            let rs = lock(rs);
            (rs.primary == Some(*idx), Some(rs.hello_fields(*idx)))
        }
    };
    if req.name == "hello" {
        d.insert("isWritablePrimary", writable);
    } else {
        d.insert("ismaster", writable);
    }
    if let Some(f) = rs_fields {
        d.extend(f);
    }
    d.insert("helloOk", true);
    d.insert("topologyVersion", topology_version(shared));
    d.insert("maxBsonObjectSize", 16_777_216);
    d.insert("maxMessageSizeBytes", 48_000_000);
    d.insert("maxWriteBatchSize", 100_000);
    d.insert("localTime", DateTime::now());
    d.insert("logicalSessionTimeoutMinutes", 30);
    d.insert("connectionId", st.id as i32);
    d.insert("minWireVersion", 0);
    d.insert("maxWireVersion", shared.cfg.max_wire_version);
    d.insert("readOnly", false);
    if !st.negotiated.is_empty() && cmd.contains_key("compression") {
        let names: Vec<&str> = st.negotiated.iter().map(|c| c.name()).collect();
        d.insert("compression", names);
    }
    if let Ok(who) = cmd.get_str("saslSupportedMechs") {
        if let Some((db, user)) = who.split_once('.') {
            if let Some(u) = find_user(shared, db, user) {
                let mechs: Vec<&str> = u.mechanisms.iter().map(|m| m.as_str()).collect();
                d.insert("saslSupportedMechs", mechs);
            }
        }
    }
    if let Ok(spec) = cmd.get_document("speculativeAuthenticate") {
        let db = spec.get_str("db").unwrap_or("admin").to_string();
        if let Ok(r) = sasl_start(shared, st, &db, spec) {
            let mut r = r;
            r.remove("ok");
            d.insert("speculativeAuthenticate", r);
        }
    }
    for (k, v) in lock(&shared.hello_extra).iter() {
        d.insert(k.clone(), v.clone());
    }
    d.insert("ok", 1.0);
    d
}

fn find_user<'a>(shared: &'a Shared, db: &str, name: &str) -> Option<&'a User> {
    shared
        .cfg
        .users
        .iter()
        .find(|u| u.db == db && u.name == name)
}

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

fn payload(cmd: &Document) -> Result<Vec<u8>, CommandError> {
    match cmd.get("payload") {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        Some(Bson::String(s)) => Ok(s.as_bytes().to_vec()),
        _ => Err(CommandError::bad_value("SASL payload must be binary")),
    }
}

fn cmd_str<'a>(cmd: &'a Document, key: &str) -> Option<&'a str> {
    cmd.get_str(key).ok()
}

fn mechanism_unavailable(m: &str) -> CommandError {
    CommandError::new(
        334,
        "MechanismUnavailable",
        format!("Received authentication for mechanism {m} which is not enabled"),
    )
}

fn sasl_start(
    shared: &Shared,
    st: &mut ConnState,
    db: &str,
    cmd: &Document,
) -> Result<Document, CommandError> {
    let mech_name = cmd
        .get_str("mechanism")
        .map_err(|_| CommandError::bad_value("saslStart needs a mechanism"))?;
    let mech = AuthMechanism::parse(mech_name).ok_or_else(|| mechanism_unavailable(mech_name))?;
    let data = payload(cmd)?;
    let conversation = shared.next_conversation.fetch_add(1, Ordering::SeqCst);
    st.sasl = None;
    if mech == AuthMechanism::Plain {
        let (user, pass) = auth::parse_plain(&data)?;
        return match find_user(shared, db, &user) {
            Some(u) if u.password == pass && u.mechanisms.contains(&AuthMechanism::Plain) => {
                st.authenticated = Some((user, db.to_string()));
                Ok(
                    doc! { "conversationId": conversation, "done": true, "payload": binary(b""), "ok": 1.0 },
                )
            }
            _ => Err(CommandError::auth_failed()),
        };
    }
    let hash = ScramHash::from_mechanism(mech).ok_or_else(|| mechanism_unavailable(mech_name))?;
    let first = auth::parse_client_first(&data)?;
    let user = find_user(shared, db, &first.username).ok_or_else(CommandError::auth_failed)?;
    if !user.mechanisms.contains(&mech) {
        return Err(mechanism_unavailable(mech_name));
    }
    let key = (user.name.clone(), user.db.clone(), hash);
    let cached = lock(&shared.scram_cache).get(&key).cloned();
    let iterations = shared
        .cfg
        .scram_iterations
        .unwrap_or_else(|| hash.default_iterations());
    let (salt, salted) = match cached {
        Some(c) => c,
        None => {
            let salt: [u8; 16] = rand::random();
            let input = hash.password_input(&user.name, &user.password)?;
            let salted = hash.salted_password(&input, &salt, iterations);
            let entry = (salt.to_vec(), salted);
            lock(&shared.scram_cache).insert(key, entry.clone());
            entry
        }
    };
    let (machine, server_first) = ScramServer::start(
        hash,
        &first,
        &salted,
        &salt,
        iterations,
        &auth::server_nonce(),
    );
    let skip_empty = cmd
        .get_document("options")
        .and_then(|o| o.get_bool("skipEmptyExchange"))
        .unwrap_or(false);
    st.sasl = Some(Sasl::AwaitFinal {
        conversation,
        machine,
        skip_empty,
        db: db.to_string(),
    });
    Ok(doc! {
        "conversationId": conversation, "done": false,
        "payload": binary(server_first.as_bytes()), "ok": 1.0,
    })
}

fn sasl_continue(
    shared: &Shared,
    st: &mut ConnState,
    cmd: &Document,
) -> Result<Document, CommandError> {
    let conv = match cmd.get("conversationId") {
        Some(v) => crate::store::as_f64(v).map(|f| f as i32),
        None => None,
    };
    let data = payload(cmd)?;
    let no_state = || CommandError::new(17, "ProtocolError", "No SASL session state found");
    match st.sasl.take() {
        Some(Sasl::AwaitFinal {
            conversation,
            machine,
            skip_empty,
            db,
        }) => {
            if conv != Some(conversation) {
                return Err(no_state());
            }
            let wrong = shared.wrong_signature.load(Ordering::SeqCst);
            let server_final = machine.finish(&data, wrong)?;
            let user = machine.username().to_string();
            if skip_empty {
                st.authenticated = Some((user, db));
            } else {
                st.sasl = Some(Sasl::AwaitEmpty {
                    conversation,
                    user,
                    db,
                });
            }
            Ok(doc! {
                "conversationId": conversation, "done": skip_empty,
                "payload": binary(server_final.as_bytes()), "ok": 1.0,
            })
        }
        Some(Sasl::AwaitEmpty {
            conversation,
            user,
            db,
        }) => {
            if conv != Some(conversation) {
                return Err(no_state());
            }
            st.authenticated = Some((user, db));
            Ok(
                doc! { "conversationId": conversation, "done": true, "payload": binary(b""), "ok": 1.0 },
            )
        }
        None => Err(no_state()),
    }
}

/// mongod's `replSetStepDown`: admin only; NoReplicationEnabled (76) on a standalone.
fn repl_set_step_down(shared: &Shared, db: &str) -> Result<Document, CommandError> {
    if db != "admin" {
        return Err(CommandError::new(
            13,
            "Unauthorized",
            "replSetStepDown may only be run against the admin database.",
        ));
    }
    let Some((rs, idx)) = &shared.rs else {
        return Err(CommandError::new(
            76,
            "NoReplicationEnabled",
            "not running with --replSet",
        ));
    };
    lock(rs).step_down_command(*idx)?;
    Ok(doc! { "ok": 1.0 })
}

fn configure_fail_point(shared: &Shared, cmd: &Document) -> Result<Document, CommandError> {
    let fp = FailPoint::from_configure_command(cmd)?;
    let mut s = lock(&shared.scripted);
    s.fail_points.retain(|p| !p.from_command);
    if let Some(fp) = fp {
        s.fail_points.push(ActiveFailPoint::new(fp, true));
    }
    // mongod answers the fail point's `timesEntered`: how many times it fired since the process
    // started, whatever its modes were (FailPoint::setMode returns it; it is never reset).
    let count = match i32::try_from(s.fail_command_entered) {
        Ok(n) => Bson::Int32(n),
        Err(_) => Bson::Int64(i64::try_from(s.fail_command_entered).unwrap_or(i64::MAX)),
    };
    Ok(doc! { "count": count, "ok": 1.0 })
}
