//! Linux and Android: `SOCK_SEQPACKET` carries messages; `SO_PASSCRED` tells a zero-length
//! message (which arrives with credentials) from end of stream (which has none).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockFlag, SockType, sockopt};

use super::super::{Packet, cvt};
use pipekit_core::PeerCredentials;

/// Messages ride on `SOCK_SEQPACKET`.
pub(crate) const NATIVE_MESSAGES: bool = true;
/// Whether the abstract socket namespace exists.
pub(crate) const ABSTRACT_NAMESPACE: bool = true;
/// `sizeof(sockaddr_un.sun_path)`.
pub(crate) const SUN_PATH_LEN: usize = 108;
pub(crate) const SOCKET_FLAGS: SockFlag = SockFlag::SOCK_CLOEXEC;
pub(crate) const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;

pub(crate) fn after_socket(fd: &OwnedFd, ty: SockType) -> io::Result<()> {
    if ty == SockType::SeqPacket {
        // Accepted sockets inherit this from the listener.
        cvt(socket::setsockopt(fd, sockopt::PassCred, &true))?;
    }
    Ok(())
}

pub(crate) fn after_accept(fd: &OwnedFd, ty: SockType) -> io::Result<()> {
    after_socket(fd, ty)
}

pub(crate) fn accept(listener: RawFd) -> nix::Result<RawFd> {
    socket::accept4(listener, SockFlag::SOCK_CLOEXEC)
}

pub(crate) fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    peek: bool,
    cmsg: &mut Vec<u8>,
) -> io::Result<Packet> {
    if cmsg.capacity() == 0 {
        // Room for the credentials and for as many descriptors as one message can carry
        // (SCM_MAX_FD), so a peer that sends descriptors never truncates the control data.
        *cmsg = nix::cmsg_space!(socket::UnixCredentials, [RawFd; SCM_MAX_FD]);
    }
    let mut flags = MsgFlags::MSG_TRUNC | MsgFlags::MSG_CMSG_CLOEXEC;
    if peek {
        flags |= MsgFlags::MSG_PEEK;
    }
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match socket::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(cmsg), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break cvt(other)?,
        }
    };
    // Descriptors a peer sent (SCM_RIGHTS, installed again by every peek) are closed: pipekit
    // carries bytes only. End of stream never carries control data, so a message whose
    // control data was cut anyway is still a message.
    let mut credentials = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(_) => credentials = true,
                ControlMessageOwned::ScmRights(fds) => close_received(&fds),
                _ => credentials = true,
            }
        }
    }
    if msg.bytes > 0 {
        return Ok(Packet::Message(msg.bytes));
    }
    Ok(if credentials {
        Packet::Message(0)
    } else {
        Packet::Eof
    })
}

/// `SCM_MAX_FD`: the most descriptors one message carries.
const SCM_MAX_FD: usize = 253;

/// Closes descriptors that arrived in an `SCM_RIGHTS` message.
fn close_received(fds: &[RawFd]) {
    for &raw in fds {
        // SAFETY: the kernel installed `raw` in this process for this `recvmsg` alone and
        // nothing else knows it, so this `OwnedFd` is its only owner and closes it once.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
}

pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
    let cred = cvt(socket::getsockopt(&fd, sockopt::PeerCredentials))?;
    let pid = u32::try_from(cred.pid()).ok().filter(|&p| p != 0);
    Ok(PeerCredentials::new(
        pid,
        Some(cred.uid()),
        Some(cred.gid()),
    ))
}
