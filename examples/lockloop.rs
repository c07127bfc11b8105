fn main() {
    let lock = multiproc::Lock::new().unwrap();
    let n = 100_000_000u64;
    let t = std::time::Instant::now();
    for _ in 0..n {
        drop(std::hint::black_box(lock.lock().unwrap()));
    }
    println!("{:.2} ns", t.elapsed().as_nanos() as f64 / n as f64);
}
