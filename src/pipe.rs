//! [`Pipe`] and [`Connection`]: Python's `multiprocessing.Pipe`, over SPSC
//! rings in shared memory.
//!
//! A Pipe is one segment (one ring per direction, each with its data area)
//! plus a socketpair. The rings carry the messages; the socket lets the
//! kernel count each end's handles, so a peer that closed or died is seen
//! (POLLHUP) and reported as `Disconnected` instead of a hang, and it
//! carries the file descriptors of shared objects sent inside messages
//! (SCM_RIGHTS), so a Lock or a Connection can go to a running process.
//!
//! # Safety
//!
//! [`ShmBytes`] copies bytes into and out of the segment's data areas with
//! raw pointers. Its obligations: every copy is in bounds (checked here,
//! whatever the ring asks), the mapping lives as long as the Connection
//! (its Object's Arc), and no reference to shared bytes is ever formed, so
//! a peer writing them at the same time cannot invalidate one.
#![allow(unsafe_code)]

use crate::handles::{self, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use crate::object::{shared_object, Object};
use crate::os::{ident, Os};
use crate::sync::after;
use crate::{Error, ErrorKind, Result};
use multiproc_core::header::{Corrupt, Header, Kind, HEADER_SIZE};
use multiproc_core::ring::spsc::{self, Channel, RecvError, SendError, Waiting};
use multiproc_core::ring::Bytes;
use multiproc_core::{Acquired, Deadline};
use multiproc_posix::sock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of ring per direction unless [`Pipe::with_capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// The largest message a Connection receives (a larger one is skipped and
/// reported as `TooLarge`); sends above it are refused before anything is sent.
pub const MAX_MESSAGE: usize = 1 << 30;
/// Where the data areas start in a Pipe segment (after the two channels).
const DATA_OFFSET: usize = 4096;
const CHANNEL_SIZE: usize = std::mem::size_of::<Channel>();

static_assertions::const_assert!(HEADER_SIZE + 2 * CHANNEL_SIZE <= DATA_OFFSET);

/// One data area of a mapped Pipe segment.
struct ShmBytes {
    ptr: *mut u8,
    len: usize,
}

impl ShmBytes {
    fn fits(&self, offset: usize, n: usize) -> bool {
        offset.checked_add(n).is_some_and(|end| end <= self.len)
    }
}

impl Bytes for ShmBytes {
    fn len(&self) -> usize {
        self.len
    }

    fn write(&self, offset: usize, src: &[u8]) {
        if self.fits(offset, src.len()) {
            // SAFETY: in bounds (checked), mapped while the Connection lives,
            // `src` is our own memory; a copy, never a reference.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) }
        }
    }

    fn read(&self, offset: usize, dst: &mut [u8]) {
        if self.fits(offset, dst.len()) {
            // SAFETY: as for `write`.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.add(offset), dst.as_mut_ptr(), dst.len())
            }
        } else {
            dst.fill(0);
        }
    }
}

/// The segment, checked: capacity and direction count from its header.
#[derive(Clone)]
struct Segment {
    obj: Object<Channel>,
}

fn check(h: &Header, _: &Channel) -> Result<(), Corrupt> {
    let [capacity, duplex, ..] = h.params;
    let capacity = usize::try_from(capacity).map_err(|_| Corrupt::BadParams)?;
    if !spsc::valid_capacity(capacity) || duplex > 1 {
        return Err(Corrupt::BadParams);
    }
    let directions = duplex as usize + 1;
    let size = capacity.checked_mul(directions).and_then(|d| d.checked_add(DATA_OFFSET));
    if size != Some(h.size as usize) {
        return Err(Corrupt::BadParams);
    }
    Ok(())
}

shared_object!(Segment, &[Kind::Pipe], check);

impl Segment {
    fn from_object(obj: Object<Channel>) -> Segment {
        Segment { obj }
    }

    fn capacity(&self) -> usize {
        self.obj.header().params[0] as usize
    }

    fn duplex(&self) -> bool {
        self.obj.header().params[1] == 1
    }

    fn channel(&self, i: usize) -> &Channel {
        self.obj.at(HEADER_SIZE + i * CHANNEL_SIZE).expect("checked: channels fit the segment")
    }

    fn data(&self, i: usize) -> ShmBytes {
        let cap = self.capacity();
        ShmBytes { ptr: self.obj.base().wrapping_add(DATA_OFFSET + i * cap), len: cap }
    }
}

/// A file descriptor received as a handle-table index.
struct Fd(OwnedFd);

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        handles::import(index)
            .map(Fd)
            .map_err(|e| handles::refuse(Error::new(ErrorKind::Corrupt, e)))
    }
}

/// Python's `multiprocessing.Pipe`: makes a pair of connected [`Connection`]s.
///
/// ```
/// let (a, b) = multiproc::Pipe::new()?;
/// a.send(&("hello", 42))?;
/// assert_eq!(b.recv::<(String, i32)>()?, ("hello".to_string(), 42));
/// b.send_bytes(b"back")?;
/// assert_eq!(a.recv_bytes()?, b"back");
/// drop(a);
/// assert!(b.recv_bytes().unwrap_err().is_disconnected());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pipe;

impl Pipe {
    /// A duplex pipe: both ends send and receive.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection)> {
        Pipe::with_capacity(DEFAULT_CAPACITY, true)
    }

    /// A one-way pipe, as Python's `Pipe(duplex=False)`: the first end
    /// only receives, the second only sends.
    pub fn simplex() -> Result<(Connection, Connection)> {
        Pipe::with_capacity(DEFAULT_CAPACITY, false)
    }

    /// A pipe whose rings hold `capacity` bytes each (a power of two, at
    /// least 4096). Messages of any size up to [`MAX_MESSAGE`] go through
    /// any capacity, in pieces.
    pub fn with_capacity(capacity: usize, duplex: bool) -> Result<(Connection, Connection)> {
        if !spsc::valid_capacity(capacity) || capacity < 4096 {
            return Err(Error::invalid("a pipe's capacity is a power of two of at least 4096"));
        }
        let directions = 1 + usize::from(duplex);
        let size = DATA_OFFSET + directions * capacity;
        let params = [capacity as u64, u64::from(duplex), 0, 0, 0];
        let obj = Object::create(Kind::Pipe, params, size, |_: &Channel, _| {})?;
        let segment = Segment { obj };
        let (a, b) = sock::pair().map_err(|e| Error::io("socketpair", e))?;
        Ok((Connection::new(segment.clone(), a, 0), Connection::new(segment, b, 1)))
    }
}

/// One end of a [`Pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// Any number of threads and processes may hold the same end (it is `Sync`,
/// and passes to children as an argument or through another Connection);
/// their sends never interleave and each message goes to exactly one
/// receiver. When every handle of the other end is gone (closed, or its
/// process died), `recv` returns what was already sent and then
/// `Disconnected`, and `send` returns `Disconnected` (at the latest when the
/// ring is full: a send does not look for the peer while there is room).
pub struct Connection {
    segment: Segment,
    socket: OwnedFd,
    /// 0 or 1: which end of the pipe.
    end: u8,
    /// A message this handle was in the middle of receiving when a timeout
    /// hit, or a whole one too long for `recv_bytes_into`'s buffer.
    stash: Mutex<Stash>,
}

#[derive(Default)]
struct Stash {
    partial: Vec<u8>,
    complete: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Wire {
    segment: Segment,
    socket: Fd,
    end: u8,
}

/// [`Wire`] as sent: the socket is recorded borrowed from the Connection,
/// which outlives the transfer (a temporary duplicate would be closed
/// before the handle table is used).
#[derive(Serialize)]
struct WireRef<'a> {
    segment: &'a Segment,
    socket: FdRef<'a>,
    end: u8,
}

struct FdRef<'a>(BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = handles::export(self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire =
            WireRef { segment: &self.segment, socket: FdRef(self.socket.as_fd()), end: self.end };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        if wire.end > 1 {
            return Err(handles::refuse(Error::new(
                ErrorKind::Corrupt,
                "connection end not 0 or 1",
            )));
        }
        Ok(Connection::new(wire.segment, wire.socket.0, wire.end))
    }
}

