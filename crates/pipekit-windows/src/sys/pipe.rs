//! Pipe instances: creating, opening, connecting, asking about them, and the blocking reads
//! and writes.

use std::io;
use std::mem;
use std::os::windows::io::{BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{
    ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_PIPE_CONNECTED, GetLastError, INVALID_HANDLE_VALUE,
    WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, FILE_READ_ATTRIBUTES,
    FILE_READ_DATA, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA, FlushFileBuffers, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX, ReadFile, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT, SYNCHRONIZE,
    WriteFile,
};
use windows_sys::Win32::System::IO::{CancelIoEx, OVERLAPPED};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, GetNamedPipeClientProcessId, GetNamedPipeInfo,
    GetNamedPipeServerProcessId, PIPE_SERVER_END, PeekNamedPipe, SetNamedPipeHandleState,
    WaitNamedPipeW,
};
use windows_sys::Win32::System::Threading::{
    INFINITE, WaitForMultipleObjects, WaitForSingleObject,
};

use super::call::{Transfer, code, cvt, finish, io_len, last_error, raw};
use super::event::Event;
use super::security::SecurityDescriptor;
use super::{ERROR_NO_DATA, ERROR_OPERATION_ABORTED, PIPE_READMODE_MESSAGE, PIPE_TYPE_MESSAGE};

