//! What pipekit's errors carry besides their `io::ErrorKind`.
//!
//! Every error is an `io::Error`. Its message says what failed, naming the pipe, path or size;
//! the OS error it came from, when there is one, is its [`source()`](std::error::Error::source),
//! with the OS code kept ([`os_code`] finds it). A message too large for a `recv` buffer
//! carries a [`MessageTooLarge`] with the sizes.

pub use pipekit_core::error::{Chain, MessageTooLarge, os_code};
