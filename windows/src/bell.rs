//! Readiness for async waiters on Windows: a segment's *bell*, and
//! alarms that wake a task when a handle is signaled (or a timer fires).
//!
//! A bell is the parking of the segment's words extended to tasks: one
//! more bucket in the segment's trailer ([`BELL`]), with its waiter count
//! and its named semaphore, shared by every word of the segment. An async
//! waiter counts itself in ([`Bell::listen`]) for as long as it waits, and
//! each sleep is a one-shot wait on the system's thread pool for a permit
//! of the bell's semaphore, which wakes the task. A waker that finds async
//! waiters registered in a primitive's count rings the bell of the
//! segment the word lies in ([`ring`], the park's `notify_async`): a full
//! fence, the bell's count read, that many permits released. So nothing
//! travels with a segment for it (the semaphore is found by name), and a
//! waker that finds no async waiter pays nothing.
//!
//! As with parking (see `park.rs`), a permit cannot say whom it is for:
//! a listener that counts itself in after a ring may take the permit of
//! one counted before (one between its look and its next sleep), and
//! permits nobody waited for are taken later as spurious wakes. So a sleep
//! on a bell ends after [`SLICE`], and a listener whose permit went
//! elsewhere looks again then. While no ring comes, the slice doubles, up
//! to [`IDLE_SLICE`]: a thousand futures awaiting quiet objects would
//! otherwise wake fifty thousand times a second.
#![allow(unsafe_code)]

use crate::park::SLICE;

/// The longest sleep on a bell: the slice of a listener that slice after
/// slice found no ring.
pub const IDLE_SLICE: Duration = Duration::from_millis(640);
use crate::shm::{Parking, BELL};
use crate::sys;
use multiproc_core::sync::AtomicU32;
use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Threading::{
    CreateEventW, RegisterWaitForSingleObject, ResetEvent, SetEvent, UnregisterWaitEx,
    WaitForSingleObject, WT_EXECUTEONLYONCE,
};

/// Rings the bell of the segment `word` lies in, if async waiters listen.
pub(crate) fn ring(word: &AtomicU32) {
    crate::park::release(word, |_| BELL);
}

/// A segment's bell: see the module docs.
#[derive(Clone, Debug)]
pub struct Bell(Arc<Parking>);

impl Bell {
    /// The bell of the segment mapped at `addr`, if one is.
    pub fn of(addr: *const u8) -> Option<Bell> {
        Parking::find(addr as usize).map(|(parking, _)| Bell(parking))
    }

    /// Counts a listener in (a full fence after it, so that a waker's
    /// look at the count and the listener's next look at its object make
    /// a Dekker pair); it is counted out when dropped. `Err` if the system
    /// refused the bell's semaphore.
    pub fn listen(&self) -> io::Result<Listening> {
        let sem = self.0.semaphore(BELL).ok_or_else(|| io::Error::other("no bell semaphore"))?;
        self.0.bucket(BELL).waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let slice = Mutex::new(SLICE);
        Ok(Listening { parking: self.0.clone(), sem: sem as usize, alarm: Alarm::new(), slice })
    }
}

/// A listener counted in on a bell.
#[derive(Debug)]
pub struct Listening {
    parking: Arc<Parking>,
    /// The bell's semaphore, which `parking` owns (open while it lives).
    sem: usize,
    alarm: Alarm,
    /// How long the next sleep may last (see the module docs).
    slice: Mutex<Duration>,
}

