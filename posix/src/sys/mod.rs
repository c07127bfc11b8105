//! What differs per Unix beyond waiting on a word (`park.rs`) and reading
//! the program image (`image.rs`): the process table (start times, zombies,
//! thread counts, another process's executable), thread ids, and whether
//! this process gained privileges at exec. One file per system, same names.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_vendor = "apple")]
mod macos;
#[cfg(target_vendor = "apple")]
pub use macos::*;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::*;

/// A task in the process table: whether it is a zombie (ended, not yet
/// reaped), and its start time in the system's own unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub zombie: bool,
    pub start: u64,
}

/// Whether process `pid` exists (a zombie does): `kill(pid, 0)`, where
/// EPERM (another user's process) also means it exists.
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => {
            !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
        }
        None => false,
    }
}
