//! # Safety
//!
//! This file forks and arranges for fds to survive an exec. Its obligations:
//! the code between `fork` and `exec` in a spawned child only calls
//! async-signal-safe functions (`fcntl`); [`fork`]'s caller takes on the
//! rules for a forked child of a possibly multi-threaded parent.
//!
//! Children are waited for, with a timeout and no SIGCHLD handler:
//! - native Linux: through a pidfd (5.3+; poll on it);
//! - macOS and FreeBSD: a kqueue `EVFILT_PROC`/`NOTE_EXIT` per wait;
//! - else (an old kernel, the portable path on Linux): by polling `waitid`
//!   with a backoff (50 µs up to 10 ms).
//!
//! A child is signalled by pid only until it has been reaped: an unreaped
//! child keeps its pid, so the signal cannot reach a stranger that reused
//! it. A forkserver's child is not ours: it is signalled through its pidfd,
//! or where there is none by pid until its server has reported its exit.
//!
//! The executable this process runs is opened once: on Linux through
//! `/proc/self/exe` (and exec'd through that fd, so a rebuilt file does not
//! matter); elsewhere through the path the system reports
//! (`_NSGetExecutablePath`, `kern.proc.pathname`: `std::env::current_exe`).
#![allow(unsafe_code)]

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A child process of ours, or one a forkserver started for us.
///
/// Every method takes `&self`: threads may wait for, reap and signal the
/// same child at once. Reaping and signalling happen under one lock, so a
/// reaped pid (which the system may give to another process) is never
/// signalled or waited on.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: Option<OwnedFd>,
    /// Python's `exitcode`, once reaped: the exit code, or minus the signal.
    exit: Mutex<Option<i32>>,
    /// A forkserver's child: not ours to wait for. Its server writes the
    /// exit code here (`i32` LE) when it reaps it, then closes its end.
    /// Kept open for the child's life (a waiter may be polling it).
    status: Option<OwnedFd>,
    /// A kqueue readable once the child ended, made at the first
    /// [`exit_handle`](Self::exit_handle) (no pidfds here).
    #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
    exit_queue: OnceLock<Option<OwnedFd>>,
}

/// The exit code reported for a forkserver child whose server vanished
/// before reporting it.
pub const LOST: i32 = 255;

impl Child {
    /// Takes charge of child `pid` (ours and not yet reaped).
    pub fn adopt(pid: u32) -> Child {
        Child {
            pid: pid as i32,
            pidfd: open_pidfd(pid),
            exit: Mutex::new(None),
            status: None,
            #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
            exit_queue: OnceLock::new(),
        }
    }

    /// A forkserver's child `pid`, whose exit code arrives on `status`.
    /// It is signalled through a pidfd where there is one (it is not ours,
    /// so its pid could be reused once its server reaped it).
    pub fn remote(pid: u32, status: OwnedFd) -> Child {
        Child {
            pid: pid as i32,
            pidfd: open_pidfd(pid),
            exit: Mutex::new(None),
            status: Some(status),
            #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
            exit_queue: OnceLock::new(),
        }
    }

