//! What Linux has and the other Unix OSes (Apple's, the BSDs) do not, as they answer for it:
//! no abstract names, no `/proc/net/unix`, no pipe-capacity control. (No `SOCK_SEQPACKET`
//! messages either: pipekit frames them on `SOCK_STREAM` there, and the message-socket code
//! is not built.)

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::UnixAddr;

/// No abstract namespace: `EAFNOSUPPORT`.
pub(crate) fn abstract_addr(_name: &[u8]) -> nix::Result<UnixAddr> {
    Err(Errno::EAFNOSUPPORT)
}

/// No abstract namespace: no address is abstract.
pub(crate) fn abstract_name(_addr: &UnixAddr) -> Option<&[u8]> {
    None
}

/// No table of sockets to read: the caller probes instead.
pub(crate) fn listed_as_listening(_path: &Path) -> bool {
    false
}

/// No pipe-capacity control: `None`, nothing changed.
pub(crate) fn enlarge_pipe(_fd: BorrowedFd<'_>) -> Option<usize> {
    None
}

/// No pipe-capacity query: `None`.
pub(crate) fn pipe_capacity(_fd: BorrowedFd<'_>) -> Option<usize> {
    None
}
