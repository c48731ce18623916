//! One connection over a pair of FIFOs.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use pipekit_core::error::{context, context_kind, invalid_data, invalid_input, wrong_mode};
use pipekit_core::framing::{FrameReader, FrameWriter};
use pipekit_core::slots::Slot;
use pipekit_core::{ConnectOptions, Mode, PeerCredentials};

use super::{HANDSHAKE_TIMEOUT, REQUESTS, new_token, pair_names, record};
use crate::sys::fifo::{self as sys, Access, PIPE_BUF};

/// One connection over two FIFOs: one this end reads, one it writes.
///
/// Made by [`FifoListener::accept`](super::FifoListener::accept) or by connecting to a FIFO
/// server directory; applications normally get it inside [`crate::Stream`]. Byte mode is
/// `Read + Write`; message mode uses [`send`](Self::send) / [`recv`](Self::recv) over framed
/// FIFOs. Every method takes `&self`: one thread can read while another writes, and
/// [`try_clone`](Self::try_clone) hands out another handle on the same state.
pub struct FifoStream {
    shared: Arc<Shared>,
    /// Which of the two FIFOs this handle registered with a `mio` registry.
    #[cfg(feature = "mio")]
    registered: (bool, bool),
    pub(crate) slot: Option<Slot>,
}

/// The connection, shared by its handles.
struct Shared {
    read: OwnedFd,
    /// `None` once the write side is shut down. Writes hold it for reading, so that
    /// `shutdown_write` never closes the FIFO under a write in progress.
    write: RwLock<Option<OwnedFd>>,
    mode: Mode,
    /// Message mode: the frame reader and writer, each behind its own lock (a message is
    /// read, or written, by one caller at a time).
    framing: Option<(Mutex<FrameReader>, Mutex<FrameWriter>)>,
    max_message_size: usize,
    /// Nanoseconds; 0 is none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    nonblocking: AtomicBool,
    peer_uid: u32,
}

