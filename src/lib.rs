#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

#[cfg(unix)]
mod channel;
#[cfg(unix)]
pub mod connection;
mod error;
mod handles;
#[cfg(unix)]
pub mod manager;
mod object;
mod os;
#[cfg(unix)]
mod pipe;
#[cfg(unix)]
mod pool;
mod process;
#[cfg(unix)]
mod queue;
pub mod sync;
mod time;
mod value;

#[cfg(unix)]
#[doc(hidden)]
pub use channel::decode_untrusted as __decode_untrusted;
#[cfg(unix)]
pub use channel::MAX_MESSAGE;
#[cfg(unix)]
pub use connection::Connection;
pub use error::{Error, ErrorKind, Result};
#[cfg(unix)]
pub use manager::{Manager, ManagerServer};
#[cfg(unix)]
pub use pipe::{Pipe, DEFAULT_PIPE_CAPACITY};
#[cfg(unix)]
pub use pool::{AsyncResult, Chunked, Imap, ImapUnordered, Pool, PoolBuilder, Task};
/// Hooks for the crate's own tests (forging bootstraps, stopping a sender
/// at a chosen point): not part of the API.
#[cfg(unix)]
#[doc(hidden)]
pub mod __testing {
    pub use crate::channel::testing::stall_after_handles;
    pub use crate::manager::fuzzing::{examples as manager_requests, serve as serve_manager};
    pub use crate::process::testing::*;
}
#[cfg(unix)]
pub use process::BOOTSTRAP_FAILED;
pub use process::{
    cpu_count, current_process, get_start_method, init, parent_process, set_start_method,
    CurrentProcess, Exit, ParentProcess, Process, StartMethod, Target,
};
#[cfg(unix)]
pub use queue::{JoinableQueue, Queue, SimpleQueue, DEFAULT_QUEUE_CAPACITY};
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
pub use value::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};
