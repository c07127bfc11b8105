//! The frame codec of the SPSC ring: every frame starts 8-byte aligned
//! with an 8-byte header, `len: u32` (LE) then `flags: u32` (LE), and takes
//! `8 + align8(len)` bytes (see [`spsc`](super::spsc) for how frames make
//! messages).

pub(super) const HEADER: usize = 8;
/// First fragment of a message.
pub(super) const FIRST: u32 = 1;
/// Last fragment of a message.
pub(super) const LAST: u32 = 2;
/// Filler up to the end of the buffer: nothing to deliver.
pub(super) const PAD: u32 = 4;
/// Drop the fragments of the message in progress.
pub(super) const ABORT: u32 = 8;
pub(super) const KNOWN: u32 = FIRST | LAST | PAD | ABORT;

/// Smallest capacity a ring may have.
pub const MIN_CAPACITY: usize = 64;

/// Largest payload of one frame for a data area of `capacity` bytes: a
/// quarter, so a frame plus the padding before it always fits an empty ring.
pub fn max_frame_payload(capacity: usize) -> usize {
    capacity / 4 - HEADER
}

/// Whether `capacity` is usable: a power of two of at least [`MIN_CAPACITY`].
pub fn valid_capacity(capacity: usize) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY && capacity <= u32::MAX as usize
}

pub(super) fn align8(n: usize) -> usize {
    (n + 7) & !7
}

pub(super) fn encode(len: usize, flags: u32) -> [u8; HEADER] {
    let mut h = [0; HEADER];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..].copy_from_slice(&flags.to_le_bytes());
    h
}

pub(super) fn decode(h: [u8; HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    (len, u32::from_le_bytes([h[4], h[5], h[6], h[7]]))
}

/// What one frame did to the message in progress.
pub(super) enum Frame {
    /// Nothing to return yet.
    More,
    /// A message is complete in the caller's buffer.
    Complete,
    /// A single-frame message was read where it lies.
    InPlace,
    /// The message passed the limit; its rest will be skipped.
    TooLarge,
}

