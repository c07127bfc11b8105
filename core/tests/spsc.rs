//! Models of the SPSC byte ring, written once: exhaustive under loom, with
//! threads otherwise. A 64-byte data area keeps frames at 8 payload bytes,
//! so the messages here wrap, pad, fragment and fill the ring.

use multiproc_core::ring::spsc::{
    max_frame_payload, Reader, RecvError, SendError, SpscRing, Writer,
};
use multiproc_core::testing::{model, thread, Arc, TestBytes, TestPark};
use multiproc_core::Deadline;
use std::time::Duration;

type Quiet = TestPark<false>;
const CAP: usize = 64;

fn messages() -> Vec<Vec<u8>> {
    let rounds = if cfg!(loom) { 1 } else { 500 };
    let mut all = Vec::new();
    for r in 0..rounds {
        let r = r as u8;
        all.push(vec![r; 1]);
        all.push((0..20).map(|i| i ^ r).collect()); // three fragments
        all.push(Vec::new());
        if !cfg!(loom) {
            all.push((0..200u32).map(|i| i as u8 ^ r).collect()); // > capacity
        }
    }
    all
}

struct Ring {
    park: Quiet,
    ring: SpscRing,
    data: TestBytes,
}

fn ring() -> Arc<Ring> {
    Arc::new(Ring { park: Quiet::default(), ring: SpscRing::new(), data: TestBytes::new(CAP) })
}

#[test]
fn delivers_every_message_in_order_across_wraps_and_fragments() {
    model(|| {
        let r = ring();
        let p = r.clone();
        let producer = thread::spawn(move || {
            let mut w = Writer::default();
            for m in messages() {
                p.ring
                    .producer(&p.park, &p.data, &mut w)
                    .send(&m, Deadline::NEVER, || true)
                    .unwrap();
            }
            p.ring.close_producer(&p.park);
        });
        let mut reader = Reader::default();
        let mut out = Vec::new();
        for m in messages() {
            r.ring
                .consumer(&r.park, &r.data, &mut reader)
                .recv(&mut out, usize::MAX, Deadline::NEVER, || true)
                .unwrap();
            assert_eq!(out, m);
        }
        let end = r.ring.consumer(&r.park, &r.data, &mut reader).recv(
            &mut out,
            1 << 20,
            Deadline::NEVER,
            || true,
        );
        assert_eq!(end, Err(RecvError::Disconnected));
        producer.join().unwrap();
    });
}

/// Sends `m` in place when it fits one frame (after a fill that declines,
/// which must publish nothing), by copy otherwise.
fn send_either(p: &Ring, w: &mut Writer, m: &[u8]) {
    let mut producer = p.ring.producer(&p.park, &p.data, w);
    if m.len() > max_frame_payload(CAP) {
        return producer.send(m, Deadline::NEVER, || true).unwrap();
    }
    let declined = producer.send_in_place(
        m.len(),
        Deadline::NEVER,
        || true,
        |buf| {
            buf.fill(0xEE);
            false
        },
    );
    assert_eq!(declined, Ok(false));
    let sent = producer.send_in_place(
        m.len(),
        Deadline::NEVER,
        || true,
        |buf| {
            buf.copy_from_slice(m);
            true
        },
    );
    assert_eq!(sent, Ok(true));
}

#[test]
fn in_place_sends_and_reads_mix_with_fragments() {
    model(|| {
        let r = ring();
        let p = r.clone();
        let producer = thread::spawn(move || {
            let mut w = Writer::default();
            for m in messages() {
                send_either(&p, &mut w, &m);
            }
            p.ring.close_producer(&p.park);
        });
        let mut reader = Reader::default();
        for m in messages() {
            let mut got = None;
            let mut consumer = r.ring.consumer(&r.park, &r.data, &mut reader);
            let in_place = consumer
                .recv_in_place(Deadline::NEVER, || true, |bytes| got = Some(bytes.to_vec()))
                .unwrap();
            assert_eq!(in_place, m.len() <= max_frame_payload(CAP));
            if !in_place {
                let mut out = Vec::new();
                consumer.recv(&mut out, usize::MAX, Deadline::NEVER, || true).unwrap();
                got = Some(out);
            }
            assert_eq!(got.as_deref(), Some(&m[..]));
        }
        let end = r.ring.consumer(&r.park, &r.data, &mut reader).recv_in_place(
            Deadline::NEVER,
            || true,
            |_| panic!("nothing was sent"),
        );
        assert_eq!(end, Err(RecvError::Disconnected));
        producer.join().unwrap();
    });
}

