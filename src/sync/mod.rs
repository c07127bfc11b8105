//! Locks, semaphores, events, conditions and barriers that live in shared
//! memory: Python's `multiprocessing` synchronization primitives.
//!
//! Each is a handle to a small shared segment: `clone` gives another handle
//! to the same object in this process, and passing it to a [`Process`]
//! (as an argument, under any start method) gives the child one too.
//!
//! Every blocking call has a `_timeout` form and a `try_` form. A Lock or
//! RLock whose holder died is taken over by the next acquirer, which is told
//! so ([`ErrorKind::OwnerDied`]).
//!
//! [`Process`]: crate::Process

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

use crate::{Error, ErrorKind, Result};
use multiproc_core::Acquired;

/// The acquire family's result: `Ok` when acquired cleanly; the lock is
/// *held* on `Err(OwnerDied)` too, as with pthread's `EOWNERDEAD`.
pub(crate) fn acquired(result: Result<Acquired, multiproc_core::Error>, what: &str) -> Result<()> {
    match result? {
        Acquired::Clean => Ok(()),
        Acquired::OwnerDied => Err(owner_died(what)),
    }
}

pub(crate) fn owner_died(what: &str) -> Error {
    Error::new(
        ErrorKind::OwnerDied,
        format!("the previous owner of this {what} died holding it; it is now held by the caller"),
    )
}
