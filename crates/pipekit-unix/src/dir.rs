//! Where names live: the environment for resolution and the private per-user directory.

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

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

/// Creates `dir` with mode 0700 if it is missing, then checks that it is a real directory
/// (not a symlink), owned by this user, and closed to everyone else.
///
/// # Errors
///
/// `PermissionDenied` naming the directory and what is wrong with it; the OS error if it
/// cannot be created.
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
    let meta = fs::symlink_metadata(dir)
        .map_err(|e| context(e, format!("cannot inspect {}", dir.display())))?;
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to use {} as a private directory: {why}",
                dir.display()
            ),
        )
    };
    if !meta.file_type().is_dir() {
        return Err(refuse("it is not a directory (or is a symlink)".into()));
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(refuse(format!(
            "it is owned by uid {}, not {uid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {:04o}, open to others (expected 0700)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}
