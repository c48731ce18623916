//! The `pipekit` command driven as a user would: separate `listen` and `send` processes.

use std::process::{Child, Command, Output, Stdio};

use pipekit_tests::unique_name;

const PIPEKIT: &str = env!("CARGO_BIN_EXE_pipekit");

fn pipekit(args: &[&str]) -> Output {
    Command::new(PIPEKIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running pipekit")
}

fn spawn(args: &[&str]) -> Child {
    start_with(args, Stdio::piped)
}

/// Starts pipekit with `args`, stdin empty, stdout and stderr made by `out`.
fn start_with(args: &[&str], out: fn() -> Stdio) -> Child {
    Command::new(PIPEKIT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out())
        .stderr(out())
        .spawn()
        .expect("starting pipekit")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `pipekit send NAME --messages --wait-reply --timeout 20000 MSG...`, which must succeed;
/// returns what it printed. It waits for the server to be up.
fn send_messages(name: &str, msgs: &[&str]) -> String {
    let mut args = vec![
        "send",
        name,
        "--messages",
        "--wait-reply",
        "--timeout",
        "20000",
    ];
    args.extend_from_slice(msgs);
    let out = pipekit(&args);
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `pipekit listen NAME --dialect python-mp --authkey k --echo --count COUNT`.
fn python_mp_echo_server(name: &str, count: u32) -> Child {
    let count = count.to_string();
    spawn(&[
        "listen",
        name,
        "--dialect",
        "python-mp",
        "--authkey",
        "k",
        "--echo",
        "--count",
        &count,
    ])
}

/// `pipekit send NAME --dialect python-mp --wait-reply --timeout 20000 --authkey KEY MSG`.
fn python_mp_send(name: &str, key: &str, msg: &str) -> Output {
    pipekit(&[
        "send",
        name,
        "--dialect",
        "python-mp",
        "--wait-reply",
        "--timeout",
        "20000",
        "--authkey",
        key,
        msg,
    ])
}

/// The path NAME lives at (`pipekit path`).
fn path_of(name: &str) -> String {
    let out = pipekit(&["path", name]);
    assert!(out.status.success());
    text(&out.stdout).trim().to_string()
}

/// Whether anything is left in the filesystem for `name` (Windows pipes leave nothing).
fn leftovers(name: &str) -> bool {
    if cfg!(windows) {
        return false;
    }
    let path = path_of(name);
    std::path::Path::new(&path).exists() || std::path::Path::new(&format!("{path}.lock")).exists()
}

#[test]
fn listen_and_send_in_message_mode() {
    let name = unique_name("cli-msg");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--reply",
        "OK",
        "--count",
        "3",
    ]);
    assert_eq!(
        send_messages(&name, &["one", "two", "three"]),
        "OK
OK
OK
"
    );
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "listen: {}", text(&served.stderr));
    assert_eq!(text(&served.stdout), "one\ntwo\nthree\n");
    assert!(!leftovers(&name), "files left behind");
}

#[test]
fn listen_and_send_in_byte_mode_with_echo() {
    let name = unique_name("cli-bytes");
    let server = spawn(&["listen", &name, "--echo", "--count", "1"]);
    let out = pipekit(&["send", &name, "--wait-reply", "--timeout", "20000", "hello"]);
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success());
    // Byte mode is transparent: what arrived, nothing added.
    assert_eq!(text(&served.stdout), "hello");
}

#[cfg(unix)]
#[test]
fn listen_and_send_over_fifos() {
    let name = unique_name("cli-fifo");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--fifo",
        "--echo",
        "--count",
        "2",
    ]);
    let out = pipekit(&[
        "send",
        &name,
        "--messages",
        "--fifo",
        "--wait-reply",
        "--timeout",
        "20000",
        "x",
        "y",
    ]);
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "x\ny\n");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "listen: {}", text(&served.stderr));
    assert!(!leftovers(&name), "FIFO directory left behind");
}

#[test]
fn a_taken_name_and_a_missing_server_are_clear_errors() {
    let name = unique_name("cli-taken");
    let mut server = spawn(&["listen", &name, "--messages", "--reply", "OK"]);
    // The first server is up once it answers.
    send_messages(&name, &["ping"]);

    let second = pipekit(&["listen", &name, "--messages"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("already served"),
        "{}",
        text(&second.stderr)
    );
    assert!(second.stdout.is_empty());

    server.kill().unwrap();
    server.wait().unwrap();
    let absent = unique_name("cli-absent");
    let out = pipekit(&["send", &absent, "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no server"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2_and_help_has_examples() {
    assert_eq!(pipekit(&["listen"]).status.code(), Some(2));
    assert_eq!(pipekit(&["frobnicate"]).status.code(), Some(2));
    for cmd in ["listen", "send", "connect", "path", "bench"] {
        let out = pipekit(&[cmd, "--help"]);
        assert!(out.status.success());
        assert!(
            text(&out.stdout).contains("Example: pipekit"),
            "{cmd} --help has no example"
        );
    }
}

#[test]
fn path_prints_where_the_name_lives() {
    let path = path_of("test_pipe");
    if cfg!(windows) {
        assert_eq!(path, r"\\.\pipe\test_pipe");
    } else {
        assert!(path.ends_with("/test_pipe"), "{path}");
    }
}

#[test]
fn help_tells_the_exit_codes() {
    let out = pipekit(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for code in [
        "0 success",
        "1 runtime error",
        "2 usage error",
        "130",
        "143 by SIGTERM",
    ] {
        assert!(help.contains(code), "--help lacks {code:?}: {help}");
    }
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_stop_a_listener_and_remove_its_files() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::Read;
    // 128 + the signal's number, as shells report a command a signal stopped.
    for (signal, fifo, code) in [
        (Signal::SIGINT, false, 130),
        (Signal::SIGTERM, true, 143),
        (Signal::SIGTERM, false, 143),
    ] {
        let name = unique_name("cli-signal");
        let mut args = vec!["listen", name.as_str(), "--messages", "--reply", "OK"];
        if fifo {
            args.push("--fifo");
        }
        let mut server = spawn(&args);
        let out = pipekit(&[
            "send",
            &name,
            "--messages",
            "--wait-reply",
            "--timeout",
            "20000",
            "up?",
        ]);
        assert!(out.status.success(), "send: {}", text(&out.stderr));
        assert!(leftovers(&name), "a running server has its files");
        kill(Pid::from_raw(server.id() as i32), signal).unwrap();
        let status = server.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal:?}");
        let mut printed = String::new();
        server
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut printed)
            .unwrap();
        assert_eq!(printed, "up?\n");
        assert!(!leftovers(&name), "{signal:?} left files behind");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_python_example_client_talks_to_pipekit_listen() {
    let name = unique_name("cli-py");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--reply",
        "OK",
        "--count",
        "11",
    ]);
    // The server is up once it answers a first message.
    send_messages(&name, &["0"]);
    let path = path_of(&name);
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python/seed_client.py"
    );
    let out = Command::new("python3")
        .args([client, &path])
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\n".repeat(10));
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success());
    let expected: String = (0..=10).map(|i| format!("{i}\n")).collect();
    assert_eq!(text(&served.stdout), expected);
}

#[test]
fn python_mp_dialect_between_two_pipekit_processes_right_and_wrong_key() {
    let name = unique_name("cli-mp");
    let server = python_mp_echo_server(&name, 2);
    let out = python_mp_send(&name, "k", "one");
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\n");

    let wrong = python_mp_send(&name, "x", "no");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("authentication failed"),
        "{}",
        text(&wrong.stderr)
    );

    let out = python_mp_send(&name, "k", "two");
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success());
    assert_eq!(text(&served.stdout), "one\ntwo\n");
}

