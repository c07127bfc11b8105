#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

mod error;
mod handles;
mod object;
mod os;
#[cfg(unix)]
mod pipe;
mod process;
pub mod sync;
mod value;

pub use error::{Error, ErrorKind, Result};
#[cfg(unix)]
pub use pipe::{Connection, Pipe, DEFAULT_CAPACITY, MAX_MESSAGE};
#[cfg(unix)]
#[doc(hidden)]
pub use process::bootstrap_for_tests as __bootstrap_for_tests;
#[cfg(unix)]
pub use process::BOOTSTRAP_FAILED;
pub use process::{
    cpu_count, current_process, get_start_method, init, parent_process, set_start_method,
    CurrentProcess, Exit, ParentProcess, Process, StartMethod, Target,
};
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
pub use value::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};
