//! [`Listener`] and [`Client`]: Python's `multiprocessing.connection`
//! endpoints, with the authkey handshake.
//!
//! # Handshakes proceed side by side
//! A listener never waits on one peer's handshake while another peer
//! could be served: [`Listener::accept`] accepts every connection that
//! arrives, sends each its challenge at once, and advances all of them as
//! their bytes come (non-blocking reads of a few hundred bytes at most),
//! returning the first to pass. A peer that connects and says nothing costs
//! an entry in that list until its handshake timeout, nothing more. At most
//! [`ListenerBuilder::max_pending`] handshakes are under way; past that,
//! the oldest is dropped to make room, so a flood of silent peers cannot
//! keep a real client out: it would have to open that many connections in
//! the time a real client takes to answer (a few milliseconds).
//!
//! A peer whose answer is wrong (another key, or not the protocol) makes
//! `accept` return `Auth`, as Python's `AuthenticationError`; one that
//! hangs up or times out in its handshake is dropped quietly.

use super::address::bind_unix;
use super::stream::{poll_many, Stream};
use super::{auth, Address, Connection, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE};
use crate::os::net::{self, Interest, LocalListener, LocalStream, Socket, Watch};
use crate::os::OwnedHandle;
use crate::time::Deadline;
use crate::{Error, ErrorKind, Result};
use std::collections::VecDeque;
use std::fmt;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The shortest key a TCP listener takes unless told otherwise: an empty
/// key is no key, and a short one can be guessed.
pub const MIN_AUTHKEY: usize = 16;
/// How many handshakes a listener has under way at most, by default.
pub const DEFAULT_MAX_PENDING: usize = 64;

/// The policy a listener or a client applies to its connections.
#[derive(Clone)]
struct Policy {
    /// `None` (no handshake) also for an empty key.
    authkey: Option<Vec<u8>>,
    max_message: usize,
    handshake_timeout: Duration,
}

