//! Python's `multiprocessing.connection`: [`Listener`] and [`Client`] over
//! TCP and Unix sockets, with the authkey handshake, and [`wait`] on many
//! connections at once.
//!
//! A socket connection is the same [`Connection`] as a [`Pipe`](crate::Pipe)'s
//! end, and speaks Python's wire format exactly, so a Rust process and a
//! Python one exchange bytes with `send_bytes`/`recv_bytes` (Python's
//! `send`/`recv` pickle; ours use postcard, so typed messages are for
//! Rust on both ends).
//!
//! ```
//! use multiproc::connection::{Address, Client, Listener};
//! let listener = Listener::bind(Address::arbitrary_unix()?, b"secret")?;
//! let address = listener.address().clone();
//! let client = std::thread::spawn(move || -> multiproc::Result<String> {
//!     let c = Client::connect(address, b"secret")?;
//!     c.send_bytes(b"hello")?;
//!     c.recv()
//! });
//! let server = listener.accept()?;
//! assert_eq!(server.recv_bytes()?, b"hello");
//! server.send(&"world")?;
//! assert_eq!(client.join().unwrap()?, "world");
//! # Ok::<(), multiproc::Error>(())
//! ```

mod auth;
mod stream;

pub use stream::DEFAULT_MAX_MESSAGE;

pub(crate) use auth::random;
use stream::{poll_many, Stream};

use crate::channel::Outgoing;
use crate::handles::{self, FdIn, FdOut};
use crate::pipe::RingEnd;
use crate::sync::after;
use crate::time::deadline_after;
use crate::{Error, ErrorKind, Result};
use multiproc_core::Deadline;
use rustix::event::{PollFd, PollFlags};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long an [`accept`](Listener::accept) waits for a peer's handshake
/// unless told otherwise: a peer that connects and stalls must not hold the
/// listener forever.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One end of a [`Pipe`](crate::Pipe) or of a socket connection: Python's
/// `multiprocessing.connection.Connection`.
///
/// Any number of threads may use the same handle (it is `Sync`); their
/// sends never interleave and each message goes to exactly one receiver.
/// A handle passes to child processes as an argument or through another
/// Connection. When the other end is gone (closed, or its process died),
/// `recv` returns what was already sent and then `Disconnected`, and `send`
/// returns `Disconnected`. A Pipe's send notices a dead reader only once its
/// ring is full.
///
/// A socket connection refuses a message longer than
/// [`max_message`](Self::max_message) (by default [`DEFAULT_MAX_MESSAGE`]),
/// a negative length, or a stream that ends inside a frame, and then drops
/// the connection: nothing is allocated from a length before it is checked.
/// A timed-out receive keeps what it read, and a timed-out send that had
/// begun sends the rest of its message before the next one, so a timeout
/// never tears a frame.
pub struct Connection {
    inner: Inner,
}

enum Inner {
    Ring(RingEnd),
    Stream(Stream),
}

/// A point in time, in the form each backend waits with.
#[derive(Clone, Copy)]
struct Until(Option<Instant>);

impl Until {
    const NEVER: Until = Until(None);

    fn after(timeout: Duration) -> Until {
        Until(deadline_after(timeout))
    }

    fn ring(self) -> Deadline {
        match self.0 {
            None => Deadline::NEVER,
            Some(t) => after(t.saturating_duration_since(Instant::now())),
        }
    }
}

impl Connection {
    pub(crate) fn ring(end: RingEnd) -> Connection {
        Connection { inner: Inner::Ring(end) }
    }

    fn stream(stream: Stream) -> Connection {
        Connection { inner: Inner::Stream(stream) }
    }

    /// A connection over an already connected socket, speaking Python's
    /// framing with no handshake (both ends must agree on that).
    pub fn from_unix_stream(socket: UnixStream) -> Connection {
        Connection::stream(Stream::new(socket.into(), DEFAULT_MAX_MESSAGE))
    }

    /// As [`from_unix_stream`](Self::from_unix_stream), over TCP.
    pub fn from_tcp_stream(socket: TcpStream) -> Connection {
        let _ = socket.set_nodelay(true);
        Connection::stream(Stream::new(socket.into(), DEFAULT_MAX_MESSAGE))
    }

