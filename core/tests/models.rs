//! Models of every primitive, written once: exhaustive under
//! `RUSTFLAGS="--cfg loom" cargo test -p multiproc-core --release` (2–3
//! threads, small counts), plain threads otherwise (more threads, more
//! rounds). A lost wake-up hangs natively and is a deadlock under loom.

use multiproc_core::arena::{Released, SlotHeader};
use multiproc_core::barrier::RawBarrier;
use multiproc_core::condition::RawCondition;
use multiproc_core::event::RawEvent;
use multiproc_core::lock::{Owner, RawLock};
use multiproc_core::rlock::RawRLock;
use multiproc_core::semaphore::RawSemaphore;
use multiproc_core::testing::{model, thread, Arc, TestPark};
use multiproc_core::{Acquired, Deadline, Error, Park};
use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering::SeqCst};
use std::time::Duration;

/// Threads besides the main one.
const THREADS: u32 = if cfg!(loom) { 2 } else { 8 };
/// Rounds per thread.
const ROUNDS: u32 = if cfg!(loom) { 1 } else { 2_000 };

type Quiet = TestPark<false>;
type Dying = TestPark<true>;

fn owner(i: u32) -> Owner {
    Owner { id: i + 1, stamp: 7 }
}

#[cfg(loom)]
type Counter = loom::sync::atomic::AtomicU32;
#[cfg(not(loom))]
type Counter = StdAtomicU32;

/// A non-atomic increment (load, then store): loses counts without mutual exclusion.
fn bump(c: &Counter) {
    let v = c.load(SeqCst);
    c.store(v + 1, SeqCst);
}

/// `THREADS` threads take turns under one lock; none loses a count. With
/// `CHECKS`, waiters also check the (live) owner periodically and must
/// never take the lock from it.
fn contend<const CHECKS: bool>() {
    model(|| {
        let park = Arc::new(TestPark::<CHECKS>::default());
        let lock = Arc::new(RawLock::new());
        let count = Arc::new(Counter::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (park, lock, count) = (park.clone(), lock.clone(), count.clone());
                thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let how = lock.lock(&*park, owner(i), Deadline::NEVER);
                        assert_eq!(how, Ok(Acquired::Clean));
                        bump(&count);
                        lock.unlock(&*park).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(count.load(SeqCst), THREADS * ROUNDS);
        assert!(!lock.is_locked());
        assert_eq!(lock.unlock(&*park), Err(Error::NotLocked));
    });
}

#[test]
fn lock_mutual_exclusion_and_no_lost_wakeup() {
    contend::<false>();
}

#[test]
fn lock_timeout_returns() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_lock(owner(0)));
        let (p2, l2) = (park.clone(), lock.clone());
        let t = thread::spawn(move || {
            let deadline = Deadline::after(&*p2, Duration::from_millis(5));
            l2.lock(&*p2, owner(1), deadline)
        });
        assert_eq!(t.join().unwrap(), Err(Error::Timeout));
        assert!(lock.is_held_by(owner(0)));
        assert!(!lock.try_lock(owner(1)));
        lock.unlock(&*park).unwrap();
    });
}

#[test]
fn lock_owner_died() {
    model(|| {
        let park = Arc::new(Dying::default());
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_lock(owner(0)));
        park.kill(owner(0).id);
        let (p2, l2) = (park.clone(), lock.clone());
        let t = thread::spawn(move || l2.lock(&*p2, owner(1), Deadline::NEVER));
        assert_eq!(t.join().unwrap(), Ok(Acquired::OwnerDied));
        assert!(lock.is_held_by(owner(1)));
    });
}

#[test]
fn lock_live_owner_is_not_robbed() {
    contend::<true>();
}

