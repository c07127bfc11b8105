//! Listeners under hostile or careless use: silent peers do not hold up a
//! real client (nor cost a manager server a thread each), empty and short
//! keys are refused on TCP, default socket files live in a private
//! directory that goes with its process, and a killed server's socket file
//! neither lingers nor blocks the next bind.
//!
//! On Windows local addresses are named pipes: no file, no directory; the
//! socket-file tests are Unix's, and a pipe name's own rule is tested
//! there instead.

mod common;
use common::*;
use multiproc::connection::{Address, Client, Listener};
use multiproc::manager::DictProxy;
use multiproc::{Connection, ErrorKind, Event, Manager, ManagerServer, Pipe, Process};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, PermissionsExt};
#[cfg(unix)]
use std::path::PathBuf;
use std::time::{Duration, Instant};

const KEY: &[u8] = b"a listener key, 16 bytes or more";
/// How fast a real client must be served beside the silent peers.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// A peer that connects and never says a word.
enum Silent {
    #[allow(dead_code)]
    Tcp(TcpStream),
    #[allow(dead_code)]
    Local(LocalPeer),
}

/// A raw local connection: a Unix socket, or on Windows a named pipe's
/// client end.
type LocalPeer = multiproc::connection::LocalStream;

fn silent(address: &Address) -> Silent {
    match address {
        Address::Tcp(a) => Silent::Tcp(TcpStream::connect(a).unwrap()),
        #[cfg(unix)]
        Address::Unix(p) => Silent::Local(LocalPeer::connect(p).unwrap()),
        #[cfg(windows)]
        Address::Unix(p) => Silent::Local(LocalPeer::connect(p).unwrap()),
    }
}

/// Connects, passes the handshake, and says how long that took: exit 0
/// within [`SERVED_WITHIN`], 1 past it.
fn timed_client(address: Address) -> i32 {
    let started = Instant::now();
    let conn = Client::connect_timeout(address, KEY, BOUND).unwrap();
    let took = started.elapsed();
    conn.send(&took.as_micros().to_string()).unwrap();
    if took < SERVED_WITHIN {
        0
    } else {
        eprintln!("served after {took:?}");
        1
    }
}

/// `silent_peers` connect and say nothing; then a real client in another
/// process is served within a second, while this thread accepts.
fn real_client_beside_silent_peers(address: Address, silent_peers: usize) {
    let listener = Listener::bind(address, KEY).unwrap();
    let address = listener.address().clone();
    std::thread::scope(|s| {
        let accepted = s.spawn(|| listener.accept_timeout(BOUND));
        let peers: Vec<Silent> = (0..silent_peers).map(|_| silent(&address)).collect();
        let p = child(Process::new(timed_client, (address.clone(),)));
        p.start().unwrap();
        let conn = accepted.join().unwrap().unwrap();
        let took: String = conn.recv_timeout(BOUND).unwrap();
        assert_eq!(finish(&p), 0, "{silent_peers} silent peers: served after {took} us");
        drop(peers);
    });
}

#[test]
fn fifty_silent_peers_do_not_delay_a_real_client() {
    for address in [Address::arbitrary_unix().unwrap(), Address::from("127.0.0.1:0")] {
        real_client_beside_silent_peers(address, 50);
    }
}

#[test]
fn more_silent_peers_than_a_listener_keeps_do_not_shut_a_client_out() {
    for address in [Address::arbitrary_unix().unwrap(), Address::from("127.0.0.1:0")] {
        real_client_beside_silent_peers(address, 200);
    }
}