/// Which channel an end sends on and receives from.
fn directions(duplex: bool, end: u8) -> (Option<usize>, Option<usize>) {
    match (duplex, end) {
        (true, 0) => (Some(0), Some(1)),
        (true, _) => (Some(1), Some(0)),
        (false, 0) => (None, Some(0)),
        (false, _) => (Some(0), None),
    }
}

impl Connection {
    fn new(segment: Segment, socket: OwnedFd, end: u8) -> Connection {
        Connection { segment, socket, end, stash: Mutex::new(Stash::default()) }
    }

    /// Another handle to the same end.
    pub fn try_clone(&self) -> Result<Connection> {
        let socket = self.socket.try_clone().map_err(|e| Error::io("dup", e))?;
        Ok(Connection::new(self.segment.clone(), socket, self.end))
    }

    /// Whether this end can send / receive.
    pub fn writable(&self) -> bool {
        directions(self.segment.duplex(), self.end).0.is_some()
    }

    pub fn readable(&self) -> bool {
        directions(self.segment.duplex(), self.end).1.is_some()
    }

    fn peer_here(&self) -> bool {
        !sock::peer_gone(self.socket.as_fd())
    }

    fn disconnected() -> Error {
        Error::new(ErrorKind::Disconnected, "the other end of the pipe is closed")
    }

