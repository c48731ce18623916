//! Calling Win32: error codes into `io::Error`, handles and lengths as the calls take them,
//! UTF-16 strings, and collecting an overlapped operation's result.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};

use windows_sys::Win32::Foundation::{ERROR_MORE_DATA, HANDLE};
use windows_sys::Win32::System::IO::{GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Threading::INFINITE as WAIT_FOREVER;

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

pub(crate) fn last_error() -> io::Error {
    io::Error::last_os_error()
}

pub(crate) fn cvt(ok: i32) -> io::Result<()> {
    if ok == 0 { Err(last_error()) } else { Ok(()) }
}

pub(crate) fn raw(handle: BorrowedHandle<'_>) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

pub(crate) fn io_len(len: usize) -> u32 {
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
pub(crate) unsafe fn finish(
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
