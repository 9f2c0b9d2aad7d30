//! The `HubSpotIntegration` reconciler: checks the token with HubSpot, renders the receiver's
//! config, applies the receiver's Secret, StatefulSet, Service, PodDisruptionBudget,
//! NetworkPolicy and the Ingress or HTTPRoute the spec asks for, applies the app's webhook
//! configuration (through HubSpot's management API, or rendered into a ConfigMap), and reports
//! conditions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::events::publish;
use super::kube_api::{apply, apply_named, patch_status, read_secrets, scoped_api};
use super::resources::{self, config_hash, config_yaml, receiver_config};
use super::secrets::SecretStore;
use super::status::{
    Authentication, INTEGRATION_EVENTS, ReceiverExposure, ReceiverState, condition_events, config_change_event,
    integration_status, mark_paused,
};
use super::watches::spec_changes;
use super::webhooks::{self, DesiredWebhooks, WebhooksError, WebhooksOutcome};
use super::{Context, Error, HEALTHY_REQUEUE, UNHEALTHY_REQUEUE};
use hubspot::{HubSpotClient, OAuthCredentials, Secret as HubSpotSecret};
use model::api::conditions::is_true;
use model::api::integration::condition_types::READY;
use model::api::integration::{CredentialKind, ReceiverExposureKind};
use model::api::{HubSpotIntegration, PropertyMapping, is_paused};
use model::config::ReceiverConfig;

/// The integration controller: reconciles on changes of integrations, of the children it owns
/// and of the specs of the `PropertyMapping`s that reference it (their creation and deletion
/// too): it renders the mappings' specs and reads nothing of their status, which the mapping
/// reconciler writes.
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotIntegration> {
    // Only our own children, not every Secret in the cluster.
    let children =
        watcher::Config::default().labels(&format!("{}={}", resources::MANAGED_BY_LABEL, resources::MANAGED_BY));
    Controller::new(scoped_api::<HubSpotIntegration>(client.clone(), namespace), watcher::Config::default())
        .owns(scoped_api::<Secret>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<StatefulSet>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<Service>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<PodDisruptionBudget>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<NetworkPolicy>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<Ingress>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<ConfigMap>(client.clone(), namespace), children)
        .watches_stream(spec_changes::<PropertyMapping>(client, namespace), |mapping| {
            let namespace = mapping.namespace()?;
            Some(ObjectRef::new(&mapping.spec.integration_ref.name).within(&namespace))
        })
}

/// One reconcile of `integration`.
pub async fn reconcile(integration: Arc<HubSpotIntegration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace =
        integration.namespace().ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "namespace"))?;
    let name = integration.name_any();
    let api = Api::<HubSpotIntegration>::namespaced(ctx.client.clone(), &namespace);
    if is_paused(integration.as_ref()) {
        let mut status = integration.status.clone().unwrap_or_default();
        if mark_paused(&mut status.conditions, READY, integration.metadata.generation) {
            patch_status(&api, &name, integration.status.as_ref(), &status).await?;
        }
        ctx.succeeded(integration.as_ref());
        return Ok(Action::await_change());
    }

    // Dereference: the mappings of this namespace and every Secret the config needs. Secrets
    // are not watched, so they are read afresh on each visit.
    let mappings =
        Api::<PropertyMapping>::namespaced(ctx.client.clone(), &namespace).list(&ListParams::default()).await?.items;
    let mut secret_names =
        resources::referenced_secret_names(&integration, &resources::mappings_of(&integration, &mappings));
    if integration.spec.credentials.oauth.is_some() {
        secret_names.push(resources::access_token_secret_name(&integration));
    }
    let secrets = read_secrets(&ctx.client, &namespace, &secret_names).await?;

    let (auth, token_refresh_at) = authenticate(&integration, &secrets, &ctx).await?;

    // The receiver runs whenever its config can be rendered, even while HubSpot refuses the
    // token: webhooks are still taken and kept until the token works again.
    let (receiver, config_hash, exposure) = match receiver_config(&integration, &mappings, &secrets) {
        Err(e) => (ReceiverState::NotRendered(e), None, None),
        Ok(config) => {
            let (state, hash, exposure) = apply_receiver(&integration, &config, &ctx).await?;
            (state, Some(hash), Some(exposure))
        }
    };
    let receiver_url =
        matches!(receiver, ReceiverState::Deployed { .. }).then(|| resources::receiver_url(&integration));

    let previous = integration.status.clone().unwrap_or_default();
    let mut owned_subscriptions = previous.webhook_subscription_ids.clone();
    let desired_webhooks = webhooks::desired_webhooks(&integration, &resources::mappings_of(&integration, &mappings));
    let webhooks_condition = match desired_webhooks {
        None => None,
        Some(desired) => {
            let outcome = apply_webhooks(&integration, desired, &secrets, &mut owned_subscriptions, &ctx).await?;
            Some(webhooks::webhooks_condition(&outcome, integration.metadata.generation))
        }
    };

    let mut status =
        integration_status(&integration, &auth, &receiver, receiver_url, webhooks_condition, exposure.as_ref());
    status.webhook_subscription_ids = owned_subscriptions;
    if config_hash.is_some() {
        status.receiver_config_hash = config_hash;
    }
    let mut changes = condition_events(&previous.conditions, &status.conditions, INTEGRATION_EVENTS);
    changes
        .extend(config_change_event(previous.receiver_config_hash.as_deref(), status.receiver_config_hash.as_deref()));
    publish(&ctx, integration.as_ref(), &changes).await;
    // Unchanged (a periodic visit finding the same): nothing to write, and no watch event for
    // every watcher of integrations.
    if integration.status.as_ref() != Some(&status) {
        patch_status(&api, &name, integration.status.as_ref(), &status).await?;
    }
    ctx.succeeded(integration.as_ref());

    let ready = is_true(&status.conditions, READY);
    tracing::info!(integration = %format!("{namespace}/{name}"), ready, "reconciled HubSpotIntegration");
    Ok(Action::requeue(requeue_after(ready, token_refresh_at, Timestamp::now())))
}

/// When to visit again: soon while not ready, and no later than when the managed access token
/// is due for replacement, so the receivers never hold an expired one.
fn requeue_after(ready: bool, token_refresh_at: Option<Timestamp>, now: Timestamp) -> Duration {
    let requeue = if ready { HEALTHY_REQUEUE } else { UNHEALTHY_REQUEUE };
    match token_refresh_at {
        Some(at) => {
            let until_due = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            requeue.min(until_due.max(MIN_TOKEN_REQUEUE))
        }
        None => requeue,
    }
}

/// The shortest wait before replacing a managed access token, so that a token HubSpot issues
/// with a very short lifetime does not make the reconciler spin.
const MIN_TOKEN_REQUEUE: Duration = Duration::from_secs(5);

/// How long from now until `at`; zero once it has passed.
fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
}

/// Checks `integration`'s credentials with HubSpot. For an OAuth app, also keeps its access
/// token in the managed Secret fresh and returns when that token is next due for replacement.
async fn authenticate(
    integration: &HubSpotIntegration,
    secrets: &SecretStore,
    ctx: &Context,
) -> Result<(Authentication, Option<Timestamp>), Error> {
    let oauth = match integration.spec.credentials.kind() {
        Err(e) => return Ok((Authentication::TokenUnavailable(e.into()), None)),
        Ok(CredentialKind::PrivateAppToken(reference)) => {
            // Read just now: the property and mapping reconcilers take a rotation from here.
            ctx.integrations.token_read(integration, secrets.value(reference)).await;
            let auth = match secrets.value(reference) {
                Err(e) => Authentication::TokenUnavailable(e),
                Ok(token) => introspect(&ctx.hubspot_client(integration, token)).await,
            };
            return Ok((auth, None));
        }
        Ok(CredentialKind::OAuth(oauth)) => oauth,
    };
    // Read on every reconcile, so rotated client secrets and refresh tokens take effect.
    let credentials = match (secrets.value(&oauth.client_secret), secrets.value(&oauth.refresh_token)) {
        (Ok(client_secret), Ok(refresh_token)) => OAuthCredentials {
            client_id: oauth.client_id.clone(),
            client_secret: HubSpotSecret::new(client_secret),
            refresh_token: HubSpotSecret::new(refresh_token),
            token_endpoint: oauth.token_endpoint.unwrap_or_default(),
        },
        (Err(e), _) | (_, Err(e)) => return Ok((Authentication::TokenUnavailable(e), None)),
    };
    let client = ctx.hubspot_oauth_client(integration, credentials);
    let now = Timestamp::now();
    let stored =
        secrets.get(&resources::access_token_secret_name(integration)).and_then(resources::stored_access_token);
    if let Some((token, refresh_at)) = stored.filter(|(_, refresh_at)| now < *refresh_at) {
        let with_stored = client.clone().with_access_token(HubSpotSecret::new(token), until(refresh_at)).await;
        match with_stored.introspect_token().await {
            Ok(info) => return Ok((Authentication::Succeeded(info), Some(refresh_at))),
            // HubSpot no longer knows the stored token (revoked, or the Secret was restored
            // from elsewhere): replace it now rather than when it is due.
            Err(hubspot::Error::Api(e)) if e.status == 401 || e.status == 404 => {
                tracing::info!(integration = %integration.name_any(), category = %e.category, "HubSpot refused the stored access token; requesting a new one");
            }
            Err(e) => return Ok((Authentication::Failed(e), Some(refresh_at))),
        }
    }
    let issued = match client.renew_access_token().await {
        Some(Ok(issued)) => issued,
        // The managed Secret keeps the last good token, which may still be valid.
        Some(Err(e)) => return Ok((Authentication::Failed(e), None)),
        None => unreachable!("an OAuth client has a token endpoint"),
    };
    // Counted from before the request: HubSpot's lifetime started no earlier.
    let lifetime = SignedDuration::try_from(issued.expires_in).unwrap_or(SignedDuration::MAX);
    let expires_at = now.saturating_add(lifetime).expect("a duration");
    let refresh_at = now.saturating_add(lifetime / 2).expect("a duration");
    let owner =
        integration.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
    let secret = resources::access_token_secret(integration, &owner, issued.token.expose(), refresh_at, expires_at);
    let namespace = integration.namespace().unwrap_or_default();
    apply(&Api::<Secret>::namespaced(ctx.client.clone(), &namespace), &secret).await?;
    ctx.integrations.token_read(integration, Ok(issued.token.expose().to_string())).await;
    Ok((introspect(&client).await, Some(refresh_at)))
}

