//! # Safety
//!
//! This file starts children by re-exec (spawn) and by fork, and runs the
//! child's side of a spawn before `main`. Its obligations:
//! - A spawned child calls only a spawn entry that a checked [`CodeRef`]
//!   names (see `code_ref.rs`), and only after the checks of
//!   [`run_if_child`] and [`prepare`] (who may start a child, below).
//! - A forked child runs only when the parent had one thread, or when the
//!   caller opted in, and ends with `_exit`.
//! - `CHILD_CONSTRUCTOR` sits in the section the loader calls before
//!   `main` (`link_section`, through `os::launch::before_main!`): a plain
//!   `extern "C" fn()` that takes and returns nothing.
#![allow(unsafe_code)]

use super::code_ref::{self, CodeRef, Record};
use super::state::{self, Parent};
use super::target::Target;
use crate::handles;
use crate::os::launch::{self as child, Child};
use crate::os::{AsHandle, OwnedHandle, RawHandle};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The environment variable naming the bootstrap fd of a spawned child.
const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";
/// Exit code of a spawned child whose bootstrap was unusable.
pub const BOOTSTRAP_FAILED: i32 = 255;
const MAGIC: u64 = u64::from_le_bytes(*b"MPBOOT02");
/// The largest bootstrap a child reads (its arguments are most of it): the
/// largest channel message.
const MAX_BOOTSTRAP: usize = 1 << 30;
#[cfg(mp_transfer)]
const _: () = assert!(MAX_BOOTSTRAP == crate::MAX_MESSAGE);

/// What a spawned child needs to become the process its parent meant.
#[derive(Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    magic: u64,
    /// The parent's executable file ([`child::exe_identity`]).
    exe: [u64; 5],
    /// The spawn entry to run: `entry::<F, A>`'s record.
    entry: CodeRef,
    args: Vec<u8>,
    /// The handle table: fd numbers, inherited at the same numbers (a
    /// forkserver child receives them over a socket, in this order).
    pub(crate) fds: Vec<RawHandle>,
    name: String,
    ident: Vec<u32>,
    daemon: bool,
    parent: Parent,
    authkey: Vec<u8>,
}

/// What a job needs to be spawned: which entry and its serialized args.
pub(crate) struct Encoded {
    entry: CodeRef,
    args: Vec<u8>,
    fds: Vec<RawHandle>,
}

/// A spawn entry: decodes the target's arguments into the call to make.
type EntryFn = fn(&[u8]) -> Result<Box<dyn FnOnce() -> i32>, String>;

/// The kind of code a bootstrap names.
pub(crate) enum Spawn {}

impl code_ref::Kind for Spawn {
    const ID: u64 = code_ref::SPAWN_ENTRY;
    type Code = EntryFn;
}

/// The record of target `F` run with arguments `A`.
struct SpawnEntry<F, A>(PhantomData<(F, A)>);

impl<F: Target<A>, A: DeserializeOwned + 'static> SpawnEntry<F, A> {
    const RECORD: Record<EntryFn> =
        code_ref::record::<Spawn>(code_ref::fingerprint::<(F, A)>, entry::<F, A>);

    fn code_ref() -> CodeRef {
        CodeRef::of(&Self::RECORD)
    }
}

/// A spawned child's first step: deserialize the arguments (while the handle
/// table is in place) into the call to make.
fn entry<F: Target<A>, A: DeserializeOwned + 'static>(
    args: &[u8],
) -> Result<Box<dyn FnOnce() -> i32>, String> {
    let args: A = handles::from_exact(args).map_err(|e| {
        let cause = handles::take_failure().map_or_else(|| e.to_string(), |c| c.to_string());
        format!("could not deserialize the target's arguments: {cause}")
    })?;
    let f: F = code_ref::conjure();
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
    Ok(Encoded { entry: SpawnEntry::<F, A>::code_ref(), args, fds })
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
    let mut message = bootstrap_message(job, who)?;
    let table = std::mem::take(&mut message.fds);
    // Keep the child's constructor linked into every binary that spawns.
    std::hint::black_box(&CHILD_CONSTRUCTOR);
    // The platform says where the child will find the table's handles (the
    // same numbers on Unix, inherited duplicates on Windows).
    child::spawn_self(BOOTSTRAP_ENV, &table, |in_child| {
        message.fds = in_child.to_vec();
        postcard::to_allocvec(&message).map_err(std::io::Error::other)
    })
    .map_err(|e| Error::io("starting a child process", e))
}

