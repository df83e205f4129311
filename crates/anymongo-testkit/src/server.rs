//! The fake server: builder, listener thread, shared state and the public handle.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anymongo_proto::options::Compressor;
use bson::{oid::ObjectId, Document};

use crate::auth::{ScramHash, User};
use crate::error::CommandError;
use crate::faults::{ActiveFailPoint, FailPoint, FaultAction};
use crate::replset::RsState;
use crate::store::Store;
use crate::tls::TlsIdentity;

/// At most this many commands are kept in the log (the oldest are dropped).
const MAX_LOG: usize = 100_000;

/// Locks a mutex, recovering from poisoning (a panicking handler must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a handler (or a queued reply) answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This document is the reply.
    Document(Document),
    /// Reply `{ok: 0, code, codeName, errmsg}`.
    Error(CommandError),
    /// Misbehave (see [`FaultAction`]); actions that still reply (`Delay`, `CloseAfterHalf`,
    /// `WriteConcernError`) use the built-in reply.
    Fault(FaultAction),
    /// Fall through to the built-in behaviour (a handler that only observes).
    Default,
    /// Run the built-in behaviour, then set these fields in its reply.
    Merge(Document),
}

impl From<Document> for Reply {
    fn from(d: Document) -> Self {
        Reply::Document(d)
    }
}

impl From<CommandError> for Reply {
    fn from(e: CommandError) -> Self {
        Reply::Error(e)
    }
}

impl From<FaultAction> for Reply {
    fn from(f: FaultAction) -> Self {
        Reply::Fault(f)
    }
}

/// What a handler sees of a command.
#[derive(Clone, Debug)]
pub struct CommandContext {
    /// The command name (the first key).
    pub name: String,
    /// The database (`$db`, or the OP_QUERY namespace's database).
    pub db: String,
    /// The full command document (OP_MSG document sequences folded in as arrays).
    pub command: Document,
    /// The server-assigned id of the connection (also the hello reply's `connectionId`).
    pub connection_id: u32,
}

/// A command handler.
pub type Handler = Arc<dyn Fn(&CommandContext) -> Reply + Send + Sync>;

/// One command the server received.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRecord {
    /// The connection it came on.
    pub connection_id: u32,
    /// The command name.
    pub name: String,
    /// Its database.
    pub db: String,
    /// The full command document.
    pub command: Document,
    /// The OP_COMPRESSED compressor id it arrived with (1 snappy, 2 zlib, 3 zstd), if any.
    pub compressor_id: Option<u8>,
    /// It arrived as a legacy OP_QUERY (not OP_MSG).
    pub op_query: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_wire_version: i32,
    pub(crate) compressors: Vec<Compressor>,
    pub(crate) users: Vec<User>,
    pub(crate) tls: Option<TlsIdentity>,
    pub(crate) fast: bool,
    /// Overrides mongod's default SCRAM iteration counts (see [`ScramHash::default_iterations`]).
    pub(crate) scram_iterations: Option<u32>,
    pub(crate) max_connections: usize,
    pub(crate) hello_extra: Document,
}

#[derive(Default)]
pub(crate) struct Scripted {
    pub(crate) handlers: HashMap<String, Handler>,
    pub(crate) queued: HashMap<String, VecDeque<Reply>>,
    pub(crate) fail_points: Vec<ActiveFailPoint>,
    /// How many times fail points installed by `configureFailPoint` fired since the server
    /// started (mongod's `timesEntered` of `failCommand`, answered as `count`).
    pub(crate) fail_command_entered: u64,
}

/// Per-listening-period state: bumped on kill so connections of the old period stop.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) addr: SocketAddr,
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) rs: Option<(Arc<Mutex<RsState>>, usize)>,
    pub(crate) scripted: Mutex<Scripted>,
    /// Extra / overriding hello fields (starts from the builder's `hello_field`s).
    pub(crate) hello_extra: Mutex<Document>,
    pub(crate) log: Mutex<VecDeque<CommandRecord>>,
    pub(crate) process_id: Mutex<ObjectId>,
    pub(crate) topology_counter: AtomicI64,
    pub(crate) wrong_signature: AtomicBool,
    pub(crate) total_conns: AtomicU64,
    pub(crate) open_conns: AtomicUsize,
    /// Connections a TLS server served in plain text (`TlsIdentity::allowing_plaintext`).
    pub(crate) plaintext_conns: AtomicU64,
    pub(crate) epoch: AtomicU64,
    pub(crate) live: Mutex<HashMap<u32, TcpStream>>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) scram_cache: Mutex<HashMap<ScramKey, SaltedEntry>>,
    pub(crate) next_conversation: AtomicI32,
}

