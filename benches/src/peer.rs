//! The other processes of a measurement: the same executable, started again with
//! [`PEER_ENV`] set. A *server* peer listens and serves (sink, echo or connect); with
//! several clients, each *client* peer connects to the server, waits for the word to start,
//! measures for the given time and prints what it measured.

use std::io::{self, BufRead, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::pin::{Pinning, pin_self};
use crate::transport::{Conn, Transport};
use crate::transports::by_name;

/// The environment variable that turns a harness executable into a peer. Its value is
/// `ROLE TRANSPORT ADDR SIZE CPU CONNS DURATION_NS RATE` (CPU and RATE `-` for none).
pub const PEER_ENV: &str = "PIPEKIT_BENCH_PEER";

/// The count that ends a sink session (transports such as message queues have no EOF).
pub(crate) const END: u64 = u64::MAX;

/// The byte a connect-time client sends (the peer answers it); [`CONNECT_STOP`] ends the
/// peer instead.
pub(crate) const CONNECT_PING: u8 = 7;

/// The byte that tells a connect peer to stop: it drops its listener, which removes the
/// files it made, and exits.
pub(crate) const CONNECT_STOP: u8 = 0xFF;

/// What a peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Server: reads a count, that many chunks, answers with the total and its CPU time so
    /// far; again until the end count or EOF.
    Sink,
    /// Server: echoes each chunk until EOF.
    Echo,
    /// Server: accepts connection after connection, answering one byte with one byte.
    Connect,
    /// Client of a sink server, one of several: sends batches for the duration.
    SinkClient,
    /// Client of an echo server, one of several: round trips for the duration.
    EchoClient,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Sink => "sink",
            Role::Echo => "echo",
            Role::Connect => "connect",
            Role::SinkClient => "sink-client",
            Role::EchoClient => "echo-client",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [
            Role::Sink,
            Role::Echo,
            Role::Connect,
            Role::SinkClient,
            Role::EchoClient,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// What a peer is asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) role: Role,
    pub(crate) transport: &'static dyn Transport,
    pub(crate) addr: String,
    pub(crate) size: usize,
    pub(crate) cpu: Option<usize>,
    /// A server: how many connections it serves at once (each on its own thread).
    pub(crate) conns: usize,
    /// A client: how long it measures.
    pub(crate) duration: Duration,
    /// An echo client: its open-loop rate in round trips per second.
    pub(crate) rate: Option<f64>,
}

impl Spec {
    fn encode(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| String::from("-"));
        format!(
            "{} {} {} {} {} {} {} {}",
            self.role.as_str(),
            self.transport.name(),
            if self.addr.is_empty() {
                "-"
            } else {
                &self.addr
            },
            self.size,
            opt(self.cpu.map(|c| c.to_string())),
            self.conns,
            self.duration.as_nanos(),
            opt(self.rate.map(|r| r.to_string())),
        )
    }

    fn decode(spec: &str) -> Option<Spec> {
        let parts: Vec<&str> = spec.split(' ').collect();
        let [role, transport, addr, size, cpu, conns, duration, rate] = parts[..] else {
            return None;
        };
        Some(Spec {
            role: Role::parse(role)?,
            transport: by_name(transport)?,
            addr: addr.to_string(),
            size: size.parse().ok()?,
            cpu: cpu.parse().ok(),
            conns: conns.parse().ok()?,
            duration: Duration::from_nanos(duration.parse().ok()?),
            rate: rate.parse().ok(),
        })
    }
}

/// If this process was started as a peer, runs the peer and exits; otherwise returns.
pub fn run_peer_if_requested() {
    let Ok(spec) = std::env::var(PEER_ENV) else {
        return;
    };
    let code = match run_peer(&spec) {
        Ok(()) => 0,
        // The signal handler is removing what this peer made, which cut a call short; it
        // exits the process when done.
        Err(_) if cleanup::stopping() => loop {
            std::thread::park();
        },
        Err(e) => {
            eprintln!("benchmark peer ({spec}): {e}");
            1
        }
    };
    cleanup::run_all();
    std::process::exit(code);
}

fn run_peer(spec: &str) -> io::Result<()> {
    cleanup::on_signal_exit()?;
    let spec = Spec::decode(spec).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad peer spec {spec:?}"),
        )
    })?;
    pin_self(spec.cpu)?;
    match spec.role {
        Role::SinkClient | Role::EchoClient => return client(&spec),
        Role::Sink | Role::Echo | Role::Connect => {}
    }
    let mut listener = spec.transport.listen(&spec.addr, spec.size)?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready {}", listener.addr())?;
    out.flush()?;
    drop(out);
    if spec.role == Role::Connect {
        loop {
            let mut conn = listener.accept()?;
            let mut one = [0u8; 1];
            match conn.recv_exact(&mut one).and_then(|()| conn.send(&one)) {
                Ok(()) if one[0] == CONNECT_STOP => return Ok(()),
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e),
            }
        }
    }
    let serve = move |mut conn: Box<dyn Conn>| -> io::Result<()> {
        let mut chunk = vec![0u8; spec.size];
        let result = match spec.role {
            Role::Sink => sink(&mut *conn, &mut chunk),
            _ => echo(&mut *conn, &mut chunk),
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
            _ => Ok(()),
        }
    };
    if spec.conns <= 1 {
        return serve(listener.accept()?);
    }
    std::thread::scope(|scope| {
        let mut served = Vec::new();
        for _ in 0..spec.conns {
            let conn = listener.accept()?;
            served.push(scope.spawn(move || serve(conn)));
        }
        served.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")))
        })
    })
}

