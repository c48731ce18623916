//! The classic named-pipe exchange, in message mode with 65535-byte buffers: the client
//! sends "1" .. "10", the server prints each message and answers "OK".
//!
//! ```text
//! cargo run -p pipekit-examples --example echo            # both, in two processes
//! cargo run -p pipekit-examples --example echo -- server  # just the server
//! cargo run -p pipekit-examples --example echo -- client  # just the client
//! ```
//!
//! An optional second argument names the pipe (default `test_pipe`).

use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};

const BUFFER: usize = 65535;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map(String::as_str).unwrap_or("both");
    let name = args.get(1).map(String::as_str).unwrap_or("test_pipe");
    match role {
        "server" => server(name, 1),
        "client" => client(name),
        "both" => both(name),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown role {other:?}: use server, client or nothing"),
        )),
    }
}

/// Serves `clients` clients one after the other, like the classic loop on
/// `ConnectNamedPipe` / `ReadFile` / `WriteFile` / `DisconnectNamedPipe`.
fn server(name: &str, clients: usize) -> io::Result<()> {
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages);
    let listener = Listener::bind_with(name, &options)?;
    println!("server: listening on {name}");
    io::stdout().flush()?;
    let mut buf = vec![0u8; BUFFER];
    for _ in 0..clients {
        let pipe = listener.accept()?;
        while let Some(n) = pipe.recv(&mut buf)? {
            println!("server: got {:?}", String::from_utf8_lossy(&buf[..n]));
            pipe.send(b"OK")?;
        }
        println!("server: client disconnected");
    }
    Ok(())
}

fn client(name: &str) -> io::Result<()> {
    let mut options = ConnectOptions::new();
    options
        .mode(Mode::Messages)
        .wait(Some(Duration::from_secs(5)));
    let pipe = Stream::connect_with(name, &options)?;
    let mut buf = vec![0u8; BUFFER];
    for i in 1..=10 {
        pipe.send(i.to_string().as_bytes())?;
        let n = pipe.recv(&mut buf)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the pipe")
        })?;
        println!(
            "client: sent {i}, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    Ok(())
}

/// Runs the server in a child process (this program again) and the client here.
fn both(name: &str) -> io::Result<()> {
    let mut server = Command::new(std::env::current_exe()?)
        .args(["server", name])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = io::BufRead::lines(io::BufReader::new(server.stdout.take().unwrap()));
    // The server says it is listening before the client starts.
    if let Some(line) = lines.next() {
        println!("{}", line?);
    }
    let printer = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    let result = client(name);
    let status = server.wait()?;
    let _ = printer.join();
    result?;
    if !status.success() {
        return Err(io::Error::other(format!("server exited with {status}")));
    }
    Ok(())
}
