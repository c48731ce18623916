//! One connection: an instance of a named pipe, from the server's or the client's end.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pipekit_core::backoff::Backoff;
use pipekit_core::error::{
    MessageTooLarge, context, context_kind, invalid_input, message_discarded, message_over_limit,
    wrong_mode,
};
use pipekit_core::ring::Segment as _;
use pipekit_core::slots::Slot;
use pipekit_core::{ConnectOptions, Mode, PeerCredentials, PipeName};

use crate::shm::{self, Channel, Link, State, Wait};
use crate::sys::{self, Event, Transfer};

/// Which end of a named pipe instance a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipeEnd {
    /// The server's end (made by `CreateNamedPipeW`, connected by `ConnectNamedPipe`).
    Server,
    /// A client's end (opened by name).
    Client,
}

/// One connection to a named pipe, in byte or message mode.
///
/// Byte mode: `Read + Write`. Message mode: [`send`](Self::send) and [`recv`](Self::recv)
/// (`PIPE_READMODE_MESSAGE`: one `WriteFile` is one message); there `Read`/`Write` move one
/// message per call. Every method takes `&self` (`&Stream` is `Read + Write` too): one thread
/// can read while another writes; two readers, or two writers, take turns.
pub struct Stream {
    // Declared before `_slot`: the instance is closed before its place under the instance
    // limit is given back.
    handle: OwnedHandle,
    end: PipeEnd,
    mode: Mode,
    max_message_size: usize,
    /// The read side, shared with clones: a read's event and a message held for the
    /// caller. Locked for each read, so that a message is read by one caller from start to
    /// end.
    read: Arc<Mutex<ReadSide>>,
    /// The write side's event, shared with clones; locked for each write.
    write: Arc<Mutex<WriteSide>>,
    /// A connection to a listener's sibling name: the shared-memory channel, or what came
    /// instead.
    shm: Option<Arc<Link>>,
    /// Milliseconds, `INFINITE` for none.
    read_timeout: AtomicU32,
    write_timeout: AtomicU32,
    _slot: Option<Slot>,
}

/// What a read needs besides the handle.
struct ReadSide {
    event: Event,
    /// A message taken off the pipe that did not fit the caller's buffer; the next `recv`
    /// gives it out.
    held: Option<Held>,
    /// Bytes taken from the shared-memory ring.
    tail: u64,
}

/// What a write needs besides the handle.
struct WriteSide {
    event: Event,
    /// Bytes published in the shared-memory ring.
    head: u64,
}

/// Locks `mutex`, also after a panic elsewhere (the read side stays consistent: a held
/// message is put back before any error returns).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A message a blocking stream took off the pipe for the caller, handed on.
pub(crate) struct HeldMessage {
    pub(crate) data: Vec<u8>,
    /// Whether the whole message is in `data`.
    pub(crate) complete: bool,
}

/// A message read (or being read) ahead of the caller.
struct Held {
    data: Vec<u8>,
    /// Whether the whole message is in `data`.
    complete: bool,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("handle", &self.handle)
            .field("end", &self.end)
            .field("mode", &self.mode)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Connects to `name` in byte mode, failing at once if nobody serves it.
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub fn connect(name: &PipeName) -> io::Result<Stream> {
        Stream::connect_with(name, &ConnectOptions::new())
    }

