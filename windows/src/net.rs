//! Stream connections for `connection` on Windows: TCP sockets and named
//! pipes (`\\.\pipe\...`, the local address form Python's
//! `multiprocessing.connection` uses there), behind one [`Socket`] type
//! with the non-blocking calls the facade's stream layer is written for.
//!
//! - A TCP socket is switched to non-blocking mode; a pipe end's reads and
//!   writes are overlapped and looked at, not waited in ([`PipeEnd`]).
//!   Nothing blocks inside the system, so one thread's wait never holds up
//!   another's send on the same end (a synchronous handle would serialise
//!   them).
//! - Readiness ([`poll_until`]): `WSAPoll` for sockets and TCP listeners
//!   (with the whole timeout when nothing else is watched); a pipe is
//!   looked at with `PeekNamedPipe` and a pending zero-byte read, a pipe
//!   listener with a non-blocking `ConnectNamedPipe`, and the loop naps
//!   between looks (20 µs, backing off to 1 ms).
//! - A pipe listener keeps one instance waiting for a client; accepting
//!   hands that instance over and makes the next. The first instance is
//!   made with `FILE_FLAG_FIRST_PIPE_INSTANCE` after a look that nobody
//!   serves the name, so a name someone else holds is refused
//!   (`AddrInUse`), not shared (Wine 8 ignores the flag: the look is what
//!   refuses it there).
//! - Pipes are Python's: message pipes on overlapped handles, one message
//!   a message, no header ([`crate::pipe`], which translates to and from
//!   the socket framing the facade speaks on both).
#![allow(unsafe_code)]

use crate::pipe::{is_broken_code, PipeEnd};
use crate::sys;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::windows::io::{
    AsRawHandle, AsRawSocket, BorrowedHandle, BorrowedSocket, IntoRawHandle, OwnedHandle,
    OwnedSocket, RawHandle, RawSocket,
};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_NO_DATA, ERROR_PIPE_BUSY,
    ERROR_PIPE_CONNECTED, ERROR_PIPE_LISTENING, GENERIC_READ, GENERIC_WRITE, HANDLE,
};
use windows_sys::Win32::Networking::WinSock::{
    closesocket, WSAPoll, WSAStartup, POLLERR, POLLHUP, POLLRDNORM, POLLWRNORM, SOCKET, WSADATA,
    WSAPOLLFD,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, PeekNamedPipe,
    SetNamedPipeHandleState, WaitNamedPipeW, PIPE_NOWAIT, PIPE_READMODE_BYTE,
    PIPE_READMODE_MESSAGE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE,
    PIPE_UNLIMITED_INSTANCES,
};

/// Each pipe end's buffer: about what a Unix socket pair holds (Linux's
/// default is 208 KiB), so a peer may write a large frame's head before
/// the other end reads.
const BUFFER: u32 = 256 * 1024;

/// Where default local addresses live: a pipe name's prefix.
pub const LOCAL_PREFIX: &str = r"\\.\pipe\multiproc-";

/// A connected stream: a TCP socket or a named pipe end.
#[derive(Debug)]
pub enum Socket {
    Pipe(PipeEnd),
    Tcp(TcpStream),
}

/// A named pipe end connected to another (what `connect` and a pipe
/// listener's `accept` give).
#[derive(Debug)]
pub struct LocalStream(PipeEnd);

impl Socket {
    /// A received stream (a connection passed from another process): a
    /// TCP socket if the handle is one, else a pipe end; made non-blocking.
    pub fn from_handle(handle: OwnedHandle) -> io::Result<Socket> {
        match adopt_socket(handle) {
            Ok(socket) => Ok(Socket::from(TcpStream::from(socket))),
            Err(handle) => Ok(Socket::Pipe(PipeEnd::new(handle)?)),
        }
    }

    /// Another handle to the same stream.
    pub fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Pipe(p) => Socket::Pipe(p.try_clone()?),
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
        })
    }

    /// The stream's handle, to pass to another process: a pipe end's, or
    /// a TCP socket's (see [`socket_as_handle`]).
    pub fn handle(&self) -> BorrowedHandle<'_> {
        match self {
            Socket::Pipe(p) => std::os::windows::io::AsHandle::as_handle(p.handle()),
            Socket::Tcp(s) => socket_as_handle(s),
        }
    }
}