impl Policy {
    fn new(authkey: Option<&[u8]>) -> Policy {
        Policy {
            authkey: authkey.filter(|k| !k.is_empty()).map(<[u8]>::to_vec),
            max_message: DEFAULT_MAX_MESSAGE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The connection over `socket`, once the whole handshake (listener
    /// side: challenge first) has passed, blocking until `until` at most.
    fn open(&self, socket: Socket, listening: bool, until: Deadline) -> Result<Connection> {
        let stream = Stream::new(socket, self.max_message);
        if let Some(key) = &self.authkey {
            let deadline = until.min(Deadline::after(self.handshake_timeout));
            if listening {
                auth::deliver(&stream, key, deadline)?;
                auth::answer(&stream, key, deadline)?;
            } else {
                auth::answer(&stream, key, deadline)?;
                auth::deliver(&stream, key, deadline)?;
            }
        }
        Ok(Connection::stream(stream))
    }
}

/// The handshake over an already connected socket, as a client (`listening`
/// false) or a listener: for the fuzz target, which plays a hostile peer.
#[doc(hidden)]
pub fn __handshake(
    socket: LocalStream,
    authkey: &[u8],
    listening: bool,
    timeout: Duration,
) -> Result<Connection> {
    let mut policy = Policy::new(Some(authkey));
    policy.handshake_timeout = timeout;
    policy.open(socket.into(), listening, Deadline::NEVER)
}

/// Where a listener's handshake with one peer stands: what it waits for.
enum Step {
    /// The peer's answer to our challenge (whose payload this is).
    Answer(Vec<u8>),
    /// The peer's own challenge.
    Challenge,
    /// The peer's verdict on our answer.
    Verdict,
}

/// One peer's handshake, under way.
struct Handshake {
    stream: Stream,
    step: Step,
    /// When it is given up (`None`: a handshake timeout past what the
    /// clock holds).
    deadline: Deadline,
}

impl Handshake {
    /// Accepted `socket`: challenged at once.
    fn start(socket: Socket, policy: &Policy) -> Result<Handshake> {
        let stream = Stream::new(socket, policy.max_message);
        let deadline = Deadline::after(policy.handshake_timeout);
        let (message, challenge) = auth::make_challenge()?;
        stream.send(&message, deadline)?;
        Ok(Handshake { stream, step: Step::Answer(challenge), deadline })
    }

    /// Goes as far as the bytes already here allow: `true` once the peer
    /// passed the whole handshake.
    fn advance(&mut self, key: &[u8]) -> Result<bool> {
        loop {
            let message = match auth::recv_message(&self.stream, Deadline::now()) {
                Ok(message) => message,
                Err(e) if e.is_timeout() => return Ok(false),
                Err(e) => return Err(e),
            };
            let deadline = self.deadline;
            self.step = match &self.step {
                Step::Answer(challenge) => {
                    auth::judge(&self.stream, key, challenge, &message, deadline)?;
                    Step::Challenge
                }
                Step::Challenge => {
                    self.stream.send(&auth::respond(key, &message)?, deadline)?;
                    Step::Verdict
                }
                Step::Verdict => {
                    auth::check_verdict(&message)?;
                    return Ok(true);
                }
            };
        }
    }
}

enum ListenSocket {
    Tcp(TcpListener),
    Unix(LocalListener),
}

/// Python's `multiprocessing.connection.Listener`: a bound socket that
/// accepts [`Connection`]s, each after the authkey handshake (made side by
/// side with other peers': see the module's docs).
///
/// A Unix listener removes its socket file when dropped (in the process
/// that bound it).
pub struct Listener {
    socket: ListenSocket,
    address: Address,
    policy: Policy,
    max_pending: usize,
    /// Handshakes under way, taken out by the thread that advances them.
    pending: Mutex<VecDeque<Handshake>>,
    /// The socket file to remove on drop, and the process that may.
    unlink: Option<(PathBuf, u32)>,
}

/// Settings for a [`Listener`]: [`Listener::builder`].
pub struct ListenerBuilder {
    address: Address,
    policy: Policy,
    unauthenticated_tcp: bool,
    max_pending: usize,
}

impl ListenerBuilder {
    /// The key both sides must hold (Python's `authkey`). An empty key is
    /// no key.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.policy.authkey = Policy::new(Some(key)).authkey;
        self
    }

    /// Accepts a TCP listener with no authkey, or with one shorter than
    /// [`MIN_AUTHKEY`] bytes. Without this, such a listener is refused:
    /// anyone who reaches the port could connect, or guess the key.
    pub fn allow_unauthenticated_tcp(mut self) -> Self {
        self.unauthenticated_tcp = true;
        self
    }

    /// The longest message the accepted connections take from their peers.
    pub fn max_message(mut self, max: usize) -> Self {
        self.policy.max_message = max;
        self
    }

    /// How long a connected peer has to pass the handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.policy.handshake_timeout = timeout;
        self
    }

    /// How many handshakes may be under way at once (at least 1; by
    /// default [`DEFAULT_MAX_PENDING`]); past that the oldest is dropped.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// Binds the listener as configured.
    pub fn bind(self) -> Result<Listener> {
        let weak = self.policy.authkey.as_ref().is_none_or(|k| k.len() < MIN_AUTHKEY);
        if self.address.is_tcp() && weak && !self.unauthenticated_tcp {
            return Err(Error::invalid(format!(
                "a TCP listener without an authkey, or with one shorter than {MIN_AUTHKEY} \
                 bytes, lets anyone who reaches the port in; give it a longer authkey, or opt \
                 out with allow_unauthenticated_tcp()"
            )));
        }
        let (socket, address, unlink) = match &self.address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(|e| Error::io("binding a TCP listener", e))?;
                let bound = l.local_addr().map_err(|e| Error::io("getsockname", e))?;
                (ListenSocket::Tcp(l), Address::Tcp(bound), None)
            }
            Address::Unix(p) => {
                let l = bind_unix(p).map_err(|e| Error::io("binding a Unix listener", e))?;
                let unlink = Some((p.clone(), std::process::id()));
                (ListenSocket::Unix(l), self.address.clone(), unlink)
            }
        };
        Listener::new(socket, address, self.policy, unlink, self.max_pending)
    }
}

impl Listener {
    /// Listens at `address`; each accepted connection must pass the
    /// handshake with `authkey`.
    pub fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<Listener> {
        Listener::builder(address).authkey(authkey).bind()
    }

    /// A listener with settings: no authkey (Unix sockets only, unless
    /// opted out), a message limit, a handshake timeout.
    pub fn builder(address: impl Into<Address>) -> ListenerBuilder {
        ListenerBuilder {
            address: address.into(),
            policy: Policy::new(None),
            unauthenticated_tcp: false,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    fn new(
        socket: ListenSocket,
        address: Address,
        policy: Policy,
        unlink: Option<(PathBuf, u32)>,
        max_pending: usize,
    ) -> Result<Listener> {
        // Accepting never blocks: readiness comes from poll.
        match &socket {
            ListenSocket::Tcp(l) => l.set_nonblocking(true),
            ListenSocket::Unix(l) => l.set_nonblocking(true),
        }
        .map_err(|e| Error::io("a non-blocking listener", e))?;
        let pending = Mutex::new(VecDeque::new());
        Ok(Listener { socket, address, policy, max_pending, pending, unlink })
    }

    /// Where it listens (a TCP port 0 replaced by the port given).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The listening socket, watched for a peer to accept.
    fn watch(&self) -> Watch<'_> {
        match &self.socket {
            ListenSocket::Tcp(l) => net::listener_watch(l),
            ListenSocket::Unix(l) => net::listener_watch(l),
        }
    }

    /// Accepts the next connection whose peer passes the handshake. A peer
    /// that fails it is dropped and `Auth` returned (the listener stays
    /// usable); one that stalls is dropped after the handshake timeout
    /// without holding up anyone else.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_until(Deadline::NEVER)
    }

