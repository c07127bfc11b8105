//! The async forms (the `tokio` feature) with real processes, each test on
//! a current-thread runtime: one thread, no thread per wait. Every await is
//! bounded (`tokio::time::timeout`), and children are daemons reaped with
//! a bound, so a lost wake-up fails a test instead of hanging it.
#![cfg(all(
    feature = "tokio",
    any(target_os = "linux", target_vendor = "apple", target_os = "freebsd", windows)
))]

mod common;
use common::*;
use multiproc::{
    Connection, ErrorKind, Event, JoinableQueue, Lock, Pipe, Pool, Process, Queue, Semaphore,
};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::timeout;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Polls every future at once from this one task until all are done.
async fn join_all<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("every future finished")).collect()
}

/// Sends its index (and a long tail on every tenth) on each of its pipes,
/// once told to go.
fn send_on_each(ends: Vec<Connection>, first: u32, go: Event) -> i32 {
    if !go.wait_timeout(BOUND) {
        return 2;
    }
    for (i, end) in ends.iter().enumerate() {
        let n = first + i as u32;
        let tail = if n % 10 == 0 { vec![n as u8; 100_000] } else { Vec::new() };
        if end.send(&(n, tail)).is_err() {
            return 3;
        }
    }
    0
}

#[test]
fn one_task_awaits_a_thousand_pipes_from_eight_children() {
    const CHILDREN: u32 = 8;
    const PER_CHILD: u32 = 125;
    let go = Event::new().unwrap();
    let mut ours = Vec::new();
    let mut children = Vec::new();
    for c in 0..CHILDREN {
        let mut theirs = Vec::new();
        for _ in 0..PER_CHILD {
            // Small rings: the long messages go through in pieces.
            let (a, b) = Pipe::with_capacity(16 << 10, false).unwrap();
            ours.push(a);
            theirs.push(b);
        }
        let p = child(Process::new(send_on_each, (theirs, c * PER_CHILD, go.clone())));
        p.start().unwrap();
        children.push(p);
    }
    let got = runtime().block_on(async {
        let futures = ours
            .iter()
            .map(|end| {
                Box::pin(end.recv_async::<(u32, Vec<u8>)>())
                    as Pin<Box<dyn Future<Output = multiproc::Result<(u32, Vec<u8>)>>>>
            })
            .collect();
        let all = join_all(futures);
        // Every receive is registered and waiting before anything is sent.
        let all = async {
            tokio::task::yield_now().await;
            go.set();
            all.await
        };
        timeout(BOUND, all).await.expect("all 1,000 messages within the bound")
    });
    for (i, got) in got.into_iter().enumerate() {
        let (n, tail) = got.unwrap();
        assert_eq!(n, i as u32);
        let expected = if n % 10 == 0 { vec![n as u8; 100_000] } else { Vec::new() };
        assert_eq!(tail, expected, "pipe {i}");
    }
    for p in &children {
        assert_eq!(finish(p), 0);
    }
}

