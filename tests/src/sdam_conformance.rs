//! Discovery, monitoring and server selection on every runtime: against the real server
//! (nx-27017, including one this module starts, kills and restarts itself), and against replica
//! sets and standalones simulated by `anymongo_testkit`.
//!
//! Every wait is a bounded poll of an observable state (the topology description, the fake
//! server's connection count); nothing asserts on how long something took.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anymongo_core::bson::{doc, Bson, Document};
use anymongo_core::cmap::CmapEvent;
use anymongo_core::event::{Event, EventHandler};
use anymongo_core::options::{ReadPreference, ReadPreferenceMode, ServerAddress};
use anymongo_core::rt::RuntimeExt;
use anymongo_core::sdam::{SdamEvent, ServerType, TopologyDescription, TopologyType};
use anymongo_core::{Client, ClientOptions, ErrorKind};
use anymongo_testkit::{FailPoint, FakeServer, FaultAction, ReplicaSet, Reply, Times};
use futures::TryStreamExt;

use crate::{Env, Outcome};

/// How long a bounded wait polls before the test fails (a guard, not a timing assertion).
const WAIT: Duration = Duration::from_secs(20);
/// The pause between two polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds or [`WAIT`] passes; returns whether it held.
async fn eventually(env: &Env, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > WAIT {
            return false;
        }
        env.rt.sleep(POLL).await;
    }
}

/// Polls the client's topology description until `cond` holds; panics with the last
/// description otherwise.
async fn wait_for_topology(
    env: &Env,
    client: &Client,
    what: &str,
    cond: impl Fn(&TopologyDescription) -> bool,
) {
    let ok = eventually(env, || cond(&client.topology_description())).await;
    assert!(
        ok,
        "waited {WAIT:?} for {what}; topology: {:?}",
        client.topology_description()
    );
}

fn server_type(td: &TopologyDescription, host: &str) -> Option<ServerType> {
    let address = ServerAddress::parse(host).ok()?;
    td.server(&address).map(|s| s.server_type)
}

fn primary_host(td: &TopologyDescription) -> Option<String> {
    td.primary().map(|s| s.address.to_string())
}

/// A client for `uri` with a 500 ms heartbeat and the given selection timeout.
fn client_for(env: &Env, uri: &str, selection_timeout_ms: u64, extra: &str) -> Client {
    let sep = if uri.contains('?') {
        "&"
    } else if uri.ends_with('/') {
        "?"
    } else {
        "/?"
    };
    let uri = format!(
        "{uri}{sep}heartbeatFrequencyMS=500&serverSelectionTimeoutMS={selection_timeout_ms}{extra}"
    );
    Client::with_uri_str_and_runtime(&uri, env.rt.clone()).expect("build the client")
}

/// A port on 127.0.0.1 nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn is_not_writable_primary(e: &anymongo_core::Error) -> bool {
    matches!(e.code(), Some(10107 | 13435 | 10058))
}

// ---------------------------------------------------------------------------------------------
// The real server
// ---------------------------------------------------------------------------------------------

/// The client discovers the standalone (TopologyType Single, server Standalone) and selects it.
pub async fn real_standalone_discovered(env: Env) -> Outcome {
    let Some(uri) = crate::server_uri() else {
        return Outcome::Skip("ANYMONGO_URI not set (run under ci/with-server)");
    };
    let client = client_for(&env, &uri, 10_000, "");
    wait_for_topology(&env, &client, "a Standalone", |td| {
        td.topology_type == TopologyType::Single
            && td.servers.len() == 1
            && td
                .servers
                .values()
                .all(|s| s.server_type == ServerType::Standalone)
    })
    .await;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping the selected standalone");
    client.shutdown().await;
    Outcome::Pass
}

