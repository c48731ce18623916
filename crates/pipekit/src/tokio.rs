//! Tokio integration (feature `tokio`): an async [`Listener`] and [`Stream`] in byte and
//! message mode, with the same names and rules on every OS.
//!
//! Byte mode is `AsyncRead + AsyncWrite`; message mode is [`Stream::send`] / [`Stream::recv`]
//! / [`Stream::recv_to_vec`] with the same boundary and size rules as the blocking API (a
//! message too large for the buffer is reported with its size and stays readable). Several
//! tasks may wait in [`Listener::accept`] at once: share the listener in an `Arc`.
//!
//! # Platform-specific behavior
//!
//! - Unix: sockets and FIFOs are watched by Tokio's reactor (`AsyncFd`). The FIFO
//!   transport's `accept` finishes each client's handshake before it returns; a client that
//!   stalls in the handshake holds the accepting task for at most the FIFO handshake timeout
//!   (`os::unix::fifo::HANDSHAKE_TIMEOUT`).
//! - Windows: byte-mode pipes are Tokio's own named-pipe types (on the runtime's completion
//!   port); message-mode streams are pipekit's non-blocking streams (overlapped reads into a
//!   buffer the stream owns, completions noticed by the system thread pool, which wakes the
//!   task), because Tokio's types read through a fixed buffer and would split messages.
//!   `accept` waits with an overlapped `ConnectNamedPipe`; with an instance limit
//!   (`max_instances`) it waits until an accepted stream is dropped.
//!
//! - `tcp://` and `tls://` names ([`crate::net`]): Tokio's own TCP sockets, TLS from
//!   `tokio-rustls` with the same certificates, checks and ALPN mode agreement as the blocking
//!   API, and the same framing in message mode; a TLS listener runs each handshake as a task
//!   of its own, with its deadline. A blocking `tcp://` stream can be made async
//!   ([`Stream::from_blocking`]); a blocking `tls://` one cannot (connect with this API).
//!
//! `connect` opens a local pipe on Tokio's blocking pool (it may wait for a busy server);
//! network names connect on the runtime itself.
//!
//! # Examples
//!
//! ```
//! use pipekit::tokio::{Listener, Stream};
//! use pipekit::{ConnectOptions, ListenerOptions, Mode};
//! # let name = format!("doc-tokio-{}", std::process::id());
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
//! # rt.block_on(async {
//!
//! let listener = Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))?;
//! let server = tokio::spawn(async move {
//!     let mut conn = listener.accept().await?;
//!     let mut buf = [0u8; 65535];
//!     while let Some(n) = conn.recv(&mut buf).await? {
//!         conn.send(&buf[..n]).await?;
//!     }
//!     Ok::<(), std::io::Error>(())
//! });
//! let mut client =
//!     Stream::connect_with(name.as_str(), ConnectOptions::new().mode(Mode::Messages)).await?;
//! client.send(b"ping").await?;
//! let mut reply = Vec::new();
//! client.recv_to_vec(&mut reply).await?;
//! assert_eq!(reply, b"ping");
//! drop(client);
//! server.await.unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! # })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::backend::tokio as imp;
use crate::net::tokio as net;
use crate::{ConnectOptions, IntoPipeName, ListenerOptions, Mode, PeerCredentials};

/// An async server: accepts like [`crate::Listener`], waiting without blocking the runtime.
#[derive(Debug)]
pub struct Listener {
    inner: Accept,
}

#[derive(Debug)]
enum Accept {
    Local(imp::Listener),
    Net(net::Listener),
}

impl Listener {
    /// Binds `name` in byte mode. Must run inside a Tokio runtime with I/O enabled.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind`].
    pub fn bind(name: impl IntoPipeName) -> io::Result<Listener> {
        Listener::from_blocking(crate::Listener::bind(name)?)
    }

