//! `tls://`: rustls over a blocking `TcpStream`.
//!
//! A connection is shared by a reading and a writing thread (`&Stream` is `Read + Write`),
//! but a rustls connection is one state machine. So the state sits behind a lock that is never
//! held while waiting for the network: a reader waits for bytes with `peek` and only then
//! takes the lock to decrypt them; a writer encrypts under the lock and sends the records
//! after it has let go (under a second lock, `sending`, which keeps records in the order they
//! were made). Lock order: `reading`, then `sending`, then `state`.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pipekit_core::error::{context, context_kind, invalid_input};
use pipekit_core::{ConnectOptions, ListenerOptions, Mode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection,
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, ServerConnection,
    SignatureScheme,
};

use super::lock::lock;

/// The most handshakes a listener runs (or holds finished, beyond `READY_BACKLOG`, for an
/// `accept` that does not come) at once; a client beyond them is dropped at once.
pub(super) const MAX_HANDSHAKES: usize = 64;

/// Finished handshakes waiting for `accept`.
const READY_BACKLOG: usize = 16;

/// The ALPN protocol that names a mode.
pub(super) fn alpn(mode: Mode) -> Vec<u8> {
    match mode {
        Mode::Messages => b"pipekit-messages".to_vec(),
        _ => b"pipekit-bytes".to_vec(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error, what: impl fmt::Display) -> io::Error {
    invalid_input(format!("{what}: {e}"))
}

fn certificates(path: &Path, what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn fmt::Display| {
        invalid_input(format!("cannot read the {what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e, path, what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"the file holds no PEM certificate"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(e, path, "private key"))
}

fn pem_error(e: rustls::pki_types::pem::Error, path: &Path, what: &str) -> io::Error {
    match e {
        rustls::pki_types::pem::Error::Io(io) => {
            context(io, format!("cannot read the {what} {}", path.display()))
        }
        rustls::pki_types::pem::Error::NoItemsFound => invalid_input(format!(
            "the {what} file {} holds no PEM {what}",
            path.display()
        )),
        other => invalid_input(format!(
            "cannot read the {what} {}: {other:?}",
            path.display()
        )),
    }
}

fn roots(path: &Path) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "CA certificate")? {
        roots.add(cert).map_err(|e| {
            tls_error(
                e,
                format_args!("the CA file {} is not usable", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// The system's roots, read once per process (the first time a client needs them).
fn system_roots() -> io::Result<Arc<RootCertStore>> {
    static ROOTS: std::sync::OnceLock<Arc<RootCertStore>> = std::sync::OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return Ok(Arc::clone(roots));
    }
    let roots = Arc::new(load_system_roots()?);
    Ok(Arc::clone(ROOTS.get_or_init(|| roots)))
}

fn load_system_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |e| format!(" ({e})"));
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "this system has no trusted CA certificates{why}; name a CA file \
                 (ConnectOptions::tls_ca, pipekit --ca)"
            ),
        ));
    }
    Ok(roots)
}

/// The server side of a `tls://` listener, from its options.
pub(super) fn server_config(options: &ListenerOptions) -> io::Result<Arc<ServerConfig>> {
    let net = &options.net;
    let (Some(cert), Some(key)) = (&net.certificate, &net.key) else {
        return Err(invalid_input(
            "a tls:// listener needs a certificate and its private key \
             (ListenerOptions::tls_certificate; pipekit listen --cert FILE --key FILE)",
        ));
    };
    if !net.allowed_clients.is_empty() && net.client_ca.is_none() {
        return Err(invalid_input(
            "allowed client names need client certificates: set a client CA too \
             (ListenerOptions::tls_client_ca)",
        ));
    }
    let chain = certificates(cert, "certificate")?;
    let key_der = private_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e, "TLS setup"))?;
    let builder = match &net.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| {
                        invalid_input(format!("the client CA {} is not usable: {e}", ca.display()))
                    })?;
            let verifier: Arc<dyn ClientCertVerifier> = if net.allowed_clients.is_empty() {
                verifier
            } else {
                Arc::new(NamedClients::new(verifier, &net.allowed_clients)?)
            };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
        tls_error(
            e,
            format_args!(
                "the certificate {} and the key {} do not make a server identity",
                cert.display(),
                key.display()
            ),
        )
    })?;
    config.alpn_protocols = vec![alpn(options.mode)];
    Ok(Arc::new(config))
}

