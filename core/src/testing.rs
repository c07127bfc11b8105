//! A [`Park`] and [`Liveness`] for testing the algorithms with threads: a
//! futex emulated by a table of waiters under one mutex (shadow's
//! `vasi-sync` model of a futex), built from std's types natively and from
//! loom's under `--cfg loom`, where timed waits return at once after a yield
//! and the clock is virtual, so timeouts and owner checks are explored.
//!
//! Also `model` (exhaustive under loom, once natively) and the `thread` and
//! `Arc` to write each test once for both runs, and [`TestBytes`], a ring
//! data area whose every byte access loom checks for races.
//!
//! # Safety
//!
//! `TestBytes` under loom dereferences loom's `UnsafeCell` pointers inside
//! `with`/`with_mut`, which is loom's contract for checking them.
#![cfg_attr(loom, allow(unsafe_code))]

use crate::park::{Liveness, Park};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

#[cfg(loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(loom)]
pub use loom::{sync::Arc, thread};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex};
#[cfg(not(loom))]
pub use std::{sync::Arc, thread};

extern crate std;
use std::vec::Vec;

/// Runs `f` under loom's model checker, or once natively.
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    #[cfg(loom)]
    loom::model(f);
    #[cfg(not(loom))]
    f();
}

struct Waiter {
    addr: usize,
    ticket: u64,
    woken: bool,
}

#[derive(Default)]
struct Table {
    waiters: Vec<Waiter>,
    next_ticket: u64,
    dead: Vec<u32>,
}

/// The emulated futex. `CHECKS` is [`Liveness::CHECKS`]: with `false`, locks
/// park without periodic wake-ups, so a lost wake-up hangs (and loom reports
/// a deadlock) instead of being papered over by the next check.
pub struct TestPark<const CHECKS: bool> {
    table: Mutex<Table>,
    cv: Condvar,
    /// Nanoseconds of the virtual clock (loom only).
    clock: AtomicU64,
    /// Both halves of the store-load barrier are an RMW of this word: the
    /// RMWs are totally ordered, so of a waker and a waiter the later one
    /// synchronizes with the earlier (loom checks RMWs exactly, fences less
    /// so).
    barrier: AtomicU32,
    /// The readiness handle async waiters await, as a word bumped by each
    /// [`Park::notify_async`] (see [`await_bell`](Self::await_bell)).
    bell: AtomicU32,
    #[cfg(not(loom))]
    epoch: std::time::Instant,
}

impl<const CHECKS: bool> Default for TestPark<CHECKS> {
    fn default() -> Self {
        TestPark {
            table: Mutex::new(Table::default()),
            cv: Condvar::new(),
            clock: AtomicU64::new(0),
            barrier: AtomicU32::new(0),
            bell: AtomicU32::new(0),
            #[cfg(not(loom))]
            epoch: std::time::Instant::now(),
        }
    }
}

impl<const CHECKS: bool> TestPark<CHECKS> {
    /// Marks task `id` dead: [`Liveness::is_alive`] answers `false` for it.
    pub fn kill(&self, id: u32) {
        self.table.lock().unwrap().dead.push(id);
    }

    /// The readiness handle's state now: an async waiter reads it before it
    /// re-checks its condition (as the facade makes its handle's
    /// registration first), then [`await_bell`](Self::await_bell)s it.
    pub fn bell(&self) -> u32 {
        self.bell.load(Ordering::SeqCst)
    }

    /// Blocks until a [`Park::notify_async`] after `seen` (a [`bell`](Self::bell)):
    /// the async waiter's await, with the thread standing for its task.
    pub fn await_bell(&self, seen: u32) {
        while self.bell.load(Ordering::SeqCst) == seen {
            self.wait(&self.bell, seen, None);
        }
    }

    fn wake(&self, word: &AtomicU32, mut n: usize) {
        let addr = word as *const AtomicU32 as usize;
        let mut table = self.table.lock().unwrap();
        for w in table.waiters.iter_mut().filter(|w| w.addr == addr && !w.woken) {
            if n == 0 {
                break;
            }
            w.woken = true;
            n -= 1;
        }
        drop(table);
        self.cv.notify_all();
    }
}

