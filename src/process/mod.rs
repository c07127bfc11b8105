//! [`Process`]: Python's `multiprocessing.Process`, and the functions about
//! processes (`current_process`, `parent_process`, `cpu_count`, start methods).

// Where no start method is written yet, much of this is unused.
#![cfg_attr(not(mp_spawn), allow(dead_code))]

#[cfg_attr(not(mp_spawn), allow(dead_code))]
pub(crate) mod code_ref;
#[cfg(mp_fork)]
mod forkserver;
#[cfg(mp_spawn)]
mod start;
mod state;
mod target;

#[cfg(mp_spawn)]
#[doc(hidden)]
pub use start::testing;
#[cfg(mp_spawn)]
pub use start::BOOTSTRAP_FAILED;
#[cfg(mp_transfer)]
pub(crate) use state::at_exit;
pub use target::{Exit, Target};

use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::os::launch::Child;

/// How a child process is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum StartMethod {
    /// Re-execute this program; the child runs the target named by
    /// [`Process::new`] with its serialized arguments. Works from any
    /// parent, threaded or not. The default.
    Spawn,
    /// Copy this process with `fork` (Unix). Fast, allows closures
    /// ([`Process::with_closure`]), and refused when the parent has more than
    /// one thread unless [`Process::allow_threads`] opts in.
    Fork,
    /// Ask a single-threaded server process, spawned on first use, to fork
    /// the child (Unix). Safe from a threaded parent, and much faster than
    /// spawn; arguments travel as for spawn (no closures).
    ForkServer,
}

/// What a process does, as it exits normally, with its non-daemon children
/// still running ([`set_children_at_exit`]). Daemon children are always
/// terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildrenAtExit {
    /// Wait for each to end, as Python's main process does: a child that
    /// never ends keeps this process from exiting. The default.
    Join,
    /// Wait at most this long in all, then exit and leave the rest running.
    JoinAtMost(Duration),
    /// Exit at once and leave them running.
    Leave,
}

/// Sets what this process does, as it exits normally (returns from `main`,
/// or calls `std::process::exit`), with its non-daemon children still
/// running: by default it waits for them, as Python does. (A process that
/// ends by a signal, or by `std::process::abort`, waits for nothing.)
pub fn set_children_at_exit(policy: ChildrenAtExit) {
    state::set_children_at_exit(policy);
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method for processes that do not choose one.
pub fn set_start_method(method: StartMethod) {
    DEFAULT_METHOD.store(method as u8, Ordering::Relaxed);
}

/// The start method for processes that do not choose one.
pub fn get_start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::Fork,
        2 => StartMethod::ForkServer,
        _ => StartMethod::Spawn,
    }
}

/// What a child runs, for either start method.
trait Job: Send {
    /// Runs in a forked child; the exit code.
    #[cfg_attr(not(mp_fork), allow(dead_code))]
    fn run(self: Box<Self>) -> i32;
    /// Serializes for a spawned child.
    #[cfg(mp_spawn)]
    fn encode(&self) -> Result<start::Encoded>;
    /// Serializes the arguments into nothing, for a forked child, which
    /// gets them by copy: objects that must know they went to another
    /// process (a manager's proxies) are told, and no bytes are kept.
    #[cfg(mp_fork)]
    fn announce(&self);
}

struct Call<F, A> {
    #[cfg_attr(not(mp_fork), allow(dead_code))]
    f: F,
    args: A,
}

impl<F, A> Job for Call<F, A>
where
    F: Target<A>,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    fn run(self: Box<Self>) -> i32 {
        self.f.call(self.args)
    }

    #[cfg(mp_spawn)]
    fn encode(&self) -> Result<start::Encoded> {
        start::encode::<F, A>(&self.args)
    }

    #[cfg(mp_fork)]
    fn announce(&self) {
        let size = postcard::ser_flavors::Size::default();
        let _ = crate::handles::measure(|| postcard::serialize_with_flavor(&self.args, size));
    }
}

