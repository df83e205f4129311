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
//! - Every test records a [`Transcript`] of the driver events it causes: clients built with
//!   [`Env::client`] / [`Env::client_with`] send their events to `env.transcript`. With
//!   `ANYMONGO_TRANSCRIPTS=<dir>` the runner writes `<dir>/<test>/<harness>.txt` (+ `.status`),
//!   and `ci/parity` compares them across runtimes (the `parity` binary, [`transcript`]).

#![deny(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::error::Error as StdError;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anymongo_core::rt::{BoxFuture, RuntimeExt, RuntimeHandle};
use anymongo_core::{Client, ClientOptions};

pub mod alloc;
pub mod client_conformance;
pub mod conn_conformance;
pub mod crud_read_conformance;
pub mod crud_write_conformance;
pub mod dns_conformance;
pub mod driver_conformance;
pub mod harness;
pub mod hostile_conformance;
pub mod pitfalls;
pub mod rt_conformance;
pub mod sdam_conformance;
pub mod seedlist;
pub mod transcript;
pub mod unified;

pub use transcript::Transcript;

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

/// What a test receives: the runtime under test, the configuration it belongs to, and the
/// transcript its driver events are recorded into.
#[derive(Clone)]
pub struct Env {
    /// The runtime under test, built inside the running runtime.
    pub rt: RuntimeHandle,
    /// The configuration being tested.
    pub harness: &'static Harness,
    /// The test's transcript (see [`transcript`]); compared across runtimes by `ci/parity`.
    pub transcript: Transcript,
}

/// How a runtime configuration appears inside names tests build (`db_<token>_test`): tests use
/// per-runtime database names so that runs never share data, and transcripts show the token as
/// `_<rt>_` so that they compare equal across runtimes.
pub fn runtime_token(harness: &Harness) -> String {
    format!("_{}_", harness.name.replace('-', "_"))
}

impl Env {
    /// A client for `uri` on the runtime under test whose events go to [`Env::transcript`].
    pub fn client(&self, uri: &str) -> anymongo_core::Result<Client> {
        self.client_with(ClientOptions::parse_without_srv_resolution(uri)?)
    }

    /// A client with `options` on the runtime under test whose events go to
    /// [`Env::transcript`].
    pub fn client_with(&self, options: ClientOptions) -> anymongo_core::Result<Client> {
        Client::builder(options, self.rt.clone())
            .event_handler(self.transcript.event_handler())
            .build()
    }

