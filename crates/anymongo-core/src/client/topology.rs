//! The async side of discovery: one monitor task per server feeding the sans-IO
//! [`sdam::Topology`](crate::sdam::Topology), a pool per server, and server selection that waits
//! for the topology to change.
//!
//! Monitoring follows the server monitoring spec. A monitor's first check is its connection's
//! handshake. When the server's hello carries a `topologyVersion` and `serverMonitoringMode`
//! allows it (stream, or auto off FaaS platforms), the monitor then keeps an awaitable hello
//! (`topologyVersion` + `maxAwaitTimeMS`, OP_MSG `exhaustAllowed`) outstanding and processes each
//! streamed reply at once, while an RTT task measures the round trip with plain hellos on a
//! connection of its own every `heartbeatFrequencyMS`. Otherwise it polls: a hello every
//! `heartbeatFrequencyMS` after the previous check ended, sooner when a check is requested but
//! never sooner than 500 ms. After a network error on a known server it checks again at once,
//! once ([`sdam::next_check`](crate::sdam::next_check)).
//!
//! Everything runs on the client's runtime. Monitors and RTT tasks hold only a weak reference to
//! the shared state and each watches a stop signal (which also interrupts a check or a streamed
//! read in progress), so no task outlives the client.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bson::Document;
use futures::channel::oneshot;
use futures::task::AtomicWaker;

use crate::auth::ScramCache;
use crate::cmap::{Pool, PoolConfig, PoolOptions};
use crate::conn::{Connection, Establisher, HandshakeRequest};
use crate::dns::Resolver;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventHandler};
use crate::operation::{check_ok, Command};
use crate::options::{
    ClientOptions, ReadPreference, ReadPreferenceMode, ServerAddress, ServerMonitoringMode,
};
use crate::rt::{deadline_after, Runtime, RuntimeExt};
use crate::sdam::{
    next_check, ApplicationError, CheckError, CheckInfo, ConnectionPhase, NextCheck, ServerType,
    Topology as Machine, TopologyAction, TopologyDescription, TopologyOptions, TopologyType,
    TopologyVersion, MIN_HEARTBEAT_FREQUENCY,
};
use crate::selection::{self, Criteria};

/// A pool of connections to one server.
pub(crate) type ServerPool = Pool<Establisher>;

/// Where an application error happened, for SDAM.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ErrorPhase {
    BeforeHandshake,
    AfterHandshake,
}

/// A server chosen for an operation. Counts as one operation in progress on it until dropped.
pub(crate) struct SelectedServer {
    pub(crate) address: ServerAddress,
    pub(crate) pool: ServerPool,
    server_type: ServerType,
    topology_type: TopologyType,
    operations: Arc<AtomicUsize>,
}

impl Drop for SelectedServer {
    fn drop(&mut self) {
        self.operations.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SelectedServer {
    /// The `$readPreference` to send with a command, per the server selection spec: mongos and
    /// load balancers get any non-primary preference; a direct connection to a replica set
    /// member gets `primaryPreferred` so that reads work on secondaries.
    pub(crate) fn read_preference_to_send(
        &self,
        rp: Option<&ReadPreference>,
        is_read: bool,
    ) -> Option<ReadPreference> {
        let mongos_like = matches!(
            self.server_type,
            ServerType::Mongos | ServerType::LoadBalancer
        );
        if mongos_like {
            return rp
                .filter(|rp| rp.mode != ReadPreferenceMode::Primary)
                .cloned();
        }
        if self.topology_type == TopologyType::Single && is_read {
            return Some(match rp {
                Some(rp) if rp.mode != ReadPreferenceMode::Primary => rp.clone(),
                _ => ReadPreference::with_mode(ReadPreferenceMode::PrimaryPreferred),
            });
        }
        rp.filter(|rp| rp.mode != ReadPreferenceMode::Primary)
            .cloned()
    }
}

/// Signals between the topology and one monitor task.
#[derive(Default)]
struct MonitorSignal {
    stopped: AtomicBool,
    check_now: AtomicBool,
    /// Drop the monitor's connection and reconnect (after an application network error).
    reset: AtomicBool,
    waker: AtomicWaker,
}

impl MonitorSignal {
    fn notify(&self) {
        self.waker.wake();
    }
}

/// Completes when the task is stopped, or (if included) asked to check or reset.
struct Signalled<'a> {
    signal: &'a MonitorSignal,
    check_now: bool,
    reset: bool,
}

impl Future for Signalled<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let signal = self.signal;
        signal.waker.register(cx.waker());
        let fired = signal.stopped.load(Ordering::SeqCst)
            || (self.reset && signal.reset.load(Ordering::SeqCst))
            || (self.check_now && signal.check_now.load(Ordering::SeqCst));
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

struct ServerEntry {
    pool: ServerPool,
    /// The monitor's signals.
    signal: Arc<MonitorSignal>,
    /// The RTT task's (a task of its own: one waker per task).
    rtt_signal: Arc<MonitorSignal>,
    operations: Arc<AtomicUsize>,
}

impl ServerEntry {
    /// Stops the monitor and the RTT task and closes the pool.
    fn stop(&self) {
        for signal in [&self.signal, &self.rtt_signal] {
            signal.stopped.store(true, Ordering::SeqCst);
            signal.notify();
        }
        self.pool.close();
    }
}

struct State {
    machine: Machine,
    servers: HashMap<ServerAddress, ServerEntry>,
    waiters: Vec<oneshot::Sender<()>>,
}

struct Shared {
    runtime: Arc<dyn Runtime>,
    options: ClientOptions,
    events: Option<EventHandler>,
    state: Mutex<State>,
    closed: AtomicBool,
    /// Completes `closed()` once close has run.
    close_waiters: Mutex<Vec<oneshot::Sender<()>>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    scram_cache: ScramCache,
    heartbeat_frequency: Duration,
    local_threshold: Duration,
    server_selection_timeout: Duration,
    /// Every server's pool options, validated once when the topology starts.
    pool_options: PoolOptions,
    /// Resolves host names for connections, when it does so.
    resolver: Option<Arc<dyn Resolver>>,
}

/// The client's view of the deployment.
#[derive(Clone)]
pub(crate) struct Topology {
    shared: Arc<Shared>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the machine half-updated in a way that matters
    // more than refusing all further work would; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Topology {
    /// Creates the topology and starts monitoring the seed list.
    #[cfg(test)]
    pub(crate) fn start(
        runtime: Arc<dyn Runtime>,
        options: ClientOptions,
        events: Option<EventHandler>,
    ) -> Result<Self> {
        Self::start_with_resolver(runtime, options, events, None)
    }

