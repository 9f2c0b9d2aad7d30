//! The `HubSpotIntegration` reconciler: checks the token with HubSpot, renders the receiver's
//! config, applies the receiver's Secret, StatefulSet, Service, PodDisruptionBudget and
//! NetworkPolicy, and reports conditions.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::resources::{self, config_hash, config_yaml, receiver_config};
use super::status::{
    Authentication, INTEGRATION_EVENTS, ReceiverState, condition_events, config_change_event, integration_status,
    mark_paused,
};
use super::{Context, Error, UNHEALTHY_REQUEUE, apply, patch_status, publish, read_secrets, scoped_api};
use crate::api::conditions::is_true;
use crate::api::integration::condition_types::READY;
use crate::api::{HubSpotIntegration, PropertyMapping, is_paused};
use crate::config::ReceiverConfig;

/// The integration controller: reconciles on changes of integrations, of the children it owns
/// and of the `PropertyMapping`s that reference it.
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotIntegration> {
    // Only our own children, not every Secret in the cluster.
    let children =
        watcher::Config::default().labels(&format!("{}={}", resources::MANAGED_BY_LABEL, resources::MANAGED_BY));
    Controller::new(scoped_api::<HubSpotIntegration>(client.clone(), namespace), watcher::Config::default())
        .owns(scoped_api::<Secret>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<StatefulSet>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<Service>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<PodDisruptionBudget>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<NetworkPolicy>(client.clone(), namespace), children)
        .watches(scoped_api::<PropertyMapping>(client, namespace), watcher::Config::default(), |mapping| {
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
    let secret_names =
        resources::referenced_secret_names(&integration, &resources::mappings_of(&integration, &mappings));
    let secrets = read_secrets(&ctx.client, &namespace, &secret_names).await?;

    let auth = match secrets.value(&integration.spec.credentials.private_app_token) {
        Err(e) => Authentication::TokenUnavailable(e),
        Ok(token) => match ctx.hubspot_client(&integration, token).introspect_token().await {
            Ok(info) => Authentication::Succeeded(info),
            Err(e) => Authentication::Failed(e),
        },
    };

    // The receiver runs whenever its config can be rendered, even while HubSpot refuses the
    // token: webhooks are still taken and kept until the token works again.
    let (receiver, config_hash) = match receiver_config(&integration, &mappings, &secrets) {
        Err(e) => (ReceiverState::NotRendered(e), None),
        Ok(config) => {
            let (state, hash) = apply_receiver(&integration, &config, &ctx).await?;
            (state, Some(hash))
        }
    };
    let receiver_url =
        matches!(receiver, ReceiverState::Deployed { .. }).then(|| resources::receiver_url(&integration));

    let mut status = integration_status(&integration, &auth, &receiver, receiver_url);
    let previous = integration.status.clone().unwrap_or_default();
    if config_hash.is_some() {
        status.receiver_config_hash = config_hash;
    }
    let mut changes = condition_events(&previous.conditions, &status.conditions, INTEGRATION_EVENTS);
    changes
        .extend(config_change_event(previous.receiver_config_hash.as_deref(), status.receiver_config_hash.as_deref()));
    publish(&ctx, integration.as_ref(), &changes).await;
    patch_status(&api, &name, integration.status.as_ref(), &status).await?;
    ctx.succeeded(integration.as_ref());

    let ready = is_true(&status.conditions, READY);
    tracing::info!(integration = %format!("{namespace}/{name}"), ready, "reconciled HubSpotIntegration");
    Ok(Action::requeue(if ready { ctx.drift_interval } else { UNHEALTHY_REQUEUE }))
}

/// Applies the config Secret, the StatefulSet, the Service, the PodDisruptionBudget and the
/// NetworkPolicy, and reads availability from the StatefulSet the API server returned. Once the
/// StatefulSet has a pod available, removes the receiver Deployment of earlier versions.
/// Returns the receiver's state and the hash of the config it runs.
async fn apply_receiver(
    integration: &HubSpotIntegration,
    config: &ReceiverConfig,
    ctx: &Context,
) -> Result<(ReceiverState, String), Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let owner =
        integration.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
    let yaml = config_yaml(config);
    let client = &ctx.client;

    let secret = resources::config_secret(integration, &owner, &yaml);
    apply(&Api::<Secret>::namespaced(client.clone(), &namespace), &secret).await?;
    let hash = config_hash(&yaml);
    let statefulset = resources::receiver_statefulset(integration, &owner, &ctx.receiver_image, &hash);
    let applied = apply(&Api::<StatefulSet>::namespaced(client.clone(), &namespace), &statefulset).await?;
    let service = resources::receiver_service(integration, &owner);
    apply(&Api::<Service>::namespaced(client.clone(), &namespace), &service).await?;
    let budget = resources::receiver_pod_disruption_budget(integration, &owner);
    apply(&Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace), &budget).await?;
    let policy = resources::receiver_network_policy(integration, &owner);
    apply(&Api::<NetworkPolicy>::namespaced(client.clone(), &namespace), &policy).await?;

    let status = applied.status.unwrap_or_default();
    // `availableReplicas` honours minReadySeconds; API servers that do not report it still
    // report ready pods.
    let available_replicas = status.available_replicas.or(status.ready_replicas).unwrap_or(0);
    if available_replicas >= 1 {
        // Both workloads match the Service's selector, so until now the old pod kept taking
        // webhooks: removing it only after the new one is available keeps them flowing.
        delete_legacy_deployment(integration, &Api::namespaced(client.clone(), &namespace)).await?;
    }
    let state = ReceiverState::Deployed { available_replicas, desired_replicas: integration.spec.receiver.replicas };
    Ok((state, hash))
}

