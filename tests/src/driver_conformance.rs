//! The driver against the testkit's fake server (std threads on 127.0.0.1), written once and run
//! on every runtime configuration. Every client is built with [`Env::client`], so each test
//! records a transcript of its command, pool and discovery events; `ci/parity` checks that the
//! transcripts are identical on every runtime.

use std::time::Duration;

use anymongo_core::bson::{doc, Bson, Document};
use anymongo_core::rt::RuntimeExt;
use anymongo_core::{Client, Error, ErrorKind};
use anymongo_testkit::{FailPoint, FakeServer, FaultAction, Times};
use futures::TryStreamExt;

use crate::{Env, Outcome};

/// Generous bound for things that should happen promptly; exceeding it is a failure (a hang),
/// not a timing measurement.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(20);

/// The database the tests use on the fake server.
const DB: &str = "parity";

/// A fake standalone server.
pub(crate) fn fake_server() -> FakeServer {
    FakeServer::builder().start()
}

/// A client of `server` on the runtime under test, recording into the test's transcript.
pub(crate) fn fake_client(env: &Env, server: &FakeServer) -> Client {
    env.client(&server.uri()).expect("build a client")
}

/// Waits (polling on the runtime's timer) until `done` holds; panics after [`PROMPTLY`].
pub(crate) async fn wait_until(env: &Env, what: &str, done: impl Fn() -> bool) {
    let deadline = env.rt.now() + PROMPTLY;
    while !done() {
        assert!(env.rt.now() < deadline, "still waiting for {what}");
        env.rt.sleep(Duration::from_millis(5)).await;
    }
}

/// `{ping: 1}` on the test database.
pub(crate) async fn ping(client: &Client) -> anymongo_core::Result<Document> {
    client.database(DB).run_command(doc! { "ping": 1 }).await
}

/// The variant name of an error's kind, for assertions and transcript notes.
fn kind_name(error: &Error) -> &'static str {
    match error.kind() {
        ErrorKind::Io(_) => "Io",
        ErrorKind::InvalidResponse { .. } => "InvalidResponse",
        ErrorKind::Command(_) => "Command",
        ErrorKind::Timeout { .. } => "Timeout",
        ErrorKind::ServerSelection { .. } => "ServerSelection",
        ErrorKind::Shutdown => "Shutdown",
        _ => "other",
    }
}

/// Connect and handshake: the server sees one handshake per connection (the monitor's and the
/// pool's), each carrying the client metadata with the runtime's name in `client.platform`.
pub async fn handshake_metadata(env: Env) -> Outcome {
    let server = fake_server();
    // Polling, so that no streaming RTT connection (a third handshake, opened concurrently with
    // the ping) makes the count depend on timing.
    let uri = format!("{}&serverMonitoringMode=poll", server.uri());
    let client = env.client(&uri).expect("build a client");
    ping(&client).await.expect("ping");
    let handshakes: Vec<_> = server
        .commands()
        .into_iter()
        .filter(|r| r.command.contains_key("client"))
        .collect();
    assert_eq!(handshakes.len(), 2, "monitor + pool: {handshakes:?}");
    for record in &handshakes {
        let md = record
            .command
            .get_document("client")
            .expect("client metadata is a document");
        let driver = md.get_document("driver").expect("client.driver");
        assert_eq!(driver.get_str("name").ok(), Some("anymongo"), "{md}");
        assert_eq!(
            md.get_str("platform").ok(),
            Some(format!("Rust / {}", env.harness.runtime_name).as_str()),
            "{md}"
        );
        env.transcript
            .note_doc(&format!("server saw {}", record.name), &record.command);
    }
    assert_ne!(handshakes[0].connection_id, handshakes[1].connection_id);
    client.shutdown().await;
    Outcome::Pass
}

