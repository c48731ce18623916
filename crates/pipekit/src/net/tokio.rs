//! `tcp://` and `tls://` on Tokio's reactor: `tokio::net` sockets, TLS from `tokio-rustls`
//! with the configuration the blocking API builds, and the same framing, written as poll
//! functions whose state lives in the stream (so a cancelled `recv` or `send` loses nothing).

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use pipekit_core::backoff::Backoff;
use pipekit_core::error::{closed_mid_message, context, wrong_mode};
use pipekit_core::framing::{HEADER_LEN, decode_header, encode_header};
use pipekit_core::net::DEFAULT_HANDSHAKE_TIMEOUT;
use pipekit_core::{
    ConnectOptions, ListenerOptions, MessageTooLarge, Mode, NetAddress, PeerCredentials, PipeName,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How much a read asks for beyond the frame it needs, so small messages take few calls.
const READ_AHEAD: usize = 16 * 1024;

/// An async `tcp://` or `tls://` server.
#[derive(Debug)]
pub(crate) struct Listener {
    name: PipeName,
    local: SocketAddr,
    mode: Mode,
    max_message_size: usize,
    accepting: Accepting,
}

#[derive(Debug)]
enum Accepting {
    Tcp(TcpListener),
    /// Handshakes run as tasks of their own; finished ones wait here.
    #[cfg(feature = "tls")]
    Tls {
        ready: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(Io, SocketAddr)>>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(feature = "tls")]
        if let Accepting::Tls { task, .. } = &self.accepting {
            task.abort();
        }
    }
}

impl Listener {
    /// Binds `addr`. Must run inside a Tokio runtime with I/O enabled.
    pub(crate) fn bind(addr: &NetAddress, options: &ListenerOptions) -> io::Result<Listener> {
        let super::Bound {
            listener,
            name,
            #[cfg(feature = "tls")]
            tls,
        } = super::bind(addr, options)?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let accepting = Accepting::Tcp(listener);
        #[cfg(feature = "tls")]
        let accepting = match (accepting, tls) {
            (Accepting::Tcp(listener), Some(config)) => {
                let (done, ready) = tokio::sync::mpsc::channel(16);
                let task = tokio::spawn(accept_tls(
                    listener,
                    tokio_rustls::TlsAcceptor::from(config),
                    options.net.handshake_timeout,
                    done,
                ));
                Accepting::Tls {
                    ready: tokio::sync::Mutex::new(ready),
                    task,
                }
            }
            (accepting, _) => accepting,
        };
        Ok(Listener {
            name,
            local,
            mode: options.mode,
            max_message_size: options.max_message_size,
            accepting,
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        let (io, peer) = match &self.accepting {
            Accepting::Tcp(listener) => loop {
                match listener.accept().await {
                    Ok((tcp, peer)) => break (Io::Tcp(tcp), peer),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                    Err(e) => return Err(context(e, format!("cannot accept on {}", self.name))),
                }
            },
            #[cfg(feature = "tls")]
            Accepting::Tls { ready, .. } => ready.lock().await.recv().await.ok_or_else(|| {
                io::Error::other(format!("the accepting task of {} has stopped", self.name))
            })?,
        };
        Stream::new(io, peer, self.mode, self.max_message_size)
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Accepts TCP connections and runs each TLS handshake as a task of its own, with a deadline,
/// at most [`MAX_HANDSHAKES`](super::tls::MAX_HANDSHAKES) at once.
#[cfg(feature = "tls")]
async fn accept_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    timeout: std::time::Duration,
    done: tokio::sync::mpsc::Sender<(Io, SocketAddr)>,
) {
    let running = std::sync::Arc::new(tokio::sync::Semaphore::new(super::tls::MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // Out of descriptors or memory: give the system a moment rather than spin.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = std::sync::Arc::clone(&running).try_acquire_owned() else {
            continue; // Too many handshakes at once: this client is dropped.
        };
        let (acceptor, done) = (acceptor.clone(), done.clone());
        tokio::spawn(async move {
            let finished = tokio::time::timeout(timeout, acceptor.accept(tcp)).await;
            if let Ok(Ok(tls)) = finished {
                let _ = done.send((Io::Tls(Box::new(tls.into())), peer)).await;
            }
            // Held until `accept` has the connection, as in the blocking listener.
            drop(permit);
        });
    }
}

/// Connects to `addr` with `options`, waiting while nobody listens, up to `options.wait`.
pub(crate) async fn connect(addr: &NetAddress, options: &ConnectOptions) -> io::Result<Stream> {
    options.validate()?;
    #[cfg(not(feature = "tls"))]
    if addr.is_tls() {
        return Err(super::no_tls(addr));
    }
    #[cfg(feature = "tls")]
    let tls = if addr.is_tls() {
        Some(super::tls::client_config(options)?)
    } else {
        None
    };
    let start = Instant::now();
    let deadline = start + options.wait.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
    let found = tokio::net::lookup_host((addr.host(), addr.port())).await;
    let candidates = super::resolved(addr, found.map(Iterator::collect))?;
    let mut backoff = Backoff::until(deadline);
    let (tcp, peer) = loop {
        match connect_any(&candidates, deadline).await {
            Ok(found) => break found,
            Err(e) => {
                let pause = super::retry(addr, e, options, &mut backoff, start)?;
                tokio::time::sleep(pause).await;
            }
        }
    };
    #[cfg(feature = "tls")]
    if let Some(config) = tls {
        let server_name = options.net.server_name.as_deref().unwrap_or(addr.host());
        let tls = handshake(tcp, config, server_name, options.mode, deadline)
            .await
            .map_err(|e| context(e, format!("TLS with {addr} failed")))?;
        return Stream::new(
            Io::Tls(Box::new(tls)),
            peer,
            options.mode,
            options.max_message_size,
        );
    }
    Stream::new(Io::Tcp(tcp), peer, options.mode, options.max_message_size)
}

async fn connect_any(
    candidates: &[SocketAddr],
    deadline: Instant,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last = None;
    for candidate in candidates {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.max(super::MIN_ATTEMPT), TcpStream::connect(candidate))
            .await
        {
            Ok(Ok(tcp)) => return Ok((tcp, *candidate)),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::TimedOut.into()))
}

#[cfg(feature = "tls")]
async fn handshake(
    tcp: TcpStream,
    config: std::sync::Arc<rustls::ClientConfig>,
    server_name: &str,
    mode: Mode,
    deadline: Instant,
) -> io::Result<tokio_rustls::TlsStream<TcpStream>> {
    let name = super::tls::server_name_of(server_name)?;
    let left = deadline.saturating_duration_since(Instant::now());
    let connecting = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = match tokio::time::timeout(left.max(super::MIN_ATTEMPT), connecting).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(super::tls::classify(e)),
        Err(_) => return Err(super::tls::too_slow()),
    };
    super::tls::check_mode(tls.get_ref().1.alpn_protocol(), mode)?;
    Ok(tls.into())
}

/// What carries the bytes of an async connection.
#[derive(Debug)]
enum Io {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Tcp(tcp) => tcp,
            #[cfg(feature = "tls")]
            Io::Tls(tls) => tls.get_ref().0,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let read = match self {
            Io::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Io::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        };
        #[cfg(feature = "tls")]
        let read = read.map_err(|e| super::tls::no_close_notify(super::tls::classify(e)));
        read
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = match self {
            Io::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Io::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        };
        written.map_err(super::peer_gone)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Io::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            #[cfg(feature = "tls")]
            Io::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
        .map_err(super::peer_gone)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Io::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Io::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

/// One async `tcp://` or `tls://` connection.
#[derive(Debug)]
pub(crate) struct Stream {
    io: Io,
    peer: SocketAddr,
    mode: Mode,
    max_message_size: usize,
    /// Bytes read and not yet delivered: `read[start..end]` (message mode).
    read: Vec<u8>,
    start: usize,
    end: usize,
    /// The unsent tail of a frame the socket took only in part: `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
}

impl Stream {
    fn new(io: Io, peer: SocketAddr, mode: Mode, max_message_size: usize) -> io::Result<Stream> {
        if mode == Mode::Messages {
            io.tcp().set_nodelay(true)?;
        }
        Ok(Stream {
            io,
            peer,
            mode,
            max_message_size,
            read: Vec::new(),
            start: 0,
            end: 0,
            out: Vec::new(),
            sent: 0,
        })
    }

