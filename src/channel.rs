//! What Pipe and Queue share: one direction of messages over an SPSC ring
//! in shared memory, its two sides locked so that any number of holders
//! may send and receive, and the file descriptors of shared objects inside
//! messages carried beside it over a Unix socket (SCM_RIGHTS).
//!
//! A typed message is `fd count: u32 LE`, then (if the count is not 0) the
//! `tag: u64 LE` of its handles, then the postcard bytes. The fds are sent
//! over the socket, tagged, before the message is published, under the
//! same lock. A send that fails after its fds left (the ring was full) or
//! a sender that dies in between leaves a batch no published message
//! claims; tags grow with every batch sent, so the receiver of the next
//! message with handles closes such a batch instead of taking it for its
//! own (`os::transfer::recv_handles`).
//!
//! # Safety
//!
//! [`ShmBytes`] copies bytes into and out of a segment's data areas with
//! raw pointers, and [`Link::send`] borrows raw fds for the duration of a
//! send. Obligations: every copy is in bounds (checked here, whatever the
//! ring asks), the mapping outlives every `ShmBytes` (the segment's Arc is
//! held by the caller), no reference to shared bytes is ever formed (a peer
//! writing them at the same time cannot invalidate one), and the fds come
//! from objects alive for the call.
#![allow(unsafe_code)]

use crate::handles;
use crate::os::transfer::{recv_handles, send_handles as send_batch};
use crate::os::{ident, Os};
use crate::os::{BorrowedHandle, RawHandle};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::ring::spsc::{Channel, RecvError, SendError, Waiting};
use multiproc_core::ring::Bytes;
use multiproc_core::Acquired;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The largest message a channel carries. A larger send is refused before
/// anything is sent; a larger message found by a receiver is skipped and
/// reported as `TooLarge`.
pub const MAX_MESSAGE: usize = 1 << 30;

/// The smallest ring a Pipe or Queue is made with: one page.
pub const MIN_RING_CAPACITY: usize = 4096;

/// Checks a capacity asked of a Pipe or Queue (`what`): a power of two of
/// at least [`MIN_RING_CAPACITY`] that the ring can index.
pub(crate) fn check_capacity(capacity: usize, what: &str) -> Result<()> {
    if !multiproc_core::ring::spsc::valid_capacity(capacity) || capacity < MIN_RING_CAPACITY {
        return Err(Error::invalid(format!(
            "a {what}'s capacity is a power of two of at least {MIN_RING_CAPACITY}"
        )));
    }
    Ok(())
}