    /// Creates the topology and starts monitoring the seed list (already resolved, for
    /// `mongodb+srv`: see `client::srv`); connections resolve host names with `resolver` when
    /// it does so.
    pub(crate) fn start_with_resolver(
        runtime: Arc<dyn Runtime>,
        options: ClientOptions,
        events: Option<EventHandler>,
        resolver: Option<Arc<dyn Resolver>>,
    ) -> Result<Self> {
        if options.hosts.is_empty() {
            return Err(Error::invalid_argument(
                "the client needs at least one host",
            ));
        }
        let tls = if options.tls_enabled() {
            Some(crate::tls::client_config(&options.tls_options)?)
        } else {
            None
        };
        let heartbeat_frequency = options
            .heartbeat_frequency
            .unwrap_or(crate::sdam::DEFAULT_HEARTBEAT_FREQUENCY);
        let local_threshold = options
            .local_threshold
            .unwrap_or(crate::sdam::DEFAULT_LOCAL_THRESHOLD);
        let server_selection_timeout = options
            .server_selection_timeout
            .unwrap_or(crate::sdam::DEFAULT_SERVER_SELECTION_TIMEOUT);
        let machine = Machine::new(
            TopologyOptions {
                hosts: options.hosts.clone(),
                repl_set_name: options.repl_set_name.clone(),
                direct_connection: options.direct_connection,
                load_balanced: options.load_balanced.unwrap_or(false),
                srv_max_hosts: options.srv.as_ref().map(|s| s.max_hosts),
                local_threshold,
                heartbeat_frequency,
                server_selection_timeout,
                topology_id: None,
            },
            runtime.now(),
        )?;
        let pool_options = PoolOptions {
            max_pool_size: options.max_pool_size.unwrap_or(100),
            min_pool_size: options.min_pool_size.unwrap_or(0),
            max_connecting: options.max_connecting.unwrap_or(2),
            max_idle_time: options.max_idle_time,
            wait_queue_timeout: options.wait_queue_timeout,
        };
        pool_options.validate()?;
        let shared = Arc::new(Shared {
            runtime,
            options,
            events,
            state: Mutex::new(State {
                machine,
                servers: HashMap::new(),
                waiters: Vec::new(),
            }),
            closed: AtomicBool::new(false),
            close_waiters: Mutex::new(Vec::new()),
            tls,
            scram_cache: ScramCache::new(),
            heartbeat_frequency,
            local_threshold,
            server_selection_timeout,
            pool_options,
            resolver,
        });
        {
            let mut state = lock(&shared.state);
            shared.process(&mut state);
        }
        Ok(Topology { shared })
    }

    /// Feeds the hosts an SRV rescan found to discovery (which applies them only while the
    /// topology is Unknown or Sharded, never empties it, and respects `srvMaxHosts`).
    pub(crate) fn handle_srv_hosts(&self, hosts: &[ServerAddress]) {
        let mut state = lock(&self.shared.state);
        if self.shared.closed.load(Ordering::SeqCst) {
            return;
        }
        state.machine.handle_srv_hosts(hosts, &mut rand::rng());
        self.shared.process(&mut state);
    }

    /// The current topology type.
    pub(crate) fn topology_type(&self) -> TopologyType {
        lock(&self.shared.state).machine.description().topology_type
    }

    /// A snapshot of the current description.
    pub(crate) fn description(&self) -> TopologyDescription {
        lock(&self.shared.state).machine.description().clone()
    }

    /// Whether the topology was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Closes the topology: stops every monitor, closes every pool, fails waiting selections.
    /// Never blocks and needs no runtime context (it only flips flags and wakes tasks).
    pub(crate) fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut state = lock(&self.shared.state);
        state.machine.close();
        self.shared.process(&mut state);
        for (_, entry) in state.servers.drain() {
            entry.stop();
        }
        state.waiters.clear();
        drop(state);
        let waiters = std::mem::take(
            &mut *self
                .shared
                .close_waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for w in waiters {
            let _ = w.send(());
        }
    }

    /// Completes once [`close`](Self::close) has run.
    pub(crate) async fn closed(&self) {
        if self.is_closed() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.shared
            .close_waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        let _ = rx.await;
    }

    /// The server at `address`, if it is still in the topology (for cursors' getMore).
    pub(crate) fn server(&self, address: &ServerAddress) -> Option<SelectedServer> {
        let state = lock(&self.shared.state);
        let entry = state.servers.get(address)?;
        let sd = state.machine.description().server(address)?;
        entry.operations.fetch_add(1, Ordering::Relaxed);
        Some(SelectedServer {
            address: address.clone(),
            pool: entry.pool.clone(),
            server_type: sd.server_type,
            topology_type: state.machine.description().topology_type,
            operations: entry.operations.clone(),
        })
    }

    /// Selects a server for a read with `rp`, or for a write when `rp` is `None`, waiting for
    /// the topology to change up to `serverSelectionTimeoutMS`. In a sharded cluster the
    /// `deprioritized` servers (where a retried operation failed) are chosen only if no other
    /// server is suitable.
    pub(crate) async fn select_server(
        &self,
        rp: Option<&ReadPreference>,
        write: bool,
        deprioritized: &[ServerAddress],
    ) -> Result<SelectedServer> {
        let shared = &self.shared;
        let criteria = if write {
            Criteria::Write
        } else {
            Criteria::Read(rp.cloned().unwrap_or_default())
        };
        let deadline = deadline_after(shared.runtime.now(), shared.server_selection_timeout);
        loop {
            let changed = {
                let mut state = lock(&shared.state);
                if shared.closed.load(Ordering::SeqCst) {
                    return Err(Error::new(ErrorKind::Shutdown));
                }
                let description = state.machine.description();
                let deprioritized = if description.topology_type == TopologyType::Sharded {
                    deprioritized
                } else {
                    &[]
                };
                let picked = selection::select(
                    description,
                    &criteria,
                    shared.local_threshold,
                    shared.heartbeat_frequency,
                    deprioritized,
                    &mut rand::rng(),
                    |a| {
                        state
                            .servers
                            .get(a)
                            .map_or(0, |e| e.operations.load(Ordering::Relaxed))
                    },
                )?;
                if let Some(address) = picked {
                    if let Some(entry) = state.servers.get(&address) {
                        let server_type = description
                            .server(&address)
                            .map_or(ServerType::Unknown, |s| s.server_type);
                        entry.operations.fetch_add(1, Ordering::Relaxed);
                        return Ok(SelectedServer {
                            address,
                            pool: entry.pool.clone(),
                            server_type,
                            topology_type: description.topology_type,
                            operations: entry.operations.clone(),
                        });
                    }
                }
                state.machine.request_immediate_checks();
                shared.process(&mut state);
                let (tx, rx) = oneshot::channel();
                state.waiters.push(tx);
                rx
            };
            if shared.runtime.timeout_at(deadline, changed).await.is_err() {
                let description = self.description();
                return Err(Error::new(ErrorKind::ServerSelection {
                    message: format!(
                        "no server matched {} within {:?}; topology: {}",
                        describe_criteria(&criteria),
                        shared.server_selection_timeout,
                        summarize(&description)
                    ),
                }));
            }
        }
    }

