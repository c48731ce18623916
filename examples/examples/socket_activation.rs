//! A byte-mode echo server for systemd socket activation (or any launcher that speaks the
//! `LISTEN_FDS` protocol): the launcher binds the socket, starts this program with the
//! listening socket as descriptor 3, and pipekit adopts it.
//!
//! With systemd, a socket unit and a service unit:
//!
//! ```text
//! # /etc/systemd/system/echo.socket
//! [Socket]
//! ListenStream=/run/echo.sock
//! SocketMode=0660
//! SocketGroup=echo
//!
//! # /etc/systemd/system/echo.service
//! [Service]
//! ExecStart=/usr/local/bin/socket_activation
//! ```
//!
//! By hand: `systemd-socket-activate -l /tmp/echo.sock ./socket_activation`, then
//! `pipekit connect /tmp/echo.sock`. Without an inherited socket it binds the name given as
//! its argument (default `echo_pipe`) itself.

#[cfg(unix)]
fn main() -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    use pipekit::Listener;

    // `listenfd` checks LISTEN_PID and LISTEN_FDS, and that descriptor 3 is a Unix-domain
    // stream socket; pipekit then checks that it is listening and takes it over.
    let inherited = listenfd::ListenFd::from_env().take_unix_listener(0)?;
    let listener = match inherited {
        Some(socket) => Listener::try_from(OwnedFd::from(socket))?,
        None => Listener::bind(std::env::args().nth(1).as_deref().unwrap_or("echo_pipe"))?,
    };
    eprintln!("serving {}", listener.name());
    for conn in listener.incoming() {
        let mut conn = conn?;
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                conn.write_all(&buf[..n])?;
            }
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn main() {
    eprintln!("socket activation is a Unix protocol; on Windows, bind the pipe by name");
}
