//! The runtime configurations the suite runs on. Each starts a fresh runtime per test.

use std::sync::Arc;

use anymongo_async_std::AsyncStdRuntime;
use anymongo_core::rt::RuntimeHandle;
use anymongo_smol::SmolRuntime;
use anymongo_tokio::TokioRuntime;

use crate::{boxed_current, Body, CurrentOutside, Harness, Outcome};

/// tokio's current-thread scheduler.
pub static TOKIO_CURRENT_THREAD: Harness = Harness {
    name: "tokio-ct",
    runtime_name: "tokio",
    run: |body| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio current-thread runtime");
        rt.block_on(run_tokio(body))
    },
    current: || boxed_current(TokioRuntime::current()),
    current_outside: CurrentOutside::Errors,
};

/// tokio's multi-thread scheduler with two workers.
pub static TOKIO_MULTI_THREAD: Harness = Harness {
    name: "tokio-mt",
    runtime_name: "tokio",
    run: |body| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build a tokio multi-thread runtime");
        rt.block_on(run_tokio(body))
    },
    current: || boxed_current(TokioRuntime::current()),
    current_outside: CurrentOutside::Errors,
};

async fn run_tokio(body: Body) -> Outcome {
    let rt = TokioRuntime::current().expect("TokioRuntime::current() inside block_on");
    body(rt).await
}

/// async-std's global runtime, entered with `async_std::task::block_on`.
pub static ASYNC_STD: Harness = Harness {
    name: "async-std",
    runtime_name: "async-std",
    run: |body| {
        async_std::task::block_on(async move {
            let rt = AsyncStdRuntime::current().expect("AsyncStdRuntime::current() in block_on");
            body(rt).await
        })
    },
    current: || boxed_current(AsyncStdRuntime::current()),
    current_outside: CurrentOutside::Errors,
};

/// smol with its global executor (`smol::spawn`), entered with `smol::block_on`.
pub static SMOL: Harness = Harness {
    name: "smol",
    runtime_name: "smol",
    run: |body| {
        smol::block_on(async move {
            let rt = SmolRuntime::current().expect("SmolRuntime::current()");
            body(rt).await
        })
    },
    current: || boxed_current(SmolRuntime::current()),
    current_outside: CurrentOutside::Works,
};

/// smol with a caller-owned `smol::Executor` (`SmolRuntime::with_executor`), run on the test
/// thread by `smol::block_on(executor.run(..))`.
pub static SMOL_EXECUTOR: Harness = Harness {
    name: "smol-exec",
    runtime_name: "smol",
    run: |body| {
        let ex = Arc::new(smol::Executor::new());
        let rt: RuntimeHandle = Arc::new(SmolRuntime::with_executor(&ex));
        smol::block_on(ex.run(body(rt)))
    },
    current: || boxed_current(SmolRuntime::current()),
    current_outside: CurrentOutside::Works,
};

/// Every configuration, in matrix column order.
pub static ALL: &[&Harness] = &[
    &TOKIO_CURRENT_THREAD,
    &TOKIO_MULTI_THREAD,
    &ASYNC_STD,
    &SMOL,
    &SMOL_EXECUTOR,
];
