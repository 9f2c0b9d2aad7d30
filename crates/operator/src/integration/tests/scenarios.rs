//! Reconciles against the fake API server: the end state, and the calls only a sequence shows.

use std::time::Duration;

use super::*;
use crate::{HEALTHY_REQUEUE, UNHEALTHY_REQUEUE};

#[tokio::test]
async fn healthy_integration_gets_its_receiver_and_becomes_ready() {
    let hubspot = hubspot(&[(TOKEN, &["crm.objects.contacts.read", "oauth"])]).await;
    let mut integration = integration(&hubspot.base_url(), &["crm.objects.contacts.read"]);
    // A previous visit found a scope missing; the status patch must clear it.
    integration.status = Some(model::api::HubSpotIntegrationStatus {
        missing_scopes: vec!["crm.objects.contacts.read".into()],
        ..Default::default()
    });
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    cluster.api.insert("propertymappings", to_json(&mapping("crm", &["firstname"])));
    // The StatefulSet controller reports a pod once the StatefulSet exists.
    let first = cluster.visit().await;
    assert_eq!(first.events(), [("Warning".to_string(), "ReceiverUnavailable".to_string())]);
    for path in RECEIVER_OBJECTS.into_iter().chain([WEBHOOKS_CONFIG_MAP]) {
        let object = cluster.object(path).unwrap_or_else(|| panic!("{path} applied"));
        assert_controlled_by_crm(&object);
    }
    let (_, config) = config_in(&cluster.object(CONFIG_SECRET).unwrap());
    assert_eq!(config.mappings.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["default/contacts"]);
    cluster.pods_available(1);

    let visit = cluster.visit().await;
    assert_eq!(
        visit.events(),
        [("Normal".to_string(), "Ready".to_string()), ("Normal".into(), "ReceiverAvailable".into())]
    );
    for type_ in ["Ready", "Authenticated", "ScopesGranted", "ReceiverAvailable", "WebhooksReady"] {
        let c = condition(&visit.integration, type_);
        assert_eq!(c["status"], "True", "{c}");
        assert_eq!(c["observedGeneration"], 1, "{c}");
    }
    let status = visit.status();
    assert_eq!(status["hubId"], 62515);
    assert_eq!(status["grantedScopes"], json!(["crm.objects.contacts.read", "oauth"]));
    assert!(status.get("missingScopes").is_none(), "cleared (a merge patch needs an explicit null): {status}");
    assert_eq!(status["receiverUrl"], "http://crm-receiver.default.svc/webhooks/hubspot");
    let hash =
        cluster.object(STATEFULSET).unwrap()["spec"]["template"]["metadata"]["annotations"]["hubspot.io/config-hash"]
            .clone();
    assert_eq!(status["receiverConfigHash"], hash);
    assert_eq!(visit.action, Action::requeue(HEALTHY_REQUEUE));
}

