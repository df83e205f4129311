//! The whole connection path, on every runtime, against the testkit's fake server on 127.0.0.1:
//! cancellation safety of operations (pool invariants afterwards), the cmap-format spec files
//! through the async pool, the handshake (client metadata, OP_QUERY first, wire-version refusal,
//! connectTimeoutMS), SCRAM / PLAIN authentication, TLS verification switches, and compression.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use anymongo_core::bson::{doc, Bson, Document};
use anymongo_core::cmap::CmapEvent;
use anymongo_core::event::{CommandEvent, Event, EventHandler};
use anymongo_core::options::AuthMechanism;
use anymongo_core::rt::RuntimeExt;
use anymongo_core::sdam::{SdamEvent, ServerType};
use anymongo_core::testing::{
    run_cmap_format_async, run_cmap_format_async_with, skip_reason, CmapFormatTest,
};
use anymongo_core::{Client, ClientOptions, Error, ErrorKind};
use anymongo_testkit::{
    CommandRecord, FailPoint, FakeServer, FaultAction, Reply, Times, TlsIdentity, User,
};

use crate::{Env, Outcome};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every event a client emitted, in order.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn handler(&self) -> EventHandler {
        let events = self.0.clone();
        EventHandler::new(move |e| lock(&events).push(e.clone()))
    }

    fn cmap(&self) -> Vec<CmapEvent> {
        lock(&self.0)
            .iter()
            .filter_map(|e| match e {
                Event::Cmap(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn sdam(&self) -> Vec<SdamEvent> {
        lock(&self.0)
            .iter()
            .filter_map(|e| match e {
                Event::Sdam(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn command_connection_ids(&self) -> Vec<u64> {
        lock(&self.0)
            .iter()
            .filter_map(|e| match e {
                Event::Command(CommandEvent::Started(s)) => Some(s.connection_id),
                _ => None,
            })
            .collect()
    }

    fn clear(&self) {
        lock(&self.0).clear();
    }
}

/// A client for `uri` on the runtime under test, recording its events.
fn client_with_events(env: &Env, uri: &str) -> (Client, Recorder) {
    let options = ClientOptions::parse_without_srv_resolution(uri)
        .unwrap_or_else(|e| panic!("parse {uri}: {e}"));
    let recorder = Recorder::default();
    let client = Client::builder(options, env.rt.clone())
        .event_handler(recorder.handler())
        .build()
        .expect("build the client");
    (client, recorder)
}

fn client(env: &Env, uri: &str) -> Client {
    client_with_events(env, uri).0
}

/// Appends `&opts` to a fake server URI (which always has a `?`).
fn with(uri: &str, opts: &str) -> String {
    format!("{uri}&{opts}")
}

/// A small deterministic PRNG (splitmix64), so runs are reproducible from their seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Polls the inner future at most `polls` times; `None` if it was still pending then (the
/// future is dropped at that point, like an abandoned `select!` branch).
struct PollLimit<F: ?Sized> {
    fut: Pin<Box<F>>,
    left: u32,
}

impl<F: Future + ?Sized> Future for PollLimit<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        match self.fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if self.left == 0 => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits (up to ~10 s) until `done` holds, sleeping on the runtime between looks.
async fn eventually(env: &Env, what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        env.rt.sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for: {what}");
}

fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    match e.kind() {
        ErrorKind::Io(io) => Some(io.kind()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Cancellation safety
// ---------------------------------------------------------------------------------------------

const MAX_POOL: usize = 3;
const SEEDED_DOCS: i64 = 64;

/// The expected `v` of seeded document `k`, and its padding length (some replies are large, so
/// that a cancellation can land between two reads of one reply).
fn seeded(k: i64) -> (i64, usize) {
    (k * 7 + 1, (k as usize % 4) * 48 * 1024)
}

/// How many cancellation iterations to run per runtime (`ANYMONGO_CANCEL_ITERATIONS`).
fn cancel_iterations() -> u64 {
    std::env::var("ANYMONGO_CANCEL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2400)
}

#[derive(Debug, Default)]
struct CancelStats {
    completed: u64,
    cancelled: u64,
}

/// One worker: `iterations` operations, each either raced against a timer of random length or
/// dropped after a random number of polls. Every operation that completes must be correct.
async fn cancel_worker(
    env: Env,
    client: Client,
    worker: u64,
    iterations: u64,
    seed: u64,
) -> CancelStats {
    let mut rng = Rng(seed ^ worker.wrapping_mul(0x5851_f42d_4c95_7f2d));
    let coll = client.database("cancel").collection::<Document>("docs");
    let db = client.database("cancel");
    let mut stats = CancelStats::default();
    for i in 0..iterations {
        let kind = rng.below(3);
        let k = rng.below(SEEDED_DOCS as u64) as i64;
        let new_id = format!("w{worker}-{i}");
        let op: Pin<Box<dyn Future<Output = Result<(), String>> + Send>> = match kind {
            0 => {
                let fut = coll.find_one(doc! { "_id": k }).into_future();
                Box::pin(async move {
                    let found = fut.await.map_err(|e| format!("find_one: {e}"))?;
                    let found = found.ok_or_else(|| format!("find_one({k}) found nothing"))?;
                    let (v, pad) = seeded(k);
                    if found.get_i64("v").ok() != Some(v)
                        || found.get_str("pad").map(str::len).ok() != Some(pad)
                    {
                        return Err(format!("find_one({k}) returned the wrong document"));
                    }
                    Ok(())
                })
            }
            1 => {
                let id = new_id.clone();
                let fut = coll.insert_one(doc! { "_id": id.clone(), "w": worker as i64 });
                let fut = fut.into_future();
                Box::pin(async move {
                    let r = fut.await.map_err(|e| format!("insert_one: {e}"))?;
                    if r.inserted_id != Bson::String(id) {
                        return Err(format!("insert_one returned {:?}", r.inserted_id));
                    }
                    Ok(())
                })
            }
            _ => {
                let fut = db.run_command(doc! { "ping": 1 }).into_future();
                Box::pin(async move {
                    let r = fut.await.map_err(|e| format!("ping: {e}"))?;
                    match r.get("ok") {
                        Some(Bson::Double(v)) if *v == 1.0 => Ok(()),
                        Some(Bson::Int32(1)) | Some(Bson::Int64(1)) => Ok(()),
                        _ => Err(format!("ping replied {r}")),
                    }
                })
            }
        };
        let outcome = if rng.below(2) == 0 {
            // Race against a timer: 0..3 ms, sometimes 0 (cancel before the first byte).
            let micros = rng.below(3000);
            env.rt.timeout(Duration::from_micros(micros), op).await.ok()
        } else {
            let polls = 1 + rng.below(12) as u32;
            PollLimit {
                fut: op,
                left: polls,
            }
            .await
        };
        match outcome {
            Some(Ok(())) => stats.completed += 1,
            Some(Err(e)) => panic!("worker {worker} iteration {i} (seed {seed}): {e}"),
            None => stats.cancelled += 1,
        }
    }
    stats
}

/// Operations cancelled at random points thousands of times leave the pool sound: every
/// check-out is matched by a check-in, the pool never exceeds maxPoolSize, no half-read
/// connection is reused (every later operation on every pooled connection gets its own reply),
/// and the next operations succeed.
pub async fn cancellation_keeps_pool_sound(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    let uri = server.uri();
    cancellation_storm(env, server, uri, cancel_iterations()).await
}

/// The same storm over TLS, with SCRAM authentication and snappy compression: cancellation
/// also lands inside TLS records, compressed messages and authentication conversations.
pub async fn cancellation_over_tls_scram_and_compression(env: Env) -> Outcome {
    use anymongo_core::options::Compressor;
    let identity = TlsIdentity::generate().expect("identity");
    let server = FakeServer::builder()
        .tls(identity.clone())
        .users([User::new("alice", "admin", PASSWORD)])
        .compressors(&[Compressor::Snappy])
        .start();
    let uri = format!(
        "mongodb://alice:{PASSWORD}@{}/?directConnection=true&tls=true&tlsCAFile={}&compressors=snappy",
        server.host(),
        identity.ca_path.display()
    );
    cancellation_storm(env, server, uri, cancel_iterations() / 2).await
}

/// Runs the cancellation storm against `server` (reached with `base_uri`, which has a `?`).
async fn cancellation_storm(
    env: Env,
    server: FakeServer,
    base_uri: String,
    iterations: u64,
) -> Outcome {
    let docs: Vec<Document> = (0..SEEDED_DOCS)
        .map(|k| {
            let (v, pad) = seeded(k);
            doc! { "_id": k, "v": v, "pad": "x".repeat(pad) }
        })
        .collect();
    server.seed("cancel", "docs", docs).expect("seed");
    // Delay a third of the replies by up to 3 ms, so cancellation lands while the server is
    // "working" as well as mid-write and mid-read.
    let delays = Arc::new(Mutex::new(Rng(0xdecafbad)));
    for name in ["find", "insert", "ping"] {
        let delays = delays.clone();
        server.on(name, move |_| {
            let mut rng = lock(&delays);
            if rng.below(3) == 0 {
                Reply::Fault(FaultAction::Delay(Duration::from_micros(rng.below(3000))))
            } else {
                Reply::Default
            }
        });
    }
    let uri = with(
        &base_uri,
        &format!("maxPoolSize={MAX_POOL}&heartbeatFrequencyMS=60000&appName=cancel"),
    );
    let (client, recorder) = client_with_events(&env, &uri);
    // Warm up: the monitor has found the server and a connection works.
    client
        .database("cancel")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("first ping");

    let seed = 0x00c0_ffee_u64 ^ env.harness.name.len() as u64;
    let workers = 4u64;
    let per_worker = iterations.div_ceil(workers);
    let stats = futures::future::join_all(
        (0..workers).map(|w| cancel_worker(env.clone(), client.clone(), w, per_worker, seed)),
    )
    .await;
    let completed: u64 = stats.iter().map(|s| s.completed).sum();
    let cancelled: u64 = stats.iter().map(|s| s.cancelled).sum();
    assert!(
        completed > 0 && cancelled > 0,
        "the run must both complete and cancel operations: {completed} completed, {cancelled} cancelled"
    );

    // Connections opened for cancelled check-outs finish in the background: wait until none is
    // pending (created, but neither ready nor closed).
    let pending = |events: &[CmapEvent]| {
        let mut open = BTreeSet::new();
        for e in events {
            match e {
                CmapEvent::ConnectionCreated { connection_id, .. } => {
                    open.insert(*connection_id);
                }
                CmapEvent::ConnectionReady { connection_id, .. }
                | CmapEvent::ConnectionClosed { connection_id, .. } => {
                    open.remove(connection_id);
                }
                _ => {}
            }
        }
        open.len()
    };
    eventually(&env, "no connection being established", || {
        pending(&recorder.cmap()) == 0
    })
    .await;

    // Invariants over the whole event history.
    let events = recorder.cmap();
    let mut out: BTreeMap<u64, i64> = BTreeMap::new();
    let mut live: BTreeSet<u64> = BTreeSet::new();
    let mut max_live = 0usize;
    for e in &events {
        match e {
            CmapEvent::ConnectionCheckedOut { connection_id, .. } => {
                let n = out.entry(*connection_id).or_default();
                *n += 1;
                assert_eq!(
                    *n, 1,
                    "connection {connection_id} checked out twice at once"
                );
            }
            CmapEvent::ConnectionCheckedIn { connection_id, .. } => {
                let n = out.entry(*connection_id).or_default();
                *n -= 1;
                assert_eq!(*n, 0, "connection {connection_id} checked in while not out");
            }
            CmapEvent::ConnectionCreated { connection_id, .. } => {
                live.insert(*connection_id);
                max_live = max_live.max(live.len());
            }
            CmapEvent::ConnectionClosed { connection_id, .. } => {
                live.remove(connection_id);
            }
            CmapEvent::PoolCleared { .. } => {
                panic!("cancellation must not clear the pool (no operation failed)")
            }
            _ => {}
        }
    }
    let closed_mid_operation = events
        .iter()
        .filter(|e| {
            matches!(e, CmapEvent::ConnectionClosed { reason, .. }
                if *reason == anymongo_core::cmap::ConnectionClosedReason::Error)
        })
        .count();
    let check_outs = events
        .iter()
        .filter(|e| matches!(e, CmapEvent::ConnectionCheckOutStarted { .. }))
        .count();
    let checked_out = events
        .iter()
        .filter(|e| matches!(e, CmapEvent::ConnectionCheckedOut { .. }))
        .count();
    println!(
        "  cancellation/{}: {completed} completed, {cancelled} cancelled ({} abandoned while \
         waiting for a connection, {closed_mid_operation} connections closed mid-exchange)",
        env.harness.name,
        check_outs - checked_out
    );
    // The run must have cancelled operations in flight, not only in the queue.
    assert!(
        closed_mid_operation > 0,
        "no operation was cancelled mid-exchange"
    );
    let still_out: Vec<_> = out.iter().filter(|(_, n)| **n != 0).collect();
    assert!(still_out.is_empty(), "never checked in: {still_out:?}");
    assert!(
        max_live <= MAX_POOL,
        "{max_live} connections at once, maxPoolSize is {MAX_POOL}"
    );
    // The server agrees: at most the pool plus the monitor's connections (the monitor and, when
    // it streams, its RTT connection) are open, once it has noticed the ones the client closed.
    eventually(
        &env,
        "the server sees at most maxPoolSize + 2 connections",
        || server.open_connections() <= MAX_POOL + 2,
    )
    .await;

    // Every pooled connection now serves an operation and gets its own reply: hold them all at
    // once (a slow ping each), so the pool must hand out every idle connection.
    server.on("ping", |ctx| {
        if ctx.command.contains_key("slow") {
            Reply::Fault(FaultAction::Delay(Duration::from_millis(50)))
        } else {
            Reply::Default
        }
    });
    let pooled = live.clone();
    recorder.clear();
    let db = client.database("cancel");
    let pings = futures::future::join_all((0..MAX_POOL).map(|_| {
        db.run_command(doc! { "ping": 1, "slow": true })
            .into_future()
    }))
    .await;
    for r in pings {
        r.expect("ping on a pooled connection");
    }
    let used: BTreeSet<u64> = recorder.command_connection_ids().into_iter().collect();
    assert!(
        pooled.is_subset(&used),
        "pooled connections {pooled:?}, used {used:?}"
    );
    // And ordinary operations on them return the right documents.
    let coll = db.collection::<Document>("docs");
    for k in 0..(MAX_POOL as i64 * 3) {
        let found = coll
            .find_one(doc! { "_id": k })
            .await
            .expect("find_one after the storm")
            .expect("seeded document");
        assert_eq!(found.get_i64("v").ok(), Some(seeded(k).0), "{k}");
    }
    let inserted: usize = server.document_count("cancel", "docs") - SEEDED_DOCS as usize;
    assert!(inserted as u64 <= iterations, "{inserted} inserts");
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// cmap-format spec files through the async pool
// ---------------------------------------------------------------------------------------------

fn specs_root() -> PathBuf {
    match std::env::var_os("ANYMONGO_SPECS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/specs")),
    }
}

/// Every cmap-format file through the async pool on this runtime (files that need a live
/// server are skipped with their reason, printed).
pub async fn cmap_format_async_pool(env: Env) -> Outcome {
    let dir = specs_root().join("connection-monitoring-and-pooling/tests/cmap-format");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Outcome::Skip("spec folder connection-monitoring-and-pooling/tests/cmap-format absent (set ANYMONGO_SPECS)");
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no cmap-format files in {}",
        dir.display()
    );
    let (mut ran, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let test: CmapFormatTest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = match (&test.fail_point, skip_reason(&test)) {
            (None, None) => run_cmap_format_async(env.rt.clone(), &test).await,
            // Integration files: a real pool (TCP + handshake) to the fake server, which
            // carries the file's fail point.
            (Some(fp), _) => run_integration(&env, &test, fp).await,
            (None, Some(why)) => {
                skipped.push(format!("{name}: {why}"));
                continue;
            }
        };
        ran += 1;
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    for s in &skipped {
        println!("  cmap-format/{}: SKIP {s}", env.harness.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran > 0, "every cmap-format file was skipped");
    Outcome::Pass
}

/// Runs an integration cmap-format file: the pool opens real connections (TCP, handshake with
/// the file's appName) to a fake server on which the file's fail point is installed.
async fn run_integration(
    env: &Env,
    test: &CmapFormatTest,
    fail_point: &Document,
) -> Result<(), String> {
    use anymongo_core::auth::ScramCache;
    use anymongo_core::conn::{Establisher, HandshakeRequest};
    use anymongo_core::options::ServerAddress;
    let fp = FailPoint::from_configure_command(fail_point)
        .map_err(|e| format!("fail point: {e:?}"))?
        .ok_or("the fail point is off")?;
    let server = FakeServer::builder().start();
    server.fail_point(fp);
    let address = ServerAddress::tcp("127.0.0.1", server.addr().port());
    let establisher = Establisher::new(
        env.rt.clone(),
        address.clone(),
        Some(Duration::from_secs(10)),
        None,
        None,
        HandshakeRequest {
            app_name: test.pool_options.app_name.clone(),
            runtime_name: env.rt.name().to_string(),
            ..Default::default()
        },
        None,
        ScramCache::default(),
    );
    let result = run_cmap_format_async_with(env.rt.clone(), test, establisher, address).await;
    drop(server);
    result
}

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

/// The records of each connection, in order, by server connection id.
fn by_connection(records: &[CommandRecord]) -> BTreeMap<u32, Vec<CommandRecord>> {
    let mut map: BTreeMap<u32, Vec<CommandRecord>> = BTreeMap::new();
    for r in records {
        map.entry(r.connection_id).or_default().push(r.clone());
    }
    map
}

/// Every connection starts with a legacy OP_QUERY `isMaster` carrying the client metadata
/// (driver anymongo, the runtime's name in `platform`, os type and architecture, appName) and
/// the compressor list; later commands are OP_MSG.
pub async fn handshake_metadata(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    let uri = with(
        &server.uri(),
        "appName=conn-conformance&compressors=zstd,snappy,zlib",
    );
    let client = client(&env, &uri);
    let coll = client.database("hs").collection::<Document>("c");
    coll.insert_one(doc! { "x": 1 }).await.expect("insert");
    client.shutdown().await;

    let conns = by_connection(&server.commands());
    assert!(
        conns.len() >= 2,
        "expected a monitor and a pool connection: {conns:?}"
    );
    let mut saw_insert = false;
    for (id, records) in &conns {
        let first = &records[0];
        assert!(
            first.op_query,
            "connection {id}: first command not OP_QUERY"
        );
        assert_eq!(first.name, "isMaster", "connection {id}");
        assert_eq!(first.db, "admin");
        assert_eq!(first.command.get_bool("helloOk").ok(), Some(true));
        let client_md = first.command.get_document("client").expect("client");
        let driver = client_md.get_document("driver").expect("driver");
        assert_eq!(driver.get_str("name").ok(), Some("anymongo"));
        assert!(driver.get_str("version").is_ok_and(|v| !v.is_empty()));
        let platform = client_md.get_str("platform").expect("platform");
        assert!(
            platform.contains(env.rt.name()),
            "platform {platform:?} lacks {}",
            env.rt.name()
        );
        let os = client_md.get_document("os").expect("os");
        assert!(os.get_str("type").is_ok_and(|t| !t.is_empty()), "{os}");
        assert_eq!(
            os.get_str("architecture").ok(),
            Some(std::env::consts::ARCH)
        );
        assert_eq!(
            client_md
                .get_document("application")
                .and_then(|a| a.get_str("name"))
                .ok(),
            Some("conn-conformance")
        );
        let compression: Vec<&str> = first
            .command
            .get_array("compression")
            .expect("compression")
            .iter()
            .filter_map(Bson::as_str)
            .collect();
        assert_eq!(compression, ["zstd", "snappy", "zlib"]);
        for later in &records[1..] {
            assert!(
                !later.op_query,
                "connection {id}: {} after the handshake was OP_QUERY",
                later.name
            );
            saw_insert |= later.name == "insert";
        }
    }
    assert!(saw_insert, "the insert was not seen");
    Outcome::Pass
}

async fn expect_incompatible(env: &Env, server: &FakeServer, wanted: &str) {
    let uri = with(&server.uri(), "serverSelectionTimeoutMS=20000");
    let client = client(env, &uri);
    let err = client
        .database("wire")
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await
        .expect_err("an incompatible server must be refused");
    assert!(
        matches!(err.kind(), ErrorKind::IncompatibleServer { .. }),
        "expected IncompatibleServer, got {err}"
    );
    assert!(err.to_string().contains(wanted), "{err}");
    let description = client.topology_description();
    assert!(!description.compatible, "{description:?}");
    client.shutdown().await;
}

/// A server too old (maxWireVersion 5) is refused with IncompatibleServer (not a selection
/// timeout).
pub async fn wire_version_too_old(env: Env) -> Outcome {
    let server = FakeServer::builder().max_wire_version(5).start();
    expect_incompatible(&env, &server, "wire version 5").await;
    Outcome::Pass
}

/// A server too new (minWireVersion 99) is refused with IncompatibleServer.
pub async fn wire_version_too_new(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .max_wire_version(100)
        .hello_field("minWireVersion", 99)
        .start();
    expect_incompatible(&env, &server, "99").await;
    Outcome::Pass
}

/// A handshake that takes longer than connectTimeoutMS fails the check-out with a timeout.
pub async fn connect_timeout_bounds_handshake(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    // The monitor's handshake (the first isMaster) goes through; every later one (the pool's)
    // is delayed far beyond connectTimeoutMS. The monitor then uses OP_MSG hello.
    server.fail_point(FailPoint::new(
        Times::Skip(1),
        ["isMaster"],
        FaultAction::Delay(Duration::from_secs(5)),
    ));
    let uri = with(
        &server.uri(),
        "connectTimeoutMS=300&heartbeatFrequencyMS=60000",
    );
    let (client, recorder) = client_with_events(&env, &uri);
    let err = client
        .database("ct")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("the handshake cannot finish in time");
    assert_eq!(
        io_kind(&err),
        Some(std::io::ErrorKind::TimedOut),
        "expected a timeout, got {err}"
    );
    assert!(
        recorder
            .cmap()
            .iter()
            .any(|e| matches!(e, CmapEvent::ConnectionCheckOutFailed { .. })),
        "no ConnectionCheckOutFailed"
    );
    // CMAP backpressure: a network timeout during the hello is labelled as a possible overload,
    // and (SDAM) it neither clears the pool nor marks the server Unknown (the error is handed
    // to discovery before the operation returns).
    for label in ["SystemOverloadedError", "RetryableError"] {
        assert!(
            err.contains_label(label),
            "{label} missing: {:?}",
            err.labels()
        );
    }
    assert!(
        !recorder
            .cmap()
            .iter()
            .any(|e| matches!(e, CmapEvent::PoolCleared { .. })),
        "a handshake timeout must not clear the pool"
    );
    assert!(
        !recorder.sdam().iter().any(|e| matches!(e,
            SdamEvent::ServerDescriptionChanged { new, .. } if new.server_type == ServerType::Unknown)),
        "a handshake timeout must not mark the server Unknown"
    );
    client.shutdown().await;
    Outcome::Pass
}

/// A monitor whose handshake exceeds connectTimeoutMS reports the server unreachable: server
/// selection fails (after serverSelectionTimeoutMS) naming the timeout, and nothing hangs.
pub async fn connect_timeout_bounds_monitor(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    server.fail_point(FailPoint::new(
        Times::AlwaysOn,
        ["isMaster", "hello"],
        FaultAction::Delay(Duration::from_secs(5)),
    ));
    let uri = with(
        &server.uri(),
        "connectTimeoutMS=200&serverSelectionTimeoutMS=1000",
    );
    let client = client(&env, &uri);
    let err = ping(&client).await.expect_err("no server can be selected");
    assert!(
        matches!(err.kind(), ErrorKind::ServerSelection { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("timed out") || text.contains("timeout"),
        "the selection error does not name the timeout: {text}"
    );
    client.shutdown().await;
    Outcome::Pass
}

/// A reply slower than socketTimeoutMS fails the operation with a network timeout; the
/// connection (whose reply is still on its way) is closed, not pooled; the next operation works
/// on another connection; and (SDAM) a timeout after the handshake neither clears the pool nor
/// marks the server Unknown.
pub async fn socket_timeout_closes_connection(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    let uri = with(
        &server.uri(),
        "socketTimeoutMS=200&heartbeatFrequencyMS=60000",
    );
    let (client, recorder) = client_with_events(&env, &uri);
    ping(&client).await.expect("first ping");
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["ping"],
        FaultAction::Delay(Duration::from_secs(2)),
    ));
    recorder.clear();
    let err = ping(&client).await.expect_err("the reply is too slow");
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::TimedOut), "{err}");
    let slow = *recorder
        .command_connection_ids()
        .first()
        .expect("the ping's connection");
    let cmap = recorder.cmap();
    assert!(
        cmap.iter().any(|e| matches!(e,
            CmapEvent::ConnectionClosed { connection_id, .. } if *connection_id == slow)),
        "connection {slow} was not closed"
    );
    assert!(
        !cmap
            .iter()
            .any(|e| matches!(e, CmapEvent::PoolCleared { .. })),
        "a socket timeout must not clear the pool"
    );
    recorder.clear();
    let reply = ping(&client).await.expect("the next ping");
    assert!(reply.contains_key("ok"), "{reply}");
    assert!(!recorder.command_connection_ids().contains(&slow));
    client.shutdown().await;
    Outcome::Pass
}

/// A reply cut short, garbage, an oversized header or a closed socket: the operation fails with
/// a typed error (I/O for a closed socket, an invalid response for bytes that are no message),
/// is not retried, the connection is closed rather than pooled, and the next operation works.
pub async fn broken_replies_never_reach_the_pool(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    let uri = with(&server.uri(), "heartbeatFrequencyMS=60000");
    let (client, recorder) = client_with_events(&env, &uri);
    ping(&client).await.expect("first ping");
    for (fault, io) in [
        (FaultAction::CloseAfterHalf, true),
        (FaultAction::Garbage, false),
        (FaultAction::OversizedHeader, false),
        (FaultAction::CloseBeforeReply, true),
    ] {
        recorder.clear();
        let pings_before = server.commands_named("ping").len();
        server.fail_point(FailPoint::new(Times::N(1), ["ping"], fault.clone()));
        let err = ping(&client).await.expect_err("a broken reply must fail");
        if io {
            assert!(matches!(err.kind(), ErrorKind::Io(_)), "{fault:?}: {err}");
        } else {
            assert!(
                matches!(err.kind(), ErrorKind::InvalidResponse { .. }),
                "{fault:?}: {err}"
            );
        }
        assert_eq!(
            server.commands_named("ping").len(),
            pings_before + 1,
            "{fault:?}: a ping is not retried"
        );
        let used = recorder.command_connection_ids();
        let broken = *used.first().expect("the ping's connection");
        let cmap = recorder.cmap();
        assert!(
            cmap.iter().any(|e| matches!(e,
                CmapEvent::ConnectionClosed { connection_id, .. } if *connection_id == broken)),
            "{fault:?}: connection {broken} was not closed"
        );
        recorder.clear();
        ping(&client).await.expect("the next ping");
        let next = recorder.command_connection_ids();
        assert!(
            !next.contains(&broken),
            "{fault:?}: the broken connection {broken} was reused"
        );
    }
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

const PASSWORD: &str = "s3cret-Pa55word";

fn auth_uri(server: &FakeServer, user: &str, password: &str, opts: &str) -> String {
    let mut uri = format!(
        "mongodb://{user}:{password}@{}/?directConnection=true&heartbeatFrequencyMS=60000",
        server.host()
    );
    if !opts.is_empty() {
        uri.push('&');
        uri.push_str(opts);
    }
    uri
}

/// Inserts and reads back one document (both need an authenticated connection).
async fn authenticated_round_trip(client: &Client) -> anymongo_core::Result<()> {
    let coll = client.database("authdb").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 1, "x": "y" }).await?;
    let found = coll.find_one(doc! { "_id": 1 }).await?;
    assert_eq!(
        found.and_then(|d| d.get_str("x").ok().map(str::to_string)),
        Some("y".to_string())
    );
    Ok(())
}

/// The pool connection's handshake (the isMaster that carried `speculativeAuthenticate`).
fn speculative_hellos(server: &FakeServer) -> Vec<CommandRecord> {
    server
        .commands_named("isMaster")
        .into_iter()
        .filter(|r| r.command.contains_key("speculativeAuthenticate"))
        .collect()
}

/// SCRAM-SHA-256, negotiated (no authMechanism): saslSupportedMechs is asked, speculative
/// authentication is used, so no separate saslStart is sent.
pub async fn scram_sha256_negotiated_speculative(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .users([User::new("alice", "admin", PASSWORD)])
        .start();
    let client = client(&env, &auth_uri(&server, "alice", PASSWORD, ""));
    authenticated_round_trip(&client).await.expect("round trip");
    client.shutdown().await;
    let hellos = speculative_hellos(&server);
    assert!(!hellos.is_empty(), "no speculative handshake");
    for h in &hellos {
        assert_eq!(
            h.command.get_str("saslSupportedMechs").ok(),
            Some("admin.alice")
        );
        let spec = h.command.get_document("speculativeAuthenticate").unwrap();
        assert_eq!(spec.get_str("mechanism").ok(), Some("SCRAM-SHA-256"));
    }
    assert!(
        server.commands_named("saslStart").is_empty(),
        "speculative authentication worked, yet saslStart was sent"
    );
    assert!(!server.commands_named("saslContinue").is_empty());
    Outcome::Pass
}

/// SCRAM-SHA-1 requested explicitly: speculative, no saslStart.
pub async fn scram_sha1_explicit_speculative(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .users([User::new("alice", "admin", PASSWORD)])
        .start();
    let uri = auth_uri(&server, "alice", PASSWORD, "authMechanism=SCRAM-SHA-1");
    let client = client(&env, &uri);
    authenticated_round_trip(&client).await.expect("round trip");
    client.shutdown().await;
    let hellos = speculative_hellos(&server);
    assert!(!hellos.is_empty(), "no speculative handshake");
    for h in &hellos {
        let spec = h.command.get_document("speculativeAuthenticate").unwrap();
        assert_eq!(spec.get_str("mechanism").ok(), Some("SCRAM-SHA-1"));
    }
    assert!(server.commands_named("saslStart").is_empty());
    Outcome::Pass
}

/// A user that only has SCRAM-SHA-1: the speculative SCRAM-SHA-256 attempt is refused, the
/// driver negotiates SCRAM-SHA-1 from saslSupportedMechs and runs a full conversation.
pub async fn scram_sha1_negotiated(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .users([User::new("carol", "admin", PASSWORD).with_mechanisms(&[AuthMechanism::ScramSha1])])
        .start();
    let client = client(&env, &auth_uri(&server, "carol", PASSWORD, ""));
    authenticated_round_trip(&client).await.expect("round trip");
    client.shutdown().await;
    let starts = server.commands_named("saslStart");
    assert!(
        !starts.is_empty(),
        "no saslStart after a failed speculation"
    );
    for s in &starts {
        assert_eq!(s.command.get_str("mechanism").ok(), Some("SCRAM-SHA-1"));
    }
    Outcome::Pass
}

/// A wrong password is an authentication error (no hang, no panic), its message does not
/// contain the password, and discovery marks the server Unknown and clears its pool.
pub async fn scram_wrong_password(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .users([User::new("alice", "admin", PASSWORD)])
        .start();
    let wrong = "Wr0ng-Pa55word-xyz";
    for mech in [
        "",
        "authMechanism=SCRAM-SHA-1",
        "authMechanism=SCRAM-SHA-256",
    ] {
        let uri = auth_uri(&server, "alice", wrong, mech);
        let (client, recorder) = client_with_events(&env, &uri);
        let err = authenticated_round_trip(&client)
            .await
            .expect_err("a wrong password must fail");
        assert!(
            matches!(err.kind(), ErrorKind::Authentication { .. }),
            "{mech}: expected an authentication error, got {err}"
        );
        assert!(
            !err.contains_label("SystemOverloadedError"),
            "{mech}: authentication errors are no sign of overload: {:?}",
            err.labels()
        );
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(wrong),
            "the error shows the password: {shown}"
        );
        // SDAM: an authentication error marks the server Unknown and clears its pool.
        eventually(&env, "the pool is cleared", || {
            recorder
                .cmap()
                .iter()
                .any(|e| matches!(e, CmapEvent::PoolCleared { .. }))
        })
        .await;
        let marked_unknown = recorder.sdam().iter().any(|e| {
            matches!(e, SdamEvent::ServerDescriptionChanged { previous, new, .. }
                if previous.server_type != ServerType::Unknown
                    && new.server_type == ServerType::Unknown)
        });
        assert!(marked_unknown, "{mech}: the server was not marked Unknown");
        client.shutdown().await;
    }
    Outcome::Pass
}

/// A wrong server signature in the last SCRAM step is an authentication error.
pub async fn scram_wrong_server_signature(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .users([User::new("alice", "admin", PASSWORD)])
        .start();
    server.set_wrong_server_signature(true);
    for mech in ["authMechanism=SCRAM-SHA-1", "authMechanism=SCRAM-SHA-256"] {
        let client = client(&env, &auth_uri(&server, "alice", PASSWORD, mech));
        let err = authenticated_round_trip(&client)
            .await
            .expect_err("a forged server signature must be refused");
        assert!(
            matches!(err.kind(), ErrorKind::Authentication { .. }),
            "{mech}: {err}"
        );
        assert!(!err.to_string().contains(PASSWORD), "{err}");
        client.shutdown().await;
    }
    server.set_wrong_server_signature(false);
    let client = client(&env, &auth_uri(&server, "alice", PASSWORD, ""));
    authenticated_round_trip(&client)
        .await
        .expect("honest server");
    client.shutdown().await;
    Outcome::Pass
}

/// PLAIN against `$external`.
pub async fn plain_auth(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .users([User::new("bob", "$external", PASSWORD).with_mechanisms(&[AuthMechanism::Plain])])
        .start();
    let uri = auth_uri(&server, "bob", PASSWORD, "authMechanism=PLAIN");
    let client = client(&env, &uri);
    authenticated_round_trip(&client).await.expect("PLAIN");
    client.shutdown().await;
    let starts = server.commands_named("saslStart");
    let speculative = speculative_hellos(&server);
    assert!(
        !starts.is_empty() || !speculative.is_empty(),
        "PLAIN never authenticated"
    );
    for s in &starts {
        assert_eq!(s.command.get_str("mechanism").ok(), Some("PLAIN"));
        assert_eq!(s.db, "$external");
    }
    let uri = auth_uri(&server, "bob", "nope", "authMechanism=PLAIN");
    let client = client_with_events(&env, &uri).0;
    let err = authenticated_round_trip(&client)
        .await
        .expect_err("wrong PLAIN password");
    assert!(
        matches!(err.kind(), ErrorKind::Authentication { .. }),
        "{err}"
    );
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A TLS client for `host:port` of `server` with extra options.
fn tls_uri(server: &FakeServer, host: &str, ca: &TlsIdentity, opts: &str) -> String {
    let mut uri = format!(
        "mongodb://{host}:{}/?directConnection=true&tls=true&tlsCAFile={}&serverSelectionTimeoutMS=1500",
        server.addr().port(),
        ca.ca_path.display()
    );
    if !opts.is_empty() {
        uri.push('&');
        uri.push_str(opts);
    }
    uri
}

async fn ping(client: &Client) -> anymongo_core::Result<Document> {
    client.database("tls").run_command(doc! { "ping": 1 }).await
}

async fn tls_ok(env: &Env, uri: &str) {
    let client = client(env, uri);
    ping(&client).await.unwrap_or_else(|e| panic!("{uri}: {e}"));
    client.shutdown().await;
}

async fn tls_refused(env: &Env, uri: &str, hint: &str) {
    let client = client(env, uri);
    let err = ping(&client)
        .await
        .expect_err("the TLS handshake must be refused");
    let text = err.to_string();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Tls { .. } | ErrorKind::ServerSelection { .. }
        ),
        "{uri}: unexpected error kind: {text}"
    );
    assert!(
        text.to_lowercase().contains(hint),
        "{uri}: the error does not explain ({hint}): {text}"
    );
    client.shutdown().await;
}

/// TLS with the right CA works by IP and by name; a wrong CA is refused.
pub async fn tls_verifies_ca(env: Env) -> Outcome {
    let identity = TlsIdentity::generate().expect("identity");
    let server = FakeServer::builder().tls(identity.clone()).start();
    let other = TlsIdentity::generate().expect("other CA");
    tls_ok(&env, &server.uri()).await;
    tls_ok(&env, &tls_uri(&server, "127.0.0.1", &identity, "")).await;
    tls_ok(&env, &tls_uri(&server, "localhost", &identity, "")).await;
    tls_refused(
        &env,
        &tls_uri(&server, "127.0.0.1", &other, ""),
        "certificate",
    )
    .await;
    // Allowing invalid hostnames does not allow an untrusted certificate.
    tls_refused(
        &env,
        &tls_uri(
            &server,
            "127.0.0.1",
            &other,
            "tlsAllowInvalidHostnames=true",
        ),
        "certificate",
    )
    .await;
    // Allowing invalid certificates, or tlsInsecure, does.
    tls_ok(
        &env,
        &tls_uri(
            &server,
            "127.0.0.1",
            &other,
            "tlsAllowInvalidCertificates=true",
        ),
    )
    .await;
    tls_ok(
        &env,
        &tls_uri(&server, "127.0.0.1", &other, "tlsInsecure=true"),
    )
    .await;
    Outcome::Pass
}

/// A certificate for another name is refused unless hostnames (or everything) may be invalid.
pub async fn tls_verifies_hostname(env: Env) -> Outcome {
    let identity = TlsIdentity::generate_for(&["db.example.test"]).expect("identity");
    let server = FakeServer::builder().tls(identity.clone()).start();
    tls_refused(
        &env,
        &tls_uri(&server, "127.0.0.1", &identity, ""),
        "certificate",
    )
    .await;
    tls_refused(
        &env,
        &tls_uri(&server, "localhost", &identity, ""),
        "certificate",
    )
    .await;
    tls_ok(
        &env,
        &tls_uri(
            &server,
            "127.0.0.1",
            &identity,
            "tlsAllowInvalidHostnames=true",
        ),
    )
    .await;
    tls_ok(
        &env,
        &tls_uri(
            &server,
            "localhost",
            &identity,
            "tlsAllowInvalidHostnames=true",
        ),
    )
    .await;
    tls_ok(
        &env,
        &tls_uri(
            &server,
            "127.0.0.1",
            &identity,
            "tlsAllowInvalidCertificates=true",
        ),
    )
    .await;
    tls_ok(
        &env,
        &tls_uri(&server, "localhost", &identity, "tlsInsecure=true"),
    )
    .await;
    Outcome::Pass
}

/// A plain-TCP client against a TLS server fails (no hang).
pub async fn tls_required_by_server(env: Env) -> Outcome {
    let identity = TlsIdentity::generate().expect("identity");
    let server = FakeServer::builder().tls(identity).start();
    let uri = format!(
        "mongodb://{}/?directConnection=true&serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
        server.host()
    );
    let client = client(&env, &uri);
    ping(&client)
        .await
        .expect_err("plain TCP to a TLS server must fail");
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------------------

async fn compression_round_trip(
    env: &Env,
    server_side: anymongo_core::options::Compressor,
    uri_opts: &str,
    wire_id: u8,
) {
    let server = FakeServer::builder()
        .compressors(&[server_side])
        .users([User::new("alice", "admin", PASSWORD)])
        .start();
    let uri = auth_uri(&server, "alice", PASSWORD, uri_opts);
    let client = client(env, &uri);
    let coll = client.database("comp").collection::<Document>("c");
    let big = "compress me ".repeat(2000);
    coll.insert_one(doc! { "_id": 1, "text": big.clone() })
        .await
        .expect("insert");
    let found = coll
        .find_one(doc! { "_id": 1 })
        .await
        .expect("find")
        .expect("the document");
    assert_eq!(found.get_str("text").ok(), Some(big.as_str()));
    client.shutdown().await;

    for name in ["insert", "find"] {
        let records = server.commands_named(name);
        assert!(!records.is_empty(), "{uri_opts}: no {name}");
        for r in records {
            assert_eq!(
                r.compressor_id,
                Some(wire_id),
                "{uri_opts}: {name} was not compressed with id {wire_id}"
            );
        }
    }
    for name in ["isMaster", "hello", "saslStart", "saslContinue"] {
        for r in server.commands_named(name) {
            assert_eq!(
                r.compressor_id, None,
                "{uri_opts}: {name} must never be compressed"
            );
        }
    }
    assert!(
        !server.commands_named("saslContinue").is_empty(),
        "{uri_opts}: the client did not authenticate"
    );
}

/// snappy: commands compressed, handshake and authentication not.
pub async fn compression_snappy(env: Env) -> Outcome {
    use anymongo_core::options::Compressor;
    compression_round_trip(&env, Compressor::Snappy, "compressors=snappy", 1).await;
    Outcome::Pass
}

/// zlib with a level: commands compressed, handshake and authentication not.
pub async fn compression_zlib(env: Env) -> Outcome {
    use anymongo_core::options::Compressor;
    for level in [-1, 1, 9] {
        compression_round_trip(
            &env,
            Compressor::Zlib { level: None },
            &format!("compressors=zlib&zlibCompressionLevel={level}"),
            2,
        )
        .await;
    }
    Outcome::Pass
}

/// zstd: commands compressed, handshake and authentication not.
pub async fn compression_zstd(env: Env) -> Outcome {
    use anymongo_core::options::Compressor;
    compression_round_trip(&env, Compressor::Zstd, "compressors=zstd", 3).await;
    Outcome::Pass
}

/// The client prefers its own order among the compressors the server accepts.
pub async fn compression_negotiates_first_shared(env: Env) -> Outcome {
    use anymongo_core::options::Compressor;
    let server = FakeServer::builder()
        .compressors(&[Compressor::Snappy, Compressor::Zstd])
        .start();
    let uri = with(&server.uri(), "compressors=zlib,zstd,snappy");
    let client = client(&env, &uri);
    ping(&client).await.expect("ping");
    client
        .database("comp")
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await
        .expect("insert");
    client.shutdown().await;
    let inserts = server.commands_named("insert");
    assert!(!inserts.is_empty());
    for r in inserts {
        assert_eq!(r.compressor_id, Some(3), "zstd is the first shared one");
    }
    Outcome::Pass
}
