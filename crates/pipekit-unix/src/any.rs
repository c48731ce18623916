//! The public listener and stream: a Unix-domain socket or a FIFO connection, whichever the
//! name uses.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PeerCredentials, PipeName};

use crate::connect::Connected;
use crate::fifo::{FifoListener, FifoStream};
use crate::listener::SocketListener;
use crate::stream::SocketStream;
use crate::{Transport, UnixOptions, sys};

/// Calls `$call` on whichever transport `$enum` holds (its `Socket` or `Fifo` variant).
macro_rules! dispatch {
    ($enum:ident, $self:expr, $x:ident => $call:expr) => {
        match $self {
            $enum::Socket($x) => $call,
            $enum::Fifo($x) => $call,
        }
    };
}

/// A server bound to a name: a listening Unix-domain socket, or a FIFO server directory (see
/// [`Transport`]); every [`accept`](Self::accept) returns the next client.
pub struct Listener {
    inner: ListenerInner,
}

enum ListenerInner {
    Socket(SocketListener),
    Fifo(FifoListener),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        dispatch!(ListenerInner, &self.inner, l => l.fmt(f))
    }
}

/// Whether a failure to make or bind a socket says sockets are not available here (so a
/// FIFO fallback makes sense), rather than that something is wrong with the name or path.
fn sockets_unsupported(err: &io::Error) -> bool {
    matches!(
        sys::errno(err),
        Errno::EAFNOSUPPORT
            | Errno::EPROTONOSUPPORT
            | Errno::ESOCKTNOSUPPORT
            | Errno::EOPNOTSUPP
            | Errno::EPERM
    )
}

impl Listener {
    /// Binds `name` in byte mode with default options (a socket).
    ///
    /// # Errors
    ///
    /// As [`bind_with`](Self::bind_with).
    pub fn bind(name: &PipeName) -> io::Result<Listener> {
        Listener::bind_with(name, &ListenerOptions::new(), &UnixOptions::new())
    }

    /// Binds `name` with portable `options` and Unix `unix` options (transport, framing).
    ///
    /// With [`Transport::SocketOrFifo`], a socket is tried first and a FIFO server directory
    /// is made instead if the socket fails with `EAFNOSUPPORT`, `EPROTONOSUPPORT`,
    /// `ESOCKTNOSUPPORT`, `EOPNOTSUPP`/`ENOTSUP` or `EPERM` — the errors of a system or
    /// filesystem that refuses Unix-domain sockets.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if a live server already has the name; `InvalidInput` for a bad name or
    /// bad options; `PermissionDenied` if the per-user directory is unsafe; `AlreadyExists`
    /// if something that is not a stale server is at the path.
    pub fn bind_with(
        name: &PipeName,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<Listener> {
        crate::connect::dotnet_is_bytes(name, options.mode)?;
        if unix.transport == Transport::Fifo && unix.custom_permissions() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{name}: a socket mode or group applies to sockets; a FIFO server's \
                     directory is always private to its user"
                ),
            ));
        }
        let inner = match unix.transport {
            Transport::Fifo => ListenerInner::Fifo(FifoListener::bind(name, options, unix)?),
            Transport::SocketOrFifo => match SocketListener::bind_with(name, options, unix) {
                Ok(l) => ListenerInner::Socket(l),
                Err(e) if sockets_unsupported(&e) => {
                    ListenerInner::Fifo(FifoListener::bind(name, options, unix)?)
                }
                Err(e) => return Err(e),
            },
            _ => ListenerInner::Socket(SocketListener::bind_with(name, options, unix)?),
        };
        Ok(Listener { inner })
    }

    /// Adopts `fd`, a listening `AF_UNIX` socket made outside pipekit (socket activation, a
    /// parent process), in `mode` or, if `None`, the mode its type carries
    /// (`SOCK_SEQPACKET`: messages; `SOCK_STREAM`: bytes). Peers are checked against
    /// `unix`'s peer policy as for a bound listener. The listener does not own the socket's
    /// path: dropping it closes the socket and leaves the file to whoever made it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a listening Unix-domain socket bound to a name, its
    /// type cannot carry `mode`, or `options` ask for an instance limit.
    pub fn from_fd(
        fd: OwnedFd,
        mode: Option<Mode>,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<Listener> {
        Ok(Listener {
            inner: ListenerInner::Socket(SocketListener::from_fd(fd, mode, options, unix)?),
        })
    }

    /// Gives up the listening socket, for another owner (a child process): its descriptor
    /// (a duplicate; the listener's is closed). The socket file stays in place.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a FIFO server (it is a directory of FIFOs, not one descriptor); the
    /// OS error of duplicating the descriptor.
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        match self.inner {
            ListenerInner::Socket(l) => l.into_fd(),
            ListenerInner::Fifo(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a FIFO server is a directory of FIFOs, not one descriptor",
            )),
        }
    }

    /// Waits for the next client and returns the connection to it.
    ///
    /// # Errors
    ///
    /// The OS error (`WouldBlock` in non-blocking mode).
    pub fn accept(&self) -> io::Result<Stream> {
        let inner = match &self.inner {
            ListenerInner::Socket(l) => StreamInner::Socket(l.accept()?),
            ListenerInner::Fifo(l) => StreamInner::Fifo(l.accept()?),
        };
        Ok(Stream { inner })
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        dispatch!(ListenerInner, &self.inner, l => l.mode())
    }

    /// How many peers the [`PeerPolicy`](crate::PeerPolicy) refused so far (closed, never
    /// returned from `accept`).
    pub fn refused_peers(&self) -> u64 {
        dispatch!(ListenerInner, &self.inner, l => l.refused_peers())
    }

    /// The name this listener serves.
    pub fn name(&self) -> &PipeName {
        dispatch!(ListenerInner, &self.inner, l => l.name())
    }

    /// The transport this listener uses: [`Transport::Socket`] or [`Transport::Fifo`].
    pub fn transport(&self) -> Transport {
        match &self.inner {
            ListenerInner::Socket(_) => Transport::Socket,
            ListenerInner::Fifo(_) => Transport::Fifo,
        }
    }

    /// The socket's path or the FIFO server directory; `None` for an abstract socket.
    pub fn path(&self) -> Option<&Path> {
        match &self.inner {
            ListenerInner::Socket(l) => l.path(),
            ListenerInner::Fifo(l) => Some(l.path()),
        }
    }

    /// Removes what the listener put in the filesystem — the socket file, or the FIFO server
    /// directory with its FIFOs, and the lock file — now rather than on drop. For a process
    /// about to exit without dropping the listener (a signal handler, `std::process::exit`).
    /// After it, no new client finds the listener; it is done once, drop does nothing more.
    pub fn remove_files(&self) {
        dispatch!(ListenerInner, &self.inner, l => l.remove_files())
    }

    /// Puts the listener in non-blocking mode: `accept` returns `WouldBlock` when nobody is
    /// waiting.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        dispatch!(ListenerInner, &self.inner, l => l.set_nonblocking(nonblocking))
    }
}