struct Closure<C>(C);

impl<C, R> Job for Closure<C>
where
    C: FnOnce() -> R + Send + 'static,
    R: Exit,
{
    fn run(self: Box<Self>) -> i32 {
        (self.0)().exit_code()
    }

    #[cfg(mp_spawn)]
    fn encode(&self) -> Result<start::Encoded> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "a closure can only be started with the fork start method",
        ))
    }

    /// A closure's captures are not serde: nothing to tell.
    #[cfg(mp_fork)]
    fn announce(&self) {}
}

/// A child process running a function: Python's `Process(target, args)`.
///
/// Build it with [`new`](Self::new) (a `fn` and its arguments, for any start
/// method) or [`with_closure`](Self::with_closure) (fork only), set the name,
/// daemon flag and start method, then [`start`](Self::start) and
/// [`join`](Self::join). Arguments may hold shared objects (Lock, Value, …):
/// the child gets handles to the same objects.
///
/// ```
/// fn add(lock: multiproc::Lock, counter: multiproc::Value<u64>) {
///     let _g = lock.lock().unwrap();
///     counter.set(counter.get().unwrap() + 1).unwrap();
/// }
///
/// let (lock, counter) = (multiproc::Lock::new()?, multiproc::Value::new(0u64)?);
/// let p = multiproc::Process::new(add, (lock, counter.clone())).name("adder");
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// assert_eq!(counter.get()?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A closure that captures is refused at compile time (a spawned child could
/// not rebuild it); use [`with_closure`](Self::with_closure) with fork:
///
/// ```compile_fail
/// let n = 5u32;
/// let p = multiproc::Process::new(move || n as i32, ());
/// p.start().unwrap();
/// ```
///
/// Starting, waiting and ending take `&self`, so a `Process` can be shared
/// with another thread (a watchdog's) and joined in a loop over `&ps`.
///
/// Dropping a `Process` leaves the child running (as `std::process::Child`).
/// When this process exits normally (returns from `main`, or calls
/// `std::process::exit`), it terminates its daemon children and then waits
/// for the others, as Python's does; [`set_children_at_exit`] changes the
/// wait.
pub struct Process {
    name: String,
    ident: Vec<u32>,
    daemon: bool,
    method: Option<StartMethod>,
    allow_threads: bool,
    job: Mutex<Option<Box<dyn Job>>>,
    child: OnceLock<Arc<Child>>,
    authkey: Option<Vec<u8>>,
    /// This process's pid (Python's `_parent_pid`), for `Display`.
    parent: u32,
    /// One of this crate's own helpers (the forkserver): ended at exit
    /// only after the children it serves were waited for.
    helper: bool,
}

