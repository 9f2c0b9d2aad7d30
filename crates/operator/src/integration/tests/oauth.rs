//! An OAuth app's access token, kept fresh in the managed Secret across visits.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::{HEALTHY_REQUEUE, UNHEALTHY_REQUEUE};

fn app_secret(refresh_token: &str) -> Value {
    named_secret("hubspot-app", &[("client-secret", OAUTH_CLIENT_SECRET), ("refresh-token", refresh_token)])
}

/// The Secrets of an OAuth integration: its app's, and the webhook client secret.
fn oauth_secrets(refresh_token: &str) -> [Value; 2] {
    [app_secret(refresh_token), hubspot_secret(&[("client-secret", "s3cret")])]
}

/// The token and refresh and expiry times of a managed access token Secret.
fn stored_token(secret: &Value) -> (String, Timestamp, Timestamp) {
    use base64::Engine;
    let encoded = secret["data"]["token"].as_str().expect("token in the Secret");
    let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let annotations = &secret["metadata"]["annotations"];
    let time = |key: &str| annotations[key].as_str().expect(key).parse::<Timestamp>().unwrap();
    (token, time("hubspot.io/access-token-refresh-at"), time("hubspot.io/access-token-expires-at"))
}

/// Moves the managed Secret's refresh time to `refresh_at`.
fn refreshing_at(cluster: &Cluster, refresh_at: Timestamp) {
    let mut secret = cluster.object(ACCESS_TOKEN_SECRET).expect("the managed Secret");
    secret["metadata"]["annotations"]["hubspot.io/access-token-refresh-at"] = json!(refresh_at.to_string());
    cluster.api.insert("secrets", secret);
}

/// A managed access token Secret holding `CJT-old`, due at `refresh_at`, as a restore from
/// elsewhere might leave it.
fn stored_secret(refresh_at: Timestamp) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "crm-hubspot-access-token", "namespace": "default",
            "annotations": {
                "hubspot.io/access-token-refresh-at": refresh_at.to_string(),
                "hubspot.io/access-token-expires-at": refresh_at.to_string(),
            }
        },
        "data": { "token": "Q0pULW9sZA==" }
    })
}

