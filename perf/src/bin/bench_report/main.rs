//! `postern-bench-report`: turns the rows `scripts/bench.sh` measured into
//! `RESULTS.md` and its plots.
//!
//! Usage: `postern-bench-report RESULTS_TSV MACHINE_TXT OUT_DIR`
//!
//! Each TSV row is one run: scenario, variant, proxy, round, req/s,
//! CPU-µs per request, p50 and p99 (µs), RSS (KiB; for the idle scenario,
//! bytes per connection), errors, and the run's postern-load JSON. In
//! every scenario and variant one proxy is Postern's side (the tunnel
//! path in d, the pre-authenticated app in i) and the others are its
//! peers; a ratio is the median over rounds of Postern's figure divided by
//! the peer's from the same round.

#![forbid(unsafe_code)]

mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;

struct Row {
    scen: String,
    var: String,
    proxy: String,
    round: u32,
    rps: f64,
    cpu: f64,
    p50: f64,
    p99: f64,
    rss: f64,
    errors: u64,
    json: String,
}

const SCENARIOS: [(&str, &str); 9] = [
    ("a", "1 KiB HTTP/1.1 keep-alive, 32 connections"),
    ("b", "Body sizes over HTTPS, 32 connections"),
    ("c", "TLS handshakes: a connection per request (1 KiB), 16 connections; req/s = handshakes/s"),
    ("d", "The tunnel path (edge + connector, CPU summed) beside the direct path and the peers, 1 KiB over HTTPS, 32 connections"),
    ("e", "A 256 KiB page with link translation (nginx: sub_filter), 16 connections"),
    ("f", "Memory per idle keep-alive TLS connection"),
    ("g", "Latency under open-loop load at 50% and 80% of each proxy's own maximum, and at 80% of the lowest maximum for all (1 KiB over HTTPS, 64 connections)"),
    ("h", "HTTP/2 over TLS, 1 KiB"),
    ("i", "A pre-authenticated app (session cookie) beside passthrough, 1 KiB over HTTPS, 32 connections"),
];

/// Postern's side of a variant, in order of preference.
const SUBJECTS: [&str; 5] = [
    "tunnel",
    "postern-preauth",
    "postern-1app",
    "postern-100apps",
    "postern",
];

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("postern-bench-report: {msg}");
    std::process::exit(2);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn parse(tsv: &str) -> Vec<Row> {
    tsv.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 11 {
                fail(format!(
                    "line {}: expected 11 fields, found {}",
                    i + 1,
                    f.len()
                ));
            }
            let num = |k: usize| -> f64 {
                f[k].parse().unwrap_or_else(|_| {
                    fail(format!(
                        "line {}: field {} `{}` is not a number",
                        i + 1,
                        k + 1,
                        f[k]
                    ))
                })
            };
            Row {
                scen: f[0].into(),
                var: f[1].into(),
                proxy: f[2].into(),
                round: num(3) as u32,
                rps: num(4),
                cpu: num(5),
                p50: num(6),
                p99: num(7),
                rss: num(8),
                errors: num(9) as u64,
                json: f[10].into(),
            }
        })
        .collect()
}

/// Variants of a scenario and their proxies, in first-seen order.
fn layout<'a>(rows: &'a [Row], scen: &str) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in rows.iter().filter(|r| r.scen == scen) {
        match out.iter_mut().find(|(v, _)| *v == r.var) {
            Some((_, ps)) => {
                if !ps.contains(&r.proxy.as_str()) {
                    ps.push(&r.proxy)
                }
            }
            None => out.push((&r.var, vec![&r.proxy])),
        }
    }
    out
}

fn subject<'a>(proxies: &[&'a str]) -> Option<&'a str> {
    SUBJECTS
        .iter()
        .find_map(|s| proxies.iter().find(|p| **p == *s).copied())
}

struct Metrics<'a> {
    rows: &'a [Row],
}

