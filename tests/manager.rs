//! The Manager: its server process, proxies passed to children under every
//! start method, registered types, a remote server on TCP, and a server
//! that dies or stalls.

mod common;

use common::{child, finish, run_all, with, BOUND, METHODS};
use multiproc::manager::{
    decode_args, encode_reply, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy,
    NamespaceProxy, ObjectProxy, QueueProxy, RLockProxy, SemaphoreProxy, Served, ValueProxy,
};
use multiproc::{Connection, Error, ErrorKind, Manager, ManagerServer, Pipe, Process};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_secs(20);

/// Python's keys `1`, `'2'` and `0.25`, as one serde type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Key {
    Int(i64),
    Str(String),
    Float(f64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Val {
    Str(String),
    Int(i64),
    None,
}

/// The example of Python's docs: `d[1] = '1'; d['2'] = 2; d[0.25] = None;
/// l.reverse()`.
fn f(d: DictProxy<Key, Val>, l: ListProxy<i32>) -> multiproc::Result<()> {
    d.insert(&Key::Int(1), &Val::Str("1".into()))?;
    d.insert(&Key::Str("2".into()), &Val::Int(2))?;
    d.insert(&Key::Float(0.25), &Val::None)?;
    l.reverse()
}

#[test]
fn the_python_docs_example_under_every_start_method() {
    let manager = Manager::start().unwrap();
    for method in METHODS {
        let d = manager.dict::<Key, Val>().unwrap();
        let l = manager.list::<i32>().unwrap();
        l.extend(&(0..10).collect::<Vec<_>>()).unwrap();
        let mut p = with(method, Process::new(f, (d.clone(), l.clone())));
        assert_eq!(run_all(std::slice::from_mut(&mut p)), [0], "{method:?}");
        assert_eq!(
            d.items().unwrap(),
            [
                (Key::Int(1), Val::Str("1".into())),
                (Key::Str("2".into()), Val::Int(2)),
                (Key::Float(0.25), Val::None),
            ],
            "{method:?}"
        );
        assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>(), "{method:?}");
    }
    manager.shutdown().unwrap();
}

