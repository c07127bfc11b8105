//! A [`Connection`](super::Connection) over a stream socket (TCP or Unix),
//! framed exactly as Python's `multiprocessing.connection`: a 4-byte
//! big-endian signed length, then the bytes; above `0x7fffffff`, the length
//! -1 and then an 8-byte big-endian length.
//!
//! Receiving reads greedily into a buffer, so a small message costs one
//! `recv`; a message longer than the buffer is read straight into its own,
//! allocated only after its length passed the connection's maximum. A
//! receive or send that times out keeps what it had done (the bytes read so
//! far, the bytes still to send) and the next call goes on from there, so a
//! timeout never tears a frame.
//!
//! The socket is never switched to non-blocking mode (a Python peer or a
//! child may share the open file): waits with a deadline use `MSG_DONTWAIT`
//! and `poll`. Before blocking, a receive retries for a short while, since
//! a reply to a request usually arrives within microseconds and a sleep
//! and wake-up would cost more.

use crate::os::net::{self, Interest, Socket, SocketRef, Watch};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use multiproc_core::sync::SpinBudget;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The longest message a socket connection accepts unless told otherwise
/// ([`Connection::set_max_message`](super::Connection::set_max_message)).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// The longest length that fits the short header.
const SHORT_MAX: u64 = 0x7fff_ffff;
/// Bytes read ahead per `recv`.
const READ_AHEAD: usize = 64 << 10;
/// A receive's spin budget counts pauses ([`SpinBudget`]); a try of a
/// non-blocking receive (a system call, about a microsecond) counts this
/// many: at most 200 tries before sleeping in the kernel, at least 6.
const PAUSES_PER_TRY: u32 = 10;

/// The header Python writes before a message of `len` bytes, and its length.
pub(crate) fn header(len: usize) -> ([u8; 12], usize) {
    let mut h = [0; 12];
    if len as u64 > SHORT_MAX {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 12)
    } else {
        h[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (h, 4)
    }
}

/// A header at the start of `bytes`: its length and the message's, or
/// `None` if more bytes are needed.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Option<(usize, u64)>> {
    let Some(short) = bytes.first_chunk::<4>() else {
        return Ok(None);
    };
    match i32::from_be_bytes(*short) {
        n if n >= 0 => Ok(Some((4, n as u64))),
        -1 => Ok(bytes[4..].first_chunk::<8>().map(|long| (12, u64::from_be_bytes(*long)))),
        n => Err(Error::new(ErrorKind::Corrupt, format!("message length {n} is negative"))),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State one caller at a time works with across blocking I/O, taken out
/// for the call, so that another caller waits for it with *its* deadline
/// (a plain mutex held across a blocking `recv` would make a
/// `recv_timeout` on another thread wait without bound).
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    returned: Condvar,
}

struct SlotState<T> {
    /// `None` while a caller has it out.
    value: Option<T>,
    /// Callers waiting for it (a return wakes one only if there is one:
    /// a notify is a system call).
    waiting: usize,
}

impl<T: Default> Default for Slot<T> {
    fn default() -> Self {
        let state = SlotState { value: Some(T::default()), waiting: 0 };
        Slot { state: Mutex::new(state), returned: Condvar::new() }
    }
}

impl<T> Slot<T> {
    fn take(&self, deadline: Deadline) -> Result<Taken<'_, T>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(value) = state.value.take() {
                return Ok(Taken { slot: self, value: Some(value) });
            }
            let left = match deadline.left() {
                Some(left) if left.is_zero() => return Err(Error::timeout()),
                left => left,
            };
            state.waiting += 1;
            state = match left {
                None => self.returned.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.returned.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            state.waiting -= 1;
        }
    }

    /// Runs `f` on the state if no one has it out now.
    fn peek<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        lock(&self.state).value.as_ref().map(f)
    }
}

/// A [`Slot`]'s state while a caller has it; put back when dropped (a
/// panic included).
struct Taken<'a, T> {
    slot: &'a Slot<T>,
    value: Option<T>,
}

impl<T> std::ops::Deref for Taken<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("present until dropped")
    }
}

impl<T> std::ops::DerefMut for Taken<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("present until dropped")
    }
}

impl<T> Drop for Taken<'_, T> {
    fn drop(&mut self) {
        let mut state = lock(&self.slot.state);
        state.value = self.value.take();
        if state.waiting > 0 {
            self.slot.returned.notify_one();
        }
    }
}

/// What a receive has read and not yet returned.
#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A message longer than the read-ahead, being read into its own
    /// buffer: the buffer and how much of it is filled.
    body: Option<(Vec<u8>, usize)>,
    /// A whole message too long for a `recv_bytes_into` buffer.
    kept: Option<Vec<u8>>,
}

