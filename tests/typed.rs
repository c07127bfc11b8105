//! A typed receive takes a message only if its bytes are exactly a value
//! of the type asked for: a message encoded as another type is a `Codec`
//! error (and consumed), never a wrong value, and nothing after it is lost.
//! Over a Pipe, a socket connection, a Queue and a Manager's values.

mod common;
use common::*;
use multiproc::connection::{Address, Client, Listener};
use multiproc::manager::{DictProxy, ValueProxy};
use multiproc::Manager;
use multiproc::{Connection, ErrorKind, Pipe, Process, Queue};

/// Sends a list of strings, a large integer, then the real thing.
fn sends_other_types(conn: Connection) {
    conn.send(&vec!["hello", "world"]).unwrap();
    conn.send(&300i64).unwrap();
    conn.send(&"ok").unwrap();
}

fn receives_exactly(conn: &Connection) {
    let e = conn.recv_timeout::<String>(BOUND).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Codec, "{e:?}");
    let e = conn.recv_timeout::<u8>(BOUND).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Codec, "{e:?}");
    assert_eq!(conn.recv_timeout::<String>(BOUND).unwrap(), "ok");
}

#[test]
fn a_pipe_refuses_a_message_of_another_type() {
    let (ours, theirs) = Pipe::new().unwrap();
    let p = child(Process::new(sends_other_types, (theirs,)));
    p.start().unwrap();
    receives_exactly(&ours);
    assert_eq!(finish(&p), 0);
}

fn connects_and_sends(address: Address, key: Vec<u8>) {
    sends_other_types(Client::connect_timeout(address, &key, BOUND).unwrap());
}

#[test]
fn a_socket_connection_refuses_a_message_of_another_type() {
    let key = b"a key of sixteen bytes or more".to_vec();
    let listener = Listener::bind(Address::arbitrary_unix().unwrap(), &key).unwrap();
    let address = listener.address().clone();
    let p = child(Process::new(connects_and_sends, (address, key)));
    p.start().unwrap();
    receives_exactly(&listener.accept_timeout(BOUND).unwrap());
    assert_eq!(finish(&p), 0);
}

/// Takes the same queue as `u8`s and as `i64`s.
fn gets_as_two_types(conn: Connection) -> i32 {
    let small: Queue<u8> = conn.recv_timeout(BOUND).unwrap();
    let large: Queue<i64> = conn.recv_timeout(BOUND).unwrap();
    let e = small.get_timeout(BOUND).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Codec, "{e:?}");
    assert_eq!(large.get_timeout(BOUND).unwrap(), 7);
    0
}

#[test]
fn a_queue_refuses_an_item_of_another_type() {
    let q = Queue::<i64>::new().unwrap();
    q.put(&300).unwrap();
    q.put(&7).unwrap();
    let (ours, theirs) = Pipe::new().unwrap();
    let p = child(Process::new(gets_as_two_types, (theirs,)));
    p.start().unwrap();
    ours.send(&q).unwrap();
    ours.send(&q).unwrap();
    assert_eq!(finish(&p), 0);
    assert!(q.empty());
}

#[test]
fn a_manager_value_read_as_another_type_is_refused() {
    let manager = Manager::start().unwrap();
    let v: ValueProxy<i64> = manager.named("v").unwrap();
    v.set(&300).unwrap();
    let small: ValueProxy<u8> = manager.named("v").unwrap();
    assert_eq!(small.get().unwrap_err().kind(), ErrorKind::Codec);
    assert_eq!(v.get().unwrap(), 300);
    let d: DictProxy<String, Vec<String>> = manager.named("d").unwrap();
    d.insert(&"k".into(), &vec!["hello".into(), "world".into()]).unwrap();
    let other: DictProxy<String, String> = manager.named("d").unwrap();
    assert_eq!(other.get(&"k".into()).unwrap_err().kind(), ErrorKind::Codec);
}
