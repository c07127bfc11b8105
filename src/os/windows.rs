//! The Windows side of the platform layer: `multiproc-windows` and the
//! standard library's Windows extensions, under the layer's names. What the
//! backend does not provide yet (the transfer link beside channels, sockets
//! for `connection`) is absent, and `build.rs` gates off the facade's
//! modules that need it.

pub(crate) use multiproc_windows::shm::{OpenError, Segment};
pub(crate) use multiproc_windows::{ident, image, Os};
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
}

pub(crate) mod launch {
    //! Starting, waiting for and ending children; the spawned child's side
    //! of the bootstrap.
    pub(crate) use multiproc_windows::child::{
        at_exit, exe_identity, exit_now, parent_pid, read_sealed, runs_our_exe, secure_mode,
        spawn_self, take_inherited, Child,
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
