//! # Safety
//!
//! This file turns a mapped segment into typed views. Its obligations: the
//! mapping outlives every view (each [`Object`] holds an `Arc` of it), the
//! header is copied out and validated before any view is made, and views are
//! of `core` [`Shared`] types only, in bounds (the segment is sealed at its
//! size, so bounds checked once stay true).
#![allow(unsafe_code)]

use crate::arena::SlotRef;
#[cfg(all(test, mp_transfer))]
use crate::os::RawHandle;
use crate::os::Segment;
use crate::{Error, Result};
use multiproc_core::header::{Corrupt, Header, Kind, HEADER_SIZE};
use multiproc_core::shared::{view, Shared};
use multiproc_core::value::Place;
use std::sync::Arc;

/// Where an object's bytes are, kept alive by the object.
#[derive(Clone)]
enum Home {
    /// A segment of its own.
    Segment(Arc<Segment>),
    /// A slot of an arena.
    Slot(SlotRef),
}

/// A shared object: a segment or arena slot whose header is valid, holding
/// an `L` after the header.
pub(crate) struct Object<L> {
    home: Home,
    /// A segment's bell, which async waiters await (a slot's is its arena's).
    #[cfg(mp_bell_handles)]
    rung: Option<Arc<crate::os::ready::Rung>>,
    /// The header as validated when the object was made; never re-read.
    header: Header,
    /// The layout after the header, viewed once (bounds and alignment checked).
    raw: std::ptr::NonNull<L>,
}

// SAFETY: the segment (memory shared by design) is Send + Sync, and `raw`
// points into it at a `Shared` layout, which is atomics only.
unsafe impl<L: Shared + Sync> Send for Object<L> {}
// SAFETY: as above; shared access goes through the layout's atomics.
unsafe impl<L: Shared + Sync> Sync for Object<L> {}

impl<L> Clone for Object<L> {
    fn clone(&self) -> Self {
        Object {
            home: self.home.clone(),
            #[cfg(mp_bell_handles)]
            rung: self.rung.clone(),
            header: self.header,
            raw: self.raw,
        }
    }
}

/// Whether objects of `kind` have a bell, for async waiters: those with an
/// async form (a slot's is its arena's).
#[cfg(mp_bell_handles)]
fn rings(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Lock
            | Kind::Semaphore
            | Kind::BoundedSemaphore
            | Kind::Event
            | Kind::Pipe
            | Kind::Queue
    )
}

impl<L> Object<L> {
    /// The bell async waiters of this object await.
    #[cfg(mp_bell_handles)]
    pub(crate) fn bell(&self) -> Option<&crate::os::ready::Bell> {
        match &self.home {
            Home::Segment(_) => self.rung.as_deref().map(|r| r.bell()),
            Home::Slot(slot) => slot.bell(),
        }
    }

    /// What async waiters of this object await: its bell (a handle that
    /// travels with it, or its segment's own).
    #[cfg(mp_async)]
    pub(crate) fn ready(&self) -> Option<crate::os::ready::Ready<'_>> {
        #[cfg(mp_bell_handles)]
        return self.bell().map(crate::os::AsHandle::as_handle);
        #[cfg(not(mp_bell_handles))]
        return crate::os::ready::segment_bell(self.base());
    }

    /// Start of the segment or slot, for the Value/Array element area.
    pub(crate) fn base(&self) -> *mut u8 {
        match &self.home {
            Home::Segment(segment) => segment.as_ptr(),
            Home::Slot(slot) => slot.base(),
        }
    }

    /// Serves `segment` with `bell` (see `os::ready`).
    #[cfg(mp_bell_handles)]
    fn ring_with(mut self, bell: crate::os::ready::Bell) -> Self {
        if let Home::Segment(segment) = &self.home {
            self.rung = Some(crate::os::ready::Rung::serve(bell, segment.as_ptr(), segment.len()));
        }
        self
    }
}

#[cfg(test)]
impl<L> Object<L> {
    /// The arena slot it lives in, if it does.
    pub(crate) fn slot(&self) -> Option<&SlotRef> {
        match &self.home {
            Home::Slot(slot) => Some(slot),
            Home::Segment(_) => None,
        }
    }
}

