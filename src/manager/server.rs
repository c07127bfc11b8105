//! The manager's server: the objects, and a thread per client connection
//! that runs its requests one at a time.
//!
//! A blocking method (a lock's acquire, a queue's get) blocks that
//! connection's thread, as in Python; it wakes every [`SLICE`] to see
//! whether its client is still there, so a client that died or gave up does
//! not leave a thread waiting forever. When a connection ends, the locks
//! and conditions it held are released: a proxy's process that dies holding
//! a lock does not wedge the others.

use super::proto::{Builtin, Failure, Kind, Op, Reply, Request};
use crate::connection::{decode_plain, encode_plain, Connection, Listener};
use crate::process::code_ref::{self, CodeRef, Record};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use indexmap::IndexMap;
use serde_bytes::ByteBuf;
use std::collections::{HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often a blocked method looks at its client, and the accept loop at
/// its stop flag.
const SLICE: Duration = Duration::from_millis(50);

/// A server-side object of a type registered by the user: Python's
/// `BaseManager.register(typeid, callable)`. Proxies call its methods by
/// name with postcard-encoded arguments ([`ObjectProxy::call`]); decode
/// them with [`decode_args`] and encode the result with [`encode_reply`].
///
/// [`ObjectProxy::call`]: super::ObjectProxy::call
///
/// ```
/// use multiproc::manager::{decode_args, encode_reply, Served};
///
/// #[derive(Default)]
/// struct Counter(i64);
///
/// impl Served for Counter {
///     fn call(&mut self, method: &str, args: &[u8]) -> multiproc::Result<Vec<u8>> {
///         match method {
///             "add" => {
///                 self.0 += decode_args::<i64>(args)?;
///                 encode_reply(&self.0)
///             }
///             "get" => encode_reply(&self.0),
///             _ => Err(multiproc::Error::new(multiproc::ErrorKind::InvalidArgument, "no such method")),
///         }
///     }
/// }
/// ```
pub trait Served: Send + 'static {
    /// Runs `method` with its encoded `args`; the encoded result.
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>>;
}

/// A method's arguments, as the proxy encoded them (untrusted bytes).
pub fn decode_args<T: serde::de::DeserializeOwned>(args: &[u8]) -> Result<T> {
    decode_plain(args)
}

/// A method's result, encoded for the proxy.
pub fn encode_reply<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    encode_plain(value)
}

/// Makes a registered type's object.
pub(crate) type Factory = fn() -> Box<dyn Served>;

pub(crate) fn factory<T: Served + Default>() -> Box<dyn Served> {
    Box::<T>::default()
}

/// The kind of code a spawned server is given for each registered type.
pub(crate) enum FactoryKind {}

impl code_ref::Kind for FactoryKind {
    const ID: u64 = code_ref::MANAGER_FACTORY;
    type Code = Factory;
}

struct FactoryOf<T>(PhantomData<T>);

impl<T: Served + Default> FactoryOf<T> {
    const RECORD: Record<Factory> =
        code_ref::record::<FactoryKind>(code_ref::fingerprint::<T>, factory::<T>);
}

/// How a server process started by this one names `T`'s factory.
pub(crate) fn factory_ref<T: Served + Default>() -> CodeRef {
    CodeRef::of(&FactoryOf::<T>::RECORD)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(message: &'static str) -> Error {
    Error::invalid(message)
}

/// State that a method may wait on.
#[derive(Default)]
struct Blocking<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T> Blocking<T> {
    /// Runs `attempt` on the state until it returns `Some`, waiting for
    /// changes in between; `None` once `timeout` passed. Fails if the
    /// client goes away meanwhile.
    fn wait_for<R>(
        &self,
        cx: &Client,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut T) -> Option<R>,
    ) -> Result<Option<R>> {
        let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
        let mut state = lock(&self.state);
        loop {
            if let Some(r) = attempt(&mut state) {
                return Ok(Some(r));
            }
            if deadline.passed() {
                return Ok(None);
            }
            let slice = deadline.left().map_or(SLICE, |left| left.min(SLICE));
            state = self.changed.wait_timeout(state, slice).unwrap_or_else(|e| e.into_inner()).0;
            if !cx.here() {
                return Err(Error::new(ErrorKind::Disconnected, "the client went away"));
            }
        }
    }

    fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut lock(&self.state));
        self.changed.notify_all();
        r
    }
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Vec<u8>>,
    /// 0: unbounded.
    max: usize,
    unfinished: u64,
}

