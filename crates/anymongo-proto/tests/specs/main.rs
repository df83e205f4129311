//! Runs the MongoDB specification JSON suites that need no server.
//!
//! The root is `$ANYMONGO_SPECS`, or `../shared/specs` relative to the repository root. Every case
//! is counted; a suite folder that is absent is reported (and fails the run under `CI`). Skips
//! are listed, each with its reason, in the suite modules' `SKIPS` tables.
//!
//! Run one suite with
//! `cargo test -p anymongo-proto --features test-support --test specs -- <filter>`, where the
//! filter is matched against "suite/file/case".

mod auth;
mod cmap;

mod connection_string;
mod max_staleness;
mod sdam;
mod server_selection;
mod uri_options;
mod wire_bson_corpus;

use anymongo_proto::testing::specs::{self as common, Report};

fn main() {
    let root = common::specs_root();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut report = Report::new(filter);
    println!("spec root: {}", root.display());

    // Each suite module adds itself here.
    wire_bson_corpus::run(&root, &mut report);
    connection_string::run(&root, &mut report);
    uri_options::run(&root, &mut report);
    auth::run(&root, &mut report);
    sdam::run(&root, &mut report);
    server_selection::run(&root, &mut report);
    max_staleness::run(&root, &mut report);
    cmap::run(&root, &mut report);

    report.finish();
}
