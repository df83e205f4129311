//! Write actions (update, replace, delete, findAndModify, collection bulk write) against the
//! real server (nx-27017 via `ci/with-server`, skipped when `ANYMONGO_URI` is unset) and, for
//! what a real server cannot show on demand (the absence of a reply to a `w: 0` write, write
//! concern errors), against the testkit's fake server. Written once, run on every runtime.

use std::sync::{Arc, Mutex};

use anymongo_core::bson::{doc, Bson, Document};
use anymongo_core::client::{
    CollectionWriteModel, ReturnDocument, UpdateModel, UpdateModifications,
};
use anymongo_core::error::{ErrorKind, WriteFailure};
use anymongo_core::event::{CommandEvent, Event, EventHandler};
use anymongo_core::options::{Acknowledgment, WriteConcern};
use anymongo_core::{Client, ClientOptions, Collection, Error};
use anymongo_testkit::{FailPoint, FakeServer, FaultAction, Reply, Times};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::{Env, Outcome};

const NO_SERVER: Outcome = Outcome::Skip("ANYMONGO_URI not set (run under ci/with-server)");

/// A client for `ANYMONGO_URI` on the runtime under test, or the reason to skip.
fn client(env: &Env) -> Result<Client, Outcome> {
    let Some(uri) = crate::server_uri() else {
        return Err(NO_SERVER);
    };
    Ok(env.client(&uri).expect("build the client"))
}

/// A fresh collection in a database of this test and runtime configuration.
async fn fresh(client: &Client, env: &Env, test: &str) -> Collection<Document> {
    let db = format!("crudw_{}_{}", env.harness.name.replace('-', "_"), test);
    let coll = client.database(&db).collection::<Document>("c");
    coll.drop().await.expect("drop");
    coll
}

async fn all(coll: &Collection<Document>) -> Vec<Document> {
    coll.find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("iterate")
}

fn is_invalid_argument(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::InvalidArgument { .. })
}

fn unacknowledged() -> WriteConcern {
    WriteConcern {
        w: Some(Acknowledgment::Nodes(0)),
        ..Default::default()
    }
}