    /// Makes a blocking `tcp://` stream async. A `tls://` one cannot be (its session lives
    /// in the blocking stream): connect with the async API instead.
    pub(crate) fn from_blocking(stream: super::Stream) -> io::Result<Stream> {
        let shared = std::sync::Arc::try_unwrap(stream.shared).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "this connection has other handles (try_clone); it cannot become async",
            )
        })?;
        let (wire, peer, mode, max) = shared.into_parts();
        match wire {
            super::Wire::Tcp(tcp) => {
                tcp.set_nonblocking(true)?;
                Stream::new(Io::Tcp(TcpStream::from_std(tcp)?), peer, mode, max)
            }
            #[cfg(feature = "tls")]
            super::Wire::Tls(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a blocking tls:// connection cannot become async: connect (or bind) with \
                 pipekit::tokio",
            )),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn peer_credentials(&self) -> PeerCredentials {
        PeerCredentials::default()
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.tcp().local_addr()
    }

    pub(crate) fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.io {
            Io::Tcp(_) => None,
            #[cfg(feature = "tls")]
            Io::Tls(tls) => {
                let certs = match &**tls {
                    tokio_rustls::TlsStream::Client(c) => c.get_ref().1.peer_certificates(),
                    tokio_rustls::TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
                };
                certs?.first().map(|c| c.to_vec())
            }
        }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The length of the frame at the front, once its header has arrived.
    fn frame_len(&self) -> io::Result<Option<usize>> {
        if self.buffered() < HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.read[self.start..self.start + HEADER_LEN]);
        decode_header(header, self.max_message_size).map(Some)
    }

    /// Reads more, aiming at `want` bytes buffered; `Ok(false)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<bool>> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 {
            self.read.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let room = want.max(self.end + READ_AHEAD);
        if self.read.len() < room {
            self.read.resize(room, 0);
        }
        let mut buf = ReadBuf::new(&mut self.read[self.end..]);
        ready!(self.io.poll_read(cx, &mut buf))?;
        let got = buf.filled().len();
        self.end += got;
        Poll::Ready(Ok(got > 0))
    }

    /// Waits until a whole frame is buffered: its length, or `None` at a clean end.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        if self.mode != Mode::Messages {
            return Poll::Ready(Err(wrong_mode("recv", self.mode)));
        }
        loop {
            let len = self.frame_len()?;
            let need = HEADER_LEN + len.unwrap_or(0);
            if len.is_some() && self.buffered() >= need {
                return Poll::Ready(Ok(len));
            }
            if !ready!(self.poll_fill(cx, need))? {
                return Poll::Ready(match self.buffered() {
                    0 => Ok(None),
                    n => Err(closed_mid_message(n.saturating_sub(HEADER_LEN), len)),
                });
            }
        }
    }

    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        let Some(len) = ready!(self.poll_frame(cx))? else {
            return Poll::Ready(Ok(None));
        };
        if len > buf.len() {
            return Poll::Ready(Err(MessageTooLarge::error(len, buf.len())));
        }
        let from = self.start + HEADER_LEN;
        buf[..len].copy_from_slice(&self.read[from..from + len]);
        self.start = from + len;
        Poll::Ready(Ok(Some(len)))
    }

    pub(crate) fn poll_recv_to_vec(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        let Some(len) = ready!(self.poll_frame(cx))? else {
            buf.clear();
            return Poll::Ready(Ok(None));
        };
        let from = self.start + HEADER_LEN;
        buf.clear();
        buf.extend_from_slice(&self.read[from..from + len]);
        self.start = from + len;
        Poll::Ready(Ok(Some(len)))
    }

    /// Writes the kept tail of a frame.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(
                self.io
                    .poll_write_vectored(cx, &[IoSlice::new(&self.out[self.sent..])])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `msg` as one frame: `Ready(Ok(()))` once the socket (or, for a tail it could
    /// not take yet, the stream) has all of it; `poll_flush` writes such a tail.
    pub(crate) fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        if self.mode != Mode::Messages {
            return Poll::Ready(Err(wrong_mode("send", self.mode)));
        }
        let header = encode_header(msg.len(), self.max_message_size)?;
        ready!(self.poll_drain(cx))?;
        let total = HEADER_LEN + msg.len();
        let mut written = 0;
        while written < total {
            let bufs = if written < HEADER_LEN {
                [IoSlice::new(&header[written..]), IoSlice::new(msg)]
            } else {
                [
                    IoSlice::new(&msg[written - HEADER_LEN..]),
                    IoSlice::new(&[]),
                ]
            };
            match self.io.poll_write_vectored(cx, &bufs) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Nothing taken yet: the message is not either.
                Poll::Pending if written == 0 => return Poll::Pending,
                Poll::Pending => {
                    for buf in &bufs {
                        self.out.extend_from_slice(buf);
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        poll_fn(|cx| self.poll_send(cx, msg)).await?;
        poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)).await
    }

    pub(crate) async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    pub(crate) async fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        poll_fn(|cx| self.poll_recv_to_vec(cx, buf)).await
    }
}

