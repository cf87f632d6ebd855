//! The configuration file exactly as written: serde mirrors of the TOML
//! tables, with unknown keys rejected. Defaults are applied in validation,
//! not here, so that "absent" and "set to the default" stay distinguishable.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub edge: Option<Edge>,
    #[serde(default)]
    pub listener: Vec<Listener>,
    #[serde(default)]
    pub certificate: Vec<Certificate>,
    pub identity_provider: Option<IdentityProvider>,
    #[serde(default)]
    pub app: Vec<App>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub workers: Option<usize>,
    pub pin_workers: Option<bool>,
    pub state_dir: Option<String>,
    #[serde(default)]
    pub reserved_suffixes: Vec<String>,
    pub tls_handshake_timeout: Option<u64>,
    pub request_header_timeout: Option<u64>,
    pub keepalive_timeout: Option<u64>,
    pub client_send_timeout: Option<u64>,
    pub backend_connect_timeout: Option<u64>,
    pub upstream_pool_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: String,
    pub scheme: String,
    pub public_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert_file: String,
    pub key_file: String,
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Timeout {
    Word(String),
    Seconds(i64),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HstsSetting {
    Switch(bool),
    Table(HstsTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsTable {
    pub max_age: Option<u64>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookie {
    pub http_only: Option<bool>,
    pub secure: Option<bool>,
    pub persistent: Option<bool>,
    pub same_site: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub email_domains: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    pub require_mfa: Option<bool>,
    #[serde(default)]
    pub source_cidrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sso {
    pub headers: Option<bool>,
    pub assertion: Option<bool>,
    pub user_claim: Option<String>,
    pub email_claim: Option<String>,
    pub groups_claim: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    #[serde(default)]
    pub name: String,
    pub external_url: String,
    pub internal_url: String,
    #[serde(default)]
    pub internal_servers: Vec<String>,
    pub sticky: Option<String>,
    pub internal_protocol: Option<String>,
    pub preauth: Option<String>,
    pub connector_group: Option<String>,
    pub backend_timeout: Option<Timeout>,
    pub translate_headers: Option<bool>,
    pub translate_body: Option<bool>,
    pub validate_backend_tls: Option<bool>,
    pub backend_ca_file: Option<String>,
    pub cookie: Option<Cookie>,
    pub hsts: Option<HstsSetting>,
    pub homepage_url: Option<String>,
    pub access: Option<Access>,
    pub sso: Option<Sso>,
    pub cors_preflight: Option<String>,
    pub websocket: Option<bool>,
    pub enabled: Option<bool>,
}
