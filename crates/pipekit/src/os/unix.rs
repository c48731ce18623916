//! Unix extras: where names live, the socket's path, framing and transport choice (sockets or
//! [FIFOs](fifo)), one-way FIFO ends, file descriptors.
//!
//! # Security
//!
//! A portable name's socket lives in a private per-user directory — `$XDG_RUNTIME_DIR/pipekit/`
//! when that is set and safe, else `$TMPDIR/pipekit-<uid>/` — created 0700 and refused if it
//! is a symlink, owned by someone else or open to others. The socket is 0600 from the moment
//! it is reachable. A lock file (`<socket>.lock`) held for the listener's lifetime gives one
//! server per name; a leftover socket is reclaimed only after a connect probe finds nobody
//! listening. Peers can be checked with [`Stream::peer_credentials`](crate::Stream::peer_credentials).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub use pipekit_core::{UnixAddress, UnixEnv};
pub use pipekit_unix::fifo;
pub use pipekit_unix::{
    Framing, NATIVE_MESSAGES, PeerPolicy, Transport, UnixOptions, check_private_dir,
    ensure_private_dir, env,
};

use crate::{ConnectOptions, IntoPipeName, Listener, ListenerOptions, Stream};

/// Where `name` lives on this machine: the socket path (or abstract name) a non-pipekit peer,
/// such as Python's `socket` module, must use.
///
/// # Errors
///
/// `InvalidInput` for a name that has no Unix form or a path too long for `sun_path`.
///
/// # Examples
///
/// ```
/// use pipekit::os::unix::{UnixAddress, resolve};
///
/// if let UnixAddress::Path { path, .. } = resolve("test_pipe")? {
///     assert!(path.ends_with("test_pipe"));
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn resolve(name: impl IntoPipeName) -> io::Result<UnixAddress> {
    name.into_pipe_name()?.resolve_unix(&env())
}

/// The socket path of `name`, for names that live in the filesystem.
///
/// # Errors
///
/// As [`resolve`]; `InvalidInput` for an abstract name.
pub fn socket_path(name: impl IntoPipeName) -> io::Result<PathBuf> {
    let name = name.into_pipe_name()?;
    match name.resolve_unix(&env())? {
        UnixAddress::Path { path, .. } => Ok(path),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is an abstract socket name: it has no filesystem path"),
        )),
    }
}

/// Unix-only constructors and queries for [`Listener`].
pub trait ListenerExt: Sized {
    /// Binds `name` with portable `options` and Unix-only `unix` options. A `tcp://` or
    /// `tls://` name is bound as [`Listener::bind_with`] binds it: `unix` does not apply.
    ///
    /// # Errors
    ///
    /// As [`Listener::bind_with`].
    fn bind_unix(
        name: impl IntoPipeName,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<Self>;

    /// The socket's path or FIFO server directory, unless the name is abstract.
    fn path(&self) -> Option<&Path>;

    /// The transport this listener uses.
    fn transport(&self) -> Transport;

    /// Removes the listener's socket file, or FIFO directory, and its lock file now rather
    /// than on drop — for a process that exits without dropping it (from a Ctrl-C handler,
    /// or before `std::process::exit`). Done once; no new client finds the listener after it.
    fn remove_files(&self);

    /// Puts the listening socket in non-blocking mode.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;

    /// How many peers the listener's [`PeerPolicy`] refused so far (closed at once, never
    /// returned from `accept`).
    fn refused_peers(&self) -> u64;

    /// Adopts `fd`, a listening `AF_UNIX` socket made outside pipekit — by systemd's socket
    /// activation (`LISTEN_FDS`), launchd or a parent process — in `options.mode`, with
    /// `unix`'s peer policy. ([`Listener::try_from`] takes the mode from the socket's type
    /// instead.) The listener does not own the socket's path: dropping it closes the socket
    /// and leaves the file to whoever made it. A raw descriptor becomes an `OwnedFd` with
    /// `OwnedFd::from_raw_fd`, whose safety promise (the descriptor is open and owned by
    /// nobody else) is the caller's.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a listening Unix-domain socket bound to a name, its
    /// type cannot carry the mode (a `SOCK_SEQPACKET` socket in byte mode), or `options`
    /// ask for an instance limit (which needs a socket path pipekit bound itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use pipekit::os::unix::{ListenerExt, UnixOptions};
    /// use pipekit::{Listener, ListenerOptions, Mode};
    /// # let dir = std::env::temp_dir().join(format!("doc-adopt-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("s.sock");
    ///
    /// // A socket someone else made and bound (here std's, as a stand-in).
    /// let made = std::os::unix::net::UnixListener::bind(&path)?;
    /// let listener = Listener::adopt(
    ///     OwnedFd::from(made),
    ///     ListenerOptions::new().mode(Mode::Bytes),
    ///     &UnixOptions::new(),
    /// )?;
    /// assert_eq!(listener.name().to_string(), path.display().to_string());
    /// # drop(listener);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn adopt(fd: OwnedFd, options: &ListenerOptions, unix: &UnixOptions) -> io::Result<Self>;
}

impl ListenerExt for Listener {
    fn bind_unix(
        name: impl IntoPipeName,
        options: &ListenerOptions,
        unix: &UnixOptions,
    ) -> io::Result<Listener> {
        let name = name.into_pipe_name()?;
        if name.as_net().is_some() {
            return Listener::bind_with(name, options);
        }
        Ok(Listener::from_local(pipekit_unix::Listener::bind_with(
            &name, options, unix,
        )?))
    }

