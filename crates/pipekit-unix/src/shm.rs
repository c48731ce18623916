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
//!    and the client's ends of two wake-up socket pairs ([`Channel::offer`]). It writes to
//!    its ring from then on.
//! 3. The client finds the offer at its first read (waiting for the first thing the server
//!    sends, as any read would) or, without waiting, at a write. Anything else first — data,
//!    the end — means a plain connection.
//! 4. The client's writes move to the ring once it has the offer: it publishes how much it
//!    sent on the socket before (bytes or messages) and a flag; the server reads the socket
//!    until it has read that much, then reads the ring. So nothing sent before the switch is
//!    passed or lost.
//!
//! # Rings
//!
//! Each ring is single-producer, single-consumer: the producer publishes `head` (bytes
//! written, ever), the consumer `tail`. Each side keeps its own index locally and never
//! trusts the peer's copy of it; the peer's index is checked (`head - tail` within the
//! capacity) and a message's length word against what was published and the maximum
//! message size, so a peer that writes garbage gets `InvalidData` on its own connection and
//! no access outside the segment. In message mode a message is a 4-byte length, 4 bytes of
//! padding and the bytes, padded to 8; a message never wraps (a length of `u32::MAX` says
//! "continue at the start").
//!
//! # Waiting
//!
//! A side that finds nothing to do spins briefly, then says so in a flag in the ring and
//! sleeps in `poll` on its end of the ring's wake-up socket pair; the other side, after each
//! step, sends a byte there if the flag is set. The socket pair also ends when the peer dies
//! or drops its stream: the sleeper wakes and finds the end (readers, after what was
//! published) or a broken pipe (writers). Wake-ups are hints: a side reads at most
//! [`DRAIN`] bytes of them at a time and checks the ring after, so a peer that floods the
//! pair holds up none of its calls.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::UnixAddr;
use pipekit_core::error::{MessageTooLarge, context_kind, message_discarded, message_over_limit};
use pipekit_core::{MAX_SHARED_MEMORY, MIN_SHARED_MEMORY};

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

/// The segment's first word.
const MAGIC: u64 = u64::from_le_bytes(*b"pkshm-v1");
/// The header page, then the rings' data.
const PAGE: usize = 4096;
const CAPACITY_AT: usize = 8;
/// Where each ring's control block is in the header page: ring 0 carries server to client,
/// ring 1 client to server.
const CONTROL: [usize; 2] = [512, 1536];
// Within a control block, one 128-byte line per writer:
/// Producer: bytes published, ever.
const HEAD: usize = 0;
/// Producer: nothing more will come.
const CLOSED: usize = 8;
/// Producer (ring 1): the client writes here now.
const SWITCHED: usize = 12;
/// Producer (ring 1): what the client sent on the socket before it switched.
const BEFORE: usize = 16;
/// Consumer: bytes taken, ever.
const TAIL: usize = 128;
/// Consumer: it dropped its end.
const GONE: usize = 136;
/// Set by the consumer before it sleeps.
const CONSUMER_WAITING: usize = 256;
/// Set by the producer before it sleeps.
const PRODUCER_WAITING: usize = 384;

/// A message's header: its length, then padding to 8 bytes.
const RECORD_HEADER: usize = 8;
/// The length word that says "the rest of the ring is unused: continue at the start".
const WRAP: u32 = u32::MAX;
/// How many times a side checks before it sleeps.
const SPINS: u32 = 2000;
/// The most a side reads from a wake-up socket at a time.
const DRAIN: usize = 1024;

fn record_len(len: usize) -> usize {
    (RECORD_HEADER + len).next_multiple_of(8)
}

/// One ring's offsets in the mapping.
#[derive(Clone, Copy)]
struct Ring {
    control: usize,
    data: usize,
}

impl Ring {
    fn new(index: usize, capacity: usize) -> Ring {
        Ring {
            control: CONTROL[index],
            data: PAGE + index * capacity,
        }
    }
}

