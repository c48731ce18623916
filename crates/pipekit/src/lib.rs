//! One named-pipe model on every OS.
//!
//! A server binds a *name* with [`Listener::bind`]; clients connect to it with
//! [`Stream::connect`]; each connection is either a byte stream (`Read + Write`) or a
//! message pipe ([`send`](Stream::send) / [`recv`](Stream::recv), each `send` arriving as
//! exactly one `recv`). The mode is the server's choice ([`ListenerOptions::mode`]).
//!
//! Underneath, pipekit uses each OS's own primitive:
//!
//! | | bytes | messages |
//! |---|---|---|
//! | Linux, Android | `AF_UNIX` `SOCK_STREAM` | `AF_UNIX` `SOCK_SEQPACKET` |
//! | macOS, FreeBSD, other Unix | `AF_UNIX` `SOCK_STREAM` | `SOCK_STREAM` + [length-prefixed framing](framing) |
//! | Windows | named pipe, `PIPE_TYPE_BYTE` | named pipe, `PIPE_TYPE_MESSAGE` |
//!
//! A portable name such as `"test_pipe"` resolves to `\\.\pipe\test_pipe` on Windows and to a
//! socket in a private per-user directory on Unix (see [`PipeName`]).
//!
//! # Event loops and async
//!
//! - Feature `tokio`: `pipekit::tokio` has an async `Listener` and `Stream` on every OS (byte mode as
//!   `AsyncRead + AsyncWrite`, message mode as `send`/`recv` keeping message boundaries).
//! - [`nonblocking`]: a listener and message streams that never block, with the same calls on
//!   every OS; with feature `mio` they are `mio::event::Source`s. (On Unix the blocking
//!   [`Listener`] and [`Stream`] are sources too; on Windows byte-mode streams go to mio with
//!   `os::windows::StreamExt::into_mio`.)
//!
//! # Examples
//!
//! The classic message-mode exchange, server and client in one program:
//!
//! ```
//! use std::thread;
//! use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
//! # let name = format!("doc-lib-{}", std::process::id());
//! # let name = name.as_str();
//!
//! let listener = Listener::bind_with(name, ListenerOptions::new().mode(Mode::Messages))?;
//! let server = thread::spawn(move || -> std::io::Result<()> {
//!     let mut conn = listener.accept()?;
//!     let mut buf = [0u8; 65535];
//!     while let Some(n) = conn.recv(&mut buf)? {
//!         println!("got {}", String::from_utf8_lossy(&buf[..n]));
//!         conn.send(b"OK")?;
//!     }
//!     Ok(())
//! });
//!
//! let mut client = Stream::connect_with(name, ConnectOptions::new().mode(Mode::Messages))?;
//! let mut reply = Vec::new();
//! for i in 1..=10 {
//!     client.send(i.to_string().as_bytes())?;
//!     client.recv_to_vec(&mut reply)?;
//!     assert_eq!(reply, b"OK");
//! }
//! drop(client);
//! server.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see Cargo.toml): OS- and feature-gated items get badges.
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

pub use pipekit_core::MessageTooLarge;
pub use pipekit_core::{
    ByteStream, ConnectOptions, Connection, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_TIMEOUT, IntoPipeName, ListenerOptions, MAX_SHARED_MEMORY, MIN_SHARED_MEMORY,
    MessagePipe, Mode, NameForm, PeerCredentials, PipeName, SHARED_MEMORY_OVERHEAD, framing,
};

pub mod dialect;
pub mod error;
pub mod net;
pub mod nonblocking;
pub mod os;
#[cfg(feature = "tokio")]
pub mod tokio;

cfg_if::cfg_if! {
    if #[cfg(unix)] {
        use pipekit_unix as backend;
        fn bind(name: &PipeName, options: &ListenerOptions) -> io::Result<backend::Listener> {
            backend::Listener::bind_with(name, options, &backend::UnixOptions::new())
        }
        fn connect(name: &PipeName, options: &ConnectOptions) -> io::Result<backend::Stream> {
            backend::Stream::connect_with(name, options, &backend::UnixOptions::new())
        }
    } else if #[cfg(windows)] {
        use pipekit_windows as backend;
        fn bind(name: &PipeName, options: &ListenerOptions) -> io::Result<backend::Listener> {
            backend::Listener::bind_with(name, options, &backend::WindowsOptions::new())
        }
        fn connect(name: &PipeName, options: &ConnectOptions) -> io::Result<backend::Stream> {
            backend::Stream::connect_with(name, options)
        }
    } else {
        compile_error!("pipekit has no backend for this OS yet");
    }
}

