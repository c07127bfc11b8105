//! The two things `core` needs from an operating system: parking on a shared
//! 32-bit word ([`Park`]) and telling whether a lock's owner still runs
//! ([`Liveness`]). Backends implement them; `core` stays platform-free.

use crate::sync::{fence, AtomicU32, Ordering};
use core::time::Duration;

/// Wait on and wake a 32-bit word that may be shared between processes.
///
/// Implementations must wait on *shared* words: no `FUTEX_PRIVATE_FLAG`, no
/// `WaitOnAddress` (which wakes only threads of one process).
pub trait Park {
    /// Blocks while `*word == expected`, for at most `timeout` (`None`: no
    /// limit). The comparison and the sleep are atomic with respect to
    /// [`wake_one`](Park::wake_one)/[`wake_all`](Park::wake_all).
    /// May return spuriously; callers re-check their condition.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes at most one waiter parked on `word`. Fine if none is parked.
    fn wake_one(&self, word: &AtomicU32);
    /// Wakes every waiter parked on `word`. Fine if none is parked.
    fn wake_all(&self, word: &AtomicU32);
    /// A monotonic clock, for deadlines. Only differences are meaningful.
    fn now(&self) -> Duration;

    /// The waker's half of a store-load barrier: called between publishing
    /// progress and reading whether anyone parked, so that either the waker
    /// sees the waiter's registration or the waiter, after its
    /// [`heavy_barrier`](Park::heavy_barrier), sees the progress (Dekker).
    /// It runs on every fast path, so a backend may make it cheap and put
    /// the cost on `heavy_barrier` (Linux: a compiler fence here, and
    /// `membarrier` there). The default is a full fence.
    #[inline]
    fn light_barrier(&self) {
        fence(Ordering::SeqCst);
    }

    /// Gives up the CPU to another runnable task, if there is one: what a
    /// spin-wait does once its first pauses did not see the hand-off (its
    /// peer may be waiting for this very CPU). The default pauses.
    #[inline]
    fn yield_now(&self) {
        crate::sync::spin_loop();
    }

    /// The waiter's half: called after registering as a waiter and before
    /// re-checking the condition it is about to park on. Only slow paths
    /// (about to sleep) call it. The default is a full fence.
    #[inline]
    fn heavy_barrier(&self) {
        fence(Ordering::SeqCst);
    }

    /// Tells the *async* waiters of the object `word` belongs to that what
    /// they wait for may have happened: called (instead of, or beside, a
    /// wake) when a waiter count says some are registered
    /// ([`ASYNC_WAITER`]). An async waiter does not park on the word: it
    /// awaits a readiness handle of the object (Linux: an eventfd) that
    /// this signals; the backend finds the object by the word's address.
    /// The default does nothing (no async waiters exist).
    #[inline]
    fn notify_async(&self, word: &AtomicU32) {
        let _ = word;
    }
}

/// What an async waiter adds to a primitive's waiter count: blocking
/// waiters (threads parked on the word) count in the low 16 bits, async
/// ones (tasks awaiting the object's readiness handle) in the high 16. A
/// waker reads the one word, as before, and makes a wake system call only
/// for parked threads and a [`Park::notify_async`] only for async waiters:
/// one that finds neither pays nothing more than it did.
pub const ASYNC_WAITER: u32 = 1 << 16;

/// Async waiters one count can hold.
pub const MAX_ASYNC_WAITERS: u32 = u32::MAX / ASYNC_WAITER;

/// Wakes whoever a waiter count `count` (as [`ASYNC_WAITER`] describes)
/// says waits on `word`: one parked thread (`all` false) or every one, and
/// the async waiters.
#[inline]
pub(crate) fn wake_counted<P: Park + ?Sized>(park: &P, word: &AtomicU32, count: u32, all: bool) {
    if count % ASYNC_WAITER != 0 {
        if all {
            park.wake_all(word);
        } else {
            park.wake_one(word);
        }
    }
    if count >= ASYNC_WAITER {
        park.notify_async(word);
    }
}

/// Registers one async waiter in `count` (`false`, registering nothing,
/// if it holds [`MAX_ASYNC_WAITERS`] already). SeqCst, as the blocking
/// registrations it stands beside.
pub(crate) fn add_async_waiter(count: &AtomicU32) -> bool {
    let mut now = count.load(Ordering::Relaxed);
    loop {
        if now / ASYNC_WAITER >= MAX_ASYNC_WAITERS {
            return false;
        }
        match count.compare_exchange_weak(
            now,
            now.wrapping_add(ASYNC_WAITER),
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(seen) => now = seen,
        }
    }
}

/// Unregisters an async waiter [`add_async_waiter`] registered.
pub(crate) fn remove_async_waiter(count: &AtomicU32) {
    count.fetch_sub(ASYNC_WAITER, Ordering::SeqCst);
}

/// Tells whether the task that owns a lock is still running.
pub trait Liveness {
    /// `false` where owners cannot die without their peers (threads of one
    /// process in tests): the lock then parks without periodic checks.
    const CHECKS: bool = true;
    /// How long a waiter parks before it checks the owner again.
    const CHECK_INTERVAL: Duration = Duration::from_millis(10);
    /// Whether task `id` runs and, when `stamp != 0`, is the same task that
    /// recorded `stamp` (its start time), so a reused id reads as dead.
    /// A zombie is dead. When in doubt, answer `true`: a wrong `false` hands
    /// a held lock to a second owner.
    fn is_alive(&self, id: u32, stamp: u32) -> bool;
}

/// An absolute point on [`Park::now`]'s clock, or none.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Option<Duration>);

impl Deadline {
    /// No deadline: block until the condition holds.
    pub const NEVER: Deadline = Deadline(None);

    /// `timeout` from now (saturating).
    pub fn after<P: Park + ?Sized>(park: &P, timeout: Duration) -> Deadline {
        Deadline(Some(park.now().saturating_add(timeout)))
    }

    /// Already passed: for `try_` forms.
    pub fn now<P: Park + ?Sized>(park: &P) -> Deadline {
        Deadline(Some(park.now()))
    }

    /// Passed before any moment the clock gives: for `try_` forms and
    /// attempts, which then never read the clock to learn it.
    pub const PASSED: Deadline = Deadline(Some(Duration::ZERO));

    /// Time left, `Some(None)` for no deadline, `None` when it has passed.
    #[inline]
    pub fn remaining<P: Park + ?Sized>(&self, park: &P) -> Option<Option<Duration>> {
        match self.0 {
            None => Some(None),
            Some(at) if at.is_zero() => None,
            Some(at) => {
                let now = park.now();
                if now >= at {
                    None
                } else {
                    Some(Some(at - now))
                }
            }
        }
    }

    /// Whether this deadline exists and has passed.
    pub fn passed<P: Park + ?Sized>(&self, park: &P) -> bool {
        self.remaining(park).is_none()
    }
}

/// Parks on `word` (while it holds `expected`) for one slice: until
/// `deadline`, and no longer than [`Liveness::CHECK_INTERVAL`] where owners
/// or peers are checked. `false`, without parking, if the deadline passed.
pub(crate) fn park_slice<O: Park + Liveness>(
    os: &O,
    word: &AtomicU32,
    expected: u32,
    deadline: Deadline,
) -> bool {
    let Some(remaining) = deadline.remaining(os) else {
        return false;
    };
    let slice = if O::CHECKS { min_timeout(remaining, Some(O::CHECK_INTERVAL)) } else { remaining };
    os.wait(word, expected, slice);
    true
}

/// The shorter of two optional timeouts (`None` is infinite).
#[inline]
pub(crate) fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
