//! The peer process: the same executable, started again with [`PEER_ENV`] set.

use std::io::{self, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::measure::{Pinning, pin_self};
use crate::transports::{Transport, by_name};

/// The environment variable that turns a harness executable into a peer:
/// `ROLE TRANSPORT ADDR SIZE CPU` (CPU `-` for no pinning).
pub const PEER_ENV: &str = "PIPEKIT_BENCH_PEER";

/// The count that ends a sink session (transports such as message queues have no EOF).
pub(crate) const END: u64 = u64::MAX;

/// What the peer does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Reads a count, that many chunks, answers with the total; again until EOF.
    Sink,
    /// Echoes each chunk until EOF.
    Echo,
    /// Accepts connection after connection, answering one byte with one byte.
    Connect,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Sink => "sink",
            Role::Echo => "echo",
            Role::Connect => "connect",
        }
    }
}

/// If this process was started as a peer, runs the peer and exits; otherwise returns.
pub fn run_peer_if_requested() {
    let Ok(spec) = std::env::var(PEER_ENV) else {
        return;
    };
    let code = match run_peer(&spec) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("benchmark peer ({spec}): {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run_peer(spec: &str) -> io::Result<()> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad peer spec {spec:?}"),
        )
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let [role, transport, addr, size, cpu] = parts[..] else {
        return Err(bad());
    };
    let transport = by_name(transport).ok_or_else(bad)?;
    let size: usize = size.parse().map_err(|_| bad())?;
    pin_self(cpu.parse().ok())?;
    let mut listener = transport.listen(addr, size)?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready {}", listener.addr())?;
    out.flush()?;
    drop(out);
    let mut buf = vec![0u8; size.max(8)];
    loop {
        let mut conn = listener.accept()?;
        let result = match role {
            "sink" => sink(&mut *conn, &mut buf[..size]),
            "echo" => echo(&mut *conn, &mut buf[..size]),
            "connect" => {
                let mut one = [0u8; 1];
                conn.recv_exact(&mut one)?;
                conn.send(&one)?;
                if one[0] == crate::measure::CONNECT_STOP {
                    // Dropping the listener on return removes its files.
                    return Ok(());
                }
                Ok(())
            }
            _ => return Err(bad()),
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
        if role != "connect" {
            return Ok(());
        }
    }
}

/// The bytes of every benchmark chunk of `size` bytes: byte `i` is `i as u8`. Both ends check
/// what arrives against it, so a transport that loses or mixes up data fails instead of
/// measuring.
pub(crate) fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} arrived with different bytes than were sent"),
    )
}

fn sink(conn: &mut dyn crate::Conn, chunk: &mut [u8]) -> io::Result<()> {
    let expected = pattern(chunk.len());
    loop {
        let mut count = [0u8; 8];
        conn.recv_exact(&mut count)?;
        let count = u64::from_be_bytes(count);
        if count == END {
            return Ok(());
        }
        let mut total = 0u64;
        for _ in 0..count {
            conn.recv_exact(chunk)?;
            if *chunk != *expected {
                return Err(corrupt("a chunk"));
            }
            total += chunk.len() as u64;
        }
        conn.send(&total.to_be_bytes())?;
    }
}

fn echo(conn: &mut dyn crate::Conn, chunk: &mut [u8]) -> io::Result<()> {
    let expected = pattern(chunk.len());
    loop {
        conn.recv_exact(chunk)?;
        if *chunk != *expected {
            return Err(corrupt("a chunk"));
        }
        conn.send(chunk)?;
    }
}

/// A running peer; killed when dropped.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    child: Child,
    /// Where the peer listens (what its `ready` line said).
    pub(crate) addr: String,
}

impl PeerProcess {
    pub(crate) fn start(
        transport: &dyn Transport,
        role: Role,
        addr: &str,
        size: usize,
        pinning: Pinning,
    ) -> io::Result<PeerProcess> {
        let cpu = pinning
            .peer_cpu()
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        let spec = format!("{} {} {addr} {size} {cpu}", role.as_str(), transport.name());
        let mut child = Command::new(std::env::current_exe()?)
            .env(PEER_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let line = read_line(child.stdout.as_mut().expect("piped stdout"))?;
        let Some(addr) = line.strip_prefix("ready ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "the {} peer did not start",
                transport.name()
            )));
        };
        Ok(PeerProcess {
            addr: addr.trim().to_string(),
            child,
        })
    }

    /// Waits up to half a second for the peer to exit by itself (it was told to stop, or saw
    /// the end of its connection); a peer still running then is killed on drop.
    pub(crate) fn wait_a_while(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                _ => return,
            }
        }
    }

    /// Waits for the peer to exit by itself.
    pub(crate) fn wait(mut self) -> io::Result<()> {
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("benchmark peer failed: {status}")))
        }
    }
}

/// One line from the peer's stdout, read byte by byte so nothing after it is consumed.
fn read_line(out: &mut ChildStdout) -> io::Result<String> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
