//! The Windows side of the platform layer: `multiproc-windows` and the
//! standard library's Windows extensions, under the layer's names. What
//! Windows has no form of (fork) is absent, and `build.rs` gates off the
//! facade's code that needs it.

pub(crate) use multiproc_windows::shm::{OpenError, Segment};
pub(crate) use multiproc_windows::{ident, image, limits, Os};
pub(crate) use std::os::windows::io::{BorrowedHandle, OwnedHandle};

/// A handle's value, as a transfer table and a bootstrap carry it.
pub(crate) type RawHandle = usize;

/// What owns or borrows an OS handle.
pub(crate) trait AsHandle {
    /// The handle, borrowed.
    fn as_handle(&self) -> BorrowedHandle<'_>;

    /// The handle's value, for a transfer table.
    fn as_raw_handle(&self) -> RawHandle {
        std::os::windows::io::AsRawHandle::as_raw_handle(&self.as_handle()) as RawHandle
    }
}

impl<T: std::os::windows::io::AsHandle + ?Sized> AsHandle for T {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        std::os::windows::io::AsHandle::as_handle(self)
    }
}

/// Borrows the handle whose value is `raw`.
///
/// # Safety
/// The handle is open, and stays open for the borrow's life.
#[allow(unsafe_code)]
pub(crate) unsafe fn borrow_raw<'a>(raw: RawHandle) -> BorrowedHandle<'a> {
    // SAFETY: the caller's contract.
    unsafe { BorrowedHandle::borrow_raw(raw as std::os::windows::io::RawHandle) }
}

pub(crate) mod transfer {
    //! The link beside every channel: a duplex named pipe. The system
    //! counts the handles of each end, so a peer that closed or died shows
    //! as a broken pipe, and batches on it move handles into the process at
    //! the other end (`DuplicateHandle`).
    pub(crate) use multiproc_windows::link::{pair, peer_gone, recv_handles, send_handles};

    /// What Unix does by pointing a descriptor at `/dev/null` (release
    /// what it refers to, keep the number) has no form for a handle: the
    /// handle is released when its owner drops it.
    pub(crate) fn retire(_: super::BorrowedHandle<'_>) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) mod net {
    //! Stream connections for `connection`: named pipes (local) and TCP.
    use super::{BorrowedHandle, OwnedHandle};
    pub use multiproc_windows::net::LocalStream;
    pub(crate) use multiproc_windows::net::{
        is_disconnect, is_stale, poll_until, recv_some, send_some, shut_down, Interest,
        LocalListener, Socket, Watch,
    };
    use std::io;
    use std::net::TcpListener;

    /// A stream, borrowed.
    pub(crate) type SocketRef<'a> = &'a Socket;

    /// Where default local addresses live: named pipes with this prefix.
    pub(crate) const LOCAL_PREFIX: Option<&str> = Some(multiproc_windows::net::LOCAL_PREFIX);

    pub(crate) fn socket_ref(socket: &Socket) -> SocketRef<'_> {
        socket
    }

