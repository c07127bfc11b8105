//! # Safety
//!
//! This file reads and writes `T` elements in a segment's element area
//! through raw pointers. Its obligations: the element area is in bounds and
//! aligned for `T` ([`ArrayLayout`] checked against the sealed mapping when
//! the object was made), `T: Pod` so every byte pattern another process
//! leaves there is a valid `T`, and references into it exist only inside a
//! guard that holds the RLock and refuses reentry. The `Raw` forms use no
//! lock: their accesses race with other processes by design (as Python's
//! `RawValue`), so they copy with volatile reads and never form references.
#![allow(unsafe_code)]

use crate::object::{shared_object, Object};
use crate::sync::{RLock, RLockGuard};
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use bytemuck::Pod;
use multiproc_core::header::{Corrupt, Header, Kind};
use multiproc_core::rlock::RawRLock;
use multiproc_core::value::{ArrayLayout, Place};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// FNV-1a of the element type's name: a Value<u64> is not a Value<f64>.
fn type_tag<T>() -> u64 {
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn check<T: Pod>(header: &Header, kind: Kind, place: Place) -> Result<(), Corrupt> {
    let size = std::mem::size_of::<T>();
    let align = std::mem::align_of::<T>();
    ArrayLayout::check(place, header, kind, size, align, None)?;
    if header.params[3] != type_tag::<T>() {
        return Err(Corrupt::BadParams);
    }
    Ok(())
}

/// A segment of `len` `T`s behind an RLock: what every form here is made of.
struct Cells<T> {
    /// The segment's RLock handle; its object is the whole segment.
    lock: RLock,
    layout: ArrayLayout,
    _t: PhantomData<T>,
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells { lock: self.lock.clone(), layout: self.layout, _t: PhantomData }
    }
}

impl<T: Pod> Cells<T> {
    fn create(kind: Kind, init: &[T]) -> Result<Cells<T>> {
        let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        let layout = |place| ArrayLayout::new(place, size, align, init.len());
        let too_large = || Error::new(ErrorKind::TooLarge, "array too large");
        layout(Place::Segment).ok_or_else(too_large)?;
        let mut params = ArrayLayout::params(size, align, init.len());
        params[3] = type_tag::<T>();
        // No layout in a slot (an alignment above a slot's) fits none.
        let size_in = |place| layout(place).map_or(usize::MAX, |l| l.size);
        let obj = Object::create(kind, params, size_in, |_, base, place| {
            let layout = layout(place).expect("the layout object was sized by");
            // SAFETY: the fresh segment or slot is `layout.size` bytes, so the
            // element area holds `init.len()` aligned Ts; nobody else has it.
            unsafe {
                let data = base.add(layout.data_offset).cast::<T>();
                std::ptr::copy_nonoverlapping(init.as_ptr(), data, init.len());
            }
        })?;
        Ok(Cells::from_object(obj))
    }

    fn from_object(obj: Object<RawRLock>) -> Cells<T> {
        let header = obj.header();
        let layout = ArrayLayout::new(
            obj.place(),
            std::mem::size_of::<T>(),
            std::mem::align_of::<T>(),
            header.params[2] as usize,
        )
        .expect("checked when the segment was opened");
        Cells { lock: RLock::from_object(obj), layout, _t: PhantomData }
    }

    fn object(&self) -> &Object<RawRLock> {
        self.lock.object()
    }

    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.object().serialize(s)
    }

    fn data(&self) -> *mut T {
        self.object().base().wrapping_add(self.layout.data_offset).cast()
    }

    fn len(&self) -> usize {
        self.layout.len
    }

    fn index(&self, i: usize) -> Result<*mut T> {
        if i >= self.len() {
            return Err(Error::invalid(format!(
                "index {i} out of range for length {}",
                self.len()
            )));
        }
        Ok(self.data().wrapping_add(i))
    }

    /// Copies element `i` out (racy unless the lock is held).
    fn read(&self, i: usize) -> Result<T> {
        let p = self.index(i)?;
        // SAFETY: in bounds and aligned (index, layout); any bytes are a T (Pod).
        Ok(unsafe { p.read_volatile() })
    }

    fn write(&self, i: usize, value: T) -> Result<()> {
        let p = self.index(i)?;
        // SAFETY: in bounds and aligned; no reference to the element exists
        // outside a guard, and guards refuse reentry.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    fn copy_out(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        // SAFETY: `len` elements in bounds; `out` has that capacity; Pod.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data(), out.as_mut_ptr(), self.len());
            out.set_len(self.len());
        }
        out
    }

    fn copy_in(&self, src: &[T]) -> Result<()> {
        if src.len() != self.len() {
            return Err(Error::invalid(format!(
                "slice of length {} for an array of length {}",
                src.len(),
                self.len()
            )));
        }
        // SAFETY: same length, in bounds, and `src` is our memory, not the segment.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data(), src.len()) };
        Ok(())
    }

    /// Runs `f` holding the lock (reentrant). On `OwnerDied`, `f` still runs
    /// and the lock is released, and the error is returned.
    fn locked<R>(&self, f: impl FnOnce(&Self) -> R) -> Result<R> {
        let lock = &self.lock;
        let died = match lock.acquire() {
            Ok(()) => false,
            Err(e) if e.is_owner_died() => true,
            Err(e) => return Err(e),
        };
        let result = f(self);
        lock.release()?;
        if died {
            return Err(crate::sync::owner_died("Value's lock"));
        }
        Ok(result)
    }

    fn guard(&self, deadline: Deadline) -> Result<(&Self, RLockGuard<'_>)> {
        Ok((self, self.lock.lock_exclusive(deadline)?))
    }
}

