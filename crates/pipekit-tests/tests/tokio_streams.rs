//! `pipekit::tokio` on every OS (Windows named pipes, Unix sockets), on a current-thread
//! runtime: byte mode with many clients in this process and in others; message mode with 1000
//! connections from 10 processes, message sizes across mio's 4 KiB buffer up to 1 MiB, a
//! message over the maximum discarded, a send right before the drop delivered, two tasks
//! waiting in one accept, and the core message suite on Tokio message streams.

mod common;

use std::io;
use std::process::{Command, Stdio};
use std::sync::Arc;

use pipekit::MessageTooLarge;
use pipekit::tokio::{Listener, Stream};
use pipekit::{ConnectOptions, ListenerOptions, Mode};
use pipekit_tests::{check_client_processes, client_processes, pattern, spawn, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn tokio_echoes_bytes_for_many_clients_on_one_thread() {
    let name = unique_name("tokio");
    runtime().block_on(async {
        let listener = Arc::new(Listener::bind(name.as_str()).unwrap());
        let clients = 50usize;
        let server = {
            let listener = Arc::clone(&listener);
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..clients {
                    let mut conn = listener.accept().await?;
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        let mut total = 0;
                        loop {
                            let n = conn.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, io::Error>(total);
                            }
                            conn.write_all(&buf[..n]).await?;
                            total += n;
                        }
                    }));
                }
                let mut total = 0;
                for task in tasks {
                    total += task.await.unwrap()?;
                }
                Ok::<_, io::Error>(total)
            })
        };
        let mut talkers = Vec::new();
        for c in 0..clients {
            let name = name.clone();
            talkers.push(tokio::spawn(async move {
                let mut conn = Stream::connect(name.as_str()).await?;
                let data = pattern(10_000 + c * 97, c as u8);
                conn.write_all(&data).await?;
                let mut back = vec![0u8; data.len()];
                conn.read_exact(&mut back).await?;
                assert!(back == data, "client {c}: bytes came back changed");
                Ok::<_, io::Error>(data.len())
            }));
        }
        let mut sent = 0;
        for talker in talkers {
            sent += talker.await.unwrap().unwrap();
        }
        assert_eq!(server.await.unwrap().unwrap(), sent);
    });
}

#[test]
fn tokio_serves_clients_in_other_processes() {
    let name = unique_name("tokio-proc");
    runtime().block_on(async {
        let listener = Listener::bind(name.as_str()).unwrap();
        let children: Vec<_> = (0..5)
            .map(|i| {
                spawn(
                    Command::new(PEER)
                        .args(["bytes-client", &name, &format!("hello from process {i}")])
                        .stdout(Stdio::piped()),
                )
                .unwrap()
            })
            .collect();
        for _ in 0..5 {
            let mut conn = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        let outputs = tokio::task::spawn_blocking(move || {
            children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for (i, out) in outputs.iter().enumerate() {
            assert!(out.status.success());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("hello from process {i}\n")
            );
        }
    });
}

#[test]
fn tokio_serves_1000_message_connections_on_one_thread() {
    let name = unique_name("tokio-1000");
    runtime().block_on(async {
        let listener =
            Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))
                .unwrap();
        let children = client_processes(PEER, &name, 10, 100, 10);
        let total = common::echo_connections(&listener, 1000).await;
        assert_eq!(total, 1000 * 10);
        tokio::task::spawn_blocking(move || check_client_processes(children, 100))
            .await
            .unwrap();
    });
}

