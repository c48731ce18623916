//! Where names live: the environment for resolution and the private per-user directory.

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use pipekit_core::UnixEnv;
use pipekit_core::error::context;

use crate::sys;

/// The environment this process resolves names in: its effective uid, `$TMPDIR` (or `/tmp`),
/// `$XDG_RUNTIME_DIR` when it is safe, this OS's `sun_path` size and abstract namespace.
///
/// `XDG_RUNTIME_DIR` is used only when it is an absolute path to a directory (not a symlink)
/// owned by this user and writable by nobody else.
pub fn env() -> UnixEnv {
    let uid = nix::unistd::geteuid().as_raw();
    let temp = absolute_var("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
    let runtime = absolute_var("XDG_RUNTIME_DIR").filter(|dir| {
        fs::symlink_metadata(dir)
            .is_ok_and(|m| m.file_type().is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
    });
    let dotnet_tmpdir = std::env::var("TMPDIR").ok();
    let mut env = UnixEnv::new(uid, temp);
    env.dotnet_tmpdir(dotnet_tmpdir.as_deref())
        .runtime_dir(runtime)
        .sun_path_len(sys::SUN_PATH_LEN)
        .abstract_namespace(sys::ABSTRACT_NAMESPACE);
    env
}

fn absolute_var(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v: &OsString| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Creates `dir` with mode 0700 if it is missing, then checks it as
/// [`check_private_dir`] does.
///
/// # Errors
///
/// `PermissionDenied` naming the directory, its owner and mode; the OS error if it cannot
/// be created.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(context(
                e,
                format!("cannot create private directory {}", dir.display()),
            ));
        }
    }
    check_private_dir(dir)
}

/// Checks that `dir` is a real directory (not a symlink), owned by this process's effective
/// uid, with mode 0700 (nothing for group or others). The check is made on the opened
/// directory (`open(O_DIRECTORY | O_NOFOLLOW)` + `fstat`), not on the path, so a symlink or
/// a directory swapped in under the name is refused.
///
/// Listeners run it before they bind and clients before they connect to a portable name:
/// a per-user directory that another user made (or pointed elsewhere with a symlink) is
/// never used.
///
/// # Errors
///
/// `PermissionDenied` naming the path, its owner and its mode; `NotFound` if it does not
/// exist; other OS errors with the path named.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to use {} as a private directory: {why}",
                dir.display()
            ),
        )
    };
    let (uid, mode) = match sys::open_dir_nofollow(dir) {
        Ok(st) => st,
        // With O_NOFOLLOW a symlink fails with ELOOP (or ENOTDIR beside O_DIRECTORY).
        Err(e) if matches!(sys::errno(&e), Errno::ELOOP | Errno::ENOTDIR) => {
            return Err(match fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    refuse(format!("it is a symlink (owned by uid {})", m.uid()))
                }
                _ => refuse("it is not a directory".into()),
            });
        }
        Err(e) => return Err(context(e, format!("cannot open {}", dir.display()))),
    };
    let me = nix::unistd::geteuid().as_raw();
    if uid != me {
        return Err(refuse(format!(
            "it is owned by uid {uid}, not {me} (mode {:04o})",
            mode & 0o7777
        )));
    }
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {:04o}, open to others (expected 0700; owner uid {uid})",
            mode & 0o7777
        )));
    }
    Ok(())
}
