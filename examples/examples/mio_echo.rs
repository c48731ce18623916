//! A single-threaded mio echo server in message mode, serving many clients at once (Unix
//! sockets or, with `--fifo`, FIFOs; on Windows, message-mode named pipes through
//! `pipekit::os::windows::nonblocking`).
//!
//! ```text
//! cargo run -p pipekit-examples --example mio_echo -- NAME [--fifo]
//! pipekit send NAME --messages --wait-reply hello      # in another terminal
//! ```

#[cfg(unix)]
fn main() -> std::io::Result<()> {
    use std::collections::HashMap;
    use std::io;

    use mio::{Events, Interest, Poll, Token};
    use pipekit::os::unix::{ListenerExt, StreamExt, Transport, UnixOptions};
    use pipekit::{Listener, ListenerOptions, Mode};

    const LISTENER: Token = Token(0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("test_pipe", String::as_str);
    let mut unix = UnixOptions::new();
    if args.iter().any(|a| a == "--fifo") {
        unix.transport(Transport::Fifo);
    }
    let mut listener =
        Listener::bind_unix(name, ListenerOptions::new().mode(Mode::Messages), &unix)?;
    listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let mut clients = HashMap::new();
    let mut next = 1;
    let mut buf = vec![0u8; 65535];
    println!("serving {name} (Ctrl-C to stop)");
    loop {
        poll.poll(&mut events, None)?;
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok(mut stream) => {
                            stream.set_nonblocking(true)?;
                            let token = Token(next);
                            next += 1;
                            poll.registry()
                                .register(&mut stream, token, Interest::READABLE)?;
                            clients.insert(token, stream);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let Some(stream) = clients.get_mut(&event.token()) else {
                continue;
            };
            let mut done = false;
            loop {
                match stream.recv(&mut buf) {
                    // Replies are small and rare here; a server that can fill its peer's
                    // buffer keeps an outbox and waits for writable (see the tests).
                    Ok(Some(n)) => stream.send(&buf[..n])?,
                    Ok(None) => {
                        done = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("client: {e}");
                        done = true;
                        break;
                    }
                }
            }
            if done && let Some(mut stream) = clients.remove(&event.token()) {
                poll.registry().deregister(&mut stream)?;
            }
        }
    }
}

#[cfg(windows)]
fn main() -> std::io::Result<()> {
    use std::collections::{HashMap, VecDeque};
    use std::io;

    use mio::{Events, Interest, Poll, Token};
    use pipekit::os::windows::ListenerExt;
    use pipekit::{Listener, ListenerOptions, Mode};

    const LISTENER: Token = Token(0);
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "test_pipe".into());
    let mut listener =
        Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))?
            .into_nonblocking()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let mut clients = HashMap::new();
    let mut next = 1;
    let mut buf = vec![0u8; 65535];
    println!("serving {name} (Ctrl-C to stop)");
    loop {
        poll.poll(&mut events, None)?;
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok(mut stream) => {
                            let token = Token(next);
                            next += 1;
                            poll.registry()
                                .register(&mut stream, token, Interest::READABLE)?;
                            clients.insert(token, (stream, VecDeque::<Vec<u8>>::new()));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let Some((stream, outbox)) = clients.get_mut(&event.token()) else {
                continue;
            };
            // An event may stand for a message or for the end of a send: try both.
            let mut done = false;
            loop {
                match stream.try_recv(&mut buf) {
                    Ok(Some(n)) => outbox.push_back(buf[..n].to_vec()),
                    Ok(None) => {
                        done = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("client: {e}");
                        done = true;
                        break;
                    }
                }
            }
            while let Some(reply) = outbox.front() {
                match stream.try_send(reply) {
                    Ok(()) => drop(outbox.pop_front()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("client: {e}");
                        done = true;
                        break;
                    }
                }
            }
            if done && let Some((mut stream, _)) = clients.remove(&event.token()) {
                poll.registry().deregister(&mut stream)?;
            }
        }
    }
}

#[cfg(not(any(unix, windows)))]
fn main() {
    eprintln!("the mio example serves Unix sockets and FIFOs, and Windows named pipes");
}
