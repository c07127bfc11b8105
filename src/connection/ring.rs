//! The ring end behind a [`Pipe`](crate::Pipe)'s [`Connection`]s: SPSC
//! rings in shared memory.
//!
//! A Pipe is one segment (one ring per direction, each with its data area)
//! plus a socketpair. The rings carry the messages; the socket lets the
//! kernel count each end's handles, so a peer that closed or died is seen
//! (POLLHUP) and reported as `Disconnected` instead of a hang, and it
//! carries the file descriptors of shared objects sent inside messages
//! (SCM_RIGHTS), so a Lock or a Connection can go to a running process.

use crate::channel::{self, Link, Outgoing, ShmBytes, Stash};
use crate::handles::{self, HandleIn, HandleOut};
use crate::object::{shared_object, Object};
use crate::os::{transfer, AsHandle, BorrowedHandle, OwnedHandle};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::header::{Corrupt, Header, Kind, HEADER_SIZE};
use multiproc_core::ring::spsc::{self, Channel};
use multiproc_core::value::Place;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the data areas start in a Pipe segment (after the two channels).
const DATA_OFFSET: usize = 4096;
const CHANNEL_SIZE: usize = std::mem::size_of::<Channel>();

static_assertions::const_assert!(HEADER_SIZE + 2 * CHANNEL_SIZE <= DATA_OFFSET);

/// The segment, checked: capacity and direction count from its header.
#[derive(Clone)]
struct Segment {
    obj: Object<Channel>,
}

fn check(h: &Header, _: &Channel, _: Place) -> Result<(), Corrupt> {
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

/// A new pair of ring ends over one segment: `capacity` bytes per
/// direction, both ways if `duplex` (else the first end only receives).
pub(crate) fn pair(capacity: usize, duplex: bool) -> Result<(RingEnd, RingEnd)> {
    channel::check_capacity(capacity, "pipe")?;
    let directions = 1 + usize::from(duplex);
    let size = DATA_OFFSET + directions * capacity;
    let params = [capacity as u64, u64::from(duplex), 0, 0, 0];
    let obj = Object::create_segment(Kind::Pipe, params, size, |_: &Channel, _| {})?;
    let segment = Segment { obj };
    let (a, b) = transfer::pair().map_err(|e| Error::io("socketpair", e))?;
    Ok((RingEnd::new(segment.clone(), a, 0), RingEnd::new(segment, b, 1)))
}

/// The shared-memory end behind a Pipe's [`Connection`]: rings for the
/// bytes, a socket to see the peer go and to carry handles.
pub(crate) struct RingEnd {
    segment: Segment,
    socket: OwnedHandle,
    /// 0 or 1: which end of the pipe.
    end: u8,
    /// A message this handle was in the middle of receiving when a timeout
    /// hit, or a whole one too long for `recv_bytes_into`'s buffer.
    stash: Stash,
}

#[derive(Deserialize)]
struct Wire {
    segment: Segment,
    socket: HandleIn,
    end: u8,
}

/// [`Wire`] as sent.
#[derive(Serialize)]
struct WireRef<'a> {
    segment: &'a Segment,
    socket: HandleOut<'a>,
    end: u8,
}

impl Serialize for RingEnd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = WireRef {
            segment: &self.segment,
            socket: HandleOut(self.socket.as_handle()),
            end: self.end,
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RingEnd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        if wire.end > 1 {
            return Err(handles::refuse(Error::new(
                ErrorKind::Corrupt,
                "connection end not 0 or 1",
            )));
        }
        Ok(RingEnd::new(wire.segment, wire.socket.0, wire.end))
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

impl RingEnd {
    fn new(segment: Segment, socket: OwnedHandle, end: u8) -> RingEnd {
        RingEnd { segment, socket, end, stash: Stash::default() }
    }

    /// Another handle to the same end.
    pub(crate) fn try_clone(&self) -> Result<RingEnd> {
        let socket = self.socket.try_clone().map_err(|e| Error::io("dup", e))?;
        Ok(RingEnd::new(self.segment.clone(), socket, self.end))
    }

    pub(crate) fn writable(&self) -> bool {
        directions(self.segment.duplex(), self.end).0.is_some()
    }

    pub(crate) fn readable(&self) -> bool {
        directions(self.segment.duplex(), self.end).1.is_some()
    }

    /// A message of up to this many bytes goes into the ring this end sends
    /// on without waiting, now (0 for a receive-only end): the free bytes,
    /// less the most the frames' headers and a padding frame can take.
    pub(crate) fn send_room(&self) -> usize {
        self.link(true).map_or(0, |link| {
            let cap = link.data.len;
            let free = cap - link.channel.ring.used(cap);
            free.saturating_sub(cap / 4 + 4 * 8)
        })
    }

    fn peer_here(&self) -> bool {
        !transfer::peer_gone(self.socket.as_handle())
    }

    pub(crate) fn socket(&self) -> BorrowedHandle<'_> {
        self.socket.as_handle()
    }

