//! `pipekit bench`: the benchmark matrix, as a table, JSON, CSV, an SVG chart and an HTML
//! report.

mod report;
mod run;

use run::{Lat, Row, Run, Spread, Thr, fmt, ratio, si};

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pipekit_benches::{Load, Pinning, Transport, all};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Transports to run, comma-separated (default: all; see --list).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    transports: Vec<String>,
    /// Chunk sizes in bytes, comma-separated (default: 65535).
    #[arg(long, value_delimiter = ',', value_name = "BYTES")]
    sizes: Vec<usize>,
    /// Seconds per throughput and per latency measurement.
    #[arg(long, default_value_t = 0.4, value_name = "SECS")]
    duration: f64,
    /// Rounds over the whole matrix. Each figure is the median of its rounds, with their
    /// minimum and maximum as its spread. Rounds interleave transports, so a transport and
    /// its baseline see the same conditions.
    #[arg(long, default_value_t = 3, value_name = "N")]
    rounds: usize,
    /// A run of a few seconds with short measurements, to check the harness works.
    #[arg(long)]
    quick: bool,
    /// Where the processes run: none, same (all on CPU 0), split (the writer or client on
    /// CPU 0, the server on CPU 1).
    #[arg(long, default_value = "split", value_name = "HOW")]
    pin: String,
    /// Client processes loading one server at once (aggregate throughput, merged latency).
    #[arg(long, default_value_t = 1, value_name = "N")]
    clients: usize,
    /// Open-loop latency: round trips due at R per second in total, each timed from when it
    /// was due (default: closed loop).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw throughput against chunk size (log axes, every transport, the rounds' spread,
    /// memcpy for reference) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write a report to DIR: index.html (the table and every chart, self-contained) and the
    /// charts as SVG files.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// List the transports and exit.
    #[arg(long)]
    list: bool,
}

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let transports: Vec<&'static dyn Transport> = all();
    if args.list {
        for t in &transports {
            match t.baseline() {
                Some(b) => println!("{} — {} (baseline {b})", t.name(), t.about()),
                None => println!("{} — {}", t.name(), t.about()),
            }
        }
        return Ok(());
    }
    let Some(pinning) = Pinning::parse(&args.pin) else {
        return Err(crate::exit::usage(format!(
            "--pin must be none, same or split, not {:?}",
            args.pin
        )));
    };
    for name in &args.transports {
        if !transports.iter().any(|t| t.name() == name) {
            return Err(crate::exit::usage(format!(
                "unknown transport {name:?} (see pipekit bench --list)"
            )));
        }
    }
    let chosen: Vec<_> = transports
        .into_iter()
        .filter(|t| args.transports.is_empty() || args.transports.iter().any(|n| n == t.name()))
        .collect();
    let sizes = if args.sizes.is_empty() {
        vec![65535]
    } else {
        args.sizes.clone()
    };
    if sizes.contains(&0) {
        return Err(crate::exit::usage(
            "--sizes: a chunk must be at least 1 byte",
        ));
    }
    if args.clients == 0 {
        return Err(crate::exit::usage("--clients must be at least 1"));
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err(crate::exit::usage(
            "--rate must be a positive number of round trips per second",
        ));
    }
    let (duration, connects) = if args.quick {
        (Duration::from_millis(50), 20)
    } else {
        if !(args.duration > 0.0 && args.duration.is_finite()) {
            return Err(crate::exit::usage(
                "--duration must be a positive number of seconds",
            ));
        }
        (Duration::from_secs_f64(args.duration), 200)
    };
    let load = Load {
        clients: args.clients,
        rate: args.rate,
    };
    // A stopped run removes what its transports made and stops its peers.
    crate::exit::on_stop(pipekit_benches::cleanup::run_all)?;

    let rounds = if args.quick { 1 } else { args.rounds.max(1) };
    if args.quick {
        eprintln!(
            "pipekit bench: --quick measures each transport once for 50 ms: it checks that the \
             harness runs; its figures and ratios are not measurements"
        );
    }
    // On a terminal one line is rewritten; elsewhere (CI, a pipe) a line per step.
    let terminal = std::io::stderr().is_terminal();
    let total = chosen.len() * sizes.len() * rounds;
    let mut rows: Vec<Row> = Vec::new();
    let mut memcpy: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut step = 0;
    for &size in &sizes {
        for _ in 0..rounds {
            let copy = pipekit_benches::memcpy(size, duration).gb_per_s();
            memcpy.entry(size).or_default().push(copy);
            for &t in &chosen {
                step += 1;
                if terminal {
                    eprint!("\r[{step}/{total}] {} {size} B            ", t.name());
                } else {
                    eprintln!("pipekit bench: [{step}/{total}] {} {size} B", t.name());
                }
                let i = match rows
                    .iter()
                    .position(|r| r.transport == t.name() && r.size == size)
                {
                    Some(i) => i,
                    None => {
                        rows.push(Row {
                            transport: t.name(),
                            about: t.about(),
                            baseline: t.baseline(),
                            size,
                            label: t.label(size),
                            thr: Vec::new(),
                            lat: Vec::new(),
                            connect_us: Vec::new(),
                            settings: String::new(),
                            notes: Vec::new(),
                        });
                        rows.len() - 1
                    }
                };
                measure(&mut rows[i], t, (duration, connects), pinning, load);
            }
        }
    }
    if terminal {
        eprintln!("\r{:60}", "");
    }

    let run = Run {
        rows,
        memcpy,
        machine: machine(),
        pinning: pinning_label(pinning),
        duration,
        rounds,
        load,
        quick: args.quick,
        timestamp: timestamp(),
    };
    print_table(&run);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&to_json(&run))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &run)?;
    }
    if let Some(path) = &args.svg {
        let svg = report::throughput_chart(&run)?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(dir) = &args.report {
        report::write(dir, &run, &to_json(&run))
            .with_context(|| format!("cannot write the report in {}", dir.display()))?;
        eprintln!(
            "pipekit bench: report in {}",
            dir.join("index.html").display()
        );
    }
    Ok(())
}

