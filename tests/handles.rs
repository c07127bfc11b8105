//! The handles of shared objects inside a message travel beside it, and a
//! message gets its own or none: a send that fails after its handles left
//! (a full Queue or Pipe), or a sender killed between its handles and its
//! frame, leaves nothing that a later message could take for its own.

mod common;
use common::*;
use multiproc::{Connection, Event, Pipe, Process, Queue, Value};
use std::time::Duration;

/// Fills `q` with bytes, then tries to put a Value holding 1: the queue is
/// full, so the put fails after its handle was sent.
fn fail_a_put(q: Queue<Value<u64>>) -> i32 {
    while q.put_bytes_timeout(&[0], Duration::ZERO).is_ok() {}
    let e = q.put_nowait(&Value::new(1).unwrap()).unwrap_err();
    assert_eq!(e.kind(), multiproc::ErrorKind::Full, "{e:?}");
    let e = q.put_timeout(&Value::new(1).unwrap(), Duration::from_millis(10)).unwrap_err();
    assert_eq!(e.kind(), multiproc::ErrorKind::Full, "{e:?}");
    0
}

#[test]
fn a_put_that_failed_full_leaves_no_handle_for_the_next_message() {
    for method in METHODS {
        let q = Queue::<Value<u64>>::with_capacity(4096).unwrap();
        let p = with(method, Process::new(fail_a_put, (q.clone(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 0);
        while q.get_bytes_timeout(Duration::ZERO).is_ok() {}
        q.put(&Value::new(2).unwrap()).unwrap();
        q.put(&Value::new(3).unwrap()).unwrap();
        assert_eq!(q.get_timeout(BOUND).unwrap().get().unwrap(), 2, "{method:?}");
        assert_eq!(q.get_timeout(BOUND).unwrap().get().unwrap(), 3, "{method:?}");
    }
}

/// Fills the pipe, then a send of a Value holding 1 times out.
fn fail_a_send(conn: Connection) -> i32 {
    while conn.send_bytes_timeout(&[0], Duration::ZERO).is_ok() {}
    let e = conn.send_timeout(&Value::new(1u64).unwrap(), Duration::from_millis(10)).unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    0
}

#[test]
fn a_send_that_timed_out_leaves_no_handle_for_the_next_message() {
    let (ours, theirs) = Pipe::with_capacity(4096, true).unwrap();
    let p = child(Process::new(fail_a_send, (theirs.try_clone().unwrap(),)));
    p.start().unwrap();
    assert_eq!(finish(&p), 0);
    while ours.recv_bytes_timeout(Duration::ZERO).is_ok() {}
    theirs.send(&Value::new(2u64).unwrap()).unwrap();
    assert_eq!(ours.recv_timeout::<Value<u64>>(BOUND).unwrap().get().unwrap(), 2);
}

/// Puts a Value holding 1, but stops for good once its handle is sent.
fn stall_in_a_put(q: Queue<Value<u64>>, reached: Event) {
    multiproc::__testing::stall_after_handles(reached);
    q.put(&Value::new(1).unwrap()).unwrap();
    unreachable!("the put stalls");
}

fn stall_in_a_send(conn: Connection, reached: Event) {
    multiproc::__testing::stall_after_handles(reached);
    conn.send(&Value::new(1u64).unwrap()).unwrap();
    unreachable!("the send stalls");
}

#[test]
fn a_producer_killed_between_handles_and_frame_leaves_no_handle() {
    for method in METHODS {
        let q = Queue::<Value<u64>>::new().unwrap();
        let reached = Event::new().unwrap();
        let p = with(method, Process::new(stall_in_a_put, (q.clone(), reached.clone())));
        p.start().unwrap();
        assert!(reached.wait_timeout(BOUND), "{method:?}: the put never sent its handle");
        p.kill().unwrap();
        assert_eq!(finish(&p), KILLED);
        // The next producer takes the dead one's lock over (OwnerDied).
        q.put_timeout(&Value::new(2).unwrap(), BOUND).unwrap();
        assert_eq!(q.get_timeout(BOUND).unwrap().get().unwrap(), 2, "{method:?}");
        assert!(q.empty());
    }
}

#[test]
fn a_sender_killed_between_handles_and_frame_leaves_no_handle() {
    let (ours, theirs) = Pipe::new().unwrap();
    let reached = Event::new().unwrap();
    let args = (theirs.try_clone().unwrap(), reached.clone());
    let p = child(Process::new(stall_in_a_send, args));
    p.start().unwrap();
    assert!(reached.wait_timeout(BOUND), "the send never sent its handle");
    p.kill().unwrap();
    assert_eq!(finish(&p), KILLED);
    theirs.send_timeout(&Value::new(2u64).unwrap(), BOUND).unwrap();
    assert_eq!(ours.recv_timeout::<Value<u64>>(BOUND).unwrap().get().unwrap(), 2);
}
