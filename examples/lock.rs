//! Python's Lock example (docs: "Synchronization between processes"):
//! ten children print under one lock, so no two lines mix.
//!
//! ```python
//! def f(l, i):
//!     l.acquire()
//!     try:
//!         print('hello world', i)
//!     finally:
//!         l.release()
//!
//! if __name__ == '__main__':
//!     lock = Lock()
//!     for num in range(10):
//!         Process(target=f, args=(lock, num)).start()
//! ```
//!
//! As in Python, the main process waits for its children when it exits.
use multiproc::{Lock, Process};

fn f(l: Lock, i: u32) {
    let _guard = l.lock().unwrap();
    println!("hello world {i}");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let lock = Lock::new()?;
    for num in 0..10 {
        Process::new(f, (lock.clone(), num)).start()?;
    }
    Ok(())
}
