//! Shared-memory connections: the same model over two rings in a private segment, with the
//! socket kept for the start, wake-ups and the peer's death (Unix), or the pipe kept for
//! the start (Windows, under Wine here).

use std::io::{self, Read, Write};
use std::thread;

use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
use pipekit_tests::{Peer, chain, pattern, unique_name};

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
#[cfg(unix)]
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

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

/// A peer process (pipekit's test peer) with `PEER_SHM` set.
fn peer_command(shm: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(PEER);
    command.args(args).env("PEER_SHM", shm);
    command
}

/// A pipekit server in another process offers shared memory; messages of every size up to
/// the maximum (1 MiB, the peer's) and a byte stream in both directions at once come back
/// whole, over the rings.
#[test]
fn messages_and_bytes_cross_process_over_shared_memory() {
    let name = unique_name("shm-xp-msg");
    let mut peer = Peer::start_command(&mut peer_command(
        "2097152",
        &["serve", &name, "messages", "echo"],
    ));
    let mut options = connect_options(Mode::Messages);
    options.max_message_size(1 << 20);
    let client = Stream::connect_with(&name, &options).unwrap();
    let mut back = Vec::new();
    for (i, size) in [0usize, 1, 7, 4096, 65535, 65536, 300_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let msg = pattern(size, i as u8);
        client.send(&msg).unwrap();
        assert_eq!(client.recv_to_vec(&mut back).unwrap(), Some(size));
        assert!(back == msg, "message of {size} bytes came back changed");
    }
    assert!(client.is_shared_memory(), "the peer offered shared memory");
    let err = client.send(&vec![0u8; (1 << 20) + 1]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    drop(client);
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();

    let name = unique_name("shm-xp-bytes");
    let mut peer = Peer::start_command(&mut peer_command(
        "65536",
        &["serve", &name, "bytes", "echo"],
    ));
    let client = Stream::connect_with(&name, &connect_options(Mode::Bytes)).unwrap();
    let total = 3 << 20;
    let sent = pattern(total, 3);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || {
            for piece in sent.chunks(10_000) {
                client.write_all(piece).unwrap();
            }
        })
    };
    let mut got = vec![0u8; total];
    (&client)
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    writer.join().unwrap();
    assert_eq!(got.len(), total);
    assert!(got == sent, "the byte stream came back changed");
    assert!(client.is_shared_memory());
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();
}

/// A flooding peer (`pipekit-peer flood`) is SIGKILLed while it waits, mid-message, for room
/// in the ring: what it published is read whole, then the end; nothing hangs, no torn
/// message is delivered, and a write to it is `BrokenPipe`.
#[test]
fn a_peer_killed_mid_message_is_the_end() {
    for mode in [Mode::Messages, Mode::Bytes] {
        let name = unique_name("shm-kill");
        let size = 40_000;
        let mut listen = listen_options(mode, 65536);
        listen.max_message_size(size);
        let listener = Listener::bind_with(&name, &listen).unwrap();
        let mode_arg = if mode == Mode::Messages {
            "messages"
        } else {
            "bytes"
        };
        let mut child = pipekit_tests::spawn(
            peer_command("1", &["flood", &name, mode_arg, &size.to_string()])
                .stdout(std::process::Stdio::piped()),
        )
        .unwrap();
        let mut server = listener.accept().unwrap();
        assert!(server.is_shared_memory());
        server.write_all(b"go").unwrap();
        // `sending 1`: message 0 is in the ring, and message 1 cannot fit until it is read.
        let mut lines = io::BufRead::lines(io::BufReader::new(child.stdout.take().unwrap()));
        while lines.next().unwrap().unwrap() != "sending 1" {}
        child.kill().unwrap();
        child.wait().unwrap();
        let chunk = pattern(size, 7);
        let mut got = Vec::new();
        match mode {
            Mode::Messages => {
                assert_eq!(server.recv_to_vec(&mut got).unwrap(), Some(size));
                assert!(got == chunk, "message 0 came changed");
                assert_eq!(server.recv_to_vec(&mut got).unwrap(), None, "then the end");
            }
            _ => {
                server.read_to_end(&mut got).unwrap();
                assert!(got.len() >= size, "got {} bytes", got.len());
                let torn = got
                    .iter()
                    .enumerate()
                    .position(|(i, &b)| b != chunk[i % size]);
                assert_eq!(torn, None, "every byte read is one the peer sent");
            }
        }
        let err = (0..64)
            .find_map(|_| server.write_all(&[1u8; 4096]).err())
            .expect("writes to a killed peer kept succeeding");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{mode:?}: {err}");
    }
}

