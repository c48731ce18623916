//! Interop with the `interprocess` crate's Windows named pipes in message mode, both ways: a
//! peer process whose pipe code pipekit did not write.
#![cfg(windows)]

use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use pipekit::{ConnectOptions, Listener, ListenerOptions, MessageTooLarge, Mode, Stream};
use pipekit_tests::{Peer, unique_name};

const PEER: &str = env!("CARGO_BIN_EXE_interprocess-peer");

/// The bytes `interprocess-peer client` sends for a message of `size` bytes.
fn message(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + size) as u8).collect()
}

#[test]
fn pipekit_client_talks_to_an_interprocess_server() {
    let name = unique_name("ip-server");
    let path = pipekit::os::windows::pipe_path(name.as_str()).unwrap();
    let mut peer = Peer::start(PEER, &["serve", &path]);
    let mut options = ConnectOptions::new();
    options
        .mode(Mode::Messages)
        .wait(Some(Duration::from_secs(10)));
    let client = Stream::connect_with(name.as_str(), &options).unwrap();

    let mut back = Vec::new();
    for size in [0, 1, 10, 4096, 65535, 3, 0] {
        let msg = message(size);
        client.send(&msg).unwrap();
        assert_eq!(client.recv_to_vec(&mut back).unwrap(), Some(size));
        assert!(back == msg, "the {size}-byte message came back changed");
    }
    // A 65535-byte echo through a 4096-byte buffer: its size is reported, nothing is lost.
    let msg = message(65535);
    client.send(&msg).unwrap();
    let mut small = [0u8; 4096];
    let err = client.recv(&mut small).unwrap_err();
    assert_eq!(MessageTooLarge::from_io(&err).unwrap().size, 65535);
    let mut whole = vec![0u8; 65535];
    assert_eq!(client.recv(&mut whole).unwrap(), Some(65535));
    assert!(whole == msg, "the 65535-byte message came back changed");
    for i in 1..=10 {
        let msg = i.to_string();
        client.send(msg.as_bytes()).unwrap();
        assert_eq!(client.recv_to_vec(&mut back).unwrap(), Some(msg.len()));
        assert_eq!(back, msg.as_bytes());
    }

    drop(client);
    let status = peer.child.wait().unwrap();
    assert!(status.success(), "interprocess server failed: {status}");
}

#[test]
fn interprocess_client_talks_to_a_pipekit_server() {
    let name = unique_name("ip-client");
    let listener =
        Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages)).unwrap();
    let server = thread::spawn(move || -> io::Result<usize> {
        let conn = listener.accept()?;
        let mut buf = Vec::new();
        let mut count = 0;
        while conn.recv_to_vec(&mut buf)?.is_some() {
            assert!(buf == message(buf.len()), "message {count} arrived changed");
            conn.send(&buf)?;
            count += 1;
        }
        Ok(count)
    });

    let sizes = [0usize, 1, 100, 4096, 65535, 2, 0];
    let path = pipekit::os::windows::pipe_path(name.as_str()).unwrap();
    let mut child = pipekit_tests::spawn(
        Command::new(PEER)
            .args(["client", &path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for size in sizes {
        writeln!(stdin, "{size}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "interprocess client failed");
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = sizes.iter().map(|s| format!("ok {s}")).collect();
    assert_eq!(lines, expected);
    assert_eq!(server.join().unwrap().unwrap(), sizes.len());
}

#[test]
fn a_name_squatted_by_another_implementation_is_addr_in_use() {
    let name = unique_name("ip-squat");
    let path = pipekit::os::windows::pipe_path(name.as_str()).unwrap();
    let _squatter = Peer::start(PEER, &["serve", &path]);
    for mode in [Mode::Messages, Mode::Bytes] {
        let err =
            Listener::bind_with(name.as_str(), ListenerOptions::new().mode(mode)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }
}
