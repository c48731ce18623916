//! Adapters shared by several transports.

use std::io::{self, Read, Write};

use crate::transport::Conn;
#[cfg(unix)]
use crate::transport::Listen;

/// A byte stream used through `Read + Write`.
pub(crate) struct Bytes<S>(pub(crate) S);

impl<S: Read + Write + Send> Conn for Bytes<S> {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }
}

/// A message transport whose messages are limited to `max` bytes, carrying each chunk as
/// consecutive messages of at most `max` bytes (both ends cut the same way, so the reader
/// knows every piece's length).
pub(crate) struct Chunked<C> {
    pub(crate) inner: C,
    pub(crate) max: usize,
}

impl<C: Conn> Conn for Chunked<C> {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return self.inner.send(buf);
        }
        buf.chunks(self.max)
            .try_for_each(|piece| self.inner.send(piece))
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return self.inner.recv_exact(buf);
        }
        buf.chunks_mut(self.max)
            .try_for_each(|piece| self.inner.recv_exact(piece))
    }

    fn settings(&self) -> String {
        let inner = self.inner.settings();
        let sep = if inner.is_empty() { "" } else { ", " };
        format!("{inner}{sep}sent as messages of at most {} B", self.max)
    }
}

/// A listener with one connection, made with it (a queue pair, a ring pair, a PAIR socket):
/// the first `accept` hands it out, a second is `Unsupported`.
#[cfg(unix)]
pub(crate) struct Single {
    pub(crate) conn: Option<Box<dyn Conn>>,
    pub(crate) addr: String,
}

#[cfg(unix)]
impl Single {
    pub(crate) fn boxed(conn: Box<dyn Conn>, addr: &str) -> Box<dyn Listen> {
        Box::new(Single {
            conn: Some(conn),
            addr: addr.to_string(),
        })
    }
}

#[cfg(unix)]
impl Listen for Single {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
        self.conn.take().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this transport serves a single session",
            )
        })
    }
}
