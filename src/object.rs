//! # Safety
//!
//! This file turns a mapped segment into typed views. Its obligations: the
//! mapping outlives every view (each [`Object`] holds an `Arc` of it), the
//! header is copied out and validated before any view is made, and views are
//! of `core` [`Shared`] types only, in bounds (the segment is sealed at its
//! size, so bounds checked once stay true).
#![allow(unsafe_code)]

use crate::os::Segment;
use crate::{Error, Result};
use multiproc_core::header::{Corrupt, Header, Kind, HEADER_SIZE};
use multiproc_core::shared::{view, Shared};
use std::sync::Arc;

/// A shared object: a segment whose header is valid, holding an `L` at
/// [`HEADER_SIZE`].
pub(crate) struct Object<L> {
    segment: Arc<Segment>,
    /// The header as validated when the object was made; never re-read.
    header: Header,
    /// The layout at HEADER_SIZE, viewed once (bounds and alignment checked).
    raw: std::ptr::NonNull<L>,
}

// SAFETY: the segment (memory shared by design) is Send + Sync, and `raw`
// points into it at a `Shared` layout, which is atomics only.
unsafe impl<L: Shared + Sync> Send for Object<L> {}
// SAFETY: as above; shared access goes through the layout's atomics.
unsafe impl<L: Shared + Sync> Sync for Object<L> {}

impl<L> Clone for Object<L> {
    fn clone(&self) -> Self {
        Object { segment: self.segment.clone(), header: self.header, raw: self.raw }
    }
}

impl<L: Shared> Object<L> {
    /// A new zeroed segment of `size` bytes (at least header + `L`) with a
    /// header for `kind`; `init` sets up the layout before anyone else can
    /// see it.
    pub(crate) fn create(
        kind: Kind,
        params: [u64; 5],
        size: usize,
        init: impl FnOnce(&L, *mut u8),
    ) -> Result<Object<L>> {
        let size = size.max(HEADER_SIZE + std::mem::size_of::<L>());
        let segment = Segment::create(size).map_err(|e| Error::io("creating a segment", e))?;
        let header = Header::new(kind, size as u64, params);
        // SAFETY: the segment is at least HEADER_SIZE bytes, page-aligned and
        // not yet shared; Header is plain data.
        unsafe { segment.as_ptr().cast::<Header>().write(header) };
        let object = Object::new(segment, header)?;
        init(object.raw(), object.base());
        Ok(object)
    }

