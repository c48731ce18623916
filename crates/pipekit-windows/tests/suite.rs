//! The core behaviour suite on Windows named pipes, plus the cases only Windows has.
#![cfg(windows)]

use std::io::{self, Read, Write};
use std::num::NonZeroU8;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use pipekit_core::testing::{bytes_suite, messages_suite, pattern};
use pipekit_core::{ConnectOptions, ListenerOptions, MessageTooLarge, Mode, PipeName};
use pipekit_windows::{Listener, Stream, WindowsOptions};

fn unique_name() -> PipeName {
    use std::hash::{BuildHasher, RandomState};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one(n) as u32;
    PipeName::new(&format!("suite-{}-{n}-{random:08x}", std::process::id())).unwrap()
}

fn listener(mode: Mode) -> io::Result<(PipeName, Listener)> {
    let name = unique_name();
    let mut options = ListenerOptions::new();
    options.mode(mode);
    let listener = Listener::bind_with(&name, &options, &WindowsOptions::new())?;
    Ok((name, listener))
}

fn connect(name: &PipeName, mode: Mode) -> io::Result<Stream> {
    let mut options = ConnectOptions::new();
    options.mode(mode);
    Stream::connect_with(name, &options)
}

/// A connected pair over a freshly bound name: (accepted side, client side).
fn pair(mode: Mode) -> io::Result<(Stream, Stream)> {
    let (name, listener) = listener(mode)?;
    let client = connect(&name, mode)?;
    let server = listener.accept()?;
    Ok((server, client))
}

#[test]
fn bytes_over_byte_pipes() {
    bytes_suite(|| pair(Mode::Bytes));
}

#[test]
fn messages_over_message_pipes() {
    messages_suite(|| pair(Mode::Messages));
}

#[test]
fn a_full_size_message_reads_through_a_4096_byte_buffer() {
    let (server, client) = pair(Mode::Messages).unwrap();
    let msg = pattern(65535);
    let sent = msg.clone();
    // The two messages are more than the pipe buffer holds: send them from another thread.
    let writer = thread::spawn(move || {
        client.send(&sent)?;
        client.send(b"next").map(|()| client)
    });
    let mut small = [0u8; 4096];
    let err = server.recv(&mut small).unwrap_err();
    let report = MessageTooLarge::from_io(&err).expect("a MessageTooLarge report");
    assert_eq!((report.size, report.buffer_len), (65535, 4096));
    // Asking again with the same buffer reports the same message again.
    let err = server.recv(&mut small).unwrap_err();
    assert_eq!(MessageTooLarge::from_io(&err).unwrap().size, 65535);
    let mut whole = vec![0u8; 65535];
    assert_eq!(server.recv(&mut whole).unwrap(), Some(65535));
    assert!(whole == msg, "the message came back changed");
    assert_eq!(server.recv(&mut small).unwrap(), Some(4));
    assert_eq!(&small[..4], b"next");
    writer.join().unwrap().unwrap();
}

#[test]
fn recv_to_vec_takes_a_message_larger_than_64_kib() {
    let (server, client) = pair(Mode::Messages).unwrap();
    let msg = pattern(300_000);
    let sent = msg.clone();
    let writer = thread::spawn(move || client.send(&sent).map(|()| client));
    let mut got = Vec::new();
    assert_eq!(server.recv_to_vec(&mut got).unwrap(), Some(300_000));
    assert!(got == msg, "the message came back changed");
    drop(writer.join().unwrap().unwrap());
    assert_eq!(server.recv_to_vec(&mut got).unwrap(), None);
}

#[test]
fn second_listener_on_a_served_name_is_addr_in_use() {
    let (name, _first) = listener(Mode::Bytes).unwrap();
    let err = Listener::bind(&name).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&name.to_string()), "{err}");
}

#[test]
fn byte_mode_merges_writes() {
    let (mut server, mut client) = pair(Mode::Bytes).unwrap();
    client.write_all(b"one ").unwrap();
    client.write_all(b"two ").unwrap();
    client.write_all(b"three").unwrap();
    drop(client);
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"one two three");
}

#[test]
fn unread_messages_survive_the_servers_drop() {
    let (server, client) = pair(Mode::Messages).unwrap();
    for i in 0..20u32 {
        server.send(&i.to_be_bytes()).unwrap();
    }
    drop(server);
    let mut buf = [0u8; 16];
    for i in 0..20u32 {
        assert_eq!(client.recv(&mut buf).unwrap(), Some(4), "message {i}");
        assert_eq!(buf[..4], i.to_be_bytes());
    }
    assert_eq!(client.recv(&mut buf).unwrap(), None);
}

#[test]
fn flush_buffers_returns_once_the_peer_has_read() {
    let (mut server, mut client) = pair(Mode::Bytes).unwrap();
    server.write_all(b"read me").unwrap();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 7];
        client.read_exact(&mut buf).map(|()| buf)
    });
    server.flush_buffers().unwrap();
    assert_eq!(&reader.join().unwrap().unwrap(), b"read me");
}

