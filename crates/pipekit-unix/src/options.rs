//! What a Unix listener or client may choose beyond the portable options: the transport
//! (socket or FIFO), how messages are framed, who may connect, and the socket file's
//! permissions.

/// Which kind of file a server is at its path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A Unix-domain socket (the default).
    #[default]
    Socket,
    /// A FIFO server directory (see [`fifo`](crate::fifo)).
    Fifo,
    /// A socket, or a FIFO server directory where sockets cannot be bound (see
    /// [`Listener::bind_with`](crate::Listener::bind_with) for the errors that count).
    SocketOrFifo,
}

/// How message mode rides on a Unix socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Framing {
    /// The OS's own message socket (`SOCK_SEQPACKET`) where pipekit uses one (Linux,
    /// Android); length-prefixed framing elsewhere.
    #[default]
    Native,
    /// Length-prefixed framing on `SOCK_STREAM` on every OS (see
    /// [`pipekit_core::framing`]).
    LengthPrefixed,
}

/// Which peers a listener serves, checked on every connection before `accept` returns it
/// (`SO_PEERCRED` on Linux, `getpeereid` elsewhere; for FIFOs, the owner of the client's
/// FIFOs).
///
/// A refused peer is closed at once and never returned from `accept`; the listener goes on
/// with the next client and counts the refusal ([`Listener::refused_peers`](crate::Listener::refused_peers)). The listener's
/// own user is always served.
///
/// # Examples
///
/// ```
/// use pipekit_unix::{PeerPolicy, UnixOptions};
///
/// let mut unix = UnixOptions::new();
/// unix.peer_policy(PeerPolicy::allow_uids([1000, 1001]));
/// assert!(unix.peer_policy.allows(1000, 100));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerPolicy {
    /// Only peers whose effective uid is the listener's (the default).
    #[default]
    SameUser,
    /// Every peer that can reach the socket.
    Any,
    /// The listener's own user, and peers whose uid or gid is in these lists.
    Allow {
        /// Allowed user ids.
        uids: Vec<u32>,
        /// Allowed group ids (the peer's effective gid).
        gids: Vec<u32>,
    },
}

impl PeerPolicy {
    /// The listener's user and the users `uids`.
    pub fn allow_uids(uids: impl IntoIterator<Item = u32>) -> PeerPolicy {
        PeerPolicy::Allow {
            uids: uids.into_iter().collect(),
            gids: Vec::new(),
        }
    }

    /// The listener's user and members (by effective gid) of the groups `gids`.
    pub fn allow_gids(gids: impl IntoIterator<Item = u32>) -> PeerPolicy {
        PeerPolicy::Allow {
            uids: Vec::new(),
            gids: gids.into_iter().collect(),
        }
    }

    /// Whether a peer with effective `uid` and `gid` is served by a listener of this
    /// process's effective user.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        let me = nix::unistd::geteuid().as_raw();
        match self {
            PeerPolicy::Any => true,
            PeerPolicy::SameUser => uid == me,
            PeerPolicy::Allow { uids, gids } => {
                uid == me || uids.contains(&uid) || gids.contains(&gid)
            }
        }
    }
}

/// Unix-only options, beside the portable [`ListenerOptions`](pipekit_core::ListenerOptions)
/// and [`ConnectOptions`](pipekit_core::ConnectOptions).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnixOptions {
    /// How message mode rides on the socket.
    pub framing: Framing,
    /// What a listener binds. Clients need not set it: they speak whatever the path is.
    pub transport: Transport,
    /// Which peers a listener serves.
    pub peer_policy: PeerPolicy,
    /// How long a FIFO client has for the handshake.
    pub handshake_timeout: std::time::Duration,
    /// The socket file's permission bits (explicit paths; default `0o600`).
    socket_mode: u32,
    /// The group the socket file is given (explicit paths; default: the process's).
    socket_group: Option<u32>,
}

impl Default for UnixOptions {
    fn default() -> UnixOptions {
        UnixOptions {
            framing: Framing::default(),
            transport: Transport::default(),
            peer_policy: PeerPolicy::default(),
            handshake_timeout: crate::fifo::HANDSHAKE_TIMEOUT,
            socket_mode: 0o600,
            socket_group: None,
        }
    }
}