#[tokio::test]
async fn missing_scopes_are_reported_while_the_receiver_still_runs() {
    let hubspot = hubspot(&[(TOKEN, &["crm.objects.contacts.read"])]).await;
    let integration = integration(&hubspot.base_url(), &["crm.objects.contacts.read", "crm.objects.deals.read"]);
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    cluster.visit().await;
    cluster.pods_available(1);
    let visit = cluster.visit().await;
    assert_eq!(visit.condition("ScopesGranted"), ("False".into(), "MissingScopes".into()));
    assert_eq!(visit.condition("ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
    assert_eq!(visit.condition("Ready"), ("False".into(), "MissingScopes".into()));
    assert_eq!(visit.status()["missingScopes"], json!(["crm.objects.deals.read"]));
    assert_eq!(visit.action, Action::requeue(UNHEALTHY_REQUEUE));
}

#[tokio::test]
async fn token_hubspot_refuses_is_reported_with_hubspots_category_and_the_receiver_still_applied() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = integration(&hubspot.base_url(), &[]);
    let cluster = Cluster::with(&integration, &[token_secret("pat-na1-revoked")]).await;
    let visit = cluster.visit().await;
    assert_eq!(
        visit.events(),
        [("Warning".to_string(), "AuthenticationFailed".to_string()), ("Warning".into(), "ReceiverUnavailable".into())]
    );
    assert_eq!(visit.condition("Authenticated"), ("False".into(), "INVALID_AUTHENTICATION".into()));
    let message = visit.message("Authenticated");
    assert!(message.starts_with("HubSpot answered 401: "), "{message}");
    assert!(message.contains("(correlationId "), "{message}");
    assert!(!message.contains("pat-na1-revoked"), "no token in messages: {message}");
    assert!(!visit.events[0]["note"].as_str().unwrap().contains("pat-na1-revoked"), "no token in Events");
    assert_eq!(visit.condition("ReceiverAvailable"), ("False".into(), "ReceiverUnavailable".into()));
    assert!(visit.status().get("hubId").is_none());
    for path in RECEIVER_OBJECTS {
        assert!(cluster.object(path).is_some(), "{path}: the receiver runs while HubSpot refuses the token");
    }
}

#[tokio::test]
async fn a_missing_token_secret_or_key_is_reported_and_no_receiver_object_is_applied() {
    // Nothing listens on this address: a HubSpot call would show up as HubSpotUnreachable.
    let cases = [
        (vec![], "SecretNotFound", r#"Cannot read the token: Secret "hubspot" not found"#),
        (
            vec![hubspot_secret(&[("client-secret", "s3cret")])],
            "SecretKeyMissing",
            r#"Cannot read the token: Secret "hubspot" has no key "token""#,
        ),
    ];
    for (secrets, reason, message) in cases {
        let cluster = Cluster::with(&integration("http://127.0.0.1:9", &["crm.objects.contacts.read"]), &secrets).await;
        let visit = cluster.visit().await;
        assert_eq!(
            visit.events(),
            [
                ("Warning".to_string(), "AuthenticationFailed".to_string()),
                ("Warning".into(), "ReceiverUnavailable".into())
            ]
        );
        assert_eq!(visit.condition("Authenticated"), ("False".into(), reason.into()));
        assert_eq!(visit.message("Authenticated"), message);
        assert_eq!(visit.condition("ScopesGranted"), ("Unknown".into(), "NotAuthenticated".into()));
        assert_eq!(visit.condition("ReceiverAvailable"), ("False".into(), reason.into()));
        assert_eq!(visit.condition("Ready"), ("False".into(), reason.into()));
        for c in visit.status()["conditions"].as_array().unwrap() {
            assert_eq!(c["observedGeneration"], 1, "{c}");
        }
        assert_eq!(visit.status()["observedGeneration"], 1);
        assert!(visit.status().get("receiverUrl").is_none());
        for path in RECEIVER_OBJECTS {
            assert_eq!(cluster.object(path), None, "{path}");
        }
        // The webhooks are the user's to deploy all the same.
        assert!(cluster.object(WEBHOOKS_CONFIG_MAP).is_some());
        assert_eq!(visit.action, Action::requeue(UNHEALTHY_REQUEUE));
    }
}

#[tokio::test]
async fn a_missing_admin_token_is_reported_and_no_receiver_object_is_applied() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let cluster = Cluster::with(&with_exposed_admin(&hubspot.base_url()), &[token_secret(TOKEN)]).await;
    let visit = cluster.visit().await;
    assert_eq!(visit.condition("Authenticated"), ("True".into(), "TokenValid".into()));
    assert_eq!(visit.condition("ReceiverAvailable"), ("False".into(), "SecretNotFound".into()));
    assert_eq!(
        visit.message("ReceiverAvailable"),
        r#"The receiver config cannot be rendered: Secret "crm-admin" not found"#
    );
    assert_eq!(visit.condition("Ready"), ("False".into(), "SecretNotFound".into()));
    assert!(visit.status().get("receiverConfigHash").is_none(), "{}", visit.integration);
    for path in RECEIVER_OBJECTS {
        assert_eq!(cluster.object(path), None, "{path}");
    }
    assert_eq!(visit.action, Action::requeue(UNHEALTHY_REQUEUE));
}

#[tokio::test]
async fn a_rotated_admin_token_rolls_the_receiver_pods_and_is_announced() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let admin = |token: &str| named_secret("crm-admin", &[("token", token)]);
    let cluster =
        Cluster::with(&with_exposed_admin(&hubspot.base_url()), &[token_secret(TOKEN), admin("admin-first")]).await;
    cluster.visit().await;
    cluster.pods_available(1);
    let ready = cluster.visit().await;
    assert_eq!(ready.condition("Ready"), ("True".into(), "Ready".into()));
    assert!(!ready.integration.to_string().contains("admin-first"), "no token in the status");
    let template_hash = |cluster: &Cluster| {
        cluster.object(STATEFULSET).unwrap()["spec"]["template"]["metadata"]["annotations"]["hubspot.io/config-hash"]
            .clone()
    };
    let first = template_hash(&cluster);

    cluster.api.insert("secrets", admin("admin-rotated"));
    let visit = cluster.visit().await;
    let rotated = template_hash(&cluster);
    assert_ne!(rotated, first, "a new pod template hash rolls the pods");
    assert_eq!(visit.status()["receiverConfigHash"], rotated);
    assert_eq!(visit.events(), [("Normal".to_string(), "ReceiverConfigChanged".to_string())]);
    let event = visit.event("ReceiverConfigChanged");
    assert_eq!(
        (event["regarding"]["kind"].as_str(), event["regarding"]["name"].as_str()),
        (Some("HubSpotIntegration"), Some("crm"))
    );
    let (_, config) = config_in(&cluster.object(CONFIG_SECRET).unwrap());
    assert_eq!(config.admin.token.as_deref(), Some("admin-rotated"));
}

