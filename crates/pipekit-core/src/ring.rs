//! The rings of a shared-memory connection, over any segment and any way of waking the
//! peer: what the backends share of their shared-memory paths.
//!
//! A backend maps a segment private to one connection (a sealed `memfd`, an unnamed file
//! mapping) and gives each side two [`Bell`]s (a socket pair, a pair of events); this module
//! does the rest in safe code: the layout, the two single-producer, single-consumer rings,
//! the checks of everything the peer writes, and the waits.
//!
//! # Layout
//!
//! A header page, then ring 0 (server to client), then ring 1 (client to server), each
//! `capacity` bytes (a multiple of the page). Each ring's control block in the header has
//! one 128-byte line per writer: the producer's `head` (bytes published, ever), a closed
//! flag and the client's switch words; the consumer's `tail` and a gone flag; the flags each
//! side sets before it sleeps.
//!
//! # Trust
//!
//! Each side keeps its own index locally and never trusts the peer's copy: the peer's index
//! is checked (`head - tail` within the capacity) and a message's length word against what
//! was published and the maximum message size, so a peer that writes garbage gets
//! `InvalidData` on its own connection and no access outside the segment ([`Segment`]'s
//! accessors are bounds-checked too). In message mode a message is a 4-byte length, 4 bytes
//! of padding and the bytes, padded to 8; a message never wraps (a length of `u32::MAX`
//! says "continue at the start").
//!
//! # Waiting
//!
//! A side that finds nothing to do spins briefly, then says so in a flag in the ring and
//! sleeps on its [`Bell`]; the other side, after each step, rings the bell if the flag is
//! set. Bells also wake a sleeper when the peer dies or drops its end: the sleeper then
//! finds the end (readers, after what was published) or a broken pipe (writers).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::error::{MessageTooLarge, context_kind, message_discarded, message_over_limit};
use crate::{MAX_SHARED_MEMORY, MIN_SHARED_MEMORY};

/// A mapped segment: bounds-checked access to the memory both sides share.
///
/// Every offset and length this module passes was computed from its own indices and
/// checked; an implementation checks them against the mapping again (a failure there is a
/// bug, not something a peer can cause: it may panic) and never hands out memory outside it.
pub trait Segment: Send + Sync {
    /// The 8-aligned word at `offset`.
    fn u64_at(&self, offset: usize) -> &AtomicU64;
    /// The 4-aligned word at `offset`.
    fn u32_at(&self, offset: usize) -> &AtomicU32;
    /// Copies `src` into the segment at `offset`.
    fn copy_in(&self, offset: usize, src: &[u8]);
    /// Copies from the segment at `offset` into `dst`.
    fn copy_out(&self, offset: usize, dst: &mut [u8]);
    /// Calls `f` on `len` bytes at `offset`, in place (a region the caller holds by the ring
    /// protocol; a peer that breaks it can only change the bytes `f` sees).
    fn with_slice<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R;
    /// Calls `f` on `len` writable bytes at `offset`, in place (free, not yet published,
    /// under the caller's write lock).
    fn with_slice_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R;
}

/// One side's way to wake the other about one ring, and to sleep until woken.
///
/// Each side has two: one for the ring it reads (the peer rings it when it publishes; this
/// side rings it when it frees room) and one for the ring it writes.
pub trait Bell: Send + Sync {
    /// Wakes the peer if it sleeps on this bell's other end. `false`: the peer is gone.
    fn ring(&self) -> bool;
    /// Takes the wake-ups waiting for this side, at most a bounded amount. `false`: the
    /// peer is gone.
    fn drain(&self) -> bool;
    /// Sleeps until this side is rung, the peer is gone, or `deadline` passes (then an
    /// error of kind `TimedOut`).
    ///
    /// # Errors
    ///
    /// `TimedOut` at the deadline; the OS error of the wait.
    fn sleep(&self, deadline: Option<Instant>) -> io::Result<()>;
    /// Called when this side drops its channel, after it said so in the segment. Rings by
    /// default; a bell whose closing wakes the peer anyway may do nothing.
    fn hang_up(&self) {
        self.ring();
    }
}

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

