//! Transports every OS has: TCP and UDP over loopback, pipekit's `tcp://` and `tls://`
//! names, and the `interprocess` crate's local socket.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use pipekit::Mode;

use crate::transport::{Conn, Listen, Transport};
use crate::transports::pipekit::{self as pk, Api};
use crate::transports::wrap::{Bytes, Chunked};

/// TCP over loopback with `TCP_NODELAY` on both ends.
pub(crate) struct Tcp;

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp-nodelay"
    }

    fn about(&self) -> &'static str {
        "TCP over 127.0.0.1, TCP_NODELAY on both ends"
    }

    fn addr(&self, _unique: &str) -> String {
        String::from("127.0.0.1:0")
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        struct L(TcpListener);
        impl Listen for L {
            fn addr(&self) -> String {
                self.0
                    .local_addr()
                    .map_or_else(|_| String::new(), |a| a.to_string())
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let (s, _) = self.0.accept()?;
                s.set_nodelay(true)?;
                Ok(Box::new(Bytes(s)))
            }
        }
        Ok(Box::new(L(TcpListener::bind(addr)?)))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Box::new(Bytes(s)))
    }
}

/// pipekit message mode over `tcp://` (length-prefixed frames, `TCP_NODELAY`) or `tls://`
/// (the same inside TLS 1.3 from rustls, with a certificate the server makes for the run).
pub(crate) struct PipekitNet {
    name: &'static str,
    about: &'static str,
    tls: bool,
}

pub(crate) static PIPEKIT_NET: [PipekitNet; 2] = [
    PipekitNet {
        name: "pipekit-tcp",
        about: "pipekit message mode on tcp://127.0.0.1 (length-prefixed frames, TCP_NODELAY)",
        tls: false,
    },
    PipekitNet {
        name: "pipekit-tls",
        about: "pipekit message mode on tls://127.0.0.1 (rustls, TLS 1.3, AES-GCM by ring)",
        tls: true,
    },
];

/// The key, certificate and CA of a `tls://` row's server, in a directory removed with it.
struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    fn make() -> io::Result<TlsFiles> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let fail = |e: rcgen::Error| io::Error::other(format!("cannot make a certificate: {e}"));
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pkb-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let files = TlsFiles { dir };
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().map_err(fail)?;
        let ca = ca.self_signed(&ca_key).map_err(fail)?;
        let key = KeyPair::generate().map_err(fail)?;
        let cert = CertificateParams::new(vec![String::from("127.0.0.1")])
            .map_err(fail)?
            .signed_by(&key, &ca, &ca_key)
            .map_err(fail)?;
        std::fs::write(files.ca(), ca.pem())?;
        std::fs::write(files.dir.join("cert.pem"), cert.pem())?;
        std::fs::write(files.dir.join("key.pem"), key.serialize_pem())?;
        Ok(files)
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `tls://` row's listener with its files.
struct NetListener {
    inner: Box<dyn Listen>,
    _files: Option<TlsFiles>,
    _guard: Option<crate::cleanup::Guard>,
}

impl Listen for NetListener {
    fn addr(&self) -> String {
        self.inner.addr()
    }

    fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
        self.inner.accept()
    }
}

impl Transport for PipekitNet {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn baseline(&self) -> Option<&'static str> {
        Some("tcp-nodelay")
    }

    fn addr(&self, _unique: &str) -> String {
        String::from("127.0.0.1:0")
    }

    /// Listens on `addr`; the address clients get is the name served, and for `tls://` the
    /// CA file after a `|`.
    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (mut options, _) = pk::options(Mode::Messages, size);
        let files = self.tls.then(TlsFiles::make).transpose()?;
        let scheme = if let Some(files) = &files {
            options.tls_certificate(files.dir.join("cert.pem"), files.dir.join("key.pem"));
            "tls"
        } else {
            "tcp"
        };
        let listener = pipekit::Listener::bind_with(format!("{scheme}://{addr}"), &options)?;
        let mut served = listener.name().to_string();
        let guard = files.as_ref().map(|files| {
            served = format!("{served}|{}", files.ca().display());
            let dir = files.dir.clone();
            crate::cleanup::on_exit(move || {
                let _ = std::fs::remove_dir_all(&dir);
            })
        });
        Ok(Box::new(NetListener {
            inner: pk::listen(listener, &served, Api::Blocking),
            _files: files,
            _guard: guard,
        }))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, mut options) = pk::options(Mode::Messages, size);
        let name = match addr.split_once('|') {
            Some((name, ca)) => {
                options.tls_ca(ca);
                name
            }
            None => addr,
        };
        Ok(pk::conn(pipekit::Stream::connect_with(name, &options)?))
    }
}

