//! Python's Manager example (docs: "Server process"): a child fills a
//! dict and reverses a list that live in the manager's process.
//!
//! ```python
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!         print(d)
//!         print(l)
//! ```
//!
//! Rust's dict has one key type and one value type: here text keys and
//! optional numbers, which print as Rust shows them (`Some(1)` where
//! Python shows `1`).
use multiproc::manager::{DictProxy, ListProxy};
use multiproc::{Manager, Process};

fn f(d: DictProxy<String, Option<i32>>, l: ListProxy<i32>) {
    d.insert(&"1".into(), &Some(1)).unwrap();
    d.insert(&"2".into(), &Some(2)).unwrap();
    d.insert(&"0.25".into(), &None).unwrap();
    l.reverse().unwrap();
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let manager = Manager::start()?;
    let d = manager.dict()?;
    let l = manager.list_from(0..10)?;
    let p = Process::new(f, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    println!("{d}");
    println!("{l}");
    Ok(())
}
