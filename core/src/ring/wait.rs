//! How a side of the SPSC ring waits: the spin policy of one blocking call
//! ([`Waiting`]), and the [`Signal`] each direction of waking parks on.

use crate::park::{add_async_waiter, remove_async_waiter, Deadline, Park, ASYNC_WAITER};
use crate::sync::{
    spin_loop, AtomicU32, Ordering, SpinBudget, PAUSES_BEFORE_YIELD, SPIN_LIMIT, YIELD_COST,
};

/// The progress of one blocking call: spins left, last liveness check.
#[derive(Debug)]
pub struct Waiting {
    /// Pauses left before parking.
    pub(super) spins: u32,
    /// Pauses between two looks, when backing off.
    pub(super) pace: u32,
    /// Yield the CPU before each look once [`PAUSES_BEFORE_YIELD`] pauses
    /// are spent (a side that batches, a Queue's: see [`Waiting::spin`]).
    pub(super) yields: bool,
    /// Pauses made so far.
    paused: u32,
    /// The budget this call started with.
    budget: u32,
    last_check: Option<core::time::Duration>,
}

/// How often a spinning side looks at the other's index.
#[derive(Clone, Copy)]
pub(super) enum SpinPace {
    /// Every `pace` pauses: a consumer waiting for data. 1 where latency
    /// counts (a Pipe); [`BATCH_PACE`] for a reader that asked to batch (a
    /// Queue), which lets a producer fill some lines before the consumer
    /// pulls them: a consumer that looked at every pause pulled each
    /// message's lines alone, and a typed 1-to-1 Queue ran at 4 M msg/s
    /// instead of 9.
    Steady,
    /// Ever less often ([`FIRST_PACE`], twice that … [`MAX_PACE`] pauses):
    /// a producer waiting for space. Each look pulls `head`'s line from the
    /// consumer's core, and the consumer's next store of `head` then waits
    /// for it back: a producer that looked at every pause slowed a
    /// draining consumer from 12 to 4 M frames/s.
    Backoff,
}

/// Pauses before a full producer's second look at `head` (a pause is
/// 10-140 cycles, by CPU).
pub(super) const FIRST_PACE: u32 = 64;
/// The most pauses between two looks at `head`.
pub(super) const MAX_PACE: u32 = 256;

/// Pauses between a batching consumer's looks at `tail` (0.75 µs on a CPU
/// whose pause is 12 ns; ~3 µs where it is 140 cycles): the most a get
/// that finds a Queue empty waits beyond the put it waits for.
pub(super) const BATCH_PACE: u32 = 64;

/// A producer waiting for space spins this many times longer than a
/// consumer waiting for data.
pub(super) const BACKOFF_BUDGET: u32 = 8;

impl Waiting {
    /// A new blocking call: it spins first (unless its deadline has passed
    /// already: a `try_` form does not spin), and checks the peer at its
    /// first park, then every `interval`.
    pub fn new<P: Park>(park: &P, deadline: Deadline) -> Waiting {
        Waiting::with_budget(park, deadline, SPIN_LIMIT)
    }

    /// A new blocking call that spins at most `pauses` pauses.
    pub fn with_budget<P: Park>(park: &P, deadline: Deadline, pauses: u32) -> Waiting {
        let spins = if deadline.passed(park) { 0 } else { pauses };
        Waiting { spins, pace: 1, yields: false, paused: 0, budget: spins, last_check: None }
    }

    /// Teaches `budget` what this call's spin came to: the pauses it
    /// spent, and whether it ran out of them (and parked or gave up).
    pub(super) fn teach(&self, budget: &mut SpinBudget) {
        if self.budget > 0 {
            budget.learn(self.budget - self.spins, self.spins == 0);
        }
    }

