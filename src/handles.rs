//! Handle transfer: how a Lock or a Value crosses into another process.
//!
//! Serializing a shared object records its OS handle in the current thread's
//! *outgoing* table and writes the handle's index; the start method (later,
//! a Connection) carries the table. Deserializing takes the handle at that
//! index from the *incoming* table the receiver set up. Outside such a
//! transfer, serializing a shared object is an error: its bytes alone mean
//! nothing to another process.

use std::cell::RefCell;

#[cfg(mp_spawn)]
use crate::arena::SlotRef;
#[cfg(mp_spawn)]
use crate::os::{AsHandle, BorrowedHandle, OwnedHandle, RawHandle};

/// What a serialization collects: the handles to send, and the arena
/// slots it took a reference to for the receiver.
#[cfg(mp_spawn)]
struct Outgoing {
    fds: Vec<RawHandle>,
    taken: Vec<SlotRef>,
    /// Sizing only: the bytes will be written again, so take nothing.
    measure: bool,
}

#[cfg(mp_spawn)]
thread_local! {
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<OwnedHandle>>> = const { RefCell::new(None) };
    /// Set while serializing for a socket: bytes that may leave the machine.
    static REMOTE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// As [`collect`], for bytes bound for a socket connection: objects that
/// see [`is_remote`] leave out what must stay on this machine.
#[cfg(mp_transfer)]
pub(crate) fn collect_remote<R>(f: impl FnOnce() -> R) -> (R, Vec<RawHandle>) {
    collect(|| {
        let saved = REMOTE.with(|r| r.replace(true));
        let out = f();
        REMOTE.with(|r| r.set(saved));
        out
    })
}

/// Whether the value being serialized goes to a socket connection (to
/// another machine, maybe), rather than to a child or through a Pipe.
#[cfg(mp_transfer)]
pub(crate) fn is_remote() -> bool {
    REMOTE.with(|r| r.get())
}

/// Runs `f` (which serializes) with an outgoing table; returns the fds that
/// serialized objects recorded, each once, in index order. The fds are
/// borrowed from the objects, so they must outlive the transfer. The
/// references taken for the receiver of arena objects are kept: the bytes
/// are assumed to reach it.
#[cfg(mp_spawn)]
pub(crate) fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<RawHandle>) {
    let (result, out) = collecting(false, f);
    (result, out.fds)
}

/// As [`collect`], for a pass that only sizes the bytes (they are
/// serialized again to be sent): it takes no references.
#[cfg(mp_spawn)]
pub(crate) fn measure<R>(f: impl FnOnce() -> R) -> (R, Vec<RawHandle>) {
    let (result, out) = collecting(true, f);
    (result, out.fds)
}

/// As [`collect`], keeping the references taken for the receiver in a
/// guard that gives them back when dropped, unless the message was sent
/// ([`Taken::keep`]): for a send that may be abandoned (an async one).
#[cfg(mp_async)]
pub(crate) fn collect_guarded<R>(f: impl FnOnce() -> R) -> (R, Vec<RawHandle>, Taken) {
    let (result, out) = collecting(false, f);
    (result, out.fds, Taken(out.taken))
}

/// References taken for a message's receiver, given back on drop unless
/// [`keep`](Self::keep) says the message left.
#[cfg(mp_async)]
pub(crate) struct Taken(Vec<SlotRef>);

#[cfg(mp_async)]
impl Taken {
    /// The message left: its receiver adopts the references.
    pub(crate) fn keep(mut self) {
        self.0.clear();
    }
}

#[cfg(mp_async)]
impl Drop for Taken {
    fn drop(&mut self) {
        self.0.iter().for_each(SlotRef::unsend);
    }
}

/// As [`collect`], then `send`s what it serialized: if the send fails
/// before anything left (a timeout, a full channel), the references taken
/// for the receiver are given back.
#[cfg(mp_spawn)]
pub(crate) fn collect_then<R, S>(
    f: impl FnOnce() -> R,
    send: impl FnOnce(R, &[RawHandle]) -> crate::Result<S>,
) -> crate::Result<S> {
    let (result, out) = collecting(false, f);
    let sent = send(result, &out.fds);
    if let Err(e) = &sent {
        if matches!(e.kind(), crate::ErrorKind::Timeout | crate::ErrorKind::Full) {
            out.taken.iter().for_each(SlotRef::unsend);
        }
    }
    sent
}

