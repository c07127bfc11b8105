//! FreeBSD: `sysctl(kern.proc.*)`.
#![allow(unsafe_code)]
use super::Task;
use std::io;
use std::path::PathBuf;

/// A zombie's `ki_stat` (`SZOMB` in `<sys/proc.h>`).
const SZOMB: libc::c_char = 5;

/// `sysctl(mib)` into `buf`; the bytes it wrote.
fn sysctl(mib: &[libc::c_int], buf: *mut libc::c_void, len: usize) -> io::Result<usize> {
    let mut len = len;
    // SAFETY: `buf` is writable for `len` bytes (the caller's), `mib` is
    // readable for its length; nothing is written to the kernel.
    let r =
        unsafe { libc::sysctl(mib.as_ptr(), mib.len() as u32, buf, &mut len, std::ptr::null(), 0) };
    if r == 0 {
        Ok(len)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn kinfo(pid: u32) -> Option<libc::kinfo_proc> {
    let pid = libc::c_int::try_from(pid).ok()?;
    // SAFETY: kinfo_proc is plain data, valid all-zero.
    let mut info: libc::kinfo_proc = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::kinfo_proc>();
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    let got = sysctl(&mib, (&raw mut info).cast(), size).ok()?;
    (got == size).then_some(info)
}

/// Process `id` from `kern.proc.pid`; `None` if there is no such process.
/// (Thread owners are named by their process here: see `ident.rs`.)
pub fn task(id: u32) -> Option<Task> {
    let info = kinfo(id)?;
    Some(Task {
        zombie: info.ki_stat == SZOMB,
        start: (info.ki_start.tv_sec as u64)
            .wrapping_mul(1_000_000)
            .wrapping_add(info.ki_start.tv_usec as u64),
    })
}

/// Whether process `id` exists though its information could not be read.
pub fn task_listed(id: u32) -> bool {
    super::process_exists(id)
}

/// The calling thread's system-wide id.
pub fn thread_id() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::pthread_getthreadid_np() as u32 }
}

/// Threads in this process now.
pub fn thread_count() -> usize {
    kinfo(std::process::id()).map_or(1, |i| usize::try_from(i.ki_numthreads).unwrap_or(1).max(1))
}

/// The executable process `pid` runs (`kern.proc.pathname`).
pub fn exe_of(pid: u32) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let pid =
        libc::c_int::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PATHNAME, pid];
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = sysctl(&mib, buf.as_mut_ptr().cast(), buf.len())?;
    buf.truncate(n.saturating_sub(1)); // the terminating NUL
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// Whether this process was made setuid or setgid at exec.
pub fn secure_mode() -> bool {
    // SAFETY: issetugid has no preconditions.
    unsafe { libc::issetugid() != 0 }
}