    /// Watches a stream.
    pub(crate) fn socket_watch(socket: SocketRef<'_>, interest: Interest) -> Watch<'_> {
        Watch::socket(socket, interest)
    }

    /// Watches the link beside a channel.
    #[cfg_attr(mp_async, allow(dead_code))]
    pub(crate) fn link_watch(link: BorrowedHandle<'_>, interest: Interest) -> Watch<'_> {
        Watch::pipe(link, interest)
    }

    /// What a listener is watched through.
    pub(crate) trait Listen {
        fn watch(&self) -> Watch<'_>;
        fn handle(&self) -> io::Result<OwnedHandle>;
        /// Its socket's handle, if it is one (for an async accept, which
        /// looks at the listener after naps either way).
        #[cfg(mp_async)]
        fn ready(&self) -> Option<BorrowedHandle<'_>> {
            None
        }
    }

    impl Listen for TcpListener {
        fn watch(&self) -> Watch<'_> {
            Watch::tcp_listener(self)
        }
        #[cfg(mp_async)]
        fn ready(&self) -> Option<BorrowedHandle<'_>> {
            Some(multiproc_windows::net::socket_as_handle(self))
        }
        fn handle(&self) -> io::Result<OwnedHandle> {
            multiproc_windows::net::tcp_listener_handle(self)
        }
    }

    impl Listen for LocalListener {
        fn watch(&self) -> Watch<'_> {
            Watch::local_listener(self)
        }
        fn handle(&self) -> io::Result<OwnedHandle> {
            self.waiting_handle()
        }
    }

    /// Watches a listener for a peer to accept.
    pub(crate) fn listener_watch(listener: &impl Listen) -> Watch<'_> {
        listener.watch()
    }

    /// What an async accept watches (see [`Listen::ready`]).
    #[cfg(mp_async)]
    pub(crate) fn listener_ready(listener: &impl Listen) -> Option<BorrowedHandle<'_>> {
        listener.ready()
    }

    /// The handle a stream passes to another process as: a pipe end's or
    /// a TCP socket's.
    pub(crate) fn socket_handle(socket: SocketRef<'_>) -> BorrowedHandle<'_> {
        socket.handle()
    }

    /// A stream received from another process.
    pub(crate) fn socket_from_handle(handle: OwnedHandle) -> io::Result<Socket> {
        Socket::from_handle(handle)
    }

    /// A listener's handle, to go on listening in another process.
    pub(crate) fn listener_handle(listener: &impl Listen) -> io::Result<OwnedHandle> {
        listener.handle()
    }

    pub(crate) fn tcp_listener_from_handle(handle: OwnedHandle) -> io::Result<TcpListener> {
        multiproc_windows::net::tcp_listener_from_handle(handle)
    }

    pub(crate) fn local_listener_from_handle(
        handle: OwnedHandle,
        path: &std::path::Path,
    ) -> io::Result<LocalListener> {
        LocalListener::from_handle(handle, path)
    }
}

pub(crate) mod fs {
    //! Files the facade makes.
    use std::io;
    use std::path::Path;

    /// Makes directory `path` (under the temporary directory, which is the
    /// user's own on Windows).
    pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
}

pub(crate) mod launch {
    //! Starting, waiting for and ending children; the spawned child's side
    //! of the bootstrap.
    pub(crate) use multiproc_windows::child::{
        at_exit, exe_identity, exit_now, parent_pid, read_sealed, runs_our_exe, secure_mode,
        signal_name, spawn_self, take_inherited, Child,
    };

