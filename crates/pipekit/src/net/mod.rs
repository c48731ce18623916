//! The network forms of a name: `tcp://HOST:PORT` and `tls://HOST:PORT`.
//!
//! [`Listener::bind`](crate::Listener::bind) and [`Stream::connect`](crate::Stream::connect)
//! take them as they take a local name, and the connections keep the model:
//!
//! - **Byte mode** is the TCP stream itself (for `tls://`, the TLS stream), so any TCP or
//!   TLS program is a peer.
//! - **Message mode** carries each message with pipekit's
//!   [length-prefixed framing](crate::framing): the same wire format, the same maximum
//!   message size and the same too-small-buffer rule as the local transports. `TCP_NODELAY`
//!   is set, so a message leaves when it is sent.
//! - **Peer information** is the remote address ([`Stream::peer_addr`](crate::Stream::peer_addr))
//!   and, over TLS, the certificate the peer showed
//!   ([`Stream::peer_certificate`](crate::Stream::peer_certificate));
//!   [`peer_credentials`](crate::Stream::peer_credentials) has no pid, uid or gid.
//! - Connect waits ([`ConnectOptions::wait`](crate::ConnectOptions::wait)), timeouts and
//!   half-close ([`shutdown_write`](crate::Stream::shutdown_write)) behave as on the local
//!   transports; nobody listening is `NotFound`, as for a local name.
//!
//! # Security
//!
//! A plain `tcp://` listener binds only loopback addresses unless
//! [`ListenerOptions::insecure_network`](crate::ListenerOptions::insecure_network) says
//! otherwise: TCP has neither encryption nor authentication, and nobody should expose a pipe
//! by accident. Across machines use `tls://` (feature `tls`, rustls): the server shows a
//! certificate ([`ListenerOptions::tls_certificate`](crate::ListenerOptions::tls_certificate)),
//! clients verify it against the system's roots or a CA file
//! ([`ConnectOptions::tls_ca`](crate::ConnectOptions::tls_ca)), and a server may require
//! client certificates ([`ListenerOptions::tls_client_ca`](crate::ListenerOptions::tls_client_ca))
//! and accept only some names among them
//! ([`ListenerOptions::tls_allow_client`](crate::ListenerOptions::tls_allow_client)).
//! TLS handshakes run beside `accept`, each with a deadline, so a client that never finishes
//! its handshake holds up nobody.
//!
//! Over TLS the mode is agreed by ALPN (`pipekit-bytes` / `pipekit-messages`): a client whose
//! mode differs from the server's gets an `InvalidInput` error at connect, as for a local
//! name; a TLS client that offers no ALPN (most TLS libraries by default) is served in the
//! server's mode. Plain TCP has no such agreement: both ends must be told the same mode.
//!
//! A TLS peer that closes the connection without a TLS `close_notify` (it crashed, or an
//! attacker cut the connection) is reported as `UnexpectedEof`, never as a clean end.
//!
//! # Examples
//!
//! ```
//! use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
//!
//! let listener = Listener::bind_with("tcp://127.0.0.1:0", ListenerOptions::new().mode(Mode::Messages))?;
//! let name = listener.name().clone(); // tcp://127.0.0.1:<the port it got>
//! let client = Stream::connect_with(&name, ConnectOptions::new().mode(Mode::Messages))?;
//! let server = listener.accept()?;
//! client.send(b"hello")?;
//! let mut buf = [0u8; 16];
//! assert_eq!(server.recv(&mut buf)?, Some(5));
//! assert_eq!(server.peer_addr()?, client.local_addr()?);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipekit_core::backoff::Backoff;
use pipekit_core::error::{context, context_kind, invalid_input, wrong_mode};
use pipekit_core::framing::{FrameReader, FrameWriter};
use pipekit_core::net::DEFAULT_HANDSHAKE_TIMEOUT;
use pipekit_core::{ConnectOptions, ListenerOptions, Mode, NetAddress, PeerCredentials, PipeName};

mod lock;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;

use lock::lock;

/// A `tcp://` or `tls://` server.
#[derive(Debug)]
pub(crate) struct Listener {
    name: PipeName,
    mode: Mode,
    max_message_size: usize,
    socket: Accepting,
}

#[derive(Debug)]
enum Accepting {
    Tcp(TcpListener),
    #[cfg(feature = "tls")]
    Tls(tls::Acceptor),
}

