//! Arenas in this process: small shared objects (Locks, Events, small
//! Values, ...) are slots of a few shared segments instead of a segment
//! each (see `multiproc_core::arena` for the layout and the reference
//! count).
//!
//! - **Allocation.** Each slot size has its arenas, made here as needed:
//!   64 KiB, then twice the last, up to [`MAX_ARENA`]. A new object takes a
//!   slot freed here, else the next never-used one, else (when the newest
//!   arena is full) any slot whose references all went, found by a sweep,
//!   else a new arena. Every claim is a compare-and-swap on the slot, so a
//!   parent and the children it forked, which allocate from the same
//!   arenas, never take one slot twice.
//! - **References.** A process holds one reference to each slot it has
//!   handles to, and counts its handles itself ([`Arena::held`]). The last
//!   handle in the process gives the reference back. A message carrying the
//!   object takes one for its receiver, which adopts it.
//! - **Forks and exits.** Before forking, the parent takes the child's
//!   reference to each slot the child will inherit handles to
//!   ([`hold_for_fork`]), so the parent's drop cannot free a slot the child
//!   still uses; a child that ends through `finish` gives back every
//!   reference it still holds ([`release_all`]).
//!   A process killed while holding references (or a message never
//!   received) leaves its slots taken: they come back only when the arena
//!   itself goes, when no process maps it any more. Each such loss is one
//!   slot per object held, at most [`MAX_SLOT`] bytes.
//! - **Receiving.** Arenas are known by their random id: a process maps each
//!   once, however many objects of it arrive and in however many messages.
//!
//! # Safety
//!
//! This file makes references into arena mappings. Its obligations: an
//! [`Arena`] owns its mapping, which every [`SlotRef`] keeps alive through
//! its `Arc`; slot offsets come from the arena's layout, checked against
//! the mapping when it was made; only `Shared` layouts are viewed.
#![allow(unsafe_code)]

use crate::os::Segment;
use crate::{Error, ErrorKind, Result};
use multiproc_core::arena::{ArenaLayout, Released, SlotHeader, MAX_SLOT, SLOT_SIZES};
use multiproc_core::header::{Corrupt, Header, Kind};
use multiproc_core::shared::view;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The first arena of a slot size.
const FIRST_ARENA: usize = 64 << 10;
/// The largest arena: the next ones are all this size.
const MAX_ARENA: usize = 4 << 20;

/// One arena mapped in this process.
pub(crate) struct Arena {
    segment: Segment,
    layout: ArenaLayout,
    /// How many handles this process holds to each slot's object; the
    /// process holds one reference to every slot counted here above 0.
    held: Box<[AtomicU32]>,
    /// The generation of the object each slot counted in `held` holds,
    /// written (under the registry lock) when its count leaves 0.
    generations: Box<[AtomicU32]>,
    /// Its place in its slot size's list, if this process allocates from it
    /// (it made it, or its parent did before forking this process).
    ours: Option<u32>,
    /// The bell its objects' async waiters await.
    #[cfg(mp_bell_handles)]
    rung: Option<Arc<crate::os::ready::Rung>>,
}

impl Arena {
    fn slot(&self, index: u32) -> &SlotHeader {
        let offset = self.layout.slot(index).expect("a slot index checked against the layout");
        // SAFETY: the mapping lives as long as `self`, and the offset is in
        // the layout, which was checked against the mapping's size.
        unsafe { view::<SlotHeader>(self.segment.as_ptr(), self.segment.len(), offset) }
            .expect("slots lie inside the checked mapping")
    }

    /// Start of slot `index`, which is in the layout.
    fn slot_ptr(&self, index: u32) -> *mut u8 {
        let offset = self.layout.slot(index).expect("a slot index checked against the layout");
        self.segment.as_ptr().wrapping_add(offset)
    }
}

/// Every arena this process maps, and the ones it allocates from.
struct Registry {
    /// By id: a received object of an arena mapped already uses that mapping.
    mapped: BTreeMap<u64, Weak<Arena>>,
    /// Per slot size (as [`SLOT_SIZES`]), the arenas this process allocates from.
    sizes: [Allocator; SLOT_SIZES.len()],
}

