//! [`Barrier`]: Python's `multiprocessing.Barrier` (without `action`: a
//! callable cannot cross processes; the waiter that gets index 0 can act).

use crate::object::{shared_object, Object};
use crate::os::Os;
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::barrier::{RawBarrier, MAX_PARTIES};
use multiproc_core::header::{Corrupt, Kind};
use std::time::Duration;

/// A meeting point for `parties` threads or processes.
///
/// `wait` returns the arrival index in `0..parties`. A waiter that times out
/// breaks the barrier (Python's semantics): the others get
/// [`ErrorKind::BrokenBarrier`], as after [`abort`](Self::abort), until
/// [`reset`](Self::reset).
///
/// ```
/// let barrier = multiproc::Barrier::new(1)?;
/// assert_eq!(barrier.wait()?, 0);
/// assert!(multiproc::Barrier::new(0).is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    obj: Object<RawBarrier>,
}

shared_object!(Barrier, &[Kind::Barrier], |h, raw: &RawBarrier, _| {
    let parties = raw.parties();
    if parties == 0 || parties > MAX_PARTIES || u64::from(parties) != h.params[0] {
        return Err(Corrupt::BadParams);
    }
    Ok(())
});

impl Barrier {
    /// A barrier for `parties` waiters, in `1..=32767`.
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::invalid(format!("a Barrier needs 1..={MAX_PARTIES} parties")));
        }
        let params = [u64::from(parties), 0, 0, 0, 0];
        let obj = Object::create(
            Kind::Barrier,
            params,
            |_| 0,
            |raw: &RawBarrier, _, _| raw.init(parties),
        )?;
        Ok(Barrier { obj })
    }

    fn from_object(obj: Object<RawBarrier>) -> Barrier {
        Barrier { obj }
    }

    /// Waits for all parties; the arrival index.
    pub fn wait(&self) -> Result<u32> {
        Ok(self.obj.raw().wait(&Os, Deadline::NEVER.core())?)
    }

    /// Waits at most `timeout`; on timeout the barrier breaks and this
    /// waiter gets `Timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.obj.raw().wait(&Os, Deadline::after(timeout).core()).map_err(|e| match e {
            multiproc_core::Error::Timeout => {
                Error::new(ErrorKind::Timeout, "barrier wait timed out; the barrier is now broken")
            }
            e => e.into(),
        })
    }

    /// Breaks the barrier: waiters now and later get `BrokenBarrier`.
    pub fn abort(&self) {
        self.obj.raw().abort(&Os)
    }

    /// Empties the barrier; current waiters get `BrokenBarrier`.
    pub fn reset(&self) {
        self.obj.raw().reset(&Os)
    }

    /// How many waiters release each other.
    pub fn parties(&self) -> u32 {
        self.obj.raw().parties()
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.obj.raw().n_waiting()
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.obj.raw().is_broken()
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}
