//! The fake server seen from a plain blocking client built on the core wire codec.

mod support;

use std::time::{Duration, Instant};

use anymongo_proto::options::{AuthMechanism, Compressor};
use anymongo_proto::wire::{Body, MsgFlags, WireError, DEFAULT_MAX_MESSAGE_SIZE};
use anymongo_testkit::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use anymongo_testkit::{
    CommandError, FailPoint, FakeServer, FaultAction, ReplicaSet, Reply, Times, TlsIdentity, User,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use support::{Client, Recv};

fn hello() -> Document {
    doc! { "hello": 1, "$db": "admin" }
}

/// Polls `f` until it holds (the server updates counters on its own threads).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn legacy_handshake_over_op_query() {
    let server = FakeServer::builder().max_wire_version(17).start();
    let mut c = Client::connect(server.addr());
    let (msg, reply) = c.query("admin", doc! { "isMaster": 1, "helloOk": true });
    assert!(
        matches!(msg.body, Body::Reply(_)),
        "OP_QUERY is answered with OP_REPLY"
    );
    assert!(reply.get_bool("ismaster").unwrap());
    assert!(reply.get_bool("helloOk").unwrap());
    assert_eq!(reply.get_i32("maxWireVersion").unwrap(), 17);
    assert_eq!(reply.get_i32("minWireVersion").unwrap(), 0);
    assert_eq!(reply.get_i32("maxBsonObjectSize").unwrap(), 16_777_216);
    assert_eq!(reply.get_i32("maxMessageSizeBytes").unwrap(), 48_000_000);
    assert_eq!(reply.get_i32("maxWriteBatchSize").unwrap(), 100_000);
    assert_eq!(reply.get_i32("logicalSessionTimeoutMinutes").unwrap(), 30);
    assert!(reply.get_datetime("localTime").is_ok());
    let tv = reply.get_document("topologyVersion").unwrap();
    assert!(tv.get_object_id("processId").is_ok());
    assert_eq!(tv.get_i64("counter").unwrap(), 0);
    let conn_id = reply.get_i32("connectionId").unwrap();
    // The $query wrapper is accepted too.
    let (_, reply) = c.query("admin", doc! { "$query": { "ismaster": 1 } });
    assert_eq!(reply.get_i32("connectionId").unwrap(), conn_id);
    let names: Vec<String> = server.commands().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["isMaster", "ismaster"]);
}

#[test]
fn op_msg_handshake_command_and_record() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let reply = c.command(hello());
    assert!(reply.get_bool("isWritablePrimary").unwrap());
    assert_eq!(reply.get_i32("maxWireVersion").unwrap(), 21);
    assert!(reply.get("setName").is_none(), "a standalone");
    assert!(reply.get("$clusterTime").is_none());
    let id = reply.get_i32("connectionId").unwrap() as u32;
    let reply = c.command(doc! { "ping": 1, "$db": "admin" });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    let reply = c.command(doc! { "buildInfo": 1, "$db": "admin" });
    assert_eq!(reply.get_str("version").unwrap(), "7.0.0");
    let reply = c.command(doc! { "endSessions": [ { "id": 1 } ], "$db": "admin" });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    let reply = c.command(doc! { "frobnicate": 1, "$db": "admin" });
    assert_eq!(reply.get_i32("code").unwrap(), 59);
    let reply = c.command(doc! { "ping": 1 });
    assert_eq!(reply.get_i32("code").unwrap(), 40571, "OP_MSG without $db");

    let recs = server.commands_named("ping");
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.connection_id == id));
    assert_eq!(recs[0].db, "admin");
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.open_connections(), 1);
    drop(c);
    eventually("the connection closes", || server.open_connections() == 0);
    assert!(server
        .uri()
        .starts_with(&format!("mongodb://127.0.0.1:{}/?", server.addr().port())));
}

#[test]
fn document_sequences_are_folded_and_checksums_honoured() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let docs = [doc! { "_id": 1 }, doc! { "_id": 2 }, doc! { "_id": 3 }];
    let reply = c.command_seq(doc! { "insert": "c", "$db": "db" }, "documents", &docs);
    assert_eq!(reply.get_i32("n").unwrap(), 3);
    let rec = &server.commands_named("insert")[0];
    assert_eq!(rec.command.get_array("documents").unwrap().len(), 3);

    let id = c.send_flags(
        doc! { "count": "c", "$db": "db" },
        MsgFlags::CHECKSUM_PRESENT,
    );
    let (m, reply) = c.recv_reply(id);
    assert_eq!(reply.get_i64("n").unwrap(), 3);
    match m.body {
        Body::Msg(msg) => assert!(msg.flags.contains(MsgFlags::CHECKSUM_PRESENT)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn more_to_come_gets_no_reply() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    c.send_flags(
        doc! { "insert": "c", "documents": [ { "_id": 1 } ], "$db": "db" },
        MsgFlags::MORE_TO_COME,
    );
    // The next reply on the wire answers the ping, not the insert.
    let reply = c.command(doc! { "ping": 1, "$db": "db" });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    assert_eq!(server.document_count("db", "c"), 1);
}

#[test]
fn compression_negotiated_and_mirrored_for_each_compressor() {
    let all = [
        Compressor::Snappy,
        Compressor::Zlib { level: Some(6) },
        Compressor::Zstd,
    ];
    let server = FakeServer::builder().compressors(&all).start();
    server
        .seed("db", "c", vec![doc! { "_id": 1, "s": "x".repeat(2000) }])
        .unwrap();
    for comp in all {
        let mut c = Client::connect(server.addr());
        let reply =
            c.command(doc! { "hello": 1, "compression": [comp.name(), "bogus"], "$db": "admin" });
        let negotiated: Vec<&str> = reply
            .get_array("compression")
            .unwrap()
            .iter()
            .filter_map(Bson::as_str)
            .collect();
        assert_eq!(negotiated, vec![comp.name()]);
        c.compressor = Some(comp);
        let id = c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
            &doc! { "find": "c", "filter": { "_id": 1 }, "$db": "db" },
        ))));
        let (m, reply) = c.recv_reply(id);
        assert_eq!(
            m.compressor_id,
            Some(comp.id()),
            "answered with {}",
            comp.name()
        );
        let batch = reply
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap();
        assert_eq!(batch.len(), 1);
    }
    // A server without compressors negotiates nothing.
    let plain = FakeServer::builder().start();
    let mut c = Client::connect(plain.addr());
    let reply = c.command(doc! { "hello": 1, "compression": ["zstd"], "$db": "admin" });
    assert!(reply.get("compression").is_none());
}

fn insert_cmd(id: i32) -> Document {
    doc! { "insert": "c", "documents": [ { "_id": id } ], "$db": "db" }
}

#[test]
fn fault_close_before_reply() {
    let server = FakeServer::builder().start();
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["find"],
        FaultAction::CloseBeforeReply,
    ));
    let mut c = Client::connect(server.addr());
    c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &doc! { "find": "c", "$db": "db" },
    ))));
    assert!(matches!(c.recv(), Recv::Closed { buffered: 0 }));
    // Times::N(1): the next connection's find works.
    let mut c = Client::connect(server.addr());
    let reply = c.command(doc! { "find": "c", "$db": "db" });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
}

