//! macOS: `proc_pidinfo` and `proc_pidpath` (libproc).
#![allow(unsafe_code)]
use super::Task;
use std::io;
use std::path::PathBuf;

/// A zombie's `pbi_status` (`SZOMB` in `<sys/proc.h>`).
const SZOMB: u32 = 5;

/// Process `id` from `proc_pidinfo(PROC_PIDTBSDINFO)`; `None` if there is
/// no such process. (Thread owners are named by their process on macOS:
/// see `ident.rs`.)
pub fn task(id: u32) -> Option<Task> {
    let pid = i32::try_from(id).ok()?;
    // SAFETY: proc_bsdinfo is plain data, valid all-zero.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as i32;
    // SAFETY: `info` is writable for `size` bytes, as the call is told.
    let got =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    (got == size).then(|| Task {
        zombie: info.pbi_status == SZOMB,
        start: info.pbi_start_tvsec.wrapping_mul(1_000_000).wrapping_add(info.pbi_start_tvusec),
    })
}

/// Whether process `id` exists though its information could not be read
/// (another user's).
pub fn task_listed(id: u32) -> bool {
    super::process_exists(id)
}

/// The calling thread's system-wide id.
pub fn thread_id() -> u32 {
    let mut id = 0u64;
    // SAFETY: pthread_self is always valid; `id` is writable.
    unsafe { libc::pthread_threadid_np(libc::pthread_self(), &mut id) };
    id as u32
}

/// Threads in this process now (`PROC_PIDTASKINFO`).
pub fn thread_count() -> usize {
    // SAFETY: proc_taskinfo is plain data, valid all-zero.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as i32;
    // SAFETY: `info` is writable for `size` bytes, as the call is told.
    let got = unsafe {
        libc::proc_pidinfo(
            std::process::id() as i32,
            libc::PROC_PIDTASKINFO,
            0,
            (&raw mut info).cast(),
            size,
        )
    };
    if got == size {
        usize::try_from(info.pti_threadnum).unwrap_or(1).max(1)
    } else {
        1
    }
}

/// The executable process `pid` runs (`proc_pidpath`).
pub fn exe_of(pid: u32) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: `buf` is writable for its length, as the call is told.
    let n = unsafe { libc::proc_pidpath(pid, buf.as_mut_ptr().cast(), buf.len() as u32) };
    if n <= 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// Whether this process was made setuid or setgid at exec.
pub fn secure_mode() -> bool {
    // SAFETY: issetugid has no preconditions.
    unsafe { libc::issetugid() != 0 }
}
