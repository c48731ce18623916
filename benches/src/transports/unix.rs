//! Unix transports: pipekit's sockets and FIFOs, and the raw system calls beneath them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use nix::sys::socket::{self, sockopt};

use super::{TokioConn, TokioListen};
use pipekit::Mode;
use pipekit::os::unix::{Framing, ListenerExt, StreamExt, Transport as Kind, UnixOptions};

use super::{Conn, Listen, PipekitListen, Transport, pipekit_conn, pipekit_options};

/// pipekit over one of its Unix transports.
pub(crate) struct Pipekit {
    name: &'static str,
    mode: Mode,
    kind: Kind,
    framing: Framing,
    baseline: &'static str,
}

pub(crate) static PIPEKIT: [Pipekit; 5] = [
    Pipekit {
        name: "pipekit-uds-bytes",
        mode: Mode::Bytes,
        kind: Kind::Socket,
        framing: Framing::Native,
        baseline: "raw-uds",
    },
    Pipekit {
        name: "pipekit-seqpacket",
        mode: Mode::Messages,
        kind: Kind::Socket,
        framing: Framing::Native,
        baseline: "raw-seqpacket",
    },
    Pipekit {
        name: "pipekit-framed",
        mode: Mode::Messages,
        kind: Kind::Socket,
        framing: Framing::LengthPrefixed,
        baseline: "raw-uds",
    },
    Pipekit {
        name: "pipekit-fifo-bytes",
        mode: Mode::Bytes,
        kind: Kind::Fifo,
        framing: Framing::Native,
        baseline: "raw-fifo-1m",
    },
    Pipekit {
        name: "pipekit-fifo-messages",
        mode: Mode::Messages,
        kind: Kind::Fifo,
        framing: Framing::Native,
        baseline: "raw-fifo-1m",
    },
];

impl Pipekit {
    fn unix(&self) -> UnixOptions {
        let mut unix = UnixOptions::new();
        unix.transport(self.kind).framing(self.framing);
        unix
    }
}

impl Transport for Pipekit {
    fn name(&self) -> &'static str {
        self.name
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(self.baseline)
    }

    fn check(&self, _size: usize) -> Result<(), String> {
        if self.name == "pipekit-seqpacket" && !pipekit::os::unix::NATIVE_MESSAGES {
            return Err(String::from("this OS has no SOCK_SEQPACKET message mode"));
        }
        Ok(())
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (options, _) = pipekit_options(self.mode, size);
        Ok(Box::new(PipekitListen {
            listener: pipekit::Listener::bind_unix(addr, &options, &self.unix())?,
            addr: addr.to_string(),
        }))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, options) = pipekit_options(self.mode, size);
        Ok(pipekit_conn(pipekit::Stream::connect_unix(
            addr,
            &options,
            &self.unix(),
        )?))
    }
}

/// pipekit's Tokio API in message mode, each end driven by its own current-thread runtime:
/// what the async layer costs over the blocking API underneath it.
pub(crate) struct PipekitTokio {
    name: &'static str,
    kind: Kind,
    baseline: &'static str,
}

pub(crate) static TOKIO: [PipekitTokio; 2] = [
    PipekitTokio {
        name: "pipekit-seqpacket-tokio",
        kind: Kind::Socket,
        baseline: "pipekit-seqpacket",
    },
    PipekitTokio {
        name: "pipekit-fifo-messages-tokio",
        kind: Kind::Fifo,
        baseline: "pipekit-fifo-messages",
    },
];

impl Transport for PipekitTokio {
    fn name(&self) -> &'static str {
        self.name
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(self.baseline)
    }

    fn check(&self, size: usize) -> Result<(), String> {
        if self.kind == Kind::Socket && !pipekit::os::unix::NATIVE_MESSAGES {
            return Err(String::from("this OS has no SOCK_SEQPACKET message mode"));
        }
        let _ = size;
        Ok(())
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (options, _) = pipekit_options(Mode::Messages, size);
        let mut unix = UnixOptions::new();
        unix.transport(self.kind);
        Ok(Box::new(TokioListen(
            pipekit::Listener::bind_unix(addr, &options, &unix)?,
            addr.to_string(),
        )))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, options) = pipekit_options(Mode::Messages, size);
        TokioConn::boxed(pipekit::Stream::connect_with(addr, &options)?)
    }
}

/// The raw baselines on this OS.
pub(crate) static RAW: &[&dyn Transport] = &[
    &RawUds,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    &RawSeqpacket,
    &RawFifo { enlarged: false },
    &RawFifo { enlarged: true },
    #[cfg(any(target_os = "linux", target_os = "android"))]
    &PosixMq,
    &crate::shm::ShmRing,
];

