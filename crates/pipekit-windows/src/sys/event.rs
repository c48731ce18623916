//! The manual-reset events overlapped operations signal.

use std::io;
use std::os::windows::io::{AsHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::ptr;

use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent};

use windows_sys::Win32::Foundation::HANDLE;

use super::call::{last_error, raw};

/// A manual-reset event for overlapped operations.
#[derive(Debug)]
pub(crate) struct Event(OwnedHandle);

impl Event {
    pub(crate) fn new() -> io::Result<Event> {
        // SAFETY: no security attributes and no name; the returned handle is checked.
        let handle = unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) };
        if handle.is_null() {
            return Err(last_error());
        }
        // SAFETY: `handle` is a fresh event handle that nothing else owns.
        Ok(Event(unsafe {
            OwnedHandle::from_raw_handle(handle as RawHandle)
        }))
    }

    /// Sets the event to non-signalled.
    pub(crate) fn reset(&self) {
        // SAFETY: a valid event handle owned by `self`.
        unsafe { ResetEvent(raw(self.0.as_handle())) };
    }

    /// The raw handle, for the kernel to signal.
    pub(super) fn raw(&self) -> HANDLE {
        raw(self.0.as_handle())
    }
}
