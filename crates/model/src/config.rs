//! The receiver's configuration file. The controller renders it into a Secret for each
//! integration; `dev` builds the same structure from manifests; `receiver --config` reads it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::integration::{self, ReceiverSettings, default_api_version};
use crate::api::mapping::{AssociationMapping, ConflictPolicy, FieldMapping, MatchKey, default_backfill};
use hubspot::Tier;

/// Everything one receiver needs. Contains secrets: it lives in a Secret, never a ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverConfig {
    /// `namespace/name` of the `HubSpotIntegration`, for logs and metrics.
    pub integration: String,
    /// Address of the public HTTP server: webhooks, the ingest API and the probes.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the status server: `/metrics`, `/sync/status` and the probes, for Prometheus
    /// and the controller. A port of its own, so that routing the public one publishes neither.
    #[serde(default = "default_status_listen")]
    pub status_listen: SocketAddr,
    /// Directory for the event log and file destinations.
    pub data_dir: PathBuf,
    pub hubspot: HubSpotConnection,
    pub webhooks: WebhookConfig,
    /// Where webhook events are kept until every destination has them.
    #[serde(default)]
    pub event_log: EventLogConfig,
    /// The ingest API for writes to HubSpot; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestConfig>,
    #[serde(default)]
    pub mappings: Vec<MappingConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the sync worker batches its HubSpot reads.
    #[serde(default)]
    pub sync: SyncConfig,
}

/// How the sync worker batches its HubSpot reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncConfig {
    /// Longest time the changed objects of a type gather before they are read when they do
    /// not fill a batch read (100 objects); a full batch is read at once. 0: read what is
    /// pending at once.
    #[serde(default = "default_max_batch_wait_milliseconds")]
    pub max_batch_wait_milliseconds: u64,
}

impl SyncConfig {
    pub const DEFAULT_MAX_BATCH_WAIT_MILLISECONDS: u64 = 1000;
    /// Beyond this, waiting buys nothing at any change rate worth batching.
    pub const MAX_BATCH_WAIT_MILLISECONDS: u64 = 60_000;

    pub fn max_batch_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.max_batch_wait_milliseconds)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_batch_wait_milliseconds <= Self::MAX_BATCH_WAIT_MILLISECONDS,
            "sync.maxBatchWaitMilliseconds {} is above {}",
            self.max_batch_wait_milliseconds,
            Self::MAX_BATCH_WAIT_MILLISECONDS
        );
        Ok(())
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig { max_batch_wait_milliseconds: default_max_batch_wait_milliseconds() }
    }
}

/// The `sync` section of a receiver's config: what its `spec.receiver.sync` sets, defaults for
/// the rest.
impl From<&ReceiverSettings> for SyncConfig {
    fn from(receiver: &ReceiverSettings) -> Self {
        let mut config = SyncConfig::default();
        if let Some(wait) = receiver.sync.as_ref().and_then(|s| s.max_batch_wait_milliseconds) {
            config.max_batch_wait_milliseconds = wait;
        }
        config
    }
}

/// The admin API (dead letters, replays). It changes what destinations receive, so it listens
/// on loopback by default: only `kubectl port-forward` or `kubectl exec` reach it, and those
/// are guarded by Kubernetes RBAC (`pods/portforward`, `pods/exec`). Bound elsewhere it must
/// have a bearer token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Bearer token every admin request must carry (`Authorization: Bearer ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: default_admin_listen(), token: None }
    }
}

impl AdminConfig {
    /// Refuses an admin API reachable from the network without a token.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(token) = &self.token
            && token.trim().is_empty()
        {
            anyhow::bail!("admin.token is empty: set a token or leave it out");
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            anyhow::bail!(
                "admin.listen {} is not a loopback address: set admin.token, or listen on 127.0.0.1",
                self.listen
            );
        }
        Ok(())
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig").field("listen", &self.listen).field("token", &self.token.is_some()).finish()
    }
}

/// The event log backend: `type: embedded` (the default) or `type: jetstream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum EventLogConfig {
    /// A SQLite file in `dataDir`; one receiver.
    #[serde(rename = "embedded")]
    Embedded(LogLimits),
    /// A NATS JetStream stream; several receivers may share it.
    #[serde(rename = "jetstream")]
    JetStream(JetStreamLogConfig),
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig::Embedded(LogLimits::default())
    }
}

/// How much the log may hold before `append` refuses events (and the receiver asks HubSpot to
/// retry later); 0 is no limit. Released events do not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogLimits {
    #[serde(default = "default_max_pending_events")]
    pub max_pending_events: u64,
    /// Bytes of stored event JSON (JetStream: of stored messages, headers included).
    #[serde(default = "default_max_pending_bytes")]
    pub max_pending_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits { max_pending_events: default_max_pending_events(), max_pending_bytes: default_max_pending_bytes() }
    }
}

