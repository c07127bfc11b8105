//! The scheduler's state in the parent: jobs and their items, the
//! workers' slots, and the round that hands out chunks, takes replies and
//! replaces dead workers.

use super::worker::*;
use super::*;
use crate::connection::Connection;
use crate::handles::from_exact;
use crate::pipe::Pipe;
use crate::process::{Process, StartMethod};
use crate::queue::Queue;
use crate::time::Deadline;
use crate::value::RawArray;
use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An item's outcome as it settles.
#[derive(Clone, Debug)]
pub(super) enum Item {
    /// Its outcome is in `bufs[buf]` at `start`, after its length.
    Ready {
        buf: u32,
        start: u32,
    },
    Failed(ErrorKind, Arc<str>),
}

/// An [`Item`] as a job keeps it: one `u64` (a map of a million tiny
/// tasks keeps a million), 0 while pending, so a job's table starts as
/// zeroed memory that costs nothing until its items settle. The high half
/// is `buf + 1` of a ready outcome (its offset in the low half, its length
/// in the four bytes before it), or [`FAILED`] (an index into the job's
/// failures), or [`TAKEN`].
type Packed = u64;

const PENDING: u32 = 0;
const TAKEN: u32 = u32::MAX;
const FAILED: u32 = u32::MAX - 1;

fn pack(tag: u32, at: u32) -> Packed {
    u64::from(tag) << 32 | u64::from(at)
}

fn unpack(p: Packed) -> (u32, u32) {
    ((p >> 32) as u32, p as u32)
}

pub(super) struct Job {
    items: Vec<Packed>,
    failures: Vec<(ErrorKind, Arc<str>)>,
    pub(super) bufs: Vec<Vec<u8>>,
    pub(super) remaining: usize,
    /// Indices whose outcome arrived and was not taken (kept only for
    /// `imap_unordered`).
    pub(super) arrived: VecDeque<u32>,
    pub(super) unordered: bool,
    /// Nobody will read it (its handle was dropped): drop outcomes.
    pub(super) abandoned: bool,
}

