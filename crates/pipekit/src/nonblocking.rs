//! A listener and message streams that never block, the same on every OS, for event loops.
//!
//! [`Listener::accept`], [`Stream::try_send`], [`Stream::try_flush`] and the
//! [`try_recv`](Stream::try_recv) pair fail with `WouldBlock` instead of waiting. With the
//! `mio` feature both types are `mio::event::Source`s: register them for
//! `READABLE | WRITABLE`, and after any event on a stream call `try_recv` until `WouldBlock`,
//! then `try_flush` and `try_send` what waits until one says `WouldBlock`. (Events may carry
//! either flag whatever happened: on Windows a completion wakes the token, on Unix the
//! socket's readiness does.)
//!
//! Underneath: on Unix the listener's and the connection's own descriptors in non-blocking
//! mode; on Windows overlapped operations (`os::windows::nonblocking`, which also has
//! `poll_*` forms), which keep message boundaries however long a message is.
//!
//! A message is accepted by `try_send` whole or not at all. On Unix part of it may still be
//! waiting in the stream (a `SOCK_STREAM` socket took only part of the frame): `try_flush`
//! writes it, and `try_send` says `WouldBlock` until it is out. On Windows the write goes on
//! in the background; `try_flush` says `WouldBlock` until it has ended.
//!
//! # Examples
//!
//! ```
//! use std::io::ErrorKind;
//! use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
//! # let name = format!("doc-nb-{}", std::process::id());
//! # let name = name.as_str();
//!
//! let listener = Listener::bind_with(name, ListenerOptions::new().mode(Mode::Messages))?
//!     .into_nonblocking()?;
//! assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
//! let mut client = Stream::connect_with(name, ConnectOptions::new().mode(Mode::Messages))?;
//! let mut server = loop {
//!     match listener.accept() {
//!         Ok(stream) => break stream,
//!         Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
//!         Err(e) => return Err(e),
//!     }
//! };
//! client.send(&[7u8; 10_000])?;
//! let mut msg = Vec::new();
//! while let Err(e) = server.try_recv_to_vec(&mut msg) {
//!     assert_eq!(e.kind(), ErrorKind::WouldBlock);
//!     std::thread::yield_now();
//! }
//! assert_eq!(msg.len(), 10_000);
//! server.try_send(b"thanks")?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;

use crate::Mode;

#[cfg(unix)]
type ListenerInner = crate::Listener;
#[cfg(windows)]
type ListenerInner = pipekit_windows::nonblocking::Listener;
#[cfg(unix)]
type StreamInner = crate::Stream;
#[cfg(windows)]
type StreamInner = pipekit_windows::nonblocking::Stream;

