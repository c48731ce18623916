//! Overlapped operations that run on while the caller goes on: the non-blocking engine's.
//!
//! A [`Channel`] runs one operation at a time (a connect, a read or a write) on a handle
//! given with each. What the kernel may write while an operation is in flight belongs to
//! the channel's shared part (`Inner`): the `OVERLAPPED` (in an `UnsafeCell`, only ever
//! reached through a raw pointer), the event it signals and the operation's buffer, which
//! the caller gives up when it starts the operation and gets back in the [`Done`]. The
//! operation holds the handle (an `Arc`) until its end is collected, so the handle stays
//! open exactly as long as an operation needs it.
//!
//! An operation that does not end at once keeps `Inner` alive by itself: starting it hands
//! one strong reference to the thread-pool wait armed on its event, and the wait's callback
//! takes that reference back when it sees the operation over. So an operation whose owner
//! is gone, or that the OS finishes late, still writes into memory that is alive and used by
//! nothing else; the memory is freed after the kernel is done with it, by the callback. The
//! wait is armed only while an operation is in flight, once per arming, which is what makes
//! the count exact. Nothing here ever waits for a callback, so dropping a channel (even from
//! inside a callback) cannot deadlock.
//!
//! Dropping a [`Channel`] cancels a connect or a read in flight and waits for the kernel to
//! end it (a cancel ends at once; this waits for the kernel only, never for the pool), so
//! the handle is let go of before the drop returns. A write in flight goes on (a message
//! accepted for sending is written after its stream is dropped), for up to its `linger`
//! after the drop; then it is cancelled, so a peer that never reads cannot keep the pipe
//! instance forever.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::fmt;
use std::io;
use std::mem;
use std::os::windows::io::AsHandle;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_PIPE_CONNECTED,
    GetLastError, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::IO::{CancelIoEx, OVERLAPPED};
use windows_sys::Win32::System::Pipes::ConnectNamedPipe;
use windows_sys::Win32::System::Threading::{PTP_CALLBACK_INSTANCE, PTP_WAIT};

use super::call::{Transfer, code, finish, io_len, raw};
use super::event::Event;
use super::wait::TpWait;

/// The handle an operation runs on, shared by the caller and the operation.
pub(crate) type Handle = Arc<dyn AsHandle + Send + Sync>;

/// The end of an operation.
#[derive(Debug)]
pub(crate) struct Done {
    /// What it did. A connect to a client that came (and maybe left) before it started is
    /// `Ok(Transfer::Done(0))`. A cancelled operation fails with `ERROR_OPERATION_ABORTED`,
    /// also when the OS cancelled it because the thread that started it exited.
    pub(crate) result: io::Result<Transfer>,
    /// How many bytes a write moved before an error.
    pub(crate) moved: usize,
    /// The buffer the operation was given, back; a read's length has grown by what it read
    /// (also before an error).
    pub(crate) buf: Vec<u8>,
}

/// Told, on a pool thread, the end of every operation that did not end at once; it may
/// start the next operation on the same channel.
pub(crate) type Notify = Arc<dyn Fn(Done) + Send + Sync>;

/// Runs overlapped operations one at a time.
pub(crate) struct Channel {
    inner: Arc<Inner>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("busy", &self.busy())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connect,
    Read,
    Write,
}

/// The operation in flight: the handle it runs on and the buffer the kernel reads from or
/// writes into.
struct InFlight {
    kind: Kind,
    handle: Handle,
    buf: Vec<u8>,
    /// A read's buffer length when it started.
    start_len: usize,
    /// The wait's timeout (a write's linger).
    timeout: Option<Duration>,
}

struct Inner {
    // Declared first, so it is closed before the event it waits on.
    wait: OnceLock<TpWait>,
    event: Event,
    /// The operation's OVERLAPPED: written by the kernel while an operation is in flight,
    /// only reached through `ov.get()`, and only set up for the next operation once the last
    /// one was collected (`op` is `None`).
    ov: UnsafeCell<OVERLAPPED>,
    notify: OnceLock<Notify>,
    op: Mutex<Option<InFlight>>,
    /// The owning `Channel` is gone.
    detached: AtomicBool,
}

