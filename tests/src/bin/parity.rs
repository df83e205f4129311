//! The parity comparer: reads the transcripts the conformance runner wrote
//! (`<dir>/<test>/<harness>.txt` and `.status`, see `anymongo_tests::transcript`), prints the
//! matrix (one row per test, one column per runtime configuration, and `identical`), every
//! failure and every difference as a unified diff, and exits non-zero if any cell failed or any
//! transcript differs between configurations.
//!
//! `cargo run -p anymongo-tests --bin parity -- <dir>` (run by `ci/parity`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: parity <transcript directory>");
        return ExitCode::from(2);
    };
    let known: Vec<&str> = anymongo_tests::harness::ALL
        .iter()
        .map(|h| h.name)
        .collect();
    match anymongo_tests::transcript::compare_dir(&dir, &known) {
        Ok(report) => {
            print!("{}", report.render());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("parity: cannot read transcripts in {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