/// A listener whose [`accept`](Self::accept) does not block. Made with
/// [`crate::Listener::into_nonblocking`].
pub struct Listener {
    inner: ListenerInner,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Listener {
    pub(crate) fn new(listener: crate::Listener) -> io::Result<Listener> {
        #[cfg(unix)]
        let inner = {
            crate::os::unix::ListenerExt::set_nonblocking(&listener, true)?;
            listener
        };
        #[cfg(windows)]
        let inner = pipekit_windows::nonblocking::Listener::new(listener.into_local()?)?;
        Ok(Listener { inner })
    }

    /// Takes the next client: a non-blocking stream, or `WouldBlock` while none has come
    /// (with an instance limit, also while every place is taken).
    ///
    /// # Errors
    ///
    /// `WouldBlock` as above; the OS error of accepting, with the name.
    pub fn accept(&self) -> io::Result<Stream> {
        #[cfg(unix)]
        let inner = {
            let stream = self.inner.accept()?;
            crate::os::unix::StreamExt::set_nonblocking(&stream, true)?;
            stream
        };
        #[cfg(windows)]
        let inner = self.inner.accept()?;
        Ok(Stream { inner })
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }
}

/// A message stream whose calls do not block. Made by [`Listener::accept`] or with
/// [`crate::Stream::into_nonblocking`].
pub struct Stream {
    inner: StreamInner,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Stream {
    pub(crate) fn new(stream: crate::Stream) -> io::Result<Stream> {
        #[cfg(unix)]
        let inner = {
            crate::os::unix::StreamExt::set_nonblocking(&stream, true)?;
            stream
        };
        #[cfg(windows)]
        let inner = pipekit_windows::nonblocking::Stream::new(stream.into_local()?)?;
        Ok(Stream { inner })
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size()
    }

    /// Sends `msg` as one message: `Ok` once it is taken (whole); `WouldBlock` while an
    /// earlier message is still going out (nothing of `msg` is taken).
    ///
    /// # Errors
    ///
    /// `WouldBlock` as above; `InvalidInput` for a message over the maximum or a byte-mode
    /// stream; `BrokenPipe` if the peer is gone (on Windows also for an earlier accepted
    /// message whose write failed).
    pub fn try_send(&mut self, msg: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        return self.inner.send(msg);
        #[cfg(windows)]
        return self.inner.try_send(msg);
    }

    /// Gets on with the last accepted message: `Ok` once it is out, `WouldBlock` while it is
    /// not.
    ///
    /// # Errors
    ///
    /// `WouldBlock` as above; the error of writing it (`BrokenPipe` if the peer is gone).
    pub fn try_flush(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        return io::Write::flush(&mut self.inner);
        #[cfg(windows)]
        {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match self.inner.poll_flush(&mut cx) {
                std::task::Poll::Ready(result) => result,
                std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Receives one message into `buf`: `Some(len)`, `None` once the peer has closed and
    /// every message was read, `WouldBlock` while none has arrived.
    ///
    /// # Errors
    ///
    /// `WouldBlock` as above; as [`crate::Stream::recv`] otherwise: a message too large for
    /// `buf` is reported with its size and stays readable.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        #[cfg(unix)]
        return self.inner.recv(buf);
        #[cfg(windows)]
        return self.inner.try_recv(buf);
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit); `WouldBlock`
    /// while none has arrived.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), but no message within the maximum is too large.
    pub fn try_recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        #[cfg(unix)]
        return self.inner.recv_to_vec(buf);
        #[cfg(windows)]
        return self.inner.try_recv_to_vec(buf);
    }
}

#[cfg(feature = "mio")]
mod mio_source {
    use std::io;

    use mio::event::Source;
    use mio::{Interest, Registry, Token};

    macro_rules! delegate_source {
        ($ty:ty) => {
            impl Source for $ty {
                fn register(
                    &mut self,
                    registry: &Registry,
                    token: Token,
                    interests: Interest,
                ) -> io::Result<()> {
                    self.inner.register(registry, token, interests)
                }

                fn reregister(
                    &mut self,
                    registry: &Registry,
                    token: Token,
                    interests: Interest,
                ) -> io::Result<()> {
                    self.inner.reregister(registry, token, interests)
                }

                fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                    self.inner.deregister(registry)
                }
            }
        };
    }

    delegate_source!(super::Listener);
    delegate_source!(super::Stream);
}

impl crate::Listener {
    /// Makes the listener non-blocking, for an event loop (with the `mio` feature it is a
    /// `mio::event::Source`): see [`nonblocking`](crate::nonblocking).
    ///
    /// # Errors
    ///
    /// The OS error of switching modes, or (Windows) of setting up the waiting instance.
    pub fn into_nonblocking(self) -> io::Result<Listener> {
        Listener::new(self)
    }
}

impl crate::Stream {
    /// Makes a message-mode stream non-blocking, for an event loop (with the `mio` feature
    /// it is a `mio::event::Source`): see [`nonblocking`](crate::nonblocking).
    ///
    /// # Errors
    ///
    /// The OS error of switching modes, or (Windows) of creating the stream's events and
    /// thread-pool waits.
    pub fn into_nonblocking(self) -> io::Result<Stream> {
        Stream::new(self)
    }
}
