//! The sans-IO pool state machine: no clock, no sockets, no tasks.
//!
//! The caller feeds it inputs ([`PoolMachine::check_out`], [`PoolMachine::check_in`],
//! [`PoolMachine::connection_established`], [`PoolMachine::handle_timeout`], ...) each with the
//! current time, and drains its outputs: [`PoolMachine::poll_action`] (things the caller must do:
//! open or close a connection, hand a connection to a waiter, fail a waiter, interrupt an in-use
//! connection), [`PoolMachine::poll_event`] (CMAP monitoring events) and
//! [`PoolMachine::poll_timeout`] (when to call [`PoolMachine::handle_timeout`] next).
//!
//! Connection objects themselves stay with the caller; the machine only tracks their ids, states
//! and generations.
//!
//! Choices where the spec leaves room:
//! - A request that leaves the wait queue to create a connection owns that pending connection (as
//!   in the spec's check-out pseudocode): it is no longer subject to the wait queue timeout, and
//!   it gets that connection or that connection's error. If the request is cancelled, the
//!   connection carries on in the background and becomes available.
//! - The wait queue is strictly FIFO; available connections are reused most recently checked in
//!   first, so that surplus ones reach `maxIdleTimeMS` and are closed.
//! - A clear closes the available connections at once (the background run a clear schedules).
//!   A pending connection that completes after a clear is closed as stale, and its request fails
//!   with a `PoolClearedError` (retryable) rather than receiving a stale connection.
//! - minPoolSize is maintained on every input while the pool is ready; after a background
//!   connection fails, refilling waits [`FILL_RETRY_DELAY`] (or the next `ready`).
//! - Inputs that carry `now` first expire due waiters and idle connections, so a waiter whose
//!   deadline has passed is never served, even if `handle_timeout` was called late.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::options::ServerAddress;

use super::events::{CheckOutFailedReason, CmapEvent, ConnectionClosedReason};

/// Records a CMAP event, built only if someone listens (`PoolMachine::set_monitored`).
macro_rules! emit {
    ($machine:expr, $event:expr) => {
        if $machine.monitored {
            $machine.events.push_back($event);
        }
    };
}

