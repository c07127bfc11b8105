//! Value and Array segments: the header, an RLock (absent for the raw
//! forms), and `len` plain-data elements. This file only computes and checks
//! the layout; the facade reads and writes elements under the lock.
//!
//! ```text
//! 0        64                 128 (or the element alignment, if larger)
//! | Header | RawRLock, padding | element 0 | element 1 | ...
//! ```
//!
//! A small one lives in an arena slot instead ([`Place::Slot`]): its slot
//! header, the RLock, and the elements right after it (aligned for their
//! type only), so a `Value<u64>` and its lock fill one 64-byte line.
//!
//! ```text
//! 0            32         56 (or the element alignment)
//! | SlotHeader | RawRLock | element 0 | ...
//! ```

use crate::arena::{SLOT_ALIGN, SLOT_HEADER_SIZE};
use crate::header::{Corrupt, Header, Kind, HEADER_SIZE};

/// Bytes of a [`RawRLock`](crate::rlock::RawRLock) in shared memory (a
/// constant: under loom its atomics are larger, the layout is not).
const RLOCK_SIZE: usize = 24;
#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<crate::rlock::RawRLock>(), RLOCK_SIZE);

/// Where an object lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A segment of its own, after a 64-byte [`Header`].
    Segment,
    /// An arena slot, after a [`SlotHeader`](crate::arena::SlotHeader).
    Slot,
}

impl Place {
    /// Offset of the object's layout from the start of its segment or slot.
    pub fn head(self) -> usize {
        match self {
            Place::Segment => HEADER_SIZE,
            Place::Slot => SLOT_HEADER_SIZE,
        }
    }
}

/// Where things are in a Value or Array segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayLayout {
    /// Offset of the `RawRLock`.
    pub lock_offset: usize,
    /// Offset of element 0, aligned for the element type and a cache line.
    pub data_offset: usize,
    /// Number of elements.
    pub len: usize,
    /// Total segment size.
    pub size: usize,
}

/// Largest alignment an element may ask for.
pub const MAX_ALIGN: usize = 4096;

impl ArrayLayout {
    /// The layout in `place` for `len` elements of `elem_size` bytes
    /// aligned to `elem_align` (a power of two up to [`MAX_ALIGN`]); `None`
    /// if the sizes overflow or the alignment is unsupported.
    pub fn new(
        place: Place,
        elem_size: usize,
        elem_align: usize,
        len: usize,
    ) -> Option<ArrayLayout> {
        if !elem_align.is_power_of_two() || elem_align > MAX_ALIGN {
            return None;
        }
        // A slot is only as aligned as its arena's slots are.
        if place == Place::Slot && elem_align > SLOT_ALIGN {
            return None;
        }
        let lock_offset = place.head();
        // In a segment of its own, the elements start on a cache line of
        // their own; in a slot, right after the lock.
        let line = if place == Place::Segment { HEADER_SIZE } else { 1 };
        let after_lock = lock_offset + RLOCK_SIZE;
        let data_offset = after_lock.next_multiple_of(line.max(elem_align));
        let bytes = elem_size.checked_mul(len)?;
        let size = data_offset.checked_add(bytes)?;
        // Keep sizes representable as i64 for the OS calls that size files.
        if size > i64::MAX as usize {
            return None;
        }
        Some(ArrayLayout { lock_offset, data_offset, len, size })
    }

    /// The header parameters that record this layout's element type.
    pub fn params(elem_size: usize, elem_align: usize, len: usize) -> [u64; 5] {
        [elem_size as u64, elem_align as u64, len as u64, 0, 0]
    }

    /// Checks that `header` (already validated for `kind` and the mapping's
    /// size) describes `len` elements of this size and alignment; `None`
    /// for `len` accepts any length. Returns the layout.
    pub fn check(
        place: Place,
        header: &Header,
        kind: Kind,
        elem_size: usize,
        elem_align: usize,
        len: Option<usize>,
    ) -> Result<ArrayLayout, Corrupt> {
        let [size, align, count, ..] = header.params;
        if size != elem_size as u64 || align != elem_align as u64 {
            return Err(Corrupt::BadParams);
        }
        let count = usize::try_from(count).map_err(|_| Corrupt::BadParams)?;
        if len.is_some_and(|len| len != count) || (kind == Kind::Value && count != 1) {
            return Err(Corrupt::BadParams);
        }
        let layout =
            ArrayLayout::new(place, elem_size, elem_align, count).ok_or(Corrupt::BadParams)?;
        if layout.size as u64 != header.size {
            return Err(Corrupt::WrongSize { header: header.size, mapped: layout.size as u64 });
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let seg = Place::Segment;
        let l = ArrayLayout::new(seg, 8, 8, 5).unwrap();
        assert_eq!((l.lock_offset, l.data_offset, l.size), (64, 128, 168));
        assert_eq!(ArrayLayout::new(seg, 1, 256, 1).unwrap().data_offset, 256);
        assert_eq!(ArrayLayout::new(seg, 8, 3, 1), None);
        assert_eq!(ArrayLayout::new(seg, usize::MAX, 8, 2), None);
        let l = ArrayLayout::new(Place::Slot, 8, 8, 1).unwrap();
        assert_eq!((l.lock_offset, l.data_offset, l.size), (32, 56, 64), "one cache line");
        assert_eq!(ArrayLayout::new(Place::Slot, 16, 16, 1).unwrap().data_offset, 64);
        assert_eq!(ArrayLayout::new(Place::Slot, 128, 128, 1), None, "slots are 64-aligned");
    }

    #[test]
    fn check_rejects_other_types() {
        let seg = Place::Segment;
        let l = ArrayLayout::new(seg, 4, 4, 3).unwrap();
        let h = Header::new(Kind::Array, l.size as u64, ArrayLayout::params(4, 4, 3));
        assert_eq!(ArrayLayout::check(seg, &h, Kind::Array, 4, 4, None), Ok(l));
        let wrong = |size, align, len, kind| ArrayLayout::check(seg, &h, kind, size, align, len);
        assert_eq!(wrong(8, 8, None, Kind::Array), Err(Corrupt::BadParams));
        assert_eq!(wrong(4, 4, Some(2), Kind::Array), Err(Corrupt::BadParams));
        assert_eq!(wrong(4, 4, None, Kind::Value), Err(Corrupt::BadParams));
        assert!(ArrayLayout::check(Place::Slot, &h, Kind::Array, 4, 4, None).is_err());
    }
}
