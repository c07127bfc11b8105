//! Deadlines from callers' durations.

use std::time::{Duration, Instant};

/// The moment `timeout` from now, or `None` (no deadline) when that is
/// past what the clock can hold: `Duration::MAX` means "wait as long as it
/// takes", not a panic.
#[cfg_attr(not(mp_transfer), allow(dead_code))]
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
