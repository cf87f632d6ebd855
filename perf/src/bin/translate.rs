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

use postern_dataplane::translate::{Stream, Table};
use postern_perf::fixtures::{page, table};

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
