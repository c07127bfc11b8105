//! Readiness handles for async waiters: an object's *bell*, which travels
//! with its segment, and a *tick*, a private timer that paces an async
//! waiter's periodic checks, and [`Edges`], many handles watched as one.
//!
//! A bell is never read by its watchers: every ring makes it readable
//! anew, so a watcher registered edge-triggered (as tokio registers every
//! handle) sees each ring, in every process, and no reader can take one
//! from another. Native Linux: an eventfd, each ring adding one to its
//! counter (which holds 2^64 - 2 rings). Elsewhere (macOS, FreeBSD, and
//! the portable path on Linux): a pipe, both of whose ends travel (the
//! read end is watched, the write end rung); each ring writes a byte,
//! and a ring that finds the pipe full first takes some out.
//!
//! Ticks and edges: a timerfd and an epoll instance on Linux, a kqueue on
//! macOS and FreeBSD (these only compile here).

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::io;
use std::time::Duration;

#[cfg(all(any(target_os = "linux", target_os = "android"), not(multiproc_portable)))]
pub use counter::Bell;
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(multiproc_portable))))]
pub use pipe::Bell;

/// The bell of native Linux: an eventfd.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(multiproc_portable)))]
mod counter {
    use super::*;

    /// An object's readiness handle: see the module docs.
    #[derive(Debug)]
    pub struct Bell(OwnedFd);

    impl Bell {
        /// A new bell, not yet rung.
        pub fn new() -> io::Result<Bell> {
            use rustix::event::{eventfd, EventfdFlags};
            Ok(Bell(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?))
        }

        /// The handles that make it, as they travel to another process.
        pub fn parts(&self) -> Vec<BorrowedFd<'_>> {
            vec![self.0.as_fd()]
        }

        /// Adopts a bell received from another process, if `parts` make
        /// one (an eventfd: a peer could send any handle, and a ring
        /// writes to it).
        pub fn from_received(parts: Vec<OwnedFd>) -> io::Result<Bell> {
            let [fd] = <[OwnedFd; 1]>::try_from(parts).map_err(|_| not_a_bell("one handle"))?;
            let link = rustix::fs::readlinkat(
                rustix::fs::CWD,
                format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd)),
                Vec::new(),
            )?;
            if link.as_bytes() != b"anon_inode:[eventfd]" {
                return Err(not_a_bell("an eventfd"));
            }
            // Rings from here are made non-blocking whoever made it.
            rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
            Ok(Bell(fd))
        }

        /// Rings it: one write, never blocking. A failure (the counter
        /// full, which 2^64 rings would take) is ignored: the bell is then
        /// readable for good, which its watchers see as a ring.
        pub fn ring(&self) {
            let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
        }
    }

    impl AsFd for Bell {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }
}

/// The bell of the other Unixes (and of the portable path): a pipe.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(multiproc_portable))))]
mod pipe {
    use super::*;

    /// An object's readiness handle: see the module docs.
    #[derive(Debug)]
    pub struct Bell {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Bell {
        /// A new bell, not yet rung.
        pub fn new() -> io::Result<Bell> {
            #[cfg(not(target_vendor = "apple"))]
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            // No pipe2 here: close-on-exec set just after (as the standard
            // library does for its own pipes).
            #[cfg(target_vendor = "apple")]
            let (read, write) = {
                let (read, write) = rustix::pipe::pipe()?;
                rustix::io::fcntl_setfd(&read, rustix::io::FdFlags::CLOEXEC)?;
                rustix::io::fcntl_setfd(&write, rustix::io::FdFlags::CLOEXEC)?;
                (read, write)
            };
            Bell::adopt(read, write)
        }

        /// The handles that make it, as they travel to another process:
        /// the read end, then the write end.
        pub fn parts(&self) -> Vec<BorrowedFd<'_>> {
            vec![self.read.as_fd(), self.write.as_fd()]
        }

        /// Adopts a bell received from another process, if `parts` make
        /// one: the read and the write end of one pipe (a peer could send
        /// any handles, and a ring writes to one of them).
        pub fn from_received(parts: Vec<OwnedFd>) -> io::Result<Bell> {
            use rustix::fs::{fcntl_getfl, fstat, FileType, OFlags};
            let [read, write] =
                <[OwnedFd; 2]>::try_from(parts).map_err(|_| not_a_bell("two handles"))?;
            let (r, w) = (fstat(&read)?, fstat(&write)?);
            let fifo =
                |st: &rustix::fs::Stat| FileType::from_raw_mode(st.st_mode) == FileType::Fifo;
            if !fifo(&r) || !fifo(&w) || (r.st_dev, r.st_ino) != (w.st_dev, w.st_ino) {
                return Err(not_a_bell("the two ends of one pipe"));
            }
            let mode = |fd: &OwnedFd| fcntl_getfl(fd).map(|f| f & OFlags::RWMODE);
            if mode(&read)? != OFlags::RDONLY || mode(&write)? != OFlags::WRONLY {
                return Err(not_a_bell("a pipe's read end, then its write end"));
            }
            Bell::adopt(read, write)
        }