/// A hostile client (a Python process that maps the segment it was offered) writes garbage
/// indices and lengths: the server gets `InvalidData` on that connection, and neither
/// crashes nor hangs nor reads outside the segment.
#[cfg(target_os = "linux")]
#[test]
fn a_peer_writing_garbage_indices_gets_invalid_data() {
    use pipekit::os::unix::ListenerExt;
    for case in ["head", "length", "wrap", "tail"] {
        let name = unique_name("shm-garbage");
        let listen = listen_options(Mode::Messages, 1 << 17);
        let listener = Listener::bind_with(&name, &listen).unwrap();
        let path = listener.path().unwrap().to_owned();
        let mut hostile = hostile_peer("client", &path, case);
        let server = listener.accept().unwrap();
        assert!(server.is_shared_memory());
        let mut lines = io::BufRead::lines(io::BufReader::new(hostile.stdout.take().unwrap()));
        assert_eq!(lines.next().unwrap().unwrap(), "done", "{case}");
        let err = if case == "tail" {
            server.send(b"hello").unwrap_err()
        } else {
            server.recv_to_vec(&mut Vec::new()).unwrap_err()
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{case}: {err}");
        assert!(
            err.to_string().contains("shared-memory protocol"),
            "{case}: {err}"
        );
        drop(hostile.stdin.take());
        hostile.wait().unwrap();
    }
}

/// The hostile peer `tests/peers/shm_hostile.py` as `role` (`client` or `server`) at `path`,
/// doing `case`, with its stdin and stdout piped.
#[cfg(target_os = "linux")]
fn hostile_peer(role: &str, path: &std::path::Path, case: &str) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/shm_hostile.py");
    pipekit_tests::spawn(
        std::process::Command::new("python3")
            .args([script, role])
            .arg(path)
            .arg(case)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()),
    )
    .unwrap()
}

/// Checks call `i` of a side whose peer scribbles over the segment and sends nothing: data of
/// at most `max` bytes, `WouldBlock` (or `TimedOut`), `InvalidData` or `BrokenPipe`. Whether
/// a read met a lie (anything but `WouldBlock` or `TimedOut`).
#[cfg(any(target_os = "linux", windows))]
fn beside_a_scribbler(
    result: io::Result<usize>,
    read: bool,
    max: usize,
    case: &str,
    i: usize,
) -> bool {
    match result {
        Ok(n) => {
            assert!(n <= max, "{case}: call {i}: {n} bytes");
            read
        }
        Err(e) => {
            use io::ErrorKind::{BrokenPipe, InvalidData, TimedOut, WouldBlock};
            let kind = e.kind();
            assert!(
                matches!(kind, WouldBlock | TimedOut | InvalidData | BrokenPipe),
                "{case}: call {i}: {e}"
            );
            read && !matches!(kind, WouldBlock | TimedOut)
        }
    }
}

/// A hostile client (Python) scribbles random words over the whole segment — indices,
/// flags, length words, data — without pause, while this side keeps receiving and sending,
/// non-blocking, in both modes: every call returns (data, `WouldBlock`, `InvalidData` or
/// `BrokenPipe`), none panics or reads outside the segment, and the lies do reach it (the
/// peer sends nothing, so a read that does not say `WouldBlock` met one).
#[cfg(target_os = "linux")]
#[test]
fn a_peer_scribbling_over_the_segment_while_this_side_works_cannot_crash_it() {
    use pipekit::os::unix::{ListenerExt, StreamExt};
    for (mode, case) in [
        (Mode::Messages, "scribble"),
        (Mode::Bytes, "scribble-bytes"),
    ] {
        let name = unique_name("shm-scribble");
        let listener = Listener::bind_with(&name, &listen_options(mode, 1 << 17)).unwrap();
        let path = listener.path().unwrap().to_owned();
        let mut hostile = hostile_peer("client", &path, case);
        let mut server = listener.accept().unwrap();
        assert!(server.is_shared_memory());
        let mut lines = io::BufRead::lines(io::BufReader::new(hostile.stdout.take().unwrap()));
        assert_eq!(lines.next().unwrap().unwrap(), "done", "{case}");
        server.set_nonblocking(true).unwrap();
        let (mut lies_met, mut got) = (0, Vec::new());
        let mut buf = vec![0u8; 3 << 17];
        // The peer switched: the first read moves this side's reads to the ring for good,
        // and only then does the scribbling start.
        let first = match mode {
            Mode::Messages => server.recv_to_vec(&mut got).map(drop),
            _ => server.read(&mut buf).map(drop),
        };
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        writeln!(hostile.stdin.as_mut().unwrap(), "go").unwrap();
        for i in 0..20_000usize {
            let result = match (mode, i % 2) {
                (Mode::Messages, 0) => server.recv_to_vec(&mut got).map(|n| n.unwrap_or(0)),
                (Mode::Messages, _) => server.send(&buf[..i % 3000]).map(|()| 0),
                (_, 0) => server.read(&mut buf),
                _ => server.write(&buf[..(i * 7919) % buf.len() + 1]),
            };
            let max = buf.len().max(65536);
            lies_met += usize::from(beside_a_scribbler(result, i % 2 == 0, max, case, i));
        }
        assert!(lies_met > 0, "{case}: no read met a lie");
        hostile.kill().unwrap();
        hostile.wait().unwrap();
    }
}

