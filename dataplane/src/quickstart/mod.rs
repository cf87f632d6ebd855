//! `postern quickstart`: the whole path on one machine, in one command.
//!
//! Generates a self-signed certificate, writes an ordinary edge
//! configuration file (so what quickstart runs is exactly what `postern
//! edge` would run from that file), starts the bundled sample app, starts
//! the edge in front of it, and runs a connector in the same process:
//! registered once with a token from the edge (its identity is kept under
//! the quickstart directory), then dialing the edge's tunnel listener like
//! any other connector. A request therefore takes the real path: edge →
//! tunnel → connector → sample app.
//!
//! A second copy of the sample app is published with `preauth = "oidc"`
//! against the demo OpenID provider (`demo_idp`), which runs in this
//! process only, for one demo user whose password the banner shows: the
//! whole sign-in, in the same command.

pub mod demo_idp;
mod sample_app;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::QuickstartArgs as Args;

/// Where quickstart keeps its files when `--state-dir` is not given.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("postern-quickstart")
}

pub fn run(args: Args) -> ExitCode {
    let dir = args.state_dir.clone().unwrap_or_else(default_dir);
    // A quickstart already running here keeps its certificate and
    // configuration: this one changes nothing.
    if crate::handover::running(&dir) {
        eprintln!(
            "postern: a quickstart is already running with its state in {}; nothing was changed.\n             Use that one, stop it (Ctrl-C) first, or give this one its own --state-dir and ports.",
            dir.display()
        );
        return ExitCode::from(1);
    }
    if args.reset {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => eprintln!(
                "postern: removed the earlier quickstart state in {}",
                dir.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("postern: cannot remove {}: {e}", dir.display());
                return ExitCode::from(1);
            }
        }
    }
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
            let private_addr = SocketAddr::from(([127, 0, 0, 1], args.private_app_port));
            for (addr, signed_in) in [(app_addr, false), (private_addr, true)] {
                if let Err(e) = sample_app::start(addr, signed_in) {
                    eprintln!("postern: cannot start the sample app on {addr}: {e}");
                    return ExitCode::from(1);
                }
            }
            let demo = match start_demo_idp(&dir, &args) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("postern: cannot start the demo OpenID provider: {e}");
                    return ExitCode::from(1);
                }
            };
            let banner = format!(
                "\nPostern quickstart is running.\n\n  \
                 published app  https://localhost:{https}/  (self-signed certificate: use curl -k)\n  \
                 also on        http://localhost:{http}/  (redirects to https)\n  \
                 internal app   http://localhost:{app}/  (the bundled sample, served in-process)\n  \
                 signed-in app  https://private.localhost:{https}/  (sign in as {user}, password {password})\n  \
                 demo provider  http://127.0.0.1:{idp}/  (an OpenID provider that runs only in quickstart)\n  \
                 connector      in-process, tunnels to 127.0.0.1:{tunnel}  (postern connectors list)\n  \
                 configuration  {cfg}\n  \
                 admin API      http://127.0.0.1:{admin}/  (token in {state}/admin.token)\n\n  \
                 try: curl -k https://localhost:{https}/\n  \
                 and: POSTERN_STATE_DIR={state} postern apps list\n  \
                 API: TOKEN=$(curl -s -u {client}:{secret} -d grant_type=password -d username={user} \\\n           \
                 -d password={password} http://127.0.0.1:{idp}/token | sed 's/.*\"id_token\":\"\\([^\"]*\\).*/\\1/')\n       \
                 curl -k -H \"Authorization: Bearer $TOKEN\" https://private.localhost:{https}/api/summary.json\n\n\
                 Press Ctrl-C to stop.",
                https = args.https_port,
                http = args.http_port,
                app = args.app_port,
                idp = args.idp_port,
                user = demo.user,
                password = demo.password,
                client = CLIENT_ID,
                secret = demo.secret,
                cfg = cfg_path.display(),
                admin = args.admin_port,
                tunnel = args.tunnel_port,
                state = dir.display(),
            );
            let connector_dir = dir.join("connector");
            crate::run(
                &cfg,
                &cfg_path,
                Some(banner),
                Some(Box::new(move |control, running| {
                    start_connector(control, running, &connector_dir)
                })),
            )
        }
        Err(e) => {
            eprintln!("postern: quickstart cannot prepare {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// Registers the in-process connector (first run only), starts it, and
/// waits until it holds a tunnel to every edge worker.
fn start_connector(
    control: &std::sync::Arc<crate::admin::Control>,
    running: &crate::runtime::Running,
    dir: &std::path::Path,
) -> Result<(), String> {
    let tunnel = running
        .tunnel_address
        .ok_or("the quickstart configuration has no tunnel listener")?;
    let identity = match crate::connector::state::Identity::load(dir) {
        Ok(id) => id,
        Err(_) => {
            let (_, token) = control
                .create_token("default", 600)
                .map_err(|e| format!("quickstart connector: {e}"))?;
            crate::connector::register(&tunnel.to_string(), &token, dir, None)
                .map_err(|e| format!("quickstart connector: {e}"))?
        }
    };
    let settings = crate::connector::Settings::load(None)?;
    let state_dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("postern-connector".into())
        .spawn(move || {
            let result = crate::connector::run(&state_dir, settings);
            if let Err(e) = &result {
                tracing::error!("quickstart connector stopped: {e}");
            }
            // SIGTERM drained the connector: the quickstart ends with it.
            std::process::exit(i32::from(result.is_err()));
        })
        .map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while control
        .tunnels
        .by_worker(&identity.id, running.workers)
        .contains(&0)
    {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the quickstart connector {} did not connect (revoked? remove {} to register a new one)",
                identity.id,
                dir.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// The demo provider's client id, in the configuration and the banner.
const CLIENT_ID: &str = "postern-quickstart";
const DEMO_USER: &str = "demo";
const CLIENT_SECRET_FILE: &str = "demo-client.secret";
const DEMO_PASSWORD_FILE: &str = "demo-user.password";

struct Demo {
    user: &'static str,
    password: String,
    secret: String,
}

/// A secret kept in the quickstart directory: made on the first run, the
/// same afterwards, so a restart keeps the password the user was shown.
fn kept_secret(path: &std::path::Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let s = postern_control::oidc::random_token(12);
            write_private(path, s.as_bytes())?;
            Ok(s)
        }
    }
}

/// Starts the demo provider on loopback for the signed-in sample app.
fn start_demo_idp(dir: &std::path::Path, args: &Args) -> Result<Demo, String> {
    let secret = kept_secret(&dir.join(CLIENT_SECRET_FILE)).map_err(|e| e.to_string())?;
    let password = kept_secret(&dir.join(DEMO_PASSWORD_FILE)).map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], args.idp_port));
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let app = format!("https://private.localhost:{}/", args.https_port);
    demo_idp::start(
        listener,
        demo_idp::Config {
            issuer: format!("http://127.0.0.1:{}", args.idp_port),
            client: demo_idp::Client {
                id: CLIENT_ID.into(),
                secret: secret.clone(),
                redirect_uris: vec![format!("{app}.postern/callback")],
                post_logout_redirect_uris: vec![app],
            },
            user: demo_idp::User {
                username: DEMO_USER.into(),
                password: password.clone(),
                name: "Demo User".into(),
                email: "demo@example.com".into(),
                groups: vec!["staff".into()],
            },
            id_token_lifetime: 3600,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Demo {
        user: DEMO_USER,
        password,
        secret,
    })
}

