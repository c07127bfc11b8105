//! Shared-memory segments, mapped shared and passed to another process by
//! their fd (inherited, or sent with SCM_RIGHTS). A segment goes away when
//! the last process holding its fd or a mapping exits: nothing keeps a name,
//! so a kill -9 leaks nothing.
//!
//! - Native Linux and FreeBSD (13+): an anonymous memfd, sealed at its size
//!   (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`). Sealing matters for
//!   safety: a peer that could shrink the file would make our next access
//!   to the mapping a SIGBUS, so [`Segment::open`] refuses an fd without
//!   those seals.
//! - macOS, and the portable path anywhere (`--cfg multiproc_portable`):
//!   `shm_open` under a fresh name, unlinked at once. Such an object takes
//!   no seals; [`Segment::open`] checks that it is a writable regular
//!   object of a usable size. (macOS refuses to resize a shm object once
//!   sized; on Linux's portable path a peer could still shrink it: the
//!   price of the fallback.)

use memmap2::{MmapOptions, MmapRaw};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs;
use std::io;

/// Why an fd could not be opened as a segment.
#[derive(Debug)]
pub enum OpenError {
    /// Not a segment of a usable size (unsealed, read-only, empty): not one
    /// of ours, or tampered with.
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
        let fd = new_object(len)?;
        let map = MmapOptions::new().len(len).map_raw(fd.as_raw_fd())?;
        Ok(Segment { map, fd })
    }

    /// Maps a segment received from a peer, after checking its seals and size.
    pub fn open(fd: OwnedFd) -> Result<Segment, OpenError> {
        check_object(fd.as_fd())?;
        let stat = fs::fstat(&fd).map_err(|e| OpenError::Io(e.into()))?;
        let len = usize::try_from(stat.st_size)
            .ok()
            .filter(|&len| len > 0)
            .ok_or(OpenError::Foreign("the segment is empty"))?;
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

    /// The segment's fd, for passing to another process.
    pub fn handle(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether `fd` is this segment's object (the same file), not merely
    /// one like it.
    pub fn is_same(&self, fd: BorrowedFd<'_>) -> bool {
        match (fs::fstat(&self.fd), fs::fstat(fd)) {
            (Ok(ours), Ok(theirs)) => ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino,
            _ => false,
        }
    }
}

#[cfg(all(any(target_os = "linux", target_os = "freebsd"), not(multiproc_portable)))]
const REQUIRED_SEALS: fs::SealFlags =
    fs::SealFlags::SHRINK.union(fs::SealFlags::GROW).union(fs::SealFlags::SEAL);

/// A fresh, zero-filled memory object of `len` bytes: a sealed memfd.
#[cfg(all(any(target_os = "linux", target_os = "freebsd"), not(multiproc_portable)))]
fn new_object(len: usize) -> io::Result<OwnedFd> {
    let flags = fs::MemfdFlags::CLOEXEC | fs::MemfdFlags::ALLOW_SEALING;
    let fd = fs::memfd_create("multiproc", flags)?;
    fs::ftruncate(&fd, len as u64)?;
    fs::fcntl_add_seals(&fd, REQUIRED_SEALS)?;
    Ok(fd)
}

/// Whether `fd` is a segment of ours: a memfd sealed at its size.
#[cfg(all(any(target_os = "linux", target_os = "freebsd"), not(multiproc_portable)))]
fn check_object(fd: BorrowedFd<'_>) -> Result<(), OpenError> {
    let seals = fs::fcntl_get_seals(fd).map_err(|_| OpenError::Foreign("not a memfd"))?;
    if !seals.contains(REQUIRED_SEALS) {
        return Err(OpenError::Foreign("memfd is not sealed at its size"));
    }
    Ok(())
}

/// A fresh, zero-filled memory object of `len` bytes: a shm object under a
/// name no one else uses, unlinked before anyone could open it by name.
#[cfg(any(not(any(target_os = "linux", target_os = "freebsd")), multiproc_portable))]
fn new_object(len: usize) -> io::Result<OwnedFd> {
    use rustix::shm;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    loop {
        // At most 31 bytes (macOS's limit): "/mp-" and three 8-digit words.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "/mp-{:x}-{:x}-{:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let fd = match shm::open(name.as_str(), flags, fs::Mode::RUSR | fs::Mode::WUSR) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        };
        shm::unlink(name.as_str())?;
        // shm_open sets FD_CLOEXEC (POSIX); say so anyway.
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        fs::ftruncate(&fd, len as u64)?;
        return Ok(fd);
    }
}

/// Whether `fd` could be a segment of ours: open for reading and writing
/// (a read-only file could not be mapped shared, and is not ours).
#[cfg(any(not(any(target_os = "linux", target_os = "freebsd")), multiproc_portable))]
fn check_object(fd: BorrowedFd<'_>) -> Result<(), OpenError> {
    let flags = fs::fcntl_getfl(fd).map_err(|_| OpenError::Foreign("not an open object"))?;
    if flags & fs::OFlags::RWMODE != fs::OFlags::RDWR {
        return Err(OpenError::Foreign("not open for reading and writing"));
    }
    let stat = fs::fstat(fd).map_err(|e| OpenError::Io(e.into()))?;
    if fs::FileType::from_raw_mode(stat.st_mode) != fs::FileType::RegularFile {
        return Err(OpenError::Foreign("not a shared memory object"));
    }
    Ok(())
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
        // An unsealed memfd is refused where segments are sealed.
        #[cfg(all(target_os = "linux", not(multiproc_portable)))]
        {
            let plain = fs::memfd_create("x", fs::MemfdFlags::CLOEXEC).unwrap();
            fs::ftruncate(&plain, 100).unwrap();
            assert!(matches!(Segment::open(plain), Err(OpenError::Foreign(_))));
        }
        // A file open for reading only is refused everywhere.
        let file: OwnedFd = std::fs::File::open(std::env::current_exe().unwrap()).unwrap().into();
        assert!(matches!(Segment::open(file), Err(OpenError::Foreign(_))));
        assert!(Segment::create(0).is_err());
    }

    /// Each build takes the path it claims: a memfd on native Linux, an
    /// unlinked shm object on the portable path (nothing left by name).
    #[test]
    #[cfg(target_os = "linux")]
    fn segments_are_made_the_way_the_build_says() {
        let seg = Segment::create(4096).unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", seg.handle().as_raw_fd()))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if cfg!(multiproc_portable) {
            assert!(link.starts_with("/dev/shm/mp-") && link.ends_with(" (deleted)"), "{link}");
        } else {
            assert!(link.starts_with("/memfd:multiproc"), "{link}");
        }
    }
}
