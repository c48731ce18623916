use std::io::{self, Read, Write};
use std::time::Duration;

use crate::{Mode, PeerCredentials};

/// What every connection can do, whatever its mode.
pub trait Connection {
    /// The connection's mode, as chosen by the server.
    fn mode(&self) -> Mode;

    /// Who is on the other end.
    ///
    /// # Errors
    ///
    /// The OS error if the query fails.
    fn peer_credentials(&self) -> io::Result<PeerCredentials>;

    /// Makes blocking reads and `recv` fail with [`io::ErrorKind::TimedOut`] after `timeout`;
    /// `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration; the OS error if setting it fails.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Makes blocking writes and `send` fail with [`io::ErrorKind::TimedOut`] after
    /// `timeout`; `None` waits forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration; the OS error if setting it fails.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

/// A byte-stream connection: writes may be merged or split on the way.
///
/// A read returning `Ok(0)` means the peer closed (or shut down) its write side. Writing to a
/// peer that is gone fails with [`io::ErrorKind::BrokenPipe`]; it never raises `SIGPIPE`.
pub trait ByteStream: Connection + Read + Write {
    /// Shuts down the write side: the peer reads EOF once it has read everything sent before,
    /// and can still send to this end.
    ///
    /// # Errors
    ///
    /// The OS error, or `Unsupported` where the transport has no half-close.
    fn shutdown_write(&self) -> io::Result<()>;
}

/// A message-pipe connection: each `send` arrives as exactly one `recv`.
///
/// `recv` returns `Ok(Some(len))` for a message of `len` bytes (zero-length messages are
/// messages) and `Ok(None)` once the peer has closed and every message it sent has been read.
pub trait MessagePipe: Connection {
    /// Sends `msg` as one message.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the size if `msg` is longer than
    /// [`max_message_size`](Self::max_message_size) (nothing is sent, the connection stays
    /// usable); `BrokenPipe` if the peer is gone; `TimedOut` after a write timeout.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;

    /// Receives one message into `buf`, returning its length, or `None` at end of stream.
    ///
    /// # Errors
    ///
    /// If the message is longer than `buf`, fails with an `InvalidInput` error that carries a
    /// [`MessageTooLarge`](crate::MessageTooLarge) naming the message's size, and the
    /// message stays readable: the next `recv` with a large enough buffer (or
    /// [`recv_to_vec`](Self::recv_to_vec)) takes it whole. `TimedOut` after a read timeout;
    /// `InvalidData` if the peer breaks the protocol; `UnexpectedEof` if the peer closed in
    /// the middle of a message.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// Receives one whole message into `buf`, which is cleared first and grown as needed.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), except that no message is too large for it.
    fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>>;

    /// The largest message this end sends or receives, in bytes.
    fn max_message_size(&self) -> usize;
}

/// A server bound to a name.
pub trait Listener {
    /// The connection type `accept` returns.
    type Stream;

    /// Waits for the next client and returns the connection to it.
    ///
    /// # Errors
    ///
    /// The OS error if accepting fails.
    fn accept(&self) -> io::Result<Self::Stream>;

    /// The mode of every connection this listener accepts.
    fn mode(&self) -> Mode;
}
