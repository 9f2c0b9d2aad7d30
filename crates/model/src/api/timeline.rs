//! `HubSpotTimelineEventType`: a kind of event external systems put on HubSpot records'
//! timelines, and how HubSpot learns of it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;
pub use super::mapping::IntegrationRef;
pub use super::property::{DeletionPolicy, LastError};

/// Condition types set on a `HubSpotTimelineEventType`.
pub mod condition_types {
    pub const READY: &str = "Ready";
    /// Rendered registration: the app event's `*-hsmeta.json` is in its ConfigMap.
    pub const RENDERED: &str = "Rendered";
    /// API registration, or a private app's custom event definition: HubSpot holds it as declared.
    pub const REGISTERED: &str = "Registered";
}

/// Most tokens HubSpot keeps on one event template or app event type.
pub const MAX_TOKENS: usize = 500;

/// A kind of event external systems log on HubSpot records (onboarding completed, feature
/// used, invoice paid), with the tokens each occurrence carries. Occurrences are sent to the
/// integration's receiver at `POST /timeline/{namespace}/{name}`; how they reach HubSpot (app
/// events, legacy timeline events or custom events) follows from the integration's kind of app.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "hubspot.io",
    version = "v1alpha1",
    kind = "HubSpotTimelineEventType",
    namespaced,
    status = "HubSpotTimelineEventTypeStatus",
    shortname = "hste",
    category = "hubspot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Object","type":"string","jsonPath":".spec.objectType"}"#,
    printcolumn = r#"{"name":"Registration","type":"string","jsonPath":".spec.registration"}"#,
    printcolumn = r#"{"name":"Template","type":"string","jsonPath":".status.templateId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.registration != 'Api' || has(self.legacyApp)")
        .message("registration Api needs legacyApp (the public app's id and developer API key)"),
    validation = Rule::new("self.registration == 'Api' || !has(self.legacyApp)")
        .message("legacyApp is only used with registration Api"),
    validation = Rule::new("has(self.headerTemplate) || has(self.detailTemplate)")
        .message("set headerTemplate, detailTemplate or both: HubSpot shows an event by its templates"),
)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotTimelineEventTypeSpec {
    /// The `HubSpotIntegration` (same namespace) whose portal, credentials, request budget and
    /// receiver carry the events.
    pub integration_ref: IntegrationRef,
    /// The kind of record the events land on. Immutable: HubSpot never moves an event type to
    /// another object type.
    #[x_kube(validation = Rule::new("self == oldSelf").message("objectType is immutable"))]
    pub object_type: TimelineObjectType,
    /// Identifier of the event type: the app event's `uid` (HubSpot names the type
    /// `ae{portalId}_{name}`) or the legacy event template's name, by which an existing
    /// template is adopted. Lowercase letters, digits, `_` and `-`, starting with a letter.
    /// Immutable.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("name is immutable"),
        validation = Rule::new("self.matches('^[a-z][a-z0-9_-]*$')")
            .message("name must start with a lowercase letter and contain only lowercase letters, digits, '_' and '-'"),
    )]
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Name of the event type shown in HubSpot (the app event's `name`, e.g. "Feature used").
    #[schemars(length(min = 1, max = 200))]
    pub label: String,
    /// One line shown for each occurrence on the timeline: HubSpot's Markdown plus Handlebars,
    /// naming tokens as `{{token}}` and extra data as `{{extraData.path}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub header_template: Option<String>,
    /// The detail shown when an occurrence is expanded, in the same Markdown plus Handlebars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub detail_template: Option<String>,
    /// The values each occurrence carries, by name; the receiver refuses occurrences with
    /// unknown, missing or mistyped tokens. At most 500.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tokens: Vec<TimelineToken>,
    /// How HubSpot learns of the event type: `Rendered` (default) writes, for an OAuth app, the
    /// app event's `<name>-hsmeta.json` into the ConfigMap `<resource>-app-event` for the
    /// HubSpot project to deploy, and for a private app (which cannot create timeline events)
    /// keeps a custom event definition named `name` through `/events/v3/event-definitions`
    /// (scope `behavioral_events.event_definitions.read_write`); `Api` creates and keeps the
    /// legacy event template through `/integrators/timeline/v3/{appId}/event-templates` (public
    /// apps with templates only; the integration must use OAuth app credentials).
    #[serde(default)]
    pub registration: Registration,
    /// The legacy public app that owns the event template, for registration `Api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_app: Option<LegacyApp>,
    /// What deleting this resource does to the event template in HubSpot (registration `Api`):
    /// `Orphan` (default) leaves it, `Delete` deletes it, and the resource goes away only once
    /// HubSpot confirms. A rendered event type is the project's to remove.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The kinds of record a timeline event can be about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimelineObjectType {
    Contacts,
    Companies,
    Deals,
    Tickets,
}

impl TimelineObjectType {
    /// HubSpot's plural name of the object type.
    pub fn as_str(self) -> &'static str {
        match self {
            TimelineObjectType::Contacts => "contacts",
            TimelineObjectType::Companies => "companies",
            TimelineObjectType::Deals => "deals",
            TimelineObjectType::Tickets => "tickets",
        }
    }

    /// The singular upper-case form project files use (`"objectType": "CONTACT"`).
    pub fn project_name(self) -> &'static str {
        match self {
            TimelineObjectType::Contacts => "CONTACT",
            TimelineObjectType::Companies => "COMPANY",
            TimelineObjectType::Deals => "DEAL",
            TimelineObjectType::Tickets => "TICKET",
        }
    }
}