impl fmt::Debug for FifoStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoStream")
            .field("read", &self.shared.read.as_raw_fd())
            .field("mode", &self.shared.mode)
            .field("max_message_size", &self.shared.max_message_size)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, also after a panic elsewhere (the framing state stays consistent: a
/// failed call leaves it as the next call expects).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the FIFOs at the paths it holds when dropped (a handshake that did not finish).
pub(crate) struct Unlink(pub(crate) Vec<PathBuf>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl FifoStream {
    /// Connects to the FIFO server whose directory is `dir` (see the protocol in
    /// [`crate::fifo`]).
    pub(crate) fn connect_dir(
        dir: &Path,
        what: &str,
        options: &ConnectOptions,
    ) -> io::Result<FifoStream> {
        let token = new_token()?;
        let (c2s_name, s2c_name) = pair_names(&token);
        let (c2s, s2c) = (dir.join(c2s_name), dir.join(s2c_name));
        let mut made = Unlink(Vec::new());
        for path in [&c2s, &s2c] {
            sys::mkfifo(path)
                .map_err(|e| context(e, format!("cannot make FIFO {}", path.display())))?;
            made.0.push(path.clone());
        }
        let (s2c_fd, _) = sys::open_fifo(&s2c, Access::Read)?;
        let requests = dir.join(REQUESTS);
        let (req, _) = sys::open_fifo(&requests, Access::Write).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) || e.kind() == io::ErrorKind::NotFound {
                context_kind(
                    io::ErrorKind::NotFound,
                    e,
                    format!("no server is listening on {what} (stale FIFO directory)"),
                )
            } else {
                context(e, format!("cannot open {}", requests.display()))
            }
        })?;
        // A live server (its request FIFO has a reader) that is full.
        if sys::lstat(&dir.join(super::BUSY)).is_ok() {
            return Err(crate::busy::busy(dir, what));
        }
        let rec = record(options.mode, &token);
        let n = sys::write(req.as_fd(), &rec)
            .map_err(|e| context(e, format!("cannot write to {}", requests.display())))?;
        if n != rec.len() {
            return Err(io::Error::other(format!(
                "short write of the request record to {}",
                requests.display()
            )));
        }
        drop(req);

        let deadline = Instant::now() + HANDSHAKE_TIMEOUT.max(options.wait.unwrap_or_default());
        sys::wait(s2c_fd.as_fd(), false, Some(deadline)).map_err(|e| {
            context(
                e,
                format!("the server of {what} did not answer the handshake"),
            )
        })?;
        let mut answer = [0u8; 1];
        match sys::read(s2c_fd.as_fd(), &mut answer)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the server of {what} refused the connection"),
                ));
            }
            _ if answer[0] == b'K' => {}
            _ if answer[0] == b'M' => {
                return Err(invalid_input(format!(
                    "the server of {what} does not use {} mode",
                    options.mode
                )));
            }
            _ => return Err(invalid_data(format!("bad handshake answer from {what}"))),
        }
        let (c2s_fd, _) = sys::open_fifo(&c2s, Access::Write)
            .map_err(|e| context(e, format!("cannot open {}", c2s.display())))?;
        sys::write(c2s_fd.as_fd(), b"K")?;
        drop(made);
        let uid = nix::unistd::geteuid().as_raw();
        FifoStream::new(s2c_fd, c2s_fd, options.mode, options.max_message_size, uid)
    }

    /// A connection over `read` and `write`, both FIFO ends whose handshake is done.
    pub(crate) fn new(
        read: OwnedFd,
        write: OwnedFd,
        mode: Mode,
        max_message_size: usize,
        peer_uid: u32,
    ) -> io::Result<FifoStream> {
        sys::set_nonblocking(read.as_fd(), false)?;
        sys::set_nonblocking(write.as_fd(), false)?;
        // A pipe left at its 64 KiB default makes writer and reader ping-pong on every
        // 65535-byte write; a larger one lets them overlap.
        sys::enlarge_pipe(read.as_fd());
        sys::enlarge_pipe(write.as_fd());
        Ok(FifoStream {
            shared: Arc::new(Shared {
                read,
                write: RwLock::new(Some(write)),
                mode,
                framing: (mode == Mode::Messages).then(|| {
                    (
                        Mutex::new(FrameReader::new(max_message_size)),
                        Mutex::new(FrameWriter::new(max_message_size)),
                    )
                }),
                max_message_size,
                read_timeout: AtomicU64::new(0),
                write_timeout: AtomicU64::new(0),
                nonblocking: AtomicBool::new(false),
                peer_uid,
            }),
            #[cfg(feature = "mio")]
            registered: (false, false),
            slot: None,
        })
    }

    /// The connection's mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// The largest message this end sends or receives.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    /// The capacity of the FIFO this end reads, where the OS reports it (Linux): pipekit
    /// raises it towards 1 MiB (`F_SETPIPE_SZ`, up to `/proc/sys/fs/pipe-max-size`), keeping
    /// whatever the kernel allows.
    pub fn pipe_capacity(&self) -> Option<usize> {
        sys::pipe_capacity(self.shared.read.as_fd())
    }

    fn nonblocking(&self) -> bool {
        self.shared.nonblocking.load(Ordering::Relaxed)
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            fd: self.shared.read.as_fd(),
            timeout: timeout(&self.shared.read_timeout, self.nonblocking()),
        }
    }

    /// The write FIFO (`None` after `shutdown_write`), held so that it is not closed under
    /// the caller.
    fn write_fd(&self) -> RwLockReadGuard<'_, Option<OwnedFd>> {
        self.shared.write.read().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> Writer<'_> {
        Writer {
            fd: self.write_fd(),
            timeout: timeout(&self.shared.write_timeout, self.nonblocking()),
        }
    }

    /// Sends `msg` as one message (a frame).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        match &self.shared.framing {
            Some((_, frames)) => lock(frames).send(&mut self.writer(), msg),
            None => Err(wrong_mode("send", self.shared.mode)),
        }
    }

    /// Receives one message into `buf`.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`].
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match &self.shared.framing {
            Some((frames, _)) => lock(frames).recv(&mut self.reader(), buf),
            None => Err(wrong_mode("recv", self.shared.mode)),
        }
    }

    /// Receives one whole message into `buf`, cleared first and grown to fit.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv_to_vec`].
    pub fn recv_to_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        match &self.shared.framing {
            Some((frames, _)) => lock(frames).recv_to_vec(&mut self.reader(), buf),
            None => Err(wrong_mode("recv_to_vec", self.shared.mode)),
        }
    }

    /// Byte mode: reads what has arrived. Message mode: receives one message.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shared.mode == Mode::Messages {
            return Ok(self.recv(buf)?.unwrap_or(0));
        }
        self.reader().read(buf)
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if self.shared.mode == Mode::Messages {
            let first = bufs.iter_mut().find(|b| !b.is_empty());
            return first.map_or(Ok(0), |b| self.read(b));
        }
        self.reader().read_vectored(bufs)
    }

    /// Byte mode: writes some of `buf`. Message mode: sends `buf` as one message.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if self.shared.mode == Mode::Messages {
            return self.send(buf).map(|()| buf.len());
        }
        self.writer().write(buf)
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.shared.mode == Mode::Messages {
            let first = bufs.iter().find(|b| !b.is_empty());
            return first.map_or(Ok(0), |b| self.write(b));
        }
        self.writer().write_vectored(bufs)
    }

    /// Message mode in non-blocking mode: writes the kept tail of a message the FIFO took
    /// only in part. Otherwise nothing to do.
    pub(crate) fn flush(&self) -> io::Result<()> {
        match &self.shared.framing {
            Some((_, frames)) => lock(frames).flush(&mut self.writer()),
            None => Ok(()),
        }
    }

    /// Another handle on this connection: the same FIFOs, framing state, timeouts and
    /// non-blocking mode (no descriptor is duplicated, so `shutdown_write` on either handle
    /// ends the stream for the peer). The place under a listener's instance limit is given
    /// back when every handle is dropped.
    pub fn try_clone(&self) -> FifoStream {
        FifoStream {
            shared: Arc::clone(&self.shared),
            #[cfg(feature = "mio")]
            registered: (false, false),
            slot: self.slot.as_ref().map(Slot::share),
        }
    }

    /// The write FIFO's descriptor, until the write side is shut down.
    pub fn raw_write_fd(&self) -> Option<std::os::fd::RawFd> {
        self.write_fd().as_ref().map(|fd| fd.as_raw_fd())
    }

    /// Closes the FIFO this end writes: the peer reads EOF after everything sent before. A
    /// write in progress on another thread finishes first.
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches the socket transport.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.shared
            .write
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(())
    }

    /// The peer's user (the owner of the FIFOs it made, which the server checked is this
    /// user); FIFOs carry no process id.
    ///
    /// # Errors
    ///
    /// None in practice.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        Ok(PeerCredentials::new(None, Some(self.shared.peer_uid), None))
    }

    /// Makes reads fail with `TimedOut` after `timeout` (`poll` before each read).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        store_timeout(&self.shared.read_timeout, timeout)
    }

    /// Makes writes fail with `TimedOut` after `timeout`. With a write timeout, each
    /// `write(2)` moves at most `PIPE_BUF` bytes, so none blocks past the deadline.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        store_timeout(&self.shared.write_timeout, timeout)
    }

    /// Puts both FIFOs in non-blocking mode (`WouldBlock` instead of waiting).
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        sys::set_nonblocking(self.shared.read.as_fd(), nonblocking)?;
        if let Some(fd) = &*self.write_fd() {
            sys::set_nonblocking(fd.as_fd(), nonblocking)?;
        }
        self.shared
            .nonblocking
            .store(nonblocking, Ordering::Relaxed);
        Ok(())
    }
}