    /// Binds `name` with `options`.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind_with`].
    pub fn bind_with(name: impl IntoPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        let name = name.into_pipe_name()?;
        if let Some(addr) = name.as_net() {
            return Ok(Listener {
                inner: Accept::Net(net::Listener::bind(addr, options)?),
            });
        }
        // Windows: the async streams move everything on the pipe, so nothing is offered.
        #[cfg(windows)]
        let options = &{
            let mut options = options.clone();
            options.shared_memory(None);
            options
        };
        Listener::from_blocking(crate::Listener::bind_with(name, options)?)
    }

    /// Makes a listener async (for example one bound with OS-specific options, such as the
    /// FIFO transport on Unix).
    ///
    /// # Errors
    ///
    /// The OS error of switching the listener to non-blocking mode (Unix) or of creating
    /// its waiting instance (Windows), or the runtime's error registering it; `Unsupported`
    /// for a `tcp://` or `tls://` listener (bind it with [`bind_with`](Self::bind_with)).
    pub fn from_blocking(listener: crate::Listener) -> io::Result<Listener> {
        Ok(Listener {
            inner: Accept::Local(imp::Listener::new(listener.into_local()?)?),
        })
    }

    /// Waits for the next client.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::accept`].
    pub async fn accept(&self) -> io::Result<Stream> {
        let inner = match &self.inner {
            Accept::Local(listener) => Conn::Local(listener.accept().await?),
            Accept::Net(listener) => Conn::Net(listener.accept().await?),
        };
        Ok(Stream { inner })
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        match &self.inner {
            Accept::Local(listener) => listener.mode(),
            Accept::Net(listener) => listener.mode(),
        }
    }

    /// The address a `tcp://` or `tls://` listener is bound to.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a local name.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.inner {
            Accept::Local(_) => Err(crate::net::network_only("local_addr")),
            Accept::Net(listener) => Ok(listener.local_addr()),
        }
    }
}

/// An async connection: `AsyncRead + AsyncWrite` in byte mode, `send`/`recv` in message mode.
#[derive(Debug)]
pub struct Stream {
    inner: Conn,
}

/// A local pipe on the backend's reactor, or a network connection.
#[derive(Debug)]
enum Conn {
    Local(imp::Stream),
    Net(net::Stream),
}

impl Stream {
    /// Connects to `name` in byte mode.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::connect`].
    pub async fn connect(name: impl IntoPipeName) -> io::Result<Stream> {
        Stream::connect_with(name, &ConnectOptions::new()).await
    }

    /// Connects to `name` with `options`, on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::connect_with`].
    pub async fn connect_with(
        name: impl IntoPipeName,
        options: &ConnectOptions,
    ) -> io::Result<Stream> {
        let name = name.into_pipe_name()?;
        if let Some(addr) = name.as_net() {
            return Ok(Stream {
                inner: Conn::Net(net::connect(addr, options).await?),
            });
        }
        // Windows: the async streams move everything on the pipe; asking would only cost a
        // look at the sibling name.
        #[cfg(windows)]
        let options = &{
            let mut options = options.clone();
            options.shared_memory(false);
            options
        };
        let options = options.clone();
        let stream =
            tokio::task::spawn_blocking(move || crate::Stream::connect_with(name, &options))
                .await
                .map_err(io::Error::other)??;
        Stream::from_blocking(stream)
    }