/// How often an async call looks again while another call has the
/// stream's state out.
#[cfg(mp_async)]
const BUSY_TICK: Duration = Duration::from_millis(1);

pub(crate) struct Stream {
    socket: Socket,
    max: AtomicUsize,
    input: Slot<Input>,
    /// The unsent tail of a message whose send timed out part-way.
    output: Slot<Vec<u8>>,
    /// Set when bad input made this end drop the connection.
    dropped: AtomicBool,
    /// How long a receive retries before it sleeps ([`SpinBudget::to_bits`]),
    /// learnt from the recent receives: shorter once retrying stopped paying
    /// (a peer that answers slowly, or waits for a CPU).
    spin: AtomicU32,
}

impl Stream {
    pub(crate) fn new(socket: Socket, max: usize) -> Stream {
        Stream {
            socket,
            max: AtomicUsize::new(max),
            input: Slot::default(),
            output: Slot::default(),
            dropped: AtomicBool::new(false),
            spin: AtomicU32::new(0),
        }
    }

    pub(crate) fn socket(&self) -> SocketRef<'_> {
        net::socket_ref(&self.socket)
    }

    pub(crate) fn max_message(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_message(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub(crate) fn try_clone(&self) -> Result<Stream> {
        let socket = self.socket.try_clone().map_err(|e| Error::io("dup", e))?;
        Ok(Stream::new(socket, self.max_message()))
    }

    /// Ends the connection after bad input: both directions shut, so the
    /// peer sees it closed, and every later call fails.
    fn drop_connection(&self, error: Error) -> Error {
        self.dropped.store(true, Ordering::Relaxed);
        let _ = net::shut_down(self.socket());
        error
    }

    fn check_open(&self) -> Result<()> {
        if self.dropped.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "the connection was dropped after bad input",
            ));
        }
        Ok(())
    }

    /// Sends one message: the header, then `payload`.
    pub(crate) fn send(&self, payload: &[u8], deadline: Deadline) -> Result<()> {
        self.check_open()?;
        let mut pending = self.output.take(deadline)?;
        self.flush(&mut pending, deadline)?;
        self.write_message(&mut pending, payload, deadline)
    }

    /// Writes what an earlier message left `pending`.
    fn flush(&self, pending: &mut Vec<u8>, deadline: Deadline) -> Result<()> {
        while !pending.is_empty() {
            let n = self.write_some(&[IoSlice::new(pending)], deadline)?;
            pending.drain(..n);
        }
        Ok(())
    }

    /// Writes one message; a deadline that passes part-way keeps its rest
    /// in `pending`, to go before the next message.
    fn write_message(
        &self,
        pending: &mut Vec<u8>,
        payload: &[u8],
        deadline: Deadline,
    ) -> Result<()> {
        let (head, head_len) = header(payload.len());
        let total = head_len + payload.len();
        let mut done = 0;
        while done < total {
            let (h, p) = if done < head_len {
                (&head[done..head_len], payload)
            } else {
                (&[][..], &payload[done - head_len..])
            };
            match self.write_some(&[IoSlice::new(h), IoSlice::new(p)], deadline) {
                Ok(n) => done += n,
                Err(e) if e.is_timeout() && done > 0 => {
                    pending.extend_from_slice(h);
                    pending.extend_from_slice(p);
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "timed out part-way through a message; its rest is sent before the \
                         next message",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Receives one whole message, refused (and the connection dropped)
    /// if it is longer than `max`.
    pub(crate) fn recv(&self, max: usize, deadline: Deadline) -> Result<Vec<u8>> {
        self.check_open()?;
        let mut input = self.input.take(deadline)?;
        if let Some(kept) = input.kept.take() {
            return Ok(kept);
        }
        self.recv_locked(&mut input, max, deadline)
    }

    /// Receives one message into `buf`; a longer one is kept for the next
    /// receive and `TooLarge` returned, as Python's `BufferTooShort`.
    pub(crate) fn recv_into(&self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.check_open()?;
        let mut input = self.input.take(deadline)?;
        let message = match input.kept.take() {
            Some(kept) => kept,
            None => self.recv_locked(&mut input, self.max_message(), deadline)?,
        };
        match buf.get_mut(..message.len()) {
            Some(dest) => {
                dest.copy_from_slice(&message);
                Ok(message.len())
            }
            None => {
                let len = message.len();
                input.kept = Some(message);
                Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("a message of {len} bytes does not fit a buffer of {}", buf.len()),
                ))
            }
        }
    }

    fn recv_locked(&self, input: &mut Input, max: usize, deadline: Deadline) -> Result<Vec<u8>> {
        if input.buf.len() < READ_AHEAD {
            input.buf.resize(READ_AHEAD, 0);
        }
        loop {
            if let Some((body, filled)) = &mut input.body {
                // Bytes already read ahead first, then straight from the socket.
                let ahead = (input.end - input.start).min(body.len() - *filled);
                body[*filled..*filled + ahead]
                    .copy_from_slice(&input.buf[input.start..input.start + ahead]);
                input.start += ahead;
                *filled += ahead;
                while *filled < body.len() {
                    *filled += self.read_some(&mut body[*filled..], deadline, true)?;
                }
                return Ok(input.body.take().map(|(body, _)| body).unwrap_or_default());
            }
            let available = &input.buf[input.start..input.end];
            match parse_header(available).map_err(|e| self.drop_connection(e))? {
                Some((head, len)) => {
                    if len > max as u64 {
                        return Err(self.drop_connection(Error::new(
                            ErrorKind::TooLarge,
                            format!("peer sent a message of {len} bytes; the most is {max}"),
                        )));
                    }
                    let len = len as usize;
                    input.start += head;
                    if input.end - input.start >= len {
                        let message = input.buf[input.start..input.start + len].to_vec();
                        input.start += len;
                        return Ok(message);
                    }
                    input.body = Some((vec![0; len], 0));
                }
                None => {
                    // Need more: compact what is left to the front, read on.
                    let left = input.end - input.start;
                    input.buf.copy_within(input.start..input.end, 0);
                    input.start = 0;
                    input.end = left;
                    let mid_frame = left > 0;
                    let end = input.end;
                    input.end += self.read_some(&mut input.buf[end..], deadline, mid_frame)?;
                }
            }
        }
    }

    /// One `recv` of at least a byte. End of stream is `Disconnected`,
    /// marked as a truncated frame if `mid_frame`.
    fn read_some(&self, buf: &mut [u8], deadline: Deadline, mid_frame: bool) -> Result<usize> {
        // A call whose deadline has passed (a `_nowait`-like poll) looks once.
        let mut budget = SpinBudget::from_bits(self.spin.load(Ordering::Relaxed));
        let spin = if deadline.passed() { 0 } else { budget.pauses() / PAUSES_PER_TRY };
        let mut tries = 0;
        // Taught once: by the try that found data, or when the tries ran out.
        let mut taught = spin == 0;
        let mut learn = |tries: u32| {
            if !std::mem::replace(&mut taught, true) {
                budget.learn(tries * PAUSES_PER_TRY, tries >= spin);
                self.spin.store(budget.to_bits(), Ordering::Relaxed);
            }
        };
        loop {
            let blocking = deadline == Deadline::NEVER && tries >= spin;
            if tries == spin {
                learn(tries);
            }
            match net::recv_some(self.socket(), &mut *buf, blocking) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        if mid_frame {
                            "the peer closed the connection in the middle of a message"
                        } else {
                            "the peer closed the connection"
                        },
                    ))
                }
                Ok(n) => {
                    learn(tries);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < spin => {
                    tries += 1;
                    std::hint::spin_loop();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(Interest::Read, deadline)?
                }
                Err(e) => return Err(socket_error("receiving", e)),
            }
        }
    }

    /// One `sendmsg` of at least a byte.
    fn write_some(&self, parts: &[IoSlice<'_>], deadline: Deadline) -> Result<usize> {
        loop {
            match net::send_some(self.socket(), parts) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(Interest::Write, deadline)?
                }
                Err(e) => return Err(socket_error("sending", e)),
            }
        }
    }

    /// [`recv`](Self::recv) awaited (see `aio.rs`): each attempt reads
    /// what the socket has without waiting (a message half read stays in
    /// `input`, for the next receive), then the task awaits readability.
    #[cfg(mp_async)]
    pub(crate) async fn recv_async(&self, max: usize) -> Result<Vec<u8>> {
        self.check_open()?;
        loop {
            let busy = match self.input.take(Deadline::now()) {
                Ok(mut input) => {
                    if let Some(kept) = input.kept.take() {
                        return Ok(kept);
                    }
                    match self.recv_locked(&mut input, max, Deadline::now()) {
                        Err(e) if e.is_timeout() => false,
                        got => return got,
                    }
                }
                // Another call reads: look again at its pace.
                Err(_) => true,
            };
            let tick = busy.then_some(BUSY_TICK);
            crate::aio::ready_any(&[net::socket_handle(self.socket())], false, tick).await?;
        }
    }

    /// [`send`](Self::send) awaited: what does not fit the socket now is
    /// kept and sent as room comes. A future dropped part-way leaves the
    /// message's rest to go before the next message (as a timed-out send
    /// does), so the peer never sees it torn.
    #[cfg(mp_async)]
    pub(crate) async fn send_async(&self, payload: &[u8]) -> Result<()> {
        self.check_open()?;
        let mut started = false;
        loop {
            let busy = match self.output.take(Deadline::now()) {
                Ok(mut pending) => match self.send_some_now(&mut pending, payload, &mut started) {
                    Err(e) if e.is_timeout() => false,
                    sent => return sent,
                },
                Err(_) => true,
            };
            let tick = busy.then_some(BUSY_TICK);
            crate::aio::ready_any(&[net::socket_handle(self.socket())], true, tick).await?;
        }
    }

    /// One attempt of [`send_async`](Self::send_async): flushes what is
    /// pending (an earlier message's rest, or this one's once `started`),
    /// then writes this message, keeping what did not fit. `Timeout`: wait
    /// for room.
    #[cfg(mp_async)]
    fn send_some_now(
        &self,
        pending: &mut Vec<u8>,
        payload: &[u8],
        started: &mut bool,
    ) -> Result<()> {
        self.flush(pending, Deadline::now())?;
        if *started {
            return Ok(());
        }
        let written = self.write_message(pending, payload, Deadline::now());
        // Cut part-way: its rest is pending, and goes first next time.
        *started = written.is_err() && !pending.is_empty();
        written
    }

    /// Sleeps until the socket is ready for `flags` (or hung up), or the
    /// deadline passes.
    fn wait(&self, interest: Interest, deadline: Deadline) -> Result<()> {
        if poll_fd(self.socket(), interest, deadline)? {
            Ok(())
        } else {
            Err(Error::timeout())
        }
    }

    /// Whether a receive would find data (or the end of the stream) within
    /// `timeout`.
    pub(crate) fn poll(&self, timeout: Duration) -> bool {
        // Another caller receiving now has the state out: the socket says.
        if self.input.peek(|i| i.kept.is_some() || i.start < i.end) == Some(true) {
            return true;
        }
        self.dropped.load(Ordering::Relaxed)
            || poll_fd(self.socket(), Interest::Read, Deadline::after(timeout)).unwrap_or(true)
    }
}

