//! The proxies: one typed front per kind of object, over a [`Handle`].

use super::*;
use crate::{Error, Result};
use proto::{Builtin, Kind, Op, Reply};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::time::Duration;

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

/// What `print(d)` shows in Python: the entries, `{k: v, ...}` (each as
/// its `Debug`), read from the server now; a failed read shows as
/// `<DictProxy: the error>`.
impl<K, V> std::fmt::Display for DictProxy<K, V>
where
    K: Serialize + DeserializeOwned + std::fmt::Debug,
    V: Serialize + DeserializeOwned + std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.items() {
            Ok(items) => {
                write!(f, "{{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{k:?}: {v:?}")?;
                }
                write!(f, "}}")
            }
            Err(e) => write!(f, "<DictProxy: {e}>"),
        }
    }
}

/// What `print(l)` shows in Python: the items, `[a, b, ...]` (each as its
/// `Debug`), read from the server now; a failed read shows as
/// `<ListProxy: the error>`.
impl<T> std::fmt::Display for ListProxy<T>
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_vec() {
            Ok(items) => write!(f, "{items:?}"),
            Err(e) => write!(f, "<ListProxy: {e}>"),
        }
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

    pub(super) fn put_wait(&self, item: &T, wait: Option<Duration>) -> Result<()> {
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
    pub(super) handle: &'a Handle,
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.handle.unit(Op::Release);
    }
}

/// A proxy to an object of a type registered with the manager
/// ([`ManagerBuilder::register`]); its methods are called by name.
pub struct ObjectProxy {
    pub(super) handle: Handle,
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