#[cfg(mp_spawn)]
fn collecting<R>(measure: bool, f: impl FnOnce() -> R) -> (R, Outgoing) {
    let table = Outgoing { fds: Vec::new(), taken: Vec::new(), measure };
    let saved = OUTGOING.with(|t| t.replace(Some(table)));
    let remote = REMOTE.with(|r| r.replace(false));
    let result = f();
    REMOTE.with(|r| r.set(remote));
    let out = OUTGOING.with(|t| t.replace(saved)).expect("the table set above");
    if !measure {
        SENT.fetch_add(out.fds.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    (result, out)
}

/// Handles recorded for transfer by this process so far.
#[cfg(mp_spawn)]
static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many handles (file descriptors) this process has put in messages
/// and start-ups so far: an arena's handle counts once per message however
/// many of its objects the message carries.
#[doc(hidden)]
pub fn handles_sent() -> u64 {
    #[cfg(mp_spawn)]
    return SENT.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(mp_spawn))]
    0
}

/// Records an arena object for transfer: its arena's handle, and (unless
/// only measuring) a reference for the receiver. Returns the handle's
/// index and what names the slot.
#[cfg(mp_spawn)]
pub(crate) fn export_slot(slot: &SlotRef) -> Result<(u32, (u64, u32, u32)), String> {
    let index = export(slot.handle()).map_err(str::to_string)?;
    let measure = OUTGOING.with(|t| t.borrow().as_ref().is_some_and(|t| t.measure));
    let names = if measure { slot.name() } else { slot.send().map_err(|e| e.to_string())? };
    if !measure {
        OUTGOING.with(|t| t.borrow_mut().as_mut().map(|t| t.taken.push(slot.clone())));
    }
    Ok((index, names))
}

/// Runs `f` (which deserializes) with `fds` as the incoming table; they are
/// closed when it returns (objects keep their own duplicates).
#[cfg(mp_spawn)]
pub(crate) fn provide<R>(fds: Vec<OwnedHandle>, f: impl FnOnce() -> R) -> R {
    let saved = INCOMING.with(|t| t.replace(Some(fds)));
    let result = f();
    INCOMING.with(|t| t.replace(saved));
    result
}

/// Deserializes postcard `bytes` with `fds` as the incoming table; a
/// refused shared object reports its own cause, anything else is a codec
/// error in `context`.
#[cfg(mp_transfer)]
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    fds: Vec<OwnedHandle>,
    bytes: &[u8],
    context: &'static str,
) -> crate::Result<T> {
    provide(fds, || from_exact(bytes))
        .map_err(|e| take_failure().unwrap_or_else(|| crate::Error::codec(context, e)))
}

/// Why [`from_exact`] refused its bytes.
#[derive(Debug)]
#[cfg_attr(not(mp_spawn), allow(dead_code))]
pub(crate) enum Inexact {
    /// They are not a `T` at all.
    Malformed(postcard::Error),
    /// A `T` was read and this many bytes were left: they encode something
    /// else (another type that happens to start like a `T`).
    LeftOver(usize),
}

impl std::fmt::Display for Inexact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inexact::Malformed(e) => e.fmt(f),
            Inexact::LeftOver(n) => {
                write!(f, "{n} bytes left over after the value: it was encoded as another type")
            }
        }
    }
}

impl std::error::Error for Inexact {}

/// Deserializes postcard `bytes` as a `T` that uses every one of them, so
/// that a message encoded as another type is an error rather than a
/// wrong value (`send(&300i64)` is not a `u8`).
#[cfg_attr(not(mp_spawn), allow(dead_code))]
pub(crate) fn from_exact<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Inexact> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Inexact::LeftOver(rest.len())),
        Err(e) => Err(Inexact::Malformed(e)),
    }
}

