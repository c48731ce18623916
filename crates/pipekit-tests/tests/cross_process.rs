//! Cross-process behaviour: a `pipekit-peer` process on the other end of every connection.

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use pipekit::{ConnectOptions, Listener, ListenerOptions, MessageTooLarge, Mode, Stream};
use pipekit_tests::{
    Peer, connect_options, pattern, ten_lines_echoed, ten_messages_to_printing_peer, unique_name,
};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

fn messages() -> ConnectOptions {
    connect_options(Mode::Messages)
}

#[test]
fn ten_message_exchange_in_message_mode() {
    let name = unique_name("ten-msg");
    let mut peer = Peer::start(
        PEER,
        &["serve", &name, "messages", "reply", "OK", "--print"],
    );
    let mut client = Stream::connect_with(&name, &messages()).unwrap();
    ten_messages_to_printing_peer(&mut client, &mut peer);
}

#[test]
fn ten_message_exchange_in_byte_mode() {
    let name = unique_name("ten-bytes");
    let _peer = Peer::start(PEER, &["serve", &name, "bytes", "echo"]);
    let mut client = Stream::connect(&name).unwrap();
    ten_lines_echoed(&mut client);
}

#[test]
fn full_size_message_both_ways_in_message_mode() {
    let name = unique_name("full-msg");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo"]);
    let client = Stream::connect_with(&name, &messages()).unwrap();
    let msg = pattern(65535, 1);
    client.send(&msg).unwrap();
    let mut buf = vec![0u8; 65535];
    assert_eq!(client.recv(&mut buf).unwrap(), Some(65535));
    assert!(buf == msg, "the 65535-byte message came back changed");
}

#[test]
fn full_size_message_both_ways_in_byte_mode() {
    let name = unique_name("full-bytes");
    let _peer = Peer::start(PEER, &["serve", &name, "bytes", "echo"]);
    let mut client = Stream::connect(&name).unwrap();
    let msg = pattern(65535, 2);
    // The peer echoes while we write; 65535 bytes fit the socket buffers both ways.
    client.write_all(&msg).unwrap();
    let mut back = vec![0u8; 65535];
    client.read_exact(&mut back).unwrap();
    assert!(back == msg, "the 65535 bytes came back changed");
}

