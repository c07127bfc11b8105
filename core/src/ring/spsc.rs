//! SPSC byte ring: one producer, one consumer, variable-length messages
//! (the index scheme of rtrb and io_uring's rings: monotonic byte counters,
//! each side caching the other's).
//!
//! # Frames
//! Every frame starts 8-byte aligned with an 8-byte header, `len: u32` (LE)
//! then `flags: u32` (LE), and takes `8 + align8(len)` bytes. A frame never
//! wraps: when it does not fit before the end of the buffer, the producer
//! first writes a `PAD` frame covering the rest. A message larger than
//! [`max_frame_payload`] is cut into fragments, `FIRST` … `LAST` (a small
//! one is a single `FIRST | LAST` frame), so any size goes through any
//! capacity, streamed. A producer whose send timed out mid-message writes an
//! `ABORT` frame before anything else, and the consumer drops the fragments.
//!
//! # In place
//! Because a frame never wraps, a message of one frame is contiguous:
//! [`Producer::send_in_place`] lends its room to the caller to fill before
//! `tail` publishes it, and [`Consumer::recv_in_place`] lends a published
//! one to the caller before `head` releases it. Nothing else changes: a
//! producer that dies while filling has published nothing.
//!
//! # Trust
//! The consumer validates every header against what was published (sizes,
//! flags, fragment order, indices): a hostile or corrupted producer gets
//! [`RecvError::Corrupt`], never an out-of-bounds access or a hang. Lengths
//! are never used to allocate ahead: a message grows as its fragments arrive,
//! up to the caller's limit ([`RecvError::TooLarge`]).
//!
//! # Waiting
//! Each direction of waking is a `Signal` on its own cache line: a futex
//! word and a count of waiters, which lets the other side skip the wake
//! system call when nobody parks. The waker's publish and its read of the
//! count, and the waiter's registration and its re-check, are split by the
//! two halves of an asymmetric barrier ([`Park::light_barrier`] on the
//! fast path, [`Park::heavy_barrier`] before parking).
//!
//! # Layout of the code
//! The frame codec is `frame.rs`, the waiting policy `wait.rs`. A call on
//! the ring works through a [`Producer`] or a [`Consumer`]: the ring, the
//! OS's services, the data area and the side's cached state, together for
//! the length of the call.

use super::frame::*;
use super::wait::{Signal, SpinPace, BACKOFF_BUDGET, BATCH_PACE, FIRST_PACE};
pub use super::wait::Waiting;
use super::{Bytes, CachePadded};
use crate::park::{park_slice, Deadline, Liveness, Park};
use crate::sync::{AtomicU32, AtomicU64, Ordering, SpinBudget, SPIN_LIMIT};

/// Where a receiving [`Endpoint`]'s `flags` keep its [`SpinBudget`].
const SPIN_SHIFT: u32 = 8;
const _: () = assert!(SPIN_SHIFT + SpinBudget::BITS <= 32);

pub use super::frame::{max_frame_payload, valid_capacity, MIN_CAPACITY};

/// `closed` bit: the producer side closed.
const PRODUCER_CLOSED: u32 = 1;
/// `closed` bit: the consumer side closed.
const CONSUMER_CLOSED: u32 = 2;

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The deadline passed (part of a long message may be in the ring; it
    /// is withdrawn by the next send).
    Timeout,
    /// The consumer closed or is gone.
    Disconnected,
}

/// Why a receive failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The deadline passed; a message in progress stays for the next call.
    Timeout,
    /// The producer closed or is gone, and everything it sent was received.
    Disconnected,
    /// The message is over the caller's limit; its rest is skipped.
    TooLarge,
    /// The ring holds something no producer of ours writes.
    Corrupt,
}

/// Bytes a producer found full waits for beyond its frame while it spins,
/// so that it then writes many frames without reading `head` again.
const SLACK: usize = 4096;

/// The producer's private state.
#[derive(Debug, Default)]
pub struct Writer {
    /// `head` as last read: the space up to it is known free.
    cached_head: u64,
    /// A message was cut short by a timeout: write `ABORT` first.
    must_abort: bool,
    /// Yield the CPU while waiting for space (this call's choice, as
    /// [`Reader::batched`]; not stored in the [`Endpoint`]).
    batched: bool,
}

