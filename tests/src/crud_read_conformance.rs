//! Read and administrative actions (aggregate, counts, distinct, indexes, collections,
//! databases, cursors) against the real server nx-27017 (`ANYMONGO_URI`, via `ci/with-server`)
//! and, where nx-27017 deviates from MongoDB, against the testkit's fake server. Every test runs
//! on every runtime configuration.
//!
//! nx-27017 0.8.1 deviations found and worked around here (each test says which it avoids):
//! - it stores documents as JSON: it rejects regex, timestamp, decimal128, min/max key, and it
//!   returns a UUID binary as a generic binary and JavaScript code as a string;
//! - `listCollections` ignores `filter` and `nameOnly`, and reports `info.uuid` as a string;
//! - `listIndexes` reports its own index names (`idx_<coll>_<fields>`) and loses key directions;
//! - `create` ignores collection options; `aggregate` has no `$out` / `$merge` and no
//!   `aggregate: 1`;
//! - unknown commands answer `ok: 1`; embedded-document `_id` equality fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anymongo_core::bson::{
    doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128, Document,
    JavaScriptCodeWithScope, RawDocumentBuf, Regex, Timestamp,
};
use anymongo_core::client::{CollectionType, CursorType, HandleOptions, IndexModel, IndexOptions};
use anymongo_core::error::{ErrorKind, WriteFailure};
use anymongo_core::event::{CommandEvent, CommandStartedEvent, Event, EventHandler};
use anymongo_core::options::{
    Acknowledgment, ReadConcern, ReadConcernLevel, ReadPreference, ReadPreferenceMode, WriteConcern,
};
use anymongo_core::rt::RuntimeExt;
use anymongo_core::{Client, ClientOptions};
use anymongo_testkit::FakeServer;
use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};

use crate::{Env, Outcome};

const NO_SERVER: Outcome = Outcome::Skip("ANYMONGO_URI not set (run under ci/with-server)");

/// How long a background effect (killCursors) may take before the test fails. A bound on a
/// wait, not a timing assertion.
const BACKGROUND_WAIT: Duration = Duration::from_secs(10);

/// Command events a client emitted, and a channel of started command names.
struct Recorder {
    started: Arc<Mutex<Vec<CommandStartedEvent>>>,
    replies: Arc<Mutex<Vec<(String, Document)>>>,
    names: mpsc::UnboundedReceiver<String>,
}

impl Recorder {
    fn started(&self, name: &str) -> Vec<Document> {
        self.started
            .lock()
            .expect("events lock")
            .iter()
            .filter(|e| e.command_name == name)
            .map(|e| e.command.clone())
            .collect()
    }

