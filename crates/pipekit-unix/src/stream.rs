//! A connection over a Unix-domain socket, in byte or message mode.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::UnixAddr;
#[cfg(linux_android)]
use pipekit_core::error::{MessageTooLarge, message_discarded};
use pipekit_core::error::{context, context_kind, wrong_mode};
use pipekit_core::framing::{FrameReader, FrameWriter};
use pipekit_core::slots::Slot;
use pipekit_core::{ConnectOptions, Mode, PeerCredentials, PipeName, UnixAddress};

use crate::shm::{self, Link, Route};
use crate::{Framing, UnixOptions, sys};
use pipekit_core::ring::Segment as _;

/// How messages travel on this connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// Byte mode on `SOCK_STREAM`.
    Bytes,
    /// Message mode on `SOCK_SEQPACKET` (Linux and Android).
    #[cfg(linux_android)]
    Packets,
    /// Message mode framed on `SOCK_STREAM`.
    Framed,
}

/// What the handles on one socket share: the state a message read or write keeps between
/// system calls, each direction behind its own lock, so that one thread can read while
/// another writes, and two readers (or writers) take turns instead of splitting a message.
struct Shared {
    /// `O_NONBLOCK` belongs to the socket, not to one descriptor.
    nonblocking: AtomicBool,
    read: Mutex<ReadState>,
    write: Mutex<WriteState>,
    /// A shared-memory connection (offered by the server or asked for by the client).
    shm: Option<Link>,
}

/// The write side's state.
struct WriteState {
    /// Framed streams: the frame writer.
    frames: Option<FrameWriter>,
    /// Shared-memory connections: the ring's progress.
    ring: shm::Writer,
}

/// The read side's state.
struct ReadState {
    /// `SOCK_SEQPACKET`: the reused control-message buffer.
    #[cfg(linux_android)]
    cmsg: Vec<u8>,
    /// Framed streams: the frame reader.
    frames: Option<FrameReader>,
    /// Shared-memory connections: the ring's progress.
    ring: shm::Reader,
}

/// Locks `mutex`; a panic in another thread while it held the lock leaves state that is
/// still consistent (every change to it is a single step), so the lock is taken anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection over a Unix-domain socket.
///
/// Made by [`Stream::connect`](crate::Stream::connect) or by [`Listener::accept`](crate::Listener::accept). In byte
/// mode it is `Read + Write`; in message mode use [`send`](Self::send) and
/// [`recv`](Self::recv) (`Read`/`Write` then move one message per call).
pub(crate) struct SocketStream {
    fd: OwnedFd,
    mode: Mode,
    wire: Wire,
    max_message_size: usize,
    /// Shared with clones.
    shared: Arc<Shared>,
    _slot: Option<Slot>,
}

impl fmt::Debug for SocketStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = match self.wire {
            Wire::Bytes => "stream",
            #[cfg(linux_android)]
            Wire::Packets => "seqpacket",
            Wire::Framed => "framed stream",
        };
        f.debug_struct("SocketStream")
            .field("fd", &self.fd.as_raw_fd())
            .field("mode", &self.mode)
            .field("wire", &wire)
            .finish()
    }
}

/// Whether message mode rides on `SOCK_SEQPACKET` for these options.
pub(crate) fn uses_seqpacket(mode: Mode, unix: &UnixOptions) -> bool {
    mode == Mode::Messages && unix.framing == Framing::Native && sys::NATIVE_MESSAGES
}

/// The socket address of a resolved name.
pub(crate) fn socket_addr(addr: &UnixAddress) -> io::Result<UnixAddr> {
    let result = match addr {
        UnixAddress::Path { path, .. } => UnixAddr::new(path.as_path()),
        UnixAddress::Abstract(name) => sys::abstract_addr(name),
        _ => Err(Errno::EINVAL),
    };
    result.map_err(|e| context(e.into(), "cannot build the socket address"))
}

