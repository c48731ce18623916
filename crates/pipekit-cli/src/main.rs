//! `pipekit`: serve, talk to, inspect and benchmark named pipes from a shell, the same way on
//! every OS.
//!
//! Exit codes: 0 success, 1 runtime error (the message is on stderr), 2 usage error (clap's
//! and pipekit's own argument checks), 130 when `listen` is stopped by Ctrl-C (SIGINT), 143 by
//! SIGTERM.
#![forbid(unsafe_code)]

mod bench;
mod dialect;
mod exit;
mod net;
mod output;
mod relay;
mod serve;
mod talk;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The exit codes, as `--help` tells them.
const EXIT_CODES: &str = "Exit codes: 0 success, 1 runtime error (the message is on stderr), \
    2 usage error, 130 when `listen` is stopped by Ctrl-C (SIGINT), 143 by SIGTERM.";

/// Serve, talk to, inspect and benchmark named pipes.
#[derive(Debug, Parser)]
#[command(name = "pipekit", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve NAME and print each message received as a line.
    ///
    /// Clients are served concurrently. Nothing is printed before the first message; a NAME
    /// that is already served is an error (exit 1). Ctrl-C or SIGTERM stops the server and
    /// removes its socket or FIFO directory.
    ///
    /// Example: pipekit listen test_pipe --messages --reply OK
    Listen(serve::ListenArgs),
    /// Connect to NAME and send each MSG (one message each in message mode).
    ///
    /// Example: pipekit send test_pipe --messages --wait-reply 1 2 3
    Send(talk::SendArgs),
    /// Interactive: stdin lines go to NAME (one message per line in message mode), what comes
    /// back goes to stdout.
    ///
    /// At the end of stdin, connect half-closes and prints what still comes until the server
    /// closes; Windows pipes have no half-close, so there it prints until 1 s passes without
    /// anything arriving.
    ///
    /// Example: pipekit connect test_pipe --messages
    Connect(talk::ConnectArgs),
    /// Accept on FROM, connect to TO for each connection, and copy both ways until both
    /// sides close.
    ///
    /// Endpoints: a pipe name (any form), tls://HOST:PORT (pipekit's TLS transport: give FROM
    /// --cert and --key, TO --ca), tcp://HOST:PORT (raw TCP bytes, for any TCP program), -
    /// (stdin and stdout: one connection), or (TO only) exec:CMD, a command per connection
    /// through its stdin and stdout. Between two message-mode endpoints (--messages: pipes
    /// and tls://) each message stays one message; elsewhere bytes are copied as they come.
    /// The end of one direction is passed on as a half-close where the other side has one
    /// (not Windows pipes).
    ///
    /// Examples: pipekit relay tcp://127.0.0.1:9000 demo   (TCP clients reach the pipe server)
    ///           pipekit relay demo tcp://example.net:9000  (pipe clients reach a TCP server)
    ///           pipekit relay tls://0.0.0.0:7000 demo --cert c.pem --key k.pem
    ///                                       (another machine reaches the pipe server over TLS)
    Relay(relay::RelayArgs),
    /// Print the OS path or pipe name NAME resolves to.
    ///
    /// Example: pipekit path test_pipe
    ///
    /// Shell scripts write to a one-way FIFO inbox (`pipekit listen inbox --inbox`) this way:
    /// printf 'hello\n' > "$(pipekit path inbox)"
    Path(PathArgs),
    /// Measure IPC methods against each other: throughput, latency, connect time.
    ///
    /// Example: pipekit bench --quick --json bench.json
    Bench(bench::BenchArgs),
}

#[derive(Debug, Args)]
struct PathArgs {
    /// The pipe name.
    name: String,
    #[command(flatten)]
    dialect: dialect::DialectArgs,
}

fn main() -> ExitCode {
    pipekit_benches::run_peer_if_requested();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Listen(args) => serve::listen(&args),
        Command::Send(args) => talk::send(&args),
        Command::Connect(args) => talk::connect(&args),
        Command::Relay(args) => relay::relay(&args),
        Command::Path(args) => path(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipekit: {e:#}");
            if e.is::<exit::Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn path(args: &PathArgs) -> anyhow::Result<()> {
    let name = args.dialect.pipe_name(&args.name)?;
    println!("{}", resolve(&name)?);
    warn_unsafe_dir(&name);
    Ok(())
}

/// Warns on stderr when the per-user directory of `name` exists but is not safe to use
/// (someone else's, a symlink, open to others): pipekit's clients and servers refuse it.
#[cfg(unix)]
fn warn_unsafe_dir(name: &pipekit::PipeName) {
    use pipekit::os::unix::{UnixAddress, check_private_dir};
    if let Ok(UnixAddress::Path {
        private_dir: Some(dir),
        ..
    }) = pipekit::os::unix::resolve(name)
        && let Err(e) = check_private_dir(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("pipekit: warning: {}", pipekit::error::Chain(&e));
    }
}

#[cfg(windows)]
fn warn_unsafe_dir(_name: &pipekit::PipeName) {}

/// Where `name` lives on this OS: a socket/FIFO path on Unix, a pipe path on Windows. For the
/// python-mp dialect this is the address a Python `Client(address)` must be given.
fn resolve(name: &pipekit::PipeName) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        Ok(pipekit::os::unix::socket_path(name)?
            .to_string_lossy()
            .into_owned())
    }
    #[cfg(windows)]
    {
        Ok(pipekit::os::windows::pipe_path(name)?)
    }
}
