//! Process semantics as Python reports them: exit codes, join with a
//! timeout, signals, panics, names, parents, daemons, start-method rules.

mod common;
use common::*;
#[cfg(any(mp_fork, mp_transfer))]
use multiproc::StartMethod;
use multiproc::{parent_process, ErrorKind, Event, Process, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn busy(stop: Event) {
    stop.wait_timeout(BOUND);
}

#[test]
fn join_timeout_on_a_busy_child_then_exit_code_zero() {
    for method in METHODS {
        let stop = Event::new().unwrap();
        let p = with(method, Process::new(busy, (stop.clone(),)));
        assert_eq!(p.exitcode(), None, "not started");
        p.start().unwrap();
        let t = Instant::now();
        assert_eq!(p.join_timeout(Duration::from_millis(100)).unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert_eq!(p.exitcode(), None);
        assert!(p.is_alive());
        stop.set();
        assert_eq!(finish(&p), 0, "{method:?}");
        assert_eq!(p.exitcode(), Some(0));
        assert!(!p.is_alive());
    }
}

#[test]
fn sigkill_reports_minus_nine_and_sigterm_minus_fifteen() {
    for method in METHODS {
        let stop = Event::new().unwrap();
        let p = with(method, Process::new(busy, (stop.clone(),)));
        p.start().unwrap();
        p.kill().unwrap();
        assert_eq!(finish(&p), KILLED, "{method:?}");
        p.kill().unwrap(); // a no-op once it ended

        let p = with(method, Process::new(busy, (stop.clone(),)));
        p.start().unwrap();
        p.terminate().unwrap();
        assert_eq!(finish(&p), -15, "{method:?}");
    }
}

fn panics(message: String) {
    panic!("{message}");
}

fn exits_with(code: i32) -> i32 {
    code
}

fn fails() -> Result<(), String> {
    Err("a failure".into())
}

#[test]
fn panic_reports_one_and_return_values_are_exit_codes() {
    for method in METHODS {
        let p = with(method, Process::new(panics, ("boom".to_string(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 1, "{method:?}");

        let p = with(method, Process::new(exits_with, (7,)));
        p.start().unwrap();
        assert_eq!(finish(&p), 7);

        let p = with(method, Process::new(fails, ()));
        p.start().unwrap();
        assert_eq!(finish(&p), 1);
    }
}

/// The panic message reaches the child's stderr: run a child whose stderr
/// is a file and read it back.
fn panic_to_file(path: String) {
    let file = std::fs::File::create(&path).unwrap();
    // The standard library cannot redirect stderr; libc (windows-sys) is a
    // dev-dependency for this one call.
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto stderr with a valid open fd.
        unsafe { libc::dup2(file.as_raw_fd(), 2) };
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::IntoRawHandle;
        use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
        // SAFETY: an open file handle, given up to be stderr for good.
        unsafe { SetStdHandle(STD_ERROR_HANDLE, file.into_raw_handle()) };
    }
    panic!("the message {}", 42);
}

#[test]
fn a_panicking_child_prints_its_message_on_stderr() {
    let dir = std::env::temp_dir();
    for method in METHODS {
        let path = dir.join(format!("multiproc-panic-{}-{method:?}", std::process::id()));
        let path = path.to_string_lossy().into_owned();
        let p = with(method, Process::new(panic_to_file, (path.clone(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 1);
        let stderr = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(stderr.contains("the message 42"), "{method:?}: {stderr:?}");
    }
}

fn report_parent(pid: Value<u32>) {
    let parent = parent_process().expect("a child has a parent");
    assert!(parent.is_alive());
    assert_eq!(parent.name(), "MainProcess");
    pid.set(parent.pid()).unwrap();
}

#[test]
fn a_child_knows_its_parent() {
    assert!(parent_process().is_none());
    for method in METHODS {
        let pid = Value::new(0u32).unwrap();
        let p = with(method, Process::new(report_parent, (pid.clone(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}");
        assert_eq!(pid.get().unwrap(), std::process::id());
        assert!(p.pid().is_some());
    }
}

#[test]
#[cfg(mp_fork)]
fn fork_is_refused_with_threads_unless_allowed() {
    // The test harness runs this on a thread of its own: more than one.
    let p = Process::new(exits_with, (0,)).start_method(StartMethod::Fork);
    let err = p.start().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("threads"), "{err}");

    // Closures need fork; with it they capture anything.
    let captured = String::from("abc");
    let p = Process::with_closure(move || captured.len() as i32).allow_threads(true);
    p.start().unwrap();
    assert_eq!(finish(&p), 3);
    let p = Process::with_closure(|| 0).start_method(StartMethod::Spawn);
    assert_eq!(p.start().unwrap_err().kind(), ErrorKind::Unsupported);
}

#[test]
#[cfg(not(mp_fork))]
fn fork_and_forkserver_are_unsupported_here() {
    for method in [multiproc::StartMethod::Fork, multiproc::StartMethod::ForkServer] {
        let p = Process::new(exits_with, (0,)).start_method(method);
        let err = p.start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{method:?}");
        assert!(err.to_string().to_lowercase().contains("spawn"), "{err}");
    }
    let p = Process::with_closure(|| 0);
    assert_eq!(p.start().unwrap_err().kind(), ErrorKind::Unsupported);
}

#[test]
#[cfg(mp_fork)]
fn forkserver_starts_children_from_a_threaded_parent() {
    // No opt-in needed: the fork happens in the single-threaded server.
    let stop = Event::new().unwrap();
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || stop.wait_timeout(BOUND))
    };
    for code in [0, 7] {
        let p = child(Process::new(exits_with, (code,)).start_method(StartMethod::ForkServer));
        p.start().unwrap();
        assert_eq!(finish(&p), code);
    }
    // Its children are signalled through a pidfd, and report as Python's.
    let p = child(Process::new(busy, (stop.clone(),)).start_method(StartMethod::ForkServer));
    p.start().unwrap();
    assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(finish(&p), -9);
    // Closures cannot travel to the server.
    let p = Process::with_closure(|| 0).start_method(StartMethod::ForkServer);
    assert_eq!(p.start().unwrap_err().kind(), ErrorKind::Unsupported);
    stop.set();
    spinner.join().unwrap();
}

#[test]
fn misuse_is_an_error() {
    let p = Process::new(exits_with, (0,));
    assert_eq!(p.join().unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(p.terminate().unwrap_err().kind(), ErrorKind::InvalidArgument);
    p.start().unwrap();
    assert_eq!(p.start().unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(finish(&p), 0);
    assert!(multiproc::cpu_count() >= 1);
}

/// A parent that starts a daemon child and exits normally: the daemon must
/// be terminated (its pid reported through `pid`).
fn parent_of_a_daemon(pid: Value<u32>, stop: Event) {
    let d = Process::new(busy, (stop,)).daemon(true);
    d.start().unwrap();
    pid.set(d.pid().unwrap()).unwrap();
    // Returning exits this process; the daemon must not outlive it.
}

#[test]
fn daemon_children_are_terminated_when_their_parent_exits() {
    let pid = Value::new(0u32).unwrap();
    let stop = Event::new().unwrap();
    let p = child(Process::new(parent_of_a_daemon, (pid.clone(), stop.clone())));
    p.start().unwrap();
    assert_eq!(finish(&p), 0);
    let daemon = pid.get().unwrap();
    assert_ne!(daemon, 0);
    // The daemon was reaped by its parent at exit: no such process now.
    let deadline = Instant::now() + BOUND;
    while std::path::Path::new(&format!("/proc/{daemon}/stat")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap_or_default();
        // It may linger as a zombie of init for a moment, never running.
        if stat.contains(") Z") {
            break;
        }
        assert!(Instant::now() < deadline, "daemon {daemon} still running");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.set();
}

fn has_authkey(expected: Vec<u8>) -> i32 {
    let key = multiproc::current_process().authkey().unwrap();
    i32::from(key != expected)
}

#[test]
fn children_inherit_the_authkey_or_get_the_one_given() {
    let mine = multiproc::current_process().authkey().unwrap();
    assert_eq!(mine.len(), 32);
    for method in METHODS {
        let mut p = with(method, Process::new(has_authkey, (mine.clone(),)));
        assert_eq!(run_all(std::slice::from_mut(&mut p)), [0], "{method:?}");
        let given = b"given to this one".to_vec();
        let p = Process::new(has_authkey, (given.clone(),)).authkey(&given);
        let mut p = with(method, p);
        assert_eq!(run_all(std::slice::from_mut(&mut p)), [0], "{method:?}");
    }
}

/// The name a child sees for itself, sent back.
#[cfg(mp_transfer)]
fn say_name(names: multiproc::Queue<String>) {
    names.put(&multiproc::current_process().name().to_string()).unwrap();
}

/// In a fresh process: two children under `method` are numbered 1 and 2
/// (their parent's identity, then their own number), whatever the method
/// starts first (the forkserver's own process takes no number).
#[cfg(mp_transfer)]
fn first_two_children_are_one_and_two(method: StartMethod) -> i32 {
    let me = multiproc::current_process().name().trim_start_matches("Process-").to_string();
    let names = multiproc::Queue::<String>::new().unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let p = with(method, Process::new(say_name, (names.clone(),)));
        p.start().unwrap();
        assert_eq!(finish(&p), 0);
        seen.push((p.get_name().to_string(), names.get_timeout(BOUND).unwrap()));
    }
    let expected = |n: u32| format!("Process-{me}:{n}");
    let want = vec![(expected(1), expected(1)), (expected(2), expected(2))];
    if seen == want {
        0
    } else {
        eprintln!("{method:?}: {seen:?}, expected {want:?}");
        1
    }
}

#[test]
#[cfg(mp_transfer)]
fn children_are_numbered_alike_under_every_start_method() {
    for method in METHODS {
        let p = child(Process::new(first_two_children_are_one_and_two, (method,)));
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}");
    }
}

/// Run as a main process of its own by the next test: starts a daemon,
/// prints its pid, and returns from `main` (the test harness's).
#[test]
fn main_with_a_daemon_helper() {
    if std::env::var_os("MULTIPROC_DAEMON_HELPER").is_none() {
        return;
    }
    let d = child(Process::new(busy, (Event::new().unwrap(),)));
    d.start().unwrap();
    println!("DAEMON={}", d.pid().unwrap());
}

#[test]
fn a_main_processs_daemons_are_terminated_when_main_returns() {
    let out =
        helper_command("main_with_a_daemon_helper", "MULTIPROC_DAEMON_HELPER").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.split("DAEMON=").nth(1))
        .expect("the helper ran")
        .trim()
        .parse()
        .unwrap();
    // Its parent terminated and waited for it on the way out.
    assert!(!pid_alive(pid), "daemon {pid} outlived its main process");
}

/// What a child says of itself and its parent, as Python's `repr`s.
fn reprs_of_self_and_parent(parent: u32, name: String) -> i32 {
    let me = multiproc::current_process().to_string();
    let want = format!("<Process name='{name}' parent={parent} started daemon>");
    let theirs = parent_process().unwrap().to_string();
    let want_parent = "<_ParentProcess name='MainProcess' parent=None unknown>";
    if me == want && theirs == want_parent {
        0
    } else {
        eprintln!("{me} / {theirs}");
        1
    }
}

#[test]
fn display_reads_like_pythons_repr() {
    let me = std::process::id();
    assert_eq!(
        multiproc::current_process().to_string(),
        "<_MainProcess name='MainProcess' parent=None started>"
    );
    let stop = Event::new().unwrap();
    let p = child(Process::new(busy, (stop,)).name("it's"));
    assert_eq!(p.to_string(), format!("<Process name=\"it's\" parent={me} initial daemon>"));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_eq!(
        p.to_string(),
        format!("<Process name=\"it's\" pid={pid} parent={me} started daemon>")
    );
    p.kill().unwrap();
    finish(&p);
    // Python names the signal (-15 on Windows, where kill is terminate).
    let signal = if cfg!(windows) { "SIGTERM" } else { "SIGKILL" };
    assert_eq!(
        p.to_string(),
        format!("<Process name=\"it's\" pid={pid} parent={me} stopped exitcode=-{signal} daemon>")
    );
    let p = Process::new(exits_with, (3,));
    p.start().unwrap();
    finish(&p);
    let pid = p.pid().unwrap();
    assert_eq!(
        p.to_string(),
        format!("<Process name='{}' pid={pid} parent={me} stopped exitcode=3>", p.get_name())
    );
    let p = child(Process::new(reprs_of_self_and_parent, (me, "repr".into())).name("repr"));
    assert_eq!(run_all(std::slice::from_ref(&p)), [0]);
}

#[test]
fn a_process_is_shared_with_threads_and_joined_from_two_at_once() {
    let stop = Event::new().unwrap();
    let p = child(Process::new(busy, (stop.clone(),)));
    p.start().unwrap();
    std::thread::scope(|s| {
        let joiners: Vec<_> = (0..2).map(|_| s.spawn(|| p.join_timeout(BOUND))).collect();
        // A watchdog thread looks at it meanwhile.
        let watchdog = s.spawn(|| (p.is_alive(), p.exitcode()));
        assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
        stop.set();
        for j in joiners {
            assert_eq!(j.join().unwrap().unwrap(), Some(0));
        }
        let (alive, code) = watchdog.join().unwrap();
        assert!(alive || code == Some(0));
    });
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
}

/// Says it runs, sleeps, then leaves a mark at `path`: a child that
/// outlives `main`.
fn sleeps_then_marks(path: std::path::PathBuf, running: Event) {
    running.set();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(path, b"done").unwrap();
}

/// Run as a main process of its own by the next test: starts a child that
/// ends 0.5 s later (not a daemon, never joined), prints, and returns from
/// `main`; with `MULTIPROC_LEAVE`, it leaves its children at exit.
#[test]
fn main_with_a_slow_child_helper() {
    let Some(mark) = std::env::var_os("MULTIPROC_SLOW_CHILD_HELPER") else {
        return;
    };
    if std::env::var_os("MULTIPROC_LEAVE").is_some() {
        multiproc::set_children_at_exit(multiproc::ChildrenAtExit::Leave);
    }
    let method = std::env::var("MULTIPROC_METHOD").unwrap();
    let method = METHODS.into_iter().find(|m| format!("{m:?}") == method).unwrap();
    let running = Event::new().unwrap();
    let p = Process::new(sleeps_then_marks, (std::path::PathBuf::from(mark), running.clone()))
        .start_method(method)
        .allow_threads(true);
    p.start().unwrap();
    // Past its start-up checks (which refuse a child whose parent is gone).
    assert!(running.wait_timeout(BOUND));
}

/// Runs the helper above (its output not captured: the child would hold
/// the pipes open, and its exit is what is timed); how long it took,
/// whether its child had left its mark by then, and where.
fn run_slow_child_helper(
    method: multiproc::StartMethod,
    leave: bool,
) -> (Duration, bool, std::path::PathBuf) {
    let mark = std::env::temp_dir()
        .join(format!("mp-slow-child-{}-{method:?}-{leave}", std::process::id()));
    let _ = std::fs::remove_file(&mark);
    let mut cmd = helper_command("main_with_a_slow_child_helper", "MULTIPROC_SLOW_CHILD_HELPER");
    cmd.env("MULTIPROC_SLOW_CHILD_HELPER", &mark)
        .env("MULTIPROC_METHOD", format!("{method:?}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if leave {
        cmd.env("MULTIPROC_LEAVE", "1");
    }
    let started = Instant::now();
    let status = cmd.status().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    (took, mark.exists(), mark)
}

#[test]
fn the_main_process_waits_for_its_children_at_exit_as_pythons_does() {
    for method in METHODS {
        let (took, marked, mark) = run_slow_child_helper(method, false);
        assert!(marked, "{method:?}: the helper exited after {took:?}, before its child ended");
        assert!(took >= Duration::from_millis(500), "{method:?}: {took:?}");
        std::fs::remove_file(mark).unwrap();
    }
    // Opted out: it exits at once, and the child ends later on its own.
    let (took, marked, mark) = run_slow_child_helper(METHODS[0], true);
    assert!(!marked, "the helper waited {took:?} for its child");
    let deadline = Instant::now() + BOUND;
    while !mark.exists() {
        assert!(Instant::now() < deadline, "the orphan never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(mark).unwrap();
}

fn prints_a_line() {
    println!("child");
}

/// Run as a main process of its own by the next test: prints without a
/// newline, starts a child that prints a line, then ends its own line.
#[test]
fn main_that_prints_before_a_start_helper() {
    if std::env::var_os("MULTIPROC_PRINT_HELPER").is_none() {
        return;
    }
    print!("parent ");
    let p = Process::new(prints_a_line, ());
    p.start().unwrap();
    assert_eq!(finish(&p), 0);
    println!("after");
}

#[test]
fn what_the_parent_printed_before_a_start_comes_first() {
    let out = helper_command("main_that_prints_before_a_start_helper", "MULTIPROC_PRINT_HELPER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(stdout.contains("parent child\nafter\n"), "{stdout}");
}
