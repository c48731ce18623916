//! A server bound to a name: a listening Unix-domain socket.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::io::Write;
use std::num::NonZeroU8;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::socket::UnixAddr;
use pipekit_core::error::{context, context_kind};
use pipekit_core::slots::Slots;
use pipekit_core::{ListenerOptions, Mode, PipeName, UnixAddress};

use crate::busy::{busy_path, lock_path};
use crate::shm::{self, Link};
use crate::stream::SocketStream;
use crate::stream::{adopted_mode, socket_addr, uses_seqpacket};
use crate::{PeerPolicy, UnixOptions, dir, sys};

/// A server bound to a name; every [`accept`](Self::accept) returns the next client.
///
/// # Security
///
/// A portable name's socket lives in the private per-user directory (0700, owner and mode
/// checked, no symlink followed) and is itself 0600. A lock file beside the socket
/// (`<path>.lock`, held with `flock` while the listener lives) makes sure one server owns a
/// name at a time; a leftover socket file is replaced only after a connect probe finds nobody
/// listening. The socket file and lock file are removed on drop.
pub(crate) struct SocketListener {
    fd: OwnedFd,
    name: PipeName,
    mode: Mode,
    seqpacket: bool,
    max_message_size: usize,
    buffers: (usize, usize),
    bound: Option<Bound>,
    /// An adopted socket's path (not the listener's to remove).
    adopted_path: Option<PathBuf>,
    /// Set once the bound files are removed (by `remove_files` or drop).
    removed: AtomicBool,
    slots: Option<Arc<Slots>>,
    nonblocking: AtomicBool,
    peer_policy: PeerPolicy,
    /// Peers closed because the policy refused them.
    refused: AtomicU64,
    /// The ring capacity offered to clients that ask for shared memory.
    shared_memory: Option<usize>,
}

/// The file a listener bound, removed on drop if it is still the same file.
struct Bound {
    path: PathBuf,
    identity: (u64, u64),
    lock: Option<(PathBuf, File)>,
    hideout: Arc<Hideout>,
}

/// Where a full listener's socket file waits: renamed to `<path>.busy` while every instance
/// is taken, so a new client finds no socket (and the busy marker) instead of a backlog that
/// would hold it silently; renamed back when a place frees.
struct Hideout {
    path: PathBuf,
    busy: PathBuf,
    state: Mutex<HideState>,
}

#[derive(Default)]
struct HideState {
    /// The socket file is at `busy` now.
    hidden: bool,
    /// The listener removed its files: nothing is renamed any more.
    removed: bool,
}

impl Hideout {
    fn new(path: &Path) -> Hideout {
        Hideout {
            path: path.to_owned(),
            busy: busy_path(path),
            state: Mutex::new(HideState::default()),
        }
    }

    fn set_hidden(&self, hide: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.removed || state.hidden == hide {
            return;
        }
        let (from, to) = if hide {
            (&self.path, &self.busy)
        } else {
            (&self.busy, &self.path)
        };
        if fs::rename(from, to).is_ok() {
            state.hidden = hide;
        }
    }
}

impl fmt::Debug for SocketListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketListener")
            .field("fd", &self.fd.as_raw_fd())
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("seqpacket", &self.seqpacket)
            .field("path", &self.bound.as_ref().map(|b| &b.path))
            .finish()
    }
}

