//! A harness executable started as a peer ([`PEER_ENV`] set): a *server* listens and serves
//! (sink, echo or connect); with several clients, each *client* connects to the server, waits
//! for the word to start, measures for the given time and prints what it measured.

use std::io::{self, BufRead, Write};
use std::time::Instant;

use crate::cleanup;
use crate::pin::pin_self;
use crate::protocol::{CONNECT_STOP, END, PEER_ENV, Role, Spec, corrupt, pattern};
use crate::transport::Conn;

/// If this process was started as a peer, runs the peer and exits; otherwise returns.
pub fn run_peer_if_requested() {
    let Ok(spec) = std::env::var(PEER_ENV) else {
        return;
    };
    let code = match run_peer(&spec) {
        Ok(()) => 0,
        // The signal handler is removing what this peer made, which cut a call short (a
        // socket call with a timeout is not restarted after a signal: EINTR may come before
        // the handler thread has begun); it exits the process when done.
        Err(e) if cleanup::stopping() || e.kind() == io::ErrorKind::Interrupted => loop {
            std::thread::park();
        },
        Err(e) => {
            eprintln!("benchmark peer ({spec}): {e}");
            1
        }
    };
    cleanup::run_all();
    std::process::exit(code);
}

fn run_peer(spec: &str) -> io::Result<()> {
    cleanup::on_signal_exit()?;
    let spec = Spec::decode(spec).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad peer spec {spec:?}"),
        )
    })?;
    pin_self(spec.cpu)?;
    match spec.role {
        Role::SinkClient | Role::EchoClient => return client(&spec),
        Role::Sink | Role::Echo | Role::Connect => {}
    }
    let mut listener = spec.transport.listen(&spec.addr, spec.size)?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready {}", listener.addr())?;
    out.flush()?;
    drop(out);
    if spec.role == Role::Connect {
        loop {
            let mut conn = listener.accept()?;
            let mut one = [0u8; 1];
            match conn.recv_exact(&mut one).and_then(|()| conn.send(&one)) {
                Ok(()) if one[0] == CONNECT_STOP => return Ok(()),
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e),
            }
        }
    }
    let serve = move |mut conn: Box<dyn Conn>| -> io::Result<()> {
        let mut chunk = vec![0u8; spec.size];
        let result = match spec.role {
            Role::Sink => sink(&mut *conn, &mut chunk),
            _ => echo(&mut *conn, &mut chunk),
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
            _ => Ok(()),
        }
    };
    if spec.conns <= 1 {
        return serve(listener.accept()?);
    }
    std::thread::scope(|scope| {
        let mut served = Vec::new();
        for _ in 0..spec.conns {
            let conn = listener.accept()?;
            served.push(scope.spawn(move || serve(conn)));
        }
        served.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")))
        })
    })
}

fn sink(conn: &mut dyn Conn, chunk: &mut [u8]) -> io::Result<()> {
    let expected = pattern(chunk.len());
    loop {
        let mut count = [0u8; 8];
        conn.recv_exact(&mut count)?;
        let count = u64::from_be_bytes(count);
        if count == END {
            return Ok(());
        }
        let mut total = 0u64;
        for _ in 0..count {
            if !conn.recv_check(chunk, &expected)? {
                return Err(corrupt("a chunk"));
            }
            total += chunk.len() as u64;
        }
        let cpu = crate::cpu::process_time().as_nanos() as u64;
        let mut answer = [0u8; 16];
        answer[..8].copy_from_slice(&total.to_be_bytes());
        answer[8..].copy_from_slice(&cpu.to_be_bytes());
        conn.send(&answer)?;
    }
}

fn echo(conn: &mut dyn Conn, chunk: &mut [u8]) -> io::Result<()> {
    let expected = pattern(chunk.len());
    loop {
        conn.recv_exact(chunk)?;
        if *chunk != *expected {
            return Err(corrupt("a chunk"));
        }
        conn.send(chunk)?;
    }
}

/// One of several clients: connect, calibrate, say `ready`, wait for `go` on stdin, measure
/// for the duration, print the result, end the session.
fn client(spec: &Spec) -> io::Result<()> {
    let mut session = crate::measure::Session::connect(spec.transport, &spec.addr, spec.size)?;
    let mut out = io::stdout().lock();
    let mut go = String::new();
    match spec.role {
        Role::SinkClient => {
            let (count, _) = session.calibrate(spec.duration)?;
            writeln!(out, "ready")?;
            out.flush()?;
            io::stdin().lock().read_line(&mut go)?;
            // Another client's warm-up may have run since: the server's CPU counts from the
            // first batch after the start.
            let warm = session.batch(1)?;
            let start = Instant::now();
            let own = crate::cpu::process_time();
            let (mut bytes, mut server_cpu) = (0u64, warm.peer_cpu);
            while start.elapsed() < spec.duration {
                let batch = session.batch(count)?;
                bytes += batch.bytes;
                server_cpu = batch.peer_cpu;
            }
            let peer_cpu = server_cpu.saturating_sub(warm.peer_cpu);
            let elapsed = start.elapsed();
            let own = crate::cpu::process_time().saturating_sub(own);
            writeln!(
                out,
                "done {bytes} {} {} {}",
                elapsed.as_nanos(),
                own.as_nanos(),
                peer_cpu.as_nanos()
            )?;
        }
        _ => {
            writeln!(out, "ready")?;
            out.flush()?;
            io::stdin().lock().read_line(&mut go)?;
            let samples = crate::measure::round_trips(&mut session, spec.duration, spec.rate)?;
            write!(out, "done")?;
            for v in samples.iter_recorded() {
                write!(out, " {}:{}", v.value_iterated_to(), v.count_at_value())?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    drop(out);
    session.end()
}
