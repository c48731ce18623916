//! Thread-pool waits: a callback on a pool thread once an event is signalled.

use std::ffi::c_void;
use std::io;
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::System::Threading::{
    CloseThreadpoolWait, CreateThreadpoolWait, PTP_WAIT, PTP_WAIT_CALLBACK, SetThreadpoolWait,
};

use super::call::last_error;
use super::event::Event;

/// A thread-pool wait (`CreateThreadpoolWait`): runs its callback on a pool thread once the
/// event it is armed with is signalled, or its timeout runs out. One-shot: it must be armed
/// again for the next time, and must not be armed while it is armed already.
#[derive(Debug)]
pub(super) struct TpWait(PTP_WAIT);

// SAFETY: a TP_WAIT may be armed and closed from any thread; the pool synchronizes.
unsafe impl Send for TpWait {}
// SAFETY: as above.
unsafe impl Sync for TpWait {}

impl TpWait {
    /// Creates a wait that calls `callback` with `context`.
    ///
    /// # Safety
    ///
    /// `context` must be valid for `callback` whenever the wait is armed, and `callback` must
    /// be sound to run on any thread.
    pub(super) unsafe fn new(
        callback: PTP_WAIT_CALLBACK,
        context: *const c_void,
    ) -> io::Result<TpWait> {
        // SAFETY: the caller vouches for `callback` and `context`; default environment.
        let wait = unsafe { CreateThreadpoolWait(callback, context.cast_mut(), ptr::null()) };
        if wait == 0 {
            return Err(last_error());
        }
        Ok(TpWait(wait))
    }

    /// Calls the callback once, as soon as `event` is signalled (at once if it is already) or
    /// `timeout` has passed.
    ///
    /// # Safety
    ///
    /// The wait must not be armed already (a second arm would replace the first, and the
    /// callback's context would be counted once for two arms), and `event` must stay open
    /// while it is armed.
    pub(super) unsafe fn arm(&self, event: &Event, timeout: Option<Duration>) {
        // A relative time: negative, in 100 ns units.
        let due = timeout.map(|t| {
            let ticks = -(i64::try_from(t.as_nanos() / 100).unwrap_or(i64::MAX).max(1));
            FILETIME {
                dwLowDateTime: ticks as u32,
                dwHighDateTime: (ticks >> 32) as u32,
            }
        });
        let due_ptr = due.as_ref().map_or(ptr::null(), |d| d as *const FILETIME);
        // SAFETY: `self.0` is a live wait; the event is open (caller's contract); `due_ptr`
        // is null or points to a FILETIME that outlives the call.
        unsafe { SetThreadpoolWait(self.0, event.raw(), due_ptr) };
    }
}

impl Drop for TpWait {
    fn drop(&mut self) {
        // SAFETY: `self.0` is live and closed once. A callback that is running (possibly the
        // one dropping this) finishes first: the pool frees the wait after it.
        unsafe { CloseThreadpoolWait(self.0) };
    }
}
