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
//! raw pointers, and lends a frame's bytes as a slice to the one side that
//! owns them for the moment: the producer a frame it fills before it
//! publishes it, the consumer a published frame before it moves `head`
//! past it. [`Link::send`] borrows raw fds for the duration of a send.
//! Obligations: every copy and every lent slice is in bounds (checked
//! here, whatever the ring asks), the mapping outlives every `ShmBytes`
//! (the segment's Arc is held by the caller), and the fds come from
//! objects alive for the call.
//!
//! A peer that keeps to the ring's protocol never touches a frame lent to
//! the other side. One that breaks it (a hostile process holding the
//! segment) can change plain bytes under the slice: any bit pattern is a
//! valid `u8`, the slice's bounds are ours, not in shared memory, and this
//! crate decides nothing from lent bytes: it copies them out before it
//! decodes them ([`Link::recv_value`]). A caller of `recv_with` reading
//! bytes it does not trust copies what it will check before it uses it.
#![allow(unsafe_code)]

use crate::handles;
use crate::os::transfer::{recv_handles, send_handles as send_batch};
use crate::os::{ident, Os};
use crate::os::{BorrowedHandle, RawHandle};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::ring::spsc::{
    max_frame_payload, Channel, RecvError, SendError, Sink, Waiting, Writer,
};
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

    fn write_in_place<R>(&self, offset: usize, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        if !self.fits(offset, len) {
            return fill(&mut vec![0; len]);
        }
        // SAFETY: in bounds (checked) and mapped while the caller's segment
        // lives; the ring lends this frame to its producer alone until it
        // publishes it (a peer breaking that changes plain bytes only: see
        // the module's Safety).
        fill(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) })
    }

    fn read_in_place<R>(&self, offset: usize, len: usize, read: impl FnOnce(&[u8]) -> R) -> R {
        if !self.fits(offset, len) {
            return read(&vec![0; len]);
        }
        // SAFETY: in bounds (checked) and mapped while the caller's segment
        // lives; the ring lends this published frame to its consumer alone
        // until it moves `head` past it (as for `write_in_place`).
        read(unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) })
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

/// A received message as a receive's `then` sees it: lent where it lies
/// in the ring (a message in one frame), or assembled (one in fragments,
/// or one kept from an earlier call).
pub(crate) enum Message<'a> {
    Lent(&'a [u8]),
    Owned(Vec<u8>),
}

impl Message<'_> {
    /// The bytes as a vector of their own.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Message::Lent(bytes) => bytes.to_vec(),
            Message::Owned(bytes) => bytes,
        }
    }

    /// Gives an assembled buffer back to this thread for the next receive,
    /// if it is at most `most` bytes.
    fn recycle(self, most: usize) {
        if let Message::Owned(buf) = self {
            recycle_up_to(&RECV_BUF, buf, most);
        }
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Message::Lent(bytes) => bytes,
            Message::Owned(bytes) => bytes,
        }
    }
}

/// Receives a message in fragments straight into `buf`: the outcome, the
/// message's length if it is there whole, or the whole message if it
/// outgrew `buf`. A receive that times out inside the message keeps what
/// it has in `stash`. Out of line: the common receive (a message in one
/// frame) stays small.
#[cold]
#[inline(never)]
fn assemble_into<B: Bytes>(
    consumer: &mut multiproc_core::ring::spsc::Consumer<'_, Os, B>,
    buf: &mut [u8],
    stash: &Stash,
    deadline: Deadline,
    connected: impl FnMut() -> bool,
) -> (std::result::Result<bool, RecvError>, Option<usize>, Option<Vec<u8>>) {
    let mut sink = IntoSlice { buf, len: 0, spill: RECV_BUF.with(Cell::take), spilled: false };
    let got = consumer.recv(&mut sink, MAX_MESSAGE, deadline.core(), connected).map(|()| true);
    match got {
        Ok(_) if !sink.spilled => {
            let len = sink.len;
            recycle_up_to(&RECV_BUF, sink.spill, KEEP_INTO_BUFFER);
            return (got, Some(len), None);
        }
        Ok(_) => return (got, None, Some(sink.spill)),
        Err(RecvError::Timeout) if consumer.in_message() => {
            stash.update(|k| k.partial = sink.into_vec());
        }
        Err(_) => recycle(&RECV_BUF, sink.spill),
    }
    (got, None, None)
}