#[test]
fn the_server_runs_under_every_start_method() {
    for method in METHODS {
        let manager = Manager::builder().start_method(method).start().unwrap();
        let d = manager.dict::<u32, String>().unwrap();
        d.insert(&7, &"seven".into()).unwrap();
        assert_eq!(d.get(&7).unwrap().as_deref(), Some("seven"), "{method:?}");
        manager.shutdown().unwrap();
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    score: u32,
}

fn append_records(records: ListProxy<Record>, done: EventProxy) -> multiproc::Result<()> {
    for (i, name) in ["ada", "grace", "edsger"].into_iter().enumerate() {
        records.append(&Record { name: name.into(), score: 10 * i as u32 })?;
    }
    done.set()
}

fn print_records(
    records: ListProxy<Record>,
    done: EventProxy,
    out: Connection,
) -> multiproc::Result<()> {
    if !done.wait_timeout(BOUND)? {
        return Err(Error::new(ErrorKind::Timeout, "the writer never finished"));
    }
    let lines: Vec<String> =
        records.to_vec()?.iter().map(|r| format!("{}: {}", r.name, r.score)).collect();
    println!("{}", lines.join(", "));
    out.send(&lines)
}

#[test]
fn a_record_list_appended_by_one_process_and_printed_by_another() {
    let manager = Manager::start().unwrap();
    let records = manager.list::<Record>().unwrap();
    let done = manager.event().unwrap();
    let (rx, tx) = Pipe::new().unwrap();
    let ps = [
        child(Process::new(print_records, (records.clone(), done.clone(), tx))),
        child(Process::new(append_records, (records, done))),
    ];
    assert_eq!(run_all(&ps), [0, 0]);
    let lines: Vec<String> = rx.recv_timeout(SHORT).unwrap();
    assert_eq!(lines, ["ada: 0", "grace: 10", "edsger: 20"]);
}

#[test]
fn dict_list_and_namespace_methods() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, u64>().unwrap();
    assert!(d.is_empty().unwrap());
    d.insert(&"a".into(), &1).unwrap();
    d.insert(&"b".into(), &2).unwrap();
    d.insert(&"a".into(), &3).unwrap();
    assert_eq!(d.keys().unwrap(), ["a", "b"], "insertion order kept on update");
    assert_eq!(d.get_or_insert(&"c".into(), &9).unwrap(), 9);
    assert_eq!(d.get_or_insert(&"c".into(), &10).unwrap(), 9);
    assert!(d.contains_key(&"b".into()).unwrap());
    assert_eq!(d.remove(&"b".into()).unwrap(), Some(2));
    assert_eq!(d.remove(&"b".into()).unwrap(), None);
    assert_eq!(d.values().unwrap(), [3, 9]);
    d.update(&[("a".into(), 4), ("d".into(), 5)]).unwrap();
    assert_eq!(d.items().unwrap(), [("a".into(), 4), ("c".into(), 9), ("d".into(), 5)]);
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);

    let l = manager.list::<String>().unwrap();
    l.extend(&["x".into(), "y".into()]).unwrap();
    l.insert(0, &"w".into()).unwrap();
    l.insert(100, &"z".into()).unwrap();
    assert_eq!(l.get(-1).unwrap(), "z");
    l.set(1, &"X".into()).unwrap();
    assert_eq!(l.pop_at(0).unwrap(), "w");
    assert_eq!(l.pop().unwrap(), "z");
    assert_eq!(l.to_vec().unwrap(), ["X", "y"]);
    assert_eq!(l.get(5).unwrap_err().kind(), ErrorKind::InvalidArgument);
    l.clear().unwrap();
    assert_eq!(l.pop().unwrap_err().kind(), ErrorKind::InvalidArgument);

    let ns = manager.namespace().unwrap();
    ns.set("x", &10u32).unwrap();
    ns.set("y", "hello").unwrap();
    assert_eq!(ns.get::<u32>("x").unwrap(), Some(10));
    assert_eq!(ns.get::<String>("y").unwrap().as_deref(), Some("hello"));
    assert_eq!(ns.get::<u32>("z").unwrap(), None);
    assert_eq!(ns.names().unwrap(), ["x", "y"]);
    assert!(ns.remove("x").unwrap());
    assert!(!ns.remove("x").unwrap());
    // A value read as the wrong type is a codec error, not garbage.
    ns.set("z", &10u32).unwrap();
    assert_eq!(ns.get::<bool>("z").unwrap_err().kind(), ErrorKind::Codec);
}

fn consume(q: QueueProxy<u32>, total: DictProxy<String, u32>) -> multiproc::Result<()> {
    let mut sum = 0;
    loop {
        let n = q.get_timeout(BOUND)?;
        q.task_done()?;
        if n == 0 {
            break;
        }
        sum += n;
    }
    total.insert(&"sum".into(), &sum)
}

#[test]
fn a_queue_between_processes_with_join() {
    let manager = Manager::start().unwrap();
    let q = manager.bounded_queue::<u32>(4).unwrap();
    let total = manager.dict().unwrap();
    let p = child(Process::new(consume, (q.clone(), total.clone())));
    p.start().unwrap();
    for n in 1..=100 {
        q.put_timeout(&n, SHORT).unwrap();
    }
    q.put(&0).unwrap();
    assert!(q.join_timeout(SHORT).unwrap());
    assert_eq!(finish(&p), 0);
    assert_eq!(total.get(&"sum".into()).unwrap(), Some(5050));
    assert_eq!(q.get_nowait().unwrap_err().kind(), ErrorKind::Empty);
    let t = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_millis(50)).unwrap_err().kind(), ErrorKind::Empty);
    assert!(t.elapsed() >= Duration::from_millis(50));
    for n in 0..4 {
        q.put_nowait(&n).unwrap();
    }
    assert_eq!(q.put_nowait(&9).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(q.qsize().unwrap(), 4);
}

fn hold_and_die(lock: LockProxy, held: EventProxy) {
    lock.acquire().unwrap();
    held.set().unwrap();
    std::thread::sleep(BOUND);
}

