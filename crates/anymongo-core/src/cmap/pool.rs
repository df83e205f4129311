//! The async connection pool: a [`PoolMachine`] driven on any [`Runtime`].
//!
//! The machine lives in a `std::sync::Mutex` that is never held across an `.await`. Every entry
//! point locks it, feeds the machine one input, then carries out every action the machine asks for
//! before unlocking: connections are handed to waiters through oneshot channels, establishment is
//! spawned on the runtime, and one background task sleeps until [`PoolMachine::poll_timeout`]
//! (re-armed whenever that changes) to expire waiters and idle connections and refill the pool.
//!
//! Cancellation: dropping a [`CheckOut`] future at any point removes its request from the machine
//! under the lock; if a connection had already been sent to it, the drop takes it back out of
//! the channel and checks it in. So a dropped waiter never holds a slot and is never served in
//! place of a live one. A [`PooledConnection`] checks itself in when dropped, and is reused only
//! if its holder called [`PooledConnection::mark_reusable`] (so a connection abandoned mid-reply
//! is closed, not returned half-read).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::channel::oneshot;
use futures::future::{AbortHandle, AbortRegistration, Abortable};
use futures::task::AtomicWaker;

use crate::error::{Error, Result};
use crate::options::ServerAddress;
use crate::rt::{BoxFuture, Runtime, Sleep};

use super::events::CmapEvent;
use super::machine::{PoolAction, PoolMachine, PoolOptions, PoolState, RequestId};

/// Opens connections for a pool. The pool does not know the connection type; whoever builds the
/// pool supplies this (TCP + TLS + handshake + auth for the real driver, a mock in tests).
///
/// The connector is responsible for labelling establishment errors (e.g. the CMAP backpressure
/// labels on network errors before or during `hello`).
pub trait Connector: Send + Sync + 'static {
    /// The connection type.
    type Conn: Send + 'static;

    /// Opens and fully establishes connection `conn_id` of pool generation `generation`.
    fn connect(&self, conn_id: u64, generation: u64) -> BoxFuture<'static, Result<Self::Conn>>;
}

/// Receives CMAP events, in order. Called with the pool's lock held: it must be quick and must
/// not call back into the pool.
pub type EventSink = Arc<dyn Fn(&CmapEvent) + Send + Sync>;

/// Receives errors of connections established in the background (minPoolSize, or for a
/// check-out that was dropped), for SDAM error handling. Called without the pool's lock.
pub type BackgroundErrorHandler = Arc<dyn Fn(u64, Error) + Send + Sync>;

/// Everything needed to build a [`Pool`].
pub struct PoolConfig<C> {
    /// The server the pool connects to.
    pub address: ServerAddress,
    /// The pool options.
    pub options: PoolOptions,
    /// Opens connections.
    pub connector: C,
    /// The runtime used for establishment tasks and the timer.
    pub runtime: Arc<dyn Runtime>,
    /// Where CMAP events go.
    pub event_sink: Option<EventSink>,
    /// Where background establishment errors go.
    pub background_error_handler: Option<BackgroundErrorHandler>,
}

impl<C> fmt::Debug for PoolConfig<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConfig")
            .field("address", &self.address)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// An async connection pool for one server. Cheap to clone (a shared handle).
pub struct Pool<C: Connector> {
    inner: Arc<Inner<C>>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Connector> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

struct Inner<C: Connector> {
    address: ServerAddress,
    runtime: Arc<dyn Runtime>,
    connector: C,
    event_sink: Option<EventSink>,
    background_error_handler: Option<BackgroundErrorHandler>,
    shared: Mutex<Shared<C::Conn>>,
    timer: Arc<TimerSignal>,
}

impl<C: Connector> Drop for Inner<C> {
    fn drop(&mut self) {
        self.timer.shutdown.store(true, Ordering::SeqCst);
        self.timer.waker.wake();
    }
}

/// A map keyed by the pool's own sequential numbers (connection ids, request ids).
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hashes the pool's sequential ids with a multiply per word: nobody outside picks them, so
/// SipHash's resistance to chosen keys would only cost time on every check-out and check-in.
#[derive(Clone, Copy, Debug, Default)]
struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(Self::K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(32) ^ n).wrapping_mul(Self::K);
    }
}

/// What a check-out receives through its channel.
struct Delivered<T> {
    conn: T,
    conn_id: u64,
    generation: u64,
    interrupt: Arc<InterruptSignal>,
}

type WaiterTx<T> = oneshot::Sender<Result<Delivered<T>>>;
type WaiterRx<T> = oneshot::Receiver<Result<Delivered<T>>>;

struct Shared<T> {
    machine: PoolMachine,
    /// Connection objects the pool holds (available ones, and ones in transit under the lock),
    /// each with the interrupt signal of its last check-out, reused by the next one.
    idle: IdMap<u64, (T, Option<Arc<InterruptSignal>>)>,
    waiters: IdMap<RequestId, WaiterTx<T>>,
    establishing: IdMap<u64, AbortHandle>,
    in_use: IdMap<u64, Arc<InterruptSignal>>,
    /// Background connections whose error was already given to the error handler.
    reported: std::collections::HashSet<u64>,
    /// The check-out whose first poll holds the lock, and its outcome if the machine gave one at
    /// once (an available connection, or a failure): it is handed over without a channel.
    immediate: Option<(RequestId, Option<Result<Delivered<T>>>)>,
}

