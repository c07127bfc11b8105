//! [`Queue`], [`SimpleQueue`] and [`JoinableQueue`]: Python's
//! `multiprocessing` queues, over one SPSC frame ring in shared memory whose
//! two sides are locked, so any number of producer and consumer processes
//! share it. Each side's lock is biased to the thread that uses it alone
//! (`multiproc_core::bias`), so one producer and one consumer run with no
//! locked instruction; with more, they take turns on the lock.
//!
//! Why not a lock-free MPMC ring: a producer killed between reserving space
//! and committing must be found, told apart from a slow one, and skipped.
//! A lock word names its holder, so the next producer takes over and
//! withdraws the half-written frame; a lock-free reservation would need the
//! reserver's identity beside every reservation, and more shared writes per
//! message than the lock costs (measured: 2 producers and 2 consumers on
//! this 2-core machine move 14 M msg/s).
//!
//! No feeder thread: a `put` that returns `Ok` has its message in shared
//! memory, and every error (full, too large, not serializable) comes back
//! from that `put`. A producer killed in the middle of a `put` holds the put
//! lock; the next producer takes it over (`OwnerDied`, within about 10 ms)
//! and first withdraws whatever half-written message it left, so consumers
//! never see torn data, and every message whose `put` returned is delivered
//! once, in the order of the puts. A consumer killed in the middle of a
//! `get` is taken over the same way.

use crate::channel::{self, Link, Outgoing, ShmBytes, Stash};
use crate::handles::{HandleIn, HandleOut};
use crate::object::{shared_object, Object};
use crate::os::Os;
use crate::os::{transfer, AsHandle, OwnedHandle};
use crate::sync::Semaphore;
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::countdown::RawCountdown;
use multiproc_core::header::{Corrupt, Header, Kind, HEADER_SIZE};
use multiproc_core::ring::spsc::{self, Channel};
use multiproc_core::value::Place;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of ring unless [`Queue::with_capacity`] says otherwise.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1 << 20;
const COUNTDOWN_OFFSET: usize = HEADER_SIZE + std::mem::size_of::<Channel>();
const DATA_OFFSET: usize = 4096;

static_assertions::const_assert!(COUNTDOWN_OFFSET + 8 <= DATA_OFFSET);

#[derive(Clone)]
struct Segment {
    obj: Object<Channel>,
}

fn check(h: &Header, _: &Channel, _: Place) -> Result<(), Corrupt> {
    let capacity = usize::try_from(h.params[0]).map_err(|_| Corrupt::BadParams)?;
    if !spsc::valid_capacity(capacity) || capacity.checked_add(DATA_OFFSET) != Some(h.size as usize)
    {
        return Err(Corrupt::BadParams);
    }
    Ok(())
}

shared_object!(Segment, &[Kind::Queue], check);

impl Segment {
    fn from_object(obj: Object<Channel>) -> Segment {
        Segment { obj }
    }

    fn capacity(&self) -> usize {
        self.obj.header().params[0] as usize
    }

    fn channel(&self) -> &Channel {
        self.obj.raw()
    }

    fn countdown(&self) -> &RawCountdown {
        self.obj.at(COUNTDOWN_OFFSET).expect("checked: the countdown fits the segment")
    }
}

/// What every handle of one queue in this process shares.
struct Shared {
    segment: Segment,
    /// Producers send handles on `fds_out`, consumers take them from
    /// `fds_in`: every holder keeps both ends of this socketpair.
    fds_out: OwnedHandle,
    fds_in: OwnedHandle,
    /// A queue bounded by items ([`Queue::with_maxsize`]): a put takes one,
    /// a get gives one back, as Python's `BoundedSemaphore(maxsize)`.
    slots: Option<Semaphore>,
}

/// A slot of a queue bounded by items, given back on drop: taken for a
/// put, it goes back unless the put succeeds (an error or a panic in
/// between); for a get, it goes back once an item is taken.
struct Slot<'a>(&'a Semaphore);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// The raw queue: bytes in, bytes out. Every typed queue wraps one.
struct Raw {
    shared: Arc<Shared>,
    stash: Stash,
    closed: AtomicBool,
    /// This handle's gets look for a message at every pause while they
    /// wait, for latency, instead of letting a few arrive per look
    /// ([`Queue::prompt`]).
    prompt: bool,
}

