//! # multiproc-posix
//!
//! The Linux backend of `multiproc`: what `core` needs from the OS and what
//! the facade needs to start processes and move handles.
//!
//! - [`futex`]: [`Os`], the `core` [`Park`](multiproc_core::Park) (shared
//!   futexes) and [`Liveness`](multiproc_core::Liveness) (`/proc` start times).
//! - [`shm`]: anonymous, sealed memfd segments: nothing named in /dev/shm, so
//!   a kill -9 leaks nothing.
//! - [`ident`]: this task's ids and start-time stamps, cached across calls and
//!   refreshed in a forked child.
//! - [`image`]: the readable segments of this program's own image.
//! - [`child`]: children by pidfd: wait with a timeout, signal without racing
//!   pid reuse, fork, re-exec of this very executable.
//!
//! macOS and the BSDs have a seam here (this crate is empty there), not a
//! promise.
#![cfg(target_os = "linux")]
#![deny(unsafe_code)]

pub mod child;
pub mod futex;
pub mod ident;
pub mod image;
pub mod shm;
pub mod sock;

pub use futex::Os;
