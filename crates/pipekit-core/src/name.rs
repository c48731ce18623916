use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::invalid_input;

/// The longest Windows pipe path, in UTF-16 units (`\\.\pipe\` included).
const WINDOWS_MAX_PATH: usize = 256;

/// The name a server binds and clients connect to.
///
/// A `PipeName` is one of these forms:
///
/// | form | made with | parsed from | Unix | Windows |
/// |---|---|---|---|---|
/// | portable | [`new`](Self::new) | `test_pipe` | `<private dir>/test_pipe` | `\\.\pipe\test_pipe` |
/// | path | [`path`](Self::path) | anything with a `/` | the path as given | error |
/// | Windows | [`windows`](Self::windows) | `\\server\pipe\name` | error | as given |
/// | abstract | [`abstract_name`](Self::abstract_name) | `@name` | Linux abstract socket | error |
/// | .NET | [`dotnet`](Self::dotnet) | `dotnet:name` | `$TMPDIR/CoreFxPipe_name` | `\\.\pipe\name` |
/// | TCP | [`tcp`](Self::tcp) | `tcp://host:port` | a TCP socket | a TCP socket |
/// | TLS | [`tls`](Self::tls) | `tls://host:port` | TLS over TCP | TLS over TCP |
///
/// The network forms ([`NetAddress`]) are not resolved here: the `pipekit` facade serves
/// them over TCP, in message mode with the [length-prefixed framing](crate::framing).
///
/// The *private directory* of a portable name is `$XDG_RUNTIME_DIR/pipekit/` when
/// `XDG_RUNTIME_DIR` is set, absolute, owned by the user and not writable by others, and
/// `$TMPDIR/pipekit-<uid>/` (`/tmp` when `TMPDIR` is unset) otherwise. The backend creates it
/// with mode 0700 and refuses to use it if it is a symlink, is owned by someone else, or is
/// open to others. See [`UnixEnv`] and [`resolve_unix`](Self::resolve_unix).
///
/// # Errors
///
/// Constructors return [`io::ErrorKind::InvalidInput`] for an empty name, a NUL byte, a path
/// separator (`/` or `\`) in a portable name, `.` or `..`, or a malformed Windows pipe path.
/// Resolution reports a path longer than the OS's `sun_path` limit, naming both lengths.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use pipekit_core::{PipeName, UnixAddress, UnixEnv};
///
/// let name = PipeName::new("test_pipe")?;
/// assert_eq!(name.resolve_windows()?, r"\\.\pipe\test_pipe");
///
/// let env = UnixEnv::new(1000, "/tmp");
/// match name.resolve_unix(&env)? {
///     UnixAddress::Path { path, .. } => assert_eq!(path, Path::new("/tmp/pipekit-1000/test_pipe")),
///     other => unreachable!("{other:?}"),
/// }
///
/// assert!(PipeName::new("a/b").is_err());
/// assert_eq!(PipeName::parse("/run/app.sock")?.to_string(), "/run/app.sock");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipeName {
    repr: Repr,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Repr {
    Portable(String),
    Path(PathBuf),
    Windows(String),
    Abstract(Vec<u8>),
    Dotnet(String),
    Net(NetAddress),
}

/// Which form a [`PipeName`] has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameForm {
    /// A portable name, resolved per OS.
    Portable,
    /// An explicit filesystem path (Unix).
    Path,
    /// A raw Windows pipe path, `\\server\pipe\name`.
    Windows,
    /// A name in the Linux abstract socket namespace.
    Abstract,
    /// A .NET `System.IO.Pipes` pipe name, resolved as .NET does.
    Dotnet,
    /// A TCP address, `tcp://host:port`.
    Tcp,
    /// A TLS-over-TCP address, `tls://host:port`.
    Tls,
}

impl PipeName {
    /// A portable name such as `"test_pipe"`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `name` is empty, `.` or `..`, or holds a NUL byte, `/` or `\`.
    pub fn new(name: &str) -> io::Result<PipeName> {
        if name.is_empty() {
            return Err(invalid_input("pipe name is empty"));
        }
        if name == "." || name == ".." {
            return Err(invalid_input(format!("pipe name {name:?} is not allowed")));
        }
        if let Some(c) = name.chars().find(|c| matches!(c, '\0' | '/' | '\\')) {
            let what = if c == '\0' {
                "a NUL byte"
            } else {
                "a path separator"
            };
            return Err(invalid_input(format!(
                "pipe name {name:?} contains {what} ({c:?}); a portable name is one path component \
                 (use PipeName::path for a filesystem path)"
            )));
        }
        Ok(PipeName {
            repr: Repr::Portable(name.to_owned()),
        })
    }

