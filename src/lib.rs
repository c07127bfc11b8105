#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(mp_async)]
mod aio;
#[cfg(mp_async)]
pub use aio::Readiness;
mod arena;
#[cfg(mp_transfer)]
mod channel;
#[cfg(mp_transfer)]
pub mod connection;
mod error;
mod handles;
#[cfg(mp_transfer)]
pub mod manager;
mod object;
mod os;
#[cfg(mp_transfer)]
mod pipe;
#[cfg(mp_transfer)]
mod pool;
mod process;
#[cfg(mp_transfer)]
mod queue;
pub mod sync;
mod time;
mod value;

#[cfg(mp_transfer)]
#[doc(hidden)]
pub use channel::decode_untrusted as __decode_untrusted;
#[cfg(mp_transfer)]
pub use channel::MAX_MESSAGE;
#[cfg(mp_transfer)]
pub use connection::Connection;
pub use error::{Error, ErrorKind, Result};
#[cfg(mp_transfer)]
pub use manager::{Manager, ManagerServer};
#[cfg(mp_transfer)]
pub use pipe::{Pipe, DEFAULT_PIPE_CAPACITY};
#[cfg(mp_transfer)]
pub use pool::{AsyncResult, Chunked, Imap, ImapUnordered, Pool, PoolBuilder, Task};
/// Hooks for the crate's own tests (forging bootstraps, stopping a sender
/// at a chosen point): not part of the API.
#[cfg(mp_spawn)]
#[doc(hidden)]
pub mod __testing {
    pub use crate::arena::arenas_mapped;
    #[cfg(mp_transfer)]
    pub use crate::channel::testing::stall_after_handles;
    pub use crate::handles::handles_sent;
    #[cfg(mp_transfer)]
    pub use crate::manager::fuzzing::{examples as manager_requests, serve as serve_manager};
    #[cfg(mp_transfer)]
    pub use crate::pool::testing::pool_task_entry;
    pub use crate::process::testing::*;

    /// How many async waiters `event` has registered now.
    #[cfg(mp_async)]
    pub fn async_waiters(event: &crate::Event) -> u32 {
        event.async_waiters()
    }
}
#[cfg(mp_spawn)]
pub use process::BOOTSTRAP_FAILED;
pub use process::{
    cpu_count, current_process, get_start_method, init, parent_process, set_children_at_exit,
    set_start_method, ChildrenAtExit, CurrentProcess, Exit, ParentProcess, Process, StartMethod,
    Target,
};
#[cfg(mp_transfer)]
pub use queue::{ByteQueue, JoinableQueue, Queue, SimpleQueue, DEFAULT_QUEUE_CAPACITY};
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
pub use value::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};
