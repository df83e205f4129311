//! A hostile or broken server never crashes the process, exhausts its memory or outlives a
//! timeout: each case runs a client against a [`HostileServer`] that misbehaves in one way and
//! asserts the typed error, a (generous) time bound, and that the allocation peak of the case
//! stayed under [`MEMORY_BOUND`]. Every case records the error kinds it observed in its
//! transcript, compared across runtimes like every other test.
//!
//! Bounds: timeouts are behaviour, not speed, so they are asserted with room to spare (a 500 ms
//! socket timeout must fire within [`TIME_BOUND`]); memory is measured exactly by the counting
//! allocator the conformance binary installs (cells run one at a time).

use std::future::Future;
use std::time::{Duration, Instant};

use anymongo_core::bson::{doc, Document};
use anymongo_core::error::{Error, ErrorKind};
use anymongo_core::Client;
use anymongo_testkit::hostile::{Hostile, HostileServer};
use futures::TryStreamExt;

use crate::{alloc, Env, Outcome};

/// The most a case may allocate on top of what was allocated when it started (a server
/// announcing 2 GiB used to cost 2 GiB).
pub const MEMORY_BOUND: usize = 16 << 20;
/// How long any case may take: its timeouts are 500 ms, its selections 1 s.
pub const TIME_BOUND: Duration = Duration::from_secs(4);

/// The options every case's client gets: a short socket timeout and server selection, and no
/// heartbeats during the case.
const OPTS: &str = "socketTimeoutMS=500&serverSelectionTimeoutMS=1000&heartbeatFrequencyMS=60000";

fn client(env: &Env, server: &HostileServer, extra: &str) -> Client {
    let uri = format!("{}&{OPTS}{extra}", server.uri());
    env.client(&uri)
        .unwrap_or_else(|e| panic!("client for {uri}: {e}"))
}

/// A client whose events are not recorded: for a server that no check ever succeeds on, how
/// many checks fail in a selection's time, and whether the peer's close reads as an end of
/// stream or a reset, are timing (the case records what it observed instead).
fn unrecorded_client(env: &Env, server: &HostileServer, extra: &str) -> Client {
    let uri = format!("{}&{OPTS}{extra}", server.uri());
    let options =
        anymongo_core::ClientOptions::parse_without_srv_resolution(&uri).expect("a valid URI");
    Client::builder(options, env.rt.clone())
        .build()
        .unwrap_or_else(|e| panic!("client for {uri}: {e}"))
}

/// Runs `op`, returning its result, how long it took and the allocation peak above the start.
async fn measured<T, F: Future<Output = T>>(op: F) -> (T, Duration, usize) {
    assert!(
        alloc::installed(),
        "the counting allocator is not installed (run through tests/conformance.rs)"
    );
    let base = alloc::reset_peak();
    let started = Instant::now();
    let out = op.await;
    let took = started.elapsed();
    (out, took, alloc::peak().saturating_sub(base))
}

/// The kind of `e`, as the transcript records it.
fn kind(e: &Error) -> String {
    match e.kind() {
        ErrorKind::Io(io) => format!("Io({:?})", io.kind()),
        ErrorKind::InvalidResponse { .. } => "InvalidResponse".into(),
        ErrorKind::Command(c) => format!("Command({})", c.code),
        ErrorKind::ServerSelection { .. } => "ServerSelection".into(),
        other => format!("{other:?}"),
    }
}

/// Runs `op` against a server misbehaving as `hostile`; asserts it fails within the bounds,
/// with an error of kind `want` whose message holds `says`; records the outcome.
async fn expect_error<T, F, Fut>(
    env: &Env,
    label: &str,
    hostile: Hostile,
    want: &str,
    says: &str,
    op: F,
) where
    T: std::fmt::Debug,
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = anymongo_core::Result<T>>,
{
    let server = HostileServer::start(hostile);
    let client = if want == "ServerSelection" {
        unrecorded_client(env, &server, "")
    } else {
        client(env, &server, "")
    };
    let (result, took, memory) = measured(op(client.clone())).await;
    client.shutdown().await;
    let err = result.expect_err(label);
    assert_eq!(kind(&err), want, "{label}: {err}");
    assert!(err.to_string().contains(says), "{label}: {err}");
    assert!(took < TIME_BOUND, "{label}: took {took:?}");
    assert!(memory < MEMORY_BOUND, "{label}: allocated {memory} bytes");
    env.transcript.note(format!("{label}: {}", kind(&err)));
}