    /// Makes a connected stream async. Must run inside a runtime with I/O enabled. A message
    /// the blocking stream was holding (one that did not fit a caller's buffer) is the first
    /// one received.
    ///
    /// # Errors
    ///
    /// The OS error of switching modes or setting up the stream's waits, or the runtime's
    /// error registering it.
    pub fn from_blocking(stream: crate::Stream) -> io::Result<Stream> {
        let inner = match stream.into_net() {
            Ok(net) => Conn::Net(net::Stream::from_blocking(net)?),
            Err(stream) => Conn::Local(imp::Stream::new(stream.into_local()?)?),
        };
        Ok(Stream { inner })
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// The address of the other end of a `tcp://` or `tls://` connection.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a local pipe.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.inner {
            Conn::Local(_) => Err(crate::net::network_only("peer_addr (use peer_credentials)")),
            Conn::Net(stream) => Ok(stream.peer_addr()),
        }
    }

    /// The address of this end of a `tcp://` or `tls://` connection.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a local pipe; the OS error.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.inner {
            Conn::Local(_) => Err(crate::net::network_only("local_addr")),
            Conn::Net(stream) => stream.local_addr(),
        }
    }

    /// The certificate the other end of a `tls://` connection showed (DER), as
    /// [`crate::Stream::peer_certificate`].
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.inner {
            Conn::Local(_) => None,
            Conn::Net(stream) => stream.peer_certificate(),
        }
    }

    /// Who is on the other end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::peer_credentials`].
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Whether this connection runs over shared memory, as
    /// [`crate::Stream::is_shared_memory`] (a client that asked looks for the offer now,
    /// without waiting).
    pub fn is_shared_memory(&self) -> bool {
        match &self.inner {
            #[cfg(unix)]
            Conn::Local(stream) => stream.is_shared_memory(),
            _ => false,
        }
    }

    /// Sends `msg` as one message, waiting until all of it is written.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.inner.send(msg).await
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`]: a message too large for `buf` is reported with its size
    /// and stays readable.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.inner.recv(buf).await
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv_to_vec`].
    pub async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.inner.recv_to_vec(buf).await
    }

    /// Splits the stream into a read half and a write half that borrow it, for reading and
    /// writing at once from one task (with `tokio::join!` or `select!`).
    ///
    /// Each half keeps the stream's mode: in message mode the read half has
    /// [`recv`](ReadHalf::recv) and the write half [`send`](WriteHalf::send), with the same
    /// boundary rules; in byte mode they are `AsyncRead` and `AsyncWrite`.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        halves(Inner::Borrowed(&mut self.inner))
    }

    /// Splits the stream into owned halves, which can move to different tasks. Dropping
    /// both closes the connection; shutting down the write half (byte mode) ends what the
    /// peer reads, as on the whole stream.
    ///
    /// # Examples
    ///
    /// Both ways at once, in two tasks:
    ///
    /// ```
    /// use pipekit::tokio::{Listener, Stream};
    /// use pipekit::{ConnectOptions, ListenerOptions, Mode};
    /// # let name = format!("doc-split-{}", std::process::id());
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    /// # rt.block_on(async {
    ///
    /// let listener = Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))?;
    /// let server = tokio::spawn(async move {
    ///     let conn = listener.accept().await?;
    ///     let (mut rx, mut tx) = conn.into_split();
    ///     let mut buf = Vec::new();
    ///     while rx.recv_to_vec(&mut buf).await?.is_some() {
    ///         tx.send(&buf).await?;
    ///     }
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// let client =
    ///     Stream::connect_with(name.as_str(), ConnectOptions::new().mode(Mode::Messages)).await?;
    /// let (mut rx, mut tx) = client.into_split();
    /// let sending = tokio::spawn(async move {
    ///     for i in 0..100u32 {
    ///         tx.send(&i.to_be_bytes()).await?;
    ///     }
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// let mut buf = [0u8; 4];
    /// for i in 0..100u32 {
    ///     assert_eq!(rx.recv(&mut buf).await?, Some(4));
    ///     assert_eq!(u32::from_be_bytes(buf), i);
    /// }
    /// sending.await.unwrap()?;
    /// drop(rx);
    /// server.await.unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// # })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        halves(Inner::Owned(self.inner))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// `poll_shutdown`: on Unix the peer reads EOF after everything sent before; named pipes have
/// no half-close, so on Windows it flushes and the pipe ends when the stream is dropped.
impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The stream under two halves: owned, or borrowed from a [`Stream`].
#[derive(Debug)]
enum Inner<'a> {
    Owned(Conn),
    Borrowed(&'a mut Conn),
}

/// What both halves hold. The lock is taken only inside one poll of one operation, never
/// across an `.await`: a half waiting for the OS does not hold up the other. The stream
/// keeps the wakers of reads and writes apart, so each half's task is woken for its own
/// direction.
type Shared<'a> = Arc<Mutex<Inner<'a>>>;

