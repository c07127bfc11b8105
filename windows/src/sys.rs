//! Small helpers over `windows-sys`: handles as owned values, errors,
//! timeouts in milliseconds, wide strings.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::time::Duration;
use windows_sys::Win32::Foundation::{FILETIME, HANDLE, INVALID_HANDLE_VALUE};

/// Takes ownership of `handle`, the fresh result of a call that returns
/// null (or `INVALID_HANDLE_VALUE`) on failure; the error otherwise.
pub(crate) fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle just returned to us, owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// `Ok` if a `BOOL` call succeeded, its error otherwise.
pub(crate) fn check(ok: i32) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A wait in milliseconds for `timeout` (`None`: forever), rounded up so a
/// short wait still sleeps, capped below `INFINITE`.
pub(crate) fn millis(timeout: Option<Duration>) -> u32 {
    const INFINITE: u32 = u32::MAX;
    match timeout {
        None => INFINITE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(u128::from(INFINITE - 1)) as u32
        }
    }
}

/// A FILETIME as one number (100 ns units).
pub(crate) fn filetime(t: FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

/// `s` as a NUL-terminated UTF-16 string.
pub(crate) fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    s.encode_wide().chain([0]).collect()
}
