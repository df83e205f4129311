//! The runtime boundary: the only place where anymongo touches time, tasks and sockets.
//!
//! Everything below the async `Client` is sans-IO; everything the async layer needs from the
//! outside world goes through [`Runtime`] and [`Stream`]. Adapter crates (`anymongo-tokio`,
//! `anymongo-async-std`, `anymongo-smol`) implement these with their runtime's own primitives.
//! Timeouts, join handles and similar helpers are built once, here, on top of the traits, so
//! that they behave identically on every runtime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A timer that completes at a deadline and can be moved to another deadline.
pub trait Sleep: Future<Output = ()> + Send {
    /// Moves the deadline; the timer completes at `deadline` (immediately if it has passed).
    fn reset(self: Pin<&mut Self>, deadline: Instant);
}

/// An async runtime, as the driver sees it.
///
/// Object-safe and used as `Arc<dyn Runtime>`: a client captures its runtime when it is built and
/// uses it for every task, timer and socket for the rest of its life.
pub trait Runtime: Send + Sync + 'static {
    /// A short, stable name ("tokio", "async-std", "smol"), used in handshake metadata.
    fn name(&self) -> &'static str;

    /// Runs `fut` to completion in the background. The task is detached: nothing awaits it.
    fn spawn(&self, fut: BoxFuture<'static, ()>);

    /// The current time. This is the only clock the driver reads.
    fn now(&self) -> Instant;

    /// A timer that completes at `deadline`. Far-future deadlines must not panic.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>>;

    /// Opens a TCP connection to `addr` with `TCP_NODELAY` set.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>>;

    /// Resolves `host:port` to socket addresses without blocking the executor.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;

    /// Binds a UDP socket to `addr` (port 0: any free port), for the driver's DNS client
    /// (`mongodb+srv` lookups). The default refuses with [`io::ErrorKind::Unsupported`]: a
    /// runtime without it can still resolve `mongodb+srv` through a resolver of the
    /// application's own.
    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Datagram>>> {
        let _ = addr;
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this runtime has no UDP sockets (Runtime::bind_udp)",
            ))
        })
    }

    /// Opens a Unix domain socket connection to `path` (a `mongodb://%2Ftmp%2Fmongodb-27017.sock`
    /// host). The default refuses with [`io::ErrorKind::Unsupported`]; the adapters implement
    /// it on Unix.
    fn connect_unix(&self, path: &Path) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        let message = format!(
            "Unix domain sockets are not supported by this runtime or platform: {}",
            path.display()
        );
        Box::pin(async move { Err(io::Error::new(io::ErrorKind::Unsupported, message)) })
    }
}

/// A UDP socket, poll-based like [`Stream`].
pub trait Datagram: Send + Sync + 'static {
    /// Sends `buf` as one datagram to `target`, returning how many bytes were sent.
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>>;

    /// Receives one datagram into `buf` (a longer one is cut to `buf`'s length), returning its
    /// length and its sender.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;
}

/// Async helpers on any [`Datagram`].
pub trait DatagramExt: Datagram {
    /// Sends `buf` to `target`.
    fn send_to<'a>(&'a self, buf: &'a [u8], target: SocketAddr) -> SendToFuture<'a, Self>
    where
        Self: Sized,
    {
        SendToFuture {
            socket: self,
            buf,
            target,
        }
    }

    /// Receives one datagram.
    fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> RecvFromFuture<'a, Self>
    where
        Self: Sized,
    {
        RecvFromFuture { socket: self, buf }
    }
}

impl<D: Datagram + ?Sized> DatagramExt for D {}

impl<D: Datagram + ?Sized> Datagram for Box<D> {
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        (**self).poll_send_to(cx, buf, target)
    }

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        (**self).poll_recv_from(cx, buf)
    }
}

/// Future of [`DatagramExt::send_to`].
pub struct SendToFuture<'a, D> {
    socket: &'a D,
    buf: &'a [u8],
    target: SocketAddr,
}

impl<D: Datagram> Future for SendToFuture<'_, D> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.socket.poll_send_to(cx, self.buf, self.target)
    }
}

/// Future of [`DatagramExt::recv_from`].
pub struct RecvFromFuture<'a, D> {
    socket: &'a D,
    buf: &'a mut [u8],
}

impl<D: Datagram> Future for RecvFromFuture<'_, D> {
    type Output = io::Result<(usize, SocketAddr)>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.socket.poll_recv_from(cx, this.buf)
    }
}

/// A byte stream: a TCP socket, or a TLS session over one.
///
/// Poll-based, like hyper 1.x's `rt::Read`/`rt::Write`, so that TLS and compression can wrap any
/// runtime's socket without depending on that runtime's I/O traits.
pub trait Stream: Send + Unpin + 'static {
    /// Reads into `buf`, returning how many bytes were read; `Ok(0)` means end of stream.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>>;

    /// Writes from `buf`, returning how many bytes were written.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>>;

    /// Flushes buffered data.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Shuts down the write half.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<S: Stream + ?Sized> Stream for Box<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self).poll_read(cx, buf)
    }

    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self).poll_shutdown(cx)
    }
}

/// Async helpers on any [`Stream`].
pub trait StreamExt: Stream {
    /// Reads some bytes into `buf`.
    fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> ReadFuture<'a, Self>
    where
        Self: Sized,
    {
        ReadFuture { stream: self, buf }
    }

