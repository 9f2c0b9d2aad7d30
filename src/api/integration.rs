//! `HubSpotIntegration`: one HubSpot portal, its credentials, required scopes, webhooks and receiver.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// Condition types set on a `HubSpotIntegration`.
pub mod condition_types {
    pub const READY: &str = "Ready";
    pub const AUTHENTICATED: &str = "Authenticated";
    pub const SCOPES_GRANTED: &str = "ScopesGranted";
    pub const RECEIVER_AVAILABLE: &str = "ReceiverAvailable";
}

/// Declares a HubSpot integration: which portal, with which credentials and scopes, and the
/// webhook receiver that keeps its mapped data in sync.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hubspot.io",
    version = "v1alpha1",
    kind = "HubSpotIntegration",
    namespaced,
    status = "HubSpotIntegrationStatus",
    shortname = "hsi",
    category = "hubspot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Hub","type":"integer","jsonPath":".status.hubId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotIntegrationSpec {
    /// HubSpot account (portal/hub) id this integration is for. When set, the token must
    /// belong to this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<u64>,
    /// Where and how to call the HubSpot API.
    #[serde(default)]
    pub api: ApiSettings,
    /// Credentials used to call HubSpot.
    pub credentials: Credentials,
    /// OAuth scopes the integration needs. Missing ones are listed in the `ScopesGranted`
    /// condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// How HubSpot's webhooks reach the receiver and are verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhookSettings>,
    /// The receiver workload that takes webhooks and syncs data.
    #[serde(default)]
    pub receiver: ReceiverSettings,
}

/// HubSpot API connection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSettings {
    /// Base URL of the HubSpot API. Point it at `hubspot-operator emulator` for tests.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// API path version: `v3` (numbered paths) or a date version such as `2026-03`.
    #[serde(default = "default_api_version")]
    pub version: String,
    /// The account's subscription tier; sizes the request budget until HubSpot's rate-limit
    /// headers are seen. One of free, starter, professional, enterprise, addon.
    #[serde(default)]
    pub tier: crate::hubspot::Tier,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { base_url: default_base_url(), version: default_api_version(), tier: Default::default() }
    }
}

fn default_base_url() -> String {
    "https://api.hubapi.com".into()
}
fn default_api_version() -> String {
    "v3".into()
}

/// Credentials to call HubSpot with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// A private app or service key access token (`pat-…`), read from a Secret.
    pub private_app_token: SecretKeyRef,
}

/// Webhook verification and delivery settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSettings {
    /// The app's client secret, which HubSpot uses to sign webhook requests.
    pub client_secret: SecretKeyRef,
    /// Public URL HubSpot calls (for example `https://hooks.example.com/webhooks/hubspot`).
    /// Signatures cover the URL HubSpot called, so set this when a proxy or ingress sits in
    /// front of the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// The receiver StatefulSet rendered for this integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSettings {
    /// Container image of the receiver. Defaults to the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of receiver pods. Each pod keeps its own event log, so a delivery HubSpot repeats
    /// to another pod is deduplicated only by the destinations (idempotency key); one pod is
    /// the recommended setting.
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Compute resources of the receiver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// The PersistentVolumeClaim each receiver pod keeps its event log on (`data-<name>-receiver-<n>`).
    /// Immutable, as a StatefulSet's volume claim templates are: to grow the volume, resize the
    /// PVC itself if its storage class allows expansion. The PVC outlives the integration, so
    /// acknowledged events that were not yet delivered are never deleted with it.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "storage is immutable: a StatefulSet's volume claim templates cannot change"
    }]))]
    pub storage: ReceiverStorage,
    /// The ingest API (`POST /ingest/{namespace}/{mapping}`), through which external systems
    /// write records to HubSpot. Off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestSettings>,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            resources: None,
            storage: ReceiverStorage::default(),
            ingest: None,
        }
    }
}

/// The receiver's ingest API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestSettings {
    /// Secret key holding the bearer token callers of the ingest API must present.
    pub token_secret_ref: SecretKeyRef,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_ingest_max_body_bytes")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_body_bytes: u64,
}

fn default_ingest_max_body_bytes() -> u64 {
    4 * 1024 * 1024
}

fn default_replicas() -> i32 {
    1
}

/// The receiver's persistent volume for its embedded event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStorage {
    /// Size of the volume, as a Kubernetes quantity such as `1Gi`. The log holds events only
    /// until every destination accepted them, so it stays small unless a destination is down.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(
        pattern = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
    ))]
    pub size: String,
    /// StorageClass of the volume; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for ReceiverStorage {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

fn default_storage_size() -> String {
    "1Gi".into()
}

/// Observed state of a `HubSpotIntegration`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotIntegrationStatus {
    /// `Ready`, `Authenticated`, `ScopesGranted` and `ReceiverAvailable`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// HubSpot account id the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_id: Option<u64>,
    /// Scopes the token has been granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_scopes: Vec<String>,
    /// Required scopes the token lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_scopes: Vec<String>,
    /// In-cluster URL of the receiver's webhook endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_url: Option<String>,
}
