//! # anymongo-core
//!
//! The runtime-agnostic heart of anymongo, a MongoDB driver that works the same on every async
//! runtime. Everything here is sans-IO (state machines that take bytes, replies and the current
//! time as inputs and give bytes, actions and events as outputs) except the async [`client`]
//! layer, which drives those machines through the [`rt::Runtime`] and [`rt::Stream`] traits.
//!
//! Applications depend on this crate plus one adapter crate (`anymongo-tokio`,
//! `anymongo-async-std` or `anymongo-smol`).

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod rt;

pub mod adapter;

pub mod client;
pub mod cmap;
pub mod conn;
pub mod cursor;
pub mod dns;
pub mod tls;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use anymongo_proto as proto;
pub use anymongo_proto::{auth, error, event, operation, options, sdam, selection, uri, wire};

pub use bson;
pub use client::{Client, Collection, Database};
pub use cursor::Cursor;
pub use error::{Error, ErrorKind, Result};
pub use options::ClientOptions;
