//! The receiver StatefulSet, in steps: the pod template, its container with ports, probes and
//! mounts, the pod's volumes, and the claim template of the data volume; and the
//! PodDisruptionBudget that guards its pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use model::api::HubSpotIntegration;

use super::{
    ACCESS_TOKEN_DIR, ADMIN_PORT, CONFIG_DIR, CONFIG_KEY, DATA_DIR, RECEIVER_PORT, STATUS_PORT,
    access_token_secret_name, admin_exposed, child_metadata, config_secret_name, receiver_labels, receiver_name,
    selector_labels,
};

/// Pod annotation holding the hash of the rendered config, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "hubspot.io/config-hash";
/// User and group the receiver runs as (the conventional distroless `nonroot`).
const RECEIVER_UID: i64 = 65532;
/// Name of the volume claim template (and volume) holding [`DATA_DIR`]; the PVCs are named
/// `data-<name>-receiver-<ordinal>`.
pub const DATA_VOLUME: &str = "data";
/// Name of the volume holding the managed access token Secret of an OAuth integration.
const ACCESS_TOKEN_VOLUME: &str = "access-token";
/// How long a stopping receiver may take. HubSpot gives up on a request after 5 s, so requests
/// in flight at SIGTERM are answered well within this; the rest is for the event log to close.
const TERMINATION_GRACE_SECONDS: i64 = 30;

/// The receiver StatefulSet: each pod keeps its event log on its own PersistentVolumeClaim, so
/// events acknowledged to HubSpot survive rollouts, evictions and node loss. `config_hash` goes
/// into the pod template, so pods restart with a new config. `trace_env` is the operator's
/// trace export settings (`telemetry::receiver_trace_env`); when there are any, the pods get
/// them too, with resource attributes naming the integration.
pub fn receiver_statefulset(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    default_image: &str,
    config_hash: &str,
    trace_env: &[(String, String)],
) -> StatefulSet {
    StatefulSet {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(integration.spec.receiver.replicas),
            // The receiver needs no per-pod DNS names; the StatefulSet only has to name a Service.
            service_name: Some(receiver_name(integration)),
            // Each pod has its own log and needs no peer to start, so none waits for another.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            selector: LabelSelector { match_labels: Some(selector_labels(integration)), ..Default::default() },
            template: pod_template(integration, default_image, config_hash, trace_env),
            volume_claim_templates: Some(vec![data_claim(integration)]),
            // A log may hold acknowledged events not yet delivered: neither scaling down nor
            // deleting the integration may discard it. Removing a PVC is the user's decision.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The receiver pods: one restricted container, labelled as the integration's children and
/// annotated with the config hash.
fn pod_template(
    integration: &HubSpotIntegration,
    default_image: &str,
    config_hash: &str,
    trace_env: &[(String, String)],
) -> PodTemplateSpec {
    let pod = PodSpec {
        containers: vec![receiver_container(integration, default_image, trace_env)],
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RECEIVER_UID),
            run_as_group: Some(RECEIVER_UID),
            // Gives the receiver's group the data volume (writable) and the config files
            // (mode 0440, readable).
            fs_group: Some(RECEIVER_UID),
            // Ownership is fixed once on a new volume, not walked again on every start.
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        volumes: Some(pod_volumes(integration)),
        ..Default::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(receiver_labels(integration)),
            annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())])),
            ..Default::default()
        }),
        spec: Some(pod),
    }
}

/// The receiver container: the configured image reading the mounted config, its ports, probes
/// and mounts, without privileges on a read-only root filesystem.
fn receiver_container(
    integration: &HubSpotIntegration,
    default_image: &str,
    trace_env: &[(String, String)],
) -> Container {
    let receiver = &integration.spec.receiver;
    Container {
        name: "receiver".into(),
        image: Some(receiver.image.clone().unwrap_or_else(|| default_image.to_string())),
        args: Some(vec!["receiver".into(), "--config".into(), format!("{CONFIG_DIR}/{CONFIG_KEY}")]),
        env: trace_env_vars(integration, trace_env),
        ports: Some(
            [container_port("http", RECEIVER_PORT), container_port("metrics", STATUS_PORT)]
                .into_iter()
                .chain(admin_exposed(integration).then(|| container_port("admin", ADMIN_PORT)))
                .collect(),
        ),
        liveness_probe: Some(http_probe("/healthz")),
        readiness_probe: Some(http_probe("/readyz")),
        resources: receiver.resources.clone(),
        volume_mounts: Some(volume_mounts(integration)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The operator's trace export settings with resource attributes naming the integration;
/// nothing when traces are not exported, so such pods stay as they were.
fn trace_env_vars(integration: &HubSpotIntegration, trace_env: &[(String, String)]) -> Option<Vec<EnvVar>> {
    (!trace_env.is_empty()).then(|| {
        let attributes = format!(
            "k8s.namespace.name={},hubspot.integration={}",
            integration.namespace().unwrap_or_default(),
            integration.name_any()
        );
        trace_env
            .iter()
            .cloned()
            .chain([("OTEL_RESOURCE_ATTRIBUTES".to_string(), attributes)])
            .map(|(name, value)| EnvVar { name, value: Some(value), ..Default::default() })
            .collect()
    })
}

/// A probe of `path` on the container's `http` port.
fn http_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    }
}

/// Where the container finds its config, its data volume and, for an OAuth app, the access
/// token.
fn volume_mounts(integration: &HubSpotIntegration) -> Vec<VolumeMount> {
    let oauth = integration.spec.credentials.oauth.is_some();
    [
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount { name: DATA_VOLUME.into(), mount_path: DATA_DIR.into(), ..Default::default() },
    ]
    .into_iter()
    .chain(oauth.then(|| VolumeMount {
        name: ACCESS_TOKEN_VOLUME.into(),
        mount_path: ACCESS_TOKEN_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }))
    .collect()
}

/// The pod's Secret volumes: the config and, for an OAuth app, the managed access token. The
/// data volume comes from the claim template.
fn pod_volumes(integration: &HubSpotIntegration) -> Vec<Volume> {
    let oauth = integration.spec.credentials.oauth.is_some();
    [Volume {
        name: "config".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(config_secret_name(integration)),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }]
    .into_iter()
    .chain(oauth.then(|| Volume {
        name: ACCESS_TOKEN_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(access_token_secret_name(integration)),
            default_mode: Some(0o440),
            // The pod starts before the first token is issued (and while HubSpot
            // refuses the refresh token), so webhooks are still taken; the kubelet
            // fills the file in once the Secret exists.
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }))
    .collect()
}

/// The claim template of each pod's data volume, as `spec.receiver.storage` sizes it.
fn data_claim(integration: &HubSpotIntegration) -> PersistentVolumeClaim {
    let storage = &integration.spec.receiver.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            // Claim templates are immutable: only labels that can never change go here.
            labels: Some(selector_labels(integration)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(storage.size.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }
}

/// The receiver's PodDisruptionBudget: voluntary disruptions (node drains, cluster upgrades)
/// take at most one receiver pod at a time.
///
/// `maxUnavailable: 1` rather than `minAvailable: 1`: with the usual single replica the latter
/// would block every node drain forever. Moving the one pod interrupts webhooks for a few
/// seconds only, and HubSpot retries failed deliveries (up to 10 times over 24 hours) while
/// everything already acknowledged waits on the volume, so nothing is lost.
pub fn receiver_pod_disruption_budget(integration: &HubSpotIntegration, owner: &OwnerReference) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(integration)), ..Default::default() }),
            // A pod that is not ready takes no webhooks anyway; it must not hold up a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        status: None,
    }
}
