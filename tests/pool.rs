//! Pools of real processes, under each start method: Python's tutorial
//! programs, the failure-point matrix (after CPython's
//! `test_concurrent_futures/test_deadlock.py`), workers killed mid-task,
//! recycling, initializers, and terminate. Every call that waits runs under
//! a watchdog: a hang fails the test.

mod common;
use common::*;
use multiproc::{ErrorKind, Pool, StartMethod, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn pool(method: StartMethod, n: usize) -> Pool {
    Pool::builder().processes(n).start_method(method).allow_threads(true).build().unwrap()
}

/// Runs `f` on a thread and waits at most [`BOUND`] for it: a hang fails
/// the test (the pool's workers are daemons, killed at exit).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("hung past {BOUND:?}"),
        Err(_) => match t.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
    }
}

fn each_method(test: fn(StartMethod)) {
    let only = std::env::var("ONLY_METHOD").ok();
    for method in METHODS {
        if only.as_deref().is_some_and(|m| m != format!("{method:?}")) {
            continue;
        }
        bounded(move || test(method));
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

fn increment(x: i32) -> i32 {
    x + 1
}

fn square(x: i64) -> i64 {
    x * x
}

fn sort_candy(s: String) -> Vec<char> {
    let mut v: Vec<char> = s.chars().collect();
    v.sort_unstable();
    v
}

#[test]
fn the_tutorials_programs() {
    each_method(|method| {
        assert_eq!(pool(method, 3).map(double, [5, 10, 20]).unwrap(), [10, 20, 40]);
        let out = pool(method, 3).map(increment, 1..=10).unwrap();
        assert_eq!(out, (2..=11).collect::<Vec<_>>());
        assert_eq!(pool(method, 4).map(square, [1, 2, 3, 4, 5]).unwrap(), [1, 4, 9, 16, 25]);
        let candy = ["licorice", "gum", "toffee"].map(String::from);
        let sorted = pool(method, 2).map(sort_candy, candy).unwrap();
        assert_eq!(sorted[1], ['g', 'm', 'u']);
        assert_eq!(sorted.len(), 3);
    });
}

fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[test]
fn starmap_apply_and_chunksizes() {
    each_method(|method| {
        let p = pool(method, 2);
        assert_eq!(p.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
        assert_eq!(p.apply(add, (20, 22)).unwrap(), 42);
        let big = p.chunksize(7).map(double, 0..1000).unwrap();
        assert_eq!(big, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
        let mut r = p.map_async(double, 0..100).unwrap();
        assert_eq!(r.get_timeout(BOUND).unwrap()[99], 198);
        assert!(p.map(double, Vec::<u64>::new()).unwrap().is_empty());
    });
}

#[test]
fn imap_keeps_order_and_imap_unordered_gets_everything() {
    each_method(|method| {
        let p = pool(method, 2);
        let n = 100_000u64;
        for (i, r) in p.imap(double, 0..n).unwrap().enumerate() {
            assert_eq!(r.unwrap(), 2 * i as u64);
        }
        let mut seen: Vec<u64> =
            p.imap_unordered(double, 0..n).unwrap().map(Result::unwrap).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).map(|x| 2 * x).collect::<Vec<_>>());
        // Small chunks too: each item its own message.
        let few: Vec<u64> =
            p.chunksize(1).imap(double, 0..50).unwrap().map(Result::unwrap).collect();
        assert_eq!(few.len(), 50);
    });
}

fn slow(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn apply_async_get_timeout_on_a_slow_task() {
    each_method(|method| {
        let p = pool(method, 1);
        let mut r = p.apply_async(slow, (300,)).unwrap();
        assert!(!r.ready());
        assert_eq!(r.successful(), None);
        let err = r.get_timeout(Duration::from_millis(10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(r.wait_timeout(BOUND).unwrap());
        assert_eq!(r.successful(), Some(true));
        assert_eq!(r.get_timeout(BOUND).unwrap(), 300);
        // Polling `ready` alone moves the pool along.
        let r = p.apply_async(slow, (50,)).unwrap();
        let t = Instant::now();
        while !r.ready() {
            assert!(t.elapsed() < BOUND, "ready() never became true");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.get().unwrap(), 50);
    });
}

fn panics_at_7(x: u32) -> u32 {
    if x == 7 {
        panic!("seven is bad luck");
    }
    x
}

#[test]
fn a_panicking_task_fails_alone() {
    each_method(|method| {
        let p = pool(method, 2);
        let err = p.map(panics_at_7, 0..20).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TaskPanicked);
        assert!(err.to_string().contains("seven is bad luck"), "{err}");
        for (i, r) in p.imap(panics_at_7, 0..20).unwrap().enumerate() {
            if i == 7 {
                assert_eq!(r.unwrap_err().kind(), ErrorKind::TaskPanicked);
            } else {
                assert_eq!(r.unwrap(), i as u32);
            }
        }
        let r = p.apply_async(panics_at_7, (7,)).unwrap();
        assert!(r.wait_timeout(BOUND).unwrap());
        assert_eq!(r.successful(), Some(false));
    });
}

fn tag_length(s: String) -> (usize, u8) {
    if s.starts_with("boom") {
        panic!("{s}");
    }
    (s.len(), s.as_bytes()[0])
}

/// Default chunks end at 64 KiB of arguments: 3 MB of strings travel in
/// dozens of chunks, every result lands at its own index, and a panic in
/// one chunk fails only its item.
#[test]
fn default_chunks_split_by_bytes_keep_every_result_in_place() {
    each_method(|method| {
        let p = std::sync::Arc::new(pool(method, 2));
        let items: Vec<String> = (0..3000)
            .map(|i| char::from(b'a' + (i % 26) as u8).to_string().repeat(1000 + i))
            .collect();
        let want: Vec<(usize, u8)> = items.iter().map(|s| (s.len(), s.as_bytes()[0])).collect();
        let got = bounded({
            let (p, items) = (p.clone(), items.clone());
            move || p.map(tag_length, items).unwrap()
        });
        assert_eq!(got, want);
        let mut failing = items.clone();
        failing[2500] = "boom at 2500".to_string();
        let r = p.map_async(tag_length, failing.clone()).unwrap();
        assert!(r.wait_timeout(BOUND).unwrap());
        assert_eq!(r.successful(), Some(false));
        let results: Vec<_> = bounded(move || p.imap(tag_length, failing).unwrap().collect());
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(got) => assert_eq!(got, want[i]),
                Err(e) => {
                    assert_eq!(i, 2500);
                    assert_eq!(e.kind(), ErrorKind::TaskPanicked);
                }
            }
        }
    });
}

/// Arguments whose deserialization, in the worker, fails (2001), exits
/// (2002) or aborts (2003).
#[derive(Debug)]
struct Arg(u32);

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            2001 => Err(serde::de::Error::custom("argument 2001 refuses to deserialize")),
            2002 => std::process::exit(7),
            2003 => std::process::abort(),
            v => Ok(Arg(v)),
        }
    }
}