/// One data area of a mapped segment.
pub(crate) struct ShmBytes {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
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
            // SAFETY: in bounds (checked), mapped while the caller's segment
            // lives, `src` is our own memory; a copy, never a reference.
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

/// What one handle keeps between receives: a message it was in the middle
/// of when a timeout hit, or a whole one too long for a caller's buffer.
/// Written and taken only under the receive side's lock; `used` lets the
/// common receive, with nothing kept, skip the mutex.
#[derive(Default)]
pub(crate) struct Stash {
    used: AtomicBool,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    partial: Vec<u8>,
    complete: Option<Vec<u8>>,
}

impl Stash {
    fn take(&self) -> Kept {
        if !self.used.load(Ordering::Relaxed) {
            return Kept::default();
        }
        self.used.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn update(&self, f: impl FnOnce(&mut Kept)) {
        f(&mut self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        self.used.store(true, Ordering::Relaxed);
    }

    /// Keeps a whole message that did not fit a caller's buffer for the
    /// next receive (call from a receive's `then`, under the side's lock).
    pub(crate) fn keep(&self, message: Vec<u8>) {
        self.update(|k| k.complete = Some(message));
    }

    /// Whether a kept whole message waits.
    pub(crate) fn has_kept(&self) -> bool {
        self.used.load(Ordering::Relaxed)
            && self.kept.lock().map(|k| k.complete.is_some()).unwrap_or(false)
    }
}

/// What is sent: bytes as they are, or a typed message (made by
/// [`encoded`]) with the handles of the shared objects inside it.
pub(crate) enum Outgoing<'a> {
    Bytes(&'a [u8]),
    Typed { message: &'a mut [u8], fds: &'a [RawHandle] },
}

/// The header of a typed message with `count` handles: its length.
fn typed_header_len(count: usize) -> usize {
    if count == 0 {
        4
    } else {
        12
    }
}

/// One direction of messages, as one handle sees it.
pub(crate) struct Link<'a> {
    pub(crate) channel: &'a Channel,
    pub(crate) data: ShmBytes,
    /// Where fds go out, and where they come in.
    pub(crate) fds_out: BorrowedHandle<'a>,
    pub(crate) fds_in: BorrowedHandle<'a>,
    /// Receivers wait for throughput rather than latency (a Queue's).
    pub(crate) batched: bool,
}

fn disconnected() -> Error {
    Error::new(ErrorKind::Disconnected, "the other end is gone (closed, or its process died)")
}

impl Link<'_> {
    /// Sends `out` (a typed message's handles first, tagged), holding the
    /// send side's lock.
    pub(crate) fn send(
        &self,
        out: Outgoing<'_>,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
    ) -> Result<()> {
        let len = match &out {
            Outgoing::Bytes(b) => b.len(),
            Outgoing::Typed { message, .. } => message.len(),
        };
        if len > MAX_MESSAGE {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("message over {MAX_MESSAGE} bytes"),
            ));
        }
        let side = &self.channel.sender;
        let me = ident::thread();
        let how = side.lock.lock(&Os, me, deadline.core())?;
        let mut w = side.writer();
        if how == Acquired::OwnerDied {
            // The previous holder may have died inside a message.
            w.abort_pending();
        }
        let result = (|| {
            let msg: &[u8] = match out {
                Outgoing::Bytes(bytes) => bytes,
                Outgoing::Typed { message, fds } => {
                    if !fds.is_empty() {
                        let tag = side.next_batch();
                        message[4..12].copy_from_slice(&tag.to_le_bytes());
                        send_handles(self.fds_out, fds, tag)?;
                        testing::after_handles();
                    }
                    message
                }
            };
            self.channel
                .ring
                .producer(&Os, &self.data, &mut w)
                .send(msg, deadline.core(), connected)
                .map_err(|e| match e {
                    SendError::Timeout => Error::timeout(),
                    SendError::Disconnected => disconnected(),
                })
        })();
        if result.is_ok() {
            side.count_message();
        }
        side.store_writer(&w);
        let _ = side.lock.unlock(&Os, me);
        result
    }

    /// Receives one message and hands it to `then`, holding the receive
    /// side's lock (so that the fds that came with it are taken in order).
    pub(crate) fn recv<R>(
        &self,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        then: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<R> {
        self.recv_in(Vec::new(), stash, deadline, connected, then)
    }

    /// Receives one typed message and decodes it, in this thread's reused
    /// receive buffer.
    pub(crate) fn recv_value<T: DeserializeOwned>(
        &self,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
    ) -> Result<T> {
        let buf = RECV_BUF.with(Cell::take);
        self.recv_in(buf, stash, deadline, connected, |m| {
            let value = self.decode(&m);
            recycle(&RECV_BUF, m);
            value
        })
    }

    /// Receives one message into the caller's `buf` (its length), through
    /// this thread's reused receive buffer, which this path keeps up to
    /// [`KEEP_INTO_BUFFER`]: a stream of large messages then costs no
    /// allocation and no page faults per message. A message longer than
    /// `buf` is kept for the next receive and `TooLarge` returned.
    pub(crate) fn recv_into(
        &self,
        buf: &mut [u8],
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
    ) -> Result<usize> {
        let scratch = RECV_BUF.with(Cell::take);
        self.recv_in(scratch, stash, deadline, connected, |m| {
            if m.len() > buf.len() {
                let len = m.len();
                stash.keep(m);
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("buffer of {} bytes too short for a message of {len}", buf.len()),
                ));
            }
            buf[..m.len()].copy_from_slice(&m);
            let len = m.len();
            recycle_up_to(&RECV_BUF, m, KEEP_INTO_BUFFER);
            Ok(len)
        })
    }

    /// [`recv`](Self::recv), the message assembled in `buf`.
    fn recv_in<R>(
        &self,
        buf: Vec<u8>,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        then: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<R> {
        let side = &self.channel.receiver;
        let me = ident::thread();
        let how = side.lock.lock(&Os, me, deadline.core())?;
        let kept = stash.take();
        let result = if let Some(message) = kept.complete {
            Ok(message)
        } else {
            let mut r = side.reader();
            if self.batched {
                r.batch_polls();
            }
            if how == Acquired::OwnerDied {
                // The previous holder may have died inside a message.
                r.resync();
            }
            let mut out = if kept.partial.is_empty() { buf } else { kept.partial };
            if r.in_message() && out.is_empty() {
                // Another holder timed out inside this message: its start
                // is not here, so the rest is skipped.
                r.skip_message();
            }
            let got = self.channel.ring.consumer(&Os, &self.data, &mut r).recv(
                &mut out,
                MAX_MESSAGE,
                deadline.core(),
                connected,
            );
            if got.is_ok() {
                side.count_message();
            }
            side.store_reader(&r);
            match got {
                Ok(()) => Ok(out),
                Err(RecvError::Timeout) => {
                    if r.in_message() {
                        stash.update(|k| k.partial = out);
                    }
                    Err(Error::timeout())
                }
                Err(RecvError::Disconnected) => Err(disconnected()),
                Err(RecvError::TooLarge) => Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("a message over {MAX_MESSAGE} bytes was skipped"),
                )),
                Err(RecvError::Corrupt) => {
                    Err(Error::new(ErrorKind::Corrupt, "the ring holds a malformed frame"))
                }
            }
        };
        let result = result.and_then(then);
        let _ = side.lock.unlock(&Os, me);
        result
    }

    /// Waits at most until `deadline` for a message; `true` if one is
    /// there or the other side is gone.
    pub(crate) fn wait_readable(
        &self,
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
    ) -> bool {
        let ring = &self.channel.ring;
        let mut waiting = Waiting::new(&Os, deadline.core());
        match ring.wait_for_data(&Os, deadline.core(), &mut connected, &mut waiting) {
            Ok(()) | Err(RecvError::Disconnected) => true,
            Err(_) => false,
        }
    }

    /// Receives the fds a typed message announces, and decodes it.
    pub(crate) fn decode<T: DeserializeOwned>(&self, message: &[u8]) -> Result<T> {
        let (count, tag, payload) = split_typed(message)?;
        let fds = if count == 0 {
            Vec::new()
        } else {
            recv_handles(self.fds_in, count, tag)
                .map_err(|e| Error::new(ErrorKind::Corrupt, "handles missing").with_source(e))?
        };
        handles::decode(fds, payload, "deserializing a message")
    }
}

