//! Shared-memory connections: a socket connection whose traffic moves to two rings in a
//! segment private to it, one ring each way, while the socket stays for the start and the
//! descriptors that carry wake-ups and the peer's death.
//!
//! # Negotiation
//!
//! Nothing may be waited for (a server that knows nothing of this never answers, and a
//! server may speak first), and nothing unusual may reach a peer that did not ask:
//!
//! 1. A client that asks binds its socket, before it connects, to a marker address
//!    ([`mark`]): servers that do not look at their peer's address see nothing.
//! 2. A listener that offers shared memory sees the marker on accept and sends, as the very
//!    first thing on the connection, [`OFFER`] with three descriptors attached: the segment
//!    and the client's ends of two wake-up socket pairs ([`offer`]). It writes to
//!    its ring from then on.
//! 3. The client finds the offer at its first read (waiting for the first thing the server
//!    sends, as any read would) or, without waiting, at a write. Anything else first — data,
//!    the end — means a plain connection.
//! 4. The client's writes move to the ring once it has the offer: it publishes how much it
//!    sent on the socket before (bytes or messages) and a flag; the server reads the socket
//!    until it has read that much, then reads the ring. So nothing sent before the switch is
//!    passed or lost.
//!
//! # Rings and waits
//!
//! The rings, their checks and their waits are [`pipekit_core::ring`]'s; here each side's
//! [`Bell`] is its end of a wake-up socket pair: a sleeper waits in `poll` on it, the other
//! side sends a byte, and the pair also ends when the peer dies or drops its stream. Wake-ups
//! are hints: a side reads at most [`DRAIN`] bytes of them at a time and checks the ring
//! after, so a peer that floods the pair holds up none of its calls.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::UnixAddr;
use pipekit_core::error::context_kind;
use pipekit_core::ring;

pub(crate) use pipekit_core::ring::Wait;

use crate::sys;
use crate::sys::shm::Mapping;

/// The first bytes of an offer; an offer carries exactly three descriptors with them.
pub(crate) const OFFER: &[u8; 16] = b"\0pipekit-shm-v1\0";

/// What the marker address of a client that asks starts with (Linux: an abstract name;
/// elsewhere the file name of a socket in the per-user directory).
#[cfg(linux_android)]
const MARK: &[u8] = b"pipekit-shm-v1/";
#[cfg(not(linux_android))]
const MARK: &[u8] = b".pkshm-";

/// What the client says once it writes to its ring.
const ON_RING: u32 = 1;

/// The most a side reads from a wake-up socket at a time.
const DRAIN: usize = 1024;

/// One side's shared-memory channel: the mapped segment and its wake-up sockets.
pub(crate) type Channel = ring::Channel<Mapping, Bell>;

/// This side's end of a wake-up socket pair: a byte written to one end makes the other
/// readable; closing one end, or the death of its owner, makes the other readable at end of
/// stream.
pub(crate) struct Bell(OwnedFd);

impl Bell {
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl ring::Bell for Bell {
    fn ring(&self) -> bool {
        match sys::send(self.0.as_fd(), &[1]) {
            // A full pair already holds a wake-up.
            Ok(_) => true,
            Err(e) => sys::errno(&e) == Errno::EAGAIN,
        }
    }

    /// Reads at most [`DRAIN`] bytes: a peer that keeps the protocol leaves a byte or two,
    /// and one that floods the socket must not keep this side reading it (bytes left over
    /// only make the next wait return at once).
    fn drain(&self) -> bool {
        let mut buf = [0u8; DRAIN];
        loop {
            match sys::recv(self.0.as_fd(), &mut buf) {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(e) if sys::errno(&e) == Errno::EINTR => continue,
                Err(e) => return sys::errno(&e) == Errno::EAGAIN,
            }
        }
    }

    fn sleep(&self, deadline: Option<Instant>) -> io::Result<()> {
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        sys::poll_until(&mut fds, deadline)
    }

    /// Nothing: the descriptor closes right after, which wakes the peer.
    fn hang_up(&self) {}
}

/// Server: makes a segment with two rings of `capacity` bytes (rounded up to pages) and
/// sends the offer on `socket`, the connection just accepted.
pub(crate) fn offer(socket: BorrowedFd<'_>, capacity: usize) -> io::Result<Channel> {
    let len = ring::segment_len(capacity);
    let segment = sys::shm::create_segment(len)?;
    let map = Mapping::new(segment.as_fd(), len)?;
    let (server0, client0) = sys::shm::bell_pair()?;
    let (server1, client1) = sys::shm::bell_pair()?;
    // The header is written before the client can see the segment.
    let channel = Channel::server(map, capacity, Bell(server1), Bell(server0));
    sys::shm::send_fds(
        socket,
        OFFER,
        &[segment.as_fd(), client0.as_fd(), client1.as_fd()],
    )?;
    Ok(channel)
}

/// Client: maps the segment of an offer, after checking everything about it that the
/// server could have got wrong.
fn take(fds: Vec<OwnedFd>) -> io::Result<Channel> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let Ok([segment, bell0, bell1]) = <[OwnedFd; 3]>::try_from(fds) else {
        return Err(bad("it does not carry three descriptors".into()));
    };
    let len = sys::shm::received_segment_len(segment.as_fd())?;
    // Checked before anything is mapped: no segment beyond the largest rings is.
    if !Channel::plausible_len(len) {
        return Err(bad(format!("its segment is {len} bytes")));
    }
    let map = Mapping::new(segment.as_fd(), len)?;
    for bell in [&bell0, &bell1] {
        sys::set_nonblocking(bell.as_fd(), true)?;
    }
    Channel::client(map, len, Bell(bell0), Bell(bell1))
}

