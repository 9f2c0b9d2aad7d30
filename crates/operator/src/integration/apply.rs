//! The apply step: makes the API server hold what the build produced (writing only what
//! differs from the controller's caches), removes what earlier versions or an earlier spec left
//! behind, and applies the webhook configuration. Returns what the API server holds.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, DeleteParams, DynamicObject, Preconditions};
use kube::{Resource, ResourceExt};

use super::build::{Desired, Exposure, ReceiverObjects, WebhooksPlan};
use super::children::apply_unless_held;
use crate::kube_api::apply_named;
use crate::status::{ReceiverExposure, ReceiverRollout};
use crate::webhooks::{self, WebhooksOutcome};
use crate::{Context, Error, resources};
use model::api::HubSpotIntegration;
use model::api::integration::ReceiverExposureKind;

/// What the API server (and HubSpot) hold after the apply step.
#[derive(Debug)]
pub struct Applied {
    /// The receiver's rollout, or why its config cannot be rendered.
    pub receiver: ReceiverRollout,
    /// Hash of the config the receiver runs; `None` when none was rendered.
    pub config_hash: Option<String>,
    /// How the receiver is exposed; `None` when nothing of the receiver was applied.
    pub exposure: Option<ReceiverExposure>,
    /// `None` without `spec.webhooks`.
    pub webhooks: Option<WebhooksOutcome>,
    /// The subscriptions the operator created through HubSpot's management API and still owns.
    pub webhook_subscription_ids: Vec<String>,
}

/// Applies `desired` for `integration`.
pub async fn apply_desired(
    integration: &HubSpotIntegration,
    desired: &Desired,
    ctx: &Context,
) -> Result<Applied, Error> {
    let (receiver, config_hash, exposure) = match &desired.receiver {
        Err(e) => (ReceiverRollout::NotRendered(e.clone()), None, None),
        Ok(objects) => {
            let (rollout, exposure) = apply_receiver(integration, objects, ctx).await?;
            (rollout, Some(objects.config_hash.clone()), Some(exposure))
        }
    };
    let mut webhook_subscription_ids =
        integration.status.as_ref().map(|s| s.webhook_subscription_ids.clone()).unwrap_or_default();
    let webhooks = match &desired.webhooks {
        None => None,
        Some(plan) => Some(apply_webhooks(integration, plan, &mut webhook_subscription_ids, ctx).await?),
    };
    Ok(Applied { receiver, config_hash, exposure, webhooks, webhook_subscription_ids })
}

/// Applies the config Secret, the StatefulSet, the Service, the PodDisruptionBudget, the
/// NetworkPolicy and the receiver's exposure, and reads availability from the StatefulSet the
/// API server holds. Once the StatefulSet has a pod available, removes the receiver Deployment
/// of earlier versions.
async fn apply_receiver(
    integration: &HubSpotIntegration,
    objects: &ReceiverObjects,
    ctx: &Context,
) -> Result<(ReceiverRollout, ReceiverExposure), Error> {
    let children = &ctx.children;
    apply_unless_held(ctx, &children.secrets, &objects.config_secret).await?;
    let statefulset: StatefulSet = apply_unless_held(ctx, &children.statefulsets, &objects.statefulset).await?;
    apply_unless_held(ctx, &children.services, &objects.service).await?;
    apply_unless_held(ctx, &children.budgets, &objects.budget).await?;
    apply_unless_held(ctx, &children.network_policies, &objects.network_policy).await?;
    let exposure = expose_receiver(integration, &objects.exposure, ctx).await?;

    let status = statefulset.status.unwrap_or_default();
    // `availableReplicas` honours minReadySeconds; API servers that do not report it still
    // report ready pods.
    let available_replicas = status.available_replicas.or(status.ready_replicas).unwrap_or(0);
    if available_replicas >= 1 {
        // Both workloads match the Service's selector, so until now the old pod kept taking
        // webhooks: removing it only after the new one is available keeps them flowing.
        let namespace = integration.namespace().unwrap_or_default();
        let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &namespace);
        if delete_own_receiver_object(integration, &deployments).await? {
            tracing::info!(integration = %integration.name_any(), namespace, "deleted the receiver Deployment of an earlier version");
        }
    }
    let rollout =
        ReceiverRollout::Deployed { available_replicas, desired_replicas: integration.spec.receiver.replicas };
    Ok((rollout, exposure))
}

