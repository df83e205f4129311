//! Max staleness spec tests: `max-staleness/tests/<TopologyType>/*.json`, run with the server
//! selection logic runner.

use std::path::Path;

use crate::server_selection::{json_files_recursive, run_selection_file};
use anymongo_proto::testing::specs::Report;

/// Skipped cases: (substring of the case name, reason).
pub const SKIPS: &[(&str, &str)] = &[];

/// Runs the max staleness suite.
pub fn run(root: &Path, report: &mut Report) {
    let dir = root.join("max-staleness/tests");
    if !dir.is_dir() {
        report.absent("max-staleness", &dir);
        return;
    }
    for p in json_files_recursive(&dir) {
        let rel = p.strip_prefix(&dir).unwrap_or(&p).with_extension("");
        let name = format!("max-staleness/{}", rel.display());
        report.check(&name, SKIPS, || run_selection_file(&p));
    }
}
