//! The foundation's benchmarks, side by side with Python's multiprocessing
//! and the machine's floor in one run:
//!
//! | workload                                   | multiproc            | floor                    |
//! |--------------------------------------------|----------------------|--------------------------|
//! | Lock acquire+release, uncontended          | `Lock::lock`         | one CAS + one store      |
//! | Value += 1 under its lock, 2 processes     | `*value.lock()? += 1`| –                        |
//! | Event ping-pong between 2 processes        | `Event` set/wait     | –                        |
//! | Pipe round trip, 8 B                       | `Connection`         | socketpair ping-pong     |
//! | Pipe stream, 64 KiB messages               | `recv_bytes_into`    | memcpy of 64 MiB         |
//! | Queue 1→1 and 2→2, 8-byte messages         | `put_bytes`/`get_bytes`, and `put`/`get` of `u64` (time to the last get) | – |
//! | Process start+join, fork / spawn / forkserver | `Process`         | fork+waitpid, exec+wait  |
//! | Pool(2).map of tiny tasks, default chunks  | `Pool::map`          | –                        |
//! | Pool(2).apply round trip                   | `Pool::apply`        | –                        |
//!
//! Run: `cargo bench --bench foundation` (add `-- --quick` for a smoke run).
//! Each figure is the median of several runs, with min–max.

use multiproc::{Barrier, Connection, Event, Pipe, Pool, Process, Queue, StartMethod, Value};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

struct Config {
    runs: usize,
    lock_ops: u64,
    value_ops: u64,
    pings: u64,
    forks: u32,
    spawns: u32,
    blocks: u64,
    messages: u64,
    tasks: u64,
    applies: u32,
}

