//! Barrier: `parties` waiters meet; the last to arrive lets them all go and
//! starts the next generation. Python's `Barrier` semantics: `wait` returns
//! the arrival index; `abort` breaks it; a waiter that times out breaks it;
//! `reset` breaks the waiters of the current generation and starts afresh.
//!
//! Everything a waiter needs is in one word, so an arrival is one CAS and
//! parking compares the whole state. A waiter learns how *its* generation
//! ended from the word's `LAST_BROKEN` bit if the barrier moved on by one
//! generation, or from `history` if it moved on further (up to 64).
//!
//! Memory orderings: state changes are `AcqRel` CAS on `word`; `history` is
//! written before the CAS that starts a new generation and read after an
//! `Acquire` load that saw it.

use crate::park::{Deadline, Park};
use crate::sync::{spin_loop, AtomicU32, AtomicU64, Ordering, SPIN_LIMIT};
use crate::Error;

/// Bits 0..15: arrivals in the current generation.
const COUNT_MASK: u32 = (1 << 15) - 1;
/// Bit 15: the previous generation ended broken (reset), not by passing.
const LAST_BROKEN: u32 = 1 << 15;
/// Bits 16..31: the generation number (wrapping).
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = (1 << 15) - 1;
/// Bit 31: the current generation is broken; `wait` fails until `reset`.
const BROKEN: u32 = 1 << 31;

/// Most parties a barrier takes.
pub const MAX_PARTIES: u32 = COUNT_MASK;

#[inline]
fn count(word: u32) -> u32 {
    word & COUNT_MASK
}
#[inline]
fn generation(word: u32) -> u32 {
    (word >> GEN_SHIFT) & GEN_MASK
}
#[inline]
fn is_broken(word: u32) -> bool {
    word & BROKEN != 0
}
/// The first word of the generation after `word`'s.
#[inline]
fn next_generation(word: u32, this_one_broke: bool) -> u32 {
    let gen = (generation(word) + 1) & GEN_MASK;
    (gen << GEN_SHIFT) | if this_one_broke { LAST_BROKEN } else { 0 }
}

/// A process-shared barrier. All zeros is a barrier of 0 parties, which
/// [`parties`](Self::parties) reports so the opener can reject it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawBarrier {
    /// `BROKEN | generation << 16 | LAST_BROKEN | count`. The futex word.
    ///
    /// | BROKEN | count     | meaning                                      |
    /// |--------|-----------|----------------------------------------------|
    /// | 0      | 0         | filling, nobody waiting                      |
    /// | 0      | 1..parties| filling, `count` parked or about to park      |
    /// | 1      | any       | broken (abort or timeout); waits fail        |
    word: AtomicU32,
    /// In `1..=MAX_PARTIES`; anything else is a corrupt barrier.
    parties: AtomicU32,
    /// Bit `g % 64` is set if generation `g` ended broken. Written for `g` by
    /// whoever ends generation `g + 1`, before that CAS.
    history: AtomicU64,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawBarrier, [u64; 2]);

impl RawBarrier {
    /// A barrier for `parties` in `1..=MAX_PARTIES`.
    pub fn new(parties: u32) -> RawBarrier {
        let b = RawBarrier::default();
        b.parties.store(parties, Ordering::Relaxed);
        b
    }

    /// Sets the parties of a fresh, unshared barrier.
    pub fn init(&self, parties: u32) {
        self.parties.store(parties, Ordering::Relaxed);
    }

