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

mod address;
mod auth;
mod listener;
mod pickle;
pub(crate) mod ring;
mod stream;

/// A connected local stream, for [`Connection::from_unix_stream`]: std's
/// `UnixStream` on Unix; on Windows a named pipe end (`connect`, `pair`,
/// `Read` and `Write`).
pub use crate::os::net::LocalStream;
pub use address::Address;
#[doc(hidden)]
pub use listener::__handshake;
pub use listener::{
    Client, ClientBuilder, Listener, ListenerBuilder, DEFAULT_MAX_PENDING, MIN_AUTHKEY,
};
pub use stream::DEFAULT_MAX_MESSAGE;

#[cfg(not(mp_async))]
use stream::poll_many;
use stream::Stream;

use crate::channel::Outgoing;
use crate::handles::{self, HandleIn, HandleOut};
use crate::os::net;
#[cfg(not(mp_async))]
use crate::os::net::{Interest, Watch};
use crate::os::BorrowedHandle;
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use ring::RingEnd;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// Set by [`close`](Connection::close).
    closed: AtomicBool,
}

enum Inner {
    Ring(RingEnd),
    Stream(Stream),
}

impl Connection {
    pub(crate) fn ring(end: RingEnd) -> Connection {
        Connection { inner: Inner::Ring(end), closed: AtomicBool::new(false) }
    }

    fn stream(stream: Stream) -> Connection {
        Connection { inner: Inner::Stream(stream), closed: AtomicBool::new(false) }
    }

    /// A connection over an already connected socket, speaking Python's
    /// framing with no handshake (both ends must agree on that).
    pub fn from_unix_stream(socket: LocalStream) -> Connection {
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
        Ok(match self.open()? {
            Inner::Ring(r) => Connection::ring(r.try_clone()?),
            Inner::Stream(s) => Connection::stream(s.try_clone()?),
        })
    }