/// A reentrant lock: the connection holding it, and how deep.
#[derive(Default)]
struct Reentrant {
    holder: Option<u64>,
    depth: u32,
}

#[derive(Default)]
struct ConditionState {
    holder: Option<u64>,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
}

enum Object {
    Map(Mutex<IndexMap<Vec<u8>, Vec<u8>>>),
    List(Mutex<Vec<Vec<u8>>>),
    Queue(Blocking<QueueState>),
    /// The connection holding it.
    Lock(Blocking<Option<u64>>),
    RLock(Blocking<Reentrant>),
    Event(Blocking<bool>),
    Semaphore(Blocking<u64>),
    Condition(Blocking<ConditionState>),
    Registered(Mutex<Box<dyn Served>>),
}

struct Entry {
    object: Arc<Object>,
    /// What it was made as, to refuse a name asked for as another kind.
    kind: String,
    refs: u64,
    /// Went to another process, or has a name: lives as long as the server.
    pinned: bool,
}

#[derive(Default)]
struct Objects {
    next: u64,
    by_id: HashMap<u64, Entry>,
    by_name: HashMap<String, u64>,
}

pub(crate) struct Server {
    objects: Mutex<Objects>,
    registry: HashMap<String, Factory>,
    stop: AtomicBool,
    next_client: AtomicU64,
}

/// The connection a request came on.
struct Client {
    id: u64,
    conn: Connection,
    /// Locks and conditions it acquired, to release if it goes.
    held: Vec<Arc<Object>>,
}

/// A connection that ends, however it ends (its client hung up, sent
/// garbage, or its thread panicked), releases what it held: no other
/// client waits forever on a lock whose holder is gone.
impl Drop for Client {
    fn drop(&mut self) {
        for object in self.held.drain(..) {
            match &*object {
                Object::Lock(l) => l.update(|h| {
                    if *h == Some(self.id) {
                        *h = None;
                    }
                }),
                Object::RLock(r) => r.update(|s| {
                    if s.holder == Some(self.id) {
                        *s = Reentrant::default();
                    }
                }),
                Object::Condition(c) => c.update(|s| {
                    if s.holder == Some(self.id) {
                        s.holder = None;
                    }
                }),
                _ => {}
            }
        }
    }
}

impl Client {
    /// Records that this connection took `object`'s lock.
    fn hold(&mut self, object: &Arc<Object>) {
        if !self.held.iter().any(|o| Arc::ptr_eq(o, object)) {
            self.held.push(Arc::clone(object));
        }
    }

    /// Whether the client is still waiting for its reply (one request at a
    /// time: anything readable now is a hang-up).
    fn here(&self) -> bool {
        !self.conn.poll()
    }
}

impl Server {
    pub(crate) fn new(registry: HashMap<String, Factory>) -> Arc<Server> {
        Arc::new(Server {
            objects: Mutex::default(),
            registry,
            stop: AtomicBool::new(false),
            next_client: AtomicU64::new(1),
        })
    }

    /// Accepts clients until a shutdown request (or `keep_going` says
    /// stop), each on its own thread once it passed the handshake. The
    /// listener makes the handshakes side by side without a thread each, so
    /// unauthenticated peers cost neither a thread nor anyone's time (the
    /// listener caps how many are under way).
    pub(crate) fn serve(self: &Arc<Self>, listener: &Listener, keep_going: impl Fn() -> bool) {
        while !self.stop.load(Ordering::Relaxed) && keep_going() {
            match listener.accept_timeout(SLICE) {
                Ok(conn) => {
                    let server = Arc::clone(self);
                    let spawned = std::thread::Builder::new()
                        .name("manager-client".into())
                        .spawn(move || server.run_client(conn));
                    if spawned.is_err() {
                        std::thread::sleep(SLICE);
                    }
                }
                // A peer with a wrong key was turned away: next.
                Err(e) if e.is_timeout() || e.kind() == ErrorKind::Auth => {}
                // Out of descriptors, say: let some go before trying again.
                Err(_) => std::thread::sleep(SLICE),
            }
        }
    }

