//! With `SIGPIPE` at its default action (which kills the process), writing to a FIFO whose
//! reader is gone must still come back as `BrokenPipe`. Rust programs ignore `SIGPIPE`, so
//! this test binary puts the default action back first; it runs in its own process.
#![cfg(unix)]

use std::io::{self, Write};
use std::thread;

use nix::sys::signal::{SigHandler, Signal, signal};
use pipekit::os::unix::fifo::{Receiver, Sender};
use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, PipeName, Stream};
use pipekit_tests::unique_name;

fn default_sigpipe() {
    // SAFETY: installs the default action for SIGPIPE; no handler code runs in this process.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.expect("resetting SIGPIPE");
}

#[test]
fn fifo_writes_to_a_gone_reader_are_broken_pipe_not_a_signal() {
    default_sigpipe();
    for mode in [Mode::Bytes, Mode::Messages] {
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
        let mut client = client.join().unwrap().unwrap();
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
