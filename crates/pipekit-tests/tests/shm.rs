//! Shared-memory connections: the same model over two rings in a private segment, with the
//! socket kept for the start, wake-ups and the peer's death.
#![cfg(unix)]

use std::io::{self, Read, Write};

use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
use pipekit_tests::unique_name;

/// Ring capacity of the tests that do not say otherwise.
const CAPACITY: usize = 1 << 20;

fn listen_options(mode: Mode, capacity: usize) -> ListenerOptions {
    let mut options = ListenerOptions::new();
    options
        .mode(mode)
        .max_message_size(65536)
        .shared_memory(Some(capacity));
    options
}

fn connect_options(mode: Mode) -> ConnectOptions {
    let mut options = ConnectOptions::new();
    options
        .mode(mode)
        .max_message_size(65536)
        .shared_memory(true);
    options
}

/// A connected pair that runs over shared memory both ways: (server, client).
fn pair(
    name: &str,
    listen: &ListenerOptions,
    connect: &ConnectOptions,
) -> io::Result<(Stream, Stream)> {
    let listener = Listener::bind_with(name, listen)?;
    let client = Stream::connect_with(name, connect)?;
    let server = listener.accept()?;
    assert!(
        server.is_shared_memory(),
        "the server offered shared memory"
    );
    assert!(client.is_shared_memory(), "the client took the offer");
    Ok((server, client))
}

/// The behaviour suite of every transport, on shared memory: in byte mode and in message
/// mode, on `SOCK_SEQPACKET` (Linux) and on framed stream sockets.
#[test]
fn behaviour_suite_over_shared_memory() {
    let name = unique_name("shm-suite");
    let bytes = (
        listen_options(Mode::Bytes, CAPACITY),
        connect_options(Mode::Bytes),
    );
    pipekit_core::testing::bytes_suite(|| pair(&name, &bytes.0, &bytes.1));
    let messages = (
        listen_options(Mode::Messages, CAPACITY),
        connect_options(Mode::Messages),
    );
    pipekit_core::testing::messages_suite(|| pair(&name, &messages.0, &messages.1));
}

/// What a client sends before the offer reaches it goes over the socket and is read first;
/// then the rest over the ring, in order, in both modes.
#[test]
fn writes_before_the_offer_are_read_before_the_ring() {
    for mode in [Mode::Bytes, Mode::Messages] {
        let name = unique_name("shm-before");
        let listener = Listener::bind_with(&name, &listen_options(mode, CAPACITY)).unwrap();
        let mut client = Stream::connect_with(&name, &connect_options(mode)).unwrap();
        // Not accepted yet: no offer can have come, so these go over the socket.
        for i in 0..3u8 {
            client.write_all(&[i; 100]).unwrap();
        }
        let server = listener.accept().unwrap();
        for i in 3..6u8 {
            client.write_all(&[i; 100]).unwrap();
        }
        assert!(client.is_shared_memory());
        let mut server = server;
        for i in 0..6u8 {
            let mut got = [0u8; 100];
            server.read_exact(&mut got).unwrap();
            assert_eq!(got, [i; 100], "{mode:?} piece {i}");
        }
        drop(client);
        assert_eq!(server.read(&mut [0u8; 8]).unwrap(), 0, "{mode:?}: the end");
    }
}