#[test]
fn fault_close_after_half_reply() {
    // A retryable write (txnNumber) needs a replica-set member: a standalone refuses it.
    let server = FakeServer::builder().replica_set("rs").start();
    server.fail_point(FailPoint::new(
        Times::AlwaysOn,
        ["insert"],
        FaultAction::CloseAfterHalf,
    ));
    let mut c = Client::connect(server.addr());
    let mut cmd = insert_cmd(1);
    cmd.insert(
        "lsid",
        doc! { "id": Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] }) },
    );
    cmd.insert("txnNumber", 1_i64);
    c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &cmd,
    ))));
    match c.recv() {
        Recv::Closed { buffered } => assert!(buffered > 0, "half a message arrived"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.document_count("db", "c"), 1, "the command ran");
    // The retry of that retryable write returns the first result instead of a duplicate key.
    server.clear_fail_points();
    let reply = Client::connect(server.addr()).command(cmd);
    assert_eq!(reply.get_i32("n").unwrap(), 1);
    assert!(reply.get("writeErrors").is_none());
}

#[test]
fn fault_delay_still_replies() {
    let server = FakeServer::builder().start();
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["ping"],
        FaultAction::Delay(Duration::from_millis(20)),
    ));
    let mut c = Client::connect(server.addr());
    let reply = c.command(doc! { "ping": 1, "$db": "admin" });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
}

#[test]
fn fault_garbage_and_oversized_header() {
    let server = FakeServer::builder().start();
    server.fail_point(FailPoint::new(Times::N(1), ["ping"], FaultAction::Garbage));
    let mut c = Client::connect(server.addr());
    c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &doc! { "ping": 1, "$db": "admin" },
    ))));
    assert!(matches!(
        c.recv(),
        Recv::Invalid(WireError::UnknownOpCode(_))
    ));

    server.fail_point(FailPoint::new(
        Times::N(1),
        ["ping"],
        FaultAction::OversizedHeader,
    ));
    let mut c = Client::connect(server.addr());
    c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &doc! { "ping": 1, "$db": "admin" },
    ))));
    match c.recv() {
        Recv::Invalid(WireError::MessageTooLarge { length, max }) => {
            assert_eq!(
                (length, max),
                (DEFAULT_MAX_MESSAGE_SIZE + 1, DEFAULT_MAX_MESSAGE_SIZE)
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fault_error_replies_and_write_concern_errors() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    for code in [10107, 11600, 13436, 91, 6, 112, 11000] {
        server.fail_point(FailPoint::new(
            Times::N(1),
            ["find"],
            FaultAction::error(code).with_labels(&["TransientTransactionError"]),
        ));
        let reply = c.command(doc! { "find": "c", "$db": "db" });
        assert_eq!(reply.get_f64("ok").unwrap(), 0.0);
        assert_eq!(reply.get_i32("code").unwrap(), code);
        assert!(!reply.get_str("codeName").unwrap().is_empty());
        assert!(!reply.get_str("errmsg").unwrap().is_empty());
        assert_eq!(
            reply.get_array("errorLabels").unwrap(),
            &vec![Bson::from("TransientTransactionError")]
        );
    }
    // Without explicit labels a retryable write gets RetryableWriteError, like mongod 4.4+.
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["insert"],
        FaultAction::error(91),
    ));
    let mut cmd = insert_cmd(7);
    cmd.insert("txnNumber", 1_i64);
    let reply = c.command(cmd);
    assert_eq!(
        reply.get_array("errorLabels").unwrap(),
        &vec![Bson::from("RetryableWriteError")]
    );
    assert_eq!(
        server.document_count("db", "c"),
        0,
        "an error fail point skips the command"
    );

    server.fail_point(FailPoint::new(
        Times::N(1),
        ["insert"],
        FaultAction::write_concern_error(64),
    ));
    let reply = c.command(insert_cmd(8));
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    assert_eq!(reply.get_i32("n").unwrap(), 1);
    let wce = reply.get_document("writeConcernError").unwrap();
    assert_eq!(wce.get_i32("code").unwrap(), 64);
    assert_eq!(wce.get_str("codeName").unwrap(), "WriteConcernFailed");
}

#[test]
fn configure_fail_point_command() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let reply = c.command(doc! {
        "configureFailPoint": "failCommand", "mode": { "times": 1 },
        "data": { "failCommands": ["insert"], "errorCode": 10107, "errorLabels": ["X"] }, "$db": "admin",
    });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    let reply = c.command(insert_cmd(1));
    assert_eq!(
        (
            reply.get_i32("code").unwrap(),
            reply.get_str("codeName").unwrap()
        ),
        (10107, "NotWritablePrimary")
    );
    assert_eq!(
        reply.get_array("errorLabels").unwrap(),
        &vec![Bson::from("X")]
    );
    let reply = c.command(insert_cmd(1));
    assert_eq!(reply.get_i32("n").unwrap(), 1, "times: 1 is used up");

    c.command(doc! {
        "configureFailPoint": "failCommand", "mode": "alwaysOn",
        "data": { "failCommands": ["find"], "closeConnection": true }, "$db": "admin",
    });
    let mut c2 = Client::connect(server.addr());
    c2.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &doc! { "find": "c", "$db": "db" },
    ))));
    assert!(matches!(c2.recv(), Recv::Closed { .. }));
    c.command(doc! { "configureFailPoint": "failCommand", "mode": "off", "$db": "admin" });
    let reply = c.command(doc! { "find": "c", "$db": "db" });
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);

    c.command(doc! {
        "configureFailPoint": "failCommand", "mode": { "times": 1 },
        "data": { "failCommands": ["insert"], "blockConnection": true, "blockTimeMS": 10,
                  "writeConcernError": { "code": 91, "errmsg": "Replication is being shut down" } }, "$db": "admin",
    });
    let mut cmd = insert_cmd(2);
    cmd.insert("txnNumber", 3_i64);
    let reply = c.command(cmd);
    assert_eq!(
        reply
            .get_document("writeConcernError")
            .unwrap()
            .get_i32("code")
            .unwrap(),
        91
    );
    assert_eq!(
        reply.get_array("errorLabels").unwrap(),
        &vec![Bson::from("RetryableWriteError")]
    );
    let bad = c
        .command(doc! { "configureFailPoint": "failCommand", "mode": "sometimes", "$db": "admin" });
    assert_eq!(bad.get_i32("code").unwrap(), 2);
}