/// Waits for the word, then does what it says.
fn act(orders: Connection, q: Queue<String>, event: Event) -> i32 {
    loop {
        match orders.recv_timeout::<String>(BOUND).as_deref() {
            Ok("put") => q.put(&"item".to_string()).unwrap(),
            Ok("set") => event.set(),
            Ok("exit") => return 7,
            _ => return 2,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Woke {
    Item(String),
    Event,
    Exit(i32),
}

#[test]
fn select_wakes_for_a_queue_item_an_event_or_a_child_exit() {
    let (orders, theirs) = Pipe::new().unwrap();
    let q = Queue::<String>::new().unwrap();
    let event = Event::new().unwrap();
    let p = child(Process::new(act, (theirs, q.clone(), event.clone())));
    p.start().unwrap();
    runtime().block_on(async {
        let mut seen = Vec::new();
        for order in ["set", "put", "exit"] {
            orders.send_async(order).await.unwrap();
            let woke = timeout(BOUND, async {
                tokio::select! {
                    item = q.get_async() => Woke::Item(item.unwrap()),
                    set = event.wait_async() => { set.unwrap(); event.clear(); Woke::Event }
                    code = p.join_async() => Woke::Exit(code.unwrap()),
                }
            })
            .await
            .expect("woken within the bound");
            seen.push(woke);
        }
        assert_eq!(seen, [Woke::Event, Woke::Item("item".into()), Woke::Exit(7)]);
    });
    assert_eq!(finish(&p), 7);
}

/// Receives after a pause: the first message must be the one sent after
/// a send was cancelled half-way.
fn receive_late(conn: Connection, ready: Event) -> i32 {
    if !ready.wait_timeout(BOUND) {
        return 2;
    }
    match conn.recv_bytes_timeout(BOUND) {
        Ok(m) if m == b"after" => 0,
        Ok(m) => 10 + (m.len() % 100) as i32,
        Err(_) => 3,
    }
}

/// Sends one long message (in pieces, through a small ring).
fn send_long(conn: Connection, len: usize) -> i32 {
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    conn.send_bytes(&body).map_or(3, |()| 0)
}

#[test]
fn cancelling_mid_message_tears_and_loses_nothing() {
    let rt = runtime();
    // A send cancelled half-way is withdrawn: the next message is whole.
    let (ours, theirs) = Pipe::with_capacity(64 << 10, true).unwrap();
    let ready = Event::new().unwrap();
    let p = child(Process::new(receive_late, (theirs, ready.clone())));
    p.start().unwrap();
    rt.block_on(async {
        let long = vec![9u8; 4 << 20];
        // Nobody reads yet: the ring fills, and the send waits mid-message.
        let cut = timeout(Duration::from_millis(50), ours.send_bytes_async(&long)).await;
        assert!(cut.is_err(), "a 4 MiB message cannot fit a 64 KiB ring unread");
        ready.set();
        timeout(BOUND, ours.send_bytes_async(b"after")).await.unwrap().unwrap();
    });
    assert_eq!(finish(&p), 0);

    // A receive cancelled again and again mid-message keeps what it has:
    // the message arrives whole.
    let (ours, theirs) = Pipe::with_capacity(64 << 10, true).unwrap();
    let len = 8 << 20;
    let p = child(Process::new(send_long, (theirs, len)));
    p.start().unwrap();
    let (message, cancelled) = rt.block_on(async {
        let mut cancelled = 0u32;
        let got = timeout(BOUND, async {
            loop {
                match timeout(Duration::from_micros(300), ours.recv_bytes_async()).await {
                    Ok(got) => break got,
                    Err(_) => cancelled += 1,
                }
            }
        })
        .await
        .expect("the message within the bound");
        (got.unwrap(), cancelled)
    });
    assert_eq!(message.len(), len);
    assert!(message.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(finish(&p), 0);
    eprintln!("receive cancelled {cancelled} times mid-stream");
}

/// Holds `lock`, tells, then sleeps until killed.
fn hold_and_sleep(lock: Lock, held: Event) {
    lock.acquire().unwrap();
    held.set();
    std::thread::sleep(BOUND);
}

#[test]
fn a_killed_peer_ends_every_await_with_its_outcome() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let p = child(Process::new(hold_and_sleep, (lock.clone(), held.clone())));
    p.start().unwrap();
    assert!(held.wait_timeout(BOUND));
    let rt = runtime();
    rt.block_on(async {
        let killer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p.kill().unwrap();
        };
        let waits = async {
            let code = p.join_async();
            let locked = lock.acquire_async();
            let (code, locked, ()) = tokio::join!(code, locked, killer);
            (code, locked)
        };
        let (code, locked) = timeout(BOUND, waits).await.expect("no await hangs");
        assert_eq!(code.unwrap(), KILLED);
        assert_eq!(locked.unwrap_err().kind(), ErrorKind::OwnerDied);
        assert!(lock.is_locked(), "taken over by the awaiting process");
        lock.release().unwrap();
    });

    // A pipe whose only peer is SIGKILLed mid-wait: Disconnected.
    let (ours2, theirs2) = Pipe::new().unwrap();
    let held2 = Event::new().unwrap();
    let p2 = child(Process::new(hold_pipe, (theirs2, held2.clone())));
    p2.start().unwrap();
    assert!(held2.wait_timeout(BOUND));
    rt.block_on(async {
        let killer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p2.kill().unwrap();
        };
        let (got, ()) = timeout(BOUND, async { tokio::join!(ours2.recv_bytes_async(), killer) })
            .await
            .expect("no await hangs");
        assert_eq!(got.unwrap_err().kind(), ErrorKind::Disconnected);
    });
    assert_eq!(finish(&p2), KILLED);
}

/// Keeps its end of a pipe until killed.
fn hold_pipe(end: Connection, held: Event) {
    held.set();
    std::thread::sleep(BOUND);
    drop(end);
}

/// Takes `n` permits and puts `n` items, each after the parent's await
/// started.
fn release_and_put(sem: Semaphore, q: JoinableQueue<u32>, n: u32) -> i32 {
    for i in 0..n {
        std::thread::sleep(Duration::from_millis(2));
        sem.release().unwrap();
        q.put(&i).unwrap();
    }
    if q.join_timeout(BOUND).unwrap() {
        0
    } else {
        2
    }
}

#[test]
fn semaphores_and_joinable_queues_await_across_processes() {
    let sem = Semaphore::new(0).unwrap();
    let q = JoinableQueue::<u32>::new().unwrap();
    let n = 20;
    let p = child(Process::new(release_and_put, (sem.clone(), q.clone(), n)));
    p.start().unwrap();
    runtime().block_on(async {
        for i in 0..n {
            timeout(BOUND, sem.acquire_async()).await.unwrap().unwrap();
            assert_eq!(timeout(BOUND, q.get_async()).await.unwrap().unwrap(), i);
            q.task_done().unwrap();
        }
    });
    assert_eq!(finish(&p), 0);
    assert_eq!(sem.get_value(), 0);
}

fn square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x * x
}

