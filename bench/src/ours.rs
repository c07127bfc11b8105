//! multiproc's side of each workload: the figures its users would get.

#[cfg(unix)]
use multiproc::connection::{Address, Client, Listener};
#[cfg(unix)]
use multiproc::Manager;
use multiproc::{
    Array, Barrier, Connection, Event, Lock, Pipe, Pool, Process, Queue, StartMethod, Value,
};
use std::hint::black_box;
use std::time::Instant;

/// Microseconds to make one Lock, `count` of them held at once.
pub fn create_locks(count: usize) -> f64 {
    let t = Instant::now();
    let locks: Vec<Lock> = (0..count).map(|_| Lock::new().unwrap()).collect();
    let elapsed = t.elapsed();
    black_box(&locks);
    elapsed.as_nanos() as f64 / 1e3 / count as f64
}

/// Microseconds to make one `Value<u64>`, `count` of them held at once.
pub fn create_values(count: usize) -> f64 {
    let t = Instant::now();
    let values: Vec<Value<u64>> = (0..count).map(|_| Value::new(0).unwrap()).collect();
    let elapsed = t.elapsed();
    black_box(&values);
    elapsed.as_nanos() as f64 / 1e3 / count as f64
}

/// KiB of `field` of /proc/self/status (`VmRSS:`, `RssShmem:`) that 1,000
/// Locks add, each taken once (so its memory is touched); NaN where there
/// is no /proc.
pub fn lock_memory(count: usize, field: &str) -> f64 {
    let before = status_kib(field);
    let locks: Vec<Lock> = (0..count).map(|_| Lock::new().unwrap()).collect();
    for lock in &locks {
        drop(lock.lock().unwrap());
    }
    let after = status_kib(field);
    black_box(&locks);
    (after - before) * 1000.0 / count as f64
}

