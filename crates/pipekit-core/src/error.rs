//! Error helpers shared by every backend.
//!
//! pipekit reports every failure as an [`io::Error`]. Where it adds context (the pipe name, a
//! size), the original error stays reachable: [`io::Error::kind`] is unchanged and
//! [`std::error::Error::source`] returns the OS error, whose code [`os_code`] digs out.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// A message did not fit the buffer given to `recv`; the message is still there to be read.
///
/// Carried inside an [`io::Error`] of kind [`io::ErrorKind::InvalidInput`]; get at it with
/// [`MessageTooLarge::from_io`]. Call `recv` again with a buffer of at least
/// [`size`](Self::size) bytes, or use `recv_to_vec`, to take the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageTooLarge {
    /// The whole message's length in bytes.
    pub size: usize,
    /// The length of the buffer that was given.
    pub buffer_len: usize,
}

impl MessageTooLarge {
    /// Builds the `io::Error` that reports a message of `size` bytes against a buffer of
    /// `buffer_len` bytes.
    pub fn error(size: usize, buffer_len: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            MessageTooLarge { size, buffer_len },
        )
    }

    /// Returns the report inside `err`, if `err` is one.
    pub fn from_io(err: &io::Error) -> Option<&MessageTooLarge> {
        err.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for MessageTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message of {} bytes does not fit the {}-byte buffer; it is still readable \
             (recv again with a larger buffer or use recv_to_vec)",
            self.size, self.buffer_len
        )
    }
}

impl StdError for MessageTooLarge {}

/// An error that says what failed, caused by another error.
///
/// Its `Display` is the message alone and the cause is its `source()`, as in every chain of
/// errors: a printer of the chain (`anyhow`'s `{:#}`, a loop over `source()`) shows each
/// cause once.
#[derive(Debug)]
struct Context {
    message: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Context {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// Shows an error with each of its causes, joined by `": "` — what `anyhow`'s `{:#}` prints.
///
/// pipekit's errors say what failed and leave the cause to `source()` (so that chain printers
/// show each cause once); `Chain` is for printing one without such a printer.
///
/// # Examples
///
/// ```
/// use std::io;
/// use pipekit_core::error::{Chain, context};
///
/// let err = context(io::Error::new(io::ErrorKind::NotFound, "no such file"), "cannot open /run/x");
/// assert_eq!(err.to_string(), "cannot open /run/x");
/// assert_eq!(Chain(&err).to_string(), "cannot open /run/x: no such file");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// Says what failed: an error whose message is `message`, with `err`'s kind, and `err` itself
/// (with its OS code) as its `source()`.
///
/// # Examples
///
/// ```
/// use std::error::Error;
/// use std::io;
/// use pipekit_core::error::{context, os_code};
///
/// let err = context(io::Error::from_raw_os_error(2), "cannot open /run/x");
/// assert_eq!(err.kind(), io::ErrorKind::NotFound);
/// assert_eq!(os_code(&err), Some(2));
/// assert_eq!(err.to_string(), "cannot open /run/x");
/// let cause = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
/// assert_eq!(cause.raw_os_error(), Some(2));
/// ```
pub fn context(err: io::Error, message: impl Into<String>) -> io::Error {
    context_kind(err.kind(), err, message)
}

/// Like [`context`], but reports `kind` instead of the original error's kind.
pub fn context_kind(kind: io::ErrorKind, err: io::Error, message: impl Into<String>) -> io::Error {
    io::Error::new(
        kind,
        Context {
            message: message.into(),
            source: err,
        },
    )
}

/// The OS error code of `err`, looking through the context pipekit adds.
pub fn os_code(err: &io::Error) -> Option<i32> {
    if let Some(code) = err.raw_os_error() {
        return Some(code);
    }
    let mut cur: Option<&(dyn StdError + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(e) = cur {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = e.source();
    }
    None
}

/// The peer closed the connection `so_far` bytes into a message (of `len` bytes, when the
/// length is known): `UnexpectedEof`, the same error on every OS and transport.
pub fn closed_mid_message(so_far: usize, len: Option<usize>) -> io::Error {
    let of = len.map_or_else(String::new, |len| format!(" of {len}"));
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the peer closed the connection {so_far} bytes into a message{of}"),
    )
}

/// An [`io::ErrorKind::InvalidInput`] error with `message`.
pub fn invalid_input(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// An [`io::ErrorKind::InvalidData`] error with `message`: the peer broke the protocol.
pub fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The error for a `send` of `len` bytes when at most `max` are allowed. Nothing was sent.
pub fn message_over_limit(len: usize, max: usize) -> io::Error {
    invalid_input(format!(
        "message of {len} bytes exceeds the maximum message size of {max} bytes; nothing was sent"
    ))
}

/// The error for a received message of `size` bytes over the maximum of `max` bytes, which was
/// read and thrown away.
pub fn message_discarded(size: usize, max: usize) -> io::Error {
    invalid_data(format!(
        "peer sent a message of {size} bytes, above the maximum message size of {max} bytes; \
         it was discarded"
    ))
}

/// The error for calling a message operation on a byte-mode connection, or the reverse.
pub fn wrong_mode(operation: &str, mode: crate::Mode) -> io::Error {
    invalid_input(format!(
        "{operation} is not available on a {mode}-mode connection"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_too_large_round_trips() {
        let err = MessageTooLarge::error(70000, 4096);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let report = MessageTooLarge::from_io(&err).unwrap();
        assert_eq!((report.size, report.buffer_len), (70000, 4096));
        assert!(err.to_string().contains("70000 bytes"));
        assert!(MessageTooLarge::from_io(&invalid_input("x")).is_none());
    }

    #[test]
    fn context_keeps_kind_and_code() {
        // EACCES; ERROR_ACCESS_DENIED on Windows.
        let denied = if cfg!(windows) { 5 } else { 13 };
        let err = context(io::Error::from_raw_os_error(denied), "bind /x");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(os_code(&err), Some(denied));
        let twice = context(err, "listen on \"x\"");
        assert_eq!(os_code(&twice), Some(denied));
        // Each error says its own part; the chain says each cause once.
        assert_eq!(twice.to_string(), "listen on \"x\"");
        let mut chain = vec![twice.to_string()];
        let mut cause = std::error::Error::source(&twice);
        while let Some(e) = cause {
            chain.push(e.to_string());
            cause = e.source();
        }
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert_eq!(chain[1], "bind /x");
        assert_eq!(chain[2], io::Error::from_raw_os_error(denied).to_string());
    }
}
