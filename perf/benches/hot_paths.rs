//! `cargo bench -p postern-perf`: what the hot paths of one request cost
//! on one core, in ns per operation (the median of 9 batches), measured
//! on the code the edge runs:
//!
//! * HTTP/1.1 head parsing: a browser's request head (with its framing
//!   and field checks) and a backend's response head;
//! * HTTP/1.1 head serialising: the head the backend gets for that
//!   request and the one the client gets for that response, through the
//!   writers the edge uses, with the hop-by-hop filter; per-app
//!   decisions (translated values, pre-authentication cookies) are
//!   measured by the link-scan cases and end to end
//!   (`scripts/callgrind-proxy.sh`);
//! * path normalisation, for a plain path and one with dot segments and
//!   escapes;
//! * link scanning: a 256 KiB page through the streaming rewriter, with
//!   1 and 100 published apps;
//! * opening a session cookie (AES-256-GCM, app-bound);
//! * verifying a bearer JWT (RS256 and ES256: signature and claims).
//!
//! Arguments that are not flags filter the cases by name.

#![forbid(unsafe_code)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use postern_control::jwt::{verify, Expect};
use postern_control::policy::Identity;
use postern_control::session::{CookieKeys, Session};
use postern_dataplane::auth::assertion::Signer;
use postern_dataplane::http1::is_hop_by_hop;
use postern_dataplane::http1::write::{self, ClientFraming, Forwarding};
use postern_dataplane::translate::Stream;
use postern_perf::fixtures::{self, claims, rsa_token, ISSUER, NOW, TEST_RSA};
use postern_perf::ns_per_op;
use ring::signature::RsaKeyPair;

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let report = |name: &str, ns: f64, per: &str| {
        println!("{name:<44} {ns:>12.1} ns{per}");
    };
    println!("hot paths, ns per operation (median of 9 batches)");

    if wanted("http1 request head parse") {
        let ns = ns_per_op(100_000, || {
            let mut buf = BytesMut::from(fixtures::REQUEST_HEAD);
            let head = postern_dataplane::http1::parse_request_or_refuse(&mut buf);
            assert!(matches!(head, Ok(Some(_))));
            black_box(head.ok());
        });
        report(
            "http1 request head parse",
            ns,
            &format!("  ({} bytes)", fixtures::REQUEST_HEAD.len()),
        );
    }
    if wanted("http1 response head parse") {
        let ns = ns_per_op(100_000, || {
            let mut buf = BytesMut::from(fixtures::RESPONSE_HEAD);
            let head = postern_dataplane::http1::parse_response(&mut buf, false);
            assert!(matches!(head, Ok(Some(_))));
            black_box(head.ok());
        });
        report(
            "http1 response head parse",
            ns,
            &format!("  ({} bytes)", fixtures::RESPONSE_HEAD.len()),
        );
    }
    if wanted("http1 request head serialise") {
        // The head a backend gets for the browser's request: request
        // line, Host, the client's end-to-end fields, the forwarding
        // fields and the framing, as the direct hop writes them for an
        // app without translation or pre-authentication.
        let mut buf = BytesMut::from(fixtures::REQUEST_HEAD);
        let head = postern_dataplane::http1::parse_request_or_refuse(&mut buf)
            .ok()
            .flatten()
            .expect("the fixture parses");
        let mut out = Vec::with_capacity(2048);
        let ns = ns_per_op(200_000, || {
            out.clear();
            out.extend_from_slice(&head.method);
            out.push(b' ');
            out.extend_from_slice(b"/internal");
            out.extend_from_slice(&head.path);
            out.extend_from_slice(b" HTTP/1.1\r\n");
            write::field(&mut out, b"Host", b"expenses.corp.internal");
            for h in &head.headers {
                if !is_hop_by_hop(&h.name) && !head.connection_tokens.lists(&h.name) {
                    write::field(&mut out, &h.name, &h.value);
                }
            }
            Forwarding {
                forwarded_for: b"192.0.2.7",
                proto: "https",
                host: &head.authority,
                request_id: "0192f3a4b5c6d7e8-0000002a",
                via: "1.1 postern",
            }
            .write(&mut out);
            write::request_framing(&mut out, head.framing);
            out.extend_from_slice(b"\r\n");
            black_box(&out);
        });
        report(
            "http1 request head serialise",
            ns,
            &format!("  ({} bytes)", out.len()),
        );
    }
    if wanted("http1 response head serialise") {
        // The head a client gets for the backend's response: status
        // line, the backend's end-to-end fields, the request id, framing
        // and connection fields.
        let mut buf = BytesMut::from(fixtures::RESPONSE_HEAD);
        let resp = postern_dataplane::http1::parse_response(&mut buf, false)
            .ok()
            .flatten()
            .expect("the fixture parses");
        let mut out = Vec::with_capacity(2048);
        let ns = ns_per_op(200_000, || {
            out.clear();
            write::status_line(&mut out, resp.status, &resp.reason);
            for h in &resp.headers {
                if !is_hop_by_hop(&h.name) && !resp.connection_tokens.lists(&h.name) {
                    write::field(&mut out, &h.name, &h.value);
                }
            }
            write::field(&mut out, b"X-Request-Id", b"0192f3a4b5c6d7e8-0000002a");
            let encoder = write::response_framing(
                &mut out,
                ClientFraming {
                    framing: resp.framing,
                    status: resp.status,
                    head_request: false,
                    chunked: true,
                    keep_alive: true,
                    http10: false,
                },
            );
            black_box((&out, encoder));
        });
        report(
            "http1 response head serialise",
            ns,
            &format!("  ({} bytes)", out.len()),
        );
    }
    for (name, path) in [
        (
            "path normalise, plain",
            "/expenses/reports/2026/q3?view=summary",
        ),
        (
            "path normalise, dot segments and escapes",
            "/expenses/./reports/2025/../2026/%71%33%20summary.pdf?x=1",
        ),
    ] {
        if wanted(name) {
            let target = Bytes::from_static(path.as_bytes());
            let ns = ns_per_op(200_000, || {
                black_box(postern_dataplane::edge::path::normalize(&target).is_ok());
            });
            report(name, ns, "");
        }
    }
    for apps in [1, 100] {
        let name = format!(
            "link scan, 256 KiB page, {apps} app{}",
            if apps == 1 { "" } else { "s" }
        );
        if wanted(&name) {
            let first = "http://app0.corp/";
            let input = fixtures::page(Some(first));
            let table = fixtures::table(apps, first);
            let mut out = Vec::with_capacity(input.len() * 2);
            let ns = ns_per_op(20, || {
                out.clear();
                let mut s = Stream::new();
                for piece in input.chunks(16 * 1024) {
                    s.feed(&table, piece, &mut out);
                }
                s.finish(&table, &mut out);
                black_box(&out);
            });
            report(
                &name,
                ns,
                &format!("  ({:.2} GB/s)", input.len() as f64 / ns),
            );
        }
    }
    if wanted("session cookie open") {
        let keys = CookieKeys::generate();
        let who = Identity {
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["staff".into(), "finance".into()],
            methods: vec!["pwd".into(), "mfa".into()],
            claims: Vec::new(),
        };
        let session = Session::new("alice", Some("Alice Example".into()), who, NOW + 3600);
        let cookie = keys.seal("hr", &session).expect("a small session seals");
        let ns = ns_per_op(20_000, || {
            assert!(keys.open("hr", &cookie, NOW).is_ok());
        });
        report("session cookie open", ns, "");
    }
    if wanted("jwt verify") {
        let rsa = RsaKeyPair::from_der(TEST_RSA).expect("the test RSA key");
        let es = Signer::generate(None);
        let set = fixtures::key_set(&rsa, &es, &["RS256"]);
        let expect = Expect {
            issuer: ISSUER,
            audiences: &["postern-edge"],
            skew: 60,
            now: NOW,
        };
        for (alg, token) in [
            ("RS256", rsa_token(&rsa, "RS256")),
            ("ES256", es.sign(&claims())),
        ] {
            let ns = ns_per_op(500, || {
                assert!(verify(&token, &set, &expect).is_ok());
            });
            report(&format!("jwt verify {alg}"), ns, "");
        }
    }
}
