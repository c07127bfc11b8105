//! [`Pool`]: Python's `multiprocessing.Pool`, minus the ways it hangs when a
//! worker dies.
//!
//! # How it works
//! Each worker has its own one-way [`Pipe`] for tasks, and all of them put
//! their replies on one [`Queue`]. The parent sends a worker a *chunk* (a
//! run of one job's items) only while it holds fewer than two, so it always
//! knows which chunks a worker holds. A worker writes its progress through
//! the current chunk to a shared word before and after each item. When a
//! worker dies, the parent first takes every reply already queued, then
//! fails the one item the worker was running with
//! [`ErrorKind::WorkerDied`], sends the rest of its chunks to other workers,
//! and starts a replacement. A task that panics, or whose arguments or
//! result fail to (de)serialize, fails alone, with its own error.
//!
//! There is no thread in the parent: the pool makes progress whenever a
//! call waits on it ([`AsyncResult::get`], an `imap` iterator, `map`, `join`,
//! …). Workers hold up to two chunks each, so submitted work runs in the
//! background meanwhile; the rest waits for the next such call. No thread
//! also means the fork start method can replace workers without forking a
//! threaded parent.
//!
//! A task is named to a worker by a checked [`CodeRef`] to its entry's
//! record (as a spawned child names its target: see `code_ref.rs`), which
//! also makes the task function's value (`code_ref::conjure`).

use crate::connection::Connection;
use crate::handles::from_exact;
use crate::pipe::Pipe;
use crate::process::code_ref::{self, CodeRef, Record};
use crate::process::{get_start_method, Process, StartMethod, Target};
use crate::queue::Queue;
use crate::time::Deadline;
use crate::value::RawArray;
use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A function a pool runs: a `fn` or a closure that captures nothing, of up
/// to six parameters, called with a tuple of its arguments.
pub trait Task<Args, R>: Copy + Send + 'static {
    /// Runs the task on its arguments.
    fn run(self, args: Args) -> R;
}

macro_rules! impl_task {
    ($($arg:ident),*) => {
        impl<Func, R, $($arg),*> Task<($($arg,)*), R> for Func
        where
            Func: Fn($($arg),*) -> R + Copy + Send + 'static,
        {
            #[allow(non_snake_case)]
            fn run(self, ($($arg,)*): ($($arg,)*)) -> R {
                self($($arg),*)
            }
        }
    };
}

impl_task!();
impl_task!(A);
impl_task!(A, B);
impl_task!(A, B, C);
impl_task!(A, B, C, D);
impl_task!(A, B, C, D, E);
impl_task!(A, B, C, D, E, F);

/// Chunks a worker holds at most: the one it runs and the next.
const WINDOW: usize = 2;
/// How long a send of a chunk may wait for room in a worker's pipe before
/// the parent goes back to taking replies (a worker blocked putting a large
/// reply waits for those).
const SEND_SLICE: Duration = Duration::from_millis(20);
/// Room a chunk needs in a pipe beyond its arguments: its other fields.
const FRAMING: usize = 64;
/// How long the parent waits for a reply before it looks for dead workers.
const REPLY_SLICE: Duration = Duration::from_millis(10);

/// Item outcome tags, first byte of an item's result.
const OK: u8 = 0;
const PANICKED: u8 = 1;
const BAD_ARGS: u8 = 2;
const BAD_RESULT: u8 = 3;

/// A task's entry in a worker: decodes one item's arguments, runs the task,
/// appends the outcome (tag, then the result or a message) to `out`.
type TaskFn = fn(&[u8], &mut Vec<u8>);

/// The kind of code a chunk names.
enum PoolTask {}

impl code_ref::Kind for PoolTask {
    const ID: u64 = code_ref::POOL_TASK;
    type Code = TaskFn;
}

/// The record of task `F` with arguments `A` and result `R`.
struct TaskEntry<F, A, R>(PhantomData<(F, A, R)>);

impl<F: Task<A, R>, A: DeserializeOwned, R: Serialize> TaskEntry<F, A, R> {
    const RECORD: Record<TaskFn> =
        code_ref::record::<PoolTask>(code_ref::fingerprint::<(F, A, R)>, task_entry::<F, A, R>);
}

/// `&mut Vec<u8>` as postcard's output, appending.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

fn task_entry<F, A, R>(args: &[u8], out: &mut Vec<u8>)
where
    F: Task<A, R>,
    A: DeserializeOwned,
    R: Serialize,
{
    let args: A = match from_exact(args) {
        Ok(args) => args,
        Err(e) => return fail(out, BAD_ARGS, &format!("the task's arguments: {e}")),
    };
    let f: F = code_ref::conjure();
    let result = match catch_unwind(AssertUnwindSafe(|| f.run(args))) {
        Ok(r) => r,
        Err(payload) => return fail(out, PANICKED, &crate::error::panic_message(&*payload)),
    };
    let mark = out.len();
    out.push(OK);
    if let Err(e) = postcard::to_extend(&result, Append(out)) {
        out.truncate(mark);
        fail(out, BAD_RESULT, &format!("the task's result: {e}"));
    }
}