/// update_one / update_many with operators, upsert, arrayFilters, and the validation done
/// before anything is sent.
pub async fn update_with_operators(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "update_ops").await;
    coll.insert_many([
        doc! { "_id": 1, "n": 1, "grades": [1, 5, 9] },
        doc! { "_id": 2, "n": 2 },
        doc! { "_id": 3, "n": 3 },
    ])
    .await
    .expect("seed");

    let r = coll
        .update_one(doc! { "_id": 2 }, doc! { "$set": { "tag": "two" } })
        .await
        .expect("update_one");
    assert_eq!((r.matched_count, r.modified_count), (1, 1), "{r:?}");
    assert_eq!(r.upserted_id, None);

    let r = coll
        .update_many(doc! { "n": { "$gte": 2 } }, doc! { "$inc": { "n": 10 } })
        .await
        .expect("update_many");
    assert_eq!((r.matched_count, r.modified_count), (2, 2), "{r:?}");

    // Matching but changing nothing: matched 1, modified 0.
    let r = coll
        .update_one(doc! { "_id": 2 }, doc! { "$set": { "tag": "two" } })
        .await
        .expect("no-op update");
    assert_eq!((r.matched_count, r.modified_count), (1, 0), "{r:?}");

    let r = coll
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "grades.$[g]": 0 } })
        .array_filters(vec![doc! { "g": { "$gte": 5 } }])
        .await
        .expect("arrayFilters");
    assert_eq!(r.modified_count, 1);

    let r = coll
        .update_one(doc! { "_id": 7 }, doc! { "$set": { "n": 7 } })
        .upsert(true)
        .await
        .expect("upsert");
    assert_eq!((r.matched_count, r.modified_count), (0, 0), "{r:?}");
    assert_eq!(r.upserted_id, Some(Bson::Int32(7)));

    let docs = all(&coll).await;
    assert_eq!(
        docs,
        vec![
            doc! { "_id": 1, "n": 1, "grades": [1, 0, 0] },
            doc! { "_id": 2, "n": 12, "tag": "two" },
            doc! { "_id": 3, "n": 13 },
            doc! { "_id": 7, "n": 7 },
        ]
    );

    // Validation: typed errors, nothing sent, nothing changed.
    let e = coll
        .update_one(doc! {}, doc! { "n": 1 })
        .await
        .expect_err("replacement-style update");
    assert!(is_invalid_argument(&e), "{e:?}");
    let e = coll
        .update_many(doc! {}, Document::new())
        .await
        .expect_err("empty update");
    assert!(is_invalid_argument(&e), "{e:?}");
    let e = coll
        .update_many(doc! {}, Vec::<Document>::new())
        .await
        .expect_err("empty pipeline");
    assert!(is_invalid_argument(&e), "{e:?}");
    assert_eq!(all(&coll).await, docs);

    // A server-side write error: one document → Write(WriteError); many → BulkWrite.
    let e = coll
        .update_one(doc! { "_id": 2 }, doc! { "$inc": { "tag": 1 } })
        .await
        .expect_err("$inc of a string");
    match e.kind() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            // mongod: 14 TypeMismatch; nx-27017 replies 8 (UnknownError) with the same message.
            assert!([14, 8].contains(&w.code), "{w:?}");
            assert!(w.message.contains("$inc"), "{w:?}");
            assert_eq!(w.index, 0);
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    let e = coll
        .update_many(
            doc! { "_id": { "$in": [2, 3] } },
            doc! { "$inc": { "tag": 1 } },
        )
        .await
        .expect_err("$inc of a string");
    match e.kind() {
        ErrorKind::BulkWrite(f) => {
            assert_eq!(f.write_errors.len(), 1, "{f:?}");
            assert!([14, 8].contains(&f.write_errors[0].code), "{f:?}");
        }
        other => panic!("expected a bulk write error, got {other:?}"),
    }
    client.shutdown().await;
    Outcome::Pass
}

