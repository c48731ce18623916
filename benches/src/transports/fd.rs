//! What a Unix descriptor's kernel buffers are, for the report.

use std::os::fd::BorrowedFd;

use nix::sys::socket::{self, sockopt};

/// The kernel buffer sizes of `fd`: a pipe's capacity, or a socket's send/receive buffers
/// (empty if neither can be read).
pub(crate) fn settings(fd: BorrowedFd<'_>) -> String {
    #[cfg(target_os = "linux")]
    if let Ok(n) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ) {
        return format!("pipe capacity {n}");
    }
    match (
        socket::getsockopt(&fd, sockopt::SndBuf),
        socket::getsockopt(&fd, sockopt::RcvBuf),
    ) {
        (Ok(snd), Ok(rcv)) => format!("SO_SNDBUF {snd}, SO_RCVBUF {rcv}"),
        _ => String::new(),
    }
}
