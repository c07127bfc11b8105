//! Many increments from several processes under one lock lose none.

mod common;
use common::*;
use multiproc::{Lock, Process, RawValue, Value};

const ROUNDS: u64 = 100_000;

fn increment_under_lock(lock: Lock, counter: RawValue<u64>, rounds: u64) {
    for _ in 0..rounds {
        let _guard = lock.lock().unwrap();
        counter.set(counter.get() + 1);
    }
}

fn increment_value(counter: Value<u64>, rounds: u64) {
    for _ in 0..rounds {
        *counter.lock().unwrap() += 1;
    }
}

#[test]
fn processes_times_100k_increments_under_a_lock_lose_none() {
    // Four spawned processes, and two forked where fork exists.
    for (i, method) in METHODS.into_iter().enumerate().take(2) {
        let procs = if i == 0 { 4u64 } else { 2 };
        let lock = Lock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let ps: Vec<_> = (0..procs)
            .map(|_| {
                with(
                    method,
                    Process::new(increment_under_lock, (lock.clone(), counter.clone(), ROUNDS)),
                )
            })
            .collect();
        assert_eq!(run_all(&ps), vec![0; procs as usize]);
        assert_eq!(counter.get(), procs * ROUNDS, "{method:?}");
    }
}

#[test]
fn value_guards_from_three_processes_lose_none() {
    for method in METHODS {
        let counter = Value::new(0u64).unwrap();
        let ps: Vec<_> = (0..3)
            .map(|_| with(method, Process::new(increment_value, (counter.clone(), ROUNDS))))
            .collect();
        assert_eq!(run_all(&ps), [0, 0, 0]);
        assert_eq!(counter.get().unwrap(), 3 * ROUNDS, "{method:?}");
    }
}
