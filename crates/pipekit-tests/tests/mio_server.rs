//! One thread, one mio event loop, 1000 concurrent client connections from separate
//! processes (10 × 100), every message checked — over sockets and over FIFOs. Plus the
//! readiness edge cases.
#![cfg(unix)]

mod common;

use std::io::{self, Write};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use pipekit::os::unix::{ListenerExt, StreamExt, Transport, UnixOptions};
use pipekit::{ConnectOptions, Listener, ListenerOptions, MessageTooLarge, Mode, Stream};
use pipekit_tests::{check_client_processes, client_processes, unique_name};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");
const LISTENER: Token = Token(usize::MAX);

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard).unwrap();
}

fn bind(name: &str, transport: Transport) -> Listener {
    let mut unix = UnixOptions::new();
    unix.transport(transport);
    Listener::bind_unix(name, ListenerOptions::new().mode(Mode::Messages), &unix).unwrap()
}

fn thousand_connections(transport: Transport) {
    raise_fd_limit();
    let name = unique_name("mio-1000");
    let listener = bind(&name, transport);
    let children = client_processes(PEER, &name, 10, 100, 10);
    let echoed = common::mio_echo(listener.into_nonblocking().unwrap(), 1000).unwrap();
    assert_eq!(echoed, 1000 * 10);
    check_client_processes(children, 100);
}

#[test]
fn one_mio_thread_serves_1000_socket_connections() {
    thousand_connections(Transport::Socket);
}

#[test]
fn one_mio_thread_serves_1000_fifo_connections() {
    thousand_connections(Transport::Fifo);
}

/// A connected non-blocking pair: (server side, client side).
fn pair(transport: Transport) -> (Stream, Stream) {
    let name = unique_name("mio-edge");
    let listener = bind(&name, transport);
    let client = std::thread::spawn(move || {
        let mut options = ConnectOptions::new();
        options.mode(Mode::Messages);
        Stream::connect_with(name.as_str(), &options).unwrap()
    });
    let server = listener.accept().unwrap();
    let client = client.join().unwrap();
    server.set_nonblocking(true).unwrap();
    client.set_nonblocking(true).unwrap();
    (server, client)
}

#[test]
fn non_blocking_edge_cases() {
    for transport in [Transport::Socket, Transport::Fifo] {
        // A client that connects and never sends: recv is WouldBlock, not an error or EOF.
        let (mut server, client) = pair(transport);
        let err = server.recv(&mut [0u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{transport:?}");

        // A small buffer in non-blocking mode: the size is reported, the message kept.
        client.send(&[5u8; 1000]).unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut server, Token(1), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(!events.is_empty(), "{transport:?}: no readable event");
        let err = server.recv(&mut [0u8; 10]).unwrap_err();
        assert_eq!(
            MessageTooLarge::from_io(&err).unwrap().size,
            1000,
            "{transport:?}"
        );
        let mut whole = Vec::new();
        assert_eq!(server.recv_to_vec(&mut whole).unwrap(), Some(1000));

        // The peer closes while a message is half-sent: the reader sees EOF (or an error
        // naming the cut), never a made-up message.
        let big = vec![9u8; 4 << 20];
        let _ = client.send(&big);
        drop(client);
        let mut got = Vec::new();
        loop {
            match server.recv_to_vec(&mut got) {
                Ok(Some(n)) => assert_eq!(n, big.len(), "{transport:?}: only whole messages"),
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll.poll(&mut events, Some(Duration::from_secs(10)))
                        .unwrap();
                }
                Err(e) => {
                    assert!(
                        matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof
                                | io::ErrorKind::InvalidData
                                | io::ErrorKind::BrokenPipe
                        ),
                        "{transport:?}: {e}"
                    );
                    break;
                }
            }
        }
        let _ = server.flush();
    }
}

/// A mio listener at its instance limit: `accept` is `WouldBlock` (never a wait), a client
/// beyond the limit is held off, and readiness comes back once a place frees — the waiting
/// client then connects and is accepted. Sockets and FIFOs.
#[test]
fn a_listener_at_its_limit_is_would_block_and_ready_again_when_a_place_frees() {
    for transport in [Transport::Socket, Transport::Fifo] {
        let name = unique_name("mio-limit");
        let mut unix = UnixOptions::new();
        unix.transport(transport);
        let mut options = ListenerOptions::new();
        options.max_instances(std::num::NonZeroU8::new(1));
        let mut listener = Listener::bind_unix(name.as_str(), &options, &unix).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(16);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .unwrap();
        let connect = || {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut options = ConnectOptions::new();
                options.wait(Some(Duration::from_secs(20)));
                Stream::connect_with(name.as_str(), &options).unwrap()
            })
        };
        // Waits for readiness and accepts; `None` if accept stays WouldBlock.
        let mut accept_ready = |listener: &Listener| loop {
            poll.poll(&mut events, Some(Duration::from_secs(20)))
                .unwrap();
            assert!(
                !events.is_empty(),
                "{transport:?}: no readiness within 20 s"
            );
            match listener.accept() {
                Ok(stream) => return stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{transport:?}: {e}"),
            }
        };
        let first_client = connect();
        let first = accept_ready(&listener);
        let first_client = first_client.join().unwrap();

        let err = listener.accept().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{transport:?}");
        assert!(err.to_string().contains("all 1 instances"), "{err}");
        let second_client = connect();
        drop(first);
        drop(first_client);
        let mut second = accept_ready(&listener);
        let mut second_client = second_client.join().unwrap();
        second_client.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        io::Read::read_exact(&mut second, &mut byte).unwrap();
        assert_eq!(&byte, b"x", "{transport:?}");
    }
}