/// Updates given as aggregation pipelines. Deviation: nx-27017 0.8.1 rejects pipeline updates
/// (write error 8, "'list' object has no attribute 'keys'") and the testkit's store does not
/// evaluate pipelines, so a scripted fake-server handler checks what the driver sends (`u` /
/// `update` as an array of stages) and answers as mongod does.
pub async fn update_with_pipeline(env: Env) -> Outcome {
    let (server, client, _events) = fake_client(&env);
    let stage_count = |u: Option<&Bson>| match u {
        Some(Bson::Array(stages)) => stages.iter().all(|s| s.as_document().is_some()) as i32,
        _ => 0,
    };
    server.on("update", move |ctx| {
        let statement = ctx
            .command
            .get_array("updates")
            .ok()
            .and_then(|u| u.first())
            .and_then(Bson::as_document)
            .cloned()
            .unwrap_or_default();
        let multi = statement.get_bool("multi").unwrap_or(false);
        match stage_count(statement.get("u")) {
            0 => Reply::Document(doc! { "ok": 0, "code": 9, "errmsg": "expected a pipeline" }),
            _ if multi => Reply::Document(doc! { "ok": 1, "n": 2, "nModified": 2 }),
            _ => Reply::Document(doc! { "ok": 1, "n": 1, "nModified": 1 }),
        }
    });
    server.on("findAndModify", move |ctx| {
        match stage_count(ctx.command.get("update")) {
            0 => Reply::Document(doc! { "ok": 0, "code": 9, "errmsg": "expected a pipeline" }),
            _ => Reply::Document(doc! {
                "ok": 1,
                "lastErrorObject": { "n": 1, "updatedExisting": true },
                "value": { "_id": 2, "a": 5, "c": 50 },
            }),
        }
    });
    let db = format!("crudw_{}_pipeline", env.harness.name.replace('-', "_"));
    let coll = client.database(&db).collection::<Document>("c");
    let pipeline: UpdateModifications =
        vec![doc! { "$set": { "b": { "$multiply": ["$a", 10] } } }].into();
    let r = coll
        .update_many(doc! {}, pipeline)
        .await
        .expect("pipeline update_many");
    assert_eq!((r.matched_count, r.modified_count), (2, 2), "{r:?}");
    let r = coll
        .update_one(doc! { "_id": 1 }, vec![doc! { "$unset": "a" }])
        .upsert(false)
        .await
        .expect("pipeline update_one");
    assert_eq!((r.matched_count, r.modified_count), (1, 1), "{r:?}");
    let after: Option<Document> = coll
        .find_one_and_update(doc! { "_id": 2 }, vec![doc! { "$set": { "c": "$b" } }])
        .return_document(ReturnDocument::After)
        .await
        .expect("pipeline findAndModify");
    assert_eq!(after, Some(doc! { "_id": 2, "a": 5, "c": 50 }));

    let updates = server.commands_named("update");
    assert_eq!(updates.len(), 2);
    assert_eq!(
        updates[0].command.get_array("updates").expect("updates")[0],
        Bson::Document(doc! {
            "q": {}, "u": [{ "$set": { "b": { "$multiply": ["$a", 10] } } }], "multi": true,
        })
    );
    assert_eq!(
        updates[1].command.get_array("updates").expect("updates")[0],
        Bson::Document(doc! { "q": { "_id": 1 }, "u": [{ "$unset": "a" }], "upsert": false })
    );
    let fam = server.commands_named("findAndModify");
    assert_eq!(fam.len(), 1);
    assert_eq!(
        fam[0].command.get("update"),
        Some(&Bson::Array(vec![Bson::Document(
            doc! { "$set": { "c": "$b" } }
        )]))
    );
    assert_eq!(fam[0].command.get_bool("new").ok(), Some(true));
    client.shutdown().await;
    Outcome::Pass
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Movie {
    #[serde(rename = "_id")]
    id: i32,
    title: String,
    year: i32,
}

/// replace_one with a typed replacement, with and without upsert.
pub async fn replace_one_typed(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "replace")
        .await
        .clone_with_type::<Movie>();
    let alien = Movie {
        id: 1,
        title: "Alien".into(),
        year: 1979,
    };
    coll.insert_one(&alien).await.expect("insert");
    let aliens = Movie {
        title: "Aliens".into(),
        year: 1986,
        ..alien.clone()
    };
    let r = coll
        .replace_one(doc! { "_id": 1 }, &aliens)
        .await
        .expect("replace");
    assert_eq!((r.matched_count, r.modified_count), (1, 1), "{r:?}");
    let r = coll
        .replace_one(
            doc! { "_id": 2 },
            Movie {
                id: 2,
                title: "Heat".into(),
                year: 1995,
            },
        )
        .upsert(true)
        .await
        .expect("replace upsert");
    assert_eq!(r.upserted_id, Some(Bson::Int32(2)));
    let r = coll
        .replace_one(doc! { "_id": 3 }, &alien)
        .await
        .expect("replace nothing");
    assert_eq!((r.matched_count, r.upserted_id.clone()), (0, None));
    let movies: Vec<Movie> = coll
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(movies.len(), 2);
    assert_eq!(movies[0], aliens);
    assert_eq!(movies[1].title, "Heat");

    // A replacement with operators is refused before sending.
    let raw = coll.clone_with_type::<Document>();
    let e = raw
        .replace_one(doc! { "_id": 1 }, doc! { "$set": { "year": 1 } })
        .await
        .expect_err("operators in a replacement");
    assert!(is_invalid_argument(&e), "{e:?}");
    client.shutdown().await;
    Outcome::Pass
}