/// A TLS stream dropped without `shutdown` still says `close_notify`, if the socket takes it
/// at once (as the blocking API does), so the peer sees a clean end rather than a cut.
#[cfg(feature = "tls")]
impl Drop for Stream {
    fn drop(&mut self) {
        if let Io::Tls(tls) = &mut self.io {
            match &mut **tls {
                tokio_rustls::TlsStream::Client(c) => {
                    let (tcp, conn) = c.get_mut();
                    close_notify(tcp, conn);
                }
                tokio_rustls::TlsStream::Server(s) => {
                    let (tcp, conn) = s.get_mut();
                    close_notify(tcp, conn);
                }
            }
        }
    }
}

/// Queues `close_notify` on `conn` and writes it to `tcp` if the socket takes it at once.
#[cfg(feature = "tls")]
fn close_notify<D>(tcp: &TcpStream, conn: &mut rustls::ConnectionCommon<D>) {
    conn.send_close_notify();
    let mut out = Vec::new();
    while conn.wants_write() {
        if conn.write_tls(&mut out).is_err() {
            return;
        }
    }
    let _ = tcp.try_write(&out);
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.mode {
            Mode::Messages => {
                let len = ready!(this.poll_recv(cx, buf.initialize_unfilled()))?;
                buf.advance(len.unwrap_or(0));
                Poll::Ready(Ok(()))
            }
            _ => this.io.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.mode {
            Mode::Messages => this.poll_send(cx, buf).map_ok(|()| buf.len()),
            _ => this.io.poll_write_vectored(cx, &[IoSlice::new(buf)]),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.io.poll_shutdown(cx)
    }
}
