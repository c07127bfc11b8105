//! The Windows side of the platform layer: `multiproc-windows` under the
//! layer's names. Only what the backend provides so far is here (shared
//! objects and processes are not written yet); the facade's modules that
//! need the rest are gated off by `build.rs`.

pub(crate) use multiproc_windows::shm::Segment;
pub(crate) use multiproc_windows::{ident, image, Os};

pub(crate) mod launch {
    //! Child processes (CreateProcessW is the plan).
    pub(crate) use multiproc_windows::child::Child;
}
