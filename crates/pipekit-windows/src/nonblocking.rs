//! Named pipes driven without blocking, for event loops: a [`Listener`] whose `accept` and a
//! message-mode [`Stream`] whose `recv` and `send` return `WouldBlock` instead of waiting,
//! with `poll_*` forms for async runtimes and (feature `mio`) `mio::event::Source`.
//!
//! # Why not `mio::windows::NamedPipe` for messages
//!
//! mio's pipe reads through an internal buffer that starts at 4 KiB: a longer message comes
//! out in pieces and its boundaries are lost. This module keeps them: every read is an
//! overlapped `ReadFile` into a buffer owned by the stream; when the message goes on
//! (`ERROR_MORE_DATA`) it asks the pipe how much is left (`PeekNamedPipe`) and reads the rest
//! before it calls the message ready, so a message is handed out whole, or reported with its
//! full size if the caller's buffer is too small (it then stays readable), exactly as the
//! blocking API does.
//!
//! # How completions are noticed
//!
//! No I/O completion port is involved, so the handles stay free for anyone to adopt later
//! (byte mode goes to `mio::windows::NamedPipe` or Tokio's pipe types). Each operation has an
//! event; a thread-pool wait (`CreateThreadpoolWait`) runs a short callback when it is
//! signalled, which records the result, goes on with a message that is not complete yet, and
//! wakes whoever waits: the task's `Waker`, or, for mio, a private signal pipe registered
//! under the stream's token. An operation that completes at once (the usual case when data is
//! waiting) is finished inline, with no thread involved.
//!
//! A stream keeps one read in flight (the message after the one handed out is read ahead),
//! so the stream's readiness is always armed. A send copies the message and is accepted
//! while no earlier send is in flight; it is written even if the stream is dropped right
//! after (the pipe instance lives until the write ends).
//!
//! Byte mode is not served here beyond accepting: hand an accepted byte-mode stream to
//! `mio::windows::NamedPipe` or Tokio with [`Stream::into_parts`].
//!
//! # Examples
//!
//! Without an event loop, to show the calls (with mio, register the listener and the streams
//! and call these after each event until `WouldBlock`):
//!
//! ```
//! use std::io::ErrorKind;
//! use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PipeName};
//! use pipekit_windows::{nonblocking, Listener, Stream, WindowsOptions};
//! # let name = PipeName::new(&format!("doc-nb-{}", std::process::id()))?;
//!
//! let mut options = ListenerOptions::new();
//! options.mode(Mode::Messages);
//! let listener = nonblocking::Listener::new(Listener::bind_with(&name, &options, &WindowsOptions::new())?)?;
//! assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
//!
//! let mut client = Stream::connect_with(&name, ConnectOptions::new().mode(Mode::Messages))?;
//! let mut server = loop {
//!     match listener.accept() {
//!         Ok(stream) => break stream,
//!         Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
//!         Err(e) => return Err(e),
//!     }
//! };
//! assert_eq!(server.try_recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::WouldBlock);
//! client.send(&[7u8; 10_000])?;
//! let mut msg = Vec::new();
//! while let Err(e) = server.try_recv_to_vec(&mut msg) {
//!     assert_eq!(e.kind(), ErrorKind::WouldBlock);
//!     std::thread::yield_now();
//! }
//! assert_eq!(msg.len(), 10_000); // whole, not cut at 4 KiB
//! server.try_send(b"thanks")?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use pipekit_core::Mode;
use pipekit_core::error::{
    MessageTooLarge, context, invalid_data, invalid_input, message_discarded, message_over_limit,
    wrong_mode,
};
use pipekit_core::slots::Slot;
use windows_sys::Win32::System::IO::OVERLAPPED;
use windows_sys::Win32::System::Threading::{PTP_CALLBACK_INSTANCE, PTP_WAIT};

use crate::stream::{broken_pipe, is_gone};
use crate::sys::{self, Event, Started, TpWait, Transfer};

/// What a completion must wake besides a task: the mio signal pipe.
pub(crate) trait Signal: Send + Sync {
    /// Makes the registered source ready.
    fn raise(&self);
}

