//! What a submitted job hands back: [`AsyncResult`] and the `imap`
//! iterators, each of which drives the pool while it waits.

use super::state::*;
use crate::time::Deadline;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Marks a job abandoned when the call waiting for it unwinds or returns
/// early, so its outcomes are dropped as they come.
pub(super) struct Abandon<'a> {
    pub(super) shared: &'a Shared,
    pub(super) job: u64,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        abandon(self.shared, self.job);
    }
}

pub(super) fn abandon(shared: &Shared, job: u64) {
    let mut st = shared.lock();
    let done = st.jobs.get(&job).is_none_or(|j| j.remaining == 0);
    if done {
        st.jobs.remove(&job);
    } else if let Some(j) = st.jobs.get_mut(&job) {
        j.abandon();
    }
    // Abandoned jobs whose work is all back are dropped.
    st.jobs.retain(|_, j| !(j.abandoned && j.remaining == 0));
}

/// Turns a finished job's outcomes into an [`AsyncResult`]'s value.
pub(super) type Finish<R> = Box<dyn Fn(&mut Job) -> Result<R> + Send + Sync>;

/// The result of [`Pool::apply_async`] or [`Pool::map_async`]: Python's
/// `AsyncResult`.
pub struct AsyncResult<R> {
    pub(super) shared: Arc<Shared>,
    pub(super) job: u64,
    pub(super) finish: Finish<R>,
    pub(super) taken: bool,
}

impl<R> AsyncResult<R> {
    pub(super) fn new(
        shared: Arc<Shared>,
        (job, _len): (u64, usize),
        finish: impl Fn(&mut Job) -> Result<R> + Send + Sync + 'static,
    ) -> AsyncResult<R> {
        AsyncResult { shared, job, finish: Box::new(finish), taken: false }
    }

    pub(super) fn done(&self, st: &mut State) -> bool {
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

    pub(super) fn get_until(&mut self, deadline: Deadline) -> Result<R> {
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

    /// Awaits the result without blocking a thread (the `tokio` feature);
    /// `.await` on the `AsyncResult` itself does the same. The
    /// awaiting task drives the pool as [`get`](Self::get) does (hands out
    /// chunks, takes replies, sees dead workers) whenever the replies'
    /// queue rings, and at the blocking interval otherwise. Dropping the
    /// future abandons the job, as dropping the `AsyncResult` does.
    #[cfg(mp_async)]
    pub async fn get_async(mut self) -> Result<R> {
        use crate::aio::{until, Step};
        if self.taken {
            return Err(Error::invalid("the result was already taken"));
        }
        let shared = self.shared.clone();
        let replies = shared.lock().replies.clone();
        let (registered, ready) = replies.watch_items()?;
        let mut registered = Some(registered);
        let job = self.job;
        let done = |st: &mut State| st.jobs.get(&job).is_none_or(|j| j.remaining == 0);
        until(
            ready,
            None,
            || Ok(registered.take()),
            |_| {
                // Another caller may be driving the pool (and waiting inside
                // it): never block on it, look again at the next ring or tick.
                let Ok(mut st) = shared.state.try_lock() else { return Step::Contended };
                if done(&mut st) {
                    return Step::Done(Ok(()));
                }
                if let Err(e) = st.step(Duration::ZERO) {
                    return Step::Done(Err(e));
                }
                if done(&mut st) {
                    Step::Done(Ok(()))
                } else {
                    Step::Contended
                }
            },
        )
        .await?;
        self.get_until(Deadline::now())
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
        Some(job.all_succeeded())
    }
}

/// `.await` on an `AsyncResult` is [`AsyncResult::get_async`].
#[cfg(mp_async)]
impl<R: Send + 'static> std::future::IntoFuture for AsyncResult<R> {
    type Output = Result<R>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<R>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.get_async())
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
    pub(super) shared: Arc<Shared>,
    pub(super) job: u64,
    pub(super) next: usize,
    pub(super) len: usize,
    pub(super) _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Imap<R> {
    /// The next item's `Result`, waiting at most `timeout` for it: a
    /// `Timeout` error leaves the item for the next call (Python's
    /// `next(timeout)`); `None` after the last.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Deadline::after(timeout))
    }

    pub(super) fn next_until(&mut self, deadline: Deadline) -> Option<Result<R>> {
        if self.next >= self.len {
            return None;
        }
        let (job, i) = (self.job, self.next);
        let ready = |st: &mut State| st.jobs.get(&job).is_none_or(|j| !j.is_pending(i));
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
    pub(super) shared: Arc<Shared>,
    pub(super) job: u64,
    pub(super) left: usize,
    pub(super) _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> ImapUnordered<R> {
    /// The next finished item's `Result`, waiting at most `timeout`: a
    /// `Timeout` error takes nothing; `None` after the last.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Deadline::after(timeout))
    }

    pub(super) fn next_until(&mut self, deadline: Deadline) -> Option<Result<R>> {
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
