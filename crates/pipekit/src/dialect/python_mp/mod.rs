//! CPython's `multiprocessing.connection` at the `send_bytes`/`recv_bytes` level.
//!
//! A pipekit [`Listener`] accepts `multiprocessing.connection.Client(address,
//! authkey=...)`, and [`Connection::connect`] reaches a Python
//! `multiprocessing.connection.Listener(address, authkey=...)`. Pickling (`send`/`recv`
//! of Python objects) is out of scope: exchange bytes, and let the Python side call
//! `send_bytes`/`recv_bytes`.
//!
//! **Addresses.** On Unix the address is the socket path a name resolves to
//! (`pipekit::os::unix::socket_path`; `pipekit path NAME` prints
//! it) and Python talks `AF_UNIX` `SOCK_STREAM` there. On Windows it is the pipe path
//! `\\.\pipe\<name>`, a message-type pipe as Python makes it.
//!
//! **Framing** as CPython's `Connection` on sockets: a 4-byte big-endian signed length,
//! and for payloads over `0x7fffffff` bytes a length of `-1` followed by an 8-byte
//! big-endian length. On Windows pipes there is no prefix: each payload is one pipe
//! message.
//!
//! **Handshake** when an `authkey` is given, both ways — the listener challenges and then
//! answers the client's challenge, the client the reverse: `#CHALLENGE#` followed by
//! `{sha256}` and 40 random bytes; the answer is `{sha256}` and the HMAC-SHA256 of the
//! whole challenge (prefix included); `#WELCOME#` or `#FAILURE#` ends each half. The
//! legacy form older Pythons (3.11 and earlier) use — a 20-byte challenge answered with
//! a raw 16-byte HMAC-MD5 — is recognised by its length in both directions, as CPython
//! does. A wrong key fails with `PermissionDenied` ("authentication failed"); a listener
//! keeps serving other clients.
//!
//! # Examples
//!
//! ```
//! use std::thread;
//! use pipekit::dialect::python_mp::{Connection, Listener};
//! # let name = format!("doc-mp-{}", std::process::id());
//! # let name = name.as_str();
//!
//! let listener = Listener::bind(name, Some(b"secret"))?;
//! let server = thread::spawn(move || -> std::io::Result<()> {
//!     let mut conn = listener.accept()?;
//!     while let Some(msg) = conn.recv_bytes()? {
//!         conn.send_bytes(&msg)?;
//!     }
//!     Ok(())
//! });
//! let mut conn = Connection::connect(name, Some(b"secret"))?;
//! conn.send_bytes(b"hi")?;
//! assert_eq!(conn.recv_bytes()?.as_deref(), Some(&b"hi"[..]));
//! drop(conn);
//! server.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::{ConnectOptions, IntoPipeName, ListenerOptions, Mode, Stream};

mod handshake;
use handshake::{answer_challenge, deliver_challenge};

/// The largest payload accepted from a peer (1 GiB).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// The transport mode the dialect uses on this OS.
const MODE: Mode = if cfg!(windows) {
    Mode::Messages
} else {
    Mode::Bytes
};

/// How long a client has for the authkey handshake, unless
/// [`Listener::bind_with_timeout`] says otherwise.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes run at once at most (and handshaken clients kept for `accept`); a further
/// client waits in the backlog until there is room.
const MAX_HANDSHAKES: usize = 64;

/// A server that speaks `multiprocessing.connection`.
///
/// With an authkey, each client's handshake runs on a thread of its own, under a
/// deadline ([`HANDSHAKE_TIMEOUT`] by default): a client that stalls, or connects and
/// leaves, never delays another client's `accept`. `accept` returns clients in the order
/// their handshakes end.
pub struct Listener {
    inner: Arc<crate::Listener>,
    /// With an authkey: handshakes finished by the acceptor thread, in order.
    handshaken: Option<Handshakes>,
}

