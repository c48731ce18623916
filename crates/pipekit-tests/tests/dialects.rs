//! Peers written without pipekit in mind: Python's `multiprocessing.connection` (both ways,
//! with and without an authkey), Node's `net`, and a `.NET`-named socket served by Python.
#![cfg(unix)]

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::thread;

use pipekit::dialect::python_mp::{Connection, Listener as MpListener};
use pipekit::os::unix::socket_path;
use pipekit::{Listener, ListenerOptions, Mode, PipeName, Stream};
use pipekit_tests::{Peer, mp_echo_server, unique_name};

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");

fn peer_script(name: &str) -> String {
    format!("{PEERS}/{name}")
}

/// Runs `mp_client.py` against `address` with `key` (`-` for none).
fn python_client(address: &str, key: &str) -> std::process::Output {
    Command::new("python3")
        .args([&peer_script("mp_client.py"), address, key])
        .stdin(Stdio::null())
        .output()
        .expect("running python3")
}

#[test]
fn python_client_with_the_right_key_then_the_wrong_key_then_none() {
    let name = unique_name("mp-server");
    let path = socket_path(name.as_str()).unwrap();
    let path = path.to_str().unwrap();
    let server = mp_echo_server(&name, Some(b"right"), 3);

    let ok = python_client(path, "right");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok\n");

    let wrong = python_client(path, "wrong");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("AuthenticationError"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // The server is still serving: a client with the right key gets through.
    let again = python_client(path, "right");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let results = server.join().unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &1001);
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert_eq!(results[2].as_ref().unwrap(), &1001);
}

#[test]
fn python_client_without_a_key() {
    let name = unique_name("mp-nokey");
    let path = socket_path(name.as_str()).unwrap();
    let server = mp_echo_server(&name, None, 1);
    let out = python_client(path.to_str().unwrap(), "-");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.join().unwrap()[0].as_ref().unwrap(), &1001);
}

/// Starts `mp_listener.py` at a fresh path; returns the peer and the path.
fn python_listener(key: &str) -> (Peer, String) {
    let name = unique_name("mp-py");
    let path = socket_path(name.as_str())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    pipekit::os::unix::ensure_private_dir(std::path::Path::new(&path).parent().unwrap()).unwrap();
    let peer = Peer::start("python3", &[&peer_script("mp_listener.py"), &path, key]);
    (peer, path)
}

fn exchange(conn: &mut Connection) {
    let mut buf = Vec::new();
    for i in 0..1000 {
        let msg = format!("message {i}");
        conn.send_bytes(msg.as_bytes()).unwrap();
        assert_eq!(conn.recv_bytes_into(&mut buf).unwrap(), Some(msg.len()));
        assert_eq!(buf, msg.as_bytes(), "message {i}");
    }
    let big: Vec<u8> = (0..(1 << 20)).map(|i| i as u8).collect();
    conn.send_bytes(&big).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut buf).unwrap(), Some(1 << 20));
    assert!(buf == big, "the 1 MiB payload came back changed");
}

#[test]
fn pipekit_client_to_a_python_listener_right_key_wrong_key() {
    let (mut peer, path) = python_listener("right");
    let name = PipeName::path(&path).unwrap();

    let err = Connection::connect(&name, Some(b"wrong")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert_eq!(peer.line().as_deref(), Some("rejected AuthenticationError"));

    let mut conn = Connection::connect(&name, Some(b"right")).unwrap();
    exchange(&mut conn);
    drop(conn);
    assert_eq!(peer.line().as_deref(), Some("done"));
}

#[test]
fn pipekit_client_to_a_python_listener_without_a_key() {
    let (mut peer, path) = python_listener("-");
    let mut conn = Connection::connect(PipeName::path(&path).unwrap(), None).unwrap();
    exchange(&mut conn);
    drop(conn);
    assert_eq!(peer.line().as_deref(), Some("done"));
}

#[test]
fn node_client_and_node_server_on_pipekit_byte_mode() {
    // Node connects to a pipekit server.
    let name = unique_name("node-client");
    let listener = Listener::bind(name.as_str()).unwrap();
    let path = socket_path(name.as_str()).unwrap();
    let server = thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut conn = listener.accept()?;
        let mut got = vec![0u8; 15];
        conn.read_exact(&mut got)?;
        conn.write_all(b"hello from pipekit")?;
        Ok(got)
    });
    let script = "const c = require('net').connect(process.argv[1], () => c.write('hello from node'));\
                  c.on('data', d => { process.stdout.write(d); c.end(); });";
    let out = Command::new("node")
        .args(["-e", script, path.to_str().unwrap()])
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from pipekit");
    assert_eq!(server.join().unwrap().unwrap(), b"hello from node");

    // pipekit connects to a Node server on a path.
    let path = std::env::temp_dir().join(format!("{}.sock", unique_name("node-server")));
    let script = "const s = require('net').createServer(c => c.pipe(c));\
                  s.listen(process.argv[1], () => console.log('ready'));\
                  s.on('connection', c => c.on('end', () => s.close()));";
    let _peer = Peer::start("node", &["-e", script, path.to_str().unwrap()]);
    let mut conn = Stream::connect(PipeName::path(&path).unwrap()).unwrap();
    conn.write_all(b"echo me").unwrap();
    let mut back = [0u8; 7];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"echo me");
}

/// Where .NET puts `name` on Unix, computed here independently of pipekit.
fn dotnet_path(name: &str) -> String {
    let tmp = match std::env::var("TMPDIR") {
        Ok(dir) if !dir.is_empty() => dir,
        _ => String::from("/tmp/"),
    };
    let sep = if tmp.ends_with('/') { "" } else { "/" };
    format!("{tmp}{sep}CoreFxPipe_{name}")
}

