//! The measurements: throughput (with its CPU cost), round-trip latency (closed or open
//! loop, one client or several), connect time, and the memcpy reference.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::pin::{Pinning, pin_self};
use crate::process::PeerProcess;
use crate::protocol::{CONNECT_PING, CONNECT_STOP, END, Role, Spec, corrupt, pattern};
use crate::transport::{Conn, Transport};

/// A unique address for a transport's listener in this run.
fn fresh_addr(transport: &dyn Transport) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    transport.addr(&format!("pkb-{}-{n}", std::process::id()))
}

/// How many clients load the server, and at what rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Client connections at once; more than one means as many client processes.
    pub clients: usize,
    /// Open-loop latency: round trips started at this total rate (per second), each timed
    /// from when it was due. `None`: closed loop, each round trip as soon as the last ended.
    pub rate: Option<f64>,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            clients: 1,
            rate: None,
        }
    }
}

/// A server peer's spec for `transport`.
fn server(transport: &'static dyn Transport, role: Role, size: usize, conns: usize) -> Spec {
    Spec {
        role,
        transport,
        addr: fresh_addr(transport),
        size,
        cpu: None,
        conns,
        duration: Duration::ZERO,
        rate: None,
    }
}

/// A connection to a running peer, for throughput batches or round trips.
#[derive(Debug)]
pub struct Session {
    conn: Box<dyn Conn>,
    peer: Option<PeerProcess>,
    role: Role,
    /// What every chunk holds ([`pattern`]).
    chunk: Vec<u8>,
    /// Where an echoed chunk arrives.
    back: Vec<u8>,
}

/// One throughput batch.
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    /// Bytes moved.
    pub bytes: u64,
    /// From the first byte out to the reader's confirmation.
    pub elapsed: Duration,
    /// The reading peer's CPU time so far (all its threads), as its confirmation said.
    pub peer_cpu: Duration,
}

impl Session {
    /// Starts a sink peer (for [`batch`](Self::batch)) and connects to it.
    ///
    /// # Errors
    ///
    /// Starting the peer or connecting failed.
    pub fn sink(
        transport: &'static dyn Transport,
        size: usize,
        pinning: Pinning,
    ) -> io::Result<Session> {
        Session::start(transport, Role::Sink, size, pinning)
    }

    /// Starts an echo peer (for [`round_trip`](Self::round_trip)) and connects to it.
    ///
    /// # Errors
    ///
    /// Starting the peer or connecting failed.
    pub fn echo(
        transport: &'static dyn Transport,
        size: usize,
        pinning: Pinning,
    ) -> io::Result<Session> {
        Session::start(transport, Role::Echo, size, pinning)
    }

    fn start(
        transport: &'static dyn Transport,
        role: Role,
        size: usize,
        pinning: Pinning,
    ) -> io::Result<Session> {
        transport.check(size).map_err(io::Error::other)?;
        pin_self(pinning.own_cpu())?;
        let peer = PeerProcess::start(&server(transport, role, size, 1), pinning)?;
        let mut session = Session::connect(transport, &peer.addr, size)?;
        session.role = role;
        session.peer = Some(peer);
        Ok(session)
    }

    /// Connects to a server peer that is already running (a client peer does this).
    pub(crate) fn connect(
        transport: &dyn Transport,
        addr: &str,
        size: usize,
    ) -> io::Result<Session> {
        Ok(Session {
            conn: transport.connect(addr, size)?,
            peer: None,
            role: Role::Sink,
            chunk: pattern(size),
            back: vec![0u8; size],
        })
    }

    /// Sends `count` chunks and waits for the peer to confirm it got them all.
    ///
    /// # Errors
    ///
    /// An I/O error, or a confirmation with the wrong total.
    pub fn batch(&mut self, count: u64) -> io::Result<Batch> {
        let start = Instant::now();
        self.conn.send(&count.to_be_bytes())?;
        for _ in 0..count {
            self.conn.send(&self.chunk)?;
        }
        let mut answer = [0u8; 16];
        self.conn.recv_exact(&mut answer)?;
        let elapsed = start.elapsed();
        let total = u64::from_be_bytes(answer[..8].try_into().expect("8 bytes"));
        let cpu = Duration::from_nanos(u64::from_be_bytes(answer[8..].try_into().expect("8")));
        let expected = count * self.chunk.len() as u64;
        if total != expected {
            return Err(io::Error::other(format!(
                "the reader confirmed {total} bytes of {expected}"
            )));
        }
        Ok(Batch {
            bytes: total,
            elapsed,
            peer_cpu: cpu,
        })
    }