    /// Writes all of `buf`.
    fn write_all<'a>(&'a mut self, buf: &'a [u8]) -> WriteAllFuture<'a, Self>
    where
        Self: Sized,
    {
        WriteAllFuture { stream: self, buf }
    }

    /// Flushes the stream.
    fn flush(&mut self) -> FlushFuture<'_, Self>
    where
        Self: Sized,
    {
        FlushFuture { stream: self }
    }

    /// Shuts down the write half.
    fn shutdown(&mut self) -> ShutdownFuture<'_, Self>
    where
        Self: Sized,
    {
        ShutdownFuture { stream: self }
    }
}

impl<S: Stream + ?Sized> StreamExt for S {}

/// Future of [`StreamExt::read`].
pub struct ReadFuture<'a, S> {
    stream: &'a mut S,
    buf: &'a mut [u8],
}

impl<S: Stream> Future for ReadFuture<'_, S> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Pin::new(&mut *this.stream).poll_read(cx, this.buf)
    }
}

/// Future of [`StreamExt::write_all`].
pub struct WriteAllFuture<'a, S> {
    stream: &'a mut S,
    buf: &'a [u8],
}

impl<S: Stream> Future for WriteAllFuture<'_, S> {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        while !this.buf.is_empty() {
            match Pin::new(&mut *this.stream).poll_write(cx, this.buf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => this.buf = &this.buf[n..],
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Future of [`StreamExt::flush`].
pub struct FlushFuture<'a, S> {
    stream: &'a mut S,
}

impl<S: Stream> Future for FlushFuture<'_, S> {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }
}

/// Future of [`StreamExt::shutdown`].
pub struct ShutdownFuture<'a, S> {
    stream: &'a mut S,
}

impl<S: Stream> Future for ShutdownFuture<'_, S> {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut *self.get_mut().stream).poll_shutdown(cx)
    }
}

pub use anymongo_proto::time::{deadline_after, MAX_SLEEP};

/// A shared handle to a runtime.
pub type RuntimeHandle = Arc<dyn Runtime>;

/// Extension methods built once, in core, on top of any [`Runtime`].
pub trait RuntimeExt {
    /// Sleeps for `dur` (clamped to [`MAX_SLEEP`]).
    fn sleep(&self, dur: Duration) -> Pin<Box<dyn Sleep>>;

    /// Runs `fut` with a deadline; `Err(Elapsed)` if the deadline passes first.
    fn timeout<F: Future>(&self, dur: Duration, fut: F) -> Timeout<F>;

    /// Runs `fut` until `deadline`; `Err(Elapsed)` if it passes first.
    fn timeout_at<F: Future>(&self, deadline: Instant, fut: F) -> Timeout<F>;

    /// Spawns `fut` and returns a handle that resolves to its output. Dropping the handle
    /// cancels the task (at its next await point), on every runtime alike.
    fn spawn_with_handle<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
}

impl<R: Runtime + ?Sized> RuntimeExt for R {
    fn sleep(&self, dur: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(deadline_after(self.now(), dur))
    }

    fn timeout<F: Future>(&self, dur: Duration, fut: F) -> Timeout<F> {
        Timeout {
            fut,
            sleep: self.sleep(dur),
        }
    }

    fn timeout_at<F: Future>(&self, deadline: Instant, fut: F) -> Timeout<F> {
        Timeout {
            fut,
            sleep: self.sleep_until(deadline),
        }
    }

    fn spawn_with_handle<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        use futures::FutureExt;
        let (task, handle) = fut.remote_handle();
        self.spawn(Box::pin(task));
        JoinHandle { inner: handle }
    }
}

/// Returns `Pending` once, after waking its task, then `Ready`: lets the runtime run other
/// tasks and timers (a [`Timeout`] around the caller among them) in a loop whose I/O keeps
/// being ready. Built here, on no runtime's primitives, so every runtime yields alike.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future of [`yield_now`].
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The deadline of a [`RuntimeExt::timeout`] passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Future of [`RuntimeExt::timeout`].
#[pin_project::pin_project]
pub struct Timeout<F> {
    #[pin]
    fut: F,
    sleep: Pin<Box<dyn Sleep>>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    /// The deadline is checked on every poll, before the inner future is polled: a future that
    /// makes progress on every poll (a read loop fed continuously) cannot outlive it. (It used
    /// to be checked only when the inner future was pending.)
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        this.fut.poll(cx).map(Ok)
    }
}

/// A handle to a task spawned with [`RuntimeExt::spawn_with_handle`]. Dropping it cancels the task.
pub struct JoinHandle<T> {
    inner: futures::future::RemoteHandle<T>,
}

impl<T> JoinHandle<T> {
    /// Lets the task run to completion without anyone awaiting it.
    pub fn detach(self) {
        self.inner.forget();
    }
}

impl<T: Send + 'static> Future for JoinHandle<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

macro_rules! opaque_debug {
    ($($ty:ident<$($g:tt),*>),* $(,)?) => {$(
        impl<$($g),*> std::fmt::Debug for $ty<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    )*};
}

opaque_debug!(
    SendToFuture<'a, D>,
    RecvFromFuture<'a, D>,
    ReadFuture<'a, S>,
    WriteAllFuture<'a, S>,
    FlushFuture<'a, S>,
    ShutdownFuture<'a, S>,
    Timeout<F>,
    JoinHandle<T>,
);
