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
use std::time::Duration;

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

/// Sends `fds` over `socket`, in batches, each with a one-byte marker.
pub fn send_fds(socket: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    for batch in fds.chunks(BATCH) {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(batch)) {
            return Err(io::Error::other("SCM_RIGHTS buffer too small"));
        }
        loop {
            match sendmsg(socket, &[IoSlice::new(b"F")], &mut control, SendFlags::NOSIGNAL) {
                Ok(1) => break,
                Ok(_) => return Err(io::Error::other("short SCM_RIGHTS send")),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Receives exactly `n` descriptors sent by [`send_fds`]. Fails (never
/// blocks for long) if they are not there: a peer that announced them
/// without sending them is broken or hostile.
pub fn recv_fds(socket: BorrowedFd<'_>, n: usize) -> io::Result<Vec<OwnedFd>> {
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
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        let got = match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => got,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if got.bytes == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the socket"));
        }
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                out.extend(fds);
            }
        }
        if byte[0] != b'F' {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected byte on the socket",
            ));
        }
    }
    if out.len() != n {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "more fds than announced"));
    }
    Ok(out)
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
        send_fds(a.as_fd(), &many).unwrap();
        let got = recv_fds(b.as_fd(), 300).unwrap();
        assert_eq!(got.len(), 300);
        drop(b);
        assert!(peer_gone(a.as_fd()));
    }
}
