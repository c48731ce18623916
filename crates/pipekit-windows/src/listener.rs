//! A server: the instances of one named pipe.

use std::fmt;
use std::io;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::sync::{Arc, Mutex};

use pipekit_core::error::{context, context_kind};
use pipekit_core::slots::{Slot, Slots};
use pipekit_core::{ListenerOptions, Mode, PipeName};

use crate::WindowsOptions;
use crate::stream::{PipeEnd, Stream};
use crate::sys::{self, Event, PipeConfig, SecurityDescriptor};

/// A server bound to a name; every [`accept`](Self::accept) returns the next client.
///
/// # Examples
///
/// ```no_run
/// use pipekit_core::{ListenerOptions, Mode, PipeName};
/// use pipekit_windows::{Listener, WindowsOptions};
///
/// let name = PipeName::new("test_pipe")?;
/// let mut options = ListenerOptions::new();
/// options.mode(Mode::Messages);
/// let listener = Listener::bind_with(&name, &options, &WindowsOptions::new())?;
/// let mut conn = listener.accept()?;
/// let mut buf = [0u8; 65535];
/// while let Some(n) = conn.recv(&mut buf)? {
///     conn.send(&buf[..n])?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Listener {
    name: PipeName,
    path: Vec<u16>,
    mode: Mode,
    max_message_size: usize,
    config: PipeConfig,
    security: SecurityDescriptor,
    /// The instance waiting for the next client, and the event its connect waits on.
    waiting: Mutex<Waiting>,
    slots: Option<Arc<Slots>>,
    /// The ring capacity offered on the sibling name, and that name's full path.
    shared_memory: Option<(usize, Vec<u16>)>,
}

struct Waiting {
    instance: Option<(OwnedHandle, Option<Slot>)>,
    event: Event,
    /// The sibling name's waiting instance, when shared memory is offered.
    sibling: Option<OwnedHandle>,
    sibling_event: Event,
    /// Which name's client goes first when both have one (they take turns).
    sibling_first: bool,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Binds `name` in byte mode with default options.
    ///
    /// # Errors
    ///
    /// As [`bind_with`](Self::bind_with).
    pub fn bind(name: &PipeName) -> io::Result<Listener> {
        Listener::bind_with(name, &ListenerOptions::new(), &WindowsOptions::new())
    }

