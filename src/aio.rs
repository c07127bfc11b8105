//! The one loop behind every async form (the `tokio` feature).
//!
//! An async wait does not park a thread. It *attempts* the operation
//! without waiting (the blocking code's own try path, under the side's lock
//! where there is one), and when that finds nothing it registers in the
//! primitive's waiter count as an async waiter (`multiproc_core`'s
//! [`ASYNC_WAITER`](multiproc_core::ASYNC_WAITER)), has the object's *bell*
//! watched (see `os::ready`: by tokio's reactor on the Unixes, by a wait on
//! the system's thread pool on Windows), tries once more (a waker that came
//! in between rang the bell, which the watch already sees), and then waits
//! for the bell. Every waker that finds an
//! async waiter registered rings it; one that finds none pays nothing more
//! than before.
//!
//! What no bell announces is watched as well: a peer's hang-up (a Pipe's
//! link) and, where a lock's holder could die holding it, a periodic check
//! at the blocking waiters' interval (a private timer).
//!
//! Cancel safety: an attempt either completes the operation or leaves no
//! trace, and between attempts the future holds only its registration,
//! which its drop undoes. What an operation keeps across awaits (a long
//! message half received, a long one half sent under the side's lock) is
//! put back by the drop: see each form.

use crate::os::ready::{Ready, Ticker, Watch};
use crate::os::BorrowedHandle;
use crate::{Error, ErrorKind, Result};
use multiproc_core::Liveness;
use std::future::poll_fn;
use std::task::Poll;

/// What one attempt found.
pub(crate) enum Step<T> {
    /// Done: the outcome.
    Done(Result<T>),
    /// What it waits for is not there yet: the bell will say when.
    Wait,
    /// A lock it needs is held: the bell says when it is released, and a
    /// periodic check whether its holder died.
    Contended,
}

/// An async waiter's registration in a primitive's waiter count, undone
/// when dropped (the future ended or was dropped).
pub(crate) struct Registered<F: FnMut()>(F);

impl<F: FnMut()> Drop for Registered<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Registers with `add` (`false`: the count is full), undone by `remove`.
pub(crate) fn register<F: FnMut()>(added: bool, remove: F) -> Result<Registered<F>> {
    if added {
        Ok(Registered(remove))
    } else {
        Err(Error::new(
            ErrorKind::Exhausted,
            "this object has 65,535 async waiters already: no more can register",
        ))
    }
}

/// Attempts an async wait makes first, spinning [`SPIN_STEP`] pauses
/// between them (about 6 µs in all where a pause is 25 ns): a peer running
/// on another core usually answers within that (the blocking forms spin
/// for the same reason), and a task that does not park costs no system
/// call, neither here nor in its waker.
const SPINS: u32 = 16;
/// Pauses between two attempts while spinning.
const SPIN_STEP: u32 = 16;
/// Attempts after the spin, yielding to the runtime between them (other
/// tasks run), before the wait registers and awaits the bell.
const YIELDS: u32 = 4;

/// Runs `attempt` until it is done. `attempt(check)` gets `check` true when
/// a periodic check is due or a hang-up was seen (it then looks at what no
/// bell announces: a dead peer, a dead lock holder). `register` is called
/// once, before the first wait, and its guard kept until the end.
/// `ready`: the handle whose readability says to try again (an object's
/// bell, a child's pidfd; without one, attempts are paced by the periodic
/// check alone); `hangup`: a link whose hang-up also wakes the wait.
pub(crate) async fn until<T, G>(
    ready: Option<Ready<'_>>,
    hangup: Option<BorrowedHandle<'_>>,
    register: impl FnOnce() -> Result<G>,
    mut attempt: impl FnMut(bool) -> Step<T>,
) -> Result<T> {
    let mut contended = false;
    for round in 0..SPINS + YIELDS {
        match attempt(false) {
            Step::Done(done) => return done,
            Step::Wait => {}
            Step::Contended => contended = true,
        }
        if round < SPINS {
            (0..SPIN_STEP).for_each(|_| std::hint::spin_loop());
        } else {
            tokio::task::yield_now().await;
        }
    }
    let _registered = register()?;
    let watch = ready.map(Watch::new).transpose().map_err(watching)?;
    // Nothing rings: the periodic check paces the attempts.
    contended |= watch.is_none();
    let hangup_watch = hangup.map(Watch::hangup).transpose().map_err(watching)?.flatten();
    // A hang-up no handle tells of: the periodic check looks for it.
    contended |= hangup.is_some() && hangup_watch.is_none();
    let hangup = hangup_watch;
    let mut ticker = None;
    let mut check = false;
    loop {
        match attempt(check) {
            Step::Done(done) => return done,
            Step::Wait => {}
            Step::Contended => contended = true,
        }
        if contended && ticker.is_none() {
            let interval = <crate::os::Os as Liveness>::CHECK_INTERVAL;
            ticker = Some(Ticker::every(interval).map_err(watching)?);
        }
        check = poll_fn(|cx| {
            let mut woke = None;
            if let Some(Poll::Ready(ready)) = watch.as_ref().map(|w| w.poll(cx)) {
                ready?;
                woke = Some(false);
            }
            if let Some(Poll::Ready(ready)) = hangup.as_ref().map(|h| h.poll(cx)) {
                ready?;
                woke = Some(true);
            }
            if let Some(Poll::Ready(ready)) = ticker.as_ref().map(|t| t.poll(cx)) {
                ready?;
                woke = Some(true);
            }
            woke.map_or(Poll::Pending, |check| Poll::Ready(Ok::<_, std::io::Error>(check)))
        })
        .await
        .map_err(watching)?;
    }
}

