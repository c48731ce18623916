//! The system calls the Unix backend makes, each turned into an `io::Result`, and the only
//! place in the crate with `unsafe` code.
//!
//! Most calls go through `nix`. Three do not have a safe form there, and are raw under a
//! `SAFETY` note: taking ownership of the descriptor `accept` returns (here, and in
//! `os/linux.rs` for a descriptor passed in a control message that is closed at once),
//! reading the `SIGPIPE` disposition and pending set around a FIFO write (`fifo.rs`), and
//! Apple's `SO_NOSIGPIPE` (`os/apple.rs`). Sockets are created close-on-exec and, where the OS
//! has no `MSG_NOSIGNAL`, with `SO_NOSIGPIPE`, so a dead peer is an `EPIPE` error and never a
//! `SIGPIPE`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockType, SockaddrLike, UnixAddr, sockopt};
use nix::sys::time::TimeVal;

mod fd;
pub(crate) mod fifo;
mod os;
pub(crate) mod shm;

pub(crate) use fd::{cvt, errno, poll_now, poll_until, set_nonblocking};

// `after_accept`: per-OS set-up of an accepted socket. `peer_credentials`: who is on the other
// end. `recv_packet`: receives (or with `peek`, looks at) the next `SOCK_SEQPACKET` message,
// reporting its full length even when the buffer is shorter. `abstract_addr`/`abstract_name`:
// the abstract namespace (Linux). `listed_as_listening`: `/proc/net/unix` (Linux).
pub(crate) use os::{
    ABSTRACT_NAMESPACE, NATIVE_MESSAGES, SUN_PATH_LEN, abstract_addr, abstract_name, after_accept,
    listed_as_listening, peer_credentials,
};
#[cfg(linux_android)]
pub(crate) use os::{Packet, recv_packet};

/// The socket type that carries `Messages` natively, or stream.
pub(crate) fn sock_type(seqpacket: bool) -> SockType {
    if seqpacket {
        SockType::SeqPacket
    } else {
        SockType::Stream
    }
}

/// A new `AF_UNIX` socket, close-on-exec, with `SIGPIPE` suppressed where that is a socket
/// option, and with credentials passed on each message for `SOCK_SEQPACKET` where the OS
/// needs that to tell a zero-length message from end of stream.
pub(crate) fn socket(ty: SockType) -> io::Result<OwnedFd> {
    let fd = cvt(socket::socket(
        socket::AddressFamily::Unix,
        ty,
        os::SOCKET_FLAGS,
        None,
    ))?;
    os::after_socket(&fd, ty)?;
    Ok(fd)
}

pub(crate) fn bind(fd: &OwnedFd, addr: &UnixAddr) -> io::Result<()> {
    cvt(socket::bind(fd.as_raw_fd(), addr))
}

/// What an adopted descriptor is, once it is known to be an `AF_UNIX` socket.
pub(crate) struct Adopted {
    pub(crate) ty: SockType,
    pub(crate) listening: bool,
    /// The address it is bound to (a listener's name).
    pub(crate) addr: UnixAddr,
}

/// Checks that `fd`, made outside pipekit, is an `AF_UNIX` stream or seqpacket socket, and
/// sets it up as pipekit's own sockets are (close-on-exec, blocking, `SIGPIPE` suppressed,
/// credentials passed where needed).
///
/// # Errors
///
/// `InvalidInput` saying what `fd` is instead; the OS error of a set-up call.
pub(crate) fn adopt(fd: &OwnedFd) -> io::Result<Adopted> {
    let not_unix = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "descriptor {} is not a Unix-domain socket: {why}",
                fd.as_raw_fd()
            ),
        )
    };
    let addr = match socket::getsockname::<socket::SockaddrStorage>(fd.as_raw_fd()) {
        Ok(addr) => addr,
        Err(Errno::ENOTSOCK) => return Err(not_unix("not a socket")),
        Err(e) => return Err(e.into()),
    };
    let Some(addr) = addr.as_unix_addr().copied() else {
        return Err(not_unix(&format!("its family is {:?}", addr.family())));
    };
    let ty = cvt(socket::getsockopt(fd, sockopt::SockType))?;
    if ty != SockType::Stream && ty != SockType::SeqPacket {
        return Err(not_unix(&format!(
            "its type is {ty:?}, not stream or seqpacket"
        )));
    }
    let listening = cvt(socket::getsockopt(fd, sockopt::AcceptConn))?;
    fd_cloexec(fd.as_fd())?;
    set_nonblocking(fd.as_fd(), false)?;
    os::after_socket(fd, ty)?;
    Ok(Adopted {
        ty,
        listening,
        addr,
    })
}

/// Sets close-on-exec on `fd`.
pub(crate) fn fd_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = cvt(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD))?;
    let cloexec = nix::fcntl::FdFlag::from_bits_retain(flags) | nix::fcntl::FdFlag::FD_CLOEXEC;
    cvt(nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(cloexec),
    ))
    .map(drop)
}