/// Forging bootstraps, for the tests that check a child refuses them.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// The spawn entry of target `F` with arguments `A`, as (offset,
    /// fingerprint).
    pub fn spawn_entry<F: Target<A>, A: DeserializeOwned + 'static>(_: F) -> (u64, u64) {
        SpawnEntry::<F, A>::code_ref().parts()
    }

    /// Whether (offset, fingerprint) names a spawn entry here; why not.
    pub fn check_spawn_entry(entry: (u64, u64)) -> std::result::Result<(), &'static str> {
        CodeRef::from_parts(entry.0, entry.1).resolve::<Spawn>().map(drop)
    }

    /// Parses and checks `bytes` as a child parses a bootstrap it read,
    /// up to decoding the target's arguments, and runs nothing: for the
    /// fuzz target. (Who sent it is checked before this, from the fd.)
    pub fn check_bootstrap(bytes: &[u8]) -> std::result::Result<(), String> {
        let message: Bootstrap =
            handles::from_exact(bytes).map_err(|e| format!("malformed bootstrap: {e}"))?;
        let entry = check(&message)?;
        handles::provide(Vec::new(), || entry(&message.args)).map(drop)
    }

    /// A bootstrap as this process would send it, naming `entry` with
    /// `args` (postcard bytes), from parent `parent_pid` (this process's
    /// pid if `None`).
    pub fn bootstrap(entry: (u64, u64), args: Vec<u8>, parent_pid: Option<u32>) -> Vec<u8> {
        let mut parent = parent_info();
        if let Some(pid) = parent_pid {
            parent.pid = pid;
        }
        let message = Bootstrap {
            magic: MAGIC,
            exe: child::exe_identity().expect("this executable"),
            entry: CodeRef::from_parts(entry.0, entry.1),
            args,
            fds: Vec::new(),
            name: "forged".into(),
            ident: vec![1],
            daemon: false,
            parent,
            authkey: Vec::new(),
        };
        postcard::to_allocvec(&message).expect("bootstrap")
    }
}

/// Flushes std's buffered streams, so neither a fork nor an `_exit`
/// duplicates or drops output.
pub(crate) fn flush_std() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// Forks to run `run`. Refused when other threads exist, unless allowed.
#[cfg(mp_fork)]
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
    hook_forked_panics();
    flush_std();
    let (state, refs) = (state::hold_for_fork(), crate::arena::hold_for_fork());
    // SAFETY: single-threaded, or the caller opted in (see the file's doc);
    // the child ends with `_exit` below.
    let forked = unsafe { child::fork() };
    drop(state);
    match forked.map_err(|e| Error::io("fork", e)) {
        Ok(child::Forked::Parent(child)) => {
            refs.in_parent(true);
            Ok(child)
        }
        Err(e) => {
            refs.in_parent(false);
            Err(e)
        }
        Ok(child::Forked::Child) => {
            refs.in_child();
            state::become_child(who.name, who.ident, who.daemon, parent, who.authkey);
            // The hook is in place already (a lock another thread of the
            // parent may have held at the fork guards setting one).
            FORKED.store(true, std::sync::atomic::Ordering::Relaxed);
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
    std::panic::set_hook(Box::new(report_panic));
}

fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let name = state::with_me(|me| me.name.clone());
    let backtrace = std::backtrace::Backtrace::capture();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "Process {name}: {info}");
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        let _ = writeln!(err, "{backtrace}");
    }
}

/// Set in a child this process forked: its panics are reported as
/// [`report_panic`] does.
#[cfg(mp_fork)]
static FORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Before the first fork: a panic hook that reports a forked child's
/// panics as [`report_panic`] does and hands the parent's to the hook
/// there was. Set in the parent, once: a forked child that set one itself
/// would take the hook's lock, which another thread of the parent may
/// have held at the fork (a thread panicking then), and hang there.
#[cfg(mp_fork)]
fn hook_forked_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let theirs = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FORKED.load(std::sync::atomic::Ordering::Relaxed) {
                report_panic(info);
            } else {
                theirs(info);
            }
        }));
    });
}

/// How every child ends: its exit duties done (daemons, private
/// directory, the references it holds to shared objects), streams flushed,
/// `_exit`.
pub(crate) fn finish(code: i32) -> ! {
    state::on_exit();
    crate::arena::release_all();
    flush_std();
    // No atexit handlers or destructors: they belong to the parent.
    child::exit_now(code)
}

// Runs before `main` in every binary linking this crate: if this process
// is a spawned child, it becomes that child and never returns to `main`.
child::before_main!(CHILD_CONSTRUCTOR = run_if_child);

