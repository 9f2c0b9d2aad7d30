//! Pure desired-state builders: the receiver config an integration renders to, and the
//! Secret, StatefulSet, Service, PodDisruptionBudget, NetworkPolicy and optional Ingress or
//! HTTPRoute that run and expose it. No I/O here; the reconciler applies the results.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EnvVar, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject};
use sha2::{Digest, Sha256};

use super::secrets::{SecretError, SecretStore};
use model::api::integration::{CredentialKind, JetStreamLogSettings};
use model::api::{HubSpotIntegration, PropertyMapping, SecretKeyRef};
use model::config::{
    AdminConfig, EventLogConfig, HubSpotConnection, IngestConfig, JetStreamLogConfig, LogLimits, MappingConfig,
    ReceiverConfig, SinkConfig, SourceConfig, WebhookConfig,
};
use model::contract::{PUBLIC_PATH_PREFIXES, WEBHOOK_PATH};

/// Where the receiver keeps its event log and file destinations.
pub const DATA_DIR: &str = "/var/lib/hubspot-operator";
/// Directory the config Secret is mounted at.
pub const CONFIG_DIR: &str = "/etc/hubspot-operator";
/// Key of the rendered config in the config Secret.
pub const CONFIG_KEY: &str = "config.yaml";
/// Pod annotation holding the hash of the rendered config, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "hubspot.io/config-hash";
/// Port the receiver listens on inside the pod for webhooks and the ingest API (named `http`).
pub const RECEIVER_PORT: u16 = 8080;
/// Port of the receiver's `/metrics` and `/sync/status`, inside the pod and on the receiver
/// Service (named `metrics`). The Ingress and HTTPRoute never route it.
pub const STATUS_PORT: u16 = 8081;
/// Port of the receiver Service, which its Ingress and HTTPRoute send requests to.
pub const RECEIVER_SERVICE_PORT: i32 = 80;
/// Port of the admin API inside the pod, and of the receiver Service when it is exposed. It is
/// the port of the default loopback address too, so `kubectl port-forward <pod> 8082` and the
/// admin CLI's default reach it either way.
pub const ADMIN_PORT: u16 = 8082;
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
/// Directory the managed access token Secret of an OAuth integration is mounted at.
pub const ACCESS_TOKEN_DIR: &str = "/var/run/hubspot-operator/access-token";
/// Key of the access token in the managed access token Secret (and its file name).
pub const ACCESS_TOKEN_KEY: &str = "token";
/// Annotation of the managed access token Secret: when HubSpot stops accepting the token.
pub const ACCESS_TOKEN_EXPIRES_AT_ANNOTATION: &str = "hubspot.io/access-token-expires-at";
/// Annotation of the managed access token Secret: when the operator replaces the token.
pub const ACCESS_TOKEN_REFRESH_AT_ANNOTATION: &str = "hubspot.io/access-token-refresh-at";
/// Label every child object carries; only objects with it are watched or ever deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on the operator's objects.
pub const MANAGED_BY: &str = "hubspot-operator";

/// Name of the receiver's StatefulSet, Service, PodDisruptionBudget, NetworkPolicy, Ingress
/// and HTTPRoute.
pub fn receiver_name(integration: &HubSpotIntegration) -> String {
    format!("{}-receiver", integration.name_any())
}

/// Name of the Secret holding the rendered receiver config.
pub fn config_secret_name(integration: &HubSpotIntegration) -> String {
    format!("{}-receiver-config", integration.name_any())
}

/// In-cluster URL of the receiver's webhook endpoint.
pub fn receiver_url(integration: &HubSpotIntegration) -> String {
    format!(
        "http://{}.{}.svc{WEBHOOK_PATH}",
        receiver_name(integration),
        integration.namespace().unwrap_or_else(|| "default".into())
    )
}

/// The URL HubSpot calls to deliver webhooks: `spec.webhooks.publicUrl`, else the receiver's
/// webhook path on the host of its Ingress (`https://` when the Ingress terminates TLS) or on
/// the first hostname of its HTTPRoute. Wildcard hosts name no URL.
pub fn receiver_public_url(integration: &HubSpotIntegration) -> Option<String> {
    if let Some(url) = integration.spec.webhooks.as_ref().and_then(|w| w.public_url.as_ref()) {
        return Some(url.clone());
    }
    let concrete = |host: &&String| !host.starts_with('*');
    let receiver = &integration.spec.receiver;
    let (scheme, host) = match (&receiver.ingress, &receiver.http_route) {
        (Some(ingress), _) => {
            (if ingress.tls_secret_name.is_some() { "https" } else { "http" }, ingress.host.as_ref().filter(concrete)?)
        }
        // A Gateway listener for HubSpot terminates TLS: HubSpot only calls HTTPS targets.
        (None, Some(route)) => ("https", route.hostnames.iter().find(concrete)?),
        (None, None) => return None,
    };
    Some(format!("{scheme}://{host}{WEBHOOK_PATH}"))
}

/// `namespace/name` of an object, as the receiver config names integrations and mappings.
pub fn qualified_name(object: &impl ResourceExt) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// The mappings in `candidates` that belong to `integration` (same namespace, referenced by
/// name), sorted by name so the rendered config does not depend on listing order.
pub fn mappings_of<'a>(
    integration: &HubSpotIntegration,
    candidates: impl IntoIterator<Item = &'a PropertyMapping>,
) -> Vec<&'a PropertyMapping> {
    let mut mine: Vec<&PropertyMapping> = candidates
        .into_iter()
        .filter(|m| m.namespace() == integration.namespace() && m.spec.integration_ref.name == integration.name_any())
        .collect();
    mine.sort_by_key(|m| m.name_any());
    mine
}

/// The Secret the integration reconciler keeps an OAuth app's current access token in:
/// `<integration>-hubspot-access-token`.
pub fn access_token_secret_name(integration: &HubSpotIntegration) -> String {
    format!("{}-hubspot-access-token", integration.name_any())
}

/// The Secret key holding the token to call HubSpot with: the private app token, or for an
/// OAuth app the access token in the managed Secret.
pub fn api_token_ref(integration: &HubSpotIntegration) -> Result<SecretKeyRef, SecretError> {
    Ok(match integration.spec.credentials.kind()? {
        CredentialKind::PrivateAppToken(reference) => reference.clone(),
        CredentialKind::OAuth(_) => {
            SecretKeyRef { name: access_token_secret_name(integration), key: ACCESS_TOKEN_KEY.into() }
        }
    })
}

/// Every Secret name that rendering the config of `integration` with `mappings` reads, and that
/// authenticating with its credentials reads, in first-use order without repeats.
pub fn referenced_secret_names(integration: &HubSpotIntegration, mappings: &[&PropertyMapping]) -> Vec<String> {
    let credentials = &integration.spec.credentials;
    let oauth = credentials.oauth.iter().flat_map(|o| [&o.client_secret, &o.refresh_token]);
    let token = credentials.private_app_token.iter().chain(oauth);
    let client_secret = integration.spec.webhooks.iter().map(|w| &w.client_secret);
    let developer_api_key =
        integration.spec.webhooks.iter().filter_map(|w| Some(&w.management.as_ref()?.api.as_ref()?.developer_api_key));
    let ingest_token = integration.spec.receiver.ingest.iter().map(|i| &i.token_secret_ref);
    let admin_token = integration.spec.receiver.admin.iter().filter_map(|a| a.token_secret_ref.as_ref());
    let destinations = || mappings.iter().flat_map(|m| &m.spec.destinations);
    let signing = destinations().filter_map(|d| d.http.as_ref()?.signing_secret.as_ref());
    let postgres = destinations().filter_map(|d| Some(&d.postgres.as_ref()?.connection_secret));
    let nats = destinations().filter_map(|d| d.nats.as_ref()?.url_secret.as_ref());
    let event_log = jetstream_log(integration).and_then(|j| j.url_secret.as_ref());
    let sources =
        mappings.iter().flat_map(|m| &m.spec.sources).filter_map(|s| Some(&s.postgres.as_ref()?.connection_secret));
    let mut names: Vec<String> = Vec::new();
    for reference in token
        .chain(client_secret)
        .chain(developer_api_key)
        .chain(ingest_token)
        .chain(admin_token)
        .chain(event_log)
        .chain(signing)
        .chain(postgres)
        .chain(nats)
        .chain(sources)
    {
        if !names.contains(&reference.name) {
            names.push(reference.name.clone());
        }
    }
    names
}

fn jetstream_log(integration: &HubSpotIntegration) -> Option<&JetStreamLogSettings> {
    integration.spec.receiver.event_log.as_ref()?.jetstream.as_ref()
}