impl<T> Shared<T> {
    /// Gives `outcome` to the check-out being started under the lock if it is for `request`;
    /// gives it back otherwise.
    fn serve_immediate(
        &mut self,
        request: RequestId,
        outcome: Result<Delivered<T>>,
    ) -> Option<Result<Delivered<T>>> {
        match &mut self.immediate {
            Some((r, slot @ None)) if *r == request => {
                *slot = Some(outcome);
                None
            }
            _ => Some(outcome),
        }
    }
}

/// Work to do once the lock is released.
struct Deferred<T> {
    /// Connections to open: (id, generation, abort registration).
    establish: Vec<(u64, u64, AbortRegistration)>,
    drop: Vec<T>,
    background_errors: Vec<(u64, Error)>,
}

impl<T> Deferred<T> {
    fn new() -> Self {
        Deferred {
            establish: Vec::new(),
            drop: Vec::new(),
            background_errors: Vec::new(),
        }
    }
}

struct TimerSignal {
    deadline: Mutex<Option<Instant>>,
    waker: AtomicWaker,
    shutdown: AtomicBool,
}

/// Set when a clear with `interruptInUseConnections` interrupts an in-use connection.
struct InterruptSignal {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl InterruptSignal {
    fn new() -> Arc<Self> {
        Arc::new(InterruptSignal {
            fired: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: Connector> Pool<C> {
    /// Creates a paused pool (emitting `PoolCreated`) and starts its timer task.
    pub fn new(config: PoolConfig<C>) -> Result<Self> {
        let mut machine = PoolMachine::new(config.address.clone(), config.options)?;
        machine.set_monitored(config.event_sink.is_some());
        let inner = Arc::new(Inner {
            address: config.address,
            runtime: config.runtime,
            connector: config.connector,
            event_sink: config.event_sink,
            background_error_handler: config.background_error_handler,
            shared: Mutex::new(Shared {
                machine,
                idle: IdMap::default(),
                waiters: IdMap::default(),
                establishing: IdMap::default(),
                in_use: IdMap::default(),
                reported: Default::default(),
                immediate: None,
            }),
            timer: Arc::new(TimerSignal {
                deadline: Mutex::new(None),
                waker: AtomicWaker::new(),
                shutdown: AtomicBool::new(false),
            }),
        });
        inner.runtime.spawn(Box::pin(timer_task(
            Arc::downgrade(&inner),
            inner.timer.clone(),
        )));
        inner.with_machine(|_, _| {});
        Ok(Pool { inner })
    }

    /// The server this pool connects to.
    pub fn address(&self) -> &ServerAddress {
        &self.inner.address
    }

    /// The pool's current state.
    pub fn state(&self) -> PoolState {
        lock(&self.inner.shared).machine.state()
    }

    /// The pool's current generation.
    pub fn generation(&self) -> u64 {
        lock(&self.inner.shared).machine.generation()
    }

    /// Checks a connection out. The returned future is cancel-safe: dropping it at any point
    /// gives back whatever it held.
    pub fn check_out(&self) -> CheckOut<C> {
        CheckOut {
            inner: self.inner.clone(),
            state: CheckOutState::Start(None),
        }
    }

    /// Like [`Pool::check_out`], failing with a timeout error at `deadline` if that comes before
    /// the wait queue timeout (for an operation's `timeoutMS`).
    pub fn check_out_until(&self, deadline: Instant) -> CheckOut<C> {
        CheckOut {
            inner: self.inner.clone(),
            state: CheckOutState::Start(Some(deadline)),
        }
    }

    /// Marks the pool ready.
    pub fn ready(&self) {
        self.inner.with_machine(|m, now| m.ready(now));
    }

    /// Clears the pool (see [`PoolMachine::clear_with_cause`]).
    pub fn clear(&self, interrupt_in_use_connections: bool, cause: Option<Error>) {
        self.inner
            .with_machine(|m, now| m.clear_with_cause(now, interrupt_in_use_connections, cause));
    }

    /// Closes the pool.
    pub fn close(&self) {
        self.inner.with_machine(|m, now| m.close(now));
    }

    /// Checks that the machine's bookkeeping and the pool's (connection objects, waiters, tasks)
    /// agree (for tests).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let s = lock(&self.inner.shared);
        s.machine.check_invariants()?;
        let m = &s.machine;
        let pairs = [
            ("idle", s.idle.len(), m.available_connections()),
            ("in use", s.in_use.len(), m.in_use_connections()),
            ("waiters", s.waiters.len(), m.open_requests()),
            (
                "establishing",
                s.establishing.len(),
                m.pending_connections(),
            ),
        ];
        for (what, pool, machine) in pairs {
            if pool != machine {
                return Err(format!("{what}: pool has {pool}, machine has {machine}"));
            }
        }
        Ok(())
    }

    /// (total, available, in use, pending, waiting) connection and request counts.
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let s = lock(&self.inner.shared);
        let m = &s.machine;
        (
            m.total_connections(),
            m.available_connections(),
            m.in_use_connections(),
            m.pending_connections(),
            m.open_requests(),
        )
    }

    /// The error an operation should fail with when its connection was interrupted.
    pub fn interrupted_error(&self) -> Error {
        lock(&self.inner.shared).machine.interrupted_error()
    }
}

impl<C: Connector> Inner<C> {
    /// Locks, applies `f` to the machine, carries out its actions, unlocks, runs deferred work.
    fn with_machine<R>(self: &Arc<Self>, f: impl FnOnce(&mut PoolMachine, Instant) -> R) -> R {
        let mut deferred = Deferred::new();
        let out = {
            let mut shared = lock(&self.shared);
            let now = self.runtime.now();
            let out = f(&mut shared.machine, now);
            self.drive(&mut shared, now, &mut deferred);
            out
        };
        self.run_deferred(deferred);
        out
    }

    /// Carries out the machine's actions and delivers its events. Called with the lock held.
    fn drive(
        self: &Arc<Self>,
        shared: &mut Shared<C::Conn>,
        now: Instant,
        out: &mut Deferred<C::Conn>,
    ) {
        loop {
            while let Some(event) = shared.machine.poll_event() {
                if let Some(sink) = &self.event_sink {
                    sink(&event);
                }
            }
            let Some(action) = shared.machine.poll_action() else {
                break;
            };
            match action {
                PoolAction::Establish {
                    conn_id,
                    generation,
                } => {
                    let (handle, registration) = AbortHandle::new_pair();
                    shared.establishing.insert(conn_id, handle);
                    out.establish.push((conn_id, generation, registration));
                }
                PoolAction::Close { conn_id, .. } => {
                    if let Some((conn, _)) = shared.idle.remove(&conn_id) {
                        out.drop.push(conn);
                    }
                    if let Some(handle) = shared.establishing.remove(&conn_id) {
                        handle.abort();
                    }
                }
                PoolAction::CheckedOut {
                    request,
                    conn_id,
                    generation,
                } => {
                    let tx = shared.waiters.remove(&request);
                    let Some((conn, signal)) = shared.idle.remove(&conn_id) else {
                        // The machine and the object map disagree: a bug. Keep the machine's
                        // counts right and tell the waiter.
                        let _ = shared.machine.check_in(conn_id, now, false);
                        let error = Error::internal(format!(
                            "pool for {} lost connection {conn_id}",
                            self.address
                        ));
                        match tx {
                            Some(tx) => drop(tx.send(Err(error))),
                            None => drop(shared.serve_immediate(request, Err(error))),
                        }
                        continue;
                    };
                    // An interrupted connection is never reused, so a fired signal is not
                    // either; a fresh one keeps that true whatever happens.
                    let interrupt = signal
                        .filter(|s| !s.fired.load(Ordering::SeqCst))
                        .unwrap_or_else(InterruptSignal::new);
                    shared.in_use.insert(conn_id, interrupt.clone());
                    let delivered = Delivered {
                        conn,
                        conn_id,
                        generation,
                        interrupt,
                    };
                    let undelivered = match tx {
                        Some(tx) => tx.send(Ok(delivered)).err().and_then(|r| r.ok()),
                        None => shared
                            .serve_immediate(request, Ok(delivered))
                            .and_then(|r| r.ok()),
                    };
                    if let Some(d) = undelivered {
                        // The waiter is gone (cannot happen: drops cancel under the lock); put
                        // the connection back.
                        shared.in_use.remove(&d.conn_id);
                        shared.idle.insert(d.conn_id, (d.conn, Some(d.interrupt)));
                        let _ = shared.machine.check_in(d.conn_id, now, true);
                    }
                }
                PoolAction::CheckOutFailed { request, error, .. } => {
                    match shared.waiters.remove(&request) {
                        Some(tx) => drop(tx.send(Err(error))),
                        None => drop(shared.serve_immediate(request, Err(error))),
                    }
                }
                PoolAction::Interrupt { conn_id } => {
                    if let Some(signal) = shared.in_use.get(&conn_id) {
                        signal.fire();
                    }
                }
                PoolAction::BackgroundError { conn_id, error } => {
                    if !shared.reported.remove(&conn_id) {
                        out.background_errors.push((conn_id, error));
                    }
                }
            }
        }
        let next = shared.machine.poll_timeout();
        let mut deadline = lock(&self.timer.deadline);
        if *deadline != next {
            *deadline = next;
            self.timer.waker.wake();
        }
    }

    fn run_deferred(self: &Arc<Self>, deferred: Deferred<C::Conn>) {
        for (conn_id, generation, registration) in deferred.establish {
            // The connector is called without the lock, so it may take its time to build the
            // future; an abort (clear or close) that already happened makes it finish at once.
            let connect = Abortable::new(self.connector.connect(conn_id, generation), registration);
            let weak = Arc::downgrade(self);
            self.runtime.spawn(Box::pin(async move {
                if let Ok(result) = connect.await {
                    if let Some(inner) = weak.upgrade() {
                        inner.finish_establish(conn_id, result);
                    }
                }
            }));
        }
        drop(deferred.drop);
        if let Some(handler) = &self.background_error_handler {
            for (conn_id, error) in deferred.background_errors {
                handler(conn_id, error);
            }
        }
    }

    fn finish_establish(self: &Arc<Self>, conn_id: u64, result: Result<C::Conn>) {
        // A background connection's error goes to SDAM first (which may clear the pool), so the
        // events read ConnectionCreated, PoolCleared, ConnectionClosed as the CMAP tests expect.
        let mut reported = false;
        if let (Err(error), Some(handler)) = (&result, &self.background_error_handler) {
            let background = {
                let s = lock(&self.shared);
                s.establishing.contains_key(&conn_id) && s.machine.is_background(conn_id)
            };
            if background {
                handler(conn_id, error.clone());
                reported = true;
            }
        }
        let mut deferred = Deferred::new();
        {
            let mut shared = lock(&self.shared);
            if shared.establishing.remove(&conn_id).is_none() {
                // Abandoned (clear or close) after it finished: just drop it.
                if let Ok(conn) = result {
                    deferred.drop.push(conn);
                }
            } else {
                let now = self.runtime.now();
                match result {
                    Ok(conn) => {
                        shared.idle.insert(conn_id, (conn, None));
                        if !shared.machine.connection_established(conn_id, now) {
                            if let Some((conn, _)) = shared.idle.remove(&conn_id) {
                                deferred.drop.push(conn);
                            }
                        }
                    }
                    Err(error) => {
                        if reported {
                            shared.reported.insert(conn_id);
                        }
                        shared.machine.connection_failed(conn_id, now, error);
                    }
                }
                self.drive(&mut shared, now, &mut deferred);
            }
        }
        self.run_deferred(deferred);
    }

    /// Returns a connection object to the machine. Called with the lock held.
    fn check_in_locked(
        self: &Arc<Self>,
        shared: &mut Shared<C::Conn>,
        conn_id: u64,
        conn: C::Conn,
        reusable: bool,
        out: &mut Deferred<C::Conn>,
    ) {
        let now = self.runtime.now();
        let signal = shared.in_use.remove(&conn_id);
        shared.idle.insert(conn_id, (conn, signal));
        if shared.machine.check_in(conn_id, now, reusable).is_err() {
            if let Some((conn, _)) = shared.idle.remove(&conn_id) {
                out.drop.push(conn);
            }
        }
        self.drive(shared, now, out);
    }
}

async fn timer_task<C: Connector>(pool: Weak<Inner<C>>, signal: Arc<TimerSignal>) {
    let runtime = match pool.upgrade() {
        Some(inner) => inner.runtime.clone(),
        None => return,
    };
    let mut sleep: Option<Pin<Box<dyn Sleep>>> = None;
    let mut armed: Option<Instant> = None;
    loop {
        let fired = futures::future::poll_fn(|cx| {
            signal.waker.register(cx.waker());
            if signal.shutdown.load(Ordering::SeqCst) {
                return Poll::Ready(false);
            }
            let wanted = *lock(&signal.deadline);
            if wanted != armed {
                armed = wanted;
                if let Some(deadline) = wanted {
                    match sleep.as_mut() {
                        Some(s) => s.as_mut().reset(deadline),
                        None => sleep = Some(runtime.sleep_until(deadline)),
                    }
                }
            }
            if armed.is_some() {
                if let Some(s) = sleep.as_mut() {
                    if s.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(true);
                    }
                }
            }
            Poll::Pending
        })
        .await;
        if !fired {
            return;
        }
        armed = None;
        match pool.upgrade() {
            Some(inner) => inner.with_machine(|m, now| m.handle_timeout(now)),
            None => return,
        }
    }
}

enum CheckOutState<T> {
    /// Not yet polled; the optional extra deadline.
    Start(Option<Instant>),
    Waiting {
        request: RequestId,
        rx: WaiterRx<T>,
    },
    Done,
}

/// Future of [`Pool::check_out`]. Dropping it cancels the check-out cleanly.
pub struct CheckOut<C: Connector> {
    inner: Arc<Inner<C>>,
    state: CheckOutState<C::Conn>,
}

impl<C: Connector> fmt::Debug for CheckOut<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckOut")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> Future for CheckOut<C> {
    type Output = Result<PooledConnection<C>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let CheckOutState::Start(deadline) = this.state {
            // Served at once (an available connection, or an immediate failure): no channel.
            // Otherwise the request waits for its channel, registered under the same lock.
            let inner = &this.inner;
            let mut deferred = Deferred::new();
            let started = {
                let mut shared = lock(&inner.shared);
                let now = inner.runtime.now();
                let request = shared.machine.check_out_with_deadline(now, deadline);
                shared.immediate = Some((request, None));
                inner.drive(&mut shared, now, &mut deferred);
                match shared.immediate.take() {
                    Some((_, Some(outcome))) => Ok(outcome),
                    _ => {
                        let (tx, rx) = oneshot::channel();
                        shared.waiters.insert(request, tx);
                        Err((request, rx))
                    }
                }
            };
            inner.run_deferred(deferred);
            match started {
                Ok(outcome) => {
                    this.state = CheckOutState::Done;
                    return Poll::Ready(outcome.map(|d| this.pooled(d)));
                }
                Err((request, rx)) => this.state = CheckOutState::Waiting { request, rx },
            }
        }
        let CheckOutState::Waiting { rx, .. } = &mut this.state else {
            return Poll::Ready(Err(Error::internal(
                "check-out future polled after completion",
            )));
        };
        let result = match Pin::new(rx).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(r)) => r,
            Poll::Ready(Err(oneshot::Canceled)) => Err(Error::internal(format!(
                "pool for {} dropped a check-out request",
                this.inner.address
            ))),
        };
        this.state = CheckOutState::Done;
        Poll::Ready(result.map(|d| this.pooled(d)))
    }
}