fn prepare(dir: &std::path::Path, args: &Args) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    // The configuration names the client secret's file: it exists first.
    kept_secret(&dir.join(CLIENT_SECRET_FILE))?;
    kept_secret(&dir.join(DEMO_PASSWORD_FILE))?;
    let (cert, key) = crate::tls::self_signed(&["localhost", "private.localhost", "127.0.0.1"])
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("localhost.pem"), cert)?;
    write_private(&dir.join("localhost.key"), key.as_bytes())?;
    let cfg = format!(
        r#"# Written by `postern quickstart`; `postern edge --config {path}` runs the same edge.
[edge]
workers = 2
admin_address = "127.0.0.1:{admin}"
# Everything quickstart keeps (this file, the certificate, the app table,
# the admin token, the connector's identity) is in this one directory.
state_dir = "."
# Apps are relayed through connectors; quickstart runs one in-process.
tunnel_address = "127.0.0.1:{tunnel}"

[[listener]]
address = "127.0.0.1:{https}"
scheme = "https"

[[listener]]
address = "127.0.0.1:{http}"
scheme = "http"

[[certificate]]
cert_file = "localhost.pem"
key_file = "localhost.key"

# The demo OpenID provider runs inside `postern quickstart` only: under
# `postern edge` this issuer is unreachable and the "private" app answers
# 503 until it names a real provider.
[identity_provider]
issuer = "http://127.0.0.1:{idp}"
client_id = "{client}"
client_secret_file = "{secret_file}"

[[app]]
name = "sample"
external_url = "https://localhost:{https}/"
internal_url = "http://localhost:{app}/"
preauth = "passthrough"
translate_headers = true
translate_body = true

[[app]]
name = "private"
external_url = "https://private.localhost:{https}/"
internal_url = "http://localhost:{private_app}/"
preauth = "oidc"
translate_headers = true
translate_body = true
sso = {{ headers = true, assertion = true }}
"#,
        path = dir.join("edge.toml").display(),
        https = args.https_port,
        http = args.http_port,
        app = args.app_port,
        private_app = args.private_app_port,
        idp = args.idp_port,
        client = CLIENT_ID,
        secret_file = CLIENT_SECRET_FILE,
        admin = args.admin_port,
        tunnel = args.tunnel_port,
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
