//! Python's `multiprocessing.Manager`: a server process that holds
//! objects (a dict, a list, a namespace, a value, a queue, a lock, an
//! RLock, an event, a semaphore, a condition, or a type you register), and
//! *proxies* that call their methods over a [`Connection`].
//!
//! Proxies are serde: they pass to children as arguments, and to
//! processes started elsewhere, which connect with the manager's address
//! and authkey. Every call returns `Disconnected` if the server is gone;
//! [`with_timeout`](DictProxy::with_timeout) bounds every call of a proxy,
//! and blocking methods have `_timeout` forms.
//!
//! ```
//! let manager = multiproc::Manager::start()?;
//! let d = manager.dict::<String, i32>()?;
//! d.insert(&"one".into(), &1)?;
//! assert_eq!(d.get(&"one".into())?, Some(1));
//! let l = manager.list::<u8>()?;
//! l.extend(&[3, 2, 1])?;
//! l.reverse()?;
//! assert_eq!(l.to_vec()?, [1, 2, 3]);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! **Values.** The server keeps each value as the bytes its proxy encoded
//! (postcard), and a dict compares keys by those bytes: keys that are equal
//! must encode equally (true of integers, strings, tuples and derived
//! types; not of `-0.0` and `0.0`, or of maps with different orders).
//!
//! **Lifetime.** An object lives while proxies to it do, in the process
//! that made it; once a proxy went to another process (or the object has a
//! name), it lives until the server shuts down. A connection that ends —
//! its thread or process ended — releases the locks it held.
//!
//! **Connections.** Each thread keeps one connection per server and reuses
//! it, as Python does; a blocked call (a lock's acquire) holds only its own
//! thread's.
mod proto;
mod server;

pub(crate) use server::fuzzing;
pub use server::{decode_args, encode_reply, Served};

