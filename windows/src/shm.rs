//! Shared-memory segments: unnamed sections backed by the paging file,
//! mapped whole and passed to another process by handle (inherited by a
//! spawned child, or duplicated into a running one). A section goes away
//! when the last handle and view are gone, so a killed process leaks
//! nothing.
//!
//! Can a section's size change under a mapped view? No API shrinks a
//! section, and a view keeps the size it was mapped with even if a section
//! were extended (`NtExtendSection`, documented for sections made with
//! `SEC_RESERVE`; Wine 8 does not implement it at all). So bounds checked
//! once, when the whole section is mapped, stay true for the view's life:
//! what Linux needs seals for, Windows gives by construction, and no guard
//! is needed here.
//!
//! Each segment ends with one page of its own, the *trailer*, after the
//! `len` bytes the caller asked for (rounded up to a page):
//! a magic number, `len`, an id naming the segment's parking semaphores,
//! and the waiter count of each parking bucket (see `park.rs`).
//! [`Segment::open`] refuses a section whose trailer is missing or
//! inconsistent with its size.
#![allow(unsafe_code)]

use crate::sys;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use windows_sys::Win32::Foundation::{
    CompareObjectHandles, ERROR_ACCESS_DENIED, ERROR_INVALID_HANDLE, HANDLE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE,
};

/// The page size of every Windows target Rust supports (x86, x86_64,
/// aarch64).
pub(crate) const PAGE: usize = 4096;
/// Parking buckets per segment: a word parks in bucket `(offset / 4) %
/// BUCKETS`.
pub(crate) const BUCKETS: usize = 16;
/// The bucket after the parking ones: the segment's bell, where async
/// waiters of any of its words count themselves in (see `bell.rs`).
pub(crate) const BELL: usize = BUCKETS;
const MAGIC: u64 = u64::from_le_bytes(*b"MPWSEG02");

/// One parking bucket's waiter count, on its own cache line.
#[repr(C, align(64))]
pub(crate) struct Bucket {
    pub(crate) waiters: AtomicU32,
}

/// The segment's last page.
#[repr(C)]
struct Trailer {
    magic: AtomicU64,
    len: AtomicU64,
    /// Names the segment's semaphores (creator's pid, its creation stamp,
    /// a counter): unique on the machine while the creator runs.
    id: [AtomicU32; 4],
    /// The parking buckets, then the bell's.
    buckets: [Bucket; BUCKETS + 1],
}

static_assertions::assert_eq_size!(Bucket, [u8; 64]);
static_assertions::const_assert!(core::mem::size_of::<Trailer>() <= PAGE);
static_assertions::const_assert_eq!(core::mem::offset_of!(Trailer, buckets), 64);

