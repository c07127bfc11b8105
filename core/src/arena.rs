//! Arenas: many small shared objects in one segment, so that a process can
//! hold a hundred thousand Locks without a file descriptor and a mapping
//! for each.
//!
//! ```text
//! 0        64                64 + slot        64 + 2 slot
//! | Header | slot 0           | slot 1          | ...
//!            | SlotHeader (32) | object ...    |
//! ```
//!
//! The arena's [`Header`] (kind [`Kind::Arena`]) records the slot size (one
//! of [`SLOT_SIZES`]), the number of slots and the arena's random id. Each
//! slot starts with a [`SlotHeader`]: a *state* word holding the slot's
//! generation and its count of references, and the object's kind, size and
//! parameters (the segment header's, packed).
//!
//! References count what every process holds, not handles: a process holds
//! one reference per slot it has handles to (its own count of handles stays
//! in that process), and a message carrying the object holds one from the
//! moment it is written until the receiver adopts it. The last release makes
//! the slot free; claiming it again advances the generation, so a stale
//! (slot, generation) names nothing, rather than the slot's next object.
//!
//! Every transition is one compare-and-swap on the state word, so processes
//! that share an arena (a parent and its forked children allocate from the
//! same ones) never hand out one slot twice. A hostile peer can set any
//! state: then a release or a retain is refused, or a slot stays taken for
//! good; every operation still ends, and nothing here reads out of bounds.

use crate::header::{Corrupt, Header, Kind, HEADER_SIZE, MAGIC, VERSION};
use crate::sync::{AtomicU64, Ordering};

/// Bytes of a [`SlotHeader`]; the object starts this far into its slot.
pub const SLOT_HEADER_SIZE: usize = 32;

/// The slot sizes arenas are made of, one size per arena. A slot is
/// 64-byte aligned (slots start at the arena's 64-byte header), so an
/// object in a 64-byte slot has a cache line to itself.
pub const SLOT_SIZES: [usize; 5] = [64, 128, 256, 512, 1024];

/// Every slot starts this aligned (arenas are page-aligned, their header
/// and every slot size are multiples of it).
pub const SLOT_ALIGN: usize = 64;

/// The largest object (its slot header included) an arena holds; larger
/// ones get a segment of their own.
pub const MAX_SLOT: usize = SLOT_SIZES[SLOT_SIZES.len() - 1];

/// The most references a slot counts; one more is refused.
pub const MAX_REFS: u32 = u32::MAX - 1;

/// The header of one slot. Every field is an atomic word, so a slot that a
/// peer rewrites is still only ever read whole, and every bit pattern is a
/// value (a wrong one is refused by [`SlotHeader::check`]).
#[repr(C)]
#[derive(Debug)]
pub struct SlotHeader {
    /// Generation (high 32 bits) and references (low 32).
    state: AtomicU64,
    /// Kind (bits 0..16), object size from the slot's start (16..32),
    /// parameter 2 (32..64).
    shape: AtomicU64,
    /// Parameters 0 and 1 (32 bits each), and parameter 3.
    params: [AtomicU64; 2],
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(SlotHeader, [u8; SLOT_HEADER_SIZE]);
static_assertions::const_assert_eq!(HEADER_SIZE % SLOT_ALIGN, 0);
static_assertions::const_assert_eq!(SLOT_SIZES[0] % SLOT_ALIGN, 0);

/// The slot size that holds an object of `size` bytes (its slot header
/// included), if any does.
pub fn slot_size_for(size: usize) -> Option<usize> {
    SLOT_SIZES.iter().copied().find(|&s| size <= s)
}

/// A segment header's five parameters in a slot's three words; `None` when
/// they do not fit (parameters 0 to 2 above 32 bits, or a parameter 4):
/// such an object gets a segment of its own.
pub fn pack(params: [u64; 5]) -> Option<(u32, [u64; 2])> {
    let [a, b, c, d, e] = params;
    let fits = |v: u64| u32::try_from(v).is_ok();
    if !(fits(a) && fits(b) && fits(c)) || e != 0 {
        return None;
    }
    Some((c as u32, [a | (b << 32), d]))
}

fn unpack(aux: u32, words: [u64; 2]) -> [u64; 5] {
    [words[0] & 0xffff_ffff, words[0] >> 32, u64::from(aux), words[1], 0]
}

fn split(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

fn join(generation: u32, refs: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(refs)
}

/// How a [`SlotHeader::release`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// That was the last reference: the slot is free.
    Freed,
    /// Others still hold it.
    Held,
    /// The slot is not at that generation, or holds no reference: a peer
    /// changed it. Nothing was done.
    Refused,
}

impl Default for SlotHeader {
    /// A free slot, as a fresh arena's zeroed pages hold (for models and tests).
    fn default() -> SlotHeader {
        SlotHeader {
            state: AtomicU64::new(0),
            shape: AtomicU64::new(0),
            params: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
}

impl SlotHeader {
    /// Claims a free slot (no references) for a new object: one reference,
    /// the next generation (never 0, which no object has). `None` if the
    /// slot is taken.
    pub fn claim(&self) -> Option<u32> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (generation, refs) = split(state);
            if refs != 0 {
                return None;
            }
            let next = generation.wrapping_add(1).max(1);
            // Acquire: the previous holder's last writes to the object
            // happen before ours (its release was Release).
            match self.state.compare_exchange_weak(
                state,
                join(next, 1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(next),
                Err(now) => state = now,
            }
        }
    }

    /// Records what a claimed slot now holds. Called by the claimer before
    /// the object can reach anyone else.
    pub fn describe(&self, kind: Kind, size: usize, aux: u32, params: [u64; 2]) {
        let shape = u64::from(kind as u32 & 0xffff) | ((size as u64 & 0xffff) << 16);
        self.shape.store(shape | (u64::from(aux) << 32), Ordering::Relaxed);
        self.params[0].store(params[0], Ordering::Relaxed);
        self.params[1].store(params[1], Ordering::Relaxed);
    }

    /// The generation of the object in the slot, if it holds one.
    pub fn generation(&self) -> Option<u32> {
        let (generation, refs) = split(self.state.load(Ordering::Acquire));
        (refs != 0).then_some(generation)
    }

    /// Takes one more reference to the object of `generation`, which the
    /// caller holds one of. `Err` if the slot is not at that generation (a
    /// peer rewrote it) or counts [`MAX_REFS`] already.
    pub fn retain(&self, generation: u32) -> Result<(), Corrupt> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (found, refs) = split(state);
            if found != generation || refs == 0 {
                return Err(Corrupt::StaleSlot { found, expected: generation });
            }
            if refs >= MAX_REFS {
                return Err(Corrupt::BadParams);
            }
            match self.state.compare_exchange_weak(
                state,
                join(found, refs + 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => state = now,
            }
        }
    }

