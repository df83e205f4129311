//! Spec-test support shared by the test crates (feature `test-support`): the cmap-format test
//! files and their checks, and the runner that plays them against the sans-IO pool machine on a
//! virtual clock; and [`specs`], the spec runners' common plumbing. The async runner, which plays them against the pool task on a runtime, lives
//! in `anymongo-core`'s `test-support`.

mod cmap_format;
mod cmap_machine;
pub mod fuzz;
pub mod specs;

pub use cmap_format::{
    check_outcome, classify_error, classify_failure, count_events, event_to_document, matches,
    skip_reason, CmapFormatTest, Op, TestError, TestOperation, TestPoolOptions,
    DEFAULT_WAIT_FOR_EVENT,
};
pub use cmap_machine::run_cmap_format_machine;
