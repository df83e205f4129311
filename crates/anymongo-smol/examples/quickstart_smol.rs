//! Connect, insert and find on smol. Run against a server with
//! `ci/with-server cargo run -p anymongo-smol --example quickstart_smol`
//! (or set `ANYMONGO_URI` yourself).

use anymongo_smol::anymongo_core::bson::{doc, Document};
use anymongo_smol::{Client, ClientExt};
use futures::TryStreamExt;

fn main() -> anymongo_smol::anymongo_core::Result<()> {
    smol::block_on(run())
}

async fn run() -> anymongo_smol::anymongo_core::Result<()> {
    let uri = std::env::var("ANYMONGO_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let client = Client::with_uri_str(&uri).await?;

    let db = client.database("quickstart");
    let hello = db.run_command(doc! { "hello": 1 }).await?;
    println!(
        "connected: maxWireVersion {}",
        hello.get_i32("maxWireVersion").unwrap_or(0)
    );

    let movies = db.collection::<Document>("movies");
    movies.drop().await?;
    let inserted = movies
        .insert_one(doc! { "title": "Parasite", "year": 2019 })
        .await?;
    println!("inserted {}", inserted.inserted_id);

    let found: Vec<Document> = movies
        .find(doc! { "year": 2019 })
        .await?
        .try_collect()
        .await?;
    println!("found {} movie(s): {:?}", found.len(), found);
    Ok(())
}