/// Where a receive places a message instead of handing it to `then`:
/// nowhere (`()`, every receive but one), or the caller's buffer
/// (`recv_into`), which takes a message that fits it.
trait Target {
    /// Copies `m` in if it fits (its length), else hands it to `then`.
    fn place(&mut self, m: Message<'_>, then: &mut dyn FnMut(Message<'_>)) -> Option<usize>;
    /// Where to assemble a message in fragments, if not in a vector.
    fn buffer(&mut self) -> Option<&mut [u8]>;
}

impl Target for () {
    fn place(&mut self, m: Message<'_>, then: &mut dyn FnMut(Message<'_>)) -> Option<usize> {
        then(m);
        None
    }

    fn buffer(&mut self) -> Option<&mut [u8]> {
        None
    }
}

impl Target for &mut [u8] {
    fn place(&mut self, m: Message<'_>, then: &mut dyn FnMut(Message<'_>)) -> Option<usize> {
        let len = m.len();
        match self.get_mut(..len) {
            Some(room) => {
                room.copy_from_slice(&m);
                m.recycle(KEEP_INTO_BUFFER);
                Some(len)
            }
            None => {
                then(m);
                None
            }
        }
    }

    fn buffer(&mut self) -> Option<&mut [u8]> {
        Some(self)
    }
}

/// A message assembled straight into the caller's buffer (`recv_into`),
/// moved into a vector of its own once it outgrows the buffer: it is then
/// kept for the next receive, as Python keeps a message too long for
/// `recv_bytes_into`'s buffer.
struct IntoSlice<'a> {
    buf: &'a mut [u8],
    /// Bytes assembled in `buf`, until it `spilled`.
    len: usize,
    /// The whole message so far, once `spilled`.
    spill: Vec<u8>,
    spilled: bool,
}

impl IntoSlice<'_> {
    /// What was assembled, as a vector of its own.
    fn into_vec(mut self) -> Vec<u8> {
        if !self.spilled {
            self.spill.clear();
            self.spill.extend_from_slice(&self.buf[..self.len]);
        }
        self.spill
    }
}

impl Sink for IntoSlice<'_> {
    fn len(&self) -> usize {
        if self.spilled {
            self.spill.len()
        } else {
            self.len
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
        self.spilled = false;
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !self.spilled {
            let end = self.len.saturating_add(bytes.len());
            if let Some(room) = self.buf.get_mut(self.len..end) {
                room.copy_from_slice(bytes);
                self.len = end;
                return;
            }
            self.spill.clear();
            self.spill.extend_from_slice(&self.buf[..self.len]);
            self.spilled = true;
        }
        self.spill.extend_from_slice(bytes);
    }
}

fn not_delivered() -> Error {
    Error::new(ErrorKind::Corrupt, "a message was taken and not delivered")
}

fn send_error(e: SendError) -> Error {
    match e {
        SendError::Timeout => Error::timeout(),
        SendError::Disconnected => disconnected(),
    }
}

fn recv_error(e: RecvError) -> Error {
    match e {
        RecvError::Timeout => Error::timeout(),
        RecvError::Disconnected => disconnected(),
        RecvError::TooLarge => Error::new(
            ErrorKind::TooLarge,
            format!("a message over {MAX_MESSAGE} bytes was skipped"),
        ),
        RecvError::Corrupt => Error::new(ErrorKind::Corrupt, "the ring holds a malformed frame"),
    }
}

fn too_large(len: usize) -> Error {
    Error::new(ErrorKind::TooLarge, format!("a message of {len} bytes is over {MAX_MESSAGE}"))
}

/// How a closure run for the caller inside a ring call ended badly: its
/// error, or its panic (resumed once the side's lock is released).
enum Failure {
    Error(Error),
    Panic(Box<dyn std::any::Any + Send>),
}

