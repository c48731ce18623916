//! `pipekit listen`.

use std::io::{self, Read, Write};
use std::num::NonZeroU8;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::Context;
use clap::Args;
use pipekit::dialect::python_mp;
use pipekit::error::Chain;
use pipekit::{Listener, ListenerOptions, Mode, PipeName, Stream};

use crate::dialect::DialectArgs;
use crate::net::NetArgs;
use crate::output::{self, Format, Peer};

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The pipe name (`test_pipe`, a path, `\\.\pipe\...` on Windows, `tls://HOST:PORT`
    /// with --cert and --key, or `tcp://127.0.0.1:PORT`).
    name: String,
    /// Message mode: each send is one message (the default is byte mode).
    #[arg(long)]
    messages: bool,
    /// Send each message back.
    #[arg(long, conflicts_with = "reply")]
    echo: bool,
    /// Answer each message with TEXT.
    #[arg(long, value_name = "TEXT")]
    reply: Option<String>,
    /// Send TEXT to each client as soon as it connects, before reading from it (a server that
    /// speaks first, as the classic recipe's greeting server does).
    #[arg(long, value_name = "TEXT")]
    greet: Option<String>,
    /// Serve a one-way FIFO inbox (Unix): anything that writes to the path prints here, e.g.
    /// `printf 'hi\n' > "$(pipekit path NAME)"`. Each write is printed as it arrives.
    #[arg(long, conflicts_with_all = ["fifo", "messages", "echo", "reply", "greet"])]
    inbox: bool,
    /// Serve over FIFOs instead of a Unix-domain socket (Unix).
    #[arg(long)]
    fifo: bool,
    /// Serve the listening socket the launcher passed (Unix socket activation: systemd's
    /// `LISTEN_FDS`, descriptor 3, a stream socket) instead of binding; NAME must be its
    /// path. Byte mode.
    #[arg(long, conflicts_with_all = ["fifo", "messages", "inbox", "mode", "group", "max_instances"])]
    inherited: bool,
    /// Serve at most N clients at once (1-254).
    #[arg(long, value_name = "N")]
    max_instances: Option<NonZeroU8>,
    /// Exit after N messages in total.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Which local users may connect (Unix): `same-user` (the default), `any`, or lists
    /// `uid:N[,N..]` / `gid:N[,N..]` (the flag may be repeated; your own user always may).
    #[arg(long, value_name = "WHO", default_value = "same-user")]
    allow_peer: Vec<String>,
    /// The socket file's permissions, in octal (Unix, explicit paths only; default 600):
    /// 660 lets the socket's group connect. Combine with `--group` and `--allow-peer gid:N`.
    #[arg(long, value_name = "OCTAL", value_parser = parse_octal_mode)]
    mode: Option<u32>,
    /// The group that owns the socket file: a name or a number (Unix, explicit paths only).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// How to print what arrives: text (a line per message; the default in message mode),
    /// raw (the bytes; the default in byte mode), hex or json.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,
    /// Report on stderr who connects and leaves, and the size of each message.
    #[arg(short, long)]
    verbose: bool,
    /// Offer clients that ask (`send`/`connect --shared-memory`) a shared-memory channel:
    /// rings of BYTES each way (default 4 MiB; Unix sockets; others get the plain pipe).
    #[arg(
        long,
        value_name = "BYTES",
        num_args = 0..=1,
        default_missing_value = "4194304",
        conflicts_with_all = ["fifo", "inbox"]
    )]
    shared_memory: Option<usize>,
    #[command(flatten)]
    dialect: DialectArgs,
    #[command(flatten)]
    net: NetArgs,
}