    fn replies(&self, name: &str) -> Vec<Document> {
        self.replies
            .lock()
            .expect("events lock")
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn clear(&self) {
        self.started.lock().expect("events lock").clear();
        self.replies.lock().expect("events lock").clear();
    }

    /// Waits (bounded) until a command named `name` has started.
    async fn wait_for(&mut self, env: &Env, name: &str) -> bool {
        let names = &mut self.names;
        let found = env
            .rt
            .timeout(BACKGROUND_WAIT, async {
                while let Some(n) = names.next().await {
                    if n == name {
                        return true;
                    }
                }
                false
            })
            .await;
        matches!(found, Ok(true))
    }
}

/// What [`Recorder::wait_for`] sees when a connection goes back to the pool.
const CHECKED_IN: &str = "<connection checked in>";

/// A client for `uri` on the runtime under test, recording command events.
fn recording_client(env: &Env, uri: &str) -> (Client, Recorder) {
    let started = Arc::new(Mutex::new(Vec::new()));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::unbounded();
    let (s, r) = (started.clone(), replies.clone());
    let handler = EventHandler::new(move |e| {
        if let Event::Cmap(anymongo_core::cmap::CmapEvent::ConnectionCheckedIn { .. }) = e {
            let _ = tx.unbounded_send(CHECKED_IN.to_string());
        }
        if let Event::Command(c) = e {
            match c {
                CommandEvent::Started(ev) => {
                    // Recorded before it is announced, so a waiter finds it.
                    s.lock().expect("events lock").push(ev.clone());
                    let _ = tx.unbounded_send(ev.command_name.clone());
                }
                CommandEvent::Succeeded(ev) => {
                    r.lock()
                        .expect("events lock")
                        .push((ev.command_name.clone(), ev.reply.clone()));
                }
                CommandEvent::Failed(_) => {}
            }
        }
    });
    let options = ClientOptions::parse_without_srv_resolution(uri).expect("parse the URI");
    // Events go to the recorder and to the test's transcript (compared across runtimes).
    let transcript = env.transcript.event_handler();
    let both = EventHandler::new(move |event| {
        handler.handle(event);
        transcript.handle(event);
    });
    let client = Client::builder(options, env.rt.clone())
        .event_handler(both)
        .build()
        .expect("build the client");
    (
        client,
        Recorder {
            started,
            replies,
            names: rx,
        },
    )
}

/// The real server's client, or the reason to skip.
fn server(env: &Env) -> Result<(Client, Recorder), Outcome> {
    match crate::server_uri() {
        Some(uri) => Ok(recording_client(env, &uri)),
        None => Err(NO_SERVER),
    }
}

/// A database name of this test and configuration, so runs on different runtimes never share data.
fn db_name(env: &Env, test: &str) -> String {
    format!("crudr_{}_{}", env.harness.name.replace('-', "_"), test)
}

macro_rules! server_or_skip {
    ($env:expr) => {
        match server(&$env) {
            Ok(c) => c,
            Err(skip) => return skip,
        }
    };
}

/// aggregate, count_documents, estimated_document_count and distinct on the real server.
pub async fn aggregate_counts_distinct(env: Env) -> Outcome {
    let (client, events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "agg"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    let docs: Vec<Document> = (0..20)
        .map(|i| doc! { "_id": i, "g": i % 4, "v": i })
        .collect();
    coll.insert_many(docs).await.expect("insert");

    let out: Vec<Document> = coll
        .aggregate([
            doc! { "$match": { "g": 1 } },
            doc! { "$sort": { "v": -1 } },
            doc! { "$project": { "_id": 0, "v": 1 } },
        ])
        .batch_size(2u32)
        .comment("crudr")
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("iterate");
    let expected: Vec<Document> = [17, 13, 9, 5, 1].iter().map(|v| doc! { "v": v }).collect();
    assert_eq!(out, expected);
    let agg = events.started("aggregate");
    assert_eq!(agg.len(), 1, "{agg:?}");
    assert_eq!(
        agg[0].get_document("cursor").ok(),
        Some(&doc! { "batchSize": 2i64 })
    );
    assert_eq!(agg[0].get_str("comment").ok(), Some("crudr"));
    assert!(
        !events.started("getMore").is_empty(),
        "batches of 2 need getMore"
    );

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V {
        v: i32,
    }
    let typed: Vec<V> = coll
        .aggregate([
            doc! { "$match": { "_id": 3 } },
            doc! { "$project": { "_id": 0 } },
        ])
        .with_type::<V>()
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(typed, vec![V { v: 3 }]);

    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 20);
    assert_eq!(
        coll.count_documents(doc! { "g": 2 }).await.expect("count"),
        5
    );
    assert_eq!(
        coll.count_documents(doc! { "g": 2 })
            .skip(1u64)
            .limit(3u64)
            .max_time(Duration::from_secs(5))
            .await
            .expect("count"),
        3
    );
    assert_eq!(
        coll.count_documents(doc! { "g": 9 }).await.expect("count"),
        0
    );
    let pipelines = events.started("aggregate");
    let last = pipelines.last().expect("count_documents is an aggregate");
    assert_eq!(
        last.get_array("pipeline")
            .ok()
            .and_then(|p| p.last())
            .cloned(),
        Some(Bson::Document(
            doc! { "$group": { "_id": 1, "n": { "$sum": 1 } } }
        ))
    );
    assert_eq!(coll.estimated_document_count().await.expect("count"), 20);
    assert!(!events.started("count").is_empty());

    let mut values = coll
        .distinct("g", doc! { "v": { "$gte": 10 } })
        .await
        .expect("distinct");
    values.sort_by_key(|v| v.as_i32());
    assert_eq!(
        values,
        vec![
            Bson::Int32(0),
            Bson::Int32(1),
            Bson::Int32(2),
            Bson::Int32(3)
        ]
    );
    let none = coll
        .distinct("g", doc! { "v": 100 })
        .await
        .expect("distinct");
    assert!(none.is_empty());

    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// `$out` / `$merge` pipelines select the primary with the write concern and are not retried;
/// plain aggregations are retried reads. On the fake server: nx-27017 has no `$out`.
pub async fn aggregate_write_stage_is_a_write(env: Env) -> Outcome {
    let fake = FakeServer::builder().start();
    let empty = |ns: &str| doc! { "ok": 1, "cursor": { "id": 0i64, "ns": ns, "firstBatch": [] } };
    let (client, events) = recording_client(&env, &fake.uri());
    let wc = WriteConcern {
        w: Some(Acknowledgment::Majority),
        ..Default::default()
    };
    let coll = client.database("d").collection_with_options::<Document>(
        "c",
        HandleOptions {
            write_concern: Some(wc),
            read_preference: Some(ReadPreference::with_mode(ReadPreferenceMode::Secondary)),
            ..Default::default()
        },
    );
    let reply = empty("d.c");
    fake.on("aggregate", move |_| reply.clone());

    coll.aggregate([doc! { "$match": {} }, doc! { "$out": "o" }])
        .await
        .expect("$out aggregate");
    let sent = events.started("aggregate");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].get_document("writeConcern").ok(),
        Some(&doc! { "w": "majority" })
    );
    assert!(
        !sent[0].contains_key("$readPreference"),
        "a write stage ignores the read preference: {}",
        sent[0]
    );
    let read = coll
        .aggregate([doc! { "$match": {} }])
        .await
        .expect("aggregate");
    drop(read);
    let sent = events.started("aggregate");
    assert!(!sent[1].contains_key("writeConcern"), "{}", sent[1]);
    assert_eq!(
        sent[1].get_document("$readPreference").ok(),
        Some(&doc! { "mode": "secondary" })
    );