impl Metrics<'_> {
    fn runs(&self, scen: &str, var: &str, proxy: &str) -> impl Iterator<Item = &Row> {
        let (scen, var, proxy) = (scen.to_string(), var.to_string(), proxy.to_string());
        self.rows
            .iter()
            .filter(move |r| r.scen == scen && r.var == var && r.proxy == proxy)
    }

    fn median_of(&self, scen: &str, var: &str, proxy: &str, f: impl Fn(&Row) -> f64) -> f64 {
        median(self.runs(scen, var, proxy).map(f).collect())
    }

    /// The median over rounds of subject / peer for `f`.
    fn ratio(&self, scen: &str, var: &str, a: &str, b: &str, f: impl Fn(&Row) -> f64) -> f64 {
        let peer: BTreeMap<u32, f64> = self.runs(scen, var, b).map(|r| (r.round, f(r))).collect();
        median(
            self.runs(scen, var, a)
                .filter_map(|r| peer.get(&r.round).map(|p| f(r) / p))
                .collect(),
        )
    }
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

fn size_bytes(v: &str) -> Option<f64> {
    let v = v.to_ascii_lowercase();
    let (num, mul) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1024.0),
        'm' => (&v[..v.len() - 1], 1024.0 * 1024.0),
        _ => (&v[..], 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * mul)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        fail("usage: postern-bench-report RESULTS_TSV MACHINE_TXT OUT_DIR");
    }
    let tsv =
        std::fs::read_to_string(&args[0]).unwrap_or_else(|e| fail(format!("{}: {e}", args[0])));
    let machine =
        std::fs::read_to_string(&args[1]).unwrap_or_else(|e| fail(format!("{}: {e}", args[1])));
    let out_dir = std::path::Path::new(&args[2]);
    let rows = parse(&tsv);
    let m = Metrics { rows: &rows };

    let mut md = String::new();
    md.push_str("# Postern benchmark results\n\n");
    md.push_str("Generated by `scripts/bench.sh` (do not edit by hand). Postern beside nginx and HAProxy, each with one worker (thread) pinned to CPU 0, in front of the same nginx static backend; `postern-load` drives them from CPU 1, beside the backend. Figures are medians over alternating rounds; a ratio is the median of per-round ratios of Postern's figure to the peer's (above 1 is better for req/s, below 1 for CPU per request, p99 and memory).\n\n");
    for l in machine.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(md, "* {l}");
    }
    md.push('\n');

    // The summary: each variant against its best peer.
    let mut summary = String::new();
    let mut worst: Option<(f64, String)> = None;
    for (scen, title) in SCENARIOS {
        for (var, proxies) in layout(&rows, scen) {
            let Some(subj) = subject(&proxies) else {
                continue;
            };
            let peers: Vec<&str> = proxies
                .iter()
                .copied()
                .filter(|p| {
                    *p != subj && !matches!(*p, "floor" | "postern" | "postern-passthrough")
                })
                .collect();
            if peers.is_empty() {
                continue;
            }
            // What "ahead" means: throughput, or p99 under the same offered
            // load (g), or memory (f); for the last two, lower is better.
            let (metric, lower_better, what): (fn(&Row) -> f64, bool, &str) = match scen {
                "f" => (|r| r.rss, true, "memory per connection"),
                "g" => (|r| r.p99, true, "p99 latency"),
                _ => (|r| r.rps, false, "req/s"),
            };
            let value = |p: &str| m.median_of(scen, var, p, metric);
            let best = peers
                .iter()
                .copied()
                .reduce(|a, b| {
                    let b_better = if lower_better {
                        value(b) < value(a)
                    } else {
                        value(b) > value(a)
                    };
                    if b_better {
                        b
                    } else {
                        a
                    }
                })
                .unwrap_or(peers[0]);
            let ratio = m.ratio(scen, var, subj, best, metric);
            let standing = if lower_better { 1.0 / ratio } else { ratio };
            let label = format!("{scen} ({title}), {var}: {subj} vs {best}, {what}");
            let _ = writeln!(
                summary,
                "| {scen} | {var} | {subj} / {best} | {what} | {}× |",
                fmt(standing, 2)
            );
            if standing.is_finite() && worst.as_ref().is_none_or(|(w, _)| standing < *w) {
                worst = Some((standing, label));
            }
        }
    }
    md.push_str("## Summary: Postern against the best peer of each case\n\n");
    md.push_str("Standing is Postern's advantage: its req/s over the best peer's, or the peer's p99 (g) or memory (f) over Postern's. Above 1, Postern is ahead.\n\n");
    md.push_str("| scenario | variant | compared | on | standing |\n|---|---|---|---|---|\n");
    md.push_str(&summary);
    if let Some((w, label)) = &worst {
        let _ = writeln!(
            md,
            "\nFurthest behind the best peer: **{label}**, standing {}×.",
            fmt(*w, 2)
        );
    }
    md.push('\n');

    for (scen, title) in SCENARIOS {
        let lay = layout(&rows, scen);
        if lay.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {scen}. {title}\n");
        if scen == "f" {
            md.push_str(
                "| proxy | bytes per idle connection | connections that failed |\n|---|---|---|\n",
            );
            for (var, proxies) in &lay {
                for p in proxies {
                    let _ = writeln!(
                        md,
                        "| {p} | {} | {} |",
                        fmt(m.median_of(scen, var, p, |r| r.rss), 0),
                        m.runs(scen, var, p).map(|r| r.errors).sum::<u64>()
                    );
                }
            }
        } else {
            md.push_str("| variant | proxy | req/s | CPU-µs/req | p50 µs | p99 µs | RSS MiB | errors |\n|---|---|---|---|---|---|---|---|\n");
            for (var, proxies) in &lay {
                for p in proxies {
                    let _ = writeln!(
                        md,
                        "| {var} | {p} | {} | {} | {} | {} | {} | {} |",
                        fmt(m.median_of(scen, var, p, |r| r.rps), 0),
                        fmt(m.median_of(scen, var, p, |r| r.cpu), 2),
                        fmt(m.median_of(scen, var, p, |r| r.p50), 0),
                        fmt(m.median_of(scen, var, p, |r| r.p99), 0),
                        fmt(m.median_of(scen, var, p, |r| r.rss) / 1024.0, 1),
                        m.runs(scen, var, p).map(|r| r.errors).sum::<u64>()
                    );
                }
            }
        }
        md.push_str(
            "\n| variant | ratio | req/s | CPU-µs/req | p99 | RSS |\n|---|---|---|---|---|---|\n",
        );
        for (var, proxies) in &lay {
            let Some(subj) = subject(proxies) else {
                continue;
            };
            for p in proxies.iter().filter(|p| **p != subj) {
                let _ = writeln!(
                    md,
                    "| {var} | {subj} / {p} | {}× | {}× | {}× | {}× |",
                    fmt(m.ratio(scen, var, subj, p, |r| r.rps), 2),
                    fmt(m.ratio(scen, var, subj, p, |r| r.cpu), 2),
                    fmt(m.ratio(scen, var, subj, p, |r| r.p99), 2),
                    fmt(m.ratio(scen, var, subj, p, |r| r.rss), 2),
                );
            }
        }
        md.push('\n');
        match scen {
            "b" => md
                .push_str("![Throughput and CPU per request against body size](body-size.svg)\n\n"),
            "g" => md.push_str("![Latency percentiles under open-loop load](latency.svg)\n\n"),
            _ => {}
        }
    }

    write(out_dir, "RESULTS.md", &md);
    write(out_dir, "body-size.svg", &body_size_chart(&rows, &m));
    write(out_dir, "latency.svg", &latency_chart(&rows));
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        fail(format!("{}: {e}", path.display()));
    }
}