/// Runs one overlapped operation on `handle`, started by `start`, and waits up to
/// `timeout_ms` for it. A timed-out operation is cancelled; if it completed meanwhile its
/// result stands, and a cancelled one that moved some bytes returns that count.
fn overlapped(
    handle: BorrowedHandle<'_>,
    event: &Event,
    timeout_ms: u32,
    start: impl FnOnce(*mut OVERLAPPED) -> i32,
) -> io::Result<Transfer> {
    // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
    let mut ov: OVERLAPPED = unsafe { mem::zeroed() };
    ov.hEvent = event.raw();
    let started = start(&mut ov);
    let mut timed_out = false;
    if started == 0 {
        // SAFETY: reads the calling thread's last-error value.
        let err = unsafe { GetLastError() };
        if err != ERROR_IO_PENDING && err != ERROR_MORE_DATA {
            // Failed at once: no operation is in flight.
            return Err(io::Error::from_raw_os_error(err as i32));
        }
        if err == ERROR_IO_PENDING {
            // SAFETY: `ov.hEvent` is a valid event handle owned by `event`.
            let waited = unsafe { WaitForSingleObject(ov.hEvent, timeout_ms) };
            if waited != WAIT_OBJECT_0 {
                // Timed out (or, which cannot happen for a valid event, the wait failed):
                // cancel, and collect below, so the operation is over before `ov` goes.
                timed_out = waited == WAIT_TIMEOUT;
                // SAFETY: `ov` is the OVERLAPPED of an operation in flight on `handle`.
                unsafe { CancelIoEx(raw(handle), &ov) };
            }
        }
    }
    // Over, or cancelled: collected with `wait`, since an operation that completed at once
    // may not say so in its OVERLAPPED yet (seen under Wine), and must be over before `ov`
    // and the buffer go.
    // SAFETY: `ov` belongs to the operation just started on `handle` and lives until this
    // returns.
    match unsafe { finish(handle, &ov, true) } {
        Ok(transfer) => Ok(transfer),
        Err((_, n)) if timed_out && n > 0 => Ok(Transfer::Done(n)),
        Err((e, _)) if timed_out && code(&e) == Some(ERROR_OPERATION_ABORTED) => Err(
            io::Error::new(io::ErrorKind::TimedOut, "the pipe operation timed out"),
        ),
        Err((e, _)) => Err(e),
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
        lpSecurityDescriptor: sd.as_ptr(),
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

/// Waits for a client on either of two server instances (a listener's two names) and says
/// which have one: `[first, second]`, at least one `true`. The other instance's wait is
/// cancelled before this returns; a client that connected to it meanwhile counts too, and
/// one that connects later is found by the next call (`ERROR_PIPE_CONNECTED`).
pub(crate) fn connect_either(
    instances: [BorrowedHandle<'_>; 2],
    events: [&Event; 2],
) -> io::Result<[bool; 2]> {
    // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
    let mut ovs: [OVERLAPPED; 2] = unsafe { mem::zeroed() };
    let mut connected = [false; 2];
    let mut pending = [false; 2];
    let mut failed = None;
    for i in 0..2 {
        if failed.is_some() || connected.contains(&true) {
            break;
        }
        ovs[i].hEvent = events[i].raw();
        // SAFETY: `ovs[i]` is a live OVERLAPPED with an event; every operation started here
        // is collected below before `ovs` is dropped.
        let started = unsafe { ConnectNamedPipe(raw(instances[i]), &mut ovs[i]) };
        if started != 0 {
            pending[i] = true;
            continue;
        }
        // SAFETY: reads the calling thread's last-error value.
        match unsafe { GetLastError() } {
            ERROR_IO_PENDING => pending[i] = true,
            ERROR_PIPE_CONNECTED | ERROR_NO_DATA => connected[i] = true,
            err => failed = Some(io::Error::from_raw_os_error(err as i32)),
        }
    }
    if failed.is_none() && !connected.contains(&true) {
        let raw_events = [events[0].raw(), events[1].raw()];
        // SAFETY: two valid event handles, owned by `events`, outlive the call.
        let waited = unsafe { WaitForMultipleObjects(2, raw_events.as_ptr(), 0, INFINITE) };
        if waited == WAIT_FAILED {
            failed = Some(last_error());
        }
    }
    for i in 0..2 {
        if !pending[i] {
            continue;
        }
        // SAFETY: `ovs[i]` is the OVERLAPPED of an operation started on `instances[i]`; an
        // operation already over ignores the cancel.
        unsafe { CancelIoEx(raw(instances[i]), &ovs[i]) };
        // SAFETY: as above; `finish` waits for the operation to be over, so `ovs` outlives it.
        match unsafe { finish(instances[i], &ovs[i], true) } {
            Ok(_) => connected[i] = true,
            Err((e, _)) => match code(&e) {
                Some(ERROR_PIPE_CONNECTED | ERROR_NO_DATA) => connected[i] = true,
                Some(ERROR_OPERATION_ABORTED) => {}
                _ => {
                    failed.get_or_insert(e);
                }
            },
        }
    }
    match failed {
        Some(e) if !connected.contains(&true) => Err(e),
        _ => Ok(connected),
    }
}

/// What a client asks for when it opens a pipe: reading and writing data, reading and
/// writing the pipe's attributes (its read mode), waiting on the handle. Not `GENERIC_WRITE`,
/// which includes `FILE_CREATE_PIPE_INSTANCE` (= `FILE_APPEND_DATA`): a descriptor that
/// grants exactly these rights lets users connect without letting them serve the name.
pub(crate) const CLIENT_ACCESS: u32 =
    FILE_READ_DATA | FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES | SYNCHRONIZE;

/// Opens the client end of the pipe at `path`, duplex and overlapped, with
/// [`CLIENT_ACCESS`], allowing the server to identify the client but not to impersonate it.
pub(crate) fn open_client(path: &[u16]) -> io::Result<OwnedHandle> {
    debug_assert_eq!(path.last(), Some(&0));
    // SAFETY: `path` is NUL-terminated; no security attributes, no template.
    let handle = unsafe {
        CreateFileW(
            path.as_ptr(),
            CLIENT_ACCESS,
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
    Ok(pipe_info(handle)?.0)
}

/// Whether the pipe behind `handle` is of message type, and whether `handle` is its
/// server's end.
pub(crate) fn pipe_info(handle: BorrowedHandle<'_>) -> io::Result<(bool, bool)> {
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
    Ok((flags & PIPE_TYPE_MESSAGE != 0, flags & PIPE_SERVER_END != 0))
}

/// The process id of the other end: the client's if `server_end`, else the server's.
pub(crate) fn peer_pid(handle: BorrowedHandle<'_>, server_end: bool) -> io::Result<u32> {
    let mut pid = 0u32;
    cvt(if server_end {
        // SAFETY: `pid` is a valid out-pointer.
        unsafe { GetNamedPipeClientProcessId(raw(handle), &mut pid) }
    } else {
        // SAFETY: `pid` is a valid out-pointer.
        unsafe { GetNamedPipeServerProcessId(raw(handle), &mut pid) }
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

/// How many bytes are waiting in the pipe to be read, in all.
pub(crate) fn bytes_waiting(handle: BorrowedHandle<'_>) -> io::Result<usize> {
    let mut total = 0u32;
    // SAFETY: no buffer is passed (size 0); `total` is a valid out-pointer.
    cvt(unsafe {
        PeekNamedPipe(
            raw(handle),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            &mut total,
            ptr::null_mut(),
        )
    })?;
    Ok(total as usize)
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

/// Hands `handle` to mio.
///
/// `handle` must be a pipe handle opened for overlapped I/O and tied to no completion port
/// (every pipe this crate opens or creates is, until it is handed to mio or Tokio, which
/// takes it by value).
#[cfg(feature = "mio")]
pub(crate) fn mio_pipe(handle: OwnedHandle) -> mio::windows::NamedPipe {
    use std::os::windows::io::{FromRawHandle as _, IntoRawHandle as _};
    // SAFETY: an open overlapped pipe handle tied to no completion port (this crate's
    // handles are, see above); ownership moves into the mio object.
    unsafe { mio::windows::NamedPipe::from_raw_handle(handle.into_raw_handle()) }
}

/// Hands a server end's handle to Tokio's reactor (the same promise as [`mio_pipe`]).
///
/// # Errors
///
/// The runtime's error of tying the handle to its completion port (there must be a runtime
/// with I/O enabled).
#[cfg(feature = "tokio")]
pub(crate) fn tokio_server(
    handle: OwnedHandle,
) -> io::Result<tokio::net::windows::named_pipe::NamedPipeServer> {
    use std::os::windows::io::IntoRawHandle as _;
    // SAFETY: an open overlapped pipe handle tied to no completion port; ownership moves
    // into the Tokio object (it closes the handle if registering fails).
    unsafe {
        tokio::net::windows::named_pipe::NamedPipeServer::from_raw_handle(handle.into_raw_handle())
    }
}

/// Hands a client end's handle to Tokio's reactor (as [`tokio_server`]).
///
/// # Errors
///
/// As [`tokio_server`].
#[cfg(feature = "tokio")]
pub(crate) fn tokio_client(
    handle: OwnedHandle,
) -> io::Result<tokio::net::windows::named_pipe::NamedPipeClient> {
    use std::os::windows::io::IntoRawHandle as _;
    // SAFETY: as in `tokio_server`.
    unsafe {
        tokio::net::windows::named_pipe::NamedPipeClient::from_raw_handle(handle.into_raw_handle())
    }
}

/// The access rights `handle` was opened with, as the kernel granted them.
#[cfg(test)]
fn granted_access(handle: BorrowedHandle<'_>) -> io::Result<u32> {
    use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectBasicInformation};
    use windows_sys::Win32::System::WindowsProgramming::PUBLIC_OBJECT_BASIC_INFORMATION;
    let mut info = PUBLIC_OBJECT_BASIC_INFORMATION::default();
    let size = mem::size_of::<PUBLIC_OBJECT_BASIC_INFORMATION>() as u32;
    // SAFETY: `info` is valid for writes of `size` bytes; the returned length is not asked
    // for.
    let status = unsafe {
        NtQueryObject(
            raw(handle),
            ObjectBasicInformation,
            (&raw mut info).cast(),
            size,
            ptr::null_mut(),
        )
    };
    if status < 0 {
        return Err(io::Error::other(format!(
            "NtQueryObject failed: {status:#x}"
        )));
    }
    Ok(info.GrantedAccess)
}

#[cfg(test)]
mod tests {
    use std::os::windows::io::AsHandle;

    use windows_sys::Win32::Storage::FileSystem::FILE_APPEND_DATA;

    use super::*;

    #[test]
    fn a_client_opens_with_exactly_the_client_rights() {
        let full = format!(r"\\.\pipe\pipekit-access-{}", std::process::id());
        let path = crate::sys::wide(&full).unwrap();
        let config = PipeConfig {
            pipe_mode: PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE,
            max_instances: 1,
            out_buffer: 4096,
            in_buffer: 4096,
            default_timeout_ms: 50,
        };
        let _server = create_pipe(&path, true, &config, None).unwrap();
        let client = open_client(&path).unwrap();
        set_message_read_mode(client.as_handle()).unwrap();
        let granted = granted_access(client.as_handle()).unwrap();
        assert_eq!(granted, CLIENT_ACCESS, "granted {granted:#x}");
        // FILE_APPEND_DATA is FILE_CREATE_PIPE_INSTANCE on a pipe.
        assert_eq!(granted & FILE_APPEND_DATA, 0, "granted {granted:#x}");
    }
}
