//! The peer process of pipekit's cross-process tests.
//!
//! ```text
//! pipekit-peer serve NAME bytes|messages [echo|reply TEXT|big SIZE] [--print] [--clients N] [--fifo]
//!                    [--exit-on TEXT]
//! pipekit-peer clients NAME CONNS MSGS
//! pipekit-peer bytes-client NAME TEXT
//! pipekit-peer duplex NAME bytes|messages PIECES clone|shared [--framed]
//! pipekit-peer flood NAME bytes|messages SIZE
//! ```
//!
//! Binds NAME, prints `ready` on stdout, and serves each client on its own thread: `echo`
//! sends back what arrives, `reply TEXT` answers each message with TEXT, `big SIZE` answers
//! each message with SIZE bytes followed by the message itself. `--print` prints each
//! received message as a line. With `--clients N` it exits 0 after N clients have finished.
//! `--fifo` serves over the FIFO transport (Unix). `--exit-on TEXT`: a message (or read) that
//! is exactly TEXT makes the process exit at once with status 9, closing nothing first (a peer
//! that dies: no TLS `close_notify`, no message finished).
//! A name already served exits with status 3 and the error on stderr.
//!
//! For a `tcp://` or `tls://` NAME, `serve` prints the name it got (port 0 is any free port)
//! on the line after `ready`. TLS files come from the environment: `PEER_TLS_CERT` and
//! `PEER_TLS_KEY` (the server's), `PEER_TLS_CLIENT_CA` (require client certificates),
//! `PEER_TLS_ALLOW` (the one client name allowed), `PEER_TLS_CA` (what a client trusts),
//! `PEER_TLS_CLIENT_CERT` and `PEER_TLS_CLIENT_KEY` (a client's own); `PEER_INSECURE_NETWORK=1`
//! lets a plain `tcp://` server bind a non-loopback address; `PEER_WAIT_MS` is how long a
//! client waits for its server (60 s by default). `PEER_SHM=CAPACITY` makes a server offer
//! shared memory (rings of CAPACITY bytes) and a client (any value) ask for it.
//!
//! `flood` connects, waits for the server's first message (or, in byte mode, 2 bytes), then
//! sends SIZE-byte messages (or chunks) until it is stopped, printing `sending I` before each.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;

use pipekit::{Listener, ListenerOptions, Mode, Stream};

#[derive(Clone)]
enum Answer {
    Echo,
    Reply(Vec<u8>),
    Big(usize),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            eprintln!("pipekit-peer: {}", pipekit_tests::chain(&e));
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("pipekit-peer: {}", pipekit_tests::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: pipekit-peer serve NAME bytes|messages [echo|reply TEXT|big SIZE] [--print] [--clients N] [--fifo]",
    )
}

