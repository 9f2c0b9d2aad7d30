//! The receiver workload: image, replicas, storage, and its sync, ingest and admin APIs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::api::SecretKeyRef;

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
    /// How long the receiver's ports wait for a client's request, and how many clients each
    /// holds, so that slow or silent clients cannot keep HubSpot out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
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

/// Limits each port of the receiver (webhooks and ingest, status, admin) puts on its clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Seconds a client has to send a request's headers, from when its connection is ready for
    /// one; then the connection is closed (keep-alive connections idle that long too). HubSpot
    /// gives up on a webhook request after 5 s. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub header_read_timeout_seconds: Option<u64>,
    /// Seconds a client has to send a request's whole body once its headers are in; then it is
    /// answered 408 and the connection closed. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub body_read_timeout_seconds: Option<u64>,
    /// Connections each port keeps open at most; one more is closed at once. Default 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
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
            http: None,
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

impl IngestSettings {
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
}

fn default_ingest_max_body_bytes() -> u64 {
    IngestSettings::DEFAULT_MAX_BODY_BYTES
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