/// Deletes the receiver Deployment an earlier operator version created for `integration`, if
/// there is one and it is ours. Its emptyDir goes with it; the StatefulSet's volume is what
/// keeps events from now on.
async fn delete_legacy_deployment(integration: &HubSpotIntegration, api: &Api<Deployment>) -> Result<(), Error> {
    let Some(deployment) = api.get_opt(&resources::receiver_name(integration)).await? else {
        return Ok(());
    };
    if !resources::is_legacy_receiver_deployment(integration, &deployment) {
        return Ok(());
    }
    // The precondition makes sure the object inspected is the one deleted.
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: deployment.metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(&deployment.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(deployment = %deployment.name_any(), namespace = ?deployment.namespace(), "deleted the receiver Deployment of an earlier version");
            Ok(())
        }
        // Already gone, or replaced by another object since it was read: nothing of ours to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::controller::HEALTHY_REQUEUE;

    use serde_json::json;

    use super::*;
    use crate::controller::fixtures::*;

    const MAPPINGS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings";
    const TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot";
    const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotintegrations/crm/status";
    const CONFIG_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-receiver-config";
    const STATEFULSET: &str = "/apis/apps/v1/namespaces/default/statefulsets/crm-receiver";
    const SERVICE: &str = "/api/v1/namespaces/default/services/crm-receiver";
    const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/crm-receiver";
    const NETWORK_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/crm-receiver";
    /// Where earlier versions ran the receiver.
    const LEGACY_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/crm-receiver";
    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";

    /// The receiver config inside an applied config Secret.
    fn applied_config(secret: &serde_json::Value) -> (String, crate::config::ReceiverConfig) {
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
    /// the StatefulSet reporting `available_replicas`.
    async fn apply_receiver_calls(api: &mut ApiServer, available_replicas: i32) {
        api.list(MAPPINGS, "PropertyMapping", "hubspot.io/v1alpha1", vec![]).await;
        api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret")]))).await;
        api.apply(CONFIG_SECRET, None).await;
        api.apply(STATEFULSET, Some(available(available_replicas))).await;
        api.apply(SERVICE, None).await;
        api.apply(PDB, None).await;
        api.apply(NETWORK_POLICY, None).await;
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
        integration.status = Some(crate::api::HubSpotIntegrationStatus {
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
        let previous = crate::api::conditions::condition("Authenticated", Some(true), "TokenValid", "ok", Some(1));
        integration.status = Some(crate::api::HubSpotIntegrationStatus {
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
            |type_: &str, reason: &str| crate::api::conditions::condition(type_, Some(true), reason, "ok", Some(1));
        integration.status = Some(crate::api::HubSpotIntegrationStatus {
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
            let mut store = crate::controller::secrets::SecretStore::default();
            store.insert(serde_json::from_value(secrets).unwrap());
            resources::config_hash(&resources::config_yaml(&receiver_config(&first, &[], &store).unwrap()))
        };
        let again = healthy_before(first, &rendered);
        let object = to_json(&again);
        run_scenario(api, reconcile(Arc::new(again), ctx), |mut api| async move {
            apply_receiver_calls(&mut api, 1).await;
            api.get(LEGACY_DEPLOYMENT, None).await;
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
}
