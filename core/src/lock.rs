//! Lock: a futex mutex whose word names its owner, so that a waiter can tell
//! when the owner died and take the lock over (after std's
//! `sys/sync/mutex/futex.rs`, with the owner id in place of its `1`).
//!
//! Waiters count themselves in `waiters` rather than in a bit of `state`, so
//! that a release is a plain store: the releaser stores 0, then (behind
//! [`Park::light_barrier`]) reads `waiters` and wakes one if any; a waiter
//! counts itself, runs [`Park::heavy_barrier`], and looks at `state` again
//! before it parks (Dekker). An uncontended acquire and release is then one
//! CAS and two stores, where a swap-released futex lock pays a second RMW.
//!
//! Memory orderings: acquiring is `Acquire` and releasing is `Release` on
//! `state`, which orders the critical sections. `owner` is written only by
//! the holder, cleared before release, and read after an `Acquire` load of
//! `state`; its `id` half tells a reader whether it belongs to that holding.

use crate::park::{
    add_async_waiter, park_slice, remove_async_waiter, wake_counted, Deadline, Liveness, Park,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering, Spin};
use crate::{Acquired, Error};

/// Bit 31 of `state`: reserved (it once marked parked waiters, now counted
/// in `waiters`); ignored when set.
pub const PARKED: u32 = 1 << 31;
/// Bits 0..30 of `state`: the holder's task id; 0 when unlocked.
pub const ID_MASK: u32 = (1 << 30) - 1;

/// Who takes a lock: a task id (pid for [`RawLock`], thread id for an RLock)
/// and a stamp of that task's start time, so a reused id is not mistaken for
/// the owner that died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// In `1..=ID_MASK`.
    pub id: u32,
    /// Start-time stamp; never 0 (0 means "unknown" in [`Liveness`]).
    pub stamp: u32,
}

impl Owner {
    /// As an owner word stores it: `id << 32 | stamp`.
    #[inline]
    pub(crate) fn packed(self) -> u64 {
        (u64::from(self.id) << 32) | u64::from(self.stamp)
    }

    /// The owner an owner word names (0: none, which no task is).
    #[inline]
    pub(crate) fn unpacked(word: u64) -> Owner {
        Owner { id: (word >> 32) as u32, stamp: word as u32 }
    }
}

#[inline]
fn holder(state: u32) -> u32 {
    state & ID_MASK
}

#[inline]
fn is_unlocked(state: u32) -> bool {
    holder(state) == 0
}

/// A process-shared lock. All zeros is unlocked.
///
/// Cross-process properties: any process mapping it may lock and unlock it
/// (as Python's `Lock`, the unlocker need not be the locker); a holder that
/// dies is detected by waiters within about [`Liveness::CHECK_INTERVAL`].
#[repr(C)]
#[derive(Debug)]
pub struct RawLock {
    /// | state     | meaning                                     |
    /// |-----------|---------------------------------------------|
    /// | `0`       | unlocked                                    |
    /// | `id`      | held by task `id`                           |
    ///
    /// Bits 30 and 31 are reserved and ignored.
    state: AtomicU32,
    /// Waiters counted before they park (wrapping; a corrupted count only
    /// costs a wake-up system call per release), and async ones, as
    /// [`ASYNC_WAITER`](crate::park::ASYNC_WAITER)s.
    waiters: AtomicU32,
    /// `id << 32 | stamp` of the holder, or 0 while the lock changes hands
    /// (just taken, about to be released). Owner-written only.
    owner: AtomicU64,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawLock, [u64; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(RawLock, AtomicU64);

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    /// An unlocked lock (for in-process use and tests; shared ones start as
    /// zeroed memory).
    pub fn new() -> RawLock {
        RawLock { state: AtomicU32::new(0), waiters: AtomicU32::new(0), owner: AtomicU64::new(0) }
    }

    /// Takes the lock if it is free. Never parks, never checks the owner.
    #[inline]
    pub fn try_lock(&self, me: Owner) -> bool {
        let ok =
            self.state.compare_exchange(0, me.id, Ordering::Acquire, Ordering::Relaxed).is_ok();
        if ok {
            self.set_owner(me);
        }
        ok
    }

    /// Takes the lock, waiting until `deadline`. An owner found dead is
    /// replaced, and the result says so.
    #[inline]
    pub fn lock<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        deadline: Deadline,
    ) -> Result<Acquired, Error> {
        if self.try_lock(me) {
            return Ok(Acquired::Clean);
        }
        self.lock_contended(os, me, deadline)
    }

    /// Releases the lock, whoever holds it (Python's `Lock.release`).
    #[inline]
    pub fn unlock<P: Park>(&self, park: &P) -> Result<(), Error> {
        if is_unlocked(self.state.load(Ordering::Relaxed)) {
            return Err(Error::NotLocked);
        }
        self.owner.store(0, Ordering::Relaxed);
        // SYNC POINT: critical section visible to the next holder's Acquire.
        self.state.store(0, Ordering::Release);
        // SYNC POINT: the releaser's half of the Dekker pair with a waiter's
        // count and heavy barrier (module docs).
        park.light_barrier();
        let waiters = self.waiters.load(Ordering::Relaxed);
        if waiters != 0 {
            wake_counted(park, &self.state, waiters, false);
        }
        Ok(())
    }

