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

/// The fewest pauses an adaptive wait ([`SpinBudget`]) spins before it
/// parks (about 1.6 µs where a pause is 25 ns): a peer that is running
/// answers within it.
pub const MIN_SPIN: u32 = if cfg!(loom) { 1 } else { 64 };

/// One wait in this many spins the whole [`SPIN_LIMIT`], whatever its
/// [`SpinBudget`] learnt: a probe, so that a budget shrunk under load grows
/// back once spinning pays again.
const PROBE_EVERY: u32 = 64;

/// How long a waiting side spins before it parks, learnt from its recent
/// waits: halved (down to [`MIN_SPIN`]) by each wait that had to park,
/// raised to twice what a wait spun before its peer answered (up to
/// [`SPIN_LIMIT`]).
///
/// Spinning pays while the peer runs on another core and answers within
/// the spin. On an oversubscribed machine the peer may be waiting for a
/// CPU instead: a waiter that spins then burns the time slice the peer
/// needs, and, being runnable, gets no wake-up preference from the
/// scheduler when its answer comes, while one that parked is woken
/// promptly. Beside two busy loops on 2 cores, with a fixed 2,000-pause
/// spin, a Pipe's round trip read 118 µs in a full run (a blocking
/// `pipe(2)`: 8 µs) and a Pool's `apply` 67 µs; with this budget, `apply`
/// read 14 µs, and quiet it went from 3.0 to 2.0 µs (its replies' Queue
/// waits promptly too).
///
/// Kept as a hint in the shared object beside what is waited for
/// ([`BITS`](Self::BITS) bits, [`to_bits`](Self::to_bits)): any value is a
/// valid budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinBudget {
    /// Pauses to spin, in [`MIN_SPIN`]..=[`SPIN_LIMIT`].
    pauses: u32,
    /// Waits so far, modulo [`PROBE_EVERY`].
    waits: u32,
}

/// [`SpinBudget::to_bits`] stores pauses in units of this many.
const BUDGET_UNIT: u32 = 16;

impl SpinBudget {
    /// How many low bits [`to_bits`](Self::to_bits) uses.
    pub const BITS: u32 = 8 + PROBE_EVERY.trailing_zeros();

    /// A budget from its [`to_bits`](Self::to_bits) (0: a fresh one, the
    /// whole [`SPIN_LIMIT`]).
    pub fn from_bits(bits: u32) -> SpinBudget {
        let units = bits & 0xff;
        let pauses = if units == 0 { SPIN_LIMIT } else { units * BUDGET_UNIT };
        SpinBudget { pauses: pauses.clamp(MIN_SPIN, SPIN_LIMIT), waits: bits >> 8 & (PROBE_EVERY - 1) }
    }

    /// [`BITS`](Self::BITS) bits that [`from_bits`](Self::from_bits) reads back.
    pub fn to_bits(self) -> u32 {
        let units = self.pauses.div_ceil(BUDGET_UNIT).clamp(1, 0xff);
        units | (self.waits % PROBE_EVERY) << 8
    }

    /// The pauses the next wait may spin.
    pub fn pauses(self) -> u32 {
        if self.waits == 0 {
            SPIN_LIMIT
        } else {
            self.pauses
        }
    }

    /// Learns from a wait that spun `spent` pauses (counting yields) and
    /// then either had what it waited for or, `parked`, had to park (or
    /// gave up). A wait that found it at once (`spent` 0, not parked)
    /// teaches nothing.
    pub fn learn(&mut self, spent: u32, parked: bool) {
        if spent == 0 && !parked {
            return;
        }
        self.pauses = if parked {
            self.pauses / 2
        } else {
            self.pauses.max(spent.saturating_mul(2))
        }
        .next_multiple_of(BUDGET_UNIT)
        .clamp(MIN_SPIN, SPIN_LIMIT);
        self.waits = (self.waits + 1) % PROBE_EVERY;
    }
}

impl Default for SpinBudget {
    fn default() -> SpinBudget {
        SpinBudget::from_bits(0)
    }
}

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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The next budget that is not a probe.
    fn steady(budget: &mut SpinBudget) -> u32 {
        if budget.pauses() == SPIN_LIMIT && budget.waits == 0 {
            budget.learn(1, false);
        }
        budget.pauses()
    }

    #[test]
    fn a_budget_shrinks_on_parks_and_grows_to_what_paid() {
        let mut budget = SpinBudget::default();
        assert_eq!(budget.pauses(), SPIN_LIMIT, "a fresh side spins the whole limit");
        for _ in 0..10 {
            budget.learn(budget.pauses(), true);
        }
        assert_eq!(steady(&mut budget), MIN_SPIN, "parks halve it down to the floor");
        budget.learn(MIN_SPIN / 2, false);
        assert_eq!(steady(&mut budget), MIN_SPIN, "a quick answer keeps the floor");
        budget.learn(304, false);
        assert_eq!(steady(&mut budget), 608, "an answer after 304 pauses: spin twice that");
        budget.learn(budget.pauses(), true);
        assert_eq!(steady(&mut budget), 304);
        budget.learn(0, false);
        assert_eq!(steady(&mut budget), 304, "a wait that found its data teaches nothing");
        budget.learn(SPIN_LIMIT, false);
        assert_eq!(steady(&mut budget), SPIN_LIMIT, "never past the limit");
    }

    #[test]
    fn one_wait_in_sixty_four_probes_the_whole_limit() {
        let mut budget = SpinBudget::default();
        let mut probes = 0;
        for _ in 0..4 * PROBE_EVERY {
            if budget.pauses() == SPIN_LIMIT {
                probes += 1;
            }
            budget.learn(budget.pauses(), true);
        }
        assert_eq!(probes, 4);
    }

    #[test]
    fn bits_round_trip_and_any_bits_are_a_budget() {
        let mut budget = SpinBudget::default();
        for spent in [SPIN_LIMIT, 0, 5, 300] {
            budget.learn(spent, spent == SPIN_LIMIT);
            assert_eq!(SpinBudget::from_bits(budget.to_bits()), budget);
        }
        for bits in [0, 1, 0xff, 0xfff, u32::MAX, 0x1234_5678] {
            let budget = SpinBudget::from_bits(bits);
            assert!((MIN_SPIN..=SPIN_LIMIT).contains(&budget.pauses()));
            assert!(budget.to_bits() < 1 << SpinBudget::BITS);
        }
    }
}
