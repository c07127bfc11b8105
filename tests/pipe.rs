//! Pipes between real processes: Python's tutorial programs, large
//! messages, peers that die, handles sent to a running process.

mod common;
use common::*;
use multiproc::{Connection, ErrorKind, Event, Lock, Pipe, Process};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

fn send_greeting(conn: Connection) {
    conn.send(&vec!["hello", "world"]).unwrap();
}

#[test]
fn the_parent_receives_what_a_child_sends() {
    for method in METHODS {
        let (parent, child) = Pipe::new().unwrap();
        let p = with(method, Process::new(send_greeting, (child,)));
        p.start().unwrap();
        assert_eq!(parent.recv_timeout::<Vec<String>>(BOUND).unwrap(), ["hello", "world"]);
        assert_eq!(finish(&p), 0, "{method:?}");
    }
}

fn sender(conn: Connection) {
    for word in ["START", "one", "two", "three", "END"] {
        conn.send(word).unwrap();
    }
}

fn receiver(conn: Connection, done: Event) -> i32 {
    let mut seen = Vec::new();
    loop {
        let word: String = conn.recv_timeout(BOUND).unwrap();
        let end = word == "END";
        seen.push(word);
        if end {
            break;
        }
    }
    done.set();
    if seen == ["START", "one", "two", "three", "END"] {
        0
    } else {
        3
    }
}

