//! The async side of discovery: one monitor task per server feeding the sans-IO
//! [`sdam::Topology`](crate::sdam::Topology), a pool per server, and server selection that waits
//! for the topology to change.
//!
//! Everything runs on the client's runtime. Monitors hold only a weak reference to the shared
//! state, and each watches a stop signal, so no task outlives the client.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bson::{doc, Document};
use futures::channel::oneshot;
use futures::task::AtomicWaker;

use crate::auth::ScramCache;
use crate::cmap::{Pool, PoolConfig, PoolOptions};
use crate::conn::{Connection, Establisher, HandshakeRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventHandler};
use crate::operation::{check_ok, Command};
use crate::options::{ClientOptions, ReadPreference, ReadPreferenceMode, ServerAddress};
use crate::rt::{deadline_after, Runtime, RuntimeExt};
use crate::sdam::{
    ApplicationError, CheckError, ConnectionPhase, ServerType, Topology as Machine, TopologyAction,
    TopologyDescription, TopologyOptions, TopologyType,
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

/// Completes when the monitor is stopped, asked to check, or reset.
struct Signalled<'a>(&'a MonitorSignal, bool);

impl Future for Signalled<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (signal, include_check) = (self.0, self.1);
        signal.waker.register(cx.waker());
        let fired = signal.stopped.load(Ordering::SeqCst)
            || signal.reset.load(Ordering::SeqCst)
            || (include_check && signal.check_now.load(Ordering::SeqCst));
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

struct ServerEntry {
    pool: ServerPool,
    signal: Arc<MonitorSignal>,
    operations: Arc<AtomicUsize>,
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
}

