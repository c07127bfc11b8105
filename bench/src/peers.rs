//! The peers users weigh multiproc against for messages between two
//! processes, each used the way its own documentation shows: iceoryx2's
//! publish-subscribe over shared memory (receivers poll, and read a sample
//! where it lies), and interprocess's local sockets (a byte stream: the
//! receiver reads through a `BufReader`, as a user would). Linux only here:
//! their build needs nothing more than the host, and the other targets'
//! lint builds stay free of them.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::prelude::*;
use interprocess::local_socket::{prelude::*, GenericNamespaced, ListenerOptions, Stream};
use multiproc::{Event, Process, StartMethod};
use std::hint::black_box;
use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Forks `f` with the handles it captured (a fork inherits them).
fn forked(f: impl FnOnce() + Send + 'static) -> Process {
    let p = Process::with_closure(f).start_method(StartMethod::Fork).allow_threads(true);
    p.start().expect("fork");
    p
}

/// A name no other measurement of this run, or of another run, uses.
fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("multiproc-bench-{what}-{}-{n}", std::process::id())
}

/// Waits for the other process to say it is set up (bounded: a peer that
/// failed to set up ends the measurement instead of hanging it).
fn await_ready(ready: &Event) {
    assert!(ready.wait_timeout(Duration::from_secs(30)), "the peer never got ready");
}

/// What a run's figure is: M msg/s for 8-byte messages, GB/s otherwise
/// (as the Pipe stream rows).
fn rate(size: usize, count: u64, elapsed: Duration) -> f64 {
    let per_s = count as f64 / elapsed.as_secs_f64();
    if size == 8 {
        per_s / 1e6
    } else {
        per_s * size as f64 / 1e9
    }
}

type Ipc = ipc::Service;
type Factory<T> = iceoryx2::service::port_factory::publish_subscribe::PortFactory<Ipc, T, ()>;

fn new_node() -> Node<Ipc> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<Ipc>().expect("an iceoryx2 node")
}

/// One direction of `u64`s that never drops one (a full subscriber
/// buffer makes the publisher retry).
fn ice_u64(node: &Node<Ipc>, name: &str) -> Factory<u64> {
    node.service_builder(&name.try_into().expect("a service name"))
        .publish_subscribe::<u64>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(256)
        .history_size(0)
        .open_or_create()
        .expect("an iceoryx2 service")
}

/// A publisher of `u64`s on [`ice_u64`]'s service that retries while its
/// subscriber's buffer is full.
fn ice_u64_publisher(node: &Node<Ipc>, name: &str) -> Publisher<Ipc, u64, ()> {
    ice_u64(node, name)
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("publisher")
}

/// One direction of byte slices up to `size`, that never drops one.
fn ice_bytes(node: &Node<Ipc>, name: &str) -> Factory<[u8]> {
    node.service_builder(&name.try_into().expect("a service name"))
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(8)
        .history_size(0)
        .open_or_create()
        .expect("an iceoryx2 service")
}