    #[cfg_attr(not(mp_spawn), allow(dead_code))]
    /// Validates a segment received from elsewhere: its header for `kind`
    /// (one of `kinds`) and size, then `check` for the kind's parameters.
    pub(crate) fn open(
        segment: Segment,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L) -> Result<(), Corrupt>,
    ) -> Result<Object<L>> {
        let mapped = segment.len();
        if mapped < HEADER_SIZE + std::mem::size_of::<L>() {
            return Err(Corrupt::WrongSize { header: 0, mapped: mapped as u64 }.into());
        }
        // SAFETY: in bounds (checked above) and page-aligned; a copy is
        // taken, so a peer changing the header later changes nothing here.
        let header = unsafe { segment.as_ptr().cast::<Header>().read_volatile() };
        let kind = kinds.iter().copied().find(|&k| k as u32 == header.kind).unwrap_or(kinds[0]);
        header.validate(kind, mapped as u64)?;
        let object = Object::new(segment, header)?;
        check(&header, object.raw())?;
        Ok(object)
    }

    fn new(segment: Segment, header: Header) -> Result<Object<L>> {
        // SAFETY: the segment stays mapped while the returned object (which
        // owns it through the Arc) lives, and only Shared views are made.
        let raw = unsafe { view::<L>(segment.as_ptr(), segment.len(), HEADER_SIZE) }
            .ok_or(Corrupt::WrongSize { header: header.size, mapped: segment.len() as u64 })?;
        let raw = std::ptr::NonNull::from(raw);
        Ok(Object { segment: Arc::new(segment), header, raw })
    }

    /// The layout. Lives as long as `self`.
    #[inline]
    pub(crate) fn raw(&self) -> &L {
        // SAFETY: `raw` was checked in bounds and aligned in `new`, and the
        // mapping lives as long as `self` (its Arc); L is Shared.
        unsafe { self.raw.as_ref() }
    }

    /// Another `Shared` layout at `offset` of the segment, if in bounds.
    #[cfg_attr(not(mp_transfer), allow(dead_code))]
    pub(crate) fn at<M: Shared>(&self, offset: usize) -> Option<&M> {
        // SAFETY: the mapping lives as long as `self` (its Arc); `view`
        // checks bounds and alignment; M is Shared.
        unsafe { view::<M>(self.segment.as_ptr(), self.segment.len(), offset) }
    }

    /// The validated header.
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Start of the mapping, for the Value/Array element area.
    pub(crate) fn base(&self) -> *mut u8 {
        self.segment.as_ptr()
    }

    #[cfg(mp_spawn)]
    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index =
            crate::handles::export(self.segment.handle()).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }

    #[cfg(not(mp_spawn))]
    pub(crate) fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(crate::handles::export(()).unwrap_err()))
    }

    #[cfg(mp_spawn)]
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L) -> Result<(), Corrupt>,
    ) -> Result<Object<L>, D::Error> {
        use crate::handles::refuse;
        use crate::os::OpenError;
        use crate::ErrorKind;
        let index = <u32 as serde::Deserialize>::deserialize(d)?;
        let fd =
            crate::handles::import(index).map_err(|e| refuse(Error::new(ErrorKind::Corrupt, e)))?;
        let segment = Segment::open(fd).map_err(|e| {
            refuse(match e {
                OpenError::Foreign(why) => {
                    Error::new(ErrorKind::Corrupt, format!("not a multiproc segment: {why}"))
                }
                OpenError::Io(e) => Error::io("mapping a received segment", e),
            })
        })?;
        Object::open(segment, kinds, check).map_err(refuse)
    }

    #[cfg(not(mp_spawn))]
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        _d: D,
        _kinds: &[Kind],
        _check: impl FnOnce(&Header, &L) -> Result<(), Corrupt>,
    ) -> Result<Object<L>, D::Error> {
        Err(serde::de::Error::custom(crate::handles::export(()).unwrap_err()))
    }
}

/// Serialize/Deserialize for a shared-object type `$ty` whose field `obj`
/// is an `Object<$raw>` of one of `$kinds`, checked by `$check`.
macro_rules! shared_object {
    ($ty:ident $(<$t:ident: $bound:path>)?, $kinds:expr, $check:expr) => {
        impl$(<$t: $bound>)? serde::Serialize for $ty$(<$t>)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.obj.serialize(s)
            }
        }

        impl<'de $(, $t: $bound)?> serde::Deserialize<'de> for $ty$(<$t>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let obj = $crate::object::Object::deserialize(d, $kinds, $check)?;
                Ok(Self::from_object(obj))
            }
        }
    };
}
pub(crate) use shared_object;

#[cfg(all(test, mp_transfer))]
mod tests {
    //! Segments that are not what they claim: each is refused with `Corrupt`.
    use crate::handles::{collect, provide, take_failure};
    use crate::os::{OwnedHandle, RawHandle};
    use crate::{Array, Barrier, BoundedSemaphore, ErrorKind, Lock, Value};
    use serde::{de::DeserializeOwned, Serialize};

