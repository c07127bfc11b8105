//! Park/wake on the futex system call, through rustix, with *shared* ops (no
//! `FUTEX_PRIVATE_FLAG`): the words live in memory mapped by several
//! processes, and a private futex would never wake a waiter in another one.
//! The futex is the one Linux call that compares a word and sleeps
//! atomically, which is exactly [`Park::wait`]'s contract.

use multiproc_core::sync::AtomicU32;
use multiproc_core::{Liveness, Park};
use rustix::thread::{futex, membarrier, MembarrierCommand};
use rustix::time::{clock_gettime, ClockId, Timespec};
use std::sync::atomic::{compiler_fence, fence, AtomicU32 as StdAtomicU32, Ordering};
use std::time::Duration;

/// The Linux OS services `core` asks for. Zero-sized: every call is a system
/// call or a read of `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl Park for Os {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let timespec = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        // EAGAIN (the word changed), EINTR and ETIMEDOUT are all returns the
        // caller handles by re-checking: `wait` may return spuriously.
        let _ = futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref());
    }

    fn wake_one(&self, word: &AtomicU32) {
        // Fine if the word's page is gone from under a waiter: the kernel
        // then wakes no one.
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }

    fn wake_all(&self, word: &AtomicU32) {
        let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
    }

    fn now(&self) -> Duration {
        let t = clock_gettime(ClockId::Monotonic);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[inline]
    fn light_barrier(&self) {
        if BARRIER_PID.load(Ordering::Relaxed) == crate::ident::process().id {
            // Every parker's `heavy_barrier` makes this thread run a full
            // barrier (or it is off CPU, which is one), so the compiler is
            // all that must not reorder here.
            compiler_fence(Ordering::SeqCst);
        } else {
            light_barrier_slow();
        }
    }

    fn heavy_barrier(&self) {
        if membarrier(MembarrierCommand::GlobalExpedited).is_err() {
            // Registered wakers then count on the 10 ms liveness checks of
            // every parker: a wake-up can be late, never lost for good.
            fence(Ordering::SeqCst);
        }
    }
}

/// The process registered to receive `membarrier(GLOBAL_EXPEDITED)`
/// barriers (0: none), which lets its wakers skip the full fence (Dekker's
/// store-load barrier, 20-30 ns on x86, and a wait for every store in
/// flight) on every publish: the rare parker pays a system call instead.
/// Kept as a pid, so a forked child (whose pid differs) registers itself
/// rather than trust an inherited flag; exec starts over anyway.
static BARRIER_PID: StdAtomicU32 = StdAtomicU32::new(0);
/// The kernel refused to register this process (then it fences).
static BARRIER_REFUSED: StdAtomicU32 = StdAtomicU32::new(0);

#[cold]
fn light_barrier_slow() {
    // A full fence for this call: the registration may not cover it.
    fence(Ordering::SeqCst);
    let pid = crate::ident::process().id;
    if BARRIER_REFUSED.load(Ordering::Relaxed) == pid {
        return;
    }
    if membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok() {
        BARRIER_PID.store(pid, Ordering::Relaxed);
    } else {
        BARRIER_REFUSED.store(pid, Ordering::Relaxed);
    }
}

impl Liveness for Os {
    fn is_alive(&self, id: u32, stamp: u32) -> bool {
        crate::ident::is_alive(id, stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wait_times_out_and_returns_on_mismatch() {
        let word = AtomicU32::new(5);
        let t = Instant::now();
        Os.wait(&word, 5, Some(Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(15));
        Os.wait(&word, 4, None); // returns at once: the word differs
        Os.wake_one(&word);
        Os.wake_all(&word);
        assert!(Os.now() > Duration::ZERO);
    }

    #[test]
    #[allow(unsafe_code)]
    fn barriers_register_once_per_process() {
        Os.light_barrier();
        Os.heavy_barrier();
        let me = crate::ident::process().id;
        let registered = BARRIER_PID.load(Ordering::Relaxed) == me;
        assert!(registered || BARRIER_REFUSED.load(Ordering::Relaxed) == me);
        if registered {
            // A forked child registers itself rather than trust the copy.
            // SAFETY: the child only touches atomics, makes system calls
            // and reads /proc (glibc's malloc is fork-safe), then `_exit`s.
            match unsafe { crate::child::fork() }.unwrap() {
                crate::child::Forked::Child => {
                    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
                    let inherited = BARRIER_PID.load(Ordering::Relaxed);
                    Os.light_barrier();
                    let ok = inherited != pid && BARRIER_PID.load(Ordering::Relaxed) == pid;
                    // SAFETY: ends the forked child without running the
                    // parent's exit handlers.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
                }
                crate::child::Forked::Parent(mut child) => {
                    let code = child.wait_timeout(Some(Duration::from_secs(20))).unwrap();
                    assert_eq!(code, Some(0));
                }
            }
        }
    }
}
