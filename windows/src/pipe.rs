//! Named pipe ends for `connection`, as Python's
//! `multiprocessing.connection` makes them on Windows (`AF_PIPE`): pipes of
//! the message type, read in message mode, on overlapped handles. A message
//! of the connection is one pipe message, written by one `WriteFile`, with
//! no length header: the pipe keeps the boundaries.
//!
//! The facade's stream layer speaks the socket framing (a length header,
//! then the bytes; see `connection`) in non-blocking pieces, on TCP and
//! pipes alike. A [`PipeEnd`] translates between the two:
//!
//! - **Sending**, it takes the framed bytes in, reads the length from the
//!   header, and once a whole message is there writes its bytes as one
//!   message. The call that completes a message reports all its bytes
//!   taken only once the write is done (the pipe took them, or the reader
//!   did); while it is not, it keeps back the last byte, and the caller
//!   offers it again until it is taken. So a send returns when Python's
//!   would, and a timeout leaves the write going, finished before the next.
//! - **Receiving**, it asks the pipe how long the next message is
//!   (`PeekNamedPipe`), hands out a header for that length, then the
//!   message's bytes as they are read.
//! - **Readiness**: a zero-byte read, as Python's `connection.wait` makes,
//!   is kept pending on an end that is waited on. It ends when a message
//!   arrives: without taking it, or, for an empty message (which no peek
//!   can see), taking it; the end then remembers that one empty message.
//!
//! Each end keeps its own state, so a clone (another handle to the same
//! pipe end) has its own. What is lost when an end is dropped: an empty
//! message its pending zero-byte read took, and a message whose send had
//! timed out and is cut off (the peer reads it short).
#![allow(unsafe_code)]

use crate::sys;
use std::io::{self, IoSlice};
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::{Mutex, MutexGuard};
use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA,
    ERROR_PIPE_NOT_CONNECTED, HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Pipes::{
    PeekNamedPipe, SetNamedPipeHandleState, PIPE_READMODE_MESSAGE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::CreateEventW;
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

/// Whether `code` says the other end is gone.
pub(crate) fn is_broken_code(code: u32) -> bool {
    [ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED].contains(&code)
}

fn code(e: &io::Error) -> Option<u32> {
    e.raw_os_error().map(|c| c as u32)
}

/// One overlapped operation's block and event, boxed so its address holds
/// while the system writes to it.
struct Op {
    ov: OVERLAPPED,
    event: OwnedHandle,
}

// SAFETY: an `Op` is a block of plain words and an event handle; it is
// only touched under its end's locks, from whichever thread holds them.
unsafe impl Send for Op {}

/// How an operation ended: the bytes moved and whether the message goes
/// on past them (`ERROR_MORE_DATA`).
type Done = (usize, bool);

impl Op {
    fn new() -> io::Result<Box<Op>> {
        // SAFETY: an unnamed manual-reset event, not signalled, not
        // inheritable.
        let event = sys::owned(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) })?;
        // SAFETY: OVERLAPPED is plain data; all zeroes is its start state.
        let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
        ov.hEvent = event.as_raw_handle() as HANDLE;
        Ok(Box::new(Op { ov, event }))
    }

    /// Clears the block for the next operation (the event is reset by the
    /// call that starts it).
    fn fresh(&mut self) -> *mut OVERLAPPED {
        // SAFETY: as in `new`.
        self.ov = unsafe { std::mem::zeroed() };
        self.ov.hEvent = self.event.as_raw_handle() as HANDLE;
        &mut self.ov
    }

    /// What the call that started it said: `Ok(None)` while it is still
    /// under way.
    fn started(&self, h: HANDLE, ok: i32) -> io::Result<Option<Done>> {
        if ok == 0 {
            let e = io::Error::last_os_error();
            match code(&e) {
                Some(ERROR_IO_PENDING) => return Ok(None),
                Some(ERROR_MORE_DATA) => {}
                _ => return Err(e),
            }
        }
        self.result(h, true)
    }

    /// The result of a started operation; `Ok(None)` if it is under way
    /// and `!wait`.
    fn result(&self, h: HANDLE, wait: bool) -> io::Result<Option<Done>> {
        let mut n = 0u32;
        // SAFETY: `ov` belongs to an operation started on `h`.
        if unsafe { GetOverlappedResult(h, &self.ov, &mut n, i32::from(wait)) } != 0 {
            return Ok(Some((n as usize, false)));
        }
        let e = io::Error::last_os_error();
        match code(&e) {
            Some(ERROR_MORE_DATA) => Ok(Some((n as usize, true))),
            Some(ERROR_IO_INCOMPLETE) => Ok(None),
            _ => Err(e),
        }
    }

    /// Cancels the operation if it is under way and waits until it ended:
    /// what it did, if anything (the block may be freed afterwards).
    fn finish(&self, h: HANDLE) -> Option<Done> {
        if let Ok(Some(done)) = self.result(h, false) {
            return Some(done);
        }
        // SAFETY: `ov` belongs to an operation started on `h`; cancelling
        // one that just ended is harmless.
        unsafe { CancelIoEx(h, &self.ov) };
        self.result(h, true).ok().flatten()
    }
}