/// Why a handle could not be opened as a segment.
#[derive(Debug)]
pub enum OpenError {
    /// Not one of our sections (not a section, read-only, no trailer, sizes
    /// that disagree): foreign, or tampered with.
    Foreign(&'static str),
    /// The system refused (mapping, querying).
    Io(io::Error),
}

/// A mapped section.
#[derive(Debug)]
pub struct Segment {
    base: *mut u8,
    len: usize,
    handle: OwnedHandle,
    parking: Arc<Parking>,
}

// SAFETY: the view is memory shared by design (every access to it goes
// through atomics or is the caller's to synchronise); the handle is owned.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// A new zero-filled segment of `len` bytes (`len > 0`).
    pub fn create(len: usize) -> io::Result<Segment> {
        let total = len
            .checked_next_multiple_of(PAGE)
            .and_then(|l| l.checked_add(PAGE))
            .filter(|_| len > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad segment size"))?;
        let handle = new_section(total)?;
        let base = map(&handle).map_err(|e| match e {
            OpenError::Io(e) => e,
            OpenError::Foreign(why) => io::Error::other(why),
        })?;
        let trailer = trailer(base, total);
        trailer.len.store(len as u64, Ordering::Relaxed);
        let id = new_id();
        for (slot, word) in trailer.id.iter().zip(id) {
            slot.store(word, Ordering::Relaxed);
        }
        trailer.magic.store(MAGIC, Ordering::Release);
        Ok(Segment { base, len, handle, parking: Parking::register(base, total, id) })
    }

    /// Maps a segment received from a peer, after checking that it is a
    /// writable section with a consistent trailer.
    pub fn open(handle: OwnedHandle) -> Result<Segment, OpenError> {
        let base = map(&handle)?;
        let unmap = |e| {
            // SAFETY: `base` is the view just mapped; nothing refers to it.
            unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: base.cast() }) };
            e
        };
        let total = region_size(base).map_err(|e| unmap(OpenError::Io(e)))?;
        if total < 2 * PAGE || total % PAGE != 0 {
            return Err(unmap(OpenError::Foreign("a section too small for a segment")));
        }
        let trailer = trailer(base, total);
        if trailer.magic.load(Ordering::Acquire) != MAGIC {
            return Err(unmap(OpenError::Foreign("no segment trailer")));
        }
        let len = trailer.len.load(Ordering::Relaxed);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 || len.checked_next_multiple_of(PAGE) != Some(total - PAGE) {
            return Err(unmap(OpenError::Foreign("the trailer's length disagrees with the size")));
        }
        let id = trailer.id.each_ref().map(|w| w.load(Ordering::Relaxed));
        Ok(Segment { base, len, handle, parking: Parking::register(base, total, id) })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The section's handle, to pass to another process.
    pub fn handle(&self) -> BorrowedHandle<'_> {
        self.handle.as_handle()
    }

    /// Whether `handle` is this segment's section (the same kernel object),
    /// not merely one like it.
    pub fn is_same(&self, handle: BorrowedHandle<'_>) -> bool {
        let (ours, theirs) = (self.handle.as_raw_handle(), handle.as_raw_handle());
        // SAFETY: both handles are open for the call (one owned, one borrowed).
        unsafe { CompareObjectHandles(ours as HANDLE, theirs as HANDLE) != 0 }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.parking.unregister();
        // SAFETY: the view was mapped by this segment and nothing refers to
        // it any more (views borrow the segment).
        unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.base.cast() }) };
    }
}

/// A new unnamed, zero-filled, pagefile-backed section of `total` bytes,
/// not inheritable.
pub(crate) fn new_section(total: usize) -> io::Result<OwnedHandle> {
    // SAFETY: a pagefile-backed section (INVALID_HANDLE_VALUE), no name,
    // default security (not inheritable); sizes are plain numbers.
    sys::owned(unsafe {
        CreateFileMappingW(
            windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (total as u64 >> 32) as u32,
            total as u32,
            std::ptr::null(),
        )
    })
}

/// Maps all of section `handle`, read and write.
fn map(handle: &OwnedHandle) -> Result<*mut u8, OpenError> {
    // SAFETY: maps the whole section (size 0) at an address the system
    // picks; a handle that is not a section fails cleanly.
    let view = unsafe {
        MapViewOfFile(handle.as_raw_handle() as HANDLE, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0)
    };
    if view.Value.is_null() {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_INVALID_HANDLE) => OpenError::Foreign("not a section"),
            Some(ERROR_ACCESS_DENIED) => OpenError::Foreign("a section we may not write"),
            _ => OpenError::Io(e),
        });
    }
    Ok(view.Value.cast())
}

/// The size of the view at `base` (the whole section, in pages).
fn region_size(base: *mut u8) -> io::Result<usize> {
    // SAFETY: MEMORY_BASIC_INFORMATION is plain data; VirtualQuery only
    // writes it, and `base` is a view of ours.
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    let n = unsafe {
        // SAFETY: as above: a valid out-pointer of the length given.
        VirtualQuery(base.cast(), &mut info, std::mem::size_of::<MEMORY_BASIC_INFORMATION>())
    };
    if n == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.RegionSize)
}

/// The trailer of the view at `base`, `total` bytes long.
fn trailer<'a>(base: *mut u8, total: usize) -> &'a Trailer {
    // SAFETY: the view is `total` bytes (a multiple of PAGE, at least two
    // pages), so its last page is in bounds and page-aligned; Trailer is
    // atomics only, valid for any bytes. The caller keeps the view mapped
    // while it uses the reference.
    unsafe { &*base.add(total - PAGE).cast::<Trailer>() }
}