/// `run_command` round trip through a scripted handler and a built-in command.
pub async fn run_command_roundtrip(env: Env) -> Outcome {
    let server = fake_server();
    server.on("echoTest", |ctx| {
        let mut reply = doc! { "ok": 1 };
        reply.insert(
            "echo",
            ctx.command.get("echoTest").cloned().unwrap_or(Bson::Null),
        );
        reply.insert("db", ctx.db.clone());
        reply
    });
    let client = fake_client(&env, &server);
    let db = client.database(DB);
    let reply = db
        .run_command(doc! { "echoTest": { "a": [1, 2, 3], "b": "text" } })
        .await
        .expect("echoTest");
    assert_eq!(
        reply.get_document("echo").ok(),
        Some(&doc! { "a": [1, 2, 3], "b": "text" })
    );
    assert_eq!(reply.get_str("db").ok(), Some(DB));
    let info = client
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await
        .expect("buildInfo");
    assert!(info.get("version").is_some(), "{info}");
    let raw = db
        .run_raw_command(doc! { "echoTest": 7 })
        .await
        .expect("raw echoTest");
    assert_eq!(raw.get_i32("echo").ok(), Some(7));
    client.shutdown().await;
    Outcome::Pass
}

/// Only what an operation declares a retryable read is retried after a network error: a
/// `find` is tried again, while a command the user wrote (`run_command`, even of a `find` or
/// given a read preference, and `run_cursor_command` of an aggregation that writes) goes out
/// exactly once, so a write can never be applied twice behind the application's back.
pub async fn only_declared_reads_are_retried(env: Env) -> Outcome {
    use anymongo_core::options::{ReadPreference, ReadPreferenceMode};
    let server = fake_server();
    let client = fake_client(&env, &server);
    let db = client.database(DB);
    db.collection::<Document>("c")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect("seed");
    let close_once = |name: &str| {
        server.clear_commands();
        server.fail_point(FailPoint::new(
            Times::N(1),
            [name],
            FaultAction::CloseBeforeReply,
        ));
    };
    let secondary = || ReadPreference::with_mode(ReadPreferenceMode::SecondaryPreferred);

    close_once("find");
    let found: Vec<Document> = db
        .collection::<Document>("c")
        .find(doc! {})
        .await
        .expect("a find is retried after a network error")
        .try_collect()
        .await
        .expect("drain");
    assert_eq!(found, vec![doc! { "_id": 1 }]);
    assert_eq!(server.commands_named("find").len(), 2, "tried twice");
    env.transcript.note("find: retried once, succeeded");

    close_once("insert");
    let err = db
        .run_command(doc! { "insert": "c", "documents": [{ "_id": 2 }] })
        .selection_criteria(secondary())
        .await
        .expect_err("a write given a read preference is not retried");
    assert!(err.is_network_error(), "{err}");
    assert_eq!(server.commands_named("insert").len(), 1, "sent once");
    env.transcript.note(format!(
        "run_command insert: {} (sent once)",
        kind_name(&err)
    ));

    close_once("find");
    let err = db
        .run_command(doc! { "find": "c", "filter": {} })
        .await
        .expect_err("run_command of a find is not retried");
    assert!(err.is_network_error(), "{err}");
    assert_eq!(server.commands_named("find").len(), 1, "sent once");
    env.transcript
        .note(format!("run_command find: {} (sent once)", kind_name(&err)));

    close_once("aggregate");
    let err = db
        .run_cursor_command(doc! {
            "aggregate": "c", "pipeline": [{ "$out": "o" }], "cursor": {},
        })
        .await
        .expect_err("run_cursor_command is not retried");
    assert!(err.is_network_error(), "{err}");
    assert_eq!(server.commands_named("aggregate").len(), 1, "sent once");
    env.transcript.note(format!(
        "run_cursor_command aggregate: {} (sent once)",
        kind_name(&err)
    ));

    client.shutdown().await;
    Outcome::Pass
}

