//! # anymongo-smol
//!
//! anymongo on [smol]: [`SmolRuntime`] implements [`anymongo_core::rt::Runtime`] and
//! [`SmolStream`] implements [`anymongo_core::rt::Stream`] with smol's own primitives:
//! `smol::net::TcpStream`, `smol::Timer`, `smol::net::resolve` (on smol's blocking pool, off the
//! executor) and a smol spawner.
//!
//! smol has no ambient runtime, so the spawner is chosen explicitly:
//! - [`SmolRuntime::global`] (and [`SmolRuntime::current`]) spawn with `smol::spawn` on smol's
//!   global executor, whose threads start on first use (`SMOL_THREADS`, default 1). It needs no
//!   setup and works from any thread.
//! - [`SmolRuntime::with_executor`] spawns on an `Arc<smol::Executor<'static>>` you run yourself
//!   (e.g. `smol::block_on(ex.run(main))`); tasks only make progress while it is being run.
//!
//! ```no_run
//! smol::block_on(async {
//!     let rt = anymongo_smol::SmolRuntime::current().expect("smol's global executor");
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
use std::sync::{Arc, Weak};
use std::time::Instant;

use anymongo_core::adapter::{clamp_deadline, FuturesIoStream, ReadinessDatagram, ResettableSleep};
use anymongo_core::rt::{BoxFuture, Datagram, Runtime, Sleep, Stream};
use smol::{Async, Executor, Timer};

pub use anymongo_core;
pub use smol;

pub use anymongo_core::{Client, ClientOptions, Collection, Cursor, Database};

anymongo_core::define_client_ext!("smol", SmolRuntime::current());

/// No smol runtime is available. smol's global executor starts on demand, so
/// [`SmolRuntime::current`] never returns this today; it exists so that every adapter's
/// `current()` has the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRuntime;

impl std::fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no smol runtime available")
    }
}

impl std::error::Error for NoRuntime {}

/// The smol [`Runtime`]: smol's reactor and timers, plus a spawner (see the crate docs).
#[derive(Clone)]
pub struct SmolRuntime {
    /// Weak, so that the driver's tasks (which hold the runtime) never keep the caller's
    /// executor, and so themselves, alive: when the caller drops its executor, the tasks on it
    /// are dropped and their sockets closed, as with a tokio runtime that shuts down.
    executor: Option<Weak<Executor<'static>>>,
}

impl std::fmt::Debug for SmolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let spawner = match self.executor {
            Some(_) => "Executor",
            None => "global",
        };
        f.debug_struct("SmolRuntime")
            .field("spawner", &spawner)
            .finish()
    }
}

impl SmolRuntime {
    /// Spawns with `smol::spawn` on smol's global executor.
    pub fn global() -> Self {
        SmolRuntime { executor: None }
    }

    /// Spawns on `executor`, which the caller must keep running. The runtime holds it weakly:
    /// once the caller drops the executor, its tasks are dropped and later spawns are ignored.
    pub fn with_executor(executor: &Arc<Executor<'static>>) -> Self {
        SmolRuntime {
            executor: Some(Arc::downgrade(executor)),
        }
    }

    /// smol's global-executor runtime as an `Arc<dyn Runtime>`.
    ///
    /// smol has no "current runtime": its global executor and reactor start on first use, so
    /// this always succeeds, from any thread, inside `smol::block_on` or not. Use
    /// [`SmolRuntime::with_executor`] to spawn on an executor of your own instead.
    pub fn current() -> Result<Arc<dyn Runtime>, NoRuntime> {
        Ok(Arc::new(SmolRuntime::global()))
    }
}

impl Runtime for SmolRuntime {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        // smol's Task cancels on drop: detach it.
        match &self.executor {
            Some(ex) => {
                if let Some(ex) = ex.upgrade() {
                    ex.spawn(fut).detach();
                }
            }
            None => smol::spawn(fut).detach(),
        }
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
        Box::pin(smol::net::resolve((host, port)))
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Datagram>>> {
        // smol's `UdpSocket` has no poll methods; its registration (`smol::Async`) is used.
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
            let stream = smol::net::unix::UnixStream::connect(path).await?;
            Ok(Box::new(FuturesIoStream::new(stream)) as Box<dyn Stream>)
        })
    }
}

/// A `smol::net::TcpStream` behind [`Stream`] (closing it shuts its write half down).
pub type SmolStream = FuturesIoStream<smol::net::TcpStream>;

/// Connects to `addr` with `TCP_NODELAY` set.
pub async fn connect(addr: SocketAddr) -> io::Result<SmolStream> {
    let stream = smol::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(FuturesIoStream::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_sockets_have_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let stream = smol::block_on(connect(addr)).expect("connect");
        assert!(stream.get_ref().nodelay().expect("nodelay"));
    }
}
