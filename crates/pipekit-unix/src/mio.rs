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
    /// A shared-memory stream registers its wake-up pairs under the same token too (once the
    /// channel exists: a client that has not yet seen the offer registers them when it
    /// does). Their events come as readable whichever way the room or data they announce
    /// goes: after any event, read until `WouldBlock`, then write what waits.
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match &mut self.inner {
            StreamInner::Socket(s) => {
                SourceFd(&s.as_raw_fd()).register(registry, token, interests)?;
                watch_bells(s.link(), registry, token)
            }
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
                SourceFd(&s.as_raw_fd()).reregister(registry, token, interests)?;
                if let Some(link) = s.link()
                    && let Some((rx, tx)) = link.bells()
                {
                    for bell in [rx, tx] {
                        SourceFd(&bell.as_raw_fd()).reregister(
                            registry,
                            token,
                            Interest::READABLE,
                        )?;
                    }
                    return Ok(());
                }
                watch_bells(s.link(), registry, token)
            }
            StreamInner::Fifo(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.inner {
            StreamInner::Socket(s) => {
                if let Some(link) = s.link() {
                    link.forget_hook();
                    if let Some((rx, tx)) = link.bells() {
                        for bell in [rx, tx] {
                            // Not registered if the channel came without an event loop.
                            let _ = SourceFd(&bell.as_raw_fd()).deregister(registry);
                        }
                    }
                }
                SourceFd(&s.as_raw_fd()).deregister(registry)
            }
            StreamInner::Fifo(s) => s.deregister(registry),
        }
    }
}

/// Registers a shared-memory stream's wake-up pairs under `token`, now or when the channel
/// comes (a failure then cannot be reported; the stream's socket stays registered).
fn watch_bells(
    link: Option<&crate::shm::Link>,
    registry: &Registry,
    token: Token,
) -> io::Result<()> {
    let Some(link) = link else {
        return Ok(());
    };
    let registry = registry.try_clone()?;
    link.when_channel(Box::new(move |rx, tx| {
        for bell in [rx, tx] {
            let _ = registry.register(&mut SourceFd(&bell.as_raw_fd()), token, Interest::READABLE);
        }
    }));
    Ok(())
}