fn run(args: &[String]) -> io::Result<()> {
    let [cmd, name, mode, rest @ ..] = args else {
        return Err(usage());
    };
    if cmd == "clients" {
        return clients(name, mode, rest);
    }
    if cmd == "bytes-client" {
        return bytes_client(name, mode);
    }
    if cmd == "duplex" {
        return duplex(name, mode, rest);
    }
    if cmd == "flood" {
        return flood(name, mode, rest);
    }
    if cmd != "serve" {
        return Err(usage());
    }
    let mode = match mode.as_str() {
        "bytes" => Mode::Bytes,
        "messages" => Mode::Messages,
        _ => return Err(usage()),
    };
    let mut answer = Answer::Echo;
    let mut print = false;
    let mut clients = None;
    let mut fifo = false;
    let mut exit_on = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "echo" => answer = Answer::Echo,
            "reply" => answer = Answer::Reply(it.next().ok_or_else(usage)?.as_bytes().to_vec()),
            "big" => {
                let size = it.next().ok_or_else(usage)?;
                answer = Answer::Big(size.parse().map_err(|_| usage())?);
            }
            "--print" => print = true,
            "--fifo" => fifo = true,
            "--exit-on" => exit_on = Some(it.next().ok_or_else(usage)?.as_bytes().to_vec()),
            "--clients" => {
                let n = it.next().ok_or_else(usage)?;
                clients = Some(n.parse::<usize>().map_err(|_| usage())?);
            }
            _ => return Err(usage()),
        }
    }
    let mut options = ListenerOptions::new();
    options.mode(mode);
    net_listener_options(&mut options);
    let listener = bind(name, &options, fifo)?;
    println!("ready");
    if listener.name().as_net().is_some() {
        println!("{}", listener.name());
    }
    io::stdout().flush()?;
    let out = Arc::new(Mutex::new(io::stdout()));
    let mut handles = Vec::new();
    loop {
        if clients.is_some_and(|n| handles.len() >= n) {
            break;
        }
        let conn = listener.accept()?;
        let (answer, out, exit_on) = (answer.clone(), Arc::clone(&out), exit_on.clone());
        handles.push(thread::spawn(move || {
            let out = print.then_some(&*out);
            if let Err(e) = serve(conn, &answer, exit_on.as_deref(), out) {
                eprintln!("pipekit-peer: client: {}", pipekit_tests::chain(&e));
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// `clients NAME CONNS MSGS`: opens CONNS message-mode connections to NAME, then sends
/// MSGS numbered messages on each (round robin), checking every echo; prints `ok CONNS`.
fn clients(name: &str, conns: &str, rest: &[String]) -> io::Result<()> {
    let [msgs] = rest else {
        return Err(usage());
    };
    let conns: usize = conns.parse().map_err(|_| usage())?;
    let msgs: usize = msgs.parse().map_err(|_| usage())?;
    let mut options = pipekit::ConnectOptions::new();
    options
        .mode(Mode::Messages)
        .wait(Some(std::time::Duration::from_secs(60)));
    net_connect_options(&mut options);
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(Stream::connect_with(name, &options)?);
    }
    let pid = std::process::id();
    let mut back = Vec::new();
    for m in 0..msgs {
        for (c, stream) in streams.iter_mut().enumerate() {
            let msg = format!(
                "{pid} conn {c} message {m} {}",
                "x".repeat((c * 7 + m) % 300)
            );
            stream.send(msg.as_bytes())?;
            if stream.recv_to_vec(&mut back)? != Some(msg.len()) || back != msg.as_bytes() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("connection {c} message {m} came back wrong"),
                ));
            }
        }
    }
    println!("ok {conns}");
    Ok(())
}

/// `duplex NAME bytes|messages PIECES`: connects, then writes PIECES 64 KiB pieces (seed 1)
/// through a clone while reading and checking as many of the server's (seed 2) — see
/// `pipekit_tests::duplex`; prints `ok`.
fn duplex(name: &str, mode: &str, rest: &[String]) -> io::Result<()> {
    let (pieces, via, framed) = match rest {
        [pieces, via] => (pieces, via, false),
        [pieces, via, framed] if framed == "--framed" => (pieces, via, true),
        _ => return Err(usage()),
    };
    let pieces: usize = pieces.parse().map_err(|_| usage())?;
    let mut options = pipekit::ConnectOptions::new();
    options
        .mode(if mode == "messages" {
            Mode::Messages
        } else {
            Mode::Bytes
        })
        .wait(Some(std::time::Duration::from_secs(60)));
    net_connect_options(&mut options);
    let stream = connect(name, &options, framed)?;
    pipekit_tests::duplex(&stream, via.parse()?, 1, 2, pieces)?;
    println!("ok");
    Ok(())
}

/// Connects to `name`; `framed` asks for length-prefixed messages (Unix).
fn connect(name: &str, options: &pipekit::ConnectOptions, framed: bool) -> io::Result<Stream> {
    #[cfg(unix)]
    if framed {
        use pipekit::os::unix::{Framing, StreamExt, UnixOptions};
        let mut unix = UnixOptions::new();
        unix.framing(Framing::LengthPrefixed);
        return Stream::connect_unix(name, options, &unix);
    }
    if framed {
        return Err(usage());
    }
    Stream::connect_with(name, options)
}

/// `bytes-client NAME TEXT`: connects in byte mode, writes TEXT, reads as many bytes back and
/// prints them.
fn bytes_client(name: &str, text: &str) -> io::Result<()> {
    let mut options = pipekit::ConnectOptions::new();
    options.wait(Some(std::time::Duration::from_secs(60)));
    net_connect_options(&mut options);
    let mut stream = Stream::connect_with(name, &options)?;
    stream.write_all(text.as_bytes())?;
    let mut back = vec![0u8; text.len()];
    stream.read_exact(&mut back)?;
    println!("{}", String::from_utf8_lossy(&back));
    Ok(())
}

fn flood(name: &str, mode: &str, rest: &[String]) -> io::Result<()> {
    let [size] = rest else {
        return Err(usage());
    };
    let size: usize = size.parse().map_err(|_| usage())?;
    let mode = match mode {
        "bytes" => Mode::Bytes,
        "messages" => Mode::Messages,
        _ => return Err(usage()),
    };
    let mut options = pipekit::ConnectOptions::new();
    options
        .mode(mode)
        .max_message_size(size.max(16))
        .wait(Some(std::time::Duration::from_secs(60)));
    net_connect_options(&mut options);
    let mut stream = Stream::connect_with(name, &options)?;
    let mut go = [0u8; 16];
    match mode {
        Mode::Messages => drop(stream.recv(&mut go)?),
        _ => stream.read_exact(&mut go[..2])?,
    }
    let chunk = pipekit_tests::pattern(size, 7);
    for i in 0.. {
        println!("sending {i}");
        io::stdout().flush()?;
        match mode {
            Mode::Messages => stream.send(&chunk)?,
            _ => stream.write_all(&chunk)?,
        }
    }
    Ok(())
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The `PEER_TLS_*` server settings.
fn net_listener_options(options: &mut ListenerOptions) {
    if let (Some(cert), Some(key)) = (env("PEER_TLS_CERT"), env("PEER_TLS_KEY")) {
        options.tls_certificate(cert, key);
    }
    if let Some(ca) = env("PEER_TLS_CLIENT_CA") {
        options.tls_client_ca(ca);
    }
    if let Some(name) = env("PEER_TLS_ALLOW") {
        options.tls_allow_client(name);
    }
    options.insecure_network(env("PEER_INSECURE_NETWORK").is_some());
    if let Some(capacity) = env("PEER_SHM").and_then(|c| c.parse().ok()) {
        options.shared_memory(Some(capacity));
    }
}

/// The `PEER_TLS_*` client settings, and `PEER_WAIT_MS` (how long to wait for the server,
/// instead of 60 s).
fn net_connect_options(options: &mut pipekit::ConnectOptions) {
    if let Some(ms) = env("PEER_WAIT_MS").and_then(|ms| ms.parse().ok()) {
        options.wait(Some(std::time::Duration::from_millis(ms)));
    }
    if let Some(ca) = env("PEER_TLS_CA") {
        options.tls_ca(ca);
    }
    if let (Some(cert), Some(key)) = (env("PEER_TLS_CLIENT_CERT"), env("PEER_TLS_CLIENT_KEY")) {
        options.tls_client_certificate(cert, key);
    }
    options.shared_memory(env("PEER_SHM").is_some());
}

#[cfg(unix)]
fn bind(name: &str, options: &ListenerOptions, fifo: bool) -> io::Result<Listener> {
    use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
    let mut unix = UnixOptions::new();
    if fifo {
        unix.transport(Transport::Fifo);
    }
    Listener::bind_unix(name, options, &unix)
}

#[cfg(not(unix))]
fn bind(name: &str, options: &ListenerOptions, fifo: bool) -> io::Result<Listener> {
    if fifo {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "FIFOs are a Unix transport",
        ));
    }
    Listener::bind_with(name, options)
}

fn serve(
    mut conn: Stream,
    answer: &Answer,
    exit_on: Option<&[u8]>,
    out: Option<&Mutex<io::Stdout>>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match conn.mode() {
            Mode::Messages => match conn.recv(&mut buf)? {
                Some(n) => n,
                None => return Ok(()),
            },
            _ => match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => n,
            },
        };
        if exit_on == Some(&buf[..n]) {
            std::process::exit(9);
        }
        if let Some(out) = out {
            let mut out = out.lock().unwrap();
            writeln!(out, "{}", String::from_utf8_lossy(&buf[..n]))?;
            out.flush()?;
        }
        let reply: Vec<u8> = match answer {
            Answer::Echo => buf[..n].to_vec(),
            Answer::Reply(text) => text.clone(),
            Answer::Big(size) => {
                let mut big = vec![0xA5u8; *size];
                big.extend_from_slice(&buf[..n]);
                big
            }
        };
        match conn.mode() {
            Mode::Messages => conn.send(&reply)?,
            _ => conn.write_all(&reply)?,
        }
    }
}
