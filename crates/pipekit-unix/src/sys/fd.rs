//! Calls on any descriptor, socket or FIFO: the `io::Error` conversion, `O_NONBLOCK`, and
//! waiting with a deadline.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollTimeout};

/// The `errno` an I/O error carries (`UnknownErrno` for errors that carry none).
pub(crate) fn errno(err: &io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(0))
}

/// Turns a nix result into an `io::Result`, keeping the OS code.
pub(crate) fn cvt<T>(result: nix::Result<T>) -> io::Result<T> {
    result.map_err(io::Error::from)
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(cvt(fcntl(fd, FcntlArg::F_GETFL))?);
    let flags = if nonblocking {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    cvt(fcntl(fd, FcntlArg::F_SETFL(flags))).map(drop)
}

/// Polls `fds` until one of them has an event (see their `revents`), retrying on `EINTR`;
/// `TimedOut` once `deadline` passes, `None` waits without limit.
pub(crate) fn poll_until(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<()> {
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the operation timed out",
                    ));
                }
                poll_timeout(left)
            }
        };
        match nix::poll::poll(fds, timeout) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Polls `fds` without waiting: whether one of them has an event (see their `revents`).
pub(crate) fn poll_now(fds: &mut [PollFd<'_>]) -> io::Result<bool> {
    loop {
        match nix::poll::poll(fds, PollTimeout::ZERO) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn poll_timeout(left: Duration) -> PollTimeout {
    let ms = left.as_millis().max(1);
    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
}