impl SocketStream {
    /// One attempt to connect to the server bound at `addr` (`name` resolved); waiting and
    /// retrying is the caller's ([`crate::Stream::connect_with`]).
    ///
    /// # Errors
    ///
    /// `NotFound` if nobody serves `name`; `WouldBlock` if its backlog is full;
    /// `InvalidInput` for a server in the other mode (the socket types differ:
    /// `EPROTOTYPE`); other OS errors with the name.
    pub(crate) fn connect_once(
        name: &PipeName,
        addr: &UnixAddress,
        options: &ConnectOptions,
        unix: &UnixOptions,
        deadline: Option<Instant>,
    ) -> io::Result<SocketStream> {
        let sockaddr = socket_addr(addr)?;
        let seqpacket = uses_seqpacket(options.mode, unix);
        let fd = sys::socket(sys::sock_type(seqpacket))?;
        let marker = if options.shared_memory {
            shm::mark(&fd)
        } else {
            None
        };
        let connected = sys::connect(&fd, &sockaddr, deadline);
        if let Some(marker) = &marker {
            marker.remove_file();
        }
        let err = match connected {
            Ok(()) => {
                sys::raise_buffers(
                    fd.as_fd(),
                    sys::send_buffer_for(
                        options.out_buffer_size as usize,
                        seqpacket,
                        options.max_message_size,
                    ),
                    options.in_buffer_size as usize,
                );
                return Ok(SocketStream::new(
                    fd,
                    options.mode,
                    seqpacket,
                    options.max_message_size,
                    None,
                    marker.map(|_| Link::client()),
                ));
            }
            Err(err) => err,
        };
        Err(match sys::errno(&err) {
            Errno::EPROTOTYPE => context_kind(
                io::ErrorKind::InvalidInput,
                err,
                format!(
                    "the server of {name} does not use {} mode (its socket type differs)",
                    options.mode
                ),
            ),
            Errno::EAGAIN => context_kind(
                io::ErrorKind::WouldBlock,
                err,
                format!(
                    "the server of {name} is busy: its backlog of connections waiting to be \
                     accepted is full"
                ),
            ),
            Errno::ENOENT | Errno::ECONNREFUSED
                if let UnixAddress::Path { path, .. } = addr
                    && let Some(busy) = crate::busy::busy_error(path, name) =>
            {
                busy
            }
            Errno::ENOENT | Errno::ECONNREFUSED => context_kind(
                io::ErrorKind::NotFound,
                err,
                format!("no server is listening on {name} ({})", describe(addr)),
            ),
            _ => context(err, format!("cannot connect to {name}")),
        })
    }

    pub(crate) fn new(
        fd: OwnedFd,
        mode: Mode,
        seqpacket: bool,
        max_message_size: usize,
        slot: Option<Slot>,
        shm: Option<Link>,
    ) -> SocketStream {
        let wire = match (mode, seqpacket) {
            #[cfg(linux_android)]
            (Mode::Messages, true) => Wire::Packets,
            // Elsewhere `seqpacket` is never set: `uses_seqpacket` and `adopted_mode` say no.
            (Mode::Messages, _) => Wire::Framed,
            _ => Wire::Bytes,
        };
        let framed = wire == Wire::Framed;
        let ring = shm.as_ref().map(Link::writer).unwrap_or_default();
        SocketStream {
            fd,
            mode,
            wire,
            max_message_size,
            shared: Arc::new(Shared {
                nonblocking: AtomicBool::new(false),
                read: Mutex::new(ReadState {
                    #[cfg(linux_android)]
                    cmsg: Vec::new(),
                    frames: framed.then(|| FrameReader::new(max_message_size)),
                    ring: shm::Reader::default(),
                }),
                write: Mutex::new(WriteState {
                    frames: framed.then(|| FrameWriter::new(max_message_size)),
                    ring,
                }),
                shm,
            }),
            _slot: slot,
        }
    }