    /// [`accept`](Self::accept) waiting at most `timeout`.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Deadline::after(timeout))
    }

    /// [`accept`](Self::accept), awaited without blocking a thread (the
    /// `tokio` feature): the listener and every handshake under way are
    /// watched by the runtime (looked at after naps, on Windows). Cancel-safe: a future dropped with
    /// handshakes under way leaves them to the next accept (as a timed-out
    /// accept does).
    #[cfg(mp_async)]
    pub async fn accept_async(&self) -> Result<Connection> {
        let listening: Vec<_> = match &self.socket {
            ListenSocket::Tcp(l) => net::listener_ready(l),
            ListenSocket::Unix(l) => net::listener_ready(l),
        }
        .into_iter()
        .collect();
        let Some(key) = self.policy.authkey.clone() else {
            loop {
                if let Some(socket) = self.try_accept()? {
                    return Ok(Connection::stream(Stream::new(socket, self.policy.max_message)));
                }
                crate::aio::ready_any(&listening, false, None).await?;
            }
        };
        let mut shake = Shake { listener: self, under_way: std::mem::take(&mut *self.lock()) };
        loop {
            if let Some(outcome) = shake.step(&key)? {
                return outcome;
            }
            let mut watched = listening.clone();
            watched.extend(shake.under_way.iter().map(|h| net::socket_handle(h.stream.socket())));
            // A handshake that stalls is dropped at its deadline: look
            // again at a tenth of the timeout while any is under way.
            let tick = (!shake.under_way.is_empty()).then_some(HANDSHAKE_TICK);
            crate::aio::ready_any(&watched, false, tick).await?;
        }
    }

    fn accept_until(&self, until: Deadline) -> Result<Connection> {
        let Some(key) = self.policy.authkey.clone() else {
            return self.accept_plain(until);
        };
        let mut shake = Shake { listener: self, under_way: std::mem::take(&mut *self.lock()) };
        loop {
            if let Some(outcome) = shake.step(&key)? {
                return outcome;
            }
            if until.passed() {
                return Err(Error::timeout());
            }
            let wake = shake.under_way.iter().fold(until, |wake, h| wake.min(h.deadline));
            let mut fds: Vec<Watch<'_>> = std::iter::once(self.watch())
                .chain(
                    shake
                        .under_way
                        .iter()
                        .map(|h| net::socket_watch(h.stream.socket(), Interest::Read)),
                )
                .collect();
            poll_many(&mut fds, wake)?;
        }
    }

    /// Without a key: the next connection as it is.
    fn accept_plain(&self, until: Deadline) -> Result<Connection> {
        loop {
            if let Some(socket) = self.try_accept()? {
                return Ok(Connection::stream(Stream::new(socket, self.policy.max_message)));
            }
            let mut fds = [self.watch()];
            if poll_many(&mut fds, until)? == 0 && until != Deadline::NEVER {
                return Err(Error::timeout());
            }
        }
    }

    /// A connection waiting in the backlog, if there is one.
    fn try_accept(&self) -> Result<Option<Socket>> {
        let accepted = match &self.socket {
            ListenSocket::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Socket::from(s)
            }),
            ListenSocket::Unix(l) => l.accept().map(|(s, _)| Socket::from(s)),
        };
        match accepted {
            Ok(socket) => Ok(Some(socket)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            // The peer gave up between connecting and our accept.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(None),
            Err(e) => Err(Error::io("accept", e)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Handshake>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The listening socket and its address, for a process that will
    /// accept on it (the socket file stays until that one drops it).
    pub(crate) fn into_parts(mut self) -> Result<(OwnedHandle, Address)> {
        self.unlink = None;
        let fd = match &self.socket {
            ListenSocket::Tcp(l) => net::listener_handle(l),
            ListenSocket::Unix(l) => net::listener_handle(l),
        }
        .map_err(|e| Error::io("passing a listener on", e))?;
        Ok((fd, self.address.clone()))
    }

    /// A listener on a socket [`into_parts`](Self::into_parts) gave, which
    /// removes a Unix socket's file when dropped.
    pub(crate) fn from_parts(
        fd: OwnedHandle,
        address: Address,
        key: Option<Vec<u8>>,
    ) -> Result<Self> {
        let taken = |e| Error::io("taking a listener over", e);
        let (socket, unlink) = match &address {
            Address::Tcp(_) => {
                (ListenSocket::Tcp(net::tcp_listener_from_handle(fd).map_err(taken)?), None)
            }
            Address::Unix(p) => (
                ListenSocket::Unix(net::local_listener_from_handle(fd, p).map_err(taken)?),
                Some((p.clone(), std::process::id())),
            ),
        };
        let policy = Policy::new(key.as_deref());
        Listener::new(socket, address, policy, unlink, DEFAULT_MAX_PENDING)
    }
}

/// How often an async accept looks at the deadlines of the handshakes
/// under way.
#[cfg(mp_async)]
const HANDSHAKE_TICK: Duration = Duration::from_millis(100);

/// The handshakes one `accept` call has taken out of its listener; put
/// back, for the next call, however the call ends.
struct Shake<'a> {
    listener: &'a Listener,
    under_way: VecDeque<Handshake>,
}

impl Shake<'_> {
    /// Takes in new connections (challenging each), advances every
    /// handshake as far as its bytes allow, drops the expired: the first
    /// outcome for the caller, if there is one.
    fn step(&mut self, key: &[u8]) -> Result<Option<Result<Connection>>> {
        let listener = self.listener;
        while let Some(socket) = listener.try_accept()? {
            if self.under_way.len() >= listener.max_pending {
                self.under_way.pop_front();
            }
            if let Ok(handshake) = Handshake::start(socket, &listener.policy) {
                self.under_way.push_back(handshake);
            }
        }
        let mut outcome = None;
        let mut i = 0;
        while i < self.under_way.len() && outcome.is_none() {
            let handshake = &mut self.under_way[i];
            match handshake.advance(key) {
                Ok(false) if !handshake.deadline.passed() => i += 1,
                Ok(false) => drop(self.under_way.remove(i)),
                Ok(true) => {
                    let done = self.under_way.remove(i).expect("in range");
                    outcome = Some(Ok(Connection::stream(done.stream)));
                }
                Err(e) => {
                    self.under_way.remove(i);
                    if e.kind() == ErrorKind::Auth {
                        outcome = Some(Err(e));
                    }
                }
            }
        }
        Ok(outcome)
    }
}