/// A hostile client (Python) writes into its wake-up socket as fast as it can, sending
/// nothing, after switching to the ring or before: this side's calls still return at once —
/// non-blocking ones `WouldBlock`, a blocking one with a timeout `TimedOut` when it passes —
/// instead of trying to empty the socket first, which under the flood takes as long as the
/// peer likes (an event loop serving other connections would stall meanwhile).
#[cfg(target_os = "linux")]
#[test]
fn a_peer_flooding_its_wake_up_socket_does_not_hold_up_this_side() {
    use pipekit::os::unix::{ListenerExt, StreamExt};
    use std::time::Duration;
    for case in ["flood-bell", "flood-bell-unswitched"] {
        let name = unique_name("shm-flood-bell");
        let listener =
            Listener::bind_with(&name, &listen_options(Mode::Messages, 1 << 17)).unwrap();
        let path = listener.path().unwrap().to_owned();
        let mut hostile = hostile_peer("client", &path, case);
        let server = listener.accept().unwrap();
        assert!(server.is_shared_memory());
        let mut lines = io::BufRead::lines(io::BufReader::new(hostile.stdout.take().unwrap()));
        assert_eq!(lines.next().unwrap().unwrap(), "done");
        let (done, finished) = std::sync::mpsc::channel();
        let worker = thread::spawn(move || {
            let mut got = Vec::new();
            server.set_nonblocking(true).unwrap();
            for i in 0..200 {
                let call = std::time::Instant::now();
                let err = server.recv_to_vec(&mut got).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
                // Microseconds; the bound leaves room for a loaded machine's scheduling.
                let took = call.elapsed();
                assert!(
                    took < Duration::from_millis(250),
                    "{case}: call {i} took {took:?}"
                );
            }
            server.set_nonblocking(false).unwrap();
            server
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let call = std::time::Instant::now();
            let err = server.recv_to_vec(&mut got).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
            let took = call.elapsed();
            assert!(
                took < Duration::from_secs(2),
                "a 200 ms timeout took {took:?}"
            );
            done.send(()).unwrap();
        });
        // A bound on a hang, not a wait for an event: the calls take microseconds and 200 ms.
        let returned = finished.recv_timeout(Duration::from_secs(30));
        hostile.kill().unwrap();
        hostile.wait().unwrap();
        assert!(
            returned.is_ok(),
            "{case}: a call did not return while the peer flooded its wake-up socket"
        );
        worker.join().unwrap();
    }
}