/// A result whose serialization, in the worker, fails (1001), exits (1002)
/// or aborts (1003).
#[derive(Debug, PartialEq)]
struct Out(u32);

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            1001 => Err(serde::ser::Error::custom("result 1001 refuses to serialize")),
            1002 => std::process::exit(7),
            1003 => std::process::abort(),
            v => s.serialize_u32(v),
        }
    }
}

impl<'de> Deserialize<'de> for Out {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d).map(Out)
    }
}

/// Panics (3001), exits (3002), aborts (3003), is SIGKILLed (3004);
/// otherwise returns its argument.
fn matrix(a: Arg) -> Out {
    match a.0 {
        3001 => panic!("task 3001 panics"),
        3002 => std::process::exit(9),
        3003 => std::process::abort(),
        3004 => {
            kill_pid(std::process::id());
            unreachable!()
        }
        v => Out(v),
    }
}

#[test]
fn each_failure_point_fails_its_task_only() {
    each_method(|method| {
        let p = pool(method, 2);
        let bad = [2001, 2002, 2003, 3001, 3002, 3003, 3004, 1001, 1002, 1003];
        let mut items = Vec::new();
        for (i, b) in bad.iter().enumerate() {
            items.push(Arg(i as u32));
            items.push(Arg(*b));
        }
        items.push(Arg(99));
        let expected = |v: u32| match v {
            2001 | 1001 => Some(ErrorKind::Codec),
            3001 => Some(ErrorKind::TaskPanicked),
            2002 | 2003 | 3002 | 3003 | 3004 | 1002 | 1003 => Some(ErrorKind::WorkerDied),
            _ => None,
        };
        let values: Vec<u32> = items.iter().map(|a| a.0).collect();
        // Chunks of 3 put healthy tasks beside each failing one.
        let results: Vec<_> = p.chunksize(3).imap(matrix, items).unwrap().collect();
        assert_eq!(results.len(), values.len());
        for (v, r) in values.iter().zip(results) {
            match expected(*v) {
                None => assert_eq!(r.unwrap(), Out(*v)),
                Some(kind) => assert_eq!(r.unwrap_err().kind(), kind, "task {v}"),
            }
        }
        // The pool still works, with replacements for the dead workers.
        assert_eq!(p.map(double, [1, 2, 3]).unwrap(), [2, 4, 6]);
        assert_eq!(p.apply(matrix, (Arg(5),)).unwrap(), Out(5));
        assert_eq!(p.apply(matrix, (Arg(3002),)).unwrap_err().kind(), ErrorKind::WorkerDied);
    });
}

