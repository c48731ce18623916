//! Ping-pong latency across two processes: one chunk out, the same size back, for 1 B, 64 B,
//! 4 KiB and 65535 B, on every transport.

use std::time::Duration;

use criterion::Criterion;
use pipekit_benches::{Pinning, Session, all};

fn main() {
    pipekit_benches::run_peer_if_requested();
    let mut c = Criterion::default().configure_from_args();
    for size in [1usize, 64, 4096, 65535] {
        let mut group = c.benchmark_group(format!("latency_{size}"));
        group
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for t in all() {
            let session = t
                .check(size)
                .and_then(|()| Session::echo(t, size, Pinning::None).map_err(|e| e.to_string()));
            let mut session = match session {
                Ok(s) => s,
                Err(reason) => {
                    eprintln!("latency/{}/{size}: not run: {reason}", t.name());
                    continue;
                }
            };
            group.bench_function(t.name(), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| session.round_trip().expect("round trip"))
                        .sum()
                })
            });
            let _ = session.finish();
        }
        group.finish();
    }
    c.final_summary();
}