    fn path(&self) -> Option<&Path> {
        self.local().ok()?.path()
    }

    fn transport(&self) -> Transport {
        self.local().map_or(Transport::Socket, |l| l.transport())
    }

    fn remove_files(&self) {
        if let Ok(listener) = self.local() {
            listener.remove_files();
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.local()?.set_nonblocking(nonblocking)
    }

    fn refused_peers(&self) -> u64 {
        self.local().map_or(0, |l| l.refused_peers())
    }

    fn adopt(fd: OwnedFd, options: &ListenerOptions, unix: &UnixOptions) -> io::Result<Listener> {
        Ok(Listener::from_local(pipekit_unix::Listener::from_fd(
            fd,
            Some(options.mode),
            options,
            unix,
        )?))
    }
}

/// Adopts a listening `AF_UNIX` socket in the mode its type carries (`SOCK_SEQPACKET`:
/// messages, `SOCK_STREAM`: bytes), with the default options; see [`ListenerExt::adopt`].
impl TryFrom<OwnedFd> for Listener {
    type Error = io::Error;

    fn try_from(fd: OwnedFd) -> io::Result<Listener> {
        Ok(Listener::from_local(pipekit_unix::Listener::from_fd(
            fd,
            None,
            &ListenerOptions::new(),
            &UnixOptions::new(),
        )?))
    }
}

/// Gives up a listening socket (a duplicate of its descriptor; the listener's is closed), for
/// another owner such as a child process. The socket file stays: whoever holds the
/// descriptor serves the name now. A FIFO server is `Unsupported` (it is no one descriptor).
impl TryFrom<Listener> for OwnedFd {
    type Error = io::Error;

    fn try_from(listener: Listener) -> io::Result<OwnedFd> {
        listener.into_local()?.into_fd()
    }
}

/// Adopts a connected `AF_UNIX` socket (a parent's, one end of a `socketpair`) in the mode
/// its type carries (`SOCK_SEQPACKET`: messages, `SOCK_STREAM`: bytes); see
/// [`StreamExt::adopt`] to choose the mode.
impl TryFrom<OwnedFd> for Stream {
    type Error = io::Error;

    fn try_from(fd: OwnedFd) -> io::Result<Stream> {
        Ok(Stream::from_local(pipekit_unix::Stream::from_fd(
            fd,
            None,
            crate::DEFAULT_MAX_MESSAGE_SIZE,
        )?))
    }
}

/// Gives up a connection's socket. A FIFO connection is `Unsupported` (two descriptors); a
/// framed stream holding part of a message is `InvalidData` (the bytes would be lost).
impl TryFrom<Stream> for OwnedFd {
    type Error = io::Error;

    fn try_from(stream: Stream) -> io::Result<OwnedFd> {
        stream.into_local()?.into_fd()
    }
}

/// Unix-only constructors and settings for [`Stream`].
pub trait StreamExt: Sized {
    /// Connects to `name` with portable `options` and Unix-only `unix` options.
    ///
    /// # Errors
    ///
    /// As [`Stream::connect_with`].
    fn connect_unix(
        name: impl IntoPipeName,
        options: &ConnectOptions,
        unix: &UnixOptions,
    ) -> io::Result<Self>;

    /// Puts the connection in non-blocking mode (`WouldBlock` instead of waiting).
    ///
    /// # Errors
    ///
    /// The OS error.
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;

