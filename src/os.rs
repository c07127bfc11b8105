//! The one switch point between backends: every other module names `os::`.

#[cfg(target_os = "linux")]
pub(crate) use multiproc_posix::{ident, image, shm::Segment, Os};

#[cfg(windows)]
pub(crate) use multiproc_windows::{ident, image, shm::Segment, Os};

#[cfg(not(any(target_os = "linux", windows)))]
compile_error!("multiproc supports Linux, and Windows through multiproc-windows");