impl UnixOptions {
    /// The defaults: native framing.
    pub fn new() -> UnixOptions {
        UnixOptions::default()
    }

    /// How message mode rides on the socket; server and clients must agree.
    pub fn framing(&mut self, framing: Framing) -> &mut Self {
        self.framing = framing;
        self
    }

    /// What a listener binds: a socket (default), a FIFO server directory, or a socket with a
    /// FIFO fallback.
    pub fn transport(&mut self, transport: Transport) -> &mut Self {
        self.transport = transport;
        self
    }

    /// Which peers a listener serves (default [`PeerPolicy::SameUser`]); abstract names
    /// and explicit paths follow it too. Clients ignore it.
    pub fn peer_policy(&mut self, policy: PeerPolicy) -> &mut Self {
        self.peer_policy = policy;
        self
    }

    /// How long a FIFO listener gives each client for its handshake (default
    /// [`fifo::HANDSHAKE_TIMEOUT`](crate::fifo::HANDSHAKE_TIMEOUT), 5 s). A client that stalls is dropped at its deadline
    /// and never delays the others: a blocking `accept` runs every handshake at once.
    /// A zero duration is refused by `bind`.
    pub fn handshake_timeout(&mut self, timeout: std::time::Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The permission bits of the socket a listener binds at an explicit path (default
    /// `0o600`: the owner only). Connecting needs write permission, so `0o660` lets the
    /// socket's group in. The socket never exists with wider bits than these, even for a
    /// moment: it is bound inside a fresh `0o700` directory, given its mode and group, and
    /// renamed into place.
    ///
    /// Portable names live in the per-user directory, which is `0o700` whatever the
    /// socket's mode, and abstract names have no permissions at all: `bind` refuses a mode
    /// or group other than the default for them (`InvalidInput`). For a server that other
    /// users reach, bind an explicit path in a directory they can enter (such as
    /// `/run/myapp/`), set the mode and group here, and choose who is served with
    /// [`peer_policy`](Self::peer_policy).
    ///
    /// Only the bits `0o777` are taken; `bind` refuses others.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit_unix::{PeerPolicy, UnixOptions};
    ///
    /// let gid = nix::unistd::getegid().as_raw(); // a group this process is in
    /// let mut unix = UnixOptions::new();
    /// unix.socket_mode(0o660)
    ///     .socket_group(Some(gid))
    ///     .peer_policy(PeerPolicy::allow_gids([gid]));
    /// assert_eq!(unix.get_socket_mode(), 0o660);
    /// ```
    pub fn socket_mode(&mut self, mode: u32) -> &mut Self {
        self.socket_mode = mode;
        self
    }

    /// The group (a gid) that owns the socket a listener binds at an explicit path; `None`
    /// (default) leaves the process's group. The process must be root or a member of the
    /// group. See [`socket_mode`](Self::socket_mode) for where it applies.
    pub fn socket_group(&mut self, gid: Option<u32>) -> &mut Self {
        self.socket_group = gid;
        self
    }

    /// The socket mode set by [`socket_mode`](Self::socket_mode).
    pub fn get_socket_mode(&self) -> u32 {
        self.socket_mode
    }

    /// The socket group set by [`socket_group`](Self::socket_group).
    pub fn get_socket_group(&self) -> Option<u32> {
        self.socket_group
    }

    /// The group id of the group named `name` (from the system's group database), for
    /// [`socket_group`](Self::socket_group).
    ///
    /// # Errors
    ///
    /// `NotFound` naming the group if there is none of that name; the OS error of the
    /// lookup.
    pub fn group_id(name: &str) -> std::io::Result<u32> {
        match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => Ok(group.gid.as_raw()),
            Ok(None) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no group named {name:?}"),
            )),
            Err(e) => Err(pipekit_core::error::context(
                e.into(),
                format!("cannot look up group {name:?}"),
            )),
        }
    }

    /// Whether the socket's mode or group differ from the defaults.
    pub(crate) fn custom_permissions(&self) -> bool {
        self.socket_mode != 0o600 || self.socket_group.is_some()
    }
}