/// The event log section of the receiver config, with its Secret resolved.
pub fn event_log_config(
    integration: &HubSpotIntegration,
    secrets: &SecretStore,
) -> Result<EventLogConfig, SecretError> {
    let defaults = LogLimits::default();
    let settings = integration.spec.receiver.event_log.as_ref();
    if let Some(jetstream) = settings.and_then(|s| s.jetstream.as_ref()) {
        // The CRD requires exactly one of the two; without either the receiver refuses the
        // empty URL when it starts.
        let url = match &jetstream.url_secret {
            Some(reference) => secrets.value(reference)?,
            None => jetstream.url.clone().unwrap_or_default(),
        };
        return Ok(EventLogConfig::JetStream(JetStreamLogConfig {
            url,
            stream: jetstream.stream.clone(),
            subject: jetstream.subject.clone(),
            replicas: jetstream.replicas.map_or(1, usize::from),
            max_pending_events: jetstream.max_pending_events.unwrap_or(defaults.max_pending_events),
            max_pending_bytes: jetstream.max_pending_bytes.unwrap_or(defaults.max_pending_bytes),
            ack_wait_seconds: JetStreamLogConfig::DEFAULT_ACK_WAIT_SECONDS,
        }));
    }
    let embedded = settings.and_then(|s| s.embedded.as_ref());
    Ok(EventLogConfig::Embedded(LogLimits {
        max_pending_events: embedded.and_then(|e| e.max_pending_events).unwrap_or(defaults.max_pending_events),
        max_pending_bytes: embedded.and_then(|e| e.max_pending_bytes).unwrap_or(defaults.max_pending_bytes),
    }))
}

/// Whether `spec.receiver.admin` asks for the admin API on the pod network.
pub fn admin_exposed(integration: &HubSpotIntegration) -> bool {
    integration.spec.receiver.admin.as_ref().is_some_and(|a| a.exposed)
}

/// The admin section of the receiver config, with its token Secret resolved: loopback unless
/// exposed, and without a token unless one is referenced.
pub fn admin_config(integration: &HubSpotIntegration, secrets: &SecretStore) -> Result<AdminConfig, ConfigError> {
    let mut config = AdminConfig::default();
    let Some(settings) = &integration.spec.receiver.admin else {
        return Ok(config);
    };
    if let Some(reference) = &settings.token_secret_ref {
        let token = secrets.value(reference)?;
        // The receiver refuses an empty token at start; say so here, where the Secret is named.
        if token.is_empty() {
            return Err(ConfigError::AdminTokenEmpty { name: reference.name.clone(), key: reference.key.clone() });
        }
        config.token = Some(token);
    }
    if settings.exposed {
        config.listen = SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT));
    }
    Ok(config)
}

/// One mapping as the receiver reads it, with its destinations' Secrets resolved.
pub fn mapping_config(mapping: &PropertyMapping, secrets: &SecretStore) -> Result<MappingConfig, SecretError> {
    let mut sinks = Vec::new();
    for destination in &mapping.spec.destinations {
        if let Some(http) = &destination.http {
            let signing_secret = http.signing_secret.as_ref().map(|r| secrets.value(r)).transpose()?;
            sinks.push(SinkConfig::Http { url: http.url.clone(), signing_secret });
        }
        if let Some(file) = &destination.file {
            sinks.push(SinkConfig::File { path: file.path.clone().into() });
        }
        if let Some(postgres) = &destination.postgres {
            sinks.push(SinkConfig::Postgres {
                url: secrets.value(&postgres.connection_secret)?,
                table: postgres.table.clone(),
                create_table: postgres.create_table,
            });
        }
        if let Some(nats) = &destination.nats {
            // The CRD requires exactly one of the two; without either the receiver refuses the
            // empty URL when it starts.
            let url = match &nats.url_secret {
                Some(reference) => secrets.value(reference)?,
                None => nats.url.clone().unwrap_or_default(),
            };
            sinks.push(SinkConfig::Nats { url, subject: nats.subject.clone() });
        }
    }
    let mut sources = Vec::new();
    for source in &mapping.spec.sources {
        if let Some(postgres) = &source.postgres {
            sources.push(SourceConfig::Postgres {
                url: secrets.value(&postgres.connection_secret)?,
                table: postgres.table.clone(),
                query: postgres.query.clone(),
                cursor_column: postgres.cursor_column.clone(),
                interval_seconds: postgres.interval_seconds,
            });
        }
    }
    Ok(MappingConfig {
        name: qualified_name(mapping),
        object_type: mapping.spec.object_type.clone(),
        match_key: mapping.spec.match_key.clone(),
        fields: mapping.spec.fields.clone(),
        sinks,
        backfill: mapping.spec.backfill,
        conflict_policy: mapping.spec.conflict_policy,
        external_timestamp_field: mapping.spec.external_timestamp_field.clone(),
        sources,
        associations: mapping.spec.associations.clone(),
    })
}

/// How the receiver gets its HubSpot token.
#[derive(Clone, Debug)]
pub enum ReceiverToken {
    /// A private app token, written into the config.
    Static(String),
    /// An OAuth app's access token, read from the mounted managed Secret.
    File,
}

/// The receiver config of `integration`, from already-resolved secret values and mappings.
pub fn render_receiver_config(
    integration: &HubSpotIntegration,
    token: ReceiverToken,
    client_secret: &str,
    event_log: EventLogConfig,
    mappings: Vec<MappingConfig>,
) -> ReceiverConfig {
    let api = &integration.spec.api;
    ReceiverConfig {
        integration: qualified_name(integration),
        listen: SocketAddr::from(([0, 0, 0, 0], RECEIVER_PORT)),
        status_listen: SocketAddr::from(([0, 0, 0, 0], STATUS_PORT)),
        data_dir: DATA_DIR.into(),
        hubspot: HubSpotConnection {
            base_url: api.base_url.clone(),
            api_version: api.version.clone(),
            access_token: match &token {
                ReceiverToken::Static(token) => token.clone(),
                ReceiverToken::File => String::new(),
            },
            access_token_file: match token {
                ReceiverToken::Static(_) => None,
                ReceiverToken::File => Some(format!("{ACCESS_TOKEN_DIR}/{ACCESS_TOKEN_KEY}").into()),
            },
            tier: api.tier,
        },
        webhooks: WebhookConfig {
            client_secret: client_secret.to_string(),
            public_url: receiver_public_url(integration).as_deref().map(public_base_url),
            accept_legacy_signatures: false,
            max_body_bytes: 1024 * 1024,
        },
        event_log,
        ingest: None,
        mappings,
        admin: Default::default(),
        sync: model::config::SyncConfig::from(&integration.spec.receiver),
    }
}

/// The public URL is the full URL HubSpot calls; the receiver wants the base it puts in front
/// of the request path when checking signatures, so the webhook path comes off.
fn public_base_url(public_url: &str) -> String {
    let url = public_url.trim_end_matches('/');
    url.strip_suffix(WEBHOOK_PATH).unwrap_or(url).to_string()
}

/// Why no receiver config can be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("spec.webhooks is not set: the receiver needs the app's client secret to verify webhook signatures")]
    WebhooksNotConfigured,
    #[error("the admin API token, key {key:?} of Secret {name:?}, is empty")]
    AdminTokenEmpty { name: String, key: String },
}

impl ConfigError {
    /// The condition reason for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            ConfigError::Secret(e) => e.reason(),
            ConfigError::WebhooksNotConfigured => "WebhooksNotConfigured",
            ConfigError::AdminTokenEmpty { .. } => "AdminTokenEmpty",
        }
    }
}

/// Resolves every Secret the receiver config of `integration` needs and renders it, with the
/// mappings among `mappings` that reference the integration.
pub fn receiver_config<'a>(
    integration: &HubSpotIntegration,
    mappings: impl IntoIterator<Item = &'a PropertyMapping>,
    secrets: &SecretStore,
) -> Result<ReceiverConfig, ConfigError> {
    let token = match integration.spec.credentials.kind().map_err(SecretError::from)? {
        CredentialKind::PrivateAppToken(reference) => ReceiverToken::Static(secrets.value(reference)?),
        CredentialKind::OAuth(_) => ReceiverToken::File,
    };
    let webhooks = integration.spec.webhooks.as_ref().ok_or(ConfigError::WebhooksNotConfigured)?;
    let client_secret = secrets.value(&webhooks.client_secret)?;
    let event_log = event_log_config(integration, secrets)?;
    let mappings = mappings_of(integration, mappings)
        .into_iter()
        .map(|m| mapping_config(m, secrets))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = render_receiver_config(integration, token, client_secret.as_str(), event_log, mappings);
    config.ingest = match &integration.spec.receiver.ingest {
        Some(ingest) => Some(IngestConfig {
            token: secrets.value(&ingest.token_secret_ref)?,
            max_body_bytes: usize::try_from(ingest.max_body_bytes).unwrap_or(usize::MAX),
        }),
        None => None,
    };
    config.admin = admin_config(integration, secrets)?;
    Ok(config)
}

/// The config as the receiver reads it from its file.
pub fn config_yaml(config: &ReceiverConfig) -> String {
    serde_yaml::to_string(config).expect("the receiver config always serialises")
}

/// Hex SHA-256 of the rendered config file.
pub fn config_hash(config_yaml: &str) -> String {
    hex::encode(Sha256::digest(config_yaml.as_bytes()))
}

/// Labels of every child object; the first two also select the receiver pods.
pub fn receiver_labels(integration: &HubSpotIntegration) -> BTreeMap<String, String> {
    let mut labels = selector_labels(integration);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert("app.kubernetes.io/component".into(), "receiver".into());
    labels
}

fn selector_labels(integration: &HubSpotIntegration) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "hubspot-operator".to_string()),
        ("app.kubernetes.io/instance".to_string(), integration.name_any()),
    ])
}

