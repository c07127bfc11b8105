//! Python's Listener/Client example (docs: "Listeners and Clients"), with
//! this program as the listener and Python's own
//! `multiprocessing.connection.Client` as the client, which receives
//! pickles (`recv`) and bytes (`recv_bytes`, `recv_bytes_into`).
//!
//! ```python
//! with Listener(address, authkey=b'secret password') as listener:
//!     with listener.accept() as conn:
//!         print('connection accepted from', listener.last_accepted)
//!         conn.send([2.25, None, 'junk', float])
//!         conn.send_bytes(b'hello')
//!         conn.send_bytes(array('i', [42, 1729]))
//! ```
//!
//! A Rust program cannot send Python's `float` type object; the rest is the
//! same. Needs `python3` on the PATH (skipped otherwise).
use multiproc::connection::{Listener, PickleValue};
use std::process::{Command, Stdio};

const CLIENT: &str = r#"
import sys
from array import array
from multiprocessing.connection import Client
host, port = sys.argv[1].rsplit(":", 1)
with Client((host, int(port)), authkey=b"secret password, 16+") as conn:
    print("python:", conn.recv())
    print("python:", conn.recv_bytes())
    arr = array("i", [0, 0, 0, 0, 0])
    print("python:", conn.recv_bytes_into(arr))
    print("python:", arr)
    conn.send({"from": "python", "ok": True})
"#;

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let listener = Listener::bind("127.0.0.1:0", b"secret password, 16+")?;
    let python = Command::new("python3")
        .args(["-u", "-c", CLIENT, &listener.address().to_string()])
        .stdout(Stdio::inherit())
        .spawn();
    let Ok(mut python) = python else {
        println!("python3 not found: skipped");
        return Ok(());
    };
    let conn = listener.accept()?;
    println!("connection accepted");
    use PickleValue as V;
    conn.send_pickle_value(&V::List(vec![V::F64(2.25), V::None, V::String("junk".into())]))?;
    conn.send_bytes(b"hello")?;
    let ints: Vec<u8> = [42i32, 1729].iter().flat_map(|i| i.to_ne_bytes()).collect();
    conn.send_bytes(&ints)?;
    println!("python sent: {:?}", conn.recv_pickle_value()?);
    let status = python
        .wait()
        .map_err(|e| multiproc::Error::new(multiproc::ErrorKind::Io, e.to_string()))?;
    println!("python exited: {}", status.code().unwrap_or(-1));
    Ok(())
}