/// Waits until one of `handles` is ready (to write if `write`, else to
/// read; a hang-up counts), or `tick` passed. Each call watches afresh,
/// and a fresh watch reports what is ready already: nothing that became
/// ready after the caller last looked is missed. For handles the kernel
/// keeps ready while they are (sockets), unlike bells.
pub(crate) async fn ready_any(
    handles: &[BorrowedHandle<'_>],
    write: bool,
    tick: Option<std::time::Duration>,
) -> Result<()> {
    let watches: Vec<Watch> = handles
        .iter()
        .map(|&h| Watch::with(h, write))
        .collect::<std::io::Result<_>>()
        .map_err(watching)?;
    // Nothing to watch (a listener no handle tells of): look again soon.
    let tick = if handles.is_empty() { Some(tick.unwrap_or(NOTHING_WATCHED)) } else { tick };
    let ticker = tick.map(Ticker::every).transpose().map_err(watching)?;
    poll_fn(|cx| {
        let mut woke = false;
        for w in &watches {
            if let Poll::Ready(ready) = w.poll(cx) {
                ready?;
                woke = true;
            }
        }
        if let Some(Poll::Ready(ready)) = ticker.as_ref().map(|t| t.poll(cx)) {
            ready?;
            woke = true;
        }
        if woke {
            Poll::Ready(Ok::<_, std::io::Error>(()))
        } else {
            Poll::Pending
        }
    })
    .await
    .map_err(watching)
}

/// How often [`ready_any`] looks again when it has no handle to watch.
const NOTHING_WATCHED: std::time::Duration = std::time::Duration::from_millis(1);

fn watching(e: std::io::Error) -> Error {
    Error::io("awaiting an object's readiness handle (in a tokio runtime with I/O enabled)", e)
}

/// A handle that becomes ready when a wait on an object might succeed, for
/// an event loop other than tokio (mio, a `poll(2)` or
/// `WaitForMultipleObjects` loop of one's own): the `tokio` feature's
/// readiness, without tokio.
///
/// While it lives, the object's wakers ring for it (it is registered as
/// an async waiter is), and everything that tells of the object (its
/// bell, a peer's hang-up, a child's exit) is gathered into the one handle
/// it lends: on the Unixes a borrowed descriptor, a private epoll instance
/// or kqueue watching them edge-triggered, readable (level- or
/// edge-triggered) while an event has not been taken; on Windows a
/// borrowed handle, an event signaled by waits on the system's
/// thread pool (what no handle tells of, a peer's hang-up or a socket's
/// bytes, is looked at periodically there, and a bell's sleep also ends
/// after 20 ms at first, as a parked thread's does, so expect wakes that
/// find nothing). After
/// each wake, call [`clear`](Self::clear), then try the operation's
/// non-blocking form (`try_`, `_nowait`, `poll`) until it finds nothing;
/// an event after `clear` makes it ready again, so nothing is missed.
/// Dropping it unregisters. `tests/async_forms.rs` has a loop of its own
/// over the readiness of a Pipe's end, a Queue, an Event and a Process.
pub struct Readiness<'a> {
    pub(crate) edges: crate::os::ready::Edges,
    _registered: Box<dyn Held + 'a>,
}

/// Anything kept alive for its drop (a registration).
pub(crate) trait Held {}
impl<T> Held for T {}

impl<'a> Readiness<'a> {
    /// Watches `handles` (the `None`s skipped), keeping `registered`.
    pub(crate) fn new(
        registered: impl Held + 'a,
        handles: impl IntoIterator<Item = Option<Ready<'a>>>,
    ) -> Result<Readiness<'a>> {
        let mut edges = crate::os::ready::Edges::new().map_err(watching)?;
        for handle in handles.into_iter().flatten() {
            edges.add(handle).map_err(watching)?;
        }
        Ok(Readiness { edges, _registered: Box::new(registered) })
    }

    /// Takes the events that made it readable: call after each wake,
    /// before trying the operation.
    pub fn clear(&self) -> Result<()> {
        self.edges.clear().map_err(watching)
    }
}

impl std::fmt::Debug for Readiness<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}