    fn run_client(&self, conn: Connection) {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut client = Client { id, conn, held: vec![] };
        while let Ok(bytes) = client.conn.recv_bytes() {
            let sent = match self.respond(&bytes, &mut client) {
                Some(Ok(reply)) => client.conn.send_bytes(&reply).is_ok(),
                Some(Err(())) => false,
                None => true,
            };
            if !sent {
                break;
            }
        }
    }

    /// The encoded reply to one request's `bytes` from `client` (whatever
    /// they are: they come from an authenticated peer, not a trusted one);
    /// `None` when the request needs no reply, `Err` when the connection
    /// must end.
    fn respond(&self, bytes: &[u8], client: &mut Client) -> Option<Result<Vec<u8>, ()>> {
        let reply = match decode_plain::<Request>(bytes) {
            Ok(Request::Upgrade { pipe, fds }) => {
                return match upgrade(&client.conn, &pipe, fds) {
                    Ok(pipe) => {
                        client.conn = pipe;
                        None
                    }
                    Err(_) => Some(Err(())),
                };
            }
            // A panic in a request (a registered type's method, say)
            // answers that request; the connection goes on.
            Ok(request) => catch_unwind(AssertUnwindSafe(|| self.handle(request, client)))
                .unwrap_or_else(|payload| Err(panicked(&*payload))),
            Err(e) => Err(e),
        };
        let reply = reply.unwrap_or_else(|e| Reply::Fail(Failure::from(e)));
        Some(encode_plain(&reply).map_err(drop))
    }

    fn handle(&self, request: Request, client: &mut Client) -> Result<Reply> {
        match request {
            Request::Create { kind, name, arg } => self.create(kind, name, arg),
            Request::Call { id, op } => {
                let object = self.object(id)?;
                call(&object, op, client)
            }
            Request::Incref(id) => self.refs(id, |e| e.refs += 1),
            Request::Decref(id) => {
                let mut objects = lock(&self.objects);
                let entry = objects.by_id.get_mut(&id).ok_or_else(|| no_object(id))?;
                entry.refs = entry.refs.saturating_sub(1);
                if entry.refs == 0 && !entry.pinned {
                    // Dropped outside the table's lock: a registered
                    // type's drop may take its time.
                    let gone = objects.by_id.remove(&id);
                    drop(objects);
                    drop(gone);
                }
                Ok(Reply::Unit)
            }
            Request::Pin(id) => self.refs(id, |e| e.pinned = true),
            Request::Upgrade { .. } => Err(invalid("upgrade is answered by the client loop")),
            Request::Shutdown => {
                self.stop.store(true, Ordering::Relaxed);
                Ok(Reply::Unit)
            }
        }
    }

    fn refs(&self, id: u64, f: impl FnOnce(&mut Entry)) -> Result<Reply> {
        let mut objects = lock(&self.objects);
        f(objects.by_id.get_mut(&id).ok_or_else(|| no_object(id))?);
        Ok(Reply::Unit)
    }

    fn object(&self, id: u64) -> Result<Arc<Object>> {
        let objects = lock(&self.objects);
        objects.by_id.get(&id).map(|e| Arc::clone(&e.object)).ok_or_else(|| no_object(id))
    }

    fn create(&self, kind: Kind, name: Option<String>, arg: u64) -> Result<Reply> {
        let label = match &kind {
            Kind::Builtin(b) => format!("{b:?}"),
            Kind::Registered(t) => t.clone(),
        };
        if let Some(name) = &name {
            let mut objects = lock(&self.objects);
            if let Some(&id) = objects.by_name.get(name) {
                let entry = objects.by_id.get_mut(&id).ok_or_else(|| no_object(id))?;
                if entry.kind != label {
                    return Err(Error::invalid(format!(
                        "{name:?} is a {}, not a {label}",
                        entry.kind
                    )));
                }
                entry.refs += 1;
                return Ok(Reply::Count(id));
            }
        }
        let object = match kind {
            Kind::Builtin(b) => builtin(b, arg)?,
            Kind::Registered(typeid) => {
                let make = self.registry.get(&typeid).ok_or_else(|| {
                    Error::invalid(format!("no type {typeid:?} is registered with this manager"))
                })?;
                Object::Registered(Mutex::new(make()))
            }
        };
        let mut objects = lock(&self.objects);
        if let Some(&id) = name.as_ref().and_then(|n| objects.by_name.get(n)) {
            // Made meanwhile by another client: use that one.
            objects.by_id.get_mut(&id).ok_or_else(|| no_object(id))?.refs += 1;
            return Ok(Reply::Count(id));
        }
        objects.next += 1;
        let id = objects.next;
        let entry =
            Entry { object: Arc::new(object), kind: label, refs: 1, pinned: name.is_some() };
        objects.by_id.insert(id, entry);
        if let Some(name) = name {
            objects.by_name.insert(name, id);
        }
        Ok(Reply::Count(id))
    }
}