/// A server bound to a name. Every [`accept`](Self::accept) returns the next client.
///
/// # Platform-specific behavior
///
/// Unix: a listening `AF_UNIX` socket (see `os::unix` for its security rules). Windows: the
/// instances of a named pipe, one always waiting for the next client (see `os::windows`).
#[derive(Debug)]
pub struct Listener {
    inner: ListenerInner,
}

// A program has few listeners: the size of the larger variant costs nothing worth an
// indirection on every call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum ListenerInner {
    Local(backend::Listener),
    Net(net::Listener),
}

impl Listener {
    /// Binds `name` in byte mode with the default options.
    ///
    /// # Errors
    ///
    /// As [`bind_with`](Self::bind_with).
    pub fn bind(name: impl IntoPipeName) -> io::Result<Listener> {
        Listener::bind_with(name, &ListenerOptions::new())
    }

    /// Binds `name` with `options`.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if a live server already has the name; `InvalidInput` for a bad name (it
    /// says why) or bad options; `PermissionDenied` if the per-user directory is unsafe
    /// (Unix).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit::{Listener, ListenerOptions, Mode};
    /// # let name = format!("doc-bind-{}", std::process::id());
    ///
    /// let listener = Listener::bind_with(&name, ListenerOptions::new().mode(Mode::Messages))?;
    /// let second = Listener::bind(&name).unwrap_err();
    /// assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind_with(name: impl IntoPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        let name = name.into_pipe_name()?;
        let inner = match name.as_net() {
            Some(addr) => ListenerInner::Net(net::Listener::bind(addr, options)?),
            None => ListenerInner::Local(bind(&name, options)?),
        };
        Ok(Listener { inner })
    }

    pub(crate) fn from_local(listener: backend::Listener) -> Listener {
        Listener {
            inner: ListenerInner::Local(listener),
        }
    }

    /// The platform listener; network listeners have none.
    #[cfg(unix)]
    pub(crate) fn local(&self) -> io::Result<&backend::Listener> {
        match &self.inner {
            ListenerInner::Local(listener) => Ok(listener),
            ListenerInner::Net(listener) => Err(not_local(listener.name())),
        }
    }

    #[cfg(all(unix, feature = "mio"))]
    pub(crate) fn local_mut(&mut self) -> io::Result<&mut backend::Listener> {
        match &mut self.inner {
            ListenerInner::Local(listener) => Ok(listener),
            ListenerInner::Net(listener) => Err(not_local(listener.name())),
        }
    }

    #[cfg(unix)]
    pub(crate) fn as_unix_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            ListenerInner::Local(listener) => std::os::fd::AsFd::as_fd(listener),
            ListenerInner::Net(listener) => listener.as_fd(),
        }
    }

    pub(crate) fn into_local(self) -> io::Result<backend::Listener> {
        match self.inner {
            ListenerInner::Local(listener) => Ok(listener),
            ListenerInner::Net(listener) => Err(not_local(listener.name())),
        }
    }

    /// Waits for the next client and returns the connection to it.
    ///
    /// # Errors
    ///
    /// The OS error.
    ///
    /// # Examples
    ///
    /// A server that serves each client on a thread of its own:
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::thread;
    /// use pipekit::{Listener, Stream};
    /// # let name = format!("doc-accept-{}", std::process::id());
    ///
    /// let listener = Listener::bind(&name)?;
    /// # let client = { let name = name.clone(); thread::spawn(move || -> std::io::Result<()> {
    /// #     let mut c = Stream::connect(&name)?; c.write_all(b"ping")?;
    /// #     let mut back = [0u8; 4]; c.read_exact(&mut back)?; assert_eq!(&back, b"ping");
    /// #     Ok(()) }) };
    /// # for _ in 0..1 {
    /// let conn = listener.accept()?;
    /// thread::spawn(move || std::io::copy(&mut &conn, &mut &conn)); // echo until EOF
    /// # }
    /// # client.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&self) -> io::Result<Stream> {
        let inner = match &self.inner {
            ListenerInner::Local(listener) => StreamInner::Local(listener.accept()?),
            ListenerInner::Net(listener) => StreamInner::Net(listener.accept()?),
        };
        Ok(Stream { inner })
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        match &self.inner {
            ListenerInner::Local(listener) => listener.mode(),
            ListenerInner::Net(listener) => listener.mode(),
        }
    }

    /// The name this listener serves. For a `tcp://` or `tls://` name bound to port 0, the
    /// port is the one the listener got.
    pub fn name(&self) -> &PipeName {
        match &self.inner {
            ListenerInner::Local(listener) => listener.name(),
            ListenerInner::Net(listener) => listener.name(),
        }
    }

    /// The address a `tcp://` or `tls://` listener is bound to.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a local name.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            ListenerInner::Local(_) => Err(net::network_only("local_addr")),
            ListenerInner::Net(listener) => listener.local_addr(),
        }
    }

    /// An iterator over accepted connections: each item is one [`accept`](Self::accept). It
    /// never ends by itself; an error is an item, and the next item tries again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use pipekit::{Listener, Stream};
    /// # let name = format!("doc-incoming-{}", std::process::id());
    ///
    /// let listener = Listener::bind(&name)?;
    /// let client = std::thread::spawn(move || -> std::io::Result<()> {
    ///     Stream::connect(&name)?.write_all(b"hi")
    /// });
    /// for conn in listener.incoming().take(1) {
    ///     let mut text = String::new();
    ///     conn?.read_to_string(&mut text)?;
    ///     assert_eq!(text, "hi");
    /// }
    /// client.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }
}

