//! Unix transports: pipekit's sockets and FIFOs, and the raw system calls beneath them —
//! stream and sequenced-packet sockets, FIFOs, and anonymous pipes and datagram socket pairs
//! handed to the peer over a socket.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use pipekit::Mode;
use pipekit::os::unix::{Framing, ListenerExt, StreamExt, Transport as Kind, UnixOptions};

use crate::cleanup;
use crate::transport::{Conn, Listen, Transport};
use crate::transports::fd;
use crate::transports::pipekit::{self as pk, Api};

/// pipekit over one of its Unix transports.
pub(crate) struct Pipekit {
    name: &'static str,
    about: &'static str,
    mode: Mode,
    kind: Kind,
    framing: Framing,
    baseline: &'static str,
}

pub(crate) static PIPEKIT: [Pipekit; 5] = [
    Pipekit {
        name: "pipekit-uds-bytes",
        about: "pipekit byte mode on a Unix stream socket",
        mode: Mode::Bytes,
        kind: Kind::Socket,
        framing: Framing::Native,
        baseline: "raw-uds",
    },
    Pipekit {
        name: "pipekit-seqpacket",
        about: "pipekit message mode on SOCK_SEQPACKET (Linux)",
        mode: Mode::Messages,
        kind: Kind::Socket,
        framing: Framing::Native,
        baseline: "raw-seqpacket",
    },
    Pipekit {
        name: "pipekit-framed",
        about: "pipekit message mode, length-prefixed frames on a stream socket",
        mode: Mode::Messages,
        kind: Kind::Socket,
        framing: Framing::LengthPrefixed,
        baseline: "raw-uds",
    },
    Pipekit {
        name: "pipekit-fifo-bytes",
        about: "pipekit byte mode on a pair of FIFOs",
        mode: Mode::Bytes,
        kind: Kind::Fifo,
        framing: Framing::Native,
        baseline: "raw-fifo-1m",
    },
    Pipekit {
        name: "pipekit-fifo-messages",
        about: "pipekit message mode on a pair of FIFOs",
        mode: Mode::Messages,
        kind: Kind::Fifo,
        framing: Framing::Native,
        baseline: "raw-fifo-1m",
    },
];

/// pipekit message mode over shared memory: the listener offers two rings, the client
/// takes them.
pub(crate) struct PipekitShm {
    name: &'static str,
    about: &'static str,
    api: Api,
}

pub(crate) static PIPEKIT_SHM: [PipekitShm; 3] = [
    PipekitShm {
        name: "pipekit-shm",
        about: "pipekit message mode over shared memory (two rings, the socket for wake-ups)",
        api: Api::Blocking,
    },
    PipekitShm {
        name: "pipekit-shm-zc",
        about: "pipekit-shm with send_with (written in place) and recv_with (read in place)",
        api: Api::ZeroCopy,
    },
    PipekitShm {
        name: "pipekit-shm-tokio",
        about: "pipekit-shm through the Tokio API, block_on per message on each end",
        api: Api::Tokio,
    },
];

impl Transport for PipekitShm {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn baseline(&self) -> Option<&'static str> {
        match self.api {
            Api::Tokio => Some("pipekit-shm"),
            _ => Some("raw-uds"),
        }
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (mut options, _) = pk::options(Mode::Messages, size);
        options.shared_memory(Some(pk::shm_capacity(size)));
        let listener = pipekit::Listener::bind_with(addr, &options)?;
        Ok(pk::listen(listener, addr, self.api))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, mut options) = pk::options(Mode::Messages, size);
        options.shared_memory(true);
        let stream = pipekit::Stream::connect_with(addr, &options)?;
        match self.api {
            Api::Blocking => Ok(pk::conn(stream)),
            Api::ZeroCopy => Ok(pk::zero_copy(stream)),
            Api::Tokio => pk::TokioConn::boxed(stream),
        }
    }
}

impl Pipekit {
    fn unix(&self) -> UnixOptions {
        let mut unix = UnixOptions::new();
        unix.transport(self.kind).framing(self.framing);
        unix
    }
}

fn no_seqpacket() -> Result<(), String> {
    if pipekit::os::unix::NATIVE_MESSAGES {
        Ok(())
    } else {
        Err(String::from("this OS has no SOCK_SEQPACKET message mode"))
    }
}

impl Transport for Pipekit {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(self.baseline)
    }

    fn check(&self, _size: usize) -> Result<(), String> {
        if self.name == "pipekit-seqpacket" {
            return no_seqpacket();
        }
        Ok(())
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (options, _) = pk::options(self.mode, size);
        let listener = pipekit::Listener::bind_unix(addr, &options, &self.unix())?;
        Ok(pk::listen(listener, addr, Api::Blocking))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, options) = pk::options(self.mode, size);
        let stream = pipekit::Stream::connect_unix(addr, &options, &self.unix())?;
        Ok(pk::conn(stream))
    }
}