#[test]
fn a_receiver_stops_at_end() {
    for method in METHODS {
        let (rx, tx) = Pipe::simplex().unwrap();
        assert!(rx.readable() && !rx.writable() && tx.writable() && !tx.readable());
        let done = Event::new().unwrap();
        let ps = vec![
            with(method, Process::new(receiver, (rx, done.clone()))),
            with(method, Process::new(sender, (tx,))),
        ];
        assert_eq!(run_all(&ps), [0, 0], "{method:?}");
        assert!(done.is_set());
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Item {
    Word(String),
    Number(i64),
    Pair(u8, Option<bool>),
}

fn send_items(conn: Connection) {
    conn.send(&vec![Item::Word("one".into()), Item::Word("two".into()), Item::Number(3)]).unwrap();
    conn.send(&Item::Pair(4, None)).unwrap();
}

#[test]
fn structured_data_crosses() {
    for method in METHODS {
        let (parent, child) = Pipe::new().unwrap();
        let p = with(method, Process::new(send_items, (child,)));
        p.start().unwrap();
        let items: Vec<Item> = parent.recv_timeout(BOUND).unwrap();
        assert_eq!(items, [Item::Word("one".into()), Item::Word("two".into()), Item::Number(3)]);
        assert_eq!(parent.recv_timeout::<Item>(BOUND).unwrap(), Item::Pair(4, None));
        assert_eq!(finish(&p), 0);
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn echo_big(conn: Connection) {
    let big = conn.recv_bytes_timeout(BOUND).unwrap();
    assert_eq!(big, pattern(64 << 20, 1));
    conn.send_bytes(&pattern(64 << 20, 2)).unwrap();
    conn.send_bytes(b"after").unwrap();
}

#[test]
fn a_64_mib_message_goes_both_ways_through_a_1_mib_ring() {
    for method in METHODS {
        let (parent, child) = Pipe::new().unwrap();
        let p = with(method, Process::new(echo_big, (child,)));
        p.start().unwrap();
        parent.send_bytes_timeout(&pattern(64 << 20, 1), BOUND).unwrap();
        assert!(parent.recv_bytes_timeout(BOUND).unwrap() == pattern(64 << 20, 2));
        assert_eq!(parent.recv_bytes_timeout(BOUND).unwrap(), b"after");
        assert_eq!(finish(&p), 0, "{method:?}");
    }
}

fn hold_forever(conn: Connection, stop: Event) {
    conn.send_bytes(b"first").unwrap();
    stop.wait_timeout(BOUND);
}

#[test]
fn disconnected_after_the_peer_is_killed() {
    for method in METHODS {
        let (parent, child) = Pipe::new().unwrap();
        let stop = Event::new().unwrap();
        let p = with(method, Process::new(hold_forever, (child, stop.clone())));
        p.start().unwrap();
        assert_eq!(parent.recv_bytes_timeout(BOUND).unwrap(), b"first");
        p.kill().unwrap();
        assert_eq!(finish(&p), KILLED);
        let t = Instant::now();
        let err = parent.recv_bytes_timeout(BOUND).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{method:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // Sending fills the ring, then reports the peer gone too.
        let err = loop {
            if let Err(e) = parent.send_bytes_timeout(&[0; 60_000], BOUND) {
                break e;
            }
        };
        assert_eq!(err.kind(), ErrorKind::Disconnected);
        assert!(parent.poll());
    }
}

/// Waits for a Connection and a Lock sent over `control`, then uses them.
fn serve(control: Connection) -> i32 {
    let (conn, lock): (Connection, Lock) = control.recv_timeout(BOUND).unwrap();
    let _guard = lock.lock().unwrap();
    conn.send(&"over the passed connection").unwrap();
    0
}

#[test]
fn a_connection_and_a_lock_sent_to_a_running_child_work_there() {
    for method in METHODS {
        let (control, control_child) = Pipe::new().unwrap();
        let p = with(method, Process::new(serve, (control_child,)));
        p.start().unwrap();
        let (mine, theirs) = Pipe::new().unwrap();
        let lock = Lock::new().unwrap();
        let guard = lock.lock().unwrap();
        control.send(&(theirs, lock.clone())).unwrap();
        // The child is blocked on the lock we hold.
        assert!(!mine.poll_timeout(Duration::from_millis(50)));
        drop(guard);
        assert_eq!(mine.recv_timeout::<String>(BOUND).unwrap(), "over the passed connection");
        assert_eq!(finish(&p), 0, "{method:?}");
    }
}

fn send_big_then_wait(conn: Connection, go: Event) {
    // One message far larger than the ring: the receiver times out inside
    // it again and again, and must still get it whole.
    conn.send_bytes(&pattern(3 << 20, 9)).unwrap();
    go.wait_timeout(BOUND);
}

#[test]
fn a_receive_that_times_out_inside_a_message_keeps_it() {
    let (rx, tx) = Pipe::with_capacity(1 << 16, false).unwrap();
    let go = Event::new().unwrap();
    let p = with(METHODS[0], Process::new(send_big_then_wait, (tx, go.clone())));
    p.start().unwrap();
    // The 3 MiB message cannot fit a 64 KiB ring: take it in several tries.
    let mut timeouts = 0;
    let got = loop {
        match rx.recv_bytes_timeout(Duration::from_micros(200)) {
            Ok(m) => break m,
            Err(e) if e.is_timeout() => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(timeouts < 1_000_000);
    };
    assert!(got == pattern(3 << 20, 9));
    go.set();
    assert_eq!(finish(&p), 0);
}

fn send_three_sizes(conn: Connection, go: Event) {
    for (len, seed) in [(200 << 10, 1), (300 << 10, 2), (3 << 20, 3)] {
        conn.send_bytes(&pattern(len, seed)).unwrap();
    }
    go.wait_timeout(BOUND);
}

/// Messages in fragments are assembled straight into the caller's buffer:
/// one that fits arrives whole; one that does not is kept, whole, for a
/// larger buffer; one taken in many timed-out tries arrives whole.
#[test]
fn recv_bytes_into_assembles_fragments_and_keeps_what_does_not_fit() {
    let (rx, tx) = Pipe::with_capacity(1 << 16, false).unwrap();
    let go = Event::new().unwrap();
    let p = with(METHODS[0], Process::new(send_three_sizes, (tx, go.clone())));
    p.start().unwrap();
    let mut buf = vec![0u8; 256 << 10];
    assert_eq!(rx.recv_bytes_into_timeout(&mut buf, BOUND).unwrap(), 200 << 10);
    assert!(buf[..200 << 10] == pattern(200 << 10, 1));
    let short = rx.recv_bytes_into_timeout(&mut buf, BOUND).unwrap_err();
    assert_eq!(short.kind(), ErrorKind::TooLarge, "{short}");
    let mut big = vec![0u8; 4 << 20];
    assert_eq!(rx.recv_bytes_into_timeout(&mut big, BOUND).unwrap(), 300 << 10);
    assert!(big[..300 << 10] == pattern(300 << 10, 2));
    let mut timeouts = 0;
    let len = loop {
        match rx.recv_bytes_into_timeout(&mut big, Duration::from_micros(200)) {
            Ok(len) => break len,
            Err(e) if e.is_timeout() => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(timeouts < 1_000_000);
    };
    assert_eq!(len, 3 << 20);
    assert!(big[..len] == pattern(3 << 20, 3));
    go.set();
    assert_eq!(finish(&p), 0);
}

#[test]
fn recv_bytes_into_a_short_buffer_keeps_the_message() {
    let (a, b) = Pipe::new().unwrap();
    a.send_bytes(b"twelve bytes").unwrap();
    let mut small = [0u8; 4];
    assert_eq!(b.recv_bytes_into(&mut small).unwrap_err().kind(), ErrorKind::TooLarge);
    assert!(b.poll());
    let mut buf = [0u8; 32];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 12);
    assert_eq!(&buf[..12], b"twelve bytes");
    assert!(!b.poll());
    assert!(b.recv_bytes_timeout(Duration::from_millis(5)).unwrap_err().is_timeout());
    assert_eq!(
        a.send_bytes(&vec![0; multiproc::MAX_MESSAGE + 1]).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
}