impl From<TcpStream> for Socket {
    fn from(s: TcpStream) -> Socket {
        // Without it, a receive would block in the system (see the docs);
        // a socket that refuses stays usable for blocking use only.
        let _ = s.set_nonblocking(true);
        Socket::Tcp(s)
    }
}

impl From<LocalStream> for Socket {
    fn from(s: LocalStream) -> Socket {
        Socket::Pipe(s.0)
    }
}

fn raw(h: &OwnedHandle) -> HANDLE {
    h.as_raw_handle() as HANDLE
}

/// Bytes waiting in a pipe; `None` once the other end is gone and nothing
/// is left.
pub(crate) fn pipe_available(h: HANDLE) -> io::Result<Option<usize>> {
    let mut avail = 0u32;
    // SAFETY: a pipe handle; only the count is asked for.
    let ok = unsafe {
        PeekNamedPipe(
            h,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            &mut avail,
            std::ptr::null_mut(),
        )
    };
    if ok != 0 {
        return Ok(Some(avail as usize));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(c) if is_broken_code(c as u32) => Ok(None),
        _ => Err(e),
    }
}

/// One receive into `buf`: waits for bytes if `block`, else reports
/// `WouldBlock`. `Ok(0)` is the end of the stream.
pub fn recv_some(socket: &Socket, buf: &mut [u8], block: bool) -> io::Result<usize> {
    loop {
        let got = match socket {
            Socket::Tcp(s) => (&*s).read(buf),
            Socket::Pipe(p) => p.recv(buf),
        };
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && block => {
                let mut watch = [Watch::socket(socket, Interest::Read)];
                poll_until(&mut watch, None)?;
            }
            other => return other,
        }
    }
}

/// One non-blocking send of `parts`; `WouldBlock` when there is no room.
pub fn send_some(socket: &Socket, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    match socket {
        Socket::Tcp(s) => (&*s).write_vectored(parts),
        Socket::Pipe(p) => p.send(parts),
    }
}

/// Shuts a stream: the peer sees it end. (A pipe end can be disconnected
/// only from the listener's side; a client's end ends when it is closed.)
pub fn shut_down(socket: &Socket) -> io::Result<()> {
    match socket {
        Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        // SAFETY: a pipe handle; a client end refuses, harmlessly.
        Socket::Pipe(p) => sys::check(unsafe { DisconnectNamedPipe(raw(p.handle())) }),
    }
}

/// Whether `e` says the peer closed the connection.
pub fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(e.kind(), K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted | K::NotConnected)
        || e.raw_os_error().is_some_and(|c| is_broken_code(c as u32) || c as u32 == ERROR_NO_DATA)
}

/// What a [`Watch`] waits for (a hang-up or an error always counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Bytes to read (or a peer to accept).
    Read,
    /// Room to write.
    Write,
    /// Only the hang-up or error.
    HangUp,
}