#[test]
fn path_follows_the_dotnet_rule() {
    let out = pipekit(&["path", "demo", "--dialect", "dotnet"]);
    assert!(out.status.success());
    let path = text(&out.stdout).trim().to_string();
    if cfg!(windows) {
        assert_eq!(path, r"\\.\pipe\demo");
    } else {
        let tmp = std::env::var("TMPDIR")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "/tmp".into());
        assert_eq!(
            path,
            format!("{}/CoreFxPipe_demo", tmp.trim_end_matches('/'))
        );
    }
    let bad = pipekit(&["path", "demo", "--authkey", "k"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
}

#[cfg(unix)]
#[test]
fn pythons_own_client_reaches_pipekit_listen_in_the_python_dialect() {
    let name = unique_name("cli-mp-py");
    let server = python_mp_echo_server(&name, 2);
    let ready = pipekit(&[
        "send",
        &name,
        "--dialect",
        "python-mp",
        "--authkey",
        "k",
        "--wait-reply",
        "--timeout",
        "20000",
        "ready?",
    ]);
    assert!(ready.status.success(), "{}", text(&ready.stderr));
    let out = pipekit(&["path", &name, "--dialect", "python-mp"]);
    let path = text(&out.stdout).trim().to_string();
    let code = format!(
        "from multiprocessing.connection import Client; c=Client('{path}', authkey=b'k'); \
         c.send_bytes(b'hi'); print(c.recv_bytes())"
    );
    let py = Command::new("python3")
        .args(["-c", &code])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert_eq!(text(&py.stdout), "b'hi'\n");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success());
    assert_eq!(text(&served.stdout), "ready?\nhi\n");
}

