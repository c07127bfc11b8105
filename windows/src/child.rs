//! Child processes on Windows: spawn only (there is no fork).
//!
//! A child is this same executable, started by `CreateProcessW` with
//! `bInheritHandles` and an explicit handle list
//! (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`), so it inherits the handles named
//! for it and nothing else, even while another thread spawns with std's
//! `Command`. The handles it inherits are fresh inheritable duplicates, made
//! for it and closed once it has them; their values, which inheritance
//! keeps, are what its bootstrap names.
//!
//! The bootstrap travels in a pagefile-backed section whose only handle
//! left, the child's, is read-only: nobody can change it once written
//! (what Linux's memfd seals give). [`read_sealed`] refuses a handle that
//! can write.
//!
//! A child is waited for on its process handle, which its [`Child`] keeps
//! open until dropped, so its id is never reused under it.
//!
//! Exit codes are Python's on Windows: the code, and `-15` for a process
//! ended by [`Child::terminate`] or [`Child::kill`] (both
//! `TerminateProcess` with exit code `0x10000`, as Python does).
#![allow(unsafe_code)]

use crate::sys;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::sync::OnceLock;
use std::time::Duration;
use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, SetHandleInformation, DUPLICATE_SAME_ACCESS, HANDLE,
    HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Memory::{
    MapViewOfFile, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ, FILE_MAP_WRITE,
    MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
};
use windows_sys::Win32::System::Threading::{
    CreateProcessW, DeleteProcThreadAttributeList, GetCurrentProcess, GetExitCodeProcess,
    InitializeProcThreadAttributeList, OpenProcess, QueryFullProcessImageNameW, TerminateProcess,
    UpdateProcThreadAttribute, WaitForSingleObject, CREATE_UNICODE_ENVIRONMENT,
    EXTENDED_STARTUPINFO_PRESENT, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION,
    PROCESS_QUERY_LIMITED_INFORMATION, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, STARTF_USESTDHANDLES,
    STARTUPINFOEXW,
};

/// The exit code `TerminateProcess` gives a child we end (Python's
/// `TERMINATE`); read back as `-15`.
pub const TERMINATED: u32 = 0x10000;

/// A child process of ours. Every method takes `&self`: threads may wait
/// for and end the same child at once (its handle names it until dropped,
/// so no id is ever reused under it).
#[derive(Debug)]
pub struct Child {
    pid: u32,
    handle: OwnedHandle,
    /// Python's `exitcode`, once a wait saw the child end.
    exit: OnceLock<i32>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process handle: signaled once the child ended.
    pub fn exit_handle(&self) -> Option<BorrowedHandle<'_>> {
        Some(self.handle.as_handle())
    }

    /// The exit code once a wait saw the child end.
    pub fn exitcode(&self) -> Option<i32> {
        self.exit.get().copied()
    }

    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle() as HANDLE
    }

    /// The exit code if the child has ended, without blocking.
    pub fn try_wait(&self) -> io::Result<Option<i32>> {
        if let Some(&code) = self.exit.get() {
            return Ok(Some(code));
        }
        let h = self.raw();
        // SAFETY: our process handle, with SYNCHRONIZE rights.
        match unsafe { WaitForSingleObject(h, 0) } {
            WAIT_OBJECT_0 => {}
            WAIT_TIMEOUT => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
        let mut code = 0u32;
        // SAFETY: as above, and a valid out-pointer.
        sys::check(unsafe { GetExitCodeProcess(h, &mut code) })?;
        let code = *self.exit.get_or_init(|| decode(code));
        Ok(Some(code))
    }

    /// Waits up to `timeout` (`None`: no limit) for the child to end.
    pub fn wait_timeout(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        self.wait_exit(timeout)?;
        self.try_wait()
    }

    /// Waits up to `timeout` for the child to end without collecting its
    /// exit code (the caller does, under a lock of its own); whether it
    /// ended.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.exit.get().is_some() {
            return Ok(true);
        }
        let h = self.raw();
        // SAFETY: our process handle, with SYNCHRONIZE rights.
        match unsafe { WaitForSingleObject(h, sys::millis(timeout)) } {
            WAIT_OBJECT_0 => Ok(true),
            WAIT_TIMEOUT => Ok(false),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Ends the child (`TerminateProcess`; Python's `terminate`). A child
    /// that already ended is no error.
    pub fn terminate(&self) -> io::Result<()> {
        if self.exit.get().is_some() {
            return Ok(());
        }
        let h = self.raw();
        // SAFETY: our process handle, with PROCESS_TERMINATE rights.
        if unsafe { TerminateProcess(h, TERMINATED) } == 0 {
            let e = io::Error::last_os_error();
            // Access is denied to a process that has already exited.
            if !self.wait_exit(Some(Duration::ZERO))? {
                return Err(e);
            }
        }
        Ok(())
    }

    /// As [`terminate`](Child::terminate): Windows has one way to end a
    /// process from outside (Python's `kill` is its `terminate` there).
    pub fn kill(&self) -> io::Result<()> {
        self.terminate()
    }
}

/// The name Python's `signal` module gives number `signal` on Windows
/// (`SIGTERM` for 15, the code a terminated child reads back as).
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        2 => "SIGINT",
        4 => "SIGILL",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        21 => "SIGBREAK",
        22 => "SIGABRT",
        _ => return None,
    })
}

