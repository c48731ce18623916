//! With `SIGPIPE` at its default action (which kills the process), writing to a FIFO whose
//! reader is gone must still come back as `BrokenPipe`. Rust programs ignore `SIGPIPE`, so
//! this test binary puts the default action back first; it runs in its own process.
#![cfg(unix)]

use std::io::{self, Write};
use std::thread;

use std::io::Read;
use std::sync::Mutex;

use nix::sys::signal::{SigHandler, Signal, signal};
use pipekit::os::unix::fifo::{Receiver, Sender};
use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, PipeName, Stream};
use pipekit_tests::unique_name;

/// The tests here change the process's SIGPIPE action: one at a time.
static DISPOSITION: Mutex<()> = Mutex::new(());

fn set_sigpipe(action: SigHandler) {
    // SAFETY: installs the default action or "ignore" for SIGPIPE; no handler code runs.
    unsafe { signal(Signal::SIGPIPE, action) }.expect("setting the SIGPIPE action");
}

fn default_sigpipe() {
    set_sigpipe(SigHandler::SigDfl);
}

/// A FIFO connection pair in `mode`: (server end, client end).
fn fifo_pair(mode: Mode) -> (Stream, Stream) {
    let name = unique_name("sigpipe");
    let mut unix = UnixOptions::new();
    unix.transport(Transport::Fifo);
    let mut options = ListenerOptions::new();
    options.mode(mode);
    let listener = Listener::bind_unix(name.as_str(), &options, &unix).unwrap();
    let client = thread::spawn(move || {
        let mut options = ConnectOptions::new();
        options.mode(mode);
        Stream::connect_with(name.as_str(), &options)
    });
    let server = listener.accept().unwrap();
    (server, client.join().unwrap().unwrap())
}

/// A write that has moved part of its bytes when the reader dies: the kernel raises SIGPIPE
/// and returns the short count (no EPIPE). With SIGPIPE at its default action the process
/// must live and the next write report `BrokenPipe`.
#[test]
fn a_write_cut_half_way_by_a_dying_reader_raises_no_signal() {
    let _one = DISPOSITION.lock().unwrap_or_else(|e| e.into_inner());
    default_sigpipe();
    let (mut server, mut client) = fifo_pair(Mode::Bytes);
    // Far more than any pipe holds, so the write is still going when the reader goes.
    let big = vec![5u8; 16 << 20];
    let writer = thread::spawn(move || {
        let first = client.write(&big);
        let next = client.write(&big);
        (first, next)
    });
    let mut byte = [0u8; 1];
    server.read_exact(&mut byte).unwrap(); // the write has started moving bytes
    drop(server);
    let (first, next) = writer.join().unwrap();
    let moved = first.expect("the first write moved bytes before the reader left");
    assert!(moved > 0 && moved < 16 << 20, "moved {moved}");
    let err = next.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
}

/// A stream made while SIGPIPE is ignored, written after the host put the default back.
#[test]
fn a_sigpipe_action_changed_after_connect_is_still_honoured() {
    let _one = DISPOSITION.lock().unwrap_or_else(|e| e.into_inner());
    set_sigpipe(SigHandler::SigIgn);
    let (server, mut client) = fifo_pair(Mode::Messages);
    default_sigpipe();
    drop(server);
    let err = (0..64)
        .find_map(|_| client.write(&[7u8; 4096]).err())
        .expect("writes to a gone reader kept succeeding");
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
}

#[test]
fn fifo_writes_to_a_gone_reader_are_broken_pipe_not_a_signal() {
    let _one = DISPOSITION.lock().unwrap_or_else(|e| e.into_inner());
    default_sigpipe();
    for mode in [Mode::Bytes, Mode::Messages] {
        let (server, mut client) = fifo_pair(mode);
        drop(server);
        let err = (0..64)
            .find_map(|_| client.write(&[7u8; 4096]).err())
            .expect("writes to a gone reader kept succeeding");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{mode}: {err}");
    }

    // A one-way Sender whose Receiver is gone.
    let name = PipeName::new(&unique_name("sigpipe-oneway")).unwrap();
    let inbox = Receiver::bind(&name).unwrap();
    let mut sender = Sender::open(&name).unwrap();
    drop(inbox);
    let err = sender.write(b"anyone?").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
}
