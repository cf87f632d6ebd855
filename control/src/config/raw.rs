//! Configuration exactly as written (the TOML file, or an app as JSON
//! through the admin API): serde mirrors of the TOML
//! tables, with unknown keys rejected. Defaults are applied in validation,
//! not here, so that "absent" and "set to the default" stay distinguishable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<Edge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener: Vec<Listener>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate: Vec<Certificate>,
    /// One `[identity_provider]` table, or several `[[identity_provider]]`.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub identity_provider: Vec<IdentityProvider>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app: Vec<App>,
}

/// A table or an array of tables, as a list; the errors are those of the
/// tables themselves (an unknown key is named as such).
fn one_or_many<'de, D>(d: D) -> Result<Vec<IdentityProvider>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let v = serde_json::Value::deserialize(d)?;
    if v.is_array() {
        serde_json::from_value(v).map_err(D::Error::custom)
    } else {
        serde_json::from_value(v)
            .map(|p| vec![p])
            .map_err(D::Error::custom)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_workers: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved_suffixes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_send_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_connect_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_pool_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_inactive_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_removed_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_cert_lifetime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translate_max_decoded_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_source: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tunnel_streams_per_source: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_body_rate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_send_rate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_lifetime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key_rotation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_max_concurrent_streams: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_max_header_list_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_stream_window: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_connection_window: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: String,
    pub scheme: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// `http` listeners: also accept HTTP/2 with prior knowledge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2c: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert_file: String,
    pub key_file: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timeout {
    Word(String),
    Seconds(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HstsSetting {
    Switch(bool),
    Table(HstsTable),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_subdomains: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookie {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_mfa: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sso {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    #[serde(default)]
    pub name: String,
    pub external_url: String,
    pub internal_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internal_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preauth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_timeout: Option<Timeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translate_headers: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translate_body: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate_backend_tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<Cookie>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts: Option<HstsSetting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub homepage_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso: Option<Sso>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_preflight: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_idle_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_forwarded_for: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_link_local: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_encoded_slash: Option<bool>,
}