/// A command error reply (`{ok: 0, code, codeName, errmsg, errorLabels}`) becomes a typed
/// `ErrorKind::Command` with its labels; the connection stays in use.
pub async fn command_error_is_typed(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["ping"],
        FaultAction::Error {
            code: 2,
            code_name: "BadValue".into(),
            errmsg: "ping refused by the fail point".into(),
            labels: Some(vec!["TransientTransactionError".into()]),
        },
    ));
    let error = ping(&client).await.expect_err("the fail point fails ping");
    match error.kind() {
        ErrorKind::Command(c) => {
            assert_eq!(c.code, 2, "{error:?}");
            assert_eq!(c.code_name, "BadValue", "{error:?}");
            assert_eq!(c.message, "ping refused by the fail point", "{error:?}");
        }
        _ => panic!("expected a command error, got {error:?}"),
    }
    assert!(
        error.contains_label("TransientTransactionError"),
        "{error:?}"
    );
    assert_eq!(error.code(), Some(2));

    // A handler's error document is typed the same way.
    server.queue_reply(
        "ping",
        doc! {
            "ok": 0, "code": 8000, "codeName": "AtlasError", "errmsg": "scripted",
            "errorLabels": ["NoWritesPerformed", "SystemOverloadedError"],
        },
    );
    let error = ping(&client)
        .await
        .expect_err("the queued reply fails ping");
    assert!(
        matches!(error.kind(), ErrorKind::Command(c) if c.code == 8000 && c.code_name == "AtlasError"),
        "{error:?}"
    );
    assert!(error.contains_label("NoWritesPerformed"), "{error:?}");
    assert!(error.contains_label("SystemOverloadedError"), "{error:?}");

    // Command errors do not poison the connection: all three pings share one.
    ping(&client).await.expect("ping after the errors");
    let pings = server.commands_named("ping");
    assert_eq!(pings.len(), 3, "no retries: {pings:?}");
    assert!(pings
        .iter()
        .all(|p| p.connection_id == pings[0].connection_id));
    client.shutdown().await;
    Outcome::Pass
}

/// insert_many, then a find whose results come in three batches (find + two getMores) from the
/// fake store; an insert_one with a generated `_id` and a find_one of it.
pub async fn insert_find_get_more(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    let coll = client.database(DB).collection::<Document>("items");
    let docs: Vec<Document> = (0..25).map(|i| doc! { "_id": i, "n": i * 10 }).collect();
    let inserted = coll.insert_many(docs).await.expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 25);
    assert_eq!(server.document_count(DB, "items"), 25);

    let found: Vec<Document> = coll
        .find(doc! { "n": { "$gte": 0 } })
        .sort(doc! { "_id": 1 })
        .batch_size(10u32)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("iterate");
    let ids: Vec<i32> = found.iter().filter_map(|d| d.get_i32("_id").ok()).collect();
    assert_eq!(ids, (0..25).collect::<Vec<_>>());
    assert_eq!(server.commands_named("getMore").len(), 2);
    assert_eq!(server.open_cursors(), 0);

    let result = coll
        .insert_one(doc! { "name": "generated id" })
        .await
        .expect("insert_one");
    assert!(
        matches!(result.inserted_id, Bson::ObjectId(_)),
        "{result:?}"
    );
    let one = coll
        .find_one(doc! { "_id": result.inserted_id.clone() })
        .await
        .expect("find_one")
        .expect("the inserted document");
    assert_eq!(one.get_str("name").ok(), Some("generated id"));
    client.shutdown().await;
    Outcome::Pass
}

/// Three tasks run at once, each with its own client recording into its own transcript lane:
/// each inserts into its own collection and reads it back in batches. The lanes are ordered by
/// themselves, so the transcript does not depend on how the runtime interleaves the tasks.
pub async fn concurrent_clients_in_lanes(env: Env) -> Outcome {
    let server = fake_server();
    let mut tasks = Vec::new();
    for task in 0..3 {
        let client = env
            .client_in_lane(&format!("task-{task}"), &server.uri())
            .expect("build a client");
        tasks.push(env.rt.spawn_with_handle(async move {
            let coll = client
                .database(DB)
                .collection::<Document>(&format!("lane{task}"));
            let docs: Vec<Document> = (0..12).map(|i| doc! { "_id": i, "task": task }).collect();
            coll.insert_many(docs).await.expect("insert_many");
            let found: Vec<Document> = coll
                .find(doc! {})
                .batch_size(5u32)
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("iterate");
            client.shutdown().await;
            found.len()
        }));
    }
    for task in tasks {
        assert_eq!(task.await, 12);
    }
    for task in 0..3 {
        assert_eq!(server.document_count(DB, &format!("lane{task}")), 12);
    }
    Outcome::Pass
}

/// A state-change error (`NotWritablePrimary`) on a standalone: discovery marks the server
/// Unknown and checks it again, and the next operation runs once it is rediscovered.
pub async fn state_change_error_rediscovers(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    ping(&client).await.expect("first ping");
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["ping"],
        FaultAction::error(10107).with_labels(&[]),
    ));
    let error = ping(&client).await.expect_err("NotWritablePrimary");
    assert!(
        matches!(error.kind(), ErrorKind::Command(c) if c.code == 10107),
        "{error:?}"
    );
    ping(&client).await.expect("ping after rediscovery");
    assert!(client
        .topology_description()
        .servers
        .values()
        .all(|s| s.is_available()));
    client.shutdown().await;
    Outcome::Pass
}

