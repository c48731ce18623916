//! The Unix security promises under attack: a per-user directory planted by someone else, a
//! peer of another user, a full backlog, stalled handshake clients, a full server, ancillary
//! data. Tests that need a second user run only as root (they make the peer process another
//! uid) and say so when skipped.
#![cfg(unix)]

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pipekit_tests::unique_name;

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

/// A fresh directory for one test, used as the peer's `TMPDIR`.
fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name(tag));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs the peer binary with `args`, `TMPDIR` set to `tmp` and no `XDG_RUNTIME_DIR`, so the
/// per-user directory is `tmp/pipekit-<uid>`.
/// A client that was led into a planted socket hangs there (nobody answers it): the run is
/// bounded, so such a client fails the test instead of hanging it.
fn peer_in(tmp: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(PEER);
    command
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("XDG_RUNTIME_DIR");
    within(std::time::Duration::from_secs(30), move || {
        command.output().unwrap()
    })
}

fn user_dir(tmp: &Path) -> PathBuf {
    tmp.join(format!("pipekit-{}", nix::unistd::geteuid()))
}

/// A socket the "other user" listens on inside `dir`; returns it non-blocking, so a
/// connection that reached it shows as a successful `accept`.
fn planted_socket(dir: &Path, name: &str) -> UnixListener {
    let listener = UnixListener::bind(dir.join(name)).unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

fn assert_refused_and_unreached(out: &Output, listener: &UnixListener, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: the client connected");
    assert!(
        stderr.contains("refusing to use") && stderr.contains("private directory"),
        "{what}: unexpected error: {stderr}"
    );
    match listener.accept() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("{what}: the planted socket was reached: {other:?}"),
    }
}

#[test]
fn clients_refuse_a_per_user_directory_open_to_others() {
    let tmp = scratch("planted-mode");
    let dir = user_dir(&tmp);
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let name = unique_name("planted");
    let listener = planted_socket(&dir, &name);
    let out = peer_in(&tmp, &["bytes-client", &name, "secret"]);
    assert_refused_and_unreached(&out, &listener, "mode 0777");
    assert!(String::from_utf8_lossy(&out.stderr).contains("0777"));
}

#[test]
fn clients_refuse_a_per_user_directory_that_is_a_symlink() {
    let tmp = scratch("planted-link");
    // The target is a perfectly private directory: only the symlink is wrong.
    let target = tmp.join("elsewhere");
    fs::DirBuilder::new().mode(0o700).create(&target).unwrap();
    std::os::unix::fs::symlink(&target, user_dir(&tmp)).unwrap();
    let name = unique_name("planted");
    let listener = planted_socket(&target, &name);
    let out = peer_in(&tmp, &["bytes-client", &name, "secret"]);
    assert_refused_and_unreached(&out, &listener, "symlink");
    assert!(String::from_utf8_lossy(&out.stderr).contains("symlink"));
}

#[test]
fn clients_refuse_a_per_user_directory_of_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to give the directory to another uid");
        return;
    }
    let tmp = scratch("planted-owner");
    let dir = user_dir(&tmp);
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    let name = unique_name("planted");
    let listener = planted_socket(&dir, &name);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let out = peer_in(&tmp, &["bytes-client", &name, "secret"]);
    assert_refused_and_unreached(&out, &listener, "owned by 65534");
    assert!(String::from_utf8_lossy(&out.stderr).contains("owned by uid 65534"));
}

/// A listening socket at `path` with a backlog of one that never accepts, filled with
/// connections until the kernel refuses more (Linux answers a non-blocking connect to a full
/// backlog with `EAGAIN`). Returns the listener and the connections.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn full_backlog(path: &Path) -> (std::os::fd::OwnedFd, Vec<std::os::fd::OwnedFd>) {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
    };
    let addr = UnixAddr::new(path).unwrap();
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&listener), &addr).unwrap();
    listen(&listener, Backlog::new(1).unwrap()).unwrap();
    let mut queued = Vec::new();
    for _ in 0..64 {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => queued.push(fd),
            Err(nix::errno::Errno::EAGAIN) => return (listener, queued),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("the backlog never filled");
}

/// Runs `connect` on a thread and waits at most `limit` for it (a connect that ignores its
/// deadline fails the test instead of hanging it).
fn within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the call did not return within its limit")
}

