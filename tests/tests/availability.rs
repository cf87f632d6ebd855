//! Availability under hostile clients: what a timed-out connection leaves
//! behind (docs/attacks.md, case 51).

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use postern_e2e::backend::Backend;
use postern_e2e::{passthrough_app, EdgeBuilder};

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Whether the peer closed `s` (EOF or reset) within `limit`.
fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Connections that never send a byte are closed when the handshake or
/// request-head deadline passes, on both listeners: their descriptors and
/// buffers are released, not held until the client gives up.
#[test]
fn silent_connections_are_closed_at_their_deadline() {
    let backend = Backend::hello();
    let edge = EdgeBuilder::new()
        .edge("tls_handshake_timeout = 1\nrequest_header_timeout = 1")
        .app(&passthrough_app(
            "a",
            "https://a.example.com/",
            backend.addr,
            "",
        ))
        .start();
    let before = open_fds(edge.pid());
    let mut silent: Vec<TcpStream> = Vec::new();
    for i in 0..100 {
        let addr = if i % 2 == 0 { edge.https } else { edge.http };
        silent.push(TcpStream::connect(addr).unwrap());
    }
    // Every connection is accepted (and so counted) before we look.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(edge.pid()) < before + 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(open_fds(edge.pid()) >= before + 100, "all accepted");
    let start = Instant::now();
    for (i, s) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(6).saturating_sub(start.elapsed());
        assert!(
            closed_by_peer(s, left.max(Duration::from_millis(1))),
            "connection {i} is still open {:?} after its 1 s deadline",
            start.elapsed()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds(edge.pid()) > before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        open_fds(edge.pid()) <= before + 2,
        "the edge still holds {} descriptors (had {before})",
        open_fds(edge.pid())
    );
}
