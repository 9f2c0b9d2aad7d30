//! How HubSpot's webhooks are verified, delivered and subscribed to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::SecretKeyRef;

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
    /// The webhook subscriptions the app should have. Empty: derived from this integration's
    /// PropertyMappings (creation, deletion, merge, restore and the propertyChange of each
    /// mapped property, per mapped standard object type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub subscriptions: Vec<WebhookSubscription>,
    /// Most webhook requests HubSpot sends at once (`throttling.maxConcurrentRequests`), 5 to
    /// 1000. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 1000))]
    pub max_concurrent_requests: Option<u32>,
    /// Who applies the subscriptions and settings to HubSpot. Unset: the operator renders them
    /// as `webhooks-hsmeta.json` into the ConfigMap `<integration>-webhooks-hsmeta`, for a
    /// project app's source (private apps: enter them in the app's settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<WebhookManagement>,
}

/// One webhook subscription, in the legacy event type form HubSpot's management API uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!self.eventType.endsWith('.propertyChange') || has(self.propertyName)",
        "message": "propertyChange subscriptions need propertyName"
    },
    {
        "rule": "self.eventType.endsWith('.propertyChange') || !has(self.propertyName)",
        "message": "only propertyChange subscriptions name a property"
    }
]))]
pub struct WebhookSubscription {
    /// `<object>.<event>`: object contact, company, deal or ticket; event creation, deletion,
    /// merge, restore, associationChange, propertyChange or privacyDeletion (contacts), for
    /// example `contact.propertyChange`.
    #[schemars(regex(
        pattern = r"^(contact|company|deal|ticket)\.(creation|deletion|merge|restore|associationChange|propertyChange|privacyDeletion)$"
    ))]
    pub event_type: String,
    /// The property whose changes are sent; required for `propertyChange`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    /// Whether HubSpot sends these events. Default true.
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_true() -> bool {
    true
}

/// How the webhook configuration reaches HubSpot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookManagement {
    /// Apply it through HubSpot's webhooks API (legacy public apps only, authenticated with
    /// the developer API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<WebhookApiManagement>,
}

/// A legacy public app whose webhooks the operator manages through `/webhooks/v3/{appId}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookApiManagement {
    /// The public app's id.
    pub app_id: u64,
    /// Secret key holding the developer account's API key (sent as `?hapikey=`).
    pub developer_api_key: SecretKeyRef,
}