#[test]
fn handlers_queued_replies_and_panics() {
    let server = FakeServer::builder().start();
    server.on("whoami", |ctx| doc! { "ok": 1, "conn": ctx.connection_id as i64, "db": ctx.db.clone(), "x": ctx.command.get_i32("x").unwrap_or(0) });
    server.on("boom", |_ctx| -> Reply { panic!("handler bug") });
    server.on("ping", |_ctx| Reply::Default);
    server.queue_reply("whoami", doc! { "ok": 1, "queued": true });
    server.queue_reply(
        "whoami",
        CommandError::new(11600, "InterruptedAtShutdown", "bye"),
    );
    let mut c = Client::connect(server.addr());
    let id = c.command(hello()).get_i32("connectionId").unwrap() as i64;
    assert!(c
        .command(doc! { "whoami": 1, "$db": "t" })
        .get_bool("queued")
        .unwrap());
    assert_eq!(
        c.command(doc! { "whoami": 1, "$db": "t" })
            .get_i32("code")
            .unwrap(),
        11600
    );
    let r = c.command(doc! { "whoami": 1, "x": 5, "$db": "t" });
    assert_eq!(
        (
            r.get_i64("conn").unwrap(),
            r.get_str("db").unwrap(),
            r.get_i32("x").unwrap()
        ),
        (id, "t", 5)
    );
    assert_eq!(
        c.command(doc! { "boom": 1, "$db": "t" })
            .get_i32("code")
            .unwrap(),
        1
    );
    assert_eq!(
        c.command(doc! { "ping": 1, "$db": "t" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
    server.on("insert", |_ctx| FaultAction::write_concern_error(100));
    let r = c.command(insert_cmd(5));
    assert_eq!(r.get_i32("n").unwrap(), 1, "the built-in insert ran");
    assert_eq!(
        r.get_document("writeConcernError")
            .unwrap()
            .get_i32("code")
            .unwrap(),
        100
    );
    server.on("whoami", |_ctx| FaultAction::CloseBeforeReply);
    c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &doc! { "whoami": 1, "$db": "t" },
    ))));
    assert!(matches!(c.recv(), Recv::Closed { .. }));
}

#[test]
fn malformed_message_closes_only_that_connection() {
    let server = FakeServer::builder().start();
    let mut bad = Client::connect(server.addr());
    // A header announcing an OP_MSG whose body is not BSON.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&26_i32.to_le_bytes());
    bytes.extend_from_slice(&1_i32.to_le_bytes());
    bytes.extend_from_slice(&0_i32.to_le_bytes());
    bytes.extend_from_slice(&2013_i32.to_le_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]);
    bad.write_bytes(&bytes);
    assert!(matches!(bad.recv(), Recv::Closed { .. }));
    let mut good = Client::connect(server.addr());
    assert_eq!(
        good.command(doc! { "ping": 1, "$db": "a" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
}

#[test]
fn crud_over_the_wire() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let docs: Vec<Document> = (0..7).map(|i| doc! { "_id": i, "k": i % 2 }).collect();
    assert_eq!(
        c.command_seq(doc! { "insert": "c", "$db": "db" }, "documents", &docs)
            .get_i32("n")
            .unwrap(),
        7
    );
    let dup = c.command(insert_cmd(3));
    let we = dup.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(we.get_i32("code").unwrap(), 11000);

    let r = c.command(doc! { "find": "c", "sort": { "_id": 1 }, "batchSize": 3, "$db": "db" });
    let cur = r.get_document("cursor").unwrap();
    let id = cur.get_i64("id").unwrap();
    assert_ne!(id, 0);
    assert_eq!(cur.get_str("ns").unwrap(), "db.c");
    let mut seen: Vec<i32> = cur
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().get_i32("_id").unwrap())
        .collect();
    loop {
        let r = c.command(doc! { "getMore": id, "collection": "c", "batchSize": 3, "$db": "db" });
        let cur = r.get_document("cursor").unwrap();
        seen.extend(
            cur.get_array("nextBatch")
                .unwrap()
                .iter()
                .map(|d| d.as_document().unwrap().get_i32("_id").unwrap()),
        );
        if cur.get_i64("id").unwrap() == 0 {
            break;
        }
    }
    assert_eq!(seen, (0..7).collect::<Vec<_>>());

    let r = c.command(doc! { "find": "c", "batchSize": 1, "$db": "db" });
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    let r = c.command(doc! { "killCursors": "c", "cursors": [id], "$db": "db" });
    assert_eq!(
        r.get_array("cursorsKilled").unwrap(),
        &vec![Bson::Int64(id)]
    );
    assert_eq!(server.open_cursors(), 0);

    let r = c.command(doc! { "update": "c", "updates": [ { "q": { "k": 1 }, "u": { "$set": { "odd": true } }, "multi": true } ], "$db": "db" });
    assert_eq!(r.get_i32("nModified").unwrap(), 3);
    let r = c.command(
        doc! { "delete": "c", "deletes": [ { "q": { "odd": true }, "limit": 0 } ], "$db": "db" },
    );
    assert_eq!(r.get_i32("n").unwrap(), 3);
    assert_eq!(server.document_count("db", "c"), 4);
    assert_eq!(
        server.documents("db", "c"),
        vec![
            doc! { "_id": 0, "k": 0 },
            doc! { "_id": 2, "k": 0 },
            doc! { "_id": 4, "k": 0 },
            doc! { "_id": 6, "k": 0 }
        ]
    );
    let r = c.command(doc! { "find": "c", "filter": { "$where": "1" }, "$db": "db" });
    assert_eq!(r.get_i32("code").unwrap(), 2);
}

// --- authentication -------------------------------------------------------------------------

fn bin(b: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: b.to_vec(),
    })
}

fn payload(d: &Document) -> Vec<u8> {
    d.get_binary_generic("payload").cloned().unwrap_or_default()
}