fn temp_path(unique: &str) -> String {
    std::env::temp_dir()
        .join(unique)
        .to_string_lossy()
        .into_owned()
}

/// The kernel buffer sizes of `fd`: a pipe's capacity, or a socket's send/receive buffers.
pub(crate) fn fd_settings(fd: BorrowedFd<'_>) -> String {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(n) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ) {
        return format!("pipe capacity {n}");
    }
    match (
        socket::getsockopt(&fd, sockopt::SndBuf),
        socket::getsockopt(&fd, sockopt::RcvBuf),
    ) {
        (Ok(snd), Ok(rcv)) => format!("SO_SNDBUF {snd}, SO_RCVBUF {rcv}"),
        _ => String::new(),
    }
}

/// `std::os::unix::net::UnixStream`: the socket pipekit's byte mode runs on.
struct RawUds;

impl Transport for RawUds {
    fn name(&self) -> &'static str {
        "raw-uds"
    }

    fn addr(&self, unique: &str) -> String {
        temp_path(unique)
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let _ = std::fs::remove_file(addr);
        struct L(UnixListener, String);
        impl Listen for L {
            fn addr(&self) -> String {
                self.1.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                Ok(Box::new(Uds(self.0.accept()?.0)))
            }
        }
        impl Drop for L {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.1);
            }
        }
        Ok(Box::new(L(UnixListener::bind(addr)?, addr.to_string())))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(Uds(UnixStream::connect(addr)?)))
    }
}

struct Uds(UnixStream);

impl Conn for Uds {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }

    fn settings(&self) -> String {
        fd_settings(self.0.as_fd())
    }
}

/// A raw `SOCK_SEQPACKET` socket with plain `send`/`recv`.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct RawSeqpacket;

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Transport for RawSeqpacket {
    fn name(&self) -> &'static str {
        "raw-seqpacket"
    }

    fn addr(&self, unique: &str) -> String {
        temp_path(unique)
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        use socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        let _ = std::fs::remove_file(addr);
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(addr)?)?;
        socket::listen(&fd, Backlog::new(128)?)?;
        struct L(std::os::fd::OwnedFd, String, usize);
        impl Listen for L {
            fn addr(&self) -> String {
                self.1.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                use std::os::fd::{AsRawFd, FromRawFd};
                let raw = socket::accept(self.0.as_raw_fd())?;
                // SAFETY: accept returned a new descriptor that nothing else owns.
                let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
                raise_buffers(&fd, self.2);
                Ok(Box::new(Packets(fd)))
            }
        }
        impl Drop for L {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.1);
            }
        }
        Ok(Box::new(L(fd, addr.to_string(), size)))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        use socket::{AddressFamily, SockFlag, SockType, UnixAddr};
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(addr)?)?;
        raise_buffers(&fd, size);
        Ok(Box::new(Packets(fd)))
    }
}

/// Sets the socket buffers to fit a few messages of `size` bytes, as pipekit does.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn raise_buffers(fd: &std::os::fd::OwnedFd, size: usize) {
    let want = (size * 4).max(65535);
    for opt in [true, false] {
        let current = if opt {
            socket::getsockopt(fd, sockopt::SndBuf)
        } else {
            socket::getsockopt(fd, sockopt::RcvBuf)
        };
        if current.is_ok_and(|c| c < want) {
            let _ = if opt {
                socket::setsockopt(fd, sockopt::SndBuf, &want)
            } else {
                socket::setsockopt(fd, sockopt::RcvBuf, &want)
            };
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
struct Packets(std::os::fd::OwnedFd);

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Conn for Packets {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        socket::send(self.0.as_raw_fd(), buf, socket::MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let n = socket::recv(self.0.as_raw_fd(), buf, socket::MsgFlags::empty())?;
        if n == buf.len() {
            Ok(())
        } else if n == 0 {
            Err(io::ErrorKind::UnexpectedEof.into())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "short message"))
        }
    }

    fn settings(&self) -> String {
        fd_settings(self.0.as_fd())
    }
}

/// Two FIFOs with plain `read`/`write`, at the default capacity or enlarged to 1 MiB.
struct RawFifo {
    enlarged: bool,
}

