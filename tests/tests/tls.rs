//! TLS versions, SNI certificate choice and certificate errors, checked
//! with the openssl command-line client and rustls.

use std::io::Write;
use std::process::{Command, Stdio};

use postern_e2e::backend::Backend;
use postern_e2e::client::{self, get};
use postern_e2e::{passthrough_app, Edge, EdgeBuilder};

fn edge() -> (Edge, Backend) {
    let be = Backend::hello();
    let edge = EdgeBuilder::new()
        .app(&format!(
            "name = \"a\"\nexternal_url = \"https://app.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"",
            be.addr
        ))
        .start();
    (edge, be)
}

/// Runs `openssl s_client` with `args` and returns (success, output).
fn s_client(edge: &Edge, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(edge.https.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    // Closing stdin ends the session once the handshake is done.
    let _ = child.stdin.take().unwrap().write_all(b"");
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok =
        out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[test]
fn tls12_and_tls13_handshakes_succeed_with_aead_suites() {
    let (edge, _be) = edge();
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, out) = s_client(&edge, &[flag, "-servername", "app.example.com"]);
        assert!(ok, "{flag} handshake failed: {out}");
        assert!(
            out.contains(&format!("Protocol  : {version}"))
                || out.contains(&format!("New, {version}")),
            "{out}"
        );
        assert!(
            out.contains("GCM") || out.contains("CHACHA20"),
            "AEAD suite expected: {out}"
        );
    }
}

#[test]
fn tls11_and_older_are_refused() {
    let (edge, _be) = edge();
    // Without SECLEVEL=0 Debian's openssl refuses TLS 1.1 itself, and the
    // test would pass without ever asking the edge.
    for flag in ["-tls1_1", "-tls1"] {
        let (ok, out) = s_client(
            &edge,
            &[
                flag,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-servername",
                "app.example.com",
            ],
        );
        assert!(!ok, "{flag} must be refused: {out}");
        // The client did send its hello, and the refusal is an alert the
        // edge sent back (rustls answers an old-version hello with a
        // handshake_failure or protocol_version alert).
        assert!(
            !out.contains("no protocols available"),
            "client refused by itself: {out}"
        );
        assert!(
            !out.contains("written 0 bytes"),
            "no ClientHello was sent: {out}"
        );
        assert!(
            out.contains("alert handshake failure") || out.contains("alert protocol version"),
            "the edge must answer with an alert: {out}"
        );
    }
}

#[test]
fn sni_picks_exact_then_wildcard_certificate() {
    let (edge, _be) = edge();
    let (ok, out) = s_client(&edge, &["-servername", "app.example.com"]);
    assert!(
        ok && (out.contains("CN = exact") || out.contains("CN=exact")),
        "{out}"
    );
    let (ok, out) = s_client(&edge, &["-servername", "other.example.com"]);
    assert!(
        ok && (out.contains("CN = wildcard") || out.contains("CN=wildcard")),
        "{out}"
    );
}

#[test]
fn verified_clients_reach_the_app_and_resume_sessions() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        be.addr,
        "",
    ));
    let (edge, mut s) = b.start_and_connect("app.example.com");
    assert_eq!(get(&mut s, "app.example.com", "/").text(), "hello");
    let dir = postern_e2e::TempDir::new("sess");
    let sess = dir.path().join("sess.pem");
    let (ok, out) = s_client(
        &edge,
        &[
            "-tls1_2",
            "-servername",
            "app.example.com",
            "-sess_out",
            sess.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = s_client(
        &edge,
        &[
            "-tls1_2",
            "-servername",
            "app.example.com",
            "-sess_in",
            sess.to_str().unwrap(),
        ],
    );
    assert!(
        ok && out.contains("Reused, TLSv1.2"),
        "session resumption: {out}"
    );
}

#[test]
fn garbage_client_hello_does_not_hurt_the_edge() {
    let (mut edge, _be) = edge();
    for junk in [
        &b"\x16\x03\x01\xff\xff garbage"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        &[0u8; 10000][..],
    ] {
        let mut s = client::tcp(edge.https);
        let _ = s.write_all(junk);
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut buf);
    }
    assert!(edge.is_alive());
    let (ok, out) = s_client(&edge, &["-servername", "app.example.com"]);
    assert!(ok, "{out}");
}