    /// Adopts `fd`, a connected `AF_UNIX` socket made outside pipekit (a parent process's,
    /// one end of a `socketpair`), in `mode` or the mode its type carries.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a connected Unix-domain socket or its type cannot carry
    /// `mode`; `max_message_size` out of range.
    pub(crate) fn from_fd(
        fd: OwnedFd,
        mode: Option<Mode>,
        max_message_size: usize,
    ) -> io::Result<SocketStream> {
        pipekit_core::ConnectOptions::new()
            .max_message_size(max_message_size)
            .validate()?;
        let adopted = sys::adopt(&fd)?;
        if adopted.listening {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "descriptor {} is a listening socket; adopt it as a listener",
                    fd.as_raw_fd()
                ),
            ));
        }
        let seqpacket = adopted.ty == nix::sys::socket::SockType::SeqPacket;
        let mode = adopted_mode(mode, seqpacket, &fd)?;
        Ok(SocketStream::new(
            fd,
            mode,
            seqpacket,
            max_message_size,
            None,
            None,
        ))
    }

    /// Gives up the socket's descriptor. Its place under a listener's instance limit is
    /// given back.
    ///
    /// # Errors
    ///
    /// `InvalidData` if a framed stream holds part of a message it read or has not yet
    /// written (the bytes would be lost with it).
    pub(crate) fn into_fd(self) -> io::Result<OwnedFd> {
        if let Some(link) = &self.shared.shm
            && (link.active() || link.undecided())
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the connection runs over shared memory (or may yet): its descriptor alone \
                 cannot carry it",
            ));
        }
        let read = lock(&self.shared.read)
            .frames
            .as_ref()
            .map_or(0, FrameReader::buffered);
        let unsent = lock(&self.shared.write)
            .frames
            .as_ref()
            .map_or(0, FrameWriter::pending);
        if read + unsent > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the stream holds {read} bytes of a message it is reading and {unsent} of \
                     one it is writing; they would be lost with the descriptor"
                ),
            ));
        }
        Ok(self.fd)
    }

    /// The connection's mode.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The largest message this end sends or receives.
    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Who is on the other end.
    ///
    /// # Platform-specific behavior
    ///
    /// Linux: `SO_PEERCRED` (pid, uid, gid). macOS: `getpeereid` and `LOCAL_PEERPID`.
    /// Other BSDs: `getpeereid` (no pid).
    ///
    /// # Errors
    ///
    /// The OS error.
    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        sys::peer_credentials(self.fd.as_fd())
    }

    /// Shuts down the write side: the peer reads EOF after everything sent before
    /// (`shutdown(SHUT_WR)`); this end can still read.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        if let Some(link) = &self.shared.shm {
            let mut state = lock(&self.shared.write);
            state.ring.shut = true;
            if state.ring.on_ring
                && let Some(channel) = link.channel()
            {
                channel.close_tx();
                return Ok(());
            }
        }
        sys::shutdown_write(self.fd.as_fd())
    }

    /// Sets the read timeout (`SO_RCVTIMEO`); a read or `recv` that waits longer fails with
    /// `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        sys::set_read_timeout(self.fd.as_fd(), timeout)?;
        if let Some(link) = &self.shared.shm {
            link.set_timeouts(Some(timeout), None);
        }
        Ok(())
    }

    /// Sets the write timeout (`SO_SNDTIMEO`); a write or `send` that waits longer fails
    /// with `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        sys::set_write_timeout(self.fd.as_fd(), timeout)?;
        if let Some(link) = &self.shared.shm {
            link.set_timeouts(None, Some(timeout));
        }
        Ok(())
    }

    /// A second handle on the same socket (`dup`), for reading on one thread while another
    /// writes. Non-blocking mode, timeouts and `shutdown_write` are the socket's, so they hold
    /// for both; so is a framed stream's half-read frame, and two handles reading (or
    /// writing) messages take turns, message by message. The place under a listener's
    /// instance limit is given back when both are dropped.
    ///
    /// # Errors
    ///
    /// The OS error of `dup`.
    pub(crate) fn try_clone(&self) -> io::Result<SocketStream> {
        Ok(SocketStream {
            fd: self.fd.try_clone()?,
            mode: self.mode,
            wire: self.wire,
            max_message_size: self.max_message_size,
            shared: Arc::clone(&self.shared),
            _slot: self._slot.as_ref().map(Slot::share),
        })
    }

    /// Puts the socket in non-blocking mode (`O_NONBLOCK`): calls that would wait fail with
    /// `WouldBlock` instead.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        sys::set_nonblocking(self.fd.as_fd(), nonblocking)?;
        self.shared
            .nonblocking
            .store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    fn io(&self) -> Io<'_> {
        Io::new(self.fd.as_fd(), &self.shared.nonblocking)
    }

    fn nonblocking(&self) -> bool {
        self.shared.nonblocking.load(Ordering::Relaxed)
    }

    /// Where the next write goes on a shared-memory connection (`state` is the write
    /// lock's), refusing writes after `shutdown_write` on the ring.
    fn write_route<'a>(&self, link: &'a Link, state: &mut WriteState) -> io::Result<Route<'a>> {
        let settled = state.frames.as_ref().is_none_or(|w| w.pending() == 0);
        let route = link.write_route(
            self.fd.as_fd(),
            &mut state.ring,
            self.max_message_size,
            settled,
        )?;
        if matches!(route, Route::Ring(_)) && state.ring.shut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream was shut down for writing",
            ));
        }
        Ok(route)
    }

    /// Where the next read goes on a shared-memory connection.
    fn read_route<'a>(&self, link: &'a Link, state: &mut ReadState) -> io::Result<Route<'a>> {
        let buffered = state.frames.as_ref().is_some_and(|r| r.buffered() > 0);
        let wait = link.read_wait(self.nonblocking());
        link.read_route(self.fd.as_fd(), &mut state.ring, buffered, wait)
            .map_err(|e| read_error(e, &self.shared.nonblocking))
    }

    /// Whether the connection runs over shared memory (one way or both): the server
    /// offered it and the client took it. A client that asked and has not yet seen the
    /// server's first word looks for it now, without waiting.
    pub(crate) fn is_shared_memory(&self) -> bool {
        self.shared
            .shm
            .as_ref()
            .is_some_and(|link| link.look_now(self.fd.as_fd()))
    }

    /// The shared-memory link, on a connection that has one (or asked for one).
    #[cfg_attr(not(feature = "mio"), allow(dead_code))]
    pub(crate) fn link(&self) -> Option<&Link> {
        self.shared.shm.as_ref()
    }

    /// The shared-memory wake-up descriptors (reads, writes), once there is a channel.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shared_memory_bells(&self) -> Option<(RawFd, RawFd)> {
        let link = self.shared.shm.as_ref()?;
        link.bells().map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()))
    }

    /// Whether the connection has shared memory or may yet (a client that asked): the
    /// Tokio API waits on their wake-up pairs too.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn has_shared_memory_link(&self) -> bool {
        self.shared.shm.is_some()
    }

    /// Sends `msg` as one message.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the size for a message over the maximum (nothing is sent);
    /// `BrokenPipe` if the peer is gone; `TimedOut` after the write timeout; `InvalidInput` on
    /// a byte-mode stream.
    pub(crate) fn send(&self, msg: &[u8]) -> io::Result<()> {
        if self.wire == Wire::Bytes {
            return Err(wrong_mode("send", self.mode));
        }
        let Some(link) = &self.shared.shm else {
            return match self.wire {
                Wire::Framed => self.send_socket(&mut lock(&self.shared.write).frames, msg),
                _ => self.send_socket(&mut None, msg),
            };
        };
        let mut state = lock(&self.shared.write);
        match self.write_route(link, &mut state)? {
            Route::Ring(channel) => {
                let wait = link.write_wait(self.nonblocking());
                let max = self.max_message_size;
                channel.send(&mut state.ring.head, msg.len(), max, wait, |dst| {
                    dst.copy_from_slice(msg)
                })
            }
            Route::Socket => {
                self.send_socket(&mut state.frames, msg)?;
                state.ring.to_socket += 1;
                Ok(())
            }
        }
    }

    /// Sends one message of `len` bytes that `fill` writes in place: into the shared-memory
    /// ring on such a connection (no copy of the caller's), else into a buffer then sent.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); `fill` is not called when the message cannot be sent.
    pub(crate) fn send_with<R>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> io::Result<R> {
        if self.wire == Wire::Bytes {
            return Err(wrong_mode("send_with", self.mode));
        }
        if len > self.max_message_size {
            return Err(pipekit_core::error::message_over_limit(
                len,
                self.max_message_size,
            ));
        }
        if let Some(link) = &self.shared.shm {
            let mut state = lock(&self.shared.write);
            if let Route::Ring(channel) = self.write_route(link, &mut state)? {
                let wait = link.write_wait(self.nonblocking());
                let max = self.max_message_size;
                return channel.send(&mut state.ring.head, len, max, wait, fill);
            }
        }
        let mut buf = vec![0u8; len];
        let out = fill(&mut buf);
        self.send(&buf)?;
        Ok(out)
    }

    /// One message on the socket.
    fn send_socket(&self, frames: &mut Option<FrameWriter>, msg: &[u8]) -> io::Result<()> {
        match self.wire {
            #[cfg(linux_android)]
            Wire::Packets => {
                if msg.len() > self.max_message_size {
                    return Err(pipekit_core::error::message_over_limit(
                        msg.len(),
                        self.max_message_size,
                    ));
                }
                // One system call moves the whole message: no lock needed.
                match self.io().write(msg) {
                    Ok(_) => Ok(()),
                    Err(e) if sys::errno(&e) == Errno::EMSGSIZE => Err(context(
                        e,
                        format!(
                            "message of {} bytes is larger than the socket send buffer allows \
                             (raise net.core.wmem_max or lower the message size)",
                            msg.len()
                        ),
                    )),
                    Err(e) => Err(e),
                }
            }
            // `Framed` streams always have their frame writer.
            Wire::Framed if let Some(writer) = frames => writer.send(&mut self.io(), msg),
            Wire::Framed | Wire::Bytes => Err(wrong_mode("send", self.mode)),
        }
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` once the peer has closed and
    /// every message has been read.
    ///
    /// # Errors
    ///
    /// A [`MessageTooLarge`] (kind `InvalidInput`) naming the message's size if it does not
    /// fit `buf`; the message stays readable. `TimedOut` after the read timeout;
    /// `InvalidData` if the peer breaks the protocol; `InvalidInput` on a byte-mode stream.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.wire == Wire::Bytes {
            return Err(wrong_mode("recv", self.mode));
        }
        let mut state = lock(&self.shared.read);
        let Some(link) = &self.shared.shm else {
            return self.recv_socket(&mut state, buf);
        };
        let max = self.max_message_size;
        loop {
            match self.read_route(link, &mut state)? {
                Route::Ring(channel) => {
                    let wait = link.read_wait(self.nonblocking());
                    let room = Some(buf.len());
                    return channel.recv(&mut state.ring.tail, room, max, wait, |map, at, len| {
                        map.copy_out(at, &mut buf[..len]);
                        len
                    });
                }
                Route::Socket => {
                    let got = self.recv_socket(&mut state, buf);
                    if let Some(got) = counted(link, &mut state.ring, got)? {
                        return Ok(got);
                    }
                }
            }
        }
    }

    /// Receives one message and hands it to `take` in place: from the shared-memory ring on
    /// such a connection (no copy into a buffer of the caller's), else from a buffer it was
    /// received into. `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`recv_to_vec`](Self::recv_to_vec).
    pub(crate) fn recv_with<R>(&self, take: impl FnOnce(&[u8]) -> R) -> io::Result<Option<R>> {
        if self.wire == Wire::Bytes {
            return Err(wrong_mode("recv_with", self.mode));
        }
        if let Some(link) = &self.shared.shm {
            let mut state = lock(&self.shared.read);
            if let Route::Ring(channel) = self.read_route(link, &mut state)? {
                let wait = link.read_wait(self.nonblocking());
                let max = self.max_message_size;
                return channel.recv(&mut state.ring.tail, None, max, wait, |map, at, len| {
                    map.with_slice(at, len, take)
                });
            }
        }
        let mut buf = Vec::new();
        Ok(self.recv_to_vec(&mut buf)?.map(|_| take(&buf)))
    }

    fn recv_socket(&self, state: &mut ReadState, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.wire {
            #[cfg(linux_android)]
            Wire::Packets => {
                let fd = self.fd.as_fd();
                let max = self.max_message_size;
                let nonblocking = &self.shared.nonblocking;
                // The caller holds the read lock from the peek to the read, so that another
                // reader cannot take the message in between.
                let cmsg = &mut state.cmsg;
                if buf.len() < max {
                    // Look at the size first, so that a message too large stays queued.
                    let size = match packet(fd, &mut [], true, cmsg, nonblocking)? {
                        sys::Packet::Eof => return Ok(None),
                        sys::Packet::Message(size) => size,
                    };
                    if size > buf.len() {
                        return Err(MessageTooLarge::error(size, buf.len()));
                    }
                }
                match packet(fd, buf, false, cmsg, nonblocking)? {
                    sys::Packet::Eof => Ok(None),
                    sys::Packet::Message(size) if size > buf.len() => {
                        Err(message_discarded(size, max))
                    }
                    sys::Packet::Message(size) => Ok(Some(size)),
                }
            }
            Wire::Framed if let Some(reader) = &mut state.frames => {
                reader.recv(&mut self.io(), buf)
            }
            Wire::Framed | Wire::Bytes => Err(wrong_mode("recv", self.mode)),
        }
    }

    /// Receives one whole message into `buf`, which is cleared first and grown to fit.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), except that no message is too large for it (a message over
    /// the maximum message size is `InvalidData`).
    pub(crate) fn recv_to_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        if self.wire == Wire::Bytes {
            return Err(wrong_mode("recv_to_vec", self.mode));
        }
        let mut state = lock(&self.shared.read);
        let Some(link) = &self.shared.shm else {
            return self.recv_to_vec_socket(&mut state, buf);
        };
        let max = self.max_message_size;
        loop {
            match self.read_route(link, &mut state)? {
                Route::Ring(channel) => {
                    let wait = link.read_wait(self.nonblocking());
                    buf.clear();
                    return channel.recv(&mut state.ring.tail, None, max, wait, |map, at, len| {
                        buf.resize(len, 0);
                        map.copy_out(at, buf);
                        len
                    });
                }
                Route::Socket => {
                    let got = self.recv_to_vec_socket(&mut state, buf);
                    if let Some(got) = counted(link, &mut state.ring, got)? {
                        return Ok(got);
                    }
                }
            }
        }
    }

    fn recv_to_vec_socket(
        &self,
        state: &mut ReadState,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<usize>> {
        match self.wire {
            #[cfg(linux_android)]
            Wire::Packets => {
                let fd = self.fd.as_fd();
                let max = self.max_message_size;
                let nonblocking = &self.shared.nonblocking;
                let cmsg = &mut state.cmsg;
                buf.clear();
                let size = match packet(fd, &mut [], true, cmsg, nonblocking)? {
                    sys::Packet::Eof => return Ok(None),
                    sys::Packet::Message(size) => size,
                };
                // A message over the maximum is read into what the maximum allows, and
                // refused.
                buf.resize(size.min(max), 0);
                let outcome = match packet(fd, buf, false, cmsg, nonblocking) {
                    Ok(sys::Packet::Message(size)) if size <= buf.len() => {
                        buf.truncate(size);
                        return Ok(Some(size));
                    }
                    Ok(sys::Packet::Message(size)) => Err(message_discarded(size, max)),
                    Ok(sys::Packet::Eof) => Ok(None),
                    Err(e) => Err(e),
                };
                buf.clear();
                outcome
            }
            Wire::Framed if let Some(reader) = &mut state.frames => {
                reader.recv_to_vec(&mut self.io(), buf)
            }
            Wire::Framed | Wire::Bytes => Err(wrong_mode("recv_to_vec", self.mode)),
        }
    }

    /// Byte mode: reads what has arrived. Message mode: receives one message (`Ok(0)` is a
    /// zero-length message or the end).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.wire != Wire::Bytes {
            return Ok(self.recv(buf)?.unwrap_or(0));
        }
        let Some(link) = &self.shared.shm else {
            return self.io().read(buf);
        };
        let mut state = lock(&self.shared.read);
        loop {
            match self.read_route(link, &mut state)? {
                Route::Ring(channel) => {
                    let wait = link.read_wait(self.nonblocking());
                    return channel
                        .read(&mut state.ring.tail, buf, wait)
                        .map_err(|e| read_error(e, &self.shared.nonblocking));
                }
                Route::Socket => match self.io().read(buf)? {
                    0 if !buf.is_empty() && link.switched_meanwhile(&state.ring) => continue,
                    n => {
                        state.ring.from_socket += n as u64;
                        return Ok(n);
                    }
                },
            }
        }
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self.wire {
            Wire::Bytes if self.shared.shm.is_none() => self.io().read_vectored(bufs),
            _ => {
                let first = bufs.iter_mut().find(|b| !b.is_empty());
                first.map_or(Ok(0), |b| self.read(b))
            }
        }
    }

    /// Byte mode: writes some of `buf`. Message mode: sends `buf` as one message.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if self.wire != Wire::Bytes {
            return self.send(buf).map(|()| buf.len());
        }
        let Some(link) = &self.shared.shm else {
            return self.io().write(buf);
        };
        let mut state = lock(&self.shared.write);
        match self.write_route(link, &mut state)? {
            Route::Ring(channel) => {
                let wait = link.write_wait(self.nonblocking());
                channel
                    .write(&mut state.ring.head, buf, wait)
                    .map_err(|e| write_error(e, &self.shared.nonblocking))
            }
            Route::Socket => {
                let n = self.io().write(buf)?;
                state.ring.to_socket += n as u64;
                Ok(n)
            }
        }
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.wire {
            Wire::Bytes if self.shared.shm.is_none() => self.io().write_vectored(bufs),
            _ => {
                let first = bufs.iter().find(|b| !b.is_empty());
                first.map_or(Ok(0), |b| self.write(b))
            }
        }
    }

    /// Message mode on a framed stream in non-blocking mode: writes the kept tail of a
    /// message the socket took only in part. Otherwise nothing to do.
    pub(crate) fn flush(&self) -> io::Result<()> {
        match &mut lock(&self.shared.write).frames {
            Some(writer) => writer.flush(&mut self.io()),
            None => Ok(()),
        }
    }
}

