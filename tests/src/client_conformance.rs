//! The driver's behaviour against the real server (nx-27017, via `ci/with-server`), written once
//! and run on every runtime configuration.

use anymongo_core::bson::{doc, Document};
use anymongo_core::Client;
use futures::TryStreamExt;

use crate::{Env, Outcome};

/// A client for `ANYMONGO_URI` on the runtime under test, or the reason to skip.
fn client(env: &Env) -> Result<Client, Outcome> {
    let Some(uri) = crate::server_uri() else {
        return Err(Outcome::Skip(
            "ANYMONGO_URI not set (run under ci/with-server)",
        ));
    };
    Ok(env.client(&uri).expect("build the client"))
}

/// A database name of this test and configuration, so runs on different runtimes never share data.
fn db_name(env: &Env, test: &str) -> String {
    format!("conf_{}_{}", env.harness.name.replace('-', "_"), test)
}

/// The quickstart's flow: hello over OP_MSG through the pool, insert, find.
pub async fn quickstart_flow(env: Env) -> Outcome {
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let db = client.database(&db_name(&env, "quickstart"));
    let hello = db.run_command(doc! { "hello": 1 }).await.expect("hello");
    assert_eq!(
        hello.get_bool("isWritablePrimary").ok(),
        Some(true),
        "{hello}"
    );

    let coll = db.collection::<Document>("movies");
    coll.drop().await.expect("drop");
    let inserted = coll
        .insert_one(doc! { "title": "Parasite", "year": 2019 })
        .await
        .expect("insert");
    let found: Vec<Document> = coll
        .find(doc! { "year": 2019 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("iterate");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].get("_id"), Some(&inserted.inserted_id));
    assert_eq!(found[0].get_str("title").ok(), Some("Parasite"));
    client.shutdown().await;
    Outcome::Pass
}

/// `insert_many` reports exactly what was inserted when a document fails: an ordered insert
/// stops at the failure, an unordered one goes on.
pub async fn insert_many_partial_results(env: Env) -> Outcome {
    use anymongo_core::ErrorKind;
    let client = match client(&env) {
        Ok(c) => c,
        Err(skip) => return skip,
    };
    let db = client.database(&db_name(&env, "insert_many_partial"));
    let coll = db.collection::<Document>("c");
    for ordered in [true, false] {
        coll.drop().await.expect("drop");
        let docs = [doc! { "_id": 1 }, doc! { "_id": 1 }, doc! { "_id": 2 }];
        let err = coll
            .insert_many(docs)
            .ordered(ordered)
            .await
            .expect_err("duplicate _id must fail");
        let ErrorKind::BulkWrite(failure) = err.kind() else {
            panic!("expected a bulk write error, got {err}");
        };
        assert_eq!(failure.write_errors.len(), 1, "{failure:?}");
        assert_eq!(failure.write_errors[0].index, 1);
        assert_eq!(failure.write_errors[0].code, 11000);
        let inserted: Vec<usize> = failure.inserted_ids.keys().copied().collect();
        let stored = count_docs(&coll).await;
        if ordered {
            assert_eq!(inserted, vec![0], "ordered");
            assert_eq!(stored, 1, "ordered");
        } else {
            assert_eq!(inserted, vec![0, 2], "unordered");
            assert_eq!(stored, 2, "unordered");
        }
    }
    client.shutdown().await;
    Outcome::Pass
}

/// Counts a collection's documents by iterating a find (independent of the count helpers).
async fn count_docs(coll: &anymongo_core::Collection<Document>) -> usize {
    let docs: Vec<Document> = coll
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("iterate");
    docs.len()
}