/// Python's exit code for `code`.
fn decode(code: u32) -> i32 {
    if code == TERMINATED {
        -15
    } else {
        code as i32
    }
}

/// Ends this process at once with `code`: no atexit handlers, no
/// destructors, no DLL detach (a spawned child's end; those belong to the
/// program it was started from).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: terminating the current process does not return.
    unsafe { TerminateProcess(GetCurrentProcess(), code as u32) };
    std::process::abort()
}

/// Runs `f` when this process exits through the C runtime's `exit`
/// (returning from `main`). Rust's `std::process::exit` calls
/// `ExitProcess` directly on Windows and skips it.
pub fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    extern "C" {
        fn atexit(f: extern "C" fn()) -> i32;
    }
    // SAFETY: registering a plain `extern "C" fn()` has no preconditions.
    match unsafe { atexit(f) } {
        0 => Ok(()),
        _ => Err(io::Error::other("atexit refused the handler")),
    }
}

/// Takes ownership of handle `raw`, inherited from the parent, after
/// checking that it is open and not a standard stream; it is made
/// non-inheritable (grandchildren started by other means must not get it).
///
/// # Safety
/// Nothing else in this process owns `raw` or will take it again: it was
/// inherited for the caller alone.
pub unsafe fn take_inherited(raw: usize) -> io::Result<OwnedHandle> {
    let h = raw as HANDLE;
    // SAFETY: GetStdHandle has no preconditions.
    let std_handle = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE]
        .iter()
        .any(|&s| unsafe { GetStdHandle(s) } == h);
    let mut flags = 0;
    // SAFETY: only queries the handle table; a bad value fails cleanly.
    let open = unsafe { GetHandleInformation(h, &mut flags) } != 0;
    if h.is_null() || h == INVALID_HANDLE_VALUE || std_handle || !open {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{raw:#x} is not an open handle other than a standard stream"),
        ));
    }
    // SAFETY: open (checked above) and owned by nobody else (the caller's
    // contract).
    let owned = unsafe { OwnedHandle::from_raw_handle(h) };
    // SAFETY: a handle we now own.
    sys::check(unsafe { SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0) })?;
    Ok(owned)
}

/// Never true on Windows, which has no setuid executables: nothing gains
/// privileges by being started.
pub fn secure_mode() -> bool {
    false
}