/// A client that connects and leaves during the python-mp handshake, and an unknown
/// `--allow-peer`, are reported; neither ends the server.
#[cfg(unix)]
#[test]
fn a_client_lost_in_the_handshake_does_not_stop_listen() {
    let name = unique_name("cli-mp-lost");
    let server = python_mp_echo_server(&name, 2);
    let send = |msg: &str| {
        let out = python_mp_send(&name, "k", msg);
        assert!(out.status.success(), "send: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{msg}\n"));
    };
    send("one");
    // Connects and is gone before the server's challenge is written.
    drop(std::os::unix::net::UnixStream::connect(path_of(&name)).unwrap());
    send("two");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert_eq!(text(&served.stdout), "one\ntwo\n");

    let bad = pipekit(&["listen", "x", "--allow-peer", "uid:abc"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(
        text(&bad.stderr).contains("--allow-peer"),
        "{}",
        text(&bad.stderr)
    );
}

/// Byte mode is transparent both ways: 100 000 random bytes (every byte value, no line
/// structure) through `connect` to `listen --echo` come back unchanged, and `listen` prints
/// exactly what it received. (Unix: `connect` half-closes at the end of its input; Windows
/// pipes cannot, so there `connect` ends with its input.)
#[cfg(unix)]
#[test]
fn byte_mode_connect_and_listen_move_binary_data_unchanged() {
    use std::io::{Read, Write};
    let name = unique_name("cli-binary");
    let mut server = spawn(&["listen", &name, "--echo"]);
    let mut server_out = server.stdout.take().unwrap();
    let server_printed = std::thread::spawn(move || {
        let mut all = Vec::new();
        server_out.read_to_end(&mut all).unwrap();
        all
    });
    // Waits for the server to be up.
    let out = pipekit(&["send", &name, "--wait-reply", "--timeout", "20000", "ping"]);
    assert!(out.status.success(), "send: {}", text(&out.stderr));

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let mut client = Command::new(PIPEKIT)
        .args(["connect", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let input = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let echoed = client.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(echoed.status.success(), "connect: {}", text(&echoed.stderr));
    assert_eq!(echoed.stdout.len(), data.len());
    assert!(echoed.stdout == data, "the echo differs from what was sent");

    let _ = server.kill();
    let _ = server.wait();
    let printed = server_printed.join().unwrap();
    assert_eq!(printed.len(), 4 + data.len());
    assert!(
        printed[..4] == *b"ping" && printed[4..] == data[..],
        "listen changed the bytes"
    );
}

/// `listen --greet` speaks first: a client reads the greeting before it sends anything.
#[test]
fn listen_greets_each_client_before_reading() {
    let name = unique_name("cli-greet");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--greet",
        "hello",
        "--echo",
        "--count",
        "1",
    ]);
    let mut options = pipekit_tests::connect_options(pipekit::Mode::Messages);
    options.wait(Some(std::time::Duration::from_secs(20)));
    let client = pipekit::Stream::connect_with(name.as_str(), &options).unwrap();
    let mut buf = Vec::new();
    client.recv_to_vec(&mut buf).unwrap();
    assert_eq!(buf, b"hello");
    client.send(b"x").unwrap();
    client.recv_to_vec(&mut buf).unwrap();
    assert_eq!(buf, b"x");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert_eq!(text(&served.stdout), "x\n");
}

/// `send --file` sends a file (or stdin) as one message, past the size arguments allow.
#[test]
fn send_file_and_stdin_as_one_message() {
    use std::io::Write;
    let name = unique_name("cli-file");
    let server = spawn(&["listen", &name, "--messages", "--count", "2"]);
    // 200 000 bytes: more than one command-line argument may hold on Linux (128 KiB).
    let data: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.msg"));
    std::fs::write(&path, &data).unwrap();
    let out = pipekit(&[
        "send",
        &name,
        "--messages",
        "--timeout",
        "20000",
        "--file",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "send --file: {}", text(&out.stderr));
    let mut child = Command::new(PIPEKIT)
        .args([
            "send",
            &name,
            "--messages",
            "--timeout",
            "20000",
            "--file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "send --file -: {}", text(&out.stderr));
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert_eq!(text(&served.stdout), format!("{data}\nfrom stdin\n"));
}

/// The README's shell recipe: `listen --inbox`, then a plain `printf > "$(pipekit path)"`.
#[cfg(unix)]
#[test]
fn a_shell_printf_reaches_listen_inbox() {
    use std::io::{BufRead, BufReader};
    let name = unique_name("cli-inbox");
    let mut server = spawn(&["listen", &name, "--inbox"]);
    let mut ready = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("pipekit: inbox at "), "{ready}");
    let script = format!("printf 'hello\\n' > \"$('{PIPEKIT}' path '{name}')\"");
    let status = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(status.success());
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "hello\n");
    let _ = server.kill();
    let _ = server.wait();
}

/// pipekit's own argument checks are usage errors like clap's: exit status 2.
#[test]
fn pipekits_own_usage_checks_exit_2() {
    for args in [
        &["send", "x", "--timeout", "0", "m"][..],
        &["send", "x", "--authkey", "k", "m"],
        &["bench", "--pin", "nowhere"],
        &["send", "x", "--file", "f", "m"],
    ] {
        let out = pipekit(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `--format`: a binary message shown as a hexdump by `send --wait-reply`, and as JSON (with
/// its length and the peer) by `listen`; a text message as JSON `utf8`.
#[test]
fn formats_show_binary_and_text_messages() {
    let name = unique_name("cli-format");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--echo",
        "--format",
        "json",
        "--count",
        "2",
    ]);
    let all: Vec<u8> = (0..=255u8).collect();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.bin"));
    std::fs::write(&path, &all).unwrap();
    let common = ["--messages", "--wait-reply", "--timeout", "20000"];
    let out = pipekit(
        &[
            &["send", name.as_str()][..],
            &common,
            &["--format", "hex", "--file", path.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    let dump = text(&out.stdout);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 17, "{dump}"); // 16 rows and the blank line
    assert_eq!(
        lines[0],
        "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|"
    );
    assert_eq!(
        lines[4],
        "00000040  40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f  |@ABCDEFGHIJKLMNO|"
    );
    let out = pipekit(&[&["send", name.as_str()][..], &common, &["hi"]].concat());
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "{}", text(&served.stderr));
    let printed = text(&served.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    let hex: String = all.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        lines[0].contains("\"len\":256") && lines[0].contains(&hex),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"len\":2") && lines[1].contains("\"utf8\":\"hi\""),
        "{}",
        lines[1]
    );
    #[cfg(unix)]
    {
        let uid = nix::unistd::geteuid().as_raw();
        assert!(lines[1].contains(&format!("\"uid\":{uid}")), "{}", lines[1]);
    }
}

/// `-v` reports who connected and each message's size on stderr; `connect --timeout` waits
/// for the server.
#[test]
fn verbose_listen_and_connect_report_on_stderr() {
    use std::io::Write;
    let name = unique_name("cli-verbose");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--echo",
        "-v",
        "--count",
        "1",
    ]);
    let mut client = Command::new(PIPEKIT)
        .args(["connect", &name, "--messages", "-v", "--timeout", "20000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "connect: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("connected to {name} (server: ")),
        "{}",
        text(&out.stderr)
    );
    #[cfg(unix)]
    assert_eq!(text(&out.stdout), "hi\n");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "{}", text(&served.stderr));
    let log = text(&served.stderr);
    assert!(
        log.contains("client connected (") && log.contains("2 bytes from"),
        "{log}"
    );
}

/// User-facing messages name things as the user wrote them, never in `Debug` form.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn path_of_an_abstract_name_is_a_clear_error() {
    let out = pipekit(&["path", "@abs"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "pipekit: @abs is an abstract socket name: it has no filesystem path\n"
    );
}

/// `connect --messages` reads stdin as bytes: a line per message by default, or split at
/// `--delimiter`, and bytes that are not UTF-8 go out as they are.
#[test]
fn connect_messages_split_stdin_at_the_delimiter_binary_safe() {
    use std::io::Write;
    for (delimiter, input) in [
        (None, &b"a\nb\n\xff\xfe\n"[..]),
        (Some("\\0"), &b"a\0b\0\xff\xfe"[..]),
        (Some(","), &b"a,b,\xff\xfe,"[..]),
    ] {
        let name = unique_name("cli-delim");
        let server = spawn(&[
            "listen",
            &name,
            "--messages",
            "--format",
            "json",
            "--count",
            "3",
        ]);
        let mut args = vec!["connect", name.as_str(), "--messages", "--timeout", "20000"];
        if let Some(d) = delimiter {
            args.extend(["--delimiter", d]);
        }
        let mut client = Command::new(PIPEKIT)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        client.stdin.take().unwrap().write_all(input).unwrap();
        let out = client.wait_with_output().unwrap();
        assert!(out.status.success(), "{delimiter:?}: {}", text(&out.stderr));
        let served = server.wait_with_output().unwrap();
        assert!(served.status.success(), "{}", text(&served.stderr));
        let printed = text(&served.stdout);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines.len(), 3, "{delimiter:?}: {printed}");
        assert!(lines[0].contains("\"utf8\":\"a\""), "{}", lines[0]);
        assert!(lines[1].contains("\"utf8\":\"b\""), "{}", lines[1]);
        assert!(
            lines[2].contains("\"len\":2") && lines[2].contains("\"hex\":\"fffe\""),
            "{delimiter:?}: {}",
            lines[2]
        );
    }
}