enum Target<'a> {
    Socket(&'a Socket),
    Pipe(BorrowedHandle<'a>),
    TcpListener(&'a TcpListener),
    LocalListener(&'a LocalListener),
}

/// One thing [`poll_until`] watches, and whether it turned out ready.
pub struct Watch<'a> {
    target: Target<'a>,
    pub interest: Interest,
    pub ready: bool,
}

impl<'a> Watch<'a> {
    pub fn socket(socket: &'a Socket, interest: Interest) -> Watch<'a> {
        Watch { target: Target::Socket(socket), interest, ready: false }
    }

    /// A pipe handle (the link beside a channel): readable, or hung up.
    pub fn pipe(handle: BorrowedHandle<'a>, interest: Interest) -> Watch<'a> {
        Watch { target: Target::Pipe(handle), interest, ready: false }
    }

    pub fn tcp_listener(listener: &'a TcpListener) -> Watch<'a> {
        Watch { target: Target::TcpListener(listener), interest: Interest::Read, ready: false }
    }

    pub fn local_listener(listener: &'a LocalListener) -> Watch<'a> {
        Watch { target: Target::LocalListener(listener), interest: Interest::Read, ready: false }
    }

    /// The socket to ask `WSAPoll` about, if it is one.
    fn raw_socket(&self) -> Option<usize> {
        match self.target {
            Target::Socket(Socket::Tcp(s)) => Some(s.as_raw_socket() as usize),
            Target::TcpListener(l) => Some(l.as_raw_socket() as usize),
            _ => None,
        }
    }

    /// Whether a pipe or pipe listener is ready now. A pipe's room to
    /// write cannot be asked for: after a nap, [`poll_until`] says it is
    /// ready, and the next write finds out.
    fn look(&self, napped: bool) -> bool {
        let pipe = |h: HANDLE| match pipe_available(h) {
            Ok(Some(n)) => match self.interest {
                Interest::Read => n > 0,
                Interest::Write => napped,
                Interest::HangUp => false,
            },
            Ok(None) | Err(_) => true,
        };
        match self.target {
            Target::Socket(Socket::Pipe(p)) => match self.interest {
                Interest::Read => p.readable(),
                Interest::Write => p.writable(),
                Interest::HangUp => pipe(raw(p.handle())),
            },
            Target::Pipe(h) => pipe(h.as_raw_handle() as HANDLE),
            Target::LocalListener(l) => l.has_client(),
            _ => false,
        }
    }

    /// A pipe waited on for room to write.
    fn is_pipe_write(&self) -> bool {
        self.interest == Interest::Write && matches!(self.target, Target::Pipe(_))
    }
}

/// Waits until one of `watches` is ready or `deadline` (`None`: never)
/// passes; sets each one's `ready` and returns how many are.
pub fn poll_until(watches: &mut [Watch<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    let sockets: Vec<usize> = watches.iter().filter_map(Watch::raw_socket).collect();
    let only_sockets = sockets.len() == watches.len();
    // A full pipe is looked at again after 200 µs (the reader needs the
    // time); anything else after 20 µs, backing off to 1 ms.
    let mut nap = if watches.iter().any(Watch::is_pipe_write) {
        Duration::from_micros(200)
    } else {
        Duration::from_micros(20)
    };
    let mut napped = false;
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut fds: Vec<WSAPOLLFD> = watches
            .iter()
            .filter_map(|w| {
                let events = match w.interest {
                    Interest::Read => POLLRDNORM,
                    Interest::Write => POLLWRNORM,
                    Interest::HangUp => 0,
                };
                w.raw_socket().map(|fd| WSAPOLLFD { fd, events, revents: 0 })
            })
            .collect();
        if !fds.is_empty() {
            // Only sockets: one WSAPoll for the whole wait (in slices an
            // `i32` of milliseconds holds); else a look, between naps.
            let timeout = if only_sockets {
                left.map_or(-1, |l| sys::millis(Some(l)).min(i32::MAX as u32) as i32)
            } else {
                0
            };
            // SAFETY: `fds` is a valid array of its length.
            if unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, timeout) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut polled = fds.iter();
        let mut n = 0;
        for w in watches.iter_mut() {
            w.ready = if w.raw_socket().is_some() {
                let fd = polled.next().expect("one per socket");
                fd.revents & (fd.events | POLLHUP | POLLERR) != 0
            } else {
                w.look(napped)
            };
            n += usize::from(w.ready);
        }
        if n > 0 || left.is_some_and(|l| l.is_zero()) {
            return Ok(n);
        }
        if !only_sockets {
            std::thread::sleep(left.map_or(nap, |l| l.min(nap)));
            nap = (nap * 2).min(Duration::from_millis(1));
            napped = true;
        }
    }
}

/// A pipe name as the system takes it, if `path` is one (`\\.\pipe\...`).
fn pipe_name(path: &Path) -> io::Result<Vec<u16>> {
    let text = path.to_string_lossy();
    if !text.to_ascii_lowercase().starts_with(r"\\.\pipe\") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text} is not a named pipe (\\\\.\\pipe\\NAME)"),
        ));
    }
    Ok(sys::wide(path.as_os_str()))
}

/// What a pipe is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The link beside a channel: bytes, synchronous handles.
    Link,
    /// A connection: messages, overlapped handles ([`PipeEnd`]).
    Message,
    /// A listener's waiting instance: as `Message`, but non-blocking until
    /// accepted, so that whether a client came can be asked.
    Listening,
}

/// A new instance of pipe `name` for `kind`; the first of its name
/// (refused if the name is taken) if `first`.
pub(crate) fn instance(name: &[u16], first: bool, kind: Kind) -> io::Result<OwnedHandle> {
    let mut flags = if first { FILE_FLAG_FIRST_PIPE_INSTANCE } else { 0 };
    let mut mode = PIPE_REJECT_REMOTE_CLIENTS;
    match kind {
        Kind::Link => mode |= PIPE_TYPE_BYTE | PIPE_READMODE_BYTE,
        Kind::Message | Kind::Listening => {
            flags |= FILE_FLAG_OVERLAPPED;
            mode |= PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE;
        }
    }
    if kind == Kind::Listening {
        mode |= PIPE_NOWAIT;
    }
    // SAFETY: a NUL-terminated name; default security, not inheritable.
    let h = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            PIPE_ACCESS_DUPLEX | flags,
            mode,
            PIPE_UNLIMITED_INSTANCES,
            BUFFER,
            BUFFER,
            0,
            std::ptr::null(),
        )
    };
    sys::owned(h).map_err(|e| {
        if first && e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
            io::Error::new(io::ErrorKind::AddrInUse, "the pipe name is taken")
        } else {
            e
        }
    })
}

