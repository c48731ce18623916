//! The report of a run: SVG charts (plotters) and a self-contained HTML page around them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

use super::run::{Lat, Row, Run, Spread, fmt, ratio, si};

/// Writes `index.html` (the table, the charts inline, the run's facts) and each chart as an
/// SVG file into `dir`, which is made if missing.
pub(super) fn write(dir: &Path, run: &Run, doc: &Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut charts: Vec<(String, String, String)> = Vec::new();
    if let Some(svg) = ratio_chart(run)? {
        charts.push((
            String::from("ratio.svg"),
            String::from("Throughput ÷ baseline"),
            svg,
        ));
    }
    charts.push((
        String::from("throughput.svg"),
        String::from("Throughput against chunk size"),
        throughput_chart(run)?,
    ));
    for size in run.memcpy.keys() {
        charts.push((
            format!("latency-{size}.svg"),
            format!("Round-trip latency, {size} B"),
            latency_chart(run, *size)?,
        ));
        charts.push((
            format!("cpu-{size}.svg"),
            format!("CPU time per GB, {size} B"),
            cpu_chart(run, *size)?,
        ));
    }
    for (file, _, svg) in &charts {
        let path = dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let path = dir.join("index.html");
    std::fs::write(&path, html(run, doc, &charts))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e}")
}

/// The label of a row in a chart: the transport, with the size when the run has several.
fn name(run: &Run, row: &Row) -> String {
    if run.memcpy.len() > 1 {
        format!("{} @ {}", row.transport, row.size)
    } else {
        row.transport.to_string()
    }
}

/// Rows run at `size`, in run order.
fn at(run: &Run, size: usize) -> Vec<&Row> {
    run.rows.iter().filter(|r| r.size == size).collect()
}

/// A log axis range around `values` (padded a little, never empty).
fn log_range(values: impl IntoIterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.1..10.0;
    }
    lo / 1.6..hi * 1.6
}

/// Throughput of each transport ÷ its baseline's (medians), with the rounds' ratios as error
/// bars, and lines at 1 and 0.97.
fn ratio_chart(run: &Run) -> anyhow::Result<Option<String>> {
    let rows: Vec<(&Row, Option<f64>, Option<Spread>)> = run
        .rows
        .iter()
        .filter(|r| r.baseline.is_some())
        .map(|r| {
            let (ratio, spread) = run.thr_vs_baseline(r);
            (r, ratio, spread)
        })
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let n = rows.len();
    let max = rows
        .iter()
        .filter_map(|(_, r, s)| s.map(|s| s.max).or(*r))
        .fold(1.2f64, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1000, 110 + 30 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let labels: Vec<String> = rows
            .iter()
            .map(|(r, _, _)| format!("{} ÷ {}", name(run, r), r.baseline.unwrap_or("")))
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("throughput ÷ baseline — {}", run.title()),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(380)
            .build_cartesian_2d(0.0..max, (0..n - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(n - 1 - *i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("median throughput ÷ the baseline's median (bars: the rounds' ratios)")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, (_, r, _))| {
                let r = (*r)?;
                let color = if r >= 0.97 { BLUE } else { RED };
                Some(Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(n - 1 - i)),
                        (r, SegmentValue::Exact(n - i)),
                    ],
                    color.mix(0.5).filled(),
                ))
            }))
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, (_, r, s))| {
                let s = (*s)?;
                Some(ErrorBar::new_horizontal(
                    SegmentValue::CenterOf(n - 1 - i),
                    s.min,
                    r.unwrap_or(s.median),
                    s.max,
                    BLACK.stroke_width(1),
                    8,
                ))
            }))
            .map_err(err)?;
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .filter(|(_, (_, r, _))| r.is_none())
                    .map(|(i, (row, _, _))| {
                        Text::new(
                            not_run_text(row).unwrap_or_else(|| String::from("no figure")),
                            (max * 0.01, SegmentValue::CenterOf(n - 1 - i)),
                            ("sans-serif", 11).into_font().color(&RED),
                        )
                    }),
            )
            .map_err(err)?;
        for (x, style) in [(1.0, BLACK.stroke_width(1)), (0.97, RED.stroke_width(1))] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(n))],
                    style,
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// Throughput against chunk size, log–log: a line per transport through its medians, the
/// rounds' spread as error bars, memcpy dashed.
pub(super) fn throughput_chart(run: &Run) -> anyhow::Result<String> {
    let sizes: Vec<usize> = run.memcpy.keys().copied().collect();
    let mut names: Vec<&'static str> = Vec::new();
    for row in &run.rows {
        if !names.contains(&row.transport) {
            names.push(row.transport);
        }
    }
    let x = log_range(sizes.iter().map(|s| *s as f64));
    let y = log_range(
        run.rows
            .iter()
            .filter_map(|r| r.thr_spread(|t| t.gb_per_s))
            .flat_map(|s| [s.min, s.max])
            .chain(run.memcpy.keys().filter_map(|s| run.memcpy(*s))),
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_horizontally(800);
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("throughput by chunk size — {}", run.title()),
                ("sans-serif", 13),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x.log_scale(), y.log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("chunk size, bytes (log)")
            .y_desc("GB/s (log)")
            .y_label_formatter(&|v| short(*v))
            .x_label_formatter(&|v| si(Some(*v)))
            .draw()
            .map_err(err)?;
        let mut key = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, Spread)> = sizes
                .iter()
                .filter_map(|s| {
                    let row = run
                        .rows
                        .iter()
                        .find(|r| r.transport == *name && r.size == *s)?;
                    Some((*s as f64, row.thr_spread(|t| t.gb_per_s)?))
                })
                .collect();
            if points.is_empty() {
                key.push((format!("{name}: not run"), color));
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, s)| (*x, s.median)),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            chart
                .draw_series(points.iter().map(|(x, s)| {
                    ErrorBar::new_vertical(*x, s.min, s.median, s.max, color.stroke_width(1), 6)
                }))
                .map_err(err)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|(x, s)| Circle::new((*x, s.median), 3, color.filled())),
                )
                .map_err(err)?;
            key.push((name.to_string(), color));
        }
        let copy: Vec<(f64, f64)> = sizes
            .iter()
            .filter_map(|s| Some((*s as f64, run.memcpy(*s)?)))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(
                copy.clone(),
                6,
                4,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                copy.iter()
                    .map(|p| Cross::new(*p, 4, BLACK.stroke_width(2))),
            )
            .map_err(err)?;
        key.push((String::from("memcpy (one process)"), BLACK.to_rgba()));
        draw_key(&legend, &key)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A legend: a colour swatch and a name per line.
