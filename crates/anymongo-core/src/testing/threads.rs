//! A real-time [`Runtime`] built from OS threads: each task runs on its own thread, each armed
//! timer sleeps on its own thread. Crude, but free of any runtime crate and truly concurrent, so
//! the async pool can be exercised with real races in core's own tests.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::rt::{BoxFuture, Runtime, Sleep, Stream};
use futures::task::AtomicWaker;

/// The OS-thread runtime (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRuntime;

struct Alarm {
    fired: AtomicBool,
    waker: AtomicWaker,
}

struct ThreadSleep {
    deadline: Instant,
    /// The alarm of the timer thread armed for `deadline`, if any.
    alarm: Option<(Instant, Arc<Alarm>)>,
}

impl std::future::Future for ThreadSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let armed = matches!(&self.alarm, Some((d, a)) if *d == deadline && !a.fired.load(Ordering::SeqCst));
        if !armed {
            let alarm = Arc::new(Alarm {
                fired: AtomicBool::new(false),
                waker: AtomicWaker::new(),
            });
            let a = alarm.clone();
            std::thread::spawn(move || {
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                }
                a.fired.store(true, Ordering::SeqCst);
                a.waker.wake();
            });
            self.alarm = Some((deadline, alarm));
        }
        if let Some((_, a)) = &self.alarm {
            a.waker.register(cx.waker());
        }
        if Instant::now() >= self.deadline {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for ThreadSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl Runtime for ThreadRuntime {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        std::thread::spawn(move || futures::executor::block_on(fut));
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(ThreadSleep {
            deadline,
            alarm: None,
        })
    }

    fn connect(&self, _addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        Box::pin(async { Err(io::ErrorKind::Unsupported.into()) })
    }

    fn resolve(&self, _host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async { Err(io::ErrorKind::Unsupported.into()) })
    }
}
