//! The link beside every channel: a duplex named pipe with one unique,
//! unguessable-enough name, both of whose ends this process makes and then
//! hands out. The system counts the handles of each end, so [`peer_gone`]
//! sees a peer that closed or died (the pipe breaks once every handle of
//! the other end is gone), and handle batches travel on it.
//!
//! Moving a handle to a running process, as `SCM_RIGHTS` does on Unix:
//! [`send_handles`] makes a private duplicate of each handle and writes a
//! batch naming the sender (pid and creation stamp) and the duplicates'
//! values; [`recv_handles`] opens the sender and takes each duplicate with
//! `DuplicateHandle(DUPLICATE_CLOSE_SOURCE)`, which moves it out of the
//! sender. The receiver checks the sender's creation stamp, so a reused
//! pid is never robbed; a batch naming this very process may name only
//! duplicates made here for a transfer (a registry keeps them), so garbage
//! cannot make us close our own handles. A sender that exits before its
//! batch is read takes the duplicates with it: the receive fails, it does
//! not hang. Batches carry tags as on Unix: a smaller one is stale (its
//! message was never published) and its handles are taken and closed.
#![allow(unsafe_code)]

use crate::net::{is_disconnect, pipe_available, Kind};
use crate::sys;
use std::collections::BTreeSet;
use std::io;
use std::os::windows::io::{
    AsRawHandle, BorrowedHandle, FromRawHandle, IntoRawHandle, OwnedHandle,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, ERROR_PIPE_CONNECTED, HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Pipes::{ConnectNamedPipe, PeekNamedPipe};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// The most handles one batch names.
const BATCH: usize = 256;
/// A batch's header: marker `F`, tag (`u64`), sender pid and stamp
/// (`u32` each), count (`u32`); then the values (`u64` each).
const HEADER: usize = 21;
/// How long [`recv_handles`] waits for a batch a message says was sent
/// before it (an honest peer wrote it already).
const WAIT: Duration = Duration::from_secs(5);

/// A connected pair of link ends.
pub fn pair() -> io::Result<(OwnedHandle, OwnedHandle)> {
    pair_of(Kind::Link)
}

/// A connected pair of pipe ends made for `kind`: the server's, then the
/// client's.
pub(crate) fn pair_of(kind: Kind) -> io::Result<(OwnedHandle, OwnedHandle)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let me = crate::ident::process();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(r"\\.\pipe\multiproc-{}-{:08x}-{n}-{nanos:08x}", me.id, me.stamp);
        let wide = sys::wide(name.as_ref());
        let Ok(server) = crate::net::instance(&wide, true, kind) else {
            // The name was taken (by a squatter, or a clash): another one.
            if n % 64 == 63 {
                return Err(io::Error::last_os_error());
            }
            continue;
        };
        let client = crate::net::open_client(&wide, kind)?;
        // SAFETY: our server end; the client is already there.
        if unsafe { ConnectNamedPipe(server.as_raw_handle() as HANDLE, std::ptr::null_mut()) } == 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(ERROR_PIPE_CONNECTED as i32) {
                return Err(e);
            }
        }
        return Ok((server, client));
    }
}

/// Whether every handle of the link's other end is closed (its holders
/// closed it or died).
pub fn peer_gone(link: BorrowedHandle<'_>) -> bool {
    match pipe_available(link.as_raw_handle() as HANDLE) {
        Ok(Some(_)) => false,
        Ok(None) => true,
        Err(e) => is_disconnect(&e),
    }
}

