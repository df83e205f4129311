//! Building blocks for runtime adapter crates, written once here so that adapters stay thin.
//!
//! - [`FuturesIoStream`]: a [`Stream`] over any socket that implements the `futures-io` traits
//!   (async-std's and smol's `TcpStream` do).
//! - [`ResettableSleep`]: a [`Sleep`] over a runtime timer that can be moved to a new deadline
//!   (`async_io::Timer`, which async-std and smol share), ready for good once it fired.
//! - [`clamp_deadline`]: a deadline no runtime timer can choke on.
//! - [`ReadinessDatagram`]: a [`Datagram`] over a non-blocking UDP socket registered with a
//!   reactor that reports readiness (`async_io::Async<UdpSocket>`, which async-std and smol
//!   share).
//!
//! None of this names a runtime: each adapter plugs its own runtime's socket and timer in.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::io::{AsyncRead, AsyncWrite};

use crate::rt::{deadline_after, Datagram, Sleep, Stream, MAX_SLEEP};

/// `deadline`, or [`MAX_SLEEP`] from now if that is sooner: a timer never sees an instant it
/// cannot represent (`Instant` arithmetic overflows, and some runtimes panic on far deadlines).
pub fn clamp_deadline(deadline: Instant) -> Instant {
    deadline.min(deadline_after(Instant::now(), MAX_SLEEP))
}

/// How a [`FuturesIoStream`] shuts down its write half.
#[derive(Clone, Copy)]
enum Shutdown<S> {
    /// `poll_close` shuts the write half down (smol, async-net).
    Close,
    /// `poll_close` only flushes (async-std): flush, then this.
    Then(fn(&S) -> io::Result<()>),
}

/// A [`Stream`] over a `futures-io` socket.
pub struct FuturesIoStream<S> {
    io: S,
    shutdown: Shutdown<S>,
}

impl<S> std::fmt::Debug for FuturesIoStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuturesIoStream").finish_non_exhaustive()
    }
}

impl<S> FuturesIoStream<S> {
    /// Wraps `io`, whose `poll_close` shuts its write half down.
    pub fn new(io: S) -> Self {
        FuturesIoStream {
            io,
            shutdown: Shutdown::Close,
        }
    }

    /// Wraps `io`, whose `poll_close` only flushes: shutting down flushes, then calls
    /// `shutdown_write` (e.g. `|s| s.shutdown(std::net::Shutdown::Write)`).
    pub fn with_shutdown(io: S, shutdown_write: fn(&S) -> io::Result<()>) -> Self {
        FuturesIoStream {
            io,
            shutdown: Shutdown::Then(shutdown_write),
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S> Stream for FuturesIoStream<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }

    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shutdown {
            Shutdown::Close => Pin::new(&mut self.io).poll_close(cx),
            Shutdown::Then(shutdown_write) => match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(shutdown_write(&self.io)),
                other => other,
            },
        }
    }
}

/// Readiness of a registered socket, polled (e.g. `Async::poll_readable`).
pub type PollReady<S> = fn(&S, &mut Context<'_>) -> Poll<io::Result<()>>;

/// A [`Datagram`] over a non-blocking `std::net::UdpSocket` held by a reactor registration `S`
/// that reports readiness (`async_io::Async<UdpSocket>`): each operation is tried, and on
/// `WouldBlock` waits for the reactor's readiness and tries again.
pub struct ReadinessDatagram<S> {
    io: S,
    socket: fn(&S) -> &std::net::UdpSocket,
    readable: PollReady<S>,
    writable: PollReady<S>,
}

impl<S> std::fmt::Debug for ReadinessDatagram<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessDatagram").finish_non_exhaustive()
    }
}

impl<S> ReadinessDatagram<S> {
    /// Wraps `io`: `socket` gives its (non-blocking) socket, `readable` and `writable` poll the
    /// reactor's readiness (e.g. `Async::get_ref`, `Async::poll_readable`,
    /// `Async::poll_writable`).
    pub fn new(
        io: S,
        socket: fn(&S) -> &std::net::UdpSocket,
        readable: PollReady<S>,
        writable: PollReady<S>,
    ) -> Self {
        ReadinessDatagram {
            io,
            socket,
            readable,
            writable,
        }
    }

    /// Runs `op` until it does not block, waiting with `ready` in between.
    fn poll_op<T>(
        &self,
        cx: &mut Context<'_>,
        ready: PollReady<S>,
        mut op: impl FnMut(&std::net::UdpSocket) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op((self.socket)(&self.io)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match ready(&self.io, cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<S: Send + Sync + 'static> Datagram for ReadinessDatagram<S> {
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: std::net::SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.poll_op(cx, self.writable, |s| s.send_to(buf, target))
    }

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, std::net::SocketAddr)>> {
        self.poll_op(cx, self.readable, |s| s.recv_from(buf))
    }
}

/// A [`Sleep`] over a runtime timer `T` that completes at a deadline and can be moved to
/// another (`reset`). It stays ready once it fired, until it is reset, whatever the timer does
/// when polled again.
pub struct ResettableSleep<T> {
    timer: T,
    reset: fn(&mut T, Instant),
    done: bool,
}

impl<T> std::fmt::Debug for ResettableSleep<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResettableSleep")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> ResettableSleep<T> {
    /// Wraps `timer`, armed already; `reset(timer, deadline)` re-arms it at `deadline` (which
    /// [`Sleep::reset`] clamps with [`clamp_deadline`] first).
    pub fn new(timer: T, reset: fn(&mut T, Instant)) -> Self {
        ResettableSleep {
            timer,
            reset,
            done: false,
        }
    }
}

impl<T: Future + Unpin> Future for ResettableSleep<T> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => {
                self.done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Future + Unpin + Send> Sleep for ResettableSleep<T> {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        let this = &mut *self;
        (this.reset)(&mut this.timer, clamp_deadline(deadline));
        this.done = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A timer that is ready from its deadline on, and counts its resets.
    struct FakeTimer {
        at: Instant,
        resets: usize,
    }

    impl Future for FakeTimer {
        type Output = Instant;
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Instant> {
            if Instant::now() >= self.at {
                Poll::Ready(self.at)
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn a_fired_sleep_stays_ready_until_reset() {
        let now = Instant::now();
        let timer = FakeTimer { at: now, resets: 0 };
        let mut sleep = Box::pin(ResettableSleep::new(timer, |t, at| {
            t.at = at;
            t.resets += 1;
        }));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
        // Moved far ahead (clamped, never overflowing): pending again.
        sleep
            .as_mut()
            .reset(now + Duration::from_secs(60 * 60 * 24 * 365 * 100));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(sleep.timer.resets, 1);
        assert!(sleep.timer.at <= clamp_deadline(Instant::now() + MAX_SLEEP));
        sleep.as_mut().reset(now);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn clamped_deadlines_never_overflow() {
        let far = clamp_deadline(Instant::now() + Duration::from_secs(u32::MAX.into()) * 1000);
        assert!(far <= Instant::now() + MAX_SLEEP);
        let near = Instant::now() + Duration::from_millis(5);
        assert_eq!(clamp_deadline(near), near);
    }
}