#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect_keeps_its_deadline_against_a_full_backlog() {
    use std::time::{Duration, Instant};
    let tmp = scratch("backlog");
    let path = tmp.join("busy.sock");
    let (_listener, _queued) = full_backlog(&path);
    let name = path.to_str().unwrap().to_owned();

    // No wait: a prompt "busy".
    let n = name.clone();
    let err = within(Duration::from_secs(10), move || {
        pipekit::Stream::connect(n.as_str()).unwrap_err()
    });
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    assert!(err.to_string().contains("busy"), "{err}");

    // A wait of 1 s: TimedOut after about that long, naming the name and the wait.
    let start = Instant::now();
    let n = name.clone();
    let err = within(Duration::from_secs(20), move || {
        let mut options = pipekit::ConnectOptions::new();
        options.wait(Some(Duration::from_secs(1)));
        pipekit::Stream::connect_with(n.as_str(), &options).unwrap_err()
    });
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains("1s") && text.contains("busy"),
        "{text}"
    );
}

/// A raw `SOCK_SEQPACKET` peer sends descriptors (`SCM_RIGHTS`) with an empty message and
/// with a non-empty one: each message arrives, the connection keeps going, and the
/// descriptors received are closed (the only other reader of the pipe sent is gone, so a
/// write to it fails with `EPIPE`).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn descriptors_sent_with_a_message_never_wedge_the_connection() {
    use std::io::IoSlice;
    use std::os::fd::{AsRawFd, OwnedFd};

    use nix::sys::socket::{
        AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, connect, sendmsg,
        socket,
    };

    let tmp = scratch("scm-rights");
    let path = tmp.join("fds.sock");
    let mut options = pipekit::ListenerOptions::new();
    options.mode(pipekit::Mode::Messages);
    let listener = pipekit::Listener::bind_with(path.to_str().unwrap(), &options).unwrap();

    let raw = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    connect(raw.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
    let server = listener.accept().unwrap();

    let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let fds = [read_end.as_raw_fd(); 3];
    let rights = [ControlMessage::ScmRights(&fds)];
    for payload in [&b""[..], b"with fds"] {
        let iov = [IoSlice::new(payload)];
        sendmsg::<()>(raw.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None).unwrap();
    }
    let iov = [IoSlice::new(b"next")];
    sendmsg::<()>(raw.as_raw_fd(), &iov, &[], MsgFlags::empty(), None).unwrap();

    let mut buf = [0u8; 64];
    assert_eq!(server.recv(&mut buf).unwrap(), Some(0));
    let mut msg = Vec::new();
    assert_eq!(server.recv_to_vec(&mut msg).unwrap(), Some(8));
    assert_eq!(msg, b"with fds");
    let n = server.recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"next");

    drop(read_end);
    let err = nix::unistd::write(&write_end, b"x").unwrap_err();
    assert_eq!(
        err,
        nix::errno::Errno::EPIPE,
        "a received descriptor was kept open"
    );
}

/// The peer binary run as uid/gid 65534 ("nobody"): a byte-mode client that sends `text` and
/// expects it echoed.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn client_as_nobody(name: &str, text: &str) -> Output {
    use std::os::unix::process::CommandExt;
    Command::new(PEER)
        .args(["bytes-client", name, text])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

/// An echo server thread over `listener` for one accepted client; returns the peer's uid.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn echo_one(listener: pipekit::Listener) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut conn = listener.accept().unwrap();
        let uid = conn.peer_credentials().unwrap().uid.unwrap();
        let mut buf = [0u8; 256];
        let n = conn.read(&mut buf).unwrap();
        conn.write_all(&buf[..n]).unwrap();
        uid
    })
}

