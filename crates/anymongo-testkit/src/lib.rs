//! # anymongo-testkit
//!
//! A scriptable MongoDB wire-protocol fake server for anymongo's tests, on plain std threads (no
//! async runtime), listening on 127.0.0.1 ephemeral ports. It shows what a real server cannot be
//! made to show on demand: faults, elections, wrong signatures, odd replies.
//!
//! ## Protocol
//! OP_MSG (kind-1 document sequences are folded into the command body as arrays; checksummed
//! requests get checksummed replies), OP_QUERY / OP_REPLY for the legacy handshake on
//! `<db>.$cmd`, and OP_COMPRESSED (snappy, zlib, zstd): a hello listing `compression` is answered
//! with the intersection of that list and [`FakeServerBuilder::compressors`], and a compressed
//! request is answered compressed with the same compressor. Requests with `moreToCome` get no
//! reply. With `exhaustAllowed`, an awaitable hello streams a reply per topology change (or
//! `maxAwaitTimeMS`) and a getMore streams its batches, each with `moreToCome` and `responseTo`
//! set to the previous reply's request id. A malformed message closes its connection. One thread per connection.
//!
//! ## API
//! ```no_run
//! use anymongo_testkit::{FakeServer, FailPoint, FaultAction, Times, User, bson::doc};
//! let server = FakeServer::builder()
//!     .max_wire_version(21)
//!     .users([User::new("u", "admin", "pw")])
//!     .start();
//! server.on("ping", |ctx| doc! { "ok": 1, "conn": ctx.connection_id as i64 });
//! server.queue_reply("find", doc! { "ok": 0, "code": 11600, "errmsg": "recovering" });
//! server.fail_point(FailPoint::new(Times::N(1), ["insert"], FaultAction::CloseBeforeReply));
//! let uri = server.uri(); // mongodb://127.0.0.1:<port>/?directConnection=true
//! # let _ = uri;
//! for rec in server.commands_named("insert") { println!("{} {}", rec.connection_id, rec.command); }
//! ```
//! * [`FakeServer::builder`] → [`FakeServerBuilder`]: `max_wire_version`, `compressors`, `users`,
//!   `tls(`[`TlsIdentity`]`)` (`TlsIdentity::generate()` for localhost / 127.0.0.1, `generate_for(names)` for other names), `replica_set(name)` (one-member set), `fast_mode`, `scram_iterations`, `max_connections`, `hello_field`,
//!   `wrong_server_signature`; `start()` / `try_start()`.
//! * [`FakeServer`]: `addr`, `host`, `uri`, `on(name, handler)`, `queue_reply`, `fail_point`,
//!   `set_hello_field`, `remove_hello_field`, `bump_topology_version`,
//!   `clear_fail_points`, `set_wrong_server_signature`, `commands`, `commands_named`,
//!   `clear_commands` (each [`CommandRecord`] also says whether it came as OP_QUERY and its
//!   OP_COMPRESSED compressor id), `connection_count`, `open_connections`, `seed`, `documents`, `document_count`,
//!   `open_cursors`, `kill`, `revive`, `shutdown` (also on drop: joins threads, closes sockets);
//!   on Unix, `listen_unix(path)` also serves on a Unix domain socket ([`UnixSocket`]: `path`,
//!   `uri`). `TlsIdentity::allowing_plaintext()` makes a TLS server also serve clients that do
//!   not start TLS (mongod's `--tlsMode allowTLS`).
//! * Dispatch order for a command: fail points, queued replies, handlers ([`Reply::Default`] falls
//!   through, [`Reply::Merge`] patches the built-in reply), the authentication gate, built-ins.
//! * Built-ins: `hello` / `isMaster` (standalone or replica-set member; awaitable with
//!   `topologyVersion` + `maxAwaitTimeMS`; `saslSupportedMechs`, `speculativeAuthenticate`,
//!   `compression`), `ping`, `buildInfo`, `endSessions`, `saslStart` / `saslContinue`,
//!   `configureFailPoint` (`failCommand`; answers `count`, the times it fired), `replSetStepDown`
//!   (the next member that is up is elected at once), and the in-memory
//!   store (`store/`): `insert`, `find`, `getMore`, `killCursors`, `update`, `delete`,
//!   `findAndModify`, `distinct`, `count`, `aggregate` (`$match $sort $skip $limit $project
//!   $addFields $set $unset $count $group $unwind $lookup $replaceRoot $replaceWith
//!   $sortByCount`), `listCollections`, `listDatabases`, `create`, `drop`, `dropDatabase`,
//!   `createIndexes` / `listIndexes` / `dropIndexes` (unique indexes enforced: 11000). Query
//!   operators `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $not $elemMatch $size $type
//!   $mod $all $and $or $nor $expr`; update operators `$set $unset $inc $mul $min $max $rename
//!   $currentDate $setOnInsert $push $addToSet $pull $pullAll $pop`, replacements and pipelines.
//!   Unknown operators and stages get mongod's codes (2, 9, 40324); unknown commands
//!   `CommandNotFound` (59).
//! * Sessions, as mongod checks them: a `txnNumber` on a standalone is IllegalOperation (20); on
//!   a replica-set member a retryable write (`lsid` + `txnNumber`) that succeeded is answered
//!   from its first reply when retried. Transactions are not simulated.
//! * Write concern: a standalone refuses `w` > 1 (BadValue); a replica-set member checks `w`
//!   against its members after the write (`writeConcernError` 100, 79, or 64 after `wtimeout`
//!   when killed members leave too few up).
//! * Authentication ([`User`]): SCRAM-SHA-1, SCRAM-SHA-256 (mongod's iteration counts, 10,000
//!   and 15,000, unless `scram_iterations`), PLAIN. With users configured, every command but
//!   hello, SASL, ping and buildInfo needs an authenticated connection (code 13).
//! * [`ReplicaSet`]: `start(n, name)`, `try_start_with(n, name, |i, builder| ..)`,
//!   `try_start_named(n, name, host, ..)` (members named `host:<port>`, e.g. `localhost`), `step_down`,
//!   `elect`, `kill`, `revive`, `set_tags`, `reconfig`, `uri`, `hosts`, `members`, `primary`.
//!   Members share one store. A member that is not primary runs a command as mongod's
//!   `secondaryAllowed` says: writes are NotWritablePrimary (10107), reads without a
//!   `$readPreference` other than primary NotPrimaryNoSecondaryOk (13435); such NotPrimary
//!   errors (and those of fail points) carry the member's `topologyVersion`. Every member reply
//!   carries `$clusterTime` (zero signature) and `operationTime`.
//! * Faults: [`FailPoint`] with [`Times`] and [`FaultAction`], also installed by the
//!   `configureFailPoint` command.
//! * [`dns::DnsServer`]: a stub DNS server (UDP and TCP on 127.0.0.1) for `mongodb+srv` tests:
//!   A, AAAA, SRV and TXT records, truncation over UDP, and [`dns::DnsFault`]s (silence, delays,
//!   SERVFAIL, REFUSED, wrong ids, malformed answers); `resolver_config` points a client at it.
//! * [`hostile::HostileServer`]: a raw server that misbehaves on purpose ([`hostile::Hostile`]:
//!   lying lengths, compression bombs, deep nesting, slowloris, half replies, wrong `responseTo`,
//!   endless cursors, accept-and-close), for the hostile-server conformance tests.
//! * Fast mode (benchmarks): no command log, no fail point lookups, hello replies encoded once per
//!   connection and replayed; finds by `_id` use the store's `_id` index.
//! * In every mode the store keeps each document's encoding next to its parsed form (an insert
//!   keeps the bytes of its OP_MSG `documents` sequence), and cursor replies (`find`, `getMore`,
//!   `aggregate`, `listCollections`) are assembled from those bytes: serving a document neither
//!   clones nor re-encodes it (projected or computed documents are encoded once). In fast mode an
//!   insert's `documents` sequence is not even decoded: the store parses a document the first
//!   time a command needs its fields (a filter other than `{}` or `{_id: v}`, a sort, an update).

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod answer;
pub mod auth;
mod commands;
mod conn;
pub mod dns;
pub mod error;
pub mod faults;
pub mod hostile;
mod replset;
mod server;
mod store;
pub mod tls;
#[cfg(unix)]
mod unix;
mod write_concern;

pub use auth::User;
pub use bson;
pub use error::CommandError;
pub use faults::{FailPoint, FaultAction, Times};
pub use replset::ReplicaSet;
pub use server::{CommandContext, CommandRecord, FakeServer, FakeServerBuilder, Handler, Reply};
pub use tls::TlsIdentity;
#[cfg(unix)]
pub use unix::UnixSocket;
