//! The [`Topology`] state machine: hello outcomes, application errors and SRV updates in; a new
//! [`TopologyDescription`], SDAM events and actions for the monitors and pools out.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::Document;
use rand::seq::SliceRandom;

use super::description::{
    compare_topology_versions, ServerDescription, ServerType, TopologyDescription, TopologyType,
    TopologyVersion,
};
use super::errors::{is_shutdown, is_state_change_error};
use super::events::SdamEvent;
use super::rtt::RttEstimator;
use crate::error::{Error, ErrorKind, WriteFailure};
use crate::options::ServerAddress;

/// The driver's one wire-version range, shared with the handshake (a server the handshake
/// accepts is one discovery finds compatible, and the other way round).
pub use crate::operation::handshake::{MAX_WIRE_VERSION, MIN_WIRE_VERSION};
/// The MongoDB release of [`MIN_WIRE_VERSION`], for error messages.
pub const MIN_MONGODB_VERSION: &str = "4.0";
/// `minHeartbeatFrequencyMS`: monitors never check one server more often than this.
pub const MIN_HEARTBEAT_FREQUENCY: Duration = Duration::from_millis(500);
/// The default `heartbeatFrequencyMS` of an asynchronous driver.
pub const DEFAULT_HEARTBEAT_FREQUENCY: Duration = Duration::from_secs(10);
/// The default `localThresholdMS`.
pub const DEFAULT_LOCAL_THRESHOLD: Duration = Duration::from_millis(15);
/// The default `serverSelectionTimeoutMS`.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(30);

const DRIVER_NAME: &str = "anymongo";

/// How the topology starts and what limits it obeys.
#[derive(Clone, Debug)]
pub struct TopologyOptions {
    /// The seed list (already resolved, for `mongodb+srv`).
    pub hosts: Vec<ServerAddress>,
    /// `replicaSet`.
    pub repl_set_name: Option<String>,
    /// `directConnection`; unset behaves as `false`.
    pub direct_connection: Option<bool>,
    /// `loadBalanced`.
    pub load_balanced: bool,
    /// `srvMaxHosts`; `None` or 0 means no limit.
    pub srv_max_hosts: Option<u32>,
    /// `localThresholdMS`.
    pub local_threshold: Duration,
    /// `heartbeatFrequencyMS`.
    pub heartbeat_frequency: Duration,
    /// `serverSelectionTimeoutMS` (carried for the client; the machine never waits).
    pub server_selection_timeout: Duration,
    /// The id reported in events; a fresh ObjectId when `None`.
    pub topology_id: Option<ObjectId>,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        TopologyOptions {
            hosts: Vec::new(),
            repl_set_name: None,
            direct_connection: None,
            load_balanced: false,
            srv_max_hosts: None,
            local_threshold: DEFAULT_LOCAL_THRESHOLD,
            heartbeat_frequency: DEFAULT_HEARTBEAT_FREQUENCY,
            server_selection_timeout: DEFAULT_SERVER_SELECTION_TIMEOUT,
            topology_id: None,
        }
    }
}

/// Something the caller must do for the topology.
#[derive(Clone, Debug, PartialEq)]
pub enum TopologyAction {
    /// Start a monitor for a new server (and be ready to create its pool).
    StartMonitoring { address: ServerAddress },
    /// Stop the server's monitor, cancelling any check in progress, and close its pool: the server
    /// left the topology. Later outcomes from it are ignored.
    StopMonitoring { address: ServerAddress },
    /// Wake the server's monitor to check it now (waiting at least minHeartbeatFrequencyMS since
    /// its previous check).
    RequestImmediateCheck { address: ServerAddress },
    /// Cancel the monitor's check in progress and close its connection (after a network error on
    /// an application connection).
    CancelCheck { address: ServerAddress },
    /// Clear the server's pool (or, behind a load balancer, the connections of one service):
    /// its generation is now `generation`; connections of older generations are stale.
    ClearPool {
        address: ServerAddress,
        service_id: Option<ObjectId>,
        generation: u32,
        /// Also interrupt connections checked out right now (after a monitor timeout).
        interrupt_in_use_connections: bool,
    },
    /// Create the server's pool if it has none, and mark it ready (after a successful check).
    MarkPoolReady { address: ServerAddress },
}

/// Why a monitor's check failed.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckError {
    pub kind: CheckErrorKind,
    /// A description for the server description's `error` and the heartbeat event.
    pub message: String,
}

/// The kind of a failed check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckErrorKind {
    /// Connection refused, reset, closed, TLS failure, ...
    Network,
    /// The check timed out (the pool is then cleared interrupting in-use connections).
    Timeout,
    /// The hello or handshake command failed (`ok: 0`, auth failure, ...).
    Command,
}

impl CheckError {
    /// A check error of `kind`.
    pub fn new(kind: CheckErrorKind, message: impl Into<String>) -> Self {
        CheckError {
            kind,
            message: message.into(),
        }
    }

    /// Classifies a driver error raised while checking.
    pub fn from_error(error: &Error) -> Self {
        let kind = match error.kind() {
            ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => CheckErrorKind::Timeout,
            ErrorKind::Io(_) | ErrorKind::Tls { .. } | ErrorKind::InvalidResponse { .. } => {
                CheckErrorKind::Network
            }
            ErrorKind::Timeout { .. } => CheckErrorKind::Timeout,
            _ => CheckErrorKind::Command,
        };
        CheckError::new(kind, error.to_string())
    }
}

/// An error an application operation met on a server, for [`Topology::handle_application_error`].
#[derive(Clone, Debug, PartialEq)]
pub struct ApplicationError {
    pub kind: ApplicationErrorKind,
    /// Where in the connection's life the error happened.
    pub phase: ConnectionPhase,
    /// The connection's generation (for errors before the handshake completed: the pool's
    /// generation when the connection attempt started). `None` means the pool's current one.
    pub generation: Option<u32>,
    /// The connection's maxWireVersion, if known.
    pub max_wire_version: Option<i32>,
    /// The connection's serviceId (load balanced mode).
    pub service_id: Option<ObjectId>,
    /// The error's labels (errors labelled `SystemOverloadedError` are ignored).
    pub labels: Vec<String>,
}

/// Where in a connection's life an application error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionPhase {
    /// Connecting (TCP, TLS) and the handshake's hello. Network errors and timeouts here leave
    /// the server's description alone (they may be the server's connection rate limiter).
    Establishing,
    /// The authentication step of the handshake.
    Authenticating,
    /// After the handshake completed (the connection was checked out for an operation).
    Established,
}

impl ConnectionPhase {
    /// Whether the handshake (hello and authentication) had completed.
    pub fn completed_handshake(&self) -> bool {
        *self == ConnectionPhase::Established
    }
}

/// The kind of an application error.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplicationErrorKind {
    /// A network error other than a timeout.
    Network { message: String },
    /// A network timeout.
    Timeout { message: String },
    /// A command error or write concern error from the server.
    Command {
        code: Option<i32>,
        message: String,
        topology_version: Option<TopologyVersion>,
    },
    /// Any other error while establishing a connection (authentication, ...).
    Other { message: String },
}

impl ApplicationError {
    /// An application error of `kind` with the pool's current generation and no labels.
    pub fn new(kind: ApplicationErrorKind, phase: ConnectionPhase) -> Self {
        ApplicationError {
            kind,
            phase,
            generation: None,
            max_wire_version: None,
            service_id: None,
            labels: Vec::new(),
        }
    }