fn fail(out: &mut Vec<u8>, tag: u8, message: &str) {
    out.push(tag);
    out.extend_from_slice(message.as_bytes());
}

/// The entry of task `F`, as its workers name it.
pub(crate) fn entry_of<F, A, R>() -> CodeRef
where
    F: Task<A, R>,
    A: DeserializeOwned,
    R: Serialize,
{
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a pool runs a fn or a closure that captures nothing"
        )
    };
    CodeRef::of(&TaskEntry::<F, A, R>::RECORD)
}

/// Code references of pool tasks, for the tests that check a spawned child
/// refuses one where a spawn entry belongs.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A pool's task entry for `F` (a reference of another kind than a
    /// spawn entry), as (offset, fingerprint).
    pub fn pool_task_entry<F, A, R>(_: F) -> (u64, u64)
    where
        F: Task<A, R>,
        A: DeserializeOwned,
        R: Serialize,
    {
        entry_of::<F, A, R>().parts()
    }
}

/// Appends `value` to `buf` as one item: its length (u32 LE), its bytes.
fn push_item<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<()> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    postcard::to_extend(value, Append(buf)).map_err(|e| {
        Error::codec(
            "serializing a task's arguments (shared objects go to workers through the initializer)",
            e,
        )
    })?;
    let len = u32::try_from(buf.len() - at - 4)
        .map_err(|_| Error::new(ErrorKind::TooLarge, "a task's arguments are over 4 GiB"))?;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The items of a run of length-prefixed items (stops at a malformed one).
fn items(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    std::iter::from_fn(move || {
        let (len, rest) = buf.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let item = rest.get(..len)?;
        buf = &rest[len..];
        Some(item)
    })
}

/// A run of one job's items, as sent to a worker.
#[derive(Serialize, Deserialize)]
struct Chunk {
    job: u64,
    entry: CodeRef,
    /// This chunk's number among those sent to its worker.
    seq: u32,
    first: u32,
    count: u32,
    #[serde(with = "serde_bytes")]
    args: Vec<u8>,
}

/// What the parent tells a worker (sent as [`OrderRef`], same encoding).
#[derive(Deserialize)]
enum Order {
    Run(Chunk),
    /// Exit: the pool closed, or this worker ran its `maxtasksperchild`.
    /// Explicit, because a forked sibling (or any fork of the parent) holds
    /// a copy of the sending end, so the pipe's end-of-file may never come.
    Stop,
}

#[derive(Serialize)]
enum OrderRef<'a> {
    Run(&'a Chunk),
    Stop,
}

/// How often an idle worker checks that its parent still runs (it exits
/// if not: no orphaned workers, whoever else holds its pipe).
const PARENT_CHECK: Duration = Duration::from_millis(500);

/// What a worker sends back for a chunk: one outcome per item.
#[derive(Serialize, Deserialize)]
struct Reply {
    slot: u32,
    seq: u32,
    job: u64,
    first: u32,
    count: u32,
    #[serde(with = "serde_bytes")]
    results: Vec<u8>,
}

/// What a worker is started with.
#[derive(Serialize, Deserialize)]
struct WorkerCtx {
    slot: u32,
    tasks: Connection,
    replies: Queue<Reply>,
    progress: RawArray<u64>,
}

fn worker_main<F: Target<A>, A>(ctx: WorkerCtx, init: A) -> i32 {
    let f: F = code_ref::conjure();
    let code = f.call(init);
    if code != 0 {
        return code;
    }
    serve(&ctx);
    0
}

