//! # multiproc-windows
//!
//! The Windows backend's seam: the same item names as `multiproc-posix`
//! (`Os`, `shm::Segment`, `ident`), so the facade is written once against
//! them and builds for `x86_64-pc-windows-gnu`. It is not filled in yet:
//! [`shm::Segment::create`] returns `Unsupported`, so no shared object can be
//! made and nothing below it runs. The plan (DESIGN.md): unnamed file
//! mappings, a kernel event per blocking object for the slow path (not
//! `WaitOnAddress`, which wakes only threads of one process), CreateProcessW
//! with an explicit handle list.
#![deny(unsafe_code)]

pub mod shm {
    //! Shared memory: not yet available on Windows.

    /// Uninhabited until the backend is written.
    #[derive(Debug)]
    pub enum Segment {}

    impl Segment {
        pub fn create(_len: usize) -> std::io::Result<Segment> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "multiproc: shared memory is not implemented on Windows yet",
            ))
        }

        pub fn as_ptr(&self) -> *mut u8 {
            match *self {}
        }

        pub fn len(&self) -> usize {
            match *self {}
        }

        pub fn is_empty(&self) -> bool {
            match *self {}
        }
    }
}

pub mod image {
    //! This program's image: not looked up on Windows yet, so no code
    //! reference resolves there (nothing spawns there yet either).

    pub fn constant_segments(_addr: usize) -> Vec<std::ops::Range<usize>> {
        Vec::new()
    }

    pub fn read_own(_addr: usize, _buf: &mut [u8]) -> bool {
        false
    }
}

pub mod ident {
    //! Task ids. Thread ids come from a counter until the backend uses
    //! `GetCurrentThreadId`; nothing shared can be locked yet anyway.
    use multiproc_core::lock::Owner;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub fn process() -> Owner {
        Owner { id: std::process::id() & multiproc_core::lock::ID_MASK, stamp: 1 }
    }

    pub fn thread() -> Owner {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        thread_local!(static ID: u32 = NEXT.fetch_add(1, Ordering::Relaxed));
        Owner { id: ID.with(|id| *id), stamp: 1 }
    }

    pub fn is_alive(_id: u32, _stamp: u32) -> bool {
        true
    }
}

use multiproc_core::sync::AtomicU32;
use std::time::{Duration, Instant};

/// The OS services `core` asks for; unreachable until [`shm`] works, since
/// every object that parks lives in a segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl multiproc_core::Park for Os {
    fn wait(&self, _word: &AtomicU32, _expected: u32, timeout: Option<Duration>) {
        // A spurious return is within the contract; nap so loops do not spin.
        std::thread::sleep(
            timeout.unwrap_or(Duration::from_millis(1)).min(Duration::from_millis(1)),
        );
    }

    fn wake_one(&self, _word: &AtomicU32) {}

    fn wake_all(&self, _word: &AtomicU32) {}

    fn now(&self) -> Duration {
        use std::sync::OnceLock;
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed()
    }
}

impl multiproc_core::Liveness for Os {
    fn is_alive(&self, id: u32, stamp: u32) -> bool {
        ident::is_alive(id, stamp)
    }
}

pub mod child {
    //! Child processes: not yet available on Windows (CreateProcessW with an
    //! explicit handle list is the plan).
    use std::io;
    use std::time::Duration;

    /// Uninhabited until the backend is written.
    #[derive(Debug)]
    pub enum Child {}

    impl Child {
        pub fn pid(&self) -> u32 {
            match *self {}
        }
        pub fn exitcode(&self) -> Option<i32> {
            match *self {}
        }
        pub fn try_wait(&mut self) -> io::Result<Option<i32>> {
            match *self {}
        }
        pub fn wait_timeout(&mut self, _timeout: Option<Duration>) -> io::Result<Option<i32>> {
            match *self {}
        }
        pub fn wait_exit(&self, _timeout: Option<Duration>) -> io::Result<bool> {
            match *self {}
        }
        pub fn terminate(&mut self) -> io::Result<()> {
            match *self {}
        }
        pub fn kill(&mut self) -> io::Result<()> {
            match *self {}
        }
    }
}
