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

/// Pauses a spin-wait makes before it starts yielding its CPU between
/// looks (about 1.6 µs where a pause is 25 ns).
pub const PAUSES_BEFORE_YIELD: u32 = 64;

/// What one yield counts against a spin budget, in pauses.
pub const YIELD_COST: u32 = 32;

/// A spin-wait's budget of [`SPIN_LIMIT`] pauses. The first
/// [`PAUSES_BEFORE_YIELD`] are pauses; after that each step yields the CPU
/// ([`Park::yield_now`](crate::park::Park::yield_now)) and counts as
/// [`YIELD_COST`] pauses. A peer on the other core hands off within the
/// pauses; on an oversubscribed machine, where the peer waits for a CPU,
/// the yield lets it run instead of burning the time slice it needs (on an
/// idle core a yield returns at once, so spinning costs little more).
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    left: u32,
}

impl Spin {
    /// A full budget.
    pub fn new() -> Spin {
        Spin { left: SPIN_LIMIT }
    }

    /// One step of the spin: `false` once the budget is spent (park).
    #[inline]
    pub fn step<P: crate::park::Park>(&mut self, park: &P) -> bool {
        if self.left == 0 {
            return false;
        }
        if SPIN_LIMIT - self.left < PAUSES_BEFORE_YIELD {
            spin_loop();
            self.left -= 1;
        } else {
            park.yield_now();
            self.left = self.left.saturating_sub(YIELD_COST);
        }
        true
    }
}

impl Default for Spin {
    fn default() -> Spin {
        Spin::new()
    }
}