#[test]
fn a_delimiter_that_is_not_one_byte_is_a_usage_error() {
    for bad in ["", "ab", "\\q", "é"] {
        let out = pipekit(&["connect", "x", "--messages", "--delimiter", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("--delimiter"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// Starts pipekit with `args`, its output thrown away (a server that prints what it echoes
/// would otherwise fill a pipe nobody reads).
fn quiet(args: &[&str]) -> Child {
    start_with(args, Stdio::null)
}

/// Starts `pipekit relay ARGS -v` and waits for its "relaying FROM -> TO" line; the relay and
/// the FROM it serves (with the port a `tcp://127.0.0.1:0` got).
fn relay(args: &[&str]) -> (Child, String) {
    let (child, line) = first_report(&[&["relay"], args, &["-v"]].concat(), Stdio::null);
    let from = line
        .strip_prefix("pipekit: relaying ")
        .and_then(|rest| rest.split(" -> ").next())
        .unwrap_or_else(|| panic!("relay {args:?} said {line:?}"))
        .to_owned();
    (child, from)
}

/// Starts pipekit with `args` (stdout made by `out`) and waits for the first line it reports
/// on stderr; it goes on reading the rest so that pipekit never blocks on a full pipe.
fn first_report(args: &[&str], out: fn() -> Stdio) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(PIPEKIT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in stderr.lines().map_while(Result::ok) {});
    (child, line.trim_end().to_owned())
}

/// Random-looking bytes (every value, no pattern a bug could keep).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Waits until a server serves `name` (a connection that is dropped at once).
fn wait_for(name: &str) {
    let mut options = pipekit::ConnectOptions::new();
    options.wait(Some(std::time::Duration::from_secs(20)));
    drop(pipekit::Stream::connect_with(name, &options).unwrap());
}

/// Writes `data` on a thread while reading as much back, then half-closes; what came back.
/// On Unix the half-close reaches the pipe server, whose end then comes back as the end of
/// the TCP stream; Windows pipes have no half-close, so there just the echo is read.
fn echo_through(mut stream: std::net::TcpStream, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut writer = stream.try_clone().unwrap();
    let sent = data.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    if cfg!(unix) {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes more than were sent", rest.len());
    }
    sender.join().unwrap();
    back
}

/// `pipekit relay tcp://127.0.0.1:0 NAME` in front of `pipekit listen NAME --echo`: a TCP
/// client's random bytes come back unchanged, and its half-close ends the exchange.
#[test]
fn relay_lets_a_tcp_client_reach_a_pipe_server() {
    let name = unique_name("cli-relay-tcp");
    let mut server = quiet(&["listen", &name, "--echo"]);
    wait_for(&name);
    let (mut relay, from) = relay(&["tcp://127.0.0.1:0", &name]);
    let addr = from.strip_prefix("tcp://").unwrap();
    let data = noise(300_000);
    for _ in 0..2 {
        let back = echo_through(std::net::TcpStream::connect(addr).unwrap(), &data);
        assert!(back == data, "{} bytes came back, changed", back.len());
    }
    let _ = relay.kill();
    let _ = server.kill();
    let _ = relay.wait();
    let _ = server.wait();
}

/// `pipekit relay NAME tcp://ADDR`: a pipe client reaches a TCP echo server the test runs.
#[test]
fn relay_lets_a_pipe_client_reach_a_tcp_server() {
    use std::io::{Read, Write};
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut conn, _) = tcp.accept().unwrap();
        let mut reader = conn.try_clone().unwrap();
        std::io::copy(&mut reader, &mut conn).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let name = unique_name("cli-relay-pipe");
    let (mut relay, _) = relay(&[&name, &format!("tcp://{addr}")]);
    let mut conn = pipekit::Stream::connect(name.as_str()).unwrap();
    let data = noise(200_000);
    let mut writer = conn.try_clone().unwrap();
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        // No half-close on Windows pipes: there the test reads just the echo.
        let _ = writer.shutdown_write();
    });
    let mut back = vec![0u8; data.len()];
    conn.read_exact(&mut back).unwrap();
    assert!(back == data, "the bytes came back changed");
    sender.join().unwrap();
    drop(conn);
    echo.join().unwrap();
    let _ = relay.kill();
    let _ = relay.wait();
}

/// Between two message-mode pipes every message stays one message, sizes up to 1 MiB.
#[test]
fn relay_between_message_pipes_keeps_each_message() {
    let server_name = unique_name("cli-relay-msg-server");
    let mut server = quiet(&["listen", &server_name, "--messages", "--echo"]);
    send_messages(&server_name, &["up?"]);
    let name = unique_name("cli-relay-msg");
    let (mut relay, _) = relay(&[&name, &server_name, "--messages"]);
    let options = pipekit_tests::connect_options(pipekit::Mode::Messages);
    let conn = pipekit::Stream::connect_with(name.as_str(), &options).unwrap();
    let mut back = Vec::new();
    for size in [0usize, 1, 100, 65535, 65536, 1 << 20] {
        let msg = noise(size);
        conn.send(&msg).unwrap();
        assert_eq!(conn.recv_to_vec(&mut back).unwrap(), Some(size));
        assert!(back == msg, "a {size}-byte message came back changed");
    }
    drop(conn);
    let _ = relay.kill();
    let _ = server.kill();
    let _ = relay.wait();
    let _ = server.wait();
}

/// `exec:CMD` runs a command per connection: here `cat`, so the bytes come back, and the
/// client's half-close ends `cat` and with it the connection.
#[cfg(unix)]
#[test]
fn relay_to_a_command_per_connection() {
    use std::io::{Read, Write};
    let name = unique_name("cli-relay-exec");
    let (mut relay, _) = relay(&[&name, "exec:cat"]);
    for round in 0..2 {
        let mut conn = pipekit::Stream::connect(name.as_str()).unwrap();
        let data = noise(100_000 + round);
        let mut writer = conn.try_clone().unwrap();
        let sent = data.clone();
        let sender = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown_write().unwrap();
        });
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        sender.join().unwrap();
        assert!(
            back == data,
            "round {round}: {} bytes came back",
            back.len()
        );
    }
    let _ = relay.kill();
    let _ = relay.wait();
}

#[test]
fn relay_refuses_endpoints_it_cannot_serve() {
    for args in [&["exec:cat", "x"][..], &["-", "-"], &["x", "exec:"]] {
        let out = pipekit(&[&["relay"][..], args].concat());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `v` as the `&str`s `pipekit()` and `spawn()` take.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The command lines of the README's CLI section, as words (`cargo run -p pipekit-cli --`
/// taken as `pipekit`, the `# comment` dropped, `'...'` quoting undone).
fn readme_examples() -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("## The `pipekit` command").unwrap();
    let end = start + readme[start..].find("\n## Quick start").unwrap();
    let mut lines = Vec::new();
    let mut in_code = false;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let line = line.split(" # ").next().unwrap().trim();
        let line = line
            .strip_prefix("cargo run -p pipekit-cli -- ")
            .map(|rest| format!("pipekit {rest}"))
            .unwrap_or_else(|| line.to_owned());
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '\'' => quoted = !quoted,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        lines.push(words);
    }
    lines
}

