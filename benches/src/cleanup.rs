//! What a run must remove if it is stopped: the files, queues and segments transports made,
//! and the peer processes it started.
//!
//! Each is registered as a closure while it exists ([`on_exit`]); [`run_all`] runs what is
//! registered, and is what a signal handler calls (the `pipekit bench` command installs one
//! for SIGINT and SIGTERM, and every peer process does the same). The normal path — a
//! listener dropped, a peer that exits — removes its own and unregisters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) type Action = Box<dyn Fn() + Send + Sync>;

static ACTIONS: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());

/// Set once [`run_all`] has begun.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether the process is being stopped (so an error of a call the clean-up cut short is
/// expected, not worth reporting).
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// A registered clean-up action; dropping it unregisters the action without running it.
#[must_use = "the action is unregistered when the guard drops"]
#[derive(Debug)]
pub struct Guard(u64);

/// Registers `action` to run if the process is stopped while the guard lives. Once the
/// process is being stopped ([`run_all`] has begun), the action runs at once instead: what
/// the rest of the program makes meanwhile is removed too.
pub fn on_exit(action: impl Fn() + Send + Sync + 'static) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut actions = actions();
    if STOPPING.load(Ordering::SeqCst) {
        drop(actions);
        action();
    } else {
        actions.push((id, Box::new(action)));
    }
    Guard(id)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Makes something with `make` and registers the action it returns as one step: a stop
/// ([`run_all`], from a signal) waits for both, so nothing made here escapes it (a peer
/// process started just as the run is stopped is stopped too). `Interrupted` once the run is
/// being stopped, without calling `make`.
pub(crate) fn made_with_exit<T>(
    make: impl FnOnce() -> std::io::Result<(T, Action)>,
) -> std::io::Result<(T, Guard)> {
    let mut actions = actions();
    if STOPPING.load(Ordering::SeqCst) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "the run is being stopped",
        ));
    }
    let (made, action) = make()?;
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    actions.push((id, action));
    Ok((made, Guard(id)))
}

impl Drop for Guard {
    fn drop(&mut self) {
        actions().retain(|(id, _)| *id != self.0);
    }
}

/// Runs every registered action, newest first (peers are stopped before the files they use
/// are removed), and unregisters them. From then on the process counts as stopping:
/// actions registered later run at once, and no new peer starts.
pub fn run_all() {
    let taken = {
        let mut actions = actions();
        STOPPING.store(true, Ordering::SeqCst);
        std::mem::take(&mut *actions)
    };
    for (_, action) in taken.iter().rev() {
        action();
    }
}

fn actions() -> std::sync::MutexGuard<'static, Vec<(u64, Action)>> {
    ACTIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// In a peer process: on SIGINT or SIGTERM, runs [`run_all`] and exits with 128 + the
/// signal.
#[cfg(unix)]
pub(crate) fn on_signal_exit() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            run_all();
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// Windows transports leave nothing in a file system; a peer ends with its console.
#[cfg(not(unix))]
pub(crate) fn on_signal_exit() -> std::io::Result<()> {
    Ok(())
}