    /// Classifies a driver error from an operation; `None` for errors SDAM never looks at (write
    /// errors, bad arguments, ...). Write concern errors count as command errors.
    pub fn from_error(
        error: &Error,
        phase: ConnectionPhase,
        generation: Option<u32>,
    ) -> Option<Self> {
        let kind = match error.kind() {
            ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ApplicationErrorKind::Timeout {
                    message: error.to_string(),
                }
            }
            ErrorKind::Io(_) | ErrorKind::Tls { .. } | ErrorKind::InvalidResponse { .. } => {
                ApplicationErrorKind::Network {
                    message: error.to_string(),
                }
            }
            ErrorKind::Timeout { .. } => ApplicationErrorKind::Timeout {
                message: error.to_string(),
            },
            ErrorKind::Command(c) => ApplicationErrorKind::Command {
                code: Some(c.code),
                message: c.message.clone(),
                topology_version: c
                    .topology_version
                    .as_ref()
                    .and_then(TopologyVersion::from_document),
            },
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => ApplicationErrorKind::Command {
                code: Some(w.code),
                message: w.message.clone(),
                topology_version: None,
            },
            ErrorKind::BulkWrite(b) => match &b.write_concern_error {
                Some(w) => ApplicationErrorKind::Command {
                    code: Some(w.code),
                    message: w.message.clone(),
                    topology_version: None,
                },
                None => return None,
            },
            ErrorKind::Authentication { .. } if !phase.completed_handshake() => {
                ApplicationErrorKind::Other {
                    message: error.to_string(),
                }
            }
            _ => return None,
        };
        Some(ApplicationError {
            kind,
            phase,
            generation,
            max_wire_version: None,
            service_id: None,
            labels: error.labels().iter().cloned().collect(),
        })
    }

    fn message(&self) -> &str {
        match &self.kind {
            ApplicationErrorKind::Network { message }
            | ApplicationErrorKind::Timeout { message }
            | ApplicationErrorKind::Command { message, .. }
            | ApplicationErrorKind::Other { message } => message,
        }
    }
}

/// What a monitor needs to know to run its next check of a server.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckInfo {
    /// The current server type (a monitor retries at once after a network error if it was known).
    pub server_type: ServerType,
    /// The topologyVersion to send with a streaming (awaitable) hello; `None` means poll.
    pub topology_version: Option<TopologyVersion>,
    /// Whether the server said `helloOk: true` (use `hello`, not legacy hello).
    pub hello_ok: bool,
    /// `heartbeatFrequencyMS` (also the `maxAwaitTimeMS` of a streaming hello).
    pub heartbeat_frequency: Duration,
}

/// When a monitor should begin its next check (see [`next_check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextCheck {
    /// At once: the streaming protocol is in use, or a known server just failed with a network
    /// error (checks are retried once without waiting).
    Immediately,
    /// After `heartbeatFrequencyMS`, or sooner when an immediate check is requested, but never
    /// sooner than `minHeartbeatFrequencyMS` after the previous check began.
    AfterHeartbeat,
}

/// The server monitoring spec's rule for what a monitor does after a check. `previous_type` is
/// the server's type before the check ([`CheckInfo::server_type`]); `outcome` is the reply's
/// topologyVersion, or the error kind; `more_to_come` says the monitoring connection is
/// streaming replies.
pub fn next_check(
    previous_type: ServerType,
    outcome: Result<Option<&TopologyVersion>, CheckErrorKind>,
    streaming_enabled: bool,
    more_to_come: bool,
) -> NextCheck {
    let immediately = match outcome {
        Ok(tv) => streaming_enabled && (tv.is_some() || more_to_come),
        Err(CheckErrorKind::Network | CheckErrorKind::Timeout) => previous_type.is_available(),
        Err(CheckErrorKind::Command) => false,
    };
    if immediately {
        NextCheck::Immediately
    } else {
        NextCheck::AfterHeartbeat
    }
}

#[derive(Debug, Default)]
struct ServerState {
    pool_generation: u32,
    service_generations: HashMap<ObjectId, u32>,
    rtt: RttEstimator,
}

/// The SDAM state machine. It never does I/O nor reads a clock: feed it check outcomes and
/// application errors, then drain [`poll_event`](Self::poll_event) and
/// [`poll_action`](Self::poll_action).
#[derive(Debug)]
pub struct Topology {
    id: ObjectId,
    options: TopologyOptions,
    description: Arc<TopologyDescription>,
    servers: HashMap<ServerAddress, ServerState>,
    events: VecDeque<SdamEvent>,
    actions: VecDeque<TopologyAction>,
    closed: bool,
}

impl Topology {
    /// A new topology over the seed list. Emits the opening events, and a StartMonitoring action
    /// for every seed (in load balanced mode, the single server is a LoadBalancer at once and is
    /// not monitored). Fails on option combinations the spec forbids and on a
    /// `heartbeatFrequencyMS` below 500 ms.
    pub fn new(options: TopologyOptions, now: Instant) -> Result<Self, Error> {
        let _ = now;
        if options.heartbeat_frequency < MIN_HEARTBEAT_FREQUENCY {
            return Err(Error::invalid_argument(format!(
                "heartbeatFrequencyMS must be at least {} ms",
                MIN_HEARTBEAT_FREQUENCY.as_millis()
            )));
        }
        let direct = options.direct_connection == Some(true);
        if direct && options.hosts.len() > 1 {
            return Err(Error::invalid_argument(
                "directConnection=true cannot be used with multiple seeds",
            ));
        }
        if options.load_balanced {
            if direct {
                return Err(Error::invalid_argument(
                    "loadBalanced=true cannot be used with directConnection=true",
                ));
            }
            if options.repl_set_name.is_some() {
                return Err(Error::invalid_argument(
                    "loadBalanced=true cannot be used with replicaSet",
                ));
            }
            if options.hosts.len() != 1 {
                return Err(Error::invalid_argument(
                    "loadBalanced=true requires exactly one host",
                ));
            }
        }
        let topology_type = if options.load_balanced {
            TopologyType::LoadBalanced
        } else if direct {
            TopologyType::Single
        } else if options.repl_set_name.is_some() {
            TopologyType::ReplicaSetNoPrimary
        } else {
            TopologyType::Unknown
        };
        let mut td = TopologyDescription {
            topology_type,
            set_name: options.repl_set_name.clone(),
            ..Default::default()
        };
        for h in &options.hosts {
            td.servers
                .insert(h.clone(), ServerDescription::new(h.clone()));
        }
        let id = options.topology_id.unwrap_or_default();
        let mut t = Topology {
            id,
            options,
            description: Arc::new(td),
            servers: HashMap::new(),
            events: VecDeque::new(),
            actions: VecDeque::new(),
            closed: false,
        };
        t.events
            .push_back(SdamEvent::TopologyOpening { topology_id: id });
        t.events.push_back(SdamEvent::TopologyDescriptionChanged {
            topology_id: id,
            previous: Arc::new(TopologyDescription::default()),
            new: t.description.clone(),
        });
        let addrs: Vec<ServerAddress> = t.description.servers.keys().cloned().collect();
        for a in &addrs {
            t.servers.insert(a.clone(), ServerState::default());
            t.events.push_back(SdamEvent::ServerOpening {
                topology_id: id,
                address: a.clone(),
            });
        }
        if t.description.topology_type == TopologyType::LoadBalanced {
            for a in addrs {
                let mut sd = ServerDescription::new(a.clone());
                sd.server_type = ServerType::LoadBalancer;
                let mut next = (*t.description).clone();
                next.servers.insert(a.clone(), sd);
                t.install(next, Some(&a));
                t.actions
                    .push_back(TopologyAction::MarkPoolReady { address: a });
            }
        } else {
            for a in addrs {
                t.actions
                    .push_back(TopologyAction::StartMonitoring { address: a });
            }
        }
        Ok(t)
    }

    /// The topology's id (as in events).
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The options the topology was built with.
    pub fn options(&self) -> &TopologyOptions {
        &self.options
    }

    /// The current description.
    pub fn description(&self) -> &TopologyDescription {
        &self.description
    }

