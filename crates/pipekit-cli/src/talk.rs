//! `pipekit send` and `pipekit connect`.

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use pipekit::dialect::python_mp;
use pipekit::{ConnectOptions, Mode, PipeName, Stream};

use crate::dialect::DialectArgs;
use crate::net::NetArgs;
use crate::output::{self, Format, Peer};

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The pipe name.
    name: String,
    /// Message mode: each MSG is one message (the default is byte mode).
    #[arg(long)]
    messages: bool,
    /// The server may be a one-way FIFO inbox (`pipekit listen NAME --inbox`), which is then
    /// written to directly (Unix).
    #[arg(long)]
    fifo: bool,
    /// After each MSG, read one reply and print it as a line.
    #[arg(long)]
    wait_reply: bool,
    /// Wait up to MS milliseconds for the server to appear, and for each reply.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// The messages to send.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    msg: Vec<String>,
    /// Send the contents of FILE (`-`: stdin) as one message (in byte mode: as bytes),
    /// instead of MSG arguments; binary data and any size up to the message limit.
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// How to print each reply: text (a line, the default), raw, hex or json.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    format: Format,
    /// Take a shared-memory channel if the server offers one (`listen --shared-memory`).
    #[arg(long)]
    shared_memory: bool,
    #[command(flatten)]
    dialect: DialectArgs,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The pipe name.
    name: String,
    /// Message mode: each stdin line is one message (the default is byte mode).
    #[arg(long)]
    messages: bool,
    /// Message mode: split stdin at BYTE instead of at each line end (`\0`, `\t`, `\n`,
    /// `\\`, `0xNN`, or one ASCII character). The delimiter is not sent; the bytes between
    /// go out as they are, UTF-8 or not. By default a line's `\r\n` or `\n` ends it.
    #[arg(long, value_name = "BYTE", value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// How to print what arrives: text (a line per message; the default in message mode),
    /// raw (the bytes; the default in byte mode), hex or json.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,
    /// Wait up to MS milliseconds for the server to appear.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Report on stderr whom we connected to.
    #[arg(short, long)]
    verbose: bool,
    /// Take a shared-memory channel if the server offers one (`listen --shared-memory`).
    #[arg(long)]
    shared_memory: bool,
    #[command(flatten)]
    dialect: DialectArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `--delimiter`'s value: one byte, written as an escape, `0xNN` or an ASCII character.
fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "\\0" => Ok(0),
        "\\t" => Ok(b'\t'),
        "\\n" => Ok(b'\n'),
        "\\r" => Ok(b'\r'),
        "\\\\" => Ok(b'\\'),
        _ => {
            if let Some(hex) = text.strip_prefix("0x").filter(|h| h.len() == 2) {
                return u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("{text:?} is not a byte in hex"));
            }
            match text.as_bytes() {
                [b] if b.is_ascii() && *b != b'\\' => Ok(*b),
                _ => Err(format!(
                    "{text:?} is not one byte: give an ASCII character, \\0, \\t, \\n, \\r, \\\\ or 0xNN"
                )),
            }
        }
    }
}

/// Calls `send` with each message of `input` until it returns `false`: the pieces between
/// `delimiter` bytes, or the lines (`\n` or `\r\n` at the end) when there is none. A last
/// piece without a delimiter after it is a message too.
fn each_message(
    input: &mut impl BufRead,
    delimiter: Option<u8>,
    mut send: impl FnMut(&[u8]) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut piece = Vec::new();
    loop {
        piece.clear();
        let n = input
            .read_until(delimiter.unwrap_or(b'\n'), &mut piece)
            .context("cannot read stdin")?;
        if n == 0 {
            return Ok(());
        }
        match delimiter {
            Some(d) => {
                if piece.last() == Some(&d) {
                    piece.pop();
                }
            }
            None => {
                if piece.last() == Some(&b'\n') {
                    piece.pop();
                    if piece.last() == Some(&b'\r') {
                        piece.pop();
                    }
                }
            }
        }
        if !send(&piece)? {
            return Ok(());
        }
    }
}

fn mode(messages: bool) -> Mode {
    if messages {
        Mode::Messages
    } else {
        Mode::Bytes
    }
}

