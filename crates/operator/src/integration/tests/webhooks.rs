//! Webhook configuration through HubSpot's management API, or rendered for the user.

use super::*;

const KEY: &str = "emulator-developer-api-key";

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

/// A cluster holding `integration`, its Secret with `developer_key`, and a receiver with a pod
/// available.
async fn api_managed_cluster(integration: &HubSpotIntegration, developer_key: &str) -> Cluster {
    let secret = hubspot_secret(&[("token", TOKEN), ("client-secret", "s3cret"), ("developer-api-key", developer_key)]);
    let cluster = Cluster::with(integration, &[secret]).await;
    cluster.api.insert(
        "statefulsets",
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "crm-receiver", "namespace": "default" },
            "status": { "replicas": 1, "readyReplicas": 1, "availableReplicas": 1 }
        }),
    );
    cluster
}

/// The stored integration with the spec of `wanted`.
fn respecified(cluster: &Cluster, wanted: &HubSpotIntegration) -> HubSpotIntegration {
    let mut stored: HubSpotIntegration = serde_json::from_value(cluster.object(INTEGRATION).unwrap()).unwrap();
    stored.spec = wanted.spec.clone();
    stored
}

#[tokio::test]
async fn api_management_creates_keeps_changes_and_removes_only_its_own_subscriptions() {
    // The app starts with two subscriptions the operator did not create (ids 2100001, 2100002).
    let hubspot = hubspot_app(&[(TOKEN, &["oauth"])], &["contact.creation", "deal.creation"]).await;
    let base = hubspot.base_url();
    let wanted = [
        ("contact.creation", None, true),
        ("contact.deletion", None, false),
        ("contact.propertyChange", Some("firstname"), true),
    ];
    let cluster = api_managed_cluster(&api_managed(&base, &wanted), KEY).await;
    let visit = cluster.visit().await;
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
    assert_eq!(visit.events(), [("Normal".to_string(), "Ready".to_string())]);
    assert_eq!(visit.status()["webhookSubscriptionIds"], json!(["2100003", "2100004"]));
    assert_eq!(visit.condition("WebhooksReady"), ("True".into(), "Applied".into()));
    assert_eq!(
        visit.message("WebhooksReady"),
        "3 subscriptions of app 54321 are as wanted (this visit: settings updated, 2 created, 0 changed, 0 deleted)"
    );
    assert_eq!(visit.condition("Ready"), ("True".into(), "Ready".into()));
    // HubSpot's side is managed through its API: no ConfigMap.
    assert_eq!(cluster.object(WEBHOOKS_CONFIG_MAP), None);

    // Visited again unchanged: HubSpot is read, nothing written.
    let visit = cluster.visit().await;
    assert_eq!(
        management_calls(&hubspot).await,
        ["GET /webhooks/v3/54321/settings 200", "GET /webhooks/v3/54321/subscriptions 200"]
    );
    assert!(visit.events.is_empty());
    assert_eq!(visit.status()["webhookSubscriptionIds"], json!(["2100003", "2100004"]));

    // contact.deletion turned on, firstname's changes no longer wanted, more concurrency;
    // contact.creation is dropped from the spec too, but it is not the operator's.
    let mut changed = respecified(&cluster, &api_managed(&base, &[("contact.deletion", None, true)]));
    changed.spec.webhooks.as_mut().unwrap().max_concurrent_requests = Some(20);
    cluster.update(&changed);
    let visit = cluster.visit().await;
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
    assert_eq!(visit.status()["webhookSubscriptionIds"], json!(["2100003"]));
    assert_eq!(
        app_subscriptions(&hubspot).await,
        ["2100001 contact.creation true", "2100002 deal.creation true", "2100003 contact.deletion true"]
    );

    // Nothing wanted any more: the operator's last subscription goes, the others stay.
    cluster.update(&respecified(&cluster, &api_managed(&base, &[])));
    let visit = cluster.visit().await;
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
    assert!(visit.status().get("webhookSubscriptionIds").is_none(), "{}", visit.status());
    assert_eq!(app_subscriptions(&hubspot).await, ["2100001 contact.creation true", "2100002 deal.creation true"]);
}

#[tokio::test]
async fn a_refused_developer_api_key_is_reported_with_hubspots_answer_and_never_shown() {
    let hubspot = hubspot_app(&[(TOKEN, &["oauth"])], &["contact.creation"]).await;
    let integration = api_managed(&hubspot.base_url(), &[("contact.deletion", None, true)]);
    let cluster = api_managed_cluster(&integration, "wrong-developer-key").await;
    let visit = cluster.visit().await;
    assert_eq!(management_calls(&hubspot).await, ["GET /webhooks/v3/54321/settings 401"]);
    assert_eq!(visit.events(), [("Warning".to_string(), "WebhooksFailed".to_string())]);
    assert_eq!(visit.condition("WebhooksReady"), ("False".into(), "INVALID_AUTHENTICATION".into()));
    let message = visit.message("WebhooksReady");
    assert!(message.starts_with("HubSpot answered 401: "), "{message}");
    assert!(message.contains("(correlationId "), "{message}");
    assert!(!visit.integration.to_string().contains("wrong-developer-key"), "{}", visit.integration);
    assert!(!visit.events[0].to_string().contains("wrong-developer-key"));
    assert_eq!(visit.condition("Ready"), ("False".into(), "INVALID_AUTHENTICATION".into()));
    assert!(visit.status().get("webhookSubscriptionIds").is_none());
}

#[tokio::test]
async fn rendered_webhooks_go_into_a_config_map_and_are_managed_by_the_user() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let mut integration = api_managed(&hubspot.base_url(), &[("deal.creation", None, true)]);
    integration.spec.webhooks.as_mut().unwrap().management = None;
    let cluster = api_managed_cluster(&integration, KEY).await;
    let visit = cluster.visit().await;
    let config_map = cluster.object(WEBHOOKS_CONFIG_MAP).expect("the ConfigMap");
    assert_controlled_by_crm(&config_map);
    let hsmeta: Value = serde_json::from_str(config_map["data"]["webhooks-hsmeta.json"].as_str().unwrap()).unwrap();
    assert_eq!(hsmeta["config"]["subscriptions"]["crmObjects"][0]["objectType"], "deal");
    assert_eq!(visit.condition("WebhooksReady"), ("True".into(), "ManagedByUser".into()));
    let message = visit.message("WebhooksReady");
    assert!(message.contains("managed by you: the operator does not change them"), "{message}");
    assert!(message.contains("(1 subscriptions) are in ConfigMap crm-webhooks-hsmeta"), "{message}");
    assert_eq!(visit.condition("Ready"), ("True".into(), "Ready".into()));
    // Nothing was asked of HubSpot's webhooks API.
    assert!(management_calls(&hubspot).await.is_empty());
}

#[tokio::test]
async fn without_a_public_url_nothing_is_rendered_and_the_integration_stays_ready() {
    let hubspot = hubspot(&[(TOKEN, &["oauth"])]).await;
    let mut integration = integration(&hubspot.base_url(), &[]);
    integration.spec.webhooks.as_mut().unwrap().public_url = None;
    let cluster = api_managed_cluster(&integration, KEY).await;
    let visit = cluster.visit().await;
    assert_eq!(cluster.object(WEBHOOKS_CONFIG_MAP), None);
    assert_eq!(visit.condition("WebhooksReady"), ("True".into(), "ManagedByUser".into()));
    assert_eq!(visit.condition("Ready"), ("True".into(), "Ready".into()));
}