/// One round of `t` at `row.size`: throughput, latency and (where it means something)
/// connect time, added to `row`.
fn measure(
    row: &mut Row,
    t: &'static dyn Transport,
    (duration, connects): (Duration, usize),
    pinning: Pinning,
    load: Load,
) {
    let note = |row: &mut Row, note: String| {
        if !row.notes.contains(&note) {
            row.notes.push(note);
        }
    };
    let size = row.size;
    if let Err(reason) = t.check(size) {
        note(row, format!("not run: {reason}"));
        return;
    }
    if load.clients > 1 && !t.reconnects() {
        note(
            row,
            format!(
                "not run: {} serves a single session, --clients needs a listener that serves \
                 several",
                t.name()
            ),
        );
        return;
    }
    match pipekit_benches::throughput(t, size, duration, pinning, load) {
        Ok(r) => {
            row.thr.push(Some(Thr {
                gb_per_s: r.gb_per_s(),
                msgs_per_s: r.msgs_per_s(),
                cpu_s_per_gb: r.cpu_s_per_gb(),
                cpu_s_per_msg: r.cpu_s_per_msg(),
            }));
            if row.settings.is_empty() {
                row.settings = r.settings;
            }
        }
        Err(e) => {
            row.thr.push(None);
            note(row, format!("throughput: {}", pipekit::error::Chain(&e)));
        }
    }
    match pipekit_benches::latency(t, size, duration, pinning, load) {
        Ok(l) => row.lat.push(Some(Lat {
            p50: l.quantile_us(0.5),
            p99: l.quantile_us(0.99),
            p999: l.quantile_us(0.999),
            max: l.max_us(),
        })),
        Err(e) => {
            row.lat.push(None);
            note(row, format!("latency: {}", pipekit::error::Chain(&e)));
        }
    }
    if t.reconnects() {
        match pipekit_benches::connect_time(t, connects, pinning) {
            Ok(c) => row
                .connect_us
                .push(c.histogram.value_at_quantile(0.5) as f64 / 1e3),
            Err(e) => note(row, format!("connect: {}", pipekit::error::Chain(&e))),
        }
    }
}