impl Clone for Raw {
    fn clone(&self) -> Raw {
        Raw {
            shared: self.shared.clone(),
            stash: Stash::default(),
            closed: AtomicBool::new(false),
            prompt: self.prompt,
        }
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let shared = &self.shared;
        (
            &shared.segment,
            HandleOut(shared.fds_out.as_handle()),
            HandleOut(shared.fds_in.as_handle()),
            &shared.slots,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (segment, HandleIn(fds_out), HandleIn(fds_in), slots) =
            <(Segment, HandleIn, HandleIn, Option<Semaphore>)>::deserialize(d)?;
        Ok(Raw::from_parts(segment, fds_out, fds_in, slots))
    }
}

/// What an async put sends.
#[cfg(mp_async)]
enum AsyncOut<'a> {
    Bytes(&'a [u8]),
    Encoded(crate::channel::Encoded),
}

fn full() -> Error {
    Error::new(ErrorKind::Full, "the queue is full")
}

fn empty() -> Error {
    Error::new(ErrorKind::Empty, "the queue is empty")
}

fn timeout_is_empty(e: Error) -> Error {
    match e.kind() {
        ErrorKind::Timeout => empty(),
        _ => e,
    }
}

impl Raw {
    /// A queue of `capacity` bytes, and of at most `maxsize` items (0: no
    /// bound but the bytes).
    fn new(capacity: usize, maxsize: usize) -> Result<Raw> {
        channel::check_capacity(capacity, "queue")?;
        let slots = match maxsize {
            0 => None,
            n => Some(Semaphore::new(u32::try_from(n).map_err(|_| {
                Error::invalid(format!("a maxsize of {n} is more than a semaphore counts"))
            })?)?),
        };
        let params = [capacity as u64, 0, 0, 0, 0];
        let obj = Object::create_segment(
            Kind::Queue,
            params,
            DATA_OFFSET + capacity,
            |_: &Channel, _| {},
        )?;
        let (fds_out, fds_in) = transfer::pair().map_err(|e| Error::io("socketpair", e))?;
        Ok(Raw::from_parts(Segment { obj }, fds_out, fds_in, slots))
    }

    fn from_parts(
        segment: Segment,
        fds_out: OwnedHandle,
        fds_in: OwnedHandle,
        slots: Option<Semaphore>,
    ) -> Raw {
        Raw {
            shared: Arc::new(Shared { segment, fds_out, fds_in, slots }),
            stash: Stash::default(),
            closed: AtomicBool::new(false),
            prompt: false,
        }
    }

    fn link(&self) -> Link<'_> {
        let shared = &*self.shared;
        let cap = shared.segment.capacity();
        Link {
            channel: shared.segment.channel(),
            data: ShmBytes { ptr: shared.segment.obj.base().wrapping_add(DATA_OFFSET), len: cap },
            fds_out: shared.fds_out.as_handle(),
            fds_in: shared.fds_in.as_handle(),
            batched: !self.prompt,
        }
    }

    /// Puts one message through `send`; a timeout reads as `Full`, as
    /// Python's.
    fn put<R>(&self, deadline: Deadline, send: impl FnOnce(Link<'_>) -> Result<R>) -> Result<R> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::invalid("this queue handle was closed"));
        }
        let slot = match &self.shared.slots {
            Some(slots) => {
                slots
                    .acquire_until(deadline)
                    .map_err(|e| if e.is_timeout() { full() } else { e })?;
                Some(Slot(slots))
            }
            None => None,
        };
        let sent = send(self.link()).map_err(|e| match e.kind() {
            ErrorKind::Timeout => full(),
            _ => e,
        });
        if sent.is_ok() {
            // Put: the slot is the item's until a get gives it back.
            std::mem::forget(slot);
        }
        sent
    }