/// The socket framing's header for a message of `len` bytes (as the
/// facade writes it: 4 bytes big-endian, or -1 and 8 more).
fn header(len: u64) -> ([u8; 12], usize) {
    let mut h = [0; 12];
    if len > 0x7fff_ffff {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&len.to_be_bytes());
        (h, 12)
    } else {
        h[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (h, 4)
    }
}

/// The header's length and the whole frame's, once `frame` begins with a
/// whole header; `None` until then.
fn frame_len(frame: &[u8]) -> io::Result<Option<(usize, usize)>> {
    let Some(short) = frame.first_chunk::<4>() else {
        return Ok(None);
    };
    let (head, len) = match i32::from_be_bytes(*short) {
        n if n >= 0 => (4, n as u64),
        -1 => match frame[4..].first_chunk::<8>() {
            Some(long) => (12, u64::from_be_bytes(*long)),
            None => return Ok(None),
        },
        n => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a message length of {n}"),
            ))
        }
    };
    if len > u64::from(u32::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a pipe message holds at most 4 GiB - 1 bytes",
        ));
    }
    Ok(Some((head, head + len as usize)))
}

#[derive(Default)]
struct Reader {
    /// The header of the message being handed out, and how much of it is.
    head: [u8; 12],
    head_at: usize,
    head_len: usize,
    /// Its bytes not yet read.
    left: usize,
    /// A zero-byte read waiting for the next message, and the block it
    /// uses when none is (kept, not made again for each wait).
    probe: Option<Box<Op>>,
    idle_probe: Option<Box<Op>>,
    /// The probe took an empty message, not yet handed out.
    empty: bool,
    /// For reads of a message's bytes.
    op: Option<Box<Op>>,
}

#[derive(Default)]
struct Writer {
    /// A message's header and bytes taken so far.
    frame: Vec<u8>,
    /// A message being written: its operation, and its frame (whose bytes
    /// past the header are what is written).
    pending: Option<(Box<Op>, Vec<u8>)>,
    /// The block for the next write, once one was made.
    idle: Option<Box<Op>>,
}

/// The frame buffer kept for the next message if it is no bigger than
/// this (a buffer that once held a huge message is let go).
const KEEP_FRAME: usize = 1 << 20;

/// The block in `slot`, or a new one.
fn take_op(slot: &mut Option<Box<Op>>) -> io::Result<Box<Op>> {
    match slot.take() {
        Some(op) => Ok(op),
        None => Op::new(),
    }
}

/// One end of a connected message pipe (see the module's docs).
pub struct PipeEnd {
    handle: OwnedHandle,
    reader: Mutex<Reader>,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeEnd").field("handle", &self.handle).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PipeEnd {
    /// An end on `handle`, an overlapped handle to a message pipe end,
    /// switched to message reads and waiting calls.
    pub fn new(handle: OwnedHandle) -> io::Result<PipeEnd> {
        let mode = PIPE_READMODE_MESSAGE | PIPE_WAIT;
        // SAFETY: a pipe handle and a mode word.
        sys::check(unsafe {
            SetNamedPipeHandleState(
                handle.as_raw_handle() as HANDLE,
                &mode,
                std::ptr::null(),
                std::ptr::null(),
            )
        })?;
        Ok(PipeEnd { handle, reader: Mutex::default(), writer: Mutex::default() })
    }

