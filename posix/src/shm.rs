//! Shared-memory segments: anonymous memfds, sealed at their size and mapped
//! shared. A segment is passed to another process by its fd (inherited, or
//! sent with SCM_RIGHTS) and goes away when the last process holding the fd
//! or a mapping exits: nothing is named in /dev/shm, so a kill -9 leaks
//! nothing.
//!
//! Sealing (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) matters for safety:
//! a peer that could shrink the file would make our next access to the
//! mapping a SIGBUS. [`Segment::open`] refuses an fd without those seals.

use memmap2::{MmapOptions, MmapRaw};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, MemfdFlags, SealFlags};
use std::io;

const REQUIRED_SEALS: SealFlags = SealFlags::SHRINK.union(SealFlags::GROW).union(SealFlags::SEAL);

/// Why an fd could not be opened as a segment.
#[derive(Debug)]
pub enum OpenError {
    /// Not a sealed memfd of a usable size: not one of ours, or tampered with.
    Foreign(&'static str),
    /// The system refused (mapping, fstat).
    Io(io::Error),
}

/// A mapped, sealed memfd.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    fd: OwnedFd,
}

impl Segment {
    /// A new zero-filled segment of `len` bytes (`len > 0`).
    pub fn create(len: usize) -> io::Result<Segment> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty segment"));
        }
        let fd = fs::memfd_create("multiproc", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        fs::ftruncate(&fd, len as u64)?;
        fs::fcntl_add_seals(&fd, REQUIRED_SEALS)?;
        let map = MmapOptions::new().len(len).map_raw(fd.as_raw_fd())?;
        Ok(Segment { map, fd })
    }

    /// Maps a segment received from a peer, after checking its seals and size.
    pub fn open(fd: OwnedFd) -> Result<Segment, OpenError> {
        let seals = fs::fcntl_get_seals(&fd).map_err(|_| OpenError::Foreign("not a memfd"))?;
        if !seals.contains(REQUIRED_SEALS) {
            return Err(OpenError::Foreign("memfd is not sealed at its size"));
        }
        let stat = fs::fstat(&fd).map_err(|e| OpenError::Io(e.into()))?;
        let len = usize::try_from(stat.st_size)
            .ok()
            .filter(|&len| len > 0)
            .ok_or(OpenError::Foreign("memfd is empty"))?;
        let map = MmapOptions::new().len(len).map_raw(fd.as_raw_fd()).map_err(OpenError::Io)?;
        Ok(Segment { map, fd })
    }

    /// Start of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memfd, for passing to another process.
    pub fn handle(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_refuse_foreign() {
        let seg = Segment::create(100).unwrap();
        assert_eq!(seg.len(), 100);
        let dup = seg.handle().try_clone_to_owned().unwrap();
        let again = Segment::open(dup).unwrap();
        assert_eq!(again.len(), 100);
        // An unsealed memfd (or any other file) is refused.
        let plain = fs::memfd_create("x", MemfdFlags::CLOEXEC).unwrap();
        fs::ftruncate(&plain, 100).unwrap();
        assert!(matches!(Segment::open(plain), Err(OpenError::Foreign(_))));
        let file: OwnedFd = std::fs::File::open("/proc/self/stat").unwrap().into();
        assert!(matches!(Segment::open(file), Err(OpenError::Foreign(_))));
        assert!(Segment::create(0).is_err());
    }
}