    /// Gets one message through `recv`: a taken item's slot goes back (a
    /// panic in the caller's closure comes after the message was taken);
    /// a timeout reads as `Empty`.
    fn get<R>(&self, recv: impl FnOnce(Link<'_>) -> Result<R>) -> Result<R> {
        let slot = self.shared.slots.as_ref().map(Slot);
        let got = recv(self.link());
        if got.as_ref().is_err_and(|e| e.kind() != ErrorKind::Codec) {
            // Nothing taken (a message that failed to decode was): the
            // slot stays with the item still in.
            std::mem::forget(slot);
        }
        got.map_err(timeout_is_empty)
    }

    /// Gets one message; a timeout reads as `Empty`.
    fn get_bytes(&self, deadline: Deadline) -> Result<Vec<u8>> {
        self.get(|link| link.recv(&self.stash, deadline, || true, |m| Ok(m.into_vec())))
    }

    fn put_bytes(&self, bytes: &[u8], deadline: Deadline) -> Result<()> {
        self.put(deadline, |link| link.send(Outgoing::Bytes(bytes), deadline, || true))
    }

    fn put_with<R>(
        &self,
        len: usize,
        deadline: Deadline,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        self.put(deadline, |link| link.send_with(len, deadline, || true, fill))
    }

    fn put_value<T: Serialize + ?Sized>(&self, value: &T, deadline: Deadline) -> Result<()> {
        self.put(deadline, |link| link.send_value(value, deadline, || true))
    }

    /// Gets one message into `buf` (cleared first; its allocation reused).
    fn get_bytes_into(&self, buf: &mut Vec<u8>, deadline: Deadline) -> Result<()> {
        self.get_with(deadline, |m| {
            buf.clear();
            buf.extend_from_slice(m);
        })
    }

    fn get_with<R>(&self, deadline: Deadline, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.get(|link| link.recv_with(&self.stash, deadline, || true, read))
    }

    fn get_value<T: DeserializeOwned>(&self, deadline: Deadline) -> Result<T> {
        self.get(|link| link.recv_value(&self.stash, deadline, || true))
    }

    /// [`put`](Self::put), awaited (see `aio.rs`): an item-bounded queue's
    /// slot first, then the message; a future dropped before the message
    /// left gives the slot back and sends nothing.
    #[cfg(mp_async)]
    async fn put_async(&self, out: AsyncOut<'_>) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::invalid("this queue handle was closed"));
        }
        let slot = match &self.shared.slots {
            Some(slots) => {
                slots.acquire_async().await?;
                Some(Slot(slots))
            }
            None => None,
        };
        let link = self.link();
        let bell = self.shared.segment.obj.ready();
        let sent = match out {
            AsyncOut::Bytes(bytes) => {
                link.send_async(Outgoing::Bytes(bytes), bell, None, || true).await
            }
            AsyncOut::Encoded(encoded) => {
                link.send_encoded_async(encoded, bell, None, || true).await
            }
        };
        if sent.is_ok() {
            std::mem::forget(slot);
        }
        sent
    }

    /// [`get`](Self::get), awaited: `then` gets the message.
    #[cfg(mp_async)]
    async fn get_async<R>(
        &self,
        then: impl FnOnce(&Link<'_>, channel::Message<'_>) -> Result<R>,
    ) -> Result<R> {
        let link = self.link();
        let bell = self.shared.segment.obj.ready();
        let got = link.recv_async(&self.stash, bell, None, || true, |m| then(&link, m)).await;
        // An item taken (one that failed to decode was) gives its slot
        // back; a future dropped before that, or a failure, took none.
        let taken = got.as_ref().map_or_else(|e| e.kind() == ErrorKind::Codec, |_| true);
        if let (true, Some(slots)) = (taken, &self.shared.slots) {
            let _ = slots.release();
        }
        got
    }

