//! A tour of multiproc: every primitive, used across real processes.
//!
//! `cargo run --release --example tour`

use multiproc::connection::{Address, Client, Listener};
use multiproc::manager::{DictProxy, ListProxy};
use multiproc::Manager;
use multiproc::{
    current_process, parent_process, Array, Barrier, BoundedSemaphore, Condition, Connection,
    ErrorKind, Event, Lock, Pipe, Pool, Process, Queue, RLock, RawArray, Semaphore, StartMethod,
    Value,
};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn greet(tag: String) {
    let parent = parent_process().map(|p| p.pid()).unwrap_or(0);
    println!(
        "  [{}] pid {} ({tag}), child of {parent}",
        current_process().name(),
        current_process().pid()
    );
}

fn add_under_lock(lock: Lock, total: Value<u64>, n: u64) {
    for _ in 0..n {
        let _guard = lock.lock().unwrap();
        total.set(total.get().unwrap() + 1).unwrap();
    }
}

fn recurse(rlock: RLock, depth: u32) {
    for _ in 0..depth {
        rlock.acquire().unwrap();
    }
    println!("  [{}] holds the RLock {} deep", current_process().name(), rlock.depth());
    for _ in 0..depth {
        rlock.release().unwrap();
    }
}

fn square_all(array: Array<f64>) {
    for x in array.lock().unwrap().iter_mut() {
        *x *= *x;
    }
}

fn limited(sem: Semaphore, inside: Value<u32>, most: Value<u32>) {
    let _permit = sem.guard().unwrap();
    let now = {
        let mut i = inside.lock().unwrap();
        *i += 1;
        *i
    };
    {
        let mut m = most.lock().unwrap();
        *m = (*m).max(now);
    }
    std::thread::sleep(Duration::from_millis(20));
    *inside.lock().unwrap() -= 1;
}

fn wait_for_go(go: Event, ready: Barrier) {
    ready.wait().unwrap();
    go.wait();
    println!("  [{}] saw the event", current_process().name());
}

fn consume(cond: Condition, queue: Array<u32>, count: Value<u32>, items: u32) {
    for _ in 0..items {
        let guard = cond.lock().unwrap();
        guard.wait_for(|| count.get().unwrap() > 0).unwrap();
        let n = count.get().unwrap();
        let item = queue.get((n - 1) as usize).unwrap();
        count.set(n - 1).unwrap();
        guard.notify_all().unwrap();
        drop(guard);
        println!("  [{}] consumed {item}", current_process().name());
    }
}

fn meet(barrier: Barrier) {
    let index = barrier.wait().unwrap();
    println!("  [{}] passed the barrier as arrival {index}", current_process().name());
}

fn hold_and_die(lock: Lock, holding: Event) {
    lock.acquire().unwrap();
    holding.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn pipe_child(conn: Connection) {
    let question: String = conn.recv().unwrap();
    conn.send(&(question.len(), vec!["hello", "world"])).unwrap();
    let big = conn.recv_bytes().unwrap();
    conn.send_bytes(&(big.len() as u64).to_le_bytes()).unwrap();
}

fn hold_end(conn: Connection, ready: Event) {
    conn.send_bytes(b"").unwrap();
    ready.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn producer(queue: Queue<Option<(u32, String)>>, id: u32) {
    for i in 0..3 {
        queue.put(&Some((id, format!("item {i}")))).unwrap();
    }
    queue.put(&None).unwrap();
}

fn panics() {
    panic!("this child panics on purpose");
}

fn double(x: u64) -> u64 {
    x * 2
}

/// A task with some work in it: the number of primes below `n`.
fn primes_below(n: u32) -> u32 {
    (2..n).filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0)).count() as u32
}

fn dies_on_13(x: u32) -> u32 {
    if x == 13 {
        std::process::abort();
    }
    x
}

fn visit(visits: DictProxy<String, u32>, log: ListProxy<String>) -> multiproc::Result<()> {
    let me = current_process();
    visits.insert(&me.name().to_string(), &me.pid())?;
    log.append(&format!("{} was here", me.name()))
}