/// The child's side of spawn; returns only if this is not a spawned child.
///
/// Who may start a child: a bootstrap is honoured only when all of these
/// hold, else the process ends with [`BOOTSTRAP_FAILED`] and a message
/// before any code of the program runs:
/// - this process did not gain privileges at exec (`AT_SECURE`: setuid,
///   setgid, file capabilities);
/// - the bootstrap is a memfd sealed against writes and resizing (so it is
///   read whole, at once, and cannot block or change under us);
/// - the parent it names is our parent (`getppid`), alive, and runs this
///   very executable file;
/// - it comes from this executable ([`prepare`]) and names one of its
///   spawn entries, for the argument type that entry takes.
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
    if child::secure_mode() {
        return Err(format!(
            "{BOOTSTRAP_ENV} is refused in a process that gained privileges at exec \
             (setuid, setgid or file capabilities)"
        ));
    }
    let fd: RawHandle =
        fd.parse().map_err(|_| format!("{BOOTSTRAP_ENV}={fd:?} is not a handle number"))?;
    // The standard streams and anything not open are refused.
    // SAFETY: the parent passed this fd for us to own; nothing else uses it.
    let file = unsafe { child::take_inherited(fd) }
        .map_err(|e| format!("{BOOTSTRAP_ENV}={fd} is refused: {e}"))?;
    let bytes = child::read_sealed(file.as_handle(), MAX_BOOTSTRAP)
        .map_err(|e| format!("the bootstrap descriptor is refused: {e}"))?;
    drop(file);
    let message: Bootstrap =
        handles::from_exact(&bytes).map_err(|e| format!("malformed bootstrap: {e}"))?;
    let parent = child::parent_pid();
    if message.parent.pid != parent {
        return Err(format!(
            "the bootstrap names parent {} but this process's parent is {parent}",
            message.parent.pid
        ));
    }
    if !crate::os::ident::is_alive(parent, message.parent.stamp) {
        return Err("the parent process named is not alive".into());
    }
    match child::runs_our_exe(parent) {
        Ok(true) => {}
        Ok(false) => return Err("the parent process does not run this executable".into()),
        Err(e) => {
            return Err(format!(
                "cannot check the parent's executable ({e}): a parent that made itself \
                 non-dumpable cannot spawn (use the fork start method)"
            ))
        }
    }
    // Take ownership of the inherited table; reject duplicates and the
    // standard streams rather than double-close.
    let mut seen = std::collections::HashSet::new();
    let mut fds = Vec::with_capacity(message.fds.len());
    for &fd in &message.fds {
        if !seen.insert(fd) {
            return Err(format!("bootstrap names descriptor {fd} twice"));
        }
        // SAFETY: inherited for us alone (the parent cleared CLOEXEC only on
        // the child's side), and taken once (checked unique above).
        let owned = unsafe { child::take_inherited(fd) }
            .map_err(|e| format!("bootstrap names an unusable descriptor: {e}"))?;
        fds.push(owned);
    }
    prepare(message, fds)
}

/// Becomes the child `message` describes, with its handle table `fds`, and
/// returns the call to make. The caller checked who sent `message`.
pub(crate) fn prepare(
    message: Bootstrap,
    fds: Vec<OwnedHandle>,
) -> Result<Box<dyn FnOnce() -> i32>, String> {
    let entry = check(&message)?;
    state::become_child(
        message.name,
        message.ident,
        message.daemon,
        message.parent,
        message.authkey,
    );
    report_panics_on_stderr();
    handles::provide(fds, || entry(&message.args))
}

/// What a bootstrap says, checked: from this executable, naming one of its
/// spawn entries made for the arguments it carries; that entry.
fn check(message: &Bootstrap) -> Result<EntryFn, String> {
    if message.magic != MAGIC {
        return Err("malformed bootstrap: bad magic".into());
    }
    let exe = child::exe_identity().map_err(|e| format!("reading this executable: {e}"))?;
    if exe != message.exe {
        return Err("the bootstrap comes from a different executable".into());
    }
    message
        .entry
        .resolve::<Spawn>()
        .map_err(|why| format!("the bootstrap's target is refused: {why}"))
}

/// Resolves the bootstrap's target in this process (a forkserver, before
/// it forks), so that its children find it resolved already.
#[cfg(mp_fork)]
pub(crate) fn warm_up(message: &Bootstrap) {
    let _ = message.entry.resolve::<Spawn>();
}