    /// Registers an async waiter for this queue's next item without taking
    /// it (a Pool's replies, which another call may take), and the handle
    /// that then becomes readable: see `aio.rs`.
    #[cfg(mp_async)]
    fn watch_items(&self) -> Result<(impl Sized + '_, Option<crate::os::ready::Ready<'_>>)> {
        let ring = &self.shared.segment.channel().ring;
        let lock = &self.shared.segment.channel().receiver.lock;
        let data =
            crate::aio::register(ring.register_async(&Os, true), || ring.unregister_async(true))?;
        let taken = crate::aio::register(lock.register_async(&Os), || lock.unregister_async())?;
        Ok(((data, taken), self.shared.segment.obj.ready()))
    }

    fn qsize(&self) -> usize {
        let channel = self.shared.segment.channel();
        let put = channel.sender.messages();
        let got = channel.receiver.messages();
        usize::try_from(put.wrapping_sub(got)).unwrap_or(0).min(self.shared.segment.capacity() / 8)
    }

    fn empty(&self) -> bool {
        !self.shared.segment.channel().ring.has_data() && !self.stash.has_kept()
    }

    fn full(&self) -> bool {
        if self.shared.slots.as_ref().is_some_and(|s| s.get_value() == 0) {
            return true;
        }
        let cap = self.shared.segment.capacity();
        cap - self.shared.segment.channel().ring.used(cap) < 64
    }
}

/// A queue of `T` shared by any number of processes: Python's
/// `multiprocessing.Queue`.
///
/// Bounded by bytes (its ring's capacity, 1 MiB by default), and by items
/// only if asked ([`with_maxsize`](Self::with_maxsize), Python's
/// `maxsize`); a message larger than the ring still goes through, in
/// pieces, while a consumer takes them. `put` blocks while the ring is full, `get` while it
/// is empty; each has `_timeout` and `_nowait` forms that report
/// [`ErrorKind::Full`] and [`ErrorKind::Empty`] as Python does.
///
/// ```
/// let q = multiproc::Queue::<(u32, String)>::new()?;
/// q.put(&(1, "one".to_string()))?;
/// assert_eq!(q.qsize(), 1);
/// assert_eq!(q.get()?, (1, "one".to_string()));
/// assert!(q.empty());
/// assert_eq!(q.get_nowait().unwrap_err().kind(), multiproc::ErrorKind::Empty);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Postcard is not self-describing: a receiver must ask for the type sent.
pub struct Queue<T> {
    raw: Raw,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Queue<T> {
    /// Makes this handle's waits latency-first (a Pool's replies: a caller
    /// waits for one result at a time more often than it streams them).
    /// By default a waiting get looks for a message every few pauses, so
    /// that a fast producer puts several per look.
    pub(crate) fn prompt(mut self) -> Queue<T> {
        self.raw.prompt = true;
        self
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { raw: self.raw.clone(), _t: PhantomData }
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Queue { raw: Raw::deserialize(d)?, _t: PhantomData })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue with the default capacity ([`DEFAULT_QUEUE_CAPACITY`] bytes).
    pub fn new() -> Result<Queue<T>> {
        Queue::with_capacity(DEFAULT_QUEUE_CAPACITY)
    }

    /// A queue whose ring holds `capacity` bytes (a power of two, at least 4096).
    pub fn with_capacity(capacity: usize) -> Result<Queue<T>> {
        Ok(Queue { raw: Raw::new(capacity, 0)?, _t: PhantomData })
    }

    /// Python's `Queue(maxsize)`: at most `maxsize` items at once (0: no
    /// bound but the bytes), in a ring of the default capacity. A put
    /// waits while `maxsize` items are in (`Full` from its `_timeout` and
    /// `_nowait` forms).
    ///
    /// The count is a semaphore beside the ring, as Python's: a process
    /// killed between taking a slot and putting its item (or between
    /// getting an item and giving the slot back) leaves that slot taken.
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Ok(Queue { raw: Raw::new(DEFAULT_QUEUE_CAPACITY, maxsize)?, _t: PhantomData })
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.raw.put_value(item, Deadline::NEVER)
    }