/// Every command line of the README's CLI section runs here, as written but for the names
/// (made unique), the ports (`127.0.0.1:9000` becomes a free port, `example.net:9000` a TCP
/// echo server of the test's) and files (a `frame.bin` the test writes). A README line no
/// case here runs fails the test, so the examples cannot drift from the tool.
#[test]
fn the_readme_cli_examples_run() {
    use std::io::{Read, Write};
    let examples = readme_examples();
    let mut ran = vec![false; examples.len()];
    let frame = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("frame.bin");
    std::fs::write(&frame, noise(1000)).unwrap();
    let frame = frame.to_str().unwrap().to_owned();
    // The README line `line` with its names replaced; marks it as run.
    let mut take = |line: &str, names: &[(&str, &str)]| -> Vec<String> {
        let i = examples
            .iter()
            .position(|e| e.join(" ") == line)
            .unwrap_or_else(|| panic!("the README no longer has {line:?}"));
        ran[i] = true;
        examples[i][1..]
            .iter()
            .map(|w| {
                names
                    .iter()
                    .find(|(from, _)| w == from)
                    .map_or_else(|| w.clone(), |(_, to)| to.to_string())
            })
            .collect()
    };

    // listen --reply OK and send --wait-reply, under both names the README uses.
    for name in ["demo", "test_pipe"] {
        let unique = unique_name("readme");
        let names = [(name, unique.as_str())];
        let listen = take(
            &format!("pipekit listen {name} --messages --reply OK"),
            &names,
        );
        let server = spawn(&args(&listen));
        let send = if name == "demo" {
            take("pipekit send demo --messages --wait-reply 1 2 3", &names)
        } else {
            take("pipekit send test_pipe --messages --wait-reply 1 2", &names)
        };
        let mut send = args(&send);
        send.extend(["--timeout", "20000"]);
        let out = pipekit(&send);
        let replies = if name == "demo" { 3 } else { 2 };
        assert_eq!(
            text(&out.stdout),
            "OK\n".repeat(replies),
            "{}",
            text(&out.stderr)
        );
        // connect: a stdin line in, the reply out.
        if name == "test_pipe" {
            let connect = take("pipekit connect test_pipe --messages", &names);
            let mut client = Command::new(PIPEKIT)
                .args(args(&connect))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            client.stdin.take().unwrap().write_all(b"hi\n").unwrap();
            let out = client.wait_with_output().unwrap();
            assert!(out.status.success());
            assert_eq!(text(&out.stdout), "OK\n");
            let path = take("pipekit path test_pipe", &names);
            let out = pipekit(&args(&path));
            assert!(out.status.success() && text(&out.stdout).contains(&unique));
        }
        let mut server = server;
        let _ = server.kill();
        let mut printed = String::new();
        server
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut printed)
            .unwrap();
        assert!(printed.starts_with("1\n2\n"), "{printed}");
        let _ = server.wait();
    }

    // --greet: the server speaks first.
    let unique = unique_name("readme-greet");
    let names = [("test_pipe", unique.as_str())];
    let greet = take("pipekit listen test_pipe --messages --greet hello", &names);
    let mut server = quiet(&args(&greet));
    let mut options = pipekit_tests::connect_options(pipekit::Mode::Messages);
    options.wait(Some(std::time::Duration::from_secs(20)));
    let conn = pipekit::Stream::connect_with(unique.as_str(), &options).unwrap();
    let mut buf = Vec::new();
    conn.recv_to_vec(&mut buf).unwrap();
    assert_eq!(buf, b"hello");
    drop(conn);
    let _ = server.kill();
    let _ = server.wait();

    // --format json on listen; send --file; send --wait-reply --format hex --file.
    let unique = unique_name("readme-json");
    let names = [
        ("test_pipe", unique.as_str()),
        ("frame.bin", frame.as_str()),
    ];
    let mut json = args(&take(
        "pipekit listen test_pipe --messages --format json",
        &names,
    ))
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    json.extend(["--count".into(), "1".into()]);
    let server = spawn(&args(&json));
    let mut send = args(&take(
        "pipekit send test_pipe --messages --file frame.bin",
        &names,
    ))
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    send.extend(["--timeout".into(), "20000".into()]);
    assert!(pipekit(&args(&send)).status.success());
    let served = server.wait_with_output().unwrap();
    assert!(
        text(&served.stdout).contains("\"len\":1000,"),
        "{}",
        text(&served.stdout)
    );
    let unique = unique_name("readme-hex");
    let names = [
        ("test_pipe", unique.as_str()),
        ("frame.bin", frame.as_str()),
    ];
    let mut server = quiet(&["listen", &unique, "--messages", "--echo"]);
    let hex = take(
        "pipekit send test_pipe --messages --wait-reply --format hex --file frame.bin",
        &names,
    );
    let mut hex = args(&hex);
    hex.extend(["--timeout", "20000"]);
    let out = pipekit(&hex);
    assert!(
        text(&out.stdout).starts_with("00000000  "),
        "{}",
        text(&out.stderr)
    );
    let _ = server.kill();
    let _ = server.wait();

    // The relays.
    let demo = unique_name("readme-relay");
    let mut server = quiet(&["listen", &demo, "--echo"]);
    wait_for(&demo);
    let names = [
        ("demo", demo.as_str()),
        ("tcp://127.0.0.1:9000", "tcp://127.0.0.1:0"),
    ];
    let to_pipe = take("pipekit relay tcp://127.0.0.1:9000 demo", &names);
    let (mut relay_a, from) = relay(&args(&to_pipe)[1..]);
    let back = echo_through(
        std::net::TcpStream::connect(from.strip_prefix("tcp://").unwrap()).unwrap(),
        b"through TCP",
    );
    assert_eq!(back, b"through TCP");
    let _ = relay_a.kill();
    let _ = server.kill();
    let _ = server.wait();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", tcp.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut conn, _) = tcp.accept().unwrap();
        let mut reader = conn.try_clone().unwrap();
        let _ = std::io::copy(&mut reader, &mut conn);
    });
    let demo = unique_name("readme-relay-out");
    let names = [
        ("demo", demo.as_str()),
        ("tcp://example.net:9000", addr.as_str()),
    ];
    let from_pipe = take("pipekit relay demo tcp://example.net:9000", &names);
    let (mut relay_b, _) = relay(&args(&from_pipe)[1..]);
    let mut conn = pipekit::Stream::connect(demo.as_str()).unwrap();
    conn.write_all(b"to TCP").unwrap();
    let mut back = [0u8; 6];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"to TCP");
    drop(conn);
    let _ = relay_b.kill();
    let (front, back_name) = (unique_name("readme-front"), unique_name("readme-back"));
    let mut server = quiet(&["listen", &back_name, "--messages", "--echo"]);
    send_messages(&back_name, &["up?"]);
    let names = [("front", front.as_str()), ("back", back_name.as_str())];
    let relay_front = take("pipekit relay front back --messages", &names);
    let (mut relay_c, _) = relay(&args(&relay_front)[1..]);
    let conn = pipekit::Stream::connect_with(front.as_str(), &options).unwrap();
    conn.send(b"one message").unwrap();
    conn.recv_to_vec(&mut buf).unwrap();
    assert_eq!(buf, b"one message");
    drop(conn);
    let _ = relay_c.kill();
    let _ = server.kill();
    for child in [&mut relay_a, &mut relay_b, &mut relay_c, &mut server] {
        let _ = child.wait();
    }

    #[cfg(unix)]
    {
        // A command per connection.
        let demo = unique_name("readme-exec");
        let names = [("demo", demo.as_str())];
        let relay_exec = take("pipekit relay demo exec:tr a-z A-Z", &names);
        let (mut relay_d, _) = relay(&args(&relay_exec)[1..]);
        let mut conn = pipekit::Stream::connect(demo.as_str()).unwrap();
        conn.write_all(b"shout").unwrap();
        conn.shutdown_write().unwrap();
        let mut back = String::new();
        conn.read_to_string(&mut back).unwrap();
        assert_eq!(back, "SHOUT");
        let _ = relay_d.kill();
        let _ = relay_d.wait();

        // FIFOs, and the inbox a shell writes to.
        let unique = unique_name("readme-fifo");
        let names = [("test_pipe", unique.as_str())];
        let mut fifo = take("pipekit listen test_pipe --fifo", &names);
        fifo.extend(["--count".into(), "1".into()]);
        let server = spawn(&args(&fifo));
        let out = pipekit(&["send", &unique, "--timeout", "20000", "over FIFOs"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let served = server.wait_with_output().unwrap();
        assert_eq!(text(&served.stdout), "over FIFOs");

        let unique = unique_name("readme-inbox");
        let names = [("inbox", unique.as_str())];
        let inbox = take("pipekit listen inbox --inbox", &names);
        let mut server = Command::new(PIPEKIT)
            .args(args(&inbox))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stderr.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert!(ready.starts_with("pipekit: inbox at "), "{ready}");
        let shell = r#"printf 'msg\n' > "$(pipekit path inbox)""#;
        let i = examples
            .iter()
            .position(|e| e.join(" ").starts_with("printf msg\\n >"))
            .expect("the README's printf line");
        ran[i] = true;
        let dir = std::path::Path::new(PIPEKIT).parent().unwrap();
        let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
        let status = Command::new("sh")
            .args(["-c", &shell.replace("inbox", &unique)])
            .env("PATH", path)
            .status()
            .unwrap();
        assert!(status.success());
        let mut line = [0u8; 4];
        server
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut line)
            .unwrap();
        assert_eq!(&line, b"msg\n");
        let _ = server.kill();
        let _ = server.wait();
    }
    #[cfg(not(unix))]
    for (i, e) in examples.iter().enumerate() {
        // Unix-only lines (FIFOs, inboxes, exec:tr) say so in the README.
        let line = e.join(" ");
        if line.contains("--fifo") || line.contains("inbox") || line.contains("exec:") {
            ran[i] = true;
        }
    }

    let missed: Vec<String> = examples
        .iter()
        .zip(&ran)
        .filter(|(_, ran)| !**ran)
        .map(|(e, _)| e.join(" "))
        .collect();
    assert!(
        missed.is_empty(),
        "README examples no test runs: {missed:?}"
    );
}

