//! Shared-memory connections: a pipe connection whose traffic moves to two rings in an
//! unnamed section private to it, while the pipe stays for the start.
//!
//! # Negotiation
//!
//! Nothing unusual may reach a peer that did not ask, and a client may not wait for the
//! server at connect:
//!
//! 1. A listener that offers shared memory also serves a sibling name, its own name with
//!    [`SIBLING`] appended, with the same security descriptor. Clients that do not ask
//!    never open it.
//! 2. A client that asks opens the sibling first and falls back to the name itself when the
//!    sibling is not there, is busy, or does not admit it. It opens the server's process
//!    (`PROCESS_DUP_HANDLE | SYNCHRONIZE`, by the pid the pipe reports); if it may not, it
//!    leaves the sibling for the name itself too.
//! 3. The listener, on a connection to the sibling, makes an unnamed section and four
//!    auto-reset events and writes, as the first thing on the pipe, an [`OFFER_LEN`]-byte
//!    message: [`OFFER`] and the handle values *in the server's own table*. If it may not
//!    open the client's process (`SYNCHRONIZE`), it writes [`PLAIN`] instead, and the
//!    connection stays on the pipe.
//! 4. The client reads that message at its first read or write (waiting for the server's
//!    accept, as a read would) and takes the handles out of the server's process with
//!    `DuplicateHandle`: a value is only a number looked up in the server's table, so a
//!    lying server can give nothing but its own objects. The section must be the length the
//!    offer says, committed read-write throughout and backed by no file (a `SEC_RESERVE`
//!    page or a file's page could fault at a touch), the events must be events, and the
//!    values must be handle values (no pseudo-handle). It then says in the segment how it
//!    writes: to its ring, or on the pipe if its messages do not fit the ring. The server
//!    reads the ring or the pipe accordingly.
//!
//! # Waits
//!
//! The rings and their checks are [`pipekit_core::ring`]'s. Each ring has two events, one
//! its consumer sleeps on and one its producer sleeps on; a side sleeps in
//! `WaitForMultipleObjects` on its event and the peer's process, so the peer's death wakes
//! it, and dropping a channel signals the peer's events after marking the rings closed.

use std::io;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pipekit_core::error::{Chain, context_kind};
use pipekit_core::ring;

use crate::sys::shm::{self as sys, View, Woken};

pub(crate) use pipekit_core::ring::Wait;

/// What a listener that offers appends to its name for the sibling pipe.
pub(crate) const SIBLING: &str = "@pkshm-v1";

/// The first bytes of an offer.
pub(crate) const OFFER: &[u8; 16] = b"\0pipekit-shm-v1\0";
/// The first bytes of the message that says "no offer: this connection stays on the pipe".
pub(crate) const PLAIN: &[u8; 16] = b"\0pipekit-shm-no\0";
/// An offer, or its refusal: 16 bytes, the segment's length and five handle values (the
/// section, then the events of ring 0's consumer and producer, ring 1's consumer and
/// producer), each a little-endian `u64`.
pub(crate) const OFFER_LEN: usize = 16 + 8 * 6;

/// What the client says of its writes once it has the offer: to its ring.
pub(crate) const ON_RING: u32 = 1;
/// ... or on the pipe, its messages being too large for its ring.
pub(crate) const ON_PIPE: u32 = 2;

/// One side's shared-memory channel.
pub(crate) type Channel = ring::Channel<View, Bell>;

/// The peer as a bell sees it: its process (signalled when it ends) and this side's pipe
/// handle (a second handle on the instance), which says when the peer closed its end.
pub(crate) struct Peer {
    pub(crate) process: OwnedHandle,
    pub(crate) pipe: OwnedHandle,
}

impl Peer {
    fn gone(&self) -> bool {
        sys::signalled(self.process.as_handle())
            || crate::sys::bytes_waiting(self.pipe.as_handle()).is_err_and(|e| {
                matches!(
                    crate::sys::code(&e),
                    Some(
                        crate::sys::ERROR_BROKEN_PIPE
                            | crate::sys::ERROR_NO_DATA
                            | crate::sys::ERROR_PIPE_NOT_CONNECTED
                    )
                )
            })
    }
}

/// How long a sleeper waits on its event before it looks at the pipe again: a peer that
/// closed the pipe without a word (before it took the offer) signals nothing.
const LOOK_AT_PIPE: Duration = Duration::from_millis(100);

/// One side's bell for one ring: the event it sleeps on, the event the peer sleeps on, and
/// the peer.
pub(crate) struct Bell {
    mine: OwnedHandle,
    theirs: OwnedHandle,
    peer: Arc<Peer>,
}

