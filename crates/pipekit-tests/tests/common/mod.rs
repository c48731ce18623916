//! Test code shared by the Tokio and mio tests of both OSes.

use std::io;

/// Accepts `conns` message-mode connections on `listener`, each echoed by a task of its own
/// until the peer closes; returns how many messages were echoed in all.
#[allow(dead_code)]
pub(crate) async fn echo_connections(listener: &pipekit::tokio::Listener, conns: usize) -> usize {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut conn = listener.accept().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut echoed = 0;
            while let Some(n) = conn.recv(&mut buf).await? {
                conn.send(&buf[..n]).await?;
                echoed += 1;
            }
            Ok::<_, io::Error>(echoed)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap().unwrap();
    }
    total
}

/// Serves echo on one mio thread until `total` connections have come and gone; returns how
/// many messages it echoed. The same loop on every OS: every source is registered
/// `READABLE | WRITABLE`, and after any event a stream receives until `WouldBlock`, then
/// flushes and sends what waits until `WouldBlock`.
#[allow(dead_code)]
pub(crate) fn mio_echo(
    mut listener: pipekit::nonblocking::Listener,
    total: usize,
) -> io::Result<usize> {
    use std::collections::VecDeque;
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    // Not `usize::MAX`: mio on Windows does not give that token back intact.
    const LISTENER: Token = Token(1 << 30);
    struct Conn {
        stream: pipekit::nonblocking::Stream,
        outbox: VecDeque<Vec<u8>>,
    }
    let both = Interest::READABLE | Interest::WRITABLE;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    poll.registry().register(&mut listener, LISTENER, both)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let (mut accepted, mut finished, mut echoed) = (0, 0, 0);
    let mut buf = vec![0u8; 65536];
    while finished < total {
        poll.poll(&mut events, Some(Duration::from_secs(60)))?;
        if events.is_empty() {
            // The connections whose state stands out (a message or a reply waiting), else the
            // first few.
            let all: Vec<String> = conns
                .iter()
                .flatten()
                .map(|c| format!("{:?} with {} to send", c.stream, c.outbox.len()))
                .collect();
            let odd: Vec<&String> = all
                .iter()
                .filter(|s| {
                    s.contains("waiting") || s.contains("ready") || !s.contains(" 0 to send")
                })
                .take(5)
                .collect();
            let waiting = if odd.is_empty() {
                all.iter().take(3).collect()
            } else {
                odd
            };
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "stalled: {accepted} accepted, {finished} finished; {waiting:?}; \
                     the listener: {listener:?}"
                ),
            ));
        }
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    let mut stream = match listener.accept() {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    let token = Token(conns.len());
                    poll.registry().register(&mut stream, token, both)?;
                    conns.push(Some(Conn {
                        stream,
                        outbox: VecDeque::new(),
                    }));
                    accepted += 1;
                }
                continue;
            }
            let Some(conn) = conns[event.token().0].as_mut() else {
                continue;
            };
            let mut closed = false;
            loop {
                match conn.stream.try_recv(&mut buf) {
                    Ok(Some(n)) => {
                        conn.outbox.push_back(buf[..n].to_vec());
                        echoed += 1;
                    }
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            let sent = conn.stream.try_flush().and_then(|()| {
                while let Some(reply) = conn.outbox.front() {
                    conn.stream.try_send(reply)?;
                    conn.outbox.pop_front();
                }
                Ok(())
            });
            match sent {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client left; what it did not wait for does not matter.
                Err(_) if closed => {}
                Err(e) => return Err(e),
            }
            if closed {
                let mut conn = conns[event.token().0].take().unwrap();
                poll.registry().deregister(&mut conn.stream)?;
                finished += 1;
            }
        }
    }
    Ok(echoed)
}