fn hmac_with(sha1: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    if sha1 {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

/// Test-side SCRAM client math: the client-final message and the expected server signature.
/// For SCRAM-SHA-1 `password` must already be the MongoDB digest.
fn scram_final(
    sha1: bool,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
) -> (String, String) {
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iters = 0;
    for a in server_first.split(',') {
        if let Some(v) = a.strip_prefix("r=") {
            nonce = v;
        } else if let Some(v) = a.strip_prefix("s=") {
            salt = B64.decode(v).unwrap();
        } else if let Some(v) = a.strip_prefix("i=") {
            iters = v.parse().unwrap();
        }
    }
    let salted = if sha1 {
        let mut out = [0u8; 20];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password.as_bytes(), &salt, iters, &mut out);
        out.to_vec()
    } else {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iters, &mut out);
        out.to_vec()
    };
    let client_key = hmac_with(sha1, &salted, b"Client Key");
    let stored = if sha1 {
        sha1::Sha1::digest(&client_key).to_vec()
    } else {
        Sha256::digest(&client_key).to_vec()
    };
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let sig = hmac_with(sha1, &stored, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    let server_key = hmac_with(sha1, &salted, b"Server Key");
    let server_sig = hmac_with(sha1, &server_key, auth_message.as_bytes());
    (
        format!("{without_proof},p={}", B64.encode(proof)),
        format!("v={}", B64.encode(server_sig)),
    )
}

fn scram256_final(password: &str, client_first_bare: &str, server_first: &str) -> (String, String) {
    scram_final(false, password, client_first_bare, server_first)
}

/// Runs SCRAM-SHA-256 and returns (final saslContinue reply, expected server-final).
fn scram256(c: &mut Client, user: &str, password: &str, skip_empty: bool) -> (Document, String) {
    let bare = format!("n={user},r=clientnonce123");
    let start = c.command(doc! {
        "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bin(format!("n,,{bare}").as_bytes()),
        "options": { "skipEmptyExchange": skip_empty }, "$db": "admin",
    });
    assert_eq!(start.get_f64("ok").unwrap(), 1.0, "{start}");
    assert!(!start.get_bool("done").unwrap());
    let conv = start.get_i32("conversationId").unwrap();
    let server_first = String::from_utf8(payload(&start)).unwrap();
    assert!(server_first.starts_with("r=clientnonce123"));
    let (client_final, expected) = scram256_final(password, &bare, &server_first);
    let reply = c.command(doc! { "saslContinue": 1, "conversationId": conv, "payload": bin(client_final.as_bytes()), "$db": "admin" });
    (reply, expected)
}

#[test]
fn scram_sha_256_conversation_and_unauthorized() {
    let server = FakeServer::builder()
        .users([User::new("user", "admin", "pencil")])
        .start();
    let mut c = Client::connect(server.addr());
    let h = c.command(doc! { "hello": 1, "saslSupportedMechs": "admin.user", "$db": "admin" });
    assert_eq!(
        h.get_array("saslSupportedMechs").unwrap(),
        &vec![Bson::from("SCRAM-SHA-1"), Bson::from("SCRAM-SHA-256")]
    );
    let r = c.command(doc! { "find": "c", "$db": "db" });
    assert_eq!(
        (r.get_i32("code").unwrap(), r.get_str("codeName").unwrap()),
        (13, "Unauthorized")
    );
    assert_eq!(
        c.command(doc! { "ping": 1, "$db": "admin" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );

    // Without skipEmptyExchange: done false, then an empty round.
    let (reply, expected) = scram256(&mut c, "user", "pencil", false);
    assert!(!reply.get_bool("done").unwrap());
    assert_eq!(String::from_utf8(payload(&reply)).unwrap(), expected);
    let conv = reply.get_i32("conversationId").unwrap();
    let last = c.command(
        doc! { "saslContinue": 1, "conversationId": conv, "payload": bin(b""), "$db": "admin" },
    );
    assert!(last.get_bool("done").unwrap());
    assert_eq!(
        c.command(doc! { "find": "c", "$db": "db" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );

    // With skipEmptyExchange: done at once.
    let mut c = Client::connect(server.addr());
    let (reply, expected) = scram256(&mut c, "user", "pencil", true);
    assert!(reply.get_bool("done").unwrap());
    assert_eq!(String::from_utf8(payload(&reply)).unwrap(), expected);
    assert_eq!(
        c.command(doc! { "find": "c", "$db": "db" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );

    // Wrong password.
    let mut c = Client::connect(server.addr());
    let (reply, _) = scram256(&mut c, "user", "wrong", true);
    assert_eq!(reply.get_i32("code").unwrap(), 18);
    assert_eq!(reply.get_str("codeName").unwrap(), "AuthenticationFailed");
    assert_eq!(reply.get_str("errmsg").unwrap(), "Authentication failed.");
    assert_eq!(
        c.command(doc! { "find": "c", "$db": "db" })
            .get_i32("code")
            .unwrap(),
        13
    );

    // The wrong-signature switch.
    server.set_wrong_server_signature(true);
    let mut c = Client::connect(server.addr());
    let (reply, expected) = scram256(&mut c, "user", "pencil", true);
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    assert_ne!(String::from_utf8(payload(&reply)).unwrap(), expected);
}

#[test]
fn speculative_authenticate_and_plain() {
    let server = FakeServer::builder()
        .users([
            User::new("user", "admin", "pencil").with_mechanisms(&[AuthMechanism::ScramSha256]),
            User::new("ldap", "$external", "secret").with_mechanisms(&[AuthMechanism::Plain]),
        ])
        .start();
    let mut c = Client::connect(server.addr());
    let bare = "n=user,r=specnonce";
    let h = c.command(doc! { "hello": 1, "$db": "admin", "speculativeAuthenticate": {
        "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bin(format!("n,,{bare}").as_bytes()),
        "options": { "skipEmptyExchange": true }, "db": "admin" } });
    let spec = h.get_document("speculativeAuthenticate").unwrap();
    assert!(!spec.get_bool("done").unwrap());
    let server_first = String::from_utf8(payload(spec)).unwrap();
    let (client_final, expected) = scram256_final("pencil", bare, &server_first);
    let r = c.command(doc! { "saslContinue": 1, "conversationId": spec.get_i32("conversationId").unwrap(), "payload": bin(client_final.as_bytes()), "$db": "admin" });
    assert!(r.get_bool("done").unwrap());
    assert_eq!(String::from_utf8(payload(&r)).unwrap(), expected);
    assert_eq!(
        c.command(doc! { "count": "c", "$db": "db" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );

    // X.509 is not offered.
    let r = c.command(doc! { "authenticate": 1, "mechanism": "MONGODB-X509", "$db": "$external" });
    assert_eq!(r.get_i32("code").unwrap(), 334);

    // SCRAM-SHA-1 is not allowed for this user.
    let mut c = Client::connect(server.addr());
    let r = c.command(doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": bin(b"n,,n=user,r=abc"), "$db": "admin" });
    assert_eq!(r.get_i32("code").unwrap(), 334);

    let r = c.command(doc! { "saslStart": 1, "mechanism": "PLAIN", "payload": bin(b"\0ldap\0nope"), "$db": "$external" });
    assert_eq!(r.get_i32("code").unwrap(), 18);
    let r = c.command(doc! { "saslStart": 1, "mechanism": "PLAIN", "payload": bin(b"\0ldap\0secret"), "$db": "$external" });
    assert!(r.get_bool("done").unwrap());
    assert_eq!(
        c.command(doc! { "count": "c", "$db": "db" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
}

// --- replica sets ---------------------------------------------------------------------------

fn member_hello(rs: &ReplicaSet, i: usize) -> Document {
    Client::connect(rs.member(i).unwrap().addr()).command(hello())
}

#[test]
fn replica_set_views_elections_and_restarts() {
    let rs = ReplicaSet::start(3, "rs0");
    let hosts = rs.hosts();
    assert!(rs.uri().contains("replicaSet=rs0"));
    let h0 = member_hello(&rs, 0);
    let h1 = member_hello(&rs, 1);
    assert!(h0.get_bool("isWritablePrimary").unwrap());
    assert!(!h0.get_bool("secondary").unwrap());
    assert!(!h1.get_bool("isWritablePrimary").unwrap());
    assert!(h1.get_bool("secondary").unwrap());
    for (i, h) in [&h0, &h1].into_iter().enumerate() {
        assert_eq!(h.get_str("setName").unwrap(), "rs0");
        assert_eq!(h.get_str("me").unwrap(), hosts[i]);
        assert_eq!(h.get_str("primary").unwrap(), hosts[0]);
        assert_eq!(h.get_i32("setVersion").unwrap(), 1);
        let listed: Vec<&str> = h
            .get_array("hosts")
            .unwrap()
            .iter()
            .filter_map(Bson::as_str)
            .collect();
        assert_eq!(listed, hosts.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let e1 = h0.get_object_id("electionId").unwrap();
    // Members gossip $clusterTime / operationTime; standalones do not.
    let t0 = h0
        .get_document("$clusterTime")
        .unwrap()
        .get_timestamp("clusterTime")
        .unwrap();
    let t1 = h1
        .get_document("$clusterTime")
        .unwrap()
        .get_timestamp("clusterTime")
        .unwrap();
    assert!((t1.time, t1.increment) > (t0.time, t0.increment));
    assert!(h1.get_timestamp("operationTime").is_ok());
    assert!(h1.get("electionId").is_none());

    // Writes on a secondary fail; reads work when the client allows a secondary, as on mongod.
    let mut c1 = Client::connect(rs.member(1).unwrap().addr());
    let r = c1.command(insert_cmd(1));
    assert_eq!(
        (r.get_i32("code").unwrap(), r.get_str("codeName").unwrap()),
        (10107, "NotWritablePrimary")
    );
    assert_eq!(
        c1.command(
            doc! { "find": "c", "$readPreference": { "mode": "secondaryPreferred" }, "$db": "db" }
        )
        .get_f64("ok")
        .unwrap(),
        1.0
    );
    let r = c1.command(doc! { "find": "c", "$db": "db" });
    assert_eq!(
        (r.get_i32("code").unwrap(), r.get_str("codeName").unwrap()),
        (13435, "NotPrimaryNoSecondaryOk")
    );
    assert!(r.get_document("topologyVersion").is_ok());

    rs.step_down();
    let h0b = member_hello(&rs, 0);
    assert!(!h0b.get_bool("isWritablePrimary").unwrap());
    assert!(h0b.get("primary").is_none());
    assert_eq!(
        h0b.get_document("topologyVersion")
            .unwrap()
            .get_i64("counter")
            .unwrap(),
        1
    );

    rs.elect(2);
    let h2 = member_hello(&rs, 2);
    assert!(h2.get_bool("isWritablePrimary").unwrap());
    assert_eq!(h2.get_str("primary").unwrap(), hosts[2]);
    let e2 = h2.get_object_id("electionId").unwrap();
    assert!(e2.bytes() > e1.bytes(), "electionId grows");
    assert_eq!(
        h2.get_document("topologyVersion")
            .unwrap()
            .get_i64("counter")
            .unwrap(),
        2
    );
    let mut c2 = Client::connect(rs.member(2).unwrap().addr());
    assert_eq!(c2.command(insert_cmd(1)).get_i32("n").unwrap(), 1);

    // Kill closes connections and stops listening; revive listens again as a new process.
    let pid_before = member_hello(&rs, 1)
        .get_document("topologyVersion")
        .unwrap()
        .get_object_id("processId")
        .unwrap();
    rs.kill(1);
    assert!(matches!(c1.recv(), Recv::Closed { .. }));
    assert!(std::net::TcpStream::connect(rs.member(1).unwrap().addr()).is_err());
    rs.revive(1).unwrap();
    let h1c = member_hello(&rs, 1);
    let tv = h1c.get_document("topologyVersion").unwrap();
    assert_ne!(tv.get_object_id("processId").unwrap(), pid_before);
    assert_eq!(tv.get_i64("counter").unwrap(), 0);
    assert_eq!(h1c.get_str("primary").unwrap(), hosts[2]);
}

#[test]
fn awaitable_hello_answers_on_topology_change() {
    let rs = ReplicaSet::start(2, "rs1");
    let first = member_hello(&rs, 0);
    let tv = first.get_document("topologyVersion").unwrap().clone();
    let addr = rs.member(0).unwrap().addr();
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.command(
            doc! { "hello": 1, "topologyVersion": tv, "maxAwaitTimeMS": 20_000, "$db": "admin" },
        )
    });
    // Only change the topology once the awaitable hello is in.
    eventually("the awaitable hello arrives", || {
        rs.member(0).unwrap().commands_named("hello").len() == 2
    });
    rs.step_down();
    let reply = waiter.join().unwrap();
    assert!(!reply.get_bool("isWritablePrimary").unwrap());
    assert_eq!(
        reply
            .get_document("topologyVersion")
            .unwrap()
            .get_i64("counter")
            .unwrap(),
        1
    );
}

// --- TLS and fast mode ----------------------------------------------------------------------

#[test]
fn tls_handshake_with_rustls_client() {
    let identity = TlsIdentity::generate().unwrap();
    assert!(identity.ca_path.starts_with(std::env::temp_dir()));
    assert_eq!(
        std::fs::read_to_string(&identity.ca_path).unwrap(),
        identity.ca_pem
    );
    let server = FakeServer::builder().tls(identity.clone()).start();
    assert!(server.uri().contains("tls=true&tlsCAFile="));
    for name in ["localhost", "127.0.0.1"] {
        let mut c = Client::connect_tls(server.addr(), &identity, name);
        let reply = c.command(hello());
        assert!(reply.get_bool("isWritablePrimary").unwrap());
    }
    // A plain-text client gets no reply.
    let mut c = Client::connect(server.addr());
    c.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &hello(),
    ))));
    assert!(!matches!(c.recv(), Recv::Msg(_)));
}

#[test]
fn fast_mode_replays_hello_and_serves_crud() {
    let server = FakeServer::builder().fast_mode().start();
    let mut c = Client::connect(server.addr());
    let a = c.command(hello());
    let b = c.command(hello());
    assert_eq!(
        a.get_i32("connectionId").unwrap(),
        b.get_i32("connectionId").unwrap()
    );
    assert!(b.get_bool("isWritablePrimary").unwrap());
    assert_eq!(c.command(insert_cmd(1)).get_i32("n").unwrap(), 1);
    let r = c.command(doc! { "find": "c", "filter": { "_id": 1 }, "$db": "db" });
    assert_eq!(
        r.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .len(),
        1
    );
    assert!(server.commands().is_empty(), "fast mode keeps no log");
}

#[test]
fn single_member_set_tags_and_per_member_config() {
    let server = FakeServer::builder().replica_set("solo").start();
    let h = Client::connect(server.addr()).command(hello());
    assert_eq!(h.get_str("setName").unwrap(), "solo");
    assert_eq!(h.get_str("primary").unwrap(), server.host());
    assert!(h.get_bool("isWritablePrimary").unwrap());
    assert!(server.uri().contains("replicaSet=solo"));

    let rs =
        ReplicaSet::try_start_with(2, "rs2", |i, b| b.max_wire_version(17 + i as i32)).unwrap();
    assert_eq!(member_hello(&rs, 0).get_i32("maxWireVersion").unwrap(), 17);
    assert_eq!(member_hello(&rs, 1).get_i32("maxWireVersion").unwrap(), 18);
    rs.set_tags(1, doc! { "dc": "east" });
    let h1 = member_hello(&rs, 1);
    assert_eq!(h1.get_document("tags").unwrap(), &doc! { "dc": "east" });
    assert_eq!(h1.get_i32("setVersion").unwrap(), 2);
    assert!(member_hello(&rs, 0).get("tags").is_none());
    // Members share one store.
    let mut p = Client::connect(rs.member(0).unwrap().addr());
    assert_eq!(p.command(insert_cmd(1)).get_i32("n").unwrap(), 1);
    let mut s = Client::connect(rs.member(1).unwrap().addr());
    let r = s.command(doc! { "findAndModify": "c", "query": { "_id": 1 }, "update": { "$set": { "a": 1 } }, "$db": "db" });
    assert_eq!(
        r.get_i32("code").unwrap(),
        10107,
        "findAndModify is a write"
    );
    let r =
        s.command(doc! { "count": "c", "$readPreference": { "mode": "secondary" }, "$db": "db" });
    assert_eq!(r.get_i64("n").unwrap(), 1);
}

fn more_to_come(m: &anymongo_proto::wire::Message) -> bool {
    match &m.body {
        Body::Msg(msg) => msg.flags.contains(MsgFlags::MORE_TO_COME),
        _ => false,
    }
}

#[test]
fn exhaust_streaming_hello_and_get_more() {
    let rs = ReplicaSet::start(2, "rs3");
    let mut c = Client::connect(rs.member(0).unwrap().addr());
    // A topologyVersion from another process is answered at once; later replies stream.
    let stale =
        doc! { "processId": anymongo_testkit::bson::oid::ObjectId::new(), "counter": 0_i64 };
    let id = c.send_flags(
        doc! { "hello": 1, "topologyVersion": stale, "maxAwaitTimeMS": 20_000, "$db": "admin" },
        MsgFlags::EXHAUST_ALLOWED,
    );
    let (first, reply) = c.recv_reply(id);
    assert!(more_to_come(&first));
    assert!(reply.get_bool("isWritablePrimary").unwrap());
    rs.step_down();
    let (second, reply) = c.recv_reply(first.request_id);
    assert!(more_to_come(&second));
    assert!(!reply.get_bool("isWritablePrimary").unwrap());
    assert_eq!(
        reply
            .get_document("topologyVersion")
            .unwrap()
            .get_i64("counter")
            .unwrap(),
        1
    );
    assert_eq!(
        rs.member(0).unwrap().commands_named("hello").len(),
        1,
        "streamed replies are not requests"
    );

    let server = FakeServer::builder().start();
    server
        .seed("db", "c", (0..5).map(|i| doc! { "_id": i }).collect())
        .unwrap();
    let mut c = Client::connect(server.addr());
    let r = c.command(doc! { "find": "c", "batchSize": 2, "$db": "db" });
    let cursor = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    let id = c.send_flags(
        doc! { "getMore": cursor, "collection": "c", "batchSize": 2, "$db": "db" },
        MsgFlags::EXHAUST_ALLOWED,
    );
    let (m1, r1) = c.recv_reply(id);
    assert!(more_to_come(&m1));
    assert_eq!(
        r1.get_document("cursor")
            .unwrap()
            .get_array("nextBatch")
            .unwrap()
            .len(),
        2
    );
    let (m2, r2) = c.recv_reply(m1.request_id);
    assert!(!more_to_come(&m2), "the stream ends with the cursor");
    assert_eq!(r2.get_document("cursor").unwrap().get_i64("id").unwrap(), 0);
    assert_eq!(
        r2.get_document("cursor")
            .unwrap()
            .get_array("nextBatch")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.command(doc! { "ping": 1, "$db": "db" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
}

#[test]
fn scram_sha_1_uses_the_mongodb_password_digest() {
    let server = FakeServer::builder()
        .users([User::new("user", "admin", "pencil")])
        .start();
    let mut c = Client::connect(server.addr());
    let bare = "n=user,r=sha1nonce";
    let start = c.command(doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": bin(format!("n,,{bare}").as_bytes()), "$db": "admin" });
    let server_first = String::from_utf8(payload(&start)).unwrap();
    let digest: String = md5::Md5::digest(b"user:mongo:pencil")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (client_final, expected) = scram_final(true, &digest, bare, &server_first);
    let conv = start.get_i32("conversationId").unwrap();
    let r = c.command(doc! { "saslContinue": 1, "conversationId": conv, "payload": bin(client_final.as_bytes()), "$db": "admin" });
    assert!(!r.get_bool("done").unwrap());
    assert_eq!(String::from_utf8(payload(&r)).unwrap(), expected);
    let r = c.command(
        doc! { "saslContinue": 1, "conversationId": conv, "payload": bin(b""), "$db": "admin" },
    );
    assert!(r.get_bool("done").unwrap());
    assert_eq!(
        c.command(doc! { "count": "c", "$db": "db" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );

    // The raw password (not the digest) is wrong for SCRAM-SHA-1.
    let mut c = Client::connect(server.addr());
    let start = c.command(doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": bin(format!("n,,{bare}").as_bytes()), "$db": "admin" });
    let server_first = String::from_utf8(payload(&start)).unwrap();
    let (client_final, _) = scram_final(true, "pencil", bare, &server_first);
    let r = c.command(doc! { "saslContinue": 1, "conversationId": start.get_i32("conversationId").unwrap(), "payload": bin(client_final.as_bytes()), "$db": "admin" });
    assert_eq!(r.get_i32("code").unwrap(), 18);
}

#[test]
fn connection_limit_kill_and_drop() {
    let server = FakeServer::builder().max_connections(1).start();
    let mut a = Client::connect(server.addr());
    assert_eq!(
        a.command(doc! { "ping": 1, "$db": "a" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
    let mut b = Client::connect(server.addr());
    b.send(Body::Msg(anymongo_proto::wire::OpMsg::new(support::raw(
        &doc! { "ping": 1, "$db": "a" },
    ))));
    assert!(matches!(b.recv(), Recv::Closed { .. }), "over the limit");
    assert_eq!(server.connection_count(), 1);

    server.kill();
    assert!(!server.is_listening());
    assert_eq!(
        server.open_connections(),
        0,
        "kill joins the connection threads"
    );
    assert!(matches!(a.recv(), Recv::Closed { .. }));
    server.revive().unwrap();
    let mut c = Client::connect(server.addr());
    assert_eq!(
        c.command(doc! { "ping": 1, "$db": "a" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
    let addr = server.addr();
    drop(server);
    assert!(matches!(c.recv(), Recv::Closed { .. }));
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn merged_and_runtime_hello_fields() {
    let server = FakeServer::builder().hello_field("msg", "isdbgrid").start();
    let mut c = Client::connect(server.addr());
    let h = c.command(hello());
    assert_eq!(h.get_str("msg").unwrap(), "isdbgrid");
    let counter = |h: &Document| {
        h.get_document("topologyVersion")
            .unwrap()
            .get_i64("counter")
            .unwrap()
    };
    assert_eq!(counter(&h), 0);
    server.set_hello_field("maxWireVersion", 8);
    let h = c.command(hello());
    assert_eq!(h.get_i32("maxWireVersion").unwrap(), 8);
    assert_eq!(counter(&h), 1, "a changed hello bumps the topology version");
    server.remove_hello_field("maxWireVersion");
    assert_eq!(c.command(hello()).get_i32("maxWireVersion").unwrap(), 21);

    server.on("hello", |ctx| {
        Reply::Merge(doc! { "isWritablePrimary": false, "seenConn": ctx.connection_id as i64 })
    });
    let h = c.command(hello());
    assert!(!h.get_bool("isWritablePrimary").unwrap());
    assert!(h.get_i64("seenConn").is_ok());
    assert_eq!(
        h.get_i32("maxBsonObjectSize").unwrap(),
        16_777_216,
        "the rest is built in"
    );
    assert_eq!(h.keys().last().map(String::as_str), Some("ok"));
    server.on("insert", |_ctx| {
        Reply::Merge(doc! { "ok": 0.0, "code": 8000 })
    });
    let r = c.command(insert_cmd(1));
    assert_eq!(
        (
            r.get_f64("ok").unwrap(),
            r.get_i32("code").unwrap(),
            r.get_i32("n").unwrap()
        ),
        (0.0, 8000, 1)
    );
}

#[test]
fn ill_typed_commands_get_errors_not_crashes() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let bad = [
        doc! { "find": 5, "$db": "db" },
        doc! { "find": "c", "filter": 3, "$db": "db" },
        doc! { "find": "c", "skip": -1, "$db": "db" },
        doc! { "find": "c", "sort": { "a": 3 }, "$db": "db" },
        doc! { "find": "c", "projection": { "a": 1, "b": 0 }, "$db": "db" },
        doc! { "insert": "c", "documents": [1, 2], "$db": "db" },
        doc! { "insert": "c", "$db": "db" },
        doc! { "delete": "c", "deletes": [ { "q": {}, "limit": 5 } ], "$db": "db" },
        doc! { "getMore": "x", "collection": "c", "$db": "db" },
        doc! { "killCursors": "c", "cursors": ["x"], "$db": "db" },
        doc! { "aggregate": 1, "pipeline": [], "$db": "db" },
        doc! { "aggregate": "c", "pipeline": [ { "$frobnicate": { "_id": 1 } } ], "cursor": {}, "$db": "db" },
        doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": "x", "$db": "admin" },
        doc! { "saslContinue": 1, "conversationId": 99, "payload": bin(b""), "$db": "admin" },
        doc! { "configureFailPoint": "failCommand", "mode": { "times": 1 }, "data": {}, "$db": "admin" },
    ];
    for cmd in bad {
        let r = c.command(cmd.clone());
        assert_eq!(r.get_f64("ok").unwrap(), 0.0, "{cmd} -> {r}");
        assert!(r.get_i32("code").is_ok(), "{r}");
    }
    let r = c.command(doc! { "update": "c", "updates": [ { "q": {}, "u": { "$inc": { "a": "x" } }, "upsert": true } ], "$db": "db" });
    assert_eq!(
        r.get_array("writeErrors").unwrap()[0]
            .as_document()
            .unwrap()
            .get_i32("code")
            .unwrap(),
        14
    );
}

#[test]
fn random_bytes_never_take_the_server_down() {
    use rand::{Rng, SeedableRng};
    let server = FakeServer::builder()
        .compressors(&[
            Compressor::Snappy,
            Compressor::Zlib { level: None },
            Compressor::Zstd,
        ])
        .start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..60 {
        let mut c = Client::connect(server.addr());
        let len: usize = rng.random_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 2 == 0 && bytes.len() >= 16 {
            // A plausible header: the real length and OP_MSG or OP_COMPRESSED.
            let n = bytes.len() as i32;
            bytes[..4].copy_from_slice(&n.to_le_bytes());
            let op: i32 = if i % 4 == 0 { 2013 } else { 2012 };
            bytes[12..16].copy_from_slice(&op.to_le_bytes());
        }
        c.write_bytes(&bytes);
        drop(c);
    }
    let mut c = Client::connect(server.addr());
    assert_eq!(
        c.command(doc! { "ping": 1, "$db": "a" })
            .get_f64("ok")
            .unwrap(),
        1.0
    );
    eventually("every garbage connection closes", || {
        server.open_connections() == 1
    });
}

#[test]
fn cursor_replies_keep_their_shape_when_patched() {
    let docs: Vec<Document> = (0..5)
        .map(|i| doc! { "_id": i, "s": "x".repeat(i as usize) })
        .collect();
    let batch = |r: &Document, key: &str| -> Vec<Bson> {
        r.get_document("cursor")
            .unwrap()
            .get_array(key)
            .unwrap()
            .clone()
    };
    // A replica-set member puts `operationTime` / `$clusterTime` before `ok` in cursor replies.
    let rs = ReplicaSet::start(1, "rs9");
    rs.member(0).unwrap().seed("db", "c", docs.clone()).unwrap();
    let mut c = Client::connect(rs.member(0).unwrap().addr());
    let r = c.command(doc! { "find": "c", "batchSize": 2, "$db": "db" });
    let keys: Vec<&str> = r.keys().map(String::as_str).collect();
    assert_eq!(keys, ["cursor", "operationTime", "$clusterTime", "ok"]);
    assert_eq!(
        batch(&r, "firstBatch"),
        docs[..2]
            .iter()
            .cloned()
            .map(Bson::Document)
            .collect::<Vec<_>>()
    );
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    let r = c.command(doc! { "getMore": id, "collection": "c", "$db": "db" });
    assert_eq!(
        batch(&r, "nextBatch"),
        docs[2..]
            .iter()
            .cloned()
            .map(Bson::Document)
            .collect::<Vec<_>>()
    );
    assert!(r.get_document("$clusterTime").is_ok());
    assert_eq!(r.keys().last().map(String::as_str), Some("ok"));

    // A handler's Merge and a write-concern-error fail point patch a cursor reply.
    let server = FakeServer::builder().start();
    server.seed("db", "c", docs.clone()).unwrap();
    server.on("find", |_| Reply::Merge(doc! { "extra": 1 }));
    let mut c = Client::connect(server.addr());
    let r = c.command(doc! { "find": "c", "filter": { "_id": 3 }, "$db": "db" });
    assert_eq!(r.get_i32("extra").unwrap(), 1);
    assert_eq!(
        batch(&r, "firstBatch"),
        vec![Bson::Document(docs[3].clone())]
    );
    assert_eq!(r.keys().last().map(String::as_str), Some("ok"));
    server.remove_handler("find");
    server.fail_point(FailPoint::new(
        Times::N(1),
        ["aggregate"],
        FaultAction::write_concern_error(64),
    ));
    let r = c.command(doc! { "aggregate": "c", "pipeline": [ { "$match": { "_id": { "$gte": 3 } } }, { "$project": { "s": 0 } } ], "cursor": {}, "$db": "db" });
    assert_eq!(
        r.get_document("writeConcernError")
            .unwrap()
            .get_i32("code")
            .unwrap(),
        64
    );
    assert_eq!(
        batch(&r, "firstBatch"),
        vec![
            Bson::Document(doc! { "_id": 3 }),
            Bson::Document(doc! { "_id": 4 })
        ]
    );
    // Projections are applied to the served bytes; the stored documents are unchanged.
    let r = c.command(doc! { "find": "c", "projection": { "s": 1, "_id": 0 }, "limit": 2, "skip": 1, "$db": "db" });
    assert_eq!(
        batch(&r, "firstBatch"),
        vec![
            Bson::Document(doc! { "s": "x" }),
            Bson::Document(doc! { "s": "xx" })
        ]
    );
    assert_eq!(server.documents("db", "c"), docs);
}

#[test]
fn fast_mode_inserts_from_sequences_behave_like_decoded_ones() {
    let server = FakeServer::builder().fast_mode().start();
    let mut c = Client::connect(server.addr());
    let docs: Vec<Document> = (0..4).map(|i| doc! { "_id": i, "k": i % 2 }).collect();
    let r = c.command_seq(doc! { "insert": "c", "$db": "db" }, "documents", &docs);
    assert_eq!(r.get_i32("n").unwrap(), 4);
    let r = c.command_seq(
        doc! { "insert": "c", "ordered": false, "$db": "db" },
        "documents",
        &[doc! { "_id": 1 }, doc! { "no_id": true }],
    );
    assert_eq!(r.get_i32("n").unwrap(), 1);
    assert_eq!(
        r.get_array("writeErrors").unwrap()[0]
            .as_document()
            .unwrap()
            .get_i32("code")
            .unwrap(),
        11000
    );
    let r =
        c.command(doc! { "find": "c", "filter": { "k": 1 }, "sort": { "_id": -1 }, "$db": "db" });
    assert_eq!(
        r.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap(),
        &vec![
            Bson::Document(docs[3].clone()),
            Bson::Document(docs[1].clone())
        ]
    );
    let stored = server.documents("db", "c");
    assert_eq!(stored.len(), 5);
    assert_eq!(&stored[..4], &docs[..]);
    assert!(stored[4].get_object_id("_id").is_ok());
    // A handler in fast mode still sees the documents.
    server.on("insert", |ctx| {
        let n = ctx
            .command
            .get_array("documents")
            .map_or(-1, |a| a.len() as i32);
        Reply::Document(doc! { "ok": 1.0, "n": n })
    });
    let r = c.command_seq(
        doc! { "insert": "c", "$db": "db" },
        "documents",
        &[doc! { "_id": 10 }, doc! { "_id": 11 }],
    );
    assert_eq!(r.get_i32("n").unwrap(), 2);
    assert_eq!(server.document_count("db", "c"), 5);
}

#[test]
fn write_concern_is_checked_against_the_members_that_are_up() {
    // A standalone refuses w > 1 before writing.
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let mut cmd = insert_cmd(1);
    cmd.insert("writeConcern", doc! { "w": 2 });
    let r = c.command(cmd);
    assert_eq!(r.get_i32("code").unwrap(), 2, "{r}");
    assert_eq!(server.document_count("db", "c"), 0);

    let rs = ReplicaSet::start(3, "rs_wc");
    let mut p = Client::connect(rs.member(0).unwrap().addr());
    let with_wc = |id: i32, wc: Document| {
        let mut cmd = insert_cmd(id);
        cmd.insert("writeConcern", wc);
        cmd
    };
    let r = p.command(with_wc(1, doc! { "w": 3, "wtimeout": 1000 }));
    assert!(r.get("writeConcernError").is_none(), "{r}");
    let r = p.command(with_wc(2, doc! { "w": 4 }));
    let wce = r.get_document("writeConcernError").unwrap();
    assert_eq!(
        (r.get_i32("n").unwrap(), wce.get_i32("code").unwrap()),
        (1, 100)
    );
    let r = p.command(with_wc(3, doc! { "w": "dc1" }));
    assert_eq!(
        r.get_document("writeConcernError")
            .unwrap()
            .get_i32("code")
            .unwrap(),
        79
    );
    rs.kill(2);
    let r = p.command(with_wc(4, doc! { "w": "majority", "wtimeout": 1000 }));
    assert!(r.get("writeConcernError").is_none(), "{r}");
    let started = Instant::now();
    let r = p.command(with_wc(5, doc! { "w": 3, "wtimeout": 100 }));
    let wce = r.get_document("writeConcernError").unwrap();
    assert_eq!(wce.get_i32("code").unwrap(), 64);
    assert!(wce
        .get_document("errInfo")
        .unwrap()
        .get_bool("wtimeout")
        .unwrap());
    assert!(started.elapsed() >= Duration::from_millis(100));
    rs.revive(2).unwrap();
    let r = p.command(with_wc(6, doc! { "w": 3 }));
    assert!(r.get("writeConcernError").is_none(), "{r}");
    assert_eq!(rs.member(0).unwrap().document_count("db", "c"), 6);
}

#[test]
fn repl_set_step_down_elects_the_next_member() {
    let rs = ReplicaSet::start(3, "rs_sd");
    let mut s = Client::connect(rs.member(1).unwrap().addr());
    let r = s.command(doc! { "replSetStepDown": 10, "$db": "admin" });
    assert_eq!(r.get_i32("code").unwrap(), 10107, "{r}");
    assert!(r.get_document("topologyVersion").is_ok());
    let before = rs.election_id();
    let mut p = Client::connect(rs.member(0).unwrap().addr());
    let r = p.command(doc! { "replSetStepDown": 10, "$db": "admin" });
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(rs.primary(), Some(1));
    assert!(rs.election_id().bytes() > before.bytes());
    let r = Client::connect(FakeServer::builder().start().addr())
        .command(doc! { "replSetStepDown": 10, "$db": "admin" });
    assert_eq!(r.get_i32("code").unwrap(), 76);
}

#[test]
fn configure_fail_point_counts_firings_and_unique_indexes_refuse_duplicates() {
    let server = FakeServer::builder().start();
    let mut c = Client::connect(server.addr());
    let on = doc! { "configureFailPoint": "failCommand", "mode": { "times": 2 },
    "data": { "failCommands": ["ping"], "errorCode": 2 }, "$db": "admin" };
    assert_eq!(c.command(on.clone()).get_i32("count").unwrap(), 0);
    for _ in 0..3 {
        c.command(doc! { "ping": 1, "$db": "admin" });
    }
    let off = doc! { "configureFailPoint": "failCommand", "mode": "off", "$db": "admin" };
    assert_eq!(c.command(off).get_i32("count").unwrap(), 2);
    assert_eq!(c.command(on).get_i32("count").unwrap(), 2, "never reset");

    let r = c.command(doc! { "createIndexes": "u", "indexes": [ { "key": { "k": 1 }, "name": "k_1", "unique": true } ], "$db": "db" });
    assert_eq!(r.get_i32("numIndexesAfter").unwrap(), 2, "{r}");
    c.command(doc! { "insert": "u", "documents": [ { "_id": 1, "k": "a" } ], "$db": "db" });
    let r = c.command(doc! { "insert": "u", "documents": [ { "_id": 2, "k": "a" } ], "$db": "db" });
    let e = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(e.get_i32("code").unwrap(), 11000);
    assert_eq!(e.get_document("keyValue").unwrap(), &doc! { "k": "a" });
    let r = c.command(doc! { "listIndexes": "u", "$db": "db" });
    let names: Vec<&str> = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .filter_map(|i| i.as_document().and_then(|d| d.get_str("name").ok()))
        .collect();
    assert_eq!(names, vec!["_id_", "k_1"]);
}