/// A hostile server offers an unusable segment: the client's read fails with `InvalidData`
/// naming the offer (nothing mapped past a segment that could shrink).
#[cfg(target_os = "linux")]
#[test]
fn an_unusable_offer_is_refused() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/shm_hostile.py");
    for case in ["unsealed", "two-fds", "capacity"] {
        let dir = std::env::temp_dir().join(unique_name("shm-offer"));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s");
        let mut peer = Peer::start_command(
            std::process::Command::new("python3")
                .args([script, "server"])
                .arg(&path)
                .arg(case)
                .stdin(std::process::Stdio::piped()),
        );
        let client =
            Stream::connect_with(path.to_str().unwrap(), &connect_options(Mode::Messages)).unwrap();
        assert_eq!(peer.line().as_deref(), Some("done"));
        for _ in 0..2 {
            // The connection stays broken: no later call takes it for a plain one.
            let err = client.recv_to_vec(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{case}: {err}");
            assert!(err.to_string().contains("offer"), "{case}: {err}");
            let err = client.send(b"x").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{case}: {err}");
        }
        drop(peer.child.stdin.take());
        peer.child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A hostile server (Python) makes a usable offer, then scribbles random words over the
/// segment while the pipekit client that took it keeps receiving and sending, non-blocking:
/// as on the server's side, every call returns (data, `WouldBlock`, `InvalidData` or
/// `BrokenPipe`), none panics, and the client's reads meet the lies.
#[cfg(target_os = "linux")]
#[test]
fn a_server_scribbling_over_the_segment_cannot_crash_its_client() {
    use pipekit::os::unix::StreamExt;
    let dir = std::env::temp_dir().join(unique_name("shm-scribbler"));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("s");
    let mut hostile = hostile_peer("server", &path, "scribble");
    let mut lines = io::BufRead::lines(io::BufReader::new(hostile.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut options = connect_options(Mode::Messages);
    options.max_message_size(4096);
    let client = Stream::connect_with(path.to_str().unwrap(), &options).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done");
    client.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    // The offer is there: this read takes it and finds the ring empty.
    let first = client.recv_to_vec(&mut got).unwrap_err();
    assert_eq!(first.kind(), io::ErrorKind::WouldBlock, "{first}");
    assert!(client.is_shared_memory());
    writeln!(hostile.stdin.as_mut().unwrap(), "go").unwrap();
    let msg = pattern(4096, 9);
    let mut lies_met = 0;
    for i in 0..20_000usize {
        let read = i % 2 == 0;
        let result = if read {
            client.recv_to_vec(&mut got).map(|n| n.unwrap_or(0))
        } else {
            client.send(&msg[..i % 4096]).map(|()| 0)
        };
        lies_met += usize::from(beside_a_scribbler(result, read, 4096, "client", i));
    }
    assert!(lies_met > 0, "no read met a lie");
    hostile.kill().unwrap();
    hostile.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Windows: a hostile peer process (`shm-liar`) on the sibling pipe.
#[cfg(windows)]
mod liars {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// `shm-liar ROLE NAME [CASE]`, stdin and stdout piped; its first line (`ready` for a
    /// server) already read.
    fn liar(
        role: &str,
        name: &str,
        case: &[&str],
    ) -> (Child, io::Lines<io::BufReader<std::process::ChildStdout>>) {
        let mut child = pipekit_tests::spawn(
            Command::new(env!("CARGO_BIN_EXE_shm-liar"))
                .arg(role)
                .arg(name)
                .args(case)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let mut lines = io::BufRead::lines(io::BufReader::new(child.stdout.take().unwrap()));
        if role == "server" {
            assert_eq!(lines.next().unwrap().unwrap(), "ready");
        }
        (child, lines)
    }

    /// A server whose first message on the sibling is no usable offer — no offer at all, a
    /// segment of no size or of 2^64 - 1 bytes, handle values naming nothing, a section
    /// smaller than it says or without a header, a section whose pages are only reserved
    /// (touching them would fault) or that maps a file (whose pages could fail to come in),
    /// or a good section with events that are no events (the server's own process, as `-1`
    /// names it; the section again): the client's calls fail with `InvalidData` naming the
    /// offer, at once and every time after, and nothing runs over memory.
    #[test]
    fn an_unusable_offer_is_refused() {
        let cases = [
            "tag",
            "len-0",
            "len-huge",
            "garbage",
            "short",
            "no-header",
            "reserved",
            "file",
            "pseudo",
            "not-events",
        ];
        for case in cases {
            let name = unique_name("shm-liar");
            let (mut liar, mut lines) = liar("server", &name, &[case]);
            // (Its stdin closes with `liar` if an assertion fails: it exits then.)
            let client = Stream::connect_with(&name, &connect_options(Mode::Messages)).unwrap();
            // A bound on a hang (an offer taken for good would wait for data that never
            // comes), not a wait for an event: a refusal is immediate.
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            client
                .set_write_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            assert_eq!(lines.next().unwrap().unwrap(), "done", "{case}");
            for _ in 0..2 {
                let err = client.recv_to_vec(&mut Vec::new()).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{case}: {err}");
                assert!(err.to_string().contains("offer"), "{case}: {err}");
                let err = client.send(b"x").unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{case}: {err}");
            }
            assert!(!client.is_shared_memory(), "{case}");
            drop(liar.stdin.take());
            assert!(liar.wait().unwrap().success(), "{case}");
        }
    }

    /// Runs 2000 receives and sends, alternately, on `stream` (whose peer scribbles and
    /// sends nothing; its largest message `max` bytes), each with a 1 ms timeout: every one
    /// returns what [`beside_a_scribbler`] allows, and some read meets a lie.
    fn work_beside_a_scribbler(stream: &Stream, max: usize, who: &str) {
        let msg = pattern(4096, 9);
        let mut got = Vec::new();
        let mut lies_met = 0;
        for i in 0..2000usize {
            let read = i % 2 == 0;
            let result = if read {
                stream.recv_to_vec(&mut got).map(|n| n.unwrap_or(0))
            } else {
                stream.send(&msg[..i % 4096]).map(|()| 0)
            };
            lies_met += usize::from(beside_a_scribbler(result, read, max, who, i));
        }
        assert!(lies_met > 0, "{who}: no read met a lie");
    }

    fn short_timeouts(stream: &Stream) {
        stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_millis(1)))
            .unwrap();
    }

    /// A hostile client takes the offer, says it writes to its ring, then scribbles random
    /// words over the whole segment while the server keeps receiving and sending: no call
    /// panics or hangs, each returns data, `TimedOut`, `InvalidData` or `BrokenPipe`.
    #[test]
    fn a_client_scribbling_over_the_segment_cannot_crash_the_server() {
        let name = unique_name("shm-scribble");
        let listener =
            Listener::bind_with(&name, &listen_options(Mode::Messages, 1 << 17)).unwrap();
        let (mut liar, mut lines) = liar("client", &name, &[]);
        let server = listener.accept().unwrap();
        assert!(server.is_shared_memory());
        assert_eq!(lines.next().unwrap().unwrap(), "done");
        short_timeouts(&server);
        // The client switched: this read finds the ring empty.
        let first = server.recv_to_vec(&mut Vec::new()).unwrap_err();
        assert_eq!(first.kind(), io::ErrorKind::TimedOut, "{first}");
        writeln!(liar.stdin.as_mut().unwrap(), "go").unwrap();
        work_beside_a_scribbler(&server, 65536, "server");
        drop(liar.stdin.take());
        assert!(liar.wait().unwrap().success());
    }

    /// A hostile server makes a usable offer, then scribbles over the segment while the
    /// client that took it keeps receiving and sending: as on the server's side.
    #[test]
    fn a_server_scribbling_over_the_segment_cannot_crash_its_client() {
        let name = unique_name("shm-scribbler");
        let (mut liar, mut lines) = liar("server", &name, &["scribble"]);
        let mut options = connect_options(Mode::Messages);
        options.max_message_size(4096);
        let client = Stream::connect_with(&name, &options).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "done");
        short_timeouts(&client);
        // This read takes the offer and finds the ring empty.
        let first = client.recv_to_vec(&mut Vec::new()).unwrap_err();
        assert_eq!(first.kind(), io::ErrorKind::TimedOut, "{first}");
        assert!(client.is_shared_memory());
        writeln!(liar.stdin.as_mut().unwrap(), "go").unwrap();
        work_beside_a_scribbler(&client, 4096, "client");
        drop(liar.stdin.take());
        assert!(liar.wait().unwrap().success());
    }
}

/// The behaviour suite once more on framed stream sockets (message mode's transport off
/// Linux, chosen here with `Framing::LengthPrefixed`).
#[cfg(unix)]
#[test]
fn behaviour_suite_over_shared_memory_on_framed_sockets() {
    use pipekit::os::unix::{Framing, ListenerExt, StreamExt, UnixOptions};
    let mut unix = UnixOptions::new();
    unix.framing(Framing::LengthPrefixed);
    let name = unique_name("shm-framed");
    let listen = listen_options(Mode::Messages, CAPACITY);
    let connect = connect_options(Mode::Messages);
    pipekit_core::testing::messages_suite(|| {
        let listener = Listener::bind_unix(&name, &listen, &unix)?;
        let client = Stream::connect_unix(&name, &connect, &unix)?;
        let server = listener.accept()?;
        assert!(server.is_shared_memory() && client.is_shared_memory());
        Ok((server, client))
    });
}

/// Clients that do not ask (pipekit without the option, a Python socket) get the plain
/// connection from a listener that offers; a client that asks gets the plain connection
/// from a listener that does not offer.
#[test]
fn peers_that_do_not_speak_it_get_the_plain_connection() {
    let name = unique_name("shm-plain");
    let listener = Listener::bind_with(&name, &listen_options(Mode::Bytes, CAPACITY)).unwrap();
    #[cfg(unix)]
    let path = {
        use pipekit::os::unix::ListenerExt;
        listener.path().unwrap().to_owned()
    };
    let server = thread::spawn(move || {
        for _ in 0..if cfg!(unix) { 2 } else { 1 } {
            let mut conn = listener.accept().unwrap();
            assert!(!conn.is_shared_memory());
            let mut got = [0u8; 5];
            conn.read_exact(&mut got).unwrap();
            conn.write_all(&got).unwrap();
        }
    });
    let mut plain = Stream::connect(&name).unwrap();
    plain.write_all(b"plain").unwrap();
    let mut back = [0u8; 5];
    plain.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"plain");
    #[cfg(unix)]
    python_client_gets_the_plain_connection(&path);
    server.join().unwrap();

    let name = unique_name("shm-no-offer");
    let listener = Listener::bind(&name).unwrap();
    let mut client = Stream::connect_with(&name, &connect_options(Mode::Bytes)).unwrap();
    let mut server = listener.accept().unwrap();
    server.write_all(b"first").unwrap();
    client.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first");
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    assert!(!client.is_shared_memory() && !server.is_shared_memory());
}

/// A Python client (a plain `AF_UNIX` socket) of a listener that offers: the plain connection.
#[cfg(unix)]
fn python_client_gets_the_plain_connection(path: &std::path::Path) {
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                  s.sendall(b'hello')\nd=b''\nwhile len(d)<5:\n d+=s.recv(5)\nprint(d.decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
}

/// Both ends write more than the rings hold before either reads, on cloned handles, in both
/// modes: each direction moves on its own (no end waits for the other to read first).
#[test]
fn full_duplex_over_small_rings() {
    for mode in [Mode::Bytes, Mode::Messages] {
        let name = unique_name("shm-duplex");
        let listen = listen_options(mode, 1 << 17);
        let (server, client) = pair(&name, &listen, &connect_options(mode)).unwrap();
        let pieces = 400;
        let run = |end: Stream, seed: u8| {
            thread::spawn(move || {
                let mut writer = end.try_clone().unwrap();
                let sender = thread::spawn(move || {
                    for i in 0..pieces {
                        writer.write_all(&pattern(30_000, seed ^ i as u8)).unwrap();
                    }
                });
                let mut end = end;
                let mut got = vec![0u8; 30_000];
                for i in 0..pieces {
                    end.read_exact(&mut got).unwrap();
                    assert!(got == pattern(30_000, seed ^ 1 ^ i as u8), "piece {i}");
                }
                sender.join().unwrap();
            })
        };
        let a = run(server, 0);
        let b = run(client, 1);
        a.join().unwrap();
        b.join().unwrap();
    }
}

/// Non-blocking calls say `WouldBlock` instead of waiting (Unix); an empty ring times out a
/// read after the read timeout and a full one a write after the write timeout; `send_with`
/// and `recv_with` work in the ring, and fall back to a buffer on a plain connection.
#[test]
fn nonblocking_timeouts_and_in_place_calls() {
    let name = unique_name("shm-misc");
    let (server, client) = pair(
        &name,
        &listen_options(Mode::Messages, 1 << 17),
        &connect_options(Mode::Messages),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use pipekit::os::unix::StreamExt;
        server.set_nonblocking(true).unwrap();
        let err = server.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        client.send(b"now").unwrap();
        assert_eq!(server.recv(&mut [0u8; 8]).unwrap(), Some(3));
        server.set_nonblocking(false).unwrap();
    }
    server
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let err = server.recv(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    server
        .send_with(3, |buf| buf.copy_from_slice(b"abc"))
        .unwrap();
    assert_eq!(
        client.recv_with(|m| m.to_vec()).unwrap().as_deref(),
        Some(&b"abc"[..])
    );

    client
        .set_write_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let err = (0..10)
        .find_map(|_| client.send(&[0u8; 60_000]).err())
        .expect("a ring of 128 KiB took 600 KB unread");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");

    let plain_name = unique_name("shm-misc-plain");
    let mut listen = ListenerOptions::new();
    listen.mode(Mode::Messages);
    let listener = Listener::bind_with(&plain_name, &listen).unwrap();
    let mut connect = ConnectOptions::new();
    connect.mode(Mode::Messages);
    let a = Stream::connect_with(&plain_name, &connect).unwrap();
    let b = listener.accept().unwrap();
    a.send_with(3, |buf| buf.copy_from_slice(b"abc")).unwrap();
    assert_eq!(
        b.recv_with(|m| m.to_vec()).unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    let err = a.send_with(2 << 20, |_| unreachable!()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}

/// The Tokio API over shared memory, both ends on one current-thread runtime: a writer
/// that fills the ring waits (`Pending`) until the reader frees room, and a reader waits
/// for data, both woken through the wake-up pairs; in message and byte mode.
#[cfg(unix)]
#[test]
fn tokio_streams_over_shared_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    for mode in [Mode::Messages, Mode::Bytes] {
        let name = unique_name("shm-tokio");
        let (server, client) = pair(
            &name,
            &listen_options(mode, 1 << 17),
            &connect_options(mode),
        )
        .unwrap();
        runtime.block_on(async move {
            let mut server = pipekit::tokio::Stream::from_blocking(server).unwrap();
            let mut client = pipekit::tokio::Stream::from_blocking(client).unwrap();
            let count = 200usize;
            let writer = tokio::spawn(async move {
                for i in 0..count {
                    let piece = pattern(60_000, i as u8);
                    match mode {
                        Mode::Messages => client.send(&piece).await.unwrap(),
                        _ => client.write_all(&piece).await.unwrap(),
                    }
                }
                client
            });
            let mut got = vec![0u8; 60_000];
            for i in 0..count {
                match mode {
                    Mode::Messages => {
                        assert_eq!(server.recv(&mut got).await.unwrap(), Some(60_000));
                    }
                    _ => drop(server.read_exact(&mut got).await.unwrap()),
                }
                assert!(got == pattern(60_000, i as u8), "{mode:?} piece {i}");
            }
            let mut client = writer.await.unwrap();
            match mode {
                Mode::Messages => client.send(b"bye").await.unwrap(),
                _ => client.write_all(b"bye").await.unwrap(),
            }
            drop(client);
            let mut rest = Vec::new();
            match mode {
                Mode::Messages => {
                    assert_eq!(server.recv_to_vec(&mut rest).await.unwrap(), Some(3));
                    assert_eq!(server.recv_to_vec(&mut rest).await.unwrap(), None);
                }
                _ => {
                    server.read_to_end(&mut rest).await.unwrap();
                    assert_eq!(rest, b"bye");
                }
            }
        });
    }
}

/// Owned Tokio halves of both ends of a shared-memory connection, in four tasks on a
/// two-thread runtime: both ways at once through rings that hold one message, so every
/// writer waits for room while its own reader waits for data, each woken by its own pair.
#[cfg(unix)]
#[test]
fn tokio_halves_move_both_ways_at_once_over_shared_memory() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for mode in [Mode::Messages, Mode::Bytes] {
        let name = unique_name("shm-tokio-halves");
        let mut listen = listen_options(mode, 65536);
        listen.max_message_size(40_000);
        let mut connect = connect_options(mode);
        connect.max_message_size(40_000);
        let (server, client) = pair(&name, &listen, &connect).unwrap();
        runtime.block_on(async move {
            let count = 150usize;
            let (mut senders, mut receivers) = (Vec::new(), Vec::new());
            for (end, seed) in [(server, 1u8), (client, 2u8)] {
                let (mut rx, mut tx) = pipekit::tokio::Stream::from_blocking(end)
                    .unwrap()
                    .into_split();
                senders.push(tokio::spawn(async move {
                    for i in 0..count {
                        let piece = pattern(40_000, seed.wrapping_add(i as u8));
                        match mode {
                            Mode::Messages => tx.send(&piece).await.unwrap(),
                            _ => tx.write_all(&piece).await.unwrap(),
                        }
                    }
                    tx
                }));
                let peer_seed = 3 - seed;
                receivers.push(tokio::spawn(async move {
                    let mut got = vec![0u8; 40_000];
                    for i in 0..count {
                        match mode {
                            Mode::Messages => {
                                assert_eq!(rx.recv(&mut got).await.unwrap(), Some(40_000));
                            }
                            _ => drop(rx.read_exact(&mut got).await.unwrap()),
                        }
                        let want = pattern(40_000, peer_seed.wrapping_add(i as u8));
                        assert!(got == want, "{mode:?}: piece {i} from end {peer_seed}");
                    }
                    rx
                }));
            }
            // Both halves live until everything is read.
            let all = async {
                let mut halves = Vec::new();
                for task in receivers {
                    halves.push(task.await.unwrap());
                }
                let mut writers = Vec::new();
                for task in senders {
                    writers.push(task.await.unwrap());
                }
                (halves, writers)
            };
            tokio::time::timeout(Duration::from_secs(60), all)
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: the halves stopped moving"));
        });
    }
}

/// What a client sent over the socket before it saw the offer reaches a Tokio server (which
/// waits on the socket and the wake-up pair at once) even while the client, before it writes
/// again, waits for an answer; then the ring's messages follow.
#[cfg(unix)]
#[test]
fn a_tokio_server_reads_what_came_before_the_switch() {
    use std::time::Duration;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for mode in [Mode::Messages, Mode::Bytes] {
        let name = unique_name("shm-tokio-before");
        let listener = Listener::bind_with(&name, &listen_options(mode, CAPACITY)).unwrap();
        let mut client = Stream::connect_with(&name, &connect_options(mode)).unwrap();
        for i in 0..3u8 {
            client.write_all(&[i; 100]).unwrap();
        }
        let server = listener.accept().unwrap();
        let writer = thread::spawn(move || {
            let mut answer = [0u8; 2];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"ok");
            for i in 3..6u8 {
                client.write_all(&[i; 100]).unwrap();
            }
            assert!(client.is_shared_memory());
        });
        runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut server = pipekit::tokio::Stream::from_blocking(server).unwrap();
            for i in 0..6u8 {
                if i == 3 {
                    server.write_all(b"ok").await.unwrap();
                }
                let mut got = [0u8; 100];
                let read = async {
                    match mode {
                        Mode::Messages => server.recv(&mut got).await.map(|n| n.unwrap_or(0)),
                        _ => server.read_exact(&mut got).await,
                    }
                };
                let n = tokio::time::timeout(Duration::from_secs(20), read)
                    .await
                    .unwrap_or_else(|_| panic!("{mode:?}: piece {i} never came"))
                    .unwrap();
                assert_eq!(n, 100);
                assert_eq!(got, [i; 100], "{mode:?} piece {i}");
            }
        });
        writer.join().unwrap();
    }
}

/// A Tokio client that asks for shared memory, against a pipekit server in another process:
/// it learns of the offer after it became async, and waits on the wake-up pairs from then on.
#[cfg(unix)]
#[test]
fn a_tokio_client_takes_the_offer_of_a_peer_process() {
    let name = unique_name("shm-tokio-xp");
    let mut peer = Peer::start_command(&mut peer_command(
        "2097152",
        &["serve", &name, "messages", "echo"],
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut options = connect_options(Mode::Messages);
        options.max_message_size(1 << 20);
        let mut client = pipekit::tokio::Stream::connect_with(name.as_str(), &options)
            .await
            .unwrap();
        let mut back = Vec::new();
        for i in 0..100usize {
            let msg = pattern((i * 10_007) % (1 << 20), i as u8);
            client.send(&msg).await.unwrap();
            assert_eq!(
                client.recv_to_vec(&mut back).await.unwrap(),
                Some(msg.len())
            );
            assert!(back == msg, "message {i} came back changed");
        }
        assert!(client.is_shared_memory(), "the client took the offer");
    });
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();
}

/// A Tokio client that takes the offer inside a wait: its first `recv` finds the offer (sent
/// at `accept`, before the reactor saw the socket readable), takes it and finds the ring
/// empty. Reading the offer used up the socket's readiness, so that poll must already watch
/// the wake-up pair: the message the server sends next wakes the task.
#[cfg(unix)]
#[test]
fn a_tokio_client_that_takes_the_offer_while_waiting_is_woken_by_the_ring() {
    use std::future::{Future, poll_fn};
    use std::time::Duration;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = unique_name("shm-tokio-late");
    let listener = Listener::bind_with(&name, &listen_options(Mode::Messages, CAPACITY)).unwrap();
    let client = Stream::connect_with(&name, &connect_options(Mode::Messages)).unwrap();
    let server = listener.accept().unwrap();
    let (go, start) = std::sync::mpsc::channel::<()>();
    let sender = thread::spawn(move || {
        // The client waits (it said so in the ring) before this is sent.
        start.recv().unwrap();
        server.send(b"after the offer").unwrap();
        server
    });
    runtime.block_on(async move {
        let mut client = pipekit::tokio::Stream::from_blocking(client).unwrap();
        // A task of its own: the timer below must not poll it again.
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut go = Some(go);
            let n = {
                let mut recv = std::pin::pin!(client.recv_to_vec(&mut got));
                poll_fn(|cx| {
                    let poll = recv.as_mut().poll(cx);
                    if poll.is_pending()
                        && let Some(go) = go.take()
                    {
                        go.send(()).unwrap();
                    }
                    poll
                })
                .await
                .unwrap()
            };
            (n, got, client)
        });
        let (n, got, client) = tokio::time::timeout(Duration::from_secs(20), receiver)
            .await
            .expect("the message in the ring never woke the client")
            .unwrap();
        assert_eq!(n, Some(15));
        assert_eq!(got, b"after the offer");
        assert!(client.is_shared_memory());
    });
    let server = sender.join().unwrap();
    assert!(server.is_shared_memory());
}