#[derive(Default)]
struct Allocator {
    arenas: Vec<Arc<Arena>>,
    /// Slots freed here: (arena, slot), to be claimed first.
    free: Vec<(u32, u32)>,
    /// The newest arena's next never-used slot.
    next: u32,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    mapped: BTreeMap::new(),
    sizes: [const { Allocator { arenas: Vec::new(), free: Vec::new(), next: 0 } };
        SLOT_SIZES.len()],
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held across a fork: the registry's lock, so the child's copy of it is
/// whole, and the references taken for the child before it exists.
#[cfg(mp_fork)]
pub(crate) struct ForkRefs {
    _registry: MutexGuard<'static, Registry>,
    /// (arena, slot, generation) of each reference taken for the child.
    taken: Vec<(Arc<Arena>, u32, u32)>,
}

/// Before a fork: takes, for the child, one reference to every slot this
/// process holds handles to. Taken here, while the parent's handles keep
/// each object alive, they are the child's from its first instant: a parent
/// that drops its handle the moment `fork` returns cannot free an object
/// the child inherited (as a reference the child took for itself could).
///
/// Every count of `held` leaves 0 under the registry's lock, held from here
/// until the fork, so no slot gains handles unseen; one may lose its last
/// handle on another thread meanwhile, which [`ForkRefs::in_child`] finds.
#[cfg(mp_fork)]
pub(crate) fn hold_for_fork() -> ForkRefs {
    let registry = registry();
    let mut taken = Vec::new();
    for arena in registry.mapped.values().filter_map(Weak::upgrade) {
        for (index, held) in arena.held.iter().enumerate() {
            if held.load(Ordering::Acquire) == 0 {
                continue;
            }
            let generation = arena.generations[index].load(Ordering::Relaxed);
            // Refused only if the handles went meanwhile and the object
            // with them (the child inherits no handle then), or the slot
            // counts MAX_REFS already (the child's handles to it would be
            // unguarded, as any holder's past that count).
            if arena.slot(index as u32).retain(generation).is_ok() {
                taken.push((arena.clone(), index as u32, generation));
            }
        }
    }
    ForkRefs { _registry: registry, taken }
}

#[cfg(mp_fork)]
impl ForkRefs {
    /// In the parent: a child was forked (the references are its) or not
    /// (they are given back).
    pub(crate) fn in_parent(self, forked: bool) {
        if !forked {
            for (arena, index, generation) in &self.taken {
                arena.slot(*index).release(*generation);
            }
        }
    }

    /// In the child just forked: keeps the reference taken for each slot it
    /// holds handles to, and gives back the ones whose last handle went on
    /// another thread of the parent between their taking and the fork.
    pub(crate) fn in_child(self) {
        for (arena, index, generation) in &self.taken {
            if arena.held[*index as usize].load(Ordering::Relaxed) == 0 {
                arena.slot(*index).release(*generation);
            }
        }
    }
}

/// A handle's share of one slot: while any lives in this process, the
/// process holds one reference to the slot's object.
pub(crate) struct SlotRef {
    arena: Arc<Arena>,
    index: u32,
    generation: u32,
}

impl Clone for SlotRef {
    fn clone(&self) -> SlotRef {
        self.arena.held[self.index as usize].fetch_add(1, Ordering::Relaxed);
        SlotRef { arena: self.arena.clone(), index: self.index, generation: self.generation }
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        if self.arena.held[self.index as usize].fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let freed = self.arena.slot(self.index).release(self.generation) == Released::Freed;
        if let (true, Some(position)) = (freed, self.arena.ours) {
            let size = size_index(self.arena.layout.slot_size);
            registry().sizes[size].free.push((position, self.index));
        }
    }
}

impl SlotRef {
    /// Start of the slot (its header).
    pub(crate) fn base(&self) -> *mut u8 {
        self.arena.slot_ptr(self.index)
    }

    /// The slot's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.arena.layout.slot_size
    }

    /// The slot's object's header, as a segment of its own would have it.
    pub(crate) fn header(&self, kind: Kind) -> Result<Header, Corrupt> {
        self.arena.slot(self.index).check(self.generation, kind, self.len())
    }

    /// What a message carries for this object: the arena's id, the slot and
    /// its generation.
    pub(crate) fn name(&self) -> (u64, u32, u32) {
        (self.arena.layout.id, self.index, self.generation)
    }

    /// [`name`](Self::name), taking a reference for the receiver.
    pub(crate) fn send(&self) -> Result<(u64, u32, u32), Corrupt> {
        self.arena.slot(self.index).retain(self.generation)?;
        Ok(self.name())
    }

