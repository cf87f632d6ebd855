//! Line charts as plain SVG: axes, ticks, one polyline per series and a
//! legend. Two small charts do not justify a plotting library and its
//! font stack; the output is text that any browser shows and any diff
//! reads.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    /// Points in data units; x positions are given by the caller's scale.
    pub points: Vec<(f64, f64)>,
}

pub struct Axis {
    pub label: String,
    /// Tick positions (data units) and their labels.
    pub ticks: Vec<(f64, String)>,
    pub log: bool,
}

pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 560.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn scale(v: f64, log: bool) -> f64 {
    if log {
        v.max(1e-9).log10()
    } else {
        v
    }
}

/// The range of an axis over every point and tick, in scaled units.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        let s = scale(v, log);
        if s.is_finite() {
            lo = lo.min(s);
            hi = hi.max(s);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// Renders `chart` into a group placed at (`dx`, `dy`).
fn group(out: &mut String, chart: &Chart, dx: f64, dy: f64) {
    let (x0, x1) = range(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(chart.x.ticks.iter().map(|t| t.0)),
        chart.x.log,
    );
    let (mut y0, y1) = range(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(chart.y.ticks.iter().map(|t| t.0)),
        chart.y.log,
    );
    if !chart.y.log {
        y0 = y0.min(0.0);
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| dx + LEFT + (scale(x, chart.x.log) - x0) / (x1 - x0) * pw;
    let py = |y: f64| dy + TOP + ph - (scale(y, chart.y.log) - y0) / (y1 - y0) * ph;
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        dx + LEFT,
        dy + 22.0,
        esc(&chart.title)
    );
    let _ = write!(
        out,
        r##"<rect x="{}" y="{}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##,
        dx + LEFT,
        dy + TOP
    );
    for (v, label) in &chart.x.ticks {
        let x = px(*v);
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            dy + TOP,
            dy + TOP + ph,
            dy + TOP + ph + 16.0,
            esc(label)
        );
    }
    for (v, label) in &chart.y.ticks {
        let y = py(*v);
        let _ = write!(
            out,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"##,
            dx + LEFT,
            dx + LEFT + pw,
            dx + LEFT - 6.0,
            y + 4.0,
            esc(label)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
        dx + LEFT + pw / 2.0,
        dy + H - 12.0,
        esc(&chart.x.label)
    );
    let _ = write!(
        out,
        r#"<text transform="translate({},{}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"#,
        dx + 16.0,
        dy + TOP + ph / 2.0,
        esc(&chart.y.label)
    );
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                px(x),
                py(y)
            );
        }
        let ly = dy + TOP + 10.0 + i as f64 * 18.0;
        let lx = dx + LEFT + pw + 12.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
}

/// Charts side by side in one SVG document.
pub fn document(charts: &[Chart]) -> String {
    let width = W * charts.len() as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#
    );
    for (i, c) in charts.iter().enumerate() {
        group(&mut out, c, W * i as f64, 0.0);
    }
    out.push_str("</svg>\n");
    out
}