impl Transport for RawFifo {
    fn name(&self) -> &'static str {
        if self.enlarged {
            "raw-fifo-1m"
        } else {
            "raw-fifo-64k"
        }
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        temp_path(unique)
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        let (c2s, s2c) = (
            PathBuf::from(format!("{addr}.c2s")),
            PathBuf::from(format!("{addr}.s2c")),
        );
        for path in [&c2s, &s2c] {
            let _ = std::fs::remove_file(path);
            nix::unistd::mkfifo(path, mode)?;
        }
        struct L {
            addr: String,
            c2s: PathBuf,
            s2c: PathBuf,
            enlarged: bool,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let read = File::open(&self.c2s)?;
                let write = OpenOptions::new().write(true).open(&self.s2c)?;
                let _ = std::fs::remove_file(&self.c2s);
                let _ = std::fs::remove_file(&self.s2c);
                Ok(Box::new(Fifos::new(read, write, self.enlarged)))
            }
        }
        Ok(Box::new(L {
            addr: addr.to_string(),
            c2s,
            s2c,
            enlarged: self.enlarged,
        }))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let write = OpenOptions::new().write(true).open(format!("{addr}.c2s"))?;
        let read = File::open(format!("{addr}.s2c"))?;
        Ok(Box::new(Fifos::new(read, write, self.enlarged)))
    }
}

struct Fifos {
    read: File,
    write: File,
}

impl Fifos {
    fn new(read: File, write: File, enlarged: bool) -> Fifos {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if enlarged {
            let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .unwrap_or(1 << 20)
                .min(1 << 20);
            for fd in [read.as_fd(), write.as_fd()] {
                let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(max));
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = enlarged;
        Fifos { read, write }
    }
}

impl Conn for Fifos {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read.read_exact(buf)
    }

    fn settings(&self) -> String {
        fd_settings(self.read.as_fd())
    }
}

/// POSIX message queues (`mq_send`/`mq_receive`), one queue each way.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct PosixMq;

#[cfg(any(target_os = "linux", target_os = "android"))]
fn mq_limit(what: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{what}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Transport for PosixMq {
    fn name(&self) -> &'static str {
        "posix-mq"
    }

    fn check(&self, size: usize) -> Result<(), String> {
        match mq_limit("msgsize_max") {
            Some(max) if size.max(8) > max => Err(format!(
                "message size {size} is above /proc/sys/fs/mqueue/msgsize_max ({max})"
            )),
            _ => Ok(()),
        }
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        format!("/{unique}")
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        use nix::mqueue::{MQ_OFlag, MqAttr, mq_open};
        let msgsize = size.max(8);
        let maxmsg = mq_limit("msg_max").unwrap_or(10).min(10);
        let attr = MqAttr::new(0, maxmsg as _, msgsize as _, 0);
        let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR;
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        let c2s = mq_open(format!("{addr}-c2s").as_str(), flags, mode, Some(&attr))?;
        let s2c = mq_open(format!("{addr}-s2c").as_str(), flags, mode, Some(&attr))?;
        struct L(Option<MqConn>, String);
        impl Listen for L {
            fn addr(&self) -> String {
                self.1.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let conn = self.0.take().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::Unsupported, "one session per queue pair")
                })?;
                Ok(Box::new(conn))
            }
        }
        let conn = MqConn {
            rx: c2s,
            tx: s2c,
            scratch: vec![0u8; msgsize],
            unlink: vec![format!("{addr}-c2s"), format!("{addr}-s2c")],
            settings: format!("mq_maxmsg {maxmsg}, mq_msgsize {msgsize}"),
        };
        Ok(Box::new(L(Some(conn), addr.to_string())))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        use nix::mqueue::{MQ_OFlag, mq_getattr, mq_open};
        let mode = nix::sys::stat::Mode::empty();
        let tx = mq_open(format!("{addr}-c2s").as_str(), MQ_OFlag::O_RDWR, mode, None)?;
        let rx = mq_open(format!("{addr}-s2c").as_str(), MQ_OFlag::O_RDWR, mode, None)?;
        let attr = mq_getattr(&rx)?;
        Ok(Box::new(MqConn {
            rx,
            tx,
            scratch: vec![0u8; size.max(8)],
            unlink: Vec::new(),
            settings: format!("mq_maxmsg {}, mq_msgsize {}", attr.maxmsg(), attr.msgsize()),
        }))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
struct MqConn {
    rx: nix::mqueue::MqdT,
    tx: nix::mqueue::MqdT,
    scratch: Vec<u8>,
    unlink: Vec<String>,
    settings: String,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Conn for MqConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        Ok(nix::mqueue::mq_send(&self.tx, buf, 0)?)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut prio = 0;
        let n = nix::mqueue::mq_receive(&self.rx, &mut self.scratch, &mut prio)?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "wrong message size",
            ));
        }
        buf.copy_from_slice(&self.scratch[..n]);
        Ok(())
    }

    fn settings(&self) -> String {
        self.settings.clone()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for MqConn {
    fn drop(&mut self) {
        for name in &self.unlink {
            let _ = nix::mqueue::mq_unlink(name.as_str());
        }
    }
}
