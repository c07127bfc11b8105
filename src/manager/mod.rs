//! Python's `multiprocessing.Manager`: a server process that holds
//! objects (a dict, a list, a namespace, a value, a queue, a lock, an
//! RLock, an event, a semaphore, a condition, or a type you register), and
//! *proxies* that call their methods over a [`Connection`](crate::Connection).
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
mod client;
mod handle;
mod proto;
mod proxies;
mod server;

pub use client::set_shared_memory;
use client::*;
use handle::*;
pub use proxies::*;
pub(crate) use server::fuzzing;
pub use server::{decode_args, encode_reply, Served};

use crate::connection::{Address, Listener};
use crate::handles::HandleOwned;
use crate::process::code_ref::CodeRef;
use crate::process::{current_process, parent_process, Process};
use crate::{Error, ErrorKind, Result, StartMethod};
use proto::{Builtin, Kind, Reply, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use server::{Factory, FactoryKind, Server};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long [`Manager::shutdown`] waits for the server to exit before it
/// kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
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

    /// A new dict holding `pairs` (Python's `manager.dict(pairs)`).
    pub fn dict_from<K, V>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let d = self.dict()?;
        d.update(&pairs.into_iter().collect::<Vec<_>>())?;
        Ok(d)
    }

    /// A new list holding `items` (Python's `manager.list(items)`).
    pub fn list_from<T>(&self, items: impl IntoIterator<Item = T>) -> Result<ListProxy<T>>
    where
        T: Serialize + DeserializeOwned,
    {
        let l = self.list()?;
        l.extend(&items.into_iter().collect::<Vec<_>>())?;
        Ok(l)
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
        if let Some((process, _)) = self.process.take().filter(|(_, owner)| *owner == pid()) {
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
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref().map(|(p, _)| p)
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
