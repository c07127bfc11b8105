//! BiasedLock: a [`RawLock`] that the thread which last took it alone keeps
//! *biased* to itself, so that its next acquisitions and releases are plain
//! loads and stores, with no read-modify-write. A channel's send and
//! receive sides use it: with one producer and one consumer (the common
//! case) each side is taken by one thread over and over, and every locked
//! instruction on that path waits for the stores before it, which, on a
//! ring whose lines the other side is reading, are cache misses.
//!
//! # States
//! | `bias`  | `slots[i].busy` of the biased slot | meaning                          |
//! |---------|------------------------------------|----------------------------------|
//! | 0       | (any slot may be 1 for a moment)   | no bias: `lock` alone decides    |
//! | `i + 1` | 0                                  | biased to slot `i`'s thread, idle |
//! | `i + 1` | 1                                  | that thread is inside            |
//!
//! The lock is held by whoever holds `lock`, or by the biased thread while
//! its `busy` is 1 and `bias` still names its slot.
//!
//! # Protocol
//! - *Fast enter* (the biased thread): `busy = 1`; light barrier; if `bias`
//!   still names its slot it is inside, else `busy = 0` and the slow path.
//! - *Fast exit*: `busy = 0`; light barrier; if `bias` no longer names its
//!   slot, a revoker may be parked on `busy`: wake it.
//! - *Slow enter* (anyone else): take `lock`; if `bias` is set, clear it
//!   (a *revocation*), heavy barrier, then wait until every slot's `busy` is
//!   0. Dekker's pair (`busy`/`bias` written, the other read, across the
//!   asymmetric barrier) guarantees that the biased thread either sees the
//!   revocation or is seen inside and waited for.
//! - *Slow exit*: unless a recent revocation says threads contend (then
//!   `cooldown` slow exits must pass first), claim a slot and set `bias` to
//!   it; release `lock`.
//!
//! Only `lock`'s holder writes `bias` and `cooldown`, and only a slot's
//! owner writes its `busy` (or `lock`'s holder, reclaiming a dead owner's
//! slot). A slot per thread, rather than one `busy` word, is what makes a
//! late store harmless: a thread delayed between reading `bias` and storing
//! `busy` can only write its own slot, which no other holder uses.
//!
//! # Peers die
//! A biased thread that dies outside leaves `busy` 0: the next revoker goes
//! on at once. One that dies inside is found dead by the revoker's periodic
//! liveness check ([`Liveness::CHECK_INTERVAL`]), which then takes the lock
//! with [`Acquired::OwnerDied`]. `lock` itself handles its own dead holders.

use crate::lock::{Owner, RawLock};
use crate::park::{park_slice, Deadline, Liveness, Park};
use crate::sync::{AtomicU32, AtomicU64, Ordering, Spin};
use crate::{Acquired, Error};

/// Threads that can hold a slot at once; more simply take the slow path.
pub const SLOTS: usize = 4;

/// Slow exits after a revocation (or a failed claim) before anyone may take
/// the bias again: when threads take turns, a revocation (a `membarrier`
/// system call, ~1-2 µs) is then paid once per this many acquisitions.
pub const COOLDOWN: u32 = 1024;

/// One thread's fast-path word.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Slot {
    /// `Owner` (`id << 32 | stamp`) of the thread this slot belongs to, or 0.
    owner: AtomicU64,
    /// 1 while that thread is inside on the fast path (or trying to be).
    busy: AtomicU32,
    _reserved: AtomicU32,
}

/// See the module documentation. All zeros is unlocked, with no bias.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct BiasedLock {
    lock: RawLock,
    /// `1 + slot index` of the biased thread, or 0.
    bias: AtomicU32,
    /// Slow exits left before the bias may be taken again.
    cooldown: AtomicU32,
    _reserved: [AtomicU64; 5],
    slots: [Slot; SLOTS],
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(BiasedLock, [u8; 128]);

/// Whether the thread an owner word names still runs.
fn alive<L: Liveness>(os: &L, owner: u64) -> bool {
    let owner = Owner::unpacked(owner);
    os.is_alive(owner.id, owner.stamp)
}

impl BiasedLock {
    /// An unlocked lock with no side holding the bias.
    pub fn new() -> BiasedLock {
        BiasedLock::default()
    }

