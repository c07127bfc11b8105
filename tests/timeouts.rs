//! Every blocking `_timeout` call takes `Duration::MAX` (and other timeouts
//! past what the clock holds) as "no deadline": it waits and returns, it
//! never panics on the deadline's arithmetic. Each call below really waits
//! on another process, which makes it succeed a little later.

mod common;
use common::*;
use multiproc::connection::{self, Address, Client, Listener};
use multiproc::manager::{ConditionProxy, EventProxy, LockProxy, QueueProxy, SemaphoreProxy};
use multiproc::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock, Manager,
    Pipe, Pool, Process, Queue, RLock, Semaphore, Value,
};
use std::time::Duration;

const MAX: Duration = Duration::MAX;
/// How long the child waits before each release, so that each call of
/// the parent's really waits.
const STEP: Duration = Duration::from_millis(30);

/// What the child holds and releases one by one, in this order.
#[derive(serde::Serialize, serde::Deserialize)]
struct Held {
    ready: Event,
    lock: Lock,
    rlock: RLock,
    sem: Semaphore,
    bounded: BoundedSemaphore,
    event: Event,
    value: Value<u64>,
    array: Array<u32>,
    items: Queue<u64>,
    bytes: Queue<u64>,
    full: Queue<u64>,
    pipe: Connection,
    barrier: Barrier,
    cond: Condition,
    flag: Value<u64>,
    tasks: JoinableQueue<u64>,
}

fn holds_then_releases(h: Held) -> i32 {
    h.lock.acquire().unwrap();
    h.rlock.acquire().unwrap();
    h.bounded.acquire().unwrap();
    let value = h.value.lock().unwrap();
    let array = h.array.lock().unwrap();
    h.ready.set();
    let step = || std::thread::sleep(STEP);
    step();
    h.lock.release().unwrap();
    step();
    h.rlock.release().unwrap();
    step();
    h.sem.release().unwrap();
    step();
    h.bounded.release().unwrap();
    step();
    h.event.set();
    step();
    drop(value);
    step();
    drop(array);
    step();
    h.items.put(&1).unwrap();
    step();
    h.bytes.put_bytes(b"b").unwrap();
    step();
    h.full.get_timeout(BOUND).unwrap();
    step();
    h.pipe.send(&5u8).unwrap();
    step();
    h.pipe.send_bytes(b"bytes").unwrap();
    step();
    h.pipe.send_bytes(b"into").unwrap();
    step();
    h.pipe.send_bytes(b"polled").unwrap();
    h.barrier.wait_timeout(BOUND).unwrap();
    step();
    {
        let _g = h.cond.lock().unwrap();
        h.flag.set(1).unwrap();
        h.cond.notify_all().unwrap();
    }
    h.tasks.get_timeout(BOUND).unwrap();
    step();
    h.tasks.task_done().unwrap();
    step();
    0
}

#[test]
fn local_primitives_wait_with_duration_max() {
    let full = Queue::<u64>::with_capacity(4096).unwrap();
    let mut filled = 0;
    while full.put_nowait(&0).is_ok() {
        filled += 1;
    }
    assert!(filled > 0);
    let (ours, theirs) = Pipe::new().unwrap();
    let h = Held {
        ready: Event::new().unwrap(),
        lock: Lock::new().unwrap(),
        rlock: RLock::new().unwrap(),
        sem: Semaphore::new(0).unwrap(),
        bounded: BoundedSemaphore::new(1).unwrap(),
        event: Event::new().unwrap(),
        value: Value::new(0).unwrap(),
        array: Array::zeroed(4).unwrap(),
        items: Queue::new().unwrap(),
        bytes: Queue::new().unwrap(),
        full: full.clone(),
        pipe: theirs,
        barrier: Barrier::new(2).unwrap(),
        cond: Condition::new().unwrap(),
        flag: Value::new(0).unwrap(),
        tasks: JoinableQueue::new().unwrap(),
    };
    h.tasks.put(&9).unwrap();
    let p = child(Process::new(holds_then_releases, (h.clone_for_child(),)));
    p.start().unwrap();
    assert!(h.ready.wait_timeout(BOUND));
    h.lock.acquire_timeout(MAX).unwrap();
    drop(h.rlock.lock_timeout(MAX).unwrap());
    h.sem.acquire_timeout(MAX).unwrap();
    h.bounded.acquire_timeout(MAX).unwrap();
    assert!(h.event.wait_timeout(MAX));
    drop(h.value.lock_timeout(MAX).unwrap());
    drop(h.array.lock_timeout(MAX).unwrap());
    assert_eq!(h.items.get_timeout(MAX).unwrap(), 1);
    assert_eq!(h.bytes.get_bytes_timeout(MAX).unwrap(), b"b");
    full.put_timeout(&0, MAX).unwrap();
    assert_eq!(ours.recv_timeout::<u8>(MAX).unwrap(), 5);
    assert_eq!(ours.recv_bytes_timeout(MAX).unwrap(), b"bytes");
    let mut buf = [0; 16];
    assert_eq!(ours.recv_bytes_into_timeout(&mut buf, MAX).unwrap(), 4);
    assert!(ours.poll_timeout(MAX));
    assert_eq!(connection::wait(&[&ours], Some(MAX)).unwrap(), [0]);
    assert_eq!(ours.recv_bytes_timeout(MAX).unwrap(), b"polled");
    h.barrier.wait_timeout(MAX).unwrap();
    {
        let _g = h.cond.lock().unwrap();
        assert!(h.cond.wait_for_timeout(|| h.flag.get().unwrap() == 1, MAX).unwrap());
    }
    assert!(h.tasks.join_timeout(MAX).unwrap());
    assert_eq!(p.join_timeout(MAX).unwrap(), Some(0));
    ours.send_timeout(&1u8, MAX).unwrap();
    ours.send_bytes_timeout(b"x", MAX).unwrap();
    // The rest of the family, on objects that are free by now.
    h.lock.release().unwrap();
    drop(h.lock.lock_timeout(MAX).unwrap());
    h.rlock.acquire_timeout(MAX).unwrap();
    h.rlock.release().unwrap();
    h.cond.acquire_timeout(MAX).unwrap();
    h.cond.release().unwrap();
    h.items.put_bytes_timeout(&[1, 0, 0, 0, 0, 0, 0, 0], MAX).unwrap();
    assert_eq!(h.items.get_bytes_timeout(MAX).unwrap().len(), 8);
    h.tasks.put_timeout(&1, MAX).unwrap();
    assert_eq!(h.tasks.get_timeout(MAX).unwrap(), 1);
    h.tasks.task_done().unwrap();
    let simple = multiproc::SimpleQueue::<u8>::new().unwrap();
    simple.put(&3).unwrap();
    assert_eq!(simple.get_timeout(MAX).unwrap(), 3);
}

