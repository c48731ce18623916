/// Who is on the other end of a connection, as the OS reports it.
///
/// Each field is `None` where the OS does not report it (Windows has no uid/gid; some Unix
/// systems report no pid).
///
/// # Platform-specific behavior
///
/// Linux: `SO_PEERCRED` (pid, uid, gid of the peer when it connected or listened).
/// macOS: `getpeereid` plus `LOCAL_PEERPID`. FreeBSD and other BSDs: `getpeereid`.
/// Windows: `GetNamedPipeClientProcessId` / `GetNamedPipeServerProcessId`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's process id.
    pub pid: Option<u32>,
    /// The peer's effective user id.
    pub uid: Option<u32>,
    /// The peer's effective group id.
    pub gid: Option<u32>,
}

impl PeerCredentials {
    /// Credentials with the given fields, for backends to build.
    pub fn new(pid: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> Self {
        PeerCredentials { pid, uid, gid }
    }
}
