//! Models of the biased lock: exhaustive under `--cfg loom`, plain threads
//! otherwise. The races that matter: a revoker against the biased thread's
//! fast enter and exit (mutual exclusion, and no lost wake-up of a revoker
//! parked on `busy`), a biased thread that dies inside, and a revoker whose
//! deadline passes while the biased thread is inside.

use multiproc_core::bias::BiasedLock;
use multiproc_core::lock::Owner;
use multiproc_core::testing::{model, thread, Arc, TestPark};
use multiproc_core::{Acquired, Deadline, Error};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// Rounds per thread: under loom, the first acquisition grants the bias
/// and the second takes the fast path, racing the other thread's revoke.
const ROUNDS: u32 = if cfg!(loom) { 2 } else { 5_000 };

type Quiet = TestPark<false>;
type Dying = TestPark<true>;

fn owner(i: u32) -> Owner {
    Owner { id: i + 1, stamp: 7 }
}

#[cfg(loom)]
type Counter = loom::sync::atomic::AtomicU32;
#[cfg(not(loom))]
type Counter = std::sync::atomic::AtomicU32;

/// A non-atomic increment: loses counts without mutual exclusion (Relaxed,
/// so that the lock, not the counter, must order the two threads).
fn bump(c: &Counter) {
    let v = c.load(Relaxed);
    c.store(v + 1, Relaxed);
}

/// Two threads take turns; with no liveness checks (`Quiet`), a lost
/// wake-up of a parked revoker is a deadlock.
#[test]
fn biased_lock_mutual_exclusion_and_no_lost_wakeup() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let lock = Arc::new(BiasedLock::new());
        let count = Arc::new(Counter::new(0));
        let other = {
            let (park, lock, count) = (park.clone(), lock.clone(), count.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    assert_eq!(lock.lock(&*park, owner(1), Deadline::NEVER), Ok(Acquired::Clean));
                    bump(&count);
                    lock.unlock(&*park, owner(1)).unwrap();
                }
            })
        };
        for _ in 0..ROUNDS {
            assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
            bump(&count);
            lock.unlock(&*park, owner(0)).unwrap();
        }
        other.join().unwrap();
        assert_eq!(count.load(SeqCst), 2 * ROUNDS);
    });
}

/// One thread alone keeps the bias; a release by a thread that does not
/// hold it is refused.
#[test]
fn biased_lock_alone_and_misuse() {
    model(|| {
        let park = Quiet::default();
        let lock = BiasedLock::new();
        for _ in 0..3 {
            assert_eq!(lock.lock(&park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
            lock.unlock(&park, owner(0)).unwrap();
        }
        assert_eq!(lock.unlock(&park, owner(1)), Err(Error::NotOwner));
    });
}

/// The biased thread dies inside (its fast enter done, no exit): the next
/// taker finds it dead and gets `OwnerDied`, and the lock works after.
#[test]
fn biased_holder_dies_inside() {
    model(|| {
        let park = Arc::new(Dying::default());
        let lock = Arc::new(BiasedLock::new());
        assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
        lock.unlock(&*park, owner(0)).unwrap(); // grants the bias
        assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
        park.kill(owner(0).id);
        let t = {
            let (park, lock) = (park.clone(), lock.clone());
            thread::spawn(move || {
                let how = lock.lock(&*park, owner(1), Deadline::NEVER);
                lock.unlock(&*park, owner(1)).unwrap();
                how
            })
        };
        assert_eq!(t.join().unwrap(), Ok(Acquired::OwnerDied));
        assert_eq!(lock.lock(&*park, owner(2), Deadline::NEVER), Ok(Acquired::Clean));
        lock.unlock(&*park, owner(2)).unwrap();
    });
}

/// A revoker whose deadline passes while the (live) biased thread is inside
/// times out, leaves the lock usable, and never takes it from the holder.
#[test]
fn revoker_times_out_and_live_holder_is_not_robbed() {
    model(|| {
        let park = Arc::new(Dying::default());
        let lock = Arc::new(BiasedLock::new());
        assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
        lock.unlock(&*park, owner(0)).unwrap();
        assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
        let t = {
            let (park, lock) = (park.clone(), lock.clone());
            thread::spawn(move || {
                let deadline = Deadline::after(&*park, std::time::Duration::from_millis(30));
                lock.lock(&*park, owner(1), deadline)
            })
        };
        assert_eq!(t.join().unwrap(), Err(Error::Timeout));
        lock.unlock(&*park, owner(0)).unwrap();
        assert_eq!(lock.lock(&*park, owner(1), Deadline::NEVER), Ok(Acquired::Clean));
        lock.unlock(&*park, owner(1)).unwrap();
        // The timed-out revocation cleared the bias: owner 0 goes slow now.
        assert_eq!(lock.lock(&*park, owner(0), Deadline::NEVER), Ok(Acquired::Clean));
        lock.unlock(&*park, owner(0)).unwrap();
    });
}
