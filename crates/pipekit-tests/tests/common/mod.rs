//! Test code shared by the Tokio tests of both OSes.

use std::io;

/// Accepts `conns` message-mode connections on `listener`, each echoed by a task of its own
/// until the peer closes; returns how many messages were echoed in all.
pub async fn echo_connections(listener: &pipekit::tokio::Listener, conns: usize) -> usize {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut conn = listener.accept().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut echoed = 0;
            while let Some(n) = conn.recv(&mut buf).await? {
                conn.send(&buf[..n]).await?;
                echoed += 1;
            }
            Ok::<_, io::Error>(echoed)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap().unwrap();
    }
    total
}