impl Listening {
    /// Ready once a permit was taken (a ring, or a permit another
    /// listener left) or the slice passed since the sleep began; begins
    /// one if none is under way.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slice = self.slice.lock().unwrap_or_else(|e| e.into_inner());
        let ready = self.alarm.poll(cx, self.sem as HANDLE, Some(*slice));
        if let Poll::Ready(Ok(signaled)) = ready {
            *slice = if signaled { SLICE } else { (*slice * 2).min(IDLE_SLICE) };
        }
        ready.map_ok(drop)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.alarm.disarm();
        self.parking.bucket(BELL).waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a thread-pool wait tells its alarm.
#[derive(Debug, Default)]
struct Shared {
    fired: AtomicBool,
    /// Whether the wait that fired ended by its timeout.
    timed_out: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// A one-shot wait on the system's thread pool for a handle to be
/// signaled (or a timeout), which wakes the task that polled it.
#[derive(Debug)]
struct Alarm {
    shared: Arc<Shared>,
    /// The registered wait, null while none is.
    wait: Mutex<usize>,
}

unsafe extern "system" fn fired(context: *mut c_void, timed_out: bool) {
    // SAFETY: `context` is the `Shared` of an alarm whose wait this is;
    // the alarm unregisters the wait, waiting for this callback to end,
    // before the Arc it holds can go.
    let shared = unsafe { &*(context as *const Shared) };
    shared.timed_out.store(timed_out, Ordering::Relaxed);
    shared.fired.store(true, Ordering::Release);
    let waker = shared.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Alarm {
    fn new() -> Alarm {
        Alarm { shared: Arc::default(), wait: Mutex::new(0) }
    }

    /// Ready once `handle` was signaled (`true`: a wait on it satisfied;
    /// for a semaphore, a permit taken) or `timeout` passed (`false`) since
    /// the wait began; begins one if none is under way. `handle` stays open
    /// while a wait is under way (until this returns ready or is dropped).
    fn poll(
        &self,
        cx: &mut Context<'_>,
        handle: HANDLE,
        timeout: Option<Duration>,
    ) -> Poll<io::Result<bool>> {
        let mut wait = self.wait.lock().unwrap_or_else(|e| e.into_inner());
        *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if *wait != 0 {
            if !self.shared.fired.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            unregister(*wait);
            *wait = 0;
            self.shared.fired.store(false, Ordering::Relaxed);
            return Poll::Ready(Ok(!self.shared.timed_out.load(Ordering::Relaxed)));
        }
        let mut registered: HANDLE = std::ptr::null_mut();
        // SAFETY: `handle` is open (the caller's contract); the context is
        // this alarm's `Shared`, which outlives the wait (see `fired`).
        let ok = unsafe {
            RegisterWaitForSingleObject(
                &mut registered,
                handle,
                Some(fired),
                Arc::as_ptr(&self.shared).cast(),
                sys::millis(timeout),
                // Not WT_EXECUTEINWAITTHREAD, though the callback is short:
                // Wine 8's wait queue fails an assertion with it (seen
                // here, threadpool.c:1268), ending the process.
                WT_EXECUTEONLYONCE,
            )
        };
        if ok == 0 {
            return Poll::Ready(Err(io::Error::last_os_error()));
        }
        *wait = registered as usize;
        Poll::Pending
    }

    /// Ends the wait under way, if any (its callback done when this
    /// returns).
    fn disarm(&self) {
        let mut wait = self.wait.lock().unwrap_or_else(|e| e.into_inner());
        if *wait != 0 {
            unregister(*wait);
            *wait = 0;
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// Unregisters a thread-pool wait, waiting for its callback if it runs.
fn unregister(wait: usize) {
    // SAFETY: a wait this module registered and has not unregistered;
    // INVALID_HANDLE_VALUE makes the call wait for a running callback.
    unsafe { UnregisterWaitEx(wait as HANDLE, INVALID_HANDLE_VALUE) };
}

/// An event nobody sets: what a timer-only alarm waits on.
fn never() -> HANDLE {
    static NEVER: OnceLock<Option<OwnedHandle>> = OnceLock::new();
    let event = NEVER.get_or_init(|| {
        // SAFETY: an unnamed manual-reset event, not signaled.
        sys::owned(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) }).ok()
    });
    event.as_ref().map_or(INVALID_HANDLE_VALUE, |e| e.as_raw_handle() as HANDLE)
}

/// A handle watched for being signaled (a process's, which stays so once
/// it ended): a duplicate, so it stays open while watched.
#[derive(Debug)]
pub struct Signaled {
    handle: OwnedHandle,
    alarm: Alarm,
}

impl Signaled {
    pub fn new(handle: BorrowedHandle<'_>) -> io::Result<Signaled> {
        Ok(Signaled { handle: handle.try_clone_to_owned()?, alarm: Alarm::new() })
    }

    /// Ready once the handle is signaled.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.alarm.poll(cx, self.handle.as_raw_handle() as HANDLE, None).map_ok(drop)
    }
}

/// A private timer: ready once per `interval` (from the poll that began
/// the period).
#[derive(Debug)]
pub struct Timer {
    /// The next period, and the longest.
    interval: Mutex<Duration>,
    longest: Duration,
    alarm: Alarm,
}

impl Timer {
    pub fn every(interval: Duration) -> io::Result<Timer> {
        Timer::backing_off(interval, interval)
    }

    /// A timer whose period doubles at each firing, from `first` up to
    /// `longest`: what paces looks that usually find nothing (a
    /// peer's death, a lock holder's), so that a thousand idle waits do
    /// not fire a hundred thousand times a second.
    pub fn backing_off(first: Duration, longest: Duration) -> io::Result<Timer> {
        if never() == INVALID_HANDLE_VALUE {
            return Err(io::Error::other("no event for a timer"));
        }
        Ok(Timer { interval: Mutex::new(first), longest, alarm: Alarm::new() })
    }

    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut interval = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        let ready = self.alarm.poll(cx, never(), Some(*interval));
        if ready.is_ready() {
            *interval = (*interval * 2).min(self.longest);
        }
        ready.map_ok(drop)
    }
}

/// Sources gathered into one event, which an event loop of its own waits
/// on (`WaitForMultipleObjects` among its handles): signaled once any
/// source fired since the last [`clear`](Self::clear). A source is a bell
/// (listened on while this lives), a handle that becomes signaled, or a
/// period (what no handle tells of is looked at that often). Each sleeps
/// on the thread pool as an async wait does; their wakes set the event.
#[derive(Debug)]
pub struct Gather {
    event: Arc<EventWaker>,
    sources: Vec<Source>,
}

#[derive(Debug)]
enum Source {
    Bell(Listening),
    Handle(Signaled),
    Every(Timer),
}

/// A waker that sets a manual-reset event.
#[derive(Debug)]
struct EventWaker(OwnedHandle);

impl std::task::Wake for EventWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        // SAFETY: an event this waker owns.
        unsafe { SetEvent(self.0.as_raw_handle() as HANDLE) };
    }
}