#[test]
fn hundred_clients_hundred_messages_each() {
    let name = unique_name("hundred");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo"]);
    let clients: Vec<_> = (0..100u32)
        .map(|c| {
            let name = name.clone();
            thread::spawn(move || {
                let mut options = messages();
                options.wait(Some(Duration::from_secs(10)));
                let conn = Stream::connect_with(&name, &options).unwrap();
                let mut reply = Vec::new();
                for m in 0..100u32 {
                    let mut msg = format!("client {c} message {m} ").into_bytes();
                    msg.extend(pattern((c * 37 + m * 11) as usize % 3000, m as u8));
                    conn.send(&msg).unwrap();
                    let got = conn.recv_to_vec(&mut reply).unwrap();
                    assert_eq!(got, Some(msg.len()), "client {c} message {m}");
                    assert!(reply == msg, "client {c} message {m} came back changed");
                }
                // Half-close where the OS has it (not Windows): the server then ends too.
                if conn.shutdown_write().is_ok() {
                    assert_eq!(conn.recv_to_vec(&mut reply).unwrap(), None);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

fn assert_gone(result: io::Result<Option<usize>>) {
    match result {
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => panic!("expected EOF or BrokenPipe, got {other:?}"),
    }
}

#[test]
fn killed_server_is_seen_at_once_and_its_name_is_reusable() {
    for mode in ["messages", "bytes"] {
        let name = unique_name("killed");
        let mut peer = Peer::start(PEER, &["serve", &name, mode, "echo"]);
        let mut options = ConnectOptions::new();
        options.mode(if mode == "messages" {
            Mode::Messages
        } else {
            Mode::Bytes
        });
        let mut client = Stream::connect_with(&name, &options).unwrap();
        client.write_all(b"before").unwrap();
        let mut buf = [0u8; 6];
        client.read_exact(&mut buf).unwrap();
        // Unread data in the server's queue when it dies.
        client.write_all(b"in flight").unwrap();
        peer.child.kill().unwrap();
        peer.child.wait().unwrap();

        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let start = Instant::now();
        let mut read = || {
            let mut buf = [0u8; 64];
            let got = if mode == "messages" {
                client.recv(&mut buf)
            } else {
                client.read(&mut buf).map(|n| (n > 0).then_some(n))
            };
            (got, buf)
        };
        // The server may have echoed "in flight" before it died; what it sent stays
        // readable. After that: the end, at once.
        let (mut seen, buf) = read();
        if let Ok(Some(n)) = seen {
            assert_eq!(&buf[..n], &b"in flight"[..n], "{mode}");
            seen = read().0;
            if n < 9
                && let Ok(Some(_)) = seen
            {
                seen = read().0;
            }
        }
        assert_gone(seen);
        assert!(start.elapsed() < Duration::from_secs(1));
        let err = (0..64)
            .find_map(|_| client.write(&[0u8; 1024]).err())
            .expect("writes to a dead server kept succeeding");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");

        // The dead server's socket file is stale: a new server binds at once.
        let again = Listener::bind(&name).expect("rebinding a dead server's name");
        drop(again);
    }
}

#[test]
fn second_server_on_a_live_name_is_addr_in_use() {
    let name = unique_name("taken");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "reply", "OK"]);
    let err = Listener::bind_with(&name, ListenerOptions::new().mode(Mode::Messages)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&name), "{err}");

    let status = std::process::Command::new(PEER)
        .args(["serve", &name, "messages"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "a second peer process must fail with AddrInUse"
    );

    let client = Stream::connect_with(&name, &messages()).unwrap();
    client.send(b"still serving?").unwrap();
    let mut reply = Vec::new();
    client.recv_to_vec(&mut reply).unwrap();
    assert_eq!(reply, b"OK");
}

#[test]
fn bad_names_are_invalid_input() {
    let long = "n".repeat(300);
    for bad in ["", "a\0b", ".", "..", r"a\b", long.as_str(), "@"] {
        let err = Listener::bind(bad).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "bind {bad:?}: {err}"
        );
        let err = Stream::connect(bad).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "connect {bad:?}: {err}"
        );
    }
    let err = Listener::bind(long.as_str()).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // A name for the other OS's namespace.
    let foreign = if cfg!(windows) {
        "/tmp/unix-only"
    } else {
        r"\\.\pipe\windows-only"
    };
    let err = Stream::connect(foreign).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn no_server_is_not_found_at_once_and_a_wait_times_out() {
    let name = unique_name("absent");
    let start = Instant::now();
    let err = Stream::connect(&name).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(start.elapsed() < Duration::from_secs(1));

    let mut options = ConnectOptions::new();
    options.wait(Some(Duration::from_millis(200)));
    let err = Stream::connect_with(&name, &options).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn a_waiting_client_connects_when_the_server_arrives() {
    let name = unique_name("late");
    let waiter = {
        let name = name.clone();
        thread::spawn(move || {
            let mut options = messages();
            options.wait(Some(Duration::from_secs(20)));
            let conn = Stream::connect_with(&name, &options)?;
            conn.send(b"hi")?;
            let mut reply = Vec::new();
            conn.recv_to_vec(&mut reply)?;
            Ok::<_, io::Error>(reply)
        })
    };
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "reply", "OK"]);
    assert_eq!(waiter.join().unwrap().unwrap(), b"OK");
}

#[test]
fn mode_mismatch_is_a_clear_error() {
    let name = unique_name("mismatch");
    let _peer = Peer::start(PEER, &["serve", &name, "bytes", "echo"]);
    #[cfg(unix)]
    let native = pipekit::os::unix::NATIVE_MESSAGES;
    #[cfg(windows)]
    let native = true;
    if native {
        let err = Stream::connect_with(&name, &messages()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("messages mode"), "{err}");
    }
}

#[test]
fn oversized_messages_are_refused_with_their_size_and_the_next_arrives() {
    let name = unique_name("oversized");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "big", "5000"]);
    let mut options = messages();
    options.max_message_size(8192);
    let client = Stream::connect_with(&name, &options).unwrap();

    // Sending over the maximum: refused before anything is sent.
    let err = client.send(&vec![1u8; 8193]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("8193"), "{err}");

    // Receiving into a small buffer: the size is named, and the message is kept.
    client.send(b"next").unwrap();
    let mut small = [0u8; 100];
    let err = client.recv(&mut small).unwrap_err();
    let report = MessageTooLarge::from_io(&err).expect("a MessageTooLarge report");
    assert_eq!(report.size, 5004);
    assert!(err.to_string().contains("5004"), "{err}");
    let mut whole = Vec::new();
    assert_eq!(client.recv_to_vec(&mut whole).unwrap(), Some(5004));
    assert_eq!(&whole[5000..], b"next");
    assert!(whole[..5000].iter().all(|&b| b == 0xA5));
}

