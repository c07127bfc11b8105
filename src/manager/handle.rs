//! A handle on one object in a server: its id and endpoint, reference
//! counted in the server, and what a proxy sends to another process.

use super::*;
use crate::connection::Address;
use crate::handles::{self};
use crate::process::current_process;
use crate::Result;
use proto::{Op, Reply, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A proxy's reference to one server-side object.
pub(super) struct Handle {
    pub(super) endpoint: Endpoint,
    pub(super) id: u64,
    /// The bound on each call (plus, for a blocking method, its own wait).
    pub(super) timeout: Option<Duration>,
    /// The process in which this handle holds a counted reference.
    pub(super) owner: Option<u32>,
    /// The server was told this object went to another process.
    pub(super) pinned: AtomicBool,
}

impl Handle {
    pub(super) fn new(endpoint: Endpoint, id: u64, timeout: Option<Duration>) -> Handle {
        let owner = Some(pid());
        Handle { endpoint, id, timeout, owner, pinned: AtomicBool::new(false) }
    }

    /// Calls `op`; `wait` is how long the server may block in it.
    pub(super) fn call(&self, op: Op, wait: Option<Duration>) -> Result<Reply> {
        let timeout = match (self.timeout, wait) {
            (Some(t), Some(w)) => Some(t.saturating_add(w)),
            (Some(_), None) if blocks(&op) => None,
            (t, _) => t,
        };
        self.call_within(op, timeout)
    }

    /// Calls `op` bounded by `timeout` alone.
    pub(super) fn call_within(&self, op: Op, timeout: Option<Duration>) -> Result<Reply> {
        self.endpoint.request(&Request::Call { id: self.id, op }, timeout)
    }

    pub(super) fn unit(&self, op: Op) -> Result<()> {
        match self.call(op, None)? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn boolean(&self, op: Op, wait: Option<Duration>) -> Result<bool> {
        match self.call(op, wait)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn count(&self, op: Op) -> Result<usize> {
        match self.call(op, None)? {
            Reply::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn value<T: DeserializeOwned>(&self, op: Op, wait: Option<Duration>) -> Result<T> {
        blob(self.call(op, wait)?)
    }

    pub(super) fn maybe<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>> {
        match self.call(op, None)? {
            Reply::Maybe(b) => b.map(|b| decode(&b)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    pub(super) fn values<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>> {
        match self.call(op, None)? {
            Reply::Blobs(all) => all.iter().map(|b| decode(b)).collect(),
            r => Err(unexpected(r)),
        }
    }
}

/// Another reference to the same object. A pinned object needs no count;
/// otherwise the server counts one more, and if it cannot be told (it is
/// gone), the clone holds no count, and its calls fail as the original's.
impl Clone for Handle {
    fn clone(&self) -> Handle {
        let pinned = self.pinned.load(Ordering::Relaxed);
        let counted =
            !pinned && self.endpoint.request(&Request::Incref(self.id), self.timeout).is_ok();
        Handle {
            endpoint: self.endpoint.clone(),
            id: self.id,
            timeout: self.timeout,
            owner: counted.then(pid),
            pinned: AtomicBool::new(pinned),
        }
    }
}

/// A blocking method with no wait of its own blocks as long as it must: a
/// proxy's call bound does not cut it short.
pub(super) fn blocks(op: &Op) -> bool {
    matches!(
        op,
        Op::Acquire(None) | Op::Wait(None) | Op::Take(None) | Op::Put(_, None) | Op::Join(None)
    )
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.owner == Some(pid()) && !self.pinned.load(Ordering::Relaxed) {
            let _ = self.endpoint.request(&Request::Decref(self.id), Some(RELEASE_TIMEOUT));
        }
    }
}

/// A proxy as it crosses to another process. The authkey goes along only
/// to a child or through a Pipe or Queue (this machine); through a socket,
/// the receiver uses its own process's authkey, as Python's proxies do.
#[derive(Serialize, Deserialize)]
pub(super) struct HandleWire {
    pub(super) address: Address,
    pub(super) authkey: Option<Vec<u8>>,
    pub(super) id: u64,
    pub(super) timeout: Option<Duration>,
}

impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !self.pinned.load(Ordering::Relaxed) {
            self.endpoint
                .request(&Request::Pin(self.id), self.timeout)
                .map_err(serde::ser::Error::custom)?;
            self.pinned.store(true, Ordering::Relaxed);
        }
        let authkey = (!handles::is_remote()).then(|| self.endpoint.authkey.to_vec());
        HandleWire {
            address: self.endpoint.address.clone(),
            authkey,
            id: self.id,
            timeout: self.timeout,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = HandleWire::deserialize(d)?;
        let authkey = match wire.authkey {
            Some(key) => key,
            None => current_process().authkey().map_err(handles::refuse)?,
        };
        let endpoint = Endpoint { address: wire.address, authkey: authkey.into() };
        Ok(Handle {
            endpoint,
            id: wire.id,
            timeout: wire.timeout,
            owner: None,
            pinned: AtomicBool::new(true),
        })
    }
}
