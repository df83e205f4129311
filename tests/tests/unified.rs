//! The CRUD unified-format spec tests (`$ANYMONGO_SPECS/crud/tests/unified`, default
//! `<repo>/../shared/specs`) on the anymongo client, on tokio's multi-thread runtime, against
//! `ANYMONGO_URI` (run under `ci/with-server`) and, for files that configure fail points, the
//! testkit fake server.
//!
//! `cargo test -p anymongo-tests --test unified [-- FILTER...]` runs the tests whose
//! `file/description` contains any FILTER. Prints every skip with its reason, the reasons
//! grouped, and `N passed, N failed, N skipped`; exits non-zero on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anymongo_tests::unified::{run_suite, Suite};

fn specs_root() -> PathBuf {
    match std::env::var_os("ANYMONGO_SPECS") {
        Some(p) => PathBuf::from(p),
        // CARGO_MANIFEST_DIR is tests/; the repository root is one level up.
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs"),
    }
}

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(async {
        let rt = match anymongo_tokio::TokioRuntime::current() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("no tokio runtime handle: {e}");
                return None;
            }
        };
        let suite = Suite {
            root: specs_root().join("crud/tests/unified"),
            uri: anymongo_tests::server_uri(),
            runtime: rt,
            filters,
            db_prefix: "anymongo_unified_".to_string(),
        };
        Some(run_suite(&suite).await)
    });
    let Some(report) = report else {
        return ExitCode::FAILURE;
    };
    report.print();
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