    /// The current description, shared (cheap to clone and hand to readers).
    pub fn description_arc(&self) -> Arc<TopologyDescription> {
        self.description.clone()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next SDAM event to publish.
    pub fn poll_event(&mut self) -> Option<SdamEvent> {
        self.events.pop_front()
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<TopologyAction> {
        self.actions.pop_front()
    }

    /// The pool generation the topology holds for `address`.
    pub fn pool_generation(&self, address: &ServerAddress) -> Option<u32> {
        self.servers.get(address).map(|s| s.pool_generation)
    }

    /// The generation of one service's connections behind a load balancer.
    pub fn service_generation(
        &self,
        address: &ServerAddress,
        service_id: &ObjectId,
    ) -> Option<u32> {
        self.servers
            .get(address)
            .map(|s| s.service_generations.get(service_id).copied().unwrap_or(0))
    }

    /// What a monitor needs for its next check of `address`; `None` if the server is not (or no
    /// longer) in the topology, in which case the monitor should stop.
    pub fn check_info(&self, address: &ServerAddress) -> Option<CheckInfo> {
        let sd = self.description.servers.get(address)?;
        Some(CheckInfo {
            server_type: sd.server_type,
            topology_version: if sd.server_type == ServerType::Unknown {
                None
            } else {
                sd.topology_version
            },
            hello_ok: sd.hello_ok,
            heartbeat_frequency: self.options.heartbeat_frequency,
        })
    }

    /// Records that a monitor is about to send hello (or, for a new connection, to connect).
    pub fn heartbeat_started(&mut self, address: &ServerAddress, awaited: bool) {
        self.events.push_back(SdamEvent::ServerHeartbeatStarted {
            address: address.clone(),
            awaited,
        });
    }

    /// Records a successful hello (publish it before passing the reply to
    /// [`handle_hello`](Self::handle_hello)).
    pub fn heartbeat_succeeded(
        &mut self,
        address: &ServerAddress,
        duration: Duration,
        reply: Document,
        awaited: bool,
    ) {
        self.events.push_back(SdamEvent::ServerHeartbeatSucceeded {
            address: address.clone(),
            duration,
            reply,
            awaited,
        });
    }

    /// Records a failed hello.
    pub fn heartbeat_failed(
        &mut self,
        address: &ServerAddress,
        duration: Duration,
        failure: &CheckError,
        awaited: bool,
    ) {
        self.events.push_back(SdamEvent::ServerHeartbeatFailed {
            address: address.clone(),
            duration,
            failure: failure.message.clone(),
            awaited,
        });
    }

    /// Asks every monitor to check now (server selection found no suitable server).
    pub fn request_immediate_checks(&mut self) {
        if self.closed || self.description.topology_type == TopologyType::LoadBalanced {
            return;
        }
        let addrs: Vec<ServerAddress> = self.description.servers.keys().cloned().collect();
        for address in addrs {
            self.actions
                .push_back(TopologyAction::RequestImmediateCheck { address });
        }
    }

    /// Feeds the outcome of a check of `address`: a hello reply (an `ok: 0` reply counts as a
    /// failed check) with the new RTT sample, if this check measured one (`None` for streamed
    /// replies, whose RTT comes from [`handle_rtt_sample`](Self::handle_rtt_sample)); or the error
    /// that made the check fail. A handshake reply of an application connection may be fed here
    /// too. Outcomes from servers not in the topology are ignored.
    pub fn handle_hello(
        &mut self,
        address: &ServerAddress,
        result: Result<&Document, CheckError>,
        rtt: Option<Duration>,
        now: Instant,
    ) {
        if self.closed
            || self.description.topology_type == TopologyType::LoadBalanced
            || !self.description.servers.contains_key(address)
        {
            return;
        }
        let (mut sd, failure) = match result {
            Ok(reply) => {
                let sd = ServerDescription::from_hello(address.clone(), reply, None, now);
                if sd.server_type == ServerType::Unknown {
                    (sd, Some(CheckErrorKind::Command))
                } else {
                    (sd, None)
                }
            }
            Err(e) => {
                let mut sd =
                    ServerDescription::unknown_with_error(address.clone(), e.message, None);
                sd.last_update_time = Some(now);
                (sd, Some(e.kind))
            }
        };
        let state = self.servers.entry(address.clone()).or_default();
        if failure.is_some() {
            state.rtt.reset();
        } else {
            if let Some(sample) = rtt {
                state.rtt.add_sample(sample);
            }
            sd.round_trip_time = state.rtt.average();
            sd.min_round_trip_time = state.rtt.min();
        }
        let applied = self.update_server(sd);
        if let (true, Some(kind)) = (applied, failure) {
            self.clear_pool(address, None, kind == CheckErrorKind::Timeout);
        }
    }

    /// [`handle_hello`](Self::handle_hello) for a raw reply; undecodable BSON counts as a failed
    /// check.
    pub fn handle_raw_hello(
        &mut self,
        address: &ServerAddress,
        reply: &bson::RawDocument,
        rtt: Option<Duration>,
        now: Instant,
    ) {
        match crate::wire::raw::to_document(reply) {
            Ok(doc) => self.handle_hello(address, Ok(&doc), rtt, now),
            Err(e) => {
                let err =
                    CheckError::new(CheckErrorKind::Network, format!("invalid hello reply: {e}"));
                self.handle_hello(address, Err(err), rtt, now)
            }
        }
    }

    /// Feeds an RTT sample measured on a dedicated RTT connection (streaming protocol). Updates
    /// the server's averages without publishing events; ignored while the server is Unknown.
    pub fn handle_rtt_sample(&mut self, address: &ServerAddress, rtt: Duration) {
        let Some(sd) = self.description.servers.get(address) else {
            return;
        };
        if !sd.is_available() {
            return;
        }
        let state = self.servers.entry(address.clone()).or_default();
        state.rtt.add_sample(rtt);
        let (avg, min) = (state.rtt.average(), state.rtt.min());
        let td = Arc::make_mut(&mut self.description);
        if let Some(sd) = td.servers.get_mut(address) {
            sd.round_trip_time = avg;
            sd.min_round_trip_time = min;
        }
    }

    /// Feeds an error an application operation met on `address`. Stale errors (older connection
    /// generation, or a topologyVersion not newer than the server's) are ignored. Returns whether
    /// the error changed anything.
    pub fn handle_application_error(
        &mut self,
        address: &ServerAddress,
        error: &ApplicationError,
    ) -> bool {
        if self.closed {
            return false;
        }
        let Some(current) = self.description.servers.get(address) else {
            return false;
        };
        let lb = self.description.topology_type == TopologyType::LoadBalanced;
        let state = self.servers.entry(address.clone()).or_default();
        let current_generation = match (lb, error.service_id) {
            (true, Some(sid)) => state.service_generations.get(&sid).copied().unwrap_or(0),
            _ => state.pool_generation,
        };
        if error.generation.is_some_and(|g| g < current_generation) {
            return false;
        }
        let current_tv = current.topology_version;
        let overloaded = error
            .labels
            .iter()
            .any(|l| l == crate::error::SYSTEM_OVERLOADED_ERROR);
        match &error.kind {
            ApplicationErrorKind::Command {
                code,
                message,
                topology_version,
            } if is_state_change_error(*code, message) => {
                if compare_topology_versions(current_tv.as_ref(), topology_version.as_ref())
                    != std::cmp::Ordering::Less
                {
                    return false;
                }
                if !lb {
                    let sd = ServerDescription::unknown_with_error(
                        address.clone(),
                        message.clone(),
                        *topology_version,
                    );
                    self.update_server(sd);
                }
                if is_shutdown(*code) {
                    self.clear_pool(address, if lb { error.service_id } else { None }, false);
                }
                if !lb {
                    self.actions
                        .push_back(TopologyAction::RequestImmediateCheck {
                            address: address.clone(),
                        });
                }
                true
            }
            // After the handshake only a (non-timeout) network error says the server is gone.
            ApplicationErrorKind::Timeout { .. }
            | ApplicationErrorKind::Command { .. }
            | ApplicationErrorKind::Other { .. }
                if error.phase == ConnectionPhase::Established =>
            {
                false
            }
            // Failing to connect, or to get the handshake's hello reply, changes nothing.
            ApplicationErrorKind::Network { .. } | ApplicationErrorKind::Timeout { .. }
                if error.phase == ConnectionPhase::Establishing =>
            {
                false
            }
            _ => {
                if overloaded {
                    return false;
                }
                if lb {
                    if error.service_id.is_some() {
                        self.clear_pool(address, error.service_id, false);
                        return true;
                    }
                    return false;
                }
                let sd =
                    ServerDescription::unknown_with_error(address.clone(), error.message(), None);
                self.update_server(sd);
                self.clear_pool(address, None, false);
                self.actions.push_back(TopologyAction::CancelCheck {
                    address: address.clone(),
                });
                true
            }
        }
    }

    /// Feeds a new host list from SRV polling. Applies only while the topology is Unknown or
    /// Sharded; an empty list is ignored. Hosts gone from the list are removed; new ones are
    /// added, chosen at random when `srvMaxHosts` limits how many may be monitored.
    pub fn handle_srv_hosts(&mut self, hosts: &[ServerAddress], rng: &mut impl rand::Rng) {
        if self.closed
            || hosts.is_empty()
            || !matches!(
                self.description.topology_type,
                TopologyType::Unknown | TopologyType::Sharded
            )
        {
            return;
        }
        let wanted: BTreeSet<&ServerAddress> = hosts.iter().collect();
        let mut td = (*self.description).clone();
        td.servers.retain(|a, _| wanted.contains(a));
        let mut seen = BTreeSet::new();
        let mut new_hosts: Vec<&ServerAddress> = hosts
            .iter()
            .filter(|h| !td.servers.contains_key(*h) && seen.insert(*h))
            .collect();
        let limit = match self.options.srv_max_hosts {
            Some(n) if n > 0 => (n as usize).saturating_sub(td.servers.len()),
            _ => new_hosts.len(),
        };
        if limit < new_hosts.len() {
            new_hosts.shuffle(rng);
            new_hosts.truncate(limit);
        }
        for h in new_hosts {
            td.servers
                .insert(h.clone(), ServerDescription::new(h.clone()));
        }
        self.install(td, None);
    }

    /// Closes the topology: every server is removed (ServerClosed events, StopMonitoring actions),
    /// the type becomes Unknown, then TopologyClosed is the last event.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        let td = TopologyDescription::default();
        self.install(td, None);
        self.closed = true;
        self.events.push_back(SdamEvent::TopologyClosed {
            topology_id: self.id,
        });
    }

    fn clear_pool(
        &mut self,
        address: &ServerAddress,
        service_id: Option<ObjectId>,
        interrupt: bool,
    ) {
        let Some(state) = self.servers.get_mut(address) else {
            return;
        };
        let generation = match service_id {
            Some(sid) => {
                let g = state.service_generations.entry(sid).or_insert(0);
                *g += 1;
                *g
            }
            None => {
                state.pool_generation += 1;
                state.pool_generation
            }
        };
        self.actions.push_back(TopologyAction::ClearPool {
            address: address.clone(),
            service_id,
            generation,
            interrupt_in_use_connections: interrupt,
        });
    }

    /// Replaces a server's description and runs the SDAM transition rules. Returns false when
    /// the update was ignored (server not in the topology, or a stale topologyVersion).
    fn update_server(&mut self, sd: ServerDescription) -> bool {
        let address = sd.address.clone();
        let Some(current) = self.description.servers.get(&address) else {
            return false;
        };
        if compare_topology_versions(
            current.topology_version.as_ref(),
            sd.topology_version.as_ref(),
        ) == std::cmp::Ordering::Greater
        {
            return false;
        }
        let mut td = (*self.description).clone();
        let mut update = Update {
            td: &mut td,
            options: &self.options,
            invalidated: Vec::new(),
        };
        update.apply(sd);
        let invalidated = update.invalidated;
        update_compatibility(&mut td);
        update_session_timeout(&mut td);
        let ready = td.servers.get(&address).is_some_and(|s| {
            s.server_type.is_data_bearing()
                || s.server_type == ServerType::LoadBalancer
                || (s.server_type != ServerType::Unknown
                    && td.topology_type == TopologyType::Single)
        });
        self.install(td, Some(&address));
        if ready {
            self.actions
                .push_back(TopologyAction::MarkPoolReady { address });
        }
        for address in invalidated {
            if self.description.servers.contains_key(&address) {
                self.actions
                    .push_back(TopologyAction::RequestImmediateCheck { address });
            }
        }
        true
    }

    /// Installs `new` as the description and publishes the differences.
    fn install(&mut self, new: TopologyDescription, processed: Option<&ServerAddress>) {
        let old = self.description.clone();
        let new = Arc::new(new);
        let id = self.id;
        let mut changed: Vec<&ServerAddress> = Vec::new();
        if let Some(p) = processed {
            changed.push(p);
        }
        for a in new.servers.keys() {
            if Some(a) != processed {
                changed.push(a);
            }
        }
        for a in changed {
            let (Some(o), Some(n)) = (old.servers.get(a), new.servers.get(a)) else {
                continue;
            };
            if o.equivalent(n) {
                continue;
            }
            // Unknown <-> PossiblePrimary only matters to single-threaded scanning.
            let unknownish =
                |t: ServerType| matches!(t, ServerType::Unknown | ServerType::PossiblePrimary);
            if Some(a) != processed && unknownish(o.server_type) && unknownish(n.server_type) {
                let mut o2 = o.clone();
                o2.server_type = n.server_type;
                if o2.equivalent(n) {
                    continue;
                }
            }
            self.events.push_back(SdamEvent::ServerDescriptionChanged {
                topology_id: id,
                address: a.clone(),
                previous: Box::new(o.clone()),
                new: Box::new(n.clone()),
            });
        }
        for a in new.servers.keys() {
            if !old.servers.contains_key(a) {
                self.servers.insert(a.clone(), ServerState::default());
                self.events.push_back(SdamEvent::ServerOpening {
                    topology_id: id,
                    address: a.clone(),
                });
                self.actions
                    .push_back(TopologyAction::StartMonitoring { address: a.clone() });
            }
        }
        for a in old.servers.keys() {
            if !new.servers.contains_key(a) {
                self.servers.remove(a);
                self.events.push_back(SdamEvent::ServerClosed {
                    topology_id: id,
                    address: a.clone(),
                });
                self.actions
                    .push_back(TopologyAction::StopMonitoring { address: a.clone() });
            }
        }
        if !old.equivalent(&new) {
            self.events
                .push_back(SdamEvent::TopologyDescriptionChanged {
                    topology_id: id,
                    previous: old.clone(),
                    new: new.clone(),
                });
        }
        self.description = new;
    }
}

/// One run of the TopologyType table over a working copy of the description.
struct Update<'a> {
    td: &'a mut TopologyDescription,
    options: &'a TopologyOptions,
    invalidated: Vec<ServerAddress>,
}

