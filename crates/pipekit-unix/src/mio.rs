//! `mio::event::Source` for the listener (its socket, or the FIFO server's request FIFO)
//! and for streams (the socket, or both FIFOs under one token).

use std::io;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::any::{Listener, Stream, StreamInner};

impl mio::event::Source for Listener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.no_shared_memory()?;
        SourceFd(&self.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).deregister(registry)
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.no_shared_memory()?;
        match &mut self.inner {
            StreamInner::Socket(s) => SourceFd(&s.as_raw_fd()).register(registry, token, interests),
            StreamInner::Fifo(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match &mut self.inner {
            StreamInner::Socket(s) => {
                SourceFd(&s.as_raw_fd()).reregister(registry, token, interests)
            }
            StreamInner::Fifo(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.inner {
            StreamInner::Socket(s) => SourceFd(&s.as_raw_fd()).deregister(registry),
            StreamInner::Fifo(s) => s.deregister(registry),
        }
    }
}
