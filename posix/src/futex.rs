//! Park/wake on the futex system call, through rustix, with *shared* ops (no
//! `FUTEX_PRIVATE_FLAG`): the words live in memory mapped by several
//! processes, and a private futex would never wake a waiter in another one.
//! The futex is the one Linux call that compares a word and sleeps
//! atomically, which is exactly [`Park::wait`]'s contract.

use multiproc_core::sync::AtomicU32;
use multiproc_core::{Liveness, Park};
use rustix::thread::futex;
use rustix::time::{clock_gettime, ClockId, Timespec};
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
}