impl Held {
    /// The same objects, as the child's argument.
    fn clone_for_child(&self) -> Held {
        Held {
            ready: self.ready.clone(),
            lock: self.lock.clone(),
            rlock: self.rlock.clone(),
            sem: self.sem.clone(),
            bounded: self.bounded.clone(),
            event: self.event.clone(),
            value: self.value.clone(),
            array: self.array.clone(),
            items: self.items.clone(),
            bytes: self.bytes.clone(),
            full: self.full.clone(),
            pipe: self.pipe.try_clone().unwrap(),
            barrier: self.barrier.clone(),
            cond: self.cond.clone(),
            flag: self.flag.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

fn connects_and_answers(address: Address, key: Vec<u8>) {
    std::thread::sleep(STEP);
    let conn = Client::connect_timeout(address, &key, MAX).unwrap();
    std::thread::sleep(STEP);
    conn.send(&"hello").unwrap();
    assert_eq!(conn.recv_timeout::<String>(MAX).unwrap(), "back");
}

#[test]
fn sockets_wait_with_duration_max() {
    let key = b"a key of sixteen bytes or more".to_vec();
    for address in [Address::arbitrary_unix().unwrap(), Address::from("127.0.0.1:0")] {
        let listener = Listener::bind(address, &key).unwrap();
        let address = listener.address().clone();
        let p = child(Process::new(connects_and_answers, (address, key.clone())));
        p.start().unwrap();
        let conn = listener.accept_timeout(MAX).unwrap();
        assert_eq!(connection::wait(&[&conn], Some(MAX)).unwrap(), [0]);
        assert_eq!(conn.recv_timeout::<String>(MAX).unwrap(), "hello");
        conn.send_timeout(&"back", MAX).unwrap();
        assert_eq!(finish(&p), 0);
    }
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(STEP);
    x * x
}

fn slow_add(a: u64, b: u64) -> u64 {
    std::thread::sleep(STEP);
    a + b
}

#[test]
fn pools_wait_with_duration_max() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.map_timeout(slow_square, [2, 3], MAX).unwrap(), [4, 9]);
    assert_eq!(pool.starmap_timeout(slow_add, [(1, 2)], MAX).unwrap(), [3]);
    let mut it = pool.imap(slow_square, [4]).unwrap();
    assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 16);
    assert!(it.next_timeout(MAX).is_none());
    let mut it = pool.imap_unordered(slow_square, [5]).unwrap();
    assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 25);
    let mut r = pool.apply_async(slow_square, (6,)).unwrap();
    assert!(r.wait_timeout(MAX).unwrap());
    assert_eq!(r.get_timeout(MAX).unwrap(), 36);
    pool.close();
    assert!(pool.join_timeout(MAX).unwrap());
}

