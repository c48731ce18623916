//! macOS and Apple's other systems: no `SOCK_SEQPACKET` for `AF_UNIX`, so messages are framed
//! on `SOCK_STREAM`; no `SOCK_CLOEXEC` or `MSG_NOSIGNAL`, so both are socket options.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{self, MsgFlags, SockFlag, SockType, sockopt};

use super::super::fd::cvt;
use pipekit_core::PeerCredentials;

/// Messages are framed on `SOCK_STREAM`.
pub(crate) const NATIVE_MESSAGES: bool = false;
/// Whether the abstract socket namespace exists.
pub(crate) const ABSTRACT_NAMESPACE: bool = false;
/// `sizeof(sockaddr_un.sun_path)`.
pub(crate) const SUN_PATH_LEN: usize = 104;
pub(crate) const SOCKET_FLAGS: SockFlag = SockFlag::empty();
pub(crate) const SEND_FLAGS: MsgFlags = MsgFlags::empty();
/// Flags of a receive that may take descriptors: close-on-exec at once where the OS can.
pub(crate) const RECV_CLOEXEC: MsgFlags = MsgFlags::empty();

pub(crate) fn after_socket(fd: &OwnedFd, _ty: SockType) -> io::Result<()> {
    cvt(fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)))?;
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket for the duration of the call, and the option value
    // points to a live `c_int` whose size is the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NOSIGPIPE,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn after_accept(fd: &OwnedFd, ty: SockType) -> io::Result<()> {
    after_socket(fd, ty)
}

pub(crate) fn accept(listener: RawFd) -> nix::Result<RawFd> {
    socket::accept(listener)
}

pub(crate) use super::not_linux::{
    abstract_addr, abstract_name, enlarge_pipe, listed_as_listening, pipe_capacity,
};

pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
    let (uid, gid) = cvt(nix::unistd::getpeereid(fd))?;
    let pid = socket::getsockopt(&fd, sockopt::LocalPeerPid)
        .ok()
        .and_then(|p| u32::try_from(p).ok());
    Ok(PeerCredentials::new(
        pid,
        Some(uid.as_raw()),
        Some(gid.as_raw()),
    ))
}
