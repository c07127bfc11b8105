//! The Unix side of the platform layer: `multiproc-posix` and the standard
//! library's Unix extensions, under the layer's names.

pub(crate) use multiproc_posix::shm::{OpenError, Segment};
#[cfg(not(mp_async))]
pub(crate) use multiproc_posix::Os;
pub(crate) use multiproc_posix::{ident, image, limits};
#[cfg(mp_async)]
pub(crate) use ready::Os;
pub(crate) use std::os::fd::RawFd as RawHandle;
pub(crate) use std::os::fd::{BorrowedFd as BorrowedHandle, OwnedFd as OwnedHandle};

/// What owns or borrows an OS handle (on Unix, a file descriptor).
pub(crate) trait AsHandle {
    /// The handle, borrowed.
    fn as_handle(&self) -> BorrowedHandle<'_>;

    /// The handle's number, for a transfer table.
    fn as_raw_handle(&self) -> RawHandle {
        std::os::fd::AsRawFd::as_raw_fd(&self.as_handle())
    }
}

impl<T: std::os::fd::AsFd + ?Sized> AsHandle for T {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.as_fd()
    }
}

/// Borrows the handle whose number is `raw`.
///
/// # Safety
/// The handle is open, and stays open for the borrow's life.
#[allow(unsafe_code)]
pub(crate) unsafe fn borrow_raw<'a>(raw: RawHandle) -> BorrowedHandle<'a> {
    // SAFETY: the caller's contract.
    unsafe { BorrowedHandle::borrow_raw(raw) }
}

pub(crate) mod transfer {
    //! The link beside every channel: a socket pair. The kernel counts the
    //! handles of each end, so a peer that closed or died shows as a
    //! hang-up, and SCM_RIGHTS moves handles to the process at the other end.
    pub(crate) use multiproc_posix::sock::{
        pair, peer_gone, recv_fds as recv_handles, retire, send_fds as send_handles,
    };
}

pub(crate) mod net {
    //! Stream sockets for `connection`: local (Unix domain) and TCP.
    use super::{BorrowedHandle, OwnedHandle};
    pub(crate) use multiproc_posix::sock::{
        is_disconnect, is_stale, poll_until, recv_some, send_some, shut_down, Interest, Watch,
    };
    use std::io;
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    pub(crate) use std::os::unix::net::UnixListener as LocalListener;
    pub use std::os::unix::net::UnixStream as LocalStream;

    /// A connected stream socket (TCP or local).
    pub(crate) type Socket = OwnedHandle;
    /// A stream socket, borrowed.
    pub(crate) type SocketRef<'a> = BorrowedHandle<'a>;

    /// Where default local addresses live: `None`, a private directory of
    /// socket files (Windows names pipes instead).
    pub(crate) const LOCAL_PREFIX: Option<&str> = None;

    pub(crate) fn socket_ref(socket: &Socket) -> SocketRef<'_> {
        socket.as_fd()
    }

    /// Watches a stream socket.
    pub(crate) fn socket_watch(socket: SocketRef<'_>, interest: Interest) -> Watch<'_> {
        Watch::new(socket, interest)
    }

    /// Watches the link beside a channel.
    #[cfg_attr(mp_async, allow(dead_code))]
    pub(crate) fn link_watch(link: BorrowedHandle<'_>, interest: Interest) -> Watch<'_> {
        Watch::new(link, interest)
    }

    /// Watches a listener for a peer to accept.
    pub(crate) fn listener_watch(listener: &impl AsFd) -> Watch<'_> {
        Watch::new(listener.as_fd(), Interest::Read)
    }

    /// The handle readable when a listener has a peer to accept.
    #[cfg(mp_async)]
    pub(crate) fn listener_ready(listener: &impl AsFd) -> Option<BorrowedHandle<'_>> {
        Some(listener.as_fd())
    }

    /// The handle a stream socket passes to another process as.
    pub(crate) fn socket_handle(socket: SocketRef<'_>) -> BorrowedHandle<'_> {
        socket
    }

    /// A stream socket received from another process.
    pub(crate) fn socket_from_handle(handle: OwnedHandle) -> io::Result<Socket> {
        Ok(handle)
    }

    /// A listener's handle, to go on listening in another process.
    pub(crate) fn listener_handle(listener: &impl AsFd) -> io::Result<OwnedHandle> {
        listener.as_fd().try_clone_to_owned()
    }

    pub(crate) fn tcp_listener_from_handle(handle: OwnedHandle) -> io::Result<TcpListener> {
        Ok(handle.into())
    }

    pub(crate) fn local_listener_from_handle(
        handle: OwnedHandle,
        _path: &std::path::Path,
    ) -> io::Result<LocalListener> {
        Ok(handle.into())
    }
}

