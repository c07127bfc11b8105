//! Readiness handles for async waiters (Linux): an object's *bell*, an
//! eventfd that travels with its segment, and a *tick*, a private timerfd
//! that paces an async waiter's periodic checks.
//!
//! A bell is never read: each ring adds one to its counter, and every write
//! to an eventfd wakes its watchers, so a watcher registered edge-triggered
//! (as tokio registers every handle) sees each ring, in every process, and
//! no reader can take one from another. The counter cannot fill: it holds
//! 2^64 - 2 rings.

use rustix::event::{eventfd, EventfdFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use std::io;
use std::time::Duration;

/// An object's readiness handle: see the module docs.
#[derive(Debug)]
pub struct Bell(OwnedFd);

impl Bell {
    /// A new bell, not yet rung.
    pub fn new() -> io::Result<Bell> {
        Ok(Bell(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?))
    }

    /// Adopts a bell received from another process, if `fd` is an eventfd
    /// (a peer could send any handle, and a ring writes to it).
    pub fn from_received(fd: OwnedFd) -> io::Result<Bell> {
        let link = rustix::fs::readlinkat(
            rustix::fs::CWD,
            format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd)),
            Vec::new(),
        )?;
        if link.as_bytes() != b"anon_inode:[eventfd]" {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not an eventfd"));
        }
        // Rings from here are made non-blocking whoever made it.
        rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
        Ok(Bell(fd))
    }

    /// Rings it: one write, never blocking. A failure (the counter full,
    /// which 2^64 rings would take) is ignored: the bell is then readable
    /// for good, which its watchers see as a ring.
    pub fn ring(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }
}

impl AsFd for Bell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A private periodic timer: readable every `interval`, until read.
#[derive(Debug)]
pub struct Tick(OwnedFd);

impl Tick {
    /// A timer that first fires after `interval`, then every `interval`.
    pub fn every(interval: Duration) -> io::Result<Tick> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        let period =
            Timespec { tv_sec: interval.as_secs() as _, tv_nsec: interval.subsec_nanos() as _ };
        let spec = Itimerspec { it_interval: period, it_value: period };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
        Ok(Tick(fd))
    }

    /// Takes what fired so far, so that the next period makes it readable
    /// (and its watchers see a new edge) again.
    pub fn reset(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut buf);
    }
}

impl AsFd for Tick {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bell_is_recognised_and_anything_else_refused() {
        let bell = Bell::new().unwrap();
        bell.ring();
        let copy = bell.as_fd().try_clone_to_owned().unwrap();
        Bell::from_received(copy).unwrap().ring();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let err = Bell::from_received(OwnedFd::from(file)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_tick_fires_and_resets() {
        let tick = Tick::every(Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&tick.0, &mut buf).unwrap(), 8);
        tick.reset();
    }
}