fn open(
    name: &PipeName,
    messages: bool,
    wait: Option<Duration>,
    net: &NetArgs,
    shared_memory: bool,
) -> anyhow::Result<Stream> {
    let mut options = ConnectOptions::new();
    options
        .mode(mode(messages))
        .wait(wait)
        .shared_memory(shared_memory);
    net.connect(name, &mut options)?;
    Stream::connect_with(name, &options).with_context(|| format!("cannot connect to {name}"))
}

fn open_python(
    name: &PipeName,
    dialect: &DialectArgs,
    wait: Option<Duration>,
) -> anyhow::Result<python_mp::Connection> {
    python_mp::Connection::connect_with(name, wait, dialect.key())
        .with_context(|| format!("cannot connect to {name}"))
}

/// What `send` sends: the MSG arguments, or the one message read from `--file`.
fn messages(args: &SendArgs) -> anyhow::Result<Vec<Vec<u8>>> {
    let Some(file) = &args.file else {
        return Ok(args.msg.iter().map(|m| m.as_bytes().to_vec()).collect());
    };
    let data = if file.as_os_str() == "-" {
        let mut data = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut data)
            .context("cannot read stdin")?;
        data
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    Ok(vec![data])
}

pub(crate) fn send(args: &SendArgs) -> anyhow::Result<()> {
    let timeout = args.timeout.map(Duration::from_millis);
    if timeout == Some(Duration::ZERO) {
        return Err(crate::exit::usage("--timeout must be at least 1 ms"));
    }
    let msgs = messages(args)?;
    let name = args.dialect.pipe_name(&args.name)?;
    #[cfg(unix)]
    if args.fifo && one_way(&name)? {
        return send_one_way(args, &msgs);
    }
    if args.dialect.python_mp() {
        return send_python(args, &name, timeout, &msgs);
    }
    let mut conn = open(&name, args.messages, timeout, &args.net, args.shared_memory)?;
    conn.set_read_timeout(timeout)?;
    let peer = Peer::of(&conn);
    let mut buf = vec![0u8; 1 << 20];
    let mut out = io::stdout().lock();
    for msg in &msgs {
        match conn.mode() {
            Mode::Messages => conn.send(msg),
            _ => conn.write_all(msg),
        }
        .with_context(|| format!("cannot send a {}-byte message to {name}", msg.len()))?;
        if args.wait_reply {
            let n = match conn.mode() {
                Mode::Messages => conn.recv(&mut buf).context("no reply")?,
                _ => Some(conn.read(&mut buf).context("no reply")?).filter(|&n| n > 0),
            };
            let Some(n) = n else {
                bail!("the server closed the connection before replying");
            };
            output::write(&mut out, args.format, &buf[..n], peer)?;
        }
    }
    Ok(())
}

fn send_python(
    args: &SendArgs,
    name: &PipeName,
    timeout: Option<Duration>,
    msgs: &[Vec<u8>],
) -> anyhow::Result<()> {
    let mut conn = open_python(name, &args.dialect, timeout)?;
    conn.set_read_timeout(timeout)?;
    let peer = Peer::of(conn.stream());
    let mut out = io::stdout().lock();
    for msg in msgs {
        conn.send_bytes(msg)
            .with_context(|| format!("cannot send a {}-byte message to {name}", msg.len()))?;
        if args.wait_reply {
            let Some(reply) = conn.recv_bytes().context("no reply")? else {
                bail!("the server closed the connection before replying");
            };
            output::write(&mut out, args.format, &reply, peer)?;
        }
    }
    Ok(())
}

/// Whether `name` is a one-way FIFO (an inbox) rather than a server.
#[cfg(unix)]
fn one_way(name: &PipeName) -> anyhow::Result<bool> {
    use std::os::unix::fs::FileTypeExt;
    let path = pipekit::os::unix::socket_path(name)?;
    Ok(std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo()))
}

