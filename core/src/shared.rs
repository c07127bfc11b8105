//! # Safety
//!
//! This file turns raw shared memory into references. Its obligations: a
//! reference is handed out only for a [`Shared`] type, in bounds, aligned,
//! and for no longer than the caller promises the mapping stays mapped.
#![allow(unsafe_code)]

/// Types that may live in memory shared with other, untrusted processes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no pointers, references, file
/// descriptors or handles (offsets only), be valid for *every* bit pattern
/// (a corrupted segment then breaks logic, never memory safety), and mutate
/// only through atomics (shared references to them are aliased by peers).
pub unsafe trait Shared: Sized {}

/// Views `T` at `offset` in a mapping of `len` bytes at `base`; `None` when
/// it would be out of bounds or misaligned.
///
/// # Safety
/// - `base..base + len` must be mapped, readable and writable, for `'a`.
/// - Other code may write those bytes only through `Shared` views or while
///   holding the lock that guards them.
pub unsafe fn view<'a, T: Shared>(base: *const u8, len: usize, offset: usize) -> Option<&'a T> {
    let end = offset.checked_add(core::mem::size_of::<T>())?;
    if end > len {
        return None;
    }
    let ptr = base.wrapping_add(offset);
    if ptr.align_offset(core::mem::align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: in bounds and aligned (checked above), mapped for 'a (caller),
    // and every bit pattern is a valid T (`Shared`).
    Some(unsafe { &*(ptr as *const T) })
}

/// The primitives' layouts. Each is `#[repr(C)]` of atomics only, and each
/// file's state table gives a meaning (if only "corrupt") to every bit
/// pattern, so these impls rest on the checks next to each layout.
#[cfg(not(loom))]
mod impls {
    use super::Shared;
    use crate::{barrier, condition, event, lock, rlock, semaphore};

    // SAFETY: repr(C), atomics only; every state word is in lock.rs's table.
    unsafe impl Shared for lock::RawLock {}
    // SAFETY: repr(C) of a Shared RawLock and atomics; any count is memory-safe.
    unsafe impl Shared for rlock::RawRLock {}
    // SAFETY: repr(C), atomics only; a value above the bound is refused by
    // `release`, not trusted.
    unsafe impl Shared for semaphore::RawSemaphore {}
    // SAFETY: repr(C), atomics only; every word is a flag and a generation.
    unsafe impl Shared for event::RawEvent {}
    // SAFETY: repr(C), atomics only; every value is a sequence and a count.
    unsafe impl Shared for condition::RawCondition {}
    // SAFETY: repr(C), atomics only; every word decodes to a state, and
    // parties out of range make `wait` fail with Broken.
    unsafe impl Shared for barrier::RawBarrier {}
    // SAFETY: repr(C), atomics only; every value is a count and a count.
    unsafe impl Shared for crate::countdown::RawCountdown {}
    // SAFETY: repr(C), atomics only; every state is a generation and a
    // count, and `check` refuses any shape that does not fit the slot.
    unsafe impl Shared for crate::arena::SlotHeader {}
    // SAFETY: repr(C) of a Shared RawLock and atomics; the ring validates
    // every index and frame against the caller's data area (spsc.rs).
    #[cfg(feature = "alloc")]
    unsafe impl Shared for crate::ring::spsc::Channel {}
}