    /// This end as it is, unless it was closed.
    fn open(&self) -> Result<&Inner> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Disconnected, "this connection was closed"));
        }
        Ok(&self.inner)
    }

    /// Python's `close`: this handle is done. Later calls on it fail with
    /// [`Disconnected`](ErrorKind::Disconnected) (a `poll` says ready, so
    /// that the receive it announces fails at once); closing again does
    /// nothing. What it held of the connection is released now, as Python
    /// closes its descriptor: once every other handle of this end is gone
    /// too (a child's, a clone's), the peer sees the end. Handles of this
    /// end elsewhere (a child it was passed to) keep working.
    ///
    /// A thread in the middle of a call on this same handle is not
    /// interrupted (close it only when nothing else uses it, as in
    /// Python). On Windows a handle cannot be released in place: there it
    /// is released when the `Connection` is dropped, and until then the
    /// peer does not see the end.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let handle = match &self.inner {
            Inner::Ring(r) => r.socket(),
            Inner::Stream(s) => net::socket_handle(s.socket()),
        };
        crate::os::transfer::retire(handle).map_err(|e| Error::io("closing a connection", e))
    }

    /// Whether [`close`](Self::close) was called on this handle.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
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

    fn send_message(&self, bytes: &[u8], until: Deadline) -> Result<()> {
        match self.open()? {
            Inner::Ring(r) => r.send_message(Outgoing::Bytes(bytes), until),
            Inner::Stream(s) => s.send(bytes, until),
        }
    }

    /// Sends `bytes` as one message (Python's `send_bytes`).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_message(bytes, Deadline::NEVER)
    }

    /// [`send_bytes`](Self::send_bytes) waiting at most `timeout` for room.
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.send_message(bytes, Deadline::after(timeout))
    }

    fn recv_message(&self, until: Deadline) -> Result<Vec<u8>> {
        match self.open()? {
            Inner::Ring(r) => r.recv_bytes(until),
            Inner::Stream(s) => s.recv(s.max_message(), until),
        }
    }

    /// Receives one message's bytes (Python's `recv_bytes`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_message(Deadline::NEVER)
    }

    /// [`recv_bytes`](Self::recv_bytes) waiting at most `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_message(Deadline::after(timeout))
    }

    fn recv_into(&self, buf: &mut [u8], until: Deadline) -> Result<usize> {
        match self.open()? {
            Inner::Ring(r) => r.recv_bytes_into(buf, until),
            Inner::Stream(s) => s.recv_into(buf, until),
        }
    }

    /// Receives one message into `buf`; its length. A message longer than
    /// `buf` is kept for the next receive and `TooLarge` is returned (Python
    /// raises `BufferTooShort` with the message).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into(buf, Deadline::NEVER)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) waiting at most `timeout`.
    pub fn recv_bytes_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_into(buf, Deadline::after(timeout))
    }

    /// Sends one message of `len` bytes that `fill` writes in place: through
    /// a Pipe, straight into the ring in shared memory, so nothing is copied
    /// (a message of up to a quarter of the Pipe's capacity, less 8 bytes;
    /// a larger one is written into a buffer first and sent in pieces).
    /// The bytes lent to `fill` hold whatever the ring held before: it
    /// writes all of them. The receiver sees none of it until `fill`
    /// returns, so a sender killed inside `fill` leaves no torn message,
    /// and one whose `fill` panics sends nothing. Over a socket the bytes
    /// are written into a buffer, then sent.
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send_with(5, |buf| buf.copy_from_slice(b"hello"))?;
    /// let upper = b.recv_with(|bytes| bytes.to_ascii_uppercase())?;
    /// assert_eq!(upper, b"HELLO");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send_with<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.send_with_until(len, Deadline::NEVER, fill)
    }

    /// [`send_with`](Self::send_with) waiting at most `timeout` for room
    /// (`fill` is not called if there was none).
    pub fn send_with_timeout<R>(
        &self,
        len: usize,
        timeout: Duration,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        self.send_with_until(len, Deadline::after(timeout), fill)
    }

    fn send_with_until<R>(
        &self,
        len: usize,
        until: Deadline,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        match self.open()? {
            Inner::Ring(r) => r.send_with(len, until, fill),
            Inner::Stream(s) => {
                let mut buf = vec![0; len];
                let out = fill(&mut buf);
                s.send(&buf, until).map(|()| out)
            }
        }
    }

    /// Receives one message and lends its bytes to `read`: through a Pipe,
    /// where they lie in shared memory (a message of up to a quarter of the
    /// capacity; a larger one is assembled first), so nothing is copied.
    /// The message is taken whatever `read` does, and the sender cannot
    /// reuse its bytes until `read` returns. They are shared memory: a
    /// process that breaks the Pipe's protocol could change them while you
    /// read, so copy what you will check before you rely on it if the peer
    /// is not trusted.
    pub fn recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Deadline::NEVER, read)
    }

    /// [`recv_with`](Self::recv_with) waiting at most `timeout` (`read` is
    /// not called if nothing came).
    pub fn recv_with_timeout<R>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.recv_with_until(Deadline::after(timeout), read)
    }

    fn recv_with_until<R>(&self, until: Deadline, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        match self.open()? {
            Inner::Ring(r) => r.recv_with(until, read),
            Inner::Stream(s) => s.recv(s.max_message(), until).map(|m| read(&m)),
        }
    }

    /// Sends a value (serde, postcard). Through a Pipe, shared objects
    /// inside it (a Lock, a Value, another Connection) go along as handles;
    /// a socket connection carries bytes only and refuses them. Postcard is
    /// not self-describing: the receiver must ask for the same type (a
    /// `[T; 3]` sent is a `[T; 3]` received, not a `Vec<T>`).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_value(value, Deadline::NEVER)
    }

    /// [`send`](Self::send) waiting at most `timeout` for room.
    pub fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.send_value(value, Deadline::after(timeout))
    }

    fn send_value<T: Serialize + ?Sized>(&self, value: &T, until: Deadline) -> Result<()> {
        match self.open()? {
            Inner::Ring(r) => r.send_value(value, until),
            Inner::Stream(s) => s.send(&encode_plain(value)?, until),
        }
    }

    /// Sends `value`, awaiting room without blocking a thread (the `tokio`
    /// feature). Cancel-safe: on a Pipe, a future dropped before the
    /// message was whole in the pipe sent nothing (what it had written is
    /// withdrawn); on a socket, one dropped part-way leaves the message's
    /// rest to go before the next message, as a timed-out send does, so
    /// the peer never sees it torn.
    #[cfg(mp_async)]
    pub async fn send_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        match self.open()? {
            Inner::Ring(r) => r.send_value_async(value).await,
            Inner::Stream(s) => s.send_async(&encode_plain(value)?).await,
        }
    }

    /// [`send_bytes`](Self::send_bytes), awaited as [`send_async`](Self::send_async).
    #[cfg(mp_async)]
    pub async fn send_bytes_async(&self, bytes: &[u8]) -> Result<()> {
        match self.open()? {
            Inner::Ring(r) => r.send_bytes_async(bytes).await,
            Inner::Stream(s) => s.send_async(bytes).await,
        }
    }

    /// A handle readable once a message may be there (or the peer gone),
    /// for an event loop other than tokio: see
    /// [`Readiness`](crate::Readiness) (then [`poll`](Self::poll) and the
    /// receive).
    #[cfg(mp_async)]
    pub fn readiness(&self) -> Result<crate::Readiness<'_>> {
        let (registered, handles) = self.watch_incoming()?;
        crate::Readiness::new(registered, handles)
    }

    /// Registers for this end's incoming messages (a Pipe's: so that a
    /// send rings its bell) and the handles that then tell of them.
    #[cfg(mp_async)]
    fn watch_incoming(
        &self,
    ) -> Result<(Option<impl Sized + '_>, [Option<crate::os::ready::Ready<'_>>; 2])> {
        use crate::os::ready::stream;
        match self.open()? {
            Inner::Ring(r) => r.watch_incoming().map(|(registered, h)| (Some(registered), h)),
            Inner::Stream(s) => Ok((None, [Some(stream(net::socket_handle(s.socket()))), None])),
        }
    }

    /// Receives a value sent by [`send`](Self::send), awaiting it without
    /// blocking a thread (the `tokio` feature). `Disconnected` once
    /// the peer is gone (closed, or its
    /// process died) and everything it sent was received. Cancel-safe: a
    /// future dropped before it completes took no message (a long one half
    /// received is kept for this handle's next receive).
    #[cfg(mp_async)]
    pub async fn recv_async<T: DeserializeOwned>(&self) -> Result<T> {
        match self.open()? {
            Inner::Ring(r) => r.recv_value_async().await,
            Inner::Stream(s) => decode_plain(&s.recv_async(s.max_message()).await?),
        }
    }

    /// [`recv_bytes`](Self::recv_bytes), awaited as [`recv_async`](Self::recv_async).
    #[cfg(mp_async)]
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        match self.open()? {
            Inner::Ring(r) => r.recv_bytes_async().await,
            Inner::Stream(s) => s.recv_async(s.max_message()).await,
        }
    }

    /// Receives a value sent by [`send`](Self::send).
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_value(Deadline::NEVER)
    }

    /// [`recv`](Self::recv) waiting at most `timeout`.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.recv_value(Deadline::after(timeout))
    }

    fn recv_value<T: DeserializeOwned>(&self, until: Deadline) -> Result<T> {
        match self.open()? {
            Inner::Ring(r) => r.recv_value(until),
            Inner::Stream(s) => decode_plain(&s.recv(s.max_message(), until)?),
        }
    }

    /// Sends `value` pickled, as Python's `send(obj)` does, for a Python
    /// peer that calls `recv()`: a struct or map becomes a dict, a tuple a
    /// tuple, a `Vec` a list, `Option::None` and `()` become `None`, text a
    /// `str`, and bytes (with `serde_bytes`) `bytes`. A [`PickleValue`]
    /// goes with [`send_pickle_value`](Self::send_pickle_value).
    pub fn send_pickle<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_pickle_timeout_at(value, Deadline::NEVER)
    }

    /// [`send_pickle`](Self::send_pickle) waiting at most `timeout` for room.
    pub fn send_pickle_timeout<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<()> {
        self.send_pickle_timeout_at(value, Deadline::after(timeout))
    }

    fn send_pickle_timeout_at<T: Serialize + ?Sized>(
        &self,
        value: &T,
        until: Deadline,
    ) -> Result<()> {
        /// `value` behind a sized type, which the pickle codec asks for.
        struct Sized<'a, T: ?std::marker::Sized>(&'a T);
        impl<T: Serialize + ?std::marker::Sized> Serialize for Sized<'_, T> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }
        let bytes = serde_pickle::to_vec(&Sized(value), serde_pickle::SerOptions::new())
            .map_err(|e| Error::codec("pickling a message", e))?;
        self.send_message(&bytes, until)
    }

    /// Receives a value a Python peer sent with `send(obj)` (a pickle of
    /// dicts, lists, tuples, `str`, `bytes`, `int`, `float`, `bool` and
    /// `None`, nested), as `T`. A pickle of anything else (a class
    /// instance, a `__reduce__`) is a [`Codec`](ErrorKind::Codec) error
    /// that names what it met; the message is consumed, and the connection
    /// stays usable.
    pub fn recv_pickle<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_pickle_until(Deadline::NEVER)
    }

    /// [`recv_pickle`](Self::recv_pickle) waiting at most `timeout`.
    pub fn recv_pickle_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.recv_pickle_until(Deadline::after(timeout))
    }

    fn recv_pickle_until<T: DeserializeOwned>(&self, until: Deadline) -> Result<T> {
        let bytes = self.recv_message(until)?;
        pickle::check(&bytes)?;
        serde_pickle::from_slice(&bytes, serde_pickle::DeOptions::new())
            .map_err(|e| Error::codec("unpickling a message", e))
    }

    /// Sends a [`PickleValue`] pickled (a tuple as a tuple, a set as a
    /// set, bytes as `bytes`), as Python's `send(obj)`.
    pub fn send_pickle_value(&self, value: &PickleValue) -> Result<()> {
        let bytes = serde_pickle::value_to_vec(value, serde_pickle::SerOptions::new())
            .map_err(|e| Error::codec("pickling a message", e))?;
        self.send_message(&bytes, Deadline::NEVER)
    }

    /// Receives a pickle as a [`PickleValue`], keeping what serde types
    /// cannot tell apart (a tuple from a list, a set, an `int` of any size).
    pub fn recv_pickle_value(&self) -> Result<PickleValue> {
        let bytes = self.recv_message(Deadline::NEVER)?;
        pickle::check(&bytes)?;
        serde_pickle::value_from_slice(&bytes, serde_pickle::DeOptions::new())
            .map_err(|e| Error::codec("unpickling a message", e))
    }

    /// Whether a message can be received now without waiting.
    pub fn poll(&self) -> bool {
        self.poll_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for a message; `true` if one is there, or if
    /// the other end is gone (so that `recv` returns at once), as Python's.
    pub fn poll_timeout(&self, timeout: Duration) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            // A receive returns at once (with the error).
            return true;
        }
        match &self.inner {
            Inner::Ring(r) => r.poll_timeout(timeout),
            Inner::Stream(s) => s.poll(timeout),
        }
    }

    /// A socket connection's socket as a handle (for handles sent beside
    /// the stream), where it is one.
    pub(crate) fn stream_socket(&self) -> Option<BorrowedHandle<'_>> {
        match &self.inner {
            Inner::Ring(_) => None,
            Inner::Stream(s) => Some(net::socket_handle(s.socket())),
        }
    }

    /// What [`wait`] sleeps on: a stream's readability (a message), or a
    /// Pipe's companion link's hang-up; and whether it is a stream.
    #[cfg(not(mp_async))]
    fn wake_watch(&self) -> (Watch<'_>, bool) {
        match &self.inner {
            Inner::Ring(r) => (net::link_watch(r.socket(), Interest::HangUp), false),
            Inner::Stream(s) => (net::socket_watch(s.socket(), Interest::Read), true),
        }
    }
}

