//! The forkserver start method: a single-threaded server process, spawned
//! on first use, forks each child; the child's handles reach it over a Unix
//! socket (SCM_RIGHTS). Safe from a threaded parent (the fork happens in
//! the server, which never starts a thread), and far faster than spawn (no
//! exec, no dynamic loading).
//!
//! # Who may talk to it
//! The control channel is a socketpair whose other end only the server
//! holds: there is no address to connect to (CVE-2022-42919 was a
//! forkserver listening on a path other users could reach). On top of
//! that, as CPython 3.14 does, the server authenticates its parent before
//! serving it: it sends a random challenge and expects
//! HMAC-SHA256(key, challenge), the 32-byte key having reached the server
//! in its private spawn bootstrap.
//!
//! # Wire
//! Request: `len: u32 LE`, `nfds: u32 LE`, the fds (`os::transfer::send_handles`),
//! then `len` bytes of a spawn bootstrap message. Reply: `errno: i32 LE`
//! (0: forked), `pid: u32 LE`, then (if forked) one fd: a socket on which
//! the server writes the child's exit code (`i32` LE) when it reaps it.
//!
//! # Safety
//! The server forks only while single-threaded (it is a spawned process
//! running its target before `main`, and starts no thread), and the forked
//! child ends with `_exit`.
#![allow(unsafe_code)]

