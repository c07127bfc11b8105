//! Windows's floors (measured under Wine in CI): what the system itself
//! costs for the workloads multiproc is measured on there.
//!
//! - Two processes waking each other through a pair of named kernel
//!   semaphores: the cost of one cross-process sleep and wake each way,
//!   which every blocking wake in multiproc's Windows backend pays.
//! - `CreateProcessW` of this executable (through std's `Command`) and a
//!   wait for its exit.
#![allow(unsafe_code)]

use std::process::Command;
use std::time::Instant;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Threading::{
    CreateSemaphoreW, ReleaseSemaphore, WaitForSingleObject, INFINITE,
};

const CHILD: &str = "--floor-child";

fn semaphore(name: &str) -> HANDLE {
    let wide: Vec<u16> = name.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated name; opens the semaphore if it exists.
    let h = unsafe { CreateSemaphoreW(std::ptr::null(), 0, i32::MAX, wide.as_ptr()) };
    assert!(!h.is_null(), "CreateSemaphoreW: {}", std::io::Error::last_os_error());
    h
}

fn names(tag: &str) -> (String, String) {
    (format!("Local\\mpbench-{tag}-ping"), format!("Local\\mpbench-{tag}-pong"))
}

/// The child's side: `--floor-child TAG ROUNDS` answers each ping.
pub fn serve_if_asked(args: &[String]) {
    if args.first().map(String::as_str) != Some(CHILD) {
        return;
    }
    let (tag, rounds) = (&args[1], args[2].parse::<u64>().expect("rounds"));
    if rounds == 0 {
        std::process::exit(0);
    }
    let (ping, pong) = names(tag);
    let (ping, pong) = (semaphore(&ping), semaphore(&pong));
    for _ in 0..rounds {
        // SAFETY: semaphore handles of ours.
        unsafe {
            WaitForSingleObject(ping, INFINITE);
            ReleaseSemaphore(pong, 1, std::ptr::null_mut());
        }
    }
    std::process::exit(0)
}

/// Microseconds per round trip through two semaphores, between two
/// processes.
pub fn semaphore_round_trip(rounds: u64) -> f64 {
    let tag = std::process::id().to_string();
    let (ping_name, pong_name) = names(&tag);
    let (ping, pong) = (semaphore(&ping_name), semaphore(&pong_name));
    let exe = std::env::current_exe().expect("this executable");
    let mut child = Command::new(exe)
        .args([CHILD, &tag, &(rounds + 1).to_string()])
        .spawn()
        .expect("the floor's child");
    // SAFETY: semaphore handles of ours (one warm-up round first).
    unsafe {
        ReleaseSemaphore(ping, 1, std::ptr::null_mut());
        WaitForSingleObject(pong, INFINITE);
    }
    let t = Instant::now();
    for _ in 0..rounds {
        // SAFETY: as above.
        unsafe {
            ReleaseSemaphore(ping, 1, std::ptr::null_mut());
            WaitForSingleObject(pong, INFINITE);
        }
    }
    let each = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    child.wait().expect("the floor's child");
    // SAFETY: handles of ours, closed once.
    unsafe {
        CloseHandle(ping);
        CloseHandle(pong);
    }
    each
}

/// Microseconds per `CreateProcessW` of this executable (which exits at
/// once) and wait.
pub fn create_process_wait(n: u32) -> f64 {
    let exe = std::env::current_exe().expect("this executable");
    let t = Instant::now();
    for _ in 0..n {
        let status = Command::new(&exe).args([CHILD, "none", "0"]).status().expect("spawn");
        assert!(status.success());
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}