    /// Gives back one reference to the object of `generation`.
    pub fn release(&self, generation: u32) -> Released {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (found, refs) = split(state);
            if found != generation || refs == 0 {
                return Released::Refused;
            }
            // Release: this process's writes to the object happen before
            // the next claimer's (its claim is Acquire).
            match self.state.compare_exchange_weak(
                state,
                join(found, refs - 1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) if refs == 1 => return Released::Freed,
                Ok(_) => return Released::Held,
                Err(now) => state = now,
            }
        }
    }

    /// The header a segment of this object would have (its size the
    /// object's, from the slot's start), if the slot holds an object of
    /// `generation` of `kind` that fits a slot of `slot_size` bytes. A stale
    /// or forged (slot, generation) is [`Corrupt::StaleSlot`], never another
    /// object.
    pub fn check(&self, generation: u32, kind: Kind, slot_size: usize) -> Result<Header, Corrupt> {
        let (found, refs) = split(self.state.load(Ordering::Acquire));
        if found != generation || refs == 0 {
            return Err(Corrupt::StaleSlot { found, expected: generation });
        }
        let shape = self.shape.load(Ordering::Relaxed);
        let found_kind = (shape & 0xffff) as u32;
        if found_kind != kind as u32 {
            return Err(Corrupt::WrongKind { found: found_kind });
        }
        let size = (shape >> 16) & 0xffff;
        if size < SLOT_HEADER_SIZE as u64 || size > slot_size as u64 {
            return Err(Corrupt::WrongSize { header: size, mapped: slot_size as u64 });
        }
        let words = [self.params[0].load(Ordering::Relaxed), self.params[1].load(Ordering::Relaxed)];
        let params = unpack((shape >> 32) as u32, words);
        Ok(Header { magic: MAGIC, version: VERSION, kind: kind as u32, size, params })
    }
}

/// Where an arena's slots are, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaLayout {
    /// Bytes per slot, one of [`SLOT_SIZES`].
    pub slot_size: usize,
    /// Number of slots.
    pub slots: u32,
    /// The arena's id: random, so that a receiver maps each arena once.
    pub id: u64,
}

impl ArenaLayout {
    /// The layout of a new arena of about `bytes` bytes (at least one slot).
    pub fn new(slot_size: usize, bytes: usize, id: u64) -> ArenaLayout {
        let slots = (bytes.saturating_sub(HEADER_SIZE) / slot_size).clamp(1, u32::MAX as usize);
        ArenaLayout { slot_size, slots: slots as u32, id }
    }