/// A typed message's handle count, their tag, and its payload.
fn split_typed(message: &[u8]) -> Result<(usize, u64, &[u8])> {
    let short = || Error::new(ErrorKind::Corrupt, "message shorter than its header");
    let (count, rest) = message.split_first_chunk::<4>().ok_or_else(short)?;
    let count = u32::from_le_bytes(*count) as usize;
    if count == 0 {
        return Ok((0, 0, rest));
    }
    let (tag, payload) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    Ok((count, u64::from_le_bytes(*tag), payload))
}

/// Sends the fds a serialization collected ([`handles::collect`]) over
/// `socket`, tagged `tag`. They are borrowed from objects the caller keeps
/// alive for the call (the objects that were serialized).
pub(crate) fn send_handles(socket: BorrowedHandle<'_>, fds: &[RawHandle], tag: u64) -> Result<()> {
    if fds.is_empty() {
        return Ok(());
    }
    let borrowed: Vec<BorrowedHandle<'_>> = fds
        .iter()
        // SAFETY: the fds belong to objects alive for this call (above).
        .map(|&fd| unsafe { crate::os::borrow_raw(fd) })
        .collect();
    send_batch(socket, &borrowed, tag).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => disconnected(),
        _ => Error::io("sending handles", e),
    })
}

