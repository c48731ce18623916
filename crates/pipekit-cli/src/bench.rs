//! `pipekit bench`: the benchmark matrix, as a table, JSON, CSV and an SVG chart.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pipekit_benches::{Pinning, Transport, all};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Transports to run, comma-separated (default: all; see --list).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    transports: Vec<String>,
    /// Chunk sizes in bytes, comma-separated (default: 65535).
    #[arg(long, value_delimiter = ',', value_name = "BYTES")]
    sizes: Vec<usize>,
    /// Seconds per throughput and per latency measurement.
    #[arg(long, default_value_t = 0.4, value_name = "SECS")]
    duration: f64,
    /// Rounds over the whole matrix; each transport keeps its best round (highest
    /// throughput, lowest median latency), which filters out interference on a shared
    /// machine. Rounds interleave transports, so a transport and its baseline see the same
    /// conditions.
    #[arg(long, default_value_t = 3, value_name = "N")]
    rounds: usize,
    /// A run of a few seconds with short measurements, to check the harness works.
    #[arg(long)]
    quick: bool,
    /// Where the two processes run: none, same (both on CPU 0), split (CPU 0 and CPU 1).
    #[arg(long, default_value = "split", value_name = "HOW")]
    pin: String,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw throughput and latency per transport as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// List the transports and exit.
    #[arg(long)]
    list: bool,
}

