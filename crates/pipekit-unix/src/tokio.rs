//! The Unix core of `pipekit::tokio` (feature `tokio`): a [`Listener`] and [`Stream`] watched
//! by Tokio's reactor through [`AsyncFd`], over sockets and FIFOs alike.
//!
//! Applications use `pipekit::tokio`, which has the same names on every OS; this module is
//! what it runs on Unix. Registering a descriptor with Tokio is `unsafe` (the descriptor must
//! stay open and unchanged while it is registered): this module is where that promise is
//! kept, by owning the descriptors it registers and dropping each registration first.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pipekit_core::{Mode, PeerCredentials};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A descriptor owned by a [`crate::Stream`], watched by Tokio.
#[derive(Debug)]
struct Watched(RawFd);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// An async server: accepts like [`crate::Listener`], waiting without blocking the runtime.
/// Several tasks may wait in [`accept`](Self::accept) at once (share it in an `Arc`).
#[derive(Debug)]
pub struct Listener {
    inner: AsyncFd<crate::Listener>,
}

impl Listener {
    /// Switches `listener` to non-blocking mode and registers it with the current runtime.
    ///
    /// # Errors
    ///
    /// The OS error of switching modes or registering (which needs a runtime with I/O
    /// enabled).
    pub fn new(listener: crate::Listener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        // SAFETY: the listener owns its descriptor and keeps it open and unchanged for as
        // long as it lives (nothing in `crate::Listener` replaces it); the AsyncFd owns the
        // listener, so the registration ends before the descriptor is closed.
        let inner = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }?;
        Ok(Listener { inner })
    }

    /// Waits for the next client; for FIFOs, its handshake is finished first (see
    /// [`crate::fifo::HANDSHAKE_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::accept`].
    pub async fn accept(&self) -> io::Result<Stream> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard.try_io(|inner| inner.get_ref().accept()) {
                Ok(result) => return Stream::new(result?),
                Err(_would_block) => continue,
            }
        }
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        self.inner.get_ref().mode()
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
    /// A shared-memory connection's wake-up descriptors, watched from when its channel exists.
    bells: Option<Bells>,
    inner: crate::Stream,
}

/// The wake-up socket pairs of a shared-memory connection: each becomes readable when the
/// peer published (`rx`) or freed room (`tx`) after this side said it waits, and at the
/// peer's end.
#[derive(Debug)]
struct Bells {
    rx: AsyncFd<Watched>,
    tx: AsyncFd<Watched>,
}

/// Which way an operation goes.
#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

