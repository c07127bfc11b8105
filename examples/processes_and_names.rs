//! Python's first `Process` example: `info()` from the main process and
//! from a child that greets Bob (docs: "The Process class").
//!
//! ```python
//! def info(title):
//!     print(title)
//!     print('parent process:', os.getppid())
//!     print('process id:', os.getpid())
//!
//! def f(name):
//!     info('function f')
//!     print('hello', name)
//!
//! if __name__ == '__main__':
//!     info('main line')
//!     p = Process(target=f, args=('bob',))
//!     p.start()
//!     p.join()
//! ```
use multiproc::{current_process, parent_process, Process};

fn info(title: &str) {
    println!("{title}");
    println!("process name: {}", current_process().name());
    match parent_process() {
        Some(parent) => println!("parent process: {}", parent.pid()),
        None => println!("parent process: (started from the shell)"),
    }
    println!("process id: {}", std::process::id());
}

fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    info("main line");
    let p = Process::new(f, ("bob".to_string(),));
    p.start()?;
    p.join()?;
    Ok(())
}
