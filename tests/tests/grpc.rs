//! gRPC through the edge, to a real gRPC server (Python `grpcio`, in the
//! virtualenv `GRPC_PYTHON` names; `.ci/run` makes it): a unary call, a
//! bidirectional stream, an error's trailers, a deadline and a cancel,
//! from clients over TLS (ALPN h2) and over h2c, to backends over h2c and
//! over TLS, through both hops.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use postern_e2e::{free_port, Deployment, EdgeBuilder, Hop, Pki, TempDir};

fn python() -> String {
    std::env::var("GRPC_PYTHON").unwrap_or_else(|_| {
        panic!("GRPC_PYTHON must name a python with grpcio and grpcio-tools (.ci/run makes one)")
    })
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("grpc")
        .join(name)
}

/// The gRPC server, killed on drop.
struct Server {
    child: Child,
    plain: u16,
    tls: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(pki: &Pki, dir: &TempDir) -> Server {
    let (cert, key) = pki.issue("backend", &["127.0.0.1"]);
    let (cert_path, key_path) = (
        dir.path().join("backend.pem"),
        dir.path().join("backend.key"),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let (plain, tls) = (free_port(), free_port());
    let mut child = Command::new(python())
        .arg(script("server.py"))
        .args([plain.to_string(), tls.to_string()])
        .arg(&cert_path)
        .arg(&key_path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gRPC server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the gRPC server did not start");
    Server { child, plain, tls }
}

fn run_client(address: std::net::SocketAddr, authority: &str, mode: &str) -> (bool, String) {
    let out = Command::new(python())
        .arg(script("client.py"))
        .args([&address.to_string(), authority, mode])
        .output()
        .expect("the gRPC client runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn grpc_calls_through_edge_and_connector() {
    let dir = TempDir::new("grpc");
    // The backend's certificate comes from a CA of its own, which the app
    // trusts through backend_ca_file.
    let backend_pki = Pki::new();
    let server = start_server(&backend_pki, &dir);
    let ca = dir.path().join("backend-ca.pem");
    std::fs::write(&ca, backend_pki.ca_pem()).unwrap();
    for hop in Hop::BOTH {
        let b = EdgeBuilder::new()
            .h2c()
            // An h2c backend, for clients over TLS and over h2c.
            .app(&format!(
                "name = \"grpc\"\nexternal_url = \"https://grpc.example.com/\"\ninternal_url = \"http://127.0.0.1:{}/\"\ninternal_protocol = \"h2c\"\npreauth = \"passthrough\"\n",
                server.plain
            ))
            .app(&format!(
                "name = \"grpc-plain\"\nexternal_url = \"http://grpc.example.com/\"\ninternal_url = \"http://127.0.0.1:{}/\"\ninternal_protocol = \"h2c\"\npreauth = \"passthrough\"\n[app.cookie]\nsecure = false\n",
                server.plain
            ))
            // A TLS backend, its certificate for 127.0.0.1 checked.
            .app(&format!(
                "name = \"grpcs\"\nexternal_url = \"https://grpcs.example.com/\"\ninternal_url = \"https://127.0.0.1:{}/\"\ninternal_protocol = \"h2\"\nbackend_ca_file = \"{}\"\npreauth = \"passthrough\"\n",
                server.tls,
                ca.display()
            ));
        let edge_ca = dir.path().join(format!("edge-ca-{hop:?}.pem"));
        std::fs::write(&edge_ca, b.pki.ca_pem()).unwrap();
        let d = Deployment::start(b, hop);
        let ca_file = edge_ca.display().to_string();
        for (address, authority, mode) in [
            (d.edge.https, "grpc.example.com", ca_file.as_str()),
            (d.edge.https, "grpcs.example.com", ca_file.as_str()),
            (d.edge.http, "grpc.example.com", "plain"),
        ] {
            let (ok, text) = run_client(address, authority, mode);
            assert!(
                ok,
                "{hop:?} {authority} ({mode}):\n{text}\nedge:\n{}",
                d.edge.stderr()
            );
        }
    }
}