    /// Tells discovery about an error an operation met on `address`.
    pub(crate) fn handle_application_error(
        &self,
        address: &ServerAddress,
        error: &Error,
        generation: Option<u64>,
        phase: ErrorPhase,
    ) {
        self.shared
            .handle_application_error(address, error, generation, phase)
    }
}

fn describe_criteria(criteria: &Criteria) -> String {
    match criteria {
        Criteria::Write => "a writable server".to_string(),
        Criteria::Read(rp) => format!("read preference {}", rp.mode.as_str()),
        Criteria::Predicate(_) => "the given predicate".to_string(),
    }
}

/// A one-line description of a topology for error messages.
fn summarize(description: &TopologyDescription) -> String {
    let servers: Vec<String> = description
        .servers
        .values()
        .map(|s| match &s.error {
            Some(e) => format!("{} ({}: {})", s.address, s.server_type, e),
            // Never checked: its monitor is still connecting or waiting for the handshake's
            // reply (a server that accepts and never answers, with a connectTimeoutMS at least
            // as long as the selection's; the message named no cause).
            None if s.server_type == ServerType::Unknown && s.last_update_time.is_none() => {
                format!(
                    "{} (Unknown: no check has completed yet; the server has not answered the \
                     connection handshake)",
                    s.address
                )
            }
            None => format!("{} ({})", s.address, s.server_type),
        })
        .collect();
    format!("{} [{}]", description.topology_type, servers.join(", "))
}

impl Shared {
    fn emit(&self, event: Event) {
        if let Some(handler) = &self.events {
            handler.handle(&event);
        }
    }

