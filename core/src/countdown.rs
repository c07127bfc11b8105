//! Countdown: a count of unfinished things that waiters park on until it
//! reaches zero (JoinableQueue's `task_done`/`join`).
//!
//! Memory orderings: `count` and `waiters` form a Dekker pair, as in
//! `semaphore.rs`: the decrementer reads `waiters` with an RMW.

use crate::park::{Deadline, Park};
use crate::sync::{AtomicU32, Ordering};
use crate::Error;

/// A process-shared countdown. All zeros is zero, nobody waiting.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCountdown {
    /// Unfinished things. The futex word: waiters park while it is nonzero.
    count: AtomicU32,
    /// Waiters that may be parked or about to park.
    waiters: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawCountdown, u64);

impl RawCountdown {
    /// A count of zero.
    pub fn new() -> RawCountdown {
        RawCountdown::default()
    }

    /// The count now.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// One more unfinished thing; `Overflow` at `u32::MAX`.
    pub fn increment(&self) -> Result<(), Error> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| c.checked_add(1))
            .map(drop)
            .map_err(|_| Error::Overflow)
    }

    /// One fewer; wakes the waiters when it reaches zero. `NotLocked` (Python's
    /// "task_done() called too many times") if it is zero already.
    pub fn decrement<P: Park>(&self, park: &P) -> Result<(), Error> {
        // SYNC POINT: work done before task_done visible to join's Acquire.
        let before = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| c.checked_sub(1))
            .map_err(|_| Error::NotLocked)?;
        if before == 1 && self.waiters.fetch_add(0, Ordering::SeqCst) > 0 {
            park.wake_all(&self.count);
        }
        Ok(())
    }

    /// Waits until the count is zero; `false` if `deadline` passed first.
    pub fn wait_zero<P: Park>(&self, park: &P, deadline: Deadline) -> bool {
        // SYNC POINT: work done before task_done visible to join's Acquire.
        if self.count.load(Ordering::Acquire) == 0 {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let done = loop {
            let count = self.count.load(Ordering::SeqCst);
            if count == 0 {
                break true;
            }
            let Some(remaining) = deadline.remaining(park) else {
                break false;
            };
            park.wait(&self.count, count, remaining);
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        done
    }
}
