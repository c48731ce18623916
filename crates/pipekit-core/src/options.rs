use std::io;
use std::num::NonZeroU8;
use std::time::Duration;

use std::path::PathBuf;

use crate::Mode;
use crate::error::invalid_input;
use crate::net::{NetConnectOptions, NetListenerOptions};

/// The default in/out buffer size: 65535 bytes, the classic named-pipe buffer.
pub const DEFAULT_BUFFER_SIZE: u32 = 65535;

/// The default maximum message size: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// The default server timeout that Windows clients waiting with
/// `NMPWAIT_USE_DEFAULT_WAIT` use: 500 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// The largest maximum message size: what a 4-byte frame header can carry.
const MAX_MESSAGE_LIMIT: usize = u32::MAX as usize;

/// The smallest shared-memory ring: one page.
pub const MIN_SHARED_MEMORY: usize = 4096;

/// The largest shared-memory ring: 1 GiB.
pub const MAX_SHARED_MEMORY: usize = 1 << 30;

/// What a message takes in a shared-memory ring besides its bytes (its length word and
/// alignment), at most: a ring must hold one message of the maximum size.
pub const SHARED_MEMORY_OVERHEAD: usize = 16;

/// How a listener is made. One value makes every later instance.
///
/// Fields are public to read; set them with the builder methods of the same name. Whichever
/// way a value got in, `bind` checks the options ([`validate`](Self::validate)) before it
/// makes anything, so no value skips the checks. Create the listener with the facade's
/// `Listener::bind_with(name, &options)`.
///
/// # Examples
///
/// ```
/// use std::num::NonZeroU8;
/// use pipekit_core::{ListenerOptions, Mode};
///
/// let mut options = ListenerOptions::new();
/// options.mode(Mode::Messages).max_instances(NonZeroU8::new(4));
/// assert_eq!(options.in_buffer_size, 65535);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerOptions {
    /// Byte stream or message pipe.
    pub mode: Mode,
    /// Inbound buffer size hint, in bytes.
    pub in_buffer_size: u32,
    /// Outbound buffer size hint, in bytes.
    pub out_buffer_size: u32,
    /// The most connections served at once; `None` is unlimited.
    pub max_instances: Option<NonZeroU8>,
    /// The server's default timeout for waiting clients.
    pub default_timeout: Duration,
    /// The largest message `send` accepts and `recv` takes, in bytes.
    pub max_message_size: usize,
    /// For `tcp://` and `tls://` names: certificates, client verification, the handshake
    /// deadline.
    pub net: NetListenerOptions,
    /// The capacity of each shared-memory ring offered to clients that ask, in bytes;
    /// `None` (the default) offers none.
    pub shared_memory: Option<usize>,
}

impl ListenerOptions {
    /// The defaults: byte mode, 65535-byte buffers, unlimited instances, a 500 ms default
    /// timeout, 1 MiB maximum message size.
    pub fn new() -> ListenerOptions {
        ListenerOptions {
            mode: Mode::Bytes,
            in_buffer_size: DEFAULT_BUFFER_SIZE,
            out_buffer_size: DEFAULT_BUFFER_SIZE,
            max_instances: None,
            default_timeout: DEFAULT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            net: NetListenerOptions::new(),
            shared_memory: None,
        }
    }