#[test]
fn locks_events_and_semaphores_across_processes() {
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let held = manager.event().unwrap();
    let p = child(Process::new(hold_and_die, (lock.clone(), held.clone())));
    p.start().unwrap();
    assert!(held.wait_timeout(SHORT).unwrap());
    assert!(lock.is_locked().unwrap());
    assert!(lock.try_acquire().unwrap_err().is_timeout());
    // The holder dies: its connection ends, and the lock is released.
    p.kill().unwrap();
    finish(&p);
    lock.acquire_timeout(SHORT).unwrap();
    {
        lock.release().unwrap();
        let _g = lock.lock().unwrap();
        assert!(lock.is_locked().unwrap());
    }
    assert!(!lock.is_locked().unwrap());
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidArgument);

    let sem = manager.semaphore(2).unwrap();
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    assert!(sem.acquire_timeout(Duration::from_millis(20)).unwrap_err().is_timeout());
    sem.release().unwrap();
    assert_eq!(sem.get_value().unwrap(), 1);

    held.clear().unwrap();
    assert!(!held.is_set().unwrap());
    assert!(!held.wait_timeout(Duration::from_millis(20)).unwrap());
}

fn wait_for_go(cond: ConditionProxy, state: NamespaceProxy) -> multiproc::Result<()> {
    cond.acquire_timeout(BOUND)?;
    state.set("waiting", &true)?;
    while state.get::<bool>("go")? != Some(true) {
        if !cond.wait_timeout(BOUND)? {
            return Err(Error::new(ErrorKind::Timeout, "never notified"));
        }
    }
    state.set("seen", &true)?;
    cond.release()
}