/// (user, db, hash) → (salt, salted password).
pub(crate) type ScramKey = (String, String, ScramHash);
/// (salt, salted password).
pub(crate) type SaltedEntry = (Vec<u8>, Vec<u8>);

static NEXT_CONNECTION_ID: AtomicU32 = AtomicU32::new(1);

impl Shared {
    /// Bumps `topologyVersion.counter` (a state change clients should notice).
    pub(crate) fn bump_topology(&self) {
        self.topology_counter.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn record(&self, rec: CommandRecord) {
        let mut log = lock(&self.log);
        if log.len() >= MAX_LOG {
            log.pop_front();
        }
        log.push_back(rec);
    }
}

/// Configures and starts a [`FakeServer`].
#[derive(Debug)]
pub struct FakeServerBuilder {
    cfg: Config,
    wrong_signature: bool,
    single_rs: Option<String>,
    pub(crate) rs: Option<(Arc<Mutex<RsState>>, usize)>,
    pub(crate) store: Option<Arc<Mutex<Store>>>,
    pub(crate) listener: Option<TcpListener>,
}

impl Default for FakeServerBuilder {
    fn default() -> Self {
        FakeServerBuilder {
            cfg: Config {
                max_wire_version: 21,
                compressors: Vec::new(),
                users: Vec::new(),
                tls: None,
                fast: false,
                scram_iterations: None,
                max_connections: 1024,
                hello_extra: Document::new(),
            },
            wrong_signature: false,
            single_rs: None,
            rs: None,
            store: None,
            listener: None,
        }
    }
}

impl FakeServerBuilder {
    /// `maxWireVersion` in hello replies (default 21, MongoDB 7.0).
    pub fn max_wire_version(mut self, v: i32) -> Self {
        self.cfg.max_wire_version = v;
        self
    }

    /// Compressors the server accepts (negotiated from the client's hello `compression` list).
    pub fn compressors(mut self, c: &[Compressor]) -> Self {
        self.cfg.compressors = c.to_vec();
        self
    }

    /// Users; with any configured, commands need authentication.
    pub fn users(mut self, users: impl IntoIterator<Item = User>) -> Self {
        self.cfg.users.extend(users);
        self
    }

    /// Serve TLS with this identity.
    pub fn tls(mut self, identity: TlsIdentity) -> Self {
        self.cfg.tls = Some(identity);
        self
    }

    /// Benchmark mode: no command log, no fail point lookups, hello replies encoded once per
    /// connection and replayed with patched ids.
    pub fn fast_mode(mut self) -> Self {
        self.cfg.fast = true;
        self
    }

    /// PBKDF2 iteration count advertised for both SCRAM mechanisms, instead of mongod's defaults
    /// (`scramIterationCount` 10,000 for SCRAM-SHA-1, `scramSHA256IterationCount` 15,000 for
    /// SCRAM-SHA-256). 4096 is the minimum drivers accept.
    pub fn scram_iterations(mut self, i: u32) -> Self {
        self.cfg.scram_iterations = Some(i);
        self
    }

    /// Connections beyond this many open ones are closed on accept (default 1024).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.cfg.max_connections = n;
        self
    }

    /// An extra (or overriding) field in every hello / isMaster reply.
    pub fn hello_field(mut self, key: &str, value: impl Into<bson::Bson>) -> Self {
        self.cfg.hello_extra.insert(key, value.into());
        self
    }

    /// Start with the "send a wrong SCRAM server signature" switch on.
    pub fn wrong_server_signature(mut self, on: bool) -> Self {
        self.wrong_signature = on;
        self
    }

    /// Make this server a one-member replica set `name` (its own primary). For more members and
    /// elections use [`crate::ReplicaSet`].
    pub fn replica_set(mut self, name: &str) -> Self {
        self.single_rs = Some(name.to_string());
        self
    }

