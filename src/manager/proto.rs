//! What proxies and the manager's server say to each other: one
//! [`Request`] per message, one [`Reply`] back, postcard over a
//! [`Connection`](crate::Connection). Values travel as the bytes their
//! proxies encoded: the server never knows their types.

use crate::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::time::Duration;

/// The object types the server has built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Builtin {
    Dict,
    List,
    Namespace,
    Queue,
    Lock,
    RLock,
    Value,
    Event,
    Semaphore,
    Condition,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Kind {
    Builtin(Builtin),
    /// A type registered with the server, by its name.
    Registered(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// A new object (or, with a name, the one of that name, made if new);
    /// `arg` is a Queue's maxsize or a Semaphore's value.
    Create {
        kind: Kind,
        name: Option<String>,
        arg: u64,
    },
    Call {
        id: u64,
        op: Op,
    },
    /// One more / one fewer proxy holds the object.
    Incref(u64),
    Decref(u64),
    /// The object went to another process: it lives as long as the server.
    Pin(u64),
    Shutdown,
    /// Go on over this Pipe end (a serialized `Connection` with `fds`
    /// handles), sent over the socket once the server said yes: a client
    /// on the same machine trades the socket for shared memory.
    Upgrade {
        pipe: ByteBuf,
        fds: u32,
    },
}

/// A method of a server-side object. Keys, values and items are the
/// proxy's postcard bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // A dict or a namespace.
    Get(ByteBuf),
    Set(ByteBuf, ByteBuf),
    Remove(ByteBuf),
    Contains(ByteBuf),
    SetDefault(ByteBuf, ByteBuf),
    Update(Vec<(ByteBuf, ByteBuf)>),
    Items,
    // Any container.
    Len,
    Clear,
    // A list.
    At(i64),
    SetAt(i64, ByteBuf),
    Append(ByteBuf),
    Extend(Vec<ByteBuf>),
    Insert(i64, ByteBuf),
    Pop(Option<i64>),
    Reverse,
    All,
    // A queue.
    Put(ByteBuf, Option<Duration>),
    Take(Option<Duration>),
    TaskDone,
    Join(Option<Duration>),
    // A lock, a semaphore, a condition.
    Acquire(Option<Duration>),
    Release,
    Value,
    // An event (and a condition's wait).
    SetFlag,
    ClearFlag,
    IsSet,
    Wait(Option<Duration>),
    Notify(u32),
    NotifyAll,
    /// A method of a registered type.
    Method(String, ByteBuf),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Unit,
    Bool(bool),
    Count(u64),
    Blob(ByteBuf),
    Maybe(Option<ByteBuf>),
    Blobs(Vec<ByteBuf>),
    Pairs(Vec<(ByteBuf, ByteBuf)>),
    Fail(Failure),
}

/// An error the server reports, rebuilt as an [`Error`] by the proxy.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Failure {
    kind: u8,
    message: String,
}

const KINDS: [ErrorKind; 11] = [
    ErrorKind::InvalidArgument,
    ErrorKind::Timeout,
    ErrorKind::Empty,
    ErrorKind::Full,
    ErrorKind::NotOwner,
    ErrorKind::Codec,
    ErrorKind::Corrupt,
    ErrorKind::Unsupported,
    ErrorKind::Overflow,
    ErrorKind::TooLarge,
    ErrorKind::TaskPanicked,
];

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let kind = KINDS.iter().position(|&k| k == e.kind()).unwrap_or(0) as u8;
        Failure { kind, message: e.to_string() }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        let kind = KINDS.get(f.kind as usize).copied().unwrap_or(ErrorKind::InvalidArgument);
        Error::new(kind, format!("manager: {}", f.message))
    }
}
