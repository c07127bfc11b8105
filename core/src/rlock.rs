//! RLock: a [`RawLock`] owned by one thread (its task id is the thread id)
//! plus a recursion count that only the owner touches.

use crate::lock::{Owner, RawLock};
use crate::park::{Deadline, Liveness, Park};
use crate::sync::{AtomicU32, Ordering};
use crate::{Acquired, Error};

/// A process-shared recursive lock. All zeros is unlocked.
///
/// Only the owning thread may release it (Python raises on any other); a
/// thread or process that dies holding it is detected as for a Lock, and
/// the next owner starts at count 1.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawRLock {
    lock: RawLock,
    /// Recursion depth while held, written only by the owner; 0 when free.
    count: AtomicU32,
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawRLock, [u64; 3]);

impl RawRLock {
    /// An unlocked RLock.
    pub fn new() -> RawRLock {
        RawRLock::default()
    }

    /// Takes the lock or, if `me` holds it, goes one level deeper.
    pub fn lock<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        deadline: Deadline,
    ) -> Result<Acquired, Error> {
        if self.lock.is_held_by(me) {
            return self.deepen().map(|()| Acquired::Clean);
        }
        let acquired = self.lock.lock(os, me, deadline)?;
        self.count.store(1, Ordering::Relaxed);
        Ok(acquired)
    }

    /// Like [`lock`](Self::lock) without waiting.
    pub fn try_lock(&self, me: Owner) -> Result<(), Error> {
        if self.lock.is_held_by(me) {
            return self.deepen();
        }
        if !self.lock.try_lock(me) {
            return Err(Error::Timeout);
        }
        self.count.store(1, Ordering::Relaxed);
        Ok(())
    }

    fn deepen(&self) -> Result<(), Error> {
        let count = self.count.load(Ordering::Relaxed);
        let deeper = count.checked_add(1).ok_or(Error::Overflow)?;
        self.count.store(deeper, Ordering::Relaxed);
        Ok(())
    }

    /// Goes one level up; releases the lock when the count reaches 0.
    pub fn unlock<P: Park>(&self, park: &P, me: Owner) -> Result<(), Error> {
        if !self.lock.is_held_by(me) {
            return Err(Error::NotOwner);
        }
        let count = self.count.load(Ordering::Relaxed);
        if count > 1 {
            self.count.store(count - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.count.store(0, Ordering::Relaxed);
        self.lock.unlock(park)
    }

    /// Whether `me` holds it, at any depth.
    pub fn is_held_by(&self, me: Owner) -> bool {
        self.lock.is_held_by(me)
    }

    /// The recursion depth if `me` holds it, else 0.
    pub fn depth(&self, me: Owner) -> u32 {
        if self.is_held_by(me) {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Releases every level at once (for Condition::wait); returns the depth
    /// to restore with [`restore`](Self::restore).
    pub fn unlock_all<P: Park>(&self, park: &P, me: Owner) -> Result<u32, Error> {
        if !self.lock.is_held_by(me) {
            return Err(Error::NotOwner);
        }
        let depth = self.count.swap(0, Ordering::Relaxed).max(1);
        self.lock.unlock(park)?;
        Ok(depth)
    }

    /// Takes the lock again at `depth` levels (after [`unlock_all`](Self::unlock_all)).
    pub fn restore<O: Park + Liveness>(
        &self,
        os: &O,
        me: Owner,
        depth: u32,
    ) -> Result<Acquired, Error> {
        let acquired = self.lock.lock(os, me, Deadline::NEVER)?;
        self.count.store(depth.max(1), Ordering::Relaxed);
        Ok(acquired)
    }
}