#[test]
fn peer_credentials_name_the_peer_process() {
    let name = unique_name("cred");
    let peer = Peer::start(PEER, &["serve", &name, "messages", "echo"]);
    let client = Stream::connect_with(&name, &messages()).unwrap();
    let cred = client.peer_credentials().unwrap();
    if cfg!(any(target_os = "linux", target_os = "macos", windows)) {
        assert_eq!(cred.pid, Some(peer.child.id()));
    }
    // Windows reports no uid.
    assert_eq!(cred.uid.is_some(), cfg!(unix));
}

#[cfg(unix)]
#[test]
fn files_are_private_and_removed_on_drop() {
    use pipekit::os::unix::{ListenerExt, socket_path};
    use std::os::unix::fs::PermissionsExt;

    let name = unique_name("files");
    let listener = Listener::bind(&name).unwrap();
    let path = socket_path(&name).unwrap();
    assert_eq!(listener.path(), Some(path.as_path()));
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode();
    assert_eq!(mode(&path) & 0o777, 0o600, "socket mode");
    assert_eq!(
        mode(path.parent().unwrap()) & 0o777,
        0o700,
        "directory mode"
    );
    let lock = path.with_file_name(format!("{name}.lock"));
    assert!(lock.exists());
    drop(listener);
    assert!(!path.exists(), "the socket file is removed on drop");
    assert!(!lock.exists(), "the lock file is removed on drop");
}

