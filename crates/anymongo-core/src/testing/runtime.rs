//! A deterministic single-threaded executor with a virtual clock, implementing [`Runtime`].
//!
//! Tasks run in the order they are woken; time only moves when every task is stalled, and then
//! jumps straight to the earliest timer (like a paused tokio clock with auto-advance). TCP
//! sockets and the system's DNS are not available; UDP is, to services the test installs with
//! [`VirtualRuntime::serve_udp`] (each datagram answered, or not, after a virtual delay).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::task::ArcWake;

use crate::rt::{BoxFuture, Datagram, Runtime, Sleep, Stream};

/// A UDP service of the virtual network: given a datagram, the datagrams to send back, each
/// after its delay.
pub type UdpService = Arc<dyn Fn(&[u8]) -> Vec<(Duration, Vec<u8>)> + Send + Sync>;

/// The virtual network: services by address, and the inboxes of bound sockets.
#[derive(Default)]
struct Net {
    services: std::collections::HashMap<SocketAddr, UdpService>,
    inboxes: std::collections::HashMap<SocketAddr, Inbox>,
    next_port: u16,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<(Vec<u8>, SocketAddr)>,
    waker: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Exec {
    now: Mutex<Instant>,
    ready: Mutex<VecDeque<Arc<Task>>>,
    timers: Mutex<BTreeMap<u64, (Instant, Waker)>>,
    next_timer: AtomicU64,
    net: Mutex<Net>,
}

struct Task {
    fut: Mutex<Option<BoxFuture<'static, ()>>>,
    exec: Weak<Exec>,
    queued: AtomicBool,
}

impl ArcWake for Task {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        if !arc_self.queued.swap(true, Ordering::SeqCst) {
            if let Some(exec) = arc_self.exec.upgrade() {
                lock(&exec.ready).push_back(arc_self.clone());
            }
        }
    }
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

/// The virtual-time runtime (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct VirtualRuntime {
    exec: Arc<Exec>,
}

impl fmt::Debug for VirtualRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualRuntime")
            .field("now", &*lock(&self.exec.now))
            .finish_non_exhaustive()
    }
}

impl Default for VirtualRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualRuntime {
    /// A runtime whose clock starts at the real current instant and then only moves virtually.
    pub fn new() -> Self {
        VirtualRuntime {
            exec: Arc::new(Exec {
                now: Mutex::new(Instant::now()),
                ready: Mutex::new(VecDeque::new()),
                timers: Mutex::new(BTreeMap::new()),
                next_timer: AtomicU64::new(0),
                net: Mutex::new(Net::default()),
            }),
        }
    }

    /// Runs every ready task until none is ready. Returns whether any task ran.
    pub fn run_until_stalled(&self) -> bool {
        let mut ran = false;
        loop {
            let task = lock(&self.exec.ready).pop_front();
            let Some(task) = task else {
                return ran;
            };
            ran = true;
            task.queued.store(false, Ordering::SeqCst);
            let fut = lock(&task.fut).take();
            if let Some(mut fut) = fut {
                let waker = futures::task::waker(task.clone());
                let mut cx = Context::from_waker(&waker);
                if fut.as_mut().poll(&mut cx).is_pending() {
                    *lock(&task.fut) = Some(fut);
                }
            }
        }
    }

    /// Moves the clock to the earliest timer and wakes every timer due. Returns false if no
    /// timer is armed.
    pub fn advance_to_next_timer(&self) -> bool {
        let next = lock(&self.exec.timers).values().map(|(d, _)| *d).min();
        match next {
            Some(deadline) => {
                self.advance_to(deadline);
                true
            }
            None => false,
        }
    }

    /// Moves the clock to `t` (never backwards) and wakes every timer due.
    pub fn advance_to(&self, t: Instant) {
        let now = {
            let mut now = lock(&self.exec.now);
            if t > *now {
                *now = t;
            }
            *now
        };
        let due: Vec<Waker> = {
            let mut timers = lock(&self.exec.timers);
            let ids: Vec<u64> = timers
                .iter()
                .filter(|(_, (d, _))| *d <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| timers.remove(&id).map(|(_, w)| w))
                .collect()
        };
        for w in due {
            w.wake();
        }
    }

    /// Installs a UDP service at `addr`: every datagram sent there is given to `service`, whose
    /// replies arrive at the sender after their (virtual) delays. Replacing a service is allowed.
    pub fn serve_udp(&self, addr: SocketAddr, service: UdpService) {
        lock(&self.exec.net).services.insert(addr, service);
    }

    /// Advances the clock by `d`.
    pub fn advance(&self, d: Duration) {
        let now = *lock(&self.exec.now);
        self.advance_to(now + d);
    }