impl Listener {
    pub(crate) fn bind(addr: &NetAddress, options: &ListenerOptions) -> io::Result<Listener> {
        let Bound {
            listener,
            name,
            #[cfg(feature = "tls")]
            tls,
        } = bind(addr, options)?;
        let socket = Accepting::Tcp(listener);
        #[cfg(feature = "tls")]
        let socket = match (socket, tls) {
            (Accepting::Tcp(listener), Some(config)) => Accepting::Tls(tls::Acceptor::start(
                listener,
                config,
                options,
                name.to_string(),
            )?),
            (socket, _) => socket,
        };
        Ok(Listener {
            name,
            mode: options.mode,
            max_message_size: options.max_message_size,
            socket,
        })
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match &self.socket {
            Accepting::Tcp(listener) => loop {
                match listener.accept() {
                    Ok((tcp, peer)) => {
                        return Stream::new(Wire::Tcp(tcp), peer, self.mode, self.max_message_size);
                    }
                    // A client that gave up between its connect and this accept.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(context(e, format!("cannot accept on {}", self.name))),
                }
            },
            #[cfg(feature = "tls")]
            Accepting::Tls(acceptor) => {
                let (conn, peer) = acceptor.accept()?;
                Stream::new(
                    Wire::Tls(Box::new(conn)),
                    peer,
                    self.mode,
                    self.max_message_size,
                )
            }
        }
    }

    pub(crate) fn name(&self) -> &PipeName {
        &self.name
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            Accepting::Tcp(listener) => listener.local_addr(),
            #[cfg(feature = "tls")]
            Accepting::Tls(acceptor) => Ok(acceptor.local_addr()),
        }
    }

    #[cfg(unix)]
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.socket {
            Accepting::Tcp(listener) => std::os::fd::AsFd::as_fd(listener),
            #[cfg(feature = "tls")]
            Accepting::Tls(acceptor) => std::os::fd::AsFd::as_fd(acceptor.socket()),
        }
    }
}

/// A listening socket for `addr`, what it serves, and its TLS configuration.
struct Bound {
    listener: TcpListener,
    name: PipeName,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Checks the options, resolves `addr`, refuses what must not be exposed, builds the TLS
/// configuration (reading the PEM files) and binds the first address that takes it.
fn bind(addr: &NetAddress, options: &ListenerOptions) -> io::Result<Bound> {
    options.validate()?;
    #[cfg(not(feature = "tls"))]
    if addr.is_tls() {
        return Err(no_tls(addr));
    }
    let candidates = resolve(addr)?;
    check_exposure(addr, &candidates, options)?;
    #[cfg(feature = "tls")]
    let tls = if addr.is_tls() {
        Some(tls::server_config(options)?)
    } else {
        None
    };
    let mut last = None;
    for candidate in &candidates {
        match TcpListener::bind(candidate) {
            Ok(listener) => {
                return Ok(Bound {
                    name: served_name(addr, listener.local_addr()?)?,
                    listener,
                    #[cfg(feature = "tls")]
                    tls,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::ErrorKind::AddrNotAvailable.into());
    Err(context(e, format!("cannot listen on {addr}")))
}

/// Refuses a plain `tcp://` listener on an address other than loopback, unless the options
/// allow it.
fn check_exposure(
    addr: &NetAddress,
    candidates: &[SocketAddr],
    options: &ListenerOptions,
) -> io::Result<()> {
    if !addr.is_tls()
        && !options.net.insecure_network
        && let Some(open) = candidates.iter().find(|a| !a.ip().is_loopback())
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to listen on {addr} ({open}): plain TCP has no encryption \
                 and no authentication, so a tcp:// listener binds loopback only; use \
                 tls:// across machines, or allow it with \
                 ListenerOptions::insecure_network (pipekit listen --insecure)"
            ),
        ));
    }
    Ok(())
}

/// The name a listener of `addr` serves once bound at `local`: with the port it got when
/// `addr` asked for port 0.
fn served_name(addr: &NetAddress, local: SocketAddr) -> io::Result<PipeName> {
    if addr.port() == 0 {
        let scheme = if addr.is_tls() { "tls" } else { "tcp" };
        PipeName::parse(&format!("{scheme}://{local}"))
    } else {
        PipeName::parse(&addr.to_string())
    }
}

/// The error for a network-only call (`what`) on a local pipe.
pub(crate) fn network_only(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is for tcp:// and tls:// connections; this is a local pipe"),
    )
}

