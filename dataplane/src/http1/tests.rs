use bytes::BytesMut;

use super::body::{ChunkedDecoder, Decoded, Framing};
use super::*;

fn req(raw: &str) -> Result<Option<RequestHead>, HttpError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    parse_request(&mut buf)
}

fn status(raw: &str) -> u16 {
    match req(raw) {
        Ok(Some(_)) => 200,
        Ok(None) => 0,
        Err(e) => e.status,
    }
}

#[test]
fn framing_of_valid_requests() {
    let h = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Length(5));
    let h = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    let h = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Length(0));
    assert!(!h.framing.has_body());
    let h = req("GET / HTTP/1.1\nHost: A.Example.com:8443\n\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        h.host, "a.example.com",
        "bare LF accepted, host lower-cased without port"
    );
    let h = req("GET http://x.example.com/p?q HTTP/1.1\r\nHost: other\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.host.as_str(), &h.path[..]),
        ("x.example.com", &b"/p?q"[..])
    );
    assert!(
        req("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none(),
        "partial"
    );
}

#[test]
fn smuggling_shapes_are_refused() {
    let cases = [
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\ntransfer_encoding: chunked\r\n\r\n", 400),
        // RFC 9112 §3.2: an invalid Host is a 400 even when an absolute
        // URL names the authority.
        ("GET http://a.example.com/ HTTP/1.1\r\nHost: bad host\r\n\r\n", 400),
        ("GET http://a.example.com/ HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("GET http://a.example.com/ HTTP/1.1\r\nHost: \r\n\r\n", 400),
        ("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        ("TRACE http://a.example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    ];
    for (raw, want) in cases {
        assert_eq!(status(raw), want, "{raw:?}");
    }
}

#[test]
fn limits_give_431_and_414() {
    let long_url = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&long_url), 414);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status(&many), 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
        "v".repeat(70 * 1024)
    );
    assert_eq!(status(&big), 431, "incomplete head over 64 KiB");
    let unfinished_url = format!("GET /{}", "a".repeat(9000));
    assert_eq!(
        status(&unfinished_url),
        414,
        "a URL over 8 KiB is refused before it ends"
    );
}

#[test]
fn h2c_upgrade_is_not_relayed() {
    let h = req(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    assert!(h.upgrade.is_none());
    let h = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.upgrade.as_deref(), Some(&b"websocket"[..]));
}

#[test]
fn a_response_head_over_64_kib_is_refused_however_it_arrives() {
    let head = format!(
        "HTTP/1.1 200 OK\r\nX: {}\r\nContent-Length: 0\r\n\r\n",
        "v".repeat(65 * 1024)
    );
    let mut whole = BytesMut::from(head.as_bytes());
    assert_eq!(parse_response(&mut whole, false).unwrap_err().status, 502);
    let mut partial = BytesMut::from(&head.as_bytes()[..head.len() - 4]);
    assert_eq!(parse_response(&mut partial, false).unwrap_err().status, 502);
}

#[test]
fn response_framing_errors_are_502() {
    let bad = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    ];
    for raw in bad {
        let mut b = BytesMut::from(raw.as_bytes());
        assert_eq!(
            parse_response(&mut b, false).unwrap_err().status,
            502,
            "{raw:?}"
        );
    }
    let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..]);
    let r = parse_response(&mut b, true).unwrap().unwrap();
    assert_eq!(r.framing, Framing::Empty, "HEAD responses have no body");
    assert_eq!(&b[..], b"hello");
}