    fn exit(&self) -> MutexGuard<'_, Option<i32>> {
        self.exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A remote child's status, if its server wrote it (or vanished); read
    /// once, under the exit lock (`exit`).
    fn read_status(&self, exit: &mut Option<i32>) -> io::Result<Option<i32>> {
        let Some(status) = &self.status else { return Ok(None) };
        let mut fds = [PollFd::new(status, PollFlags::IN)];
        match poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut code = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match rustix::io::read(status, &mut code[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        *exit = Some(if got == 4 { i32::from_le_bytes(code) } else { LOST });
        Ok(*exit)
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The exit code once the child has been reaped by a wait.
    pub fn exitcode(&self) -> Option<i32> {
        *self.exit()
    }

    /// Reaps the child if it has ended, without blocking.
    pub fn try_wait(&self) -> io::Result<Option<i32>> {
        self.reap(&mut self.exit())
    }

    /// [`try_wait`](Self::try_wait) under the exit lock, held by the caller.
    fn reap(&self, exit: &mut Option<i32>) -> io::Result<Option<i32>> {
        if exit.is_some() {
            return Ok(*exit);
        }
        if self.status.is_some() {
            return self.read_status(exit);
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child, not yet reaped (the exit
            // lock is held), with a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                *exit = Some(decode_status(status));
                return Ok(*exit);
            }
            if r == 0 {
                return Ok(None);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Waits up to `timeout` (`None`: no limit) for the child to end, and
    /// reaps it.
    pub fn wait_timeout(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        self.wait_exit(timeout)?;
        self.try_wait()
    }

    /// Waits up to `timeout` for the child to end, *without* reaping it, so
    /// the caller can reap under a lock of its own; whether it ended.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> io::Result<bool> {
        // A timeout past what the clock holds is no deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut nap = Duration::from_micros(50);
        loop {
            if self.has_exited()? {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
                None => None,
            };
            match self.status.as_ref().or(self.pidfd.as_ref()) {
                Some(fd) => {
                    let mut fds = [PollFd::new(fd, PollFlags::IN)];
                    let ts = left.map(|l| rustix::time::Timespec {
                        tv_sec: l.as_secs() as i64,
                        tv_nsec: l.subsec_nanos().into(),
                    });
                    match poll(&mut fds, ts.as_ref()) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None if wait_exit_event(self.pid, left) => {}
                None => {
                    std::thread::sleep(left.map_or(nap, |l| l.min(nap)));
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Whether the child has ended, leaving it unreaped (`WNOWAIT`); for a
    /// remote child, whether its status can be read. Looks under the exit
    /// lock, so the pid it asks about is never one already reaped.
    fn has_exited(&self) -> io::Result<bool> {
        let exit = self.exit();
        if exit.is_some() {
            return Ok(true);
        }
        if let Some(status) = &self.status {
            let mut fds = [PollFd::new(status, PollFlags::IN)];
            let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
            return match poll(&mut fds, Some(&zero)) {
                Ok(n) => Ok(n > 0),
                Err(rustix::io::Errno::INTR) => Ok(false),
                Err(e) => Err(e.into()),
            };
        }
        loop {
            // SAFETY: an all-zero siginfo_t is valid; waitid writes into it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid on our own child with a valid out-pointer.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if r == 0 {
                // SAFETY: waitid filled `info` (si_pid is 0 if none ended).
                return Ok(unsafe { info.si_pid() } != 0);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Sends `signal` unless the child was already reaped (then it is a
    /// no-op, as Python's `terminate` on a finished process). Holds the
    /// exit lock throughout, so no reap comes between the look and the
    /// signal.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let mut exit = self.exit();
        if self.reap(&mut exit)?.is_some() {
            return Ok(());
        }
        if self.status.is_some() {
            if let Some(pidfd) = &self.pidfd {
                return pidfd_signal(pidfd.as_fd(), signal);
            }
            // No pidfd: by pid, while its server has not reported it ended
            // (checked just above), which is before the pid can be reused
            // but for the moment between the server's reap and its report.
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // unreaped child (see the file's doc).
        if unsafe { libc::kill(self.pid, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Python's `terminate`: SIGTERM.
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Python's `kill`: SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// What becomes readable once the child ended, if anything does: its
    /// server's status socket (a forkserver's child), else its pidfd, or on
    /// macOS and FreeBSD a kqueue watching its exit (the portable path on
    /// Linux has none).
    pub fn exit_handle(&self) -> Option<rustix::fd::BorrowedFd<'_>> {
        #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
        if self.status.is_none() && self.pidfd.is_none() {
            let queue = self.exit_queue.get_or_init(|| exit_queue(self.pid, &self.exit()));
            return queue.as_ref().map(|fd| fd.as_fd());
        }
        self.status.as_ref().or(self.pidfd.as_ref()).map(|fd| fd.as_fd())
    }

    /// The pidfd, if the kernel gave one (readable once the child ended).
    pub fn pidfd(&self) -> Option<rustix::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }
}

/// The name of signal `signal` (`SIGKILL`), as Python's `signal` module
/// knows it; `None` for a number that is not one.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// Python's `exitcode` from a wait status: the code, or minus the signal.
pub fn decode_status(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        status
    }
}

/// What [`fork`] returned in this process.
#[derive(Debug)]
pub enum Forked {
    Parent(Child),
    Child,
}

/// Forks the calling process.
///
/// # Safety
/// - In the child only the calling thread exists: any lock another thread
///   held stays locked forever. The caller must either know the process is
///   single-threaded or accept that (Python's `fork` start method does).
/// - The child must end with `_exit`, not by returning into code that
///   expects to be the parent.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller accepts the child's single-threaded world (above).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Child::adopt(pid as u32))),
    }
}

/// Ends this process at once with `code`: no atexit handlers, no
/// destructors (a forked or spawned child's end; those belong to the
/// program it was copied from).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Closes descriptor `fd` for good in a forked child that will never
/// return to the object owning it (the forkserver's control socket).
///
/// # Safety
/// Nothing uses or closes `fd` after this call: its owner is never
/// touched again (this process ends without returning to it).
pub unsafe fn close_forever(fd: RawFd) {
    // SAFETY: the caller's contract: `fd` is never used again.
    unsafe { libc::close(fd) };
}

/// The errno a forkserver answers a malformed request with.
pub const BAD_REQUEST: i32 = libc::EINVAL;
/// The errno it answers a fork that failed for no reported reason with.
pub const FAILED: i32 = libc::EIO;

/// Runs `f` when this process exits normally (`atexit`).
pub fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registering a plain `extern "C" fn()` has no preconditions.
    match unsafe { libc::atexit(f) } {
        0 => Ok(()),
        _ => Err(io::Error::other("atexit refused the handler")),
    }
}

/// Takes ownership of descriptor `fd`, inherited from the parent, after
/// checking that it is open and not a standard stream.
///
/// # Safety
/// Nothing else in this process owns `fd` or will take it again: it was
/// inherited for the caller alone.
pub unsafe fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{fd} is not an open descriptor other than a standard stream"),
        ));
    }
    // SAFETY: open (checked above) and owned by nobody else (the caller's
    // contract).
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A pidfd for process `pid`, where the kernel has them (native Linux).
fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    #[cfg(all(target_os = "linux", not(multiproc_portable)))]
    {
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        Pid::from_raw(pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
    }
    #[cfg(not(all(target_os = "linux", not(multiproc_portable))))]
    {
        let _ = pid;
        None
    }
}

/// Sends `signal` through a pidfd (a process that ended is no error).
fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let signal = rustix::process::Signal::from_named_raw(signal)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        match rustix::process::pidfd_send_signal(pidfd, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pidfd, signal);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Sleeps until process `pid` exits or `timeout` passes, on a kqueue
/// (macOS, FreeBSD); `false` where there is none or it failed (the caller
/// then naps and looks again).
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
fn wait_exit_event(pid: i32, timeout: Option<Duration>) -> bool {
    use rustix::event::kqueue::{kevent, kqueue, Event, EventFilter, EventFlags, ProcessEvents};
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return false };
    let Ok(queue) = kqueue() else { return false };
    let filter = EventFilter::Proc { pid, flags: ProcessEvents::EXIT };
    let change = [Event::new(filter, EventFlags::ADD | EventFlags::ONESHOT, std::ptr::null_mut())];
    let mut out: Vec<Event> = Vec::with_capacity(1);
    let out = rustix::buffer::spare_capacity(&mut out);
    // SAFETY: the event carries no pointer the kernel would hand back to be
    // dereferenced (`udata` is null).
    match unsafe { kevent(&queue, &change, out, timeout) } {
        Ok(_) => true,
        // Already gone (ESRCH) counts as an event: the caller looks again.
        Err(rustix::io::Errno::SRCH) | Err(rustix::io::Errno::INTR) => true,
        Err(_) => false,
    }
}

/// A kqueue readable once child `pid` ended (macOS, FreeBSD): its
/// `NOTE_EXIT` pending, or, where it ended already (`reaped`, or a zombie
/// the kernel refuses to watch), a user event triggered. Made under the
/// lock that reaping takes, so the pid is still the child's. `None` if the
/// system refused.
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
fn exit_queue(pid: i32, reaped: &Option<i32>) -> Option<OwnedFd> {
    use rustix::event::kqueue::{
        kevent, kqueue, Event, EventFilter, EventFlags, ProcessEvents, UserDefinedFlags, UserFlags,
    };
    let queue = kqueue().ok()?;
    let null = std::ptr::null_mut();
    let apply = |changes: &[Event]| {
        // Room for no event: the changes are applied and nothing pending
        // is taken (an error comes back as the call's).
        let mut none: [Event; 0] = [];
        // SAFETY: no event carries a pointer the kernel would hand back
        // to be dereferenced (every `udata` is null).
        unsafe { kevent(&queue, changes, &mut none[..], Some(Duration::ZERO)) }
    };
    if reaped.is_none() {
        let exit = EventFilter::Proc {
            pid: rustix::process::Pid::from_raw(pid)?,
            flags: ProcessEvents::EXIT,
        };
        match apply(&[Event::new(exit, EventFlags::ADD, null)]) {
            Ok(_) => return Some(queue),
            Err(rustix::io::Errno::SRCH) => {}
            Err(_) => return None,
        }
    }
    let user = |flags| EventFilter::User { ident: 1, flags, user_flags: UserDefinedFlags::new(0) };
    let add = Event::new(user(UserFlags::empty()), EventFlags::ADD, null);
    let trigger = Event::new(user(UserFlags::TRIGGER), EventFlags::empty(), null);
    apply(&[add, trigger]).ok().map(|_| queue)
}

#[cfg(not(any(target_vendor = "apple", target_os = "freebsd")))]
fn wait_exit_event(_pid: i32, _timeout: Option<Duration>) -> bool {
    false
}

/// Threads in this process now.
pub fn thread_count() -> usize {
    crate::sys::thread_count()
}

/// An fd of the executable this process runs, opened once (Linux: exec'ing
/// it runs the same bytes even if the file was rebuilt or removed since).
fn own_exe() -> io::Result<&'static OwnedFd> {
    static EXE: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = EXE.get() {
        return Ok(fd);
    }
    let path = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let fd = rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(EXE.get_or_init(|| fd))
}

/// What `spawn_self` executes: this executable through its open fd on
/// Linux, its path elsewhere.
fn exe_to_run() -> io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        Ok(format!("/proc/self/fd/{}", own_exe()?.as_raw_fd()).into())
    } else {
        own_exe()?;
        std::env::current_exe()
    }
}

/// What identifies an executable file: device, inode, size, modification
/// time. A bootstrap carries the parent's; the child compares its own.
pub fn exe_identity() -> io::Result<[u64; 5]> {
    let st = rustix::fs::fstat(own_exe()?)?;
    Ok([
        st.st_dev as u64,
        st.st_ino as u64,
        st.st_size as u64,
        st.st_mtime as u64,
        st.st_mtime_nsec as u64,
    ])
}

/// Starts this same executable again (through its fd, see [`exe_identity`])
/// with stdin from /dev/null and the fds of `table` kept open at the same
/// numbers. `bootstrap` gets the numbers the child will find them at (the
/// same) and returns the bootstrap, which reaches the child in a sealed
/// memfd whose number is in environment variable `env`.
pub fn spawn_self(
    env: &str,
    table: &[RawFd],
    bootstrap: impl FnOnce(&[RawFd]) -> io::Result<Vec<u8>>,
) -> io::Result<Child> {
    let boot = memfd_with(&bootstrap(table)?)?;
    let mut inherit = table.to_vec();
    inherit.push(boot.as_raw_fd());
    let env = [(env, boot.as_raw_fd().to_string())];
    let mut cmd = Command::new(exe_to_run()?);
    cmd.arg0(std::env::args_os().next().unwrap_or_else(|| OsString::from("multiproc-child")));
    cmd.stdin(Stdio::null());
    for (key, value) in &env {
        cmd.env(key, value);
    }
    let fds = inherit;
    // SAFETY: the closure runs between fork and exec and calls only fcntl,
    // which is async-signal-safe; it allocates nothing (`fds` was built
    // before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Child::adopt(child.id()))
}

/// Whether this process runs with elevated privileges it did not inherit
/// from its caller (the kernel's `AT_SECURE`: setuid, setgid, file
/// capabilities, or a security module's say): then nothing its environment
/// or inherited descriptors say may choose what it runs.
pub fn secure_mode() -> bool {
    crate::sys::secure_mode()
}

/// This process's parent, by pid (1, or a subreaper, once the real one
/// died).
pub fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// Whether process `pid` runs the same executable file as this one (same
/// device and inode: Linux's `/proc/<pid>/exe`, macOS's `proc_pidpath`,
/// FreeBSD's `kern.proc.pathname`). An error when it cannot be told: the
/// process is gone, or its executable is closed to us (another user's
/// process, or on Linux one that made itself non-dumpable).
pub fn runs_our_exe(pid: u32) -> io::Result<bool> {
    let ours = rustix::fs::fstat(own_exe()?)?;
    let theirs = rustix::fs::stat(crate::sys::exe_of(pid)?)?;
    Ok(theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
}

/// The seals a bootstrap's memfd must carry: nobody can change its bytes or
/// its size once we trust them, and reading it cannot block.
#[cfg(not(target_vendor = "apple"))]
const BOOTSTRAP_SEALS: rustix::fs::SealFlags = rustix::fs::SealFlags::WRITE
    .union(rustix::fs::SealFlags::GROW)
    .union(rustix::fs::SealFlags::SHRINK);

/// Whether `fd` may hold a bootstrap: a memfd sealed against writes and
/// resizing (Linux, FreeBSD).
#[cfg(not(target_vendor = "apple"))]
fn check_bootstrap(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "not a sealed memfd (it takes no seals)")
    })?;
    if !seals.contains(BOOTSTRAP_SEALS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a memfd not sealed against writes and resizing",
        ));
    }
    Ok(())
}

