//! This program's own image: where the loaded module (executable or DLL)
//! that holds a given address keeps its constants, and a way to copy bytes
//! from there that is not a memory access of Rust's (see the Unix backend's
//! `image.rs` for why a spawned child needs both).
//!
//! The module is found with `GetModuleHandleExW(FROM_ADDRESS)`; its
//! sections from the PE headers the loader mapped at its base. The
//! constants are the sections readable and not writable (`.text`, `.rdata`:
//! relocated by the loader, then protected read-only). Bytes are copied with
//! `ReadProcessMemory` on this process, which reports an unmapped address
//! instead of faulting.
//!
//! # Safety
//!
//! A module's headers stay mapped while it is loaded (this crate's own
//! module, for the calls that matter); they are read within the sizes they
//! declare, after checking their signatures.
#![allow(unsafe_code)]

use std::ops::Range;
use windows_sys::Win32::Foundation::HMODULE;
use windows_sys::Win32::System::Diagnostics::Debug::{
    ReadProcessMemory, IMAGE_NT_HEADERS64, IMAGE_SCN_MEM_READ, IMAGE_SCN_MEM_WRITE,
    IMAGE_SECTION_HEADER,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
    GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
};
use windows_sys::Win32::System::SystemServices::{
    IMAGE_DOS_HEADER, IMAGE_DOS_SIGNATURE, IMAGE_NT_SIGNATURE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// The read-only sections of the module that contains `addr`, as address
/// ranges; empty if no module contains it.
pub fn constant_segments(addr: usize) -> Vec<Range<usize>> {
    let mut module: HMODULE = std::ptr::null_mut();
    // SAFETY: FROM_ADDRESS takes `addr` as an address to look up, not a
    // string; UNCHANGED_REFCOUNT means nothing is to be released.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            addr as *const u16,
            &mut module,
        )
    };
    if ok == 0 || module.is_null() {
        return Vec::new();
    }
    let base = module as usize;
    // SAFETY: a loaded module's base holds its DOS header (checked by its
    // signature before anything else is read).
    let dos = unsafe { &*(base as *const IMAGE_DOS_HEADER) };
    if dos.e_magic != IMAGE_DOS_SIGNATURE || dos.e_lfanew <= 0 {
        return Vec::new();
    }
    let nt_at = base + dos.e_lfanew as usize;
    // SAFETY: e_lfanew points at the NT headers inside the mapped header
    // page; the signature is checked before the rest is used. The optional
    // header's layout differs for 32-bit images, but only the file header
    // (common to both) and the size it declares are read.
    let nt = unsafe { &*(nt_at as *const IMAGE_NT_HEADERS64) };
    if nt.Signature != IMAGE_NT_SIGNATURE {
        return Vec::new();
    }
    let sections_at = nt_at
        + std::mem::offset_of!(IMAGE_NT_HEADERS64, OptionalHeader)
        + usize::from(nt.FileHeader.SizeOfOptionalHeader);
    let count = usize::from(nt.FileHeader.NumberOfSections);
    // SAFETY: the loader maps the section table with the headers, right
    // after the optional header, `NumberOfSections` entries long.
    let sections =
        unsafe { std::slice::from_raw_parts(sections_at as *const IMAGE_SECTION_HEADER, count) };
    sections
        .iter()
        .filter(|s| {
            s.Characteristics & IMAGE_SCN_MEM_READ != 0
                && s.Characteristics & IMAGE_SCN_MEM_WRITE == 0
        })
        .map(|s| {
            // SAFETY: VirtualSize is the Misc union's member for images.
            let size = unsafe { s.Misc.VirtualSize } as usize;
            let start = base + s.VirtualAddress as usize;
            start..start + size
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Copies `buf.len()` bytes of this process's memory at `addr` into `buf`,
/// through the system; `false` if any of them is not mapped readable.
pub fn read_own(addr: usize, buf: &mut [u8]) -> bool {
    let mut copied = 0usize;
    // SAFETY: the system writes at most `buf.len()` bytes into `buf` and
    // reads `addr..addr + len` of this process only as bytes to copy (an
    // unmapped address is an error, never a fault).
    let ok = unsafe {
        ReadProcessMemory(
            GetCurrentProcess(),
            addr as *const _,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut copied,
        )
    };
    ok != 0 && copied == buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    static CONSTANT: [u8; 8] = *b"constant";

    #[test]
    fn finds_its_own_constants_and_reads_them() {
        let addr = CONSTANT.as_ptr() as usize;
        let ranges = constant_segments(addr);
        assert!(ranges.iter().any(|r| r.contains(&addr)), "{ranges:x?}");
        let mut buf = [0u8; 8];
        assert!(read_own(addr, &mut buf));
        assert_eq!(&buf, b"constant");
        assert!(!read_own(8, &mut buf), "address 8 is not mapped");
        assert!(constant_segments(8).is_empty());
    }
}
