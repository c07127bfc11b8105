//! [`RLock`]: Python's `multiprocessing.RLock`.

use super::acquired;
use crate::object::{shared_object, Object};
use crate::os::{ident, Os};
use crate::time::Deadline;
use crate::{Error, Result};
use multiproc_core::header::Kind;
use multiproc_core::rlock::RawRLock;
use multiproc_core::Acquired;
use std::time::Duration;

/// A recursive lock shared between processes: the owning thread may acquire
/// it again, and must release it as many times. Only the owner may release
/// it (`NotOwner` otherwise). A holder that dies (thread or process) is
/// replaced as for a [`Lock`](crate::Lock).
///
/// ```
/// let rlock = multiproc::RLock::new()?;
/// rlock.acquire()?;
/// rlock.acquire()?;
/// rlock.release()?;
/// rlock.release()?;
/// assert!(rlock.release().is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    obj: Object<RawRLock>,
}

// The RLock of a Value or Array is an RLock too (Python's `get_lock()`).
shared_object!(RLock, &[Kind::RLock, Kind::Value, Kind::Array], |_, _, _| Ok(()));

impl RLock {
    /// An unlocked reentrant lock in a segment of its own.
    pub fn new() -> Result<RLock> {
        Ok(RLock { obj: Object::create(Kind::RLock, [0; 5], |_| 0, |_, _, _| {})? })
    }

    pub(crate) fn from_object(obj: Object<RawRLock>) -> RLock {
        RLock { obj }
    }

    pub(crate) fn object(&self) -> &Object<RawRLock> {
        &self.obj
    }

    pub(crate) fn raw(&self) -> &RawRLock {
        self.obj.raw()
    }

    fn take(&self, deadline: Deadline) -> Result<Acquired, multiproc_core::Error> {
        self.raw().lock(&Os, ident::thread(), deadline.core())
    }

    /// Blocks until acquired (at once if this thread holds it).
    pub fn acquire(&self) -> Result<()> {
        acquired(self.take(Deadline::NEVER), "RLock")
    }

    /// Blocks at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        acquired(self.take(Deadline::after(timeout)), "RLock")
    }

    /// Acquires only if free now or held by this thread.
    pub fn try_acquire(&self) -> Result<()> {
        Ok(self.raw().try_lock(ident::thread())?)
    }

    /// Releases one level; `NotOwner` from any thread but the owner.
    pub fn release(&self) -> Result<()> {
        Ok(self.raw().unlock(&Os, ident::thread())?)
    }

    /// Acquires and returns a guard that releases on drop.
    pub fn lock(&self) -> Result<RLockGuard<'_>> {
        self.guard(Deadline::NEVER)
    }

    /// [`lock`](Self::lock) waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>> {
        self.guard(Deadline::after(timeout))
    }

    fn guard(&self, deadline: Deadline) -> Result<RLockGuard<'_>> {
        let how = self.take(deadline)?;
        Ok(RLockGuard { lock: self, owner_died: how == Acquired::OwnerDied })
    }

    /// Whether the calling thread holds it.
    pub fn is_owned(&self) -> bool {
        self.raw().is_held_by(ident::thread())
    }

    /// How many times the calling thread holds it (0 if not at all).
    pub fn depth(&self) -> u32 {
        self.raw().depth(ident::thread())
    }

    /// Releases every level (Condition::wait); the depth to restore.
    pub(crate) fn release_all(&self) -> Result<u32> {
        Ok(self.raw().unlock_all(&Os, ident::thread())?)
    }

    /// Reacquires at `depth` levels; `OwnerDied` (held) if taken over.
    pub(crate) fn restore(&self, depth: u32) -> Result<()> {
        acquired(self.raw().restore(&Os, ident::thread(), depth), "RLock")
    }

    /// A guard that refuses reentry: for guards that hand out `&mut` data.
    pub(crate) fn lock_exclusive(&self, deadline: Deadline) -> Result<RLockGuard<'_>> {
        if self.is_owned() {
            return Err(Error::invalid(
                "already held by this thread: a second guard would alias the data",
            ));
        }
        self.guard(deadline)
    }
}

impl std::fmt::Debug for RLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RLock").field("owned", &self.is_owned()).finish()
    }
}

/// Holds one level of an [`RLock`]; releases it on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    owner_died: bool,
}

impl RLockGuard<'_> {
    /// Whether the lock was taken over from a holder that died.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}
