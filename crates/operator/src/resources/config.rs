//! Rendering of the receiver config from an integration, its mappings and their Secrets.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::secrets::{SecretError, SecretStore};
use kube::ResourceExt;
use model::api::integration::CredentialKind;
use model::api::{HubSpotIntegration, HubSpotTimelineEventType, PropertyMapping, SecretKeyRef};
use model::config::{
    AdminConfig, EventLogConfig, HttpLimits, HubSpotConnection, IngestConfig, JetStreamLogConfig, LogLimits,
    MappingConfig, ReceiverConfig, SinkConfig, SourceConfig, SyncConfig, TimelineEventTypeConfig, WebhookConfig,
};
use model::contract::WEBHOOK_PATH;

use super::*;

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
            replicas: jetstream.replicas.map_or(JetStreamLogConfig::DEFAULT_REPLICAS, usize::from),
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

/// One mapping as the receiver reads it, with its destinations' and sources' Secrets resolved.
pub fn mapping_config(mapping: &PropertyMapping, secrets: &SecretStore) -> Result<MappingConfig, SecretError> {
    let secret = |reference: &SecretKeyRef| secrets.value(reference);
    let mut sinks = Vec::new();
    for destination in &mapping.spec.destinations {
        sinks.extend(SinkConfig::resolve(destination, secret)?);
    }
    let mut sources = Vec::new();
    for source in &mapping.spec.sources {
        sources.extend(SourceConfig::resolve(source, secret)?);
    }
    Ok(MappingConfig {
        sinks,
        policy: mapping.spec.policy.clone(),
        sources,
        associations: mapping.spec.associations.clone(),
        ..MappingConfig::new(qualified_name(mapping), mapping.spec.records.clone())
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
    let hubspot = HubSpotConnection {
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
    };
    let webhooks = WebhookConfig {
        public_url: receiver_public_url(integration).as_deref().map(public_base_url),
        ..WebhookConfig::new(client_secret)
    };
    ReceiverConfig {
        listen: SocketAddr::from(([0, 0, 0, 0], RECEIVER_PORT)),
        status_listen: SocketAddr::from(([0, 0, 0, 0], STATUS_PORT)),
        event_log,
        mappings,
        sync: SyncConfig::from(&integration.spec.receiver),
        http: HttpLimits::from(&integration.spec.receiver),
        ..ReceiverConfig::new(qualified_name(integration), DATA_DIR, hubspot, webhooks)
    }
}

/// The public URL is the full URL HubSpot calls; the receiver wants the base it puts in front
/// of the request path when checking signatures, so the webhook path comes off.
pub(super) fn public_base_url(public_url: &str) -> String {
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
        Some(ingest) => Some(IngestConfig::new(secrets.value(&ingest.token_secret_ref)?, ingest.max_body_bytes)),
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

/// The receiver's timeline event types: those among `event_types` that reference
/// `integration` and that HubSpot knows (their status has a carrier and a `hubspotName`),
/// sorted by name, so that an unchanged set renders the same config.
pub fn timeline_event_types_of<'a>(
    integration: &HubSpotIntegration,
    event_types: impl IntoIterator<Item = &'a HubSpotTimelineEventType>,
) -> Vec<TimelineEventTypeConfig> {
    let mut configs: Vec<TimelineEventTypeConfig> = event_types
        .into_iter()
        .filter(|e| e.namespace() == integration.namespace() && e.spec.integration_ref.name == integration.name_any())
        .filter_map(|e| {
            let status = e.status.as_ref()?;
            Some(TimelineEventTypeConfig {
                namespace: e.namespace().unwrap_or_default(),
                name: e.name_any(),
                object_type: e.spec.object_type,
                carrier: status.carrier?,
                hubspot_name: status.hubspot_name.clone()?,
                tokens: e.spec.tokens.clone(),
            })
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    configs
}