impl SocketListener {
    /// Binds `name` with `options`.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if a live server already has the name; `InvalidInput` for a bad name or
    /// options; `PermissionDenied` if the private directory is unsafe; `AlreadyExists` if
    /// something other than a socket is at the path; other OS errors with the path named.
    pub(crate) fn bind_with(
        name: &PipeName,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<SocketListener> {
        options.validate()?;
        let addr = name.resolve_unix(&dir::env())?;
        check_permissions(unix, &addr, name)?;
        let seqpacket = uses_seqpacket(options.mode, unix);
        let ty = sys::sock_type(seqpacket);
        let sockaddr = socket_addr(&addr)?;
        let fd = sys::socket(ty)?;
        let bound = match &addr {
            UnixAddress::Abstract(_) if options.max_instances.is_some() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{name}: an instance limit needs a filesystem name on Unix (an \
                         abstract socket cannot be hidden from new clients while it is full)"
                    ),
                ));
            }
            UnixAddress::Abstract(_) => {
                sys::bind(&fd, &sockaddr).map_err(|e| in_use(e, name))?;
                None
            }
            UnixAddress::Path { path, private_dir } => {
                if let Some(dir) = private_dir {
                    dir::ensure_private_dir(dir)?;
                }
                let lock = lock(path, name, options.max_instances)?;
                let unlock = RemoveOnError::new(&lock.0);
                let _ = fs::remove_file(busy_path(path)); // a dead server's, as we hold the lock
                reclaim_stale(path, ty, &sockaddr, name)?;
                let private = private_dir.is_some();
                bind_restricted(&fd, path, &sockaddr, private, name, unix)?;
                let meta = fs::symlink_metadata(path)?;
                unlock.disarm();
                Some(Bound {
                    path: path.clone(),
                    identity: (meta.dev(), meta.ino()),
                    lock: Some(lock),
                    hideout: Arc::new(Hideout::new(path)),
                })
            }
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let buffers = (
            sys::send_buffer_for(
                options.out_buffer_size as usize,
                seqpacket,
                options.max_message_size,
            ),
            options.in_buffer_size as usize,
        );
        let hideout = bound.as_ref().map(|b| Arc::clone(&b.hideout));
        let listener = SocketListener {
            fd,
            name: name.clone(),
            mode: options.mode,
            seqpacket,
            max_message_size: options.max_message_size,
            buffers,
            bound,
            adopted_path: None,
            removed: AtomicBool::new(false),
            slots: options.max_instances.map(|n| match hideout {
                Some(h) => Slots::with_hook(n, Box::new(move |full| h.set_hidden(full))),
                // Abstract names: refused with a limit above, nothing to set aside.
                None => Slots::new(n),
            }),
            nonblocking: AtomicBool::new(false),
            peer_policy: unix.peer_policy.clone(),
            refused: AtomicU64::new(0),
            shared_memory: options.shared_memory,
        };
        sys::listen(&listener.fd).map_err(|e| context(e, format!("cannot listen on {name}")))?;
        Ok(listener)
    }

    /// Waits for the next client and returns the connection to it.
    ///
    /// With an instance limit, first waits until fewer than that many accepted streams are
    /// alive (non-blocking: `WouldBlock` meanwhile). While every place is taken, the socket
    /// file is set aside (`<path>.busy`) so that new clients are told "busy" instead of
    /// waiting unseen in the backlog; clients already in the backlog then are closed.
    ///
    /// # Errors
    ///
    /// The OS error of `accept` (`WouldBlock` in non-blocking mode).
    pub(crate) fn accept(&self) -> io::Result<SocketStream> {
        let (fd, slot) = match &self.slots {
            None => (self.accept_allowed()?, None),
            Some(slots) => {
                // Non-blocking: never wait here for a place (an event loop would stall).
                let nonblocking = self.nonblocking.load(Ordering::Relaxed);
                let (fd, slot) = slots.admit(nonblocking, || self.accept_allowed())?;
                if slots.live() >= slots.limit() {
                    self.close_backlog();
                }
                (fd, Some(slot))
            }
        };
        sys::after_accept(&fd, sys::sock_type(self.seqpacket))?;
        sys::raise_buffers(fd.as_fd(), self.buffers.0, self.buffers.1);
        let link = self.shared_memory.and_then(|capacity| offer(&fd, capacity));
        Ok(SocketStream::new(
            fd,
            self.mode,
            self.seqpacket,
            self.max_message_size,
            slot,
            link,
        ))
    }

    /// The next connection whose peer the policy allows; the others are closed and counted.
    fn accept_allowed(&self) -> io::Result<OwnedFd> {
        loop {
            let fd = sys::accept(&self.fd)?;
            match sys::peer_credentials(fd.as_fd()) {
                Ok(peer)
                    if self
                        .peer_policy
                        .allows(peer.uid.unwrap_or(u32::MAX), peer.gid.unwrap_or(u32::MAX)) =>
                {
                    return Ok(fd);
                }
                // Refused (or unknown): closed here, never handed out.
                _ => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Closes the connections waiting in the backlog (the listener just became full: they
    /// are over the limit and must not wait unseen).
    fn close_backlog(&self) {
        let blocking = !self.nonblocking.load(Ordering::Relaxed);
        if blocking && sys::set_nonblocking(self.fd.as_fd(), true).is_err() {
            return;
        }
        while sys::accept(&self.fd).is_ok() {}
        if blocking {
            let _ = sys::set_nonblocking(self.fd.as_fd(), false);
        }
    }

    /// The mode of every connection this listener accepts.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// How many peers the peer policy refused so far.
    pub(crate) fn refused_peers(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The name this listener serves.
    pub(crate) fn name(&self) -> &PipeName {
        &self.name
    }

    /// The socket's path, for a name that lives in the filesystem.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.bound {
            Some(b) => Some(b.path.as_path()),
            None => self.adopted_path.as_deref(),
        }
    }

    /// Puts the listening socket in non-blocking mode: `accept` fails with `WouldBlock`
    /// when no client waits.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        sys::set_nonblocking(self.fd.as_fd(), nonblocking)?;
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }
}

/// A shared-memory channel for a client that asks (its address carries the marker), offered
/// on `fd`; `None` for any other client, or if the offer cannot be made (the connection is
/// then plain, as for a client that did not ask).
fn offer(fd: &OwnedFd, capacity: usize) -> Option<Link> {
    let peer = nix::sys::socket::getpeername::<UnixAddr>(fd.as_raw_fd()).ok()?;
    if !shm::marked(&peer) {
        return None;
    }
    shm::offer(fd.as_fd(), capacity).ok().map(Link::server)
}

/// The name of the address an adopted listener is bound to.
fn adopted_name(addr: &UnixAddr, fd: &OwnedFd) -> io::Result<PipeName> {
    if let Some(path) = addr.path() {
        return PipeName::path(path);
    }
    if let Some(name) = sys::abstract_name(addr) {
        return PipeName::abstract_name(name);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("listening socket {} is not bound to a name", fd.as_raw_fd()),
    ))
}

