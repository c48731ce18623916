use std::fmt;

/// How a connection carries data. The server chooses; a client must ask for the same mode.
///
/// # Platform-specific behavior
///
/// | mode | Windows | Linux, Android | macOS, FreeBSD, other Unix |
/// |---|---|---|---|
/// | `Bytes` | `PIPE_TYPE_BYTE` | `SOCK_STREAM` | `SOCK_STREAM` |
/// | `Messages` | `PIPE_TYPE_MESSAGE` + `PIPE_READMODE_MESSAGE` | `SOCK_SEQPACKET` | `SOCK_STREAM` + [framing](crate::framing) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// A byte stream: `Read + Write`, writes may merge and split.
    #[default]
    Bytes,
    /// A message pipe: each `send` arrives as exactly one `recv`, boundaries kept.
    Messages,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Bytes => "bytes",
            Mode::Messages => "messages",
        })
    }
}

/// Parses `bytes` or `messages` (also `byte`, `message`, any case), as [`Mode`]'s `Display`
/// writes them.
///
/// # Examples
///
/// ```
/// use pipekit_core::Mode;
///
/// assert_eq!("messages".parse::<Mode>()?, Mode::Messages);
/// assert_eq!(Mode::Bytes.to_string().parse::<Mode>()?, Mode::Bytes);
/// assert!("datagrams".parse::<Mode>().is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
impl std::str::FromStr for Mode {
    type Err = std::io::Error;

    fn from_str(text: &str) -> std::io::Result<Mode> {
        match text.to_ascii_lowercase().as_str() {
            "bytes" | "byte" => Ok(Mode::Bytes),
            "messages" | "message" => Ok(Mode::Messages),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{text:?} is not a mode (expected bytes or messages)"),
            )),
        }
    }
}
