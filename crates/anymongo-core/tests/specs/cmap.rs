//! connection-monitoring-and-pooling/tests/cmap-format: every file runs three times: against the
//! sans-IO pool machine ("<file>/machine"), against the async pool on the virtual-time runtime
//! ("<file>/async"), and against the async pool on a real-time runtime made of OS threads
//! ("<file>/threads"; real concurrency between the pool's tasks and the test's threads).

use std::path::Path;
use std::sync::Arc;

use anymongo_core::cmap::testing::{
    run_cmap_format_async, run_cmap_format_machine, skip_reason, CmapFormatTest, ThreadRuntime,
    VirtualRuntime,
};

use crate::common::{self, Outcome, Report};

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
        for runner in ["machine", "async", "threads"] {
            let name = format!("cmap/{stem}/{runner}");
            let parsed = parsed.clone();
            report.case(&name, || {
                let test = match parsed {
                    Ok(t) => t,
                    Err(e) => return Outcome::Fail(e),
                };
                if let Some(why) = common::skip_reason(SKIPS, &name).or_else(|| skip_reason(&test))
                {
                    return Outcome::Skip(why);
                }
                let result = match runner {
                    "machine" => run_cmap_format_machine(&test),
                    "async" => {
                        let rt = VirtualRuntime::new();
                        rt.block_on(run_cmap_format_async(Arc::new(rt.clone()), &test))
                            .unwrap_or_else(|| Err("the test deadlocked".into()))
                    }
                    _ => futures::executor::block_on(run_cmap_format_async(
                        Arc::new(ThreadRuntime),
                        &test,
                    )),
                };
                match result {
                    Ok(()) => Outcome::Pass,
                    Err(e) => Outcome::Fail(e),
                }
            });
        }
    }
}