pub(crate) mod fs {
    //! Files the facade makes.
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    use std::path::Path;

    /// Makes directory `path` readable by this user alone (mode 0700,
    /// whatever the umask).
    pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(0o700).create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    }
}

pub(crate) mod launch {
    //! Starting, waiting for and signalling children; the spawned child's
    //! side of the bootstrap.
    pub(crate) use multiproc_posix::child::{
        at_exit, close_forever, exe_identity, exit_now, fork, parent_pid, read_sealed,
        runs_our_exe, secure_mode, signal_name, spawn_self, take_inherited, thread_count, Child,
        Forked, BAD_REQUEST, FAILED,
    };

    /// Declares `$name`, a static the loader calls before `main` in every
    /// binary that keeps it (`.init_array` on ELF, `__mod_init_func` on
    /// Mach-O), which runs `$f`: how a spawned child's code learns of being
    /// one before the program's own.
    macro_rules! before_main {
        ($name:ident = $f:path) => {
            #[used]
            #[cfg_attr(target_vendor = "apple", link_section = "__DATA,__mod_init_func")]
            #[cfg_attr(not(target_vendor = "apple"), link_section = ".init_array")]
            pub(crate) static $name: extern "C" fn() = {
                extern "C" fn run() {
                    $f()
                }
                run
            };
        };
    }
    pub(crate) use before_main;
}

#[cfg(mp_async)]
pub(crate) mod ready {
    //! Readiness for async waiters (the `tokio` feature). Every object an
    //! async waiter may await has a *bell* (an eventfd, or a pipe: see
    //! `multiproc_posix::bell`) that travels with its segment or arena. A
    //! mapping with a bell is *served* ([`Rung::serve`]): the park the
    //! facade uses, [`Os`], rings the bell of the mapping a word lies in
    //! when a primitive's waiter count says async waiters are registered
    //! ([`Park::notify_async`]), so every path that wakes, whichever object
    //! it came through (a Condition releasing its Lock), reaches them.
    //! [`Watch`] registers a handle with the current tokio runtime's reactor.
    use super::{BorrowedHandle, OwnedHandle};
    use multiproc_core::sync::AtomicU32;
    use multiproc_core::{Liveness, Park};
    pub(crate) use multiproc_posix::bell::{Bell, Edges, Tick};
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::{Arc, RwLock, Weak};
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// Served mappings by start address: their length and bell.
    static SERVED: RwLock<BTreeMap<usize, (usize, Weak<Rung>)>> = RwLock::new(BTreeMap::new());

    /// A mapping's bell, rung for the words in it while this lives.
    #[derive(Debug)]
    pub(crate) struct Rung {
        bell: Bell,
        base: usize,
    }

    impl Rung {
        /// Serves `len` bytes from `base` with `bell`.
        pub(crate) fn serve(bell: Bell, base: *const u8, len: usize) -> Arc<Rung> {
            let rung = Arc::new(Rung { bell, base: base as usize });
            let mut served = SERVED.write().unwrap_or_else(|e| e.into_inner());
            served.insert(base as usize, (len, Arc::downgrade(&rung)));
            rung
        }

        pub(crate) fn bell(&self) -> &Bell {
            &self.bell
        }
    }

    impl Drop for Rung {
        fn drop(&mut self) {
            let mut served = SERVED.write().unwrap_or_else(|e| e.into_inner());
            // Only our own entry: a mapping made at this address after
            // ours went has its own.
            if served.get(&self.base).is_some_and(|(_, w)| std::ptr::eq(w.as_ptr(), self)) {
                served.remove(&self.base);
            }
        }
    }

    /// Rings the bell of the served mapping `word` lies in, if any.
    fn ring_for(word: &AtomicU32) {
        let addr = word as *const AtomicU32 as usize;
        let rung = {
            let served = SERVED.read().unwrap_or_else(|e| e.into_inner());
            match served.range(..=addr).next_back() {
                Some((&base, (len, rung))) if addr - base < *len => rung.upgrade(),
                _ => None,
            }
        };
        if let Some(rung) = rung {
            rung.bell.ring();
        }
    }

    /// The backend's park, ringing bells for async waiters.
    #[derive(Clone, Copy, Debug, Default)]
    pub(crate) struct Os;