    /// Gives back the reference [`send`](Self::send) took, for a message
    /// that never left.
    pub(crate) fn unsend(&self) {
        self.arena.slot(self.index).release(self.generation);
    }

    /// The arena's handle, for a message that carries it.
    pub(crate) fn handle(&self) -> crate::os::BorrowedHandle<'_> {
        self.arena.segment.handle()
    }

    /// The arena's bell, which its objects' async waiters await.
    #[cfg(mp_bell_handles)]
    pub(crate) fn bell(&self) -> Option<&crate::os::ready::Bell> {
        self.arena.rung.as_deref().map(|r| r.bell())
    }
}

fn size_index(slot_size: usize) -> usize {
    SLOT_SIZES.iter().position(|&s| s == slot_size).expect("an arena's slot size is a SLOT_SIZE")
}

/// A slot for a new object of `size` bytes (its slot header included),
/// described as holding `kind` with `params`: `None` if the object is too
/// large for a slot, or its parameters do not fit one.
pub(crate) fn allocate(kind: Kind, size: usize, params: [u64; 5]) -> Result<Option<SlotRef>> {
    let (Some(slot_size), Some((aux, words))) =
        (multiproc_core::arena::slot_size_for(size), multiproc_core::arena::pack(params))
    else {
        return Ok(None);
    };
    let mut registry = registry();
    let registry = &mut *registry;
    let which = size_index(slot_size);
    let slot = loop {
        if let Some(slot) = registry.sizes[which].claim() {
            break slot;
        }
        let allocator = &mut registry.sizes[which];
        let bytes = allocator.arenas.last().map_or(FIRST_ARENA, |a| 2 * a.segment.len());
        let layout = ArenaLayout::new(slot_size, bytes.min(MAX_ARENA), id()?);
        crate::os::raise_open_files();
        let segment = Segment::create(layout.size())
            .map_err(|e| Error::io("creating an arena segment", e))?;
        let header = layout.header();
        // SAFETY: a fresh segment of layout.size() bytes, page-aligned, not
        // yet shared; Header is plain data.
        unsafe { segment.as_ptr().cast::<Header>().write(header) };
        #[cfg(mp_bell_handles)]
        let rung = {
            let bell = crate::os::ready::Bell::new()
                .map_err(|e| Error::io("creating an arena's readiness handle", e))?;
            Some(crate::os::ready::Rung::serve(bell, segment.as_ptr(), segment.len()))
        };
        let arena = Arc::new(Arena {
            held: held(layout.slots),
            generations: held(layout.slots),
            ours: Some(allocator.arenas.len() as u32),
            #[cfg(mp_bell_handles)]
            rung,
            segment,
            layout,
        });
        registry.mapped.insert(layout.id, Arc::downgrade(&arena));
        allocator.arenas.push(arena);
        allocator.next = 0;
    };
    let (arena, index, generation) = slot;
    let header = arena.slot(index);
    // The slot's object area is zeroed: a freed slot keeps its last
    // object's words, and core's layouts start from all zeros.
    for word in (multiproc_core::arena::SLOT_HEADER_SIZE..slot_size).step_by(8) {
        // SAFETY: in the slot (offsets below its size, 8-aligned as slots
        // are 64-aligned); words of a Shared layout, stored atomically.
        let word = unsafe { &*arena.slot_ptr(index).add(word).cast::<AtomicU64>() };
        word.store(0, Ordering::Relaxed);
    }
    header.describe(kind, size, aux, words);
    // Under the registry's lock (see `hold_for_fork`).
    arena.generations[index as usize].store(generation, Ordering::Relaxed);
    arena.held[index as usize].fetch_add(1, Ordering::Release);
    Ok(Some(SlotRef { arena, index, generation }))
}

impl Allocator {
    /// A slot claimed in an arena this process has: one freed here, a
    /// never-used one, or one a sweep finds free.
    fn claim(&mut self) -> Option<(Arc<Arena>, u32, u32)> {
        if let Some(slot) = self.claim_freed() {
            return Some(slot);
        }
        let newest = self.arenas.last()?;
        while self.next < newest.layout.slots {
            let index = self.next;
            self.next += 1;
            if let Some(generation) = newest.slot(index).claim() {
                return Some((newest.clone(), index, generation));
            }
        }
        // The newest arena is full: slots whose last reference went in
        // another process (or in a forked sibling) are nowhere on the list.
        // A sweep that finds fewer than an eighth of the slots free asks
        // for a new arena as well (what it found is used first), so sweeps
        // cost a bounded share of the allocations they serve.
        let mut total = 0;
        for (position, arena) in self.arenas.iter().enumerate() {
            total += arena.layout.slots as usize;
            for index in (0..arena.layout.slots).rev() {
                if arena.slot(index).generation().is_none() {
                    self.free.push((position as u32, index));
                }
            }
        }
        if self.free.len() < total / 8 {
            return None;
        }
        self.claim_freed()
    }