/// The bytes of every benchmark chunk of `size` bytes: byte `i` is `i as u8`. Both ends check
/// what arrives against it, so a transport that loses or mixes up data fails instead of
/// measuring.
pub(crate) fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

pub(crate) fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} arrived with different bytes than were sent"),
    )
}

fn sink(conn: &mut dyn Conn, chunk: &mut [u8]) -> io::Result<()> {
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
        let cpu = crate::cpu::process_time().as_nanos() as u64;
        let mut answer = [0u8; 16];
        answer[..8].copy_from_slice(&total.to_be_bytes());
        answer[8..].copy_from_slice(&cpu.to_be_bytes());
        conn.send(&answer)?;
    }
}

fn echo(conn: &mut dyn Conn, chunk: &mut [u8]) -> io::Result<()> {
    let expected = pattern(chunk.len());
    loop {
        conn.recv_exact(chunk)?;
        if *chunk != *expected {
            return Err(corrupt("a chunk"));
        }
        conn.send(chunk)?;
    }
}

/// One of several clients: connect, calibrate, say `ready`, wait for `go` on stdin, measure
/// for the duration, print the result, end the session.
fn client(spec: &Spec) -> io::Result<()> {
    let mut session = crate::measure::Session::connect(spec.transport, &spec.addr, spec.size)?;
    let mut out = io::stdout().lock();
    let mut go = String::new();
    match spec.role {
        Role::SinkClient => {
            let (count, _) = session.calibrate(spec.duration)?;
            writeln!(out, "ready")?;
            out.flush()?;
            io::stdin().lock().read_line(&mut go)?;
            // Another client's warm-up may have run since: the server's CPU counts from the
            // first batch after the start.
            let warm = session.batch(1)?;
            let start = Instant::now();
            let own = crate::cpu::process_time();
            let (mut bytes, mut server_cpu) = (0u64, warm.peer_cpu);
            while start.elapsed() < spec.duration {
                let batch = session.batch(count)?;
                bytes += batch.bytes;
                server_cpu = batch.peer_cpu;
            }
            let peer_cpu = server_cpu.saturating_sub(warm.peer_cpu);
            let elapsed = start.elapsed();
            let own = crate::cpu::process_time().saturating_sub(own);
            writeln!(
                out,
                "done {bytes} {} {} {}",
                elapsed.as_nanos(),
                own.as_nanos(),
                peer_cpu.as_nanos()
            )?;
        }
        _ => {
            writeln!(out, "ready")?;
            out.flush()?;
            io::stdin().lock().read_line(&mut go)?;
            let samples = crate::measure::round_trips(&mut session, spec.duration, spec.rate)?;
            write!(out, "done")?;
            for v in samples.iter_recorded() {
                write!(out, " {}:{}", v.value_iterated_to(), v.count_at_value())?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    drop(out);
    session.end()
}

/// A running peer. Dropping it stops it: SIGTERM first (it removes what it made), SIGKILL
/// if it has not exited within a second.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Where the peer listens (what a server's `ready` line said).
    pub(crate) addr: String,
    _stop: cleanup::Guard,
}

impl PeerProcess {
    /// Starts a peer and waits for its `ready` line.
    pub(crate) fn start(spec: &Spec, pinning: Pinning) -> io::Result<PeerProcess> {
        if cleanup::stopping() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the run is being stopped",
            ));
        }
        let spec = Spec {
            cpu: pinning.peer_cpu(),
            ..spec.clone()
        };
        let mut child = Command::new(std::env::current_exe()?)
            .env(PEER_ENV, spec.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let stop = cleanup::on_exit(move || terminate(pid));
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let line = read_line(&mut stdout)?;
        let mut peer = PeerProcess {
            child,
            stdin,
            stdout,
            addr: String::new(),
            _stop: stop,
        };
        let Some(addr) = line.strip_prefix("ready") else {
            let status = peer.child.wait()?;
            return Err(io::Error::other(format!(
                "the {} peer did not start ({status})",
                spec.transport.name()
            )));
        };
        peer.addr = addr.trim().to_string();
        Ok(peer)
    }

    /// Tells a client peer to start measuring.
    pub(crate) fn go(&mut self) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        stdin.write_all(b"go\n")?;
        stdin.flush()
    }

    /// A client peer's result line, without its `done ` prefix.
    pub(crate) fn result(&mut self) -> io::Result<String> {
        let line = read_line(&mut self.stdout)?;
        line.strip_prefix("done")
            .map(|rest| rest.trim().to_string())
            .ok_or_else(|| io::Error::other("a client peer ended without a result"))
    }

    /// Waits up to half a second for the peer to exit by itself (it was told to stop, or saw
    /// the end of its connection); a peer still running then is stopped on drop.
    pub(crate) fn wait_a_while(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
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

/// One line from a peer's stdout, read byte by byte so nothing after it is consumed.
fn read_line(out: &mut ChildStdout) -> io::Result<String> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Asks process `pid` to stop (SIGTERM: a peer removes what it made), and kills it if it
/// is still there after a second.
#[cfg(unix)]
fn terminate(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return,
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Windows peers leave nothing behind; the `Child` kills them on drop.
#[cfg(not(unix))]
fn terminate(_pid: u32) {}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        drop(self.stdin.take());
        #[cfg(unix)]
        terminate(self.child.id());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