/// Says yes to an upgrade, then takes the Pipe end the client sends
/// beside the stream (it sends nothing else until it has the yes, so
/// nothing is read ahead of the handles).
fn upgrade(socket: &Connection, pipe: &[u8], fds: u32) -> Result<Connection> {
    let socket_fd = socket.stream_socket().ok_or_else(|| invalid("already upgraded"))?;
    if fds > 16 {
        return Err(invalid("an upgrade carries a few handles at most"));
    }
    socket.send_bytes(&encode_plain(&Reply::Unit)?)?;
    let fds = crate::os::transfer::recv_handles(socket_fd, fds as usize, 0)
        .map_err(|e| Error::new(ErrorKind::Corrupt, "upgrade handles missing").with_source(e))?;
    crate::handles::decode(fds, pipe, "deserializing an upgrade")
}

/// The error a request that panicked answers with.
fn panicked(payload: &(dyn std::any::Any + Send)) -> Error {
    let message = crate::error::panic_message(payload);
    Error::new(ErrorKind::TaskPanicked, format!("the request panicked in the server: {message}"))
}

fn no_object(id: u64) -> Error {
    Error::invalid(format!("the manager has no object {id} (it was released)"))
}

fn builtin(b: Builtin, arg: u64) -> Result<Object> {
    Ok(match b {
        Builtin::Dict | Builtin::Namespace | Builtin::Value => Object::Map(Mutex::default()),
        Builtin::List => Object::List(Mutex::default()),
        Builtin::Queue => {
            let max = usize::try_from(arg).map_err(|_| invalid("queue size too large"))?;
            Object::Queue(Blocking {
                state: Mutex::new(QueueState { max, ..QueueState::default() }),
                changed: Condvar::new(),
            })
        }
        Builtin::Lock => Object::Lock(Blocking::default()),
        Builtin::RLock => Object::RLock(Blocking::default()),
        Builtin::Event => Object::Event(Blocking::default()),
        Builtin::Semaphore => {
            Object::Semaphore(Blocking { state: Mutex::new(arg), changed: Condvar::new() })
        }
        Builtin::Condition => Object::Condition(Blocking::default()),
    })
}

fn blob(bytes: Vec<u8>) -> ByteBuf {
    ByteBuf::from(bytes)
}

/// A Python list index (negative counts from the end) in `0..len`.
fn index(i: i64, len: usize) -> Result<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    usize::try_from(i).ok().filter(|&i| i < len).ok_or_else(|| invalid("list index out of range"))
}

fn not_for(op: &Op) -> Error {
    Error::invalid(format!("this object has no method {op:?}"))
}

fn call(object: &Arc<Object>, op: Op, client: &mut Client) -> Result<Reply> {
    match &**object {
        Object::Map(map) => map_op(map, op),
        Object::List(list) => list_op(list, op),
        Object::Queue(q) => queue_op(q, op, client),
        Object::Lock(l) => lock_op(object, l, op, client),
        Object::RLock(r) => rlock_op(object, r, op, client),
        Object::Semaphore(s) => semaphore_op(s, op, client),
        Object::Event(e) => event_op(e, op, client),
        Object::Condition(c) => condition(object, c, op, client),
        Object::Registered(served) => match op {
            Op::Method(name, args) => Ok(Reply::Blob(blob(lock(served).call(&name, &args)?))),
            op => Err(not_for(&op)),
        },
    }
}