impl SocketListener {
    /// Adopts `fd`, a listening `AF_UNIX` socket made outside pipekit (socket activation, a
    /// parent process), in `mode` or the mode its type carries. The listener does not own
    /// the socket's path: dropping it closes the socket and leaves the file.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a listening Unix-domain socket, its type cannot carry
    /// `mode`, or `options` ask for an instance limit (which needs a path pipekit bound).
    pub(crate) fn from_fd(
        fd: OwnedFd,
        mode: Option<Mode>,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<SocketListener> {
        options.validate()?;
        let adopted = sys::adopt(&fd)?;
        if !adopted.listening {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "descriptor {} is a Unix-domain socket that is not listening; adopt a \
                     connection as a stream",
                    fd.as_raw_fd()
                ),
            ));
        }
        if options.max_instances.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an adopted listener cannot keep an instance limit (that needs a socket path \
                 pipekit bound itself)",
            ));
        }
        let seqpacket = adopted.ty == nix::sys::socket::SockType::SeqPacket;
        let mode = adopted_mode(mode, seqpacket, &fd)?;
        let name = adopted_name(&adopted.addr, &fd)?;
        Ok(SocketListener {
            fd,
            name,
            mode,
            seqpacket,
            max_message_size: options.max_message_size,
            buffers: (
                sys::send_buffer_for(
                    options.out_buffer_size as usize,
                    seqpacket,
                    options.max_message_size,
                ),
                options.in_buffer_size as usize,
            ),
            bound: None,
            adopted_path: adopted.addr.path().map(Path::to_path_buf),
            removed: AtomicBool::new(false),
            slots: None,
            nonblocking: AtomicBool::new(false),
            peer_policy: unix.peer_policy.clone(),
            refused: AtomicU64::new(0),
            shared_memory: options.shared_memory,
        })
    }

    /// Gives up the listening socket: its descriptor (a duplicate; the listener's own is
    /// closed) for another owner, such as a child process. The socket file and lock file
    /// stay: whoever holds the descriptor serves the name now, and a new `bind` of the name
    /// finds it in use.
    ///
    /// # Errors
    ///
    /// The OS error of duplicating the descriptor.
    pub(crate) fn into_fd(self) -> io::Result<OwnedFd> {
        let fd = self.fd.try_clone()?;
        self.removed.store(true, Ordering::SeqCst);
        Ok(fd)
    }

    /// Removes the socket file (if it is still the one bound) and the lock file, once.
    pub(crate) fn remove_files(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(bound) = &self.bound {
            let mut state = bound
                .hideout
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            state.removed = true;
            let path = if state.hidden {
                &bound.hideout.busy
            } else {
                &bound.path
            };
            let ours =
                fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == bound.identity);
            if ours {
                let _ = fs::remove_file(path);
            }
            drop(state);
            if let Some((path, _file)) = &bound.lock {
                // Removed while still held; a waiting binder re-checks the file it locked.
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        self.remove_files();
    }
}