impl AsFd for Listener {
    /// The listening socket, or the FIFO server's request FIFO.
    fn as_fd(&self) -> BorrowedFd<'_> {
        dispatch!(ListenerInner, &self.inner, l => l.as_fd())
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
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

/// One connection, over a Unix-domain socket or a pair of FIFOs.
///
/// Made by [`Stream::connect`] or by [`Listener::accept`]. In byte mode it is
/// `Read + Write`; in message mode use [`send`](Self::send) and [`recv`](Self::recv)
/// (`Read`/`Write` then move one message per call).
pub struct Stream {
    pub(crate) inner: StreamInner,
}

pub(crate) enum StreamInner {
    Socket(SocketStream),
    Fifo(FifoStream),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        dispatch!(StreamInner, &self.inner, s => s.fmt(f))
    }
}

impl Stream {
    /// Connects to `name` in byte mode, failing at once if nobody serves it.
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub fn connect(name: &PipeName) -> io::Result<Stream> {
        Stream::connect_with(name, &ConnectOptions::new(), &UnixOptions::new())
    }

    /// Connects to `name`, speaking whichever transport its server uses: a socket at the
    /// path is a socket server, a directory is a FIFO server (see [`crate::fifo`]).
    ///
    /// # Errors
    ///
    /// `NotFound` at once if nobody serves `name` and no wait was asked; `WouldBlock`
    /// ("busy") at once if the server's backlog is full and no wait was asked; `TimedOut`
    /// naming the name and the wait if the wait ran out (a full backlog never holds the
    /// call past its wait: the connect itself is non-blocking); `PermissionDenied` if the
    /// per-user directory is not private to this user (see
    /// [`check_private_dir`](crate::check_private_dir)); `InvalidInput` for a bad name, bad options, a server in the other mode,
    /// or a path that is neither; other OS errors with the path named.
    pub fn connect_with(
        name: &PipeName,
        options: &ConnectOptions,
        unix: &UnixOptions,
    ) -> io::Result<Stream> {
        let inner = match crate::connect::connect(name, options, unix)? {
            Connected::Socket(s) => StreamInner::Socket(s),
            Connected::Fifo(f) => StreamInner::Fifo(f),
        };
        Ok(Stream { inner })
    }