use crate::connection::{decode_plain, encode_plain, Address, Client, Connection, Listener};
use crate::handles::{self, HandleOwned};
use crate::process::code_ref::CodeRef;
use crate::process::{current_process, parent_process, Process};
use crate::{Error, ErrorKind, Result, StartMethod};
use proto::{Builtin, Kind, Op, Reply, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use server::{Factory, FactoryKind, Server};
use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long [`Manager::shutdown`] waits for the server to exit before it
/// kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The bound on a proxy's drop (its release message to the server).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a server is and how to get in.
#[derive(Clone, PartialEq, Eq)]
struct Endpoint {
    address: Address,
    authkey: Arc<[u8]>,
}

/// A thread's connections, by server and key, and the process they
/// belong to (a forked child must not use its parent's).
struct Connections {
    pid: u32,
    open: Vec<(Endpoint, Rc<Connection>)>,
}

thread_local! {
    static CONNECTIONS: RefCell<Connections> =
        const { RefCell::new(Connections { pid: 0, open: Vec::new() }) };
}

/// Whether clients of a server on a Unix socket move to shared memory.
static UPGRADE: AtomicBool = AtomicBool::new(true);

/// Bytes of ring per direction of an upgraded connection.
const UPGRADE_CAPACITY: usize = 64 << 10;

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
fn upgrade(socket: Connection, timeout: Option<Duration>) -> Result<Connection> {
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
fn pid() -> u32 {
    crate::os::ident::process().id
}

impl Endpoint {
    /// This thread's connection to the server, made if needed. (A thread
    /// whose locals are being torn down gets one for this call alone.)
    fn connection(&self, timeout: Option<Duration>) -> Result<Rc<Connection>> {
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
    fn forget(&self) {
        let _ = CONNECTIONS.try_with(|c| c.borrow_mut().open.retain(|(e, _)| e != self));
    }

    /// One request and its reply, within `timeout` if there is one.
    fn request(&self, request: &Request, timeout: Option<Duration>) -> Result<Reply> {
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

fn unexpected(reply: Reply) -> Error {
    Error::new(ErrorKind::Corrupt, format!("manager: unexpected reply {reply:?}"))
}

/// The one value a method returned.
fn blob<T: DeserializeOwned>(reply: Reply) -> Result<T> {
    match reply {
        Reply::Blob(b) => decode(&b),
        r => Err(unexpected(r)),
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_plain(bytes)
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<ByteBuf> {
    encode_plain(value).map(ByteBuf::from)
}

/// A proxy's reference to one server-side object.
struct Handle {
    endpoint: Endpoint,
    id: u64,
    /// The bound on each call (plus, for a blocking method, its own wait).
    timeout: Option<Duration>,
    /// The process in which this handle holds a counted reference.
    owner: Option<u32>,
    /// The server was told this object went to another process.
    pinned: AtomicBool,
}

impl Handle {
    fn new(endpoint: Endpoint, id: u64, timeout: Option<Duration>) -> Handle {
        let owner = Some(pid());
        Handle { endpoint, id, timeout, owner, pinned: AtomicBool::new(false) }
    }

    /// Calls `op`; `wait` is how long the server may block in it.
    fn call(&self, op: Op, wait: Option<Duration>) -> Result<Reply> {
        let timeout = match (self.timeout, wait) {
            (Some(t), Some(w)) => Some(t.saturating_add(w)),
            (Some(_), None) if blocks(&op) => None,
            (t, _) => t,
        };
        self.call_within(op, timeout)
    }

    /// Calls `op` bounded by `timeout` alone.
    fn call_within(&self, op: Op, timeout: Option<Duration>) -> Result<Reply> {
        self.endpoint.request(&Request::Call { id: self.id, op }, timeout)
    }

    fn unit(&self, op: Op) -> Result<()> {
        match self.call(op, None)? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    fn boolean(&self, op: Op, wait: Option<Duration>) -> Result<bool> {
        match self.call(op, wait)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    fn count(&self, op: Op) -> Result<usize> {
        match self.call(op, None)? {
            Reply::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }

    fn value<T: DeserializeOwned>(&self, op: Op, wait: Option<Duration>) -> Result<T> {
        blob(self.call(op, wait)?)
    }

    fn maybe<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>> {
        match self.call(op, None)? {
            Reply::Maybe(b) => b.map(|b| decode(&b)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    fn values<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>> {
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
fn blocks(op: &Op) -> bool {
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
struct HandleWire {
    address: Address,
    authkey: Option<Vec<u8>>,
    id: u64,
    timeout: Option<Duration>,
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

/// What every proxy type shares: how it is made from a handle, and which
/// server-side type it names.
pub trait Proxy: Sized + sealed::Sealed {
    #[doc(hidden)]
    const KIND: &'static str;
}

mod sealed {
    // Sealed: the trait is public, its methods name crate types.
    #[allow(private_interfaces)]
    pub trait Sealed {
        fn kind() -> super::Kind;
        fn from_handle(handle: super::Handle) -> Self;
    }
}

macro_rules! proxy_type {
    ($(#[$doc:meta])* $name:ident [$($param:ident),*] = $builtin:ident) => {
        $(#[$doc])*
        pub struct $name<$($param),*> {
            handle: Handle,
            _types: PhantomData<fn() -> ($($param,)*)>,
        }

        // The sealed trait names crate types; no one outside can call it.
        #[allow(private_interfaces)]
        impl<$($param),*> sealed::Sealed for $name<$($param),*> {
            fn kind() -> Kind {
                Kind::Builtin(Builtin::$builtin)
            }
            fn from_handle(handle: Handle) -> Self {
                $name { handle, _types: PhantomData }
            }
        }

        impl<$($param),*> Proxy for $name<$($param),*> {
            const KIND: &'static str = stringify!($builtin);
        }

        impl<$($param),*> $name<$($param),*> {
            /// Bounds each call of this proxy by `timeout`; a call that
            /// runs out returns `Timeout` (and its connection is dropped,
            /// as its reply may still come). A `_timeout` method's own
            /// wait comes on top; a blocking method without one (`get`,
            /// `acquire`, `wait`) still waits as long as it must.
            pub fn with_timeout(mut self, timeout: Duration) -> Self {
                self.handle.timeout = Some(timeout);
                self
            }

        }

        /// Another proxy to the same object.
        impl<$($param),*> Clone for $name<$($param),*> {
            fn clone(&self) -> Self {
                $name { handle: self.handle.clone(), _types: PhantomData }
            }
        }

        impl<$($param),*> Serialize for $name<$($param),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(s)
            }
        }

        impl<'de, $($param),*> Deserialize<'de> for $name<$($param),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Handle::deserialize(d).map(|handle| $name { handle, _types: PhantomData })
            }
        }

        impl<$($param),*> std::fmt::Debug for $name<$($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("address", &self.handle.endpoint.address)
                    .field("id", &self.handle.id)
                    .finish()
            }
        }
    };
}

proxy_type!(
    /// A dict in the manager (Python's `Manager().dict()`), keys and values
    /// of your serde types, in insertion order.
    DictProxy[K, V] = Dict
);
proxy_type!(
    /// A list in the manager (Python's `Manager().list()`).
    ListProxy[T] = List
);
proxy_type!(
    /// Named values of any serde types (Python's `Manager().Namespace()`).
    NamespaceProxy[] = Namespace
);
proxy_type!(
    /// A FIFO queue in the manager (Python's `Manager().Queue()`, with
    /// `task_done` and `join`).
    QueueProxy[T] = Queue
);
proxy_type!(
    /// A lock in the manager (Python's `Manager().Lock()`): any holder of
    /// a proxy may release it.
    LockProxy[] = Lock
);
proxy_type!(
    /// A reentrant lock in the manager (Python's `Manager().RLock()`): the
    /// thread that acquired it (its connection) may acquire it again, and
    /// only it may release it.
    RLockProxy[] = RLock
);
proxy_type!(
    /// One value in the manager (Python's `Manager().Value(typecode,
    /// value)`), of any serde type.
    ValueProxy[T] = Value
);
proxy_type!(
    /// An event in the manager (Python's `Manager().Event()`).
    EventProxy[] = Event
);
proxy_type!(
    /// A semaphore in the manager (Python's `Manager().Semaphore()`).
    SemaphoreProxy[] = Semaphore
);
proxy_type!(
    /// A condition in the manager (Python's `Manager().Condition()`). Its
    /// lock is held by the thread that acquired it (by its connection).
    ConditionProxy[] = Condition
);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d[key]`, or `None`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.handle.maybe(Op::Get(encode(key)?))
    }

    /// `d[key] = value`.
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.handle.unit(Op::Set(encode(key)?, encode(value)?))
    }

    /// `d.pop(key, None)`.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.handle.maybe(Op::Remove(encode(key)?))
    }

    /// Whether `key` is in the dict (Python's `key in d`).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.handle.boolean(Op::Contains(encode(key)?), None)
    }

    /// `d.setdefault(key, value)`: the value there, after putting `value`
    /// if there was none.
    pub fn get_or_insert(&self, key: &K, value: &V) -> Result<V> {
        self.handle.value(Op::SetDefault(encode(key)?, encode(value)?), None)
    }

    /// `d.update(pairs)`: inserts them all in one call.
    pub fn update(&self, pairs: &[(K, V)]) -> Result<()> {
        let pairs =
            pairs.iter().map(|(k, v)| Ok((encode(k)?, encode(v)?))).collect::<Result<_>>()?;
        self.handle.unit(Op::Update(pairs))
    }

    /// How many entries it holds.
    pub fn len(&self) -> Result<usize> {
        self.handle.count(Op::Len)
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.handle.call(Op::Items, None)? {
            Reply::Pairs(pairs) => {
                pairs.iter().map(|(k, v)| Ok((decode(k)?, decode(v)?))).collect()
            }
            r => Err(unexpected(r)),
        }
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }

    /// The values, in insertion order.
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(self.items()?.into_iter().map(|(_, v)| v).collect())
    }

    /// Removes everything.
    pub fn clear(&self) -> Result<()> {
        self.handle.unit(Op::Clear)
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l[index]`; a negative index counts from the end.
    pub fn get(&self, index: i64) -> Result<T> {
        self.handle.value(Op::At(index), None)
    }

    /// `l[index] = value`.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.handle.unit(Op::SetAt(index, encode(value)?))
    }

    /// Adds `value` at the end.
    pub fn append(&self, value: &T) -> Result<()> {
        self.handle.unit(Op::Append(encode(value)?))
    }

    /// Adds `values` at the end, in order.
    pub fn extend(&self, values: &[T]) -> Result<()> {
        let values = values.iter().map(encode).collect::<Result<_>>()?;
        self.handle.unit(Op::Extend(values))
    }

    /// `l.insert(index, value)` (an index out of range clamps, as Python's).
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        self.handle.unit(Op::Insert(index, encode(value)?))
    }

    /// `l.pop()`: the last item.
    pub fn pop(&self) -> Result<T> {
        self.handle.value(Op::Pop(None), None)
    }

    /// `l.pop(index)`.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.handle.value(Op::Pop(Some(index)), None)
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<()> {
        self.handle.unit(Op::Reverse)
    }

    /// How many entries it holds.
    pub fn len(&self) -> Result<usize> {
        self.handle.count(Op::Len)
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the list (Python's `l[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.handle.values(Op::All)
    }

    /// Removes everything.
    pub fn clear(&self) -> Result<()> {
        self.handle.unit(Op::Clear)
    }
}

impl NamespaceProxy {
    /// `ns.name`, or `None` if it has no such attribute.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.handle.maybe(Op::Get(encode(name)?))
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.handle.unit(Op::Set(encode(name)?, encode(value)?))
    }

    /// `del ns.name`; whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool> {
        match self.handle.call(Op::Remove(encode(name)?), None)? {
            Reply::Maybe(old) => Ok(old.is_some()),
            r => Err(unexpected(r)),
        }
    }

    /// The attributes' names, in the order they were first set.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.handle.call(Op::Items, None)? {
            Reply::Pairs(pairs) => pairs.iter().map(|(k, _)| decode(k)).collect(),
            r => Err(unexpected(r)),
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_wait(item, None)
    }

    /// Waits at most `timeout` for room in a bounded queue; `Full` if none.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_wait(item, Some(timeout))
    }

    /// Puts `item` if there is room now; `Full` if not.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put_wait(item, Some(Duration::ZERO))
    }

    fn put_wait(&self, item: &T, wait: Option<Duration>) -> Result<()> {
        match self.handle.call(Op::Put(encode(item)?, wait), wait)? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Takes the next item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.handle.value(Op::Take(None), None)
    }

    /// Waits at most `timeout` for an item; `Empty` if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.handle.value(Op::Take(Some(timeout)), Some(timeout))
    }

    /// Takes the next item if there is one now; `Empty` if not.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_timeout(Duration::ZERO)
    }

    /// How many items it holds now.
    pub fn qsize(&self) -> Result<usize> {
        self.handle.count(Op::Len)
    }

    /// Whether it holds no item now.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// One item taken earlier is done with (for [`join`](Self::join)).
    pub fn task_done(&self) -> Result<()> {
        self.handle.unit(Op::TaskDone)
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.handle.boolean(Op::Join(None), None).map(drop)
    }

    /// [`join`](Self::join) waiting at most `timeout`; whether all were done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.boolean(Op::Join(Some(timeout)), Some(timeout))
    }
}

/// The acquire family shared by the lock, semaphore and condition proxies.
macro_rules! acquire_methods {
    ($name:ident) => {
        impl $name {
            /// Acquires, waiting as long as it takes.
            pub fn acquire(&self) -> Result<()> {
                self.handle.boolean(Op::Acquire(None), None).map(drop)
            }

            /// Waits at most `timeout`; `Timeout` if it was not acquired.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
                if self.handle.boolean(Op::Acquire(Some(timeout)), Some(timeout))? {
                    Ok(())
                } else {
                    Err(Error::timeout())
                }
            }

            /// Acquires if that is possible now; `Timeout` if not.
            pub fn try_acquire(&self) -> Result<()> {
                self.acquire_timeout(Duration::ZERO)
            }

            /// Releases.
            pub fn release(&self) -> Result<()> {
                self.handle.unit(Op::Release)
            }
        }
    };
}

acquire_methods!(LockProxy);
acquire_methods!(RLockProxy);

/// `lock()`, for the proxies whose acquire takes a lock.
macro_rules! guard_method {
    ($($name:ident),*) => {$(
        impl $name {
            /// Acquires (a condition: its lock), and releases when the
            /// guard drops.
            pub fn lock(&self) -> Result<ProxyGuard<'_>> {
                self.acquire()?;
                Ok(ProxyGuard { handle: &self.handle })
            }
        }
    )*};
}

guard_method!(LockProxy, RLockProxy, ConditionProxy);
acquire_methods!(SemaphoreProxy);
acquire_methods!(ConditionProxy);

impl LockProxy {
    /// Whether someone holds the lock now.
    pub fn is_locked(&self) -> Result<bool> {
        self.handle.boolean(Op::IsSet, None)
    }
}

impl ConditionProxy {
    /// Releases the lock, waits for a notify, takes the lock again.
    pub fn wait(&self) -> Result<()> {
        self.handle.boolean(Op::Wait(None), None).map(drop)
    }

    /// [`wait`](Self::wait) at most `timeout`; whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.boolean(Op::Wait(Some(timeout)), Some(timeout))
    }

    /// Wakes up to `n` waiters (the caller holds the lock).
    pub fn notify(&self, n: u32) -> Result<()> {
        self.handle.unit(Op::Notify(n))
    }

    /// Wakes every waiter (the caller holds the lock).
    pub fn notify_all(&self) -> Result<()> {
        self.handle.unit(Op::NotifyAll)
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`. (`InvalidArgument` only for a [`named`](Manager::named)
    /// value nobody has set yet.)
    pub fn get(&self) -> Result<T> {
        self.handle
            .maybe(Op::Get(encode(&())?))?
            .ok_or_else(|| Error::invalid("this manager value was never set"))
    }

    /// `v.value = value`.
    pub fn set(&self, value: &T) -> Result<()> {
        self.handle.unit(Op::Set(encode(&())?, encode(value)?))
    }
}

impl SemaphoreProxy {
    /// The permits it holds now.
    pub fn get_value(&self) -> Result<usize> {
        self.handle.count(Op::Value)
    }
}

impl EventProxy {
    /// Sets the event: every waiter wakes.
    pub fn set(&self) -> Result<()> {
        self.handle.unit(Op::SetFlag)
    }

    /// Clears the event: later waits block until the next `set`.
    pub fn clear(&self) -> Result<()> {
        self.handle.unit(Op::ClearFlag)
    }

    /// Whether the event is set.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.boolean(Op::IsSet, None)
    }

    /// Waits until the event is set.
    pub fn wait(&self) -> Result<()> {
        self.handle.boolean(Op::Wait(None), None).map(drop)
    }

    /// Waits at most `timeout`; whether the event is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.boolean(Op::Wait(Some(timeout)), Some(timeout))
    }
}

/// Releases a proxy's lock when dropped.
pub struct ProxyGuard<'a> {
    handle: &'a Handle,
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.handle.unit(Op::Release);
    }
}

/// A proxy to an object of a type registered with the manager
/// ([`ManagerBuilder::register`]); its methods are called by name.
pub struct ObjectProxy {
    handle: Handle,
}

impl ObjectProxy {
    /// Calls `method` with `args`; its result.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        self.handle.value(Op::Method(method.into(), encode(args)?), None)
    }

    /// [`call`](Self::call) giving up after `timeout`.
    pub fn call_timeout<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R> {
        let op = Op::Method(method.into(), encode(args)?);
        blob(self.handle.call_within(op, Some(timeout))?)
    }

    /// A proxy whose calls give up after `timeout` (none by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.handle.timeout = Some(timeout);
        self
    }
}

/// Another proxy to the same object.
impl Clone for ObjectProxy {
    fn clone(&self) -> Self {
        ObjectProxy { handle: self.handle.clone() }
    }
}

impl std::fmt::Debug for ObjectProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectProxy")
            .field("address", &self.handle.endpoint.address)
            .field("id", &self.handle.id)
            .finish()
    }
}

impl Serialize for ObjectProxy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ObjectProxy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Handle::deserialize(d).map(|handle| ObjectProxy { handle })
    }
}

/// A manager: a handle to a server, started here ([`Manager::start`]) or
/// running elsewhere ([`Manager::connect`]), that makes objects in it.
pub struct Manager {
    endpoint: Endpoint,
    timeout: Option<Duration>,
    /// The server process, when this manager started it, and the process
    /// that did (a forked copy of this handle must not shut it down).
    process: Option<(Process, u32)>,
}

/// Settings for a manager's server: its types, address, key, start method.
#[derive(Default)]
pub struct ManagerBuilder {
    registry: Vec<(String, CodeRef)>,
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    method: Option<StartMethod>,
}

impl ManagerBuilder {
    /// Lets proxies create objects of type `T` under `typeid`
    /// ([`Manager::create`]), as Python's `BaseManager.register`.
    pub fn register<T: Served + Default>(mut self, typeid: &str) -> Self {
        self.registry.push((typeid.to_string(), server::factory_ref::<T>()));
        self
    }

    /// Where the server listens (by default a fresh Unix socket).
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key clients must hold (by default this process's authkey).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// How the server process starts (by default the global start method).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the server process and connects to it.
    pub fn start(self) -> Result<Manager> {
        let authkey = match self.authkey {
            Some(key) => key,
            None => current_process().authkey()?,
        };
        let address = match self.address {
            Some(address) => address,
            None => Address::arbitrary_unix()?,
        };
        let listener = Listener::bind(address, &authkey)?;
        let (fd, address) = listener.into_parts()?;
        let args = ServerArgs {
            listener: HandleOwned(fd),
            address: address.clone(),
            authkey: authkey.clone(),
            registry: self.registry,
        };
        let mut process = Process::new(server_main, (args,)).name("SyncManager").daemon(true);
        if let Some(method) = self.method {
            process = process.start_method(method).allow_threads(true);
        }
        process.start()?;
        let endpoint = Endpoint { address, authkey: authkey.into() };
        Ok(Manager { endpoint, timeout: None, process: Some((process, pid())) })
    }
}

/// What the server process needs: the bound socket, and the registered
/// types' factories (checked references: see `code_ref.rs`).
#[derive(Serialize, Deserialize)]
struct ServerArgs {
    listener: HandleOwned,
    address: Address,
    authkey: Vec<u8>,
    registry: Vec<(String, CodeRef)>,
}

fn server_main(args: ServerArgs) -> Result<()> {
    let registry = args
        .registry
        .into_iter()
        .map(|(name, make)| {
            let make = make.resolve::<FactoryKind>().map_err(|why| {
                Error::new(ErrorKind::Corrupt, format!("registered type {name:?}: {why}"))
            })?;
            Ok((name, make))
        })
        .collect::<Result<HashMap<String, Factory>>>()?;
    let listener = Listener::from_parts(args.listener.0, args.address, Some(args.authkey))?;
    let parent = parent_process();
    // The server outlives neither a shutdown nor the process that started it.
    Server::new(registry).serve(&listener, || parent.as_ref().is_none_or(|p| p.is_alive()));
    Ok(())
}

impl Manager {
    /// Starts a manager server process with the default settings (Python's
    /// `multiprocessing.Manager()`).
    pub fn start() -> Result<Manager> {
        ManagerBuilder::default().start()
    }

    /// A manager to configure (address, authkey, registered types) before it starts.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// A manager for a server running elsewhere ([`ManagerServer`]), at
    /// `address` with `authkey`; checks that it answers.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        Manager::connect_with(address.into(), authkey, None)
    }

    /// [`connect`](Self::connect) giving up after `timeout` (an address
    /// that does not answer, a server that stalls in the handshake).
    pub fn connect_timeout(
        address: impl Into<Address>,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Manager> {
        Manager::connect_with(address.into(), authkey, Some(timeout))
    }

    fn connect_with(
        address: Address,
        authkey: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Manager> {
        let endpoint = Endpoint { address, authkey: authkey.into() };
        endpoint.connection(timeout)?;
        Ok(Manager { endpoint, timeout: None, process: None })
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.endpoint.address
    }

    /// Bounds every call of the proxies made from now on (each proxy's
    /// own [`with_timeout`](DictProxy::with_timeout) overrides it).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// A new object in the server (or the one called `name`, which is
    /// pinned), and this process's handle to it.
    fn create_handle(&self, kind: Kind, name: Option<&str>, arg: u64) -> Result<Handle> {
        let request = Request::Create { kind, name: name.map(str::to_string), arg };
        match self.endpoint.request(&request, self.timeout)? {
            Reply::Count(id) => {
                let handle = Handle::new(self.endpoint.clone(), id, self.timeout);
                if name.is_some() {
                    handle.pinned.store(true, Ordering::Relaxed);
                }
                Ok(handle)
            }
            r => Err(unexpected(r)),
        }
    }

    fn make<P: Proxy>(&self, kind: Kind, name: Option<&str>, arg: u64) -> Result<P> {
        self.create_handle(kind, name, arg).map(P::from_handle)
    }

    /// A new, empty dict in the server (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        self.make(Kind::Builtin(Builtin::Dict), None, 0)
    }

    /// A new, empty list in the server (Python's `manager.list()`).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        self.make(Kind::Builtin(Builtin::List), None, 0)
    }

    /// A new namespace in the server (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.make(Kind::Builtin(Builtin::Namespace), None, 0)
    }

    /// An unbounded queue.
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.make(Kind::Builtin(Builtin::Queue), None, 0)
    }

    /// A queue of at most `maxsize` items.
    pub fn bounded_queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        if maxsize == 0 {
            return Err(Error::invalid("a bounded queue holds at least one item"));
        }
        self.make(Kind::Builtin(Builtin::Queue), None, maxsize as u64)
    }

    /// A new lock in the server (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<LockProxy> {
        self.make(Kind::Builtin(Builtin::Lock), None, 0)
    }

    /// A new reentrant lock in the server (Python's `manager.RLock()`).
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.make(Kind::Builtin(Builtin::RLock), None, 0)
    }

    /// A value holding `value` (Python's `Manager().Value`).
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<ValueProxy<T>> {
        let proxy: ValueProxy<T> = self.make(Kind::Builtin(Builtin::Value), None, 0)?;
        proxy.set(value)?;
        Ok(proxy)
    }

    /// A new event in the server (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy> {
        self.make(Kind::Builtin(Builtin::Event), None, 0)
    }

    /// A new semaphore holding `value` permits in the server.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        self.make(Kind::Builtin(Builtin::Semaphore), None, u64::from(value))
    }

    /// A new condition (with its own lock) in the server.
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.make(Kind::Builtin(Builtin::Condition), None, 0)
    }

    /// The object called `name`, made (empty; a semaphore of 1, an
    /// unbounded queue) by the first to ask: how processes that share no
    /// ancestor find the same dict or queue. It lives until the server
    /// shuts down; asking for it as another kind is `InvalidArgument`.
    pub fn named<P: Proxy>(&self, name: &str) -> Result<P> {
        let arg = if P::KIND == "Semaphore" { 1 } else { 0 };
        self.make(P::kind(), Some(name), arg)
    }

    /// A new object of the type registered as `typeid`.
    pub fn create(&self, typeid: &str) -> Result<ObjectProxy> {
        let handle = self.create_handle(Kind::Registered(typeid.into()), None, 0)?;
        Ok(ObjectProxy { handle })
    }

    /// Stops the server (every proxy's later call returns `Disconnected`)
    /// and, if this manager started it, waits for its process to exit.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let asked = self.endpoint.request(&Request::Shutdown, Some(SHUTDOWN_GRACE));
        if let Some((mut process, _)) = self.process.take().filter(|(_, owner)| *owner == pid()) {
            if process.join_timeout(SHUTDOWN_GRACE)?.is_none() {
                process.kill()?;
                process.join_timeout(SHUTDOWN_GRACE)?;
            }
            // The server removes its socket file as it exits; one that was
            // killed (here, or by anyone) leaves it: the file is ours.
            if let Address::Unix(path) = &self.endpoint.address {
                let _ = std::fs::remove_file(path);
            }
            return Ok(());
        }
        asked.map(drop)
    }

    /// The server process, when this manager started it (to check on it,
    /// or to kill it in a test).
    pub fn process(&mut self) -> Option<&mut Process> {
        self.process.as_mut().map(|(p, _)| p)
    }
}

impl Drop for Manager {
    /// A manager that started its server shuts it down (in the process
    /// that started it, not in a forked copy).
    fn drop(&mut self) {
        if self.process.as_ref().is_some_and(|(_, owner)| *owner == pid()) {
            let _ = self.stop();
        }
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("address", &self.endpoint.address).finish_non_exhaustive()
    }
}

/// A manager's server run in this process, on an address of your choice:
/// Python's `BaseManager(address, authkey).get_server().serve_forever()`.
/// Processes anywhere reach it with [`Manager::connect`].
pub struct ManagerServer {
    listener: Listener,
    registry: HashMap<String, Factory>,
}

impl std::fmt::Debug for ManagerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerServer").field("address", self.address()).finish_non_exhaustive()
    }
}

impl ManagerServer {
    /// Listens at `address` (a TCP address to be reached from other
    /// machines); clients must hold `authkey`.
    pub fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<ManagerServer> {
        Ok(ManagerServer::from_listener(Listener::bind(address, authkey)?))
    }

    /// Serves on a listener of your making (a [`Listener::builder`] with
    /// its own settings: handshake timeout, message limit, the opt-out of
    /// a key on TCP).
    pub fn from_listener(listener: Listener) -> ManagerServer {
        ManagerServer { listener, registry: HashMap::new() }
    }

    /// As [`ManagerBuilder::register`].
    pub fn register<T: Served + Default>(mut self, typeid: &str) -> Self {
        self.registry.insert(typeid.to_string(), server::factory::<T>);
        self
    }

    /// Where it listens (a TCP port 0 replaced by the port given).
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// Serves until a client asks for shutdown ([`Manager::shutdown`]).
    /// Peers that connect are authenticated side by side without a thread
    /// each (see [`Listener`]); each client that passes gets its thread.
    pub fn serve_forever(self) {
        Server::new(self.registry).serve(&self.listener, || true);
    }
}