/// Records `fd` for transfer; returns its index.
#[cfg(mp_spawn)]
pub(crate) fn export(fd: BorrowedHandle<'_>) -> Result<u32, &'static str> {
    OUTGOING.with(|t| {
        let mut table = t.borrow_mut();
        let table = &mut table.as_mut().ok_or(NOT_IN_TRANSFER)?.fds;
        let raw = fd.as_raw_handle();
        let index = match table.iter().position(|&f| f == raw) {
            Some(index) => index,
            None => {
                table.push(raw);
                table.len() - 1
            }
        };
        u32::try_from(index).map_err(|_| "too many handles in one transfer")
    })
}

/// Runs `f` on the incoming handle at `index`, borrowed.
#[cfg(mp_spawn)]
pub(crate) fn with_incoming<R>(
    index: u32,
    f: impl FnOnce(BorrowedHandle<'_>) -> R,
) -> Result<R, &'static str> {
    INCOMING.with(|t| {
        let table = t.borrow();
        let table = table.as_ref().ok_or(NOT_IN_TRANSFER)?;
        let fd = table.get(index as usize).ok_or("handle index out of range")?;
        Ok(f(fd.as_handle()))
    })
}

/// A duplicate of the incoming handle at `index`.
#[cfg(mp_spawn)]
pub(crate) fn import(index: u32) -> Result<OwnedHandle, &'static str> {
    INCOMING.with(|t| {
        let table = t.borrow();
        let table = table.as_ref().ok_or(NOT_IN_TRANSFER)?;
        let fd = table.get(index as usize).ok_or("handle index out of range")?;
        fd.try_clone().map_err(|_| "could not duplicate a received handle")
    })
}

thread_local! {
    /// Why the last shared object failed to deserialize on this thread:
    /// serde's error (postcard's) keeps no message, this keeps the cause.
    static FAILURE: RefCell<Option<crate::Error>> = const { RefCell::new(None) };
}

#[cfg_attr(not(mp_spawn), allow(dead_code))]
/// Records why a shared object was refused; returns serde's error for it.
pub(crate) fn refuse<E: serde::de::Error>(error: crate::Error) -> E {
    let e = E::custom(&error);
    FAILURE.with(|f| *f.borrow_mut() = Some(error));
    e
}

#[cfg_attr(not(mp_spawn), allow(dead_code))]
/// The cause recorded by the last [`refuse`] on this thread, if any.
pub(crate) fn take_failure() -> Option<crate::Error> {
    FAILURE.with(|f| f.borrow_mut().take())
}

/// A file descriptor sent as a handle-table index, borrowed from an object
/// that outlives the transfer (a temporary duplicate would be closed before
/// the table is used).
#[cfg(mp_transfer)]
pub(crate) struct HandleOut<'a>(pub(crate) BorrowedHandle<'a>);

#[cfg(mp_transfer)]
impl serde::Serialize for HandleOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(export(self.0).map_err(serde::ser::Error::custom)?)
    }
}

/// A file descriptor received as a handle-table index.
#[cfg(mp_transfer)]
pub(crate) struct HandleIn(pub(crate) OwnedHandle);

#[cfg(mp_transfer)]
impl<'de> serde::Deserialize<'de> for HandleIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        import(index)
            .map(HandleIn)
            .map_err(|e| refuse(crate::Error::new(crate::ErrorKind::Corrupt, e)))
    }
}

#[cfg_attr(not(mp_spawn), allow(dead_code))]
const NOT_IN_TRANSFER: &str = "multiproc objects are serialized only to pass them to a \
     process (as Process arguments) or through a Connection";

#[cfg(not(mp_spawn))]
pub(crate) fn export<T>(_: T) -> Result<u32, &'static str> {
    Err("handle transfer is not implemented on this platform yet")
}

/// An owned file descriptor that passes to another process as a handle.
#[cfg(mp_transfer)]
pub(crate) struct HandleOwned(pub(crate) OwnedHandle);

#[cfg(mp_transfer)]
impl serde::Serialize for HandleOwned {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        HandleOut(self.0.as_handle()).serialize(s)
    }
}

#[cfg(mp_transfer)]
impl<'de> serde::Deserialize<'de> for HandleOwned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HandleIn::deserialize(d).map(|HandleIn(fd)| HandleOwned(fd))
    }
}