#[tokio::test]
async fn a_revoked_token_is_announced_as_a_warning_without_the_token() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = healthy_before(integration(&hubspot.base_url(), &[]), "h");
    let cluster = Cluster::with(&integration, &[token_secret("pat-na1-revoked")]).await;
    let visit = cluster.visit().await;
    let note = visit.event("AuthenticationFailed")["note"].as_str().unwrap().to_string();
    assert!(note.starts_with("HubSpot answered 401: "), "{note}");
    assert!(!note.contains("pat-na1-revoked"), "no token in Events: {note}");
    // The new token is also a new receiver config.
    assert!(visit.events().contains(&("Normal".into(), "ReceiverConfigChanged".into())), "{:?}", visit.events());
    assert_eq!(visit.condition("Ready"), ("False".into(), "INVALID_AUTHENTICATION".into()));
}

#[tokio::test]
async fn an_ingress_exposes_the_receiver_and_is_reported() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = exposed(&hubspot.base_url(), Some(ReceiverExposureKind::Ingress));
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    cluster.visit().await;
    cluster.pods_available(1);
    let visit = cluster.visit().await;
    assert_controlled_by_crm(&cluster.object(INGRESS).expect("the Ingress"));
    assert_eq!(visit.condition("ReceiverExposed"), ("True".into(), "IngressApplied".into()));
    assert_eq!(
        visit.message("ReceiverExposed"),
        "Ingress crm-receiver routes webhooks to the receiver; HubSpot's target URL is https://hooks.example.com/webhooks/hubspot"
    );
    assert_eq!(visit.condition("Ready"), ("True".into(), "Ready".into()));
    assert_eq!(visit.status()["receiverExposedBy"], "Ingress");
    assert_eq!(visit.action, Action::requeue(HEALTHY_REQUEUE));
}

#[tokio::test]
async fn switching_from_ingress_to_http_route_deletes_the_ingress() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = previously_exposed_by(
        exposed(&hubspot.base_url(), Some(ReceiverExposureKind::HttpRoute)),
        ReceiverExposureKind::Ingress,
    );
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    cluster.api.insert("ingresses", receiver_named_object("networking.k8s.io/v1", "Ingress", Some("hubspot-operator")));
    let visit = cluster.visit().await;
    assert_eq!(cluster.object(INGRESS), None, "the old Ingress is deleted");
    assert_eq!(visit.calls.deletes, 1);
    assert_controlled_by_crm(&cluster.object(HTTP_ROUTE).expect("the HTTPRoute"));
    assert_eq!(visit.condition("ReceiverExposed"), ("True".into(), "HTTPRouteApplied".into()));
    assert_eq!(visit.status()["receiverExposedBy"], "HTTPRoute");
}

