//! The non-blocking engine's teardown: streams and listeners dropped while reads, writes and
//! connects are in flight, over and over, with the peer still talking. Nothing may crash,
//! hang or lose a message that was accepted for sending.
#![cfg(windows)]

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PipeName};
use pipekit_windows::nonblocking;
use pipekit_windows::{Listener, Stream, WindowsOptions};

fn name(tag: &str) -> PipeName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    PipeName::new(&format!("t-nb-{tag}-{}-{n}", std::process::id())).unwrap()
}

fn listener(name: &PipeName, max: usize) -> Listener {
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages).max_message_size(max);
    Listener::bind_with(name, &options, &WindowsOptions::new()).unwrap()
}

fn connect(name: &PipeName, max: usize) -> Stream {
    let mut options = ConnectOptions::new();
    options.mode(Mode::Messages).max_message_size(max);
    Stream::connect_with(name, &options).unwrap()
}

/// Wakes a parked thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `poll` on this thread until it is ready, parking in between.
fn block_on<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

#[test]
fn streams_dropped_with_a_read_in_flight_or_mid_conversation() {
    let name = name("drop-read");
    let listener = listener(&name, 1 << 20);
    for round in 0..100 {
        let mut client = connect(&name, 1 << 20);
        let server = listener.accept().unwrap();
        let mut server = nonblocking::Stream::new(server).unwrap();
        let talker = thread::spawn(move || {
            // Talks until the server is gone.
            for i in 0u32.. {
                if client
                    .send(&vec![i as u8; 1 + (i as usize * 997) % 70_000])
                    .is_err()
                {
                    return i;
                }
            }
            unreachable!()
        });
        // Take a few messages (round 0: none, the read-ahead is in flight or done), then drop.
        let mut buf = Vec::new();
        for _ in 0..round % 5 {
            let got = block_on(|cx| server.poll_recv_to_vec(cx, &mut buf)).unwrap();
            assert!(got.is_some());
        }
        drop(server);
        let sent = talker.join().unwrap();
        assert!(sent >= (round % 5) as u32);
    }
}

#[test]
fn a_send_accepted_before_the_drop_is_delivered() {
    let name = name("drop-write");
    let listener = listener(&name, 8 << 20);
    for round in 0..20 {
        let mut client = connect(&name, 8 << 20);
        let mut server = nonblocking::Stream::new(listener.accept().unwrap()).unwrap();
        // Longer than the pipe's buffer: the write is in flight when the stream goes.
        let msg = vec![round as u8; 2 << 20];
        block_on(|cx| server.poll_send(cx, &msg)).unwrap();
        drop(server);
        let mut got = Vec::new();
        assert_eq!(client.recv_to_vec(&mut got).unwrap(), Some(msg.len()));
        assert!(got == msg, "round {round}: the message changed");
        assert_eq!(client.recv_to_vec(&mut got).unwrap(), None);
    }
}

#[test]
fn listeners_dropped_while_waiting_or_while_clients_arrive() {
    for round in 0..50 {
        let name = name("drop-listener");
        let nb = nonblocking::Listener::new(listener(&name, 1 << 20)).unwrap();
        if round % 2 == 0 {
            // Nobody came: the connect in flight is cancelled.
            drop(nb);
            continue;
        }
        let client = thread::spawn({
            let name = name.clone();
            move || {
                let mut options = ConnectOptions::new();
                options.mode(Mode::Messages);
                Stream::connect_with(&name, &options).map(|_| ())
            }
        });
        let accepted = block_on(|cx| nb.poll_accept(cx)).unwrap();
        drop(nb);
        drop(accepted);
        client.join().unwrap().unwrap();
        // The name is free again.
        let again = listener(&name, 1 << 20);
        drop(again);
    }
}

#[test]
fn accept_hands_out_connected_clients_in_both_modes() -> io::Result<()> {
    let name = name("accept");
    let mut options = ListenerOptions::new();
    options.mode(Mode::Bytes);
    let nb = nonblocking::Listener::new(Listener::bind_with(
        &name,
        &options,
        &WindowsOptions::new(),
    )?)?;
    assert_eq!(
        nb.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "nobody connected yet"
    );
    let _client = Stream::connect_with(&name, &ConnectOptions::new())?;
    let stream = block_on(|cx| nb.poll_accept(cx))?;
    assert_eq!(stream.mode(), Mode::Bytes);
    let mut byte_stream = stream;
    let err = byte_stream.try_recv(&mut [0u8; 4]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let (handle, server_end, _slot) = byte_stream.into_parts()?;
    assert!(server_end);
    drop(handle);

    Ok(())
}

#[test]
fn the_instance_limit_holds_and_a_freed_place_wakes_accept() -> io::Result<()> {
    let name = name("limit");
    let mut options = ListenerOptions::new();
    options
        .mode(Mode::Messages)
        .max_instances(std::num::NonZeroU8::new(1));
    let nb = nonblocking::Listener::new(Listener::bind_with(
        &name,
        &options,
        &WindowsOptions::new(),
    )?)?;
    let mut first = connect(&name, 1 << 20);
    let mut accepted = block_on(|cx| nb.poll_accept(cx))?;
    // The second client finds the only instance busy and waits for it.
    let second = thread::spawn({
        let name = name.clone();
        move || {
            let mut options = ConnectOptions::new();
            options
                .mode(Mode::Messages)
                .wait(Some(std::time::Duration::from_secs(30)));
            let mut s = Stream::connect_with(&name, &options)?;
            s.send(b"second")?;
            Ok::<_, io::Error>(s)
        }
    });
    assert_eq!(nb.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    first.send(b"first")?;
    let mut buf = Vec::new();
    block_on(|cx| accepted.poll_recv_to_vec(cx, &mut buf))?;
    assert_eq!(buf, b"first");
    // Pending in accept with the limit reached; dropping the stream gives the place back and
    // wakes it.
    let waiting = thread::spawn(move || {
        let mut next = block_on(|cx| nb.poll_accept(cx))?;
        let mut buf = Vec::new();
        block_on(|cx| next.poll_recv_to_vec(cx, &mut buf))?;
        Ok::<_, io::Error>(buf)
    });
    drop(first);
    drop(accepted);
    assert_eq!(waiting.join().unwrap()?, b"second");
    drop(second.join().unwrap()?);
    Ok(())
}
