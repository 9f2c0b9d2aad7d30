//! The receiver's configuration file. The controller renders it into a Secret for each
//! integration; `dev` builds the same structure from manifests; `receiver --config` reads it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::mapping::{ConflictPolicy, FieldMapping, MatchKey};
use crate::hubspot::Tier;

/// Everything one receiver needs. Contains secrets: it lives in a Secret, never a ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverConfig {
    /// `namespace/name` of the `HubSpotIntegration`, for logs and metrics.
    pub integration: String,
    /// Address the HTTP server listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the event log and file destinations.
    pub data_dir: PathBuf,
    pub hubspot: HubSpotConnection,
    pub webhooks: WebhookConfig,
    /// The ingest API for writes to HubSpot; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestConfig>,
    #[serde(default)]
    pub mappings: Vec<MappingConfig>,
}

/// How external systems write records to HubSpot through the receiver.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestConfig {
    /// Bearer token every ingest request must present.
    pub token: String,
    /// Largest accepted request body.
    #[serde(default = "default_ingest_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig").field("max_body_bytes", &self.max_body_bytes).finish_non_exhaustive()
    }
}

/// How to call HubSpot.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HubSpotConnection {
    pub base_url: String,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub access_token: String,
    #[serde(default)]
    pub tier: Tier,
}

/// How webhook requests are accepted.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// The app's client secret (signature key).
    pub client_secret: String,
    /// Public base URL HubSpot calls, e.g. `https://hooks.example.com`; signatures cover it.
    /// Without it the request's Host header and `http` are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Also accept v1/v2 signatures (requests without v3 headers).
    #[serde(default)]
    pub accept_legacy_signatures: bool,
    /// Largest accepted request body; HubSpot sends at most 100 events per request.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

/// One `PropertyMapping`, with its Secrets resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingConfig {
    /// `namespace/name` of the `PropertyMapping`.
    pub name: String,
    pub object_type: String,
    pub match_key: MatchKey,
    pub fields: Vec<FieldMapping>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Who wins when a field changed on both sides since it last synced.
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    /// External field of ingested records holding when the record changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_timestamp_field: Option<String>,
    /// Systems polled for records to write to HubSpot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
}

/// A source of records for HubSpot, with its Secrets resolved. `Debug` leaves out the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum SourceConfig {
    /// Poll a PostgreSQL table or query for rows whose cursor column grew.
    #[serde(rename_all = "camelCase")]
    Postgres {
        /// Connection string.
        url: String,
        /// Table, optionally schema-qualified; or `query`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table: Option<String>,
        /// A `SELECT` whose rows are the records; or `table`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        cursor_column: String,
        interval_seconds: u32,
    },
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Postgres { table, query, cursor_column, interval_seconds, .. } => f
                .debug_struct("Postgres")
                .field("table", table)
                .field("query", query)
                .field("cursor_column", cursor_column)
                .field("interval_seconds", interval_seconds)
                .finish_non_exhaustive(),
        }
    }
}

impl MappingConfig {
    /// The HubSpot properties this mapping reads: the match key and every field that flows
    /// to external systems, nothing else.
    pub fn hubspot_properties(&self) -> Vec<String> {
        let mut props: Vec<String> = std::iter::once(self.match_key.hubspot_property.clone())
            .chain(self.fields.iter().filter(|f| f.direction.to_external()).map(|f| f.hubspot_property.clone()))
            .collect();
        props.sort();
        props.dedup();
        props
    }
}

/// A destination with its Secrets resolved. `Debug` leaves out secrets and connection URLs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum SinkConfig {
    /// POST JSON batches, HMAC-signed when a secret is given.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_secret: Option<String>,
    },
    /// Append JSON lines to a file (relative paths are under `dataDir`).
    File { path: PathBuf },
    /// Upsert into a PostgreSQL table, guarded by HubSpot's `updatedAt`.
    #[serde(rename_all = "camelCase")]
    Postgres {
        /// Connection string (`postgres://user:password@host/db` or `host=... dbname=...`).
        url: String,
        /// Table, optionally schema-qualified (`crm.contacts`).
        table: String,
        /// Create the table (and its index on `hubspot_object_id`) when it does not exist.
        #[serde(default)]
        create_table: bool,
    },
    /// Publish one message per record to a NATS JetStream subject.
    Nats { url: String, subject: String },
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkConfig::Http { url, signing_secret } => f
                .debug_struct("Http")
                .field("url", url)
                .field("signed", &signing_secret.is_some())
                .finish_non_exhaustive(),
            SinkConfig::File { path } => f.debug_struct("File").field("path", path).finish(),
            SinkConfig::Postgres { table, create_table, .. } => f
                .debug_struct("Postgres")
                .field("table", table)
                .field("create_table", create_table)
                .finish_non_exhaustive(),
            SinkConfig::Nats { subject, .. } => {
                f.debug_struct("Nats").field("subject", subject).finish_non_exhaustive()
            }
        }
    }
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Http { .. } => "http",
            SinkConfig::File { .. } => "file",
            SinkConfig::Postgres { .. } => "postgres",
            SinkConfig::Nats { .. } => "nats",
        }
    }

    /// The destination's `sink` label in metrics and logs: its kind and position, `http-0`.
    pub fn label(&self, index: usize) -> String {
        format!("{}-{index}", self.kind())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_api_version() -> String {
    "v3".into()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
pub fn default_ingest_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

// Secrets never reach a log line through `{:?}`.
impl std::fmt::Debug for HubSpotConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotConnection")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("public_url", &self.public_url)
            .field("accept_legacy_signatures", &self.accept_legacy_signatures)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl HubSpotConnection {
    pub fn client_settings(&self) -> crate::hubspot::ClientSettings {
        crate::hubspot::ClientSettings {
            base_url: self.base_url.clone(),
            api_version: self.api_version.clone(),
            access_token: self.access_token.clone(),
            tier: self.tier,
        }
    }
}

impl ReceiverConfig {
    /// Reads a YAML or JSON config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid receiver config {}: {e}", path.display()))
    }

    /// Path of the embedded event log file.
    pub fn event_log_path(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// Path of the reverse sync store (ingested records waiting for HubSpot, rejections, and
    /// what was written).
    pub fn reverse_store_path(&self) -> PathBuf {
        self.data_dir.join("reverse.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let config: ReceiverConfig = serde_yaml::from_str(
            "integration: ns/crm
dataDir: /data
hubspot: {baseUrl: 'http://h', accessToken: pat-na1-do-not-print}
webhooks: {clientSecret: client-secret-do-not-print}
ingest: {token: ingest-token-do-not-print}
",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("do-not-print"), "{shown}");
        assert!(shown.contains("http://h"));
    }
}
