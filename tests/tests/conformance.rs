//! The conformance matrix: every test in `anymongo_tests::TESTS` on every runtime in
//! `anymongo_tests::harness::ALL`.
//!
//! `cargo test -p anymongo-tests --test conformance [-- FILTER...]` runs the cells whose
//! `test/runtime` name contains any FILTER (e.g. `echo`, `/smol`, `timeout_fires/tokio-mt`).

use std::process::ExitCode;

/// Counts allocations, so that the hostile-server tests can bound the memory a case used.
#[global_allocator]
static ALLOC: anymongo_tests::alloc::CountingAlloc = anymongo_tests::alloc::CountingAlloc;

fn main() -> ExitCode {
    // Arguments cargo or libtest conventions may pass (`--nocapture`, `-q`, ...) are not filters.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let totals = anymongo_tests::run_all(
        anymongo_tests::TESTS,
        anymongo_tests::harness::ALL,
        &filters,
    );
    if totals.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
