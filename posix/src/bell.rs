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

/// Handles watched edge-triggered by one thread that blocks (an epoll
/// instance): what `connection::wait` sleeps on, bells included (a bell,
/// never read, stays readable: a level-triggered `poll(2)` would never
/// sleep on it again).
#[derive(Debug)]
pub struct Edges {
    epoll: OwnedFd,
    /// Duplicates of the handles watched (so one handle may be added twice).
    watched: Vec<OwnedFd>,
}

impl Edges {
    pub fn new() -> io::Result<Edges> {
        let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)?;
        Ok(Edges { epoll, watched: Vec::new() })
    }

    /// Watches `fd` for readability and hang-up. A handle ready already
    /// reports it at the first [`wait`](Self::wait).
    pub fn add(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        use rustix::event::epoll::{add, EventData, EventFlags};
        let fd = fd.try_clone_to_owned()?;
        let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ET;
        add(&self.epoll, &fd, EventData::new_u64(self.watched.len() as u64), flags)?;
        self.watched.push(fd);
        Ok(())
    }

    /// Takes every readiness reported so far, so that the instance itself
    /// (readable while it holds reports) reads as not ready until the
    /// next edge.
    pub fn clear(&self) -> io::Result<()> {
        while self.wait(Some(Duration::ZERO))? {}
        Ok(())
    }

    /// Sleeps until a watched handle becomes ready (`true`) or `timeout`
    /// passes (`None`: no limit); a signal returns `true` early, as a
    /// spurious wake.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut events = Vec::with_capacity(16);
        let timeout = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        let buffer = rustix::buffer::spare_capacity(&mut events);
        match rustix::event::epoll::wait(&self.epoll, buffer, timeout.as_ref()) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

/// The instance: readable (level-triggered, for any poller) while a
/// watched handle's edge has not been taken ([`Edges::clear`]).
impl AsFd for Edges {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
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
    fn edges_see_each_ring_once_and_sleep_between() {
        let bell = Bell::new().unwrap();
        bell.ring();
        let mut edges = Edges::new().unwrap();
        edges.add(bell.as_fd()).unwrap();
        edges.add(bell.as_fd()).unwrap();
        // Rung before: reported once, then quiet.
        assert!(edges.wait(Some(Duration::ZERO)).unwrap());
        assert!(!edges.wait(Some(Duration::from_millis(5))).unwrap());
        bell.ring();
        assert!(edges.wait(Some(Duration::from_secs(5))).unwrap());
        assert!(!edges.wait(Some(Duration::ZERO)).unwrap());
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