impl ring::Bell for Bell {
    fn ring(&self) -> bool {
        sys::set_event(self.theirs.as_handle())
    }

    fn drain(&self) -> bool {
        let _ = sys::signalled(self.mine.as_handle());
        !self.peer.gone()
    }

    fn sleep(&self, deadline: Option<Instant>) -> io::Result<()> {
        let handles = [self.mine.as_handle(), self.peer.process.as_handle()];
        loop {
            let slice = Instant::now() + LOOK_AT_PIPE;
            let until = deadline.map_or(slice, |d| d.min(slice));
            match sys::wait_any(&handles, Some(until))? {
                Woken::At(_) => return Ok(()),
                Woken::TimedOut if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Woken::TimedOut if self.peer.gone() => return Ok(()),
                Woken::TimedOut => {}
            }
        }
    }
}

/// Server: the offer for `peer`, a client connected to the sibling: the channel, and the
/// message to write first.
pub(crate) fn offer(peer: Peer, capacity: usize) -> io::Result<(Channel, [u8; OFFER_LEN])> {
    let len = ring::segment_len(capacity);
    let view = View::new(sys::create_section(len)?, len)?;
    let events = [
        sys::auto_event()?,
        sys::auto_event()?,
        sys::auto_event()?,
        sys::auto_event()?,
    ];
    let mut message = [0u8; OFFER_LEN];
    message[..16].copy_from_slice(OFFER);
    message[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    let values = std::iter::once(view.section()).chain(&events);
    for (i, handle) in values.enumerate() {
        let at = 24 + 8 * i;
        message[at..at + 8].copy_from_slice(&sys::handle_value(handle).to_le_bytes());
    }
    // The section's and the events' handles stay open here as long as the channel (the view
    // and the bells keep them): the client takes its own from this process's table.
    let peer = Arc::new(peer);
    let [c0, p0, c1, p1] = events;
    // Ring 0 carries server to client: the server is its producer; ring 1 the other way.
    let tx = Bell {
        mine: p0,
        theirs: c0,
        peer: Arc::clone(&peer),
    };
    let rx = Bell {
        mine: c1,
        theirs: p1,
        peer,
    };
    Ok((Channel::server(view, capacity, rx, tx), message))
}

/// The refusal a server writes when it may not wait on the client's process.
pub(crate) fn plain() -> [u8; OFFER_LEN] {
    let mut message = [0u8; OFFER_LEN];
    message[..16].copy_from_slice(PLAIN);
    message
}

/// Client: takes the offer in `message` out of the process of `server`. `Ok(None)`: the server
/// said the connection stays on the pipe.
///
/// # Errors
///
/// `InvalidData` for a message that is neither an offer nor a refusal, a segment outside the
/// limits, handles that cannot be taken or mapped.
pub(crate) fn take(server: Peer, message: &[u8; OFFER_LEN]) -> io::Result<Option<Channel>> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    if &message[..16] == PLAIN {
        return Ok(None);
    }
    if &message[..16] != OFFER {
        return Err(bad(
            "the server's first message is no shared-memory offer".into()
        ));
    }
    let word = |i: usize| u64::from_le_bytes(message[16 + 8 * i..24 + 8 * i].try_into().unwrap());
    let unusable = |e: io::Error| {
        context_kind(
            io::ErrorKind::InvalidData,
            e,
            "the server's shared-memory offer is unusable",
        )
    };
    let len = usize::try_from(word(0))
        .ok()
        .filter(|&len| Channel::plausible_len(len))
        .ok_or_else(|| bad(format!("the server offers a segment of {} bytes", word(0))))?;
    let process = server.process.as_handle();
    let take = |i: usize| sys::take_handle(process, word(i)).map_err(unusable);
    let view = View::new(take(1)?, len).map_err(unusable)?;
    view.check_private().map_err(unusable)?;
    // An event is what `SetEvent` takes: a spurious wake-up of either side is harmless (a
    // sleeper looks at the ring again), a bell that cannot ring would look like the end.
    let event = |i: usize| {
        let handle = take(i)?;
        if !sys::set_event(handle.as_handle()) {
            return Err(unusable(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handle {} of the offer is no event", i - 1),
            )));
        }
        Ok(handle)
    };
    let (c0, p0, c1, p1) = (event(2)?, event(3)?, event(4)?, event(5)?);
    let server = Arc::new(server);
    let rx = Bell {
        mine: c0,
        theirs: p0,
        peer: Arc::clone(&server),
    };
    let tx = Bell {
        mine: p1,
        theirs: c1,
        peer: server,
    };
    Channel::client(view, len, rx, tx)
        .map(Some)
        .map_err(unusable)
}