/// `Clone`, `from_object` and serde for a handle type `$ty` over `Cells`,
/// whose segments are of `$kind` with `T` elements.
macro_rules! cells_handle {
    ($ty:ident, $kind:expr) => {
        impl<T: Pod> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { obj: self.obj.clone() }
            }
        }

        impl<T: Pod> $ty<T> {
            fn from_object(obj: Object<RawRLock>) -> $ty<T> {
                $ty { obj: Cells::from_object(obj) }
            }
        }

        shared_object!($ty<T: Pod>, &[$kind], |h: &Header, _: &RawRLock, place| {
            check::<T>(h, $kind, place)
        });
    };
}

macro_rules! locked_guard {
    ($guard:ident, $target:ty, $deref:expr, $deref_mut:expr) => {
        /// Holds the lock; dereferences to the data; releases on drop.
        #[must_use = "the lock is released when the guard is dropped"]
        pub struct $guard<'a, T: Pod> {
            cells: &'a Cells<T>,
            _lock: RLockGuard<'a>,
        }

        impl<T: Pod> $guard<'_, T> {
            /// Whether the lock was taken over from a holder that died.
            pub fn owner_died(&self) -> bool {
                self._lock.owner_died()
            }
        }

        impl<T: Pod> Deref for $guard<'_, T> {
            type Target = $target;
            fn deref(&self) -> &$target {
                let f: fn(&Cells<T>) -> &$target = $deref;
                f(self.cells)
            }
        }

        impl<T: Pod + std::fmt::Debug> std::fmt::Debug for $guard<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($guard)).field(&&**self).finish()
            }
        }

        impl<T: Pod> DerefMut for $guard<'_, T> {
            fn deref_mut(&mut self) -> &mut $target {
                let f: fn(&Cells<T>) -> &mut $target = $deref_mut;
                f(self.cells)
            }
        }
    };
}

locked_guard!(
    ValueGuard,
    T,
    // SAFETY: the guard holds the RLock and no other guard of this thread
    // exists (lock_exclusive), other processes take the lock to touch the
    // element, and it is in bounds, aligned and a valid T.
    |c| unsafe { &*c.data() },
    // SAFETY: as above; `&mut self` on the guard makes this the only reference.
    |c| unsafe { &mut *c.data() }
);

locked_guard!(
    ArrayGuard,
    [T],
    // SAFETY: as for ValueGuard, over `len` elements.
    |c| unsafe { std::slice::from_raw_parts(c.data(), c.len()) },
    // SAFETY: as for ValueGuard, over `len` elements.
    |c| unsafe { std::slice::from_raw_parts_mut(c.data(), c.len()) }
);

/// A `T` in shared memory behind an [`RLock`]: Python's `Value(typecode, v)`.
///
/// `T` is plain data (`bytemuck::Pod`): a `Value<String>` does not compile.
///
/// ```compile_fail
/// let v = multiproc::Value::new(String::from("not plain data"));
/// ```
///
/// ```
/// let v = multiproc::Value::new(0i64)?;
/// v.set(41)?;
/// *v.lock()? += 1;
/// assert_eq!(v.get()?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Value<T: Pod> {
    obj: Cells<T>,
}

cells_handle!(Value, Kind::Value);

impl<T: Pod> Value<T> {
    /// A shared value holding `value`, with its own lock.
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value { obj: Cells::create(Kind::Value, &[value])? })
    }

    /// A shared value holding zero (all bytes zero), as Python's
    /// `Value('i')` holds 0. (Not the `Default` trait: creating a shared
    /// object can fail, so this returns a `Result`.)
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> Result<Value<T>> {
        Value::new(T::zeroed())
    }

    /// Reads it under the lock (reentrant: fine while holding `get_lock()`).
    pub fn get(&self) -> Result<T> {
        self.obj.locked(|c| c.read(0))?
    }

    /// Writes it under the lock.
    pub fn set(&self, value: T) -> Result<()> {
        self.obj.locked(|c| c.write(0, value))?
    }

    /// Holds the lock and gives `&mut T`, for read-modify-write. Refuses
    /// (`InvalidArgument`) if this thread already holds the lock.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        self.lock_until(Deadline::NEVER)
    }

    /// [`lock`](Self::lock), waiting at most `timeout` (`Timeout`).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>> {
        self.lock_until(Deadline::after(timeout))
    }

    /// [`lock`](Self::lock) only if the lock is free now (`Timeout` if not).
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>> {
        self.lock_until(Deadline::now())
    }

    fn lock_until(&self, deadline: Deadline) -> Result<ValueGuard<'_, T>> {
        let (cells, lock) = self.obj.guard(deadline)?;
        Ok(ValueGuard { cells, _lock: lock })
    }

    /// The lock, to hold across several operations (Python's `get_lock()`).
    pub fn get_lock(&self) -> RLock {
        self.obj.lock.clone()
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value").field("value", &self.get().ok()).finish()
    }
}

