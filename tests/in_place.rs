//! Messages written and read in place, in the ring's shared memory
//! (`send_with`/`recv_with`, `put_with`/`get_with`), and typed messages
//! serialized straight into the ring: across real processes, at every
//! size (one frame, and fragments past a quarter of the capacity), with
//! senders killed or panicking inside the closure.

mod common;
use common::*;
use multiproc::{ByteQueue, Connection, ErrorKind, Event, Pipe, Process, Queue};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Sizes around the frame limit of a 4 KiB ring (1016 bytes) and well past it.
const SIZES: [usize; 9] = [0, 1, 7, 8, 1015, 1016, 1017, 5000, 70_000];

fn pattern(len: usize, seed: u8) -> impl Fn(usize) -> u8 {
    move |i| (i % 251) as u8 ^ seed ^ (len as u8)
}

fn fill(buf: &mut [u8], seed: u8) {
    let p = pattern(buf.len(), seed);
    buf.iter_mut().enumerate().for_each(|(i, b)| *b = p(i));
}

fn matches(bytes: &[u8], seed: u8) -> bool {
    let p = pattern(bytes.len(), seed);
    bytes.iter().enumerate().all(|(i, &b)| b == p(i))
}

/// Answers every message with its length and whether it was intact, both
/// written in place.
fn check_and_answer(conn: Connection, count: usize) -> i32 {
    for i in 0..count {
        let (len, ok) =
            conn.recv_with_timeout(BOUND, |bytes| (bytes.len(), matches(bytes, i as u8))).unwrap();
        conn.send_with(9, |buf| {
            buf[..8].copy_from_slice(&(len as u64).to_le_bytes());
            buf[8] = u8::from(ok);
        })
        .unwrap();
    }
    0
}

#[test]
fn pipe_messages_of_every_size_cross_in_place() {
    for method in METHODS {
        let (mine, theirs) = Pipe::with_capacity(4096, true).unwrap();
        let p = with(method, Process::new(check_and_answer, (theirs, SIZES.len())));
        p.start().unwrap();
        for (i, &len) in SIZES.iter().enumerate() {
            let sent = mine.send_with(len, |buf| {
                assert_eq!(buf.len(), len);
                fill(buf, i as u8);
                len
            });
            assert_eq!(sent.unwrap(), len);
            let answer = mine.recv_with_timeout(BOUND, |bytes| bytes.to_vec()).unwrap();
            assert_eq!(answer.len(), 9);
            assert_eq!(u64::from_le_bytes(answer[..8].try_into().unwrap()), len as u64);
            assert_eq!(answer[8], 1, "{method:?}: message of {len} bytes arrived torn");
        }
        assert_eq!(finish(&p), 0);
    }
}

fn put_all(q: ByteQueue) {
    for (i, &len) in SIZES.iter().enumerate() {
        q.put_with(len, |buf| fill(buf, i as u8)).unwrap();
    }
}

#[test]
fn queue_messages_of_every_size_cross_in_place() {
    let q = ByteQueue::with_capacity(4096).unwrap();
    let producers: Vec<Process> =
        (0..2).map(|_| child(Process::new(put_all, (q.clone(),)))).collect();
    for p in &producers {
        p.start().unwrap();
    }
    // Each producer's messages arrive in its order; two interleave.
    let mut next = [0usize; 2];
    let mut buf = Vec::with_capacity(16);
    for n in 0..2 * SIZES.len() {
        let (len, intact) = if n % 2 == 0 {
            q.get_with_timeout(BOUND, |bytes| {
                let i = SIZES.iter().position(|&l| l == bytes.len()).unwrap();
                (bytes.len(), matches(bytes, i as u8))
            })
            .unwrap()
        } else {
            q.get_bytes_into_timeout(&mut buf, BOUND).unwrap();
            let i = SIZES.iter().position(|&l| l == buf.len()).unwrap();
            (buf.len(), matches(&buf, i as u8))
        };
        assert!(intact, "a message of {len} bytes arrived torn");
        let i = SIZES.iter().position(|&l| l == len).unwrap();
        let from = next.iter().position(|&k| k == i).expect("in each producer's order");
        next[from] += 1;
    }
    assert_eq!(next, [SIZES.len(); 2]);
    for p in &producers {
        assert_eq!(finish(p), 0);
    }
    assert!(q.empty());
}