/// Another local user connects to an abstract name (which has no directory to keep anyone
/// out): the default policy closes it and `accept` goes on to the next (same-user) client;
/// `PeerPolicy::Any` and an allow-list let it in.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn another_user_is_refused_by_default_and_served_when_allowed() {
    use pipekit::os::unix::{ListenerExt, PeerPolicy, UnixOptions};
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let me = nix::unistd::geteuid().as_raw();
    let name = format!("@{}", unique_name("peer-policy"));
    let listener = std::sync::Arc::new(pipekit::Listener::bind(name.as_str()).unwrap());
    let server = {
        let listener = std::sync::Arc::clone(&listener);
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut conn = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf).unwrap();
            conn.write_all(&buf[..n]).unwrap();
            conn.peer_credentials().unwrap().uid.unwrap()
        })
    };
    let refused = client_as_nobody(&name, "from nobody");
    assert!(!refused.status.success(), "the other user was served");
    assert_eq!(listener.refused_peers(), 1);
    let same = peer_in(Path::new("/tmp"), &["bytes-client", &name, "from me"]);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&same.stdout), "from me\n");
    assert_eq!(server.join().unwrap(), me);

    for policy in [PeerPolicy::Any, PeerPolicy::allow_uids([65534])] {
        let name = format!("@{}", unique_name("peer-policy"));
        let mut unix = UnixOptions::new();
        unix.peer_policy(policy.clone());
        let listener =
            pipekit::Listener::bind_unix(name.as_str(), &pipekit::ListenerOptions::new(), &unix)
                .unwrap();
        let server = echo_one(listener);
        let out = client_as_nobody(&name, "hello");
        assert!(
            out.status.success(),
            "{policy:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
        assert_eq!(server.join().unwrap(), 65534);
    }
}

/// Over `max_instances`, a client is told "busy" within its wait instead of getting a
/// connection that nobody serves; once a place frees, the next client is served. Sockets and
/// FIFOs alike.
#[test]
fn a_full_server_says_busy_and_serves_again_when_a_place_frees() {
    use std::io::{Read, Write};
    use std::time::Duration;

    use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
    for transport in [Transport::Socket, Transport::Fifo] {
        let name = unique_name("busy");
        let mut options = pipekit::ListenerOptions::new();
        options.max_instances(std::num::NonZeroU8::new(1));
        let mut unix = UnixOptions::new();
        unix.transport(transport);
        let listener = pipekit::Listener::bind_unix(name.as_str(), &options, &unix).unwrap();
        let connect = |wait: Option<Duration>| {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut options = pipekit::ConnectOptions::new();
                options.wait(wait);
                pipekit::Stream::connect_with(name.as_str(), &options)
            })
        };
        let first_client = connect(None);
        let first = listener.accept().unwrap();
        let first_client = first_client.join().unwrap().unwrap();

        let n = name.clone();
        let err = within(Duration::from_secs(20), move || {
            let mut options = pipekit::ConnectOptions::new();
            options.wait(Some(Duration::from_millis(300)));
            pipekit::Stream::connect_with(n.as_str(), &options).unwrap_err()
        });
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{transport:?}: {err}");
        assert!(
            pipekit_tests::chain(&err).contains("all 1 instances are taken"),
            "{transport:?}: {err}"
        );
        let err = pipekit::Stream::connect(name.as_str()).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::WouldBlock,
            "{transport:?}: {err}"
        );

        drop(first);
        drop(first_client);
        let client = connect(Some(Duration::from_secs(10)));
        let mut server = listener.accept().unwrap();
        let mut client = client.join().unwrap().unwrap();
        client.write_all(b"served").unwrap();
        let mut buf = [0u8; 6];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"served", "{transport:?}");
    }
}

/// A Tokio server at its instance limit keeps its runtime running (the accept waits without
/// blocking the thread) and accepts again when a place frees.
#[test]
fn a_tokio_server_at_its_limit_does_not_freeze_its_runtime() {
    use std::time::Duration;
    within(Duration::from_secs(30), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let name = unique_name("tokio-limit");
            let mut options = pipekit::ListenerOptions::new();
            options.max_instances(std::num::NonZeroU8::new(1));
            let listener = pipekit::tokio::Listener::bind_with(name.as_str(), &options).unwrap();
            let n = name.clone();
            let first_client =
                tokio::task::spawn_blocking(move || pipekit::Stream::connect(n.as_str()).unwrap());
            let first = listener.accept().await.unwrap();
            let first_client = first_client.await.unwrap();
            let listener = std::sync::Arc::new(listener);
            let second = {
                let listener = std::sync::Arc::clone(&listener);
                tokio::spawn(async move { listener.accept().await })
            };
            // The runtime still runs other tasks while the accept waits for a place.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!second.is_finished());
            drop(first);
            drop(first_client);
            let n = name.clone();
            let client = tokio::task::spawn_blocking(move || {
                let mut options = pipekit::ConnectOptions::new();
                options.wait(Some(Duration::from_secs(10)));
                pipekit::Stream::connect_with(n.as_str(), &options).unwrap()
            });
            second.await.unwrap().unwrap();
            client.await.unwrap();
        });
    });
}