/// A dict's operations.
fn map_op(map: &Mutex<IndexMap<Vec<u8>, Vec<u8>>>, op: Op) -> Result<Reply> {
    let mut map = lock(map);
    Ok(match op {
        Op::Get(k) => Reply::Maybe(map.get(k.as_slice()).cloned().map(blob)),
        Op::Set(k, v) => {
            map.insert(k.into_vec(), v.into_vec());
            Reply::Unit
        }
        Op::Remove(k) => Reply::Maybe(map.shift_remove(k.as_slice()).map(blob)),
        Op::Contains(k) => Reply::Bool(map.contains_key(k.as_slice())),
        Op::SetDefault(k, v) => {
            Reply::Blob(blob(map.entry(k.into_vec()).or_insert(v.into_vec()).clone()))
        }
        Op::Update(pairs) => {
            map.extend(pairs.into_iter().map(|(k, v)| (k.into_vec(), v.into_vec())));
            Reply::Unit
        }
        Op::Items => {
            Reply::Pairs(map.iter().map(|(k, v)| (blob(k.clone()), blob(v.clone()))).collect())
        }
        Op::Len => Reply::Count(map.len() as u64),
        Op::Clear => {
            map.clear();
            Reply::Unit
        }
        op => return Err(not_for(&op)),
    })
}

/// A list's operations.
fn list_op(list: &Mutex<Vec<Vec<u8>>>, op: Op) -> Result<Reply> {
    let mut list = lock(list);
    let len = list.len();
    Ok(match op {
        Op::At(i) => Reply::Blob(blob(list[index(i, len)?].clone())),
        Op::SetAt(i, v) => {
            list[index(i, len)?] = v.into_vec();
            Reply::Unit
        }
        Op::Append(v) => {
            list.push(v.into_vec());
            Reply::Unit
        }
        Op::Extend(vs) => {
            list.extend(vs.into_iter().map(ByteBuf::into_vec));
            Reply::Unit
        }
        Op::Insert(i, v) => {
            // As Python's insert: out-of-range indices clamp.
            let at = if i < 0 {
                (i + len as i64).max(0) as usize
            } else {
                (i as u64).min(len as u64) as usize
            };
            list.insert(at, v.into_vec());
            Reply::Unit
        }
        Op::Pop(i) => {
            if len == 0 {
                return Err(invalid("pop from an empty list"));
            }
            let at = index(i.unwrap_or(-1), len)?;
            Reply::Blob(blob(list.remove(at)))
        }
        Op::Reverse => {
            list.reverse();
            Reply::Unit
        }
        Op::All => Reply::Blobs(list.iter().cloned().map(blob).collect()),
        Op::Len => Reply::Count(len as u64),
        Op::Clear => {
            list.clear();
            Reply::Unit
        }
        op => return Err(not_for(&op)),
    })
}

/// A queue's operations (puts and takes wait, as long as the client is there).
fn queue_op(q: &Blocking<QueueState>, op: Op, client: &Client) -> Result<Reply> {
    match op {
        Op::Put(v, timeout) => {
            let mut item = Some(v.into_vec());
            let put = q.wait_for(client, timeout, |s| {
                (s.max == 0 || s.items.len() < s.max).then(|| {
                    s.items.extend(item.take());
                    s.unfinished += 1;
                })
            })?;
            q.changed.notify_all();
            put.map(|()| Reply::Unit).ok_or_else(|| Error::new(ErrorKind::Full, "queue is full"))
        }
        Op::Take(timeout) => {
            let got = q.wait_for(client, timeout, |s| s.items.pop_front())?;
            q.changed.notify_all();
            got.map(|v| Reply::Blob(blob(v)))
                .ok_or_else(|| Error::new(ErrorKind::Empty, "queue is empty"))
        }
        Op::Len => Ok(Reply::Count(lock(&q.state).items.len() as u64)),
        Op::TaskDone => q.update(|s| {
            if s.unfinished == 0 {
                return Err(invalid("task_done() called more times than items were put"));
            }
            s.unfinished -= 1;
            Ok(Reply::Unit)
        }),
        Op::Join(timeout) => {
            let done = q.wait_for(client, timeout, |s| (s.unfinished == 0).then_some(()))?;
            Ok(Reply::Bool(done.is_some()))
        }
        op => Err(not_for(&op)),
    }
}

/// A lock's operations; the client holding it is noted, so its going away releases it.
fn lock_op(
    object: &Arc<Object>,
    l: &Blocking<Option<u64>>,
    op: Op,
    client: &mut Client,
) -> Result<Reply> {
    match op {
        Op::Acquire(timeout) => {
            let me = client.id;
            let got = l.wait_for(client, timeout, |h| h.is_none().then(|| *h = Some(me)))?;
            if got.is_some() {
                client.hold(object);
            }
            Ok(Reply::Bool(got.is_some()))
        }
        Op::Release => l.update(|h| match h.take() {
            Some(_) => Ok(Reply::Unit),
            None => Err(invalid("release of an unlocked lock")),
        }),
        Op::IsSet => Ok(Reply::Bool(lock(&l.state).is_some())),
        op => Err(not_for(&op)),
    }
}