fn proxies_in(rows: &[Row], scen: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.scen == scen) {
        if !out.contains(&r.proxy) {
            out.push(r.proxy.clone());
        }
    }
    out
}

fn decades(lo: f64, hi: f64, unit: &str) -> Vec<(f64, String)> {
    let mut ticks = Vec::new();
    let mut v = 10f64.powf(lo.max(1.0).log10().floor());
    while v <= hi * 1.0001 {
        let label = if v >= 1e6 {
            format!("{}M{unit}", v / 1e6)
        } else if v >= 1e3 {
            format!("{}k{unit}", v / 1e3)
        } else {
            format!("{v}{unit}")
        };
        ticks.push((v, label));
        v *= 10.0;
    }
    ticks
}

/// (b): throughput (MB/s) and CPU per request against body size.
fn body_size_chart(rows: &[Row], m: &Metrics<'_>) -> String {
    let sizes: Vec<(String, f64)> = layout(rows, "b")
        .into_iter()
        .filter_map(|(v, _)| size_bytes(v).map(|b| (v.to_string(), b)))
        .collect();
    let proxies = proxies_in(rows, "b");
    let ticks: Vec<(f64, String)> = sizes.iter().map(|(v, b)| (*b, v.clone())).collect();
    let series = |f: &dyn Fn(&str, &str, f64) -> f64| -> Vec<svg::Series> {
        proxies
            .iter()
            .map(|p| svg::Series {
                name: p.clone(),
                points: sizes.iter().map(|(v, b)| (*b, f(p, v, *b))).collect(),
            })
            .collect()
    };
    let tput = series(&|p, v, b| m.median_of("b", v, p, |r| r.rps) * b / 1e6);
    let cpu = series(&|p, v, _| m.median_of("b", v, p, |r| r.cpu));
    let max_cpu = cpu
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let max_tput = tput
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let lin_ticks = |max: f64| -> Vec<(f64, String)> {
        let step = 10f64.powf((max / 5.0).log10().floor()).max(1e-3);
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|k| k * step)
            .find(|s| max / s <= 6.0)
            .unwrap_or(step * 10.0);
        (0..=((max / step).ceil() as usize))
            .map(|i| (i as f64 * step, format!("{}", i as f64 * step)))
            .collect()
    };
    svg::document(&[
        svg::Chart {
            title: "(b) throughput over HTTPS".into(),
            x: svg::Axis {
                label: "response body size".into(),
                ticks: ticks.clone(),
                log: true,
            },
            y: svg::Axis {
                label: "MB/s".into(),
                ticks: lin_ticks(max_tput),
                log: false,
            },
            series: tput,
        },
        svg::Chart {
            title: "(b) proxy CPU per request".into(),
            x: svg::Axis {
                label: "response body size".into(),
                ticks,
                log: true,
            },
            y: svg::Axis {
                label: "CPU-µs per request".into(),
                ticks: decades(1.0, max_cpu * 10.0, ""),
                log: true,
            },
            series: cpu,
        },
    ])
}

