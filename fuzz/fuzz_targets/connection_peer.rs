//! A hostile peer on a socket connection: arbitrary bytes as Python-framed
//! messages (with a small limit), as one pickle (`recv_pickle_value`), and
//! as the other side of the authkey handshake in both roles. Each ends in
//! a typed error, never a panic, a hang or an allocation from an unchecked
//! length.
#![no_main]
use multiproc::connection::__handshake;
use multiproc::{Connection, ErrorKind};
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A socket whose peer already wrote `data` and closed its writing side
/// (the peer is returned, to keep its reading side open while ours sends).
fn fed(data: &[u8]) -> (UnixStream, UnixStream) {
    let (mut peer, ours) = UnixStream::pair().unwrap();
    peer.write_all(data).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    (peer, ours)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Socket buffers hold this much without a reader.
    let data = &data[..data.len().min(32 << 10)];

    let (_peer, ours) = fed(data);
    let conn = Connection::from_unix_stream(ours);
    conn.set_max_message(4096).unwrap();
    loop {
        match conn.recv_bytes_timeout(Duration::from_secs(5)) {
            Ok(m) => assert!(m.len() <= 4096),
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::Disconnected | ErrorKind::Corrupt | ErrorKind::TooLarge
                    ),
                    "{e:?}"
                );
                break;
            }
        }
    }

    // The same bytes as one pickle: a value, or a Codec error.
    let mut framed = (data.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(data);
    let (_peer, ours) = fed(&framed);
    let conn = Connection::from_unix_stream(ours);
    if let Err(e) = conn.recv_pickle_value() {
        assert_eq!(e.kind(), ErrorKind::Codec, "{e:?}");
    }

    for listening in [false, true] {
        let (_peer, ours) = fed(data);
        let result = __handshake(ours, b"key", listening, Duration::from_secs(5));
        let e = result.expect_err("a handshake passed with bytes chosen before our challenge");
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Auth
                    | ErrorKind::Disconnected
                    | ErrorKind::Corrupt
                    | ErrorKind::TooLarge
            ),
            "{e:?}"
        );
    }
});
