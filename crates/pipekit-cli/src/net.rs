//! The flags of `tcp://` and `tls://` names, shared by every subcommand that takes a name.

use std::path::PathBuf;

use clap::Args;
use pipekit::{ConnectOptions, ListenerOptions, PipeName};

#[derive(Clone, Debug, Args, Default)]
pub(crate) struct NetArgs {
    /// tls:// server: its certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// tls:// server: the private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// tls:// server: require client certificates issued by the CAs of FILE (PEM).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// tls:// server with --client-ca: accept only client certificates valid for NAME (a DNS
    /// name; may be repeated).
    #[arg(long, value_name = "NAME", requires = "client_ca")]
    pub allow_client: Vec<String>,
    /// tls:// client: trust the CAs of FILE (PEM) instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// tls:// client: the certificate to show a server that asks for one (PEM).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// tls:// client: the private key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// tls:// client: the name the server's certificate must be valid for, when it is not
    /// the host of the address.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// tcp:// server: listen on an address other than loopback. Plain TCP has neither
    /// encryption nor authentication: anyone who reaches the port is a client.
    #[arg(long)]
    pub insecure: bool,
}

impl NetArgs {
    fn server_flags(&self) -> bool {
        self.cert.is_some() || self.client_ca.is_some() || self.insecure
    }

    fn client_flags(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some() || self.server_name.is_some()
    }

    /// The server flags for a listener of `name`; a client flag, or a TLS flag for a name
    /// that is not `tls://`, is a usage error.
    pub(crate) fn listen(
        &self,
        name: &PipeName,
        options: &mut ListenerOptions,
    ) -> anyhow::Result<()> {
        if self.client_flags() {
            return Err(crate::exit::usage(
                "--ca, --client-cert, --client-key and --server-name are for clients; a server \
                 that requires client certificates takes --client-ca",
            ));
        }
        self.server(name, options)
    }

    /// The client flags for a connection to `name`; a server flag, or a TLS flag for a name
    /// that is not `tls://`, is a usage error.
    pub(crate) fn connect(
        &self,
        name: &PipeName,
        options: &mut ConnectOptions,
    ) -> anyhow::Result<()> {
        if self.server_flags() {
            return Err(crate::exit::usage(
                "--cert, --key, --client-ca, --allow-client and --insecure are for servers; a \
                 client shows its certificate with --client-cert and --client-key",
            ));
        }
        self.client(name, options)
    }

    /// The server flags (`relay`'s FROM).
    pub(crate) fn server(
        &self,
        name: &PipeName,
        options: &mut ListenerOptions,
    ) -> anyhow::Result<()> {
        let tls = name.as_net().is_some_and(|a| a.is_tls());
        if !tls && (self.cert.is_some() || self.client_ca.is_some()) {
            return Err(crate::exit::usage(format!(
                "--cert, --key and --client-ca are for tls:// names, and {name} is not one"
            )));
        }
        if self.insecure && name.as_net().is_none_or(|a| a.is_tls()) {
            return Err(crate::exit::usage(format!(
                "--insecure is for plain tcp:// servers, and {name} is not one"
            )));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options.tls_certificate(cert, key);
        }
        if let Some(ca) = &self.client_ca {
            options.tls_client_ca(ca);
        }
        for client in &self.allow_client {
            options.tls_allow_client(client);
        }
        options.insecure_network(self.insecure);
        Ok(())
    }

    /// The client flags (`relay`'s TO).
    pub(crate) fn client(
        &self,
        name: &PipeName,
        options: &mut ConnectOptions,
    ) -> anyhow::Result<()> {
        let tls = name.as_net().is_some_and(|a| a.is_tls());
        if !tls && self.client_flags() {
            return Err(crate::exit::usage(format!(
                "--ca, --client-cert, --client-key and --server-name are for tls:// names, and \
                 {name} is not one"
            )));
        }
        if let Some(ca) = &self.ca {
            options.tls_ca(ca);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            options.tls_client_certificate(cert, key);
        }
        if let Some(server) = &self.server_name {
            options.tls_server_name(server);
        }
        Ok(())
    }
}
