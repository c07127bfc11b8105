//! Programs from Python's multiprocessing docs and tutorials, ported, each
//! run under spawn and under fork.

mod common;
use common::*;
use multiproc::{current_process, Array, Event, Lock, Process, Value};

fn add_one(lock: Lock, counter: Value<i32>) {
    let _guard = lock.lock().unwrap();
    counter.set(counter.get().unwrap() + 1).unwrap();
}

#[test]
fn five_processes_add_to_a_value_under_a_lock() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let counter = Value::new(0i32).unwrap();
        let ps: Vec<_> = (0..5)
            .map(|_| with(method, Process::new(add_one, (lock.clone(), counter.clone()))))
            .collect();
        assert_eq!(run_all(&ps), [0; 5], "{method:?}");
        assert_eq!(counter.get().unwrap(), 5, "{method:?}");
    }
}

fn add_one_to_each(array: Array<i32>) {
    for x in array.lock().unwrap().iter_mut() {
        *x += 1;
    }
}

#[test]
fn five_processes_add_to_every_element_of_an_array() {
    for method in METHODS {
        let array = Array::new(&[0, 1, 2, 3, 4]).unwrap();
        let ps: Vec<_> =
            (0..5).map(|_| with(method, Process::new(add_one_to_each, (array.clone(),)))).collect();
        assert_eq!(run_all(&ps), [0; 5]);
        assert_eq!(array.to_vec().unwrap(), [5, 6, 7, 8, 9], "{method:?}");
    }
}

fn square_one(array: Array<u64>, i: usize) {
    let x = array.get(i).unwrap();
    array.set(i, x * x).unwrap();
}

#[test]
fn ten_processes_square_one_element_each() {
    for method in METHODS {
        let array = Array::new(&(0..10u64).collect::<Vec<_>>()).unwrap();
        let ps: Vec<_> =
            (0..10).map(|i| with(method, Process::new(square_one, (array.clone(), i)))).collect();
        assert_eq!(run_all(&ps), [0; 10]);
        let squares: Vec<u64> = (0..10).map(|i| i * i).collect();
        assert_eq!(array.to_vec().unwrap(), squares, "{method:?}");
    }
}

fn wait_then_report(event: Event, done: Value<u32>) -> i32 {
    if !event.wait_timeout(BOUND) {
        return 3;
    }
    done.set(1).unwrap();
    0
}

#[test]
fn a_worker_waits_on_an_event_the_parent_sets() {
    for method in METHODS {
        let event = Event::new().unwrap();
        let done = Value::new(0u32).unwrap();
        let p = with(method, Process::new(wait_then_report, (event.clone(), done.clone())));
        p.start().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(done.get().unwrap(), 0, "the worker must still be waiting");
        event.set();
        assert_eq!(finish(&p), 0, "{method:?}");
        assert_eq!(done.get().unwrap(), 1);
    }
}

fn check_name(expected: String) -> i32 {
    if current_process().name() == expected {
        0
    } else {
        eprintln!("name is {:?}, expected {expected:?}", current_process().name());
        3
    }
}

#[test]
fn a_child_knows_the_name_it_was_given() {
    for method in METHODS {
        let p = with(method, Process::new(check_name, ("worker-7".to_string(),))).name("worker-7");
        assert_eq!(p.get_name(), "worker-7");
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}");
    }
    // Without a name, the child is Process-N as in Python.
    let p = Process::new(check_name, (String::new(),));
    assert!(p.get_name().starts_with("Process-"), "{}", p.get_name());
}