impl Process {
    /// A process that will run `target(args...)`. `target` is a `fn` or a
    /// closure that captures nothing (checked at compile time); `args` is a
    /// tuple of its parameters: `(x,)` for one, `()` for none.
    pub fn new<F, A>(target: F, args: A) -> Process
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Process::from_job(Box::new(Call { f: target, args }), None)
    }

    /// A process that will run `f`, which may capture anything: fork only.
    pub fn with_closure<C, R>(f: C) -> Process
    where
        C: FnOnce() -> R + Send + 'static,
        R: Exit,
    {
        Process::from_job(Box::new(Closure(f)), Some(StartMethod::Fork))
    }

    fn from_job(job: Box<dyn Job>, method: Option<StartMethod>) -> Process {
        let (ident, name) = state::next_child();
        Process::with_identity(job, method, ident, name)
    }

    /// A helper process of this crate's own (the forkserver), which takes
    /// no number from the child counter: Python's helpers are not
    /// `Process` objects, and user processes are numbered 1, 2, … under
    /// every start method.
    #[cfg(mp_fork)]
    pub(crate) fn helper<F, A>(target: F, args: A, name: &str) -> Process
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let ident = state::with_me(|me| me.ident.clone());
        let mut p =
            Process::with_identity(Box::new(Call { f: target, args }), None, ident, name.into());
        p.helper = true;
        p
    }

    fn with_identity(
        job: Box<dyn Job>,
        method: Option<StartMethod>,
        ident: Vec<u32>,
        name: String,
    ) -> Process {
        Process {
            name,
            ident,
            daemon: false,
            method,
            allow_threads: false,
            job: Mutex::new(Some(job)),
            child: OnceLock::new(),
            authkey: None,
            parent: std::process::id(),
            helper: false,
        }
    }

    /// Sets the name (default `Process-N`, as Python).
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Marks it a daemon: terminated when this process exits normally.
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// Chooses the start method (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Process {
        self.method = Some(method);
        self
    }

    /// Allows the fork start method from a process with several threads.
    /// The child then has one thread, and any lock another thread held at the
    /// fork (inside malloc, stdout, a Mutex of yours) stays held in the child.
    pub fn allow_threads(mut self, allow: bool) -> Process {
        self.allow_threads = allow;
        self
    }

    /// The name given or assigned.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Whether it is a daemon (terminated when its parent exits).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The child's authkey (Python's `Process.authkey`); by default this
    /// process's own ([`CurrentProcess::authkey`]).
    pub fn authkey(mut self, key: &[u8]) -> Process {
        self.authkey = Some(key.to_vec());
        self
    }

    /// Starts the child. A process starts once. What this process printed
    /// and left in stdout's buffer is flushed first (as Python flushes
    /// `sys.stdout` and `sys.stderr`), so it comes before the child's.
    pub fn start(&self) -> Result<()> {
        crate::os::raise_open_files();
        let mut job = self.job.lock().unwrap_or_else(|e| e.into_inner());
        let job = job.take().ok_or_else(|| Error::invalid("a process can only be started once"))?;
        let method = self.method.unwrap_or_else(get_start_method);
        {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
        }
        let child = self.launch(job, method)?;
        let child = Arc::new(child);
        state::add_child(child.clone(), self.daemon, self.helper);
        let _ = self.child.set(child);
        Ok(())
    }

    #[cfg(mp_spawn)]
    fn launch(&self, job: Box<dyn Job>, method: StartMethod) -> Result<Child> {
        let authkey = match &self.authkey {
            Some(key) => key.clone(),
            None => state::authkey()?,
        };
        let who = start::Identity {
            name: self.name.clone(),
            ident: self.ident.clone(),
            daemon: self.daemon,
            authkey,
        };
        match method {
            StartMethod::Spawn => start::spawn(job.encode()?, who),
            #[cfg(mp_fork)]
            StartMethod::Fork => {
                job.announce();
                start::fork(Box::new(move || job.run()), who, self.allow_threads)
            }
            #[cfg(mp_fork)]
            StartMethod::ForkServer => forkserver::start(job.encode()?, who),
            #[cfg(not(mp_fork))]
            StartMethod::Fork | StartMethod::ForkServer => Err(Error::new(
                ErrorKind::Unsupported,
                format!("the {method:?} start method does not exist on this platform: use Spawn"),
            )),
        }
    }

    #[cfg(not(mp_spawn))]
    fn launch(&self, _job: Box<dyn Job>, _method: StartMethod) -> Result<Child> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "starting processes is not implemented on this platform yet",
        ))
    }

    fn child(&self) -> Result<&Arc<Child>> {
        self.child.get().ok_or_else(|| Error::invalid("the process was not started"))
    }

    /// Reaps the child if it ended, keeping the registry of children (for
    /// the exit) in step.
    fn poll(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let child = self.child()?;
        if timeout != Some(Duration::ZERO) {
            // Wait outside the registry lock; reap inside it.
            child.wait_exit(timeout).map_err(|e| Error::io("waiting for a child", e))?;
        }
        if let Some(code) = child.exitcode() {
            return Ok(Some(code));
        }
        state::children(|c| {
            let code = child.try_wait().map_err(|e| Error::io("waitpid", e))?;
            if code.is_some() {
                c.retain(|r| !Arc::ptr_eq(&r.child, child));
            }
            Ok(code)
        })
    }

    /// Waits for the child to end; its exit code. Several threads may join
    /// the same process at once; each gets the code.
    pub fn join(&self) -> Result<i32> {
        loop {
            if let Some(code) = self.poll(None)? {
                return Ok(code);
            }
        }
    }

    /// Waits at most `timeout`; the exit code if it ended (`None`: still
    /// running, as Python's `exitcode` after `join(timeout)`).
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        self.poll(Some(timeout))
    }

    /// Waits for the child to end without blocking a thread (the `tokio`
    /// feature): its exit code, as [`join`](Self::join). The
    /// runtime watches the child's pidfd (or its forkserver's report).
    /// Cancel-safe; any number of tasks may await one process.
    #[cfg(mp_async)]
    pub async fn join_async(&self) -> Result<i32> {
        use crate::aio::{until, Step};
        let child = self.child()?;
        until(
            child.exit_handle().map(crate::os::ready::signaled),
            None,
            || Ok(()),
            |_| match self.poll(Some(Duration::ZERO)) {
                Ok(Some(code)) => Step::Done(Ok(code)),
                Ok(None) => Step::Wait,
                Err(e) => Step::Done(Err(e)),
            },
        )
        .await
    }

    /// A handle readable once the child ended, for an event loop other
    /// than tokio: see [`Readiness`](crate::Readiness) (then
    /// [`exitcode`](Self::exitcode)). `Unsupported` where no handle tells
    /// of a child's exit (the portable path on Linux, without pidfds).
    #[cfg(mp_async)]
    pub fn readiness(&self) -> Result<crate::Readiness<'_>> {
        let handle = self.child()?.exit_handle().ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "no handle tells of this child's exit here")
        })?;
        crate::Readiness::new((), [Some(crate::os::ready::signaled(handle))])
    }

    /// Python's `exitcode`: `None` while running (or not started), the exit
    /// code, or minus the signal that killed it.
    pub fn exitcode(&self) -> Option<i32> {
        self.child.get()?;
        self.poll(Some(Duration::ZERO)).ok().flatten()
    }

    /// Whether it was started and has not ended.
    pub fn is_alive(&self) -> bool {
        self.child.get().is_some() && self.exitcode().is_none()
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.get().map(|c| c.pid())
    }

    /// Python's `terminate`: SIGTERM on Unix (a no-op once it ended).
    pub fn terminate(&self) -> Result<()> {
        // Reap first if it ended, so a reaped pid is never signalled.
        self.exitcode();
        self.child()?.terminate().map_err(|e| Error::io("terminating a child", e))
    }

    /// Python's `kill`: SIGKILL on Unix (a no-op once it ended).
    pub fn kill(&self) -> Result<()> {
        self.exitcode();
        self.child()?.kill().map_err(|e| Error::io("killing a child", e))
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("daemon", &self.daemon)
            .finish()
    }
}