/// delete_one and delete_many.
pub async fn delete_one_and_many(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "delete").await;
    coll.insert_many((1..=6).map(|i| doc! { "_id": i, "even": i % 2 == 0 }))
        .await
        .expect("seed");
    let r = coll
        .delete_one(doc! { "even": true })
        .comment("crudw delete_one")
        .await
        .expect("delete_one");
    assert_eq!(r.deleted_count, 1);
    let r = coll
        .delete_many(doc! { "even": false })
        .await
        .expect("delete_many");
    assert_eq!(r.deleted_count, 3);
    let r = coll
        .delete_many(doc! { "_id": 100 })
        .await
        .expect("delete nothing");
    assert_eq!(r.deleted_count, 0);
    let ids: Vec<Bson> = all(&coll)
        .await
        .iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids.contains(&Bson::Int32(1)));
    client.shutdown().await;
    Outcome::Pass
}

/// find_one_and_update / _replace / _delete: before and after, sort, projection, upsert.
pub async fn find_one_and_modify(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "fam").await;
    coll.insert_many([
        doc! { "_id": 1, "k": "a", "n": 1 },
        doc! { "_id": 2, "k": "a", "n": 2 },
        doc! { "_id": 3, "k": "b", "n": 3 },
    ])
    .await
    .expect("seed");

    let before = coll
        .find_one_and_update(doc! { "k": "a" }, doc! { "$inc": { "n": 100 } })
        .sort(doc! { "n": -1 })
        .await
        .expect("before");
    assert_eq!(before, Some(doc! { "_id": 2, "k": "a", "n": 2 }));

    let after = coll
        .find_one_and_update(doc! { "_id": 1 }, doc! { "$set": { "k": "z" } })
        .return_document(ReturnDocument::After)
        .projection(doc! { "k": 1, "_id": 0 })
        .await
        .expect("after");
    assert_eq!(after, Some(doc! { "k": "z" }));

    let none = coll
        .find_one_and_update(doc! { "_id": 50 }, doc! { "$set": { "k": "q" } })
        .await
        .expect("no match");
    assert_eq!(none, None);

    let upserted = coll
        .find_one_and_update(doc! { "_id": 60 }, doc! { "$set": { "k": "u" } })
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await
        .expect("upsert");
    assert_eq!(upserted, Some(doc! { "_id": 60, "k": "u" }));

    let replaced_before = coll
        .find_one_and_replace(doc! { "_id": 3 }, doc! { "k": "r" })
        .await
        .expect("replace before");
    assert_eq!(replaced_before, Some(doc! { "_id": 3, "k": "b", "n": 3 }));
    // nx-27017 deviation: replacing a document whose `_id` came from an earlier replacement
    // without `_id` turns its `_id` into a string; mongod keeps it. The replacement carries its
    // `_id` so the test checks the driver, not that server bug.
    let replaced_after = coll
        .find_one_and_replace(doc! { "_id": 3 }, doc! { "_id": 3, "k": "rr" })
        .return_document(ReturnDocument::After)
        .await
        .expect("replace after");
    assert_eq!(replaced_after, Some(doc! { "_id": 3, "k": "rr" }));

    // (nx-27017 deviation: a findAndModify `remove` of a document that an earlier findAndModify
    // upserted returns it but leaves it in place; mongod deletes it. So the delete picks a
    // document that was inserted.)
    let deleted = coll
        .find_one_and_delete(doc! { "n": { "$exists": true } })
        .sort(doc! { "n": -1 })
        .projection(doc! { "n": 1 })
        .await
        .expect("delete");
    assert_eq!(deleted, Some(doc! { "_id": 2, "n": 102 }));
    assert_eq!(
        coll.find_one_and_delete(doc! { "_id": 2 })
            .await
            .expect("delete again"),
        None
    );

    let e = coll
        .find_one_and_update(doc! {}, doc! { "k": 1 })
        .await
        .expect_err("replacement-style update");
    assert!(is_invalid_argument(&e), "{e:?}");
    let e = coll
        .find_one_and_replace(doc! {}, doc! { "$set": { "k": 1 } })
        .await
        .expect_err("operators in a replacement");
    assert!(is_invalid_argument(&e), "{e:?}");

    assert_eq!(
        all(&coll).await,
        vec![
            doc! { "_id": 1, "k": "z", "n": 1 },
            doc! { "_id": 3, "k": "rr" },
            doc! { "_id": 60, "k": "u" },
        ]
    );
    client.shutdown().await;
    Outcome::Pass
}