    /// Applies the machine's actions, publishes its events, and wakes waiting selections.
    fn process(self: &Arc<Self>, state: &mut State) {
        while let Some(event) = state.machine.poll_event() {
            self.emit(Event::Sdam(event));
        }
        let mut changed = false;
        while let Some(action) = state.machine.poll_action() {
            changed = true;
            match action {
                TopologyAction::StartMonitoring { address } => {
                    if !state.servers.contains_key(&address) && !self.closed.load(Ordering::SeqCst)
                    {
                        let entry = self.start_server(&address, true);
                        state.servers.insert(address, entry);
                    }
                }
                TopologyAction::StopMonitoring { address } => {
                    if let Some(entry) = state.servers.remove(&address) {
                        entry.stop();
                    }
                }
                TopologyAction::RequestImmediateCheck { address } => {
                    if let Some(entry) = state.servers.get(&address) {
                        entry.signal.check_now.store(true, Ordering::SeqCst);
                        entry.signal.notify();
                    }
                }
                TopologyAction::CancelCheck { address } => {
                    if let Some(entry) = state.servers.get(&address) {
                        entry.signal.reset.store(true, Ordering::SeqCst);
                        entry.signal.notify();
                    }
                }
                TopologyAction::ClearPool {
                    address,
                    interrupt_in_use_connections,
                    ..
                } => {
                    if let Some(entry) = state.servers.get(&address) {
                        entry.pool.clear(interrupt_in_use_connections, None);
                    }
                }
                TopologyAction::MarkPoolReady { address } => {
                    if !state.servers.contains_key(&address) && !self.closed.load(Ordering::SeqCst)
                    {
                        // Load-balanced mode: the server is never monitored but needs a pool.
                        let entry = self.start_server(&address, false);
                        state.servers.insert(address.clone(), entry);
                    }
                    if let Some(entry) = state.servers.get(&address) {
                        entry.pool.ready();
                    }
                }
            }
        }
        // New events may have come from the actions (none today, but cheap to drain).
        while let Some(event) = state.machine.poll_event() {
            self.emit(Event::Sdam(event));
        }
        if changed || !state.waiters.is_empty() {
            for waiter in state.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn establisher(&self, address: &ServerAddress) -> Establisher {
        let o = &self.options;
        let establisher = Establisher::new(
            self.runtime.clone(),
            address.clone(),
            Some(o.connect_timeout.unwrap_or(Duration::from_secs(10))),
            o.socket_timeout,
            self.tls.clone(),
            HandshakeRequest {
                app_name: o.app_name.clone(),
                runtime_name: self.runtime.name().to_string(),
                compressors: o.compressors.clone().unwrap_or_default(),
                load_balanced: o.load_balanced.unwrap_or(false),
                sasl_supported_mechs: None,
                speculative_authenticate: None,
            },
            o.credential.clone(),
            self.scram_cache.clone(),
        );
        match &self.resolver {
            Some(r) => establisher.with_resolver(r.clone()),
            None => establisher,
        }
    }

    /// Creates the server's pool and, with `monitor`, starts its monitor.
    fn start_server(self: &Arc<Self>, address: &ServerAddress, monitor: bool) -> ServerEntry {
        let o = &self.options;
        let events = self.events.clone();
        let weak = Arc::downgrade(self);
        let error_address = address.clone();
        let pool = Pool::new(PoolConfig {
            address: address.clone(),
            options: self.pool_options.clone(),
            connector: self.establisher(address),
            runtime: self.runtime.clone(),
            event_sink: events.map(|h| {
                Arc::new(move |e: &crate::cmap::CmapEvent| h.handle(&Event::Cmap(e.clone())))
                    as crate::cmap::EventSink
            }),
            background_error_handler: Some(Arc::new(move |generation, error| {
                // Called outside the pool's lock, but possibly inside ours: defer to a task.
                if let Some(shared) = weak.upgrade() {
                    let runtime = shared.runtime.clone();
                    let address = error_address.clone();
                    runtime.spawn(Box::pin(async move {
                        shared.handle_application_error(
                            &address,
                            &error,
                            Some(generation),
                            ErrorPhase::BeforeHandshake,
                        );
                    }));
                }
            })),
        })
        // The options were validated when the topology started: creating a pool cannot fail.
        .expect("pool options are validated in Topology::start");
        let signal = Arc::new(MonitorSignal::default());
        let rtt_signal = Arc::new(MonitorSignal::default());
        let entry = ServerEntry {
            pool,
            signal: signal.clone(),
            rtt_signal: rtt_signal.clone(),
            operations: Arc::new(AtomicUsize::new(0)),
        };
        if !monitor {
            return entry;
        }
        let monitor = Monitor {
            shared: Arc::downgrade(self),
            address: address.clone(),
            signal: signal.clone(),
            rtt_signal: rtt_signal.clone(),
            establisher: self.establisher(address),
            runtime: self.runtime.clone(),
            heartbeat_frequency: self.heartbeat_frequency,
            connect_timeout: o.connect_timeout.unwrap_or(Duration::from_secs(10)),
            streaming: streaming_enabled(o.effective_server_monitoring_mode()),
        };
        self.runtime.spawn(Box::pin(monitor.run()));
        entry
    }

    fn handle_application_error(
        self: &Arc<Self>,
        address: &ServerAddress,
        error: &Error,
        generation: Option<u64>,
        phase: ErrorPhase,
    ) {
        let phase = match phase {
            ErrorPhase::BeforeHandshake => ConnectionPhase::Establishing,
            ErrorPhase::AfterHandshake => ConnectionPhase::Established,
        };
        let phase = if matches!(error.kind(), ErrorKind::Authentication { .. }) {
            ConnectionPhase::Authenticating
        } else {
            phase
        };
        let generation = generation.and_then(|g| u32::try_from(g).ok());
        let Some(app_error) = ApplicationError::from_error(error, phase, generation) else {
            return;
        };
        let mut state = lock(&self.state);
        if state.machine.handle_application_error(address, &app_error) {
            self.process(&mut state);
        }
    }

    /// Feeds a monitor's successful check to the machine: `rtt` is the sample it measured
    /// (`None` for awaited replies, whose RTT comes from the RTT task).
    fn handle_check(
        self: &Arc<Self>,
        address: &ServerAddress,
        reply: &Document,
        duration: Duration,
        rtt: Option<Duration>,
        awaited: bool,
    ) {
        let mut state = lock(&self.state);
        let now = self.runtime.now();
        state
            .machine
            .heartbeat_succeeded(address, duration, reply.clone(), awaited);
        state.machine.handle_hello(address, Ok(reply), rtt, now);
        self.process(&mut state);
    }

    /// Feeds a monitor's failed check to the machine.
    fn handle_check_failure(
        self: &Arc<Self>,
        address: &ServerAddress,
        failure: CheckError,
        duration: Duration,
        awaited: bool,
    ) {
        let mut state = lock(&self.state);
        let now = self.runtime.now();
        state
            .machine
            .heartbeat_failed(address, duration, &failure, awaited);
        state.machine.handle_hello(address, Err(failure), None, now);
        self.process(&mut state);
    }
}

/// Whether the process runs on a Function-as-a-Service platform (the handshake spec's
/// `client.env` rules), where `serverMonitoringMode=auto` means polling.
fn is_faas() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    std::env::var("AWS_EXECUTION_ENV").is_ok_and(|v| v.starts_with("AWS_Lambda_"))
        || set("AWS_LAMBDA_RUNTIME_API")
        || set("FUNCTIONS_WORKER_RUNTIME")
        || set("K_SERVICE")
        || set("FUNCTION_NAME")
        || set("VERCEL")
}

/// Whether monitors may use the streaming protocol under `mode` (the server must support it
/// too: its hello replies carry a `topologyVersion`).
pub(crate) fn streaming_enabled(mode: ServerMonitoringMode) -> bool {
    match mode {
        ServerMonitoringMode::Stream => true,
        ServerMonitoringMode::Poll => false,
        ServerMonitoringMode::Auto => !is_faas(),
    }
}

/// A successful check.
struct CheckReply {
    reply: Document,
    /// The RTT sample this check measured: `None` for awaited (streamed) replies.
    rtt: Option<Duration>,
    /// Whether the reply came from an awaitable hello (streaming protocol).
    awaited: bool,
}

/// The monitoring connection and whether the server is streaming replies on it.
#[derive(Default)]
struct MonitorConn {
    conn: Option<Connection>,
    more_to_come: bool,
    next_id: u64,
}

impl MonitorConn {
    fn close(&mut self) {
        self.conn = None;
        self.more_to_come = false;
    }
}

/// A server monitor: checks its server every `heartbeatFrequencyMS` (polling), or keeps an
/// awaitable hello outstanding (streaming) when the server supports it and streaming is enabled.
struct Monitor {
    shared: Weak<Shared>,
    address: ServerAddress,
    signal: Arc<MonitorSignal>,
    /// Stops the RTT task (started once the server is found to support streaming).
    rtt_signal: Arc<MonitorSignal>,
    establisher: Establisher,
    runtime: Arc<dyn Runtime>,
    heartbeat_frequency: Duration,
    /// `connectTimeoutMS`; zero means no limit.
    connect_timeout: Duration,
    streaming: bool,
}

impl Monitor {
    fn stopped(&self) -> bool {
        self.signal.stopped.load(Ordering::SeqCst)
    }

    async fn run(self) {
        let mut mc = MonitorConn::default();
        let mut rtt_started = false;
        loop {
            if self.stopped() {
                return;
            }
            if self.signal.reset.swap(false, Ordering::SeqCst) {
                mc.close();
            }
            // A request that arrives while a check is in progress is ignored (the check is
            // its answer); one that arrives while sleeping wakes the monitor.
            self.signal.check_now.store(false, Ordering::SeqCst);
            let (info, awaited) = {
                let Some(shared) = self.shared.upgrade() else {
                    return;
                };
                let mut state = lock(&shared.state);
                let Some(info) = state.machine.check_info(&self.address) else {
                    // The server left the topology.
                    return;
                };
                let awaited = mc.conn.is_some()
                    && (mc.more_to_come || (self.streaming && info.topology_version.is_some()));
                state.machine.heartbeat_started(&self.address, awaited);
                shared.process(&mut state);
                (info, awaited)
            };
            let check_started = self.runtime.now();
            let outcome = {
                let check = self.check(&mut mc, &info);
                let stop = Signalled {
                    signal: &self.signal,
                    check_now: false,
                    reset: true,
                };
                match futures::future::select(Box::pin(check), stop).await {
                    futures::future::Either::Left((outcome, _)) => Some(outcome),
                    futures::future::Either::Right(_) => None,
                }
            };
            let Some(outcome) = outcome else {
                if self.stopped() {
                    return;
                }
                // Cancelled: an application connection met a network error and the server is
                // Unknown now. Close the connection, then wait before checking again.
                self.signal.reset.store(false, Ordering::SeqCst);
                mc.close();
                self.wait(&mut mc).await;
                continue;
            };
            let duration = self.runtime.now().saturating_duration_since(check_started);
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            if self.stopped() {
                return;
            }
            let next = match &outcome {
                Ok(reply) => {
                    let tv = reply
                        .reply
                        .get_document("topologyVersion")
                        .ok()
                        .and_then(TopologyVersion::from_document);
                    shared.handle_check(
                        &self.address,
                        &reply.reply,
                        duration,
                        reply.rtt,
                        reply.awaited,
                    );
                    if self.streaming && tv.is_some() && !rtt_started {
                        rtt_started = true;
                        self.start_rtt_task();
                    }
                    next_check(
                        info.server_type,
                        Ok(tv.as_ref()),
                        self.streaming,
                        mc.more_to_come,
                    )
                }
                Err(e) => {
                    mc.close();
                    let failure = CheckError::from_error(e);
                    let kind = failure.kind;
                    shared.handle_check_failure(&self.address, failure, duration, awaited);
                    next_check(info.server_type, Err(kind), self.streaming, false)
                }
            };
            drop(shared);
            if next == NextCheck::AfterHeartbeat {
                self.wait(&mut mc).await;
            }
        }
    }

