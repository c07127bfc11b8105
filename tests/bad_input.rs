//! A spawn bootstrap that is malformed, or made for another executable,
//! ends the child with a clear message and exit code 255 (`BOOTSTRAP_FAILED`)
//! instead of running anything. Each case runs this test binary (or a copy)
//! by hand with such a bootstrap.

use multiproc::BOOTSTRAP_FAILED;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `exe` with fd 7 reading `bootstrap` and MULTIPROC_BOOTSTRAP=`env`.
fn run_with(exe: &std::path::Path, env: &str, bootstrap: &[u8]) -> Output {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("multiproc-boot-{}-{n}", std::process::id()));
    std::fs::write(&file, bootstrap).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 7<"$1"; exec "$2" --exact no-such-test"#)
        .arg("sh")
        .arg(&file)
        .arg(exe)
        .env("MULTIPROC_BOOTSTRAP", env)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    out
}

fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(BOOTSTRAP_FAILED), "stderr: {stderr}");
    assert!(stderr.contains("multiproc: cannot start this child"), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    // It never reached the test harness.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("running"), "{out:?}");
}

#[test]
fn a_bootstrap_that_is_not_an_fd_is_refused() {
    let exe = std::env::current_exe().unwrap();
    assert_refused(&run_with(&exe, "not-a-number", b""), "is not an fd");
    assert_refused(&run_with(&exe, "1", b""), "not an open descriptor");
    assert_refused(&run_with(&exe, "99", b""), "not an open descriptor");
}

#[test]
fn a_malformed_bootstrap_is_refused() {
    let exe = std::env::current_exe().unwrap();
    assert_refused(&run_with(&exe, "7", b"\xff\xff\xff garbage"), "malformed bootstrap");
    assert_refused(&run_with(&exe, "7", b""), "malformed bootstrap");
}

#[test]
fn a_bootstrap_from_another_executable_is_refused() {
    // A copy of this binary is another file: same bytes, another inode.
    let exe = std::env::current_exe().unwrap();
    let copy = std::env::temp_dir().join(format!("multiproc-copy-{}", std::process::id()));
    std::fs::copy(&exe, &copy).unwrap();
    let out = run_with(&copy, "7", &multiproc::__bootstrap_for_tests());
    let _ = std::fs::remove_file(&copy);
    assert_refused(&out, "different executable");
}