fn store_timeout(slot: &AtomicU64, timeout: Option<Duration>) -> io::Result<()> {
    let nanos = match timeout {
        None => 0,
        Some(d) if d.is_zero() => return Err(invalid_input("a timeout of zero is not allowed")),
        Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
    };
    slot.store(nanos, Ordering::Relaxed);
    Ok(())
}

fn timeout(slot: &AtomicU64, nonblocking: bool) -> Option<Duration> {
    match slot.load(Ordering::Relaxed) {
        0 => None,
        _ if nonblocking => None,
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

/// The read FIFO, with the read timeout.
struct Reader<'a> {
    fd: BorrowedFd<'a>,
    timeout: Option<Duration>,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(t) = self.timeout {
            sys::wait(self.fd, false, Some(Instant::now() + t))?;
        }
        sys::read(self.fd, buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if let Some(t) = self.timeout {
            sys::wait(self.fd, false, Some(Instant::now() + t))?;
        }
        crate::sys::recv_vectored(self.fd, bufs)
    }
}

/// The write FIFO (`None` after `shutdown_write`), with the write timeout.
struct Writer<'a> {
    fd: RwLockReadGuard<'a, Option<OwnedFd>>,
    timeout: Option<Duration>,
}

impl Writer<'_> {
    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the write side of this FIFO connection was shut down",
            )
        })
    }
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.fd()?;
        let buf = match self.timeout {
            Some(t) => {
                sys::wait(fd, true, Some(Instant::now() + t))?;
                &buf[..buf.len().min(PIPE_BUF)]
            }
            None => buf,
        };
        sys::write(fd, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.timeout.is_some() {
            let first = bufs.iter().find(|b| !b.is_empty());
            return first.map_or(Ok(0), |b| self.write(b));
        }
        sys::write_vectored(self.fd()?, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for FifoStream {
    /// The FIFO this end reads.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.read.as_fd()
    }
}

/// Both FIFOs under one token: the read FIFO for readable interest, the write FIFO for
/// writable interest.
#[cfg(feature = "mio")]
impl mio::event::Source for FifoStream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.registered = (false, false);
        self.reregister(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        use mio::unix::SourceFd;
        let read = self.shared.read.as_raw_fd();
        let write = self.raw_write_fd();
        let (read_on, write_on) = self.registered;
        match (interests.is_readable(), read_on) {
            (true, true) => SourceFd(&read).reregister(registry, token, mio::Interest::READABLE)?,
            (true, false) => SourceFd(&read).register(registry, token, mio::Interest::READABLE)?,
            (false, true) => SourceFd(&read).deregister(registry)?,
            (false, false) => {}
        }
        self.registered.0 = interests.is_readable();
        let Some(write) = write else {
            // Shut down: closing the FIFO took it out of the registry.
            self.registered.1 = false;
            return Ok(());
        };
        match (interests.is_writable(), write_on) {
            (true, true) => {
                SourceFd(&write).reregister(registry, token, mio::Interest::WRITABLE)?;
            }
            (true, false) => SourceFd(&write).register(registry, token, mio::Interest::WRITABLE)?,
            (false, true) => SourceFd(&write).deregister(registry)?,
            (false, false) => {}
        }
        self.registered.1 = interests.is_writable();
        Ok(())
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        use mio::unix::SourceFd;
        if self.registered.0 {
            SourceFd(&self.shared.read.as_raw_fd()).deregister(registry)?;
        }
        if self.registered.1
            && let Some(fd) = self.raw_write_fd()
        {
            SourceFd(&fd).deregister(registry)?;
        }
        self.registered = (false, false);
        Ok(())
    }
}
