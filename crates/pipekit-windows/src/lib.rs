//! The Windows backend of [pipekit]: named pipes in byte and message mode.
//!
//! A [`Listener`] creates the instances of a named pipe (`CreateNamedPipeW`) and accepts
//! clients on them; a client makes a [`Stream`] with [`Stream::connect`] (`CreateFileW`).
//! Applications normally use the `pipekit` facade, which re-exports these types on Windows.
//!
//! # The pipe pipekit makes
//!
//! - Duplex, `PIPE_WAIT`; `PIPE_TYPE_BYTE` in byte mode, `PIPE_TYPE_MESSAGE` +
//!   `PIPE_READMODE_MESSAGE` on both ends in message mode.
//! - The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`: if anyone already
//!   serves (or squats) the name, binding fails with `AddrInUse`.
//! - `PIPE_REJECT_REMOTE_CLIENTS` unless [`WindowsOptions::remote_clients`] asks otherwise.
//! - An owner-only security descriptor: full access for `SYSTEM`, the Administrators group and
//!   the user who created the pipe, nobody else
//!   (`D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;<user SID>)`). [`WindowsOptions::security`] takes
//!   another descriptor as an SDDL string.
//! - Clients open with `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION`: the server can learn
//!   who the client is but cannot act as the client.
//! - There is always one instance waiting for a client: [`Listener::accept`] connects the
//!   waiting instance and creates the next one before it returns, so a client never finds no
//!   instance (`ERROR_FILE_NOT_FOUND`) between two accepts. With an instance limit, clients
//!   beyond it find every instance busy and wait (`WaitNamedPipeW`) until the server accepts
//!   again after a connection has ended.
//!
//! # Data at disconnect
//!
//! Dropping a [`Stream`] closes its handle; it never calls `DisconnectNamedPipe`, which would
//! throw away whatever the peer has not read yet. The peer reads everything sent before the
//! drop, then sees the end of the stream (`ERROR_BROKEN_PIPE`). A server that wants to know
//! the client has read everything before it goes on calls [`Stream::flush_buffers`]
//! (`FlushFileBuffers`), which waits for exactly that.
//!
//! # Half-close
//!
//! Windows named pipes have no half-close: [`Stream::shutdown_write`] fails with
//! `Unsupported`. End a conversation by dropping the stream, or by a message the peer
//! understands.
//!
//! # Timeouts
//!
//! Every handle is opened for overlapped I/O; blocking reads and writes wait on the
//! operation's event, so read and write timeouts work as on Unix: when one runs out the
//! operation is cancelled (`CancelIoEx`) and the call fails with `TimedOut`. A byte-mode write
//! cancelled after some bytes moved returns that count instead.
//!
//! [pipekit]: https://docs.rs/pipekit
//!
//! On other OSes this crate is empty: its documentation is built for a Windows target.
// Elsewhere the crate is empty, so the links above have nothing to point to.
#![cfg_attr(not(windows), allow(rustdoc::broken_intra_doc_links))]
#![cfg(windows)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see Cargo.toml): OS- and feature-gated items get badges.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod listener;
#[cfg(feature = "mio")]
mod mio;
pub mod nonblocking;
mod options;
mod shm;
mod stream;
#[allow(unsafe_code)]
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use listener::Listener;

/// The access rights a pipekit client opens a pipe with: read and write data, read and
/// write attributes (to set the read mode), synchronize (`0x0010_0183`). A security
/// descriptor that grants users exactly these lets them connect without letting them create
/// instances of the pipe; see [`WindowsOptions::security`].
pub const CLIENT_ACCESS: u32 = sys::CLIENT_ACCESS;

/// The SID of the user this process runs as, in its string form (`S-1-5-21-…`), for
/// security descriptors.
///
/// # Errors
///
/// The OS error of reading the process token.
pub fn current_user_sid() -> std::io::Result<String> {
    sys::current_user_sid()
}

/// A socket seen as the kernel handle it is (a Winsock `SOCKET` of the system's providers is
/// a file handle), for types that offer `AsHandle` and may hold a TCP socket.
pub fn socket_as_handle(
    socket: &impl std::os::windows::io::AsSocket,
) -> std::os::windows::io::BorrowedHandle<'_> {
    sys::socket_as_handle(socket)
}
#[cfg(feature = "mio")]
pub use mio::MioPipe;
pub use options::WindowsOptions;
pub use stream::{PipeEnd, Stream};