/// A result that the parent refuses to deserialize when it is 4001.
#[derive(Debug, PartialEq, Serialize)]
struct Picky(u32);

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            4001 => Err(serde::de::Error::custom("result 4001 refuses to deserialize")),
            v => Ok(Picky(v)),
        }
    }
}

fn picky(x: u32) -> Picky {
    if x == 3001 {
        panic!("task 3001 panics");
    }
    Picky(x)
}

/// Yields `yields` numbers while its size hint promises exactly `claims`.
struct Liar {
    next: u32,
    yields: u32,
    claims: usize,
}

impl Iterator for Liar {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        (self.next < self.yields).then(|| {
            self.next += 1;
            u64::from(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claims, Some(self.claims))
    }
}

#[test]
fn map_decodes_replies_as_they_come_and_returns_the_first_failure_in_order() {
    each_method(|method| {
        let p = pool(method, 2);
        // A worker dies at item 5 and a task panics at item 9, or the other
        // way round: the lower item's failure is the one returned.
        let mut items: Vec<Arg> = (0..12).map(Arg).collect();
        items[5] = Arg(3002);
        items[9] = Arg(3001);
        let err = p.chunksize(2).map(matrix, items).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WorkerDied, "{err}");
        let mut items: Vec<Arg> = (0..12).map(Arg).collect();
        items[2] = Arg(3001);
        items[9] = Arg(3002);
        let err = p.chunksize(2).map(matrix, items).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TaskPanicked, "{err}");
        // A result the parent cannot decode, before a panic.
        let err = p.chunksize(1).map(picky, [1, 2, 4001, 3, 3001, 5]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec, "{err}");
        let err = p.map(picky, [1, 3001, 4001]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TaskPanicked, "{err}");
        let r = p.map_async(picky, [1, 2, 3001]).unwrap();
        assert!(r.wait_timeout(BOUND).unwrap());
        assert_eq!(r.successful(), Some(false));
        assert_eq!(r.get().unwrap_err().kind(), ErrorKind::TaskPanicked);
        let r = p.map_async(picky, 0..1000).unwrap();
        assert!(r.wait_timeout(BOUND).unwrap());
        assert_eq!(r.successful(), Some(true));
        assert_eq!(r.get().unwrap(), (0..1000).map(Picky).collect::<Vec<_>>());
        // The first item is the slowest: later runs arrive first and wait.
        let ms = [80, 0, 0, 30, 0, 0, 0, 0];
        assert_eq!(p.chunksize(1).map(slow, ms).unwrap(), ms);
        // The pool still works after all that.
        assert_eq!(
            p.map(double, 0..20_000).unwrap(),
            (0..20_000).map(|x| x * 2).collect::<Vec<_>>()
        );
    });
}

#[test]
fn an_iterator_whose_size_hint_lies_loses_and_invents_nothing() {
    each_method(|method| {
        let p = pool(method, 2);
        for (yields, claims) in
            [(300, 5), (3, 500), (0, 10), (20_000, 1), (3, 1 << 31), (3, usize::MAX)]
        {
            let want: Vec<u64> = (0..u64::from(yields)).map(|x| x * 2).collect();
            let liar = || Liar { next: 0, yields, claims };
            assert_eq!(p.map(double, liar()).unwrap(), want, "{yields} for {claims}");
            assert_eq!(p.chunksize(7).map(double, liar()).unwrap(), want);
            let got: Vec<u64> = p.imap(double, liar()).unwrap().map(Result::unwrap).collect();
            assert_eq!(got, want);
            let mut got: Vec<u64> =
                p.imap_unordered(double, liar()).unwrap().map(Result::unwrap).collect();
            got.sort_unstable();
            assert_eq!(got, want);
            assert_eq!(p.map_async(double, liar()).unwrap().get().unwrap(), want);
        }
    });
}