    /// One check: connect and handshake if there is no connection (the handshake reply is the
    /// check's reply, its duration an RTT sample); read the next streamed reply; start an
    /// awaitable hello (streaming); or send a plain hello (polling).
    async fn check(&self, mc: &mut MonitorConn, info: &CheckInfo) -> Result<CheckReply> {
        let Some(c) = mc.conn.as_mut() else {
            mc.next_id += 1;
            let started = self.runtime.now();
            let (mut c, reply) = self
                .establisher
                .establish_for_monitoring(mc.next_id)
                .await?;
            let rtt = self.runtime.now().saturating_duration_since(started);
            // Monitors use connectTimeoutMS as their socket timeout.
            c.set_socket_timeout(Some(self.connect_timeout));
            mc.conn = Some(c);
            return Ok(CheckReply {
                reply,
                rtt: Some(rtt),
                awaited: false,
            });
        };
        if mc.more_to_come {
            let (raw, more) = c.read_streamed_reply().await?;
            mc.more_to_come = more;
            check_ok(&raw)?;
            return Ok(CheckReply {
                reply: crate::wire::raw::to_document(&raw)?,
                rtt: None,
                awaited: true,
            });
        }
        let mut body = hello_command(c.description().is_some_and(|d| d.hello_ok));
        match info.topology_version.as_ref().filter(|_| self.streaming) {
            Some(tv) => {
                body.insert("topologyVersion", tv.to_document());
                body.insert(
                    "maxAwaitTimeMS",
                    i64::try_from(self.heartbeat_frequency.as_millis()).unwrap_or(i64::MAX),
                );
                // connectTimeoutMS + heartbeatFrequencyMS for awaited replies (unlimited stays
                // unlimited).
                c.set_socket_timeout(
                    (!self.connect_timeout.is_zero())
                        .then(|| self.connect_timeout + self.heartbeat_frequency),
                );
                let cmd = Command::new("admin", body);
                let (raw, more) = c
                    .send_exhaust_allowed(&cmd, crate::conn::next_request_id())
                    .await?;
                mc.more_to_come = more;
                check_ok(&raw)?;
                Ok(CheckReply {
                    reply: crate::wire::raw::to_document(&raw)?,
                    rtt: None,
                    awaited: true,
                })
            }
            None => {
                c.set_socket_timeout(Some(self.connect_timeout));
                let cmd = Command::new("admin", body);
                let started = self.runtime.now();
                let raw = c.send_command(&cmd, crate::conn::next_request_id()).await?;
                let rtt = self.runtime.now().saturating_duration_since(started);
                check_ok(&raw)?;
                Ok(CheckReply {
                    reply: crate::wire::raw::to_document(&raw)?,
                    rtt: Some(rtt),
                    awaited: false,
                })
            }
        }
    }

    /// Sleeps until the next check is due: `heartbeatFrequencyMS` after the last check ended,
    /// or sooner when a check is requested, but never sooner than `minHeartbeatFrequencyMS`.
    /// A reset while sleeping closes the connection and goes on sleeping.
    async fn wait(&self, mc: &mut MonitorConn) {
        let ended = self.runtime.now();
        let regular = deadline_after(ended, self.heartbeat_frequency);
        let earliest = deadline_after(ended, MIN_HEARTBEAT_FREQUENCY);
        let mut sleep = self.runtime.sleep_until(regular);
        loop {
            let signalled = Signalled {
                signal: &self.signal,
                check_now: true,
                reset: true,
            };
            match futures::future::select(sleep, signalled).await {
                futures::future::Either::Left(_) => return,
                futures::future::Either::Right((_, rest)) => sleep = rest,
            }
            if self.stopped() {
                return;
            }
            if self.signal.reset.swap(false, Ordering::SeqCst) {
                mc.close();
            }
            if self.signal.check_now.load(Ordering::SeqCst) {
                // A check was requested: honour the minimum interval between checks.
                if self.runtime.now() < earliest {
                    let min_sleep = self.runtime.sleep_until(earliest);
                    let stop = Signalled {
                        signal: &self.signal,
                        check_now: false,
                        reset: false,
                    };
                    futures::future::select(min_sleep, stop).await;
                }
                return;
            }
        }
    }