impl<C: Connector> CheckOut<C> {
    fn pooled(&self, d: Delivered<C::Conn>) -> PooledConnection<C> {
        PooledConnection {
            conn: Some(d.conn),
            conn_id: d.conn_id,
            generation: d.generation,
            reusable: false,
            interrupt: d.interrupt,
            pool: self.inner.clone(),
        }
    }
}

impl<C: Connector> Drop for CheckOut<C> {
    fn drop(&mut self) {
        let CheckOutState::Waiting { request, mut rx } =
            std::mem::replace(&mut self.state, CheckOutState::Done)
        else {
            return;
        };
        let inner = self.inner.clone();
        let mut deferred = Deferred::new();
        {
            let mut shared = lock(&inner.shared);
            match rx.try_recv() {
                // Served before we went away: give the connection back, untouched.
                Ok(Some(Ok(d))) => {
                    inner.check_in_locked(&mut shared, d.conn_id, d.conn, true, &mut deferred)
                }
                Ok(Some(Err(_))) | Err(oneshot::Canceled) => {}
                Ok(None) => {
                    shared.waiters.remove(&request);
                    shared.machine.cancel_check_out(request);
                    let now = inner.runtime.now();
                    inner.drive(&mut shared, now, &mut deferred);
                }
            }
        }
        inner.run_deferred(deferred);
    }
}