/// What a message carries for an object: a segment's handle, or a slot of
/// an arena, named by its id (the arena's handle rides along, once per
/// message however many of its objects the message holds).
#[cfg(mp_spawn)]
#[derive(serde::Serialize, serde::Deserialize)]
enum Wire {
    Segment { handle: u32, bell: Vec<u32> },
    Slot { handle: u32, bell: Vec<u32>, arena: u64, slot: u32, generation: u32 },
}

impl<L: Shared> Object<L> {
    /// A new zeroed object of `kind` holding an `L`, `size(place)` bytes in
    /// all (header included; at least header + `L`) where it lives: a slot
    /// of an arena if it fits one, else a segment of its own. `init` sets up
    /// the layout (given the start of the segment or slot and the place)
    /// before anyone else can see it.
    pub(crate) fn create(
        kind: Kind,
        params: [u64; 5],
        size: impl Fn(Place) -> usize,
        init: impl FnOnce(&L, *mut u8, Place),
    ) -> Result<Object<L>> {
        let small = size(Place::Slot).max(Place::Slot.head() + std::mem::size_of::<L>());
        if let Some(slot) = crate::arena::allocate(kind, small, params)? {
            let header = slot.header(kind)?;
            let object = Object::in_slot(slot, header)?;
            init(object.raw(), object.base(), Place::Slot);
            return Ok(object);
        }
        Object::create_segment(kind, params, size(Place::Segment), |raw, base| {
            init(raw, base, Place::Segment)
        })
    }

    /// As [`create`](Self::create), always in a segment of its own (for
    /// channels, which map their own data areas).
    pub(crate) fn create_segment(
        kind: Kind,
        params: [u64; 5],
        size: usize,
        init: impl FnOnce(&L, *mut u8),
    ) -> Result<Object<L>> {
        let size = size.max(HEADER_SIZE + std::mem::size_of::<L>());
        crate::os::raise_open_files();
        let segment = Segment::create(size).map_err(|e| Error::io("creating a segment", e))?;
        let header = Header::new(kind, size as u64, params);
        // SAFETY: the segment is at least HEADER_SIZE bytes, page-aligned and
        // not yet shared; Header is plain data.
        unsafe { segment.as_ptr().cast::<Header>().write(header) };
        let object = Object::new(segment, header)?;
        #[cfg(mp_bell_handles)]
        let object = if rings(kind) {
            let bell = crate::os::ready::Bell::new()
                .map_err(|e| Error::io("creating an object's readiness handle", e))?;
            object.ring_with(bell)
        } else {
            object
        };
        init(object.raw(), object.base());
        Ok(object)
    }

