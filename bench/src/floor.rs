//! The machine's floor, written straight against the OS: what any IPC
//! crate on this machine could at best do for each workload.
//!
//! # Safety
//! Each floor forks a child that only touches a shared anonymous mapping,
//! makes system calls, and ends with `_exit`; the parent waits for it. The
//! bench runs these before it starts threads of its own, and never with a
//! lock held.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Memory shared with forked children: a page of control lines, then
/// `data` bytes.
struct Shared {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Shared {
    fn new() -> Shared {
        Shared::with_data(0)
    }

    fn with_data(data: usize) -> Shared {
        let len = 4096 + data;
        // SAFETY: an anonymous shared mapping; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        Shared { ptr, len }
    }

    /// The data area after the control page.
    fn data(&self) -> *mut u8 {
        // SAFETY: the mapping is `4096 + data` bytes long.
        unsafe { self.ptr.cast::<u8>().add(4096) }
    }

    /// The `i`th 64-byte line's first word.
    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: in the page (i < 64), aligned, zeroed, and shared only
        // through atomics.
        unsafe { &*(self.ptr.cast::<u8>().add(i * 64).cast::<AtomicU32>()) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no references outlive `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Forks `child` (which must only use atomics, syscalls and `_exit`).
fn fork(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: see the module's doc.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        child();
        // SAFETY: ends the forked child without running the parent's exit.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our own child, a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// µs per round trip of two processes spinning on one cache line each way.
pub fn spin_round_trip(rounds: u64) -> f64 {
    let mem = Shared::new();
    let (ping, pong) = (mem.word(0), mem.word(1));
    let pid = fork(|| {
        for i in 1..=rounds as u32 {
            while ping.load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
            pong.store(i, Ordering::Release);
        }
    });
    let t = Instant::now();
    for i in 1..=rounds as u32 {
        ping.store(i, Ordering::Release);
        while pong.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
    }
    let elapsed = t.elapsed();
    reap(pid);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, value: u32) {
    // SAFETY: a shared futex wait on a valid, aligned word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, value, 0usize, 0usize, 0u32)
    };
}

#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: a shared futex wake on a valid, aligned word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1, 0usize, 0usize, 0u32)
    };
}

/// µs per round trip of futex wait/wake between two processes (no spin).
#[cfg(target_os = "linux")]
pub fn futex_round_trip(rounds: u64) -> f64 {
    let mem = Shared::new();
    let (ping, pong) = (mem.word(0), mem.word(1));
    let pid = fork(|| {
        for i in 1..=rounds as u32 {
            while ping.load(Ordering::Acquire) != i {
                futex_wait(ping, i - 1);
            }
            pong.store(i, Ordering::Release);
            futex_wake(pong);
        }
    });
    let t = Instant::now();
    for i in 1..=rounds as u32 {
        ping.store(i, Ordering::Release);
        futex_wake(ping);
        while pong.load(Ordering::Acquire) != i {
            futex_wait(pong, i - 1);
        }
    }
    let elapsed = t.elapsed();
    reap(pid);
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

/// The futex floor exists on Linux only (the bench lists it there only).
#[cfg(not(target_os = "linux"))]
pub fn futex_round_trip(_rounds: u64) -> f64 {
    f64::NAN
}

fn write_all(fd: i32, buf: &[u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writing from a valid buffer to our own fd.
        let n = unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) };
        assert!(n > 0, "write");
        done += n as usize;
    }
}

fn read_exact(fd: i32, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: reading into a valid buffer from our own fd.
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        assert!(n > 0, "read");
        done += n as usize;
    }
}

/// [`read_exact`] polling a socket with non-blocking receives instead of
/// sleeping in the kernel: what a reader pays when it spins.
fn recv_exact_spinning(fd: i32, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: receiving into a valid buffer from our own socket.
        let n = unsafe { libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            done += n as usize;
        } else {
            assert!(
                n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
            );
            std::hint::spin_loop();
        }
    }
}

/// Two fds to the child and two back: pipes, or a socketpair's two ends.
fn channel_pair(socket: bool) -> ([i32; 2], [i32; 2]) {
    let (mut a, mut b) = ([0; 2], [0; 2]);
    if socket {
        // SAFETY: valid out-arrays for socketpair.
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, a.as_mut_ptr()) };
        (a, [a[1], a[0]])
    } else {
        // SAFETY: valid out-arrays for pipe.
        unsafe {
            libc::pipe(a.as_mut_ptr());
            libc::pipe(b.as_mut_ptr());
        }
        (a, b)
    }
}

/// µs per 8-byte round trip over pipes (`socket == false`) or a socketpair;
/// with `spin`, over a socketpair whose readers poll with non-blocking
/// receives rather than sleep.
pub fn kernel_round_trip(rounds: u64, socket: bool, spin: bool) -> f64 {
    let socket = socket || spin;
    let read: fn(i32, &mut [u8]) = if spin { recv_exact_spinning } else { read_exact };
    // to_child: [read end, write end]; back: [read end, write end]. For a
    // socketpair, the parent uses a[0] both ways and the child a[1].
    let (to_child, back) = channel_pair(socket);
    let (child_in, child_out, parent_in, parent_out) = if socket {
        (to_child[1], to_child[1], to_child[0], to_child[0])
    } else {
        (to_child[0], back[1], back[0], to_child[1])
    };
    let pid = fork(|| {
        let mut buf = [0u8; 8];
        for _ in 0..rounds {
            read(child_in, &mut buf);
            write_all(child_out, &buf);
        }
    });
    let mut buf = [0u8; 8];
    let t = Instant::now();
    for _ in 0..rounds {
        write_all(parent_out, &[1; 8]);
        read(parent_in, &mut buf);
    }
    let elapsed = t.elapsed();
    reap(pid);
    for fd in to_child.iter().chain(if socket { &[][..] } else { &back[..] }) {
        // SAFETY: closing our own fds once.
        unsafe { libc::close(*fd) };
    }
    elapsed.as_secs_f64() * 1e6 / rounds as f64
}

/// GB/s of `size`-byte blocks from a child to its parent through shared
/// memory, as directly as it goes: the child copies each block into one of
/// two slots and publishes it, the parent copies it out and frees the slot.
/// Every message crosses from one core's cache to the other's; this is the
/// floor of a stream between processes (an in-cache `memcpy` is not).
pub fn shm_stream(size: usize, count: u64) -> f64 {
    let mem = Shared::with_data(2 * size);
    let (full, data) = ([mem.word(0), mem.word(1)], mem.data() as usize);
    let pid = fork(|| {
        let block = vec![7u8; size];
        for i in 0..count as usize {
            let slot = i % 2;
            while full[slot].load(Ordering::Acquire) != 0 {
                std::hint::spin_loop();
            }
            // SAFETY: slot `slot` is ours until we publish it.
            unsafe {
                std::ptr::copy_nonoverlapping(block.as_ptr(), (data + slot * size) as *mut u8, size)
            };
            full[slot].store(1, Ordering::Release);
        }
    });
    let mut out = vec![0u8; size];
    let mut t = Instant::now();
    for i in 0..count as usize {
        if i == 1 {
            t = Instant::now();
        }
        let slot = i % 2;
        while full[slot].load(Ordering::Acquire) != 1 {
            std::hint::spin_loop();
        }
        // SAFETY: the child published slot `slot` and waits until we free it.
        unsafe {
            std::ptr::copy_nonoverlapping((data + slot * size) as *const u8, out.as_mut_ptr(), size)
        };
        black_box(&out);
        full[slot].store(0, Ordering::Release);
    }
    let elapsed = t.elapsed();
    reap(pid);
    (size as f64 * (count - 1) as f64) / elapsed.as_secs_f64() / 1e9
}

/// GB/s of one thread copying `size`-byte blocks, `count` times (a block
/// that fits the cache copies faster than one that goes to DRAM).
pub fn memcpy(size: usize, count: u64) -> f64 {
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    dst.copy_from_slice(&src);
    let t = Instant::now();
    for _ in 0..count {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    }
    (size as f64 * count as f64) / t.elapsed().as_secs_f64() / 1e9
}

/// ns per uncontended CAS take + store release.
pub fn cas(ops: u64) -> f64 {
    let word = AtomicU32::new(0);
    let t = Instant::now();
    for _ in 0..ops {
        let w = black_box(&word);
        while w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {}
        w.store(0, Ordering::Release);
    }
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// Millions of `fetch_add(1)` per second on one shared word, by two
/// processes at once (`ops` each): the floor of a shared counter that two
/// processes bump, lock or no lock.
pub fn fetch_add_two_processes(ops: u64) -> f64 {
    let mem = Shared::new();
    let (ready, go, counter) = (mem.word(0), mem.word(1), mem.word(2));
    let bump = move || {
        for _ in 0..ops {
            counter.fetch_add(1, Ordering::AcqRel);
        }
    };
    let pid = fork(|| {
        ready.store(1, Ordering::Release);
        while go.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        bump();
    });
    while ready.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    go.store(1, Ordering::Release);
    bump();
    reap(pid);
    let elapsed = t.elapsed();
    assert_eq!(u64::from(counter.load(Ordering::Acquire)), (2 * ops) & u64::from(u32::MAX));
    (2 * ops) as f64 / elapsed.as_secs_f64() / 1e6
}

/// µs per fork + `_exit` + waitpid.
pub fn fork_wait(n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        reap(fork(|| {}));
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// µs per exec of `/bin/true` + wait.
pub fn exec_wait(n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        std::process::Command::new("/bin/true").status().expect("/bin/true");
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}
