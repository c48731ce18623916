//! Interop with peers nobody here wrote: Python's `socket` module on the resolved path.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use pipekit::Stream;
use pipekit::os::unix::{ensure_private_dir, socket_path};
use pipekit_tests::{Peer, unique_name};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

const PY_SERVER: &str = r#"
import os, socket, sys
path, kind = sys.argv[1], sys.argv[2]
ty = socket.SOCK_SEQPACKET if kind == "seqpacket" else socket.SOCK_STREAM
s = socket.socket(socket.AF_UNIX, ty)
s.bind(path)
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
if kind == "seqpacket":
    while True:
        m = c.recv(1 << 20)
        if not m:
            break
        c.send(b"py:" + m)
else:
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    c.sendall(b"py:" + data)
c.close()
s.close()
os.unlink(path)
"#;

const PY_CLIENT: &str = r#"
import socket, sys
path, kind = sys.argv[1], sys.argv[2]
ty = socket.SOCK_SEQPACKET if kind == "seqpacket" else socket.SOCK_STREAM
s = socket.socket(socket.AF_UNIX, ty)
s.connect(path)
msgs = [str(i).encode() for i in range(1, 11)] + [bytes(range(256)) * 255 + b"end"]
if kind == "seqpacket":
    for m in msgs:
        s.send(m)
        r = s.recv(1 << 20)
        assert r == m, (len(r), len(m))
else:
    blob = b"".join(msgs)
    s.sendall(blob)
    got = b""
    while len(got) < len(blob):
        chunk = s.recv(65536)
        assert chunk, "EOF before the echo was complete"
        got += chunk
    assert got == blob
s.close()
print("ok", flush=True)
"#;

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    cmd
}

/// Starts the Python server on `name`'s resolved path and waits until it listens.
fn python_server(name: &str, kind: &str) -> std::process::Child {
    let path = socket_path(name).unwrap();
    ensure_private_dir(path.parent().unwrap()).unwrap();
    let mut child = python()
        .args(["-c", PY_SERVER])
        .arg(&path)
        .arg(kind)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (ci/test.sh installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

#[test]
fn pipekit_client_talks_to_a_python_stream_server() {
    let name = unique_name("py-stream-srv");
    let mut server = python_server(&name, "stream");
    let mut client = Stream::connect(&name).unwrap();
    client.write_all(b"hello from rust").unwrap();
    client.shutdown_write().unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"py:hello from rust");
    assert!(server.wait().unwrap().success());
}

#[cfg(target_os = "linux")]
#[test]
fn pipekit_client_talks_to_a_python_seqpacket_server() {
    let name = unique_name("py-seq-srv");
    let mut server = python_server(&name, "seqpacket");
    let mut options = pipekit::ConnectOptions::new();
    options.mode(pipekit::Mode::Messages);
    let client = Stream::connect_with(&name, &options).unwrap();
    let mut reply = Vec::new();
    for msg in [b"hello".to_vec(), vec![7u8; 65535], b"last".to_vec()] {
        client.send(&msg).unwrap();
        assert_eq!(client.recv_to_vec(&mut reply).unwrap(), Some(msg.len() + 3));
        assert_eq!(&reply[..3], b"py:");
        assert!(reply[3..] == msg[..], "a message came back changed");
    }
    drop(client);
    assert!(server.wait().unwrap().success());
}

fn python_client_against_peer(mode: &str, kind: &str) {
    let name = unique_name("py-client");
    let mut peer = Peer::start(
        PEER,
        &["serve", &name, mode, "echo", "--print", "--clients", "1"],
    );
    let printed = peer.collect_lines();
    let path = socket_path(&name).unwrap();
    let out = python()
        .args(["-c", PY_CLIENT])
        .arg(&path)
        .arg(kind)
        .output()
        .unwrap();
    assert!(out.status.success(), "python client failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    assert!(
        peer.child.wait().unwrap().success(),
        "the peer exits after its client"
    );
    let printed = printed.join().unwrap();
    if mode == "messages" {
        let expected: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
        assert_eq!(printed[..10], expected[..]);
        assert!(printed.len() > 10, "the large message is printed too");
    } else {
        assert!(printed.concat().starts_with("12345678910"), "{printed:?}");
    }
}

#[test]
fn python_stream_client_talks_to_a_pipekit_server() {
    python_client_against_peer("bytes", "stream");
}

#[cfg(target_os = "linux")]
#[test]
fn python_seqpacket_client_talks_to_a_pipekit_server() {
    python_client_against_peer("messages", "seqpacket");
}
