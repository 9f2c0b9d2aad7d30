//! Where the receiver keeps the events it acknowledged until they are delivered.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::SecretKeyRef;

/// The event log backend; exactly one of the fields is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.embedded) != has(self.jetstream)",
    "message": "set exactly one of embedded and jetstream"
}]))]
pub struct EventLogSettings {
    /// A SQLite file on each receiver pod's volume (`spec.receiver.storage`), fsync'd before
    /// HubSpot gets its answer. One receiver pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedLogSettings>,
    /// A NATS JetStream stream (file storage), stored before HubSpot gets its answer. Receiver
    /// pods share it, so `replicas` may be more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamLogSettings>,
}

/// Limits of the embedded event log. When the log holds this much, webhook requests are
/// answered 503 with `Retry-After` until the sync worker has delivered some.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedLogSettings {
    /// Most events not yet delivered everywhere; 0 is no limit. Default 1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_events: Option<u64>,
    /// Most bytes of event JSON not yet delivered everywhere; 0 is no limit. Default 268435456
    /// (256 MiB); keep it well under `storage.size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_bytes: Option<u64>,
}

/// A JetStream event log. The receiver creates its streams and consumer (or updates their
/// settings): the event stream (work-queue retention, one message per event, `Nats-Msg-Id` the
/// delivery identity), `<stream>_seen` (the identities of the last 72 hours, for duplicate
/// detection that survives server restarts) and the durable consumer `sync-worker`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.url) != has(self.urlSecret)",
    "message": "set exactly one of url and urlSecret"
}]))]
pub struct JetStreamLogSettings {
    /// Server URL, e.g. `nats://nats.messaging:4222` (comma-separate several). Set this or
    /// `urlSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret key holding the server URL, for URLs that carry credentials
    /// (`nats://user:password@host:4222`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<SecretKeyRef>,
    /// Stream name. Default `hubspot_<namespace>_<name>` of this integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^.*>/\\\s]+$"))]
    pub stream: Option<String>,
    /// Subject the events are published to. Default `hubspot.<namespace>.<name>.events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Copies of the streams in the NATS cluster: 1 (default), 3 or 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<u8>,
    /// Most events the stream holds before refusing new ones (`discard: new`); 0 is no limit.
    /// Default 1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_events: Option<u64>,
    /// Most bytes the stream holds before refusing new messages; 0 is no limit. Default
    /// 268435456 (256 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_bytes: Option<u64>,
}