use super::start::{self, Bootstrap, Encoded, Identity, BOOTSTRAP_FAILED};
use super::{Process, StartMethod};
use crate::handles::HandleOwned;
use crate::os::launch::{self as child, Child, Forked};
use crate::os::net::{poll_until, Interest, LocalStream as UnixStream, Watch};
use crate::os::transfer::{pair, recv_handles, send_handles};
use crate::os::{AsHandle, BorrowedHandle, RawHandle};
use crate::{Error, ErrorKind, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KEY_LEN: usize = 32;
/// How long the parent waits for the server to answer anything.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// This process's server, and the process it belongs to (a forked copy of
/// the parent must start its own: the socket's stream is the parent's).
struct Server {
    owner: u32,
    control: UnixStream,
    process: Process,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fn random_key() -> Result<[u8; KEY_LEN]> {
    crate::os::random()
}

fn mac(key: &[u8; KEY_LEN], challenge: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"multiproc forkserver v1");
    mac.update(challenge);
    mac
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// Starts `job` as `who` through this process's forkserver (started now if
/// there is none).
pub(crate) fn start(job: Encoded, who: Identity) -> Result<Child> {
    let message = start::bootstrap_message(job, who)?;
    let bytes = postcard::to_allocvec(&message).map_err(|e| Error::codec("bootstrap", e))?;
    let me = crate::os::ident::process().id;
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0..2 {
        if server.as_ref().is_none_or(|s| s.owner != me) {
            *server = Some(launch(me)?);
        }
        let s = server.as_mut().expect("just started");
        match request(&mut s.control, &bytes, &message.fds) {
            Ok(child) => return Ok(child),
            // A server that died (killed, say) is replaced once.
            Err(_) if attempt == 0 && s.process.exitcode().is_some() => *server = None,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt returns")
}

/// Spawns a server and proves to it that we are its parent.
fn launch(owner: u32) -> Result<Server> {
    let (ours, theirs) = pair().map_err(io("socketpair"))?;
    let key = random_key()?;
    let process = Process::helper(server_main, (HandleOwned(theirs), key), "ForkServer")
        .daemon(true)
        .start_method(StartMethod::Spawn);
    process.start()?;
    let mut control = UnixStream::from(ours);
    control.set_read_timeout(Some(ANSWER_WITHIN)).map_err(io("forkserver socket"))?;
    let mut challenge = [0; KEY_LEN];
    control.read_exact(&mut challenge).map_err(io("forkserver handshake"))?;
    control
        .write_all(&mac(&key, &challenge).finalize().into_bytes())
        .map_err(io("forkserver handshake"))?;
    let mut accepted = [0; 1];
    control.read_exact(&mut accepted).map_err(io("forkserver handshake"))?;
    if accepted != [1] {
        return Err(Error::new(ErrorKind::Auth, "the forkserver refused the handshake"));
    }
    Ok(Server { owner, control, process })
}

fn request(control: &mut UnixStream, bytes: &[u8], fds: &[RawHandle]) -> Result<Child> {
    let mut header = [0; 8];
    header[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    control.write_all(&header).map_err(io("forkserver request"))?;
    if !fds.is_empty() {
        // SAFETY: the fds belong to the job's arguments, alive for this call.
        let borrowed: Vec<BorrowedHandle<'_>> =
            fds.iter().map(|&fd| unsafe { crate::os::borrow_raw(fd) }).collect();
        send_handles(control.as_handle(), &borrowed, 0).map_err(io("forkserver request"))?;
    }
    control.write_all(bytes).map_err(io("forkserver request"))?;
    let mut reply = [0; 8];
    control.read_exact(&mut reply).map_err(io("forkserver reply"))?;
    let errno = i32::from_le_bytes(reply[..4].try_into().expect("4 bytes"));
    let pid = u32::from_le_bytes(reply[4..].try_into().expect("4 bytes"));
    if errno != 0 {
        return Err(Error::io("the forkserver's fork", std::io::Error::from_raw_os_error(errno)));
    }
    let mut status = recv_handles(control.as_handle(), 1, 0).map_err(io("forkserver reply"))?;
    Ok(Child::remote(pid, status.pop().expect("recv_fds returns the count asked")))
}

/// The server: authenticates its parent, then forks a child per request
/// and reports each child's exit code, until its parent goes away.
fn server_main(control: HandleOwned, key: [u8; KEY_LEN]) -> i32 {
    let mut control = UnixStream::from(control.0);
    if authenticate(&mut control, &key).is_err() {
        return 2;
    }
    let mut children: Vec<(Child, UnixStream)> = Vec::new();
    loop {
        let polled = {
            let mut fds = vec![Watch::new(control.as_handle(), Interest::Read)];
            let pidfds: Vec<_> = children.iter().filter_map(|(c, _)| c.pidfd()).collect();
            let all_have_pidfds = pidfds.len() == children.len();
            fds.extend(pidfds.into_iter().map(|fd| Watch::new(fd, Interest::Read)));
            // Without pidfds (old kernels, other Unixes), look for exits
            // every 10 ms.
            let nap = Instant::now() + Duration::from_millis(10);
            let deadline = if all_have_pidfds { None } else { Some(nap) };
            poll_until(&mut fds, deadline).map(|_| fds[0].ready)
        };
        children.retain_mut(|(child, status)| match child.try_wait() {
            Ok(Some(code)) => {
                let _ = status.write_all(&code.to_le_bytes());
                false
            }
            _ => true,
        });
        match polled {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return 1,
        }
        match serve(&mut control, &mut children) {
            Ok(true) => {}
            // The parent closed its end (it exited) or broke the protocol.
            Ok(false) | Err(_) => return 0,
        }
    }
}

fn authenticate(control: &mut UnixStream, key: &[u8; KEY_LEN]) -> std::io::Result<()> {
    let challenge = random_key().map_err(std::io::Error::other)?;
    control.write_all(&challenge)?;
    control.set_read_timeout(Some(ANSWER_WITHIN))?;
    let mut answer = [0; 32];
    control.read_exact(&mut answer)?;
    control.set_read_timeout(None)?;
    let ok = mac(key, &challenge).verify_slice(&answer).is_ok();
    control.write_all(&[u8::from(ok)])?;
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::other("bad handshake"))
    }
}

/// Serves one request; `false` at end of stream.
fn serve(control: &mut UnixStream, children: &mut Vec<(Child, UnixStream)>) -> Result<bool> {
    let mut header = [0; 8];
    match control.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(Error::io("forkserver request", e)),
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let nfds = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
    let fds = if nfds == 0 {
        Vec::new()
    } else {
        recv_handles(control.as_handle(), nfds, 0).map_err(io("forkserver request"))?
    };
    if len > crate::MAX_MESSAGE {
        return Err(Error::new(ErrorKind::TooLarge, "forkserver request"));
    }
    let mut bytes = vec![0; len];
    control.read_exact(&mut bytes).map_err(io("forkserver request"))?;
    let reply = |control: &mut UnixStream, errno: i32, pid: u32| {
        let mut r = [0; 8];
        r[..4].copy_from_slice(&errno.to_le_bytes());
        r[4..].copy_from_slice(&pid.to_le_bytes());
        control.write_all(&r).map_err(io("forkserver reply"))
    };
    let Ok(message) = crate::handles::from_exact::<Bootstrap>(&bytes) else {
        reply(control, child::BAD_REQUEST, 0)?;
        return Ok(true);
    };
    // Resolved here, the target's reference is in the cache every child
    // forked from now on inherits (the child checks it all the same).
    start::warm_up(&message);
    let (status_theirs, status_ours) = pair().map_err(io("socketpair"))?;
    start::flush_std();
    // SAFETY: the server is single-threaded (module docs); the child ends
    // with `_exit` in `start::finish`.
    match unsafe { child::fork() } {
        Ok(Forked::Child) => {
            // Nothing of the server's stays open in the child (its copy of
            // the control socket would keep the parent from seeing the
            // server's end close if the server died).
            drop((status_theirs, status_ours));
            children.clear();
            // SAFETY: this branch never returns (`start::finish` `_exit`s),
            // so `control` is never used or dropped again.
            unsafe { child::close_forever(control.as_raw_handle()) };
            let code = match start::prepare(message, fds) {
                Ok(call) => catch_unwind(AssertUnwindSafe(call)).unwrap_or(1),
                Err(why) => {
                    eprintln!("multiproc: cannot start this child: {why}");
                    BOOTSTRAP_FAILED
                }
            };
            start::finish(code)
        }
        Ok(Forked::Parent(child)) => {
            drop(fds);
            reply(control, 0, child.pid())?;
            send_handles(control.as_handle(), &[status_theirs.as_handle()], 0)
                .map_err(io("forkserver reply"))?;
            children.push((child, UnixStream::from(status_ours)));
            Ok(true)
        }
        Err(e) => {
            reply(control, e.raw_os_error().unwrap_or(child::FAILED), 0)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parent that does not know the key is refused, and the server
    /// exits without serving it.
    #[test]
    fn the_server_refuses_a_parent_without_the_key() {
        let (ours, theirs) = pair().unwrap();
        let key = random_key().unwrap();
        let process = Process::new(server_main, (HandleOwned(theirs), key))
            .daemon(true)
            .start_method(StartMethod::Spawn);
        process.start().unwrap();
        let mut control = UnixStream::from(ours);
        control.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
        let mut challenge = [0; KEY_LEN];
        control.read_exact(&mut challenge).unwrap();
        let wrong = random_key().unwrap();
        control.write_all(&mac(&wrong, &challenge).finalize().into_bytes()).unwrap();
        let mut accepted = [9; 1];
        control.read_exact(&mut accepted).unwrap();
        assert_eq!(accepted, [0]);
        assert_eq!(process.join_timeout(ANSWER_WITHIN).unwrap(), Some(2));
    }
}