    /// Registers an async waiter: a release from here on calls
    /// [`Park::notify_async`]. The caller then tries
    /// [`try_lock`](Self::try_lock) (or [`recover`](Self::recover)), and
    /// awaits the readiness handle only if it fails. `false` (nothing
    /// registered) if the count is full.
    pub fn register_async<P: Park>(&self, park: &P) -> bool {
        let added = add_async_waiter(&self.waiters);
        // SYNC POINT: the waiter's half of the Dekker pair with `unlock`.
        park.heavy_barrier();
        added
    }

    /// Unregisters what [`register_async`](Self::register_async) registered.
    pub fn unregister_async(&self) {
        remove_async_waiter(&self.waiters);
    }

    /// Takes the lock if it is free, or if its holder is dead (what a
    /// blocking waiter finds at its periodic check): for an async waiter,
    /// which calls it when its own check is due. `in_transition` is the
    /// waiter's, kept across calls (see `take_from_dead`).
    pub fn recover<L: Liveness>(
        &self,
        os: &L,
        me: Owner,
        in_transition: &mut u32,
    ) -> Option<Acquired> {
        if self.try_lock(me) {
            return Some(Acquired::Clean);
        }
        let state = self.state.load(Ordering::Acquire);
        if is_unlocked(state) {
            return None;
        }
        self.take_from_dead(os, me, state, in_transition).then_some(Acquired::OwnerDied)
    }

    /// Whether some waiter may be parked on it.
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) != 0
    }

    /// Whether some task holds it.
    pub fn is_locked(&self) -> bool {
        !is_unlocked(self.state.load(Ordering::Relaxed))
    }

    /// Whether `me` holds it (same id and stamp).
    pub fn is_held_by(&self, me: Owner) -> bool {
        holder(self.state.load(Ordering::Relaxed)) == me.id
            && self.owner.load(Ordering::Relaxed) == me.packed()
    }

    #[inline]
    fn set_owner(&self, me: Owner) {
        self.owner.store(me.packed(), Ordering::Relaxed);
    }

    /// Spins while the lock is held, without writing.
    fn spin<P: Park>(&self, park: &P) -> u32 {
        let mut spin = Spin::new();
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if is_unlocked(state) || !spin.step(park) {
                return state;
            }
        }
    }

    #[cold]
    fn lock_contended<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        deadline: Deadline,
    ) -> Result<Acquired, Error> {
        let mut state = self.state.load(Ordering::Relaxed);
        let mut last_check = os.now();
        let mut in_transition = 0u32;
        loop {
            if is_unlocked(state) {
                // SYNC POINT: critical section visible to the next holder's Acquire.
                match self.state.compare_exchange(
                    state,
                    me.id,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.set_owner(me);
                        return Ok(Acquired::Clean);
                    }
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            // Spin again after every lost race: parking costs the waiter a
            // heavy barrier (a system call), which a holder about to
            // release is not worth.
            state = self.spin(os);
            if is_unlocked(state) {
                continue;
            }
            if deadline.passed(os) {
                return Err(Error::Timeout);
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // SYNC POINT: the waiter's half of the Dekker pair with `unlock`.
            os.heavy_barrier();
            let now = self.state.load(Ordering::Relaxed);
            let parked = now != state || park_slice(os, &self.state, state, deadline);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if !parked {
                return Err(Error::Timeout);
            }
            let now = self.state.load(Ordering::Acquire);
            if O::CHECKS
                && !is_unlocked(now)
                && now == state
                && os.now().saturating_sub(last_check) >= O::CHECK_INTERVAL
            {
                last_check = os.now();
                if self.take_from_dead(os, me, now, &mut in_transition) {
                    return Ok(Acquired::OwnerDied);
                }
            }
            state = self.state.load(Ordering::Relaxed);
        }
    }

    /// Takes the lock if its holder (as of `state`, loaded with `Acquire`) is
    /// dead. `in_transition` counts checks that found `owner` not yet
    /// written: after a few, only the id's existence is checked, since a
    /// holder can die between taking the lock and writing `owner`.
    fn take_from_dead<L: Liveness>(
        &self,
        os: &L,
        me: Owner,
        state: u32,
        in_transition: &mut u32,
    ) -> bool {
        let id = holder(state);
        let owner = self.owner.load(Ordering::Relaxed);
        let recorded = Owner::unpacked(owner);
        let stamp = if recorded.id == id {
            *in_transition = 0;
            recorded.stamp
        } else {
            *in_transition += 1;
            if *in_transition < 3 {
                return false;
            }
            0
        };
        if os.is_alive(id, stamp) {
            return false;
        }
        let taken =
            self.state.compare_exchange(state, me.id, Ordering::Acquire, Ordering::Relaxed).is_ok();
        if taken {
            self.set_owner(me);
        }
        taken
    }
}
