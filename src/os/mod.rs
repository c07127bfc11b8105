//! The platform layer: everything the facade needs from the operating
//! system, under names that are the same on every platform. No other module
//! of the facade names an OS crate (`libc`, `rustix`, `windows-sys`, a
//! backend crate) or a descriptor type (`.ci/run` greps for it); a port
//! touches this directory and its backend crate.
//!
//! What it provides:
//! - shared memory: [`Segment`] (create, map, check, transfer) and its
//!   [`OpenError`]; parking and liveness for `core`: [`Os`];
//! - handles: [`RawHandle`], [`OwnedHandle`], [`BorrowedHandle`] and
//!   [`AsHandle`], what the transfer table (`handles.rs`) is written
//!   against;
//! - [`transfer`]: the link beside every channel that moves handles to a
//!   running process and tells when every peer is gone;
//! - [`net`]: stream sockets for `connection` (local and TCP), readiness;
//! - [`launch`]: starting, waiting for and signalling children, the
//!   executable's identity, the spawned child's side of the bootstrap;
//! - [`ident`]: this process's and thread's ids, liveness stamps;
//! - [`image`]: this program's read-only image (for code references);
//! - [`random`];
//! - `ready` (the `tokio` feature): what async waits sleep on (`Ready`,
//!   `Watch`, `Ticker`): bells that travel as handles and tokio's reactor
//!   on the Unixes (with `Edges` and `Rung`), segment bells and thread-pool
//!   waits on Windows.
//!
//! The cfgs the facade's modules are gated on (`mp_transfer`, `mp_fork`,
//! `mp_async`, `mp_bell_handles`) come from `build.rs`, which sets them from
//! what the target's backend provides.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

#[cfg(not(any(unix, windows)))]
compile_error!("multiproc supports Unix (Linux, macOS, FreeBSD) and Windows");

/// The environment variable that, set (to anything), keeps the soft limit
/// on open file descriptors where it was.
pub(crate) const KEEP_NOFILE_ENV: &str = "MULTIPROC_KEEP_NOFILE";

/// Raises the soft limit on open file descriptors to the hard limit, once
/// per process, the first time this crate makes a shared object, a
/// channel or a process (as Go's runtime does at start since 1.19), unless
/// [`KEEP_NOFILE_ENV`] is set. Programs this process runs by other means
/// (`std::process::Command`) inherit the raised limit; one that still uses
/// `select(2)` on descriptors above 1023 wants the variable set.
pub(crate) fn raise_open_files() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(KEEP_NOFILE_ENV).is_none() {
            limits::raise_open_files();
        }
    });
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random<const N: usize>() -> crate::Result<[u8; N]> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| crate::Error::io("reading the OS's random source", e.into()))?;
    Ok(bytes)
}