struct Handshakes {
    done: Mutex<mpsc::Receiver<io::Result<Connection>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The authkey is a secret: never printed.
        f.debug_struct("Listener")
            .field("inner", &self.inner)
            .field("authkey", &self.handshaken.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Listener {
    /// Binds `name`; clients must know `authkey` if one is given.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind_with`].
    pub fn bind(name: impl IntoPipeName, authkey: Option<&[u8]>) -> io::Result<Listener> {
        Listener::bind_with_timeout(name, authkey, HANDSHAKE_TIMEOUT)
    }

    /// As [`bind`](Self::bind), giving each client `handshake_timeout` for the authkey
    /// handshake.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind_with`]; `InvalidInput` for a zero timeout.
    pub fn bind_with_timeout(
        name: impl IntoPipeName,
        authkey: Option<&[u8]>,
        handshake_timeout: Duration,
    ) -> io::Result<Listener> {
        if handshake_timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a zero handshake timeout is not allowed",
            ));
        }
        let mut options = ListenerOptions::new();
        options.mode(MODE).max_message_size(MAX_PAYLOAD);
        let inner = Arc::new(crate::Listener::bind_with(name, &options)?);
        let handshaken = authkey
            .map(|key| Handshakes::start(Arc::clone(&inner), key.to_vec(), handshake_timeout));
        Ok(Listener { inner, handshaken })
    }

    /// Waits for the next client whose handshake succeeded, or whose handshake failed.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` if a client failed the handshake (a wrong or missing key);
    /// `TimedOut` if it did not finish within the handshake timeout; the error of a
    /// client that left during it. Each error is one client's: call `accept` again to
    /// serve the next. Other errors as [`crate::Listener::accept`].
    pub fn accept(&self) -> io::Result<Connection> {
        let Some(handshakes) = &self.handshaken else {
            return Ok(Connection::new(self.inner.accept()?));
        };
        let done = handshakes.done.lock().unwrap_or_else(|e| e.into_inner());
        done.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the acceptor thread ended")))
    }

    /// The pipekit listener underneath.
    pub fn listener(&self) -> &crate::Listener {
        &self.inner
    }
}

