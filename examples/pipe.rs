//! Python's Pipe example (docs: "Exchanging objects between processes"),
//! with the parent closing its copy of the child's end, so that it sees
//! the child go.
//!
//! ```python
//! def f(conn):
//!     conn.send([42, None, 'hello'])
//!     conn.close()
//!
//! if __name__ == '__main__':
//!     parent_conn, child_conn = Pipe()
//!     p = Process(target=f, args=(child_conn,))
//!     p.start()
//!     child_conn.close()
//!     print(parent_conn.recv())   # prints "[42, None, 'hello']"
//!     p.join()
//! ```
use multiproc::{Connection, Pipe, Process};

fn f(conn: Connection) {
    conn.send(&(42, None::<i32>, "hello")).unwrap();
    conn.close().unwrap();
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let (parent_conn, child_conn) = Pipe::new()?;
    let p = Process::new(f, (child_conn.try_clone()?,));
    p.start()?;
    child_conn.close()?;
    let (n, none, text): (i32, Option<i32>, String) = parent_conn.recv()?;
    let none = none.map_or("None".to_string(), |v| v.to_string());
    println!("[{n}, {none}, '{text}']");
    p.join()?;
    match parent_conn.recv_bytes() {
        Err(e) if e.is_disconnected() => println!("the child's end is closed"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