/// `len` `T`s in shared memory behind an [`RLock`]: Python's
/// `Array(typecode, init)`.
///
/// ```
/// let a = multiproc::Array::new(&[0u32, 1, 2, 3, 4])?;
/// for x in a.lock()?.iter_mut() {
///     *x += 5;
/// }
/// assert_eq!(a.to_vec()?, [5, 6, 7, 8, 9]);
/// assert!(a.get(5).is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Array<T: Pod> {
    obj: Cells<T>,
}

cells_handle!(Array, Kind::Array);

impl<T: Pod> Array<T> {
    #[cfg(all(test, mp_transfer))]
    pub(crate) fn object(&self) -> &Object<RawRLock> {
        self.obj.object()
    }

    /// An array holding a copy of `init`.
    pub fn new(init: &[T]) -> Result<Array<T>> {
        Ok(Array { obj: Cells::create(Kind::Array, init)? })
    }

    /// An array of `len` zeroed elements.
    pub fn zeroed(len: usize) -> Result<Array<T>> {
        Array::new(&vec![T::zeroed(); len])
    }

    /// How many elements it holds.
    pub fn len(&self) -> usize {
        self.obj.len()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, read under the lock.
    pub fn get(&self, i: usize) -> Result<T> {
        self.obj.locked(|c| c.read(i))?
    }

    /// Writes element `i` under the lock.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.obj.locked(|c| c.write(i, value))?
    }

    /// A copy of every element, under the lock (Python's `arr[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.obj.locked(|c| c.copy_out())
    }

    /// Overwrites every element from `src` (same length), under the lock.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.obj.locked(|c| c.copy_in(src))?
    }

    /// Holds the lock and gives `&mut [T]`. Refuses (`InvalidArgument`) if
    /// this thread already holds the lock.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        self.lock_until(Deadline::NEVER)
    }

    /// [`lock`](Self::lock), waiting at most `timeout` (`Timeout`).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>> {
        self.lock_until(Deadline::after(timeout))
    }

    /// [`lock`](Self::lock) only if the lock is free now (`Timeout` if not).
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>> {
        self.lock_until(Deadline::now())
    }

    fn lock_until(&self, deadline: Deadline) -> Result<ArrayGuard<'_, T>> {
        let (cells, lock) = self.obj.guard(deadline)?;
        Ok(ArrayGuard { cells, _lock: lock })
    }

    /// The lock, to hold across several operations (Python's `get_lock()`).
    pub fn get_lock(&self) -> RLock {
        self.obj.lock.clone()
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array").field("len", &self.len()).finish()
    }
}

/// A `T` in shared memory with no lock: Python's `RawValue`. Reads and
/// writes race with other processes; values larger than a machine word may
/// be seen half-written. Use [`Value`] unless you synchronize otherwise.
pub struct RawValue<T: Pod> {
    obj: Cells<T>,
}

cells_handle!(RawValue, Kind::Value);

impl<T: Pod> RawValue<T> {
    /// A shared value holding `value`, without a lock.
    pub fn new(value: T) -> Result<RawValue<T>> {
        Ok(RawValue { obj: Cells::create(Kind::Value, &[value])? })
    }

    /// The value (no lock: a concurrent `set` may be seen half-written).
    pub fn get(&self) -> T {
        self.obj.read(0).expect("a Value holds one element")
    }

    /// Sets the value (no lock: see the type's docs).
    pub fn set(&self, value: T) {
        self.obj.write(0, value).expect("a Value holds one element")
    }
}

/// `len` `T`s in shared memory with no lock: Python's `RawArray`. Accesses
/// race with other processes, as for [`RawValue`].
pub struct RawArray<T: Pod> {
    obj: Cells<T>,
}

cells_handle!(RawArray, Kind::Array);

impl<T: Pod> RawArray<T> {
    /// An array holding a copy of `init`, without a lock.
    pub fn new(init: &[T]) -> Result<RawArray<T>> {
        Ok(RawArray { obj: Cells::create(Kind::Array, init)? })
    }

    /// `len` zeroed elements.
    pub fn zeroed(len: usize) -> Result<RawArray<T>> {
        RawArray::new(&vec![T::zeroed(); len])
    }

    /// How many elements it holds.
    pub fn len(&self) -> usize {
        self.obj.len()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (`Invalid` past the end).
    pub fn get(&self, i: usize) -> Result<T> {
        self.obj.read(i)
    }

    /// Sets element `i` (`Invalid` past the end).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.obj.write(i, value)
    }

    /// A copy of every element (one memcpy).
    pub fn to_vec(&self) -> Vec<T> {
        self.obj.copy_out()
    }

    /// Overwrites every element from `src` (same length; one memcpy).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.obj.copy_in(src)
    }
}
