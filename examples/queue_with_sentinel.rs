//! A producer and a consumer on a `Queue`, ended by a sentinel (`None`),
//! as Python tutorials write it.
//!
//! ```python
//! def producer(q):
//!     for i in range(5):
//!         q.put(i * i)
//!     q.put(None)
//!
//! def consumer(q):
//!     while (item := q.get()) is not None:
//!         print('got', item)
//!     print('consumer done')
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     ps = [Process(target=producer, args=(q,)), Process(target=consumer, args=(q,))]
//!     for p in ps: p.start()
//!     for p in ps: p.join()
//!     print('all done')
//! ```
use multiproc::{Process, Queue};

fn producer(q: Queue<Option<u32>>) {
    for i in 0..5 {
        q.put(&Some(i * i)).unwrap();
    }
    q.put(&None).unwrap();
}

fn consumer(q: Queue<Option<u32>>) {
    while let Some(item) = q.get().unwrap() {
        println!("got {item}");
    }
    println!("consumer done");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let q = Queue::new()?;
    let ps = [Process::new(producer, (q.clone(),)), Process::new(consumer, (q.clone(),))];
    for p in &ps {
        p.start()?;
    }
    for p in &ps {
        p.join()?;
    }
    println!("all done");
    Ok(())
}
