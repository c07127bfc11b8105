//! Scale: a hundred thousand Locks and Values in one process under the
//! usual descriptor limit (`ulimit -n 1024`, set here and by `.ci/run`),
//! ten thousand of them passed to a child at once, slots reclaimed and
//! never mistaken for the objects that held them before.

mod common;
use common::*;
use multiproc::__testing::{arenas_mapped, handles_sent};
use multiproc::{Event, Lock, Process, Queue, Value};

/// The tests here count arenas and descriptors: one runs at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Objects of each kind made in one process.
const MANY: usize = 100_000;
/// Objects passed to a child at once.
const PASSED: usize = 10_000;

/// Lowers this process's descriptor limit (soft and hard) to 1024, as
/// `ulimit -n 1024` does, so that nothing can raise it back.
fn limit_descriptors() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit with a valid rlimit out/in pointer.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            let low = limit.rlim_max.min(1024);
            let lowered = libc::rlimit { rlim_cur: low.min(limit.rlim_cur), rlim_max: low };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lowered), 0);
        }
    }
}

#[test]
fn a_hundred_thousand_locks_and_values_fit_in_1024_descriptors() {
    let _serial = serial();
    limit_descriptors();
    let locks: Vec<Lock> = (0..MANY).map(|_| Lock::new().expect("a Lock")).collect();
    let values: Vec<Value<u64>> =
        (0..MANY).map(|i| Value::new(i as u64).expect("a Value")).collect();
    for (i, (lock, value)) in locks.iter().zip(&values).enumerate().step_by(997) {
        let _guard = lock.lock().unwrap();
        assert!(lock.try_acquire().is_err());
        assert_eq!(value.get().unwrap(), i as u64, "each Value is its own");
        *value.lock().unwrap() += 1;
    }
    let arenas = arenas_mapped();
    eprintln!("{MANY} Locks and {MANY} Value<u64>s: {arenas} arenas");
    assert!(arenas <= 16, "{arenas} arenas for {MANY} + {MANY} 64-byte objects");
}

fn check_passed(locks: Vec<Lock>, values: Vec<Value<u64>>) -> i32 {
    if locks.len() != PASSED || values.len() != PASSED {
        return 2;
    }
    for (i, (lock, value)) in locks.iter().zip(&values).enumerate() {
        if lock.try_acquire().is_err() || value.get().unwrap() != i as u64 {
            return 3;
        }
        *value.lock().unwrap() += 1;
    }
    0
}

fn check_queued(q: Queue<(Vec<Lock>, Vec<Value<u64>>)>) -> i32 {
    match q.get_timeout(BOUND) {
        Ok((locks, values)) => check_passed(locks, values),
        Err(_) => 4,
    }
}

fn made() -> (Vec<Lock>, Vec<Value<u64>>) {
    let locks = (0..PASSED).map(|_| Lock::new().unwrap()).collect();
    let values = (0..PASSED).map(|i| Value::new(i as u64).unwrap()).collect();
    (locks, values)
}

fn all_taken(locks: &[Lock], values: &[Value<u64>]) -> bool {
    let taken = locks.iter().all(|l| l.is_locked());
    taken && values.iter().enumerate().all(|(i, v)| v.get().unwrap() == i as u64 + 1)
}

#[test]
fn ten_thousand_objects_reach_a_child_through_a_few_descriptors() {
    let _serial = serial();
    limit_descriptors();
    for method in METHODS {
        // As the target's arguments.
        let (locks, values) = made();
        let before = handles_sent();
        let p = with(method, Process::new(check_passed, (locks.clone(), values.clone())));
        p.start().unwrap();
        let as_arguments = handles_sent() - before;
        assert_eq!(finish(&p), 0, "{method:?}");
        assert!(all_taken(&locks, &values), "{method:?}: the child used the parent's objects");

        // Through a Queue, in one message.
        let (locks, values) = made();
        let q = Queue::new().unwrap();
        let p = with(method, Process::new(check_queued, (q.clone(),)));
        p.start().unwrap();
        let before = handles_sent();
        q.put(&(locks.clone(), values.clone())).unwrap();
        let through_queue = handles_sent() - before;
        assert_eq!(finish(&p), 0, "{method:?}");
        assert!(all_taken(&locks, &values), "{method:?}: the child used the parent's objects");
        eprintln!(
            "{method:?}: {PASSED} Locks and {PASSED} Value<u64>s passed with {as_arguments} \
             descriptors as arguments, {through_queue} through a Queue"
        );
        // One per arena the objects are in, at most.
        let arenas = arenas_mapped() as u64;
        assert!(as_arguments <= arenas + 1, "{as_arguments} descriptors, {arenas} arenas");
        assert!(through_queue <= arenas, "{through_queue} descriptors, {arenas} arenas");
    }
}

#[test]
fn freed_slots_are_reused_and_never_mistaken_for_their_old_objects() {
    let _serial = serial();
    let churn = || drop((0..50_000).map(|_| Lock::new().unwrap()).collect::<Vec<_>>());
    churn();
    let after_one = arenas_mapped();
    churn();
    churn();
    assert_eq!(arenas_mapped(), after_one, "dropped Locks' slots are reused");
    // A slot freed and taken again is a new object: a reference to the old
    // one is refused (see object.rs's unit tests), and a new one starts
    // unlocked and zeroed.
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    drop(lock);
    for _ in 0..1000 {
        assert!(!Lock::new().unwrap().is_locked());
    }
    let v = Value::new(7u64).unwrap();
    drop(v);
    for _ in 0..1000 {
        assert_eq!(Value::<u64>::new(0).unwrap().get().unwrap(), 0);
    }
}