/// The first read of a message asks for this much (or the maximum message size if smaller).
const READ_CHUNK: usize = 64 * 1024;

/// One overlapped operation slot: its event, the wait on that event, its OVERLAPPED.
struct Op {
    // Declared first: the wait is closed before the event it waits on. Set right after the
    // `Shared` is allocated (the wait's context is its address), before any use.
    wait: OnceLock<TpWait>,
    event: Event,
    ov: UnsafeCell<OVERLAPPED>,
}

impl Op {
    fn new() -> io::Result<Op> {
        Ok(Op {
            wait: OnceLock::new(),
            event: Event::new()?,
            // SAFETY: OVERLAPPED is plain data; all-zero is its initial state.
            ov: UnsafeCell::new(unsafe { std::mem::zeroed() }),
        })
    }

    fn ov(&self) -> *mut OVERLAPPED {
        self.ov.get()
    }

    fn arm(&self) {
        if let Some(wait) = self.wait.get() {
            wait.arm(&self.event);
        }
    }

    fn disarm(&self) {
        if let Some(wait) = self.wait.get() {
            wait.disarm();
        }
    }
}

/// The read side of a pipe instance.
#[derive(Debug)]
enum Read {
    /// Nothing in flight.
    Idle,
    /// A server instance waits for its client (`ConnectNamedPipe` on the read slot).
    Connecting,
    /// A `ReadFile` into `rbuf`'s spare capacity is in flight; `rbuf` holds the message so
    /// far.
    Reading,
    /// Reading and dropping a message over the maximum; this many bytes of it so far.
    Discarding(usize),
    /// `rbuf` holds one whole message.
    Ready,
    /// The peer closed and every message was read.
    Eof,
    /// The last read failed; handed out once.
    Failed(io::Error),
}

impl Read {
    fn in_flight(&self) -> bool {
        matches!(self, Read::Connecting | Read::Reading | Read::Discarding(_))
    }
}

/// The write side.
#[derive(Debug)]
enum Write {
    Idle,
    /// A `WriteFile` of `wbuf` is in flight.
    Pending,
    /// The last write failed after it was accepted; handed out by the next send.
    Failed(io::Error),
}

struct State {
    read: Read,
    rbuf: Vec<u8>,
    write: Write,
    wbuf: Vec<u8>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    signal: Option<Arc<dyn Signal>>,
    /// The owner is gone: start nothing new.
    closing: bool,
    /// The owner is gone while a write is in flight: the write's callback holds the last
    /// reference and drops it.
    detached: bool,
}

/// What a callback wakes once it has let go of the lock.
#[derive(Default)]
struct Wake {
    wakers: [Option<Waker>; 2],
    signal: Option<Arc<dyn Signal>>,
}

impl Wake {
    fn run(self) {
        for waker in self.wakers.into_iter().flatten() {
            waker.wake();
        }
        if let Some(signal) = self.signal {
            signal.raise();
        }
    }
}

/// One pipe instance and the state of its operations, shared with the pool's callbacks.
struct Shared {
    // Declared first: the instance is closed before its place under the limit is given back.
    handle: OwnedHandle,
    server_end: bool,
    mode: Mode,
    max_message_size: usize,
    read: Op,
    write: Op,
    state: Mutex<State>,
    _slot: Option<Slot>,
}

