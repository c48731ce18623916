//! The three measurements, and CPU pinning.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::peer::{PeerProcess, Role};
use crate::transports::{Conn, Transport};

/// Where the two processes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Wherever the scheduler puts them.
    #[default]
    None,
    /// Both on CPU 0.
    SameCore,
    /// The measuring process on CPU 0, the peer on CPU 1.
    SplitCores,
}

impl Pinning {
    /// `none`, `same` or `split`, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pinning::None => "none",
            Pinning::SameCore => "same",
            Pinning::SplitCores => "split",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s spelling.
    pub fn parse(s: &str) -> Option<Pinning> {
        match s {
            "none" => Some(Pinning::None),
            "same" => Some(Pinning::SameCore),
            "split" => Some(Pinning::SplitCores),
            _ => None,
        }
    }

    pub(crate) fn own_cpu(self) -> Option<usize> {
        match self {
            Pinning::None => None,
            _ => Some(0),
        }
    }

    pub(crate) fn peer_cpu(self) -> Option<usize> {
        match self {
            Pinning::None => None,
            Pinning::SameCore => Some(0),
            Pinning::SplitCores => Some(1),
        }
    }
}

/// Pins this process to `cpu`, or lets it run anywhere with `None` (Linux; elsewhere pinning
/// is not done).
#[cfg(target_os = "linux")]
pub(crate) fn pin_self(cpu: Option<usize>) -> io::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::{Pid, SysconfVar, sysconf};
    // The CPUs online, not the ones this process may use now (it may be pinned already).
    let cpus = sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n.max(1) as usize)
        .min(CpuSet::count());
    let mut set = CpuSet::new();
    match cpu {
        Some(cpu) => set.set(cpu % cpus).map_err(io::Error::from)?,
        None => {
            for c in 0..cpus {
                set.set(c).map_err(io::Error::from)?;
            }
        }
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Pinning is done on Linux only.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_self(_cpu: Option<usize>) -> io::Result<()> {
    Ok(())
}

/// A unique address for a transport's listener in this run.
fn fresh_addr(transport: &dyn Transport) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    transport.addr(&format!("pkb-{}-{n}", std::process::id()))
}

/// A connection to a running peer, for throughput batches or round trips.
#[derive(Debug)]
pub struct Session {
    conn: Box<dyn Conn>,
    peer: Option<PeerProcess>,
    role: Role,
    /// What every chunk holds ([`crate::peer::pattern`]).
    chunk: Vec<u8>,
    /// Where an echoed chunk arrives.
    back: Vec<u8>,
}

impl Session {
    /// Starts a sink peer (for [`batch`](Self::batch)) and connects to it.
    ///
    /// # Errors
    ///
    /// Starting the peer or connecting failed.
    pub fn sink(transport: &dyn Transport, size: usize, pinning: Pinning) -> io::Result<Session> {
        Session::start(transport, Role::Sink, size, pinning)
    }

    /// Starts an echo peer (for [`round_trip`](Self::round_trip)) and connects to it.
    ///
    /// # Errors
    ///
    /// Starting the peer or connecting failed.
    pub fn echo(transport: &dyn Transport, size: usize, pinning: Pinning) -> io::Result<Session> {
        Session::start(transport, Role::Echo, size, pinning)
    }

    fn start(
        transport: &dyn Transport,
        role: Role,
        size: usize,
        pinning: Pinning,
    ) -> io::Result<Session> {
        transport.check(size).map_err(io::Error::other)?;
        pin_self(pinning.own_cpu())?;
        let peer = PeerProcess::start(transport, role, &fresh_addr(transport), size, pinning)?;
        let conn = transport.connect(&peer.addr, size)?;
        Ok(Session {
            conn,
            peer: Some(peer),
            role,
            chunk: crate::peer::pattern(size),
            back: vec![0u8; size],
        })
    }

