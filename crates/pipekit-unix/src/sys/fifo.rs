//! FIFO system calls: opens that never follow symlinks and check the file type, waits with
//! deadlines, and writes that report `EPIPE` without raising `SIGPIPE`.

use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::stat::{self, FileStat, Mode, SFlag};

use super::fd::cvt;

/// `PIPE_BUF`: writes up to this size are atomic on a FIFO.
pub(crate) const PIPE_BUF: usize = libc::PIPE_BUF;

/// Makes a FIFO with mode 0600.
pub(crate) fn mkfifo(path: &Path) -> io::Result<()> {
    cvt(nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR))?;
    // mkfifo applies the umask; make the mode exact. The FIFO was just made inside a
    // directory only this user can write, so the path still names it.
    cvt(stat::fchmodat(
        fcntl::AT_FDCWD,
        path,
        Mode::S_IRUSR | Mode::S_IWUSR,
        stat::FchmodatFlags::FollowSymlink,
    ))
}

/// How a FIFO end is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
    /// Both: a reader that never sees end-of-file and never leaves writers without a reader.
    ReadWrite,
}

/// Opens the FIFO at `path` non-blocking, never following a symlink, and checks with `fstat`
/// that it is a FIFO. Returns the descriptor (still non-blocking) and its status.
pub(crate) fn open_fifo(path: &Path, access: Access) -> io::Result<(OwnedFd, FileStat)> {
    let mode = match access {
        Access::Read => OFlag::O_RDONLY,
        Access::Write => OFlag::O_WRONLY,
        Access::ReadWrite => OFlag::O_RDWR,
    };
    let flags = mode | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = cvt(fcntl::open(path, flags, Mode::empty()))?;
    let st = cvt(stat::fstat(&fd))?;
    if !is_fifo(&st) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a FIFO", path.display()),
        ));
    }
    Ok((fd, st))
}

/// The status of `path` itself (not a symlink's target).
pub(crate) fn lstat(path: &Path) -> io::Result<FileStat> {
    cvt(stat::lstat(path))
}

/// Whether `st` describes a FIFO.
pub(crate) fn is_fifo(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFIFO
}

pub(crate) use super::fd::{poll_until, set_nonblocking};
/// Sets or clears `O_NONBLOCK`.
pub(crate) use super::os::{enlarge_pipe, pipe_capacity};

/// Waits until `fd` is readable (or `writable`), or hung up, or `deadline` passes
/// (`TimedOut`). `None` waits without limit.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    writable: bool,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let events = if writable {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    poll_until(&mut [PollFd::new(fd, events)], deadline)
}

pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            other => return cvt(other),
        }
    }
}

/// Whether this process ignores `SIGPIPE` now (Rust programs do unless told otherwise).
fn sigpipe_ignored() -> bool {
    // SAFETY: all zeroes is a valid `sigaction` (a plain C struct).
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new action, sigaction only reads the current disposition into
    // `old`, a valid out-parameter.
    let read = unsafe { libc::sigaction(libc::SIGPIPE, ptr::null(), &mut old) };
    read == 0 && old.sa_sigaction == libc::SIG_IGN
}

/// Whether `SIGPIPE` is pending for this thread or the process.
fn sigpipe_pending() -> bool {
    // SAFETY: all zeroes is a valid `sigset_t` (a plain C type).
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-parameter for sigpending.
    if unsafe { libc::sigpending(&mut set) } != 0 {
        return false;
    }
    // SAFETY: `set` is an initialised signal set; sigismember only reads it.
    unsafe { libc::sigismember(&set, libc::SIGPIPE) == 1 }
}

/// Runs `write` so that it cannot kill the process with `SIGPIPE`, whatever the signal's
/// action is now. When `SIGPIPE` is ignored (Rust programs, unless told otherwise) the write
/// just runs. Otherwise it runs with `SIGPIPE` blocked on this thread, and a `SIGPIPE` that
/// the write raised is taken off the queue before the caller's mask comes back. That covers
/// a write that fails with `EPIPE` and one that moved part of its bytes before the reader
/// died (the kernel then raises the signal and returns the short count).
fn without_sigpipe(write: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
    if sigpipe_ignored() {
        return write();
    }
    let mut block = SigSet::empty();
    block.add(Signal::SIGPIPE);
    let old = cvt(block.thread_swap_mask(SigmaskHow::SIG_BLOCK))?;
    let was_pending = sigpipe_pending();
    let result = write();
    if !was_pending && sigpipe_pending() {
        // Pending and blocked: sigwait returns at once.
        let _ = block.wait();
    }
    if !old.contains(Signal::SIGPIPE) {
        let _ = old.thread_set_mask();
    }
    result
}

/// One `write`; `EPIPE` is a `BrokenPipe` error and no `SIGPIPE` reaches the process.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    reader_gone(without_sigpipe(|| {
        loop {
            match nix::unistd::write(fd, buf) {
                Err(Errno::EINTR) => continue,
                other => return cvt(other),
            }
        }
    }))
}

/// One `writev`, as [`write()`].
pub(crate) fn write_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    reader_gone(without_sigpipe(|| {
        loop {
            match nix::sys::uio::writev(fd, bufs) {
                Err(Errno::EINTR) => continue,
                other => return cvt(other),
            }
        }
    }))
}

/// `EPIPE` from a FIFO write: `BrokenPipe`, saying why (the OS code is kept).
fn reader_gone(result: io::Result<usize>) -> io::Result<usize> {
    result.map_err(|e| {
        if e.raw_os_error() == Some(libc::EPIPE) {
            pipekit_core::error::context_kind(
                io::ErrorKind::BrokenPipe,
                e,
                "the FIFO's reader is gone",
            )
        } else {
            e
        }
    })
}