fn print_table(run: &Run) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} — pinning: {}", run.title(), run.pinning);
    if run.load.clients > 1 || run.load.rate.is_some() {
        let _ = writeln!(
            out,
            "load: {} client(s), {}",
            run.load.clients,
            run.load.rate.map_or_else(
                || String::from("closed loop"),
                |r| format!("{r} round trips/s")
            )
        );
    }
    let _ = writeln!(
        out,
        "{:<27} {:>7} {:>6} {:>13} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "transport",
        "size",
        "GB/s",
        "(min–max)",
        "msgs/s",
        "CPU s/GB",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "connect",
        "thr/base",
        "/memcpy"
    );
    for row in &run.rows {
        let gb = row.thr_spread(|t| t.gb_per_s);
        let (vs_base, _) = run.thr_vs_baseline(row);
        let overlap = if run.overlaps_baseline(row) == Some(true) {
            "~"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<27} {:>7} {:>6} {:>13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            row.transport,
            row.size,
            fmt(gb.map(|s| s.median), 2),
            gb.map_or_else(String::new, |s| format!("{:.2}–{:.2}", s.min, s.max)),
            si(row.thr_spread(|t| t.msgs_per_s).map(|s| s.median)),
            fmt(row.thr_spread(|t| t.cpu_s_per_gb).map(|s| s.median), 3),
            fmt(row.p50(), 1),
            fmt(row.lat_spread(|l| l.p99).map(|s| s.median), 1),
            fmt(row.lat_spread(|l| l.p999).map(|s| s.median), 1),
            fmt(
                Spread::of(row.connect_us.iter().copied()).map(|s| s.median),
                1
            ),
            format!("{overlap}{}", fmt(vs_base, 3)),
            fmt(ratio(row.gb(), run.memcpy(row.size)), 3),
        );
        if let Some(label) = &row.label {
            let _ = writeln!(out, "    {}: {label}", row.transport);
        }
        for note in &row.notes {
            let _ = writeln!(out, "    {}: {note}", row.transport);
        }
    }
    for size in run.memcpy.keys() {
        let _ = writeln!(
            out,
            "{:<27} {:>7} {:>6}",
            "memcpy (one process)",
            size,
            fmt(run.memcpy(*size), 2)
        );
    }
    let _ = writeln!(
        out,
        "Figures are medians of {} round(s); \"~\" marks a ratio whose rounds overlap the \
         baseline's (no measured difference).",
        run.rounds
    );
}