#[test]
fn a_condition_across_processes() {
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let state = manager.namespace().unwrap();
    let p = child(Process::new(wait_for_go, (cond.clone(), state.clone())));
    p.start().unwrap();
    let deadline = Instant::now() + SHORT;
    loop {
        cond.acquire_timeout(SHORT).unwrap();
        if state.get::<bool>("waiting").unwrap() == Some(true) {
            break;
        }
        cond.release().unwrap();
        assert!(Instant::now() < deadline, "the child never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    state.set("go", &true).unwrap();
    cond.notify_all().unwrap();
    cond.release().unwrap();
    assert_eq!(finish(&p), 0);
    assert_eq!(state.get::<bool>("seen").unwrap(), Some(true));
    // Not holding it: notify and wait are refused.
    assert_eq!(cond.notify(1).unwrap_err().kind(), ErrorKind::NotOwner);
    assert_eq!(cond.wait_timeout(Duration::ZERO).unwrap_err().kind(), ErrorKind::NotOwner);
}

#[derive(Default)]
struct Counter(i64);

impl Served for Counter {
    fn call(&mut self, method: &str, args: &[u8]) -> multiproc::Result<Vec<u8>> {
        match method {
            "add" => {
                self.0 += decode_args::<i64>(args)?;
                encode_reply(&self.0)
            }
            "get" => encode_reply(&self.0),
            _ => Err(Error::new(ErrorKind::InvalidArgument, format!("Counter has no {method}"))),
        }
    }
}

fn add_many(counter: ObjectProxy) -> multiproc::Result<()> {
    for _ in 0..100 {
        counter.call::<_, i64>("add", &1i64)?;
    }
    Ok(())
}

#[test]
fn a_registered_type_in_a_spawned_server() {
    let manager = Manager::builder().register::<Counter>("Counter").start().unwrap();
    let counter = manager.create("Counter").unwrap();
    let ps: Vec<Process> =
        (0..3).map(|_| child(Process::new(add_many, (counter.clone(),)))).collect();
    assert_eq!(run_all(&ps), [0, 0, 0]);
    assert_eq!(counter.call::<_, i64>("get", &()).unwrap(), 300);
    let err = counter.call::<_, i64>("nope", &()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(manager.create("Unknown").unwrap_err().kind(), ErrorKind::InvalidArgument);
}

fn serve_on_tcp(address_out: Connection, key: Vec<u8>) -> multiproc::Result<()> {
    let server = ManagerServer::bind("127.0.0.1:0", &key)?.register::<Counter>("Counter");
    address_out.send(server.address())?;
    server.serve_forever();
    Ok(())
}

fn remote_worker(
    address: multiproc::connection::Address,
    key: Vec<u8>,
    n: u32,
) -> multiproc::Result<()> {
    let manager = Manager::connect(address, &key)?;
    let scores = manager.named::<DictProxy<String, u32>>("scores")?;
    scores.insert(&format!("worker-{n}"), &(n * 10))?;
    let jobs = manager.named::<QueueProxy<u32>>("jobs")?;
    jobs.put(&n)
}

#[test]
fn a_remote_server_on_tcp_shared_by_processes() {
    let key = b"a remote key, 16 bytes or more".to_vec();
    let (rx, tx) = Pipe::new().unwrap();
    let server = child(Process::new(serve_on_tcp, (tx, key.clone())));
    server.start().unwrap();
    let address: multiproc::connection::Address = rx.recv_timeout(SHORT).unwrap();
    assert!(address.is_tcp());
    let workers: Vec<Process> = (1..=3)
        .map(|n| child(Process::new(remote_worker, (address.clone(), key.clone(), n))))
        .collect();
    assert_eq!(run_all(&workers), [0, 0, 0]);

    let manager = Manager::connect(address.clone(), &key).unwrap();
    let scores = manager.named::<DictProxy<String, u32>>("scores").unwrap();
    let mut items = scores.items().unwrap();
    items.sort();
    assert_eq!(items, [("worker-1".into(), 10), ("worker-2".into(), 20), ("worker-3".into(), 30)]);
    let jobs = manager.named::<QueueProxy<u32>>("jobs").unwrap();
    let mut got: Vec<u32> = (0..3).map(|_| jobs.get_timeout(SHORT).unwrap()).collect();
    got.sort();
    assert_eq!(got, [1, 2, 3]);
    let err = manager.named::<ListProxy<u32>>("scores").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let counter = manager.create("Counter").unwrap();
    assert_eq!(counter.call::<_, i64>("add", &5i64).unwrap(), 5);

    // A wrong key is refused.
    let wrong = Manager::connect_timeout(address, b"wrong", SHORT).unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Auth);
    manager.shutdown().unwrap();
    assert_eq!(finish(&server), 0);
}

fn use_after_death(d: DictProxy<u32, u32>, ready: Connection) -> multiproc::Result<()> {
    d.insert(&1, &1)?;
    ready.send(&())?;
    // The parent kills the server now; every call must fail, not hang.
    let _: () = ready.recv_timeout(BOUND)?;
    match d.get(&1) {
        Err(e) if e.is_disconnected() => Ok(()),
        other => {
            Err(Error::new(ErrorKind::Corrupt, format!("expected Disconnected, got {other:?}")))
        }
    }
}

#[test]
fn a_proxy_used_after_the_server_is_killed_is_disconnected() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let (a, b) = Pipe::new().unwrap();
    let p = child(Process::new(use_after_death, (d.clone(), b)));
    p.start().unwrap();
    let () = a.recv_timeout(SHORT).unwrap();
    // A call blocked in the server when it dies returns too.
    let q2 = q.clone();
    let blocked = std::thread::spawn(move || q2.get());
    std::thread::sleep(Duration::from_millis(50));
    let server = manager.process().unwrap();
    server.kill().unwrap();
    assert!(server.join_timeout(SHORT).unwrap().is_some());
    a.send(&()).unwrap();
    assert_eq!(finish(&p), 0);
    assert!(d.get(&1).unwrap_err().is_disconnected());
    assert!(q.put(&1).unwrap_err().is_disconnected());
    assert!(blocked.join().unwrap().unwrap_err().is_disconnected());
    assert!(manager.dict::<u8, u8>().unwrap_err().is_disconnected());
}

#[test]
#[cfg(unix)] // SIGSTOP
fn a_stalled_server_times_out_a_bounded_proxy() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, u32>().unwrap().with_timeout(Duration::from_millis(100));
    d.insert(&1, &2).unwrap();
    let pid = manager.process().unwrap().pid().unwrap() as i32;
    // SAFETY: kill(2) on our own child's pid has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')').next().unwrap().trim_start().starts_with('T')
    };
    let deadline = Instant::now() + SHORT;
    while !stopped() {
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    let err = d.get(&1).unwrap_err();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(err.is_timeout(), "{err}");
    // The connection that timed out was dropped; the next call is clean.
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

#[test]
fn a_released_object_is_gone_and_a_shared_one_stays() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let clone = d.clone();
    drop(d);
    clone.insert(&1, &1).unwrap();
    // The last proxy in this process goes: the object is freed. A proxy
    // that was sent elsewhere keeps it alive for the server's lifetime.
    let shared = manager.dict::<u8, u8>().unwrap();
    let sent = shared.clone();
    let (a, b) = Pipe::new().unwrap();
    a.send(&sent).unwrap();
    drop((sent, shared));
    let received: DictProxy<u8, u8> = b.recv_timeout(SHORT).unwrap();
    received.insert(&2, &2).unwrap();
    assert_eq!(received.get(&2).unwrap(), Some(2));
    drop(clone);
}

