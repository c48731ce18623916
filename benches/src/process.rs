//! Starting and stopping the other processes of a measurement.

use std::io::{self, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::pin::Pinning;
use crate::protocol::{PEER_ENV, Spec};

/// A running peer. Dropping it stops it: SIGTERM first (it removes what it made), SIGKILL
/// if it has not exited within a second.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Where the peer listens (what a server's `ready` line said).
    pub(crate) addr: String,
    _stop: cleanup::Guard,
}

impl PeerProcess {
    /// Starts a peer and waits for its `ready` line.
    pub(crate) fn start(spec: &Spec, pinning: Pinning) -> io::Result<PeerProcess> {
        if cleanup::stopping() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the run is being stopped",
            ));
        }
        let spec = Spec {
            cpu: pinning.peer_cpu(),
            ..spec.clone()
        };
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env(PEER_ENV, spec.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Started and registered in one step: a stop in between would miss the peer.
        let (mut child, stop) = cleanup::made_with_exit(|| {
            let child = command.spawn()?;
            let pid = child.id();
            Ok((child, Box::new(move || terminate(pid)) as cleanup::Action))
        })?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let line = read_line(&mut stdout)?;
        let mut peer = PeerProcess {
            child,
            stdin,
            stdout,
            addr: String::new(),
            _stop: stop,
        };
        let Some(addr) = line.strip_prefix("ready") else {
            let status = peer.child.wait()?;
            return Err(io::Error::other(format!(
                "the {} peer did not start ({status})",
                spec.transport.name()
            )));
        };
        peer.addr = addr.trim().to_string();
        Ok(peer)
    }

    /// Tells a client peer to start measuring.
    pub(crate) fn go(&mut self) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        stdin.write_all(b"go\n")?;
        stdin.flush()
    }

    /// A client peer's result line, without its `done ` prefix.
    pub(crate) fn result(&mut self) -> io::Result<String> {
        let line = read_line(&mut self.stdout)?;
        line.strip_prefix("done")
            .map(|rest| rest.trim().to_string())
            .ok_or_else(|| io::Error::other("a client peer ended without a result"))
    }

    /// Waits up to half a second for the peer to exit by itself (it was told to stop, or saw
    /// the end of its connection); a peer still running then is stopped on drop.
    pub(crate) fn wait_a_while(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                _ => return,
            }
        }
    }

    /// Waits for the peer to exit by itself.
    pub(crate) fn wait(mut self) -> io::Result<()> {
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("benchmark peer failed: {status}")))
        }
    }
}

/// One line from a peer's stdout, read byte by byte so nothing after it is consumed.
fn read_line(out: &mut ChildStdout) -> io::Result<String> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Asks process `pid` to stop (SIGTERM: a peer removes what it made), and kills it if it
/// is still there after a second.
#[cfg(unix)]
fn terminate(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return,
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Windows peers leave nothing behind; the `Child` kills them on drop.
#[cfg(not(unix))]
fn terminate(_pid: u32) {}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        drop(self.stdin.take());
        #[cfg(unix)]
        terminate(self.child.id());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
