//! The scheduler's state in the parent: jobs and their items, the
//! workers' slots, and the round that hands out chunks, takes replies and
//! replaces dead workers.

use super::worker::*;
use super::*;
use crate::connection::Connection;
use crate::handles::from_exact;
use crate::pipe::Pipe;
use crate::process::{Process, StartMethod};
use crate::queue::ByteQueue;
use crate::time::Deadline;
use crate::value::RawArray;
use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// How a job keeps its outcomes until they are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keep {
    /// Item by item, each taken alone (`apply`, `imap`).
    Items,
    /// Item by item, noting the order they arrive in (`imap_unordered`).
    Arrivals,
    /// Reply by reply, for a caller that takes them all (`map`, `starmap`,
    /// `map_async`) and decodes each as it comes ([`Collect`]): a bit per
    /// item instead of a table, and no reply kept once decoded.
    Replies,
}

/// What a [`Keep::Replies`] job holds for its caller to decode.
pub(super) enum Arrived {
    /// A worker's reply: `count` outcomes from item `first` on, in
    /// `buf[at..]` (the whole message, so its buffer can be used again).
    Reply {
        first: u32,
        count: u32,
        buf: Vec<u8>,
        at: usize,
    },
    Failed(u32, ErrorKind, Arc<str>),
}

pub(super) struct Job {
    len: usize,
    keep: Keep,
    /// Each item's outcome ([`Keep::Items`], [`Keep::Arrivals`]).
    items: Vec<Packed>,
    failures: Vec<(ErrorKind, Arc<str>)>,
    bufs: Vec<Vec<u8>>,
    /// A bit per settled item, and what arrived and was not yet decoded
    /// ([`Keep::Replies`]).
    settled: Vec<u64>,
    arrivals: VecDeque<Arrived>,
    pub(super) remaining: usize,
    /// Indices whose outcome arrived and was not taken (kept only for
    /// `imap_unordered`).
    pub(super) arrived: VecDeque<u32>,
    /// Nobody will read it (its handle was dropped): drop outcomes.
    pub(super) abandoned: bool,
}