/// Two ends of a local socket connection (a named pipe on Windows).
fn socket_pair() -> (Connection, Connection) {
    let listener = multiproc::connection::Listener::builder(
        multiproc::connection::Address::arbitrary_unix().unwrap(),
    )
    .bind()
    .unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || {
        multiproc::connection::Client::connect_timeout(address, b"", BOUND).unwrap()
    });
    let ours = listener.accept_timeout(BOUND).unwrap();
    (ours, client.join().unwrap())
}

#[test]
fn proxies_over_a_socket_leave_the_authkey_behind() {
    let manager = Manager::builder().authkey(b"not the process key").start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let (a, b) = socket_pair();
    a.send(&d).unwrap();
    let received: DictProxy<u8, u8> = b.recv_timeout(SHORT).unwrap();
    // It came without the key, so it uses this process's: refused.
    assert_eq!(received.get(&1).unwrap_err().kind(), ErrorKind::Auth);
}

fn use_with_key(from_afar: Connection, key: Vec<u8>) -> multiproc::Result<()> {
    // A process that knows the key sets it, then takes proxies that came
    // without one (over a socket, from anywhere).
    multiproc::current_process().set_authkey(&key);
    let d: DictProxy<u8, u8> = from_afar.recv_timeout(BOUND)?;
    d.insert(&7, &49)
}

#[test]
fn a_process_with_the_key_uses_a_proxy_that_came_without_it() {
    let key = b"shared out of band".to_vec();
    let manager = Manager::builder().authkey(&key).start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let (a, b) = socket_pair();
    a.send(&d).unwrap();
    let mut p = child(Process::new(use_with_key, (b, key)));
    assert_eq!(run_all(std::slice::from_mut(&mut p)), [0]);
    assert_eq!(d.get(&7).unwrap(), Some(49));
}

fn count_in(d: DictProxy<String, u32>, n: u32) -> multiproc::Result<()> {
    d.insert(&format!("child-{n}"), &n)
}

#[test]
fn a_started_manager_listens_on_tcp() {
    let key = b"a tcp manager's key, 16 bytes+".to_vec();
    let manager = Manager::builder().address("127.0.0.1:0").authkey(&key).start().unwrap();
    assert!(manager.address().is_tcp(), "{}", manager.address());
    let d = manager.named::<DictProxy<String, u32>>("counts").unwrap();
    let ps: Vec<Process> = (1..=2).map(|n| child(Process::new(count_in, (d.clone(), n)))).collect();
    assert_eq!(run_all(&ps), [0, 0]);
    assert_eq!(d.len().unwrap(), 2);
    // A client from elsewhere, with the key, sees the same server.
    let other = Manager::connect_timeout(manager.address().clone(), &key, BOUND).unwrap();
    let counts = other.named::<DictProxy<String, u32>>("counts").unwrap();
    let mut keys: Vec<String> = counts.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["child-1", "child-2"]);
}

fn semaphore_proxy_is_serde(_: SemaphoreProxy) {}

#[test]
fn proxies_pass_to_children_of_every_start_method() {
    let manager = Manager::start().unwrap();
    for method in METHODS {
        let sem = manager.semaphore(1).unwrap();
        let mut p = with(method, Process::new(semaphore_proxy_is_serde, (sem,)));
        assert_eq!(run_all(std::slice::from_mut(&mut p)), [0], "{method:?}");
    }
}

fn socket_only_worker(
    d: DictProxy<u32, u32>,
    q: QueueProxy<u32>,
    lock: LockProxy,
) -> multiproc::Result<()> {
    multiproc::manager::set_shared_memory(false);
    let _g = lock.lock()?;
    for i in 0..100 {
        d.insert(&i, &(i * i))?;
    }
    q.put(&d.len()?.try_into().unwrap())
}