pub(crate) fn listen(args: &ListenArgs) -> anyhow::Result<()> {
    let name = args.dialect.pipe_name(&args.name)?;
    let policy = peer_policy(&args.allow_peer).map_err(|e| crate::exit::usage(e.to_string()))?;
    if args.inbox {
        return inbox(&name);
    }
    let mut options = ListenerOptions::new();
    options
        .mode(if args.messages {
            Mode::Messages
        } else {
            Mode::Bytes
        })
        .max_instances(args.max_instances)
        .shared_memory(args.shared_memory);
    args.net.listen(&name, &mut options)?;
    if name.as_net().is_some()
        && (args.fifo
            || args.inherited
            || args.mode.is_some()
            || args.group.is_some()
            || args.shared_memory.is_some())
    {
        return Err(crate::exit::usage(
            "--fifo, --inherited, --mode, --group and --shared-memory are for local pipes, not \
             tcp:// or tls://",
        ));
    }
    if name.as_net().is_some() && args.allow_peer.iter().any(|v| v != "same-user") {
        return Err(crate::exit::usage(
            "--allow-peer is about local users; over tls:// choose clients with --client-ca              and --allow-client",
        ));
    }
    let serve = || format!("cannot serve {}", args.name);
    let server = if args.dialect.python_mp() {
        if args.messages || args.fifo {
            return Err(crate::exit::usage(
                "--dialect python-mp picks its own transport: drop --messages/--fifo",
            ));
        }
        if args.allow_peer.iter().any(|v| v != "same-user") {
            return Err(crate::exit::usage(
                "--dialect python-mp serves the same user only: drop --allow-peer",
            ));
        }
        Server::Python(python_mp::Listener::bind(&name, args.dialect.key()).with_context(serve)?)
    } else {
        Server::Plain(bind(args, &name, &options, policy).with_context(serve)?)
    };
    if args.verbose {
        // The name served, with the port a tcp:// or tls:// name ending in :0 got.
        eprintln!("pipekit: serving {}", server.listener().name());
    }
    let server = Arc::new(server);
    {
        let server = Arc::clone(&server);
        crate::exit::on_stop(move || server.remove_files())?;
    }
    if args.count == Some(0) {
        return Ok(());
    }
    let client = Arc::new(Client {
        left: AtomicU64::new(args.count.unwrap_or(u64::MAX)),
        out: Mutex::new(io::stdout()),
        server: Arc::clone(&server),
        echo: args.echo,
        answer: args.reply.as_ref().map(|t| t.as_bytes().to_vec()),
        greet: args.greet.as_ref().map(|t| t.as_bytes().to_vec()),
        format: args.format,
        verbose: args.verbose,
    });
    // One client's failure (a failed or stalled handshake, a client that left) is reported
    // and the server goes on; only a listener that keeps failing ends it.
    let mut failures = 0;
    loop {
        let accepted = match &*server {
            Server::Plain(listener) => listener.accept().map(Conn::Plain),
            Server::Python(listener) => listener.accept().map(Conn::Python),
        };
        let conn = match accepted {
            Ok(conn) => {
                failures = 0;
                conn
            }
            Err(e) if failures < 100 => {
                failures += 1;
                eprintln!("pipekit: client refused or lost: {}", Chain(&e));
                continue;
            }
            Err(e) => return Err(e).context("accept keeps failing"),
        };
        let client = Arc::clone(&client);
        thread::spawn(move || {
            let result = client.serve(conn);
            if let Err(e) = &result {
                eprintln!("pipekit: client: {e:#}");
            } else if client.verbose {
                eprintln!("pipekit: a client left");
            }
        });
    }
}

enum Server {
    Plain(Listener),
    Python(python_mp::Listener),
}

impl Server {
    fn listener(&self) -> &Listener {
        match self {
            Server::Plain(l) => l,
            Server::Python(l) => l.listener(),
        }
    }

    /// Removes the server's socket or FIFO directory and lock file, for an exit that does
    /// not drop the listener (Ctrl-C, `--count`). Windows pipes leave nothing behind.
    fn remove_files(&self) {
        #[cfg(unix)]
        pipekit::os::unix::ListenerExt::remove_files(self.listener());
        #[cfg(not(unix))]
        let _ = self.listener();
    }
}

