//! connection-monitoring-and-pooling/tests/cmap-format: every file runs three times: against the
//! sans-IO pool machine ("<file>/machine"), against the async pool on the virtual-time runtime
//! ("<file>/async"), and against the async pool on a real-time runtime made of OS threads
//! ("<file>/threads"; real concurrency between the pool's tasks and the test's threads).

use std::path::Path;
use std::sync::Arc;

use anymongo_core::cmap::testing::{
    run_cmap_format_async, run_cmap_format_machine, skip_reason, CmapFormatTest, VirtualRuntime,
};

use crate::common::{self, Outcome, Report};

/// (case-name substring, reason). Files that need a live server are skipped by
/// `skip_reason` (their `style`/`failPoint`), each with its reason; nothing else is skipped.
const SKIPS: &[(&str, &str)] = &[];

pub fn run(root: &Path, report: &mut Report) {
    let dir = root.join("connection-monitoring-and-pooling/tests/cmap-format");
    let Some(files) = common::json_files(&dir) else {
        report.absent("cmap", &dir);
        return;
    };
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed: Result<CmapFormatTest, String> = common::read_json(&file)
            .and_then(|v| serde_json::from_value(v).map_err(|e| format!("{stem}: {e}")));
        for runner in ["machine", "async", "threads"] {
            let name = format!("cmap/{stem}/{runner}");
            let parsed = parsed.clone();
            report.case(&name, || {
                let test = match parsed {
                    Ok(t) => t,
                    Err(e) => return Outcome::Fail(e),
                };
                if let Some(why) = common::skip_reason(SKIPS, &name).or_else(|| skip_reason(&test))
                {
                    return Outcome::Skip(why);
                }
                let result = match runner {
                    "machine" => run_cmap_format_machine(&test),
                    "async" => {
                        let rt = VirtualRuntime::new();
                        rt.block_on(run_cmap_format_async(Arc::new(rt.clone()), &test))
                            .unwrap_or_else(|| Err("the test deadlocked".into()))
                    }
                    _ => futures::executor::block_on(run_cmap_format_async(
                        Arc::new(threads::ThreadRuntime),
                        &test,
                    )),
                };
                match result {
                    Ok(()) => Outcome::Pass,
                    Err(e) => Outcome::Fail(e),
                }
            });
        }
    }
}

/// A real-time [`Runtime`] built from OS threads: each task runs on its own thread, each armed
/// timer sleeps on its own thread. Crude, but runtime-free and truly concurrent.
mod threads {
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Instant;

    use anymongo_core::rt::{BoxFuture, Runtime, Sleep, Stream};
    use futures::task::AtomicWaker;

    #[derive(Debug)]
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

        fn resolve(
            &self,
            _host: &str,
            _port: u16,
        ) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            Box::pin(async { Err(io::ErrorKind::Unsupported.into()) })
        }
    }
}