#[tokio::test]
async fn oauth_integration_keeps_a_fresh_access_token_in_its_managed_secret() {
    let hubspot = hubspot_oauth().await;
    let integration = with_oauth(integration(&hubspot.base_url(), &["crm.objects.contacts.read"]));
    let cluster = Cluster::with(&integration, &oauth_secrets(OAUTH_REFRESH_TOKEN)).await;

    // First visit: no managed Secret yet, so a token is issued and written.
    let started = Timestamp::now();
    let first = cluster.visit().await;
    let managed = cluster.object(ACCESS_TOKEN_SECRET).expect("the managed Secret");
    assert_controlled_by_crm(&managed);
    assert_eq!(managed["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hubspot-operator");
    let (first_token, refresh_at, expires_at) = stored_token(&managed);
    // The emulator's tokens live 30 minutes; the operator replaces them at half that.
    assert_eq!(expires_at.duration_since(refresh_at), SignedDuration::from_secs(900));
    assert!(refresh_at >= started.saturating_add(SignedDuration::from_secs(900)).unwrap());
    assert_eq!(
        hubspot_calls(&hubspot).await,
        ["/oauth/v3/token", "/oauth/v1/access-tokens/[redacted]"],
        "one token request, then the token is introspected"
    );
    assert_eq!(first.condition("Authenticated"), ("True".into(), "TokenValid".into()));
    assert_eq!(first.condition("ScopesGranted"), ("True".into(), "AllScopesGranted".into()));
    assert_eq!(first.status()["hubId"], 62515);
    // The receiver reads the token from the managed Secret, never the app's credentials.
    let (yaml, config) = config_in(&cluster.object(CONFIG_SECRET).unwrap());
    assert_eq!(
        config.hubspot.access_token_file.as_deref(),
        Some(std::path::Path::new("/var/run/hubspot-operator/access-token/token"))
    );
    assert_eq!(config.hubspot.access_token, "");
    assert!(!yaml.contains(OAUTH_REFRESH_TOKEN) && !yaml.contains(OAUTH_CLIENT_SECRET), "{yaml}");
    let statefulset = cluster.object(STATEFULSET).unwrap();
    let pod = &statefulset["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "access-token").unwrap();
    assert_eq!(volume["secret"]["secretName"], "crm-hubspot-access-token");
    assert_eq!(volume["secret"]["optional"], true);
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    let mount = mounts.iter().find(|m| m["name"] == "access-token").unwrap();
    assert_eq!(mount["mountPath"], "/var/run/hubspot-operator/access-token");
    assert_eq!(mount["readOnly"], true);

    cluster.pods_available(1);
    let ready = cluster.visit().await;
    assert_eq!(ready.action, Action::requeue(HEALTHY_REQUEUE), "the token is due in 15 minutes");

    // Visited while the token is fresh but due soon: no token request and no write, and back
    // before the token is due.
    refreshing_at(&cluster, Timestamp::now().saturating_add(SignedDuration::from_secs(60)).unwrap());
    let stored = cluster.object(ACCESS_TOKEN_SECRET).unwrap();
    let calls_before = hubspot_calls(&hubspot).await.len();
    let fresh = cluster.visit().await;
    assert_eq!(fresh.condition("Authenticated"), ("True".into(), "TokenValid".into()));
    assert!(fresh.action != Action::requeue(HEALTHY_REQUEUE), "back before the token is due");
    assert!(fresh.action != Action::requeue(UNHEALTHY_REQUEUE), "back before the token is due");
    assert_eq!(cluster.object(ACCESS_TOKEN_SECRET).unwrap(), stored, "the managed Secret is not written");
    assert_eq!(
        hubspot_calls(&hubspot).await[calls_before..],
        ["/oauth/v1/access-tokens/[redacted]"],
        "the stored token is used as it is"
    );

    // Visited once the token is due: a new one replaces it before it expires.
    refreshing_at(&cluster, Timestamp::now().saturating_sub(SignedDuration::from_secs(1)).unwrap());
    let calls_before = hubspot_calls(&hubspot).await.len();
    cluster.visit().await;
    let (new_token, new_refresh_at, _) = stored_token(&cluster.object(ACCESS_TOKEN_SECRET).unwrap());
    assert_ne!(new_token, first_token);
    assert!(new_refresh_at > refresh_at);
    assert_eq!(
        hubspot_calls(&hubspot).await[calls_before..],
        ["/oauth/v3/token", "/oauth/v1/access-tokens/[redacted]"],
        "a due token is replaced"
    );
}

#[tokio::test]
async fn a_refused_refresh_token_is_reported_and_the_managed_secret_is_kept() {
    let hubspot = hubspot_oauth().await;
    let integration = healthy_before(with_oauth(integration(&hubspot.base_url(), &[])), "h");
    let cluster = Cluster::with(&integration, &oauth_secrets("na1-revoked-refresh-token")).await;
    let due = Timestamp::now().saturating_sub(SignedDuration::from_secs(60)).unwrap();
    cluster.api.insert("secrets", stored_secret(due));
    let stored = cluster.object(ACCESS_TOKEN_SECRET).unwrap();
    let visit = cluster.visit().await;
    // The receiver keeps the last token it had.
    assert_eq!(cluster.object(ACCESS_TOKEN_SECRET).unwrap(), stored);
    let note = visit.event("AuthenticationFailed")["note"].as_str().unwrap().to_string();
    assert!(note.contains("missing or invalid refresh token"), "HubSpot's message: {note}");
    assert!(!note.contains("na1-revoked-refresh-token") && !note.contains(OAUTH_CLIENT_SECRET), "{note}");
    assert!(visit.events().contains(&("Normal".into(), "ReceiverConfigChanged".into())));
    assert_eq!(visit.condition("Authenticated"), ("False".into(), "BAD_REFRESH_TOKEN".into()));
    assert_eq!(visit.condition("Ready").0, "False");
    assert_eq!(visit.action, Action::requeue(UNHEALTHY_REQUEUE));
    assert_eq!(hubspot_calls(&hubspot).await, ["/oauth/v3/token"], "one refused token request");
}

#[tokio::test]
async fn a_stored_token_hubspot_does_not_know_is_replaced_before_it_is_due() {
    let hubspot = hubspot_oauth().await;
    let integration = with_oauth(integration(&hubspot.base_url(), &[]));
    let cluster = Cluster::with(&integration, &oauth_secrets(OAUTH_REFRESH_TOKEN)).await;
    let later = Timestamp::now().saturating_add(SignedDuration::from_secs(600)).unwrap();
    cluster.api.insert("secrets", stored_secret(later));
    let visit = cluster.visit().await;
    assert_eq!(visit.condition("Authenticated"), ("True".into(), "TokenValid".into()));
    let (token, _, _) = stored_token(&cluster.object(ACCESS_TOKEN_SECRET).unwrap());
    assert_ne!(token, "CJT-old");
    assert_eq!(
        hubspot_calls(&hubspot).await,
        ["/oauth/v1/access-tokens/[redacted]", "/oauth/v3/token", "/oauth/v1/access-tokens/[redacted]"]
    );
}