/// Server, a message read from the socket before the client switched: counts it (a message
/// thrown away for its size counts too: it was taken from the socket). `None`: the socket
/// ended because the client moved to the ring meanwhile; read again.
fn counted(
    link: &Link,
    reader: &mut shm::Reader,
    got: io::Result<Option<usize>>,
) -> io::Result<Option<Option<usize>>> {
    match got {
        Ok(Some(n)) => {
            reader.from_socket += 1;
            Ok(Some(Some(n)))
        }
        Ok(None) if link.switched_meanwhile(reader) => Ok(None),
        Ok(None) => Ok(Some(None)),
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                reader.from_socket += 1;
            }
            Err(e)
        }
    }
}

#[cfg(linux_android)]
fn packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    peek: bool,
    cmsg: &mut Vec<u8>,
    nonblocking: &AtomicBool,
) -> io::Result<sys::Packet> {
    sys::recv_packet(fd, buf, peek, cmsg).map_err(|e| read_error(e, nonblocking))
}

fn describe(addr: &UnixAddress) -> String {
    match addr {
        UnixAddress::Path { path, .. } => path.display().to_string(),
        UnixAddress::Abstract(name) => format!("abstract @{}", String::from_utf8_lossy(name)),
        _ => String::from("?"),
    }
}

