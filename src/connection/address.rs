//! [`Address`]: where a listener listens, and where default Unix socket
//! paths live.
//!
//! Default paths ([`Address::arbitrary_unix`]) are made in a private
//! directory of this process (mode 0700, so no other user can reach a
//! socket in it whatever the umask), as Python's are in its `mkdtemp`
//! directory. The process that made the directory removes it when it exits
//! normally (the main process from an exit handler, a child when it
//! finishes); forked children share their parent's while it exists.

use crate::os::fs::create_private_dir;
use crate::os::net::{is_stale, LocalListener};
use crate::os::random;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a [`Listener`](super::Listener) listens and a [`Client`](super::Client) connects: a TCP address
/// or a Unix socket's path (Python's `AF_INET` tuple and `AF_UNIX` string).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A TCP address (Python's `AF_INET`/`AF_INET6` family).
    Tcp(SocketAddr),
    /// A Unix socket path (Python's `AF_UNIX` family).
    Unix(PathBuf),
}

impl Address {
    /// A TCP address, resolving a host name (`"localhost:6000"`).
    pub fn tcp(address: impl ToSocketAddrs) -> Result<Address> {
        let mut all = address.to_socket_addrs().map_err(|e| Error::io("resolving", e))?;
        all.next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::invalid("the host name resolved to no address"))
    }

    /// A Unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::Unix(path.into())
    }

    /// A fresh Unix socket path in this process's private directory, as
    /// Python's `arbitrary_address('AF_UNIX')`: the directory (mode 0700,
    /// in the temporary directory) is made on first use and removed, with
    /// whatever is left in it, when this process exits normally.
    ///
    /// On Windows, a fresh named pipe (`\\.\pipe\multiproc-...`), as
    /// Python's `arbitrary_address('AF_PIPE')` there.
    pub fn arbitrary_unix() -> Result<Address> {
        let name = format!("listener-{}", hex(&random::<8>()?));
        Ok(Address::Unix(match crate::os::net::LOCAL_PREFIX {
            Some(prefix) => PathBuf::from(format!("{prefix}{name}")),
            None => private_dir()?.join(name + ".sock"),
        }))
    }

    /// Whether it is a TCP address.
    pub fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp(_))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => a.fmt(f),
            Address::Unix(p) => p.display().fmt(f),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::Unix(p.to_path_buf())
    }
}

/// `"127.0.0.1:6000"` or `"[::1]:6000"` is TCP; anything else is a Unix
/// socket path (use [`Address::tcp`] to resolve a host name).
impl From<&str> for Address {
    fn from(s: &str) -> Address {
        s.parse().map_or_else(|_| Address::Unix(s.into()), Address::Tcp)
    }
}

/// As `&str`.
impl From<String> for Address {
    fn from(s: String) -> Address {
        Address::from(s.as_str())
    }
}

impl From<&String> for Address {
    fn from(s: &String) -> Address {
        Address::from(s.as_str())
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Address {
        a.clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This process's private directory, and the process that made it.
static PRIVATE: Mutex<Option<(PathBuf, u32)>> = Mutex::new(None);

/// The private directory for default socket paths, made now if needed.
fn private_dir() -> Result<PathBuf> {
    let mut dir = PRIVATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, _)) = &*dir {
        // A forked child uses its parent's while it is there.
        if path.is_dir() {
            return Ok(path.clone());
        }
    }
    let path = std::env::temp_dir().join(format!("multiproc-{}", hex(&random::<8>()?)));
    create_private_dir(&path)
        .map_err(|e| Error::io("making a private directory for socket files", e))?;
    crate::process::at_exit(remove_private_dir);
    *dir = Some((path.clone(), std::process::id()));
    Ok(path)
}

/// Removes the private directory and what is in it, if this process made
/// it (called as this process exits).
pub(crate) fn remove_private_dir() {
    let dir = PRIVATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, owner)) = &*dir {
        if *owner == std::process::id() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Binds a Unix listener at `path`. A socket file left there by a listener
/// that is gone (its process was killed) is replaced; one that a live
/// listener answers on is not (`AddrInUse`), nor is any other file.
pub(crate) fn bind_unix(path: &Path) -> io::Result<LocalListener> {
    match LocalListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale(path) => {
            std::fs::remove_file(path)?;
            LocalListener::bind(path)
        }
        bound => bound,
    }
}
