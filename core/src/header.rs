//! The 64-byte header that starts every segment: magic, layout version, kind,
//! size, and kind-specific parameters. A mapping whose header does not match
//! what the opener expects is rejected with a [`Corrupt`] reason, never used.

use bytemuck::{Pod, Zeroable};

/// `b"MPROCSEG"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MPROCSEG");
/// Bumped whenever any layout in this crate changes.
pub const VERSION: u32 = 3;
/// Size of [`Header`]; objects start at this offset, cache-line aligned.
pub const HEADER_SIZE: usize = 64;

/// What a segment holds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A [`RawLock`](crate::lock::RawLock).
    Lock = 1,
    /// A [`RawRLock`](crate::rlock::RawRLock).
    RLock = 2,
    /// A [`RawSemaphore`](crate::semaphore::RawSemaphore) without a bound.
    Semaphore = 3,
    /// A [`RawSemaphore`](crate::semaphore::RawSemaphore) with a bound.
    BoundedSemaphore = 4,
    /// A [`RawEvent`](crate::event::RawEvent).
    Event = 5,
    /// A [`RawCondition`](crate::condition::RawCondition) beside its lock.
    Condition = 6,
    /// A [`RawBarrier`](crate::barrier::RawBarrier).
    Barrier = 7,
    /// One plain-data value behind an RLock.
    Value = 8,
    /// An array of plain-data values behind an RLock.
    Array = 9,
    /// A Pipe: one or two SPSC channels and their data areas.
    Pipe = 10,
    /// A Queue: one channel, a countdown of unfinished tasks, a data area.
    Queue = 11,
    /// An arena of small objects' slots ([`arena`](crate::arena)).
    Arena = 12,
}

/// Why a segment was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corrupt {
    /// Not a multiproc segment at all.
    BadMagic,
    /// Written by a build with another layout version.
    BadVersion {
        /// The version the header holds.
        found: u32,
    },
    /// A segment of another kind (say, a Lock opened as a Barrier).
    WrongKind {
        /// The kind number the header holds.
        found: u32,
    },
    /// The header's size disagrees with the mapping, or is too small.
    WrongSize {
        /// The size the header claims.
        header: u64,
        /// The size mapped.
        mapped: u64,
    },
    /// Kind-specific parameters out of range or not what the opener expects.
    BadParams,
    /// An arena slot that no longer (or never) held the object named: freed
    /// and maybe reused, or a forged reference.
    StaleSlot {
        /// The generation the slot is at.
        found: u32,
        /// The generation the reference names.
        expected: u32,
    },
}

impl core::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Corrupt::BadMagic => f.write_str("bad magic: not a multiproc segment"),
            Corrupt::BadVersion { found } => {
                write!(f, "layout version {found}, expected {VERSION}")
            }
            Corrupt::WrongKind { found } => write!(f, "segment holds object kind {found}"),
            Corrupt::WrongSize { header, mapped } => {
                write!(f, "header says {header} bytes, mapping has {mapped}")
            }
            Corrupt::BadParams => f.write_str("object parameters out of range"),
            Corrupt::StaleSlot { found, expected } => write!(
                f,
                "stale or forged object: its arena slot is at generation {found}, not {expected}, \
                 or holds nothing"
            ),
        }
    }
}

/// The segment header. Plain data: every bit pattern is a value, and it is
/// copied out of shared memory before it is checked.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`]: a multiproc segment.
    pub magic: u64,
    /// The layout version ([`VERSION`]).
    pub version: u32,
    /// The [`Kind`] of object, as its number.
    pub kind: u32,
    /// Total bytes of the segment, header included.
    pub size: u64,
    /// Kind-specific: element size and count for Value/Array, bound for a
    /// BoundedSemaphore, parties for a Barrier.
    pub params: [u64; 5],
}

static_assertions::const_assert_eq!(core::mem::size_of::<Header>(), HEADER_SIZE);

impl Header {
    /// The header of a new segment of `kind`, `size` bytes in all, with the kind's parameters.
    pub fn new(kind: Kind, size: u64, params: [u64; 5]) -> Header {
        Header { magic: MAGIC, version: VERSION, kind: kind as u32, size, params }
    }

    /// Checks everything but the parameters, which the opener checks.
    pub fn validate(&self, kind: Kind, mapped: u64) -> Result<(), Corrupt> {
        if self.magic != MAGIC {
            return Err(Corrupt::BadMagic);
        }
        if self.version != VERSION {
            return Err(Corrupt::BadVersion { found: self.version });
        }
        if self.kind != kind as u32 {
            return Err(Corrupt::WrongKind { found: self.kind });
        }
        if self.size != mapped || self.size < HEADER_SIZE as u64 {
            return Err(Corrupt::WrongSize { header: self.size, mapped });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_each_field() {
        let good = Header::new(Kind::Lock, 4096, [0; 5]);
        assert_eq!(good.validate(Kind::Lock, 4096), Ok(()));
        assert_eq!(Header { magic: 1, ..good }.validate(Kind::Lock, 4096), Err(Corrupt::BadMagic));
        assert_eq!(
            Header { version: 9, ..good }.validate(Kind::Lock, 4096),
            Err(Corrupt::BadVersion { found: 9 })
        );
        assert_eq!(good.validate(Kind::Barrier, 4096), Err(Corrupt::WrongKind { found: 1 }));
        assert_eq!(
            good.validate(Kind::Lock, 8192),
            Err(Corrupt::WrongSize { header: 4096, mapped: 8192 })
        );
        let zero = Header::zeroed();
        assert_eq!(zero.validate(Kind::Lock, 0), Err(Corrupt::BadMagic));
    }
}
