//! The pure status step and the requeue.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::status::{Authentication, ReceiverExposure, ReceiverRollout};
use crate::{HEALTHY_REQUEUE, UNHEALTHY_REQUEUE};

fn token_info(scopes: &[&str]) -> Authentication {
    Authentication::Succeeded(hubspot::TokenInfo {
        user_id: 1,
        hub_id: 62515,
        app_id: 7,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    })
}

fn deployed(available_replicas: i32) -> Applied {
    Applied {
        receiver: ReceiverRollout::Deployed { available_replicas, desired_replicas: 1 },
        config_hash: Some("hash-1".into()),
        exposure: Some(ReceiverExposure::NotRequested),
        webhooks: None,
        webhook_subscription_ids: vec![],
    }
}

/// `(status, reason)` of the condition of `type_` in `status`.
fn state(status: &model::api::HubSpotIntegrationStatus, type_: &str) -> (String, String) {
    condition_state(&json!({ "status": status }), type_)
}

#[test]
fn missing_scopes_are_reported_while_the_receiver_still_runs() {
    let integration =
        integration("http://127.0.0.1:9", &["crm.objects.contacts.read", "crm.objects.deals.read", "timeline"]);
    let status = status(&integration, &token_info(&["crm.objects.contacts.read"]), &deployed(1));
    assert_eq!(state(&status, "Authenticated"), ("True".into(), "TokenValid".into()));
    assert_eq!(state(&status, "ScopesGranted"), ("False".into(), "MissingScopes".into()));
    let scopes = condition(&json!({ "status": &status }), "ScopesGranted")["message"].clone();
    assert_eq!(scopes, "The token lacks required scopes: crm.objects.deals.read, timeline");
    assert_eq!(state(&status, "ReceiverAvailable"), ("True".into(), "ReceiverAvailable".into()));
    assert_eq!(state(&status, "Ready"), ("False".into(), "MissingScopes".into()));
    assert_eq!(status.missing_scopes, ["crm.objects.deals.read", "timeline"]);
    assert_eq!(status.granted_scopes, ["crm.objects.contacts.read"]);
    assert_eq!(status.receiver_url.as_deref(), Some("http://crm-receiver.default.svc/webhooks/hubspot"));
    assert_eq!(status.receiver_config_hash.as_deref(), Some("hash-1"));
}

#[test]
fn a_receiver_without_a_rendered_config_has_no_url_and_keeps_the_last_hash() {
    let mut integration = healthy_before(integration("http://127.0.0.1:9", &[]), "before");
    integration.status.as_mut().unwrap().webhook_subscription_ids = vec!["old".into()];
    let applied = Applied {
        receiver: ReceiverRollout::NotRendered(crate::resources::ConfigError::WebhooksNotConfigured),
        config_hash: None,
        exposure: None,
        webhooks: None,
        webhook_subscription_ids: vec!["2100003".into()],
    };
    let status = status(&integration, &token_info(&[]), &applied);
    assert_eq!(status.receiver_url, None);
    assert_eq!(status.receiver_config_hash.as_deref(), Some("before"));
    assert_eq!(status.webhook_subscription_ids, ["2100003"]);
    assert_eq!(state(&status, "ReceiverAvailable"), ("False".into(), "WebhooksNotConfigured".into()));
}

#[test]
fn a_reconcile_request_is_echoed_in_the_status() {
    let integration =
        annotated(integration("http://127.0.0.1:9", &[]), "hubspot.io/reconcile-requested-at", "2026-11-26T21:00:00Z");
    let status = status(&integration, &token_info(&[]), &deployed(1));
    assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("2026-11-26T21:00:00Z"));
}

#[test]
fn a_new_config_is_announced_and_a_steady_visit_announces_nothing() {
    let before = healthy_before(integration("http://127.0.0.1:9", &[]), "before-rotation");
    let previous = before.status.clone().unwrap();
    let rotated = status(&before, &token_info(&[]), &deployed(1));
    let reasons: Vec<&str> = announcements(&previous, &rotated).iter().map(|e| e.reason).collect();
    // Every condition stays True: only the new config is announced.
    assert_eq!(reasons, ["ReceiverConfigChanged"]);

    let mut steady = before.clone();
    steady.status = Some(rotated.clone());
    let again = status(&steady, &token_info(&[]), &deployed(1));
    assert!(announcements(&rotated, &again).is_empty());
    assert_eq!(again, rotated, "the same visit again leaves the status as it was: no patch");
}

#[test]
fn requeue_comes_before_the_access_token_is_due() {
    let now: Timestamp = "2026-11-26T22:00:00Z".parse().unwrap();
    let at = |s: i64| now.saturating_add(SignedDuration::from_secs(s)).unwrap();
    assert_eq!(requeue_after(true, None, now, HEALTHY_REQUEUE), HEALTHY_REQUEUE);
    assert_eq!(requeue_after(false, None, now, HEALTHY_REQUEUE), UNHEALTHY_REQUEUE);
    assert_eq!(requeue_after(true, Some(at(60)), now, HEALTHY_REQUEUE), Duration::from_secs(60));
    assert_eq!(requeue_after(true, Some(at(900)), now, HEALTHY_REQUEUE), HEALTHY_REQUEUE);
    assert_eq!(requeue_after(false, Some(at(20)), now, HEALTHY_REQUEUE), Duration::from_secs(20));
    // Due already (or about to be): soon, but not in a loop.
    assert_eq!(requeue_after(true, Some(at(-10)), now, HEALTHY_REQUEUE), MIN_TOKEN_REQUEUE);
    // A shortened drift interval (as the benchmark sets) shortens both waits.
    let drift = Duration::from_secs(4);
    assert_eq!(requeue_after(true, None, now, drift), drift);
    assert_eq!(requeue_after(false, None, now, drift), drift);
}