    /// An explicit filesystem path for a Unix socket (or FIFO directory), used as given.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `path` is empty or holds a NUL byte.
    pub fn path(path: impl Into<PathBuf>) -> io::Result<PipeName> {
        let path = path.into();
        let bytes = path.as_os_str().as_encoded_bytes();
        if bytes.is_empty() {
            return Err(invalid_input("pipe path is empty"));
        }
        if bytes.contains(&0) {
            return Err(invalid_input(format!(
                "pipe path {} contains a NUL byte",
                path.display()
            )));
        }
        Ok(PipeName {
            repr: Repr::Path(path),
        })
    }

    /// A raw Windows pipe path, `\\.\pipe\<name>` or `\\<server>\pipe\<name>`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `raw` does not have that shape, holds a NUL, or is longer than 256
    /// UTF-16 units.
    pub fn windows(raw: &str) -> io::Result<PipeName> {
        let bad = |why: &str| invalid_input(format!("invalid Windows pipe path {raw:?}: {why}"));
        let rest = raw
            .strip_prefix(r"\\")
            .ok_or_else(|| bad(r"it must start with \\"))?;
        let (server, rest) = rest
            .split_once('\\')
            .ok_or_else(|| bad(r"expected \\server\pipe\name"))?;
        if server.is_empty() {
            return Err(bad("the server part is empty (use '.' for this machine)"));
        }
        let (pipe, name) = rest
            .split_once('\\')
            .ok_or_else(|| bad(r"expected \\server\pipe\name"))?;
        if !pipe.eq_ignore_ascii_case("pipe") {
            return Err(bad(r"the second component must be 'pipe'"));
        }
        if name.is_empty() {
            return Err(bad("the pipe name is empty"));
        }
        if raw.contains('\0') {
            return Err(bad("it contains a NUL byte"));
        }
        let units = raw.encode_utf16().count();
        if units > WINDOWS_MAX_PATH {
            return Err(bad(&format!(
                "it is {units} UTF-16 units long; the limit is {WINDOWS_MAX_PATH}"
            )));
        }
        Ok(PipeName {
            repr: Repr::Windows(raw.to_owned()),
        })
    }

    /// A name in the Linux abstract socket namespace (no file on disk; the kernel frees the
    /// name when the listener closes).
    ///
    /// # Platform-specific behavior
    ///
    /// Linux and Android only; resolving it elsewhere is an `Unsupported` error. An abstract
    /// name has no file permissions: anyone on the machine (in the same network namespace) can
    /// connect, so check [`PeerCredentials`](crate::PeerCredentials).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `name` is empty.
    pub fn abstract_name(name: impl Into<Vec<u8>>) -> io::Result<PipeName> {
        let name = name.into();
        if name.is_empty() {
            return Err(invalid_input("abstract socket name is empty"));
        }
        Ok(PipeName {
            repr: Repr::Abstract(name),
        })
    }

    /// Parses the textual form used on command lines: `tcp://host:port` and `tls://host:port`
    /// are network addresses, `dotnet:name` is a name in the .NET dialect, `\\server\pipe\name` a Windows path, `@name` an abstract name, anything
    /// holding a `/` a filesystem path, and anything else a portable name.
    ///
    /// # Errors
    ///
    /// The errors of the constructor the text selects.
    pub fn parse(text: &str) -> io::Result<PipeName> {
        if let Some(authority) = text.strip_prefix("tcp://") {
            PipeName::tcp(authority)
        } else if let Some(authority) = text.strip_prefix("tls://") {
            PipeName::tls(authority)
        } else if let Some(name) = text.strip_prefix("dotnet:") {
            PipeName::dotnet(name)
        } else if text.starts_with(r"\\") {
            PipeName::windows(text)
        } else if let Some(rest) = text.strip_prefix('@') {
            PipeName::abstract_name(rest.as_bytes())
        } else if text.contains('/') {
            PipeName::path(text)
        } else {
            PipeName::new(text)
        }
    }