/// Opens the client end of pipe `name`, made for `kind`.
pub(crate) fn open_client(name: &[u16], kind: Kind) -> io::Result<OwnedHandle> {
    let flags = if kind == Kind::Link { 0 } else { FILE_FLAG_OVERLAPPED };
    // SAFETY: a NUL-terminated name.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            flags,
            std::ptr::null_mut(),
        )
    };
    sys::owned(h)
}

impl LocalStream {
    /// Connects to the pipe listener at `path`; `NotFound` if nothing
    /// listens there. A listener busy handing over its instance is waited
    /// for (a few seconds at most).
    pub fn connect(path: impl AsRef<Path>) -> io::Result<LocalStream> {
        let name = pipe_name(path.as_ref())?;
        let start = Instant::now();
        loop {
            match open_client(&name, Kind::Message) {
                Ok(h) => return Ok(LocalStream(PipeEnd::new(h)?)),
                Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                    if start.elapsed() > Duration::from_secs(5) {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the pipe is busy"));
                    }
                    // SAFETY: a NUL-terminated name.
                    unsafe { WaitNamedPipeW(name.as_ptr(), 50) };
                }
                Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => {
                    return Err(io::Error::new(io::ErrorKind::NotFound, e))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connected pair of pipe ends: a client's, then a listener's (only
    /// the second can [`shut_down`] the pair while the other is open).
    pub fn pair() -> io::Result<(LocalStream, LocalStream)> {
        let (server, client) = crate::link::pair_of(Kind::Message)?;
        Ok((LocalStream(PipeEnd::new(client)?), LocalStream(PipeEnd::new(server)?)))
    }
}

/// Blocking reads and writes of the socket framing (a test's raw peer;
/// see [`PipeEnd`]): they look again after a short nap. A write that
/// completes a message returns when the message is written.
impl Read for &LocalStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(100))
                }
                other => return other,
            }
        }
    }
}

impl Write for &LocalStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.0.send(&[IoSlice::new(buf)]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(100))
                }
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for LocalStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for LocalStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A named pipe listener: one instance waiting for a client.
#[derive(Debug)]
pub struct LocalListener {
    name: Vec<u16>,
    waiting: Mutex<OwnedHandle>,
}

