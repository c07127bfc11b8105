//! Who may start a child (the bootstrap's trust model): a bootstrap that is
//! not a sealed memfd, that does not come from this process's parent
//! running this same executable, that names anything but one of this
//! binary's spawn entries, or that reaches a process running with gained
//! privileges, ends the child with a clear message and exit code 255
//! (`BOOTSTRAP_FAILED`) before any of its code runs, and never hangs it.
//! Each case runs this test binary (or a copy) by hand, as a forger would,
//! under a watchdog.
//!
//! Linux only: the forged bootstraps are memfds and the seccomp filter is
//! Linux's (the portable path runs them on Linux too); macOS and FreeBSD
//! build the rest of the suite.
#![cfg(target_os = "linux")]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::forge::*;

/// The bound on one forged child: it must be refused (or run) long before.
const BOUND: Duration = common::BOUND;

/// Runs `exe` with MULTIPROC_BOOTSTRAP=`env` and `fd` (if any) at fd 7,
/// under a watchdog that kills it (and fails the test) past [`BOUND`].
fn run_with(exe: &Path, env: &str, fd: Option<&OwnedFd>) -> Output {
    run_command(Command::new(exe), env, fd)
}

fn run_command(mut cmd: Command, env: &str, fd: Option<&OwnedFd>) -> Output {
    cmd.args(["--exact", "no-such-test"]).env("MULTIPROC_BOOTSTRAP", env);
    if let Some(fd) = fd {
        let raw = fd.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe; nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                let ok = if raw == 7 {
                    libc::fcntl(7, libc::F_SETFD, 0) != -1
                } else {
                    libc::dup2(raw, 7) != -1
                };
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    run_command_output(cmd)
}

/// Runs `cmd` with its output captured, under a watchdog that kills it
/// (and fails the test) past [`BOUND`].
fn run_command_output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A fresh copy of the binary may be "busy" for a moment: another test
    // thread's fork can hold the copy's write fd until its exec.
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            spawned => break spawned.expect("spawn"),
        }
    };
    let pid = child.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > BOUND {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // child is unreaped until wait_with_output returns.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        })
    };
    let out = child.wait_with_output().expect("wait");
    done.store(true, Ordering::Relaxed);
    assert!(!watchdog.join().unwrap(), "the child hung on its bootstrap: {out:?}");
    out
}

fn memfd(bytes: &[u8], seal: bool) -> OwnedFd {
    // SAFETY: a NUL-terminated name and valid flags; the fd is ours.
    let fd = unsafe {
        let raw =
            libc::memfd_create(c"forged".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        assert!(raw >= 0);
        OwnedFd::from_raw_fd(raw)
    };
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, bytes).unwrap();
    let fd = OwnedFd::from(file);
    if seal {
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own fd.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
    }
    fd
}

/// Runs this test binary with `bootstrap` in a sealed memfd, as a parent
/// of ours would send it.
fn run_sealed(bootstrap: &[u8]) -> Output {
    let exe = std::env::current_exe().unwrap();
    run_with(&exe, "7", Some(&memfd(bootstrap, true)))
}

fn task(x: u8) -> u8 {
    x * x
}

#[test]
fn a_genuine_bootstrap_runs_its_target() {
    // The harness itself is sound: the same path with honest parts runs.
    let out = run_sealed(&bootstrap(entry(exits_with), &[42]));
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    let out = run_sealed(&bootstrap(entry(adds), &[40, 2]));
    assert_eq!(out.status.code(), Some(42), "{out:?}");
}

#[test]
fn a_bootstrap_that_is_not_an_fd_is_refused() {
    let exe = std::env::current_exe().unwrap();
    assert_refused(&run_with(&exe, "not-a-number", None), "is not a handle number");
    assert_refused(&run_with(&exe, "1", None), "not an open descriptor");
    assert_refused(&run_with(&exe, "99", None), "not an open descriptor");
}

#[test]
fn only_a_sealed_memfd_is_read() {
    let genuine = bootstrap(entry(exits_with), &[0]);
    let exe = std::env::current_exe().unwrap();
    // A regular file, and a memfd anyone holding it could still rewrite.
    let path = std::env::temp_dir().join(format!("multiproc-boot-{}", std::process::id()));
    std::fs::write(&path, &genuine).unwrap();
    let file = OwnedFd::from(std::fs::File::open(&path).unwrap());
    let _ = std::fs::remove_file(&path);
    assert_refused(&run_with(&exe, "7", Some(&file)), "not a sealed memfd");
    assert_refused(&run_with(&exe, "7", Some(&memfd(&genuine, false))), "not sealed");
}

