//! Records what built the `pipekit` command, for `pipekit bench`'s JSON: the compiler's
//! version (`PIPEKIT_RUSTC`) and, when built from a git checkout, the commit
//! (`PIPEKIT_COMMIT`; a value already in the environment wins).

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PIPEKIT_RUSTC={version}");
    println!("cargo:rerun-if-env-changed=PIPEKIT_COMMIT");
    if std::env::var_os("PIPEKIT_COMMIT").is_none()
        && let Some(commit) = output(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]))
    {
        println!("cargo:rustc-env=PIPEKIT_COMMIT={commit}");
        if let Some(head) = output(Command::new("git").args(["rev-parse", "--git-path", "HEAD"])) {
            println!("cargo:rerun-if-changed={head}");
        }
    }
}

/// The command's first line of output, if it ran and succeeded.
fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}