    /// A slot from the list of freed ones.
    fn claim_freed(&mut self) -> Option<(Arc<Arena>, u32, u32)> {
        while let Some((arena, index)) = self.free.pop() {
            let arena = &self.arenas[arena as usize];
            if let Some(generation) = arena.slot(index).claim() {
                return Some((arena.clone(), index, generation));
            }
        }
        None
    }
}

fn held(slots: u32) -> Box<[AtomicU32]> {
    (0..slots).map(|_| AtomicU32::new(0)).collect()
}

fn id() -> Result<u64> {
    crate::os::random::<8>().map(u64::from_le_bytes)
}

/// The object a message names: slot `index` at `generation` of the arena
/// `id`, whose handle the message carries at `handle`. An arena mapped here
/// already is used if the handle is that arena's (so bytes alone, or with
/// another handle, name nothing). Adopts the reference the sender took.
pub(crate) fn receive(
    id: u64,
    index: u32,
    generation: u32,
    handle: u32,
    bell: Vec<u32>,
) -> Result<SlotRef> {
    let corrupt = |why: &'static str| Error::new(ErrorKind::Corrupt, why);
    let known = registry().mapped.get(&id).and_then(Weak::upgrade);
    let arena = match known {
        Some(arena) => {
            let same = crate::handles::with_incoming(handle, |fd| arena.segment.is_same(fd));
            if !same.map_err(corrupt)? {
                return Err(corrupt("an arena reference came with another object's handle"));
            }
            arena
        }
        None => map(id, crate::handles::import(handle).map_err(corrupt)?, bell)?,
    };
    if index >= arena.layout.slots {
        return Err(Corrupt::BadParams.into());
    }
    match arena.slot(index).generation() {
        Some(found) if found == generation => {}
        Some(found) => {
            return Err(Corrupt::StaleSlot { found, expected: generation }.into());
        }
        None => return Err(corrupt("stale or forged object: its arena slot holds nothing")),
    }
    // This process holds one reference per slot: if it held this one
    // already, the one taken for it is given back. The count leaves 0
    // under the registry's lock (see `hold_for_fork`).
    let first = {
        let _registry = registry();
        let first = arena.held[index as usize].load(Ordering::Relaxed) == 0;
        if first {
            arena.generations[index as usize].store(generation, Ordering::Relaxed);
        }
        arena.held[index as usize].fetch_add(1, Ordering::AcqRel);
        first
    };
    if !first {
        arena.slot(index).release(generation);
    }
    Ok(SlotRef { arena, index, generation })
}

/// Maps a received arena, checks its header, and records it by id.
fn map(id: u64, handle: crate::os::OwnedHandle, bell: Vec<u32>) -> Result<Arc<Arena>> {
    let segment = crate::object::open_received(handle)?;
    let header = crate::object::read_header(&segment, 0)?;
    header.validate(Kind::Arena, segment.len() as u64)?;
    let layout = ArenaLayout::check(&header)?;
    if layout.id != id {
        return Err(Corrupt::BadParams.into());
    }
    #[cfg(mp_bell_handles)]
    let rung = if bell.is_empty() {
        None
    } else {
        let bell = crate::object::import_bell(&bell)?;
        Some(crate::os::ready::Rung::serve(bell, segment.as_ptr(), segment.len()))
    };
    #[cfg(not(mp_bell_handles))]
    let _ = bell;
    let arena = Arc::new(Arena {
        held: held(layout.slots),
        generations: held(layout.slots),
        ours: None,
        #[cfg(mp_bell_handles)]
        rung,
        segment,
        layout,
    });
    let mut registry = registry();
    // Another thread may have mapped it meanwhile: use one mapping.
    if let Some(known) = registry.mapped.get(&id).and_then(Weak::upgrade) {
        return Ok(known);
    }
    registry.mapped.retain(|_, arena| arena.strong_count() > 0);
    registry.mapped.insert(id, Arc::downgrade(&arena));
    Ok(arena)
}