impl LocalListener {
    /// Listens at pipe `path` (`\\.\pipe\NAME`); `AddrInUse` if another
    /// listener has the name.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<LocalListener> {
        let name = pipe_name(path.as_ref())?;
        // Windows refuses a first instance of a taken name; Wine 8 does not
        // (seen here), so look first: only a name nobody serves is free.
        // SAFETY: a NUL-terminated name.
        let free = unsafe { WaitNamedPipeW(name.as_ptr(), 1) } == 0
            && io::Error::last_os_error().raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32);
        if !free {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "the pipe name is taken"));
        }
        let waiting = instance(&name, true, Kind::Listening)?;
        Ok(LocalListener { name, waiting: Mutex::new(waiting) })
    }

    /// A listener on the waiting instance
    /// [`waiting_handle`](Self::waiting_handle) gave, for pipe `path`.
    pub fn from_handle(handle: OwnedHandle, path: &Path) -> io::Result<LocalListener> {
        let name = pipe_name(path)?;
        let mode = PIPE_READMODE_MESSAGE | PIPE_NOWAIT;
        // SAFETY: a pipe handle and a mode word.
        sys::check(unsafe {
            SetNamedPipeHandleState(raw(&handle), &mode, std::ptr::null(), std::ptr::null())
        })?;
        Ok(LocalListener { name, waiting: Mutex::new(handle) })
    }

    /// A handle to the waiting instance, to go on listening in another
    /// process ([`from_handle`](Self::from_handle)).
    pub fn waiting_handle(&self) -> io::Result<OwnedHandle> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).try_clone()
    }

    /// Always non-blocking (accepting never waits).
    pub fn set_nonblocking(&self, _: bool) -> io::Result<()> {
        Ok(())
    }

    /// The waiting instance's state: `Ok(true)` once a client connected.
    fn state(h: HANDLE) -> io::Result<bool> {
        // SAFETY: a non-blocking pipe instance: this only reports its state.
        if unsafe { ConnectNamedPipe(h, std::ptr::null_mut()) } != 0 {
            return Ok(false);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error().map(|c| c as u32) {
            // A client that connected and already left (ERROR_NO_DATA) is
            // accepted too: what it wrote is still there to read, as on a
            // Unix socket.
            Some(ERROR_PIPE_CONNECTED | ERROR_NO_DATA) => Ok(true),
            Some(ERROR_PIPE_LISTENING) => Ok(false),
            _ => Err(e),
        }
    }

    fn has_client(&self) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        Self::state(raw(&waiting)).unwrap_or(true)
    }

    /// The next client, if one connected; `WouldBlock` otherwise.
    pub fn accept(&self) -> io::Result<(LocalStream, ())> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if !Self::state(raw(&waiting))? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let next = instance(&self.name, false, Kind::Listening)?;
        let connected = std::mem::replace(&mut *waiting, next);
        Ok((LocalStream(PipeEnd::new(connected)?), ()))
    }
}

/// A socket as the handle it is, to move to another process as handles
/// move (`DuplicateHandle`, inheritance).
///
/// A Winsock socket of the system's own providers is a file handle of the
/// kernel's socket driver, and a process that meets one it did not make
/// takes it up on first use (as it does an inherited one). The documented
/// alternative, `WSADuplicateSocketW`, needs the receiving process's id
/// before sending, which a Queue's sender does not know. What this does
/// not cover: a layered service provider (deprecated since Windows 8)
/// that wraps sockets in handles of its own.
pub fn socket_as_handle(socket: &impl AsRawSocket) -> BorrowedHandle<'_> {
    // SAFETY: the socket is open for the borrow's life (it is borrowed
    // from `socket`), and its value is a handle (above).
    unsafe { BorrowedHandle::borrow_raw(socket.as_raw_socket() as RawHandle) }
}

/// A socket of this process's Winsock made from `handle`, a socket that
/// came as a handle (moved from another process, or inherited), which is
/// then closed; the handle back if it is not a socket.
///
/// Winsock keeps its own record of the sockets a process uses; one that
/// arrives as a bare handle is entered there by duplicating it for this
/// very process (`WSADuplicateSocketW`, then `WSASocketW` from the
/// description), as the standard library's `try_clone` does. Wine refuses
/// a socket it has no record of, so this step is needed there; Windows
/// takes up an unknown socket handle by itself, and the step costs a
/// duplicate.
fn adopt_socket(handle: OwnedHandle) -> Result<OwnedSocket, OwnedHandle> {
    winsock_ready();
    let raw = handle.as_raw_handle() as RawSocket;
    // SAFETY: `handle` stays open for the borrow, which ends here.
    let adopted = unsafe { BorrowedSocket::borrow_raw(raw) }.try_clone_to_owned();
    let Ok(adopted) = adopted else {
        return Err(handle);
    };
    // The handle it came as goes: as a socket where Winsock knows it
    // (Windows, after the duplicate), else as a plain handle (Wine).
    // SAFETY: `raw` is `handle`'s, which is owned here and not used after.
    if unsafe { closesocket(raw as SOCKET) } == 0 {
        let _ = handle.into_raw_handle();
    }
    Ok(adopted)
}

/// Starts Winsock in this process once (the standard library does so only
/// when it makes a socket itself; a process may first meet one received).
fn winsock_ready() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // SAFETY: a zeroed WSADATA for the call to fill. Winsock counts
        // starts; this one is never undone (it lasts the process).
        unsafe {
            let mut data: WSADATA = std::mem::zeroed();
            WSAStartup(0x202, &mut data);
        }
    });
}

/// A listening TCP socket's handle, to go on listening in another process.
pub fn tcp_listener_handle(listener: &TcpListener) -> io::Result<OwnedHandle> {
    socket_as_handle(listener).try_clone_to_owned()
}