    /// Grows the batch until one takes a tenth of `duration` (also the warm-up); returns
    /// the count and the last warm-up batch.
    pub(crate) fn calibrate(&mut self, duration: Duration) -> io::Result<(u64, Batch)> {
        let mut count = 16u64;
        loop {
            let batch = self.batch(count)?;
            if batch.elapsed >= duration / 10 || count >= 1 << 40 {
                return Ok((count, batch));
            }
            count *= 2;
        }
    }

    /// One chunk out and back; returns its round-trip time (the comparison with what was
    /// sent comes after the clock stops).
    ///
    /// # Errors
    ///
    /// An I/O error; `InvalidData` if the echo differs.
    pub fn round_trip(&mut self) -> io::Result<Duration> {
        let start = Instant::now();
        self.round_trip_from(start)
    }

    /// One round trip, timed from `due` (open loop: when it should have started).
    fn round_trip_from(&mut self, due: Instant) -> io::Result<Duration> {
        self.conn.send(&self.chunk)?;
        self.conn.recv_exact(&mut self.back)?;
        let elapsed = due.elapsed();
        if self.back != self.chunk {
            return Err(corrupt("an echoed chunk"));
        }
        Ok(elapsed)
    }

    /// The kernel buffer sizes in effect on this end, for the report.
    pub fn settings(&self) -> String {
        self.conn.settings()
    }

    /// A client's end: the sink is told the session is over (an echo sees the connection
    /// close).
    pub(crate) fn end(mut self) -> io::Result<()> {
        if self.role == Role::Sink {
            self.conn.send(&END.to_be_bytes())?;
        }
        Ok(())
    }

    /// Ends the session. A sink peer is told the session is over and must exit cleanly; an
    /// echo peer sees the end of the connection and exits (removing what it made), or, on a
    /// transport with no end of stream, is stopped after a short wait.
    ///
    /// # Errors
    ///
    /// The sink peer failed.
    pub fn finish(mut self) -> io::Result<()> {
        let peer = self.peer.take();
        if self.role == Role::Sink {
            self.conn.send(&END.to_be_bytes())?;
            drop(self);
            return peer.map_or(Ok(()), PeerProcess::wait);
        }
        drop(self);
        if let Some(mut peer) = peer {
            peer.wait_a_while();
        }
        Ok(())
    }
}

/// A throughput result.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Bytes moved.
    pub bytes: u64,
    /// Chunks moved.
    pub messages: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// CPU time (user + system) of every process taking part, over the measured batches.
    pub cpu: Duration,
    /// The kernel buffer sizes the writing end had (see [`Session::settings`]).
    pub settings: String,
}

impl Throughput {
    /// Gigabytes (10⁹ bytes) per second.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }

    /// Chunks per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU seconds spent per gigabyte moved.
    pub fn cpu_s_per_gb(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes as f64 / 1e9)
    }

    /// CPU seconds spent per chunk moved.
    pub fn cpu_s_per_msg(&self) -> f64 {
        self.cpu.as_secs_f64() / self.messages.max(1) as f64
    }
}

/// Measures one-way throughput: chunks of `size` bytes for about `duration` (after a short
/// warm-up that also picks the batch size), from `load.clients` writers at once.
///
/// # Errors
///
/// The transport could not run (see [`Transport::check`]) or failed.
pub fn throughput(
    transport: &'static dyn Transport,
    size: usize,
    duration: Duration,
    pinning: Pinning,
    load: Load,
) -> io::Result<Throughput> {
    if load.clients > 1 {
        return throughput_of_clients(transport, size, duration, pinning, load.clients);
    }
    let mut session = Session::sink(transport, size, pinning)?;
    let (count, warm) = session.calibrate(duration)?;
    let batches = 8;
    let own = crate::cpu::process_time();
    let (mut bytes, mut elapsed, mut reader) = (0, Duration::ZERO, warm.peer_cpu);
    for _ in 0..batches {
        let b = session.batch(count)?;
        bytes += b.bytes;
        elapsed += b.elapsed;
        reader = b.peer_cpu;
    }
    let own = crate::cpu::process_time().saturating_sub(own);
    let settings = session.settings();
    session.finish()?;
    Ok(Throughput {
        bytes,
        messages: count * batches,
        elapsed,
        // The reader's CPU from its answer to the last warm-up batch to its last answer.
        cpu: own + reader.saturating_sub(warm.peer_cpu),
        settings,
    })
}