/// Decodes with the chunked decoder, feeding `input` in pieces of `step`.
fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, &'static str> {
    let mut d = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match d.decode(&mut buf)? {
            Decoded::Data(x) => out.extend_from_slice(&x),
            Decoded::End => return Ok(out),
            Decoded::NeedMore => {
                if fed >= input.len() {
                    return Err("truncated");
                }
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunked_decoder_is_strict() {
    assert_eq!(
        decode_all(b"5\r\nhello\r\n0\r\n\r\n", 100).unwrap(),
        b"hello"
    );
    assert_eq!(
        decode_all(b"5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n", 1).unwrap(),
        b"hello"
    );
    assert_eq!(
        decode_all(b"0\r\nT: v\tw\r\nX-Sum:\r\n\r\n", 2).unwrap(),
        b""
    );
    for bad in [
        &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
        b"+5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        // Trailer lines are field lines or nothing.
        b"0\r\nno colon here\r\n\r\n",
        b"0\r\n: empty name\r\n\r\n",
        b"0\r\nBad Name: v\r\n\r\n",
        b"0\r\nT : v\r\n\r\n",
        b"0\r\nT: v\r\n folded\r\n\r\n",
        b"0\r\nT: a\x01b\r\n\r\n",
        b"0\r\nT: a\x00b\r\n\r\n",
        b"0\r\nT: a\rb\r\n\r\n",
    ] {
        assert!(
            decode_all(bad, 3).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000));
    assert!(decode_all(long_ext.as_bytes(), 512).is_err());
}

/// Property: for random bodies split into random chunks, decoding the
/// encoded stream gives the body back whatever the read sizes.
#[test]
fn chunked_round_trip_any_split() {
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let len = (rand() % 3000) as usize;
        let body: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        let mut wire = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let n = (1 + rand() % 700) as usize;
            let end = (i + n).min(body.len());
            body::Encoder::Chunked.encode(&body[i..end], &mut wire);
            i = end;
        }
        body::Encoder::Chunked.finish(&mut wire);
        let step = 1 + (rand() % 64) as usize;
        assert_eq!(decode_all(&wire, step).unwrap(), body);
    }
}

#[test]
fn the_plain_authority_fast_path_agrees_with_the_general_parser() {
    use super::{general_authority, plain_authority};
    let fixed: &[&[u8]] = &[
        b"app.example.com",
        b"App.Example.COM:8443",
        b"app.example.com.",
        b"app.example.com..",
        b"app..example.com",
        b".app.example.com",
        b"-app.example.com",
        b"app-.example.com",
        b"a_b.example.com",
        b"app.example.com:",
        b"app.example.com:0",
        b"app.example.com:65535",
        b"app.example.com:65536",
        b"app.example.com:099999",
        b"app.example.com:+80",
        b"app:80:80",
        b"127.0.0.1:80",
        b"[::1]:8443",
        b"*.example.com",
        b"",
        b":80",
        b".",
        b"app.example.com.:443",
    ];
    let long_label = [b'a'; 64];
    let mut cases: Vec<Vec<u8>> = fixed.iter().map(|c| c.to_vec()).collect();
    cases.push(long_label.to_vec());
    cases.push(long_label[..63].to_vec());
    cases.push([&long_label[..63], &b"."[..]].concat().repeat(4));
    // Short strings over the bytes that matter, exhaustively enough to
    // cover every boundary: 5 symbols, lengths up to 5.
    let alphabet = b"a-.:9";
    for len in 0..=5u32 {
        for mut n in 0..5usize.pow(len) {
            let mut c = Vec::new();
            for _ in 0..len {
                c.push(alphabet[n % 5]);
                n /= 5;
            }
            cases.push(c);
        }
    }
    for c in &cases {
        if let Some(fast) = plain_authority(c) {
            assert_eq!(
                fast,
                general_authority(c),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
    }
    assert_eq!(
        plain_authority(b"App.Example.COM:8443"),
        Some(Some("app.example.com".to_string()))
    );
}

#[test]
fn numbers_are_written_like_fmt_writes_them() {
    for n in [0u64, 1, 9, 10, 99, 100, 65535, 1 << 32, u64::MAX] {
        let mut d = Vec::new();
        super::push_decimal(&mut d, n);
        assert_eq!(d, n.to_string().into_bytes());
        let mut h = Vec::new();
        super::push_hex(&mut h, n);
        assert_eq!(h, format!("{n:x}").into_bytes());
    }
}