#[test]
fn tokio_message_sizes_boundaries_and_end() {
    runtime().block_on(async {
        let name = unique_name("tokio-msg");
        let listener =
            Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))
                .unwrap();
        let mut options = ConnectOptions::new();
        options.mode(Mode::Messages);
        let (accepted, client) = tokio::join!(
            listener.accept(),
            Stream::connect_with(name.as_str(), &options)
        );
        let (mut server, mut client) = (accepted.unwrap(), client.unwrap());
        assert_eq!(server.mode(), Mode::Messages);

        // A client that has sent nothing: recv waits.
        let mut small = [0u8; 100];
        tokio::select! {
            biased;
            r = server.recv(&mut small) => panic!("recv returned {r:?} with nothing sent"),
            () = std::future::ready(()) => {}
        }

        // Sizes around mio's 4 KiB read buffer and the 65535 path stay whole, in order.
        // (Sent while the other end reads: a message longer than the pipe's buffer is only
        // written as it is read.)
        let sizes = [1usize, 4095, 4096, 4097, 65535, 65536, 1 << 20];
        let sending = async {
            for (i, &size) in sizes.iter().enumerate() {
                client.send(&pattern(size, i as u8)).await.unwrap();
            }
            client.send(b"").await.unwrap();
        };
        // Too large for the buffer: its size is reported and it stays readable.
        let mut whole = Vec::new();
        let receiving = async {
            for (i, &size) in sizes.iter().enumerate() {
                if size > small.len() {
                    let err = server.recv(&mut small).await.unwrap_err();
                    assert_eq!(MessageTooLarge::from_io(&err).unwrap().size, size);
                }
                assert_eq!(server.recv_to_vec(&mut whole).await.unwrap(), Some(size));
                assert!(
                    whole == pattern(size, i as u8),
                    "message {i} changed: {:?}",
                    &whole[..whole.len().min(16)]
                );
            }
        };
        tokio::join!(sending, receiving);
        assert_eq!(
            server.recv(&mut small).await.unwrap(),
            Some(0),
            "empty message"
        );

        // Over the maximum: refused before sending; from a peer with a higher limit,
        // discarded on receipt (InvalidData naming the size), and the next message arrives.
        let err = client.send(&vec![0u8; (1 << 20) + 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let mut big = ConnectOptions::new();
        big.mode(Mode::Messages).max_message_size(4 << 20);
        let (accepted, other) =
            tokio::join!(listener.accept(), Stream::connect_with(name.as_str(), &big));
        let (mut strict, mut other) = (accepted.unwrap(), other.unwrap());
        let (sent, received) = tokio::join!(
            async {
                other.send(&vec![7u8; (1 << 20) + 5]).await?;
                other.send(b"after").await
            },
            strict.recv_to_vec(&mut whole)
        );
        sent.unwrap();
        let err = received.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("1048581"), "{err}");
        assert_eq!(strict.recv_to_vec(&mut whole).await.unwrap(), Some(5));
        assert_eq!(whole, b"after");

        // A send right before the drop still arrives; then the end.
        server.send(b"last words").await.unwrap();
        drop(server);
        assert_eq!(client.recv_to_vec(&mut whole).await.unwrap(), Some(10));
        assert_eq!(whole, b"last words");
        assert_eq!(client.recv(&mut small).await.unwrap(), None);
        assert_eq!(
            client.recv(&mut small).await.unwrap(),
            None,
            "the end stays"
        );
        let err = client.send(b"anyone?").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    });
}

#[test]
fn every_task_waiting_in_accept_is_woken() {
    let name = unique_name("tokio-accepts");
    runtime().block_on(async {
        let listener = Arc::new(
            Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))
                .unwrap(),
        );
        let accepts: Vec<_> = (0..2)
            .map(|_| {
                let listener = Arc::clone(&listener);
                tokio::spawn(async move { listener.accept().await.map(|_| ()) })
            })
            .collect();
        // On a current-thread runtime both tasks run (and wait in accept) before this one
        // goes on.
        tokio::task::yield_now().await;
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(
                Stream::connect_with(name.as_str(), ConnectOptions::new().mode(Mode::Messages))
                    .await
                    .unwrap(),
            );
        }
        for accept in accepts {
            tokio::time::timeout(std::time::Duration::from_secs(20), accept)
                .await
                .expect("a task waiting in accept was never woken")
                .unwrap()
                .unwrap();
        }
    });
}

/// A Tokio message stream driven by its own runtime, so the core suite can check it.
struct OnRuntime {
    rt: Arc<tokio::runtime::Runtime>,
    stream: Stream,
    read_timeout: std::sync::Mutex<Option<std::time::Duration>>,
    write_timeout: std::sync::Mutex<Option<std::time::Duration>>,
}

impl OnRuntime {
    fn run_on<T>(
        rt: &tokio::runtime::Runtime,
        timeout: Option<std::time::Duration>,
        task: impl std::future::Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        rt.block_on(async {
            match timeout {
                None => task.await,
                Some(t) => tokio::time::timeout(t, task)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?,
            }
        })
    }
}

impl pipekit_core::Connection for OnRuntime {
    fn mode(&self) -> Mode {
        self.stream.mode()
    }

    fn peer_credentials(&self) -> io::Result<pipekit::PeerCredentials> {
        self.stream.peer_credentials()
    }

    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        *self.read_timeout.lock().unwrap() = timeout;
        Ok(())
    }

    fn set_write_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        *self.write_timeout.lock().unwrap() = timeout;
        Ok(())
    }
}

impl pipekit_core::MessagePipe for OnRuntime {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let timeout = *self.write_timeout.lock().unwrap();
        let (rt, stream) = (Arc::clone(&self.rt), &mut self.stream);
        OnRuntime::run_on(&rt, timeout, stream.send(msg))
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let timeout = *self.read_timeout.lock().unwrap();
        let (rt, stream) = (Arc::clone(&self.rt), &mut self.stream);
        OnRuntime::run_on(&rt, timeout, stream.recv(buf))
    }

    fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let timeout = *self.read_timeout.lock().unwrap();
        let (rt, stream) = (Arc::clone(&self.rt), &mut self.stream);
        OnRuntime::run_on(&rt, timeout, stream.recv_to_vec(buf))
    }

    fn max_message_size(&self) -> usize {
        ConnectOptions::new().max_message_size
    }
}

