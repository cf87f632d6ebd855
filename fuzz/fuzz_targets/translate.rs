//! Link translation against its specification: the streaming rewriter,
//! whole and in pieces, gives what the naive reference gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_control::url::parse_app_url;
use postern_dataplane::translate::reference::{rewrite, RefApp};
use postern_dataplane::translate::{Stream, Table};

const HOSTS: [&str; 4] = ["a.corp", "ab.corp", "a.corp.x", "b"];
const PATHS: [&str; 4] = ["/", "/p/", "/p/q/", "/pq/"];
const PORTS: [u16; 3] = [80, 443, 8080];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // The first bytes choose up to three apps, and the cut points.
    let (setup, input) = data.split_at(3);
    let mut apps: Vec<RefApp> = Vec::new();
    let mut pairs = Vec::new();
    for (k, &b) in setup.iter().enumerate().take(1 + (setup[0] % 3) as usize) {
        let scheme = if b & 1 == 0 { "http" } else { "https" };
        let host = HOSTS[(b >> 1) as usize % HOSTS.len()].to_string();
        let port = PORTS[(b >> 3) as usize % PORTS.len()];
        let path = PATHS[(b >> 5) as usize % PATHS.len()].to_string();
        if apps
            .iter()
            .any(|a| a.scheme == scheme && a.host == host && a.port == port && a.path == path)
        {
            continue;
        }
        let ext = format!("https://e{k}.example.com/");
        let internal = format!("{scheme}://{host}:{port}{path}");
        pairs.push((
            parse_app_url(&internal, true).unwrap(),
            parse_app_url(&ext, true).unwrap(),
        ));
        apps.push(RefApp {
            scheme,
            host,
            port,
            path,
            ext,
        });
    }
    let table = Table::from_urls(&pairs);
    let want = rewrite(&apps, input);
    let mut whole = Vec::new();
    table.rewrite(input, &mut whole);
    assert_eq!(whole, want, "whole body");
    let step = 1 + setup[1] as usize % 64;
    let mut s = Stream::new();
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        s.feed(&table, piece, &mut out);
        assert!(s.held() <= table.window());
    }
    s.finish(&table, &mut out);
    assert_eq!(out, want, "in pieces of {step}");
});
