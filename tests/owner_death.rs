//! A process SIGKILLed while it holds a Lock or RLock does not wedge the
//! others: the next acquirer gets the lock, told `OwnerDied`, promptly.

mod common;
use common::*;
use multiproc::{ErrorKind, Event, Lock, Process, RLock, RawValue};
use std::time::{Duration, Instant};

fn hold_lock(lock: Lock, holding: Event, stop: Event) {
    lock.acquire().unwrap();
    holding.set();
    stop.wait_timeout(BOUND);
}

fn hold_rlock(lock: RLock, holding: Event, stop: Event) {
    lock.acquire().unwrap();
    lock.acquire().unwrap(); // two levels deep when it dies
    holding.set();
    stop.wait_timeout(BOUND);
}

/// Takes the lock, counts a round and whether the owner died.
fn take_lock(lock: Lock, rounds: RawValue<u32>, died: RawValue<u32>) {
    match lock.acquire_timeout(BOUND) {
        Ok(()) => {}
        Err(e) if e.is_owner_died() => died.set(died.get() + 1),
        Err(e) => panic!("{e}"),
    }
    rounds.set(rounds.get() + 1);
    lock.release().unwrap();
}

fn take_rlock(lock: RLock, rounds: RawValue<u32>, died: RawValue<u32>) {
    match lock.acquire_timeout(BOUND) {
        Ok(()) => {}
        Err(e) if e.is_owner_died() => died.set(died.get() + 1),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(lock.depth(), 1, "a taken-over RLock starts at depth 1");
    rounds.set(rounds.get() + 1);
    lock.release().unwrap();
    assert!(lock.release().is_err());
}

fn kill_holder(holder: &Process, holding: &Event) {
    holder.start().unwrap();
    assert!(holding.wait_timeout(BOUND), "holder never took the lock");
    holder.kill().unwrap();
    assert_eq!(finish(holder), KILLED);
}

#[test]
fn a_killed_lock_holder_is_replaced_by_the_next_acquirer() {
    for method in METHODS {
        let (lock, holding, stop) =
            (Lock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
        let holder =
            with(method, Process::new(hold_lock, (lock.clone(), holding.clone(), stop.clone())));
        kill_holder(&holder, &holding);
        let t = Instant::now();
        let err = lock.acquire_timeout(BOUND).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OwnerDied, "{method:?}: {err}");
        eprintln!("{method:?}: Lock taken over {:?} after its holder died", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(5));
        // The lock is held by us now, and works as before.
        assert!(lock.try_acquire().is_err());
        lock.release().unwrap();
        lock.acquire().unwrap();
        lock.release().unwrap();
    }
}

#[test]
fn waiters_parked_behind_a_killed_holder_all_proceed() {
    for method in METHODS {
        let (lock, holding, stop) =
            (Lock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
        let rounds = RawValue::new(0u32).unwrap();
        let died = RawValue::new(0u32).unwrap();
        let holder =
            with(method, Process::new(hold_lock, (lock.clone(), holding.clone(), stop.clone())));
        holder.start().unwrap();
        assert!(holding.wait_timeout(BOUND));
        let mut waiters: Vec<_> = (0..3)
            .map(|_| {
                with(method, Process::new(take_lock, (lock.clone(), rounds.clone(), died.clone())))
            })
            .collect();
        for w in &mut waiters {
            w.start().unwrap();
        }
        std::thread::sleep(Duration::from_millis(30)); // let them park
        holder.kill().unwrap();
        assert_eq!(finish(&holder), KILLED);
        for w in &mut waiters {
            assert_eq!(finish(w), 0, "{method:?}");
        }
        assert_eq!(rounds.get(), 3);
        assert_eq!(died.get(), 1, "exactly one waiter takes over from the dead holder");
        assert!(!lock.is_locked());
    }
}

#[test]
fn a_killed_rlock_holder_is_replaced() {
    for method in METHODS {
        let (lock, holding, stop) =
            (RLock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
        let rounds = RawValue::new(0u32).unwrap();
        let died = RawValue::new(0u32).unwrap();
        let holder =
            with(method, Process::new(hold_rlock, (lock.clone(), holding.clone(), stop.clone())));
        kill_holder(&holder, &holding);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                with(method, Process::new(take_rlock, (lock.clone(), rounds.clone(), died.clone())))
            })
            .collect();
        assert_eq!(run_all(&waiters), [0, 0], "{method:?}");
        assert_eq!((rounds.get(), died.get()), (2, 1));
        lock.acquire().unwrap();
        lock.release().unwrap();
    }
}