/// A worker's loop: chunks in, replies out, until the pool closes its pipe
/// (or the parent dies).
fn serve(ctx: &WorkerCtx) {
    let slot = ctx.slot as usize;
    let mut results = Vec::new();
    let parent = crate::parent_process();
    loop {
        let chunk = match ctx.tasks.recv_timeout::<Order>(PARENT_CHECK) {
            Ok(Order::Run(chunk)) => chunk,
            Ok(Order::Stop) => return,
            Err(e) if e.kind() == ErrorKind::Timeout => {
                if parent.as_ref().is_some_and(|p| !p.is_alive()) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let progress = |done: u32| {
            let _ = ctx.progress.set(slot, u64::from(chunk.seq) << 32 | u64::from(done));
        };
        progress(0);
        let Ok(entry) = chunk.entry.resolve::<PoolTask>() else {
            // Not a task of this program: the parent is not one of ours.
            return;
        };
        results.clear();
        let mut done = 0;
        for args in items(&chunk.args).take(chunk.count as usize) {
            let at = results.len();
            results.extend_from_slice(&[0; 4]);
            entry(args, &mut results);
            let len = (results.len() - at - 4) as u32;
            results[at..at + 4].copy_from_slice(&len.to_le_bytes());
            done += 1;
            progress(done);
        }
        let reply = Reply {
            slot: ctx.slot,
            seq: chunk.seq,
            job: chunk.job,
            first: chunk.first,
            count: done,
            results: std::mem::take(&mut results),
        };
        if ctx.replies.put(&reply).is_err() {
            return;
        }
        results = reply.results;
    }
}

/// One item's state in the parent.
#[derive(Clone, Debug)]
enum Item {
    Pending,
    /// Its outcome is `bufs[buf][start..end]`.
    Ready {
        buf: u32,
        start: u32,
        end: u32,
    },
    Failed(ErrorKind, Arc<str>),
    Taken,
}

struct Job {
    items: Vec<Item>,
    bufs: Vec<Vec<u8>>,
    remaining: usize,
    /// Indices whose outcome arrived and was not taken (kept only for
    /// `imap_unordered`).
    arrived: VecDeque<u32>,
    unordered: bool,
    /// Nobody will read it (its handle was dropped): drop outcomes.
    abandoned: bool,
}

impl Job {
    fn settle(&mut self, i: usize, item: Item) {
        if let Some(slot) = self.items.get_mut(i) {
            if matches!(slot, Item::Pending) {
                *slot = item;
                self.remaining -= 1;
                if self.unordered {
                    self.arrived.push_back(i as u32);
                }
            }
        }
    }

    /// Takes the first `len` items' outcomes, decoded: all of them, or the
    /// first failure in item order (every item is taken either way).
    fn take_all<R: DeserializeOwned>(&mut self, len: usize) -> Result<Vec<R>> {
        let mut out = Vec::with_capacity(len);
        let mut first_error = None;
        for i in 0..len {
            match self.take::<R>(i) {
                Ok(r) => out.push(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(out), Err)
    }

    /// Takes item `i`'s outcome, decoded.
    fn take<R: DeserializeOwned>(&mut self, i: usize) -> Result<R> {
        let item = std::mem::replace(&mut self.items[i], Item::Taken);
        match item {
            Item::Ready { buf, start, end } => {
                let bytes = &self.bufs[buf as usize][start as usize..end as usize];
                let (tag, body) = bytes.split_first().unwrap_or((&BAD_RESULT, &[]));
                let text = || String::from_utf8_lossy(body).into_owned();
                match *tag {
                    OK => from_exact(body)
                        .map_err(|e| Error::codec("deserializing a task's result", e)),
                    PANICKED => Err(Error::new(ErrorKind::TaskPanicked, text())),
                    _ => Err(Error::new(ErrorKind::Codec, text())),
                }
            }
            Item::Failed(kind, message) => Err(Error::new(kind, message.to_string())),
            Item::Pending | Item::Taken => Err(Error::invalid("this result was already taken")),
        }
    }
}

/// One worker as the parent sees it.
struct Slot {
    process: Process,
    /// `None` once it ran `maxtasksperchild` chunks: it was told to stop,
    /// and the reaper replaces it when it has exited.
    tasks: Option<Connection>,
    inflight: VecDeque<Chunk>,
    /// Chunks sent to it, ever.
    sent: u64,
    /// Chunks it answered.
    answered: u64,
}

type MakeWorker = Arc<dyn Fn(WorkerCtx) -> Process + Send + Sync>;

struct State {
    slots: Vec<Option<Slot>>,
    pending: VecDeque<Chunk>,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    replies: Queue<Reply>,
    progress: RawArray<u64>,
    make_worker: MakeWorker,
    method: StartMethod,
    allow_threads: bool,
    maxtasks: Option<u64>,
    closed: bool,
    terminated: bool,
    /// Workers that died in a row before answering any chunk.
    stillborn: u32,
    last_reap: Instant,
    workers_started: u64,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drives the pool until `done` holds (`Ok(true)`) or `deadline` passes
    /// (`Ok(false)`).
    fn wait(&self, deadline: Deadline, mut done: impl FnMut(&mut State) -> bool) -> Result<bool> {
        let mut st = self.lock();
        loop {
            if done(&mut st) {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            let slice = deadline.left().map_or(REPLY_SLICE, |left| left.min(REPLY_SLICE));
            st.step(slice)?;
        }
    }
}

impl State {
    /// One round: hand out chunks, take replies for at most `slice`, look
    /// for dead workers.
    fn step(&mut self, slice: Duration) -> Result<()> {
        self.dispatch();
        match self.replies.get_timeout(slice) {
            Ok(reply) => {
                self.on_reply(reply);
                // Take what else is there without waiting.
                for _ in 0..1024 {
                    match self.replies.get_nowait() {
                        Ok(reply) => self.on_reply(reply),
                        Err(_) => break,
                    }
                }
                if self.last_reap.elapsed() >= REPLY_SLICE {
                    self.reap()?;
                }
            }
            Err(e) if e.kind() == ErrorKind::Empty => self.reap()?,
            Err(e) => return Err(e),
        }
        self.dispatch();
        Ok(())
    }

    fn dispatch(&mut self) {
        for slot in self.slots.iter_mut().flatten() {
            let Some(tasks) = &slot.tasks else { continue };
            while slot.inflight.len() < WINDOW && self.maxtasks.is_none_or(|m| slot.sent < m) {
                let Some(next) = self.pending.front() else { return };
                // A worker busy with a chunk reads no other: send a second
                // only if it fits the pipe now, or the send would wait for
                // that whole chunk to run.
                if !slot.inflight.is_empty() && next.args.len() + FRAMING > tasks.send_room() {
                    break;
                }
                let mut chunk = self.pending.pop_front().expect("looked at above");
                chunk.seq = slot.sent as u32;
                match tasks.send_timeout(&OrderRef::Run(&chunk), SEND_SLICE) {
                    Ok(()) => {
                        slot.sent += 1;
                        slot.inflight.push_back(chunk);
                    }
                    Err(_) => {
                        // Full (it is busy) or gone (the reaper will see).
                        self.pending.push_front(chunk);
                        break;
                    }
                }
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let Some(Some(slot)) = self.slots.get_mut(reply.slot as usize) else { return };
        if slot.inflight.front().is_none_or(|c| c.seq != reply.seq || c.job != reply.job) {
            return;
        }
        let chunk = slot.inflight.pop_front().expect("checked: a chunk is in flight");
        slot.answered += 1;
        if self.maxtasks.is_some_and(|m| slot.answered >= m) {
            if let Some(tasks) = slot.tasks.take() {
                let _ = tasks.send_timeout(&OrderRef::Stop, SEND_SLICE);
            }
        }
        self.stillborn = 0;
        let Some(job) = self.jobs.get_mut(&reply.job) else { return };
        if job.abandoned {
            return;
        }
        let buf = job.bufs.len() as u32;
        let base = reply.results.as_ptr() as usize;
        let mut got = 0;
        for (k, outcome) in items(&reply.results).take(reply.count as usize).enumerate() {
            let start = (outcome.as_ptr() as usize - base) as u32;
            let end = start + outcome.len() as u32;
            job.settle(chunk.first as usize + k, Item::Ready { buf, start, end });
            got += 1;
        }
        job.bufs.push(reply.results);
        // Items the reply lacks (a malformed reply) fail rather than hang.
        for i in got..chunk.count {
            let why: Arc<str> = "the worker's reply lacked this task".into();
            job.settle((chunk.first + i) as usize, Item::Failed(ErrorKind::Corrupt, why));
        }
    }

    /// Finds dead workers: fails the item each was running, sends the rest
    /// of their chunks elsewhere, and starts replacements.
    fn reap(&mut self) -> Result<()> {
        self.last_reap = Instant::now();
        let mut dead = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(s) = slot {
                if let Some(code) = s.process.exitcode() {
                    dead.push((i, code, s.process.pid().unwrap_or(0)));
                }
            }
        }
        if dead.is_empty() {
            return Ok(());
        }
        // Replies a dead worker put before it died are in the queue: take
        // them all first, so finished work is not failed or run again.
        while let Ok(reply) = self.replies.get_nowait() {
            self.on_reply(reply);
        }
        for (i, code, pid) in dead {
            let slot = self.slots[i].take().expect("listed as dead above");
            let mut inflight = slot.inflight;
            let mut blamed = false;
            if let Some(front) = inflight.pop_front() {
                let progress = self.progress.get(i).unwrap_or(0);
                let started = (progress >> 32) as u32 == front.seq;
                let done = (progress as u32).min(front.count);
                if started && done < front.count {
                    let why = match code {
                        c if c < 0 => {
                            format!("worker {pid} was killed by signal {} running this task", -c)
                        }
                        c => format!("worker {pid} exited with code {c} running this task"),
                    };
                    if let Some(job) = self.jobs.get_mut(&front.job) {
                        job.settle(
                            (front.first + done) as usize,
                            Item::Failed(ErrorKind::WorkerDied, why.into()),
                        );
                    }
                    blamed = true;
                    // Items before it finished but their results died with
                    // the worker: they run again, as do those after it.
                    self.requeue(&front, |k| k != done);
                } else {
                    self.requeue(&front, |_| true);
                }
            }
            for chunk in inflight.iter().rev() {
                self.requeue(chunk, |_| true);
            }
            if slot.answered == 0 && !blamed && code != 0 {
                self.stillborn += 1;
            }
            if !self.terminated {
                if self.stillborn as usize > 3 * self.slots.len() {
                    self.fail_all(
                        "pool workers keep dying before they run a task (does the initializer fail?)",
                    );
                    return Err(Error::new(
                        ErrorKind::WorkerDied,
                        "pool workers keep dying at start",
                    ));
                }
                self.slots[i] = Some(self.start_worker(i)?);
            }
        }
        Ok(())
    }

    /// Puts the items `keep` selects (by index in the chunk) back at the
    /// front of the pending chunks.
    fn requeue(&mut self, chunk: &Chunk, keep: impl Fn(u32) -> bool) {
        if self.jobs.get(&chunk.job).is_none_or(|j| j.abandoned) {
            return;
        }
        let mut runs: Vec<Chunk> = Vec::new();
        for (k, item) in items(&chunk.args).take(chunk.count as usize).enumerate() {
            let k = k as u32;
            if !keep(k) {
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.first + run.count == chunk.first + k => {
                    run.args.extend_from_slice(&(item.len() as u32).to_le_bytes());
                    run.args.extend_from_slice(item);
                    run.count += 1;
                }
                _ => {
                    let mut args = (item.len() as u32).to_le_bytes().to_vec();
                    args.extend_from_slice(item);
                    runs.push(Chunk {
                        job: chunk.job,
                        entry: chunk.entry,
                        seq: 0,
                        first: chunk.first + k,
                        count: 1,
                        args,
                    });
                }
            }
        }
        for run in runs.into_iter().rev() {
            self.pending.push_front(run);
        }
    }

    fn start_worker(&mut self, i: usize) -> Result<Slot> {
        let (rx, tx) = Pipe::simplex()?;
        let ctx = WorkerCtx {
            slot: i as u32,
            tasks: rx,
            replies: self.replies.clone(),
            progress: self.progress.clone(),
        };
        self.workers_started += 1;
        let mut process = (self.make_worker)(ctx)
            .name(format!("PoolWorker-{}", self.workers_started))
            .daemon(true)
            .start_method(self.method)
            .allow_threads(self.allow_threads);
        process.start()?;
        Ok(Slot { process, tasks: Some(tx), inflight: VecDeque::new(), sent: 0, answered: 0 })
    }

    /// Fails every item not yet settled (terminate, or a broken pool).
    fn fail_all(&mut self, why: &str) {
        let why: Arc<str> = why.into();
        self.pending.clear();
        for slot in self.slots.iter_mut().flatten() {
            slot.inflight.clear();
        }
        for job in self.jobs.values_mut() {
            for i in 0..job.items.len() {
                job.settle(i, Item::Failed(ErrorKind::WorkerDied, why.clone()));
            }
        }
    }

    /// A new job of `len` items (their chunks follow with `add_chunk`).
    fn open_job(&mut self, len: usize, unordered: bool) -> Result<u64> {
        if self.closed || self.terminated {
            return Err(Error::invalid("the pool is closed"));
        }
        let id = self.next_job;
        self.next_job += 1;
        let job = Job {
            items: vec![Item::Pending; len],
            bufs: Vec::new(),
            remaining: len,
            arrived: VecDeque::new(),
            unordered,
            abandoned: false,
        };
        self.jobs.insert(id, job);
        Ok(id)
    }

    /// Queues a chunk of job `id` and hands out what workers can take.
    fn add_chunk(&mut self, chunk: Chunk) {
        self.pending.push_back(chunk);
        self.dispatch();
    }

    fn busy(&self) -> bool {
        !self.pending.is_empty() || self.slots.iter().flatten().any(|s| !s.inflight.is_empty())
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Tasks are a `fn` (or a closure that captures nothing) and serde
/// arguments, as for [`Process`], so they work under every start method.
/// A task that panics fails alone ([`ErrorKind::TaskPanicked`]); a worker
/// that dies fails only the task it was running
/// ([`ErrorKind::WorkerDied`]) and is replaced. Dropping a Pool terminates
/// it, as leaving `with Pool() as p:` does.
///
/// ```
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let pool = multiproc::Pool::new(3)?;
/// assert_eq!(pool.map(double, [5, 10, 20])?, [10, 20, 40]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    processes: usize,
}

/// Builds a [`Pool`]: Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild)`, plus the start method.
pub struct PoolBuilder {
    processes: Option<usize>,
    make_worker: Option<MakeWorker>,
    maxtasks: Option<u64>,
    method: Option<StartMethod>,
    allow_threads: bool,
}

fn worker_process<F, A>(_f: F, ctx: WorkerCtx, init: A) -> Process
where
    F: Target<A>,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    Process::new(worker_main::<F, A>, (ctx, init))
}

impl PoolBuilder {
    /// Worker processes (default [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args...)` in each worker before its first task. Shared
    /// objects (a Lock, a Queue, a Value) reach workers this way. A worker
    /// whose initializer returns non-zero (or panics) exits; a pool whose
    /// workers keep dying before any task fails its tasks with
    /// [`ErrorKind::WorkerDied`] rather than restart them forever.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> PoolBuilder
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "an initializer is a fn or a closure that captures nothing"
            )
        };
        let _ = f;
        self.make_worker =
            Some(Arc::new(move |ctx| Process::new(worker_main::<F, A>, (ctx, args.clone()))));
        self
    }

    /// Replaces each worker after it ran this many chunks (Python's
    /// `maxtasksperchild`; a chunk is one task unless `map` batches them).
    pub fn maxtasksperchild(mut self, n: u64) -> PoolBuilder {
        self.maxtasks = Some(n);
        self
    }

    /// The start method of the workers (default [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = Some(method);
        self
    }

    /// Lets the fork start method fork from a threaded parent (see
    /// [`Process::allow_threads`]).
    pub fn allow_threads(mut self, allow: bool) -> PoolBuilder {
        self.allow_threads = allow;
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::invalid("a pool needs at least one process"));
        }
        if self.maxtasks == Some(0) {
            return Err(Error::invalid("maxtasksperchild must be at least 1"));
        }
        let make_worker =
            self.make_worker.unwrap_or_else(|| Arc::new(|ctx| worker_process(|| (), ctx, ())));
        let mut state = State {
            slots: Vec::new(),
            pending: VecDeque::new(),
            jobs: HashMap::new(),
            next_job: 0,
            replies: Queue::new()?,
            progress: RawArray::zeroed(processes)?,
            make_worker,
            method: self.method.unwrap_or_else(get_start_method),
            allow_threads: self.allow_threads,
            maxtasks: self.maxtasks,
            closed: false,
            terminated: false,
            stillborn: 0,
            last_reap: Instant::now(),
            workers_started: 0,
        };
        for i in 0..processes {
            let slot = state.start_worker(i)?;
            state.slots.push(Some(slot));
        }
        Ok(Pool { shared: Arc::new(Shared { state: Mutex::new(state) }), processes })
    }
}

