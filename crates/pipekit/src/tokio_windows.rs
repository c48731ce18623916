//! Tokio integration (feature `tokio`) on Windows: byte mode only, for now.
//!
//! An accepted or connected byte-mode pipe is handed to Tokio's own
//! [`NamedPipeServer`] / [`NamedPipeClient`] (pipekit's handles
//! are opened for overlapped I/O, which is what they need), so [`Stream`] is
//! `AsyncRead + AsyncWrite` driven by the runtime's I/O completion port.
//!
//! Message mode is not offered here yet: Tokio's pipe types read through a fixed internal
//! buffer and do not keep message boundaries, and an async message reader over overlapped
//! I/O is still to be written. [`Stream::from_blocking`] refuses a message-mode stream with
//! `Unsupported`. Waiting for a client (`accept`) and connecting run on Tokio's blocking pool.

use std::io;
use std::os::windows::io::IntoRawHandle;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pipekit_core::slots::Slot;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use crate::{ConnectOptions, IntoPipeName, ListenerOptions, Mode};

/// An async server for byte-mode pipes.
#[derive(Debug, Clone)]
pub struct Listener {
    inner: Arc<crate::Listener>,
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

    /// Binds `name` with `options`, which must ask for byte mode.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::bind_with`]; `Unsupported` for message mode.
    pub fn bind_with(name: impl IntoPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        if options.mode == Mode::Messages {
            return Err(message_mode());
        }
        Listener::from_blocking(crate::Listener::bind_with(name, options)?)
    }

    /// Wraps a byte-mode listener.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a message-mode listener.
    pub fn from_blocking(listener: crate::Listener) -> io::Result<Listener> {
        if listener.mode() == Mode::Messages {
            return Err(message_mode());
        }
        Ok(Listener {
            inner: Arc::new(listener),
        })
    }

    /// Waits for the next client (on the blocking pool).
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::accept`].
    pub async fn accept(&self) -> io::Result<Stream> {
        let listener = Arc::clone(&self.inner);
        let stream = tokio::task::spawn_blocking(move || listener.accept())
            .await
            .map_err(io::Error::other)??;
        Stream::from_blocking(stream)
    }
}

fn message_mode() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "async message mode is not available on Windows yet; use the blocking API or byte mode",
    )
}

/// An async byte-mode pipe.
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

    /// Connects to `name` with `options` (byte mode), on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::connect_with`]; `Unsupported` for message mode.
    pub async fn connect_with(
        name: impl IntoPipeName,
        options: &ConnectOptions,
    ) -> io::Result<Stream> {
        if options.mode == Mode::Messages {
            return Err(message_mode());
        }
        let name = name.into_pipe_name()?;
        let options = options.clone();
        let stream =
            tokio::task::spawn_blocking(move || crate::Stream::connect_with(name, &options))
                .await
                .map_err(io::Error::other)??;
        Stream::from_blocking(stream)
    }

    /// Hands a byte-mode stream to Tokio. Must run inside a runtime with I/O enabled.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a message-mode stream; the runtime's error registering the handle.
    pub fn from_blocking(stream: crate::Stream) -> io::Result<Stream> {
        if stream.mode() == Mode::Messages {
            return Err(message_mode());
        }
        let (handle, server_end, slot) = stream.inner.into_parts();
        let raw = handle.into_raw_handle();
        // SAFETY: `raw` is an open named-pipe handle opened for overlapped I/O, and ownership
        // moves to the returned Tokio object (`into_raw_handle` gave it up), so nothing else
        // closes or uses it.
        let pipe = unsafe {
            if server_end {
                Pipe::Server(NamedPipeServer::from_raw_handle(raw)?)
            } else {
                Pipe::Client(NamedPipeClient::from_raw_handle(raw)?)
            }
        };
        Ok(Stream { pipe, _slot: slot })
    }
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().pipe {
            Pipe::Server(p) => Pin::new(p).poll_flush(cx),
            Pipe::Client(p) => Pin::new(p).poll_flush(cx),
        }
    }

    /// Flushes; named pipes have no half-close, so the pipe ends when the stream is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().pipe {
            Pipe::Server(p) => Pin::new(p).poll_shutdown(cx),
            Pipe::Client(p) => Pin::new(p).poll_shutdown(cx),
        }
    }
}