/// Applies the Ingress or HTTPRoute `spec.receiver` asks for, and deletes the one the operator
/// applied before (as the status records) once the spec no longer asks for it: owner
/// references only remove it with the whole integration. HTTPRoutes are not watched (the
/// Gateway API may not be installed), so a route is applied on every visit.
async fn expose_receiver(
    integration: &HubSpotIntegration,
    exposure: &Exposure,
    ctx: &Context,
) -> Result<ReceiverExposure, Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let routes =
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &namespace, &resources::http_route_resource());
    let exposure = match exposure {
        Exposure::Ingress(ingress) => {
            apply_unless_held(ctx, &ctx.children.ingresses, ingress.as_ref()).await?;
            ReceiverExposure::Applied(ReceiverExposureKind::Ingress)
        }
        Exposure::HttpRoute(route) => match apply_named(&routes, &resources::receiver_name(integration), route).await {
            Ok(_) => ReceiverExposure::Applied(ReceiverExposureKind::HttpRoute),
            // A server-side apply creates a missing object, so a 404 means the resource type
            // itself is missing.
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => ReceiverExposure::GatewayApiMissing,
            Err(e) => return Err(e),
        },
        Exposure::NotRequested => ReceiverExposure::NotRequested,
    };
    let previous = integration.status.as_ref().and_then(|s| s.receiver_exposed_by);
    if let Some(previous) = previous.filter(|kind| exposure.kind() != Some(*kind)) {
        let deleted = match previous {
            ReceiverExposureKind::Ingress => {
                let ingresses =
                    Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(ctx.client.clone(), &namespace);
                delete_own_receiver_object(integration, &ingresses).await?
            }
            ReceiverExposureKind::HttpRoute => delete_own_receiver_object(integration, &routes).await?,
        };
        if deleted {
            tracing::info!(integration = %integration.name_any(), namespace, kind = ?previous, "deleted the receiver's exposure the spec no longer asks for");
        }
    }
    Ok(exposure)
}

/// Applies the app's webhook configuration as `plan` says: the ConfigMap, or through HubSpot's
/// management API (recording the ids of the subscriptions it creates in `owned`). HubSpot's
/// refusals are outcomes, not errors; only Kubernetes failures are.
async fn apply_webhooks(
    integration: &HubSpotIntegration,
    plan: &WebhooksPlan,
    owned: &mut Vec<String>,
    ctx: &Context,
) -> Result<WebhooksOutcome, Error> {
    Ok(match plan {
        WebhooksPlan::NotRendered => WebhooksOutcome::NotRendered,
        WebhooksPlan::Invalid(e) => WebhooksOutcome::Invalid(e.clone()),
        WebhooksPlan::ConfigMap { config_map, subscriptions } => {
            apply_unless_held(ctx, &ctx.children.config_maps, config_map.as_ref()).await?;
            WebhooksOutcome::Rendered { config_map: config_map.name_any(), subscriptions: *subscriptions }
        }
        WebhooksPlan::Api { api_key: Err(e), .. } => WebhooksOutcome::KeyUnavailable(e.clone()),
        WebhooksPlan::Api { app_id, api_key: Ok(api_key), desired } => {
            // The management API authenticates with the developer API key alone, never the token.
            let client = ctx.hubspot_client(integration, String::new());
            let api_key = hubspot::Secret::new(api_key.clone());
            match webhooks::apply_through_api(&client, *app_id, &api_key, desired, owned).await {
                Ok(sync) => {
                    WebhooksOutcome::Applied { app_id: *app_id, subscriptions: desired.subscriptions.len(), sync }
                }
                Err(e) => WebhooksOutcome::Failed(e),
            }
        }
    })
}

/// Deletes the object named like the receiver in `api` if there is one and it is ours
/// ([`resources::is_own_receiver_object`]); whether it did. For the receiver Deployment of an
/// earlier version its emptyDir goes with it; the StatefulSet's volume is what keeps events.
pub(super) async fn delete_own_receiver_object<K>(integration: &HubSpotIntegration, api: &Api<K>) -> Result<bool, Error>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let Some(object) = api.get_opt(&resources::receiver_name(integration)).await? else {
        return Ok(false);
    };
    if !resources::is_own_receiver_object(integration, object.meta()) {
        return Ok(false);
    }
    // The precondition makes sure the object inspected is the one deleted.
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: object.meta().uid.clone(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(&resources::receiver_name(integration), &params).await {
        Ok(_) => Ok(true),
        // Already gone, or replaced by another object since it was read: nothing of ours to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
