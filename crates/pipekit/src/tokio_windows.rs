//! Tokio integration (feature `tokio`) on Windows: an async [`Listener`] and [`Stream`] in
//! byte and message mode.
//!
//! - Byte mode: an accepted or connected pipe is handed to Tokio's own
//!   [`NamedPipeServer`] / [`NamedPipeClient`] (pipekit's handles are opened for overlapped
//!   I/O, which is what they need), so [`Stream`] is `AsyncRead + AsyncWrite` on the
//!   runtime's I/O completion port.
//! - Message mode: Tokio's pipe types read through a fixed buffer and would split messages,
//!   so message streams are [`pipekit_windows::nonblocking::Stream`]s: overlapped reads into a
//!   buffer the stream owns, completions noticed by the system thread pool, which wakes the
//!   task. [`Stream::send`] / [`Stream::recv`] / [`Stream::recv_to_vec`] keep the blocking
//!   API's rules (a message too large for the buffer is reported with its size and stays
//!   readable).
//!
//! `accept` waits for clients with an overlapped `ConnectNamedPipe` (no thread is held);
//! `connect` opens the pipe on Tokio's blocking pool (it may wait for a busy server). With an
//! instance limit (`max_instances`), `accept` waits until an accepted stream is dropped.
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
use std::os::windows::io::IntoRawHandle;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pipekit_core::error::wrong_mode;
use pipekit_core::slots::Slot;
use pipekit_windows::nonblocking;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use crate::{ConnectOptions, IntoPipeName, ListenerOptions, Mode};

/// An async server. Clones share the listener; one task at a time should wait in `accept`.
#[derive(Debug, Clone)]
pub struct Listener {
    inner: Arc<nonblocking::Listener>,
}

impl Listener {
    /// Binds `name` in byte mode.
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
        Listener::from_blocking(crate::Listener::bind_with(name, options)?)
    }

    /// Makes a listener async and starts waiting for its first client.
    ///
    /// # Errors
    ///
    /// The OS error of creating the waiting instance.
    pub fn from_blocking(listener: crate::Listener) -> io::Result<Listener> {
        Ok(Listener {
            inner: Arc::new(nonblocking::Listener::new(listener.inner)?),
        })
    }

    /// Waits for the next client.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::accept`].
    pub async fn accept(&self) -> io::Result<Stream> {
        let stream = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        Stream::from_nonblocking(stream)
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }
}

/// An async connection: `AsyncRead + AsyncWrite` in byte mode, `send`/`recv` in message mode.
#[derive(Debug)]
pub struct Stream {
    pipe: Pipe,
    // Dropped after the pipe: the instance is closed before its place is given back.
    _slot: Option<Slot>,
}

#[derive(Debug)]
enum Pipe {
    Server(NamedPipeServer),
    Client(NamedPipeClient),
    Messages(nonblocking::Stream),
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
        let options = options.clone();
        let stream =
            tokio::task::spawn_blocking(move || crate::Stream::connect_with(name, &options))
                .await
                .map_err(io::Error::other)??;
        Stream::from_blocking(stream)
    }

    /// Makes a connected stream async. Must run inside a runtime with I/O enabled.
    ///
    /// # Errors
    ///
    /// The runtime's error registering a byte-mode handle; the OS error of setting up a
    /// message-mode stream's events and waits.
    pub fn from_blocking(stream: crate::Stream) -> io::Result<Stream> {
        if stream.mode() == Mode::Messages {
            return Ok(Stream {
                pipe: Pipe::Messages(nonblocking::Stream::new(stream.inner)?),
                _slot: None,
            });
        }
        let (handle, server_end, slot) = stream.inner.into_parts();
        Stream::from_handle(handle, server_end, slot)
    }

    fn from_nonblocking(stream: nonblocking::Stream) -> io::Result<Stream> {
        if stream.mode() == Mode::Messages {
            return Ok(Stream {
                pipe: Pipe::Messages(stream),
                _slot: None,
            });
        }
        let (handle, server_end, slot) = stream.into_parts()?;
        Stream::from_handle(handle, server_end, slot)
    }

    fn from_handle(
        handle: std::os::windows::io::OwnedHandle,
        server_end: bool,
        slot: Option<Slot>,
    ) -> io::Result<Stream> {
        let raw = handle.into_raw_handle();
        // SAFETY: `raw` is an open named-pipe handle opened for overlapped I/O and tied to no
        // completion port, and ownership moves to the returned Tokio object
        // (`into_raw_handle` gave it up), so nothing else closes or uses it.
        let pipe = unsafe {
            if server_end {
                Pipe::Server(NamedPipeServer::from_raw_handle(raw)?)
            } else {
                Pipe::Client(NamedPipeClient::from_raw_handle(raw)?)
            }
        };
        Ok(Stream { pipe, _slot: slot })
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        match &self.pipe {
            Pipe::Messages(_) => Mode::Messages,
            _ => Mode::Bytes,
        }
    }

    fn messages(&mut self, operation: &str) -> io::Result<&mut nonblocking::Stream> {
        match &mut self.pipe {
            Pipe::Messages(stream) => Ok(stream),
            _ => Err(wrong_mode(operation, Mode::Bytes)),
        }
    }

    /// Sends `msg` as one message and waits until it is written. If the future is dropped
    /// after the message was handed to the pipe, it is still written.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let stream = self.messages("send")?;
        poll_fn(|cx| stream.poll_send(cx, msg)).await?;
        poll_fn(|cx| stream.poll_flush(cx)).await
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`]: a message too large for `buf` is reported with its size
    /// and stays readable.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let stream = self.messages("recv")?;
        poll_fn(|cx| stream.poll_recv(cx, buf)).await
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv_to_vec`].
    pub async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let stream = self.messages("recv_to_vec")?;
        poll_fn(|cx| stream.poll_recv_to_vec(cx, buf)).await
    }
}

fn byte_mode_only(operation: &str) -> io::Error {
    wrong_mode(operation, Mode::Messages)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().pipe {
            Pipe::Server(p) => Pin::new(p).poll_read(cx, buf),
            Pipe::Client(p) => Pin::new(p).poll_read(cx, buf),
            Pipe::Messages(_) => Poll::Ready(Err(byte_mode_only("AsyncRead"))),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().pipe {
            Pipe::Server(p) => Pin::new(p).poll_write(cx, buf),
            Pipe::Client(p) => Pin::new(p).poll_write(cx, buf),
            Pipe::Messages(_) => Poll::Ready(Err(byte_mode_only("AsyncWrite"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().pipe {
            Pipe::Server(p) => Pin::new(p).poll_flush(cx),
            Pipe::Client(p) => Pin::new(p).poll_flush(cx),
            Pipe::Messages(s) => s.poll_flush(cx),
        }
    }

    /// Flushes; named pipes have no half-close, so the pipe ends when the stream is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().pipe {
            Pipe::Server(p) => Pin::new(p).poll_shutdown(cx),
            Pipe::Client(p) => Pin::new(p).poll_shutdown(cx),
            Pipe::Messages(s) => s.poll_flush(cx),
        }
    }
}
