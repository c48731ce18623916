//! One-way throughput on the 65535-byte path, pipekit against the standard library's
//! `UnixStream` underneath it, same run.
//!
//! The reader runs in a second process (this bench binary re-executed with
//! `PIPEKIT_BENCH_READER` set), so both sides are real processes. Unix only for now.
#![cfg_attr(not(unix), allow(unused_imports, dead_code))]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CHUNK: usize = 65535;
const ROLE: &str = "PIPEKIT_BENCH_READER";

#[cfg(unix)]
fn reader_process(kind: &str, name: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, format!("{kind}:{name}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    child
}

/// The reader side: binds, says it is ready, drains every connection until EOF.
#[cfg(unix)]
fn run_reader(spec: &str) {
    let (kind, name) = spec.split_once(':').unwrap();
    if kind == "std" {
        let path = pipekit::os::unix::socket_path(name).unwrap();
        pipekit::os::unix::ensure_private_dir(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drain(listener.incoming());
    } else {
        let listener = pipekit::Listener::bind(name).unwrap();
        drain(listener.incoming());
    }
}

/// Says the reader is ready, then reads every connection to its end, one after the other.
#[cfg(unix)]
fn drain<S: Read>(connections: impl Iterator<Item = std::io::Result<S>>) {
    std::io::stdout().write_all(b"r").unwrap();
    std::io::stdout().flush().unwrap();
    let mut buf = vec![0u8; CHUNK];
    for conn in connections {
        let mut conn = conn.unwrap();
        while conn.read(&mut buf).unwrap() > 0 {}
    }
}

#[cfg(unix)]
fn throughput(c: &mut Criterion) {
    if let Ok(spec) = std::env::var(ROLE) {
        run_reader(&spec);
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("throughput_65535");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.measurement_time(Duration::from_secs(3));
    let chunk = vec![0x5Au8; CHUNK];
    for kind in ["pipekit", "std"] {
        let name = format!("bench-{kind}-{}", std::process::id());
        let mut reader = reader_process(kind, &name);
        group.bench_function(BenchmarkId::new("uds_bytes", kind), |b| {
            if kind == "std" {
                let path = pipekit::os::unix::socket_path(name.as_str()).unwrap();
                let mut conn = std::os::unix::net::UnixStream::connect(path).unwrap();
                b.iter(|| conn.write_all(&chunk).unwrap());
            } else {
                let mut conn = pipekit::Stream::connect(name.as_str()).unwrap();
                b.iter(|| conn.write_all(&chunk).unwrap());
            }
        });
        let _ = reader.kill();
        let _ = reader.wait();
        if kind == "std" {
            let path = pipekit::os::unix::socket_path(name.as_str()).unwrap();
            let _ = std::fs::remove_file(path);
        }
    }
    group.finish();
}

#[cfg(not(unix))]
fn throughput(_c: &mut Criterion) {}

criterion_group!(benches, throughput);
criterion_main!(benches);