/// Starts a message of `len` bytes in place, fills half of it, says so,
/// and never finishes (the test kills it there).
fn stall_inside_send_with(conn: Connection, len: usize, inside: Event) {
    conn.send_with(len, |buf| {
        buf[..len / 2].fill(0xAA);
        inside.set();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .unwrap();
}

fn stall_inside_put_with(q: ByteQueue, len: usize, inside: Event) {
    q.put_with(len, |buf| {
        buf[..len / 2].fill(0xAA);
        inside.set();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .unwrap();
}

fn kill_when_inside(p: &Process, inside: &Event) {
    assert!(inside.wait_timeout(BOUND), "the child never got inside the closure");
    p.kill().unwrap();
    assert_eq!(finish(p), KILLED);
}

#[test]
fn a_sender_killed_inside_send_with_leaves_no_torn_message() {
    // In place (one frame), and through a buffer (a message in fragments).
    for len in [64, 3000] {
        let (rx, tx) = Pipe::with_capacity(4096, false).unwrap();
        let inside = Event::new().unwrap();
        let p = child(Process::new(
            stall_inside_send_with,
            (tx.try_clone().unwrap(), len, inside.clone()),
        ));
        p.start().unwrap();
        kill_when_inside(&p, &inside);
        let nothing = rx.recv_with_timeout(Duration::from_millis(50), |b| b.to_vec());
        assert_eq!(nothing.unwrap_err().kind(), ErrorKind::Timeout, "{len}");
        // The next sender takes the dead one's place and its message
        // arrives whole.
        tx.send_with(len, |buf| fill(buf, 3)).unwrap();
        let got = rx.recv_with_timeout(BOUND, |b| (b.len(), matches(b, 3))).unwrap();
        assert_eq!(got, (len, true), "{len}");
    }
}

#[test]
fn a_producer_killed_inside_put_with_leaves_no_torn_message() {
    for len in [64, 3000] {
        let q = ByteQueue::with_capacity(4096).unwrap();
        let inside = Event::new().unwrap();
        let p = child(Process::new(stall_inside_put_with, (q.clone(), len, inside.clone())));
        p.start().unwrap();
        kill_when_inside(&p, &inside);
        assert_eq!(q.get_bytes_nowait().unwrap_err().kind(), ErrorKind::Empty, "{len}");
        q.put_with(len, |buf| fill(buf, 5)).unwrap();
        let got = q.get_with_timeout(BOUND, |b| (b.len(), matches(b, 5))).unwrap();
        assert_eq!(got, (len, true), "{len}");
        assert!(q.empty());
    }
}

#[test]
fn a_panic_inside_the_closure_sends_nothing_and_takes_the_message() {
    let q = ByteQueue::with_maxsize(1).unwrap();
    for len in [8, 300_000] {
        let panicked = catch_unwind(AssertUnwindSafe(|| q.put_with(len, |_| panic!("fill"))));
        assert!(panicked.is_err());
        // Nothing was put, the slot came back and the lock was released.
        assert!(q.empty());
        q.put_with_timeout(len, BOUND, |buf| fill(buf, 1)).unwrap();
        let panicked = catch_unwind(AssertUnwindSafe(|| q.get_with(|_| panic!("read"))));
        assert!(panicked.is_err());
        // The message was taken (it was handed over), and the queue goes on.
        assert!(q.empty(), "{len}");
        q.put_bytes(b"next").unwrap();
        assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"next");
    }
    let (a, b) = Pipe::new().unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| a.send_with(8, |_| panic!("fill")))).is_err());
    assert!(!b.poll());
    a.send_bytes(b"after").unwrap();
    assert_eq!(b.recv_bytes_timeout(BOUND).unwrap(), b"after");
}

fn echo_vectors(conn: Connection, count: usize) {
    for _ in 0..count {
        let v: Vec<u64> = conn.recv_timeout(BOUND).unwrap();
        conn.send(&v).unwrap();
    }
}

#[test]
fn typed_messages_of_every_size_are_serialized_into_the_ring() {
    // Lengths whose encodings fall on both sides of the frame limit of a
    // 4 KiB ring (1016 bytes with the 4-byte header).
    let lengths = [0usize, 1, 100, 126, 127, 128, 200, 1000, 10_000];
    let (mine, theirs) = Pipe::with_capacity(4096, true).unwrap();
    let p = child(Process::new(echo_vectors, (theirs, lengths.len())));
    p.start().unwrap();
    for n in lengths {
        let v: Vec<u64> = (0..n as u64).map(|i| i * 1_000_003).collect();
        mine.send(&v).unwrap();
        assert_eq!(mine.recv_timeout::<Vec<u64>>(BOUND).unwrap(), v);
    }
    assert_eq!(finish(&p), 0);
    // A Queue too, with a value that carries a handle (never in place: its
    // handle goes first).
    let q = Queue::<(u64, Option<Event>)>::new().unwrap();
    q.put(&(7, None)).unwrap();
    q.put(&(8, Some(Event::new().unwrap()))).unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap().0, 7);
    let (n, event) = q.get_timeout(BOUND).unwrap();
    assert_eq!(n, 8);
    event.unwrap().set();
}
