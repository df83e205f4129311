//! SDAM monitoring events.

use std::sync::Arc;
use std::time::Duration;

use bson::oid::ObjectId;
use bson::Document;

use super::description::{ServerDescription, TopologyDescription};
use crate::options::ServerAddress;

/// An SDAM event, as the SDAM logging and monitoring spec defines them.
#[derive(Clone, Debug, PartialEq)]
pub enum SdamEvent {
    /// The topology was created; always the first event.
    TopologyOpening { topology_id: ObjectId },
    /// The topology description changed (never published for RTT-only changes).
    TopologyDescriptionChanged {
        topology_id: ObjectId,
        previous: Arc<TopologyDescription>,
        new: Arc<TopologyDescription>,
    },
    /// The topology was closed; always the last event.
    TopologyClosed { topology_id: ObjectId },
    /// A server was added (before its monitor starts).
    ServerOpening {
        topology_id: ObjectId,
        address: ServerAddress,
    },
    /// A server was removed.
    ServerClosed {
        topology_id: ObjectId,
        address: ServerAddress,
    },
    /// A server's description changed (by the spec's equality, so not for RTT changes).
    ServerDescriptionChanged {
        topology_id: ObjectId,
        address: ServerAddress,
        previous: Box<ServerDescription>,
        new: Box<ServerDescription>,
    },
    /// A monitor is sending hello (or opening its connection to send it).
    ServerHeartbeatStarted {
        address: ServerAddress,
        awaited: bool,
    },
    /// A monitor's hello succeeded.
    ServerHeartbeatSucceeded {
        address: ServerAddress,
        duration: Duration,
        reply: Document,
        awaited: bool,
    },
    /// A monitor's hello failed (`ok: 0` or an I/O error).
    ServerHeartbeatFailed {
        address: ServerAddress,
        duration: Duration,
        failure: String,
        awaited: bool,
    },
}

impl SdamEvent {
    /// The event's name as the spec tests spell it (`server_description_changed_event`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SdamEvent::TopologyOpening { .. } => "topology_opening_event",
            SdamEvent::TopologyDescriptionChanged { .. } => "topology_description_changed_event",
            SdamEvent::TopologyClosed { .. } => "topology_closed_event",
            SdamEvent::ServerOpening { .. } => "server_opening_event",
            SdamEvent::ServerClosed { .. } => "server_closed_event",
            SdamEvent::ServerDescriptionChanged { .. } => "server_description_changed_event",
            SdamEvent::ServerHeartbeatStarted { .. } => "server_heartbeat_started_event",
            SdamEvent::ServerHeartbeatSucceeded { .. } => "server_heartbeat_succeeded_event",
            SdamEvent::ServerHeartbeatFailed { .. } => "server_heartbeat_failed_event",
        }
    }
}
