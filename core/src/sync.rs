//! The only place atomics come from: std's (`core`'s) normally, loom's under
//! `--cfg loom`. A step of `.ci/run` fails if another file of `core/src`
//! names `core::sync::atomic` (clippy's `disallowed-types` cannot tell a
//! re-export from its original, so it cannot enforce this).
//!
//! Loom gaps that bite here: its atomics are not `#[repr(C)]` plain words
//! (so layout assertions are `cfg(not(loom))`) and their `new` is not `const`.
#[cfg(not(loom))]
pub use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// One step of a spin-wait. Under loom it yields, so that a spinning thread
/// lets the others make progress instead of being explored forever.
#[inline]
pub fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// How many times a blocking call spins before it parks. Spinning covers a
/// peer on the other core releasing within a few microseconds, which is the
/// common case for short critical sections and ping-pong; under loom one
/// round keeps the explored state space small.
pub const SPIN_LIMIT: u32 = if cfg!(loom) { 1 } else { 2000 };