fn median(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

/// Runs `f` (which returns its own figure) `runs` times after one warm-up.
fn measure(runs: usize, mut f: impl FnMut() -> f64) -> (f64, f64, f64) {
    f();
    median((0..runs).map(|_| f()).collect())
}

fn lock_uncontended(ops: u64) -> f64 {
    let lock = multiproc::Lock::new().unwrap();
    let t = Instant::now();
    for _ in 0..ops {
        drop(black_box(lock.lock().unwrap()));
    }
    t.elapsed().as_nanos() as f64 / ops as f64
}

fn cas_floor(ops: u64) -> f64 {
    let word = AtomicU32::new(0);
    let t = Instant::now();
    for _ in 0..ops {
        let w = black_box(&word);
        while w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {}
        w.store(0, Ordering::Release);
    }
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// A futex lock's floor: releasing must learn atomically whether anyone
/// parked, so it is a CAS to take and a swap (an RMW) to release.
fn cas_swap_floor(ops: u64) -> f64 {
    let word = AtomicU32::new(0);
    let t = Instant::now();
    for _ in 0..ops {
        let w = black_box(&word);
        while w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {}
        black_box(w.swap(0, Ordering::Release));
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
fn value_two_processes(ops: u64) -> f64 {
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
fn event_ping_pong(rounds: u64) -> f64 {
    let (ping, pong_) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(pong, (ping.clone(), pong_.clone(), rounds + 1));
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
fn pipe_round_trip(rounds: u64) -> f64 {
    let (a, b) = Pipe::new().unwrap();
    let mut p = Process::new(echo, (b, rounds + 1));
    p.start().unwrap();
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

/// The floor for a round trip through the kernel: a socketpair ping-pong.
fn socketpair_round_trip(rounds: u64) -> f64 {
    use std::io::{Read, Write};
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        for _ in 0..rounds {
            b.read_exact(&mut buf).unwrap();
            b.write_all(&buf).unwrap();
        }
    });
    let mut buf = [0u8; 8];
    let t = Instant::now();
    for _ in 0..rounds {
        a.write_all(&[1; 8]).unwrap();
        a.read_exact(&mut buf).unwrap();
    }
    let elapsed = t.elapsed();
    child.join().unwrap();
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

fn stream(conn: Connection, size: usize, count: u64) {
    let block = vec![7u8; size];
    for _ in 0..count {
        conn.send_bytes(&block).unwrap();
    }
}

/// GB/s of `size`-byte messages from a child to the parent.
fn pipe_stream(size: usize, count: u64) -> f64 {
    let (rx, tx) = Pipe::simplex().unwrap();
    let mut p = Process::new(stream, (tx, size, count));
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

/// GB/s of one thread copying 64 MiB.
fn memcpy_floor() -> f64 {
    let src = vec![1u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    let t = Instant::now();
    for _ in 0..4 {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    }
    (4.0 * (64 << 20) as f64) / t.elapsed().as_secs_f64() / 1e9
}

fn queue_put(q: Queue<()>, start: Barrier, count: u64) {
    start.wait().unwrap();
    for i in 0..count {
        q.put_bytes(&i.to_le_bytes()).unwrap();
    }
}

fn queue_get(q: Queue<()>, start: Barrier, count: u64) {
    start.wait().unwrap();
    for _ in 0..count {
        black_box(q.get_bytes().unwrap());
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

/// Millions of 8-byte messages per second through one Queue, `producers`
/// processes putting and as many getting, all started together: bytes
/// (`put_bytes`/`get_bytes`), or `u64`s (`put`/`get`, as Python's figure).
fn queue_throughput(producers: u64, count: u64, typed: bool) -> f64 {
    let start = Barrier::new(2 * producers as u32 + 1).unwrap();
    let per = count / producers;
    let (q, qt) = (Queue::<()>::new().unwrap(), Queue::<u64>::new().unwrap());
    let mut ps: Vec<_> = (0..producers)
        .flat_map(|_| {
            if typed {
                [
                    Process::new(queue_put_typed, (qt.clone(), start.clone(), per)),
                    Process::new(queue_get_typed, (qt.clone(), start.clone(), per)),
                ]
            } else {
                [
                    Process::new(queue_put, (q.clone(), start.clone(), per)),
                    Process::new(queue_get, (q.clone(), start.clone(), per)),
                ]
            }
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    start.wait().unwrap();
    let t = Instant::now();
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    (per * producers) as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn noop() {}

fn tiny(x: u64) -> u64 {
    x
}

/// Millions of tiny tasks per second through `Pool(2).map`, default chunks.
fn pool_map(n: u64) -> f64 {
    let pool = Pool::new(2).unwrap();
    pool.map(tiny, 0..1000).unwrap();
    let t = Instant::now();
    let out = pool.map(tiny, 0..n).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(out.len() as u64, n);
    n as f64 / elapsed.as_secs_f64() / 1e6
}

/// Microseconds per `Pool(2).apply` round trip.
fn pool_apply(n: u32) -> f64 {
    let pool = Pool::new(2).unwrap();
    pool.apply(tiny, (1,)).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        black_box(pool.apply(tiny, (1,)).unwrap());
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Microseconds per start+join.
fn start_join(method: StartMethod, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let mut p = Process::new(noop, ()).start_method(method);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// fork + _exit + waitpid, straight to libc.
fn fork_floor(n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: the bench is single-threaded here; the child only _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn exec_floor(n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        std::process::Command::new("/bin/true").status().unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Python's figures from `benches/python_foundation.py`, by name.
fn python(quick: bool) -> Vec<(String, f64)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_foundation.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script);
    if quick {
        cmd.arg("--quick");
    }
    match cmd.output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect(),
        Ok(out) => {
            eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
            Vec::new()
        }
        Err(e) => {
            eprintln!("python3 not run: {e}");
            Vec::new()
        }
    }
}

fn main() {
    multiproc::init();
    let quick = std::env::args().any(|a| a == "--quick");
    let c = if quick {
        Config {
            runs: 3,
            lock_ops: 1_000_000,
            value_ops: 200_000,
            pings: 2_000,
            forks: 20,
            spawns: 5,
            blocks: 2_000,
            messages: 1_000_000,
            tasks: 200_000,
            applies: 500,
        }
    } else {
        Config {
            runs: 7,
            lock_ops: 20_000_000,
            value_ops: 2_000_000,
            pings: 20_000,
            forks: 200,
            spawns: 30,
            blocks: 20_000,
            messages: 10_000_000,
            tasks: 1_000_000,
            applies: 5_000,
        }
    };
    let py = python(quick);
    let py = |k: &str| py.iter().find(|(n, _)| n == k).map(|(_, v)| *v);

    println!("machine: {} CPUs; {} runs each; median [min–max]", multiproc::cpu_count(), c.runs);
    println!(
        "{:<38} {:>24} {:>12} {:>12} {:>10} {:>10}",
        "workload", "multiproc", "python", "floor", "vs python", "vs floor"
    );
    let row = |name: &str,
               unit: &str,
               m: (f64, f64, f64),
               py: Option<f64>,
               floor: Option<f64>,
               higher_is_better: bool| {
        let ratio = |other: Option<f64>| {
            other.map_or("-".to_string(), |o| {
                let r = if higher_is_better { m.0 / o } else { o / m.0 };
                format!("{r:.2}x")
            })
        };
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:<38} {:>24} {:>12} {:>12} {:>10} {:>10}",
            format!("{name} ({unit})"),
            format!("{:.3} [{:.3}–{:.3}]", m.0, m.1, m.2),
            fmt(py),
            fmt(floor),
            ratio(py),
            ratio(floor),
        );
    };

    let lock = measure(c.runs, || lock_uncontended(c.lock_ops));
    let cas = measure(c.runs, || cas_floor(c.lock_ops));
    let cas_swap = measure(c.runs, || cas_swap_floor(c.lock_ops));
    row("Lock acquire+release", "ns", lock, py("lock_ns"), Some(cas.0), false);
    row("  floor: CAS+swap (any futex lock)", "ns", cas_swap, None, Some(cas.0), false);

    let value = measure(c.runs, || value_two_processes(c.value_ops));
    row("Value += 1 locked, 2 processes", "M/s", value, py("value_mops"), None, true);

    let pipe = measure(c.runs, || pipe_round_trip(c.pings));
    let sock = measure(c.runs, || socketpair_round_trip(c.pings));
    row("Pipe round trip, 8 B", "us", pipe, py("pipe_us"), Some(sock.0), false);

    let stream64 = measure(c.runs, || pipe_stream(64 << 10, c.blocks));
    let memcpy = measure(c.runs, memcpy_floor);
    row("Pipe stream, 64 KiB messages", "GB/s", stream64, py("stream_gbs"), Some(memcpy.0), true);

    let q11 = measure(c.runs, || queue_throughput(1, c.messages, false));
    row("Queue 1->1, 8 B", "M msg/s", q11, py("queue11_mps"), None, true);
    let q11t = measure(c.runs, || queue_throughput(1, c.messages, true));
    row("Queue<u64> 1->1, put/get", "M msg/s", q11t, py("queue11_mps"), None, true);
    let q22 = measure(c.runs, || queue_throughput(2, c.messages, false));
    row("Queue 2->2, 8 B", "M msg/s", q22, py("queue22_mps"), None, true);

    let event = measure(c.runs, || event_ping_pong(c.pings));
    row("Event ping-pong round trip", "us", event, py("event_us"), None, false);

    let fork = measure(c.runs, || start_join(StartMethod::Fork, c.forks));
    let fork0 = measure(c.runs, || fork_floor(c.forks));
    row("Process start+join, fork", "us", fork, py("fork_us"), Some(fork0.0), false);

    let spawn = measure(c.runs, || start_join(StartMethod::Spawn, c.spawns));
    let exec0 = measure(c.runs, || exec_floor(c.spawns));
    row("Process start+join, spawn", "us", spawn, py("spawn_us"), Some(exec0.0), false);

    let server = measure(c.runs, || start_join(StartMethod::ForkServer, c.forks));
    row("Process start+join, forkserver", "us", server, py("forkserver_us"), Some(fork0.0), false);

    let map = measure(c.runs, || pool_map(c.tasks));
    row("Pool(2).map, tiny tasks", "M tasks/s", map, py("pool_map_mtps"), None, true);
    let apply = measure(c.runs, || pool_apply(c.applies));
    row("Pool(2).apply round trip", "us", apply, py("pool_apply_us"), None, false);
}