    #[cfg_attr(not(mp_spawn), allow(dead_code))]
    /// Validates a segment received from elsewhere: its header for `kind`
    /// (one of `kinds`) and size, then `check` for the kind's parameters.
    pub(crate) fn open(
        segment: Segment,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L, Place) -> Result<(), Corrupt>,
    ) -> Result<Object<L>> {
        let header = read_header(&segment, HEADER_SIZE + std::mem::size_of::<L>())?;
        let kind = kinds.iter().copied().find(|&k| k as u32 == header.kind).unwrap_or(kinds[0]);
        header.validate(kind, segment.len() as u64)?;
        let object = Object::new(segment, header)?;
        check(&header, object.raw(), Place::Segment)?;
        Ok(object)
    }

    /// Validates a slot received from elsewhere, as [`open`](Self::open).
    #[cfg(mp_spawn)]
    fn open_slot(
        slot: SlotRef,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L, Place) -> Result<(), Corrupt>,
    ) -> Result<Object<L>> {
        let mut header = Err(Corrupt::BadParams);
        for &kind in kinds {
            header = slot.header(kind);
            if !matches!(header, Err(Corrupt::WrongKind { .. })) {
                break;
            }
        }
        let header = header?;
        let object = Object::in_slot(slot, header)?;
        check(&header, object.raw(), Place::Slot)?;
        Ok(object)
    }

    fn new(segment: Segment, header: Header) -> Result<Object<L>> {
        // SAFETY: the segment stays mapped while the returned object (which
        // owns it through the Arc) lives, and only Shared views are made.
        let raw = unsafe { view::<L>(segment.as_ptr(), segment.len(), HEADER_SIZE) }
            .ok_or(Corrupt::WrongSize { header: header.size, mapped: segment.len() as u64 })?;
        let raw = std::ptr::NonNull::from(raw);
        Ok(Object {
            home: Home::Segment(Arc::new(segment)),
            #[cfg(mp_bell_handles)]
            rung: None,
            header,
            raw,
        })
    }

    fn in_slot(slot: SlotRef, header: Header) -> Result<Object<L>> {
        // SAFETY: the arena stays mapped while the returned object (which
        // holds the slot's Arc of it) lives, `view` keeps to the slot, and
        // only Shared views are made.
        let raw = unsafe { view::<L>(slot.base(), slot.len(), Place::Slot.head()) }
            .ok_or(Corrupt::WrongSize { header: header.size, mapped: slot.len() as u64 })?;
        let raw = std::ptr::NonNull::from(raw);
        Ok(Object {
            home: Home::Slot(slot),
            #[cfg(mp_bell_handles)]
            rung: None,
            header,
            raw,
        })
    }

    /// The layout. Lives as long as `self`.
    #[inline]
    pub(crate) fn raw(&self) -> &L {
        // SAFETY: `raw` was checked in bounds and aligned in `new`, and the
        // mapping lives as long as `self` (its Arc); L is Shared.
        unsafe { self.raw.as_ref() }
    }

    /// Another `Shared` layout at `offset` of the segment, if in bounds (a
    /// slot has none).
    #[cfg_attr(not(mp_transfer), allow(dead_code))]
    pub(crate) fn at<M: Shared>(&self, offset: usize) -> Option<&M> {
        let Home::Segment(segment) = &self.home else { return None };
        // SAFETY: the mapping lives as long as `self` (its Arc); `view`
        // checks bounds and alignment; M is Shared.
        unsafe { view::<M>(segment.as_ptr(), segment.len(), offset) }
    }

    /// The validated header.
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// The handle of the segment or arena it lives in (tests).
    #[cfg(all(test, mp_transfer))]
    pub(crate) fn home_handle(&self) -> RawHandle {
        use crate::os::AsHandle;
        match &self.home {
            Home::Segment(segment) => segment.handle().as_raw_handle(),
            Home::Slot(slot) => slot.handle().as_raw_handle(),
        }
    }

    /// Where the object lives.
    pub(crate) fn place(&self) -> Place {
        match self.home {
            Home::Segment(_) => Place::Segment,
            Home::Slot(_) => Place::Slot,
        }
    }

    #[cfg(mp_spawn)]
    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        use serde::Serialize as _;
        let wire = match &self.home {
            Home::Segment(segment) => Wire::Segment {
                handle: crate::handles::export(segment.handle()).map_err(S::Error::custom)?,
                bell: self.export_bell().map_err(S::Error::custom)?,
            },
            Home::Slot(slot) => {
                let (handle, (arena, index, generation)) =
                    crate::handles::export_slot(slot).map_err(S::Error::custom)?;
                let bell = self.export_bell().map_err(S::Error::custom)?;
                Wire::Slot { handle, bell, arena, slot: index, generation }
            }
        };
        wire.serialize(s)
    }

    /// The indexes in the transfer table of the handles that make its
    /// bell (none without one).
    #[cfg(mp_spawn)]
    fn export_bell(&self) -> Result<Vec<u32>, &'static str> {
        #[cfg(mp_bell_handles)]
        if let Some(bell) = self.bell() {
            return bell.parts().into_iter().map(crate::handles::export).collect();
        }
        Ok(Vec::new())
    }

    #[cfg(not(mp_spawn))]
    pub(crate) fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(crate::handles::export(()).unwrap_err()))
    }

    #[cfg(mp_spawn)]
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L, Place) -> Result<(), Corrupt>,
    ) -> Result<Object<L>, D::Error> {
        use crate::handles::refuse;
        match <Wire as serde::Deserialize>::deserialize(d)? {
            Wire::Segment { handle, bell } => {
                let fd = crate::handles::import(handle)
                    .map_err(|e| refuse(Error::new(crate::ErrorKind::Corrupt, e)))?;
                let segment = open_received(fd).map_err(refuse)?;
                let object = Object::open(segment, kinds, check).map_err(refuse)?;
                #[cfg(mp_bell_handles)]
                let object = if bell.is_empty() {
                    object
                } else {
                    object.ring_with(import_bell(&bell).map_err(refuse)?)
                };
                #[cfg(not(mp_bell_handles))]
                let _ = bell;
                Ok(object)
            }
            Wire::Slot { handle, bell, arena, slot, generation } => {
                crate::arena::receive(arena, slot, generation, handle, bell)
                    .and_then(|slot| Object::open_slot(slot, kinds, check))
                    .map_err(refuse)
            }
        }
    }
    #[cfg(not(mp_spawn))]
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        _d: D,
        _kinds: &[Kind],
        _check: impl FnOnce(&Header, &L, Place) -> Result<(), Corrupt>,
    ) -> Result<Object<L>, D::Error> {
        Err(serde::de::Error::custom(crate::handles::export(()).unwrap_err()))
    }
}

