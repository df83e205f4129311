//! Shared plumbing for the spec runners (here, in `anymongo-core` and in `anymongo-tests`):
//! where the suites are, reading them, and counting results. Every case is counted; a skip
//! carries its reason; a suite folder that is absent is reported, and fails the run when the
//! `CI` environment variable is set (CI must never pass on suites it did not run).

use std::path::{Path, PathBuf};

/// The specs root: `$ANYMONGO_SPECS`, or `<repo>/../shared/specs`.
pub fn specs_root() -> PathBuf {
    if let Some(p) = std::env::var_os("ANYMONGO_SPECS") {
        return PathBuf::from(p);
    }
    // CARGO_MANIFEST_DIR is crates/anymongo-proto; the repository root is two levels up.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs")
}

/// Every `.json` file directly in `dir`, sorted, or `None` if the folder is absent.
pub fn json_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Some(files)
}

/// The stem of a file's name (`find` of `find.json`).
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `Ok(())` as a pass, an error as a failure.
impl From<Result<(), String>> for Outcome {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        }
    }
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The outcome of one case.
#[derive(Debug)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// Counts cases and remembers failures and skips.
#[derive(Debug)]
pub struct Report {
    filter: Option<String>,
    pub passed: usize,
    pub failed: Vec<(String, String)>,
    pub skipped: Vec<(String, String)>,
    pub absent: Vec<String>,
}

impl Report {
    pub fn new(filter: Option<String>) -> Self {
        Report {
            filter,
            passed: 0,
            failed: Vec::new(),
            skipped: Vec::new(),
            absent: Vec::new(),
        }
    }

    /// Whether a case named `name` is selected by the command-line filter.
    pub fn selected(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Records that a suite folder is absent under the root.
    pub fn absent(&mut self, suite: &str, dir: &Path) {
        println!("suite {suite}: absent ({})", dir.display());
        self.absent.push(suite.to_string());
    }

    /// Runs one case (catching panics, which count as failures) and records its outcome.
    pub fn case(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        if !self.selected(name) {
            return;
        }
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                Outcome::Fail(format!("panicked: {msg}"))
            });
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail(why) => self.failed.push((name.to_string(), why)),
            Outcome::Skip(why) => self.skipped.push((name.to_string(), why)),
        }
    }

    /// The `.json` files directly in `dir` with their stems, sorted; none when the folder is
    /// absent, which is recorded against `suite`.
    pub fn files(&mut self, suite: &str, dir: &Path) -> Vec<(String, PathBuf)> {
        match json_files(dir) {
            Some(files) => files.into_iter().map(|p| (stem(&p), p)).collect(),
            None => {
                self.absent(suite, dir);
                Vec::new()
            }
        }
    }

    /// Runs the case `name`: skipped with its reason when `skips` names it, else checked by
    /// `check`.
    pub fn check(&mut self, name: &str, skips: &[(&str, &str)], check: impl FnOnce() -> Outcome) {
        match skip_reason(skips, name) {
            Some(why) => self.case(name, || Outcome::Skip(why)),
            None => self.case(name, check),
        }
    }

    /// Runs every case of the files in `dir` that hold `{"tests": [{"description": ...}, ...]}`
    /// (the connection string, URI options and auth formats): each case is named
    /// `suite/file/description` and checked by `check`, unless `skips` names it. A file that
    /// does not parse is one failed case.
    pub fn described_tests(
        &mut self,
        suite: &str,
        dir: &Path,
        skips: &[(&str, &str)],
        check: impl Fn(&serde_json::Value) -> Outcome,
    ) {
        for (stem, file) in self.files(suite, dir) {
            let doc = match read_json(&file) {
                Ok(d) => d,
                Err(e) => {
                    self.case(&format!("{suite}/{stem}"), || Outcome::Fail(e));
                    continue;
                }
            };
            for t in doc["tests"].as_array().into_iter().flatten() {
                let desc = t["description"].as_str().unwrap_or("?");
                self.check(&format!("{suite}/{stem}/{desc}"), skips, || check(t));
            }
        }
    }

    /// Prints the skips, the failures and the summary line; exits non-zero on any failure, and
    /// under CI (`CI` set) on any absent suite folder.
    pub fn finish(self) {
        for (name, why) in &self.skipped {
            println!("SKIP {name}: {why}");
        }
        for (name, why) in &self.failed {
            println!("FAIL {name}: {why}");
        }
        println!(
            "{} passed, {} failed, {} skipped",
            self.passed,
            self.failed.len(),
            self.skipped.len()
        );
        if !self.failed.is_empty() {
            std::process::exit(1);
        }
        if !self.absent.is_empty() && std::env::var_os("CI").is_some() {
            println!(
                "absent under CI: {} (set ANYMONGO_SPECS to the specs root)",
                self.absent.join(", ")
            );
            std::process::exit(1);
        }
    }
}

/// Looks `name` up in a suite's skip table: `(substring of the case name, reason)`.
pub fn skip_reason(skips: &[(&str, &str)], name: &str) -> Option<String> {
    skips
        .iter()
        .find(|(pat, _)| name.contains(pat))
        .map(|(_, why)| why.to_string())
}