/// Reads its Value once the parent, which dropped its own handle and made
/// new objects meanwhile, says so.
fn read_later(value: Value<u64>, go: Event) -> i32 {
    if !go.wait_timeout(BOUND) {
        return 2;
    }
    match value.get() {
        Ok(42) => 0,
        Ok(_) => 3,
        Err(_) => 4,
    }
}

#[test]
fn a_child_keeps_its_object_after_the_parent_drops_it() {
    let _serial = serial();
    for method in METHODS {
        let value = Value::new(42u64).unwrap();
        let go = Event::new().unwrap();
        let p = with(method, Process::new(read_later, (value.clone(), go.clone())));
        p.start().unwrap();
        drop(value);
        // Were the slot freed, these would take it.
        let others: Vec<Value<u64>> = (0..2000).map(|_| Value::new(7).unwrap()).collect();
        go.set();
        assert_eq!(finish(&p), 0, "{method:?}: the child's Value changed under it");
        drop(others);
    }
}

/// Takes a Value through a Queue and sends back when done; the sender
/// dropped its handle right after putting it.
fn adopt(q: Queue<Value<u64>>, done: Event) -> i32 {
    let Ok(v) = q.get_timeout(BOUND) else { return 2 };
    let ok = v.get().unwrap() == 5;
    drop(v);
    done.set();
    if ok {
        0
    } else {
        3
    }
}

#[test]
fn an_object_sent_and_dropped_by_its_sender_lives_until_received() {
    let _serial = serial();
    let q = Queue::new().unwrap();
    let done = Event::new().unwrap();
    let p = child(Process::new(adopt, (q.clone(), done.clone())));
    p.start().unwrap();
    q.put(&Value::new(5u64).unwrap()).unwrap(); // dropped here
    let _churn: Vec<Value<u64>> = (0..2000).map(|_| Value::new(9).unwrap()).collect();
    assert_eq!(finish(&p), 0);
    assert!(done.is_set());
}

/// Run as a process of its own (it changes the process's limits): with
/// the soft descriptor limit lowered to 64, makes a Lock (the crate's first
/// use), prints the soft limit then, lowers the hard limit to 64 as well,
/// and makes Queues until one fails, printing that error's kind and text.
#[cfg(unix)]
#[test]
fn helper_descriptor_limits() {
    if std::env::var_os("MULTIPROC_TEST_LIMITS").is_none() {
        return;
    }
    let set = |soft, hard| {
        let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        // SAFETY: setrlimit with a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    };
    let get = || {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit into a valid rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        limit
    };
    set(64, get().rlim_max);
    let _lock = Lock::new().unwrap();
    let limit = get();
    println!("soft={} hard={}", limit.rlim_cur, limit.rlim_max);
    set(64, 64);
    let mut queues = Vec::new();
    while queues.len() < 1000 {
        match Queue::<u8>::new() {
            Ok(q) => queues.push(q),
            Err(e) => {
                println!("kind={:?} error={e}", e.kind());
                return;
            }
        }
    }
    println!("no error after 1000 Queues");
}

/// Runs the helper above in a process of its own, with `keep` setting the
/// opt-out; its output.
#[cfg(unix)]
fn run_limits_helper(keep: bool) -> String {
    let mut cmd = helper_command("helper_descriptor_limits", "MULTIPROC_TEST_LIMITS");
    if keep {
        cmd.env("MULTIPROC_KEEP_NOFILE", "1");
    } else {
        cmd.env_remove("MULTIPROC_KEEP_NOFILE");
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + BOUND;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the limits helper did not finish within {BOUND:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    out
}

#[cfg(unix)]
#[test]
fn the_descriptor_limit_is_raised_unless_kept_and_running_out_is_named() {
    let raised = run_limits_helper(false);
    // libtest prints the test's name on the line before the first output.
    let line = raised.lines().find_map(|l| l.split_once("soft=")).expect(&raised).1;
    let (soft, hard) = line.split_once(" hard=").unwrap();
    assert!(soft == hard || soft.parse::<u64>().unwrap() > 64, "not raised: {line}");
    let failure = raised.lines().find(|l| l.starts_with("kind=")).expect(&raised);
    assert!(failure.starts_with("kind=Exhausted"), "{failure}");
    assert!(failure.contains("RLIMIT_NOFILE soft 64, hard 64"), "{failure}");

    let kept = run_limits_helper(true);
    assert!(kept.contains("soft=64 "), "the opt-out kept the limit: {kept}");
}

/// A plain-data type aligned past a slot's 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(128))]
struct Wide([u64; 16]);
// SAFETY: 16 u64s, 128 bytes at an alignment of 128: no padding, and every
// bit pattern is a value.
unsafe impl bytemuck::Zeroable for Wide {}
// SAFETY: as above; Copy and 'static.
unsafe impl bytemuck::Pod for Wide {}

#[test]
fn a_value_aligned_past_a_slot_gets_a_segment_and_its_alignment() {
    let _serial = serial();
    let wide = Value::new(Wide([7; 16])).unwrap();
    let guard = wide.lock().unwrap();
    assert_eq!(&*guard as *const Wide as usize % 128, 0, "aligned for its type");
    assert_eq!(*guard, Wide([7; 16]));
    drop(guard);
    let small = Value::new([1u64; 4]).unwrap();
    assert_eq!(small.get().unwrap(), [1; 4]);
}
