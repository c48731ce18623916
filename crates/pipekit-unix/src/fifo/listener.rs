//! A FIFO server: a private directory with a request FIFO.

use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use pipekit_core::error::{context, invalid_data, invalid_input};
use pipekit_core::slots::Slots;
use pipekit_core::{ListenerOptions, Mode, PipeName, UnixAddress};

use super::stream::Unlink;
use super::{FifoStream, REQUESTS, pair_names, parse_record};
use crate::listener::{RemoveOnError, lock};
use crate::sys::fifo::{self as sys, Access};
use crate::{PeerPolicy, UnixOptions, dir};

/// A server bound to a name over FIFOs; every [`accept`](Self::accept) returns the next
/// client that completed the handshake (see the protocol in [`crate::fifo`]).
pub struct FifoListener {
    name: PipeName,
    dir: PathBuf,
    identity: (u64, u64),
    requests: OwnedFd,
    /// Requests read and handshakes under way.
    state: Mutex<AcceptState>,
    handshake_timeout: Duration,
    mode: Mode,
    max_message_size: usize,
    peer_policy: PeerPolicy,
    /// Clients refused by the peer policy.
    refused: AtomicU64,
    slots: Option<Arc<Slots>>,
    nonblocking: AtomicBool,
    lock: (PathBuf, File),
    /// Set once the directory and lock file are removed (by `remove_files` or drop).
    removed: AtomicBool,
}