#[test]
fn all_instances_busy_waits_then_times_out() {
    let name = unique_name();
    let mut options = ListenerOptions::new();
    options.max_instances(NonZeroU8::new(1));
    let listener = Listener::bind_with(&name, &options, &WindowsOptions::new()).unwrap();
    let _first = Stream::connect(&name).unwrap();
    let _accepted = listener.accept().unwrap();
    let mut wait = ConnectOptions::new();
    wait.wait(Some(Duration::from_millis(300)));
    let start = std::time::Instant::now();
    let err = Stream::connect_with(&name, &wait).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() >= Duration::from_millis(250), "{err}");
}

#[test]
fn a_busy_client_gets_the_instance_freed_by_a_dropped_stream() {
    let name = unique_name();
    let mut options = ListenerOptions::new();
    options
        .max_instances(NonZeroU8::new(1))
        .mode(Mode::Messages);
    let listener = Listener::bind_with(&name, &options, &WindowsOptions::new()).unwrap();
    let first = connect(&name, Mode::Messages).unwrap();
    let accepted = listener.accept().unwrap();
    let waiter = {
        let name = name.clone();
        thread::spawn(move || {
            let mut options = ConnectOptions::new();
            options
                .mode(Mode::Messages)
                .wait(Some(Duration::from_secs(20)));
            let second = Stream::connect_with(&name, &options)?;
            second.send(b"second")
        })
    };
    drop(first);
    drop(accepted);
    let next = listener.accept().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(next.recv(&mut buf).unwrap(), Some(6));
    assert_eq!(&buf[..6], b"second");
    waiter.join().unwrap().unwrap();
}

#[test]
fn a_client_that_left_before_accept_reads_as_eof() {
    let (name, listener) = listener(Mode::Bytes).unwrap();
    drop(Stream::connect(&name).unwrap());
    let mut server = listener.accept().unwrap();
    assert_eq!(server.read(&mut [0u8; 8]).unwrap(), 0);
}

#[test]
fn peer_credentials_are_this_process_on_both_ends() {
    let (server, client) = pair(Mode::Bytes).unwrap();
    let me = Some(std::process::id());
    assert_eq!(server.peer_credentials().unwrap().pid, me);
    assert_eq!(client.peer_credentials().unwrap().pid, me);
    assert_eq!(client.peer_credentials().unwrap().uid, None);
}

#[test]
fn mode_mismatch_is_invalid_input() {
    let (name, _listener) = listener(Mode::Bytes).unwrap();
    let err = connect(&name, Mode::Messages).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("byte-type"), "{err}");
}

#[test]
fn a_bad_security_descriptor_is_invalid_input() {
    let mut windows = WindowsOptions::new();
    windows.security("not sddl");
    let err = Listener::bind_with(&unique_name(), &ListenerOptions::new(), &windows).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not sddl"), "{err}");
}

#[test]
fn a_caller_supplied_descriptor_admits_clients() {
    let mut windows = WindowsOptions::new();
    windows.security("D:P(A;;GA;;;WD)");
    let name = unique_name();
    let listener = Listener::bind_with(&name, &ListenerOptions::new(), &windows).unwrap();
    let mut client = Stream::connect(&name).unwrap();
    let mut server = listener.accept().unwrap();
    client.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
}

#[test]
fn no_server_is_not_found_at_once() {
    let err = Stream::connect(&unique_name()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

#[test]
fn shutdown_write_is_unsupported() {
    let (server, _client) = pair(Mode::Bytes).unwrap();
    let err = server.shutdown_write().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
}

#[test]
fn a_client_needs_only_the_rights_a_multi_user_descriptor_grants() {
    // This user may connect (CLIENT_ACCESS) and nothing more: not create instances, not
    // GENERIC_WRITE. A client asking for more is refused by such a descriptor.
    let me = pipekit_windows::current_user_sid().unwrap();
    let sddl = format!(
        "D:P(A;;GA;;;SY)(A;;{:#x};;;{me})",
        pipekit_windows::CLIENT_ACCESS
    );
    let name = unique_name();
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages);
    let mut windows = WindowsOptions::new();
    windows.security(sddl);
    let listener = Listener::bind_with(&name, &options, &windows).unwrap();
    let client = thread::spawn({
        let name = name.clone();
        move || -> io::Result<Vec<u8>> {
            let client = connect(&name, Mode::Messages)?;
            client.send(b"let me in")?;
            let mut reply = Vec::new();
            client.recv_to_vec(&mut reply)?;
            Ok(reply)
        }
    });
    let server = listener.accept().unwrap();
    let mut got = Vec::new();
    server.recv_to_vec(&mut got).unwrap();
    assert_eq!(got, b"let me in");
    server.send(b"welcome").unwrap();
    let reply = client
        .join()
        .unwrap()
        .expect("the client connects with the rights the descriptor grants");
    assert_eq!(reply, b"welcome");
}
