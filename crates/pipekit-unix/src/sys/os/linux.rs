//! Linux and Android: `SOCK_SEQPACKET` carries messages; `SO_PASSCRED` tells a zero-length
//! message (which arrives with credentials) from end of stream (which has none).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockFlag, SockType, sockopt};

use super::super::fd::cvt;
use pipekit_core::PeerCredentials;

/// Messages ride on `SOCK_SEQPACKET`.
pub(crate) const NATIVE_MESSAGES: bool = true;
/// Whether the abstract socket namespace exists.
pub(crate) const ABSTRACT_NAMESPACE: bool = true;
/// `sizeof(sockaddr_un.sun_path)`.
pub(crate) const SUN_PATH_LEN: usize = 108;
pub(crate) const SOCKET_FLAGS: SockFlag = SockFlag::SOCK_CLOEXEC;
pub(crate) const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
/// Flags of a receive that may take descriptors: close-on-exec at once where the OS can.
pub(crate) const RECV_CLOEXEC: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC;

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

/// What one `recvmsg` on a `SOCK_SEQPACKET` socket found (on the OSes that carry messages
/// on `SOCK_SEQPACKET`).
pub(crate) enum Packet {
    /// A message of this many bytes (`MSG_TRUNC`: the whole message's length).
    Message(usize),
    /// End of stream.
    Eof,
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

/// The address of the abstract name `name`.
pub(crate) fn abstract_addr(name: &[u8]) -> nix::Result<socket::UnixAddr> {
    socket::UnixAddr::new_abstract(name)
}

/// The abstract name `addr` is bound to, if it is one.
pub(crate) fn abstract_name(addr: &socket::UnixAddr) -> Option<&[u8]> {
    addr.as_abstract()
}

/// Whether Linux lists a listening Unix socket bound at `path` in `/proc/net/unix`. `false`
/// where the table does not name `path` (a server that bound another spelling of the path,
/// or lives in another network namespace): the caller then probes.
pub(crate) fn listed_as_listening(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    /// `__SO_ACCEPTCON` in the table's flags: the socket listens.
    const ACCEPTING: u32 = 1 << 16;
    let Ok(table) = std::fs::read("/proc/net/unix") else {
        return false;
    };
    let path = path.as_os_str().as_bytes();
    table.split(|&b| b == b'\n').skip(1).any(|line| {
        // "Num: RefCount Protocol Flags Type St Inode Path"
        let Some(head) = line
            .strip_suffix(path)
            .and_then(|head| head.strip_suffix(b" "))
        else {
            return false;
        };
        let mut fields = head.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let flags = fields.nth(3).and_then(|f| std::str::from_utf8(f).ok());
        // Exactly seven fields before the path: the path is the whole last field.
        fields.count() == 3
            && flags
                .and_then(|f| u32::from_str_radix(f, 16).ok())
                .is_some_and(|f| f & ACCEPTING != 0)
    })
}

/// Raises the capacity of the pipe behind `fd` towards 1 MiB (`F_SETPIPE_SZ`, capped by
/// `pipe-max-size`), halving the request while the kernel refuses it (the per-user pipe
/// limit); returns the capacity in effect.
pub(crate) fn enlarge_pipe(fd: BorrowedFd<'_>) -> Option<usize> {
    use nix::fcntl::{self, FcntlArg};
    /// The capacity asked for: 1 MiB, or `pipe-max-size` if lower.
    const WANTED_CAPACITY: usize = 1 << 20;
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(WANTED_CAPACITY);
    let mut want = WANTED_CAPACITY.min(max);
    let current = fcntl::fcntl(fd, FcntlArg::F_GETPIPE_SZ).ok()? as usize;
    while want > current {
        if let Ok(got) = fcntl::fcntl(fd, FcntlArg::F_SETPIPE_SZ(want as i32)) {
            return Some(got as usize);
        }
        want /= 2;
    }
    Some(current)
}

/// The capacity of the pipe behind `fd`.
pub(crate) fn pipe_capacity(fd: BorrowedFd<'_>) -> Option<usize> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .ok()
        .map(|n| n as usize)
}