/// Python's own `multiprocessing.connection`, as a client or a listener.
const PYTHON_CLIENT: &str = "
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
try:
    c = Client(sys.argv[1], authkey=sys.argv[2].encode())
except AuthenticationError as e:
    print('AuthenticationError:', e)
    sys.exit(0)
c.send_bytes(b'python ' + sys.version.split()[0].encode() + b' got: ' + c.recv_bytes())
";
const PYTHON_LISTENER: &str = "
import sys
from multiprocessing.connection import Listener
l = Listener(sys.argv[1], authkey=sys.argv[2].encode())
print('ready', flush=True)
c = l.accept()
c.send_bytes(c.recv_bytes()[::-1])
";

fn python(script: &str, address: &Address, key: &str) -> Option<std::process::Child> {
    std::process::Command::new("python3")
        .args(["-c", script, &address.to_string(), key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()
}

fn run(p: &Process) -> Result<i32> {
    p.start()?;
    match p.join_timeout(Duration::from_secs(30))? {
        Some(code) => Ok(code),
        None => {
            p.kill()?;
            Err("child did not finish".into())
        }
    }
}

fn main() -> Result {
    multiproc::init();
    println!(
        "multiproc tour: {} CPUs, main process pid {}",
        multiproc::cpu_count(),
        std::process::id()
    );

    println!("\nProcess: start methods, names, exit codes");
    for method in [StartMethod::Spawn, StartMethod::Fork, StartMethod::ForkServer] {
        if cfg!(windows) && method != StartMethod::Spawn {
            let err = Process::new(greet, (String::new(),)).start_method(method).start();
            println!("  {method:?}: {}", err.err().ok_or("fork started on Windows")?);
            continue;
        }
        let t = Instant::now();
        let p = Process::new(greet, (format!("{method:?}"),))
            .start_method(method)
            .name(format!("greeter-{method:?}"));
        let code = run(&p)?;
        println!("  {method:?}: exit code {code}, start+join {:?}", t.elapsed());
    }
    let p = Process::new(panics, ());
    println!("  a panicking child exits with {}", run(&p)?);
    let p = Process::new(hold_and_die, (Lock::new()?, Event::new()?));
    p.start()?;
    p.kill()?;
    println!("  a killed child reports {}", p.join()?);

    println!("\nLock: 4 processes x 10000 increments of a Value");
    let (lock, total) = (Lock::new()?, Value::new(0u64)?);
    let mut ps: Vec<_> = (0..4)
        .map(|_| Process::new(add_under_lock, (lock.clone(), total.clone(), 10_000)))
        .collect();
    for p in &mut ps {
        run(p)?;
    }
    println!("  total = {}", total.get()?);

    println!("\nRLock: a child takes it 3 deep");
    run(&Process::new(recurse, (RLock::new()?, 3)))?;

    println!("\nArray: a child squares [1.5, 2, 3] in place");
    let array = Array::new(&[1.5f64, 2.0, 3.0])?;
    run(&Process::new(square_all, (array.clone(),)))?;
    println!("  array = {:?}", array.to_vec()?);
    let raw = RawArray::new(&[0u8; 4])?;
    raw.set(2, 7)?;
    println!("  a RawArray (no lock): {:?}", raw.to_vec());

    println!("\nSemaphore(2): 5 processes, at most 2 inside at once");
    let (sem, inside, most) = (Semaphore::new(2)?, Value::new(0u32)?, Value::new(0u32)?);
    let mut ps: Vec<_> = (0..5)
        .map(|_| Process::new(limited, (sem.clone(), inside.clone(), most.clone())))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        p.join()?;
    }
    println!("  most inside at once: {}", most.get()?);
    let bounded = BoundedSemaphore::new(1)?;
    println!("  BoundedSemaphore(1) released above its bound: {}", bounded.release().unwrap_err());

    println!("\nEvent: 3 processes wait until the parent sets it");
    let (go, ready) = (Event::new()?, Barrier::new(4)?);
    let mut ps: Vec<_> =
        (0..3).map(|_| Process::new(wait_for_go, (go.clone(), ready.clone()))).collect();
    for p in &mut ps {
        p.start()?;
    }
    ready.wait()?;
    println!("  parent sets the event");
    go.set();
    for p in &mut ps {
        p.join()?;
    }

    println!("\nCondition: the parent produces 3 items, a child consumes them");
    let (cond, queue, count) = (Condition::new()?, Array::<u32>::zeroed(8)?, Value::new(0u32)?);
    let consumer = Process::new(consume, (cond.clone(), queue.clone(), count.clone(), 3));
    consumer.start()?;
    for item in [10, 20, 30] {
        let guard = cond.lock()?;
        let n = count.get()?;
        queue.set(n as usize, item)?;
        count.set(n + 1)?;
        println!("  produced {item}");
        guard.notify(1)?;
    }
    consumer.join()?;

    println!("\nBarrier(3): two children and the parent meet");
    let barrier = Barrier::new(3)?;
    let mut ps: Vec<_> = (0..2).map(|_| Process::new(meet, (barrier.clone(),))).collect();
    for p in &mut ps {
        p.start()?;
    }
    println!("  parent arrives as {}", barrier.wait()?);
    for p in &mut ps {
        p.join()?;
    }

    println!("\nPipe: a child answers over a duplex pipe");
    let (mine, theirs) = Pipe::new()?;
    let child = Process::new(pipe_child, (theirs,));
    child.start()?;
    mine.send("how long is this question?")?;
    let (len, words): (usize, Vec<String>) = mine.recv()?;
    println!("  child says the question has {len} bytes, and {words:?}");
    let big = vec![7u8; 16 << 20];
    let t = Instant::now();
    mine.send_bytes(&big)?;
    let echoed = u64::from_le_bytes(mine.recv_bytes()?.try_into().unwrap());
    println!("  16 MiB through a 1 MiB ring: the child got {echoed} bytes in {:?}", t.elapsed());
    child.join()?;
    let (mine, theirs) = Pipe::new()?;
    let ready = Event::new()?;
    let child = Process::new(hold_end, (theirs, ready.clone()));
    child.start()?;
    ready.wait();
    mine.recv_bytes()?; // what it sent before it died is still delivered
    child.kill()?;
    child.join()?;
    println!(
        "  the child holding the other end was killed; recv says: {}",
        mine.recv_bytes().unwrap_err()
    );

    println!("\nQueue: two producers, one consumer, no feeder thread");
    let queue = Queue::new()?;
    let mut producers: Vec<_> =
        (0..2).map(|id| Process::new(producer, (queue.clone(), id))).collect();
    for p in &mut producers {
        p.start()?;
    }
    let mut done = 0;
    while done < 2 {
        match queue.get_timeout(Duration::from_secs(30))? {
            Some((id, item)) => println!("  got {item:?} from producer {id}"),
            None => done += 1,
        }
    }
    for p in &mut producers {
        p.join()?;
    }
    println!("  queue empty: {}", queue.empty());

    println!("\nOwner death: a child holding a Lock is killed");
    let (lock, holding) = (Lock::new()?, Event::new()?);
    let holder = Process::new(hold_and_die, (lock.clone(), holding.clone()));
    holder.start()?;
    holding.wait();
    holder.kill()?;
    holder.join()?;
    let t = Instant::now();
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(e) if e.is_owner_died() => println!("  taken over after {:?}: {e}", t.elapsed()),
        other => println!("  unexpected: {other:?}"),
    }
    lock.release()?;
    println!("\nPool: map, a long imap with a progress bar, and a worker that dies");
    let pool = Pool::new(multiproc::cpu_count().max(2))?;
    println!(
        "  Pool({}).map(double, [5, 10, 20]) = {:?}",
        pool.processes(),
        pool.map(double, [5, 10, 20])?
    );
    let n = 20_000u32;
    let bar = indicatif::ProgressBar::new(u64::from(n));
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {bar:40} {pos}/{len} primes_below, {per_sec}")
            .expect("a valid template"),
    );
    let t = Instant::now();
    let mut total = 0u64;
    for count in pool.chunksize(200).imap(primes_below, (0..n).map(|i| 1000 + i % 1000))? {
        total += u64::from(count?);
        bar.inc(1);
    }
    bar.finish();
    println!("  {n} tasks in {:?}, {total} primes counted", t.elapsed());
    let outcomes: Vec<_> = pool.chunksize(4).imap(dies_on_13, 10..17)?.collect();
    for (x, r) in (10..17).zip(outcomes) {
        match r {
            Ok(v) => print!("  {x}: ok {v};"),
            Err(e) if e.kind() == ErrorKind::WorkerDied => print!("  {x}: WorkerDied;"),
            Err(e) => print!("  {x}: {e};"),
        }
    }
    println!("\n  the pool replaced that worker: map again = {:?}", pool.map(double, [1, 2])?);
    let t = Instant::now();
    let rounds = 2000;
    for _ in 0..rounds {
        pool.apply(double, (1,))?;
    }
    println!("  apply round trip: {:?}", t.elapsed() / rounds);
    pool.close();
    pool.join()?;

    manager_section()?;
    connection_section()?;

    println!("\ndone");
    Ok(())
}