impl Handshakes {
    /// Starts the thread that accepts clients and runs each handshake on a thread.
    fn start(inner: Arc<crate::Listener>, key: Vec<u8>, timeout: Duration) -> Handshakes {
        // Bounded: clients handshaken but not yet taken by `accept` cannot pile up.
        let (tx, done) = mpsc::sync_channel(MAX_HANDSHAKES);
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = Arc::clone(&stop);
            let key: Arc<[u8]> = key.into();
            thread::spawn(move || {
                let running = Arc::new(AtomicUsize::new(0));
                loop {
                    let accepted = inner.accept();
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let stream = match accepted {
                        Ok(stream) => stream,
                        Err(e) => {
                            // Reported to `accept` if there is room; never waited on,
                            // so that drop can always stop this thread.
                            if let Err(mpsc::TrySendError::Disconnected(_)) = tx.try_send(Err(e)) {
                                return;
                            }
                            // A listener-wide error (out of descriptors): do not spin.
                            thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    while running.load(Ordering::SeqCst) >= MAX_HANDSHAKES {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        thread::park_timeout(Duration::from_millis(10));
                    }
                    running.fetch_add(1, Ordering::SeqCst);
                    let (tx, key, running) = (tx.clone(), Arc::clone(&key), Arc::clone(&running));
                    thread::spawn(move || {
                        let result = server_handshake(stream, &key, timeout);
                        // Waits while `accept` is not keeping up: back-pressure on the
                        // acceptor (at most MAX_HANDSHAKES threads, handshaking or waiting).
                        let _ = tx.send(result);
                        running.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Handshakes {
            done: Mutex::new(done),
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(handshakes) = &mut self.handshaken else {
            return;
        };
        handshakes.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor out of `accept` with a connection of our own; if that
        // fails the thread is left to end with the process.
        let name = self.inner.name().clone();
        let mut options = ConnectOptions::new();
        options.mode(MODE);
        if Stream::connect_with(name, &options).is_ok()
            && let Some(acceptor) = handshakes.acceptor.take()
        {
            let _ = acceptor.join();
        }
    }
}

/// The listener's side of the handshake on a fresh connection, within `timeout`.
fn server_handshake(stream: Stream, key: &[u8], timeout: Duration) -> io::Result<Connection> {
    let mut conn = Connection::new(stream);
    conn.deadline = Some(Instant::now() + timeout);
    let result = deliver_challenge(&mut conn, key).and_then(|()| answer_challenge(&mut conn, key));
    conn.deadline = None;
    result.map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("a client did not finish the authkey handshake within {timeout:?}"),
            )
        } else {
            e
        }
    })?;
    conn.stream.set_read_timeout(None)?;
    conn.stream.set_write_timeout(None)?;
    Ok(conn)
}

/// One `multiprocessing.connection` conversation.
pub struct Connection {
    stream: Stream,
    /// A reused buffer for header + small payload, so a send is one write.
    scratch: Vec<u8>,
    /// What has arrived of the payload being received (kept across timeouts).
    incoming: Incoming,
    /// While a listener's handshake runs: when it must be over.
    deadline: Option<Instant>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(stream: Stream) -> Connection {
        Connection {
            stream,
            scratch: Vec::new(),
            incoming: Incoming::default(),
            deadline: None,
        }
    }

    /// Connects to a Python (or pipekit) `multiprocessing.connection` listener at `name`.
    ///
    /// # Errors
    ///
    /// As [`Stream::connect`]; `PermissionDenied` if the handshake fails.
    pub fn connect(name: impl IntoPipeName, authkey: Option<&[u8]>) -> io::Result<Connection> {
        Connection::connect_with(name, None, authkey)
    }

    /// As [`connect`](Self::connect), waiting up to `wait` for the listener to appear.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); `TimedOut` when the wait runs out.
    pub fn connect_with(
        name: impl IntoPipeName,
        wait: Option<Duration>,
        authkey: Option<&[u8]>,
    ) -> io::Result<Connection> {
        let mut options = ConnectOptions::new();
        options.mode(MODE).max_message_size(MAX_PAYLOAD).wait(wait);
        let mut conn = Connection::new(Stream::connect_with(name, &options)?);
        if let Some(key) = authkey {
            answer_challenge(&mut conn, key)?;
            deliver_challenge(&mut conn, key)?;
        }
        Ok(conn)
    }

    /// Sends `payload` as one `recv_bytes` on the other side.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` if the peer is gone; `InvalidInput` for a payload over
    /// [`MAX_PAYLOAD`] on Windows.
    pub fn send_bytes(&mut self, payload: &[u8]) -> io::Result<()> {
        aim_at(&self.stream, self.deadline)?;
        if MODE == Mode::Messages {
            return self.stream.send(payload);
        }
        self.scratch.clear();
        match i32::try_from(payload.len()) {
            Ok(n) => self.scratch.extend_from_slice(&n.to_be_bytes()),
            Err(_) => {
                self.scratch.extend_from_slice(&(-1i32).to_be_bytes());
                self.scratch
                    .extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        if payload.len() <= 16 * 1024 {
            self.scratch.extend_from_slice(payload);
            return self.stream.write_all(&self.scratch);
        }
        self.stream.write_all(&self.scratch)?;
        self.stream.write_all(payload)
    }

    /// Receives one payload; `None` when the peer has closed the connection.
    ///
    /// # Errors
    ///
    /// `InvalidData` for a malformed length or one over [`MAX_PAYLOAD`];
    /// `UnexpectedEof` if the connection ends inside a payload.
    pub fn recv_bytes(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.recv_bytes_into(&mut buf)?.map(|_| buf))
    }

    /// Receives one payload into `buf` (cleared first); its length, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.recv_limited(buf, MAX_PAYLOAD)
    }

    fn recv_limited(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        buf.clear();
        if MODE == Mode::Messages {
            aim_at(&self.stream, self.deadline)?;
            let got = self.stream.recv_to_vec(buf)?;
            if got.is_some_and(|n| n > max) {
                return Err(too_long(buf.len(), max));
            }
            return Ok(got);
        }
        let state = &mut self.incoming;
        // A timeout (or `WouldBlock`) may end any read below: everything read so far
        // stays in `self.incoming`, and the next call goes on from there.
        while state.header_len < 4 || (state.long() && state.header_len < 12) {
            let want = if state.header_len < 4 { 4 } else { 12 };
            aim_at(&self.stream, self.deadline)?;
            let n = read_some(&mut self.stream, &mut state.header[state.header_len..want])?;
            if n == 0 {
                if state.header_len == 0 {
                    return Ok(None);
                }
                *state = Incoming::default();
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection inside a payload's length",
                ));
            }
            state.header_len += n;
        }
        let size = match state.size(max) {
            Ok(size) => size,
            Err(e) => {
                *state = Incoming::default();
                return Err(e);
            }
        };
        // Grown as bytes arrive, so a lying header cannot make us allocate it all.
        while state.payload.len() < size {
            let start = state.payload.len();
            let chunk = (size - start).min(1 << 20);
            state.payload.resize(start + chunk, 0);
            let got = aim_at(&self.stream, self.deadline)
                .and_then(|()| read_some(&mut self.stream, &mut state.payload[start..]));
            let n = *got.as_ref().unwrap_or(&0);
            state.payload.truncate(start + n);
            match got {
                Ok(0) => {
                    *state = Incoming::default();
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the peer closed the connection {start} bytes into a \
                             {size}-byte payload"
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        std::mem::swap(buf, &mut state.payload);
        *state = Incoming::default();
        Ok(Some(size))
    }

    /// Makes `recv_bytes` fail with `TimedOut` after `timeout`; `None` waits forever.
    /// A timeout loses nothing: the bytes of a payload read before it are kept, and the
    /// next `recv_bytes` goes on with the same payload.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// The pipekit stream underneath.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }
}

/// A payload being received on a byte stream: its length prefix so far, then its bytes.
#[derive(Default)]
struct Incoming {
    /// The 4-byte length, and the 8-byte long length after a `-1`.
    header: [u8; 12],
    header_len: usize,
    payload: Vec<u8>,
}

impl Incoming {
    /// Whether the 4-byte length is `-1`: an 8-byte length follows.
    fn long(&self) -> bool {
        self.header_len >= 4 && self.header[..4] == (-1i32).to_be_bytes()
    }

    /// The payload's size from a complete header, within `max`.
    fn size(&self, max: usize) -> io::Result<usize> {
        let short = i32::from_be_bytes([
            self.header[0],
            self.header[1],
            self.header[2],
            self.header[3],
        ]);
        let size = match short {
            -1 => {
                let mut long = [0u8; 8];
                long.copy_from_slice(&self.header[4..12]);
                usize::try_from(u64::from_be_bytes(long)).unwrap_or(usize::MAX)
            }
            n if n < 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("negative payload length {n} from the peer"),
                ));
            }
            n => n as usize,
        };
        if size > max {
            return Err(too_long(size, max));
        }
        Ok(size)
    }
}

/// Points the stream's timeouts at `deadline` (a handshake's); `TimedOut` once it passed.
fn aim_at(stream: &Stream, deadline: Option<Instant>) -> io::Result<()> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

/// One read, retried on `Interrupted`.
fn read_some(stream: &mut Stream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn too_long(size: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the peer announced a {size}-byte payload; the limit here is {max}"),
    )
}

impl handshake::Channel for Connection {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.send_bytes(message)
    }

    fn recv_at_most(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        self.recv_limited(buf, max)
    }
}