    /// Byte stream or message pipe.
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: `PIPE_TYPE_BYTE` or `PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE`. Linux:
    /// `SOCK_STREAM` or `SOCK_SEQPACKET`. Other Unix: messages are framed on `SOCK_STREAM`.
    pub fn mode(&mut self, mode: Mode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Inbound buffer size in bytes (default 65535).
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: `nInBufferSize` of `CreateNamedPipeW`. Unix: `SO_RCVBUF` is raised to at least
    /// this (never lowered below the system default).
    pub fn in_buffer_size(&mut self, bytes: u32) -> &mut Self {
        self.in_buffer_size = bytes;
        self
    }

    /// Outbound buffer size in bytes (default 65535).
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: `nOutBufferSize` of `CreateNamedPipeW`. Unix: `SO_SNDBUF` is raised to at least
    /// this (never lowered below the system default).
    pub fn out_buffer_size(&mut self, bytes: u32) -> &mut Self {
        self.out_buffer_size = bytes;
        self
    }

    /// The most connections served at once; `None` (the default) is unlimited.
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: `nMaxInstances` (255 is `PIPE_UNLIMITED_INSTANCES`, the same as `None`);
    /// clients beyond the limit get `ERROR_PIPE_BUSY` and wait. Unix: `accept` waits while
    /// this many accepted streams are alive (`WouldBlock` in non-blocking mode); meanwhile
    /// the socket file is set aside (FIFO servers show a `busy` FIFO), so a client beyond the
    /// limit retries within its connect wait and then fails with "all N instances are
    /// taken" — it never sits unserved in the listen backlog. Abstract socket names refuse a
    /// limit (`InvalidInput`): they cannot be set aside.
    pub fn max_instances(&mut self, limit: Option<NonZeroU8>) -> &mut Self {
        self.max_instances = limit;
        self
    }

    /// The server's default timeout (default 500 ms).
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: `nDefaultTimeOut`, used by clients that wait with `NMPWAIT_USE_DEFAULT_WAIT`.
    /// Unix: no effect.
    pub fn default_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.default_timeout = timeout;
        self
    }

    /// The largest message, in bytes, that `send` accepts and `recv` takes (default 1 MiB,
    /// at most 4 GiB − 1).
    ///
    /// # Platform-specific behavior
    ///
    /// Linux `SOCK_SEQPACKET`: one message must also fit the socket send buffer; pipekit
    /// raises `SO_SNDBUF` to fit this size as far as `net.core.wmem_max` allows.
    pub fn max_message_size(&mut self, bytes: usize) -> &mut Self {
        self.max_message_size = bytes;
        self
    }

    /// Offers clients that ask for it ([`ConnectOptions::shared_memory`]) a shared-memory
    /// channel: two rings of `capacity` bytes each (rounded up to whole pages), one each
    /// way, in a segment private to the connection. Both ends then move messages and bytes
    /// through memory, without a system call per message while the other side keeps up; the
    /// socket stays for wake-ups and for noticing the peer's death. Clients that do not ask
    /// (other programs, older versions) get the plain connection. `None` offers nothing.
    ///
    /// In message mode a ring must hold the largest message: `capacity` at least
    /// `max_message_size +` [`SHARED_MEMORY_OVERHEAD`].
    ///
    /// # Platform-specific behavior
    ///
    /// Unix-domain sockets (Linux, macOS, the BSDs): the segment is a sealed `memfd`
    /// (Linux, FreeBSD) or an `shm_open` object unlinked at once, passed over the socket with
    /// `SCM_RIGHTS`. The Tokio and `mio` APIs wait on such streams too (their wake-up socket
    /// pairs are watched beside the socket).
    ///
    /// Windows: the listener also serves the sibling pipe `NAME@pkshm-v1` (same security
    /// descriptor); a client that asks connects there and takes an unnamed section and four
    /// events from the server's process with `DuplicateHandle`. Blocking streams only: the
    /// Tokio API and non-blocking listeners on Windows offer nothing, and such a stream
    /// refuses to become non-blocking or to give up its handle.
    ///
    /// FIFO servers and `tcp://`/`tls://` names offer nothing and serve the plain connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit_core::{ListenerOptions, Mode};
    ///
    /// let mut options = ListenerOptions::new();
    /// options.mode(Mode::Messages).max_message_size(65536).shared_memory(Some(4 << 20));
    /// assert!(options.validate().is_ok());
    /// ```
    pub fn shared_memory(&mut self, capacity: Option<usize>) -> &mut Self {
        self.shared_memory = capacity;
        self
    }