    fn start_rtt_task(&self) {
        if self.rtt_signal.stopped.load(Ordering::SeqCst) {
            return;
        }
        let task = RttTask {
            shared: self.shared.clone(),
            address: self.address.clone(),
            signal: self.rtt_signal.clone(),
            establisher: self.establisher.clone(),
            runtime: self.runtime.clone(),
            heartbeat_frequency: self.heartbeat_frequency,
            connect_timeout: self.connect_timeout,
        };
        self.runtime.spawn(Box::pin(task.run()));
    }
}

/// `{hello: 1, helloOk: true}`, or the legacy hello when the server did not say `helloOk`.
fn hello_command(hello_ok: bool) -> Document {
    let mut body = Document::new();
    body.insert(if hello_ok { "hello" } else { "isMaster" }, 1);
    body.insert("helloOk", true);
    body
}

/// Measures a streaming server's RTT every `heartbeatFrequencyMS` with a plain hello on its own
/// connection, feeding [`Machine::handle_rtt_sample`]. Publishes no events; its errors never
/// touch the topology (the connection is just reopened next time).
struct RttTask {
    shared: Weak<Shared>,
    address: ServerAddress,
    signal: Arc<MonitorSignal>,
    establisher: Establisher,
    runtime: Arc<dyn Runtime>,
    heartbeat_frequency: Duration,
    connect_timeout: Duration,
}

impl RttTask {
    async fn run(self) {
        let mut conn: Option<Connection> = None;
        let mut next_id = 0u64;
        loop {
            if self.signal.stopped.load(Ordering::SeqCst) {
                return;
            }
            let sample = {
                let ping = self.ping(&mut conn, &mut next_id);
                let stop = Signalled {
                    signal: &self.signal,
                    check_now: false,
                    reset: false,
                };
                match futures::future::select(Box::pin(ping), stop).await {
                    futures::future::Either::Left((sample, _)) => sample,
                    futures::future::Either::Right(_) => return,
                }
            };
            match sample {
                Ok(rtt) => {
                    let Some(shared) = self.shared.upgrade() else {
                        return;
                    };
                    let mut state = lock(&shared.state);
                    state.machine.handle_rtt_sample(&self.address, rtt);
                }
                Err(_) => conn = None,
            }
            let sleep = self
                .runtime
                .sleep_until(deadline_after(self.runtime.now(), self.heartbeat_frequency));
            let stop = Signalled {
                signal: &self.signal,
                check_now: false,
                reset: false,
            };
            futures::future::select(sleep, stop).await;
        }
    }

    /// One RTT sample: the handshake's duration on a new connection, else a hello's.
    async fn ping(&self, conn: &mut Option<Connection>, next_id: &mut u64) -> Result<Duration> {
        let started = self.runtime.now();
        match conn.as_mut() {
            None => {
                *next_id += 1;
                let (mut c, _) = self.establisher.establish_for_monitoring(*next_id).await?;
                c.set_socket_timeout(Some(self.connect_timeout));
                *conn = Some(c);
            }
            Some(c) => {
                let body = hello_command(c.description().is_some_and(|d| d.hello_ok));
                let cmd = Command::new("admin", body);
                let raw = c.send_command(&cmd, crate::conn::next_request_id()).await?;
                check_ok(&raw)?;
            }
        }
        Ok(self.runtime.now().saturating_duration_since(started))
    }
}

#[cfg(test)]
mod tests {
    //! The monitors on a virtual clock, against a scripted in-memory server: check intervals,
    //! the minimum interval between requested checks, the retry after a network error, the
    //! streaming protocol with its RTT task, and that closing ends every task.

    use std::collections::VecDeque;
    use std::io;
    use std::net::SocketAddr;
    use std::task::Waker;
    use std::time::Instant;

    use bson::{doc, oid::ObjectId, RawDocumentBuf};

    use super::*;
    use crate::rt::{BoxFuture, Sleep, Stream};
    use crate::sdam::SdamEvent;
    use crate::testing::VirtualRuntime;
    use crate::wire::{self, Body, Decoder, Message, MsgFlags, OpMsg, OpReply};

    /// One request the scripted server received.
    #[derive(Clone, Debug)]
    struct Request {
        at: Instant,
        conn: u64,
        command: Document,
        exhaust: bool,
    }

    /// The scripted server's state, shared by its connections.
    struct Script {
        up: bool,
        /// Bumped when the server is killed: older connections are dead.
        epoch: u64,
        /// Whether hello replies carry a topologyVersion (streaming support).
        streaming: bool,
        process_id: ObjectId,
        counter: i64,
        open: usize,
        next_conn: u64,
        connects: Vec<(Instant, bool)>,
        requests: Vec<Request>,
        wakers: Vec<Waker>,
    }

    fn lock_script(s: &Mutex<Script>) -> MutexGuard<'_, Script> {
        s.lock().unwrap_or_else(|p| p.into_inner())
    }

    impl Script {
        fn hello(&self) -> Document {
            let mut d = doc! {
                "isWritablePrimary": true,
                "helloOk": true,
                "minWireVersion": 0,
                "maxWireVersion": 21,
                "maxBsonObjectSize": 16_777_216,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
            };
            if self.streaming {
                d.insert(
                    "topologyVersion",
                    doc! { "processId": self.process_id, "counter": self.counter },
                );
            }
            d.insert("ok", 1.0);
            d
        }

        fn wake_all(&mut self) {
            for w in self.wakers.drain(..) {
                w.wake();
            }
        }
    }

    /// An awaitable hello the server answers once its counter moves or `due` passes.
    struct Awaiting {
        due: Instant,
        counter: i64,
        response_to: i32,
        exhaust: bool,
        max_await: Duration,
    }

    struct MemStream {
        id: u64,
        epoch: u64,
        script: Arc<Mutex<Script>>,
        rt: VirtualRuntime,
        decoder: Decoder,
        out: VecDeque<u8>,
        awaiting: Option<Awaiting>,
        sleep: Option<Pin<Box<dyn Sleep>>>,
        next_reply_id: i32,
    }

    impl MemStream {
        fn dead(&self, script: &Script) -> bool {
            script.epoch != self.epoch
        }

        fn push_reply(&mut self, response_to: i32, body: Body) -> i32 {
            self.next_reply_id += 1;
            let message = Message {
                request_id: self.next_reply_id,
                response_to,
                body,
                compressor_id: None,
            };
            let mut bytes = Vec::new();
            wire::encode(&message, None, &mut bytes).expect("encode a reply");
            self.out.extend(bytes);
            self.next_reply_id
        }

        fn handle(&mut self, message: Message) {
            let now = self.rt.now();
            let mut script = lock_script(&self.script);
            match message.body {
                Body::Query(q) => {
                    let command = Document::try_from(q.query.as_ref()).expect("query document");
                    script.requests.push(Request {
                        at: now,
                        conn: self.id,
                        command,
                        exhaust: false,
                    });
                    let reply = RawDocumentBuf::try_from(&script.hello()).expect("hello");
                    drop(script);
                    self.push_reply(
                        message.request_id,
                        Body::Reply(OpReply {
                            response_flags: 0,
                            cursor_id: 0,
                            starting_from: 0,
                            documents: vec![reply],
                        }),
                    );
                }
                Body::Msg(m) => {
                    let command = Document::try_from(m.body.as_ref()).expect("command document");
                    let exhaust = m.flags.contains(MsgFlags::EXHAUST_ALLOWED);
                    script.requests.push(Request {
                        at: now,
                        conn: self.id,
                        command: command.clone(),
                        exhaust,
                    });
                    let awaited = command
                        .get_document("topologyVersion")
                        .ok()
                        .and_then(|tv| tv.get_i64("counter").ok());
                    let max_await = command.get_i64("maxAwaitTimeMS").ok();
                    if let (Some(counter), Some(ms)) = (awaited, max_await) {
                        let max_await = Duration::from_millis(ms as u64);
                        self.awaiting = Some(Awaiting {
                            due: now + max_await,
                            counter,
                            response_to: message.request_id,
                            exhaust,
                            max_await,
                        });
                        return;
                    }
                    let reply = if command.contains_key("hello") || command.contains_key("isMaster")
                    {
                        script.hello()
                    } else {
                        doc! { "ok": 1.0 }
                    };
                    drop(script);
                    self.reply_msg(message.request_id, &reply, false);
                }
                Body::Reply(_) => {}
            }
        }

