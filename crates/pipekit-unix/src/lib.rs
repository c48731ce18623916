//! The Unix backend of [pipekit]: named pipes as Unix-domain sockets.
//!
//! A [`Listener`] binds a [`PipeName`](pipekit_core::PipeName) and accepts [`Stream`]s; a
//! client makes a `Stream` with [`Stream::connect`]. Applications normally use the `pipekit`
//! facade, which re-exports these types on Unix.
//!
//! # Transports
//!
//! | mode | Linux, Android | macOS, FreeBSD, other Unix |
//! |---|---|---|
//! | bytes | `SOCK_STREAM` | `SOCK_STREAM` |
//! | messages | `SOCK_SEQPACKET` | `SOCK_STREAM` + [length-prefixed framing](pipekit_core::framing) |
//!
//! Both ends of a connection are on the same machine and so agree on the transport; a
//! client whose mode differs from the server's gets an `InvalidInput` error (the socket types
//! differ), never a silent change of semantics. [`UnixOptions::framing`] selects the framed
//! transport on Linux too (both ends must ask for it).
//!
//! The [`fifo`] transport serves the same model over FIFOs (select it with
//! [`UnixOptions::transport`]); a client connects to either without being told which.
//!
//! On Linux, `SO_PASSCRED` is set on message-mode sockets: each message then carries the
//! sender's credentials, which is how a zero-length message is told from end of stream.
//!
//! # Signals
//!
//! Writing to a peer that is gone returns `BrokenPipe`; no `SIGPIPE` is raised
//! (`MSG_NOSIGNAL`, or `SO_NOSIGPIPE` on Apple systems).
//!
//! [pipekit]: https://docs.rs/pipekit
//!
//! On other OSes this crate is empty: its documentation is built for a Unix target.
// Elsewhere the crate is empty, so the links above have nothing to point to.
#![cfg_attr(not(unix), allow(rustdoc::broken_intra_doc_links))]
#![cfg(unix)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see Cargo.toml): OS- and feature-gated items get badges.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod any;
mod busy;
mod connect;
mod dir;
pub mod fifo;
mod listener;
#[cfg(feature = "mio")]
mod mio;
mod options;
mod shm;
mod stream;
#[allow(unsafe_code)]
mod sys;
// Registering descriptors with Tokio's reactor is `unsafe`; this module keeps that promise.
#[cfg(feature = "tokio")]
#[allow(unsafe_code)]
pub mod tokio;

pub use any::{Listener, Stream};
pub use dir::{check_private_dir, ensure_private_dir, env};
pub use options::{Framing, PeerPolicy, Transport, UnixOptions};

/// Whether this OS carries message mode on `SOCK_SEQPACKET` (Linux, Android) rather than on
/// framed `SOCK_STREAM`.
pub const NATIVE_MESSAGES: bool = sys::NATIVE_MESSAGES;
