//! [`Semaphore`] and [`BoundedSemaphore`]: Python's `multiprocessing`
//! semaphores. Both are one layout; the bounded one records its bound.

use crate::object::{shared_object, Object};
use crate::os::Os;
use crate::time::Deadline;
use crate::{Error, Result};
use multiproc_core::header::{Corrupt, Kind};
use multiproc_core::semaphore::{RawSemaphore, MAX_VALUE};
use std::time::Duration;

fn check_value(value: u32) -> Result<()> {
    if value > MAX_VALUE {
        return Err(Error::invalid(format!("semaphore value above {MAX_VALUE}")));
    }
    Ok(())
}

macro_rules! semaphore_methods {
    () => {
        /// Takes one, blocking while the value is 0.
        pub fn acquire(&self) -> Result<()> {
            Ok(self.raw().acquire(&Os, Deadline::NEVER.core())?)
        }

        /// Takes one, waiting at most `timeout`.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
            Ok(self.raw().acquire(&Os, Deadline::after(timeout).core())?)
        }

        /// Takes one, waiting until `deadline` at most (a Queue's slots;
        /// the bounded semaphore's copy is unused).
        #[allow(dead_code)]
        pub(crate) fn acquire_until(&self, deadline: Deadline) -> Result<()> {
            Ok(self.raw().acquire(&Os, deadline.core())?)
        }

        /// Takes one, awaiting a positive value without blocking a thread
        /// (the `tokio` feature). Bound it with
        /// `tokio::time::timeout`. Cancel-safe: a future dropped before it
        /// completes took nothing.
        ///
        /// `Err` only outside a tokio runtime with I/O enabled, or past
        /// 65,535 async waiters on one semaphore.
        #[cfg(mp_async)]
        pub async fn acquire_async(&self) -> Result<()> {
            use crate::aio::{register, until, Step};
            let raw = self.raw();
            let registration = || register(raw.register_async(), || raw.unregister_async());
            until(self.obj.ready(), None, registration, |_| {
                if raw.try_acquire() {
                    Step::Done(Ok(()))
                } else {
                    Step::Wait
                }
            })
            .await
        }

        /// A handle readable once a permit may be there, for an event loop
        /// other than tokio: see [`Readiness`](crate::Readiness).
        #[cfg(mp_async)]
        pub fn readiness(&self) -> Result<crate::Readiness<'_>> {
            let raw = self.raw();
            let registered = crate::aio::register(raw.register_async(), || raw.unregister_async())?;
            crate::Readiness::new(registered, [self.obj.ready()])
        }

        /// Takes one only if the value is positive now.
        pub fn try_acquire(&self) -> Result<()> {
            if self.raw().try_acquire() {
                Ok(())
            } else {
                Err(Error::timeout())
            }
        }

        /// Acquires and returns a guard that releases on drop.
        pub fn guard(&self) -> Result<SemaphoreGuard<'_>> {
            self.acquire()?;
            Ok(SemaphoreGuard { raw: self.raw() })
        }

        /// The current value (Python's `get_value`).
        pub fn get_value(&self) -> u32 {
            self.raw().value()
        }

        fn raw(&self) -> &RawSemaphore {
            self.obj.raw()
        }

        fn from_object(obj: Object<RawSemaphore>) -> Self {
            Self { obj }
        }
    };
}

/// A counting semaphore shared between processes.
///
/// ```
/// let sem = multiproc::Semaphore::new(2)?;
/// sem.acquire()?;
/// sem.acquire()?;
/// assert!(sem.try_acquire().is_err());
/// sem.release()?;
/// assert_eq!(sem.get_value(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    obj: Object<RawSemaphore>,
}

shared_object!(Semaphore, &[Kind::Semaphore], |_, raw: &RawSemaphore, _| {
    if raw.bound().is_some() || raw.value() > MAX_VALUE {
        return Err(Corrupt::BadParams);
    }
    Ok(())
});

impl Semaphore {
    /// A semaphore with `value` permits (at most `i32::MAX`).
    pub fn new(value: u32) -> Result<Semaphore> {
        check_value(value)?;
        let obj = Object::create(
            Kind::Semaphore,
            [0; 5],
            |_| 0,
            |raw: &RawSemaphore, _, _| raw.init(value, false),
        )?;
        Ok(Semaphore { obj })
    }

    /// Adds one; `Overflow` past `i32::MAX`.
    pub fn release(&self) -> Result<()> {
        Ok(self.raw().release(&Os)?)
    }

    semaphore_methods!();
}

/// A semaphore that refuses to be released above its initial value.
///
/// ```
/// let sem = multiproc::BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err()); // above the bound
/// sem.acquire()?;
/// sem.release()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    obj: Object<RawSemaphore>,
}

shared_object!(BoundedSemaphore, &[Kind::BoundedSemaphore], |h, raw: &RawSemaphore, _| {
    match raw.bound() {
        Some(bound) if u64::from(bound) == h.params[0] && raw.value() <= bound => Ok(()),
        _ => Err(Corrupt::BadParams),
    }
});

impl BoundedSemaphore {
    /// A semaphore with `value` permits, which is also its bound (1 or more).
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        check_value(value)?;
        if value == 0 {
            return Err(Error::invalid("a BoundedSemaphore of 0 could never be acquired"));
        }
        let params = [u64::from(value), 0, 0, 0, 0];
        let obj = Object::create(
            Kind::BoundedSemaphore,
            params,
            |_| 0,
            |raw: &RawSemaphore, _, _| raw.init(value, true),
        )?;
        Ok(BoundedSemaphore { obj })
    }

    /// Adds one; `Overflow` if that would pass the bound.
    pub fn release(&self) -> Result<()> {
        Ok(self.raw().release(&Os)?)
    }

    semaphore_methods!();
}

/// Holds one permit; releases it on drop.
#[must_use = "the permit is released when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    raw: &'a RawSemaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.raw.release(&Os);
    }
}
