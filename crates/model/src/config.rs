//! The receiver's configuration file. The controller renders it into a Secret for each
//! integration; `dev` builds the same structure from manifests; `receiver --config` reads it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::integration::{IngestSettings, ReceiverSettings, default_api_version};
use crate::api::mapping::{AssociationMapping, MappedRecords, SyncPolicy};
use hubspot::Tier;

mod endpoints;
mod http;
mod timeline;
pub use endpoints::*;
pub use http::HttpLimits;
pub use timeline::TimelineEventTypeConfig;

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
    /// Timeline event types whose occurrences external systems send (with the ingest token);
    /// the timeline API answers only when `ingest` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline_event_types: Vec<TimelineEventTypeConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the sync worker batches its HubSpot reads.
    #[serde(default)]
    pub sync: SyncConfig,
    /// How long every listener waits for a client's request, and how many clients it holds.
    #[serde(default)]
    pub http: HttpLimits,
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
    pub const DEFAULT_REPLICAS: usize = 1;

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

impl IngestConfig {
    /// Largest accepted request body when the config does not say.
    pub const DEFAULT_MAX_BODY_BYTES: usize = body_limit(IngestSettings::DEFAULT_MAX_BODY_BYTES);

    /// The ingest API guarded by `token`, taking bodies of up to `max_body_bytes`.
    pub fn new(token: String, max_body_bytes: u64) -> Self {
        IngestConfig { token, max_body_bytes: body_limit(max_body_bytes) }
    }
}

/// A body size limit from the API's `u64`; one beyond the address space is no limit.
const fn body_limit(bytes: u64) -> usize {
    if bytes > usize::MAX as u64 { usize::MAX } else { bytes as usize }
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

impl WebhookConfig {
    /// HubSpot sends at most 100 events per request, well under this.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

    /// Requests signed with `client_secret`, checked against their own URL, v3 signatures only.
    pub fn new(client_secret: impl Into<String>) -> Self {
        WebhookConfig {
            client_secret: client_secret.into(),
            public_url: None,
            accept_legacy_signatures: false,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// One `PropertyMapping`, with its Secrets resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingConfig {
    /// `namespace/name` of the `PropertyMapping`.
    pub name: String,
    #[serde(flatten)]
    pub records: MappedRecords,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    #[serde(flatten)]
    pub policy: SyncPolicy,
    /// Systems polled for records to write to HubSpot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// Associations delivered with each record, as array fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associations: Vec<AssociationMapping>,
}

impl MappingConfig {
    /// Mapping `name` of `records`, with the default policy and without destinations, sources
    /// or associations.
    pub fn new(name: impl Into<String>, records: MappedRecords) -> Self {
        MappingConfig {
            name: name.into(),
            records,
            sinks: vec![],
            policy: SyncPolicy::default(),
            sources: vec![],
            associations: vec![],
        }
    }

    /// The HubSpot properties this mapping reads: the match key and every field that flows
    /// to external systems, nothing else.
    pub fn hubspot_properties(&self) -> Vec<String> {
        let records = &self.records;
        let mut props: Vec<String> = std::iter::once(records.match_key.hubspot_property.clone())
            .chain(records.fields.iter().filter(|f| f.direction.to_external()).map(|f| f.hubspot_property.clone()))
            .collect();
        props.sort();
        props.dedup();
        props
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
    WebhookConfig::DEFAULT_MAX_BODY_BYTES
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
    JetStreamLogConfig::DEFAULT_REPLICAS
}
fn default_ack_wait_seconds() -> u64 {
    JetStreamLogConfig::DEFAULT_ACK_WAIT_SECONDS
}
pub fn default_ingest_max_body_bytes() -> usize {
    IngestConfig::DEFAULT_MAX_BODY_BYTES
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
    /// Calls to `base_url` with the static token `access_token`, with the default API
    /// version and tier.
    pub fn new(base_url: impl Into<String>, access_token: impl Into<String>) -> Self {
        HubSpotConnection {
            base_url: base_url.into(),
            api_version: default_api_version(),
            access_token: access_token.into(),
            access_token_file: None,
            tier: Tier::default(),
        }
    }

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
    /// The config of `integration` calling HubSpot through `hubspot`, taking webhooks as
    /// `webhooks` say, keeping its files in `data_dir`; defaults for the rest, no mapping.
    pub fn new(
        integration: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        hubspot: HubSpotConnection,
        webhooks: WebhookConfig,
    ) -> Self {
        ReceiverConfig {
            integration: integration.into(),
            listen: default_listen(),
            status_listen: default_status_listen(),
            data_dir: data_dir.into(),
            hubspot,
            webhooks,
            event_log: EventLogConfig::default(),
            ingest: None,
            mappings: vec![],
            timeline_event_types: vec![],
            admin: AdminConfig::default(),
            sync: SyncConfig::default(),
            http: HttpLimits::default(),
        }
    }

    /// Reads a YAML or JSON config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("invalid receiver config {}: {e}", path.display()))
    }

    /// The config a YAML or JSON text describes, checked as [`load`](Self::load) checks a file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = serde_yaml::from_str(text)?;
        config.admin.validate()?;
        config.hubspot.validate().map_err(anyhow::Error::msg)?;
        config.sync.validate()?;
        config.http.validate()?;
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

    /// Path of the timeline store (occurrences waiting for HubSpot, rejections, and the ids
    /// already delivered).
    pub fn timeline_store_path(&self) -> PathBuf {
        self.data_dir.join("timeline.db")
    }
}

#[cfg(test)]
mod tests;
