//! Connect time across two processes: connect, one byte out, one byte back, on every
//! transport that serves more than one session.

use std::time::Duration;

use criterion::Criterion;
use pipekit_benches::{Connector, Pinning, all};

fn main() {
    pipekit_benches::run_peer_if_requested();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("connect");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for t in all() {
        let connector = match Connector::start(t, Pinning::None) {
            Ok(c) => c,
            Err(reason) => {
                eprintln!("connect/{}: not run: {reason}", t.name());
                continue;
            }
        };
        group.bench_function(t.name(), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| connector.once().expect("connect")).sum())
        });
    }
    group.finish();
    c.final_summary();
}
