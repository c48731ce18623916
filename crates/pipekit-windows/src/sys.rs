//! Every Win32 call the backend makes, each wrapped in a safe function.
//!
//! All handles are opened with `FILE_FLAG_OVERLAPPED`; blocking calls are built from an
//! overlapped operation and a wait on its event, which is what gives reads, writes and
//! connects a timeout (`CancelIoEx` when it runs out).

use std::ffi::OsString;
use std::io;
use std::mem;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle,
};
use std::ptr;

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_OPERATION_ABORTED,
    ERROR_PIPE_CONNECTED, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
    LocalFree, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
    TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, FlushFileBuffers,
    OPEN_EXISTING, PIPE_ACCESS_DUPLEX, ReadFile, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
    WriteFile,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, GetNamedPipeClientProcessId, GetNamedPipeInfo,
    GetNamedPipeServerProcessId, PeekNamedPipe, SetNamedPipeHandleState, WaitNamedPipeW,
};
use windows_sys::Win32::System::Threading::{
    CloseThreadpoolWait, CreateEventW, CreateThreadpoolWait, GetCurrentProcess, INFINITE,
    OpenProcessToken, PTP_WAIT, PTP_WAIT_CALLBACK, ResetEvent, SetThreadpoolWait,
    WaitForSingleObject, WaitForThreadpoolWaitCallbacks,
};

pub(crate) use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_FILE_NOT_FOUND, ERROR_HANDLES_CLOSED,
    ERROR_INVALID_PARAMETER, ERROR_IO_INCOMPLETE, ERROR_NO_DATA, ERROR_PIPE_BUSY,
    ERROR_PIPE_NOT_CONNECTED, ERROR_SEM_TIMEOUT,
};
pub(crate) use windows_sys::Win32::System::Pipes::{
    NMPWAIT_USE_DEFAULT_WAIT, PIPE_READMODE_BYTE, PIPE_READMODE_MESSAGE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES,
    PIPE_WAIT,
};
pub(crate) use windows_sys::Win32::System::Threading::INFINITE as WAIT_FOREVER;

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

/// `s` as a NUL-terminated UTF-16 string; `InvalidInput` if it holds a NUL.
pub(crate) fn wide(s: &str) -> io::Result<Vec<u16>> {
    if s.contains('\0') {
        return Err(pipekit_core::error::invalid_input(format!(
            "{s:?} contains a NUL character"
        )));
    }
    Ok(s.encode_utf16().chain(Some(0)).collect())
}

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
}

/// A thread-pool wait (`CreateThreadpoolWait`): runs a callback on a pool thread once the
/// event it is armed with is signalled. One-shot: it must be armed again for the next time.
#[derive(Debug)]
pub(crate) struct TpWait(PTP_WAIT);

// SAFETY: a TP_WAIT may be armed, waited for and closed from any thread.
unsafe impl Send for TpWait {}
// SAFETY: as above; the thread-pool functions synchronize internally.
unsafe impl Sync for TpWait {}

impl TpWait {
    /// Creates a wait that calls `callback` with `context`.
    ///
    /// # Safety
    ///
    /// `context` must stay valid for `callback` until the wait is closed or
    /// [`disarm`](Self::disarm)ed, and `callback` must be sound to run on any thread.
    pub(crate) unsafe fn new(
        callback: PTP_WAIT_CALLBACK,
        context: *const std::ffi::c_void,
    ) -> io::Result<TpWait> {
        // SAFETY: the caller vouches for `callback` and `context`; default environment.
        let wait = unsafe { CreateThreadpoolWait(callback, context.cast_mut(), ptr::null()) };
        if wait == 0 {
            return Err(last_error());
        }
        Ok(TpWait(wait))
    }

    /// Calls the callback once, as soon as `event` is signalled (at once if it is already).
    pub(crate) fn arm(&self, event: &Event) {
        // SAFETY: `self.0` is a live wait; the event outlives it (the owner drops the wait
        // first); no timeout.
        unsafe { SetThreadpoolWait(self.0, raw(event.0.as_handle()), ptr::null()) };
    }

    /// Stops the wait and waits for a callback that is running to return; one that is
    /// queued and not started is cancelled. Must not be called from the wait's own callback.
    pub(crate) fn disarm(&self) {
        // SAFETY: `self.0` is a live wait; a null handle stops it.
        unsafe {
            SetThreadpoolWait(self.0, ptr::null_mut(), ptr::null());
            WaitForThreadpoolWaitCallbacks(self.0, 1);
        }
    }
}