impl Gather {
    pub fn new() -> io::Result<Gather> {
        // SAFETY: an unnamed manual-reset event, not signaled.
        let event = sys::owned(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) })?;
        Ok(Gather { event: Arc::new(EventWaker(event)), sources: Vec::new() })
    }

    /// Listens on `bell` (counted in while this lives).
    pub fn add_bell(&mut self, bell: &Bell) -> io::Result<()> {
        self.add(Source::Bell(bell.listen()?))
    }

    /// Watches `handle` for being signaled.
    pub fn add_handle(&mut self, handle: BorrowedHandle<'_>) -> io::Result<()> {
        self.add(Source::Handle(Signaled::new(handle)?))
    }

    /// Fires every `period`.
    pub fn add_every(&mut self, period: Duration) -> io::Result<()> {
        self.add(Source::Every(Timer::every(period)?))
    }

    fn add(&mut self, source: Source) -> io::Result<()> {
        let waker = Waker::from(self.event.clone());
        source.poll(&mut Context::from_waker(&waker)).map(|_| self.sources.push(source))
    }

    /// Unsignals the event, then arms every source whose sleep ended (a
    /// source that fired since sets it again, so nothing is missed).
    pub fn clear(&self) -> io::Result<()> {
        // SAFETY: the event this gather owns.
        unsafe { ResetEvent(self.event.0.as_raw_handle() as HANDLE) };
        let waker = Waker::from(self.event.clone());
        let mut cx = Context::from_waker(&waker);
        for source in &self.sources {
            // A sleep that ended (before the reset: the caller is clearing
            // what it woke for; after it: it set the event again) is
            // taken, and the next poll begins one.
            if source.poll(&mut cx)? {
                source.poll(&mut cx)?;
            }
        }
        Ok(())
    }

    /// Sleeps until a source fired (`true`) or `timeout` passed (`None`:
    /// no limit), then [`clear`](Self::clear)s.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        // SAFETY: the event this gather owns.
        let woke = unsafe {
            WaitForSingleObject(self.event.0.as_raw_handle() as HANDLE, sys::millis(timeout))
        } == WAIT_OBJECT_0;
        self.clear()?;
        Ok(woke)
    }
}

