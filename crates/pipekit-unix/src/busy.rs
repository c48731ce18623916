//! A server that is full, as its clients learn it: a listener at its instance limit sets its
//! socket aside as `<path>.busy` (and a FIFO server marks its directory), and its lock file
//! `<path>.lock` says the limit.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use pipekit_core::PipeName;

/// The name a full listener's socket file has meanwhile (see `Hideout`).
pub(crate) fn busy_path(path: &Path) -> PathBuf {
    let mut busy = path.as_os_str().to_owned();
    busy.push(".busy");
    PathBuf::from(busy)
}

/// "all N" for the instance limit a server of `path` wrote in its lock file, or "its".
fn limit_of(path: &Path) -> String {
    let limit = fs::read_to_string(lock_path(path))
        .ok()
        .and_then(|s| s.trim().strip_prefix("max_instances ")?.parse::<u32>().ok());
    limit.map_or_else(|| "its".to_owned(), |n| format!("all {n}"))
}

/// If a live server of `path` is full (its socket is set aside as `<path>.busy`): the
/// error that says so ([`busy`]).
pub(crate) fn busy_error(path: &Path, name: &PipeName) -> Option<io::Error> {
    fs::symlink_metadata(busy_path(path))
        .is_ok_and(|m| m.file_type().is_socket())
        .then(|| busy(path, &name.to_string()))
}

/// `WouldBlock`: the server of `what` at `path` (socket or FIFO directory) is full, with its
/// instance limit from its lock file.
pub(crate) fn busy(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        format!(
            "the server of {what} is busy: {} instances are taken",
            limit_of(path)
        ),
    )
}

/// The lock file of the server at `path`: `<path>.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}
