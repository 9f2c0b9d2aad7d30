//! The desired state of an event type, without a client: the rendered app event file and its
//! ConfigMap, the legacy event template, its drift, and the carrier of the occurrences.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde_json::{Value, json};

use hubspot::{EventTemplate, EventTemplateToken, EventTemplateTokenOption};
use model::api::HubSpotTimelineEventType;
use model::api::integration::{CredentialKind, HubSpotIntegration};
use model::api::timeline::{Carrier, HubSpotTimelineEventTypeSpec, Registration, TimelineToken};

use crate::resources::{MANAGED_BY, MANAGED_BY_LABEL};

/// Name of the ConfigMap holding an event type's rendered `*-hsmeta.json`.
pub fn app_event_config_map_name(event_type: &HubSpotTimelineEventType) -> String {
    format!("{}-app-event", event_type.name_any())
}

/// File name of the app event in the project (`src/app/app-events/<name>-hsmeta.json`), and
/// its key in the ConfigMap.
pub fn app_event_file_name(spec: &HubSpotTimelineEventTypeSpec) -> String {
    format!("{}-hsmeta.json", spec.name)
}

/// The app event component of a developer-platform project: `{uid, type: "app-event", config:
/// {name, objectType, headerTemplate, detailTemplate, properties}}`. Tokens' `objectPropertyName`
/// has no place in it (app events do not write CRM properties).
pub fn app_event_hsmeta(spec: &HubSpotTimelineEventTypeSpec) -> Value {
    let properties: Vec<Value> = spec
        .tokens
        .iter()
        .map(|token| {
            let mut property = json!({"name": token.name, "label": token.label, "type": token.type_.as_str()});
            if !token.options.is_empty() {
                property["options"] = json!(token.options);
            }
            property
        })
        .collect();
    let mut config = json!({
        "name": spec.label,
        "objectType": spec.object_type.project_name(),
        "properties": properties,
    });
    for (key, template) in [("headerTemplate", &spec.header_template), ("detailTemplate", &spec.detail_template)] {
        if let Some(template) = template {
            config[key] = json!(template);
        }
    }
    json!({"uid": spec.name, "type": "app-event", "config": config})
}

/// The ConfigMap holding the app event file (pretty-printed, as it goes into a project), owned
/// by the event type.
pub fn app_event_config_map(event_type: &HubSpotTimelineEventType, owner: &OwnerReference) -> ConfigMap {
    let file = serde_json::to_string_pretty(&app_event_hsmeta(&event_type.spec)).expect("JSON values serialise") + "\n";
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "hubspot-operator".to_string()),
        ("app.kubernetes.io/instance".to_string(), event_type.spec.integration_ref.name.clone()),
        ("app.kubernetes.io/component".to_string(), "app-event".to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(app_event_config_map_name(event_type)),
            namespace: event_type.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(app_event_file_name(&event_type.spec), file)])),
        ..Default::default()
    }
}

fn template_token(token: &TimelineToken) -> EventTemplateToken {
    EventTemplateToken {
        name: token.name.clone(),
        label: token.label.clone(),
        token_type: token.type_.as_str().to_string(),
        options: token
            .options
            .iter()
            .map(|o| EventTemplateTokenOption { value: o.value.clone(), label: o.label.clone() })
            .collect(),
        object_property_name: token.object_property_name.clone(),
    }
}

/// The legacy event template HubSpot should hold: named by `spec.name` (by which an existing
/// template is adopted), with the spec's templates and tokens.
pub fn event_template(spec: &HubSpotTimelineEventTypeSpec) -> EventTemplate {
    EventTemplate {
        id: None,
        name: spec.name.clone(),
        object_type: spec.object_type.as_str().to_string(),
        header_template: spec.header_template.clone(),
        detail_template: spec.detail_template.clone(),
        tokens: spec.tokens.iter().map(template_token).collect(),
    }
}

/// The fields of `found` that differ from `desired`, by spec name (`tokens.<name>` for a
/// token, `objectType` when HubSpot holds it for another object type, which no update can
/// change). Token order does not matter to HubSpot.
pub fn template_drift(desired: &EventTemplate, found: &EventTemplate) -> Vec<String> {
    let mut drift = vec![];
    if desired.object_type != found.object_type {
        drift.push("objectType".to_string());
    }
    if desired.header_template != found.header_template {
        drift.push("headerTemplate".to_string());
    }
    if desired.detail_template != found.detail_template {
        drift.push("detailTemplate".to_string());
    }
    let tokens = |template: &EventTemplate| -> BTreeMap<String, EventTemplateToken> {
        template.tokens.iter().map(|t| (t.name.clone(), t.clone())).collect()
    };
    let (want, have) = (tokens(desired), tokens(found));
    let names: std::collections::BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    drift.extend(
        names.into_iter().filter(|name| want.get(*name) != have.get(*name)).map(|name| format!("tokens.{name}")),
    );
    drift
}

/// The HubSpot API that carries an event type's occurrences: the legacy template's timeline
/// events when it is registered through the API; else app events for an OAuth (marketplace)
/// app, and custom events for a private app or service key, which cannot create timeline events.
pub fn carrier(integration: &HubSpotIntegration, spec: &HubSpotTimelineEventTypeSpec) -> Carrier {
    match (spec.registration, integration.spec.credentials.kind()) {
        (Registration::Api, _) => Carrier::TimelineEvents,
        (Registration::Rendered, Ok(CredentialKind::OAuth(_))) => Carrier::AppEvents,
        (Registration::Rendered, _) => Carrier::CustomEvents,
    }
}