/// The event: signaled while a source's firing has not been cleared.
impl AsHandle for Gather {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.event.0.as_handle()
    }
}

impl Source {
    /// Whether its sleep ended (else one is under way now).
    fn poll(&self, cx: &mut Context<'_>) -> io::Result<bool> {
        let ready = match self {
            Source::Bell(listening) => listening.poll(cx),
            Source::Handle(signaled) => signaled.poll(cx),
            Source::Every(timer) => timer.poll(cx),
        };
        match ready {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Segment;
    use std::task::Wake;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn until_ready(poll: impl Fn(&mut Context<'_>) -> Poll<io::Result<()>>) -> Duration {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let start = std::time::Instant::now();
        loop {
            if let Poll::Ready(r) = poll(&mut cx) {
                r.unwrap();
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never ready");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_ring_wakes_a_listener_and_a_quiet_bell_times_out() {
        let segment = Segment::create(4096).unwrap();
        // SAFETY: a word at the start of a live, zeroed mapping.
        let word = unsafe { &*segment.as_ptr().cast::<AtomicU32>() };
        let bell = Bell::of(segment.as_ptr()).unwrap();
        // Nobody listens: a ring releases nothing.
        ring(word);
        let listening = bell.listen().unwrap();
        let quiet = until_ready(|cx| listening.poll(cx));
        assert!(quiet >= SLICE / 2, "woke after {quiet:?} with no ring");
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(listening.poll(&mut cx).is_pending());
        ring(word);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "the ring woke nothing");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(listening.poll(&mut cx).is_ready());
        drop(listening);
        assert_eq!(
            Parking::find(word as *const _ as usize)
                .unwrap()
                .0
                .bucket(BELL)
                .waiters
                .load(Ordering::SeqCst),
            0
        );
    }

    #[test]
    fn a_gather_is_signaled_by_a_ring_and_quiet_after_a_clear() {
        let segment = Segment::create(4096).unwrap();
        // SAFETY: a word at the start of a live, zeroed mapping.
        let word = unsafe { &*segment.as_ptr().cast::<AtomicU32>() };
        let mut gather = Gather::new().unwrap();
        gather.add_bell(&Bell::of(segment.as_ptr()).unwrap()).unwrap();
        let event = gather.as_handle().as_raw_handle() as HANDLE;
        // SAFETY: the gather's event, open while it lives.
        let signaled = |ms| unsafe { WaitForSingleObject(event, ms) } == WAIT_OBJECT_0;
        assert!(!signaled(0));
        ring(word);
        assert!(signaled(10_000), "the ring never signaled the event");
        gather.clear().unwrap();
        assert!(!signaled(0));
        assert!(gather.wait(Some(Duration::from_secs(10))).unwrap(), "the bell's slice ends");
        // A handle already signaled reports at once, and again after a clear.
        let mut gather = Gather::new().unwrap();
        // SAFETY: an unnamed manual-reset event, signaled.
        let set =
            sys::owned(unsafe { CreateEventW(std::ptr::null(), 1, 1, std::ptr::null()) }).unwrap();
        gather.add_handle(set.as_handle()).unwrap();
        assert!(gather.wait(Some(Duration::from_secs(10))).unwrap());
        assert!(gather.wait(Some(Duration::from_secs(10))).unwrap());
    }

    #[test]
    fn a_timer_fires_each_period() {
        let timer = Timer::every(Duration::from_millis(5)).unwrap();
        for _ in 0..3 {
            until_ready(|cx| timer.poll(cx));
        }
    }
}