/// The process that created this one (by id; it may have ended since).
pub fn parent_pid() -> u32 {
    #[repr(C)]
    struct BasicInformation {
        exit_status: i32,
        peb: usize,
        affinity: usize,
        priority: i32,
        pid: usize,
        parent: usize,
    }
    static_assertions::const_assert_eq!(
        std::mem::size_of::<BasicInformation>(),
        6 * std::mem::size_of::<usize>()
    );
    let mut info =
        BasicInformation { exit_status: 0, peb: 0, affinity: 0, priority: 0, pid: 0, parent: 0 };
    // SAFETY: ProcessBasicInformation (class 0) into a buffer of its size.
    let status = unsafe {
        windows_sys::Wdk::System::Threading::NtQueryInformationProcess(
            GetCurrentProcess(),
            0,
            (&mut info as *mut BasicInformation).cast(),
            std::mem::size_of::<BasicInformation>() as u32,
            std::ptr::null_mut(),
        )
    };
    if status < 0 {
        0
    } else {
        info.parent as u32
    }
}

/// The executable this process runs, opened once (Windows keeps a running
/// executable from being replaced, so the file stays the one we run).
fn own_exe() -> io::Result<&'static std::fs::File> {
    static EXE: OnceLock<std::fs::File> = OnceLock::new();
    if let Some(f) = EXE.get() {
        return Ok(f);
    }
    let f = std::fs::File::open(std::env::current_exe()?)?;
    Ok(EXE.get_or_init(|| f))
}

fn file_information(file: &std::fs::File) -> io::Result<BY_HANDLE_FILE_INFORMATION> {
    // SAFETY: plain data, written by the call below.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: an open file handle and a valid out-pointer.
    sys::check(unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) })?;
    Ok(info)
}

/// What identifies an executable file: volume, file index, size, last
/// write time. A bootstrap carries the parent's; the child compares its own.
pub fn exe_identity() -> io::Result<[u64; 5]> {
    let info = file_information(own_exe()?)?;
    Ok([
        u64::from(info.dwVolumeSerialNumber),
        (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        (u64::from(info.nFileSizeHigh) << 32) | u64::from(info.nFileSizeLow),
        sys::filetime(info.ftLastWriteTime),
        0,
    ])
}

/// Whether process `pid` runs the same executable file as this one (same
/// volume and file index); an error when it cannot be told.
pub fn runs_our_exe(pid: u32) -> io::Result<bool> {
    // SAFETY: opening by id; the result is checked.
    let process = sys::owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    let mut path = vec![0u16; 32768];
    let mut len = path.len() as u32;
    // SAFETY: a process handle with query rights, a buffer of `len` units.
    sys::check(unsafe {
        QueryFullProcessImageNameW(
            process.as_raw_handle() as HANDLE,
            0,
            path.as_mut_ptr(),
            &mut len,
        )
    })?;
    use std::os::windows::ffi::OsStringExt;
    let path = std::ffi::OsString::from_wide(&path[..len as usize]);
    let theirs = file_information(&std::fs::File::open(path)?)?;
    let ours = file_information(own_exe()?)?;
    Ok(theirs.dwVolumeSerialNumber == ours.dwVolumeSerialNumber
        && theirs.nFileIndexHigh == ours.nFileIndexHigh
        && theirs.nFileIndexLow == ours.nFileIndexLow)
}

/// An inheritable duplicate of `h` in this process, with the access given
/// (or the same access).
fn inheritable(h: HANDLE, access: Option<u32>) -> io::Result<OwnedHandle> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicating within this process; a bad handle fails cleanly.
    sys::check(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut out,
            access.unwrap_or(0),
            1,
            if access.is_some() { 0 } else { DUPLICATE_SAME_ACCESS },
        )
    })?;
    sys::owned(out)
}

/// A read-only section holding `bytes` (after their length, `u64` LE):
/// what [`read_sealed`] accepts. Its only handle is the one returned, made
/// inheritable for a child.
fn sealed_section(bytes: &[u8]) -> io::Result<OwnedHandle> {
    let total = bytes.len() + 8;
    let writable = crate::shm::new_section(total)?;
    // SAFETY: maps the section just made, `total` bytes.
    let view =
        unsafe { MapViewOfFile(writable.as_raw_handle() as HANDLE, FILE_MAP_WRITE, 0, 0, total) };
    if view.Value.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the view is `total` bytes, ours alone, and unmapped at once.
    unsafe {
        let at = view.Value.cast::<u8>();
        at.cast::<[u8; 8]>().write_unaligned((bytes.len() as u64).to_le_bytes());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(8), bytes.len());
        UnmapViewOfFile(view);
    }
    inheritable(writable.as_raw_handle() as HANDLE, Some(FILE_MAP_READ))
}

