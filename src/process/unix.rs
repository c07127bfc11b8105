//! # Safety
//!
//! This file starts children by re-exec (spawn) and by fork, and runs the
//! child's side of a spawn before `main`. Its obligations:
//! - A spawned child calls the entry named by an offset from [`anchor`] only
//!   after checking that it runs the parent's executable file (device,
//!   inode, size, mtime), so the offset names the same monomorphized
//!   [`entry`] there.
//! - [`entry`] conjures its target from nothing only for zero-sized types
//!   (asserted at compile time): `fn` items and closures that capture
//!   nothing, which carry no data and no invariant.
//! - A forked child runs only when the parent had one thread, or when the
//!   caller opted in, and ends with `_exit`.
#![allow(unsafe_code)]

use super::state::{self, Parent};
use super::target::Target;
use crate::handles;
use crate::{Error, Result};
use multiproc_posix::child::{self, Child, Forked};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The environment variable naming the bootstrap fd of a spawned child.
const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";
/// Exit code of a spawned child whose bootstrap was unusable.
pub const BOOTSTRAP_FAILED: i32 = 255;
const MAGIC: u64 = u64::from_le_bytes(*b"MPBOOT01");

/// What a spawned child needs to become the process its parent meant.
#[derive(Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    magic: u64,
    /// The parent's executable file ([`child::exe_identity`]).
    exe: [u64; 5],
    /// `entry::<F, A>` minus `anchor`, in the parent's image.
    entry: u64,
    args: Vec<u8>,
    /// The handle table: fd numbers, inherited at the same numbers (a
    /// forkserver child receives them over a socket, in this order).
    pub(crate) fds: Vec<RawFd>,
    name: String,
    ident: Vec<u32>,
    daemon: bool,
    parent: Parent,
    authkey: Vec<u8>,
}

/// What a job needs to be spawned: which entry and its serialized args.
pub(crate) struct Encoded {
    entry: u64,
    args: Vec<u8>,
    fds: Vec<RawFd>,
}

type EntryFn = fn(&[u8]) -> Result<Box<dyn FnOnce() -> i32>, String>;

/// The reference point for entry offsets: any fixed function of this binary.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(MAGIC)
}

fn anchor_address() -> u64 {
    anchor as *const () as usize as u64
}

/// Where code of this binary is, as an offset from the anchor: how a pool
/// names a task's entry to its workers (same executable, checked at spawn;
/// the same image under fork).
pub(crate) fn code_offset(f: *const ()) -> u64 {
    (f as usize as u64).wrapping_sub(anchor_address())
}

/// The address `code_offset` named, in this process's image.
pub(crate) fn code_at(offset: u64) -> *const () {
    anchor_address().wrapping_add(offset) as usize as *const ()
}

/// A spawned child's first step: deserialize the arguments (while the handle
/// table is in place) into the call to make.
fn entry<F: Target<A>, A: DeserializeOwned + 'static>(
    args: &[u8],
) -> Result<Box<dyn FnOnce() -> i32>, String> {
    let args: A = postcard::from_bytes(args).map_err(|e| {
        let cause = handles::take_failure().map_or_else(|| e.to_string(), |c| c.to_string());
        format!("could not deserialize the target's arguments: {cause}")
    })?;
    // SAFETY: F is zero-sized (`encode` asserts it at compile time) and is
    // a fn item or a capture-free closure, which hold no data.
    let f: F = unsafe { std::mem::zeroed() };
    Ok(Box::new(move || f.call(args)))
}

/// Serializes a call for spawn: the entry offset, the arguments, the fds.
pub(crate) fn encode<F, A>(args: &A) -> Result<Encoded>
where
    F: Target<A>,
    A: Serialize + DeserializeOwned + 'static,
{
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "Process::new takes a fn or a closure that captures nothing; \
             use Process::with_closure (fork) for one that captures"
        )
    };
    let (bytes, fds) = handles::collect(|| postcard::to_allocvec(args));
    let args = bytes.map_err(|e| Error::codec("serializing the process arguments", e))?;
    let entry_fn: EntryFn = entry::<F, A>;
    let entry = (entry_fn as *const () as usize as u64).wrapping_sub(anchor_address());
    Ok(Encoded { entry, args, fds })
}