    /// A pipe name in the *.NET dialect*: it resolves exactly as .NET's `System.IO.Pipes`
    /// resolves `new NamedPipeServerStream(name)` / `new NamedPipeClientStream(name)`, so a C#
    /// program on the same machine is a peer.
    ///
    /// - Windows: `\\.\pipe\<name>`.
    /// - Unix: `Path.GetTempPath() + "CoreFxPipe_" + name`, where the temporary path is
    ///   `$TMPDIR` with a `/` added if it has none, or `/tmp/` when `TMPDIR` is unset or empty
    ///   (see [`dotnet_temp_path`]); a rooted name (starting with `/`) is used as it is.
    ///
    /// On Unix, .NET pipes are `SOCK_STREAM` byte streams (.NET has no message mode there), so
    /// this dialect is byte mode only on Unix: asking for message mode is an `InvalidInput`
    /// error.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `name` is empty, holds a NUL byte, or is `anonymous` in any case
    /// (reserved by .NET). Resolving on Unix refuses what .NET refuses there: a name holding
    /// a `/` that is not an absolute path, and an absolute path ending in `/`.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit_core::{PipeName, UnixAddress, UnixEnv};
    ///
    /// let name = PipeName::dotnet("test_pipe")?;
    /// assert_eq!(name.resolve_windows()?, r"\\.\pipe\test_pipe");
    /// let mut env = UnixEnv::new(1000, "/tmp");
    /// env.dotnet_tmpdir(Some("/var/tmp"));
    /// let UnixAddress::Path { path, .. } = name.resolve_unix(&env)? else { unreachable!() };
    /// assert_eq!(path.to_str(), Some("/var/tmp/CoreFxPipe_test_pipe"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dotnet(name: &str) -> io::Result<PipeName> {
        if name.is_empty() {
            return Err(invalid_input("pipe name is empty"));
        }
        if name.contains('\0') {
            return Err(invalid_input(format!(
                "pipe name {name:?} contains a NUL byte"
            )));
        }
        if name.eq_ignore_ascii_case("anonymous") {
            return Err(invalid_input(format!(
                "the pipe name {name:?} is reserved by .NET (\"anonymous\" in any case)"
            )));
        }
        Ok(PipeName {
            repr: Repr::Dotnet(name.to_owned()),
        })
    }

    /// A TCP address, `host:port` (the text after `tcp://`): an IPv4 address, an IPv6
    /// address in brackets (`[::1]:7000`) or a host name. Port 0 asks a listener for any free
    /// port.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the text if it is not `host:port`.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipekit_core::{NameForm, PipeName};
    ///
    /// let name = PipeName::parse("tcp://[::1]:7000")?;
    /// assert_eq!(name.form(), NameForm::Tcp);
    /// let addr = name.as_net().unwrap();
    /// assert_eq!((addr.host(), addr.port()), ("::1", 7000));
    /// assert_eq!(name.to_string(), "tcp://[::1]:7000");
    /// assert!(PipeName::parse("tcp://localhost").is_err()); // no port
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tcp(authority: &str) -> io::Result<PipeName> {
        Ok(PipeName {
            repr: Repr::Net(NetAddress::parse(authority, false)?),
        })
    }

    /// A TLS-over-TCP address, `host:port` (the text after `tls://`), as for
    /// [`tcp`](Self::tcp).
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the text if it is not `host:port`.
    pub fn tls(authority: &str) -> io::Result<PipeName> {
        Ok(PipeName {
            repr: Repr::Net(NetAddress::parse(authority, true)?),
        })
    }

    /// The network address, if this is a `tcp://` or `tls://` name.
    pub fn as_net(&self) -> Option<&NetAddress> {
        match &self.repr {
            Repr::Net(addr) => Some(addr),
            _ => None,
        }
    }

    /// Which form this name has.
    pub fn form(&self) -> NameForm {
        match &self.repr {
            Repr::Net(addr) if addr.tls => NameForm::Tls,
            Repr::Net(_) => NameForm::Tcp,
            Repr::Portable(_) => NameForm::Portable,
            Repr::Path(_) => NameForm::Path,
            Repr::Windows(_) => NameForm::Windows,
            Repr::Abstract(_) => NameForm::Abstract,
            Repr::Dotnet(_) => NameForm::Dotnet,
        }
    }

    /// The portable name, if this is one.
    pub fn as_portable(&self) -> Option<&str> {
        match &self.repr {
            Repr::Portable(name) => Some(name),
            _ => None,
        }
    }

    /// Where this name lives on Unix, given the environment `env`.
    ///
    /// A portable name becomes `<private dir>/<name>`; the private directory is returned
    /// too, for the backend to create and check. The result is checked against the
    /// `sun_path` limit (`sun_path` holds the path and a terminating NUL).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a Windows pipe path, a path too long for `sun_path`, or a .NET name
    /// .NET refuses on Unix (see [`PipeName::dotnet`]);
    /// `Unsupported` for an abstract name where `env` says there is no abstract namespace.
    pub fn resolve_unix(&self, env: &UnixEnv) -> io::Result<UnixAddress> {
        let (path, private_dir) = match &self.repr {
            Repr::Portable(name) => {
                let dir = env.private_dir();
                (dir.join(name), Some(dir))
            }
            Repr::Path(path) => (path.clone(), None),
            Repr::Dotnet(name) if name.starts_with('/') => {
                if name.ends_with('/') {
                    return Err(invalid_input(format!(
                        "the .NET pipe name {name:?} is an absolute path ending in '/'; .NET \
                         on Unix takes a file name or an absolute path to a file"
                    )));
                }
                (PathBuf::from(name), None)
            }
            Repr::Dotnet(name) if name.contains('/') => {
                return Err(invalid_input(format!(
                    "the .NET pipe name {name:?} holds a '/'; .NET on Unix takes a file name \
                     or an absolute path to a file"
                )));
            }
            Repr::Dotnet(name) => (
                PathBuf::from(format!("{}CoreFxPipe_{name}", env.dotnet_temp)),
                None,
            ),
            Repr::Windows(raw) => {
                return Err(invalid_input(format!(
                    "{raw:?} is a Windows pipe path; it has no meaning on Unix \
                     (use a portable name or a filesystem path)"
                )));
            }
            Repr::Net(addr) => return Err(addr.not_local()),
            Repr::Abstract(name) => {
                if !env.abstract_namespace {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "abstract socket name @{} needs the Linux abstract namespace, \
                             which this OS does not have",
                            String::from_utf8_lossy(name)
                        ),
                    ));
                }
                // The abstract name takes sun_path's leading NUL byte too.
                let limit = env.sun_path_len - 1;
                if name.len() > limit {
                    return Err(invalid_input(format!(
                        "abstract socket name @{} is {} bytes; the limit is {limit}",
                        String::from_utf8_lossy(name),
                        name.len()
                    )));
                }
                return Ok(UnixAddress::Abstract(name.clone()));
            }
        };
        let len = path.as_os_str().as_encoded_bytes().len();
        let limit = env.sun_path_len - 1;
        if len > limit {
            return Err(invalid_input(format!(
                "pipe name {self} resolves to {} ({len} bytes), longer than the {limit}-byte \
                 limit of a Unix socket path on this OS (sun_path is {} bytes); use a shorter \
                 name or an explicit shorter path",
                path.display(),
                env.sun_path_len
            )));
        }
        Ok(UnixAddress::Path { path, private_dir })
    }

    /// The Windows pipe path of this name: `\\.\pipe\<name>` for a portable name.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a filesystem path or an abstract name, or a portable name too long
    /// for a pipe path (256 UTF-16 units).
    pub fn resolve_windows(&self) -> io::Result<String> {
        match &self.repr {
            Repr::Portable(name) => {
                let full = format!(r"\\.\pipe\{name}");
                let units = full.encode_utf16().count();
                if units > WINDOWS_MAX_PATH {
                    return Err(invalid_input(format!(
                        "pipe name {name:?} resolves to a {units}-unit pipe path; \
                         the limit on Windows is {WINDOWS_MAX_PATH}"
                    )));
                }
                Ok(full)
            }
            Repr::Windows(raw) => Ok(raw.clone()),
            Repr::Dotnet(name) => Ok(format!(r"\\.\pipe\{name}")),
            Repr::Path(path) => Err(invalid_input(format!(
                "{} is a filesystem path; Windows named pipes live under \\\\.\\pipe\\",
                path.display()
            ))),
            Repr::Abstract(_) => Err(invalid_input(format!(
                "{self} is a Linux abstract socket name; Windows has no such namespace"
            ))),
            Repr::Net(addr) => Err(addr.not_local()),
        }
    }
}

