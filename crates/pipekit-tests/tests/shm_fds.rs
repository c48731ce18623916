//! Many shared-memory connections from several processes, and the descriptors they leave: a
//! test binary of its own, so that no other test opens descriptors while this one counts.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::thread;

use pipekit::{Listener, ListenerOptions, Mode};
use pipekit_tests::unique_name;

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// 4 client processes × 5 connections × 50 echoed messages, each connection offered rings of
/// 16 KiB: too small for the clients' largest message (1 MiB, the default), so they keep
/// writing on the socket while they read from the ring, and the server reads the socket for
/// good. Afterwards this process holds exactly the descriptors it held before: segments,
/// wake-up pairs and every copy a peek installed are closed.
#[test]
fn many_client_processes_and_no_descriptor_left_behind() {
    let name = unique_name("shm-fds");
    let mut options = ListenerOptions::new();
    options
        .mode(Mode::Messages)
        .max_message_size(4096)
        .shared_memory(Some(16 << 10));
    let listener = Listener::bind_with(&name, &options).unwrap();
    let before = open_descriptors();
    let (processes, conns, msgs) = (4, 5, 50);
    let children: Vec<_> = (0..processes)
        .map(|_| {
            pipekit_tests::spawn(
                Command::new(PEER)
                    .args(["clients", &name, &conns.to_string(), &msgs.to_string()])
                    .env("PEER_SHM", "1")
                    .stdout(Stdio::piped()),
            )
            .unwrap()
        })
        .collect();
    let served: Vec<_> = (0..processes * conns)
        .map(|_| {
            let conn = listener.accept().unwrap();
            assert!(conn.is_shared_memory(), "every client asked");
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut echoed = 0;
                while conn.recv_to_vec(&mut buf).unwrap().is_some() {
                    conn.send(&buf).unwrap();
                    echoed += 1;
                }
                echoed
            })
        })
        .collect();
    let echoed: usize = served.into_iter().map(|t| t.join().unwrap()).sum();
    pipekit_tests::check_client_processes(children, conns);
    assert_eq!(echoed, processes * conns * msgs);
    assert_eq!(open_descriptors(), before, "descriptors left behind");
}
