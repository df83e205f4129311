//! The spec suites that need the async layer. `anymongo-proto`'s runner plays every suite that
//! needs no I/O against the machines; this one plays
//! connection-monitoring-and-pooling/tests/cmap-format against the async pool that drives the
//! pool machine: on the virtual-time runtime ("cmap/<file>/async") and on a real-time runtime
//! made of OS threads ("cmap/<file>/threads"; real concurrency between the pool's tasks and the
//! test's threads). Run one with `cargo test -p anymongo-core --test specs -- <filter>`.

use std::path::Path;
use std::sync::Arc;

use anymongo_core::proto::testing::specs::{self as common, Outcome, Report};
use anymongo_core::testing::{
    run_cmap_format_async, skip_reason, CmapFormatTest, ThreadRuntime, VirtualRuntime,
};

/// (case-name substring, reason). Files that need a live server are skipped by
/// `skip_reason` (their `style`/`failPoint`), each with its reason; nothing else is skipped.
const SKIPS: &[(&str, &str)] = &[];

fn main() {
    let root = common::specs_root();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut report = Report::new(filter);
    println!("spec root: {}", root.display());
    run(&root, &mut report);
    report.finish();
}

fn run(root: &Path, report: &mut Report) {
    let dir = root.join("connection-monitoring-and-pooling/tests/cmap-format");
    for (stem, file) in report.files("cmap", &dir) {
        let parsed = CmapFormatTest::load(&file);
        for runner in ["async", "threads"] {
            let name = format!("cmap/{stem}/{runner}");
            report.check(&name, SKIPS, || {
                let test = match &parsed {
                    Ok(t) => t,
                    Err(e) => return Outcome::Fail(e.clone()),
                };
                if let Some(why) = skip_reason(test) {
                    return Outcome::Skip(why);
                }
                let result = match runner {
                    "async" => {
                        let rt = VirtualRuntime::new();
                        rt.block_on(run_cmap_format_async(Arc::new(rt.clone()), test))
                            .unwrap_or_else(|| Err("the test deadlocked".into()))
                    }
                    _ => futures::executor::block_on(run_cmap_format_async(
                        Arc::new(ThreadRuntime),
                        test,
                    )),
                };
                result.into()
            });
        }
    }
}
