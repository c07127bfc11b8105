//! Linux: `/proc`.
use super::Task;
use std::io;
use std::path::PathBuf;

/// Task `id` (a process or a thread: both are in `/proc`), from
/// `/proc/<id>/stat`; `None` if there is no such task.
pub fn task(id: u32) -> Option<Task> {
    let stat = std::fs::read(format!("/proc/{id}/stat")).ok()?;
    parse_stat(&stat)
}

/// Whether `/proc/<id>` exists (a task whose `stat` could not be read).
pub fn task_listed(id: u32) -> bool {
    std::path::Path::new(&format!("/proc/{id}")).exists()
}

/// The fields of a `/proc/<id>/stat` line (`pid (comm) state ppid ...`)
/// from field 3, `state`, on. The command name may hold spaces and
/// parentheses, so they are counted from the last `)`.
fn stat_fields(stat: &[u8]) -> Option<std::str::SplitAsciiWhitespace<'_>> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    Some(std::str::from_utf8(stat.get(close + 1..)?).ok()?.split_ascii_whitespace())
}

/// Parses a `/proc/<id>/stat` line: its `state` and `starttime`.
pub(crate) fn parse_stat(stat: &[u8]) -> Option<Task> {
    let mut fields = stat_fields(stat)?;
    let state = *fields.next()?.as_bytes().first()?;
    // `state` is field 3; `starttime` (clock ticks since boot) is field 22.
    let start: u64 = fields.nth(22 - 4)?.parse().ok()?;
    Some(Task { zombie: matches!(state, b'Z' | b'X' | b'x'), start })
}

/// The calling thread's id (in the pid namespace, like a pid).
pub fn thread_id() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Threads in this process now: `num_threads`, field 20 of
/// `/proc/self/stat`, read in one call into a buffer on the stack (three
/// system calls; listing `/proc/self/task` took five, on every fork start).
pub fn thread_count() -> usize {
    use rustix::fs::{open, Mode, OFlags};
    let mut buf = [0u8; 1024];
    let read = open("/proc/self/stat", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .and_then(|fd| rustix::io::read(&fd, &mut buf));
    // `state` is field 3, the first of `stat_fields`.
    let count = || stat_fields(buf.get(..read.ok()?)?)?.nth(20 - 3)?.parse().ok();
    count().unwrap_or(1).max(1)
}

/// The executable process `pid` runs (a path that `stat` follows to it).
pub fn exe_of(pid: u32) -> io::Result<PathBuf> {
    Ok(PathBuf::from(format!("/proc/{pid}/exe")))
}

/// Whether this process runs with privileges it did not inherit from its
/// caller (the kernel's `AT_SECURE`: setuid, setgid, file capabilities, or
/// a security module's say).
#[allow(unsafe_code)]
pub fn secure_mode() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