fn draw_key(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    key: &[(String, RGBAColor)],
) -> anyhow::Result<()> {
    for (i, (label, color)) in key.iter().enumerate() {
        let y = 30 + 18 * i as i32;
        area.draw(&Rectangle::new([(5, y - 5), (20, y + 5)], color.filled()))
            .map_err(err)?;
        area.draw(&Text::new(label.clone(), (26, y - 7), ("sans-serif", 12)))
            .map_err(err)?;
    }
    Ok(())
}

/// A chart of `size`'s rows, a row per transport (the first at the top), over a log x axis:
/// the caption, the labels, "not run: why" where a row has no figures, and what `draw` adds.
fn rows_chart(
    run: &Run,
    size: usize,
    (caption, x_desc): (&str, &str),
    x: std::ops::Range<f64>,
    draw: impl FnOnce(&mut RowChart<'_, '_>, &[&Row]) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let rows = at(run, size);
    let n = rows.len().max(1);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1000, 120 + 28 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let labels: Vec<String> = rows.iter().map(|r| r.transport.to_string()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{caption}, {size} B — {}", run.title()),
                ("sans-serif", 13),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(220)
            .build_cartesian_2d(x.clone().log_scale(), (0..n - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(n - 1 - *i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_labels(12)
            .x_label_formatter(&|v| short(*v))
            .x_desc(x_desc)
            .draw()
            .map_err(err)?;
        draw(&mut chart, &rows)?;
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                Some(Text::new(
                    not_run_text(r)?,
                    (x.start * 1.1, SegmentValue::CenterOf(n - 1 - i)),
                    ("sans-serif", 11).into_font().color(&RED),
                ))
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

type RowChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
    >,
>;

/// Row `i` of `n`, counted from the top.
fn row(i: usize, n: usize) -> SegmentValue<usize> {
    SegmentValue::CenterOf(n - 1 - i)
}

/// Per transport at `size`: p50, p99 and p99.9 round-trip latency on a log axis, the rounds'
/// p50 spread as an error bar.
fn latency_chart(run: &Run, size: usize) -> anyhow::Result<String> {
    let x = log_range(at(run, size).iter().flat_map(|r| {
        [
            r.lat_spread(|l| l.p50).map(|s| s.min),
            r.lat_spread(|l| l.p999).map(|s| s.max),
        ]
        .into_iter()
        .flatten()
    }));
    let text = (
        "round trip",
        "µs (log): ● p50 (bar: the rounds' p50s)  ▲ p99  ✕ p99.9",
    );
    rows_chart(run, size, text, x, |chart, rows| {
        let n = rows.len().max(1);
        let medians = |f: fn(&Lat) -> f64| {
            rows.iter()
                .enumerate()
                .filter_map(move |(i, r)| Some((i, r.lat_spread(f)?)))
                .collect::<Vec<_>>()
        };
        let style = BLUE.stroke_width(1);
        let p50 = medians(|l| l.p50);
        chart
            .draw_series(p50.iter().map(|&(i, s)| {
                ErrorBar::new_horizontal(row(i, n), s.min, s.median, s.max, style, 8)
            }))
            .map_err(err)?;
        chart
            .draw_series(
                p50.iter()
                    .map(|&(i, s)| Circle::new((s.median, row(i, n)), 4, BLUE.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                medians(|l| l.p99)
                    .into_iter()
                    .map(|(i, s)| TriangleMarker::new((s.median, row(i, n)), 5, MAGENTA.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                medians(|l| l.p999)
                    .into_iter()
                    .map(|(i, s)| Cross::new((s.median, row(i, n)), 5, RED.stroke_width(2))),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// Per transport at `size`: CPU seconds (user + system, both processes) per GB moved, log
/// axis, the rounds' spread as an error bar.
fn cpu_chart(run: &Run, size: usize) -> anyhow::Result<String> {
    let x = log_range(
        at(run, size)
            .iter()
            .filter_map(|r| r.thr_spread(|t| t.cpu_s_per_gb))
            .flat_map(|s| [s.min, s.max]),
    );
    let text = (
        "CPU per GB",
        "CPU seconds per GB, both processes, user + system (log; lower is cheaper)",
    );
    rows_chart(run, size, text, x, |chart, rows| {
        let n = rows.len().max(1);
        let spreads: Vec<(usize, Spread)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.thr_spread(|t| t.cpu_s_per_gb)?)))
            .collect();
        let style = GREEN.stroke_width(1);
        chart
            .draw_series(spreads.iter().map(|(i, s)| {
                ErrorBar::new_horizontal(row(*i, n), s.min, s.median, s.max, style, 8)
            }))
            .map_err(err)?;
        chart
            .draw_series(
                spreads
                    .iter()
                    .map(|(i, s)| Circle::new((s.median, row(*i, n)), 4, GREEN.filled())),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// An axis value in few characters: 0.05, 2.5, 40, 1.2k.
fn short(v: f64) -> String {
    if v >= 1000.0 {
        si(Some(v))
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The "not run: why" text drawn where a row without figures would be.
fn not_run_text(row: &Row) -> Option<String> {
    let why = row.not_run()?;
    let mut short: String = why.chars().take(110).collect();
    if short.len() < why.len() {
        short.push('…');
    }
    Some(short)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(run: &Run, doc: &Value, charts: &[(String, String, String)]) -> String {
    let mut h = String::new();
    let title = esc(&run.title());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>\n\
         body{{font-family:sans-serif;margin:2em;max-width:1200px}}\n\
         table{{border-collapse:collapse;font-size:13px}}\n\
         td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}\n\
         td:first-child,th:first-child{{text-align:left}}\n\
         .notrun{{color:#a00}}\n.note{{color:#555;font-size:12px;text-align:left}}\n\
         </style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    if run.quick {
        h.push_str(
            "<p class=\"notrun\"><b>--quick run:</b> each transport was measured once for \
             50 ms to check that the harness works. These figures and ratios are not \
             measurements.</p>\n",
        );
    }
    let facts = [
        ("version", doc["version"].to_string()),
        ("commit", doc["commit"].to_string()),
        ("rustc", doc["rustc"].to_string()),
        ("machine", doc["machine"]["summary"].to_string()),
        ("pinning", run.pinning.clone()),
        (
            "duration per measurement",
            format!("{} s", run.duration.as_secs_f64()),
        ),
        ("rounds", run.rounds.to_string()),
        ("clients", run.load.clients.to_string()),
        (
            "latency loop",
            run.load.rate.map_or_else(
                || String::from("closed (each round trip as soon as the last ended)"),
                |r| format!("open, {r} round trips/s, timed from when each was due"),
            ),
        ),
    ];
    h.push_str("<table>\n");
    for (k, v) in facts {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(k),
            esc(v.trim_matches('"'))
        );
    }
    h.push_str("</table>\n");
    h.push_str(
        "<p>Each figure is the median of the rounds; the spread (min–max) is in brackets and \
         drawn as error bars. A ratio marked ~ has rounds that overlap its baseline's: no \
         difference was measured. Throughput is one way (writer to reader, confirmed by the \
         reader); latency is a full round trip (a chunk out and the same bytes back). CPU is \
         user + system time of every process taking part.</p>\n",
    );
    h.push_str(
        "<table>\n<tr><th>transport</th><th>size</th><th>GB/s</th><th>min–max</th>\
         <th>msgs/s</th><th>CPU s/GB</th><th>CPU µs/msg</th><th>p50 µs</th><th>p99 µs</th>\
         <th>p99.9 µs</th><th>connect µs</th><th>÷ baseline</th><th>÷ memcpy</th></tr>\n",
    );
    for row in &run.rows {
        let gb = row.thr_spread(|t| t.gb_per_s);
        let med = |s: Option<Spread>| s.map(|s| s.median);
        let (vs, _) = run.thr_vs_baseline(row);
        let overlap = if run.overlaps_baseline(row) == Some(true) {
            "~"
        } else {
            ""
        };
        let base = row
            .baseline
            .map_or_else(String::new, |b| format!(" (baseline {b})"));
        let _ = write!(
            h,
            "<tr><td title=\"{}\">{}{}</td><td>{}</td>",
            esc(row.about),
            esc(row.transport),
            esc(&base),
            row.size
        );
        if let Some(why) = row.not_run() {
            let _ = writeln!(
                h,
                "<td colspan=\"11\" class=\"notrun\">{}</td></tr>",
                esc(&why)
            );
            continue;
        }
        let cells = [
            fmt(gb.map(|s| s.median), 2),
            gb.map_or_else(String::new, |s| format!("{:.2}–{:.2}", s.min, s.max)),
            si(med(row.thr_spread(|t| t.msgs_per_s))),
            fmt(med(row.thr_spread(|t| t.cpu_s_per_gb)), 3),
            fmt(med(row.thr_spread(|t| t.cpu_s_per_msg)).map(|s| s * 1e6), 2),
            fmt(row.p50(), 1),
            fmt(med(row.lat_spread(|l| l.p99)), 1),
            fmt(med(row.lat_spread(|l| l.p999)), 1),
            fmt(med(Spread::of(row.connect_us.iter().copied())), 1),
            format!("{overlap}{}", fmt(vs, 3)),
            fmt(ratio(row.gb(), run.memcpy(row.size)), 3),
        ];
        for c in cells {
            let _ = write!(h, "<td>{}</td>", esc(&c));
        }
        h.push_str("</tr>\n");
        let mut notes: Vec<String> = row.label.iter().cloned().collect();
        notes.extend(row.notes.iter().cloned());
        if !row.settings.is_empty() {
            notes.push(row.settings.clone());
        }
        if !notes.is_empty() {
            let _ = writeln!(
                h,
                "<tr><td></td><td colspan=\"12\" class=\"note\">{}</td></tr>",
                esc(&notes.join("; "))
            );
        }
    }
    for size in run.memcpy.keys() {
        let _ = writeln!(
            h,
            "<tr><td>memcpy (one process, 4 MiB region)</td><td>{size}</td><td>{}</td>\
             <td colspan=\"10\"></td></tr>",
            fmt(run.memcpy(*size), 2)
        );
    }
    h.push_str("</table>\n");
    for (file, caption, svg) in charts {
        let body = svg.find("<svg").map_or(svg.as_str(), |start| &svg[start..]);
        let _ = write!(
            h,
            "<h2>{}</h2>\n<p><a href=\"{}\">{}</a></p>\n{body}\n",
            esc(caption),
            esc(file),
            esc(file)
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}
