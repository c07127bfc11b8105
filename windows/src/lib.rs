//! # multiproc-windows
//!
//! The Windows backend of `multiproc`: the same item names as
//! `multiproc-posix`, so the facade's platform layer (`src/os/`) is written
//! once against them.
//!
//! - [`shm`]: segments as unnamed pagefile-backed sections, passed by
//!   handle; each carries, in a trailing page, the waiter counts its
//!   parking needs.
//! - [`park`]: [`Os`], the `core` [`Park`](multiproc_core::Park): Windows
//!   has no wait-on-address across processes (`WaitOnAddress` wakes only
//!   threads of one process), so a segment's slow path sleeps on named
//!   kernel semaphores chosen by the word's offset, counted in the mapping.
//! - [`bell`]: readiness for async waiters: a segment's bell (one more
//!   parking bucket, rung for async waiters), and waits on the system's
//!   thread pool that wake a task.
//! - [`ident`]: this task's ids, stamped with creation times, and whether a
//!   recorded owner still runs.
//! - [`child`]: CreateProcessW of this executable with an explicit handle
//!   list, the bootstrap in a read-only section, waiting, terminating.
//! - [`image`]: the read-only sections of this program's PE image.
//! - [`limits`]: what a failed call ran out of (there is no handle limit to
//!   raise).
//! - [`link`]: the named pipe beside every channel (handle transfer into a
//!   running process, a dead peer's hang-up).
//! - [`net`]: TCP sockets and named pipes for `connection`, non-blocking,
//!   with readiness; [`pipe`]: the named pipes' ends, Python's message
//!   pipes behind the socket framing.
//!
//! Everything here was run under Wine 8 (the crate's CI); no real Windows
//! machine has run it.
#![cfg(windows)]
#![deny(unsafe_code)]

pub mod bell;
pub mod child;
pub mod ident;
pub mod image;
pub mod limits;
pub mod link;
pub mod net;
pub mod park;
pub mod pipe;
pub mod shm;
mod sys;

pub use park::Os;