    /// Puts `item`, waiting at most `timeout`; `Full` if there was no room.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.raw.put_value(item, Deadline::after(timeout))
    }

    /// Puts `item` only if there is room now; `Full` otherwise.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.raw.put_value(item, Deadline::now())
    }

    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> Result<T> {
        self.raw.get_value(Deadline::NEVER)
    }

    /// Takes the oldest item, waiting at most `timeout`; `Empty` if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.raw.get_value(Deadline::after(timeout))
    }

    /// Takes the oldest item only if there is one now; `Empty` otherwise.
    pub fn get_nowait(&self) -> Result<T> {
        self.raw.get_value(Deadline::now())
    }

    /// Puts `item`, awaiting room without blocking a thread (the `tokio`
    /// feature). Bound it with `tokio::time::timeout`. Cancel-safe:
    /// a future dropped before `item` was in the queue put nothing (a long
    /// item half written is withdrawn).
    #[cfg(mp_async)]
    pub async fn put_async(&self, item: &T) -> Result<()> {
        let encoded = crate::channel::Encoded::new(item)?;
        self.raw.put_async(AsyncOut::Encoded(encoded)).await
    }

    /// Takes the next item, awaiting one without blocking a thread (the
    /// `tokio` feature). Cancel-safe: a future dropped before it
    /// completes took no item (a long item half received is kept for the
    /// next get of this handle).
    #[cfg(mp_async)]
    pub async fn get_async(&self) -> Result<T> {
        self.raw.get_async(|link, m| link.decode(&m.into_vec())).await
    }

    /// [`put_bytes`](Self::put_bytes), awaited as [`put_async`](Self::put_async).
    #[cfg(mp_async)]
    pub async fn put_bytes_async(&self, bytes: &[u8]) -> Result<()> {
        self.raw.put_async(AsyncOut::Bytes(bytes)).await
    }

    /// A handle readable once an item may be there, for an event loop
    /// other than tokio: see [`Readiness`](crate::Readiness) (then
    /// [`get_nowait`](Self::get_nowait) until it is `Empty`).
    #[cfg(mp_async)]
    pub fn readiness(&self) -> Result<crate::Readiness<'_>> {
        let (registered, ready) = self.raw.watch_items()?;
        crate::Readiness::new(registered, [ready])
    }

    /// See `Raw::watch_items` (a Pool's replies).
    #[cfg(mp_async)]
    pub(crate) fn watch_items(
        &self,
    ) -> Result<(impl Sized + '_, Option<crate::os::ready::Ready<'_>>)> {
        self.raw.watch_items()
    }

    /// [`get_bytes`](Self::get_bytes), awaited as [`get_async`](Self::get_async).
    #[cfg(mp_async)]
    pub async fn get_bytes_async(&self) -> Result<Vec<u8>> {
        self.raw.get_async(|_, m| Ok(m.into_vec())).await
    }

    /// Puts raw bytes as one message (read them with a `get_bytes`).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.raw.put_bytes(bytes, Deadline::NEVER)
    }

    /// [`put_bytes`](Self::put_bytes) waiting at most `timeout` for room.
    pub fn put_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.raw.put_bytes(bytes, Deadline::after(timeout))
    }

    /// [`put_bytes`](Self::put_bytes) only if there is room now; `Full`
    /// otherwise.
    pub fn put_bytes_nowait(&self, bytes: &[u8]) -> Result<()> {
        self.raw.put_bytes(bytes, Deadline::now())
    }

    /// Takes one message's bytes.
    pub fn get_bytes(&self) -> Result<Vec<u8>> {
        self.raw.get_bytes(Deadline::NEVER)
    }

    /// [`get_bytes`](Self::get_bytes) waiting at most `timeout` for a message.
    pub fn get_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.raw.get_bytes(Deadline::after(timeout))
    }

    /// [`get_bytes`](Self::get_bytes) only if a message is there now;
    /// `Empty` otherwise.
    pub fn get_bytes_nowait(&self) -> Result<Vec<u8>> {
        self.raw.get_bytes(Deadline::now())
    }

    /// Puts one message of `len` bytes that `fill` writes in place, in
    /// the queue's shared memory: nothing is copied. The bytes lent to
    /// `fill` hold whatever the ring held before; it writes all of them.
    /// A message of up to a quarter of the queue's capacity (less 8 bytes)
    /// is written where it will be read; a larger one is written into a
    /// buffer first and sent in pieces. Until `fill` returns, no consumer
    /// sees any of it: a producer killed inside `fill` leaves no torn
    /// message, and one whose `fill` panics puts nothing.
    ///
    /// ```
    /// let q = multiproc::ByteQueue::new()?;
    /// q.put_with(8, |buf| buf.copy_from_slice(&42u64.to_le_bytes()))?;
    /// let n = q.get_with(|bytes| u64::from_le_bytes(bytes.try_into().unwrap()))?;
    /// assert_eq!(n, 42);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_with<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.raw.put_with(len, Deadline::NEVER, fill)
    }

    /// [`put_with`](Self::put_with) waiting at most `timeout` for room
    /// (`Full` if there was none; `fill` is not called then).
    pub fn put_with_timeout<R>(
        &self,
        len: usize,
        timeout: Duration,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        self.raw.put_with(len, Deadline::after(timeout), fill)
    }

    /// Takes one message and lends its bytes to `read` where they lie in
    /// shared memory (a message of up to a quarter of the capacity; a
    /// larger one is assembled first). The message is taken whatever
    /// `read` does, and the producers cannot reuse its bytes until `read`
    /// returns. The bytes are shared memory: a process that breaks the
    /// queue's protocol could change them while you read, so copy what you
    /// will check before you rely on it if the peers are not trusted.
    pub fn get_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.raw.get_with(Deadline::NEVER, read)
    }

    /// [`get_with`](Self::get_with) waiting at most `timeout` for a
    /// message (`Empty` if none came; `read` is not called then).
    pub fn get_with_timeout<R>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.raw.get_with(Deadline::after(timeout), read)
    }

    /// [`get_bytes`](Self::get_bytes) into `buf`, which is cleared first and
    /// keeps its allocation: a loop of gets into one buffer allocates
    /// nothing.
    pub fn get_bytes_into(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.raw.get_bytes_into(buf, Deadline::NEVER)
    }

    /// [`get_bytes_into`](Self::get_bytes_into) waiting at most `timeout`.
    pub fn get_bytes_into_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.raw.get_bytes_into(buf, Deadline::after(timeout))
    }

    /// About how many items are in the queue (exact when nobody is
    /// putting or getting).
    pub fn qsize(&self) -> usize {
        self.raw.qsize()
    }

    /// Whether no message is there to get now.
    pub fn empty(&self) -> bool {
        self.raw.empty()
    }

    /// Whether the ring is (nearly) full: a small put would wait.
    pub fn full(&self) -> bool {
        self.raw.full()
    }

    /// This handle puts no more (Python's `close`): later puts on it fail.
    /// Gets still work, and other handles are not affected.
    pub fn close(&self) {
        self.raw.closed.store(true, Ordering::Relaxed);
    }

    /// Python's `join_thread`: returns at once. Python's queue hands each
    /// item to a feeder thread, which this waits for; here a `put` that
    /// returned `Ok` has already written its item to shared memory, so
    /// there is nothing to wait for.
    pub fn join_thread(&self) {}

    /// Python's `cancel_join_thread`: does nothing, for the reason given
    /// at [`join_thread`](Self::join_thread) (no item is ever left in a
    /// buffer of this process to be lost or waited for at exit).
    pub fn cancel_join_thread(&self) {}
}

