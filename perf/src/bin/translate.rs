//! `postern-translate-bench`: link-translation throughput, in GB/s per core.
//!
//! Runs the edge's streaming rewriter (the same `translate` module the
//! binary uses) over a realistic HTML page — markup, text, external links,
//! and, in the "links" variant, one internal link per ~1 KiB — fed in
//! pieces of 4 KiB and 64 KiB, with 1, 10 and 100 published apps. Pin it
//! to one CPU (`taskset -c 0`) for a per-core figure.
//!
//! Usage:
//!   postern-translate-bench [SECONDS_PER_CASE]
//!   postern-translate-bench --write-page PATH INTERNAL_URL
//!       writes the page with links to INTERNAL_URL, for
//!       scripts/bench-translate.sh.
//!   postern-translate-bench --passes N
//!       translates the page with links N times (100 apps, 16 KiB pieces)
//!       and exits: a fixed workload for `valgrind --tool=callgrind`, whose
//!       instruction counts are repeatable where times are not.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use postern_control::url::parse_app_url;
use postern_dataplane::translate::{Stream, Table};

const PAGE: usize = 256 * 1024;

/// About 256 KiB of HTML; with `internal`, one link to it per ~1 KiB.
fn page(internal: Option<&str>) -> Vec<u8> {
    let mut out = String::with_capacity(PAGE + 4096);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Quarterly report</title>\n");
    out.push_str("<link rel=\"stylesheet\" href=\"https://cdn.example.net/css/site.min.css\">\n</head><body>\n");
    let mut i = 0;
    while out.len() < PAGE - 1200 {
        out.push_str(&format!(
            "<div class=\"row\" id=\"r{i}\"><h2>Section {i}</h2>\n<p>Expenses for cost centre {i} rose by {}% against the \
             previous quarter; see the <a href=\"https://docs.example.net/policy/{i}\">travel policy</a> and the \
             attached statement. Totals include value added tax where it applies and exclude items still under \
             review by the finance team. Claims submitted after the closing date are carried over to the next \
             period and appear there with their original submission date, so that the audit trail stays intact \
             for the regional controllers who sign off each cost centre before the books are closed. Questions \
             about a line go to the cost centre's owner first; disputes that stay open for more than thirty days \
             are escalated to the finance business partner of the region.</p>\n\
             <ul class=\"meta\"><li>Owner: finance operations</li><li>Status: reviewed</li><li>Region: EMEA</li></ul>\n\
             <table><tr><td>{i}</td><td>{}.00</td><td>EUR</td></tr></table>\n",
            i % 17,
            i * 31 % 1000
        ));
        match internal {
            Some(base) => out.push_str(&format!(
                "<p><a href=\"{base}reports/{i}\">Report {i}</a></p></div>\n"
            )),
            None => out.push_str(&format!(
                "<p><a href=\"/reports/{i}\">Report {i}</a></p></div>\n"
            )),
        }
        i += 1;
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

/// `n` apps: the first at `first`, the rest at http://app<N>.corp/.
fn table(n: usize, first: &str) -> Table {
    let mut pairs = Vec::new();
    for k in 0..n {
        let int = if k == 0 {
            first.to_string()
        } else {
            format!("http://app{k}.corp/")
        };
        let ext = format!("https://app{k}.example.com/");
        pairs.push((
            parse_app_url(&int, false).expect("valid internal URL"),
            parse_app_url(&ext, false).expect("valid external URL"),
        ));
    }
    Table::from_urls(&pairs)
}

/// GB/s of translating `input` in pieces of `piece` bytes, best of three
/// runs of about `secs` / 3 each.
fn measure(t: &Table, input: &[u8], piece: usize, secs: f64) -> (f64, u64) {
    let mut out = Vec::with_capacity(input.len() * 2);
    let mut best = 0f64;
    let mut links = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let mut bytes = 0u64;
        while start.elapsed() < Duration::from_secs_f64(secs / 3.0) {
            for _ in 0..16 {
                out.clear();
                let mut s = Stream::new();
                for c in input.chunks(piece) {
                    s.feed(t, c, &mut out);
                }
                s.finish(t, &mut out);
                links = s.tally.links;
                black_box(&out);
                bytes += input.len() as u64;
            }
        }
        best = best.max(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    (best, links)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write-page") {
        let (Some(path), Some(internal)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: postern-translate-bench --write-page PATH INTERNAL_URL");
            std::process::exit(2);
        };
        if let Err(e) = std::fs::write(path, page(Some(internal))) {
            eprintln!("postern-translate-bench: {path}: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--passes") {
        let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
        let first = "http://app0.corp/";
        let input = page(Some(first));
        let t = table(100, first);
        let mut out = Vec::with_capacity(input.len() * 2);
        let mut links = 0;
        for _ in 0..n {
            out.clear();
            let mut s = Stream::new();
            for c in input.chunks(16 * 1024) {
                s.feed(&t, c, &mut out);
            }
            s.finish(&t, &mut out);
            links += s.tally.links;
            black_box(&out);
        }
        println!("{n} passes over {} bytes, {links} links", input.len());
        return;
    }
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1.5);
    let first = "http://app0.corp/";
    let with_links = page(Some(first));
    let without = page(None);
    println!(
        "link translation, streaming rewriter, one core; page {} KiB (best of 3)",
        with_links.len() / 1024
    );
    println!(
        "{:>5} {:>10} {:>7} {:>10} {:>8}",
        "apps", "page", "piece", "GB/s", "links"
    );
    for apps in [1, 10, 100] {
        let t = table(apps, first);
        for (name, input) in [("links", &with_links), ("none", &without)] {
            for piece in [4096, 65536] {
                let (gbs, links) = measure(&t, input, piece, secs);
                println!(
                    "{apps:>5} {name:>10} {:>6}K {gbs:>10.2} {links:>8}",
                    piece / 1024
                );
            }
        }
    }
}