    /// Connects to `name` with `options`.
    ///
    /// When every instance is busy the client waits (`WaitNamedPipeW`) for
    /// [`ConnectOptions::wait`], or the server's default timeout if no wait was asked, then
    /// fails with `TimedOut`; it tries again when another client wins the freed instance.
    ///
    /// # Errors
    ///
    /// `NotFound` at once if no pipe has that name and no wait was asked; `TimedOut` when a
    /// wait runs out; `InvalidInput` for a bad name, bad options, or a server in the other
    /// mode; `PermissionDenied` if the pipe's security descriptor does not admit this user.
    pub fn connect_with(name: &PipeName, options: &ConnectOptions) -> io::Result<Stream> {
        options.validate()?;
        let full = name.resolve_windows()?;
        let path = sys::wide(&full)?;
        let sibling = match options.shared_memory {
            true => Some(sys::wide(&format!("{full}{}", shm::SIBLING))?),
            false => None,
        };
        let deadline = options.wait.map(|wait| Instant::now() + wait);
        let mut backoff = deadline.map(Backoff::until);
        loop {
            if let Some(sibling) = &sibling
                && let Some(stream) = Stream::sibling(sibling, &full, options)?
            {
                return Ok(stream);
            }
            let err = match sys::open_client(&path) {
                Ok(handle) => return Stream::client(handle, &full, options),
                Err(err) => err,
            };
            let now = Instant::now();
            match sys::code(&err) {
                Some(sys::ERROR_FILE_NOT_FOUND) => {
                    let Some(backoff) = backoff.as_mut() else {
                        return Err(context(err, format!("no server is listening on {full}")));
                    };
                    match backoff.next_pause() {
                        Some(pause) => thread::sleep(pause),
                        None => return Err(timed_out(err, &full, options)),
                    }
                }
                Some(sys::ERROR_PIPE_BUSY) => {
                    let wait_ms = match deadline {
                        None => sys::NMPWAIT_USE_DEFAULT_WAIT,
                        Some(deadline) if now >= deadline => {
                            return Err(timed_out(err, &full, options));
                        }
                        Some(deadline) => sys::millis(deadline - now),
                    };
                    match sys::wait_named_pipe(&path, wait_ms) {
                        // An instance is free, or the server went away, or (Wine) every
                        // instance was closed while waiting, as when a server with an instance
                        // limit replaces its only instance: open again.
                        Ok(()) => {}
                        Err(e)
                            if matches!(
                                sys::code(&e),
                                Some(sys::ERROR_FILE_NOT_FOUND | sys::ERROR_HANDLES_CLOSED)
                            ) => {}
                        Err(e) if sys::code(&e) == Some(sys::ERROR_SEM_TIMEOUT) => {
                            return Err(context_kind(
                                io::ErrorKind::TimedOut,
                                e,
                                format!("every instance of {full} stayed busy"),
                            ));
                        }
                        Err(e) => {
                            return Err(context(e, format!("cannot wait for {full}")));
                        }
                    }
                }
                Some(sys::ERROR_ACCESS_DENIED) => {
                    return Err(context(
                        err,
                        format!("{full}'s security descriptor does not admit this user"),
                    ));
                }
                _ => return Err(context(err, format!("cannot connect to {full}"))),
            }
        }
    }

    /// Connects to the sibling name at `path` of a listener that offers shared memory;
    /// `None` if it is not there or this client may not take handles from the server's
    /// process (the name itself is tried then).
    fn sibling(path: &[u16], full: &str, options: &ConnectOptions) -> io::Result<Option<Stream>> {
        let Ok(handle) = sys::open_client(path) else {
            return Ok(None);
        };
        let Some(server) = shm::open_peer(&handle, false) else {
            return Ok(None);
        };
        let mut stream = Stream::client(handle, full, options)?;
        stream.shm = Some(Arc::new(Link::client(server)));
        Ok(Some(stream))
    }

    fn client(handle: OwnedHandle, full: &str, options: &ConnectOptions) -> io::Result<Stream> {
        let is_message = sys::is_message_pipe(handle.as_handle())
            .map_err(|e| context(e, format!("cannot query {full}")))?;
        let wanted = options.mode == Mode::Messages;
        if is_message != wanted {
            let theirs = if is_message { "message" } else { "byte" };
            return Err(invalid_input(format!(
                "the server of {full} does not use {} mode (it is a {theirs}-type pipe)",
                options.mode
            )));
        }
        if is_message {
            sys::set_message_read_mode(handle.as_handle())
                .map_err(|e| context(e, format!("cannot set message read mode on {full}")))?;
        }
        Stream::new(
            handle,
            PipeEnd::Client,
            options.mode,
            options.max_message_size,
            None,
        )
    }

