//! Windows extras: the pipe's path, remote clients and security descriptors, handles.
//!
//! # Security
//!
//! By default a pipe admits only `SYSTEM`, the Administrators group and the user who created
//! it (an owner-only DACL), rejects clients on other machines (`PIPE_REJECT_REMOTE_CLIENTS`),
//! and its first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so nobody can serve
//! a name another process already serves. Clients open with `SECURITY_SQOS_PRESENT |
//! SECURITY_IDENTIFICATION`: a server can identify them but not act as them.
//! [`WindowsOptions`] relaxes these rules explicitly.
//!
//! # Data at disconnect
//!
//! Dropping a stream closes its handle without `DisconnectNamedPipe`: the peer still reads
//! everything sent before, then the end of the stream. [`StreamExt::flush_buffers`] waits until
//! the peer has read it all.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};

#[cfg(feature = "mio")]
pub use pipekit_windows::MioPipe;
pub use pipekit_windows::nonblocking;
pub use pipekit_windows::{CLIENT_ACCESS, PipeEnd, WindowsOptions, current_user_sid};

use crate::{IntoPipeName, Listener, ListenerOptions, Stream};

/// The pipe path `name` resolves to (`\\.\pipe\<name>` for a portable name), as a C# or
/// Python peer must open it.
///
/// # Errors
///
/// `InvalidInput` for a name with no Windows form (a filesystem path, an abstract name).
///
/// # Examples
///
/// ```
/// assert_eq!(pipekit::os::windows::pipe_path("test_pipe")?, r"\\.\pipe\test_pipe");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pipe_path(name: impl IntoPipeName) -> io::Result<String> {
    name.into_pipe_name()?.resolve_windows()
}

/// Windows-only constructors and conversions for [`Listener`].
pub trait ListenerExt: Sized {
    /// Binds `name` with portable `options` and Windows-only `windows` options (remote
    /// clients, a security descriptor).
    ///
    /// # Errors
    ///
    /// As [`Listener::bind_with`]; `InvalidInput` for an SDDL string that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit::os::windows::{CLIENT_ACCESS, ListenerExt, WindowsOptions, current_user_sid};
    /// use pipekit::{Listener, ListenerOptions};
    /// # let name = format!("doc-win-{}", std::process::id());
    ///
    /// let me = current_user_sid()?;
    /// let mut windows = WindowsOptions::new();
    /// // Every authenticated user may connect (and only connect), not only this one.
    /// windows.security(format!(
    ///     "D:P(A;;GA;;;SY)(A;;GA;;;{me})(A;;{CLIENT_ACCESS:#x};;;AU)"
    /// ));
    /// let listener = Listener::bind_windows(&name, &ListenerOptions::new(), &windows)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn bind_windows(
        name: impl IntoPipeName,
        options: &ListenerOptions,
        windows: &WindowsOptions,
    ) -> io::Result<Self>;
}

impl ListenerExt for Listener {
    fn bind_windows(
        name: impl IntoPipeName,
        options: &ListenerOptions,
        windows: &WindowsOptions,
    ) -> io::Result<Listener> {
        let name = name.into_pipe_name()?;
        if name.as_net().is_some() {
            return Listener::bind_with(name, options);
        }
        Ok(Listener::from_local(pipekit_windows::Listener::bind_with(
            &name, options, windows,
        )?))
    }
}

/// Windows-only operations on [`Stream`].
pub trait StreamExt: Sized {
    /// Hands a byte-mode stream to mio: a [`MioPipe`], which is a `mio::windows::NamedPipe`
    /// (through `Deref`) that keeps the stream's place under the listener's instance limit.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a message-mode stream (mio's pipe splits messages at its 4 KiB
    /// buffer): use [`Stream::into_nonblocking`].
    #[cfg(feature = "mio")]
    fn into_mio(self) -> io::Result<MioPipe>;

    /// Waits until the peer has read everything written so far (`FlushFileBuffers`). It
    /// waits as long as the peer does not read.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` if the peer is gone.
    fn flush_buffers(&self) -> io::Result<()>;
}

impl StreamExt for Stream {
    #[cfg(feature = "mio")]
    fn into_mio(self) -> io::Result<MioPipe> {
        self.into_local()?.into_mio()
    }

    fn flush_buffers(&self) -> io::Result<()> {
        self.local()?.flush_buffers()
    }
}

/// Adopts a named pipe handle made outside pipekit (inherited from a parent, opened by other
/// code) in the pipe's own type: a message-type pipe is message mode, a byte-type pipe byte
/// mode. The handle must have been opened for overlapped I/O (`FILE_FLAG_OVERLAPPED`), as
/// pipekit's own are. A handle that is not a named pipe is `InvalidInput`.
impl TryFrom<OwnedHandle> for Stream {
    type Error = io::Error;

    fn try_from(handle: OwnedHandle) -> io::Result<Stream> {
        Ok(Stream::from_local(pipekit_windows::Stream::from_handle(
            handle,
            crate::DEFAULT_MAX_MESSAGE_SIZE,
        )?))
    }
}

/// Gives up the pipe handle, for another owner. A stream that holds a message not yet
/// received (one that did not fit a `recv` buffer) is `InvalidData`: the message would be
/// lost with it.
impl TryFrom<Stream> for OwnedHandle {
    type Error = io::Error;

    fn try_from(stream: Stream) -> io::Result<OwnedHandle> {
        stream.into_local()?.into_handle()
    }
}

/// The pipe handle (for `tcp://` and `tls://` names, the TCP socket, which is a kernel
/// handle: reading or writing it directly would break the framing or the TLS session).
impl AsHandle for Stream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.windows_handle()
    }
}

impl AsRawHandle for Stream {
    fn as_raw_handle(&self) -> RawHandle {
        self.windows_handle().as_raw_handle()
    }
}
