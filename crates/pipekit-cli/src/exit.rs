//! How the command ends other than by success: a usage error (exit status 2) and a stop
//! signal (130, 143).

/// A usage error found by pipekit itself (beyond what clap checks): exit status 2, as clap's.
#[derive(Debug)]
pub(crate) struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error (exit status 2) saying `message`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// Runs `cleanup` and exits when the program is told to stop: SIGINT (Ctrl-C) exits 130 and
/// SIGTERM 143 (128 + the signal, as shells report it); on Windows, Ctrl-C, Ctrl-Break and
/// closing the console exit 130.
pub(crate) fn on_stop(cleanup: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context as _;
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .context("cannot install the SIGINT and SIGTERM handlers")?;
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                cleanup();
                std::process::exit(128 + signal);
            }
        });
    }
    #[cfg(windows)]
    ctrlc::set_handler(move || {
        cleanup();
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(())
}
