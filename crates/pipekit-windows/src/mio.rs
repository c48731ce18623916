//! mio support (feature `mio`): `Source` for the non-blocking listener and message streams,
//! and byte-mode streams as `mio::windows::NamedPipe`.
//!
//! mio offers no way to hang another overlapped operation on its completion port, and its
//! `Waker` is one per `Poll`. So a registered non-blocking object owns a loopback UDP socket
//! (127.0.0.1, port 0), registered under the object's token; the thread-pool callback that
//! sees an operation end sends it one datagram, from one blocking socket shared by all (the
//! send is over before it returns). The datagram arriving makes the token readable;
//! `accept`, `try_recv` and `try_send` read the socket empty before they look at the object.
//! After any event, try every operation that returned `WouldBlock`.
//!
//! Not a private named pipe, as before: beside a CPU hog under Wine, a byte written into
//! such a pipe was taken off it by mio's read and no event ever came for it, so a stream
//! whose message had arrived was never woken. mio's sockets go through its AFD readiness,
//! which every mio user on Windows relies on.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use mio::event::Source;
use mio::windows::NamedPipe;
use mio::{Interest, Registry, Token};
use pipekit_core::Mode;
use pipekit_core::error::{context, invalid_input};
use pipekit_core::slots::Slot;

use crate::nonblocking::{self, signal::Signal};
use crate::sys;

/// What stands for a non-blocking object's readiness in a `Poll`: a loopback UDP socket of
/// its own, registered under the object's token, which a raise sends one datagram to.
pub(crate) struct SignalSocket {
    socket: Mutex<mio::net::UdpSocket>,
    addr: SocketAddr,
    /// A datagram is on its way and not drained yet.
    raised: AtomicBool,
}

/// The socket every raise sends from: blocking, so a send is over before it returns.
fn sender() -> io::Result<&'static std::net::UdpSocket> {
    static SENDER: OnceLock<std::net::UdpSocket> = OnceLock::new();
    if let Some(socket) = SENDER.get() {
        return Ok(socket);
    }
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(SENDER.get_or_init(|| socket))
}

impl SignalSocket {
    pub(crate) fn new() -> io::Result<SignalSocket> {
        let socket = mio::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(|e| context(e, "cannot bind the mio signal socket on 127.0.0.1"))?;
        let addr = socket.local_addr()?;
        sender()?;
        Ok(SignalSocket {
            socket: Mutex::new(socket),
            addr,
            raised: AtomicBool::new(false),
        })
    }

    /// Makes events for `token`; one comes at once, so that what happened before the
    /// registration is looked at.
    fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        registry.register(&mut *socket, token, Interest::READABLE)?;
        drop(socket);
        self.raised.store(false, Ordering::SeqCst);
        self.raise();
        Ok(())
    }

    fn reregister(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        registry.reregister(&mut *socket, token, Interest::READABLE)?;
        drop(socket);
        self.raised.store(false, Ordering::SeqCst);
        self.raise();
        Ok(())
    }

    fn deregister(&self, registry: &Registry) -> io::Result<()> {
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        registry.deregister(&mut *socket)
    }
}

impl Signal for SignalSocket {
    fn raise(&self) {
        if self.raised.swap(true, Ordering::SeqCst) {
            return;
        }
        // At most one datagram waits in the socket (the flag), so the send never waits.
        let sent = sender().and_then(|socket| socket.send_to(&[1], self.addr));
        if sent.is_err() {
            self.raised.store(false, Ordering::SeqCst);
        }
    }

    /// Reads the socket empty, then lets the next `raise` make a new event (in this order,
    /// so that a datagram sent after the flag went down cannot be read here and leave the
    /// flag up with nothing on its way).
    fn drain(&self) {
        let socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buf = [0u8; 16];
        while socket.recv_from(&mut buf).is_ok() {}
        self.raised.store(false, Ordering::SeqCst);
    }

