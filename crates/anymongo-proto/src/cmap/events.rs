//! CMAP monitoring events (what a pool reports to subscribers).

use std::time::Duration;

use crate::options::ServerAddress;

use super::PoolOptions;

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionClosedReason {
    /// The pool was cleared, making the connection's generation stale.
    Stale,
    /// The connection was available and unused for longer than `maxIdleTimeMS`.
    Idle,
    /// The connection failed to establish or saw an error while in use.
    Error,
    /// The pool was closed.
    PoolClosed,
}

impl ConnectionClosedReason {
    /// The spec's name for the reason (`"stale"`, `"idle"`, `"error"`, `"poolClosed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionClosedReason::Stale => "stale",
            ConnectionClosedReason::Idle => "idle",
            ConnectionClosedReason::Error => "error",
            ConnectionClosedReason::PoolClosed => "poolClosed",
        }
    }
}

/// Why a check-out failed, as reported in [`CmapEvent::ConnectionCheckOutFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckOutFailedReason {
    /// The wait queue timeout passed.
    Timeout,
    /// The pool is closed.
    PoolClosed,
    /// Establishing a connection failed, or the pool is paused / was cleared.
    ConnectionError,
}

impl CheckOutFailedReason {
    /// The spec's name for the reason (`"timeout"`, `"poolClosed"`, `"connectionError"`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutFailedReason::Timeout => "timeout",
            CheckOutFailedReason::PoolClosed => "poolClosed",
            CheckOutFailedReason::ConnectionError => "connectionError",
        }
    }
}

/// A connection pool monitoring event, in the order the pool emits them.
#[derive(Clone, Debug, PartialEq)]
pub enum CmapEvent {
    /// A pool was created (it starts paused).
    PoolCreated {
        address: ServerAddress,
        options: PoolOptions,
    },
    /// The pool was marked ready.
    PoolReady { address: ServerAddress },
    /// The pool was cleared (its generation incremented) and paused.
    PoolCleared {
        address: ServerAddress,
        /// Whether in-use connections were interrupted as part of the clear.
        interrupt_in_use_connections: bool,
    },
    /// The pool was closed.
    PoolClosed { address: ServerAddress },
    /// A connection object was created; it is not yet established.
    ConnectionCreated {
        address: ServerAddress,
        connection_id: u64,
    },
    /// A connection finished its handshake and is ready for use.
    ConnectionReady {
        address: ServerAddress,
        connection_id: u64,
        /// Time from `ConnectionCreated` to this event.
        duration: Duration,
    },
    /// A connection was closed.
    ConnectionClosed {
        address: ServerAddress,
        connection_id: u64,
        reason: ConnectionClosedReason,
    },
    /// A check-out started.
    ConnectionCheckOutStarted { address: ServerAddress },
    /// A check-out failed.
    ConnectionCheckOutFailed {
        address: ServerAddress,
        reason: CheckOutFailedReason,
        /// Time from `ConnectionCheckOutStarted` to this event.
        duration: Duration,
    },
    /// A check-out succeeded.
    ConnectionCheckedOut {
        address: ServerAddress,
        connection_id: u64,
        /// Time from `ConnectionCheckOutStarted` to this event.
        duration: Duration,
    },
    /// A connection was checked back in.
    ConnectionCheckedIn {
        address: ServerAddress,
        connection_id: u64,
    },
}

impl CmapEvent {
    /// The spec's event type name (`"ConnectionPoolCreated"`, `"ConnectionCheckedOut"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            CmapEvent::PoolCreated { .. } => "ConnectionPoolCreated",
            CmapEvent::PoolReady { .. } => "ConnectionPoolReady",
            CmapEvent::PoolCleared { .. } => "ConnectionPoolCleared",
            CmapEvent::PoolClosed { .. } => "ConnectionPoolClosed",
            CmapEvent::ConnectionCreated { .. } => "ConnectionCreated",
            CmapEvent::ConnectionReady { .. } => "ConnectionReady",
            CmapEvent::ConnectionClosed { .. } => "ConnectionClosed",
            CmapEvent::ConnectionCheckOutStarted { .. } => "ConnectionCheckOutStarted",
            CmapEvent::ConnectionCheckOutFailed { .. } => "ConnectionCheckOutFailed",
            CmapEvent::ConnectionCheckedOut { .. } => "ConnectionCheckedOut",
            CmapEvent::ConnectionCheckedIn { .. } => "ConnectionCheckedIn",
        }
    }

    /// The address of the pool that emitted the event.
    pub fn address(&self) -> &ServerAddress {
        match self {
            CmapEvent::PoolCreated { address, .. }
            | CmapEvent::PoolReady { address }
            | CmapEvent::PoolCleared { address, .. }
            | CmapEvent::PoolClosed { address }
            | CmapEvent::ConnectionCreated { address, .. }
            | CmapEvent::ConnectionReady { address, .. }
            | CmapEvent::ConnectionClosed { address, .. }
            | CmapEvent::ConnectionCheckOutStarted { address }
            | CmapEvent::ConnectionCheckOutFailed { address, .. }
            | CmapEvent::ConnectionCheckedOut { address, .. }
            | CmapEvent::ConnectionCheckedIn { address, .. } => address,
        }
    }

    /// The connection the event is about, if any.
    pub fn connection_id(&self) -> Option<u64> {
        match self {
            CmapEvent::ConnectionCreated { connection_id, .. }
            | CmapEvent::ConnectionReady { connection_id, .. }
            | CmapEvent::ConnectionClosed { connection_id, .. }
            | CmapEvent::ConnectionCheckedOut { connection_id, .. }
            | CmapEvent::ConnectionCheckedIn { connection_id, .. } => Some(*connection_id),
            _ => None,
        }
    }
}
