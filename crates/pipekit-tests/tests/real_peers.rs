//! Interop with the real peers of the classic named-pipe recipe, each a runtime nobody here
//! wrote, installed from the package registries by `ci/peers/install.sh`:
//!
//! - Unix: C# (`System.IO.Pipes`) on .NET Core 3.1 and on Mono, against the .NET dialect.
//! - Windows (under Wine): C# on .NET Core 2.2 for Windows, in byte and message mode, and
//!   CPython 3.13 for Windows with pywin32 (the recipe's server and client, `ERROR_MORE_DATA`
//!   reads) and `multiprocessing.connection` against the `python_mp` dialect.
//!
//! The C# side is `tests/peers/PipePeer.cs` and the recipe's `examples/csharp/Seed*.cs`,
//! built with Mono's `mcs`. These tests need the peers, so they are ignored by default:
//!
//! ```text
//! bash ci/peers/install.sh                          # fills target/peers
//! PIPEKIT_PEERS=$PWD/target/peers cargo test -p pipekit-tests --test real_peers -- --ignored
//! ```
//!
//! Each runtime's tests sit in a module of their own (`dotnet_core::`, `mono::`,
//! `windows_dotnet::`, `pywin32::`, `python_mp::`), so CI runs and counts them per runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pipekit::{ConnectOptions, Listener, Stream};
use pipekit_tests::{pattern, spawn, unique_name};

#[cfg(unix)]
const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

/// Message sizes from 1 byte to 1 MiB, across the 4 KiB and 64 KiB buffer sizes.
const SIZES: [usize; 9] = [1, 2, 100, 4095, 4096, 65535, 65536, 65537, 1 << 20];

/// A path the peers (Windows programs under Wine, too) can open: under Wine a Unix path
/// `/x/y` is `Z:\x\y`.
fn native(path: impl Into<PathBuf>) -> PathBuf {
    let path = path.into();
    if cfg!(windows) {
        let s = path.to_string_lossy();
        if s.starts_with('/') {
            return PathBuf::from(format!("Z:{}", s.replace('/', "\\")));
        }
    }
    path
}

/// The directory `ci/peers/install.sh` filled.
fn peers() -> PathBuf {
    let dir = std::env::var_os("PIPEKIT_PEERS").expect(
        "PIPEKIT_PEERS must name the directory `bash ci/peers/install.sh` fills (target/peers)",
    );
    native(dir)
}

/// A file of this crate (`tests/peers/...`) or of the workspace (`../../examples/...`).
#[cfg(windows)]
fn source(relative: &str) -> PathBuf {
    native(format!("{}/{relative}", env!("CARGO_MANIFEST_DIR")))
}

/// A .NET runtime and the directory of the C# peers built for it.
struct Runtime {
    exe: PathBuf,
    assemblies: PathBuf,
    env: Vec<(&'static str, &'static str)>,
}

impl Runtime {
    /// `assembly` (`PipePeer.exe`, `SeedServer.exe`, ...) with `args`, on this runtime.
    fn run(&self, assembly: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        command.arg(self.assemblies.join(assembly)).args(args);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }
}

/// Runs `command` to its end; its output.
fn output(mut command: Command) -> Output {
    let child = spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("starting the peer");
    child.wait_with_output().unwrap()
}

