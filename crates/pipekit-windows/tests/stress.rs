//! The non-blocking engine under churn: 10 000 connections made and dropped with connects,
//! reads and writes in flight, listeners dropped with a connect in flight. Every message that
//! arrives carries its connection's number and is checked whole: a stale completion (one
//! operation's end taken for another's) or a buffer written after it was freed shows up as a
//! wrong or torn message, a crash, or a hang.
#![cfg(windows)]

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PipeName};
use pipekit_windows::nonblocking;
use pipekit_windows::{Listener, Stream, WindowsOptions};

const CONNECTIONS: u32 = 10_000;
const MAX: usize = 1 << 20;

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `poll` until it is ready, failing after a minute (a hang).
fn drive<T>(what: &str, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = poll(&mut cx) {
            return value;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what} hung");
        thread::park_timeout(left);
    }
}

/// Connection `n`'s message: its length and every byte follow from `n`.
fn message(n: u32) -> Vec<u8> {
    let len = 1 + (n as usize * 7919) % 150_000;
    let mut msg: Vec<u8> = (0..len)
        .map(|i| (n as usize).wrapping_add(i) as u8)
        .collect();
    for (byte, of_n) in msg.iter_mut().zip(n.to_le_bytes()) {
        *byte = of_n;
    }
    msg
}

fn check(n: u32, got: &[u8], side: &str) {
    assert!(
        got == message(n).as_slice(),
        "{side} of connection {n}: a {}-byte message that is not its own",
        got.len()
    );
}

fn bind(name: &PipeName) -> nonblocking::Listener {
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages).max_message_size(MAX);
    nonblocking::Listener::new(Listener::bind_with(name, &options, &WindowsOptions::new()).unwrap())
        .unwrap()
}

#[test]
fn ten_thousand_streams_dropped_with_operations_in_flight() {
    let name = PipeName::new(&format!("stress-{}", std::process::id())).unwrap();
    let mut listener = bind(&name);
    // Both sides meet after every 1000th connection, while the server drops its listener
    // (with the next instance's connect in flight) and binds a new one.
    let rebound = Arc::new(std::sync::Barrier::new(2));
    let clients = thread::spawn({
        let name = name.clone();
        let rebound = Arc::clone(&rebound);
        move || -> io::Result<()> {
            let mut options = ConnectOptions::new();
            options
                .mode(Mode::Messages)
                .max_message_size(MAX)
                .wait(Some(Duration::from_secs(60)));
            let mut n = 0;
            while n < CONNECTIONS {
                let stream = match Stream::connect_with(&name, &options) {
                    Ok(stream) => stream,
                    // Between two listeners, or between an instance's close and the next.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        thread::yield_now();
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut stream = nonblocking::Stream::new(stream)?;
                match n % 4 {
                    // Dropped with its read-ahead in flight.
                    0 => {}
                    // A message sent, then dropped (the write may be in flight).
                    1 => drive("a client send", |cx| stream.poll_send(cx, &message(n)))?,
                    // The server's message received and checked, then one sent back.
                    2 => {
                        let mut got = Vec::new();
                        let received =
                            drive("a client recv", |cx| stream.poll_recv_to_vec(cx, &mut got))?;
                        assert!(
                            received.is_some(),
                            "connection {n}: the server's message was lost"
                        );
                        check(n, &got, "the client");
                        let _ = drive("a client send", |cx| stream.poll_send(cx, &message(n)));
                    }
                    // A receive polled once (the read in flight has a waker), then dropped.
                    _ => {
                        let waker = Waker::from(Arc::new(Unpark(thread::current())));
                        let mut buf = [0u8; 16];
                        let _ = stream.poll_recv(&mut Context::from_waker(&waker), &mut buf);
                    }
                }
                drop(stream);
                n += 1;
                if n % 1000 == 0 {
                    rebound.wait();
                }
            }
            Ok(())
        }
    });
    let mut checked = 0u32;
    for n in 0..CONNECTIONS {
        let Some(mut server) = drive_accept(&listener, &clients) else {
            // The clients stopped early: their error says why.
            break;
        };
        match n % 4 {
            1 => {
                let mut got = Vec::new();
                let received = drive("a server recv", |cx| server.poll_recv_to_vec(cx, &mut got));
                match received {
                    Ok(Some(_)) => {
                        check(n, &got, "the server");
                        checked += 1;
                    }
                    // Accepted for sending before the client's drop: delivered.
                    Ok(None) => panic!("connection {n}: the client's message was lost"),
                    Err(e) => panic!("connection {n}: {e}"),
                }
            }
            2 => {
                // Written while the client reads; maybe still in flight at the drop.
                drive("a server send", |cx| server.poll_send(cx, &message(n))).unwrap();
            }
            _ => {}
        }
        drop(server);
        if (n + 1) % 1000 == 0 {
            drop(listener);
            listener = bind(&name);
            rebound.wait();
        }
    }
    clients.join().unwrap().unwrap();
    assert!(checked > 0, "no message was checked");
}

/// Accepts the next client, or `None` once the clients are done.
fn drive_accept(
    listener: &nonblocking::Listener,
    clients: &thread::JoinHandle<io::Result<()>>,
) -> Option<nonblocking::Stream> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(result) = listener.poll_accept(&mut cx) {
            return Some(result.unwrap());
        }
        if clients.is_finished() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "accept hung");
        thread::park_timeout(left.min(Duration::from_millis(50)));
    }
}