#[test]
fn calls_over_the_socket_alone_work_too() {
    let manager = Manager::start().unwrap();
    let (d, q, lock) = (manager.dict().unwrap(), manager.queue().unwrap(), manager.lock().unwrap());
    let args = (d.clone(), q.clone(), lock.clone());
    let mut p = child(Process::new(socket_only_worker, args));
    assert_eq!(run_all(std::slice::from_mut(&mut p)), [0]);
    assert_eq!(q.get_timeout(SHORT).unwrap(), 100);
    assert_eq!(d.get(&9).unwrap(), Some(81));
    assert!(!lock.is_locked().unwrap());
}

/// Increments `counter` under `lock`, `rounds` times, forever if `rounds`
/// is 0 (to be killed).
fn count_under_lock(
    lock: LockProxy,
    counter: DictProxy<String, u64>,
    rounds: u64,
) -> multiproc::Result<()> {
    let mut done = 0;
    while rounds == 0 || done < rounds {
        let _g = lock.lock()?;
        let n = counter.get(&"n".into())?.unwrap_or(0);
        counter.insert(&"n".into(), &(n + 1))?;
        done += 1;
    }
    Ok(())
}

#[test]
fn clients_killed_mid_work_wedge_no_one() {
    let manager = Manager::start().unwrap();
    let (lock, counter) = (manager.lock().unwrap(), manager.dict::<String, u64>().unwrap());
    let mut victims: Vec<Process> = (0..2)
        .map(|_| child(Process::new(count_under_lock, (lock.clone(), counter.clone(), 0))))
        .collect();
    let mut workers: Vec<Process> = (0..2)
        .map(|_| child(Process::new(count_under_lock, (lock.clone(), counter.clone(), 500))))
        .collect();
    for p in victims.iter_mut().chain(workers.iter_mut()) {
        p.start().unwrap();
    }
    // Kill the endless ones while all four work, whatever they are doing
    // (holding the lock, mid-request, mid-reply).
    let deadline = Instant::now() + SHORT;
    while counter.get(&"n".into()).unwrap().unwrap_or(0) < 200 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    for p in &mut victims {
        p.kill().unwrap();
        finish(p);
    }
    assert_eq!(workers.iter().map(finish).collect::<Vec<_>>(), [0, 0]);
    lock.acquire_timeout(SHORT).unwrap();
    lock.release().unwrap();
    assert!(counter.get(&"n".into()).unwrap().unwrap() >= 1000);
}

fn reenter(rlock: RLockProxy, total: ValueProxy<u64>) -> multiproc::Result<()> {
    for _ in 0..50 {
        let _outer = rlock.lock()?;
        let _inner = rlock.lock()?;
        total.set(&(total.get()? + 1))?;
    }
    Ok(())
}

#[test]
fn an_rlock_and_a_value_across_processes() {
    let manager = Manager::start().unwrap();
    let (rlock, total) = (manager.rlock().unwrap(), manager.value(&0u64).unwrap());
    let ps: Vec<Process> =
        (0..3).map(|_| child(Process::new(reenter, (rlock.clone(), total.clone())))).collect();
    assert_eq!(run_all(&ps), [0, 0, 0]);
    assert_eq!(total.get().unwrap(), 150);
    // Only its holder releases it, once per acquire.
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    let other = {
        let rlock = rlock.clone();
        std::thread::spawn(move || (rlock.release(), rlock.try_acquire()))
    };
    let (release, acquire) = other.join().unwrap();
    assert_eq!(release.unwrap_err().kind(), ErrorKind::NotOwner);
    assert!(acquire.unwrap_err().is_timeout());
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert_eq!(rlock.release().unwrap_err().kind(), ErrorKind::NotOwner);
    let unset = manager.named::<ValueProxy<u8>>("unset").unwrap();
    assert_eq!(unset.get().unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[cfg(mp_fork)]
fn use_later(d: DictProxy<u8, u8>, go: EventProxy) -> multiproc::Result<()> {
    if !go.wait_timeout(BOUND)? {
        return Err(Error::new(ErrorKind::Timeout, "never told to go"));
    }
    d.insert(&1, &1)?;
    go.clear()
}

#[test]
#[cfg(mp_fork)]
fn a_forked_childs_proxies_outlive_the_parents() {
    let manager = Manager::start().unwrap();
    let go = manager.event().unwrap();
    // The parent keeps nothing of the dict: only the forked child holds it.
    let d = manager.dict::<u8, u8>().unwrap();
    let p = with(METHODS[1], Process::new(use_later, (d, go.clone())));
    p.start().unwrap();
    go.set().unwrap();
    assert_eq!(finish(&p), 0);
    assert!(!go.is_set().unwrap());
}

/// A registered type whose methods panic: `panic` with a message (the
/// call answers with an error), `explode` with a payload that panics again
/// when dropped (the connection's thread dies).
#[derive(Default)]
struct Bomb;

struct DropBomb;

impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("the payload's drop panics too");
    }
}