    /// Runs `fut` and every spawned task until `fut` completes, advancing virtual time whenever
    /// everything is stalled. Returns `None` if `fut` can never complete (nothing is ready and
    /// no timer is armed).
    pub fn block_on<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = futures::task::waker(flag.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if flag.0.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                    return Some(out);
                }
            }
            let ran = self.run_until_stalled();
            if !ran && !flag.0.load(Ordering::SeqCst) && !self.advance_to_next_timer() {
                return None;
            }
        }
    }
}

struct VirtualSleep {
    exec: Arc<Exec>,
    id: u64,
    deadline: Instant,
}

impl Future for VirtualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = *lock(&self.exec.now);
        let mut timers = lock(&self.exec.timers);
        if now >= self.deadline {
            timers.remove(&self.id);
            Poll::Ready(())
        } else {
            timers.insert(self.id, (self.deadline, cx.waker().clone()));
            Poll::Pending
        }
    }
}

impl Sleep for VirtualSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
        let mut timers = lock(&self.exec.timers);
        if let Some(entry) = timers.get_mut(&self.id) {
            entry.0 = deadline;
        }
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        lock(&self.exec.timers).remove(&self.id);
    }
}

impl Runtime for VirtualRuntime {
    fn name(&self) -> &'static str {
        "virtual"
    }

    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        let task = Arc::new(Task {
            fut: Mutex::new(Some(fut)),
            exec: Arc::downgrade(&self.exec),
            queued: AtomicBool::new(true),
        });
        lock(&self.exec.ready).push_back(task);
    }

    fn now(&self) -> Instant {
        *lock(&self.exec.now)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(VirtualSleep {
            exec: self.exec.clone(),
            id: self.exec.next_timer.fetch_add(1, Ordering::SeqCst),
            deadline,
        })
    }

    fn connect(&self, _addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the virtual runtime has no sockets",
            ))
        })
    }

    fn resolve(&self, _host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the virtual runtime has no DNS",
            ))
        })
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Datagram>>> {
        let mut net = lock(&self.exec.net);
        net.next_port = net.next_port.wrapping_add(1).max(1);
        let local = SocketAddr::new(addr.ip(), 40000u16.wrapping_add(net.next_port));
        net.inboxes.insert(local, Inbox::default());
        let socket = VirtualDatagram {
            rt: self.clone(),
            local,
        };
        Box::pin(async move { Ok(Box::new(socket) as Box<dyn Datagram>) })
    }
}

/// A socket of the virtual network.
struct VirtualDatagram {
    rt: VirtualRuntime,
    local: SocketAddr,
}

impl Drop for VirtualDatagram {
    fn drop(&mut self) {
        lock(&self.rt.exec.net).inboxes.remove(&self.local);
    }
}

impl Datagram for VirtualDatagram {
    fn poll_send_to(
        &self,
        _cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let service = lock(&self.rt.exec.net).services.get(&target).cloned();
        // A datagram to nowhere is lost, as on a real network.
        if let Some(service) = service {
            for (delay, reply) in service(buf) {
                let rt = self.rt.clone();
                let to = self.local;
                self.rt.spawn(Box::pin(async move {
                    crate::rt::RuntimeExt::sleep(&rt, delay).await;
                    let mut net = lock(&rt.exec.net);
                    if let Some(inbox) = net.inboxes.get_mut(&to) {
                        inbox.queue.push_back((reply, target));
                        if let Some(w) = inbox.waker.take() {
                            w.wake();
                        }
                    }
                }));
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut net = lock(&self.rt.exec.net);
        let Some(inbox) = net.inboxes.get_mut(&self.local) else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        match inbox.queue.pop_front() {
            Some((bytes, from)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Poll::Ready(Ok((n, from)))
            }
            None => {
                inbox.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::RuntimeExt;

    #[test]
    fn sleeps_complete_in_virtual_time_order() {
        let rt = VirtualRuntime::new();
        let start = rt.now();
        let order = Arc::new(Mutex::new(Vec::new()));
        for ms in [30u64, 10, 20] {
            let (rt2, order) = (rt.clone(), order.clone());
            rt.spawn(Box::pin(async move {
                rt2.sleep(Duration::from_millis(ms)).await;
                lock(&order).push(ms);
            }));
        }
        let rt2 = rt.clone();
        let out = rt.block_on(async move {
            rt2.sleep(Duration::from_millis(50)).await;
            7
        });
        assert_eq!(out, Some(7));
        assert_eq!(*lock(&order), vec![10, 20, 30]);
        assert_eq!(rt.now() - start, Duration::from_millis(50));
    }

    #[test]
    fn block_on_reports_a_deadlock() {
        let rt = VirtualRuntime::new();
        assert_eq!(rt.block_on(futures::future::pending::<()>()), None);
    }
}
