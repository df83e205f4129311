//! The CRUD unified-format spec tests (`$ANYMONGO_SPECS/crud/tests/unified`, default
//! `<repo>/../shared/specs`) on the anymongo client, on every runtime configuration of the
//! conformance suite (each test is reported as `runtime: file/description`), against
//! `ANYMONGO_URI` (run under `ci/with-server`) and, for files that configure fail points, the
//! testkit fake server.
//!
//! `cargo test -p anymongo-tests --test unified [-- FILTER...]` runs the tests whose
//! `file/description` contains any FILTER. Prints every skip with its reason, the reasons
//! grouped, and `N passed, N failed, N skipped`; exits non-zero on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anymongo_tests::unified::{run_suite, Report, Suite};
use anymongo_tests::{harness, Outcome};

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
    // The same suite on every runtime configuration; each test is named `runtime: file/test`.
    let mut report = Report::default();
    for harness in harness::ALL {
        let filters = filters.clone();
        let db_prefix = format!("anymongo_unified_{}_", harness.name.replace('-', "_"));
        let (tx, rx) = std::sync::mpsc::channel();
        (harness.run)(Box::new(move |runtime| {
            Box::pin(async move {
                let suite = Suite {
                    root: specs_root().join("crud/tests/unified"),
                    uri: anymongo_tests::server_uri(),
                    runtime,
                    filters,
                    db_prefix,
                };
                let _ = tx.send(run_suite(&suite).await);
                Outcome::Pass
            })
        }));
        let Ok(one) = rx.recv() else {
            eprintln!("the unified suite did not finish on {}", harness.name);
            return ExitCode::FAILURE;
        };
        let name = |test: String| format!("{}: {test}", harness.name);
        report.passed.extend(one.passed.into_iter().map(name));
        report
            .failed
            .extend(one.failed.into_iter().map(|(t, m)| (name(t), m)));
        report
            .skipped
            .extend(one.skipped.into_iter().map(|(t, r)| (name(t), r)));
    }
    report.print();
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