    // A retryable error: a read is retried once, a write stage is not.
    let not_primary = doc! { "ok": 0, "code": 10107, "errmsg": "not primary" };
    fake.clear_commands();
    fake.queue_reply("aggregate", not_primary.clone());
    coll.aggregate([doc! { "$match": {} }])
        .await
        .expect("retried read");
    assert_eq!(fake.commands_named("aggregate").len(), 2);
    fake.clear_commands();
    fake.queue_reply("aggregate", not_primary);
    let err = coll
        .aggregate([doc! { "$merge": { "into": "o" } }])
        .await
        .expect_err("a write stage is not retried");
    assert_eq!(err.code(), Some(10107));
    assert_eq!(fake.commands_named("aggregate").len(), 1);

    // Database-level aggregation: `aggregate: 1` (nx-27017 has none).
    let reply = doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "admin.$cmd.aggregate",
    "firstBatch": [{ "op": "query" }] } };
    fake.on("aggregate", move |_| reply.clone());
    let ops: Vec<Document> = client
        .database("admin")
        .aggregate([doc! { "$currentOp": {} }])
        .await
        .expect("db aggregate")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(ops, vec![doc! { "op": "query" }]);
    let last = fake.commands_named("aggregate").pop().expect("sent");
    assert_eq!(last.command.get("aggregate"), Some(&Bson::Int32(1)));
    assert_eq!(last.db, "admin");
    client.shutdown().await;
    Outcome::Pass
}

/// create_index(es) (generated names), list_index_names, unique index → 11000, drop_index,
/// drop_indexes on the real server.
pub async fn index_management(env: Env) -> Outcome {
    let (client, events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "idx"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    coll.insert_one(doc! { "a": 1, "b": 1, "u": 1 })
        .await
        .expect("insert");

    let created = coll
        .create_index(IndexModel::builder().keys(doc! { "a": 1, "b": -1 }).build())
        .await
        .expect("create_index");
    assert_eq!(created.index_name, "a_1_b_-1");
    let created = coll
        .create_indexes([
            IndexModel::builder()
                .keys(doc! { "u": 1 })
                .options(
                    IndexOptions::builder()
                        .unique(true)
                        .name("u_unique".to_string())
                        .build(),
                )
                .build(),
            IndexModel::builder().keys(doc! { "t": 1 }).build(),
        ])
        .await
        .expect("create_indexes");
    assert_eq!(created.index_names, vec!["u_unique", "t_1"]);
    let sent = events.started("createIndexes");
    let indexes = sent[1].get_array("indexes").expect("indexes");
    assert_eq!(
        indexes[0],
        Bson::Document(doc! { "key": { "u": 1 }, "name": "u_unique", "unique": true })
    );

    // nx-27017 reports its own index names (idx_<coll>_<fields>), so only count them here and
    // use the names it lists; exact names and options are checked on the fake server.
    let names = coll.list_index_names().await.expect("list_index_names");
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"_id_".to_string()), "{names:?}");
    let models: Vec<IndexModel> = coll
        .list_indexes()
        .await
        .expect("list_indexes")
        .try_collect()
        .await
        .expect("iterate");
    let unique: Vec<&IndexModel> = models
        .iter()
        .filter(|m| m.options.as_ref().and_then(|o| o.unique) == Some(true))
        .collect();
    assert_eq!(unique.len(), 1, "{models:?}");
    assert_eq!(unique[0].keys, doc! { "u": 1 });

    // The unique index rejects a duplicate: a typed write error with code 11000.
    let err = coll
        .insert_one(doc! { "u": 1 })
        .await
        .expect_err("duplicate key");
    match err.kind() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => assert_eq!(w.code, 11000, "{w:?}"),
        other => panic!("expected a write error, got {other:?}"),
    }

    // Ours (`t_1`) or nx-27017's (`idx_c_t`).
    let t_name = names
        .iter()
        .find(|n| *n == "t_1" || n.ends_with("_t"))
        .cloned()
        .expect("the t index is listed");
    coll.drop_index(&t_name).await.expect("drop_index");
    assert_eq!(coll.list_index_names().await.expect("list").len(), 3);
    assert!(coll.drop_index("*").await.is_err(), "'*' is refused");
    coll.drop_indexes().await.expect("drop_indexes");
    let left = coll.list_index_names().await.expect("list");
    assert_eq!(left, vec!["_id_".to_string()]);
    assert_eq!(
        events
            .started("dropIndexes")
            .last()
            .and_then(|c| c.get_str("index").ok()),
        Some("*")
    );

    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// list_indexes parses every option of the server's index documents, and a collection that