/// The client side of a `tls://` connection, from its options.
pub(super) fn client_config(options: &ConnectOptions) -> io::Result<Arc<ClientConfig>> {
    let net = &options.net;
    let roots = match &net.ca {
        Some(ca) => Arc::new(roots(ca)?),
        None => system_roots()?,
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| invalid_input(format!("the CA certificates are not usable: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e, "TLS setup"))?
        .with_webpki_verifier(verifier);
    let mut config = match (&net.certificate, &net.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert, "client certificate")?, private_key(key)?)
            .map_err(|e| {
                tls_error(
                    e,
                    format_args!(
                        "the client certificate {} and the key {} do not make an identity",
                        cert.display(),
                        key.display()
                    ),
                )
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(invalid_input(
                "a client certificate needs its key, and a key its certificate",
            ));
        }
    };
    config.alpn_protocols = vec![alpn(options.mode)];
    Ok(Arc::new(config))
}

/// Runs the handshake of `conn` over `tcp` until it is done or `deadline` passes.
fn handshake(conn: &mut Connection, tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(too_slow());
        }
        tcp.set_read_timeout(Some(left))?;
        tcp.set_write_timeout(Some(left))?;
        if let Err(e) = conn.complete_io(&mut &*tcp) {
            return Err(classify(e));
        }
    }
    while conn.wants_write() {
        conn.write_tls(&mut &*tcp).map_err(classify)?;
    }
    tcp.set_read_timeout(None)?;
    tcp.set_write_timeout(None)
}

/// Says what a TLS failure means: an untrusted certificate is `PermissionDenied`, a mode the
/// server does not serve `InvalidInput`.
pub(super) fn classify(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        return context_kind(
            io::ErrorKind::TimedOut,
            e,
            "the TLS handshake did not finish in time",
        );
    }
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return e;
    };
    let (kind, what) = match tls {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => (
            io::ErrorKind::PermissionDenied,
            "the peer's certificate is not trusted",
        ),
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate,
        ) => (
            io::ErrorKind::PermissionDenied,
            "the peer refused this end's certificate",
        ),
        rustls::Error::NoApplicationProtocol
        | rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => (
            io::ErrorKind::InvalidInput,
            "the two ends ask for different modes (bytes or messages)",
        ),
        _ => return e,
    };
    context_kind(kind, e, what)
}

/// Connects the client end of a `tls://` connection over `tcp`.
pub(super) fn connect(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    server_name: &str,
    mode: Mode,
    deadline: Instant,
) -> io::Result<Conn> {
    let client = ClientConnection::new(config, server_name_of(server_name)?)
        .map_err(|e| tls_error(e, "TLS setup"))?;
    let mut conn = Connection::Client(client);
    handshake(&mut conn, &tcp, deadline)?;
    check_mode(conn.alpn_protocol(), mode)?;
    Ok(Conn::new(tcp, conn))
}

/// The name a server's certificate must be valid for, from its text.
pub(super) fn server_name_of(text: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(text.to_owned()).map_err(|_| {
        invalid_input(format!(
            "{text:?} is not a host name or IP address a certificate can name"
        ))
    })
}

/// Checks the mode the server chose by ALPN (a server that chose none is taken at its word).
pub(super) fn check_mode(chosen: Option<&[u8]>, mode: Mode) -> io::Result<()> {
    if chosen.is_some_and(|p| p != alpn(mode).as_slice()) {
        return Err(invalid_input(
            "the server chose another mode than this end asked for",
        ));
    }
    Ok(())
}

/// A TLS read that found the connection ended without `close_notify`: `UnexpectedEof`, saying
/// what that may mean; other errors as they are.
pub(super) fn no_close_notify(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        context(
            e,
            "the peer closed the TLS connection without close_notify (it may have died, or \
             the connection was cut)",
        )
    } else {
        e
    }
}

/// The error for a handshake that did not finish before its deadline.
pub(super) fn too_slow() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the TLS handshake did not finish in time",
    )
}