impl AsFd for SocketListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SocketListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn in_use(err: io::Error, name: &PipeName) -> io::Error {
    if err.kind() == io::ErrorKind::AddrInUse {
        context(err, format!("pipe name {name} is already served"))
    } else {
        context(err, format!("cannot bind {name}"))
    }
}

/// Takes the lock file `<path>.lock`, which a listener holds for its lifetime.
///
/// The file then holds the instance limit, if any (`max_instances N`), which clients that
/// find the server full read to say so (`busy::limit_of`).
pub(crate) fn lock(
    path: &Path,
    name: &PipeName,
    max_instances: Option<NonZeroU8>,
) -> io::Result<(PathBuf, File)> {
    let lock_path = lock_path(path);
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| context(e, format!("cannot open lock file {}", lock_path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "pipe name {name} is already served by another process \
                         (it holds {})",
                        lock_path.display()
                    ),
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(context(e, format!("cannot lock {}", lock_path.display())));
            }
        }
        // The previous owner may have removed the file between our open and our lock; then
        // we hold a lock on a file nobody else can see, and must try again.
        let held = file.metadata()?;
        match fs::symlink_metadata(&lock_path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
                let mut file = file;
                file.set_len(0)?;
                if let Some(n) = max_instances {
                    writeln!(file, "max_instances {n}")?;
                }
                return Ok((lock_path, file));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes the lock file of a bind that fails after taking it (the file is ours, or a dead
/// server's, as we hold its lock): a failed bind leaves nothing behind. [`disarm`] it once
/// the listener owns the lock.
///
/// [`disarm`]: RemoveOnError::disarm
pub(crate) struct RemoveOnError(Option<PathBuf>);

impl RemoveOnError {
    pub(crate) fn new(path: &Path) -> RemoveOnError {
        RemoveOnError(Some(path.to_owned()))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// How long the stale-socket probe waits for a connect in progress.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes a socket file left by a server that is gone, after a connect probe finds nobody
/// listening. A live server's socket gives `AddrInUse`; anything else at the path,
/// `AlreadyExists`.
fn reclaim_stale(
    path: &Path,
    ty: nix::sys::socket::SockType,
    addr: &UnixAddr,
    name: &PipeName,
) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(context(e, format!("cannot inspect {}", path.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
        ));
    }
    let in_use = || {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("pipe name {name} is already served ({})", path.display()),
        )
    };
    // Where the kernel lists listening sockets, a live server is told without connecting to
    // it (a connect would look like a client to a server that is not pipekit's).
    if sys::listed_as_listening(path) {
        return Err(in_use());
    }
    let probe = sys::socket(ty)?;
    // Non-blocking: a live server with a full backlog answers EAGAIN instead of stalling us.
    match sys::connect(
        &probe,
        addr,
        Some(std::time::Instant::now() + PROBE_TIMEOUT),
    ) {
        Ok(()) => Err(in_use()),
        Err(e) => match sys::errno(&e) {
            Errno::ECONNREFUSED => fs::remove_file(path).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(context(
                    e,
                    format!("cannot remove stale {}", path.display()),
                )),
            }),
            Errno::ENOENT => Ok(()),
            Errno::EPROTOTYPE | Errno::EAGAIN | Errno::ETIMEDOUT => Err(context_kind(
                io::ErrorKind::AddrInUse,
                e,
                format!("pipe name {name} is already served ({})", path.display()),
            )),
            _ => Err(context(e, format!("cannot probe {}", path.display()))),
        },
    }
}

