//! The Unix socket that accompanies every Pipe: the kernel counts the
//! handles of each end, so [`peer_gone`] sees a peer that closed or died
//! (POLLHUP once every handle of the other end is gone), and [`send_fds`] /
//! [`recv_fds`] move file descriptors to a running process (SCM_RIGHTS).

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

/// The kernel's limit on descriptors in one SCM_RIGHTS message.
const BATCH: usize = 253;
/// How long [`recv_fds`] waits for descriptors a message says were sent
/// before it (an honest peer has queued them already).
const FD_WAIT: Duration = Duration::from_secs(5);

/// Whether every handle of the socket's other end is closed (its holders
/// closed it or died).
pub fn peer_gone(socket: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&socket, PollFlags::empty())];
    let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR),
        Err(_) => false,
    }
}

/// The bytes beside each batch of descriptors: a marker, then the tag of
/// the message the batch belongs to (`u64` LE).
const BATCH_HEADER: usize = 9;

/// Sends `fds` over `socket`, in batches, each tagged with `tag` (the
/// message they belong to: see [`recv_fds`]).
pub fn send_fds(socket: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], tag: u64) -> io::Result<()> {
    let mut header = [b'F'; BATCH_HEADER];
    header[1..].copy_from_slice(&tag.to_le_bytes());
    for batch in fds.chunks(BATCH) {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(batch)) {
            return Err(io::Error::other("SCM_RIGHTS buffer too small"));
        }
        loop {
            match sendmsg(socket, &[IoSlice::new(&header)], &mut control, NO_SIGPIPE) {
                Ok(BATCH_HEADER) => break,
                Ok(_) => return Err(io::Error::other("short SCM_RIGHTS send")),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Receives exactly `n` descriptors that [`send_fds`] sent with `tag`.
///
/// Tags grow in the order batches are sent. A batch with a smaller tag was
/// left by a message that was never published (its send failed, or its
/// sender died in between): it is taken and closed. A batch with a larger
/// tag belongs to a later message and is left where it is: this message's
/// own are missing. Fails (never blocks for long) if they are not there: a
/// peer that announced them without sending them is broken or hostile.
pub fn recv_fds(socket: BorrowedFd<'_>, n: usize, tag: u64) -> io::Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(n.min(BATCH));
    while out.len() < n {
        let mut fds = [PollFd::new(&socket, PollFlags::IN)];
        let ts = rustix::time::Timespec { tv_sec: FD_WAIT.as_secs() as i64, tv_nsec: 0 };
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "announced fds not sent")),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        // Look at the next batch's tag without taking it (nor its fds).
        let mut header = [0u8; BATCH_HEADER];
        let peeked = match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut header)],
            &mut RecvAncillaryBuffer::default(),
            RecvFlags::PEEK,
        ) {
            Ok(got) => got.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if peeked == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the socket"));
        }
        if peeked != BATCH_HEADER || header[0] != b'F' {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected bytes on the socket",
            ));
        }
        let found = u64::from_le_bytes(header[1..].try_into().expect("8 bytes"));
        if found.wrapping_sub(tag) as i64 > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "this message's fds are missing",
            ));
        }
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        match recvmsg(socket, &mut [IoSliceMut::new(&mut header)], &mut control, RECV_CLOEXEC) {
            Ok(got) if got.bytes == BATCH_HEADER => {}
            Ok(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "short fd batch")),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let batch = control.drain().filter_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => Some(fds),
            _ => None,
        });
        if found == tag {
            for fd in batch.flatten() {
                // Where the kernel cannot mark them at once (macOS), now: a
                // spawn in between on another thread could inherit them.
                #[cfg(target_vendor = "apple")]
                rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
                out.push(fd);
            }
        } else {
            // Stale: left by a message never published. Closed here.
            batch.for_each(drop);
        }
    }
    if out.len() != n {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "more fds than announced"));
    }
    Ok(out)
}

/// Whether `path` is a Unix socket file nobody listens on: a connection to
/// it is refused (a live listener with a full backlog answers "try again",
/// and a non-blocking connect never waits for it).
pub fn is_stale(path: &std::path::Path) -> bool {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    let refused = || -> io::Result<bool> {
        #[cfg(not(target_vendor = "apple"))]
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        #[cfg(target_vendor = "apple")]
        let socket = {
            let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
            rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC)?;
            rustix::io::ioctl_fionbio(&socket, true)?;
            socket
        };
        let address = SocketAddrUnix::new(path)?;
        Ok(rustix::net::connect(&socket, &address) == Err(rustix::io::Errno::CONNREFUSED))
    };
    is_socket && refused().unwrap_or(false)
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

/// One descriptor [`poll_until`] watches, and whether it turned out ready.
pub struct Watch<'a> {
    pub fd: BorrowedFd<'a>,
    pub interest: Interest,
    pub ready: bool,
}