#[test]
fn a_pool_result_is_awaited() {
    let pool = Pool::new(2).unwrap();
    runtime().block_on(async {
        let one = pool.apply_async(square, (7,)).unwrap();
        let many = pool.map_async(square, 0..100u64).unwrap();
        let (one, many) = timeout(BOUND, async { tokio::join!(one, many.get_async()) })
            .await
            .expect("results within the bound");
        assert_eq!(one.unwrap(), 49);
        assert_eq!(many.unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    });
}

#[test]
fn a_dropped_await_leaves_no_registration_behind() {
    let (ours, theirs) = Pipe::new().unwrap();
    let event = Event::new().unwrap();
    let q = Queue::<u8>::new().unwrap();
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..100 {
            assert!(timeout(Duration::from_micros(200), ours.recv_bytes_async()).await.is_err());
            assert!(timeout(Duration::from_micros(200), event.wait_async()).await.is_err());
            assert!(timeout(Duration::from_micros(200), q.get_async()).await.is_err());
        }
    });
    // Nothing stays registered (a leaked registration would cost every
    // later set a bell's write), and later awaits still complete.
    assert_eq!(multiproc::__testing::async_waiters(&event), 0);
    theirs.send_bytes(b"x").unwrap();
    event.set();
    q.put(&1).unwrap();
    rt.block_on(async {
        assert_eq!(timeout(BOUND, ours.recv_bytes_async()).await.unwrap().unwrap(), b"x");
        timeout(BOUND, event.wait_async()).await.unwrap().unwrap();
        assert_eq!(timeout(BOUND, q.get_async()).await.unwrap().unwrap(), 1);
    });
}

const KEY: &[u8] = b"an async listener's key, 16 bytes+";

/// Connects, sends `count` numbers and a long message, and checks each
/// reply.
fn socket_client(address: multiproc::connection::Address, count: u32) -> i32 {
    let Ok(conn) = multiproc::connection::Client::connect_timeout(address, KEY, BOUND) else {
        return 2;
    };
    for i in 0..count {
        conn.send(&i).unwrap();
        if conn.recv_timeout::<u32>(BOUND).ok() != Some(i + 1) {
            return 3;
        }
    }
    let long: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    conn.send_bytes(&long).unwrap();
    match conn.recv_bytes_timeout(BOUND) {
        Ok(back) if back == long => 0,
        _ => 4,
    }
}

#[test]
fn a_listener_accepts_and_a_socket_connection_talks_awaiting() {
    use multiproc::connection::{Address, Listener};
    let listener = Listener::bind(Address::arbitrary_unix().unwrap(), KEY).unwrap();
    let p = child(Process::new(socket_client, (listener.address().clone(), 20)));
    p.start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let conn = timeout(BOUND, listener.accept_async()).await.unwrap().unwrap();
        for i in 0..20u32 {
            let got: u32 = timeout(BOUND, conn.recv_async()).await.unwrap().unwrap();
            assert_eq!(got, i);
            timeout(BOUND, conn.send_async(&(i + 1))).await.unwrap().unwrap();
        }
        // A long message, its receive cancelled again and again: whole.
        let long = loop {
            match timeout(Duration::from_micros(200), conn.recv_bytes_async()).await {
                Ok(got) => break got.unwrap(),
                Err(_) => continue,
            }
        };
        assert_eq!(long.len(), 4 << 20);
        // Sent back while the peer reads: the socket fills, the send waits.
        timeout(BOUND, conn.send_bytes_async(&long)).await.unwrap().unwrap();
    });
    assert_eq!(finish(&p), 0);
}

/// Sends on the `which`th pipe after a pause; keeps the others open
/// until told.
fn send_later(ends: Vec<Connection>, which: usize, done: Event) -> i32 {
    std::thread::sleep(Duration::from_millis(30));
    let sent = ends[which].send(&7u8).map_or(2, |()| 0);
    done.wait_timeout(BOUND);
    sent
}