impl Drop for TpWait {
    fn drop(&mut self) {
        // SAFETY: `self.0` is live and closed once; a callback still running (the caller's own)
        // finishes first, the pool frees the wait after it.
        unsafe { CloseThreadpoolWait(self.0) };
    }
}

/// How an overlapped operation started without waiting for it.
#[derive(Debug)]
pub(crate) enum Started {
    /// In flight: its event is signalled when it ends.
    Pending,
    /// Already over, with this result.
    Done(io::Result<Transfer>),
}

fn started(handle: BorrowedHandle<'_>, ov: *mut OVERLAPPED, ok: i32) -> Started {
    // An operation that completed at once is collected with `wait`: its OVERLAPPED may not
    // say so yet (seen under Wine), and it must be over before the state says so, since
    // the buffer is handed out or freed next.
    if ok != 0 {
        // SAFETY: `ov` belongs to the operation that just completed on `handle`.
        return Started::Done(finish(handle, unsafe { &*ov }, true));
    }
    // SAFETY: reads the calling thread's last-error value.
    match unsafe { GetLastError() } {
        ERROR_IO_PENDING => Started::Pending,
        // SAFETY: as above (a partial message completed at once).
        ERROR_MORE_DATA => Started::Done(finish(handle, unsafe { &*ov }, true)),
        err => Started::Done(Err(io::Error::from_raw_os_error(err as i32))),
    }
}

/// Makes `ov` fresh for an operation that signals `event`, and resets the event: not left to
/// the kernel, so a signal left from the last operation cannot look like this one's end.
///
/// # Safety
///
/// `ov` must be valid for writes and not used by an operation in flight.
unsafe fn prepare(ov: *mut OVERLAPPED, event: &Event) {
    event.reset();
    // SAFETY: per the caller's contract; all-zero is an OVERLAPPED's initial state.
    unsafe {
        ov.write(mem::zeroed());
        (*ov).hEvent = raw(event.0.as_handle());
    }
}

/// Starts a `ReadFile` of `len` bytes into `buf`, signalling `event` when it ends.
///
/// # Safety
///
/// `ov` and `buf` (valid for writes of `len` bytes) must stay valid, and `ov` unused by any
/// other operation, until the operation is over (`Done`, or after `Pending` its event is
/// signalled or [`cancel_and_wait`] returned).
pub(crate) unsafe fn start_read(
    handle: BorrowedHandle<'_>,
    ov: *mut OVERLAPPED,
    event: &Event,
    buf: *mut u8,
    len: usize,
) -> Started {
    // SAFETY: per the caller's contract.
    unsafe { prepare(ov, event) };
    // SAFETY: per the caller's contract.
    let ok = unsafe { ReadFile(raw(handle), buf, io_len(len), ptr::null_mut(), ov) };
    started(handle, ov, ok)
}

/// Starts a `WriteFile` of `len` bytes from `buf`. Same contract as [`start_read`], with
/// `buf` valid for reads.
///
/// # Safety
///
/// As [`start_read`].
pub(crate) unsafe fn start_write(
    handle: BorrowedHandle<'_>,
    ov: *mut OVERLAPPED,
    event: &Event,
    buf: *const u8,
    len: usize,
) -> Started {
    // SAFETY: per the caller's contract.
    unsafe { prepare(ov, event) };
    // SAFETY: per the caller's contract.
    let ok = unsafe { WriteFile(raw(handle), buf, io_len(len), ptr::null_mut(), ov) };
    started(handle, ov, ok)
}

/// Starts waiting for a client on a server instance (`ConnectNamedPipe`). A client that is
/// already there (`ERROR_PIPE_CONNECTED`), or came and left (`ERROR_NO_DATA`), is `Done(Ok)`.
///
/// # Safety
///
/// As [`start_read`], for `ov`.
pub(crate) unsafe fn start_connect(
    handle: BorrowedHandle<'_>,
    ov: *mut OVERLAPPED,
    event: &Event,
) -> Started {
    // SAFETY: per the caller's contract.
    unsafe { prepare(ov, event) };
    // SAFETY: per the caller's contract.
    let ok = unsafe { ConnectNamedPipe(raw(handle), ov) };
    connect_result(started(handle, ov, ok))
}

/// A connect's result with a client that is or was there already as success.
pub(crate) fn connect_result(started: Started) -> Started {
    match started {
        Started::Done(Err(e)) if matches!(code(&e), Some(ERROR_PIPE_CONNECTED | ERROR_NO_DATA)) => {
            Started::Done(Ok(Transfer::Done(0)))
        }
        other => other,
    }
}

