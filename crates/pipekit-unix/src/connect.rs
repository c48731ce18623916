//! The client's side of finding a server: what the name resolves to, which transport the
//! server speaks there (a FIFO server directory, or a socket), and the wait policy while it
//! is absent or busy.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::thread;
use std::time::Instant;

use pipekit_core::backoff::Backoff;
use pipekit_core::error::context_kind;
use pipekit_core::{ConnectOptions, Mode, NameForm, PipeName, UnixAddress};

use crate::fifo::FifoStream;
use crate::stream::SocketStream;
use crate::{UnixOptions, dir};

/// A new connection, over the transport the server uses.
pub(crate) enum Connected {
    /// A Unix-domain socket.
    Socket(SocketStream),
    /// A FIFO server's pair of FIFOs.
    Fifo(FifoStream),
}

/// .NET pipes on Unix are byte streams only: refuse message mode for the .NET dialect.
pub(crate) fn dotnet_is_bytes(name: &PipeName, mode: Mode) -> io::Result<()> {
    if name.form() == NameForm::Dotnet && mode == Mode::Messages {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name}: .NET pipes on Unix are byte streams (.NET has no message mode there); \
                 use byte mode with the .NET dialect"
            ),
        ));
    }
    Ok(())
}

/// Connects to `name` (see `Stream::connect_with`): attempts until one succeeds, the error
/// is not "absent" or "busy", or the wait is over.
pub(crate) fn connect(
    name: &PipeName,
    options: &ConnectOptions,
    unix: &UnixOptions,
) -> io::Result<Connected> {
    options.validate()?;
    dotnet_is_bytes(name, options.mode)?;
    let addr = name.resolve_unix(&dir::env())?;
    let deadline = options.wait.map(|wait| Instant::now() + wait);
    let mut backoff = deadline.map(Backoff::until);
    loop {
        let err = match connect_once(name, &addr, options, unix, deadline) {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        let retry = matches!(
            err.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::WouldBlock
        );
        let Some(backoff) = backoff.as_mut().filter(|_| retry) else {
            return Err(err);
        };
        if let Some(pause) = backoff.next_pause() {
            thread::sleep(pause);
        } else {
            let wait = options.wait.unwrap_or_default();
            let why = if err.kind() == io::ErrorKind::WouldBlock {
                format!("the server of {name} stayed busy for the whole wait of {wait:?}")
            } else {
                format!("no server accepted on {name} within {wait:?}")
            };
            return Err(context_kind(io::ErrorKind::TimedOut, err, why));
        }
    }
}

/// One attempt: a directory at the path is a FIFO server, anything else is tried as a
/// socket.
fn connect_once(
    name: &PipeName,
    addr: &UnixAddress,
    options: &ConnectOptions,
    unix: &UnixOptions,
    deadline: Option<Instant>,
) -> io::Result<Connected> {
    if let UnixAddress::Path { path, private_dir } = addr {
        if let Some(dir) = private_dir {
            // Never connect through a per-user directory someone else controls.
            dir::check_private_dir(dir).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => context_kind(
                    io::ErrorKind::NotFound,
                    e,
                    format!("no server is listening on {name} ({})", path.display()),
                ),
                _ => e,
            })?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let fifo = FifoStream::connect_dir(path, &name.to_string(), options)?;
                return Ok(Connected::Fifo(fifo));
            }
            Ok(meta) if meta.file_type().is_fifo() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a one-way FIFO; write to it with fifo::Sender",
                        path.display()
                    ),
                ));
            }
            _ => {}
        }
    }
    let socket = SocketStream::connect_once(name, addr, options, unix, deadline)?;
    Ok(Connected::Socket(socket))
}