impl fmt::Display for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Portable(name) | Repr::Windows(name) => f.write_str(name),
            Repr::Dotnet(name) => write!(f, "dotnet:{name}"),
            Repr::Path(path) => write!(f, "{}", path.display()),
            Repr::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Repr::Net(addr) => addr.fmt(f),
        }
    }
}

impl FromStr for PipeName {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<PipeName> {
        PipeName::parse(text)
    }
}

impl TryFrom<&str> for PipeName {
    type Error = io::Error;

    fn try_from(text: &str) -> io::Result<PipeName> {
        PipeName::parse(text)
    }
}

/// Anything that names a pipe: a [`PipeName`], or text parsed with [`PipeName::parse`].
///
/// Lets `bind` and `connect` take `"test_pipe"` as well as a `PipeName`.
pub trait IntoPipeName {
    /// Converts to a `PipeName`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for text that is not a valid name.
    fn into_pipe_name(self) -> io::Result<PipeName>;
}

impl IntoPipeName for PipeName {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        Ok(self)
    }
}

impl IntoPipeName for &PipeName {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        Ok(self.clone())
    }
}

impl IntoPipeName for &str {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        PipeName::parse(self)
    }
}

impl IntoPipeName for &String {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        PipeName::parse(self)
    }
}

impl IntoPipeName for String {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        PipeName::parse(&self)
    }
}

