//! The non-blocking message stream.

use std::fmt;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pipekit_core::error::{invalid_input, wrong_mode};
use pipekit_core::slots::Slot;
use pipekit_core::{Mode, PeerCredentials};

use super::conn::{Conn, copy_into, swap_into};
use super::signal::Signal;

/// A connection whose `recv` and `send` do not block (message mode).
///
/// Made by [`Listener::accept`](super::Listener::accept) or from a blocking stream with
/// [`Stream::new`]. A byte-mode stream can only be taken apart
/// ([`into_parts`](Self::into_parts)) for mio or Tokio.
pub struct Stream {
    conn: Arc<Conn>,
    signal: Option<Arc<dyn Signal>>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (handle, read, write) = self.conn.describe();
        f.debug_struct("Stream")
            .field("handle", &handle)
            .field("mode", &self.conn.mode)
            .field("read", &read)
            .field("write", &write)
            .field("signal", &self.signal.as_ref().map(|s| s.describe()))
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Makes a blocking stream non-blocking. A message-mode stream starts reading ahead; a
    /// message the blocking stream was holding (one that did not fit a caller's buffer) is
    /// the first one received.
    ///
    /// # Errors
    ///
    /// The OS error of creating the events and thread-pool waits.
    pub fn new(stream: crate::Stream) -> io::Result<Stream> {
        stream.on_pipe_only()?;
        let mode = stream.mode();
        let max = stream.max_message_size();
        let (handle, end, slot, held) = stream.into_parts_with_held();
        let conn = Conn::new(handle, end == crate::PipeEnd::Server, mode, max, slot)?;
        if let Some(held) = held {
            let mut st = conn.lock();
            conn.resume(&mut st, held.data, held.complete);
        }
        Ok(Stream::from_conn(conn))
    }

    pub(super) fn from_conn(conn: Arc<Conn>) -> Stream {
        if conn.mode == Mode::Messages {
            let mut st = conn.lock();
            conn.start_read(&mut st);
        }
        Stream { conn, signal: None }
    }

    /// The peer's process id (uid and gid are `None` on Windows).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::peer_credentials`]; `NotConnected` once the stream is closed.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let pid = self.conn.peer_pid()?;
        Ok(PeerCredentials::new(Some(pid), None, None))
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.conn.mode
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        self.conn.max_message_size
    }

    /// How long a message accepted by [`try_send`](Self::try_send) and still being written
    /// when the stream is dropped may go on being written (between `linger` and twice
    /// that); then its write is cancelled and the pipe instance closed. 10 s by default.
    pub fn set_linger(&mut self, linger: Duration) {
        self.conn.set_linger(linger);
    }

    /// Receives one message into `buf`: `Some(len)`, or `None` once the peer has closed and
    /// every message has been read; `WouldBlock` while no message has arrived.
    ///
    /// # Errors
    ///
    /// As the blocking [`crate::Stream::recv`]: a message too large for `buf` is reported
    /// with its size (`InvalidInput` carrying
    /// [`MessageTooLarge`](pipekit_core::MessageTooLarge)) and stays readable; a message over
    /// the maximum is discarded (`InvalidData`); `UnexpectedEof` if the peer closed inside a
    /// message.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.drain_signal();
        would_block(self.recv_inner(None, |msg| copy_into(msg, buf)))
    }

    /// Receives one whole message into `buf` (cleared first, grown to fit); `WouldBlock`
    /// while none has arrived.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), but no message within the maximum is too large.
    pub fn try_recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.drain_signal();
        would_block(self.recv_inner(None, |msg| swap_into(msg, buf)))
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
        self.recv_inner(Some(cx), |msg| copy_into(msg, buf))
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
        self.recv_inner(Some(cx), |msg| swap_into(msg, buf))
    }

    fn recv_inner(
        &mut self,
        cx: Option<&mut Context<'_>>,
        take: impl FnOnce(&mut Vec<u8>) -> io::Result<usize>,
    ) -> Poll<io::Result<Option<usize>>> {
        let conn = &*self.conn;
        if conn.mode != Mode::Messages {
            return Poll::Ready(Err(wrong_mode("recv", conn.mode)));
        }
        let mut st = conn.lock();
        let poll = conn.take_message(&mut st, take);
        if poll.is_pending()
            && let Some(cx) = cx
        {
            st.read_wakers.register(cx.waker());
        }
        poll
    }

    /// Sends `msg` as one message: `Ok` once it is written or handed to the pipe (it is then
    /// written even if the stream is dropped, within [`set_linger`](Self::set_linger));
    /// `WouldBlock` while an earlier message is still being written.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message over the maximum (nothing is sent); `BrokenPipe` if the
    /// peer is gone, also for an earlier accepted message whose write failed.
    pub fn try_send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.drain_signal();
        would_block(self.send_inner(None, msg))
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
        if self.conn.mode != Mode::Messages {
            return Poll::Ready(Err(wrong_mode("send", self.conn.mode)));
        }
        self.conn.send(msg, cx.map(|cx| cx.waker()))
    }

    /// Polls until the last accepted message is written.
    ///
    /// # Errors
    ///
    /// The error of that write (`BrokenPipe` if the peer is gone).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.flush(cx.waker())
    }

    /// Takes the stream apart, as [`crate::Stream::into_parts`]: for a byte-mode stream to be
    /// handed to `mio::windows::NamedPipe` or Tokio.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message-mode stream (its read-ahead owns the pipe's reads, and
    /// may hold a message).
    pub fn into_parts(self) -> io::Result<(OwnedHandle, crate::PipeEnd, Option<Slot>)> {
        if self.conn.mode == Mode::Messages {
            return Err(invalid_input(
                "a non-blocking message-mode stream cannot be taken apart",
            ));
        }
        let (handle, slot) = self.conn.take_parts()?;
        let end = if self.conn.server_end {
            crate::PipeEnd::Server
        } else {
            crate::PipeEnd::Client
        };
        Ok((handle, end, slot))
    }

    fn drain_signal(&self) {
        if let Some(signal) = &self.signal {
            signal.drain();
        }
    }

    #[cfg(feature = "mio")]
    pub(crate) fn signal(&self) -> Option<Arc<dyn Signal>> {
        self.signal.clone()
    }

    #[cfg(feature = "mio")]
    /// Makes `signal` stand for the stream's readiness (mio).
    pub(crate) fn set_signal(&mut self, signal: Arc<dyn Signal>) {
        self.conn.lock().signal = Some(Arc::clone(&signal));
        self.signal = Some(signal);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.conn.close();
    }
}

#[cfg(feature = "mio")]
/// A signal as a waker: wakes a mio listener when a place under its instance limit is
/// given back.
pub(super) struct SignalWaker(pub(super) Arc<dyn Signal>);

#[cfg(feature = "mio")]
impl std::task::Wake for SignalWaker {
    fn wake(self: Arc<Self>) {
        self.0.raise();
    }
}

pub(super) fn would_block<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}