// SAFETY: `ov` is only used through raw pointers, by the kernel while an operation is in
// flight and by this module with `op` locked (to set it up, or to collect or cancel the
// operation); its `hEvent` is `event`'s handle, which lives as long as `Inner`. Every other
// field is Send + Sync.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Channel {
    /// A channel, with its event and thread-pool wait.
    pub(crate) fn new() -> io::Result<Channel> {
        let inner = Arc::new(Inner {
            wait: OnceLock::new(),
            event: Event::new()?,
            // SAFETY: OVERLAPPED is plain data; all-zero is its initial state.
            ov: UnsafeCell::new(unsafe { mem::zeroed() }),
            notify: OnceLock::new(),
            op: Mutex::new(None),
            detached: AtomicBool::new(false),
        });
        let context = Arc::as_ptr(&inner).cast::<c_void>();
        // SAFETY: the wait is armed only while an operation is in flight, and each arming
        // owns one strong reference to `inner` (see `Inner::arm`), so `context` is valid
        // whenever the callback can run; `on_signal` only touches `Inner` through its lock.
        let wait = unsafe { TpWait::new(Some(on_signal), context) }?;
        let _ = inner.wait.set(wait);
        Ok(Channel { inner })
    }

    /// Tells `notify` the ends of the operations that do not end at once (set once, before
    /// the first operation; an end that comes without it is dropped).
    pub(crate) fn on_end(&self, notify: Notify) {
        let _ = self.inner.notify.set(notify);
    }

    /// Starts waiting for a client on a server instance (`ConnectNamedPipe`); `None` while
    /// it is in flight.
    pub(crate) fn connect(&self, handle: &Handle) -> Option<Done> {
        self.inner.start(Kind::Connect, handle, Vec::new(), None)
    }

    /// Starts a `ReadFile` into `buf`'s spare capacity (reserve it first); `None` while it is
    /// in flight.
    pub(crate) fn read(&self, handle: &Handle, buf: Vec<u8>) -> Option<Done> {
        self.inner.start(Kind::Read, handle, buf, None)
    }

    /// Starts a `WriteFile` of `buf`; `None` while it is in flight. If the channel is
    /// dropped while it is, it goes on for up to `linger` (to twice that) before it is
    /// cancelled.
    pub(crate) fn write(&self, handle: &Handle, buf: Vec<u8>, linger: Duration) -> Option<Done> {
        self.inner.start(Kind::Write, handle, buf, Some(linger))
    }

    /// Whether an operation is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.inner.lock().is_some()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.inner.detached.store(true, Ordering::SeqCst);
        let mut op = self.inner.lock();
        let Some(flight) = op.as_ref() else {
            return;
        };
        if flight.kind == Kind::Write {
            // Goes on for its linger (see `on_signal`).
            return;
        }
        self.inner.cancel(flight);
        // SAFETY: `ov` belongs to `flight`, started on its handle and cancelled just now;
        // waiting makes it over. `op` stays locked.
        let _ = unsafe { finish(flight.handle.as_handle(), self.inner.ov.get(), true) };
        // Over: its buffer and its hold on the handle go now. The wait still fires (the
        // event is signalled), finds nothing in flight and gives its reference back.
        op.take();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<InFlight>> {
        self.op.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(
        self: &Arc<Inner>,
        kind: Kind,
        handle: &Handle,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Option<Done> {
        let mut op = self.lock();
        if op.is_some() {
            return Some(Done {
                result: Err(io::Error::other(
                    "another operation is in flight on this pipe",
                )),
                moved: 0,
                buf,
            });
        }
        let ov = self.ov.get();
        self.event.reset();
        // SAFETY: all-zero is the OVERLAPPED's initial state.
        let mut fresh: OVERLAPPED = unsafe { mem::zeroed() };
        fresh.hEvent = self.event.raw();
        // SAFETY: no operation is in flight (`op` is `None` under the lock), so nothing else
        // uses the OVERLAPPED.
        unsafe { ov.write(fresh) };
        let start_len = buf.len();
        // Stored before the call: the kernel's pointers are into the stored buffer, which
        // is not touched again until the operation is over.
        let flight = op.insert(InFlight {
            kind,
            handle: Arc::clone(handle),
            buf,
            start_len,
            timeout,
        });
        let raw_handle = raw(flight.handle.as_handle());
        // In each call: `ov` is set up above and stays valid (in `self`, kept alive while
        // the operation is in flight); the read's pointer and length are the buffer's spare
        // capacity, the write's its contents, and the buffer stays in `op` until the
        // operation is over.
        let ok = match kind {
            // SAFETY: as above.
            Kind::Connect => unsafe { ConnectNamedPipe(raw_handle, ov) },
            Kind::Read => {
                let spare = flight.buf.spare_capacity_mut();
                let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), io_len(spare.len()));
                // SAFETY: as above.
                unsafe { ReadFile(raw_handle, ptr, len, ptr::null_mut(), ov) }
            }
            Kind::Write => {
                let (ptr, len) = (flight.buf.as_ptr(), io_len(flight.buf.len()));
                // SAFETY: as above.
                unsafe { WriteFile(raw_handle, ptr, len, ptr::null_mut(), ov) }
            }
        };
        let err = if ok == 0 {
            // SAFETY: reads the calling thread's last-error value.
            unsafe { GetLastError() }
        } else {
            0
        };
        if err == ERROR_IO_PENDING {
            self.arm(timeout);
            return None;
        }
        let flight = op.take().expect("stored above");
        if ok == 0 && err != ERROR_MORE_DATA {
            // Failed at once: nothing was started.
            return Some(flight.done(Err((io::Error::from_raw_os_error(err as i32), 0))));
        }
        // Over at once: collected with `wait`, as the OVERLAPPED may not say so yet (seen
        // under Wine); the event was reset before the start, so it is this operation's.
        // SAFETY: `ov` belongs to the operation just started on this handle, which is over
        // or about to be; `op` stays locked.
        let result = unsafe { finish(flight.handle.as_handle(), ov, true) };
        Some(flight.done(result))
    }

    /// Arms the wait for the operation in flight, handing it one strong reference to `self`.
    /// Called with `op` locked and holding an operation that is in flight, and only when the
    /// wait is not armed (right after the start, or from the wait's own callback).
    fn arm(self: &Arc<Inner>, timeout: Option<Duration>) {
        let wait = self.wait.get().expect("the wait is set in Channel::new");
        // Owned by this arming; the callback takes it back.
        let _ = Arc::into_raw(Arc::clone(self));
        // SAFETY: not armed (see above); `event` lives as long as `self`, which the
        // reference just given keeps alive.
        unsafe { wait.arm(&self.event, timeout) };
    }

    /// Asks the OS to cancel `flight`, the operation in flight (with `op` locked); its end
    /// still comes.
    fn cancel(&self, flight: &InFlight) {
        // SAFETY: `ov` belongs to `flight`, in flight on its handle (or just ended, for which
        // the call does nothing); only the operation started with it is cancelled.
        unsafe { CancelIoEx(raw(flight.handle.as_handle()), self.ov.get()) };
    }

    /// The result of `flight`, the operation in flight (with `op` locked), if it is over.
    fn collect(&self, flight: &InFlight) -> Option<Result<Transfer, (io::Error, usize)>> {
        // SAFETY: `ov` belongs to `flight`, started on its handle; not waiting.
        let result = unsafe { finish(flight.handle.as_handle(), self.ov.get(), false) };
        match result {
            Err((e, _)) if code(&e) == Some(ERROR_IO_INCOMPLETE) => None,
            other => Some(other),
        }
    }
}