fn serve_tcp(address_out: Connection) -> multiproc::Result<()> {
    let server = ManagerServer::bind("127.0.0.1:0", KEY)?;
    address_out.send(server.address())?;
    server.serve_forever();
    Ok(())
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

#[test]
fn a_manager_server_serves_beside_silent_peers_without_a_thread_each() {
    let (rx, tx) = Pipe::new().unwrap();
    let server = child(Process::new(serve_tcp, (tx,)));
    server.start().unwrap();
    let address: Address = rx.recv_timeout(BOUND).unwrap();
    let idle = threads_of(server.pid().unwrap());
    let peers: Vec<Silent> = (0..100).map(|_| silent(&address)).collect();
    let started = Instant::now();
    let manager = Manager::connect_timeout(address.clone(), KEY, BOUND).unwrap();
    let d: DictProxy<String, u32> = manager.named("d").unwrap();
    d.insert(&"k".into(), &1).unwrap();
    let took = started.elapsed();
    assert!(took < SERVED_WITHIN, "served after {took:?}");
    // The silent peers got no thread: one more for the real client at most.
    let busy = threads_of(server.pid().unwrap());
    assert!(busy <= idle + 1, "{busy} threads with 100 silent peers, {idle} idle");
    drop(peers);
    manager.shutdown().unwrap();
    assert_eq!(finish(&server), 0);
}

fn connects_without_a_key(address: Address) -> multiproc::Result<()> {
    let conn = Client::connect_timeout(address, b"", BOUND)?;
    conn.send_bytes(b"no key")
}

#[test]
fn empty_and_short_keys_are_refused_on_tcp() {
    let tcp = || Address::from("127.0.0.1:0");
    for key in [&b""[..], b"short", b"fifteen bytes!!"] {
        let e = Listener::bind(tcp(), key).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{key:?}: {e}");
        let e = ManagerServer::bind(tcp(), key).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{key:?}: {e}");
        let e = Manager::builder().address(tcp()).authkey(key).start().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{key:?}: {e}");
    }
    assert!(Listener::bind(tcp(), b"sixteen bytes!!!").is_ok());
    // Opted in: an empty key is no key, and no handshake is made.
    let listener =
        Listener::builder(tcp()).authkey(b"").allow_unauthenticated_tcp().bind().unwrap();
    let p = child(Process::new(connects_without_a_key, (listener.address().clone(),)));
    p.start().unwrap();
    let conn = listener.accept_timeout(BOUND).unwrap();
    assert_eq!(conn.recv_bytes_timeout(BOUND).unwrap(), b"no key");
    assert_eq!(finish(&p), 0);
    // On a Unix socket (reachable only through the file system) no key is
    // allowed, and an empty one is none.
    let listener = Listener::bind(Address::arbitrary_unix().unwrap(), b"").unwrap();
    let p = child(Process::new(connects_without_a_key, (listener.address().clone(),)));
    p.start().unwrap();
    let conn = listener.accept_timeout(BOUND).unwrap();
    assert_eq!(conn.recv_bytes_timeout(BOUND).unwrap(), b"no key");
    assert_eq!(finish(&p), 0);
}

#[cfg(unix)]
fn unix_path(address: &Address) -> PathBuf {
    match address {
        Address::Unix(p) => p.clone(),
        Address::Tcp(_) => panic!("not a Unix address"),
    }
}

#[test]
#[cfg(unix)]
fn default_addresses_live_in_a_private_directory() {
    let (a, b) = (Address::arbitrary_unix().unwrap(), Address::arbitrary_unix().unwrap());
    let (a, b) = (unix_path(&a), unix_path(&b));
    assert_ne!(a, b);
    let dir = a.parent().unwrap();
    assert_eq!(b.parent().unwrap(), dir);
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    // A listener's socket there, and a manager's.
    let listener = Listener::bind(Address::Unix(a.clone()), KEY).unwrap();
    assert!(a.exists());
    drop(listener);
    assert!(!a.exists());
    let manager = Manager::start().unwrap();
    assert_eq!(unix_path(manager.address()).parent().unwrap(), dir);
}

#[test]
#[cfg(unix)]
fn a_killed_manager_server_leaves_no_socket_file() {
    for _ in 0..12 {
        let manager = Manager::start().unwrap();
        let path = unix_path(manager.address());
        assert!(path.exists());
        let server = manager.process().unwrap();
        server.kill().unwrap();
        assert_eq!(finish(server), KILLED);
        assert!(path.exists(), "the server was killed before it could remove it");
        drop(manager);
        assert!(!path.exists(), "{} left behind", path.display());
    }
}

/// Makes a default address, a listener on it and a manager, tells the
/// parent where their directory is, and ends normally.
#[cfg(unix)]
fn makes_a_private_directory(out: Connection) -> multiproc::Result<()> {
    let address = Address::arbitrary_unix()?;
    let _listener = Listener::bind(address.clone(), KEY)?;
    let _manager = Manager::start()?;
    out.send(&unix_path(&address).parent().unwrap().to_path_buf())
}

#[test]
#[cfg(unix)]
fn a_childs_private_directory_goes_when_it_ends() {
    let ours = unix_path(&Address::arbitrary_unix().unwrap()).parent().unwrap().to_path_buf();
    for method in METHODS {
        let (rx, tx) = Pipe::new().unwrap();
        let p = with(method, Process::new(makes_a_private_directory, (tx,)));
        p.start().unwrap();
        let dir: PathBuf = rx.recv_timeout(BOUND).unwrap();
        assert_eq!(finish(&p), 0);
        if method == multiproc::StartMethod::Fork {
            // A forked child uses its parent's, which is not its to remove.
            assert_eq!(dir, ours);
            assert!(dir.exists());
        } else {
            assert_ne!(dir, ours);
            assert!(!dir.exists(), "{method:?}: {} left behind", dir.display());
        }
    }
}

/// Run as a main process of its own by the next test: makes a default
/// address and a manager, prints the directory, returns from `main`.
#[test]
#[cfg(unix)]
fn main_process_helper() {
    if std::env::var_os("MULTIPROC_PRIVATE_DIR_HELPER").is_none() {
        return;
    }
    let address = Address::arbitrary_unix().unwrap();
    let _manager = Manager::start().unwrap();
    println!("DIR={}", unix_path(&address).parent().unwrap().display());
}

#[test]
#[cfg(unix)]
fn the_main_processs_private_directory_goes_at_exit() {
    let out =
        helper_command("main_process_helper", "MULTIPROC_PRIVATE_DIR_HELPER").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.split("DIR=").nth(1)).expect("the helper ran");
    assert!(!std::path::Path::new(line).exists(), "{line} left behind");
}