// SAFETY: the OVERLAPPED cells are only touched while the state lock is held (to start an
// operation or collect its result) or by the kernel while the operation is in flight; the
// buffers the kernel uses are not touched while their operation is in flight. Every other
// field is Send + Sync.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn new(
        handle: OwnedHandle,
        server_end: bool,
        mode: Mode,
        max_message_size: usize,
        slot: Option<Slot>,
    ) -> io::Result<Arc<Shared>> {
        let shared = Arc::new(Shared {
            handle,
            server_end,
            mode,
            max_message_size,
            read: Op::new()?,
            write: Op::new()?,
            state: Mutex::new(State {
                read: Read::Idle,
                rbuf: Vec::new(),
                write: Write::Idle,
                wbuf: Vec::new(),
                read_waker: None,
                write_waker: None,
                signal: None,
                closing: false,
                detached: false,
            }),
            _slot: slot,
        });
        let me = Arc::as_ptr(&shared).cast::<c_void>();
        // SAFETY: `me` is this `Shared`'s address. It outlives the waits: `close` disarms
        // both (waiting for running callbacks) before the owner lets go, and a detached
        // write's callback is the one that drops the last reference, after which nothing
        // arms a wait again. The callbacks only touch it through its lock.
        let read_wait = unsafe { TpWait::new(Some(read_done), me) }?;
        // SAFETY: as above.
        let write_wait = unsafe { TpWait::new(Some(write_done), me) }?;
        let _ = shared.read.wait.set(read_wait);
        let _ = shared.write.wait.set(write_wait);
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts waiting for a client (server instances).
    fn start_connect(&self, st: &mut State) {
        // SAFETY: the read slot is idle (no operation uses its OVERLAPPED) and lives as long
        // as `self`, which outlives the operation (see `close`).
        let started = unsafe {
            sys::start_connect(self.handle.as_handle(), self.read.ov(), &self.read.event)
        };
        match started {
            Started::Pending => {
                st.read = Read::Connecting;
                self.read.arm();
            }
            Started::Done(result) => self.connect_finished(st, result),
        }
    }

    fn connect_finished(&self, st: &mut State, result: io::Result<Transfer>) {
        st.read = match sys::connect_result(Started::Done(result)) {
            Started::Done(Err(e)) => Read::Failed(e),
            _ => Read::Idle,
        };
    }

    /// Starts reading the next message, unless a read is in flight or a message or an end is
    /// waiting to be handed out.
    fn start_read(&self, st: &mut State) {
        if matches!(st.read, Read::Idle) {
            st.read = Read::Reading;
            self.read_on(st);
        }
    }

    /// Issues the next read of the message being read (`Reading` or `Discarding`); goes on
    /// while reads complete at once.
    fn read_on(&self, st: &mut State) {
        loop {
            if st.closing {
                // Nothing is in flight; the owner is gone and nobody reads the result.
                st.read = Read::Eof;
                return;
            }
            if st.rbuf.capacity() == st.rbuf.len() {
                st.rbuf
                    .reserve(READ_CHUNK.min(self.max_message_size).max(1));
            }
            let spare = st.rbuf.spare_capacity_mut();
            let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
            // SAFETY: the read slot is free; `ptr` is valid for `len` bytes of `rbuf`'s spare
            // capacity, and `rbuf` is neither touched nor moved while the state says a read
            // is in flight. `self` outlives the operation (see `close`).
            let started = unsafe {
                sys::start_read(
                    self.handle.as_handle(),
                    self.read.ov(),
                    &self.read.event,
                    ptr,
                    len,
                )
            };
            match started {
                Started::Pending => {
                    self.read.arm();
                    return;
                }
                Started::Done(result) => {
                    if !self.read_finished(st, result, len) {
                        return;
                    }
                }
            }
        }
    }

    /// Takes in the result of a read that asked for `asked` bytes. Returns whether to read
    /// on (the message is not complete yet).
    fn read_finished(&self, st: &mut State, result: io::Result<Transfer>, asked: usize) -> bool {
        let max = self.max_message_size;
        match (&st.read, result) {
            (Read::Reading, Ok(transfer)) => {
                let (Transfer::Done(n) | Transfer::More(n)) = transfer;
                // SAFETY: the kernel wrote `n` (at most `asked`) bytes into the spare
                // capacity the read was given.
                unsafe { st.rbuf.set_len(st.rbuf.len() + n.min(asked)) };
                if self.mode == Mode::Bytes || matches!(transfer, Transfer::Done(_)) {
                    st.read = Read::Ready;
                    return false;
                }
                let so_far = st.rbuf.len();
                if so_far > max {
                    st.rbuf.clear();
                    st.read = Read::Discarding(so_far);
                } else {
                    let left = sys::message_left(self.handle.as_handle()).unwrap_or(0);
                    st.rbuf.reserve(left.clamp(1, max + 1 - so_far));
                }
                true
            }
            (Read::Discarding(so_far), Ok(transfer)) => {
                let (Transfer::Done(n) | Transfer::More(n)) = transfer;
                let size = so_far + n.min(asked);
                st.rbuf.clear();
                if matches!(transfer, Transfer::Done(_)) {
                    st.read = Read::Failed(message_discarded(size, max));
                    return false;
                }
                st.read = Read::Discarding(size);
                true
            }
            (_, Err(e)) if is_gone(&e) => {
                let so_far = match st.read {
                    Read::Discarding(size) => size,
                    _ => st.rbuf.len(),
                };
                st.read = if so_far == 0 {
                    Read::Eof
                } else {
                    Read::Failed(invalid_data(format!(
                        "the pipe ended {so_far} bytes into a message"
                    )))
                };
                st.rbuf.clear();
                false
            }
            (_, Err(e)) => {
                st.rbuf.clear();
                st.read = Read::Failed(e);
                false
            }
            (_, Ok(_)) => false,
        }
    }

    /// Starts writing `msg` as one message; `Ok` once it is written or in flight.
    fn start_write(&self, st: &mut State, msg: &[u8]) -> io::Result<()> {
        st.wbuf.clear();
        st.wbuf.extend_from_slice(msg);
        // SAFETY: the write slot is free; `wbuf` is not touched while the write is in
        // flight; `self` outlives the operation (see `close`).
        let started = unsafe {
            sys::start_write(
                self.handle.as_handle(),
                self.write.ov(),
                &self.write.event,
                st.wbuf.as_ptr(),
                st.wbuf.len(),
            )
        };
        match started {
            Started::Pending => {
                st.write = Write::Pending;
                self.write.arm();
                Ok(())
            }
            Started::Done(result) => write_result(result, msg.len()),
        }
    }

    /// The result of the operation in `op`'s slot, whose event was seen signalled; `None`
    /// (and the wait armed again) if it is still in flight after all.
    ///
    /// `rearm` says whether the wait may be armed again: not once `close` has disarmed it
    /// (it then waits for the operation itself), as a wait armed after that could outlive
    /// `self`.
    fn completed(&self, op: &Op, rearm: bool) -> Option<io::Result<Transfer>> {
        // SAFETY: the slot holds an operation started on this handle (the state says so).
        let result = unsafe { sys::op_result(self.handle.as_handle(), op.ov()) };
        if !matches!(&result, Err(e) if sys::code(e) == Some(sys::ERROR_IO_INCOMPLETE)) {
            return Some(result);
        }
        // A signal that was not this operation's end. Reset, look again, and wait again if
        // it is still going: its end sets the event after the reset.
        op.event.reset();
        // SAFETY: as above.
        let result = unsafe { sys::op_result(self.handle.as_handle(), op.ov()) };
        if matches!(&result, Err(e) if sys::code(e) == Some(sys::ERROR_IO_INCOMPLETE)) {
            if rearm {
                op.arm();
            }
            return None;
        }
        Some(result)
    }

    fn on_read_done(&self) -> Wake {
        let mut st = self.lock();
        if !st.read.in_flight() {
            return Wake::default();
        }
        let Some(result) = self.completed(&self.read, !st.closing) else {
            return Wake::default();
        };
        match st.read {
            Read::Connecting => self.connect_finished(&mut st, result),
            Read::Reading | Read::Discarding(_) => {
                let asked = st.rbuf.capacity() - st.rbuf.len();
                if self.read_finished(&mut st, result, asked) {
                    self.read_on(&mut st);
                }
            }
            _ => {}
        }
        if st.read.in_flight() {
            return Wake::default();
        }
        Wake {
            wakers: [st.read_waker.take(), None],
            signal: st.signal.clone(),
        }
    }

    fn on_write_done(&self) -> (Wake, bool) {
        let mut st = self.lock();
        if !matches!(st.write, Write::Pending) {
            return (Wake::default(), false);
        }
        // A detached write's wait stays armed until the write ends (`close` left it).
        let Some(result) = self.completed(&self.write, !st.closing || st.detached) else {
            return (Wake::default(), false);
        };
        st.write = match write_result(result, st.wbuf.len()) {
            Ok(()) => Write::Idle,
            Err(e) => Write::Failed(e),
        };
        let wake = Wake {
            wakers: [st.write_waker.take(), None],
            signal: st.signal.clone(),
        };
        (wake, st.detached)
    }

    /// Ends the owner's use: cancels a read or connect in flight and waits for it and its
    /// callback; a write in flight goes on, and its callback drops `self` when it ends.
    fn close(self: &Arc<Shared>) {
        let mut st = self.lock();
        st.closing = true;
        st.read_waker = None;
        st.write_waker = None;
        st.signal = None;
        let reading = st.read.in_flight();
        let writing = matches!(st.write, Write::Pending);
        if writing {
            st.detached = true;
            // Kept alive by the write's callback, which gives this reference up.
            std::mem::forget(Arc::clone(self));
        }
        drop(st);
        if reading {
            // SAFETY: the read slot holds an operation started on this handle.
            unsafe { sys::cancel_and_wait(self.handle.as_handle(), self.read.ov()) };
        }
        self.read.disarm();
        if !writing {
            self.write.disarm();
        }
    }
}