#[test]
fn a_worker_killed_from_outside_fails_its_task_and_is_replaced() {
    each_method(|method| {
        let p = pool(method, 2);
        let mut r = p.apply_async(slow, (5_000,)).unwrap();
        let rest = p.map_async(double, 0..100).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        for pid in p.pids() {
            kill_pid(pid);
        }
        let t = Instant::now();
        assert_eq!(r.get_timeout(BOUND).unwrap_err().kind(), ErrorKind::WorkerDied);
        assert!(t.elapsed() < Duration::from_secs(4), "the death was not noticed promptly");
        assert_eq!(rest.get().unwrap().len(), 100);
        assert_eq!(p.map(double, [21]).unwrap(), [42]);
    });
}

fn my_pid(_: u32) -> u32 {
    std::process::id()
}

#[test]
fn maxtasksperchild_recycles_workers() {
    each_method(|method| {
        let p = Pool::builder()
            .processes(2)
            .maxtasksperchild(1)
            .start_method(method)
            .allow_threads(true)
            .build()
            .unwrap();
        let pids: HashSet<u32> = (0..6).map(|i| p.apply(my_pid, (i,)).unwrap()).collect();
        assert_eq!(pids.len(), 6, "each task ran in a fresh worker");
    });
}

fn count_start(starts: Value<u32>) {
    let mut g = starts.lock().unwrap();
    *g += 1;
}

#[test]
fn the_initializer_runs_once_per_worker() {
    each_method(|method| {
        let starts = Value::new(0u32).unwrap();
        let p = Pool::builder()
            .processes(3)
            .initializer(count_start, (starts.clone(),))
            .start_method(method)
            .allow_threads(true)
            .build()
            .unwrap();
        assert_eq!(p.map(double, 0..1000).unwrap().len(), 1000);
        p.close();
        p.join().unwrap();
        assert_eq!(starts.get().unwrap(), 3);
    });
}

fn fails_to_start() -> i32 {
    3
}

#[test]
fn workers_that_cannot_start_fail_the_tasks_instead_of_looping() {
    each_method(|method| {
        let p = Pool::builder()
            .processes(1)
            .initializer(fails_to_start, ())
            .start_method(method)
            .allow_threads(true)
            .build()
            .unwrap();
        let err = p.apply(double, (1,)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WorkerDied);
    });
}

#[test]
fn terminate_with_tasks_in_flight_returns_promptly() {
    each_method(|method| {
        let p = pool(method, 2);
        let r = p.map_async(slow, [10_000, 10_000, 10_000]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        p.terminate().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(r.get().unwrap_err().kind(), ErrorKind::WorkerDied);
        assert_eq!(p.map(double, [1]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    });
}

#[test]
fn dropping_a_pool_ends_its_workers() {
    each_method(|method| {
        let p = pool(method, 2);
        let pids = p.pids();
        let _r = p.map_async(slow, [10_000]).unwrap();
        drop(p);
        for pid in pids {
            assert!(!pid_alive(pid), "worker {pid} outlived its pool");
        }
    });
}

#[test]
fn close_then_join_finishes_the_work() {
    each_method(|method| {
        let p = pool(method, 2);
        let r = p.map_async(slow, [50, 60, 70]).unwrap();
        assert_eq!(p.join().unwrap_err().kind(), ErrorKind::InvalidArgument);
        p.close();
        assert!(p.join_timeout(BOUND).unwrap());
        assert_eq!(r.get().unwrap(), [50, 60, 70]);
        assert_eq!(p.apply(double, (1,)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    });
}

#[test]
fn bad_arguments_are_errors() {
    assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let err = Pool::builder().processes(1).maxtasksperchild(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // A shared object in a task's arguments cannot go this way.
    let p = Pool::new(1).unwrap();
    let v = Value::new(1u32).unwrap();
    fn read(v: Value<u32>) -> u32 {
        v.get().unwrap()
    }
    assert_eq!(p.apply(read, (v,)).unwrap_err().kind(), ErrorKind::Codec);
}
