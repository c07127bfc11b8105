//! Park/wake on a 32-bit word in shared memory, with the *shared* (not
//! process-private) form of each system's wait-on-address call: the words
//! live in memory mapped by several processes, and a private wait would
//! never see a waker in another one. Each call compares the word and sleeps
//! atomically, which is exactly [`Park::wait`]'s contract.
//!
//! - Linux: the futex system call (through rustix), without
//!   `FUTEX_PRIVATE_FLAG`.
//! - macOS: `os_sync_wait_on_address` and `os_sync_wake_by_address_*` with
//!   the shared flag where the system has them (14.4+, looked up at run
//!   time), else `__ulock_wait2`/`__ulock_wake` with
//!   `UL_COMPARE_AND_WAIT_SHARED` (11+), what libc++ parks on there.
//! - FreeBSD: `_umtx_op` with `UMTX_OP_WAIT_UINT`/`UMTX_OP_WAKE` (the
//!   non-`_PRIVATE` ops are the shared ones).
//!
//! The release path's store-load barrier: on native Linux wakers pay only a
//! compiler fence and parkers a `membarrier`; elsewhere (and on the portable
//! path) both pay a full fence, `core`'s default.
#![allow(unsafe_code)]

use multiproc_core::sync::AtomicU32;
use multiproc_core::{Liveness, Park};
use std::time::Duration;

/// The OS services `core` asks for. Zero-sized: every call is a system call
/// (or a read of the process table).
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl Park for Os {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        // The word changed, a signal, the timeout: all are returns the
        // caller handles by re-checking (`wait` may return spuriously).
        word_wait(word, expected, timeout);
    }

    fn wake_one(&self, word: &AtomicU32) {
        // Fine if the word's page is gone from under a waiter: the kernel
        // then wakes no one.
        word_wake(word, false);
    }

    fn wake_all(&self, word: &AtomicU32) {
        word_wake(word, true);
    }

    fn yield_now(&self) {
        std::thread::yield_now();
    }

    fn now(&self) -> Duration {
        use rustix::time::{clock_gettime, ClockId};
        let t = clock_gettime(ClockId::Monotonic);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[cfg(all(target_os = "linux", not(multiproc_portable)))]
    #[inline]
    fn light_barrier(&self) {
        membarrier::light();
    }

    #[cfg(all(target_os = "linux", not(multiproc_portable)))]
    fn heavy_barrier(&self) {
        membarrier::heavy();
    }
}

impl Liveness for Os {
    fn is_alive(&self, id: u32, stamp: u32) -> bool {
        crate::ident::is_alive(id, stamp)
    }
}

#[cfg(target_os = "linux")]
fn word_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    use rustix::thread::futex;
    let timespec = timeout.map(|t| rustix::time::Timespec {
        tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: t.subsec_nanos().into(),
    });
    let _ = futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref());
}

#[cfg(target_os = "linux")]
fn word_wake(word: &AtomicU32, all: bool) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::empty(), if all { i32::MAX as u32 } else { 1 });
}

#[cfg(target_vendor = "apple")]
mod ulock {
    //! The private but stable interface under macOS's wait-on-address
    //! (libSystem exports it; libc++'s atomic wait calls it).
    pub const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
    pub const ULF_WAKE_ALL: u32 = 0x100;
    pub const ULF_NO_ERRNO: u32 = 0x0100_0000;

    extern "C" {
        pub fn __ulock_wait2(
            operation: u32,
            addr: *mut core::ffi::c_void,
            value: u64,
            timeout_ns: u64,
            value2: u64,
        ) -> core::ffi::c_int;
        pub fn __ulock_wake(
            operation: u32,
            addr: *mut core::ffi::c_void,
            wake_value: u64,
        ) -> core::ffi::c_int;
    }
}

#[cfg(target_vendor = "apple")]
mod os_sync {
    //! macOS 14.4's public wait-on-address (`<os/os_sync_wait_on_address.h>`),
    //! looked up at run time so that older systems fall back to `__ulock`.
    use core::ffi::{c_int, c_void, CStr};
    use std::sync::OnceLock;

