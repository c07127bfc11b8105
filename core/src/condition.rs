//! Condition: a sequence word that notifiers bump and waiters park on
//! (std's `sys/sync/condvar/futex.rs`), plus a waiter count so a notify with
//! nobody waiting makes no system call. The lock is the caller's: a waiter
//! calls [`begin_wait`](RawCondition::begin_wait) holding it, releases it,
//! calls [`wait`](RawCondition::wait), and takes it again.
//!
//! A waiter may return without being notified (spuriously, or because a
//! notify meant for one waiter reached two that were about to park); as with
//! Python's `Condition`, check the predicate in a loop (`wait_for`).
//! Memory orderings: `begin_wait` and `notify` run under the caller's lock,
//! which orders them; `seq` changes are `Release`/`Acquire` for waiters that
//! return without the lock's help.

use crate::park::{Deadline, Park};
use crate::sync::{AtomicU32, Ordering};

/// A process-shared condition variable. All zeros is "nobody waiting".
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCondition {
    /// Bumped (wrapping) by every notify that finds a waiter. The futex word.
    seq: AtomicU32,
    /// Waiters between `begin_wait` and the end of `wait`.
    waiters: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawCondition, u64);

impl RawCondition {
    /// A condition with no waiters.
    pub fn new() -> RawCondition {
        RawCondition::default()
    }

    /// Registers a waiter; call holding the lock. Returns the token for
    /// [`wait`](Self::wait).
    pub fn begin_wait(&self) -> u32 {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.seq.load(Ordering::SeqCst)
    }

    /// Parks until a notify after `token`'s `begin_wait`, or `deadline`;
    /// call without the lock. `false` when the deadline passed.
    pub fn wait<P: Park>(&self, park: &P, token: u32, deadline: Deadline) -> bool {
        let notified = loop {
            // SYNC POINT: notifier's writes visible to a waiter it released.
            if self.seq.load(Ordering::Acquire) != token {
                break true;
            }
            let Some(remaining) = deadline.remaining(park) else {
                break false;
            };
            park.wait(&self.seq, token, remaining);
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        notified
    }

    /// Wakes up to `n` waiters; call holding the lock.
    pub fn notify<P: Park>(&self, park: &P, n: u32) {
        let waiters = self.waiters.load(Ordering::SeqCst);
        if waiters == 0 || n == 0 {
            return;
        }
        // SYNC POINT: notifier's writes visible to a waiter it released.
        self.seq.fetch_add(1, Ordering::SeqCst);
        if n >= waiters {
            park.wake_all(&self.seq);
        } else {
            for _ in 0..n {
                park.wake_one(&self.seq);
            }
        }
    }

    /// Wakes every waiter; call holding the lock.
    pub fn notify_all<P: Park>(&self, park: &P) {
        self.notify(park, u32::MAX);
    }

    /// Waiters registered now (a snapshot).
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}
