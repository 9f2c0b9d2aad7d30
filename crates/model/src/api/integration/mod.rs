//! `HubSpotIntegration`: one HubSpot portal, its credentials, required scopes, webhooks and receiver.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod credentials;
mod event_log;
mod exposure;
mod receiver;
mod status;
mod webhooks;

#[cfg(test)]
mod tests;

pub use credentials::*;
pub use event_log::*;
pub use exposure::*;
pub use receiver::*;
pub use status::*;
pub use webhooks::*;

/// Condition types set on a `HubSpotIntegration`.
pub mod condition_types {
    pub const READY: &str = "Ready";
    pub const AUTHENTICATED: &str = "Authenticated";
    pub const SCOPES_GRANTED: &str = "ScopesGranted";
    pub const RECEIVER_AVAILABLE: &str = "ReceiverAvailable";
    pub const WEBHOOKS_READY: &str = "WebhooksReady";
    pub const RECEIVER_EXPOSED: &str = "ReceiverExposed";
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
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(oldSelf.portalId) || (has(self.portalId) && self.portalId == oldSelf.portalId)",
    "message": "portalId is immutable once set: create a new integration for another portal"
}]))]
pub struct HubSpotIntegrationSpec {
    /// HubSpot account (portal/hub) id this integration is for. When set, the token must
    /// belong to this account; once set it cannot change.
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