#[test]
fn connection_wait_sleeps_on_pipes_and_wakes_for_the_one_that_sends() {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..50 {
        let (a, b) = Pipe::new().unwrap();
        ours.push(a);
        theirs.push(b);
    }
    let done = Event::new().unwrap();
    let p = child(Process::new(send_later, (theirs, 31, done.clone())));
    p.start().unwrap();
    let all: Vec<&Connection> = ours.iter().collect();
    assert_eq!(multiproc::connection::wait(&all, Some(Duration::from_millis(1))).unwrap(), []);
    let ready = multiproc::connection::wait(&all, Some(BOUND)).unwrap();
    assert_eq!(ready, [31]);
    assert_eq!(ours[31].recv::<u8>().unwrap(), 7);
    done.set();
    assert_eq!(finish(&p), 0);
    // The child is gone: every end reads as ready (its peer hung up).
    let ready = multiproc::connection::wait(&all, Some(BOUND)).unwrap();
    assert_eq!(ready.len(), 50);
}

/// Sends a message, puts an item, sets the event, then exits with 5.
fn tell_everything(conn: Connection, q: Queue<u8>, event: Event, go: Event) -> i32 {
    if !go.wait_timeout(BOUND) {
        return 2;
    }
    conn.send(&1u8).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    q.put(&2).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    event.set();
    std::thread::sleep(Duration::from_millis(5));
    5
}