/// pipekit's Tokio API in message mode, each end driven by its own current-thread runtime:
/// what the async layer costs over the blocking API underneath it.
pub(crate) struct PipekitTokio {
    name: &'static str,
    about: &'static str,
    kind: Kind,
    baseline: &'static str,
}

pub(crate) static TOKIO: [PipekitTokio; 2] = [
    PipekitTokio {
        name: "pipekit-seqpacket-tokio",
        about: "pipekit's Tokio API, message mode on SOCK_SEQPACKET (Linux)",
        kind: Kind::Socket,
        baseline: "pipekit-seqpacket",
    },
    PipekitTokio {
        name: "pipekit-fifo-messages-tokio",
        about: "pipekit's Tokio API, message mode on a pair of FIFOs",
        kind: Kind::Fifo,
        baseline: "pipekit-fifo-messages",
    },
];

impl Transport for PipekitTokio {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(self.baseline)
    }

    fn check(&self, _size: usize) -> Result<(), String> {
        if self.kind == Kind::Socket {
            return no_seqpacket();
        }
        Ok(())
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (options, _) = pk::options(Mode::Messages, size);
        let mut unix = UnixOptions::new();
        unix.transport(self.kind);
        let listener = pipekit::Listener::bind_unix(addr, &options, &unix)?;
        Ok(pk::listen(listener, addr, Api::Tokio))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, options) = pk::options(Mode::Messages, size);
        pk::TokioConn::boxed(pipekit::Stream::connect_with(addr, &options)?)
    }
}

/// The raw baselines of this module on this OS.
pub(crate) static RAW: &[&dyn Transport] = &[
    &RawUds,
    #[cfg(target_os = "linux")]
    &RawSeqpacket,
    &RawFifo { enlarged: false },
    &RawFifo { enlarged: true },
    &Handoff::Pipe,
    #[cfg(target_os = "linux")]
    &Handoff::Vmsplice,
    #[cfg(target_os = "linux")]
    &Handoff::Datagrams,
];

fn temp_path(unique: &str) -> String {
    std::env::temp_dir()
        .join(unique)
        .to_string_lossy()
        .into_owned()
}

/// Removes `paths` when dropped, and if the run is stopped before.
struct Files {
    paths: Vec<PathBuf>,
    _guard: cleanup::Guard,
}

impl Files {
    fn new(paths: Vec<PathBuf>) -> Files {
        let removed = paths.clone();
        let guard = cleanup::on_exit(move || {
            for path in &removed {
                let _ = std::fs::remove_file(path);
            }
        });
        Files {
            paths,
            _guard: guard,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `std::os::unix::net::UnixStream`: the socket pipekit's byte mode runs on.
struct RawUds;

impl Transport for RawUds {
    fn name(&self) -> &'static str {
        "raw-uds"
    }

    fn about(&self) -> &'static str {
        "std's UnixStream, read/write"
    }

    fn addr(&self, unique: &str) -> String {
        temp_path(unique)
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let _ = std::fs::remove_file(addr);
        struct L {
            listener: UnixListener,
            addr: String,
            _files: Files,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                Ok(Box::new(Uds(self.listener.accept()?.0)))
            }
        }
        let listener = UnixListener::bind(addr)?;
        let files = Files::new(vec![addr.into()]);
        Ok(Box::new(L {
            listener,
            addr: addr.to_string(),
            _files: files,
        }))
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
        fd::settings(self.0.as_fd())
    }
}

/// Takes ownership of a descriptor a system call just returned.
#[allow(unsafe_code)]
fn own(raw: RawFd) -> OwnedFd {
    // SAFETY: called only on a descriptor a system call (accept, recvmsg with SCM_RIGHTS)
    // has just made for this process, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A raw `SOCK_SEQPACKET` socket with plain `send`/`recv`.
#[cfg(target_os = "linux")]
struct RawSeqpacket;

#[cfg(target_os = "linux")]
impl Transport for RawSeqpacket {
    fn name(&self) -> &'static str {
        "raw-seqpacket"
    }

    fn about(&self) -> &'static str {
        "a SOCK_SEQPACKET Unix socket, plain send/recv"
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
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(addr)?)?;
        let files = Files::new(vec![addr.into()]);
        socket::listen(&fd, Backlog::new(128)?)?;
        struct L {
            fd: OwnedFd,
            addr: String,
            size: usize,
            _files: Files,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let fd = own(socket::accept(self.fd.as_raw_fd())?);
                raise_buffers(&fd, self.size);
                Ok(Box::new(Packets(fd)))
            }
        }
        Ok(Box::new(L {
            fd,
            addr: addr.to_string(),
            size,
            _files: files,
        }))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        use socket::{AddressFamily, SockFlag, SockType, UnixAddr};
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::connect(fd.as_raw_fd(), &UnixAddr::new(addr)?)?;
        raise_buffers(&fd, size);
        Ok(Box::new(Packets(fd)))
    }
}

