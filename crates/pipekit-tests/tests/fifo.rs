//! The FIFO transport across processes: a `pipekit-peer --fifo` server, pipekit and Python
//! clients, hostile request records, and one-way FIFOs written from a shell.
#![cfg(unix)]

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use pipekit::os::unix::fifo::{Receiver, Sender};
use pipekit::os::unix::{ListenerExt, StreamExt, Transport, UnixOptions, socket_path};
use pipekit::{Listener, ListenerOptions, Mode, PipeName, Stream};
use pipekit_tests::{
    Peer, connect_options, pattern, ten_lines_echoed, ten_messages_to_printing_peer, unique_name,
};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");
const PY_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/fifo_client.py");

fn fifo_listener(name: &str, mode: Mode) -> Listener {
    let mut unix = UnixOptions::new();
    unix.transport(Transport::Fifo);
    Listener::bind_unix(name, ListenerOptions::new().mode(mode), &unix).unwrap()
}

/// The server directory holds nothing but its request FIFO.
fn assert_only_requests(dir: &Path) {
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["requests"], "{} holds {names:?}", dir.display());
}

#[test]
fn ten_messages_over_fifos_and_the_directory_is_clean() {
    let name = unique_name("fifo-ten");
    let mut peer = Peer::start(
        PEER,
        &[
            "serve", &name, "messages", "reply", "OK", "--print", "--fifo",
        ],
    );
    let dir = socket_path(name.as_str()).unwrap();
    assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
    let mut client = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap();
    assert_eq!(client.transport(), Transport::Fifo);
    ten_messages_to_printing_peer(&mut client, &mut peer);
    assert_only_requests(&dir);
    drop(client);
    drop(peer);
}

#[test]
fn byte_mode_echo_and_65535_byte_writes_over_fifos() {
    let name = unique_name("fifo-bytes");
    let _peer = Peer::start(PEER, &["serve", &name, "bytes", "echo", "--fifo"]);
    let mut client = Stream::connect(name.as_str()).unwrap();
    ten_lines_echoed(&mut client);
    // The echo of 65535 bytes fits the FIFO's 64 KiB buffer, so writing all before reading
    // cannot deadlock.
    let big = pattern(65535, 3);
    client.write_all(&big).unwrap();
    let mut back = vec![0u8; big.len()];
    client.read_exact(&mut back).unwrap();
    assert!(back == big, "the 65535 bytes came back changed");
}

#[test]
fn full_size_messages_over_fifos() {
    let name = unique_name("fifo-full");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo", "--fifo"]);
    let client = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap();
    for seed in 0..3 {
        let msg = pattern(65535, seed);
        client.send(&msg).unwrap();
        let mut back = Vec::new();
        assert_eq!(client.recv_to_vec(&mut back).unwrap(), Some(65535));
        assert!(back == msg, "the 65535-byte message came back changed");
    }
}

