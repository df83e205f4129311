//! # anymongo-async-std
//!
//! anymongo on [async-std](https://docs.rs/async-std): [`AsyncStdRuntime`] implements [`anymongo_core::rt::Runtime`] and
//! [`AsyncStdStream`] implements [`anymongo_core::rt::Stream`] with async-std's own primitives:
//! `async_std::net::TcpStream`, `async_std::task::spawn`, `async_std::net::ToSocketAddrs` (which
//! resolves on async-std's blocking pool, off the executor) and `async_io::Timer`, the timer of
//! async-std's own reactor.
//!
//! async-std is discontinued upstream in favour of smol; anymongo still supports it fully.
//!
//! ```no_run
//! async_std::task::block_on(async {
//!     let rt = anymongo_async_std::AsyncStdRuntime::current().expect("inside async-std");
//! # let _ = rt;
//! });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, missing_docs, rust_2018_idioms)]

use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anymongo_core::adapter::{clamp_deadline, FuturesIoStream, ReadinessDatagram, ResettableSleep};
use anymongo_core::rt::{BoxFuture, Datagram, Runtime, Sleep, Stream};
use async_io::{Async, Timer};
use async_std::net::ToSocketAddrs;

pub use anymongo_core;
pub use async_std;

pub use anymongo_core::{Client, ClientOptions, Collection, Cursor, Database};

anymongo_core::define_client_ext!("async-std", AsyncStdRuntime::current());

/// The caller is not running inside an async-std task, so [`AsyncStdRuntime::current`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRuntime;

impl std::fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "not inside an async-std task: call AsyncStdRuntime::current() from a task started \
             with async_std::task::block_on or spawn, or use AsyncStdRuntime::new()",
        )
    }
}

impl std::error::Error for NoRuntime {}

/// The async-std [`Runtime`]: async-std's global executor and reactor.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdRuntime;

impl AsyncStdRuntime {
    /// A handle to async-std's global runtime, which starts on first use; works from anywhere.
    pub fn new() -> Self {
        AsyncStdRuntime
    }

    /// A handle to async-std's runtime, for code running inside an async-std task.
    ///
    /// async-std has one global runtime and no "current runtime" to capture, so this checks the
    /// caller instead: it returns [`NoRuntime`] (never panics) unless called from a task run by
    /// `async_std::task::block_on` or `async_std::task::spawn`. That catches building a client
    /// from a thread (or another runtime's task) that was not meant to be async-std's.
    pub fn current() -> Result<Arc<dyn Runtime>, NoRuntime> {
        match async_std::task::try_current() {
            Some(_) => Ok(Arc::new(AsyncStdRuntime)),
            None => Err(NoRuntime),
        }
    }
}

impl Runtime for AsyncStdRuntime {
    fn name(&self) -> &'static str {
        "async-std"
    }

    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        // Dropping async-std's JoinHandle detaches the task.
        drop(async_std::task::spawn(fut));
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(ResettableSleep::new(
            Timer::at(clamp_deadline(deadline)),
            Timer::set_at,
        ))
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        Box::pin(async move { Ok(Box::new(connect(addr).await?) as Box<dyn Stream>) })
    }

    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok((host.as_str(), port).to_socket_addrs().await?.collect()) })
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Datagram>>> {
        // async-std's sockets are async-io's `Async` on its reactor; its `UdpSocket` has no
        // poll methods, so the registration is used directly.
        let socket = Async::<std::net::UdpSocket>::bind(addr);
        Box::pin(async move {
            let socket = ReadinessDatagram::new(
                socket?,
                Async::get_ref,
                Async::poll_readable,
                Async::poll_writable,
            );
            Ok(Box::new(socket) as Box<dyn Datagram>)
        })
    }

    #[cfg(unix)]
    fn connect_unix(&self, path: &Path) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        let path = path.to_owned();
        Box::pin(async move {
            let stream = async_std::os::unix::net::UnixStream::connect(path).await?;
            let stream =
                FuturesIoStream::with_shutdown(stream, |s| s.shutdown(std::net::Shutdown::Write));
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}

/// An `async_std::net::TcpStream` behind [`Stream`] (its `poll_close` only flushes, so shutting
/// down also shuts the write half down).
pub type AsyncStdStream = FuturesIoStream<async_std::net::TcpStream>;

/// Connects to `addr` with `TCP_NODELAY` set.
pub async fn connect(addr: SocketAddr) -> io::Result<AsyncStdStream> {
    let stream = async_std::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(FuturesIoStream::with_shutdown(stream, |s| {
        s.shutdown(std::net::Shutdown::Write)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_sockets_have_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let stream = async_std::task::block_on(connect(addr)).expect("connect");
        assert!(stream.get_ref().nodelay().expect("nodelay"));
    }
}
