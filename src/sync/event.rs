//! [`Event`]: Python's `multiprocessing.Event`.

use crate::object::{shared_object, Object};
use crate::os::Os;
use crate::time::Deadline;
use crate::Result;
use multiproc_core::event::RawEvent;
use multiproc_core::header::Kind;
use std::time::Duration;

/// A flag shared between processes that waiters block on until it is set.
///
/// ```
/// let event = multiproc::Event::new()?;
/// assert!(!event.wait_timeout(std::time::Duration::from_millis(1)));
/// event.set();
/// event.wait();
/// assert!(event.is_set());
/// event.clear();
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    obj: Object<RawEvent>,
}

shared_object!(Event, &[Kind::Event], |_, _, _| Ok(()));

impl Event {
    /// An event that is not set.
    pub fn new() -> Result<Event> {
        Ok(Event { obj: Object::create(Kind::Event, [0; 5], |_| 0, |_, _, _| {})? })
    }

    fn from_object(obj: Object<RawEvent>) -> Event {
        Event { obj }
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.obj.raw().is_set()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.obj.raw().set(&Os)
    }

    /// Clears it: later waits block until the next `set`.
    pub fn clear(&self) {
        self.obj.raw().clear()
    }

    /// Blocks until the flag is set (or was set since the call began).
    pub fn wait(&self) {
        let set = self.obj.raw().wait(&Os, Deadline::NEVER.core());
        debug_assert!(set);
    }

    /// Blocks at most `timeout`; whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.obj.raw().wait(&Os, Deadline::after(timeout).core())
    }

    /// A handle readable once the flag may be set, for an event loop
    /// other than tokio: see [`Readiness`](crate::Readiness).
    #[cfg(mp_async)]
    pub fn readiness(&self) -> Result<crate::Readiness<'_>> {
        let raw = self.obj.raw();
        let registered = crate::aio::register(raw.register_async(), || raw.unregister_async())?;
        crate::Readiness::new(registered, [self.obj.ready()])
    }

    /// Async waiters registered now (tests).
    #[cfg(mp_async)]
    pub(crate) fn async_waiters(&self) -> u32 {
        self.obj.raw().async_waiters()
    }

    /// Awaits the flag (set, or set since the call began) without blocking
    /// a thread (the `tokio` feature). Bound it with
    /// `tokio::time::timeout`. Cancel-safe: dropping the future leaves
    /// nothing behind.
    ///
    /// `Err` only outside a tokio runtime with I/O enabled, or past 65,535
    /// async waiters on one event.
    #[cfg(mp_async)]
    pub async fn wait_async(&self) -> Result<()> {
        use crate::aio::{register, until, Step};
        let raw = self.obj.raw();
        let start = raw.snapshot();
        let registration = || register(raw.register_async(), || raw.unregister_async());
        until(self.obj.ready(), None, registration, |_| {
            if raw.fired_since(start) {
                Step::Done(Ok(()))
            } else {
                Step::Wait
            }
        })
        .await
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}