thread_local! {
    /// Where this thread encodes typed messages, and where it receives the
    /// ones it decodes: kept between calls, so a small message costs no
    /// allocation.
    static SEND_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static RECV_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Buffers above this are freed rather than kept for the next message.
const KEEP_BUFFER: usize = 64 << 10;

/// What `recv_into` keeps (its callers stream large messages into buffers
/// of their own, as Python's `recv_bytes_into` is for).
const KEEP_INTO_BUFFER: usize = 64 << 20;

fn recycle(slot: &'static std::thread::LocalKey<Cell<Vec<u8>>>, buf: Vec<u8>) {
    recycle_up_to(slot, buf, KEEP_BUFFER);
}

fn recycle_up_to(
    slot: &'static std::thread::LocalKey<Cell<Vec<u8>>>,
    mut buf: Vec<u8>,
    most: usize,
) {
    if buf.capacity() <= most {
        buf.clear();
        slot.with(|s| s.set(buf));
    }
}

/// Encodes `value` as a typed message (the fd count, a place for their
/// tag if there are any, then the postcard bytes) in this thread's reused
/// buffer, and hands it to `send`.
pub(crate) fn encoded<T: Serialize + ?Sized, R>(
    value: &T,
    send: impl FnOnce(Outgoing<'_>) -> Result<R>,
) -> Result<R> {
    let mut buf = SEND_BUF.with(Cell::take);
    buf.extend_from_slice(&[0; 12]);
    let (bytes, fds) = handles::collect(|| postcard::to_extend(value, buf));
    let mut buf = bytes.map_err(|e| Error::codec("serializing a message", e))?;
    // The header sits right before the payload: 12 bytes with handles, 4
    // (at offset 8) without.
    let start = 12 - typed_header_len(fds.len());
    let count = u32::try_from(fds.len())
        .map_err(|_| Error::new(ErrorKind::TooLarge, "too many handles in one message"))?;
    buf[start..start + 4].copy_from_slice(&count.to_le_bytes());
    let sent = send(Outgoing::Typed { message: &mut buf[start..], fds: &fds });
    recycle(&SEND_BUF, buf);
    sent
}

/// Test hooks (hidden): stopping a sender between its handles and its
/// frame, to check what a receiver makes of what it left.
#[doc(hidden)]
pub mod testing {
    use std::sync::OnceLock;

    static STALL: OnceLock<crate::Event> = OnceLock::new();

    /// From now on, a send of this process that carries handles sets
    /// `reached` once they are sent and then never goes on (as if killed
    /// there; the test kills it).
    pub fn stall_after_handles(reached: crate::Event) {
        let _ = STALL.set(reached);
    }

    pub(super) fn after_handles() {
        if let Some(reached) = STALL.get() {
            reached.set();
            loop {
                std::thread::park();
            }
        }
    }
}

/// Decodes an untrusted typed message as a receiver would, with no handles
/// at hand: for the fuzz target of the message decoder.
#[doc(hidden)]
pub fn decode_untrusted<T: DeserializeOwned>(message: &[u8]) -> Result<T> {
    let (count, _, payload) = split_typed(message)?;
    if count != 0 {
        return Err(Error::new(ErrorKind::Corrupt, "handles announced, none at hand"));
    }
    handles::decode(Vec::new(), payload, "deserializing a message")
}
