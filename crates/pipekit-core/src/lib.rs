//! The OS-free core of [pipekit]: pipe names and how they resolve, modes, option builders, the
//! traits every transport implements, and the length-prefixed framing codec.
//!
//! Application code normally uses the `pipekit` facade crate, which re-exports the public items
//! of this crate next to the platform's `Listener` and `Stream`. Backends (`pipekit-unix`,
//! `pipekit-windows`) depend on this crate and implement its traits, so a program — and the
//! shared behaviour suite in `testing` (feature `testing`) — can drive every transport the
//! same way.
//!
//! Nothing in this crate touches the operating system: name resolution takes its inputs (the
//! runtime directory, the user id, the `sun_path` limit) from the caller, which makes the rules
//! testable on any host.
//!
//! [pipekit]: https://docs.rs/pipekit
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see Cargo.toml): OS- and feature-gated items get badges.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod error;
pub mod framing;
mod mode;
mod name;
pub mod net;
mod options;
mod peer;
pub mod ring;
pub mod slots;
#[cfg(feature = "testing")]
pub mod testing;
mod traits;

pub use error::MessageTooLarge;
pub use mode::Mode;
pub use name::{
    IntoPipeName, NameForm, NetAddress, PipeName, UnixAddress, UnixEnv, dotnet_temp_path,
};
pub use options::{
    ConnectOptions, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_TIMEOUT,
    ListenerOptions, MAX_SHARED_MEMORY, MIN_SHARED_MEMORY, SHARED_MEMORY_OVERHEAD,
};
pub use peer::PeerCredentials;
pub use traits::{ByteStream, Connection, Listener, MessagePipe};