        fn reply_msg(&mut self, response_to: i32, reply: &Document, more_to_come: bool) -> i32 {
            let flags = if more_to_come {
                MsgFlags::MORE_TO_COME
            } else {
                MsgFlags::default()
            };
            let body = RawDocumentBuf::try_from(reply).expect("reply");
            self.push_reply(
                response_to,
                Body::Msg(OpMsg {
                    flags,
                    body,
                    sequences: Vec::new(),
                }),
            )
        }
    }

    impl Stream for MemStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            loop {
                {
                    let mut script = lock_script(&self.script);
                    if self.dead(&script) {
                        return Poll::Ready(Ok(0));
                    }
                    if !script.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        script.wakers.push(cx.waker().clone());
                    }
                }
                if !self.out.is_empty() {
                    let n = buf.len().min(self.out.len());
                    for (slot, byte) in buf.iter_mut().zip(self.out.drain(..n)) {
                        *slot = byte;
                    }
                    return Poll::Ready(Ok(n));
                }
                let Some(a) = self.awaiting.take() else {
                    return Poll::Pending;
                };
                let (counter, hello) = {
                    let script = lock_script(&self.script);
                    (script.counter, script.hello())
                };
                if counter != a.counter || self.rt.now() >= a.due {
                    self.sleep = None;
                    let id = self.reply_msg(a.response_to, &hello, a.exhaust);
                    if a.exhaust {
                        self.awaiting = Some(Awaiting {
                            due: self.rt.now() + a.max_await,
                            counter,
                            response_to: id,
                            ..a
                        });
                    }
                    continue;
                }
                let due = a.due;
                self.awaiting = Some(a);
                let rt = self.rt.clone();
                let sleep = self.sleep.get_or_insert_with(|| rt.sleep_until(due));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
        }

        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.dead(&lock_script(&self.script)) {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let spare = self.decoder.spare(buf.len());
            spare[..buf.len()].copy_from_slice(buf);
            self.decoder.commit(buf.len());
            while let Some(message) = self.decoder.decode().expect("a valid request") {
                self.handle(message);
            }
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Drop for MemStream {
        fn drop(&mut self) {
            lock_script(&self.script).open -= 1;
        }
    }

    /// The virtual runtime, with `connect` reaching the scripted server.
    struct TestRuntime {
        rt: VirtualRuntime,
        script: Arc<Mutex<Script>>,
    }

    impl Runtime for TestRuntime {
        fn name(&self) -> &'static str {
            "virtual"
        }
        fn spawn(&self, fut: BoxFuture<'static, ()>) {
            self.rt.spawn(fut)
        }
        fn now(&self) -> Instant {
            self.rt.now()
        }
        fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
            self.rt.sleep_until(deadline)
        }
        fn connect(&self, _addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
            let script = self.script.clone();
            let rt = self.rt.clone();
            Box::pin(async move {
                let mut s = lock_script(&script);
                let up = s.up;
                s.connects.push((rt.now(), up));
                if !up {
                    return Err(io::ErrorKind::ConnectionRefused.into());
                }
                s.open += 1;
                s.next_conn += 1;
                let stream = MemStream {
                    id: s.next_conn,
                    epoch: s.epoch,
                    script: script.clone(),
                    rt: rt.clone(),
                    decoder: Decoder::new(wire::DEFAULT_MAX_MESSAGE_SIZE),
                    out: VecDeque::new(),
                    awaiting: None,
                    sleep: None,
                    next_reply_id: 0,
                };
                Ok(Box::new(stream) as Box<dyn Stream>)
            })
        }
        fn resolve(
            &self,
            _host: &str,
            port: u16,
        ) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            Box::pin(async move { Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]) })
        }
    }

    struct Fixture {
        rt: VirtualRuntime,
        script: Arc<Mutex<Script>>,
        topology: Topology,
        events: Arc<Mutex<Vec<SdamEvent>>>,
        start: Instant,
    }

    impl Fixture {
        fn new(streaming_server: bool, uri_options: &str) -> Fixture {
            let rt = VirtualRuntime::new();
            let script = Arc::new(Mutex::new(Script {
                up: true,
                epoch: 0,
                streaming: streaming_server,
                process_id: ObjectId::new(),
                counter: 0,
                open: 0,
                next_conn: 0,
                connects: Vec::new(),
                requests: Vec::new(),
                wakers: Vec::new(),
            }));
            let runtime: Arc<dyn Runtime> = Arc::new(TestRuntime {
                rt: rt.clone(),
                script: script.clone(),
            });
            let options = ClientOptions::parse_without_srv_resolution(&format!(
                "mongodb://db.example:27017/?directConnection=true&heartbeatFrequencyMS=1000\
                 &serverSelectionTimeoutMS=5000{uri_options}"
            ))
            .expect("options");
            let events = Arc::new(Mutex::new(Vec::new()));
            let sink = events.clone();
            let handler = EventHandler::new(move |e| {
                if let Event::Sdam(e) = e {
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.clone());
                }
            });
            let start = rt.now();
            let topology = Topology::start(runtime, options, Some(handler)).expect("topology");
            Fixture {
                rt,
                script,
                topology,
                events,
                start,
            }
        }

        /// Runs every task until the virtual clock reads `start + at`.
        fn run_until(&self, at: Duration) {
            let sleep = self.rt.sleep_until(self.start + at);
            assert_eq!(self.rt.block_on(sleep), Some(()));
        }

        fn script(&self) -> MutexGuard<'_, Script> {
            lock_script(&self.script)
        }

        /// When the requests on connection `conn` arrived, relative to the start.
        fn request_times(&self, conn: u64) -> Vec<Duration> {
            self.script()
                .requests
                .iter()
                .filter(|r| r.conn == conn)
                .map(|r| r.at - self.start)
                .collect()
        }

        fn kill_server(&self) {
            let mut s = self.script();
            s.up = false;
            s.epoch += 1;
            s.wake_all();
        }

        fn heartbeats(&self, want_awaited: bool) -> usize {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|e| {
                    matches!(e, SdamEvent::ServerHeartbeatSucceeded { awaited, .. }
                        if *awaited == want_awaited)
                })
                .count()
        }

        fn server_type(&self) -> ServerType {
            self.topology
                .description()
                .servers
                .values()
                .next()
                .map_or(ServerType::Unknown, |s| s.server_type)
        }
    }

    #[test]
    fn monitoring_mode_decides_streaming() {
        assert!(streaming_enabled(ServerMonitoringMode::Stream));
        assert!(!streaming_enabled(ServerMonitoringMode::Poll));
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn polling_checks_every_heartbeat_and_requested_checks_wait_500ms() {
        let f = Fixture::new(false, "&serverMonitoringMode=poll");
        f.run_until(secs(3.1));
        assert_eq!(f.server_type(), ServerType::Standalone);
        // The handshake, then one hello per heartbeat, counted from the end of the last check.
        assert_eq!(
            f.request_times(1),
            vec![secs(0.0), secs(1.0), secs(2.0), secs(3.0)]
        );
        assert!(f
            .script()
            .requests
            .iter()
            .skip(1)
            .all(|r| r.command.contains_key("hello") && !r.command.contains_key("maxAwaitTimeMS")));
        // An immediate check requested 100 ms after a check runs 500 ms after that check.
        {
            let mut state = lock(&f.topology.shared.state);
            state.machine.request_immediate_checks();
            f.topology.shared.process(&mut state);
        }
        f.run_until(secs(3.49));
        assert_eq!(f.request_times(1).len(), 4);
        f.run_until(secs(4.6));
        assert_eq!(
            f.request_times(1)[4..],
            [secs(3.5), secs(4.5)],
            "the requested check, then the next regular one"
        );
        // Polling uses no RTT connection.
        assert_eq!(f.script().open, 1);
        assert_eq!(f.heartbeats(true), 0);
        f.topology.close();
        f.run_until(secs(4.7));
        assert_eq!(f.script().open, 0);
    }

    #[test]
    fn network_error_on_a_known_server_is_retried_once_at_once() {
        let f = Fixture::new(false, "&serverMonitoringMode=poll");
        f.run_until(secs(1.5));
        assert_eq!(f.server_type(), ServerType::Standalone);
        f.kill_server();
        f.run_until(secs(4.5));
        assert_eq!(f.server_type(), ServerType::Unknown);
        let connects: Vec<(Duration, bool)> = f
            .script()
            .connects
            .iter()
            .map(|(t, ok)| (*t - f.start, *ok))
            .collect();
        // The check at 2 s fails on the old connection and is retried at once on a new one;
        // then the (Unknown) server is checked once per heartbeat.
        assert_eq!(
            connects,
            vec![
                (secs(0.0), true),
                (secs(2.0), false),
                (secs(3.0), false),
                (secs(4.0), false)
            ]
        );
        let error = f
            .topology
            .description()
            .servers
            .values()
            .next()
            .and_then(|s| s.error.clone());
        assert!(error.is_some());
        // Back up: the next check finds it.
        {
            let mut s = f.script();
            s.up = true;
        }
        f.run_until(secs(5.1));
        assert_eq!(f.server_type(), ServerType::Standalone);
        f.topology.close();
        f.run_until(secs(5.2));
        assert_eq!(f.script().open, 0);
    }

    #[test]
    fn streaming_protocol_with_rtt_task_and_close_ends_both() {
        let f = Fixture::new(true, "&serverMonitoringMode=stream");
        f.run_until(secs(3.5));
        assert_eq!(f.server_type(), ServerType::Standalone);
        // The monitor's connection and the RTT task's.
        assert_eq!(f.script().open, 2);
        let requests = f.script().requests.clone();
        // One awaitable hello with exhaustAllowed; the server streams the rest.
        let awaitable: Vec<&Request> = requests
            .iter()
            .filter(|r| r.command.contains_key("maxAwaitTimeMS"))
            .collect();
        assert_eq!(awaitable.len(), 1, "{requests:?}");
        assert!(awaitable[0].exhaust);
        assert_eq!(awaitable[0].conn, 1);
        assert_eq!(
            awaitable[0].command.get_i64("maxAwaitTimeMS").ok(),
            Some(1000)
        );
        // Streamed replies every maxAwaitTimeMS (at 1, 2 and 3 s).
        assert_eq!(f.heartbeats(true), 3);
        // The RTT task: its handshake, then a plain hello every heartbeat.
        assert_eq!(
            f.request_times(2),
            vec![secs(0.0), secs(1.0), secs(2.0), secs(3.0)]
        );
        let rtt = f
            .topology
            .description()
            .servers
            .values()
            .next()
            .and_then(|s| s.round_trip_time);
        assert!(rtt.is_some());
        // A topology change is streamed at once, without a request.
        {
            let mut s = f.script();
            s.counter += 1;
            s.wake_all();
        }
        f.run_until(secs(3.5) + Duration::from_millis(1));
        assert_eq!(f.heartbeats(true), 4);
        assert_eq!(f.script().requests.len(), requests.len());

        f.topology.close();
        f.run_until(secs(3.6));
        assert_eq!(f.script().open, 0, "monitor and RTT connections closed");
        let seen = f.script().requests.len();
        f.run_until(secs(60.0));
        assert_eq!(
            f.script().requests.len(),
            seen,
            "no task outlived the close"
        );
    }

    #[test]
    fn selection_times_out_listing_the_topology() {
        let f = Fixture::new(false, "&serverMonitoringMode=poll");
        f.kill_server();
        let topology = &f.topology;
        let result =
            f.rt.block_on(async { topology.select_server(None, true, &[]).await.map(|_| ()) })
                .expect("selection completes");
        let Err(error) = result else {
            panic!("selected a server that is down");
        };
        assert_eq!(f.rt.now() - f.start, secs(5.0));
        let message = error.to_string();
        assert!(
            message.contains("db.example:27017") && message.contains("Unknown"),
            "{message}"
        );
        f.topology.close();
    }

    #[test]
    fn invalid_pool_options_are_refused_when_the_client_is_built() {
        let options = ClientOptions {
            hosts: vec![ServerAddress::tcp("localhost", 27017)],
            max_connecting: Some(0),
            ..Default::default()
        };
        let runtime: Arc<dyn Runtime> = Arc::new(VirtualRuntime::new());
        let err = match Topology::start(runtime, options, None) {
            Ok(_) => panic!("maxConnecting=0 must be refused"),
            Err(e) => e,
        };
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("maxConnecting"), "{err}");
    }
}