/// (g): latency against percentile, per proxy, at each offered load.
fn latency_chart(rows: &[Row]) -> String {
    let nines = |q: f64| if q >= 1.0 { 4.5 } else { -(1.0 - q).log10() };
    let x_ticks: Vec<(f64, String)> = [
        (0.5, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
        (1.0, "max"),
    ]
    .iter()
    .map(|(q, l)| (nines(*q), l.to_string()))
    .collect();
    let mut charts = Vec::new();
    for (var, proxies) in layout(rows, "g") {
        let mut series = Vec::new();
        let mut hi: f64 = 10.0;
        let mut lo: f64 = f64::INFINITY;
        for p in proxies {
            // Each percentile's median over the rounds' results.
            let mut by_q: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for r in rows
                .iter()
                .filter(|r| r.scen == "g" && r.var == var && r.proxy == p)
            {
                let Ok(text) = std::fs::read_to_string(&r.json) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                for pair in v["percentiles"].as_array().into_iter().flatten() {
                    if let (Some(q), Some(us)) = (pair[0].as_f64(), pair[1].as_f64()) {
                        by_q.entry((q * 1e6) as u64).or_default().push(us);
                    }
                }
            }
            let points: Vec<(f64, f64)> = by_q
                .into_iter()
                .map(|(q, v)| (nines(q as f64 / 1e6), median(v).max(1.0)))
                .collect();
            for &(_, y) in &points {
                hi = hi.max(y);
                lo = lo.min(y);
            }
            series.push(svg::Series {
                name: p.to_string(),
                points,
            });
        }
        charts.push(svg::Chart {
            title: if var.contains("lowest") {
                format!("(g) latency at {var} maximum, for all")
            } else {
                format!("(g) latency at {var} of each proxy's maximum")
            },
            x: svg::Axis {
                label: "percentile".into(),
                ticks: x_ticks.clone(),
                log: false,
            },
            y: svg::Axis {
                label: "latency (µs)".into(),
                ticks: decades(if lo.is_finite() { lo } else { 1.0 }, hi * 10.0, ""),
                log: true,
            },
            series,
        });
    }
    svg::document(&charts)
}