    /// Another handle to the same end. (A socket connection's handles share
    /// the socket, not what one of them has read ahead.)
    pub fn try_clone(&self) -> Result<Connection> {
        Ok(match &self.inner {
            Inner::Ring(r) => Connection::ring(r.try_clone()?),
            Inner::Stream(s) => Connection::stream(s.try_clone()?),
        })
    }

    /// Whether this end can send (false only for a one-way Pipe's reader).
    pub fn writable(&self) -> bool {
        match &self.inner {
            Inner::Ring(r) => r.writable(),
            Inner::Stream(_) => true,
        }
    }

    /// Whether this end can receive (false only for a one-way Pipe's writer).
    pub fn readable(&self) -> bool {
        match &self.inner {
            Inner::Ring(r) => r.readable(),
            Inner::Stream(_) => true,
        }
    }

    /// The longest message a socket connection accepts from its peer
    /// (a Pipe's limit is [`MAX_MESSAGE`](crate::MAX_MESSAGE)).
    pub fn max_message(&self) -> usize {
        match &self.inner {
            Inner::Ring(_) => crate::MAX_MESSAGE,
            Inner::Stream(s) => s.max_message(),
        }
    }

    /// Sets [`max_message`](Self::max_message) for a socket connection;
    /// `InvalidArgument` for a Pipe, whose limit is fixed.
    pub fn set_max_message(&self, max: usize) -> Result<()> {
        match &self.inner {
            Inner::Ring(_) => Err(Error::invalid("a Pipe's message limit is fixed")),
            Inner::Stream(s) => {
                s.set_max_message(max);
                Ok(())
            }
        }
    }

    /// A message of up to this many bytes goes out without waiting, now.
    pub(crate) fn send_room(&self) -> usize {
        match &self.inner {
            Inner::Ring(r) => r.send_room(),
            Inner::Stream(_) => 0,
        }
    }

    fn send_message(&self, bytes: &[u8], until: Until) -> Result<()> {
        match &self.inner {
            Inner::Ring(r) => r.send_message(Outgoing::Bytes(bytes), until.ring()),
            Inner::Stream(s) => s.send(bytes, until.0),
        }
    }

