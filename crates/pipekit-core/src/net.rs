//! Options of the network forms of a name, `tcp://` and `tls://`.
//!
//! They are plain data (paths, names, durations): the `pipekit` facade reads the PEM files
//! and builds the TLS configuration when a listener binds or a client connects, so a bad file
//! is reported by `bind`/`connect` with its path.

use std::path::PathBuf;
use std::time::Duration;

/// How long a TLS handshake may take before the connection is dropped: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The network side of [`ListenerOptions`](crate::ListenerOptions).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetListenerOptions {
    /// The server's certificate chain, a PEM file (leaf first).
    pub certificate: Option<PathBuf>,
    /// The server's private key, a PEM file (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Requires client certificates issued by the CAs of this PEM file (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: the names (DNS subject alternative names) a client certificate must
    /// be valid for, one of them at least; empty accepts any certificate the CA issued.
    pub allowed_clients: Vec<String>,
    /// How long a client may take over the TLS handshake.
    pub handshake_timeout: Duration,
    /// Lets a plain `tcp://` listener bind an address other than loopback.
    pub insecure_network: bool,
}

impl NetListenerOptions {
    pub(crate) fn new() -> NetListenerOptions {
        NetListenerOptions {
            certificate: None,
            key: None,
            client_ca: None,
            allowed_clients: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            insecure_network: false,
        }
    }
}

/// The network side of [`ConnectOptions`](crate::ConnectOptions).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetConnectOptions {
    /// Trusts the CAs of this PEM file instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// The client's certificate chain, a PEM file, for servers that ask for one.
    pub certificate: Option<PathBuf>,
    /// The client's private key, a PEM file.
    pub key: Option<PathBuf>,
    /// The name the server's certificate must be valid for; `None` is the host of the
    /// address.
    pub server_name: Option<String>,
}

impl NetConnectOptions {
    pub(crate) fn new() -> NetConnectOptions {
        NetConnectOptions {
            ca: None,
            certificate: None,
            key: None,
            server_name: None,
        }
    }
}