/// Throughput of `clients` client processes writing to one server at once.
fn throughput_of_clients(
    transport: &'static dyn Transport,
    size: usize,
    duration: Duration,
    pinning: Pinning,
    clients: usize,
) -> io::Result<Throughput> {
    let (_server, mut peers) = start_clients(
        transport,
        Role::SinkClient,
        size,
        duration,
        pinning,
        clients,
        None,
    )?;
    // Each client reports its own CPU time and the server's over its interval; the server's
    // covers all its connections, so the intervals' largest counts once.
    let (mut bytes, mut elapsed, mut cpu, mut server) = (0u64, Duration::ZERO, Duration::ZERO, 0);
    for peer in &mut peers {
        let line = peer.result()?;
        let v: Vec<u64> = line.split(' ').filter_map(|f| f.parse().ok()).collect();
        let [b, nanos, own, reader] = v[..] else {
            return Err(io::Error::other(format!("bad client result {line:?}")));
        };
        bytes += b;
        elapsed = elapsed.max(Duration::from_nanos(nanos));
        cpu += Duration::from_nanos(own);
        server = server.max(reader);
    }
    let cpu = cpu + Duration::from_nanos(server);
    Ok(Throughput {
        bytes,
        messages: bytes / size.max(1) as u64,
        elapsed,
        cpu,
        settings: format!("{clients} client processes"),
    })
}

/// Starts a server for `clients` connections and that many client peers, and tells them to
/// start once all are connected and calibrated.
fn start_clients(
    transport: &'static dyn Transport,
    role: Role,
    size: usize,
    duration: Duration,
    pinning: Pinning,
    clients: usize,
    rate: Option<f64>,
) -> io::Result<(PeerProcess, Vec<PeerProcess>)> {
    transport.check(size).map_err(io::Error::other)?;
    if !transport.reconnects() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} serves a single session", transport.name()),
        ));
    }
    let served = if role == Role::SinkClient {
        Role::Sink
    } else {
        Role::Echo
    };
    pin_self(pinning.own_cpu())?;
    let server = PeerProcess::start(&server(transport, served, size, clients), pinning)?;
    let mut peers = Vec::new();
    for _ in 0..clients {
        let spec = Spec {
            role,
            transport,
            addr: server.addr.clone(),
            size,
            cpu: None,
            conns: 1,
            duration,
            rate: rate.map(|r| r / clients as f64),
        };
        // Clients run on the measuring process's CPU: it only waits for them.
        let pin = match pinning {
            Pinning::None => Pinning::None,
            _ => Pinning::SameCore,
        };
        peers.push(PeerProcess::start(&spec, pin)?);
    }
    for peer in &mut peers {
        peer.go()?;
    }
    Ok((server, peers))
}

/// Round-trip latency percentiles.
#[derive(Clone, Debug)]
pub struct Latency {
    /// The samples, in nanoseconds.
    pub histogram: Histogram<u64>,
}

