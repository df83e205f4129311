//! Server discovery and monitoring (SDAM), sans-IO.
//!
//! [`ServerDescription`] and [`TopologyDescription`] are the spec's data structures;
//! [`Topology`] is the state machine that updates them from monitor check outcomes
//! ([`Topology::handle_hello`]), errors of application operations
//! ([`Topology::handle_application_error`]) and SRV polling ([`Topology::handle_srv_hosts`]), and
//! tells the caller what to do through [`Topology::poll_action`] and what happened through
//! [`Topology::poll_event`].
//!
//! A monitor task built on this typically loops: ask [`Topology::check_info`] (stop if `None`),
//! publish [`Topology::heartbeat_started`], run hello (streaming with the given topologyVersion
//! when there is one), publish [`Topology::heartbeat_succeeded`] or
//! [`Topology::heartbeat_failed`], then feed the outcome to [`Topology::handle_hello`], carry
//! out the actions, and let [`next_check`] say whether to check again at once or wait.

mod description;
pub mod errors;
mod events;
mod rtt;
mod topology;

pub use description::{
    compare_topology_versions, ServerDescription, ServerType, TopologyDescription, TopologyType,
    TopologyVersion,
};
pub use errors::CommandErrorInfo;
pub use events::SdamEvent;
pub use rtt::{ewma, RttEstimator, MIN_RTT_SAMPLES, RTT_ALPHA};
pub use topology::{
    next_check, ApplicationError, ApplicationErrorKind, CheckError, CheckErrorKind, CheckInfo,
    ConnectionPhase, NextCheck, Topology, TopologyAction, TopologyOptions,
    DEFAULT_HEARTBEAT_FREQUENCY, DEFAULT_LOCAL_THRESHOLD, DEFAULT_SERVER_SELECTION_TIMEOUT,
    MAX_WIRE_VERSION, MIN_HEARTBEAT_FREQUENCY, MIN_MONGODB_VERSION, MIN_WIRE_VERSION,
};
