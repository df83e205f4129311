//! `mongodb+srv` in the client: the SRV lookup at start (for options whose hosts are still to be
//! found) and SRV polling (the polling-srv-records-for-mongos-discovery spec).
//!
//! [`ClientTopology`] is what a client holds: a started [`Topology`], or one being seeded by a
//! task on the client's runtime that looks the SRV and TXT records up and then starts it.
//! Operations meanwhile wait for it (up to `serverSelectionTimeoutMS`); if the lookup fails they
//! fail at once with its error, while the task tries again every `heartbeatFrequencyMS`.
//!
//! SRV polling runs for every client whose options came from a `mongodb+srv` URI, except in
//! load-balanced mode: a task that rescans the SRV records every
//! [`rescan_interval`](crate::proto::dns::seedlist::rescan_interval) (the records' lowest TTL,
//! at least 60 s; `heartbeatFrequencyMS` after a rescan that found nothing) from the end of the
//! previous lookup, and gives the verified hosts to discovery, which adds and removes mongoses
//! (within `srvMaxHosts`) while the topology is Unknown or Sharded. A failed or empty rescan
//! changes nothing. The task ends when the topology becomes anything else, or closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};

use super::topology::{ErrorPhase, SelectedServer, Topology};
use crate::dns::{resolve_srv, Resolver};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventHandler;
use crate::options::{ClientOptions, ReadPreference, ServerAddress, SrvInfo};
use crate::proto::dns::seedlist::{polled_hosts, rescan_interval};
use crate::rt::{deadline_after, Runtime, RuntimeExt};
use crate::sdam::{TopologyDescription, TopologyType, MIN_HEARTBEAT_FREQUENCY};

/// How SRV lookups are done for a client.
#[derive(Clone)]
pub(crate) struct SrvSettings {
    pub(crate) resolver: Arc<dyn Resolver>,
    /// The floor of the rescan interval: the spec's 60 s, lower only in tests.
    pub(crate) rescan_floor: Duration,
}

/// The client's topology: started, or being seeded by the SRV lookup.
pub(crate) enum ClientTopology {
    Started(Topology),
    Seeding(Arc<Seeding>),
}

/// A topology waiting for its SRV lookup.
pub(crate) struct Seeding {
    runtime: Arc<dyn Runtime>,
    state: Mutex<SeedState>,
    closed: AtomicBool,
    /// What operations wait for: a topology, or a final error.
    server_selection_timeout: Duration,
    srv_name: String,
}

#[derive(Default)]
struct SeedState {
    topology: Option<Topology>,
    /// The last lookup's error, until one succeeds.
    error: Option<Error>,
    /// Woken when the state changes (a topology, an error, the close).
    waiters: Vec<oneshot::Sender<()>>,
}

fn lock(m: &Mutex<SeedState>) -> MutexGuard<'_, SeedState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Seeding {
    fn wake(state: &mut SeedState) {
        for w in state.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn topology(&self) -> Option<Topology> {
        lock(&self.state).topology.clone()
    }
}

impl ClientTopology {
    /// Starts the client's topology: at once for resolved options, else after the SRV lookup,
    /// on `runtime`. Starts SRV polling for `mongodb+srv` options.
    pub(crate) fn start(
        runtime: Arc<dyn Runtime>,
        options: ClientOptions,
        events: Option<EventHandler>,
        srv: SrvSettings,
    ) -> Result<Self> {
        if !options.needs_srv_resolution() {
            let topology = Topology::start_with_resolver(
                runtime.clone(),
                options.clone(),
                events,
                Some(srv.resolver.clone()),
            )?;
            start_polling(&runtime, &topology, &options, &srv);
            return Ok(ClientTopology::Started(topology));
        }
        options.validate()?;
        let seeding = Arc::new(Seeding {
            runtime: runtime.clone(),
            state: Mutex::new(SeedState::default()),
            closed: AtomicBool::new(false),
            server_selection_timeout: options.effective_server_selection_timeout(),
            srv_name: options
                .srv
                .as_ref()
                .map(SrvInfo::srv_query_name)
                .unwrap_or_default(),
        });
        let task = seed(
            Arc::downgrade(&seeding),
            runtime.clone(),
            options,
            events,
            srv,
        );
        runtime.spawn(Box::pin(task));
        Ok(ClientTopology::Seeding(seeding))
    }