impl Update<'_> {
    fn apply(&mut self, sd: ServerDescription) {
        let address = sd.address.clone();
        let st = sd.server_type;
        use ServerType as S;
        use TopologyType as T;
        if self.td.topology_type == T::Single {
            if let Some(name) = &self.options.repl_set_name {
                if st != S::Unknown && sd.set_name.as_deref() != Some(name.as_str()) {
                    let msg = format!(
                        "replica set name mismatch: expected '{}', server reports {}",
                        name,
                        sd.set_name
                            .as_deref()
                            .map(|s| format!("'{s}'"))
                            .unwrap_or_else(|| "none".into())
                    );
                    let mut unknown =
                        ServerDescription::unknown_with_error(address.clone(), msg, None);
                    unknown.last_update_time = sd.last_update_time;
                    self.td.servers.insert(address, unknown);
                    return;
                }
            }
        }
        self.td.servers.insert(address.clone(), sd);
        match self.td.topology_type {
            T::Single => {}
            T::LoadBalanced => {}
            T::Unknown => match st {
                S::Unknown | S::RsGhost | S::PossiblePrimary | S::LoadBalancer => {}
                S::Standalone => {
                    if self.options.hosts.len() == 1 {
                        self.td.topology_type = T::Single;
                    } else {
                        self.td.servers.remove(&address);
                    }
                }
                S::Mongos => self.td.topology_type = T::Sharded,
                S::RsPrimary => self.update_rs_from_primary(&address),
                S::RsSecondary | S::RsArbiter | S::RsOther => {
                    self.td.topology_type = T::ReplicaSetNoPrimary;
                    self.update_rs_without_primary(&address);
                }
            },
            T::Sharded => match st {
                S::Unknown | S::Mongos | S::PossiblePrimary => {}
                _ => {
                    self.td.servers.remove(&address);
                }
            },
            T::ReplicaSetNoPrimary => match st {
                S::Unknown | S::RsGhost | S::PossiblePrimary => {}
                S::Standalone | S::Mongos | S::LoadBalancer => {
                    self.td.servers.remove(&address);
                }
                S::RsPrimary => self.update_rs_from_primary(&address),
                S::RsSecondary | S::RsArbiter | S::RsOther => {
                    self.update_rs_without_primary(&address)
                }
            },
            T::ReplicaSetWithPrimary => match st {
                S::Unknown | S::RsGhost | S::PossiblePrimary => self.check_if_has_primary(),
                S::Standalone | S::Mongos | S::LoadBalancer => {
                    self.td.servers.remove(&address);
                    self.check_if_has_primary();
                }
                S::RsPrimary => self.update_rs_from_primary(&address),
                S::RsSecondary | S::RsArbiter | S::RsOther => {
                    self.update_rs_with_primary_from_member(&address)
                }
            },
        }
    }

    fn check_if_has_primary(&mut self) {
        self.td.topology_type = if self.td.primary().is_some() {
            TopologyType::ReplicaSetWithPrimary
        } else {
            TopologyType::ReplicaSetNoPrimary
        };
    }

    fn add_members(&mut self, address: &ServerAddress) {
        let members: Vec<ServerAddress> = match self.td.servers.get(address) {
            Some(sd) => sd.members().cloned().collect(),
            None => return,
        };
        for m in members {
            self.td
                .servers
                .entry(m.clone())
                .or_insert_with(|| ServerDescription::new(m));
        }
    }

    fn mark_possible_primary(&mut self, address: &ServerAddress) {
        let primary = self
            .td
            .servers
            .get(address)
            .and_then(|sd| sd.primary.clone());
        if let Some(p) = primary {
            if let Some(psd) = self.td.servers.get_mut(&p) {
                if psd.server_type == ServerType::Unknown {
                    psd.server_type = ServerType::PossiblePrimary;
                }
            }
        }
    }

    fn me_mismatch(&self, address: &ServerAddress) -> bool {
        self.td
            .servers
            .get(address)
            .and_then(|sd| sd.me.as_ref())
            .is_some_and(|me| me != address)
    }

    fn set_name_of(&self, address: &ServerAddress) -> Option<String> {
        self.td
            .servers
            .get(address)
            .and_then(|sd| sd.set_name.clone())
    }

    fn update_rs_without_primary(&mut self, address: &ServerAddress) {
        let set_name = self.set_name_of(address);
        if self.td.set_name.is_none() {
            self.td.set_name = set_name;
        } else if self.td.set_name != set_name {
            self.td.servers.remove(address);
            return;
        }
        self.add_members(address);
        self.mark_possible_primary(address);
        if self.me_mismatch(address) {
            self.td.servers.remove(address);
        }
    }

    fn update_rs_with_primary_from_member(&mut self, address: &ServerAddress) {
        if self.td.set_name != self.set_name_of(address) || self.me_mismatch(address) {
            self.td.servers.remove(address);
            self.check_if_has_primary();
            return;
        }
        if self.td.primary().is_none() {
            self.td.topology_type = TopologyType::ReplicaSetNoPrimary;
            self.mark_possible_primary(address);
        }
    }

    fn update_rs_from_primary(&mut self, address: &ServerAddress) {
        let Some(sd) = self.td.servers.get(address) else {
            return;
        };
        let (set_name, election_id, set_version, max_wire) = (
            sd.set_name.clone(),
            sd.election_id,
            sd.set_version,
            sd.max_wire_version.unwrap_or(0),
        );
        if self.td.set_name.is_none() {
            self.td.set_name = set_name;
        } else if self.td.set_name != set_name {
            self.td.servers.remove(address);
            self.check_if_has_primary();
            return;
        }

        let stale = if max_wire >= 17 {
            // Option orders None below any value, as the spec's comparison requires.
            let newer = election_id > self.td.max_election_id
                || (election_id == self.td.max_election_id
                    && set_version >= self.td.max_set_version);
            if newer {
                self.td.max_election_id = election_id;
                self.td.max_set_version = set_version;
                false
            } else {
                true
            }
        } else {
            let mut stale = false;
            if let (Some(sv), Some(eid)) = (set_version, election_id) {
                if let (Some(msv), Some(meid)) = (self.td.max_set_version, self.td.max_election_id)
                {
                    if msv > sv || (msv == sv && meid > eid) {
                        stale = true;
                    }
                }
                if !stale {
                    self.td.max_election_id = Some(eid);
                }
            }
            if !stale {
                if let Some(sv) = set_version {
                    if self.td.max_set_version.is_none_or(|m| sv > m) {
                        self.td.max_set_version = Some(sv);
                    }
                }
            }
            stale
        };
        if stale {
            let fmt_tuple = |e: Option<ObjectId>, v: Option<i64>| {
                format!(
                    "({}, {})",
                    e.map(|e| e.to_hex()).unwrap_or_else(|| "null".into()),
                    v.map(|v| v.to_string()).unwrap_or_else(|| "null".into())
                )
            };
            let msg = format!(
                "primary marked stale due to electionId/setVersion mismatch, {} is stale compared to {}",
                fmt_tuple(election_id, set_version),
                fmt_tuple(self.td.max_election_id, self.td.max_set_version)
            );
            self.td.servers.insert(
                address.clone(),
                ServerDescription::unknown_with_error(address.clone(), msg, None),
            );
            self.check_if_has_primary();
            return;
        }

        let old_primaries: Vec<ServerAddress> = self
            .td
            .servers
            .iter()
            .filter(|(a, s)| *a != address && s.server_type == ServerType::RsPrimary)
            .map(|(a, _)| a.clone())
            .collect();
        for a in old_primaries {
            self.td.servers.insert(
                a.clone(),
                ServerDescription::unknown_with_error(
                    a.clone(),
                    "primary marked stale due to discovery of newer primary",
                    None,
                ),
            );
            self.invalidated.push(a);
        }

        self.add_members(address);
        let members: BTreeSet<ServerAddress> = match self.td.servers.get(address) {
            Some(sd) => sd.members().cloned().collect(),
            None => BTreeSet::new(),
        };
        self.td.servers.retain(|a, _| members.contains(a));
        self.check_if_has_primary();
    }
}

