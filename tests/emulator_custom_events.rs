//! The emulator's custom (behavioral) events over real HTTP: event definitions with HubSpot's
//! validation, occurrences checked against them, their scopes, and the record's timeline.

mod common;

use common::TestEmulator;
use emulator::{EmulatorConfig, TokenGrant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-custom-events";
const DEFINITIONS: &str = "/events/v3/event-definitions";

async fn start(extra: Vec<TokenGrant>) -> TestEmulator {
    let mut tokens = vec![TokenGrant { token: TOKEN.into(), scopes: None }];
    tokens.extend(extra);
    TestEmulator::start(EmulatorConfig { tokens, ..Default::default() }).await
}

async fn call(emu: &TestEmulator, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = emu.http.request(method, emu.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

/// The record's timeline from the admin API.
async fn record_timeline(emu: &TestEmulator, contact: &str) -> Value {
    let response = emu.http.get(emu.url(&format!("/_emulator/timeline/contacts/{contact}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn feature_used() -> Value {
    json!({
        "label": "Feature used",
        "name": "feature_used",
        "description": "A customer used a feature of the product",
        "primaryObject": "CONTACT",
        "propertyDefinitions": [
            {"name": "feature", "label": "Feature", "type": "string"},
            {"name": "seats", "label": "Seats", "type": "number"},
            {"name": "plan", "label": "Plan", "type": "enumeration",
             "options": [{"label": "Pro", "value": "pro"}, {"label": "Free", "value": "free"}]},
        ],
    })
}

#[tokio::test]
async fn definitions_have_hubspots_shapes_and_validation() {
    let emu = start(vec![]).await;
    let (status, created) = call(&emu, Method::POST, DEFINITIONS, TOKEN, Some(feature_used())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["fullyQualifiedName"], "pe62515_feature_used");
    assert_eq!((created["primaryObject"].as_str(), created["objectTypeId"].as_str()), (Some("CONTACT"), Some("0-1")));
    assert_eq!(created["labels"]["singular"], "Feature used");
    assert_eq!(created["properties"].as_array().unwrap().len(), 3);
    assert_eq!(created["properties"][2]["options"][0]["value"], "pro");

    let (status, again) = call(&emu, Method::POST, DEFINITIONS, TOKEN, Some(feature_used())).await;
    assert_eq!((status, again["category"].as_str()), (StatusCode::CONFLICT, Some("OBJECT_ALREADY_EXISTS")));
    // Without a name HubSpot makes one from the label; the primary object defaults to contacts.
    let (status, named) = call(&emu, Method::POST, DEFINITIONS, TOKEN, Some(json!({"label": "Invoice paid"}))).await;
    assert_eq!((status, named["name"].as_str()), (StatusCode::CREATED, Some("invoice_paid")), "{named}");
    assert_eq!(named["primaryObject"], "CONTACT");
    for (bad, why) in [
        (json!({"name": "x"}), "no label"),
        (json!({"label": "X", "name": "Not Valid"}), "upper case and a space in the name"),
        (json!({"label": "X", "primaryObject": "LINE_ITEM"}), "an object type custom events cannot be on"),
        (json!({"label": "X", "propertyDefinitions": [{"name": "p", "label": "P", "type": "bool"}]}), "a type"),
        (json!({"label": "X", "propertyDefinitions": [{"name": "p", "label": "P", "type": "enumeration"}]}), "options"),
        (
            json!({"label": "X", "propertyDefinitions": [{"name": "p", "label": "P", "type": "string"},
                                                         {"name": "p", "label": "Q", "type": "number"}]}),
            "a property twice",
        ),
    ] {
        let (status, body) = call(&emu, Method::POST, DEFINITIONS, TOKEN, Some(bad)).await;
        assert_eq!((status, body["category"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")), "{why}");
    }

    let (status, list) = call(&emu, Method::GET, &format!("{DEFINITIONS}?searchString=feature"), TOKEN, None).await;
    assert_eq!((status, list["total"].as_u64()), (StatusCode::OK, Some(1)), "{list}");
    assert!(list["results"][0].get("properties").is_none(), "properties only with includeProperties=true");
    let (_, page) =
        call(&emu, Method::GET, &format!("{DEFINITIONS}?limit=1&includeProperties=true"), TOKEN, None).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    assert_eq!(page["paging"]["next"]["after"], "1");
    assert!(page["results"][0]["properties"].is_array());

    let path = format!("{DEFINITIONS}/feature_used");
    let (status, updated) = call(&emu, Method::PATCH, &path, TOKEN, Some(json!({"label": "Feature adopted"}))).await;
    assert_eq!((status, updated["labels"]["singular"].as_str()), (StatusCode::OK, Some("Feature adopted")));
    let (status, _) = call(&emu, Method::PATCH, &path, TOKEN, Some(json!({"primaryObject": "DEAL"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the primary object never changes");
    let property = json!({"name": "source", "label": "Source", "type": "string"});
    let (status, _) = call(&emu, Method::POST, &format!("{path}/property"), TOKEN, Some(property.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(&emu, Method::POST, &format!("{path}/property"), TOKEN, Some(property)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(&emu, Method::DELETE, &format!("{path}/property/source"), TOKEN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(call(&emu, Method::GET, &path, TOKEN, None).await.1["properties"].as_array().unwrap().len(), 3);

    let invoice = format!("{DEFINITIONS}/invoice_paid");
    assert_eq!(call(&emu, Method::DELETE, &invoice, TOKEN, None).await.0, StatusCode::NO_CONTENT);
    let (status, gone) = call(&emu, Method::GET, &invoice, TOKEN, None).await;
    assert_eq!((status, gone["category"].as_str()), (StatusCode::NOT_FOUND, Some("OBJECT_NOT_FOUND")));
    emu.running.shutdown().await;
}

#[tokio::test]
async fn occurrences_are_checked_stored_whole_and_shown_on_the_timeline() {
    let emu = start(vec![]).await;
    assert_eq!(call(&emu, Method::POST, DEFINITIONS, TOKEN, Some(feature_used())).await.0, StatusCode::CREATED);
    let contact = emu.create_contact(json!({"email": "ada@example.com"})).await;
    let occurrence = |properties: Value, at: &str| json!({"eventName": "pe62515_feature_used", "objectId": contact, "occurredAt": at, "properties": properties});

    let first = occurrence(json!({"feature": "export", "seats": 3, "plan": "pro"}), "2026-12-01T10:00:00Z");
    let (status, body) = call(&emu, Method::POST, "/events/v3/send", TOKEN, Some(first)).await;
    assert_eq!((status, &body), (StatusCode::NO_CONTENT, &Value::Null));
    let by_email = json!({"eventName": "pe62515_feature_used", "email": "new@example.com", "uuid": "u-1",
                          "properties": {"feature": "import"}});
    assert_eq!(call(&emu, Method::POST, "/events/v3/send", TOKEN, Some(by_email)).await.0, StatusCode::NO_CONTENT);
    let created = emu.contact_by_email("new@example.com").await.expect("an unknown email makes a contact");

    // One bad occurrence in a batch: 400 naming it by index, and nothing stored.
    let batch = json!({"inputs": [
        occurrence(json!({"feature": "share"}), "2026-12-02T10:00:00Z"),
        occurrence(json!({"plan": "gold", "colour": "red"}), "2026-12-02T11:00:00Z"),
        {"eventName": "pe62515_nope", "objectId": contact},
        {"eventName": "pe62515_feature_used", "objectId": "999999"},
        {"eventName": "pe62515_feature_used", "utk": "abc"},
        occurrence(json!({}), "not a time"),
    ]});
    let (status, refused) = call(&emu, Method::POST, "/events/v3/send/batch", TOKEN, Some(batch)).await;
    assert_eq!((status, refused["category"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));
    let indexes: Vec<&str> =
        refused["errors"].as_array().unwrap().iter().map(|e| e["context"]["index"][0].as_str().unwrap()).collect();
    assert_eq!(indexes, ["1", "1", "2", "3", "4", "5"], "{refused}");
    assert!(refused["correlationId"].is_string());

    let batch = json!({"inputs": [occurrence(json!({"feature": "share", "hs_city": "Lund"}), "2026-12-02T10:00:00Z")]});
    assert_eq!(call(&emu, Method::POST, "/events/v3/send/batch", TOKEN, Some(batch)).await.0, StatusCode::NO_CONTENT);

    let read = format!("/events/v3/events?objectType=contact&objectId={contact}");
    let (status, events) = call(&emu, Method::GET, &read, TOKEN, None).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let results = events["results"].as_array().unwrap();
    let features: Vec<&str> = results.iter().map(|e| e["properties"]["feature"].as_str().unwrap()).collect();
    assert_eq!(features, ["share", "export"], "this contact's, newest first");
    assert_eq!(results[1]["eventType"], "pe62515_feature_used");
    assert_eq!(
        (results[1]["objectType"].as_str(), results[1]["objectId"].as_str()),
        (Some("CONTACT"), Some(&*contact))
    );
    assert_eq!(results[1]["occurredAt"], "2026-12-01T10:00:00.000Z");
    assert_eq!(results[1]["properties"]["seats"], "3");
    let (_, other) = call(&emu, Method::GET, &format!("{read}&eventType=pe62515_other"), TOKEN, None).await;
    assert_eq!(other["results"], json!([]));
    let (status, _) = call(&emu, Method::GET, &format!("/events/v3/events?objectId={contact}"), TOKEN, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "objectId needs objectType");

    let timeline = record_timeline(&emu, &contact).await;
    let entries = timeline["results"].as_array().unwrap();
    let summary: Vec<_> = entries.iter().map(|e| (e["source"].as_str(), e["header"].as_str())).collect();
    assert_eq!(summary, [(Some("customEvent"), Some("Feature used")); 2], "{timeline}");
    let timeline = record_timeline(&emu, created["id"].as_str().unwrap()).await;
    assert_eq!(timeline["results"][0]["id"], "u-1");
    emu.running.shutdown().await;
}

#[tokio::test]
async fn each_surface_needs_its_scope() {
    let narrow = |token: &str, scope: &str| TokenGrant { token: token.into(), scopes: Some(vec![scope.into()]) };
    let emu = start(vec![
        narrow("definitions-only", "behavioral_events.event_definitions.read_write"),
        narrow("send-only", "analytics.behavioral_events.send"),
    ])
    .await;
    assert_eq!(
        call(&emu, Method::POST, DEFINITIONS, "definitions-only", Some(feature_used())).await.0,
        StatusCode::CREATED
    );
    let contact = emu.create_contact(json!({"email": "s@example.com"})).await;
    let event = json!({"eventName": "pe62515_feature_used", "objectId": contact});
    let (status, denied) = call(&emu, Method::POST, "/events/v3/send", "definitions-only", Some(event.clone())).await;
    assert_eq!((status, denied["category"].as_str()), (StatusCode::FORBIDDEN, Some("MISSING_SCOPES")));
    assert_eq!(denied["errors"][0]["context"]["requiredScopes"][0], "analytics.behavioral_events.send");
    assert_eq!(call(&emu, Method::POST, "/events/v3/send", "send-only", Some(event)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&emu, Method::GET, DEFINITIONS, "send-only", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&emu, Method::GET, "/events/v3/events", "send-only", None).await.0, StatusCode::FORBIDDEN);
    let (status, types) = call(&emu, Method::GET, "/events/v3/events/event-types", TOKEN, None).await;
    assert_eq!((status, types["eventTypes"].clone()), (StatusCode::OK, json!(["pe62515_feature_used"])));
    emu.running.shutdown().await;
}