    /// `OS_SYNC_WAIT_ON_ADDRESS_SHARED` and `OS_SYNC_WAKE_BY_ADDRESS_SHARED`.
    pub const SHARED: u32 = 1;
    /// `OS_CLOCK_MACH_ABSOLUTE_TIME`: the clock a timeout runs on.
    pub const MACH_ABSOLUTE_TIME: u32 = 32;

    type WaitFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
    type WaitTimeoutFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
    type WakeFn = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;

    /// The four calls, where the system has them.
    pub struct Api {
        pub wait: WaitFn,
        pub wait_timeout: WaitTimeoutFn,
        pub wake_any: WakeFn,
        pub wake_all: WakeFn,
    }

    pub fn api() -> Option<&'static Api> {
        static API: OnceLock<Option<Api>> = OnceLock::new();
        API.get_or_init(|| {
            let find = |name: &CStr| {
                // SAFETY: a NUL-terminated name looked up in every image.
                let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
                (!p.is_null()).then_some(p)
            };
            let wait = find(c"os_sync_wait_on_address")?;
            let wait_timeout = find(c"os_sync_wait_on_address_with_timeout")?;
            let wake_any = find(c"os_sync_wake_by_address_any")?;
            let wake_all = find(c"os_sync_wake_by_address_all")?;
            // SAFETY: these symbols are the functions of the header named
            // above, with exactly these C signatures.
            Some(unsafe {
                Api {
                    wait: core::mem::transmute::<*mut c_void, WaitFn>(wait),
                    wait_timeout: core::mem::transmute::<*mut c_void, WaitTimeoutFn>(wait_timeout),
                    wake_any: core::mem::transmute::<*mut c_void, WakeFn>(wake_any),
                    wake_all: core::mem::transmute::<*mut c_void, WakeFn>(wake_all),
                }
            })
        })
        .as_ref()
    }
}

#[cfg(target_vendor = "apple")]
fn word_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let addr = word.as_ptr().cast();
    // A timeout that rounds to 0 ns waits 1 ns instead (0 is refused, or
    // means forever).
    let ns = timeout.map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1));
    if let Some(api) = os_sync::api() {
        // SAFETY: `word` is a live, aligned 32-bit atomic for the call; the
        // kernel only compares it with `expected` and sleeps on its address.
        unsafe {
            match ns {
                None => (api.wait)(addr, u64::from(expected), 4, os_sync::SHARED),
                Some(ns) => (api.wait_timeout)(
                    addr,
                    u64::from(expected),
                    4,
                    os_sync::SHARED,
                    os_sync::MACH_ABSOLUTE_TIME,
                    ns,
                ),
            }
        };
        return;
    }
    // SAFETY: as above.
    unsafe {
        ulock::__ulock_wait2(
            ulock::UL_COMPARE_AND_WAIT_SHARED | ulock::ULF_NO_ERRNO,
            addr,
            u64::from(expected),
            ns.unwrap_or(0),
            0,
        )
    };
}

#[cfg(target_vendor = "apple")]
fn word_wake(word: &AtomicU32, all: bool) {
    let addr = word.as_ptr().cast();
    if let Some(api) = os_sync::api() {
        let wake = if all { api.wake_all } else { api.wake_any };
        // SAFETY: the kernel only uses the address as a key.
        unsafe { wake(addr, 4, os_sync::SHARED) };
        return;
    }
    let all = if all { ulock::ULF_WAKE_ALL } else { 0 };
    // SAFETY: as above.
    unsafe {
        ulock::__ulock_wake(ulock::UL_COMPARE_AND_WAIT_SHARED | ulock::ULF_NO_ERRNO | all, addr, 0)
    };
}