/// `listen --mode 660 --group GID` at an explicit path makes the socket with exactly that
/// mode and group; `--mode` on a portable name and a mode that is not octal are usage or
/// input errors naming the problem.
#[cfg(unix)]
#[test]
fn listen_mode_and_group_set_the_socket_permissions() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(unique_name("cli-mode"));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("s.sock");
    let path_str = path.to_str().unwrap();
    let gid = nix::unistd::getegid().as_raw().to_string();
    let mut server = quiet(&["listen", path_str, "--mode", "660", "--group", &gid]);
    wait_for(path_str);
    let meta = std::fs::metadata(&path).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid().to_string(), gid);
    std::fs::remove_dir_all(&dir).unwrap();

    let portable = pipekit(&["listen", &unique_name("cli-mode"), "--mode", "660"]);
    assert!(!portable.status.success());
    assert!(
        text(&portable.stderr).contains("explicit path"),
        "{}",
        text(&portable.stderr)
    );
    let bad = pipekit(&["listen", "x", "--mode", "999"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("octal"), "{}", text(&bad.stderr));
}

/// Socket activation: a launcher (here a Python stand-in for systemd: it binds the socket,
/// moves it to descriptor 3, sets `LISTEN_FDS` and `LISTEN_PID` and execs) starts `pipekit
/// listen --inherited --echo`, which serves that socket; a client's bytes come back. Without
/// a passed socket, `--inherited` says so.
#[cfg(unix)]
#[test]
fn listen_inherited_serves_a_socket_passed_by_socket_activation() {
    let dir = std::env::temp_dir().join(unique_name("cli-activation"));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("s.sock");
    let path_str = path.to_str().unwrap();
    let launcher = r#"
import os, socket, sys
path, exe = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen()
if s.fileno() == 3:
    os.set_inheritable(3, True)
else:
    os.dup2(s.fileno(), 3)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(exe, [exe, "listen", "--inherited", "--echo", path])
"#;
    let mut server = Command::new("python3")
        .args(["-c", launcher, path_str, PIPEKIT])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(path_str);
    let mut conn = pipekit::Stream::connect(path_str).unwrap();
    let back = {
        use std::io::{Read, Write};
        conn.write_all(b"activated").unwrap();
        let mut back = [0u8; 9];
        conn.read_exact(&mut back).unwrap();
        back
    };
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(&back, b"activated");
    std::fs::remove_dir_all(&dir).unwrap();

    let alone = pipekit(&["listen", "--inherited", "/tmp/nothing-passed.sock"]);
    assert!(!alone.status.success());
    assert!(
        text(&alone.stderr).contains("LISTEN_FDS"),
        "{}",
        text(&alone.stderr)
    );
}

/// `pipekit bench --quick` with stderr not a terminal: a warning that the figures are not
/// measurements, a progress line per step, JSON with the run's metadata and each result's
/// spread over rounds, and nothing left in the per-user directory afterwards (the connect
/// peers are stopped, not killed).
#[test]
fn bench_quick_reports_progress_metadata_and_leaves_nothing_behind() {
    let dir = std::env::temp_dir().join(unique_name("cli-bench"));
    std::fs::create_dir(&dir).unwrap();
    let json = dir.join("b.json");
    let transports = if cfg!(windows) {
        "pipekit-pipe-bytes,tcp-nodelay"
    } else {
        "pipekit-uds-bytes,raw-uds"
    };
    let listed = text(&pipekit(&["bench", "--list"]).stdout);
    let transports: Vec<&str> = transports
        .split(',')
        .filter(|t| listed.lines().any(|l| l.split(' ').next() == Some(*t)))
        .collect();
    assert!(!transports.is_empty(), "{listed}");
    let user_dir = std::path::Path::new(&path_of("x"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bench_files = || {
        std::fs::read_dir(&user_dir).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("pkb-"))
            })
            .count()
        })
    };
    let before = bench_files();
    let out = pipekit(&[
        "bench",
        "--quick",
        "--transports",
        &transports.join(","),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("not measurements"), "{err}");
    for (i, t) in transports.iter().enumerate() {
        let line = format!("[{}/{}] {t} 65535 B", i + 1, transports.len());
        assert!(err.contains(&line), "no {line:?} in {err}");
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["rustc"].as_str().unwrap().starts_with("rustc "),
        "{doc}"
    );
    assert!(
        doc["timestamp"]["utc"].as_str().unwrap().ends_with('Z'),
        "{doc}"
    );
    for result in doc["results"].as_array().unwrap() {
        let spread = &result["throughput_spread"];
        assert_eq!(spread["rounds"], 1, "{result}");
        assert!(spread["min"].as_f64().unwrap() > 0.0, "{result}");
    }
    assert_eq!(
        bench_files(),
        before,
        "bench left files in {}",
        user_dir.display()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Entries of `dir` whose names start with `prefix` (none if `dir` cannot be read).
#[cfg(target_os = "linux")]
fn entries(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        },
    )
}

/// The System V message queues this user owns (`/proc/sysvipc/msg`: key msqid perms ... uid).
#[cfg(target_os = "linux")]
fn own_sysv_queues() -> Vec<String> {
    let uid = nix::unistd::geteuid().as_raw().to_string();
    std::fs::read_to_string("/proc/sysvipc/msg")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(7) == Some(uid.as_str()))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect()
}

