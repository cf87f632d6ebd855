//! Link translation through the real edge (attack case 39 among them): bodies of every text type and
//! encoding, the responses that must be left alone, the bomb guard, header
//! translation both ways, and the same through a connector's tunnel.

use std::io::Write;
use std::net::SocketAddr;

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, read_response, request};
use postern_e2e::{passthrough_app, Deployment, EdgeBuilder, Hop};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// A page with links to two apps in every form a browser could follow,
/// and near misses that must stay.
fn page(a: SocketAddr, b: SocketAddr) -> String {
    let pa = a.port();
    let pb = b.port();
    format!(
        r#"<html><head><link href="http://127.0.0.1:{pa}/s.css" rel=stylesheet>
<style>body {{ background: url(HTTP://127.0.0.1:{pa}/bg.png) }}</style></head>
<body><a href='http://127.0.0.1:{pb}/doc'>b</a> <a href="http://127.0.0.1:{pa}">home</a>
<script>var c = {{"api":"http:\/\/127.0.0.1:{pa}\/api\/","b":"http:\/\/127.0.0.1:{pb}\/"}};</script>
<a href="/login?next=http%3A%2F%2F127.0.0.1%3A{pa}%2Fhome">login</a>
near misses: http://127.0.0.1:{pa}0/ http://127.0.0.1:{pa}.evil/ http://u@127.0.0.1:{pa}x https://127.0.0.1:{pa}/ xhttp://127.0.0.1:{pa}/
</body></html>"#
    )
}

fn translated_page(a: SocketAddr) -> String {
    let pa = a.port();
    format!(
        r#"<html><head><link href="https://app.example.com/s.css" rel=stylesheet>
<style>body {{ background: url(https://app.example.com/bg.png) }}</style></head>
<body><a href='https://b.example.com/docs/doc'>b</a> <a href="https://app.example.com">home</a>
<script>var c = {{"api":"https:\/\/app.example.com\/api\/","b":"https:\/\/b.example.com\/docs\/"}};</script>
<a href="/login?next=https%3A%2F%2Fapp.example.com%2Fhome">login</a>
near misses: http://127.0.0.1:{pa}0/ http://127.0.0.1:{pa}.evil/ http://u@127.0.0.1:{pa}x https://127.0.0.1:{pa}/ xhttp://127.0.0.1:{pa}/
</body></html>"#
    )
}

fn get_with(
    s: &mut dyn postern_e2e::client::Stream,
    method: &str,
    path: &str,
    extra: &str,
) -> postern_e2e::client::Response {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: app.example.com\r\n{extra}\r\n");
    s.write_all(raw.as_bytes()).unwrap();
    let mut pending = Vec::new();
    read_response(s, &mut pending, method).unwrap()
}

#[test]
fn links_to_every_app_are_translated_in_every_form() {
    for hop in Hop::BOTH {
        links_in_every_form(hop);
    }
}

fn links_in_every_form(hop: Hop) {
    let other = Backend::start(|_| Reply::ok("b"));
    let b_addr = other.addr;
    let be = Backend::start(move |s| {
        let own: SocketAddr = s.header("host").unwrap().parse().unwrap();
        let body = page(own, b_addr);
        let r = Reply::ok(body)
            .header("Content-Type", "text/html; charset=UTF-8")
            .header("Content-Location", &format!("http://{own}/here"))
            .header("ETag", "\"v1\"")
            .header("Accept-Ranges", "bytes");
        if s.target == "/chunked" {
            r.chunked()
        } else {
            r
        }
    });
    let b = EdgeBuilder::new()
        .app(&passthrough_app(
            "a",
            "https://app.example.com/",
            be.addr,
            "translate_body = true",
        ))
        .app(&passthrough_app(
            "b",
            "https://b.example.com/docs/",
            other.addr,
            "",
        ));
    let d = Deployment::start(b, hop);
    let (edge, mut s) = (&d.edge, d.connect("app.example.com"));
    let want = translated_page(be.addr);
    for path in ["/", "/chunked"] {
        let r = get_with(&mut s, "GET", path, "");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), want, "{hop:?} {path}");
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        assert!(r.header("content-length").is_none());
        assert_eq!(r.header("etag").as_deref(), Some("W/\"v1\""));
        assert_eq!(
            r.header("content-location").as_deref(),
            Some("https://app.example.com/here"),
            "{hop:?}"
        );
        assert!(r.header("accept-ranges").is_none());
    }
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    let a = &c["apps"]["a"];
    assert_eq!(a["translated_responses"], 2, "{hop:?} {c}");
    assert_eq!(a["links_translated"], 2 * 7, "{c}");
    let scanned = page(be.addr, b_addr).len() as u64 * 2;
    assert_eq!(a["translated_bytes"].as_u64(), Some(scanned), "{c}");
}

#[test]
fn compressed_bodies_are_decoded_translated_and_encoded_again() {
    for hop in Hop::BOTH {
        compressed_bodies(hop);
    }
}

fn compressed_bodies(hop: Hop) {
    let be = Backend::start(|s| {
        let own: SocketAddr = s.header("host").unwrap().parse().unwrap();
        // A body big enough to span many pieces.
        let text = page(own, own).repeat(200);
        let (coding, body) = match s.target.as_str() {
            "/gzip" => ("gzip", gzip(text.as_bytes())),
            "/deflate" => ("deflate", deflate(text.as_bytes())),
            _ => ("br", brotli(text.as_bytes())),
        };
        Reply::ok(body)
            .header("Content-Type", "text/html")
            .header("Content-Encoding", coding)
            .header("Vary", "Accept-Encoding")
    });
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        be.addr,
        "translate_body = true",
    ));
    let d = Deployment::start(b, hop);
    let mut s = d.connect("app.example.com");
    let want = {
        let one = translated_page(be.addr).replace(
            "https://b.example.com/docs/doc",
            "https://app.example.com/doc",
        );
        one.replace(
            "https:\\/\\/b.example.com\\/docs\\/",
            "https:\\/\\/app.example.com\\/",
        )
        .repeat(200)
    };
    for coding in ["gzip", "deflate", "br"] {
        let r = get_with(
            &mut s,
            "GET",
            &format!("/{coding}"),
            "Accept-Encoding: gzip, deflate, br, zstd\r\n",
        );
        // The backend is never offered a coding the edge cannot decode.
        assert_eq!(
            be.last().header("accept-encoding"),
            Some("gzip, deflate, br")
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding").as_deref(), Some(coding));
        assert_eq!(r.header("vary").as_deref(), Some("Accept-Encoding"));
        let body = decode(Some(coding), &r.body);
        assert_eq!(String::from_utf8(body).unwrap(), want, "{hop:?} {coding}");
        // A client that does not accept the backend's coding gets identity.
        let r = get_with(
            &mut s,
            "GET",
            &format!("/{coding}"),
            "Accept-Encoding: identity\r\n",
        );
        assert!(r.header("content-encoding").is_none(), "{coding}");
        assert_eq!(r.text(), want, "{coding} to identity");
    }
}

#[test]
fn responses_that_must_not_change_are_left_alone_and_counted() {
    let be = Backend::start(|s| {
        let own: SocketAddr = s.header("host").unwrap().parse().unwrap();
        let body = format!("link http://{own}/x");
        let r = Reply::ok(body.clone()).header("Content-Type", "text/html");
        match s.target.as_str() {
            "/range" => Reply::ok(body)
                .status(206)
                .header("Content-Type", "text/html")
                .header("Content-Range", "bytes 0-10/100"),
            "/not-modified" => Reply::ok("").status(304),
            "/no-transform" => r.header("Cache-Control", "public, no-transform"),
            "/image" => Reply::ok(body).header("Content-Type", "image/png"),
            "/utf16" => Reply::ok(body).header("Content-Type", "text/html; charset=UTF-16"),
            "/stacked" => r.header("Content-Encoding", "gzip, br"),
            _ => r,
        }
    });
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        be.addr,
        "translate_body = true",
    ));
    let (edge, mut s) = b.start_and_connect("app.example.com");
    let original = format!("link http://{}/x", be.addr);
    for path in ["/range", "/no-transform", "/image", "/utf16", "/stacked"] {
        let r = get_with(&mut s, "GET", path, "");
        assert_eq!(r.text(), original, "{path}");
        assert_eq!(
            r.header("content-length"),
            Some(original.len().to_string()),
            "{path}"
        );
    }
    let r = get_with(&mut s, "HEAD", "/", "");
    assert_eq!(r.header("content-length"), Some(original.len().to_string()));
    let r = get_with(&mut s, "GET", "/not-modified", "");
    assert_eq!(r.status, 304);
    // And the one that is translated.
    let r = get_with(&mut s, "GET", "/", "");
    assert_eq!(r.text(), "link https://app.example.com/x");
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    let skipped = &c["apps"]["a"]["translate_skipped_by_reason"];
    for (reason, n) in [
        ("partial_content", 1),
        ("no_transform", 1),
        ("content_type", 1),
        ("charset", 1),
        ("content_encoding", 1),
        ("no_body", 2),
    ] {
        assert_eq!(skipped[reason], n, "{reason}: {c}");
    }
    assert_eq!(c["apps"]["a"]["translated_responses"], 1, "{c}");
}

#[test]
fn a_decompression_bomb_is_cut_off_and_the_edge_carries_on() {
    let bomb = gzip(&vec![b'a'; 32 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let be = Backend::start(move |s| {
        if s.target == "/bomb" {
            Reply::ok(bomb.clone())
                .header("Content-Type", "text/html")
                .header("Content-Encoding", "gzip")
        } else {
            Reply::ok("fine").header("Content-Type", "text/plain")
        }
    });
    let b = EdgeBuilder::new()
        .edge("translate_max_decoded_mib = 1")
        .app(&passthrough_app(
            "a",
            "https://app.example.com/",
            be.addr,
            "translate_body = true",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    s.write_all(b"GET /bomb HTTP/1.1\r\nHost: app.example.com\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    assert!(
        read_response(&mut s, &mut pending, "GET").is_err(),
        "the body must end incomplete, never cleanly"
    );
    let mut s = client::tls(edge.https, "app.example.com", roots);
    let r = request(
        &mut s,
        "GET /ok HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.text(), "fine");
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    assert_eq!(c["apps"]["a"]["translate_failed"], 1, "{c}");
    assert!(
        edge.stderr().contains("translate_max_decoded_mib"),
        "the log says which limit stopped it"
    );
}

#[test]
fn headers_are_translated_both_ways() {
    let be = Backend::start(|s| {
        let own = s.header("host").unwrap().to_string();
        Reply::ok("")
            .status(200)
            .header("Content-Location", &format!("http://{own}/int/page"))
            .header("Refresh", &format!("5; url=http://{own}/int/next"))
            .header(
                "Link",
                &format!("<http://{own}/int/s.css>; rel=preload, <https://cdn.example.net/x.js>; rel=preload"),
            )
            .header(
                "Set-Cookie",
                &format!(
                    "sid=1; Domain={}; Path=/int/app; HttpOnly",
                    own.split(':').next().unwrap()
                ),
            )
    });
    let b = EdgeBuilder::new().app(&format!(
        "name = \"a\"\nexternal_url = \"https://app.example.com/\"\ninternal_url = \"http://{}/int/\"\npreauth = \"passthrough\"",
        be.addr
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let r = get_with(
        &mut s,
        "POST",
        "/form",
        "Origin: https://app.example.com\r\nReferer: https://app.example.com/form?x=1\r\nContent-Length: 0\r\n",
    );
    assert_eq!(
        r.header("content-location").as_deref(),
        Some("https://app.example.com/page")
    );
    assert_eq!(
        r.header("refresh").as_deref(),
        Some("5; url=https://app.example.com/next")
    );
    assert_eq!(
        r.header("link").as_deref(),
        Some("<https://app.example.com/s.css>; rel=preload, <https://cdn.example.net/x.js>; rel=preload")
    );
    assert_eq!(
        r.header("set-cookie").as_deref(),
        Some("sid=1; Domain=app.example.com; Path=/app; HttpOnly")
    );
    let seen = be.last();
    assert_eq!(seen.header("origin"), Some(&*format!("http://{}", be.addr)));
    assert_eq!(
        seen.header("referer"),
        Some(&*format!("http://{}/int/form?x=1", be.addr))
    );
}

#[test]
fn an_http10_client_gets_a_translated_body_ended_by_close() {
    let be = Backend::start(|s| {
        let own = s.header("host").unwrap().to_string();
        Reply::ok(format!("go to http://{own}/x")).header("Content-Type", "text/plain")
    });
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        be.addr,
        "translate_body = true",
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    s.write_all(b"GET / HTTP/1.0\r\nHost: app.example.com\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("Connection: close"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\ngo to https://app.example.com/x"),
        "{text}"
    );
}