    /// Declares `$name`, a static the C runtime calls before `main` in
    /// every binary that keeps it (`.CRT$XCU`), which runs `$f`: how a
    /// spawned child's code learns of being one before the program's own.
    macro_rules! before_main {
        ($name:ident = $f:path) => {
            #[used]
            #[link_section = ".CRT$XCU"]
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
    //! Readiness for async waiters on Windows (the `tokio` feature). An
    //! object's bell is its segment's own (`multiproc_windows::bell`): one
    //! more parking bucket, found from any word's address, so nothing
    //! travels for it, and the backend's park rings it for async waiters.
    //! Waits sleep on the system's thread pool, which wakes the task: no
    //! handle here is registered with tokio's reactor, so the forms run on
    //! any executor. What the system gives no signal for (a stream's or a
    //! link's readiness, which the blocking forms look at between naps too)
    //! is looked at again after a nap. [`Edges`] gathers them all into one
    //! event, for `connection::wait` and a `Readiness`.
    use super::BorrowedHandle;
    use multiproc_core::Liveness;
    use multiproc_windows::bell::{Bell, Gather, Listening, Signaled, Timer};
    use std::io;
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// How long an async wait on a stream naps before it looks again.
    const NAP: Duration = Duration::from_millis(1);

    /// What an async wait watches: a segment's bell, a handle signaled
    /// once what it waits for happened (a child's process handle), or a
    /// period (what no handle tells of, looked at that often).
    pub(crate) enum Ready<'a> {
        Bell(Bell),
        Handle(BorrowedHandle<'a>),
        Every(Duration),
    }

    /// A channel's link, whose hang-up no handle tells of here: looked at
    /// at the liveness checks' interval.
    pub(crate) fn link(_link: BorrowedHandle<'_>) -> Ready<'_> {
        Ready::Every(<multiproc_windows::Os as Liveness>::CHECK_INTERVAL)
    }

    /// A stream (a socket, a pipe end): looked at after naps.
    pub(crate) fn stream(_stream: BorrowedHandle<'_>) -> Ready<'_> {
        Ready::Every(NAP)
    }

    /// A handle signaled once what a wait waits for happened.
    pub(crate) fn signaled(handle: BorrowedHandle<'_>) -> Ready<'_> {
        Ready::Handle(handle)
    }

    /// The bell of the segment mapped at `base`.
    pub(crate) fn segment_bell<'a>(base: *const u8) -> Option<Ready<'a>> {
        Bell::of(base).map(Ready::Bell)
    }

    /// An async wait's sleep: see the module docs.
    pub(crate) enum Watch {
        Bell(Listening),
        Handle(Signaled),
        Nap(Timer),
    }

    impl Watch {
        /// Listens on a bell (counted in while this lives), or watches a
        /// handle.
        pub(crate) fn new(ready: Ready<'_>) -> io::Result<Watch> {
            match ready {
                Ready::Bell(bell) => bell.listen().map(Watch::Bell),
                Ready::Handle(handle) => Signaled::new(handle).map(Watch::Handle),
                Ready::Every(period) => Timer::every(period).map(Watch::Nap),
            }
        }

        /// A link's hang-up: no handle tells of it here (`None`): the
        /// caller's periodic check looks.
        pub(crate) fn hangup(_link: BorrowedHandle<'_>) -> io::Result<Option<Watch>> {
            Ok(None)
        }

        /// A stream's readiness: a nap, then the caller looks again.
        pub(crate) fn with(_stream: BorrowedHandle<'_>, _write: bool) -> io::Result<Watch> {
            Timer::every(NAP).map(Watch::Nap)
        }

        /// Ready once what it watches may have happened (a bell's sleep
        /// also ends after a bounded slice: see the backend).
        pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self {
                Watch::Bell(listening) => listening.poll(cx),
                Watch::Handle(signaled) => signaled.poll(cx),
                Watch::Nap(timer) => timer.poll(cx),
            }
        }
    }

    /// A private timer, ready after `interval`, then after periods that
    /// double up to the bell's idle slice: it paces the looks no handle
    /// announces (a peer's hang-up, a lock holder's death), which each
    /// cost a system call here and usually find nothing.
    pub(crate) struct Ticker(Timer);

    impl Ticker {
        pub(crate) fn every(interval: Duration) -> io::Result<Ticker> {
            let longest = multiproc_windows::bell::IDLE_SLICE.max(interval);
            Timer::backing_off(interval, longest).map(Ticker)
        }

        pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.0.poll(cx)
        }
    }

    /// Many sources gathered into one event (see the backend's `Gather`),
    /// and the periods it fires at (one timer each, however many sources
    /// asked for it).
    pub(crate) struct Edges(Gather, Vec<Duration>);

    impl Edges {
        pub(crate) fn new() -> io::Result<Edges> {
            Ok(Edges(Gather::new()?, Vec::new()))
        }

        pub(crate) fn add(&mut self, ready: Ready<'_>) -> io::Result<()> {
            match ready {
                Ready::Bell(bell) => self.0.add_bell(&bell),
                Ready::Handle(handle) => self.0.add_handle(handle),
                Ready::Every(period) if self.1.contains(&period) => Ok(()),
                Ready::Every(period) => {
                    self.1.push(period);
                    self.0.add_every(period)
                }
            }
        }

        /// Takes what fired so far: the event is unsignaled until the next.
        pub(crate) fn clear(&self) -> io::Result<()> {
            self.0.clear()
        }

        /// Sleeps until a source fires (`true`) or `timeout` passes.
        pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
            self.0.wait(timeout)
        }
    }

    /// The readiness's event, for a wait of one's own.
    impl std::os::windows::io::AsHandle for crate::aio::Readiness<'_> {
        fn as_handle(&self) -> BorrowedHandle<'_> {
            std::os::windows::io::AsHandle::as_handle(&self.edges.0)
        }
    }
}