impl Latency {
    /// The `q` quantile (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1e3
    }

    /// The slowest round trip in microseconds.
    pub fn max_us(&self) -> f64 {
        self.histogram.max() as f64 / 1e3
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn record(histogram: &mut Histogram<u64>, d: Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    histogram.saturating_record(nanos);
}

/// Round trips for `duration` after 100 to warm up: back to back, or with `rate` set, one
/// due every `1/rate` seconds and timed from when it was due (a round trip that ends late
/// delays the next one's start, never its clock: coordinated omission is counted, not
/// hidden).
pub(crate) fn round_trips(
    session: &mut Session,
    duration: Duration,
    rate: Option<f64>,
) -> io::Result<Histogram<u64>> {
    for _ in 0..100 {
        session.round_trip()?;
    }
    let mut samples = histogram();
    let start = Instant::now();
    let end = start + duration;
    match rate {
        None => {
            while Instant::now() < end {
                record(&mut samples, session.round_trip()?);
            }
        }
        Some(rate) => {
            let period = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let mut due = start;
            while due < end {
                wait_until(due);
                record(&mut samples, session.round_trip_from(due)?);
                due += period;
            }
        }
    }
    Ok(samples)
}

/// Sleeps until shortly before `when`, then spins to it.
fn wait_until(when: Instant) {
    let now = Instant::now();
    if when > now + Duration::from_micros(200) {
        std::thread::sleep(when - now - Duration::from_micros(100));
    }
    while Instant::now() < when {
        std::hint::spin_loop();
    }
}

/// Measures round-trip latency with chunks of `size` bytes for about `duration`.
///
/// # Errors
///
/// The transport could not run or failed.
pub fn latency(
    transport: &'static dyn Transport,
    size: usize,
    duration: Duration,
    pinning: Pinning,
    load: Load,
) -> io::Result<Latency> {
    if load.clients > 1 {
        let (_server, mut peers) = start_clients(
            transport,
            Role::EchoClient,
            size,
            duration,
            pinning,
            load.clients,
            load.rate,
        )?;
        let mut samples = histogram();
        for peer in &mut peers {
            let line = peer.result()?;
            for pair in line.split(' ').filter(|p| !p.is_empty()) {
                let parsed = pair
                    .split_once(':')
                    .and_then(|(v, n)| Some((v.parse().ok()?, n.parse().ok()?)));
                let Some((value, count)) = parsed else {
                    return Err(io::Error::other(format!("bad client histogram {pair:?}")));
                };
                samples.saturating_record_n(value, count);
            }
        }
        return Ok(Latency { histogram: samples });
    }
    let mut session = Session::echo(transport, size, pinning)?;
    let samples = round_trips(&mut session, duration, load.rate)?;
    session.finish()?;
    Ok(Latency { histogram: samples })
}

/// Connect-time percentiles: connect, one byte out, one byte back.
#[derive(Clone, Debug)]
pub struct ConnectTime {
    /// The samples, in nanoseconds.
    pub histogram: Histogram<u64>,
}

/// A connect peer that answers connection after connection.
#[derive(Debug)]
pub struct Connector {
    transport: &'static dyn Transport,
    peer: PeerProcess,
}

impl Connector {
    /// Starts the peer.
    ///
    /// # Errors
    ///
    /// The transport has no connect step to measure (a single-session baseline), or the
    /// peer did not start.
    pub fn start(transport: &'static dyn Transport, pinning: Pinning) -> io::Result<Connector> {
        if !transport.reconnects() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} serves a single session", transport.name()),
            ));
        }
        pin_self(pinning.own_cpu())?;
        let peer = PeerProcess::start(&server(transport, Role::Connect, 1, 1), pinning)?;
        Ok(Connector { transport, peer })
    }

    /// Connects, sends one byte, reads one back; returns the time it took.
    ///
    /// # Errors
    ///
    /// The transport's error.
    pub fn once(&self) -> io::Result<Duration> {
        let mut one = [CONNECT_PING; 1];
        let start = Instant::now();
        let mut conn = self.transport.connect(&self.peer.addr, 1)?;
        conn.send(&one)?;
        conn.recv_exact(&mut one)?;
        Ok(start.elapsed())
    }
}

impl Drop for Connector {
    /// Stops the peer by a last connection (so it removes its files); a peer that cannot be
    /// reached is stopped when the `PeerProcess` drops.
    fn drop(&mut self) {
        let stopped = self
            .transport
            .connect(&self.peer.addr, 1)
            .and_then(|mut conn| {
                conn.send(&[CONNECT_STOP])?;
                let mut one = [0u8; 1];
                conn.recv_exact(&mut one)
            });
        if stopped.is_ok() {
            self.peer.wait_a_while();
        }
    }
}

/// Measures connect time: `count` fresh connections to one peer.
///
/// # Errors
///
/// As [`Connector::start`] and [`Connector::once`].
pub fn connect_time(
    transport: &'static dyn Transport,
    count: usize,
    pinning: Pinning,
) -> io::Result<ConnectTime> {
    let connector = Connector::start(transport, pinning)?;
    let mut samples = histogram();
    for _ in 0..count {
        record(&mut samples, connector.once()?);
    }
    Ok(ConnectTime { histogram: samples })
}

/// The bandwidth of copying a `size`-byte buffer into successive places of a 4 MiB region
/// (the size of a large pipe's worth of data) within one process, for about `duration`: the
/// ceiling no IPC that copies beats.
pub fn memcpy(size: usize, duration: Duration) -> Throughput {
    let size = size.max(1);
    let region = (4 << 20) / size * size;
    let region = region.max(size);
    let src = vec![0x5Au8; size];
    // Touched once before timing, so page faults are not measured.
    let mut dst = vec![1u8; region];
    let mut bytes = 0u64;
    let start = Instant::now();
    let cpu = crate::cpu::process_time();
    while start.elapsed() < duration {
        for d in dst.chunks_exact_mut(size) {
            d.copy_from_slice(std::hint::black_box(&src));
        }
        std::hint::black_box(&mut dst);
        bytes += region as u64;
    }
    Throughput {
        bytes,
        messages: bytes / size as u64,
        elapsed: start.elapsed(),
        cpu: crate::cpu::process_time().saturating_sub(cpu),
        settings: String::new(),
    }
}