/// Processes whose environment says they are a benchmark peer of the run with pid `pid`
/// (their listener address holds `pkb-PID-`).
#[cfg(target_os = "linux")]
fn peers_of(pid: u32) -> Vec<String> {
    let mark = format!("pkb-{pid}-");
    let own = nix::unistd::getpid().as_raw().to_string();
    entries(std::path::Path::new("/proc"), "")
        .into_iter()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()) && *p != own)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ")).is_ok_and(|env| {
                String::from_utf8_lossy(&env)
                    .split('\0')
                    .any(|v| v.starts_with("PIPEKIT_BENCH_PEER=") && v.contains(&mark))
            })
        })
        .collect()
}

/// A bench stopped with SIGINT in the middle of a run exits 130 and leaves nothing: no
/// socket, FIFO or lock file (in its temporary directory or the per-user one), no POSIX queue
/// or shared-memory segment, no System V queue, and no peer process. Before, Ctrl-C killed
/// the bench and left its peers running and their files behind.
#[cfg(target_os = "linux")]
#[test]
fn bench_stopped_by_sigint_leaves_no_file_queue_segment_or_process() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};
    let tmp = std::env::temp_dir().join(unique_name("cli-bench-stop"));
    std::fs::create_dir(&tmp).unwrap();
    let user_dir = std::path::Path::new(&path_of("x"))
        .parent()
        .unwrap()
        .to_path_buf();
    let queues_before = own_sysv_queues();
    // Each transport leaves something else if it is not removed; several rounds and long
    // measurements, so that the signal comes in the middle.
    let transports = "raw-uds,raw-fifo-1m,pipekit-fifo-bytes,pipekit-uds-bytes,sysv-mq,\
                      posix-mq,shm-ring,zeromq-ipc,raw-pipe";
    let mut bench = Command::new(PIPEKIT)
        .args([
            "bench",
            "--transports",
            transports,
            "--rounds",
            "20",
            "--duration",
            "0.2",
        ])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = bench.id();
    let mut lines = BufReader::new(bench.stderr.take().unwrap()).lines();
    // Step 11 is the second round's raw-fifo-1m: ten steps have run, one is under way.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("[11/") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("[11/")),
        "the bench ended early: {seen:?}"
    );
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    // What it prints from now on, read aside: a peer left running would hold the pipe open.
    let rest = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let rest = std::sync::Arc::clone(&rest);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                rest.lock().unwrap().push(line);
            }
        });
    }
    let status = bench.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{:?}", rest.lock().unwrap());
    assert_eq!(peers_of(pid), Vec::<String>::new(), "peers still running");
    // pipekit's per-user directory (under TMPDIR when there is no XDG_RUNTIME_DIR) stays;
    // nothing of the run may be in it.
    let mark = format!("pkb-{pid}-");
    for dir in entries(&tmp, "pipekit-") {
        assert_eq!(entries(&tmp.join(dir), ""), Vec::<String>::new());
    }
    let left: Vec<String> = entries(&tmp, "")
        .into_iter()
        .filter(|e| !e.starts_with("pipekit-"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "left in TMPDIR");
    assert_eq!(entries(&user_dir, &mark), Vec::<String>::new());
    assert_eq!(
        entries(std::path::Path::new("/dev/shm"), &mark),
        Vec::<String>::new()
    );
    assert_eq!(
        entries(std::path::Path::new("/dev/mqueue"), &mark),
        Vec::<String>::new()
    );
    assert_eq!(own_sysv_queues(), queues_before, "System V queues left");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `--clients 2 --rate R`: two client processes on one server, their aggregate throughput
/// with its CPU cost, and open-loop latency; a single-session transport says why it did not
/// run. `--report` writes the page and its charts.
#[test]
fn bench_with_clients_and_a_rate_reports_the_load_and_a_report() {
    let dir = std::env::temp_dir().join(unique_name("cli-bench-load"));
    std::fs::create_dir(&dir).unwrap();
    let json = dir.join("b.json");
    let report = dir.join("report");
    let (server, single) = if cfg!(windows) {
        ("pipekit-pipe-messages", "udp")
    } else {
        ("pipekit-uds-bytes", "raw-fifo-1m")
    };
    let out = pipekit(&[
        "bench",
        "--quick",
        "--clients",
        "2",
        "--rate",
        "2000",
        "--transports",
        &format!("{server},{single}"),
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["clients"], 2);
    assert_eq!(doc["rate"], 2000.0);
    let result = |name: &str| {
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["transport"] == name)
            .cloned()
            .unwrap()
    };
    let served = result(server);
    assert_eq!(served["clients"], 2, "{served}");
    for key in ["gb_per_s", "msgs_per_s", "cpu_s_per_gb", "cpu_s_per_msg"] {
        assert!(served[key].as_f64().unwrap() > 0.0, "{key}: {served}");
    }
    // Open loop at 1000 round trips/s per client for 50 ms: the p50 is a round trip, not a
    // queue that grew.
    assert!(
        served["latency_us"]["p50"].as_f64().unwrap() > 0.0,
        "{served}"
    );
    let skipped = result(single);
    assert!(
        skipped["not_run"]
            .as_str()
            .unwrap()
            .contains("single session"),
        "{skipped}"
    );
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(page.contains("<svg") && page.contains(server), "{page}");
    assert!(page.contains("single session"), "the reason is shown");
    for chart in [
        "throughput.svg",
        "latency-65535.svg",
        "cpu-65535.svg",
        "ratio.svg",
    ] {
        let svg = std::fs::read_to_string(report.join(chart)).unwrap();
        assert!(svg.trim_end().ends_with("</svg>"), "{chart}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A message queue at the headline size is never a blank row: run unprivileged (as `nobody`,
/// when the tests run as root), a POSIX queue is held to `msgsize_max` and a System V queue to
/// `msgmax`, and each 65535-byte chunk travels as several messages, with a result and the row
/// saying how it was carried.
#[cfg(target_os = "linux")]
#[test]
fn message_queues_at_65535_bytes_run_as_labelled_chunks_for_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run the bench as another, unprivileged user");
        return;
    }
    let dir = std::env::temp_dir().join(unique_name("cli-bench-mq"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let json = dir.join("b.json");
    let out = Command::new(PIPEKIT)
        .args([
            "bench",
            "--quick",
            "--transports",
            "posix-mq,sysv-mq",
            "--json",
            json.to_str().unwrap(),
        ])
        .env("TMPDIR", &dir)
        .env_remove("XDG_RUNTIME_DIR")
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let max = |path: &str| std::fs::read_to_string(path).unwrap().trim().to_string();
    for (name, limit) in [
        ("posix-mq", max("/proc/sys/fs/mqueue/msgsize_max")),
        ("sysv-mq", max("/proc/sys/kernel/msgmax")),
    ] {
        let r = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["transport"] == name)
            .unwrap();
        if limit.parse::<usize>().unwrap() >= 65535 {
            continue;
        }
        assert!(r["gb_per_s"].as_f64().unwrap() > 0.0, "{r}");
        let carried = r["carried"].as_str().unwrap_or("");
        assert!(
            carried.contains(&format!("messages of up to {limit} B")),
            "{r}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `pipekit listen ARGS -v` and waits for its "serving NAME" line; the server and the
/// name it serves (with the port a `tls://127.0.0.1:0` got). Its stdout is kept.
fn listen_verbose(args: &[&str]) -> (Child, String) {
    let (child, line) = first_report(&[&["listen"], args, &["-v"]].concat(), Stdio::piped);
    let name = line
        .strip_prefix("pipekit: serving ")
        .unwrap_or_else(|| panic!("listen {args:?} said {line:?}"))
        .to_owned();
    (child, name)
}

/// The README's "Across machines" commands, on loopback: `listen tls://…` with a certificate
/// and key, `send tls://… --ca`; without the CA the client refuses the server.
#[test]
fn listen_and_send_over_tls_with_certificates() {
    let pki = pipekit_tests::Pki::new("cli-tls");
    let (cert, key) = pki.server();
    let ca = pki.ca_file();
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let (mut server, name) = listen_verbose(&[
        "tls://127.0.0.1:0",
        "--messages",
        "--reply",
        "OK",
        "--cert",
        cert,
        "--key",
        key,
    ]);
    assert!(
        name.starts_with("tls://127.0.0.1:") && !name.ends_with(":0"),
        "{name}"
    );
    let out = pipekit(&[
        "send",
        &name,
        "--messages",
        "--wait-reply",
        "--ca",
        ca,
        "hello",
        "again",
    ]);
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\nOK\n");

    let out = pipekit(&["send", &name, "--messages", "--wait-reply", "hello"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown CA: {}",
        text(&out.stderr)
    );
    let said = text(&out.stderr);
    assert!(
        said.contains("not trusted") || said.contains("no trusted CA"),
        "{said}"
    );

    let _ = server.kill();
    let _ = server.wait();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut server.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout, "hello\nagain\n");
}

/// `relay tls://… NAME` exposes a local pipe server to another machine over TLS; messages
/// stay messages end to end.
#[test]
fn relay_exposes_a_pipe_server_over_tls() {
    let pki = pipekit_tests::Pki::new("cli-relay-tls");
    let (cert, key) = pki.server();
    let ca = pki.ca_file();
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let local = unique_name("relay-tls");
    let mut server = quiet(&["listen", &local, "--messages", "--echo"]);
    wait_for_messages(&local);
    let (mut relay, from) = relay(&[
        "tls://127.0.0.1:0",
        &local,
        "--messages",
        "--cert",
        cert,
        "--key",
        key,
    ]);
    assert!(
        from.starts_with("tls://127.0.0.1:") && !from.ends_with(":0"),
        "{from}"
    );
    let mut options = pipekit::ConnectOptions::new();
    options.mode(pipekit::Mode::Messages).tls_ca(ca);
    let client = pipekit::Stream::connect_with(&from, &options).unwrap();
    let mut back = Vec::new();
    for msg in [&b""[..], b"one", &noise(100_000)] {
        client.send(msg).unwrap();
        assert_eq!(client.recv_to_vec(&mut back).unwrap(), Some(msg.len()));
        assert!(back == msg, "a message came back changed");
    }
    drop(client);
    for child in [&mut relay, &mut server] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_for_messages(name: &str) {
    let mut options = pipekit::ConnectOptions::new();
    options
        .mode(pipekit::Mode::Messages)
        .wait(Some(std::time::Duration::from_secs(20)));
    drop(pipekit::Stream::connect_with(name, &options).unwrap());
}

/// Network flags where they mean nothing, and plain TCP beyond loopback, are refused.
#[test]
fn network_flags_are_checked() {
    let name = unique_name("flags");
    for args in [
        &["listen", name.as_str(), "--cert", "c.pem", "--key", "k.pem"][..],
        &["listen", "tls://127.0.0.1:0", "--ca", "ca.pem"],
        &[
            "send",
            "tls://127.0.0.1:1",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "x",
        ],
        &["send", name.as_str(), "--ca", "ca.pem", "x"],
        &["listen", "tcp://127.0.0.1:0", "--fifo"],
        &["relay", "tcp://0.0.0.0:0", name.as_str()],
    ] {
        let out = pipekit(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = pipekit(&["listen", "tcp://0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--insecure"),
        "{}",
        text(&out.stderr)
    );
    let out = pipekit(&["listen", "tls://127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--cert"),
        "{}",
        text(&out.stderr)
    );
}

/// `--server-name`: a server reached by address whose certificate names only a host name.
#[test]
fn send_checks_the_server_name_it_is_told() {
    let pki = pipekit_tests::Pki::new("cli-tls-name");
    let (cert, key) = pki.issue("svc", &["svc.test"], false);
    let ca = pki.ca_file();
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let (mut server, name) = listen_verbose(&[
        "tls://127.0.0.1:0",
        "--messages",
        "--reply",
        "OK",
        "--cert",
        cert,
        "--key",
        key,
    ]);
    let out = pipekit(&[
        "send",
        &name,
        "--messages",
        "--wait-reply",
        "--ca",
        ca,
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid for name"),
        "{}",
        text(&out.stderr)
    );
    let out = pipekit(&[
        "send",
        &name,
        "--messages",
        "--wait-reply",
        "--ca",
        ca,
        "--server-name",
        "svc.test",
        "hi",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\n");
    let _ = server.kill();
    let _ = server.wait();
}

/// `listen --shared-memory` offers, `send --shared-memory` takes: the messages come back and
/// `-v` says which client is on shared memory; a `send` without the flag is served plainly.
/// On a network name the flag is a usage error.
#[cfg(unix)]
#[test]
fn listen_and_send_over_shared_memory() {
    let name = unique_name("cli-shm");
    let server = spawn(&[
        "listen",
        &name,
        "--messages",
        "--echo",
        "--shared-memory",
        "-v",
        "--count",
        "3",
    ]);
    let out = pipekit(&[
        "send",
        &name,
        "--messages",
        "--shared-memory",
        "--wait-reply",
        "--timeout",
        "20000",
        "hello",
        "world",
    ]);
    assert!(out.status.success(), "send: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    assert_eq!(send_messages(&name, &["plain"]), "plain\n");
    let served = server.wait_with_output().unwrap();
    assert!(served.status.success(), "{}", text(&served.stderr));
    let log = text(&served.stderr);
    assert_eq!(log.matches("client connected (").count(), 2, "{log}");
    assert_eq!(log.matches("over shared memory").count(), 1, "{log}");

    let out = pipekit(&["listen", "tcp://127.0.0.1:0", "--shared-memory"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--shared-memory"),
        "{}",
        text(&out.stderr)
    );
}