    /// A client for `uri` whose events go to the lane `lane` of [`Env::transcript`]: for a
    /// client used by one of several concurrently running tasks (see [`Transcript::lane`]).
    pub fn client_in_lane(&self, lane: &str, uri: &str) -> anymongo_core::Result<Client> {
        Client::builder(
            ClientOptions::parse_without_srv_resolution(uri)?,
            self.rt.clone(),
        )
        .event_handler(self.transcript.lane(lane).event_handler())
        .build()
    }
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
    client_conformance::insert_many_partial_results,
    crud_write_conformance::update_with_operators,
    crud_write_conformance::update_with_pipeline,
    crud_write_conformance::replace_one_typed,
    crud_write_conformance::delete_one_and_many,
    crud_write_conformance::find_one_and_modify,
    crud_write_conformance::bulk_write_mixed,
    crud_write_conformance::bulk_write_ordered_stops,
    crud_write_conformance::bulk_write_unordered_continues,
    crud_write_conformance::unacknowledged_writes_use_more_to_come,
    crud_write_conformance::write_concern_errors_surface,
    crud_write_conformance::options_reach_the_wire,
    crud_read_conformance::aggregate_counts_distinct,
    crud_read_conformance::aggregate_write_stage_is_a_write,
    crud_read_conformance::index_management,
    crud_read_conformance::list_indexes_models,
    crud_read_conformance::collections_and_databases,
    crud_read_conformance::collection_options_and_filters,
    crud_read_conformance::bson_round_trip_server,
    crud_read_conformance::bson_round_trip_fake,
    crud_read_conformance::find_10000_drains_through_get_more,
    crud_read_conformance::dropped_cursor_sends_kill_cursors,
    crud_read_conformance::tailable_await_get_more_max_time,
    crud_read_conformance::raw_cursor,
    crud_read_conformance::read_settings_inheritance,
    crud_read_conformance::duplicate_key_is_write_error,
    crud_read_conformance::run_cursor_command,
    driver_conformance::handshake_metadata,
    driver_conformance::run_command_roundtrip,
    driver_conformance::command_error_is_typed,
    driver_conformance::only_declared_reads_are_retried,
    driver_conformance::insert_find_get_more,
    driver_conformance::concurrent_clients_in_lanes,
    driver_conformance::state_change_error_rediscovers,
    driver_conformance::socket_timeout_is_typed,
    driver_conformance::dropped_cursor_is_killed,
    driver_conformance::real_server_transcript,
    pitfalls::drop_outside_runtime,
    pitfalls::connections_close_after_runtime_gone,
    pitfalls::shutdown_stops_background_tasks,
    pitfalls::client_used_from_spawned_task,
    sdam_conformance::real_standalone_discovered,
    sdam_conformance::real_server_restart_rediscovered,
    sdam_conformance::streaming_protocol_when_supported,
    sdam_conformance::polling_when_asked,
    sdam_conformance::polling_without_topology_version,
    sdam_conformance::closing_stops_every_task,
    sdam_conformance::selection_waits_for_a_server,
    sdam_conformance::selection_timeout_lists_servers,
    sdam_conformance::replica_set_discovery_and_failover,
    sdam_conformance::replica_set_secondary_killed_and_revived,
    sdam_conformance::replica_set_read_preference_tags,
    sdam_conformance::sharded_retry_avoids_failed_mongos,
    sdam_conformance::application_errors_mark_the_server_unknown,
    sdam_conformance::load_balanced_mode_uses_the_pool_unmonitored,
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
    dns_conformance::udp_datagram_roundtrip,
    dns_conformance::unix_socket_client,
    dns_conformance::dns_lookups,
    dns_conformance::dns_truncated_answers_use_tcp,
    dns_conformance::dns_faults_are_typed_errors_in_time,
    dns_conformance::srv_seedlist_discovery,
    dns_conformance::srv_polling_tracks_the_records,
    dns_conformance::adapter_parse_resolves_srv,
    hostile_conformance::lying_lengths,
    hostile_conformance::compression_bombs,
    hostile_conformance::deep_nesting,
    hostile_conformance::timeouts_fire_while_data_streams,
    hostile_conformance::mismatched_response_to,
    hostile_conformance::endless_cursor,
    hostile_conformance::accept_and_close_or_silence,
    hostile_conformance::stored_deep_documents_read_on_the_runtime,
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
    run_one_recorded(test, harness).0
}

/// Runs `test` on `harness` like [`run_one`], also returning the test's transcript (sealed when
/// the test's future completed).
pub fn run_one_recorded(test: &Test, harness: &'static Harness) -> (Cell, Transcript) {
    let run = test.run;
    let transcript = Transcript::new();
    let recorded = transcript.clone();
    let body: Body = Box::new(move |rt: RuntimeHandle| {
        let env = Env {
            rt: rt.clone(),
            harness,
            transcript: recorded.clone(),
        };
        Box::pin(async move {
            let result = rt.timeout(TEST_TIMEOUT, run(env)).await;
            recorded.seal();
            match result {
                Ok(outcome) => outcome,
                Err(_) => panic!("timed out after {TEST_TIMEOUT:?}"),
            }
        }) as BoxFuture<'static, Outcome>
    });
    let cell = match std::panic::catch_unwind(AssertUnwindSafe(|| (harness.run)(body))) {
        Ok(Outcome::Pass) => Cell::Pass,
        Ok(Outcome::Skip(reason)) => Cell::Skip(reason),
        Err(payload) => Cell::Fail(panic_message(payload.as_ref())),
    };
    transcript.seal();
    (cell, transcript)
}

/// The environment variable naming the directory [`run_all`] writes transcripts to
/// (`<dir>/<test>/<harness>.txt` and `.status`); `ci/parity` sets it.
pub const TRANSCRIPTS_ENV: &str = "ANYMONGO_TRANSCRIPTS";

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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
    let transcripts = std::env::var_os(TRANSCRIPTS_ENV)
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
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
                let (cell, transcript) = run_one_recorded(test, h);
                if let Some(dir) = &transcripts {
                    let status = match &cell {
                        Cell::Pass => transcript::CellStatus::Pass,
                        Cell::Skip(r) => transcript::CellStatus::Skip((*r).to_owned()),
                        Cell::Fail(m) => transcript::CellStatus::Fail(m.clone()),
                    };
                    if let Err(e) = transcript::write_cell(
                        dir,
                        test.name,
                        h.name,
                        &status,
                        &transcript.render().replace(&runtime_token(h), "_<rt>_"),
                    ) {
                        totals.failed += 1;
                        notes.push(format!(
                            "FAIL {}/{}: writing its transcript to {}: {e}",
                            test.name,
                            h.name,
                            dir.display()
                        ));
                    }
                }
                match cell {
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