        /// Makes both ends non-blocking (whoever made them).
        fn adopt(read: OwnedFd, write: OwnedFd) -> io::Result<Bell> {
            rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK)?;
            rustix::fs::fcntl_setfl(&write, rustix::fs::OFlags::NONBLOCK)?;
            Ok(Bell { read, write })
        }

        /// Rings it: one write of one byte, never blocking. A pipe that is
        /// full (readable already, but only a write makes a new edge)
        /// gives up some bytes first.
        pub fn ring(&self) {
            if let Err(rustix::io::Errno::AGAIN) = rustix::io::write(&self.write, &[1]) {
                let _ = rustix::io::read(&self.read, &mut [0u8; 4096]);
                let _ = rustix::io::write(&self.write, &[1]);
            }
        }
    }

    /// The read end, which watchers watch.
    impl AsFd for Bell {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.read.as_fd()
        }
    }
}

fn not_a_bell(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a bell is {what}"))
}

/// A private periodic timer: readable every `interval`, until reset.
#[derive(Debug)]
pub struct Tick(OwnedFd);

impl Tick {
    /// A timer that first fires after `interval`, then every `interval`.
    pub fn every(interval: Duration) -> io::Result<Tick> {
        sys::timer(interval).map(Tick)
    }

    /// Takes what fired so far, so that the next period makes it readable
    /// (and its watchers see a new edge) again.
    pub fn reset(&self) {
        sys::reset_timer(&self.0)
    }
}

impl AsFd for Tick {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Handles watched edge-triggered by one thread that blocks (an epoll
/// instance, or a kqueue with `EV_CLEAR`): what `connection::wait` sleeps
/// on, bells included (a bell, never read, stays readable: a
/// level-triggered `poll(2)` would never sleep on it again).
#[derive(Debug)]
pub struct Edges {
    instance: OwnedFd,
    /// Duplicates of the handles watched (so one may be added twice).
    watched: Vec<OwnedFd>,
}

impl Edges {
    pub fn new() -> io::Result<Edges> {
        Ok(Edges { instance: sys::instance()?, watched: Vec::new() })
    }

    /// Watches `fd` for readability and hang-up. A handle ready already
    /// reports it at the first [`wait`](Self::wait).
    pub fn add(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.try_clone_to_owned()?;
        sys::watch(&self.instance, &fd, self.watched.len())?;
        self.watched.push(fd);
        Ok(())
    }

    /// Takes every readiness reported so far, so that the instance itself
    /// (readable while it holds reports) reads as not ready until the next
    /// edge.
    pub fn clear(&self) -> io::Result<()> {
        while self.wait(Some(Duration::ZERO))? {}
        Ok(())
    }

    /// Sleeps until a watched handle becomes ready (`true`) or `timeout`
    /// passes (`None`: no limit); a signal returns `true` early, as a
    /// spurious wake.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        match sys::take(&self.instance, timeout) {
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
        self.instance.as_fd()
    }
}

/// Timers and edge-triggered instances on Linux: a timerfd, epoll.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use super::*;
    use rustix::event::epoll;
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };

    pub(super) fn timer(interval: Duration) -> io::Result<OwnedFd> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        let period = timespec(interval);
        let spec = Itimerspec { it_interval: period, it_value: period };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
        Ok(fd)
    }

    pub(super) fn reset_timer(timer: &OwnedFd) {
        let _ = rustix::io::read(timer, &mut [0u8; 8]);
    }

    pub(super) fn instance() -> io::Result<OwnedFd> {
        Ok(epoll::create(epoll::CreateFlags::CLOEXEC)?)
    }

    pub(super) fn watch(instance: &OwnedFd, fd: &OwnedFd, key: usize) -> io::Result<()> {
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        Ok(epoll::add(instance, fd, epoll::EventData::new_u64(key as u64), flags)?)
    }

    /// Takes up to 16 reports within `timeout`: how many.
    pub(super) fn take(instance: &OwnedFd, timeout: Option<Duration>) -> rustix::io::Result<usize> {
        let mut events = Vec::with_capacity(16);
        let buffer = rustix::buffer::spare_capacity(&mut events);
        epoll::wait(instance, buffer, timeout.map(timespec).as_ref())
    }

    fn timespec(t: Duration) -> Timespec {
        Timespec { tv_sec: t.as_secs().min(i64::MAX as u64) as _, tv_nsec: t.subsec_nanos() as _ }
    }
}