/// A JetStream event log. `Debug` leaves out the URL, which may carry credentials.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JetStreamLogConfig {
    /// Server URL(s), comma-separated; may carry credentials (`nats://user:password@host:4222`).
    pub url: String,
    /// Stream name; default `HUBSPOT_<namespace>_<name>` of the integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Subject the events are published to; default `hubspot.<namespace>.<name>.events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Copies of the stream in a NATS cluster (1, 3 or 5).
    #[serde(default = "default_stream_replicas")]
    pub replicas: usize,
    #[serde(default = "default_max_pending_events")]
    pub max_pending_events: u64,
    #[serde(default = "default_max_pending_bytes")]
    pub max_pending_bytes: u64,
    /// How long an event taken by a receiver stays its own without a sign of life; after that
    /// (a receiver that died) it goes to another receiver. Live receivers renew their claim.
    #[serde(default = "default_ack_wait_seconds")]
    pub ack_wait_seconds: u64,
}

impl JetStreamLogConfig {
    pub const DEFAULT_ACK_WAIT_SECONDS: u64 = 60;

    pub fn limits(&self) -> LogLimits {
        LogLimits { max_pending_events: self.max_pending_events, max_pending_bytes: self.max_pending_bytes }
    }
}

impl std::fmt::Debug for JetStreamLogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLogConfig")
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("replicas", &self.replicas)
            .field("max_pending_events", &self.max_pending_events)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field("ack_wait_seconds", &self.ack_wait_seconds)
            .finish_non_exhaustive()
    }
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
    /// A static token (private app, service key). Set this or `access_token_file`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_token: String,
    /// A file holding an OAuth access token that something else keeps fresh (the operator's
    /// managed Secret, mounted in the pod); read for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_file: Option<PathBuf>,
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
    /// Search HubSpot at start for what webhooks did not bring (see `sync::backfill`).
    #[serde(default = "default_backfill")]
    pub backfill: bool,
    /// Who wins when a field changed on both sides since it last synced.
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    /// External field of ingested records holding when the record changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_timestamp_field: Option<String>,
    /// Systems polled for records to write to HubSpot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// Associations delivered with each record, as array fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associations: Vec<AssociationMapping>,
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
fn default_status_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8081))
}
/// Loopback only; the port is the admin CLI's default too.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8082";

fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN.parse().expect("a valid socket address")
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_pending_events() -> u64 {
    1_000_000
}
fn default_max_pending_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_max_batch_wait_milliseconds() -> u64 {
    SyncConfig::DEFAULT_MAX_BATCH_WAIT_MILLISECONDS
}
fn default_stream_replicas() -> usize {
    1
}
fn default_ack_wait_seconds() -> u64 {
    JetStreamLogConfig::DEFAULT_ACK_WAIT_SECONDS
}
pub fn default_ingest_max_body_bytes() -> usize {
    usize::try_from(integration::default_ingest_max_body_bytes()).unwrap_or(usize::MAX)
}