/// Listens at `address`, says so, and waits to be killed.
fn listens_until_killed(address: Address, ready: Event) {
    let _listener = Listener::bind(address, KEY).unwrap();
    ready.set();
    std::thread::sleep(BOUND);
}

/// A child listens at `address`: binding it here is refused while the
/// child lives; then the child is killed.
fn refused_while_its_listener_lives(address: &Address) {
    let ready = Event::new().unwrap();
    let p = child(Process::new(listens_until_killed, (address.clone(), ready.clone())));
    p.start().unwrap();
    assert!(ready.wait_timeout(BOUND));
    let e = Listener::bind(address.clone(), KEY).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    p.kill().unwrap();
    assert_eq!(finish(&p), KILLED);
}

/// `address` binds, and a client is served there.
fn bound_again_and_served(address: Address) {
    let listener = Listener::bind(address.clone(), KEY).unwrap();
    let client = std::thread::spawn(move || Client::connect_timeout(address, KEY, BOUND));
    listener.accept_timeout(BOUND).unwrap();
    client.join().unwrap().unwrap();
}

#[test]
#[cfg(unix)]
fn a_dead_servers_socket_file_is_rebound_and_a_live_ones_is_not() {
    let address = Address::arbitrary_unix().unwrap();
    refused_while_its_listener_lives(&address);
    assert!(unix_path(&address).exists(), "a killed listener leaves its file");
    // Dead: its file is replaced, and the new listener works.
    bound_again_and_served(address);
    // Nor is a file that is not a socket ever removed.
    let plain = unix_path(&Address::arbitrary_unix().unwrap());
    std::fs::write(&plain, b"not a socket").unwrap();
    assert!(Listener::bind(Address::Unix(plain.clone()), KEY).is_err());
    assert_eq!(std::fs::read(&plain).unwrap(), b"not a socket");
}

#[test]
#[cfg(windows)]
fn a_live_listeners_pipe_name_is_refused_and_a_dead_ones_is_free() {
    let address = Address::arbitrary_unix().unwrap();
    refused_while_its_listener_lives(&address);
    // The name went with its last instance: bound again, and it works.
    bound_again_and_served(address);
}