    pub(crate) fn new(
        handle: OwnedHandle,
        end: PipeEnd,
        mode: Mode,
        max_message_size: usize,
        slot: Option<Slot>,
    ) -> io::Result<Stream> {
        Ok(Stream {
            handle,
            end,
            mode,
            max_message_size,
            read: Arc::new(Mutex::new(ReadSide {
                event: Event::new()?,
                held: None,
                tail: 0,
            })),
            write: Arc::new(Mutex::new(WriteSide {
                event: Event::new()?,
                head: 0,
            })),
            shm: None,
            read_timeout: AtomicU32::new(sys::WAIT_FOREVER),
            write_timeout: AtomicU32::new(sys::WAIT_FOREVER),
            _slot: slot,
        })
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Takes the stream apart for an event loop: the pipe handle (opened for overlapped
    /// I/O), which end it is, and its place under the listener's instance limit (keep it as
    /// long as the handle is in use). A message held for the caller (one that did not fit a
    /// `recv` buffer) would be lost: use [`into_handle`](Self::into_handle), which refuses
    /// then, or receive it first.
    ///
    /// A stream that asked for shared memory ([`ConnectOptions::shared_memory`]), or a
    /// server's stream of such a client, must not be taken apart: its traffic does not go
    /// through the pipe ([`into_handle`](Self::into_handle) refuses it).
    pub fn into_parts(self) -> (OwnedHandle, PipeEnd, Option<Slot>) {
        let (handle, server_end, slot, _held) = self.into_parts_with_held();
        (handle, server_end, slot)
    }

    /// Takes the stream apart as [`into_parts`](Self::into_parts) does, and also gives out a
    /// held message (its bytes and whether it is whole), for the non-blocking engine.
    pub(crate) fn into_parts_with_held(
        self,
    ) -> (OwnedHandle, PipeEnd, Option<Slot>, Option<HeldMessage>) {
        let held = lock(&self.read).held.take();
        let Stream {
            handle, end, _slot, ..
        } = self;
        let held = held.map(|h| HeldMessage {
            data: h.data,
            complete: h.complete,
        });
        (handle, end, _slot, held)
    }

    /// Adopts `handle`, an end of a named pipe made outside pipekit (inherited from a
    /// parent process, or opened by other code), in the pipe's own type: a message-type pipe
    /// is message mode (its read mode is set to messages), a byte-type pipe byte mode.
    ///
    /// The handle must have been opened for overlapped I/O (`FILE_FLAG_OVERLAPPED`), as
    /// pipekit's own are: the stream's reads and writes are overlapped, with timeouts and
    /// reading and writing at once, which a synchronous handle cannot do.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `handle` is not a named pipe (the OS code kept) or for a
    /// `max_message_size` out of range; the OS error of setting the read mode.
    pub fn from_handle(handle: OwnedHandle, max_message_size: usize) -> io::Result<Stream> {
        ConnectOptions::new()
            .max_message_size(max_message_size)
            .validate()?;
        let (message, server_end) = sys::pipe_info(handle.as_handle()).map_err(|e| {
            context_kind(
                io::ErrorKind::InvalidInput,
                e,
                "the handle is not a named pipe",
            )
        })?;
        if message {
            sys::set_message_read_mode(handle.as_handle())
                .map_err(|e| context(e, "cannot set message read mode"))?;
        }
        let mode = if message { Mode::Messages } else { Mode::Bytes };
        let end = if server_end {
            PipeEnd::Server
        } else {
            PipeEnd::Client
        };
        Stream::new(handle, end, mode, max_message_size, None)
    }

    /// Gives up the pipe handle, for another owner. Its place under a listener's instance
    /// limit is given back.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the stream holds a message for the caller (one that did not fit a
    /// `recv` buffer): it would be lost with the handle. `Unsupported` for a stream of a
    /// shared-memory connection.
    pub fn into_handle(self) -> io::Result<OwnedHandle> {
        self.on_pipe_only()?;
        if let Some(held) = &lock(&self.read).held {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the stream holds {} bytes of a message not yet received; it would be lost \
                     with the handle",
                    held.data.len()
                ),
            ));
        }
        Ok(self.into_parts().0)
    }

    /// Which end of the pipe this stream holds.
    pub fn end(&self) -> PipeEnd {
        self.end
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Sends `msg` as one message.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `msg` is over the maximum message size (nothing is sent) or the
    /// stream is in byte mode; `BrokenPipe` if the peer is gone; `TimedOut` after the write
    /// timeout (the message may then have been cut short: end the connection).
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        if self.mode != Mode::Messages {
            return Err(wrong_mode("send", self.mode));
        }
        if msg.len() > self.max_message_size {
            return Err(message_over_limit(msg.len(), self.max_message_size));
        }
        if let Some(channel) = self.write_channel()? {
            let mut side = lock(&self.write);
            let wait = ring_wait(&self.write_timeout);
            let max = self.max_message_size;
            return channel.send(&mut side.head, msg.len(), max, wait, |dst| {
                dst.copy_from_slice(msg);
            });
        }
        let n = self.write_raw(msg)?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the write timeout cut a {}-byte message after {n} bytes; the connection \
                     is no longer usable",
                    msg.len()
                ),
            ));
        }
        Ok(())
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` once the peer has closed and
    /// every message has been read. Zero-length messages are `Some(0)`.
    ///
    /// # Errors
    ///
    /// If the message does not fit `buf`: `InvalidInput` carrying a [`MessageTooLarge`] with
    /// its size; the message stays readable (pipekit takes it off the pipe and holds it for
    /// the next `recv`). `TimedOut` after the read timeout; `InvalidData` for a message over
    /// the maximum message size (it is discarded).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.mode != Mode::Messages {
            return Err(wrong_mode("recv", self.mode));
        }
        if let Some(channel) = self.read_channel()? {
            let mut side = lock(&self.read);
            let wait = ring_wait(&self.read_timeout);
            let (room, max) = (Some(buf.len()), self.max_message_size);
            return channel.recv(&mut side.tail, room, max, wait, |map, at, len| {
                map.copy_out(at, &mut buf[..len]);
                len
            });
        }
        let mut side = lock(&self.read);
        if let Some(held) = side.held.take() {
            let data = self.complete_held(&mut side, held)?;
            if data.len() > buf.len() {
                let err = MessageTooLarge::error(data.len(), buf.len());
                side.held = Some(Held {
                    data,
                    complete: true,
                });
                return Err(err);
            }
            buf[..data.len()].copy_from_slice(&data);
            return Ok(Some(data.len()));
        }
        let n = match self.read_raw(&side, buf)? {
            None => return Ok(None),
            Some(Transfer::Done(n)) => return Ok(Some(n)),
            Some(Transfer::More(n)) => n,
        };
        // The message goes on past `buf`: take the rest off the pipe and hold it.
        let left = sys::message_left(self.handle.as_handle()).unwrap_or(0);
        let mut data = Vec::with_capacity(n + left.min(self.max_message_size));
        data.extend_from_slice(&buf[..n]);
        let data = self.complete_held(
            &mut side,
            Held {
                data,
                complete: false,
            },
        )?;
        let err = MessageTooLarge::error(data.len(), buf.len());
        side.held = Some(Held {
            data,
            complete: true,
        });
        Err(err)
    }

    /// Receives one whole message into `buf`, which is cleared first and grown to fit.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), but no message within the maximum is too large for it.
    pub fn recv_to_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        if self.mode != Mode::Messages {
            return Err(wrong_mode("recv_to_vec", self.mode));
        }
        buf.clear();
        if let Some(channel) = self.read_channel()? {
            let mut side = lock(&self.read);
            let wait = ring_wait(&self.read_timeout);
            let max = self.max_message_size;
            return channel.recv(&mut side.tail, None, max, wait, |map, at, len| {
                buf.resize(len, 0);
                map.copy_out(at, buf);
                len
            });
        }
        let mut side = lock(&self.read);
        if let Some(held) = side.held.take() {
            *buf = self.complete_held(&mut side, held)?;
            return Ok(Some(buf.len()));
        }
        buf.reserve(self.max_message_size.min(64 * 1024));
        let timeout = self.read_timeout.load(Ordering::Relaxed);
        match read_result(sys::read_spare(
            self.handle.as_handle(),
            &side.event,
            buf,
            timeout,
        ))? {
            None => Ok(None),
            Some(Transfer::Done(n)) => Ok(Some(n)),
            Some(Transfer::More(_)) => {
                let data = self.complete_held(
                    &mut side,
                    Held {
                        data: std::mem::take(buf),
                        complete: false,
                    },
                )?;
                *buf = data;
                Ok(Some(buf.len()))
            }
        }
    }

    /// Reads the rest of a held message. On an error the part read so far stays held (a
    /// timeout loses nothing); a message over the maximum is read to its end and dropped.
    fn complete_held(&self, side: &mut ReadSide, mut held: Held) -> io::Result<Vec<u8>> {
        let timeout = self.read_timeout.load(Ordering::Relaxed);
        while !held.complete {
            if held.data.len() > self.max_message_size {
                return self.discard_rest(side, held.data.len());
            }
            let left = sys::message_left(self.handle.as_handle()).unwrap_or(0);
            held.data.reserve(left.max(4096));
            let result = read_result(sys::read_spare(
                self.handle.as_handle(),
                &side.event,
                &mut held.data,
                timeout,
            ));
            match result {
                Ok(Some(Transfer::Done(_))) => held.complete = true,
                Ok(Some(Transfer::More(_))) => {}
                Ok(None) => {
                    return Err(peer_closed_mid_message(held.data.len()));
                }
                Err(e) => {
                    side.held = Some(held);
                    return Err(e);
                }
            }
        }
        if held.data.len() > self.max_message_size {
            return Err(message_discarded(held.data.len(), self.max_message_size));
        }
        Ok(held.data)
    }

    /// Reads and drops the rest of an oversized message of which `so_far` bytes were read.
    fn discard_rest(&self, side: &ReadSide, mut size: usize) -> io::Result<Vec<u8>> {
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            match self.read_raw(side, &mut scratch)? {
                Some(Transfer::More(n)) => size += n,
                Some(Transfer::Done(n)) => {
                    size += n;
                    return Err(message_discarded(size, self.max_message_size));
                }
                None => {
                    return Err(peer_closed_mid_message(size));
                }
            }
        }
    }

    /// One read into `buf` with the read side locked; `None` at the end of the stream.
    fn read_raw(&self, side: &ReadSide, buf: &mut [u8]) -> io::Result<Option<Transfer>> {
        let timeout = self.read_timeout.load(Ordering::Relaxed);
        read_result(sys::read(
            self.handle.as_handle(),
            &side.event,
            buf,
            timeout,
        ))
    }

    fn write_raw(&self, buf: &[u8]) -> io::Result<usize> {
        let timeout = self.write_timeout.load(Ordering::Relaxed);
        let side = lock(&self.write);
        sys::write(self.handle.as_handle(), &side.event, buf, timeout).map_err(broken_pipe)
    }

    /// Fails with `Unsupported` for a connection to a listener's sibling name: its traffic
    /// is (or may soon be) in shared memory, not on the pipe, so the handle cannot be
    /// given to other code or an event loop.
    pub(crate) fn on_pipe_only(&self) -> io::Result<()> {
        match self.shm {
            None => Ok(()),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a stream that asked for shared memory cannot be given up as a bare pipe \
                 handle: its traffic does not all go through the pipe",
            )),
        }
    }

    /// Makes this a connection to a listener's sibling name.
    pub(crate) fn set_link(&mut self, link: Link) {
        self.shm = Some(Arc::new(link));
    }

    /// Server: writes the first message of a sibling connection (an offer or its refusal).
    /// A client that left already, or does not take it within a second, finds a connection
    /// that reads the end, or breaks.
    pub(crate) fn write_first(&self, message: &[u8]) {
        let side = lock(&self.write);
        let _ = sys::write(self.handle.as_handle(), &side.event, message, 1000);
    }

    /// The channel reads go to, if any (a client reads the server's first message if it has
    /// not yet; the server waits until the client said how it writes).
    fn read_channel(&self) -> io::Result<Option<&Channel>> {
        let Some(link) = &self.shm else {
            return Ok(None);
        };
        if link.is_server() {
            return link.server_channel(ring_wait(&self.read_timeout));
        }
        Ok(match self.client_state(link)? {
            State::Ring(channel) => Some(channel),
            _ => None,
        })
    }

    /// The channel writes go to, if any.
    fn write_channel(&self) -> io::Result<Option<&Channel>> {
        let Some(link) = &self.shm else {
            return Ok(None);
        };
        let state = match link.is_server() {
            true => link.state(),
            false => Some(self.client_state(link)?),
        };
        Ok(match state {
            Some(State::Ring(channel)) if link.is_server() || self.writes_fit(channel) => {
                Some(channel)
            }
            _ => None,
        })
    }

    /// Whether this side's messages fit its ring (else it writes on the pipe).
    fn writes_fit(&self, channel: &Channel) -> bool {
        self.mode != Mode::Messages || channel.fits(self.max_message_size)
    }

    /// Client: what the server's first message said, read now if it has not been.
    fn client_state<'a>(&self, link: &'a Link) -> io::Result<&'a State> {
        let state = link.settle(|first| self.read_first(first), |c| self.writes_fit(c))?;
        if let State::Broken(why) = state {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()));
        }
        Ok(state)
    }

    /// Client: reads the server's first message into `first`; `false` at the end.
    fn read_first(&self, first: &mut [u8; shm::OFFER_LEN]) -> io::Result<bool> {
        let side = lock(&self.read);
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        let mut got = 0;
        while got < first.len() {
            match self.read_raw(&side, &mut first[got..])? {
                None if got == 0 => return Ok(false),
                None => return Err(bad("the server closed in the middle of its first message")),
                Some(Transfer::Done(n)) => got += n,
                Some(Transfer::More(_)) => {
                    return Err(bad("the server's first message is no shared-memory offer"));
                }
            }
            if self.mode == Mode::Messages && got < first.len() {
                return Err(bad("the server's first message is no shared-memory offer"));
            }
        }
        Ok(true)
    }

    /// Sends one message of `len` bytes that `fill` writes in place: into the shared-memory
    /// ring on such a connection, else into a buffer that is then sent.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        if self.mode != Mode::Messages {
            return Err(wrong_mode("send_with", self.mode));
        }
        if len > self.max_message_size {
            return Err(message_over_limit(len, self.max_message_size));
        }
        if let Some(channel) = self.write_channel()? {
            let mut side = lock(&self.write);
            let wait = ring_wait(&self.write_timeout);
            return channel.send(&mut side.head, len, self.max_message_size, wait, fill);
        }
        let mut buf = vec![0u8; len];
        let out = fill(&mut buf);
        self.send(&buf).map(|()| out)
    }

    /// Receives one message and hands it to `take` in place: from the shared-memory ring on
    /// such a connection (no copy), else from a buffer it was received into. `None` at the
    /// end. The bytes are the peer's: one that breaks the protocol could change them while
    /// `take` looks.
    ///
    /// # Errors
    ///
    /// As [`recv_to_vec`](Self::recv_to_vec).
    pub fn recv_with<R>(&self, take: impl FnOnce(&[u8]) -> R) -> io::Result<Option<R>> {
        if self.mode != Mode::Messages {
            return Err(wrong_mode("recv_with", self.mode));
        }
        if let Some(channel) = self.read_channel()? {
            let mut side = lock(&self.read);
            let wait = ring_wait(&self.read_timeout);
            let max = self.max_message_size;
            return channel.recv(&mut side.tail, None, max, wait, |map, at, len| {
                map.with_slice(at, len, take)
            });
        }
        let mut buf = Vec::new();
        Ok(self.recv_to_vec(&mut buf)?.map(|_| take(&buf)))
    }

    /// Whether this connection runs over shared memory: the listener offers it and this
    /// client asked ([`ConnectOptions::shared_memory`]). A client learns it from the
    /// server's first message, which it reads at its first read or write; this call also
    /// reads it if it is there, without waiting, and is `false` while it has not come.
    pub fn is_shared_memory(&self) -> bool {
        let Some(link) = &self.shm else {
            return false;
        };
        if !link.is_server()
            && link.state().is_none()
            && sys::bytes_waiting(self.handle.as_handle()).is_ok_and(|n| n >= shm::OFFER_LEN)
        {
            let _ = self.client_state(link);
        }
        link.active()
    }

    /// Byte mode: reads what has arrived. Message mode: receives one message.
    fn read_bytes(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.mode == Mode::Messages {
            return Ok(self.recv(buf)?.unwrap_or(0));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(channel) = self.read_channel()? {
            let mut side = lock(&self.read);
            let wait = ring_wait(&self.read_timeout);
            return channel.read(&mut side.tail, buf, wait);
        }
        let side = lock(&self.read);
        loop {
            match self.read_raw(&side, buf)? {
                // A zero-byte write by the peer is not the end of the stream.
                Some(Transfer::Done(0)) => continue,
                Some(Transfer::Done(n) | Transfer::More(n)) => return Ok(n),
                None => return Ok(0),
            }
        }
    }

    /// Byte mode: writes `buf` (or, after a write timeout, some of it). Message mode: sends
    /// `buf` as one message.
    fn write_bytes(&self, buf: &[u8]) -> io::Result<usize> {
        if self.mode == Mode::Messages {
            return self.send(buf).map(|()| buf.len());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(channel) = self.write_channel()? {
            let mut side = lock(&self.write);
            let wait = ring_wait(&self.write_timeout);
            return channel.write(&mut side.head, buf, wait);
        }
        self.write_raw(buf)
    }

    /// A second handle on the same pipe instance (`DuplicateHandle`), for reading on one
    /// thread while another writes. Each handle has its own timeouts; the read and write
    /// sides are shared, so a held message (one that did not fit a caller's buffer) is the
    /// next `recv` of either, and two handles reading messages take turns, message by
    /// message. The instance closes, and its place under a listener's limit is given back,
    /// when both are dropped.
    ///
    /// # Errors
    ///
    /// The OS error of `DuplicateHandle`.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            handle: self.handle.try_clone()?,
            end: self.end,
            mode: self.mode,
            max_message_size: self.max_message_size,
            read: Arc::clone(&self.read),
            write: Arc::clone(&self.write),
            shm: self.shm.clone(),
            read_timeout: AtomicU32::new(self.read_timeout.load(Ordering::Relaxed)),
            write_timeout: AtomicU32::new(self.write_timeout.load(Ordering::Relaxed)),
            _slot: self._slot.as_ref().map(Slot::share),
        })
    }

    /// Fails with `Unsupported`: named pipes have no half-close.
    ///
    /// # Errors
    ///
    /// Always `Unsupported`.
    pub fn shutdown_write(&self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Windows named pipes have no half-close; drop the stream to end the connection",
        ))
    }

    /// Waits until the peer has read everything written so far (`FlushFileBuffers`).
    ///
    /// Not needed to keep data: dropping the stream never discards what the peer has not
    /// read. Note that it waits for as long as the peer does not read.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` if the peer is gone.
    pub fn flush_buffers(&self) -> io::Result<()> {
        if let Some(channel) = self.write_channel()? {
            let side = lock(&self.write);
            return channel.wait_until_taken(side.head, Wait::Until(None));
        }
        sys::flush_buffers(self.handle.as_handle()).map_err(broken_pipe)
    }

    /// The peer's process id (uid and gid are `None` on Windows).
    ///
    /// # Errors
    ///
    /// The OS error of `GetNamedPipeClientProcessId` / `GetNamedPipeServerProcessId`.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let pid = sys::peer_pid(self.handle.as_handle(), self.end == PipeEnd::Server)?;
        Ok(PeerCredentials::new(Some(pid), None, None))
    }

    /// Makes reads and `recv` fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout
            .store(timeout_ms(timeout)?, Ordering::Relaxed);
        Ok(())
    }

    /// Makes writes and `send` fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout
            .store(timeout_ms(timeout)?, Ordering::Relaxed);
        Ok(())
    }
}