#[test]
fn timeouts_return_and_a_cut_message_is_withdrawn() {
    model(|| {
        let r = ring();
        let mut w = Writer::default();
        let mut reader = Reader::default();
        let mut out = Vec::new();
        let soon = |r: &Ring| Deadline::after(&r.park, Duration::from_millis(2));
        // Empty: recv times out.
        let got =
            r.ring.consumer(&r.park, &r.data, &mut reader).recv(&mut out, 100, soon(&r), || true);
        assert_eq!(got, Err(RecvError::Timeout));
        // Larger than the ring with nobody reading: send times out midway.
        let big = vec![7u8; 100];
        let sent = r.ring.producer(&r.park, &r.data, &mut w).send(&big, soon(&r), || true);
        assert_eq!(sent, Err(SendError::Timeout));
        // The consumer takes the fragments so far, then times out inside it.
        let got =
            r.ring.consumer(&r.park, &r.data, &mut reader).recv(&mut out, 1000, soon(&r), || true);
        assert_eq!(got, Err(RecvError::Timeout));
        // The next send withdraws the cut message; only the new one arrives.
        r.ring.producer(&r.park, &r.data, &mut w).send(b"next", soon(&r), || true).unwrap();
        r.ring
            .consumer(&r.park, &r.data, &mut reader)
            .recv(&mut out, 1000, soon(&r), || true)
            .unwrap();
        assert_eq!(out, b"next");
    });
}

#[test]
fn too_large_is_skipped_and_the_next_message_arrives() {
    model(|| {
        let r = ring();
        let p = r.clone();
        let producer = thread::spawn(move || {
            let mut w = Writer::default();
            p.ring
                .producer(&p.park, &p.data, &mut w)
                .send(&[1; 20], Deadline::NEVER, || true)
                .unwrap();
            p.ring
                .producer(&p.park, &p.data, &mut w)
                .send(&[2; 5], Deadline::NEVER, || true)
                .unwrap();
        });
        let mut reader = Reader::default();
        let mut out = Vec::new();
        let first = r.ring.consumer(&r.park, &r.data, &mut reader).recv(
            &mut out,
            10,
            Deadline::NEVER,
            || true,
        );
        assert_eq!(first, Err(RecvError::TooLarge));
        r.ring
            .consumer(&r.park, &r.data, &mut reader)
            .recv(&mut out, 10, Deadline::NEVER, || true)
            .unwrap();
        assert_eq!(out, [2; 5]);
        producer.join().unwrap();
    });
}

#[test]
fn a_closed_consumer_fails_sends() {
    model(|| {
        let r = ring();
        let p = r.clone();
        let producer = thread::spawn(move || {
            let mut w = Writer::default();
            // Fill the ring, then block until the consumer closes.
            let mut sent = 0;
            loop {
                match p.ring.producer(&p.park, &p.data, &mut w).send(
                    &[0; 8],
                    Deadline::NEVER,
                    || true,
                ) {
                    Ok(()) => sent += 1,
                    Err(e) => return (sent, e),
                }
            }
        });
        r.ring.close_consumer(&r.park);
        let (_, e) = producer.join().unwrap();
        assert_eq!(e, SendError::Disconnected);
    });
}

#[cfg(not(loom))]
#[test]
fn a_dead_producer_is_disconnected_and_garbage_is_corrupt() {
    use multiproc_core::ring::Bytes;
    use multiproc_core::testing::TestPark;
    // With liveness checks on, `connected` reporting false ends a wait.
    let park = TestPark::<true>::default();
    let (ring, data) = (SpscRing::new(), TestBytes::new(CAP));
    let (mut reader, mut out) = (Reader::default(), Vec::new());
    let got =
        ring.consumer(&park, &data, &mut reader).recv(&mut out, 100, Deadline::NEVER, || false);
    assert_eq!(got, Err(RecvError::Disconnected));

    // A header a producer of ours never writes: unknown flags.
    let mut w = Writer::default();
    ring.producer(&park, &data, &mut w).send(b"abc", Deadline::NEVER, || true).unwrap();
    data.write(4, &0x8000u32.to_le_bytes());
    let got =
        ring.consumer(&park, &data, &mut reader).recv(&mut out, 100, Deadline::NEVER, || true);
    assert_eq!(got, Err(RecvError::Corrupt));

    // A length past the published bytes.
    let (ring, data) = (SpscRing::new(), TestBytes::new(CAP));
    let mut w = Writer::default();
    ring.producer(&park, &data, &mut w).send(b"abc", Deadline::NEVER, || true).unwrap();
    data.write(0, &12u32.to_le_bytes());
    let mut reader = Reader::default();
    let got =
        ring.consumer(&park, &data, &mut reader).recv(&mut out, 100, Deadline::NEVER, || true);
    assert_eq!(got, Err(RecvError::Corrupt));
}

