//! This program's own image: where the loaded object (executable or shared
//! library) that holds a given address keeps its constants, and a way to
//! copy bytes from there that is not a memory access of Rust's.
//!
//! A spawned child is told which function to run as an offset into its
//! image, by a parent it has checked, but whose bytes it must still not
//! trust blindly: before it reads anything at such an offset it makes sure
//! the bytes lie inside the image's read-only data (so a forged offset
//! reads nothing it should not, nothing a process writes at run time), and
//! it reads them through the kernel ([`read_own`]), which reports a bad
//! address instead of faulting and is not an out-of-bounds read of any Rust
//! object.
//!
//! Where the image is: ELF program headers through `dl_iterate_phdr` (Linux,
//! FreeBSD); Mach-O load commands through dyld's image list (macOS: the
//! `__TEXT` and `__DATA_CONST` segments, the latter read-only once dyld has
//! bound it).
//!
//! # Safety
//!
//! `dl_iterate_phdr` hands the callback a pointer to a `dl_phdr_info` and
//! its program headers, valid for the duration of the callback; the
//! callback only reads them. dyld's image headers stay mapped while their
//! image is loaded (this crate's own image, for the calls that matter), and
//! their load commands lie within `sizeofcmds` after the header.
//! `process_vm_readv` and `write` read only as bytes to copy, and the
//! former writes only into the buffer it is given, of the length given.
#![allow(unsafe_code)]

use std::ops::Range;

#[cfg(all(not(target_vendor = "apple"), target_pointer_width = "64"))]
type Phdr = libc::Elf64_Phdr;
#[cfg(all(not(target_vendor = "apple"), target_pointer_width = "32"))]
type Phdr = libc::Elf32_Phdr;

/// ELF's segment permission bits (`<elf.h>`; not in libc for every Unix).
#[cfg(not(target_vendor = "apple"))]
const PF_W: u32 = 2;
#[cfg(not(target_vendor = "apple"))]
const PF_R: u32 = 4;

/// The read-only data of the object that contains `addr`, as address
/// ranges: its loaded segments that are readable and not writable, and its
/// `PT_GNU_RELRO` range (made read-only once relocated: where constants that
/// hold pointers live in a position-independent executable). Empty if no
/// loaded object contains `addr`.
#[cfg(not(target_vendor = "apple"))]
pub fn constant_segments(addr: usize) -> Vec<Range<usize>> {
    struct Search {
        addr: usize,
        found: Vec<Range<usize>>,
    }

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Search` passed below, alive and not
        // otherwise borrowed during the iteration; `info` is valid for this
        // call (dl_iterate_phdr's contract).
        let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let range = |h: &Phdr| {
            let start = base.wrapping_add(h.p_vaddr as usize);
            start..start.saturating_add(h.p_memsz as usize)
        };
        let loads = headers.iter().filter(|h| h.p_type == libc::PT_LOAD);
        if !loads.clone().any(|h| range(h).contains(&search.addr)) {
            return 0;
        }
        let read_only = loads.filter(|h| h.p_flags & PF_R != 0 && h.p_flags & PF_W == 0);
        let relro = headers.iter().filter(|h| h.p_type == libc::PT_GNU_RELRO);
        search.found = read_only.chain(relro).map(range).collect();
        1
    }

    let mut search = Search { addr, found: Vec::new() };
    // SAFETY: `visit` matches the callback type and only reads what it is
    // given; `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found
}

/// The read-only data of the Mach-O image that contains `addr`: its
/// `__TEXT` and `__DATA_CONST` segments. Empty if no loaded image contains
/// `addr`.
#[cfg(target_vendor = "apple")]
pub fn constant_segments(addr: usize) -> Vec<Range<usize>> {
    use macho::*;
    // SAFETY: dyld's image list may be read at any time.
    let count = unsafe { _dyld_image_count() };
    for image in 0..count {
        // SAFETY: `image` is below the count just read.
        let header = unsafe { _dyld_get_image_header(image) };
        if header.is_null() {
            continue;
        }
        // SAFETY: as just above.
        let slide = unsafe { _dyld_get_image_vmaddr_slide(image) } as usize;
        // SAFETY: a loaded image's header (module docs).
        let h = unsafe { &*header };
        if h.magic != MH_MAGIC_64 {
            continue;
        }
        // SAFETY: the load commands follow the header (module docs).
        let mut cmd = unsafe { header.add(1) }.cast::<u8>();
        let mut constants = Vec::new();
        let mut contains = false;
        for _ in 0..h.ncmds {
            // SAFETY: each command starts with a load_command, within
            // `sizeofcmds` (module docs); unaligned reads for safety.
            let lc = unsafe { cmd.cast::<LoadCommand>().read_unaligned() };
            if lc.cmd == LC_SEGMENT_64 {
                // SAFETY: an LC_SEGMENT_64 command is a segment_command_64.
                let seg = unsafe { cmd.cast::<SegmentCommand64>().read_unaligned() };
                let start = (seg.vmaddr as usize).wrapping_add(slide);
                let range = start..start.saturating_add(seg.vmsize as usize);
                contains |= range.contains(&addr);
                let name = seg.segname;
                if name.starts_with(b"__TEXT\0") || name.starts_with(b"__DATA_CONST\0") {
                    constants.push(range);
                }
            }
            if lc.cmdsize == 0 {
                break;
            }
            // SAFETY: still within the commands (module docs).
            cmd = unsafe { cmd.add(lc.cmdsize as usize) };
        }
        if contains {
            return constants;
        }
    }
    Vec::new()
}

