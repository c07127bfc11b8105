//! Queues between real processes: Python's tutorial programs, many
//! producers and consumers, large messages, producers killed mid-put, a
//! queue handed to a running process.

mod common;
use common::*;
use multiproc::{
    Connection, ErrorKind, Event, JoinableQueue, Pipe, Process, Queue, RawArray, SimpleQueue,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

fn produce(q: Queue<Option<u32>>) {
    for i in 0..10 {
        q.put(&Some(i)).unwrap();
    }
    q.put(&None).unwrap();
}

fn consume(q: Queue<Option<u32>>, seen: RawArray<u32>) -> i32 {
    let mut n = 0;
    while let Some(i) = q.get_timeout(BOUND).unwrap() {
        seen.set(n, i).unwrap();
        n += 1;
    }
    if n == 10 {
        0
    } else {
        3
    }
}

#[test]
fn a_consumer_reads_until_the_sentinel() {
    for method in METHODS {
        let q = Queue::new().unwrap();
        let seen = RawArray::<u32>::zeroed(10).unwrap();
        let ps = vec![
            with(method, Process::new(consume, (q.clone(), seen.clone()))),
            with(method, Process::new(produce, (q.clone(),))),
        ];
        assert_eq!(run_all(&ps), [0, 0], "{method:?}");
        assert_eq!(seen.to_vec(), (0..10).collect::<Vec<_>>());
        assert!(q.empty());
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Record {
    Text(String),
    Number(i64),
}

fn put_records(q: Queue<(Record, Record, Vec<f64>)>) {
    q.put(&(Record::Text("one".into()), Record::Number(3), vec![0.5, 2.0])).unwrap();
}

#[test]
fn a_worker_puts_structured_data() {
    for method in METHODS {
        let q = Queue::new().unwrap();
        let p = with(method, Process::new(put_records, (q.clone(),)));
        p.start().unwrap();
        let got = q.get_timeout(BOUND).unwrap();
        assert_eq!(got, (Record::Text("one".into()), Record::Number(3), vec![0.5, 2.0]));
        assert_eq!(finish(&p), 0);
    }
}

/// Messages per producer (4M in all take a few seconds even unoptimized).
const PER_PRODUCER: u64 = 1_000_000;
const PRODUCERS: u64 = 4;

fn numbered(q: Queue<(u64, u64)>, producer: u64) {
    for seq in 0..PER_PRODUCER {
        q.put(&(producer, seq)).unwrap();
    }
}

/// Takes messages until it sees `PRODUCERS` end marks; checks each
/// producer's sequence only grows; reports count, sum and sum of squares.
fn drain(q: Queue<(u64, u64)>, report: RawArray<u64>, slot: usize) -> i32 {
    let mut last = [None::<u64>; PRODUCERS as usize];
    let (mut count, mut sum, mut squares) = (0u64, 0u64, 0u64);
    loop {
        let (producer, seq) = q.get_timeout(BOUND).unwrap();
        if producer == u64::MAX {
            break;
        }
        let p = producer as usize;
        if last[p].is_some_and(|l| seq <= l) {
            eprintln!("producer {producer}: {seq} after {:?}", last[p]);
            return 3;
        }
        last[p] = Some(seq);
        let id = producer * PER_PRODUCER + seq;
        count += 1;
        sum = sum.wrapping_add(id);
        squares = squares.wrapping_add(id.wrapping_mul(id));
    }
    for (i, v) in [count, sum, squares].into_iter().enumerate() {
        report.set(slot * 3 + i, v).unwrap();
    }
    0
}

#[test]
fn four_producers_four_consumers_exactly_once_in_order() {
    let q = Queue::new().unwrap();
    let report = RawArray::<u64>::zeroed(12).unwrap();
    let mut consumers: Vec<_> =
        (0..4).map(|slot| child(Process::new(drain, (q.clone(), report.clone(), slot)))).collect();
    let mut producers: Vec<_> =
        (0..PRODUCERS).map(|p| child(Process::new(numbered, (q.clone(), p)))).collect();
    for p in consumers.iter_mut().chain(producers.iter_mut()) {
        p.start().unwrap();
    }
    for p in &mut producers {
        assert_eq!(finish(p), 0);
    }
    for _ in 0..4 {
        q.put(&(u64::MAX, 0)).unwrap();
    }
    for p in &mut consumers {
        assert_eq!(finish(p), 0);
    }
    let r = report.to_vec();
    let total = PRODUCERS * PER_PRODUCER;
    let (count, sum, squares) = (0..4).fold((0u64, 0u64, 0u64), |(c, s, q), i| {
        (c + r[i * 3], s.wrapping_add(r[i * 3 + 1]), q.wrapping_add(r[i * 3 + 2]))
    });
    let expect_sum = (0..total).fold(0u64, |a, id| a.wrapping_add(id));
    let expect_squares = (0..total).fold(0u64, |a, id| a.wrapping_add(id.wrapping_mul(id)));
    assert_eq!((count, sum, squares), (total, expect_sum, expect_squares));
    assert!(q.empty());
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

fn put_big(q: Queue<()>) {
    q.put_bytes(&pattern(64 << 20, 5)).unwrap();
    q.put_bytes(b"next").unwrap();
}

#[test]
fn a_64_mib_message_through_a_default_queue() {
    let q = Queue::<()>::new().unwrap();
    let p = child(Process::new(put_big, (q.clone(),)));
    p.start().unwrap();
    assert!(q.get_bytes_timeout(BOUND).unwrap() == pattern(64 << 20, 5));
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"next");
    assert_eq!(finish(&p), 0);
}

/// A message whose bytes are a checksum of its header: torn data shows.
fn checked(producer: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + len);
    m.extend(producer.to_le_bytes());
    m.extend(seq.to_le_bytes());
    m.extend((0..len).map(|i| (i as u32 ^ producer ^ seq) as u8));
    m
}

fn put_forever(q: Queue<()>, producer: u32) {
    for seq in 0.. {
        // Some messages span several frames of a 64 KiB ring.
        let len = if seq % 7 == 0 { 40_000 } else { (seq as usize * 13) % 300 };
        q.put_bytes(&checked(producer, seq, len)).unwrap();
    }
}

#[test]
fn producers_killed_mid_put_never_tear_or_block_consumers() {
    let q = Queue::<()>::with_capacity(1 << 16).unwrap();
    let mut last = std::collections::HashMap::new();
    let mut received = 0u64;
    let mut check = |m: Vec<u8>| {
        let producer = u32::from_le_bytes(m[..4].try_into().unwrap());
        let seq = u32::from_le_bytes(m[4..8].try_into().unwrap());
        let len = m.len() - 8;
        assert_eq!(m, checked(producer, seq, len), "torn message");
        let prev = last.insert(producer, seq);
        assert_eq!(prev.map_or(0, |p| p + 1), seq, "producer {producer}: lost or repeated");
        received += 1;
    };
    for round in 0..12u32 {
        let p = child(Process::new(put_forever, (q.clone(), round)));
        p.start().unwrap();
        // Once it has begun (starts are slow under Wine), drain for a
        // moment, then kill it wherever it is.
        check(q.get_bytes_timeout(BOUND).unwrap());
        let until = std::time::Instant::now() + Duration::from_millis(20 + u64::from(round) * 3);
        while std::time::Instant::now() < until {
            if let Ok(m) = q.get_bytes_timeout(Duration::from_millis(5)) {
                check(m);
            }
        }
        p.kill().unwrap();
        assert_eq!(finish(&p), KILLED);
    }
    // Whatever the dead producers committed is still delivered, once.
    while let Ok(m) = q.get_bytes_timeout(Duration::from_millis(100)) {
        check(m);
    }
    // A new producer takes the put lock over and the queue works.
    q.put_bytes(&checked(99, 0, 10)).unwrap();
    check(q.get_bytes_timeout(BOUND).unwrap());
    assert!(received > 12, "{received}");
}

/// Gets a queue over `control`, then answers through it (saying `asked`
/// once it took the question).
fn use_a_passed_queue(control: Connection, asked: Event) -> i32 {
    let q: Queue<String> = control.recv_timeout(BOUND).unwrap();
    let question = q.get_timeout(BOUND).unwrap();
    asked.set();
    q.put(&format!("answer to {question}")).unwrap();
    0
}

#[test]
fn a_queue_sent_over_a_pipe_to_a_running_child() {
    for method in METHODS {
        let (control, theirs) = Pipe::new().unwrap();
        let asked = Event::new().unwrap();
        let p = with(method, Process::new(use_a_passed_queue, (theirs, asked.clone())));
        p.start().unwrap();
        let q = Queue::<String>::new().unwrap();
        control.send(&q).unwrap();
        q.put(&"question".to_string()).unwrap();
        // Once the child has taken the question, the next item is its
        // answer (it gets once).
        assert!(asked.wait_timeout(BOUND), "{method:?}: the child never took the question");
        let answer = q.get_timeout(BOUND).unwrap();
        assert_eq!(answer, "answer to question", "{method:?}");
        assert_eq!(finish(&p), 0);
    }
}

fn worker(tasks: JoinableQueue<u32>, results: Queue<u32>) {
    loop {
        let n = tasks.get_timeout(BOUND).unwrap();
        if n == u32::MAX {
            tasks.task_done().unwrap();
            return;
        }
        results.put(&(n * n)).unwrap();
        tasks.task_done().unwrap();
    }
}

#[test]
fn a_joinable_queue_joins_when_workers_are_done() {
    for method in METHODS {
        let tasks = JoinableQueue::new().unwrap();
        let results = Queue::new().unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|_| with(method, Process::new(worker, (tasks.clone(), results.clone()))))
            .collect();
        for p in &mut ps {
            p.start().unwrap();
        }
        for n in 0..50 {
            tasks.put(&n).unwrap();
        }
        assert!(tasks.join_timeout(BOUND).unwrap(), "{method:?}");
        let mut squares: Vec<u32> = (0..50).map(|_| results.get_timeout(BOUND).unwrap()).collect();
        squares.sort();
        assert_eq!(squares, (0..50).map(|n| n * n).collect::<Vec<_>>());
        for _ in 0..3 {
            tasks.put(&u32::MAX).unwrap();
        }
        assert!(tasks.join_timeout(BOUND).unwrap());
        for p in &mut ps {
            assert_eq!(finish(p), 0);
        }
    }
}

#[test]
fn full_empty_and_closed() {
    let q = Queue::<Vec<u8>>::with_capacity(4096).unwrap();
    assert_eq!(q.get_nowait().unwrap_err().kind(), ErrorKind::Empty);
    assert_eq!(q.get_timeout(Duration::from_millis(5)).unwrap_err().kind(), ErrorKind::Empty);
    let mut puts = 0;
    let err = loop {
        match q.put_nowait(&vec![1; 100]) {
            Ok(()) => puts += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::Full);
    assert!(q.full());
    assert_eq!(q.qsize(), puts);
    assert_eq!(
        q.put_timeout(&vec![1; 100], Duration::from_millis(5)).unwrap_err().kind(),
        ErrorKind::Full
    );
    assert_eq!(q.get().unwrap(), vec![1; 100]);
    q.close();
    assert_eq!(q.put(&vec![]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(q.get().unwrap(), vec![1; 100]); // gets still work

    let simple = SimpleQueue::<u8>::new().unwrap();
    simple.put(&1).unwrap();
    assert!(!simple.empty());
    assert_eq!(simple.get().unwrap(), 1);
    assert!(Queue::<u8>::with_capacity(1000).is_err());
    let _ = Event::new().unwrap();
}

fn put_big_forever(q: Queue<()>) {
    for seq in 0.. {
        // Seven frames each in a 64 KiB ring: a consumer is mostly inside one.
        q.put_bytes(&checked(7, seq, 100_000)).unwrap();
    }
}

fn get_forever(q: Queue<()>) {
    loop {
        let m = q.get_bytes().unwrap();
        assert_eq!(m, checked(7, u32::from_le_bytes(m[4..8].try_into().unwrap()), m.len() - 8));
    }
}

#[test]
fn consumers_killed_mid_get_never_tear_the_stream() {
    let q = Queue::<()>::with_capacity(1 << 16).unwrap();
    let producer = child(Process::new(put_big_forever, (q.clone(),)));
    producer.start().unwrap();
    let mut last = None;
    for _ in 0..8 {
        let consumer = child(Process::new(get_forever, (q.clone(),)));
        consumer.start().unwrap();
        std::thread::sleep(Duration::from_millis(15));
        consumer.kill().unwrap();
        assert_eq!(finish(&consumer), KILLED);
        // We take over the get side (the dead consumer held it, likely in
        // the middle of a message) and get only whole messages, in order.
        for _ in 0..3 {
            let m = q.get_bytes_timeout(BOUND).unwrap();
            let seq = u32::from_le_bytes(m[4..8].try_into().unwrap());
            assert_eq!(m, checked(7, seq, 100_000), "torn message");
            assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
            last = Some(seq);
        }
    }
    producer.kill().unwrap();
    assert_eq!(finish(&producer), KILLED);
}