/// The result of an operation whose event is signalled.
///
/// # Safety
///
/// `ov` must belong to an operation started on `handle` that is over.
pub(crate) unsafe fn op_result(
    handle: BorrowedHandle<'_>,
    ov: *const OVERLAPPED,
) -> io::Result<Transfer> {
    // SAFETY: per the caller's contract.
    finish(handle, unsafe { &*ov }, false)
}

/// Cancels the operation behind `ov` and waits until it is over.
///
/// # Safety
///
/// `ov` must belong to an operation started on `handle` that is in flight or over.
pub(crate) unsafe fn cancel_and_wait(handle: BorrowedHandle<'_>, ov: *const OVERLAPPED) {
    // SAFETY: per the caller's contract; cancelling a finished operation does nothing.
    unsafe { CancelIoEx(raw(handle), ov) };
    // SAFETY: as above; waits on the operation's (manual-reset) event until it is over.
    let _ = finish(handle, unsafe { &*ov }, true);
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

/// Runs one overlapped operation on `handle`, started by `start`, and waits up to
/// `timeout_ms` for it. A timed-out operation is cancelled; if it completed meanwhile its
/// result stands.
fn overlapped(
    handle: BorrowedHandle<'_>,
    event: &Event,
    timeout_ms: u32,
    start: impl FnOnce(*mut OVERLAPPED) -> i32,
) -> io::Result<Transfer> {
    // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
    let mut ov: OVERLAPPED = unsafe { mem::zeroed() };
    ov.hEvent = raw(event.0.as_handle());
    let started = start(&mut ov);
    if started == 0 {
        // SAFETY: reads the calling thread's last-error value.
        let err = unsafe { GetLastError() };
        if err == ERROR_MORE_DATA {
            // Completed at once with part of a message (collected with `wait`, as in
            // `started`).
            return finish(handle, &ov, true);
        }
        if err != ERROR_IO_PENDING {
            // Failed at once: no operation is in flight.
            return Err(io::Error::from_raw_os_error(err as i32));
        }
        // SAFETY: `ov.hEvent` is a valid event handle owned by `event`.
        let waited = unsafe { WaitForSingleObject(ov.hEvent, timeout_ms) };
        if waited == WAIT_TIMEOUT {
            // SAFETY: `ov` is the OVERLAPPED of an operation still in flight on `handle`.
            unsafe { CancelIoEx(raw(handle), &ov) };
            return finish(handle, &ov, true);
        }
        if waited != WAIT_OBJECT_0 {
            // Cannot happen for a valid event; make sure the operation is over before `ov`
            // goes out of scope.
            let err = last_error();
            // SAFETY: as above.
            unsafe { CancelIoEx(raw(handle), &ov) };
            let _ = finish(handle, &ov, true);
            return Err(err);
        }
    }
    // Completed at once, or its event is signalled: over (`wait` only guards the first case,
    // as in `started`).
    finish(handle, &ov, true)
}

/// Collects the result of the operation behind `ov` (waiting for it if `wait`).
fn finish(handle: BorrowedHandle<'_>, ov: &OVERLAPPED, wait: bool) -> io::Result<Transfer> {
    let mut n = 0u32;
    // SAFETY: `ov` belongs to an operation started on `handle`; `n` is a valid out-pointer.
    let ok = unsafe { GetOverlappedResult(raw(handle), ov, &mut n, i32::from(wait)) };
    if ok != 0 {
        return Ok(Transfer::Done(n as usize));
    }
    let err = last_error();
    match code(&err) {
        Some(ERROR_MORE_DATA) => Ok(Transfer::More(n as usize)),
        // Cancelled by a timeout: what moved before the cancel counts.
        Some(ERROR_OPERATION_ABORTED) if n > 0 => Ok(Transfer::Done(n as usize)),
        Some(ERROR_OPERATION_ABORTED) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the pipe operation timed out",
        )),
        _ => Err(err),
    }
}

/// How `CreateNamedPipeW` makes each instance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PipeConfig {
    pub(crate) pipe_mode: u32,
    pub(crate) max_instances: u32,
    pub(crate) out_buffer: u32,
    pub(crate) in_buffer: u32,
    pub(crate) default_timeout_ms: u32,
}

