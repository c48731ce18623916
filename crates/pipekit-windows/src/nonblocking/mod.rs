//! Named pipes driven without blocking, for event loops: a [`Listener`] whose `accept` and a
//! message-mode [`Stream`] whose `recv` and `send` return `WouldBlock` instead of waiting,
//! with `poll_*` forms for async runtimes and (feature `mio`) `mio::event::Source`.
//!
//! # Why not `mio::windows::NamedPipe` for messages
//!
//! mio's pipe reads through an internal buffer that starts at 4 KiB: a longer message comes
//! out in pieces and its boundaries are lost. This module keeps them: every read is an
//! overlapped `ReadFile` into a buffer owned by the stream; when the message goes on
//! (`ERROR_MORE_DATA`) it asks the pipe how much is left (`PeekNamedPipe`) and reads the rest
//! before it calls the message ready, so a message is handed out whole, or reported with its
//! full size if the caller's buffer is too small (it then stays readable), exactly as the
//! blocking API does.
//!
//! # How completions are noticed
//!
//! No I/O completion port is involved, so the handles stay free for anyone to adopt later
//! (byte mode goes to `mio::windows::NamedPipe` or Tokio's pipe types). Each operation has an
//! event; a thread-pool wait (`CreateThreadpoolWait`) runs a short callback when it is
//! signalled, which records the result, goes on with a message that is not complete yet, and
//! wakes whoever waits: the task's `Waker`, or, for mio, a `mio::Waker` made with
//! the stream's token. An operation that completes at once (the usual case when data is
//! waiting) is finished inline, with no thread involved.
//!
//! # Memory safety, and what a drop does
//!
//! An operation in flight owns what the kernel may write: its `OVERLAPPED`, its event and
//! its buffer, which stay alive until the kernel is done with them, whatever the stream does
//! meanwhile (the thread-pool wait holds a reference until the operation's end is
//! collected). A drop never waits for the thread pool, so dropping a stream anywhere (also
//! from inside a waker the pool runs) cannot deadlock. Dropping a stream cancels its
//! read-ahead; a message accepted by `try_send` and still being written goes on being written
//! for up to [`Stream::set_linger`] (10 s by default), then it is cancelled, so a peer that
//! never reads cannot hold the pipe instance (and its place under the instance limit)
//! forever.
//!
//! An operation the OS cancels because the thread that started it exited (Windows cancels
//! such I/O on handles without a completion port) is started again: it is neither an error
//! nor the end of a message.
//!
//! A stream keeps one read in flight (the message after the one handed out is read ahead),
//! so the stream's readiness is always armed. A send copies the message and is accepted
//! while no earlier send is in flight; it is written even if the stream is dropped right
//! after (the pipe instance lives until the write ends).
//!
//! Byte mode is not served here beyond accepting: hand an accepted byte-mode stream to
//! `mio::windows::NamedPipe` or Tokio with [`Stream::into_parts`].
//!
//! # Examples
//!
//! Without an event loop, to show the calls (with mio, register the listener and the streams
//! and call these after each event until `WouldBlock`):
//!
//! ```
//! use std::io::ErrorKind;
//! use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PipeName};
//! use pipekit_windows::{nonblocking, Listener, Stream, WindowsOptions};
//! # let name = PipeName::new(&format!("doc-nb-{}", std::process::id()))?;
//!
//! let mut options = ListenerOptions::new();
//! options.mode(Mode::Messages);
//! let listener = nonblocking::Listener::new(Listener::bind_with(&name, &options, &WindowsOptions::new())?)?;
//! assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
//!
//! let mut client = Stream::connect_with(&name, ConnectOptions::new().mode(Mode::Messages))?;
//! let mut server = loop {
//!     match listener.accept() {
//!         Ok(stream) => break stream,
//!         Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
//!         Err(e) => return Err(e),
//!     }
//! };
//! assert_eq!(server.try_recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::WouldBlock);
//! client.send(&[7u8; 10_000])?;
//! let mut msg = Vec::new();
//! while let Err(e) = server.try_recv_to_vec(&mut msg) {
//!     assert_eq!(e.kind(), ErrorKind::WouldBlock);
//!     std::thread::yield_now();
//! }
//! assert_eq!(msg.len(), 10_000); // whole, not cut at 4 KiB
//! server.try_send(b"thanks")?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod conn;
mod listener;
pub(crate) mod signal;
mod stream;

pub use listener::Listener;
pub use stream::Stream;