/// Writes all of `bytes` to `link`.
fn write_all(link: HANDLE, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut wrote = 0u32;
        let n = bytes.len().min(u32::MAX as usize) as u32;
        // SAFETY: a pipe handle and a buffer of `n` bytes.
        sys::check(unsafe { WriteFile(link, bytes.as_ptr(), n, &mut wrote, std::ptr::null_mut()) })
            .map_err(|e| if is_disconnect(&e) { io::ErrorKind::BrokenPipe.into() } else { e })?;
        bytes = &bytes[wrote as usize..];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes that are already waiting on `link`.
fn read_exact(link: HANDLE, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let mut got = 0u32;
        let n = (buf.len() - done).min(u32::MAX as usize) as u32;
        // SAFETY: a pipe handle and a buffer of `n` bytes.
        sys::check(unsafe {
            ReadFile(link, buf[done..].as_mut_ptr(), n, &mut got, std::ptr::null_mut())
        })?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        done += got as usize;
    }
    Ok(())
}

/// Duplicates made here for a transfer and not yet taken.
fn in_flight() -> MutexGuard<'static, BTreeSet<u64>> {
    static IN_FLIGHT: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `handles` over `link`, in batches, each tagged with `tag` (the
/// message they belong to: see [`recv_handles`]).
pub fn send_handles(
    link: BorrowedHandle<'_>,
    handles: &[BorrowedHandle<'_>],
    tag: u64,
) -> io::Result<()> {
    let me = crate::ident::process();
    for batch in handles.chunks(BATCH) {
        let mut dups = Vec::with_capacity(batch.len());
        for h in batch {
            dups.push(h.try_clone_to_owned()?);
        }
        let mut bytes = Vec::with_capacity(HEADER + 8 * batch.len());
        bytes.push(b'F');
        bytes.extend(tag.to_le_bytes());
        bytes.extend(me.id.to_le_bytes());
        bytes.extend(me.stamp.to_le_bytes());
        bytes.extend((batch.len() as u32).to_le_bytes());
        for d in &dups {
            bytes.extend((d.as_raw_handle() as u64).to_le_bytes());
        }
        // Registered before they can be read (a receiver in this process
        // takes only registered values).
        in_flight().extend(dups.iter().map(|d| d.as_raw_handle() as u64));
        match write_all(link.as_raw_handle() as HANDLE, &bytes) {
            Ok(()) => {
                // The receiver owns them now (it takes them out of here).
                for d in dups {
                    let _ = d.into_raw_handle();
                }
            }
            Err(e) => {
                let mut set = in_flight();
                for d in &dups {
                    set.remove(&(d.as_raw_handle() as u64));
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Takes handle `value` out of process `source` (or, if that is this
/// process, a registered duplicate of ours).
fn take(source: Option<&OwnedHandle>, value: u64) -> io::Result<OwnedHandle> {
    let Some(source) = source else {
        if !in_flight().remove(&value) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a batch names a handle of this process that was not sent",
            ));
        }
        // SAFETY: a duplicate made for this transfer by `send_handles` in
        // this process and owned by nobody since (removed from the registry
        // just now, once).
        return Ok(unsafe { OwnedHandle::from_raw_handle(value as usize as HANDLE) });
    };
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: moves a handle out of the checked sender into this process;
    // a bad value fails cleanly.
    sys::check(unsafe {
        DuplicateHandle(
            source.as_raw_handle() as HANDLE,
            value as usize as HANDLE,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE,
        )
    })?;
    sys::owned(out)
}

/// Waits until `n` bytes are waiting on `link`, at most until `deadline`.
fn wait_for(link: HANDLE, n: usize, deadline: Instant) -> io::Result<()> {
    let mut nap = Duration::from_micros(20);
    loop {
        match pipe_available(link) {
            Ok(Some(avail)) if avail >= n => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the link"))
            }
            Err(e) if is_disconnect(&e) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the link"))
            }
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "announced handles not sent"));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    }
}

/// Receives exactly `n` handles that [`send_handles`] sent with `tag`.
/// Fails (never blocks for long) if they are not there.
pub fn recv_handles(link: BorrowedHandle<'_>, n: usize, tag: u64) -> io::Result<Vec<OwnedHandle>> {
    let link = link.as_raw_handle() as HANDLE;
    let deadline = Instant::now() + WAIT;
    let me = crate::ident::process();
    let mut out = Vec::with_capacity(n.min(BATCH));
    while out.len() < n {
        wait_for(link, HEADER, deadline)?;
        let mut header = [0u8; HEADER];
        let mut peeked = 0u32;
        // SAFETY: a pipe handle and a buffer of HEADER bytes; peeking takes
        // nothing off the pipe.
        sys::check(unsafe {
            PeekNamedPipe(
                link,
                header.as_mut_ptr().cast(),
                HEADER as u32,
                &mut peeked,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        })?;
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4"));
        let found = u64::from_le_bytes(header[1..9].try_into().expect("8"));
        let (pid, stamp, count) = (word(9), word(13), word(17) as usize);
        if peeked as usize != HEADER || header[0] != b'F' || count == 0 || count > BATCH {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected bytes on the link"));
        }
        if found.wrapping_sub(tag) as i64 > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "this message's handles are missing",
            ));
        }
        wait_for(link, HEADER + 8 * count, deadline)?;
        let mut batch = vec![0u8; HEADER + 8 * count];
        read_exact(link, &mut batch)?;
        let source = if pid == me.id { None } else { Some(open_sender(pid, stamp)?) };
        for value in batch[HEADER..].chunks_exact(8) {
            let value = u64::from_le_bytes(value.try_into().expect("8"));
            let handle = take(source.as_ref(), value);
            if found == tag {
                out.push(handle?);
            }
            // A stale batch's handles are taken and closed here.
        }
    }
    if out.len() != n {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "more handles than announced"));
    }
    Ok(out)
}

