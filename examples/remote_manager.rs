//! Python's remote manager example (docs: "Using a remote manager"): a
//! server process holds a queue on a TCP address with an authkey; one
//! client puts into it, another gets from it.
//!
//! ```python
//! # server
//! queue = queue.Queue()
//! class QueueManager(BaseManager): pass
//! QueueManager.register('get_queue', callable=lambda:queue)
//! m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//! s = m.get_server()
//! s.serve_forever()
//!
//! # a client
//! m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
//! m.connect()
//! queue = m.get_queue()
//! queue.put('hello')
//!
//! # another client
//! queue = m.get_queue()
//! queue.get()   # 'hello'
//! ```
use multiproc::connection::Address;
use multiproc::manager::QueueProxy;
use multiproc::{Connection, Manager, ManagerServer, Pipe, Process};

const AUTHKEY: &[u8] = b"abracadabra, sixteen bytes or more";

fn server(address_out: Connection) -> multiproc::Result<()> {
    let server = ManagerServer::bind("127.0.0.1:0", AUTHKEY)?;
    address_out.send(server.address())?;
    server.serve_forever();
    Ok(())
}

fn a_client(address: Address) -> multiproc::Result<()> {
    let m = Manager::connect(address, AUTHKEY)?;
    let queue = m.named::<QueueProxy<String>>("queue")?;
    queue.put(&"hello".to_string())
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let (rx, tx) = Pipe::new()?;
    let s = Process::new(server, (tx,)).daemon(true);
    s.start()?;
    let address: Address = rx.recv()?;
    println!("server listening on TCP: {}", address.is_tcp());
    let client = Process::new(a_client, (address.clone(),));
    client.start()?;
    println!("a client put: exit code {}", client.join()?);
    let m = Manager::connect(address, AUTHKEY)?;
    let queue = m.named::<QueueProxy<String>>("queue")?;
    println!("another client got: {:?}", queue.get()?);
    match Manager::connect(m.address().clone(), b"not the key, sixteen bytes") {
        Err(e) => println!("a client with the wrong key: {:?}", e.kind()),
        Ok(_) => println!("a client with the wrong key was let in"),
    }
    Ok(())
}