    /// Binds 127.0.0.1 on an ephemeral port and starts the listener thread.
    pub fn try_start(self) -> io::Result<FakeServer> {
        let listener = match self.listener {
            Some(l) => l,
            None => TcpListener::bind("127.0.0.1:0")?,
        };
        let addr = listener.local_addr()?;
        let rs = match (self.rs, self.single_rs) {
            (Some(rs), _) => Some(rs),
            (None, Some(name)) => {
                let hosts = vec![format!("127.0.0.1:{}", addr.port())];
                Some((Arc::new(Mutex::new(RsState::new(&name, hosts))), 0))
            }
            (None, None) => None,
        };
        let mut cfg = self.cfg;
        // Hello fields live in `Shared::hello_extra` from here on (they can change at runtime).
        let hello_extra = std::mem::take(&mut cfg.hello_extra);
        let shared = Arc::new(Shared {
            cfg,
            addr,
            store: self.store.unwrap_or_default(),
            rs,
            scripted: Mutex::new(Scripted::default()),
            hello_extra: Mutex::new(hello_extra),
            log: Mutex::new(VecDeque::new()),
            process_id: Mutex::new(ObjectId::new()),
            topology_counter: AtomicI64::new(0),
            wrong_signature: AtomicBool::new(self.wrong_signature),
            total_conns: AtomicU64::new(0),
            open_conns: AtomicUsize::new(0),
            plaintext_conns: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            scram_cache: Mutex::new(HashMap::new()),
            next_conversation: AtomicI32::new(1),
        });
        if let Some((rs, idx)) = &shared.rs {
            lock(rs).register(*idx, Arc::downgrade(&shared));
        }
        let server = FakeServer {
            shared,
            listening: Mutex::new(None),
        };
        server.listen(listener)?;
        Ok(server)
    }

    /// Like [`FakeServerBuilder::try_start`], panicking if the port cannot be bound (tests only).
    pub fn start(self) -> FakeServer {
        match self.try_start() {
            Ok(s) => s,
            Err(e) => panic!("anymongo-testkit: cannot start the fake server: {e}"),
        }
    }
}