/// A checked-out connection. Dereferences to the connection; checks itself in when dropped.
///
/// It goes back into the pool only if [`PooledConnection::mark_reusable`] was called after the
/// last exchange completed; otherwise it is closed.
pub struct PooledConnection<C: Connector> {
    conn: Option<C::Conn>,
    conn_id: u64,
    generation: u64,
    reusable: bool,
    interrupt: Arc<InterruptSignal>,
    pool: Arc<Inner<C>>,
}

impl<C: Connector> fmt::Debug for PooledConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("address", &self.pool.address)
            .field("id", &self.conn_id)
            .field("generation", &self.generation)
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> PooledConnection<C> {
    /// The connection's id (increasing from 1 within its pool).
    pub fn id(&self) -> u64 {
        self.conn_id
    }

    /// The pool generation the connection was created in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The server the connection is to.
    pub fn address(&self) -> &ServerAddress {
        &self.pool.address
    }

    /// Declares the connection clean (no exchange in flight, no error seen): it will be reused.
    pub fn mark_reusable(&mut self) {
        self.reusable = true;
    }

    /// Declares the connection dirty (an exchange is in flight, or it failed): it will be closed
    /// unless [`PooledConnection::mark_reusable`] is called again.
    pub fn mark_unusable(&mut self) {
        self.reusable = false;
    }

    /// Whether the connection will be reused when checked in.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Whether a clear with `interruptInUseConnections` interrupted this connection.
    pub fn is_interrupted(&self) -> bool {
        self.interrupt.fired.load(Ordering::SeqCst)
    }

    /// Completes when the connection is interrupted; race it against I/O to abort the I/O.
    pub fn interrupted(&self) -> Interrupted {
        Interrupted {
            signal: self.interrupt.clone(),
        }
    }

    /// Checks the connection back in (same as dropping it).
    pub fn check_in(self) {}
}