/// A listener from the handle [`tcp_listener_handle`] gave (moved here).
pub fn tcp_listener_from_handle(handle: OwnedHandle) -> io::Result<TcpListener> {
    let socket = adopt_socket(handle)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not a socket"))?;
    let l = TcpListener::from(socket);
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Named pipes vanish with their last instance: no file is left behind.
pub fn is_stale(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `payload` in the socket framing.
    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// Sends all of `bytes`, waiting while a message is being written.
    fn send_all(socket: &Socket, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match send_some(socket, &[IoSlice::new(bytes)]) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut w = [Watch::socket(socket, Interest::Write)];
                    poll_until(&mut w, Some(Instant::now() + Duration::from_secs(5))).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Reads exactly `n` bytes.
    fn recv_exactly(socket: &Socket, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        let mut got = 0;
        while got < n {
            match recv_some(socket, &mut out[got..], true).unwrap() {
                0 => panic!("ended after {got} of {n}"),
                k => got += k,
            }
        }
        out
    }

    #[test]
    fn a_pipe_listener_accepts_and_messages_cross_both_ways() {
        let path = format!(r"{LOCAL_PREFIX}test-{}", std::process::id());
        let listener = LocalListener::bind(&path).unwrap();
        assert_eq!(LocalListener::bind(&path).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(listener.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let client = Socket::from(LocalStream::connect(&path).unwrap());
        let mut w = [Watch::local_listener(&listener)];
        assert_eq!(poll_until(&mut w, Some(Instant::now() + Duration::from_secs(5))).unwrap(), 1);
        let server = Socket::from(listener.accept().unwrap().0);
        let mut buf = [0u8; 16];
        assert_eq!(
            recv_some(&server, &mut buf, false).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // A message, then an empty one (which no peek sees: the pending
        // zero-byte read does), each read back in the socket framing.
        send_all(&client, &framed(b"hello"));
        assert_eq!(recv_exactly(&server, 9), framed(b"hello"));
        let mut r = [Watch::socket(&server, Interest::Read)];
        assert_eq!(poll_until(&mut r, Some(Instant::now())).unwrap(), 0);
        send_all(&client, &framed(b""));
        assert_eq!(poll_until(&mut r, Some(Instant::now() + Duration::from_secs(5))).unwrap(), 1);
        assert_eq!(recv_exactly(&server, 4), framed(b""));
        // A message larger than the pipe's buffer is written while read.
        let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let frame = framed(&big);
        std::thread::scope(|s| {
            s.spawn(|| send_all(&server, &frame));
            assert!(recv_exactly(&client, frame.len()) == frame);
        });
        // The end, once what was sent is read.
        send_all(&server, &framed(b"last"));
        drop(server);
        assert_eq!(recv_exactly(&client, 8), framed(b"last"));
        assert_eq!(recv_some(&client, &mut buf, true).unwrap(), 0);
        let e = send_some(&client, &[IoSlice::new(&framed(b"x"))]).unwrap_err();
        assert!(is_disconnect(&e), "{e}");
        // A bad header is refused.
        let (a, b) = LocalStream::pair().unwrap();
        let (a, b) = (Socket::from(a), Socket::from(b));
        let e = send_some(&a, &[IoSlice::new(&(-2i32).to_be_bytes())]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        drop(a);
        let e = send_some(&b, &[IoSlice::new(&framed(b"x"))]).unwrap_err();
        assert!(is_disconnect(&e), "{e}");
        assert!(LocalStream::connect(r"\\.\pipe\multiproc-nobody-listens").is_err());
    }

    #[test]
    fn tcp_sockets_do_not_block() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Socket::from(TcpStream::connect(addr).unwrap());
        let mut w = [Watch::tcp_listener(&listener)];
        assert_eq!(poll_until(&mut w, Some(Instant::now() + Duration::from_secs(5))).unwrap(), 1);
        let server = Socket::from(listener.accept().unwrap().0);
        let mut buf = [0u8; 8];
        assert_eq!(
            recv_some(&server, &mut buf, false).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        send_some(&client, &[IoSlice::new(b"abc")]).unwrap();
        assert_eq!(recv_some(&server, &mut buf, true).unwrap(), 3);
        drop(client);
        assert_eq!(recv_some(&server, &mut buf, true).unwrap(), 0);
    }
}
