//! The CRD's rules, checked client-side with the CEL the API server runs.

use super::*;

fn token(name: &str, type_: TokenType) -> TimelineToken {
    TimelineToken { name: name.into(), label: name.into(), type_, options: vec![], object_property_name: None }
}

fn plan_token() -> TimelineToken {
    TimelineToken {
        options: vec![TokenOption { value: "pro".into(), label: "Pro".into() }],
        ..token("plan", TokenType::Enumeration)
    }
}

fn event_type(edit: impl FnOnce(&mut HubSpotTimelineEventTypeSpec)) -> HubSpotTimelineEventType {
    let mut spec = HubSpotTimelineEventTypeSpec {
        integration_ref: IntegrationRef { name: "crm".into() },
        object_type: TimelineObjectType::Contacts,
        name: "feature_used".into(),
        label: "Feature used".into(),
        header_template: Some("Used {{feature}}".into()),
        detail_template: None,
        tokens: vec![token("feature", TokenType::String), plan_token()],
        registration: Registration::Rendered,
        legacy_app: None,
        deletion_policy: DeletionPolicy::Orphan,
    };
    edit(&mut spec);
    HubSpotTimelineEventType::new("feature-used", spec)
}

fn legacy_app() -> LegacyApp {
    LegacyApp { app_id: 54321, developer_api_key: SecretKeyRef { name: "hubspot".into(), key: "hapikey".into() } }
}

fn cel_errors(object: &HubSpotTimelineEventType, old: Option<&HubSpotTimelineEventType>) -> String {
    let outcome = match old {
        None => kube::core::cel::validate_cel(object),
        Some(old) => kube::core::cel::validate_cel_update(object, old),
    };
    outcome.err().map(|e| format!("{e:?}")).unwrap_or_default()
}

#[test]
fn cel_accepts_rendered_and_api_event_types() {
    assert_eq!(cel_errors(&event_type(|_| {}), None), "");
    let api = event_type(|s| (s.registration, s.legacy_app) = (Registration::Api, Some(legacy_app())));
    assert_eq!(cel_errors(&api, None), "");
    let detail_only = event_type(|s| (s.header_template, s.detail_template) = (None, Some("Details".into())));
    assert_eq!(cel_errors(&detail_only, None), "");
}

#[test]
fn cel_refuses_registration_without_its_app_and_templateless_types() {
    let api = event_type(|s| s.registration = Registration::Api);
    assert!(cel_errors(&api, None).contains("registration Api needs legacyApp"));
    let rendered = event_type(|s| s.legacy_app = Some(legacy_app()));
    assert!(cel_errors(&rendered, None).contains("legacyApp is only used with registration Api"));
    let bare = event_type(|s| s.header_template = None);
    assert!(cel_errors(&bare, None).contains("set headerTemplate, detailTemplate or both"));
}

#[test]
fn cel_checks_names_and_token_options() {
    let o = event_type(|s| s.name = "Feature Used".into());
    assert!(cel_errors(&o, None).contains("name must start with a lowercase letter"));
    let o = event_type(|s| s.tokens[1].options.clear());
    assert!(cel_errors(&o, None).contains("a token of type enumeration needs options"));
    let o = event_type(|s| s.tokens[0].options = plan_token().options);
    assert!(cel_errors(&o, None).contains("only enumeration tokens have options"));
    let o = event_type(|s| s.tokens[0].name = "feature used".into());
    assert!(cel_errors(&o, None).contains("token name must contain only letters"));
}

#[test]
fn cel_keeps_name_and_object_type_immutable() {
    let old = event_type(|_| {});
    assert_eq!(cel_errors(&event_type(|s| s.label = "Feature adopted".into()), Some(&old)), "");
    assert!(cel_errors(&event_type(|s| s.name = "feature_adopted".into()), Some(&old)).contains("name is immutable"));
    let moved = event_type(|s| s.object_type = TimelineObjectType::Companies);
    assert!(cel_errors(&moved, Some(&old)).contains("objectType is immutable"));
}

#[test]
fn the_schema_keys_tokens_by_name_and_documents_every_field() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(HubSpotTimelineEventType::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["tokens"]["x-kubernetes-list-map-keys"], serde_json::json!(["name"]));
    assert_eq!(spec["properties"]["registration"]["default"], "Rendered");
    fn undocumented(path: &str, schema: &serde_json::Value, out: &mut Vec<String>) {
        for (name, field) in schema["properties"].as_object().into_iter().flatten() {
            let path = format!("{path}.{name}");
            if field.get("description").is_none() {
                out.push(path.clone());
            }
            undocumented(&path, field, out);
            undocumented(&format!("{path}[]"), &field["items"], out);
        }
    }
    let mut missing = vec![];
    undocumented("spec", spec, &mut missing);
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}