/// A `Path` is always a filesystem path ([`PipeName::path`]), even one without a `/`: text is
/// parsed by the naming rules, a `Path` is taken as the path it is.
impl IntoPipeName for &Path {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        PipeName::path(self)
    }
}

/// As for `&Path`.
impl IntoPipeName for PathBuf {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        PipeName::path(self)
    }
}

/// As for `&Path`.
impl IntoPipeName for &PathBuf {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        PipeName::path(self.as_path())
    }
}

/// Text is parsed by the naming rules, as for `&str`; an `OsStr` that is not UTF-8 can only
/// be a filesystem path ([`PipeName::path`]).
impl IntoPipeName for &std::ffi::OsStr {
    fn into_pipe_name(self) -> io::Result<PipeName> {
        match self.to_str() {
            Some(text) => PipeName::parse(text),
            None => PipeName::path(self),
        }
    }
}

/// The address of a `tcp://` or `tls://` [`PipeName`]: a host (an IP address or a name to
/// look up) and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetAddress {
    host: String,
    port: u16,
    tls: bool,
}

impl NetAddress {
    fn parse(authority: &str, tls: bool) -> io::Result<NetAddress> {
        let scheme = if tls { "tls" } else { "tcp" };
        let bad = |why: &str| {
            invalid_input(format!(
                "invalid {scheme} address {scheme}://{authority}: {why} (expected \
                 {scheme}://HOST:PORT, with an IPv6 address in brackets)"
            ))
        };
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (host, rest) = rest
                .split_once(']')
                .ok_or_else(|| bad("the IPv6 address has no closing ']'"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the text in brackets is not an IPv6 address"));
            }
            let port = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("no port after the address"))?;
            (host, port)
        } else {
            let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address must be written in brackets"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if let Some(c) = host
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\' | '@'))
        {
            return Err(bad(&format!("the host holds {c:?}")));
        }
        let port = port.parse::<u16>().map_err(|_| {
            bad(&format!(
                "the port {port:?} is not a number from 0 to 65535"
            ))
        })?;
        Ok(NetAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// The host: an IP address (an IPv6 one without its brackets) or a host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is a `tls://` address.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    fn not_local(&self) -> io::Error {
        invalid_input(format!(
            "{self} is a network address; it does not name a local pipe (the pipekit facade \
             serves it over TCP)"
        ))
    }
}

impl fmt::Display for NetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// What a Unix name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnixAddress {
    /// A socket (or FIFO directory) at `path`.
    Path {
        /// The socket's path.
        path: PathBuf,
        /// The private per-user directory that holds it, for a portable name; the backend
        /// creates it (0700) and checks its owner and mode.
        private_dir: Option<PathBuf>,
    },
    /// A Linux abstract socket name (without the leading NUL).
    Abstract(Vec<u8>),
}