/// Receives one sample, polling (iceoryx2's receive does not block); a
/// peer silent for 30 s ends the measurement instead of hanging it.
macro_rules! ice_receive {
    ($sub:expr) => {{
        let mut polls = 0u32;
        let since = Instant::now();
        loop {
            match $sub.receive().expect("receive") {
                Some(sample) => break sample,
                None => {
                    polls = polls.wrapping_add(1);
                    if polls % 4096 == 0 {
                        assert!(since.elapsed() < Duration::from_secs(30), "iceoryx2 peer silent");
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }};
}

/// Sends (`send` returns to how many subscribers) until one subscriber
/// got it: now and then (a few in a million, here) a publisher finds its
/// one subscriber not connected for a moment, and a sample sent then is
/// delivered to nobody.
fn delivered(mut send: impl FnMut() -> usize) {
    let since = Instant::now();
    while send() == 0 {
        assert!(since.elapsed() < Duration::from_secs(30), "no iceoryx2 subscriber");
    }
}

/// A sample lives in its publisher's memory: a publisher that went away
/// would take unread ones with it, so it stays until the reader is done.
fn linger(done: &Event) {
    assert!(done.wait_timeout(Duration::from_secs(60)), "the reader never finished");
}

/// µs per 8-byte round trip over two iceoryx2 services, both sides polling.
pub fn iceoryx2_round_trip(rounds: u64) -> f64 {
    let (ping, pong) = (unique("ping"), unique("pong"));
    let node = new_node();
    let back = ice_u64(&node, &pong).subscriber_builder().create().expect("subscriber");
    let (ready, done) = (Event::new().unwrap(), Event::new().unwrap());
    let (child_ready, child_done) = (ready.clone(), done.clone());
    let child_ping = ping.clone();
    let p = forked(move || {
        let node = new_node();
        let pings = ice_u64(&node, &child_ping).subscriber_builder().create().expect("subscriber");
        let pongs = ice_u64_publisher(&node, &pong);
        child_ready.set();
        for _ in 0..=rounds {
            let got = *ice_receive!(pings);
            delivered(|| pongs.send_copy(got).expect("send"));
        }
        linger(&child_done);
    });
    let pings = ice_u64_publisher(&node, &ping);
    await_ready(&ready);
    delivered(|| pings.send_copy(0).expect("send"));
    black_box(*ice_receive!(back));
    let t = Instant::now();
    for i in 1..=rounds {
        delivered(|| pings.send_copy(i).expect("send"));
        black_box(*ice_receive!(back));
    }
    let elapsed = t.elapsed();
    done.set();
    assert_eq!(p.join().unwrap(), 0);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

/// A stream of `count` messages of `size` bytes from a child over
/// iceoryx2: `u64`s for 8 bytes, byte slices (written in place, read where
/// they lie) otherwise. `read_all`: the receiver reads every byte (an XOR
/// of its words), else only the length.
pub fn iceoryx2_stream(size: usize, count: u64, read_all: bool) -> f64 {
    let name = unique("stream");
    let node = new_node();
    let (ready, done) = (Event::new().unwrap(), Event::new().unwrap());
    let (child_ready, child_done) = (ready.clone(), done.clone());
    let child_name = name.clone();
    let send = move || {
        let node = new_node();
        if size == 8 {
            let publisher = ice_u64_publisher(&node, &child_name);
            await_ready(&child_ready);
            for i in 0..count {
                delivered(|| publisher.send_copy(i).expect("send"));
            }
            linger(&child_done);
        } else {
            let publisher = ice_bytes(&node, &child_name)
                .publisher_builder()
                .initial_max_slice_len(size)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .expect("publisher");
            await_ready(&child_ready);
            for i in 0..count {
                delivered(|| {
                    let sample = publisher.loan_slice_uninit(size).expect("loan");
                    // Filled as ours is in `send_with` (one pass of stores).
                    let sample = sample.write_from_fn(|_| i as u8);
                    sample.send().expect("send")
                });
            }
            linger(&child_done);
        }
    };
    let elapsed = if size == 8 {
        let sub = ice_u64(&node, &name).subscriber_builder().create().expect("subscriber");
        let p = forked(send);
        ready.set();
        black_box(*ice_receive!(sub));
        let t = Instant::now();
        for _ in 1..count {
            black_box(*ice_receive!(sub));
        }
        let elapsed = t.elapsed();
        done.set();
        assert_eq!(p.join().unwrap(), 0);
        elapsed
    } else {
        let sub = ice_bytes(&node, &name).subscriber_builder().create().expect("subscriber");
        let p = forked(send);
        ready.set();
        let look = |bytes: &[u8]| crate::ours::look_at(bytes, read_all);
        black_box(look(ice_receive!(sub).payload()));
        let t = Instant::now();
        for _ in 1..count {
            black_box(look(ice_receive!(sub).payload()));
        }
        let elapsed = t.elapsed();
        done.set();
        assert_eq!(p.join().unwrap(), 0);
        elapsed
    };
    rate(size, count - 1, elapsed)
}

/// A listener on a fresh abstract-namespace local socket, and its name.
fn local_listener() -> (interprocess::local_socket::Listener, String) {
    let name = unique("sock");
    let listener = ListenerOptions::new()
        .name(name.clone().to_ns_name::<GenericNamespaced>().expect("a socket name"))
        .create_sync()
        .expect("a local socket listener");
    (listener, name)
}

fn connect(name: &str) -> Stream {
    Stream::connect(name.to_ns_name::<GenericNamespaced>().expect("a socket name"))
        .expect("connect")
}

/// µs per 8-byte round trip over an interprocess local socket.
pub fn interprocess_round_trip(rounds: u64) -> f64 {
    let (listener, name) = local_listener();
    let p = forked(move || {
        let mut conn = connect(&name);
        let mut m = [0u8; 8];
        for _ in 0..=rounds {
            conn.read_exact(&mut m).expect("read");
            conn.write_all(&m).expect("write");
        }
    });
    let mut conn = listener.accept().expect("accept");
    let mut m = [0u8; 8];
    conn.write_all(&m).expect("write");
    conn.read_exact(&mut m).expect("read");
    let t = Instant::now();
    for _ in 0..rounds {
        conn.write_all(&[1; 8]).expect("write");
        conn.read_exact(&mut m).expect("read");
        black_box(&m);
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

/// A stream of `count` messages of `size` bytes from a child over an
/// interprocess local socket: one `write_all` each, read whole through a
/// `BufReader`.
pub fn interprocess_stream(size: usize, count: u64) -> f64 {
    let (listener, name) = local_listener();
    let p = forked(move || {
        let mut conn = connect(&name);
        let block = vec![7u8; size];
        for _ in 0..count {
            conn.write_all(&block).expect("write");
        }
    });
    let mut conn = BufReader::new(listener.accept().expect("accept"));
    let mut buf = vec![0u8; size];
    conn.read_exact(&mut buf).expect("read");
    let t = Instant::now();
    for _ in 1..count {
        conn.read_exact(&mut buf).expect("read");
        black_box(&buf);
    }
    let elapsed = t.elapsed();
    assert_eq!(p.join().unwrap(), 0);
    rate(size, count - 1, elapsed)
}