#[cfg(target_os = "freebsd")]
fn word_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let mut time = libc::_umtx_time {
        _timeout: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        _flags: 0, // relative
        _clockid: libc::CLOCK_MONOTONIC as u32,
    };
    let (size, time_ptr) = match timeout {
        None => (0, std::ptr::null_mut()),
        Some(t) => {
            time._timeout.tv_sec = t.as_secs().try_into().unwrap_or(libc::time_t::MAX);
            time._timeout.tv_nsec = t.subsec_nanos() as _;
            (std::mem::size_of::<libc::_umtx_time>(), (&raw mut time).cast())
        }
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic; `time_ptr` is null or
    // points at `time`, whose size `size` gives, alive for the call.
    unsafe {
        libc::_umtx_op(
            word.as_ptr().cast(),
            libc::UMTX_OP_WAIT_UINT,
            expected as libc::c_ulong,
            std::ptr::without_provenance_mut(size),
            time_ptr,
        )
    };
}

#[cfg(target_os = "freebsd")]
fn word_wake(word: &AtomicU32, all: bool) {
    let count = if all { libc::c_int::MAX } else { 1 };
    // SAFETY: the kernel only uses the address as a key.
    unsafe {
        libc::_umtx_op(
            word.as_ptr().cast(),
            libc::UMTX_OP_WAKE,
            count as libc::c_ulong,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}

#[cfg(not(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd")))]
compile_error!("multiproc-posix waits on shared words on Linux, macOS and FreeBSD only");

#[cfg(all(target_os = "linux", not(multiproc_portable)))]
mod membarrier {
    //! The asymmetric store-load barrier: a waker (every publish) pays a
    //! compiler fence, a parker (rare) pays `membarrier(GLOBAL_EXPEDITED)`,
    //! which runs a full barrier on every CPU running a registered process.
    use rustix::thread::{membarrier, MembarrierCommand};
    use std::sync::atomic::{compiler_fence, fence, AtomicU32, Ordering};

    /// The process registered to receive `membarrier(GLOBAL_EXPEDITED)`
    /// barriers (0: none), which lets its wakers skip the full fence
    /// (Dekker's store-load barrier, 20-30 ns on x86, and a wait for every
    /// store in flight) on every publish: the rare parker pays a system call
    /// instead. Kept as a pid, so a forked child (whose pid differs)
    /// registers itself rather than trust an inherited flag; exec starts
    /// over anyway.
    pub(super) static BARRIER_PID: AtomicU32 = AtomicU32::new(0);
    /// The kernel refused to register this process (then it fences).
    pub(super) static BARRIER_REFUSED: AtomicU32 = AtomicU32::new(0);

    #[inline]
    pub(super) fn light() {
        if BARRIER_PID.load(Ordering::Relaxed) == crate::ident::process().id {
            // Every parker's `heavy` makes this thread run a full barrier
            // (or it is off CPU, which is one), so the compiler is all that
            // must not reorder here.
            compiler_fence(Ordering::SeqCst);
        } else {
            light_slow();
        }
    }

    pub(super) fn heavy() {
        if membarrier(MembarrierCommand::GlobalExpedited).is_err() {
            // Registered wakers then count on the 10 ms liveness checks of
            // every parker: a wake-up can be late, never lost for good.
            fence(Ordering::SeqCst);
        }
    }

    #[cold]
    fn light_slow() {
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
    #[cfg(all(target_os = "linux", not(multiproc_portable)))]
    fn barriers_register_once_per_process() {
        use super::membarrier::{BARRIER_PID, BARRIER_REFUSED};
        use std::sync::atomic::Ordering;
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
                    let pid = std::process::id();
                    let inherited = BARRIER_PID.load(Ordering::Relaxed);
                    Os.light_barrier();
                    let ok = inherited != pid && BARRIER_PID.load(Ordering::Relaxed) == pid;
                    crate::child::exit_now(if ok { 0 } else { 1 })
                }
                crate::child::Forked::Parent(child) => {
                    let code = child.wait_timeout(Some(Duration::from_secs(20))).unwrap();
                    assert_eq!(code, Some(0));
                }
            }
        }
    }
}