/// One transport at one size.
#[derive(Debug, Default, Clone)]
struct Row {
    transport: String,
    baseline: Option<String>,
    size: usize,
    gb_per_s: Option<f64>,
    /// Each round's throughput, for the spread.
    rounds_gb_per_s: Vec<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    connect_p50_us: Option<f64>,
    settings: String,
    notes: Vec<String>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let transports: Vec<&'static dyn Transport> = all();
    if args.list {
        for t in &transports {
            match t.baseline() {
                Some(b) => println!("{} (baseline {b})", t.name()),
                None => println!("{}", t.name()),
            }
        }
        return Ok(());
    }
    let Some(pinning) = Pinning::parse(&args.pin) else {
        return Err(crate::usage(format!(
            "--pin must be none, same or split, not {:?}",
            args.pin
        )));
    };
    for name in &args.transports {
        if !transports.iter().any(|t| t.name() == name) {
            return Err(crate::usage(format!(
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
        return Err(crate::usage("--sizes: a chunk must be at least 1 byte"));
    }
    let (duration, connects) = if args.quick {
        (Duration::from_millis(50), 20)
    } else {
        if !(args.duration > 0.0 && args.duration.is_finite()) {
            return Err(crate::usage(
                "--duration must be a positive number of seconds",
            ));
        }
        (Duration::from_secs_f64(args.duration), 200)
    };

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
    let mut memcpy = BTreeMap::new();
    let mut step = 0;
    for &size in &sizes {
        for _ in 0..rounds {
            let copy = pipekit_benches::memcpy(size, duration).gb_per_s();
            let best = memcpy.entry(size).or_insert(copy);
            *best = f64::max(*best, copy);
            for t in &chosen {
                step += 1;
                if terminal {
                    eprint!("\r[{step}/{total}] {} {size} B            ", t.name());
                } else {
                    eprintln!("pipekit bench: [{step}/{total}] {} {size} B", t.name());
                }
                let row = measure(*t, size, duration, connects, pinning);
                match rows
                    .iter_mut()
                    .find(|r| r.transport == row.transport && r.size == size)
                {
                    Some(best) => best.keep_best(row),
                    None => rows.push(row),
                }
            }
        }
    }
    if terminal {
        eprintln!("\r{:60}", "");
    }

    let machine = machine();
    print_table(&rows, &memcpy, &machine, pinning);
    if let Some(path) = &args.json {
        let doc = to_json(&rows, &memcpy, &machine, pinning, (duration, rounds));
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &rows, &memcpy)?;
    }
    if let Some(path) = &args.svg {
        draw(path, &rows, sizes[0]).with_context(|| format!("cannot draw {}", path.display()))?;
    }
    Ok(())
}

fn measure(
    t: &'static dyn Transport,
    size: usize,
    duration: Duration,
    connects: usize,
    pinning: Pinning,
) -> Row {
    let mut row = Row {
        transport: t.name().to_string(),
        baseline: t.baseline().map(str::to_string),
        size,
        ..Row::default()
    };
    if let Err(reason) = t.check(size) {
        row.notes.push(format!("not run: {reason}"));
        return row;
    }
    match pipekit_benches::throughput(t, size, duration, pinning) {
        Ok(r) => {
            row.gb_per_s = Some(r.gb_per_s());
            row.rounds_gb_per_s.push(r.gb_per_s());
            row.settings = r.settings;
        }
        Err(e) => row
            .notes
            .push(format!("throughput: {}", pipekit::error::Chain(&e))),
    }
    match pipekit_benches::latency(t, size, duration, pinning) {
        Ok(l) => {
            row.p50_us = Some(l.quantile_us(0.5));
            row.p99_us = Some(l.quantile_us(0.99));
            row.p999_us = Some(l.quantile_us(0.999));
            row.max_us = Some(l.max_us());
        }
        Err(e) => row
            .notes
            .push(format!("latency: {}", pipekit::error::Chain(&e))),
    }
    if t.reconnects() {
        match pipekit_benches::connect_time(t, connects, pinning) {
            Ok(c) => row.connect_p50_us = Some(c.histogram.value_at_quantile(0.5) as f64 / 1e3),
            Err(e) => row
                .notes
                .push(format!("connect: {}", pipekit::error::Chain(&e))),
        }
    }
    row
}

impl Row {
    /// Keeps the better of this round and `other`: highest throughput, the latency figures of
    /// the round with the lowest median, the lowest connect median.
    fn keep_best(&mut self, other: Row) {
        self.rounds_gb_per_s.extend(&other.rounds_gb_per_s);
        if other.gb_per_s > self.gb_per_s {
            self.gb_per_s = other.gb_per_s;
        }
        let better_latency = match (other.p50_us, self.p50_us) {
            (Some(o), Some(s)) => o < s,
            (Some(_), None) => true,
            _ => false,
        };
        if better_latency {
            self.p50_us = other.p50_us;
            self.p99_us = other.p99_us;
            self.p999_us = other.p999_us;
            self.max_us = other.max_us;
        }
        if let Some(c) = other.connect_p50_us
            && self.connect_p50_us.is_none_or(|s| c < s)
        {
            self.connect_p50_us = Some(c);
        }
        if self.settings.is_empty() {
            self.settings = other.settings;
        }
        for note in other.notes {
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
    }
}

/// The same measurement of `row`'s baseline transport, at the same size.
fn baseline_of<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    let name = row.baseline.as_deref()?;
    rows.iter()
        .find(|r| r.transport == name && r.size == row.size)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| String::from("-"), |v| format!("{v:.digits$}"))
}

fn print_table(rows: &[Row], memcpy: &BTreeMap<usize, f64>, machine: &Value, pinning: Pinning) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "pipekit bench — {} — pinning: {}",
        machine["summary"].as_str().unwrap_or(""),
        pinning_label(pinning)
    );
    let _ = writeln!(
        out,
        "{:<27} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "transport",
        "size",
        "GB/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "connect",
        "thr/base",
        "p50/base",
        "/memcpy"
    );
    for row in rows {
        let base = baseline_of(rows, row);
        let _ = writeln!(
            out,
            "{:<27} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8}",
            row.transport,
            row.size,
            fmt(row.gb_per_s, 2),
            fmt(row.p50_us, 1),
            fmt(row.p99_us, 1),
            fmt(row.p999_us, 1),
            fmt(row.connect_p50_us, 1),
            fmt(ratio(row.gb_per_s, base.and_then(|b| b.gb_per_s)), 3),
            fmt(ratio(row.p50_us, base.and_then(|b| b.p50_us)), 3),
            fmt(ratio(row.gb_per_s, memcpy.get(&row.size).copied()), 3),
        );
        for note in &row.notes {
            let _ = writeln!(out, "    {}: {note}", row.transport);
        }
    }
    for (size, gbps) in memcpy {
        let _ = writeln!(
            out,
            "{:<27} {:>8} {:>7.2}",
            "memcpy (one process)", size, gbps
        );
    }
}

