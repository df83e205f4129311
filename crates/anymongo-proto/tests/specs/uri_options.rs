//! URI Options spec tests (`uri-options/tests/*.json`): the connection string format, with
//! `hosts` and `auth` always null. Optional options (TLS revocation/OCSP knobs,
//! `serverSelectionTryOnce`) are all parsed, so nothing is skipped.

use std::path::Path;

use crate::connection_string;
use anymongo_proto::testing::specs::Report;

/// No case is skipped.
const SKIPS: &[(&str, &str)] = &[];

pub fn run(root: &Path, report: &mut Report) {
    connection_string::run_dir(
        root,
        report,
        "uri-options",
        &root.join("uri-options/tests"),
        SKIPS,
    );
}