/// The chunk size Python's `map` picks: about four chunks per worker.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = processes * 4;
    (len / per + usize::from(len % per != 0)).max(1)
}

impl Pool {
    /// `processes` workers, started now, with the default start method.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A pool to configure (workers, initializer, tasks per child) before it starts.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            make_worker: None,
            maxtasks: None,
            method: None,
            allow_threads: false,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The map family with an explicit chunk size (items per message to a
    /// worker): `pool.chunksize(100).map(f, items)`.
    pub fn chunksize(&self, chunksize: usize) -> Chunked<'_> {
        Chunked { pool: self, chunksize: Some(chunksize.max(1)) }
    }

    fn chunked(&self) -> Chunked<'_> {
        Chunked { pool: self, chunksize: None }
    }

    /// `f(item)` for every item, in order; waits for all of them. All tasks
    /// run even when some fail; the first failure (in item order) is
    /// returned. Python's `map`.
    pub fn map<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.chunked().map(f, items)
    }

    /// [`map`](Self::map), waiting at most `timeout` for the results
    /// (`Timeout`; the job's outcomes are then dropped as they come).
    pub fn map_timeout<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        timeout: Duration,
    ) -> Result<Vec<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.chunked().map_timeout(f, items, timeout)
    }

    /// `f(a, b, …)` for every tuple: Python's `starmap`.
    pub fn starmap<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.chunked().starmap(f, items)
    }

    /// [`starmap`](Self::starmap), waiting at most `timeout`.
    pub fn starmap_timeout<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        timeout: Duration,
    ) -> Result<Vec<R>>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.chunked().starmap_timeout(f, items, timeout)
    }

    /// An iterator of each item's `Result`, in order, as they come.
    pub fn imap<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Imap<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.chunked().imap(f, items)
    }

    /// An iterator of each item's `Result`, in the order they finish.
    pub fn imap_unordered<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ImapUnordered<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.chunked().imap_unordered(f, items)
    }

    /// [`map`](Self::map) without waiting: Python's `map_async`.
    pub fn map_async<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.chunked().map_async(f, items)
    }

    /// `f(args...)` in a worker; waits for it. Python's `apply`.
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// `f(args...)` in a worker, without waiting: Python's `apply_async`.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let _ = f;
        let job = self.submit::<F, A, R>(std::iter::once(args), Some(1), false)?;
        Ok(AsyncResult::new(self.shared.clone(), job, |job| job.take(0)))
    }

    /// Queues `items` as a job of task `F`, chunk by chunk (workers start
    /// on the first chunk while the rest are encoded).
    fn submit<F, A, R>(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        unordered: bool,
    ) -> Result<(u64, usize)>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        if u32::try_from(len).is_err() {
            return Err(Error::new(ErrorKind::TooLarge, "over 2^32 items in one call"));
        }
        let size = chunksize.unwrap_or_else(|| default_chunksize(len, self.processes));
        let entry = entry_of::<F, A, R>();
        let id = self.shared.lock().open_job(len, unordered)?;
        for (n, run) in items.chunks(size).enumerate() {
            let mut args = Vec::new();
            for item in run {
                if let Err(e) = push_item(&mut args, item) {
                    abandon(&self.shared, id);
                    return Err(e);
                }
            }
            let (first, count) = ((n * size) as u32, run.len() as u32);
            let chunk = Chunk { job: id, entry, seq: 0, first, count, args };
            self.shared.lock().add_chunk(chunk);
        }
        Ok((id, len))
    }

    /// No more tasks may be submitted; workers exit once the work is done.
    pub fn close(&self) {
        self.shared.lock().closed = true;
    }

    /// Waits for the work to finish and the workers to exit (after
    /// [`close`](Self::close), as Python requires).
    pub fn join(&self) -> Result<()> {
        self.join_until(Deadline::NEVER).map(|_| ())
    }

    /// [`join`](Self::join), waiting at most `timeout`; `false` if it did
    /// not finish.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_until(Deadline::after(timeout))
    }

    fn join_until(&self, deadline: Deadline) -> Result<bool> {
        {
            let st = self.shared.lock();
            if !st.closed && !st.terminated {
                return Err(Error::invalid("join a pool after close or terminate"));
            }
        }
        if !self.shared.wait(deadline, |st| !st.busy())? {
            return Ok(false);
        }
        let mut st = self.shared.lock();
        let slots: Vec<Slot> = st.slots.iter_mut().filter_map(Option::take).collect();
        for tasks in slots.iter().filter_map(|s| s.tasks.as_ref()) {
            let _ = tasks.send_timeout(&OrderRef::Stop, SEND_SLICE);
        }
        let mut processes: Vec<Process> = slots.into_iter().map(|s| s.process).collect();
        for p in &mut processes {
            match deadline.left() {
                None => {
                    p.join()?;
                }
                Some(left) => {
                    if p.join_timeout(left)?.is_none() {
                        let _ = p.kill();
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Stops the workers now (SIGKILL); unfinished tasks fail with
    /// [`ErrorKind::WorkerDied`]. Returns promptly whatever the workers do.
    pub fn terminate(&self) -> Result<()> {
        let mut st = self.shared.lock();
        st.terminated = true;
        st.closed = true;
        st.fail_all("the pool was terminated");
        for slot in st.slots.iter_mut().filter_map(Option::take) {
            let mut p = slot.process;
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(5));
        }
        Ok(())
    }

    /// The pid of every worker now (they change as workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.lock().slots.iter().flatten().filter_map(|s| s.process.pid()).collect()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("processes", &self.processes).finish_non_exhaustive()
    }
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("job", &self.job).finish_non_exhaustive()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// The map family with a chosen chunk size: see [`Pool::chunksize`].
pub struct Chunked<'a> {
    pool: &'a Pool,
    chunksize: Option<usize>,
}

impl Chunked<'_> {
    /// Queues `f(item)` for each item (a one-argument task's items are
    /// sent as 1-tuples, whose encoding is the item's own).
    fn submit_each<F, T, R>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = T>,
        unordered: bool,
    ) -> Result<(u64, usize)>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.pool.submit::<F, (T,), R>(items.into_iter().map(|t| (t,)), self.chunksize, unordered)
    }

    /// Python's `map`: `f` of every item, in the workers; the results in order.
    pub fn map<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.starmap(f, items.into_iter().map(|t| (t,)))
    }

    /// [`map`](Self::map) waiting at most `timeout` for all the results.
    pub fn map_timeout<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        timeout: Duration,
    ) -> Result<Vec<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.starmap_timeout(f, items.into_iter().map(|t| (t,)), timeout)
    }

    /// Python's `starmap`: each item is the tuple of `f`'s arguments.
    pub fn starmap<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.starmap_until(f, items, Deadline::NEVER)
    }

    /// [`starmap`](Self::starmap) waiting at most `timeout` for all the results.
    pub fn starmap_timeout<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        timeout: Duration,
    ) -> Result<Vec<R>>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.starmap_until(f, items, Deadline::after(timeout))
    }

    fn starmap_until<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        deadline: Deadline,
    ) -> Result<Vec<R>>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let _ = f;
        let (job, len) = self.pool.submit::<F, A, R>(items, self.chunksize, false)?;
        let guard = Abandon { shared: &self.pool.shared, job };
        let done = |st: &mut State| st.jobs.get(&job).is_none_or(|j| j.remaining == 0);
        if !self.pool.shared.wait(deadline, done)? {
            return Err(Error::timeout());
        }
        let mut st = self.pool.shared.lock();
        let mut job_state = st.jobs.remove(&job).ok_or_else(|| Error::invalid("job vanished"))?;
        drop(st);
        std::mem::forget(guard);
        job_state.take_all(len)
    }

    /// Python's `imap`: the results as an iterator, in order, as they come.
    pub fn imap<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Imap<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (job, len) = self.submit_each(f, items, false)?;
        Ok(Imap { shared: self.pool.shared.clone(), job, next: 0, len, _r: PhantomData })
    }

    /// Python's `imap_unordered`: the results as an iterator, as they finish.
    pub fn imap_unordered<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ImapUnordered<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (job, len) = self.submit_each(f, items, true)?;
        Ok(ImapUnordered { shared: self.pool.shared.clone(), job, left: len, _r: PhantomData })
    }

    /// Python's `map_async`: the results later, through an [`AsyncResult`].
    pub fn map_async<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (job, len) = self.submit_each(f, items, false)?;
        Ok(AsyncResult::new(self.pool.shared.clone(), (job, len), move |job| job.take_all(len)))
    }
}