#[test]
fn dotnet_names_meet_a_socket_at_corefxpipe_path() {
    // A server at /tmp/CoreFxPipe_<name> (as NamedPipeServerStream makes it), pipekit client.
    let name = unique_name("dn");
    let path = dotnet_path(&name);
    let _server = Peer::start("python3", &[&peer_script("unix_echo_server.py"), &path]);
    let dotnet = PipeName::dotnet(&name).unwrap();
    let mut conn = Stream::connect(&dotnet).unwrap();
    conn.write_all(b"to .NET").unwrap();
    let mut back = [0u8; 7];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"to .NET");
    drop(conn);

    // A pipekit server under a .NET name; a client that knows only the .NET rule.
    let name = unique_name("dn-serve");
    let listener = Listener::bind(PipeName::dotnet(&name).unwrap()).unwrap();
    let path = dotnet_path(&name);
    let client = thread::spawn(move || {
        let code = "import socket,sys\n\
                    s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'from C#?')\n\
                    print(s.recv(100).decode())";
        Command::new("python3")
            .args(["-c", code, &path])
            .output()
            .unwrap()
    });
    let mut conn = listener.accept().unwrap();
    let mut got = [0u8; 8];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"from C#?");
    conn.write_all(b"from pipekit").unwrap();
    let out = client.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from pipekit\n");

    // .NET has no message mode on Unix.
    let err = Listener::bind_with(
        PipeName::dotnet(&unique_name("dn-msg")).unwrap(),
        ListenerOptions::new().mode(Mode::Messages),
    )
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains(".NET"), "{err}");
}

/// A read timeout in the middle of a length prefix or of a payload loses nothing: the next
/// `recv_bytes` goes on with the same payload, and the framing holds for the next one.
#[test]
fn python_mp_reads_survive_timeouts_mid_payload() {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    let name = unique_name("mp-timeout");
    let listener = MpListener::bind(name.as_str(), None).unwrap();
    let mut raw = UnixStream::connect(socket_path(name.as_str()).unwrap()).unwrap();
    let mut conn = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();

    let payload = b"0123456789";
    let mut wire = (payload.len() as i32).to_be_bytes().to_vec();
    wire.extend_from_slice(payload);
    wire.extend_from_slice(&3i32.to_be_bytes());
    wire.extend_from_slice(b"abc");
    // Cut inside the length prefix, then inside the payload.
    for piece in [&wire[..2], &wire[2..8]] {
        raw.write_all(piece).unwrap();
        let err = conn.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
    raw.write_all(&wire[8..]).unwrap();
    assert_eq!(conn.recv_bytes().unwrap().as_deref(), Some(&payload[..]));
    assert_eq!(conn.recv_bytes().unwrap().as_deref(), Some(&b"abc"[..]));
    drop(raw);
    assert_eq!(conn.recv_bytes().unwrap(), None);
}

/// One client stalls inside the authkey handshake (it sends one byte and waits) and one
/// connects and leaves at once: a Python client that comes after them is still served at
/// once, long before the stalled one's handshake deadline; the stalled one then gets
/// `TimedOut` and the one that left an error of its own.
#[test]
fn stalled_and_vanished_handshake_clients_do_not_delay_others() {
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let name = unique_name("mp-stall");
    let path = socket_path(name.as_str()).unwrap();
    let timeout = Duration::from_secs(10);
    let listener = MpListener::bind_with_timeout(name.as_str(), Some(b"key"), timeout).unwrap();
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled.write_all(&[0]).unwrap();
    drop(UnixStream::connect(&path).unwrap());

    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut errors = Vec::new();
        loop {
            match listener.accept() {
                Ok(mut conn) => {
                    let mut buf = Vec::new();
                    while conn.recv_bytes_into(&mut buf).unwrap().is_some() {
                        conn.send_bytes(&buf).unwrap();
                    }
                    tx.send(()).unwrap();
                }
                Err(e) => {
                    errors.push(e.kind());
                    if errors.len() == 2 {
                        return errors;
                    }
                }
            }
        }
    });
    let start = Instant::now();
    let ok = python_client(path.to_str().unwrap(), "key");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    rx.recv_timeout(timeout)
        .expect("the Python client was not served");
    assert!(
        start.elapsed() < timeout,
        "served only after the stalled client's deadline"
    );
    let errors = server.join().unwrap();
    assert!(errors.contains(&io::ErrorKind::TimedOut), "{errors:?}");
    drop(stalled);
}

/// Clients that finish the handshake while nobody calls `accept` are held in a bounded
/// queue (64 queued, 64 more handshaken and waiting, the rest left in the backlog), and
/// dropping the listener then returns promptly.
#[test]
fn a_python_mp_listener_nobody_accepts_from_drops_promptly() {
    use std::sync::mpsc;
    use std::time::Duration;
    let name = unique_name("mp-drop");
    let listener = MpListener::bind(name.as_str(), Some(b"key")).unwrap();
    let (connected, done) = mpsc::channel();
    for _ in 0..140 {
        let (name, connected) = (name.clone(), connected.clone());
        thread::spawn(move || {
            // Those left in the backlog fail once the listener is gone.
            if let Ok(conn) = Connection::connect(name.as_str(), Some(b"key")) {
                let _ = connected.send(conn);
            }
        });
    }
    let conns: Vec<_> = (0..128)
        .map(|_| {
            done.recv_timeout(Duration::from_secs(60))
                .expect("a client")
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(listener);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("dropping the listener hung");
    drop(conns);
}