/// The iterator of [`Listener::incoming`]: each item is the next accepted connection.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a Listener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<Stream>;

    fn next(&mut self) -> Option<io::Result<Stream>> {
        Some(self.listener.accept())
    }
}

impl std::iter::FusedIterator for Incoming<'_> {}

impl<'a> IntoIterator for &'a Listener {
    type Item = io::Result<Stream>;
    type IntoIter = Incoming<'a>;

    fn into_iter(self) -> Incoming<'a> {
        self.incoming()
    }
}

impl pipekit_core::Listener for Listener {
    type Stream = Stream;

    fn accept(&self) -> io::Result<Stream> {
        Listener::accept(self)
    }

    fn mode(&self) -> Mode {
        Listener::mode(self)
    }
}

fn not_a_pipe(stream: &net::Stream) -> io::Error {
    let peer = stream.peer_addr();
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "the connection with {peer} is a network connection; this works on local pipes only"
        ),
    )
}

fn not_local(name: &PipeName) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{name} is a network connection; this works on local pipes only"),
    )
}

/// One connection, in byte or message mode.
///
/// Byte mode: `Read + Write`. Message mode: [`send`](Self::send) and [`recv`](Self::recv);
/// there `Read`/`Write` move one message per call.
///
/// Every method takes `&self`, and `&Stream` is `Read + Write` as well (as `&TcpStream` is),
/// so one thread can read while another writes through the same stream, or through a
/// [`try_clone`](Self::try_clone). Two threads reading (or writing) messages at once take
/// turns message by message: a message is never split between them.
///
/// # Examples
///
/// Both directions at once through `&Stream`, in scoped threads:
///
/// ```
/// use std::io::{Read, Write};
/// use std::thread;
/// use pipekit::{Listener, Stream};
/// # let name = format!("doc-shared-{}", std::process::id());
/// # let name = name.as_str();
///
/// let listener = Listener::bind(name)?;
/// let server = thread::spawn(move || -> std::io::Result<()> {
///     let conn = listener.accept()?;
///     std::io::copy(&mut &conn, &mut &conn)?; // echo until EOF
///     Ok(())
/// });
/// let client = Stream::connect(name)?;
/// let data = vec![7u8; 1 << 20]; // more than the pipe buffers hold
/// let back = thread::scope(|s| {
///     let reading = s.spawn(|| {
///         let mut back = vec![0u8; data.len()];
///         (&client).read_exact(&mut back).map(|()| back)
///     });
///     (&client).write_all(&data)?;
///     reading.join().unwrap()
/// })?;
/// assert_eq!(back, data);
/// drop(client);
/// server.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Stream {
    inner: StreamInner,
}