impl<C: Connector> Deref for PooledConnection<C> {
    type Target = C::Conn;
    fn deref(&self) -> &C::Conn {
        // Present from construction until `drop` takes it.
        self.conn
            .as_ref()
            .expect("pooled connection present until dropped")
    }
}

impl<C: Connector> DerefMut for PooledConnection<C> {
    fn deref_mut(&mut self) -> &mut C::Conn {
        self.conn
            .as_mut()
            .expect("pooled connection present until dropped")
    }
}

impl<C: Connector> Drop for PooledConnection<C> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let reusable = self.reusable && !self.is_interrupted();
        let mut deferred = Deferred::new();
        {
            let mut shared = lock(&self.pool.shared);
            self.pool
                .check_in_locked(&mut shared, self.conn_id, conn, reusable, &mut deferred);
        }
        self.pool.run_deferred(deferred);
    }
}

/// Future of [`PooledConnection::interrupted`].
pub struct Interrupted {
    signal: Arc<InterruptSignal>,
}

impl fmt::Debug for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupted").finish_non_exhaustive()
    }
}

impl Future for Interrupted {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        self.signal.waker.register(cx.waker());
        if self.signal.fired.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmap::CmapEvent;
    use crate::error::ErrorKind;
    use crate::rt::RuntimeExt;
    use crate::testing::{MockConnector, VirtualRuntime};
    use futures::FutureExt;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    type Events = Arc<Mutex<Vec<CmapEvent>>>;