impl InFlight {
    /// The end, with the buffer back and the hold on the handle let go of.
    fn done(self, result: Result<Transfer, (io::Error, usize)>) -> Done {
        let InFlight {
            kind,
            handle,
            mut buf,
            start_len,
            ..
        } = self;
        drop(handle);
        let moved = match &result {
            Ok(Transfer::Done(n) | Transfer::More(n)) => *n,
            Err((_, n)) => *n,
        };
        if kind == Kind::Read {
            let n = moved.min(buf.capacity() - start_len);
            // SAFETY: the kernel wrote `n` bytes (at most the spare capacity it was given,
            // which is still the spare capacity: the buffer was not touched) after
            // `start_len`.
            unsafe { buf.set_len(start_len + n) };
        }
        let result = match result {
            Ok(transfer) => Ok(transfer),
            // A client that connected (and maybe left) before the connect started.
            Err((e, _))
                if kind == Kind::Connect
                    && matches!(code(&e), Some(ERROR_PIPE_CONNECTED | ERROR_NO_DATA)) =>
            {
                Ok(Transfer::Done(0))
            }
            Err((e, _)) => Err(e),
        };
        Done {
            result,
            moved: if kind == Kind::Write { moved } else { 0 },
            buf,
        }
    }
}

/// The wait's callback: collects the operation in flight and tells `notify`, or arms the
/// wait again if it is still going (cancelling it first if its channel is gone and its
/// linger ran out).
unsafe extern "system" fn on_signal(
    _instance: PTP_CALLBACK_INSTANCE,
    context: *mut c_void,
    _wait: PTP_WAIT,
    wait_result: u32,
) {
    // SAFETY: every arming hands the wait one strong reference to the `Inner` at `context`
    // (`Inner::arm`); this callback runs once per arming and takes it back.
    let inner = unsafe { Arc::from_raw(context.cast::<Inner>().cast_const()) };
    let mut op = inner.lock();
    let Some(flight) = op.as_ref() else {
        // Collected by the channel's drop.
        return;
    };
    let mut result = inner.collect(flight);
    if result.is_none() && wait_result != WAIT_TIMEOUT {
        // Signalled, yet not over: reset and look again; its end sets the event after
        // the reset.
        inner.event.reset();
        result = inner.collect(flight);
    }
    let Some(result) = result else {
        let timeout = if wait_result == WAIT_TIMEOUT && inner.detached.load(Ordering::SeqCst) {
            inner.cancel(flight);
            None
        } else {
            flight.timeout
        };
        inner.arm(timeout);
        return;
    };
    // Taken and ended with `op` locked: its hold on the handle is gone before anyone who
    // locks `op` next (a `busy` or a drop) looks.
    let done = op.take().expect("looked at above").done(result);
    drop(op);
    let notify = inner.notify.get().cloned();
    // Possibly the last reference.
    drop(inner);
    if let Some(notify) = notify {
        notify(done);
    }
}