/// Refuses socket permissions that cannot apply to `addr`, and bits beyond `0o777`.
fn check_permissions(unix: &UnixOptions, addr: &UnixAddress, name: &PipeName) -> io::Result<()> {
    let mode = unix.get_socket_mode();
    if mode & !0o777 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket mode {mode:#o} for {name}: only the permission bits 0o777 are allowed"),
        ));
    }
    let explicit = matches!(
        addr,
        UnixAddress::Path {
            private_dir: None,
            ..
        }
    );
    if unix.custom_permissions() && !explicit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name}: a socket mode or group applies only to an explicit path (a portable \
                 name lives in the 0700 per-user directory, an abstract name has no \
                 permissions); bind a path such as /run/myapp/server.sock"
            ),
        ));
    }
    Ok(())
}

/// Binds `fd` at `path` so that the socket is never reachable with wider permissions than
/// `unix` asks for (by default 0600).
///
/// In the private directory nobody else can reach the socket, so it is bound in place and
/// then restricted. Elsewhere it is bound inside a fresh 0700 directory next to `path`, given
/// its mode and group, and renamed into place. `addr` is the socket address of `path`.
fn bind_restricted(
    fd: &OwnedFd,
    path: &Path,
    addr: &UnixAddr,
    private: bool,
    name: &PipeName,
    unix: &UnixOptions,
) -> io::Result<()> {
    let restrict = |p: &Path| -> io::Result<()> {
        if let Some(gid) = unix.get_socket_group() {
            std::os::unix::fs::lchown(p, None, Some(gid)).map_err(|e| {
                context(
                    e,
                    format!("cannot give the socket to group {gid} (is this process in it?)"),
                )
            })?;
        }
        fs::set_permissions(p, fs::Permissions::from_mode(unix.get_socket_mode()))
    };
    if private {
        sys::bind(fd, addr).map_err(|e| in_use(e, name))?;
        return restrict(path).map_err(|e| context(e, format!("cannot chmod {}", path.display())));
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let staging = parent.join(format!(
        ".pk{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = staging.join("s");
    let temp_len = temp.as_os_str().len();
    if temp_len >= sys::SUN_PATH_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot bind {} safely: the staging path {} is {temp_len} bytes, over the \
                 {}-byte socket path limit; use a shorter path or a portable name",
                path.display(),
                temp.display(),
                sys::SUN_PATH_LEN - 1
            ),
        ));
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| context(e, format!("cannot create {}", staging.display())))?;
    let result = (|| {
        sys::bind(fd, &UnixAddr::new(&temp).map_err(io::Error::from)?)
            .map_err(|e| in_use(e, name))?;
        restrict(&temp)?;
        fs::rename(&temp, path)
    })();
    let _ = fs::remove_file(&temp);
    let _ = fs::remove_dir(&staging);
    result.map_err(|e| context(e, format!("cannot bind {}", path.display())))
}
