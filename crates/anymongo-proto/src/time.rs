//! Deadlines. The machines never read a clock: every `Instant` they see is an argument, and the
//! deadlines they compute from it are clamped here so that no duration overflows an `Instant`.

use std::time::{Duration, Instant};

/// The longest a single wait is planned for. Longer waits are clamped to this, so that
/// `Duration::MAX` never overflows an `Instant` or panics inside a runtime's timer.
pub const MAX_SLEEP: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// `now + dur`, clamped so it never overflows.
pub fn deadline_after(now: Instant, dur: Duration) -> Instant {
    let dur = dur.min(MAX_SLEEP);
    now.checked_add(dur)
        .unwrap_or(now + Duration::from_secs(60 * 60 * 24))
}