/// Makes the send buffer fit one `size`-byte message if the default does not (a larger
/// message fails with `EMSGSIZE`) — pipekit's rule, so that the baseline runs with the
/// buffers pipekit's socket has.
#[cfg(target_os = "linux")]
fn raise_buffers(fd: &OwnedFd, size: usize) {
    use socket::sockopt;
    let want = size + 64;
    if socket::getsockopt(fd, sockopt::SndBuf).is_ok_and(|c| c < want) {
        let _ = socket::setsockopt(fd, sockopt::SndBuf, &want);
    }
}

/// A message socket (sequenced packets or datagrams) with plain `send`/`recv`.
#[cfg(target_os = "linux")]
struct Packets(OwnedFd);

#[cfg(target_os = "linux")]
impl Conn for Packets {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        socket::send(self.0.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = socket::recv(self.0.as_raw_fd(), buf, MsgFlags::empty())?;
        if n == buf.len() {
            Ok(())
        } else if n == 0 {
            Err(io::ErrorKind::UnexpectedEof.into())
        } else {
            Err(crate::transports::pipekit::wrong_length(buf.len(), n))
        }
    }

    fn settings(&self) -> String {
        fd::settings(self.0.as_fd())
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

    fn about(&self) -> &'static str {
        if self.enlarged {
            "two FIFOs, read/write, F_SETPIPE_SZ 1 MiB (Linux)"
        } else {
            "two FIFOs, read/write, default capacity"
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
        let files = Files::new(vec![c2s.clone(), s2c.clone()]);
        for path in [&c2s, &s2c] {
            let _ = std::fs::remove_file(path);
            nix::unistd::mkfifo(path, mode)?;
        }
        struct L {
            addr: String,
            files: Files,
            enlarged: bool,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let read = File::open(&self.files.paths[0])?;
                let write = OpenOptions::new().write(true).open(&self.files.paths[1])?;
                for path in &self.files.paths {
                    let _ = std::fs::remove_file(path);
                }
                Ok(Box::new(Pipes::new(
                    read.into(),
                    write.into(),
                    self.enlarged,
                )))
            }
        }
        Ok(Box::new(L {
            addr: addr.to_string(),
            files,
            enlarged: self.enlarged,
        }))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let write = OpenOptions::new().write(true).open(format!("{addr}.c2s"))?;
        let read = File::open(format!("{addr}.s2c"))?;
        Ok(Box::new(Pipes::new(
            read.into(),
            write.into(),
            self.enlarged,
        )))
    }
}

/// A pipe (or FIFO) each way, plain `read`/`write`.
struct Pipes {
    read: File,
    write: File,
}

impl Pipes {
    fn new(read: OwnedFd, write: OwnedFd, enlarged: bool) -> Pipes {
        #[cfg(target_os = "linux")]
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
        #[cfg(not(target_os = "linux"))]
        let _ = enlarged;
        Pipes {
            read: read.into(),
            write: write.into(),
        }
    }
}

impl Conn for Pipes {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read.read_exact(buf)
    }

    fn settings(&self) -> String {
        fd::settings(self.read.as_fd())
    }
}

/// Transports with no name in the file system: the client makes the descriptors (two
/// anonymous pipes, or a datagram socket pair) and hands the peer its ends with
/// `SCM_RIGHTS` over a Unix socket, which then closes — as a parent passes pipes to a child.
#[derive(Clone, Copy)]
enum Handoff {
    /// Two anonymous pipes, `read`/`write`.
    Pipe,
    /// Two anonymous pipes; the writer maps its pages into the pipe with `vmsplice`.
    #[cfg(target_os = "linux")]
    Vmsplice,
    /// A `SOCK_DGRAM` socket pair, `send`/`recv`.
    #[cfg(target_os = "linux")]
    Datagrams,
}

