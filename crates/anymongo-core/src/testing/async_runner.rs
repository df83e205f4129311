//! Runs a cmap-format test against the async [`Pool`] on any [`Runtime`].
//!
//! The test's threads are tasks spawned on the runtime, each fed its operations through a
//! channel. Waiting (`wait`, `waitForEvent`) uses the runtime's timers, so on a virtual-time
//! runtime the run is deterministic, and on a real one it takes the real time the test asks for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;

use crate::cmap::{CmapEvent, Connector, Pool, PoolConfig, PooledConnection};
use crate::error::Result;
use crate::options::ServerAddress;
use crate::rt::{BoxFuture, JoinHandle, Runtime, RuntimeExt};

use anymongo_proto::testing::{
    check_outcome, classify_error, count_events, CmapFormatTest, Op, TestError,
    DEFAULT_WAIT_FOR_EVENT,
};

/// A connection that does no I/O.
#[derive(Debug)]
pub struct MockConnection {
    /// The pool's id for it.
    pub id: u64,
    /// The generation it was created in.
    pub generation: u64,
}

/// Opens [`MockConnection`]s, immediately and successfully.
#[derive(Debug, Default)]
pub struct MockConnector;

impl Connector for MockConnector {
    type Conn = MockConnection;
    fn connect(&self, conn_id: u64, generation: u64) -> BoxFuture<'static, Result<MockConnection>> {
        Box::pin(async move {
            Ok(MockConnection {
                id: conn_id,
                generation,
            })
        })
    }
}

/// How long a single `checkOut` may take before the runner gives up on it.
const CHECK_OUT_LIMIT: Duration = Duration::from_secs(10);

/// How often `waitForEvent` looks at the events.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Fail {
    Op(TestError),
    Runner(String),
}

struct Ctx<C: Connector> {
    runtime: Arc<dyn Runtime>,
    pool: Pool<C>,
    events: Arc<Mutex<Vec<CmapEvent>>>,
    labels: Mutex<HashMap<String, PooledConnection<C>>>,
    /// Unlabelled connections stay checked out until the end of the test.
    kept: Mutex<Vec<PooledConnection<C>>>,
}

type ThreadResult = std::result::Result<Option<TestError>, String>;

struct Thread {
    ops: mpsc::UnboundedSender<Op>,
    done: JoinHandle<ThreadResult>,
}

/// Runs `test` against a [`Pool`] of [`MockConnection`]s on `runtime`; `Err` describes the
/// first mismatch.
pub async fn run_cmap_format_async(
    runtime: Arc<dyn Runtime>,
    test: &CmapFormatTest,
) -> std::result::Result<(), String> {
    run_cmap_format_async_with(
        runtime,
        test,
        MockConnector,
        ServerAddress::tcp("localhost", 27017),
    )
    .await
}

/// Runs `test` against a [`Pool`] for `address` whose connections `connector` opens (e.g. a
/// real establisher to a test server carrying the test's `failPoint`, for the integration
/// files). As discovery would, an error of a connection opened in the background (minPoolSize)
/// clears the pool, unless it is labelled `SystemOverloadedError` (CMAP backpressure).
pub async fn run_cmap_format_async_with<C: Connector>(
    runtime: Arc<dyn Runtime>,
    test: &CmapFormatTest,
    connector: C,
    address: ServerAddress,
) -> std::result::Result<(), String> {
    let ops = test
        .operations
        .iter()
        .map(|o| Ok((o.thread.clone(), o.op()?)))
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    // The handler needs the pool it belongs to: filled in below, emptied at the end (which
    // breaks the pool -> handler -> pool cycle).
    let own_pool: Arc<Mutex<Option<Pool<C>>>> = Arc::new(Mutex::new(None));
    let handler_pool = own_pool.clone();
    let pool = Pool::new(PoolConfig {
        address,
        options: test.pool_options.to_pool_options(),
        connector,
        runtime: runtime.clone(),
        event_sink: Some(Arc::new(move |e: &CmapEvent| {
            lock(&sink_events).push(e.clone())
        })),
        background_error_handler: Some(Arc::new(move |_generation, error| {
            if error.contains_label(crate::error::SYSTEM_OVERLOADED_ERROR) {
                return;
            }
            let pool = lock(&handler_pool).clone();
            if let Some(pool) = pool {
                pool.clear(false, Some(error));
            }
        })),
    })
    .map_err(|e| format!("pool options rejected: {e}"))?;
    *lock(&own_pool) = Some(pool.clone());
    let ctx = Arc::new(Ctx {
        runtime,
        pool,
        events,
        labels: Mutex::new(HashMap::new()),
        kept: Mutex::new(Vec::new()),
    });
    let mut threads: HashMap<String, Thread> = HashMap::new();
    let mut main_error = None;
    let mut runner_error = None;
    for (thread, op) in ops {
        let result = match thread {
            Some(name) => match threads.get(&name) {
                Some(t) => t
                    .ops
                    .unbounded_send(op)
                    .map_err(|_| Fail::Runner(format!("thread {name} is gone"))),
                None => Err(Fail::Runner(format!("thread {name} was not started"))),
            },
            None => main_op(&ctx, &mut threads, op).await,
        };
        match result {
            Ok(()) => {}
            Err(Fail::Op(e)) => {
                main_error = Some(e);
                break;
            }
            Err(Fail::Runner(s)) => {
                runner_error = Some(s);
                break;
            }
        }
    }
    let seen = lock(&ctx.events).clone();
    // Tear down: fail blocked check-outs, stop the threads, return every connection.
    ctx.pool.close();
    for (_, t) in threads.drain() {
        drop(t.ops);
        let _ = ctx.runtime.timeout(CHECK_OUT_LIMIT, t.done).await;
    }
    lock(&ctx.labels).clear();
    lock(&ctx.kept).clear();
    lock(&own_pool).take();
    if let Some(s) = runner_error {
        return Err(s);
    }
    check_outcome(test, &seen, main_error.as_ref())
}

