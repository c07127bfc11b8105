//! [`Pipe`]: Python's `multiprocessing.Pipe`, a pair of [`Connection`]s
//! over SPSC rings in shared memory (the rings are `connection::ring`).

use crate::connection::{ring, Connection};
use crate::Result;

/// Bytes of ring per direction unless [`Pipe::with_capacity`] says otherwise.
pub const DEFAULT_PIPE_CAPACITY: usize = 1 << 20;

/// Python's `multiprocessing.Pipe`: makes a pair of connected [`Connection`]s.
///
/// ```
/// let (a, b) = multiproc::Pipe::new()?;
/// a.send(&("hello", 42))?;
/// assert_eq!(b.recv::<(String, i32)>()?, ("hello".to_string(), 42));
/// b.send_bytes(b"back")?;
/// assert_eq!(a.recv_bytes()?, b"back");
/// drop(a);
/// assert!(b.recv_bytes().unwrap_err().is_disconnected());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pipe;

impl Pipe {
    /// A duplex pipe: both ends send and receive.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection)> {
        Pipe::with_capacity(DEFAULT_PIPE_CAPACITY, true)
    }

    /// A one-way pipe, as Python's `Pipe(duplex=False)`: the first end
    /// only receives, the second only sends.
    pub fn simplex() -> Result<(Connection, Connection)> {
        Pipe::with_capacity(DEFAULT_PIPE_CAPACITY, false)
    }

    /// A pipe whose rings hold `capacity` bytes each (a power of two, at
    /// least 4096). Messages of any size up to [`MAX_MESSAGE`](crate::MAX_MESSAGE) go through
    /// any capacity, in pieces.
    pub fn with_capacity(capacity: usize, duplex: bool) -> Result<(Connection, Connection)> {
        let (a, b) = ring::pair(capacity, duplex)?;
        Ok((Connection::ring(a), Connection::ring(b)))
    }
}