impl fmt::Debug for FifoListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoListener")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl FifoListener {
    /// Binds `name`: makes its directory (0700) and request FIFO (0600).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if a live server (of either transport) has the name; `AlreadyExists` if
    /// something other than a stale server's socket or FIFO directory is at the path;
    /// `InvalidInput` for an abstract name (FIFOs live in the filesystem) or bad options.
    pub fn bind(
        name: &PipeName,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<FifoListener> {
        options.validate()?;
        if unix.handshake_timeout.is_zero() {
            return Err(invalid_input(
                "a zero FIFO handshake timeout is not allowed",
            ));
        }
        let (path, private_dir) = match name.resolve_unix(&dir::env())? {
            UnixAddress::Path { path, private_dir } => (path, private_dir),
            _ => {
                return Err(invalid_input(format!(
                    "{name} is an abstract socket name; FIFOs need a filesystem path"
                )));
            }
        };
        if let Some(dir) = &private_dir {
            dir::ensure_private_dir(dir)?;
        }
        let lock = lock(&path, name, options.max_instances)?;
        let unlock = RemoveOnError::new(&lock.0);
        // We hold the name's lock: whatever a previous server left at the path is stale.
        remove_stale(&path)?;
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| context(e, format!("cannot make directory {}", path.display())))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
        let meta = fs::symlink_metadata(&path)?;
        let requests_path = path.join(REQUESTS);
        let requests = sys::mkfifo(&requests_path)
            .and_then(|()| sys::open_fifo(&requests_path, Access::ReadWrite))
            .map_err(|e| {
                let _ = fs::remove_file(&requests_path);
                let _ = fs::remove_dir(&path);
                context(e, format!("cannot make {}", requests_path.display()))
            })?
            .0;
        sys::set_nonblocking(requests.as_fd(), false)?;
        let marker = path.join(super::BUSY);
        unlock.disarm();
        Ok(FifoListener {
            name: name.clone(),
            dir: path,
            identity: (meta.dev(), meta.ino()),
            requests,
            state: Mutex::new(AcceptState::default()),
            handshake_timeout: unix.handshake_timeout,
            mode: options.mode,
            max_message_size: options.max_message_size,
            peer_policy: unix.peer_policy.clone(),
            refused: AtomicU64::new(0),
            slots: options.max_instances.map(|n| {
                // While every place is taken, a `busy` FIFO in the directory tells new
                // clients so (instead of leaving them to their handshake deadline).
                let marker = marker.clone();
                Slots::with_hook(
                    n,
                    Box::new(move |full| {
                        if full {
                            let _ = sys::mkfifo(&marker);
                        } else {
                            let _ = fs::remove_file(&marker);
                        }
                    }),
                )
            }),
            nonblocking: AtomicBool::new(false),
            lock,
            removed: AtomicBool::new(false),
        })
    }

    /// Waits for the next client to complete its handshake and returns the connection.
    ///
    /// Requests that are malformed, name FIFOs that are missing, of the wrong type or owner,
    /// or whose client breaks off the handshake are dropped (their FIFOs removed) and the
    /// listener goes on to the next request.
    ///
    /// # Errors
    ///
    /// The OS error of reading the request FIFO.
    pub fn accept(&self) -> io::Result<FifoStream> {
        let Some(slots) = &self.slots else {
            return self.next_client();
        };
        // Non-blocking: never wait here for a place (an event loop would stall).
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        let (mut stream, slot) = slots.admit(nonblocking, || self.next_client())?;
        stream.slot = Some(slot);
        Ok(stream)
    }

    /// The next client whose handshake is done.
    fn next_client(&self) -> io::Result<FifoStream> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.nonblocking.load(Ordering::Relaxed) {
            // An event loop watches the request FIFO only: finish each handshake here.
            loop {
                let line = next_line(&self.requests, &mut state.partial)?;
                let Some((mode, token)) = parse_record(&line) else {
                    continue;
                };
                if let Ok(stream) = self.handshake(mode, &token) {
                    return Ok(stream);
                }
            }
        }
        self.accept_concurrently(&mut state)
    }

    /// Blocking accept: reads requests and runs every client's handshake at once, returning
    /// whichever client finishes first. A client that stalls holds only its own handshake,
    /// which is dropped at its deadline; the others stay pending for the next `accept`.
    fn accept_concurrently(&self, state: &mut AcceptState) -> io::Result<FifoStream> {
        loop {
            let now = Instant::now();
            state.handshakes.retain(|h| h.deadline > now);
            let (requests, progress) = {
                let mut fds = vec![PollFd::new(self.requests.as_fd(), PollFlags::POLLIN)];
                fds.extend(state.handshakes.iter().flat_map(Handshake::poll_fds));
                let deadline = state.handshakes.iter().map(|h| h.deadline).min();
                match sys::poll_until(&mut fds, deadline) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                    Err(e) => return Err(e),
                }
                let progress: Vec<Progress> = fds[1..].chunks(2).map(Handshake::progress).collect();
                (revents(&fds[0]), progress)
            };
            // Handshakes first (from the last, so removing by index keeps the others' places).
            for (i, progress) in progress.into_iter().enumerate().rev() {
                match progress {
                    Progress::Answered => {
                        let h = state.handshakes.swap_remove(i);
                        if let Ok(stream) = self.finish(h) {
                            return Ok(stream);
                        }
                    }
                    Progress::Left => drop(state.handshakes.swap_remove(i)),
                    Progress::Waiting => {}
                }
            }
            if requests.contains(PollFlags::POLLIN) {
                read_requests(&self.requests, &mut state.partial)?;
                while let Some(line) = take_line(&mut state.partial) {
                    if let Some((mode, token)) = parse_record(&line)
                        && let Ok(h) = self.start(mode, &token)
                    {
                        state.handshakes.push(h);
                    }
                }
            }
        }
    }

    /// The server side of the handshake for `token`, start to end (waits for the client).
    fn handshake(&self, mode: Mode, token: &str) -> io::Result<FifoStream> {
        let h = self.start(mode, token)?;
        h.wait()?;
        self.finish(h)
    }

    /// The first half of the handshake: checks and opens the client's FIFOs and answers.
    fn start(&self, mode: Mode, token: &str) -> io::Result<Handshake> {
        let (c2s_name, s2c_name) = pair_names(token);
        let (c2s, s2c) = (self.dir.join(c2s_name), self.dir.join(s2c_name));
        // Whatever happens, the pair does not outlive the handshake.
        let unlink = Unlink(vec![c2s.clone(), s2c.clone()]);
        let mut seen = Vec::with_capacity(2);
        let mut owner = None;
        for path in [&c2s, &s2c] {
            let st = sys::lstat(path)?;
            if !sys::is_fifo(&st) || st.st_mode & 0o077 != 0 {
                return Err(invalid_data(format!(
                    "{} is not a private FIFO",
                    path.display()
                )));
            }
            if owner.is_some_and(|o| o != (st.st_uid, st.st_gid)) {
                return Err(invalid_data("the client's two FIFOs have different owners"));
            }
            owner = Some((st.st_uid, st.st_gid));
            seen.push((st.st_dev, st.st_ino));
        }
        let (peer_uid, peer_gid) = owner.unwrap_or((u32::MAX, u32::MAX));
        if !self.peer_policy.allows(peer_uid, peer_gid) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the peer policy refuses uid {peer_uid}"),
            ));
        }
        let (c2s_fd, c2s_st) = sys::open_fifo(&c2s, Access::Read)?;
        // ENXIO here: the client's read end is gone.
        let (s2c_fd, s2c_st) = sys::open_fifo(&s2c, Access::Write)?;
        if [
            (c2s_st.st_dev, c2s_st.st_ino),
            (s2c_st.st_dev, s2c_st.st_ino),
        ] != seen[..]
        {
            return Err(invalid_data("a FIFO was replaced during the handshake"));
        }
        sys::write(s2c_fd.as_fd(), &[answer(mode, self.mode)])?;
        if mode != self.mode {
            return Err(invalid_input("client asked for the other mode"));
        }
        Ok(Handshake {
            c2s: c2s_fd,
            s2c: s2c_fd,
            deadline: Instant::now() + self.handshake_timeout,
            peer_uid,
            _unlink: unlink,
        })
    }

    /// The second half: the client's `K` is readable (or the client is gone).
    fn finish(&self, h: Handshake) -> io::Result<FifoStream> {
        let mut ack = [0u8; 1];
        if sys::read(h.c2s.as_fd(), &mut ack)? != 1 || ack[0] != b'K' {
            return Err(invalid_data("bad handshake byte from client"));
        }
        FifoStream::new(h.c2s, h.s2c, self.mode, self.max_message_size, h.peer_uid)
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many clients the peer policy refused so far.
    pub fn refused_peers(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The name this listener serves.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// The server directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Puts the request FIFO in non-blocking mode: `accept` returns `WouldBlock` when no
    /// request is waiting.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        sys::set_nonblocking(self.requests.as_fd(), nonblocking)?;
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }
}