struct Listening {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A running fake MongoDB server on 127.0.0.1. Dropping it shuts it down.
pub struct FakeServer {
    pub(crate) shared: Arc<Shared>,
    listening: Mutex<Option<Listening>>,
}

impl fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.shared.addr)
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    /// A builder with the defaults (standalone, maxWireVersion 21, no auth, no TLS).
    pub fn builder() -> FakeServerBuilder {
        FakeServerBuilder::default()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.shared.addr.port())
    }

    /// A connection string for this server: `directConnection=true` for a standalone,
    /// `replicaSet=<name>` for a replica-set member, plus `tls=true&tlsCAFile=..` with TLS.
    pub fn uri(&self) -> String {
        let mut params = Vec::new();
        match &self.shared.rs {
            Some((rs, _)) => params.push(format!("replicaSet={}", lock(rs).name)),
            None => params.push("directConnection=true".to_string()),
        }
        if let Some(tls) = &self.shared.cfg.tls {
            params.push("tls=true".to_string());
            params.push(format!("tlsCAFile={}", tls.ca_path.display()));
        }
        format!("mongodb://{}/?{}", self.host(), params.join("&"))
    }

    /// The TLS identity, when serving TLS.
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.shared.cfg.tls.as_ref()
    }

    /// Registers a handler for `name` (replacing an earlier one). Handlers run before the
    /// built-in behaviour and before the authentication check.
    pub fn on<F, R>(&self, name: &str, f: F)
    where
        F: Fn(&CommandContext) -> R + Send + Sync + 'static,
        R: Into<Reply>,
    {
        let h: Handler = Arc::new(move |ctx| f(ctx).into());
        lock(&self.shared.scripted)
            .handlers
            .insert(name.to_string(), h);
    }

    /// Removes the handler for `name`.
    pub fn remove_handler(&self, name: &str) {
        lock(&self.shared.scripted).handlers.remove(name);
    }

    /// Queues a one-shot reply for the next `name` command (queued replies go first, in order).
    pub fn queue_reply(&self, name: &str, reply: impl Into<Reply>) {
        lock(&self.shared.scripted)
            .queued
            .entry(name.to_string())
            .or_default()
            .push_back(reply.into());
    }

    /// Installs a fail point.
    pub fn fail_point(&self, fp: FailPoint) {
        lock(&self.shared.scripted)
            .fail_points
            .push(ActiveFailPoint::new(fp, false));
    }

    /// Removes every fail point.
    pub fn clear_fail_points(&self) {
        lock(&self.shared.scripted).fail_points.clear();
    }

    /// Sets (or overrides) a field of every later hello / isMaster reply, and bumps
    /// `topologyVersion.counter` so awaiting clients hear about it.
    pub fn set_hello_field(&self, key: &str, value: impl Into<bson::Bson>) {
        lock(&self.shared.hello_extra).insert(key, value.into());
        self.shared.bump_topology();
    }

    /// Removes a field set with [`FakeServer::set_hello_field`] (or the builder's `hello_field`).
    pub fn remove_hello_field(&self, key: &str) {
        lock(&self.shared.hello_extra).remove(key);
        self.shared.bump_topology();
    }

    /// Bumps `topologyVersion.counter` (wakes awaitable hellos).
    pub fn bump_topology_version(&self) {
        self.shared.bump_topology();
    }

    /// Turns the "send a wrong SCRAM server signature" switch on or off.
    pub fn set_wrong_server_signature(&self, on: bool) {
        self.shared.wrong_signature.store(on, Ordering::SeqCst);
    }

    /// Every command received, in order (bounded to the last 100 000; empty in fast mode).
    pub fn commands(&self) -> Vec<CommandRecord> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// The commands named `name`, in order.
    pub fn commands_named(&self, name: &str) -> Vec<CommandRecord> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect()
    }

    /// Forgets the command log.
    pub fn clear_commands(&self) {
        lock(&self.shared.log).clear();
    }

    /// Connections accepted since start.
    pub fn connection_count(&self) -> u64 {
        self.shared.total_conns.load(Ordering::SeqCst)
    }

    /// Connections accepted so far that a TLS server allowing plain text
    /// (`TlsIdentity::allowing_plaintext`) served without TLS.
    pub fn plaintext_connection_count(&self) -> u64 {
        self.shared.plaintext_conns.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open_conns.load(Ordering::SeqCst)
    }

    /// Inserts documents straight into the store (no command, no log).
    pub fn seed(&self, db: &str, coll: &str, docs: Vec<Document>) -> Result<(), CommandError> {
        let mut cmd = bson::doc! { "insert": coll, "documents": docs };
        let reply = lock(&self.shared.store).insert(db, &mut cmd, &[], true)?;
        match reply.get_array("writeErrors") {
            Ok(_) => Err(CommandError::new(
                11000,
                "DuplicateKey",
                "seed hit a duplicate _id",
            )),
            Err(_) => Ok(()),
        }
    }

    /// Number of documents in `db.coll`.
    pub fn document_count(&self, db: &str, coll: &str) -> usize {
        lock(&self.shared.store).len(db, coll)
    }

    /// The documents of `db.coll`, in insertion order.
    pub fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        lock(&self.shared.store).documents(db, coll)
    }

    /// Number of open server-side cursors.
    pub fn open_cursors(&self) -> usize {
        lock(&self.shared.store).open_cursors()
    }

    /// Whether the server is accepting connections.
    pub fn is_listening(&self) -> bool {
        lock(&self.listening).is_some()
    }

    fn listen(&self, listener: TcpListener) -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let stop2 = stop.clone();
        let epoch = shared.epoch.load(Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name(format!("testkit-accept-{}", self.shared.addr.port()))
            .spawn(move || accept_loop(shared, listener, stop2, epoch))?;
        *lock(&self.listening) = Some(Listening { stop, thread });
        Ok(())
    }

    /// Stops listening, closes every connection and joins their threads. Idempotent.
    pub fn kill(&self) {
        if let Some((rs, idx)) = &self.shared.rs {
            lock(rs).set_up(*idx, false);
        }
        let l = lock(&self.listening).take();
        if let Some(l) = l {
            l.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept with a connection of our own. Should that never succeed
            // (descriptor exhaustion), the listener thread is left to end with the process
            // rather than hang the caller.
            let woke = (0..50).any(|_| {
                let ok = TcpStream::connect_timeout(&self.shared.addr, Duration::from_millis(100))
                    .is_ok();
                if !ok {
                    std::thread::sleep(Duration::from_millis(10));
                }
                ok
            });
            if woke {
                let _ = l.thread.join();
            }
        }
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for (_, s) in lock(&self.shared.live).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Listens again on the same port after [`FakeServer::kill`], as a restarted process
    /// (a new `topologyVersion.processId`, counter 0).
    pub fn revive(&self) -> io::Result<()> {
        if self.is_listening() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.shared.addr)?;
        *lock(&self.shared.process_id) = ObjectId::new();
        self.shared.topology_counter.store(0, Ordering::SeqCst);
        self.listen(listener)?;
        if let Some((rs, idx)) = &self.shared.rs {
            lock(rs).set_up(*idx, true);
        }
        Ok(())
    }

    /// Shuts the server down (same as [`FakeServer::kill`]; also done on drop).
    pub fn shutdown(&self) {
        self.kill();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, stop: Arc<AtomicBool>, epoch: u64) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors or a reset before accept: back off briefly.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if shared.open_conns.load(Ordering::SeqCst) >= shared.cfg.max_connections {
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::SeqCst);
        shared.total_conns.fetch_add(1, Ordering::SeqCst);
        shared.open_conns.fetch_add(1, Ordering::SeqCst);
        lock(&shared.live).insert(id, clone);
        let s2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("testkit-conn-{id}"))
            .spawn(move || crate::conn::serve(s2, stream, id, epoch));
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(t) => threads.push(t),
            Err(_) => {
                lock(&shared.live).remove(&id);
                shared.open_conns.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}