/// The bytes of a section made by the parent's [`spawn_self`] (at most
/// `max`). Anything else (not a section, one this handle could write) is
/// refused before a byte is read.
pub fn read_sealed(handle: BorrowedHandle<'_>, max: usize) -> io::Result<Vec<u8>> {
    let h = handle.as_raw_handle() as HANDLE;
    // SAFETY: a write mapping of a read-only handle must fail; if it does
    // not, it is unmapped at once.
    let writable = unsafe { MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, 0) };
    if !writable.Value.is_null() {
        // SAFETY: the view just mapped.
        unsafe { UnmapViewOfFile(writable) };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a section this handle can write"));
    }
    // SAFETY: maps the whole section for reading; a bad handle fails.
    let view = unsafe { MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0) };
    if view.Value.is_null() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a section"));
    }
    let result = (|| {
        // SAFETY: plain data written by VirtualQuery about our own view.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let n = unsafe {
            VirtualQuery(view.Value, &mut info, std::mem::size_of::<MEMORY_BASIC_INFORMATION>())
        };
        if n == 0 || info.RegionSize < 8 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty section"));
        }
        // SAFETY: the view is at least 8 bytes (checked above).
        let len = u64::from_le_bytes(unsafe { view.Value.cast::<[u8; 8]>().read_unaligned() });
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max && l <= info.RegionSize - 8)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "too large"))?;
        let mut bytes = vec![0; len];
        // SAFETY: `8 + len` bytes lie in the view (checked above); nobody
        // can write them (no writable handle is left).
        unsafe {
            std::ptr::copy_nonoverlapping(view.Value.cast::<u8>().add(8), bytes.as_mut_ptr(), len)
        };
        Ok(bytes)
    })();
    // SAFETY: the view mapped above, no longer used.
    unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: view.Value }) };
    result
}

/// This process's environment with `key=value` added, as a
/// `CreateProcessW` block.
fn environment_with(key: &str, value: &str) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    let mut block = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k.to_string_lossy().eq_ignore_ascii_case(key) {
            continue;
        }
        block.extend(k.encode_wide());
        block.push(u16::from(b'='));
        block.extend(v.encode_wide());
        block.push(0);
    }
    block.extend(key.encode_utf16());
    block.push(u16::from(b'='));
    block.extend(value.encode_utf16());
    block.extend([0, 0]);
    block
}

