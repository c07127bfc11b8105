//! Resource limits: Windows has no open-file limit to raise (a process may
//! hold about 16 million handles); what a failed call ran out of, in words.

use std::io;

/// Nothing to raise on Windows.
pub fn raise_open_files() {}

/// If `err` says an OS resource ran out, which one, in words.
pub fn exhausted(err: &io::Error) -> Option<String> {
    // Win32 error codes (winerror.h).
    const ERROR_TOO_MANY_OPEN_FILES: i32 = 4;
    const ERROR_NOT_ENOUGH_MEMORY: i32 = 8;
    const ERROR_OUTOFMEMORY: i32 = 14;
    const ERROR_NO_SYSTEM_RESOURCES: i32 = 1450;
    const ERROR_COMMITMENT_LIMIT: i32 = 1455;
    Some(match err.raw_os_error()? {
        ERROR_TOO_MANY_OPEN_FILES => "handles: this process holds too many".to_string(),
        ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY => "memory".to_string(),
        ERROR_NO_SYSTEM_RESOURCES => "system resources (kernel pools)".to_string(),
        ERROR_COMMITMENT_LIMIT => "memory: the system's commit limit (paging file)".to_string(),
        _ => return None,
    })
}