/// Whether `fd` may hold a bootstrap (macOS, which has no memfd): a regular
/// file with no name left (unlinked, so no one can open it to change it).
#[cfg(target_vendor = "apple")]
fn check_bootstrap(fd: BorrowedFd<'_>) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    let regular =
        rustix::fs::FileType::from_raw_mode(st.st_mode as _) == rustix::fs::FileType::RegularFile;
    if !regular || st.st_nlink != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an unlinked regular file (a pipe, a socket, or a file others can open)",
        ));
    }
    Ok(())
}

/// The whole content of `fd`, which must be what [`memfd_with`] makes (a
/// memfd sealed against writes, growth and shrinking; on macOS an unlinked
/// file) of at most `max` bytes. Anything else (a pipe, a socket, a named
/// file, an unsealed memfd) is refused before a byte is read, so this
/// never blocks.
pub fn read_sealed(fd: BorrowedFd<'_>, max: usize) -> io::Result<Vec<u8>> {
    check_bootstrap(fd)?;
    let size = rustix::fs::fstat(fd)?.st_size;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= max)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "too large"))?;
    let mut bytes = vec![0; size];
    let mut done = 0;
    while done < size {
        match rustix::io::pread(fd, &mut bytes[done..], done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes)
}

/// A file holding `bytes` that [`read_sealed`] accepts, positioned at 0: how
/// a bootstrap message reaches a spawned child (no pipe to fill, no
/// deadlock if it dies early). A sealed memfd; on macOS an unlinked file.
pub fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let mut file = std::fs::File::from(bootstrap_file()?);
    file.write_all(bytes)?;
    file.rewind()?;
    let fd = OwnedFd::from(file);
    #[cfg(not(target_vendor = "apple"))]
    rustix::fs::fcntl_add_seals(&fd, BOOTSTRAP_SEALS | rustix::fs::SealFlags::SEAL)?;
    Ok(fd)
}

