//! Python's `Process` states and exit codes (docs: "Process and
//! exceptions"): a child that would sleep for ever is terminated, and its
//! repr and `exitcode` say so; `join` with a timeout; exit codes of a
//! child that returns, fails and exits with a number.
//!
//! ```python
//! p = multiprocessing.Process(target=time.sleep, args=(1000,))
//! print(p, p.is_alive())
//! p.start()
//! print(p, p.is_alive())
//! p.terminate()
//! time.sleep(0.1)
//! print(p, p.is_alive())
//! p.exitcode == -signal.SIGTERM
//! ```
use multiproc::Process;
use std::time::Duration;

fn sleep_long() {
    std::thread::sleep(Duration::from_secs(1000));
}

fn exit_with(code: i32) -> i32 {
    code
}

fn fail() -> Result<(), String> {
    Err("something went wrong".into())
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let p = Process::new(sleep_long, ()).name("sleeper");
    println!("{p} {}", p.is_alive());
    p.start()?;
    println!(
        "{} {}",
        p.to_string().replace(&p.pid().unwrap_or(0).to_string(), "PID"),
        p.is_alive()
    );
    println!("join(0.1) -> {:?}", p.join_timeout(Duration::from_millis(100))?);
    p.terminate()?;
    p.join()?;
    println!(
        "{} {}",
        p.to_string().replace(&p.pid().unwrap_or(0).to_string(), "PID"),
        p.is_alive()
    );
    println!("exitcode == -SIGTERM: {}", p.exitcode() == Some(-15));
    for (what, p) in [
        ("returns 0", Process::new(exit_with, (0,))),
        ("exits with 3", Process::new(exit_with, (3,))),
        ("returns an error", Process::new(fail, ())),
    ] {
        p.start()?;
        println!("a child that {what}: exitcode {}", p.join()?);
    }
    Ok(())
}