#[test]
fn rlock_recursion_counts() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let lock = Arc::new(RawRLock::new());
        let count = Arc::new(Counter::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (park, lock, count) = (park.clone(), lock.clone(), count.clone());
                thread::spawn(move || {
                    let me = owner(i);
                    for _ in 0..ROUNDS {
                        assert_eq!(lock.lock(&*park, me, Deadline::NEVER), Ok(Acquired::Clean));
                        assert_eq!(lock.lock(&*park, me, Deadline::NEVER), Ok(Acquired::Clean));
                        assert_eq!(lock.depth(me), 2);
                        bump(&count);
                        lock.unlock(&*park, me).unwrap();
                        assert_eq!(lock.depth(me), 1);
                        lock.unlock(&*park, me).unwrap();
                        assert_eq!(lock.unlock(&*park, me), Err(Error::NotOwner));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(count.load(SeqCst), THREADS * ROUNDS);
    });
}

#[test]
fn rlock_owner_died_starts_at_depth_one() {
    model(|| {
        let park = Arc::new(Dying::default());
        let lock = Arc::new(RawRLock::new());
        lock.try_lock(owner(0)).unwrap();
        lock.try_lock(owner(0)).unwrap();
        assert_eq!(lock.unlock(&*park, owner(1)), Err(Error::NotOwner));
        park.kill(owner(0).id);
        let (p2, l2) = (park.clone(), lock.clone());
        let t = thread::spawn(move || {
            let r = l2.lock(&*p2, owner(1), Deadline::NEVER);
            (r, l2.depth(owner(1)))
        });
        assert_eq!(t.join().unwrap(), (Ok(Acquired::OwnerDied), 1));
    });
}

#[test]
fn semaphore_counts_stay_in_range() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let sem = Arc::new(RawSemaphore::new_bounded(1));
        let inside = Arc::new(StdAtomicU32::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (park, sem, inside) = (park.clone(), sem.clone(), inside.clone());
                thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        sem.acquire(&*park, Deadline::NEVER).unwrap();
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders of one permit");
                        inside.fetch_sub(1, SeqCst);
                        sem.release(&*park).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(sem.value(), 1);
        assert_eq!(sem.release(&*park), Err(Error::AboveBound));
        assert_eq!(sem.value(), 1);
    });
}

#[test]
fn semaphore_wakes_and_times_out() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let sem = Arc::new(RawSemaphore::new(0));
        let (p2, s2) = (park.clone(), sem.clone());
        let t = thread::spawn(move || s2.acquire(&*p2, Deadline::NEVER));
        sem.release(&*park).unwrap();
        assert_eq!(t.join().unwrap(), Ok(()));
        assert_eq!(sem.value(), 0);
        assert!(!sem.try_acquire());
        let deadline = Deadline::after(&*park, Duration::from_millis(2));
        assert_eq!(sem.acquire(&*park, deadline), Err(Error::Timeout));
    });
}

#[test]
fn event_wakes_every_waiter() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let event = Arc::new(RawEvent::new());
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (park, event) = (park.clone(), event.clone());
                thread::spawn(move || event.wait(&*park, Deadline::NEVER))
            })
            .collect();
        event.set(&*park);
        for h in handles {
            assert!(h.join().unwrap());
        }
        assert!(event.is_set());
        event.clear();
        assert!(!event.is_set());
        let deadline = Deadline::after(&*park, Duration::from_millis(2));
        assert!(!event.wait(&*park, deadline));
    });
}

#[test]
fn condition_no_lost_wakeup() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let lock = Arc::new(RawLock::new());
        let cond = Arc::new(RawCondition::new());
        let items = Arc::new(Counter::new(0));
        let (p2, l2, c2, i2) = (park.clone(), lock.clone(), cond.clone(), items.clone());
        let consumer = thread::spawn(move || {
            let me = owner(1);
            for _ in 0..ROUNDS {
                assert_eq!(l2.lock(&*p2, me, Deadline::NEVER), Ok(Acquired::Clean));
                while i2.load(SeqCst) == 0 {
                    let token = c2.begin_wait();
                    l2.unlock(&*p2).unwrap();
                    c2.wait(&*p2, token, Deadline::NEVER);
                    assert_eq!(l2.lock(&*p2, me, Deadline::NEVER), Ok(Acquired::Clean));
                }
                i2.store(i2.load(SeqCst) - 1, SeqCst);
                l2.unlock(&*p2).unwrap();
            }
        });
        for _ in 0..ROUNDS {
            assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
            bump(&items);
            cond.notify(&*park, 1);
            lock.unlock(&*park).unwrap();
        }
        consumer.join().unwrap();
        assert_eq!(items.load(SeqCst), 0);
        assert_eq!(cond.waiters(), 0);
    });
}

#[test]
fn condition_wait_times_out() {
    model(|| {
        let park = Quiet::default();
        let cond = RawCondition::new();
        let token = cond.begin_wait();
        let deadline = Deadline::after(&park, Duration::from_millis(2));
        assert!(!cond.wait(&park, token, deadline));
        assert_eq!(cond.waiters(), 0);
    });
}

#[test]
fn barrier_generations() {
    model(|| {
        let parties = THREADS + 1;
        let rounds = if cfg!(loom) { 2 } else { 200 };
        let park = Arc::new(Quiet::default());
        let barrier = Arc::new(RawBarrier::new(parties));
        let seen = Arc::new(StdAtomicU32::new(0));
        let run = move |park: Arc<Quiet>, barrier: Arc<RawBarrier>, seen: Arc<StdAtomicU32>| {
            let mut last = 0;
            for round in 0..rounds {
                let before = seen.fetch_add(1, SeqCst);
                assert!(before < (round + 1) * parties, "passed a generation early");
                let index = barrier.wait(&*park, Deadline::NEVER).unwrap();
                assert!(index < parties);
                // Everyone of this round has arrived before anyone leaves.
                assert!(seen.load(SeqCst) >= (round + 1) * parties);
                last = index;
            }
            last
        };
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (p, b, s) = (park.clone(), barrier.clone(), seen.clone());
                thread::spawn(move || run(p, b, s))
            })
            .collect();
        let mut indices = vec![run(park.clone(), barrier.clone(), seen.clone())];
        indices.extend(handles.into_iter().map(|h| h.join().unwrap()));
        indices.sort();
        assert_eq!(indices, (0..parties).collect::<Vec<_>>());
        assert_eq!(barrier.n_waiting(), 0);
    });
}