    /// Binds `name`: creates the pipe's first instance, which waits for a client.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the name is already served or taken (the first-instance check failed);
    /// `InvalidInput` for a name that is not a Windows pipe name, bad options or an SDDL
    /// string that does not parse; other OS errors with the name.
    pub fn bind_with(
        name: &PipeName,
        options: &ListenerOptions,
        windows: &WindowsOptions,
    ) -> io::Result<Listener> {
        options.validate()?;
        let full = name.resolve_windows()?;
        let path = sys::wide(&full)?;
        let security = match &windows.security {
            None => owner_only()?,
            Some(sddl) => SecurityDescriptor::from_sddl(sddl).map_err(|e| {
                context_kind(
                    io::ErrorKind::InvalidInput,
                    e,
                    format!("security descriptor {sddl:?} does not parse"),
                )
            })?,
        };
        let mut pipe_mode = sys::PIPE_WAIT;
        pipe_mode |= match options.mode {
            Mode::Messages => sys::PIPE_TYPE_MESSAGE | sys::PIPE_READMODE_MESSAGE,
            _ => sys::PIPE_TYPE_BYTE | sys::PIPE_READMODE_BYTE,
        };
        if !windows.remote_clients {
            pipe_mode |= sys::PIPE_REJECT_REMOTE_CLIENTS;
        }
        let config = PipeConfig {
            pipe_mode,
            max_instances: options
                .max_instances
                .map_or(sys::PIPE_UNLIMITED_INSTANCES, |n| u32::from(n.get())),
            out_buffer: options.out_buffer_size,
            in_buffer: options.in_buffer_size,
            default_timeout_ms: sys::millis(options.default_timeout),
        };
        // FILE_FLAG_FIRST_PIPE_INSTANCE is the guarantee on Windows; Wine ignores the flag,
        // so first ask whether any instance of the name exists.
        match sys::wait_named_pipe(&path, 1) {
            Err(e) if sys::code(&e) == Some(sys::ERROR_FILE_NOT_FOUND) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{full} is already served (a pipe of that name exists)"),
                ));
            }
        }
        let first =
            sys::create_pipe(&path, true, &config, Some(&security)).map_err(
                |e| match sys::code(&e) {
                    Some(sys::ERROR_ACCESS_DENIED | sys::ERROR_PIPE_BUSY) => context_kind(
                        io::ErrorKind::AddrInUse,
                        e,
                        format!("{full} is already served (a pipe of that name exists)"),
                    ),
                    Some(sys::ERROR_INVALID_PARAMETER) => context_kind(
                        io::ErrorKind::InvalidInput,
                        e,
                        format!("cannot create {full} with these options"),
                    ),
                    _ => context(e, format!("cannot create {full}")),
                },
            )?;
        let shared_memory = match options.shared_memory {
            None => None,
            Some(capacity) => {
                let sibling = format!("{full}{}", crate::shm::SIBLING);
                let path = sys::wide(&sibling)?;
                if sys::wait_named_pipe(&path, 1)
                    .map_err(|e| sys::code(&e))
                    .err()
                    != Some(Some(sys::ERROR_FILE_NOT_FOUND))
                {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{sibling}, the name for shared-memory clients, is already served"),
                    ));
                }
                Some((capacity, path))
            }
        };
        let sibling = match &shared_memory {
            None => None,
            Some((_, path)) => Some(
                sys::create_pipe(path, true, &config, Some(&security))
                    .map_err(|e| context(e, format!("cannot create the sibling of {full}")))?,
            ),
        };
        let slots = options.max_instances.map(Slots::new);
        let slot = slots.as_ref().and_then(|s| s.try_acquire());
        Ok(Listener {
            name: name.clone(),
            path,
            mode: options.mode,
            max_message_size: options.max_message_size,
            config,
            security,
            waiting: Mutex::new(Waiting {
                instance: Some((first, slot)),
                event: Event::new()?,
                sibling,
                sibling_event: Event::new()?,
                sibling_first: false,
            }),
            slots,
            shared_memory,
        })
    }

    /// Waits for the next client and returns the connection to it; before returning, creates
    /// the instance that waits for the client after it.
    ///
    /// With an instance limit and every instance in use, first waits until an accepted stream
    /// is dropped. A client that connected and left already yields a stream that reads EOF.
    ///
    /// # Errors
    ///
    /// The OS error of `CreateNamedPipeW` or `ConnectNamedPipe`, with the pipe's name.
    pub fn accept(&self) -> io::Result<Stream> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let (handle, slot) = match waiting.instance.take() {
            Some((handle, None)) if self.slots.is_some() => {
                // A client of the sibling took this instance's place last time.
                (handle, self.slots.as_ref().map(|s| s.acquire()))
            }
            Some(instance) => instance,
            None => {
                let slot = self.slots.as_ref().map(|s| s.acquire());
                (self.create_instance()?, slot)
            }
        };
        match &self.shared_memory {
            None => {
                sys::connect_pipe(handle.as_handle(), &waiting.event)
                    .map_err(|e| self.cannot_wait(e))?;
            }
            Some((_, path)) => {
                let sibling = match waiting.sibling.take() {
                    Some(sibling) => sibling,
                    None => match self.create_sibling(path) {
                        Ok(sibling) => sibling,
                        Err(e) => {
                            waiting.instance = Some((handle, slot));
                            return Err(e);
                        }
                    },
                };
                let w = &mut *waiting;
                let first = w.sibling_first;
                let connected = if first {
                    sys::connect_either(
                        [sibling.as_handle(), handle.as_handle()],
                        [&w.sibling_event, &w.event],
                    )
                    .map(|[s, p]| [p, s])
                } else {
                    sys::connect_either(
                        [handle.as_handle(), sibling.as_handle()],
                        [&w.event, &w.sibling_event],
                    )
                };
                let connected = match connected {
                    Ok(connected) => connected,
                    Err(e) => return Err(self.cannot_wait(e)),
                };
                // Both had a client: this one now, the other at the next call.
                let on_sibling = connected[1] && (first || !connected[0]);
                w.sibling_first = !on_sibling;
                if on_sibling {
                    // The plain instance waits on, without a place (the next call takes one).
                    w.instance = Some((handle, None));
                    // If making the next fails now, the next accept makes it.
                    w.sibling = self.create_sibling(path).ok();
                    drop(waiting);
                    return self.offer(sibling, slot);
                }
                w.sibling = Some(sibling);
            }
        }
        // The next client must find an instance. If making it fails now (or the limit is
        // reached), the next accept makes it.
        let next_slot = match &self.slots {
            None => None,
            Some(slots) => slots.try_acquire(),
        };
        if (self.slots.is_none() || next_slot.is_some())
            && let Ok(next) = self.create_instance()
        {
            waiting.instance = Some((next, next_slot));
        }
        drop(waiting);
        Stream::new(
            handle,
            PipeEnd::Server,
            self.mode,
            self.max_message_size,
            slot,
        )
    }

    /// Makes the stream of a client of the sibling name, and writes the offer (or, if this
    /// server may not wait on the client's process, or cannot make the segment, the refusal).
    fn offer(&self, handle: OwnedHandle, slot: Option<Slot>) -> io::Result<Stream> {
        let capacity = self.shared_memory.as_ref().map_or(0, |(c, _)| *c);
        let offered = crate::shm::open_peer(&handle, true)
            .and_then(|peer| crate::shm::offer(peer, capacity).ok());
        let (channel, first) = match offered {
            Some((channel, first)) => (Some(channel), first),
            None => (None, crate::shm::plain()),
        };
        let mut stream = Stream::new(
            handle,
            PipeEnd::Server,
            self.mode,
            self.max_message_size,
            slot,
        )?;
        stream.set_link(crate::shm::Link::server(channel));
        stream.write_first(&first);
        Ok(stream)
    }

    fn create_sibling(&self, path: &[u16]) -> io::Result<OwnedHandle> {
        sys::create_pipe(path, false, &self.config, Some(&self.security)).map_err(|e| {
            context(
                e,
                format!(
                    "cannot create an instance of {}{}",
                    self.full_name(),
                    crate::shm::SIBLING
                ),
            )
        })
    }

    fn cannot_wait(&self, e: io::Error) -> io::Error {
        context(
            e,
            format!("cannot wait for a client on {}", self.full_name()),
        )
    }

    /// Closes the sibling name, for the non-blocking listener (which serves the pipe only).
    pub(crate) fn stop_offering(&mut self) {
        self.shared_memory = None;
        let waiting = self.waiting.get_mut().unwrap_or_else(|e| e.into_inner());
        waiting.sibling = None;
    }

    /// The waiting instance, or a new one (for the non-blocking listener). `None` when the
    /// instance limit is reached; `waker` is then woken when a place is given back.
    pub(crate) fn take_instance(
        &self,
        waker: Option<&std::task::Waker>,
    ) -> io::Result<Option<(OwnedHandle, Option<Slot>)>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(instance) = waiting.instance.take() {
            return Ok(Some(instance));
        }
        let slot = match &self.slots {
            None => None,
            Some(slots) => match slots.try_acquire_or_wake(waker) {
                Some(slot) => Some(slot),
                None => return Ok(None),
            },
        };
        Ok(Some((self.create_instance()?, slot)))
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn create_instance(&self) -> io::Result<OwnedHandle> {
        sys::create_pipe(&self.path, false, &self.config, Some(&self.security)).map_err(|e| {
            context(
                e,
                format!("cannot create an instance of {}", self.full_name()),
            )
        })
    }

    fn full_name(&self) -> String {
        String::from_utf16_lossy(&self.path[..self.path.len() - 1])
    }

    /// The mode of every connection this listener accepts.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The name this listener serves.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// The pipe's full path, `\\.\pipe\<name>`.
    pub fn pipe_path(&self) -> String {
        self.full_name()
    }
}

impl pipekit_core::Listener for Listener {
    type Stream = Stream;

    fn accept(&self) -> io::Result<Stream> {
        Listener::accept(self)
    }

    fn mode(&self) -> Mode {
        self.mode
    }
}

/// The default descriptor: full access for SYSTEM, Administrators and this user only.
pub(crate) fn owner_only() -> io::Result<SecurityDescriptor> {
    let user =
        sys::current_user_sid().map_err(|e| context(e, "cannot find the current user's SID"))?;
    SecurityDescriptor::from_sddl(&format!("D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{user})"))
        .map_err(|e| context(e, "cannot build the owner-only security descriptor"))
}
