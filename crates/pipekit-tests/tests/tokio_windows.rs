//! Tokio on Windows named pipes (byte mode): many concurrent clients from another process
//! and from this one, on a current-thread runtime; message mode is refused clearly.
#![cfg(windows)]

use std::io;
use std::process::{Command, Stdio};

use pipekit::tokio::{Listener, Stream};
use pipekit::{ConnectOptions, ListenerOptions, Mode};
use pipekit_tests::{pattern, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEER: &str = env!("CARGO_BIN_EXE_pipekit-peer");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

#[test]
fn tokio_echoes_bytes_for_many_clients_on_one_thread() {
    let name = unique_name("tokio-win");
    runtime().block_on(async {
        let listener = Listener::bind(name.as_str()).unwrap();
        let clients = 50usize;
        let server = {
            let listener = listener.clone();
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
    let name = unique_name("tokio-win-proc");
    runtime().block_on(async {
        let listener = Listener::bind(name.as_str()).unwrap();
        let children: Vec<_> = (0..5)
            .map(|i| {
                Command::new(PEER)
                    .args(["bytes-client", &name, &format!("hello from process {i}")])
                    .stdout(Stdio::piped())
                    .spawn()
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
fn async_message_mode_is_refused_clearly() {
    runtime().block_on(async {
        let name = unique_name("tokio-win-msg");
        let err = Listener::bind_with(name.as_str(), ListenerOptions::new().mode(Mode::Messages))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
        let err = Stream::connect_with(name.as_str(), ConnectOptions::new().mode(Mode::Messages))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
    });
}