#[test]
fn barrier_abort_reset_and_timeout() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let barrier = Arc::new(RawBarrier::new(2));
        let (p2, b2) = (park.clone(), barrier.clone());
        let t = thread::spawn(move || b2.wait(&*p2, Deadline::NEVER));
        barrier.abort(&*park);
        assert_eq!(t.join().unwrap(), Err(Error::Broken));
        assert!(barrier.is_broken());
        assert_eq!(barrier.wait(&*park, Deadline::NEVER), Err(Error::Broken));
        barrier.reset(&*park);
        assert!(!barrier.is_broken());
        let deadline = Deadline::after(&*park, Duration::from_millis(2));
        assert_eq!(barrier.wait(&*park, deadline), Err(Error::Timeout));
        assert!(barrier.is_broken());
        barrier.reset(&*park);
        // A waiter parked across a reset is broken, not passed.
        let (p3, b3) = (park.clone(), barrier.clone());
        let t = thread::spawn(move || b3.wait(&*p3, Deadline::NEVER));
        while barrier.n_waiting() == 0 {
            thread::yield_now();
        }
        barrier.reset(&*park);
        assert_eq!(t.join().unwrap(), Err(Error::Broken));
        assert_eq!(RawBarrier::new(0).wait(&*park, Deadline::NEVER), Err(Error::Broken));
    });
}

#[test]
fn park_contract_spurious_return_is_allowed() {
    // wait() returns at once when the word already differs.
    model(|| {
        let park = Quiet::default();
        let word = multiproc_core::sync::AtomicU32::new(1);
        park.wait(&word, 0, None);
        park.wake_one(&word);
        park.wake_all(&word);
    });
}

#[test]
fn countdown_wakes_join_at_zero() {
    use multiproc_core::countdown::RawCountdown;
    model(|| {
        let park = Arc::new(Quiet::default());
        let tasks = Arc::new(RawCountdown::new());
        for _ in 0..THREADS {
            tasks.increment().unwrap();
        }
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (park, tasks) = (park.clone(), tasks.clone());
                thread::spawn(move || tasks.decrement(&*park).unwrap())
            })
            .collect();
        assert!(tasks.wait_zero(&*park, Deadline::NEVER));
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(tasks.decrement(&*park), Err(Error::NotLocked));
        tasks.increment().unwrap();
        let deadline = Deadline::after(&*park, Duration::from_millis(2));
        assert!(!tasks.wait_zero(&*park, deadline));
    });
}

/// Two processes race to claim one free arena slot: exactly one gets it.
#[test]
fn arena_slot_is_claimed_once() {
    model(|| {
        let slot = Arc::new(SlotHeader::default());
        let winners = Arc::new(Counter::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (slot, winners) = (slot.clone(), winners.clone());
                thread::spawn(move || {
                    if slot.claim().is_some() {
                        winners.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(winners.load(SeqCst), 1);
        assert_eq!(slot.generation(), Some(1));
    });
}

/// Two processes hold an object (the second's reference taken by its
/// sender); each writes it and lets go, and the one that frees the slot
/// claims it again at once: the slot is freed exactly once, only after both
/// let go, and its next claimer sees both writes (release, then acquire).
#[test]
fn arena_slot_is_freed_once_after_every_reference() {
    model(|| {
        let slot = Arc::new(SlotHeader::default());
        let data = Arc::new(Counter::new(0));
        let g = slot.claim().unwrap();
        slot.retain(g).unwrap();
        let let_go = move |slot: &SlotHeader, data: &Counter| {
            data.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match slot.release(g) {
                Released::Freed => {
                    assert_eq!(slot.claim(), Some(g + 1));
                    assert_eq!(data.load(std::sync::atomic::Ordering::Relaxed), 2);
                    true
                }
                Released::Held => false,
                Released::Refused => panic!("a holder's release was refused"),
            }
        };
        let other = {
            let (slot, data) = (slot.clone(), data.clone());
            thread::spawn(move || let_go(&slot, &data))
        };
        let mine = let_go(&slot, &data);
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "freed exactly once");
        assert_eq!(slot.release(g), Released::Refused, "a stale release is refused");
    });
}