/// does not exist has no indexes. On the fake server: nx-27017 loses names and directions.
pub async fn list_indexes_models(env: Env) -> Outcome {
    let fake = FakeServer::builder().start();
    let (client, events) = recording_client(&env, &fake.uri());
    fake.on("listIndexes", |ctx| {
        if ctx.command.get_str("listIndexes").ok() == Some("missing") {
            return doc! { "ok": 0, "code": 26, "codeName": "NamespaceNotFound",
            "errmsg": "ns does not exist" };
        }
        doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "d.c", "firstBatch": [
            { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
            { "v": 2, "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1", "unique": true,
              "sparse": true, "expireAfterSeconds": 60,
              "partialFilterExpression": { "a": { "$gt": 1 } } },
        ] } }
    });
    let coll = client.database("d").collection::<Document>("c");
    let models: Vec<IndexModel> = coll
        .list_indexes()
        .batch_size(10u32)
        .await
        .expect("list_indexes")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(models.len(), 2);
    let o = models[1].options.clone().expect("options");
    assert_eq!(models[1].keys, doc! { "a": 1, "b": -1 });
    assert_eq!(o.name.as_deref(), Some("a_1_b_-1"));
    assert_eq!(o.unique, Some(true));
    assert_eq!(o.sparse, Some(true));
    assert_eq!(o.expire_after, Some(Duration::from_secs(60)));
    assert_eq!(
        o.partial_filter_expression,
        Some(doc! { "a": { "$gt": 1 } })
    );
    assert_eq!(
        coll.list_index_names().await.expect("names"),
        vec!["_id_", "a_1_b_-1"]
    );
    assert_eq!(
        events.started("listIndexes")[0].get_document("cursor").ok(),
        Some(&doc! { "batchSize": 10i64 })
    );
    let missing = client.database("d").collection::<Document>("missing");
    assert!(missing
        .list_index_names()
        .await
        .expect("missing")
        .is_empty());
    client.shutdown().await;
    Outcome::Pass
}

/// create_collection, list_collection_names, list_collections, Database::drop and
/// Client::list_databases on the real server.
pub async fn collections_and_databases(env: Env) -> Outcome {
    let (client, events) = server_or_skip!(env);
    let name = db_name(&env, "colls");
    let db = client.database(&name);
    db.drop().await.expect("drop db");
    db.create_collection("one").await.expect("create");
    db.collection::<Document>("two")
        .insert_one(doc! { "x": 1 })
        .await
        .expect("insert");
    let mut names = db.list_collection_names().await.expect("names");
    names.sort();
    assert_eq!(names, vec!["one", "two"]);
    assert_eq!(
        events.started("listCollections")[0]
            .get_bool("nameOnly")
            .ok(),
        Some(true)
    );
    let specs: Vec<_> = db
        .list_collections()
        .await
        .expect("list_collections")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(specs.len(), 2);
    for s in &specs {
        assert_eq!(s.collection_type, CollectionType::Collection);
        assert!(!s.info.read_only);
    }

    let dbs = client.list_databases().await.expect("list_databases");
    let mine = dbs.iter().find(|d| d.name == name).expect("listed");
    assert!(!mine.empty, "{mine:?}");
    let all_names = client.list_database_names().await.expect("names");
    assert!(all_names.contains(&name));

    db.drop().await.expect("drop db");
    assert!(events.started("dropDatabase").len() >= 2);
    let after = client.list_database_names().await.expect("names");
    assert!(!after.contains(&name), "{after:?}");
    client.shutdown().await;
    Outcome::Pass
}

