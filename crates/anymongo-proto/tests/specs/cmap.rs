//! connection-monitoring-and-pooling/tests/cmap-format against the sans-IO pool machine
//! ("cmap/<file>/machine"). `anymongo-core`'s spec runner plays the same files against the async
//! pool that drives this machine, on a virtual-time runtime and on OS threads.

use std::path::Path;

use anymongo_proto::testing::{run_cmap_format_machine, skip_reason, CmapFormatTest};

use anymongo_proto::testing::specs::{self as common, Outcome, Report};

/// (case-name substring, reason). Files that need a live server are skipped by
/// `skip_reason` (their `style`/`failPoint`), each with its reason; nothing else is skipped.
const SKIPS: &[(&str, &str)] = &[];

pub fn run(root: &Path, report: &mut Report) {
    let dir = root.join("connection-monitoring-and-pooling/tests/cmap-format");
    let Some(files) = common::json_files(&dir) else {
        report.absent("cmap", &dir);
        return;
    };
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed: Result<CmapFormatTest, String> = common::read_json(&file)
            .and_then(|v| serde_json::from_value(v).map_err(|e| format!("{stem}: {e}")));
        let name = format!("cmap/{stem}/machine");
        {
            report.case(&name, || {
                let test = match parsed {
                    Ok(t) => t,
                    Err(e) => return Outcome::Fail(e),
                };
                if let Some(why) = common::skip_reason(SKIPS, &name).or_else(|| skip_reason(&test))
                {
                    return Outcome::Skip(why);
                }
                match run_cmap_format_machine(&test) {
                    Ok(()) => Outcome::Pass,
                    Err(e) => Outcome::Fail(e),
                }
            });
        }
    }
}