/// Who the child will be.
pub(crate) struct Identity {
    pub name: String,
    pub ident: Vec<u32>,
    pub daemon: bool,
    pub authkey: Vec<u8>,
}

fn parent_info() -> Parent {
    let me = crate::os::ident::process();
    Parent { pid: me.id, stamp: me.stamp, name: state::with_me(|m| m.name.clone()) }
}

/// The bootstrap of a child that will run `job` as `who`.
pub(crate) fn bootstrap_message(job: Encoded, who: Identity) -> Result<Bootstrap> {
    let exe = child::exe_identity().map_err(|e| Error::io("reading this executable", e))?;
    Ok(Bootstrap {
        magic: MAGIC,
        exe,
        entry: job.entry,
        args: job.args,
        fds: job.fds,
        name: who.name,
        ident: who.ident,
        daemon: who.daemon,
        parent: parent_info(),
        authkey: who.authkey,
    })
}

/// Starts this executable again to run `job`.
pub(crate) fn spawn(job: Encoded, who: Identity) -> Result<Child> {
    let message = bootstrap_message(job, who)?;
    let bytes = postcard::to_allocvec(&message).map_err(|e| Error::codec("bootstrap", e))?;
    let boot = child::memfd_with(&bytes).map_err(|e| Error::io("writing the bootstrap", e))?;
    let mut inherit = message.fds;
    inherit.push(boot.as_raw_fd());
    let fd = boot.as_raw_fd().to_string();
    // Keep the constructor below linked into every binary that spawns.
    std::hint::black_box(&CHILD_CONSTRUCTOR);
    child::spawn_self(&[(BOOTSTRAP_ENV, &fd)], &inherit)
        .map_err(|e| Error::io("starting a child process", e))
}

/// A well-formed bootstrap naming this executable and no target: for tests
/// that hand it to a *different* executable, which must refuse it.
#[doc(hidden)]
pub fn bootstrap_for_tests() -> Vec<u8> {
    let message = Bootstrap {
        magic: MAGIC,
        exe: child::exe_identity().expect("this executable"),
        entry: 0,
        args: Vec::new(),
        fds: Vec::new(),
        name: "test".into(),
        ident: vec![1],
        daemon: false,
        parent: parent_info(),
        authkey: Vec::new(),
    };
    postcard::to_allocvec(&message).expect("bootstrap")
}

/// Flushes std's buffered streams, so neither a fork nor an `_exit`
/// duplicates or drops output.
pub(crate) fn flush_std() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// Forks to run `run`. Refused when other threads exist, unless allowed.
pub(crate) fn fork(
    run: Box<dyn FnOnce() -> i32 + Send>,
    who: Identity,
    allow_threads: bool,
) -> Result<Child> {
    let threads = child::thread_count();
    if threads > 1 && !allow_threads {
        return Err(Error::invalid(format!(
            "the fork start method is refused: this process has {threads} threads, and a \
             forked child gets only one (locks held by the others stay held forever). \
             Use spawn, or opt in with allow_threads(true)"
        )));
    }
    let parent = parent_info();
    flush_std();
    let held = state::hold_for_fork();
    // SAFETY: single-threaded, or the caller opted in (see the file's doc);
    // the child ends with `_exit` below.
    let forked = unsafe { child::fork() };
    drop(held);
    match forked.map_err(|e| Error::io("fork", e))? {
        Forked::Parent(child) => Ok(child),
        Forked::Child => {
            state::become_child(who.name, who.ident, who.daemon, parent, who.authkey);
            report_panics_on_stderr();
            let code = catch_unwind(AssertUnwindSafe(run)).unwrap_or(1);
            finish(code)
        }
    }
}

