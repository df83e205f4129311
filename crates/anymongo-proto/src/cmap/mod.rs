//! Connection Monitoring and Pooling (CMAP), sans-IO.
//!
//! - [`machine`]: the pool state machine ([`PoolMachine`]): wait queue, generations,
//!   paused/ready/closed, minPoolSize, maxConnecting, idle and wait-queue timeouts, events. A
//!   pool task (`anymongo-core`'s pool) feeds it check-outs, check-ins, established connections
//!   and the time, and carries out the actions it asks for.
//! - [`events`]: the CMAP monitoring events.

pub mod events;
pub mod machine;

pub use events::{CheckOutFailedReason, CmapEvent, ConnectionClosedReason};
pub use machine::{
    CheckOutFailure, PoolAction, PoolMachine, PoolOptions, PoolState, RequestId, FILL_RETRY_DELAY,
};