/// Timers and edge-triggered instances on macOS and FreeBSD: a kqueue each
/// (readable while it holds an event not taken).
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
mod sys {
    use super::*;
    use rustix::event::kqueue::{kevent, kqueue, Event, EventFilter, EventFlags};

    /// Applies `changes` to `queue` and takes up to 16 events within
    /// `timeout`: how many it took.
    fn apply(
        queue: &OwnedFd,
        changes: &[Event],
        timeout: Option<Duration>,
    ) -> rustix::io::Result<usize> {
        let mut events = Vec::with_capacity(16);
        let buffer = rustix::buffer::spare_capacity(&mut events);
        #[allow(unsafe_code)]
        // SAFETY: no event here carries a pointer the kernel would hand
        // back to be dereferenced (every `udata` is null).
        unsafe {
            kevent(queue, changes, buffer, timeout)
        }
    }

    pub(super) fn timer(interval: Duration) -> io::Result<OwnedFd> {
        let queue = kqueue()?;
        let timer = EventFilter::Timer { ident: 0, timer: Some(interval) };
        apply(
            &queue,
            &[Event::new(timer, EventFlags::ADD, std::ptr::null_mut())],
            Some(Duration::ZERO),
        )?;
        Ok(queue)
    }

    pub(super) fn reset_timer(timer: &OwnedFd) {
        let _ = apply(timer, &[], Some(Duration::ZERO));
    }

    pub(super) fn instance() -> io::Result<OwnedFd> {
        Ok(kqueue()?)
    }

    pub(super) fn watch(queue: &OwnedFd, fd: &OwnedFd, _key: usize) -> io::Result<()> {
        let read = EventFilter::Read(rustix::fd::AsRawFd::as_raw_fd(fd));
        let add = Event::new(read, EventFlags::ADD | EventFlags::CLEAR, std::ptr::null_mut());
        apply(queue, &[add], Some(Duration::ZERO))?;
        Ok(())
    }

    /// Takes up to 16 events within `timeout`: how many.
    pub(super) fn take(queue: &OwnedFd, timeout: Option<Duration>) -> rustix::io::Result<usize> {
        apply(queue, &[], timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bell_is_recognised_and_anything_else_refused() {
        let bell = Bell::new().unwrap();
        bell.ring();
        let copy = |bell: &Bell| -> Vec<OwnedFd> {
            bell.parts().iter().map(|p| p.try_clone_to_owned().unwrap()).collect()
        };
        Bell::from_received(copy(&bell)).unwrap().ring();
        let file = || OwnedFd::from(std::fs::File::open("/proc/self/stat").unwrap());
        let refused = |parts: Vec<OwnedFd>| Bell::from_received(parts).unwrap_err().kind();
        let mut parts = copy(&bell);
        assert_eq!(refused(parts.iter().map(|_| file()).collect()), io::ErrorKind::InvalidData);
        parts.push(file());
        assert_eq!(refused(parts), io::ErrorKind::InvalidData);
        // Another bell's parts mixed in, or the ends swapped.
        let mut parts = copy(&bell);
        let other = Bell::new().unwrap();
        parts[0] = other.as_fd().try_clone_to_owned().unwrap();
        if parts.len() > 1 {
            assert_eq!(refused(parts), io::ErrorKind::InvalidData);
            let mut parts = copy(&bell);
            parts.reverse();
            assert_eq!(refused(parts), io::ErrorKind::InvalidData);
        }
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
        // Far more rings than a pipe holds: every one still an edge.
        for _ in 0..200_000 {
            bell.ring();
        }
        edges.clear().unwrap();
        bell.ring();
        assert!(edges.wait(Some(Duration::from_secs(5))).unwrap());
    }

    #[test]
    fn a_tick_fires_and_resets() {
        let tick = Tick::every(Duration::from_millis(1)).unwrap();
        let mut edges = Edges::new().unwrap();
        edges.add(tick.as_fd()).unwrap();
        assert!(edges.wait(Some(Duration::from_secs(5))).unwrap());
        tick.reset();
        edges.clear().unwrap();
        assert!(edges.wait(Some(Duration::from_secs(5))).unwrap());
    }
}
