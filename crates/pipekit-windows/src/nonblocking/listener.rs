//! The non-blocking listener.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use pipekit_core::Mode;
use pipekit_core::error::context;

use super::conn::{Conn, Rx, WakerList};
use super::signal::Signal;
#[cfg(feature = "mio")]
use super::stream::SignalWaker;
use super::stream::{Stream, would_block};

/// A server whose [`accept`](Self::accept) does not block.
///
/// Made from a blocking [`crate::Listener`] with [`Listener::new`]; the waiting instance
/// is connected in the background, and `accept` hands out the connected instance (and starts
/// the next one) or fails with `WouldBlock`. Any number of tasks may wait in
/// [`poll_accept`](Self::poll_accept) at once: each is woken when a client connects.
pub struct Listener {
    inner: crate::Listener,
    /// The instance waiting for a client, with its connect in flight.
    pending: Mutex<Option<Arc<Conn>>>,
    /// Tasks waiting for a place under the instance limit.
    limit_wakers: Arc<WakerList>,
    /// The mio signal, and a waker that raises it (made once).
    signal: Mutex<Option<(Arc<dyn Signal>, Waker)>>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waiting = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|conn| conn.describe().1);
        f.debug_struct("Listener")
            .field("inner", &self.inner)
            .field("waiting", &waiting)
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
    ///
    /// A listener bound with [`shared_memory`](pipekit_core::ListenerOptions::shared_memory)
    /// stops offering it here (the non-blocking streams move everything on the pipe): its
    /// sibling name closes, and clients that ask get the plain connection.
    pub fn new(mut listener: crate::Listener) -> io::Result<Listener> {
        listener.stop_offering();
        let listener = Listener {
            inner: listener,
            pending: Mutex::new(None),
            limit_wakers: Arc::default(),
            signal: Mutex::new(None),
        };
        listener.arm(None)?;
        Ok(listener)
    }

    /// Makes sure an instance waits for a client, with a connect in flight, unless the
    /// instance limit is reached (`waker` is then woken when a place is given back).
    fn arm(&self, waker: Option<&Waker>) -> io::Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_some() {
            return Ok(());
        }
        if let Some(waker) = waker {
            self.limit_wakers.register(waker);
        }
        let limit_waker = Waker::from(Arc::clone(&self.limit_wakers));
        let Some((handle, slot)) = self.inner.take_instance(Some(&limit_waker))? else {
            return Ok(());
        };
        let conn = Conn::new(
            handle,
            true,
            self.inner.mode(),
            self.inner.max_message_size(),
            slot,
        )?;
        {
            let mut st = conn.lock();
            st.signal = self.signal();
            conn.start_connect(&mut st);
        }
        *pending = Some(conn);
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
        let signal = self
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let waker = signal.map(|(signal, waker)| {
            signal.drain();
            waker
        });
        let mut cx = waker.as_ref().map(Context::from_waker);
        would_block(self.poll_accept_inner(cx.as_mut()))
    }

    /// Polls for the next client; `cx` is woken when one connects (or a place under the
    /// instance limit is given back).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept), without `WouldBlock`.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        self.poll_accept_inner(Some(cx))
    }

    fn poll_accept_inner(&self, cx: Option<&mut Context<'_>>) -> Poll<io::Result<Stream>> {
        let waker = cx.map(|cx| cx.waker());
        if let Err(e) = self.arm(waker) {
            return Poll::Ready(Err(e));
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(conn) = pending.as_ref() else {
            return Poll::Pending;
        };
        let mut st = conn.lock();
        match std::mem::replace(&mut st.rx, Rx::Idle) {
            Rx::Connecting => {
                st.rx = Rx::Connecting;
                if let Some(waker) = waker {
                    st.read_wakers.register(waker);
                }
                Poll::Pending
            }
            Rx::Failed(e) => {
                drop(st);
                let conn = pending.take();
                drop(pending);
                if let Some(conn) = conn {
                    conn.close();
                }
                Poll::Ready(Err(context(
                    e,
                    format!("cannot wait for a client on {}", self.inner.pipe_path()),
                )))
            }
            _ => {
                st.signal = None;
                // Tasks that came to accept after this client connected wait for the next
                // one: woken, they poll again and find the next instance.
                let late = st.read_wakers.take();
                drop(st);
                late.into_iter().for_each(Waker::wake);
                let Some(conn) = pending.take() else {
                    return Poll::Pending;
                };
                drop(pending);
                // The next client must find an instance; if making it fails now (or the limit
                // is reached), the next accept tries again.
                let _ = self.arm(None);
                Poll::Ready(Ok(Stream::from_conn(conn)))
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

    pub(crate) fn signal(&self) -> Option<Arc<dyn Signal>> {
        self.signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(signal, _)| Arc::clone(signal))
    }

    #[cfg(feature = "mio")]
    /// Makes `signal` stand for the listener's readiness (mio); also for the waiting
    /// instance.
    pub(crate) fn set_signal(&self, signal: Arc<dyn Signal>) {
        let waker = Waker::from(Arc::new(SignalWaker(Arc::clone(&signal))));
        *self.signal.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Arc::clone(&signal), waker));
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = pending.as_ref() {
            conn.lock().signal = Some(signal);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(conn) = pending {
            conn.close();
        }
    }
}