/// The facts about the running system that Unix name resolution needs.
///
/// The backend fills it from the OS (`getuid`, `XDG_RUNTIME_DIR` after checking it is safe,
/// `TMPDIR`); tests can build any environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixEnv {
    runtime_dir: Option<PathBuf>,
    temp_dir: PathBuf,
    dotnet_temp: String,
    uid: u32,
    sun_path_len: usize,
    abstract_namespace: bool,
}

impl UnixEnv {
    /// An environment for user `uid` with temporary directory `temp_dir`, no runtime
    /// directory, a 108-byte `sun_path` (Linux) and no abstract namespace.
    pub fn new(uid: u32, temp_dir: impl Into<PathBuf>) -> UnixEnv {
        UnixEnv {
            runtime_dir: None,
            temp_dir: temp_dir.into(),
            dotnet_temp: dotnet_temp_path(None),
            uid,
            sun_path_len: 108,
            abstract_namespace: false,
        }
    }

    /// Sets the per-user runtime directory (`$XDG_RUNTIME_DIR`), already checked to be safe.
    pub fn runtime_dir(&mut self, dir: Option<PathBuf>) -> &mut Self {
        self.runtime_dir = dir;
        self
    }

    /// Sets the size of `sockaddr_un.sun_path` (108 on Linux, 104 on macOS and the BSDs).
    pub fn sun_path_len(&mut self, len: usize) -> &mut Self {
        self.sun_path_len = len.max(2);
        self
    }

    /// Sets `$TMPDIR` as .NET reads it, for names in the .NET dialect (`None` when unset);
    /// see [`dotnet_temp_path`].
    pub fn dotnet_tmpdir(&mut self, tmpdir: Option<&str>) -> &mut Self {
        self.dotnet_temp = dotnet_temp_path(tmpdir);
        self
    }

    /// Says whether the Linux abstract socket namespace exists.
    pub fn abstract_namespace(&mut self, available: bool) -> &mut Self {
        self.abstract_namespace = available;
        self
    }

    /// The private directory that portable names live in:
    /// `<runtime dir>/pipekit` or `<temp dir>/pipekit-<uid>`.
    pub fn private_dir(&self) -> PathBuf {
        match &self.runtime_dir {
            Some(dir) => dir.join("pipekit"),
            None => self.temp_dir.join(format!("pipekit-{}", self.uid)),
        }
    }

    /// The temporary directory.
    pub fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }
}