/// Creates one instance of the pipe at `path` (NUL-terminated), duplex and overlapped.
pub(crate) fn create_pipe(
    path: &[u16],
    first: bool,
    config: &PipeConfig,
    security: Option<&SecurityDescriptor>,
) -> io::Result<OwnedHandle> {
    debug_assert_eq!(path.last(), Some(&0));
    let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
    if first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    let attributes = security.map(|sd| SECURITY_ATTRIBUTES {
        nLength: mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    });
    let attributes_ptr = attributes
        .as_ref()
        .map_or(ptr::null(), |a| a as *const SECURITY_ATTRIBUTES);
    // SAFETY: `path` is NUL-terminated; `attributes_ptr` is null or points to attributes
    // (and a descriptor owned by `security`) that outlive the call.
    let handle = unsafe {
        CreateNamedPipeW(
            path.as_ptr(),
            open_mode,
            config.pipe_mode,
            config.max_instances,
            config.out_buffer,
            config.in_buffer,
            config.default_timeout_ms,
            attributes_ptr,
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(last_error());
    }
    // SAFETY: a fresh pipe handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

/// Waits for a client on a server instance. A client that connected before the call
/// (`ERROR_PIPE_CONNECTED`), or connected and already left (`ERROR_NO_DATA`), counts.
pub(crate) fn connect_pipe(handle: BorrowedHandle<'_>, event: &Event) -> io::Result<()> {
    let result = overlapped(handle, event, INFINITE, |ov| {
        // SAFETY: `ov` is a live OVERLAPPED with an event; `overlapped` waits for the
        // operation to finish before `ov` is dropped.
        unsafe { ConnectNamedPipe(raw(handle), ov) }
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) if matches!(code(&e), Some(ERROR_PIPE_CONNECTED | ERROR_NO_DATA)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens the client end of the pipe at `path`, duplex and overlapped, allowing the server
/// to identify the client but not to impersonate it.
pub(crate) fn open_client(path: &[u16]) -> io::Result<OwnedHandle> {
    debug_assert_eq!(path.last(), Some(&0));
    // SAFETY: `path` is NUL-terminated; no security attributes, no template.
    let handle = unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(last_error());
    }
    // SAFETY: a fresh pipe handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

/// Waits up to `timeout_ms` (or the server's default with `NMPWAIT_USE_DEFAULT_WAIT`) for an
/// instance of the pipe at `path` to be free.
pub(crate) fn wait_named_pipe(path: &[u16], timeout_ms: u32) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    cvt(unsafe { WaitNamedPipeW(path.as_ptr(), timeout_ms) })
}

/// Switches a client handle to message read mode.
pub(crate) fn set_message_read_mode(handle: BorrowedHandle<'_>) -> io::Result<()> {
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: `mode` outlives the call; the other settings are left alone (null).
    cvt(unsafe { SetNamedPipeHandleState(raw(handle), &mode, ptr::null(), ptr::null()) })
}

/// Whether the pipe behind `handle` is of message type.
pub(crate) fn is_message_pipe(handle: BorrowedHandle<'_>) -> io::Result<bool> {
    let mut flags = 0u32;
    // SAFETY: `flags` is a valid out-pointer; the other outputs are not asked for.
    cvt(unsafe {
        GetNamedPipeInfo(
            raw(handle),
            &mut flags,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    })?;
    Ok(flags & PIPE_TYPE_MESSAGE != 0)
}

/// The process id of the other end: the client's if `server_end`, else the server's.
pub(crate) fn peer_pid(handle: BorrowedHandle<'_>, server_end: bool) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: `pid` is a valid out-pointer.
    cvt(unsafe {
        if server_end {
            GetNamedPipeClientProcessId(raw(handle), &mut pid)
        } else {
            GetNamedPipeServerProcessId(raw(handle), &mut pid)
        }
    })?;
    Ok(pid)
}

/// How many bytes of the message being read are still in the pipe.
pub(crate) fn message_left(handle: BorrowedHandle<'_>) -> io::Result<usize> {
    let mut left = 0u32;
    // SAFETY: no buffer is passed (size 0); `left` is a valid out-pointer.
    cvt(unsafe {
        PeekNamedPipe(
            raw(handle),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            &mut left,
        )
    })?;
    Ok(left as usize)
}

fn io_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// One `ReadFile` into `buf` (at most 4 GiB − 1 bytes of it).
pub(crate) fn read(
    handle: BorrowedHandle<'_>,
    event: &Event,
    buf: &mut [u8],
    timeout_ms: u32,
) -> io::Result<Transfer> {
    let len = io_len(buf.len());
    let ptr = buf.as_mut_ptr();
    overlapped(handle, event, timeout_ms, |ov| {
        // SAFETY: `ptr` is valid for `len` bytes and stays borrowed until `overlapped`
        // returns, which is after the operation finished.
        unsafe { ReadFile(raw(handle), ptr, len, ptr::null_mut(), ov) }
    })
}

/// One `ReadFile` into the spare capacity of `buf`, whose length grows by what was read.
pub(crate) fn read_spare(
    handle: BorrowedHandle<'_>,
    event: &Event,
    buf: &mut Vec<u8>,
    timeout_ms: u32,
) -> io::Result<Transfer> {
    let spare = buf.spare_capacity_mut();
    let len = io_len(spare.len());
    let ptr = spare.as_mut_ptr().cast::<u8>();
    let transfer = overlapped(handle, event, timeout_ms, |ov| {
        // SAFETY: `ptr` is valid for writes of `len` bytes (the spare capacity) until
        // `overlapped` returns.
        unsafe { ReadFile(raw(handle), ptr, len, ptr::null_mut(), ov) }
    })?;
    let (Transfer::Done(n) | Transfer::More(n)) = transfer;
    let n = n.min(len as usize);
    // SAFETY: the kernel initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(transfer)
}

/// One `WriteFile` of `buf` (at most 4 GiB − 1 bytes of it).
pub(crate) fn write(
    handle: BorrowedHandle<'_>,
    event: &Event,
    buf: &[u8],
    timeout_ms: u32,
) -> io::Result<usize> {
    let len = io_len(buf.len());
    let ptr = buf.as_ptr();
    let transfer = overlapped(handle, event, timeout_ms, |ov| {
        // SAFETY: `ptr` is valid for `len` bytes until `overlapped` returns.
        unsafe { WriteFile(raw(handle), ptr, len, ptr::null_mut(), ov) }
    })?;
    let (Transfer::Done(n) | Transfer::More(n)) = transfer;
    Ok(n)
}

/// Waits until the peer has read everything written to `handle`.
pub(crate) fn flush_buffers(handle: BorrowedHandle<'_>) -> io::Result<()> {
    // SAFETY: a valid pipe handle.
    cvt(unsafe { FlushFileBuffers(raw(handle)) })
}

/// A security descriptor from `ConvertStringSecurityDescriptorToSecurityDescriptorW`, freed
/// with `LocalFree`.
#[derive(Debug)]
pub(crate) struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is a self-contained block of memory that is only read after
// creation, so it may be used and freed from any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above; no method mutates it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Parses an SDDL string.
    pub(crate) fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let text = wide(sddl)?;
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated; `sd` is a valid out-pointer; the size output is
        // not asked for.
        cvt(unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        })?;
        Ok(SecurityDescriptor(sd))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by the SDDL conversion with LocalAlloc and is
        // freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// The SID of the user this process runs as, in its string form (`S-1-5-21-…`).
pub(crate) fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of this process needs no closing; `token` is a valid
    // out-pointer.
    cvt(unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) })?;
    // SAFETY: `token` is a fresh handle that nothing else owns.
    let token = unsafe { OwnedHandle::from_raw_handle(token as RawHandle) };

    // TOKEN_USER holds a pointer into the same buffer; u64 words keep it aligned.
    let mut buffer: Vec<u64> = vec![0; 16];
    loop {
        let size = io_len(buffer.len() * 8);
        let mut needed = 0u32;
        // SAFETY: `buffer` is valid for `size` bytes; `needed` is a valid out-pointer.
        let ok = unsafe {
            GetTokenInformation(
                raw(token.as_handle()),
                TokenUser,
                buffer.as_mut_ptr().cast(),
                size,
                &mut needed,
            )
        };
        if ok != 0 {
            break;
        }
        let err = last_error();
        if code(&err) != Some(ERROR_INSUFFICIENT_BUFFER) || needed <= size {
            return Err(err);
        }
        buffer.resize((needed as usize).div_ceil(8), 0);
    }
    // SAFETY: the call succeeded, so the buffer starts with an initialized, aligned
    // TOKEN_USER.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points into `buffer`, which is alive; `text` is a valid out-pointer.
    cvt(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    // SAFETY: on success `text` is a NUL-terminated string allocated with LocalAlloc.
    let string = unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = OsString::from_wide(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        s
    };
    string
        .into_string()
        .map_err(|_| io::Error::other("the user's SID is not valid Unicode"))
}
