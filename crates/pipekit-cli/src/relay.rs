//! `pipekit relay FROM TO`: accept on FROM, connect to TO for each connection, and copy both
//! ways until both sides have closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pipekit::error::Chain;
use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, PipeName, Stream};

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Where clients come from: a pipe name (any form pipekit takes), `tcp://HOST:PORT`, or
    /// `-` (stdin and stdout, one connection).
    from: String,
    /// Where each connection goes: a pipe name, `tcp://HOST:PORT`, `-` (stdin and stdout),
    /// or `exec:CMD` (a command per connection, through its stdin and stdout).
    to: String,
    /// Pipe endpoints are message-mode: between two of them each message stays one message.
    #[arg(long)]
    messages: bool,
    /// Wait up to MS milliseconds for TO to accept each connection (pipe names).
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Report on stderr the address served (with the port `tcp://HOST:0` chose), each
    /// connection and its end.
    #[arg(short, long)]
    verbose: bool,
    /// TLS for a tls:// FROM (--cert, --key, --client-ca, --allow-client) and TO (--ca,
    /// --client-cert, --client-key, --server-name); --insecure lets a tcp:// FROM listen
    /// beyond loopback.
    #[command(flatten)]
    net: crate::net::NetArgs,
}

/// One end of a relay, as named on the command line.
#[derive(Debug, Clone)]
enum Endpoint {
    Pipe(PipeName),
    Tcp(String),
    Stdio,
    Exec(String),
}

impl Endpoint {
    fn parse(text: &str) -> anyhow::Result<Endpoint> {
        Ok(if text == "-" {
            Endpoint::Stdio
        } else if let Some(addr) = text.strip_prefix("tcp://") {
            Endpoint::Tcp(addr.to_owned())
        } else if let Some(cmd) = text.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err(crate::exit::usage("exec: needs a command"));
            }
            Endpoint::Exec(cmd.to_owned())
        } else {
            Endpoint::Pipe(
                PipeName::parse(text).map_err(|e| crate::exit::usage(Chain(&e).to_string()))?,
            )
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Pipe(name) => write!(f, "{name}"),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Stdio => f.write_str("stdio"),
            Endpoint::Exec(cmd) => write!(f, "exec:{cmd}"),
        }
    }
}

/// What a relay reads from: one message or one piece of bytes at a time.
enum Source {
    Pipe(Stream),
    Tcp(TcpStream),
    Stdin(io::Stdin),
    Child(ChildStdout),
}

/// What a relay writes to.
enum Sink {
    Pipe(Stream),
    Tcp(TcpStream),
    Stdout(io::Stdout),
    Child(Option<ChildStdin>),
}

impl Source {
    /// The next message (message-mode pipes) or piece of bytes, into `buf`; `false` at the end.
    fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        if let Source::Pipe(s) = self
            && s.mode() == Mode::Messages
        {
            return Ok(s.recv_to_vec(buf)?.is_some());
        }
        buf.resize(64 << 10, 0);
        let n = loop {
            let got = match self {
                Source::Pipe(s) => s.read(buf),
                Source::Tcp(s) => s.read(buf),
                Source::Stdin(s) => s.read(buf),
                Source::Child(s) => s.read(buf),
            };
            match got {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        buf.truncate(n);
        Ok(n > 0)
    }
}

impl Sink {
    /// Passes `data` on: one message to a message-mode pipe, bytes to anything else.
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Pipe(s) if s.mode() == Mode::Messages => s.send(data),
            Sink::Pipe(s) => s.write_all(data),
            Sink::Tcp(s) => s.write_all(data),
            Sink::Stdout(s) => {
                let mut out = s.lock();
                out.write_all(data)?;
                out.flush()
            }
            Sink::Child(s) => match s {
                Some(stdin) => stdin.write_all(data),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
        }
    }

    /// The other side has nothing more to say: half-close where there is a half-close
    /// (Windows pipes have none; their connection ends when both directions are done).
    fn finish(&mut self) {
        match self {
            Sink::Pipe(s) => {
                let _ = s.shutdown_write();
            }
            Sink::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Sink::Stdout(s) => {
                let _ = s.flush();
            }
            Sink::Child(s) => drop(s.take()),
        }
    }
}

