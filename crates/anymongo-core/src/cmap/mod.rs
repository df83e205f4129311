//! Connection Monitoring and Pooling (CMAP).
//!
//! - [`machine`]: the sans-IO pool state machine ([`PoolMachine`]): wait queue, generations,
//!   paused/ready/closed, minPoolSize, maxConnecting, idle and wait-queue timeouts, events.
//! - [`pool`]: the async [`Pool`] that drives a machine on any [`crate::rt::Runtime`], generic over
//!   the connection type through [`Connector`].
//! - [`events`]: the CMAP monitoring events.

pub use anymongo_proto::cmap::{events, machine};
pub mod pool;

pub use events::{CheckOutFailedReason, CmapEvent, ConnectionClosedReason};
pub use machine::{
    CheckOutFailure, PoolAction, PoolMachine, PoolOptions, PoolState, RequestId, FILL_RETRY_DELAY,
};
pub use pool::{
    BackgroundErrorHandler, CheckOut, Connector, EventSink, Interrupted, Pool, PoolConfig,
    PooledConnection,
};