impl Stream {
    /// Switches `stream` to non-blocking mode and registers its descriptors with the current
    /// runtime.
    ///
    /// # Errors
    ///
    /// The OS error of switching modes or registering.
    pub fn new(stream: crate::Stream) -> io::Result<Stream> {
        stream.set_nonblocking(true)?;
        let watch = |fd, interest| {
            // SAFETY: `fd` belongs to `stream`, which the returned Stream owns. The watchers
            // are dropped before it (field order), and the write watcher is dropped before
            // `poll_shutdown` closes the write FIFO; nothing else in this type closes or
            // replaces a descriptor, and the stream underneath is not handed out mutably.
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
            bells: None,
            inner: stream,
        })
    }

    /// Runs `op` until it does not say `WouldBlock` on a shared-memory connection (or one
    /// that asked for it): the data comes through the socket (before the switch) or the ring
    /// (after), so readiness is the socket's or the wake-up pair's, whichever comes first.
    fn poll_shm<R>(
        &mut self,
        cx: &mut Context<'_>,
        dir: Dir,
        mut op: impl FnMut(&crate::Stream) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            if self.bells.is_none()
                && let Some((rx, tx)) = self.inner.shared_memory_bells()
            {
                let watch = |fd| {
                    // SAFETY: `fd` belongs to the shared-memory channel of `self.inner`, which
                    // keeps it open and unchanged for as long as the stream lives (the
                    // channel is set once, never replaced); `bells` is declared, so dropped,
                    // before `inner`.
                    unsafe { AsyncFd::register_with_interest(Watched(fd), Interest::READABLE) }
                };
                self.bells = Some(Bells {
                    rx: watch(rx)?,
                    tx: watch(tx)?,
                });
            }
            let socket = match dir {
                Dir::Read => self.read.poll_read_ready(cx),
                Dir::Write => self.read.poll_write_ready(cx),
            };
            let socket = match socket {
                Poll::Ready(Ok(guard)) => Some(guard),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => None,
            };
            let bell = match &self.bells {
                None => None,
                Some(bells) => {
                    let fd = match dir {
                        Dir::Read => &bells.rx,
                        Dir::Write => &bells.tx,
                    };
                    match fd.poll_read_ready(cx) {
                        Poll::Ready(Ok(guard)) => Some(guard),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => None,
                    }
                }
            };
            // Tried whether or not a descriptor is ready: data can be in the ring with no
            // wake-up sent (the peer rings only after this side said, by a `WouldBlock`, that
            // it waits). The wakers are registered first, so a wake-up after the attempt is
            // never lost.
            match op(&self.inner) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            // A client's attempt can take the offer, and with it the socket's readiness (the
            // reactor may not have seen it yet, and never will): the wake-up pairs it brought
            // are watched before this waits.
            if self.bells.is_none() && self.inner.shared_memory_bells().is_some() {
                continue;
            }
            if socket.is_none() && bell.is_none() {
                return Poll::Pending;
            }
            // Readiness seen before the attempt is used up; a wake-up since then stays.
            if let Some(mut guard) = socket {
                guard.clear_ready();
            }
            if let Some(mut guard) = bell {
                guard.clear_ready();
            }
        }
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
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Whether the connection runs over shared memory, as
    /// [`crate::Stream::is_shared_memory`].
    pub fn is_shared_memory(&self) -> bool {
        self.inner.is_shared_memory()
    }

    /// Sends `msg` as one message, waiting until all of it is written.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        poll_fn(|cx| self.poll_send(cx, msg)).await?;
        // The tail of a partly written frame.
        poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)).await
    }

    /// Starts sending `msg` as one message: `Ready(Ok(()))` once the OS (or, for a framed
    /// stream, the stream's buffer) has taken all of it; a framed message's tail may still
    /// wait for `poll_flush`.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        if self.inner.has_shared_memory_link() {
            return self.poll_shm(cx, Dir::Write, |s| s.send(msg));
        }
        loop {
            let writer = self.write.as_ref().unwrap_or(&self.read);
            let mut guard = ready!(writer.poll_write_ready(cx))?;
            match guard.try_io(|_| self.inner.send(msg)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`].
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
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
        if self.inner.has_shared_memory_link() {
            return self.poll_shm(cx, Dir::Read, |s| s.recv(buf));
        }
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            match guard.try_io(|_| self.inner.recv(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv_to_vec`].
    pub async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        poll_fn(|cx| self.poll_recv_to_vec(cx, buf)).await
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
        if self.inner.has_shared_memory_link() {
            return self.poll_shm(cx, Dir::Read, |s| s.recv_to_vec(buf));
        }
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            match guard.try_io(|_| self.inner.recv_to_vec(buf)) {
                Ok(result) => return Poll::Ready(result),
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
        if this.inner.has_shared_memory_link() {
            let n =
                ready!(this.poll_shm(cx, Dir::Read, |mut s| s.read(buf.initialize_unfilled())))?;
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
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
        if this.inner.has_shared_memory_link() {
            return this.poll_shm(cx, Dir::Write, |mut s| s.write(buf));
        }
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
        if this.inner.has_shared_memory_link() {
            return this.poll_shm(cx, Dir::Write, |mut s| s.flush());
        }
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