fn timed_out(err: io::Error, what: &str) -> io::Error {
    if err.kind() == io::ErrorKind::TimedOut {
        context_kind(io::ErrorKind::TimedOut, err, format!("{what} timed out"))
    } else {
        err
    }
}

fn broken(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the peer broke the shared-memory protocol: {why}"),
    )
}

/// What an event loop's registration does once a client's channel exists.
pub(crate) type OnChannel = Box<dyn FnOnce(BorrowedFd<'_>, BorrowedFd<'_>) + Send>;

/// Where a read or a write goes.
pub(crate) enum Route<'a> {
    /// The socket, as on a plain connection.
    Socket,
    /// The ring.
    Ring(&'a Channel),
}

/// A read side's progress on a shared-memory connection.
#[derive(Default)]
pub(crate) struct Reader {
    /// Bytes taken from the ring.
    pub(crate) tail: u64,
    /// Reads go to the ring now (for good).
    pub(crate) on_ring: bool,
    /// Server: bytes (byte mode) or messages read from the socket.
    pub(crate) from_socket: u64,
}

/// A write side's progress on a shared-memory connection.
#[derive(Default)]
pub(crate) struct Writer {
    /// Bytes published in the ring.
    pub(crate) head: u64,
    /// Writes go to the ring now (for good).
    pub(crate) on_ring: bool,
    /// Client: bytes (byte mode) or messages sent on the socket before the switch.
    pub(crate) to_socket: u64,
    /// `shutdown_write` was called: nothing switches any more.
    pub(crate) shut: bool,
    /// Client: writes that looked for the offer (each a system call) and found nothing.
    looks: u32,
}

/// How many writes of a client look for an offer that has not come: a server that offers
/// sends it at `accept`, so after these the server probably offers nothing, and writes stop
/// paying for the look (a read still finds a late offer, and writes then switch too).
const WRITE_LOOKS: u32 = 64;

/// What a shared-memory connection's handles share: the channel once there is one, and
/// the client's search for the offer.
pub(crate) struct Link {
    server: bool,
    channel: OnceLock<Channel>,
    /// Client: what came first was no offer; the connection stays plain.
    plain: AtomicBool,
    /// Client: held while looking for the offer.
    looking: Mutex<()>,
    /// Client: the offer was unusable; every later call fails with this.
    broken: OnceLock<String>,
    /// Called with the wake-up descriptors once the channel exists (an event loop's
    /// registration made before the client saw the offer).
    #[cfg_attr(not(feature = "mio"), allow(dead_code))]
    on_channel: Mutex<Option<OnChannel>>,
    /// The timeouts, for waits on the rings (the socket keeps its own), in nanoseconds;
    /// 0 is none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("server", &self.server)
            .field("channel", &self.channel.get())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The server's side of a connection it offered `channel` on.
    pub(crate) fn server(channel: Channel) -> Link {
        let link = Link::new(true);
        let _ = link.channel.set(channel);
        link
    }

    /// The side of a client that asked and has not yet seen what the server sent.
    pub(crate) fn client() -> Link {
        Link::new(false)
    }