fn to_json(
    rows: &[Row],
    memcpy: &BTreeMap<usize, f64>,
    machine: &Value,
    pinning: Pinning,
    (duration, rounds): (Duration, usize),
) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|row| {
            let base = baseline_of(rows, row);
            json!({
                "transport": row.transport,
                "baseline": row.baseline,
                "size": row.size,
                "gb_per_s": row.gb_per_s,
                "throughput_spread": spread(&row.rounds_gb_per_s),
                "latency_us": {
                    "p50": row.p50_us, "p99": row.p99_us, "p99_9": row.p999_us, "max": row.max_us,
                },
                "connect_p50_us": row.connect_p50_us,
                "throughput_vs_baseline": ratio(row.gb_per_s, base.and_then(|b| b.gb_per_s)),
                "p50_vs_baseline": ratio(row.p50_us, base.and_then(|b| b.p50_us)),
                "throughput_vs_memcpy": ratio(row.gb_per_s, memcpy.get(&row.size).copied()),
                "settings": row.settings,
                "notes": row.notes,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("PIPEKIT_COMMIT"),
        "rustc": env!("PIPEKIT_RUSTC"),
        "timestamp": timestamp(),
        "machine": machine,
        "pinning": pinning_label(pinning),
        "duration_s": duration.as_secs_f64(),
        "rounds": rounds,
        "memcpy_gb_per_s": memcpy.iter().map(|(s, g)| json!({"size": s, "gb_per_s": g})).collect::<Vec<_>>(),
        "results": results,
    })
}

/// The rounds' throughput as `{min, median, max, rounds}` (null if none ran).
fn spread(rounds: &[f64]) -> Value {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        return Value::Null;
    };
    let mid = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    };
    json!({"min": min, "median": median, "max": max, "rounds": sorted.len()})
}

/// Now, as seconds since the Unix epoch and as RFC 3339 text (UTC).
fn timestamp() -> Value {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({"unix": secs, "utc": humantime::format_rfc3339_seconds(now).to_string()})
}

fn write_csv(path: &Path, rows: &[Row], memcpy: &BTreeMap<usize, f64>) -> anyhow::Result<()> {
    let mut text = String::from(
        "transport,size,gb_per_s,p50_us,p99_us,p99_9_us,max_us,connect_p50_us,\
         throughput_vs_baseline,p50_vs_baseline,throughput_vs_memcpy,settings,notes\n",
    );
    let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    for row in rows {
        let base = baseline_of(rows, row);
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},\"{}\",\"{}\"\n",
            row.transport,
            row.size,
            cell(row.gb_per_s),
            cell(row.p50_us),
            cell(row.p99_us),
            cell(row.p999_us),
            cell(row.max_us),
            cell(row.connect_p50_us),
            cell(ratio(row.gb_per_s, base.and_then(|b| b.gb_per_s))),
            cell(ratio(row.p50_us, base.and_then(|b| b.p50_us))),
            cell(ratio(row.gb_per_s, memcpy.get(&row.size).copied())),
            row.settings.replace('"', "'"),
            row.notes.join("; ").replace('"', "'"),
        ));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Two horizontal bar charts, throughput and p50 latency per transport, at `size`.
fn draw(path: &Path, rows: &[Row], size: usize) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let rows: Vec<&Row> = rows.iter().filter(|r| r.size == size).collect();
    let names: Vec<String> = rows.iter().map(|r| r.transport.clone()).collect();
    let n = names.len().max(1);
    let root = SVGBackend::new(path, (1000, 120 + 44 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let charts = [
        (left, format!("throughput, GB/s ({size} B)"), 0usize),
        (right, format!("round trip p50, µs ({size} B)"), 1usize),
    ];
    for (area, title, which) in charts {
        let values: Vec<f64> = rows
            .iter()
            .map(|r| if which == 0 { r.gb_per_s } else { r.p50_us }.unwrap_or(0.0))
            .collect();
        let max = values.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(if which == 0 { 190 } else { 10 })
            .build_cartesian_2d(0.0..max, (0..n - 1).into_segmented())?;
        let labels = names.clone();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if which == 0 => {
                    labels.get(*i).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_labels(n)
            .draw()?;
        chart.draw_series(
            Histogram::horizontal(&chart)
                .style(if which == 0 {
                    BLUE.filled()
                } else {
                    RED.filled()
                })
                .margin(4)
                .data(values.iter().enumerate().map(|(i, v)| (i, *v))),
        )?;
    }
    root.present()?;
    Ok(())
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
