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
mod stream;

use std::time::Duration;

pub use listener::FifoListener;
pub use oneway::{Receiver, Sender};
pub use stream::FifoStream;

use pipekit_core::Mode;

/// How long either side of a handshake waits for the other before giving up on that client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The FIFO a server with an instance limit keeps in its directory while every place is
/// taken; a client that finds it is told the server is busy.
pub(crate) const BUSY: &str = "busy";

/// The request FIFO inside a server directory.
pub(crate) const REQUESTS: &str = "requests";

/// The length of a token.
pub(crate) const TOKEN_LEN: usize = 32;

/// The length of a request record, newline included.
pub(crate) const RECORD_LEN: usize = 5 + 2 + TOKEN_LEN + 1;

const MAGIC: &[u8] = b"PKF1 ";

fn mode_byte(mode: Mode) -> u8 {
    match mode {
        Mode::Messages => b'M',
        _ => b'B',
    }
}

/// The request record announcing `token` in `mode`.
pub(crate) fn record(mode: Mode, token: &str) -> Vec<u8> {
    let mut rec = Vec::with_capacity(RECORD_LEN);
    rec.extend_from_slice(MAGIC);
    rec.push(mode_byte(mode));
    rec.push(b' ');
    rec.extend_from_slice(token.as_bytes());
    rec.push(b'\n');
    rec
}

/// Parses one line (without its newline): the mode and token of the last record in it.
pub(crate) fn parse_record(line: &[u8]) -> Option<(Mode, String)> {
    let start = line.windows(MAGIC.len()).rposition(|w| w == MAGIC)?;
    let rest = &line[start + MAGIC.len()..];
    let [mode, b' ', token @ ..] = rest else {
        return None;
    };
    let mode = match mode {
        b'B' => Mode::Bytes,
        b'M' => Mode::Messages,
        _ => return None,
    };
    if !valid_token(token) {
        return None;
    }
    Some((mode, String::from_utf8(token.to_vec()).ok()?))
}

/// A token is exactly [`TOKEN_LEN`] ASCII letters and digits: never a path.
pub(crate) fn valid_token(token: &[u8]) -> bool {
    token.len() == TOKEN_LEN && token.iter().all(u8::is_ascii_alphanumeric)
}

/// A fresh random token, from the kernel's random source.
pub(crate) fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = [0u8; TOKEN_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// The names of the two FIFOs of `token`: (client to server, server to client).
pub(crate) fn pair_names(token: &str) -> (String, String) {
    (format!("{token}.c2s"), format!("{token}.s2c"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_ignored() {
        let token = new_token().unwrap();
        let rec = record(Mode::Messages, &token);
        assert_eq!(rec.len(), RECORD_LEN);
        assert!(rec.len() <= crate::sys::fifo::PIPE_BUF);
        let line = &rec[..rec.len() - 1];
        assert_eq!(parse_record(line), Some((Mode::Messages, token.clone())));
        let mut junk = b"garbage PKF1 X".to_vec();
        junk.extend_from_slice(line);
        assert_eq!(parse_record(&junk), Some((Mode::Messages, token)));
    }

    #[test]
    fn hostile_records_are_refused() {
        let dots = format!("PKF1 B ../{}", "a".repeat(TOKEN_LEN - 3));
        let slash = format!("PKF1 B a/{}", "b".repeat(TOKEN_LEN - 2));
        let short = "PKF1 B abc".to_string();
        let long = format!("PKF1 B {}", "a".repeat(TOKEN_LEN + 1));
        let mode = format!("PKF1 X {}", "a".repeat(TOKEN_LEN));
        for bad in [dots, slash, short, long, mode, String::from("garbage")] {
            assert_eq!(parse_record(bad.as_bytes()), None, "{bad}");
        }
    }
}