/// Starts this same executable again. Each handle of `table` is passed as
/// an inheritable duplicate; `bootstrap` gets the values the child will
/// find them at and returns the bootstrap, which reaches the child in a
/// read-only section whose handle value is in environment variable `env`.
/// The child's stdout and stderr are ours, its stdin `NUL`.
pub fn spawn_self(
    env: &str,
    table: &[usize],
    bootstrap: impl FnOnce(&[usize]) -> io::Result<Vec<u8>>,
) -> io::Result<Child> {
    let mut inherit =
        table.iter().map(|&h| inheritable(h as HANDLE, None)).collect::<io::Result<Vec<_>>>()?;
    let values: Vec<usize> = inherit.iter().map(|h| h.as_raw_handle() as usize).collect();
    let boot = sealed_section(&bootstrap(&values)?)?;
    let block = environment_with(env, &(boot.as_raw_handle() as usize).to_string());
    inherit.push(boot);
    let stdin = std::fs::File::open("NUL")?;
    let mut std = [Some(inheritable(stdin.as_raw_handle() as HANDLE, None)?), None, None];
    for (i, which) in [(1, STD_OUTPUT_HANDLE), (2, STD_ERROR_HANDLE)] {
        // SAFETY: GetStdHandle has no preconditions.
        let h = unsafe { GetStdHandle(which) };
        if !h.is_null() && h != INVALID_HANDLE_VALUE {
            std[i] = inheritable(h, None).ok();
        }
    }
    let raw = |h: &Option<OwnedHandle>| {
        h.as_ref().map_or(std::ptr::null_mut(), |h| h.as_raw_handle() as HANDLE)
    };
    let mut list: Vec<HANDLE> = inherit.iter().map(|h| h.as_raw_handle() as HANDLE).collect();
    list.extend(std.iter().flatten().map(|h| h.as_raw_handle() as HANDLE));

    let exe = std::env::current_exe()?;
    let app = sys::wide(exe.as_os_str());
    let mut command: Vec<u16> = sys::wide(format!("\"{}\"", exe.display()).as_ref());

    let mut size = 0usize;
    // SAFETY: the documented size query (null list, fails with the size).
    unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
    let mut attrs = vec![0u64; size.div_ceil(8)];
    let attrs_ptr = attrs.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST;
    // SAFETY: a buffer of at least `size` bytes, 8-aligned.
    sys::check(unsafe { InitializeProcThreadAttributeList(attrs_ptr, 1, 0, &mut size) })?;
    struct Attrs(LPPROC_THREAD_ATTRIBUTE_LIST);
    impl Drop for Attrs {
        fn drop(&mut self) {
            // SAFETY: initialized above, deleted once, before its buffer.
            unsafe { DeleteProcThreadAttributeList(self.0) };
        }
    }
    let attrs_guard = Attrs(attrs_ptr);
    // SAFETY: `list` outlives the CreateProcessW call below, which is the
    // only reader of the attribute list.
    sys::check(unsafe {
        UpdateProcThreadAttribute(
            attrs_ptr,
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            list.as_ptr().cast(),
            list.len() * std::mem::size_of::<HANDLE>(),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    })?;
    // SAFETY: plain data.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = raw(&std[0]);
    si.StartupInfo.hStdOutput = raw(&std[1]);
    si.StartupInfo.hStdError = raw(&std[2]);
    si.lpAttributeList = attrs_ptr;
    // SAFETY: plain data, written by CreateProcessW.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated application name and (mutable) command line,
    // a double-NUL-terminated Unicode environment block, a STARTUPINFOEXW
    // whose attribute list names inheritable handles that stay open until
    // the call returns.
    sys::check(unsafe {
        CreateProcessW(
            app.as_ptr(),
            command.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            1,
            EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT,
            block.as_ptr().cast(),
            std::ptr::null(),
            &si.StartupInfo,
            &mut pi,
        )
    })?;
    drop(attrs_guard);
    // SAFETY: fresh handles from CreateProcessW, ours to own.
    let (process, _thread) = unsafe {
        (OwnedHandle::from_raw_handle(pi.hProcess), OwnedHandle::from_raw_handle(pi.hThread))
    };
    Ok(Child { pid: pi.dwProcessId, handle: process, exit: OnceLock::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::io::AsHandle;

    #[test]
    fn decodes_like_python() {
        assert_eq!(decode(3), 3);
        assert_eq!(decode(TERMINATED), -15);
    }

    #[test]
    fn a_sealed_section_reads_back_and_others_are_refused() {
        let boot = sealed_section(b"bootstrap").unwrap();
        assert_eq!(read_sealed(boot.as_handle(), 100).unwrap(), b"bootstrap");
        assert!(read_sealed(boot.as_handle(), 3).is_err(), "larger than the limit");
        let seg = crate::shm::Segment::create(100).unwrap();
        assert!(read_sealed(seg.handle(), 1 << 20).is_err(), "a writable section");
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        assert!(read_sealed(file.as_handle(), usize::MAX).is_err(), "a file");
        assert!(exe_identity().is_ok());
        assert!(runs_our_exe(std::process::id()).unwrap());
    }
}
