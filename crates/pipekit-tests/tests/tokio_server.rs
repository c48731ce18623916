//! A Tokio server on one thread (current-thread runtime) serving 1000 concurrent message-mode
//! connections from 10 client processes, over sockets and over FIFOs; plus byte mode through
//! `AsyncRead`/`AsyncWrite`.
#![cfg(unix)]

mod common;

use std::io;

use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
use pipekit::tokio::{Listener, Stream};
use pipekit::{ListenerOptions, MessageTooLarge, Mode};
use pipekit_tests::{check_client_processes, client_processes, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard).unwrap();
}

fn bind(name: &str, mode: Mode, transport: Transport) -> io::Result<Listener> {
    let mut unix = UnixOptions::new();
    unix.transport(transport);
    let listener = pipekit::Listener::bind_unix(name, ListenerOptions::new().mode(mode), &unix)?;
    Listener::from_blocking(listener)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

fn thousand_connections(transport: Transport) {
    raise_fd_limit();
    let name = unique_name("tokio-1000");
    runtime().block_on(async {
        let listener = bind(&name, Mode::Messages, transport).unwrap();
        let children = client_processes(PEER, &name, 10, 100, 10);
        let total = common::echo_connections(&listener, 1000).await;
        assert_eq!(total, 1000 * 10);
        check_client_processes(children, 100);
    });
}

#[test]
fn tokio_serves_1000_socket_connections_on_one_thread() {
    thousand_connections(Transport::Socket);
}

#[test]
fn tokio_serves_1000_fifo_connections_on_one_thread() {
    thousand_connections(Transport::Fifo);
}

#[test]
fn tokio_byte_mode_and_message_sizes() {
    for transport in [Transport::Socket, Transport::Fifo] {
        runtime().block_on(async {
            // Bytes through AsyncRead/AsyncWrite, 1 MiB each way at once.
            let name = unique_name("tokio-bytes");
            let listener = bind(&name, Mode::Bytes, transport).unwrap();
            let server = tokio::spawn(async move {
                let mut conn = listener.accept().await?;
                let mut got = Vec::new();
                conn.read_to_end(&mut got).await?;
                conn.write_all(&got).await?;
                conn.shutdown().await?;
                Ok::<_, io::Error>(got.len())
            });
            let mut client = Stream::connect(name.as_str()).await.unwrap();
            let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            assert!(back == data, "{transport:?}: bytes came back changed");
            assert_eq!(server.await.unwrap().unwrap(), 1 << 20);

            // A message larger than the buffer: its size is reported, it stays readable.
            let name = unique_name("tokio-msg");
            let listener = bind(&name, Mode::Messages, transport).unwrap();
            let mut options = pipekit::ConnectOptions::new();
            options.mode(Mode::Messages);
            let (accepted, client) = tokio::join!(
                listener.accept(),
                Stream::connect_with(name.as_str(), &options)
            );
            let (mut server, mut client) = (accepted.unwrap(), client.unwrap());
            client.send(&[3u8; 65535]).await.unwrap();
            client.send(b"").await.unwrap();
            let err = server.recv(&mut [0u8; 100]).await.unwrap_err();
            assert_eq!(MessageTooLarge::from_io(&err).unwrap().size, 65535);
            let mut whole = Vec::new();
            assert_eq!(server.recv_to_vec(&mut whole).await.unwrap(), Some(65535));
            assert_eq!(
                server.recv(&mut [0u8; 8]).await.unwrap(),
                Some(0),
                "empty message"
            );
            drop(client);
            assert_eq!(server.recv(&mut [0u8; 8]).await.unwrap(), None);
        });
    }
}
