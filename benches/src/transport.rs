//! The one interface every transport is driven through.

use std::fmt;
use std::io;

/// One end of a connection, as the harness uses it.
pub trait Conn: Send {
    /// Sends `buf`: one message on message transports, all the bytes on byte transports.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn send(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Fills `buf`: one message of exactly that length, or that many bytes. End of stream is
    /// `UnexpectedEof`.
    ///
    /// # Errors
    ///
    /// The transport's error; `InvalidData` for a message of another length.
    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;

    /// Receives as [`recv_exact`](Self::recv_exact) and says whether what came is
    /// `expected`: how a sink consumes a chunk. `buf` is scratch space; a transport that can
    /// look at a message where it lies (without copying it out) does so.
    ///
    /// # Errors
    ///
    /// As `recv_exact`.
    fn recv_check(&mut self, buf: &mut [u8], expected: &[u8]) -> io::Result<bool> {
        self.recv_exact(buf)?;
        Ok(*buf == *expected)
    }

    /// The kernel buffer sizes in effect, for the report (empty if there is nothing to say).
    fn settings(&self) -> String {
        String::new()
    }
}

/// A listening end, in the peer process.
pub trait Listen: Send {
    /// The address clients connect to (for TCP, with the port the OS chose).
    fn addr(&self) -> String;

    /// The next connection.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn accept(&mut self) -> io::Result<Box<dyn Conn>>;
}

/// A way for two processes to talk.
pub trait Transport: Sync {
    /// A short, stable name (`pipekit-uds-bytes`, `raw-fifo-64k`, ...).
    fn name(&self) -> &'static str;

    /// What it is, in one line (for `pipekit bench --list` and the report).
    fn about(&self) -> &'static str;

    /// For pipekit's transports: the raw transport underneath, to compare with.
    fn baseline(&self) -> Option<&'static str> {
        None
    }

    /// Why this transport cannot run with `size`-byte chunks here, if it cannot.
    ///
    /// # Errors
    ///
    /// The reason, in words.
    fn check(&self, size: usize) -> Result<(), String> {
        let _ = size;
        Ok(())
    }

    /// How this transport carries `size`-byte chunks when that differs from one message or
    /// one write each (for example "as 8 messages of 8192 B: the system's limit"), for the
    /// report.
    fn label(&self, size: usize) -> Option<String> {
        let _ = size;
        None
    }

    /// Whether a listener serves connection after connection (so connect time means
    /// something); single-session baselines say no.
    fn reconnects(&self) -> bool {
        true
    }

    /// An address for a listener, made from a token unique to this run.
    fn addr(&self, unique: &str) -> String;

    /// Starts listening at `addr` for `size`-byte chunks.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>>;

    /// Connects to a listener at `addr`.
    ///
    /// # Errors
    ///
    /// The transport's error.
    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>>;
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for dyn Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Conn")
    }
}