#[cfg(not(target_vendor = "apple"))]
fn bootstrap_file() -> io::Result<OwnedFd> {
    let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    Ok(rustix::fs::memfd_create("multiproc-bootstrap", flags)?)
}

#[cfg(target_vendor = "apple")]
fn bootstrap_file() -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let name = format!(
            "multiproc-bootstrap-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match file {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file.into());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_python() {
        // exit(3) → 3; killed by SIGKILL → -9.
        assert_eq!(decode_status(3 << 8), 3);
        assert_eq!(decode_status(9), -9);
    }

    #[test]
    fn waits_with_timeout_and_signals() {
        // Reaped through `Child`, not std's handle.
        #[allow(clippy::zombie_processes)]
        let c = Command::new("sleep").arg("5").spawn().unwrap();
        let child = Child::adopt(c.id());
        assert_eq!(child.wait_timeout(Some(Duration::from_millis(30))).unwrap(), None);
        child.signal(libc::SIGKILL).unwrap();
        assert_eq!(child.wait_timeout(Some(Duration::from_secs(10))).unwrap(), Some(-9));
        assert_eq!(child.exitcode(), Some(-9));
        child.signal(libc::SIGTERM).unwrap(); // no-op once reaped
        assert!(exe_identity().is_ok());
        assert!(thread_count() >= 1);
    }

    /// The count agrees with the threads `/proc` lists (tried a few times:
    /// the other tests' threads come and go meanwhile).
    #[test]
    #[cfg(target_os = "linux")]
    fn thread_count_agrees_with_the_task_list() {
        let listed = || std::fs::read_dir("/proc/self/task").unwrap().count();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let extra = std::thread::spawn(move || rx.recv());
        assert!((0..100).any(|_| thread_count() == listed()));
        assert!(thread_count() >= 2);
        drop(tx);
        let _ = extra.join();
    }

    /// Each build takes the path it claims: pidfds on native Linux (this
    /// kernel has them), `waitid` polling on the portable path.
    #[test]
    #[cfg(target_os = "linux")]
    fn children_are_watched_the_way_the_build_says() {
        #[allow(clippy::zombie_processes)]
        let c = Command::new("true").spawn().unwrap();
        let child = Child::adopt(c.id());
        assert_eq!(child.pidfd().is_some(), !cfg!(multiproc_portable));
        assert_eq!(child.wait_timeout(Some(Duration::from_secs(10))).unwrap(), Some(0));
    }

    #[test]
    fn a_bootstrap_file_reads_back_and_others_are_refused() {
        let fd = memfd_with(b"bootstrap").unwrap();
        assert_eq!(read_sealed(fd.as_fd(), 100).unwrap(), b"bootstrap");
        assert!(read_sealed(fd.as_fd(), 3).is_err(), "larger than the limit");
        let (reader, _writer) = rustix::pipe::pipe().unwrap();
        assert!(read_sealed(reader.as_fd(), 100).is_err(), "a pipe");
        let file: OwnedFd = std::fs::File::open(std::env::current_exe().unwrap()).unwrap().into();
        assert!(read_sealed(file.as_fd(), usize::MAX).is_err(), "a named file");
    }
}