fn to_json(run: &Run) -> Value {
    let results: Vec<Value> = run
        .rows
        .iter()
        .map(|row| {
            let base = run.baseline_of(row);
            let (vs_base, vs_base_rounds) = run.thr_vs_baseline(row);
            let med = |s: Option<Spread>| s.map(|s| s.median);
            json!({
                "transport": row.transport,
                "about": row.about,
                "baseline": row.baseline,
                "size": row.size,
                "carried": row.label,
                "clients": run.load.clients,
                "rate": run.load.rate,
                "gb_per_s": row.gb(),
                "throughput_spread": row.thr_spread(|t| t.gb_per_s).map(Spread::json),
                "msgs_per_s": med(row.thr_spread(|t| t.msgs_per_s)),
                "cpu_s_per_gb": med(row.thr_spread(|t| t.cpu_s_per_gb)),
                "cpu_s_per_msg": med(row.thr_spread(|t| t.cpu_s_per_msg)),
                "latency_us": {
                    "p50": row.p50(),
                    "p99": med(row.lat_spread(|l| l.p99)),
                    "p99_9": med(row.lat_spread(|l| l.p999)),
                    "max": med(row.lat_spread(|l| l.max)),
                },
                "latency_rounds_us": row.lat.iter().map(|l| l.map(|l| json!({
                    "p50": l.p50, "p99": l.p99, "p99_9": l.p999, "max": l.max,
                }))).collect::<Vec<_>>(),
                "connect_p50_us": med(Spread::of(row.connect_us.iter().copied())),
                "throughput_vs_baseline": vs_base,
                "throughput_vs_baseline_rounds": vs_base_rounds.map(Spread::json),
                "spread_overlaps_baseline": run.overlaps_baseline(row),
                "p50_vs_baseline": ratio(row.p50(), base.and_then(Row::p50)),
                "throughput_vs_memcpy": ratio(row.gb(), run.memcpy(row.size)),
                "settings": row.settings,
                "not_run": row.not_run(),
                "notes": row.notes,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("PIPEKIT_COMMIT"),
        "rustc": env!("PIPEKIT_RUSTC"),
        "timestamp": run.timestamp,
        "machine": run.machine,
        "pinning": run.pinning,
        "duration_s": run.duration.as_secs_f64(),
        "rounds": run.rounds,
        "quick": run.quick,
        "clients": run.load.clients,
        "rate": run.load.rate,
        "memcpy_gb_per_s": run.memcpy.keys().map(|s| json!({
            "size": s,
            "gb_per_s": run.memcpy(*s),
            "spread": Spread::of(run.memcpy[s].iter().copied()).map(Spread::json),
        })).collect::<Vec<_>>(),
        "results": results,
    })
}

/// Now, as seconds since the Unix epoch and as RFC 3339 text (UTC).
fn timestamp() -> Value {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({"unix": secs, "utc": humantime::format_rfc3339_seconds(now).to_string()})
}

fn write_csv(path: &Path, run: &Run) -> anyhow::Result<()> {
    let mut text = String::from(
        "transport,size,gb_per_s,gb_per_s_min,gb_per_s_max,msgs_per_s,cpu_s_per_gb,\
         cpu_s_per_msg,p50_us,p99_us,p99_9_us,max_us,connect_p50_us,throughput_vs_baseline,\
         p50_vs_baseline,throughput_vs_memcpy,clients,rate,carried,settings,notes\n",
    );
    let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    let quoted = |s: &str| format!("\"{}\"", s.replace('"', "'"));
    for row in &run.rows {
        let base = run.baseline_of(row);
        let gb = row.thr_spread(|t| t.gb_per_s);
        let med = |s: Option<Spread>| s.map(|s| s.median);
        let fields = [
            row.transport.to_string(),
            row.size.to_string(),
            cell(row.gb()),
            cell(gb.map(|s| s.min)),
            cell(gb.map(|s| s.max)),
            cell(med(row.thr_spread(|t| t.msgs_per_s))),
            cell(med(row.thr_spread(|t| t.cpu_s_per_gb))),
            cell(med(row.thr_spread(|t| t.cpu_s_per_msg))),
            cell(row.p50()),
            cell(med(row.lat_spread(|l| l.p99))),
            cell(med(row.lat_spread(|l| l.p999))),
            cell(med(row.lat_spread(|l| l.max))),
            cell(med(Spread::of(row.connect_us.iter().copied()))),
            cell(run.thr_vs_baseline(row).0),
            cell(ratio(row.p50(), base.and_then(Row::p50))),
            cell(ratio(row.gb(), run.memcpy(row.size))),
            run.load.clients.to_string(),
            cell(run.load.rate),
            quoted(row.label.as_deref().unwrap_or("")),
            quoted(&row.settings),
            quoted(&row.notes.join("; ")),
        ];
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The pinning asked for, and whether it was applied (Linux only).
fn pinning_label(pinning: Pinning) -> String {
    if cfg!(target_os = "linux") || pinning == Pinning::None {
        pinning.as_str().to_string()
    } else {
        format!(
            "{} (not applied: pinning is done on Linux only)",
            pinning.as_str()
        )
    }
}

/// What the numbers were measured on.
fn machine() -> Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let cpu = read("/proc/cpuinfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    let cpus = cpus_online();
    let kernel = kernel();
    let summary = format!(
        "{} {} on {} ({cpus} CPUs)",
        std::env::consts::OS,
        kernel.as_deref().unwrap_or(""),
        cpu.as_deref().unwrap_or("unknown CPU")
    );
    json!({
        "summary": summary,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "kernel": kernel,
        "cpu": cpu,
        "cpus": cpus,
        "pipe_max_size": read("/proc/sys/fs/pipe-max-size"),
        "mq_msgsize_max": read("/proc/sys/fs/mqueue/msgsize_max"),
        "mq_msg_max": read("/proc/sys/fs/mqueue/msg_max"),
        "sysv_msgmax": read("/proc/sys/kernel/msgmax"),
        "sysv_msgmnb": read("/proc/sys/kernel/msgmnb"),
        "net_core_wmem_max": read("/proc/sys/net/core/wmem_max"),
        "net_core_rmem_max": read("/proc/sys/net/core/rmem_max"),
    })
}

/// CPUs online (not those this process may use: the bench pins itself).
fn cpus_online() -> usize {
    #[cfg(target_os = "linux")]
    if let Ok(Some(n)) = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN) {
        return n.max(1) as usize;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(unix)]
fn kernel() -> Option<String> {
    nix::sys::utsname::uname()
        .ok()
        .map(|u| u.release().to_string_lossy().into_owned())
}

#[cfg(not(unix))]
fn kernel() -> Option<String> {
    None
}
