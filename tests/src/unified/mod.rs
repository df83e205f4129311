//! A runner for the MongoDB unified test format
//! (`source/unified-test-format/unified-test-format.md` in mongodb/specifications), run on the
//! anymongo client over any [`Runtime`](anymongo_core::rt::Runtime).
//!
//! - [`runner`]: files, `runOnRequirements`, `initialData`, tests, `expectEvents`, `outcome`,
//!   and the skip table (server deviations, missing driver features, driver bugs).
//! - [`entities`]: `createEntities` (clients recording command events, databases, collections).
//! - [`operations`]: operation name → anymongo API; results and errors as BSON.
//! - [`matching`]: the format's matching rules and `$$` operators.
//!
//! `tests/tests/unified.rs` runs the CRUD suite against `ANYMONGO_URI` (and the tests that
//! configure fail points against the testkit fake server, which reports version 8.0.0) and prints
//! every skip with its reason, the reasons grouped, and `N passed, N failed, N skipped`.
//!
//! Diagnosis: `UNIFIED_VERBOSE=1` adds the commands each failed test sent to its message;
//! `UNIFIED_NO_SKIPS=1` also runs the tests of [`runner::SKIPS`] (to re-check that each entry
//! still fails for the stated reason).

pub mod entities;
pub mod matching;
pub mod operations;
pub mod runner;

pub use runner::{run_suite, Suite};

use std::collections::BTreeMap;

/// Why a test stopped early: a skip (with the reason) or a failure (with the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// The test cannot run here; the reason is reported.
    Skip(String),
    /// The test failed.
    Fail(String),
}

/// The tally of a run: every test is passed, failed or skipped.
#[derive(Debug, Default)]
pub struct Report {
    /// Names of the tests that passed.
    pub passed: Vec<String>,
    /// `(test, message)` of each failure.
    pub failed: Vec<(String, String)>,
    /// `(test, reason)` of each skip.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// Records the result of test `name`.
    pub fn record(&mut self, name: String, result: Result<(), Flow>) {
        match result {
            Ok(()) => self.passed.push(name),
            Err(Flow::Skip(reason)) => self.skipped.push((name, reason)),
            Err(Flow::Fail(message)) => self.failed.push((name, message)),
        }
    }

    /// Skip reasons with how many tests each one covers.
    pub fn skips_by_reason(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for (_, reason) in &self.skipped {
            *out.entry(reason.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// Prints every skip and failure, the skip reasons grouped, and the totals line.
    pub fn print(&self) {
        for (name, reason) in &self.skipped {
            println!("SKIP {name}: {reason}");
        }
        for (name, message) in &self.failed {
            println!("FAIL {name}: {message}");
        }
        println!("\nskip reasons:");
        for (reason, n) in self.skips_by_reason() {
            println!("  {n:4}  {reason}");
        }
        println!(
            "\n{} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        );
    }
}