/// A connection split for the two copying threads, and a child process to wait for.
struct Conn {
    source: Source,
    sink: Sink,
    child: Option<Child>,
}

impl Conn {
    fn pipe(stream: Stream) -> anyhow::Result<Conn> {
        let writer = stream
            .try_clone()
            .context("cannot relay this pipe connection (it cannot be read and written at once)")?;
        Ok(Conn {
            source: Source::Pipe(stream),
            sink: Sink::Pipe(writer),
            child: None,
        })
    }

    fn tcp(stream: TcpStream) -> anyhow::Result<Conn> {
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            source: Source::Tcp(stream.try_clone().context("cannot clone the TCP socket")?),
            sink: Sink::Tcp(stream),
            child: None,
        })
    }

    fn stdio() -> Conn {
        Conn {
            source: Source::Stdin(io::stdin()),
            sink: Sink::Stdout(io::stdout()),
            child: None,
        }
    }

    fn exec(cmd: &str) -> anyhow::Result<Conn> {
        let mut command = if cfg!(windows) {
            let mut c = Command::new("cmd");
            c.args(["/C", cmd]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", cmd]);
            c
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Conn {
            source: Source::Child(child.stdout.take().expect("piped stdout")),
            sink: Sink::Child(child.stdin.take()),
            child: Some(child),
        })
    }
}

/// Copies everything from `source` to `sink`, then half-closes `sink`; the bytes moved.
fn copy(mut source: Source, mut sink: Sink) -> io::Result<u64> {
    let mut buf = Vec::new();
    let mut moved = 0;
    let result = loop {
        match source.next(&mut buf) {
            Ok(true) => {
                if let Err(e) = sink.put(&buf) {
                    break Err(e);
                }
                moved += buf.len() as u64;
            }
            Ok(false) => break Ok(moved),
            Err(e) => break Err(e),
        }
    };
    sink.finish();
    result
}

/// Relays one connection `a` (accepted) with `b` (connected) until both directions end.
fn relay_one(a: Conn, b: Conn, label: &str, verbose: bool) {
    let Conn {
        source: a_source,
        sink: a_sink,
        child: a_child,
    } = a;
    let Conn {
        source: b_source,
        sink: b_sink,
        child: b_child,
    } = b;
    let back = thread::spawn(move || copy(b_source, a_sink));
    let forth = copy(a_source, b_sink);
    let back = back
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the copying thread panicked")));
    for mut child in [a_child, b_child].into_iter().flatten() {
        let _ = child.wait();
    }
    match (forth, back) {
        (Ok(f), Ok(b)) => {
            if verbose {
                eprintln!("pipekit: {label}: closed ({f} bytes forth, {b} back)");
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            // A side that went away mid-copy ends the connection; the relay goes on.
            eprintln!("pipekit: {label}: {}", Chain(&e));
        }
    }
}

/// A raw `tcp://` FROM exposes TO to whoever reaches the port, unauthenticated: as for
/// pipekit's own `tcp://` listeners, only on loopback unless `--insecure` says otherwise.
fn raw_tcp_from(addr: &str, insecure: bool) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    if insecure {
        return Ok(());
    }
    let resolved = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve tcp://{addr}"))?;
    for found in resolved {
        if !found.ip().is_loopback() {
            return Err(crate::exit::usage(format!(
                "refusing to relay from tcp://{addr} ({found}): plain TCP has no encryption and                  no authentication, so a tcp:// FROM listens on loopback only; use tls:// FROM                  with --cert and --key across machines, or add --insecure"
            )));
        }
    }
    Ok(())
}

/// What accepts the relay's clients.
enum Incoming {
    Pipe(Arc<Listener>),
    Tcp(TcpListener),
}