/// A queue of raw messages, for [`put_bytes`](Queue::put_bytes) and
/// [`get_bytes`](Queue::get_bytes): `ByteQueue::new()` needs no item type.
pub type ByteQueue = Queue<Vec<u8>>;

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("qsize", &self.raw.qsize()).finish()
    }
}

/// `Clone` and serde for a type that is a [`Queue`] in a field `queue`.
macro_rules! wraps_a_queue {
    ($ty:ident) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { queue: self.queue.clone() }
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.queue.serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($ty { queue: Queue::deserialize(d)? })
            }
        }
    };
}

/// Python's `SimpleQueue`: a [`Queue`] reduced to `put`, `get`, `empty`
/// and `close`.
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

wraps_a_queue!(SimpleQueue);

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A simple queue with the default capacity.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue { queue: Queue::new()? })
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.queue.put(item)
    }

    /// Takes the next item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// [`put`](Self::put), awaited as [`Queue::put_async`].
    #[cfg(mp_async)]
    pub async fn put_async(&self, item: &T) -> Result<()> {
        self.queue.put_async(item).await
    }

    /// [`get`](Self::get), awaited as [`Queue::get_async`].
    #[cfg(mp_async)]
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }

    /// Takes the next item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// Whether it holds no item now (a moment later it may).
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// This handle puts no more (Python's `close`); gets still work.
    pub fn close(&self) {
        self.queue.close()
    }
}