/// The few Mach-O and dyld items [`constant_segments`] reads
/// (`<mach-o/loader.h>`, `<mach-o/dyld.h>`).
#[cfg(target_vendor = "apple")]
mod macho {
    pub const MH_MAGIC_64: u32 = 0xfeed_facf;
    pub const LC_SEGMENT_64: u32 = 0x19;

    #[repr(C)]
    pub struct MachHeader64 {
        pub magic: u32,
        pub cputype: i32,
        pub cpusubtype: i32,
        pub filetype: u32,
        pub ncmds: u32,
        pub sizeofcmds: u32,
        pub flags: u32,
        pub reserved: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct LoadCommand {
        pub cmd: u32,
        pub cmdsize: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct SegmentCommand64 {
        pub cmd: u32,
        pub cmdsize: u32,
        pub segname: [u8; 16],
        pub vmaddr: u64,
        pub vmsize: u64,
        pub fileoff: u64,
        pub filesize: u64,
        pub maxprot: i32,
        pub initprot: i32,
        pub nsects: u32,
        pub flags: u32,
    }

    static_assertions::assert_eq_size!(MachHeader64, [u8; 32]);
    static_assertions::assert_eq_size!(SegmentCommand64, [u8; 72]);

    extern "C" {
        pub fn _dyld_image_count() -> u32;
        pub fn _dyld_get_image_header(image_index: u32) -> *const MachHeader64;
        pub fn _dyld_get_image_vmaddr_slide(image_index: u32) -> isize;
    }
}

/// Copies `buf.len()` bytes of this process's memory at `addr` into `buf`,
/// through the kernel; `false` if any of them is not mapped readable.
///
/// One `process_vm_readv`; where a seccomp filter forbids it (Docker's
/// default profile does, without `CAP_SYS_PTRACE`), a pipe: the kernel
/// copies the bytes in with `write` and we read them back.
#[cfg(target_os = "linux")]
pub fn read_own(addr: usize, buf: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, and
    // reads `addr..addr + len` of this process only as bytes to copy (a bad
    // address is an error, never a fault or a Rust-level access).
    let copied = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if copied >= 0 {
        return copied as usize == buf.len();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM | libc::ENOSYS) => read_through_pipe(addr, buf),
        _ => false,
    }
}

/// Copies `buf.len()` bytes of this process's memory at `addr` into `buf`,
/// through the kernel (a pipe); `false` if any of them is not mapped
/// readable.
#[cfg(not(target_os = "linux"))]
pub fn read_own(addr: usize, buf: &mut [u8]) -> bool {
    read_through_pipe(addr, buf)
}

/// [`read_own`] by way of a pipe (as small as the copy: it never blocks).
fn read_through_pipe(addr: usize, buf: &mut [u8]) -> bool {
    if buf.len() > 512 {
        return false;
    }
    let Ok((reader, writer)) = cloexec_pipe() else {
        return false;
    };
    // SAFETY: `write` only reads `addr..addr + len` as bytes to copy into
    // the pipe (EFAULT if any is not mapped), never through a Rust access.
    let wrote = unsafe {
        libc::write(std::os::fd::AsRawFd::as_raw_fd(&writer), addr as *const _, buf.len())
    };
    wrote >= 0
        && wrote as usize == buf.len()
        && rustix::io::read(&reader, &mut *buf).is_ok_and(|n| n == buf.len())
}

/// A pipe whose ends a child spawned meanwhile does not inherit.
fn cloexec_pipe() -> rustix::io::Result<(rustix::fd::OwnedFd, rustix::fd::OwnedFd)> {
    #[cfg(not(target_vendor = "apple"))]
    return rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
    #[cfg(target_vendor = "apple")]
    {
        // No pipe2 on macOS: a spawn on another thread in between could
        // inherit the ends (they carry no secret, and close there).
        let (reader, writer) = rustix::pipe::pipe()?;
        rustix::io::fcntl_setfd(&reader, rustix::io::FdFlags::CLOEXEC)?;
        rustix::io::fcntl_setfd(&writer, rustix::io::FdFlags::CLOEXEC)?;
        Ok((reader, writer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MARK: u64 = 7;
    static mut WRITABLE: u64 = 9;

    #[test]
    fn finds_this_binarys_constants_and_nothing_else() {
        let here = constant_segments(constant_segments as *const () as usize);
        assert!(!here.is_empty());
        let mark = &MARK as *const u64 as usize;
        assert!(here.iter().any(|r| r.contains(&mark)), "{here:x?} {mark:x}");
        let writable = &raw const WRITABLE as usize;
        assert!(!here.iter().any(|r| r.contains(&writable)), "{here:x?} {writable:x}");
        assert!(constant_segments(8).is_empty());
    }

    #[test]
    fn reads_its_own_memory_through_the_kernel() {
        for read in [read_own, read_through_pipe] {
            let mut buf = [0u8; 8];
            assert!(read(&MARK as *const u64 as usize, &mut buf));
            assert_eq!(u64::from_ne_bytes(buf), 7);
            assert!(!read(8, &mut buf));
        }
    }
}
