//! Python's Pool example (docs: "Using a pool of workers").
//!
//! ```python
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     with Pool(processes=4) as pool:
//!         print(pool.map(f, range(10)))
//!         for i in pool.imap_unordered(f, range(10)):
//!             print(i)
//!         res = pool.apply_async(f, (20,))
//!         print(res.get(timeout=1))
//!         res = pool.apply_async(time.sleep, (10,))
//!         try:
//!             print(res.get(timeout=1))
//!         except TimeoutError:
//!             print("We lacked patience and got a multiprocessing.TimeoutError")
//!         print("For the moment, the pool remains available for more work")
//!     print("Now the pool is closed and no longer available")
//! ```
use multiproc::Pool;
use std::time::Duration;

fn f(x: u64) -> u64 {
    x * x
}

fn sleep(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    {
        let pool = Pool::new(4)?;
        println!("{:?}", pool.map(f, 0..10)?);
        for i in pool.imap_unordered(f, 0..10)? {
            println!("{}", i?);
        }
        let mut res = pool.apply_async(f, (20,))?;
        println!("{}", res.get_timeout(Duration::from_secs(10))?);
        let mut res = pool.apply_async(sleep, (10,))?;
        match res.get_timeout(Duration::from_secs(1)) {
            Err(e) if e.is_timeout() => {
                println!("We lacked patience and got a multiprocessing.TimeoutError")
            }
            other => println!("unexpected: {other:?}"),
        }
        println!("For the moment, the pool remains available for more work");
    }
    println!("Now the pool is closed and no longer available");
    Ok(())
}