/// As this process ends: gives back the reference to every slot it still
/// holds handles to, which it will never drop, at the generation it holds
/// (never a later object's, should its own have gone meanwhile).
pub(crate) fn release_all() {
    let arenas: Vec<Arc<Arena>> = registry().mapped.values().filter_map(Weak::upgrade).collect();
    for arena in arenas {
        for (index, held) in arena.held.iter().enumerate() {
            if held.swap(0, Ordering::AcqRel) != 0 {
                let generation = arena.generations[index].load(Ordering::Relaxed);
                arena.slot(index as u32).release(generation);
            }
        }
    }
}

/// How many arenas this process maps (for tests and the benchmarks).
pub fn arenas_mapped() -> usize {
    registry().mapped.values().filter(|a| a.strong_count() > 0).count()
}

static_assertions::const_assert!(MAX_SLOT <= FIRST_ARENA / 2);

/// One test at a time of those that fork or count a slot's references: a
/// fork takes references for its child to every object of this process,
/// another test's included (and a test's forked child waits out a test
/// that tampers with a slot).
#[cfg(test)]
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, mp_spawn))]
mod tests {
    //! References across starts, with real children.
    use super::{serial, Arc, Arena, Released, SlotRef};
    use crate::{Lock, Process, StartMethod};
    use std::time::Duration;

    const BOUND: Duration = Duration::from_secs(60);

    fn methods() -> &'static [StartMethod] {
        if cfg!(mp_fork) {
            &[StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer]
        } else {
            &[StartMethod::Spawn]
        }
    }

    fn take(lock: Lock) -> i32 {
        match lock.acquire_timeout(BOUND) {
            Ok(()) => lock.release().map_or(3, |()| 0),
            _ => 2,
        }
    }

    fn join(p: &Process) -> Option<i32> {
        let code = p.join_timeout(BOUND).expect("join");
        if code.is_none() {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(5));
        }
        code
    }

    /// The slot's (arena, index, generation).
    fn whereabouts(slot: &SlotRef) -> (Arc<Arena>, u32, u32) {
        (slot.arena.clone(), slot.index, slot.generation)
    }

    #[test]
    fn a_child_started_by_any_method_leaves_its_references_behind_it() {
        let _serial = serial();
        for &method in methods() {
            let lock = Lock::new().unwrap();
            let p = Process::new(take, (lock.clone(),)).start_method(method).allow_threads(true);
            p.start().unwrap();
            assert_eq!(join(&p), Some(0), "{method:?}");
            let (arena, index, generation) = whereabouts(lock.object().slot().unwrap());
            // Ours is the one reference left: giving it back frees the slot.
            assert_eq!(arena.slot(index).release(generation), Released::Freed, "{method:?}");
            std::mem::forget(lock);
        }
    }

    /// Holds each lock it gets a moment, then drops it.
    #[cfg(mp_fork)]
    fn keep(locks: std::sync::mpsc::Receiver<Lock>) {
        while let Ok(lock) = locks.recv() {
            std::thread::yield_now();
            drop(lock);
        }
    }

    #[test]
    #[cfg(mp_fork)]
    fn forks_beside_a_thread_that_drops_objects_leak_and_steal_nothing() {
        let _serial = serial();
        let (send, locks) = std::sync::mpsc::channel();
        let dropper = std::thread::spawn(move || keep(locks));
        let mut made = Vec::new();
        for round in 0..40 {
            // Objects whose last handle another thread drops while we fork.
            for _ in 0..8 {
                let lock = Lock::new().unwrap();
                made.push(whereabouts(lock.object().slot().unwrap()));
                send.send(lock).unwrap();
            }
            let lock = Lock::new().unwrap();
            made.push(whereabouts(lock.object().slot().unwrap()));
            let p = Process::new(take, (lock.clone(),))
                .start_method(StartMethod::Fork)
                .allow_threads(true);
            p.start().unwrap();
            drop(lock);
            assert_eq!(join(&p), Some(0), "round {round}");
        }
        drop(send);
        dropper.join().unwrap();
        // Every object made is gone: no child kept a reference, and none
        // gave back one it did not take (which would have freed a slot
        // under a later object, failing a child's `take`).
        for (arena, index, generation) in made {
            assert_ne!(arena.slot(index).generation(), Some(generation));
        }
    }
}
