//! The names a Python user types first, across real processes: a Queue
//! bounded by items, the `_nowait` byte forms, `join_thread`, a bytes-only
//! queue, `Pool(None)`, `Value()` with no value, `manager.list(items)` and
//! `manager.dict(pairs)` and how they print, `Address` from a `String`,
//! and pickles that do not fit the type asked for.

mod common;

use common::*;
use multiproc::connection::Address;
use multiproc::{ByteQueue, ErrorKind, Manager, Pipe, Pool, Process, Queue, Value};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(50);

/// Puts `n` numbers, each waiting for room.
fn produce(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(&i).unwrap();
    }
}

#[test]
fn a_queue_bounded_by_items_as_pythons_maxsize() {
    let q = Queue::<u32>::with_maxsize(2).unwrap();
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    assert!(q.full());
    assert_eq!(q.put_nowait(&3).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(q.put_timeout(&3, SHORT).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(q.get().unwrap(), 1);
    assert!(!q.full());
    q.put_nowait(&3).unwrap();
    assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 3));
    // A producer in another process waits for the consumer, item by item.
    let p = child(Process::new(produce, (q.clone(), 50)));
    p.start().unwrap();
    let deadline = std::time::Instant::now() + BOUND;
    while q.qsize() < 2 {
        assert!(std::time::Instant::now() < deadline, "the producer never filled it");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Nobody takes: the producer waits with two items in.
    assert!(q.full());
    std::thread::sleep(SHORT);
    assert_eq!(q.qsize(), 2);
    for i in 0..50 {
        assert_eq!(q.get_timeout(BOUND).unwrap(), i);
    }
    assert_eq!(finish(&p), 0);
    // 0 is no bound but the bytes, as Python's.
    let unbounded = Queue::<u32>::with_maxsize(0).unwrap();
    for i in 0..100 {
        unbounded.put_nowait(&i).unwrap();
    }
    let joinable = multiproc::JoinableQueue::<u8>::with_maxsize(1).unwrap();
    joinable.put(&1).unwrap();
    assert_eq!(joinable.put_nowait(&2).unwrap_err().kind(), ErrorKind::Full);
}

fn send_raw(q: ByteQueue) {
    q.put_bytes(b"from a child").unwrap();
}

#[test]
fn a_bytes_queue_and_the_nowait_byte_forms() {
    let q = ByteQueue::with_capacity(4096).unwrap();
    assert_eq!(q.get_bytes_nowait().unwrap_err().kind(), ErrorKind::Empty);
    q.put_bytes_nowait(b"now").unwrap();
    assert_eq!(q.get_bytes_nowait().unwrap(), b"now");
    while q.put_bytes_nowait(&[7; 512]).is_ok() {}
    assert_eq!(q.put_bytes_nowait(&[7; 512]).unwrap_err().kind(), ErrorKind::Full);
    while q.get_bytes_nowait().is_ok() {}
    let p = child(Process::new(send_raw, (q.clone(),)));
    p.start().unwrap();
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"from a child");
    assert_eq!(finish(&p), 0);
    // No feeder thread: both return at once.
    q.join_thread();
    q.cancel_join_thread();
}

fn double(x: u32) -> u32 {
    2 * x
}

#[test]
fn a_pool_of_one_worker_per_cpu_and_a_value_of_zero() {
    let pool = Pool::new(None).unwrap();
    assert_eq!(pool.processes(), multiproc::cpu_count());
    assert_eq!(pool.map(double, [1, 2, 3]).unwrap(), [2, 4, 6]);
    assert_eq!(Pool::new(1).unwrap().processes(), 1);
    let v = Value::<f64>::default().unwrap();
    assert_eq!(v.get().unwrap(), 0.0);
    assert_eq!(Value::<i32>::default().unwrap().get().unwrap(), 0);
}

