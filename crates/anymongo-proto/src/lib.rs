//! # anymongo-proto
//!
//! The sans-IO machines of anymongo, the way `quinn-proto` sits under `quinn`: everything a
//! MongoDB driver decides, with none of the I/O. Each machine takes bytes, replies and the
//! current time as inputs and gives bytes, actions and events as outputs; none reads a clock,
//! sleeps, spawns or touches a socket, and this crate depends on no async crate (checked by
//! `ci/check-deps`). Time enters only as `Instant` arguments.
//!
//! - [`wire`]: bytes ⇄ messages (OP_MSG, OP_QUERY/OP_REPLY, OP_COMPRESSED), an incremental
//!   decoder, and [`wire::raw`], the one module that reads raw BSON (scan, validate, decode).
//! - [`uri`]: connection strings → [`options::ClientOptions`] (and warnings).
//! - [`auth`]: SCRAM-SHA-1/256, PLAIN and X.509 as step machines.
//! - [`sdam`]: the topology machine (hello replies, errors and time in; descriptions, events
//!   and actions out); [`selection`]: server selection over a topology description.
//! - [`cmap`]: the connection pool machine and its events.
//! - [`dns`]: DNS queries and answers for `mongodb+srv` (SRV, TXT, A/AAAA), the lookup machine
//!   (tries, timeouts, UDP then TCP) and the seedlist and SRV polling rules.
//! - [`operation`]: each operation builds its command and parses its reply, and declares what
//!   the executor must know (retryability, selection criteria); the handshake is one of them.
//! - [`options`], [`error`], [`event`]: the types the machines speak in, which the driver
//!   re-exports to applications.
//!
//! Applications use `anymongo-core` (re-exported by each runtime adapter), which drives these
//! machines over a runtime. Depend on this crate directly to build a driver of your own I/O, or a
//! test server (the testkit does).

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod error;
pub mod event;
pub mod options;
pub mod time;

pub mod auth;
pub mod cmap;
pub mod dns;
pub mod operation;
pub mod sdam;
pub mod selection;
pub mod uri;
pub mod wire;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use bson;
pub use error::{Error, ErrorKind, Result};