impl Job {
    fn new(len: usize, unordered: bool) -> Job {
        Job {
            items: vec![0; len],
            failures: Vec::new(),
            bufs: Vec::new(),
            remaining: len,
            arrived: VecDeque::new(),
            unordered,
            abandoned: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether item `i`'s outcome has not arrived.
    pub(super) fn is_pending(&self, i: usize) -> bool {
        self.items.get(i).is_some_and(|&p| unpack(p).0 == PENDING)
    }

    pub(super) fn settle(&mut self, i: usize, item: Item) {
        if !self.is_pending(i) {
            return;
        }
        let packed = match item {
            Item::Ready { buf, start } if buf < FAILED - 1 => pack(buf + 1, start),
            Item::Ready { .. } => return,
            Item::Failed(kind, why) => {
                self.failures.push((kind, why));
                pack(FAILED, (self.failures.len() - 1) as u32)
            }
        };
        self.items[i] = packed;
        self.remaining -= 1;
        if self.unordered {
            self.arrived.push_back(i as u32);
        }
    }

    /// Item `i`'s outcome bytes (tag, then result or message), if ready.
    fn outcome(&self, i: usize) -> Option<&[u8]> {
        let (tag, start) = unpack(*self.items.get(i)?);
        if tag == PENDING || tag >= FAILED {
            return None;
        }
        let buf = self.bufs.get(tag as usize - 1)?;
        let start = start as usize;
        let len = u32::from_le_bytes(buf.get(start.checked_sub(4)?..start)?.try_into().ok()?);
        buf.get(start..start + len as usize)
    }

    /// Whether every item arrived and succeeded.
    pub(super) fn all_succeeded(&self) -> bool {
        (0..self.len()).all(|i| self.outcome(i).and_then(|o| o.first()) == Some(&OK))
    }

    /// Takes the first `len` items' outcomes, decoded: all of them, or the
    /// first failure in item order (every item is taken either way).
    pub(super) fn take_all<R: DeserializeOwned>(&mut self, len: usize) -> Result<Vec<R>> {
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
    pub(super) fn take<R: DeserializeOwned>(&mut self, i: usize) -> Result<R> {
        let Some(&packed) = self.items.get(i) else {
            return Err(Error::invalid("no such result"));
        };
        let (tag, at) = unpack(packed);
        let decoded = match tag {
            PENDING | TAKEN => return Err(Error::invalid("this result was already taken")),
            FAILED => {
                let (kind, message) = &self.failures[at as usize];
                Err(Error::new(*kind, message.to_string()))
            }
            _ => {
                let bytes = self.outcome(i).unwrap_or(&[]);
                let (tag, body) = bytes.split_first().unwrap_or((&BAD_RESULT, &[]));
                let text = || String::from_utf8_lossy(body).into_owned();
                match *tag {
                    OK => from_exact(body)
                        .map_err(|e| Error::codec("deserializing a task's result", e)),
                    PANICKED => Err(Error::new(ErrorKind::TaskPanicked, text())),
                    _ => Err(Error::new(ErrorKind::Codec, text())),
                }
            }
        };
        self.items[i] = pack(TAKEN, 0);
        decoded
    }
}

/// One worker as the parent sees it.
pub(super) struct Slot {
    pub(super) process: Process,
    /// `None` once it ran `maxtasksperchild` chunks: it was told to stop,
    /// and the reaper replaces it when it has exited.
    pub(super) tasks: Option<Connection>,
    pub(super) inflight: VecDeque<Chunk>,
    /// Chunks sent to it, ever.
    pub(super) sent: u64,
    /// Chunks it answered.
    pub(super) answered: u64,
}

pub(super) type MakeWorker = Arc<dyn Fn(WorkerCtx) -> Process + Send + Sync>;

pub(super) struct State {
    pub(super) slots: Vec<Option<Slot>>,
    pub(super) pending: VecDeque<Chunk>,
    pub(super) jobs: HashMap<u64, Job>,
    pub(super) next_job: u64,
    pub(super) replies: Queue<Reply>,
    pub(super) progress: RawArray<u64>,
    pub(super) make_worker: MakeWorker,
    pub(super) method: StartMethod,
    pub(super) allow_threads: bool,
    pub(super) maxtasks: Option<u64>,
    pub(super) closed: bool,
    pub(super) terminated: bool,
    /// Workers that died in a row before answering any chunk.
    pub(super) stillborn: u32,
    pub(super) last_reap: Instant,
    pub(super) workers_started: u64,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drives the pool until `done` holds (`Ok(true)`) or `deadline` passes
    /// (`Ok(false)`).
    pub(super) fn wait(
        &self,
        deadline: Deadline,
        mut done: impl FnMut(&mut State) -> bool,
    ) -> Result<bool> {
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
    pub(super) fn step(&mut self, slice: Duration) -> Result<()> {
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

    pub(super) fn dispatch(&mut self) {
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

    pub(super) fn on_reply(&mut self, reply: Reply) {
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
            job.settle(chunk.first as usize + k, Item::Ready { buf, start });
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
    pub(super) fn reap(&mut self) -> Result<()> {
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
    pub(super) fn requeue(&mut self, chunk: &Chunk, keep: impl Fn(u32) -> bool) {
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

    pub(super) fn start_worker(&mut self, i: usize) -> Result<Slot> {
        let (rx, tx) = Pipe::simplex()?;
        let ctx = WorkerCtx {
            slot: i as u32,
            tasks: rx,
            replies: self.replies.clone(),
            progress: self.progress.clone(),
        };
        self.workers_started += 1;
        let process = (self.make_worker)(ctx)
            .name(format!("PoolWorker-{}", self.workers_started))
            .daemon(true)
            .start_method(self.method)
            .allow_threads(self.allow_threads);
        process.start()?;
        Ok(Slot { process, tasks: Some(tx), inflight: VecDeque::new(), sent: 0, answered: 0 })
    }

    /// Fails every item not yet settled (terminate, or a broken pool).
    pub(super) fn fail_all(&mut self, why: &str) {
        let why: Arc<str> = why.into();
        self.pending.clear();
        for slot in self.slots.iter_mut().flatten() {
            slot.inflight.clear();
        }
        for job in self.jobs.values_mut() {
            for i in 0..job.len() {
                job.settle(i, Item::Failed(ErrorKind::WorkerDied, why.clone()));
            }
        }
    }

    /// A new job of `len` items (their chunks follow with `add_chunk`).
    pub(super) fn open_job(&mut self, len: usize, unordered: bool) -> Result<u64> {
        if self.closed || self.terminated {
            return Err(Error::invalid("the pool is closed"));
        }
        let id = self.next_job;
        self.next_job += 1;
        let job = Job::new(len, unordered);
        self.jobs.insert(id, job);
        Ok(id)
    }

    /// Queues a chunk of job `id` and hands out what workers can take.
    pub(super) fn add_chunk(&mut self, chunk: Chunk) {
        self.pending.push_back(chunk);
        self.dispatch();
    }

    pub(super) fn busy(&self) -> bool {
        !self.pending.is_empty() || self.slots.iter().flatten().any(|s| !s.inflight.is_empty())
    }
}