fn mixed_models() -> Vec<CollectionWriteModel<Document>> {
    vec![
        CollectionWriteModel::insert_one(doc! { "_id": 1, "n": 1 }),
        CollectionWriteModel::insert_one(doc! { "_id": 2, "n": 2 }),
        CollectionWriteModel::update_one(doc! { "_id": 1 }, doc! { "$set": { "n": 10 } }),
        CollectionWriteModel::UpdateMany(
            UpdateModel::new(doc! { "_id": 5 }, doc! { "$set": { "n": 5 } }).upsert(true),
        ),
        CollectionWriteModel::replace_one(doc! { "_id": 2 }, doc! { "r": true }),
        CollectionWriteModel::insert_one(doc! { "_id": 3 }),
        CollectionWriteModel::delete_one(doc! { "_id": 3 }),
        CollectionWriteModel::insert_one(doc! { "_id": 4 }),
        CollectionWriteModel::delete_many(doc! { "_id": { "$gte": 4 } }),
    ]
}

/// A successful mixed bulk write, ordered and unordered.
pub async fn bulk_write_mixed(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "bulk_mixed").await;
    let r = coll.bulk_write(mixed_models()).await.expect("ordered");
    assert_eq!(r.inserted_count, 4, "{r:?}");
    assert_eq!(r.inserted_ids.len(), 4);
    assert_eq!(r.inserted_ids.get(&5), Some(&Bson::Int32(3)));
    assert_eq!(r.matched_count, 2, "{r:?}");
    assert_eq!(r.modified_count, 2, "{r:?}");
    assert_eq!(r.upserted_count, 1);
    assert_eq!(r.upserted_ids.get(&3), Some(&Bson::Int32(5)));
    // delete_one removed _id 3; delete_many removed 4 and the upserted 5.
    assert_eq!(r.deleted_count, 3, "{r:?}");
    assert_eq!(
        all(&coll).await,
        vec![doc! { "_id": 1, "n": 10 }, doc! { "_id": 2, "r": true }]
    );

    // Unordered: all inserts, then all updates, then all deletes.
    let coll = fresh(&client, &env, "bulk_mixed_unordered").await;
    let r = coll
        .bulk_write(vec![
            CollectionWriteModel::delete_many(doc! { "gone": true }),
            CollectionWriteModel::update_many(doc! {}, doc! { "$inc": { "n": 1 } }),
            CollectionWriteModel::insert_one(doc! { "_id": 1, "n": 0 }),
            CollectionWriteModel::insert_one(doc! { "_id": 2, "n": 0, "gone": true }),
        ])
        .ordered(false)
        .await
        .expect("unordered");
    assert_eq!(
        (r.inserted_count, r.matched_count, r.deleted_count),
        (2, 2, 1),
        "{r:?}"
    );
    assert_eq!(all(&coll).await, vec![doc! { "_id": 1, "n": 1 }]);

    let e = coll
        .bulk_write(Vec::<CollectionWriteModel<Document>>::new())
        .await
        .expect_err("no models");
    assert!(is_invalid_argument(&e), "{e:?}");
    client.shutdown().await;
    Outcome::Pass
}

fn duplicate_models() -> Vec<CollectionWriteModel<Document>> {
    vec![
        CollectionWriteModel::insert_one(doc! { "_id": 1 }),
        CollectionWriteModel::update_one(doc! { "_id": 1 }, doc! { "$set": { "a": 1 } }),
        CollectionWriteModel::insert_one(doc! { "_id": 1 }), // duplicate key
        CollectionWriteModel::insert_one(doc! { "_id": 2 }),
        CollectionWriteModel::delete_one(doc! { "_id": 1 }),
    ]
}

