//! The `HubSpotIntegration` reconciler: checks the token with HubSpot, renders the receiver's
//! config, applies the receiver's Secret, Deployment and Service, and reports conditions.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::resources::{self, config_hash, config_yaml, receiver_config};
use super::status::{Authentication, ReceiverState, integration_status};
use super::{Context, Error, HEALTHY_REQUEUE, UNHEALTHY_REQUEUE, apply, patch_status, read_secrets, scoped_api};
use crate::api::conditions::is_true;
use crate::api::integration::condition_types::READY;
use crate::api::{HubSpotIntegration, PropertyMapping};
use crate::config::ReceiverConfig;

/// The integration controller: reconciles on changes of integrations, of the children it owns
/// and of the `PropertyMapping`s that reference it.
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotIntegration> {
    // Only our own children, not every Secret in the cluster.
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=hubspot-operator");
    Controller::new(scoped_api::<HubSpotIntegration>(client.clone(), namespace), watcher::Config::default())
        .owns(scoped_api::<Secret>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<Deployment>(client.clone(), namespace), children.clone())
        .owns(scoped_api::<Service>(client.clone(), namespace), children)
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
    let receiver = match receiver_config(&integration, &mappings, &secrets) {
        Err(e) => ReceiverState::NotRendered(e),
        Ok(config) => apply_receiver(&integration, &config, &ctx).await?,
    };
    let receiver_url =
        matches!(receiver, ReceiverState::Deployed { .. }).then(|| resources::receiver_url(&integration));

    let status = integration_status(&integration, &auth, &receiver, receiver_url);
    let api = Api::<HubSpotIntegration>::namespaced(ctx.client.clone(), &namespace);
    patch_status(&api, &name, integration.status.as_ref(), &status).await?;
    ctx.succeeded(integration.as_ref());

    let ready = is_true(&status.conditions, READY);
    tracing::info!(integration = %format!("{namespace}/{name}"), ready, "reconciled HubSpotIntegration");
    Ok(Action::requeue(if ready { HEALTHY_REQUEUE } else { UNHEALTHY_REQUEUE }))
}

/// Applies the config Secret, the Deployment and the Service, and reads availability from the
/// Deployment the API server returned.
async fn apply_receiver(
    integration: &HubSpotIntegration,
    config: &ReceiverConfig,
    ctx: &Context,
) -> Result<ReceiverState, Error> {
    let namespace = integration.namespace().unwrap_or_default();
    let owner =
        integration.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
    let yaml = config_yaml(config);

    let secret = resources::config_secret(integration, &owner, &yaml);
    apply(&Api::<Secret>::namespaced(ctx.client.clone(), &namespace), &secret).await?;
    let deployment = resources::receiver_deployment(integration, &owner, &ctx.receiver_image, &config_hash(&yaml));
    let deployed = apply(&Api::<Deployment>::namespaced(ctx.client.clone(), &namespace), &deployment).await?;
    let service = resources::receiver_service(integration, &owner);
    apply(&Api::<Service>::namespaced(ctx.client.clone(), &namespace), &service).await?;

    let status = deployed.status.unwrap_or_default();
    Ok(ReceiverState::Deployed {
        available_replicas: status.available_replicas.unwrap_or(0),
        desired_replicas: integration.spec.receiver.replicas,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::controller::fixtures::*;

    const MAPPINGS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings";
    const TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot";
    const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotintegrations/crm/status";
    const CONFIG_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-receiver-config";
    const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/crm-receiver";
    const SERVICE: &str = "/api/v1/namespaces/default/services/crm-receiver";
    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";

    /// The receiver config inside an applied config Secret.
    fn applied_config(secret: &serde_json::Value) -> (String, crate::config::ReceiverConfig) {
        use base64::Engine;
        let encoded = secret["data"]["config.yaml"].as_str().expect("config.yaml in the Secret");
        let yaml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
        let config = serde_yaml::from_str(&yaml).expect("a valid receiver config");
        (yaml, config)
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

            let deployment = api.apply(DEPLOYMENT, Some(json!({ "replicas": 1, "availableReplicas": 1 }))).await;
            assert_controlled_by_crm(&deployment);
            let template = &deployment["spec"]["template"];
            assert_eq!(template["metadata"]["annotations"]["hubspot.io/config-hash"], resources::config_hash(&yaml));
            assert_eq!(template["spec"]["containers"][0]["image"], "ghcr.io/hubspot-operator/hubspot-operator:test");

            let service = api.apply(SERVICE, None).await;
            assert_controlled_by_crm(&service);
            assert_eq!(service["spec"]["ports"][0]["port"], 80);

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
            api.apply(DEPLOYMENT, Some(json!({ "replicas": 1, "availableReplicas": 1 }))).await;
            api.apply(SERVICE, None).await;
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
            api.apply(DEPLOYMENT, Some(json!({ "replicas": 1, "availableReplicas": 0 }))).await;
            api.apply(SERVICE, None).await;
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
}