    /// Sends `bytes` as one message (Python's `send_bytes`).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_message(bytes, Until::NEVER)
    }

    /// [`send_bytes`](Self::send_bytes) waiting at most `timeout` for room.
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.send_message(bytes, Until::after(timeout))
    }

    fn recv_message(&self, until: Until) -> Result<Vec<u8>> {
        match &self.inner {
            Inner::Ring(r) => r.recv_bytes(until.ring()),
            Inner::Stream(s) => s.recv(s.max_message(), until.0),
        }
    }

    /// Receives one message's bytes (Python's `recv_bytes`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_message(Until::NEVER)
    }

    /// [`recv_bytes`](Self::recv_bytes) waiting at most `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_message(Until::after(timeout))
    }

    fn recv_into(&self, buf: &mut [u8], until: Until) -> Result<usize> {
        match &self.inner {
            Inner::Ring(r) => r.recv_bytes_into(buf, until.ring()),
            Inner::Stream(s) => s.recv_into(buf, until.0),
        }
    }

    /// Receives one message into `buf`; its length. A message longer than
    /// `buf` is kept for the next receive and `TooLarge` is returned (Python
    /// raises `BufferTooShort` with the message).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into(buf, Until::NEVER)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) waiting at most `timeout`.
    pub fn recv_bytes_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_into(buf, Until::after(timeout))
    }

    /// Sends a value (serde, postcard). Through a Pipe, shared objects
    /// inside it (a Lock, a Value, another Connection) go along as handles;
    /// a socket connection carries bytes only and refuses them. Postcard is
    /// not self-describing: the receiver must ask for the same type (a
    /// `[T; 3]` sent is a `[T; 3]` received, not a `Vec<T>`).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_value(value, Until::NEVER)
    }

    /// [`send`](Self::send) waiting at most `timeout` for room.
    pub fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.send_value(value, Until::after(timeout))
    }

    fn send_value<T: Serialize + ?Sized>(&self, value: &T, until: Until) -> Result<()> {
        match &self.inner {
            Inner::Ring(r) => r.send_value(value, until.ring()),
            Inner::Stream(s) => s.send(&encode_plain(value)?, until.0),
        }
    }

    /// Receives a value sent by [`send`](Self::send).
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_value(Until::NEVER)
    }

    /// [`recv`](Self::recv) waiting at most `timeout`.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.recv_value(Until::after(timeout))
    }

    fn recv_value<T: DeserializeOwned>(&self, until: Until) -> Result<T> {
        match &self.inner {
            Inner::Ring(r) => r.recv_value(until.ring()),
            Inner::Stream(s) => decode_plain(&s.recv(s.max_message(), until.0)?),
        }
    }

    /// Whether a message can be received now without waiting.
    pub fn poll(&self) -> bool {
        self.poll_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for a message; `true` if one is there, or if
    /// the other end is gone (so that `recv` returns at once), as Python's.
    pub fn poll_timeout(&self, timeout: Duration) -> bool {
        match &self.inner {
            Inner::Ring(r) => r.poll_timeout(timeout),
            Inner::Stream(s) => s.poll(timeout),
        }
    }

    /// A socket connection's socket (for handles sent beside the stream).
    pub(crate) fn stream_socket(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner {
            Inner::Ring(_) => None,
            Inner::Stream(s) => Some(s.socket()),
        }
    }

    /// The socket [`wait`] sleeps on, and whether its readability means a
    /// message (a stream) or only a hang-up (a Pipe's companion socket).
    fn wake_fd(&self) -> (BorrowedFd<'_>, bool) {
        match &self.inner {
            Inner::Ring(r) => (r.socket(), false),
            Inner::Stream(s) => (s.socket(), true),
        }
    }
}

/// The handshake over an already connected socket, as a client (`listening`
/// false) or a listener: for the fuzz target, which plays a hostile peer.
#[doc(hidden)]
pub fn __handshake(
    socket: UnixStream,
    authkey: &[u8],
    listening: bool,
    timeout: Duration,
) -> Result<Connection> {
    let mut policy = Policy::new(Some(authkey));
    policy.handshake_timeout = timeout;
    policy.open(socket.into(), listening, Until::NEVER)
}

/// A value as postcard bytes with no handle table: what a socket carries.
pub(crate) fn encode_plain<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let (bytes, fds) = handles::collect_remote(|| postcard::to_allocvec(value));
    let bytes = bytes.map_err(|e| Error::codec("serializing a message", e))?;
    if !fds.is_empty() {
        return Err(Error::invalid(
            "shared objects (locks, values, pipes) cannot cross a socket connection; \
             pass them to a child process, or through a Pipe or Queue",
        ));
    }
    Ok(bytes)
}

/// Postcard bytes from a peer, which may hold anything.
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    handles::decode(Vec::new(), bytes, "deserializing a message")
}

#[derive(Serialize)]
enum WireRef<'a> {
    Ring(&'a RingEnd),
    Stream { socket: FdOut<'a>, max: u64 },
}

#[derive(Deserialize)]
enum Wire {
    Ring(RingEnd),
    Stream { socket: FdIn, max: u64 },
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.inner {
            Inner::Ring(r) => WireRef::Ring(r),
            Inner::Stream(st) => {
                WireRef::Stream { socket: FdOut(st.socket()), max: st.max_message() as u64 }
            }
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Ring(r) => Connection::ring(r),
            Wire::Stream { socket, max } => Connection::stream(Stream::new(
                socket.0,
                usize::try_from(max).unwrap_or(usize::MAX),
            )),
        })
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Ring(r) => r.fmt(f),
            Inner::Stream(s) => f
                .debug_struct("Connection")
                .field("socket", &s.socket())
                .field("max_message", &s.max_message())
                .finish(),
        }
    }
}