#[test]
fn manager_collections_from_items_print_as_pythons() {
    let manager = Manager::start().unwrap();
    let l = manager.list_from([3, 1, 2]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [3, 1, 2]);
    assert_eq!(l.to_string(), "[3, 1, 2]");
    let d = manager.dict_from([("b".to_string(), 2), ("a".to_string(), 1)]).unwrap();
    assert_eq!(d.to_string(), r#"{"b": 2, "a": 1}"#, "insertion order, as Python's");
    assert_eq!(manager.dict::<u8, u8>().unwrap().to_string(), "{}");
    // A proxy whose server is gone says so instead of printing contents.
    let mut manager = manager;
    manager.process().unwrap().kill().unwrap();
    finish(manager.process().unwrap());
    manager.set_timeout(Some(BOUND));
    assert!(l.to_string().starts_with("<ListProxy: "), "{l}");
}

#[test]
fn an_address_from_a_string() {
    let tcp: Address = String::from("127.0.0.1:6000").into();
    assert!(tcp.is_tcp());
    let local = Address::arbitrary_unix().unwrap();
    let again: Address = local.to_string().into();
    assert_eq!(again, local);
}

#[test]
fn a_pickle_of_the_wrong_type_is_a_codec_error_and_loses_nothing_else() {
    let (a, b) = Pipe::new().unwrap();
    a.send_pickle(&("text", 1)).unwrap();
    a.send_pickle(&[1u8, 2, 3]).unwrap();
    let err = b.recv_pickle_timeout::<u32>(BOUND).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Codec, "{err}");
    assert_eq!(b.recv_pickle_timeout::<Vec<u8>>(BOUND).unwrap(), [1, 2, 3]);
    // Not a pickle at all.
    a.send_bytes(b"\xff\x00garbage").unwrap();
    assert_eq!(b.recv_pickle_timeout::<u32>(BOUND).unwrap_err().kind(), ErrorKind::Codec);
    a.send_pickle("still fine").unwrap();
    assert_eq!(b.recv_pickle_timeout::<String>(BOUND).unwrap(), "still fine");
}

/// Answers one request on `conn`, then returns (its end goes with it).
fn answer_once(conn: multiproc::Connection) {
    let n: u32 = conn.recv_timeout(BOUND).unwrap();
    conn.send(&(n + 1)).unwrap();
}

#[test]
fn close_is_idempotent_and_later_calls_are_disconnected() {
    let (mine, theirs) = Pipe::new().unwrap();
    let p = child(Process::new(answer_once, (theirs.try_clone().unwrap(),)));
    p.start().unwrap();
    // Our copy of the child's end goes; the child's copy keeps working.
    theirs.close().unwrap();
    theirs.close().unwrap();
    assert!(theirs.closed());
    assert!(theirs.send(&1u32).unwrap_err().is_disconnected());
    assert!(theirs.recv_bytes_timeout(SHORT).unwrap_err().is_disconnected());
    assert!(theirs.poll(), "a receive would return at once");
    assert!(theirs.try_clone().unwrap_err().is_disconnected());
    let (a, _b) = Pipe::new().unwrap();
    assert_eq!(
        a.send(&theirs).unwrap_err().kind(),
        ErrorKind::Codec,
        "a closed end does not travel"
    );
    mine.send(&41u32).unwrap();
    assert_eq!(mine.recv_timeout::<u32>(BOUND).unwrap(), 42);
    assert_eq!(finish(&p), 0);
    // Python's reason to close: the child is gone and no copy of its end
    // is left here, so the receive ends instead of waiting forever.
    #[cfg(unix)]
    assert!(mine.recv_bytes_timeout(BOUND).unwrap_err().is_disconnected());
}

#[test]
#[cfg(unix)]
fn closing_a_socket_connection_ends_it_for_the_peer() {
    let listener =
        multiproc::connection::Listener::bind(Address::arbitrary_unix().unwrap(), b"").unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || {
        multiproc::connection::Client::connect_timeout(address, b"", BOUND).unwrap()
    });
    let server = listener.accept_timeout(BOUND).unwrap();
    let client = client.join().unwrap();
    server.send_bytes(b"last").unwrap();
    server.close().unwrap();
    assert_eq!(client.recv_bytes_timeout(BOUND).unwrap(), b"last");
    assert!(client.recv_bytes_timeout(BOUND).unwrap_err().is_disconnected());
    assert!(server.recv_bytes_timeout(SHORT).unwrap_err().is_disconnected());
}

/// Pickles Python writes of built-in values, in every protocol it has,
/// pass the check and decode.
#[test]
#[cfg(unix)]
fn pickles_of_every_protocol_decode() {
    let script = r#"
import pickle, sys
value = {"s": "text", "b": b"\x00bytes", "l": [1, 2.5, None, True], "t": (1, (2, 3)),
         "big": 2**70, "neg": -12345678901, "set": {1, 2}, "shared": [[1, 2]] * 3,
         "u": "\u00e9\u4e16", "ba": bytearray(b"ab"), "f": frozenset({3})}
for proto in range(pickle.HIGHEST_PROTOCOL + 1):
    sys.stdout.write(pickle.dumps(value, protocol=proto).hex() + "\n")
"#;
    let out = std::process::Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let (a, b) = Pipe::new().unwrap();
    for (proto, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
        let bytes: Vec<u8> = (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect();
        a.send_bytes(&bytes).unwrap();
        let value = b.recv_pickle_value();
        assert!(value.is_ok(), "protocol {proto}: {value:?}");
    }
}