/// A reentrant lock's operations, owned by a client connection.
fn rlock_op(
    object: &Arc<Object>,
    r: &Blocking<Reentrant>,
    op: Op,
    client: &mut Client,
) -> Result<Reply> {
    match op {
        Op::Acquire(timeout) => {
            let me = client.id;
            let got = r.wait_for(client, timeout, |s| match s.holder {
                None => {
                    *s = Reentrant { holder: Some(me), depth: 1 };
                    Some(())
                }
                Some(h) if h == me => s.depth.checked_add(1).map(|d| s.depth = d),
                Some(_) => None,
            })?;
            if got.is_some() {
                client.hold(object);
            }
            Ok(Reply::Bool(got.is_some()))
        }
        Op::Release => r.update(|s| {
            if s.holder != Some(client.id) {
                return Err(Error::new(
                    ErrorKind::NotOwner,
                    "this connection does not hold the RLock",
                ));
            }
            s.depth -= 1;
            if s.depth == 0 {
                s.holder = None;
            }
            Ok(Reply::Unit)
        }),
        op => Err(not_for(&op)),
    }
}

/// A semaphore's operations.
fn semaphore_op(s: &Blocking<u64>, op: Op, client: &Client) -> Result<Reply> {
    match op {
        Op::Acquire(timeout) => {
            let got = s.wait_for(client, timeout, |n| (*n > 0).then(|| *n -= 1))?;
            Ok(Reply::Bool(got.is_some()))
        }
        Op::Release => {
            s.update(|n| *n = n.saturating_add(1));
            Ok(Reply::Unit)
        }
        Op::Value => Ok(Reply::Count(*lock(&s.state))),
        op => Err(not_for(&op)),
    }
}

/// An event's operations.
fn event_op(e: &Blocking<bool>, op: Op, client: &Client) -> Result<Reply> {
    match op {
        Op::SetFlag => Ok(e.update(|f| {
            *f = true;
            Reply::Unit
        })),
        Op::ClearFlag => Ok(e.update(|f| {
            *f = false;
            Reply::Unit
        })),
        Op::IsSet => Ok(Reply::Bool(*lock(&e.state))),
        Op::Wait(timeout) => {
            let set = e.wait_for(client, timeout, |f| f.then_some(()))?;
            Ok(Reply::Bool(set.is_some()))
        }
        op => Err(not_for(&op)),
    }
}

fn condition(
    object: &Arc<Object>,
    c: &Blocking<ConditionState>,
    op: Op,
    client: &mut Client,
) -> Result<Reply> {
    let me = client.id;
    let owned = |s: &ConditionState| {
        if s.holder == Some(me) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotOwner,
                "this connection does not hold the condition's lock",
            ))
        }
    };
    match op {
        Op::Acquire(timeout) => {
            let got =
                c.wait_for(client, timeout, |s| s.holder.is_none().then(|| s.holder = Some(me)))?;
            if got.is_some() {
                client.hold(object);
            }
            Ok(Reply::Bool(got.is_some()))
        }
        Op::Release => c.update(|s| {
            owned(s)?;
            s.holder = None;
            Ok(Reply::Unit)
        }),
        Op::Wait(timeout) => {
            let ticket = c.update(|s| {
                owned(s)?;
                s.holder = None;
                s.next_ticket += 1;
                s.waiting.push_back(s.next_ticket);
                Ok::<_, Error>(s.next_ticket)
            })?;
            let woken = c.wait_for(client, timeout, |s| s.notified.remove(&ticket).then_some(()));
            let notified = c.update(|s| {
                s.waiting.retain(|&t| t != ticket);
                // Notified just as the wait timed out: it counts.
                woken.as_ref().is_ok_and(Option::is_some) || s.notified.remove(&ticket)
            });
            woken?;
            c.wait_for(client, None, |s| s.holder.is_none().then(|| s.holder = Some(me)))?;
            Ok(Reply::Bool(notified))
        }
        Op::Notify(n) => c.update(|s| {
            owned(s)?;
            for _ in 0..n {
                let Some(t) = s.waiting.pop_front() else { break };
                s.notified.insert(t);
            }
            Ok(Reply::Unit)
        }),
        Op::NotifyAll => c.update(|s| {
            owned(s)?;
            let all: Vec<u64> = s.waiting.drain(..).collect();
            s.notified.extend(all);
            Ok(Reply::Unit)
        }),
        op => Err(not_for(&op)),
    }
}

