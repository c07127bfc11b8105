//! Forging bootstraps by hand, for the tests of who may start a child
//! (`bad_input.rs` on Linux, `bad_input_windows.rs`).

use multiproc::{Target, BOOTSTRAP_FAILED};
use std::process::Output;

/// The child was refused before any of its code ran: exit code 255, the
/// message, and `needle` in it.
pub fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(BOOTSTRAP_FAILED), "stderr: {stderr}");
    assert!(stderr.contains("multiproc: cannot start this child"), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    // It never reached the test harness.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("running"), "{out:?}");
}

/// Spawn targets a forged bootstrap names.
pub fn exits_with(code: u8) -> i32 {
    i32::from(code)
}

pub fn adds(a: u8, b: u8) -> i32 {
    i32::from(a) + i32::from(b)
}

/// Target `f`'s spawn entry, as (offset, fingerprint).
pub fn entry<F: Target<A>, A: serde::de::DeserializeOwned + 'static>(f: F) -> (u64, u64) {
    multiproc::__testing::spawn_entry(f)
}

/// A bootstrap naming `entry` with `args`, from this process.
pub fn bootstrap(entry: (u64, u64), args: &[u8]) -> Vec<u8> {
    multiproc::__testing::bootstrap(entry, args.to_vec(), None)
}
