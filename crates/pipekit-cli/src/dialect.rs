//! `--dialect` and `--authkey`, shared by every subcommand that takes a name.

use clap::{Args, ValueEnum};
use pipekit::PipeName;

/// Peers written without pipekit in mind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Dialect {
    /// .NET System.IO.Pipes naming: $TMPDIR/CoreFxPipe_NAME on Unix (byte mode only there),
    /// \\.\pipe\NAME on Windows.
    Dotnet,
    /// Python multiprocessing.connection: length-prefixed send_bytes/recv_bytes and the
    /// authkey handshake (--authkey).
    PythonMp,
}

#[derive(Debug, Args)]
pub(crate) struct DialectArgs {
    /// Speak to peers written without pipekit: dotnet or python-mp.
    #[arg(long, value_enum, value_name = "DIALECT")]
    pub dialect: Option<Dialect>,
    /// The python-mp authkey both sides must know.
    #[arg(long, value_name = "KEY")]
    pub authkey: Option<String>,
}

impl DialectArgs {
    /// `name` as this dialect reads it.
    pub(crate) fn pipe_name(&self, name: &str) -> anyhow::Result<PipeName> {
        if self.authkey.is_some() && self.dialect != Some(Dialect::PythonMp) {
            return Err(crate::exit::usage("--authkey needs --dialect python-mp"));
        }
        Ok(match self.dialect {
            Some(Dialect::Dotnet) => PipeName::dotnet(name)?,
            _ => PipeName::parse(name)?,
        })
    }

    /// Whether this is the Python multiprocessing dialect.
    pub(crate) fn python_mp(&self) -> bool {
        self.dialect == Some(Dialect::PythonMp)
    }

    /// The authkey, as bytes.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.authkey.as_deref().map(str::as_bytes)
    }
}
