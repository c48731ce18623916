//! One-way FIFO ends: an inbox that shells can write to, and its writer.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipekit_core::error::{context, context_kind, invalid_input};
use pipekit_core::{PipeName, UnixAddress};

use crate::dir;
use crate::listener::{RemoveOnError, lock};
use crate::sys::fifo::{self as sys, Access};

fn fifo_path(name: &PipeName) -> io::Result<(PathBuf, Option<PathBuf>)> {
    match name.resolve_unix(&dir::env())? {
        UnixAddress::Path { path, private_dir } => Ok((path, private_dir)),
        _ => Err(invalid_input(format!(
            "{name} is an abstract socket name; FIFOs need a filesystem path"
        ))),
    }
}

/// The reading end of a one-way FIFO: an inbox at the path a name resolves to.
///
/// Anything that can write a file can send to it, for example a shell:
///
/// ```text
/// printf 'hello\n' > "$XDG_RUNTIME_DIR/pipekit/inbox"
/// ```
///
/// The receiver holds its FIFO open for reading *and* writing, so writers come and go without
/// ending the stream: `read` waits for the next writer rather than returning end-of-file.
/// Bytes from different writers arrive in the order written; a single write of at most
/// `PIPE_BUF` bytes (4096 on Linux, 512 on macOS) is never mixed with another.
///
/// The FIFO is mode 0600 and is removed when the receiver drops.
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use pipekit_core::PipeName;
/// use pipekit_unix::fifo::{Receiver, Sender};
/// # let name = PipeName::new(&format!("doc-inbox-{}", std::process::id()))?;
///
/// let inbox = Receiver::bind(&name)?;
/// let mut sender = Sender::open(&name)?;
/// sender.write_all(b"hello\n")?;
/// let mut line = String::new();
/// BufReader::new(inbox).read_line(&mut line)?;
/// assert_eq!(line, "hello\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Receiver {
    fd: OwnedFd,
    path: PathBuf,
    identity: (u64, u64),
    read_timeout: Option<Duration>,
    _lock: (PathBuf, File),
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Makes the FIFO `name` resolves to (mode 0600) and opens it.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if another server or receiver has the name; `AlreadyExists` if a file that
    /// is not a stale FIFO of this user is at the path; `InvalidInput` for an abstract name.
    pub fn bind(name: &PipeName) -> io::Result<Receiver> {
        let (path, private_dir) = fifo_path(name)?;
        if let Some(dir) = &private_dir {
            dir::ensure_private_dir(dir)?;
        }
        let lock = lock(&path, name, None)?;
        let unlock = RemoveOnError::new(&lock.0);
        // We hold the name's lock: a FIFO already there is a dead receiver's.
        if let Ok(st) = sys::lstat(&path) {
            if !sys::is_fifo(&st) || st.st_uid != nix::unistd::geteuid().as_raw() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a stale FIFO; not replacing it",
                        path.display()
                    ),
                ));
            }
            fs::remove_file(&path)?;
        }
        sys::mkfifo(&path)
            .map_err(|e| context(e, format!("cannot make FIFO {}", path.display())))?;
        let (fd, _) = sys::open_fifo(&path, Access::ReadWrite)?;
        sys::set_nonblocking(fd.as_fd(), false)?;
        let meta = fs::symlink_metadata(&path)?;
        unlock.disarm();
        Ok(Receiver {
            fd,
            identity: (meta.dev(), meta.ino()),
            path,
            read_timeout: None,
            _lock: lock,
        })
    }

    /// The FIFO's path, for writers that are not pipekit.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes reads fail with `TimedOut` after `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid_input("a timeout of zero is not allowed"));
        }
        self.read_timeout = timeout;
        Ok(())
    }
}

impl Read for Receiver {
    /// Reads what writers have sent; waits for a writer if none has (never end-of-file).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(t) = self.read_timeout {
            sys::wait(self.fd.as_fd(), false, Some(Instant::now() + t))?;
        }
        sys::read(self.fd.as_fd(), buf)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let ours =
            fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
        let _ = fs::remove_file(&self._lock.0);
    }
}

impl AsFd for Receiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The writing end of a one-way FIFO, such as a [`Receiver`]'s inbox.
pub struct Sender {
    fd: OwnedFd,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// Opens the FIFO `name` resolves to for writing, without following a symlink.
    ///
    /// # Errors
    ///
    /// `NotConnected` ("no reader") if nobody has the FIFO open for reading (`ENXIO`);
    /// `NotFound` if there is no FIFO; `InvalidInput` if the path is not a FIFO.
    pub fn open(name: &PipeName) -> io::Result<Sender> {
        let (path, private_dir) = fifo_path(name)?;
        if let Some(dir) = &private_dir {
            dir::check_private_dir(dir)?;
        }
        Sender::open_path(&path)
    }

    /// Opens the FIFO at `path` for writing, as [`open`](Self::open).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_path(path: &Path) -> io::Result<Sender> {
        let (fd, _) = sys::open_fifo(path, Access::Write).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                context_kind(
                    io::ErrorKind::NotConnected,
                    e,
                    format!("no reader has {} open", path.display()),
                )
            } else {
                context(e, format!("cannot open FIFO {}", path.display()))
            }
        })?;
        sys::set_nonblocking(fd.as_fd(), false)?;
        Ok(Sender { fd })
    }
}

impl Write for Sender {
    /// Writes some of `buf`; `BrokenPipe` once the reader is gone (never `SIGPIPE`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.fd.as_fd(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Sender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