    /// The arena's size in bytes.
    pub fn size(&self) -> usize {
        HEADER_SIZE + self.slot_size * self.slots as usize
    }

    /// The arena's header.
    pub fn header(&self) -> Header {
        let params = [self.slot_size as u64, u64::from(self.slots), self.id, 0, 0];
        Header::new(Kind::Arena, self.size() as u64, params)
    }

    /// Offset of slot `index`'s header, if there is such a slot.
    pub fn slot(&self, index: u32) -> Option<usize> {
        (index < self.slots).then(|| HEADER_SIZE + index as usize * self.slot_size)
    }

    /// The layout an arena header describes, if it is a consistent arena of
    /// `mapped` bytes (the header already validated as [`Kind::Arena`]).
    pub fn check(header: &Header) -> Result<ArenaLayout, Corrupt> {
        let [slot_size, slots, id, ..] = header.params;
        let slot_size = usize::try_from(slot_size).map_err(|_| Corrupt::BadParams)?;
        let slots = u32::try_from(slots).map_err(|_| Corrupt::BadParams)?;
        if !SLOT_SIZES.contains(&slot_size) || slots == 0 {
            return Err(Corrupt::BadParams);
        }
        let layout = ArenaLayout { slot_size, slots, id };
        if layout.size() as u64 != header.size {
            return Err(Corrupt::WrongSize { header: header.size, mapped: layout.size() as u64 });
        }
        Ok(layout)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn slot() -> SlotHeader {
        SlotHeader::default()
    }

    #[test]
    fn a_slot_lives_and_dies_by_its_references() {
        let s = slot();
        let g = s.claim().unwrap();
        assert_eq!(g, 1);
        assert_eq!(s.claim(), None, "taken");
        s.describe(Kind::Barrier, 48, 0, [3, 0]);
        let h = s.check(g, Kind::Barrier, 64).unwrap();
        assert_eq!((h.size, h.params), (48, [3, 0, 0, 0, 0]));
        assert_eq!(s.check(g, Kind::Lock, 64), Err(Corrupt::WrongKind { found: 7 }));
        assert_eq!(s.check(g, Kind::Barrier, 32), Err(Corrupt::WrongSize { header: 48, mapped: 32 }));
        s.retain(g).unwrap();
        assert_eq!(s.release(g), Released::Held);
        assert_eq!(s.release(g), Released::Freed);
        assert_eq!(s.release(g), Released::Refused, "free: nothing to release");
        assert_eq!(s.retain(g), Err(Corrupt::StaleSlot { found: 1, expected: 1 }));
        assert_eq!(s.check(g, Kind::Barrier, 64), Err(Corrupt::StaleSlot { found: 1, expected: 1 }));
        let g2 = s.claim().unwrap();
        assert_eq!(g2, 2);
        assert!(matches!(s.check(g, Kind::Barrier, 64), Err(Corrupt::StaleSlot { .. })), "stale");
        assert_eq!(s.release(g), Released::Refused, "a stale release changes nothing");
        assert_eq!(s.generation(), Some(2));
    }

    #[test]
    fn hostile_states_are_refused() {
        let s = slot();
        s.state.store(join(5, MAX_REFS), Ordering::Relaxed);
        assert_eq!(s.retain(5), Err(Corrupt::BadParams), "references at their limit");
        s.state.store(join(u32::MAX, 0), Ordering::Relaxed);
        assert_eq!(s.claim(), Some(1), "the generation wraps past 0");
        s.shape.store(u64::MAX, Ordering::Relaxed);
        assert!(s.check(1, Kind::Lock, 64).is_err());
    }

    #[test]
    fn parameters_pack_when_they_fit() {
        let p = [8, 8, 1, 0xdead_beef_0000_0001, 0];
        let (aux, words) = pack(p).unwrap();
        assert_eq!(unpack(aux, words), p);
        assert_eq!(pack([1 << 32, 0, 0, 0, 0]), None);
        assert_eq!(pack([0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn arena_headers_are_checked() {
        let l = ArenaLayout::new(64, 65536, 42);
        assert_eq!(l.slots, 1023);
        assert_eq!(ArenaLayout::check(&l.header()), Ok(l));
        assert_eq!(l.slot(1), Some(128));
        assert_eq!(l.slot(1023), None);
        let mut h = l.header();
        h.params[0] = 96;
        assert_eq!(ArenaLayout::check(&h), Err(Corrupt::BadParams));
        let mut h = l.header();
        h.size += 64;
        assert!(matches!(ArenaLayout::check(&h), Err(Corrupt::WrongSize { .. })));
        assert_eq!(slot_size_for(56), Some(64));
        assert_eq!(slot_size_for(1025), None);
    }
}