/// A value as postcard bytes with no handle table: what a socket carries.
/// Any value a pickle of Python's built-in types holds (`serde_pickle`'s).
pub use serde_pickle::Value as PickleValue;

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
    Stream { socket: HandleOut<'a>, max: u64 },
}

#[derive(Deserialize)]
enum Wire {
    Ring(RingEnd),
    Stream { socket: HandleIn, max: u64 },
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = self.open().map_err(serde::ser::Error::custom)?;
        match inner {
            Inner::Ring(r) => WireRef::Ring(r),
            Inner::Stream(st) => {
                let socket = net::socket_handle(st.socket());
                WireRef::Stream { socket: HandleOut(socket), max: st.max_message() as u64 }
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
                net::socket_from_handle(socket.0).map_err(|e| {
                    handles::refuse(Error::io("taking a received connection's socket", e))
                })?,
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
/// With the `tokio` feature the wait is one sleep on every connection at
/// once, Pipes included: it registers for each Pipe's messages as an async
/// waiter does, so that a send rings the Pipe's bell, and sleeps on the
/// bells and sockets together (edge-triggered epoll or kqueue; on Windows
/// an event that thread-pool waits on the bells set, where sockets, named
/// pipes and a peer's hang-up are looked at every 1 and 10 ms).
#[cfg(mp_async)]
pub fn wait(connections: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let until = timeout.map_or(Deadline::NEVER, Deadline::after);
    let ready = || (0..connections.len()).filter(|&i| connections[i].poll()).collect::<Vec<_>>();
    let now = ready();
    if !now.is_empty() || until.passed() {
        return Ok(now);
    }
    let watching = |e| Error::io("watching connections", e);
    let mut edges = crate::os::ready::Edges::new().map_err(watching)?;
    let mut registered = Vec::new();
    for c in connections {
        let handles = match c.open() {
            Err(_) => continue,
            // A send-only end tells of nothing but its peer's hang-up.
            Ok(Inner::Ring(r)) if !r.readable() => [Some(crate::os::ready::link(r.socket())), None],
            Ok(_) => {
                let (registration, handles) = c.watch_incoming()?;
                registered.push(registration);
                handles
            }
        };
        for h in handles.into_iter().flatten() {
            edges.add(h).map_err(watching)?;
        }
    }
    loop {
        let now = ready();
        if !now.is_empty() || until.passed() {
            return Ok(now);
        }
        edges.wait(until.left()).map_err(watching)?;
    }
}

/// Socket connections are waited on with one `poll(2)`. A Pipe's messages
/// arrive through shared memory, not a file descriptor, so while any Pipe
/// is among them the wait wakes every 50 µs, backing off to 1 ms, to look
/// (with the `tokio` feature, it sleeps on them all instead).
#[cfg(not(mp_async))]
pub fn wait(connections: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let until = timeout.map_or(Deadline::NEVER, Deadline::after);
    let has_ring = connections.iter().any(|c| !c.wake_watch().1);
    let mut step = Duration::from_micros(50);
    loop {
        let ready: Vec<usize> = (0..connections.len()).filter(|&i| connections[i].poll()).collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        if until.passed() {
            return Ok(ready);
        }
        let mut fds: Vec<Watch<'_>> = connections.iter().map(|c| c.wake_watch().0).collect();
        let slice_end = if has_ring {
            let end = Deadline::after(step);
            step = (step * 2).min(Duration::from_millis(1));
            until.min(end)
        } else {
            until
        };
        poll_many(&mut fds, slice_end)?;
    }
}