    impl Park for Os {
        #[inline]
        fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            multiproc_posix::Os.wait(word, expected, timeout)
        }
        #[inline]
        fn wake_one(&self, word: &AtomicU32) {
            multiproc_posix::Os.wake_one(word)
        }
        #[inline]
        fn wake_all(&self, word: &AtomicU32) {
            multiproc_posix::Os.wake_all(word)
        }
        #[inline]
        fn now(&self) -> Duration {
            multiproc_posix::Os.now()
        }
        #[inline]
        fn light_barrier(&self) {
            multiproc_posix::Os.light_barrier()
        }
        #[inline]
        fn yield_now(&self) {
            multiproc_posix::Os.yield_now()
        }
        #[inline]
        fn heavy_barrier(&self) {
            multiproc_posix::Os.heavy_barrier()
        }
        fn notify_async(&self, word: &AtomicU32) {
            ring_for(word)
        }
    }

    impl Liveness for Os {
        const CHECKS: bool = <multiproc_posix::Os as Liveness>::CHECKS;
        const CHECK_INTERVAL: Duration = <multiproc_posix::Os as Liveness>::CHECK_INTERVAL;
        #[inline]
        fn is_alive(&self, id: u32, stamp: u32) -> bool {
            multiproc_posix::Os.is_alive(id, stamp)
        }
    }

    /// What an async wait watches: a handle that becomes readable (an
    /// object's bell, a child's exit handle).
    pub(crate) type Ready<'a> = BorrowedHandle<'a>;

    /// A handle readable once what a wait waits for happened.
    pub(crate) fn signaled(handle: BorrowedHandle<'_>) -> Ready<'_> {
        handle
    }

    /// A channel's link: readable once it hung up.
    pub(crate) fn link(link: BorrowedHandle<'_>) -> Ready<'_> {
        link
    }

    /// A stream socket: readable once it has bytes (or hung up).
    pub(crate) fn stream(stream: BorrowedHandle<'_>) -> Ready<'_> {
        stream
    }

    /// A handle the current tokio runtime's reactor watches for
    /// readability: a duplicate, so that any number of waits (of any
    /// number of tasks) may watch one handle at once.
    pub(crate) struct Watch(AsyncFd<OwnedHandle>, bool);

    impl Watch {
        /// `Err` outside a tokio runtime, or in one without its I/O driver.
        pub(crate) fn new(handle: Ready<'_>) -> io::Result<Watch> {
            Watch::with(handle, false)
        }

        /// Watches a channel's link for its hang-up (readable then).
        pub(crate) fn hangup(link: BorrowedHandle<'_>) -> io::Result<Option<Watch>> {
            Watch::new(link).map(Some)
        }

        /// Watches for room to write (`write`) or for readability.
        pub(crate) fn with(handle: BorrowedHandle<'_>, write: bool) -> io::Result<Watch> {
            tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
            let interest = if write { Interest::WRITABLE } else { Interest::READABLE };
            let fd = handle.try_clone_to_owned()?;
            #[allow(unsafe_code)]
            // SAFETY: an OwnedFd owns its descriptor: it stays open, the
            // same description, for as long as the AsyncFd holds it.
            unsafe { AsyncFd::register_with_interest(fd, interest) }
                .map(|fd| Watch(fd, write))
                .map_err(io::Error::from)
        }

        /// Ready once the handle became ready (or hung up) since the last
        /// time this returned ready.
        pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let ready =
                if self.1 { self.0.poll_write_ready(cx) } else { self.0.poll_read_ready(cx) };
            match ready {
                Poll::Ready(Ok(mut ready)) => {
                    ready.clear_ready();
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    /// The readiness's epoll instance, for a poller.
    impl std::os::fd::AsFd for crate::aio::Readiness<'_> {
        fn as_fd(&self) -> BorrowedHandle<'_> {
            self.edges.as_fd()
        }
    }

    /// A private timer that makes a [`Watch`] ready every `interval`.
    pub(crate) struct Ticker {
        tick: Tick,
        watch: Watch,
    }

    impl Ticker {
        pub(crate) fn every(interval: Duration) -> io::Result<Ticker> {
            let tick = Tick::every(interval)?;
            let watch = Watch::new(std::os::fd::AsFd::as_fd(&tick))?;
            Ok(Ticker { tick, watch })
        }

        /// Ready once per period that passed since the last ready.
        pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let ready = self.watch.poll(cx);
            if ready.is_ready() {
                self.tick.reset();
            }
            ready
        }
    }
}
