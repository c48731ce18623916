//! FreeBSD and the other BSDs: messages are framed on `SOCK_STREAM` (a zero-length
//! `SOCK_SEQPACKET` message cannot be told from end of stream without per-message credentials,
//! which these systems spell differently), `MSG_NOSIGNAL` and `SOCK_CLOEXEC` exist.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{self, MsgFlags, SockFlag, SockType};

use super::super::fd::cvt;
use pipekit_core::PeerCredentials;

/// Messages are framed on `SOCK_STREAM`.
pub(crate) const NATIVE_MESSAGES: bool = false;
/// Whether the abstract socket namespace exists.
pub(crate) const ABSTRACT_NAMESPACE: bool = false;
/// `sizeof(sockaddr_un.sun_path)`.
pub(crate) const SUN_PATH_LEN: usize = 104;
pub(crate) const SOCKET_FLAGS: SockFlag = SockFlag::SOCK_CLOEXEC;
pub(crate) const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
/// Flags of a receive that may take descriptors: close-on-exec at once where the OS can.
pub(crate) const RECV_CLOEXEC: MsgFlags = MsgFlags::empty();

pub(crate) fn after_socket(_fd: &OwnedFd, _ty: SockType) -> io::Result<()> {
    Ok(())
}

pub(crate) fn after_accept(_fd: &OwnedFd, _ty: SockType) -> io::Result<()> {
    Ok(())
}

pub(crate) fn accept(listener: RawFd) -> nix::Result<RawFd> {
    socket::accept4(listener, SockFlag::SOCK_CLOEXEC)
}

pub(crate) use super::not_linux::{
    abstract_addr, abstract_name, enlarge_pipe, listed_as_listening, pipe_capacity,
};

pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
    let (uid, gid) = cvt(nix::unistd::getpeereid(fd))?;
    Ok(PeerCredentials::new(
        None,
        Some(uid.as_raw()),
        Some(gid.as_raw()),
    ))
}