/// One TLS connection over a blocking TCP stream, usable from a reading and a writing thread
/// at once.
pub(super) struct Conn {
    tcp: TcpStream,
    state: Mutex<Connection>,
    reading: Mutex<()>,
    /// Encrypted records on their way out; the lock orders them.
    sending: Mutex<Vec<u8>>,
    /// Set when records that were made could not all be sent: the session cannot go on.
    broken: AtomicBool,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl Conn {
    fn new(tcp: TcpStream, conn: Connection) -> Conn {
        Conn {
            tcp,
            state: Mutex::new(conn),
            reading: Mutex::new(()),
            sending: Mutex::new(Vec::new()),
            broken: AtomicBool::new(false),
        }
    }

    /// Sends `records` (made under the state lock, in order); a failure breaks the session,
    /// whose sequence numbers have moved on without them.
    fn send_records(&self, records: &[u8]) -> io::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed inside the TLS stream (a write timeout?); the \
                 connection cannot go on",
            ));
        }
        (&self.tcp).write_all(records).inspect_err(|_| {
            self.broken.store(true, Ordering::SeqCst);
        })
    }

    pub(super) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(super) fn peer_certificate(&self) -> Option<Vec<u8>> {
        let state = lock(&self.state);
        state.peer_certificates()?.first().map(|c| c.to_vec())
    }

    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _turn = lock(&self.reading);
        loop {
            match lock(&self.state).reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(no_close_notify(e)),
            }
            // Wait for bytes without the state lock, so that writers carry on meanwhile.
            let arrived = loop {
                match self.tcp.peek(&mut [0u8; 1]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            let mut state = lock(&self.state);
            if arrived == 0 {
                state.read_tls(&mut io::empty())?;
            } else {
                // The bytes are there: this read does not block.
                state.read_tls(&mut &self.tcp)?;
            }
            let processed = state.process_new_packets();
            let reply = state.wants_write();
            drop(state);
            if reply {
                // An alert, or a key update the peer asked for.
                self.send_pending()?;
            }
            if let Err(e) = processed {
                // TLS 1.3 clients finish their handshake first: a server's refusal of their
                // certificate is the first thing they read.
                return Err(classify(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }

    pub(super) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut out = lock(&self.sending);
        let taken = {
            let mut state = lock(&self.state);
            let taken = state.writer().write_vectored(bufs)?;
            out.clear();
            while state.wants_write() {
                state.write_tls(&mut *out)?;
            }
            taken
        };
        self.send_records(&out)?;
        Ok(taken)
    }

    /// Sends what the state has queued (alerts, key updates).
    fn send_pending(&self) -> io::Result<()> {
        let mut out = lock(&self.sending);
        out.clear();
        {
            let mut state = lock(&self.state);
            while state.wants_write() {
                state.write_tls(&mut *out)?;
            }
        }
        self.send_records(&out)
    }

    pub(super) fn shutdown_write(&self) -> io::Result<()> {
        lock(&self.state).send_close_notify();
        self.send_pending()?;
        self.tcp.shutdown(Shutdown::Write)
    }

    /// Says `close_notify` on the way out, without waiting for a peer that does not read.
    pub(super) fn close(&self) {
        let mut state = lock(&self.state);
        state.send_close_notify();
        let mut out = Vec::new();
        while state.wants_write() {
            if state.write_tls(&mut out).is_err() {
                return;
            }
        }
        drop(state);
        if self.tcp.set_nonblocking(true).is_ok() {
            let _ = (&self.tcp).write(&out);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

/// Accepts TCP connections on a thread and runs each TLS handshake on a thread of its own,
/// so that `accept` hands out finished connections and a client that stalls its handshake
/// holds up nobody.
pub(super) struct Acceptor {
    local: SocketAddr,
    /// The listening socket (the accepting thread has a duplicate).
    socket: TcpListener,
    ready: Mutex<mpsc::Receiver<(Conn, SocketAddr)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    name: String,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    pub(super) fn start(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        options: &ListenerOptions,
        name: String,
    ) -> io::Result<Acceptor> {
        let local = listener.local_addr()?;
        let socket = listener.try_clone()?;
        let (done, ready) = mpsc::sync_channel(READY_BACKLOG);
        let stop = Arc::new(AtomicBool::new(false));
        let timeout = options.net.handshake_timeout;
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("pipekit-tls-accept".into())
                .spawn(move || accept_loop(&listener, &config, timeout, &done, &stop))?
        };
        Ok(Acceptor {
            local,
            socket,
            ready: Mutex::new(ready),
            stop,
            thread: Some(thread),
            name,
        })
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) fn socket(&self) -> &TcpListener {
        &self.socket
    }

    pub(super) fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        lock(&self.ready).recv().map_err(|_| {
            io::Error::other(format!("the accepting thread of {} has stopped", self.name))
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread with a connection of our own.
        let mut wake = self.local;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    config: &Arc<ServerConfig>,
    timeout: Duration,
    done: &mpsc::SyncSender<(Conn, SocketAddr)>,
    stop: &AtomicBool,
) {
    let running = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (tcp, peer) = match accepted {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // Out of descriptors or memory: give the system a moment rather than spin.
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if running.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES {
            running.fetch_sub(1, Ordering::SeqCst);
            drop(tcp);
            continue;
        }
        let (config, done, count) = (Arc::clone(config), done.clone(), Arc::clone(&running));
        let spawned = thread::Builder::new()
            .name("pipekit-tls-handshake".into())
            .spawn(move || {
                // The place is held until `accept` has the connection: a server that stops
                // accepting holds at most MAX_HANDSHAKES + READY_BACKLOG of them.
                if let Ok(conn) = server_handshake(tcp, config, timeout) {
                    let _ = done.send((conn, peer));
                }
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn server_handshake(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> io::Result<Conn> {
    let server = ServerConnection::new(config).map_err(|e| tls_error(e, "TLS setup"))?;
    let mut conn = Connection::Server(server);
    handshake(&mut conn, &tcp, Instant::now() + timeout)?;
    Ok(Conn::new(tcp, conn))
}

/// A client verifier that also requires the certificate to be valid for one of some names.
#[derive(Debug)]
struct NamedClients {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ServerName<'static>>,
}

impl NamedClients {
    fn new(inner: Arc<dyn ClientCertVerifier>, names: &[String]) -> io::Result<NamedClients> {
        let allowed = names
            .iter()
            .map(|n| {
                ServerName::try_from(n.clone()).map_err(|_| {
                    invalid_input(format!("{n:?} is not a name a certificate can hold"))
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(NamedClients { inner, allowed })
    }
}

impl ClientCertVerifier for NamedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self
            .allowed
            .iter()
            .any(|name| cert.verify_is_valid_for_subject_name(name).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