impl<const CHECKS: bool> Park for TestPark<CHECKS> {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let addr = word as *const AtomicU32 as usize;
        let mut table = self.table.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        if let Some(timeout) = timeout {
            if cfg!(loom) {
                // A timed wait times out at once: loom has no time.
                drop(table);
                self.clock.fetch_add(timeout.as_nanos() as u64, Ordering::Relaxed);
                #[cfg(loom)]
                loom::thread::yield_now();
                return;
            }
        }
        let ticket = table.next_ticket;
        table.next_ticket += 1;
        table.waiters.push(Waiter { addr, ticket, woken: false });
        #[cfg(not(loom))]
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            let pos = table.waiters.iter().position(|w| w.ticket == ticket).unwrap();
            if table.waiters[pos].woken {
                table.waiters.remove(pos);
                return;
            }
            #[cfg(not(loom))]
            if let Some(deadline) = deadline {
                let now = std::time::Instant::now();
                if now >= deadline {
                    table.waiters.remove(pos);
                    return;
                }
                table = self.cv.wait_timeout(table, deadline - now).unwrap().0;
                continue;
            }
            table = self.cv.wait(table).unwrap();
        }
    }

    fn wake_one(&self, word: &AtomicU32) {
        self.wake(word, 1);
    }

    fn wake_all(&self, word: &AtomicU32) {
        self.wake(word, usize::MAX);
    }

    fn now(&self) -> Duration {
        #[cfg(not(loom))]
        if !cfg!(loom) {
            return self.epoch.elapsed();
        }
        // Every look at the virtual clock moves it on a little, so loops
        // that wait for a deadline end.
        Duration::from_nanos(self.clock.fetch_add(1_000_000, Ordering::Relaxed))
    }

    fn light_barrier(&self) {
        self.barrier.fetch_add(0, Ordering::AcqRel);
    }

    fn heavy_barrier(&self) {
        self.barrier.fetch_add(0, Ordering::AcqRel);
    }

    fn notify_async(&self, _word: &AtomicU32) {
        self.bell.fetch_add(1, Ordering::SeqCst);
        self.wake(&self.bell, usize::MAX);
    }
}

impl<const CHECKS: bool> Liveness for TestPark<CHECKS> {
    const CHECKS: bool = CHECKS;
    #[cfg(not(loom))]
    const CHECK_INTERVAL: Duration = Duration::from_millis(2);
    #[cfg(loom)]
    const CHECK_INTERVAL: Duration = Duration::from_millis(1);

    fn is_alive(&self, id: u32, _stamp: u32) -> bool {
        !self.table.lock().unwrap().dead.contains(&id)
    }
}

/// A ring data area for tests: relaxed atomic bytes natively, loom's
/// `UnsafeCell`s under loom (so a missing happens-before between the
/// producer's writes and the consumer's reads is reported as a race).
pub struct TestBytes {
    #[cfg(loom)]
    cells: Vec<loom::cell::UnsafeCell<u8>>,
    #[cfg(not(loom))]
    cells: Vec<std::sync::atomic::AtomicU8>,
}

#[cfg(loom)]
// SAFETY: every access goes through loom's UnsafeCell, which reports
// unsynchronized ones; that is what the models are for.
unsafe impl Sync for TestBytes {}

impl TestBytes {
    /// `len` zero bytes.
    pub fn new(len: usize) -> TestBytes {
        TestBytes { cells: (0..len).map(|_| Default::default()).collect() }
    }
}

impl crate::ring::Bytes for TestBytes {
    fn len(&self) -> usize {
        self.cells.len()
    }

    fn write(&self, offset: usize, src: &[u8]) {
        for (cell, &b) in self.cells[offset..offset + src.len()].iter().zip(src) {
            #[cfg(loom)]
            // SAFETY: loom checks this access against all others.
            cell.with_mut(|p| unsafe { *p = b });
            #[cfg(not(loom))]
            cell.store(b, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn read(&self, offset: usize, dst: &mut [u8]) {
        for (cell, b) in self.cells[offset..offset + dst.len()].iter().zip(dst) {
            #[cfg(loom)]
            // SAFETY: loom checks this access against all others.
            cell.with(|p| *b = unsafe { *p });
            #[cfg(not(loom))]
            {
                *b = cell.load(std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    // The in-place forms lend a copy: under loom each byte stays a cell
    // whose accesses are checked.
    fn write_in_place<R>(
        &self,
        offset: usize,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        let mut buf = vec![0; len];
        let out = fill(&mut buf);
        self.write(offset, &buf);
        out
    }

    fn read_in_place<R>(&self, offset: usize, len: usize, read: impl FnOnce(&[u8]) -> R) -> R {
        let mut buf = vec![0; len];
        self.read(offset, &mut buf);
        read(&buf)
    }
}