/// Process `pid`, opened to take handles out of, if it is still the one
/// stamped `stamp` (not a stranger that reused its id).
fn open_sender(pid: u32, stamp: u32) -> io::Result<OwnedHandle> {
    // SAFETY: opening by id; the result is checked.
    let process = sys::owned(unsafe {
        OpenProcess(PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION, 0, pid)
    })
    .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("the sender is gone: {e}")))?;
    if crate::ident::stamp_of_process(process.as_raw_handle() as HANDLE) != Some(stamp) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the sender is gone (its id was reused)",
        ));
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::io::AsHandle;

    #[test]
    fn handles_cross_and_hangups_show() {
        let (a, b) = pair().unwrap();
        assert!(!peer_gone(a.as_handle()));
        let seg = crate::shm::Segment::create(64).unwrap();
        let many: Vec<BorrowedHandle<'_>> = (0..300).map(|_| seg.handle()).collect();
        send_handles(a.as_handle(), &many, 7).unwrap();
        let got = recv_handles(b.as_handle(), 300, 7).unwrap();
        assert_eq!(got.len(), 300);
        // A stale batch is closed on the way; a later one is left alone.
        send_handles(a.as_handle(), &many[..2], 8).unwrap();
        send_handles(a.as_handle(), &many[..3], 9).unwrap();
        send_handles(a.as_handle(), &many[..1], 11).unwrap();
        assert_eq!(recv_handles(b.as_handle(), 3, 9).unwrap().len(), 3);
        assert!(recv_handles(b.as_handle(), 1, 10).is_err());
        assert_eq!(recv_handles(b.as_handle(), 1, 11).unwrap().len(), 1);
        drop(b);
        assert!(peer_gone(a.as_handle()));
    }

    #[test]
    fn a_batch_cannot_name_handles_of_ours_that_were_not_sent() {
        let (a, b) = pair().unwrap();
        let me = crate::ident::process();
        let mut bytes = vec![b'F'];
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(me.id.to_le_bytes());
        bytes.extend(me.stamp.to_le_bytes());
        bytes.extend(1u32.to_le_bytes());
        bytes.extend((a.as_raw_handle() as u64).to_le_bytes());
        write_all(a.as_raw_handle() as HANDLE, &bytes).unwrap();
        assert!(recv_handles(b.as_handle(), 1, 1).is_err());
        assert!(!peer_gone(a.as_handle()), "our own handle is still open");
    }
}