fn child_metadata(integration: &HubSpotIntegration, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: integration.namespace(),
        labels: Some(receiver_labels(integration)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The Secret holding the rendered config file.
pub fn config_secret(integration: &HubSpotIntegration, owner: &OwnerReference, config_yaml: &str) -> Secret {
    Secret {
        metadata: child_metadata(integration, config_secret_name(integration), owner),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), ByteString(config_yaml.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The managed Secret holding an OAuth app's current access token, which the receiver pods
/// mount. Its annotations say when the token expires and when the operator replaces it
/// (RFC 3339 times).
pub fn access_token_secret(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    token: &str,
    refresh_at: Timestamp,
    expires_at: Timestamp,
) -> Secret {
    let mut metadata = child_metadata(integration, access_token_secret_name(integration), owner);
    metadata.annotations = Some(BTreeMap::from([
        (ACCESS_TOKEN_EXPIRES_AT_ANNOTATION.to_string(), expires_at.to_string()),
        (ACCESS_TOKEN_REFRESH_AT_ANNOTATION.to_string(), refresh_at.to_string()),
    ]));
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(ACCESS_TOKEN_KEY.to_string(), ByteString(token.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The ConfigMap holding `webhooks-hsmeta.json` (pretty-printed, as it goes into a project).
pub fn webhooks_hsmeta_config_map(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    hsmeta: &serde_json::Value,
) -> ConfigMap {
    let file = serde_json::to_string_pretty(hsmeta).expect("JSON values always serialise") + "\n";
    let mut metadata = child_metadata(integration, super::webhooks::hsmeta_config_map_name(integration), owner);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert("app.kubernetes.io/component".into(), "webhooks".into());
    }
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(super::webhooks::HSMETA_KEY.to_string(), file)])),
        ..Default::default()
    }
}

/// The access token in a managed access token Secret and when it is due for replacement, if
/// the Secret holds both.
pub fn stored_access_token(secret: &Secret) -> Option<(String, Timestamp)> {
    let refresh_at = secret.annotations().get(ACCESS_TOKEN_REFRESH_AT_ANNOTATION)?.parse().ok()?;
    let token = std::str::from_utf8(&secret.data.as_ref()?.get(ACCESS_TOKEN_KEY)?.0).ok()?.trim().to_string();
    (!token.is_empty()).then_some((token, refresh_at))
}

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
    let receiver = &integration.spec.receiver;
    let oauth = integration.spec.credentials.oauth.is_some();
    let http_probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    // Nothing when traces are not exported, so such pods stay as they were.
    let env = (!trace_env.is_empty()).then(|| {
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
    });
    let container = Container {
        name: "receiver".into(),
        image: Some(receiver.image.clone().unwrap_or_else(|| default_image.to_string())),
        args: Some(vec!["receiver".into(), "--config".into(), format!("{CONFIG_DIR}/{CONFIG_KEY}")]),
        env,
        ports: Some(
            [container_port("http", RECEIVER_PORT), container_port("metrics", STATUS_PORT)]
                .into_iter()
                .chain(admin_exposed(integration).then(|| container_port("admin", ADMIN_PORT)))
                .collect(),
        ),
        liveness_probe: Some(http_probe("/healthz")),
        readiness_probe: Some(http_probe("/readyz")),
        resources: receiver.resources.clone(),
        volume_mounts: Some(
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
            .collect(),
        ),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
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
        volumes: Some(
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
            .collect(),
        ),
        ..Default::default()
    };
    let storage = &receiver.storage;
    let data_claim = PersistentVolumeClaim {
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
    };
    StatefulSet {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(receiver.replicas),
            // The receiver needs no per-pod DNS names; the StatefulSet only has to name a Service.
            service_name: Some(receiver_name(integration)),
            // Each pod has its own log and needs no peer to start, so none waits for another.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            selector: LabelSelector { match_labels: Some(selector_labels(integration)), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(receiver_labels(integration)),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![data_claim]),
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

/// The receiver's NetworkPolicy: ingress to the receiver port from anywhere, since HubSpot's
/// requests arrive through whatever ingress or gateway the cluster runs, and to the status port
/// from anywhere, since Prometheus and the controller (`/sync/status`) run in namespaces of
/// their own; to an exposed admin port only from the peers `spec.receiver.admin.allowedFrom`
/// lists. Egress stays open: the receiver calls the HubSpot API and the mappings'
/// destinations, which can be anywhere.
pub fn receiver_network_policy(integration: &HubSpotIntegration, owner: &OwnerReference) -> NetworkPolicy {
    let tcp_port = |port: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let receiver_rule =
        NetworkPolicyIngressRule { from: None, ports: Some(vec![tcp_port(RECEIVER_PORT), tcp_port(STATUS_PORT)]) };
    // A rule with no peers would admit everyone, so without peers there is no admin rule at
    // all: nothing reaches the port from the network (port-forward does not pass the policy).
    let admin_peers = integration.spec.receiver.admin.as_ref().map(|a| &a.allowed_from).filter(|p| !p.is_empty());
    let admin_rule = admin_peers
        .filter(|_| admin_exposed(integration))
        .map(|peers| NetworkPolicyIngressRule { from: Some(peers.clone()), ports: Some(vec![tcp_port(ADMIN_PORT)]) });
    NetworkPolicy {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(integration)),
                ..Default::default()
            }),
            // Only `Ingress` is listed, so the policy leaves egress alone.
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(std::iter::once(receiver_rule).chain(admin_rule).collect()),
            ..Default::default()
        }),
    }
}

/// Whether `meta` is that of an object the operator created for `integration` under the
/// receiver's name: our managed-by label, and the integration as its owner. Only such objects
/// are ever deleted (the receiver Deployment of earlier versions, an Ingress or HTTPRoute the
/// spec no longer asks for).
pub fn is_own_receiver_object(integration: &HubSpotIntegration, meta: &ObjectMeta) -> bool {
    let managed_by_us =
        meta.labels.as_ref().and_then(|labels| labels.get(MANAGED_BY_LABEL)).is_some_and(|v| v == MANAGED_BY);
    let owned_by_integration = integration.metadata.uid.as_ref().is_some_and(|uid| {
        meta.owner_references.iter().flatten().any(|o| &o.uid == uid && o.kind == "HubSpotIntegration")
    });
    meta.name.as_deref() == Some(receiver_name(integration).as_str()) && managed_by_us && owned_by_integration
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

/// The ClusterIP Service in front of the receiver pods: port 80 to the container's `http` port
/// (what the Ingress and HTTPRoute route to), port 8081 to its `metrics` port (Prometheus, and
/// the EndpointSlices the controller finds the pods' sync reports by), and with the admin API
/// exposed, port 8082 to its `admin` port.
pub fn receiver_service(integration: &HubSpotIntegration, owner: &OwnerReference) -> Service {
    let service_port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let admin = admin_exposed(integration).then(|| service_port("admin", ADMIN_PORT.into()));
    Service {
        metadata: child_metadata(integration, receiver_name(integration), owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(integration)),
            ports: Some(
                [service_port("http", RECEIVER_SERVICE_PORT), service_port("metrics", STATUS_PORT.into())]
                    .into_iter()
                    .chain(admin)
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The receiver's Ingress, when `spec.receiver.ingress` asks for one: `path` on `host` to the
/// receiver Service, with TLS for `host` from `tlsSecretName`.
pub fn receiver_ingress(integration: &HubSpotIntegration, owner: &OwnerReference) -> Option<Ingress> {
    let settings = integration.spec.receiver.ingress.as_ref()?;
    let mut metadata = child_metadata(integration, receiver_name(integration), owner);
    metadata.annotations = (!settings.annotations.is_empty()).then(|| settings.annotations.clone());
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: receiver_name(integration),
            port: Some(ServiceBackendPort { number: Some(RECEIVER_SERVICE_PORT), name: None }),
        }),
        resource: None,
    };
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: settings.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: settings.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: routed_paths(&settings.path)
                        .into_iter()
                        .map(|path| HTTPIngressPath {
                            path: Some(path),
                            path_type: settings.path_type.as_str().into(),
                            backend: backend.clone(),
                        })
                        .collect(),
                }),
            }]),
            tls: settings.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: settings.host.clone().map(|host| vec![host]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            default_backend: None,
        }),
        status: None,
    })
}

/// The paths an Ingress or HTTPRoute routes for the `path` a user set: `/` stands for
/// everything the receiver serves to the outside (webhooks and the ingest API), not the whole
/// port, whose probes stay in the cluster.
fn routed_paths(path: &str) -> Vec<String> {
    if path.trim_end_matches('/').is_empty() {
        PUBLIC_PATH_PREFIXES.map(String::from).to_vec()
    } else {
        vec![path.to_string()]
    }
}

