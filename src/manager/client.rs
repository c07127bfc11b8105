//! The client's transport: where a server is, this thread's connection
//! to it (moved to a shared-memory Pipe once connected, where it can be),
//! requests and their replies.

use super::*;
use crate::connection::{decode_plain, encode_plain, Address, Client, Connection};
use crate::handles::{self};
use crate::{Error, ErrorKind, Result};
use proto::{Reply, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The bound on a proxy's drop (its release message to the server).
pub(super) const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a server is and how to get in.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) address: Address,
    pub(super) authkey: Arc<[u8]>,
}

/// A thread's connections, by server and key, and the process they
/// belong to (a forked child must not use its parent's).
pub(super) struct Connections {
    pub(super) pid: u32,
    pub(super) open: Vec<(Endpoint, Rc<Connection>)>,
}

thread_local! {
    static CONNECTIONS: RefCell<Connections> =
        const { RefCell::new(Connections { pid: 0, open: Vec::new() }) };
}

/// Whether clients of a server on a Unix socket move to shared memory.
pub(super) static UPGRADE: AtomicBool = AtomicBool::new(true);

/// Bytes of ring per direction of an upgraded connection.
pub(super) const UPGRADE_CAPACITY: usize = 64 << 10;

/// Whether this process's proxies trade a Unix-socket connection for a
/// [`Pipe`](crate::Pipe) in shared memory once connected (the default:
/// a call then costs about a Pipe's round trip rather than a socket's).
/// Off, every call goes over the socket. Connections already made keep
/// their way.
pub fn set_shared_memory(enabled: bool) {
    UPGRADE.store(enabled, Ordering::Relaxed);
}

/// Moves a fresh Unix-socket connection to a Pipe: the server says yes,
/// then takes the Pipe's other end through the socket (SCM_RIGHTS).
pub(super) fn upgrade(socket: Connection, timeout: Option<Duration>) -> Result<Connection> {
    let (mine, theirs) = crate::Pipe::with_capacity(UPGRADE_CAPACITY, true)?;
    let (wire, fds) = handles::collect(|| postcard::to_allocvec(&theirs));
    let wire = wire.map_err(|e| Error::codec("serializing a pipe", e))?;
    let request = Request::Upgrade { pipe: ByteBuf::from(wire), fds: fds.len() as u32 };
    let bytes = encode_plain(&request)?;
    let reply = match timeout {
        Some(t) => {
            socket.send_bytes_timeout(&bytes, t)?;
            socket.recv_bytes_timeout(t)?
        }
        None => {
            socket.send_bytes(&bytes)?;
            socket.recv_bytes()?
        }
    };
    match decode_plain::<Reply>(&reply)? {
        Reply::Unit => {}
        Reply::Fail(failure) => return Err(failure.into()),
        r => return Err(unexpected(r)),
    }
    let fd = socket.stream_socket().ok_or_else(|| Error::invalid("not a socket"))?;
    crate::channel::send_handles(fd, &fds, 0)?;
    drop(theirs);
    Ok(mine)
}

/// This process's id (cached; a forked child gets its own).
pub(super) fn pid() -> u32 {
    crate::os::ident::process().id
}

impl Endpoint {
    /// This thread's connection to the server, made if needed. (A thread
    /// whose locals are being torn down gets one for this call alone.)
    pub(super) fn connection(&self, timeout: Option<Duration>) -> Result<Rc<Connection>> {
        let cached = CONNECTIONS.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.pid != pid() {
                *c = Connections { pid: pid(), open: Vec::new() };
            }
            c.open.iter().find(|(e, _)| e == self).map(|(_, conn)| Rc::clone(conn))
        });
        if let Ok(Some(conn)) = cached {
            return Ok(conn);
        }
        let client = Client::builder(&self.address).authkey(&self.authkey);
        let mut conn = match timeout {
            Some(t) => client.timeout(t),
            None => client,
        }
        .connect()?;
        if matches!(self.address, Address::Unix(_)) && UPGRADE.load(Ordering::Relaxed) {
            conn = upgrade(conn, timeout)?;
        }
        let conn = Rc::new(conn);
        let _ =
            CONNECTIONS.try_with(|c| c.borrow_mut().open.push((self.clone(), Rc::clone(&conn))));
        Ok(conn)
    }

    /// Forgets this thread's connection to the server (it failed mid-call,
    /// or a timeout left a reply on its way).
    pub(super) fn forget(&self) {
        let _ = CONNECTIONS.try_with(|c| c.borrow_mut().open.retain(|(e, _)| e != self));
    }

    /// One request and its reply, within `timeout` if there is one.
    pub(super) fn request(&self, request: &Request, timeout: Option<Duration>) -> Result<Reply> {
        let bytes = encode_plain(request)?;
        let start = std::time::Instant::now();
        let conn = self.connection(timeout)?;
        let left = |t: Duration| t.saturating_sub(start.elapsed());
        let exchange = || -> Result<Reply> {
            match timeout {
                Some(t) => {
                    conn.send_bytes_timeout(&bytes, left(t))?;
                    decode_plain(&conn.recv_bytes_timeout(left(t))?)
                }
                None => {
                    conn.send_bytes(&bytes)?;
                    decode_plain(&conn.recv_bytes()?)
                }
            }
        };
        match exchange() {
            Ok(Reply::Fail(failure)) => Err(failure.into()),
            Ok(reply) => Ok(reply),
            Err(e) => {
                self.forget();
                Err(e)
            }
        }
    }
}

pub(super) fn unexpected(reply: Reply) -> Error {
    Error::new(ErrorKind::Corrupt, format!("manager: unexpected reply {reply:?}"))
}

/// The one value a method returned.
pub(super) fn blob<T: DeserializeOwned>(reply: Reply) -> Result<T> {
    match reply {
        Reply::Blob(b) => decode(&b),
        r => Err(unexpected(r)),
    }
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_plain(bytes)
}

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<ByteBuf> {
    encode_plain(value).map(ByteBuf::from)
}
