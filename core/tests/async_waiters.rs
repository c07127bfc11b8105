//! Models of async waiters: a task that registers in a primitive's waiter
//! count, re-checks, and awaits the object's readiness handle instead of
//! parking on its word (a thread stands for the task, the test park's bell
//! for the handle). Exhaustive under loom; a lost notification hangs
//! natively and is a deadlock under loom (the parks here never time out).

use multiproc_core::bias::BiasedLock;
use multiproc_core::event::RawEvent;
use multiproc_core::lock::{Owner, RawLock};
use multiproc_core::ring::spsc::{Reader, RecvError, SendError, SpscRing, Writer};
use multiproc_core::semaphore::RawSemaphore;
use multiproc_core::testing::{model, thread, Arc, TestBytes, TestPark};
use multiproc_core::Deadline;

type Quiet = TestPark<false>;

fn owner(i: u32) -> Owner {
    Owner { id: i + 1, stamp: 7 }
}

/// The async waiter's loop: `ready` is tried once registered, and after
/// every notification, until it holds.
fn await_until<T>(park: &Quiet, mut ready: impl FnMut() -> Option<T>) -> T {
    loop {
        let seen = park.bell();
        if let Some(done) = ready() {
            return done;
        }
        park.await_bell(seen);
    }
}

#[test]
fn an_async_event_waiter_sees_the_set_or_is_notified() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let event = Arc::new(RawEvent::new());
        let (p, e) = (park.clone(), event.clone());
        let waiter = thread::spawn(move || {
            let start = e.snapshot();
            assert!(e.register_async());
            await_until(&p, || e.fired_since(start).then_some(()));
            e.unregister_async();
        });
        let (p, e) = (park.clone(), event.clone());
        // A blocking waiter beside it is woken as before.
        let blocking = thread::spawn(move || assert!(e.wait(&*p, Deadline::NEVER)));
        event.set(&*park);
        waiter.join().unwrap();
        blocking.join().unwrap();
    });
}

#[test]
fn async_and_blocking_semaphore_waiters_each_get_a_permit() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let sem = Arc::new(RawSemaphore::new(0));
        let (p, s) = (park.clone(), sem.clone());
        let waiter = thread::spawn(move || {
            assert!(s.register_async());
            await_until(&p, || s.try_acquire().then_some(()));
            s.unregister_async();
        });
        let (p, s) = (park.clone(), sem.clone());
        let blocking = thread::spawn(move || s.acquire(&*p, Deadline::NEVER).unwrap());
        sem.release(&*park).unwrap();
        sem.release(&*park).unwrap();
        waiter.join().unwrap();
        blocking.join().unwrap();
        assert_eq!(sem.value(), 0);
    });
}

#[test]
fn an_async_locker_gets_the_lock_its_holder_releases() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_lock(owner(0)));
        let (p, l) = (park.clone(), lock.clone());
        let waiter = thread::spawn(move || {
            assert!(l.register_async(&*p));
            await_until(&p, || l.try_lock(owner(1)).then_some(()));
            l.unregister_async();
            l.unlock(&*p).unwrap();
        });
        lock.unlock(&*park).unwrap();
        waiter.join().unwrap();
        assert!(!lock.is_locked());
    });
}

#[test]
fn an_async_taker_of_a_biased_lock_is_notified_by_the_biased_exit() {
    model(|| {
        let park = Arc::new(Quiet::default());
        let lock = Arc::new(BiasedLock::new());
        // Bias it to owner 0: a slow enter and exit grants it (after the
        // cooldown, which starts at 0).
        let _ = lock.lock(&*park, owner(0), Deadline::NEVER).unwrap();
        lock.unlock(&*park, owner(0)).unwrap();
        let (p, l) = (park.clone(), lock.clone());
        let holder = thread::spawn(move || {
            let _ = l.lock(&*p, owner(0), Deadline::NEVER).unwrap();
            l.unlock(&*p, owner(0)).unwrap();
        });
        assert!(lock.register_async(&*park));
        let how = await_until(&park, || lock.lock(&*park, owner(1), Deadline::now(&*park)).ok());
        assert_eq!(how, multiproc_core::Acquired::Clean);
        lock.unregister_async();
        lock.unlock(&*park, owner(1)).unwrap();
        holder.join().unwrap();
    });
}

struct Ring {
    park: Quiet,
    ring: SpscRing,
    data: TestBytes,
}

#[test]
fn an_async_consumer_and_an_async_producer_lose_no_notification() {
    model(|| {
        // 64 bytes: four 8-byte messages fill it, so the producer waits.
        let data = TestBytes::new(64);
        let r = Arc::new(Ring { park: Quiet::default(), ring: SpscRing::new(), data });
        let p = r.clone();
        let producer = thread::spawn(move || {
            let mut w = Writer::default();
            let count = if cfg!(loom) { 5 } else { 200 };
            for i in 0..count {
                assert!(p.ring.register_async(&p.park, false));
                await_until(&p.park, || {
                    let mut producer = p.ring.producer(&p.park, &p.data, &mut w);
                    match producer.send(&[i as u8; 8], Deadline::now(&p.park), || true) {
                        Ok(()) => Some(()),
                        Err(SendError::Timeout) => None,
                        Err(e) => panic!("{e:?}"),
                    }
                });
                p.ring.unregister_async(false);
            }
            p.ring.close_producer(&p.park);
        });
        let mut reader = Reader::default();
        let mut out = Vec::new();
        let mut got = 0u32;
        assert!(r.ring.register_async(&r.park, true));
        loop {
            let done = await_until(&r.park, || {
                let mut consumer = r.ring.consumer(&r.park, &r.data, &mut reader);
                match consumer.recv(&mut out, 64, Deadline::now(&r.park), || true) {
                    Ok(()) => Some(false),
                    Err(RecvError::Disconnected) => Some(true),
                    Err(RecvError::Timeout) => None,
                    Err(e) => panic!("{e:?}"),
                }
            });
            if done {
                break;
            }
            assert_eq!(out, [got as u8; 8]);
            got += 1;
        }
        r.ring.unregister_async(true);
        producer.join().unwrap();
        assert_eq!(got, if cfg!(loom) { 5 } else { 200 });
    });
}

#[test]
#[cfg(not(loom))]
fn a_full_async_count_registers_nothing() {
    let event = RawEvent::new();
    let mut n = 0;
    while event.register_async() {
        n += 1;
    }
    assert_eq!(n, multiproc_core::park::MAX_ASYNC_WAITERS);
}
