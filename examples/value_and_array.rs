//! Python's shared-memory example (docs: "Sharing state between
//! processes"): a child writes a `Value` and negates an `Array`.
//!
//! ```python
//! def f(n, a):
//!     n.value = 3.1415927
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! if __name__ == '__main__':
//!     num = Value('d', 0.0)
//!     arr = Array('i', range(10))
//!     p = Process(target=f, args=(num, arr))
//!     p.start()
//!     p.join()
//!     print(num.value)
//!     print(arr[:])
//! ```
use multiproc::{Array, Process, Value};

// The Python program's own literal, not a wish for π.
#[allow(clippy::approx_constant)]
fn f(n: Value<f64>, a: Array<i32>) {
    n.set(3.1415927).unwrap();
    for x in a.lock().unwrap().iter_mut() {
        *x = -*x;
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let num = Value::<f64>::default()?;
    let arr = Array::new(&(0..10).collect::<Vec<i32>>())?;
    let p = Process::new(f, (num.clone(), arr.clone()));
    p.start()?;
    p.join()?;
    println!("{}", num.get()?);
    println!("{:?}", arr.to_vec()?);
    Ok(())
}