    /// The current description (Unknown, without servers, while seeding).
    pub(crate) fn description(&self) -> TopologyDescription {
        match self {
            ClientTopology::Started(t) => t.description(),
            ClientTopology::Seeding(s) => s.topology().map(|t| t.description()).unwrap_or_default(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            ClientTopology::Started(t) => t.is_closed(),
            ClientTopology::Seeding(s) => s.closed.load(Ordering::SeqCst),
        }
    }

    /// Closes the topology (and ends the seeding task). Never blocks.
    pub(crate) fn close(&self) {
        match self {
            ClientTopology::Started(t) => t.close(),
            ClientTopology::Seeding(s) => {
                s.closed.store(true, Ordering::SeqCst);
                let topology = {
                    let mut state = lock(&s.state);
                    Seeding::wake(&mut state);
                    state.topology.clone()
                };
                if let Some(t) = topology {
                    t.close();
                }
            }
        }
    }

    /// Completes once closed (and the topology, if it started, has closed).
    pub(crate) async fn closed(&self) {
        match self {
            ClientTopology::Started(t) => t.closed().await,
            ClientTopology::Seeding(s) => {
                if let Some(t) = s.topology() {
                    t.closed().await;
                }
            }
        }
    }

    /// The server at `address`, if the topology has it.
    pub(crate) fn server(&self, address: &ServerAddress) -> Option<SelectedServer> {
        match self {
            ClientTopology::Started(t) => t.server(address),
            ClientTopology::Seeding(s) => s.topology()?.server(address),
        }
    }

    /// Selects a server (see [`Topology::select_server`]); while seeding, waits for the SRV
    /// lookup first, and fails with its error.
    pub(crate) async fn select_server(
        &self,
        rp: Option<&ReadPreference>,
        write: bool,
        deprioritized: &[ServerAddress],
    ) -> Result<SelectedServer> {
        match self {
            ClientTopology::Started(t) => t.select_server(rp, write, deprioritized).await,
            ClientTopology::Seeding(s) => {
                let t = s.wait().await?;
                t.select_server(rp, write, deprioritized).await
            }
        }
    }

    /// Tells discovery about an application error.
    pub(crate) fn handle_application_error(
        &self,
        address: &ServerAddress,
        error: &Error,
        generation: Option<u64>,
        phase: ErrorPhase,
    ) {
        let topology = match self {
            ClientTopology::Started(t) => Some(t.clone()),
            ClientTopology::Seeding(s) => s.topology(),
        };
        if let Some(t) = topology {
            t.handle_application_error(address, error, generation, phase);
        }
    }
}

impl Seeding {
    /// The topology once seeded; the lookup's error if it failed; a server selection error if
    /// it takes longer than `serverSelectionTimeoutMS`.
    async fn wait(&self) -> Result<Topology> {
        let deadline = deadline_after(self.runtime.now(), self.server_selection_timeout);
        loop {
            let rx = {
                let mut state = lock(&self.state);
                if self.closed.load(Ordering::SeqCst) {
                    return Err(Error::new(ErrorKind::Shutdown));
                }
                if let Some(t) = &state.topology {
                    return Ok(t.clone());
                }
                if let Some(e) = &state.error {
                    return Err(e.clone());
                }
                let (tx, rx) = oneshot::channel();
                state.waiters.push(tx);
                rx
            };
            if self.runtime.timeout_at(deadline, rx).await.is_err() {
                return Err(Error::new(ErrorKind::ServerSelection {
                    message: format!(
                        "the SRV lookup of '{}' did not complete within {:?}",
                        self.srv_name, self.server_selection_timeout
                    ),
                }));
            }
        }
    }
}

/// The seeding task: looks the records up, starts the topology; after a failure, records the
/// error for operations and tries again after `heartbeatFrequencyMS`.
async fn seed(
    seeding: Weak<Seeding>,
    runtime: Arc<dyn Runtime>,
    options: ClientOptions,
    events: Option<EventHandler>,
    srv: SrvSettings,
) {
    let retry = options
        .effective_heartbeat_frequency()
        .max(MIN_HEARTBEAT_FREQUENCY);
    loop {
        let mut resolved = options.clone();
        let outcome = match resolve_srv(&mut resolved, &*srv.resolver).await {
            Ok(()) => Topology::start_with_resolver(
                runtime.clone(),
                resolved.clone(),
                events.clone(),
                Some(srv.resolver.clone()),
            ),
            Err(e) => Err(e),
        };
        let Some(s) = seeding.upgrade() else {
            if let Ok(t) = outcome {
                t.close();
            }
            return;
        };
        {
            let mut state = lock(&s.state);
            if s.closed.load(Ordering::SeqCst) {
                if let Ok(t) = outcome {
                    t.close();
                }
                return;
            }
            match outcome {
                Ok(topology) => {
                    start_polling(&runtime, &topology, &resolved, &srv);
                    state.topology = Some(topology);
                    state.error = None;
                    Seeding::wake(&mut state);
                    return;
                }
                Err(e) => {
                    tracing::warn!(target: "anymongo::srv", "{e}");
                    state.error = Some(e);
                    Seeding::wake(&mut state);
                }
            }
        }
        drop(s);
        if !sleep_unless_closed(&runtime, &seeding, retry).await {
            return;
        }
    }
}

/// Sleeps `d`, checking for the close at most every `MIN_HEARTBEAT_FREQUENCY`; false if the
/// seeding was closed or dropped.
async fn sleep_unless_closed(
    runtime: &Arc<dyn Runtime>,
    seeding: &Weak<Seeding>,
    d: Duration,
) -> bool {
    let deadline = deadline_after(runtime.now(), d);
    loop {
        let alive = seeding
            .upgrade()
            .is_some_and(|s| !s.closed.load(Ordering::SeqCst));
        if !alive {
            return false;
        }
        let now = runtime.now();
        if now >= deadline {
            return true;
        }
        let step = deadline.min(deadline_after(now, MIN_HEARTBEAT_FREQUENCY));
        runtime.sleep_until(step).await;
    }
}

/// Starts SRV polling for a topology of `mongodb+srv` options (not in load-balanced mode).
fn start_polling(
    runtime: &Arc<dyn Runtime>,
    topology: &Topology,
    options: &ClientOptions,
    srv: &SrvSettings,
) {
    let Some(info) = options.srv.clone() else {
        return;
    };
    if options.load_balanced == Some(true) {
        return;
    }
    let first = rescan_interval(
        Some(info.min_ttl),
        options.effective_heartbeat_frequency(),
        srv.rescan_floor,
    );
    let task = poll(
        topology.clone(),
        runtime.clone(),
        info,
        options.effective_heartbeat_frequency(),
        srv.clone(),
        first,
    );
    runtime.spawn(Box::pin(task));
}

/// The SRV polling task (see the module docs).
async fn poll(
    topology: Topology,
    runtime: Arc<dyn Runtime>,
    info: SrvInfo,
    heartbeat_frequency: Duration,
    srv: SrvSettings,
    first: Duration,
) {
    let query = info.srv_query_name();
    let closed = topology.closed();
    futures::pin_mut!(closed);
    let mut next = deadline_after(runtime.now(), first);
    loop {
        let sleep = runtime.sleep_until(next);
        if let Either::Right(_) = select(sleep, closed.as_mut()).await {
            return;
        }
        if !matches!(
            topology.topology_type(),
            TopologyType::Unknown | TopologyType::Sharded
        ) {
            // Polling is for mongoses only; a replica set or a single server stays one.
            return;
        }
        let lookup = srv.resolver.lookup_srv(&query);
        let result = match select(lookup, closed.as_mut()).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => return,
        };
        let found = match result {
            Ok(records) => {
                let rescan = polled_hosts(&info, &records);
                for host in &rescan.rejected {
                    tracing::warn!(
                        target: "anymongo::srv",
                        "SRV polling: ignoring {host}, which is not in the domain of {}",
                        info.hostname
                    );
                }
                if rescan.hosts.is_empty() {
                    tracing::warn!(
                        target: "anymongo::srv",
                        "SRV polling: no valid host in the SRV records of {query}; keeping the topology"
                    );
                    None
                } else {
                    topology.handle_srv_hosts(&rescan.hosts);
                    Some(rescan.min_ttl)
                }
            }
            Err(e) => {
                tracing::warn!(
                    target: "anymongo::srv",
                    "SRV polling: the lookup of {query} failed ({e}); keeping the topology"
                );
                None
            }
        };
        next = deadline_after(
            runtime.now(),
            rescan_interval(found, heartbeat_frequency, srv.rescan_floor),
        );
    }
}

#[cfg(test)]
mod tests;
