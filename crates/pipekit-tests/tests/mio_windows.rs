//! mio on Windows named pipes: one thread, one event loop, 1000 concurrent message-mode
//! connections from 10 client processes, every message checked by the clients; the readiness
//! edge cases; a byte-mode pipe handed to `mio::windows::NamedPipe`.
#![cfg(windows)]

mod common;

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use pipekit::os::windows::StreamExt;
use pipekit::{ConnectOptions, Listener, ListenerOptions, MessageTooLarge, Mode, Stream};
use pipekit_tests::{check_client_processes, client_processes, pattern, unique_name};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

fn bind(name: &str, mode: Mode) -> pipekit::nonblocking::Listener {
    Listener::bind_with(name, ListenerOptions::new().mode(mode))
        .unwrap()
        .into_nonblocking()
        .unwrap()
}

#[test]
fn one_mio_thread_serves_1000_message_connections() {
    let name = unique_name("mio-win-1000");
    let listener = bind(&name, Mode::Messages);
    let children = client_processes(PEER, &name, 10, 100, 10);
    let echoed = common::mio_echo(listener, 1000).unwrap();
    assert_eq!(echoed, 1000 * 10);
    check_client_processes(children, 100);
}

fn messages() -> ConnectOptions {
    let mut options = ConnectOptions::new();
    options.mode(Mode::Messages);
    options
}

/// Waits for the next event of the single source registered on `poll`.
fn wait(poll: &mut Poll, events: &mut Events) {
    poll.poll(events, Some(Duration::from_secs(20))).unwrap();
    assert!(!events.is_empty(), "no event within 20 s");
}

#[test]
fn non_blocking_edge_cases() {
    let name = unique_name("mio-win-edge");
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages).max_message_size(8 << 20);
    let listener = Listener::bind_with(name.as_str(), &options).unwrap();
    let mut connect = messages();
    connect.max_message_size(8 << 20);
    // An instance is always waiting, so connecting first and accepting next does not block.
    let mut client = Stream::connect_with(name.as_str(), &connect)
        .unwrap()
        .into_nonblocking()
        .unwrap();
    let mut server = listener.accept().unwrap().into_nonblocking().unwrap();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&mut server, Token(1), Interest::READABLE)
        .unwrap();

    // A client that connects and never sends: WouldBlock, not an error or the end.
    let err = server.try_recv(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");

    // A small buffer: the size is reported, the message kept; a size past mio's 4 KiB buffer
    // arrives whole.
    client.try_send(&pattern(5000, 1)).unwrap();
    let mut got = Vec::new();
    let err = loop {
        match server.try_recv(&mut [0u8; 10]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&mut poll, &mut events),
            other => break other.unwrap_err(),
        }
    };
    assert_eq!(MessageTooLarge::from_io(&err).unwrap().size, 5000);
    assert_eq!(server.try_recv_to_vec(&mut got).unwrap(), Some(5000));
    assert!(got == pattern(5000, 1));

    // The peer hands over a message far longer than the pipe's buffer and closes at once:
    // the write goes on after the drop, the message arrives whole, then the end.
    let big = pattern(4 << 20, 2);
    client.try_send(&big).unwrap();
    drop(client);
    let mut received = Vec::new();
    loop {
        match server.try_recv_to_vec(&mut got) {
            Ok(Some(n)) => {
                assert!(got == big, "the message changed");
                received.push(n);
            }
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&mut poll, &mut events),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(received, [big.len()], "only whole messages, then the end");
    let err = server.try_send(b"anyone?").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
}

#[test]
fn byte_mode_goes_to_mio_named_pipe() {
    let name = unique_name("mio-win-bytes");
    let listener = Listener::bind(name.as_str()).unwrap();
    let client = std::thread::spawn({
        let name = name.clone();
        move || {
            let mut c = Stream::connect(name.as_str()).unwrap();
            let data = pattern(100_000, 3);
            c.write_all(&data).unwrap();
            let mut back = vec![0u8; data.len()];
            c.read_exact(&mut back).unwrap();
            assert!(back == data, "bytes came back changed");
        }
    });
    let mut pipe = listener.accept().unwrap().into_mio().unwrap();
    // A message-mode stream is refused: mio's pipe would split its messages.
    let name2 = unique_name("mio-win-msg");
    let messages_listener =
        Listener::bind_with(name2.as_str(), ListenerOptions::new().mode(Mode::Messages)).unwrap();
    let _c = Stream::connect_with(name2.as_str(), &messages()).unwrap();
    let err = messages_listener.accept().unwrap().into_mio().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&mut pipe, Token(0), Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    let mut pending = Vec::new();
    let mut echoed = 0;
    let mut buf = vec![0u8; 65536];
    while echoed < 100_000 {
        wait(&mut poll, &mut events);
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        while !pending.is_empty() {
            match pipe.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                    echoed += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    client.join().unwrap();
}

#[test]
fn a_pipe_handed_to_mio_keeps_its_place_under_the_instance_limit() {
    let name = unique_name("mio-win-limit");
    let listener = Listener::bind_with(
        name.as_str(),
        ListenerOptions::new().max_instances(std::num::NonZeroU8::new(1)),
    )
    .unwrap();
    let first = std::thread::spawn({
        let name = name.clone();
        move || Stream::connect(name.as_str()).unwrap()
    });
    let pipe = listener.accept().unwrap().into_mio().unwrap();
    let first = first.join().unwrap();
    // The one place is the mio pipe's: the next accept waits for it, and a client finds
    // every instance busy meanwhile.
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let next = listener.accept();
        let _ = accepted_tx.send(());
        next.map(drop)
    });
    let mut options = ConnectOptions::new();
    options.wait(Some(Duration::from_millis(300)));
    let err = Stream::connect_with(name.as_str(), &options)
        .expect_err("a second client got in while the mio pipe holds the only place");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(
        accepted_rx.try_recv().is_err(),
        "accept went on while the place was taken"
    );
    // Dropping the mio pipe gives the place back: the next client gets in.
    drop(pipe);
    drop(first);
    let second = std::thread::spawn({
        let name = name.clone();
        move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                match Stream::connect_with(name.as_str(), &options) {
                    Ok(s) => return s,
                    Err(e) if std::time::Instant::now() < deadline => drop(e),
                    Err(e) => panic!("no place came back: {e}"),
                }
            }
        }
    });
    server.join().unwrap().unwrap();
    drop(second.join().unwrap());
}
