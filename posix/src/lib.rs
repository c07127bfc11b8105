//! # multiproc-posix
//!
//! The Unix backend of `multiproc` (Linux, macOS, FreeBSD): what `core`
//! needs from the OS and what the facade needs to start processes and move
//! handles. Every module has the same items on every Unix; what differs
//! lives behind them.
//!
//! - [`park`]: [`Os`], the `core` [`Park`](multiproc_core::Park) (futex,
//!   `__ulock`, `_umtx_op`, all in their shared forms) and
//!   [`Liveness`](multiproc_core::Liveness) (start times).
//! - [`shm`]: segments that no name keeps alive, so a kill -9 leaks
//!   nothing: sealed memfds (Linux, FreeBSD), unlinked shm objects (macOS).
//! - [`ident`]: this task's ids and start-time stamps, cached across calls
//!   and refreshed in a forked child.
//! - [`image`]: the read-only segments of this program's own image (ELF or
//!   Mach-O).
//! - [`child`]: children waited for with a timeout (pidfd, kqueue, or
//!   `waitid` polling), signalled without racing pid reuse, fork, re-exec
//!   of this very executable, the bootstrap file.
//! - [`sock`]: the socket beside every channel (handle transfer, hang-up),
//!   stream sockets and readiness.
//! - [`limits`]: the open-file limit raised at start, and what a failed call
//!   ran out of.
//! - `bell` (Linux, macOS, FreeBSD): an object's readiness handle for
//!   async waiters (an eventfd, or a pipe), a periodic timer that paces
//!   their checks, and handles watched as one (epoll, or kqueue).
//! - [`sys`]: the process table, thread ids, gained privileges: per system.
//!
//! The portable path: `--cfg multiproc_portable` makes a Linux build take
//! what macOS and FreeBSD share with it instead of the Linux-only calls
//! (unlinked shm objects, not memfds; `kill(0)` before the start-time check;
//! `waitid` polling, not pidfds; full fences, not `membarrier`; pipes for
//! bells, not eventfds), so the whole test suite runs those paths on Linux. Only the wait-on-address
//! call, the image format and the process-table queries differ per system,
//! and those only compile here.
#![cfg(unix)]
#![deny(unsafe_code)]

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd"
))]
pub mod bell;
pub mod child;
pub mod ident;
pub mod image;
pub mod limits;
pub mod park;
pub mod shm;
pub mod sock;
pub mod sys;

pub use park::Os;
