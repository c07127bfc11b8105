//! Event: a flag that `wait` parks on until it is set.
//!
//! The word counts sets, so a waiter that was parked while the flag was set
//! and cleared again still returns `true`, as Python's `Event.wait` does.
//! Memory orderings: `word` and `waiters` form a Dekker pair; see
//! `semaphore.rs` for why the waker reads `waiters` with an RMW.

use crate::park::{add_async_waiter, remove_async_waiter, wake_counted, Deadline, Park};
use crate::sync::{spin_loop, AtomicU32, Ordering, SpinBudget};

/// Bit 0 of the word: the flag.
const SET: u32 = 1;
/// Bits 1..32: how many times the flag went from clear to set (wrapping).
const GENERATION_ONE: u32 = 2;

#[inline]
fn is_set(word: u32) -> bool {
    word & SET != 0
}

/// A process-shared event. All zeros is clear.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    /// `generation << 1 | set`. The futex word: waiters park while it
    /// holds the value they saw clear.
    word: AtomicU32,
    /// Waiters that may be parked or about to park (and async ones, as
    /// [`ASYNC_WAITER`](crate::park::ASYNC_WAITER)s).
    waiters: AtomicU32,
    /// How long a waiter spins before it parks ([`SpinBudget::to_bits`]),
    /// learnt from recent waits: a hint, any value is safe.
    spin: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawEvent, [u32; 3]);

impl RawEvent {
    /// An event that is not set.
    pub fn new() -> RawEvent {
        RawEvent::default()
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        is_set(self.word.load(Ordering::Acquire))
    }

    /// Sets the flag and wakes every waiter.
    pub fn set<P: Park>(&self, park: &P) {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if is_set(word) {
                // Already set: whoever set it woke the waiters then.
                break;
            }
            let next = word.wrapping_add(GENERATION_ONE) | SET;
            // SYNC POINT: setter's writes visible to whoever sees the flag.
            match self.word.compare_exchange_weak(word, next, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => {
                    let waiters = self.waiters.fetch_add(0, Ordering::SeqCst);
                    if waiters > 0 {
                        wake_counted(park, &self.word, waiters, true);
                    }
                    return;
                }
                Err(now) => word = now,
            }
        }
    }

    /// What an async wait starts from: a `set` after this is seen by
    /// [`fired_since`](Self::fired_since) even if the flag was cleared again.
    pub fn snapshot(&self) -> u32 {
        // SYNC POINT: setter's writes visible to whoever sees the flag.
        self.word.load(Ordering::Acquire)
    }

    /// Whether the flag is set, or was set since `start` (a [`snapshot`](Self::snapshot)).
    pub fn fired_since(&self, start: u32) -> bool {
        let word = self.word.load(Ordering::SeqCst);
        is_set(word) || word != start
    }

    /// Registers an async waiter: a `set` from here on calls
    /// [`Park::notify_async`]. The caller then checks
    /// [`fired_since`](Self::fired_since), and awaits the readiness handle
    /// only if it is `false`. `false` (nothing registered) if the count is
    /// full.
    pub fn register_async(&self) -> bool {
        add_async_waiter(&self.waiters)
    }

    /// Unregisters what [`register_async`](Self::register_async) registered.
    pub fn unregister_async(&self) {
        remove_async_waiter(&self.waiters);
    }

    /// How many async waiters are registered now (for tests).
    pub fn async_waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed) / crate::park::ASYNC_WAITER
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Release);
    }

    /// Waits until the flag is set, or was set since the call began; `false`
    /// if `deadline` passed first.
    pub fn wait<P: Park>(&self, park: &P, deadline: Deadline) -> bool {
        // SYNC POINT: setter's writes visible to whoever sees the flag.
        let start = self.word.load(Ordering::Acquire);
        if is_set(start) {
            return true;
        }
        self.wait_contended(park, deadline, start)
    }

    #[cold]
    fn wait_contended<P: Park>(&self, park: &P, deadline: Deadline, start: u32) -> bool {
        let fired = |word: u32| is_set(word) || word != start;
        let mut budget = SpinBudget::from_bits(self.spin.load(Ordering::Relaxed));
        let pauses = if deadline.passed(park) { 0 } else { budget.pauses() };
        let spun = (1..=pauses).find(|_| {
            spin_loop();
            fired(self.word.load(Ordering::Acquire))
        });
        if pauses > 0 {
            budget.learn(spun.unwrap_or(pauses), spun.is_none());
            self.spin.store(budget.to_bits(), Ordering::Relaxed);
        }
        if spun.is_some() {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            let word = self.word.load(Ordering::SeqCst);
            if fired(word) {
                break true;
            }
            let Some(remaining) = deadline.remaining(park) else {
                break false;
            };
            park.wait(&self.word, word, remaining);
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}
