//! Who we are, as lock words record it, and whether a recorded owner still
//! runs. A task is named by its id and a *stamp* of its start time, which a
//! reused id does not share:
//! - Linux: processes and threads alike by their pid-namespace id, stamped
//!   with the low 32 bits of the start time in clock ticks since boot
//!   (`/proc/<id>/stat`, field 22).
//! - macOS and FreeBSD: a process by its pid, stamped with the low 31 bits
//!   of its start time in microseconds (`proc_pidinfo`, `kern.proc.pid`).
//!   Another process's threads cannot be looked up there, so a thread (an
//!   RLock's owner) is named by its system-wide thread id with the stamp
//!   [`THREAD_MARK`]` | pid`: it counts as alive while its process runs. A
//!   thread that ends holding an RLock is noticed only when its process
//!   ends.
//!
//! Liveness: the process table says whether the task exists, is a zombie,
//! and started when the stamp says; the portable path (`--cfg
//! multiproc_portable`) asks `kill(id, 0)` first, as the other Unixes do.
//!
//! The ids are cached (getpid is a system call, and a lock's fast path must
//! not make one); a `pthread_atfork` child handler clears the caches, so a
//! forked child answers with its own ids. All processes that share a lock
//! must be in one pid namespace.
#![allow(unsafe_code)]

use crate::sys;
use multiproc_core::lock::{Owner, ID_MASK};
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

static PID: AtomicU32 = AtomicU32::new(0);
static PID_STAMP: AtomicU32 = AtomicU32::new(0);
static ATFORK: Once = Once::new();

thread_local! {
    static THREAD: Cell<Option<Owner>> = const { Cell::new(None) };
}

extern "C" fn forget_ids_in_child() {
    PID.store(0, Ordering::Relaxed);
    PID_STAMP.store(0, Ordering::Relaxed);
    let _ = THREAD.try_with(|t| t.set(None));
}

fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: the handler only stores to atomics and this thread's TLS,
        // both valid in a freshly forked child; registering has no other
        // precondition.
        unsafe { libc::pthread_atfork(None, None, Some(forget_ids_in_child)) };
    });
}

/// This process, as a [`RawLock`](multiproc_core::lock::RawLock) records it.
#[inline]
pub fn process() -> Owner {
    let id = PID.load(Ordering::Relaxed);
    if id != 0 {
        return Owner { id, stamp: PID_STAMP.load(Ordering::Relaxed) };
    }
    process_slow()
}

#[cold]
fn process_slow() -> Owner {
    register_atfork();
    let id = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let stamp = read_stamp(id).map(|(_, stamp)| stamp).unwrap_or(1);
    PID_STAMP.store(stamp, Ordering::Relaxed);
    PID.store(id, Ordering::Relaxed);
    debug_assert!(id <= ID_MASK);
    Owner { id, stamp }
}

/// The calling thread, as an [`RawRLock`](multiproc_core::rlock::RawRLock)
/// records it.
#[inline]
pub fn thread() -> Owner {
    THREAD.with(|t| match t.get() {
        Some(owner) => owner,
        None => {
            register_atfork();
            let owner = this_thread();
            t.set(Some(owner));
            owner
        }
    })
}

/// The stamp of a thread owner where threads are named by their process
/// (not Linux): this bit, and the process's pid.
pub const THREAD_MARK: u32 = 1 << 31;

/// The calling thread as an owner (see the module's docs).
fn this_thread() -> Owner {
    let tid = sys::thread_id();
    if cfg!(target_os = "linux") {
        Owner { id: tid, stamp: read_stamp(tid).map(|(_, stamp)| stamp).unwrap_or(1) }
    } else {
        Owner { id: (tid & ID_MASK).max(1), stamp: THREAD_MARK | std::process::id() }
    }
}

/// The stamp of a start time: its low bits, never 0 (0 means unknown); 31
/// of them where [`THREAD_MARK`] marks thread owners.
fn stamp_of(start: u64) -> u32 {
    let bits = if cfg!(target_os = "linux") { start as u32 } else { start as u32 & !THREAD_MARK };
    bits.max(1)
}

/// Task `id`'s state letter (`Z` for a zombie) and stamp; `None` if no such
/// task exists.
pub fn read_stamp(id: u32) -> Option<(u8, u32)> {
    let task = sys::task(id)?;
    Some((if task.zombie { b'Z' } else { b'R' }, stamp_of(task.start)))
}

/// Whether task `id` runs and, if `stamp != 0`, is the task that recorded it.
/// Zombies and dead tasks are dead; an existing task whose entry cannot be
/// read is alive (in doubt, never hand a lock to a second owner).
pub fn is_alive(id: u32, stamp: u32) -> bool {
    if id == 0 {
        return false;
    }
    if !cfg!(target_os = "linux") && stamp & THREAD_MARK != 0 {
        let pid = stamp & !THREAD_MARK;
        return sys::process_exists(pid) && !sys::task(pid).is_some_and(|t| t.zombie);
    }
    if cfg!(multiproc_portable) && !sys::process_exists(id) {
        return false;
    }
    match read_stamp(id) {
        Some((state, now)) => state != b'Z' && (stamp == 0 || now == stamp),
        None => sys::task_listed(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn parses_odd_command_names() {
        use crate::sys::{parse_stat, Task};
        let line = b"42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        assert_eq!(parse_stat(line), Some(Task { zombie: false, start: 987654 }));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) R 1"), None);
    }

    #[test]
    fn self_is_alive_and_stamped() {
        let me = process();
        assert_eq!(me.id, std::process::id());
        assert!(is_alive(me.id, me.stamp));
        assert!(!is_alive(me.id, me.stamp.wrapping_add(1).max(1)));
        let t = thread();
        assert!(is_alive(t.id, t.stamp));
        assert!(!is_alive(0, 0));
    }
}
