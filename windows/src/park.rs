//! Parking across processes on Windows.
//!
//! Windows has no wait-on-address that crosses processes: `WaitOnAddress`
//! wakes only threads of the waker's process, and keyed events do not match
//! across processes (both seen under Wine). So every segment carries its
//! own slow path: [`BUCKETS`](crate::shm) named semaphores, made on first
//! use, and in its trailer page a waiter count per bucket. A word parks in
//! the bucket its offset picks:
//!
//! - wait: count in, full fence, re-check the word, sleep on the semaphore,
//!   count out;
//! - wake: full fence, read the count, release that many permits.
//!
//! Either the waker sees the count, or the waiter sees the new value (the
//! fences make a Dekker pair), so a wake is not lost to a waiter that is
//! about to sleep. A wake releases every waiter of the bucket (words share
//! buckets; waking more than asked is a spurious wake, which the contract
//! allows), so `wake_one` and `wake_all` are the same here.
//!
//! What a semaphore cannot do is tell whose permit it holds: a thread that
//! counts itself in after a wake was counted can take a permit meant for
//! one counted before, which then sleeps on. So no sleep here is longer
//! than [`SLICE`]: such a waiter finds its word changed at its next look.
//! Permits left by a waiter that timed out before taking one are taken by
//! the bucket's next waiter as one spurious wake each.
//!
//! The uncontended paths of `core` make no call here (they count waiters
//! of their own and call `wake_*` only when someone parked), and the
//! barriers are `core`'s default full fences: Windows's
//! `FlushProcessWriteBuffers` reaches only this process's threads.
#![allow(unsafe_code)]

use crate::shm::Parking;
use crate::sys;
use multiproc_core::sync::AtomicU32;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Threading::{ReleaseSemaphore, WaitForSingleObject};

/// The longest single sleep (see the module's docs).
pub const SLICE: Duration = Duration::from_millis(20);

/// The OS services `core` asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl multiproc_core::Park for Os {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let slice = timeout.map_or(SLICE, |t| t.min(SLICE));
        let Some((parking, b)) = Parking::find(word as *const AtomicU32 as usize) else {
            // Not in a segment (never so for the facade's objects): nap.
            std::thread::sleep(slice.min(Duration::from_millis(1)));
            return;
        };
        let Some(sem) = parking.semaphore(b) else {
            std::thread::sleep(slice.min(Duration::from_millis(1)));
            return;
        };
        let bucket = parking.bucket(b);
        bucket.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if word.load(Ordering::SeqCst) == expected {
            sleep_on(sem, slice);
        }
        bucket.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn wake_one(&self, word: &AtomicU32) {
        wake(word);
    }

    fn wake_all(&self, word: &AtomicU32) {
        wake(word);
    }

    fn notify_async(&self, word: &AtomicU32) {
        crate::bell::ring(word);
    }

    fn yield_now(&self) {
        std::thread::yield_now();
    }

    fn now(&self) -> Duration {
        use std::sync::OnceLock;
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed()
    }
}

fn sleep_on(sem: HANDLE, timeout: Duration) {
    // SAFETY: a semaphore handle its segment's parking owns (alive while
    // the caller holds a word of the segment).
    unsafe { WaitForSingleObject(sem, sys::millis(Some(timeout))) };
}

/// Wakes every waiter counted in a bucket of the segment `word` lies in,
/// `bucket(the word's own)` (that one, or the bell's): a full fence, the
/// count read, that many permits released.
pub(crate) fn release(word: &AtomicU32, bucket: impl FnOnce(usize) -> usize) {
    fence(Ordering::SeqCst);
    let Some((parking, b)) = Parking::find(word as *const AtomicU32 as usize) else { return };
    let b = bucket(b);
    let waiters = parking.bucket(b).waiters.load(Ordering::SeqCst);
    if waiters == 0 {
        return;
    }
    if let Some(sem) = parking.semaphore(b) {
        let n = i32::try_from(waiters).unwrap_or(i32::MAX);
        // SAFETY: as in `sleep_on`; a count past the maximum fails,
        // harmlessly (the semaphore is signaled anyway).
        unsafe { ReleaseSemaphore(sem, n, std::ptr::null_mut()) };
    }
}

fn wake(word: &AtomicU32) {
    release(word, |b| b);
}

impl multiproc_core::Liveness for Os {
    fn is_alive(&self, id: u32, stamp: u32) -> bool {
        crate::ident::is_alive(id, stamp)
    }
}