/// Every word of both control blocks, for tests that play a peer writing garbage.
#[doc(hidden)]
pub const CONTROL_WORDS: [usize; 16] = {
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
    let mut all = [0; 16];
    let mut i = 0;
    while i < 16 {
        all[i] = CONTROL[i / 8] + words[i % 8];
        i += 1;
    }
    all
};

/// A message's header: its length, then padding to 8 bytes.
const RECORD_HEADER: usize = 8;
/// The length word that says "the rest of the ring is unused: continue at the start".
const WRAP: u32 = u32::MAX;
/// How many times a side checks before it sleeps.
const SPINS: u32 = 2000;

fn record_len(len: usize) -> usize {
    (RECORD_HEADER + len).next_multiple_of(8)
}

/// The size of the segment for two rings of `capacity` bytes (rounded up to pages).
pub fn segment_len(capacity: usize) -> usize {
    PAGE + 2 * capacity.next_multiple_of(PAGE)
}

/// One ring's offsets in the segment.
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

/// One side of a shared-memory connection: the segment and this side's two bells.
pub struct Channel<S: Segment, B: Bell> {
    map: S,
    capacity: usize,
    rx: Ring,
    tx: Ring,
    /// The bell of the ring this side reads.
    rx_bell: B,
    /// The bell of the ring this side writes.
    tx_bell: B,
    /// A bell said the peer dropped its end or died.
    peer_gone: AtomicBool,
}

impl<S: Segment, B: Bell> std::fmt::Debug for Channel<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S: Segment, B: Bell> Channel<S, B> {
    /// Server: writes the header of a fresh, zeroed segment of
    /// [`segment_len(capacity)`](segment_len) bytes and takes the server's side of it.
    /// `rx_bell` is the bell of ring 1 (the client's writes), `tx_bell` of ring 0.
    pub fn server(map: S, capacity: usize, rx_bell: B, tx_bell: B) -> Channel<S, B> {
        let capacity = capacity.next_multiple_of(PAGE);
        map.u64_at(0).store(MAGIC, Ordering::Relaxed);
        map.u64_at(CAPACITY_AT)
            .store(capacity as u64, Ordering::Relaxed);
        Channel::new(map, capacity, 1, rx_bell, tx_bell)
    }

    /// Client: takes its side of a segment the server made, of `len` bytes, after checking
    /// its header. `rx_bell` is the bell of ring 0 (the server's writes), `tx_bell` of ring 1.
    ///
    /// # Errors
    ///
    /// `InvalidData` for a segment with no pipekit header or with rings that do not match
    /// its size.
    pub fn client(map: S, len: usize, rx_bell: B, tx_bell: B) -> io::Result<Channel<S, B>> {
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
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
        Ok(Channel::new(map, capacity, 0, rx_bell, tx_bell))
    }

    fn new(map: S, capacity: usize, rx: usize, rx_bell: B, tx_bell: B) -> Channel<S, B> {
        Channel {
            map,
            capacity,
            rx: Ring::new(rx, capacity),
            tx: Ring::new(1 - rx, capacity),
            rx_bell,
            tx_bell,
            peer_gone: AtomicBool::new(false),
        }
    }

    /// Whether a segment of `len` bytes could hold two rings within the limits (checked
    /// before a received segment is mapped).
    pub fn plausible_len(len: usize) -> bool {
        (PAGE + 2 * MIN_SHARED_MEMORY..=PAGE + 2 * MAX_SHARED_MEMORY).contains(&len)
    }

    /// The segment.
    pub fn segment(&self) -> &S {
        &self.map
    }

    /// Where the data of the ring this side reads starts, for tests that play a peer
    /// writing garbage.
    #[doc(hidden)]
    pub fn rx_data(&self) -> usize {
        self.rx.data
    }

    /// The bells: (the ring this side reads, the ring it writes).
    pub fn bells(&self) -> (&B, &B) {
        (&self.rx_bell, &self.tx_bell)
    }

    /// Whether a bell said the peer dropped its end or died.
    pub fn peer_gone(&self) -> bool {
        self.gone()
    }

    /// Takes the wake-ups waiting on the bell of the ring this side reads.
    pub fn drain_rx(&self) {
        self.drain(&self.rx_bell);
    }