/// How long a wait on a ring may take, from a timeout in milliseconds.
fn ring_wait(timeout: &AtomicU32) -> Wait {
    match timeout.load(Ordering::Relaxed) {
        sys::WAIT_FOREVER => Wait::Until(None),
        ms => Wait::Until(Some(Instant::now() + Duration::from_millis(u64::from(ms)))),
    }
}

fn timeout_ms(timeout: Option<Duration>) -> io::Result<u32> {
    match timeout {
        None => Ok(sys::WAIT_FOREVER),
        Some(d) if d.is_zero() => Err(invalid_input("a timeout of zero is not allowed")),
        Some(d) => Ok(sys::millis(d)),
    }
}

fn timed_out(err: io::Error, full: &str, options: &ConnectOptions) -> io::Error {
    context_kind(
        io::ErrorKind::TimedOut,
        err,
        format!(
            "no server accepted on {full} within {:?}",
            options.wait.unwrap_or_default()
        ),
    )
}

/// The peer has closed its end (or the server disconnected this instance).
pub(crate) fn is_gone(err: &io::Error) -> bool {
    matches!(
        sys::code(err),
        Some(sys::ERROR_BROKEN_PIPE | sys::ERROR_NO_DATA | sys::ERROR_PIPE_NOT_CONNECTED)
    )
}

