//! `multiproc::connection`: Listener and Client against Python's own
//! `multiprocessing.connection` (both directions, TCP and Unix), against
//! ourselves across processes, and against a hostile peer.
//!
//! On Windows (under Wine) there is no Python to talk to, and local
//! addresses are named pipes: the Python and Unix-listener tests are
//! Unix's; the rest run on both.

mod common;

use common::{child, finish, BOUND};
use multiproc::connection::{self, Address, Client, Listener, LocalStream};
use multiproc::{Connection, ErrorKind, Pipe, Process};
use std::io::Write;
#[cfg(unix)]
use std::io::{BufRead, BufReader};
#[cfg(unix)]
use std::process::{Child, Command, Stdio};
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

#[cfg(unix)]
const SIZES: [usize; 5] = [0, 1, 16 * 1024, 16 * 1024 + 1, 1 << 20];
const KEY: &[u8] = b"the right key, 16 bytes or more";
const SHORT: Duration = Duration::from_secs(20);

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7) % 251) as u8).collect()
}

#[cfg(unix)]
fn unix_address(tag: &str) -> Address {
    let path = std::env::temp_dir().join(format!("mp-conn-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    Address::Unix(path)
}

/// A fresh local address (a named pipe on Windows).
#[cfg(windows)]
fn unix_address(_tag: &str) -> Address {
    Address::arbitrary_unix().unwrap()
}

fn tcp_address() -> Address {
    "127.0.0.1:0".into()
}

#[cfg(unix)]
/// python3 running tests/python/conn_peer.py, killed if it outlives BOUND.
struct Python(Child);

#[cfg(unix)]
impl Python {
    fn start(role: &str, address: &str, key: &[u8]) -> Python {
        Python::start_with(role, address, key, None)
    }

    /// With `digest`, the peer makes Python 3.12's handshake, naming it.
    fn start_with(role: &str, address: &str, key: &[u8], digest: Option<&str>) -> Python {
        Python::run("conn_peer.py", role, address, key, digest)
    }

    /// python3 running `script` (in tests/python).
    fn run(script: &str, role: &str, address: &str, key: &[u8], digest: Option<&str>) -> Python {
        let script = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
        let key = std::str::from_utf8(key).unwrap();
        let child = Command::new("python3")
            .args([script.as_str(), role, address, key].into_iter().chain(digest))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed");
        Python(child)
    }

    fn lines(&mut self) -> impl Iterator<Item = String> + '_ {
        BufReader::new(self.0.stdout.as_mut().unwrap()).lines().map(|l| l.unwrap())
    }

    /// Its output's last line and exit code, within BOUND.
    fn finish(mut self) -> (String, i32) {
        let out: Vec<String> = self.lines().collect();
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return (out.last().cloned().unwrap_or_default(), status.code().unwrap_or(-1));
            }
            if std::time::Instant::now() > deadline {
                let _ = self.0.kill();
                panic!("python3 did not finish within {BOUND:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(unix)]
impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends each size and expects it echoed.
#[cfg(unix)]
fn exchange(conn: &Connection) {
    for n in SIZES {
        let message = pattern(n);
        conn.send_bytes_timeout(&message, SHORT).unwrap();
        let back = conn.recv_bytes_timeout(SHORT).unwrap();
        assert!(back == message, "size {n}: {} bytes back", back.len());
    }
}

#[cfg(unix)]
fn rust_listener_python_client(address: Address) {
    let listener = Listener::bind(address, KEY).unwrap();
    let python = Python::start("client", &listener.address().to_string(), KEY);
    let conn = listener.accept_timeout(BOUND).unwrap();
    exchange(&conn);
    assert_eq!(python.finish(), ("OK".to_string(), 0));
}

#[cfg(unix)]
fn python_listener_rust_client(address: Address) {
    let mut python = Python::start("listener", &address.to_string(), KEY);
    let shown = python.lines().next().expect("the listener's address");
    let conn = Client::connect_timeout(shown.as_str(), KEY, BOUND).unwrap();
    exchange(&conn);
    assert_eq!(python.finish(), ("OK".to_string(), 0));
}

#[test]
#[cfg(unix)]
fn rust_listener_python_client_unix() {
    rust_listener_python_client(unix_address("rl-pc"));
}

#[test]
#[cfg(unix)]
fn rust_listener_python_client_tcp() {
    rust_listener_python_client(tcp_address());
}

#[test]
#[cfg(unix)]
fn python_listener_rust_client_unix() {
    python_listener_rust_client(unix_address("pl-rc"));
}

#[test]
#[cfg(unix)]
fn python_listener_rust_client_tcp() {
    python_listener_rust_client("127.0.0.1:0".into());
}

#[test]
#[cfg(unix)]
fn the_modern_handshake_both_ways() {
    for digest in ["sha256", "sha3_384", "md5"] {
        let listener = Listener::bind(unix_address("modern-1"), KEY).unwrap();
        let python =
            Python::start_with("client", &listener.address().to_string(), KEY, Some(digest));
        exchange(&listener.accept_timeout(BOUND).unwrap());
        assert_eq!(python.finish(), ("OK".to_string(), 0), "{digest}");
        drop(listener);

        let mut python = Python::start_with(
            "listener",
            &unix_address("modern-2").to_string(),
            KEY,
            Some(digest),
        );
        let shown = python.lines().next().unwrap();
        exchange(&Client::connect_timeout(shown.as_str(), KEY, BOUND).unwrap());
        assert_eq!(python.finish(), ("OK".to_string(), 0), "{digest}");

        let listener = Listener::bind(unix_address("modern-3"), KEY).unwrap();
        let python =
            Python::start_with("client", &listener.address().to_string(), b"wrong", Some(digest));
        refused_on_both_sides(listener.accept_timeout(BOUND).unwrap_err(), python);
    }
}

#[test]
#[cfg(unix)]
fn wrong_key_is_refused_on_both_sides_with_python_connecting() {
    for address in [unix_address("wk-1"), tcp_address()] {
        let listener = Listener::bind(address, KEY).unwrap();
        let python = Python::start("client", &listener.address().to_string(), b"another key");
        refused_on_both_sides(listener.accept_timeout(BOUND).unwrap_err(), python);
    }
}

/// Both ends saw the handshake fail: ours as `Auth`, Python's with its
/// AuthenticationError.
#[cfg(unix)]
fn refused_on_both_sides(ours: multiproc::Error, python: Python) {
    assert_eq!(ours.kind(), ErrorKind::Auth, "{ours}");
    let (line, code) = python.finish();
    assert!(line.starts_with("AUTH"), "{line}");
    assert_eq!(code, 3);
}

#[test]
#[cfg(unix)]
fn wrong_key_is_refused_on_both_sides_with_python_listening() {
    for address in [unix_address("wk-2"), "127.0.0.1:0".into()] {
        let mut python = Python::start("listener", &address.to_string(), KEY);
        let shown = python.lines().next().unwrap();
        let err = Client::connect_timeout(shown.as_str(), b"another key", BOUND).unwrap_err();
        refused_on_both_sides(err, python);
    }
}

#[test]
fn wrong_key_between_rust_ends() {
    let listener = Listener::bind(unix_address("wk-3"), KEY).unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || Client::connect_timeout(address, b"nope", SHORT));
    assert_eq!(listener.accept_timeout(SHORT).unwrap_err().kind(), ErrorKind::Auth);
    assert_eq!(client.join().unwrap().unwrap_err().kind(), ErrorKind::Auth);
}

fn echo_child(address: Address, key: Vec<u8>) -> multiproc::Result<()> {
    let conn = Client::connect_timeout(address, &key, BOUND)?;
    let (n, text): (u64, String) = conn.recv_timeout(BOUND)?;
    conn.send(&(n + 1, text.to_uppercase()))?;
    let bytes = conn.recv_bytes_timeout(BOUND)?;
    conn.send_bytes(&bytes)
}

#[test]
fn rust_ends_in_two_processes_over_tcp_and_unix() {
    for address in [unix_address("procs"), tcp_address()] {
        let listener = Listener::bind(address, KEY).unwrap();
        let args = (listener.address().clone(), KEY.to_vec());
        let p = child(Process::new(echo_child, args));
        p.start().unwrap();
        let conn = listener.accept_timeout(BOUND).unwrap();
        conn.send(&(41u64, "hello".to_string())).unwrap();
        assert_eq!(conn.recv_timeout::<(u64, String)>(BOUND).unwrap(), (42, "HELLO".into()));
        let big = pattern(3 << 20);
        conn.send_bytes(&big).unwrap();
        assert!(conn.recv_bytes_timeout(BOUND).unwrap() == big);
        assert_eq!(finish(&p), 0);
        // The child is gone: its end closed.
        assert!(conn.recv_bytes_timeout(BOUND).unwrap_err().is_disconnected());
    }
}

fn reply_on(conn: Connection) -> multiproc::Result<()> {
    let n: u32 = conn.recv_timeout(BOUND)?;
    conn.send(&(n * 2))
}

/// Both ends of a connection made by a listener at `address`.
fn connected(address: Address) -> (Connection, Connection) {
    let listener = Listener::bind(address, KEY).unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || Client::connect_timeout(address, KEY, SHORT));
    let server = listener.accept_timeout(SHORT).unwrap();
    (server, client.join().unwrap().unwrap())
}

#[test]
fn a_socket_connection_passes_to_a_child() {
    for address in [unix_address("pass"), tcp_address()] {
        let (server, client) = connected(address);
        let p = child(Process::new(reply_on, (server,)));
        p.start().unwrap();
        client.send(&21u32).unwrap();
        assert_eq!(client.recv_timeout::<u32>(BOUND).unwrap(), 42);
        assert_eq!(finish(&p), 0);
    }
}

/// Takes connections off `inbox` and answers one request on each.
fn replies_on_received(inbox: Connection, n: usize) -> multiproc::Result<()> {
    for _ in 0..n {
        reply_on(inbox.recv_timeout::<Connection>(BOUND)?)?;
    }
    Ok(())
}

#[test]
fn a_socket_connection_passes_to_a_running_process_through_a_pipe() {
    let (inbox, outbox) = Pipe::new().unwrap();
    let p = child(Process::new(replies_on_received, (inbox, 2usize)));
    p.start().unwrap();
    for (i, address) in [unix_address("pass-run"), tcp_address()].into_iter().enumerate() {
        let (server, client) = connected(address);
        outbox.send(&server).unwrap();
        drop(server);
        client.send(&(i as u32 + 1)).unwrap();
        assert_eq!(client.recv_timeout::<u32>(BOUND).unwrap(), 2 * (i as u32 + 1));
    }
    assert_eq!(finish(&p), 0);
}

#[test]
fn shared_objects_do_not_cross_a_socket() {
    let (a, _b) = LocalStream::pair().unwrap();
    let conn = Connection::from_unix_stream(a);
    let lock = multiproc::Lock::new().unwrap();
    let err = conn.send(&lock).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn tcp_without_authkey_needs_an_opt_out() {
    let err = Listener::builder(tcp_address()).bind().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let open = Listener::builder(tcp_address()).allow_unauthenticated_tcp().bind().unwrap();
    let address = open.address().clone();
    let client = std::thread::spawn(move || {
        let c = Client::builder(address).timeout(SHORT).connect().unwrap();
        c.send_bytes(b"no key").unwrap();
    });
    let conn = open.accept_timeout(SHORT).unwrap();
    assert_eq!(conn.recv_bytes_timeout(SHORT).unwrap(), b"no key");
    client.join().unwrap();
    // A Unix socket without a key is fine: the file's permissions guard it.
    Listener::builder(unix_address("nokey")).bind().unwrap();
}

#[test]
fn nothing_listening_is_disconnected() {
    let err = Client::connect_timeout(unix_address("nobody"), KEY, SHORT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = Client::connect_timeout(port, KEY, SHORT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
}

#[test]
fn accept_and_receive_time_out() {
    let listener = Listener::bind(unix_address("to"), KEY).unwrap();
    assert!(listener.accept_timeout(Duration::from_millis(20)).unwrap_err().is_timeout());
    let (a, b) = LocalStream::pair().unwrap();
    let (a, b) = (Connection::from_unix_stream(a), Connection::from_unix_stream(b));
    assert!(b.recv_bytes_timeout(Duration::from_millis(20)).unwrap_err().is_timeout());
    assert!(!b.poll());
    a.send_bytes(b"x").unwrap();
    assert!(b.poll_timeout(SHORT));
    assert_eq!(b.recv_bytes().unwrap(), b"x");
}

/// A raw socket as the peer: writes whatever the test says.
fn raw_peer() -> (LocalStream, Connection) {
    let (raw, ours) = LocalStream::pair().unwrap();
    (raw, Connection::from_unix_stream(ours))
}

#[test]
fn a_timeout_mid_frame_keeps_the_bytes_read() {
    let (mut raw, conn) = raw_peer();
    raw.write_all(&[0, 0, 0, 10, b'h', b'e', b'l']).unwrap();
    assert!(conn.recv_bytes_timeout(Duration::from_millis(20)).unwrap_err().is_timeout());
    raw.write_all(b"lo worl").unwrap();
    assert_eq!(conn.recv_bytes_timeout(SHORT).unwrap(), b"hello worl");
    // A long body, in pieces around a timeout.
    let body = pattern(200_000);
    raw.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    raw.write_all(&body[..100_000]).unwrap();
    assert!(conn.recv_bytes_timeout(Duration::from_millis(20)).unwrap_err().is_timeout());
    let writer = std::thread::spawn(move || raw.write_all(&body[100_000..]).map(|_| raw));
    assert!(conn.recv_bytes_timeout(SHORT).unwrap() == pattern(200_000));
    writer.join().unwrap().unwrap();
}

#[test]
fn the_long_length_escape_is_read() {
    let (mut raw, conn) = raw_peer();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    assert_eq!(conn.recv_bytes_timeout(SHORT).unwrap(), [1, 2, 3]);
}

/// A negative length other than -1, and a length no message can have.
const BAD_HEADERS: [&[u8]; 2] =
    [&[0xff, 0xff, 0xff, 0xfe], &[0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]];

#[test]
#[cfg(unix)]
fn bad_headers_are_typed_errors_and_drop_the_connection() {
    let (mut raw, conn) = raw_peer();
    raw.write_all(BAD_HEADERS[0]).unwrap();
    assert_eq!(conn.recv_bytes_timeout(SHORT).unwrap_err().kind(), ErrorKind::Corrupt);
    assert!(conn.recv_bytes_timeout(SHORT).unwrap_err().is_disconnected());
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut raw, &mut rest).unwrap();
    assert!(rest.is_empty(), "the peer sees the connection closed");
    // A length above the maximum: refused before any allocation.
    let (mut raw, conn) = raw_peer();
    raw.write_all(BAD_HEADERS[1]).unwrap();
    assert_eq!(conn.recv_bytes_timeout(SHORT).unwrap_err().kind(), ErrorKind::TooLarge);
}

/// A named pipe's messages carry no header (the pipe keeps their
/// lengths), so a bad one cannot reach the other end: the writer refuses.
#[test]
#[cfg(windows)]
fn bad_headers_cannot_be_written_to_a_pipe() {
    for header in BAD_HEADERS {
        let (mut raw, _conn) = raw_peer();
        let err = raw.write_all(header).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}

#[test]
fn bad_frames_are_typed_errors_and_drop_the_connection() {
    // A message above the maximum: refused, and the connection dropped.
    let (mut raw, conn) = raw_peer();
    conn.set_max_message(1000).unwrap();
    raw.write_all(&1001i32.to_be_bytes()).unwrap();
    raw.write_all(&pattern(1001)).unwrap();
    assert_eq!(conn.recv_bytes_timeout(SHORT).unwrap_err().kind(), ErrorKind::TooLarge);
    assert!(conn.recv_bytes_timeout(SHORT).unwrap_err().is_disconnected());
    drop(raw);

    // A truncated frame: the peer closes inside it.
    let (mut raw, conn) = raw_peer();
    raw.write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
    drop(raw);
    let err = conn.recv_bytes_timeout(SHORT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");

    // Garbage for a typed message is a codec error, and loses nothing else.
    let (raw, conn) = raw_peer();
    let peer = Connection::from_unix_stream(raw);
    peer.send_bytes(&[0xff; 12]).unwrap();
    peer.send(&7u8).unwrap();
    assert_eq!(conn.recv_timeout::<String>(SHORT).unwrap_err().kind(), ErrorKind::Codec);
    assert_eq!(conn.recv_timeout::<u8>(SHORT).unwrap(), 7);
}

#[test]
fn a_message_too_long_for_the_buffer_is_kept() {
    let (raw, conn) = raw_peer();
    let peer = Connection::from_unix_stream(raw);
    peer.send_bytes(b"0123456789").unwrap();
    let mut small = [0; 4];
    assert_eq!(conn.recv_bytes_into(&mut small).unwrap_err().kind(), ErrorKind::TooLarge);
    let mut big = [0; 16];
    assert_eq!(conn.recv_bytes_into_timeout(&mut big, SHORT).unwrap(), 10);
    assert_eq!(&big[..10], b"0123456789");
}

#[cfg(unix)]
/// A hostile listener: accepts one connection and runs `script` on it.
fn hostile_listener(script: impl FnOnce(LocalStream) + Send + 'static) -> Address {
    let address = unix_address(&format!("hostile-{:?}", std::thread::current().id()));
    let Address::Unix(path) = &address else { unreachable!() };
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let path = path.clone();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let _ = std::fs::remove_file(path);
        script(s);
    });
    address
}

#[test]
#[cfg(unix)]
fn a_bad_handshake_is_an_auth_error() {
    // A challenge over 256 bytes.
    let address = hostile_listener(|mut s| {
        let mut m = b"#CHALLENGE#".to_vec();
        m.resize(300, b'x');
        s.write_all(&(m.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&m).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let err = Client::connect_timeout(address, KEY, SHORT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    // Not a challenge at all.
    let address = hostile_listener(|mut s| {
        s.write_all(&[0, 0, 0, 5]).unwrap();
        s.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let err = Client::connect_timeout(address, KEY, SHORT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    // A peer that says nothing: bounded by the timeout.
    let address = hostile_listener(|s| {
        std::thread::sleep(Duration::from_millis(500));
        drop(s)
    });
    let err = Client::connect_timeout(address, KEY, Duration::from_millis(100)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[test]
#[cfg(unix)]
fn a_stalled_client_does_not_hold_the_listener() {
    // The silent peer comes first and has the default 10 s to speak.
    let listener = Listener::bind(unix_address("stall"), KEY).unwrap();
    let Address::Unix(path) = listener.address().clone() else { unreachable!() };
    let _silent = LocalStream::connect(&path).unwrap();
    assert!(listener.accept_timeout(Duration::from_millis(50)).unwrap_err().is_timeout());
    let address = listener.address().clone();
    let good = std::thread::spawn(move || Client::connect_timeout(address, KEY, SHORT));
    let started = Instant::now();
    listener.accept_timeout(SHORT).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    good.join().unwrap().unwrap();
}

#[test]
fn wait_on_sockets_and_pipes() {
    let (a, b) = LocalStream::pair().unwrap();
    let (sa, sb) = (Connection::from_unix_stream(a), Connection::from_unix_stream(b));
    let (pa, pb) = Pipe::new().unwrap();
    let all = [&sb, &pb];
    assert!(connection::wait(&all, Some(Duration::from_millis(10))).unwrap().is_empty());
    pa.send_bytes(b"pipe").unwrap();
    assert_eq!(connection::wait(&all, Some(SHORT)).unwrap(), vec![1]);
    pb.recv_bytes().unwrap();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        sa.send_bytes(b"socket").unwrap();
        sa
    });
    assert_eq!(connection::wait(&all, Some(SHORT)).unwrap(), vec![0]);
    let _sa = sender.join().unwrap();
    // Only sockets: one poll(2), no limit.
    assert_eq!(connection::wait(&[&sb], None).unwrap(), vec![0]);
    sb.recv_bytes().unwrap();
    // A closed peer counts as ready (a receive returns at once), for a
    // socket and for a Pipe.
    drop((_sa, pa));
    assert_eq!(connection::wait(&all, Some(SHORT)).unwrap(), vec![0, 1]);
    assert!(sb.recv_bytes().unwrap_err().is_disconnected());
    assert!(pb.recv_bytes().unwrap_err().is_disconnected());
}

#[test]
fn a_timed_receive_is_not_held_by_a_blocked_one() {
    let (raw, conn) = raw_peer();
    let peer = Connection::from_unix_stream(raw);
    let conn = std::sync::Arc::new(conn);
    let blocked = {
        let conn = conn.clone();
        std::thread::spawn(move || conn.recv_bytes())
    };
    std::thread::sleep(Duration::from_millis(20));
    let t = std::time::Instant::now();
    assert!(conn.recv_bytes_timeout(Duration::from_millis(50)).unwrap_err().is_timeout());
    assert!(t.elapsed() < SHORT);
    assert!(!conn.poll(), "poll answers while another thread receives");
    peer.send_bytes(b"for the first").unwrap();
    assert_eq!(blocked.join().unwrap().unwrap(), b"for the first");
}

#[test]
fn a_send_that_times_out_part_way_finishes_before_the_next() {
    let (raw, conn) = raw_peer();
    let peer = Connection::from_unix_stream(raw);
    // Nobody reads yet: 8 MiB cannot all go into the socket's buffers.
    let big = pattern(8 << 20);
    let err = conn.send_bytes_timeout(&big, Duration::from_millis(50)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let reader = std::thread::spawn(move || {
        let first = peer.recv_bytes_timeout(SHORT).unwrap();
        let second = peer.recv_bytes_timeout(SHORT).unwrap();
        (first, second, peer)
    });
    conn.send_bytes_timeout(b"next", SHORT).unwrap();
    let (first, second, peer) = reader.join().unwrap();
    assert!(first == pattern(8 << 20), "the timed-out message arrives whole");
    assert_eq!(second, b"next");
    // A closed peer: a send says Disconnected.
    drop(peer);
    let err = loop {
        match conn.send_bytes_timeout(&[0; 4096], SHORT) {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    assert!(err.is_disconnected(), "{err}");
}

/// What tests/python/pickle_peer.py sends first (less its bytes, which a
/// struct leaves out), as a Rust type.
#[cfg(unix)]
#[derive(serde::Deserialize, Debug, PartialEq)]
struct FromPython {
    name: String,
    nums: Vec<i64>,
    pair: (f64, Option<i64>),
    ok: bool,
    nested: std::collections::BTreeMap<String, Vec<std::collections::BTreeMap<String, i64>>>,
}

/// What it expects back.
#[cfg(unix)]
#[derive(serde::Serialize)]
struct ToPython {
    got: String,
    sum: i64,
    flags: (bool, Option<i32>),
    items: Vec<(String, f64)>,
    #[serde(with = "serde_bytes")]
    raw: Vec<u8>,
}

/// The Rust side of pickle_peer.py's conversation.
#[cfg(unix)]
fn pickle_conversation(conn: &Connection) {
    use multiproc::connection::PickleValue as V;
    let got: FromPython = conn.recv_pickle_timeout(SHORT).unwrap();
    let deep = std::collections::BTreeMap::from([(
        "deep".to_string(),
        vec![[("x".to_string(), -7)].into(), [("x".to_string(), 1 << 40)].into()],
    )]);
    assert_eq!(
        got,
        FromPython {
            name: "multiproc".into(),
            nums: vec![1, 2, 3],
            pair: (1.5, None),
            ok: true,
            nested: deep,
        }
    );
    // The same, untyped: the tuple stays a tuple, the bytes bytes.
    let V::Dict(value) = conn.recv_pickle_value().unwrap() else { panic!("not a dict") };
    let key =
        |k: &str| multiproc::connection::PickleValue::String(k.into()).into_hashable().unwrap();
    assert_eq!(value[&key("pair")], V::Tuple(vec![V::F64(1.5), V::None]));
    assert_eq!(value[&key("raw")], V::Bytes(b"\x00\xffbytes".to_vec()));
    let reply = ToPython {
        got: got.name,
        sum: got.nums.iter().sum(),
        flags: (true, None),
        items: vec![("a".into(), 0.5), ("b".into(), -2.0)],
        raw: vec![1, 2],
    };
    conn.send_pickle(&reply).unwrap();
    // A class instance: refused, named, and the connection goes on.
    let err = conn.recv_pickle_timeout::<V>(SHORT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Codec, "{err}");
    assert!(err.to_string().contains("Point"), "{err}");
    assert_eq!(conn.recv_pickle_timeout::<String>(SHORT).unwrap(), "still here");
    conn.send_pickle("bye").unwrap();
}

#[test]
#[cfg(unix)]
fn pickles_with_a_python_client() {
    let listener = Listener::bind(unix_address("pickle-1"), KEY).unwrap();
    let python =
        Python::run("pickle_peer.py", "client", &listener.address().to_string(), KEY, None);
    let conn = listener.accept_timeout(BOUND).unwrap();
    pickle_conversation(&conn);
    assert_eq!(python.finish(), ("OK".to_string(), 0));
}

#[test]
#[cfg(unix)]
fn pickles_with_a_python_listener() {
    let mut python = Python::run("pickle_peer.py", "listener", "127.0.0.1:0", KEY, None);
    let shown = python.lines().next().expect("the listener's address");
    let conn = Client::connect_timeout(shown.as_str(), KEY, BOUND).unwrap();
    pickle_conversation(&conn);
    assert_eq!(python.finish(), ("OK".to_string(), 0));
}