#[derive(Debug)]
enum StreamInner {
    Local(backend::Stream),
    Net(net::Stream),
}

impl Stream {
    /// Connects to `name` in byte mode, failing at once if nobody serves it.
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub fn connect(name: impl IntoPipeName) -> io::Result<Stream> {
        Stream::connect_with(name, &ConnectOptions::new())
    }

    /// Connects to `name` with `options`.
    ///
    /// # Errors
    ///
    /// `NotFound` if nobody serves `name` (at once, unless [`ConnectOptions::wait`] asks to
    /// wait); `TimedOut` when that wait runs out; `InvalidInput` for a bad name or if the
    /// server's mode differs from `options.mode`.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = pipekit::Stream::connect("nobody-serves-this-name").unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn connect_with(name: impl IntoPipeName, options: &ConnectOptions) -> io::Result<Stream> {
        let name = name.into_pipe_name()?;
        let inner = match name.as_net() {
            Some(addr) => StreamInner::Net(net::connect(addr, options)?),
            None => StreamInner::Local(connect(&name, options)?),
        };
        Ok(Stream { inner })
    }

    pub(crate) fn from_local(stream: backend::Stream) -> Stream {
        Stream {
            inner: StreamInner::Local(stream),
        }
    }

    /// The platform stream; network connections have none.
    pub(crate) fn local(&self) -> io::Result<&backend::Stream> {
        match &self.inner {
            StreamInner::Local(stream) => Ok(stream),
            StreamInner::Net(stream) => Err(not_a_pipe(stream)),
        }
    }

    #[cfg(all(unix, feature = "mio"))]
    pub(crate) fn local_mut(&mut self) -> io::Result<&mut backend::Stream> {
        match &mut self.inner {
            StreamInner::Local(stream) => Ok(stream),
            StreamInner::Net(stream) => Err(not_a_pipe(stream)),
        }
    }

    #[cfg(unix)]
    pub(crate) fn as_unix_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            StreamInner::Local(stream) => std::os::fd::AsFd::as_fd(stream),
            StreamInner::Net(stream) => stream.as_fd(),
        }
    }

    #[cfg(windows)]
    pub(crate) fn windows_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        match &self.inner {
            StreamInner::Local(stream) => std::os::windows::io::AsHandle::as_handle(stream),
            StreamInner::Net(stream) => pipekit_windows::socket_as_handle(stream.tcp()),
        }
    }

    /// The network connection, or this stream back if it is a local pipe.
    #[cfg(feature = "tokio")]
    pub(crate) fn into_net(self) -> Result<net::Stream, Stream> {
        match self.inner {
            StreamInner::Net(stream) => Ok(stream),
            inner => Err(Stream { inner }),
        }
    }

    pub(crate) fn into_local(self) -> io::Result<backend::Stream> {
        match self.inner {
            StreamInner::Local(stream) => Ok(stream),
            StreamInner::Net(stream) => Err(not_a_pipe(&stream)),
        }
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        match &self.inner {
            StreamInner::Local(stream) => stream.mode(),
            StreamInner::Net(stream) => stream.mode(),
        }
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        match &self.inner {
            StreamInner::Local(stream) => stream.max_message_size(),
            StreamInner::Net(stream) => stream.max_message_size(),
        }
    }

    /// The address of the other end of a `tcp://` or `tls://` connection.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a local pipe (see [`peer_credentials`](Self::peer_credentials)).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            StreamInner::Local(_) => Err(net::network_only("peer_addr (use peer_credentials)")),
            StreamInner::Net(stream) => Ok(stream.peer_addr()),
        }
    }

    /// The address of this end of a `tcp://` or `tls://` connection.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a local pipe; the OS error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            StreamInner::Local(_) => Err(net::network_only("local_addr")),
            StreamInner::Net(stream) => stream.local_addr(),
        }
    }

    /// The certificate the other end of a `tls://` connection showed and this end verified
    /// (DER): the server's for a client, the client's for a server that asked for one.
    /// `None` for every other connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.inner {
            StreamInner::Local(_) => None,
            StreamInner::Net(stream) => stream.peer_certificate(),
        }
    }

    /// Sends `msg` as one message (message mode).
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the size if `msg` is over [`max_message_size`](Self::max_message_size)
    /// (nothing is sent; the connection stays usable) or the stream is in byte mode;
    /// `BrokenPipe` if the peer is gone; `TimedOut` after the write timeout.
    ///
    /// # Examples
    ///
    /// Messages keep their boundaries, empty ones included:
    ///
    /// ```
    /// use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
    /// # let name = format!("doc-send-{}", std::process::id());
    ///
    /// let listener = Listener::bind_with(&name, ListenerOptions::new().mode(Mode::Messages))?;
    /// let client = Stream::connect_with(&name, ConnectOptions::new().mode(Mode::Messages))?;
    /// let server = listener.accept()?;
    /// client.send(b"one")?;
    /// client.send(b"")?;
    /// client.send(b"three")?;
    /// let mut buf = [0u8; 16];
    /// assert_eq!(server.recv(&mut buf)?, Some(3));
    /// assert_eq!(server.recv(&mut buf)?, Some(0));
    /// assert_eq!(server.recv(&mut buf)?, Some(5));
    /// drop(client);
    /// assert_eq!(server.recv(&mut buf)?, None); // the end
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.send(msg),
            StreamInner::Net(stream) => stream.send(msg),
        }
    }

    /// Sends one message of `len` bytes that `fill` writes in place (message mode). On a
    /// shared-memory connection ([`ListenerOptions::shared_memory`]) `fill` writes straight
    /// into the ring, so the sender makes no copy of its own; on any other connection it
    /// writes into a buffer that is then sent (one allocation).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); `fill` is not called when nothing can be sent (a size over
    /// the maximum, byte mode, a peer gone).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
    /// # let name = format!("doc-send-with-{}", std::process::id());
    ///
    /// let mut options = ListenerOptions::new();
    /// options.mode(Mode::Messages).shared_memory(Some(4 << 20));
    /// let listener = Listener::bind_with(&name, &options)?;
    /// let client = Stream::connect_with(
    ///     &name,
    ///     ConnectOptions::new().mode(Mode::Messages).shared_memory(true),
    /// )?;
    /// let server = listener.accept()?;
    /// server.send_with(4, |buf| buf.copy_from_slice(b"ping"))?;
    /// let first = client.recv_with(|msg| msg.to_vec())?;
    /// assert_eq!(first.as_deref(), Some(&b"ping"[..]));
    /// assert!(client.is_shared_memory());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_with<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        match &self.inner {
            StreamInner::Local(stream) => stream.send_with(len, fill),
            _ => {
                let max = self.max_message_size();
                if len > max {
                    return Err(pipekit_core::error::message_over_limit(len, max));
                }
                let mut buf = vec![0u8; len];
                let out = fill(&mut buf);
                self.send(&buf).map(|()| out)
            }
        }
    }

    /// Receives one message and hands it to `take` in place (message mode): on a
    /// shared-memory connection the bytes are read where they lie in the ring, without a
    /// copy; on any other connection from a buffer the message was received into. `None`
    /// once the peer has closed and every message has been read.
    ///
    /// The bytes are the peer's: a peer that breaks the protocol could change them while
    /// `take` looks (only its own connection suffers).
    ///
    /// # Errors
    ///
    /// As [`recv_to_vec`](Self::recv_to_vec).
    pub fn recv_with<R>(&self, take: impl FnOnce(&[u8]) -> R) -> io::Result<Option<R>> {
        match &self.inner {
            StreamInner::Local(stream) => stream.recv_with(take),
            _ => {
                let mut buf = Vec::new();
                Ok(self.recv_to_vec(&mut buf)?.map(|_| take(&buf)))
            }
        }
    }

    /// Whether this connection runs over shared memory: the listener offers it
    /// ([`ListenerOptions::shared_memory`]) and the client asked
    /// ([`ConnectOptions::shared_memory`]). A client learns it from the server's first word,
    /// which it finds at its first read or write; this call also looks for it, without
    /// waiting, and is `false` while it has not come.
    /// Always `false` for FIFOs and network names.
    pub fn is_shared_memory(&self) -> bool {
        match &self.inner {
            StreamInner::Local(stream) => stream.is_shared_memory(),
            _ => false,
        }
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` once the peer has closed and
    /// every message has been read. Zero-length messages are `Some(0)`.
    ///
    /// # Errors
    ///
    /// If the message does not fit `buf`: an `InvalidInput` error carrying a
    /// [`MessageTooLarge`] with the message's size; the message stays readable. `TimedOut`
    /// after the read timeout; `InvalidData` if the peer breaks the protocol.
    ///
    /// # Examples
    ///
    /// A message too large for the buffer is reported with its size and stays readable:
    ///
    /// ```
    /// use pipekit::{ConnectOptions, Listener, ListenerOptions, MessageTooLarge, Mode, Stream};
    /// # let name = format!("doc-recv-{}", std::process::id());
    ///
    /// let listener = Listener::bind_with(&name, ListenerOptions::new().mode(Mode::Messages))?;
    /// let client = Stream::connect_with(&name, ConnectOptions::new().mode(Mode::Messages))?;
    /// let server = listener.accept()?;
    /// client.send(&[7u8; 100])?;
    /// let mut small = [0u8; 10];
    /// let err = server.recv(&mut small).unwrap_err();
    /// let too_large = err.get_ref().and_then(|e| e.downcast_ref::<MessageTooLarge>());
    /// assert_eq!(too_large.map(|t| t.size), Some(100));
    /// let mut big = vec![0u8; 100];
    /// assert_eq!(server.recv(&mut big)?, Some(100));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match &self.inner {
            StreamInner::Local(stream) => stream.recv(buf),
            StreamInner::Net(stream) => stream.recv(buf),
        }
    }

    /// Receives one whole message into `buf`, which is cleared first and grown to fit.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), but no message is too large for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
    /// # let name = format!("doc-recv-vec-{}", std::process::id());
    ///
    /// let listener = Listener::bind_with(&name, ListenerOptions::new().mode(Mode::Messages))?;
    /// let client = Stream::connect_with(&name, ConnectOptions::new().mode(Mode::Messages))?;
    /// let server = listener.accept()?;
    /// // Larger than the pipe's buffers: sent from another thread while this one receives.
    /// let sending = std::thread::spawn(move || client.send(&vec![1u8; 200_000]));
    /// let mut msg = Vec::new(); // reused from message to message
    /// assert_eq!(server.recv_to_vec(&mut msg)?, Some(200_000));
    /// assert_eq!(msg.len(), 200_000);
    /// sending.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_to_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        match &self.inner {
            StreamInner::Local(stream) => stream.recv_to_vec(buf),
            StreamInner::Net(stream) => stream.recv_to_vec(buf),
        }
    }

    /// Shuts down the write side: the peer reads EOF after everything sent before; this end
    /// can still read.
    ///
    /// # Errors
    ///
    /// The OS error; `Unsupported` on Windows, whose named pipes have no half-close (drop the
    /// stream instead: the peer still reads everything sent before).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.shutdown_write(),
            StreamInner::Net(stream) => stream.shutdown_write(),
        }
    }

    /// Who is on the other end: its process id (Linux, macOS, Windows) and, on Unix, its
    /// user and group ids. A `tcp://` or `tls://` connection has none of them: see
    /// [`peer_addr`](Self::peer_addr) and [`peer_certificate`](Self::peer_certificate).
    ///
    /// # Errors
    ///
    /// The OS error.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit::{Listener, Stream};
    /// # let name = format!("doc-peer-{}", std::process::id());
    ///
    /// let listener = Listener::bind(&name)?;
    /// let _client = Stream::connect(&name)?;
    /// let peer = listener.accept()?.peer_credentials()?;
    /// # #[cfg(any(windows, target_os = "linux", target_os = "macos"))]
    /// assert_eq!(peer.pid, Some(std::process::id())); // the client is this process
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        match &self.inner {
            StreamInner::Local(stream) => stream.peer_credentials(),
            StreamInner::Net(stream) => Ok(stream.peer_credentials()),
        }
    }

    /// A second handle on the same connection, so that one thread can read while another
    /// writes: a `dup` of the socket on Unix, a `DuplicateHandle` of the pipe on Windows. The
    /// connection ends when both are dropped. Use one handle for reading and one for writing:
    /// in message mode, two readers would share out the messages between them.
    ///
    /// The handles share the stream's message state: a half-read message (a framed frame, or
    /// on Windows a message held because it did not fit) goes to whichever handle reads
    /// next, and two handles reading (or writing) messages take turns, message by message.
    ///
    /// # Platform-specific behavior
    ///
    /// Unix: non-blocking mode, timeouts and `shutdown_write` belong to the connection, so
    /// they hold for both handles (FIFO connections share their pair of FIFOs: no descriptor
    /// is duplicated). Windows: each handle has its own timeouts.
    ///
    /// # Errors
    ///
    /// The OS error of `dup` or `DuplicateHandle`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::thread;
    /// use pipekit::{Listener, Stream};
    /// # let name = format!("doc-clone-{}", std::process::id());
    /// # let name = name.as_str();
    ///
    /// let listener = Listener::bind(name)?;
    /// let server = thread::spawn(move || -> std::io::Result<()> {
    ///     let mut conn = listener.accept()?;
    ///     std::io::copy(&mut conn.try_clone()?, &mut conn)?; // echo until EOF
    ///     Ok(())
    /// });
    /// let mut client = Stream::connect(name)?;
    /// let mut reader = client.try_clone()?;
    /// let data = vec![7u8; 1 << 20]; // more than the socket buffers hold
    /// let echo = thread::spawn(move || {
    ///     let mut back = vec![0u8; 1 << 20];
    ///     reader.read_exact(&mut back).map(|()| back)
    /// });
    /// client.write_all(&data)?;
    /// assert_eq!(echo.join().unwrap()?, data);
    /// drop(client);
    /// server.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<Stream> {
        let inner = match &self.inner {
            StreamInner::Local(stream) => StreamInner::Local(stream.try_clone()?),
            StreamInner::Net(stream) => StreamInner::Net(stream.clone()),
        };
        Ok(Stream { inner })
    }

    /// Makes reads and `recv` fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::time::Duration;
    /// use pipekit::{Listener, Stream};
    /// # let name = format!("doc-timeout-{}", std::process::id());
    ///
    /// let listener = Listener::bind(&name)?;
    /// let mut client = Stream::connect(&name)?;
    /// let _server = listener.accept()?; // says nothing
    /// client.set_read_timeout(Some(Duration::from_millis(50)))?;
    /// let err = client.read(&mut [0u8; 8]).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.set_read_timeout(timeout),
            StreamInner::Net(stream) => stream.set_read_timeout(timeout),
        }
    }

    /// Makes writes and `send` fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.set_write_timeout(timeout),
            StreamInner::Net(stream) => stream.set_write_timeout(timeout),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.inner {
            StreamInner::Local(stream) => (&*stream).read(buf),
            StreamInner::Net(stream) => (&*stream).read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match &self.inner {
            StreamInner::Local(stream) => (&*stream).read_vectored(bufs),
            StreamInner::Net(stream) => (&*stream).read_vectored(bufs),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.inner {
            StreamInner::Local(stream) => (&*stream).write(buf),
            StreamInner::Net(stream) => (&*stream).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.inner {
            StreamInner::Local(stream) => (&*stream).write_vectored(bufs),
            StreamInner::Net(stream) => (&*stream).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => (&*stream).flush(),
            StreamInner::Net(stream) => (&*stream).flush(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

impl Connection for Stream {
    fn mode(&self) -> Mode {
        Stream::mode(self)
    }

    fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        Stream::peer_credentials(self)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.set_read_timeout(timeout),
            StreamInner::Net(stream) => stream.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.set_write_timeout(timeout),
            StreamInner::Net(stream) => stream.set_write_timeout(timeout),
        }
    }
}

impl ByteStream for Stream {
    fn shutdown_write(&self) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.shutdown_write(),
            StreamInner::Net(stream) => stream.shutdown_write(),
        }
    }
}

impl MessagePipe for Stream {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match &self.inner {
            StreamInner::Local(stream) => stream.send(msg),
            StreamInner::Net(stream) => stream.send(msg),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match &self.inner {
            StreamInner::Local(stream) => stream.recv(buf),
            StreamInner::Net(stream) => stream.recv(buf),
        }
    }

    fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        match &self.inner {
            StreamInner::Local(stream) => stream.recv_to_vec(buf),
            StreamInner::Net(stream) => stream.recv_to_vec(buf),
        }
    }

    fn max_message_size(&self) -> usize {
        Stream::max_message_size(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_and_sync() {
        assert_send_sync::<Listener>();
        assert_send_sync::<Stream>();
        assert_send_sync::<PipeName>();
        assert_send_sync::<ListenerOptions>();
    }
}

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