impl Drop for Shake<'_> {
    fn drop(&mut self) {
        let mut pending = self.listener.lock();
        pending.extend(self.under_way.drain(..));
        while pending.len() > self.listener.max_pending {
            pending.pop_front();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, pid)) = &self.unlink {
            if *pid == std::process::id() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Python's `multiprocessing.connection.Client`: connects to a [`Listener`]
/// (ours or Python's) and passes the handshake.
pub struct Client;

/// Settings for a connection: [`Client::builder`].
pub struct ClientBuilder {
    address: Address,
    policy: Policy,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `address` and answers and checks the handshake with
    /// `authkey` (an empty key is none: no handshake). Nothing listening
    /// there is `Disconnected`.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Connection> {
        Client::builder(address).authkey(authkey).connect()
    }

    /// [`connect`](Self::connect) giving up after `timeout` (connecting and
    /// handshake together).
    pub fn connect_timeout(
        address: impl Into<Address>,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Connection> {
        Client::builder(address).authkey(authkey).timeout(timeout).connect()
    }

    /// A client with settings (no authkey, a message limit, a timeout).
    pub fn builder(address: impl Into<Address>) -> ClientBuilder {
        ClientBuilder { address: address.into(), policy: Policy::new(None), timeout: None }
    }
}

impl ClientBuilder {
    /// The key both sides must hold; without one (or with an empty one),
    /// no handshake is made.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.policy.authkey = Policy::new(Some(key)).authkey;
        self
    }

    /// The longest message this connection takes from its peer.
    pub fn max_message(mut self, max: usize) -> Self {
        self.policy.max_message = max;
        self
    }

    /// How long connecting and the handshake may take together.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Connects as configured, and passes the handshake if there is a key.
    pub fn connect(self) -> Result<Connection> {
        let until = self.timeout.map_or(Deadline::NEVER, Deadline::after);
        let refused = |e: std::io::Error| {
            use std::io::ErrorKind as K;
            match e.kind() {
                K::ConnectionRefused | K::NotFound => Error::new(
                    ErrorKind::Disconnected,
                    format!("nothing listens at {}", self.address),
                )
                .with_source(e),
                K::TimedOut | K::WouldBlock => Error::timeout(),
                _ => Error::io("connect", e),
            }
        };
        let socket: Socket = match &self.address {
            Address::Tcp(a) => {
                let s = match self.timeout {
                    Some(t) => TcpStream::connect_timeout(a, t.max(Duration::from_millis(1))),
                    None => TcpStream::connect(a),
                }
                .map_err(refused)?;
                let _ = s.set_nodelay(true);
                s.into()
            }
            Address::Unix(p) => LocalStream::connect(p).map_err(refused)?.into(),
        };
        self.policy.open(socket, false, until)
    }
}