/// A mapped segment and the descriptors to wake the peer, seen from one side.
pub(crate) struct Channel {
    map: Mapping,
    capacity: usize,
    rx: Ring,
    tx: Ring,
    /// This side's end of the pair of the ring it reads: the peer rings it when it
    /// publishes; this side rings it when it frees space.
    rx_bell: OwnedFd,
    /// This side's end of the pair of the ring it writes.
    tx_bell: OwnedFd,
    /// A wake-up pair ended: the peer dropped its stream or died.
    peer_gone: AtomicBool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Server: makes a segment with two rings of `capacity` bytes (rounded up to pages) and
    /// sends the offer on `socket`, the connection just accepted.
    pub(crate) fn offer(socket: BorrowedFd<'_>, capacity: usize) -> io::Result<Channel> {
        let capacity = capacity.next_multiple_of(PAGE);
        let len = PAGE + 2 * capacity;
        let segment = sys::shm::create_segment(len)?;
        let map = Mapping::new(segment.as_fd(), len)?;
        map.u64_at(0).store(MAGIC, Ordering::Relaxed);
        map.u64_at(CAPACITY_AT)
            .store(capacity as u64, Ordering::Relaxed);
        let (server0, client0) = sys::shm::bell_pair()?;
        let (server1, client1) = sys::shm::bell_pair()?;
        sys::shm::send_fds(
            socket,
            OFFER,
            &[segment.as_fd(), client0.as_fd(), client1.as_fd()],
        )?;
        Ok(Channel {
            map,
            capacity,
            rx: Ring::new(1, capacity),
            tx: Ring::new(0, capacity),
            rx_bell: server1,
            tx_bell: server0,
            peer_gone: AtomicBool::new(false),
        })
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
        if !(PAGE + 2 * MIN_SHARED_MEMORY..=PAGE + 2 * MAX_SHARED_MEMORY).contains(&len) {
            return Err(bad(format!("its segment is {len} bytes")));
        }
        let map = Mapping::new(segment.as_fd(), len)?;
        if map.u64_at(0).load(Ordering::Relaxed) != MAGIC {
            return Err(bad("its segment has no pipekit header".into()));
        }
        // Read once: the local copy is the one that counts from now on.
        let capacity = map.u64_at(CAPACITY_AT).load(Ordering::Relaxed);
        let fits = usize::try_from(capacity).ok().filter(|&c| {
            (MIN_SHARED_MEMORY..=MAX_SHARED_MEMORY).contains(&c)
                && c.is_multiple_of(PAGE)
                && PAGE + 2 * c == len
        });
        let Some(capacity) = fits else {
            return Err(bad(format!(
                "its rings of {capacity} bytes do not match its segment of {len} bytes"
            )));
        };
        for bell in [&bell0, &bell1] {
            sys::set_nonblocking(bell.as_fd(), true)?;
        }
        Ok(Channel {
            map,
            capacity,
            rx: Ring::new(0, capacity),
            tx: Ring::new(1, capacity),
            rx_bell: bell0,
            tx_bell: bell1,
            peer_gone: AtomicBool::new(false),
        })
    }

    fn word(&self, ring: Ring, at: usize) -> &AtomicU32 {
        self.map.u32_at(ring.control + at)
    }

    fn index(&self, ring: Ring, at: usize) -> &AtomicU64 {
        self.map.u64_at(ring.control + at)
    }

    fn gone(&self) -> bool {
        self.peer_gone.load(Ordering::Acquire)
    }

    /// Whether this side's messages of up to `max` bytes fit its ring.
    fn fits(&self, max: usize) -> bool {
        record_len(max) <= self.capacity
    }

    /// What the consumer may read: published minus taken, checked.
    fn published(&self, tail: u64) -> io::Result<usize> {
        let head = self.index(self.rx, HEAD).load(Ordering::Acquire);
        match usize::try_from(head.wrapping_sub(tail)) {
            Ok(n) if n <= self.capacity => Ok(n),
            _ => Err(broken("the ring's write index is out of range")),
        }
    }

    /// What the producer may write: capacity minus what the consumer has not taken.
    fn free(&self, head: u64) -> io::Result<usize> {
        let tail = self.index(self.tx, TAIL).load(Ordering::Acquire);
        match usize::try_from(head.wrapping_sub(tail)) {
            Ok(n) if n <= self.capacity => Ok(self.capacity - n),
            _ => Err(broken("the ring's read index is out of range")),
        }
    }

    /// Whether the producer of the ring this side reads wrote its last.
    fn rx_closed(&self) -> bool {
        self.word(self.rx, CLOSED).load(Ordering::Acquire) != 0
    }