/// Waits until at least one of `connections` has a message (or a closed
/// peer), or `timeout` passes; the indices of the ready ones, empty on
/// timeout. `None` waits without limit. Python's
/// `multiprocessing.connection.wait`.
///
/// Socket connections are waited on with one `poll(2)`. A Pipe's messages
/// arrive through shared memory, not a file descriptor, so while any Pipe
/// is among them the wait wakes every 50 µs, backing off to 1 ms, to look.
pub fn wait(connections: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let until = timeout.map_or(Until::NEVER, Until::after);
    let has_ring = connections.iter().any(|c| !c.wake_fd().1);
    let mut step = Duration::from_micros(50);
    loop {
        let ready: Vec<usize> = (0..connections.len()).filter(|&i| connections[i].poll()).collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        let now = Instant::now();
        if until.0.is_some_and(|t| t <= now) {
            return Ok(ready);
        }
        let mut fds: Vec<PollFd<'_>> = connections
            .iter()
            .map(|c| {
                let (fd, data) = c.wake_fd();
                PollFd::from_borrowed_fd(fd, if data { PollFlags::IN } else { PollFlags::empty() })
            })
            .collect();
        let slice_end = if has_ring {
            let end = now + step;
            step = (step * 2).min(Duration::from_millis(1));
            Some(until.0.map_or(end, |t| t.min(end)))
        } else {
            until.0
        };
        poll_many(&mut fds, slice_end)?;
    }
}

/// Where a [`Listener`] listens and a [`Client`] connects: a TCP address
/// or a Unix socket's path (Python's `AF_INET` tuple and `AF_UNIX` string).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Address {
    /// A TCP address, resolving a host name (`"localhost:6000"`).
    pub fn tcp(address: impl ToSocketAddrs) -> Result<Address> {
        let mut all = address.to_socket_addrs().map_err(|e| Error::io("resolving", e))?;
        all.next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::invalid("the host name resolved to no address"))
    }

    /// A Unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::Unix(path.into())
    }

    /// A fresh Unix socket path in the temporary directory, as Python's
    /// `arbitrary_address('AF_UNIX')`.
    pub fn arbitrary_unix() -> Result<Address> {
        let tag: String = random::<8>()?.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("multiproc-{}-{tag}.sock", std::process::id());
        Ok(Address::Unix(std::env::temp_dir().join(name)))
    }

    pub fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp(_))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => a.fmt(f),
            Address::Unix(p) => p.display().fmt(f),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::Unix(p.to_path_buf())
    }
}

