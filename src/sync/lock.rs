//! [`Lock`]: Python's `multiprocessing.Lock`.

use super::acquired;
use crate::object::{shared_object, Object};
use crate::os::{ident, Os};
use crate::time::Deadline;
use crate::Result;
use multiproc_core::header::Kind;
use multiproc_core::lock::RawLock;
use multiproc_core::Acquired;
use std::time::Duration;

/// A non-recursive lock shared between processes.
///
/// Any thread of any process holding a handle may release it, as in Python.
/// If its holder dies, the next acquirer gets it within tens of milliseconds
/// with [`ErrorKind::OwnerDied`](crate::ErrorKind::OwnerDied) (the lock is
/// held when that error is returned).
///
/// ```
/// let lock = multiproc::Lock::new()?;
/// {
///     let _guard = lock.lock()?;
///     assert!(lock.try_acquire().is_err());
/// }
/// lock.acquire()?;
/// lock.release()?;
/// assert!(lock.release().is_err()); // not locked
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    obj: Object<RawLock>,
}

shared_object!(Lock, &[Kind::Lock], |_, _, _| Ok(()));

impl Lock {
    /// An unlocked lock in a segment of its own.
    pub fn new() -> Result<Lock> {
        Ok(Lock { obj: Object::create(Kind::Lock, [0; 5], |_| 0, |_, _, _| {})? })
    }

    fn from_object(obj: Object<RawLock>) -> Lock {
        Lock { obj }
    }

    #[cfg(all(test, mp_transfer))]
    pub(crate) fn object(&self) -> &Object<RawLock> {
        &self.obj
    }

    #[inline]
    pub(crate) fn raw(&self) -> &RawLock {
        self.obj.raw()
    }

    #[inline]
    fn take(&self, deadline: Deadline) -> Result<Acquired, multiproc_core::Error> {
        self.raw().lock(&Os, ident::process(), deadline.core())
    }

    /// Blocks until acquired.
    #[inline]
    pub fn acquire(&self) -> Result<()> {
        acquired(self.take(Deadline::NEVER), "Lock")
    }

    /// Blocks at most `timeout`; `Timeout` if it could not acquire.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        acquired(self.take(Deadline::after(timeout)), "Lock")
    }

    /// Acquires only if free now (never checks whether the holder lives).
    pub fn try_acquire(&self) -> Result<()> {
        if self.raw().try_lock(ident::process()) {
            Ok(())
        } else {
            Err(crate::Error::timeout())
        }
    }

    /// Acquires, awaiting without blocking a thread (the `tokio` feature),
    /// with the blocking form's outcomes: `OwnerDied` (and the lock
    /// held) if its holder died holding it, found at the same interval.
    /// Bound it with `tokio::time::timeout`. Cancel-safe: a future dropped
    /// before it completes took nothing.
    ///
    /// The lock belongs to this process (as every `Lock` acquisition), not
    /// to the task: release it with [`release`](Self::release), from any
    /// task or thread.
    #[cfg(mp_async)]
    pub async fn acquire_async(&self) -> Result<()> {
        use crate::aio::{register, until, Step};
        let raw = self.raw();
        let me = ident::process();
        let mut in_transition = 0;
        let registration = || register(raw.register_async(&Os), || raw.unregister_async());
        let how = until(self.obj.ready(), None, registration, |check| {
            let taken = if check {
                raw.recover(&Os, me, &mut in_transition)
            } else {
                raw.try_lock(me).then_some(Acquired::Clean)
            };
            match taken {
                Some(how) => Step::Done(Ok(how)),
                None => Step::Contended,
            }
        })
        .await?;
        acquired(Ok(how), "Lock")
    }

    /// A handle readable once the lock may be free, for an event loop
    /// other than tokio: see [`Readiness`](crate::Readiness). (A holder
    /// that dies rings nothing: an event loop that must take over a dead
    /// holder's lock also calls [`acquire_timeout`](Self::acquire_timeout)
    /// now and then.)
    #[cfg(mp_async)]
    pub fn readiness(&self) -> Result<crate::Readiness<'_>> {
        let raw = self.raw();
        let registered = crate::aio::register(raw.register_async(&Os), || raw.unregister_async())?;
        crate::Readiness::new(registered, [self.obj.ready()])
    }

    /// Releases; `InvalidArgument` if it was not locked.
    #[inline]
    pub fn release(&self) -> Result<()> {
        Ok(self.raw().unlock(&Os)?)
    }

    /// Acquires and returns a guard that releases on drop.
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.guard(Deadline::NEVER)
    }

    /// [`lock`](Self::lock) waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.guard(Deadline::after(timeout))
    }

    /// [`lock`](Self::lock) only if free now.
    pub fn try_lock(&self) -> Result<LockGuard<'_>> {
        self.try_acquire()?;
        Ok(LockGuard { lock: self, owner_died: false })
    }

    #[inline]
    fn guard(&self, deadline: Deadline) -> Result<LockGuard<'_>> {
        let how = self.take(deadline)?;
        Ok(LockGuard { lock: self, owner_died: how == Acquired::OwnerDied })
    }

    /// Whether someone holds it now.
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// Whether this process holds it (any of its threads).
    pub(crate) fn held_by_this_process(&self) -> bool {
        self.raw().is_held_by(ident::process())
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").field("locked", &self.is_locked()).finish()
    }
}

/// Holds a [`Lock`]; releases it on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    owner_died: bool,
}

impl LockGuard<'_> {
    /// Whether the lock was taken over from a holder that died: the data it
    /// protects may be half-updated.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}