fn status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field));
    line.and_then(|l| l[field.len()..].trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn lock_uncontended(ops: u64) -> f64 {
    let lock = multiproc::Lock::new().unwrap();
    let t = Instant::now();
    for _ in 0..ops {
        drop(black_box(lock.lock().unwrap()));
    }
    t.elapsed().as_nanos() as f64 / ops as f64
}

fn increment(value: Value<u64>, barrier: Barrier, ops: u64) {
    barrier.wait().unwrap();
    for _ in 0..ops {
        *value.lock().unwrap() += 1;
    }
    barrier.wait().unwrap();
}

/// Millions of increments per second, both processes together.
pub fn value_two_processes(ops: u64) -> f64 {
    let value = Value::new(0u64).unwrap();
    let barrier = Barrier::new(3).unwrap();
    let mut ps: Vec<_> =
        (0..2).map(|_| Process::new(increment, (value.clone(), barrier.clone(), ops))).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    barrier.wait().unwrap();
    let t = Instant::now();
    barrier.wait().unwrap();
    let elapsed = t.elapsed();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    assert_eq!(value.get().unwrap(), 2 * ops);
    (2 * ops) as f64 / elapsed.as_secs_f64() / 1e6
}

fn pong(ping: Event, pong: Event, rounds: u64) {
    for _ in 0..rounds {
        ping.wait();
        ping.clear();
        pong.set();
    }
}

/// Microseconds per round trip.
pub fn event_ping_pong(rounds: u64) -> f64 {
    let (ping, pong_) = (Event::new().unwrap(), Event::new().unwrap());
    let p = Process::new(pong, (ping.clone(), pong_.clone(), rounds + 1));
    p.start().unwrap();
    // One round to be sure the child is up.
    ping.set();
    pong_.wait();
    pong_.clear();
    let t = Instant::now();
    for _ in 0..rounds {
        ping.set();
        pong_.wait();
        pong_.clear();
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

fn echo(conn: Connection, rounds: u64) {
    for _ in 0..rounds {
        let m = conn.recv_bytes().unwrap();
        conn.send_bytes(&m).unwrap();
    }
}

/// Microseconds per 8-byte round trip over a Pipe.
pub fn pipe_round_trip(rounds: u64) -> f64 {
    let (a, b) = Pipe::new().unwrap();
    let p = Process::new(echo, (b, rounds + 1));
    p.start().unwrap();
    timed_round_trips(&a, p, rounds)
}

/// One warm-up and then `rounds` timed 8-byte round trips with `echo`
/// running in `p`; microseconds per round trip.
fn timed_round_trips(a: &Connection, p: Process, rounds: u64) -> f64 {
    a.send_bytes(&[0; 8]).unwrap();
    a.recv_bytes().unwrap();
    let t = Instant::now();
    for _ in 0..rounds {
        a.send_bytes(&[1; 8]).unwrap();
        black_box(a.recv_bytes().unwrap());
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

fn stream(conn: Connection, size: usize, count: u64) {
    let block = vec![7u8; size];
    for _ in 0..count {
        conn.send_bytes(&block).unwrap();
    }
}

/// GB/s of `size`-byte messages from a child to the parent.
pub fn pipe_stream(size: usize, count: u64) -> f64 {
    let (rx, tx) = Pipe::simplex().unwrap();
    let p = Process::new(stream, (tx, size, count));
    p.start().unwrap();
    let mut buf = vec![0u8; size];
    rx.recv_bytes_into(&mut buf).unwrap();
    let t = Instant::now();
    for _ in 1..count {
        black_box(rx.recv_bytes_into(&mut buf).unwrap());
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    (size as f64 * (count - 1) as f64) / elapsed.as_secs_f64() / 1e9
}

fn stream_in_place(conn: Connection, size: usize, count: u64) {
    for i in 0..count {
        conn.send_with(size, |buf| buf.fill(i as u8)).unwrap();
    }
}

/// What an in-place reader does with a message: looks at its length, or
/// (`read_all`) reads every byte where it lies, eight at a time (what a
/// reader that parses the payload pays for touching it), into an XOR.
pub fn look_at(bytes: &[u8], read_all: bool) -> u64 {
    if read_all {
        let words = bytes.chunks_exact(8);
        words.fold(0u64, |x, w| x ^ u64::from_le_bytes(w.try_into().unwrap()))
    } else {
        bytes.len() as u64
    }
}

/// GB/s of `size`-byte messages written and read in place (`send_with`,
/// `recv_with`): the receiver looks at the length only, or (`read_all`)
/// reads every byte where it lies (an XOR of its words).
pub fn pipe_stream_in_place(size: usize, count: u64, read_all: bool) -> f64 {
    let (rx, tx) = Pipe::simplex().unwrap();
    let p = Process::new(stream_in_place, (tx, size, count));
    p.start().unwrap();
    let look = |bytes: &[u8]| look_at(bytes, read_all);
    black_box(rx.recv_with(look).unwrap());
    let t = Instant::now();
    for _ in 1..count {
        black_box(rx.recv_with(look).unwrap());
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    (size as f64 * (count - 1) as f64) / elapsed.as_secs_f64() / 1e9
}

fn queue_put(q: Queue<()>, start: Barrier, count: u64, size: usize) {
    let mut msg = vec![0u8; size.max(8)];
    start.wait().unwrap();
    for i in 0..count {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        q.put_bytes(&msg[..size.max(8)]).unwrap();
    }
}

fn queue_get(q: Queue<()>, start: Barrier, count: u64, reuse: bool) {
    let mut buf = Vec::new();
    start.wait().unwrap();
    for _ in 0..count {
        if reuse {
            q.get_bytes_into(&mut buf).unwrap();
            black_box(&buf);
        } else {
            black_box(q.get_bytes().unwrap());
        }
    }
}

fn queue_put_typed(q: Queue<u64>, start: Barrier, count: u64) {
    start.wait().unwrap();
    for i in 0..count {
        q.put(&i).unwrap();
    }
}

fn queue_get_typed(q: Queue<u64>, start: Barrier, count: u64) {
    start.wait().unwrap();
    for _ in 0..count {
        black_box(q.get().unwrap());
    }
}

/// Runs `ps` (all waiting on `start`), timing from the start to the last exit.
fn timed(mut ps: Vec<Process>, start: &Barrier) -> f64 {
    for p in &mut ps {
        p.start().unwrap();
    }
    start.wait().unwrap();
    let t = Instant::now();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    t.elapsed().as_secs_f64()
}

/// Millions of `size`-byte messages per second through one Queue
/// (`put_bytes`, then `get_bytes`, or `get_bytes_into` one buffer when
/// `reuse`), `producers` processes putting and as many getting.
pub fn queue_throughput(producers: u64, count: u64, size: usize, reuse: bool) -> f64 {
    let start = Barrier::new(2 * producers as u32 + 1).unwrap();
    let per = count / producers;
    let q = Queue::<()>::new().unwrap();
    let mut ps = Vec::new();
    for _ in 0..producers {
        ps.push(Process::new(queue_put, (q.clone(), start.clone(), per, size)));
        ps.push(Process::new(queue_get, (q.clone(), start.clone(), per, reuse)));
    }
    (per * producers) as f64 / timed(ps, &start) / 1e6
}

/// Millions of `u64`s per second through a `Queue<u64>` (`put`/`get`, the
/// way Python's figure is taken), 1 -> 1.
pub fn queue_typed(count: u64) -> f64 {
    let start = Barrier::new(3).unwrap();
    let q = Queue::<u64>::new().unwrap();
    let ps = vec![
        Process::new(queue_put_typed, (q.clone(), start.clone(), count)),
        Process::new(queue_get_typed, (q.clone(), start.clone(), count)),
    ];
    count as f64 / timed(ps, &start) / 1e6
}

/// GB/s writing then reading a whole `Array<f64>` of `len` under its lock.
pub fn array_bulk(len: usize, rounds: u32) -> f64 {
    let array = Array::<f64>::zeroed(len).unwrap();
    let data: Vec<f64> = (0..len).map(|i| i as f64).collect();
    let t = Instant::now();
    for _ in 0..rounds {
        array.copy_from_slice(&data).unwrap();
        black_box(array.to_vec().unwrap());
    }
    (2 * len * 8) as f64 * f64::from(rounds) / t.elapsed().as_secs_f64() / 1e9
}

fn barrier_child(barrier: Barrier, rounds: u64) {
    for _ in 0..rounds {
        barrier.wait().unwrap();
    }
}

/// µs per round of a 2-party Barrier, the parent and a child.
pub fn barrier_round(rounds: u64) -> f64 {
    let barrier = Barrier::new(2).unwrap();
    let p = Process::new(barrier_child, (barrier.clone(), rounds + 1));
    p.start().unwrap();
    barrier.wait().unwrap();
    let t = Instant::now();
    for _ in 0..rounds {
        barrier.wait().unwrap();
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

fn noop() {}

fn tiny(x: u64) -> u64 {
    x
}

/// Millions of tiny tasks per second through `Pool(2).map`, default chunks.
pub fn pool_map(n: u64) -> f64 {
    let pool = Pool::new(2).unwrap();
    pool.map(tiny, 0..1000).unwrap();
    let t = Instant::now();
    let out = pool.map(tiny, 0..n).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(out.len() as u64, n);
    n as f64 / elapsed.as_secs_f64() / 1e6
}

/// Microseconds per `Pool(2).apply` round trip.
pub fn pool_apply(n: u32) -> f64 {
    let pool = Pool::new(2).unwrap();
    pool.apply(tiny, (1,)).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        black_box(pool.apply(tiny, (1,)).unwrap());
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Microseconds per start+join.
pub fn start_join(method: StartMethod, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let p = Process::new(noop, ()).start_method(method);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

#[cfg(unix)]
fn connection_echo(address: Address, key: Vec<u8>, rounds: u64) {
    let conn = Client::connect(address, &key).unwrap();
    echo(conn, rounds);
}

#[cfg(unix)]
/// Microseconds per 8-byte round trip over a Unix-socket connection made
/// by Listener/Client with an authkey (Python's framing).
pub fn connection_round_trip(rounds: u64) -> f64 {
    let key = b"bench".to_vec();
    let listener = Listener::bind(Address::arbitrary_unix().unwrap(), &key).unwrap();
    let address = listener.address().clone();
    let p = Process::new(connection_echo, (address, key, rounds + 1));
    p.start().unwrap();
    timed_round_trips(&listener.accept().unwrap(), p, rounds)
}

#[cfg(unix)]
/// Microseconds per operation on a Manager's dict at a Unix-socket
/// address, alternating `d[k] = v` and `d[k]`; `shared_memory`: whether
/// the connection moves to a Pipe once made (the default), or stays on
/// the socket.
pub fn manager_dict(ops: u64, shared_memory: bool) -> f64 {
    multiproc::manager::set_shared_memory(shared_memory);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u64, u64>().unwrap();
    d.insert(&0, &0).unwrap();
    black_box(d.get(&0).unwrap());
    let t = Instant::now();
    for i in 0..ops / 2 {
        d.insert(&(i % 64), &i).unwrap();
        black_box(d.get(&(i % 64)).unwrap());
    }
    let elapsed = t.elapsed();
    manager.shutdown().unwrap();
    elapsed.as_secs_f64() * 1e6 / (ops / 2 * 2) as f64
}
