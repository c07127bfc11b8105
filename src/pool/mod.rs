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

mod result;
mod state;
mod worker;

use result::{abandon, Abandon};
pub use result::{AsyncResult, Imap, ImapUnordered};
use state::*;
pub(crate) use worker::entry_of;
#[doc(hidden)]
pub use worker::testing;
use worker::*;

use crate::process::{get_start_method, Process, StartMethod, Target};
use crate::queue::Queue;
use crate::time::Deadline;
use crate::value::RawArray;
use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
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
            replies: Queue::new()?.prompt(),
            spare: Vec::new(),
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

/// A chunk of the default size also ends once its arguments reach this
/// many bytes: it then fits one frame of a worker's pipe (encoded straight
/// into it), its buffers stay in cache and are reused rather than mapped
/// afresh, and workers start sooner. With it (and items kept in 8 bytes),
/// page faults fell from over half the parent's time on a map of a
/// million tiny tasks to about a tenth; the map ran 6% faster.
const CHUNK_BYTES: usize = 64 << 10;

/// The chunk size Python's `map` picks: about four chunks per worker.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = processes * 4;
    (len / per + usize::from(len % per != 0)).max(1)
}

impl Pool {
    /// `processes` workers, started now, with the default start method:
    /// `Pool::new(4)`, or `Pool::new(None)` for one per CPU
    /// ([`cpu_count`](crate::cpu_count)), as Python's `Pool()`.
    pub fn new(processes: impl Into<Option<usize>>) -> Result<Pool> {
        let builder = Pool::builder();
        match processes.into() {
            Some(n) => builder.processes(n),
            None => builder,
        }
        .build()
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
        let job = self.submit::<F, A, R>(std::iter::once(args), Some(1), Keep::Items)?;
        Ok(AsyncResult::new(self.shared.clone(), job, |job| job.take(0)))
    }

    /// Queues `items` as a job of task `F`, chunk by chunk (workers start
    /// on the first chunk while the rest are encoded); the job's id and how
    /// many items it has.
    fn submit<F, A, R>(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        keep: Keep,
    ) -> Result<(u64, usize)>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items = items.into_iter();
        match items.size_hint() {
            // Encoded as they come: no copy of the items. The job has as
            // many as come, whatever the hint said.
            (len, Some(upper)) if len == upper && u32::try_from(len).is_ok() => {
                self.submit_iter::<F, A, R>(items, len, chunksize, keep)
            }
            _ => {
                // Pushed one by one: `collect` would reserve what the hint
                // says, and a hint can say anything.
                let mut all = Vec::new();
                for item in items {
                    all.push(item);
                }
                let len = all.len();
                self.submit_iter::<F, A, R>(all.into_iter(), len, chunksize, keep)
            }
        }
    }

    fn submit_iter<F, A, R>(
        &self,
        items: impl Iterator<Item = A>,
        len: usize,
        chunksize: Option<usize>,
        keep: Keep,
    ) -> Result<(u64, usize)>
    where
        F: Task<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        if u32::try_from(len).is_err() {
            return Err(Error::new(ErrorKind::TooLarge, "over 2^32 items in one call"));
        }
        let (size, most_bytes) = match chunksize {
            Some(size) => (size, usize::MAX),
            None => (default_chunksize(len, self.processes), CHUNK_BYTES),
        };
        let entry = entry_of::<F, A, R>();
        let id = self.shared.lock().open_job(len, keep)?;
        let (mut first, mut count) = (0u32, 0u32);
        let mut args = Vec::new();
        let mut items = items.peekable();
        while let Some(item) = items.next() {
            let pushed = if first as u64 + u64::from(count) >= u64::from(u32::MAX) {
                Err(Error::new(ErrorKind::TooLarge, "over 2^32 items in one call"))
            } else {
                push_item(&mut args, &item)
            };
            if let Err(e) = pushed {
                abandon(&self.shared, id);
                return Err(e);
            }
            count += 1;
            if count as usize == size || args.len() >= most_bytes || items.peek().is_none() {
                let room = args.len().min(most_bytes);
                let args = std::mem::replace(&mut args, Vec::with_capacity(room));
                let chunk = Chunk { job: id, entry, seq: 0, first, count, args };
                self.shared.lock().add_chunk(chunk);
                (first, count) = (first + count, 0);
            }
        }
        Ok((id, first as usize))
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
            let p = slot.process;
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
        keep: Keep,
    ) -> Result<(u64, usize)>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.pool.submit::<F, (T,), R>(items.into_iter().map(|t| (t,)), self.chunksize, keep)
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
        let (job, len) = self.pool.submit::<F, A, R>(items, self.chunksize, Keep::Replies)?;
        let guard = Abandon { shared: &self.pool.shared, job };
        let mut out = Collect::<R>::new(len);
        let done = |st: &mut State| {
            let State { jobs, spare, .. } = st;
            match jobs.get_mut(&job) {
                Some(j) => {
                    out.drain(j, spare);
                    j.remaining == 0
                }
                None => true,
            }
        };
        if !self.pool.shared.wait(deadline, done)? {
            return Err(Error::timeout());
        }
        self.pool.shared.lock().jobs.remove(&job).ok_or_else(|| Error::invalid("job vanished"))?;
        std::mem::forget(guard);
        out.finish()
    }

    /// Python's `imap`: the results as an iterator, in order, as they come.
    pub fn imap<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Imap<R>>
    where
        F: Task<(T,), R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (job, len) = self.submit_each(f, items, Keep::Items)?;
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
        let (job, len) = self.submit_each(f, items, Keep::Arrivals)?;
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
        let (job, len) = self.submit_each(f, items, Keep::Replies)?;
        Ok(AsyncResult::new(self.pool.shared.clone(), (job, len), move |job| {
            let mut out = Collect::<R>::new(len);
            out.drain(job, &mut Vec::new());
            out.finish()
        }))
    }
}