    /// `tls://`: the server's certificate chain and private key, PEM files. A `tls://`
    /// listener needs them.
    pub fn tls_certificate(
        &mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> &mut Self {
        self.net.certificate = Some(certificate.into());
        self.net.key = Some(key.into());
        self
    }

    /// `tls://`: requires every client to show a certificate issued by a CA of this PEM file
    /// (mutual TLS). The server refuses a client without one in the handshake; a TLS 1.3
    /// client, which finishes its side first, reads the refusal (`PermissionDenied`) as the
    /// first thing after connecting.
    pub fn tls_client_ca(&mut self, ca: impl Into<PathBuf>) -> &mut Self {
        self.net.client_ca = Some(ca.into());
        self
    }

    /// `tls://` with [`tls_client_ca`](Self::tls_client_ca): accepts only client
    /// certificates valid for `name` (a DNS subject alternative name); call once per name
    /// allowed. The others are refused in the handshake, as clients without a certificate
    /// are, and never reach `accept`.
    pub fn tls_allow_client(&mut self, name: impl Into<String>) -> &mut Self {
        self.net.allowed_clients.push(name.into());
        self
    }

    /// `tls://`: how long a client may take over its handshake (default 10 s). Handshakes
    /// run beside `accept`, so a client that never finishes one holds up nobody else.
    pub fn tls_handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.net.handshake_timeout = timeout;
        self
    }

    /// `tcp://`: lets the listener bind an address other than loopback (default `false`).
    /// Plain TCP has no encryption and no authentication: anyone who reaches the port is a
    /// client. Prefer `tls://` with client certificates across machines.
    pub fn insecure_network(&mut self, allow: bool) -> &mut Self {
        self.net.insecure_network = allow;
        self
    }

    /// Checks the options for values no OS accepts.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a maximum message size above 4 GiB − 1, a zero TLS handshake
    /// timeout, or a shared-memory capacity out of range or too small for the largest
    /// message.
    pub fn validate(&self) -> io::Result<()> {
        if self.net.handshake_timeout.is_zero() {
            return Err(invalid_input("the TLS handshake timeout is zero"));
        }
        check_max_message_size(self.max_message_size)?;
        if let Some(capacity) = self.shared_memory {
            if !(MIN_SHARED_MEMORY..=MAX_SHARED_MEMORY).contains(&capacity) {
                return Err(invalid_input(format!(
                    "shared-memory capacity of {capacity} bytes is outside \
                     {MIN_SHARED_MEMORY}..={MAX_SHARED_MEMORY}"
                )));
            }
            let need = self.max_message_size.saturating_add(SHARED_MEMORY_OVERHEAD);
            if self.mode == Mode::Messages && capacity < need {
                return Err(invalid_input(format!(
                    "shared-memory capacity of {capacity} bytes cannot hold a message of the \
                     maximum size ({} bytes): it needs at least {need}",
                    self.max_message_size
                )));
            }
        }
        Ok(())
    }
}

impl Default for ListenerOptions {
    fn default() -> ListenerOptions {
        ListenerOptions::new()
    }
}

/// How a client connects. One value makes every later connection.
///
/// Fields are public to read; set them with the builder methods of the same name. `connect`
/// checks the options ([`validate`](Self::validate)) before it opens anything.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipekit_core::{ConnectOptions, Mode};
///
/// let mut options = ConnectOptions::new();
/// options.mode(Mode::Messages).wait(Some(Duration::from_secs(2)));
/// assert_eq!(options.wait, Some(Duration::from_secs(2)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Byte stream or message pipe; must match the server's mode.
    pub mode: Mode,
    /// How long to wait for a server that is absent or busy; `None` fails at once.
    pub wait: Option<Duration>,
    /// Inbound buffer size hint, in bytes.
    pub in_buffer_size: u32,
    /// Outbound buffer size hint, in bytes.
    pub out_buffer_size: u32,
    /// The largest message `send` accepts and `recv` takes, in bytes.
    pub max_message_size: usize,
    /// For `tls://` names: which CAs to trust, the client's certificate.
    pub net: NetConnectOptions,
    /// Whether to take a shared-memory channel the server offers.
    pub shared_memory: bool,
}

impl ConnectOptions {
    /// The defaults: byte mode, no waiting, 65535-byte buffers, 1 MiB maximum message size.
    pub fn new() -> ConnectOptions {
        ConnectOptions {
            mode: Mode::Bytes,
            wait: None,
            in_buffer_size: DEFAULT_BUFFER_SIZE,
            out_buffer_size: DEFAULT_BUFFER_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            net: NetConnectOptions::new(),
            shared_memory: false,
        }
    }

