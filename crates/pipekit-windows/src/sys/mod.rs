//! Every Win32 call the backend makes, each wrapped in a safe function: the only module of
//! the crate with `unsafe` code.
//!
//! - [`event`]: the manual-reset events overlapped operations signal.
//! - [`pipe`]: creating, opening and connecting pipe instances, and the blocking reads and
//!   writes (an overlapped operation and a wait on its event, which is what gives them a
//!   timeout: `CancelIoEx` when it runs out).
//! - [`op`]: overlapped operations that run on while the caller goes on (the non-blocking
//!   engine's), each owning what the kernel may write until the kernel is done with it.
//! - [`security`]: security descriptors and the current user's SID.
//!
//! All handles are opened with `FILE_FLAG_OVERLAPPED`.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};

use windows_sys::Win32::Foundation::{ERROR_MORE_DATA, HANDLE};
use windows_sys::Win32::System::IO::{GetOverlappedResult, OVERLAPPED};

mod event;
mod op;
mod pipe;
mod security;
mod wait;

pub(crate) use event::Event;
pub(crate) use op::{Channel, Done, Handle};
pub(crate) use pipe::*;
pub(crate) use security::{SecurityDescriptor, current_user_sid};

pub(crate) use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_FILE_NOT_FOUND, ERROR_HANDLES_CLOSED,
    ERROR_INVALID_PARAMETER, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_BUSY,
    ERROR_PIPE_NOT_CONNECTED, ERROR_SEM_TIMEOUT,
};
pub(crate) use windows_sys::Win32::System::Pipes::{
    NMPWAIT_USE_DEFAULT_WAIT, PIPE_READMODE_BYTE, PIPE_READMODE_MESSAGE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES,
    PIPE_WAIT,
};
pub(crate) use windows_sys::Win32::System::Threading::INFINITE as WAIT_FOREVER;

/// `d` in whole milliseconds, rounded up, at least 1 and below `INFINITE`.
pub(crate) fn millis(d: std::time::Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u32::try_from(ms)
        .unwrap_or(WAIT_FOREVER - 1)
        .min(WAIT_FOREVER - 1)
}

/// The Win32 error code inside `err`, if it carries one.
pub(crate) fn code(err: &io::Error) -> Option<u32> {
    pipekit_core::error::os_code(err).map(|c| c as u32)
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn cvt(ok: i32) -> io::Result<()> {
    if ok == 0 { Err(last_error()) } else { Ok(()) }
}

fn raw(handle: BorrowedHandle<'_>) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

fn io_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// `s` as a NUL-terminated UTF-16 string; `InvalidInput` if it holds a NUL.
pub(crate) fn wide(s: &str) -> io::Result<Vec<u16>> {
    if s.contains('\0') {
        return Err(pipekit_core::error::invalid_input(format!(
            "{s:?} contains a NUL character"
        )));
    }
    Ok(s.encode_utf16().chain(Some(0)).collect())
}

/// How an overlapped read ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// The read took `n` bytes; in message mode, the rest of the message.
    Done(usize),
    /// The read filled the buffer with `n` bytes of a message that goes on
    /// (`ERROR_MORE_DATA`).
    More(usize),
}

/// Collects the result of the operation behind `ov` (waiting for it if `wait`): the transfer,
/// or the error with the bytes that moved before it.
///
/// # Safety
///
/// `ov` must belong to an operation started on `handle`, and stay valid and unused by any
/// other operation until this returns; unless `wait`, the operation must be over.
unsafe fn finish(
    handle: BorrowedHandle<'_>,
    ov: *const OVERLAPPED,
    wait: bool,
) -> Result<Transfer, (io::Error, usize)> {
    let mut n = 0u32;
    // SAFETY: per the caller's contract; `n` is a valid out-pointer.
    let ok = unsafe { GetOverlappedResult(raw(handle), ov, &mut n, i32::from(wait)) };
    if ok != 0 {
        return Ok(Transfer::Done(n as usize));
    }
    let err = last_error();
    match code(&err) {
        Some(ERROR_MORE_DATA) => Ok(Transfer::More(n as usize)),
        _ => Err((err, n as usize)),
    }
}
