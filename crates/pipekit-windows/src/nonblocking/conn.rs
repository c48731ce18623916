//! The engine: one pipe instance, its read and write channels, and the state the owner and
//! the channels' ends share.

use std::io;
use std::os::windows::io::{AsHandle, BorrowedHandle, OwnedHandle};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

use pipekit_core::Mode;
use pipekit_core::error::{MessageTooLarge, message_discarded, message_over_limit};
use pipekit_core::slots::Slot;

use super::signal::Signal;
use crate::stream::{broken_pipe, is_gone, peer_closed_mid_message};
use crate::sys::{self, Channel, Done, Handle, Transfer};

/// The first read of a message asks for this much (or the maximum message size if smaller).
const READ_CHUNK: usize = 64 * 1024;

/// How long a write accepted before its stream was dropped may go on by default.
pub(super) const DEFAULT_LINGER: Duration = Duration::from_secs(10);

/// A pipe instance and its place under the listener's instance limit.
pub(super) struct Pipe {
    // Declared first: the instance is closed before its place is given back.
    handle: OwnedHandle,
    slot: Option<Slot>,
}

impl AsHandle for Pipe {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.handle.as_handle()
    }
}

/// The read side.
#[derive(Debug)]
pub(super) enum Rx {
    /// Nothing in flight, nothing to hand out.
    Idle,
    /// A server instance waits for its client.
    Connecting,
    /// A read is in flight (its buffer is the channel's meanwhile).
    Reading(Reading),
    /// One whole message.
    Ready(Vec<u8>),
    /// The peer closed and every message was read.
    Eof,
    /// The last read failed; handed out once.
    Failed(io::Error),
}

/// What the read in flight is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// A message (its start, or more of it).
    Message,
    /// A message over the maximum, read and dropped; this many bytes so far.
    Discarding(usize),
    /// The rest of a message a failed read cut, read and dropped.
    Skipping,
}

/// The write side.
#[derive(Debug)]
enum Tx {
    Idle,
    /// A write is in flight.
    Pending,
    /// The last write failed after it was accepted; handed out by the next send or flush.
    Failed(io::Error),
}

/// Tasks to wake; a task is kept once however often it registers.
#[derive(Default)]
pub(super) struct Wakers(Vec<Waker>);

impl Wakers {
    pub(super) fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    pub(super) fn take(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.0)
    }
}

/// A list of wakers shared with whoever wakes it (the instance limit's slots).
#[derive(Default)]
pub(super) struct WakerList(Mutex<Wakers>);

impl WakerList {
    pub(super) fn register(&self, waker: &Waker) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(waker);
    }
}