fn update_compatibility(td: &mut TopologyDescription) {
    td.compatible = true;
    td.compatibility_error = None;
    for sd in td.servers.values() {
        if !sd.is_available() {
            continue;
        }
        let (min, max) = (
            sd.min_wire_version.unwrap_or(0),
            sd.max_wire_version.unwrap_or(0),
        );
        if min > MAX_WIRE_VERSION {
            td.compatible = false;
            td.compatibility_error = Some(format!(
                "Server at {} requires wire version {}, but this version of {} only supports up to {}.",
                sd.address, min, DRIVER_NAME, MAX_WIRE_VERSION
            ));
            return;
        }
        if max < MIN_WIRE_VERSION {
            td.compatible = false;
            td.compatibility_error = Some(format!(
                "Server at {} reports wire version {}, but this version of {} requires at least {} (MongoDB {}).",
                sd.address, max, DRIVER_NAME, MIN_WIRE_VERSION, MIN_MONGODB_VERSION
            ));
            return;
        }
    }
}

fn update_session_timeout(td: &mut TopologyDescription) {
    let mut min: Option<i64> = None;
    for sd in td.servers.values() {
        if !sd.server_type.is_data_bearing() {
            continue;
        }
        match sd.logical_session_timeout_minutes {
            None => {
                td.logical_session_timeout_minutes = None;
                return;
            }
            Some(v) => min = Some(min.map_or(v, |m| m.min(v))),
        }
    }
    td.logical_session_timeout_minutes = min;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn addr(s: &str) -> ServerAddress {
        ServerAddress::parse(s).expect("test address")
    }

    fn rs_topology(hosts: &[&str]) -> (Topology, Instant) {
        let now = Instant::now();
        let opts = TopologyOptions {
            hosts: hosts.iter().map(|h| addr(h)).collect(),
            repl_set_name: Some("rs".into()),
            ..Default::default()
        };
        let mut t = Topology::new(opts, now).expect("valid options");
        drain(&mut t);
        (t, now)
    }

    fn drain(t: &mut Topology) -> (Vec<SdamEvent>, Vec<TopologyAction>) {
        let mut ev = Vec::new();
        while let Some(e) = t.poll_event() {
            ev.push(e);
        }
        let mut ac = Vec::new();
        while let Some(a) = t.poll_action() {
            ac.push(a);
        }
        (ev, ac)
    }

    fn primary_reply(hosts: &[&str], election: u8) -> Document {
        let mut oid = [0u8; 12];
        oid[11] = election;
        doc! {
            "ok": 1, "helloOk": true, "isWritablePrimary": true, "setName": "rs",
            "hosts": hosts.to_vec(), "setVersion": 1, "electionId": ObjectId::from_bytes(oid),
            "minWireVersion": 0, "maxWireVersion": 21,
            "topologyVersion": {"processId": ObjectId::from_bytes([1; 12]), "counter": 1_i64},
            "logicalSessionTimeoutMinutes": 30,
        }
    }

    /// The handshake and discovery judge wire versions by one range: a server at the newest
    /// version the handshake accepts is compatible for discovery too (with two constants, 27
    /// and 25, a server at minWireVersion 26 passed the handshake and then failed every
    /// operation as incompatible), and one just past it is refused by both.
    #[test]
    fn handshake_and_discovery_agree_on_wire_versions() {
        for (min, ok) in [(MAX_WIRE_VERSION, true), (MAX_WIRE_VERSION + 1, false)] {
            let (mut t, now) = rs_topology(&["a:27017"]);
            let mut reply = primary_reply(&["a:27017"], 1);
            reply.insert("minWireVersion", min);
            reply.insert("maxWireVersion", min + 1);
            let handshake = crate::operation::StreamDescription::from_reply(&reply, &[]);
            assert_eq!(handshake.is_ok(), ok, "{min}: {handshake:?}");
            t.handle_hello(&addr("a:27017"), Ok(&reply), None, now);
            let td = t.description();
            assert_eq!(td.compatible, ok, "{min}: {:?}", td.compatibility_error);
        }
    }

    #[test]
    fn next_check_rules() {
        let tv = TopologyVersion {
            process_id: ObjectId::from_bytes([1; 12]),
            counter: 1,
        };
        let known = ServerType::RsPrimary;
        assert_eq!(
            next_check(known, Ok(Some(&tv)), true, false),
            NextCheck::Immediately
        );
        assert_eq!(
            next_check(known, Ok(Some(&tv)), false, false),
            NextCheck::AfterHeartbeat
        );
        assert_eq!(
            next_check(known, Ok(None), true, true),
            NextCheck::Immediately
        );
        assert_eq!(
            next_check(known, Ok(None), true, false),
            NextCheck::AfterHeartbeat
        );
        let net = Err(CheckErrorKind::Network);
        assert_eq!(next_check(known, net, false, false), NextCheck::Immediately);
        assert_eq!(
            next_check(ServerType::Unknown, net, true, false),
            NextCheck::AfterHeartbeat
        );
        let cmd = Err(CheckErrorKind::Command);
        assert_eq!(
            next_check(known, cmd, true, false),
            NextCheck::AfterHeartbeat
        );
    }

    #[test]
    fn options_are_validated() {
        let now = Instant::now();
        let two = vec![addr("a"), addr("b")];
        let bad = [
            TopologyOptions {
                hosts: two.clone(),
                direct_connection: Some(true),
                ..Default::default()
            },
            TopologyOptions {
                hosts: vec![addr("a")],
                load_balanced: true,
                repl_set_name: Some("rs".into()),
                ..Default::default()
            },
            TopologyOptions {
                hosts: two,
                load_balanced: true,
                ..Default::default()
            },
            TopologyOptions {
                hosts: vec![addr("a")],
                heartbeat_frequency: Duration::from_millis(499),
                ..Default::default()
            },
        ];
        for o in bad {
            assert!(Topology::new(o, now).is_err());
        }
    }

    #[test]
    fn seeds_are_monitored_and_discovered_members_added_and_removed() {
        let now = Instant::now();
        let opts = TopologyOptions {
            hosts: vec![addr("a"), addr("x")],
            ..Default::default()
        };
        let mut t = Topology::new(opts, now).expect("valid options");
        let (_, actions) = drain(&mut t);
        assert_eq!(
            actions,
            vec![
                TopologyAction::StartMonitoring { address: addr("a") },
                TopologyAction::StartMonitoring { address: addr("x") },
            ]
        );
        t.handle_hello(
            &addr("a"),
            Ok(&primary_reply(&["a", "b"], 1)),
            Some(Duration::from_millis(4)),
            now,
        );
        let (events, actions) = drain(&mut t);
        assert!(actions.contains(&TopologyAction::StartMonitoring { address: addr("b") }));
        assert!(actions.contains(&TopologyAction::StopMonitoring { address: addr("x") }));
        assert!(actions.contains(&TopologyAction::MarkPoolReady { address: addr("a") }));
        let names: Vec<&str> = events.iter().map(SdamEvent::name).collect();
        assert_eq!(
            names,
            [
                "server_description_changed_event",
                "server_opening_event",
                "server_closed_event",
                "topology_description_changed_event"
            ]
        );
        let td = t.description();
        assert_eq!(td.topology_type, TopologyType::ReplicaSetWithPrimary);
        assert_eq!(
            td.logical_session_timeout_minutes,
            Some(30),
            "only data-bearing servers count"
        );
        let a = td.server(&addr("a")).expect("a");
        assert_eq!(a.round_trip_time, Some(Duration::from_millis(4)));
        assert!(t.check_info(&addr("x")).is_none(), "removed servers stop");
        assert_eq!(
            t.check_info(&addr("a"))
                .and_then(|c| c.topology_version)
                .map(|tv| tv.counter),
            Some(1)
        );
    }

    #[test]
    fn new_primary_invalidates_old_one_and_requests_a_check() {
        let (mut t, now) = rs_topology(&["a", "b"]);
        t.handle_hello(&addr("a"), Ok(&primary_reply(&["a", "b"], 1)), None, now);
        drain(&mut t);
        t.handle_hello(&addr("b"), Ok(&primary_reply(&["a", "b"], 2)), None, now);
        let (events, actions) = drain(&mut t);
        let a = t.description().server(&addr("a")).expect("a");
        assert_eq!(a.server_type, ServerType::Unknown);
        assert!(a
            .error
            .as_deref()
            .unwrap_or("")
            .contains("discovery of newer primary"));
        assert!(actions.contains(&TopologyAction::RequestImmediateCheck { address: addr("a") }));
        // The pool of the old primary is not cleared.
        assert!(!actions
            .iter()
            .any(|a| matches!(a, TopologyAction::ClearPool { .. })));
        // Both servers changed: b (processed) first, then a.
        let changed: Vec<&ServerAddress> = events
            .iter()
            .filter_map(|e| match e {
                SdamEvent::ServerDescriptionChanged { address, .. } => Some(address),
                _ => None,
            })
            .collect();
        assert_eq!(changed, [&addr("b"), &addr("a")]);
    }

    #[test]
    fn failed_checks_clear_the_pool_and_timeouts_interrupt_in_use_connections() {
        let (mut t, now) = rs_topology(&["a"]);
        t.handle_hello(
            &addr("a"),
            Ok(&primary_reply(&["a"], 1)),
            Some(Duration::from_millis(3)),
            now,
        );
        drain(&mut t);
        let err = CheckError::new(CheckErrorKind::Timeout, "timed out");
        t.handle_hello(&addr("a"), Err(err), None, now);
        let (_, actions) = drain(&mut t);
        assert!(actions.contains(&TopologyAction::ClearPool {
            address: addr("a"),
            service_id: None,
            generation: 1,
            interrupt_in_use_connections: true,
        }));
        let a = t.description().server(&addr("a")).expect("a");
        assert_eq!(a.round_trip_time, None, "RTT is reset while Unknown");
        assert_eq!(
            t.description().topology_type,
            TopologyType::ReplicaSetNoPrimary
        );
        // ok: 0 reply: a command failure, the pool is cleared without interrupting.
        t.handle_hello(&addr("a"), Ok(&doc! {"ok": 0, "errmsg": "boom"}), None, now);
        let (_, actions) = drain(&mut t);
        assert!(actions.contains(&TopologyAction::ClearPool {
            address: addr("a"),
            service_id: None,
            generation: 2,
            interrupt_in_use_connections: false,
        }));
        assert_eq!(t.pool_generation(&addr("a")), Some(2));
    }

    #[test]
    fn rtt_is_averaged_and_rtt_samples_publish_nothing() {
        let (mut t, now) = rs_topology(&["a"]);
        let reply = primary_reply(&["a"], 1);
        t.handle_hello(&addr("a"), Ok(&reply), Some(Duration::from_millis(10)), now);
        drain(&mut t);
        t.handle_hello(&addr("a"), Ok(&reply), Some(Duration::from_millis(20)), now);
        let (events, _) = drain(&mut t);
        assert!(
            events.is_empty(),
            "equal descriptions publish nothing: {events:?}"
        );
        let a = t.description().server(&addr("a")).expect("a");
        assert_eq!(a.round_trip_time, Some(Duration::from_millis(12)));
        assert_eq!(a.min_round_trip_time, Some(Duration::from_millis(10)));
        t.handle_rtt_sample(&addr("a"), Duration::from_millis(2));
        let (events, actions) = drain(&mut t);
        assert!(events.is_empty() && actions.is_empty());
        let a = t.description().server(&addr("a")).expect("a");
        assert_eq!(a.min_round_trip_time, Some(Duration::from_millis(2)));
    }

    #[test]
    fn stale_topology_version_hello_is_ignored() {
        let (mut t, now) = rs_topology(&["a"]);
        let mut reply = primary_reply(&["a"], 1);
        reply.insert(
            "topologyVersion",
            doc! {"processId": ObjectId::from_bytes([1; 12]), "counter": 5_i64},
        );
        t.handle_hello(&addr("a"), Ok(&reply), None, now);
        let mut older = primary_reply(&["a"], 1);
        older.insert("secondary", true);
        older.insert("isWritablePrimary", false);
        t.handle_hello(&addr("a"), Ok(&older), None, now);
        assert_eq!(
            t.description().server(&addr("a")).map(|s| s.server_type),
            Some(ServerType::RsPrimary)
        );
    }

    #[test]
    fn application_errors() {
        let (mut t, now) = rs_topology(&["a"]);
        t.handle_hello(&addr("a"), Ok(&primary_reply(&["a"], 1)), None, now);
        drain(&mut t);

        // A not-writable-primary error without topologyVersion: Unknown, immediate check, the
        // pool stays.
        let e = ApplicationError::new(
            ApplicationErrorKind::Command {
                code: Some(10107),
                message: "not primary".into(),
                topology_version: None,
            },
            ConnectionPhase::Established,
        );
        assert!(t.handle_application_error(&addr("a"), &e));
        let (_, actions) = drain(&mut t);
        assert_eq!(
            actions,
            vec![TopologyAction::RequestImmediateCheck { address: addr("a") }]
        );

        // A shutdown error clears the pool.
        t.handle_hello(&addr("a"), Ok(&primary_reply(&["a"], 1)), None, now);
        drain(&mut t);
        let e = ApplicationError::new(
            ApplicationErrorKind::Command {
                code: Some(91),
                message: "shutting down".into(),
                topology_version: None,
            },
            ConnectionPhase::Established,
        );
        assert!(t.handle_application_error(&addr("a"), &e));
        let (_, actions) = drain(&mut t);
        assert!(actions
            .iter()
            .any(|a| matches!(a, TopologyAction::ClearPool { generation: 1, .. })));

        // Backpressure-labelled errors during authentication are ignored; others mark Unknown.
        t.handle_hello(&addr("a"), Ok(&primary_reply(&["a"], 1)), None, now);
        drain(&mut t);
        let mut e = ApplicationError::new(
            ApplicationErrorKind::Network {
                message: "reset".into(),
            },
            ConnectionPhase::Authenticating,
        );
        e.labels.push(crate::error::SYSTEM_OVERLOADED_ERROR.into());
        assert!(!t.handle_application_error(&addr("a"), &e));
        e.labels.clear();
        assert!(t.handle_application_error(&addr("a"), &e));
        let (_, actions) = drain(&mut t);
        assert!(actions.contains(&TopologyAction::CancelCheck { address: addr("a") }));
        assert_eq!(t.pool_generation(&addr("a")), Some(2));

        // Connect failures change nothing; so do timeouts on established connections.
        t.handle_hello(&addr("a"), Ok(&primary_reply(&["a"], 1)), None, now);
        drain(&mut t);
        let e = ApplicationError::new(
            ApplicationErrorKind::Network {
                message: "refused".into(),
            },
            ConnectionPhase::Establishing,
        );
        assert!(!t.handle_application_error(&addr("a"), &e));
        let e = ApplicationError::new(
            ApplicationErrorKind::Timeout {
                message: "slow".into(),
            },
            ConnectionPhase::Established,
        );
        assert!(!t.handle_application_error(&addr("a"), &e));
        // Unknown servers are not ours.
        assert!(!t.handle_application_error(&addr("zzz"), &e));
    }

    #[test]
    fn from_error_classifies_driver_errors() {
        let io = Error::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "t"));
        let e = ApplicationError::from_error(&io, ConnectionPhase::Established, Some(3));
        assert!(matches!(
            e.map(|e| e.kind),
            Some(ApplicationErrorKind::Timeout { .. })
        ));
        let bad = Error::invalid_argument("x");
        assert!(ApplicationError::from_error(&bad, ConnectionPhase::Established, None).is_none());
        let auth = Error::authentication("bad password");
        assert!(
            ApplicationError::from_error(&auth, ConnectionPhase::Authenticating, None).is_some()
        );
        assert_eq!(CheckError::from_error(&io).kind, CheckErrorKind::Timeout);
    }

    #[test]
    fn load_balanced_topology() {
        let now = Instant::now();
        let opts = TopologyOptions {
            hosts: vec![addr("lb")],
            load_balanced: true,
            ..Default::default()
        };
        let mut t = Topology::new(opts, now).expect("valid options");
        let (events, actions) = drain(&mut t);
        assert_eq!(events.len(), 5, "{events:?}");
        assert_eq!(
            actions,
            vec![TopologyAction::MarkPoolReady {
                address: addr("lb")
            }]
        );
        // Hello outcomes are not expected and ignored.
        t.handle_hello(
            &addr("lb"),
            Err(CheckError::new(CheckErrorKind::Network, "x")),
            None,
            now,
        );
        assert_eq!(
            t.description().server(&addr("lb")).map(|s| s.server_type),
            Some(ServerType::LoadBalancer)
        );
        // A network error after the handshake clears the service's connections only.
        let sid = ObjectId::from_bytes([9; 12]);
        let mut e = ApplicationError::new(
            ApplicationErrorKind::Network {
                message: "reset".into(),
            },
            ConnectionPhase::Established,
        );
        e.service_id = Some(sid);
        assert!(t.handle_application_error(&addr("lb"), &e));
        let (events, actions) = drain(&mut t);
        assert!(events.is_empty());
        assert_eq!(
            actions,
            vec![TopologyAction::ClearPool {
                address: addr("lb"),
                service_id: Some(sid),
                generation: 1,
                interrupt_in_use_connections: false,
            }]
        );
        assert_eq!(t.service_generation(&addr("lb"), &sid), Some(1));
        // An error from the older generation of that service is stale.
        e.generation = Some(0);
        assert!(!t.handle_application_error(&addr("lb"), &e));
    }

    #[test]
    fn srv_updates_respect_srv_max_hosts() {
        let now = Instant::now();
        let opts = TopologyOptions {
            hosts: vec![addr("a"), addr("b")],
            srv_max_hosts: Some(2),
            ..Default::default()
        };
        let mut t = Topology::new(opts, now).expect("valid options");
        drain(&mut t);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        t.handle_srv_hosts(&[addr("a"), addr("c"), addr("d"), addr("e")], &mut rng);
        let servers: Vec<&ServerAddress> = t.description().servers.keys().collect();
        assert_eq!(servers.len(), 2);
        assert!(servers.contains(&&addr("a")));
        let (_, actions) = drain(&mut t);
        assert!(actions.contains(&TopologyAction::StopMonitoring { address: addr("b") }));
        // Empty lists are ignored.
        t.handle_srv_hosts(&[], &mut rng);
        assert_eq!(t.description().servers.len(), 2);
    }

    #[test]
    fn close_removes_servers_then_publishes_topology_closed_last() {
        let (mut t, _) = rs_topology(&["a", "b"]);
        t.close();
        let (events, actions) = drain(&mut t);
        let names: Vec<&str> = events.iter().map(SdamEvent::name).collect();
        assert_eq!(
            names,
            [
                "server_closed_event",
                "server_closed_event",
                "topology_description_changed_event",
                "topology_closed_event"
            ]
        );
        assert_eq!(actions.len(), 2);
        assert_eq!(t.description().topology_type, TopologyType::Unknown);
        assert!(t.is_closed());
    }

    #[test]
    fn heartbeat_events_are_queued_in_order() {
        let (mut t, now) = rs_topology(&["a"]);
        t.heartbeat_started(&addr("a"), false);
        let reply = primary_reply(&["a"], 1);
        t.heartbeat_succeeded(&addr("a"), Duration::from_millis(3), reply.clone(), false);
        t.handle_hello(&addr("a"), Ok(&reply), Some(Duration::from_millis(3)), now);
        t.heartbeat_started(&addr("a"), true);
        let err = CheckError::new(CheckErrorKind::Network, "reset");
        t.heartbeat_failed(&addr("a"), Duration::from_millis(1), &err, true);
        let (events, _) = drain(&mut t);
        let names: Vec<&str> = events.iter().map(SdamEvent::name).collect();
        assert_eq!(
            names,
            [
                "server_heartbeat_started_event",
                "server_heartbeat_succeeded_event",
                "server_description_changed_event",
                "topology_description_changed_event",
                "server_heartbeat_started_event",
                "server_heartbeat_failed_event"
            ]
        );
    }

    #[test]
    fn raw_replies_that_do_not_decode_fail_the_check() {
        let (mut t, now) = rs_topology(&["a"]);
        t.handle_hello(&addr("a"), Ok(&primary_reply(&["a"], 1)), None, now);
        drain(&mut t);
        // A document whose declared length is wrong.
        let bytes = [6u8, 0, 0, 0, 0x10, 0];
        if let Ok(raw) = bson::RawDocument::from_bytes(&bytes) {
            t.handle_raw_hello(&addr("a"), raw, None, now);
            assert_eq!(
                t.description().server(&addr("a")).map(|s| s.server_type),
                Some(ServerType::Unknown)
            );
        }
        let good = bson::RawDocumentBuf::try_from(&primary_reply(&["a"], 1)).expect("encodes");
        t.handle_raw_hello(&addr("a"), &good, None, now);
        assert_eq!(
            t.description().server(&addr("a")).map(|s| s.server_type),
            Some(ServerType::RsPrimary)
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const HOSTS: [&str; 4] = ["a", "b", "c", "d"];

        fn reply() -> impl Strategy<Value = Option<Document>> {
            let kind = 0..7u8;
            let hosts = proptest::sample::subsequence(HOSTS.to_vec(), 0..=4);
            let set = prop_oneof![Just("rs"), Just("other")];
            (kind, hosts, set, 0..3u8, 0..3i64, any::<bool>(), 0..30i32).prop_map(
                |(kind, hosts, set, election, sv, me_ok, wire)| {
                    let mut d = doc! {"ok": 1, "minWireVersion": 0, "maxWireVersion": wire};
                    match kind {
                        0 => return None,
                        1 => {
                            d.insert("msg", "isdbgrid");
                        }
                        2 => {
                            d.insert("isreplicaset", true);
                        }
                        3 => {}
                        k => {
                            d.insert("setName", set);
                            d.insert("hosts", hosts);
                            d.insert("setVersion", sv);
                            let mut oid = [0u8; 12];
                            oid[11] = election;
                            d.insert("electionId", ObjectId::from_bytes(oid));
                            match k {
                                4 => d.insert("isWritablePrimary", true),
                                5 => d.insert("secondary", true),
                                _ => d.insert("arbiterOnly", true),
                            };
                            if !me_ok {
                                d.insert("me", "elsewhere:1");
                            }
                        }
                    }
                    Some(d)
                },
            )
        }

        fn check_invariants(t: &Topology) -> Result<(), TestCaseError> {
            let td = t.description();
            let primaries = td
                .servers
                .values()
                .filter(|s| s.server_type == ServerType::RsPrimary)
                .count();
            prop_assert!(primaries <= 1);
            match td.topology_type {
                TopologyType::ReplicaSetWithPrimary => prop_assert_eq!(primaries, 1),
                TopologyType::ReplicaSetNoPrimary => prop_assert_eq!(primaries, 0),
                TopologyType::Sharded => prop_assert!(td
                    .servers
                    .values()
                    // A ghost seen while Unknown stays until its next check.
                    .all(|s| matches!(
                        s.server_type,
                        ServerType::Mongos | ServerType::Unknown | ServerType::RsGhost
                    ))),
                _ => {}
            }
            for a in td.servers.keys() {
                prop_assert!(t.pool_generation(a).is_some());
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn random_outcomes_keep_the_invariants(
                seeds in proptest::sample::subsequence(HOSTS.to_vec(), 1..=4),
                set_name in any::<bool>(),
                steps in proptest::collection::vec((0..4usize, reply(), 0..4u8), 1..40),
            ) {
                let now = Instant::now();
                let opts = TopologyOptions {
                    hosts: seeds.iter().map(|h| addr(h)).collect(),
                    repl_set_name: set_name.then(|| "rs".to_string()),
                    ..Default::default()
                };
                let mut t = Topology::new(opts, now).expect("valid options");
                let mut last_new = None;
                for (host, reply, err) in steps {
                    let a = addr(HOSTS[host]);
                    match reply {
                        Some(r) => t.handle_hello(&a, Ok(&r), Some(Duration::from_millis(1)), now),
                        None => {
                            let kind = match err {
                                0 => Some(ApplicationErrorKind::Network { message: "x".into() }),
                                1 => Some(ApplicationErrorKind::Command {
                                    code: Some(91), message: "x".into(), topology_version: None,
                                }),
                                2 => Some(ApplicationErrorKind::Timeout { message: "x".into() }),
                                _ => None,
                            };
                            match kind {
                                Some(kind) => {
                                    let e = ApplicationError::new(kind, ConnectionPhase::Established);
                                    t.handle_application_error(&a, &e);
                                }
                                None => {
                                    let e = CheckError::new(CheckErrorKind::Network, "x");
                                    t.handle_hello(&a, Err(e), None, now);
                                }
                            }
                        }
                    }
                    check_invariants(&t)?;
                    while let Some(ev) = t.poll_event() {
                        if let SdamEvent::TopologyDescriptionChanged { new, .. } = ev {
                            last_new = Some(new);
                        }
                    }
                    while t.poll_action().is_some() {}
                }
                if let Some(new) = last_new {
                    prop_assert!(new.equivalent(t.description()));
                }
            }
        }
    }
}