/// Maps a read error: a timeout in blocking mode is `TimedOut` (the OS says `EAGAIN`), a
/// reset is `BrokenPipe`.
fn read_error(err: io::Error, nonblocking: &AtomicBool) -> io::Error {
    match sys::errno(&err) {
        Errno::EAGAIN if !nonblocking.load(Ordering::Relaxed) => {
            context_kind(io::ErrorKind::TimedOut, err, "read timed out")
        }
        Errno::ECONNRESET => context_kind(
            io::ErrorKind::BrokenPipe,
            err,
            "peer closed the connection before reading all that was sent to it",
        ),
        _ => err,
    }
}

/// Maps a write error: a timeout in blocking mode is `TimedOut`, a reset is `BrokenPipe`.
fn write_error(err: io::Error, nonblocking: &AtomicBool) -> io::Error {
    match sys::errno(&err) {
        Errno::EAGAIN if !nonblocking.load(Ordering::Relaxed) => {
            context_kind(io::ErrorKind::TimedOut, err, "write timed out")
        }
        Errno::ECONNRESET => context_kind(io::ErrorKind::BrokenPipe, err, "peer is gone"),
        _ => err,
    }
}

/// Plain socket I/O on a borrowed descriptor, with pipekit's error mapping.
struct Io<'a> {
    fd: BorrowedFd<'a>,
    nonblocking: &'a AtomicBool,
}