/// After a background (minPoolSize) connection fails to establish, the pool waits this long
/// before it tries to populate itself again, so that a down server is not hammered.
pub const FILL_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Connection pool options (the CMAP `ConnectionPoolOptions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections (pending + available + in use) the pool may hold; 0 means no limit.
    pub max_pool_size: u32,
    /// The pool keeps at least this many connections while it is ready.
    pub min_pool_size: u32,
    /// Most connections that may be establishing at once; must be greater than 0.
    pub max_connecting: u32,
    /// Available connections idle for this long are closed; `None` or zero means never.
    pub max_idle_time: Option<Duration>,
    /// How long a check-out may wait in the wait queue; `None` or zero means no limit.
    pub wait_queue_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_pool_size: 100,
            min_pool_size: 0,
            max_connecting: 2,
            max_idle_time: None,
            wait_queue_timeout: None,
        }
    }
}

impl PoolOptions {
    /// Checks the constraints the CMAP spec puts on the options.
    pub fn validate(&self) -> Result<()> {
        if self.max_connecting == 0 {
            return Err(Error::invalid_argument(
                "maxConnecting must be greater than 0",
            ));
        }
        if self.max_pool_size != 0 && self.min_pool_size > self.max_pool_size {
            return Err(Error::invalid_argument(format!(
                "minPoolSize ({}) must not exceed maxPoolSize ({})",
                self.min_pool_size, self.max_pool_size
            )));
        }
        Ok(())
    }

    fn idle_limit(&self) -> Option<Duration> {
        self.max_idle_time.filter(|d| !d.is_zero())
    }

    fn wait_limit(&self) -> Option<Duration> {
        self.wait_queue_timeout.filter(|d| !d.is_zero())
    }
}

/// The state of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// Initial state, and the state after a clear: check-outs fail, nothing is populated.
    Paused,
    /// Check-outs are served and minPoolSize is maintained.
    Ready,
    /// Terminal: check-outs fail, checked-in connections are closed.
    Closed,
}

/// Identifies one check-out request (a waiter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The number behind the id (increasing from 1 per pool).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request#{}", self.0)
    }
}

/// Why a check-out request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckOutFailure {
    /// The wait queue timeout passed (`WaitQueueTimeoutError`).
    Timeout,
    /// The pool is closed (`PoolClosedError`).
    PoolClosed,
    /// The pool is paused or was cleared while the request waited (`PoolClearedError`).
    PoolCleared,
    /// Establishing the request's connection failed.
    ConnectionError,
}

impl CheckOutFailure {
    /// The reason reported in the `ConnectionCheckOutFailed` event.
    pub fn event_reason(self) -> CheckOutFailedReason {
        match self {
            CheckOutFailure::Timeout => CheckOutFailedReason::Timeout,
            CheckOutFailure::PoolClosed => CheckOutFailedReason::PoolClosed,
            CheckOutFailure::PoolCleared | CheckOutFailure::ConnectionError => {
                CheckOutFailedReason::ConnectionError
            }
        }
    }
}

/// Something the caller of a [`PoolMachine`] must do.
#[derive(Clone, Debug)]
pub enum PoolAction {
    /// Open, handshake and authenticate connection `conn_id`, then report
    /// [`PoolMachine::connection_established`] or [`PoolMachine::connection_failed`].
    Establish { conn_id: u64, generation: u64 },
    /// Close connection `conn_id` (an available one, or a pending one whose establishment must be
    /// abandoned). The machine has already forgotten it.
    Close {
        conn_id: u64,
        reason: ConnectionClosedReason,
    },
    /// Hand connection `conn_id` to the waiter `request`; it is now in use.
    CheckedOut {
        request: RequestId,
        conn_id: u64,
        generation: u64,
    },
    /// Fail the waiter `request` with `error`.
    CheckOutFailed {
        request: RequestId,
        reason: CheckOutFailure,
        error: Error,
    },
    /// Interrupt whatever the in-use connection `conn_id` is doing (a clear with
    /// `interruptInUseConnections`); it will be closed when checked in.
    Interrupt { conn_id: u64 },
    /// A connection opened in the background (to satisfy minPoolSize, or for a request that was
    /// cancelled) failed to establish; hand the error to SDAM error handling.
    BackgroundError { conn_id: u64, error: Error },
}

#[derive(Debug)]
enum ConnState {
    Pending { owner: Option<RequestId> },
    Available { since: Instant },
    InUse { interrupted: bool },
}

#[derive(Debug)]
struct Conn {
    generation: u64,
    created: Instant,
    state: ConnState,
}

#[derive(Debug)]
struct Request {
    started: Instant,
    deadline: Option<Instant>,
    /// The pending connection being established for this request, once it left the wait queue.
    pending: Option<u64>,
}

/// The sans-IO connection pool of one server (see the module docs).
#[derive(Debug)]
pub struct PoolMachine {
    address: ServerAddress,
    options: PoolOptions,
    state: PoolState,
    generation: u64,
    next_conn_id: u64,
    next_request: u64,
    conns: BTreeMap<u64, Conn>,
    /// Available connection ids, least recently checked in first (check-out takes from the end).
    available: Vec<u64>,
    /// Requests in the wait queue, oldest first.
    queue: VecDeque<RequestId>,
    /// Whether the deadlines of `queue` are in non-decreasing order (no deadline counting as the
    /// latest), so the front holds the earliest. True in the usual case of a uniform wait queue
    /// timeout and a monotonic clock; an out-of-order push clears it until the queue empties.
    queue_sorted: bool,
    requests: BTreeMap<RequestId, Request>,
    pending: usize,
    in_use: usize,
    fill_not_before: Option<Instant>,
    clear_cause: Option<Error>,
    actions: VecDeque<PoolAction>,
    events: VecDeque<CmapEvent>,
    /// Whether events are recorded (see [`PoolMachine::set_monitored`]).
    monitored: bool,
}

impl PoolMachine {
    /// Creates a paused pool for `address` and emits `PoolCreated`.
    pub fn new(address: ServerAddress, options: PoolOptions) -> Result<Self> {
        options.validate()?;
        let mut m = PoolMachine {
            address,
            options,
            state: PoolState::Paused,
            generation: 0,
            next_conn_id: 1,
            next_request: 1,
            conns: BTreeMap::new(),
            available: Vec::new(),
            queue: VecDeque::new(),
            queue_sorted: true,
            requests: BTreeMap::new(),
            pending: 0,
            in_use: 0,
            fill_not_before: None,
            clear_cause: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            monitored: true,
        };
        m.events.push_back(CmapEvent::PoolCreated {
            address: m.address.clone(),
            options: m.options.clone(),
        });
        Ok(m)
    }

    /// The server this pool connects to.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// The pool's options.
    pub fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// The pool's state.
    pub fn state(&self) -> PoolState {
        self.state
    }

    /// The current generation (incremented by each clear of a ready pool).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Pending + available + in-use connections.
    pub fn total_connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections waiting in the pool to be checked out.
    pub fn available_connections(&self) -> usize {
        self.available.len()
    }

    /// Connections being established.
    pub fn pending_connections(&self) -> usize {
        self.pending
    }

    /// Connections checked out.
    pub fn in_use_connections(&self) -> usize {
        self.in_use
    }

    /// Requests in the wait queue (not counting those whose connection is being established).
    pub fn waiting_requests(&self) -> usize {
        self.queue.len()
    }

    /// Requests not yet served or failed (waiting, or waiting for their pending connection).
    pub fn open_requests(&self) -> usize {
        self.requests.len()
    }

    /// Whether `request` is still waiting to be served or failed.
    pub fn is_request_open(&self, request: RequestId) -> bool {
        self.requests.contains_key(&request)
    }

    /// Whether `conn_id` is being established in the background (for minPoolSize, or for a
    /// check-out that was cancelled), so its failure would be a [`PoolAction::BackgroundError`].
    pub fn is_background(&self, conn_id: u64) -> bool {
        matches!(
            self.conns.get(&conn_id),
            Some(Conn {
                state: ConnState::Pending { owner: None },
                ..
            })
        )
    }

    /// The next thing the caller must do, if any.
    pub fn poll_action(&mut self) -> Option<PoolAction> {
        self.actions.pop_front()
    }

    /// Whether monitoring events are recorded (the default). A pool nobody listens to turns
    /// them off, so that a check-out does not build events only to drop them; turning them off
    /// also drops those recorded so far.
    pub fn set_monitored(&mut self, monitored: bool) {
        self.monitored = monitored;
        if !monitored {
            self.events.clear();
        }
    }

    /// The next monitoring event, if any.
    pub fn poll_event(&mut self) -> Option<CmapEvent> {
        self.events.pop_front()
    }

    /// When [`PoolMachine::handle_timeout`] must next be called: the earliest wait-queue deadline,
    /// idle expiry of an available connection, or background fill retry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |t: Instant| {
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        };
        if let Some(d) = self.earliest_queue_deadline() {
            consider(d);
        }
        if let Some(limit) = self.options.idle_limit() {
            for id in &self.available {
                if let Some(Conn {
                    state: ConnState::Available { since },
                    ..
                }) = self.conns.get(id)
                {
                    consider(crate::time::deadline_after(*since, limit));
                }
            }
        }
        if let Some(t) = self.fill_not_before {
            if self.state == PoolState::Ready && self.below_min() {
                consider(t);
            }
        }
        earliest
    }

    /// Marks the pool ready (emits `PoolReady` unless it already is) and starts populating it.
    pub fn ready(&mut self, now: Instant) {
        if self.state != PoolState::Paused {
            return;
        }
        self.state = PoolState::Ready;
        self.clear_cause = None;
        self.fill_not_before = None;
        emit!(
            self,
            CmapEvent::PoolReady {
                address: self.address.clone(),
            }
        );
        self.process(now);
    }

    /// Clears the pool: increments the generation, pauses it, fails every waiter and closes the
    /// available connections. With `interrupt_in_use_connections`, in-use connections are
    /// interrupted and pending ones abandoned. A paused or closed pool emits nothing.
    pub fn clear(&mut self, now: Instant, interrupt_in_use_connections: bool) {
        self.clear_with_cause(now, interrupt_in_use_connections, None);
    }

    /// [`PoolMachine::clear`], remembering the error that caused it for the `PoolClearedError`
    /// of later check-outs.
    pub fn clear_with_cause(
        &mut self,
        now: Instant,
        interrupt_in_use_connections: bool,
        cause: Option<Error>,
    ) {
        match self.state {
            PoolState::Closed => return,
            PoolState::Paused => {
                if interrupt_in_use_connections {
                    self.interrupt(now, self.generation);
                }
                return;
            }
            PoolState::Ready => {}
        }
        let old_generation = self.generation;
        self.generation += 1;
        self.state = PoolState::Paused;
        self.clear_cause = cause;
        emit!(
            self,
            CmapEvent::PoolCleared {
                address: self.address.clone(),
                interrupt_in_use_connections,
            }
        );
        while let Some(req) = self.queue.pop_front() {
            self.fail_request(req, now, CheckOutFailure::PoolCleared, None);
        }
        // The background run a clear schedules: perished available connections go now.
        for id in std::mem::take(&mut self.available) {
            self.close_conn(id, ConnectionClosedReason::Stale);
        }
        if interrupt_in_use_connections {
            self.interrupt(now, old_generation);
        }
    }

    /// Interrupts in-use connections and abandons pending ones of generation <= `max_generation`.
    fn interrupt(&mut self, now: Instant, max_generation: u64) {
        let mut pending = Vec::new();
        for (id, conn) in self.conns.iter_mut() {
            if conn.generation > max_generation {
                continue;
            }
            match &mut conn.state {
                ConnState::InUse { interrupted } if !*interrupted => {
                    *interrupted = true;
                    self.actions
                        .push_back(PoolAction::Interrupt { conn_id: *id });
                }
                ConnState::Pending { owner } => pending.push((*id, *owner)),
                _ => {}
            }
        }
        for (id, owner) in pending {
            self.close_conn(id, ConnectionClosedReason::Stale);
            if let Some(req) = owner {
                self.fail_request(req, now, CheckOutFailure::PoolCleared, None);
            }
        }
    }

    /// Closes the pool: closes available connections, abandons pending ones, fails every waiter
    /// and emits `PoolClosed`. In-use connections are closed when checked in.
    pub fn close(&mut self, now: Instant) {
        if self.state == PoolState::Closed {
            return;
        }
        self.state = PoolState::Closed;
        for id in std::mem::take(&mut self.available) {
            self.close_conn(id, ConnectionClosedReason::PoolClosed);
        }
        let pending: Vec<(u64, Option<RequestId>)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match c.state {
                ConnState::Pending { owner } => Some((*id, owner)),
                _ => None,
            })
            .collect();
        for (id, owner) in pending {
            self.close_conn(id, ConnectionClosedReason::PoolClosed);
            if let Some(req) = owner {
                self.fail_request(req, now, CheckOutFailure::PoolClosed, None);
            }
        }
        while let Some(req) = self.queue.pop_front() {
            self.fail_request(req, now, CheckOutFailure::PoolClosed, None);
        }
        emit!(
            self,
            CmapEvent::PoolClosed {
                address: self.address.clone(),
            }
        );
    }

    /// Starts a check-out: emits `ConnectionCheckOutStarted` and returns the request's id. The
    /// outcome comes later (or at once) as a [`PoolAction::CheckedOut`] or
    /// [`PoolAction::CheckOutFailed`] naming this id.
    pub fn check_out(&mut self, now: Instant) -> RequestId {
        self.check_out_with_deadline(now, None)
    }

    /// [`PoolMachine::check_out`] with an extra deadline (e.g. from an operation's `timeoutMS`):
    /// the request times out at the earlier of `deadline` and the wait queue timeout.
    pub fn check_out_with_deadline(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
    ) -> RequestId {
        self.expire(now);
        let id = RequestId(self.next_request);
        self.next_request += 1;
        emit!(
            self,
            CmapEvent::ConnectionCheckOutStarted {
                address: self.address.clone(),
            }
        );
        let from_options = self
            .options
            .wait_limit()
            .map(|d| crate::time::deadline_after(now, d));
        let deadline = match (from_options, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.requests.insert(
            id,
            Request {
                started: now,
                deadline,
                pending: None,
            },
        );
        match self.state {
            PoolState::Closed => self.fail_request(id, now, CheckOutFailure::PoolClosed, None),
            PoolState::Paused => self.fail_request(id, now, CheckOutFailure::PoolCleared, None),
            PoolState::Ready => {
                if self.queue.is_empty() {
                    self.queue_sorted = true;
                } else if self.queue_sorted {
                    // `None` (no deadline) sorts after every deadline.
                    let last = self.queue.back().and_then(|r| self.requests.get(r));
                    let in_order = match (last.map(|r| r.deadline), deadline) {
                        (Some(Some(prev)), Some(new)) => prev <= new,
                        (Some(Some(_)), None) => true,
                        (Some(None), Some(_)) => false,
                        (Some(None), None) => true,
                        (None, _) => false,
                    };
                    self.queue_sorted = in_order;
                }
                self.queue.push_back(id);
                self.process(now);
                // A deadline that has already passed fails the request unless it was served.
                self.expire(now);
            }
        }
        id
    }

    /// The waiter of `request` went away (its future was dropped). It is removed from the wait
    /// queue; a connection being established for it stays and becomes available when ready. No
    /// action will name `request` afterwards, and no event is emitted (CMAP has no "cancelled"
    /// check-out reason). Returns whether the request was still open (false
    /// if it was already served or failed: the caller then owns whatever the action delivered).
    pub fn cancel_check_out(&mut self, request: RequestId) -> bool {
        let Some(req) = self.requests.remove(&request) else {
            return false;
        };
        match req.pending {
            Some(conn_id) => {
                if let Some(Conn {
                    state: ConnState::Pending { owner },
                    ..
                }) = self.conns.get_mut(&conn_id)
                {
                    *owner = None;
                }
            }
            None => self.queue.retain(|r| *r != request),
        }
        true
    }

    /// Returns an in-use connection. `reusable` is false when the connection saw an error or was
    /// abandoned mid-operation: it is closed. Stale connections and any connection checked into a
    /// closed pool are closed too; others become available. Errors if `conn_id` is not checked
    /// out of this pool.
    pub fn check_in(&mut self, conn_id: u64, now: Instant, reusable: bool) -> Result<()> {
        let interrupted = match self.conns.get(&conn_id) {
            Some(Conn {
                state: ConnState::InUse { interrupted },
                ..
            }) => *interrupted,
            _ => {
                return Err(Error::invalid_argument(format!(
                    "connection {conn_id} is not checked out of the pool for {}",
                    self.address
                )))
            }
        };
        self.expire(now);
        emit!(
            self,
            CmapEvent::ConnectionCheckedIn {
                address: self.address.clone(),
                connection_id: conn_id,
            }
        );
        let stale = self.conns.get(&conn_id).map(|c| c.generation) != Some(self.generation);
        // No longer in use; about to be closed or made available.
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.state = ConnState::Available { since: now };
            self.in_use -= 1;
        }
        if self.state == PoolState::Closed {
            self.close_conn(conn_id, ConnectionClosedReason::PoolClosed);
        } else if !reusable {
            self.close_conn(conn_id, ConnectionClosedReason::Error);
        } else if stale || interrupted {
            self.close_conn(conn_id, ConnectionClosedReason::Stale);
        } else {
            self.make_available(conn_id, now);
        }
        self.process(now);
        Ok(())
    }

    /// Connection `conn_id` finished establishing. Returns false if the machine no longer wants
    /// it (it was abandoned by a clear or close): the caller must then drop it.
    pub fn connection_established(&mut self, conn_id: u64, now: Instant) -> bool {
        let (owner, generation, created) = match self.conns.get(&conn_id) {
            Some(Conn {
                state: ConnState::Pending { owner },
                generation,
                created,
            }) => (*owner, *generation, *created),
            _ => return false,
        };
        self.expire(now);
        emit!(
            self,
            CmapEvent::ConnectionReady {
                address: self.address.clone(),
                connection_id: conn_id,
                duration: now.saturating_duration_since(created),
            }
        );
        if self.state == PoolState::Closed {
            self.close_conn(conn_id, ConnectionClosedReason::PoolClosed);
            if let Some(req) = owner {
                self.fail_request(req, now, CheckOutFailure::PoolClosed, None);
            }
        } else if generation != self.generation {
            self.close_conn(conn_id, ConnectionClosedReason::Stale);
            if let Some(req) = owner {
                self.fail_request(req, now, CheckOutFailure::PoolCleared, None);
            }
        } else {
            self.pending -= 1;
            match owner.filter(|r| self.requests.contains_key(r)) {
                Some(req) => self.serve(req, conn_id, now),
                None => self.make_available(conn_id, now),
            }
        }
        self.process(now);
        true
    }

    /// Connection `conn_id` failed to establish with `error`. Its request (if any) fails with a
    /// `connectionError`; a background connection's error is reported as
    /// [`PoolAction::BackgroundError`].
    pub fn connection_failed(&mut self, conn_id: u64, now: Instant, error: Error) {
        let owner = match self.conns.get(&conn_id) {
            Some(Conn {
                state: ConnState::Pending { owner },
                ..
            }) => *owner,
            _ => return,
        };
        self.expire(now);
        self.conns.remove(&conn_id);
        self.pending -= 1;
        emit!(
            self,
            CmapEvent::ConnectionClosed {
                address: self.address.clone(),
                connection_id: conn_id,
                reason: ConnectionClosedReason::Error,
            }
        );
        match owner.filter(|r| self.requests.contains_key(r)) {
            Some(req) => {
                self.fail_request(req, now, CheckOutFailure::ConnectionError, Some(error));
            }
            None => {
                self.fill_not_before = Some(crate::time::deadline_after(now, FILL_RETRY_DELAY));
                self.actions
                    .push_back(PoolAction::BackgroundError { conn_id, error });
            }
        }
        self.process(now);
    }

    /// Time passed: fails waiters whose deadline passed, closes idle connections and populates
    /// the pool.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.process(now);
    }

    /// The error for operations whose connection was interrupted by a clear.
    pub fn interrupted_error(&self) -> Error {
        Error::new(ErrorKind::ConnectionPoolCleared {
            message: format!(
                "Connection to {} interrupted due to server monitor timeout",
                self.address
            ),
        })
    }

    /// Checks the machine's internal bookkeeping (for tests): counts agree with connection
    /// states, the pool never exceeds maxPoolSize or maxConnecting, the wait queue holds exactly
    /// the open requests without a pending connection.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let (mut pending, mut available, mut in_use) = (0, 0, 0);
        for (id, conn) in &self.conns {
            match &conn.state {
                ConnState::Pending { owner } => {
                    pending += 1;
                    if let Some(req) = owner {
                        match self.requests.get(req) {
                            Some(r) if r.pending == Some(*id) => {}
                            _ => return Err(format!("conn {id} owned by stale request {req}")),
                        }
                    }
                }
                ConnState::Available { .. } => {
                    available += 1;
                    if !self.available.contains(id) {
                        return Err(format!("available conn {id} not in the available list"));
                    }
                }
                ConnState::InUse { .. } => in_use += 1,
            }
        }
        if pending != self.pending || available != self.available.len() || in_use != self.in_use {
            return Err(format!(
                "counts: pending {pending}/{}, available {available}/{}, in use {in_use}/{}",
                self.pending,
                self.available.len(),
                self.in_use
            ));
        }
        if self.options.max_pool_size != 0 && self.conns.len() > self.options.max_pool_size as usize
        {
            return Err(format!(
                "{} connections exceed maxPoolSize",
                self.conns.len()
            ));
        }
        if self.pending > self.options.max_connecting as usize {
            return Err(format!("{} pending exceed maxConnecting", self.pending));
        }
        let waiting = self
            .requests
            .values()
            .filter(|r| r.pending.is_none())
            .count();
        if waiting != self.queue.len() || self.queue.iter().any(|r| !self.requests.contains_key(r))
        {
            return Err("wait queue and open requests disagree".into());
        }
        if self.state != PoolState::Ready && !self.queue.is_empty() {
            return Err("requests wait in a pool that is not ready".into());
        }
        Ok(())
    }

    // ---- internals ----

    fn below_min(&self) -> bool {
        self.conns.len() < self.options.min_pool_size as usize
    }

    /// Connections of the current generation being established that no request owns (stale
    /// ones will be closed when ready, so they serve nobody).
    fn ownerless_pending(&self) -> usize {
        self.conns
            .values()
            .filter(|c| {
                c.generation == self.generation
                    && matches!(c.state, ConnState::Pending { owner: None })
            })
            .count()
    }

    fn can_create(&self) -> bool {
        self.state == PoolState::Ready
            && self.pending < self.options.max_connecting as usize
            && (self.options.max_pool_size == 0
                || self.conns.len() < self.options.max_pool_size as usize)
    }

    fn is_perished(&self, conn: &Conn, now: Instant) -> Option<ConnectionClosedReason> {
        if conn.generation != self.generation {
            return Some(ConnectionClosedReason::Stale);
        }
        if let (Some(limit), ConnState::Available { since }) =
            (self.options.idle_limit(), &conn.state)
        {
            if now >= crate::time::deadline_after(*since, limit) {
                return Some(ConnectionClosedReason::Idle);
            }
        }
        None
    }

    /// The earliest deadline of a request in the wait queue: the front's when the queue is known
    /// to be in deadline order (O(1)), else found by a scan.
    fn earliest_queue_deadline(&self) -> Option<Instant> {
        if self.queue_sorted {
            return self
                .queue
                .front()
                .and_then(|r| self.requests.get(r))
                .and_then(|r| r.deadline);
        }
        self.queue
            .iter()
            .filter_map(|r| self.requests.get(r).and_then(|req| req.deadline))
            .min()
    }

    /// Fails expired waiters and closes idle available connections.
    fn expire(&mut self, now: Instant) {
        if self.earliest_queue_deadline().is_some_and(|d| d <= now) {
            self.expire_waiters(now);
        }
        self.expire_idle(now);
    }

    /// Fails every waiter whose deadline is at or before `now`.
    fn expire_waiters(&mut self, now: Instant) {
        let expired: Vec<RequestId> = self
            .queue
            .iter()
            .copied()
            .filter(|r| {
                self.requests
                    .get(r)
                    .and_then(|req| req.deadline)
                    .is_some_and(|d| d <= now)
            })
            .collect();
        if !expired.is_empty() {
            self.queue.retain(|r| !expired.contains(r));
            for req in expired {
                self.fail_request(req, now, CheckOutFailure::Timeout, None);
            }
        }
    }

    /// Closes idle available connections and clears a passed fill retry time.
    fn expire_idle(&mut self, now: Instant) {
        if self.options.idle_limit().is_some() {
            let idle: Vec<u64> = self
                .available
                .iter()
                .copied()
                .filter(|id| {
                    self.conns.get(id).and_then(|c| self.is_perished(c, now))
                        == Some(ConnectionClosedReason::Idle)
                })
                .collect();
            for id in idle {
                self.close_conn(id, ConnectionClosedReason::Idle);
            }
        }
        if self.fill_not_before.is_some_and(|t| t <= now) {
            self.fill_not_before = None;
        }
    }

    /// Serves the wait queue in order, then populates the pool up to minPoolSize.
    ///
    /// Connections being established without an owner (for minPoolSize, or for a check-out
    /// that was cancelled) become available when ready, so each covers one waiter at the head
    /// of the queue: those waiters wait for them rather than open more connections (which would
    /// exceed what the load needs, and what the spec's integration tests expect). Waiters
    /// beyond them open their own connections as maxConnecting allows.
    fn process(&mut self, now: Instant) {
        while let Some(&req) = self.queue.front() {
            match self.take_available(now) {
                Some(conn_id) => {
                    self.queue.pop_front();
                    self.serve(req, conn_id, now);
                }
                None => break,
            }
        }
        let covered = self.ownerless_pending();
        while self.queue.len() > covered && self.can_create() {
            let Some(req) = self.queue.remove(covered) else {
                break;
            };
            let conn_id = self.create(now, Some(req));
            if let Some(r) = self.requests.get_mut(&req) {
                r.pending = Some(conn_id);
            }
        }
        if self.state == PoolState::Ready && self.fill_not_before.is_none() {
            while self.below_min() && self.can_create() {
                self.create(now, None);
            }
        }
    }

    /// Pops the most recently checked-in non-perished available connection, closing perished
    /// ones found on the way.
    fn take_available(&mut self, now: Instant) -> Option<u64> {
        while let Some(id) = self.available.pop() {
            let perished = self.conns.get(&id).and_then(|c| self.is_perished(c, now));
            match perished {
                Some(reason) => self.close_conn(id, reason),
                None => return Some(id),
            }
        }
        None
    }

    fn create(&mut self, now: Instant, owner: Option<RequestId>) -> u64 {
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        self.conns.insert(
            id,
            Conn {
                generation: self.generation,
                created: now,
                state: ConnState::Pending { owner },
            },
        );
        self.pending += 1;
        emit!(
            self,
            CmapEvent::ConnectionCreated {
                address: self.address.clone(),
                connection_id: id,
            }
        );
        self.actions.push_back(PoolAction::Establish {
            conn_id: id,
            generation: self.generation,
        });
        id
    }

    fn make_available(&mut self, conn_id: u64, now: Instant) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.state = ConnState::Available { since: now };
            self.available.push(conn_id);
        }
    }

    fn serve(&mut self, req: RequestId, conn_id: u64, now: Instant) {
        let Some(request) = self.requests.remove(&req) else {
            // Cannot happen: callers check the request is open. Keep the connection.
            self.make_available(conn_id, now);
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.state = ConnState::InUse { interrupted: false };
        let generation = conn.generation;
        self.in_use += 1;
        emit!(
            self,
            CmapEvent::ConnectionCheckedOut {
                address: self.address.clone(),
                connection_id: conn_id,
                duration: now.saturating_duration_since(request.started),
            }
        );
        self.actions.push_back(PoolAction::CheckedOut {
            request: req,
            conn_id,
            generation,
        });
    }

    /// Removes a connection in any state, emits `ConnectionClosed` and a `Close` action.
    fn close_conn(&mut self, conn_id: u64, reason: ConnectionClosedReason) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        match conn.state {
            ConnState::Pending { .. } => self.pending -= 1,
            ConnState::Available { .. } => self.available.retain(|i| *i != conn_id),
            ConnState::InUse { .. } => self.in_use -= 1,
        }
        emit!(
            self,
            CmapEvent::ConnectionClosed {
                address: self.address.clone(),
                connection_id: conn_id,
                reason,
            }
        );
        self.actions
            .push_back(PoolAction::Close { conn_id, reason });
    }

    fn fail_request(
        &mut self,
        req: RequestId,
        now: Instant,
        reason: CheckOutFailure,
        cause: Option<Error>,
    ) {
        let Some(request) = self.requests.remove(&req) else {
            return;
        };
        let error = self.failure_error(reason, cause);
        emit!(
            self,
            CmapEvent::ConnectionCheckOutFailed {
                address: self.address.clone(),
                reason: reason.event_reason(),
                duration: now.saturating_duration_since(request.started),
            }
        );
        self.actions.push_back(PoolAction::CheckOutFailed {
            request: req,
            reason,
            error,
        });
    }

    fn failure_error(&self, reason: CheckOutFailure, cause: Option<Error>) -> Error {
        let address = &self.address;
        match reason {
            CheckOutFailure::Timeout => Error::new(ErrorKind::Timeout {
                message: format!(
                    "Timed out while checking out a connection from connection pool for {address}"
                ),
            }),
            CheckOutFailure::PoolClosed => Error::new(ErrorKind::ConnectionPoolClosed {
                message: format!(
                    "Attempted to check out a connection from closed connection pool for {address}"
                ),
            }),
            CheckOutFailure::PoolCleared => {
                let message = match &self.clear_cause {
                    Some(cause) => format!(
                        "Connection pool for {address} was cleared because another operation \
                         failed with: {cause}"
                    ),
                    None => format!("Connection pool for {address} is paused"),
                };
                Error::new(ErrorKind::ConnectionPoolCleared { message })
            }
            CheckOutFailure::ConnectionError => cause.unwrap_or_else(|| {
                Error::internal(format!("connection to {address} failed to establish"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> ServerAddress {
        ServerAddress::tcp("a", 27017)
    }

    fn pool(options: PoolOptions) -> (PoolMachine, Instant) {
        let m = PoolMachine::new(addr(), options).expect("valid options");
        (m, Instant::now())
    }

    fn actions(m: &mut PoolMachine) -> Vec<PoolAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn events(m: &mut PoolMachine) -> Vec<&'static str> {
        std::iter::from_fn(|| m.poll_event())
            .map(|e| e.type_name())
            .collect()
    }

    /// The parts of `actions` that `f` picks, in order.
    fn pick<T>(actions: &[PoolAction], f: impl FnMut(&PoolAction) -> Option<T>) -> Vec<T> {
        actions.iter().filter_map(f).collect()
    }

    fn establishes(actions: &[PoolAction]) -> Vec<u64> {
        pick(actions, |a| match a {
            PoolAction::Establish { conn_id, .. } => Some(*conn_id),
            _ => None,
        })
    }

    fn served(actions: &[PoolAction]) -> Vec<(RequestId, u64)> {
        pick(actions, |a| match a {
            PoolAction::CheckedOut {
                request, conn_id, ..
            } => Some((*request, *conn_id)),
            _ => None,
        })
    }

    fn failed(actions: &[PoolAction]) -> Vec<(RequestId, CheckOutFailure)> {
        pick(actions, |a| match a {
            PoolAction::CheckOutFailed {
                request, reason, ..
            } => Some((*request, *reason)),
            _ => None,
        })
    }

    fn closed(actions: &[PoolAction]) -> Vec<(u64, ConnectionClosedReason)> {
        pick(actions, |a| match a {
            PoolAction::Close { conn_id, reason } => Some((*conn_id, *reason)),
            _ => None,
        })
    }

    /// Checks out and establishes a new connection, returning its id.
    fn check_out_new(m: &mut PoolMachine, now: Instant) -> u64 {
        let req = m.check_out(now);
        let a = actions(m);
        let ids = establishes(&a);
        assert_eq!(ids.len(), 1, "{a:?}");
        assert!(m.connection_established(ids[0], now));
        assert_eq!(served(&actions(m)), vec![(req, ids[0])]);
        ids[0]
    }

    #[test]
    fn options_are_validated() {
        let bad = PoolOptions {
            max_connecting: 0,
            ..PoolOptions::default()
        };
        assert!(PoolMachine::new(addr(), bad).is_err());
        let bad = PoolOptions {
            max_pool_size: 2,
            min_pool_size: 3,
            ..PoolOptions::default()
        };
        assert!(PoolMachine::new(addr(), bad).is_err());
        let unlimited = PoolOptions {
            max_pool_size: 0,
            min_pool_size: 3,
            ..PoolOptions::default()
        };
        assert!(PoolMachine::new(addr(), unlimited).is_ok());
    }

    #[test]
    fn created_paused_and_check_out_fails_until_ready() {
        let (mut m, now) = pool(PoolOptions::default());
        assert_eq!(m.state(), PoolState::Paused);
        assert_eq!(events(&mut m), ["ConnectionPoolCreated"]);
        let req = m.check_out(now);
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(req, CheckOutFailure::PoolCleared)]
        );
        assert_eq!(
            events(&mut m),
            ["ConnectionCheckOutStarted", "ConnectionCheckOutFailed"]
        );
        m.ready(now);
        m.ready(now);
        assert_eq!(events(&mut m), ["ConnectionPoolReady"]);
        let id = check_out_new(&mut m, now);
        assert_eq!(id, 1);
        assert_eq!(
            events(&mut m),
            [
                "ConnectionCheckOutStarted",
                "ConnectionCreated",
                "ConnectionReady",
                "ConnectionCheckedOut"
            ]
        );
        assert_eq!(check_out_new(&mut m, now), 2);
    }

    #[test]
    fn available_connections_are_reused_most_recent_first() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let b = check_out_new(&mut m, now);
        m.check_in(a, now, true).unwrap();
        m.check_in(b, now, true).unwrap();
        assert_eq!(m.available_connections(), 2);
        let req = m.check_out(now);
        assert_eq!(served(&actions(&mut m)), vec![(req, b)]);
        assert_eq!(m.in_use_connections(), 1);
    }

    #[test]
    fn non_reusable_check_in_closes_and_unknown_check_in_errors() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let a = check_out_new(&mut m, now);
        m.check_in(a, now, false).unwrap();
        assert_eq!(
            closed(&actions(&mut m)),
            vec![(a, ConnectionClosedReason::Error)]
        );
        assert_eq!(m.total_connections(), 0);
        assert!(m.check_in(a, now, true).is_err());
        assert!(m.check_in(99, now, true).is_err());
    }

    #[test]
    fn max_pool_size_and_fifo_wait_queue() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 1,
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let r1 = m.check_out(now);
        let r2 = m.check_out(now);
        assert!(actions(&mut m).is_empty());
        assert_eq!(m.waiting_requests(), 2);
        m.check_in(a, now, true).unwrap();
        assert_eq!(served(&actions(&mut m)), vec![(r1, a)]);
        m.check_in(a, now, true).unwrap();
        assert_eq!(served(&actions(&mut m)), vec![(r2, a)]);
        assert_eq!(m.total_connections(), 1);
    }

    #[test]
    fn waiters_wait_for_ownerless_pending_connections() {
        // minPoolSize 2 opens two background connections; two waiters are served by them
        // instead of opening a third (the cmap-format integration file
        // pool-checkout-minPoolSize-connection-maxConnecting).
        let (mut m, now) = pool(PoolOptions {
            min_pool_size: 2,
            max_pool_size: 3,
            ..PoolOptions::default()
        });
        m.ready(now);
        assert_eq!(establishes(&actions(&mut m)), vec![1, 2]);
        let r1 = m.check_out(now);
        let r2 = m.check_out(now);
        assert!(actions(&mut m).is_empty());
        assert!(m.connection_established(1, now));
        let a = actions(&mut m);
        assert_eq!(served(&a), vec![(r1, 1)]);
        assert!(establishes(&a).is_empty(), "{a:?}");
        assert!(m.connection_established(2, now));
        assert_eq!(served(&actions(&mut m)), vec![(r2, 2)]);
        assert_eq!(m.total_connections(), 2);
        m.check_invariants().unwrap();

        // Waiters beyond the ownerless connections open their own.
        let (mut m, now) = pool(PoolOptions {
            min_pool_size: 1,
            ..PoolOptions::default()
        });
        m.ready(now);
        assert_eq!(establishes(&actions(&mut m)), vec![1]);
        let r1 = m.check_out(now);
        let r2 = m.check_out(now);
        assert_eq!(establishes(&actions(&mut m)), vec![2]);
        assert!(m.connection_established(2, now));
        assert_eq!(served(&actions(&mut m)), vec![(r2, 2)]);
        assert!(m.connection_established(1, now));
        assert_eq!(served(&actions(&mut m)), vec![(r1, 1)]);

        // A background connection that fails leaves its waiter free to open one.
        let (mut m, now) = pool(PoolOptions {
            min_pool_size: 1,
            ..PoolOptions::default()
        });
        m.ready(now);
        assert_eq!(establishes(&actions(&mut m)), vec![1]);
        let r1 = m.check_out(now);
        assert!(actions(&mut m).is_empty());
        m.connection_failed(1, now, Error::internal("refused"));
        let a = actions(&mut m);
        assert!(establishes(&a).contains(&2), "{a:?}");
        assert!(m.connection_established(2, now));
        assert_eq!(served(&actions(&mut m)), vec![(r1, 2)]);

        // A stale ownerless connection (pending across a clear) covers nobody.
        let (mut m, now) = pool(PoolOptions {
            min_pool_size: 1,
            ..PoolOptions::default()
        });
        m.ready(now);
        assert_eq!(establishes(&actions(&mut m)), vec![1]);
        m.clear(now, false);
        m.ready(now);
        let _ = actions(&mut m);
        let r1 = m.check_out(now);
        let a = actions(&mut m);
        let ids = establishes(&a);
        assert!(!ids.is_empty() && !ids.contains(&1), "{a:?}");
        for id in ids {
            assert!(m.connection_established(id, now));
        }
        assert!(served(&actions(&mut m)).iter().any(|(r, _)| *r == r1));
        m.check_invariants().unwrap();
    }

    #[test]
    fn max_connecting_limits_pending() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let r: Vec<RequestId> = (0..3).map(|_| m.check_out(now)).collect();
        let a = actions(&mut m);
        assert_eq!(establishes(&a), vec![1, 2]);
        assert_eq!(m.pending_connections(), 2);
        assert_eq!(m.waiting_requests(), 1);
        assert!(m.connection_established(2, now));
        let a = actions(&mut m);
        assert_eq!(served(&a), vec![(r[1], 2)]);
        assert_eq!(establishes(&a), vec![3]);
        assert!(m.connection_established(3, now));
        assert_eq!(served(&actions(&mut m)), vec![(r[2], 3)]);
    }

    #[test]
    fn wait_queue_timeout() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 1,
            wait_queue_timeout: Some(Duration::from_millis(50)),
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let r = m.check_out(now);
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_millis(50)));
        m.handle_timeout(now + Duration::from_millis(49));
        assert!(actions(&mut m).is_empty());
        m.handle_timeout(now + Duration::from_millis(50));
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(r, CheckOutFailure::Timeout)]
        );
        assert_eq!(m.poll_timeout(), None);
        m.check_in(a, now + Duration::from_millis(60), true)
            .unwrap();
        assert!(served(&actions(&mut m)).is_empty());
        assert_eq!(m.available_connections(), 1);
    }

    #[test]
    fn out_of_order_deadlines_still_give_the_earliest_timeout() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 1,
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let none = m.check_out(now);
        let late = m.check_out_with_deadline(now, Some(now + Duration::from_secs(10)));
        let early = m.check_out_with_deadline(now, Some(now + Duration::from_millis(10)));
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_millis(10)));
        m.handle_timeout(now + Duration::from_millis(10));
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(early, CheckOutFailure::Timeout)]
        );
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(10)));
        m.handle_timeout(now + Duration::from_secs(10));
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(late, CheckOutFailure::Timeout)]
        );
        assert_eq!(m.poll_timeout(), None);
        m.check_in(a, now + Duration::from_secs(10), true).unwrap();
        assert_eq!(served(&actions(&mut m)), vec![(none, a)]);
    }

    #[test]
    fn explicit_deadline_is_combined_with_the_wait_queue_timeout() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 1,
            wait_queue_timeout: Some(Duration::from_millis(50)),
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let early = m.check_out_with_deadline(now, Some(now + Duration::from_millis(10)));
        let late = m.check_out_with_deadline(now, Some(now + Duration::from_secs(10)));
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_millis(10)));
        m.handle_timeout(now + Duration::from_millis(10));
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(early, CheckOutFailure::Timeout)]
        );
        m.handle_timeout(now + Duration::from_millis(50));
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(late, CheckOutFailure::Timeout)]
        );
        let past = m.check_out_with_deadline(now + Duration::from_millis(60), Some(now));
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(past, CheckOutFailure::Timeout)]
        );
        m.check_in(a, now + Duration::from_millis(60), true)
            .unwrap();
        let served_now = m.check_out_with_deadline(now + Duration::from_millis(60), Some(now));
        assert_eq!(served(&actions(&mut m)), vec![(served_now, a)]);
    }

    #[test]
    fn cancelled_waiter_is_never_served() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 1,
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let r1 = m.check_out(now);
        let r2 = m.check_out(now);
        assert!(m.cancel_check_out(r1));
        assert!(!m.cancel_check_out(r1));
        m.check_in(a, now, true).unwrap();
        assert_eq!(served(&actions(&mut m)), vec![(r2, a)]);
    }

    #[test]
    fn cancelled_request_with_pending_connection_leaves_it_available() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let r = m.check_out(now);
        let ids = establishes(&actions(&mut m));
        assert!(m.cancel_check_out(r));
        assert!(m.connection_established(ids[0], now));
        assert!(served(&actions(&mut m)).is_empty());
        assert_eq!(m.available_connections(), 1);
        assert_eq!(m.open_requests(), 0);
    }

    #[test]
    fn clear_fails_waiters_closes_available_and_stales_in_use() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 2,
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let b = check_out_new(&mut m, now);
        m.check_in(b, now, true).unwrap();
        let _ = m.check_out(now); // takes b
        let w = m.check_out(now);
        actions(&mut m);
        events(&mut m);
        m.clear(now, false);
        assert_eq!(m.generation(), 1);
        assert_eq!(m.state(), PoolState::Paused);
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(w, CheckOutFailure::PoolCleared)]
        );
        assert_eq!(
            events(&mut m),
            ["ConnectionPoolCleared", "ConnectionCheckOutFailed"]
        );
        m.clear(now, false);
        assert!(
            events(&mut m).is_empty(),
            "clearing a paused pool emits nothing"
        );
        m.ready(now);
        m.check_in(a, now, true).unwrap();
        assert_eq!(
            closed(&actions(&mut m)),
            vec![(a, ConnectionClosedReason::Stale)]
        );
    }

    #[test]
    fn clear_interrupting_in_use_and_pending() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let r = m.check_out(now);
        let pending = establishes(&actions(&mut m));
        m.clear(now, true);
        let acts = actions(&mut m);
        assert!(acts
            .iter()
            .any(|x| matches!(x, PoolAction::Interrupt { conn_id } if *conn_id == a)));
        assert_eq!(
            closed(&acts),
            vec![(pending[0], ConnectionClosedReason::Stale)]
        );
        assert_eq!(failed(&acts), vec![(r, CheckOutFailure::PoolCleared)]);
        assert!(!m.connection_established(pending[0], now));
        m.ready(now);
        m.check_in(a, now, true).unwrap();
        assert_eq!(
            closed(&actions(&mut m)),
            vec![(a, ConnectionClosedReason::Stale)]
        );
        assert_eq!(m.total_connections(), 0);
    }

    #[test]
    fn connection_established_after_clear_is_stale() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let r = m.check_out(now);
        let ids = establishes(&actions(&mut m));
        m.clear(now, false);
        m.ready(now);
        assert!(m.connection_established(ids[0], now));
        let acts = actions(&mut m);
        assert_eq!(closed(&acts), vec![(ids[0], ConnectionClosedReason::Stale)]);
        assert_eq!(failed(&acts), vec![(r, CheckOutFailure::PoolCleared)]);
    }

    #[test]
    fn establishment_failure_fails_its_request_with_the_error() {
        let (mut m, now) = pool(PoolOptions::default());
        m.ready(now);
        let r = m.check_out(now);
        let ids = establishes(&actions(&mut m));
        events(&mut m);
        m.connection_failed(ids[0], now, Error::timeout("connect"));
        let acts = actions(&mut m);
        match acts.as_slice() {
            [PoolAction::CheckOutFailed {
                request,
                reason: CheckOutFailure::ConnectionError,
                error,
            }] => {
                assert_eq!(*request, r);
                assert!(matches!(error.kind(), ErrorKind::Timeout { .. }));
            }
            other => panic!("unexpected actions {other:?}"),
        }
        assert_eq!(
            events(&mut m),
            ["ConnectionClosed", "ConnectionCheckOutFailed"]
        );
        assert_eq!(m.total_connections(), 0);
    }

    #[test]
    fn close_closes_available_and_fails_waiters() {
        let (mut m, now) = pool(PoolOptions {
            max_pool_size: 2,
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        let b = check_out_new(&mut m, now);
        m.check_in(b, now, true).unwrap();
        let _ = m.check_out(now);
        let w = m.check_out(now);
        actions(&mut m);
        m.close(now);
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(w, CheckOutFailure::PoolClosed)]
        );
        m.check_in(a, now, true).unwrap();
        m.check_in(b, now, true).unwrap();
        assert_eq!(
            closed(&actions(&mut m)),
            vec![
                (a, ConnectionClosedReason::PoolClosed),
                (b, ConnectionClosedReason::PoolClosed)
            ]
        );
        let r = m.check_out(now);
        assert_eq!(
            failed(&actions(&mut m)),
            vec![(r, CheckOutFailure::PoolClosed)]
        );
        m.ready(now);
        assert_eq!(m.state(), PoolState::Closed);
    }

    #[test]
    fn idle_connections_expire() {
        let idle = Duration::from_millis(100);
        let (mut m, now) = pool(PoolOptions {
            max_idle_time: Some(idle),
            ..PoolOptions::default()
        });
        m.ready(now);
        let a = check_out_new(&mut m, now);
        m.check_in(a, now, true).unwrap();
        assert_eq!(m.poll_timeout(), Some(now + idle));
        m.handle_timeout(now + idle);
        assert_eq!(
            closed(&actions(&mut m)),
            vec![(a, ConnectionClosedReason::Idle)]
        );
        assert_eq!(m.total_connections(), 0);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn min_pool_size_is_populated_and_retried_after_errors() {
        let (mut m, now) = pool(PoolOptions {
            min_pool_size: 3,
            ..PoolOptions::default()
        });
        assert!(actions(&mut m).is_empty(), "paused pools are not populated");
        m.ready(now);
        let first = establishes(&actions(&mut m));
        assert_eq!(first, vec![1, 2]);
        assert!(m.connection_established(1, now));
        assert_eq!(establishes(&actions(&mut m)), vec![3]);
        m.connection_failed(2, now, Error::timeout("connect"));
        let acts = actions(&mut m);
        assert!(acts
            .iter()
            .any(|a| matches!(a, PoolAction::BackgroundError { conn_id: 2, .. })));
        assert!(establishes(&acts).is_empty(), "refill waits after an error");
        assert_eq!(m.poll_timeout(), Some(now + FILL_RETRY_DELAY));
        m.handle_timeout(now + FILL_RETRY_DELAY);
        assert_eq!(establishes(&actions(&mut m)), vec![4]);
    }

    /// xorshift64*: a tiny deterministic generator for the randomized test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// The caller's side of the randomized test: what it believes about requests and connections.
    #[derive(Default)]
    struct World {
        open: std::collections::BTreeSet<RequestId>,
        cancelled: std::collections::BTreeSet<RequestId>,
        pending: Vec<u64>,
        in_use: Vec<u64>,
        served: usize,
        timed_out: usize,
    }

    impl World {
        fn absorb(&mut self, m: &mut PoolMachine) {
            while m.poll_event().is_some() {}
            while let Some(a) = m.poll_action() {
                match a {
                    PoolAction::Establish { conn_id, .. } => self.pending.push(conn_id),
                    PoolAction::Close { conn_id, .. } => {
                        assert!(!self.in_use.contains(&conn_id), "closed in-use {conn_id}");
                        self.pending.retain(|c| *c != conn_id);
                    }
                    PoolAction::CheckedOut {
                        request, conn_id, ..
                    } => {
                        assert!(
                            !self.cancelled.contains(&request),
                            "woke cancelled {request}"
                        );
                        assert!(self.open.remove(&request), "served unknown {request}");
                        assert!(!self.in_use.contains(&conn_id), "double check-out");
                        self.in_use.push(conn_id);
                        self.served += 1;
                    }
                    PoolAction::CheckOutFailed {
                        request, reason, ..
                    } => {
                        assert!(
                            !self.cancelled.contains(&request),
                            "failed cancelled {request}"
                        );
                        assert!(self.open.remove(&request), "failed unknown {request}");
                        if reason == CheckOutFailure::Timeout {
                            self.timed_out += 1;
                        }
                    }
                    PoolAction::Interrupt { conn_id } => {
                        assert!(self.in_use.contains(&conn_id), "interrupted idle {conn_id}")
                    }
                    PoolAction::BackgroundError { .. } => {}
                }
            }
            if let Err(e) = m.check_invariants() {
                panic!("invariant broken: {e}");
            }
            assert_eq!(m.open_requests(), self.open.len());
            assert_eq!(m.in_use_connections(), self.in_use.len());
            assert_eq!(m.pending_connections(), self.pending.len());
        }
    }

    fn random_run(seed: u64, steps: usize) -> (usize, usize) {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let max_pool_size = [0, 1, 2, 3, 5][rng.below(5)];
        let options = PoolOptions {
            max_pool_size,
            min_pool_size: if max_pool_size == 0 {
                2
            } else {
                rng.below(max_pool_size as usize + 1) as u32
            },
            max_connecting: 1 + rng.below(3) as u32,
            max_idle_time: rng
                .chance(50)
                .then(|| Duration::from_millis(20 + rng.below(200) as u64)),
            wait_queue_timeout: rng
                .chance(70)
                .then(|| Duration::from_millis(5 + rng.below(100) as u64)),
        };
        let (mut m, mut now) = pool(options.clone());
        let mut w = World::default();
        m.ready(now);
        w.absorb(&mut m);
        for _ in 0..steps {
            match rng.below(100) {
                0..=29 => {
                    let r = m.check_out(now);
                    w.open.insert(r);
                }
                30..=37 => {
                    if !w.open.is_empty() {
                        let r = *w.open.iter().nth(rng.below(w.open.len())).unwrap();
                        assert!(m.cancel_check_out(r));
                        w.open.remove(&r);
                        w.cancelled.insert(r);
                    }
                }
                38..=59 => {
                    if !w.in_use.is_empty() {
                        let c = w.in_use.swap_remove(rng.below(w.in_use.len()));
                        m.check_in(c, now, rng.chance(80)).unwrap();
                    }
                }
                60..=79 => {
                    if !w.pending.is_empty() {
                        let c = w.pending.remove(rng.below(w.pending.len()));
                        if rng.chance(85) {
                            m.connection_established(c, now);
                        } else {
                            m.connection_failed(c, now, Error::timeout("connect"));
                        }
                    }
                }
                80..=82 => m.clear(now, rng.chance(50)),
                83..=87 => m.ready(now),
                _ => {
                    now += Duration::from_millis(rng.below(40) as u64);
                    if let Some(t) = m.poll_timeout() {
                        if t <= now || rng.chance(30) {
                            now = now.max(t);
                        }
                    }
                    m.handle_timeout(now);
                }
            }
            w.absorb(&mut m);
        }
        // Drain: every live waiter must end served or failed.
        for _ in 0..10_000 {
            if w.open.is_empty() {
                break;
            }
            m.ready(now);
            w.absorb(&mut m);
            if let Some(c) = w.pending.pop() {
                m.connection_established(c, now);
            } else if let Some(c) = w.in_use.pop() {
                m.check_in(c, now, true).unwrap();
            } else {
                now += Duration::from_millis(50);
                m.handle_timeout(now);
            }
            w.absorb(&mut m);
        }
        assert!(
            w.open.is_empty(),
            "waiters never served: {:?} ({options:?})",
            w.open
        );
        (w.served, w.timed_out)
    }

    #[test]
    fn randomized_interleavings_keep_invariants() {
        let (mut served, mut timed_out) = (0, 0);
        for seed in 1..=40 {
            let (s, t) = random_run(seed, 2_000);
            served += s;
            timed_out += t;
        }
        // The runs must actually exercise both outcomes.
        assert!(served > 1_000, "served {served}");
        assert!(timed_out > 10, "timed out {timed_out}");
    }
}