    /// Server: what the client said of its writes — 0 while it has not said, else the
    /// value it gave [`switch`](Self::switch) — and the count it gave with it.
    pub fn switched(&self) -> (u32, u64) {
        let switched = self.word(self.rx, SWITCHED).load(Ordering::Acquire);
        (
            switched,
            self.index(self.rx, BEFORE).load(Ordering::Acquire),
        )
    }

    /// Client: tells the server how it writes from now on (`how`, not 0: the backend's
    /// meaning) after `before` bytes or messages sent elsewhere, and wakes it.
    pub fn switch(&self, how: u32, before: u64) {
        self.index(self.tx, BEFORE).store(before, Ordering::Relaxed);
        self.word(self.tx, SWITCHED).store(how, Ordering::Release);
        self.ring(&self.tx_bell);
    }

    /// Server: waits until the client said how it writes, or is gone.
    ///
    /// # Errors
    ///
    /// `WouldBlock` (non-blocking) or `TimedOut`, as any read.
    pub fn wait_for_switch(&self, wait: Wait) -> io::Result<()> {
        let switched = self.word(self.rx, SWITCHED);
        loop {
            if switched.load(Ordering::Acquire) != 0 || self.gone() {
                return Ok(());
            }
            self.wait(
                &self.rx_bell,
                self.word(self.rx, CONSUMER_WAITING),
                || switched.load(Ordering::SeqCst) != 0,
                wait,
                "read",
            )?;
        }
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
    pub fn fits(&self, max: usize) -> bool {
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
        bell: &B,
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
        bell.sleep(deadline).map_err(|e| timed_out(e, what))?;
        self.drain(bell);
        Ok(())
    }

    /// Takes the wake-ups waiting on `bell` (a bounded amount: a peer that floods them must
    /// not keep this side busy; the state is checked after a drain either way), and notes
    /// the peer's end.
    fn drain(&self, bell: &B) {
        if !bell.drain() {
            self.peer_gone.store(true, Ordering::Release);
        }
    }

    /// After a step: wakes the peer if it said it sleeps.
    fn notify(&self, bell: &B, waiting: &AtomicU32) {
        fence(Ordering::SeqCst);
        if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::SeqCst) != 0 {
            self.ring(bell);
        }
    }

    fn ring(&self, bell: &B) {
        if !bell.ring() {
            self.peer_gone.store(true, Ordering::Release);
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
    pub fn read(&self, tail: &mut u64, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
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
    pub fn write(&self, head: &mut u64, buf: &[u8], wait: Wait) -> io::Result<usize> {
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
    pub fn send<R>(
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
    pub fn recv<R>(
        &self,
        tail: &mut u64,
        room: Option<usize>,
        max: usize,
        wait: Wait,
        take: impl FnOnce(&S, usize, usize) -> R,
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

    /// Waits until the peer has taken everything this side published, up to `head`.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` if the peer is gone; `WouldBlock` or `TimedOut`, as any write.
    pub fn wait_until_taken(&self, head: u64, wait: Wait) -> io::Result<()> {
        loop {
            self.check_peer_reads()?;
            if self.free(head)? == self.capacity {
                return Ok(());
            }
            self.wait_for_space(head, self.capacity, wait)?;
        }
    }

    /// This side will write no more: the peer reads the end after what was published.
    pub fn close_tx(&self) {
        self.word(self.tx, CLOSED).store(1, Ordering::Release);
        self.ring(&self.tx_bell);
    }
}

impl<S: Segment, B: Bell> Drop for Channel<S, B> {
    fn drop(&mut self) {
        // A sleeping peer wakes (at the bells' end, or as they are rung) and finds these
        // flags.
        self.word(self.tx, CLOSED).store(1, Ordering::Release);
        self.word(self.rx, GONE).store(1, Ordering::Release);
        self.tx_bell.hang_up();
        self.rx_bell.hang_up();
    }
}

/// Whether an operation may wait, and until when.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Non-blocking: `WouldBlock` instead.
    No,
    /// Until the deadline (`None`: without limit).
    Until(Option<Instant>),
}

impl Wait {
    /// For a stream in non-blocking mode, or with `timeout`.
    pub fn new(nonblocking: bool, timeout: Option<Duration>) -> Wait {
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