async fn introspect(client: &HubSpotClient) -> Authentication {
    match client.introspect_token().await {
        Ok(info) => Authentication::Succeeded(info),
        Err(e) => Authentication::Failed(e),
    }
}

/// Applies the config Secret, the StatefulSet, the Service, the PodDisruptionBudget, the
/// NetworkPolicy and the receiver's exposure, and reads availability from the StatefulSet the
/// API server returned. Once the StatefulSet has a pod available, removes the receiver
/// Deployment of earlier versions. Returns the receiver's state, the hash of the config it runs
/// and how it is exposed.
async fn apply_receiver(
    integration: &HubSpotIntegration,
    config: &ReceiverConfig,
    ctx: &Context,
) -> Result<(ReceiverState, String, ReceiverExposure), Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let owner =
        integration.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
    let yaml = config_yaml(config);
    let client = &ctx.client;

    let secret = resources::config_secret(integration, &owner, &yaml);
    apply(&Api::<Secret>::namespaced(client.clone(), &namespace), &secret).await?;
    let hash = config_hash(&yaml);
    let statefulset =
        resources::receiver_statefulset(integration, &owner, &ctx.receiver_image, &hash, &ctx.receiver_trace_env);
    let applied = apply(&Api::<StatefulSet>::namespaced(client.clone(), &namespace), &statefulset).await?;
    let service = resources::receiver_service(integration, &owner);
    apply(&Api::<Service>::namespaced(client.clone(), &namespace), &service).await?;
    let budget = resources::receiver_pod_disruption_budget(integration, &owner);
    apply(&Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace), &budget).await?;
    let policy = resources::receiver_network_policy(integration, &owner);
    apply(&Api::<NetworkPolicy>::namespaced(client.clone(), &namespace), &policy).await?;
    let exposure = expose_receiver(integration, &owner, ctx).await?;

    let status = applied.status.unwrap_or_default();
    // `availableReplicas` honours minReadySeconds; API servers that do not report it still
    // report ready pods.
    let available_replicas = status.available_replicas.or(status.ready_replicas).unwrap_or(0);
    if available_replicas >= 1 {
        // Both workloads match the Service's selector, so until now the old pod kept taking
        // webhooks: removing it only after the new one is available keeps them flowing.
        let deployments = Api::<Deployment>::namespaced(client.clone(), &namespace);
        if delete_own_receiver_object(integration, &deployments).await? {
            tracing::info!(integration = %integration.name_any(), namespace, "deleted the receiver Deployment of an earlier version");
        }
    }
    let state = ReceiverState::Deployed { available_replicas, desired_replicas: integration.spec.receiver.replicas };
    Ok((state, hash, exposure))
}

/// Applies the Ingress or HTTPRoute `spec.receiver` asks for, and deletes the one the operator
/// applied before (as the status records) once the spec no longer asks for it: owner
/// references only remove it with the whole integration.
async fn expose_receiver(
    integration: &HubSpotIntegration,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ctx: &Context,
) -> Result<ReceiverExposure, Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let ingresses = Api::<Ingress>::namespaced(ctx.client.clone(), &namespace);
    let routes =
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &namespace, &resources::http_route_resource());
    let exposure = if let Some(ingress) = resources::receiver_ingress(integration, owner) {
        apply(&ingresses, &ingress).await?;
        ReceiverExposure::Applied(ReceiverExposureKind::Ingress)
    } else if let Some(route) = resources::receiver_http_route(integration, owner) {
        match apply_named(&routes, &resources::receiver_name(integration), &route).await {
            Ok(_) => ReceiverExposure::Applied(ReceiverExposureKind::HttpRoute),
            // A server-side apply creates a missing object, so a 404 means the resource type
            // itself is missing.
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => ReceiverExposure::GatewayApiMissing,
            Err(e) => return Err(e),
        }
    } else {
        ReceiverExposure::NotRequested
    };
    let previous = integration.status.as_ref().and_then(|s| s.receiver_exposed_by);
    if let Some(previous) = previous.filter(|kind| exposure.kind() != Some(*kind)) {
        let deleted = match previous {
            ReceiverExposureKind::Ingress => delete_own_receiver_object(integration, &ingresses).await?,
            ReceiverExposureKind::HttpRoute => delete_own_receiver_object(integration, &routes).await?,
        };
        if deleted {
            tracing::info!(integration = %integration.name_any(), namespace, kind = ?previous, "deleted the receiver's exposure the spec no longer asks for");
        }
    }
    Ok(exposure)
}

/// Applies the app's webhook configuration: through HubSpot's management API with
/// `management.api` (recording the ids of the subscriptions it creates in `owned`), otherwise
/// as `webhooks-hsmeta.json` in a ConfigMap. HubSpot's refusals are outcomes, not errors; only
/// Kubernetes failures are.
async fn apply_webhooks(
    integration: &HubSpotIntegration,
    desired: Result<DesiredWebhooks, WebhooksError>,
    secrets: &SecretStore,
    owned: &mut Vec<String>,
    ctx: &Context,
) -> Result<WebhooksOutcome, Error> {
    let management = integration.spec.webhooks.as_ref().and_then(|w| w.management.as_ref()?.api.as_ref());
    let desired = match desired {
        Ok(desired) => desired,
        // publicUrl is optional as long as HubSpot's side is the user's.
        Err(WebhooksError::PublicUrlMissing) if management.is_none() => return Ok(WebhooksOutcome::NotRendered),
        Err(e) => return Ok(WebhooksOutcome::Invalid(e)),
    };
    let Some(management) = management else {
        let owner = integration
            .controller_owner_ref(&())
            .ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
        let config_map = resources::webhooks_hsmeta_config_map(integration, &owner, &webhooks::hsmeta_json(&desired));
        let namespace = integration.namespace().unwrap_or_default();
        apply(&Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace), &config_map).await?;
        return Ok(WebhooksOutcome::Rendered {
            config_map: config_map.name_any(),
            subscriptions: desired.subscriptions.len(),
        });
    };
    let api_key = match secrets.value(&management.developer_api_key) {
        Ok(key) => hubspot::Secret::new(key),
        Err(e) => return Ok(WebhooksOutcome::KeyUnavailable(e)),
    };
    // The management API authenticates with the developer API key alone, never the token.
    let client = ctx.hubspot_client(integration, String::new());
    let app_id = management.app_id;
    Ok(match webhooks::apply_through_api(&client, app_id, &api_key, &desired, owned).await {
        Ok(sync) => WebhooksOutcome::Applied { app_id, subscriptions: desired.subscriptions.len(), sync },
        Err(e) => WebhooksOutcome::Failed(e),
    })
}

