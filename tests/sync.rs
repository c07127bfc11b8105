//! Semaphore, Condition and Barrier between real processes.

mod common;
use common::*;
use multiproc::{
    Barrier, BoundedSemaphore, Condition, ErrorKind, Event, Lock, Process, RawValue, Semaphore,
    Value,
};
use std::time::Duration;

fn meet(barrier: Barrier, rounds: u32) -> i32 {
    for _ in 0..rounds {
        match barrier.wait_timeout(BOUND) {
            Ok(index) => {
                assert!(index < barrier.parties());
            }
            Err(e) => {
                eprintln!("{e}");
                return 3;
            }
        }
    }
    0
}

#[test]
fn a_barrier_of_three_processes_passes_several_generations() {
    for method in METHODS {
        let barrier = Barrier::new(3).unwrap();
        let mut ps: Vec<_> =
            (0..2).map(|_| with(method, Process::new(meet, (barrier.clone(), 5)))).collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        for _ in 0..5 {
            let index = barrier.wait_timeout(BOUND).unwrap();
            assert!(index < 3);
        }
        for p in &mut ps {
            assert_eq!(finish(p), 0, "{method:?}");
        }
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
    }
}

fn wait_expect_broken(barrier: Barrier) -> i32 {
    match barrier.wait_timeout(BOUND) {
        Err(e) if e.kind() == ErrorKind::BrokenBarrier => 0,
        other => {
            eprintln!("expected BrokenBarrier, got {other:?}");
            3
        }
    }
}

#[test]
fn aborting_a_barrier_releases_a_waiting_process() {
    for method in METHODS {
        let barrier = Barrier::new(2).unwrap();
        let p = with(method, Process::new(wait_expect_broken, (barrier.clone(),)));
        p.start().unwrap();
        while barrier.n_waiting() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        barrier.abort();
        assert_eq!(finish(&p), 0, "{method:?}");
        assert!(barrier.broken());
        barrier.reset();
        assert!(!barrier.broken());
    }
}

fn use_a_permit(sem: Semaphore, lock: Lock, inside: RawValue<u32>, most: RawValue<u32>) {
    for _ in 0..50 {
        sem.acquire_timeout(BOUND).unwrap();
        {
            let _g = lock.lock().unwrap();
            inside.set(inside.get() + 1);
            most.set(most.get().max(inside.get()));
        }
        std::thread::sleep(Duration::from_micros(200));
        {
            let _g = lock.lock().unwrap();
            inside.set(inside.get() - 1);
        }
        sem.release().unwrap();
    }
}

#[test]
fn a_semaphore_admits_at_most_its_value() {
    for method in METHODS {
        let sem = Semaphore::new(2).unwrap();
        let lock = Lock::new().unwrap();
        let inside = RawValue::new(0u32).unwrap();
        let most = RawValue::new(0u32).unwrap();
        let ps: Vec<_> = (0..4)
            .map(|_| {
                let args = (sem.clone(), lock.clone(), inside.clone(), most.clone());
                with(method, Process::new(use_a_permit, args))
            })
            .collect();
        assert_eq!(run_all(&ps), [0; 4]);
        assert!(most.get() <= 2 && most.get() >= 1, "{method:?}: {}", most.get());
        assert_eq!(sem.get_value(), 2);
    }
}

fn over_release(sem: BoundedSemaphore) -> i32 {
    match sem.release() {
        Err(e) if e.kind() == ErrorKind::Overflow => 0,
        other => {
            eprintln!("{other:?}");
            3
        }
    }
}

#[test]
fn a_bounded_semaphore_keeps_its_bound_in_a_child() {
    for method in METHODS {
        let sem = BoundedSemaphore::new(2).unwrap();
        let p = with(method, Process::new(over_release, (sem.clone(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}");
        assert_eq!(sem.get_value(), 2);
    }
}

const ITEMS: u32 = 200;

fn consume(cond: Condition, items: Value<u32>, taken: Value<u32>) {
    for _ in 0..ITEMS {
        let guard = cond.lock().unwrap();
        assert!(guard.wait_for_timeout(|| items.get().unwrap() > 0, BOUND).unwrap(), "starved");
        items.set(items.get().unwrap() - 1).unwrap();
        taken.set(taken.get().unwrap() + 1).unwrap();
        guard.notify_all().unwrap();
    }
}

#[test]
fn a_condition_hands_items_between_processes() {
    for method in METHODS {
        for cond in [Condition::new().unwrap(), Condition::with_lock(Lock::new().unwrap()).unwrap()]
        {
            let items = Value::new(0u32).unwrap();
            let taken = Value::new(0u32).unwrap();
            let p =
                with(method, Process::new(consume, (cond.clone(), items.clone(), taken.clone())));
            p.start().unwrap();
            for _ in 0..ITEMS {
                let guard = cond.lock().unwrap();
                // At most 3 in flight, so both sides wait on the condition.
                assert!(guard.wait_for_timeout(|| items.get().unwrap() < 3, BOUND).unwrap());
                items.set(items.get().unwrap() + 1).unwrap();
                guard.notify(1).unwrap();
            }
            assert_eq!(finish(&p), 0, "{method:?}");
            assert_eq!(taken.get().unwrap(), ITEMS);
            assert_eq!(items.get().unwrap(), 0);
        }
    }
}

fn set_after_wait(go: Event, done: Event) {
    go.wait_timeout(BOUND);
    done.set();
}

#[test]
fn events_ping_pong_between_processes() {
    for method in METHODS {
        let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
        let p = with(method, Process::new(set_after_wait, (go.clone(), done.clone())));
        p.start().unwrap();
        go.set();
        assert!(done.wait_timeout(BOUND));
        assert_eq!(finish(&p), 0);
    }
}

fn release_foreign(lock: multiproc::RLock) -> i32 {
    match lock.release() {
        Err(e) if e.kind() == ErrorKind::NotOwner => 0,
        other => {
            eprintln!("{other:?}");
            3
        }
    }
}

#[test]
fn an_rlock_is_released_only_by_its_owner() {
    let lock = multiproc::RLock::new().unwrap();
    lock.acquire().unwrap();
    // Another thread of this process is not the owner...
    let other = lock.clone();
    let r = std::thread::spawn(move || other.release().unwrap_err().kind()).join().unwrap();
    assert_eq!(r, ErrorKind::NotOwner);
    // ...nor is another process.
    for method in METHODS {
        let p = with(method, Process::new(release_foreign, (lock.clone(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}");
    }
    assert_eq!(lock.depth(), 1);
    lock.release().unwrap();
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::NotOwner);
}