/// A fresh segment id: this process's pid and stamp and a counter.
fn new_id() -> [u32; 4] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let me = crate::ident::process();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    [me.id, me.stamp, n as u32, (n >> 32) as u32]
}

/// A segment's parking: its buckets and their semaphores, found from a
/// word's address (see `park.rs`).
#[derive(Debug)]
pub(crate) struct Parking {
    start: usize,
    end: usize,
    buckets: usize,
    id: [u32; 4],
    semaphores: [OnceLock<Option<OwnedHandle>>; BUCKETS + 1],
}

/// The mapped segments of this process, by address.
static SEGMENTS: RwLock<Vec<Arc<Parking>>> = RwLock::new(Vec::new());

impl Parking {
    fn register(base: *mut u8, total: usize, id: [u32; 4]) -> Arc<Parking> {
        let start = base as usize;
        let parking = Arc::new(Parking {
            start,
            end: start + total - PAGE,
            buckets: start + total - PAGE + std::mem::offset_of!(Trailer, buckets),
            id,
            semaphores: Default::default(),
        });
        let mut all = SEGMENTS.write().unwrap_or_else(|e| e.into_inner());
        let at = all.partition_point(|p| p.start < start);
        all.insert(at, parking.clone());
        parking
    }

    fn unregister(&self) {
        let mut all = SEGMENTS.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|p| p.start != self.start);
    }

    /// The segment holding address `addr`, and the bucket a word there
    /// parks in.
    pub(crate) fn find(addr: usize) -> Option<(Arc<Parking>, usize)> {
        let all = SEGMENTS.read().unwrap_or_else(|e| e.into_inner());
        let at = all.partition_point(|p| p.start <= addr).checked_sub(1)?;
        let parking = &all[at];
        (addr < parking.end).then(|| (parking.clone(), ((addr - parking.start) / 4) % BUCKETS))
    }

    /// Bucket `b`'s waiter count, in the mapping ([`BELL`]: the bell's).
    pub(crate) fn bucket(&self, b: usize) -> &Bucket {
        debug_assert!(b <= BELL);
        // SAFETY: the buckets lie in the trailer page of a view that stays
        // mapped while this `Parking` is registered, which is while its
        // segment lives; callers hold a word of that segment.
        unsafe { &*(self.buckets as *const Bucket).add(b) }
    }

    /// Bucket `b`'s semaphore, made or opened by name on first use; `None`
    /// if the system refused one (parking then naps).
    pub(crate) fn semaphore(&self, b: usize) -> Option<HANDLE> {
        let sem = self.semaphores[b].get_or_init(|| {
            let [a, s, lo, hi] = self.id;
            let name = format!("Local\\multiproc-park-{a:08x}{s:08x}{hi:08x}{lo:08x}-{b}");
            let name = sys::wide(name.as_ref());
            // SAFETY: a NUL-terminated name; opens the semaphore if a peer
            // made it already.
            let h = unsafe {
                windows_sys::Win32::System::Threading::CreateSemaphoreW(
                    std::ptr::null(),
                    0,
                    i32::MAX,
                    name.as_ptr(),
                )
            };
            sys::owned(h).ok()
        });
        sem.as_ref().map(|h| h.as_raw_handle() as HANDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_reopens_through_a_duplicate_and_foreign_handles_are_refused() {
        let a = Segment::create(100).unwrap();
        assert_eq!(a.len(), 100);
        // SAFETY: in bounds of the 100 bytes.
        unsafe { a.as_ptr().add(99).write(7) };
        let b = Segment::open(a.handle().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(b.len(), 100);
        // SAFETY: in bounds.
        assert_eq!(unsafe { b.as_ptr().add(99).read() }, 7);
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(Segment::open(file.into()), Err(OpenError::Foreign(_))));
        // A section without our trailer.
        // SAFETY: as in `create`.
        let bare = sys::owned(unsafe {
            CreateFileMappingW(
                windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                3 * PAGE as u32,
                std::ptr::null(),
            )
        })
        .unwrap();
        assert!(matches!(Segment::open(bare), Err(OpenError::Foreign(_))));
    }
}
