//! Every transport the harness compares, behind one trait.
//!
//! pipekit's transports run with `max_message_size` set to the chunk size, as an application
//! that knows its largest message would: that keeps message-mode receives to one system call.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

use pipekit::{ConnectOptions, ListenerOptions, Mode};

/// One end of a connection, as the harness uses it.
pub trait Conn: Send {
    /// Sends `buf`: one message on message transports, all the bytes on byte transports.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn send(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Fills `buf`: one message of exactly that length, or that many bytes. End of stream is
    /// `UnexpectedEof`.
    ///
    /// # Errors
    ///
    /// The transport's error; `InvalidData` for a message of another length.
    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;

    /// The kernel buffer sizes in effect, for the report (empty if there is nothing to say).
    fn settings(&self) -> String {
        String::new()
    }
}

/// A listening end, in the peer process.
pub trait Listen: Send {
    /// The address clients connect to (for TCP, with the port the OS chose).
    fn addr(&self) -> String;

    /// The next connection.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn accept(&mut self) -> io::Result<Box<dyn Conn>>;
}

/// A way for two processes to talk.
pub trait Transport: Sync {
    /// A short, stable name (`pipekit-uds-bytes`, `raw-fifo-64k`, ...).
    fn name(&self) -> &'static str;

    /// For pipekit's transports: the raw transport underneath, to compare with.
    fn baseline(&self) -> Option<&'static str> {
        None
    }

    /// Why this transport cannot run with `size`-byte chunks here, if it cannot.
    ///
    /// # Errors
    ///
    /// The reason, in words.
    fn check(&self, size: usize) -> Result<(), String> {
        let _ = size;
        Ok(())
    }

    /// Whether a listener serves connection after connection (so connect time means
    /// something); single-session baselines say no.
    fn reconnects(&self) -> bool {
        true
    }

    /// An address for a listener, made from a token unique to this run.
    fn addr(&self, unique: &str) -> String;

    /// Starts listening at `addr` for `size`-byte chunks.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>>;

    /// Connects to a listener at `addr`.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>>;
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for dyn Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Conn")
    }
}

/// A pipekit message stream driven through its Tokio API, on a current-thread runtime of
/// its own (`block_on` per message).
pub(crate) struct TokioConn {
    runtime: tokio::runtime::Runtime,
    stream: pipekit::tokio::Stream,
}

impl TokioConn {
    pub(crate) fn boxed(stream: pipekit::Stream) -> io::Result<Box<dyn Conn>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let stream = {
            let _inside = runtime.enter();
            pipekit::tokio::Stream::from_blocking(stream)?
        };
        Ok(Box::new(TokioConn { runtime, stream }))
    }
}

impl Conn for TokioConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.runtime.block_on(self.stream.send(buf))
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.runtime.block_on(self.stream.recv(buf))? {
            Some(n) if n == buf.len() => Ok(()),
            Some(n) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected a {}-byte message, got {n}", buf.len()),
            )),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// A pipekit listener (at the address in `.1`) whose connections go through the Tokio API.
pub(crate) struct TokioListen(pub(crate) pipekit::Listener, pub(crate) String);

impl Listen for TokioListen {
    fn addr(&self) -> String {
        self.1.clone()
    }

    fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
        TokioConn::boxed(self.0.accept()?)
    }
}

/// Every transport this OS has, pipekit's first.
pub fn all() -> Vec<&'static dyn Transport> {
    let mut all: Vec<&'static dyn Transport> = Vec::new();
    #[cfg(unix)]
    {
        all.extend(unix::PIPEKIT.iter().map(|t| t as &dyn Transport));
        all.extend(unix::TOKIO.iter().map(|t| t as &dyn Transport));
        all.extend(unix::RAW.iter().copied());
    }
    #[cfg(windows)]
    {
        all.extend(windows::PIPEKIT.iter().map(|t| t as &dyn Transport));
        all.push(&windows::TOKIO);
    }
    all.push(&Tcp);
    all.push(&InterprocessLocal);
    all
}

/// The transport called `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static dyn Transport> {
    all().into_iter().find(|t| t.name() == name)
}

/// A byte stream used through `Read + Write`.
struct Bytes<S>(S);

impl<S: Read + Write + Send> Conn for Bytes<S> {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }
}

/// A pipekit connection in message mode.
struct PipekitMessages(pipekit::Stream);

impl Conn for PipekitMessages {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.send(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.0.recv(buf)? {
            Some(n) if n == buf.len() => Ok(()),
            Some(n) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected a {}-byte message, got {n}", buf.len()),
            )),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn settings(&self) -> String {
        pipekit_settings(&self.0)
    }
}

