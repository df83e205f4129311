//! Test support for the pool, shared by core's own tests and the cross-runtime suites: the
//! cmap-format spec runners (against the sans-IO machine and against the async pool on any
//! runtime), a mock connector, a deterministic virtual-time [`crate::rt::Runtime`] and a crude
//! real-time one on OS threads.

mod async_runner;
mod format;
mod machine_runner;
mod runtime;
mod threads;

pub use async_runner::{
    run_cmap_format_async, run_cmap_format_async_with, MockConnection, MockConnector,
};
pub use format::{
    check_outcome, classify_error, classify_failure, count_events, event_to_document, matches,
    skip_reason, CmapFormatTest, Op, TestError, TestOperation, TestPoolOptions,
    DEFAULT_WAIT_FOR_EVENT,
};
pub use machine_runner::run_cmap_format_machine;
pub use runtime::VirtualRuntime;
pub use threads::ThreadRuntime;