enum Conn {
    Plain(Stream),
    Python(python_mp::Connection),
}

#[cfg(unix)]
fn bind(
    args: &ListenArgs,
    name: &PipeName,
    options: &ListenerOptions,
    policy: pipekit::os::unix::PeerPolicy,
) -> io::Result<Listener> {
    use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
    let mut unix = UnixOptions::new();
    if args.inherited {
        unix.peer_policy(policy);
        return inherited(name, options, &unix);
    }
    if args.fifo {
        unix.transport(Transport::Fifo);
    }
    if let Some(mode) = args.mode {
        unix.socket_mode(mode);
    }
    if let Some(group) = &args.group {
        let gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => UnixOptions::group_id(group)?,
        };
        unix.socket_group(Some(gid));
    }
    unix.peer_policy(policy);
    Listener::bind_unix(name, options, &unix)
}

/// `--inherited`: the launcher's listening socket, which must be bound at `name`.
#[cfg(unix)]
fn inherited(
    name: &PipeName,
    options: &ListenerOptions,
    unix: &pipekit::os::unix::UnixOptions,
) -> io::Result<Listener> {
    use pipekit::os::unix::ListenerExt;
    let not_passed = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            "--inherited: no listening socket was passed (LISTEN_FDS and LISTEN_PID are not \
             set for this process)",
        )
    };
    let socket = listenfd::ListenFd::from_env()
        .take_unix_listener(0)?
        .ok_or_else(not_passed)?;
    let listener = Listener::adopt(std::os::fd::OwnedFd::from(socket), options, unix)?;
    let expected = pipekit::os::unix::socket_path(name)?;
    if listener.path() != Some(expected.as_path()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--inherited: the passed socket is {}, not {}",
                listener.name(),
                expected.display()
            ),
        ));
    }
    Ok(listener)
}

/// `--mode`: octal permission bits, at most 777.
fn parse_octal_mode(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{value:?} is not an octal mode from 0 to 777")),
    }
}

/// `--allow-peer` values: `same-user`, `any`, `uid:N[,N..]`, `gid:N[,N..]`.
#[cfg(unix)]
fn peer_policy(values: &[String]) -> io::Result<pipekit::os::unix::PeerPolicy> {
    use pipekit::os::unix::PeerPolicy;
    let bad = |v: &str, why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--allow-peer {v:?}: {why} (expected same-user, any, uid:N[,N..] or gid:N[,N..])"
            ),
        )
    };
    let (mut uids, mut gids, mut any) = (Vec::new(), Vec::new(), false);
    for value in values {
        let (list, ids) = match value.as_str() {
            "same-user" => continue,
            "any" => {
                any = true;
                continue;
            }
            v if v.starts_with("uid:") => (&v[4..], &mut uids),
            v if v.starts_with("gid:") => (&v[4..], &mut gids),
            v => return Err(bad(v, "unknown value")),
        };
        for id in list.split(',') {
            ids.push(
                id.trim()
                    .parse::<u32>()
                    .map_err(|_| bad(value, "not a number list"))?,
            );
        }
    }
    Ok(if any {
        PeerPolicy::Any
    } else if uids.is_empty() && gids.is_empty() {
        PeerPolicy::SameUser
    } else {
        PeerPolicy::Allow { uids, gids }
    })
}

/// The only `--allow-peer` on Windows: the owner-only security descriptor already gives it.
#[cfg(not(unix))]
struct SameUser;

/// `--allow-peer` on Windows: only the default, `same-user`.
#[cfg(not(unix))]
fn peer_policy(values: &[String]) -> io::Result<SameUser> {
    if values.iter().any(|v| v != "same-user") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--allow-peer is a Unix setting; Windows pipes take a security descriptor",
        ));
    }
    Ok(SameUser)
}

