//! One-way throughput across two processes: 65535-byte chunks for every transport (the
//! headline), then a size sweep from 64 B to 1 MiB. The reader confirms the total of every
//! batch, so a fast writer cannot outrun it unmeasured.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use pipekit_benches::{Pinning, Session, Transport, all};

fn main() {
    pipekit_benches::run_peer_if_requested();
    let mut c = Criterion::default().configure_from_args();
    group(&mut c, "throughput_65535", &[65535], Duration::from_secs(3));
    group(
        &mut c,
        "throughput_sweep",
        &[64, 1024, 16384, 65535, 262_144, 1 << 20],
        Duration::from_secs(1),
    );
    c.final_summary();
}

/// A ready session, or why the transport cannot run at this size here.
fn session(t: &'static dyn Transport, size: usize) -> Result<Session, String> {
    t.check(size)?;
    let mut session = Session::sink(t, size, Pinning::None).map_err(|e| e.to_string())?;
    session.batch(4).map_err(|e| e.to_string())?;
    Ok(session)
}

fn group(c: &mut Criterion, name: &str, sizes: &[usize], time: Duration) {
    let mut group = c.benchmark_group(name);
    group.measurement_time(time).warm_up_time(time / 3);
    for &size in sizes {
        group.throughput(Throughput::Bytes(size as u64));
        for t in all() {
            let mut session = match session(t, size) {
                Ok(s) => s,
                Err(reason) => {
                    eprintln!("{name}/{}/{size}: not run: {reason}", t.name());
                    continue;
                }
            };
            group.bench_function(format!("{}/{size}", t.name()), |b| {
                b.iter_custom(|iters| session.batch(iters).expect("batch").elapsed)
            });
            session.finish().expect("the reader confirmed every batch");
        }
        group.bench_function(format!("memcpy/{size}"), |b| {
            let src = vec![0x5Au8; size];
            let mut dst = vec![0u8; size];
            b.iter(|| {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            })
        });
    }
    group.finish();
}