/// A pipekit connection in byte mode.
struct PipekitBytes(pipekit::Stream);

impl Conn for PipekitBytes {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }

    fn settings(&self) -> String {
        pipekit_settings(&self.0)
    }
}

#[cfg(unix)]
fn pipekit_settings(stream: &pipekit::Stream) -> String {
    unix::fd_settings(std::os::fd::AsFd::as_fd(stream))
}

#[cfg(not(unix))]
fn pipekit_settings(_stream: &pipekit::Stream) -> String {
    String::from("in/out buffers 65535")
}

struct PipekitListen {
    listener: pipekit::Listener,
    addr: String,
}

impl Listen for PipekitListen {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
        let stream = self.listener.accept()?;
        Ok(match stream.mode() {
            Mode::Messages => Box::new(PipekitMessages(stream)),
            _ => Box::new(PipekitBytes(stream)),
        })
    }
}

fn pipekit_options(mode: Mode, size: usize) -> (ListenerOptions, ConnectOptions) {
    let max = size.max(8);
    let mut listen = ListenerOptions::new();
    listen.mode(mode).max_message_size(max);
    let mut connect = ConnectOptions::new();
    connect.mode(mode).max_message_size(max);
    (listen, connect)
}

fn pipekit_conn(stream: pipekit::Stream) -> Box<dyn Conn> {
    match stream.mode() {
        Mode::Messages => Box::new(PipekitMessages(stream)),
        _ => Box::new(PipekitBytes(stream)),
    }
}

/// TCP over loopback with `TCP_NODELAY` on both ends.
struct Tcp;

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp-nodelay"
    }

    fn addr(&self, _unique: &str) -> String {
        String::from("127.0.0.1:0")
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let listener = TcpListener::bind(addr)?;
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
        Ok(Box::new(L(listener)))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Box::new(Bytes(s)))
    }
}

/// The `interprocess` crate's local socket (a Unix-domain socket on Unix, a named pipe on
/// Windows), in its own byte-stream API.
struct InterprocessLocal;

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
        struct L(interprocess::local_socket::Listener, String);
        impl Listen for L {
            fn addr(&self) -> String {
                self.1.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                use interprocess::local_socket::traits::Listener as _;
                Ok(Box::new(Bytes(self.0.accept()?)))
            }
        }
        Ok(Box::new(L(listener, addr.to_string())))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        use interprocess::local_socket::prelude::*;
        let stream =
            interprocess::local_socket::Stream::connect(InterprocessLocal::name_of(addr)?)?;
        Ok(Box::new(Bytes(stream)))
    }
}

#[cfg(windows)]
mod windows {
    use super::*;

    /// pipekit over a Windows named pipe.
    pub(super) struct Pipekit {
        pub(super) name: &'static str,
        pub(super) mode: Mode,
    }

    pub(super) static PIPEKIT: [Pipekit; 2] = [
        Pipekit {
            name: "pipekit-pipe-bytes",
            mode: Mode::Bytes,
        },
        Pipekit {
            name: "pipekit-pipe-messages",
            mode: Mode::Messages,
        },
    ];

    /// pipekit's Tokio API over a message-mode pipe, each end on its own current-thread
    /// runtime: what the async layer costs over the blocking API.
    pub(super) struct PipekitTokio;

    pub(super) static TOKIO: PipekitTokio = PipekitTokio;

    impl Transport for PipekitTokio {
        fn name(&self) -> &'static str {
            "pipekit-pipe-messages-tokio"
        }

        fn baseline(&self) -> Option<&'static str> {
            Some("pipekit-pipe-messages")
        }

        fn addr(&self, unique: &str) -> String {
            unique.to_string()
        }

        fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
            let (options, _) = pipekit_options(Mode::Messages, size);
            Ok(Box::new(TokioListen(
                pipekit::Listener::bind_with(addr, &options)?,
                addr.to_string(),
            )))
        }

        fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
            let (_, options) = pipekit_options(Mode::Messages, size);
            TokioConn::boxed(pipekit::Stream::connect_with(addr, &options)?)
        }
    }

    impl Transport for Pipekit {
        fn name(&self) -> &'static str {
            self.name
        }

        fn addr(&self, unique: &str) -> String {
            unique.to_string()
        }

        fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
            let (options, _) = pipekit_options(self.mode, size);
            Ok(Box::new(PipekitListen {
                listener: pipekit::Listener::bind_with(addr, &options)?,
                addr: addr.to_string(),
            }))
        }

        fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
            let (_, options) = pipekit_options(self.mode, size);
            Ok(pipekit_conn(pipekit::Stream::connect_with(addr, &options)?))
        }
    }
}

#[cfg(unix)]
mod unix;
