//! Runtime pitfalls a driver meets in the wild, each checked on every runtime configuration
//! against the testkit's fake server: clients dropped outside any runtime or after their
//! runtime is gone, background work stopping on shutdown, and a client used from a task other
//! than the one that built it. (`sleep(Duration::MAX)` is `rt_conformance::sleep_max_is_safe`;
//! the dependency boundary is `ci/check-deps`.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use anymongo_core::bson::{doc, Document};
use anymongo_core::rt::{RuntimeExt, RuntimeHandle};
use anymongo_core::{Client, ClientOptions, ErrorKind};
use anymongo_testkit::FakeServer;
use futures::channel::oneshot;

use crate::driver_conformance::{fake_client, fake_server, ping, wait_until};
use crate::{Body, Env, Outcome};

/// Runs `f` on a new plain std thread and awaits its result without blocking the runtime.
/// A panic in `f` is returned as `Err(message)`.
async fn on_plain_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("pitfalls-plain".into())
        .spawn(move || {
            let result =
                catch_unwind(AssertUnwindSafe(f)).map_err(|p| crate::panic_message(p.as_ref()));
            let _ = tx.send(result);
        })
        .expect("spawn a std thread");
    rx.await.expect("the plain thread reports back")
}

/// A client moved to a plain std thread (no runtime entered) and dropped there does not panic,
/// and its connections close.
pub async fn drop_outside_runtime(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    ping(&client).await.expect("ping");
    env.transcript.note("dropping the client on a plain thread");
    on_plain_thread(move || drop(client))
        .await
        .expect("dropping the client outside the runtime");
    env.transcript.note("dropped");
    wait_until(&env, "the client's connections to close", || {
        server.open_connections() == 0
    })
    .await;
    Outcome::Pass
}

/// Builds a client on a fresh runtime of the configuration under test (on its own plain
/// thread), pings `server` with it, lets that runtime return (tokio: shut down and dropped;
/// async-std and smol: no longer entered; smol-exec: its executor no longer run and dropped by
/// the harness), then drops the client on that thread. Asserts that neither step panicked.
async fn client_outliving_its_runtime(env: &Env, server: &FakeServer) {
    let options = ClientOptions::parse_without_srv_resolution(&server.uri())
        .expect("parse the fake server's uri");
    let harness = env.harness;
    let transcript = env.transcript.clone();
    let (ran, dropped) = on_plain_thread(move || {
        let slot: Arc<Mutex<Option<Client>>> = Arc::default();
        let keep = slot.clone();
        let body: Body = Box::new(move |rt: RuntimeHandle| {
            Box::pin(async move {
                let client = Client::builder(options, rt)
                    .event_handler(transcript.event_handler())
                    .build()
                    .expect("build a client on the inner runtime");
                ping(&client).await.expect("ping on the inner runtime");
                transcript.note("inner runtime done");
                *keep.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
                Outcome::Pass
            })
        });
        let ran = catch_unwind(AssertUnwindSafe(|| (harness.run)(body)))
            .map_err(|p| crate::panic_message(p.as_ref()));
        let client = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(client)))
            .map_err(|p| crate::panic_message(p.as_ref()));
        (ran, dropped)
    })
    .await
    .expect("the plain thread");
    assert_eq!(ran, Ok(Outcome::Pass), "the inner runtime's run");
    assert_eq!(dropped, Ok(()), "dropping the client after its runtime");
    env.transcript.note("client dropped after its runtime");
}

/// A client dropped after its runtime is gone does not panic, and every connection to the
/// server closes.
pub async fn connections_close_after_runtime_gone(env: Env) -> Outcome {
    let server = fake_server();
    client_outliving_its_runtime(&env, &server).await;
    wait_until(&env, "the dropped client's connections to close", || {
        server.open_connections() == 0
    })
    .await;
    Outcome::Pass
}

/// `shutdown()` stops the monitors and closes the pools: every connection to the server closes,
/// and clones of the client fail later operations with `Shutdown`.
pub async fn shutdown_stops_background_tasks(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    let clone = client.clone();
    ping(&client).await.expect("ping");
    // The monitor's, the pool's and, when the monitor streams, its RTT connection (opened
    // concurrently, so it may not be there yet).
    let open = server.open_connections();
    assert!((2..=3).contains(&open), "{open} connections open");
    client.shutdown().await;
    env.transcript.note("shut down");
    wait_until(&env, "every connection to close after shutdown", || {
        server.open_connections() == 0
    })
    .await;
    let error = ping(&clone).await.expect_err("an operation after shutdown");
    assert!(matches!(error.kind(), ErrorKind::Shutdown), "{error:?}");
    drop(clone);
    Outcome::Pass
}

/// A client built by the test is used from a task spawned on the same runtime (on the
/// multi-thread schedulers, possibly another thread), then again from the test.
pub async fn client_used_from_spawned_task(env: Env) -> Outcome {
    let server = fake_server();
    let client = fake_client(&env, &server);
    let in_task = client.clone();
    let task = env.rt.spawn_with_handle(async move {
        let run = async {
            let coll = in_task.database("parity").collection::<Document>("spawned");
            ping(&in_task).await?;
            coll.insert_one(doc! { "_id": 1, "from": "task" }).await?;
            let found = coll.find_one(doc! { "_id": 1 }).await?;
            anymongo_core::Result::<_>::Ok(found)
        };
        run.await
    });
    let found = task.await.expect("the spawned task's operations");
    assert_eq!(
        found.and_then(|d| d.get_str("from").ok().map(str::to_owned)),
        Some("task".to_owned())
    );
    env.transcript.note("task done");
    ping(&client)
        .await
        .expect("ping from the test after the task");
    assert_eq!(server.document_count("parity", "spawned"), 1);
    client.shutdown().await;
    Outcome::Pass
}
