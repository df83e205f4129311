//! # anymongo-tests
//!
//! One conformance suite, written once and run on every runtime configuration.
//!
//! - A [`Harness`] describes one configuration (tokio current-thread, tokio multi-thread,
//!   async-std, smol, ...): how to start its runtime and run a future on it.
//! - A conformance test is a plain `async fn name(env: Env) -> Outcome` in a module of this
//!   crate, registered by ONE line in the `registry!` invocation in this file. Tests fail by
//!   panicking (`assert!`), like ordinary Rust tests; [`Outcome::Skip`] carries a reason.
//! - [`run_all`] runs every test on every harness and prints a matrix and a
//!   `N passed, N failed, N skipped` line (see `tests/tests/conformance.rs`).

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::error::Error as StdError;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anymongo_core::rt::{BoxFuture, RuntimeExt, RuntimeHandle};

pub mod client_conformance;
pub mod conn_conformance;
pub mod harness;
pub mod rt_conformance;

/// The error type of a harness's `current()` constructor.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The result of one test that did not panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The test ran and its assertions held.
    Pass,
    /// The test does not apply to this configuration, for the given reason.
    Skip(&'static str),
}

/// What a runtime's `current()` does on a thread that runs no runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentOutside {
    /// It returns an error (tokio: no handle; async-std: not in an async-std task).
    Errors,
    /// It succeeds, because the runtime is global and starts on demand (smol).
    Works,
}

/// The body of a test, given the runtime handle; run by [`Harness::run`] inside the runtime.
pub type Body = Box<dyn FnOnce(RuntimeHandle) -> BoxFuture<'static, Outcome> + Send>;

/// One runtime configuration the suite runs on.
#[derive(Debug)]
pub struct Harness {
    /// Column name in the matrix, e.g. "tokio-mt".
    pub name: &'static str,
    /// What `Runtime::name()` must return.
    pub runtime_name: &'static str,
    /// Starts a fresh runtime, builds its `RuntimeHandle` from inside it, and runs `body` to
    /// completion on it.
    pub run: fn(Body) -> Outcome,
    /// The adapter's one-line `current()` constructor.
    pub current: fn() -> Result<RuntimeHandle, BoxError>,
    /// What `current` does outside any runtime.
    pub current_outside: CurrentOutside,
}

/// What a test receives: the runtime under test and the configuration it belongs to.
#[derive(Clone)]
pub struct Env {
    /// The runtime under test, built inside the running runtime.
    pub rt: RuntimeHandle,
    /// The configuration being tested.
    pub harness: &'static Harness,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("rt", &self.rt.name())
            .field("harness", &self.harness.name)
            .finish()
    }
}

/// A registered conformance test.
pub type TestFn = fn(Env) -> BoxFuture<'static, Outcome>;

/// A named entry of [`TESTS`].
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// `module::function`.
    pub name: &'static str,
    /// The test itself.
    pub run: TestFn,
}

/// Builds [`TESTS`] from `module::function` paths: adding a test is one line here.
macro_rules! registry {
    ($($module:ident :: $test:ident),* $(,)?) => {
        /// Every conformance test, in run order.
        pub static TESTS: &[Test] = &[$(
            Test {
                name: concat!(stringify!($module), "::", stringify!($test)),
                run: |env| Box::pin($module::$test(env)),
            },
        )*];
    };
}

registry![
    rt_conformance::name_matches,
    rt_conformance::spawn_detached_runs,
    rt_conformance::spawn_from_foreign_thread,
    rt_conformance::spawn_with_handle_returns_value,
    rt_conformance::join_handle_detach_runs,
    rt_conformance::dropping_join_handle_cancels,
    rt_conformance::sleeps_complete_in_deadline_order,
    rt_conformance::sleep_reset_earlier_and_later,
    rt_conformance::sleep_stays_ready_until_reset,
    rt_conformance::timer_from_foreign_thread,
    rt_conformance::now_agrees_with_sleep,
    rt_conformance::timeout_fires,
    rt_conformance::timeout_does_not_fire,
    rt_conformance::sleep_max_is_safe,
    rt_conformance::connect_refused_is_error,
    rt_conformance::echo_1mib_poll,
    rt_conformance::echo_1mib_stream_ext,
    rt_conformance::resolve_localhost_is_loopback,
    rt_conformance::resolve_ip_literal,
    rt_conformance::current_inside_and_outside,
    rt_conformance::server_hello_roundtrip,
    client_conformance::quickstart_flow,
    conn_conformance::cancellation_keeps_pool_sound,
    conn_conformance::cancellation_over_tls_scram_and_compression,
    conn_conformance::cmap_format_async_pool,
    conn_conformance::handshake_metadata,
    conn_conformance::wire_version_too_old,
    conn_conformance::wire_version_too_new,
    conn_conformance::connect_timeout_bounds_handshake,
    conn_conformance::connect_timeout_bounds_monitor,
    conn_conformance::socket_timeout_closes_connection,
    conn_conformance::broken_replies_never_reach_the_pool,
    conn_conformance::scram_sha256_negotiated_speculative,
    conn_conformance::scram_sha1_explicit_speculative,
    conn_conformance::scram_sha1_negotiated,
    conn_conformance::scram_wrong_password,
    conn_conformance::scram_wrong_server_signature,
    conn_conformance::plain_auth,
    conn_conformance::tls_verifies_ca,
    conn_conformance::tls_verifies_hostname,
    conn_conformance::tls_required_by_server,
    conn_conformance::compression_snappy,
    conn_conformance::compression_zlib,
    conn_conformance::compression_zstd,
    conn_conformance::compression_negotiates_first_shared,
];