#[cfg(not(unix))]
fn bind(
    args: &ListenArgs,
    name: &PipeName,
    options: &ListenerOptions,
    _policy: SameUser,
) -> io::Result<Listener> {
    if args.fifo {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--fifo: FIFOs are a Unix transport",
        ));
    }
    if args.mode.is_some() || args.group.is_some() || args.inherited {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--mode, --group and --inherited are Unix settings; Windows pipes take a security \
             descriptor and are made by name",
        ));
    }
    Listener::bind_with(name, options)
}

struct Client {
    left: AtomicU64,
    out: Mutex<io::Stdout>,
    server: Arc<Server>,
    echo: bool,
    answer: Option<Vec<u8>>,
    greet: Option<Vec<u8>>,
    format: Option<Format>,
    verbose: bool,
}

/// Sends `msg` on `conn` as its mode wants it.
fn send_to(conn: &mut Conn, msg: &[u8]) -> io::Result<()> {
    match conn {
        Conn::Python(c) => c.send_bytes(msg),
        Conn::Plain(s) if s.mode() == Mode::Messages => s.send(msg),
        Conn::Plain(s) => s.write_all(msg),
    }
}

impl Client {
    fn serve(&self, mut conn: Conn) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut payload = Vec::new();
        if let Some(greet) = &self.greet {
            send_to(&mut conn, greet).context("cannot greet the client")?;
        }
        let (format, peer) = match &conn {
            // Byte mode is transparent by default: the bytes as they came, nothing added.
            Conn::Plain(s) => (
                self.format.unwrap_or(if s.mode() == Mode::Bytes {
                    Format::Raw
                } else {
                    Format::Text
                }),
                Peer::of(s),
            ),
            Conn::Python(c) => (self.format.unwrap_or(Format::Text), Peer::of(c.stream())),
        };
        if self.verbose {
            let shm = match &conn {
                Conn::Plain(s) if s.is_shared_memory() => ", over shared memory",
                _ => "",
            };
            eprintln!("pipekit: client connected ({peer}){shm}");
        }
        loop {
            let msg: &[u8] = match &mut conn {
                Conn::Python(c) => match c.recv_bytes_into(&mut payload)? {
                    Some(_) => &payload,
                    None => return Ok(()),
                },
                Conn::Plain(s) if s.mode() == Mode::Messages => match s.recv(&mut buf)? {
                    Some(n) => &buf[..n],
                    None => return Ok(()),
                },
                Conn::Plain(s) => match s.read(&mut buf)? {
                    0 => return Ok(()),
                    n => &buf[..n],
                },
            };
            if self.verbose {
                eprintln!("pipekit: {} bytes from {peer}", msg.len());
            }
            {
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                output::write(&mut *out, format, msg, peer)?;
            }
            let reply = if self.echo {
                Some(msg)
            } else {
                self.answer.as_deref()
            };
            let replied = match reply {
                Some(reply) => {
                    let reply = reply.to_vec();
                    send_to(&mut conn, &reply)
                }
                None => Ok(()),
            };
            // The message counts even when the client left before the reply.
            if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.server.remove_files();
                std::process::exit(0);
            }
            replied.context("cannot reply to the client")?;
        }
    }
}

/// `listen --inbox`: a one-way FIFO at the name's path; prints what writers send, as it is.
#[cfg(unix)]
fn inbox(name: &PipeName) -> anyhow::Result<()> {
    use pipekit::os::unix::fifo::Receiver;
    let mut inbox =
        Receiver::bind(name).with_context(|| format!("cannot serve the inbox {name}"))?;
    let path = inbox.path().to_owned();
    // Where writers go (and a sign for scripts that the inbox is open).
    eprintln!("pipekit: inbox at {}", path.display());
    crate::exit::on_stop(move || {
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(lock);
    })?;
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = inbox.read(&mut buf).context("cannot read the inbox")?;
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

#[cfg(not(unix))]
fn inbox(_name: &PipeName) -> anyhow::Result<()> {
    Err(crate::exit::usage(
        "--inbox: one-way FIFOs are a Unix transport",
    ))
}