    fn describe(&self) -> String {
        format!("raised: {}", self.raised.load(Ordering::SeqCst))
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The signal socket standing for `current`'s readiness, made (and given with `install`) on
/// first use.
fn signal_pipe(
    current: Option<Arc<dyn Signal>>,
    install: impl FnOnce(Arc<dyn Signal>),
) -> io::Result<Arc<SignalSocket>> {
    if let Some(signal) = current
        && let Ok(pipe) = signal.into_any().downcast::<SignalSocket>()
    {
        return Ok(pipe);
    }
    let pipe = Arc::new(SignalSocket::new()?);
    install(Arc::clone(&pipe) as Arc<dyn Signal>);
    Ok(pipe)
}

impl nonblocking::Listener {
    fn mio_signal(&mut self) -> io::Result<Arc<SignalSocket>> {
        signal_pipe(self.signal(), |signal| self.set_signal(signal))
    }
}

impl nonblocking::Stream {
    fn mio_signal(&mut self) -> io::Result<Arc<SignalSocket>> {
        if self.mode() != Mode::Messages {
            return Err(invalid_input(
                "a byte-mode pipe is registered with mio as mio::windows::NamedPipe \
                 (into_mio)",
            ));
        }
        let current = self.signal();
        signal_pipe(current, |signal| self.set_signal(signal))
    }
}

// Both register through the object's signal socket; `interests` is not narrowed (any event
// may stand for either readiness).

/// Registers the listener: its token becomes ready when a client has connected (and when
/// a place under the instance limit is given back): `accept` until `WouldBlock`.
impl Source for nonblocking::Listener {
    fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        self.mio_signal()?.register(registry, token)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        self.mio_signal()?.reregister(registry, token)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.mio_signal()?.deregister(registry)
    }
}

/// Registers a message-mode stream: its token becomes ready when a message (or the end)
/// arrives and when a send that was in flight ends. Events carry both readable and
/// writable: after any event, call `try_recv` until `WouldBlock` and retry a send that got
/// `WouldBlock`.
impl Source for nonblocking::Stream {
    fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        self.mio_signal()?.register(registry, token)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        self.mio_signal()?.reregister(registry, token)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.mio_signal()?.deregister(registry)
    }
}

/// A byte-mode pipe handed to mio: a [`mio::windows::NamedPipe`] (reached through `Deref`)
/// that keeps the stream's place under the listener's instance limit until it is dropped.
#[derive(Debug)]
pub struct MioPipe {
    // Declared first: the instance is closed before its place is given back.
    pipe: NamedPipe,
    _slot: Option<Slot>,
}

impl MioPipe {
    fn new(handle: OwnedHandle, slot: Option<Slot>) -> MioPipe {
        MioPipe {
            pipe: sys::mio_pipe(handle),
            _slot: slot,
        }
    }

    /// The mio pipe; dropping it while the place is kept elsewhere is the caller's
    /// business, so this gives out the place too.
    pub fn into_parts(self) -> (NamedPipe, Option<Slot>) {
        (self.pipe, self._slot)
    }
}

impl Deref for MioPipe {
    type Target = NamedPipe;

    fn deref(&self) -> &NamedPipe {
        &self.pipe
    }
}

impl DerefMut for MioPipe {
    fn deref_mut(&mut self) -> &mut NamedPipe {
        &mut self.pipe
    }
}

impl Read for MioPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.pipe.read(buf)
    }
}

impl Write for MioPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pipe.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pipe.flush()
    }
}

impl Source for MioPipe {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.pipe.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.pipe.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.pipe.deregister(registry)
    }
}

impl crate::Stream {
    /// Hands a byte-mode stream to mio (the handle is open for overlapped I/O and tied to no
    /// completion port yet). The returned pipe keeps the stream's place under the listener's
    /// instance limit.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message-mode stream: mio's pipe reads through a 4 KiB buffer and
    /// splits messages; use [`nonblocking::Stream`] for those.
    pub fn into_mio(self) -> io::Result<MioPipe> {
        if self.mode() == Mode::Messages {
            return Err(mio_message_mode());
        }
        self.on_pipe_only()?;
        let (handle, _server_end, slot) = self.into_parts();
        Ok(MioPipe::new(handle, slot))
    }
}

impl nonblocking::Stream {
    /// Hands a byte-mode stream (from the non-blocking listener) to mio, as
    /// [`crate::Stream::into_mio`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message-mode stream (register it directly instead).
    pub fn into_mio(self) -> io::Result<MioPipe> {
        if self.mode() == Mode::Messages {
            return Err(mio_message_mode());
        }
        let (handle, _server_end, slot) = self.into_parts()?;
        Ok(MioPipe::new(handle, slot))
    }
}

fn mio_message_mode() -> io::Error {
    invalid_input(
        "mio::windows::NamedPipe splits messages at its 4 KiB buffer; register a \
         pipekit_windows::nonblocking::Stream for message mode",
    )
}