impl Served for Bomb {
    fn call(&mut self, method: &str, _args: &[u8]) -> multiproc::Result<Vec<u8>> {
        match method {
            "panic" => panic!("a registered method panicked"),
            "explode" => std::panic::panic_any(DropBomb),
            _ => encode_reply(&()),
        }
    }
}

/// Holds `lock`, makes the bomb panic (the lock stays held and usable,
/// the connection goes on), then makes it explode (the connection's
/// thread dies) and waits, alive, until told to go.
fn hold_and_panic(lock: LockProxy, bomb: ObjectProxy, held: EventProxy, go: EventProxy) -> i32 {
    lock.acquire().unwrap();
    let e = bomb.call::<_, ()>("panic", &()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e:?}");
    assert!(e.to_string().contains("a registered method panicked"), "{e}");
    assert!(lock.is_locked().unwrap());
    lock.release().unwrap();
    lock.acquire().unwrap();
    held.set().unwrap();
    assert!(bomb.call::<_, ()>("explode", &()).is_err());
    assert!(go.wait_timeout(BOUND).unwrap());
    0
}

#[test]
fn a_panic_in_a_registered_method_answers_and_a_dead_connection_releases_its_locks() {
    let manager = Manager::builder().register::<Bomb>("Bomb").start().unwrap();
    let (lock, bomb) = (manager.lock().unwrap(), manager.create("Bomb").unwrap());
    let (held, go) = (manager.event().unwrap(), manager.event().unwrap());
    let args = (lock.clone(), bomb, held.clone(), go.clone());
    let p = child(Process::new(hold_and_panic, args));
    p.start().unwrap();
    assert!(held.wait_timeout(BOUND).unwrap());
    // The holder still runs; its connection's thread died holding the lock.
    lock.acquire_timeout(Duration::from_secs(10)).unwrap();
    lock.release().unwrap();
    go.set().unwrap();
    assert_eq!(finish(&p), 0);
}

/// Holds `lock` while it waits on `event` with `Duration::MAX`.
fn hold_and_wait_forever(lock: LockProxy, event: EventProxy) -> i32 {
    lock.acquire().unwrap();
    assert!(event.wait_timeout(Duration::MAX).unwrap());
    lock.release().unwrap();
    0
}

#[test]
fn a_duration_max_wait_in_the_server_keeps_its_connection_working() {
    let manager = Manager::start().unwrap();
    let (lock, event) = (manager.lock().unwrap(), manager.event().unwrap());
    let p = child(Process::new(hold_and_wait_forever, (lock.clone(), event.clone())));
    p.start().unwrap();
    let start = Instant::now();
    while !lock.is_locked().unwrap() {
        assert!(start.elapsed() < BOUND, "the child never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    event.set().unwrap();
    lock.acquire_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(finish(&p), 0);
}

/// Every kind of request, well-formed and with each byte flipped in turn,
/// as an authenticated but hostile client would send them: each is
/// answered or ends the connection, never a panic or a hang (the fuzz
/// target `manager_request` goes much further).
#[test]
fn every_request_kind_and_its_corruptions_are_answered() {
    let examples = multiproc::__testing::manager_requests();
    assert!(examples.len() > 300);
    let started = Instant::now();
    multiproc::__testing::serve_manager(&examples);
    for example in &examples {
        let flipped: Vec<Vec<u8>> = (0..example.len())
            .map(|i| {
                let mut bad = example.clone();
                bad[i] ^= 0x5a;
                bad
            })
            .collect();
        multiproc::__testing::serve_manager(&flipped);
    }
    assert!(started.elapsed() < BOUND);
}