    /// Fails if the reader of this side's ring is gone.
    fn check_peer_reads(&self) -> io::Result<()> {
        if self.gone() || self.word(self.tx, GONE).load(Ordering::Acquire) != 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer is gone"));
        }
        Ok(())
    }

    /// Waits until `ready()`, the peer's progress, or its end: spins, then sleeps on `bell`
    /// after announcing it in `waiting`. `Ok` means "check again".
    fn wait(
        &self,
        bell: &OwnedFd,
        waiting: &AtomicU32,
        ready: impl Fn() -> bool,
        wait: Wait,
        what: &str,
    ) -> io::Result<()> {
        let deadline = match wait {
            Wait::No if ready() || self.gone() => return Ok(()),
            Wait::No => {
                // An event loop waits on `bell` next: empty it (so that the next wake-up is
                // a new edge), say so, and look once more.
                self.drain(bell);
                waiting.store(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if ready() || self.gone() {
                    waiting.store(0, Ordering::Relaxed);
                    return Ok(());
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Wait::Until(deadline) => deadline,
        };
        for _ in 0..SPINS {
            if ready() || self.gone() {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        waiting.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() || self.gone() {
            waiting.store(0, Ordering::Relaxed);
            return Ok(());
        }
        let mut fds = [PollFd::new(bell.as_fd(), PollFlags::POLLIN)];
        sys::poll_until(&mut fds, deadline).map_err(|e| timed_out(e, what))?;
        self.drain(bell);
        Ok(())
    }

    /// Reads the wake-up bytes waiting on `bell` (its end means the peer's), up to
    /// [`DRAIN`] bytes: a peer that keeps the protocol leaves a byte or two, and one that
    /// floods the socket must not keep this side reading it (the state is checked after a
    /// drain either way; bytes left over only make the next wait return at once).
    fn drain(&self, bell: &OwnedFd) {
        let mut buf = [0u8; DRAIN];
        loop {
            match sys::recv(bell.as_fd(), &mut buf) {
                Ok(0) => {
                    self.peer_gone.store(true, Ordering::Release);
                    return;
                }
                Ok(_) => return,
                Err(e) if sys::errno(&e) == Errno::EINTR => continue,
                Err(e) if sys::errno(&e) == Errno::EAGAIN => return,
                Err(_) => {
                    self.peer_gone.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// After a step: wakes the peer if it said it sleeps.
    fn notify(&self, bell: &OwnedFd, waiting: &AtomicU32) {
        fence(Ordering::SeqCst);
        if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::SeqCst) != 0 {
            self.ring(bell);
        }
    }

    fn ring(&self, bell: &OwnedFd) {
        match sys::send(bell.as_fd(), &[1]) {
            // A full pair already holds a wake-up.
            Ok(_) => {}
            Err(e) if sys::errno(&e) == Errno::EAGAIN => {}
            Err(_) => self.peer_gone.store(true, Ordering::Release),
        }
    }

    fn publish_head(&self, head: u64) {
        self.index(self.tx, HEAD).store(head, Ordering::Release);
        self.notify(&self.tx_bell, self.word(self.tx, CONSUMER_WAITING));
    }

    fn publish_tail(&self, tail: u64) {
        self.index(self.rx, TAIL).store(tail, Ordering::Release);
        self.notify(&self.rx_bell, self.word(self.rx, PRODUCER_WAITING));
    }

    fn wait_for_data(&self, tail: u64, wait: Wait) -> io::Result<()> {
        let head = self.index(self.rx, HEAD);
        self.wait(
            &self.rx_bell,
            self.word(self.rx, CONSUMER_WAITING),
            || head.load(Ordering::SeqCst) != tail || self.rx_closed(),
            wait,
            "read",
        )
    }

    fn wait_for_space(&self, head: u64, need: usize, wait: Wait) -> io::Result<()> {
        let tail = self.index(self.tx, TAIL);
        let gone = self.word(self.tx, GONE);
        self.wait(
            &self.tx_bell,
            self.word(self.tx, PRODUCER_WAITING),
            || {
                let used = head.wrapping_sub(tail.load(Ordering::SeqCst));
                used > self.capacity as u64
                    || self.capacity as u64 - used >= need as u64
                    || gone.load(Ordering::Relaxed) != 0
            },
            wait,
            "write",
        )
    }

    /// Whether the ring is empty for good: the producer closed it or is gone, and nothing
    /// was published since `tail`.
    fn at_end(&self, tail: u64) -> io::Result<bool> {
        if !(self.rx_closed() || self.gone()) {
            return Ok(false);
        }
        Ok(self.published(tail)? == 0)
    }

    /// Byte mode: reads what the peer published, up to `buf.len()`; `Ok(0)` at the end.
    pub(crate) fn read(&self, tail: &mut u64, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let ready = self.published(*tail)?;
            if ready > 0 {
                let at = (*tail % self.capacity as u64) as usize;
                let n = ready.min(buf.len());
                let first = n.min(self.capacity - at);
                self.map.copy_out(self.rx.data + at, &mut buf[..first]);
                self.map.copy_out(self.rx.data, &mut buf[first..n]);
                *tail += n as u64;
                self.publish_tail(*tail);
                return Ok(n);
            }
            if self.at_end(*tail)? {
                return Ok(0);
            }
            self.wait_for_data(*tail, wait)?;
        }
    }

    /// Byte mode: writes as much of `buf` as there is room for (waiting for some room).
    pub(crate) fn write(&self, head: &mut u64, buf: &[u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            self.check_peer_reads()?;
            let free = self.free(*head)?;
            if free > 0 {
                let at = (*head % self.capacity as u64) as usize;
                let n = free.min(buf.len());
                let first = n.min(self.capacity - at);
                self.map.copy_in(self.tx.data + at, &buf[..first]);
                self.map.copy_in(self.tx.data, &buf[first..n]);
                *head += n as u64;
                self.publish_head(*head);
                return Ok(n);
            }
            self.wait_for_space(*head, 1, wait)?;
        }
    }

    /// Message mode: reserves room for one message of `len` bytes (`len` within the maximum
    /// and the ring), lets `fill` write it in place, and publishes it.
    pub(crate) fn send<R>(
        &self,
        head: &mut u64,
        len: usize,
        max: usize,
        wait: Wait,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> io::Result<R> {
        if len > max {
            return Err(message_over_limit(len, max));
        }
        let record = record_len(len);
        if record > self.capacity {
            // `fits` keeps a side whose messages do not fit on the socket.
            return Err(message_over_limit(len, self.capacity - RECORD_HEADER));
        }
        loop {
            self.check_peer_reads()?;
            let at = (*head % self.capacity as u64) as usize;
            let rest = self.capacity - at;
            let need = if record <= rest {
                record
            } else {
                rest + record
            };
            if self.free(*head)? >= need {
                let mut start = *head;
                let mut at = at;
                if record > rest {
                    self.map
                        .u32_at(self.tx.data + at)
                        .store(WRAP, Ordering::Relaxed);
                    start += rest as u64;
                    at = 0;
                }
                self.map
                    .u32_at(self.tx.data + at)
                    .store(len as u32, Ordering::Relaxed);
                let out = self
                    .map
                    .with_slice_mut(self.tx.data + at + RECORD_HEADER, len, fill);
                *head = start + record as u64;
                self.publish_head(*head);
                return Ok(out);
            }
            self.wait_for_space(*head, need, wait)?;
        }
    }

    /// Message mode: waits for the next message and hands it to `take` in place (`None` at
    /// the end). With `room`, a message longer than that is refused with
    /// [`MessageTooLarge`] and stays; a message over `max` is dropped with an error.
    pub(crate) fn recv<R>(
        &self,
        tail: &mut u64,
        room: Option<usize>,
        max: usize,
        wait: Wait,
        take: impl FnOnce(&Mapping, usize, usize) -> R,
    ) -> io::Result<Option<R>> {
        loop {
            let ready = self.published(*tail)?;
            if ready == 0 {
                if self.at_end(*tail)? {
                    return Ok(None);
                }
                self.wait_for_data(*tail, wait)?;
                continue;
            }
            let at = (*tail % self.capacity as u64) as usize;
            let rest = self.capacity - at;
            if ready < RECORD_HEADER || rest < RECORD_HEADER {
                return Err(broken("a message header is cut"));
            }
            let len = self.map.u32_at(self.rx.data + at).load(Ordering::Relaxed);
            if len == WRAP {
                if ready < rest {
                    return Err(broken("a wrap mark covers more than was published"));
                }
                *tail += rest as u64;
                self.publish_tail(*tail);
                continue;
            }
            let len = len as usize;
            let record = record_len(len);
            if record > ready || record > rest {
                return Err(broken(&format!(
                    "a message of {len} bytes runs past what was published"
                )));
            }
            if len > max {
                *tail += record as u64;
                self.publish_tail(*tail);
                return Err(message_discarded(len, max));
            }
            if let Some(room) = room
                && len > room
            {
                return Err(MessageTooLarge::error(len, room));
            }
            let out = take(&self.map, self.rx.data + at + RECORD_HEADER, len);
            *tail += record as u64;
            self.publish_tail(*tail);
            return Ok(Some(out));
        }
    }

    /// This side will write no more: the peer reads the end after what was published.
    pub(crate) fn close_tx(&self) {
        self.word(self.tx, CLOSED).store(1, Ordering::Release);
        self.ring(&self.tx_bell);
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // The descriptors close right after: a sleeping peer wakes at their end and finds
        // these flags.
        self.word(self.tx, CLOSED).store(1, Ordering::Release);
        self.word(self.rx, GONE).store(1, Ordering::Release);
    }
}

/// Whether an operation may wait, and until when.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Non-blocking: `WouldBlock` instead.
    No,
    /// Until the deadline (`None`: without limit).
    Until(Option<Instant>),
}

impl Wait {
    /// For a stream in non-blocking mode, or with `timeout`.
    pub(crate) fn new(nonblocking: bool, timeout: Option<Duration>) -> Wait {
        if nonblocking {
            Wait::No
        } else {
            Wait::Until(timeout.map(|t| Instant::now() + t))
        }
    }
}

fn broken(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the peer broke the shared-memory protocol: {why}"),
    )
}

fn timed_out(err: io::Error, what: &str) -> io::Error {
    if err.kind() == io::ErrorKind::TimedOut {
        context_kind(io::ErrorKind::TimedOut, err, format!("{what} timed out"))
    } else {
        err
    }
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
            if channel.word(channel.rx, SWITCHED).load(Ordering::Acquire) != 0 {
                let before = channel.index(channel.rx, BEFORE).load(Ordering::Acquire);
                if reader.from_socket >= before && !buffered {
                    reader.on_ring = true;
                    return Ok(Route::Ring(channel));
                }
                return Ok(Route::Socket);
            }
            if buffered || channel.gone() {
                return Ok(Route::Socket);
            }
            // Non-blocking, one look at the wake-up socket: a peer that floods it keeps it
            // readable without switching.
            if drained && matches!(wait, Wait::No) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut fds = [
                PollFd::new(socket, PollFlags::POLLIN),
                PollFd::new(channel.rx_bell.as_fd(), PollFlags::POLLIN),
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
            channel.drain(&channel.rx_bell);
            drained = true;
        }
    }

    /// Server, after the socket said end of stream: whether the client switched meanwhile
    /// (then the ring has the rest).
    pub(crate) fn switched_meanwhile(&self, reader: &Reader) -> bool {
        self.server
            && !reader.on_ring
            && self
                .channel
                .get()
                .is_some_and(|c| c.word(c.rx, SWITCHED).load(Ordering::Acquire) != 0)
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
        channel
            .index(channel.tx, BEFORE)
            .store(writer.to_socket, Ordering::Relaxed);
        channel
            .word(channel.tx, SWITCHED)
            .store(1, Ordering::Release);
        channel.ring(&channel.tx_bell);
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
            true => Channel::take(got.fds).map_err(|e| {
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
                let _ = self.broken.set(e.to_string());
                Err(e)
            }
        }
    }

    /// The wake-up descriptors an event loop waits on once there is a channel: (reads,
    /// writes). Each becomes readable when the peer published, or freed room, after this
    /// side said (by a `WouldBlock`) that it waits; and at the peer's end.
    pub(crate) fn bells(&self) -> Option<(BorrowedFd<'_>, BorrowedFd<'_>)> {
        let channel = self.channel.get()?;
        Some((channel.rx_bell.as_fd(), channel.tx_bell.as_fd()))
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
    use std::os::unix::net::UnixStream;

    /// The server's and the client's channels over one segment, as after an accept.
    fn channels(capacity: usize) -> (Channel, Channel) {
        let (server, client) = UnixStream::pair().unwrap();
        let ours = Channel::offer(server.as_fd(), capacity).unwrap();
        let mut buf = [0u8; OFFER.len()];
        let got = sys::shm::recv_fds(client.as_fd(), &mut buf, false, true).unwrap();
        assert_eq!(&buf, OFFER);
        (ours, Channel::take(got.fds).unwrap())
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
        let capacity = MIN_SHARED_MEMORY;
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
                            let words = [
                                HEAD,
                                CLOSED,
                                SWITCHED,
                                BEFORE,
                                TAIL,
                                GONE,
                                CONSUMER_WAITING,
                                PRODUCER_WAITING,
                            ];
                            CONTROL[rng.below(2) as usize]
                                + words[rng.below(words.len() as u64) as usize]
                        } else {
                            ours.rx.data + (our_tail % capacity as u64) as usize / 8 * 8
                        };
                        let value = lie(&mut rng, our_tail.max(our_head), capacity as u64);
                        if offset.is_multiple_of(8) && rng.below(2) == 0 {
                            theirs.map.u64_at(offset).store(value, Ordering::Release);
                        } else {
                            let word = theirs.map.u32_at(offset / 4 * 4);
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
