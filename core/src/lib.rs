//! # multiproc-core
//!
//! The platform-free heart of `multiproc`: every layout that lives in shared
//! memory and every algorithm that runs over it. Nothing here makes a system
//! call; blocking comes from a [`Park`] supplied by a backend, and owner
//! liveness from a [`Liveness`].
//!
//! Each primitive is one `#[repr(C)]` layout whose all-zero bytes are a valid
//! initial state (fresh memfd pages are zero) and in which *every* bit pattern
//! is memory-safe to operate on: a corrupted or hostile segment can break a
//! primitive's logic, never the process (see [`shared::Shared`]).
//!
//! Atomics come only from [`sync`], so `RUSTFLAGS="--cfg loom"` swaps in loom's
//! and the models in `tests/` check every algorithm.
#![cfg_attr(not(any(feature = "std", loom)), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

// Lock owners (pid and start-time stamp) and ring positions are 64-bit
// words that processes update in place: a target without 64-bit atomics
// cannot hold them, and every module below is left out there.
#[cfg(not(target_has_atomic = "64"))]
compile_error!(
    "multiproc-core needs 64-bit atomics (AtomicU64): lock owners and ring positions are \
     64-bit words shared between processes, and this target has no 64-bit atomic operations"
);

/// Declares `items` only where the target has 64-bit atomics.
macro_rules! with_atomic_u64 {
    ($($item:item)*) => { $( #[cfg(target_has_atomic = "64")] $item )* };
}

with_atomic_u64! {
    pub mod arena;
    pub mod barrier;
    pub mod bias;
    pub mod condition;
    pub mod countdown;
    pub mod event;
    pub mod header;
    pub mod lock;
    pub mod park;
    #[cfg(feature = "alloc")]
    pub mod ring;
    pub mod rlock;
    pub mod semaphore;
    pub mod shared;
    pub mod sync;
    pub mod value;

    #[cfg(any(feature = "std", loom))]
    pub mod testing;

    #[cfg(all(feature = "std", not(loom), any(fuzzing, test)))]
    pub mod fuzz;

    pub use park::{Deadline, Liveness, Park, ASYNC_WAITER};
}

/// How a blocking acquire ended, when it did not fail outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Acquired {
    /// Acquired normally.
    Clean,
    /// Acquired from an owner that died holding it: the state it protected
    /// may be half-updated (the spirit of std's mutex poisoning).
    OwnerDied,
}

/// Why an operation on a shared primitive failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The deadline passed, or a `try_` form found the primitive unavailable.
    Timeout,
    /// An RLock released (or a Condition used) by a thread that does not own it.
    NotOwner,
    /// A Lock released while unlocked.
    NotLocked,
    /// A count would pass its limit (RLock depth, Semaphore value).
    Overflow,
    /// A BoundedSemaphore released above its initial value.
    AboveBound,
    /// A Barrier that was aborted, reset, or broken by a timed-out waiter.
    Broken,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Timeout => "timed out",
            Error::NotOwner => "not owned by the calling thread",
            Error::NotLocked => "released while unlocked",
            Error::Overflow => "count overflow",
            Error::AboveBound => "released above its bound",
            Error::Broken => "barrier is broken",
        })
    }
}