/// Waits for `interest` on `fd` until `deadline`; whether it is ready (an
/// error or hang-up counts as ready: the next call reports it).
pub(crate) fn poll_fd(
    socket: SocketRef<'_>,
    interest: Interest,
    deadline: Deadline,
) -> Result<bool> {
    poll_many(&mut [net::socket_watch(socket, interest)], deadline).map(|n| n > 0)
}

/// Waits until one of `watches` is ready or `deadline` (none: forever)
/// passes; how many are ready.
pub(crate) fn poll_many(watches: &mut [Watch<'_>], deadline: Deadline) -> Result<usize> {
    net::poll_until(watches, deadline.instant()).map_err(|e| Error::io("poll", e))
}

fn socket_error(what: &'static str, e: io::Error) -> Error {
    if net::is_disconnect(&e) {
        Error::new(ErrorKind::Disconnected, "the peer closed the connection").with_source(e)
    } else {
        Error::io(what, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_headers() {
        assert_eq!(header(0), ([0; 12], 4));
        let (h, n) = header(16385);
        assert_eq!(&h[..n], &[0, 0, 0x40, 0x01]);
        let (h, n) = header(0x7fff_ffff);
        assert_eq!(&h[..n], &[0x7f, 0xff, 0xff, 0xff]);
        let (h, n) = header(0x8000_0000);
        assert_eq!(&h[..n], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
        // A length past 4 GiB takes the long form (where usize holds one).
        if let Ok(huge) = usize::try_from(1u64 << 40) {
            let (h, n) = header(huge);
            assert_eq!(parse_header(&h[..n]).unwrap(), Some((12, 1 << 40)));
        }
    }

    #[test]
    fn partial_and_bad_headers() {
        assert_eq!(parse_header(&[0, 0]).unwrap(), None);
        assert_eq!(parse_header(&[0xff, 0xff, 0xff, 0xff, 0, 0]).unwrap(), None);
        assert_eq!(parse_header(&[0, 0, 0, 5, 1]).unwrap(), Some((4, 5)));
        let e = parse_header(&[0xff, 0xff, 0xff, 0xfe]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        let e = parse_header(&[0x80, 0, 0, 0]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
}