/// A write that found the peer gone: `BrokenPipe`, as on every local transport.
fn peer_gone(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => context_kind(
            io::ErrorKind::BrokenPipe,
            e,
            "the peer has closed the connection",
        ),
        _ => e,
    }
}

#[cfg(not(feature = "tls"))]
fn no_tls(addr: &NetAddress) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{addr} needs TLS, and pipekit was built without its `tls` feature"),
    )
}

/// The addresses `addr` names (a host name may have several).
fn resolve(addr: &NetAddress) -> io::Result<Vec<SocketAddr>> {
    let found = (addr.host(), addr.port()).to_socket_addrs();
    resolved(addr, found.map(Iterator::collect))
}

/// What a lookup of `addr` found: at least one address, or the error that says why not.
fn resolved(addr: &NetAddress, found: io::Result<Vec<SocketAddr>>) -> io::Result<Vec<SocketAddr>> {
    let found = found.map_err(|e| context(e, format!("cannot resolve the host of {addr}")))?;
    if found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the host of {addr} has no address"),
        ));
    }
    Ok(found)
}

/// Connects to `addr` with `options`: waits while nobody listens, up to `options.wait`.
pub(crate) fn connect(addr: &NetAddress, options: &ConnectOptions) -> io::Result<Stream> {
    options.validate()?;
    #[cfg(not(feature = "tls"))]
    if addr.is_tls() {
        return Err(no_tls(addr));
    }
    #[cfg(feature = "tls")]
    let tls = if addr.is_tls() {
        Some(tls::client_config(options)?)
    } else {
        None
    };
    let start = Instant::now();
    let deadline = start + options.wait.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
    let candidates = resolve(addr)?;
    let mut backoff = Backoff::until(deadline);
    let (tcp, peer) = loop {
        match connect_any(&candidates, deadline) {
            Ok(found) => break found,
            Err(e) => std::thread::sleep(retry(addr, e, options, &mut backoff, start)?),
        }
    };
    #[cfg(feature = "tls")]
    if let Some(config) = tls {
        let server_name = options.net.server_name.as_deref().unwrap_or(addr.host());
        let conn = tls::connect(tcp, config, server_name, options.mode, deadline)
            .map_err(|e| context(e, format!("TLS with {addr} failed")))?;
        return Stream::new(
            Wire::Tls(Box::new(conn)),
            peer,
            options.mode,
            options.max_message_size,
        );
    }
    let wire = Wire::Tcp(tcp);
    Stream::new(wire, peer, options.mode, options.max_message_size)
}

/// After a failed connect attempt: the pause before the next one while the wait lasts and
/// nobody listens, or the error to report.
fn retry(
    addr: &NetAddress,
    e: io::Error,
    options: &ConnectOptions,
    backoff: &mut Backoff,
    start: Instant,
) -> io::Result<Duration> {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => match options.wait {
            Some(wait) => backoff.next_pause().ok_or_else(|| {
                context_kind(
                    io::ErrorKind::TimedOut,
                    e,
                    format!("nobody served {addr} within {wait:?}"),
                )
            }),
            None => Err(context_kind(
                io::ErrorKind::NotFound,
                e,
                format!("nobody serves {addr}"),
            )),
        },
        io::ErrorKind::TimedOut => Err(context(
            e,
            format!("cannot reach {addr} within {:?}", start.elapsed()),
        )),
        _ => Err(context(e, format!("cannot connect to {addr}"))),
    }
}

/// The shortest time a connect attempt is given: a host that neither accepts nor refuses
/// within it cannot be reached.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// The first of `candidates` that accepts a connection, each attempt given the time left
/// before `deadline` (at least [`MIN_ATTEMPT`]).
fn connect_any(
    candidates: &[SocketAddr],
    deadline: Instant,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last = None;
    for candidate in candidates {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(candidate, left.max(MIN_ATTEMPT)) {
            Ok(tcp) => return Ok((tcp, *candidate)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::TimedOut.into()))
}

/// What carries the bytes of a connection.
#[derive(Debug)]
enum Wire {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::Conn>),
}

impl Wire {
    fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Tcp(tcp) => tcp,
            #[cfg(feature = "tls")]
            Wire::Tls(conn) => conn.tcp(),
        }
    }
}

