//! Who we are, as lock words record it, and whether a recorded owner still
//! runs. Processes and threads share one id space on Windows (client ids),
//! and either can be opened by id from another process, so both are named
//! the same way: the id, stamped with the low 32 bits of the task's
//! creation time (100 ns units), which a reused id does not share.
//!
//! Liveness opens the id as a process, else as a thread: the task is alive
//! if it opens, has not exited (its handle is not signalled) and has the
//! stamp. An id that cannot be opened for lack of rights exists, so it is
//! alive (in doubt, never hand a lock to a second owner). Opening by id
//! still succeeds after a process ended while someone holds a handle to it
//! (seen under Wine), which is why the exit is checked on the handle.
#![allow(unsafe_code)]

use crate::sys;
use multiproc_core::lock::{Owner, ID_MASK};
use std::cell::Cell;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU32, Ordering};
use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, FILETIME, HANDLE, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetCurrentThread, GetCurrentThreadId, GetProcessTimes,
    GetThreadTimes, OpenProcess, OpenThread, WaitForSingleObject,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, THREAD_QUERY_LIMITED_INFORMATION,
    THREAD_SYNCHRONIZE,
};

static PID: AtomicU32 = AtomicU32::new(0);
static PID_STAMP: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static THREAD: Cell<Option<Owner>> = const { Cell::new(None) };
}

/// This process, as a lock word records it.
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
    // SAFETY: no preconditions; the pseudo-handle needs no closing.
    let (id, me) = unsafe { (GetCurrentProcessId(), GetCurrentProcess()) };
    let stamp = created(me, Kind::Process).map_or(1, stamp_of);
    PID_STAMP.store(stamp, Ordering::Relaxed);
    PID.store(id, Ordering::Relaxed);
    debug_assert!(id <= ID_MASK);
    Owner { id, stamp }
}

/// The calling thread, as an RLock records it.
#[inline]
pub fn thread() -> Owner {
    THREAD.with(|t| match t.get() {
        Some(owner) => owner,
        None => {
            // SAFETY: no preconditions; the pseudo-handle needs no closing.
            let (id, me) = unsafe { (GetCurrentThreadId(), GetCurrentThread()) };
            let owner = Owner { id, stamp: created(me, Kind::Thread).map_or(1, stamp_of) };
            t.set(Some(owner));
            owner
        }
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Process,
    Thread,
}

/// When the process or thread behind `handle` was created.
fn created(handle: HANDLE, kind: Kind) -> Option<u64> {
    let mut times = [FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 }; 4];
    let [c, e, k, u] = &mut times;
    // SAFETY: a handle with query rights and four valid out-pointers.
    let ok = unsafe {
        match kind {
            Kind::Process => GetProcessTimes(handle, c, e, k, u),
            Kind::Thread => GetThreadTimes(handle, c, e, k, u),
        }
    };
    (ok != 0).then(|| sys::filetime(times[0]))
}

/// The stamp of the process behind `handle` (opened with query rights).
pub(crate) fn stamp_of_process(handle: HANDLE) -> Option<u32> {
    created(handle, Kind::Process).map(stamp_of)
}

/// A creation time's stamp: its low bits, never 0 (0 means unknown).
fn stamp_of(created: u64) -> u32 {
    (created as u32).max(1)
}

/// Task `id` opened as `kind`: `Ok(None)` if there is no such task,
/// `Err(())` if it exists but is closed to us.
fn open(id: u32, kind: Kind) -> Result<Option<OwnedHandle>, ()> {
    // SAFETY: opening by id has no preconditions; the result is checked.
    let h = unsafe {
        match kind {
            Kind::Process => {
                OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE, 0, id)
            }
            Kind::Thread => {
                OpenThread(THREAD_QUERY_LIMITED_INFORMATION | THREAD_SYNCHRONIZE, 0, id)
            }
        }
    };
    match sys::owned(h) {
        Ok(h) => Ok(Some(h)),
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => Err(()),
        Err(_) => Ok(None),
    }
}

/// Whether task `id` runs and, if `stamp != 0`, is the task that recorded
/// it.
pub fn is_alive(id: u32, stamp: u32) -> bool {
    if id == 0 {
        return false;
    }
    for kind in [Kind::Process, Kind::Thread] {
        match open(id, kind) {
            Err(()) => return true,
            Ok(None) => continue,
            Ok(Some(h)) => {
                let raw = h.as_raw_handle() as HANDLE;
                // SAFETY: a handle with SYNCHRONIZE rights, not waited long.
                let running = unsafe { WaitForSingleObject(raw, 0) } == WAIT_TIMEOUT;
                return running && (stamp == 0 || created(raw, kind).map(stamp_of) == Some(stamp));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_and_own_thread_are_alive_and_stamped() {
        let me = process();
        assert_eq!(me.id, std::process::id());
        assert!(is_alive(me.id, me.stamp));
        assert!(!is_alive(me.id, me.stamp.wrapping_add(1).max(1)));
        let t = thread();
        assert!(is_alive(t.id, t.stamp));
        assert!(!is_alive(0, 0));
        let other = std::thread::spawn(thread).join().unwrap();
        assert!(!is_alive(other.id, other.stamp), "a thread that ended");
    }
}