    /// The transport this connection uses.
    fn transport(&self) -> Transport;

    /// A FIFO connection's write FIFO, which is not the descriptor `AsFd` gives (`None` for
    /// sockets and after `shutdown_write`); for event loops that watch both.
    fn raw_write_fd(&self) -> Option<RawFd>;

    /// Adopts `fd`, a connected `AF_UNIX` socket made outside pipekit (a parent process's,
    /// one end of a `socketpair`), in `options.mode` with `options.max_message_size`
    /// (message mode on a `SOCK_STREAM` socket is length-prefixed framing).
    /// [`Stream::try_from`] takes the mode from the socket's type instead.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a connected Unix-domain socket or its type cannot carry
    /// the mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use std::os::unix::net::UnixStream;
    /// use pipekit::os::unix::StreamExt;
    /// use pipekit::{ConnectOptions, Mode, Stream};
    ///
    /// let (a, b) = UnixStream::pair()?;
    /// let options = ConnectOptions::new().mode(Mode::Messages).clone();
    /// let a = Stream::adopt(OwnedFd::from(a), &options)?;
    /// let b = Stream::adopt(OwnedFd::from(b), &options)?;
    /// a.send(b"one message")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(b.recv_to_vec(&mut buf)?, Some(11));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn adopt(fd: OwnedFd, options: &ConnectOptions) -> io::Result<Self>;
}

impl StreamExt for Stream {
    fn connect_unix(
        name: impl IntoPipeName,
        options: &ConnectOptions,
        unix: &UnixOptions,
    ) -> io::Result<Stream> {
        let name = name.into_pipe_name()?;
        if name.as_net().is_some() {
            return Stream::connect_with(name, options);
        }
        Ok(Stream::from_local(pipekit_unix::Stream::connect_with(
            &name, options, unix,
        )?))
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.local()?.set_nonblocking(nonblocking)
    }

    fn transport(&self) -> Transport {
        self.local().map_or(Transport::Socket, |s| s.transport())
    }

    fn raw_write_fd(&self) -> Option<RawFd> {
        self.local().ok()?.raw_write_fd()
    }

    fn adopt(fd: OwnedFd, options: &ConnectOptions) -> io::Result<Stream> {
        Ok(Stream::from_local(pipekit_unix::Stream::from_fd(
            fd,
            Some(options.mode),
            options.max_message_size,
        )?))
    }
}

/// The listening socket (for `tcp://` and `tls://` names, the TCP one).
impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.as_unix_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_unix_fd().as_raw_fd()
    }
}

/// The socket (for `tcp://` and `tls://` names, the TCP one: reading or writing it directly
/// would break the framing or the TLS session).
impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.as_unix_fd()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_unix_fd().as_raw_fd()
    }
}

#[cfg(feature = "mio")]
mod mio_source {
    use std::io;

    use mio::{Interest, Registry, Token};

    use crate::{Listener, Stream};

    /// Readable when a client is waiting (call [`Listener::accept`] until `WouldBlock`,
    /// after `set_nonblocking(true)`).
    impl mio::event::Source for Listener {
        fn register(
            &mut self,
            registry: &Registry,
            token: Token,
            interests: Interest,
        ) -> io::Result<()> {
            self.local_mut()?.register(registry, token, interests)
        }

        fn reregister(
            &mut self,
            registry: &Registry,
            token: Token,
            interests: Interest,
        ) -> io::Result<()> {
            self.local_mut()?.reregister(registry, token, interests)
        }

        fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
            self.local_mut()?.deregister(registry)
        }
    }

    /// Readable/writable as its socket, or (FIFO transport) as its read and write FIFOs
    /// under one token. In non-blocking mode a message `send` is taken whole or refused
    /// with `WouldBlock`; after a partly written frame, `flush` when writable. A FIFO
    /// whose writer has gone reports `is_read_closed()` without `is_readable()`: receive
    /// on either until `None`.
    impl mio::event::Source for Stream {
        fn register(
            &mut self,
            registry: &Registry,
            token: Token,
            interests: Interest,
        ) -> io::Result<()> {
            self.local_mut()?.register(registry, token, interests)
        }

        fn reregister(
            &mut self,
            registry: &Registry,
            token: Token,
            interests: Interest,
        ) -> io::Result<()> {
            self.local_mut()?.reregister(registry, token, interests)
        }

        fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
            self.local_mut()?.deregister(registry)
        }
    }
}