async fn ping(client: Client) -> anymongo_core::Result<Document> {
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
}

async fn find_all(client: Client) -> anymongo_core::Result<Vec<Document>> {
    let coll = client.database("hostile").collection::<Document>("c");
    coll.find(doc! {}).await?.try_collect().await
}

/// A reply header announcing 2^31-1 bytes is refused on its header (the bound is the client's,
/// whatever the server's hello announced); one announcing 40 MB and then closing costs what
/// was sent, not what was announced.
pub async fn lying_lengths(env: Env) -> Outcome {
    let huge = Hostile::LyingLength {
        announced: i32::MAX,
        sent: 64,
    };
    expect_error(
        &env,
        "2^31-1 announced",
        huge,
        "InvalidResponse",
        "exceeds the maximum of 48000000",
        ping,
    )
    .await;
    let partial = Hostile::LyingLength {
        announced: 40_000_000,
        sent: 1 << 20,
    };
    expect_error(
        &env,
        "40 MB announced, 1 MiB sent",
        partial,
        "Io(UnexpectedEof)",
        "closed",
        ping,
    )
    .await;
    Outcome::Pass
}

/// Compressed frames of a few bytes announcing gigabytes or megabytes: refused before
/// anything of the announced size is allocated.
pub async fn compression_bombs(env: Env) -> Outcome {
    let mut snappy_header = Vec::new();
    let mut v = 40_000_000u32;
    while v >= 0x80 {
        snappy_header.push((v as u8) | 0x80);
        v >>= 7;
    }
    snappy_header.push(v as u8);
    snappy_header.extend_from_slice(&[0x00, b'x', 0xFE, 0x01, 0x00]);
    let cases = [
        (
            "snappy claiming 2^31-17",
            Hostile::CompressedBomb {
                compressor_id: 1,
                uncompressed_size: i32::MAX - 16,
                payload: vec![0xFF; 40],
            },
            "announces 2147483631 uncompressed bytes",
        ),
        (
            "snappy claiming 40 MB in 10 bytes",
            Hostile::CompressedBomb {
                compressor_id: 1,
                uncompressed_size: 40_000_000 - 16,
                payload: snappy_header,
            },
            "decompressed size mismatch",
        ),
        (
            "zlib claiming 40 MB holding 1 KiB",
            Hostile::CompressedBomb {
                compressor_id: 2,
                uncompressed_size: 40_000_000 - 16,
                payload: zlib(&[7; 1024]),
            },
            "decompressed size mismatch",
        ),
        (
            "zstd claiming 40 MB in 20 bytes",
            Hostile::CompressedBomb {
                compressor_id: 3,
                uncompressed_size: 40_000_000 - 16,
                payload: vec![
                    0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            },
            "zstd",
        ),
    ];
    for (label, hostile, says) in cases {
        expect_error(&env, label, hostile, "InvalidResponse", says, ping).await;
    }
    Outcome::Pass
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    anymongo_core::wire::compression::compress(
        &anymongo_core::options::Compressor::Zlib { level: None },
        data,
        &mut out,
    )
    .expect("zlib compresses");
    out
}

/// Replies nested 100 levels (what MongoDB stores, under a reply's envelope) decode on the
/// runtime's own threads in any build; 1,000 and 100,000 levels are typed errors, never a
/// stack overflow; so are a deep topologyVersion in an error reply and a deep hello (read by a
/// client that merely connects).
pub async fn deep_nesting(env: Env) -> Outcome {
    // 100 levels: decoded by find (one-pass decoder) and run_command.
    let server = HostileServer::start(Hostile::DeepReply { depth: 100 });
    let client = client(&env, &server, "");
    let ((docs, reply), took, memory) = measured(async {
        let docs = find_all(client.clone())
            .await
            .expect("a 100-level document");
        let reply = ping(client.clone()).await.expect("a 100-level reply");
        (docs, reply)
    })
    .await;
    client.shutdown().await;
    assert_eq!(docs.len(), 1);
    assert!(reply.contains_key("deep"));
    assert!(took < TIME_BOUND, "took {took:?}");
    assert!(memory < MEMORY_BOUND, "allocated {memory} bytes");
    // Dropping what was decoded is part of reading it.
    drop((docs, reply));
    env.transcript.note("100 levels: decoded");
    for depth in [1_000, 100_000] {
        let label = format!("find at {depth} levels");
        let hostile = Hostile::DeepReply { depth };
        expect_error(
            &env,
            &label,
            hostile,
            "InvalidResponse",
            "nested more than 200 levels",
            find_all,
        )
        .await;
        let label = format!("ping at {depth} levels");
        let hostile = Hostile::DeepReply { depth };
        expect_error(
            &env,
            &label,
            hostile,
            "InvalidResponse",
            "nested more than 200 levels",
            ping,
        )
        .await;
    }
    let hostile = Hostile::DeepTopologyVersion { depth: 100_000 };
    expect_error(
        &env,
        "topologyVersion at 100,000 levels",
        hostile,
        "Command(10107)",
        "not primary",
        ping,
    )
    .await;
    let hostile = Hostile::DeepHello { depth: 100_000 };
    expect_error(
        &env,
        "hello at 100,000 levels",
        hostile,
        "ServerSelection",
        "nested more than 200 levels",
        ping,
    )
    .await;
    Outcome::Pass
}

/// A reply that keeps the socket readable (8 MB/s for a 47 MB body): the 500 ms socket
/// timeout fires on time anyway (2.8-5.8 s for a 2 s timeout before), and the client holds
/// only what arrived.
pub async fn timeouts_fire_while_data_streams(env: Env) -> Outcome {
    let streaming = Hostile::Streaming {
        announced: 47_000_000,
        chunk: 64 * 1024,
        every: Duration::from_millis(8),
    };
    expect_error(
        &env,
        "streaming reply",
        streaming,
        "Io(TimedOut)",
        "socket timeout",
        ping,
    )
    .await;
    let slowloris = Hostile::Slowloris {
        every: Duration::from_millis(50),
    };
    expect_error(
        &env,
        "slowloris",
        slowloris,
        "Io(TimedOut)",
        "socket timeout",
        ping,
    )
    .await;
    expect_error(
        &env,
        "half a reply, then silence",
        Hostile::HalfThenSilence,
        "Io(TimedOut)",
        "socket timeout",
        ping,
    )
    .await;
    Outcome::Pass
}

/// A reply to another request is a protocol error.
pub async fn mismatched_response_to(env: Env) -> Outcome {
    expect_error(
        &env,
        "wrong responseTo",
        Hostile::WrongResponseTo,
        "InvalidResponse",
        "not request",
        ping,
    )
    .await;
    Outcome::Pass
}

/// A cursor that never ends: reading 5,000 documents from it holds one batch at a time, and
/// dropping it sends killCursors.
pub async fn endless_cursor(env: Env) -> Outcome {
    let server = HostileServer::start(Hostile::EndlessCursor { batch: 100 });
    let client = client(&env, &server, "");
    let coll = client.database("hostile").collection::<Document>("c");
    let (read, took, memory) = measured(async {
        let mut cursor = coll.find(doc! {}).await.expect("find");
        let mut read = 0;
        while read < 5_000 {
            cursor.try_next().await.expect("next").expect("endless");
            read += 1;
        }
        read
    })
    .await;
    assert_eq!(read, 5_000);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(memory < MEMORY_BOUND, "allocated {memory} bytes");
    let deadline = Instant::now() + Duration::from_secs(5);
    // The cursor is killed in the background: wait until its reply is in (so that the
    // client's shutdown below never races it).
    let killed = |env: &Env| {
        env.transcript
            .lines()
            .iter()
            .any(|l| l.starts_with("command succeeded killCursors"))
    };
    while !killed(&env) {
        assert!(
            Instant::now() < deadline,
            "no killCursors: {:?}",
            server.commands().len()
        );
        env.rt
            .sleep_until(env.rt.now() + Duration::from_millis(20))
            .await;
    }
    client.shutdown().await;
    env.transcript
        .note("endless cursor: 5000 read, killed when dropped");
    Outcome::Pass
}

/// A server that accepts and closes, or accepts and never answers the handshake: server
/// selection fails in its own time and says why (the second named no cause when
/// connectTimeoutMS >= serverSelectionTimeoutMS).
pub async fn accept_and_close_or_silence(env: Env) -> Outcome {
    expect_error(
        &env,
        "accept and close",
        Hostile::AcceptAndClose,
        "ServerSelection",
        "I/O error",
        ping,
    )
    .await;
    let server = HostileServer::start(Hostile::AcceptAndSilence);
    let client = unrecorded_client(&env, &server, "&connectTimeoutMS=3000");
    let (result, took, memory) = measured(ping(client.clone())).await;
    client.shutdown().await;
    let err = result.expect_err("a silent server");
    assert_eq!(kind(&err), "ServerSelection", "{err}");
    assert!(
        err.to_string()
            .contains("has not answered the connection handshake"),
        "{err}"
    );
    assert!(took < TIME_BOUND, "took {took:?}");
    assert!(memory < MEMORY_BOUND, "allocated {memory} bytes");
    env.transcript.note("accept and silence: ServerSelection");
    Outcome::Pass
}

/// How deep a document the real server stores (MongoDB allows 100 levels).
const STORED_DEPTH: usize = 100;

/// The deepest document MongoDB stores, read back by `find` on the runtime's own threads (a
/// tokio worker has a 2 MiB stack) as a `Document` and as a typed struct (through serde), in a
/// debug build: a 90-level document aborted the process before.
pub async fn stored_deep_documents_read_on_the_runtime(env: Env) -> Outcome {
    let Some(uri) = crate::server_uri() else {
        return Outcome::Skip("ANYMONGO_URI not set (run under ci/with-server)");
    };
    let client = env.client(&uri).expect("build the client");
    let db = format!("hostile{}deep", crate::runtime_token(env.harness));
    let coll = client.database(&db).collection::<Document>("deep");
    coll.drop().await.expect("drop");
    // Level 1 is the document itself; `n` nests levels 2 to STORED_DEPTH.
    let mut inner = doc! { "leaf": 1 };
    for _ in 2..STORED_DEPTH {
        inner = doc! { "n": inner };
    }
    coll.insert_one(doc! { "_id": 1, "n": inner })
        .await
        .expect("MongoDB stores 100 levels");
    let found: Vec<Document> = coll
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("a 100-level document decodes");
    assert_eq!(found.len(), 1);
    assert_eq!(depth_of(&found[0]), STORED_DEPTH);
    #[derive(serde::Deserialize)]
    struct Deep {
        n: Document,
    }
    let typed: Vec<Deep> = client
        .database(&db)
        .collection::<Deep>("deep")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("a 100-level document deserializes");
    assert_eq!(depth_of(&typed[0].n) + 1, STORED_DEPTH);
    coll.drop().await.expect("drop");
    client.shutdown().await;
    env.transcript.note("100 levels stored and read back");
    Outcome::Pass
}

/// How deep the chain of `n` fields of `d` goes (`d` itself is level 1).
fn depth_of(d: &Document) -> usize {
    let mut depth = 1;
    let mut at = d;
    while let Ok(inner) = at.get_document("n") {
        at = inner;
        depth += 1;
    }
    depth
}
