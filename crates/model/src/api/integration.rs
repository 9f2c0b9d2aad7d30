//! `HubSpotIntegration`: one HubSpot portal, its credentials, required scopes, webhooks and receiver.

use std::collections::BTreeMap;

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
    pub tier: hubspot::Tier,
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

/// Credentials to call HubSpot with: exactly one of `privateAppToken` and `oauth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.privateAppToken) != has(self.oauth)",
    "message": "exactly one credential kind: set privateAppToken or oauth"
}]))]
pub struct Credentials {
    /// A private app or service key access token (`pat-…`), read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_app_token: Option<SecretKeyRef>,
    /// An OAuth app's installation. The operator exchanges the refresh token for access tokens
    /// and keeps the current one in the Secret `<integration>-hubspot-access-token`, which the
    /// receiver pods mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSettings>,
}

/// The credentials of an OAuth app's installation in one HubSpot account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthSettings {
    /// The app's client id (not secret).
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// Secret key holding the app's client secret.
    pub client_secret: SecretKeyRef,
    /// Secret key holding the installation's refresh token. A rotated value takes effect on the
    /// next reconcile.
    pub refresh_token: SecretKeyRef,
    /// Which token endpoint issues access tokens: `v3` (the default) or `v1` (deprecated by
    /// HubSpot, unsupported from 2027-02-16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<hubspot::auth::TokenEndpoint>,
}

/// The credential kind of an integration, as `Credentials::kind` finds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CredentialKind<'a> {
    PrivateAppToken(&'a SecretKeyRef),
    OAuth(&'a OAuthSettings),
}

impl Credentials {
    /// The one credential kind set. The API server enforces exactly one; manifests read without
    /// it (`dev` mode) get this error.
    pub fn kind(&self) -> Result<CredentialKind<'_>, CredentialsError> {
        match (&self.private_app_token, &self.oauth) {
            (Some(token), None) => Ok(CredentialKind::PrivateAppToken(token)),
            (None, Some(oauth)) => Ok(CredentialKind::OAuth(oauth)),
            _ => Err(CredentialsError),
        }
    }
}

/// `spec.credentials` sets both or neither credential kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.credentials must set exactly one of privateAppToken and oauth")]
pub struct CredentialsError;

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

/// The receiver StatefulSet rendered for this integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.ingress) && has(self.httpRoute))",
    "message": "set at most one of ingress and httpRoute"
}]))]
pub struct ReceiverSettings {
    /// Container image of the receiver. Defaults to the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of receiver pods. With the `jetstream` event log the pods share one stream, its
    /// duplicate detection and its consumer, so several pods are safe (each event is synced by
    /// one of them). With the `embedded` log each pod keeps its own log, so a delivery HubSpot
    /// repeats to another pod is deduplicated only by the destinations (idempotency key): keep
    /// one pod there.
    #[serde(default = "default_replicas")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 1",
        "message": "replicas must be at least 1: the receiver is what keeps HubSpot's webhooks"
    }]))]
    pub replicas: i32,
    /// Compute resources of the receiver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// The PersistentVolumeClaim of each receiver pod (`data-<name>-receiver-<n>`): the embedded
    /// event log, sync checkpoints and `file` destinations live on it. Immutable, as a StatefulSet's volume claim templates are: to grow the volume, resize the
    /// PVC itself if its storage class allows expansion. The PVC outlives the integration, so
    /// acknowledged events that were not yet delivered are never deleted with it.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "storage is immutable: a StatefulSet's volume claim templates cannot change"
    }]))]
    pub storage: ReceiverStorage,
    /// Where webhook events are kept until every destination has them: `embedded` (the
    /// default, a file on the pod's volume) or `jetstream` (a NATS JetStream stream the pods
    /// share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogSettings>,
    /// The ingest API (`POST /ingest/{namespace}/{mapping}`), through which external systems
    /// write records to HubSpot. Off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestSettings>,
    /// How the sync worker reads changed objects from HubSpot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncSettings>,
    /// An Ingress `<name>-receiver` that routes HubSpot's requests to the receiver Service.
    /// Set this or `httpRoute`, or neither when something else exposes the receiver; removing
    /// it deletes the Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<ReceiverIngress>,
    /// A Gateway API HTTPRoute `<name>-receiver` (`gateway.networking.k8s.io/v1`) that attaches
    /// the receiver Service to a Gateway. Needs the Gateway API CRDs in the cluster; without
    /// them the `ReceiverExposed` condition says so. Removing it deletes the HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<ReceiverHttpRoute>,
    /// The admin API (dead letters, replays, rejected records), which `hubspot-operator
    /// dead-letters` and `hubspot-operator rejected` call. Unset: it listens on each pod's
    /// loopback without a token, reached only through `kubectl port-forward` or `kubectl exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSettings>,
}

