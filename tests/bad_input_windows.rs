//! Who may start a child, on Windows (see `bad_input.rs` for the rules):
//! a bootstrap that is not a read-only section inherited from this
//! process's parent running this same executable, or that names anything
//! but one of this binary's spawn entries, ends the child with a clear
//! message and exit code 255 before any of its code runs. Each case runs
//! this test binary by hand, as a forger would, with the handle inherited
//! the way std's `Command` passes inheritable handles.
#![cfg(windows)]
#![allow(unsafe_code)]

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::process::{Command, Output, Stdio};
use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, FILE_MAP_READ, FILE_MAP_WRITE,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

mod common;
use common::forge::*;

/// A section holding `bytes` after their length, as a parent writes a
/// bootstrap; its handle is inheritable, read-only if `sealed`.
fn section(bytes: &[u8], sealed: bool) -> OwnedHandle {
    let total = bytes.len() + 8;
    // SAFETY: a pagefile-backed section; every result is checked.
    unsafe {
        let h = CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            0,
            total as u32,
            std::ptr::null(),
        );
        assert!(!h.is_null());
        let writable = OwnedHandle::from_raw_handle(h);
        let view = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, total);
        assert!(!view.Value.is_null());
        let at = view.Value.cast::<u8>();
        at.cast::<[u8; 8]>().write_unaligned((bytes.len() as u64).to_le_bytes());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(8), bytes.len());
        UnmapViewOfFile(view);
        let mut out: HANDLE = std::ptr::null_mut();
        let (access, options) =
            if sealed { (FILE_MAP_READ, 0) } else { (0, DUPLICATE_SAME_ACCESS) };
        let ok = DuplicateHandle(
            GetCurrentProcess(),
            writable.as_raw_handle() as HANDLE,
            GetCurrentProcess(),
            &mut out,
            access,
            1,
            options,
        );
        assert!(ok != 0);
        OwnedHandle::from_raw_handle(out)
    }
}

/// Runs this test binary with MULTIPROC_BOOTSTRAP=`env` (the handle's
/// value if `env` is `None`); `handle` is inherited (std's `Command`
/// passes every inheritable handle).
fn run(env: Option<&str>, handle: Option<&OwnedHandle>) -> Output {
    let value = handle.map(|h| (h.as_raw_handle() as usize).to_string());
    let env = env.map(str::to_string).or(value).expect("a value");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no-such-test"])
        .env("MULTIPROC_BOOTSTRAP", env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > common::BOUND {
            let _ = child.kill();
            panic!("a forged child ran past {:?}", common::BOUND);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn run_sealed(bootstrap: &[u8]) -> Output {
    run(None, Some(&section(bootstrap, true)))
}

#[test]
fn a_genuine_bootstrap_runs_its_target() {
    let out = run_sealed(&bootstrap(entry(exits_with), &[42]));
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    let out = run_sealed(&bootstrap(entry(adds), &[40, 2]));
    assert_eq!(out.status.code(), Some(42), "{out:?}");
}

#[test]
fn a_bootstrap_that_is_not_an_open_handle_is_refused() {
    assert_refused(&run(Some("not-a-number"), None), "is not a handle number");
    assert_refused(&run(Some("0"), None), "not an open handle");
    assert_refused(&run(Some("123456"), None), "not an open handle");
}

#[test]
fn only_a_read_only_section_is_read() {
    let genuine = bootstrap(entry(exits_with), &[0]);
    assert_refused(&run(None, Some(&section(&genuine, false))), "can write");
    let path = std::env::temp_dir().join(format!("multiproc-boot-{}", std::process::id()));
    std::fs::write(&path, &genuine).unwrap();
    let file = OwnedHandle::from(std::fs::File::open(&path).unwrap());
    // SAFETY: our own handle, made inheritable for the child.
    unsafe {
        windows_sys::Win32::Foundation::SetHandleInformation(file.as_raw_handle() as HANDLE, 1, 1)
    };
    let out = run(None, Some(&file));
    drop(file);
    let _ = std::fs::remove_file(&path);
    assert_refused(&out, "not a section");
}

#[test]
fn a_malformed_bootstrap_is_refused() {
    assert_refused(&run_sealed(b"\xff\xff\xff garbage"), "malformed bootstrap");
    assert_refused(&run_sealed(b""), "malformed bootstrap");
    let mut long = bootstrap(entry(exits_with), &[0]);
    long.push(0);
    assert_refused(&run_sealed(&long), "malformed bootstrap");
}

#[test]
fn a_bootstrap_must_come_from_the_parent_it_names() {
    let forged = multiproc::__testing::bootstrap(entry(exits_with), vec![0], Some(4));
    assert_refused(&run_sealed(&forged), "this process's parent is");
}

#[test]
fn a_bootstrap_names_only_spawn_entries() {
    let (offset, fingerprint) = entry(exits_with);
    let refused = |entry: (u64, u64)| run_sealed(&bootstrap(entry, &[7]));
    assert_refused(&refused((offset, entry(adds).1)), "encoded for another type");
    for forged in [offset.wrapping_add(8), offset.wrapping_add(1), 1 << 47] {
        assert_refused(&refused((forged, fingerprint)), "the bootstrap's target is refused");
    }
}