    /// Adopts `fd`, a connected `AF_UNIX` socket made outside pipekit (a parent process's,
    /// one end of a `socketpair`), in `mode` or, if `None`, the mode its type carries
    /// (`SOCK_SEQPACKET`: messages; `SOCK_STREAM`: bytes; message mode on a `SOCK_STREAM`
    /// socket is length-prefixed framing).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a connected Unix-domain socket or its type cannot carry
    /// `mode`, or for a `max_message_size` out of range.
    pub fn from_fd(fd: OwnedFd, mode: Option<Mode>, max_message_size: usize) -> io::Result<Stream> {
        Ok(Stream {
            inner: StreamInner::Socket(SocketStream::from_fd(fd, mode, max_message_size)?),
        })
    }

    /// Gives up the connection's socket descriptor, for another owner.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a FIFO connection (two descriptors); `InvalidData` if a framed
    /// stream holds part of a message (it would be lost).
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        match self.inner {
            StreamInner::Socket(s) => s.into_fd(),
            StreamInner::Fifo(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a FIFO connection is two descriptors, not one",
            )),
        }
    }

    /// The connection's transport: [`Transport::Socket`] or [`Transport::Fifo`].
    pub fn transport(&self) -> Transport {
        match &self.inner {
            StreamInner::Socket(_) => Transport::Socket,
            StreamInner::Fifo(_) => Transport::Fifo,
        }
    }

    /// The descriptor this end writes when it is not the one [`AsFd`] gives: a FIFO
    /// connection's write FIFO (`None` for sockets, and once the write side is shut down).
    /// For event loops that watch readability and writability on separate descriptors; it
    /// stays valid until the stream is dropped or its write side shut down.
    pub fn raw_write_fd(&self) -> Option<RawFd> {
        match &self.inner {
            StreamInner::Socket(_) => None,
            StreamInner::Fifo(s) => s.raw_write_fd(),
        }
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        dispatch!(StreamInner, &self.inner, s => s.mode())
    }

    /// FIFO connections on Linux: the capacity of the FIFO this end reads (see
    /// [`FifoStream::pipe_capacity`]). `None` for sockets and elsewhere.
    pub fn pipe_capacity(&self) -> Option<usize> {
        match &self.inner {
            StreamInner::Socket(_) => None,
            StreamInner::Fifo(s) => s.pipe_capacity(),
        }
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        dispatch!(StreamInner, &self.inner, s => s.max_message_size())
    }

    /// Sends `msg` as one message.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the size if `msg` is over the maximum (nothing is sent) or the
    /// stream is in byte mode; `BrokenPipe` if the peer is gone; `TimedOut` after the write
    /// timeout.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        dispatch!(StreamInner, &self.inner, s => s.send(msg))
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` at the end.
    ///
    /// # Errors
    ///
    /// A message that does not fit `buf`: `InvalidInput` carrying a
    /// [`MessageTooLarge`](pipekit_core::MessageTooLarge) (the message stays readable);
    /// `TimedOut` after the read timeout; `InvalidData` if the peer breaks the protocol.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        dispatch!(StreamInner, &self.inner, s => s.recv(buf))
    }

    /// Receives one whole message into `buf`, which is cleared first and grown to fit.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), but no message within the maximum is too large for it.
    pub fn recv_to_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        dispatch!(StreamInner, &self.inner, s => s.recv_to_vec(buf))
    }

    /// Sends one message of `len` bytes that `fill` writes in place. On a shared-memory
    /// connection `fill` writes straight into the ring, so the sender makes no copy of its
    /// own; elsewhere it writes into a buffer that is then sent (one allocation).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); `fill` is not called when nothing can be sent (a size over
    /// the maximum, the wrong mode, a peer gone).
    pub fn send_with<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        match &self.inner {
            StreamInner::Socket(s) => s.send_with(len, fill),
            StreamInner::Fifo(s) => {
                if len > s.max_message_size() {
                    return Err(pipekit_core::error::message_over_limit(
                        len,
                        s.max_message_size(),
                    ));
                }
                let mut buf = vec![0u8; len];
                let out = fill(&mut buf);
                s.send(&buf).map(|()| out)
            }
        }
    }

    /// Receives one message and hands it to `take` in place: on a shared-memory connection
    /// the bytes are read where they lie in the ring (no copy); elsewhere from a buffer the
    /// message was received into. `None` at the end.
    ///
    /// The bytes are the peer's: a peer that breaks the protocol could change them while
    /// `take` looks (only its own connection suffers).
    ///
    /// # Errors
    ///
    /// As [`recv_to_vec`](Self::recv_to_vec).
    pub fn recv_with<R>(&self, take: impl FnOnce(&[u8]) -> R) -> io::Result<Option<R>> {
        match &self.inner {
            StreamInner::Socket(s) => s.recv_with(take),
            StreamInner::Fifo(s) => {
                let mut buf = Vec::new();
                Ok(s.recv_to_vec(&mut buf)?.map(|_| take(&buf)))
            }
        }
    }

    /// Whether this connection runs over shared memory
    /// ([`ListenerOptions::shared_memory`](pipekit_core::ListenerOptions::shared_memory)):
    /// the server offered it and this client asked. A client learns it from the server's
    /// first word, which it finds at its first read or write; this call also looks for it,
    /// without waiting, and is `false` while it has not come.
    pub fn is_shared_memory(&self) -> bool {
        match &self.inner {
            StreamInner::Socket(s) => s.is_shared_memory(),
            StreamInner::Fifo(_) => false,
        }
    }

    /// Shuts down the write side: the peer reads EOF after everything sent before.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn shutdown_write(&self) -> io::Result<()> {
        dispatch!(StreamInner, &self.inner, s => s.shutdown_write())
    }

    /// A second handle on the same connection, for reading on one thread while another
    /// writes: a `dup` of the socket, or (FIFOs) another handle on the same pair. Both share
    /// the stream's state: non-blocking mode, timeouts, `shutdown_write` and a half-read
    /// message hold for both, and two handles reading (or writing) messages take turns,
    /// message by message.
    ///
    /// # Errors
    ///
    /// The OS error of `dup`.
    pub fn try_clone(&self) -> io::Result<Stream> {
        let inner = match &self.inner {
            StreamInner::Socket(s) => StreamInner::Socket(s.try_clone()?),
            StreamInner::Fifo(s) => StreamInner::Fifo(s.try_clone()),
        };
        Ok(Stream { inner })
    }

    /// Who is on the other end (FIFOs: the user only).
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        dispatch!(StreamInner, &self.inner, s => s.peer_credentials())
    }

    /// Makes reads and `recv` fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(StreamInner, &self.inner, s => s.set_read_timeout(timeout))
    }

    /// Makes writes and `send` fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(StreamInner, &self.inner, s => s.set_write_timeout(timeout))
    }

    /// Puts the connection in non-blocking mode (`WouldBlock` instead of waiting).
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        dispatch!(StreamInner, &self.inner, s => s.set_nonblocking(nonblocking))
    }

    /// Whether the stream has (or, a client that asked, may yet have) shared memory.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn has_shared_memory_link(&self) -> bool {
        matches!(&self.inner, StreamInner::Socket(s) if s.has_shared_memory_link())
    }

    /// The shared-memory wake-up descriptors (reads, writes), once there is a channel.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shared_memory_bells(&self) -> Option<(RawFd, RawFd)> {
        match &self.inner {
            StreamInner::Socket(s) => s.shared_memory_bells(),
            StreamInner::Fifo(_) => None,
        }
    }
}

impl Read for &Stream {
    /// Byte mode: reads what has arrived. Message mode: receives one message (`Ok(0)` is a
    /// zero-length message or the end; use [`recv`](Stream::recv) to tell them apart).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        dispatch!(StreamInner, &self.inner, s => s.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        dispatch!(StreamInner, &self.inner, s => s.read_vectored(bufs))
    }
}

impl Write for &Stream {
    /// Byte mode: writes some of `buf`. Message mode: sends `buf` as one message.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        dispatch!(StreamInner, &self.inner, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        dispatch!(StreamInner, &self.inner, s => s.write_vectored(bufs))
    }

    /// In non-blocking message mode over a framed transport: writes the tail of a message
    /// that was taken only in part. Otherwise nothing is buffered.
    fn flush(&mut self) -> io::Result<()> {
        dispatch!(StreamInner, &self.inner, s => s.flush())
    }
}

impl Read for Stream {
    /// As for `&Stream`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for Stream {
    /// As for `&Stream`.
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

impl AsFd for Stream {
    /// The socket, or the FIFO this end reads.
    fn as_fd(&self) -> BorrowedFd<'_> {
        dispatch!(StreamInner, &self.inner, s => s.as_fd())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl pipekit_core::Connection for Stream {
    fn mode(&self) -> Mode {
        Stream::mode(self)
    }

    fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        Stream::peer_credentials(self)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Stream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Stream::set_write_timeout(self, timeout)
    }
}

impl pipekit_core::ByteStream for Stream {
    fn shutdown_write(&self) -> io::Result<()> {
        Stream::shutdown_write(self)
    }
}

impl pipekit_core::MessagePipe for Stream {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        Stream::send(self, msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Stream::recv(self, buf)
    }

    fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        Stream::recv_to_vec(self, buf)
    }

    fn max_message_size(&self) -> usize {
        Stream::max_message_size(self)
    }
}
