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
//! - [`shm`]: shared-memory connections' sections, views, events and process handles.
//!
//! All handles are opened with `FILE_FLAG_OVERLAPPED`.

mod call;
mod event;
mod op;
mod pipe;
mod security;
pub(crate) mod shm;
mod wait;

pub(crate) use call::{Transfer, code, millis, wide};
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

/// `socket` as a borrowed handle, for as long as the socket is borrowed.
pub(crate) fn socket_as_handle(
    socket: &impl std::os::windows::io::AsSocket,
) -> std::os::windows::io::BorrowedHandle<'_> {
    use std::os::windows::io::{AsRawSocket, BorrowedHandle, RawHandle};
    let raw = socket.as_socket().as_raw_socket() as usize as RawHandle;
    // SAFETY: a SOCKET from the system's Winsock providers is a kernel file handle, open for
    // as long as the socket it was borrowed from, which the returned lifetime ties it to.
    unsafe { BorrowedHandle::borrow_raw(raw) }
}