fn halves<'a>(inner: Inner<'a>) -> (ReadHalf<'a>, WriteHalf<'a>) {
    let shared = Arc::new(Mutex::new(inner));
    (
        ReadHalf {
            shared: Arc::clone(&shared),
        },
        WriteHalf { shared },
    )
}

/// Runs `f` on the stream under `shared`.
fn with<R>(shared: &Shared<'_>, f: impl FnOnce(&mut Conn) -> R) -> R {
    let mut inner = shared.lock().unwrap_or_else(|e| e.into_inner());
    match &mut *inner {
        Inner::Owned(stream) => f(stream),
        Inner::Borrowed(stream) => f(stream),
    }
}

/// The read half of a [`Stream`], from [`Stream::split`] (borrowing) or
/// [`Stream::into_split`] ([`OwnedReadHalf`]).
#[derive(Debug)]
pub struct ReadHalf<'a> {
    shared: Shared<'a>,
}

/// The write half of a [`Stream`], from [`Stream::split`] (borrowing) or
/// [`Stream::into_split`] ([`OwnedWriteHalf`]).
#[derive(Debug)]
pub struct WriteHalf<'a> {
    shared: Shared<'a>,
}

/// The read half from [`Stream::into_split`]; it can move to another task.
pub type OwnedReadHalf = ReadHalf<'static>;

/// The write half from [`Stream::into_split`]; it can move to another task.
pub type OwnedWriteHalf = WriteHalf<'static>;

impl ReadHalf<'_> {
    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        with(&self.shared, |s| s.mode())
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`Stream::recv`].
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        poll_fn(|cx| with(&self.shared, |s| s.poll_recv(cx, buf))).await
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit).
    ///
    /// # Errors
    ///
    /// As [`Stream::recv_to_vec`].
    pub async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        poll_fn(|cx| with(&self.shared, |s| s.poll_recv_to_vec(cx, buf))).await
    }
}

impl WriteHalf<'_> {
    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        with(&self.shared, |s| s.mode())
    }

    /// Sends `msg` as one message, waiting until all of it is written.
    ///
    /// # Errors
    ///
    /// As [`Stream::send`].
    pub async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        poll_fn(|cx| with(&self.shared, |s| s.poll_send(cx, msg))).await?;
        poll_fn(|cx| with(&self.shared, |s| Pin::new(s).poll_flush(cx))).await
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        with(&self.shared, |s| Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        with(&self.shared, |s| Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with(&self.shared, |s| Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with(&self.shared, |s| Pin::new(s).poll_shutdown(cx))
    }
}

impl Conn {
    fn mode(&self) -> Mode {
        match self {
            Conn::Local(stream) => stream.mode(),
            Conn::Net(stream) => stream.mode(),
        }
    }

    fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        match self {
            Conn::Local(stream) => stream.peer_credentials(),
            Conn::Net(stream) => Ok(stream.peer_credentials()),
        }
    }

    async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::Local(stream) => stream.send(msg).await,
            Conn::Net(stream) => stream.send(msg).await,
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Conn::Local(stream) => stream.recv(buf).await,
            Conn::Net(stream) => stream.recv(buf).await,
        }
    }

    async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        match self {
            Conn::Local(stream) => stream.recv_to_vec(buf).await,
            Conn::Net(stream) => stream.recv_to_vec(buf).await,
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        match self {
            Conn::Local(stream) => stream.poll_send(cx, msg),
            Conn::Net(stream) => stream.poll_send(cx, msg),
        }
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        match self {
            Conn::Local(stream) => stream.poll_recv(cx, buf),
            Conn::Net(stream) => stream.poll_recv(cx, buf),
        }
    }

    fn poll_recv_to_vec(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        match self {
            Conn::Local(stream) => stream.poll_recv_to_vec(cx, buf),
            Conn::Net(stream) => stream.poll_recv_to_vec(cx, buf),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Local(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Net(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Local(stream) => Pin::new(stream).poll_write(cx, buf),
            Conn::Net(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Local(stream) => Pin::new(stream).poll_flush(cx),
            Conn::Net(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Local(stream) => Pin::new(stream).poll_shutdown(cx),
            Conn::Net(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