/// Python's `JoinableQueue`: a [`Queue`] that counts unfinished items. Each
/// `put` adds one; each `task_done` (called by a consumer when it has
/// finished with an item it got) removes one; `join` waits until none are
/// left.
///
/// ```
/// let q = multiproc::JoinableQueue::<u8>::new()?;
/// q.put(&7)?;
/// assert!(!q.join_timeout(std::time::Duration::from_millis(1))?);
/// assert_eq!(q.get()?, 7);
/// q.task_done()?;
/// q.join()?;
/// assert!(q.task_done().is_err()); // more task_done than puts
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

wraps_a_queue!(JoinableQueue);

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue with the default capacity.
    pub fn new() -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { queue: Queue::new()? })
    }

    /// A joinable queue whose ring holds `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { queue: Queue::with_capacity(capacity)? })
    }

    /// A joinable queue of at most `maxsize` items ([`Queue::with_maxsize`]).
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { queue: Queue::with_maxsize(maxsize)? })
    }

    fn tasks(&self) -> &RawCountdown {
        self.queue.raw.shared.segment.countdown()
    }

    fn counted(&self, put: impl FnOnce() -> Result<()>) -> Result<()> {
        // Count first: a consumer may finish the item before put returns.
        self.tasks().increment()?;
        put().inspect_err(|_| {
            let _ = self.tasks().decrement(&Os);
        })
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.counted(|| self.queue.put(item))
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.counted(|| self.queue.put_timeout(item, timeout))
    }

    /// Puts `item` if there is room now; `Full` if not.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.counted(|| self.queue.put_nowait(item))
    }

    /// Takes the next item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Takes the next item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// Takes the next item if there is one now; `Empty` if not.
    pub fn get_nowait(&self) -> Result<T> {
        self.queue.get_nowait()
    }

    /// [`put`](Self::put), awaited as [`Queue::put_async`] (the item is
    /// counted unfinished once put; a put that fails or is dropped counts
    /// nothing).
    #[cfg(mp_async)]
    pub async fn put_async(&self, item: &T) -> Result<()> {
        /// Takes the count back unless the item went in.
        struct Counted<'a>(Option<&'a RawCountdown>);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                if let Some(tasks) = self.0 {
                    let _ = tasks.decrement(&Os);
                }
            }
        }
        // Count first: a consumer may finish the item before put returns.
        self.tasks().increment()?;
        let mut counted = Counted(Some(self.tasks()));
        self.queue.put_async(item).await?;
        counted.0 = None;
        Ok(())
    }

    /// [`get`](Self::get), awaited as [`Queue::get_async`].
    #[cfg(mp_async)]
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }

    /// One item got earlier is finished. `InvalidArgument` if called more
    /// times than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.tasks()
            .decrement(&Os)
            .map_err(|_| Error::invalid("task_done() called more times than there were items"))
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.tasks().wait_zero(&Os, Deadline::NEVER.core());
        Ok(())
    }

    /// [`join`](Self::join) waiting at most `timeout`; whether all were done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.tasks().wait_zero(&Os, Deadline::after(timeout).core()))
    }

    /// About how many items it holds now.
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// Whether it holds no item now (a moment later it may).
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// This handle puts no more (Python's `close`); gets still work.
    pub fn close(&self) {
        self.queue.close()
    }
}
