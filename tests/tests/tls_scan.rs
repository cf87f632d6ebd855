//! The edge's TLS as two independent scanners see it: testssl.sh (Debian
//! package `testssl.sh`) and sslyze's check against Mozilla's
//! "intermediate" configuration (PyPI `sslyze`, in its own virtualenv,
//! found through `SSLYZE` or on PATH). `.ci/run` installs both.
//!
//! Neither scanner's exit status says whether it found something, so the
//! tests read their JSON.

use std::path::PathBuf;
use std::process::Command;

use postern_e2e::backend::Backend;
use postern_e2e::{passthrough_app, Edge, EdgeBuilder, TempDir};

/// An edge, its backend, and the PEM of the CA that issued its
/// certificate.
fn edge() -> (Edge, Backend, String) {
    let be = Backend::hello();
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        be.addr,
        "",
    ));
    let ca = b.pki.ca_pem();
    (b.start(), be, ca)
}

fn tool(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| panic!("{name} is not installed (.ci/run installs it; or set {env})"))
}

/// Findings of testssl about protocols, ciphers and vulnerabilities.
#[test]
fn testssl_finds_no_old_protocol_no_non_aead_cipher_and_no_vulnerability() {
    let (edge, _be, _) = edge();
    let dir = TempDir::new("testssl");
    let json = dir.path().join("testssl.json");
    let out = Command::new(tool("TESTSSL", "testssl"))
        .args([
            "--quiet",
            "--warnings",
            "off",
            "--color",
            "0",
            "--protocols",
            "--each-cipher",
            "--vulnerable",
            "--jsonfile",
        ])
        .arg(&json)
        .arg(edge.https.to_string())
        .output()
        .expect("testssl runs");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let field = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or("").to_string();
    let mut problems = Vec::new();
    let mut ciphers = 0;
    let mut protocols = 0;
    for f in &findings {
        let (id, severity, finding) = (field(f, "id"), field(f, "severity"), field(f, "finding"));
        match id.as_str() {
            "SSLv2" | "SSLv3" | "TLS1" | "TLS1_1" => {
                protocols += 1;
                if !finding.contains("not offered") {
                    problems.push(format!("{id}: {finding}"));
                }
            }
            "TLS1_2" | "TLS1_3" => {
                protocols += 1;
                if !finding.starts_with("offered") {
                    problems.push(format!("{id}: {finding}"));
                }
            }
            _ if id.starts_with("cipher-") || id.starts_with("cipher_x") => {
                ciphers += 1;
                let aead = ["GCM", "CHACHA20", "CCM"]
                    .iter()
                    .any(|a| finding.to_ascii_uppercase().contains(a));
                if !aead {
                    problems.push(format!("non-AEAD cipher {id}: {finding}"));
                }
            }
            _ => {}
        }
        if matches!(severity.as_str(), "MEDIUM" | "HIGH" | "CRITICAL") {
            problems.push(format!("{severity} {id}: {finding}"));
        }
    }
    assert_eq!(protocols, 6, "every protocol was probed: {text}");
    assert!(ciphers > 0, "ciphers were listed: {text}");
    assert!(problems.is_empty(), "testssl: {problems:#?}");
}

/// sslyze's Mozilla "intermediate" check passes.
#[test]
fn sslyze_passes_the_mozilla_intermediate_configuration() {
    let (edge, _be, ca) = edge();
    let dir = TempDir::new("sslyze");
    let json = dir.path().join("sslyze.json");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let target = format!("app.example.com:{}{{127.0.0.1}}", edge.https.port());
    let out = Command::new(tool("SSLYZE", "sslyze"))
        .args(["--mozilla_config=intermediate", "--certinfo_ca_file"])
        .arg(&ca_file)
        .arg("--json_out")
        .arg(&json)
        .arg(&target)
        .output()
        .expect("sslyze runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_else(|e| panic!("sslyze wrote no JSON ({e}): {text}"));
    let scans = report["server_scan_results"].as_array().unwrap();
    assert_eq!(scans.len(), 1, "{text}");
    assert_eq!(scans[0]["scan_status"], "COMPLETED", "{text}");
    assert!(text.contains(": OK - Compliant."), "{text}");
    assert!(out.status.success(), "{text}");
}