/// One `mio` thread serves 8 shared-memory connections from 2 client processes
/// (`pipekit-peer clients`, 100 echoed messages each): the wake-up pairs are registered
/// under each stream's token, and every event is answered by reading until `WouldBlock`.
#[cfg(unix)]
#[test]
fn a_mio_loop_serves_shared_memory_clients_of_peer_processes() {
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};
    let name = unique_name("shm-mio");
    let mut listen = ListenerOptions::new();
    listen
        .mode(Mode::Messages)
        .max_message_size(1 << 20)
        .shared_memory(Some(2 << 20));
    let listener = Listener::bind_with(&name, &listen).unwrap();
    let (processes, conns, msgs) = (2, 4, 100);
    let children: Vec<_> = (0..processes)
        .map(|_| {
            pipekit_tests::spawn(
                peer_command(
                    "1",
                    &["clients", &name, &conns.to_string(), &msgs.to_string()],
                )
                .stdout(std::process::Stdio::piped()),
            )
            .unwrap()
        })
        .collect();
    let mut poll = mio::Poll::new().unwrap();
    let mut streams = Vec::new();
    for i in 0..processes * conns {
        let stream = listener.accept().unwrap();
        assert!(stream.is_shared_memory());
        let mut stream = stream.into_nonblocking().unwrap();
        poll.registry()
            .register(
                &mut stream,
                mio::Token(i),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .unwrap();
        streams.push((stream, VecDeque::<Vec<u8>>::new(), false));
    }
    let mut events = mio::Events::with_capacity(64);
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut echoed = 0;
    while streams.iter().any(|(_, _, done)| !done) {
        assert!(Instant::now() < deadline, "the clients were not all served");
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .unwrap();
        for event in &events {
            let (stream, pending, done) = &mut streams[event.token().0];
            loop {
                match stream.try_recv_to_vec(&mut buf) {
                    Ok(Some(_)) => pending.push_back(buf.clone()),
                    Ok(None) => {
                        *done = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{}", chain(&e)),
                }
            }
            while let Some(msg) = pending.front() {
                match stream.try_send(msg) {
                    Ok(()) => {
                        pending.pop_front();
                        echoed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) if *done => break,
                    Err(e) => panic!("{}", chain(&e)),
                }
            }
        }
    }
    pipekit_tests::check_client_processes(children, conns);
    assert_eq!(echoed, processes * conns * msgs);
}

/// A `mio` client registered before it saw the offer: its wake-up pairs are registered when
/// it takes the offer (at the first read the socket's event leads to), and the server's
/// messages through the ring wake it from then on.
#[cfg(unix)]
#[test]
fn a_mio_client_registered_before_the_offer_is_woken_by_the_ring() {
    use std::time::{Duration, Instant};
    let name = unique_name("shm-mio-client");
    let listener = Listener::bind_with(&name, &listen_options(Mode::Messages, 1 << 17)).unwrap();
    let client = Stream::connect_with(&name, &connect_options(Mode::Messages)).unwrap();
    let mut client = client.into_nonblocking().unwrap();
    let mut poll = mio::Poll::new().unwrap();
    poll.registry()
        .register(
            &mut client,
            mio::Token(0),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
        .unwrap();
    let server = listener.accept().unwrap();
    let count = 200usize;
    let server = thread::spawn(move || {
        let mut back = vec![0u8; 65536];
        for i in 0..count {
            let msg = pattern(1000 + i * 300, i as u8);
            server.send(&msg).unwrap();
            assert_eq!(server.recv(&mut back).unwrap(), Some(msg.len()));
            assert!(back[..msg.len()] == msg[..], "echo {i}");
        }
        server.shutdown_write().unwrap();
    });
    let mut events = mio::Events::with_capacity(8);
    let mut buf = Vec::new();
    let mut pending: Option<Vec<u8>> = None;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    'serve: loop {
        assert!(Instant::now() < deadline, "got {got} of {count} messages");
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .unwrap();
        loop {
            if let Some(msg) = &pending {
                match client.try_send(msg) {
                    Ok(()) => pending = None,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{}", chain(&e)),
                }
            }
            match client.try_recv_to_vec(&mut buf) {
                Ok(Some(_)) => {
                    got += 1;
                    pending = Some(buf.clone());
                }
                Ok(None) => break 'serve,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{}", chain(&e)),
            }
        }
    }
    server.join().unwrap();
    assert_eq!(got, count);
}