/// `"127.0.0.1:6000"` or `"[::1]:6000"` is TCP; anything else is a Unix
/// socket path (use [`Address::tcp`] to resolve a host name).
impl From<&str> for Address {
    fn from(s: &str) -> Address {
        s.parse().map_or_else(|_| Address::Unix(s.into()), Address::Tcp)
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Address {
        a.clone()
    }
}

/// The policy a listener or a client applies to its connections.
#[derive(Clone)]
struct Policy {
    authkey: Option<Vec<u8>>,
    max_message: usize,
    handshake_timeout: Duration,
}

impl Policy {
    fn new(authkey: Option<&[u8]>) -> Policy {
        Policy {
            authkey: authkey.map(<[u8]>::to_vec),
            max_message: DEFAULT_MAX_MESSAGE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The connection over `socket`, once the handshake (listener side:
    /// challenge first) has passed.
    fn open(&self, socket: OwnedFd, listening: bool, until: Until) -> Result<Connection> {
        let stream = Stream::new(socket, self.max_message);
        if let Some(key) = &self.authkey {
            let own = Until::after(self.handshake_timeout);
            let deadline = match (until.0, own.0) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if listening {
                auth::deliver(&stream, key, deadline)?;
                auth::answer(&stream, key, deadline)?;
            } else {
                auth::answer(&stream, key, deadline)?;
                auth::deliver(&stream, key, deadline)?;
            }
        }
        Ok(Connection::stream(stream))
    }
}

/// An accepted socket whose handshake is still to be made.
pub(crate) struct Pending {
    socket: OwnedFd,
    policy: Policy,
}

impl Pending {
    /// Makes the handshake (bounded by the listener's handshake timeout).
    pub(crate) fn handshake(self) -> Result<Connection> {
        self.finish(Until::NEVER)
    }

    fn finish(self, until: Until) -> Result<Connection> {
        self.policy.open(self.socket, true, until)
    }
}

enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Python's `multiprocessing.connection.Listener`: a bound socket that
/// accepts [`Connection`]s, each after the authkey handshake.
///
/// A Unix listener removes its socket file when dropped (in the process
/// that bound it).
pub struct Listener {
    socket: ListenSocket,
    address: Address,
    policy: Policy,
    /// The socket file to remove on drop, and the process that may.
    unlink: Option<(PathBuf, u32)>,
}

/// Settings for a [`Listener`]: [`Listener::builder`].
pub struct ListenerBuilder {
    address: Address,
    policy: Policy,
    unauthenticated_tcp: bool,
}

impl ListenerBuilder {
    /// The key both sides must hold (Python's `authkey`).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.policy.authkey = Some(key.to_vec());
        self
    }

    /// Accepts a TCP listener with no authkey. Without this, such a
    /// listener is refused: anyone who reaches the port could connect.
    pub fn allow_unauthenticated_tcp(mut self) -> Self {
        self.unauthenticated_tcp = true;
        self
    }

    /// The longest message the accepted connections take from their peers.
    pub fn max_message(mut self, max: usize) -> Self {
        self.policy.max_message = max;
        self
    }

    /// How long `accept` waits for a connected peer's handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.policy.handshake_timeout = timeout;
        self
    }

    pub fn bind(self) -> Result<Listener> {
        if self.address.is_tcp() && self.policy.authkey.is_none() && !self.unauthenticated_tcp {
            return Err(Error::invalid(
                "a TCP listener without an authkey lets anyone who reaches the port in; \
                 give it an authkey, or opt out with allow_unauthenticated_tcp()",
            ));
        }
        let (socket, address, unlink) = match &self.address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(|e| Error::io("binding a TCP listener", e))?;
                let bound = l.local_addr().map_err(|e| Error::io("getsockname", e))?;
                (ListenSocket::Tcp(l), Address::Tcp(bound), None)
            }
            Address::Unix(p) => {
                let l =
                    UnixListener::bind(p).map_err(|e| Error::io("binding a Unix listener", e))?;
                let unlink = Some((p.clone(), std::process::id()));
                (ListenSocket::Unix(l), self.address.clone(), unlink)
            }
        };
        Ok(Listener { socket, address, policy: self.policy, unlink })
    }
}

impl Listener {
    /// Listens at `address`; each accepted connection must pass the
    /// handshake with `authkey`.
    pub fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<Listener> {
        Listener::builder(address).authkey(authkey).bind()
    }

    /// A listener with settings: no authkey (Unix sockets only, unless
    /// opted out), a message limit, a handshake timeout.
    pub fn builder(address: impl Into<Address>) -> ListenerBuilder {
        ListenerBuilder {
            address: address.into(),
            policy: Policy::new(None),
            unauthenticated_tcp: false,
        }
    }

