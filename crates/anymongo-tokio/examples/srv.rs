//! Connect to a `mongodb+srv://` deployment (e.g. MongoDB Atlas) on tokio: the SRV and TXT
//! lookups run on tokio, through the driver's own DNS client. The README's example.
//!
//! `ANYMONGO_SRV_URI='mongodb+srv://user:pw@cluster0.abcde.mongodb.net/' \
//!  cargo run -p anymongo-tokio --example srv`
//! (`ANYMONGO_DNS=cloudflare` asks Cloudflare's resolvers instead of the system's.)

use anymongo_tokio::anymongo_core::bson::doc;
use anymongo_tokio::anymongo_core::dns::ResolverConfig;
use anymongo_tokio::{Client, ClientExt, ClientOptions, ClientOptionsExt};

#[tokio::main]
async fn main() -> anymongo_tokio::anymongo_core::Result<()> {
    let Ok(uri) = std::env::var("ANYMONGO_SRV_URI") else {
        eprintln!("set ANYMONGO_SRV_URI to a mongodb+srv:// connection string");
        return Ok(());
    };
    let client = if std::env::var("ANYMONGO_DNS").as_deref() == Ok("cloudflare") {
        // Name servers of your choice (they then resolve the cluster's host names too).
        let options = ClientOptions::parse(&uri)
            .resolver_config(ResolverConfig::cloudflare())
            .await?;
        Client::with_options(options)?
    } else {
        // The system's name servers (/etc/resolv.conf).
        Client::with_uri_str(&uri).await?
    };
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await?;
    let hosts: Vec<String> = client
        .topology_description()
        .servers
        .keys()
        .map(|a| a.to_string())
        .collect();
    println!("pinged; the deployment's servers: {hosts:?}");
    Ok(())
}