/// Checks that a peer succeeded; its stdout.
fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {stdout:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A peer process that said it is ready.
struct Running {
    child: Child,
    rest: Option<JoinHandle<Vec<String>>>,
}

/// Starts `command` and waits until it prints a line containing `ready`.
fn start(mut command: Command, ready: &str) -> Running {
    let mut child = spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("starting the peer");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the peer ended before it said {ready:?}: {lines:?}, stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let done = line.contains(ready);
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    let rest = thread::spawn(move || {
        lines.extend(
            stdout
                .lines()
                .map_while(Result::ok)
                .map(|l| l.trim_end().to_owned()),
        );
        lines
    });
    Running {
        child,
        rest: Some(rest),
    }
}

impl Running {
    /// Waits for the end and checks success; every line it printed.
    fn finish(mut self, what: &str) -> Vec<String> {
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = self.child.wait().unwrap();
        let lines = self.rest.take().unwrap().join().unwrap();
        assert!(
            status.success(),
            "{what} failed ({status}): {lines:?}, stderr {stderr}"
        );
        lines
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The C# peer on `runtime`.
fn pipe_peer(runtime: &Runtime, args: &[&str]) -> Command {
    runtime.run("PipePeer.exe", args)
}

fn size_args() -> Vec<String> {
    SIZES.iter().map(|s| s.to_string()).collect()
}

fn ok_lines() -> String {
    SIZES.iter().map(|s| format!("ok {s}\n")).collect()
}

/// Serves `clients` byte-mode clients at `name`, each on its own thread, echoing until the
/// client closes; the bytes echoed. No client of these tests asks for shared memory, so
/// none is on it (even when the listener offers it).
fn byte_echo_server(listener: Listener, clients: usize) -> JoinHandle<usize> {
    thread::spawn(move || {
        let conns: Vec<_> = (0..clients)
            .map(|_| {
                let mut conn = listener.accept().unwrap();
                assert!(!conn.is_shared_memory(), "a C# client is on shared memory");
                thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let mut total = 0;
                    loop {
                        match conn.read(&mut buf).unwrap() {
                            0 => return total,
                            n => {
                                conn.write_all(&buf[..n]).unwrap();
                                total += n;
                            }
                        }
                    }
                })
            })
            .collect();
        conns.into_iter().map(|c| c.join().unwrap()).sum()
    })
}

/// Sends `SIZES` bytes through an echo server on `conn`, 16 KiB at a time (each piece read
/// back before the next, so neither side's buffers can fill), and checks every byte.
fn byte_echo_client(conn: &mut Stream) {
    for size in SIZES {
        let data = pattern(size, size as u8);
        let mut back = vec![0u8; 16 << 10];
        for piece in data.chunks(16 << 10) {
            conn.write_all(piece).unwrap();
            conn.read_exact(&mut back[..piece.len()]).unwrap();
            assert!(
                back[..piece.len()] == *piece,
                "{size} bytes came back changed"
            );
        }
    }
}

fn dotnet_connect_options() -> ConnectOptions {
    let mut options = ConnectOptions::new();
    options.wait(Some(Duration::from_secs(20)));
    options
}

/// PipePeer `echo-client` on `runtime` sends `SIZES` through `listener` (serving `name`).
fn csharp_client_against(runtime: &Runtime, name: &str, listener: Listener) {
    let server = byte_echo_server(listener, 1);
    let sizes = size_args();
    let mut args = vec!["echo-client", name];
    args.extend(sizes.iter().map(String::as_str));
    let out = output(pipe_peer(runtime, &args));
    assert_eq!(check(&out, "PipePeer echo-client"), ok_lines());
    assert_eq!(server.join().unwrap(), SIZES.iter().sum::<usize>());
}

/// A PipePeer `echo-server` on `runtime` at `name` (4 instances) serves 6 pipekit clients at
/// once, reaching it as `pipe` with `options`, each sending `SIZES`.
fn csharp_server_against(
    runtime: &Runtime,
    name: &str,
    pipe: pipekit::PipeName,
    options: &ConnectOptions,
) {
    let server = start(
        pipe_peer(runtime, &["echo-server", name, "4", "6"]),
        "listening",
    );
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let pipe = pipe.clone();
            let options = options.clone();
            thread::spawn(move || {
                let mut conn = Stream::connect_with(&pipe, &options).unwrap();
                byte_echo_client(&mut conn);
                assert!(
                    !conn.is_shared_memory(),
                    "a C# server offered shared memory"
                );
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    server.finish("PipePeer echo-server");
}

/// The tests every C# runtime passes against the .NET dialect in byte mode; `$runtime` makes
/// the [`Runtime`].
#[cfg(unix)]
macro_rules! csharp_byte_mode_tests {
    ($runtime:expr) => {
        use super::*;
        use pipekit::PipeName;

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn csharp_client_sends_1_byte_to_1_mib_to_a_pipekit_server() {
            let name = unique_name("cs-client");
            let listener = Listener::bind(PipeName::dotnet(&name).unwrap()).unwrap();
            csharp_client_against(&$runtime, &name, listener);
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn five_csharp_clients_at_once() {
            let name = unique_name("cs-clients");
            let listener = Listener::bind(PipeName::dotnet(&name).unwrap()).unwrap();
            let server = byte_echo_server(listener, 5);
            let runtime = $runtime;
            let clients: Vec<_> = (0..5)
                .map(|i| {
                    let size = (1000 + 7919 * i).to_string();
                    let mut command = pipe_peer(&runtime, &["echo-client", &name, &size]);
                    spawn(command.stdout(Stdio::piped()).stderr(Stdio::piped())).unwrap()
                })
                .collect();
            for child in clients {
                check(&child.wait_with_output().unwrap(), "PipePeer echo-client");
            }
            let want: usize = (0..5).map(|i| 1000 + 7919 * i).sum();
            assert_eq!(server.join().unwrap(), want);
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn a_csharp_server_with_several_instances_serves_pipekit_clients() {
            let name = unique_name("cs-server");
            let pipe = PipeName::dotnet(&name).unwrap();
            csharp_server_against(&$runtime, &name, pipe, &dotnet_connect_options());
        }

        /// pipekit clients that ask for shared memory, against a C# server (which knows
        /// nothing of it and waits for its clients to speak first): plain connections.
        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn pipekit_clients_that_ask_for_shared_memory_get_plain_connections_to_a_csharp_server() {
            let name = unique_name("cs-server-shm");
            let mut options = dotnet_connect_options();
            options.shared_memory(true);
            csharp_server_against(&$runtime, &name, PipeName::dotnet(&name).unwrap(), &options);
        }

        /// A C# client of a pipekit server that offers shared memory: the plain connection.
        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn a_csharp_client_of_a_server_that_offers_shared_memory_gets_the_plain_connection() {
            let name = unique_name("cs-client-shm");
            let mut options = pipekit::ListenerOptions::new();
            options.shared_memory(Some(1 << 20));
            let listener = Listener::bind_with(PipeName::dotnet(&name).unwrap(), &options).unwrap();
            csharp_client_against(&$runtime, &name, listener);
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn a_csharp_connect_with_a_timeout_times_out_when_nobody_serves() {
            let name = unique_name("cs-nobody");
            let started = std::time::Instant::now();
            let out = output(pipe_peer(&$runtime, &["connect-timeout", &name, "500"]));
            assert_eq!(check(&out, "PipePeer connect-timeout"), "timeout\n");
            assert!(
                started.elapsed() >= Duration::from_millis(500),
                "{:?}",
                started.elapsed()
            );
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn the_recipe_csharp_client_talks_to_a_pipekit_server() {
            let name = unique_name("cs-seed-client");
            let listener = Listener::bind(PipeName::dotnet(&name).unwrap()).unwrap();
            let server = thread::spawn(move || {
                let mut conn = listener.accept().unwrap();
                let mut buf = [0u8; 65535];
                let mut got = Vec::new();
                loop {
                    match conn.read(&mut buf).unwrap() {
                        0 => return got,
                        n => {
                            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                            conn.write_all(b"OK").unwrap();
                        }
                    }
                }
            });
            let out = output($runtime.run("SeedClient.exe", &[&name]));
            assert_eq!(check(&out, "SeedClient"), "Reply: OK\n".repeat(11));
            assert_eq!(server.join().unwrap(), recipe_messages());
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn the_recipe_csharp_server_answers_a_pipekit_client() {
            let name = unique_name("cs-seed-server");
            let server = start(
                $runtime.run("SeedServer.exe", &[&name, "1"]),
                "Waiting for a client",
            );
            let dotnet = PipeName::dotnet(&name).unwrap();
            let mut conn = Stream::connect_with(&dotnet, &dotnet_connect_options()).unwrap();
            for msg in recipe_messages() {
                conn.write_all(msg.as_bytes()).unwrap();
                let mut reply = [0u8; 2];
                conn.read_exact(&mut reply).unwrap();
                assert_eq!(&reply, b"OK");
            }
            drop(conn);
            let lines = server.finish("SeedServer");
            let received: Vec<_> = lines
                .iter()
                .filter_map(|l| l.strip_prefix("Received: "))
                .collect();
            assert_eq!(received, recipe_messages());
            assert!(
                lines.iter().any(|l| l == "Client disconnected"),
                "{lines:?}"
            );
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn binding_a_name_a_csharp_server_holds_fails_and_leaves_nothing_behind() {
            let name = unique_name("cs-held");
            let server = start(
                $runtime.run("SeedServer.exe", &[&name, "1"]),
                "Waiting for a client",
            );
            let dotnet = PipeName::dotnet(&name).unwrap();
            let err = Listener::bind(&dotnet).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
            let path = pipekit::os::unix::socket_path(&dotnet).unwrap();
            let mut lock = path.into_os_string();
            lock.push(".lock");
            assert!(
                !std::path::Path::new(&lock).exists(),
                "{lock:?} left behind"
            );
            // The C# server's first client is this one: the bind did not probe it (Linux
            // lists listening sockets; elsewhere a connect probe is unavoidable).
            let mut conn = Stream::connect_with(&dotnet, &dotnet_connect_options()).unwrap();
            conn.write_all(b"hello").unwrap();
            let mut reply = [0u8; 2];
            conn.read_exact(&mut reply).unwrap();
            drop(conn);
            let lines = server.finish("SeedServer");
            if cfg!(target_os = "linux") {
                assert_eq!(
                    lines,
                    [
                        format!("Waiting for a client on {name}"),
                        String::from("Received: hello"),
                        String::from("Client disconnected"),
                    ]
                );
            }
        }

        #[test]
        #[ignore = "needs the real peers (ci/peers/install.sh)"]
        fn the_path_rule_holds_with_tmpdir_set_unset_and_with_a_trailing_slash() {
            let dir = std::env::temp_dir().join(unique_name("tmpdir"));
            std::fs::create_dir(&dir).unwrap();
            let dir = dir.to_str().unwrap().to_owned();
            let cases = [
                ("set", Some(dir.clone())),
                ("with a trailing slash", Some(format!("{dir}/"))),
                ("unset", None),
            ];
            for (case, tmpdir) in cases {
                let with_tmpdir = |mut command: Command| {
                    match &tmpdir {
                        Some(value) => command.env("TMPDIR", value),
                        None => command.env_remove("TMPDIR"),
                    };
                    command
                };
                // The rule, computed here: `Path.GetTempPath()` (a slash added if missing,
                // `/tmp/` when unset) followed by `CoreFxPipe_<name>`.
                let path = |name: &str| match &tmpdir {
                    Some(t) if t.ends_with('/') => format!("{t}CoreFxPipe_{name}"),
                    Some(t) => format!("{t}/CoreFxPipe_{name}"),
                    None => format!("/tmp/CoreFxPipe_{name}"),
                };

                // A C# server, a pipekit client.
                let name = unique_name("cs-tmpdir");
                let server = start(
                    with_tmpdir(pipe_peer(&$runtime, &["echo-server", &name, "1", "1"])),
                    "listening",
                );
                assert!(
                    std::path::Path::new(&path(&name)).exists(),
                    "TMPDIR {case}: the C# server is not at {}",
                    path(&name)
                );
                let mut client = Command::new(PEER);
                client.args(["bytes-client", &format!("dotnet:{name}"), "over TMPDIR"]);
                let out = output(with_tmpdir(client));
                assert_eq!(check(&out, case), "over TMPDIR\n", "TMPDIR {case}");
                server.finish("PipePeer echo-server");

                // A pipekit server, a C# client.
                let name = unique_name("cs-tmpdir");
                let mut serve = Command::new(PEER);
                let dotnet = format!("dotnet:{name}");
                serve.args(["serve", &dotnet, "bytes", "echo", "--clients", "1"]);
                let server = start(with_tmpdir(serve), "ready");
                assert!(
                    std::path::Path::new(&path(&name)).exists(),
                    "TMPDIR {case}: the pipekit server is not at {}",
                    path(&name)
                );
                let out = output(with_tmpdir(pipe_peer(
                    &$runtime,
                    &["echo-client", &name, "1000"],
                )));
                assert_eq!(check(&out, case), "ok 1000\n", "TMPDIR {case}");
                server.finish("pipekit-peer serve");
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    };
}

/// What the recipe's clients send: "hello", then "1" to "10".
fn recipe_messages() -> Vec<String> {
    let mut msgs = vec![String::from("hello")];
    msgs.extend((1..=10).map(|i| i.to_string()));
    msgs
}

/// .NET Core 3.1 for Linux (from the `dotnetcore2` wheel).
#[cfg(unix)]
mod dotnet_core {
    fn runtime() -> super::Runtime {
        let peers = super::peers();
        super::Runtime {
            exe: peers.join("dotnet-linux/dotnet"),
            assemblies: peers.join("csharp/netcoreapp3.1"),
            // Debian 12's libicu is newer than any .NET Core 3.1 knows.
            env: vec![
                ("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1"),
                ("DOTNET_CLI_TELEMETRY_OPTOUT", "1"),
            ],
        }
    }

    csharp_byte_mode_tests!(runtime());
}

/// Mono (Debian's `mono-runtime`), running the same assemblies.
#[cfg(unix)]
mod mono {
    fn runtime() -> super::Runtime {
        super::Runtime {
            exe: "mono".into(),
            assemblies: super::peers().join("csharp/netcoreapp3.1"),
            env: Vec::new(),
        }
    }

    csharp_byte_mode_tests!(runtime());
}

/// .NET Core 2.2 for Windows, under Wine: byte and message mode, both ways.
#[cfg(windows)]
mod windows_dotnet {
    use super::*;
    use pipekit::Mode;

    fn runtime() -> Runtime {
        let peers = peers();
        Runtime {
            exe: peers.join("dotnet-windows\\dotnet.exe"),
            assemblies: peers.join("csharp\\netcoreapp2.2"),
            env: vec![("DOTNET_CLI_TELEMETRY_OPTOUT", "1")],
        }
    }

    fn sizes_after<'a>(first: &[&'a str], sizes: &'a [String]) -> Vec<&'a str> {
        let mut args = first.to_vec();
        args.extend(sizes.iter().map(String::as_str));
        args
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn csharp_byte_mode_client_against_a_pipekit_server() {
        let name = unique_name("wdn-bytes");
        csharp_client_against(&runtime(), &name, Listener::bind(name.as_str()).unwrap());
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn a_csharp_byte_mode_server_against_pipekit_clients() {
        let name = unique_name("wdn-bytes-server");
        // A C# server serves no sibling pipe: clients that ask for shared memory fall back
        // to the name itself.
        let mut options = dotnet_connect_options();
        options.shared_memory(true);
        let pipe = pipekit::PipeName::new(&name).unwrap();
        csharp_server_against(&runtime(), &name, pipe, &options);
    }

    /// A C# client of a pipekit server that offers shared memory (and serves the sibling
    /// pipe): the plain connection.
    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn a_csharp_client_of_a_server_that_offers_shared_memory_gets_the_plain_connection() {
        let name = unique_name("wdn-shm");
        let mut options = pipekit::ListenerOptions::new();
        options.shared_memory(Some(1 << 20));
        let listener = Listener::bind_with(name.as_str(), &options).unwrap();
        csharp_client_against(&runtime(), &name, listener);
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn csharp_message_mode_client_against_a_pipekit_server() {
        let name = unique_name("wdn-msgs");
        let server = message_echo_server(&name, None);
        let sizes = size_args();
        let out = output(pipe_peer(
            &runtime(),
            &sizes_after(&["msg-client", &name], &sizes),
        ));
        assert_eq!(check(&out, "PipePeer msg-client"), ok_lines());
        // Each C# write arrived as exactly one message.
        assert_eq!(server.join().unwrap(), SIZES);
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn a_csharp_message_mode_server_against_a_pipekit_client() {
        let name = unique_name("wdn-msgs-server");
        let server = start(
            pipe_peer(&runtime(), &["msg-server", &name, "1"]),
            "listening",
        );
        let mut options = dotnet_connect_options();
        options.mode(Mode::Messages);
        let conn = Stream::connect_with(name.as_str(), &options).unwrap();
        let mut back = Vec::new();
        for size in SIZES {
            let msg = pattern(size, size as u8);
            conn.send(&msg).unwrap();
            assert_eq!(conn.recv_to_vec(&mut back).unwrap(), Some(size));
            assert!(back == msg, "a {size}-byte message came back changed");
        }
        // A message larger than the buffer: reported with its size, and still readable.
        conn.send(&pattern(5000, 1)).unwrap();
        let mut small = [0u8; 100];
        let err = conn.recv(&mut small).unwrap_err();
        let too_large = pipekit::MessageTooLarge::from_io(&err).expect("MessageTooLarge");
        assert_eq!(too_large.size, 5000);
        assert_eq!(conn.recv_to_vec(&mut back).unwrap(), Some(5000));
        drop(conn);
        server.finish("PipePeer msg-server");
    }
}

/// Serves one message-mode client at `name`, echoing each message, offering shared memory
/// with rings of `offer` bytes if given (the client, not asking, is never on it); the sizes
/// it echoed.
#[cfg(windows)]
fn message_echo_server(name: &str, offer: Option<usize>) -> JoinHandle<Vec<usize>> {
    use pipekit::{ListenerOptions, Mode};
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages).shared_memory(offer);
    let listener = Listener::bind_with(name, &options).unwrap();
    thread::spawn(move || {
        let conn = listener.accept().unwrap();
        assert!(
            !conn.is_shared_memory(),
            "a foreign client is on shared memory"
        );
        let mut buf = Vec::new();
        let mut sizes = Vec::new();
        while let Some(n) = conn.recv_to_vec(&mut buf).unwrap() {
            conn.send(&buf).unwrap();
            sizes.push(n);
        }
        sizes
    })
}

/// A Windows Python (under Wine) running `script` with `args`.
#[cfg(windows)]
fn python(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new(peers().join("python-windows\\python.exe"));
    command.arg(source(script)).args(args);
    command
}

/// CPython 3.13 for Windows with pywin32, under Wine: the recipe's server and client as
/// written, and big messages read through a small buffer.
#[cfg(windows)]
mod pywin32 {
    use super::*;
    use pipekit::{ListenerOptions, Mode};

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn the_recipe_pywin32_client_talks_to_a_pipekit_server() {
        let name = unique_name("pywin32-client");
        let listener =
            Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))
                .unwrap();
        let server = thread::spawn(move || {
            let conn = listener.accept().unwrap();
            let mut buf = [0u8; 65535];
            let mut got = Vec::new();
            while let Some(n) = conn.recv(&mut buf).unwrap() {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                conn.send(b"OK").unwrap();
            }
            got
        });
        let out = output(python(
            "../../examples/python/seed_client_pywin32.py",
            &[&name],
        ));
        assert_eq!(check(&out, "seed_client_pywin32.py"), "OK\n".repeat(10));
        let want: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
        assert_eq!(server.join().unwrap(), want);
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn the_recipe_pywin32_server_answers_a_pipekit_client() {
        let name = unique_name("pywin32-server");
        let server = start(
            python(
                "../../examples/python/seed_server_pywin32.py",
                &[&name, "1"],
            ),
            "waiting for a client",
        );
        let mut options = dotnet_connect_options();
        options.mode(Mode::Messages);
        let conn = Stream::connect_with(name.as_str(), &options).unwrap();
        let mut buf = [0u8; 64];
        for msg in recipe_messages() {
            conn.send(msg.as_bytes()).unwrap();
            let n = conn.recv(&mut buf).unwrap().expect("a reply");
            assert_eq!(&buf[..n], b"OK");
        }
        drop(conn);
        let lines = server.finish("seed_server_pywin32.py");
        let received: Vec<_> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("received: "))
            .collect();
        assert_eq!(received, recipe_messages());
        assert_eq!(lines.last().map(String::as_str), Some("client gone"));
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn pywin32_reads_big_messages_through_error_more_data() {
        let name = unique_name("pywin32-more");
        // The server offers shared memory too: pywin32, which never opens the sibling pipe,
        // gets the plain connection.
        let server = message_echo_server(&name, Some(2 << 20));
        let sizes = ["1", "4096", "4097", "65535", "300000"];
        let mut args = vec![name.as_str()];
        args.extend(sizes);
        let out = output(python("tests/peers/pywin32_more_data.py", &args));
        // Each echo took ceil(size / 4096) reads, all but the last ERROR_MORE_DATA.
        assert_eq!(
            check(&out, "pywin32_more_data.py"),
            "ok 1 1\nok 4096 1\nok 4097 2\nok 65535 16\nok 300000 74\n"
        );
        server.join().unwrap();
    }
}

/// `multiprocessing.connection` of CPython 3.13 for Windows (the `{sha256}` handshake over
/// `AF_PIPE`), under Wine, against the `python_mp` dialect.
#[cfg(windows)]
mod python_mp {
    use super::*;
    use pipekit::dialect::python_mp::Connection;
    use std::io;

    fn address(name: &str) -> String {
        format!(r"\\.\pipe\{name}")
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn python_clients_with_the_right_and_the_wrong_authkey() {
        let name = unique_name("mp-win");
        let server = pipekit_tests::mp_echo_server(&name, Some(b"right"), 3);
        let client = |key| output(python("tests/peers/mp_client.py", &[&address(&name), key]));
        assert_eq!(check(&client("right"), "mp_client.py"), "ok\n");
        let wrong = client("wrong");
        assert!(!wrong.status.success());
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert!(stderr.contains("AuthenticationError"), "{stderr}");
        assert_eq!(check(&client("right"), "mp_client.py"), "ok\n");

        let results = server.join().unwrap();
        assert_eq!(results[0].as_ref().unwrap(), &1001);
        let err = results[1].as_ref().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert_eq!(results[2].as_ref().unwrap(), &1001);
    }

    #[test]
    #[ignore = "needs the real peers (ci/peers/install.sh)"]
    fn a_python_listener_refuses_the_wrong_authkey_and_serves_the_right_one() {
        let name = unique_name("mp-win-py");
        let listener = start(
            python("tests/peers/mp_listener.py", &[&address(&name), "right"]),
            "ready",
        );
        let err = Connection::connect(name.as_str(), Some(b"wrong")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");

        let mut conn = Connection::connect(name.as_str(), Some(b"right")).unwrap();
        let mut buf = Vec::new();
        for i in 0..1000 {
            let msg = format!("message {i}");
            conn.send_bytes(msg.as_bytes()).unwrap();
            assert_eq!(conn.recv_bytes_into(&mut buf).unwrap(), Some(msg.len()));
            assert_eq!(buf, msg.as_bytes());
        }
        let big = pattern(1 << 20, 7);
        conn.send_bytes(&big).unwrap();
        assert_eq!(conn.recv_bytes_into(&mut buf).unwrap(), Some(1 << 20));
        assert!(buf == big, "the 1 MiB payload came back changed");
        drop(conn);
        let lines = listener.finish("mp_listener.py");
        assert_eq!(lines, ["ready", "rejected AuthenticationError", "done"]);
    }
}