    /// Where it listens (a TCP port 0 replaced by the port given).
    pub fn address(&self) -> &Address {
        &self.address
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            ListenSocket::Tcp(l) => l.as_fd(),
            ListenSocket::Unix(l) => l.as_fd(),
        }
    }

    /// Accepts the next connection. A peer that fails the handshake (or
    /// stalls in it past the handshake timeout) is dropped and its error
    /// returned; the listener stays usable.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_until(Until::NEVER)
    }

    /// [`accept`](Self::accept) waiting at most `timeout` (handshake included).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Until::after(timeout))
    }

    fn accept_until(&self, until: Until) -> Result<Connection> {
        self.accept_socket(until)?.finish(until)
    }

    /// The next connected socket, its handshake not yet made (for a server
    /// that makes it on the connection's own thread).
    pub(crate) fn accept_pending(&self, timeout: Duration) -> Result<Pending> {
        self.accept_socket(Until::after(timeout))
    }

    fn accept_socket(&self, until: Until) -> Result<Pending> {
        if until.0.is_some() && !stream::poll_fd(self.fd(), PollFlags::IN, until.0)? {
            return Err(Error::timeout());
        }
        let socket: OwnedFd = match &self.socket {
            ListenSocket::Tcp(l) => {
                let (s, _) = l.accept().map_err(|e| Error::io("accept", e))?;
                let _ = s.set_nodelay(true);
                s.into()
            }
            ListenSocket::Unix(l) => l.accept().map_err(|e| Error::io("accept", e))?.0.into(),
        };
        Ok(Pending { socket, policy: self.policy.clone() })
    }

    /// The listening socket and its address, for a process that will
    /// accept on it (the socket file stays until that one drops it).
    pub(crate) fn into_parts(mut self) -> Result<(OwnedFd, Address)> {
        self.unlink = None;
        let fd = self.fd().try_clone_to_owned().map_err(|e| Error::io("dup", e))?;
        Ok((fd, self.address.clone()))
    }

    /// A listener on a socket [`into_parts`](Self::into_parts) gave, which
    /// removes a Unix socket's file when dropped.
    pub(crate) fn from_parts(fd: OwnedFd, address: Address, key: Option<Vec<u8>>) -> Listener {
        let (socket, unlink) = match &address {
            Address::Tcp(_) => (ListenSocket::Tcp(fd.into()), None),
            Address::Unix(p) => {
                (ListenSocket::Unix(fd.into()), Some((p.clone(), std::process::id())))
            }
        };
        let mut policy = Policy::new(None);
        policy.authkey = key;
        Listener { socket, address, policy, unlink }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, pid)) = &self.unlink {
            if *pid == std::process::id() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Python's `multiprocessing.connection.Client`: connects to a [`Listener`]
/// (ours or Python's) and passes the handshake.
pub struct Client;

/// Settings for a connection: [`Client::builder`].
pub struct ClientBuilder {
    address: Address,
    policy: Policy,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `address` and answers and checks the handshake with
    /// `authkey`. Nothing listening there is `Disconnected`.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Connection> {
        Client::builder(address).authkey(authkey).connect()
    }

    /// [`connect`](Self::connect) giving up after `timeout` (connecting and
    /// handshake together).
    pub fn connect_timeout(
        address: impl Into<Address>,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Connection> {
        Client::builder(address).authkey(authkey).timeout(timeout).connect()
    }

    /// A client with settings (no authkey, a message limit, a timeout).
    pub fn builder(address: impl Into<Address>) -> ClientBuilder {
        ClientBuilder { address: address.into(), policy: Policy::new(None), timeout: None }
    }
}

impl ClientBuilder {
    /// The key both sides must hold; without one, no handshake is made.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.policy.authkey = Some(key.to_vec());
        self
    }

    /// The longest message this connection takes from its peer.
    pub fn max_message(mut self, max: usize) -> Self {
        self.policy.max_message = max;
        self
    }

    /// How long connecting and the handshake may take together.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn connect(self) -> Result<Connection> {
        let until = self.timeout.map_or(Until::NEVER, Until::after);
        let refused = |e: std::io::Error| {
            use std::io::ErrorKind as K;
            match e.kind() {
                K::ConnectionRefused | K::NotFound => Error::new(
                    ErrorKind::Disconnected,
                    format!("nothing listens at {}", self.address),
                )
                .with_source(e),
                K::TimedOut | K::WouldBlock => Error::timeout(),
                _ => Error::io("connect", e),
            }
        };
        let socket: OwnedFd = match &self.address {
            Address::Tcp(a) => {
                let s = match self.timeout {
                    Some(t) => TcpStream::connect_timeout(a, t.max(Duration::from_millis(1))),
                    None => TcpStream::connect(a),
                }
                .map_err(refused)?;
                let _ = s.set_nodelay(true);
                s.into()
            }
            Address::Unix(p) => UnixStream::connect(p).map_err(refused)?.into(),
        };
        self.policy.open(socket, false, until)
    }
}
