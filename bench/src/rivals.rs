//! What users would pick instead of multiproc, on the same workloads:
//! ipc-channel between processes, crossbeam-channel inside one (the
//! ceiling a cross-process queue can only approach), procspawn to run a
//! function in a new process.

use ipc_channel::ipc;
use multiproc::{Process, StartMethod};
use std::hint::black_box;
use std::time::Instant;

/// Forks `f` (ipc-channel's endpoints are fds, inherited by a fork).
fn forked(f: impl FnOnce() + Send + 'static) -> Process {
    let p = Process::with_closure(f).start_method(StartMethod::Fork).allow_threads(true);
    p.start().expect("fork");
    p
}

/// µs per 8-byte round trip over two ipc-channel byte channels.
pub fn ipc_round_trip(rounds: u64) -> f64 {
    let (to_tx, to_rx) = ipc::bytes_channel().unwrap();
    let (back_tx, back_rx) = ipc::bytes_channel().unwrap();
    let p = forked(move || {
        for _ in 0..=rounds {
            let m = to_rx.recv().unwrap();
            back_tx.send(&m).unwrap();
        }
    });
    to_tx.send(&[0; 8]).unwrap();
    back_rx.recv().unwrap();
    let t = Instant::now();
    for _ in 0..rounds {
        to_tx.send(&[1; 8]).unwrap();
        black_box(back_rx.recv().unwrap());
    }
    let elapsed = t.elapsed();
    p.join().unwrap();
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

/// Throughput of `size`-byte messages from a child over an ipc-channel byte
/// channel: M msg/s for 8 B, GB/s otherwise (as the Pipe stream rows).
pub fn ipc_stream(size: usize, count: u64) -> f64 {
    let (tx, rx) = ipc::bytes_channel().unwrap();
    let p = forked(move || {
        let block = vec![7u8; size];
        for _ in 0..count {
            tx.send(&block).unwrap();
        }
    });
    black_box(rx.recv().unwrap());
    let t = Instant::now();
    for _ in 1..count {
        black_box(rx.recv().unwrap());
    }
    let elapsed = t.elapsed().as_secs_f64();
    p.join().unwrap();
    if size == 8 {
        (count - 1) as f64 / elapsed / 1e6
    } else {
        (size as f64 * (count - 1) as f64) / elapsed / 1e9
    }
}

/// M msg/s of 8-byte messages between two threads of one process through
/// a bounded crossbeam channel: the in-process ceiling for a queue.
pub fn crossbeam_queue(count: u64) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<[u8; 8]>(1 << 16);
    let t = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..count {
            tx.send(i.to_le_bytes()).unwrap();
        }
    });
    for _ in 0..count {
        black_box(rx.recv().unwrap());
    }
    producer.join().unwrap();
    count as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// µs per procspawn spawn + join of a function that does nothing.
pub fn procspawn_start_join(n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        procspawn::spawn((), |()| ()).join().unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}
