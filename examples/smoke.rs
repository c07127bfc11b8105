use multiproc::*;
fn add(lock: Lock, v: Value<i64>) {
    for _ in 0..1000 {
        let _g = lock.lock().unwrap();
        v.set(v.get().unwrap() + 1).unwrap();
    }
}
fn main() {
    multiproc::init();
    let lock = Lock::new().unwrap();
    let v = Value::new(0i64).unwrap();
    let mut ps: Vec<_> = (0..4)
        .map(|i| {
            Process::new(add, (lock.clone(), v.clone())).start_method(if i % 2 == 0 {
                StartMethod::Spawn
            } else {
                StartMethod::Fork
            })
        })
        .collect();
    let t = std::time::Instant::now();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &mut ps {
        let r = p.join();
        println!("{} -> {:?}", p.get_name(), r);
    }
    println!("value = {} in {:?}", v.get().unwrap(), t.elapsed());
}
