//! Windows transports: pipekit over named pipes, and the raw named-pipe calls beneath it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use pipekit::Mode;

use crate::transport::{Conn, Listen, Transport};
use crate::transports::pipekit::{self as pk, Api};

/// pipekit over a Windows named pipe.
pub(crate) struct Pipekit {
    name: &'static str,
    about: &'static str,
    mode: Mode,
    baseline: &'static str,
}

pub(crate) static PIPEKIT: [Pipekit; 2] = [
    Pipekit {
        name: "pipekit-pipe-bytes",
        about: "pipekit byte mode on a named pipe",
        mode: Mode::Bytes,
        baseline: "raw-named-pipe-bytes",
    },
    Pipekit {
        name: "pipekit-pipe-messages",
        about: "pipekit message mode on a message-type named pipe",
        mode: Mode::Messages,
        baseline: "raw-named-pipe-messages",
    },
];

impl Transport for Pipekit {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(self.baseline)
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (options, _) = pk::options(self.mode, size);
        let listener = pipekit::Listener::bind_with(addr, &options)?;
        Ok(pk::listen(listener, addr, Api::Blocking))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, options) = pk::options(self.mode, size);
        Ok(pk::conn(pipekit::Stream::connect_with(addr, &options)?))
    }
}

/// pipekit message mode over shared memory: the listener offers two rings on its sibling
/// pipe, the client takes them (blocking streams; events for wake-ups).
pub(crate) struct PipekitShm {
    name: &'static str,
    about: &'static str,
    api: Api,
}

pub(crate) static PIPEKIT_SHM: [PipekitShm; 2] = [
    PipekitShm {
        name: "pipekit-shm",
        about: "pipekit message mode over shared memory (two rings, events for wake-ups)",
        api: Api::Blocking,
    },
    PipekitShm {
        name: "pipekit-shm-zc",
        about: "pipekit-shm with send_with (written in place) and recv_with (read in place)",
        api: Api::ZeroCopy,
    },
];

impl Transport for PipekitShm {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn baseline(&self) -> Option<&'static str> {
        Some("raw-named-pipe-messages")
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (mut options, _) = pk::options(Mode::Messages, size);
        options.shared_memory(Some(pk::shm_capacity(size)));
        let listener = pipekit::Listener::bind_with(addr, &options)?;
        Ok(pk::listen(listener, addr, self.api))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, mut options) = pk::options(Mode::Messages, size);
        options.shared_memory(true);
        let stream = pipekit::Stream::connect_with(addr, &options)?;
        match self.api {
            Api::ZeroCopy => Ok(pk::zero_copy(stream)),
            _ => Ok(pk::conn(stream)),
        }
    }
}

/// pipekit's Tokio API over a message-mode pipe, each end on its own current-thread
/// runtime: what the async layer costs over the blocking API.
pub(crate) struct PipekitTokio;

pub(crate) static TOKIO: PipekitTokio = PipekitTokio;

impl Transport for PipekitTokio {
    fn name(&self) -> &'static str {
        "pipekit-pipe-messages-tokio"
    }

    fn about(&self) -> &'static str {
        "pipekit's Tokio API, message mode on a named pipe"
    }

    fn baseline(&self) -> Option<&'static str> {
        Some("pipekit-pipe-messages")
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (options, _) = pk::options(Mode::Messages, size);
        let listener = pipekit::Listener::bind_with(addr, &options)?;
        Ok(pk::listen(listener, addr, Api::Tokio))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let (_, options) = pk::options(Mode::Messages, size);
        pk::TokioConn::boxed(pipekit::Stream::connect_with(addr, &options)?)
    }
}

/// The raw named pipe: `CreateNamedPipeW` (64 KiB buffers each way, remote clients refused,
/// as pipekit's), `ConnectNamedPipe`, a client by `CreateFileW`, then blocking
/// `ReadFile`/`WriteFile`.
pub(crate) struct RawNamedPipe {
    messages: bool,
}

pub(crate) static RAW: [RawNamedPipe; 2] = [
    RawNamedPipe { messages: false },
    RawNamedPipe { messages: true },
];

fn pipe_path(addr: &str) -> String {
    format!(r"\\.\pipe\{addr}")
}

