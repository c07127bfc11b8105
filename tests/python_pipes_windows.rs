//! Named pipe connections on the wire as CPython's
//! `multiprocessing.connection` makes them on Windows (`PipeListener`,
//! `PipeClient`, `PipeConnection`): message pipes, one message a
//! `send_bytes`, no length header, read as CPython reads them (128 bytes,
//! then `PeekNamedPipe` for the rest of the message). No Python runs under
//! Wine, so the raw peer here takes CPython's steps with the same calls.
#![cfg(windows)]

mod common;

use common::BOUND;
use multiproc::connection::{Address, Client, Listener};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_MORE_DATA, ERROR_PIPE_CONNECTED, GENERIC_READ, GENERIC_WRITE, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, PeekNamedPipe, SetNamedPipeHandleState,
    PIPE_READMODE_MESSAGE, PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};

/// CPython's pipe buffer size (`connection.BUFSIZE`).
const BUFSIZE: u32 = 8192;

fn wide(address: &Address) -> Vec<u16> {
    address.to_string().encode_utf16().chain([0]).collect()
}

fn owned(h: HANDLE) -> OwnedHandle {
    assert!(!h.is_null() && h != INVALID_HANDLE_VALUE, "{}", std::io::Error::last_os_error());
    // SAFETY: a handle just returned to us.
    unsafe { OwnedHandle::from_raw_handle(h) }
}

fn raw(h: &OwnedHandle) -> HANDLE {
    h.as_raw_handle() as HANDLE
}

/// `PipeClient(address)`: opens the pipe and reads it in message mode.
fn python_client(address: &Address) -> OwnedHandle {
    // SAFETY: a NUL-terminated name.
    let h = owned(unsafe {
        CreateFileW(
            wide(address).as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    });
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: a pipe handle and a mode word.
    let ok = unsafe { SetNamedPipeHandleState(raw(&h), &mode, std::ptr::null(), std::ptr::null()) };
    assert_ne!(ok, 0);
    h
}

/// `PipeListener(address)`'s first instance.
fn python_listener(address: &Address) -> OwnedHandle {
    // SAFETY: a NUL-terminated name; default security.
    owned(unsafe {
        CreateNamedPipeW(
            wide(address).as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
            PIPE_UNLIMITED_INSTANCES,
            BUFSIZE,
            BUFSIZE,
            0,
            std::ptr::null(),
        )
    })
}

/// `_send_bytes(buf)`: one write, one message.
fn send_bytes(h: &OwnedHandle, buf: &[u8]) {
    let mut wrote = 0;
    // SAFETY: a pipe handle and a buffer of its length.
    let ok = unsafe {
        WriteFile(raw(h), buf.as_ptr(), buf.len() as u32, &mut wrote, std::ptr::null_mut())
    };
    assert!(ok != 0 && wrote as usize == buf.len(), "{}", std::io::Error::last_os_error());
}

/// `PeekNamedPipe`'s counts: bytes waiting, and bytes left of the message
/// being read.
fn peek(h: &OwnedHandle) -> (u32, u32) {
    let (mut avail, mut left) = (0, 0);
    // SAFETY: a pipe handle; only the counts are asked for.
    let ok = unsafe {
        PeekNamedPipe(raw(h), std::ptr::null_mut(), 0, std::ptr::null_mut(), &mut avail, &mut left)
    };
    assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
    (avail, left)
}

/// `_recv_bytes()`: a read of 128 bytes; if the message is longer, a peek
/// for what is left of it and a read of that. Waits (bounded) for a
/// message to be there first, so the test cannot hang.
fn recv_bytes(h: &OwnedHandle) -> Vec<u8> {
    let deadline = Instant::now() + BOUND;
    while peek(h).0 == 0 {
        assert!(Instant::now() < deadline, "no message came");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut buf = vec![0u8; 128];
    let mut got = 0;
    // SAFETY: a pipe handle and a buffer of 128 bytes.
    let ok = unsafe { ReadFile(raw(h), buf.as_mut_ptr(), 128, &mut got, std::ptr::null_mut()) };
    if ok != 0 {
        buf.truncate(got as usize);
        return buf;
    }
    // SAFETY: no preconditions.
    assert_eq!(unsafe { GetLastError() }, ERROR_MORE_DATA);
    let left = peek(h).1;
    buf.resize(128 + left as usize, 0);
    let mut rest = 0;
    // SAFETY: a buffer of `left` bytes after the first 128.
    let ok =
        unsafe { ReadFile(raw(h), buf[128..].as_mut_ptr(), left, &mut rest, std::ptr::null_mut()) };
    assert!(ok != 0 && rest == left, "{}", std::io::Error::last_os_error());
    buf
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7) % 251) as u8).collect()
}

/// Messages both ways between a CPython-style end and one of ours: short,
/// longer than CPython's 128-byte first read and than its pipe buffer, and
/// empty (ours to it).
fn exchange(python: &OwnedHandle, ours: &multiproc::Connection) {
    ours.send_bytes(b"hello").unwrap();
    assert_eq!(recv_bytes(python), b"hello", "one message, no header");
    let long = pattern(300_000);
    std::thread::scope(|s| {
        s.spawn(|| ours.send_bytes(&long).unwrap());
        assert!(recv_bytes(python) == long);
    });
    send_bytes(python, b"from python");
    assert_eq!(ours.recv_bytes_timeout(BOUND).unwrap(), b"from python");
    let long = pattern(20_000);
    std::thread::scope(|s| {
        s.spawn(|| send_bytes(python, &long));
        assert!(ours.recv_bytes_timeout(BOUND).unwrap() == long);
    });
    send_bytes(python, b"");
    assert!(ours.poll_timeout(BOUND), "an empty message is seen");
    assert_eq!(ours.recv_bytes_timeout(BOUND).unwrap(), b"");
    ours.send(&(7u32, "typed".to_string())).unwrap();
    assert_eq!(recv_bytes(python), [7, 5, b't', b'y', b'p', b'e', b'd'], "postcard, unframed");
}

#[test]
fn our_listener_and_a_python_pipe_client() {
    let listener = Listener::builder(Address::arbitrary_unix().unwrap()).bind().unwrap();
    let python = python_client(listener.address());
    let ours = listener.accept_timeout(BOUND).unwrap();
    exchange(&python, &ours);
    drop(python);
    assert!(ours.recv_bytes_timeout(BOUND).unwrap_err().is_disconnected());
}

#[test]
fn a_python_pipe_listener_and_our_client() {
    let address = Address::arbitrary_unix().unwrap();
    let python = python_listener(&address);
    let ours = Client::connect_timeout(address, b"", BOUND).unwrap();
    // SAFETY: our listening instance; the client is already there.
    let ok = unsafe { ConnectNamedPipe(raw(&python), std::ptr::null_mut()) };
    // SAFETY: no preconditions.
    assert!(ok != 0 || unsafe { GetLastError() } == ERROR_PIPE_CONNECTED);
    exchange(&python, &ours);
    drop(ours);
    let mut byte = [0u8; 1];
    let mut got = 0;
    // SAFETY: a pipe handle and a one-byte buffer; the other end is closed,
    // so this returns at once.
    let ok =
        unsafe { ReadFile(raw(&python), byte.as_mut_ptr(), 1, &mut got, std::ptr::null_mut()) };
    assert!(ok == 0 && got == 0, "the end shows as a broken pipe");
}
