//! Test support for the pool, shared by core's own tests and the cross-runtime suites: the
//! cmap-format spec runners (against the sans-IO machine and against the async pool on any
//! runtime), a mock connector, a deterministic virtual-time [`crate::rt::Runtime`] and a crude
//! real-time one on OS threads.

mod async_runner;
mod runtime;
mod threads;

pub use anymongo_proto::testing::*;
pub use async_runner::{
    run_cmap_format_async, run_cmap_format_async_with, MockConnection, MockConnector,
};
pub use runtime::VirtualRuntime;
pub use threads::ThreadRuntime;