/// A write's result: the whole message, or an error (`BrokenPipe` when the peer is gone).
fn write_result(result: io::Result<Transfer>, len: usize) -> io::Result<()> {
    match result {
        Ok(Transfer::Done(n) | Transfer::More(n)) if n == len => Ok(()),
        Ok(Transfer::Done(n) | Transfer::More(n)) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("only {n} bytes of a {len}-byte message were written"),
        )),
        Err(e) => Err(broken_pipe(e)),
    }
}

/// The read slot's thread-pool callback.
unsafe extern "system" fn read_done(
    _instance: PTP_CALLBACK_INSTANCE,
    context: *mut c_void,
    _wait: PTP_WAIT,
    _result: u32,
) {
    // SAFETY: `context` is the address of a live `Shared` (see `Shared::new`): the wait is
    // disarmed before it could go away.
    let shared = unsafe { &*context.cast::<Shared>() };
    shared.on_read_done().run();
}

/// The write slot's thread-pool callback; drops a detached stream's last reference.
unsafe extern "system" fn write_done(
    _instance: PTP_CALLBACK_INSTANCE,
    context: *mut c_void,
    _wait: PTP_WAIT,
    _result: u32,
) {
    let shared = context.cast::<Shared>().cast_const();
    // SAFETY: as in `read_done`; a detached stream is kept alive by the reference `close`
    // left for this callback.
    let (wake, detached) = unsafe { &*shared }.on_write_done();
    wake.run();
    if detached {
        // SAFETY: `close` leaked exactly one reference for this callback, which runs once
        // for the write in flight; the owner's reference is gone, so this may be the last
        // (the wait is then closed from its own callback, which the pool allows).
        unsafe { Arc::decrement_strong_count(shared) };
    }
}