/// listCollections filter / nameOnly / authorizedCollections, create options, listDatabases
/// filter. On the fake server: nx-27017 ignores filters and collection options.
pub async fn collection_options_and_filters(env: Env) -> Outcome {
    let fake = FakeServer::builder().start();
    let (client, events) = recording_client(&env, &fake.uri());
    let db = client.database("d");
    db.create_collection("capped")
        .capped(true)
        .size(4096u64)
        .max(10u64)
        .validator(doc! { "x": { "$type": "int" } })
        .await
        .expect("create");
    let create = fake.commands_named("create").pop().expect("sent").command;
    assert_eq!(create.get_bool("capped").ok(), Some(true));
    assert_eq!(create.get_i64("size").ok(), Some(4096));
    assert_eq!(create.get_i64("max").ok(), Some(10));
    assert_eq!(
        create.get_document("validator").ok(),
        Some(&doc! { "x": { "$type": "int" } })
    );
    fake.seed("d", "other", vec![doc! { "_id": 1 }])
        .expect("seed");

    let names = db
        .list_collection_names()
        .filter(doc! { "name": "other" })
        .authorized_collections(true)
        .await
        .expect("names");
    assert_eq!(names, vec!["other"]);
    let sent = events.started("listCollections");
    assert_eq!(
        sent[0].get_document("filter").ok(),
        Some(&doc! { "name": "other" })
    );
    assert_eq!(sent[0].get_bool("authorizedCollections").ok(), Some(true));
    assert_eq!(sent[0].get_bool("nameOnly").ok(), Some(true));

    let specs: Vec<_> = db
        .list_collections()
        .filter(doc! { "name": "capped" })
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].name, "capped");
    assert_eq!(
        specs[0].id_index.as_ref().map(|i| i.keys.clone()),
        Some(doc! { "_id": 1 })
    );
    assert!(!events.started("listCollections")[1].contains_key("nameOnly"));

    let dbs = client
        .list_databases()
        .filter(doc! { "name": "d" })
        .await
        .expect("list_databases");
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0].name, "d");
    assert!(!dbs[0].empty);
    client.shutdown().await;
    Outcome::Pass
}

/// `{_id: key, v: value}` for each value.
fn typed_docs(values: Vec<(&str, Bson)>) -> Vec<Document> {
    values
        .into_iter()
        .map(|(k, v)| doc! { "_id": k, "v": v })
        .collect()
}

async fn round_trip(client: &Client, db: &str, docs: Vec<Document>) {
    let coll = client.database(db).collection::<Document>("types");
    coll.drop().await.expect("drop");
    coll.insert_many(docs.clone()).await.expect("insert");
    for d in docs {
        let id = d.get("_id").cloned().expect("_id");
        let back = coll
            .find_one(doc! { "_id": id })
            .await
            .expect("find_one")
            .expect("found");
        assert_eq!(back, d, "data in equals data out");
        // And as raw bytes: the same encoding.
        let raw = coll
            .clone_with_type::<RawDocumentBuf>()
            .find_one(doc! { "_id": d.get("_id").cloned().expect("_id") })
            .await
            .expect("find_one raw")
            .expect("found");
        assert_eq!(
            raw.as_bytes(),
            RawDocumentBuf::try_from(&d).expect("encode").as_bytes()
        );
    }
}

/// Every BSON type nx-27017 round-trips: double, string, document, array, generic binary,
/// ObjectId, bool, datetime, null, int32, int64.
pub async fn bson_round_trip_server(env: Env) -> Outcome {
    let (client, _events) = server_or_skip!(env);
    let db = db_name(&env, "bson");
    round_trip(
        &client,
        &db,
        typed_docs(vec![
            ("double", Bson::Double(1.5)),
            ("string", Bson::from("héllo ✓")),
            (
                "document",
                Bson::Document(doc! { "a": 1, "b": { "c": "d" } }),
            ),
            (
                "array",
                Bson::Array(vec![
                    Bson::Int32(1),
                    Bson::from("two"),
                    doc! { "t": 3 }.into(),
                ]),
            ),
            (
                "binary",
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: vec![0, 1, 2, 255],
                }),
            ),
            ("objectid", Bson::ObjectId(ObjectId::new())),
            ("bool", Bson::Boolean(true)),
            (
                "datetime",
                Bson::DateTime(DateTime::from_millis(1_577_934_245_678)),
            ),
            ("null", Bson::Null),
            ("int32", Bson::Int32(-42)),
            ("int64", Bson::Int64(1 << 40)),
        ]),
    )
    .await;
    client.database(&db).drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// The BSON types nx-27017 does not round-trip (it stores JSON: UUID binary comes back generic,
