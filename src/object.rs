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
use std::marker::PhantomData;
use std::sync::Arc;

/// A shared object: a segment whose header is valid, holding an `L` at
/// [`HEADER_SIZE`].
pub(crate) struct Object<L> {
    segment: Arc<Segment>,
    /// The header as validated when the object was made; never re-read.
    header: Header,
    _layout: PhantomData<fn() -> L>,
}

impl<L> Clone for Object<L> {
    fn clone(&self) -> Self {
        Object {
            segment: self.segment.clone(),
            header: self.header,
            _layout: PhantomData,
        }
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
        let object = Object {
            segment: Arc::new(segment),
            header,
            _layout: PhantomData,
        };
        init(object.raw(), object.base());
        Ok(object)
    }

    /// Validates a segment received from elsewhere: its header for `kind`
    /// (one of `kinds`) and size, then `check` for the kind's parameters.
    pub(crate) fn open(
        segment: Segment,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L) -> Result<(), Corrupt>,
    ) -> Result<Object<L>> {
        let mapped = segment.len();
        if mapped < HEADER_SIZE + std::mem::size_of::<L>() {
            return Err(Corrupt::WrongSize {
                header: 0,
                mapped: mapped as u64,
            }
            .into());
        }
        // SAFETY: in bounds (checked above) and page-aligned; a copy is
        // taken, so a peer changing the header later changes nothing here.
        let header = unsafe { segment.as_ptr().cast::<Header>().read_volatile() };
        let kind = kinds
            .iter()
            .copied()
            .find(|&k| k as u32 == header.kind)
            .unwrap_or(kinds[0]);
        header.validate(kind, mapped as u64)?;
        let object = Object {
            segment: Arc::new(segment),
            header,
            _layout: PhantomData,
        };
        check(&header, object.raw())?;
        Ok(object)
    }

    /// The layout. Lives as long as `self`.
    pub(crate) fn raw(&self) -> &L {
        // SAFETY: the mapping lives as long as `self` (its Arc); size was
        // checked at creation or open; L is Shared.
        unsafe { view(self.segment.as_ptr(), self.segment.len(), HEADER_SIZE) }
            .expect("segment size checked when the object was made")
    }

    /// The validated header.
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Start of the mapping, for the Value/Array element area.
    pub(crate) fn base(&self) -> *mut u8 {
        self.segment.as_ptr()
    }

    #[cfg(unix)]
    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::os::fd::AsFd;
        let index =
            crate::handles::export(self.segment.fd().as_fd()).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }

    #[cfg(not(unix))]
    pub(crate) fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            crate::handles::export(()).unwrap_err(),
        ))
    }

    #[cfg(unix)]
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kinds: &[Kind],
        check: impl FnOnce(&Header, &L) -> Result<(), Corrupt>,
    ) -> Result<Object<L>, D::Error> {
        use serde::de::Error as _;
        let index = <u32 as serde::Deserialize>::deserialize(d)?;
        let fd = crate::handles::import(index).map_err(D::Error::custom)?;
        let segment = Segment::open(fd).map_err(|e| D::Error::custom(format!("{e:?}")))?;
        Object::open(segment, kinds, check).map_err(D::Error::custom)
    }

    #[cfg(not(unix))]
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        _d: D,
        _kinds: &[Kind],
        _check: impl FnOnce(&Header, &L) -> Result<(), Corrupt>,
    ) -> Result<Object<L>, D::Error> {
        Err(serde::de::Error::custom(
            crate::handles::export(()).unwrap_err(),
        ))
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