impl Failure {
    fn resume(self) -> Error {
        match self {
            Failure::Error(e) => e,
            Failure::Panic(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Runs `f`, catching its panic.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(Failure::Panic)
}

impl Link<'_> {
    /// Runs `send` holding the send side's lock, with the sender's state;
    /// counts a message if it returns `Ok(true)` (one was published).
    fn sending(
        &self,
        deadline: Deadline,
        send: impl FnOnce(&mut Writer) -> Result<bool>,
    ) -> Result<bool> {
        let side = &self.channel.sender;
        let me = ident::thread();
        let how = side.lock.lock(&Os, me, deadline.core())?;
        let mut w = side.writer();
        if self.batched {
            w.batch_waits();
        }
        if how == Acquired::OwnerDied {
            // The previous holder may have died inside a message.
            w.abort_pending();
        }
        let result = send(&mut w);
        if let Ok(true) = result {
            side.count_message();
        }
        side.store_writer(&w);
        let _ = side.lock.unlock(&Os, me);
        result
    }

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
            return Err(too_large(len));
        }
        let side = &self.channel.sender;
        self.sending(deadline, |w| {
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
            let mut producer = self.channel.ring.producer(&Os, &self.data, w);
            producer.send(msg, deadline.core(), connected).map_err(send_error)?;
            Ok(true)
        })
        .map(drop)
    }