/// JavaScript as a string, the others are rejected), and an embedded-document `_id` (nx-27017
/// cannot match one), against the fake server.
pub async fn bson_round_trip_fake(env: Env) -> Outcome {
    let fake = FakeServer::builder().start();
    let (client, _events) = recording_client(&env, &fake.uri());
    round_trip(
        &client,
        "d",
        typed_docs(vec![
            (
                "uuid",
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Uuid,
                    bytes: (0..16).collect(),
                }),
            ),
            (
                "regex",
                Bson::RegularExpression(Regex {
                    pattern: "^a.*b$".try_into().expect("pattern"),
                    options: "i".try_into().expect("options"),
                }),
            ),
            (
                "timestamp",
                Bson::Timestamp(Timestamp {
                    time: 1_700_000_000,
                    increment: 7,
                }),
            ),
            (
                "decimal128",
                Bson::Decimal128(
                    "1.2345678901234567890"
                        .parse::<Decimal128>()
                        .expect("decimal"),
                ),
            ),
            ("minkey", Bson::MinKey),
            ("maxkey", Bson::MaxKey),
            (
                "javascript",
                Bson::JavaScriptCode("function() { return 1; }".into()),
            ),
            (
                "jsscope",
                Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                    code: "x".into(),
                    scope: doc! { "x": 1 },
                }),
            ),
        ]),
    )
    .await;
    let coll = client.database("d").collection::<Document>("emb");
    let d = doc! { "_id": { "k": 1, "j": "x" }, "v": 1 };
    coll.insert_one(d.clone()).await.expect("insert");
    let back = coll
        .find_one(doc! { "_id": { "k": 1, "j": "x" } })
        .await
        .expect("find_one");
    assert_eq!(back, Some(d));
    client.shutdown().await;
    Outcome::Pass
}

/// A 10,000-document find drains through getMore; the events show every batch.
pub async fn find_10000_drains_through_get_more(env: Env) -> Outcome {
    let (client, events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "drain"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    let docs: Vec<Document> = (0..10_000).map(|i| doc! { "_id": i, "p": "x" }).collect();
    coll.insert_many(docs).await.expect("insert");
    events.clear();
    // No sort: nx-27017 sorts integer `_id`s as strings (0, 1, 10, 100, ...).
    let mut cursor = coll.find(doc! {}).batch_size(1000u32).await.expect("find");
    let mut ids = Vec::new();
    while let Some(d) = cursor.next_document().await {
        ids.push(d.expect("document").get_i32("_id").expect("int _id"));
    }
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..10_000).collect::<Vec<i32>>(),
        "every document once"
    );
    assert!(cursor.is_exhausted());
    let first = events.replies("find");
    let first_len = first[0]
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .map(|b| b.len())
        .expect("firstBatch");
    let get_mores = events.started("getMore");
    let batches: usize = events
        .replies("getMore")
        .iter()
        .map(|r| {
            r.get_document("cursor")
                .and_then(|c| c.get_array("nextBatch"))
                .map(|b| b.len())
                .expect("nextBatch")
        })
        .sum();
    assert_eq!(first_len + batches, 10_000);
    assert!(!get_mores.is_empty());
    assert!(
        get_mores.len() >= (10_000 - first_len) / 1000,
        "{}",
        get_mores.len()
    );
    for g in &get_mores {
        assert_eq!(g.get_i64("batchSize").ok(), Some(1000));
        assert!(!g.contains_key("maxTimeMS"), "not an awaitData cursor: {g}");
    }
    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// Dropping a cursor with a live id sends killCursors for it, in the background.