#[cfg(unix)]
#[test]
fn explicit_paths_are_bound_owner_only_and_never_replace_other_files() {
    use std::os::unix::fs::PermissionsExt;

    let dir = std::env::temp_dir().join(unique_name("dir"));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("app.sock");
    let listener = Listener::bind(path.to_str().unwrap()).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut client = Stream::connect(path.to_str().unwrap()).unwrap();
    let mut served = listener.accept().unwrap();
    client.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    served.read_exact(&mut b).unwrap();
    drop((client, served, listener));

    let regular = dir.join("data.txt");
    std::fs::write(&regular, b"keep me").unwrap();
    let err = Listener::bind(regular.to_str().unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(std::fs::read(&regular).unwrap(), b"keep me");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ways a connection can be made, for the tests that run on each.
#[derive(Clone, Copy, Debug)]
enum Wire {
    /// The default transport: sockets on Unix, named pipes on Windows.
    Native(Mode),
    /// Unix: message mode framed on a `SOCK_STREAM` socket.
    #[cfg(unix)]
    Framed,
    /// Unix: the FIFO transport.
    #[cfg(unix)]
    Fifo(Mode),
}

impl Wire {
    /// Every way this OS has.
    fn all() -> Vec<Wire> {
        let mut all = vec![Wire::Native(Mode::Bytes)];
        if cfg!(any(windows, target_os = "linux", target_os = "android")) {
            all.push(Wire::Native(Mode::Messages));
        }
        #[cfg(unix)]
        all.extend([
            Wire::Framed,
            Wire::Fifo(Mode::Bytes),
            Wire::Fifo(Mode::Messages),
        ]);
        all
    }

    fn mode(self) -> Mode {
        match self {
            Wire::Native(mode) => mode,
            #[cfg(unix)]
            Wire::Framed => Mode::Messages,
            #[cfg(unix)]
            Wire::Fifo(mode) => mode,
        }
    }

    /// Binds `name` this way.
    fn bind(self, name: &str) -> Listener {
        let mut options = ListenerOptions::new();
        options.mode(self.mode());
        match self {
            Wire::Native(_) => Listener::bind_with(name, &options).unwrap(),
            #[cfg(unix)]
            Wire::Framed | Wire::Fifo(_) => {
                use pipekit::os::unix::{Framing, ListenerExt, Transport, UnixOptions};
                let mut unix = UnixOptions::new();
                if let Wire::Fifo(_) = self {
                    unix.transport(Transport::Fifo);
                } else {
                    unix.framing(Framing::LengthPrefixed);
                }
                Listener::bind_unix(name, &options, &unix).unwrap()
            }
        }
    }

    /// The peer's `duplex` command line for `name`.
    fn duplex_args(self, name: &str, pieces: usize, via: pipekit_tests::Via) -> Vec<String> {
        let framed = match self {
            #[cfg(unix)]
            Wire::Framed => Some("--framed".to_string()),
            _ => None,
        };
        let args = [
            "duplex".to_string(),
            name.to_string(),
            self.mode().to_string(),
            pieces.to_string(),
            via.to_string(),
        ];
        args.into_iter().chain(framed).collect()
    }
}

/// Both ends write 6 MiB and read 6 MiB at once, on every transport and mode this OS has:
/// this process through `&Stream` from two threads while the peer process uses a
/// `try_clone`, then the other way round.
#[test]
fn both_ends_write_and_read_6_mib_at_once_on_every_transport() {
    use pipekit_tests::Via;
    let pieces = (6 << 20) / pipekit_tests::DUPLEX_PIECE;
    for wire in Wire::all() {
        for (ours, theirs) in [(Via::Shared, Via::Clone), (Via::Clone, Via::Shared)] {
            let name = unique_name("duplex");
            let listener = wire.bind(&name);
            let child = pipekit_tests::spawn(
                std::process::Command::new(PEER)
                    .args(wire.duplex_args(&name, pieces, theirs))
                    .stdout(std::process::Stdio::piped()),
            )
            .unwrap();
            let conn = listener.accept().unwrap();
            let result = pipekit_tests::duplex(&conn, ours, 2, 1, pieces);
            let out = child.wait_with_output().unwrap();
            result.unwrap_or_else(|e| panic!("{wire:?}, {ours} here: {e}"));
            assert!(
                out.status.success(),
                "{wire:?}, {theirs} in the peer: it failed"
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{wire:?}");
        }
    }
}

/// Two threads receiving on one `&Stream` take whole messages in turn: 200 messages of up to
/// 128 KiB go to an echo peer process while two threads here receive the echoes; every
/// message arrives whole, exactly once, in one of the two threads (native messages and, on
/// Unix, framed FIFO messages).
#[test]
fn two_threads_receiving_on_one_stream_take_whole_messages_in_turn() {
    const COUNT: u32 = 200;
    let size = |i: u32| 4 + (i as usize * 7919) % (128 << 10);
    let message = |i: u32| {
        let mut msg = pattern(size(i), i as u8);
        msg[..4].copy_from_slice(&i.to_be_bytes());
        msg
    };
    let mut fifo = vec![false];
    if !cfg!(any(windows, target_os = "linux", target_os = "android")) {
        fifo.clear();
    }
    if cfg!(unix) {
        fifo.push(true);
    }
    for fifo in fifo {
        let name = unique_name("take-turns");
        let mut args = vec!["serve", &name, "messages", "echo"];
        if fifo {
            args.push("--fifo");
        }
        let _peer = Peer::start(PEER, &args);
        let conn = Stream::connect_with(&name, &messages()).unwrap();
        let got: Vec<Vec<u32>> = thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen = Vec::new();
                        let mut buf = Vec::new();
                        // Each reader stops at the first empty message: two come last.
                        while conn.recv_to_vec(&mut buf).unwrap() != Some(0) {
                            let i = u32::from_be_bytes(buf[..4].try_into().unwrap());
                            assert!(buf == message(i), "message {i} came back changed");
                            seen.push(i);
                        }
                        seen
                    })
                })
                .collect();
            for i in 0..COUNT {
                conn.send(&message(i)).unwrap();
            }
            conn.send(b"").unwrap();
            conn.send(b"").unwrap();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut all: Vec<u32> = got.concat();
        all.sort_unstable();
        assert_eq!(all, (0..COUNT).collect::<Vec<_>>(), "fifo {fifo}");
        assert!(got.iter().all(|seen| seen.is_sorted()), "fifo {fifo}");
    }
}