impl ReceiverSettings {
    /// The receiver config's `sync` section: what is set here, defaults for the rest.
    pub fn sync_config(&self) -> crate::config::SyncConfig {
        let mut config = crate::config::SyncConfig::default();
        if let Some(wait) = self.sync.as_ref().and_then(|s| s.max_batch_wait_milliseconds) {
            config.max_batch_wait_milliseconds = wait;
        }
        config
    }
}

/// How the sync worker batches its HubSpot reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncSettings {
    /// Longest time, in milliseconds, the changed objects of a type gather before they are
    /// read from HubSpot when they do not fill a batch read (100 objects); a full batch is read
    /// at once. Longer waits spend fewer HubSpot calls when changes are few, and add up to this
    /// much to the time a change takes to reach the destinations. 0 reads each webhook request
    /// as it arrives. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 60000))]
    pub max_batch_wait_milliseconds: Option<u64>,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            resources: None,
            storage: ReceiverStorage::default(),
            event_log: None,
            ingest: None,
            sync: None,
            ingress: None,
            http_route: None,
            admin: None,
        }
    }
}

/// The receiver's admin API. It changes what destinations receive, so it stays on loopback
/// unless exposed, and exposed it needs a token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.exposed) && self.exposed) || has(self.tokenSecretRef)",
        "message": "exposed needs tokenSecretRef: the admin API is reachable from the pod network only with a token"
    },
    {
        "rule": "(has(self.exposed) && self.exposed) || !has(self.allowedFrom) || size(self.allowedFrom) == 0",
        "message": "allowedFrom needs exposed: true; otherwise the admin API listens on loopback only"
    }
]))]
pub struct AdminSettings {
    /// Secret key holding the bearer token every admin request must carry (`Authorization:
    /// Bearer <token>`; `hubspot-operator dead-letters --token`). Required with `exposed`; a
    /// rotated value rolls the receiver pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Listen on the pod network (port 8082, named `admin` on the container and the receiver
    /// Service) instead of loopback. Needs `tokenSecretRef`. Only the peers in `allowedFrom`
    /// get through the receiver's NetworkPolicy. Default false.
    #[serde(default)]
    pub exposed: bool,
    /// Who may reach the exposed admin port, as NetworkPolicy peers (`podSelector`,
    /// `namespaceSelector`, `ipBlock`). Empty: nothing from the network, though `kubectl
    /// port-forward` still reaches it. Only with `exposed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// The receiver's Ingress. Requests reach the receiver with their path unchanged, so the path
/// must route `/webhooks/hubspot`; HubSpot's target URL is `https://<host>/webhooks/hubspot`
/// (`http://` without `tlsSecretName`) unless `spec.webhooks.publicUrl` says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.pathType != 'Exact' || self.path == '/webhooks/hubspot'",
    "message": "an Exact path must be the receiver's webhook path /webhooks/hubspot"
}]))]
pub struct ReceiverIngress {
    /// IngressClass that serves the Ingress (`spec.ingressClassName`); the cluster's default
    /// class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Host name HubSpot calls, for example `hooks.example.com`. Unset: every host the ingress
    /// controller serves, and no public URL is derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path routed to the receiver: `/webhooks/hubspot` (the default), `/webhooks`, or `/` to
    /// also expose the ingest API (the Ingress then routes `/webhooks` and `/ingest`, never
    /// the receiver's `/metrics` or `/sync/status`).
    #[serde(default = "default_receiver_path")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "'/webhooks/hubspot/'.startsWith(self.endsWith('/') ? self : self + '/')",
        "message": "path must lead to the receiver's webhook path: /, /webhooks or /webhooks/hubspot"
    }]))]
    pub path: String,
    /// How `path` matches: `Prefix` (the default), `Exact` or `ImplementationSpecific`.
    #[serde(default)]
    pub path_type: IngressPathType,
    /// Secret (type `kubernetes.io/tls`, in this namespace) with the certificate for `host`.
    /// When set the Ingress terminates TLS and the derived public URL is `https://`. A
    /// certificate controller such as cert-manager can fill it from an annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Annotations of the Ingress, for the ingress controller or a certificate controller (for
    /// example `cert-manager.io/cluster-issuer`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An Ingress path's `pathType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IngressPathType {
    /// The request path starts with `path`, element by element.
    #[default]
    Prefix,
    /// The request path is `path`.
    Exact,
    /// Whatever the IngressClass makes of it.
    ImplementationSpecific,
}