#[tokio::test]
async fn removing_the_http_route_deletes_it_and_its_condition() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let mut integration = previously_exposed_by(exposed(&hubspot.base_url(), None), ReceiverExposureKind::HttpRoute);
    integration.spec.webhooks.as_mut().unwrap().public_url = Some("https://hooks.example.com/webhooks/hubspot".into());
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    let route = receiver_named_object("gateway.networking.k8s.io/v1", "HTTPRoute", Some("hubspot-operator"));
    cluster.api.insert("httproutes", route);
    let visit = cluster.visit().await;
    assert_eq!(cluster.object(HTTP_ROUTE), None);
    let types: Vec<&str> =
        visit.status()["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert!(!types.contains(&"ReceiverExposed"), "{types:?}");
    assert!(visit.status().get("receiverExposedBy").is_none(), "cleared: {}", visit.status());
}

#[tokio::test]
async fn an_exposure_or_deployment_that_is_not_ours_is_left_alone() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = previously_exposed_by(exposed(&hubspot.base_url(), None), ReceiverExposureKind::Ingress);
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    cluster.api.insert("ingresses", receiver_named_object("networking.k8s.io/v1", "Ingress", Some("helm")));
    cluster.api.insert("deployments", receiver_named_object("apps/v1", "Deployment", None));
    cluster.visit().await;
    cluster.pods_available(1);
    let visit = cluster.visit().await;
    assert!(cluster.object(INGRESS).is_some(), "someone else's Ingress stays");
    assert!(cluster.object(LEGACY_DEPLOYMENT).is_some(), "a Deployment without our label stays");
    assert_eq!(visit.calls.deletes, 0);
    assert!(visit.status().get("receiverExposedBy").is_none());
    // No public URL any more: nothing rendered.
    assert_eq!(cluster.object(WEBHOOKS_CONFIG_MAP), None);
    assert_eq!(visit.condition("Ready"), ("True".into(), "Ready".into()));
}

