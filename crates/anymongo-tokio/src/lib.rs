//! # anymongo-tokio
//!
//! anymongo on [tokio]: [`TokioRuntime`] implements [`anymongo_core::rt::Runtime`] and
//! [`TokioStream`] implements [`anymongo_core::rt::Stream`], using only tokio's own primitives
//! (`tokio::net`, `tokio::time`, a captured `tokio::runtime::Handle`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), anymongo_tokio::NoRuntime> {
//! let rt = anymongo_tokio::TokioRuntime::current()?;
//! # Ok(()) }
//! ```
//!
//! Works on both the current-thread and the multi-thread scheduler, and with tokio's paused test
//! clock: [`Runtime::now`] reads `tokio::time::Instant::now()`.
//!
//! After the tokio runtime is shut down, `spawn` silently drops the task, but tokio panics if a
//! timer of that runtime is polled (tokio's own behaviour); keep a client within the life of
//! the runtime it was built on.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, missing_docs, rust_2018_idioms)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use anymongo_core::rt::{deadline_after, BoxFuture, Datagram, Runtime, Sleep, Stream, MAX_SLEEP};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Handle;

pub use anymongo_core;
pub use tokio;

pub use anymongo_core::{Client, ClientOptions, Collection, Cursor, Database};

anymongo_core::define_client_ext!("tokio", TokioRuntime::current());

/// No tokio runtime is running on this thread, so there is no runtime to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRuntime;

impl std::fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no tokio runtime is running on this thread: call TokioRuntime::current() from \
             inside a tokio runtime, or use TokioRuntime::new(handle)",
        )
    }
}

impl std::error::Error for NoRuntime {}

/// The tokio [`Runtime`]: spawns on the `Handle` captured when it was built.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: Handle,
}

impl TokioRuntime {
    /// A runtime that spawns on `handle`.
    pub fn new(handle: Handle) -> Self {
        TokioRuntime { handle }
    }

    /// Captures the tokio runtime this is called from (`Handle::try_current`).
    ///
    /// Returns [`NoRuntime`] (never panics) outside a tokio runtime.
    pub fn current() -> Result<Arc<dyn Runtime>, NoRuntime> {
        Handle::try_current()
            .map(|h| Arc::new(TokioRuntime::new(h)) as Arc<dyn Runtime>)
            .map_err(|_| NoRuntime)
    }

    /// The captured handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Clamps `deadline` so tokio never sees an instant it cannot represent.
fn clamp(deadline: Instant) -> tokio::time::Instant {
    let now = tokio::time::Instant::now().into_std();
    tokio::time::Instant::from_std(deadline.min(deadline_after(now, MAX_SLEEP)))
}

impl Runtime for TokioRuntime {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        // Dropping tokio's JoinHandle detaches the task.
        drop(self.handle.spawn(fut));
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        // `sleep_until` needs the time driver of the current runtime; enter ours so that a
        // timer created outside a runtime context still works.
        let _guard = self.handle.enter();
        Box::pin(TokioSleep(Box::pin(tokio::time::sleep_until(clamp(
            deadline,
        )))))
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        Box::pin(async move { Ok(Box::new(TokioStream::connect(addr).await?) as Box<dyn Stream>) })
    }

    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Datagram>>> {
        // Registered with this runtime's reactor, whichever thread polls the future.
        let socket = std::net::UdpSocket::bind(addr).and_then(|s| {
            s.set_nonblocking(true)?;
            let _guard = self.handle.enter();
            tokio::net::UdpSocket::from_std(s)
        });
        Box::pin(async move { Ok(Box::new(TokioDatagram(socket?)) as Box<dyn Datagram>) })
    }

    #[cfg(unix)]
    fn connect_unix(&self, path: &Path) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        let path = path.to_owned();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(Box::new(TokioStream(stream)) as Box<dyn Stream>)
        })
    }
}

/// A `tokio::net::UdpSocket` behind [`Datagram`].
#[derive(Debug)]
struct TokioDatagram(tokio::net::UdpSocket);

impl Datagram for TokioDatagram {
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, buf, target)
    }

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut buf = ReadBuf::new(buf);
        self.0
            .poll_recv_from(cx, &mut buf)
            .map_ok(|from| (buf.filled().len(), from))
    }
}

/// A tokio timer behind [`Sleep`].
#[derive(Debug)]
struct TokioSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for TokioSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // tokio's timer answers Pending, even past its deadline, once the task has used up its
        // cooperative budget; a task busy reading a socket that always has data then never
        // sees its timeout fire. Read the (runtime's, possibly paused) clock first.
        if tokio::time::Instant::now() >= self.0.deadline() {
            return Poll::Ready(());
        }
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for TokioSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.as_mut().reset(clamp(deadline));
    }
}

/// A tokio socket behind [`Stream`]: a `tokio::net::TcpStream` (the default), or a
/// `tokio::net::UnixStream`.
#[derive(Debug)]
pub struct TokioStream<S = tokio::net::TcpStream>(pub S);

impl TokioStream {
    /// Connects to `addr` and sets `TCP_NODELAY`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(TokioStream(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for TokioStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anymongo_core::rt::{Elapsed, RuntimeExt};
    use std::time::Duration;

    /// With tokio's clock paused, `now()` and timers agree on the virtual time.
    #[tokio::test(start_paused = true)]
    async fn paused_clock_is_the_runtime_clock() {
        let rt = TokioRuntime::current().expect("inside a tokio runtime");
        let t0 = rt.now();
        assert_eq!(t0, tokio::time::Instant::now().into_std());
        rt.sleep(Duration::from_secs(3600)).await;
        assert!(rt.now() >= t0 + Duration::from_secs(3600));

        let t1 = rt.now();
        let fired = rt
            .timeout(Duration::from_secs(30), std::future::pending::<()>())
            .await;
        assert_eq!(fired, Err(Elapsed));
        assert!(rt.now() >= t1 + Duration::from_secs(30));

        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(rt.now() >= t1 + Duration::from_secs(35));
    }

    /// A future that keeps its task busy (it spends tokio's cooperative budget, as a socket
    /// read that always has data does): its timeout still fires. tokio's timer answers Pending
    /// past its deadline while the budget is spent, so it never fired before the adapter read
    /// the clock first.
    #[tokio::test]
    async fn a_timeout_fires_around_a_future_that_spends_the_budget() {
        let rt = TokioRuntime::current().expect("inside a tokio runtime");
        let busy = async {
            loop {
                tokio::task::coop::consume_budget().await;
            }
        };
        let started = std::time::Instant::now();
        let guard = tokio::time::timeout(
            Duration::from_secs(10),
            rt.timeout(Duration::from_millis(100), busy),
        );
        assert_eq!(
            guard.await,
            Ok(Err(Elapsed)),
            "the driver's timeout never fired"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn connected_sockets_have_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let stream = TokioStream::connect(addr).await.expect("connect");
        assert!(stream.0.nodelay().expect("nodelay"));
    }

    #[test]
    fn current_outside_a_runtime_is_an_error() {
        assert_eq!(TokioRuntime::current().err(), Some(NoRuntime));
    }
}
