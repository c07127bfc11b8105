//! Where this program's own image is mapped: the readable segments of the
//! loaded object (executable or shared library) that holds a given address.
//!
//! A spawned child is told which function to run as an offset into its
//! image, by a parent it has checked, but whose bytes it must still not
//! trust blindly: before it reads anything at such an offset it makes sure
//! the bytes lie inside a segment the loader mapped readable, so a forged
//! offset reads nothing it should not (and never faults).
//!
//! # Safety
//!
//! `dl_iterate_phdr` hands the callback a pointer to a `dl_phdr_info` and
//! its program headers, valid for the duration of the callback; the
//! callback only reads them.
#![allow(unsafe_code)]

use std::ops::Range;

/// The readable loaded segments (`PT_LOAD` with `PF_R`) of the object that
/// contains `addr`, as address ranges; empty if no loaded object does.
pub fn readable_segments(addr: usize) -> Vec<Range<usize>> {
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
        let loads = || {
            headers.iter().filter(|h| h.p_type == libc::PT_LOAD).map(|h| {
                let start = base.wrapping_add(h.p_vaddr as usize);
                (start..start.saturating_add(h.p_memsz as usize), h.p_flags & libc::PF_R != 0)
            })
        };
        if !loads().any(|(range, _)| range.contains(&search.addr)) {
            return 0;
        }
        search.found = loads().filter(|(_, readable)| *readable).map(|(range, _)| range).collect();
        1
    }

    let mut search = Search { addr, found: Vec::new() };
    // SAFETY: `visit` matches the callback type and only reads what it is
    // given; `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;

    static MARK: u64 = 7;

    #[test]
    fn finds_this_binary_and_nothing_outside_it() {
        let here = readable_segments(readable_segments as *const () as usize);
        assert!(!here.is_empty());
        let mark = &MARK as *const u64 as usize;
        assert!(here.iter().any(|r| r.contains(&mark)), "{here:x?} {mark:x}");
        assert!(readable_segments(8).is_empty());
    }
}