/// The largest UDP payload over IPv4.
const UDP_MAX: usize = 65507;

/// How long a UDP end waits for a datagram before it calls one lost.
const UDP_PATIENCE: Duration = Duration::from_secs(2);

/// UDP over loopback. UDP has no flow control: a writer faster than its reader overflows the
/// reader's socket buffer and the kernel drops datagrams. So each end acknowledges what it
/// received on a second socket pair, and a writer keeps no more datagrams in flight than
/// half the reader's receive buffer holds — what any application that needs every datagram
/// must do. Chunks above 65507 bytes (the IPv4 limit) go as several datagrams.
pub(crate) struct Udp;

impl Transport for Udp {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn about(&self) -> &'static str {
        "UDP over 127.0.0.1, acknowledged windows (no loss), datagrams of up to 65507 B"
    }

    fn label(&self, size: usize) -> Option<String> {
        (size > UDP_MAX).then(|| {
            format!(
                "each {size}-byte chunk is {} datagrams (65507 B is UDP's limit)",
                size.div_ceil(UDP_MAX)
            )
        })
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, _unique: &str) -> String {
        String::from("127.0.0.1:0")
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        struct L {
            data: Option<UdpSocket>,
            acks: Option<UdpSocket>,
            size: usize,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                let port = |s: &Option<UdpSocket>| {
                    s.as_ref()
                        .and_then(|s| s.local_addr().ok())
                        .map_or(0, |a| a.port())
                };
                format!("127.0.0.1:{}:{}", port(&self.data), port(&self.acks))
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let (Some(data), Some(acks)) = (self.data.take(), self.acks.take()) else {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "one session per socket pair",
                    ));
                };
                // The client says hello on both sockets; answering on the data socket tells
                // it both are connected.
                let mut hello = [0u8; 1];
                let (_, from) = data.recv_from(&mut hello)?;
                data.connect(from)?;
                let (_, from) = acks.recv_from(&mut hello)?;
                acks.connect(from)?;
                data.send(&hello)?;
                UdpConn::boxed(data, acks, self.size)
            }
        }
        let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
        Ok(Box::new(L {
            data: Some(UdpSocket::bind((ip, 0))?),
            acks: Some(UdpSocket::bind((ip, 0))?),
            size,
        }))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad UDP address {addr:?}"),
            )
        };
        let mut parts = addr.rsplitn(3, ':');
        let (Some(acks), Some(data), Some(ip)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let at = |port: &str| -> io::Result<SocketAddr> {
            format!("{ip}:{port}").parse().map_err(|_| bad())
        };
        let (data_at, acks_at) = (at(data)?, at(acks)?);
        let data = UdpSocket::bind((data_at.ip(), 0))?;
        let acks = UdpSocket::bind((acks_at.ip(), 0))?;
        data.connect(data_at)?;
        acks.connect(acks_at)?;
        data.set_read_timeout(Some(UDP_PATIENCE))?;
        data.send(&[1])?;
        acks.send(&[1])?;
        let mut hello = [0u8; 1];
        data.recv(&mut hello)?;
        UdpConn::boxed(data, acks, size)
    }
}

/// One end of a UDP session: data on one socket, acknowledgements on the other.
struct UdpConn {
    data: UdpSocket,
    acks: UdpSocket,
    /// Datagrams sent, and how many of them the other end said it has.
    sent: u64,
    acked: u64,
    /// Datagrams received, and how often to say so.
    received: u64,
    every: u64,
    /// Datagrams allowed in flight.
    window: u64,
}