    /// Holding the send side's lock, lends `len` bytes of ring (one frame,
    /// `len` at most [`max_frame_payload`]) to `fill`, and publishes them
    /// if it returns `Ok`. Its error, or its panic (resumed once the lock is
    /// released), publishes nothing.
    fn send_in_place(
        &self,
        len: usize,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let mut failed = None;
        let sent = self.sending(deadline, |w| {
            let mut producer = self.channel.ring.producer(&Os, &self.data, w);
            let fill = |buf: &mut [u8]| match guarded(|| fill(buf)) {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    failed = Some(Failure::Error(e));
                    false
                }
                Err(panic) => {
                    failed = Some(panic);
                    false
                }
            };
            producer.send_in_place(len, deadline.core(), connected, fill).map_err(send_error)
        });
        match failed {
            Some(failure) => Err(failure.resume()),
            None => sent.map(drop),
        }
    }

    /// Sends a message of `len` bytes that `fill` writes: in place in the
    /// ring when it fits one frame, into this thread's buffer and then
    /// sent otherwise. A panic in `fill` sends nothing.
    pub(crate) fn send_with<R>(
        &self,
        len: usize,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        if len > max_frame_payload(self.data.len) {
            if len > MAX_MESSAGE {
                return Err(too_large(len));
            }
            let mut buf = SEND_BUF.with(Cell::take);
            buf.clear();
            buf.resize(len, 0);
            let out = fill(&mut buf);
            let sent = self.send(Outgoing::Bytes(&buf), deadline, connected);
            recycle(&SEND_BUF, buf);
            return sent.map(|()| out);
        }
        let mut out = None;
        self.send_in_place(len, deadline, connected, |buf| {
            out = Some(fill(buf));
            Ok(())
        })?;
        out.ok_or_else(|| Error::new(ErrorKind::Corrupt, "the frame was published unfilled"))
    }

    /// Sends `value` as a typed message: serialized straight into the ring
    /// when it carries no handles and fits one frame, through this
    /// thread's buffer otherwise. A first pass sizes it and finds the
    /// handles inside it (no bytes are written by that pass).
    pub(crate) fn send_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
    ) -> Result<()> {
        let (size, fds) = handles::measure(|| {
            postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        });
        let size = size.map_err(|e| Error::codec("serializing a message", e))?;
        let len = size.saturating_add(typed_header_len(0));
        if !fds.is_empty() || len > max_frame_payload(self.data.len) {
            return encoded(value, |out| self.send(out, deadline, connected));
        }
        self.send_in_place(len, deadline, connected, |buf| {
            let (count, payload) = buf.split_at_mut(typed_header_len(0));
            count.copy_from_slice(&0u32.to_le_bytes());
            match postcard::to_slice(value, payload) {
                Ok(written) if written.len() == size => Ok(()),
                Ok(_) => Err(Error::new(
                    ErrorKind::Codec,
                    "serializing a message: the value changed size between two passes",
                )),
                Err(e) => Err(Error::codec("serializing a message", e)),
            }
        })
    }

    /// Receives one message and hands it to `then`, holding the receive
    /// side's lock (so that the handles that came with it are taken in
    /// order): lent where it lies when it is one frame, assembled in this
    /// thread's receive buffer otherwise. The message is taken whatever
    /// `then` returns; a panic in `then` goes on once the lock is released.
    pub(crate) fn recv<R>(
        &self,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        then: impl FnOnce(Message<'_>) -> Result<R>,
    ) -> Result<R> {
        self.receive(stash, deadline, connected, &mut (), then, |_| Err(not_delivered()))
    }

    /// [`recv`](Self::recv), placing the message in `target` instead when
    /// it takes it ([`Target`]): then `placed` is told its length.
    fn receive<R>(
        &self,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        target: &mut impl Target,
        then: impl FnOnce(Message<'_>) -> Result<R>,
        placed: impl FnOnce(usize) -> Result<R>,
    ) -> Result<R> {
        let me = ident::thread();
        let how = self.channel.receiver.lock.lock(&Os, me, deadline.core())?;
        self.receive_as(how, me, stash, deadline, connected, target, then, placed)
    }

    /// [`receive`](Self::receive) once the receive side's lock is taken
    /// (by `me`, `how`); releases it.
    #[allow(clippy::too_many_arguments)]
    fn receive_as<R>(
        &self,
        how: Acquired,
        me: multiproc_core::lock::Owner,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        target: &mut impl Target,
        then: impl FnOnce(Message<'_>) -> Result<R>,
        placed: impl FnOnce(usize) -> Result<R>,
    ) -> Result<R> {
        let side = &self.channel.receiver;
        let mut then = Some(then);
        let mut outcome = None;
        let got = self.take_message(stash, how, deadline, connected, target, &mut |message| {
            if let Some(then) = then.take() {
                outcome = Some(guarded(|| then(message)));
            }
        });
        let _ = side.lock.unlock(&Os, me);
        if let Some(len) = got? {
            return placed(len);
        }
        match outcome {
            Some(Ok(result)) => result,
            Some(Err(failure)) => Err(failure.resume()),
            None => Err(not_delivered()),
        }
    }

    /// Receives one typed message and decodes it. Its bytes are copied out
    /// of shared memory first: the decoder reads them more than once, and
    /// must see the same bytes each time, whatever a peer does.
    pub(crate) fn recv_value<T: DeserializeOwned>(
        &self,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
    ) -> Result<T> {
        self.recv(stash, deadline, connected, |m| {
            let buf = match m {
                Message::Lent(bytes) => {
                    let mut buf = RECV_BUF.with(Cell::take);
                    buf.extend_from_slice(bytes);
                    buf
                }
                Message::Owned(buf) => buf,
            };
            let value = self.decode(&buf);
            recycle(&RECV_BUF, buf);
            value
        })
    }

    /// Receives one message into the caller's `buf` (its length), straight
    /// from the ring: one copy, whether it lies in one frame or comes in
    /// fragments (assembled in `buf`: a 16 MiB stream went from 6.3 to 9.9
    /// GB/s against a copy through this thread's buffer). A message longer
    /// than `buf` is kept for the next receive and `TooLarge` returned; a
    /// receive that times out inside a message keeps what it has.
    pub(crate) fn recv_into(
        &self,
        buf: &mut [u8],
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
    ) -> Result<usize> {
        let room = buf.len();
        // Only a message that does not fit is handed on.
        let too_large = |m: Message<'_>| {
            let len = m.len();
            stash.keep(m.into_vec());
            Err(Error::new(
                ErrorKind::TooLarge,
                format!("buffer of {room} bytes too short for a message of {len}"),
            ))
        };
        self.receive(stash, deadline, connected, &mut { buf }, too_large, Ok)
    }

    /// Receives one message and lends its bytes to `read`: where they lie
    /// in the ring when the message is one frame.
    pub(crate) fn recv_with<R>(
        &self,
        stash: &Stash,
        deadline: Deadline,
        connected: impl FnMut() -> bool,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.recv(stash, deadline, connected, |m| {
            let out = read(&m);
            m.recycle(KEEP_BUFFER);
            Ok(out)
        })
    }

    /// Holding the receive side's lock: takes one message (a kept one
    /// first) and hands it to `then`, in place when it lies in one frame.
    /// A message `target` takes is not handed to `then`; its length is
    /// returned.
    fn take_message(
        &self,
        stash: &Stash,
        how: Acquired,
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
        target: &mut impl Target,
        then: &mut dyn FnMut(Message<'_>),
    ) -> Result<Option<usize>> {
        let side = &self.channel.receiver;
        let kept = stash.take();
        if let Some(message) = kept.complete {
            return Ok(target.place(Message::Owned(message), then));
        }
        let mut r = side.reader();
        if self.batched {
            r.batch_polls();
        }
        if how == Acquired::OwnerDied {
            // The previous holder may have died inside a message.
            r.resync();
        }
        let mut consumer = self.channel.ring.consumer(&Os, &self.data, &mut r);
        let mut got = Ok(false);
        let mut placed = None;
        let fresh = kept.partial.is_empty() && !consumer.in_message();
        if fresh {
            got = consumer.recv_in_place(deadline.core(), &mut connected, |bytes| {
                placed = target.place(Message::Lent(bytes), then)
            });
        }
        let buffer = if fresh && got == Ok(false) { target.buffer() } else { None };
        if let Some(buf) = buffer {
            // In fragments: assembled straight into the caller's buffer.
            let (outcome, len, spilled) =
                assemble_into(&mut consumer, buf, stash, deadline, connected);
            got = outcome;
            if let Some(message) = spilled {
                then(Message::Owned(message));
            }
            placed = len;
        } else if let Ok(false) = got {
            let mut out =
                if kept.partial.is_empty() { RECV_BUF.with(Cell::take) } else { kept.partial };
            if consumer.in_message() && out.is_empty() {
                // Another holder timed out inside this message: its start
                // is not here, so the rest is skipped.
                consumer.skip_message();
            }
            got = consumer.recv(&mut out, MAX_MESSAGE, deadline.core(), connected).map(|()| true);
            match got {
                Ok(_) => placed = target.place(Message::Owned(out), then),
                Err(RecvError::Timeout) if consumer.in_message() => {
                    stash.update(|k| k.partial = out);
                }
                Err(_) => recycle(&RECV_BUF, out),
            }
        }
        if got.is_ok() {
            side.count_message();
        }
        side.store_reader(&r);
        got.map(|_| placed).map_err(recv_error)
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
    handles::collect_then(
        || postcard::to_extend(value, buf),
        |bytes, fds| {
            let mut buf = bytes.map_err(|e| Error::codec("serializing a message", e))?;
            // The header sits right before the payload: 12 bytes with
            // handles, 4 (at offset 8) without.
            let start = 12 - typed_header_len(fds.len());
            let count = u32::try_from(fds.len())
                .map_err(|_| Error::new(ErrorKind::TooLarge, "too many handles in one message"))?;
            buf[start..start + 4].copy_from_slice(&count.to_le_bytes());
            let sent = send(Outgoing::Typed { message: &mut buf[start..], fds });
            recycle(&SEND_BUF, buf);
            sent
        },
    )
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

/// A typed message encoded for an async send: its bytes (from `start`),
/// the handles of the objects inside it (borrowed from the value, which
/// outlives the send), and the references taken for its receiver.
#[cfg(mp_async)]
pub(crate) struct Encoded {
    buf: Vec<u8>,
    start: usize,
    fds: Vec<RawHandle>,
    taken: handles::Taken,
}

#[cfg(mp_async)]
impl Encoded {
    pub(crate) fn new<T: Serialize + ?Sized>(value: &T) -> Result<Encoded> {
        let (bytes, fds, taken) =
            handles::collect_guarded(|| postcard::to_extend(value, vec![0; 12]));
        let mut buf = bytes.map_err(|e| Error::codec("serializing a message", e))?;
        let start = 12 - typed_header_len(fds.len());
        let count = u32::try_from(fds.len())
            .map_err(|_| Error::new(ErrorKind::TooLarge, "too many handles in one message"))?;
        buf[start..start + 4].copy_from_slice(&count.to_le_bytes());
        Ok(Encoded { buf, start, fds, taken })
    }
}

/// The async forms of a [`Link`] (see `aio.rs`): each attempt takes the
/// side's lock without waiting; a receive gives it back after every
/// attempt (a message it was in the middle of is kept in the stash, as a
/// timed-out blocking receive keeps it), a send keeps it until the
/// message is whole in the ring (a long one goes in as the consumer makes
/// room) and, dropped before that, withdraws what it sent.
#[cfg(mp_async)]
impl Link<'_> {
    /// Receives one message and hands it to `then`. `bell`: the channel's
    /// readiness handle; `hangup`: a link whose hang-up means the peer went.
    pub(crate) async fn recv_async<R>(
        &self,
        stash: &Stash,
        ready: Option<crate::os::ready::Ready<'_>>,
        hangup: Option<BorrowedHandle<'_>>,
        mut connected: impl FnMut() -> bool,
        then: impl FnOnce(Message<'_>) -> Result<R>,
    ) -> Result<R> {
        use crate::aio::{register, until, Step};
        let (side, ring) = (&self.channel.receiver, &self.channel.ring);
        let registration = || {
            let data = register(ring.register_async(&Os, true), || ring.unregister_async(true))?;
            let lock = register(side.lock.register_async(&Os), || side.lock.unregister_async())?;
            Ok((data, lock))
        };
        let mut then = Some(then);
        let mut in_transition = 0;
        until(ready, hangup, registration, |check| {
            let me = ident::thread();
            let how = match take_side(&side.lock, me, check, false, &mut in_transition) {
                Ok(Some(how)) => how,
                Ok(None) => return Step::Contended,
                Err(e) => return Step::Done(Err(e)),
            };
            let deliver = |m: Message<'_>| match then.take() {
                Some(then) => then(m),
                None => Err(not_delivered()),
            };
            // The peer's liveness costs a system call: asked at the checks
            // (a hang-up seen, the periodic tick), not at every attempt.
            let got = self.receive_as(
                how,
                me,
                stash,
                Deadline::now(),
                || !check || connected(),
                &mut (),
                deliver,
                |_| Err(not_delivered()),
            );
            match got {
                Err(e) if e.kind() == ErrorKind::Timeout => Step::Wait,
                got => Step::Done(got),
            }
        })
        .await
    }

    /// Receives one typed message and decodes it (as [`recv_value`](Self::recv_value)).
    pub(crate) async fn recv_value_async<T: DeserializeOwned>(
        &self,
        stash: &Stash,
        ready: Option<crate::os::ready::Ready<'_>>,
        hangup: Option<BorrowedHandle<'_>>,
        connected: impl FnMut() -> bool,
    ) -> Result<T> {
        self.recv_async(stash, ready, hangup, connected, |m| {
            let buf = m.into_vec();
            self.decode(&buf)
        })
        .await
    }

    /// Sends `message` (a typed one's handles first), holding the send
    /// side from the first frame to the last.
    pub(crate) async fn send_async(
        &self,
        out: Outgoing<'_>,
        ready: Option<crate::os::ready::Ready<'_>>,
        hangup: Option<BorrowedHandle<'_>>,
        mut connected: impl FnMut() -> bool,
    ) -> Result<()> {
        use crate::aio::{register, until, Step};
        let (mut out, fds) = match out {
            Outgoing::Bytes(bytes) => (Outgoing::Bytes(bytes), &[][..]),
            Outgoing::Typed { message, fds } => (Outgoing::Typed { message, fds: &[] }, fds),
        };
        let len = match &out {
            Outgoing::Bytes(b) => b.len(),
            Outgoing::Typed { message, .. } => message.len(),
        };
        if len > MAX_MESSAGE {
            return Err(too_large(len));
        }
        let (side, ring) = (&self.channel.sender, &self.channel.ring);
        let registration = || {
            let space = register(ring.register_async(&Os, false), || ring.unregister_async(false))?;
            let lock = register(side.lock.register_async(&Os), || side.lock.unregister_async())?;
            Ok((space, lock))
        };
        // A message of one frame goes in whole or not at all: its sender
        // never holds the side across an await, and may take it by the
        // thread's fast path. A longer one holds it from its first frame
        // to its last, across awaits, and so does one with handles, from
        // its batch to its frame (a batch another message overtook would
        // be taken for one left behind).
        let suspending = !fds.is_empty() || len > max_frame_payload(self.data.len);
        let mut holding: Option<Holding<'_>> = None;
        let mut fds_sent = fds.is_empty();
        let mut in_transition = 0;
        until(ready, hangup, registration, |check| {
            let held = match &mut holding {
                Some(held) => held,
                None => {
                    // Held across awaits: never by the thread's fast path
                    // (another task of this thread would take it too).
                    let me = ident::thread();
                    let taken = take_side(&side.lock, me, check, suspending, &mut in_transition);
                    let how = match taken {
                        Ok(Some(how)) => how,
                        Ok(None) => return Step::Contended,
                        Err(e) => return Step::Done(Err(e)),
                    };
                    let mut w = side.writer();
                    if self.batched {
                        w.batch_waits();
                    }
                    if how == Acquired::OwnerDied {
                        w.abort_pending();
                    }
                    holding.insert(Holding { side, me, w, sent: 0 })
                }
            };
            if !fds_sent {
                let tag = side.next_batch();
                if let Outgoing::Typed { message, .. } = &mut out {
                    message[4..12].copy_from_slice(&tag.to_le_bytes());
                }
                if let Err(e) = send_handles(self.fds_out, fds, tag) {
                    return Step::Done(Err(e));
                }
                fds_sent = true;
            }
            let message: &[u8] = match &out {
                Outgoing::Bytes(b) => b,
                Outgoing::Typed { message, .. } => message,
            };
            let mut producer = ring.producer(&Os, &self.data, &mut held.w);
            let alive = || !check || connected();
            let sent = producer.send_part(message, &mut held.sent, Deadline::now().core(), alive);
            match sent {
                Ok(()) => {
                    side.count_message();
                    held.sent = 0;
                    holding = None;
                    Step::Done(Ok(()))
                }
                Err(SendError::Timeout) => {
                    if !suspending {
                        // Nothing of it is in: let the side go while waiting.
                        debug_assert_eq!(held.sent, 0);
                        holding = None;
                    }
                    Step::Wait
                }
                Err(e) => Step::Done(Err(send_error(e))),
            }
        })
        .await
    }

    /// Sends a typed message [`Encoded`] for it; the references taken for
    /// its receiver are kept once it is sent, given back otherwise.
    pub(crate) async fn send_encoded_async(
        &self,
        mut encoded: Encoded,
        ready: Option<crate::os::ready::Ready<'_>>,
        hangup: Option<BorrowedHandle<'_>>,
        connected: impl FnMut() -> bool,
    ) -> Result<()> {
        let message = &mut encoded.buf[encoded.start..];
        let out = Outgoing::Typed { message, fds: &encoded.fds };
        self.send_async(out, ready, hangup, connected).await?;
        encoded.taken.keep();
        Ok(())
    }
}

/// Takes a side's lock for one async attempt without waiting: `Ok(None)`
/// if it is held (by a live holder, when `check` looks). `suspending`: it
/// is held across awaits (see `BiasedLock::lock_suspending`).
#[cfg(mp_async)]
fn take_side(
    lock: &multiproc_core::bias::BiasedLock,
    me: multiproc_core::lock::Owner,
    check: bool,
    suspending: bool,
    in_transition: &mut u32,
) -> Result<Option<Acquired>> {
    if check {
        return Ok(lock.recover(&Os, me, suspending, in_transition));
    }
    let taken = if suspending {
        lock.lock_suspending(&Os, me, Deadline::now().core())
    } else {
        lock.lock(&Os, me, Deadline::now().core())
    };
    match taken {
        Ok(how) => Ok(Some(how)),
        Err(multiproc_core::Error::Timeout) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An async send's hold on the send side, between its awaits: dropped
/// (the future ended or was dropped), it withdraws a message half sent
/// and releases the side.
#[cfg(mp_async)]
struct Holding<'a> {
    side: &'a multiproc_core::ring::spsc::Endpoint,
    me: multiproc_core::lock::Owner,
    w: Writer,
    /// Bytes of the message in the ring so far.
    sent: usize,
}

#[cfg(mp_async)]
impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if self.sent > 0 {
            self.w.abort_pending();
        }
        self.side.store_writer(&self.w);
        let _ = self.side.lock.unlock(&Os, self.me);
    }
}