    pub fn handle(&self) -> &OwnedHandle {
        &self.handle
    }

    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle() as HANDLE
    }

    /// Another end on the same pipe end, with its own state.
    pub fn try_clone(&self) -> io::Result<PipeEnd> {
        PipeEnd::new(self.handle.try_clone()?)
    }

    /// The next message's length, if one is there; `None` once the other
    /// end is gone and nothing is left. (An empty message shows as none.)
    fn peek(&self) -> io::Result<Option<Option<usize>>> {
        let (mut avail, mut left) = (0u32, 0u32);
        // SAFETY: a pipe handle; only the counts are asked for.
        let ok = unsafe {
            PeekNamedPipe(
                self.raw(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut avail,
                &mut left,
            )
        };
        if ok != 0 {
            return Ok(Some((avail > 0).then_some(left as usize)));
        }
        let e = io::Error::last_os_error();
        match code(&e) {
            Some(c) if is_broken_code(c) => Ok(None),
            _ => Err(e),
        }
    }

    /// Collects a finished probe: an empty message it took, or nothing.
    fn settle(&self, r: &mut Reader) {
        if let Some(probe) = &r.probe {
            match probe.result(self.raw(), false) {
                Ok(None) => return,
                Ok(Some((_, more))) => r.empty |= !more,
                Err(_) => {}
            }
            r.idle_probe = r.probe.take();
        }
    }

    /// Starts a probe unless one is pending; whether a message (or the end)
    /// is there already.
    fn probe(&self, r: &mut Reader) -> io::Result<bool> {
        if r.probe.is_some() || r.empty {
            return Ok(r.empty);
        }
        let mut op = take_op(&mut r.idle_probe)?;
        let ov = op.fresh();
        let mut none = [0u8; 0];
        // SAFETY: a zero-byte read into a valid (empty) buffer; the block
        // is boxed and kept until the read ends (`settle`, or `Drop`).
        let ok = unsafe { ReadFile(self.raw(), none.as_mut_ptr(), 0, std::ptr::null_mut(), ov) };
        let started = op.started(self.raw(), ok);
        // Pending, it is the probe; done already, its block waits for the next.
        let slot = if matches!(started, Ok(None)) { &mut r.probe } else { &mut r.idle_probe };
        *slot = Some(op);
        match started {
            Ok(None) => Ok(false),
            Ok(Some((_, more))) => {
                r.empty |= !more;
                Ok(true)
            }
            Err(e) if code(&e).is_some_and(is_broken_code) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Reads (part of) the current message into `buf`, whose length is at
    /// most what is left of it; `Ok(0)` if the other end is gone.
    fn read_part(&self, r: &mut Reader, buf: &mut [u8]) -> io::Result<usize> {
        if r.op.is_none() {
            r.op = Some(Op::new()?);
        }
        let op = r.op.as_mut().expect("made above");
        let ov = op.fresh();
        let n = buf.len().min(u32::MAX as usize) as u32;
        // SAFETY: a buffer of `n` bytes, which outlives the read: the
        // message is there, and the read is waited for before returning.
        let ok = unsafe { ReadFile(self.raw(), buf.as_mut_ptr(), n, std::ptr::null_mut(), ov) };
        let done = match op.started(self.raw(), ok) {
            Ok(Some(done)) => Ok(done),
            Ok(None) => op.result(self.raw(), true).map(|d| d.unwrap_or((0, false))),
            Err(e) => Err(e),
        };
        match done {
            Ok((n, _)) => Ok(n),
            Err(e) if code(&e).is_some_and(is_broken_code) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// One non-blocking receive in the socket framing: `WouldBlock` when
    /// no message is there, `Ok(0)` once the other end is gone.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut r = lock(&self.reader);
        loop {
            if r.head_at < r.head_len {
                let n = (r.head_len - r.head_at).min(buf.len());
                buf[..n].copy_from_slice(&r.head[r.head_at..r.head_at + n]);
                r.head_at += n;
                return Ok(n);
            }
            if r.left > 0 {
                let want = r.left.min(buf.len());
                let n = self.read_part(&mut r, &mut buf[..want])?;
                if n == 0 {
                    return Ok(0);
                }
                r.left -= n;
                return Ok(n);
            }
            self.settle(&mut r);
            let len = if std::mem::take(&mut r.empty) {
                0
            } else {
                match self.peek()? {
                    None => return Ok(0),
                    Some(None) => return Err(io::ErrorKind::WouldBlock.into()),
                    Some(Some(len)) => len,
                }
            };
            let (head, head_len) = header(len as u64);
            (r.head, r.head_at, r.head_len, r.left) = (head, 0, head_len, len);
        }
    }

    /// Whether a receive would find something (or the end) now. If not, a
    /// probe is left pending, so that a message, even an empty one, is
    /// seen at the next look.
    pub fn readable(&self) -> bool {
        let mut r = lock(&self.reader);
        if r.head_at < r.head_len || r.left > 0 {
            return true;
        }
        self.settle(&mut r);
        if r.empty {
            return true;
        }
        match self.peek() {
            Ok(Some(None)) => self.probe(&mut r).unwrap_or(true),
            _ => true,
        }
    }

    /// Whether a send would take bytes now (no message is being written).
    pub fn writable(&self) -> bool {
        let w = lock(&self.writer);
        match &w.pending {
            Some((op, _)) => !matches!(op.result(self.raw(), false), Ok(None)),
            None => true,
        }
    }

    /// One non-blocking send of framed bytes (see the module's docs);
    /// `WouldBlock` while a message is being written.
    pub fn send(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut w = lock(&self.writer);
        if let Some((op, _)) = &w.pending {
            let done = op.result(self.raw(), false);
            if let Ok(None) = done {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let (op, frame) = w.pending.take().expect("checked above");
            w.recycle(op, frame);
            // The byte kept back from the message just written.
            return done.map(|_| 1).map_err(broken);
        }
        let mut taken = 0;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                let want = match frame_len(&w.frame)? {
                    Some((_, total)) => total - w.frame.len(),
                    None if w.frame.len() < 4 => 4 - w.frame.len(),
                    None => 12 - w.frame.len(),
                };
                let k = want.min(part.len());
                w.frame.extend_from_slice(&part[..k]);
                part = &part[k..];
                taken += k;
                if let Some((head, total)) = frame_len(&w.frame)? {
                    if w.frame.len() == total {
                        let frame = std::mem::take(&mut w.frame);
                        return self.write_message(&mut w, frame, head, taken);
                    }
                }
            }
        }
        Ok(taken)
    }

    /// Writes `frame`'s bytes past its `head`-byte header as one message;
    /// `taken` bytes of the frame came with this call. Done: all are
    /// taken; under way: all but the last.
    fn write_message(
        &self,
        w: &mut Writer,
        frame: Vec<u8>,
        head: usize,
        taken: usize,
    ) -> io::Result<usize> {
        let mut op = take_op(&mut w.idle)?;
        let ov = op.fresh();
        let bytes = &frame[head..];
        // SAFETY: `frame` and the boxed block are kept until the write
        // ends (in `pending`, collected by `send` or `Drop`); a Vec's heap
        // buffer does not move when the Vec does.
        let ok = unsafe {
            WriteFile(self.raw(), bytes.as_ptr(), bytes.len() as u32, std::ptr::null_mut(), ov)
        };
        match op.started(self.raw(), ok) {
            Ok(None) => {
                w.pending = Some((op, frame));
                Ok(taken - 1)
            }
            done => {
                w.recycle(op, frame);
                done.map(|_| taken).map_err(broken)
            }
        }
    }
}

impl Writer {
    /// Keeps a finished write's block and (if not huge) its buffer for
    /// the next message.
    fn recycle(&mut self, op: Box<Op>, mut frame: Vec<u8>) {
        self.idle = Some(op);
        if frame.capacity() <= KEEP_FRAME {
            frame.clear();
            self.frame = frame;
        }
    }
}

/// A write's error, with a gone peer as `BrokenPipe`.
fn broken(e: io::Error) -> io::Error {
    match code(&e) {
        Some(c) if is_broken_code(c) || c == ERROR_NO_DATA => io::ErrorKind::BrokenPipe.into(),
        _ => e,
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let h = self.raw();
        let r = self.reader.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(probe) = r.probe.take() {
            probe.finish(h);
        }
        let w = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((op, _bytes)) = w.pending.take() {
            op.finish(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_from_their_headers() {
        assert_eq!(frame_len(&[0, 0]).unwrap(), None);
        assert_eq!(frame_len(&[0, 0, 0, 5]).unwrap(), Some((4, 9)));
        assert_eq!(frame_len(&[0xff; 4]).unwrap(), None);
        let mut long = vec![0xff; 4];
        long.extend(9u64.to_be_bytes());
        assert_eq!(frame_len(&long).unwrap(), Some((12, 21)));
        assert!(frame_len(&[0xff, 0, 0, 0]).is_err());
        let mut huge = vec![0xff; 4];
        huge.extend((1u64 << 40).to_be_bytes());
        assert!(frame_len(&huge).is_err());
        assert_eq!(header(5), ([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0], 4));
        assert_eq!(header(1 << 31).1, 12);
    }
}