/// Descriptors in and out (Unix): an accepted stream given up as an `OwnedFd` works as a std
/// `UnixStream` with the peer process, and adopted back it keeps its mode (message mode
/// detected from `SOCK_SEQPACKET`); a listener given up keeps serving its name through std,
/// and adopted back serves a pipekit client process. FIFO connections cannot be one
/// descriptor, and a descriptor that is not a Unix socket is refused with a clear error.
#[cfg(unix)]
#[test]
fn descriptors_go_out_to_std_and_come_back_with_their_mode() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::{UnixListener, UnixStream};

    // A byte-mode connection out to std and back.
    let name = unique_name("fd-bytes");
    let listener = Listener::bind(name.as_str()).unwrap();
    let child = bytes_client(&name, "through std");
    let conn = listener.accept().unwrap();
    let mut std_conn = UnixStream::from(OwnedFd::try_from(conn).unwrap());
    let mut got = [0u8; 11];
    std_conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"through std");
    let mut conn = Stream::try_from(OwnedFd::from(std_conn)).unwrap();
    assert_eq!(conn.mode(), Mode::Bytes);
    conn.write_all(&got).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through std\n");

    // Message mode: the socket type says so.
    if cfg!(any(target_os = "linux", target_os = "android")) {
        let name = unique_name("fd-messages");
        let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo"]);
        let conn = Stream::connect_with(&name, &messages()).unwrap();
        let conn = Stream::try_from(OwnedFd::try_from(conn).unwrap()).unwrap();
        assert_eq!(conn.mode(), Mode::Messages);
        conn.send(b"still one message").unwrap();
        let mut back = Vec::new();
        assert_eq!(conn.recv_to_vec(&mut back).unwrap(), Some(17));
        assert_eq!(back, b"still one message");
    }

    // A listener out to std (its file stays) and back.
    let name = unique_name("fd-listener");
    let listener = Listener::bind(name.as_str()).unwrap();
    let std_listener = UnixListener::from(OwnedFd::try_from(listener).unwrap());
    let child = bytes_client(&name, "to std");
    let (mut served, _) = std_listener.accept().unwrap();
    let mut got = [0u8; 6];
    served.read_exact(&mut got).unwrap();
    served.write_all(&got).unwrap();
    assert_eq!(child.wait_with_output().unwrap().stdout, b"to std\n");
    let listener = Listener::try_from(OwnedFd::from(std_listener)).unwrap();
    assert_eq!(listener.mode(), Mode::Bytes);
    let child = bytes_client(&name, "adopted");
    let mut conn = listener.accept().unwrap();
    let mut got = [0u8; 7];
    conn.read_exact(&mut got).unwrap();
    conn.write_all(&got).unwrap();
    assert_eq!(child.wait_with_output().unwrap().stdout, b"adopted\n");
    let path = pipekit::os::unix::socket_path(name.as_str()).unwrap();
    drop((conn, listener));
    assert!(
        path.exists(),
        "an adopted listener removed a file it does not own"
    );
    std::fs::remove_file(&path).unwrap();

    // What cannot be one descriptor, and what is not a Unix socket.
    {
        use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
        let name = unique_name("fd-fifo");
        let mut unix = UnixOptions::new();
        unix.transport(Transport::Fifo);
        let listener = Listener::bind_unix(name.as_str(), &ListenerOptions::new(), &unix).unwrap();
        let err = OwnedFd::try_from(listener).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
    }
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = Stream::try_from(OwnedFd::from(file)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not a socket"), "{err}");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Listener::try_from(OwnedFd::from(tcp)).unwrap_err();
    assert!(
        err.to_string().contains("not a Unix-domain socket"),
        "{err}"
    );
}

/// Handles in and out (Windows): an accepted stream given up as an `OwnedHandle` and adopted
/// back keeps its pipe's mode and its peer process, in byte and message mode; a handle that
/// is not a named pipe is refused with a clear error.
#[cfg(windows)]
#[test]
fn handles_go_out_and_come_back_with_their_mode() {
    use std::os::windows::io::OwnedHandle;
    let name = unique_name("handle-bytes");
    let listener = Listener::bind(name.as_str()).unwrap();
    let child = bytes_client(&name, "through a handle");
    let conn = listener.accept().unwrap();
    let mut conn = Stream::try_from(OwnedHandle::try_from(conn).unwrap()).unwrap();
    assert_eq!(conn.mode(), Mode::Bytes);
    let mut got = [0u8; 16];
    conn.read_exact(&mut got).unwrap();
    conn.write_all(&got).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through a handle\n");

    let name = unique_name("handle-messages");
    let _peer = Peer::start(PEER, &["serve", &name, "messages", "echo"]);
    let conn = Stream::connect_with(&name, &messages()).unwrap();
    let conn = Stream::try_from(OwnedHandle::try_from(conn).unwrap()).unwrap();
    assert_eq!(conn.mode(), Mode::Messages);
    conn.send(b"still one message").unwrap();
    let mut back = Vec::new();
    assert_eq!(conn.recv_to_vec(&mut back).unwrap(), Some(17));
    assert_eq!(back, b"still one message");

    let file = std::fs::File::open(PEER).unwrap();
    let err = Stream::try_from(OwnedHandle::from(file)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not a named pipe"), "{err}");
}

/// A peer process that connects to `name` in byte mode, writes `text`, reads as much back and
/// prints it.
fn bytes_client(name: &str, text: &str) -> std::process::Child {
    pipekit_tests::spawn(
        std::process::Command::new(PEER)
            .args(["bytes-client", name, text])
            .stdout(std::process::Stdio::piped()),
    )
    .unwrap()
}