/// A test that runs longer than this fails (guards against hangs; not a timing assertion).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How one (test, harness) cell ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Passed.
    Pass,
    /// Skipped, with the reason.
    Skip(&'static str),
    /// Failed, with the panic message.
    Fail(String),
}

/// Runs `test` on `harness`, catching panics and hangs.
pub fn run_one(test: &Test, harness: &'static Harness) -> Cell {
    let run = test.run;
    let body: Body = Box::new(move |rt: RuntimeHandle| {
        let env = Env {
            rt: rt.clone(),
            harness,
        };
        Box::pin(async move {
            match rt.timeout(TEST_TIMEOUT, run(env)).await {
                Ok(outcome) => outcome,
                Err(_) => panic!("timed out after {TEST_TIMEOUT:?}"),
            }
        }) as BoxFuture<'static, Outcome>
    });
    match std::panic::catch_unwind(AssertUnwindSafe(|| (harness.run)(body))) {
        Ok(Outcome::Pass) => Cell::Pass,
        Ok(Outcome::Skip(reason)) => Cell::Skip(reason),
        Err(payload) => Cell::Fail(panic_message(payload.as_ref())),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Cells that passed.
    pub passed: usize,
    /// Cells that failed.
    pub failed: usize,
    /// Cells that were skipped.
    pub skipped: usize,
}

/// Runs every test whose `"test/harness"` name contains one of `filters` (all if empty) on
/// every harness, prints the matrix, the failures and skips, and the totals line.
pub fn run_all(tests: &[Test], harnesses: &[&'static Harness], filters: &[String]) -> Totals {
    let selected = |t: &Test, h: &Harness| {
        let full = format!("{}/{}", t.name, h.name);
        filters.is_empty() || filters.iter().any(|f| full.contains(f.as_str()))
    };
    let mut totals = Totals::default();
    let mut notes = Vec::new();
    let width = tests.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    print!("{:width$}", "test");
    for h in harnesses {
        print!("  {:>10}", h.name);
    }
    println!();
    for test in tests {
        if !harnesses.iter().any(|h| selected(test, h)) {
            continue;
        }
        let mut row = format!("{:width$}", test.name);
        for &h in harnesses {
            let mark = if !selected(test, h) {
                "-"
            } else {
                match run_one(test, h) {
                    Cell::Pass => {
                        totals.passed += 1;
                        "ok"
                    }
                    Cell::Skip(reason) => {
                        totals.skipped += 1;
                        notes.push(format!("SKIP {}/{}: {reason}", test.name, h.name));
                        "skip"
                    }
                    Cell::Fail(msg) => {
                        totals.failed += 1;
                        notes.push(format!("FAIL {}/{}: {msg}", test.name, h.name));
                        "FAIL"
                    }
                }
            };
            row.push_str(&format!("  {mark:>10}"));
        }
        println!("{row}");
    }
    for note in &notes {
        println!("{note}");
    }
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.skipped
    );
    totals
}

/// The real server's URI from `ANYMONGO_URI` (set by `ci/with-server`), if any. Tests that need
/// a server return `Outcome::Skip` with a reason when this is `None`.
pub fn server_uri() -> Option<String> {
    std::env::var("ANYMONGO_URI")
        .ok()
        .filter(|uri| !uri.is_empty())
}

/// Converts an adapter's `current()` result for [`Harness::current`].
pub fn boxed_current<E: StdError + Send + Sync + 'static>(
    r: Result<Arc<dyn anymongo_core::rt::Runtime>, E>,
) -> Result<RuntimeHandle, BoxError> {
    r.map_err(|e| Box::new(e) as BoxError)
}