impl Transport for RawNamedPipe {
    fn name(&self) -> &'static str {
        if self.messages {
            "raw-named-pipe-messages"
        } else {
            "raw-named-pipe-bytes"
        }
    }

    fn about(&self) -> &'static str {
        if self.messages {
            "CreateNamedPipeW message type and read mode, ReadFile/WriteFile"
        } else {
            "CreateNamedPipeW byte type, ReadFile/WriteFile"
        }
    }

    fn addr(&self, unique: &str) -> String {
        unique.to_string()
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let path = pipe_path(addr);
        let next = sys::create(&path, self.messages, true)?;
        struct L {
            addr: String,
            path: String,
            messages: bool,
            next: OwnedHandle,
        }
        impl Listen for L {
            fn addr(&self) -> String {
                self.addr.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                sys::connect(&self.next)?;
                // The next instance exists before this one is handed out, so a client never
                // finds no pipe by this name.
                let next = sys::create(&self.path, self.messages, false)?;
                let handle = std::mem::replace(&mut self.next, next);
                Ok(RawNamedPipe::conn(handle, self.messages))
            }
        }
        Ok(Box::new(L {
            addr: addr.to_string(),
            path,
            messages: self.messages,
            next,
        }))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let handle = sys::open(&pipe_path(addr))?;
        if self.messages {
            sys::read_messages(&handle)?;
        }
        Ok(RawNamedPipe::conn(handle, self.messages))
    }
}

impl RawNamedPipe {
    fn conn(handle: OwnedHandle, messages: bool) -> Box<dyn Conn> {
        let file = File::from(handle);
        if messages {
            Box::new(PipeMessages(file))
        } else {
            Box::new(PipeBytes(file))
        }
    }
}

struct PipeBytes(File);

impl Conn for PipeBytes {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }

    fn settings(&self) -> String {
        String::from("in/out buffers 65536")
    }
}

/// One `WriteFile` per message; one `ReadFile` per message (a message larger than the
/// buffer fails with `ERROR_MORE_DATA`).
struct PipeMessages(File);

impl Conn for PipeMessages {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        let n = self.0.write(buf)?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("WriteFile took {n} of a {}-byte message", buf.len()),
            ));
        }
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if n != buf.len() {
            return Err(pk::wrong_length(buf.len(), n));
        }
        Ok(())
    }

    fn settings(&self) -> String {
        String::from("in/out buffers 65536, message mode")
    }
}

/// The named-pipe calls (`windows-sys`).
#[allow(unsafe_code)]
mod sys {
    use super::*;
    use windows_sys::Win32::Foundation::{
        ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, OPEN_EXISTING, PIPE_ACCESS_DUPLEX,
    };
    use windows_sys::Win32::System::Pipes::{
        ConnectNamedPipe, CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_READMODE_MESSAGE,
        PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES,
        PIPE_WAIT, SetNamedPipeHandleState, WaitNamedPipeW,
    };

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(Some(0)).collect()
    }

    /// A new server instance of the pipe at `path`.
    pub(super) fn create(path: &str, messages: bool, first: bool) -> io::Result<OwnedHandle> {
        let kind = if messages {
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE
        } else {
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE
        };
        let first = if first {
            FILE_FLAG_FIRST_PIPE_INSTANCE
        } else {
            0
        };
        let path = wide(path);
        // SAFETY: `path` is a NUL-terminated UTF-16 string that outlives the call; a null
        // security attributes pointer means the default descriptor.
        let handle = unsafe {
            CreateNamedPipeW(
                path.as_ptr(),
                PIPE_ACCESS_DUPLEX | first,
                kind | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                PIPE_UNLIMITED_INSTANCES,
                65536,
                65536,
                0,
                std::ptr::null(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new handle that nothing else owns.
        Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
    }

    /// Waits for a client on the instance `pipe`.
    pub(super) fn connect(pipe: &OwnedHandle) -> io::Result<()> {
        // SAFETY: a valid pipe handle; no OVERLAPPED (the handle is synchronous).
        if unsafe { ConnectNamedPipe(pipe.as_raw_handle(), std::ptr::null_mut()) } != 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED as i32) {
            return Ok(());
        }
        Err(e)
    }

    /// Opens the pipe at `path` as a client, waiting while every instance is busy.
    pub(super) fn open(path: &str) -> io::Result<OwnedHandle> {
        let wide_path = wide(path);
        loop {
            // SAFETY: a NUL-terminated path; no security attributes or template.
            let handle = unsafe {
                CreateFileW(
                    wide_path.as_ptr(),
                    GENERIC_READ | GENERIC_WRITE,
                    0,
                    std::ptr::null(),
                    OPEN_EXISTING,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if handle != INVALID_HANDLE_VALUE {
                // SAFETY: a new handle that nothing else owns.
                return Ok(unsafe { OwnedHandle::from_raw_handle(handle) });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(ERROR_PIPE_BUSY as i32) {
                return Err(e);
            }
            // SAFETY: a NUL-terminated path.
            if unsafe { WaitNamedPipeW(wide_path.as_ptr(), 5000) } == 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }

    /// Switches a client handle to message read mode.
    pub(super) fn read_messages(pipe: &OwnedHandle) -> io::Result<()> {
        let mode = PIPE_READMODE_MESSAGE;
        // SAFETY: a valid pipe handle and a mode that lives across the call.
        let ok = unsafe {
            SetNamedPipeHandleState(
                pipe.as_raw_handle(),
                &mode,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