    /// Sends `value` through a transfer table, as to a child, and receives
    /// it as a `U`; the refusal's kind if it fails.
    fn transfer<T: Serialize, U: DeserializeOwned>(value: &T) -> Result<U, ErrorKind> {
        let (bytes, fds) = collect(|| postcard::to_allocvec(value));
        let bytes = bytes.unwrap();
        let fds: Vec<OwnedHandle> = fds.iter().map(|&fd| duplicate(fd)).collect();
        provide(fds, || postcard::from_bytes::<U>(&bytes))
            .map_err(|_| take_failure().expect("a recorded cause").kind())
    }

    fn duplicate(fd: RawHandle) -> OwnedHandle {
        // SAFETY: the fd belongs to an object alive for the caller's call.
        let fd = unsafe { crate::os::borrow_raw(fd) };
        fd.try_clone_to_owned().unwrap()
    }

    /// Writes `bytes` at `offset` of an object's segment, as a hostile peer could.
    fn tamper(lock: &Lock, offset: usize, bytes: &[u8]) {
        // SAFETY: offset + len is within the 64-byte header of a live segment.
        unsafe {
            let p = lock.raw() as *const _ as *mut u8;
            let base = p.sub(multiproc_core::header::HEADER_SIZE);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(offset), bytes.len());
        }
    }

    #[test]
    fn a_good_object_round_trips() {
        let lock = Lock::new().unwrap();
        let back: Lock = transfer(&lock).unwrap();
        back.acquire().unwrap();
        assert!(lock.is_locked());
        back.release().unwrap();
    }

    #[test]
    fn wrong_kind_magic_version_and_size_are_corrupt() {
        let barrier = Barrier::new(2).unwrap();
        assert_eq!(transfer::<_, Lock>(&barrier).err(), Some(ErrorKind::Corrupt));

        let lock = Lock::new().unwrap();
        tamper(&lock, 0, b"NOTMAGIC");
        assert_eq!(transfer::<_, Lock>(&lock).err(), Some(ErrorKind::Corrupt));

        let lock = Lock::new().unwrap();
        tamper(&lock, 8, &99u32.to_le_bytes()); // version
        assert_eq!(transfer::<_, Lock>(&lock).err(), Some(ErrorKind::Corrupt));

        let lock = Lock::new().unwrap();
        tamper(&lock, 16, &1u64.to_le_bytes()); // size
        assert_eq!(transfer::<_, Lock>(&lock).err(), Some(ErrorKind::Corrupt));
    }

    #[test]
    fn wrong_element_type_or_parameters_are_corrupt() {
        let v = Value::new(1u64).unwrap();
        assert_eq!(transfer::<_, Value<f64>>(&v).err(), Some(ErrorKind::Corrupt));
        assert_eq!(transfer::<_, Value<u32>>(&v).err(), Some(ErrorKind::Corrupt));
        assert_eq!(transfer::<_, Array<u64>>(&v).err(), Some(ErrorKind::Corrupt));
        let back: Value<u64> = transfer(&v).unwrap();
        assert_eq!(back.get().unwrap(), 1);

        let sem = BoundedSemaphore::new(1).unwrap();
        let back: BoundedSemaphore = transfer(&sem).unwrap();
        assert!(back.release().is_err(), "a received semaphore keeps its bound");
    }

    #[test]
    fn a_foreign_descriptor_is_corrupt() {
        // A memfd the peer did not seal could shrink under our mapping.
        let seg = crate::os::Segment::create(4096).unwrap();
        let plain: OwnedHandle =
            std::fs::File::open(std::env::current_exe().unwrap()).unwrap().into();
        let (bytes, _) = collect(|| postcard::to_allocvec(&Lock::new().unwrap()));
        let r = provide(vec![plain], || postcard::from_bytes::<Lock>(&bytes.unwrap()));
        assert!(r.is_err());
        assert_eq!(take_failure().unwrap().kind(), ErrorKind::Corrupt);
        drop(seg);
    }

    #[test]
    fn serializing_outside_a_transfer_is_an_error() {
        let lock = Lock::new().unwrap();
        assert!(postcard::to_allocvec(&lock).is_err());
    }
}
