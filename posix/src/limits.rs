//! Resource limits: raising the open-file limit at start, and naming the
//! resource (and its limit) that a failed call ran out of.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use std::io;

/// The most descriptors macOS lets a process ask for (`OPEN_MAX`): its
/// `setrlimit` refuses a soft limit above it even when the hard limit is
/// unlimited.
const MACOS_OPEN_MAX: u64 = 10240;

/// Raises the soft limit on open file descriptors to the hard limit, as
/// Go's runtime does at start since 1.19: the soft limit (often 1024) is a
/// leftover of `select`'s fixed-size sets, which nothing here uses. If the
/// system refuses, the limit stays as it was.
pub fn raise_open_files() {
    let limit = getrlimit(Resource::Nofile);
    let want = match limit.maximum {
        Some(hard) => hard,
        None if cfg!(target_os = "macos") => MACOS_OPEN_MAX,
        None => return,
    };
    if limit.current.is_some_and(|soft| soft < want) {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum: limit.maximum });
    }
}

/// If `err` says an OS resource ran out, which one and its limit, in words.
pub fn exhausted(err: &io::Error) -> Option<String> {
    let limit = |value: Option<u64>| value.map_or("unlimited".to_string(), |v| v.to_string());
    match err.raw_os_error()? {
        errno::EMFILE => {
            let l = getrlimit(Resource::Nofile);
            Some(format!(
                "open file descriptors: this process reached its limit (RLIMIT_NOFILE soft {}, \
                 hard {})",
                limit(l.current),
                limit(l.maximum)
            ))
        }
        errno::ENFILE => Some("open files: the system-wide table is full".to_string()),
        errno::ENOMEM => Some(format!(
            "memory or memory mappings (address space RLIMIT_AS {}{})",
            limit(getrlimit(Resource::As).current),
            map_count().map_or(String::new(), |n| format!(", vm.max_map_count {n}"))
        )),
        errno::ENOSPC => {
            Some("shared memory: the file system behind it (tmpfs, /dev/shm) is full".to_string())
        }
        _ => None,
    }
}

/// The kernel's limit on one process's memory mappings (Linux).
fn map_count() -> Option<u64> {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return None;
    }
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}

/// The error numbers above, from rustix.
mod errno {
    use rustix::io::Errno;
    pub const EMFILE: i32 = Errno::MFILE.raw_os_error();
    pub const ENFILE: i32 = Errno::NFILE.raw_os_error();
    pub const ENOMEM: i32 = Errno::NOMEM.raw_os_error();
    pub const ENOSPC: i32 = Errno::NOSPC.raw_os_error();
}
