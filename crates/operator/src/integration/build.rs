//! The build step, pure: from what was dereferenced to every object the integration's receiver
//! needs and the webhook configuration it wants. No client, no context: the same input always
//! builds the same output, and the only Secrets it reads are the dereferenced ones.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};

use super::dereference::Dereferenced;
use crate::Error;
use crate::resources::{self, ConfigError, config_hash, config_yaml, receiver_config};
use crate::secrets::SecretError;
use crate::webhooks::{self, DesiredWebhooks, WebhooksError};
use model::api::HubSpotIntegration;

/// What the build needs besides the dereferenced objects: the operator's settings.
#[derive(Clone, Debug, Default)]
pub struct BuildSettings {
    /// Receiver image of integrations that do not name one.
    pub image: String,
    /// The operator's trace export settings, which the receiver pods get too.
    pub trace_env: Vec<(String, String)>,
}

/// Everything one visit wants to hold: the receiver's objects (or why its config cannot be
/// rendered, in which case nothing of the receiver is applied), and the webhook configuration
/// (`None` without `spec.webhooks`).
#[derive(Clone, Debug)]
pub struct Desired {
    pub receiver: Result<ReceiverObjects, ConfigError>,
    pub webhooks: Option<WebhooksPlan>,
}

/// The receiver's objects, all controlled by the integration.
#[derive(Clone, Debug)]
pub struct ReceiverObjects {
    /// Hash of the rendered config, which the pod template carries too.
    pub config_hash: String,
    pub config_secret: Secret,
    pub statefulset: StatefulSet,
    pub service: Service,
    pub budget: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
    pub exposure: Exposure,
}

/// How the receiver is to be reached from outside the cluster.
#[derive(Clone, Debug)]
pub enum Exposure {
    NotRequested,
    Ingress(Box<Ingress>),
    HttpRoute(Box<DynamicObject>),
}

/// The webhook configuration HubSpot is to get.
#[derive(Clone, Debug)]
pub enum WebhooksPlan {
    /// No public URL, and HubSpot's side is the user's: nothing to render.
    NotRendered,
    /// No configuration can be computed from the spec.
    Invalid(WebhooksError),
    /// `webhooks-hsmeta.json` in a ConfigMap, for the user to deploy.
    ConfigMap { config_map: Box<ConfigMap>, subscriptions: usize },
    /// Applied through HubSpot's management API of app `app_id` with the developer API key.
    Api { app_id: u64, api_key: Result<String, SecretError>, desired: DesiredWebhooks },
}

/// Builds what `dereferenced` asks for. The receiver runs whenever its config can be rendered,
/// even while HubSpot refuses the token: webhooks are still taken and kept until the token
/// works again. Fails only when the integration has no uid to own its children.
pub fn build(dereferenced: &Dereferenced, settings: &BuildSettings) -> Result<Desired, Error> {
    let integration = &dereferenced.integration;
    let owner =
        integration.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
    let mappings = dereferenced.own_mappings();
    let receiver = receiver_config(integration, mappings.iter().copied(), &dereferenced.secrets).map(|mut config| {
        config.timeline_event_types = dereferenced.event_types.clone();
        receiver_objects(integration, &owner, &config_yaml(&config), settings)
    });
    let webhooks = webhooks::desired_webhooks(integration, &mappings)
        .map(|desired| webhooks_plan(integration, &owner, desired, dereferenced));
    Ok(Desired { receiver, webhooks })
}

fn receiver_objects(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    yaml: &str,
    settings: &BuildSettings,
) -> ReceiverObjects {
    let hash = config_hash(yaml);
    let statefulset = resources::receiver_statefulset(integration, owner, &settings.image, &hash, &settings.trace_env);
    let exposure = if let Some(ingress) = resources::receiver_ingress(integration, owner) {
        Exposure::Ingress(Box::new(ingress))
    } else if let Some(route) = resources::receiver_http_route(integration, owner) {
        Exposure::HttpRoute(Box::new(route))
    } else {
        Exposure::NotRequested
    };
    ReceiverObjects {
        config_secret: resources::config_secret(integration, owner, yaml),
        config_hash: hash,
        statefulset,
        service: resources::receiver_service(integration, owner),
        budget: resources::receiver_pod_disruption_budget(integration, owner),
        network_policy: resources::receiver_network_policy(integration, owner),
        exposure,
    }
}

/// Through HubSpot's management API with `management.api`, otherwise as `webhooks-hsmeta.json`
/// in a ConfigMap.
fn webhooks_plan(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    desired: Result<DesiredWebhooks, WebhooksError>,
    dereferenced: &Dereferenced,
) -> WebhooksPlan {
    let management = integration.spec.webhooks.as_ref().and_then(|w| w.management.as_ref()?.api.as_ref());
    let desired = match desired {
        Ok(desired) => desired,
        // publicUrl is optional as long as HubSpot's side is the user's.
        Err(WebhooksError::PublicUrlMissing) if management.is_none() => return WebhooksPlan::NotRendered,
        Err(e) => return WebhooksPlan::Invalid(e),
    };
    match management {
        None => {
            let hsmeta = webhooks::hsmeta_json(&desired);
            let config_map = resources::webhooks_hsmeta_config_map(integration, owner, &hsmeta);
            WebhooksPlan::ConfigMap { config_map: Box::new(config_map), subscriptions: desired.subscriptions.len() }
        }
        Some(management) => WebhooksPlan::Api {
            app_id: management.app_id,
            api_key: dereferenced.secrets.value(&management.developer_api_key),
            desired,
        },
    }
}
