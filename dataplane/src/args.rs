//! The command line, as clap definitions only: the binary parses it, and
//! the build script renders the same definitions as man pages and shell
//! completions (so it may use nothing but `clap` and `std`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Publish private web apps without opening inbound ports."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the edge, a connector and a sample app on this machine, in one process.
    Quickstart(QuickstartArgs),
    /// Run the edge appliance from a configuration file.
    Edge {
        /// The edge configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print the resulting app table.
    CheckConfig {
        /// The edge configuration (TOML).
        file: PathBuf,
    },
    /// Manage published apps on a running edge.
    Apps {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// Run a connector (inside the private network), or register one.
    Connector(ConnectorArgs),
    /// Connectors registered with this edge.
    Connectors {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// Enrollment tokens for connectors.
    Tokens {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// The running edge at a glance: version, uptime, listeners, apps,
    /// connectors and key counters.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Sample counters like typeperf: CSV rows of Perfmon counter paths.
    Counters {
        #[command(flatten)]
        target: Target,
        /// Time between samples (e.g. 1s, 500ms).
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Number of samples (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// Counter paths, wildcards allowed, e.g. '\Postern Edge(*)\Requests/sec'.
        paths: Vec<String>,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConnectorArgs {
    #[command(subcommand)]
    pub command: Option<ConnectorCommand>,
    /// Where the connector's identity (from `register`) is kept.
    #[arg(long, env = "POSTERN_CONNECTOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Optional connector settings (TOML, `[connector]` table).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// On a first start (no identity in the state directory yet): the
    /// edge's tunnel listener, HOST:PORT, to register with.
    #[arg(long, env = "POSTERN_EDGE", requires = "token")]
    pub edge: Option<String>,
    /// On a first start: the one-time token from `postern tokens create`.
    #[arg(long, env = "POSTERN_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand)]
pub enum ConnectorCommand {
    /// Register with an edge using a one-time enrollment token.
    Register {
        /// The edge's tunnel listener, HOST:PORT.
        #[arg(long)]
        edge: String,
        /// The token printed by `postern tokens create`.
        #[arg(long, env = "POSTERN_ENROLLMENT_TOKEN")]
        token: String,
        #[arg(long)]
        state_dir: PathBuf,
    },
}

/// Which edge a command talks to. Without flags: the state directory in
/// `POSTERN_STATE_DIR`, else `/var/lib/postern` (the packaged edge's),
/// else a running quickstart's; its admin token, and the admin address
/// the edge recorded there.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// Admin API address of the edge (default: the one the edge recorded
    /// in its state directory, else 127.0.0.1:9090).
    #[arg(long, env = "POSTERN_ADMIN", global = true)]
    pub admin: Option<String>,
    /// Admin bearer token (default: read from the state directory).
    #[arg(long, env = "POSTERN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The edge's state directory (default: POSTERN_STATE_DIR, else
    /// /var/lib/postern, else a running quickstart's).
    #[arg(long, env = "POSTERN_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum AppsCommand {
    /// List published apps.
    List,
    /// Show one app's settings.
    Show { name: String },
    /// Publish an app.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Public URL, e.g. https://expenses.example.com/
        #[arg(long)]
        external_url: String,
        /// Internal URL, e.g. http://expenses.corp:8080/
        #[arg(long)]
        internal_url: String,
        /// `oidc` (default) or `passthrough`.
        #[arg(long)]
        preauth: Option<String>,
        /// `default`, `long` or seconds.
        #[arg(long)]
        backend_timeout: Option<String>,
        /// Connector group (default `default`).
        #[arg(long)]
        connector_group: Option<String>,
        /// Any other settings, as a JSON object merged into the app.
        #[arg(long)]
        settings: Option<String>,
    },
    /// Change settings of one app: KEY=VALUE pairs. A VALUE that reads as
    /// JSON (a number, true, false, an object, a list, a quoted string)
    /// is taken as such, anything else as text; a dotted KEY sets a
    /// nested field (cookie.secure=false); KEY=null removes a setting,
    /// back to its default.
    Set {
        name: String,
        /// e.g. backend_timeout=long translate_body=true hsts.max_age=600
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Stop publishing an app.
    Remove { name: String },
    /// Serve an app again.
    Enable { name: String },
    /// Answer 503 for an app, keeping its configuration.
    Disable { name: String },
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Create a single-use enrollment token for a connector.
    Create {
        /// Connector group the connector will join.
        #[arg(long, default_value = "default")]
        group: String,
        /// Lifetime, e.g. 1h, 30m, 2d (default 1h, at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List enrollment tokens (never their secrets).
    List,
    /// Revoke an unused token.
    Revoke { id: String },
}

#[derive(clap::Subcommand)]
pub enum ConnectorsCommand {
    /// List registered connectors with their group and state.
    List,
    /// Revoke a connector: its tunnels close now and it can never
    /// reconnect or renew its certificate.
    Revoke {
        /// Connector id (from `postern connectors list`).
        id: String,
    },
}

#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// HTTPS port of the edge.
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// HTTP port of the edge.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Port of the bundled sample internal app.
    #[arg(long, default_value_t = 8081)]
    pub app_port: u16,
    /// Port of the sample app's signed-in copy.
    #[arg(long, default_value_t = 8082)]
    pub private_app_port: u16,
    /// Port of the demo OpenID provider (on 127.0.0.1).
    #[arg(long, default_value_t = 8445)]
    pub idp_port: u16,
    /// Port of the admin API (on 127.0.0.1).
    #[arg(long, default_value_t = 9090)]
    pub admin_port: u16,
    /// Port of the tunnel listener connectors dial (on 127.0.0.1).
    #[arg(long, default_value_t = 8444)]
    pub tunnel_port: u16,
    /// Where the generated certificate and configuration go.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Start afresh: delete what an earlier quickstart left (certificate,
    /// configuration, app table, connector identity) first.
    #[arg(long)]
    pub reset: bool,
}