/// Marks a job abandoned when the call waiting for it unwinds or returns
/// early, so its outcomes are dropped as they come.
struct Abandon<'a> {
    shared: &'a Shared,
    job: u64,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        abandon(self.shared, self.job);
    }
}

fn abandon(shared: &Shared, job: u64) {
    let mut st = shared.lock();
    let done = st.jobs.get(&job).is_none_or(|j| j.remaining == 0);
    if done {
        st.jobs.remove(&job);
    } else if let Some(j) = st.jobs.get_mut(&job) {
        j.abandoned = true;
        j.bufs.clear();
    }
    // Abandoned jobs whose work is all back are dropped.
    st.jobs.retain(|_, j| !(j.abandoned && j.remaining == 0));
}

/// Turns a finished job's outcomes into an [`AsyncResult`]'s value.
type Finish<R> = Box<dyn Fn(&mut Job) -> Result<R> + Send + Sync>;

/// The result of [`Pool::apply_async`] or [`Pool::map_async`]: Python's
/// `AsyncResult`.
pub struct AsyncResult<R> {
    shared: Arc<Shared>,
    job: u64,
    finish: Finish<R>,
    taken: bool,
}

impl<R> AsyncResult<R> {
    fn new(
        shared: Arc<Shared>,
        (job, _len): (u64, usize),
        finish: impl Fn(&mut Job) -> Result<R> + Send + Sync + 'static,
    ) -> AsyncResult<R> {
        AsyncResult { shared, job, finish: Box::new(finish), taken: false }
    }

