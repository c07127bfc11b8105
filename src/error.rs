//! One error type for the facade: an opaque [`Error`] with a [`ErrorKind`]
//! to branch on, a message, and the underlying cause where there is one.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, for callers to branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A deadline passed, or a `try_` form found the object unavailable.
    Timeout,
    /// A bounded channel is full.
    Full,
    /// A channel is empty.
    Empty,
    /// Every peer of a channel is gone.
    Disconnected,
    /// A lock's previous owner died holding it; the lock is now the caller's.
    OwnerDied,
    /// A pool worker died while it held the task.
    WorkerDied,
    /// A task panicked in its worker.
    TaskPanicked,
    /// A shared segment or message failed validation.
    Corrupt,
    /// A message or object is larger than allowed.
    TooLarge,
    /// Authentication failed.
    Auth,
    /// An operating-system call failed.
    Io,
    /// Serializing or deserializing a value failed.
    Codec,
    /// A Barrier was aborted, reset, or broken by a timed-out waiter.
    BrokenBarrier,
    /// An argument is out of range, or the call is not valid in this state.
    InvalidArgument,
    /// An RLock or Condition used by a thread that does not own it.
    NotOwner,
    /// A count would pass its limit (RLock depth, BoundedSemaphore bound).
    Overflow,
    /// Not available on this platform or with this start method.
    Unsupported,
    /// An operating-system resource ran out: open file descriptors, memory
    /// or memory mappings, shared-memory space, processes. The message
    /// names the resource and its limit.
    Exhausted,
}

/// What a caught panic said, as text.
#[cfg_attr(not(mp_transfer), allow(dead_code))]
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// The facade's error.
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of outcome it is: what callers branch on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the kind is [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// Whether the kind is [`ErrorKind::OwnerDied`] (the lock is held).
    pub fn is_owner_died(&self) -> bool {
        self.kind == ErrorKind::OwnerDied
    }

    /// Whether the kind is [`ErrorKind::Corrupt`].
    pub fn is_corrupt(&self) -> bool {
        self.kind == ErrorKind::Corrupt
    }

    /// Whether the kind is [`ErrorKind::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        self.kind == ErrorKind::Disconnected
    }

    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// An OS call's failure in `context`: [`ErrorKind::Exhausted`], naming
    /// the resource and its limit, when the OS ran out of one; else
    /// [`ErrorKind::Io`].
    pub(crate) fn io(context: &'static str, err: std::io::Error) -> Error {
        match crate::os::limits::exhausted(&err) {
            Some(what) => Error::new(ErrorKind::Exhausted, format!("{context}: out of {what}"))
                .with_source(err),
            None => Error::new(ErrorKind::Io, context).with_source(err),
        }
    }

    #[cfg_attr(not(mp_transfer), allow(dead_code))]
    pub(crate) fn codec(
        context: &'static str,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::new(ErrorKind::Codec, context).with_source(err)
    }

    pub(crate) fn timeout() -> Error {
        Error::new(ErrorKind::Timeout, "timed out")
    }
}

impl From<multiproc_core::Error> for Error {
    fn from(e: multiproc_core::Error) -> Error {
        use multiproc_core::Error as E;
        let kind = match e {
            E::Timeout => ErrorKind::Timeout,
            E::NotOwner => ErrorKind::NotOwner,
            E::NotLocked => ErrorKind::InvalidArgument,
            E::Overflow | E::AboveBound => ErrorKind::Overflow,
            E::Broken => ErrorKind::BrokenBarrier,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<multiproc_core::header::Corrupt> for Error {
    fn from(e: multiproc_core::header::Corrupt) -> Error {
        Error::new(ErrorKind::Corrupt, format!("corrupt segment: {e}"))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        std::io::Error::other(e)
    }
}