/// Holds the manager's objects, then lets them go one by one.
fn manager_holder(
    lock: LockProxy,
    sem: SemaphoreProxy,
    event: EventProxy,
    queue: QueueProxy<u64>,
    cond: ConditionProxy,
    (ready, woken): (Event, Event),
) {
    lock.acquire().unwrap();
    ready.set();
    std::thread::sleep(STEP);
    lock.release().unwrap();
    std::thread::sleep(STEP);
    sem.release().unwrap();
    std::thread::sleep(STEP);
    event.set().unwrap();
    std::thread::sleep(STEP);
    queue.put(&7).unwrap();
    std::thread::sleep(STEP);
    assert_eq!(queue.get_timeout(BOUND).unwrap(), 8);
    queue.task_done().unwrap();
    queue.task_done().unwrap();
    // Notify until the parent says it woke (it may not wait yet).
    while !woken.wait_timeout(STEP) {
        cond.acquire().unwrap();
        cond.notify_all().unwrap();
        cond.release().unwrap();
    }
}

#[test]
fn manager_calls_wait_with_duration_max() {
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap().with_timeout(MAX);
    let sem = manager.semaphore(0).unwrap();
    let event = manager.event().unwrap();
    let queue = manager.bounded_queue::<u64>(1).unwrap();
    let cond = manager.condition().unwrap();
    let (ready, woken) = (Event::new().unwrap(), Event::new().unwrap());
    let args = (
        lock.clone(),
        sem.clone(),
        event.clone(),
        queue.clone(),
        cond.clone(),
        (ready.clone(), woken.clone()),
    );
    let p = child(Process::new(manager_holder, args));
    p.start().unwrap();
    assert!(ready.wait_timeout(BOUND));
    lock.acquire_timeout(MAX).unwrap();
    lock.release().unwrap();
    sem.acquire_timeout(MAX).unwrap();
    assert!(event.wait_timeout(MAX).unwrap());
    assert_eq!(queue.get_timeout(MAX).unwrap(), 7);
    queue.put_timeout(&8, MAX).unwrap();
    assert!(queue.join_timeout(MAX).unwrap());
    cond.acquire_timeout(MAX).unwrap();
    assert!(cond.wait_timeout(MAX).unwrap());
    cond.release().unwrap();
    woken.set();
    assert_eq!(finish(&p), 0);
    let key = multiproc::current_process().authkey().unwrap();
    Manager::connect_timeout(manager.address().clone(), &key, MAX).unwrap();
    let rlock = manager.rlock().unwrap();
    rlock.acquire_timeout(MAX).unwrap();
    rlock.release().unwrap();
}

fn hold_cells(value: Value<u64>, array: Array<u32>, held: Event, go: Event) {
    let _v = value.lock().unwrap();
    let _a = array.lock().unwrap();
    held.set();
    go.wait_timeout(BOUND);
}

#[test]
fn value_and_array_locks_time_out_while_another_process_holds_them() {
    let (value, array) = (Value::new(0u64).unwrap(), Array::<u32>::zeroed(3).unwrap());
    let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
    let args = (value.clone(), array.clone(), held.clone(), go.clone());
    let p = child(Process::new(hold_cells, args));
    p.start().unwrap();
    assert!(held.wait_timeout(BOUND));
    let short = Duration::from_millis(50);
    assert!(value.lock_timeout(short).unwrap_err().is_timeout());
    assert!(value.try_lock().unwrap_err().is_timeout());
    assert!(array.lock_timeout(short).unwrap_err().is_timeout());
    assert!(array.try_lock().unwrap_err().is_timeout());
    go.set();
    *value.lock_timeout(BOUND).unwrap() += 1;
    array.lock_timeout(BOUND).unwrap()[2] = 7;
    assert_eq!((value.get().unwrap(), array.to_vec().unwrap()), (1, vec![0, 0, 7]));
    assert_eq!(finish(&p), 0);
}

#[test]
fn pool_maps_and_imap_iterators_time_out_and_go_on() {
    let pool = Pool::new(1).unwrap();
    let short = Duration::from_millis(50);
    let e = pool.map_timeout(slow_square, [1, 2, 3, 4, 5, 6, 7, 8], short).unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let e = pool.starmap_timeout(slow_add, [(1, 1); 8], short).unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let mut it = pool.imap(slow_square, [3]).unwrap();
    assert!(it.next_timeout(Duration::ZERO).unwrap().unwrap_err().is_timeout());
    assert_eq!(it.next_timeout(BOUND).unwrap().unwrap(), 9);
    assert!(it.next_timeout(BOUND).is_none());
    let mut it = pool.imap_unordered(slow_square, [4]).unwrap();
    assert!(it.next_timeout(Duration::ZERO).unwrap().unwrap_err().is_timeout());
    assert_eq!(it.next_timeout(BOUND).unwrap().unwrap(), 16);
    assert_eq!(pool.map_timeout(slow_square, [5], BOUND).unwrap(), [25]);
}
