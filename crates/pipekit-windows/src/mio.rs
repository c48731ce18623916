//! mio support (feature `mio`): `Source` for the non-blocking listener and message streams,
//! and byte-mode streams as `mio::windows::NamedPipe`.
//!
//! mio offers no way to hang another overlapped operation on its completion port, and its
//! `Waker` is one per `Poll`. So a registered non-blocking object owns a private signal
//! pipe: its server end is a `mio::windows::NamedPipe` registered under the object's token,
//! and the thread-pool callback that sees an operation end writes one byte into its client
//! end. The byte arriving makes the token ready; `accept`, `try_recv` and `try_send` read the
//! signal pipe empty before they look at the object. After any event, try every operation
//! that returned `WouldBlock`. Tokens must stay below 2^63: mio's pipe type keeps a token
//! shifted left by one bit.
//!
//! The client end is opened for synchronous I/O and written with a plain `WriteFile`: the
//! byte is in the pipe before the call returns. An overlapped write (mio's) started on a
//! pool thread is cancelled if that thread exits before it ends (Windows and Wine cancel the
//! I/O of an exiting thread), and the event was then lost with it: a stream whose message
//! had arrived was never woken again.

use std::any::Any;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use mio::event::Source;
use mio::windows::NamedPipe;
use mio::{Interest, Registry, Token};
use pipekit_core::Mode;
use pipekit_core::error::{context, invalid_input};
use pipekit_core::slots::Slot;

use crate::nonblocking::{self, Signal};
use crate::sys::{self, PipeConfig, SecurityDescriptor};

/// The private pipe whose readiness stands for a non-blocking object's.
pub(crate) struct SignalPipe {
    reader: Mutex<NamedPipe>,
    /// Synchronous; a write is over before it returns.
    writer: Mutex<std::fs::File>,
    /// A byte is on its way and not drained yet.
    raised: AtomicBool,
    /// A raise is writing its byte (for `Debug`).
    writing: AtomicBool,
}

impl SignalPipe {
    pub(crate) fn new() -> io::Result<SignalPipe> {
        static SECURITY: OnceLock<SecurityDescriptor> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let security = match SECURITY.get() {
            Some(sd) => sd,
            None => {
                let sd = crate::listener::owner_only()?;
                SECURITY.get_or_init(|| sd)
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let full = format!(
            r"\\.\pipe\pipekit-signal-{}-{}-{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = sys::wide(&full)?;
        let config = PipeConfig {
            pipe_mode: sys::PIPE_TYPE_BYTE
                | sys::PIPE_READMODE_BYTE
                | sys::PIPE_WAIT
                | sys::PIPE_REJECT_REMOTE_CLIENTS,
            max_instances: 1,
            out_buffer: 4096,
            in_buffer: 4096,
            default_timeout_ms: 50,
        };
        let server = sys::create_pipe(&path, true, &config, Some(security))
            .map_err(|e| context(e, format!("cannot create the signal pipe {full}")))?;
        let client = sys::open_client_sync(&path)
            .map_err(|e| context(e, format!("cannot open the signal pipe {full}")))?;
        let (reader, writer) = (sys::mio_pipe(server), std::fs::File::from(client));
        Ok(SignalPipe {
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            raised: AtomicBool::new(false),
            writing: AtomicBool::new(false),
        })
    }

    fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        // mio makes one event at once (the pipe is writable), so what happened before the
        // registration is looked at.
        registry.register(&mut *reader, token, Interest::READABLE)
    }

    fn reregister(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        registry.reregister(&mut *reader, token, Interest::READABLE)
    }

    fn deregister(&self, registry: &Registry) -> io::Result<()> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        registry.deregister(&mut *reader)
    }
}

impl Signal for SignalPipe {
    fn raise(&self) {
        if self.raised.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // At most one byte waits in the pipe (the flag), so the write never waits.
        self.writing.store(true, Ordering::SeqCst);
        let written = writer.write_all(&[1]);
        self.writing.store(false, Ordering::SeqCst);
        if written.is_err() {
            // Cannot happen while the signal lives (it holds both ends); the next raise
            // tries again.
            self.raised.store(false, Ordering::SeqCst);
        }
    }

    /// Reads the pipe empty, then lets the next `raise` make a new event.
    ///
    /// In this order: a byte written after the flag went down could otherwise be read here,
    /// leaving the flag up with no byte on its way, and every later `raise` would do
    /// nothing (a lost wakeup). A `raise` between the reading and the flag going down writes
    /// a byte that is still on its way afterwards (one spurious event); the state it stands
    /// for was changed before it, so the caller's look after `drain` sees that change.
    fn drain(&self) {
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buf = [0u8; 64];
        while let Ok(n) = (&*reader).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        self.raised.store(false, Ordering::SeqCst);
    }

    fn describe(&self) -> String {
        let waiting = {
            let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            sys::mio_pipe_bytes_waiting(&reader)
        };
        format!(
            "raised: {}, writing: {}, bytes in the pipe: {waiting:?}",
            self.raised.load(Ordering::SeqCst),
            self.writing.load(Ordering::SeqCst)
        )
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The signal pipe standing for `current`'s readiness, made (and given with `install`) on
/// first use.
fn signal_pipe(
    current: Option<Arc<dyn Signal>>,
    install: impl FnOnce(Arc<dyn Signal>),
) -> io::Result<Arc<SignalPipe>> {
    if let Some(signal) = current
        && let Ok(pipe) = signal.into_any().downcast::<SignalPipe>()
    {
        return Ok(pipe);
    }
    let pipe = Arc::new(SignalPipe::new()?);
    install(Arc::clone(&pipe) as Arc<dyn Signal>);
    Ok(pipe)
}

impl nonblocking::Listener {
    fn mio_signal(&mut self) -> io::Result<Arc<SignalPipe>> {
        signal_pipe(self.signal(), |signal| self.set_signal(signal))
    }
}

impl nonblocking::Stream {
    fn mio_signal(&mut self) -> io::Result<Arc<SignalPipe>> {
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

/// `Source` through the object's signal pipe; `interests` is not narrowed (events carry both
/// readable and writable).
macro_rules! signal_source {
    ($(#[$doc:meta])* $ty:ty) => {
        $(#[$doc])*
        impl Source for $ty {
            fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
                self.mio_signal()?.register(registry, token)
            }

            fn reregister(
                &mut self,
                registry: &Registry,
                token: Token,
                _: Interest,
            ) -> io::Result<()> {
                self.mio_signal()?.reregister(registry, token)
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                self.mio_signal()?.deregister(registry)
            }
        }
    };
}

signal_source!(
    /// Registers the listener: its token becomes ready when a client has connected (and when
    /// a place under the instance limit is given back): `accept` until `WouldBlock`.
    nonblocking::Listener
);

signal_source!(
    /// Registers a message-mode stream: its token becomes ready when a message (or the end)
    /// arrives and when a send that was in flight ends. Events carry both readable and
    /// writable: after any event, call `try_recv` until `WouldBlock` and retry a send that got
    /// `WouldBlock`.
    nonblocking::Stream
);

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