pub async fn dropped_cursor_sends_kill_cursors(env: Env) -> Outcome {
    let (client, mut events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "kill"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    let docs: Vec<Document> = (0..10).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs).await.expect("insert");
    let mut cursor = coll.find(doc! {}).batch_size(2u32).await.expect("find");
    cursor.next_document().await.expect("one").expect("doc");
    let id = cursor.id();
    assert_ne!(id, 0, "the server keeps the cursor open");
    drop(cursor);
    assert!(
        events.wait_for(&env, "killCursors").await,
        "killCursors within {BACKGROUND_WAIT:?}"
    );
    // Let the background killCursors finish (its connection back in the pool) before the next
    // operation, so that the two never race for connections.
    assert!(
        events.wait_for(&env, CHECKED_IN).await,
        "killCursors' connection checked in within {BACKGROUND_WAIT:?}"
    );
    let kill = events.started("killCursors");
    assert_eq!(
        kill[0].get_array("cursors").ok(),
        Some(&vec![Bson::Int64(id)])
    );
    assert_eq!(kill[0].get_str("killCursors").ok(), Some("c"));
    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// Only a tailable awaitData cursor's getMore carries maxTimeMS (its max_await_time); the
/// find itself carries tailable/awaitData. On the fake server, which scripts an open cursor.
pub async fn tailable_await_get_more_max_time(env: Env) -> Outcome {
    let fake = FakeServer::builder().start();
    fake.on("find", |_| {
        doc! { "ok": 1, "cursor": { "id": 77i64, "ns": "d.c", "firstBatch": [{ "_id": 1 }] } }
    });
    fake.on("getMore", |_| {
        doc! { "ok": 1, "cursor": { "id": 0i64, "ns": "d.c", "nextBatch": [{ "_id": 2 }] } }
    });
    let (client, events) = recording_client(&env, &fake.uri());
    let coll = client.database("d").collection::<Document>("c");
    let wait = Duration::from_millis(250);
    for (kind, tailable, await_data) in [
        (CursorType::NonTailable, false, false),
        (CursorType::Tailable, true, false),
        (CursorType::TailableAwait, true, true),
    ] {
        events.clear();
        let all: Vec<Document> = coll
            .find(doc! {})
            .cursor_type(kind)
            .max_await_time(wait)
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("iterate");
        assert_eq!(all.len(), 2);
        let find = &events.started("find")[0];
        assert_eq!(
            find.get_bool("tailable").unwrap_or(false),
            tailable,
            "{find}"
        );
        assert_eq!(
            find.get_bool("awaitData").unwrap_or(false),
            await_data,
            "{find}"
        );
        let get_more = &events.started("getMore")[0];
        if await_data {
            assert_eq!(get_more.get_i64("maxTimeMS").ok(), Some(250), "{get_more}");
        } else {
            assert!(!get_more.contains_key("maxTimeMS"), "{kind:?}: {get_more}");
        }
    }
    client.shutdown().await;
    Outcome::Pass
}

/// Raw cursors: `Cursor<RawDocumentBuf>` and advance/current/deserialize_current; with_type.
pub async fn raw_cursor(env: Env) -> Outcome {
    let (client, _events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "raw"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    let docs: Vec<Document> = (0..5)
        .map(|i| doc! { "_id": i, "s": format!("n{i}") })
        .collect();
    coll.insert_many(docs.clone()).await.expect("insert");

    let raw: Vec<RawDocumentBuf> = coll
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .batch_size(2u32)
        .await
        .expect("find")
        .with_type::<RawDocumentBuf>()
        .try_collect()
        .await
        .expect("iterate");
    let parsed: Vec<Document> = raw
        .iter()
        .map(|r| Document::try_from(r.as_ref()).expect("valid"))
        .collect();
    assert_eq!(parsed, docs);

    let mut cursor = coll
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .batch_size(2u32)
        .await
        .expect("find");
    assert!(cursor.current().is_empty(), "nothing before advance");
    let mut seen = Vec::new();
    while cursor.advance().await.expect("advance") {
        assert_eq!(
            cursor.current().get_i32("_id").ok(),
            Some(seen.len() as i32)
        );
        seen.push(cursor.deserialize_current().expect("deserialize"));
    }
    assert_eq!(seen, docs);
    assert!(!cursor.advance().await.expect("end stays the end"));
    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// Read preference, read concern and write concern: client → database → collection →
/// operation, on every read action (seen in the commands sent to the real server).
pub async fn read_settings_inheritance(env: Env) -> Outcome {
    let Some(uri) = crate::server_uri() else {
        return NO_SERVER;
    };
    let sep = if uri.contains('?') { '&' } else { '?' };
    let uri = format!("{uri}{sep}readPreference=secondaryPreferred&readConcernLevel=local&w=1");
    let (client, events) = recording_client(&env, &uri);
    let name = db_name(&env, "inherit");
    let db = client.database(&name);
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    coll.insert_one(doc! { "a": 1 }).await.expect("insert");

    async fn all_reads(coll: &anymongo_core::Collection<Document>) {
        let _: Vec<Document> = coll
            .aggregate([doc! { "$match": {} }])
            .await
            .expect("aggregate")
            .try_collect()
            .await
            .expect("iterate");
        coll.count_documents(doc! {})
            .await
            .expect("count_documents");
        coll.estimated_document_count().await.expect("estimated");
        coll.distinct("a", doc! {}).await.expect("distinct");
        coll.find_one(doc! {}).await.expect("find_one");
    }
    let check = |mode: &str, level: &str| {
        for name in ["aggregate", "count", "distinct", "find"] {
            let sent = events.started(name);
            assert!(!sent.is_empty(), "{name} was sent");
            for c in sent {
                assert_eq!(
                    c.get_document("$readPreference")
                        .and_then(|d| d.get_str("mode"))
                        .ok(),
                    Some(mode),
                    "{c}"
                );
                assert_eq!(
                    c.get_document("readConcern")
                        .and_then(|d| d.get_str("level"))
                        .ok(),
                    Some(level),
                    "{c}"
                );
            }
        }
    };

    // From the client.
    events.clear();
    all_reads(&coll).await;
    check("secondaryPreferred", "local");

    // The database overrides the client.
    let db2 = client.database_with_options(
        &name,
        HandleOptions {
            read_preference: Some(ReadPreference::with_mode(ReadPreferenceMode::Nearest)),
            read_concern: Some(ReadConcern {
                level: Some(ReadConcernLevel::Available),
            }),
            ..Default::default()
        },
    );
    events.clear();
    all_reads(&db2.collection("c")).await;
    check("nearest", "available");

    // The collection overrides the database.
    let coll3 = db2.collection_with_options::<Document>(
        "c",
        HandleOptions {
            read_preference: Some(ReadPreference::with_mode(
                ReadPreferenceMode::PrimaryPreferred,
            )),
            read_concern: Some(ReadConcern {
                level: Some(ReadConcernLevel::Majority),
            }),
            ..Default::default()
        },
    );
    events.clear();
    all_reads(&coll3).await;
    check("primaryPreferred", "majority");

    // The operation overrides the collection.
    events.clear();
    let secondary = ReadPreference::with_mode(ReadPreferenceMode::Secondary);
    let local = ReadConcern {
        level: Some(ReadConcernLevel::Local),
    };
    let _ = coll3
        .aggregate([doc! { "$match": {} }])
        .read_preference(secondary.clone())
        .read_concern(local.clone())
        .await
        .expect("aggregate");
    coll3
        .count_documents(doc! {})
        .read_preference(secondary.clone())
        .read_concern(local.clone())
        .await
        .expect("count_documents");
    coll3
        .estimated_document_count()
        .read_preference(secondary.clone())
        .read_concern(local.clone())
        .await
        .expect("estimated");
    coll3
        .distinct("a", doc! {})
        .read_preference(secondary)
        .read_concern(local)
        .await
        .expect("distinct");
    for name in ["aggregate", "count", "distinct"] {
        for c in events.started(name) {
            assert_eq!(
                c.get_document("$readPreference")
                    .and_then(|d| d.get_str("mode"))
                    .ok(),
                Some("secondary"),
                "{c}"
            );
            assert_eq!(
                c.get_document("readConcern")
                    .and_then(|d| d.get_str("level"))
                    .ok(),
                Some("local"),
                "{c}"
            );
        }
    }

    // Write concern: the client's w=1 reaches createIndexes and dropIndexes; a collection's
    // own one wins.
    events.clear();
    coll.create_index(IndexModel::builder().keys(doc! { "a": 1 }).build())
        .await
        .expect("create_index");
    let wc_coll = db.collection_with_options::<Document>(
        "c",
        HandleOptions {
            write_concern: Some(WriteConcern {
                journal: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    wc_coll.drop_indexes().await.expect("drop_indexes");
    assert_eq!(
        events.started("createIndexes")[0]
            .get_document("writeConcern")
            .ok(),
        Some(&doc! { "w": 1i64 })
    );
    assert_eq!(
        events.started("dropIndexes")[0]
            .get_document("writeConcern")
            .ok(),
        Some(&doc! { "j": true })
    );
    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// A duplicate `_id` is a typed write error with code 11000.
pub async fn duplicate_key_is_write_error(env: Env) -> Outcome {
    let (client, _events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "dup"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    coll.insert_one(doc! { "_id": 1 }).await.expect("insert");
    let err = coll
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("duplicate");
    match err.kind() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            assert_eq!(w.code, 11000, "{w:?}");
            assert_eq!(w.index, 0);
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert_eq!(err.code(), Some(11000));
    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}

/// run_cursor_command iterates a cursor-returning command (real server); an unknown command is
/// a command error (fake server: nx-27017 answers unknown commands with ok: 1).
pub async fn run_cursor_command(env: Env) -> Outcome {
    let fake = FakeServer::builder().start();
    let (fake_client, _fake_events) = recording_client(&env, &fake.uri());
    let err = fake_client
        .database("d")
        .run_cursor_command(doc! { "noSuchCommand": 1 })
        .await
        .expect_err("unknown command");
    assert_eq!(err.code(), Some(59), "{err}");
    fake_client.shutdown().await;

    let (client, events) = server_or_skip!(env);
    let db = client.database(&db_name(&env, "runcursor"));
    let coll = db.collection::<Document>("c");
    coll.drop().await.expect("drop");
    let docs: Vec<Document> = (0..7).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs.clone()).await.expect("insert");
    let all: Vec<Document> = db
        .run_cursor_command(doc! { "find": "c", "sort": { "_id": 1 }, "batchSize": 3 })
        .batch_size(3u32)
        .comment("rc")
        .await
        .expect("run_cursor_command")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(all, docs);
    let gm = events.started("getMore");
    assert!(!gm.is_empty());
    assert_eq!(gm[0].get_i64("batchSize").ok(), Some(3));
    assert_eq!(gm[0].get_str("comment").ok(), Some("rc"));
    db.drop().await.expect("drop db");
    client.shutdown().await;
    Outcome::Pass
}
