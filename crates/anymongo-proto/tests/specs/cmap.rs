//! connection-monitoring-and-pooling/tests/cmap-format against the sans-IO pool machine
//! ("cmap/<file>/machine"). `anymongo-core`'s spec runner plays the same files against the async
//! pool that drives this machine, on a virtual-time runtime and on OS threads.

use std::path::Path;

use anymongo_proto::testing::{run_cmap_format_machine, skip_reason, CmapFormatTest};

use anymongo_proto::testing::specs::{Outcome, Report};

/// (case-name substring, reason). Files that need a live server are skipped by
/// `skip_reason` (their `style`/`failPoint`), each with its reason; nothing else is skipped.
const SKIPS: &[(&str, &str)] = &[];

pub fn run(root: &Path, report: &mut Report) {
    let dir = root.join("connection-monitoring-and-pooling/tests/cmap-format");
    for (stem, file) in report.files("cmap", &dir) {
        let name = format!("cmap/{stem}/machine");
        report.check(&name, SKIPS, || {
            let test = match CmapFormatTest::load(&file) {
                Ok(t) => t,
                Err(e) => return Outcome::Fail(e),
            };
            match skip_reason(&test) {
                Some(why) => Outcome::Skip(why),
                None => run_cmap_format_machine(&test).into(),
            }
        });
    }
}