#[tokio::test]
async fn without_the_gateway_api_the_http_route_is_reported_and_the_rest_still_applied() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = exposed(&hubspot.base_url(), Some(ReceiverExposureKind::HttpRoute));
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    cluster.api.without_kind("httproutes");
    let first = cluster.visit().await;
    let note = first.event("ReceiverNotExposed")["note"].as_str().unwrap().to_string();
    cluster.pods_available(1);
    let visit = cluster.visit().await;
    assert!(note.contains("Install the Gateway API CRDs"), "{note}");
    assert_eq!(visit.condition("ReceiverExposed"), ("False".into(), "GatewayAPINotInstalled".into()));
    assert_eq!(
        visit.message("ReceiverExposed"),
        "HTTPRoute crm-receiver cannot be applied: the cluster has no gateway.networking.k8s.io/v1 HTTPRoute \
         resource. Install the Gateway API CRDs, or expose the receiver with spec.receiver.ingress"
    );
    assert_eq!(visit.condition("ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
    assert_eq!(visit.condition("Ready"), ("False".into(), "GatewayAPINotInstalled".into()));
    assert!(visit.status().get("receiverExposedBy").is_none());
    for path in RECEIVER_OBJECTS.into_iter().chain([WEBHOOKS_CONFIG_MAP]) {
        assert!(cluster.object(path).is_some(), "{path}");
    }
    assert_eq!(visit.action, Action::requeue(UNHEALTHY_REQUEUE));
}

#[tokio::test]
async fn the_old_receiver_deployment_is_deleted_only_once_the_statefulset_has_a_pod_available() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let cluster = Cluster::with(&integration(&hubspot.base_url(), &[]), &[token_secret(TOKEN)]).await;
    cluster.api.insert("deployments", receiver_named_object("apps/v1", "Deployment", Some("hubspot-operator")));
    let waiting = cluster.visit().await;
    // Both workloads match the Service: the old pod keeps taking webhooks meanwhile.
    assert!(cluster.object(LEGACY_DEPLOYMENT).is_some());
    assert_eq!(waiting.calls.deletes, 0);
    assert_eq!(waiting.condition("ReceiverAvailable"), ("False".into(), "ReceiverUnavailable".into()));

    cluster.pods_available(1);
    let visit = cluster.visit().await;
    assert_eq!(cluster.object(LEGACY_DEPLOYMENT), None, "deleted");
    assert_eq!(visit.calls.deletes, 1);
    assert_eq!(visit.condition("ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
}

#[tokio::test]
async fn an_old_deployment_gone_or_replaced_at_delete_time_is_not_an_error() {
    use http::Method;
    let (ctx, mut api) = test_context();
    let integration = integration("http://127.0.0.1:9", &[]);
    let deployments = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(ctx.client.clone(), NAMESPACE);
    let ours = receiver_named_object("apps/v1", "Deployment", Some("hubspot-operator"));
    for code in [404, 409] {
        let answered = ours.clone();
        let script = async move {
            api.get(LEGACY_DEPLOYMENT, Some(answered)).await;
            let options = api.fail(Method::DELETE, LEGACY_DEPLOYMENT, code).await;
            assert_eq!(options["preconditions"]["uid"], "7e1c5f00-0000-4000-8000-000000000042");
            assert_eq!(options["propagationPolicy"], "Background");
            api
        };
        let server = tokio::spawn(script);
        let deleted = super::super::apply::delete_own_receiver_object(&integration, &deployments).await;
        assert!(!deleted.expect("not an error"), "{code}: nothing of ours was deleted");
        api = server.await.unwrap();
    }
}

#[tokio::test]
async fn paused_integration_reports_it_and_touches_nothing_until_resumed() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let mut integration = annotated(integration(&hubspot.base_url(), &[]), "hubspot.io/paused", "true");
    let previous = model::api::conditions::condition("Authenticated", Some(true), "TokenValid", "ok", Some(1));
    integration.status = Some(model::api::HubSpotIntegrationStatus {
        conditions: vec![previous],
        hub_id: Some(62515),
        ..Default::default()
    });
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    let visit = cluster.visit().await;
    // No Secret read, no HubSpot call, no apply: only the status says why.
    assert_eq!(visit.calls, ApiCalls { status_patches: 1, status_changes: 1, ..Default::default() });
    assert_eq!(visit.condition("Ready"), ("Unknown".into(), "Paused".into()));
    assert_eq!(
        visit.message("Ready"),
        "Reconciliation is paused by the hubspot.io/paused annotation; remove it to resume"
    );
    assert_eq!(visit.condition("Authenticated"), ("True".into(), "TokenValid".into()));
    assert_eq!(visit.status()["hubId"], 62515);
    assert_eq!(visit.action, Action::await_change());
    assert!(hubspot_calls(&hubspot).await.is_empty());

    // Visited again while paused and already reported: no call at all.
    let again = cluster.visit().await;
    assert_eq!(again.calls, ApiCalls::default());
    assert_eq!(again.action, Action::await_change());

    // "false" is not paused: the full reconcile runs again.
    let stored: HubSpotIntegration = serde_json::from_value(again.integration).unwrap();
    cluster.update(&annotated(stored, "hubspot.io/paused", "false"));
    let resumed = cluster.visit().await;
    assert_eq!(resumed.condition("Authenticated"), ("True".into(), "TokenValid".into()));
    for path in RECEIVER_OBJECTS {
        assert!(cluster.object(path).is_some(), "{path}");
    }
    cluster.pods_available(1);
    let ready = cluster.visit().await;
    // Ready again after the pause: announced.
    assert_eq!(ready.condition("Ready"), ("True".into(), "Ready".into()));
    assert!(ready.events().contains(&("Normal".into(), "Ready".into())), "{:?}", ready.events());
}

#[tokio::test]
async fn a_reconcile_request_is_echoed_in_the_status() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration =
        annotated(integration(&hubspot.base_url(), &[]), "hubspot.io/reconcile-requested-at", "2026-11-26T21:00:00Z");
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    let visit = cluster.visit().await;
    assert_eq!(visit.status()["lastHandledReconcileAt"], "2026-11-26T21:00:00Z");
}

