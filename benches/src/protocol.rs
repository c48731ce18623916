//! What the processes of a measurement say to each other: the peer's spec (in the
//! environment), the chunks' contents, and the counts and bytes that end a session.

use std::io;
use std::time::Duration;

use crate::transport::Transport;
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Sink => "sink",
            Role::Echo => "echo",
            Role::Connect => "connect",
            Role::SinkClient => "sink-client",
            Role::EchoClient => "echo-client",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Role> {
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
    pub(crate) fn encode(&self) -> String {
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

    pub(crate) fn decode(spec: &str) -> Option<Spec> {
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