impl Read for &Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = match *self {
            Wire::Tcp(tcp) => (&*tcp).read(buf),
            #[cfg(feature = "tls")]
            Wire::Tls(conn) => conn.read(buf),
        };
        got.map_err(timed_out)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match *self {
            Wire::Tcp(tcp) => (&*tcp).read_vectored(bufs).map_err(timed_out),
            #[cfg(feature = "tls")]
            Wire::Tls(_) => {
                let buf = bufs.iter_mut().find(|b| !b.is_empty());
                buf.map_or(Ok(0), |buf| self.read(buf))
            }
        }
    }
}

impl Write for &Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let put = match *self {
            Wire::Tcp(tcp) => (&*tcp).write_vectored(bufs),
            #[cfg(feature = "tls")]
            Wire::Tls(conn) => conn.write_vectored(bufs),
        };
        put.map_err(|e| timed_out(peer_gone(e)))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking socket reports its timeout as `WouldBlock` on Unix (`EAGAIN`): pipekit says
/// `TimedOut` on every OS.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        context_kind(io::ErrorKind::TimedOut, e, "the timeout ran out")
    } else {
        e
    }
}

/// One `tcp://` or `tls://` connection; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    wire: Wire,
    peer: SocketAddr,
    mode: Mode,
    max_message_size: usize,
    reader: Mutex<FrameReader>,
    writer: Mutex<FrameWriter>,
}

impl Shared {
    #[cfg(feature = "tokio")]
    fn into_parts(self) -> (Wire, SocketAddr, Mode, usize) {
        (self.wire, self.peer, self.mode, self.max_message_size)
    }
}

impl Stream {
    fn new(
        wire: Wire,
        peer: SocketAddr,
        mode: Mode,
        max_message_size: usize,
    ) -> io::Result<Stream> {
        if mode == Mode::Messages {
            wire.tcp().set_nodelay(true)?;
        }
        Ok(Stream {
            shared: Arc::new(Shared {
                wire,
                peer,
                mode,
                max_message_size,
                reader: Mutex::new(FrameReader::new(max_message_size)),
                writer: Mutex::new(FrameWriter::new(max_message_size)),
            }),
        })
    }

    pub(crate) fn mode(&self) -> Mode {
        self.shared.mode
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    pub(crate) fn send(&self, msg: &[u8]) -> io::Result<()> {
        if self.shared.mode != Mode::Messages {
            return Err(wrong_mode("send", self.shared.mode));
        }
        lock(&self.shared.writer).send(&mut &self.shared.wire, msg)
    }

    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.shared.mode != Mode::Messages {
            return Err(wrong_mode("recv", self.shared.mode));
        }
        lock(&self.shared.reader).recv(&mut &self.shared.wire, buf)
    }

    pub(crate) fn recv_to_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        if self.shared.mode != Mode::Messages {
            return Err(wrong_mode("recv_to_vec", self.shared.mode));
        }
        lock(&self.shared.reader).recv_to_vec(&mut &self.shared.wire, buf)
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match &self.shared.wire {
            Wire::Tcp(tcp) => tcp.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Wire::Tls(conn) => conn.shutdown_write(),
        }
    }

    pub(crate) fn peer_credentials(&self) -> PeerCredentials {
        PeerCredentials::default()
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.wire.tcp().local_addr()
    }

    pub(crate) fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.shared.wire {
            Wire::Tcp(_) => None,
            #[cfg(feature = "tls")]
            Wire::Tls(conn) => conn.peer_certificate(),
        }
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.shared.wire.tcp().set_read_timeout(timeout)
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.shared.wire.tcp().set_write_timeout(timeout)
    }

    #[cfg(unix)]
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.shared.wire.tcp())
    }

    #[cfg(windows)]
    pub(crate) fn tcp(&self) -> &TcpStream {
        self.shared.wire.tcp()
    }
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(invalid_input(
            "a timeout of zero is not allowed (use None to wait forever)",
        ));
    }
    Ok(())
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.shared.mode {
            Mode::Messages => Ok(self.recv(buf)?.unwrap_or(0)),
            _ => (&self.shared.wire).read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self.shared.mode {
            Mode::Messages => {
                let buf = bufs.iter_mut().find(|b| !b.is_empty());
                buf.map_or(Ok(0), |buf| self.read(buf))
            }
            _ => (&self.shared.wire).read_vectored(bufs),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.shared.mode {
            Mode::Messages => self.send(buf).map(|()| buf.len()),
            _ => (&self.shared.wire).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.shared.mode {
            Mode::Messages => {
                let buf = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &**b);
                self.write(buf)
            }
            _ => (&self.shared.wire).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