impl Transport for Handoff {
    fn name(&self) -> &'static str {
        match self {
            Handoff::Pipe => "raw-pipe",
            #[cfg(target_os = "linux")]
            Handoff::Vmsplice => "vmsplice",
            #[cfg(target_os = "linux")]
            Handoff::Datagrams => "raw-uds-dgram",
        }
    }

    fn about(&self) -> &'static str {
        match self {
            Handoff::Pipe => "two anonymous pipes, read/write, default capacity",
            #[cfg(target_os = "linux")]
            Handoff::Vmsplice => {
                "two anonymous pipes; chunks of 4 KiB and more go in with vmsplice (no copy \
                 on the writing side), the reader copies with read"
            }
            #[cfg(target_os = "linux")]
            Handoff::Datagrams => "a SOCK_DGRAM Unix socket pair, plain send/recv",
        }
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        temp_path(unique)
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let _ = std::fs::remove_file(addr);
        let listener = UnixListener::bind(addr)?;
        let files = Files::new(vec![addr.into()]);
        struct L {
            listener: UnixListener,
            addr: String,
            kind: Handoff,
            size: usize,
            _files: Files,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                let (socket, _) = self.listener.accept()?;
                let fds = receive_fds(&socket)?;
                self.kind.conn(fds, self.size)
            }
        }
        Ok(Box::new(L {
            listener,
            addr: addr.to_string(),
            kind: *self,
            size,
            _files: files,
        }))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let socket = UnixStream::connect(addr)?;
        let (mine, theirs) = match self {
            #[cfg(target_os = "linux")]
            Handoff::Datagrams => {
                use socket::{AddressFamily, SockFlag, SockType};
                let (a, b) = socket::socketpair(
                    AddressFamily::Unix,
                    SockType::Datagram,
                    None,
                    SockFlag::SOCK_CLOEXEC,
                )?;
                (vec![a], vec![b])
            }
            _ => {
                let (c2s_read, c2s_write) = pipe()?;
                let (s2c_read, s2c_write) = pipe()?;
                (vec![s2c_read, c2s_write], vec![c2s_read, s2c_write])
            }
        };
        send_fds(&socket, &theirs)?;
        drop(theirs);
        self.conn(mine, size)
    }
}

impl Handoff {
    /// This end's connection from its descriptors: `[read, write]` pipes, or one socket.
    fn conn(self, fds: Vec<OwnedFd>, size: usize) -> io::Result<Box<dyn Conn>> {
        let short = || io::Error::new(io::ErrorKind::InvalidData, "descriptors missing");
        let mut fds = fds.into_iter();
        match self {
            #[cfg(target_os = "linux")]
            Handoff::Datagrams => {
                let fd = fds.next().ok_or_else(short)?;
                raise_buffers(&fd, size);
                Ok(Box::new(Packets(fd)))
            }
            _ => {
                let (Some(read), Some(write)) = (fds.next(), fds.next()) else {
                    return Err(short());
                };
                let _ = size;
                let pipes = Pipes::new(read, write, false);
                #[cfg(target_os = "linux")]
                if matches!(self, Handoff::Vmsplice) {
                    return Ok(Box::new(Vmspliced(pipes)));
                }
                Ok(Box::new(pipes))
            }
        }
    }
}

/// An anonymous pipe, `(read, write)`, both ends close-on-exec (so later peers do not hold
/// them open).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let (read, write) = nix::unistd::pipe()?;
    for fd in [&read, &write] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((read, write))
}

/// Sends `fds` over `socket` with `SCM_RIGHTS` (one byte of data carries them).
fn send_fds(socket: &UnixStream, fds: &[OwnedFd]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&[1])],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives up to two descriptors sent with [`send_fds`].
fn receive_fds(socket: &UnixStream) -> io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            fds.extend(raw.into_iter().map(own));
        }
    }
    // Close-on-exec, like every descriptor the harness makes.
    for fd in &fds {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok(fds)
}

/// Pipes whose writer uses `vmsplice` for chunks of a page or more. The pipe then refers to
/// the writer's pages instead of a copy, so those pages must not change until the reader has
/// read them: the harness sends the same unchanging chunk, and an echo waits for the answer
/// before it reuses its buffer. Small writes (counts, totals — often from the stack) are
/// copied with `write`.
#[cfg(target_os = "linux")]
struct Vmspliced(Pipes);

#[cfg(target_os = "linux")]
impl Conn for Vmspliced {
    fn send(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if buf.len() < 4096 {
            return self.0.send(buf);
        }
        while !buf.is_empty() {
            let n = nix::fcntl::vmsplice(
                self.0.write.as_fd(),
                &[IoSlice::new(buf)],
                nix::fcntl::SpliceFFlags::empty(),
            )?;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.recv_exact(buf)
    }

    fn settings(&self) -> String {
        self.0.settings()
    }
}