    /// The direction this end sends on (`sending`) or receives from.
    fn link(&self, sending: bool) -> Result<Link<'_>> {
        let (send, recv) = directions(self.segment.duplex(), self.end);
        let i = if sending { send } else { recv }.ok_or_else(|| {
            Error::invalid(if sending {
                "this end of a one-way pipe only receives"
            } else {
                "this end of a one-way pipe only sends"
            })
        })?;
        let socket = self.socket.as_handle();
        Ok(Link {
            channel: self.segment.channel(i),
            data: self.segment.data(i),
            fds_out: socket,
            fds_in: socket,
            batched: false,
        })
    }

    pub(crate) fn send_message(&self, out: Outgoing<'_>, deadline: Deadline) -> Result<()> {
        self.link(true)?.send(out, deadline, || self.peer_here())
    }

    pub(crate) fn send_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Deadline,
    ) -> Result<()> {
        self.link(true)?.send_value(value, deadline, || self.peer_here())
    }

    pub(crate) fn send_with<R>(
        &self,
        len: usize,
        deadline: Deadline,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        self.link(true)?.send_with(len, deadline, || self.peer_here(), fill)
    }

    pub(crate) fn recv_with<R>(
        &self,
        deadline: Deadline,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.link(false)?.recv_with(&self.stash, deadline, || self.peer_here(), read)
    }

    pub(crate) fn recv_bytes(&self, deadline: Deadline) -> Result<Vec<u8>> {
        self.link(false)?.recv(&self.stash, deadline, || self.peer_here(), |m| Ok(m.into_vec()))
    }

    pub(crate) fn recv_bytes_into(&self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.link(false)?.recv_into(buf, &self.stash, deadline, || self.peer_here())
    }

    pub(crate) fn recv_value<T: DeserializeOwned>(&self, deadline: Deadline) -> Result<T> {
        let link = self.link(false)?;
        link.recv_value(&self.stash, deadline, || self.peer_here())
    }

    /// Registers for this end's incoming messages as an async waiter would
    /// (so a send rings the bell), and the handles to watch: the bell and
    /// the link (a hang-up). For `connection::wait`.
    #[cfg(mp_async)]
    pub(crate) fn watch_incoming(
        &self,
    ) -> Result<(impl Sized + '_, [Option<crate::os::ready::Ready<'_>>; 2])> {
        let link = self.link(false)?;
        let ring = &link.channel.ring;
        let registered =
            crate::aio::register(ring.register_async(&crate::os::Os, true), move || {
                ring.unregister_async(true)
            })?;
        let (ready, hangup) = self.wakes();
        Ok((registered, [ready, hangup.map(crate::os::ready::link)]))
    }

    /// What tells an async waiter of this end: the pipe's bell, and the
    /// link (its hang-up: the peer went).
    #[cfg(mp_async)]
    fn wakes(&self) -> (Option<crate::os::ready::Ready<'_>>, Option<BorrowedHandle<'_>>) {
        (self.segment.obj.ready(), Some(self.socket.as_handle()))
    }

    /// [`recv_value`](Self::recv_value), awaited (see `aio.rs`).
    #[cfg(mp_async)]
    pub(crate) async fn recv_value_async<T: DeserializeOwned>(&self) -> Result<T> {
        let link = self.link(false)?;
        let (ready, hangup) = self.wakes();
        link.recv_value_async(&self.stash, ready, hangup, || self.peer_here()).await
    }

    /// [`recv_bytes`](Self::recv_bytes), awaited.
    #[cfg(mp_async)]
    pub(crate) async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        let link = self.link(false)?;
        let (ready, hangup) = self.wakes();
        let connected = || self.peer_here();
        link.recv_async(&self.stash, ready, hangup, connected, |m| Ok(m.into_vec())).await
    }

    /// [`send_value`](Self::send_value), awaited.
    #[cfg(mp_async)]
    pub(crate) async fn send_value_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let link = self.link(true)?;
        let encoded = channel::Encoded::new(value)?;
        let (ready, hangup) = self.wakes();
        link.send_encoded_async(encoded, ready, hangup, || self.peer_here()).await
    }

    /// A message of `bytes`, awaited.
    #[cfg(mp_async)]
    pub(crate) async fn send_bytes_async(&self, bytes: &[u8]) -> Result<()> {
        let link = self.link(true)?;
        let (ready, hangup) = self.wakes();
        let out = Outgoing::Bytes(bytes);
        link.send_async(out, ready, hangup, || self.peer_here()).await
    }

    /// Whether a message is there now, or arrives within `timeout`, or the
    /// peer is gone (so that a receive returns at once).
    pub(crate) fn poll_timeout(&self, timeout: Duration) -> bool {
        let Ok(link) = self.link(false) else {
            return false;
        };
        if self.stash.has_kept() {
            return true;
        }
        if timeout.is_zero() {
            return link.channel.ring.has_data() || !self.peer_here();
        }
        link.wait_readable(Deadline::after(timeout), || self.peer_here())
    }
}

impl std::fmt::Debug for RingEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("end", &self.end)
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("socket", &self.socket.as_raw_handle())
            .finish()
    }
}