/// `K` to accept, `M` to tell the client the server's mode differs.
fn answer(asked: Mode, served: Mode) -> u8 {
    if asked == served { b'K' } else { b'M' }
}

/// What `accept` keeps between calls.
#[derive(Default)]
struct AcceptState {
    /// Bytes read from the request FIFO that do not yet make a whole line.
    partial: Vec<u8>,
    /// Clients answered whose `K` has not come yet.
    handshakes: Vec<Handshake>,
}

/// A client answered by the server, whose `K` is awaited.
struct Handshake {
    c2s: OwnedFd,
    s2c: OwnedFd,
    deadline: Instant,
    peer_uid: u32,
    /// The client's FIFOs, removed once the handshake is over (either way).
    _unlink: Unlink,
}

/// Where a handshake stands, from `poll`'s events on its two FIFOs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// The client's `K` (or whatever it sent) is readable on `c2s`.
    Answered,
    /// The client's read end of `s2c` is gone (POLLERR/POLLHUP there), or it closed `c2s`.
    Left,
    Waiting,
}

fn revents(fd: &PollFd<'_>) -> PollFlags {
    fd.revents().unwrap_or(PollFlags::empty())
}

impl Handshake {
    /// What to poll: `c2s` for the client's answer, `s2c` for the client leaving.
    fn poll_fds(&self) -> [PollFd<'_>; 2] {
        [
            PollFd::new(self.c2s.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.s2c.as_fd(), PollFlags::empty()),
        ]
    }

    /// Where the handshake stands after `poll` returned `fds` (from [`poll_fds`](Self::poll_fds)).
    fn progress(fds: &[PollFd<'_>]) -> Progress {
        let (c2s, s2c) = (revents(&fds[0]), revents(&fds[1]));
        if c2s.contains(PollFlags::POLLIN) {
            Progress::Answered
        } else if c2s.contains(PollFlags::POLLHUP)
            || s2c.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)
        {
            Progress::Left
        } else {
            Progress::Waiting
        }
    }

    /// Waits for the client's answer until the deadline.
    fn wait(&self) -> io::Result<()> {
        loop {
            let mut fds = self.poll_fds();
            sys::poll_until(&mut fds, Some(self.deadline))?;
            match Handshake::progress(&fds) {
                Progress::Answered => return Ok(()),
                Progress::Left => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the client left during the handshake",
                    ));
                }
                Progress::Waiting => {}
            }
        }
    }
}

/// The next newline-terminated line from the request FIFO (blocking), without its newline.
fn next_line(requests: &OwnedFd, pending: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    loop {
        if let Some(line) = take_line(pending) {
            return Ok(line);
        }
        read_requests(requests, pending)?;
    }
}

/// Takes the first whole line out of `pending`, without its newline.
fn take_line(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = pending.iter().position(|&b| b == b'\n')?;
    let line = pending[..end].to_vec();
    pending.drain(..=end);
    Some(line)
}

/// One read from the request FIFO into `pending`. A run of more than a page without a
/// newline is cut to its tail, so junk cannot grow the buffer without bound.
fn read_requests(requests: &OwnedFd, pending: &mut Vec<u8>) -> io::Result<()> {
    if pending.len() > sys::PIPE_BUF {
        let keep = pending.len() - super::RECORD_LEN;
        pending.drain(..keep);
    }
    let mut chunk = [0u8; 4096];
    let n = sys::read(requests.as_fd(), &mut chunk)?;
    pending.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Clears what a dead server left at `path`: a socket file, or a FIFO server directory
/// (FIFOs only). Anything else is left alone and reported as `AlreadyExists`.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let taken = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a stale pipekit server; not replacing it",
                path.display()
            ),
        )
    };
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(taken());
    }
    if meta.file_type().is_socket() {
        return fs::remove_file(path);
    }
    if !meta.is_dir() {
        return Err(taken());
    }
    let entries: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
    for entry in &entries {
        if !entry.file_type()?.is_fifo() {
            return Err(taken());
        }
    }
    for entry in entries {
        let _ = fs::remove_file(entry.path());
    }
    fs::remove_dir(path)
}

impl FifoListener {
    /// Removes the server directory (if it is still the one made) with its FIFOs, and the
    /// lock file, once.
    pub(crate) fn remove_files(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        let ours =
            fs::symlink_metadata(&self.dir).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            if let Ok(entries) = fs::read_dir(&self.dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_fifo()) {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
            let _ = fs::remove_dir(&self.dir);
        }
        // Removed while still held; a waiting binder re-checks the file it locked.
        let _ = fs::remove_file(&self.lock.0);
    }
}

impl Drop for FifoListener {
    fn drop(&mut self) {
        self.remove_files();
    }
}

impl AsFd for FifoListener {
    /// The request FIFO.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.requests.as_fd()
    }
}