#[test]
fn a_pipe_whose_writer_stays_open_does_not_hang_the_child() {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array for pipe2.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 made these two fds, ours alone.
    let (read, _write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    assert_refused(&run_with(&exe, "7", Some(&read)), "not a sealed memfd");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_malformed_bootstrap_is_refused() {
    assert_refused(&run_sealed(b"\xff\xff\xff garbage"), "malformed bootstrap");
    assert_refused(&run_sealed(b""), "malformed bootstrap");
    // A genuine one with bytes after it was made as something else.
    let mut long = bootstrap(entry(exits_with), &[0]);
    long.push(0);
    assert_refused(&run_sealed(&long), "malformed bootstrap");
}

#[test]
fn a_bootstrap_must_come_from_the_parent_it_names() {
    // Our parent (the test harness's parent) is not this process.
    let grandparent = std::os::unix::process::parent_id();
    let forged = multiproc::__testing::bootstrap(entry(exits_with), vec![0], Some(grandparent));
    assert_refused(&run_sealed(&forged), "this process's parent is");
}

#[test]
fn a_bootstrap_from_another_executable_is_refused() {
    // A copy of this binary is another file: same bytes, another inode, so
    // its parent (this process) does not run *its* executable.
    let exe = std::env::current_exe().unwrap();
    let copy = std::env::temp_dir().join(format!("multiproc-copy-{}", std::process::id()));
    std::fs::copy(&exe, &copy).unwrap();
    let genuine = bootstrap(entry(exits_with), &[0]);
    let out = run_with(&copy, "7", Some(&memfd(&genuine, true)));
    let _ = std::fs::remove_file(&copy);
    assert_refused(&out, "does not run this executable");
}

#[test]
fn a_bootstrap_names_only_spawn_entries() {
    let (offset, fingerprint) = entry(exits_with);
    let refused = |entry: (u64, u64)| run_sealed(&bootstrap(entry, &[7]));
    // A pool task's record is code of another kind.
    let other_kind = multiproc::__testing::pool_task_entry(task);
    assert_refused(&refused(other_kind), "another kind");
    // Another entry's fingerprint: arguments encoded for another type.
    assert_refused(&refused((offset, entry(adds).1)), "encoded for another type");
    // Code that is no record at all: a function's own address, offsets into
    // the middle of a record, outside the image, misaligned, and a sweep.
    let step = |d: u64| (offset.wrapping_add(d), fingerprint);
    let mut forged = vec![step(8), step(16), step(u64::MAX - 7), step(1), (1 << 47, fingerprint)];
    forged.extend((1..12u64).map(|i| step(i.wrapping_mul(0x9e37_79b9) & !7)));
    forged.extend((1..12u64).map(|i| step((i << 12).wrapping_neg())));
    for forged in forged {
        let out = refused(forged);
        assert_refused(&out, "the bootstrap's target is refused");
    }
    // The genuine entry with arguments made for another type.
    assert_refused(&run_sealed(&bootstrap((offset, fingerprint), &[1, 2])), "left over");
}

#[test]
fn a_bootstrap_is_not_honoured_with_gained_privileges() {
    // A setuid copy of this binary run by an unprivileged user gets
    // AT_SECURE from the kernel. Making one needs root (CI runs as root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot make a setuid binary to check AT_SECURE");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("forged-setuid");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(&copy);
    let out = run_command(cmd, "7", None);
    let _ = std::fs::remove_dir_all(&dir);
    assert_refused(&out, "gained privileges");
}

/// Run as a main process of its own by the next test, under a seccomp
/// filter that forbids `process_vm_readv` (as Docker's default profile
/// does): spawned children and pool workers still find their targets.
#[test]
fn seccomp_helper() {
    if std::env::var_os("MULTIPROC_SECCOMP_HELPER").is_none() {
        return;
    }
    let mut buf = [0u8; 1];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 1 };
    let remote = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: reads our own buffer into itself (it is refused anyway).
    let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    assert_eq!(r, -1, "the filter is in place");
    let p = multiproc::Process::new(exits_with, (42,));
    p.start().unwrap();
    let code = p.join_timeout(BOUND).unwrap();
    let pool = multiproc::Pool::new(1).unwrap();
    let squared = pool.apply(task, (9,)).unwrap();
    println!("SPAWNED={code:?} POOL={squared}");
}

#[test]
fn spawn_works_where_process_vm_readv_is_forbidden() {
    let mut cmd = common::helper_command("seccomp_helper", "MULTIPROC_SECCOMP_HELPER");
    // SAFETY: prctl is async-signal-safe, and the filter program lives on
    // this closure's stack for the call.
    unsafe {
        cmd.pre_exec(|| {
            // BPF: load the syscall number; process_vm_readv -> EPERM;
            // anything else -> allow.
            let nr = libc::SYS_process_vm_readv as u32;
            let mut filter = [
                libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 },
                libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: nr },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                },
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
            ];
            let program = libc::sock_fprog { len: 4, filter: filter.as_mut_ptr() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_command_output(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SPAWNED=Some(42) POOL=81"), "{out:?}");
}
