//! A single-threaded mio echo server in message mode, serving many clients at once, with
//! the same code on every OS ([`pipekit::nonblocking`]): Unix sockets or, with `--fifo`,
//! FIFOs; message-mode named pipes on Windows.
//!
//! ```text
//! cargo run -p pipekit-examples --example mio_echo -- NAME [--fifo]
//! pipekit send NAME --messages --wait-reply hello      # in another terminal
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;

use mio::{Events, Interest, Poll, Token};
use pipekit::{Listener, ListenerOptions, Mode};

fn bind(name: &str, fifo: bool) -> io::Result<Listener> {
    let options = ListenerOptions::new().mode(Mode::Messages).clone();
    #[cfg(unix)]
    {
        use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
        let mut unix = UnixOptions::new();
        if fifo {
            unix.transport(Transport::Fifo);
        }
        Listener::bind_unix(name, &options, &unix)
    }
    #[cfg(not(unix))]
    {
        if fifo {
            eprintln!("--fifo: FIFOs are a Unix transport; serving a named pipe");
        }
        Listener::bind_with(name, &options)
    }
}

fn main() -> io::Result<()> {
    const LISTENER: Token = Token(0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("test_pipe", String::as_str);
    let fifo = args.iter().any(|a| a == "--fifo");
    let mut listener = bind(name, fifo)?.into_nonblocking()?;
    let both = Interest::READABLE | Interest::WRITABLE;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, both)?;
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
                            poll.registry().register(&mut stream, token, both)?;
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
            // Whatever the event says: receive until WouldBlock, then send what waits.
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
            let sent = stream.try_flush().and_then(|()| {
                while let Some(reply) = outbox.front() {
                    stream.try_send(reply)?;
                    outbox.pop_front();
                }
                Ok(())
            });
            match sent {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    eprintln!("client: {e}");
                    done = true;
                }
            }
            if done && let Some((mut stream, _)) = clients.remove(&event.token()) {
                poll.registry().deregister(&mut stream)?;
            }
        }
    }
}
