//! `postern check-config` and start-up errors: every problem names where it is.

use std::process::Command;

use postern_e2e::{postern_bin, EdgeBuilder, TempDir};

fn check(config: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(postern_bin())
        .arg("check-config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_file_prints_the_table() {
    let b = EdgeBuilder::new().app(
        "name = \"expenses\"\nexternal_url = \"https://expenses.example.com/\"\ninternal_url = \"http://expenses.corp:8080/\"\npreauth = \"passthrough\"\nbackend_timeout = \"long\"",
    );
    let (_dir, path, _, _) = b.write();
    let (ok, out, err) = check(&path);
    assert!(ok, "{err}");
    assert!(
        out.contains("expenses")
            && out.contains("http://expenses.corp:8080/")
            && out.contains("180s"),
        "{out}"
    );
    assert!(
        out.contains("*.example.com"),
        "certificate names listed: {out}"
    );
}

#[test]
fn errors_name_the_app_field_and_reason() {
    let b = EdgeBuilder::new()
        .app("name = \"expenses\"\nexternal_url = \"https://expenses.example.com\"\ninternal_url = \"http://expenses.corp:8080/\"\npreauth = \"passthrough\"")
        .app("name = \"hr\"\nexternal_url = \"https://hr.example.com/\"\ninternal_url = \"gopher://hr.corp/\"\npreauth = \"passthrough\"\nbackend_timeout = 7200");
    let (_dir, path, _, _) = b.write();
    let (ok, _, err) = check(&path);
    assert!(!ok);
    assert!(
        err.contains("app \"expenses\": external_url:") && err.contains("trailing slash"),
        "{err}"
    );
    assert!(
        err.contains("app \"hr\": internal_url:") && err.contains("http:// or https://"),
        "{err}"
    );
    assert!(
        err.contains("app \"hr\": backend_timeout: 7200 seconds is out of range"),
        "{err}"
    );
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let b = EdgeBuilder::new().app(
        "name = \"a\"\nexternal_url = \"https://a.example.com/\"\ninternal_url = \"http://a.corp/\"\npreauth = \"passthrough\"\nhtst = true",
    );
    let (_dir, path, _, _) = b.write();
    let (ok, _, err) = check(&path);
    assert!(!ok);
    assert!(
        err.contains("unknown field `htst`") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn bad_certificate_files_are_named_at_start_up() {
    let b = EdgeBuilder::new().app(
        "name = \"a\"\nexternal_url = \"https://a.example.com/\"\ninternal_url = \"http://a.corp/\"\npreauth = \"passthrough\"",
    );
    let (dir, path, _, _) = b.write();
    std::fs::write(
        dir.path().join("exact.key"),
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = Command::new(postern_bin())
        .args(["edge", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("exact.key"), "names the file: {err}");
    // A key from a different certificate.
    let other = TempDir::new("otherkey");
    let (_, wrong_key) = b.pki.issue("x", &["x.example.com"]);
    std::fs::write(other.path().join("k"), &wrong_key).unwrap();
    std::fs::copy(other.path().join("k"), dir.path().join("exact.key")).unwrap();
    let out = Command::new(postern_bin())
        .args(["edge", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("exact.key") && err.contains("does not match"),
        "{err}"
    );
    std::fs::write(dir.path().join("exact.pem"), "").unwrap();
    let (ok, _, err) = check(&path);
    assert!(
        !ok && err.contains("exact.pem") && err.contains("no CERTIFICATE"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_a_start_up_error() {
    let b = EdgeBuilder::new();
    let (_dir, path, https, _) = b.write();
    let _hold = std::net::TcpListener::bind(https).unwrap();
    let out = Command::new(postern_bin())
        .args(["edge", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("cannot listen on {https}")), "{err}");
}