    /// Byte stream or message pipe; must match the server's mode, or connecting fails with
    /// an error that says so.
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: message mode sets `PIPE_READMODE_MESSAGE` on the client handle. Unix: the
    /// socket type (`SOCK_STREAM` / `SOCK_SEQPACKET`).
    pub fn mode(&mut self, mode: Mode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// How long to wait for a server that does not exist yet or is busy. `None` (the
    /// default) fails at once with `NotFound` when nobody serves the name.
    ///
    /// When the time is up, connecting fails with `TimedOut`.
    ///
    /// # Platform-specific behavior
    ///
    /// Windows: `WaitNamedPipeW` on `ERROR_PIPE_BUSY`, polling while the pipe does not exist.
    /// Unix: retries `connect` on `ENOENT`/`ECONNREFUSED` with a short backoff.
    pub fn wait(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.wait = timeout;
        self
    }

    /// Inbound buffer size hint (default 65535): Unix raises `SO_RCVBUF` to at least this.
    pub fn in_buffer_size(&mut self, bytes: u32) -> &mut Self {
        self.in_buffer_size = bytes;
        self
    }

    /// Outbound buffer size hint (default 65535): Unix raises `SO_SNDBUF` to at least this.
    pub fn out_buffer_size(&mut self, bytes: u32) -> &mut Self {
        self.out_buffer_size = bytes;
        self
    }

    /// The largest message, in bytes, that `send` accepts and `recv` takes (default 1 MiB).
    pub fn max_message_size(&mut self, bytes: usize) -> &mut Self {
        self.max_message_size = bytes;
        self
    }

    /// Takes a shared-memory channel if the server offers one
    /// ([`ListenerOptions::shared_memory`]); default `false`. Nothing is waited for: the
    /// connection starts on the socket and moves to memory when the offer is seen (at the
    /// latest at the first read); a server that offers nothing keeps the plain connection.
    ///
    /// The client marks its socket for the server by binding it, before it connects, to an
    /// address servers that know nothing of this ignore (Linux: an abstract name
    /// `pipekit-shm-v1/…`; elsewhere a socket file in the per-user directory, removed once
    /// connected).
    ///
    /// # Platform-specific behavior
    ///
    /// Unix-domain sockets, and blocking Windows pipes: there the client opens the sibling
    /// pipe `NAME@pkshm-v1` (falling back to `NAME` when it is not there) and, unlike Unix,
    /// a write made before the server accepted waits for the accept. Elsewhere (FIFOs,
    /// network names, the Tokio API on Windows) it has no effect.
    pub fn shared_memory(&mut self, accept: bool) -> &mut Self {
        self.shared_memory = accept;
        self
    }

    /// `tls://`: trusts the CAs of this PEM file instead of the system's roots.
    pub fn tls_ca(&mut self, ca: impl Into<PathBuf>) -> &mut Self {
        self.net.ca = Some(ca.into());
        self
    }

    /// `tls://`: the client's certificate chain and private key, PEM files, for a server
    /// that asks for client certificates.
    pub fn tls_client_certificate(
        &mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> &mut Self {
        self.net.certificate = Some(certificate.into());
        self.net.key = Some(key.into());
        self
    }

    /// `tls://`: the name the server's certificate must be valid for, when it is not the
    /// host of the address (say, a server reached by IP address whose certificate names it).
    pub fn tls_server_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.net.server_name = Some(name.into());
        self
    }

    /// Checks the options for values no OS accepts.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a maximum message size above 4 GiB − 1.
    pub fn validate(&self) -> io::Result<()> {
        check_max_message_size(self.max_message_size)
    }
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions::new()
    }
}

fn check_max_message_size(bytes: usize) -> io::Result<()> {
    if bytes > MAX_MESSAGE_LIMIT {
        return Err(invalid_input(format!(
            "maximum message size of {bytes} bytes is above the limit of {MAX_MESSAGE_LIMIT}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_classic_recipe() {
        let l = ListenerOptions::default();
        assert_eq!((l.in_buffer_size, l.out_buffer_size), (65535, 65535));
        assert_eq!(l.default_timeout, Duration::from_millis(500));
        assert_eq!(l.max_instances, None);
        assert_eq!(ConnectOptions::default().wait, None);
    }

    #[test]
    fn oversized_limits_are_refused() {
        let mut l = ListenerOptions::new();
        assert!(l.validate().is_ok());
        if usize::BITS > 32 {
            l.max_message_size(MAX_MESSAGE_LIMIT + 1);
            assert_eq!(
                l.validate().unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
