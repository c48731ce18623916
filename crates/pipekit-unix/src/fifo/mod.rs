//! Named pipes over FIFOs: a multi-client server ([`FifoListener`]), its connections
//! ([`FifoStream`]), and one-way ends usable from a shell ([`Sender`], [`Receiver`]).
//!
//! The FIFO transport is for places where Unix-domain sockets cannot be bound (some sandboxes
//! and filesystems refuse them but allow FIFOs) and for programs that only know files. It
//! has the same modes and the same behaviour as the socket transport; messages are framed
//! with [`pipekit_core::framing`].
//!
//! # Protocol
//!
//! Enough to write a client in another language (pipekit's tests include one in Python,
//! `crates/pipekit-tests/tests/peers/fifo_client.py`).
//!
//! **Layout.** A name resolves to a path `P` as for sockets (a portable name lives in the
//! private per-user directory). The server makes `P` a directory, mode 0700, holding one
//! FIFO, `P/requests` (mode 0600), which the server keeps open read-write for its lifetime —
//! so a client can always open it for writing, and the server never sees end-of-file on it.
//! Beside the directory the server holds the lock file `P.lock` (as socket servers do), so one
//! server owns a name whatever its transport.
//!
//! **Connecting.** The client
//!
//! 1. picks a *token*: 32 characters from `[A-Za-z0-9]`, random;
//! 2. makes two FIFOs, mode 0600: `P/<token>.c2s` (client to server) and `P/<token>.s2c`
//!    (server to client);
//! 3. opens `P/<token>.s2c` for reading, non-blocking (`O_RDONLY | O_NONBLOCK`);
//! 4. opens `P/requests` for writing, non-blocking (`ENXIO` there means no server: the
//!    directory is stale); if `P/busy` exists the server is at its instance limit (the
//!    limit is in `P.lock` as `max_instances N`): the client gives up or retries later;
//!    otherwise it writes its 40-byte *request record* in one `write(2)` — no
//!    larger than `PIPE_BUF`, so records from concurrent clients never interleave:
//!
//!    ```text
//!    PKF1 <mode> <token>\n        mode: B (bytes) or M (messages)
//!    ```
//!
//! 5. waits (with a deadline) for one byte on `s2c`: `K` (accepted) or `M` (the server uses the
//!    other mode; the client gives up with an error); end-of-file means refused;
//! 6. after `K`, opens `P/<token>.c2s` for writing (the server already holds its read end),
//!    writes one byte `K` on it, and unlinks both FIFOs (the server unlinks them too: whoever
//!    comes second gets `ENOENT`, which is fine).
//!
//! The server reads records from `P/requests` line by line (anything before the last `PKF1 `
//! of a line is ignored, so junk written by others cannot swallow a record) and for each
//! valid record checks that both FIFOs exist in `P` as FIFOs (`lstat`: never symlinks), are
//! owned by one user its [`PeerPolicy`](crate::PeerPolicy) allows and open to nobody else;
//! then opens `c2s` for reading and `s2c`
//! for writing (both `O_NONBLOCK | O_NOFOLLOW`, each checked with `fstat` to be the same FIFO),
//! writes `K` (or `M`), waits with a deadline for the client's `K`, and unlinks both FIFOs.
//! A blocking `accept` runs the handshakes of every waiting client at once: a client that
//! breaks off or stalls at any step is dropped at its deadline ([`HANDSHAKE_TIMEOUT`], or
//! [`UnixOptions::handshake_timeout`](crate::UnixOptions::handshake_timeout)), its FIFOs
//! removed, and never delays the others. (In non-blocking mode `accept` finishes one
//! handshake at a time, since an event loop watches only `P/requests`.)
//!
//! **Talking.** The client writes on `c2s` and reads `s2c`; the server the reverse. Bytes mode
//! moves raw bytes; message mode moves frames (a 4-byte big-endian length, then the message).
//! Closing the write FIFO is end-of-stream for the peer (a real half-close); writing after
//! the peer closed its read end fails with `EPIPE`.
//!
//! # Signals
//!
//! A write to a FIFO whose reader is gone raises `SIGPIPE`, which kills a process that does not
//! ignore it. Rust programs ignore it by default. Every write checks the signal's action at
//! that moment; where `SIGPIPE` is not ignored, the write runs with it blocked on the calling
//! thread and a signal the write raised is taken back off the queue — also for a write cut
//! short half-way by the reader's death, which returns a short count rather than `EPIPE` — so
//! the caller only sees `BrokenPipe`.

mod listener;
mod oneway;
mod record;
mod stream;

pub use listener::FifoListener;
pub use oneway::{Receiver, Sender};
pub use stream::FifoStream;

pub use record::HANDSHAKE_TIMEOUT;
pub(crate) use record::{BUSY, RECORD_LEN, REQUESTS, new_token, pair_names, parse_record, record};