/// Python's name for exit code `code` in a repr: `-SIGKILL` for a child a
/// signal ended, else the number.
fn exitcode_name(code: i32) -> String {
    match code.checked_neg().and_then(crate::os::launch::signal_name) {
        Some(name) => format!("-{name}"),
        None => code.to_string(),
    }
}

/// As Python's repr: `<Process name='Process-1' pid=1234 parent=1233
/// started daemon>`, `initial` before the start, `stopped exitcode=-SIGKILL`
/// once it ended.
impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Process name={}", PyStr(&self.name))?;
        if let Some(pid) = self.pid() {
            write!(f, " pid={pid}")?;
        }
        write!(f, " parent={}", self.parent)?;
        match (self.pid(), self.exitcode()) {
            (None, _) => write!(f, " initial")?,
            (Some(_), None) => write!(f, " started")?,
            (Some(_), Some(code)) => write!(f, " stopped exitcode={}", exitcode_name(code))?,
        }
        if self.daemon {
            write!(f, " daemon")?;
        }
        write!(f, ">")
    }
}

/// A string as Python's `repr` quotes it (single quotes unless the text
/// holds one and no double quote).
pub(crate) struct PyStr<'a>(pub &'a str);

impl std::fmt::Display for PyStr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quote = if self.0.contains('\'') && !self.0.contains('"') { '"' } else { '\'' };
        write!(f, "{quote}")?;
        for c in self.0.chars() {
            match c {
                '\\' => write!(f, "\\\\")?,
                '\n' => write!(f, "\\n")?,
                '\r' => write!(f, "\\r")?,
                '\t' => write!(f, "\\t")?,
                c if c == quote => write!(f, "\\{c}")?,
                c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        write!(f, "{quote}")
    }
}