/// The server's request handling fed with arbitrary bytes, as an
/// authenticated but hostile client would send them: for the fuzz target.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// A registered type for requests to reach. (Its methods do not panic:
    /// the fuzzing engine treats every panic as a crash, even a caught one;
    /// the tests cover a panicking method.)
    #[derive(Default)]
    struct Echo(Vec<u8>);

    impl Served for Echo {
        fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
            match method {
                "set" => {
                    self.0 = args.to_vec();
                    encode_reply(&())
                }
                _ => encode_reply(&self.0),
            }
        }
    }

    /// One well-formed request of every kind, with every method: where the
    /// fuzz target starts from.
    pub fn examples() -> Vec<Vec<u8>> {
        let b = |v: &[u8]| ByteBuf::from(v.to_vec());
        let t = Some(Duration::ZERO);
        let ops = vec![
            Op::Get(b(b"k")),
            Op::Set(b(b"k"), b(b"v")),
            Op::Remove(b(b"k")),
            Op::Contains(b(b"k")),
            Op::SetDefault(b(b"k"), b(b"v")),
            Op::Update(vec![(b(b"k"), b(b"v"))]),
            Op::Items,
            Op::Len,
            Op::Clear,
            Op::At(-1),
            Op::SetAt(0, b(b"v")),
            Op::Append(b(b"v")),
            Op::Extend(vec![b(b"v")]),
            Op::Insert(-5, b(b"v")),
            Op::Pop(None),
            Op::Reverse,
            Op::All,
            Op::Put(b(b"v"), t),
            Op::Take(t),
            Op::TaskDone,
            Op::Join(t),
            Op::Acquire(t),
            Op::Release,
            Op::Value,
            Op::SetFlag,
            Op::ClearFlag,
            Op::IsSet,
            Op::Wait(t),
            Op::Notify(1),
            Op::NotifyAll,
            Op::Method("set".into(), b(b"v")),
            Op::Method("get".into(), b(b"")),
        ];
        let builtins = [
            Builtin::Dict,
            Builtin::List,
            Builtin::Namespace,
            Builtin::Queue,
            Builtin::Lock,
            Builtin::RLock,
            Builtin::Value,
            Builtin::Event,
            Builtin::Semaphore,
            Builtin::Condition,
        ];
        let mut requests: Vec<Request> = builtins
            .iter()
            .map(|&kind| Request::Create { kind: Kind::Builtin(kind), name: None, arg: 1 })
            .collect();
        requests.push(Request::Create {
            kind: Kind::Registered("Echo".into()),
            name: None,
            arg: 0,
        });
        requests.push(Request::Create {
            kind: Kind::Builtin(Builtin::Dict),
            name: Some("named".into()),
            arg: 0,
        });
        for id in 1..=12 {
            requests.extend(ops.iter().map(|op| Request::Call { id, op: op.clone() }));
            requests.extend([Request::Incref(id), Request::Pin(id), Request::Decref(id)]);
        }
        requests.push(Request::Upgrade { pipe: b(b"\x00"), fds: 1 });
        requests.push(Request::Shutdown);
        requests.iter().map(|r| encode_plain(r).expect("encodes")).collect()
    }

    /// Serves `requests` in order on one connection whose peer is gone (so
    /// that a request that would block returns within one slice).
    pub fn serve(requests: &[Vec<u8>]) {
        let mut registry: HashMap<String, Factory> = HashMap::new();
        registry.insert("Echo".into(), factory::<Echo>);
        let server = Server::new(registry);
        let (ours, theirs) = crate::os::net::LocalStream::pair().expect("socketpair");
        drop(theirs);
        let conn = Connection::from_unix_stream(ours);
        let mut client = Client { id: 1, conn, held: vec![] };
        for bytes in requests {
            if let Some(Err(())) = server.respond(bytes, &mut client) {
                break;
            }
        }
    }
}