/// The client's view of the deployment.
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
    pub(crate) fn start(
        runtime: Arc<dyn Runtime>,
        options: ClientOptions,
        events: Option<EventHandler>,
    ) -> Result<Self> {
        if options.hosts.is_empty() {
            return Err(Error::invalid_argument(
                "the client needs at least one host",
            ));
        }
        if options.srv.is_some() {
            return Err(Error::invalid_argument(
                "mongodb+srv:// needs DNS SRV resolution, which this version does not have yet; \
                 list the hosts in a mongodb:// connection string instead",
            ));
        }
        let tls = if options.tls == Some(true) {
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
                srv_max_hosts: None,
                local_threshold,
                heartbeat_frequency,
                server_selection_timeout,
                topology_id: None,
            },
            runtime.now(),
        )?;
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
        });
        {
            let mut state = lock(&shared.state);
            shared.process(&mut state);
        }
        Ok(Topology { shared })
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
            entry.signal.stopped.store(true, Ordering::SeqCst);
            entry.signal.notify();
            entry.pool.close();
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
    /// the topology to change up to `serverSelectionTimeoutMS`.
    pub(crate) async fn select_server(
        &self,
        rp: Option<&ReadPreference>,
        write: bool,
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
                let picked = selection::select(
                    description,
                    &criteria,
                    shared.local_threshold,
                    shared.heartbeat_frequency,
                    &[],
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
                        let entry = self.start_server(&address);
                        state.servers.insert(address, entry);
                    }
                }
                TopologyAction::StopMonitoring { address } => {
                    if let Some(entry) = state.servers.remove(&address) {
                        entry.signal.stopped.store(true, Ordering::SeqCst);
                        entry.signal.notify();
                        entry.pool.close();
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
        Establisher::new(
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
        )
    }

    fn start_server(self: &Arc<Self>, address: &ServerAddress) -> ServerEntry {
        let o = &self.options;
        let events = self.events.clone();
        let weak = Arc::downgrade(self);
        let error_address = address.clone();
        let pool = Pool::new(PoolConfig {
            address: address.clone(),
            options: PoolOptions {
                max_pool_size: o.max_pool_size.unwrap_or(100),
                min_pool_size: o.min_pool_size.unwrap_or(0),
                max_connecting: o.max_connecting.unwrap_or(2),
                max_idle_time: o.max_idle_time,
                wait_queue_timeout: o.wait_queue_timeout,
            },
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
        .unwrap_or_else(|e| {
            // Options were validated when the client was built; fall back to defaults rather
            // than leave a server without a pool.
            tracing::warn!("invalid pool options ({e}); using defaults");
            Pool::new(PoolConfig {
                address: address.clone(),
                options: PoolOptions::default(),
                connector: self.establisher(address),
                runtime: self.runtime.clone(),
                event_sink: None,
                background_error_handler: None,
            })
            .expect("default pool options are valid")
        });
        let signal = Arc::new(MonitorSignal::default());
        let monitor = Monitor {
            shared: Arc::downgrade(self),
            address: address.clone(),
            signal: signal.clone(),
            establisher: self.establisher(address),
            runtime: self.runtime.clone(),
            heartbeat_frequency: self.heartbeat_frequency,
            connect_timeout: o.connect_timeout.unwrap_or(Duration::from_secs(10)),
        };
        self.runtime.spawn(Box::pin(monitor.run()));
        ServerEntry {
            pool,
            signal,
            operations: Arc::new(AtomicUsize::new(0)),
        }
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

    /// Feeds a monitor's check outcome to the machine.
    fn handle_check(
        self: &Arc<Self>,
        address: &ServerAddress,
        outcome: std::result::Result<&Document, &Error>,
        duration: Duration,
    ) {
        let mut state = lock(&self.state);
        let now = self.runtime.now();
        match outcome {
            Ok(reply) => {
                state
                    .machine
                    .heartbeat_succeeded(address, duration, reply.clone(), false);
                state
                    .machine
                    .handle_hello(address, Ok(reply), Some(duration), now);
            }
            Err(error) => {
                let failure = CheckError::from_error(error);
                state
                    .machine
                    .heartbeat_failed(address, duration, &failure, false);
                state.machine.handle_hello(address, Err(failure), None, now);
            }
        }
        self.process(&mut state);
    }
}

/// The minimum time between two checks of one server.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// A server monitor: checks its server every `heartbeatFrequencyMS`, or sooner when asked.
struct Monitor {
    shared: Weak<Shared>,
    address: ServerAddress,
    signal: Arc<MonitorSignal>,
    establisher: Establisher,
    runtime: Arc<dyn Runtime>,
    heartbeat_frequency: Duration,
    connect_timeout: Duration,
}

impl Monitor {
    fn stopped(&self) -> bool {
        self.signal.stopped.load(Ordering::SeqCst)
    }

    async fn run(self) {
        let mut conn: Option<Connection> = None;
        let mut next_id = 0u64;
        let mut retried = false;
        loop {
            if self.stopped() {
                return;
            }
            if self.signal.reset.swap(false, Ordering::SeqCst) {
                conn = None;
            }
            self.signal.check_now.store(false, Ordering::SeqCst);
            let check_started = self.runtime.now();
            let previous_type = {
                let Some(shared) = self.shared.upgrade() else {
                    return;
                };
                let mut state = lock(&shared.state);
                state.machine.heartbeat_started(&self.address, false);
                let t = state
                    .machine
                    .description()
                    .server(&self.address)
                    .map_or(ServerType::Unknown, |s| s.server_type);
                shared.process(&mut state);
                t
            };
            let outcome = {
                let check = self.check(&mut conn, &mut next_id);
                let stop = Signalled(&self.signal, false);
                match futures::future::select(Box::pin(check), stop).await {
                    futures::future::Either::Left((outcome, _)) => Some(outcome),
                    futures::future::Either::Right(_) => None,
                }
            };
            let Some(outcome) = outcome else {
                if self.stopped() {
                    return;
                }
                // Reset while checking: start over with a new connection.
                conn = None;
                continue;
            };
            let duration = self.runtime.now().saturating_duration_since(check_started);
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            if self.stopped() {
                return;
            }
            let failed = outcome.is_err();
            match &outcome {
                Ok(reply) => shared.handle_check(&self.address, Ok(reply), duration),
                Err(e) => {
                    conn = None;
                    shared.handle_check(&self.address, Err(e), duration);
                }
            }
            drop(shared);
            // SDAM: after a network error on a known server, retry once at once.
            if failed && previous_type != ServerType::Unknown && !retried {
                retried = true;
                continue;
            }
            retried = false;
            self.wait(check_started).await;
        }
    }

    /// One check: connect and handshake if needed (the handshake reply is the check's reply),
    /// else send hello on the existing connection.
    async fn check(&self, conn: &mut Option<Connection>, next_id: &mut u64) -> Result<Document> {
        if let Some(c) = conn.as_mut() {
            let hello_ok = c.description().is_some_and(|d| d.hello_ok);
            let body = if hello_ok {
                doc! { "hello": 1 }
            } else {
                doc! { "isMaster": 1 }
            };
            let cmd = Command::new("admin", body);
            let reply = c.send_command(&cmd, crate::conn::next_request_id()).await?;
            check_ok(&reply)?;
            return crate::conn::handshake::to_document(&reply);
        }
        *next_id += 1;
        let (mut c, reply) = self.establisher.establish_for_monitoring(*next_id).await?;
        // Monitors use connectTimeoutMS as their socket timeout.
        c.set_socket_timeout(Some(self.connect_timeout));
        *conn = Some(c);
        Ok(reply)
    }

    /// Sleeps until the next check is due: `heartbeatFrequencyMS` after the last one started, or
    /// sooner (but at least 500 ms after it) when a check is requested.
    async fn wait(&self, last_check: Instant) {
        let regular = deadline_after(last_check, self.heartbeat_frequency);
        let earliest = deadline_after(last_check, MIN_HEARTBEAT_INTERVAL);
        let sleep = self.runtime.sleep_until(regular);
        let signalled = Signalled(&self.signal, true);
        if let futures::future::Either::Right(_) = futures::future::select(sleep, signalled).await {
            if self.stopped() || self.signal.reset.load(Ordering::SeqCst) {
                return;
            }
            // A check was requested: honour the minimum interval between checks.
            if self.runtime.now() < earliest {
                self.runtime.sleep_until(earliest).await;
            }
        }
    }
}