impl Job {
    /// A job with no items yet, room made for `expected` (up to a bound:
    /// an iterator's size hint may lie); each chunk adds its own.
    fn new(expected: usize, keep: Keep) -> Job {
        let room = expected.min(1 << 20);
        let (items, settled) = match keep {
            Keep::Replies => (Vec::new(), Vec::with_capacity(room.div_ceil(64))),
            _ => (Vec::with_capacity(room), Vec::new()),
        };
        Job {
            len: 0,
            keep,
            items,
            failures: Vec::new(),
            bufs: Vec::new(),
            settled,
            arrivals: VecDeque::new(),
            remaining: 0,
            arrived: VecDeque::new(),
            abandoned: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Makes it a job of `len` items (more than it had: its next chunk's),
    /// the new ones pending.
    pub(super) fn grow(&mut self, len: usize) {
        if len <= self.len {
            return;
        }
        self.remaining += len - self.len;
        self.len = len;
        match self.keep {
            Keep::Replies => self.settled.resize(len.div_ceil(64), 0),
            _ => self.items.resize(len, 0),
        }
    }

    /// Whether item `i`'s outcome has not arrived.
    pub(super) fn is_pending(&self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        match self.keep {
            Keep::Replies => self.settled[i / 64] & 1 << (i % 64) == 0,
            _ => unpack(self.items[i]).0 == PENDING,
        }
    }

    /// Marks item `i` settled; `false` if it was not pending.
    fn mark(&mut self, i: usize) -> bool {
        if !self.is_pending(i) {
            return false;
        }
        if self.keep == Keep::Replies {
            self.settled[i / 64] |= 1 << (i % 64);
        }
        self.remaining -= 1;
        true
    }

    /// [`mark`](Self::mark)s `n` items of a [`Keep::Replies`] job from
    /// `first` on, a word of bits at a time where it can.
    fn mark_run(&mut self, first: usize, n: usize) {
        let end = (first + n).min(self.len);
        let mut i = first;
        while i < end {
            let (word, bit) = (i / 64, i % 64);
            let take = (64 - bit).min(end - i);
            let mask = if take == 64 { u64::MAX } else { ((1u64 << take) - 1) << bit };
            if self.settled[word] & mask == 0 {
                self.settled[word] |= mask;
                self.remaining -= take;
            } else {
                for j in i..i + take {
                    self.mark(j);
                }
            }
            i += take;
        }
    }

    pub(super) fn settle(&mut self, i: usize, item: Item) {
        if self.keep == Keep::Replies {
            if let Item::Failed(kind, why) = item {
                if self.mark(i) {
                    self.arrivals.push_back(Arrived::Failed(i as u32, kind, why));
                }
            }
            return;
        }
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
        self.mark(i);
        self.items[i] = packed;
        if self.keep == Keep::Arrivals {
            self.arrived.push_back(i as u32);
        }
    }

    /// Takes a reply's outcomes (`results`, a part of `buf`) for the items
    /// from `first` on; how many it held.
    pub(super) fn settle_reply(&mut self, first: u32, count: u32, buf: Vec<u8>, at: usize) -> u32 {
        let results = &buf[at..];
        if self.keep != Keep::Replies {
            let index = self.bufs.len() as u32;
            let mut got = 0;
            for (k, outcome) in items(results).take(count as usize).enumerate() {
                let start = (outcome.as_ptr() as usize - buf.as_ptr() as usize) as u32;
                self.settle(first as usize + k, Item::Ready { buf: index, start });
                got += 1;
            }
            self.bufs.push(buf);
            return got;
        }
        let got = items(results).take(count as usize).count() as u32;
        self.mark_run(first as usize, got as usize);
        self.arrivals.push_back(Arrived::Reply { first, count: got, buf, at });
        got
    }

    /// Drops what it holds: nobody will take it.
    pub(super) fn abandon(&mut self) {
        self.abandoned = true;
        self.bufs = Vec::new();
        self.arrivals = VecDeque::new();
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
        if self.keep != Keep::Replies {
            return (0..self.len()).all(|i| self.outcome(i).and_then(|o| o.first()) == Some(&OK));
        }
        self.remaining == 0
            && self.arrivals.iter().all(|a| match a {
                Arrived::Reply { count, buf, at, .. } => {
                    items(&buf[*at..]).take(*count as usize).all(|o| o.first() == Some(&OK))
                }
                Arrived::Failed(..) => false,
            })
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
            _ => decode(self.outcome(i).unwrap_or(&[])),
        };
        self.items[i] = pack(TAKEN, 0);
        decoded
    }
}

/// An item's outcome (tag, then the result or a message), decoded.
fn decode<R: DeserializeOwned>(outcome: &[u8]) -> Result<R> {
    let (tag, body) = outcome.split_first().unwrap_or((&BAD_RESULT, &[]));
    let text = || String::from_utf8_lossy(body).into_owned();
    match *tag {
        OK => from_exact(body).map_err(|e| Error::codec("deserializing a task's result", e)),
        PANICKED => Err(Error::new(ErrorKind::TaskPanicked, text())),
        _ => Err(Error::new(ErrorKind::Codec, text())),
    }
}

/// The results of a [`Keep::Replies`] job, decoded as its replies arrive
/// by the caller that will return them (its own thread decodes them, so
/// `R` need not be `Send`). A reply is a run of items: the run that comes
/// next in order is decoded onto the end of the results, one that arrives
/// early waits decoded until the runs before it came.
pub(super) struct Collect<R> {
    len: usize,
    out: Vec<R>,
    early: BTreeMap<u32, Vec<R>>,
    /// The failure of the lowest item that failed (no result is kept
    /// once there is one).
    error: Option<(u32, Error)>,
}

impl<R: DeserializeOwned> Collect<R> {
    pub(super) fn new(len: usize) -> Collect<R> {
        Collect { len, out: Vec::with_capacity(len), early: BTreeMap::new(), error: None }
    }

    fn fail(&mut self, i: u32, error: Error) {
        if self.error.as_ref().is_none_or(|(at, _)| i < *at) {
            self.error = Some((i, error));
            self.early.clear();
        }
    }

    /// Decodes what arrived for the job; buffers go back to `spare`.
    pub(super) fn drain(&mut self, job: &mut Job, spare: &mut Vec<Vec<u8>>) {
        while let Some(arrived) = job.arrivals.pop_front() {
            match arrived {
                Arrived::Failed(i, kind, why) => self.fail(i, Error::new(kind, why.to_string())),
                Arrived::Reply { first, count, buf, at } => {
                    self.run(first, items(&buf[at..]).take(count as usize));
                    keep_spare(spare, buf);
                }
            }
        }
    }

    /// Decodes a run of outcomes from item `first` on.
    fn run<'a>(&mut self, first: u32, outcomes: impl Iterator<Item = &'a [u8]>) {
        let next = self.out.len() as u32;
        let mut values = if self.error.is_some() || first < next {
            None
        } else if first == next {
            Some(std::mem::take(&mut self.out))
        } else {
            Some(Vec::new())
        };
        if values.is_none() && self.error.is_none() {
            // A run taken before: nothing new.
            return;
        }
        for (k, outcome) in outcomes.enumerate() {
            match (decode(outcome), values.as_mut()) {
                (Ok(value), Some(values)) => values.push(value),
                (Ok(_), None) => {}
                (Err(e), _) => {
                    self.fail(first + k as u32, e);
                    values = None;
                }
            }
        }
        let Some(values) = values else { return };
        if first != next {
            self.early.insert(first, values);
            return;
        }
        self.out = values;
        while let Some(run) = self.early.remove(&(self.out.len() as u32)) {
            self.out.extend(run);
        }
    }

    /// Every result in order, or the first failure in item order.
    pub(super) fn finish(self) -> Result<Vec<R>> {
        match self.error {
            Some((_, e)) => Err(e),
            None if self.out.len() == self.len => Ok(self.out),
            None => Err(Error::invalid("a result is missing")),
        }
    }
}

/// Keeps a reply buffer to receive into again (a few, none over 1 MiB).
pub(super) fn keep_spare(spare: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    if spare.len() < 4 && buf.capacity() <= 1 << 20 {
        spare.push(buf);
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
    pub(super) replies: ByteQueue,
    /// Reply buffers to receive into again.
    pub(super) spare: Vec<Vec<u8>>,
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
        match self.take_reply(slice) {
            Ok(()) => {
                // Take what else is there without waiting.
                for _ in 0..1024 {
                    if self.take_reply(Duration::ZERO).is_err() {
                        break;
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

    /// Takes one reply, waiting at most `timeout` for it, into a buffer
    /// used before if there is one.
    fn take_reply(&mut self, timeout: Duration) -> Result<()> {
        let mut buf = self.spare.pop().unwrap_or_default();
        match self.replies.get_bytes_into_timeout(&mut buf, timeout) {
            Ok(()) => {
                if let Some(buf) = self.on_reply(buf)? {
                    keep_spare(&mut self.spare, buf);
                }
                Ok(())
            }
            Err(e) => {
                keep_spare(&mut self.spare, buf);
                Err(e)
            }
        }
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

    /// Settles the outcomes of a reply (a whole message); hands its buffer
    /// back unless a job keeps it.
    pub(super) fn on_reply(&mut self, buf: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let reply =
            from_exact::<Reply<'_>>(&buf).map_err(|e| Error::codec("a pool worker's reply", e))?;
        let Some(Some(slot)) = self.slots.get_mut(reply.slot as usize) else {
            return Ok(Some(buf));
        };
        let expected =
            |c: &Chunk| c.seq == reply.seq && c.job == reply.job && c.first == reply.first;
        if !slot.inflight.front().is_some_and(expected) {
            return Ok(Some(buf));
        }
        let chunk = slot.inflight.pop_front().expect("checked: a chunk is in flight");
        slot.answered += 1;
        if self.maxtasks.is_some_and(|m| slot.answered >= m) {
            if let Some(tasks) = slot.tasks.take() {
                let _ = tasks.send_timeout(&OrderRef::Stop, SEND_SLICE);
            }
        }
        self.stillborn = 0;
        let Some(job) = self.jobs.get_mut(&reply.job) else { return Ok(Some(buf)) };
        if job.abandoned {
            return Ok(Some(buf));
        }
        let at = reply.results.as_ptr() as usize - buf.as_ptr() as usize;
        let count = reply.count.min(chunk.count);
        let got = job.settle_reply(chunk.first, count, buf, at);
        // Items the reply lacks (a malformed reply) fail rather than hang.
        for i in got..chunk.count {
            let why: Arc<str> = "the worker's reply lacked this task".into();
            job.settle((chunk.first + i) as usize, Item::Failed(ErrorKind::Corrupt, why));
        }
        Ok(None)
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
        while self.take_reply(Duration::ZERO).is_ok() {}
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

    /// A new job of about `expected` items (its chunks follow with
    /// `add_chunk`, each adding its items).
    pub(super) fn open_job(&mut self, expected: usize, keep: Keep) -> Result<u64> {
        if self.closed || self.terminated {
            return Err(Error::invalid("the pool is closed"));
        }
        let id = self.next_job;
        self.next_job += 1;
        let job = Job::new(expected, keep);
        self.jobs.insert(id, job);
        Ok(id)
    }

    /// Queues a chunk of job `id` and hands out what workers can take.
    pub(super) fn add_chunk(&mut self, chunk: Chunk) {
        if let Some(job) = self.jobs.get_mut(&chunk.job) {
            job.grow((chunk.first + chunk.count) as usize);
        }
        self.pending.push_back(chunk);
        self.dispatch();
    }

    pub(super) fn busy(&self) -> bool {
        !self.pending.is_empty() || self.slots.iter().flatten().any(|s| !s.inflight.is_empty())
    }
}
