//! Large bodies stream through the edge in both directions without being
//! buffered: 512 MiB up and 512 MiB down over TLS while the edge's peak RSS
//! grows by less than 64 MiB.

use std::io::{Read, Write};

use postern_e2e::backend::{pattern, Backend, Checksum, Reply};
use postern_e2e::client::{get, read_response};
use postern_e2e::{passthrough_app, EdgeBuilder};

const SIZE: u64 = 512 * 1024 * 1024;
const RSS_BUDGET_KIB: u64 = 64 * 1024;

#[test]
fn half_a_gigabyte_each_way_in_bounded_memory() {
    let be = Backend::start(|_| Reply::ok("warm"));
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        be.addr,
        "",
    ));
    let (edge, mut s) = b.start_and_connect("app.example.com");

    assert_eq!(get(&mut s, "app.example.com", "/").text(), "warm");
    let baseline = edge.memory_kib("VmRSS:");

    // Upload: the backend reports length and checksum of what it received.
    write!(
        s,
        "POST /__sink HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .unwrap();
    let mut sent = Checksum::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    while off < SIZE {
        let n = ((SIZE - off) as usize).min(buf.len());
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        sent.update(&buf[..n]);
        s.write_all(&buf[..n]).unwrap();
        off += n as u64;
    }
    let mut pending = Vec::new();
    let r = read_response(&mut s, &mut pending, "POST").unwrap();
    assert_eq!(
        r.text(),
        format!("{} {:016x}", sent.len, sent.hash),
        "upload arrived intact"
    );

    // Download: read the body as it streams, checking every byte.
    write!(
        s,
        "GET /__stream/{SIZE} HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
    )
    .unwrap();
    let head_end = loop {
        if let Some(i) = postern_e2e::backend::find(&pending, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains(&format!("Content-Length: {SIZE}")),
        "{head}"
    );
    let mut got = 0u64;
    let check = |data: &[u8], got: &mut u64| {
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(
                b,
                pattern(*got + i as u64),
                "byte {} differs",
                *got + i as u64
            );
        }
        *got += data.len() as u64;
    };
    let rest = pending[head_end + 4..].to_vec();
    check(&rest, &mut got);
    while got < SIZE {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "download ended early at {got}");
        check(&buf[..n], &mut got);
    }
    assert_eq!(got, SIZE);

    let peak = edge.memory_kib("VmHWM:");
    assert!(
        peak.saturating_sub(baseline) < RSS_BUDGET_KIB,
        "edge RSS grew from {baseline} KiB to a peak of {peak} KiB"
    );
}
