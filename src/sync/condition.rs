//! [`Condition`]: Python's `multiprocessing.Condition`.

use crate::object::{shared_object, Object};
use crate::os::Os;
use crate::sync::{Lock, RLock};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::condition::RawCondition;
use multiproc_core::header::Kind;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The shared part of a Condition (its sequence word), as its own segment.
#[derive(Clone)]
struct Cell {
    obj: Object<RawCondition>,
}

shared_object!(Cell, &[Kind::Condition], |_, _, _| Ok(()));

impl Cell {
    fn from_object(obj: Object<RawCondition>) -> Cell {
        Cell { obj }
    }
}

/// The lock a Condition waits with.
#[derive(Clone, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

impl CondLock {
    fn is_owned(&self) -> bool {
        match self {
            CondLock::Lock(l) => l.held_by_this_process(),
            CondLock::RLock(r) => r.is_owned(),
        }
    }
}

/// A condition variable shared between processes, with its lock (an
/// [`RLock`] unless given a [`Lock`]).
///
/// `wait` must be called holding the lock; it releases it while it waits.
/// It may return without a notify (spuriously, or because a notify for one
/// waiter reached two about to park), so wait for a predicate:
/// [`wait_for`](Self::wait_for).
///
/// ```
/// let cond = multiproc::Condition::new()?;
/// let guard = cond.lock()?;
/// assert!(!guard.wait_timeout(std::time::Duration::from_millis(1))?);
/// guard.notify_all()?;
/// drop(guard);
/// assert!(cond.notify(1).is_err()); // not holding the lock
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    cell: Cell,
    lock: CondLock,
}

impl Condition {
    /// A condition with a new RLock.
    pub fn new() -> Result<Condition> {
        Condition::with(CondLock::RLock(RLock::new()?))
    }

    /// A condition that waits with an existing Lock.
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Condition::with(CondLock::Lock(lock))
    }

    /// A condition that waits with an existing RLock.
    pub fn with_rlock(lock: RLock) -> Result<Condition> {
        Condition::with(CondLock::RLock(lock))
    }

    fn with(lock: CondLock) -> Result<Condition> {
        let obj = Object::create(Kind::Condition, [0; 5], |_| 0, |_, _, _| {})?;
        Ok(Condition { cell: Cell { obj }, lock })
    }

    fn raw(&self) -> &RawCondition {
        self.cell.obj.raw()
    }

    /// Acquires the underlying lock (`OwnerDied`: held, see [`Lock`]).
    pub fn acquire(&self) -> Result<()> {
        match &self.lock {
            CondLock::Lock(l) => l.acquire(),
            CondLock::RLock(r) => r.acquire(),
        }
    }

    /// Acquires the condition's lock, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        match &self.lock {
            CondLock::Lock(l) => l.acquire_timeout(timeout),
            CondLock::RLock(r) => r.acquire_timeout(timeout),
        }
    }

    /// Releases the underlying lock.
    pub fn release(&self) -> Result<()> {
        match &self.lock {
            CondLock::Lock(l) => l.release(),
            CondLock::RLock(r) => r.release(),
        }
    }

    /// Acquires and returns a guard with the wait and notify methods.
    pub fn lock(&self) -> Result<ConditionGuard<'_>> {
        self.acquire()?;
        Ok(ConditionGuard { cond: self })
    }

    fn owned(&self) -> Result<()> {
        if self.lock.is_owned() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::NotOwner, "Condition used without holding its lock"))
        }
    }

    fn wait_until(&self, deadline: Deadline) -> Result<bool> {
        self.owned()?;
        let token = self.raw().begin_wait();
        let depth = match &self.lock {
            CondLock::Lock(l) => l.release().map(|()| 1),
            CondLock::RLock(r) => r.release_all(),
        };
        let depth = match depth {
            Ok(depth) => depth,
            Err(e) => {
                // Not parked: balance the registration.
                let _ = self.raw().wait(&Os, token, Deadline::now().core());
                return Err(e);
            }
        };
        let notified = self.raw().wait(&Os, token, deadline.core());
        match &self.lock {
            CondLock::Lock(l) => l.acquire()?,
            CondLock::RLock(r) => r.restore(depth)?,
        }
        Ok(notified)
    }

    /// Releases the lock, waits for a notify, reacquires the lock.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(Deadline::NEVER).map(drop)
    }

    /// [`wait`](Self::wait) at most `timeout`; `false` if it timed out.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Waits until `predicate()` holds, checking it after each wake-up.
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<()> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// [`wait_for`](Self::wait_for) at most `timeout`; the predicate's last value.
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if !self.wait_until(deadline)? {
                return Ok(predicate());
            }
        }
    }

    /// Wakes up to `n` waiters; call holding the lock (`NotOwner` otherwise).
    pub fn notify(&self, n: u32) -> Result<()> {
        self.owned()?;
        self.raw().notify(&Os, n);
        Ok(())
    }

    /// Wakes every waiter; call holding the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.owned()?;
        self.raw().notify_all(&Os);
        Ok(())
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").field("waiters", &self.raw().waiters()).finish()
    }
}

/// Holds a [`Condition`]'s lock; releases it on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits for a notify, and takes the lock again.
    pub fn wait(&self) -> Result<()> {
        self.cond.wait()
    }

    /// [`wait`](Self::wait) at most `timeout`; whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.cond.wait_timeout(timeout)
    }

    /// Waits until `predicate` holds (checked with the lock held).
    pub fn wait_for(&self, predicate: impl FnMut() -> bool) -> Result<()> {
        self.cond.wait_for(predicate)
    }

    /// [`wait_for`](Self::wait_for) at most `timeout`; the predicate's last value.
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        self.cond.wait_for_timeout(predicate, timeout)
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.cond.notify(n)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.cond.notify_all()
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cond.release();
    }
}