/// A child reports a panic on its own stderr, as Python prints a child's
/// traceback: "Process NAME: panicked at FILE:LINE: MESSAGE". Written to the
/// stderr handle, not through `eprintln!`, so a forked child does not send
/// it into an output capture (libtest's) inherited from the parent thread.
fn report_panics_on_stderr() {
    std::panic::set_hook(Box::new(|info| {
        let name = state::with_me(|me| me.name.clone());
        let backtrace = std::backtrace::Backtrace::capture();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "Process {name}: {info}");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(err, "{backtrace}");
        }
    }));
}

/// How every child ends: its daemons terminated, streams flushed, `_exit`.
pub(crate) fn finish(code: i32) -> ! {
    state::terminate_daemons();
    flush_std();
    // SAFETY: `_exit` ends the process without running the parent's atexit
    // handlers or destructors, which belong to the parent.
    unsafe { libc::_exit(code) }
}

/// Runs before `main` in every binary linking this crate: if this process
/// is a spawned child, become it and never return to `main`.
#[used]
#[link_section = ".init_array"]
static CHILD_CONSTRUCTOR: extern "C" fn() = child_constructor;

extern "C" fn child_constructor() {
    run_if_child();
}

/// The child's side of spawn; returns only if this is not a spawned child.
pub(crate) fn run_if_child() {
    let Some(fd) = std::env::var_os(BOOTSTRAP_ENV) else {
        return;
    };
    // Grandchildren started by other means must not see it.
    std::env::remove_var(BOOTSTRAP_ENV);
    let call = match bootstrap(&fd.to_string_lossy()) {
        Ok(call) => call,
        Err(message) => {
            eprintln!("multiproc: cannot start this child: {message}");
            finish(BOOTSTRAP_FAILED)
        }
    };
    let code = catch_unwind(AssertUnwindSafe(call)).unwrap_or(1);
    finish(code)
}

fn bootstrap(fd: &str) -> Result<Box<dyn FnOnce() -> i32>, String> {
    let fd: RawFd = fd.parse().map_err(|_| format!("{BOOTSTRAP_ENV}={fd:?} is not an fd"))?;
    // Refuse the standard streams and anything that is not an open fd.
    // SAFETY: F_GETFD only queries the descriptor table.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(format!("{BOOTSTRAP_ENV}={fd} is not an open descriptor"));
    }
    // SAFETY: the parent passed this fd for us to own; nothing else uses it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| format!("reading the bootstrap: {e}"))?;
    let message: Bootstrap =
        postcard::from_bytes(&bytes).map_err(|e| format!("malformed bootstrap: {e}"))?;
    // Take ownership of the inherited table; reject duplicates and the
    // standard streams rather than double-close.
    let mut seen = std::collections::HashSet::new();
    let mut fds = Vec::with_capacity(message.fds.len());
    for &fd in &message.fds {
        // SAFETY: F_GETFD only queries the descriptor table.
        if fd < 3 || !seen.insert(fd) || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(format!("bootstrap names an unusable descriptor {fd}"));
        }
        // SAFETY: inherited for us alone (the parent cleared CLOEXEC only on
        // the child's side), checked open and unique above.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    prepare(message, fds)
}

/// Becomes the child `message` describes, with its handle table `fds`, and
/// returns the call to make. The caller checked that `message` comes from
/// this executable.
pub(crate) fn prepare(
    message: Bootstrap,
    fds: Vec<OwnedFd>,
) -> Result<Box<dyn FnOnce() -> i32>, String> {
    if message.magic != MAGIC {
        return Err("malformed bootstrap: bad magic".into());
    }
    let exe = child::exe_identity().map_err(|e| format!("reading this executable: {e}"))?;
    if exe != message.exe {
        return Err("the bootstrap comes from a different executable".into());
    }
    state::become_child(
        message.name,
        message.ident,
        message.daemon,
        message.parent,
        message.authkey,
    );
    report_panics_on_stderr();
    let offset = message.entry;
    let address = anchor_address().wrapping_add(offset) as usize;
    // SAFETY: same executable file (checked above), so `anchor + offset` is
    // the `entry::<F, A>` the parent named, an `EntryFn`.
    let entry: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(address) };
    handles::provide(fds, || entry(&message.args))
}

/// Python's `terminate` and `kill`.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