    fn make_pool<C: Connector>(
        rt: &VirtualRuntime,
        connector: C,
        options: PoolOptions,
    ) -> (Pool<C>, Events) {
        let events: Events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let pool = Pool::new(PoolConfig {
            address: ServerAddress::tcp("db", 27017),
            options,
            connector,
            runtime: Arc::new(rt.clone()),
            event_sink: Some(Arc::new(move |e: &CmapEvent| lock(&sink).push(e.clone()))),
            background_error_handler: None,
        })
        .expect("valid options");
        pool.ready();
        (pool, events)
    }

    fn count(events: &Events, name: &str) -> usize {
        lock(events)
            .iter()
            .filter(|e| e.type_name() == name)
            .count()
    }

    #[test]
    fn reusable_connections_return_and_dirty_ones_close() {
        let rt = VirtualRuntime::new();
        let (pool, events) = make_pool(&rt, MockConnector, PoolOptions::default());
        rt.block_on(async {
            let mut c = pool.check_out().await.unwrap();
            assert_eq!(c.id(), 1);
            c.mark_reusable();
            drop(c);
            let c = pool.check_out().await.unwrap();
            assert_eq!(c.id(), 1, "reused");
            drop(c); // never marked reusable: closed
            let c = pool.check_out().await.unwrap();
            assert_eq!(c.id(), 2);
            assert_eq!(count(&events, "ConnectionClosed"), 1);
        })
        .unwrap();
        pool.check_invariants().unwrap();
    }

