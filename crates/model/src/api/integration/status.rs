//! Observed state of a `HubSpotIntegration`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a `HubSpotIntegration`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotIntegrationStatus {
    /// `Ready`, `Authenticated`, `ScopesGranted`, `ReceiverAvailable`, `WebhooksReady`, and
    /// `ReceiverExposed` while `spec.receiver` asks for an Ingress or HTTPRoute.
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
    /// Hash of the config the receiver pods run with (their `hubspot.io/config-hash`); it
    /// changes when a referenced Secret is rotated or the webhook settings or mappings change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_config_hash: Option<String>,
    /// The last `hubspot.io/reconcile-requested-at` value a full reconcile handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// Ids of the HubSpot webhook subscriptions the operator created (API management); only
    /// these are ever deleted by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_subscription_ids: Vec<String>,
    /// The object the operator last applied to expose the receiver (`Ingress` or `HTTPRoute`,
    /// named `<name>-receiver`); it is deleted once `spec.receiver` no longer asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_exposed_by: Option<ReceiverExposureKind>,
}

/// The kind of object, named `<name>-receiver`, the operator applied to expose the receiver
/// outside the cluster; it deletes that object once `spec.receiver` no longer asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReceiverExposureKind {
    /// A `networking.k8s.io/v1` Ingress.
    Ingress,
    /// A `gateway.networking.k8s.io/v1` HTTPRoute.
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
}