// Secrets never reach a log line through `{:?}`.
impl std::fmt::Debug for HubSpotConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotConnection")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("access_token_file", &self.access_token_file)
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
    /// A client with this connection's credentials.
    pub fn client(&self) -> hubspot::HubSpotClient {
        match &self.access_token_file {
            Some(path) => hubspot::HubSpotClient::new_with_token_file(
                self.base_url.clone(),
                self.api_version.clone(),
                self.tier,
                path.clone(),
            ),
            None => hubspot::HubSpotClient::new(self.client_settings()),
        }
    }

    /// Exactly one of `accessToken` and `accessTokenFile`.
    pub fn validate(&self) -> Result<(), String> {
        match (self.access_token.is_empty(), &self.access_token_file) {
            (false, None) | (true, Some(_)) => Ok(()),
            _ => Err("hubspot: set exactly one of accessToken and accessTokenFile".into()),
        }
    }

    pub fn client_settings(&self) -> hubspot::ClientSettings {
        hubspot::ClientSettings {
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
        let config: Self = serde_yaml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid receiver config {}: {e}", path.display()))?;
        config.admin.validate().map_err(|e| anyhow::anyhow!("invalid receiver config {}: {e}", path.display()))?;
        config.hubspot.validate().map_err(|e| anyhow::anyhow!("invalid receiver config {}: {e}", path.display()))?;
        config.sync.validate().map_err(|e| anyhow::anyhow!("invalid receiver config {}: {e}", path.display()))?;
        Ok(config)
    }

    /// Path of the embedded event log file.
    pub fn event_log_path(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// Path of the sync worker's state: delivered checkpoints and backfill cursors.
    pub fn sync_state_path(&self) -> PathBuf {
        self.data_dir.join("sync.db")
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

    /// A config with only what is required.
    const MINIMAL: &str = "integration: ns/crm
dataDir: /data
hubspot: {baseUrl: 'http://h', accessToken: t}
webhooks: {clientSecret: s}
";

    #[test]
    fn debug_output_hides_secrets() {
        let config: ReceiverConfig = serde_yaml::from_str(
            "integration: ns/crm
dataDir: /data
hubspot: {baseUrl: 'http://h', accessToken: pat-na1-do-not-print}
webhooks: {clientSecret: client-secret-do-not-print}
admin: {token: admin-token-do-not-print}
ingest: {token: ingest-token-do-not-print}
",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("do-not-print"), "{shown}");
        assert!(shown.contains("http://h"));
    }

    #[test]
    fn admin_api_stays_on_loopback_unless_it_has_a_token() {
        let admin: AdminConfig = serde_yaml::from_str("{}").unwrap();
        assert!(admin.listen.ip().is_loopback());
        admin.validate().unwrap();
        let open: AdminConfig = serde_yaml::from_str("listen: 0.0.0.0:8082").unwrap();
        let error = open.validate().unwrap_err().to_string();
        assert!(error.contains("admin.token"), "{error}");
        let guarded: AdminConfig = serde_yaml::from_str("{listen: '0.0.0.0:8082', token: s3cret}").unwrap();
        guarded.validate().unwrap();
        let blank: AdminConfig = serde_yaml::from_str("{token: ' '}").unwrap();
        assert!(blank.validate().is_err());
    }

    #[test]
    fn event_log_defaults_to_embedded_and_reads_jetstream() {
        let base = MINIMAL;
        let config: ReceiverConfig = serde_yaml::from_str(base).unwrap();
        assert_eq!(config.event_log, EventLogConfig::Embedded(LogLimits::default()));

        let config: ReceiverConfig = serde_yaml::from_str(&format!(
            "{base}eventLog: {{type: jetstream, url: 'nats://u:pw-do-not-print@nats:4222', replicas: 3, maxPendingEvents: 10}}\n"
        ))
        .unwrap();
        let EventLogConfig::JetStream(jetstream) = &config.event_log else { panic!("{config:?}") };
        assert_eq!((jetstream.replicas, jetstream.max_pending_events), (3, 10));
        assert_eq!(jetstream.max_pending_bytes, default_max_pending_bytes());
        assert_eq!(jetstream.stream, None);
        assert!(!format!("{config:?}").contains("pw-do-not-print"));
        // What the controller writes, the receiver reads back.
        let again: ReceiverConfig = serde_yaml::from_str(&serde_yaml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);

        for bad in ["{type: jetstream}", "{type: kafka}", "{type: embedded, url: 'nats://x'}"] {
            assert!(serde_yaml::from_str::<ReceiverConfig>(&format!("{base}eventLog: {bad}\n")).is_err(), "{bad}");
        }
    }

    /// Config files written before the status listener existed still load.
    #[test]
    fn status_listen_has_a_default_and_is_read_back() {
        let config: ReceiverConfig = serde_yaml::from_str(MINIMAL).unwrap();
        assert_eq!(
            (config.listen.to_string(), config.status_listen.to_string()),
            ("0.0.0.0:8080".into(), "0.0.0.0:8081".into())
        );
        let config: ReceiverConfig = serde_yaml::from_str(&format!("{MINIMAL}statusListen: 127.0.0.1:9100\n")).unwrap();
        assert_eq!(config.status_listen.to_string(), "127.0.0.1:9100");
        let again: ReceiverConfig = serde_yaml::from_str(&serde_yaml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn sync_batch_wait_has_a_default_and_an_upper_bound() {
        let base = MINIMAL;
        let config: ReceiverConfig = serde_yaml::from_str(base).unwrap();
        assert_eq!(config.sync.max_batch_wait(), std::time::Duration::from_secs(1));
        let config: ReceiverConfig =
            serde_yaml::from_str(&format!("{base}sync: {{maxBatchWaitMilliseconds: 250}}\n")).unwrap();
        assert_eq!(config.sync.max_batch_wait_milliseconds, 250);
        config.sync.validate().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, format!("{base}sync: {{maxBatchWaitMilliseconds: 60001}}\n")).unwrap();
        let error = ReceiverConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("maxBatchWaitMilliseconds 60001 is above 60000"), "{error}");
        assert!(serde_yaml::from_str::<ReceiverConfig>(&format!("{base}sync: {{maxBatchWait: 1}}\n")).is_err());
    }

    #[test]
    fn hubspot_takes_exactly_one_of_access_token_and_access_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let load = |hubspot: &str| {
            let path = dir.path().join("config.yaml");
            std::fs::write(
                &path,
                format!("integration: ns/crm\ndataDir: /data\nhubspot: {hubspot}\nwebhooks: {{clientSecret: s}}\n"),
            )
            .unwrap();
            ReceiverConfig::load(&path).map_err(|e| e.to_string())
        };
        let file = load("{baseUrl: 'http://h', accessTokenFile: /var/run/token}").unwrap();
        assert_eq!(file.hubspot.access_token_file, Some(PathBuf::from("/var/run/token")));
        assert_eq!(file.hubspot.access_token, "");
        load("{baseUrl: 'http://h', accessToken: t}").unwrap();
        for bad in ["{baseUrl: 'http://h'}", "{baseUrl: 'http://h', accessToken: t, accessTokenFile: /f}"] {
            let error = load(bad).unwrap_err();
            assert!(error.contains("set exactly one of accessToken and accessTokenFile"), "{bad}: {error}");
        }
    }
}
