//! The async forms (the `tokio` feature) against tokio's own sockets and
//! against multiproc's blocking forms: each process runs its own
//! current-thread runtime, and both sides of a workload await.

use multiproc::{Barrier, Connection, Pipe, Process, Queue};
use std::hint::black_box;
use std::time::Instant;
#[cfg(unix)]
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap()
}

fn echo_async(conn: Connection, rounds: u64) {
    runtime().block_on(async {
        for _ in 0..rounds {
            let m = conn.recv_bytes_async().await.unwrap();
            conn.send_bytes_async(&m).await.unwrap();
        }
    });
}

/// Microseconds per 8-byte round trip over a Pipe, both sides awaiting.
pub fn pipe_round_trip(rounds: u64) -> f64 {
    let (a, b) = Pipe::new().unwrap();
    let p = Process::new(echo_async, (b, rounds + 1));
    p.start().unwrap();
    let us = runtime().block_on(async {
        a.send_bytes_async(&[0; 8]).await.unwrap();
        a.recv_bytes_async().await.unwrap();
        let t = Instant::now();
        for _ in 0..rounds {
            a.send_bytes_async(&[1; 8]).await.unwrap();
            black_box(a.recv_bytes_async().await.unwrap());
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    });
    assert_eq!(p.join().unwrap(), 0);
    us
}

/// Microseconds per 8-byte round trip over tokio's `UnixStream` between
/// two processes, each on its own current-thread runtime.
#[cfg(unix)]
pub fn tokio_unix_round_trip(rounds: u64) -> f64 {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // The child inherits both ends by the fork; it uses `theirs`.
    let p = Process::with_closure(move || {
        runtime().block_on(async {
            theirs.set_nonblocking(true).unwrap();
            let mut s = tokio::net::UnixStream::from_std(theirs).unwrap();
            let mut buf = [0u8; 8];
            for _ in 0..rounds + 1 {
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            }
        });
        0
    })
    .start_method(multiproc::StartMethod::Fork);
    p.start().unwrap();
    let us = runtime().block_on(async {
        ours.set_nonblocking(true).unwrap();
        let mut s = tokio::net::UnixStream::from_std(ours).unwrap();
        let mut buf = [0u8; 8];
        s.write_all(&[0; 8]).await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        let t = Instant::now();
        for _ in 0..rounds {
            s.write_all(&[1; 8]).await.unwrap();
            s.read_exact(&mut buf).await.unwrap();
            black_box(&buf);
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    });
    assert_eq!(p.join().unwrap(), 0);
    us
}

fn queue_put_async(q: Queue<()>, start: Barrier, count: u64) {
    start.wait().unwrap();
    runtime().block_on(async {
        for i in 0..count {
            q.put_bytes_async(&i.to_le_bytes()).await.unwrap();
        }
    });
}

fn queue_get_async(q: Queue<()>, start: Barrier, count: u64) {
    start.wait().unwrap();
    runtime().block_on(async {
        for _ in 0..count {
            black_box(q.get_bytes_async().await.unwrap());
        }
    });
}

/// Millions of 8-byte messages per second through a Queue, 1 -> 1, both
/// sides awaiting.
pub fn queue_throughput(count: u64) -> f64 {
    let start = Barrier::new(3).unwrap();
    let q = Queue::<()>::new().unwrap();
    let ps = [
        Process::new(queue_put_async, (q.clone(), start.clone(), count)),
        Process::new(queue_get_async, (q.clone(), start.clone(), count)),
    ];
    for p in &ps {
        p.start().unwrap();
    }
    start.wait().unwrap();
    let t = Instant::now();
    for p in &ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    count as f64 / t.elapsed().as_secs_f64() / 1e6
}