    /// Sends `msg` and, before it, `fds` over the socket, holding the send
    /// side's lock so that nothing interleaves.
    fn send_message(&self, msg: &[u8], fds: &[RawFd], deadline: Deadline) -> Result<()> {
        let Some(i) = directions(self.segment.duplex(), self.end).0 else {
            return Err(Error::invalid("this end of a one-way pipe only receives"));
        };
        if msg.len() > MAX_MESSAGE {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("message over {MAX_MESSAGE} bytes"),
            ));
        }
        let channel = self.segment.channel(i);
        let side = &channel.sender;
        let how = side.lock.lock(&Os, ident::thread(), deadline)?;
        let mut w = side.writer();
        if how == Acquired::OwnerDied {
            w.abort_pending();
        }
        let result = (|| {
            if !fds.is_empty() {
                // SAFETY: the fds belong to objects alive for this call.
                let borrowed: Vec<BorrowedFd<'_>> =
                    fds.iter().map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
                sock::send_fds(self.socket.as_fd(), &borrowed).map_err(|e| match e.kind() {
                    std::io::ErrorKind::BrokenPipe => Self::disconnected(),
                    _ => Error::io("sending handles", e),
                })?;
            }
            let data = self.segment.data(i);
            channel.ring.send(&Os, &data, &mut w, msg, deadline, || self.peer_here()).map_err(|e| {
                match e {
                    SendError::Timeout => Error::timeout(),
                    SendError::Disconnected => Self::disconnected(),
                }
            })
        })();
        side.store_writer(&w);
        let _ = side.lock.unlock(&Os);
        result
    }

    /// Receives one message and hands it to `then`, holding the receive
    /// side's lock (so that the fds that came with it are taken in order).
    fn recv_message<R>(
        &self,
        deadline: Deadline,
        then: impl FnOnce(&Self, Vec<u8>) -> Result<R>,
    ) -> Result<R> {
        let Some(i) = directions(self.segment.duplex(), self.end).1 else {
            return Err(Error::invalid("this end of a one-way pipe only sends"));
        };
        let channel = self.segment.channel(i);
        let side = &channel.receiver;
        let how = side.lock.lock(&Os, ident::thread(), deadline)?;
        let mut stash = self.stash.lock().unwrap_or_else(|e| e.into_inner());
        let result = if let Some(message) = stash.complete.take() {
            Ok(message)
        } else {
            let mut r = side.reader();
            if how == Acquired::OwnerDied {
                r.resync();
            }
            let mut out = std::mem::take(&mut stash.partial);
            if r.in_message() && out.is_empty() {
                // Another holder timed out inside this message: its start is
                // not here, so the rest is skipped.
                r.skip_message();
            }
            let data = self.segment.data(i);
            let got =
                channel
                    .ring
                    .recv(&Os, &data, &mut r, &mut out, MAX_MESSAGE, deadline, || self.peer_here());
            side.store_reader(&r);
            match got {
                Ok(()) => Ok(out),
                Err(RecvError::Timeout) => {
                    if r.in_message() {
                        stash.partial = out;
                    }
                    Err(Error::timeout())
                }
                Err(RecvError::Disconnected) => Err(Self::disconnected()),
                Err(RecvError::TooLarge) => Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("a message over {MAX_MESSAGE} bytes was skipped"),
                )),
                Err(RecvError::Corrupt) => {
                    Err(Error::new(ErrorKind::Corrupt, "the pipe holds a malformed frame"))
                }
            }
        };
        drop(stash);
        let result = result.and_then(|message| then(self, message));
        let _ = side.lock.unlock(&Os);
        result
    }

    /// Sends `bytes` as one message (Python's `send_bytes`).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_message(bytes, &[], Deadline::NEVER)
    }

    /// [`send_bytes`](Self::send_bytes) waiting at most `timeout` for room.
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.send_message(bytes, &[], after(timeout))
    }

    /// Receives one message's bytes (Python's `recv_bytes`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_message(Deadline::NEVER, |_, m| Ok(m))
    }

    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_message(after(timeout), |_, m| Ok(m))
    }

    /// Receives one message into `buf`; its length. A message longer than
    /// `buf` is kept for the next receive and `TooLarge` is returned (Python
    /// raises `BufferTooShort` with the message).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_message(Deadline::NEVER, |this, m| {
            if m.len() > buf.len() {
                let len = m.len();
                this.stash.lock().unwrap_or_else(|e| e.into_inner()).complete = Some(m);
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("buffer of {} bytes too short for a message of {len}", buf.len()),
                ));
            }
            buf[..m.len()].copy_from_slice(&m);
            Ok(m.len())
        })
    }

    /// Sends a value (serde, postcard). Shared objects inside it (a Lock,
    /// a Value, another Connection) go along as handles. Postcard is not
    /// self-describing: the receiver must ask for the same type (a `[T; 3]`
    /// sent is a `[T; 3]` received, not a `Vec<T>`).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_value(value, Deadline::NEVER)
    }

    pub fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.send_value(value, after(timeout))
    }

    fn send_value<T: Serialize + ?Sized>(&self, value: &T, deadline: Deadline) -> Result<()> {
        let (bytes, fds) = handles::collect(|| {
            let mut out = vec![0u8; 4];
            postcard::to_io(value, &mut out).map(drop).map(|()| out)
        });
        let mut message = bytes.map_err(|e| Error::codec("serializing a message", e))?;
        message[..4].copy_from_slice(&(fds.len() as u32).to_le_bytes());
        self.send_message(&message, &fds, deadline)
    }

    /// Receives a value sent by [`send`](Self::send).
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_value(Deadline::NEVER)
    }

    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.recv_value(after(timeout))
    }

    fn recv_value<T: DeserializeOwned>(&self, deadline: Deadline) -> Result<T> {
        self.recv_message(deadline, |this, message| {
            let Some((count, payload)) = message.split_first_chunk::<4>() else {
                return Err(Error::new(ErrorKind::Corrupt, "message shorter than its header"));
            };
            let count = u32::from_le_bytes(*count) as usize;
            let fds = if count == 0 {
                Vec::new()
            } else {
                sock::recv_fds(this.socket.as_fd(), count)
                    .map_err(|e| Error::new(ErrorKind::Corrupt, "handles missing").with_source(e))?
            };
            handles::provide(fds, || postcard::from_bytes(payload)).map_err(|e| {
                handles::take_failure()
                    .unwrap_or_else(|| Error::codec("deserializing a message", e))
            })
        })
    }

    /// Whether a message can be received now without waiting.
    pub fn poll(&self) -> bool {
        self.poll_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for a message; `true` if one is there, or if
    /// the other end is gone (so that `recv` returns at once), as Python's.
    pub fn poll_timeout(&self, timeout: Duration) -> bool {
        let Some(i) = directions(self.segment.duplex(), self.end).1 else {
            return false;
        };
        if self.stash.lock().map(|s| s.complete.is_some()).unwrap_or(false) {
            return true;
        }
        let ring = &self.segment.channel(i).ring;
        let deadline = if timeout.is_zero() { Deadline::now(&Os) } else { after(timeout) };
        if timeout.is_zero() {
            return ring.has_data() || !self.peer_here();
        }
        let mut waiting = Waiting::new(&Os, deadline);
        match ring.wait_for_data(&Os, deadline, &mut || self.peer_here(), &mut waiting) {
            Ok(()) | Err(RecvError::Disconnected) => true,
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("end", &self.end)
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("socket", &self.socket.as_raw_fd())
            .finish()
    }
}