impl<'a> Io<'a> {
    fn new(fd: BorrowedFd<'a>, nonblocking: &'a AtomicBool) -> Io<'a> {
        Io { fd, nonblocking }
    }
}

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv(self.fd, buf).map_err(|e| read_error(e, self.nonblocking))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        sys::recv_vectored(self.fd, bufs).map_err(|e| read_error(e, self.nonblocking))
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send(self.fd, buf).map_err(|e| write_error(e, self.nonblocking))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.fd, bufs).map_err(|e| write_error(e, self.nonblocking))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for SocketStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SocketStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The mode of an adopted socket of type `seqpacket` (or stream): `mode` if given and
/// possible, else the one its type carries (stream sockets: bytes).
pub(crate) fn adopted_mode(mode: Option<Mode>, seqpacket: bool, fd: &OwnedFd) -> io::Result<Mode> {
    if seqpacket && !sys::NATIVE_MESSAGES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "descriptor {} is a SOCK_SEQPACKET socket: pipekit carries messages on \
                 SOCK_SEQPACKET on Linux and Android only (use SOCK_STREAM here)",
                fd.as_raw_fd()
            ),
        ));
    }
    match (mode, seqpacket) {
        (Some(Mode::Bytes), true) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "descriptor {} is a SOCK_SEQPACKET socket, which carries message mode, not \
                 byte mode",
                fd.as_raw_fd()
            ),
        )),
        (Some(mode), _) => Ok(mode),
        (None, true) => Ok(Mode::Messages),
        (None, false) => Ok(Mode::Bytes),
    }
}