    /// Sends `count` chunks and waits for the peer to confirm it got them all; returns the
    /// time from the first byte to the confirmation.
    ///
    /// # Errors
    ///
    /// An I/O error, or a confirmation with the wrong total.
    pub fn batch(&mut self, count: u64) -> io::Result<Duration> {
        let start = Instant::now();
        self.conn.send(&count.to_be_bytes())?;
        for _ in 0..count {
            self.conn.send(&self.chunk)?;
        }
        let mut total = [0u8; 8];
        self.conn.recv_exact(&mut total)?;
        let elapsed = start.elapsed();
        let expected = count * self.chunk.len() as u64;
        if u64::from_be_bytes(total) != expected {
            return Err(io::Error::other(format!(
                "the reader confirmed {} bytes of {expected}",
                u64::from_be_bytes(total)
            )));
        }
        Ok(elapsed)
    }

    /// One chunk out and back; returns its round-trip time (the comparison with what was
    /// sent comes after the clock stops).
    ///
    /// # Errors
    ///
    /// An I/O error; `InvalidData` if the echo differs.
    pub fn round_trip(&mut self) -> io::Result<Duration> {
        let start = Instant::now();
        self.conn.send(&self.chunk)?;
        self.conn.recv_exact(&mut self.back)?;
        let elapsed = start.elapsed();
        if self.back != self.chunk {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an echoed chunk came back with different bytes",
            ));
        }
        Ok(elapsed)
    }

    /// The kernel buffer sizes in effect on this end, for the report.
    pub fn settings(&self) -> String {
        self.conn.settings()
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
            self.conn.send(&crate::peer::END.to_be_bytes())?;
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
    /// Time taken.
    pub elapsed: Duration,
    /// The kernel buffer sizes the writing end had (see [`Session::settings`]).
    pub settings: String,
}

impl Throughput {
    /// Gigabytes (10⁹ bytes) per second.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }
}

/// Measures one-way throughput: chunks of `size` bytes for about `duration` (after a short
/// warm-up that also picks the batch size).
///
/// # Errors
///
/// The transport could not run (see [`Transport::check`]) or failed.
pub fn throughput(
    transport: &dyn Transport,
    size: usize,
    duration: Duration,
    pinning: Pinning,
) -> io::Result<Throughput> {
    let mut session = Session::sink(transport, size, pinning)?;
    // Warm up and calibrate: grow the batch until it takes a tenth of the duration.
    let mut count = 16u64;
    loop {
        let took = session.batch(count)?;
        if took >= duration / 10 || count >= 1 << 40 {
            break;
        }
        count *= 2;
    }
    let batches = 8;
    let mut total = Duration::ZERO;
    for _ in 0..batches {
        total += session.batch(count)?;
    }
    let settings = session.settings();
    session.finish()?;
    Ok(Throughput {
        bytes: count * batches * size as u64,
        elapsed: total,
        settings,
    })
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

/// Measures ping-pong latency: round trips of `size` bytes for about `duration`.
///
/// # Errors
///
/// The transport could not run or failed.
pub fn latency(
    transport: &dyn Transport,
    size: usize,
    duration: Duration,
    pinning: Pinning,
) -> io::Result<Latency> {
    let mut session = Session::echo(transport, size, pinning)?;
    for _ in 0..100 {
        session.round_trip()?;
    }
    let mut samples = histogram();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        record(&mut samples, session.round_trip()?);
    }
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
        let peer =
            PeerProcess::start(transport, Role::Connect, &fresh_addr(transport), 1, pinning)?;
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

/// The byte a connect-time client sends (the peer answers it); [`CONNECT_STOP`] ends the
/// peer instead.
pub(crate) const CONNECT_PING: u8 = 7;

/// The byte that tells a connect peer to stop: it drops its listener, which removes the
/// files it made, and exits.
pub(crate) const CONNECT_STOP: u8 = 0xFF;

impl Drop for Connector {
    /// Stops the peer by a last connection (so it removes its files); a peer that cannot be
    /// reached is killed when the `PeerProcess` drops.
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
        // Otherwise the `PeerProcess` kills it when it drops.
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
    while start.elapsed() < duration {
        for d in dst.chunks_exact_mut(size) {
            d.copy_from_slice(std::hint::black_box(&src));
        }
        std::hint::black_box(&mut dst);
        bytes += region as u64;
    }
    Throughput {
        bytes,
        elapsed: start.elapsed(),
        settings: String::new(),
    }
}
