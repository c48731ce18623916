//! What a run measured: each transport's rounds at each size, and the summaries the table,
//! the JSON and the report print (medians, spreads, ratios).

use std::collections::BTreeMap;
use std::time::Duration;

use pipekit_benches::Load;
use serde_json::{Value, json};

/// One round's throughput figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Thr {
    pub(super) gb_per_s: f64,
    pub(super) msgs_per_s: f64,
    pub(super) cpu_s_per_gb: f64,
    pub(super) cpu_s_per_msg: f64,
}

/// One round's latency percentiles, in µs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lat {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) p999: f64,
    pub(super) max: f64,
}

/// One transport at one size, over every round.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) transport: &'static str,
    pub(super) about: &'static str,
    pub(super) baseline: Option<&'static str>,
    pub(super) size: usize,
    /// How the chunks travel when not one message or write each.
    pub(super) label: Option<String>,
    /// Per round, in round order (`None`: that round failed).
    pub(super) thr: Vec<Option<Thr>>,
    pub(super) lat: Vec<Option<Lat>>,
    pub(super) connect_us: Vec<f64>,
    pub(super) settings: String,
    pub(super) notes: Vec<String>,
}

/// `{min, median, max}` of some values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spread {
    pub(super) min: f64,
    pub(super) median: f64,
    pub(super) max: f64,
    pub(super) n: usize,
}

impl Spread {
    pub(super) fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let (&min, &max) = (v.first()?, v.last()?);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Some(Spread {
            min,
            median,
            max,
            n: v.len(),
        })
    }

    pub(super) fn json(self) -> Value {
        json!({"min": self.min, "median": self.median, "max": self.max, "rounds": self.n})
    }

    pub(super) fn overlaps(self, other: Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

impl Row {
    pub(super) fn thr_spread(&self, f: impl Fn(&Thr) -> f64) -> Option<Spread> {
        Spread::of(self.thr.iter().flatten().map(f))
    }

    pub(super) fn lat_spread(&self, f: impl Fn(&Lat) -> f64) -> Option<Spread> {
        Spread::of(self.lat.iter().flatten().map(f))
    }

    pub(super) fn gb(&self) -> Option<f64> {
        self.thr_spread(|t| t.gb_per_s).map(|s| s.median)
    }

    pub(super) fn p50(&self) -> Option<f64> {
        self.lat_spread(|l| l.p50).map(|s| s.median)
    }

    pub(super) fn ran(&self) -> bool {
        self.thr.iter().any(Option::is_some) || self.lat.iter().any(Option::is_some)
    }

    /// Why this row has no figures, if it has none.
    pub(super) fn not_run(&self) -> Option<String> {
        if self.ran() {
            return None;
        }
        Some(if self.notes.is_empty() {
            String::from("not run")
        } else {
            self.notes.join("; ")
        })
    }
}

/// Everything one run measured, and on what.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) rows: Vec<Row>,
    /// Per size, each round's memcpy GB/s.
    pub(super) memcpy: BTreeMap<usize, Vec<f64>>,
    pub(super) machine: Value,
    pub(super) pinning: String,
    pub(super) duration: Duration,
    pub(super) rounds: usize,
    pub(super) load: Load,
    pub(super) quick: bool,
    pub(super) timestamp: Value,
}

impl Run {
    /// The same measurement of `row`'s baseline transport, at the same size.
    pub(super) fn baseline_of(&self, row: &Row) -> Option<&Row> {
        let name = row.baseline?;
        self.rows
            .iter()
            .find(|r| r.transport == name && r.size == row.size)
    }

    pub(super) fn memcpy(&self, size: usize) -> Option<f64> {
        Spread::of(self.memcpy.get(&size)?.iter().copied()).map(|s| s.median)
    }

    /// Median throughput ÷ the baseline's median, and the spread of the rounds' ratios.
    pub(super) fn thr_vs_baseline(&self, row: &Row) -> (Option<f64>, Option<Spread>) {
        let Some(base) = self.baseline_of(row) else {
            return (None, None);
        };
        let ratio = ratio(row.gb(), base.gb());
        let per_round = row
            .thr
            .iter()
            .zip(&base.thr)
            .filter_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if b.gb_per_s > 0.0 => Some(a.gb_per_s / b.gb_per_s),
                _ => None,
            });
        (ratio, Spread::of(per_round))
    }

    /// Whether `row`'s throughput spread overlaps its baseline's.
    pub(super) fn overlaps_baseline(&self, row: &Row) -> Option<bool> {
        let base = self.baseline_of(row)?;
        Some(
            row.thr_spread(|t| t.gb_per_s)?
                .overlaps(base.thr_spread(|t| t.gb_per_s)?),
        )
    }

    pub(super) fn title(&self) -> String {
        format!(
            "pipekit bench — {} — {}",
            self.machine["summary"].as_str().unwrap_or(""),
            self.timestamp["utc"].as_str().unwrap_or("")
        )
    }
}

pub(super) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// `v` with `digits` decimals, or `-`.
pub(super) fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| String::from("-"), |v| format!("{v:.digits$}"))
}

/// A rate with a unit prefix (k, M, G).
pub(super) fn si(v: Option<f64>) -> String {
    match v {
        None => String::from("-"),
        Some(v) if v >= 1e9 => format!("{:.2}G", v / 1e9),
        Some(v) if v >= 1e6 => format!("{:.2}M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1}k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}