/// Deletes the object named like the receiver in `api` if there is one and it is ours
/// ([`resources::is_own_receiver_object`]); whether it did. For the receiver Deployment of an
/// earlier version its emptyDir goes with it; the StatefulSet's volume is what keeps events.
async fn delete_own_receiver_object<K>(integration: &HubSpotIntegration, api: &Api<K>) -> Result<bool, Error>
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::HEALTHY_REQUEUE;

    use serde_json::json;

    use super::*;
    use crate::fixtures::*;
    use http::Method;

    const MAPPINGS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings";
    const TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot";
    const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotintegrations/crm/status";
    const CONFIG_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-receiver-config";
    const STATEFULSET: &str = "/apis/apps/v1/namespaces/default/statefulsets/crm-receiver";
    const SERVICE: &str = "/api/v1/namespaces/default/services/crm-receiver";
    const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/crm-receiver";
    const NETWORK_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/crm-receiver";
    const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/crm-receiver";
    const HTTP_ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/crm-receiver";
    /// Where earlier versions ran the receiver.
    const LEGACY_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/crm-receiver";
    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
    const WEBHOOKS_CONFIG_MAP: &str = "/api/v1/namespaces/default/configmaps/crm-webhooks-hsmeta";

    /// The receiver config inside an applied config Secret.
    fn applied_config(secret: &serde_json::Value) -> (String, model::config::ReceiverConfig) {
        use base64::Engine;
        let encoded = secret["data"]["config.yaml"].as_str().expect("config.yaml in the Secret");
        let yaml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
        let config = serde_yaml::from_str(&yaml).expect("a valid receiver config");
        (yaml, config)
    }

    /// A StatefulSet status with `n` of one replica available.
    fn available(n: i32) -> serde_json::Value {
        json!({ "replicas": 1, "readyReplicas": n, "availableReplicas": n })
    }

    /// The receiver Deployment an earlier version created: our label, owned by `crm`.
    fn legacy_deployment(managed_by: Option<&str>) -> serde_json::Value {
        let mut labels = json!({ "app.kubernetes.io/name": "hubspot-operator", "app.kubernetes.io/instance": "crm" });
        if let Some(manager) = managed_by {
            labels["app.kubernetes.io/managed-by"] = json!(manager);
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "crm-receiver", "namespace": "default", "uid": "d3b07384-d9a0-4c1b-9e2f-000000000001",
                "resourceVersion": "7", "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "hubspot.io/v1alpha1", "kind": "HubSpotIntegration", "name": "crm",
                    "uid": "5f0e7f55-0c1e-4c38-9d43-1f1e6a1b2c3d", "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "selector": { "matchLabels": { "app.kubernetes.io/name": "hubspot-operator", "app.kubernetes.io/instance": "crm" } },
                "template": { "spec": { "containers": [{ "name": "receiver" }] } }
            }
        })
    }

    /// The calls of one reconcile of a healthy integration up to the receiver's NetworkPolicy,
    /// the StatefulSet reporting `available_replicas`. Returns the config the receiver runs.
    async fn apply_receiver_calls(api: &mut ApiServer, available_replicas: i32) -> model::config::ReceiverConfig {
        api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
        api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;
        let secret = api.apply(CONFIG_SECRET, None).await;
        api.apply(STATEFULSET, Some(available(available_replicas))).await;
        api.apply(SERVICE, None).await;
        api.apply(PDB, None).await;
        api.apply(NETWORK_POLICY, None).await;
        applied_config(&secret).1
    }

    /// `crm` without a `publicUrl`, exposed through an Ingress for `hooks.example.com` with TLS,
    /// or through an HTTPRoute on Gateway `gateways/public` for the same host.
    fn exposed(base_url: &str, through: Option<ReceiverExposureKind>) -> HubSpotIntegration {
        use model::api::integration::{GatewayParentRef, ReceiverHttpRoute, ReceiverIngress};
        let mut integration = integration(base_url, &[]);
        integration.spec.webhooks.as_mut().unwrap().public_url = None;
        let receiver = &mut integration.spec.receiver;
        match through {
            Some(ReceiverExposureKind::Ingress) => {
                receiver.ingress = Some(ReceiverIngress {
                    class_name: Some("nginx".into()),
                    host: Some("hooks.example.com".into()),
                    path: model::contract::WEBHOOK_PATH.into(),
                    path_type: Default::default(),
                    tls_secret_name: Some("hooks-tls".into()),
                    annotations: Default::default(),
                })
            }
            Some(ReceiverExposureKind::HttpRoute) => {
                receiver.http_route = Some(ReceiverHttpRoute {
                    parent_refs: vec![GatewayParentRef {
                        name: "public".into(),
                        namespace: Some("gateways".into()),
                        section_name: None,
                    }],
                    hostnames: vec!["hooks.example.com".into()],
                    path: model::contract::WEBHOOK_PATH.into(),
                    annotations: Default::default(),
                })
            }
            None => {}
        }
        integration
    }

    /// One reconcile of `integration` against `script`, which also gets the integration as the
    /// API server holds it, to answer the status patch with.
    async fn reconcile_scripted<S>(
        integration: HubSpotIntegration,
        script: impl FnOnce(ApiServer, serde_json::Value) -> S,
    ) -> Action
    where
        S: std::future::Future<Output = ApiServer> + Send + 'static,
    {
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |api| script(api, object))
            .await
            .expect("reconcile succeeds")
    }

    /// `integration` whose last visit applied its exposure through `kind` and reported it.
    fn previously_exposed_by(mut integration: HubSpotIntegration, kind: ReceiverExposureKind) -> HubSpotIntegration {
        let reported =
            model::api::conditions::condition("ReceiverExposed", Some(true), "IngressApplied", "applied", Some(1));
        integration.status = Some(model::api::HubSpotIntegrationStatus {
            conditions: vec![reported],
            receiver_exposed_by: Some(kind),
            ..Default::default()
        });
        integration
    }

    /// An object named `crm-receiver` of `kind` that the operator created for `crm`.
    fn own_receiver_object(api_version: &str, kind: &str) -> serde_json::Value {
        json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {
                "name": "crm-receiver", "namespace": "default", "uid": "7e1c5f00-0000-4000-8000-000000000042",
                "resourceVersion": "12",
                "labels": { "app.kubernetes.io/managed-by": "hubspot-operator", "app.kubernetes.io/instance": "crm" },
                "ownerReferences": [{
                    "apiVersion": "hubspot.io/v1alpha1", "kind": "HubSpotIntegration", "name": "crm",
                    "uid": "5f0e7f55-0c1e-4c38-9d43-1f1e6a1b2c3d", "controller": true
                }]
            }
        })
    }

    /// The delete options of deleting exactly the object of [`own_receiver_object`].
    fn delete_own_object_options() -> serde_json::Value {
        json!({ "propagationPolicy": "Background", "preconditions": { "uid": "7e1c5f00-0000-4000-8000-000000000042" } })
    }

    fn assert_controlled_by_crm(object: &serde_json::Value) {
        let owners = object["metadata"]["ownerReferences"].as_array().expect("ownerReferences");
        assert_eq!(owners.len(), 1, "{object}");
        assert_eq!(owners[0]["kind"], "HubSpotIntegration");
        assert_eq!(owners[0]["name"], "crm");
        assert_eq!(owners[0]["uid"], "5f0e7f55-0c1e-4c38-9d43-1f1e6a1b2c3d");
        assert_eq!(owners[0]["controller"], true);
    }

    #[tokio::test]
    async fn healthy_integration_applies_its_receiver_and_becomes_ready() {
        let hubspot = hubspot(&[(TOKEN, &["crm.objects.contacts.read", "oauth"])]).await;
        let mut integration = integration(&hubspot.base_url(), &["crm.objects.contacts.read"]);
        // A previous visit found a scope missing; the status patch must clear it.
        integration.status = Some(model::api::HubSpotIntegrationStatus {
            missing_scopes: vec!["crm.objects.contacts.read".into()],
            ..Default::default()
        });
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let mine = to_json(&mapping("crm", &["firstname"]));
        let mut not_mine = mapping("billing", &["firstname"]);
        not_mine.metadata.name = Some("billing-contacts".into());
        let not_mine = to_json(&not_mine);

        let action = run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![mine, not_mine]).await;
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;

            let secret = api.apply(CONFIG_SECRET, None).await;
            assert_controlled_by_crm(&secret);
            let (yaml, config) = applied_config(&secret);
            assert_eq!(config.integration, "default/crm");
            assert_eq!(config.hubspot.access_token, TOKEN);
            assert_eq!(config.webhooks.client_secret, "s3cret");
            assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"));
            assert_eq!(config.mappings.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["default/contacts"]);

            let statefulset = api.apply(STATEFULSET, Some(available(1))).await;
            assert_controlled_by_crm(&statefulset);
            assert_eq!(
                (statefulset["apiVersion"].as_str(), statefulset["kind"].as_str()),
                (Some("apps/v1"), Some("StatefulSet"))
            );
            let template = &statefulset["spec"]["template"];
            assert_eq!(template["metadata"]["annotations"]["hubspot.io/config-hash"], resources::config_hash(&yaml));
            assert_eq!(template["spec"]["containers"][0]["image"], "ghcr.io/hubspot-operator/hubspot-operator:test");
            assert_eq!(template["spec"]["securityContext"]["fsGroup"], 65532);
            let claim = &statefulset["spec"]["volumeClaimTemplates"][0];
            assert_eq!(claim["metadata"]["name"], "data");
            assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");

            let service = api.apply(SERVICE, None).await;
            assert_controlled_by_crm(&service);
            assert_eq!(service["spec"]["ports"][0]["port"], 80);
            let budget = api.apply(PDB, None).await;
            assert_controlled_by_crm(&budget);
            assert_eq!(budget["spec"]["maxUnavailable"], 1);
            let policy = api.apply(NETWORK_POLICY, None).await;
            assert_controlled_by_crm(&policy);
            assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
            // The StatefulSet has a pod available: a Deployment of an earlier version is looked for.
            api.get(LEGACY_DEPLOYMENT, None).await;

            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            for type_ in ["Ready", "Authenticated", "ScopesGranted", "ReceiverAvailable"] {
                let c = condition(&patch, type_);
                assert_eq!(c["status"], "True", "{c}");
                assert_eq!(c["observedGeneration"], 1, "{c}");
            }
            let status = &patch["status"];
            assert_eq!(status["hubId"], 62515);
            assert_eq!(status["grantedScopes"], json!(["crm.objects.contacts.read", "oauth"]));
            assert_eq!(status["missingScopes"], serde_json::Value::Null);
            assert!(status.as_object().unwrap().contains_key("missingScopes"), "cleared with an explicit null");
            assert_eq!(status["receiverUrl"], "http://crm-receiver.default.svc/webhooks/hubspot");
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(HEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn missing_scopes_are_reported_while_the_receiver_still_runs() {
        let hubspot = hubspot(&[(TOKEN, &["crm.objects.contacts.read"])]).await;
        let integration =
            integration(&hubspot.base_url(), &["crm.objects.contacts.read", "crm.objects.deals.read", "timeline"]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let action = run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;
            api.apply(CONFIG_SECRET, None).await;
            api.apply(STATEFULSET, Some(available(1))).await;
            api.apply(SERVICE, None).await;
            api.apply(PDB, None).await;
            api.apply(NETWORK_POLICY, None).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Warning", "ScopesMissing").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Authenticated"), ("True".into(), "TokenValid".into()));
            assert_eq!(condition_state(&patch, "ScopesGranted"), ("False".into(), "MissingScopes".into()));
            assert_eq!(
                condition(&patch, "ScopesGranted")["message"],
                "The token lacks required scopes: crm.objects.deals.read, timeline"
            );
            assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "MissingScopes".into()));
            assert_eq!(patch["status"]["missingScopes"], json!(["crm.objects.deals.read", "timeline"]));
            assert_eq!(patch["status"]["grantedScopes"], json!(["crm.objects.contacts.read"]));
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn token_hubspot_refuses_is_reported_with_hubspots_category() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            let secret = hubspot_secret(&[("token", "pat-na1-revoked"), ("client-secret", "s3cret")]);
            api.get(TOKEN_SECRET, Some(secret)).await;
            api.apply(CONFIG_SECRET, None).await;
            api.apply(STATEFULSET, Some(available(0))).await;
            api.apply(SERVICE, None).await;
            api.apply(PDB, None).await;
            api.apply(NETWORK_POLICY, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Warning", "AuthenticationFailed").await;
            api.event("Warning", "ReceiverUnavailable").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Authenticated"), ("False".into(), "INVALID_AUTHENTICATION".into()));
            let message = condition(&patch, "Authenticated")["message"].as_str().unwrap().to_string();
            assert!(message.starts_with("HubSpot answered 401: "), "{message}");
            assert!(message.contains("(correlationId "), "{message}");
            assert!(!message.contains("pat-na1-revoked"), "no token in messages: {message}");
            assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("False".into(), "ReceiverUnavailable".into()));
            assert_eq!(patch["status"]["hubId"], serde_json::Value::Null);
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn missing_token_secret_is_reported_and_nothing_is_applied() {
        // Nothing listens on this address: a HubSpot call would show up as HubSpotUnreachable.
        let integration = integration("http://127.0.0.1:9", &["crm.objects.contacts.read"]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let action = run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            api.get(TOKEN_SECRET, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Warning", "AuthenticationFailed").await;
            api.event("Warning", "ReceiverUnavailable").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Authenticated"), ("False".into(), "SecretNotFound".into()));
            assert_eq!(
                condition(&patch, "Authenticated")["message"],
                r#"Cannot read the token: Secret "hubspot" not found"#
            );
            assert_eq!(condition_state(&patch, "ScopesGranted"), ("Unknown".into(), "NotAuthenticated".into()));
            assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("False".into(), "SecretNotFound".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "SecretNotFound".into()));
            for c in patch["status"]["conditions"].as_array().unwrap() {
                assert_eq!(c["observedGeneration"], 1, "{c}");
            }
            assert_eq!(patch["status"]["observedGeneration"], 1);
            assert!(patch["status"].get("receiverUrl").is_none());
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn missing_token_key_is_reported() {
        let integration = integration("http://127.0.0.1:9", &[]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("client-secret", "s3cret")]))).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Warning", "AuthenticationFailed").await;
            api.event("Warning", "ReceiverUnavailable").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Authenticated"), ("False".into(), "SecretKeyMissing".into()));
            assert_eq!(
                condition(&patch, "Authenticated")["message"],
                r#"Cannot read the token: Secret "hubspot" has no key "token""#
            );
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    const ADMIN_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-admin";

    /// `crm` with its admin API exposed, the token in Secret `crm-admin` key `token`, admitting
    /// pods labelled `app: ops-console`.
    fn with_exposed_admin(base_url: &str) -> HubSpotIntegration {
        let mut integration = integration(base_url, &[]);
        integration.spec.receiver.admin = Some(model::api::integration::AdminSettings {
            token_secret_ref: Some(model::api::SecretKeyRef { name: "crm-admin".into(), key: "token".into() }),
            exposed: true,
            allowed_from: vec![
                serde_json::from_value(json!({ "podSelector": { "matchLabels": { "app": "ops-console" } } })).unwrap(),
            ],
        });
        integration
    }

    fn admin_secret(entries: &[(&str, &str)]) -> serde_json::Value {
        let mut secret = hubspot_secret(entries);
        secret["metadata"]["name"] = json!("crm-admin");
        secret
    }

    #[tokio::test]
    async fn a_missing_admin_token_secret_or_key_is_reported_and_no_receiver_object_is_applied() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let cases = [
            (None, "SecretNotFound", r#"Secret "crm-admin" not found"#),
            (Some(admin_secret(&[("password", "x")])), "SecretKeyMissing", r#"Secret "crm-admin" has no key "token""#),
        ];
        for (answer, reason, problem) in cases {
            let action = reconcile_scripted(with_exposed_admin(&hubspot.base_url()), |mut api, object| async move {
                api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
                api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;
                api.get(ADMIN_SECRET, answer).await;
                api.apply(WEBHOOKS_CONFIG_MAP, None).await;
                api.event("Warning", "ReceiverUnavailable").await;
                let patch = api.merge_status(STATUS, object).await;
                assert_eq!(condition_state(&patch, "Authenticated"), ("True".into(), "TokenValid".into()));
                assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("False".into(), reason.into()));
                assert_eq!(
                    condition(&patch, "ReceiverAvailable")["message"],
                    format!("The receiver config cannot be rendered: {problem}")
                );
                assert_eq!(condition_state(&patch, "Ready"), ("False".into(), reason.into()));
                assert!(patch["status"].get("receiverConfigHash").is_none(), "{patch}");
                api
            })
            .await;
            assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
        }
    }

    /// The calls of one reconcile of [`with_exposed_admin`] whose token Secret holds `token`, up
    /// to the receiver's NetworkPolicy. Returns the pod template's config hash.
    async fn exposed_admin_receiver_calls(api: &mut ApiServer, token: &str) -> String {
        api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
        api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;
        api.get(ADMIN_SECRET, Some(admin_secret(&[("token", &format!("{token}\n"))]))).await;

        let secret = api.apply(CONFIG_SECRET, None).await;
        let (yaml, config) = applied_config(&secret);
        assert_eq!(config.admin.listen.to_string(), "0.0.0.0:8082");
        assert_eq!(config.admin.token.as_deref(), Some(token));
        config.admin.validate().expect("the receiver accepts the admin section");

        let statefulset = api.apply(STATEFULSET, Some(available(1))).await;
        let template = &statefulset["spec"]["template"];
        assert_eq!(
            template["spec"]["containers"][0]["ports"],
            json!([
                { "name": "http", "containerPort": 8080, "protocol": "TCP" },
                { "name": "metrics", "containerPort": 8081, "protocol": "TCP" },
                { "name": "admin", "containerPort": 8082, "protocol": "TCP" },
            ])
        );
        let hash = template["metadata"]["annotations"]["hubspot.io/config-hash"].as_str().unwrap().to_string();
        assert_eq!(hash, resources::config_hash(&yaml));
        let service = api.apply(SERVICE, None).await;
        assert_eq!(
            service["spec"]["ports"],
            json!([
                { "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" },
                { "name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP" },
                { "name": "admin", "port": 8082, "targetPort": "admin", "protocol": "TCP" },
            ])
        );
        api.apply(PDB, None).await;
        let policy = api.apply(NETWORK_POLICY, None).await;
        assert_eq!(
            policy["spec"]["ingress"],
            json!([
                { "ports": [{ "port": 8080, "protocol": "TCP" }, { "port": 8081, "protocol": "TCP" }] },
                {
                    "from": [{ "podSelector": { "matchLabels": { "app": "ops-console" } } }],
                    "ports": [{ "port": 8082, "protocol": "TCP" }],
                },
            ])
        );
        for object in [&statefulset, &service, &policy] {
            assert!(!object.to_string().contains(token), "the token is only in the config Secret: {object}");
        }
        hash
    }

    #[tokio::test]
    async fn an_exposed_admin_api_gets_its_token_port_service_port_and_network_policy_rule() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let action = reconcile_scripted(with_exposed_admin(&hubspot.base_url()), |mut api, object| async move {
            exposed_admin_receiver_calls(&mut api, "admin-s3cret").await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Ready".into()));
            assert!(!patch.to_string().contains("admin-s3cret"), "no token in the status: {patch}");
            api
        })
        .await;
        assert_eq!(action, Action::requeue(HEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn a_rotated_admin_token_rolls_the_receiver_pods() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let (sent, received) = std::sync::mpsc::channel();
        reconcile_scripted(with_exposed_admin(&hubspot.base_url()), |mut api, object| async move {
            sent.send(exposed_admin_receiver_calls(&mut api, "admin-first").await).unwrap();
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            api.merge_status(STATUS, object).await;
            api
        })
        .await;
        let first = received.recv().unwrap();

        let before = healthy_before(with_exposed_admin(&hubspot.base_url()), &first);
        reconcile_scripted(before, |mut api, object| async move {
            let rotated = exposed_admin_receiver_calls(&mut api, "admin-rotated").await;
            assert_ne!(rotated, first, "a new pod template hash rolls the pods");
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "ReceiverConfigChanged").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(patch["status"]["receiverConfigHash"], rotated);
            api
        })
        .await;
    }

    #[tokio::test]
    async fn an_ingress_is_applied_and_its_host_becomes_hubspots_target_url() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = exposed(&hubspot.base_url(), Some(ReceiverExposureKind::Ingress));
        let action = reconcile_scripted(integration, |mut api, object| async move {
            let config = apply_receiver_calls(&mut api, 1).await;
            // Signatures cover the URL HubSpot called, which is on the Ingress's host.
            assert_eq!(config.webhooks.public_url.as_deref(), Some("https://hooks.example.com"));
            let ingress = api.apply(INGRESS, None).await;
            assert_controlled_by_crm(&ingress);
            assert_eq!(ingress["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator");
            assert_eq!(
                ingress["spec"],
                json!({
                    "ingressClassName": "nginx",
                    "rules": [{
                        "host": "hooks.example.com",
                        "http": { "paths": [{
                            "path": "/webhooks/hubspot", "pathType": "Prefix",
                            "backend": { "service": { "name": "crm-receiver", "port": { "number": 80 } } }
                        }] }
                    }],
                    "tls": [{ "hosts": ["hooks.example.com"], "secretName": "hooks-tls" }]
                })
            );
            api.get(LEGACY_DEPLOYMENT, None).await;
            let config_map = api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            let hsmeta: serde_json::Value =
                serde_json::from_str(config_map["data"]["webhooks-hsmeta.json"].as_str().unwrap()).unwrap();
            assert_eq!(hsmeta["config"]["settings"]["targetUrl"], "https://hooks.example.com/webhooks/hubspot");
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "ReceiverExposed"), ("True".into(), "IngressApplied".into()));
            assert_eq!(
                condition(&patch, "ReceiverExposed")["message"],
                "Ingress crm-receiver routes webhooks to the receiver; HubSpot's target URL is https://hooks.example.com/webhooks/hubspot"
            );
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Ready".into()));
            assert_eq!(patch["status"]["receiverExposedBy"], "Ingress");
            api
        })
        .await;
        assert_eq!(action, Action::requeue(HEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn switching_from_ingress_to_http_route_deletes_the_ingress() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = previously_exposed_by(
            exposed(&hubspot.base_url(), Some(ReceiverExposureKind::HttpRoute)),
            ReceiverExposureKind::Ingress,
        );
        reconcile_scripted(integration, |mut api, object| async move {
            apply_receiver_calls(&mut api, 1).await;
            let route = api.apply(HTTP_ROUTE, None).await;
            assert_controlled_by_crm(&route);
            assert_eq!(
                (route["apiVersion"].as_str(), route["kind"].as_str()),
                (Some("gateway.networking.k8s.io/v1"), Some("HTTPRoute"))
            );
            assert_eq!(
                route["spec"],
                json!({
                    "parentRefs": [{ "name": "public", "namespace": "gateways" }],
                    "hostnames": ["hooks.example.com"],
                    "rules": [{
                        "matches": [{ "path": { "type": "PathPrefix", "value": "/webhooks/hubspot" } }],
                        "backendRefs": [{ "name": "crm-receiver", "port": 80 }]
                    }]
                })
            );
            let ingress = own_receiver_object("networking.k8s.io/v1", "Ingress");
            api.get(INGRESS, Some(ingress.clone())).await;
            assert_eq!(api.delete(INGRESS, ingress).await, delete_own_object_options());
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "ReceiverExposed"), ("True".into(), "HTTPRouteApplied".into()));
            assert_eq!(patch["status"]["receiverExposedBy"], "HTTPRoute");
            api
        })
        .await;
    }

    #[tokio::test]
    async fn removing_the_http_route_deletes_it_and_its_condition() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let mut integration =
            previously_exposed_by(exposed(&hubspot.base_url(), None), ReceiverExposureKind::HttpRoute);
        integration.spec.webhooks.as_mut().unwrap().public_url =
            Some("https://hooks.example.com/webhooks/hubspot".into());
        reconcile_scripted(integration, |mut api, object| async move {
            apply_receiver_calls(&mut api, 1).await;
            let route = own_receiver_object("gateway.networking.k8s.io/v1", "HTTPRoute");
            api.get(HTTP_ROUTE, Some(route.clone())).await;
            assert_eq!(api.delete(HTTP_ROUTE, route).await, delete_own_object_options());
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            let types: Vec<&str> =
                patch["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
            assert!(!types.contains(&"ReceiverExposed"), "{types:?}");
            assert!(patch["status"].as_object().unwrap().contains_key("receiverExposedBy"), "cleared with a null");
            assert_eq!(patch["status"]["receiverExposedBy"], serde_json::Value::Null);
            api
        })
        .await;
    }

    #[tokio::test]
    async fn an_exposure_object_that_is_not_ours_is_left_alone() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = previously_exposed_by(exposed(&hubspot.base_url(), None), ReceiverExposureKind::Ingress);
        reconcile_scripted(integration, |mut api, object| async move {
            apply_receiver_calls(&mut api, 1).await;
            let mut someone_elses = own_receiver_object("networking.k8s.io/v1", "Ingress");
            someone_elses["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("helm");
            api.get(INGRESS, Some(someone_elses)).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            // No public URL any more: nothing rendered.
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(patch["status"]["receiverExposedBy"], serde_json::Value::Null);
            api
        })
        .await;
    }

    #[tokio::test]
    async fn without_the_gateway_api_the_http_route_is_reported_and_the_rest_still_applied() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = exposed(&hubspot.base_url(), Some(ReceiverExposureKind::HttpRoute));
        let action = reconcile_scripted(integration, |mut api, object| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.fail(Method::PATCH, HTTP_ROUTE, 404).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            let event = api.event("Warning", "ReceiverNotExposed").await;
            assert!(event["note"].as_str().unwrap().contains("Install the Gateway API CRDs"), "{event}");
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "ReceiverExposed"), ("False".into(), "GatewayAPINotInstalled".into()));
            assert_eq!(
                condition(&patch, "ReceiverExposed")["message"],
                "HTTPRoute crm-receiver cannot be applied: the cluster has no gateway.networking.k8s.io/v1 HTTPRoute \
                 resource. Install the Gateway API CRDs, or expose the receiver with spec.receiver.ingress"
            );
            assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "GatewayAPINotInstalled".into()));
            assert_eq!(patch["status"].get("receiverExposedBy"), None);
            api
        })
        .await;
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn upgrade_deletes_the_old_receiver_deployment_once_the_statefulset_is_available() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            let deployment = legacy_deployment(Some("hubspot-operator"));
            api.get(LEGACY_DEPLOYMENT, Some(deployment.clone())).await;
            let options = api.delete(LEGACY_DEPLOYMENT, deployment).await;
            assert_eq!(
                options,
                json!({ "propagationPolicy": "Background", "preconditions": { "uid": "d3b07384-d9a0-4c1b-9e2f-000000000001" } })
            );
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn old_receiver_deployment_keeps_taking_webhooks_until_the_statefulset_is_available() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 0).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            // No look for the Deployment, let alone a delete.
            api.event("Warning", "ReceiverUnavailable").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "ReceiverAvailable"), ("False".into(), "ReceiverUnavailable".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn a_deployment_without_our_label_is_left_alone() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, Some(legacy_deployment(None))).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            api.merge_status(STATUS, object).await;
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn an_old_deployment_already_gone_at_delete_time_is_not_an_error() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let action = run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, Some(legacy_deployment(Some("hubspot-operator")))).await;
            api.delete_not_found(LEGACY_DEPLOYMENT).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            api.merge_status(STATUS, object).await;
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(HEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn paused_integration_reports_it_and_touches_nothing_until_resumed() {
        let mut integration = annotated(integration("http://127.0.0.1:9", &[]), "hubspot.io/paused", "true");
        let previous = model::api::conditions::condition("Authenticated", Some(true), "TokenValid", "ok", Some(1));
        integration.status = Some(model::api::HubSpotIntegrationStatus {
            conditions: vec![previous],
            hub_id: Some(62515),
            ..Default::default()
        });
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let paused = Arc::new(integration);
        let action = run_scenario(api, reconcile(paused.clone(), ctx), |mut api| async move {
            // No Secret read, no HubSpot call, no apply: only the status says why.
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Ready"), ("Unknown".into(), "Paused".into()));
            assert_eq!(
                condition(&patch, "Ready")["message"],
                "Reconciliation is paused by the hubspot.io/paused annotation; remove it to resume"
            );
            assert_eq!(condition_state(&patch, "Authenticated"), ("True".into(), "TokenValid".into()));
            assert_eq!(patch["status"]["hubId"], 62515);
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::await_change());

        // Visited again while paused and already reported: no call at all.
        let mut reported = paused.as_ref().clone();
        let status = reported.status.as_mut().unwrap();
        super::mark_paused(&mut status.conditions, READY, Some(1));
        let (ctx, api) = test_context();
        let action =
            run_scenario(api, reconcile(Arc::new(reported.clone()), ctx), |api| async move { api }).await.unwrap();
        assert_eq!(action, Action::await_change());

        // "false" is not paused: the full reconcile runs again.
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        reported.spec.api.base_url = hubspot.base_url();
        let resumed = annotated(reported, "hubspot.io/paused", "false");
        let object = to_json(&resumed);
        let (ctx, api) = test_context();
        run_scenario(api, reconcile(Arc::new(resumed), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            // Ready again after the pause: announced.
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Ready".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn a_reconcile_request_is_echoed_in_the_status() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = annotated(
            integration(&hubspot.base_url(), &[]),
            "hubspot.io/reconcile-requested-at",
            "2026-11-26T21:00:00Z",
        );
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(patch["status"]["lastHandledReconcileAt"], "2026-11-26T21:00:00Z");
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    /// `integration` as left by an earlier healthy visit whose receiver ran config `hash`.
    fn healthy_before(mut integration: HubSpotIntegration, hash: &str) -> HubSpotIntegration {
        let ok =
            |type_: &str, reason: &str| model::api::conditions::condition(type_, Some(true), reason, "ok", Some(1));
        integration.status = Some(model::api::HubSpotIntegrationStatus {
            conditions: vec![
                ok("Ready", "Ready"),
                ok("Authenticated", "TokenValid"),
                ok("ScopesGranted", "AllScopesGranted"),
                ok("ReceiverAvailable", "ReceiverAvailable"),
            ],
            observed_generation: Some(1),
            hub_id: Some(62515),
            receiver_config_hash: Some(hash.into()),
            ..Default::default()
        });
        integration
    }

    #[tokio::test]
    async fn a_rotated_secret_is_announced_once_the_receiver_runs_the_new_config() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = healthy_before(integration(&hubspot.base_url(), &[]), "before-rotation");
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            // Every condition stays True: only the new config is announced.
            let event = api.event("Normal", "ReceiverConfigChanged").await;
            assert_eq!(event["regarding"]["kind"], "HubSpotIntegration");
            assert_eq!(event["regarding"]["name"], "crm");
            let patch = api.merge_status(STATUS, object).await;
            let hash = patch["status"]["receiverConfigHash"].as_str().expect("the new hash");
            assert_ne!(hash, "before-rotation");
            assert_eq!(hash.len(), 64, "{hash}");
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn a_steady_integration_announces_nothing() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let first = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = test_context();
        let object = to_json(&first);
        run_scenario(api, reconcile(Arc::new(first.clone()), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert!(patch["status"]["receiverConfigHash"].is_string());
            api
        })
        .await
        .expect("reconcile succeeds");
        // Visited again with what the first visit rendered: no Event at all.
        let (ctx, api) = test_context();
        let rendered = {
            let secrets = hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]);
            let mut store = crate::secrets::SecretStore::default();
            store.insert(serde_json::from_value(secrets).unwrap());
            resources::config_hash(&resources::config_yaml(&receiver_config(&first, &[], &store).unwrap()))
        };
        let again = healthy_before(first, &rendered);
        let object = to_json(&again);
        run_scenario(api, reconcile(Arc::new(again), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            api.merge_status(STATUS, object).await;
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn a_revoked_token_is_announced_as_a_warning_without_the_token() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let integration = healthy_before(integration(&hubspot.base_url(), &[]), "h");
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            let secret = hubspot_secret(&[("token", "pat-na1-revoked"), ("client-secret", "s3cret")]);
            api.get(TOKEN_SECRET, Some(secret)).await;
            api.apply(CONFIG_SECRET, None).await;
            api.apply(STATEFULSET, Some(available(1))).await;
            api.apply(SERVICE, None).await;
            api.apply(PDB, None).await;
            api.apply(NETWORK_POLICY, None).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            let event = api.event("Warning", "AuthenticationFailed").await;
            let note = event["note"].as_str().unwrap();
            assert!(note.starts_with("HubSpot answered 401: "), "{note}");
            assert!(!note.contains("pat-na1-revoked"), "no token in Events: {note}");
            // The new token is also a new receiver config.
            api.event("Normal", "ReceiverConfigChanged").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "INVALID_AUTHENTICATION".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    const APP_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot-app";
    const WEBHOOK_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot";
    const ACCESS_TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-hubspot-access-token";

    fn app_secret(refresh_token: &str) -> serde_json::Value {
        let mut secret = hubspot_secret(&[("client-secret", OAUTH_CLIENT_SECRET), ("refresh-token", refresh_token)]);
        secret["metadata"]["name"] = json!("hubspot-app");
        secret
    }

    /// The token and annotations of an applied managed access token Secret.
    fn applied_token(secret: &serde_json::Value) -> (String, Timestamp, Timestamp) {
        use base64::Engine;
        let encoded = secret["data"]["token"].as_str().expect("token in the Secret");
        let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
        let annotations = &secret["metadata"]["annotations"];
        let time = |key: &str| annotations[key].as_str().expect(key).parse::<Timestamp>().unwrap();
        (token, time("hubspot.io/access-token-refresh-at"), time("hubspot.io/access-token-expires-at"))
    }

    /// `secret` (as applied) with its refresh time moved to `refresh_at`, as the API server
    /// would return it.
    fn refreshing_at(mut secret: serde_json::Value, refresh_at: Timestamp) -> serde_json::Value {
        secret["metadata"]["annotations"]["hubspot.io/access-token-refresh-at"] = json!(refresh_at.to_string());
        secret
    }

    /// The receiver's Kubernetes calls after authentication, up to the status patch.
    async fn oauth_receiver_calls(api: &mut ApiServer) -> (serde_json::Value, serde_json::Value) {
        let config_secret = api.apply(CONFIG_SECRET, None).await;
        let statefulset = api.apply(STATEFULSET, Some(available(1))).await;
        api.apply(SERVICE, None).await;
        api.apply(PDB, None).await;
        api.apply(NETWORK_POLICY, None).await;
        api.get(LEGACY_DEPLOYMENT, None).await;
        api.apply(WEBHOOKS_CONFIG_MAP, None).await;
        (config_secret, statefulset)
    }

    #[tokio::test]
    async fn oauth_integration_keeps_a_fresh_access_token_in_its_managed_secret() {
        let hubspot = hubspot_oauth().await;
        let integration = with_oauth(integration(&hubspot.base_url(), &["crm.objects.contacts.read"]));
        let object = to_json(&integration);

        // First visit: no managed Secret yet, so a token is issued and written.
        let (ctx, api) = test_context();
        let started = Timestamp::now();
        let (action, managed) = {
            let object = object.clone();
            let managed = Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
            let written = managed.clone();
            let action = run_scenario(api, reconcile(Arc::new(integration.clone()), ctx), |mut api| async move {
                api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
                api.get(APP_SECRET, Some(app_secret(OAUTH_REFRESH_TOKEN))).await;
                api.get(WEBHOOK_SECRET, Some(hubspot_secret(&[("client-secret", "s3cret")]))).await;
                api.get(ACCESS_TOKEN_SECRET, None).await;
                let secret = api.apply(ACCESS_TOKEN_SECRET, None).await;
                assert_controlled_by_crm(&secret);
                assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator");
                *written.lock().unwrap() = secret;

                let (config_secret, statefulset) = oauth_receiver_calls(&mut api).await;
                let (yaml, config) = applied_config(&config_secret);
                assert_eq!(
                    config.hubspot.access_token_file.as_deref(),
                    Some(std::path::Path::new("/var/run/hubspot-operator/access-token/token"))
                );
                assert_eq!(config.hubspot.access_token, "");
                assert!(!yaml.contains(OAUTH_REFRESH_TOKEN) && !yaml.contains(OAUTH_CLIENT_SECRET), "{yaml}");
                let pod = &statefulset["spec"]["template"]["spec"];
                let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "access-token").unwrap();
                assert_eq!(volume["secret"]["secretName"], "crm-hubspot-access-token");
                assert_eq!(volume["secret"]["optional"], true);
                let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
                let mount = mounts.iter().find(|m| m["name"] == "access-token").unwrap();
                assert_eq!(mount["mountPath"], "/var/run/hubspot-operator/access-token");
                assert_eq!(mount["readOnly"], true);

                api.event("Normal", "Ready").await;
                let patch = api.merge_status(STATUS, object).await;
                assert_eq!(condition_state(&patch, "Authenticated"), ("True".into(), "TokenValid".into()));
                assert_eq!(condition_state(&patch, "ScopesGranted"), ("True".into(), "AllScopesGranted".into()));
                assert_eq!(patch["status"]["hubId"], 62515);
                api
            })
            .await
            .expect("reconcile succeeds");
            let managed = managed.lock().unwrap().clone();
            (action, managed)
        };
        assert_eq!(action, Action::requeue(HEALTHY_REQUEUE));
        let (first_token, refresh_at, expires_at) = applied_token(&managed);
        // The emulator's tokens live 30 minutes; the operator replaces them at half that.
        assert_eq!(expires_at.duration_since(refresh_at), SignedDuration::from_secs(900));
        assert!(refresh_at >= started.saturating_add(SignedDuration::from_secs(900)).unwrap());
        assert_eq!(
            hubspot_calls(&hubspot).await,
            ["/oauth/v3/token", "/oauth/v1/access-tokens/[redacted]"],
            "one token request, then the token is introspected"
        );

        // Visited while the token is fresh: no token request and no write, and back before the
        // token is due.
        let due_soon = Timestamp::now().saturating_add(SignedDuration::from_secs(60)).unwrap();
        let stored = refreshing_at(managed.clone(), due_soon);
        let (ctx, api) = test_context();
        let action = run_scenario(api, reconcile(Arc::new(integration.clone()), ctx), {
            let object = object.clone();
            |mut api| async move {
                api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
                api.get(APP_SECRET, Some(app_secret(OAUTH_REFRESH_TOKEN))).await;
                api.get(WEBHOOK_SECRET, Some(hubspot_secret(&[("client-secret", "s3cret")]))).await;
                api.get(ACCESS_TOKEN_SECRET, Some(stored)).await;
                oauth_receiver_calls(&mut api).await;
                api.event("Normal", "Ready").await;
                let patch = api.merge_status(STATUS, object).await;
                assert_eq!(condition_state(&patch, "Authenticated"), ("True".into(), "TokenValid".into()));
                api
            }
        })
        .await
        .expect("reconcile succeeds");
        assert_ne!(action, Action::requeue(HEALTHY_REQUEUE), "back before the token is due");
        assert_eq!(
            hubspot_calls(&hubspot).await[2..],
            ["/oauth/v1/access-tokens/[redacted]"],
            "the stored token is used as it is"
        );

        // Visited once the token is due: a new one replaces it.
        let due = refreshing_at(managed, Timestamp::now().saturating_sub(SignedDuration::from_secs(1)).unwrap());
        let (ctx, api) = test_context();
        let replaced = Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
        let written = replaced.clone();
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            api.get(APP_SECRET, Some(app_secret(OAUTH_REFRESH_TOKEN))).await;
            api.get(WEBHOOK_SECRET, Some(hubspot_secret(&[("client-secret", "s3cret")]))).await;
            api.get(ACCESS_TOKEN_SECRET, Some(due)).await;
            *written.lock().unwrap() = api.apply(ACCESS_TOKEN_SECRET, None).await;
            oauth_receiver_calls(&mut api).await;
            api.event("Normal", "Ready").await;
            api.merge_status(STATUS, object).await;
            api
        })
        .await
        .expect("reconcile succeeds");
        let (new_token, new_refresh_at, _) = applied_token(&replaced.lock().unwrap());
        assert_ne!(new_token, first_token);
        assert!(new_refresh_at > refresh_at);
        assert_eq!(
            hubspot_calls(&hubspot).await[3..],
            ["/oauth/v3/token", "/oauth/v1/access-tokens/[redacted]"],
            "a due token is replaced"
        );
    }

    #[tokio::test]
    async fn a_refused_refresh_token_is_reported_and_the_managed_secret_is_kept() {
        let hubspot = hubspot_oauth().await;
        let integration = healthy_before(with_oauth(integration(&hubspot.base_url(), &[])), "h");
        let object = to_json(&integration);
        let (ctx, api) = test_context();
        let due = Timestamp::now().saturating_sub(SignedDuration::from_secs(60)).unwrap();
        let stored = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "crm-hubspot-access-token", "namespace": "default",
                "annotations": {
                    "hubspot.io/access-token-refresh-at": due.to_string(),
                    "hubspot.io/access-token-expires-at": due.to_string(),
                }
            },
            "data": { "token": "Q0pULW9sZA==" }
        });
        let action = run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            api.get(APP_SECRET, Some(app_secret("na1-revoked-refresh-token"))).await;
            api.get(WEBHOOK_SECRET, Some(hubspot_secret(&[("client-secret", "s3cret")]))).await;
            api.get(ACCESS_TOKEN_SECRET, Some(stored)).await;
            // No apply of the managed Secret: the receiver keeps the last token it had.
            oauth_receiver_calls(&mut api).await;
            let event = api.event("Warning", "AuthenticationFailed").await;
            let note = event["note"].as_str().unwrap();
            assert!(note.contains("missing or invalid refresh token"), "HubSpot's message: {note}");
            assert!(!note.contains("na1-revoked-refresh-token") && !note.contains(OAUTH_CLIENT_SECRET), "{note}");
            api.event("Normal", "ReceiverConfigChanged").await;
            let patch = api.merge_status(STATUS, object).await;
            let (status, reason) = condition_state(&patch, "Authenticated");
            assert_eq!((status.as_str(), reason.as_str()), ("False", "BAD_REFRESH_TOKEN"));
            assert_eq!(condition_state(&patch, "Ready").0, "False");
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
        assert_eq!(hubspot_calls(&hubspot).await, ["/oauth/v3/token"], "one refused token request");
    }

    #[tokio::test]
    async fn a_stored_token_hubspot_does_not_know_is_replaced_before_it_is_due() {
        let hubspot = hubspot_oauth().await;
        let integration = with_oauth(integration(&hubspot.base_url(), &[]));
        let object = to_json(&integration);
        let (ctx, api) = test_context();
        let later = Timestamp::now().saturating_add(SignedDuration::from_secs(600)).unwrap();
        let stored = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "crm-hubspot-access-token", "namespace": "default",
                "annotations": {
                    "hubspot.io/access-token-refresh-at": later.to_string(),
                    "hubspot.io/access-token-expires-at": later.to_string(),
                }
            },
            "data": { "token": "Q0pULW9sZA==" }
        });
        let written = Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
        let applied = written.clone();
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            api.get(APP_SECRET, Some(app_secret(OAUTH_REFRESH_TOKEN))).await;
            api.get(WEBHOOK_SECRET, Some(hubspot_secret(&[("client-secret", "s3cret")]))).await;
            api.get(ACCESS_TOKEN_SECRET, Some(stored)).await;
            *applied.lock().unwrap() = api.apply(ACCESS_TOKEN_SECRET, None).await;
            oauth_receiver_calls(&mut api).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Authenticated"), ("True".into(), "TokenValid".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
        let (token, _, _) = applied_token(&written.lock().unwrap());
        assert_ne!(token, "CJT-old");
        assert_eq!(
            hubspot_calls(&hubspot).await,
            ["/oauth/v1/access-tokens/[redacted]", "/oauth/v3/token", "/oauth/v1/access-tokens/[redacted]"]
        );
    }

    #[test]
    fn requeue_comes_before_the_access_token_is_due() {
        let now: Timestamp = "2026-11-26T22:00:00Z".parse().unwrap();
        let at = |s: i64| now.saturating_add(SignedDuration::from_secs(s)).unwrap();
        assert_eq!(requeue_after(true, None, now), HEALTHY_REQUEUE);
        assert_eq!(requeue_after(false, None, now), UNHEALTHY_REQUEUE);
        assert_eq!(requeue_after(true, Some(at(60)), now), Duration::from_secs(60));
        assert_eq!(requeue_after(true, Some(at(900)), now), HEALTHY_REQUEUE);
        assert_eq!(requeue_after(false, Some(at(20)), now), Duration::from_secs(20));
        // Due already (or about to be): soon, but not in a loop.
        assert_eq!(requeue_after(true, Some(at(-10)), now), MIN_TOKEN_REQUEUE);
    }

    /// `crm` with these subscriptions, managed through the API of app 54321 with the developer
    /// API key in Secret `hubspot` under `developer-api-key`.
    fn api_managed(base_url: &str, subscriptions: &[(&str, Option<&str>, bool)]) -> HubSpotIntegration {
        use model::api::integration::{WebhookApiManagement, WebhookManagement, WebhookSubscription};
        let mut integration = integration(base_url, &[]);
        let webhooks = integration.spec.webhooks.as_mut().unwrap();
        webhooks.subscriptions = subscriptions
            .iter()
            .map(|(event_type, property, active)| WebhookSubscription {
                event_type: event_type.to_string(),
                property_name: property.map(Into::into),
                active: *active,
            })
            .collect();
        webhooks.management = Some(WebhookManagement {
            api: Some(WebhookApiManagement {
                app_id: 54321,
                developer_api_key: model::api::SecretKeyRef { name: "hubspot".into(), key: "developer-api-key".into() },
            }),
        });
        integration
    }

    /// One reconcile of `integration` whose Secret holds `developer_key`, announcing `events`;
    /// the status patch.
    async fn reconcile_api_managed(
        integration: HubSpotIntegration,
        developer_key: &'static str,
        events: &'static [(&'static str, &'static str)],
    ) -> serde_json::Value {
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let (patch_tx, patch_rx) = tokio::sync::oneshot::channel();
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
            let secret =
                hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret"), ("developer-api-key", developer_key)]);
            api.get(TOKEN_SECRET, Some(secret)).await;
            api.apply(CONFIG_SECRET, None).await;
            api.apply(STATEFULSET, Some(available(1))).await;
            api.apply(SERVICE, None).await;
            api.apply(PDB, None).await;
            api.apply(NETWORK_POLICY, None).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            // HubSpot's side is managed through its API: no ConfigMap.
            for (type_, reason) in events {
                api.event(type_, reason).await;
            }
            patch_tx.send(api.merge_status(STATUS, object).await).unwrap();
            api
        })
        .await
        .expect("reconcile succeeds");
        patch_rx.await.unwrap()
    }

    /// The webhooks management calls the emulator received since the last look, as
    /// `METHOD path status body`; each must carry the (redacted) developer API key.
    async fn management_calls(hubspot: &emulator::RunningEmulator) -> Vec<String> {
        let http = reqwest::Client::new();
        let url = format!("{}/_emulator/requests", hubspot.base_url());
        let log: Vec<serde_json::Value> = http.get(&url).send().await.unwrap().json().await.unwrap();
        http.delete(&url).send().await.unwrap().error_for_status().unwrap();
        log.iter()
            .filter(|r| r["path"].as_str().unwrap().starts_with("/webhooks/"))
            .map(|r| {
                assert_eq!(r["query"], "hapikey=[redacted]", "{r}");
                let body = if r["body"].is_null() { String::new() } else { format!(" {}", r["body"]) };
                format!("{} {} {}{body}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap(), r["status"])
            })
            .collect()
    }

    /// The app's subscriptions in the emulator: `id eventType[:property] active`.
    async fn app_subscriptions(hubspot: &emulator::RunningEmulator) -> Vec<String> {
        let url = format!("{}/webhooks/v3/54321/subscriptions?hapikey=emulator-developer-api-key", hubspot.base_url());
        let list: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        // This look is not one of the operator's calls.
        management_calls(hubspot).await;
        let listed = list["results"].as_array().unwrap().iter().map(|s| {
            let property = s["propertyName"].as_str().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{} {}{property} {}", s["id"].as_str().unwrap(), s["eventType"].as_str().unwrap(), s["active"])
        });
        listed.collect()
    }

    fn with_status(mut integration: HubSpotIntegration, patch: &serde_json::Value) -> HubSpotIntegration {
        integration.status = Some(serde_json::from_value(patch["status"].clone()).unwrap());
        integration
    }

    #[tokio::test]
    async fn api_management_creates_keeps_changes_and_removes_only_its_own_subscriptions() {
        const KEY: &str = "emulator-developer-api-key";
        // The app starts with two subscriptions the operator did not create (ids 2100001, 2100002).
        let hubspot = hubspot_app(&[(TOKEN, &["oauth"])], &["contact.creation", "deal.creation"]).await;
        let base = hubspot.base_url();
        let wanted = [
            ("contact.creation", None, true),
            ("contact.deletion", None, false),
            ("contact.propertyChange", Some("firstname"), true),
        ];
        let first = api_managed(&base, &wanted);
        let patch = reconcile_api_managed(first.clone(), KEY, &[("Normal", "Ready")]).await;
        assert_eq!(
            management_calls(&hubspot).await,
            [
                "GET /webhooks/v3/54321/settings 404",
                r#"PUT /webhooks/v3/54321/settings 200 {"targetUrl":"https://hooks.example.com/webhooks/hubspot","throttling":{"maxConcurrentRequests":10}}"#,
                "GET /webhooks/v3/54321/subscriptions 200",
                r#"POST /webhooks/v3/54321/subscriptions 201 {"active":false,"eventType":"contact.deletion"}"#,
                r#"POST /webhooks/v3/54321/subscriptions 201 {"active":true,"eventType":"contact.propertyChange","propertyName":"firstname"}"#,
            ]
        );
        assert_eq!(patch["status"]["webhookSubscriptionIds"], json!(["2100003", "2100004"]));
        assert_eq!(condition_state(&patch, "WebhooksReady"), ("True".into(), "Applied".into()));
        assert_eq!(
            condition(&patch, "WebhooksReady")["message"],
            "3 subscriptions of app 54321 are as wanted (this visit: settings updated, 2 created, 0 changed, 0 deleted)"
        );
        assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Ready".into()));

        // Visited again unchanged: HubSpot is read, nothing written.
        let patch = reconcile_api_managed(with_status(first, &patch), KEY, &[]).await;
        assert_eq!(
            management_calls(&hubspot).await,
            ["GET /webhooks/v3/54321/settings 200", "GET /webhooks/v3/54321/subscriptions 200"]
        );
        assert_eq!(patch["status"]["webhookSubscriptionIds"], json!(["2100003", "2100004"]));

        // contact.deletion turned on, firstname's changes no longer wanted, more concurrency;
        // contact.creation is dropped from the spec too, but it is not the operator's.
        let mut changed = with_status(api_managed(&base, &[("contact.deletion", None, true)]), &patch);
        changed.spec.webhooks.as_mut().unwrap().max_concurrent_requests = Some(20);
        let patch = reconcile_api_managed(changed.clone(), KEY, &[]).await;
        assert_eq!(
            management_calls(&hubspot).await,
            [
                "GET /webhooks/v3/54321/settings 200",
                r#"PUT /webhooks/v3/54321/settings 200 {"targetUrl":"https://hooks.example.com/webhooks/hubspot","throttling":{"maxConcurrentRequests":20}}"#,
                "GET /webhooks/v3/54321/subscriptions 200",
                r#"POST /webhooks/v3/54321/subscriptions/batch/update 200 {"inputs":[{"active":true,"id":2100003}]}"#,
                "DELETE /webhooks/v3/54321/subscriptions/2100004 204",
            ]
        );
        assert_eq!(patch["status"]["webhookSubscriptionIds"], json!(["2100003"]));
        assert_eq!(
            app_subscriptions(&hubspot).await,
            ["2100001 contact.creation true", "2100002 deal.creation true", "2100003 contact.deletion true"]
        );

        // Nothing wanted any more: the operator's last subscription goes, the others stay.
        let none = with_status(api_managed(&base, &[]), &patch);
        let patch = reconcile_api_managed(none, KEY, &[]).await;
        assert_eq!(
            management_calls(&hubspot).await,
            [
                "GET /webhooks/v3/54321/settings 200",
                r#"PUT /webhooks/v3/54321/settings 200 {"targetUrl":"https://hooks.example.com/webhooks/hubspot","throttling":{"maxConcurrentRequests":10}}"#,
                "GET /webhooks/v3/54321/subscriptions 200",
                "DELETE /webhooks/v3/54321/subscriptions/2100003 204",
            ]
        );
        // The merge patch clears the list the previous status had.
        assert_eq!(patch["status"]["webhookSubscriptionIds"], serde_json::Value::Null, "{patch}");
        assert_eq!(app_subscriptions(&hubspot).await, ["2100001 contact.creation true", "2100002 deal.creation true"]);
    }

    #[tokio::test]
    async fn a_refused_developer_api_key_is_reported_with_hubspots_answer_and_never_shown() {
        let hubspot = hubspot_app(&[(TOKEN, &["oauth"])], &["contact.creation"]).await;
        let integration = api_managed(&hubspot.base_url(), &[("contact.deletion", None, true)]);
        let patch = reconcile_api_managed(integration, "wrong-developer-key", &[("Warning", "WebhooksFailed")]).await;
        assert_eq!(management_calls(&hubspot).await, ["GET /webhooks/v3/54321/settings 401"]);
        let (status, reason) = condition_state(&patch, "WebhooksReady");
        assert_eq!(status, "False");
        assert_eq!(reason, "INVALID_AUTHENTICATION");
        let message = condition(&patch, "WebhooksReady")["message"].as_str().unwrap();
        assert!(message.starts_with("HubSpot answered 401: "), "{message}");
        assert!(message.contains("(correlationId "), "{message}");
        assert!(!message.contains("wrong-developer-key"), "{message}");
        assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "INVALID_AUTHENTICATION".into()));
        assert!(patch["status"].get("webhookSubscriptionIds").is_none());
    }

    #[tokio::test]
    async fn rendered_webhooks_go_into_a_config_map_and_are_managed_by_the_user() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let mut integration = api_managed(&hubspot.base_url(), &[("deal.creation", None, true)]);
        integration.spec.webhooks.as_mut().unwrap().management = None;
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        let mine = to_json(&mapping("crm", &["firstname"]));
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![mine]).await;
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;
            api.apply(CONFIG_SECRET, None).await;
            api.apply(STATEFULSET, Some(available(1))).await;
            api.apply(SERVICE, None).await;
            api.apply(PDB, None).await;
            api.apply(NETWORK_POLICY, None).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            let config_map = api.apply(WEBHOOKS_CONFIG_MAP, None).await;
            assert_controlled_by_crm(&config_map);
            assert_eq!(config_map["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator");
            let file = config_map["data"]["webhooks-hsmeta.json"].as_str().expect("the file");
            let hsmeta: serde_json::Value = serde_json::from_str(file).unwrap();
            assert_eq!(
                hsmeta,
                json!({
                    "uid": "webhooks", "type": "webhooks",
                    "config": {
                        "settings": { "targetUrl": "https://hooks.example.com/webhooks/hubspot", "maxConcurrentRequests": 10 },
                        "subscriptions": { "crmObjects": [{ "subscriptionType": "object.creation", "objectType": "deal", "active": true }] }
                    }
                })
            );
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "WebhooksReady"), ("True".into(), "ManagedByUser".into()));
            let message = condition(&patch, "WebhooksReady")["message"].as_str().unwrap();
            assert!(message.contains("managed by you: the operator does not change them"), "{message}");
            assert!(message.contains("(1 subscriptions) are in ConfigMap crm-webhooks-hsmeta"), "{message}");
            api
        })
        .await
        .expect("reconcile succeeds");
        // Nothing was asked of HubSpot's webhooks API.
        assert!(management_calls(&hubspot).await.is_empty());
    }

    #[tokio::test]
    async fn without_a_public_url_nothing_is_rendered_and_the_integration_stays_ready() {
        let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
        let mut integration = integration(&hubspot.base_url(), &[]);
        integration.spec.webhooks.as_mut().unwrap().public_url = None;
        let (ctx, api) = test_context();
        let object = to_json(&integration);
        run_scenario(api, reconcile(Arc::new(integration), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
            // No ConfigMap apply.
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "WebhooksReady"), ("True".into(), "ManagedByUser".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Ready".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mapping_status_write_does_not_reconcile_its_integration_but_a_new_mapping_spec_does() {
        use kube::api::{Patch, PatchParams};
        let hubspot = hubspot(&[(TOKEN, &[])]).await;
        let mut crm = integration(&hubspot.base_url(), &[]);
        // Without webhooks no receiver config renders: a reconcile reads and writes the status.
        crm.spec.webhooks = None;
        let contacts = mapping("crm", &["firstname"]);
        let (ctx, api) = stand_in_context(&crm, TOKEN, &contacts).await;
        let running = spawn_controller(controller(ctx.client.clone(), Some(NAMESPACE)), reconcile, ctx.clone());
        let first = settled_calls(&api).await;
        assert!(first.status_patches > 0, "the integration was reconciled: {first:?}");

        let status = json!({ "status": { "missingProperties": ["firstname"] } });
        let before = reconciles::<HubSpotIntegration>(&ctx);
        Api::<PropertyMapping>::namespaced(ctx.client.clone(), NAMESPACE)
            .patch_status("contacts", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            reconciles::<HubSpotIntegration>(&ctx),
            before,
            "the mapping's status write reconciled its integration"
        );

        let mut edited = to_json(&contacts);
        edited["metadata"]["generation"] = json!(5);
        let before = reconciles::<HubSpotIntegration>(&ctx);
        api.insert("propertymappings", edited);
        more_reconciles_than::<HubSpotIntegration>(&ctx, before).await;
        running.abort();
    }
}
