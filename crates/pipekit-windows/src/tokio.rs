//! The Windows core of `pipekit::tokio` (feature `tokio`): a [`Listener`] and [`Stream`] in
//! byte and message mode.
//!
//! Applications use `pipekit::tokio`, which has the same names on every OS; this module is
//! what it runs on Windows.
//!
//! - Byte mode: an accepted or connected pipe is handed to Tokio's own
//!   [`NamedPipeServer`] / [`NamedPipeClient`] (pipekit's handles are opened for overlapped
//!   I/O, which is what they need), so [`Stream`] is `AsyncRead + AsyncWrite` on the
//!   runtime's I/O completion port.
//! - Message mode: Tokio's pipe types read through a fixed buffer and would split messages,
//!   so message streams are [`nonblocking::Stream`]s: overlapped reads into a buffer the
//!   stream owns, completions noticed by the system thread pool, which wakes the task.
//!
//! `accept` waits with an overlapped `ConnectNamedPipe` (no thread is held). With an instance
//! limit (`max_instances`), `accept` waits until an accepted stream is dropped.

use std::future::poll_fn;
use std::io;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::pin::Pin;
use std::task::{Context, Poll};

use pipekit_core::error::wrong_mode;
use pipekit_core::slots::Slot;
use pipekit_core::{Mode, PeerCredentials};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use crate::{nonblocking, sys};

/// An async server. Several tasks may wait in [`accept`](Self::accept) at once (share it in
/// an `Arc`).
#[derive(Debug)]
pub struct Listener {
    inner: nonblocking::Listener,
}

impl Listener {
    /// Makes `listener` async; it starts waiting for its first client.
    ///
    /// # Errors
    ///
    /// The OS error of creating the waiting instance.
    pub fn new(listener: crate::Listener) -> io::Result<Listener> {
        Ok(Listener {
            inner: nonblocking::Listener::new(listener)?,
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
    /// Makes a connected stream async. Must run inside a runtime with I/O enabled.
    ///
    /// # Errors
    ///
    /// The runtime's error registering a byte-mode handle; the OS error of setting up a
    /// message-mode stream's events and waits.
    pub fn new(stream: crate::Stream) -> io::Result<Stream> {
        stream.on_pipe_only()?;
        if stream.mode() == Mode::Messages {
            return Ok(Stream {
                pipe: Pipe::Messages(nonblocking::Stream::new(stream)?),
                _slot: None,
            });
        }
        let (handle, end, slot) = stream.into_parts();
        Stream::from_handle(handle, end, slot)
    }

    fn from_nonblocking(stream: nonblocking::Stream) -> io::Result<Stream> {
        if stream.mode() == Mode::Messages {
            return Ok(Stream {
                pipe: Pipe::Messages(stream),
                _slot: None,
            });
        }
        let (handle, end, slot) = stream.into_parts()?;
        Stream::from_handle(handle, end, slot)
    }

    fn from_handle(
        handle: OwnedHandle,
        end: crate::PipeEnd,
        slot: Option<Slot>,
    ) -> io::Result<Stream> {
        let pipe = if end == crate::PipeEnd::Server {
            Pipe::Server(sys::tokio_server(handle)?)
        } else {
            Pipe::Client(sys::tokio_client(handle)?)
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

    /// The peer's process id (uid and gid are `None` on Windows).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::peer_credentials`].
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let pid = match &self.pipe {
            Pipe::Server(p) => sys::peer_pid(p.as_handle(), true)?,
            Pipe::Client(p) => sys::peer_pid(p.as_handle(), false)?,
            Pipe::Messages(s) => return s.peer_credentials(),
        };
        Ok(PeerCredentials::new(Some(pid), None, None))
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

    /// Starts sending `msg` as one message; `poll_flush` then waits for it to be written.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        match self.messages("send") {
            Ok(stream) => stream.poll_send(cx, msg),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Receives one message into `buf` when one has arrived.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`].
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        match self.messages("recv") {
            Ok(stream) => stream.poll_recv(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Receives one whole message into `buf` when one has arrived.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv_to_vec`].
    pub fn poll_recv_to_vec(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        match self.messages("recv_to_vec") {
            Ok(stream) => stream.poll_recv_to_vec(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`].
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