/// An nx-27017 process of the test's own, on a fixed port, in a directory of its own.
struct NxProcess {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NxProcess {
    fn new(bin: PathBuf, tag: &str) -> NxProcess {
        let dir = std::env::temp_dir().join(format!(
            "anymongo-sdam-{}-{tag}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the server's temp dir");
        NxProcess {
            bin,
            dir,
            port: free_port(),
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--data-dir", "memory", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--log-file")
            .arg(self.dir.join("nx.log"))
            .arg("--pid-file")
            .arg(self.dir.join("nx.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nx-27017");
        self.child = Some(child);
    }

    /// Whether the process is still running (it exits if the port was taken).
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NxProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `nx` and waits until `client` sees it as a Standalone; restarts the process if it
/// exited (e.g. the port was still held by the previous process's sockets).
async fn start_and_discover(env: &Env, nx: &mut NxProcess, client: &Client) {
    nx.start();
    let host = nx.host();
    let start = Instant::now();
    loop {
        if server_type(&client.topology_description(), &host) == Some(ServerType::Standalone) {
            return;
        }
        if !nx.running() {
            nx.start();
        }
        assert!(
            start.elapsed() < WAIT,
            "nx-27017 on {host} was not discovered; topology: {:?}",
            client.topology_description()
        );
        env.rt.sleep(POLL).await;
    }
}

/// A stopped server is marked Unknown, and rediscovered once it runs again on the same port.
pub async fn real_server_restart_rediscovered(env: Env) -> Outcome {
    let Some(bin) = std::env::var_os("ANYMONGO_NX_BIN").filter(|b| !b.is_empty()) else {
        return Outcome::Skip("ANYMONGO_NX_BIN not set (run under ci/with-server)");
    };
    let mut nx = NxProcess::new(PathBuf::from(bin), env.harness.name);
    let client = client_for(&env, &nx.uri(), 5_000, "");
    start_and_discover(&env, &mut nx, &client).await;
    let admin = client.database("admin");
    admin
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping before the restart");

    nx.kill();
    let host = nx.host();
    wait_for_topology(&env, &client, "the killed server to be Unknown", |td| {
        server_type(td, &host) == Some(ServerType::Unknown)
    })
    .await;
    let error = client
        .topology_description()
        .server(&ServerAddress::parse(&host).expect("address"))
        .and_then(|s| s.error.clone());
    assert!(error.is_some(), "an Unknown server carries its check error");

    start_and_discover(&env, &mut nx, &client).await;
    admin
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping after the restart");
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// Monitoring protocol and task lifetime (fake server)
// ---------------------------------------------------------------------------------------------

/// Records SDAM heartbeat events.
#[derive(Default)]
struct Heartbeats {
    started_awaited: usize,
    succeeded_awaited: usize,
    succeeded_polled: usize,
}

fn heartbeat_recorder() -> (Arc<Mutex<Heartbeats>>, EventHandler) {
    let seen = Arc::new(Mutex::new(Heartbeats::default()));
    let sink = seen.clone();
    let handler = EventHandler::new(move |e| {
        let mut h = sink.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Sdam(SdamEvent::ServerHeartbeatStarted { awaited: true, .. }) => {
                h.started_awaited += 1
            }
            Event::Sdam(SdamEvent::ServerHeartbeatSucceeded { awaited, .. }) => {
                if *awaited {
                    h.succeeded_awaited += 1
                } else {
                    h.succeeded_polled += 1
                }
            }
            _ => {}
        }
    });
    (seen, handler)
}

fn client_with_events(env: &Env, uri: &str, extra: &str, handler: EventHandler) -> Client {
    let uri = format!("{uri}&heartbeatFrequencyMS=500&serverSelectionTimeoutMS=10000{extra}");
    let options = ClientOptions::parse_without_srv_resolution(&uri).expect("parse the URI");
    Client::builder(options, env.rt.clone())
        .event_handler(handler)
        .build()
        .expect("build the client")
}

/// A server whose hello carries a topologyVersion is monitored with the streaming protocol:
/// awaitable hellos (topologyVersion + maxAwaitTimeMS, heartbeat events marked awaited), and an
/// RTT task on a connection of its own keeps the server's RTT measured.
pub async fn streaming_protocol_when_supported(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    let (seen, handler) = heartbeat_recorder();
    let client = client_with_events(&env, &server.uri(), "", handler);
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping");
    let ok = eventually(&env, || {
        let h = seen.lock().unwrap_or_else(|p| p.into_inner());
        h.started_awaited >= 2 && h.succeeded_awaited >= 1
    })
    .await;
    assert!(ok, "no awaited heartbeats were published");
    let awaitable = server
        .commands_named("hello")
        .into_iter()
        .filter(|r| {
            r.command.contains_key("topologyVersion") && r.command.contains_key("maxAwaitTimeMS")
        })
        .count();
    assert!(awaitable >= 1, "no awaitable hello reached the server");
    // Monitor, RTT task and the pooled connection of the ping.
    assert!(
        eventually(&env, || server.open_connections() >= 3).await,
        "expected a dedicated RTT connection; open: {}",
        server.open_connections()
    );
    let rtt = client
        .topology_description()
        .servers
        .values()
        .next()
        .and_then(|s| s.round_trip_time);
    assert!(rtt.is_some(), "the server's RTT is measured");
    // A topology change is streamed to the client without a new request.
    server.set_hello_field("tags", doc! { "streamed": "yes" });
    wait_for_topology(&env, &client, "the streamed change", |td| {
        td.servers
            .values()
            .any(|s| s.tags.get("streamed").map(String::as_str) == Some("yes"))
    })
    .await;
    client.shutdown().await;
    assert!(
        eventually(&env, || server.open_connections() == 0).await,
        "connections left open after shutdown: {}",
        server.open_connections()
    );
    Outcome::Pass
}

/// `serverMonitoringMode=poll`: plain hellos only, and no RTT connection.
pub async fn polling_when_asked(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    let (seen, handler) = heartbeat_recorder();
    let client = client_with_events(&env, &server.uri(), "&serverMonitoringMode=poll", handler);
    let ok = eventually(&env, || {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .succeeded_polled
            >= 3
    })
    .await;
    assert!(ok, "the monitor did not poll");
    let awaited = {
        let h = seen.lock().unwrap_or_else(|p| p.into_inner());
        (h.started_awaited, h.succeeded_awaited)
    };
    assert_eq!(awaited, (0, 0));
    assert!(server
        .commands_named("hello")
        .iter()
        .all(|r| !r.command.contains_key("maxAwaitTimeMS")));
    // Only the monitor's connection: no RTT task when polling, no pooled connection yet.
    assert_eq!(server.open_connections(), 1);
    client.shutdown().await;
    assert!(
        eventually(&env, || server.open_connections() == 0).await,
        "connections left open after shutdown: {}",
        server.open_connections()
    );
    Outcome::Pass
}

/// A server without topologyVersion (like nx-27017) is polled even when streaming is allowed.
pub async fn polling_without_topology_version(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .hello_field("topologyVersion", Bson::Null)
        .start();
    let (seen, handler) = heartbeat_recorder();
    let client = client_with_events(&env, &server.uri(), "&serverMonitoringMode=stream", handler);
    let ok = eventually(&env, || {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .succeeded_polled
            >= 3
    })
    .await;
    assert!(ok, "the monitor did not poll");
    assert_eq!(
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .succeeded_awaited,
        0
    );
    assert_eq!(
        server.open_connections(),
        1,
        "no RTT connection when polling"
    );
    client.shutdown().await;
    Outcome::Pass
}

/// No task outlives the client: after `shutdown().await`, and after dropping the last clone,
/// every connection to the server (monitor, RTT, pool) is closed.
pub async fn closing_stops_every_task(env: Env) -> Outcome {
    for how in ["shutdown", "drop"] {
        let server = FakeServer::builder().start();
        let client = client_for(&env, &server.uri(), 10_000, "");
        let clone = client.clone();
        clone
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .expect("ping");
        assert!(
            eventually(&env, || server.open_connections() >= 3).await,
            "monitor, RTT and pooled connections; open: {}",
            server.open_connections()
        );
        match how {
            "shutdown" => client.shutdown().await,
            _ => {
                drop(client);
                drop(clone);
            }
        }
        assert!(
            eventually(&env, || server.open_connections() == 0).await,
            "{how}: connections left open: {}",
            server.open_connections()
        );
    }
    Outcome::Pass
}

/// A selection waits for the topology to change: an operation started while the only server is
/// down succeeds once it comes back.
pub async fn selection_waits_for_a_server(env: Env) -> Outcome {
    let server = FakeServer::builder().start();
    server.kill();
    let client = client_for(&env, &server.uri(), 15_000, "");
    let db = client.database("admin");
    let ping = async { db.run_command(doc! { "ping": 1 }).await };
    let revive = async {
        // Let the client see the server down first.
        wait_for_topology(&env, &client, "a failed check", |td| {
            td.servers.values().any(|s| s.error.is_some())
        })
        .await;
        server.revive().expect("revive the server");
    };
    let (reply, ()) = futures::join!(ping, revive);
    reply.expect("the waiting ping succeeds once the server is back");
    client.shutdown().await;
    Outcome::Pass
}

/// serverSelectionTimeoutMS: the error lists the topology the selection saw.
pub async fn selection_timeout_lists_servers(env: Env) -> Outcome {
    // Nothing listens: the server stays Unknown with a connection error.
    let port = free_port();
    let client = client_for(
        &env,
        &format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        700,
        "",
    );
    let err = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("no server to select");
    let ErrorKind::ServerSelection { message } = err.kind() else {
        panic!("expected a server selection error, got {err:?}");
    };
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("Unknown"),
        "{message}"
    );
    client.shutdown().await;

    // A replica set without a primary: a write lists every member and its type.
    let rs = ReplicaSet::start(3, "rs_timeout");
    let client = client_for(&env, &rs.uri(), 1_500, "");
    wait_for_topology(&env, &client, "the primary", |td| td.primary().is_some()).await;
    rs.step_down();
    wait_for_topology(&env, &client, "no primary", |td| td.primary().is_none()).await;
    let err = client
        .database("sdam_timeout")
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await
        .expect_err("no primary to write to");
    let ErrorKind::ServerSelection { message } = err.kind() else {
        panic!("expected a server selection error, got {err:?}");
    };
    for host in rs.hosts() {
        assert!(message.contains(&host), "{host} missing from: {message}");
    }
    assert!(message.contains("RSSecondary"), "{message}");
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// Replica sets (testkit)
// ---------------------------------------------------------------------------------------------

/// Discovery from one seed, writes to the primary, and following an election.
pub async fn replica_set_discovery_and_failover(env: Env) -> Outcome {
    let rs = ReplicaSet::start(3, "rs_failover");
    let hosts = rs.hosts();
    let seed = format!("mongodb://{}/?replicaSet=rs_failover", hosts[0]);
    let client = client_for(&env, &seed, 10_000, "");
    wait_for_topology(&env, &client, "all three members", |td| {
        td.topology_type == TopologyType::ReplicaSetWithPrimary
            && td.servers.len() == 3
            && primary_host(td).as_deref() == Some(hosts[0].as_str())
            && hosts[1..]
                .iter()
                .all(|h| server_type(td, h) == Some(ServerType::RsSecondary))
    })
    .await;

    let coll = client.database("sdam_failover").collection::<Document>("c");
    coll.insert_one(doc! { "n": 1 })
        .await
        .expect("write to the primary");
    let inserts = |i: usize| rs.members()[i].commands_named("insert").len();
    assert_eq!((inserts(0), inserts(1), inserts(2)), (1, 0, 0));

    rs.step_down();
    rs.elect(1);
    // The next write reaches the new primary, after at most one NotWritablePrimary error (which
    // marks the old primary Unknown).
    let mut attempts = 0;
    loop {
        attempts += 1;
        match coll.insert_one(doc! { "n": 2 }).await {
            Ok(_) => break,
            Err(e) if attempts == 1 && is_not_writable_primary(&e) => continue,
            Err(e) => panic!("write after the election failed: {e}"),
        }
    }
    assert_eq!(inserts(1), 1, "the write went to the new primary");
    wait_for_topology(&env, &client, "member 1 as primary", |td| {
        primary_host(td).as_deref() == Some(hosts[1].as_str())
            && server_type(td, &hosts[0]) == Some(ServerType::RsSecondary)
    })
    .await;
    assert_eq!(rs.members()[0].document_count("sdam_failover", "c"), 2);
    client.shutdown().await;
    Outcome::Pass
}

/// A killed secondary is marked Unknown while secondaryPreferred reads keep working; once
/// revived it is rediscovered.
pub async fn replica_set_secondary_killed_and_revived(env: Env) -> Outcome {
    let rs = ReplicaSet::start(3, "rs_kill");
    let hosts = rs.hosts();
    rs.members()[0]
        .seed("sdam_kill", "c", vec![doc! { "_id": 1 }])
        .expect("seed");
    let client = client_for(&env, &rs.uri(), 10_000, "");
    let all_known = |td: &TopologyDescription| {
        primary_host(td).as_deref() == Some(hosts[0].as_str())
            && hosts[1..]
                .iter()
                .all(|h| server_type(td, h) == Some(ServerType::RsSecondary))
    };
    wait_for_topology(&env, &client, "all three members", all_known).await;

    rs.kill(2);
    wait_for_topology(&env, &client, "member 2 Unknown", |td| {
        server_type(td, &hosts[2]) == Some(ServerType::Unknown)
    })
    .await;
    let coll = client.database("sdam_kill").collection::<Document>("c");
    for _ in 0..5 {
        let docs: Vec<Document> = coll
            .find(doc! {})
            .read_preference(ReadPreference::with_mode(
                ReadPreferenceMode::SecondaryPreferred,
            ))
            .await
            .expect("secondaryPreferred read with a secondary down")
            .try_collect()
            .await
            .expect("iterate");
        assert_eq!(docs.len(), 1);
    }
    assert!(
        !rs.members()[1].commands_named("find").is_empty(),
        "reads went to the remaining secondary"
    );

    rs.revive(2).expect("revive member 2");
    wait_for_topology(&env, &client, "member 2 rediscovered", all_known).await;
    client.shutdown().await;
    Outcome::Pass
}

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Read preferences secondary and nearest with tag sets select the tagged members.
pub async fn replica_set_read_preference_tags(env: Env) -> Outcome {
    let rs = ReplicaSet::start(3, "rs_tags");
    let hosts = rs.hosts();
    rs.members()[0]
        .seed("sdam_tags", "c", vec![doc! { "_id": 1 }])
        .expect("seed");
    rs.set_tags(1, doc! { "dc": "east" });
    rs.set_tags(2, doc! { "dc": "west" });
    let client = client_for(&env, &rs.uri(), 10_000, "");
    wait_for_topology(&env, &client, "the tagged members", |td| {
        let tag = |h: &str| {
            ServerAddress::parse(h)
                .ok()
                .and_then(|a| td.server(&a).and_then(|s| s.tags.get("dc").cloned()))
        };
        td.primary().is_some()
            && tag(&hosts[1]).as_deref() == Some("east")
            && tag(&hosts[2]).as_deref() == Some("west")
    })
    .await;
    let coll = client.database("sdam_tags").collection::<Document>("c");
    let finds = |i: usize| rs.members()[i].commands_named("find").len();
    let cases = [
        (ReadPreferenceMode::Secondary, "west", 2),
        (ReadPreferenceMode::Nearest, "east", 1),
        (ReadPreferenceMode::Secondary, "east", 1),
        (ReadPreferenceMode::Nearest, "west", 2),
    ];
    for (mode, dc, member) in cases {
        let before: Vec<usize> = (0..3).map(finds).collect();
        let rp = ReadPreference {
            mode,
            tag_sets: vec![tags(&[("dc", dc)])],
            ..ReadPreference::default()
        };
        for _ in 0..4 {
            let docs: Vec<Document> = coll
                .find(doc! {})
                .read_preference(rp.clone())
                .await
                .expect("tagged read")
                .try_collect()
                .await
                .expect("iterate");
            assert_eq!(docs.len(), 1);
        }
        let after: Vec<usize> = (0..3).map(finds).collect();
        for i in 0..3 {
            let expected = if i == member { 4 } else { 0 };
            assert_eq!(
                after[i] - before[i],
                expected,
                "{} with dc={dc}: finds per member before {before:?}, after {after:?}",
                mode.as_str()
            );
        }
    }
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// Sharded clusters (testkit servers answering as mongos)
// ---------------------------------------------------------------------------------------------

/// A retried read in a sharded cluster goes to another mongos than the one where the first
/// attempt failed (deprioritized servers).
pub async fn sharded_retry_avoids_failed_mongos(env: Env) -> Outcome {
    let mongoses: Vec<FakeServer> = (0..2)
        .map(|_| FakeServer::builder().hello_field("msg", "isdbgrid").start())
        .collect();
    // The first find anywhere fails with a retryable error (HostUnreachable) that leaves the
    // server selectable; every later find runs normally.
    let failed = Arc::new(AtomicBool::new(false));
    for m in &mongoses {
        m.seed("sdam_sharded", "c", vec![doc! { "_id": 1 }])
            .expect("seed");
        let failed = failed.clone();
        m.on("find", move |_| {
            if failed.swap(true, Ordering::SeqCst) {
                Reply::Default
            } else {
                Reply::Document(doc! { "ok": 0.0, "code": 6, "errmsg": "scripted failure" })
            }
        });
    }
    let hosts: Vec<String> = mongoses.iter().map(|m| m.host()).collect();
    let uri = format!("mongodb://{}/", hosts.join(","));
    let client = client_for(&env, &uri, 10_000, "");
    wait_for_topology(&env, &client, "two mongoses", |td| {
        td.topology_type == TopologyType::Sharded
            && hosts
                .iter()
                .all(|h| server_type(td, h) == Some(ServerType::Mongos))
    })
    .await;
    let docs: Vec<Document> = client
        .database("sdam_sharded")
        .collection::<Document>("c")
        .find(doc! {})
        .await
        .expect("the retried find succeeds")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(docs.len(), 1);
    let finds: Vec<usize> = mongoses
        .iter()
        .map(|m| m.commands_named("find").len())
        .collect();
    assert_eq!(finds, vec![1, 1], "the retry went to the other mongos");
    client.shutdown().await;
    Outcome::Pass
}

// ---------------------------------------------------------------------------------------------
// Application errors feed discovery
// ---------------------------------------------------------------------------------------------

/// What a recorder saw happen to one server.
#[derive(Default)]
struct ServerHistory {
    /// Server types in the order descriptions changed.
    types: Vec<ServerType>,
    pool_cleared: usize,
}

fn history_recorder(host: String) -> (Arc<Mutex<ServerHistory>>, EventHandler) {
    let seen = Arc::new(Mutex::new(ServerHistory::default()));
    let sink = seen.clone();
    let handler = EventHandler::new(move |e| {
        let mut h = sink.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Sdam(SdamEvent::ServerDescriptionChanged { address, new, .. })
                if address.to_string() == host =>
            {
                h.types.push(new.server_type)
            }
            Event::Cmap(CmapEvent::PoolCleared { address, .. }) if address.to_string() == host => {
                h.pool_cleared += 1
            }
            _ => {}
        }
    });
    (seen, handler)
}

/// A "not writable primary" error from the primary marks it Unknown (and asks for a check,
/// which finds it again); a network error on an application connection marks it Unknown and
/// clears its pool. The operation after each succeeds.
pub async fn application_errors_mark_the_server_unknown(env: Env) -> Outcome {
    let rs = ReplicaSet::start(3, "rs_app_errors");
    let hosts = rs.hosts();
    let (seen, handler) = history_recorder(hosts[0].clone());
    let client = client_with_events(&env, &rs.uri(), "", handler);
    wait_for_topology(&env, &client, "the primary", |td| {
        primary_host(td).as_deref() == Some(hosts[0].as_str())
    })
    .await;
    let coll = client
        .database("sdam_app_errors")
        .collection::<Document>("c");
    let history = || {
        let h = seen.lock().unwrap_or_else(|p| p.into_inner());
        (h.types.clone(), h.pool_cleared)
    };
    let (types_before, _) = history();

    rs.members()[0].queue_reply(
        "insert",
        doc! { "ok": 0.0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary" },
    );
    let err = coll
        .insert_one(doc! { "n": 1 })
        .await
        .expect_err("the scripted error");
    assert_eq!(err.code(), Some(10107), "{err}");
    let (types, cleared) = history();
    assert_eq!(
        types[types_before.len()..].first(),
        Some(&ServerType::Unknown),
        "marked Unknown at once: {types:?}"
    );
    assert_eq!(cleared, 0, "NotWritablePrimary does not clear the pool");
    coll.insert_one(doc! { "n": 2 })
        .await
        .expect("the primary is found again");

    let (types_before, _) = history();
    rs.members()[0].fail_point(FailPoint::new(
        Times::N(1),
        ["insert"],
        FaultAction::CloseBeforeReply,
    ));
    coll.insert_one(doc! { "n": 3 })
        .await
        .expect_err("the connection was closed");
    let (types, cleared) = history();
    assert_eq!(
        types[types_before.len()..].first(),
        Some(&ServerType::Unknown),
        "marked Unknown at once: {types:?}"
    );
    assert_eq!(cleared, 1, "a network error clears the pool");
    coll.insert_one(doc! { "n": 4 })
        .await
        .expect("the primary is found again");
    client.shutdown().await;
    Outcome::Pass
}

/// Load-balanced mode: the single server is a LoadBalancer without a monitor, and operations
/// run through its pool.
pub async fn load_balanced_mode_uses_the_pool_unmonitored(env: Env) -> Outcome {
    let server = FakeServer::builder()
        .hello_field("serviceId", anymongo_core::bson::oid::ObjectId::new())
        .start();
    let uri = format!(
        "mongodb://{}/?loadBalanced=true&serverSelectionTimeoutMS=5000",
        server.host()
    );
    let client = Client::with_uri_str_and_runtime(&uri, env.rt.clone()).expect("client");
    let td = client.topology_description();
    assert_eq!(td.topology_type, TopologyType::LoadBalanced);
    assert_eq!(
        server_type(&td, &server.host()),
        Some(ServerType::LoadBalancer)
    );
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping through the load balancer");
    assert_eq!(
        server.open_connections(),
        1,
        "only the pooled connection: no monitor"
    );
    client.shutdown().await;
    assert!(
        eventually(&env, || server.open_connections() == 0).await,
        "connections left open after shutdown: {}",
        server.open_connections()
    );
    Outcome::Pass
}