/// A reply slower than `socketTimeoutMS` fails the operation with a typed error, on the
/// runtime's timers; the connection is closed and the next operation gets a new one.
pub async fn socket_timeout_is_typed(env: Env) -> Outcome {
    let server = fake_server();
    let client = env
        .client(&format!("{}&socketTimeoutMS=1000", server.uri()))
        .expect("build a client");
    ping(&client).await.expect("first ping");
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["ping"],
        FaultAction::Delay(Duration::from_secs(15)),
    ));
    let error = ping(&client).await.expect_err("the delayed ping times out");
    let timed_out = match error.kind() {
        ErrorKind::Timeout { .. } => true,
        ErrorKind::Io(e) => e.kind() == std::io::ErrorKind::TimedOut,
        _ => false,
    };
    assert!(timed_out, "{error:?}");
    env.transcript
        .note(format!("delayed ping failed: {}", kind_name(&error)));
    ping(&client).await.expect("ping after the timeout");
    let pings = server.commands_named("ping");
    assert_eq!(pings.len(), 3, "no retries: {pings:?}");
    assert_ne!(pings[1].connection_id, pings[2].connection_id, "{pings:?}");
    client.shutdown().await;
    Outcome::Pass
}

/// A cursor dropped before it is exhausted is killed in the background (a task spawned from
/// `Drop` on the client's runtime): the server's cursor goes away.
pub async fn dropped_cursor_is_killed(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    let coll = client.database(DB).collection::<Document>("kill");
    let docs: Vec<Document> = (0..12).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs).await.expect("insert_many");
    let mut cursor = coll.find(doc! {}).batch_size(5u32).await.expect("find");
    let first = cursor.try_next().await.expect("first document");
    assert_eq!(first.and_then(|d| d.get_i32("_id").ok()), Some(0));
    assert_eq!(server.open_cursors(), 1);
    drop(cursor);
    wait_until(&env, "the server's cursor to be killed", || {
        server.open_cursors() == 0
    })
    .await;
    // The kill runs on its own task: wait until its connection is back before going on, so the
    // transcript's order does not depend on scheduling.
    wait_until(&env, "the killCursors connection to be checked in", || {
        let lines = env.transcript.lines();
        let Some(killed) = lines
            .iter()
            .position(|l| l.starts_with("command succeeded killCursors"))
        else {
            return false;
        };
        lines[killed..]
            .iter()
            .any(|l| l.starts_with("cmap ConnectionCheckedIn"))
    })
    .await;
    assert_eq!(server.commands_named("killCursors").len(), 1);
    client.shutdown().await;
    Outcome::Pass
}

/// The same flow against the real server (`ANYMONGO_URI`), so that its replies' run-specific
/// fields (`$clusterTime`, `operationTime`, `localTime`, `connectionId`, ...) are shown to
/// normalize: hello, drop, insert, find in batches, and a write error.
pub async fn real_server_transcript(env: Env) -> Outcome {
    let Some(uri) = crate::server_uri() else {
        return Outcome::Skip("ANYMONGO_URI not set (run under ci/with-server)");
    };
    let client = env.client(&uri).expect("build a client");
    // One database for every configuration (cells run one after another), so that the
    // transcripts can be equal.
    let db = client.database("anymongo_parity_transcripts");
    let hello = db.run_command(doc! { "hello": 1 }).await.expect("hello");
    assert!(hello.get_bool("isWritablePrimary").is_ok(), "{hello}");
    let coll = db.collection::<Document>("items");
    coll.drop().await.expect("drop");
    let docs: Vec<Document> = (0..7).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs).await.expect("insert_many");
    let found: Vec<Document> = coll
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .batch_size(3u32)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(found.len(), 7);
    let error = coll
        .insert_one(doc! { "_id": 3 })
        .await
        .expect_err("a duplicate _id");
    assert_eq!(error.code(), Some(11000), "{error:?}");
    client.shutdown().await;
    Outcome::Pass
}
