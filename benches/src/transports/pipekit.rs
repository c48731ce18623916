//! pipekit's own connections as harness connections, blocking and through the Tokio API.
//!
//! pipekit's transports run with `max_message_size` set to the chunk size, as an application
//! that knows its largest message would: that keeps message-mode receives to one system call.

use std::io::{self, Read, Write};

use pipekit::{ConnectOptions, ListenerOptions, Mode};

use crate::transport::{Conn, Listen};

/// The options of both ends for `size`-byte chunks in `mode`.
pub(crate) fn options(mode: Mode, size: usize) -> (ListenerOptions, ConnectOptions) {
    let max = size.max(8);
    let mut listen = ListenerOptions::new();
    listen.mode(mode).max_message_size(max);
    let mut connect = ConnectOptions::new();
    connect.mode(mode).max_message_size(max);
    (listen, connect)
}

/// A pipekit connection, used in its mode: `send`/`recv` for messages, `Read`/`Write` for
/// bytes.
pub(crate) fn conn(stream: pipekit::Stream) -> Box<dyn Conn> {
    match stream.mode() {
        Mode::Messages => Box::new(Messages(stream)),
        _ => Box::new(Bytes(stream)),
    }
}

/// How a listener's connections are used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `send`/`recv` or `Read`/`Write`.
    Blocking,
    /// The Tokio API, `block_on` per operation.
    Tokio,
    /// `send_with`/`recv_with` (message mode, on shared memory).
    ZeroCopy,
}

/// The rings' capacity for `size`-byte messages: 256 KiB, or room for four messages. (Small
/// rings stay in cache: on the reference machine 256 KiB moved 4 KiB messages almost three
/// times as fast as 4 MiB, and 64 KiB messages as fast.)
pub(crate) fn shm_capacity(size: usize) -> usize {
    (256 << 10).max(size.saturating_add(pipekit::SHARED_MEMORY_OVERHEAD) * 4)
}

/// A pipekit listener at `addr`, its files registered for removal should the run be
/// stopped.
pub(crate) fn listen(listener: pipekit::Listener, addr: &str, api: Api) -> Box<dyn Listen> {
    let listener = std::sync::Arc::new(listener);
    #[cfg(unix)]
    let guard = {
        let listener = std::sync::Arc::clone(&listener);
        Some(crate::cleanup::on_exit(move || {
            pipekit::os::unix::ListenerExt::remove_files(&*listener);
        }))
    };
    #[cfg(not(unix))]
    let guard = None;
    Box::new(Listener {
        listener,
        addr: addr.to_string(),
        api,
        _guard: guard,
    })
}

struct Listener {
    listener: std::sync::Arc<pipekit::Listener>,
    addr: String,
    api: Api,
    _guard: Option<crate::cleanup::Guard>,
}

impl Listen for Listener {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
        let stream = self.listener.accept()?;
        match self.api {
            Api::Blocking => Ok(conn(stream)),
            Api::Tokio => TokioConn::boxed(stream),
            Api::ZeroCopy => Ok(zero_copy(stream)),
        }
    }
}

/// The error for a message of the wrong length.
pub(crate) fn wrong_length(expected: usize, got: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("expected a {expected}-byte message, got {got}"),
    )
}

/// A pipekit connection in message mode.
struct Messages(pipekit::Stream);

impl Conn for Messages {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.send(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        Messages::recv_into(&self.0, buf)
    }

    fn settings(&self) -> String {
        settings(&self.0)
    }
}

impl Messages {
    /// One message of exactly `buf.len()` bytes.
    fn recv_into(stream: &pipekit::Stream, buf: &mut [u8]) -> io::Result<()> {
        match stream.recv(buf)? {
            Some(n) if n == buf.len() => Ok(()),
            Some(n) => Err(wrong_length(buf.len(), n)),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// A pipekit message connection used in place: `send_with` writes each message where it
/// will be read, `recv_with` reads it there (on shared memory, no copy on either side
/// beyond the producer's writing and the consumer's looking).
pub(crate) fn zero_copy(stream: pipekit::Stream) -> Box<dyn Conn> {
    Box::new(ZeroCopy(stream))
}

struct ZeroCopy(pipekit::Stream);

impl Conn for ZeroCopy {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.send_with(buf.len(), |dst| dst.copy_from_slice(buf))
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        Messages::recv_into(&self.0, buf)
    }

    fn recv_check(&mut self, _buf: &mut [u8], expected: &[u8]) -> io::Result<bool> {
        match self.0.recv_with(|msg| msg == expected)? {
            Some(same) => Ok(same),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn settings(&self) -> String {
        settings(&self.0)
    }
}

/// A pipekit connection in byte mode.
struct Bytes(pipekit::Stream);

impl Conn for Bytes {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }

    fn settings(&self) -> String {
        settings(&self.0)
    }
}

#[cfg(unix)]
fn settings(stream: &pipekit::Stream) -> String {
    super::fd::settings(std::os::fd::AsFd::as_fd(stream))
}

#[cfg(not(unix))]
fn settings(_stream: &pipekit::Stream) -> String {
    String::from("in/out buffers 65535")
}

/// A pipekit message stream driven through its Tokio API, on a current-thread runtime of
/// its own (`block_on` per message).
pub(crate) struct TokioConn {
    runtime: tokio::runtime::Runtime,
    stream: pipekit::tokio::Stream,
}

impl TokioConn {
    pub(crate) fn boxed(stream: pipekit::Stream) -> io::Result<Box<dyn Conn>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let stream = {
            let _inside = runtime.enter();
            pipekit::tokio::Stream::from_blocking(stream)?
        };
        Ok(Box::new(TokioConn { runtime, stream }))
    }
}

impl Conn for TokioConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.runtime.block_on(self.stream.send(buf))
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.runtime.block_on(self.stream.recv(buf))? {
            Some(n) if n == buf.len() => Ok(()),
            Some(n) => Err(wrong_length(buf.len(), n)),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}