/// One value an occurrence carries.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(
    validation = Rule::new("self.type != 'enumeration' || (has(self.options) && size(self.options) > 0)")
        .message("a token of type enumeration needs options"),
    validation = Rule::new("self.type == 'enumeration' || !has(self.options) || size(self.options) == 0")
        .message("only enumeration tokens have options"),
)]
#[serde(rename_all = "camelCase")]
pub struct TimelineToken {
    /// Name of the token, as occurrences and templates name it: letters, digits, `_` and `-`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_-]+$')")
        .message("token name must contain only letters, digits, '_' and '-'"))]
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// Label of the token shown in HubSpot (and in filters of timeline lists).
    #[schemars(length(min = 1, max = 200))]
    pub label: String,
    /// Type of the token's values: `string`, `number`, `date` (RFC 3339 or epoch milliseconds
    /// when sent; epoch milliseconds for HubSpot) or `enumeration` (one of `options`).
    #[serde(rename = "type")]
    pub type_: TokenType,
    /// The values an `enumeration` token may take, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["value"]))]
    pub options: Vec<TokenOption>,
    /// A CRM property of the record that each occurrence's value of this token also writes
    /// (legacy event templates only; app events and custom events do not write properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub object_property_name: Option<String>,
}

/// Types of token values, by HubSpot's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    String,
    Number,
    Date,
    Enumeration,
}

impl TokenType {
    /// HubSpot's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::String => "string",
            TokenType::Number => "number",
            TokenType::Date => "date",
            TokenType::Enumeration => "enumeration",
        }
    }
}

/// One value of an enumeration token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenOption {
    /// The value occurrences send and HubSpot stores.
    #[schemars(length(min = 1))]
    pub value: String,
    /// Text shown in HubSpot.
    #[schemars(length(min = 1))]
    pub label: String,
}

/// How HubSpot learns of an event type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Registration {
    /// For an OAuth app, the operator renders the app event's `*-hsmeta.json` into a
    /// ConfigMap; the HubSpot project deploys it (`hs project upload`), as no HubSpot API
    /// creates app event types. For a private app, the operator keeps a custom event
    /// definition instead (adopted by name, created, relabelled, new tokens added as
    /// properties; what HubSpot's API cannot change is reported as drift).
    #[default]
    Rendered,
    /// The operator creates, updates and deletes the legacy event template through HubSpot's
    /// API with the app's developer API key.
    Api,
}

/// A legacy public app whose event templates the operator manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyApp {
    /// The public app's id.
    #[schemars(range(min = 1))]
    pub app_id: u64,
    /// Secret key (same namespace) holding the developer account's API key (sent as `?hapikey=`).
    pub developer_api_key: SecretKeyRef,
}

/// Observed state of a `HubSpotTimelineEventType`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotTimelineEventTypeStatus {
    /// `Ready` (occurrences can be sent), and `Rendered` (the hsmeta file is in its ConfigMap)
    /// or `Registered` (HubSpot holds the template or custom event definition as declared:
    /// Created, Adopted, Updated, InSync, Drifted, or why not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Which HubSpot API carries the occurrences, from the integration's kind of app:
    /// `AppEvents`, `TimelineEvents` (legacy templates) or `CustomEvents` (private apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<Carrier>,
    /// HubSpot's id of the legacy event template (registration `Api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// What HubSpot calls the type, as each occurrence names it: the template id
    /// (`TimelineEvents`), `ae{portalId}_{name}` (`AppEvents`) or the custom event
    /// definition's fully qualified name (`CustomEvents`). Set once occurrences can be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot_name: Option<String>,
    /// The ConfigMap holding the rendered `*-hsmeta.json` (registration `Rendered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Fields that differed in HubSpot on the last check: updated, or (condition `Registered`
    /// False, reason Drifted) ones HubSpot's API cannot change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Occurrences the integration's receivers accepted, delivered and hold, as they report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<OccurrenceCounts>,
    /// The last failed HubSpot call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

/// Occurrences of an event type, added up over the integration's receivers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OccurrenceCounts {
    /// Accepted (stored durably) since the receivers started.
    pub accepted: i64,
    /// Taken by HubSpot (or already held by it) since the receivers started.
    pub delivered: i64,
    /// Refused by HubSpot and held for `rejected list / resend / discard`.
    pub rejected: i64,
    /// Waiting to be sent to HubSpot.
    pub pending: i64,
}

/// The HubSpot API that carries an event type's occurrences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Carrier {
    /// App events (`/integrators/timeline/v4/events`), for developer-platform apps.
    AppEvents,
    /// Legacy timeline v3 events of the event template, for public apps that have templates.
    TimelineEvents,
    /// Custom (behavioral) events (`/events/v3/send`), a private app's way onto a contact's
    /// timeline.
    CustomEvents,
}

#[cfg(test)]
mod tests;
