//! Helpers for tests with real processes: every wait is bounded, and a
//! child that outlives its bound is killed and fails the test.
#![allow(dead_code)]

use multiproc::{Process, StartMethod};
use std::time::Duration;

/// Long enough for a loaded 2-core CI machine, short enough to fail fast.
pub const BOUND: Duration = Duration::from_secs(60);

/// Every start method. Fork is opted into threads: the test harness runs
/// tests on threads, and these children touch nothing another thread holds.
pub const METHODS: [StartMethod; 3] =
    [StartMethod::Spawn, StartMethod::Fork, StartMethod::ForkServer];

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
pub fn finish(p: &mut Process) -> i32 {
    match p.join_timeout(BOUND).expect("join") {
        Some(code) => code,
        None => {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(5));
            panic!("{} did not finish within {BOUND:?}", p.get_name());
        }
    }
}

/// Starts every process, then joins them all; their exit codes.
pub fn run_all(ps: &mut [Process]) -> Vec<i32> {
    for p in ps.iter_mut() {
        p.start().expect("start");
    }
    ps.iter_mut().map(finish).collect()
}
