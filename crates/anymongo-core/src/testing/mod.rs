//! Test support (feature `test-support`; never part of an application's build), shared by
//! core's own tests and the cross-runtime suites: the cmap-format runner against the async pool
//! on any runtime (the files, their checks and the runner against the sans-IO machine are
//! `anymongo_proto::testing`'s, re-exported here), a mock connector, a deterministic
//! virtual-time [`crate::rt::Runtime`] and a crude real-time one on OS threads.

mod async_runner;
mod runtime;
mod threads;

pub use anymongo_proto::testing::*;
pub use async_runner::{
    run_cmap_format_async, run_cmap_format_async_with, MockConnection, MockConnector,
};
pub use runtime::VirtualRuntime;
pub use threads::ThreadRuntime;