pub(crate) fn relay(args: &RelayArgs) -> anyhow::Result<()> {
    let from = Endpoint::parse(&args.from)?;
    let to = Endpoint::parse(&args.to)?;
    if matches!(from, Endpoint::Exec(_)) {
        return Err(crate::exit::usage(
            "exec: is only for TO (where each connection goes)",
        ));
    }
    if matches!((&from, &to), (Endpoint::Stdio, Endpoint::Stdio)) {
        return Err(crate::exit::usage("FROM and TO cannot both be - (stdio)"));
    }
    let wait = match args.timeout {
        Some(0) => return Err(crate::exit::usage("--timeout must be at least 1 ms")),
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let mode = if args.messages {
        Mode::Messages
    } else {
        Mode::Bytes
    };
    // The TLS flags are checked against the endpoints before anything is opened.
    let mut listen = ListenerOptions::new();
    listen.mode(mode);
    match &from {
        Endpoint::Pipe(name) => args.net.server(name, &mut listen)?,
        Endpoint::Tcp(addr) => raw_tcp_from(addr, args.net.insecure)?,
        _ => {}
    }
    if let Endpoint::Pipe(name) = &to {
        args.net.client(name, &mut ConnectOptions::new())?;
    }
    let connect = {
        let to = to.clone();
        let net = Arc::new(args.net.clone());
        move || -> anyhow::Result<Conn> {
            match &to {
                Endpoint::Pipe(name) => {
                    let mut options = ConnectOptions::new();
                    options.mode(mode).wait(wait);
                    net.client(name, &mut options)?;
                    Conn::pipe(
                        Stream::connect_with(name, &options)
                            .with_context(|| format!("cannot connect to {name}"))?,
                    )
                }
                Endpoint::Tcp(addr) => Conn::tcp(
                    TcpStream::connect(addr.as_str())
                        .with_context(|| format!("cannot connect to tcp://{addr}"))?,
                ),
                Endpoint::Stdio => Ok(Conn::stdio()),
                Endpoint::Exec(cmd) => Conn::exec(cmd),
            }
        }
    };
    let incoming = match &from {
        Endpoint::Stdio => {
            // One connection: stdin and stdout.
            let b = connect()?;
            relay_one(Conn::stdio(), b, &format!("stdio <-> {to}"), args.verbose);
            return Ok(());
        }
        Endpoint::Pipe(name) => {
            let listener = Listener::bind_with(name, &listen)
                .with_context(|| format!("cannot serve {name}"))?;
            let listener = Arc::new(listener);
            let cleanup = Arc::clone(&listener);
            crate::exit::on_stop(move || {
                #[cfg(unix)]
                pipekit::os::unix::ListenerExt::remove_files(&*cleanup);
                #[cfg(not(unix))]
                let _ = &cleanup;
            })?;
            Incoming::Pipe(listener)
        }
        Endpoint::Tcp(addr) => {
            crate::exit::on_stop(|| {})?;
            Incoming::Tcp(
                TcpListener::bind(addr.as_str())
                    .with_context(|| format!("cannot listen on tcp://{addr}"))?,
            )
        }
        Endpoint::Exec(_) => unreachable!("refused above"),
    };
    if args.verbose {
        // The address bound, port included (`tcp://127.0.0.1:0` picks a free one).
        let from = match &incoming {
            Incoming::Tcp(listener) => match listener.local_addr() {
                Ok(addr) => format!("tcp://{addr}"),
                Err(_) => from.to_string(),
            },
            Incoming::Pipe(listener) => listener.name().to_string(),
        };
        eprintln!("pipekit: relaying {from} -> {to}");
    }
    loop {
        let (a, who) = match &incoming {
            Incoming::Pipe(listener) => {
                let stream = listener.accept().context("cannot accept")?;
                let who = format!("client {}", crate::output::Peer::of(&stream));
                (Conn::pipe(stream), who)
            }
            Incoming::Tcp(listener) => {
                let (stream, addr) = listener.accept().context("cannot accept")?;
                (Conn::tcp(stream), format!("client {addr}"))
            }
        };
        let connect = connect.clone();
        let label = format!("{who} -> {to}");
        let verbose = args.verbose;
        thread::spawn(move || {
            let a = match a {
                Ok(a) => a,
                Err(e) => return eprintln!("pipekit: {label}: {e:#}"),
            };
            match connect() {
                Ok(b) => {
                    if verbose {
                        eprintln!("pipekit: {label}: connected");
                    }
                    relay_one(a, b, &label, verbose);
                }
                // The client is closed: TO is not there for it.
                Err(e) => eprintln!("pipekit: {label}: {e:#}"),
            }
        });
    }
}