async fn main_op<C: Connector>(
    ctx: &Arc<Ctx<C>>,
    threads: &mut HashMap<String, Thread>,
    op: Op,
) -> std::result::Result<(), Fail> {
    match op {
        Op::Start(name) => {
            let (tx, mut rx) = mpsc::unbounded::<Op>();
            let tctx = ctx.clone();
            let done = ctx.runtime.spawn_with_handle(async move {
                let mut error = None;
                while let Some(op) = rx.next().await {
                    match thread_op(&tctx, op).await {
                        Ok(()) => {}
                        Err(Fail::Op(e)) => {
                            error.get_or_insert(e);
                        }
                        Err(Fail::Runner(s)) => return Err(s),
                    }
                }
                Ok(error)
            });
            threads.insert(name, Thread { ops: tx, done });
            Ok(())
        }
        Op::Wait(d) => {
            ctx.runtime.sleep(d).await;
            Ok(())
        }
        Op::WaitForThread(name) => {
            let t = threads
                .remove(&name)
                .ok_or_else(|| Fail::Runner(format!("no thread {name}")))?;
            drop(t.ops);
            match ctx.runtime.timeout(CHECK_OUT_LIMIT, t.done).await {
                Err(_) => Err(Fail::Runner(format!("thread {name} never finishes"))),
                Ok(Err(s)) => Err(Fail::Runner(s)),
                Ok(Ok(Some(e))) => Err(Fail::Op(e)),
                Ok(Ok(None)) => Ok(()),
            }
        }
        Op::WaitForEvent {
            event,
            count,
            timeout,
        } => {
            let limit = timeout.unwrap_or(DEFAULT_WAIT_FOR_EVENT);
            let start = ctx.runtime.now();
            loop {
                if count_events(&lock(&ctx.events), &event) >= count {
                    return Ok(());
                }
                if ctx.runtime.now().saturating_duration_since(start) > limit {
                    return Err(Fail::Runner(format!(
                        "timed out waiting for {count} {event} event(s)"
                    )));
                }
                ctx.runtime.sleep(POLL_INTERVAL).await;
            }
        }
        other => thread_op(ctx, other).await,
    }
}

async fn thread_op<C: Connector>(ctx: &Arc<Ctx<C>>, op: Op) -> std::result::Result<(), Fail> {
    match op {
        Op::CheckOut { label } => {
            let conn = match ctx
                .runtime
                .timeout(CHECK_OUT_LIMIT, ctx.pool.check_out())
                .await
            {
                Err(_) => return Err(Fail::Runner("checkOut never completes".into())),
                Ok(Err(e)) => return Err(Fail::Op(classify_error(&e))),
                Ok(Ok(conn)) => conn,
            };
            match label {
                Some(l) => {
                    lock(&ctx.labels).insert(l, conn);
                }
                None => lock(&ctx.kept).push(conn),
            }
        }
        Op::CheckIn { label } => {
            let conn = lock(&ctx.labels).remove(&label);
            let mut conn =
                conn.ok_or_else(|| Fail::Runner(format!("no connection labelled {label}")))?;
            conn.mark_reusable();
            conn.check_in();
        }
        Op::Clear {
            interrupt_in_use_connections,
        } => ctx.pool.clear(interrupt_in_use_connections, None),
        Op::Close => ctx.pool.close(),
        Op::Ready => ctx.pool.ready(),
        Op::Wait(d) => ctx.runtime.sleep(d).await,
        other => return Err(Fail::Runner(format!("{other:?} cannot run in a thread"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmap::CheckOut;
    use crate::testing::VirtualRuntime;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn runner_and_check_out_futures_are_send() {
        let test: CmapFormatTest =
            bson::deserialize_from_document(bson::doc! { "style": "unit", "description": "send" })
                .unwrap();
        let rt = VirtualRuntime::new();
        let fut = run_cmap_format_async(Arc::new(rt.clone()), &test);
        assert_send(&fut);
        assert_eq!(rt.block_on(fut), Some(Ok(())));
        fn is_send<T: Send>() {}
        is_send::<CheckOut<MockConnector>>();
        is_send::<PooledConnection<MockConnector>>();
        is_send::<Pool<MockConnector>>();
    }
}