/// An ordered bulk write stops at the first error: a typed BulkWrite error with its index and
/// what ran before it.
pub async fn bulk_write_ordered_stops(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "bulk_ordered").await;
    let e = coll
        .bulk_write(duplicate_models())
        .await
        .expect_err("duplicate key");
    let ErrorKind::BulkWrite(f) = e.kind() else {
        panic!("expected a bulk write error, got {e:?}")
    };
    assert_eq!(f.write_errors.len(), 1, "{f:?}");
    assert_eq!(f.write_errors[0].index, 2);
    assert_eq!(f.write_errors[0].code, 11000);
    assert_eq!(f.inserted_ids.keys().copied().collect::<Vec<_>>(), vec![0]);
    assert_eq!((f.matched_count, f.modified_count), (1, 1), "{f:?}");
    assert_eq!(f.deleted_count, 0);
    // Models 3 and 4 never ran.
    assert_eq!(all(&coll).await, vec![doc! { "_id": 1, "a": 1 }]);
    client.shutdown().await;
    Outcome::Pass
}

/// An unordered bulk write carries on after an error and reports it with its model index.
pub async fn bulk_write_unordered_continues(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let coll = fresh(&client, &env, "bulk_unordered").await;
    let e = coll
        .bulk_write(duplicate_models())
        .ordered(false)
        .await
        .expect_err("duplicate key");
    let ErrorKind::BulkWrite(f) = e.kind() else {
        panic!("expected a bulk write error, got {e:?}")
    };
    assert_eq!(f.write_errors.len(), 1, "{f:?}");
    assert_eq!(f.write_errors[0].index, 2);
    assert_eq!(f.write_errors[0].code, 11000);
    assert_eq!(
        f.inserted_ids.keys().copied().collect::<Vec<_>>(),
        vec![0, 3]
    );
    assert_eq!(f.matched_count, 1);
    assert_eq!(f.deleted_count, 1);
    assert_eq!(all(&coll).await, vec![doc! { "_id": 2 }]);
    client.shutdown().await;
    Outcome::Pass
}

/// Starts a fake server and a one-connection client recording command events.
fn fake_client(env: &Env) -> (FakeServer, Client, Arc<Mutex<Vec<CommandEvent>>>) {
    let server = FakeServer::builder().start();
    let options =
        ClientOptions::parse_without_srv_resolution(&format!("{}&maxPoolSize=1", server.uri()))
            .expect("parse uri");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let client = Client::builder(options, env.rt.clone())
        .event_handler(EventHandler::new(move |e| {
            if let Event::Command(c) = e {
                sink.lock().expect("events").push(c.clone());
            }
        }))
        .build()
        .expect("build the client");
    (server, client, events)
}