impl<'a> Watch<'a> {
    pub fn new(fd: BorrowedFd<'a>, interest: Interest) -> Watch<'a> {
        Watch { fd, interest, ready: false }
    }
}

/// `poll(2)` on `watches` until `deadline` (`None`: forever), retried on
/// EINTR; sets each one's `ready` and returns how many are.
pub fn poll_until(watches: &mut [Watch<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    let mut fds: Vec<PollFd<'_>> = watches
        .iter()
        .map(|w| {
            let flags = match w.interest {
                Interest::Read => PollFlags::IN,
                Interest::Write => PollFlags::OUT,
                Interest::HangUp => PollFlags::empty(),
            };
            PollFd::from_borrowed_fd(w.fd, flags)
        })
        .collect();
    let n = loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs().min(i32::MAX as u64) as _,
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    for (w, fd) in watches.iter_mut().zip(&fds) {
        w.ready = !fd.revents().is_empty();
    }
    Ok(n)
}

/// One `recv` into `buf`: waits for bytes if `block`, else reports
/// `WouldBlock`. `Ok(0)` is the end of the stream.
pub fn recv_some(socket: BorrowedFd<'_>, buf: &mut [u8], block: bool) -> io::Result<usize> {
    let flags = if block { RecvFlags::empty() } else { RecvFlags::DONTWAIT };
    Ok(rustix::net::recv(socket, buf, flags)?.0)
}

/// One non-blocking `sendmsg` of `parts` that raises no SIGPIPE;
/// `WouldBlock` when the socket's buffer is full.
pub fn send_some(socket: BorrowedFd<'_>, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    let flags = SendFlags::DONTWAIT | NO_SIGPIPE;
    Ok(sendmsg(socket, parts, &mut SendAncillaryBuffer::default(), flags)?)
}

/// Asks `recvmsg` to make received descriptors close-on-exec at once (not
/// on macOS: [`recv_fds`] marks them right after).
#[cfg(not(target_vendor = "apple"))]
const RECV_CLOEXEC: RecvFlags = RecvFlags::CMSG_CLOEXEC;
#[cfg(target_vendor = "apple")]
const RECV_CLOEXEC: RecvFlags = RecvFlags::empty();

/// The flag that keeps a send to a closed peer from raising SIGPIPE. On
/// macOS there is none (the socket option `SO_NOSIGPIPE` is its form there,
/// and std sets it on the sockets it makes); Rust programs also ignore
/// SIGPIPE from the start, so the send fails with EPIPE either way.
#[cfg(not(target_vendor = "apple"))]
const NO_SIGPIPE: SendFlags = SendFlags::NOSIGNAL;
#[cfg(target_vendor = "apple")]
const NO_SIGPIPE: SendFlags = SendFlags::empty();

/// Shuts both directions of `socket`: the peer sees the end of the stream.
pub fn shut_down(socket: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(socket, rustix::net::Shutdown::Both)?)
}

/// Releases what `fd` refers to, as `close` would, but keeps the number
/// open: it is made to refer to `/dev/null` (`dup2`, one atomic step). Its
/// owner still closes it later; a thread still using it meanwhile meets
/// `/dev/null`, never a file opened since that took the number. Other
/// descriptors of the same socket (duplicates, in this process or others)
/// keep it open, as with `close`.
#[allow(unsafe_code)]
pub fn retire(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::fd::{AsFd, AsRawFd};
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    loop {
        // SAFETY: both descriptors are open; `fd` is replaced in one step
        // and stays open, owned as before (see above).
        if unsafe { libc::dup2(null.as_fd().as_raw_fd(), fd.as_raw_fd()) } >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // dup2 clears close-on-exec on the new descriptor: set it again.
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(())
}

/// Whether `e` says the peer closed the connection.
pub fn is_disconnect(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().map(Errno::from_raw_os_error).is_some_and(|e| {
        matches!(e, Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN | Errno::SHUTDOWN)
    })
}

/// A connected pair of CLOEXEC stream sockets.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    Ok((a.into(), b.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn fds_cross_and_hangups_show() {
        let (a, b) = pair().unwrap();
        assert!(!peer_gone(a.as_fd()));
        let file: OwnedFd = std::fs::File::open("/proc/self/stat").unwrap().into();
        let many: Vec<BorrowedFd<'_>> = (0..300).map(|_| file.as_fd()).collect();
        send_fds(a.as_fd(), &many, 7).unwrap();
        let got = recv_fds(b.as_fd(), 300, 7).unwrap();
        assert_eq!(got.len(), 300);
        // A stale batch (tag 8, never claimed) is closed on the way to the
        // next message's (tag 9); a later message's batch is left alone.
        send_fds(a.as_fd(), &many[..2], 8).unwrap();
        send_fds(a.as_fd(), &many[..3], 9).unwrap();
        send_fds(a.as_fd(), &many[..1], 11).unwrap();
        assert_eq!(recv_fds(b.as_fd(), 3, 9).unwrap().len(), 3);
        assert!(recv_fds(b.as_fd(), 1, 10).is_err());
        assert_eq!(recv_fds(b.as_fd(), 1, 11).unwrap().len(), 1);
        drop(b);
        assert!(peer_gone(a.as_fd()));
    }
}