/// .NET's `Path.GetTempPath()` on Unix for a given `$TMPDIR`: the value with a `/` added when
/// it does not end in one, or `/tmp/` when it is unset or empty.
///
/// # Examples
///
/// ```
/// use pipekit_core::dotnet_temp_path;
///
/// assert_eq!(dotnet_temp_path(None), "/tmp/");
/// assert_eq!(dotnet_temp_path(Some("")), "/tmp/");
/// assert_eq!(dotnet_temp_path(Some("/var/tmp")), "/var/tmp/");
/// assert_eq!(dotnet_temp_path(Some("/var/tmp/")), "/var/tmp/");
/// ```
pub fn dotnet_temp_path(tmpdir: Option<&str>) -> String {
    match tmpdir {
        None | Some("") => String::from("/tmp/"),
        Some(dir) if dir.ends_with('/') => dir.to_owned(),
        Some(dir) => format!("{dir}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_always_a_path_name() {
        let name = Path::new("test_pipe").into_pipe_name().unwrap();
        assert_eq!(
            name.form(),
            NameForm::Path,
            "a Path is not parsed as a portable name"
        );
        assert_eq!(
            PathBuf::from("/run/app.sock").into_pipe_name().unwrap(),
            PipeName::path("/run/app.sock").unwrap()
        );
        assert!(PathBuf::new().into_pipe_name().is_err());
    }

    #[test]
    fn dotnet_names_resolve_as_dotnet_does() {
        // (TMPDIR, name, Unix path)
        let cases = [
            (None, "test_pipe", "/tmp/CoreFxPipe_test_pipe"),
            (Some(""), "test_pipe", "/tmp/CoreFxPipe_test_pipe"),
            (Some("/var/tmp"), "p", "/var/tmp/CoreFxPipe_p"),
            (Some("/var/tmp/"), "p", "/var/tmp/CoreFxPipe_p"),
            (Some("relative"), "p", "relative/CoreFxPipe_p"),
            (Some("/var/tmp"), "/run/app/rooted", "/run/app/rooted"),
            (
                None,
                "with.dots-and_dashes",
                "/tmp/CoreFxPipe_with.dots-and_dashes",
            ),
        ];
        for (tmpdir, name, expected) in cases {
            let mut env = UnixEnv::new(1000, "/ignored");
            env.dotnet_tmpdir(tmpdir);
            let resolved = PipeName::dotnet(name).unwrap().resolve_unix(&env).unwrap();
            match resolved {
                UnixAddress::Path { path, private_dir } => {
                    assert_eq!(path, Path::new(expected), "{tmpdir:?} {name}");
                    assert_eq!(private_dir, None);
                }
                other => panic!("{other:?}"),
            }
        }
        let name = PipeName::dotnet("test_pipe").unwrap();
        assert_eq!(name.resolve_windows().unwrap(), r"\\.\pipe\test_pipe");
        assert_eq!(name.form(), NameForm::Dotnet);
        assert_eq!(PipeName::parse("dotnet:test_pipe").unwrap(), name);
        for bad in ["", "a\0b", "anonymous"] {
            assert!(PipeName::dotnet(bad).is_err(), "{bad:?}");
        }
    }

    /// What .NET Core 3.1, Mono 6.8 and .NET Core 2.2 for Windows refuse (checked against
    /// them): `anonymous` in any case everywhere; on Unix a name that is neither a file name
    /// nor an absolute path to one.
    #[test]
    fn dotnet_names_dotnet_refuses_are_refused() {
        for reserved in ["anonymous", "Anonymous", "ANONYMOUS"] {
            let err = PipeName::dotnet(reserved).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("reserved"), "{err}");
        }
        let env = UnixEnv::new(1000, "/tmp");
        for bad in ["a/b", "/tmp/dir/", "dir/"] {
            let name = PipeName::dotnet(bad).unwrap();
            let err = name.resolve_unix(&env).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
            // Windows takes them: `\\.\pipe\a/b` is a pipe name there.
            assert_eq!(name.resolve_windows().unwrap(), format!(r"\\.\pipe\{bad}"));
        }
        // Kept: a backslash is an ordinary file-name character on Unix.
        for good in [r"a\b", "with space", "/tmp/rooted"] {
            let name = PipeName::dotnet(good).unwrap();
            name.resolve_unix(&env).unwrap();
        }
    }

    fn env() -> UnixEnv {
        UnixEnv::new(1000, "/tmp")
    }

    fn path_of(name: &PipeName, env: &UnixEnv) -> PathBuf {
        match name.resolve_unix(env).unwrap() {
            UnixAddress::Path { path, .. } => path,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn portable_names_resolve_per_os() {
        let name = PipeName::new("test_pipe").unwrap();
        assert_eq!(name.resolve_windows().unwrap(), r"\\.\pipe\test_pipe");
        assert_eq!(
            path_of(&name, &env()),
            Path::new("/tmp/pipekit-1000/test_pipe")
        );
        let mut xdg = env();
        xdg.runtime_dir(Some("/run/user/1000".into()));
        assert_eq!(
            path_of(&name, &xdg),
            Path::new("/run/user/1000/pipekit/test_pipe")
        );
        match name.resolve_unix(&xdg).unwrap() {
            UnixAddress::Path { private_dir, .. } => {
                assert_eq!(private_dir.unwrap(), Path::new("/run/user/1000/pipekit"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_portable_names_are_invalid_input() {
        for bad in ["", ".", "..", "a/b", r"a\b", "a\0b", "/abs"] {
            let err = PipeName::new(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn long_paths_name_the_limit_and_length() {
        let name = PipeName::new(&"x".repeat(120)).unwrap();
        let err = name.resolve_unix(&env()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let text = err.to_string();
        assert!(text.contains("107-byte limit"), "{text}");
        assert!(text.contains("138 bytes"), "{text}");

        let mut mac = env();
        mac.sun_path_len(104);
        let edge = PipeName::new(&"y".repeat(103 - "/tmp/pipekit-1000/".len())).unwrap();
        assert!(edge.resolve_unix(&mac).is_ok());
        let over = PipeName::new(&"y".repeat(104 - "/tmp/pipekit-1000/".len())).unwrap();
        assert!(over.resolve_unix(&mac).is_err());
    }

    #[test]
    fn windows_paths_are_checked() {
        assert!(PipeName::windows(r"\\.\pipe\x").is_ok());
        assert!(PipeName::windows(r"\\server\PIPE\a\b").is_ok());
        for bad in [
            r"\\.\pipe\",
            r"\\.\file\x",
            r"\\\pipe\x",
            r"\.\pipe\x",
            r"\\.",
        ] {
            let err = PipeName::windows(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let long = format!(r"\\.\pipe\{}", "n".repeat(250));
        assert!(PipeName::windows(&long).is_err());
        assert!(
            PipeName::new(&"n".repeat(250))
                .unwrap()
                .resolve_windows()
                .is_err()
        );
        let err = PipeName::windows(r"\\.\pipe\x")
            .unwrap()
            .resolve_unix(&env())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn parse_picks_the_form() {
        assert_eq!(PipeName::parse("a").unwrap().form(), NameForm::Portable);
        assert_eq!(PipeName::parse("./a").unwrap().form(), NameForm::Path);
        assert_eq!(PipeName::parse("/run/a").unwrap().form(), NameForm::Path);
        assert_eq!(
            PipeName::parse(r"\\.\pipe\a").unwrap().form(),
            NameForm::Windows
        );
        assert_eq!(PipeName::parse("@a").unwrap().form(), NameForm::Abstract);
        assert!(PipeName::parse("@").is_err());
        assert!(PipeName::parse("").is_err());
    }

    #[test]
    fn abstract_names_need_the_namespace() {
        let name = PipeName::abstract_name("svc").unwrap();
        let err = name.resolve_unix(&env()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let mut linux = env();
        linux.abstract_namespace(true);
        assert_eq!(
            name.resolve_unix(&linux).unwrap(),
            UnixAddress::Abstract(b"svc".to_vec())
        );
        assert!(name.resolve_windows().is_err());
    }

    #[test]
    fn network_names_parse_and_print_back() {
        for (text, form, host, port) in [
            ("tcp://127.0.0.1:7000", NameForm::Tcp, "127.0.0.1", 7000),
            ("tls://[::1]:443", NameForm::Tls, "::1", 443),
            ("tls://example.org:0", NameForm::Tls, "example.org", 0),
            ("tcp://[fe80::1]:65535", NameForm::Tcp, "fe80::1", 65535),
        ] {
            let name = PipeName::parse(text).unwrap();
            assert_eq!(name.form(), form, "{text}");
            let addr = name.as_net().unwrap();
            assert_eq!((addr.host(), addr.port()), (host, port), "{text}");
            assert_eq!(addr.is_tls(), form == NameForm::Tls);
            assert_eq!(name.to_string(), text);
            assert_eq!(PipeName::parse(&name.to_string()).unwrap(), name);
            assert!(name.resolve_windows().is_err());
            assert!(name.resolve_unix(&env()).is_err());
        }
        assert_eq!(PipeName::new("tcp").unwrap().as_net(), None);
    }

    #[test]
    fn bad_network_names_say_what_is_wrong() {
        for (text, why) in [
            ("tcp://localhost", "no port"),
            ("tcp://:7000", "host is empty"),
            ("tcp://::1:7000", "brackets"),
            ("tcp://[::1]7000", "no port after"),
            ("tcp://[nonsense]:1", "not an IPv6"),
            ("tcp://[::1:1", "closing"),
            ("tls://host:70000", "0 to 65535"),
            ("tls://host:http", "0 to 65535"),
            ("tcp://host/path:1", "'/'"),
            ("tcp://user@host:1", "'@'"),
            ("tcp://ho st:1", "' '"),
        ] {
            let err = PipeName::parse(text).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{text}");
            let msg = err.to_string();
            assert!(msg.contains(why) && msg.contains(text), "{text}: {msg}");
        }
    }
}