/// A bind on a name a live server that is not pipekit's (a C# `NamedPipeServerStream`, here a
/// plain listening socket) already serves: `AddrInUse`, no lock file left behind, and (on
/// Linux, where the kernel lists listening sockets) no probe connection the server would take
/// for a client.
#[test]
fn binding_a_name_a_foreign_server_holds_leaves_nothing_behind() {
    let dir = scratch("foreign");
    let sock = dir.join("foreign.sock");
    let rooted = dir.join("CoreFxPipe_x");
    for (tag, name, path) in [
        (
            "path",
            pipekit::PipeName::path(&sock).unwrap(),
            sock.clone(),
        ),
        (
            "rooted .NET name",
            pipekit::PipeName::dotnet(rooted.to_str().unwrap()).unwrap(),
            rooted.clone(),
        ),
    ] {
        let foreign = UnixListener::bind(&path).unwrap();
        foreign.set_nonblocking(true).unwrap();
        let err = pipekit::Listener::bind(&name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{tag}: {err}");
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        assert!(
            !Path::new(&lock).exists(),
            "{tag}: the failed bind left {lock:?} behind"
        );
        if cfg!(target_os = "linux") {
            match foreign.accept() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("{tag}: the bind connected to the server: {other:?}"),
            }
        }
        drop(foreign);
        fs::remove_file(&path).unwrap();
    }
}

/// A root daemon serving a chosen group: at an explicit path the socket is 0600 by default
/// (another user cannot even connect), and with `socket_mode(0o660)`, `socket_group` and a
/// group allow-list, a client of that group (uid/gid 65534, another process) is served. The
/// socket has exactly the mode and group asked for. Portable and abstract names, FIFO
/// servers and bits beyond 0o777 are refused.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn socket_mode_and_group_let_a_chosen_group_in() {
    use std::os::unix::fs::MetadataExt;

    use pipekit::os::unix::{ListenerExt, PeerPolicy, Transport, UnixOptions};
    use pipekit::{Listener, ListenerOptions};
    let options = ListenerOptions::new();
    let mut wide = UnixOptions::new();
    wide.socket_mode(0o660);
    for name in [
        unique_name("mode-portable"),
        format!("@{}", unique_name("mode-abstract")),
    ] {
        let err = Listener::bind_unix(name.as_str(), &options, &wide).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}: {err}");
        assert!(err.to_string().contains("explicit path"), "{err}");
    }
    let mut fifo = wide.clone();
    fifo.transport(Transport::Fifo);
    let err = Listener::bind_unix(unique_name("mode-fifo").as_str(), &options, &fifo).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let mut odd = UnixOptions::new();
    odd.socket_mode(0o4660);
    let dir = Path::new("/tmp").join(unique_name("mode-dir"));
    fs::DirBuilder::new().mode(0o755).create(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("daemon.sock");
    let path_name = path.to_str().unwrap();
    let err = Listener::bind_unix(path_name, &options, &odd).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("0o4660"), "{err}");
    assert!(!path.exists());

    if !is_root() {
        eprintln!("skipped the second-user half: needs root to run a client as another uid");
        fs::remove_dir_all(&dir).unwrap();
        return;
    }
    // The default: 0600, and the other user's connect is refused by the file system.
    let mut open = UnixOptions::new();
    open.peer_policy(PeerPolicy::allow_gids([65534]));
    let listener = Listener::bind_unix(path_name, &options, &open).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let out = client_as_nobody(path_name, "knock");
    assert!(!out.status.success(), "a 0600 socket let another user in");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(listener);

    open.socket_mode(0o660).socket_group(Some(65534));
    let listener = Listener::bind_unix(path_name, &options, &open).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);
    let server = echo_one(listener);
    let out = client_as_nobody(path_name, "group member");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "group member\n");
    assert_eq!(server.join().unwrap(), 65534);
    fs::remove_dir_all(&dir).unwrap();
}