pub(crate) fn listen(fd: &OwnedFd) -> io::Result<()> {
    cvt(socket::listen(fd, socket::Backlog::MAXCONN))
}

/// Connects `fd` to `addr` without ever sleeping in the kernel past `deadline`: the connect
/// is made non-blocking, so a full backlog is `EAGAIN` at once (Linux) and a connect in
/// progress is waited for with `poll` until `deadline` (`None`: no limit). The socket is
/// blocking again afterwards.
pub(crate) fn connect(
    fd: &OwnedFd,
    addr: &UnixAddr,
    deadline: Option<std::time::Instant>,
) -> io::Result<()> {
    set_nonblocking(fd.as_fd(), true)?;
    let result = loop {
        match socket::connect(fd.as_raw_fd(), addr) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EINPROGRESS) => break connect_finish(fd, deadline),
            other => break cvt(other),
        }
    };
    set_nonblocking(fd.as_fd(), false)?;
    result
}

/// Waits for a non-blocking connect in progress to end, then reports its outcome
/// (`SO_ERROR`); `TimedOut` once `deadline` passes.
fn connect_finish(fd: &OwnedFd, deadline: Option<std::time::Instant>) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags};
    poll_until(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)], deadline)?;
    match cvt(socket::getsockopt(fd, sockopt::SocketError))? {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

pub(crate) fn accept(listener: &OwnedFd) -> io::Result<OwnedFd> {
    loop {
        match os::accept(listener.as_raw_fd()) {
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
            Err(e) => return Err(e.into()),
            // SAFETY: a successful `accept` returned this descriptor: it is open, and
            // nothing else owns it, so the `OwnedFd` becomes its only owner.
            Ok(raw) => return Ok(unsafe { OwnedFd::from_raw_fd(raw) }),
        }
    }
}

/// Sends from `bufs` without raising `SIGPIPE`.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    cvt(socket::sendmsg::<()>(
        fd.as_raw_fd(),
        bufs,
        &[],
        os::SEND_FLAGS,
        None,
    ))
}

pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    cvt(socket::send(fd.as_raw_fd(), buf, os::SEND_FLAGS))
}

pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    cvt(socket::recv(fd.as_raw_fd(), buf, MsgFlags::empty()))
}

pub(crate) fn recv_vectored(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    cvt(nix::sys::uio::readv(fd, bufs))
}

pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    cvt(socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Write))
}

fn timeval(timeout: Option<Duration>) -> io::Result<TimeVal> {
    match timeout {
        None => Ok(TimeVal::new(0, 0)),
        Some(t) if t.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero timeout is not allowed (use None to wait forever)",
        )),
        Some(t) => {
            // A timeout that rounds to zero microseconds would mean "forever".
            let t = t.max(Duration::from_micros(1));
            let secs = t.as_secs().min(i32::MAX as u64);
            Ok(TimeVal::new(secs as _, t.subsec_micros() as _))
        }
    }
}

pub(crate) fn set_read_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    cvt(socket::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &timeval(timeout)?,
    ))
}

pub(crate) fn set_write_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    cvt(socket::setsockopt(
        &fd,
        sockopt::SendTimeout,
        &timeval(timeout)?,
    ))
}

/// The send buffer to ask for: `out_buffer`, and on a message socket room for one whole
/// message of `max_message` bytes (a `SOCK_SEQPACKET` send fails with `EMSGSIZE` otherwise).
pub(crate) fn send_buffer_for(out_buffer: usize, seqpacket: bool, max_message: usize) -> usize {
    if seqpacket {
        out_buffer.max(max_message.saturating_add(64))
    } else {
        out_buffer
    }
}

/// Raises the socket's send and receive buffers to at least the given sizes; never lowers
/// them. A refusal by the OS is not an error: the buffers stay as they were.
pub(crate) fn raise_buffers(fd: BorrowedFd<'_>, send: usize, recv: usize) {
    if cvt(socket::getsockopt(&fd, sockopt::SndBuf)).is_ok_and(|cur| cur < send) {
        let _ = socket::setsockopt(&fd, sockopt::SndBuf, &send);
    }
    if cvt(socket::getsockopt(&fd, sockopt::RcvBuf)).is_ok_and(|cur| cur < recv) {
        let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &recv);
    }
}

/// Opens the directory `dir` without following a symlink (`O_DIRECTORY | O_NOFOLLOW`: a
/// symlink or a non-directory fails to open) and returns its owner and mode, from `fstat`
/// on the opened descriptor.
pub(crate) fn open_dir_nofollow(dir: &std::path::Path) -> io::Result<(u32, u32)> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::{Mode, fstat};
    let fd = cvt(open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ))?;
    let st = cvt(fstat(&fd))?;
    Ok((st.st_uid, st.st_mode as u32))
}