#[test]
fn the_core_message_suite_holds_for_tokio_message_streams() {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    pipekit_core::testing::messages_suite(|| {
        let name = unique_name("tokio-suite");
        let options = ConnectOptions::new().mode(Mode::Messages).clone();
        let (server, client) = rt.block_on(async {
            let listener =
                Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))?;
            let client = Stream::connect_with(name.as_str(), &options).await?;
            let server = listener.accept().await?;
            Ok::<_, io::Error>((server, client))
        })?;
        let wrap = |stream| OnRuntime {
            rt: Arc::clone(&rt),
            stream,
            read_timeout: std::sync::Mutex::new(None),
            write_timeout: std::sync::Mutex::new(None),
        };
        Ok((wrap(server), wrap(client)))
    });
}

/// The pieces of one direction of a Tokio duplex exchange: writes `pieces` pieces of
/// `DUPLEX_PIECE` bytes seeded with `seed` (one message each in message mode).
async fn write_pieces(tx: &mut pipekit::tokio::WriteHalf<'_>, seed: u8, pieces: usize) {
    for i in 0..pieces {
        let piece = pattern(pipekit_tests::DUPLEX_PIECE, seed.wrapping_add(i as u8));
        match tx.mode() {
            Mode::Messages => tx.send(&piece).await.unwrap(),
            _ => tx.write_all(&piece).await.unwrap(),
        }
    }
}

/// Reads and checks `pieces` pieces seeded with `seed`.
async fn read_pieces(rx: &mut pipekit::tokio::ReadHalf<'_>, seed: u8, pieces: usize) {
    let mut back = vec![0u8; pipekit_tests::DUPLEX_PIECE];
    for i in 0..pieces {
        match rx.mode() {
            Mode::Messages => {
                let n = rx.recv(&mut back).await.unwrap();
                assert_eq!(n, Some(back.len()), "message {i}");
            }
            _ => {
                rx.read_exact(&mut back).await.unwrap();
            }
        }
        assert!(
            back == pattern(back.len(), seed.wrapping_add(i as u8)),
            "piece {i} differs"
        );
    }
}

/// Both ends write 6 MiB and read 6 MiB at once, in byte and message mode (and on Unix over
/// FIFOs too): this process through the halves of `split` (one task, `join!`) and of
/// `into_split` (two tasks), the peer process through `&Stream` from two threads.
#[test]
fn tokio_halves_write_and_read_6_mib_at_once() {
    let pieces = (6 << 20) / pipekit_tests::DUPLEX_PIECE;
    let fifos: &[bool] = if cfg!(unix) { &[false, true] } else { &[false] };
    for (&fifo, mode) in fifos
        .iter()
        .flat_map(|f| [(f, Mode::Bytes), (f, Mode::Messages)])
    {
        for owned in [false, true] {
            let name = unique_name("tokio-duplex");
            runtime().block_on(async {
                let listener = Listener::from_blocking(bind(&name, mode, fifo)).unwrap();
                let child = spawn(
                    Command::new(PEER)
                        .args(["duplex", &name, &mode.to_string()])
                        .args([&pieces.to_string(), "shared"])
                        .stdout(Stdio::piped()),
                )
                .unwrap();
                let mut conn = listener.accept().await.unwrap();
                if owned {
                    let (mut rx, mut tx) = conn.into_split();
                    let writing =
                        tokio::spawn(async move { write_pieces(&mut tx, 2, pieces).await });
                    read_pieces(&mut rx, 1, pieces).await;
                    writing.await.unwrap();
                } else {
                    let (mut rx, mut tx) = conn.split();
                    tokio::join!(
                        write_pieces(&mut tx, 2, pieces),
                        read_pieces(&mut rx, 1, pieces)
                    );
                }
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{mode}, owned {owned}: the peer failed"
                );
                assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
            });
        }
    }
}

/// A blocking listener for `name` in `mode`, over FIFOs if `fifo` (Unix).
fn bind(name: &str, mode: Mode, fifo: bool) -> pipekit::Listener {
    let mut options = ListenerOptions::new();
    options.mode(mode);
    #[cfg(unix)]
    if fifo {
        use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
        let mut unix = UnixOptions::new();
        unix.transport(Transport::Fifo);
        return pipekit::Listener::bind_unix(name, &options, &unix).unwrap();
    }
    assert!(!fifo, "FIFOs are a Unix transport");
    pipekit::Listener::bind_with(name, &options).unwrap()
}