/// The Queue's use of the ring: several producers, each taking the send
/// side's lock around a send (as `multiproc::Queue` does), one consumer.
/// Every message arrives once, each producer's in order.
#[test]
fn locked_producers_share_one_ring() {
    use multiproc_core::lock::Owner;
    use multiproc_core::ring::spsc::Channel;
    const PRODUCERS: u8 = 2;
    let per: u8 = if cfg!(loom) { 1 } else { 200 };
    model(move || {
        let park = Arc::new(Quiet::default());
        let channel = Arc::new(Channel::default());
        let data = Arc::new(TestBytes::new(CAP));
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (park, channel, data) = (park.clone(), channel.clone(), data.clone());
                thread::spawn(move || {
                    let me = Owner { id: u32::from(p) + 1, stamp: 1 };
                    for seq in 0..per {
                        let side = &channel.sender;
                        let _ = side.lock.lock(&*park, me, Deadline::NEVER).unwrap();
                        let mut w = side.writer();
                        // Ten bytes: more than one 8-byte frame, so sends
                        // of different producers could interleave frames
                        // if the lock did not hold.
                        let msg = [p, seq, 0, 0, 0, 0, 0, 0, 0, 0];
                        channel
                            .ring
                            .producer(&*park, &*data, &mut w)
                            .send(&msg, Deadline::NEVER, || true)
                            .unwrap();
                        side.store_writer(&w);
                        side.lock.unlock(&*park, me).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u8; PRODUCERS as usize];
        let (mut reader, mut out) = (Reader::default(), Vec::new());
        for _ in 0..u32::from(PRODUCERS) * u32::from(per) {
            channel
                .ring
                .consumer(&*park, &*data, &mut reader)
                .recv(&mut out, 64, Deadline::NEVER, || true)
                .unwrap();
            let (p, seq) = (out[0] as usize, out[1]);
            assert_eq!(seq, next[p], "producer {p} out of order or repeated");
            next[p] += 1;
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// A consumer that died mid-call advanced `head` without storing its
/// reader state: the next one starts from a stale cache and must find its
/// way (this read as `Corrupt` before the cache was checked against `head`).
#[test]
fn a_stale_reader_cache_after_a_dead_consumer_recovers() {
    model(|| {
        let r = ring();
        let mut w = Writer::default();
        for m in [b"one".as_slice(), b"two", b"three"] {
            r.ring.producer(&r.park, &r.data, &mut w).send(m, Deadline::NEVER, || true).unwrap();
        }
        let (mut first, mut out) = (Reader::default(), Vec::new());
        r.ring
            .consumer(&r.park, &r.data, &mut first)
            .recv(&mut out, 100, Deadline::NEVER, || true)
            .unwrap();
        r.ring
            .consumer(&r.park, &r.data, &mut first)
            .recv(&mut out, 100, Deadline::NEVER, || true)
            .unwrap();
        // `first` dies here; its state was never stored.
        let mut next = Reader::default();
        next.resync();
        r.ring
            .consumer(&r.park, &r.data, &mut next)
            .recv(&mut out, 100, Deadline::NEVER, || true)
            .unwrap();
        assert_eq!(out, b"three");
    });
}

/// A wait that had to park halves the side's spin budget, and the budget
/// lives in the receiving `Endpoint` from one holder to the next.
#[cfg(not(loom))]
#[test]
fn a_reader_that_parks_spins_less_next_time() {
    use multiproc_core::ring::spsc::Endpoint;
    use multiproc_core::sync::SPIN_LIMIT;
    let r = ring();
    let side = Endpoint::default();
    let mut reader = side.reader();
    assert_eq!(reader.spin_budget().pauses(), SPIN_LIMIT);
    let deadline = Deadline::after(&r.park, Duration::from_millis(2));
    let got =
        r.ring.consumer(&r.park, &r.data, &mut reader).recv(&mut Vec::new(), 8, deadline, || true);
    assert_eq!(got, Err(RecvError::Timeout));
    let pauses = reader.spin_budget().pauses();
    assert!((SPIN_LIMIT / 2..SPIN_LIMIT).contains(&pauses), "{pauses} pauses");
    side.store_reader(&reader);
    assert_eq!(side.reader().spin_budget(), reader.spin_budget());
}
