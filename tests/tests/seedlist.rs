//! The Initial DNS Seedlist Discovery spec tests (`$ANYMONGO_SPECS/initial-dns-seedlist-
//! discovery/tests`, default `<repo>/../shared/specs`) on every runtime configuration of the
//! conformance suite, against the testkit's stub DNS server and deployments (see
//! `anymongo_tests::seedlist`). Each test is reported as `runtime: folder/file`.
//!
//! `cargo test -p anymongo-tests --test seedlist [-- FILTER...]` runs the tests whose
//! `folder/file` contains any FILTER. Prints every skip and failure and
//! `N passed, N failed, N skipped`; exits non-zero on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anymongo_tests::seedlist::{run_suite, Deployments};
use anymongo_tests::unified::Report;
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
    let deployments = match Deployments::start() {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("cannot start the testkit deployments: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = specs_root().join("initial-dns-seedlist-discovery/tests");
    let mut report = Report::default();
    for harness in harness::ALL {
        let (tx, rx) = std::sync::mpsc::channel();
        let (filters, deployments, root) = (filters.clone(), deployments.clone(), root.clone());
        (harness.run)(Box::new(move |runtime| {
            Box::pin(async move {
                let _ = tx.send(run_suite(&root, &deployments, runtime, &filters).await);
                Outcome::Pass
            })
        }));
        let Ok(one) = rx.recv() else {
            eprintln!("the seedlist suite did not finish on {}", harness.name);
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
    if report.failed.is_empty() && !report.passed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