    fn new(server: bool) -> Link {
        Link {
            server,
            channel: OnceLock::new(),
            plain: AtomicBool::new(false),
            looking: Mutex::new(()),
            broken: OnceLock::new(),
            on_channel: Mutex::new(None),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
        }
    }

    /// The channel, once there is one.
    pub(crate) fn channel(&self) -> Option<&Channel> {
        self.channel.get()
    }

    /// A new writer: the server writes to its ring from the start.
    pub(crate) fn writer(&self) -> Writer {
        Writer {
            on_ring: self.server,
            ..Writer::default()
        }
    }

    /// Sets the read and/or write timeout (`Some(None)`: none).
    pub(crate) fn set_timeouts(
        &self,
        read: Option<Option<Duration>>,
        write: Option<Option<Duration>>,
    ) {
        let nanos = |t: Option<Duration>| {
            t.map_or(0, |t| t.as_nanos().clamp(1, u128::from(u64::MAX)) as u64)
        };
        if let Some(t) = read {
            self.read_timeout.store(nanos(t), Ordering::Relaxed);
        }
        if let Some(t) = write {
            self.write_timeout.store(nanos(t), Ordering::Relaxed);
        }
    }

    pub(crate) fn read_wait(&self, nonblocking: bool) -> Wait {
        Wait::new(nonblocking, timeout(&self.read_timeout))
    }

    pub(crate) fn write_wait(&self, nonblocking: bool) -> Wait {
        Wait::new(nonblocking, timeout(&self.write_timeout))
    }