    fn done(&self, st: &mut State) -> bool {
        st.jobs.get(&self.job).is_none_or(|j| j.remaining == 0)
    }

    /// Waits for the result and returns it.
    pub fn get(mut self) -> Result<R> {
        self.get_until(Deadline::NEVER)
    }

    /// Waits at most `timeout` for the result: [`ErrorKind::Timeout`] if it
    /// is not ready (the result can still be had later).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.get_until(Deadline::after(timeout))
    }

    fn get_until(&mut self, deadline: Deadline) -> Result<R> {
        if self.taken {
            return Err(Error::invalid("the result was already taken"));
        }
        if !self.shared.wait(deadline, |st| self.done(st))? {
            return Err(Error::timeout());
        }
        let mut st = self.shared.lock();
        let mut job = st.jobs.remove(&self.job).ok_or_else(|| Error::invalid("job vanished"))?;
        drop(st);
        self.taken = true;
        (self.finish)(&mut job)
    }

    /// Waits until the result is ready.
    pub fn wait(&self) -> Result<()> {
        self.shared.wait(Deadline::NEVER, |st| self.done(st)).map(|_| ())
    }

    /// Waits at most `timeout`; whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.shared.wait(Deadline::after(timeout), |st| self.done(st))
    }

    /// Whether the result is ready. Takes the replies already there (so a
    /// loop on `ready` moves the pool along) and never blocks.
    pub fn ready(&self) -> bool {
        let mut st = self.shared.lock();
        if self.done(&mut st) {
            return true;
        }
        let _ = st.step(Duration::ZERO);
        self.done(&mut st)
    }

    /// Whether it is ready and every task succeeded; `None` while not ready
    /// (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        let mut st = self.shared.lock();
        let job = st.jobs.get_mut(&self.job)?;
        if job.remaining != 0 {
            return None;
        }
        Some(job.items.iter().all(|item| match item {
            Item::Ready { buf, start, .. } => {
                job.bufs[*buf as usize].get(*start as usize) == Some(&OK)
            }
            _ => false,
        }))
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        if !self.taken {
            abandon(&self.shared, self.job);
        }
    }
}

