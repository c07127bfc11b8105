//! Helpers for tests with real processes: every wait is bounded, and a
//! child that outlives its bound is killed and fails the test.
#![allow(dead_code)]

pub mod forge;

use multiproc::{Process, StartMethod};
use std::time::Duration;

/// What a child ended by `kill` reads back as: minus SIGKILL's number; on
/// Windows, where kill is terminate (Python's too), minus SIGTERM's.
pub const KILLED: i32 = if cfg!(windows) { -15 } else { -9 };

/// Long enough for a loaded 2-core CI machine, short enough to fail fast.
pub const BOUND: Duration = Duration::from_secs(60);

/// Every start method. Fork is opted into threads: the test harness runs
/// tests on threads, and these children touch nothing another thread holds.
#[cfg(mp_fork)]
pub const METHODS: [StartMethod; 3] =
    [StartMethod::Spawn, StartMethod::Fork, StartMethod::ForkServer];
/// Every start method this platform has (spawn alone on Windows).
#[cfg(not(mp_fork))]
pub const METHODS: [StartMethod; 1] = [StartMethod::Spawn];

/// Applies `method` (and the fork opt-in) to a process, and makes it a
/// daemon: if a test fails before it reaps its children, they are
/// terminated when the test binary exits instead of outliving it (holding
/// its output pipes open, which would keep `cargo test` waiting).
pub fn with(method: StartMethod, p: Process) -> Process {
    p.start_method(method).allow_threads(true).daemon(true)
}

/// A spawned daemon child, for tests that use the default start method.
pub fn child(p: Process) -> Process {
    p.daemon(true)
}

/// Joins within [`BOUND`]; kills the child and panics if it hangs.
pub fn finish(p: &Process) -> i32 {
    match p.join_timeout(BOUND).expect("join") {
        Some(code) => code,
        None => {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(5));
            panic!("{} did not finish within {BOUND:?}", p.get_name());
        }
    }
}

/// This test binary, made to run only the test `helper` as a main process
/// of its own, with `var` set to 1 in its environment (the helper returns
/// at once unless it sees it).
pub fn helper_command(helper: &str, var: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", helper, "--nocapture", "--test-threads=1"]).env(var, "1");
    cmd
}

/// Starts every process, then joins them all; their exit codes.
pub fn run_all(ps: &[Process]) -> Vec<i32> {
    for p in ps {
        p.start().expect("start");
    }
    ps.iter().map(finish).collect()
}

/// Ends process `pid` at once and for good: SIGKILL, or on Windows
/// `TerminateProcess` (exit code 9).
pub fn kill_pid(pid: u32) {
    #[cfg(unix)]
    // SAFETY: signals a process; no memory is involved.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    #[cfg(windows)]
    // SAFETY: opens, ends and closes a process by id; no memory is involved.
    unsafe {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{
            OpenProcess, TerminateProcess, PROCESS_TERMINATE,
        };
        let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
        if !h.is_null() {
            TerminateProcess(h, 9);
            CloseHandle(h);
        }
    }
}

/// Whether process `pid` exists and has not ended.
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    // SAFETY: probes a pid with signal 0; no memory is involved.
    unsafe {
        libc::kill(pid as i32, 0) == 0
    }
    #[cfg(windows)]
    // SAFETY: opens, waits on (not at all) and closes a process by id.
    unsafe {
        use windows_sys::Win32::Foundation::{CloseHandle, WAIT_TIMEOUT};
        use windows_sys::Win32::System::Threading::{
            OpenProcess, WaitForSingleObject, PROCESS_SYNCHRONIZE,
        };
        let h = OpenProcess(PROCESS_SYNCHRONIZE, 0, pid);
        if h.is_null() {
            return false;
        }
        let alive = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
        CloseHandle(h);
        alive
    }
}