#[test]
fn fifty_concurrent_clients_every_message_checked() {
    let name = unique_name("fifo-fifty");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo", "--fifo"]);
    let clients: Vec<_> = (0..50u32)
        .map(|c| {
            let name = name.clone();
            thread::spawn(move || {
                let mut options = connect_options(Mode::Messages);
                options.wait(Some(Duration::from_secs(20)));
                let conn = Stream::connect_with(name.as_str(), &options).unwrap();
                let mut reply = Vec::new();
                for m in 0..50u32 {
                    let mut msg = format!("client {c} message {m} ").into_bytes();
                    msg.extend(pattern((c * 53 + m * 17) as usize % 5000, m as u8));
                    conn.send(&msg).unwrap();
                    assert_eq!(conn.recv_to_vec(&mut reply).unwrap(), Some(msg.len()));
                    assert!(reply == msg, "client {c} message {m} came back changed");
                }
                conn.shutdown_write().unwrap();
                assert_eq!(conn.recv_to_vec(&mut reply).unwrap(), None);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_only_requests(&socket_path(name.as_str()).unwrap());
}

#[test]
fn killed_fifo_server_is_eof_then_broken_pipe_and_the_name_is_reusable() {
    let name = unique_name("fifo-killed");
    let mut peer = Peer::start(PEER, &["serve", &name, "messages", "echo", "--fifo"]);
    let client = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap();
    client.send(b"before").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(client.recv(&mut buf).unwrap(), Some(6));
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.recv(&mut buf).unwrap(), None);
    let err = client.send(b"after").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");

    // The dead server's directory is stale: a client is told so, a new server takes it.
    let err = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let again = fifo_listener(&name, Mode::Messages);
    assert_only_requests(again.path().unwrap());
    let dir = again.path().unwrap().to_path_buf();
    drop(again);
    assert!(!dir.exists(), "the directory outlived its listener");
}

#[test]
fn a_client_killed_mid_handshake_does_not_stop_the_server() {
    let name = unique_name("fifo-die");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo", "--fifo"]);
    let dir = socket_path(name.as_str()).unwrap();
    let status = Command::new("python3")
        .args([PY_CLIENT, dir.to_str().unwrap(), "--die-mid-handshake"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let client = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap();
    client.send(b"still serving").unwrap();
    let mut back = Vec::new();
    client.recv_to_vec(&mut back).unwrap();
    assert_eq!(back, b"still serving");
    assert_only_requests(&dir);
}

#[test]
fn hostile_request_records_are_refused_without_disturbing_clients() {
    let name = unique_name("fifo-hostile");
    let listener = fifo_listener(&name, Mode::Messages);
    let dir = listener.path().unwrap().to_path_buf();
    thread::scope(|scope| {
        let server = scope.spawn(|| -> io::Result<Vec<u8>> {
            let conn = listener.accept()?;
            let mut msg = Vec::new();
            conn.recv_to_vec(&mut msg)?;
            conn.send(&msg)?;
            Ok(msg)
        });

        // Decoys the records below name: a regular file and symlinks where FIFOs should be.
        let outside = std::env::temp_dir().join(format!("{name}-target"));
        fs::write(&outside, b"not to be touched").unwrap();
        let regular = "R".repeat(32);
        let linked = "L".repeat(32);
        fs::write(dir.join(format!("{regular}.c2s")), b"x").unwrap();
        fs::write(dir.join(format!("{regular}.s2c")), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(format!("{linked}.c2s"))).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(format!("{linked}.s2c"))).unwrap();

        let mut requests = OpenOptions::new()
            .write(true)
            .custom_flags(libc_o_nonblock())
            .open(dir.join("requests"))
            .unwrap();
        let dots = format!("PKF1 M ../{}\n", "a".repeat(29));
        let slash = format!("PKF1 M a/{}\n", "b".repeat(30));
        let missing = format!("PKF1 M {}\n", "m".repeat(32));
        for junk in [
            "garbage\n".to_string(),
            "PKF1 M short\n".to_string(),
            format!("PKF1 M {}\n", "w".repeat(40)),
            dots,
            slash,
            missing,
            format!("PKF1 M {regular}\n"),
            format!("PKF1 M {linked}\n"),
            "no newline at all, then a record follows: ".to_string(),
        ] {
            requests.write_all(junk.as_bytes()).unwrap();
        }
        drop(requests);

        let client = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap();
        client.send(b"real client").unwrap();
        let mut back = Vec::new();
        client.recv_to_vec(&mut back).unwrap();
        assert_eq!(back, b"real client");
        assert_eq!(server.join().unwrap().unwrap(), b"real client");
        assert_eq!(fs::read(&outside).unwrap(), b"not to be touched");
        fs::remove_file(&outside).unwrap();
        assert_only_requests(&dir);
    });
}

/// `O_NONBLOCK`, so opening the request FIFO never waits.
fn libc_o_nonblock() -> i32 {
    nix::fcntl::OFlag::O_NONBLOCK.bits()
}

#[test]
fn mode_mismatch_over_fifos_is_invalid_input() {
    let name = unique_name("fifo-mode");
    let _peer = Peer::start(PEER, &["serve", &name, "bytes", "echo", "--fifo"]);
    let err = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("messages mode"), "{err}");
    assert_only_requests(&socket_path(name.as_str()).unwrap());
}

#[test]
fn a_python_client_written_from_the_protocol_talks_to_a_fifo_server() {
    let name = unique_name("fifo-py");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo", "--fifo"]);
    let dir = socket_path(name.as_str()).unwrap();
    let mut child = Command::new("python3")
        .args([PY_CLIENT, dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = (1..=10).map(|i| format!("hello {i}")).collect();
    let mut stdin = child.stdin.take().unwrap();
    for line in &lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python client failed");
    let got: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, lines);
    assert_only_requests(&dir);
}

#[test]
fn a_shell_printf_reaches_a_receiver() {
    let name = PipeName::new(&unique_name("inbox")).unwrap();
    let inbox = Receiver::bind(&name).unwrap();
    let path: PathBuf = inbox.path().to_path_buf();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
    for word in ["first", "second"] {
        let status = Command::new("sh")
            .args([
                "-c",
                "printf '%s\\n' \"$1\" > \"$2\"",
                "sh",
                word,
                path.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut lines = BufReader::new(inbox).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    drop(lines);
    assert!(!path.exists(), "the inbox FIFO outlived its receiver");
}

#[test]
fn a_sender_without_a_reader_is_a_clear_error() {
    let name = PipeName::new(&unique_name("noreader")).unwrap();
    let err = Sender::open(&name).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

    let path = socket_path(&name).unwrap();
    let status = Command::new("mkfifo")
        .args(["-m", "600", path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let err = Sender::open(&name).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
    assert!(err.to_string().contains("no reader"), "{err}");
    fs::remove_file(&path).unwrap();

    // A symlink to a FIFO is not followed.
    let real = std::env::temp_dir().join(format!("{name}-real"));
    assert!(
        Command::new("mkfifo")
            .arg(&real)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let err = Sender::open(&name).unwrap_err();
    assert_ne!(err.kind(), io::ErrorKind::NotConnected, "{err}");
    fs::remove_file(&path).unwrap();
    fs::remove_file(&real).unwrap();
}

/// Two Python clients announce themselves and then never answer the server's handshake; a
/// client that comes after them is served at once, not after their deadlines (one at a time
/// they would take 2 x 5 s, past the new client's own 5 s handshake deadline).
#[test]
fn stalled_handshake_clients_do_not_delay_another_client() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let name = unique_name("fifo-stall");
    let listener = fifo_listener(&name, Mode::Messages);
    let dir = socket_path(name.as_str()).unwrap();
    let stallers: Vec<_> = (0..2)
        .map(|_| {
            let mut child = Command::new("python3")
                .args([PY_CLIENT, dir.to_str().unwrap(), "--stall-mid-handshake"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line, "announced\n");
            child
        })
        .collect();
    let server = thread::spawn(move || {
        let conn = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = conn.recv(&mut buf).unwrap().unwrap();
        conn.send(&buf[..n]).unwrap();
    });
    let start = Instant::now();
    let client = Stream::connect_with(name.as_str(), &connect_options(Mode::Messages))
        .expect("the client behind two stalled ones was not served in time");
    client.send(b"through").unwrap();
    let mut reply = Vec::new();
    client.recv_to_vec(&mut reply).unwrap();
    assert_eq!(reply, b"through");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    server.join().unwrap();
    for mut child in stallers {
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}
