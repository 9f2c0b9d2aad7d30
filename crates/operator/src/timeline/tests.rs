//! The pure build against fixtures, and its output against the HubSpot emulator: the rendered
//! hsmeta defines an app event type there, and a created template reads back without drift.

use kube::Resource;
use serde_json::json;

use super::build::*;
use crate::fixtures::{emulator_client, integration, with_oauth};
use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use model::api::HubSpotTimelineEventType;
use model::api::SecretKeyRef;
use model::api::property::DeletionPolicy;
use model::api::timeline::{
    Carrier, HubSpotTimelineEventTypeSpec, IntegrationRef, LegacyApp, Registration, TimelineObjectType, TimelineToken,
    TokenOption, TokenType,
};

pub(super) fn token(name: &str, type_: TokenType) -> TimelineToken {
    TimelineToken { name: name.into(), label: name.to_uppercase(), type_, options: vec![], object_property_name: None }
}

fn spec() -> HubSpotTimelineEventTypeSpec {
    HubSpotTimelineEventTypeSpec {
        integration_ref: IntegrationRef { name: "crm".into() },
        object_type: TimelineObjectType::Contacts,
        name: "feature_used".into(),
        label: "Feature used".into(),
        header_template: Some("Used {{feature}}".into()),
        detail_template: None,
        tokens: vec![
            token("feature", TokenType::String),
            TimelineToken {
                options: vec![TokenOption { value: "pro".into(), label: "Pro".into() }],
                ..token("plan", TokenType::Enumeration)
            },
        ],
        registration: Registration::Rendered,
        legacy_app: None,
        deletion_policy: DeletionPolicy::Orphan,
    }
}

fn event_type() -> HubSpotTimelineEventType {
    let mut event_type = HubSpotTimelineEventType::new("feature-used", spec());
    event_type.metadata.namespace = Some("default".into());
    event_type.metadata.uid = Some("0000-feature-used".into());
    event_type
}

#[test]
fn the_app_event_file_is_the_projects_component() {
    assert_eq!(
        app_event_hsmeta(&spec()),
        json!({"uid": "feature_used", "type": "app-event", "config": {
        "name": "Feature used", "objectType": "CONTACT", "headerTemplate": "Used {{feature}}",
        "properties": [
            {"name": "feature", "label": "FEATURE", "type": "string"},
            {"name": "plan", "label": "PLAN", "type": "enumeration", "options": [{"value": "pro", "label": "Pro"}]},
        ]}})
    );
    let event_type = event_type();
    let owner = event_type.controller_owner_ref(&()).unwrap();
    let config_map = app_event_config_map(&event_type, &owner);
    assert_eq!(config_map.metadata.name.as_deref(), Some("feature-used-app-event"));
    assert_eq!(config_map.metadata.owner_references.as_ref().unwrap()[0].kind, "HubSpotTimelineEventType");
    let file = &config_map.data.as_ref().unwrap()["feature_used-hsmeta.json"];
    assert_eq!(serde_json::from_str::<serde_json::Value>(file).unwrap(), app_event_hsmeta(&spec()));
}

#[test]
fn template_drift_names_what_differs_whatever_the_token_order() {
    let desired = event_template(&spec());
    let mut found = desired.clone();
    found.id = Some("1000001".into());
    found.tokens.reverse();
    assert_eq!(template_drift(&desired, &found), Vec::<String>::new());
    found.tokens[0].label = "Plan tier".into();
    found.header_template = None;
    found.tokens.push(token_of("stale"));
    assert_eq!(template_drift(&desired, &found), ["headerTemplate", "tokens.plan", "tokens.stale"]);
}

fn token_of(name: &str) -> hubspot::EventTemplateToken {
    hubspot::EventTemplateToken {
        name: name.into(),
        label: name.into(),
        token_type: "string".into(),
        ..Default::default()
    }
}

#[test]
fn the_kind_of_app_decides_the_carrier() {
    let private_app = integration("https://api.hubapi.com", &[]);
    assert_eq!(carrier(&private_app, &spec()), Carrier::CustomEvents);
    assert_eq!(carrier(&with_oauth(private_app.clone()), &spec()), Carrier::AppEvents);
    let legacy = HubSpotTimelineEventTypeSpec {
        registration: Registration::Api,
        legacy_app: Some(LegacyApp {
            app_id: 54321,
            developer_api_key: SecretKeyRef { name: "hubspot".into(), key: "hapikey".into() },
        }),
        ..spec()
    };
    assert_eq!(carrier(&private_app, &legacy), Carrier::TimelineEvents);
}

#[tokio::test]
async fn the_emulator_takes_the_rendered_file_and_the_template() {
    let emulator = RunningEmulator::start(
        EmulatorConfig { tokens: vec![TokenGrant { token: "t".into(), scopes: None }], ..Default::default() },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let defined = http
        .post(format!("{}/_emulator/app-event-types", emulator.base_url()))
        .json(&app_event_hsmeta(&spec()))
        .send()
        .await
        .unwrap();
    assert_eq!(defined.status(), 201);
    let defined: serde_json::Value = defined.json().await.unwrap();
    assert_eq!(
        (defined["fullyQualifiedName"].as_str(), defined["objectType"].as_str()),
        (Some("ae62515_feature_used"), Some("contacts"))
    );

    let client = emulator_client(&emulator, "t");
    let key = hubspot::Secret::new(emulator::DEFAULT_DEVELOPER_API_KEY.to_string());
    let desired = event_template(&spec());
    let created = client.create_event_template(54321, &key, &desired).await.unwrap();
    let id = created.id.clone().expect("HubSpot's id");
    let found = client.list_event_templates(54321, &key).await.unwrap();
    assert_eq!(found.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["feature_used"]);
    assert_eq!(template_drift(&desired, &found[0]), Vec::<String>::new());
    let relabelled = HubSpotTimelineEventTypeSpec { tokens: vec![token("feature", TokenType::String)], ..spec() };
    let updated = client.update_event_template(54321, &key, &id, &event_template(&relabelled)).await.unwrap();
    assert_eq!(template_drift(&event_template(&relabelled), &updated), Vec::<String>::new());
    client.delete_event_template(54321, &key, &id).await.unwrap();
    assert_eq!(client.get_event_template(54321, &key, &id).await.unwrap(), None);
    client.delete_event_template(54321, &key, &id).await.expect("a template already gone counts as deleted");
    emulator.shutdown().await;
}

#[test]
fn occurrences_add_up_over_the_receivers_that_report_the_type() {
    use crate::receiver_reports::ReceiverReports;
    use model::api::timeline::OccurrenceCounts;
    use model::report::{SyncReport, TimelineReport};

    let report = |accepted, delivered, pending| {
        let mut report = SyncReport::default();
        report.timeline_event_types.insert(
            "default/feature-used".into(),
            TimelineReport { accepted, delivered, rejected: 1, pending, ..Default::default() },
        );
        report
    };
    let other = SyncReport::default();
    let read =
        ReceiverReports::Read { ready: 3, reports: vec![report(10, 7, 2), report(5, 5, 0), other], errors: vec![] };
    assert_eq!(
        super::occurrences("default/feature-used", &read),
        Some(OccurrenceCounts { accepted: 15, delivered: 12, rejected: 2, pending: 2 })
    );
    assert_eq!(super::occurrences("default/other", &read), None, "not yet in the receivers' configuration");
    assert_eq!(super::occurrences("default/feature-used", &ReceiverReports::not_available()), None);
}