    /// Spins once more (`true`), or reports that the spin budget is spent.
    ///
    /// A side that `yields` gives up its CPU before each look once it has
    /// paused [`PAUSES_BEFORE_YIELD`] times, each yield counted as
    /// [`YIELD_COST`] pauses: on an oversubscribed machine (a Queue's 4
    /// producers and 4 consumers on 2 cores) the peer it waits for may be
    /// waiting for this very CPU. Measured beside two busy loops on 2
    /// cores, a 4->4 Queue moved 4.4 M msg/s without these yields, 7.5
    /// with them. A latency side (a Pipe) does not yield: there the peer
    /// usually runs on the other core, and a yield hands this one to an
    /// unrelated task for a whole time slice (a Pipe round trip went from
    /// 2 to 73 µs that way under the same load).
    pub(super) fn spin<P: Park>(&mut self, park: &P, pace: SpinPace) -> bool {
        if self.spins == 0 {
            return false;
        }
        let n = match pace {
            SpinPace::Steady => self.pace.min(self.spins),
            SpinPace::Backoff => {
                let n = self.pace.min(self.spins);
                self.pace = (self.pace * 2).min(MAX_PACE);
                n
            }
        };
        let (pauses, cost) = if self.yields && self.paused >= PAUSES_BEFORE_YIELD {
            park.yield_now();
            (n.saturating_sub(YIELD_COST), n.max(YIELD_COST))
        } else {
            (n, n)
        };
        self.spins = self.spins.saturating_sub(cost);
        self.paused = self.paused.saturating_add(pauses);
        for _ in 0..pauses {
            spin_loop();
        }
        true
    }

    pub(super) fn check_due<P: Park>(&mut self, park: &P, interval: core::time::Duration) -> bool {
        let now = park.now();
        let due = self.last_check.is_none_or(|last| now.saturating_sub(last) >= interval);
        if due {
            self.last_check = Some(now);
        }
        due
    }
}

/// One direction of waking: a futex word and how many may park on it.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Signal {
    /// Bumped by the other side after progress that may have a waiter.
    pub(super) seq: AtomicU32,
    /// Waiters registered to park on `seq` (threads), or to await the
    /// object's readiness handle (tasks, counted as [`ASYNC_WAITER`]s).
    waiting: AtomicU32,
}


impl Signal {
    /// Registers a waiter, and returns the value of `seq` to park on. The
    /// caller then re-checks its condition, parks, and unregisters.
    pub(super) fn register<P: Park>(&self, park: &P) -> u32 {
        let seq = self.seq.load(Ordering::Acquire);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // SYNC POINT: the registration and the re-check that follows are
        // ordered against `notify`'s publish and read of `waiting`.
        park.heavy_barrier();
        seq
    }

    pub(super) fn unregister(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Registers an async waiter, which the caller then re-checks its
    /// condition for and, if it does not hold, awaits the readiness handle
    /// (after making it, so that a notify from here on reaches it). `false`
    /// if the count is full.
    pub(super) fn register_async<P: Park>(&self, park: &P) -> bool {
        let added = add_async_waiter(&self.waiting);
        // SYNC POINT: as in `register`.
        park.heavy_barrier();
        added
    }

    pub(super) fn unregister_async(&self) {
        remove_async_waiter(&self.waiting);
    }

    /// Called after publishing progress: wakes whoever parked or awaits,
    /// and makes no system call when nobody does.
    pub(super) fn notify<P: Park>(&self, park: &P) {
        // SYNC POINT: the waker's half of the Dekker pair with `register`.
        park.light_barrier();
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting > 0 {
            self.seq.fetch_add(1, Ordering::Release);
            crate::park::wake_counted(park, &self.seq, waiting, true);
        }
    }

    /// After a side closed (and bumped `seq`): wakes every parked thread,
    /// and the async waiters if any are registered.
    pub(super) fn notify_closed<P: Park>(&self, park: &P) {
        self.seq.fetch_add(1, Ordering::Release);
        park.wake_all(&self.seq);
        park.light_barrier();
        if self.waiting.load(Ordering::Relaxed) >= ASYNC_WAITER {
            park.notify_async(&self.seq);
        }
    }
}

