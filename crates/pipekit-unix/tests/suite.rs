//! The core behaviour suite on every Unix socket transport, over real bound names.
#![cfg(unix)]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use pipekit_core::testing::{bytes_suite, messages_suite};
use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PipeName};
use pipekit_unix::{Framing, Listener, Stream, Transport, UnixOptions};

fn unique_name() -> PipeName {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    PipeName::new(&format!(
        "suite-{}-{n}-{:x}",
        std::process::id(),
        rand_u32()
    ))
    .unwrap()
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8) as u32
}

/// A connected pair over a freshly bound name: (accepted side, client side).
fn pair(mode: Mode, framing: Framing) -> io::Result<(Stream, Stream)> {
    let mut unix = UnixOptions::new();
    unix.framing(framing);
    pair_with(mode, unix)
}

fn fifo_pair(mode: Mode) -> io::Result<(Stream, Stream)> {
    let mut unix = UnixOptions::new();
    unix.transport(Transport::Fifo);
    let (server, client) = pair_with(mode, unix)?;
    assert_eq!(server.transport(), Transport::Fifo);
    assert_eq!(client.transport(), Transport::Fifo);
    Ok((server, client))
}

fn pair_with(mode: Mode, unix: UnixOptions) -> io::Result<(Stream, Stream)> {
    let name = unique_name();
    let mut lo = ListenerOptions::new();
    lo.mode(mode);
    let listener = Listener::bind_with(&name, &lo, &unix)?;
    let mut co = ConnectOptions::new();
    co.mode(mode);
    let client = thread::spawn(move || Stream::connect_with(&name, &co, &unix));
    let server = listener.accept()?;
    let client = client.join().expect("connect thread")?;
    Ok((server, client))
}

#[test]
fn bytes_over_stream_sockets() {
    bytes_suite(|| pair(Mode::Bytes, Framing::Native));
}

#[test]
fn messages_over_native_sockets() {
    messages_suite(|| pair(Mode::Messages, Framing::Native));
}

#[test]
fn messages_over_framed_stream_sockets() {
    messages_suite(|| pair(Mode::Messages, Framing::LengthPrefixed));
}

#[test]
fn bytes_over_fifos() {
    bytes_suite(|| fifo_pair(Mode::Bytes));
}

#[test]
fn messages_over_fifos() {
    messages_suite(|| fifo_pair(Mode::Messages));
}

#[cfg(target_os = "linux")]
#[test]
fn fifos_get_a_larger_pipe_capacity() {
    let (server, client) = fifo_pair(Mode::Bytes).unwrap();
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for s in [&server, &client] {
        let capacity = s.pipe_capacity().expect("Linux reports the capacity");
        assert!(capacity >= (1 << 20).min(max).min(256 << 10), "{capacity}");
    }
}

#[test]
fn byte_methods_refuse_the_wrong_mode() {
    let (a, _b) = pair(Mode::Bytes, Framing::Native).unwrap();
    assert_eq!(
        a.send(b"x").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        a.recv(&mut [0; 4]).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn peer_credentials_name_this_process() {
    let (a, b) = pair(Mode::Messages, Framing::Native).unwrap();
    for s in [&a, &b] {
        let cred = s.peer_credentials().unwrap();
        assert_eq!(cred.uid, Some(nix::unistd::geteuid().as_raw()));
        if cfg!(any(target_os = "linux", target_os = "macos")) {
            assert_eq!(cred.pid, Some(std::process::id()));
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_one_mebibyte_message_fits_where_wmem_max_allows() {
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (a, b) = pair(Mode::Messages, Framing::Native).unwrap();
    let msg = pipekit_core::testing::pattern(1 << 20);
    let sent = msg.clone();
    let writer = thread::spawn(move || a.send(&sent).map(|()| a));
    let result = writer.join().unwrap();
    if wmem_max < (1 << 20) + 64 {
        // The kernel caps SO_SNDBUF: the send is refused with a clear error, not truncated.
        let err = result.unwrap_err();
        assert!(err.to_string().contains("wmem_max"), "{err}");
        return;
    }
    let _a = result.unwrap();
    let mut got = Vec::new();
    assert_eq!(b.recv_to_vec(&mut got).unwrap(), Some(1 << 20));
    assert!(got == msg, "the 1 MiB message came back changed");
}