/// The bell made of the handles at `indexes` of the incoming table:
/// `Corrupt` if they make none.
#[cfg(mp_bell_handles)]
pub(crate) fn import_bell(indexes: &[u32]) -> Result<crate::os::ready::Bell> {
    let corrupt = |why: String| Error::new(crate::ErrorKind::Corrupt, why);
    let parts = indexes.iter().map(|&i| crate::handles::import(i));
    let parts = parts.collect::<Result<_, _>>().map_err(|e| corrupt(e.to_string()))?;
    crate::os::ready::Bell::from_received(parts)
        .map_err(|e| corrupt(format!("an object's readiness handle is not one: {e}")))
}

/// Maps a segment (or arena) received from a peer: `Corrupt` if it is not
/// one of ours (unsealed, read-only, empty).
#[cfg(mp_spawn)]
pub(crate) fn open_received(fd: crate::os::OwnedHandle) -> Result<Segment> {
    use crate::os::OpenError;
    Segment::open(fd).map_err(|e| match e {
        OpenError::Foreign(why) => {
            Error::new(crate::ErrorKind::Corrupt, format!("not a multiproc segment: {why}"))
        }
        OpenError::Io(e) => Error::io("mapping a received segment", e),
    })
}

/// A copy of `segment`'s header (not yet validated), if the segment holds
/// at least `least` bytes (`least` at least the header's).
#[cfg_attr(not(mp_spawn), allow(dead_code))]
pub(crate) fn read_header(segment: &Segment, least: usize) -> Result<Header, Corrupt> {
    let mapped = segment.len();
    if mapped < least.max(HEADER_SIZE) {
        return Err(Corrupt::WrongSize { header: 0, mapped: mapped as u64 });
    }
    // SAFETY: in bounds (checked above) and page-aligned; a copy is taken,
    // so a peer changing the header later changes nothing here.
    Ok(unsafe { segment.as_ptr().cast::<Header>().read_volatile() })
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
    use super::{Home, Wire};
    use crate::handles::{collect, provide, take_failure};
    use crate::os::{AsHandle, OwnedHandle, RawHandle};
    use crate::{Array, Barrier, BoundedSemaphore, ErrorKind, Lock, Value};
    use multiproc_core::value::Place;
    use serde::{de::DeserializeOwned, Serialize};

    /// Sends `value` through a transfer table, as to a child, and receives
    /// it as a `U`; the refusal's kind if it fails.
    fn transfer<T: Serialize, U: DeserializeOwned>(value: &T) -> Result<U, ErrorKind> {
        transfer_with(value, || {})
    }

    /// As [`transfer`], running `meanwhile` between sending and receiving.
    fn transfer_with<T: Serialize, U: DeserializeOwned>(
        value: &T,
        meanwhile: impl FnOnce(),
    ) -> Result<U, ErrorKind> {
        let (bytes, fds) = collect(|| postcard::to_allocvec(value));
        let bytes = bytes.unwrap();
        let fds: Vec<OwnedHandle> = fds.iter().map(|&fd| duplicate(fd)).collect();
        meanwhile();
        provide(fds, || postcard::from_bytes::<U>(&bytes))
            .map_err(|_| take_failure().expect("a recorded cause").kind())
    }

    fn duplicate(fd: RawHandle) -> OwnedHandle {
        // SAFETY: the fd belongs to an object alive for the caller's call.
        let fd = unsafe { crate::os::borrow_raw(fd) };
        fd.try_clone_to_owned().unwrap()
    }

    /// Writes `bytes` at `offset` of a Lock's slot, as a hostile peer could.
    fn tamper(lock: &Lock, offset: usize, bytes: &[u8]) {
        assert_eq!(lock.object().place(), Place::Slot);
        // SAFETY: offset + len is within the 32-byte header of a live slot.
        unsafe {
            let base = lock.object().base();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(offset), bytes.len());
        }
    }

    /// Writes `bytes` at `offset` of an Array's own segment.
    fn tamper_segment<T: bytemuck::Pod>(array: &Array<T>, offset: usize, bytes: &[u8]) {
        let obj = array.object();
        assert_eq!(obj.place(), Place::Segment);
        // SAFETY: offset + len is within the 64-byte header of a live segment.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), obj.base().add(offset), bytes.len())
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
    fn wrong_kind_generation_and_size_are_corrupt() {
        let _serial = crate::arena::serial();
        let barrier = Barrier::new(2).unwrap();
        assert_eq!(transfer::<_, Lock>(&barrier).err(), Some(ErrorKind::Corrupt));

        let lock = Lock::new().unwrap();
        let generation = || tamper(&lock, 4, &77u32.to_le_bytes());
        assert_eq!(transfer_with::<_, Lock>(&lock, generation).err(), Some(ErrorKind::Corrupt));
        assert!(collect(|| postcard::to_allocvec(&lock)).0.is_err(), "nor can its holder send it");

        let lock = Lock::new().unwrap();
        tamper(&lock, 10, &2000u16.to_le_bytes()); // size, beyond the slot
        assert_eq!(transfer::<_, Lock>(&lock).err(), Some(ErrorKind::Corrupt));
    }

    #[test]
    fn wrong_magic_version_and_size_of_a_segment_are_corrupt() {
        let big = || Array::new(&[0u64; 1000]).unwrap();
        let array = big();
        tamper_segment(&array, 0, b"NOTMAGIC");
        assert_eq!(transfer::<_, Array<u64>>(&array).err(), Some(ErrorKind::Corrupt));

        let array = big();
        tamper_segment(&array, 8, &99u32.to_le_bytes()); // version
        assert_eq!(transfer::<_, Array<u64>>(&array).err(), Some(ErrorKind::Corrupt));

        let array = big();
        tamper_segment(&array, 16, &1u64.to_le_bytes()); // size
        assert_eq!(transfer::<_, Array<u64>>(&array).err(), Some(ErrorKind::Corrupt));
        assert!(transfer::<_, Array<u64>>(&big()).is_ok());
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
    #[cfg(mp_bell_handles)]
    fn a_readiness_handle_that_is_no_bell_is_corrupt() {
        let array = Array::new(&[0u8; 8192]).unwrap();
        let segment = || duplicate(array.object().home_handle());
        let bell = crate::os::ready::Bell::new().unwrap();
        let parts = || -> Vec<OwnedHandle> {
            bell.parts().iter().map(|p| duplicate(p.as_raw_handle())).collect()
        };
        let receive = |bells: Vec<OwnedHandle>| {
            let bell = (1..=bells.len() as u32).collect();
            let bytes = postcard::to_allocvec(&Wire::Segment { handle: 0, bell }).unwrap();
            let handles = std::iter::once(segment()).chain(bells).collect();
            provide(handles, || postcard::from_bytes::<Array<u8>>(&bytes))
                .map_err(|_| take_failure().expect("a recorded cause").kind())
        };
        let plain = || -> OwnedHandle {
            std::fs::File::open(std::env::current_exe().unwrap()).unwrap().into()
        };
        assert_eq!(
            receive(parts().iter().map(|_| plain()).collect()).err(),
            Some(ErrorKind::Corrupt)
        );
        let mut more = parts();
        more.push(plain());
        assert_eq!(receive(more).err(), Some(ErrorKind::Corrupt));
        let array: Array<u8> = receive(parts()).unwrap();
        assert!(array.object().bell().is_some());
    }

    /// The bytes of a slot reference as a message carries it (handle index 0).
    fn forged(arena: u64, slot: u32, generation: u32) -> Vec<u8> {
        postcard::to_allocvec(&Wire::Slot { handle: 0, bell: Vec::new(), arena, slot, generation })
            .unwrap()
    }

    fn receive_forged(bytes: &[u8], fd: OwnedHandle) -> Result<Lock, ErrorKind> {
        provide(vec![fd], || postcard::from_bytes::<Lock>(bytes))
            .map_err(|_| take_failure().expect("a recorded cause").kind())
    }

    #[test]
    fn forged_or_stale_slots_are_corrupt() {
        let _serial = crate::arena::serial();
        let lock = Lock::new().unwrap();
        let Home::Slot(slot) = lock.object().home.clone() else { panic!("a Lock is in a slot") };
        let (arena, index, generation) = slot.name();
        let raw = slot.handle().as_raw_handle(); // the allocator keeps the arena open
        let fd = || duplicate(raw);
        // A slot out of range, a generation the slot is not at.
        assert_eq!(
            receive_forged(&forged(arena, u32::MAX, 1), fd()).err(),
            Some(ErrorKind::Corrupt)
        );
        let stale = forged(arena, index, generation + 1);
        assert_eq!(receive_forged(&stale, fd()).err(), Some(ErrorKind::Corrupt));
        // A free slot of the same arena.
        assert_eq!(
            receive_forged(&forged(arena, index + 500, 1), fd()).err(),
            Some(ErrorKind::Corrupt)
        );
        // An arena id nobody mapped, with a descriptor that is no arena, or
        // that is an arena of another id.
        let plain: OwnedHandle =
            std::fs::File::open(std::env::current_exe().unwrap()).unwrap().into();
        assert_eq!(receive_forged(&forged(7, 0, 1), plain).err(), Some(ErrorKind::Corrupt));
        assert_eq!(
            receive_forged(&forged(7, index, generation), fd()).err(),
            Some(ErrorKind::Corrupt)
        );
        // The reference of a live object, with no handle, or with the
        // handle of something else.
        let live = forged(arena, index, generation);
        let r = provide(vec![], || postcard::from_bytes::<Lock>(&live));
        assert!(r.is_err() && take_failure().unwrap().kind() == ErrorKind::Corrupt);
        let other = Array::new(&[0u8; 8192]).unwrap();
        let other_fd = duplicate(other.object().home_handle());
        assert_eq!(receive_forged(&live, other_fd).err(), Some(ErrorKind::Corrupt));
        // With its own handle it is that object (a peer holding the arena's
        // handle can do anything to it anyway), its sender's reference
        // taken as a real sender would.
        slot.send().unwrap();
        let back = provide(vec![fd()], || postcard::from_bytes::<Lock>(&live));
        assert!(back.is_ok(), "with its own handle, it is that object: {:?}", take_failure());
        // A reference sent, then its object dropped and the slot reused.
        let (bytes, _) = collect(|| postcard::to_allocvec(&lock));
        let bytes = bytes.unwrap();
        slot.unsend();
        drop((lock, slot));
        let _next = Lock::new().unwrap();
        assert_eq!(receive_forged(&bytes, fd()).err(), Some(ErrorKind::Corrupt));
    }

    #[test]
    fn a_foreign_descriptor_is_corrupt() {
        // A memfd the peer did not seal could shrink under our mapping.
        let array = Array::new(&[0u8; 4096]).unwrap();
        let plain: OwnedHandle =
            std::fs::File::open(std::env::current_exe().unwrap()).unwrap().into();
        let (bytes, _) = collect(|| postcard::to_allocvec(&array));
        let r = provide(vec![plain], || postcard::from_bytes::<Array<u8>>(&bytes.unwrap()));
        assert!(r.is_err());
        assert_eq!(take_failure().unwrap().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn serializing_outside_a_transfer_is_an_error() {
        let lock = Lock::new().unwrap();
        assert!(postcard::to_allocvec(&lock).is_err());
    }
}