/// `w: 0` writes go out with `moreToCome` and their replies are never read: the fake server
/// answers every update, delete and insert with an error that the driver never sees, and
/// the writes themselves reach the store.
pub async fn unacknowledged_writes_use_more_to_come(env: Env) -> Outcome {
    let (server, client, events) = fake_client(&env);
    let db = format!("crudw_{}_w0", env.harness.name.replace('-', "_"));
    server
        .seed(
            &db,
            "c",
            vec![doc! { "_id": 1, "n": 1 }, doc! { "_id": 2, "n": 2 }],
        )
        .expect("seed");
    let coll = client.database(&db).collection::<Document>("c");

    let r = coll
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "n": 10 } })
        .write_concern(unacknowledged())
        .await
        .expect("w:0 update_one");
    assert_eq!(r, Default::default(), "no counts without a reply");
    let r = coll
        .delete_one(doc! { "_id": 2 })
        .write_concern(unacknowledged())
        .await
        .expect("w:0 delete_one");
    assert_eq!(r.deleted_count, 0);
    let r = coll
        .bulk_write(vec![CollectionWriteModel::insert_one(doc! { "_id": 3 })])
        .write_concern(unacknowledged())
        .await
        .expect("w:0 bulk_write");
    assert_eq!(r.inserted_ids.get(&0), Some(&Bson::Int32(3)));
    assert_eq!(r.inserted_count, 0);

    // One connection: the find runs after the three writes on the same socket.
    let docs = all(&coll).await;
    assert_eq!(docs, vec![doc! { "_id": 1, "n": 10 }, doc! { "_id": 3 }]);

    // The command log holds the writes with w: 0; the driver reported them done without a
    // reply (its synthesized `{ok: 1}`, no `n`).
    for name in ["update", "delete", "insert"] {
        let recs = server.commands_named(name);
        assert_eq!(recs.len(), 1, "{name}: {recs:?}");
        let wc = recs[0]
            .command
            .get_document("writeConcern")
            .expect("writeConcern");
        assert_eq!(wc.get("w"), Some(&Bson::Int64(0)), "{name}: {wc}");
    }
    let succeeded: Vec<_> = events
        .lock()
        .expect("events")
        .iter()
        .filter_map(|e| match e {
            CommandEvent::Succeeded(s)
                if ["update", "delete", "insert"].contains(&s.command_name.as_str()) =>
            {
                Some(s.reply.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(succeeded, vec![doc! { "ok": 1 }; 3]);

    // Had the driver waited for replies, this handler's errors would have failed the writes.
    server.on("update", |_| {
        Reply::Document(doc! { "ok": 0, "code": 8, "errmsg": "a reply the driver must not read" })
    });
    coll.update_many(doc! {}, doc! { "$set": { "x": 1 } })
        .write_concern(unacknowledged())
        .await
        .expect("w:0 never reads the error reply");
    let e = coll
        .update_many(doc! {}, doc! { "$set": { "x": 1 } })
        .await
        .expect_err("an acknowledged write reads it");
    assert_eq!(e.code(), Some(8), "{e:?}");
    client.shutdown().await;
    Outcome::Pass
}

/// Write concern errors surface: one-document writes as `Write(WriteConcernError)`, multi
/// as `BulkWrite` with the error and the counts, findAndModify as `Write(WriteConcernError)`.
pub async fn write_concern_errors_surface(env: Env) -> Outcome {
    let (server, client, _events) = fake_client(&env);
    let db = format!("crudw_{}_wce", env.harness.name.replace('-', "_"));
    server
        .seed(
            &db,
            "c",
            vec![doc! { "_id": 1, "n": 1 }, doc! { "_id": 2, "n": 2 }],
        )
        .expect("seed");
    let coll = client.database(&db).collection::<Document>("c");
    let wce = || FaultAction::WriteConcernError {
        code: 64,
        code_name: "WriteConcernFailed".into(),
        errmsg: "waiting for replication timed out".into(),
        labels: Some(vec![]),
    };
    server.fail_point(FailPoint::new(Times::N(2), ["update"], wce()));
    let e = coll
        .update_one(doc! { "_id": 1 }, doc! { "$inc": { "n": 1 } })
        .await
        .expect_err("wce");
    match e.kind() {
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => assert_eq!(w.code, 64),
        other => panic!("expected a write concern error, got {other:?}"),
    }
    let e = coll
        .update_many(doc! {}, doc! { "$inc": { "n": 1 } })
        .await
        .expect_err("wce");
    match e.kind() {
        ErrorKind::BulkWrite(f) => {
            assert_eq!(f.write_concern_error.as_ref().map(|w| w.code), Some(64));
            assert!(f.write_errors.is_empty());
            assert_eq!((f.matched_count, f.modified_count), (2, 2), "{f:?}");
        }
        other => panic!("expected a bulk write error, got {other:?}"),
    }
    server.fail_point(FailPoint::new(Times::N(1), ["findAndModify"], wce()));
    let e = coll
        .find_one_and_delete(doc! { "_id": 1 })
        .await
        .expect_err("wce");
    assert_eq!(e.code(), Some(64), "{e:?}");
    server.fail_point(FailPoint::new(Times::N(1), ["delete"], wce()));
    let e = coll.delete_one(doc! { "_id": 2 }).await.expect_err("wce");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Write(WriteFailure::WriteConcernError(_))
        ),
        "{e:?}"
    );
    client.shutdown().await;
    Outcome::Pass
}

/// Every option reaches the wire where the CRUD spec puts it: statement fields in the
/// statement, command fields on the command (checked in the fake server's command log).
pub async fn options_reach_the_wire(env: Env) -> Outcome {
    let (server, client, _events) = fake_client(&env);
    let db = format!("crudw_{}_options", env.harness.name.replace('-', "_"));
    server
        .seed(&db, "c", vec![doc! { "_id": 1, "a": [1, 2] }])
        .expect("seed");
    let coll = client.database(&db).collection::<Document>("c");
    let majority = WriteConcern {
        w: Some(Acknowledgment::Majority),
        ..Default::default()
    };
    coll.update_one(doc! { "_id": 1 }, doc! { "$set": { "b": 1 } })
        .upsert(true)
        .array_filters(vec![doc! { "e": { "$gt": 1 } }])
        .hint("_id_")
        .collation(doc! { "locale": "en" })
        .write_concern(majority.clone())
        .comment("update-comment")
        .let_vars(doc! { "v": 1 })
        .bypass_document_validation(true)
        .sort(doc! { "_id": 1 })
        .await
        .expect("update_one");
    coll.delete_many(doc! { "_id": 5 })
        .hint(doc! { "_id": 1 })
        .collation(doc! { "locale": "fr" })
        .comment("delete-comment")
        .let_vars(doc! { "w": 2 })
        .await
        .expect("delete_many");
    coll.find_one_and_delete(doc! { "_id": 5 })
        .max_time(std::time::Duration::from_secs(2))
        .hint("_id_")
        .write_concern(majority)
        .await
        .expect("find_one_and_delete");

    let update = &server.commands_named("update")[0].command;
    assert_eq!(
        update.get_array("updates").expect("updates")[0],
        Bson::Document(doc! {
            "q": { "_id": 1 }, "u": { "$set": { "b": 1 } }, "upsert": true,
            "arrayFilters": [{ "e": { "$gt": 1 } }], "collation": { "locale": "en" },
            "hint": "_id_", "sort": { "_id": 1 },
        })
    );
    assert_eq!(update.get_bool("ordered").ok(), Some(true));
    assert_eq!(
        update.get_document("writeConcern").ok(),
        Some(&doc! { "w": "majority" })
    );
    assert_eq!(update.get_str("comment").ok(), Some("update-comment"));
    assert_eq!(update.get_document("let").ok(), Some(&doc! { "v": 1 }));
    assert_eq!(update.get_bool("bypassDocumentValidation").ok(), Some(true));

    let delete = &server.commands_named("delete")[0].command;
    assert_eq!(
        delete.get_array("deletes").expect("deletes")[0],
        Bson::Document(doc! {
            "q": { "_id": 5 }, "limit": 0, "collation": { "locale": "fr" }, "hint": { "_id": 1 },
        })
    );
    assert_eq!(delete.get_str("comment").ok(), Some("delete-comment"));
    assert_eq!(delete.get_document("let").ok(), Some(&doc! { "w": 2 }));
    assert!(!delete.contains_key("writeConcern"), "{delete}");

    let fam = &server.commands_named("findAndModify")[0].command;
    assert_eq!(fam.get_bool("remove").ok(), Some(true));
    assert_eq!(fam.get("maxTimeMS"), Some(&Bson::Int64(2000)));
    assert_eq!(fam.get_str("hint").ok(), Some("_id_"));
    assert_eq!(
        fam.get_document("writeConcern").ok(),
        Some(&doc! { "w": "majority" })
    );
    client.shutdown().await;
    Outcome::Pass
}