/// [`Pool::imap`]'s iterator: each item's `Result`, in order.
pub struct Imap<R> {
    shared: Arc<Shared>,
    job: u64,
    next: usize,
    len: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Imap<R> {
    /// The next item's `Result`, waiting at most `timeout` for it: a
    /// `Timeout` error leaves the item for the next call (Python's
    /// `next(timeout)`); `None` after the last.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Deadline::after(timeout))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<R>> {
        if self.next >= self.len {
            return None;
        }
        let (job, i) = (self.job, self.next);
        let ready =
            |st: &mut State| st.jobs.get(&job).is_none_or(|j| !matches!(j.items[i], Item::Pending));
        match self.shared.wait(deadline, ready) {
            Ok(true) => {}
            Ok(false) => return Some(Err(Error::timeout())),
            Err(e) => return Some(Err(e)),
        }
        self.next += 1;
        let mut st = self.shared.lock();
        let job = st.jobs.get_mut(&job)?;
        Some(job.take(i))
    }
}

impl<R: DeserializeOwned> Iterator for Imap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(Deadline::NEVER)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len - self.next, Some(self.len - self.next))
    }
}

impl<R> Drop for Imap<R> {
    fn drop(&mut self) {
        abandon(&self.shared, self.job);
    }
}

/// [`Pool::imap_unordered`]'s iterator: each item's `Result`, as they finish.
pub struct ImapUnordered<R> {
    shared: Arc<Shared>,
    job: u64,
    left: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> ImapUnordered<R> {
    /// The next finished item's `Result`, waiting at most `timeout`: a
    /// `Timeout` error takes nothing; `None` after the last.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Deadline::after(timeout))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<R>> {
        if self.left == 0 {
            return None;
        }
        let job = self.job;
        let ready = |st: &mut State| st.jobs.get(&job).is_none_or(|j| !j.arrived.is_empty());
        match self.shared.wait(deadline, ready) {
            Ok(true) => {}
            Ok(false) => return Some(Err(Error::timeout())),
            Err(e) => return Some(Err(e)),
        }
        self.left -= 1;
        let mut st = self.shared.lock();
        let job = st.jobs.get_mut(&job)?;
        let i = job.arrived.pop_front()? as usize;
        Some(job.take(i))
    }
}

impl<R: DeserializeOwned> Iterator for ImapUnordered<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(Deadline::NEVER)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<R> Drop for ImapUnordered<R> {
    fn drop(&mut self) {
        abandon(&self.shared, self.job);
    }
}