/// Which of `handles` are ready, after waiting up to `ms` for any: a
/// `poll(2)` of one's own.
#[cfg(unix)]
fn wait_any(handles: &[multiproc::Readiness<'_>], ms: i32) -> Vec<bool> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut fds: Vec<libc::pollfd> = handles
        .iter()
        .map(|h| libc::pollfd { fd: h.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    // SAFETY: valid pollfds, as many as passed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, ms) };
    assert!(n >= 0);
    fds.iter().map(|fd| fd.revents != 0).collect()
}

/// The same with `WaitForMultipleObjects`.
#[cfg(windows)]
fn wait_any(handles: &[multiproc::Readiness<'_>], ms: i32) -> Vec<bool> {
    use std::os::windows::io::{AsHandle, AsRawHandle};
    use windows_sys::Win32::Foundation::{HANDLE, WAIT_OBJECT_0};
    use windows_sys::Win32::System::Threading::{WaitForMultipleObjects, WaitForSingleObject};
    let raw: Vec<HANDLE> = handles.iter().map(|h| h.as_handle().as_raw_handle()).collect();
    // SAFETY: open handles (borrowed from the readinesses), as many as passed.
    unsafe { WaitForMultipleObjects(raw.len() as u32, raw.as_ptr(), 0, ms as u32) };
    // SAFETY: as above; a zero timeout only looks.
    raw.iter().map(|&h| unsafe { WaitForSingleObject(h, 0) } == WAIT_OBJECT_0).collect()
}

#[test]
fn a_wait_loop_of_ones_own_sleeps_on_readiness_handles() {
    let (ours, theirs) = Pipe::new().unwrap();
    let q = Queue::<u8>::new().unwrap();
    let event = Event::new().unwrap();
    let go = Event::new().unwrap();
    let p = child(Process::new(tell_everything, (theirs, q.clone(), event.clone(), go.clone())));
    p.start().unwrap();
    let mut handles =
        vec![ours.readiness().unwrap(), q.readiness().unwrap(), event.readiness().unwrap()];
    // The portable path on Linux has no handle for a child's exit (pidfds
    // are native Linux's, kqueues macOS's and FreeBSD's): it says so.
    match p.readiness() {
        Ok(exit) => handles.push(exit),
        Err(e) if cfg!(multiproc_portable) => assert_eq!(e.kind(), ErrorKind::Unsupported),
        Err(e) => panic!("{e}"),
    }
    // Nothing yet: a poll sleeps its whole timeout (on Windows what no
    // handle tells of, a hang-up, is looked at every 10 ms, and a bell's
    // sleep ends every 20: wakes that find nothing are expected there).
    if cfg!(unix) {
        assert!(wait_any(&handles, 20).iter().all(|&ready| !ready));
    }
    go.set();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + BOUND;
    while seen.len() < handles.len() {
        assert!(std::time::Instant::now() < deadline, "seen only {seen:?}");
        for (i, ready) in wait_any(&handles, 1000).into_iter().enumerate() {
            if !ready {
                continue;
            }
            handles[i].clear().unwrap();
            match i {
                0 if ours.poll() && !seen.contains(&0) => {
                    assert_eq!(ours.recv::<u8>().unwrap(), 1);
                    seen.push(0);
                }
                1 if !seen.contains(&1) => {
                    if let Ok(item) = q.get_nowait() {
                        assert_eq!(item, 2);
                        seen.push(1);
                    }
                }
                2 if event.is_set() && !seen.contains(&2) => seen.push(2),
                3 if p.exitcode().is_some() && !seen.contains(&3) => seen.push(3),
                _ => {}
            }
        }
    }
    // Each in the order the child did them. On Windows a readiness is set
    // by a thread-pool wait's callback, which a loaded machine may run
    // milliseconds late (seen under Wine beside two busy loops): which
    // were seen is what counts there.
    if cfg!(windows) {
        seen.sort();
    }
    assert_eq!(seen, [0, 1, 2, 3][..handles.len()], "each in the order the child did them");
    drop(handles);
    assert_eq!(multiproc::__testing::async_waiters(&event), 0);
    assert_eq!(finish(&p), 5);
}

#[test]
fn dropped_gets_and_puts_keep_a_bounded_queue_bounded() {
    let q = Queue::<u8>::with_maxsize(1).unwrap();
    runtime().block_on(async {
        // Gets dropped while the queue is empty give back no slot.
        for _ in 0..20 {
            assert!(timeout(Duration::from_micros(300), q.get_async()).await.is_err());
        }
        q.put_async(&1).await.unwrap();
        // Full: puts wait, and dropped ones take no slot.
        for _ in 0..20 {
            assert!(timeout(Duration::from_micros(300), q.put_async(&2)).await.is_err());
        }
        assert_eq!(q.put_nowait(&3).unwrap_err().kind(), ErrorKind::Full);
        assert_eq!(q.get_async().await.unwrap(), 1);
        q.put_async(&4).await.unwrap();
        assert_eq!(q.put_nowait(&5).unwrap_err().kind(), ErrorKind::Full);
        assert_eq!(q.get_async().await.unwrap(), 4);
    });
}

/// Receives `count` messages, each `len` bytes of one value: 0 if none is
/// torn or mixed with another.
fn receive_whole(conn: Connection, count: u32, len: usize) -> i32 {
    for _ in 0..count {
        match conn.recv_bytes_timeout(BOUND) {
            Ok(m) if m.len() == len && m.iter().all(|&b| b == m[0]) => {}
            Ok(_) => return 3,
            Err(_) => return 2,
        }
    }
    0
}

#[test]
fn two_tasks_of_one_thread_sending_long_messages_take_turns() {
    let (ours, theirs) = Pipe::with_capacity(16 << 10, true).unwrap();
    let len = 1 << 20;
    let p = child(Process::new(receive_whole, (theirs, 12, len)));
    p.start().unwrap();
    // Uncontended sends from this thread first: the send side is then
    // biased to it (its fast path taken by this thread alone).
    for _ in 0..4 {
        ours.send_bytes(&vec![9; len]).unwrap();
    }
    runtime().block_on(async {
        let send = |b: u8| {
            let ours = &ours;
            async move {
                for _ in 0..4 {
                    ours.send_bytes_async(&vec![b; len]).await.unwrap();
                }
            }
        };
        timeout(BOUND, async { tokio::join!(send(1), send(2)) }).await.expect("sent in time");
    });
    assert_eq!(finish(&p), 0, "a message torn or mixed with another");
}

/// Receives `count` events and sets each.
fn set_each(conn: Connection, count: u32) -> i32 {
    for _ in 0..count {
        match conn.recv_timeout::<(u8, Event)>(BOUND) {
            Ok((_, event)) => event.set(),
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    }
    0
}

#[test]
fn two_tasks_sending_objects_keep_each_message_with_its_handles() {
    let (ours, theirs) = Pipe::with_capacity(16 << 10, true).unwrap();
    let n = 20u32;
    let p = child(Process::new(set_each, (theirs, 2 * n)));
    p.start().unwrap();
    let events: Vec<Event> = (0..2 * n).map(|_| Event::new().unwrap()).collect();
    runtime().block_on(async {
        let send = |half: usize| {
            let (ours, events) = (&ours, &events);
            async move {
                for i in 0..n as usize {
                    let event = &events[half * n as usize + i];
                    ours.send_async(&(i as u8, event)).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        };
        timeout(BOUND, async { tokio::join!(send(0), send(1)) }).await.expect("sent in time");
        for event in &events {
            timeout(BOUND, event.wait_async()).await.unwrap().unwrap();
        }
    });
    assert_eq!(finish(&p), 0);
}
