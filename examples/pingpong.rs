use multiproc::{Event, Process};
fn pong(ping: Event, pong: Event, rounds: u64) {
    for _ in 0..rounds { ping.wait(); ping.clear(); pong.set(); }
}
fn main() {
    multiproc::init();
    let rounds = 100_000u64;
    let (ping, pong_) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(pong, (ping.clone(), pong_.clone(), rounds));
    p.start().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..rounds { ping.set(); pong_.wait(); pong_.clear(); }
    println!("{:.3} us per round trip", t.elapsed().as_secs_f64() * 1e6 / rounds as f64);
    p.join().unwrap();
}