/// The Gateway API's `gateway.networking.k8s.io/v1` HTTPRoute, which k8s-openapi does not
/// model; clusters without the Gateway API CRDs answer 404 for it.
pub fn http_route_resource() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// The receiver's HTTPRoute, when `spec.receiver.httpRoute` asks for one: requests for
/// `hostnames` under the path prefix, attached to `parentRefs`, to the receiver Service.
pub fn receiver_http_route(integration: &HubSpotIntegration, owner: &OwnerReference) -> Option<DynamicObject> {
    let settings = integration.spec.receiver.http_route.as_ref()?;
    let mut metadata = child_metadata(integration, receiver_name(integration), owner);
    metadata.annotations = (!settings.annotations.is_empty()).then(|| settings.annotations.clone());
    let parent_refs: Vec<serde_json::Value> = settings
        .parent_refs
        .iter()
        .map(|parent| {
            let mut reference = serde_json::json!({ "name": parent.name });
            if let Some(namespace) = &parent.namespace {
                reference["namespace"] = namespace.as_str().into();
            }
            if let Some(section) = &parent.section_name {
                reference["sectionName"] = section.as_str().into();
            }
            reference
        })
        .collect();
    let mut spec = serde_json::json!({
        "parentRefs": parent_refs,
        "rules": [{
            "matches": routed_paths(&settings.path)
                .into_iter()
                .map(|path| serde_json::json!({ "path": { "type": "PathPrefix", "value": path } }))
                .collect::<Vec<_>>(),
            "backendRefs": [{ "name": receiver_name(integration), "port": RECEIVER_SERVICE_PORT }],
        }],
    });
    if !settings.hostnames.is_empty() {
        spec["hostnames"] = serde_json::json!(settings.hostnames);
    }
    let mut route = DynamicObject::new(&receiver_name(integration), &http_route_resource());
    route.metadata = metadata;
    route.data = serde_json::json!({ "spec": spec });
    Some(route)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use kube::Resource;

    use super::*;
    use model::api::SecretKeyRef;
    use model::api::integration::{
        Credentials, EmbeddedLogSettings, EventLogSettings, GatewayParentRef, HubSpotIntegrationSpec, IngressPathType,
        ReceiverHttpRoute, ReceiverIngress, WebhookSettings,
    };
    use model::api::mapping::{
        Destination, Direction, FieldMapping, FileDestination, HttpDestination, IntegrationRef, MatchKey,
        NatsDestination, PostgresDestination, PropertyMappingSpec,
    };

    fn integration() -> HubSpotIntegration {
        let mut i = HubSpotIntegration::new(
            "crm",
            HubSpotIntegrationSpec {
                portal_id: Some(62515),
                api: Default::default(),
                credentials: Credentials {
                    private_app_token: Some(SecretKeyRef { name: "hubspot".into(), key: "token".into() }),
                    oauth: None,
                },
                required_scopes: vec![],
                webhooks: Some(WebhookSettings {
                    client_secret: SecretKeyRef { name: "hubspot".into(), key: "client-secret".into() },
                    public_url: Some("https://hooks.example.com/webhooks/hubspot".into()),
                    subscriptions: vec![],
                    max_concurrent_requests: None,
                    management: None,
                }),
                receiver: Default::default(),
            },
        );
        i.metadata.namespace = Some("sales".into());
        i.metadata.uid = Some("0b5c2a8e-1111-2222-3333-444455556666".into());
        i
    }

    fn mapping(name: &str, integration: &str, destinations: Vec<Destination>) -> PropertyMapping {
        let mut m = PropertyMapping::new(
            name,
            PropertyMappingSpec {
                backfill: true,
                integration_ref: IntegrationRef { name: integration.into() },
                object_type: "contacts".into(),
                match_key: MatchKey { hubspot_property: "email".into(), external_field: "email".into() },
                fields: vec![FieldMapping {
                    hubspot_property: "firstname".into(),
                    external_field: "first_name".into(),
                    direction: Direction::ToExternal,
                }],
                associations: vec![],
                destinations,
                conflict_policy: Default::default(),
                external_timestamp_field: None,
                sources: vec![],
            },
        );
        m.metadata.namespace = Some("sales".into());
        m
    }

    fn secrets() -> SecretStore {
        let mut s = Secret::default();
        s.metadata.name = Some("hubspot".into());
        s.string_data = Some(BTreeMap::from([
            ("token".into(), "pat-na1-token".into()),
            ("client-secret".into(), "client-secret-value".into()),
        ]));
        let mut signing = Secret::default();
        signing.metadata.name = Some("sink-signing".into());
        signing.string_data = Some(BTreeMap::from([("key".into(), "sign-me".into())]));
        SecretStore::new([s, signing])
    }

    fn owner(i: &HubSpotIntegration) -> OwnerReference {
        i.controller_owner_ref(&()).unwrap()
    }

    fn http_destination(signing: Option<&str>) -> Destination {
        Destination {
            http: Some(HttpDestination {
                url: "https://crm.example.com/ingest".into(),
                signing_secret: signing.map(|name| SecretKeyRef { name: name.into(), key: "key".into() }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn renders_config_with_resolved_secrets_and_only_this_integrations_mappings() {
        let i = integration();
        let mappings = [
            mapping("z-contacts", "crm", vec![http_destination(Some("sink-signing"))]),
            mapping(
                "a-file",
                "crm",
                vec![Destination { file: Some(FileDestination { path: "out.jsonl".into() }), ..Default::default() }],
            ),
            mapping("other", "another-integration", vec![]),
        ];
        let config = receiver_config(&i, &mappings, &secrets()).unwrap();
        assert_eq!(config.integration, "sales/crm");
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.status_listen.to_string(), "0.0.0.0:8081");
        assert_eq!(config.data_dir.to_str(), Some("/var/lib/hubspot-operator"));
        assert_eq!(config.hubspot.access_token, "pat-na1-token");
        assert_eq!(config.hubspot.base_url, "https://api.hubapi.com");
        assert_eq!(config.hubspot.api_version, "v3");
        assert_eq!(config.webhooks.client_secret, "client-secret-value");
        assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"));
        let names: Vec<&str> = config.mappings.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["sales/a-file", "sales/z-contacts"]);
        assert_eq!(config.mappings[0].sinks, [SinkConfig::File { path: "out.jsonl".into() }]);
        assert_eq!(
            config.mappings[1].sinks,
            [SinkConfig::Http { url: "https://crm.example.com/ingest".into(), signing_secret: Some("sign-me".into()) }]
        );
        // The rendered file is what `receiver --config` loads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_KEY);
        std::fs::write(&path, config_yaml(&config)).unwrap();
        assert_eq!(ReceiverConfig::load(&path).unwrap(), config);
    }

    #[test]
    fn ingest_token_and_conflict_policy_are_rendered_when_set() {
        let mut i = integration();
        let config = receiver_config(&i, &[], &secrets()).unwrap();
        assert_eq!(config.ingest, None, "the ingest API is off unless spec.receiver.ingest is set");

        i.spec.receiver.ingest = Some(model::api::integration::IngestSettings {
            token_secret_ref: SecretKeyRef { name: "sink-signing".into(), key: "key".into() },
            max_body_bytes: 65536,
        });
        let mut m = mapping("contacts", "crm", vec![]);
        m.spec.sources = vec![model::api::mapping::Source {
            postgres: Some(model::api::mapping::PostgresSource {
                connection_secret: SecretKeyRef { name: "hubspot".into(), key: "token".into() },
                table: Some("crm.contacts".into()),
                query: None,
                cursor_column: "updated_at".into(),
                interval_seconds: 15,
            }),
        }];
        m.spec.conflict_policy = model::api::mapping::ConflictPolicy::HubspotWins;
        m.spec.external_timestamp_field = Some("updated_at".into());
        let mappings = [m];
        assert!(referenced_secret_names(&i, &mappings_of(&i, &mappings)).contains(&"sink-signing".to_string()));
        let config = receiver_config(&i, &mappings, &secrets()).unwrap();
        assert_eq!(config.ingest, Some(IngestConfig { token: "sign-me".into(), max_body_bytes: 65536 }));
        assert_eq!(config.mappings[0].conflict_policy, model::api::mapping::ConflictPolicy::HubspotWins);
        assert_eq!(config.mappings[0].external_timestamp_field.as_deref(), Some("updated_at"));
        assert_eq!(
            config.mappings[0].sources,
            [SourceConfig::Postgres {
                url: "pat-na1-token".into(),
                table: Some("crm.contacts".into()),
                query: None,
                cursor_column: "updated_at".into(),
                interval_seconds: 15,
            }]
        );

        i.spec.receiver.ingest.as_mut().unwrap().token_secret_ref.name = "absent".into();
        assert!(receiver_config(&i, &mappings, &secrets()).is_err(), "a missing token Secret is an error");
    }

    #[test]
    fn public_url_becomes_the_base_the_receiver_prefixes_to_the_request_path() {
        assert_eq!(public_base_url("https://hooks.example.com/webhooks/hubspot"), "https://hooks.example.com");
        assert_eq!(public_base_url("https://hooks.example.com/webhooks/hubspot/"), "https://hooks.example.com");
        assert_eq!(public_base_url("https://example.com/hs/webhooks/hubspot"), "https://example.com/hs");
        assert_eq!(public_base_url("https://hooks.example.com"), "https://hooks.example.com");
    }

    #[test]
    fn missing_destination_secret_or_webhooks_prevent_rendering() {
        let i = integration();
        let mappings = [mapping("contacts", "crm", vec![http_destination(Some("absent"))])];
        let err = receiver_config(&i, &mappings, &secrets()).unwrap_err();
        assert_eq!(err.reason(), "SecretNotFound");
        assert_eq!(err.to_string(), r#"Secret "absent" not found"#);

        let mut no_webhooks = integration();
        no_webhooks.spec.webhooks = None;
        let err = receiver_config(&no_webhooks, &[], &secrets()).unwrap_err();
        assert_eq!(err, ConfigError::WebhooksNotConfigured);
    }

    #[test]
    fn postgres_and_nats_destinations_resolve_their_secrets() {
        let mut store = secrets();
        store.insert_values(
            "warehouse",
            BTreeMap::from([
                ("dsn".into(), "postgres://sync:pw@db:5432/crm\n".into()),
                ("nats-url".into(), "nats://user:pw@nats:4222".into()),
            ]),
        );
        let postgres = PostgresDestination {
            connection_secret: SecretKeyRef { name: "warehouse".into(), key: "dsn".into() },
            table: "crm.contacts".into(),
            create_table: true,
        };
        let nats = |url: Option<&str>, secret: Option<&str>| NatsDestination {
            url: url.map(Into::into),
            url_secret: secret.map(|key| SecretKeyRef { name: "warehouse".into(), key: key.into() }),
            subject: "crm.contacts".into(),
        };
        let m = mapping(
            "contacts",
            "crm",
            vec![
                Destination { postgres: Some(postgres), ..Default::default() },
                Destination { nats: Some(nats(None, Some("nats-url"))), ..Default::default() },
                Destination { nats: Some(nats(Some("nats://nats:4222"), None)), ..Default::default() },
            ],
        );
        assert_eq!(referenced_secret_names(&integration(), &[&m]), ["hubspot", "warehouse"]);
        let config = mapping_config(&m, &store).unwrap();
        assert_eq!(
            config.sinks,
            [
                SinkConfig::Postgres {
                    url: "postgres://sync:pw@db:5432/crm".into(),
                    table: "crm.contacts".into(),
                    create_table: true,
                },
                SinkConfig::Nats { url: "nats://user:pw@nats:4222".into(), subject: "crm.contacts".into() },
                SinkConfig::Nats { url: "nats://nats:4222".into(), subject: "crm.contacts".into() },
            ]
        );
        // Connection strings stay out of debug output.
        assert!(!format!("{config:?}").contains("pw"), "{config:?}");

        let missing = mapping(
            "contacts",
            "crm",
            vec![Destination { nats: Some(nats(None, Some("absent-key"))), ..Default::default() }],
        );
        assert_eq!(mapping_config(&missing, &store).unwrap_err().reason(), "SecretKeyMissing");
    }

    #[test]
    fn referenced_secrets_are_listed_once_in_first_use_order() {
        let i = integration();
        let m1 = mapping("a", "crm", vec![http_destination(Some("sink-signing")), http_destination(None)]);
        let m2 = mapping("b", "crm", vec![http_destination(Some("hubspot"))]);
        assert_eq!(referenced_secret_names(&i, &[&m1, &m2]), ["hubspot", "sink-signing"]);
    }

    #[test]
    fn statefulset_runs_the_receiver_restricted_with_the_config_mounted() {
        let i = integration();
        let sts = receiver_statefulset(&i, &owner(&i), "ghcr.io/hubspot-operator/hubspot-operator:0.1.0", "abc", &[]);
        assert_eq!(sts.metadata.name.as_deref(), Some("crm-receiver"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("sales"));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("crm-receiver"));
        assert_eq!(spec.update_strategy.unwrap().type_.as_deref(), Some("RollingUpdate"));
        let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(template_labels.get(k), Some(v), "selector label {k} must be on the pods");
        }
        assert_eq!(template_labels["app.kubernetes.io/component"], "receiver");
        assert_eq!(template_labels["app.kubernetes.io/managed-by"], "hubspot-operator");
        assert_eq!(template_labels["app.kubernetes.io/instance"], "crm");
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let pod_sc = pod.security_context.unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!((pod_sc.run_as_user, pod_sc.run_as_group), (Some(65532), Some(65532)));
        assert_eq!(pod_sc.fs_group, Some(65532), "the non-root user must be able to write the volume");
        assert_eq!(pod_sc.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
        assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/hubspot-operator/hubspot-operator:0.1.0"));
        assert_eq!(c.args.as_deref().unwrap(), ["receiver", "--config", "/etc/hubspot-operator/config.yaml"]);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(), ["ALL"]);
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let ports: Vec<_> =
            c.ports.as_ref().unwrap().iter().map(|p| (p.name.as_deref().unwrap(), p.container_port)).collect();
        assert_eq!(ports, [("http", 8080), ("metrics", 8081)]);
        let probe_port = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().port.clone();
        assert_eq!(probe_port(&c.liveness_probe), IntOrString::String("http".into()), "what the kubelet probes");
        assert_eq!(probe_port(&c.readiness_probe), IntOrString::String("http".into()));
        let probe_path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone().unwrap();
        assert_eq!(probe_path(&c.liveness_probe), "/healthz");
        assert_eq!(probe_path(&c.readiness_probe), "/readyz");
        let mounts = c.volume_mounts.as_ref().unwrap();
        let config_mount = mounts.iter().find(|m| m.mount_path == CONFIG_DIR).unwrap();
        assert_eq!(config_mount.read_only, Some(true));
        let volumes = pod.volumes.unwrap();
        let config_volume = volumes.iter().find(|v| v.name == config_mount.name).unwrap();
        assert_eq!(config_volume.secret.as_ref().unwrap().secret_name.as_deref(), Some("crm-receiver-config"));
        // The data directory is the claim template's volume, not a pod volume such as emptyDir.
        let data_mount = mounts.iter().find(|m| m.mount_path == DATA_DIR).unwrap();
        assert_eq!(data_mount.read_only, None);
        assert!(volumes.iter().all(|v| v.name != data_mount.name), "{volumes:?}");
        let claims = spec.volume_claim_templates.unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some(data_mount.name.as_str()));
    }

    #[test]
    fn data_volume_claim_follows_the_storage_settings() {
        let claim = |i: &HubSpotIntegration| {
            let sts = receiver_statefulset(i, &owner(i), "img", "h", &[]);
            let spec = sts.spec.unwrap();
            let retention = spec.persistent_volume_claim_retention_policy.unwrap();
            assert_eq!(
                (retention.when_deleted.as_deref(), retention.when_scaled.as_deref()),
                (Some("Retain"), Some("Retain"))
            );
            spec.volume_claim_templates.unwrap().remove(0)
        };
        let i = integration();
        let default = claim(&i);
        assert_eq!(default.metadata.name.as_deref(), Some("data"));
        let spec = default.spec.unwrap();
        assert_eq!(spec.access_modes.as_deref().unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("1Gi".into()));
        assert_eq!(spec.storage_class_name, None, "the cluster's default class");

        let mut sized = integration();
        sized.spec.receiver.storage.size = "20Gi".into();
        sized.spec.receiver.storage.storage_class_name = Some("fast-ssd".into());
        let spec = claim(&sized).spec.unwrap();
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("20Gi".into()));
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast-ssd"));
    }

    #[test]
    fn storage_settings_default_when_the_manifest_omits_them() {
        let spec: HubSpotIntegrationSpec = serde_yaml::from_str(
            "credentials: {privateAppToken: {name: hubspot, key: token}}\nreceiver: {replicas: 1}\n",
        )
        .unwrap();
        assert_eq!(spec.receiver.storage.size, "1Gi");
        assert_eq!(spec.receiver.storage.storage_class_name, None);
        let spec: HubSpotIntegrationSpec = serde_yaml::from_str(
            "credentials: {privateAppToken: {name: hubspot, key: token}}\nreceiver: {storage: {storageClassName: gp3}}\n",
        )
        .unwrap();
        assert_eq!(spec.receiver.storage.size, "1Gi");
        assert_eq!(spec.receiver.storage.storage_class_name.as_deref(), Some("gp3"));
    }

    #[test]
    fn image_and_replicas_come_from_the_spec_when_set() {
        let mut i = integration();
        i.spec.receiver.image = Some("registry.example.com/receiver:pinned".into());
        i.spec.receiver.replicas = 0;
        let sts = receiver_statefulset(&i, &owner(&i), "default:image", "abc", &[]);
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        assert_eq!(
            spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("registry.example.com/receiver:pinned")
        );
    }

    #[test]
    fn receiver_pods_get_the_operators_trace_settings_and_name_their_integration() {
        let i = integration();
        let env = |trace_env: &[(String, String)]| {
            let sts = receiver_statefulset(&i, &owner(&i), "img", "h", trace_env);
            sts.spec.unwrap().template.spec.unwrap().containers[0].env.clone()
        };
        assert_eq!(env(&[]), None, "without trace export the pods are as before");
        let trace_env = [("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), "http://collector:4318".to_string())];
        let rendered: Vec<(String, Option<String>)> =
            env(&trace_env).unwrap().into_iter().map(|var| (var.name, var.value)).collect();
        assert_eq!(
            rendered,
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), Some("http://collector:4318".to_string())),
                (
                    "OTEL_RESOURCE_ATTRIBUTES".to_string(),
                    Some(format!("k8s.namespace.name={},hubspot.integration=crm", i.namespace().unwrap()))
                ),
            ]
        );
    }

    #[test]
    fn config_hash_annotation_follows_the_rendered_config() {
        let i = integration();
        let config = receiver_config(&i, &[], &secrets()).unwrap();
        let mut rotated = config.clone();
        rotated.hubspot.access_token = "pat-na1-rotated".into();
        let annotation = |cfg: &ReceiverConfig| {
            let sts = receiver_statefulset(&i, &owner(&i), "img", &config_hash(&config_yaml(cfg)), &[]);
            sts.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        assert_eq!(annotation(&config), annotation(&config.clone()), "same config, same hash");
        assert_ne!(annotation(&config), annotation(&rotated), "a changed config rolls the pods");
        assert_eq!(annotation(&config).len(), 64);
    }

    #[test]
    fn disruption_budget_lets_one_receiver_pod_go_at_a_time() {
        let i = integration();
        let pdb = receiver_pod_disruption_budget(&i, &owner(&i));
        assert_eq!(pdb.metadata.name.as_deref(), Some("crm-receiver"));
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None, "minAvailable 1 would block every drain of a single replica");
        assert_eq!(spec.unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
        let sts = receiver_statefulset(&i, &owner(&i), "img", "h", &[]).spec.unwrap();
        assert_eq!(spec.selector.unwrap().match_labels, sts.selector.match_labels, "selects the receiver pods");
    }

    #[test]
    fn network_policy_admits_the_receiver_and_status_ports_and_leaves_egress_open() {
        let i = integration();
        let policy = receiver_network_policy(&i, &owner(&i));
        assert_eq!(policy.metadata.name.as_deref(), Some("crm-receiver"));
        let spec = policy.spec.unwrap();
        let sts = receiver_statefulset(&i, &owner(&i), "img", "h", &[]).spec.unwrap();
        assert_eq!(spec.pod_selector.unwrap().match_labels, sts.selector.match_labels, "selects the receiver pods");
        assert_eq!(spec.policy_types.as_deref().unwrap(), ["Ingress"], "egress is not restricted");
        assert_eq!(spec.egress, None);
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].from, None,
            "from anywhere: HubSpot comes through the cluster's ingress, Prometheus and the controller from other namespaces"
        );
        let ports: Vec<_> = rules[0].ports.iter().flatten().map(|p| (p.port.clone(), p.protocol.as_deref())).collect();
        assert_eq!(ports, [(Some(IntOrString::Int(8080)), Some("TCP")), (Some(IntOrString::Int(8081)), Some("TCP"))]);
    }

    /// Labels and owner reference every receiver object of `crm` in `sales` carries, as JSON.
    fn receiver_object_metadata(annotations: Option<serde_json::Value>) -> serde_json::Value {
        let mut metadata = serde_json::json!({
            "name": "crm-receiver",
            "namespace": "sales",
            "labels": {
                "app.kubernetes.io/component": "receiver",
                "app.kubernetes.io/instance": "crm",
                "app.kubernetes.io/managed-by": "hubspot-operator",
                "app.kubernetes.io/name": "hubspot-operator",
            },
            "ownerReferences": [{
                "apiVersion": "hubspot.io/v1alpha1", "kind": "HubSpotIntegration", "name": "crm",
                "uid": "0b5c2a8e-1111-2222-3333-444455556666", "controller": true,
            }],
        });
        if let Some(annotations) = annotations {
            metadata["annotations"] = annotations;
        }
        metadata
    }

    fn ingress_settings() -> ReceiverIngress {
        ReceiverIngress {
            class_name: Some("nginx".into()),
            host: Some("hooks.example.com".into()),
            path: WEBHOOK_PATH.into(),
            path_type: IngressPathType::Prefix,
            tls_secret_name: Some("hooks-tls".into()),
            annotations: BTreeMap::from([("cert-manager.io/cluster-issuer".into(), "letsencrypt".into())]),
        }
    }

    fn http_route_settings() -> ReceiverHttpRoute {
        ReceiverHttpRoute {
            parent_refs: vec![
                GatewayParentRef {
                    name: "public".into(),
                    namespace: Some("gateways".into()),
                    section_name: Some("https".into()),
                },
                GatewayParentRef { name: "internal".into(), namespace: None, section_name: None },
            ],
            hostnames: vec!["hooks.example.com".into()],
            path: "/webhooks".into(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn ingress_routes_the_host_and_path_to_the_receiver_service_with_tls() {
        let mut i = integration();
        assert!(receiver_ingress(&i, &owner(&i)).is_none(), "no Ingress unless asked for");
        i.spec.receiver.ingress = Some(ingress_settings());
        let ingress = receiver_ingress(&i, &owner(&i)).unwrap();
        assert_eq!(
            serde_json::to_value(&ingress).unwrap(),
            serde_json::json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": receiver_object_metadata(Some(serde_json::json!({ "cert-manager.io/cluster-issuer": "letsencrypt" }))),
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [{
                        "host": "hooks.example.com",
                        "http": { "paths": [{
                            "path": "/webhooks/hubspot",
                            "pathType": "Prefix",
                            "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                        }] },
                    }],
                    "tls": [{ "hosts": ["hooks.example.com"], "secretName": "hooks-tls" }],
                },
            })
        );
        let service = receiver_service(&i, &owner(&i));
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, RECEIVER_SERVICE_PORT, "the Service's port");
    }

    #[test]
    fn a_bare_ingress_serves_every_host_of_the_default_class_without_tls() {
        let mut i = integration();
        i.spec.receiver.ingress = Some(ReceiverIngress {
            class_name: None,
            host: None,
            path: "/".into(),
            path_type: IngressPathType::ImplementationSpecific,
            tls_secret_name: None,
            annotations: BTreeMap::new(),
        });
        assert_eq!(
            serde_json::to_value(receiver_ingress(&i, &owner(&i)).unwrap()).unwrap(),
            serde_json::json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": receiver_object_metadata(None),
                "spec": {
                    "rules": [{
                        "http": { "paths": [
                            {
                                "path": "/webhooks",
                                "pathType": "ImplementationSpecific",
                                "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                            },
                            {
                                "path": "/ingest",
                                "pathType": "ImplementationSpecific",
                                "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } },
                            },
                        ] },
                    }],
                },
            })
        );
    }

    #[test]
    fn http_route_attaches_the_receiver_service_to_its_gateways() {
        let mut i = integration();
        assert!(receiver_http_route(&i, &owner(&i)).is_none(), "no HTTPRoute unless asked for");
        let mut settings = http_route_settings();
        settings.annotations = BTreeMap::from([("team".into(), "platform".into())]);
        i.spec.receiver.http_route = Some(settings);
        assert_eq!(
            serde_json::to_value(receiver_http_route(&i, &owner(&i)).unwrap()).unwrap(),
            serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": receiver_object_metadata(Some(serde_json::json!({ "team": "platform" }))),
                "spec": {
                    "parentRefs": [
                        { "name": "public", "namespace": "gateways", "sectionName": "https" },
                        { "name": "internal" },
                    ],
                    "hostnames": ["hooks.example.com"],
                    "rules": [{
                        "matches": [{ "path": { "type": "PathPrefix", "value": "/webhooks" } }],
                        "backendRefs": [{ "name": "crm-receiver", "port": 80 }],
                    }],
                },
            })
        );
        i.spec.receiver.http_route.as_mut().unwrap().hostnames.clear();
        let route = serde_json::to_value(receiver_http_route(&i, &owner(&i)).unwrap()).unwrap();
        assert!(route["spec"].get("hostnames").is_none(), "the Gateway's listeners decide: {route}");
        // `/` routes what the receiver serves outside, not its metrics and sync status.
        i.spec.receiver.http_route.as_mut().unwrap().path = "/".into();
        let route = serde_json::to_value(receiver_http_route(&i, &owner(&i)).unwrap()).unwrap();
        assert_eq!(
            route["spec"]["rules"][0]["matches"],
            serde_json::json!([
                { "path": { "type": "PathPrefix", "value": "/webhooks" } },
                { "path": { "type": "PathPrefix", "value": "/ingest" } },
            ])
        );
    }

    #[test]
    fn public_url_comes_from_the_spec_else_the_ingress_or_http_route_host() {
        let mut i = integration();
        i.spec.receiver.ingress = Some(ingress_settings());
        assert_eq!(
            receiver_public_url(&i).as_deref(),
            Some("https://hooks.example.com/webhooks/hubspot"),
            "publicUrl wins"
        );
        i.spec.webhooks.as_mut().unwrap().public_url = Some("https://proxy.example.com/hs/webhooks/hubspot".into());
        assert_eq!(receiver_public_url(&i).as_deref(), Some("https://proxy.example.com/hs/webhooks/hubspot"));

        i.spec.webhooks.as_mut().unwrap().public_url = None;
        let ingress = i.spec.receiver.ingress.as_mut().unwrap();
        // The path only routes: requests reach the receiver unchanged, at its webhook path.
        ingress.path = "/".into();
        assert_eq!(receiver_public_url(&i).as_deref(), Some("https://hooks.example.com/webhooks/hubspot"));
        i.spec.receiver.ingress.as_mut().unwrap().tls_secret_name = None;
        assert_eq!(receiver_public_url(&i).as_deref(), Some("http://hooks.example.com/webhooks/hubspot"));
        i.spec.receiver.ingress.as_mut().unwrap().host = Some("*.example.com".into());
        assert_eq!(receiver_public_url(&i), None, "a wildcard host names no URL");
        i.spec.receiver.ingress.as_mut().unwrap().host = None;
        assert_eq!(receiver_public_url(&i), None);

        i.spec.receiver.ingress = None;
        let mut route = http_route_settings();
        route.hostnames = vec!["*.example.com".into(), "hooks.example.com".into()];
        i.spec.receiver.http_route = Some(route);
        assert_eq!(receiver_public_url(&i).as_deref(), Some("https://hooks.example.com/webhooks/hubspot"));
        let config = receiver_config(&i, &[], &secrets()).unwrap();
        assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"), "the signed base");
        i.spec.receiver.http_route.as_mut().unwrap().hostnames.clear();
        assert_eq!(receiver_public_url(&i), None);
        assert_eq!(receiver_config(&i, &[], &secrets()).unwrap().webhooks.public_url, None);
    }

    #[test]
    fn only_objects_of_our_own_count_as_the_receivers() {
        let i = integration();
        let ours = || child_metadata(&i, receiver_name(&i), &owner(&i));
        assert!(is_own_receiver_object(&i, &ours()));

        let mut unlabelled = ours();
        unlabelled.labels.as_mut().unwrap().remove(MANAGED_BY_LABEL);
        assert!(!is_own_receiver_object(&i, &unlabelled));
        let mut managed_by_someone_else = ours();
        managed_by_someone_else.labels.as_mut().unwrap().insert(MANAGED_BY_LABEL.into(), "helm".into());
        assert!(!is_own_receiver_object(&i, &managed_by_someone_else));
        let mut other_owner = ours();
        other_owner.owner_references.as_mut().unwrap()[0].uid = "another-uid".into();
        assert!(!is_own_receiver_object(&i, &other_owner));
        let mut unowned = ours();
        unowned.owner_references = None;
        assert!(!is_own_receiver_object(&i, &unowned));
        let mut other_name = ours();
        other_name.name = Some("crm-receiver-v2".into());
        assert!(!is_own_receiver_object(&i, &other_name));
    }

    #[test]
    fn every_child_is_controlled_by_the_integration() {
        let i = integration();
        let o = owner(&i);
        let mut exposed = i.clone();
        exposed.spec.receiver.ingress = Some(ingress_settings());
        exposed.spec.receiver.http_route = Some(http_route_settings());
        let children = [
            config_secret(&i, &o, "x").metadata,
            receiver_statefulset(&i, &o, "img", "h", &[]).metadata,
            receiver_service(&i, &o).metadata,
            receiver_pod_disruption_budget(&i, &o).metadata,
            receiver_network_policy(&i, &o).metadata,
            receiver_ingress(&exposed, &o).unwrap().metadata,
            receiver_http_route(&exposed, &o).unwrap().metadata,
        ];
        for meta in children {
            let refs = meta.owner_references.unwrap();
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].kind, "HubSpotIntegration");
            assert_eq!(refs[0].api_version, "hubspot.io/v1alpha1");
            assert_eq!(refs[0].name, "crm");
            assert_eq!(refs[0].uid, "0b5c2a8e-1111-2222-3333-444455556666");
            assert_eq!(refs[0].controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("sales"));
            assert_eq!(meta.labels.unwrap()[MANAGED_BY_LABEL], MANAGED_BY, "watched by the controller");
        }
    }

    #[test]
    fn service_and_secret_shapes() {
        let i = integration();
        let o = owner(&i);
        let svc = receiver_service(&i, &o);
        assert_eq!(svc.metadata.name.as_deref(), Some("crm-receiver"));
        let ports = svc.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!((ports[0].port, ports[0].target_port.clone()), (80, Some(IntOrString::String("http".into()))));
        assert_eq!((ports[1].port, ports[1].target_port.clone()), (8081, Some(IntOrString::String("metrics".into()))));
        let secret = config_secret(&i, &o, "listen: 0.0.0.0:8080\n");
        assert_eq!(secret.metadata.name.as_deref(), Some("crm-receiver-config"));
        assert_eq!(secret.data.unwrap()["config.yaml"].0, b"listen: 0.0.0.0:8080\n");
        assert_eq!(receiver_url(&i), "http://crm-receiver.sales.svc/webhooks/hubspot");
    }

    #[test]
    fn sync_batch_wait_renders_from_the_receiver_settings() {
        let i = integration();
        let config = receiver_config(&i, &[], &secrets()).unwrap();
        assert_eq!(config.sync, model::config::SyncConfig::default());

        let mut eager = integration();
        eager.spec.receiver.sync = Some(model::api::integration::SyncSettings { max_batch_wait_milliseconds: Some(0) });
        let config = receiver_config(&eager, &[], &secrets()).unwrap();
        assert_eq!(config.sync.max_batch_wait_milliseconds, 0);
        let read_back: ReceiverConfig = serde_yaml::from_str(&config_yaml(&config)).unwrap();
        assert_eq!(read_back.sync, config.sync);
    }

    #[test]
    fn event_log_renders_embedded_by_default_and_jetstream_with_its_secret() {
        let i = integration();
        let config = receiver_config(&i, &[], &secrets()).unwrap();
        assert_eq!(config.event_log, EventLogConfig::Embedded(LogLimits::default()));

        let mut limited = integration();
        limited.spec.receiver.event_log = Some(EventLogSettings {
            embedded: Some(EmbeddedLogSettings { max_pending_events: Some(10), max_pending_bytes: None }),
            jetstream: None,
        });
        let config = receiver_config(&limited, &[], &secrets()).unwrap();
        assert_eq!(
            config.event_log,
            EventLogConfig::Embedded(LogLimits {
                max_pending_events: 10,
                max_pending_bytes: LogLimits::default().max_pending_bytes
            })
        );

        let mut shared = integration();
        shared.spec.receiver.replicas = 3;
        shared.spec.receiver.event_log = Some(EventLogSettings {
            embedded: None,
            jetstream: Some(JetStreamLogSettings {
                url_secret: Some(SecretKeyRef { name: "nats".into(), key: "url".into() }),
                replicas: Some(3),
                max_pending_bytes: Some(1 << 30),
                ..Default::default()
            }),
        });
        assert_eq!(referenced_secret_names(&shared, &[]), ["hubspot", "nats"]);
        let missing = receiver_config(&shared, &[], &secrets()).unwrap_err();
        assert_eq!(missing.reason(), "SecretNotFound");

        let mut store = secrets();
        store.insert_values("nats", BTreeMap::from([("url".into(), "nats://sync:pw@nats:4222".into())]));
        let config = receiver_config(&shared, &[], &store).unwrap();
        assert_eq!(
            config.event_log,
            EventLogConfig::JetStream(JetStreamLogConfig {
                url: "nats://sync:pw@nats:4222".into(),
                stream: None,
                subject: None,
                replicas: 3,
                max_pending_events: LogLimits::default().max_pending_events,
                max_pending_bytes: 1 << 30,
                ack_wait_seconds: JetStreamLogConfig::DEFAULT_ACK_WAIT_SECONDS,
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_KEY);
        std::fs::write(&path, config_yaml(&config)).unwrap();
        assert_eq!(ReceiverConfig::load(&path).unwrap(), config);
    }

    /// `crm` with `spec.receiver.admin`: the token from Secret `admin` key `token`, exposed or
    /// not, admitting `allowed_from`.
    fn with_admin(
        exposed: bool,
        allowed_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
    ) -> HubSpotIntegration {
        let mut i = integration();
        i.spec.receiver.admin = Some(model::api::integration::AdminSettings {
            token_secret_ref: Some(SecretKeyRef { name: "admin".into(), key: "token".into() }),
            exposed,
            allowed_from,
        });
        i
    }

    /// Pods labelled `app: ops-console` in namespaces labelled `team: operators`.
    fn ops_console() -> k8s_openapi::api::networking::v1::NetworkPolicyPeer {
        let selector = |key: &str, value: &str| LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
            ..Default::default()
        };
        k8s_openapi::api::networking::v1::NetworkPolicyPeer {
            namespace_selector: Some(selector("team", "operators")),
            pod_selector: Some(selector("app", "ops-console")),
            ip_block: None,
        }
    }

    fn secrets_with_admin_token(token: &str) -> SecretStore {
        let mut store = secrets();
        store.insert_values("admin", BTreeMap::from([("token".into(), token.into())]));
        store
    }

    /// The `admin` section of the config file `receiver_config` renders, as YAML.
    fn rendered_admin(i: &HubSpotIntegration, store: &SecretStore) -> serde_yaml::Value {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&config_yaml(&receiver_config(i, &[], store).unwrap())).unwrap();
        yaml["admin"].clone()
    }

    #[test]
    fn admin_config_is_loopback_without_a_token_unless_the_spec_asks() {
        let store = secrets_with_admin_token("admin-s3cret\n");
        let yaml = |text: &str| serde_yaml::from_str::<serde_yaml::Value>(text).unwrap();
        assert_eq!(rendered_admin(&integration(), &store), yaml("listen: 127.0.0.1:8082"));
        assert_eq!(
            rendered_admin(&with_admin(false, vec![]), &store),
            yaml("{listen: 127.0.0.1:8082, token: admin-s3cret}")
        );
        assert_eq!(
            rendered_admin(&with_admin(true, vec![]), &store),
            yaml("{listen: 0.0.0.0:8082, token: admin-s3cret}")
        );
        assert_eq!(AdminConfig::default().listen.port(), ADMIN_PORT, "port-forward 8082 reaches it either way");
        assert_eq!(referenced_secret_names(&with_admin(true, vec![]), &[]), ["hubspot", "admin"]);

        // What the controller writes, the receiver loads: `AdminConfig::validate` passes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_KEY);
        for i in [integration(), with_admin(false, vec![]), with_admin(true, vec![ops_console()])] {
            let config = receiver_config(&i, &[], &store).unwrap();
            std::fs::write(&path, config_yaml(&config)).unwrap();
            let loaded = ReceiverConfig::load(&path).unwrap();
            loaded.admin.validate().unwrap();
            assert_eq!(loaded, config);
        }
    }

    #[test]
    fn a_missing_or_empty_admin_token_renders_no_config_and_a_rotated_one_rolls_the_pods() {
        let exposed = with_admin(true, vec![]);
        let missing = receiver_config(&exposed, &[], &secrets()).unwrap_err();
        assert_eq!((missing.reason(), missing.to_string()), ("SecretNotFound", r#"Secret "admin" not found"#.into()));
        let mut wrong_key = secrets();
        wrong_key.insert_values("admin", BTreeMap::from([("other".into(), "x".into())]));
        assert_eq!(receiver_config(&exposed, &[], &wrong_key).unwrap_err().reason(), "SecretKeyMissing");
        let empty = receiver_config(&exposed, &[], &secrets_with_admin_token(" \n")).unwrap_err();
        assert_eq!(
            (empty.reason(), empty.to_string()),
            ("AdminTokenEmpty", r#"the admin API token, key "token" of Secret "admin", is empty"#.into())
        );

        let hash = |token: &str| {
            config_hash(&config_yaml(&receiver_config(&exposed, &[], &secrets_with_admin_token(token)).unwrap()))
        };
        assert_eq!(hash("first"), hash("first"));
        assert_ne!(hash("first"), hash("rotated"), "the config hash, and so the pod template, follows the token");
    }

    #[test]
    fn config_secret_is_exactly_the_rendered_config_and_holds_the_admin_token() {
        use base64::Engine;
        let i = with_admin(true, vec![]);
        let yaml = config_yaml(&receiver_config(&i, &[], &secrets_with_admin_token("admin-s3cret")).unwrap());
        assert!(yaml.contains("token: admin-s3cret"), "{yaml}");
        let mut metadata = receiver_object_metadata(None);
        metadata["name"] = "crm-receiver-config".into();
        assert_eq!(
            serde_json::to_value(config_secret(&i, &owner(&i), &yaml)).unwrap(),
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "data": { "config.yaml": base64::engine::general_purpose::STANDARD.encode(&yaml) },
            })
        );
    }

    /// The receiver StatefulSet of `crm` as JSON, with the container's `ports`.
    fn expected_statefulset(ports: serde_json::Value) -> serde_json::Value {
        let selector =
            serde_json::json!({ "app.kubernetes.io/instance": "crm", "app.kubernetes.io/name": "hubspot-operator" });
        let metadata = receiver_object_metadata(None);
        let restricted = serde_json::json!({ "type": "RuntimeDefault" });
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                "serviceName": "crm-receiver",
                "podManagementPolicy": "Parallel",
                "updateStrategy": { "type": "RollingUpdate" },
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": { "labels": metadata["labels"], "annotations": { "hubspot.io/config-hash": "h" } },
                    "spec": {
                        "containers": [{
                            "name": "receiver",
                            "image": "img",
                            "args": ["receiver", "--config", "/etc/hubspot-operator/config.yaml"],
                            "ports": ports,
                            "livenessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 10 },
                            "readinessProbe": { "httpGet": { "path": "/readyz", "port": "http" }, "periodSeconds": 10 },
                            "volumeMounts": [
                                { "name": "config", "mountPath": "/etc/hubspot-operator", "readOnly": true },
                                { "name": "data", "mountPath": "/var/lib/hubspot-operator" },
                            ],
                            "securityContext": {
                                "runAsNonRoot": true,
                                "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false,
                                "capabilities": { "drop": ["ALL"] },
                                "seccompProfile": restricted,
                            },
                        }],
                        "automountServiceAccountToken": false,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "fsGroup": 65532,
                            "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": restricted,
                        },
                        "volumes": [{ "name": "config", "secret": { "secretName": "crm-receiver-config", "defaultMode": 0o440 } }],
                    },
                },
                "volumeClaimTemplates": [{
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": { "name": "data", "labels": selector },
                    "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
                }],
                "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Retain" },
            },
        })
    }

    #[test]
    fn statefulset_names_an_admin_container_port_only_when_the_admin_api_is_exposed() {
        let http = serde_json::json!({ "name": "http", "containerPort": 8080, "protocol": "TCP" });
        let metrics = serde_json::json!({ "name": "metrics", "containerPort": 8081, "protocol": "TCP" });
        let admin = serde_json::json!({ "name": "admin", "containerPort": 8082, "protocol": "TCP" });
        let statefulset =
            |i: &HubSpotIntegration| serde_json::to_value(receiver_statefulset(i, &owner(i), "img", "h", &[])).unwrap();
        assert_eq!(statefulset(&integration()), expected_statefulset(serde_json::json!([http, metrics])));
        assert_eq!(statefulset(&with_admin(false, vec![])), expected_statefulset(serde_json::json!([http, metrics])));
        assert_eq!(
            statefulset(&with_admin(true, vec![])),
            expected_statefulset(serde_json::json!([http, metrics, admin]))
        );
    }

    #[test]
    fn service_has_an_admin_port_only_when_the_admin_api_is_exposed() {
        let service = |i: &HubSpotIntegration, ports: serde_json::Value| {
            assert_eq!(
                serde_json::to_value(receiver_service(i, &owner(i))).unwrap(),
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": receiver_object_metadata(None),
                    "spec": {
                        "selector": { "app.kubernetes.io/instance": "crm", "app.kubernetes.io/name": "hubspot-operator" },
                        "ports": ports,
                    },
                })
            )
        };
        let http = serde_json::json!({ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" });
        let metrics =
            serde_json::json!({ "name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP" });
        let admin = serde_json::json!({ "name": "admin", "port": 8082, "targetPort": "admin", "protocol": "TCP" });
        service(&integration(), serde_json::json!([http, metrics]));
        service(&with_admin(false, vec![]), serde_json::json!([http, metrics]));
        service(&with_admin(true, vec![]), serde_json::json!([http, metrics, admin]));
    }

    #[test]
    fn network_policy_admits_the_admin_port_only_from_the_listed_peers() {
        let policy = |i: &HubSpotIntegration, rules: serde_json::Value| {
            assert_eq!(
                serde_json::to_value(receiver_network_policy(i, &owner(i))).unwrap(),
                serde_json::json!({
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": receiver_object_metadata(None),
                    "spec": {
                        "podSelector": {
                            "matchLabels": { "app.kubernetes.io/instance": "crm", "app.kubernetes.io/name": "hubspot-operator" },
                        },
                        "policyTypes": ["Ingress"],
                        "ingress": rules,
                    },
                })
            )
        };
        let receiver =
            serde_json::json!({ "ports": [{ "port": 8080, "protocol": "TCP" }, { "port": 8081, "protocol": "TCP" }] });
        policy(&integration(), serde_json::json!([receiver]));
        // No peers: no rule, since a rule without peers would admit everyone.
        policy(&with_admin(true, vec![]), serde_json::json!([receiver]));
        // Peers of an admin API on loopback (which the schema refuses) open nothing.
        policy(&with_admin(false, vec![ops_console()]), serde_json::json!([receiver]));
        policy(
            &with_admin(true, vec![ops_console()]),
            serde_json::json!([receiver, {
                "from": [{
                    "namespaceSelector": { "matchLabels": { "team": "operators" } },
                    "podSelector": { "matchLabels": { "app": "ops-console" } },
                }],
                "ports": [{ "port": 8082, "protocol": "TCP" }],
            }]),
        );
    }

    fn cel_errors(integration: &HubSpotIntegration) -> String {
        kube::core::cel::validate_cel(integration).err().map(|e| format!("{e:?}")).unwrap_or_default()
    }

    #[test]
    fn cel_wants_exactly_one_event_log_and_one_nats_url() {
        let with_log = |event_log: EventLogSettings| {
            let mut i = integration();
            i.spec.receiver.event_log = Some(event_log);
            i
        };
        let jetstream = |url: Option<&str>, secret: bool| JetStreamLogSettings {
            url: url.map(Into::into),
            url_secret: secret.then(|| SecretKeyRef { name: "nats".into(), key: "url".into() }),
            ..Default::default()
        };
        assert_eq!(cel_errors(&integration()), "");
        let embedded = EventLogSettings { embedded: Some(Default::default()), jetstream: None };
        assert_eq!(cel_errors(&with_log(embedded)), "");
        let by_url = EventLogSettings { embedded: None, jetstream: Some(jetstream(Some("nats://nats:4222"), false)) };
        assert_eq!(cel_errors(&with_log(by_url)), "");

        let neither = EventLogSettings::default();
        assert!(cel_errors(&with_log(neither)).contains("set exactly one of embedded and jetstream"));
        let both = EventLogSettings { embedded: Some(Default::default()), jetstream: Some(jetstream(None, true)) };
        assert!(cel_errors(&with_log(both)).contains("set exactly one of embedded and jetstream"));
        for (url, secret) in [(None, false), (Some("nats://nats:4222"), true)] {
            let log = EventLogSettings { embedded: None, jetstream: Some(jetstream(url, secret)) };
            assert!(cel_errors(&with_log(log)).contains("set exactly one of url and urlSecret"), "{url:?} {secret}");
        }
    }
}