#[cfg(unix)]
fn send_one_way(args: &SendArgs, msgs: &[Vec<u8>]) -> anyhow::Result<()> {
    use pipekit::os::unix::fifo::Sender;
    if args.wait_reply {
        return Err(crate::exit::usage(format!(
            "--wait-reply: {} is a one-way FIFO",
            args.name
        )));
    }
    let name = pipekit::PipeName::new(&args.name)?;
    let mut sender = Sender::open(&name)?;
    for msg in msgs {
        sender.write_all(msg)?;
        // MSG arguments are lines; a --file goes as it is.
        if args.file.is_none() {
            sender.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// How long `connect` goes on printing, after the end of stdin, where the server cannot be
/// told of that end (Windows pipes have no half-close): until this passes without anything
/// arriving.
const QUIET: Duration = Duration::from_secs(1);

pub(crate) fn connect(args: &ConnectArgs) -> anyhow::Result<()> {
    let wait = args.timeout.map(Duration::from_millis);
    if wait == Some(Duration::ZERO) {
        return Err(crate::exit::usage("--timeout must be at least 1 ms"));
    }
    let name = args.dialect.pipe_name(&args.name)?;
    let connected = |peer: Peer| {
        if args.verbose {
            eprintln!("pipekit: connected to {name} (server: {peer})");
        }
    };
    if args.dialect.python_mp() {
        // Request and reply: each stdin line is a payload, each answer is printed.
        let mut conn = open_python(&name, &args.dialect, wait)?;
        let peer = Peer::of(conn.stream());
        connected(peer);
        let format = args.format.unwrap_or(Format::Text);
        let mut out = io::stdout().lock();
        each_message(&mut io::stdin().lock(), args.delimiter, |msg| {
            conn.send_bytes(msg)
                .context("cannot send to the server (it closed the connection?)")?;
            match conn.recv_bytes()? {
                Some(reply) => output::write(&mut out, format, &reply, peer)?,
                None => return Ok(false),
            }
            Ok(true)
        })?;
        return Ok(());
    }
    let conn = open(&name, args.messages, wait, &args.net, args.shared_memory)?;
    // The reader thread and the stdin loop share the stream (its methods take `&self`); the
    // reader's reads time out now and then so that it can tell when to stop on its own.
    conn.set_read_timeout(Some(Duration::from_millis(100)))?;
    let bytes = conn.mode() == Mode::Bytes;
    let peer = Peer::of(&conn);
    connected(peer);
    let format = args
        .format
        .unwrap_or(if bytes { Format::Raw } else { Format::Text });
    let conn = Arc::new(conn);
    // Set when stdin has ended and the server could not be told (no half-close): the reader
    // then stops after `QUIET` without anything arriving.
    let input_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let conn = Arc::clone(&conn);
        let input_done = Arc::clone(&input_done);
        thread::spawn(move || -> anyhow::Result<()> {
            let mut buf = vec![0u8; 1 << 20];
            let mut out = io::stdout();
            let mut quiet_since: Option<Instant> = None;
            loop {
                let got = match conn.mode() {
                    Mode::Messages => conn.recv(&mut buf),
                    _ => (&*conn).read(&mut buf).map(|n| Some(n).filter(|&n| n > 0)),
                };
                match got {
                    Ok(Some(n)) => {
                        quiet_since = None;
                        output::write(&mut out, format, &buf[..n], peer)?;
                    }
                    Ok(None) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        if input_done.load(Ordering::Relaxed)
                            && quiet_since.get_or_insert_with(Instant::now).elapsed() >= QUIET
                        {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    };
    if bytes {
        // Byte mode: stdin goes out as it is, in whatever pieces it arrives.
        let mut stdin = io::stdin().lock();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match stdin.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot read stdin"),
            };
            (&*conn)
                .write_all(&chunk[..n])
                .context("cannot write to the server (it closed the connection?)")?;
        }
    } else {
        each_message(&mut io::stdin().lock(), args.delimiter, |msg| {
            conn.send(msg)
                .context("cannot send to the server (it closed the connection?)")?;
            Ok(true)
        })?;
    }
    // End of input: let the server see it, then print what is still coming until the server
    // closes. Where there is no half-close (Windows), the server cannot be told: what comes
    // is printed until `QUIET` passes without anything.
    if conn.shutdown_write().is_err() {
        input_done.store(true, Ordering::Relaxed);
    }
    reader.join().expect("reader thread")
}
