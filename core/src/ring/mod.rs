//! Rings in shared memory that carry variable-length messages.
//!
//! [`spsc`]: one producer, one consumer. Each direction of a Pipe is one;
//! a Queue is one too, each of its sides behind a biased lock
//! ([`bias`](crate::bias)) so that any number of processes put and get.
//!
//! The ring's bytes live outside its control block, behind [`Bytes`], so
//! the algorithm stays safe code: the facade implements it over a mapped
//! segment, and the models over loom-checked cells.

mod frame;
pub mod spsc;
mod wait;

/// The data area of a ring: `len()` bytes that the producer writes and the
/// consumer reads. Offsets and lengths passed in are always in bounds; the
/// ring's Release/Acquire on its indices orders each write before the reads
/// of the same bytes.
pub trait Bytes {
    /// The data area's length in bytes.
    fn len(&self) -> usize;
    /// Whether the data area has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `src` to `offset..offset + src.len()`.
    fn write(&self, offset: usize, src: &[u8]);
    /// Copies `offset..offset + dst.len()` into `dst`.
    fn read(&self, offset: usize, dst: &mut [u8]);
    /// Lends `offset..offset + len` to `fill` to write in place (a frame
    /// the producer owns until it publishes it). An implementation that
    /// cannot lend its bytes may lend a buffer and copy it in afterwards.
    fn write_in_place<R>(&self, offset: usize, len: usize, fill: impl FnOnce(&mut [u8]) -> R)
        -> R;
    /// Lends `offset..offset + len` to `read` where it lies (a published
    /// frame the consumer owns until it moves `head` past it). An
    /// implementation that cannot lend its bytes may lend a copy.
    fn read_in_place<R>(&self, offset: usize, len: usize, read: impl FnOnce(&[u8]) -> R) -> R;
}

/// Pads `T` to its own 64-byte cache line, so the producer's and the
/// consumer's indices do not share one.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