impl UdpConn {
    fn boxed(data: UdpSocket, acks: UdpSocket, size: usize) -> io::Result<Box<dyn Conn>> {
        let piece = size.clamp(8, UDP_MAX);
        let sock = socket2::SockRef::from(&data);
        // As large as the system allows an unprivileged process; what it allows is read back.
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        let rcvbuf = sock.recv_buffer_size()?;
        // A datagram costs the receive buffer more than its payload (about twice, for the
        // kernel's buffer rounding); half the buffer stays free.
        let window = (rcvbuf / (2 * 2 * (piece + 1024))).max(2) as u64;
        data.set_read_timeout(Some(UDP_PATIENCE))?;
        acks.set_read_timeout(Some(UDP_PATIENCE))?;
        let conn = UdpConn {
            data,
            acks,
            sent: 0,
            acked: 0,
            received: 0,
            every: (window / 2).max(1),
            window,
        };
        Ok(Box::new(Chunked {
            inner: conn,
            max: UDP_MAX,
        }))
    }
}

fn lost(e: io::Error) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no datagram for {} s: one was lost (raise net.core.rmem_max)",
                UDP_PATIENCE.as_secs()
            ),
        )
    } else {
        e
    }
}

impl Conn for UdpConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        while self.sent - self.acked >= self.window {
            let mut count = [0u8; 8];
            self.acks.recv(&mut count).map_err(lost)?;
            self.acked = self.acked.max(u64::from_be_bytes(count));
        }
        self.data.send(buf)?;
        self.sent += 1;
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = self.data.recv(buf).map_err(lost)?;
        if n != buf.len() {
            return Err(crate::transports::pipekit::wrong_length(buf.len(), n));
        }
        self.received += 1;
        if self.received.is_multiple_of(self.every) {
            self.acks.send(&self.received.to_be_bytes())?;
        }
        Ok(())
    }

    fn settings(&self) -> String {
        let rcvbuf = socket2::SockRef::from(&self.data)
            .recv_buffer_size()
            .unwrap_or(0);
        format!("SO_RCVBUF {rcvbuf}, window {} datagrams", self.window)
    }
}

/// The `interprocess` crate's local socket (a Unix-domain socket on Unix, a named pipe on
/// Windows), in its own byte-stream API.
pub(crate) struct InterprocessLocal;

impl InterprocessLocal {
    fn name_of(addr: &str) -> io::Result<interprocess::local_socket::Name<'_>> {
        use interprocess::local_socket::prelude::*;
        #[cfg(unix)]
        {
            addr.to_fs_name::<interprocess::local_socket::GenericFilePath>()
        }
        #[cfg(windows)]
        {
            addr.to_ns_name::<interprocess::local_socket::GenericNamespaced>()
        }
    }
}

impl Transport for InterprocessLocal {
    fn name(&self) -> &'static str {
        "interprocess-local-socket"
    }

    fn about(&self) -> &'static str {
        "the interprocess crate's local socket (a Unix socket, or a named pipe on Windows)"
    }

    fn addr(&self, unique: &str) -> String {
        if cfg!(unix) {
            std::env::temp_dir()
                .join(unique)
                .to_string_lossy()
                .into_owned()
        } else {
            unique.to_string()
        }
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        use interprocess::local_socket::ListenerOptions;
        let listener = ListenerOptions::new()
            .name(InterprocessLocal::name_of(addr)?)
            .create_sync()?;
        struct L {
            listener: interprocess::local_socket::Listener,
            addr: String,
            _guard: crate::cleanup::Guard,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                use interprocess::local_socket::traits::Listener as _;
                Ok(Box::new(Bytes(self.listener.accept()?)))
            }
        }
        let path = addr.to_string();
        let guard = crate::cleanup::on_exit(move || {
            if cfg!(unix) {
                let _ = std::fs::remove_file(&path);
            }
        });
        Ok(Box::new(L {
            listener,
            addr: addr.to_string(),
            _guard: guard,
        }))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        use interprocess::local_socket::prelude::*;
        let stream =
            interprocess::local_socket::Stream::connect(InterprocessLocal::name_of(addr)?)?;
        Ok(Box::new(Bytes(stream)))
    }
}
