//! Who we are, as lock words record it, and whether a recorded owner still
//! runs. A task (process or thread) is named by its pid-namespace id and a
//! *stamp*: the low 32 bits of its start time in clock ticks since boot
//! (`/proc/<id>/stat`, field 22), which a reused id does not share.
//!
//! The ids are cached (getpid is a system call, and a lock's fast path must
//! not make one); a `pthread_atfork` child handler clears the caches, so a
//! forked child answers with its own ids. All processes that share a lock
//! must be in one pid namespace.
#![allow(unsafe_code)]

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
            let id = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let stamp = read_stamp(id).map(|(_, stamp)| stamp).unwrap_or(1);
            let owner = Owner { id, stamp };
            t.set(Some(owner));
            owner
        }
    })
}

/// The stamp of a start time: its low 32 bits, never 0 (0 means unknown).
fn stamp_of(start_ticks: u64) -> u32 {
    (start_ticks as u32).max(1)
}

/// Reads `/proc/<id>/stat`: the task's state letter and stamp; `None` if no
/// such task exists.
pub fn read_stamp(id: u32) -> Option<(u8, u32)> {
    let stat = std::fs::read(format!("/proc/{id}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses a `/proc/<id>/stat` line: `pid (comm) state ppid ... starttime ...`.
/// The command name may hold spaces and parentheses, so fields are counted
/// from the last `)`.
fn parse_stat(stat: &[u8]) -> Option<(u8, u32)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // `state` is field 3; `starttime` is field 22.
    let start: u64 = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, stamp_of(start)))
}

/// Whether task `id` runs and, if `stamp != 0`, is the task that recorded it.
/// Zombies and dead tasks are dead; an unreadable `/proc` entry for an
/// existing task is alive (in doubt, never hand a lock to a second owner).
pub fn is_alive(id: u32, stamp: u32) -> bool {
    if id == 0 {
        return false;
    }
    match read_stamp(id) {
        Some((state, now)) => !matches!(state, b'Z' | b'X' | b'x') && (stamp == 0 || now == stamp),
        None => std::path::Path::new(&format!("/proc/{id}")).exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_odd_command_names() {
        let line = b"42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        assert_eq!(parse_stat(line), Some((b'R', 987654)));
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