impl IngressPathType {
    /// The value of the Ingress's `pathType`.
    pub fn as_str(self) -> &'static str {
        match self {
            IngressPathType::Prefix => "Prefix",
            IngressPathType::Exact => "Exact",
            IngressPathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// The receiver's HTTPRoute: one rule matching the path prefix, backed by the receiver Service.
/// Requests reach the receiver with their path unchanged; HubSpot's target URL is
/// `https://<first hostname>/webhooks/hubspot` unless `spec.webhooks.publicUrl` says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverHttpRoute {
    /// The Gateways (or their listeners) the route attaches to. A Gateway in another namespace
    /// must allow routes from this one (`allowedRoutes`).
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<GatewayParentRef>,
    /// Host names the route answers, for example `hooks.example.com`. Empty: those of the
    /// Gateway's listeners, and no public URL is derived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub hostnames: Vec<String>,
    /// Path prefix routed to the receiver: `/webhooks/hubspot` (the default), `/webhooks`, or
    /// `/` to also expose the ingest API (the route then matches `/webhooks` and `/ingest`,
    /// never the receiver's `/metrics` or `/sync/status`).
    #[serde(default = "default_receiver_path")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "'/webhooks/hubspot/'.startsWith(self.endsWith('/') ? self : self + '/')",
        "message": "path must lead to the receiver's webhook path: /, /webhooks or /webhooks/hubspot"
    }]))]
    pub path: String,
    /// Annotations of the HTTPRoute.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Gateway the receiver's HTTPRoute attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace of the Gateway; this integration's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Gateway listener to attach to; every listener that allows the route when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

fn default_receiver_path() -> String {
    crate::contract::WEBHOOK_PATH.into()
}

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

