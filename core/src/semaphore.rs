//! Semaphore and BoundedSemaphore: a counter that `acquire` takes one from,
//! parking while it is 0, and a waiter count so that `release` makes a wake
//! system call only when someone is parked.
//!
//! Memory orderings: `value` and `waiters` form a Dekker pair (a waiter
//! bumps `waiters` then reads `value`; a releaser bumps `value` then reads
//! `waiters`). The releaser's read of `waiters` is an RMW (`fetch_add(0)`),
//! not a load: RMWs on one word are totally ordered, so either it sees the
//! waiter's increment and wakes it, or the waiter's increment reads from it,
//! synchronizes with the releaser, and the waiter then sees the new value.
//! This holds under acquire/release alone (loom does not model `SeqCst`
//! loads as stronger, and found the load-based version losing wake-ups).

use crate::park::{add_async_waiter, remove_async_waiter, wake_counted, Deadline, Park};
use crate::sync::{AtomicU32, Ordering, Spin};
use crate::Error;

/// Largest value a semaphore holds (Python's is unbounded; ours is a word).
pub const MAX_VALUE: u32 = i32::MAX as u32;

/// A process-shared counting semaphore. All zeros is value 0, unbounded.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawSemaphore {
    /// The count, in `0..=bound` (`0..=MAX_VALUE` when unbounded). The futex
    /// word: waiters park while it is 0.
    value: AtomicU32,
    /// Waiters that may be parked or about to park (and async ones, as
    /// [`ASYNC_WAITER`](crate::park::ASYNC_WAITER)s).
    waiters: AtomicU32,
    /// 0: unbounded; else a BoundedSemaphore's initial (and maximum) value.
    bound: AtomicU32,
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawSemaphore, [u32; 4]);

impl RawSemaphore {
    /// A semaphore holding `value` permits, without a bound.
    pub fn new(value: u32) -> RawSemaphore {
        let s = RawSemaphore::default();
        s.init(value, false);
        s
    }

    /// A semaphore holding `value` permits that refuses a release above `value`.
    pub fn new_bounded(value: u32) -> RawSemaphore {
        let s = RawSemaphore::default();
        s.init(value, true);
        s
    }

    /// Sets the initial value (and bound) of a fresh, unshared semaphore.
    pub fn init(&self, value: u32, bounded: bool) {
        self.value.store(value, Ordering::Relaxed);
        self.bound.store(if bounded { value } else { 0 }, Ordering::Relaxed);
    }

    /// The bound of a BoundedSemaphore, `None` if unbounded.
    pub fn bound(&self) -> Option<u32> {
        match self.bound.load(Ordering::Relaxed) {
            0 => None,
            b => Some(b),
        }
    }

    /// The current value (Python's `get_value`).
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// Takes one if the value is positive, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut value = self.value.load(Ordering::Relaxed);
        while value > 0 {
            // SYNC POINT: releaser's writes visible to the acquirer.
            match self.value.compare_exchange_weak(
                value,
                value - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => value = now,
            }
        }
        false
    }

    /// Takes one, waiting until `deadline` for the value to become positive.
    #[inline]
    pub fn acquire<P: Park>(&self, park: &P, deadline: Deadline) -> Result<(), Error> {
        if self.try_acquire() {
            return Ok(());
        }
        self.acquire_contended(park, deadline)
    }

    #[cold]
    fn acquire_contended<P: Park>(&self, park: &P, deadline: Deadline) -> Result<(), Error> {
        let mut spin = Spin::new();
        while spin.step(park) {
            if self.try_acquire() {
                return Ok(());
            }
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.value.load(Ordering::SeqCst) > 0 {
                if self.try_acquire() {
                    break Ok(());
                }
                continue;
            }
            let Some(remaining) = deadline.remaining(park) else {
                break Err(Error::Timeout);
            };
            park.wait(&self.value, 0, remaining);
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Adds one and wakes a waiter if any may be parked. A bounded semaphore
    /// refuses to pass its bound (`AboveBound`), an unbounded one
    /// [`MAX_VALUE`] (`Overflow`).
    #[inline]
    pub fn release<P: Park>(&self, park: &P) -> Result<(), Error> {
        let (limit, err) = match self.bound() {
            Some(bound) => (bound, Error::AboveBound),
            None => (MAX_VALUE, Error::Overflow),
        };
        let mut value = self.value.load(Ordering::Relaxed);
        loop {
            if value >= limit {
                return Err(err);
            }
            // SYNC POINT: releaser's writes visible to the acquirer.
            match self.value.compare_exchange_weak(
                value,
                value + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => value = now,
            }
        }
        let waiters = self.waiters.fetch_add(0, Ordering::SeqCst);
        if waiters > 0 {
            wake_counted(park, &self.value, waiters, false);
        }
        Ok(())
    }

    /// Registers an async waiter: a release from here on calls
    /// [`Park::notify_async`]. The caller then tries
    /// [`try_acquire`](Self::try_acquire), and awaits the readiness handle
    /// only if it fails. `false` (nothing registered) if the count is full.
    ///
    /// A release wakes one parked thread *and* notifies every async waiter:
    /// of those that try, one takes the permit and the others await again.
    pub fn register_async(&self) -> bool {
        add_async_waiter(&self.waiters)
    }

    /// Unregisters what [`register_async`](Self::register_async) registered.
    pub fn unregister_async(&self) {
        remove_async_waiter(&self.waiters);
    }
}