/// This process, as Python's `current_process()` describes it.
#[derive(Clone, Debug)]
pub struct CurrentProcess {
    name: String,
    daemon: bool,
    /// The parent's pid (`None` in the main process).
    parent: Option<u32>,
}

impl CurrentProcess {
    /// `MainProcess`, or the name its parent gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Whether it runs as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Python's `current_process().authkey`: the key a [`Manager`] and
    /// [`connection`](crate::connection) use unless given another. In the
    /// main process, 32 random bytes made on first use; in a child, its
    /// parent's (or the one [`Process::authkey`] gave it).
    ///
    /// [`Manager`]: crate::Manager
    pub fn authkey(&self) -> Result<Vec<u8>> {
        state::authkey()
    }

    /// Replaces this process's authkey (children started later inherit it).
    pub fn set_authkey(&self, key: &[u8]) {
        state::set_authkey(key.to_vec());
    }
}

/// This process: its name and pid.
pub fn current_process() -> CurrentProcess {
    state::with_me(|me| CurrentProcess {
        name: me.name.clone(),
        daemon: me.daemon,
        parent: me.parent.as_ref().map(|p| p.pid),
    })
}

/// As Python's repr: `<_MainProcess name='MainProcess' parent=None
/// started>` in the main process, `<Process name='Process-1' parent=1233
/// started>` in a child.
impl std::fmt::Display for CurrentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parent {
            None => write!(f, "<_MainProcess name={} parent=None started", PyStr(&self.name))?,
            Some(p) => write!(f, "<Process name={} parent={p} started", PyStr(&self.name))?,
        }
        if self.daemon {
            write!(f, " daemon")?;
        }
        write!(f, ">")
    }
}

/// The process that started this one, if it was started by multiproc.
#[derive(Clone, Debug)]
pub struct ParentProcess {
    pid: u32,
    stamp: u32,
    name: String,
}

impl ParentProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the parent still runs (its pid not reused by another).
    pub fn is_alive(&self) -> bool {
        crate::os::ident::is_alive(self.pid, self.stamp)
    }
}

/// As Python's repr: `<_ParentProcess name='MainProcess' parent=None
/// unknown>` (Python shows neither its pid nor whether it runs; ask
/// [`pid`](ParentProcess::pid) and [`is_alive`](ParentProcess::is_alive)).
impl std::fmt::Display for ParentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<_ParentProcess name={} parent=None unknown>", PyStr(&self.name))
    }
}

/// The parent process (`None` in the main process), as Python's
/// `parent_process()`.
pub fn parent_process() -> Option<ParentProcess> {
    state::with_me(|me| me.parent.clone()).map(|p| ParentProcess {
        pid: p.pid,
        stamp: p.stamp,
        name: p.name,
    })
}

/// How many CPUs this process may use (its affinity mask, as Python 3.13's
/// `process_cpu_count()`; at least 1).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Makes this process a spawned child if it is one; call it first in
/// `main`. On Linux it also runs automatically before `main` (so test and
/// bench binaries need nothing), which makes this call a cheap no-op there.
pub fn init() {
    #[cfg(mp_spawn)]
    start::run_if_child();
}
