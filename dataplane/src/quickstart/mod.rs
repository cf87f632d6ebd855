//! `postern quickstart`: the whole path on one machine, in one command.
//!
//! Generates a self-signed certificate, writes an ordinary edge
//! configuration file (so what quickstart runs is exactly what `postern
//! edge` would run from that file), starts the bundled sample app, and
//! starts the edge in front of it.

mod sample_app;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// HTTPS port of the edge.
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// HTTP port of the edge.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Port of the bundled sample internal app.
    #[arg(long, default_value_t = 8081)]
    app_port: u16,
    /// Port of the admin API (on 127.0.0.1).
    #[arg(long, default_value_t = 9090)]
    admin_port: u16,
    /// Where the generated certificate and configuration go.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("postern-quickstart"));
    match prepare(&dir, &args) {
        Ok(cfg_path) => {
            let cfg = match postern_control::load_file(&cfg_path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let app_addr = SocketAddr::from(([127, 0, 0, 1], args.app_port));
            if let Err(e) = sample_app::start(app_addr) {
                eprintln!("postern: cannot start the sample app on {app_addr}: {e}");
                return ExitCode::from(1);
            }
            let banner = format!(
                "\nPostern quickstart is running.\n\n  \
                 published app  https://localhost:{https}/  (self-signed certificate: use curl -k)\n  \
                 also on        http://localhost:{http}/  (redirects to https)\n  \
                 internal app   http://localhost:{app}/  (the bundled sample, served in-process)\n  \
                 configuration  {cfg}\n  \
                 admin API      http://127.0.0.1:{admin}/  (token in {state}/admin.token)\n\n  \
                 try: curl -k https://localhost:{https}/\n  \
                 and: POSTERN_STATE_DIR={state} postern apps list\n\n\
                 Press Ctrl-C to stop.",
                https = args.https_port,
                http = args.http_port,
                app = args.app_port,
                cfg = cfg_path.display(),
                admin = args.admin_port,
                state = dir.join("state").display(),
            );
            crate::run(&cfg, &cfg_path, Some(banner))
        }
        Err(e) => {
            eprintln!("postern: quickstart cannot prepare {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

fn prepare(dir: &std::path::Path, args: &Args) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let (cert, key) =
        crate::tls::self_signed(&["localhost", "127.0.0.1"]).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("localhost.pem"), cert)?;
    write_private(&dir.join("localhost.key"), key.as_bytes())?;
    let cfg = format!(
        r#"# Written by `postern quickstart`; `postern edge --config {path}` runs the same edge.
[edge]
workers = 2
admin_address = "127.0.0.1:{admin}"
state_dir = "state"

[[listener]]
address = "127.0.0.1:{https}"
scheme = "https"

[[listener]]
address = "127.0.0.1:{http}"
scheme = "http"

[[certificate]]
cert_file = "localhost.pem"
key_file = "localhost.key"

[[app]]
name = "sample"
external_url = "https://localhost:{https}/"
internal_url = "http://localhost:{app}/"
preauth = "passthrough"
translate_headers = true
translate_body = true
"#,
        path = dir.join("edge.toml").display(),
        https = args.https_port,
        http = args.http_port,
        app = args.app_port,
        admin = args.admin_port,
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
