//! Harnesses for the fuzz targets in `fuzz/` (built under `cfg(fuzzing)`,
//! and under `cfg(test)` so the unit tests below keep them compiling).
//!
//! - [`spsc_consumer`]: a consumer handed arbitrary ring memory (indices,
//!   frame headers, payloads) must return messages or an error, within
//!   the caller's limit, never panic, read out of bounds, or hang.
//! - [`spsc_model`]: a sequence of sends and receives applied to the ring
//!   and to a `VecDeque` must agree at every step.

extern crate std;
use crate::ring::spsc::{Reader, RecvError, SpscRing, Writer};
use crate::ring::Bytes;
use crate::testing::{TestBytes, TestPark};
use crate::Deadline;
use std::collections::VecDeque;
use std::vec::Vec;

const CAP: usize = 256;

/// Input: `head: u64 LE`, `tail: u64 LE`, `limit: u16 LE`, then the data
/// area (truncated or zero-padded to 256 bytes).
pub fn spsc_consumer(input: &[u8]) {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        for (i, x) in b.iter_mut().enumerate() {
            *x = input.get(at + i).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let (head, tail) = (word(0), word(8));
    let limit = usize::from(u16::from_le_bytes([
        input.get(16).copied().unwrap_or(0),
        input.get(17).copied().unwrap_or(0),
    ]));
    let data = TestBytes::new(CAP);
    let area = input.get(18..).unwrap_or(&[]);
    data.write(0, &area[..area.len().min(CAP)]);
    let ring = SpscRing::from_indices(head, tail);
    let park = TestPark::<true>::default();
    let mut reader = Reader::default();
    let mut out = Vec::new();
    // At most one message per 8 bytes of ring, then it must have stopped.
    // The reader's cached tail (0 here, as in a fresh `Reader`) is trusted
    // while it is at most a ring ahead of `head`, so a corrupt `head` just
    // under it is worth one ring of frames before `tail` itself is read:
    // two rings in all. An odd limit tries each message in place first, as
    // `recv_with` does.
    for _ in 0..=2 * CAP / 8 + 1 {
        let mut consumer = ring.consumer(&park, &data, &mut reader);
        if limit % 2 == 1 && !consumer.in_message() {
            let mut seen = None;
            match consumer.recv_in_place(Deadline::now(&park), || true, |b| seen = Some(b.len())) {
                Ok(true) => {
                    assert!(seen.is_some_and(|n| n <= crate::ring::spsc::max_frame_payload(CAP)));
                    continue;
                }
                Ok(false) => {}
                Err(_) => return,
            }
        }
        let got = consumer.recv(&mut out, limit, Deadline::now(&park), || true);
        match got {
            Ok(()) => assert!(out.len() <= limit),
            Err(RecvError::TooLarge) => {}
            Err(_) => return,
        }
    }
    panic!("the consumer kept finding messages in a 256-byte ring");
}

/// Input: a sequence of operations, two bytes each: `(op, arg)`. Even `op`:
/// send a message of `arg * (op >> 1 & 7)` bytes; odd: receive one.
pub fn spsc_model(input: &[u8]) {
    let data = TestBytes::new(CAP);
    let ring = SpscRing::new();
    let park = TestPark::<false>::default();
    let (mut writer, mut reader) = (Writer::default(), Reader::default());
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out = Vec::new();
    for (n, op) in input.chunks_exact(2).enumerate() {
        let (kind, arg) = (op[0], op[1]);
        if kind % 2 == 0 {
            let len = usize::from(arg) * usize::from(kind >> 1 & 7);
            let msg: Vec<u8> = (0..len).map(|i| (i + n) as u8).collect();
            let sent = ring.producer(&park, &data, &mut writer).send(&msg, Deadline::now(&park), || true);
            if sent.is_ok() {
                model.push_back(msg);
            }
        } else {
            let got = ring.consumer(&park, &data, &mut reader).recv(&mut out, usize::MAX, Deadline::now(&park), || true);
            match got {
                Ok(()) => assert_eq!(Some(&out), model.pop_front().as_ref()),
                Err(RecvError::Timeout) => {
                    assert!(model.is_empty(), "a sent message was not received")
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn harnesses_run() {
        super::spsc_consumer(&[]);
        super::spsc_consumer(&[0xff; 300]);
        let mut frame = std::vec![0u8; 18];
        frame[8] = 16; // tail = 16: one frame of 8 payload bytes
        frame.extend([8, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        super::spsc_consumer(&frame);
        super::spsc_model(&[2, 10, 1, 0, 14, 200, 14, 200, 1, 0, 1, 0, 1, 0]);
        super::spsc_model(&[0, 0, 1, 0, 1, 0]);
    }

    /// Inputs the fuzzer found: indices near `u64::MAX` overflowed `head`.
    #[test]
    fn regressions() {
        use super::CAP;
        let cases: [&[u8]; 2] = [
            &[
                0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255,
                255, 4, 0, 0, 0, 1,
            ],
            &[
                0, 255, 255, 255, 255, 255, 255, 255, 255, 142, 255, 1, 1, 0, 0, 0, 0, 0, 9, 0, 0,
                0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 93, 0, 0, 4, 0, 0, 4, 0, 0, 0,
            ],
        ];
        for case in cases {
            super::spsc_consumer(case);
        }
        // A ring of empty frames behind the fresh reader's cached tail of 0
        // (head = 2^64 - 256), then `tail` = 256: a second ring of them.
        let mut case = std::vec::Vec::new();
        case.extend((u64::MAX - 255).to_le_bytes());
        case.extend(256u64.to_le_bytes());
        case.extend([0, 0]);
        for _ in 0..CAP / 8 {
            case.extend([0, 0, 0, 0, 3, 0, 0, 0]);
        }
        super::spsc_consumer(&case);
    }
}
