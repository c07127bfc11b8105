//! The worker side of a pool, and what travels between it and the parent:
//! chunks of items, orders, replies; the task entries workers run.

use super::*;
use crate::connection::Connection;
use crate::handles::from_exact;
use crate::process::code_ref::{self, CodeRef, Record};
use crate::process::Target;
use crate::queue::ByteQueue;
use crate::value::RawArray;
use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Item outcome tags, first byte of an item's result.
pub(super) const OK: u8 = 0;
pub(super) const PANICKED: u8 = 1;
pub(super) const BAD_ARGS: u8 = 2;
pub(super) const BAD_RESULT: u8 = 3;

/// A task's entry in a worker: decodes one item's arguments, runs the task,
/// appends the outcome (tag, then the result or a message) to `out`.
pub(super) type TaskFn = fn(&[u8], &mut Vec<u8>);

/// The kind of code a chunk names.
pub(super) enum PoolTask {}

impl code_ref::Kind for PoolTask {
    const ID: u64 = code_ref::POOL_TASK;
    type Code = TaskFn;
}

/// The record of task `F` with arguments `A` and result `R`.
pub(super) struct TaskEntry<F, A, R>(PhantomData<(F, A, R)>);

impl<F: Task<A, R>, A: DeserializeOwned, R: Serialize> TaskEntry<F, A, R> {
    const RECORD: Record<TaskFn> =
        code_ref::record::<PoolTask>(code_ref::fingerprint::<(F, A, R)>, task_entry::<F, A, R>);
}

/// `&mut Vec<u8>` as postcard's output, appending (a byte at a time is a
/// `push`, where postcard's `to_extend` makes each an iterator).
pub(super) struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 10 {
            // A varint: a call to memmove would cost more than its bytes.
            for &byte in data {
                self.0.push(byte);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value`'s postcard encoding to `out`.
pub(super) fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Append(out))
}

pub(super) fn task_entry<F, A, R>(args: &[u8], out: &mut Vec<u8>)
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
    if let Err(e) = append(&result, out) {
        out.truncate(mark);
        fail(out, BAD_RESULT, &format!("the task's result: {e}"));
    }
}

pub(super) fn fail(out: &mut Vec<u8>, tag: u8, message: &str) {
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
pub(super) fn push_item<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<()> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    append(value, buf).map_err(|e| {
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
pub(super) fn items(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
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
pub(super) struct Chunk {
    pub(super) job: u64,
    pub(super) entry: CodeRef,
    /// This chunk's number among those sent to its worker.
    pub(super) seq: u32,
    pub(super) first: u32,
    pub(super) count: u32,
    #[serde(with = "serde_bytes")]
    pub(super) args: Vec<u8>,
}

/// What the parent tells a worker (sent as [`OrderRef`], same encoding).
#[derive(Deserialize)]
pub(super) enum Order {
    Run(Chunk),
    /// Exit: the pool closed, or this worker ran its `maxtasksperchild`.
    /// Explicit, because a forked sibling (or any fork of the parent) holds
    /// a copy of the sending end, so the pipe's end-of-file may never come.
    Stop,
}

#[derive(Serialize)]
pub(super) enum OrderRef<'a> {
    Run(&'a Chunk),
    Stop,
}

/// How often an idle worker checks that its parent still runs (it exits
/// if not: no orphaned workers, whoever else holds its pipe).
pub(super) const PARENT_CHECK: Duration = Duration::from_millis(500);

/// What a worker sends back for a chunk: one outcome per item. It travels
/// as its postcard bytes alone, written into the replies queue in place
/// and read by the parent from a buffer it reuses, `results` borrowed.
#[derive(Serialize, Deserialize)]
pub(super) struct Reply<'a> {
    pub(super) slot: u32,
    pub(super) seq: u32,
    pub(super) job: u64,
    pub(super) first: u32,
    pub(super) count: u32,
    #[serde(borrow, with = "serde_bytes")]
    pub(super) results: &'a [u8],
}

impl Reply<'_> {
    /// Puts it on `replies`.
    fn put(&self, replies: &ByteQueue) -> Result<()> {
        let size = postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default())
            .map_err(|e| Error::codec("serializing a reply", e))?;
        replies
            .put_with(size, |buf| postcard::to_slice(self, buf).map(|_| ()))?
            .map_err(|e| Error::codec("serializing a reply", e))
    }
}

/// What a worker is started with.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerCtx {
    pub(super) slot: u32,
    pub(super) tasks: Connection,
    /// [`Reply`]s, as bytes.
    pub(super) replies: ByteQueue,
    pub(super) progress: RawArray<u64>,
}

pub(super) fn worker_main<F: Target<A>, A>(ctx: WorkerCtx, init: A) -> i32 {
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
pub(super) fn serve(ctx: &WorkerCtx) {
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
            results: &results,
        };
        if reply.put(&ctx.replies).is_err() {
            return;
        }
    }
}