fn manager_section() -> Result {
    println!("\nManager: a dict and a list in a server process, shared by 3 children");
    let manager = Manager::start()?;
    let (visits, log) = (manager.dict::<String, u32>()?, manager.list::<String>()?);
    let mut ps: Vec<_> =
        (0..3).map(|_| Process::new(visit, (visits.clone(), log.clone()))).collect();
    for p in &mut ps {
        run(p)?;
    }
    for (name, pid) in visits.items()? {
        println!("  visits[{name:?}] = {pid}");
    }
    println!("  log = {:?}", log.to_vec()?);
    let t = Instant::now();
    for i in 0..10_000 {
        visits.insert(&"counter".into(), &i)?;
    }
    println!("  10000 dict sets took {:?} ({:?} each)", t.elapsed(), t.elapsed() / 10_000);
    if let Some(server) = manager.process() {
        server.kill()?;
        server.join()?;
    }
    println!("  the server was killed; a proxy call says: {}", visits.len().unwrap_err());
    Ok(())
}

fn connection_section() -> Result {
    println!("\nconnection: Rust and Python's multiprocessing.connection, authkey both ways");
    let key = "tour key";
    let listener = Listener::bind(Address::arbitrary_unix()?, key.as_bytes())?;
    match python(PYTHON_CLIENT, listener.address(), key) {
        None => println!("  python3 not found: skipped"),
        Some(mut py) => {
            let conn = listener.accept_timeout(Duration::from_secs(30))?;
            conn.send_bytes(b"hello from a Rust Listener")?;
            let reply = conn.recv_bytes_timeout(Duration::from_secs(30))?;
            println!("  Rust Listener <- Python Client: {}", String::from_utf8_lossy(&reply));
            py.wait()?;
            let address = Address::arbitrary_unix()?;
            let mut py = python(PYTHON_LISTENER, &address, key).ok_or("python3 vanished")?;
            let mut ready = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(py.stdout.as_mut().ok_or("no stdout")?),
                &mut ready,
            )?;
            let conn = Client::connect_timeout(address, key.as_bytes(), Duration::from_secs(30))?;
            conn.send_bytes(b"a Rust Client says hello")?;
            let reply = conn.recv_bytes_timeout(Duration::from_secs(30))?;
            println!("  Rust Client <- Python Listener: {}", String::from_utf8_lossy(&reply));
            py.wait()?;
            let wrong = Listener::bind(Address::arbitrary_unix()?, b"another key")?;
            let mut py = python(PYTHON_CLIENT, wrong.address(), key).ok_or("python3 vanished")?;
            let refused = wrong.accept_timeout(Duration::from_secs(30)).unwrap_err();
            println!("  a Python client with the wrong key, as Rust saw it: {refused}");
            let mut said = String::new();
            std::io::Read::read_to_string(py.stdout.as_mut().ok_or("no stdout")?, &mut said)?;
            println!("  ... and as Python saw it: {}", said.trim());
            py.wait()?;
        }
    }
    Ok(())
}