    /// How many waiters release each other.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed)
    }

    /// Waiters of the current generation (0 while broken, as in Python).
    pub fn n_waiting(&self) -> u32 {
        let word = self.word.load(Ordering::Relaxed);
        if is_broken(word) {
            0
        } else {
            count(word)
        }
    }

    /// Whether the barrier is broken (aborted, or a waiter timed out).
    pub fn is_broken(&self) -> bool {
        is_broken(self.word.load(Ordering::Relaxed))
    }

    /// Records how the generation before `word`'s ended, for waiters that
    /// sleep through more than one generation. Everyone who may end `word`'s
    /// generation writes the same bit, so a CAS that then fails is harmless.
    fn record_previous(&self, word: u32) {
        let bit = 1u64 << (generation(word).wrapping_sub(1) % 64);
        if word & LAST_BROKEN != 0 {
            self.history.fetch_or(bit, Ordering::Release);
        } else {
            self.history.fetch_and(!bit, Ordering::Release);
        }
    }

    /// Arrives and waits for the others. Returns the arrival index in
    /// `0..parties` (the last arrival gets `parties - 1`). `Broken` if the
    /// barrier is or becomes broken; `Timeout` if `deadline` passed, which
    /// breaks it for the others.
    pub fn wait<P: Park>(&self, park: &P, deadline: Deadline) -> Result<u32, Error> {
        let parties = self.parties();
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::Broken);
        }
        let mut word = self.word.load(Ordering::Acquire);
        let (index, gen) = loop {
            if is_broken(word) || count(word) >= parties {
                return Err(Error::Broken);
            }
            let index = count(word);
            if index + 1 == parties {
                self.record_previous(word);
                let next = next_generation(word, false);
                // SYNC POINT: every arrival's writes visible to every leaver.
                match self.word.compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        park.wake_all(&self.word);
                        return Ok(index);
                    }
                    Err(now) => word = now,
                }
            } else {
                match self.word.compare_exchange(
                    word,
                    word + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break (index, generation(word)),
                    Err(now) => word = now,
                }
            }
        };
        // Spinning only re-reads the word, which the loop below does
        // anyway: loom models the barrier without it (its extra yields
        // multiplied the states explored past the CI's budget).
        let mut spins = if cfg!(loom) || deadline.passed(park) { 0 } else { SPIN_LIMIT };
        loop {
            let word = self.word.load(Ordering::Acquire);
            let ahead = generation(word).wrapping_sub(gen) & GEN_MASK;
            if ahead == 1 {
                return if word & LAST_BROKEN != 0 { Err(Error::Broken) } else { Ok(index) };
            }
            if ahead > 1 {
                // Slept through later generations: ours is in the history
                // for 64 of them; past that, report passing.
                let broke =
                    ahead <= 64 && self.history.load(Ordering::Acquire) & (1 << (gen % 64)) != 0;
                return if broke { Err(Error::Broken) } else { Ok(index) };
            }
            if is_broken(word) {
                return Err(Error::Broken);
            }
            if spins > 0 {
                // The others are usually a few microseconds away: spin
                // before the futex (a sleep and a wake cost 2-60 us here).
                spins -= 1;
                spin_loop();
                continue;
            }
            let Some(remaining) = deadline.remaining(park) else {
                // Time is up: break the barrier for everyone of our generation.
                if self
                    .word
                    .compare_exchange(word, word | BROKEN, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    park.wake_all(&self.word);
                    return Err(Error::Timeout);
                }
                continue;
            };
            park.wait(&self.word, word, remaining);
        }
    }

    /// Breaks the barrier: current and future waiters get `Broken` until
    /// [`reset`](Self::reset).
    pub fn abort<P: Park>(&self, park: &P) {
        let word = self.word.fetch_or(BROKEN, Ordering::AcqRel);
        if !is_broken(word) {
            park.wake_all(&self.word);
        }
    }

    /// Returns the barrier to its empty state; waiters of the current
    /// generation get `Broken`.
    pub fn reset<P: Park>(&self, park: &P) {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word & (BROKEN | COUNT_MASK) == 0 {
                return;
            }
            self.record_previous(word);
            let next = next_generation(word, true);
            match self.word.compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    park.wake_all(&self.word);
                    return;
                }
                Err(now) => word = now,
            }
        }
    }
}