    /// Where the next read goes. `buffered`: the framed reader holds bytes already read from
    /// the socket.
    pub(crate) fn read_route(
        &self,
        socket: BorrowedFd<'_>,
        reader: &mut Reader,
        buffered: bool,
        wait: Wait,
    ) -> io::Result<Route<'_>> {
        if reader.on_ring
            && let Some(channel) = self.channel.get()
        {
            return Ok(Route::Ring(channel));
        }
        if self.server {
            return self.server_read_route(socket, reader, buffered, wait);
        }
        self.check()?;
        if self.plain.load(Ordering::Acquire) {
            return Ok(Route::Socket);
        }
        let _looking = lock(&self.looking);
        self.check()?;
        if self.channel.get().is_none() && !self.plain.load(Ordering::Acquire) {
            self.look(socket, !matches!(wait, Wait::No))?;
        }
        Ok(match self.channel.get() {
            Some(channel) => {
                reader.on_ring = true;
                Route::Ring(channel)
            }
            None => Route::Socket,
        })
    }

    /// The server reads the socket until the client has switched and everything it sent
    /// before is read; meanwhile it waits for either.
    fn server_read_route(
        &self,
        socket: BorrowedFd<'_>,
        reader: &mut Reader,
        buffered: bool,
        wait: Wait,
    ) -> io::Result<Route<'_>> {
        let Some(channel) = self.channel.get() else {
            return Ok(Route::Socket);
        };
        let mut drained = false;
        loop {
            let (switched, before) = channel.switched();
            if switched != 0 {
                if reader.from_socket >= before && !buffered {
                    reader.on_ring = true;
                    return Ok(Route::Ring(channel));
                }
                return Ok(Route::Socket);
            }
            if buffered || channel.peer_gone() {
                return Ok(Route::Socket);
            }
            // Non-blocking, one look at the wake-up socket: a peer that floods it keeps it
            // readable without switching.
            if drained && matches!(wait, Wait::No) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut fds = [
                PollFd::new(socket, PollFlags::POLLIN),
                PollFd::new(channel.bells().0.as_fd(), PollFlags::POLLIN),
            ];
            match wait {
                Wait::No => {
                    if !sys::poll_now(&mut fds)? {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                Wait::Until(deadline) => {
                    sys::poll_until(&mut fds, deadline).map_err(|e| timed_out(e, "read"))?;
                }
            }
            if fds[0].any().unwrap_or(true) {
                return Ok(Route::Socket);
            }
            channel.drain_rx();
            drained = true;
        }
    }

    /// Server, after the socket said end of stream: whether the client switched meanwhile
    /// (then the ring has the rest).
    pub(crate) fn switched_meanwhile(&self, reader: &Reader) -> bool {
        self.server && !reader.on_ring && self.channel.get().is_some_and(|c| c.switched().0 != 0)
    }

    /// Where the next write goes (under the write lock). `max`: this side's largest
    /// message; `settled`: the framed writer holds nothing unsent.
    pub(crate) fn write_route(
        &self,
        socket: BorrowedFd<'_>,
        writer: &mut Writer,
        max: usize,
        settled: bool,
    ) -> io::Result<Route<'_>> {
        if writer.on_ring
            && let Some(channel) = self.channel.get()
        {
            return Ok(Route::Ring(channel));
        }
        self.check()?;
        if writer.shut || self.plain.load(Ordering::Acquire) {
            return Ok(Route::Socket);
        }
        if self.channel.get().is_none() {
            if writer.looks >= WRITE_LOOKS {
                return Ok(Route::Socket);
            }
            writer.looks += 1;
            // A reader waiting for the server's first word holds the lock: write on.
            let Ok(_looking) = self.looking.try_lock() else {
                return Ok(Route::Socket);
            };
            if self.channel.get().is_none() && !self.plain.load(Ordering::Acquire) {
                match self.look(socket, false) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let Some(channel) = self.channel.get() else {
            return Ok(Route::Socket);
        };
        if !settled || !channel.fits(max) {
            return Ok(Route::Socket);
        }
        channel.switch(ON_RING, writer.to_socket);
        writer.on_ring = true;
        Ok(Route::Ring(channel))
    }

    /// Fails if an unusable offer broke the connection.
    fn check(&self) -> io::Result<()> {
        match self.broken.get() {
            Some(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why.clone())),
            None => Ok(()),
        }
    }

    /// Client: looks at what the server sent first; takes an offer, or settles on a plain
    /// connection. Errors: the socket's (`WouldBlock` when nothing came yet and `wait` is
    /// false), or an unusable offer.
    fn look(&self, socket: BorrowedFd<'_>, wait: bool) -> io::Result<()> {
        let mut buf = [0u8; OFFER.len()];
        let seen = sys::shm::recv_fds(socket, &mut buf, true, wait)?;
        // The offer's bytes with descriptors (or control data cut short) is an offer, usable
        // or not; the same bytes alone are a plain server's data.
        let offer = |got: &sys::shm::Received, buf: &[u8]| {
            got.bytes == OFFER.len() && buf == OFFER && (got.truncated || !got.fds.is_empty())
        };
        if !offer(&seen, &buf) {
            self.plain.store(true, Ordering::Release);
            return Ok(());
        }
        drop(seen);
        let got = sys::shm::recv_fds(socket, &mut buf, false, false)?;
        let taken = match offer(&got, &buf) {
            true if got.truncated => Err(broken("the offer carries too many descriptors")),
            true => take(got.fds).map_err(|e| {
                context_kind(
                    io::ErrorKind::InvalidData,
                    e,
                    "the server's shared-memory offer is unusable",
                )
            }),
            false => Err(broken("the offer changed between two looks")),
        };
        match taken {
            Ok(channel) => {
                let _ = self.channel.set(channel);
                if let Some((rx, tx)) = self.bells()
                    && let Some(hook) = lock(&self.on_channel).take()
                {
                    hook(rx, tx);
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.broken.set(pipekit_core::error::Chain(&e).to_string());
                Err(e)
            }
        }
    }

    /// The wake-up descriptors an event loop waits on once there is a channel: (reads,
    /// writes). Each becomes readable when the peer published, or freed room, after this
    /// side said (by a `WouldBlock`) that it waits; and at the peer's end.
    pub(crate) fn bells(&self) -> Option<(BorrowedFd<'_>, BorrowedFd<'_>)> {
        let (rx, tx) = self.channel.get()?.bells();
        Some((rx.as_fd(), tx.as_fd()))
    }

    /// Calls `hook` with the wake-up descriptors (reads, writes) now if there is a channel,
    /// else once the client takes the offer; a later call replaces a hook not yet called.
    #[cfg_attr(not(feature = "mio"), allow(dead_code))]
    pub(crate) fn when_channel(&self, hook: OnChannel) {
        let mut pending = lock(&self.on_channel);
        match self.bells() {
            Some((rx, tx)) => {
                *pending = None;
                hook(rx, tx);
            }
            None => *pending = Some(hook),
        }
    }

    /// Drops a hook not yet called.
    #[cfg_attr(not(feature = "mio"), allow(dead_code))]
    pub(crate) fn forget_hook(&self) {
        *lock(&self.on_channel) = None;
    }

    /// Whether the connection runs over shared memory (one way or both).
    pub(crate) fn active(&self) -> bool {
        self.channel.get().is_some()
    }

    /// As [`active`](Self::active), after a client still undecided looks, without
    /// waiting, for what the server sent first (unless a reader is looking already).
    pub(crate) fn look_now(&self, socket: BorrowedFd<'_>) -> bool {
        if self.undecided()
            && let Ok(_looking) = self.looking.try_lock()
            && self.undecided()
        {
            let _ = self.look(socket, false);
        }
        self.active()
    }

    /// Whether the client is still to see the server's first word.
    pub(crate) fn undecided(&self) -> bool {
        !self.server
            && self.channel.get().is_none()
            && !self.plain.load(Ordering::Acquire)
            && self.broken.get().is_none()
    }
}

fn timeout(nanos: &AtomicU64) -> Option<Duration> {
    match nanos.load(Ordering::Relaxed) {
        0 => None,
        n => Some(Duration::from_nanos(n)),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a peer's socket address is the marker of a client that asks.
pub(crate) fn marked(addr: &UnixAddr) -> bool {
    #[cfg(linux_android)]
    {
        addr.as_abstract()
            .is_some_and(|name| name.starts_with(MARK))
    }
    #[cfg(not(linux_android))]
    {
        use std::os::unix::ffi::OsStrExt;
        addr.path()
            .and_then(|p| p.file_name())
            .is_some_and(|f| f.as_bytes().starts_with(MARK))
    }
}

/// A client's socket bound to a marker address.
pub(crate) struct Marked(Option<std::path::PathBuf>);

impl Marked {
    /// Removes the marker's socket file (elsewhere than Linux): once connected, the kernel
    /// keeps the address with the socket.
    pub(crate) fn remove_file(&self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Client: binds `fd` to a fresh marker address before it connects. `None` if no marker
/// could be bound: the connection is then plain.
pub(crate) fn mark(fd: &OwnedFd) -> Option<Marked> {
    for _ in 0..4 {
        let unique = sys::shm::unique_suffix();
        #[cfg(linux_android)]
        let (addr, file) = {
            let mut name = MARK.to_vec();
            name.extend_from_slice(unique.as_bytes());
            (sys::abstract_addr(&name).ok()?, None)
        };
        #[cfg(not(linux_android))]
        let (addr, file) = {
            use std::os::unix::ffi::OsStrExt;
            let dir = crate::dir::env().private_dir();
            crate::dir::ensure_private_dir(&dir).ok()?;
            let mut name = std::ffi::OsString::from(std::ffi::OsStr::from_bytes(MARK));
            name.push(&unique);
            let path = dir.join(name);
            (UnixAddr::new(path.as_path()).ok()?, Some(path))
        };
        match sys::bind(fd, &addr) {
            Ok(()) => return Some(Marked(file)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipekit_core::MessageTooLarge;
    use pipekit_core::ring::Segment as _;
    use std::os::unix::net::UnixStream;

    /// The server's and the client's channels over one segment, as after an accept.
    fn channels(capacity: usize) -> (Channel, Channel) {
        let (server, client) = UnixStream::pair().unwrap();
        let ours = offer(server.as_fd(), capacity).unwrap();
        let mut buf = [0u8; OFFER.len()];
        let got = sys::shm::recv_fds(client.as_fd(), &mut buf, false, true).unwrap();
        assert_eq!(&buf, OFFER);
        (ours, take(got.fds).unwrap())
    }

    /// xorshift64*: reproducible from the seed a failure prints.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A value a lying peer might write into a word: near the indices, the capacity, the
    /// limits, or anything.
    fn lie(rng: &mut Rng, near: u64, capacity: u64) -> u64 {
        match rng.below(8) {
            0 => 0,
            1 => u64::MAX - rng.below(16),
            2 => u64::from(u32::MAX) - rng.below(16),
            3 => near.wrapping_add(rng.below(2 * capacity + 64)),
            4 => near.wrapping_sub(rng.below(2 * capacity + 64)),
            5 => capacity.wrapping_add(rng.below(64)).wrapping_sub(32),
            6 => rng.below(256),
            _ => rng.next(),
        }
    }

    /// The client side mixes keeping the protocol (writing, reading) with lies: any word of
    /// either control block (indices, flags, the counts of the switch) or the length word
    /// this side reads next, set to values near the indices, the limits, or anything. This
    /// side keeps reading and writing, non-blocking, with buffers up to three rings long.
    /// Whatever the lie, it never panics (every ring access is bounds-asserted: an index
    /// taken on trust would trip them), never returns more than asked for or a message over
    /// its limits, and reports a broken peer as an error of its own connection.
    #[test]
    fn a_lying_peer_never_makes_this_side_panic_or_overrun() {
        let capacity = pipekit_core::MIN_SHARED_MEMORY;
        let max = 3000;
        for seed in 1..=400u64 {
            // Odd seeds: message mode; even: byte mode (a stream never mixes them).
            let messages = seed % 2 == 1;
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let (ours, theirs) = channels(capacity);
            let (mut our_head, mut our_tail, mut their_head, mut their_tail) = (0, 0, 0, 0);
            // Byte-mode calls ask for up to three rings' worth.
            let mut buf = vec![0u8; 3 * capacity];
            for step in 0..400 {
                let what = rng.below(6);
                let result: io::Result<usize> = match (what, messages) {
                    // The peer keeps the protocol: it writes and reads.
                    (0, true) => {
                        let len = rng.below(max as u64) as usize;
                        theirs
                            .send(&mut their_head, len, max, Wait::No, |b| b.fill(0xA5))
                            .map(|()| 0)
                    }
                    (0, false) => {
                        let len = rng.below(buf.len() as u64) as usize + 1;
                        theirs.write(&mut their_head, &buf[..len], Wait::No)
                    }
                    (1, true) => theirs
                        .recv(&mut their_tail, None, max, Wait::No, |_, _, len| len)
                        .map(|n| n.unwrap_or(0)),
                    (1, false) => {
                        let len = rng.below(buf.len() as u64) as usize + 1;
                        theirs.read(&mut their_tail, &mut buf[..len], Wait::No)
                    }
                    // It lies in a word of either control block, or at the place this side
                    // reads next (where a message's length word is).
                    (2 | 3, _) => {
                        let offset = if what == 2 {
                            let words = ring::CONTROL_WORDS;
                            words[rng.below(words.len() as u64) as usize]
                        } else {
                            ours.rx_data() + (our_tail % capacity as u64) as usize / 8 * 8
                        };
                        let value = lie(&mut rng, our_tail.max(our_head), capacity as u64);
                        if offset.is_multiple_of(8) && rng.below(2) == 0 {
                            theirs
                                .segment()
                                .u64_at(offset)
                                .store(value, Ordering::Release);
                        } else {
                            let word = theirs.segment().u32_at(offset / 4 * 4);
                            word.store(value as u32, Ordering::Release);
                        }
                        Ok(0)
                    }
                    // This side reads (a message with room or without, or bytes) and writes.
                    (4, true) => {
                        let room = (rng.below(2) == 0).then(|| rng.below(2 * max as u64) as usize);
                        let got = ours.recv(&mut our_tail, room, max, Wait::No, |map, at, len| {
                            map.with_slice(at, len, <[u8]>::len)
                        });
                        got.map(|got| {
                            let len = got.unwrap_or(0);
                            let fits = len <= max && room.is_none_or(|r| len <= r);
                            assert!(fits, "seed {seed} step {step}: a message of {len}");
                            len
                        })
                    }
                    (4, false) => {
                        let want = rng.below(buf.len() as u64) as usize + 1;
                        let n = ours.read(&mut our_tail, &mut buf[..want], Wait::No);
                        if let Ok(n) = n {
                            assert!(n <= want, "seed {seed} step {step}: read {n} of {want}");
                        }
                        n
                    }
                    (_, true) => {
                        let len = rng.below(max as u64) as usize;
                        ours.send(&mut our_head, len, max, Wait::No, |b| b.len())
                    }
                    (_, false) => {
                        let len = rng.below(buf.len() as u64) as usize + 1;
                        ours.write(&mut our_head, &buf[..len], Wait::No)
                    }
                };
                if let Err(e) = result {
                    use io::ErrorKind::{BrokenPipe, InvalidData, WouldBlock};
                    let kind = e.kind();
                    let expected = matches!(kind, WouldBlock | InvalidData | BrokenPipe)
                        || (messages && MessageTooLarge::from_io(&e).is_some());
                    assert!(expected, "seed {seed} step {step}: {e}");
                }
            }
        }
    }
}