/// The peer closed `so_far` bytes into a message: `UnexpectedEof`, as on every OS.
pub(crate) fn peer_closed_mid_message(so_far: usize) -> io::Error {
    pipekit_core::error::closed_mid_message(so_far, None)
}

/// A write-side error: `BrokenPipe` when the peer is gone (the OS code is kept).
pub(crate) fn broken_pipe(err: io::Error) -> io::Error {
    if is_gone(&err) {
        context_kind(io::ErrorKind::BrokenPipe, err, "the peer closed the pipe")
    } else {
        err
    }
}

/// A read's result with the end of the stream as `None`.
fn read_result(result: io::Result<Transfer>) -> io::Result<Option<Transfer>> {
    match result {
        Ok(t) => Ok(Some(t)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Read for &Stream {
    /// Byte mode: reads what has arrived. Message mode: receives one message (`Ok(0)` is a
    /// zero-length message or the end; use [`recv`](Stream::recv) to tell them apart).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_bytes(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let first = bufs.iter_mut().find(|b| !b.is_empty());
        first.map_or(Ok(0), |b| self.read_bytes(b))
    }
}

impl Write for &Stream {
    /// Byte mode: writes `buf` (or, after a write timeout, some of it). Message mode: sends
    /// `buf` as one message.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let first = bufs.iter().find(|b| !b.is_empty());
        first.map_or(Ok(0), |b| self.write_bytes(b))
    }

    /// Does nothing: nothing is buffered in the process. See
    /// [`flush_buffers`](Stream::flush_buffers) to wait for the peer to read.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
        Ok(())
    }
}

impl AsHandle for Stream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.handle.as_handle()
    }
}

impl AsRawHandle for Stream {
    fn as_raw_handle(&self) -> RawHandle {
        self.handle.as_raw_handle()
    }
}

impl pipekit_core::Connection for Stream {
    fn mode(&self) -> Mode {
        self.mode
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
        self.max_message_size
    }
}