/// A server whose [`accept`](Self::accept) does not block.
///
/// Made from a blocking [`crate::Listener`] with [`Listener::new`]; the waiting instance
/// is connected in the background, and `accept` hands out the connected instance (and starts
/// the next one) or fails with `WouldBlock`.
pub struct Listener {
    inner: crate::Listener,
    pending: Mutex<Option<Arc<Shared>>>,
    #[cfg(feature = "mio")]
    mio: Mutex<Option<Arc<crate::mio::SignalPipe>>>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Makes `listener` non-blocking and starts waiting for its first client.
    ///
    /// An instance limit (`max_instances`) is kept as by the blocking listener: while every
    /// place is taken, `accept` fails with `WouldBlock` and the listener becomes ready again
    /// when an accepted stream is dropped.
    ///
    /// # Errors
    ///
    /// The OS error of creating the waiting instance.
    pub fn new(listener: crate::Listener) -> io::Result<Listener> {
        let listener = Listener {
            inner: listener,
            pending: Mutex::new(None),
            #[cfg(feature = "mio")]
            mio: Mutex::new(None),
        };
        listener.arm(None)?;
        Ok(listener)
    }

    /// Makes sure an instance waits for a client, with a connect in flight, unless the
    /// instance limit is reached (`waker` is then woken when a place is given back).
    fn arm(&self, waker: Option<&Waker>) -> io::Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_none() {
            let Some((handle, slot)) = self.inner.take_instance(waker)? else {
                return Ok(());
            };
            let shared = Shared::new(
                handle,
                true,
                self.inner.mode(),
                self.inner.max_message_size(),
                slot,
            )?;
            {
                let mut st = shared.lock();
                #[cfg(feature = "mio")]
                {
                    st.signal = self.signal().map(|s| s as Arc<dyn Signal>);
                }
                shared.start_connect(&mut st);
            }
            *pending = Some(shared);
        }
        Ok(())
    }

    /// Takes the next client, or fails with `WouldBlock` (the listener's source becomes ready
    /// when one connects).
    ///
    /// # Errors
    ///
    /// `WouldBlock` while no client has connected; the OS error of `ConnectNamedPipe` or of
    /// creating the next instance, with the pipe's name.
    pub fn accept(&self) -> io::Result<Stream> {
        // The mio signal is read empty first, and stands for the waker a freed place under
        // the instance limit wakes.
        #[cfg(feature = "mio")]
        let waker = self.signal().map(|signal| {
            signal.drain();
            Waker::from(signal)
        });
        #[cfg(not(feature = "mio"))]
        let waker: Option<Waker> = None;
        let mut cx = waker.as_ref().map(Context::from_waker);
        match self.poll_accept_inner(cx.as_mut(), false) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Polls for the next client; `cx` is woken when one connects.
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept), without `WouldBlock`.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        self.poll_accept_inner(Some(cx), true)
    }

    /// `cx` is woken when a place under the instance limit is given back, and, if `task`,
    /// when a client connects (the mio signal stands for that otherwise).
    fn poll_accept_inner(
        &self,
        mut cx: Option<&mut Context<'_>>,
        task: bool,
    ) -> Poll<io::Result<Stream>> {
        if let Err(e) = self.arm(cx.as_deref_mut().map(|cx| cx.waker())) {
            return Poll::Ready(Err(e));
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(shared) = pending.as_ref() else {
            return Poll::Pending;
        };
        let mut st = shared.lock();
        match std::mem::replace(&mut st.read, Read::Idle) {
            Read::Connecting => {
                st.read = Read::Connecting;
                if let Some(cx) = cx.filter(|_| task) {
                    st.read_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Read::Failed(e) => {
                drop(st);
                let shared = pending.take();
                drop(pending);
                if let Some(shared) = shared {
                    shared.close();
                }
                Poll::Ready(Err(context(
                    e,
                    format!("cannot wait for a client on {}", self.inner.pipe_path()),
                )))
            }
            _ => {
                st.signal = None;
                st.read_waker = None;
                drop(st);
                let Some(shared) = pending.take() else {
                    return Poll::Pending;
                };
                drop(pending);
                // The next client must find an instance; if making it fails now (or the limit
                // is reached), the next accept tries again.
                let _ = self.arm(None);
                Poll::Ready(Ok(Stream::from_shared(shared)))
            }
        }
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// The blocking listener inside (its name and path).
    pub fn get_ref(&self) -> &crate::Listener {
        &self.inner
    }

    #[cfg(feature = "mio")]
    fn signal(&self) -> Option<Arc<crate::mio::SignalPipe>> {
        self.mio
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The signal pipe of the listener's mio registration, made on first use; also given to
    /// the waiting instance.
    #[cfg(feature = "mio")]
    pub(crate) fn mio_signal(&self) -> io::Result<Arc<crate::mio::SignalPipe>> {
        let signal = {
            let mut mio = self.mio.lock().unwrap_or_else(PoisonError::into_inner);
            match &*mio {
                Some(signal) => Arc::clone(signal),
                None => Arc::clone(mio.insert(Arc::new(crate::mio::SignalPipe::new()?))),
            }
        };
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = pending.as_ref() {
            shared.lock().signal = Some(Arc::clone(&signal) as Arc<dyn Signal>);
        }
        Ok(signal)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(shared) = pending {
            shared.close();
        }
    }
}

/// A connection whose `recv` and `send` do not block (message mode).
///
/// Made by [`Listener::accept`] or from a blocking stream with [`Stream::new`]. A byte-mode
/// stream can only be taken apart ([`into_parts`](Self::into_parts)) for mio or Tokio.
pub struct Stream {
    shared: Arc<Shared>,
    #[cfg(feature = "mio")]
    mio: Option<Arc<crate::mio::SignalPipe>>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("handle", &self.shared.handle)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Makes a blocking stream non-blocking. A message-mode stream starts reading ahead.
    ///
    /// # Errors
    ///
    /// The OS error of creating the events and thread-pool waits.
    pub fn new(stream: crate::Stream) -> io::Result<Stream> {
        let mode = stream.mode();
        let max = stream.max_message_size();
        let (handle, server_end, slot) = stream.into_parts();
        Ok(Stream::from_shared(Shared::new(
            handle, server_end, mode, max, slot,
        )?))
    }

    fn from_shared(shared: Arc<Shared>) -> Stream {
        if shared.mode == Mode::Messages {
            let mut st = shared.lock();
            shared.start_read(&mut st);
        }
        Stream {
            shared,
            #[cfg(feature = "mio")]
            mio: None,
        }
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` once the peer has closed and
    /// every message has been read; `WouldBlock` while no message has arrived.
    ///
    /// # Errors
    ///
    /// As the blocking [`crate::Stream::recv`]: a message too large for `buf` is reported
    /// with its size (`InvalidInput` carrying [`MessageTooLarge`]) and stays readable; a
    /// message over the maximum is discarded (`InvalidData`).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.drain_signal();
        ready_or_would_block(self.recv_inner(None, |st| take_into(st, buf)))
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit); `WouldBlock`
    /// while none has arrived.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), but no message within the maximum is too large.
    pub fn try_recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.drain_signal();
        ready_or_would_block(self.recv_inner(None, |st| take_vec(st, buf)))
    }

    /// Polls for one message into `buf`; as [`try_recv`](Self::try_recv), with `cx` woken
    /// when a message (or the end) arrives instead of `WouldBlock`.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv).
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        self.recv_inner(Some(cx), |st| take_into(st, buf))
    }

    /// Polls for one whole message into `buf`.
    ///
    /// # Errors
    ///
    /// As [`try_recv_to_vec`](Self::try_recv_to_vec).
    pub fn poll_recv_to_vec(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        self.recv_inner(Some(cx), |st| take_vec(st, buf))
    }

    fn recv_inner(
        &mut self,
        cx: Option<&mut Context<'_>>,
        take: impl FnOnce(&mut State) -> io::Result<usize>,
    ) -> Poll<io::Result<Option<usize>>> {
        let shared = &*self.shared;
        if shared.mode != Mode::Messages {
            return Poll::Ready(Err(wrong_mode("recv", shared.mode)));
        }
        let mut st = shared.lock();
        shared.start_read(&mut st);
        match std::mem::replace(&mut st.read, Read::Idle) {
            Read::Ready => {
                st.read = Read::Ready;
                let n = match take(&mut st) {
                    Ok(n) => n,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                st.read = Read::Idle;
                st.rbuf.clear();
                shared.start_read(&mut st);
                Poll::Ready(Ok(Some(n)))
            }
            Read::Eof => {
                st.read = Read::Eof;
                Poll::Ready(Ok(None))
            }
            Read::Failed(e) => {
                shared.start_read(&mut st);
                Poll::Ready(Err(e))
            }
            other => {
                st.read = other;
                if let Some(cx) = cx {
                    st.read_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Sends `msg` as one message: `Ok` once it is written or handed to the pipe (it is then
    /// written even if the stream is dropped); `WouldBlock` while an earlier message is still
    /// being written.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message over the maximum (nothing is sent); `BrokenPipe` if the
    /// peer is gone, also for an earlier accepted message whose write failed.
    pub fn try_send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.drain_signal();
        ready_or_would_block(self.send_inner(None, msg))
    }

    /// Polls to send `msg`: `Ready(Ok)` once it is written or handed to the pipe; `cx` is
    /// woken when an earlier message's write ends. Follow with
    /// [`poll_flush`](Self::poll_flush) to wait until it is written.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send).
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        self.send_inner(Some(cx), msg)
    }

    fn send_inner(&mut self, cx: Option<&mut Context<'_>>, msg: &[u8]) -> Poll<io::Result<()>> {
        let shared = &*self.shared;
        if shared.mode != Mode::Messages {
            return Poll::Ready(Err(wrong_mode("send", shared.mode)));
        }
        if msg.len() > shared.max_message_size {
            return Poll::Ready(Err(message_over_limit(msg.len(), shared.max_message_size)));
        }
        let mut st = shared.lock();
        match std::mem::replace(&mut st.write, Write::Idle) {
            Write::Idle => Poll::Ready(shared.start_write(&mut st, msg)),
            Write::Failed(e) => Poll::Ready(Err(e)),
            Write::Pending => {
                st.write = Write::Pending;
                if let Some(cx) = cx {
                    st.write_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Polls until the last accepted message is written.
    ///
    /// # Errors
    ///
    /// The error of that write (`BrokenPipe` if the peer is gone).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        match std::mem::replace(&mut st.write, Write::Idle) {
            Write::Idle => Poll::Ready(Ok(())),
            Write::Failed(e) => Poll::Ready(Err(e)),
            Write::Pending => {
                st.write = Write::Pending;
                st.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Takes the stream apart, as [`crate::Stream::into_parts`]: for a byte-mode stream to be
    /// handed to `mio::windows::NamedPipe` or Tokio.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message-mode stream (its read-ahead owns the pipe's reads).
    pub fn into_parts(self) -> io::Result<(OwnedHandle, bool, Option<Slot>)> {
        if self.shared.mode == Mode::Messages {
            return Err(invalid_input(
                "a non-blocking message-mode stream cannot be taken apart",
            ));
        }
        // Dropping the stream ends its use of the pipe (`close`); then this is the only
        // reference left.
        let shared = Arc::clone(&self.shared);
        drop(self);
        let Shared {
            handle,
            server_end,
            _slot,
            ..
        } = Arc::try_unwrap(shared)
            .map_err(|_| io::Error::other("the stream's pipe is still in use"))?;
        Ok((handle, server_end, _slot))
    }

    fn drain_signal(&self) {
        #[cfg(feature = "mio")]
        if let Some(signal) = &self.mio {
            signal.drain();
        }
    }

    /// The signal pipe of the stream's mio registration, made on first use.
    #[cfg(feature = "mio")]
    pub(crate) fn mio_signal(&mut self) -> io::Result<Arc<crate::mio::SignalPipe>> {
        if self.shared.mode != Mode::Messages {
            return Err(invalid_input(
                "a byte-mode pipe is registered with mio as mio::windows::NamedPipe \
                 (into_parts, then NamedPipe::from_raw_handle)",
            ));
        }
        let signal = match &self.mio {
            Some(signal) => Arc::clone(signal),
            None => Arc::clone(self.mio.insert(Arc::new(crate::mio::SignalPipe::new()?))),
        };
        self.shared.lock().signal = Some(Arc::clone(&signal) as Arc<dyn Signal>);
        Ok(signal)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.close();
    }
}

fn ready_or_would_block<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Copies the ready message into `buf`, or reports its size if it does not fit.
fn take_into(st: &mut State, buf: &mut [u8]) -> io::Result<usize> {
    let n = st.rbuf.len();
    if n > buf.len() {
        return Err(MessageTooLarge::error(n, buf.len()));
    }
    buf[..n].copy_from_slice(&st.rbuf);
    Ok(n)
}

/// Hands the ready message over by swapping buffers; `buf`'s old allocation reads the next.
fn take_vec(st: &mut State, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    std::mem::swap(buf, &mut st.rbuf);
    Ok(buf.len())
}
