//! Tokio integration (feature `tokio`, Unix): an async [`Listener`] and [`Stream`] built on
//! [`tokio::io::unix::AsyncFd`], over sockets and FIFOs alike.
//!
//! Byte mode is `AsyncRead + AsyncWrite`; message mode is [`Stream::send`] / [`Stream::recv`]
//! / [`Stream::recv_to_vec`] with the same boundary and size rules as the blocking API (a
//! message too large for the buffer is reported with its size and stays readable).
//!
//! The FIFO transport's `accept` finishes each client's handshake before it returns; a client
//! that stalls in the handshake holds the accepting task for at most
//! [`HANDSHAKE_TIMEOUT`](crate::os::unix::fifo::HANDSHAKE_TIMEOUT).
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

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::os::unix::{ListenerExt, StreamExt};
use crate::{ConnectOptions, IntoPipeName, ListenerOptions, Mode};

/// A descriptor owned by a pipekit object, watched by Tokio.
#[derive(Debug)]
struct Watched(RawFd);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// An async server: accepts like [`crate::Listener`], waiting without blocking the runtime.
#[derive(Debug)]
pub struct Listener {
    inner: AsyncFd<crate::Listener>,
}

impl Listener {
    /// Binds `name` in byte mode.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind`]; must run inside a Tokio runtime with I/O enabled.
    pub fn bind(name: impl IntoPipeName) -> io::Result<Listener> {
        Listener::from_blocking(crate::Listener::bind(name)?)
    }

    /// Binds `name` with `options`.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind_with`].
    pub fn bind_with(name: impl IntoPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        Listener::from_blocking(crate::Listener::bind_with(name, options)?)
    }

    /// Wraps a listener (for example one bound over FIFOs with
    /// [`ListenerExt::bind_unix`]); it is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// The OS error of switching modes or registering with the runtime.
    pub fn from_blocking(listener: crate::Listener) -> io::Result<Listener> {
        ListenerExt::set_nonblocking(&listener, true)?;
        // SAFETY: the listener owns its descriptor and keeps it open and unchanged for as
        // long as it lives; the AsyncFd owns the listener.
        let inner = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }?;
        Ok(Listener { inner })
    }

    /// Waits for the next client.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::accept`].
    pub async fn accept(&self) -> io::Result<Stream> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard.try_io(|inner| inner.get_ref().accept()) {
                Ok(result) => return Stream::from_blocking(result?),
                Err(_would_block) => continue,
            }
        }
    }

    /// The blocking listener underneath.
    pub fn get_ref(&self) -> &crate::Listener {
        self.inner.get_ref()
    }
}

/// An async connection, byte or message mode.
#[derive(Debug)]
pub struct Stream {
    // The watchers are declared (so dropped) before the stream that owns their descriptors:
    // a descriptor leaves the runtime before it is closed.
    /// The socket (both directions), or a FIFO connection's read FIFO.
    read: AsyncFd<Watched>,
    /// A FIFO connection's write FIFO.
    write: Option<AsyncFd<Watched>>,
    inner: crate::Stream,
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

    /// Connects to `name` with `options`. A wait for the server (`options.wait`) runs on a
    /// blocking thread.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::connect_with`].
    pub async fn connect_with(
        name: impl IntoPipeName,
        options: &ConnectOptions,
    ) -> io::Result<Stream> {
        let name = name.into_pipe_name()?;
        let options = options.clone();
        let stream =
            tokio::task::spawn_blocking(move || crate::Stream::connect_with(name, &options))
                .await
                .map_err(io::Error::other)??;
        Stream::from_blocking(stream)
    }

    /// Wraps a connected stream; it is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// The OS error of switching modes or registering with the runtime.
    pub fn from_blocking(stream: crate::Stream) -> io::Result<Stream> {
        StreamExt::set_nonblocking(&stream, true)?;
        let watch = |fd, interest| {
            // SAFETY: `fd` belongs to `stream`, which the returned Stream owns. The watchers
            // are dropped before it (field order), and the write watcher is dropped before
            // `poll_shutdown` closes the write FIFO; nothing else in this type closes or
            // replaces a descriptor, and the stream underneath is not handed out.
            unsafe { AsyncFd::register_with_interest(Watched(fd), interest) }
        };
        let (read, write) = match stream.raw_write_fd() {
            None => (
                watch(stream.as_raw_fd(), Interest::READABLE | Interest::WRITABLE)?,
                None,
            ),
            Some(write) => (
                watch(stream.as_raw_fd(), Interest::READABLE)?,
                Some(watch(write, Interest::WRITABLE)?),
            ),
        };
        Ok(Stream {
            read,
            write,
            inner: stream,
        })
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// Who is on the other end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::peer_credentials`].
    pub fn peer_credentials(&self) -> io::Result<crate::PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Sends `msg` as one message, waiting until all of it is written.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        loop {
            let writer = self.write.as_ref().unwrap_or(&self.read);
            let mut guard = writer.writable().await?;
            match guard.try_io(|_| self.inner.send(msg)) {
                Ok(result) => {
                    result?;
                    break;
                }
                Err(_would_block) => continue,
            }
        }
        self.flush_all().await
    }

    /// Writes the tail of a partly written frame, waiting as needed.
    async fn flush_all(&mut self) -> io::Result<()> {
        loop {
            let writer = self.write.as_ref().unwrap_or(&self.read);
            let mut guard = writer.writable().await?;
            match guard.try_io(|_| self.inner.flush()) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`]: a message too large for `buf` is reported with its size
    /// and stays readable.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let mut guard = self.read.readable().await?;
            match guard.try_io(|_| self.inner.recv(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one whole message into `buf` (cleared first).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv_to_vec`].
    pub async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        loop {
            let mut guard = self.read.readable().await?;
            match guard.try_io(|_| self.inner.recv_to_vec(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.read.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|_| this.inner.read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let writer = this.write.as_ref().unwrap_or(&this.read);
            let mut guard = ready!(writer.poll_write_ready(cx))?;
            match guard.try_io(|_| this.inner.write(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let writer = this.write.as_ref().unwrap_or(&this.read);
            let mut guard = ready!(writer.poll_write_ready(cx))?;
            match guard.try_io(|_| this.inner.flush()) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        let this = self.get_mut();
        // The write FIFO is about to close: stop watching it first.
        this.write = None;
        Poll::Ready(this.inner.shutdown_write())
    }
}