/// The consumer's private state.
#[derive(Debug, Default)]
pub struct Reader {
    /// `tail` as last read: the frames up to it are known published.
    cached_tail: u64,
    /// Inside a message (its `FIRST` was taken, not yet its `LAST`).
    assembling: bool,
    /// Skipping the rest of a message over the limit.
    skipping: bool,
    /// Lost track (a holder died mid-message): skip to the next `FIRST`.
    resync: bool,
    /// Look for data every [`BATCH_PACE`] pauses, not at every pause, and
    /// yield the CPU between looks once the first pauses are spent
    /// (this call's choice; not stored in the [`Endpoint`]).
    batched: bool,
    /// How long a wait for data spins before it parks, learnt from this
    /// side's recent waits.
    /// ([`SpinBudget::to_bits`]: decoded only when a call waits).
    spin: u32,
}

/// The control block of an SPSC ring. All zeros is an empty, open ring.
/// Index arithmetic wraps: a hostile peer may set any index.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SpscRing {
    /// Bytes published by the producer, ever (the write position is
    /// `tail % capacity`). Written by the producer only.
    tail: CachePadded<AtomicU64>,
    /// Bytes consumed, ever. Written by the consumer only. `head <= tail <=
    /// head + capacity` in a sane ring; anything else is corrupt.
    head: CachePadded<AtomicU64>,
    /// What the consumer parks on. The producer reads `consumer_waiting`
    /// with an RMW after every publish, so this line lives in the
    /// producer's cache until the consumer parks.
    to_consumer: CachePadded<Signal>,
    /// What the producer parks on; the mirror image of `to_consumer`.
    to_producer: CachePadded<Signal>,
    /// `PRODUCER_CLOSED | CONSUMER_CLOSED`: read often, written once.
    closed: CachePadded<AtomicU32>,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(SpscRing, [u8; 320]);

impl SpscRing {
    /// An empty ring (all indices zero).
    pub fn new() -> SpscRing {
        SpscRing::default()
    }

    /// A ring whose indices are whatever a fuzzer says.
    #[cfg(any(fuzzing, test))]
    pub fn from_indices(head: u64, tail: u64) -> SpscRing {
        let ring = SpscRing::default();
        ring.head.store(head, Ordering::Relaxed);
        ring.tail.store(tail, Ordering::Relaxed);
        ring
    }