    #[test]
    fn an_available_connection_is_handed_over_on_the_first_poll() {
        let rt = VirtualRuntime::new();
        let (pool, events) = make_pool(&rt, MockConnector, PoolOptions::default());
        rt.block_on(async {
            let mut c = pool.check_out().await.unwrap();
            c.mark_reusable();
            drop(c);
            // No channel and no waiting: the first poll completes with the idle connection.
            let mut c = pool.check_out().now_or_never().expect("ready").unwrap();
            assert_eq!(c.id(), 1);
            assert_eq!(pool.counts().4, 0, "nothing waits");
            // The connection's interrupt signal is reused by its next check-out.
            let signal = c.interrupt.clone();
            c.mark_reusable();
            drop(c);
            let c = pool.check_out().now_or_never().expect("ready").unwrap();
            assert!(Arc::ptr_eq(&signal, &c.interrupt));
            assert!(!c.is_interrupted());
            drop(c);
            // A paused pool fails a check-out on its first poll too.
            pool.clear(false, None);
            let e = pool.check_out().now_or_never().expect("ready").unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::ConnectionPoolCleared { .. }),
                "{e:?}"
            );
            assert_eq!(count(&events, "ConnectionCheckOutFailed"), 1);
        })
        .unwrap();
        pool.check_invariants().unwrap();
    }

    #[test]
    fn dropped_waiter_releases_its_place() {
        let rt = VirtualRuntime::new();
        let options = PoolOptions {
            max_pool_size: 1,
            ..PoolOptions::default()
        };
        let (pool, _events) = make_pool(&rt, MockConnector, options);
        rt.block_on(async {
            let mut held = pool.check_out().await.unwrap();
            // A waiter that is polled once (enters the wait queue) and then dropped.
            let mut waiter = pool.check_out();
            assert!((&mut waiter).now_or_never().is_none());
            assert_eq!(pool.counts().4, 1);
            drop(waiter);
            assert_eq!(pool.counts().4, 0);
            held.mark_reusable();
            drop(held);
            assert_eq!(pool.counts(), (1, 1, 0, 0, 0));
            let c = pool.check_out().await.unwrap();
            assert_eq!(c.id(), 1);
        })
        .unwrap();
        pool.check_invariants().unwrap();
    }

    #[test]
    fn waiter_dropped_after_being_served_gives_the_connection_back() {
        let rt = VirtualRuntime::new();
        let options = PoolOptions {
            max_pool_size: 1,
            ..PoolOptions::default()
        };
        let (pool, events) = make_pool(&rt, MockConnector, options);
        rt.block_on(async {
            let mut held = pool.check_out().await.unwrap();
            let mut waiter = pool.check_out();
            assert!((&mut waiter).now_or_never().is_none());
            held.mark_reusable();
            drop(held); // hands the connection to `waiter`, which is never polled again
            assert_eq!(pool.counts(), (1, 0, 1, 0, 0));
            drop(waiter);
            assert_eq!(pool.counts(), (1, 1, 0, 0, 0));
            let mut live = pool.check_out();
            assert!((&mut live).now_or_never().is_some());
        })
        .unwrap();
        assert_eq!(count(&events, "ConnectionCheckedIn"), 3);
        assert_eq!(
            count(&events, "ConnectionClosed"),
            1,
            "only the last, dirty check-in"
        );
        pool.check_invariants().unwrap();
    }

    #[test]
    fn wait_queue_timeout_fires_on_the_runtime_timer() {
        let rt = VirtualRuntime::new();
        let options = PoolOptions {
            max_pool_size: 1,
            wait_queue_timeout: Some(Duration::from_millis(50)),
            ..PoolOptions::default()
        };
        let (pool, _events) = make_pool(&rt, MockConnector, options);
        let start = rt.now();
        let rt2 = rt.clone();
        let err = rt
            .block_on(async {
                let _held = pool.check_out().await.unwrap();
                pool.check_out().await.unwrap_err()
            })
            .unwrap();
        assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err}");
        assert_eq!(rt2.now() - start, Duration::from_millis(50));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn check_out_until_times_out_at_its_deadline() {
        let rt = VirtualRuntime::new();
        let options = PoolOptions {
            max_pool_size: 1,
            ..PoolOptions::default()
        };
        let (pool, _events) = make_pool(&rt, MockConnector, options);
        let start = rt.now();
        let err = rt
            .block_on(async {
                let _held = pool.check_out().await.unwrap();
                let deadline = start + Duration::from_millis(10);
                pool.check_out_until(deadline).await.unwrap_err()
            })
            .unwrap();
        assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err}");
        assert_eq!(rt.now() - start, Duration::from_millis(10));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn clear_interrupts_in_use_connections() {
        let rt = VirtualRuntime::new();
        let (pool, _events) = make_pool(&rt, MockConnector, PoolOptions::default());
        rt.block_on(async {
            let mut c = pool.check_out().await.unwrap();
            assert!(!c.is_interrupted());
            pool.clear(true, None);
            c.interrupted().await;
            assert!(c.is_interrupted());
            c.mark_reusable();
            drop(c);
            assert_eq!(
                pool.counts().0,
                0,
                "interrupted connection closed on check-in"
            );
            let e = pool.check_out().await.unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::ConnectionPoolCleared { .. }));
        })
        .unwrap();
    }

    /// Takes a few virtual milliseconds to connect and sometimes fails.
    struct FlakyConnector {
        runtime: VirtualRuntime,
        calls: AtomicU64,
    }

    impl Connector for FlakyConnector {
        type Conn = u64;
        fn connect(&self, conn_id: u64, _generation: u64) -> BoxFuture<'static, Result<u64>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
            let rt = self.runtime.clone();
            Box::pin(async move {
                rt.sleep(Duration::from_millis(h % 7)).await;
                if h % 10 == 0 {
                    Err(Error::timeout("connect"))
                } else {
                    Ok(conn_id)
                }
            })
        }
    }

    #[test]
    fn randomized_clients_never_leak_slots() {
        for seed in 1..=8u64 {
            let rt = VirtualRuntime::new();
            let connector = FlakyConnector {
                runtime: rt.clone(),
                calls: AtomicU64::new(seed),
            };
            let options = PoolOptions {
                max_pool_size: 3,
                min_pool_size: (seed % 2) as u32,
                wait_queue_timeout: (seed % 3 != 0).then(|| Duration::from_millis(30)),
                max_idle_time: (seed % 4 == 0).then(|| Duration::from_millis(25)),
                ..PoolOptions::default()
            };
            let (pool, events) = make_pool(&rt, connector, options);
            let mut clients = Vec::new();
            for client in 0..12u64 {
                let (pool, rt2) = (pool.clone(), rt.clone());
                clients.push(rt.spawn_with_handle(async move {
                    let mut x = seed * 1000 + client + 1;
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    for _ in 0..150 {
                        let patience = Duration::from_millis(next() % 20);
                        // Dropped by the timeout at an arbitrary point of the check-out.
                        if let Ok(Ok(mut conn)) = rt2.timeout(patience, pool.check_out()).await {
                            rt2.sleep(Duration::from_millis(next() % 5)).await;
                            if next() % 5 != 0 {
                                conn.mark_reusable();
                            }
                        }
                        if next() % 40 == 0 {
                            pool.clear(next() % 2 == 0, None);
                            pool.ready();
                        }
                        pool.check_invariants().unwrap();
                    }
                }));
            }
            rt.block_on(futures::future::join_all(clients))
                .expect("clients finish");
            pool.ready();
            pool.check_invariants().unwrap();
            let (total, _available, in_use, _pending, waiting) = pool.counts();
            assert!(total <= 3);
            assert_eq!((in_use, waiting), (0, 0), "seed {seed}");
            // No slot leaked: a fresh check-out still works.
            let got = rt.block_on(async {
                for _ in 0..10 {
                    if pool.check_out().await.is_ok() {
                        return true;
                    }
                }
                false
            });
            assert_eq!(got, Some(true), "seed {seed}");
            assert_eq!(
                count(&events, "ConnectionCheckedOut"),
                count(&events, "ConnectionCheckedIn"),
                "seed {seed}"
            );
            assert!(count(&events, "ConnectionCheckedOut") > 100, "seed {seed}");
        }
    }

    struct FailingConnector;

    impl Connector for FailingConnector {
        type Conn = ();
        fn connect(&self, _conn_id: u64, _generation: u64) -> BoxFuture<'static, Result<()>> {
            Box::pin(async {
                Err(Error::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                )))
            })
        }
    }

    /// pool-create-min-size-error without a server: the background error reaches the handler
    /// (SDAM) before the connection's closure is reported.
    #[test]
    fn background_errors_reach_the_handler_before_the_close_event() {
        let rt = VirtualRuntime::new();
        let events: Events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let slot: Arc<Mutex<Option<Pool<FailingConnector>>>> = Arc::new(Mutex::new(None));
        let handler_slot = slot.clone();
        let pool = Pool::new(PoolConfig {
            address: ServerAddress::tcp("db", 27017),
            options: PoolOptions {
                min_pool_size: 1,
                ..PoolOptions::default()
            },
            connector: FailingConnector,
            runtime: Arc::new(rt.clone()),
            event_sink: Some(Arc::new(move |e: &CmapEvent| lock(&sink).push(e.clone()))),
            background_error_handler: Some(Arc::new(move |_id, error| {
                if let Some(pool) = lock(&handler_slot).take() {
                    pool.clear(false, Some(error));
                }
            })),
        })
        .unwrap();
        *lock(&slot) = Some(pool.clone());
        pool.ready();
        rt.run_until_stalled();
        let seen: Vec<&str> = lock(&events).iter().map(|e| e.type_name()).collect();
        assert_eq!(
            seen,
            [
                "ConnectionPoolCreated",
                "ConnectionPoolReady",
                "ConnectionCreated",
                "ConnectionPoolCleared",
                "ConnectionClosed"
            ]
        );
        assert!(matches!(
            lock(&events).last(),
            Some(CmapEvent::ConnectionClosed {
                reason: crate::cmap::ConnectionClosedReason::Error,
                ..
            })
        ));
        let err = rt.block_on(pool.check_out()).unwrap().unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        pool.check_invariants().unwrap();
    }

    /// Real threads racing check-outs, dropped check-outs (at their first poll, or by a timeout
    /// while waiting), dirty and clean check-ins, and clears.
    #[test]
    fn concurrent_clients_on_os_threads_never_leak_slots() {
        use crate::testing::ThreadRuntime;
        let runtime: Arc<dyn Runtime> = Arc::new(ThreadRuntime);
        let events: Events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let pool = Pool::new(PoolConfig {
            address: ServerAddress::tcp("db", 27017),
            options: PoolOptions {
                max_pool_size: 3,
                wait_queue_timeout: Some(Duration::from_millis(5)),
                ..PoolOptions::default()
            },
            connector: MockConnector,
            runtime: runtime.clone(),
            event_sink: Some(Arc::new(move |e: &CmapEvent| lock(&sink).push(e.clone()))),
            background_error_handler: None,
        })
        .unwrap();
        pool.ready();
        let clients: Vec<_> = (0..8u64)
            .map(|client| {
                let (pool, runtime) = (pool.clone(), runtime.clone());
                std::thread::spawn(move || {
                    let mut x = client * 7919 + 17;
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    for _ in 0..200 {
                        match next() % 4 {
                            0 => {
                                let mut f = pool.check_out();
                                if let Some(Ok(mut c)) = (&mut f).now_or_never() {
                                    c.mark_reusable();
                                }
                            }
                            _ => {
                                let patience = Duration::from_millis(next() % 4);
                                let got = futures::executor::block_on(
                                    runtime.timeout(patience, pool.check_out()),
                                );
                                if let Ok(Ok(mut c)) = got {
                                    std::thread::yield_now();
                                    if next() % 4 != 0 {
                                        c.mark_reusable();
                                    }
                                }
                            }
                        }
                        if next() % 50 == 0 {
                            pool.clear(next() % 2 == 0, None);
                            pool.ready();
                        }
                        pool.check_invariants().unwrap();
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client thread");
        }
        pool.ready();
        pool.check_invariants().unwrap();
        let (total, _, in_use, _, waiting) = pool.counts();
        assert!(total <= 3);
        assert_eq!((in_use, waiting), (0, 0));
        let last =
            futures::executor::block_on(runtime.timeout(Duration::from_secs(5), pool.check_out()));
        assert!(matches!(last, Ok(Ok(_))), "a slot leaked");
        drop(last);
        assert_eq!(
            count(&events, "ConnectionCheckedOut"),
            count(&events, "ConnectionCheckedIn")
        );
        // How many check-outs beat their short timeouts depends on the OS scheduler; that some
        // did shows the race was exercised.
        assert!(count(&events, "ConnectionCheckedOut") > 0);
    }
}
