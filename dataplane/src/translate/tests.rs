use postern_control::url::parse_app_url;
use postern_control::url::AppUrl;

use super::reference::{rewrite as naive, RefApp as Naive};
use super::{url_ends, Form, Stream, Table, FORMS};

fn url(s: &str) -> AppUrl {
    parse_app_url(s, true).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn table(pairs: &[(&str, &str)]) -> Table {
    let v: Vec<_> = pairs.iter().map(|(i, e)| (url(i), url(e))).collect();
    Table::from_urls(&v)
}

fn whole(t: &Table, input: &str) -> String {
    let mut out = Vec::new();
    t.rewrite(input.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

fn streamed(t: &Table, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut s = Stream::new();
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let c = c.clamp(at, input.len());
        s.feed(t, &input[at..c], &mut out);
        assert!(s.held() <= t.window(), "held {} > window", s.held());
        at = c;
    }
    s.feed(t, &input[at..], &mut out);
    s.finish(t, &mut out);
    out
}

#[test]
fn plain_escaped_and_percent_forms() {
    let t = table(&[("http://app.corp/", "https://app.example.com/")]);
    assert_eq!(
        whole(&t, r#"<a href="http://app.corp/x">"#),
        r#"<a href="https://app.example.com/x">"#
    );
    assert_eq!(
        whole(&t, r#"{"u":"http:\/\/app.corp\/api"}"#),
        r#"{"u":"https:\/\/app.example.com\/api"}"#
    );
    assert_eq!(
        whole(&t, "/login?next=http%3A%2F%2Fapp.corp%2Fhome"),
        "/login?next=https%3A%2F%2Fapp.example.com%2Fhome"
    );
    assert_eq!(
        whole(&t, "/login?next=http%3a%2f%2fapp.corp%2fhome"),
        "/login?next=https%3A%2F%2Fapp.example.com%2Fhome"
    );
}

#[test]
fn scheme_and_host_are_case_insensitive_but_paths_are_not() {
    let t = table(&[("http://app.corp/App/", "https://app.example.com/")]);
    assert_eq!(
        whole(&t, "HTTP://APP.Corp/App/x"),
        "https://app.example.com/x"
    );
    assert_eq!(whole(&t, "http://app.corp/app/x"), "http://app.corp/app/x");
}

#[test]
fn host_boundaries() {
    let t = table(&[
        ("http://app.corp/", "https://app.example.com/"),
        ("http://app.corp:8080/", "https://alt.example.com/"),
    ]);
    for same in [
        "http://app.corp.evil/",
        "http://app.corp-x/",
        "http://app.corpx/",
        "http://xapp.corp/",
        "http://app.corp:81/",
        "http://app.corp@evil.example/",
        "http://app.corp:8080@evil.example/",
        "xhttp://app.corp/",
        "http://app.corp:080/",
        "http://app.corp%40evil/",
        "http%3A%2F%2Fapp.corp%40evil/",
        "http%3A%2F%2Fapp.corp%3A81%2F",
    ] {
        assert_eq!(whole(&t, same), same, "{same}");
    }
    assert_eq!(
        whole(&t, "(http://app.corp:8080/a) 'http://app.corp:80/b'"),
        "(https://alt.example.com/a) 'https://app.example.com/b'"
    );
    assert_eq!(
        whole(&t, "http%3A%2F%2Fapp.corp%3A8080%2Fa"),
        "https%3A%2F%2Falt.example.com%2Fa"
    );
    // Host alone, with its query, at the very end.
    assert_eq!(
        whole(
            &t,
            "\"http://app.corp\" http://app.corp?q=1 http://app.corp"
        ),
        "\"https://app.example.com\" https://app.example.com?q=1 https://app.example.com"
    );
}

#[test]
fn longest_internal_path_wins_and_trimmed_prefixes_match_at_url_end() {
    let t = table(&[
        ("http://app.corp/", "https://root.example.com/"),
        ("http://app.corp/hr/", "https://hr.example.com/"),
        ("http://app.corp/hr/payroll/", "https://pay.example.com/p/"),
    ]);
    assert_eq!(
        whole(
            &t,
            "http://app.corp/hr/payroll/run http://app.corp/hr/x http://app.corp/y"
        ),
        "https://pay.example.com/p/run https://hr.example.com/x https://root.example.com/y"
    );
    assert_eq!(
        whole(&t, "'http://app.corp/hr' 'http://app.corp/hr/payroll?x'"),
        "'https://hr.example.com' 'https://pay.example.com/p?x'"
    );
    // "/hrx" is another path under the root app.
    assert_eq!(
        whole(&t, "http://app.corp/hrx"),
        "https://root.example.com/hrx"
    );
}

#[test]
fn wildcard_apps_keep_the_label() {
    let t = table(&[
        ("http://*.corp/", "https://*.example.com/"),
        ("https://hr.corp:8443/", "https://people.example.com/"),
    ]);
    assert_eq!(
        whole(
            &t,
            "http://Wiki.corp/a https://hr.corp:8443/b http://a.b.corp/ http://.corp/"
        ),
        "https://Wiki.example.com/a https://people.example.com/b http://a.b.corp/ http://.corp/"
    );
    assert_eq!(
        whole(&t, r"http:\/\/wiki.corp\/x"),
        r"https:\/\/wiki.example.com\/x"
    );
}

#[test]
fn external_ports_and_paths_are_written() {
    let t = table(&[("http://app.corp/", "https://edge.example.com:8443/app/")]);
    assert_eq!(
        whole(&t, "http://app.corp/x http%3A%2F%2Fapp.corp http:\\/\\/app.corp"),
        "https://edge.example.com:8443/app/x https%3A%2F%2Fedge.example.com%3A8443%2Fapp https:\\/\\/edge.example.com:8443\\/app"
    );
}

#[test]
fn a_url_split_anywhere_is_found() {
    let t = table(&[("http://app.corp:8080/base/", "https://app.example.com/")]);
    let input = b"aa http://app.corp:8080/base/x bb http%3A%2F%2Fapp.corp%3A8080%2Fbase cc";
    let want = whole(&t, std::str::from_utf8(input).unwrap());
    assert_eq!(
        want,
        "aa https://app.example.com/x bb https%3A%2F%2Fapp.example.com cc"
    );
    for i in 0..=input.len() {
        for j in i..=input.len() {
            let got = streamed(&t, input, &[i, j]);
            assert_eq!(String::from_utf8(got).unwrap(), want, "cuts {i} {j}");
        }
    }
    // One byte at a time.
    let cuts: Vec<usize> = (0..input.len()).collect();
    assert_eq!(String::from_utf8(streamed(&t, input, &cuts)).unwrap(), want);
}

#[test]
fn endless_host_is_not_held() {
    let t = table(&[("http://app.corp/", "https://app.example.com/")]);
    let mut input = b"http://".to_vec();
    input.extend(std::iter::repeat_n(b'a', 100_000));
    let cuts: Vec<usize> = (1..input.len()).step_by(997).collect();
    assert_eq!(streamed(&t, &input, &cuts), input);
}

#[test]
fn url_end_rules() {
    assert_eq!(url_ends(b"a", 1, Form::Plain, true), Some(true));
    assert_eq!(url_ends(b"a", 1, Form::Plain, false), None);
    assert_eq!(url_ends(b"\"", 0, Form::Plain, false), Some(true));
    assert_eq!(url_ends(b"%3F", 0, Form::Percent, false), Some(true));
    assert_eq!(url_ends(b"%3a", 0, Form::Percent, false), Some(false));
    assert_eq!(url_ends(b"%3", 0, Form::Percent, false), None);
    assert_eq!(url_ends(b"%20", 0, Form::Plain, false), Some(false));
}

// ---- property test: streaming == naive whole-body reference ----

/// Small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

#[test]
fn streaming_matches_the_naive_reference_over_random_inputs() {
    let hosts = ["a.corp", "ab.corp", "a.corp.x", "b", "q-1.corp"];
    let paths = ["/", "/p/", "/p/q/", "/pq/"];
    let schemes = ["http", "https"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        // Random apps (exact hosts), distinct internal prefixes.
        let mut apps: Vec<Naive> = Vec::new();
        let mut pairs = Vec::new();
        for k in 0..1 + rng.below(5) {
            let scheme = rng.pick(&schemes);
            let host = rng.pick(&hosts).to_string();
            let port = rng.pick(&[80u16, 443, 8080]);
            let path = rng.pick(&paths).to_string();
            if apps
                .iter()
                .any(|a| a.scheme == scheme && a.host == host && a.port == port && a.path == path)
            {
                continue;
            }
            let ext = format!("https://e{k}.example.com{}", rng.pick(&["/", "/x/"]));
            let int = format!("{scheme}://{host}:{port}{path}");
            pairs.push((url(&int), url(&ext)));
            apps.push(Naive {
                scheme,
                host,
                port,
                path,
                ext,
            });
        }
        let t = Table::from_urls(&pairs);
        // Random input: spellings of the apps' prefixes (whole or cut
        // short, case flipped), near misses and filler bytes.
        let mut input = Vec::new();
        for _ in 0..rng.below(40) {
            match rng.below(6) {
                0..=2 => {
                    let a = &apps[rng.below(apps.len())];
                    let form = rng.pick(&FORMS);
                    let port = if rng.below(2) == 0 {
                        format!(":{}", a.port)
                    } else {
                        String::new()
                    };
                    let scheme = if rng.below(4) == 0 { "http" } else { a.scheme };
                    let s = format!("{scheme}://{}{port}{}", a.host, a.path);
                    let mut enc = Vec::new();
                    form.encode(&s, &mut enc);
                    let cut = if rng.below(3) == 0 {
                        rng.below(enc.len() + 1)
                    } else {
                        enc.len()
                    };
                    enc.truncate(cut);
                    if rng.below(3) == 0 {
                        enc.make_ascii_uppercase();
                    }
                    input.extend_from_slice(&enc);
                }
                3 => input.extend_from_slice(rng.pick(&[
                    &b"http://"[..],
                    b"https:\\/\\/",
                    b"%3A",
                    b"%2F",
                    b"@",
                    b".evil",
                ])),
                _ => {
                    for _ in 0..rng.below(4) {
                        input.push(rng.pick(b"x\"' /\\:.%-?0a\n"));
                    }
                }
            }
        }
        let want = naive(&apps, &input);
        let mut got = Vec::new();
        t.rewrite(&input, &mut got);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "round {round}: input {:?}",
            String::from_utf8_lossy(&input)
        );
        for _ in 0..8 {
            let mut cuts: Vec<usize> = (0..rng.below(12))
                .map(|_| rng.below(input.len() + 1))
                .collect();
            cuts.sort_unstable();
            let got = streamed(&t, &input, &cuts);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "round {round}: cuts {cuts:?} input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn wildcard_output_does_not_depend_on_chunking() {
    let t = table(&[
        ("http://*.corp/", "https://*.example.com/"),
        ("http://x.corp/deep/", "https://deep.example.com/"),
    ]);
    let mut rng = Rng(7);
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..rng.below(30) {
            let piece: &[u8] = rng.pick(&[
                &b"http://x.corp/deep/"[..],
                b"http://abc.corp/",
                b"HTTP%3A%2F%2Fq.CORP%2F",
                b"http:\\/\\/z.corp",
                b"http://",
                b".corp",
                b"\"",
                b"x",
                b"/",
            ]);
            input.extend_from_slice(piece);
        }
        let mut want = Vec::new();
        t.rewrite(&input, &mut want);
        let mut cuts: Vec<usize> = (0..rng.below(10))
            .map(|_| rng.below(input.len() + 1))
            .collect();
        cuts.sort_unstable();
        assert_eq!(streamed(&t, &input, &cuts), want);
    }
}

#[test]
fn every_pair_search_finds_the_same_pairs_and_copies_the_same_bytes() {
    let mut rng = Rng(99);
    for _ in 0..2000 {
        let len = rng.below(200);
        let buf: Vec<u8> = (0..len).map(|_| rng.pick(b":/\\%3ax")).collect();
        let from = rng.below(len + 1);
        let want =
            (from..len.saturating_sub(1)).find(|&i| super::scan::is_pair(buf[i], buf[i + 1]));
        let want_out = &buf[from..want.unwrap_or(len)];
        let mut out = Vec::new();
        assert_eq!(super::copy_to_pair(&buf, from, &mut out), want);
        assert_eq!(out, want_out);
        #[cfg(target_arch = "x86_64")]
        {
            // The SSE2 blocks, as on a CPU without AVX2.
            let mut out = Vec::new();
            let (hit, at) = super::scan::simd::copy_sse2(&buf, from, &mut out);
            if hit {
                assert_eq!(Some(at), want);
            } else {
                assert!(want.is_none_or(|w| w >= at));
                assert_eq!(out, &buf[from..at]);
            }
        }
    }
}