    /// Takes the lock for `me` (a thread), waiting until `deadline`.
    #[inline]
    pub fn lock<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        deadline: Deadline,
    ) -> Result<Acquired, Error> {
        if self.fast_enter(os, me) {
            return Ok(Acquired::Clean);
        }
        self.lock_slow(os, me, deadline)
    }

    /// Releases the lock `me` holds.
    #[inline]
    pub fn unlock<O: Park + Liveness>(&self, os: &O, me: Owner) -> Result<(), Error> {
        if let Some(slot) = self.slot_of(me) {
            if slot.busy.load(Ordering::Relaxed) == 1 {
                self.fast_exit(os, slot);
                return Ok(());
            }
        }
        self.unlock_slow(os, me)
    }

    /// Registers an async taker: a release from here on calls
    /// [`Park::notify_async`]. The caller then tries
    /// [`lock`](Self::lock) with a passed deadline, and awaits the
    /// readiness handle only if that times out. `false` (nothing
    /// registered) if the count is full.
    pub fn register_async<P: Park>(&self, park: &P) -> bool {
        self.lock.register_async(park)
    }

    /// Unregisters what [`register_async`](Self::register_async) registered.
    pub fn unregister_async(&self) {
        self.lock.unregister_async();
    }

    /// Takes the lock for a holder that may suspend while it holds it (an
    /// async task, which other tasks of its thread run beside): never by
    /// the fast path, and with the bias revoked, so that no thread (its
    /// own included, which the fast path would let in as "the biased
    /// thread") enters by the fast path before it releases.
    pub fn lock_suspending<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        deadline: Deadline,
    ) -> Result<Acquired, Error> {
        self.lock_slow(os, me, deadline)
    }

    /// Takes the lock without waiting if it is free or its holders are
    /// dead: what a blocking taker finds at its periodic check, for an
    /// async taker, which calls this when its own check is due (one that
    /// holds across awaits says `suspending`, as [`lock_suspending`](Self::lock_suspending)).
    /// A live holder (of `lock`, or a biased thread inside) makes it
    /// `None`, with the bias revoked, so that the biased thread's exit
    /// notifies. `in_transition` is the caller's, kept across calls.
    pub fn recover<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        suspending: bool,
        in_transition: &mut u32,
    ) -> Option<Acquired> {
        if !suspending && self.fast_enter(os, me) {
            return Some(Acquired::Clean);
        }
        let mut how = self.lock.recover(os, me, in_transition)?;
        let revoking = self.revoke();
        if revoking || how == Acquired::OwnerDied {
            // SYNC POINT: the revoker's half of the Dekker pair.
            os.heavy_barrier();
            for slot in &self.slots {
                // SYNC POINT: as in `wait_idle`.
                if slot.busy.load(Ordering::Acquire) == 0 {
                    continue;
                }
                if !alive(os, slot.owner.load(Ordering::Relaxed)) {
                    slot.busy.store(0, Ordering::Relaxed);
                    slot.owner.store(0, Ordering::Relaxed);
                    how = Acquired::OwnerDied;
                    continue;
                }
                let _ = self.lock.unlock(os);
                return None;
            }
        }
        Some(how)
    }

    fn slot_of(&self, me: Owner) -> Option<&Slot> {
        let me = me.packed();
        self.slots.iter().find(|s| s.owner.load(Ordering::Relaxed) == me)
    }

    /// The slot `bias` names, if it is `me`'s.
    fn biased_to(&self, me: Owner) -> Option<(u32, &Slot)> {
        let bias = self.bias.load(Ordering::Relaxed);
        let slot = self.slots.get((bias as usize).wrapping_sub(1))?;
        (slot.owner.load(Ordering::Relaxed) == me.packed()).then_some((bias, slot))
    }

    #[inline]
    fn fast_enter<P: Park>(&self, park: &P, me: Owner) -> bool {
        let Some((bias, slot)) = self.biased_to(me) else {
            return false;
        };
        slot.busy.store(1, Ordering::Relaxed);
        // SYNC POINT: Dekker with a revoker's store of `bias`, its heavy
        // barrier and its read of `busy`. What the previous holders wrote is
        // ours already: the bias was granted by our own slow exit, after our
        // slow enter synchronized with them through `lock`.
        park.light_barrier();
        if self.bias.load(Ordering::Acquire) == bias {
            return true;
        }
        self.fast_exit(park, slot);
        false
    }

    fn fast_exit<P: Park>(&self, park: &P, slot: &Slot) {
        // SYNC POINT: our critical section, visible to a revoker's Acquire
        // of `busy`.
        slot.busy.store(0, Ordering::Release);
        park.light_barrier();
        let ours = self.slots.get((self.bias.load(Ordering::Relaxed) as usize).wrapping_sub(1));
        if !ours.is_some_and(|s| core::ptr::eq(s, slot)) {
            park.wake_all(&slot.busy);
            // An async taker that revoked and found us inside awaits the
            // object's handle, not `busy` (a revocation's rare path: no
            // count is kept of who awaits it).
            park.notify_async(&slot.busy);
        }
    }

    /// Holding `lock`: clears the bias if one is set (a revocation, after
    /// which the biased thread must be waited for); whether it was.
    fn revoke(&self) -> bool {
        let revoking = self.bias.load(Ordering::Relaxed) != 0;
        if revoking {
            self.bias.store(0, Ordering::Relaxed);
            self.cooldown.store(COOLDOWN, Ordering::Relaxed);
        }
        revoking
    }

    #[cold]
    fn lock_slow<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        deadline: Deadline,
    ) -> Result<Acquired, Error> {
        let mut how = self.lock.lock(os, me, deadline)?;
        let revoking = self.revoke();
        // A dead holder of `lock` may have revoked, and died before it
        // waited for the biased thread: wait for it then too.
        if revoking || how == Acquired::OwnerDied {
            // SYNC POINT: the revoker's half of the Dekker pair.
            os.heavy_barrier();
            for slot in &self.slots {
                match self.wait_idle(os, slot, deadline) {
                    Ok(true) => how = Acquired::OwnerDied,
                    Ok(false) => {}
                    Err(e) => {
                        let _ = self.lock.unlock(os);
                        return Err(e);
                    }
                }
            }
        }
        Ok(how)
    }

    /// Waits until `slot` is not inside; `true` if its owner died inside
    /// (the slot is then freed).
    fn wait_idle<O: Park + Liveness>(
        &self,
        os: &O,
        slot: &Slot,
        deadline: Deadline,
    ) -> Result<bool, Error> {
        let mut spin = Spin::new();
        let mut last_check = os.now();
        loop {
            // SYNC POINT: the biased thread's critical section, visible
            // after its Release of `busy`.
            if slot.busy.load(Ordering::Acquire) == 0 {
                return Ok(false);
            }
            if spin.step(os) {
                continue;
            }
            // Its fast exit wakes us: it sees that `bias` moved.
            if !park_slice(os, &slot.busy, 1, deadline) {
                return Err(Error::Timeout);
            }
            if O::CHECKS && os.now().saturating_sub(last_check) >= O::CHECK_INTERVAL {
                last_check = os.now();
                let owner = slot.owner.load(Ordering::Relaxed);
                if slot.busy.load(Ordering::Acquire) != 0 && !alive(os, owner) {
                    slot.busy.store(0, Ordering::Relaxed);
                    slot.owner.store(0, Ordering::Relaxed);
                    return Ok(true);
                }
            }
        }
    }

    #[cold]
    fn unlock_slow<O: Park + Liveness>(&self, os: &O, me: Owner) -> Result<(), Error> {
        if !self.lock.is_held_by(me) {
            return Err(Error::NotOwner);
        }
        let cooldown = self.cooldown.load(Ordering::Relaxed);
        if cooldown > 0 {
            self.cooldown.store(cooldown - 1, Ordering::Relaxed);
        } else if !self.lock.has_waiters() {
            match self.claim_slot(os, me) {
                // SYNC POINT: nothing to publish: only we read our own grant.
                Some(i) => self.bias.store(i as u32 + 1, Ordering::Relaxed),
                None => self.cooldown.store(COOLDOWN, Ordering::Relaxed),
            }
        }
        self.lock.unlock(os)
    }

    /// `me`'s slot: the one it has, else a free one, else one whose owner
    /// died. Called holding `lock` with no bias set, so no slot is inside
    /// for good (a thread late on its fast path backs off by itself).
    fn claim_slot<L: Liveness>(&self, os: &L, me: Owner) -> Option<usize> {
        let mine = me.packed();
        if let Some(i) = self.slots.iter().position(|s| s.owner.load(Ordering::Relaxed) == mine) {
            return Some(i);
        }
        let take = |i: usize, current: u64| {
            let slot = &self.slots[i];
            let ok = slot
                .owner
                .compare_exchange(current, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
            if ok {
                slot.busy.store(0, Ordering::Relaxed);
            }
            ok
        };
        if let Some(i) = (0..SLOTS).find(|&i| self.slots[i].owner.load(Ordering::Relaxed) == 0) {
            if take(i, 0) {
                return Some(i);
            }
        }
        (0..SLOTS).find(|&i| {
            let owner = self.slots[i].owner.load(Ordering::Relaxed);
            !alive(os, owner) && take(i, owner)
        })
    }
}
