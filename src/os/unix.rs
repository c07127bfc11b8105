//! The Unix side of the platform layer: `multiproc-posix` and the standard
//! library's Unix extensions, under the layer's names.

pub(crate) use multiproc_posix::shm::{OpenError, Segment};
pub(crate) use multiproc_posix::{ident, image, limits, Os};
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
    pub(crate) fn link_watch(link: BorrowedHandle<'_>, interest: Interest) -> Watch<'_> {
        Watch::new(link, interest)
    }

    /// Watches a listener for a peer to accept.
    pub(crate) fn listener_watch(listener: &impl AsFd) -> Watch<'_> {
        Watch::new(listener.as_fd(), Interest::Read)
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