impl Wake for WakerList {
    fn wake(self: Arc<Self>) {
        let wakers = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// What the end of an operation wakes, once every lock is let go.
#[derive(Default)]
#[must_use]
pub(super) struct Wakeup {
    wakers: Vec<Waker>,
    signal: Option<Arc<dyn Signal>>,
}

impl Wakeup {
    pub(super) fn run(self) {
        self.wakers.into_iter().for_each(Waker::wake);
        if let Some(signal) = self.signal {
            signal.raise();
        }
    }
}

/// The pipe and its two channels, while the owner has them.
struct Io {
    /// The pipe, as operations take it.
    handle: Handle,
    pipe: Arc<Pipe>,
    read: Channel,
    write: Channel,
}

pub(super) struct State {
    /// `None` once the owner is gone (or took the pipe apart): nothing new starts.
    io: Option<Io>,
    pub(super) rx: Rx,
    /// The allocation the next read goes into.
    spare: Vec<u8>,
    /// A failed read cut a message: its rest is read and dropped before the next one.
    skip: bool,
    tx: Tx,
    /// The allocation the next write copies into.
    wbuf: Vec<u8>,
    pub(super) read_wakers: Wakers,
    write_wakers: Wakers,
    pub(super) signal: Option<Arc<dyn Signal>>,
    linger: Duration,
}

/// One pipe instance, shared by its owner (a stream, or the listener while it waits for a
/// client) and, weakly, by the ends of its operations.
pub(super) struct Conn {
    pub(super) mode: Mode,
    pub(super) max_message_size: usize,
    pub(super) server_end: bool,
    state: Mutex<State>,
}

impl Conn {
    /// A connection on `handle`, which holds `slot` until it is closed.
    pub(super) fn new(
        handle: OwnedHandle,
        server_end: bool,
        mode: Mode,
        max_message_size: usize,
        slot: Option<Slot>,
    ) -> io::Result<Arc<Conn>> {
        let pipe = Arc::new(Pipe { handle, slot });
        let read = Channel::new()?;
        let write = Channel::new()?;
        Ok(Arc::new_cyclic(|me: &Weak<Conn>| {
            let weak = me.clone();
            read.on_end(Arc::new(move |done| {
                if let Some(conn) = weak.upgrade() {
                    let wakeup = conn.read_ended(done);
                    // Let go first: whoever wakes may take the stream apart.
                    drop(conn);
                    wakeup.run();
                }
            }));
            let weak = me.clone();
            write.on_end(Arc::new(move |done| {
                if let Some(conn) = weak.upgrade() {
                    let wakeup = conn.write_ended(done);
                    drop(conn);
                    wakeup.run();
                }
            }));
            Conn {
                mode,
                max_message_size,
                server_end,
                state: Mutex::new(State {
                    io: Some(Io {
                        handle: pipe.clone(),
                        pipe,
                        read,
                        write,
                    }),
                    rx: Rx::Idle,
                    spare: Vec::new(),
                    skip: false,
                    tx: Tx::Idle,
                    wbuf: Vec::new(),
                    read_wakers: Wakers::default(),
                    write_wakers: Wakers::default(),
                    signal: None,
                    linger: DEFAULT_LINGER,
                }),
            }
        }))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts waiting for a client (server instances).
    pub(super) fn start_connect(&self, st: &mut State) {
        let Some(io) = &st.io else {
            st.rx = Rx::Failed(closed());
            return;
        };
        st.rx = Rx::Connecting;
        if let Some(done) = io.read.connect(&io.handle) {
            self.connected(st, done);
        }
    }

    fn connected(&self, st: &mut State, done: Done) {
        st.rx = match done.result {
            Ok(_) => Rx::Idle,
            Err(e) => Rx::Failed(e),
        };
    }

    /// Starts reading the next message, unless a read is in flight or a message or an end is
    /// waiting to be handed out.
    pub(super) fn start_read(&self, st: &mut State) {
        if !matches!(st.rx, Rx::Idle) || st.io.is_none() {
            return;
        }
        let kind = if std::mem::take(&mut st.skip) {
            Reading::Skipping
        } else {
            Reading::Message
        };
        st.rx = Rx::Reading(kind);
        let mut buf = std::mem::take(&mut st.spare);
        buf.clear();
        self.read_on(st, buf);
    }

    /// Starts reading with the message so far (or that was held by a blocking stream).
    pub(super) fn resume(&self, st: &mut State, data: Vec<u8>, complete: bool) {
        if complete {
            st.rx = Rx::Ready(data);
        } else {
            st.rx = Rx::Reading(Reading::Message);
            self.read_on(st, data);
        }
    }

    /// Issues the next read of the message being read; goes on while reads end at once.
    fn read_on(&self, st: &mut State, mut buf: Vec<u8>) {
        loop {
            let Some(io) = &st.io else {
                st.rx = Rx::Eof;
                return;
            };
            if buf.capacity() == buf.len() {
                buf.reserve(READ_CHUNK.min(self.max_message_size).max(1));
            }
            let Some(done) = io.read.read(&io.handle, buf) else {
                return;
            };
            match read_step(st, done, self.mode, self.max_message_size, true) {
                Step::Stop => return,
                Step::Restart => {
                    self.start_read(st);
                    return;
                }
                Step::On(next, so_far) => {
                    buf = next;
                    if let Some(so_far) = so_far {
                        self.reserve_rest(st, &mut buf, so_far);
                    }
                }
            }
        }
    }

    /// Grows `buf` by what the pipe still holds of the message being read (`so_far` bytes
    /// of it read), up to one byte over the maximum.
    fn reserve_rest(&self, st: &State, buf: &mut Vec<u8>, so_far: usize) {
        let left = st
            .io
            .as_ref()
            .and_then(|io| sys::message_left(io.pipe.as_handle()).ok())
            .unwrap_or(0);
        let room = (self.max_message_size + 1).saturating_sub(so_far).max(1);
        buf.reserve(left.clamp(1, room));
    }

    /// The end of a read or connect that did not end at once.
    fn read_ended(&self, done: Done) -> Wakeup {
        let mut st = self.lock();
        let open = st.io.is_some();
        match st.rx {
            Rx::Connecting if is_aborted(&done) && st.io.is_some() => {
                // Cancelled with the thread that started it: wait again.
                self.start_connect(&mut st);
            }
            Rx::Connecting => self.connected(&mut st, done),
            Rx::Reading(_) => {
                match read_step(&mut st, done, self.mode, self.max_message_size, open) {
                    Step::Stop => {}
                    Step::Restart => self.start_read(&mut st),
                    Step::On(mut buf, so_far) => {
                        if let Some(so_far) = so_far {
                            self.reserve_rest(&st, &mut buf, so_far);
                        }
                        self.read_on(&mut st, buf);
                    }
                }
            }
            _ => {}
        }
        if matches!(st.rx, Rx::Connecting | Rx::Reading(_)) {
            return Wakeup::default();
        }
        Wakeup {
            wakers: st.read_wakers.take(),
            signal: st.signal.clone(),
        }
    }

    /// Takes the ready message out with `take`, which may refuse it (it then stays), and
    /// reads ahead the next one.
    pub(super) fn take_message<T>(
        &self,
        st: &mut State,
        take: impl FnOnce(&mut Vec<u8>) -> io::Result<T>,
    ) -> Poll<io::Result<Option<T>>> {
        self.start_read(st);
        match std::mem::replace(&mut st.rx, Rx::Idle) {
            Rx::Ready(mut msg) => match take(&mut msg) {
                Ok(value) => {
                    st.spare = msg;
                    self.start_read(st);
                    Poll::Ready(Ok(Some(value)))
                }
                Err(e) => {
                    st.rx = Rx::Ready(msg);
                    Poll::Ready(Err(e))
                }
            },
            Rx::Eof => {
                st.rx = Rx::Eof;
                Poll::Ready(Ok(None))
            }
            Rx::Failed(e) => {
                self.start_read(st);
                Poll::Ready(Err(e))
            }
            other => {
                st.rx = other;
                Poll::Pending
            }
        }
    }

    /// Starts writing `msg` as one message, or says why not: `Pending` (with `waker` kept)
    /// while the last one is in flight.
    pub(super) fn send(&self, msg: &[u8], waker: Option<&Waker>) -> Poll<io::Result<()>> {
        if msg.len() > self.max_message_size {
            return Poll::Ready(Err(message_over_limit(msg.len(), self.max_message_size)));
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        match std::mem::replace(&mut st.tx, Tx::Idle) {
            Tx::Idle => {}
            Tx::Failed(e) => return Poll::Ready(Err(e)),
            Tx::Pending => {
                st.tx = Tx::Pending;
                if let Some(waker) = waker {
                    st.write_wakers.register(waker);
                }
                return Poll::Pending;
            }
        }
        let Some(io) = &st.io else {
            return Poll::Ready(Err(closed()));
        };
        let mut buf = std::mem::take(&mut st.wbuf);
        buf.clear();
        buf.extend_from_slice(msg);
        let started = io.write.write(&io.handle, buf, st.linger);
        st.tx = Tx::Pending;
        match started {
            None => Poll::Ready(Ok(())),
            Some(done) => {
                st.tx = Tx::Idle;
                Poll::Ready(write_result(done, &mut st.wbuf))
            }
        }
    }

    /// `Ready` once the last accepted message is written, with its error if it failed.
    pub(super) fn flush(&self, waker: &Waker) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        match std::mem::replace(&mut st.tx, Tx::Idle) {
            Tx::Idle => Poll::Ready(Ok(())),
            Tx::Failed(e) => Poll::Ready(Err(e)),
            Tx::Pending => {
                st.tx = Tx::Pending;
                st.write_wakers.register(waker);
                Poll::Pending
            }
        }
    }

    fn write_ended(&self, done: Done) -> Wakeup {
        let mut st = self.lock();
        if !matches!(st.tx, Tx::Pending) {
            return Wakeup::default();
        }
        if is_aborted(&done)
            && done.moved == 0
            && let Some(io) = &st.io
        {
            // Cancelled with the thread that started it, before anything moved: again.
            match io.write.write(&io.handle, done.buf, st.linger) {
                None => return Wakeup::default(),
                Some(again) => return self.write_finished(&mut st, again),
            }
        }
        self.write_finished(&mut st, done)
    }

    fn write_finished(&self, st: &mut State, done: Done) -> Wakeup {
        st.tx = match write_result(done, &mut st.wbuf) {
            Ok(()) => Tx::Idle,
            Err(e) => Tx::Failed(e),
        };
        Wakeup {
            wakers: st.write_wakers.take(),
            signal: st.signal.clone(),
        }
    }

    pub(super) fn set_linger(&self, linger: Duration) {
        self.lock().linger = linger;
    }

    /// The owner is gone: nothing new starts and nobody is woken; a read or connect in
    /// flight is cancelled (and over before this returns), a write goes on for its linger.
    /// With no write in flight the pipe instance is closed before this returns.
    pub(super) fn close(&self) {
        let io = {
            let mut st = self.lock();
            st.read_wakers.take();
            st.write_wakers.take();
            st.signal = None;
            st.io.take()
        };
        drop(io);
    }

    /// The handle and the place under the instance limit back, if no operation holds them
    /// (a byte-mode stream only ever had its connect, which is over).
    pub(super) fn take_parts(&self) -> io::Result<(OwnedHandle, Option<Slot>)> {
        let io = self.lock().io.take().ok_or_else(closed)?;
        let Io {
            handle,
            pipe,
            read,
            write,
        } = io;
        if read.busy() || write.busy() {
            return Err(io::Error::other(
                "an operation is still in flight on the stream's pipe",
            ));
        }
        drop((handle, read, write));
        let Pipe { handle, slot } = Arc::try_unwrap(pipe)
            .map_err(|_| io::Error::other("the stream's pipe is still in use"))?;
        Ok((handle, slot))
    }

    /// The peer's process id.
    pub(super) fn peer_pid(&self) -> io::Result<u32> {
        let st = self.lock();
        let io = st.io.as_ref().ok_or_else(closed)?;
        sys::peer_pid(io.pipe.as_handle(), self.server_end)
    }

    /// The pipe's handle and what each side is doing, for `Debug`.
    pub(super) fn describe(&self) -> (Option<std::os::windows::io::RawHandle>, String, String) {
        use std::os::windows::io::AsRawHandle;
        let st = self.lock();
        let handle = st.io.as_ref().map(|io| io.pipe.handle.as_raw_handle());
        let read = match &st.rx {
            Rx::Ready(msg) => format!("a {}-byte message ready", msg.len()),
            other => format!("{other:?}"),
        };
        let busy = |busy: bool| if busy { ", in flight" } else { "" };
        let (read_busy, write_busy) = st
            .io
            .as_ref()
            .map_or((false, false), |io| (io.read.busy(), io.write.busy()));
        let waiting = match st
            .io
            .as_ref()
            .map(|io| sys::bytes_waiting(io.pipe.as_handle()))
        {
            Some(Ok(n)) if n > 0 => format!(", {n} bytes waiting in the pipe"),
            _ => String::new(),
        };
        (
            handle,
            format!("{read}{}{waiting}", busy(read_busy)),
            format!("{:?}{}", st.tx, busy(write_busy)),
        )
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the stream is closed")
}

/// What comes after a read's end.
#[derive(Debug)]
pub(super) enum Step {
    /// Nothing now: a message, an end or an error waits to be handed out.
    Stop,
    /// The skipped rest of a cut message is gone: read the next message.
    Restart,
    /// Read on into this buffer; `Some(so_far)` when a message goes on and the buffer
    /// should grow by what the pipe still holds of it.
    On(Vec<u8>, Option<usize>),
}

/// Takes in the end of a read of `st.rx`'s kind (`Rx::Reading`).
/// `open` says whether the owner still has the pipe (a cancelled read is then read again).
pub(super) fn read_step(st: &mut State, done: Done, mode: Mode, max: usize, open: bool) -> Step {
    let Rx::Reading(kind) = st.rx else {
        return Step::Stop;
    };
    let Done {
        result, mut buf, ..
    } = done;
    match result {
        Ok(transfer) => {
            let ended = mode == Mode::Bytes || matches!(transfer, Transfer::Done(_));
            match kind {
                Reading::Message if ended => {
                    st.rx = Rx::Ready(buf);
                    Step::Stop
                }
                Reading::Message if buf.len() > max => {
                    st.rx = Rx::Reading(Reading::Discarding(buf.len()));
                    buf.clear();
                    Step::On(buf, None)
                }
                Reading::Message => {
                    let so_far = buf.len();
                    Step::On(buf, Some(so_far))
                }
                Reading::Discarding(size) => {
                    let size = size + buf.len();
                    buf.clear();
                    if ended {
                        st.rx = Rx::Failed(message_discarded(size, max));
                        st.spare = buf;
                        return Step::Stop;
                    }
                    st.rx = Rx::Reading(Reading::Discarding(size));
                    Step::On(buf, None)
                }
                Reading::Skipping => {
                    buf.clear();
                    if ended {
                        st.rx = Rx::Idle;
                        st.spare = buf;
                        return Step::Restart;
                    }
                    Step::On(buf, None)
                }
            }
        }
        // Cancelled because the thread that started it exited: the same read again (it
        // took nothing off the pipe).
        Err(e) if is_aborted_error(&e) && open => Step::On(buf, None),
        Err(e) => {
            let so_far = match kind {
                Reading::Message => buf.len(),
                Reading::Discarding(size) => size + buf.len(),
                // Inside a message, however much of it was read.
                Reading::Skipping => 1,
            };
            buf.clear();
            st.spare = buf;
            st.rx = if !is_gone(&e) {
                // The rest of a cut message is not the next message.
                st.skip = so_far > 0;
                Rx::Failed(e)
            } else if so_far == 0 {
                Rx::Eof
            } else {
                Rx::Failed(peer_closed_mid_message(so_far))
            };
            Step::Stop
        }
    }
}

fn is_aborted_error(e: &io::Error) -> bool {
    sys::code(e) == Some(sys::ERROR_OPERATION_ABORTED)
}

fn is_aborted(done: &Done) -> bool {
    matches!(&done.result, Err(e) if is_aborted_error(e))
}

/// A write's result: the whole message, or an error (`BrokenPipe` when the peer is gone).
/// The write's buffer goes back to `wbuf`.
fn write_result(done: Done, wbuf: &mut Vec<u8>) -> io::Result<()> {
    let Done { result, moved, buf } = done;
    let len = buf.len();
    *wbuf = buf;
    match result {
        Ok(Transfer::Done(n) | Transfer::More(n)) if n == len => Ok(()),
        Ok(Transfer::Done(n) | Transfer::More(n)) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("only {n} bytes of a {len}-byte message were written"),
        )),
        Err(e) if moved > 0 => Err(io::Error::new(
            e.kind(),
            format!("a {len}-byte message was cut after {moved} bytes: {e}"),
        )),
        Err(e) => Err(broken_pipe(e)),
    }
}

/// Copies the ready message into `buf`, or reports its size if it does not fit.
pub(super) fn copy_into(msg: &[u8], buf: &mut [u8]) -> io::Result<usize> {
    let n = msg.len();
    if n > buf.len() {
        return Err(MessageTooLarge::error(n, buf.len()));
    }
    buf[..n].copy_from_slice(msg);
    Ok(n)
}

/// Hands the ready message over by swapping buffers; `buf`'s old allocation reads the next.
pub(super) fn swap_into(msg: &mut Vec<u8>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    std::mem::swap(buf, msg);
    Ok(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rx: Rx) -> State {
        State {
            io: None,
            rx,
            spare: Vec::new(),
            skip: false,
            tx: Tx::Idle,
            wbuf: Vec::new(),
            read_wakers: Wakers::default(),
            write_wakers: Wakers::default(),
            signal: None,
            linger: DEFAULT_LINGER,
        }
    }

    fn done(result: io::Result<Transfer>, buf: &[u8]) -> Done {
        Done {
            result,
            moved: 0,
            buf: buf.to_vec(),
        }
    }

    fn os(code: u32) -> io::Error {
        io::Error::from_raw_os_error(code as i32)
    }

    #[test]
    fn a_read_cancelled_with_its_thread_reads_on_with_what_it_had() {
        let mut st = state(Rx::Reading(Reading::Message));
        let step = read_step(
            &mut st,
            done(Err(os(sys::ERROR_OPERATION_ABORTED)), b"first half"),
            Mode::Messages,
            100,
            true,
        );
        assert!(matches!(step, Step::On(ref buf, None) if buf == b"first half"));
        assert!(matches!(st.rx, Rx::Reading(Reading::Message)));
    }

    #[test]
    fn an_error_inside_a_message_skips_its_rest() {
        let mut st = state(Rx::Reading(Reading::Message));
        let step = read_step(
            &mut st,
            done(Err(os(87)), b"part"),
            Mode::Messages,
            100,
            true,
        );
        assert!(matches!(step, Step::Stop));
        assert!(matches!(st.rx, Rx::Failed(_)));
        assert!(st.skip);
        // The next read skips the rest, then reads the next message.
        st.rx = Rx::Reading(Reading::Skipping);
        let step = read_step(
            &mut st,
            done(Ok(Transfer::More(4)), b"rest"),
            Mode::Messages,
            100,
            true,
        );
        assert!(matches!(step, Step::On(ref buf, None) if buf.is_empty()));
        let step = read_step(
            &mut st,
            done(Ok(Transfer::Done(3)), b"end"),
            Mode::Messages,
            100,
            true,
        );
        assert!(matches!(step, Step::Restart));
        assert!(matches!(st.rx, Rx::Idle));
    }

    #[test]
    fn an_error_between_messages_skips_nothing() {
        let mut st = state(Rx::Reading(Reading::Message));
        let step = read_step(&mut st, done(Err(os(87)), b""), Mode::Messages, 100, true);
        assert!(matches!(step, Step::Stop));
        assert!(!st.skip);
    }

    #[test]
    fn a_peer_gone_inside_a_message_is_unexpected_eof() {
        let mut st = state(Rx::Reading(Reading::Message));
        let _ = read_step(
            &mut st,
            done(Err(os(sys::ERROR_BROKEN_PIPE)), b"part"),
            Mode::Messages,
            100,
            true,
        );
        assert!(matches!(&st.rx, Rx::Failed(e) if e.kind() == io::ErrorKind::UnexpectedEof));
        let mut st = state(Rx::Reading(Reading::Message));
        let _ = read_step(
            &mut st,
            done(Err(os(sys::ERROR_BROKEN_PIPE)), b""),
            Mode::Messages,
            100,
            true,
        );
        assert!(matches!(st.rx, Rx::Eof));
    }

    #[test]
    fn a_message_over_the_maximum_is_discarded_whole() {
        let mut st = state(Rx::Reading(Reading::Message));
        let step = read_step(
            &mut st,
            done(Ok(Transfer::More(8)), &[1; 8]),
            Mode::Messages,
            4,
            true,
        );
        assert!(matches!(step, Step::On(ref buf, None) if buf.is_empty()));
        assert!(matches!(st.rx, Rx::Reading(Reading::Discarding(8))));
        let _ = read_step(
            &mut st,
            done(Ok(Transfer::Done(2)), &[1; 2]),
            Mode::Messages,
            4,
            true,
        );
        assert!(matches!(&st.rx, Rx::Failed(e) if e.kind() == io::ErrorKind::InvalidData));
    }
}