/// The receiver's persistent volume (embedded event log, checkpoints, `file` destinations).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(edit: impl FnOnce(&mut HubSpotIntegrationSpec)) -> HubSpotIntegration {
        let mut spec = HubSpotIntegrationSpec {
            portal_id: Some(62515),
            api: ApiSettings::default(),
            credentials: Credentials {
                private_app_token: Some(SecretKeyRef { name: "hubspot".into(), key: "token".into() }),
                oauth: None,
            },
            required_scopes: vec!["crm.objects.contacts.read".into()],
            webhooks: None,
            receiver: ReceiverSettings::default(),
        };
        edit(&mut spec);
        HubSpotIntegration::new("crm", spec)
    }

    fn cel_errors(object: &HubSpotIntegration, old: Option<&HubSpotIntegration>) -> String {
        let outcome = match old {
            None => kube::core::cel::validate_cel(object),
            Some(old) => kube::core::cel::validate_cel_update(object, old),
        };
        outcome.err().map(|e| format!("{e:?}")).unwrap_or_default()
    }

    #[test]
    fn cel_keeps_the_portal_id_once_set() {
        let unset = integration(|s| s.portal_id = None);
        let set = integration(|_| {});
        assert_eq!(cel_errors(&set, Some(&unset)), "", "setting it later is allowed");
        assert_eq!(cel_errors(&integration(|s| s.required_scopes.clear()), Some(&set)), "");
        let other = integration(|s| s.portal_id = Some(1));
        assert!(cel_errors(&other, Some(&set)).contains("portalId is immutable once set"));
        assert!(cel_errors(&unset, Some(&set)).contains("portalId is immutable once set"));
    }

    #[test]
    fn cel_wants_at_least_one_receiver_and_keeps_its_storage() {
        assert_eq!(cel_errors(&integration(|s| s.receiver.replicas = 2), None), "");
        let none = integration(|s| s.receiver.replicas = 0);
        assert!(cel_errors(&none, None).contains("replicas must be at least 1"));
        let old = integration(|_| {});
        let bigger = integration(|s| s.receiver.storage.size = "2Gi".into());
        assert!(cel_errors(&bigger, Some(&old)).contains("storage is immutable"));
    }

    #[test]
    fn cel_exposes_the_admin_api_only_with_a_token_and_admits_peers_only_when_exposed() {
        use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
        let with_admin = |token: bool, exposed: bool, allowed_from: Vec<NetworkPolicyPeer>| {
            integration(|s| {
                s.receiver.admin = Some(AdminSettings {
                    token_secret_ref: token.then(|| SecretKeyRef { name: "admin".into(), key: "token".into() }),
                    exposed,
                    allowed_from,
                })
            })
        };
        let operators = NetworkPolicyPeer {
            namespace_selector: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(BTreeMap::from([("team".into(), "operators".into())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(cel_errors(&with_admin(false, false, vec![]), None), "", "the default: loopback, no token");
        assert_eq!(cel_errors(&with_admin(true, false, vec![]), None), "", "a token on loopback");
        assert_eq!(cel_errors(&with_admin(true, true, vec![]), None), "", "exposed to nobody: port-forward only");
        assert_eq!(cel_errors(&with_admin(true, true, vec![operators.clone()]), None), "");

        let open = cel_errors(&with_admin(false, true, vec![operators.clone()]), None);
        assert!(open.contains("exposed needs tokenSecretRef"), "{open}");
        assert!(cel_errors(&with_admin(false, true, vec![]), None).contains("exposed needs tokenSecretRef"));
        let peers_on_loopback = cel_errors(&with_admin(true, false, vec![operators]), None);
        assert!(peers_on_loopback.contains("allowedFrom needs exposed: true"), "{peers_on_loopback}");

        let parsed: AdminSettings = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(parsed, AdminSettings::default(), "not exposed unless asked");
        assert!(!parsed.exposed);
    }

    fn ingress(path: &str, path_type: IngressPathType) -> ReceiverIngress {
        ReceiverIngress {
            class_name: None,
            host: Some("hooks.example.com".into()),
            path: path.into(),
            path_type,
            tls_secret_name: None,
            annotations: BTreeMap::new(),
        }
    }

    fn http_route(path: &str) -> ReceiverHttpRoute {
        ReceiverHttpRoute {
            parent_refs: vec![GatewayParentRef { name: "public".into(), namespace: None, section_name: None }],
            hostnames: vec!["hooks.example.com".into()],
            path: path.into(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn cel_takes_an_ingress_or_an_http_route_but_not_both() {
        let with_ingress = integration(|s| s.receiver.ingress = Some(ingress("/webhooks/hubspot", Default::default())));
        assert_eq!(cel_errors(&with_ingress, None), "");
        let with_route = integration(|s| s.receiver.http_route = Some(http_route("/")));
        assert_eq!(cel_errors(&with_route, None), "");
        let both = integration(|s| {
            s.receiver.ingress = Some(ingress("/", Default::default()));
            s.receiver.http_route = Some(http_route("/"));
        });
        assert!(cel_errors(&both, None).contains("set at most one of ingress and httpRoute"));
    }

    #[test]
    fn cel_wants_a_path_that_reaches_the_webhook_endpoint() {
        let webhook_path = crate::contract::WEBHOOK_PATH;
        for path in ["/", "/webhooks", "/webhooks/", webhook_path, "/webhooks/hubspot/"] {
            let i = integration(|s| s.receiver.ingress = Some(ingress(path, IngressPathType::Prefix)));
            assert_eq!(cel_errors(&i, None), "", "{path}");
            let r = integration(|s| s.receiver.http_route = Some(http_route(path)));
            assert_eq!(cel_errors(&r, None), "", "{path}");
        }
        for path in ["/web", "/ingest", "/webhooks/hubspot/extra", "/webhooks/hub"] {
            let i = integration(|s| s.receiver.ingress = Some(ingress(path, IngressPathType::Prefix)));
            assert!(cel_errors(&i, None).contains("path must lead to the receiver's webhook path"), "{path}");
            let r = integration(|s| s.receiver.http_route = Some(http_route(path)));
            assert!(cel_errors(&r, None).contains("path must lead to the receiver's webhook path"), "{path}");
        }
        let exact = integration(|s| s.receiver.ingress = Some(ingress(webhook_path, IngressPathType::Exact)));
        assert_eq!(cel_errors(&exact, None), "");
        let exact_root = integration(|s| s.receiver.ingress = Some(ingress("/", IngressPathType::Exact)));
        assert!(cel_errors(&exact_root, None).contains("an Exact path must be the receiver's webhook path"));
    }

    #[test]
    fn ingress_and_http_route_default_to_the_webhook_path() {
        let spec: ReceiverSettings = serde_json::from_value(serde_json::json!({
            "ingress": { "host": "hooks.example.com" }
        }))
        .unwrap();
        let ingress = spec.ingress.unwrap();
        assert_eq!((ingress.path.as_str(), ingress.path_type), ("/webhooks/hubspot", IngressPathType::Prefix));
        let spec: ReceiverSettings =
            serde_json::from_value(serde_json::json!({ "httpRoute": { "parentRefs": [{ "name": "public" }] } }))
                .unwrap();
        assert_eq!(spec.http_route.unwrap().path, "/webhooks/hubspot");
    }

    fn oauth() -> OAuthSettings {
        OAuthSettings {
            client_id: "client-1".into(),
            client_secret: SecretKeyRef { name: "hubspot-app".into(), key: "client-secret".into() },
            refresh_token: SecretKeyRef { name: "hubspot-app".into(), key: "refresh-token".into() },
            token_endpoint: None,
        }
    }

    #[test]
    fn cel_wants_exactly_one_credential_kind() {
        let oauth_only = integration(|s| {
            s.credentials.private_app_token = None;
            s.credentials.oauth = Some(oauth());
        });
        assert_eq!(cel_errors(&oauth_only, None), "");
        assert!(matches!(oauth_only.spec.credentials.kind(), Ok(CredentialKind::OAuth(_))));
        let both = integration(|s| s.credentials.oauth = Some(oauth()));
        assert!(cel_errors(&both, None).contains("exactly one credential kind"));
        assert_eq!(both.spec.credentials.kind(), Err(CredentialsError));
        let neither = integration(|s| s.credentials.private_app_token = None);
        assert!(cel_errors(&neither, None).contains("exactly one credential kind"));
        assert_eq!(neither.spec.credentials.kind(), Err(CredentialsError));
    }

    #[test]
    fn token_endpoint_is_v1_or_v3() {
        let parsed: OAuthSettings = serde_json::from_value(serde_json::json!({
            "clientId": "client-1",
            "clientSecret": { "name": "app", "key": "secret" },
            "refreshToken": { "name": "app", "key": "refresh" },
            "tokenEndpoint": "v1"
        }))
        .unwrap();
        assert_eq!(parsed.token_endpoint, Some(hubspot::auth::TokenEndpoint::V1));
        let wrong = serde_json::json!({
            "clientId": "c", "clientSecret": { "name": "a", "key": "b" },
            "refreshToken": { "name": "a", "key": "b" }, "tokenEndpoint": "v2"
        });
        assert!(serde_json::from_value::<OAuthSettings>(wrong).is_err());
    }

    #[test]
    fn cel_wants_a_property_exactly_for_property_changes() {
        let with = |subscriptions: Vec<WebhookSubscription>| {
            integration(|s| {
                s.webhooks = Some(WebhookSettings {
                    client_secret: SecretKeyRef { name: "hubspot".into(), key: "client-secret".into() },
                    public_url: Some("https://hooks.example.com".into()),
                    subscriptions,
                    max_concurrent_requests: None,
                    management: None,
                })
            })
        };
        let sub = |event_type: &str, property_name: Option<&str>| WebhookSubscription {
            event_type: event_type.into(),
            property_name: property_name.map(Into::into),
            active: true,
        };
        let fine = with(vec![sub("contact.propertyChange", Some("email")), sub("deal.creation", None)]);
        assert_eq!(cel_errors(&fine, None), "");
        let bare = with(vec![sub("contact.propertyChange", None)]);
        assert!(cel_errors(&bare, None).contains("propertyChange subscriptions need propertyName"));
        let named = with(vec![sub("contact.creation", Some("email"))]);
        assert!(cel_errors(&named, None).contains("only propertyChange subscriptions name a property"));
        let active: WebhookSubscription = serde_json::from_str(r#"{"eventType":"deal.creation"}"#).unwrap();
        assert!(active.active, "active defaults to true");
    }
}