/// How long a scenario waits for the controller to do what it should.
const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `done` holds of the cluster.
async fn eventually(cluster: &Cluster, what: &str, done: impl Fn(&Cluster) -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done(cluster) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_integration_is_visited_without_any_write_and_drift_is_repaired() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let integration = exposed(&hubspot.base_url(), Some(ReceiverExposureKind::Ingress));
    let cluster = Cluster::with(&integration, &[token_secret(TOKEN)]).await;
    let running = spawn_controller(controller(&cluster.ctx, Some(NAMESPACE)), reconcile, cluster.ctx.clone());
    eventually(&cluster, "the StatefulSet is applied", |c| c.object(STATEFULSET).is_some()).await;
    cluster.pods_available(1);
    eventually(&cluster, "Ready", |c| {
        let conditions = c.object(INTEGRATION).unwrap()["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
    .await;
    settled_calls(&cluster.api).await;

    // Visited again with nothing changed: the caches show every child as desired, the status
    // is the same, nothing is announced.
    let steady = cluster.visit().await;
    assert_eq!(steady.calls.writes(), 0, "{:?}", steady.calls);
    assert_eq!(steady.calls.lists, 0, "the mappings come from the cache: {:?}", steady.calls);
    assert!(steady.events.is_empty());
    assert_eq!(steady.action, Action::requeue(HEALTHY_REQUEUE));

    // Someone edits a child: its watch event reconciles the integration, which repairs it.
    let mut edited = cluster.object(SERVICE).unwrap();
    edited["spec"]["ports"][0]["port"] = json!(8000);
    cluster.api.insert("services", edited);
    eventually(&cluster, "the Service is repaired", |c| c.object(SERVICE).unwrap()["spec"]["ports"][0]["port"] == 80)
        .await;
    // Or deletes one: it is created again.
    let before = cluster.api.calls();
    let ingresses =
        kube::Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(cluster.ctx.client.clone(), NAMESPACE);
    ingresses.delete("crm-receiver", &Default::default()).await.unwrap();
    eventually(&cluster, "the Ingress is back", |c| c.object(INGRESS).is_some()).await;
    assert!(cluster.api.calls().since(&before).applies >= 1);
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_status_write_does_not_reconcile_its_integration_but_a_new_mapping_spec_does() {
    use kube::api::{Api, Patch, PatchParams};
    let hubspot = hubspot(&[(TOKEN, &[])]).await;
    let mut crm = integration(&hubspot.base_url(), &[]);
    // Without webhooks no receiver config renders: a reconcile reads and writes the status.
    crm.spec.webhooks = None;
    let contacts = mapping("crm", &["firstname"]);
    let (ctx, api) = stand_in_context(&crm, TOKEN, &contacts).await;
    let running = spawn_controller(controller(&ctx, Some(NAMESPACE)), reconcile, ctx.clone());
    let first = settled_calls(&api).await;
    assert!(first.status_patches > 0, "the integration was reconciled: {first:?}");

    let status = json!({ "status": { "missingProperties": ["firstname"] } });
    let before = reconciles::<HubSpotIntegration>(&ctx);
    Api::<PropertyMapping>::namespaced(ctx.client.clone(), NAMESPACE)
        .patch_status("contacts", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reconciles::<HubSpotIntegration>(&ctx), before, "the mapping's status write reconciled its integration");

    let mut edited = to_json(&contacts);
    edited["metadata"]["generation"] = json!(5);
    let before = reconciles::<HubSpotIntegration>(&ctx);
    api.insert("propertymappings", edited);
    more_reconciles_than::<HubSpotIntegration>(&ctx, before).await;
    running.abort();
}