/// The peer of `pipe`, a connection to the sibling: its process, opened to wait on it and,
/// by a client (`server_end` false), to take handles from it; `None` if this side may not.
pub(crate) fn open_peer(pipe: &OwnedHandle, server_end: bool) -> Option<Peer> {
    let pid = crate::sys::peer_pid(pipe.as_handle(), server_end).ok()?;
    let process = sys::open_process(pid, !server_end).ok()?;
    Some(Peer {
        process,
        pipe: pipe.try_clone().ok()?,
    })
}

/// What a stream's handles share of its shared-memory connection.
pub(crate) struct Link {
    server: bool,
    /// Client: the server, to take the offer's handles from (until it is taken).
    peer: Mutex<Option<Peer>>,
    /// The channel, or what came instead; set at accept (server) or at the client's first
    /// read or write.
    state: OnceLock<State>,
    /// Server: whether the client writes to its ring, once it said so.
    on_ring: OnceLock<bool>,
}

pub(crate) enum State {
    Ring(Channel),
    /// The server refused, or closed before its first message: the pipe carries everything.
    Plain,
    /// The offer was unusable; every later call fails with this.
    Broken(String),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("server", &self.server)
            .field("active", &self.active())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The server's side of a sibling connection: `channel` if it offered one.
    pub(crate) fn server(channel: Option<Channel>) -> Link {
        let state = OnceLock::new();
        let _ = state.set(channel.map_or(State::Plain, State::Ring));
        Link {
            server: true,
            peer: Mutex::new(None),
            state,
            on_ring: OnceLock::new(),
        }
    }

    /// A client connected to the sibling of `server`.
    pub(crate) fn client(server: Peer) -> Link {
        Link {
            server: false,
            peer: Mutex::new(Some(server)),
            state: OnceLock::new(),
            on_ring: OnceLock::new(),
        }
    }

    /// Whether the connection runs over shared memory.
    pub(crate) fn active(&self) -> bool {
        matches!(self.state.get(), Some(State::Ring(_)))
    }

    /// The state, once known; a client reads the server's first message with `read_first`
    /// (which fills the buffer or fails; `Ok(false)` at the end) if it is not.
    pub(crate) fn settle(
        &self,
        read_first: impl FnOnce(&mut [u8; OFFER_LEN]) -> io::Result<bool>,
        writes_fit: impl FnOnce(&Channel) -> bool,
    ) -> io::Result<&State> {
        if let Some(state) = self.state.get() {
            return Ok(state);
        }
        let mut peer = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = self.state.get() {
            return Ok(state);
        }
        let mut message = [0u8; OFFER_LEN];
        let state = if read_first(&mut message)? {
            match peer.take().map(|server| take(server, &message)) {
                None => State::Broken("the server's offer was unusable".into()),
                Some(Ok(Some(channel))) => {
                    let how = if writes_fit(&channel) {
                        ON_RING
                    } else {
                        ON_PIPE
                    };
                    channel.switch(how, 0);
                    State::Ring(channel)
                }
                Some(Ok(None)) => State::Plain,
                Some(Err(e)) => State::Broken(Chain(&e).to_string()),
            }
        } else {
            State::Plain
        };
        let _ = self.state.set(state);
        Ok(self.state.get().expect("just set"))
    }

    /// Server: the channel, if the client reads and writes on it; waits (as a read) until
    /// the client said how it writes. What it said is taken once: a client that writes over
    /// the word later does not move this side's reads.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the client said neither [`ON_RING`] nor [`ON_PIPE`].
    pub(crate) fn server_channel(&self, wait: Wait) -> io::Result<Option<&Channel>> {
        let Some(State::Ring(channel)) = self.state.get() else {
            return Ok(None);
        };
        if let Some(&on_ring) = self.on_ring.get() {
            return Ok(on_ring.then_some(channel));
        }
        channel.wait_for_switch(wait)?;
        let on_ring = match channel.switched().0 {
            ON_RING => true,
            ON_PIPE => false,
            how => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the peer broke the shared-memory protocol: it says it writes in way {how}, \
                         neither to its ring nor on the pipe"
                    ),
                ));
            }
        };
        let on_ring = *self.on_ring.get_or_init(|| on_ring);
        Ok(on_ring.then_some(channel))
    }

    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    pub(crate) fn state(&self) -> Option<&State> {
        self.state.get()
    }
}
