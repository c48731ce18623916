//! Options only Windows pipes have: remote clients and the security descriptor.

/// Windows-only options, beside the portable
/// [`ListenerOptions`](pipekit_core::ListenerOptions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowsOptions {
    /// Whether clients on other machines may connect (default `false`:
    /// `PIPE_REJECT_REMOTE_CLIENTS`).
    pub remote_clients: bool,
    /// The pipe's security descriptor as an SDDL string; `None` (the default) is owner-only.
    pub security: Option<String>,
}

impl WindowsOptions {
    /// The defaults: local clients only, owner-only access.
    pub fn new() -> WindowsOptions {
        WindowsOptions::default()
    }

    /// Lets clients on other machines connect (`false` sets `PIPE_REJECT_REMOTE_CLIENTS`).
    ///
    /// A remote client opens `\\server\pipe\name` over SMB and is authenticated by the
    /// server's domain or local accounts; it is then checked against the security descriptor
    /// as its user, like a local client. So with the owner-only default, only the server's own
    /// account may connect from elsewhere (a domain account, or a local account with the same
    /// name and password on both machines). To admit
    /// others, grant them [`CLIENT_ACCESS`](crate::CLIENT_ACCESS) in [`security`](Self::security)
    /// — the well-known SIDs tell remote from local users: `NU` (network logon users) are the
    /// remote ones, `IU` (interactive) the local ones, `AU` every authenticated user on both.
    /// A descriptor that denies `NU` (`(D;;GA;;;NU)`, first in the DACL) keeps a pipe local
    /// even with this flag. SMB signs and may encrypt the traffic as the machines' policy
    /// says; pipekit adds nothing. Across Unix and Windows machines use `tls://` names.
    ///
    /// ```
    /// use pipekit_windows::{CLIENT_ACCESS, WindowsOptions, current_user_sid};
    ///
    /// let me = current_user_sid()?;
    /// let mut options = WindowsOptions::new();
    /// // This user anywhere; other users of the network may connect, and only connect.
    /// options.remote_clients(true).security(format!(
    ///     "D:P(A;;GA;;;SY)(A;;GA;;;{me})(A;;{CLIENT_ACCESS:#x};;;NU)"
    /// ));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn remote_clients(&mut self, allow: bool) -> &mut Self {
        self.remote_clients = allow;
        self
    }

    /// Uses the security descriptor written as `sddl` instead of the owner-only default. An
    /// SDDL string that does not parse makes `bind` fail with `InvalidInput`.
    ///
    /// To let other users connect, grant them [`CLIENT_ACCESS`](crate::CLIENT_ACCESS) and nothing more. `GRGW`
    /// (generic read and write) would also grant `FILE_CREATE_PIPE_INSTANCE` (the same bit as
    /// `FILE_APPEND_DATA`, part of `GENERIC_WRITE`): any of them could then create instances
    /// of the name and answer some of its clients. The server's own user keeps full access
    /// (it creates the instances):
    ///
    /// ```
    /// use pipekit_windows::{CLIENT_ACCESS, WindowsOptions, current_user_sid};
    ///
    /// let me = current_user_sid()?;
    /// let mut options = WindowsOptions::new();
    /// // SYSTEM and this user: everything; every signed-in user: connect.
    /// options.security(format!(
    ///     "D:P(A;;GA;;;SY)(A;;GA;;;{me})(A;;{CLIENT_ACCESS:#x};;;AU)"
    /// ));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// pipekit clients ask for exactly [`CLIENT_ACCESS`](crate::CLIENT_ACCESS). Other clients often ask for
    /// `GENERIC_READ | GENERIC_WRITE` (.NET's `NamedPipeClientStream` with
    /// `PipeDirection.InOut`, `win32file.CreateFile` as usually written): against such a
    /// descriptor they are refused, unless they run as a user granted more.
    pub fn security(&mut self, sddl: impl Into<String>) -> &mut Self {
        self.security = Some(sddl.into());
        self
    }

    /// Goes back to the owner-only default security descriptor.
    pub fn owner_only(&mut self) -> &mut Self {
        self.security = None;
        self
    }
}