    /// The producer's side for one call: sends go through it.
    pub fn producer<'a, O, B>(
        &'a self,
        os: &'a O,
        data: &'a B,
        writer: &'a mut Writer,
    ) -> Producer<'a, O, B> {
        Producer { ring: self, os, data, w: writer }
    }

    /// The consumer's side for one call: receives go through it.
    pub fn consumer<'a, O, B>(
        &'a self,
        os: &'a O,
        data: &'a B,
        reader: &'a mut Reader,
    ) -> Consumer<'a, O, B> {
        Consumer { ring: self, os, data, r: reader }
    }

    /// The producer closes: the consumer gets what was sent, then
    /// `Disconnected`.
    pub fn close_producer<P: Park>(&self, park: &P) {
        self.closed.fetch_or(PRODUCER_CLOSED, Ordering::SeqCst);
        self.to_consumer.notify_closed(park);
    }

    /// The consumer closes: the producer's sends fail with `Disconnected`.
    pub fn close_consumer<P: Park>(&self, park: &P) {
        self.closed.fetch_or(CONSUMER_CLOSED, Ordering::SeqCst);
        self.to_producer.notify_closed(park);
    }

    /// Registers an async waiter for data (`for_data`) or for space: a
    /// publish (or a consume) from here on calls [`Park::notify_async`] on
    /// the park it is given, until [`unregister_async`](Self::unregister_async).
    /// The caller then tries again, and awaits the readiness handle only
    /// if that fails. `false` (nothing registered) if the count is full.
    pub fn register_async<P: Park>(&self, park: &P, for_data: bool) -> bool {
        self.signal(for_data).register_async(park)
    }

    /// Unregisters what [`register_async`](Self::register_async) registered.
    pub fn unregister_async(&self, for_data: bool) {
        self.signal(for_data).unregister_async();
    }

    fn signal(&self, for_data: bool) -> &Signal {
        if for_data {
            &self.to_consumer
        } else {
            &self.to_producer
        }
    }

    /// Waits until a frame is published (`Ok`), the producer is gone and
    /// nothing is left (`Disconnected`), or `deadline` passes (`Timeout`).
    pub fn wait_for_data<O: Park + Liveness>(
        &self,
        os: &O,
        deadline: Deadline,
        connected: &mut impl FnMut() -> bool,
        waiting: &mut Waiting,
    ) -> Result<(), RecvError> {
        loop {
            if self.has_data() {
                return Ok(());
            }
            if self.closed() & PRODUCER_CLOSED != 0 {
                return if self.has_data() { Ok(()) } else { Err(RecvError::Disconnected) };
            }
            if waiting.spin(os, SpinPace::Steady) {
                continue;
            }
            if deadline.passed(os) {
                // Nothing to park for: skip registering (and its barrier).
                return if self.has_data() {
                    Ok(())
                } else if O::CHECKS && !connected() {
                    Err(RecvError::Disconnected)
                } else {
                    Err(RecvError::Timeout)
                };
            }
            let seq = self.to_consumer.register(os);
            let ready = self.tail.load(Ordering::Acquire) != self.head.load(Ordering::Relaxed)
                || self.closed() & PRODUCER_CLOSED != 0;
            let timed_out = !ready && !park_slice(os, &self.to_consumer.seq, seq, deadline);
            self.to_consumer.unregister();
            if O::CHECKS
                && (timed_out || waiting.check_due(os, O::CHECK_INTERVAL))
                && !connected()
                && !self.has_data()
            {
                return Err(RecvError::Disconnected);
            }
            if timed_out {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// Bytes published and not yet consumed (at most `capacity` in a sane
    /// ring; clamped so a corrupted one reads as full, not as more).
    pub fn used(&self, capacity: usize) -> usize {
        let used =
            self.tail.load(Ordering::Acquire).wrapping_sub(self.head.load(Ordering::Acquire));
        used.min(capacity as u64) as usize
    }

    /// Whether a frame is published and not yet taken.
    pub fn has_data(&self) -> bool {
        self.tail.load(Ordering::Acquire) != self.head.load(Ordering::Relaxed)
    }

    fn closed(&self) -> u32 {
        self.closed.load(Ordering::SeqCst)
    }
}

/// The producer's side of a ring for one call: the ring, the OS's
/// services, the data area, and the producer's state.
pub struct Producer<'a, O, B> {
    ring: &'a SpscRing,
    os: &'a O,
    data: &'a B,
    w: &'a mut Writer,
}

impl<O: Park + Liveness, B: Bytes> Producer<'_, O, B> {
    /// Sends `msg` whole, fragmenting it if needed, waiting for space until
    /// `deadline`. `connected` is asked, while waiting, whether the consumer
    /// still exists (at [`Liveness::CHECK_INTERVAL`]).
    pub fn send(
        &mut self,
        msg: &[u8],
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
    ) -> Result<(), SendError> {
        let max = max_frame_payload(self.data.len());
        self.withdraw_if_cut(deadline, &mut connected)?;
        let mut chunks = msg.chunks(max).peekable();
        let mut flags = FIRST;
        if chunks.peek().is_none() {
            return self.wait_write(copy(&[]), FIRST | LAST, deadline, &mut connected).map(drop);
        }
        while let Some(chunk) = chunks.next() {
            if chunks.peek().is_none() {
                flags |= LAST;
            }
            if let Err(e) = self.wait_write(copy(chunk), flags, deadline, &mut connected) {
                self.w.must_abort = flags & FIRST == 0;
                return Err(e);
            }
            flags = 0;
        }
        Ok(())
    }

    /// Sends what is left of `msg` from `*sent` on (0: all of it), as
    /// [`send`](Self::send) does, but resumable: a deadline that passes
    /// inside the message leaves it open, with `*sent` at the first byte
    /// not yet in the ring, for a later call (of the same holder of the
    /// send side) to go on from. A caller that gives up on it instead
    /// calls [`Writer::abort_pending`], so that it is withdrawn.
    pub fn send_part(
        &mut self,
        msg: &[u8],
        sent: &mut usize,
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
    ) -> Result<(), SendError> {
        let max = max_frame_payload(self.data.len());
        if *sent == 0 {
            self.withdraw_if_cut(deadline, &mut connected)?;
            if msg.is_empty() {
                return self.wait_write(copy(&[]), FIRST | LAST, deadline, &mut connected).map(drop);
            }
        }
        while *sent < msg.len() {
            let chunk = &msg[*sent..msg.len().min(*sent + max)];
            let mut flags = if *sent == 0 { FIRST } else { 0 };
            if *sent + chunk.len() == msg.len() {
                flags |= LAST;
            }
            self.wait_write(copy(chunk), flags, deadline, &mut connected)?;
            *sent += chunk.len();
        }
        Ok(())
    }

    /// Sends one message of `len` bytes (at most [`max_frame_payload`])
    /// written in place: waits for room for it as one frame, lends that
    /// room to `fill`, and publishes the frame if `fill` returns `true`
    /// (`Ok(true)`). If it returns `false`, nothing is published
    /// (`Ok(false)`). Until the frame is published the consumer cannot see
    /// any of it, so a producer that dies inside `fill` leaves nothing torn.
    /// The room holds whatever the ring held before: `fill` writes it all.
    pub fn send_in_place(
        &mut self,
        len: usize,
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<bool, SendError> {
        debug_assert!(len <= max_frame_payload(self.data.len()));
        self.withdraw_if_cut(deadline, &mut connected)?;
        self.wait_write(Payload::Fill(len, fill), FIRST | LAST, deadline, &mut connected)
    }

    /// A message cut short by a timeout or a dead holder: withdraws it
    /// (an `ABORT` frame) before anything else is sent.
    fn withdraw_if_cut(
        &mut self,
        deadline: Deadline,
        connected: &mut impl FnMut() -> bool,
    ) -> Result<(), SendError> {
        if self.w.must_abort {
            self.wait_write(copy(&[]), ABORT, deadline, connected)?;
            self.w.must_abort = false;
        }
        Ok(())
    }

    /// Writes one frame, waiting for space until `deadline`; whether it
    /// was published (a [`Payload::Fill`] may decline).
    fn wait_write<F: FnOnce(&mut [u8]) -> bool>(
        &mut self,
        payload: Payload<'_, F>,
        flags: u32,
        deadline: Deadline,
        connected: &mut impl FnMut() -> bool,
    ) -> Result<bool, SendError> {
        let (ring, os) = (self.ring, self.os);
        let len = payload.len();
        let mut payload = Some(payload);
        // A consumer draining a full ring frees `SLACK` in tens of µs:
        // spin that long rather than park and be woken per frame.
        let mut waiting = Waiting::with_budget(os, deadline, SPIN_LIMIT * BACKOFF_BUDGET);
        waiting.pace = FIRST_PACE;
        waiting.yields = self.w.batched;
        // Found full: while spinning, wait for some slack as well, so that
        // the producer then writes many frames without reading `head`
        // (each read pulls its line from the consumer's core, and a
        // producer that reads it per frame pays that per message).
        let mut slack = 0;
        loop {
            if ring.closed() & CONSUMER_CLOSED != 0 {
                return Err(SendError::Disconnected);
            }
            if let Some(published) = self.try_write(len, &mut payload, flags, slack) {
                return Ok(published);
            }
            if waiting.spin(os, SpinPace::Backoff) {
                slack = SLACK.min(self.data.len() / 8);
                continue;
            }
            slack = 0;
            if deadline.passed(os) {
                // Nothing to park for: skip registering (and its barrier).
                return if let Some(published) = self.try_write(len, &mut payload, flags, 0) {
                    Ok(published)
                } else if O::CHECKS && !connected() {
                    Err(SendError::Disconnected)
                } else {
                    Err(SendError::Timeout)
                };
            }
            let seq = ring.to_producer.register(os);
            let outcome = if let Some(published) = self.try_write(len, &mut payload, flags, 0) {
                Some(Ok(published))
            } else if park_slice(os, &ring.to_producer.seq, seq, deadline) {
                None
            } else {
                Some(Err(SendError::Timeout))
            };
            ring.to_producer.unregister();
            let timed_out = outcome == Some(Err(SendError::Timeout));
            if O::CHECKS && (timed_out || waiting.check_due(os, O::CHECK_INTERVAL)) && !connected()
            {
                return Err(SendError::Disconnected);
            }
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// Writes one frame of `len` payload bytes if it fits now (`Some`:
    /// whether it was published), taking `payload` then. When `head` must
    /// be read, it must also leave `slack` bytes free.
    fn try_write<F: FnOnce(&mut [u8]) -> bool>(
        &mut self,
        len: usize,
        payload: &mut Option<Payload<'_, F>>,
        flags: u32,
        slack: usize,
    ) -> Option<bool> {
        let (ring, data, w) = (self.ring, self.data, &mut *self.w);
        let cap = data.len();
        let tail = ring.tail.load(Ordering::Relaxed);
        let pos = (tail % cap as u64) as usize;
        let size = HEADER + align8(len);
        let to_end = cap - pos;
        let need = if size <= to_end { size } else { to_end + size };
        let free = |head: u64| (cap as u64).saturating_sub(tail.wrapping_sub(head));
        if free(w.cached_head) < need as u64 {
            // SYNC POINT: the consumer is done with the bytes before `head`.
            w.cached_head = ring.head.load(Ordering::Acquire);
            if free(w.cached_head) < (need + slack).min(cap) as u64 {
                return None;
            }
        }
        let mut at = tail;
        let mut pos = pos;
        if size > to_end {
            data.write(pos, &encode(to_end - HEADER, PAD));
            at = at.wrapping_add(to_end as u64);
            pos = 0;
        }
        match payload.take()? {
            Payload::Copy(chunk) => data.write(pos + HEADER, chunk),
            Payload::Fill(_, fill) => {
                if !data.write_in_place(pos + HEADER, len, fill) {
                    // Nothing published: the pad and the room stay unseen.
                    return Some(false);
                }
            }
        }
        data.write(pos, &encode(len, flags));
        // SYNC POINT: frame bytes visible to the consumer's Acquire of `tail`.
        ring.tail.store(at.wrapping_add(size as u64), Ordering::Release);
        ring.to_consumer.notify(self.os);
        Some(true)
    }
}

/// What a frame carries: bytes to copy, or `len` bytes that a closure
/// writes in place (and may decline to publish).
enum Payload<'c, F> {
    Copy(&'c [u8]),
    Fill(usize, F),
}

/// A payload of bytes to copy.
fn copy(chunk: &[u8]) -> Payload<'_, fn(&mut [u8]) -> bool> {
    Payload::Copy(chunk)
}

impl<F> Payload<'_, F> {
    fn len(&self) -> usize {
        match self {
            Payload::Copy(chunk) => chunk.len(),
            Payload::Fill(len, _) => *len,
        }
    }
}

/// Where [`Consumer::recv`] assembles a message: a `Vec`, or a buffer of
/// the caller's that spills into one when the message outgrows it.
pub trait Sink {
    /// The bytes assembled so far.
    fn len(&self) -> usize;
    /// Whether nothing is assembled.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops what was assembled.
    fn clear(&mut self);
    /// Appends the bytes of one frame.
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Sink for alloc::vec::Vec<u8> {
    fn len(&self) -> usize {
        self.len()
    }
    fn clear(&mut self) {
        self.clear();
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// What a walk over published frames ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Took {
    /// Nothing more is published.
    Nothing,
    /// A message is complete in the caller's buffer.
    Message,
    /// A single-frame message was read in place.
    InPlace,
    /// The next message is in fragments; its first is not taken.
    Fragmented,
}

/// The consumer's side of a ring for one call: the ring, the OS's
/// services, the data area, and the consumer's state.
pub struct Consumer<'a, O, B> {
    ring: &'a SpscRing,
    os: &'a O,
    data: &'a B,
    r: &'a mut Reader,
}

impl<O: Park + Liveness, B: Bytes> Consumer<'_, O, B> {
    /// Receives one whole message into `out` (cleared first unless a
    /// message was in progress), waiting until `deadline`. `limit` bounds
    /// its size. `connected` is asked, while waiting, whether a producer
    /// still exists.
    pub fn recv<S: Sink + ?Sized>(
        &mut self,
        out: &mut S,
        limit: usize,
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
    ) -> Result<(), RecvError> {
        if !self.r.assembling {
            out.clear();
        }
        // Made at the first wait: a message found at once costs nothing more.
        let mut waiting = None;
        let got = loop {
            match self.take_frames(out, limit, &mut None::<fn(&[u8])>) {
                Ok(Took::Message) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            let w = waiting.get_or_insert_with(|| self.waiting(deadline));
            let waited = self.ring.wait_for_data(self.os, deadline, &mut connected, w);
            if let Err(e) = waited {
                if e == RecvError::Disconnected {
                    // A message cut by the producer's end is never returned.
                    self.r.assembling = false;
                    out.clear();
                }
                break Err(e);
            }
        };
        self.learn(waiting);
        got
    }

    /// A wait for data that spins as long as this side learnt pays, and
    /// looks less often if it batches.
    fn waiting(&self, deadline: Deadline) -> Waiting {
        let pauses = SpinBudget::from_bits(self.r.spin).pauses();
        let mut waiting = Waiting::with_budget(self.os, deadline, pauses);
        if self.r.batched {
            waiting.pace = BATCH_PACE;
            waiting.yields = true;
        }
        waiting
    }

    /// Teaches this side's budget what a call's wait came to, if it waited.
    fn learn(&mut self, waiting: Option<Waiting>) {
        if let Some(waiting) = waiting {
            let mut budget = SpinBudget::from_bits(self.r.spin);
            waiting.teach(&mut budget);
            self.r.spin = budget.to_bits();
        }
    }

    /// Whether a message is half received ([`Reader::in_message`]).
    pub fn in_message(&self) -> bool {
        self.r.in_message()
    }

    /// Drops the message in progress ([`Reader::skip_message`]).
    pub fn skip_message(&mut self) {
        self.r.skip_message();
    }

    /// Receives one message in place: if the next message is a single
    /// frame (any message of up to [`max_frame_payload`] bytes), lends its
    /// bytes to `read` where they lie, then consumes it (`Ok(true)`). If it
    /// was cut into fragments, consumes nothing and returns `Ok(false)`:
    /// [`recv`](Self::recv) assembles it. The producer cannot reuse the
    /// bytes before `read` returns (`head` has not moved past them).
    /// Waits until `deadline`; never called inside a half-received message.
    pub fn recv_in_place(
        &mut self,
        deadline: Deadline,
        mut connected: impl FnMut() -> bool,
        read: impl FnOnce(&[u8]),
    ) -> Result<bool, RecvError> {
        if self.r.assembling {
            return Ok(false);
        }
        let mut read = Some(read);
        let mut waiting = None;
        let mut out = alloc::vec::Vec::new();
        let got = loop {
            match self.take_frames(&mut out, usize::MAX, &mut read) {
                Ok(Took::InPlace) => break Ok(true),
                // Only skipped frames were taken: nothing was assembled.
                Ok(Took::Fragmented | Took::Message) => break Ok(false),
                Ok(Took::Nothing) => {}
                Err(e) => break Err(e),
            }
            let w = waiting.get_or_insert_with(|| self.waiting(deadline));
            if let Err(e) = self.ring.wait_for_data(self.os, deadline, &mut connected, w) {
                break Err(e);
            }
        };
        self.learn(waiting);
        got
    }

    /// Takes published frames until a message is complete, one was read
    /// in place, or none is left. With `in_place` set, a single-frame
    /// message goes to it, and the first fragment of a longer one stops
    /// the walk before it is taken.
    fn take_frames<S: Sink + ?Sized, F: FnOnce(&[u8])>(
        &mut self,
        out: &mut S,
        limit: usize,
        in_place: &mut Option<F>,
    ) -> Result<Took, RecvError> {
        let ring = self.ring;
        let cap = self.data.len();
        let max = max_frame_payload(cap);
        let mut head = ring.head.load(Ordering::Relaxed);
        loop {
            let mut available = self.r.cached_tail.wrapping_sub(head);
            // Nothing known to be there, or a cache that is behind `head` (a
            // consumer that died mid-call advanced `head` without storing
            // its state): look at `tail` itself.
            if available == 0 || available > cap as u64 {
                // SYNC POINT: frame bytes visible to the consumer's Acquire of `tail`.
                self.r.cached_tail = ring.tail.load(Ordering::Acquire);
                available = self.r.cached_tail.wrapping_sub(head);
                if available == 0 {
                    return Ok(Took::Nothing);
                }
            }
            if available > cap as u64 || head % 8 != 0 {
                return Err(RecvError::Corrupt);
            }
            let pos = (head % cap as u64) as usize;
            let mut h = [0; HEADER];
            if available < HEADER as u64 || pos + HEADER > cap {
                return Err(RecvError::Corrupt);
            }
            self.data.read(pos, &mut h);
            let (len, flags) = decode(h);
            let size = HEADER + align8(len);
            let outcome = if flags & PAD != 0 {
                // Covers exactly the rest of the buffer.
                if flags != PAD || size != cap - pos || size as u64 > available {
                    return Err(RecvError::Corrupt);
                }
                Frame::More
            } else {
                if flags & !KNOWN != 0 || len > max || size as u64 > available || pos + size > cap {
                    return Err(RecvError::Corrupt);
                }
                let starts = flags & FIRST != 0 && flags & ABORT == 0;
                let free = !self.r.assembling && !self.r.skipping;
                match in_place.take() {
                    Some(read) if starts && free && flags & LAST != 0 => {
                        self.r.resync = false;
                        self.data.read_in_place(pos + HEADER, len, read);
                        Frame::InPlace
                    }
                    Some(_) if starts && free => return Ok(Took::Fragmented),
                    read => {
                        *in_place = read;
                        self.deliver(out, limit, pos, len, flags)?
                    }
                }
            };
            head = head.wrapping_add(size as u64);
            // SYNC POINT: the consumer is done with the bytes before `head`.
            ring.head.store(head, Ordering::Release);
            ring.to_producer.notify(self.os);
            match outcome {
                Frame::More => {}
                Frame::Complete => return Ok(Took::Message),
                Frame::InPlace => return Ok(Took::InPlace),
                Frame::TooLarge => return Err(RecvError::TooLarge),
            }
        }
    }

    /// Applies one data frame (`len` bytes at `pos`, with `flags`) to the
    /// message in progress; whether the message is now complete.
    fn deliver<S: Sink + ?Sized>(
        &mut self,
        out: &mut S,
        limit: usize,
        pos: usize,
        len: usize,
        flags: u32,
    ) -> Result<Frame, RecvError> {
        let r = &mut *self.r;
        if r.resync {
            if flags & FIRST == 0 {
                return Ok(Frame::More);
            }
            *r = Reader {
                cached_tail: r.cached_tail,
                batched: r.batched,
                spin: r.spin,
                ..Reader::default()
            };
            out.clear();
        }
        if flags == ABORT {
            if len != 0 {
                return Err(RecvError::Corrupt);
            }
            r.assembling = false;
            r.skipping = false;
            out.clear();
            return Ok(Frame::More);
        }
        if flags & ABORT != 0 || (flags & FIRST != 0) == (r.assembling || r.skipping) {
            return Err(RecvError::Corrupt);
        }
        let last = flags & LAST != 0;
        if r.skipping {
            r.skipping = !last;
            return Ok(Frame::More);
        }
        if out.len().saturating_add(len) > limit {
            out.clear();
            r.assembling = false;
            r.skipping = !last;
            return Ok(Frame::TooLarge);
        }
        // Appended from where the bytes lie: a resize would zero them first.
        self.data.read_in_place(pos + HEADER, len, |bytes| out.extend_from_slice(bytes));
        r.assembling = !last;
        Ok(if last { Frame::Complete } else { Frame::More })
    }
}

/// One side (sending or receiving) of a ring, shared by every handle to it:
/// a lock so that two holders never interleave (threads or processes), and
/// the side's [`Writer`]/[`Reader`] state, valid while the lock is held.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Endpoint {
    /// Serializes the processes that share this side.
    pub lock: crate::bias::BiasedLock,
    /// `cached_head` (sender) or `cached_tail` (receiver).
    cached: AtomicU64,
    /// Sender: bit 0 `must_abort`. Receiver: bit 0 `assembling`, bit 1
    /// `skipping`, bit 2 `resync`, bits 8.. its [`SpinBudget`].
    flags: AtomicU32,
    /// Whole messages this side sent or received, ever (wrapping): a
    /// queue's size is the sender's count minus the receiver's.
    messages: AtomicU64,
    /// Sender: the tag of the last batch of handles sent beside a message
    /// (see [`next_batch`](Self::next_batch)). Unused by a receiver.
    batches: AtomicU64,
}

impl Endpoint {
    /// Counts one whole message (call holding `lock`).
    pub fn count_message(&self) {
        let n = self.messages.load(Ordering::Relaxed);
        self.messages.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// A fresh tag for the handles of the message about to be sent (call
    /// holding `lock`, before anything of the message leaves): tags grow
    /// in the order batches are sent, and a sender that dies or fails after
    /// taking one never has it reused, so a receiver can tell a message's
    /// own handles from ones left behind by a message never published.
    pub fn next_batch(&self) -> u64 {
        let tag = self.batches.load(Ordering::Relaxed).wrapping_add(1);
        self.batches.store(tag, Ordering::Relaxed);
        tag
    }

    /// Whole messages counted so far (a snapshot).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// The sender's state (call holding `lock`).
    pub fn writer(&self) -> Writer {
        Writer {
            cached_head: self.cached.load(Ordering::Relaxed),
            must_abort: self.flags.load(Ordering::Relaxed) & 1 != 0,
            batched: false,
        }
    }

    /// Publishes a producer's cached state, for the next holder of this side.
    pub fn store_writer(&self, w: &Writer) {
        self.cached.store(w.cached_head, Ordering::Relaxed);
        self.flags.store(u32::from(w.must_abort), Ordering::Relaxed);
    }

    /// The receiver's state (call holding `lock`).
    pub fn reader(&self) -> Reader {
        let flags = self.flags.load(Ordering::Relaxed);
        Reader {
            cached_tail: self.cached.load(Ordering::Relaxed),
            assembling: flags & 1 != 0,
            skipping: flags & 2 != 0,
            resync: flags & 4 != 0,
            batched: false,
            spin: flags >> SPIN_SHIFT,
        }
    }

    /// Publishes a consumer's cached state, for the next holder of this side.
    pub fn store_reader(&self, r: &Reader) {
        self.cached.store(r.cached_tail, Ordering::Relaxed);
        let flags = u32::from(r.assembling) | u32::from(r.skipping) << 1 | u32::from(r.resync) << 2;
        self.flags.store(flags | r.spin << SPIN_SHIFT, Ordering::Relaxed);
    }
}

impl Writer {
    /// This call waits for throughput rather than latency (a Queue's):
    /// a wait for space yields the CPU once its first pauses are spent.
    pub fn batch_waits(&mut self) {
        self.batched = true;
    }

    /// The previous holder of this side died, perhaps inside a message:
    /// withdraw whatever it left half sent before sending anything.
    pub fn abort_pending(&mut self) {
        self.must_abort = true;
    }
}

impl Reader {
    /// How long this side's next wait for data spins before it parks.
    pub fn spin_budget(&self) -> SpinBudget {
        SpinBudget::from_bits(self.spin)
    }

    /// Whether a message is half received: its fragments so far are in the
    /// `out` of the call that timed out.
    pub fn in_message(&self) -> bool {
        self.assembling
    }

    /// Looks for data less often while waiting, so that a fast producer
    /// writes several messages per look (throughput over latency).
    pub fn batch_polls(&mut self) {
        self.batched = true;
    }

    /// Drops the message in progress (its fragments are not at hand): the
    /// rest of it is skipped.
    pub fn skip_message(&mut self) {
        if self.assembling {
            self.assembling = false;
            self.skipping = true;
        }
    }

    /// Forgets where it was (the previous holder died mid-receive): frames
    /// are skipped up to the next message's `FIRST`.
    pub fn resync(&mut self) {
        self.assembling = false;
        self.skipping = false;
        self.resync = true;
    }
}

/// One direction of a Pipe: the ring and its two sides.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Channel {
    /// The ring's indices.
    pub ring: SpscRing,
    /// The sending side: its lock and cached state.
    pub sender: Endpoint,
    /// The receiving side: its lock and cached state.
    pub receiver: Endpoint,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Channel, [u8; 704]);
