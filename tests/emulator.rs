//! The HubSpot emulator over real HTTP: HubSpot's contract for auth, scopes, objects, batches,
//! properties, rate limits and signed webhook delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use emulator::{EmulatorConfig, LegacySignatureVersion, RunningEmulator, TokenGrant};
use hubspot::signature::{SignatureHeaders, sign_v1, sign_v2};
use hubspot::{SignatureVerifier, Tier, WebhookEvent};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const TOKEN: &str = "test-token";
const WAIT: Duration = Duration::from_secs(30);

struct Emu {
    emulator: RunningEmulator,
    base: String,
    http: reqwest::Client,
}

async fn start(config: EmulatorConfig) -> Emu {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = RunningEmulator::start(config, listener).await.unwrap();
    let base = emulator.base_url();
    Emu { emulator, base, http: reqwest::Client::new() }
}

fn config_with_token() -> EmulatorConfig {
    EmulatorConfig { tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }], ..Default::default() }
}

impl Emu {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, headers, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, Some(TOKEN), None).await;
        (s, v)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::POST, path, Some(TOKEN), Some(body)).await;
        (s, v)
    }

    async fn webhook_status(&self) -> Value {
        self.call(Method::GET, "/_emulator/webhooks", None, None).await.2
    }
}

fn assert_uuid_shaped(id: &Value) {
    let parts: Vec<usize> = id.as_str().unwrap().split('-').map(str::len).collect();
    assert_eq!(parts, vec![8, 4, 4, 4, 12], "{id}");
}

#[tokio::test]
async fn unknown_or_missing_token_is_401() {
    let emu = start(config_with_token()).await;
    for token in [None, Some("wrong")] {
        let (status, _, body) = emu.call(Method::GET, "/crm/v3/objects/contacts", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "INVALID_AUTHENTICATION");
        assert!(!body["message"].as_str().unwrap().is_empty());
        assert_uuid_shaped(&body["correlationId"]);
    }
    let (_, headers, body) = emu.call(Method::GET, "/crm/v3/objects/contacts", Some("wrong"), None).await;
    assert_eq!(headers["x-hubspot-correlation-id"], body["correlationId"].as_str().unwrap());
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn introspection_reports_portal_app_and_scopes() {
    let config = EmulatorConfig {
        tokens: vec![
            TokenGrant { token: TOKEN.into(), scopes: None },
            TokenGrant { token: "narrow".into(), scopes: Some(vec!["crm.objects.contacts.read".into()]) },
        ],
        portal_id: 777,
        app_id: 4000,
        ..Default::default()
    };
    let emu = start(config).await;
    let path = "/oauth/v2/private-apps/get/access-token-info";
    let (status, all) = emu.post(path, json!({"tokenKey": TOKEN})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["hubId"], 777);
    assert_eq!(all["appId"], 4000);
    assert!(all["userId"].is_u64());
    let scopes: BTreeSet<&str> = all["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for t in ["contacts", "companies", "deals"] {
        for kind in ["objects", "schemas"] {
            for access in ["read", "write"] {
                assert!(scopes.contains(format!("crm.{kind}.{t}.{access}").as_str()), "{kind} {t} {access}");
            }
        }
    }
    let (_, narrow) = emu.post(path, json!({"tokenKey": "narrow"})).await;
    assert_eq!(narrow["scopes"], json!(["crm.objects.contacts.read"]));
    assert_eq!(narrow["appId"], 4001, "every token is its own app");
    let (status, unknown) = emu.post(path, json!({"tokenKey": "nope"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown["category"], "INVALID_AUTHENTICATION");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn missing_scopes_are_403_with_hubspots_body() {
    let config = EmulatorConfig {
        tokens: vec![TokenGrant {
            token: "reader".into(),
            scopes: Some(vec!["crm.objects.contacts.read".into(), "crm.schemas.companies.read".into()]),
        }],
        ..Default::default()
    };
    let emu = start(config).await;
    let call = |method: Method, path: &'static str, body: Option<Value>| {
        let emu = &emu;
        async move { emu.call(method, path, Some("reader"), body).await }
    };
    let (status, _, body) =
        call(Method::POST, "/crm/v3/objects/contacts", Some(json!({"properties": {"email": "a@b.io"}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["category"], "MISSING_SCOPES");
    assert_eq!(body["status"], "error");
    assert_uuid_shaped(&body["correlationId"]);
    assert_eq!(body["errors"][0]["message"], "One or more of the following scopes are required.");
    assert_eq!(body["errors"][0]["context"]["requiredScopes"], json!(["crm.objects.contacts.write"]));
    let (status, _, body) = call(Method::GET, "/crm/v3/objects/deals", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["context"]["requiredScopes"], json!(["crm.objects.deals.read"]));
    let (status, _, body) = call(
        Method::POST,
        "/crm/v3/properties/contacts",
        Some(json!({"name": "x", "label": "X", "type": "string", "fieldType": "text", "groupName": "contactinformation"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["context"]["requiredScopes"], json!(["crm.schemas.contacts.write"]));
    // Property reads take either the object read scope or the schema read scope.
    assert_eq!(call(Method::GET, "/crm/v3/properties/contacts", None).await.0, StatusCode::OK);
    assert_eq!(call(Method::GET, "/crm/v3/properties/companies", None).await.0, StatusCode::OK);
    assert_eq!(call(Method::GET, "/crm/v3/properties/deals", None).await.0, StatusCode::FORBIDDEN);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn crud_and_paging_across_pages() {
    let emu = start(config_with_token()).await;
    let mut ids = vec![];
    for i in 0..23 {
        let (status, created) = emu
            .post(
                "/crm/v3/objects/contacts",
                json!({"properties": {"email": format!("P{i}@Example.com"), "firstname": format!("P{i}")}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(created["properties"]["email"], format!("p{i}@example.com"), "emails are kept in lower case");
        assert_eq!(created["archived"], false);
        assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    // Walk every page with `after`, on the numbered path and on the date-versioned one.
    for prefix in ["/crm/v3/objects", "/crm/objects/2026-03"] {
        let mut seen = vec![];
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &after {
                None => format!("{prefix}/contacts?limit=10&properties=firstname"),
                Some(a) => format!("{prefix}/contacts?limit=10&properties=firstname&after={a}"),
            };
            let (status, page) = emu.get(&path).await;
            assert_eq!(status, StatusCode::OK);
            pages += 1;
            for o in page["results"].as_array().unwrap() {
                seen.push(o["id"].as_str().unwrap().to_string());
                let keys: BTreeSet<&str> = o["properties"].as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(keys, BTreeSet::from(["firstname", "hs_object_id", "createdate", "lastmodifieddate"]));
            }
            match page.get("paging") {
                None => break,
                Some(paging) => {
                    let link = paging["next"]["link"].as_str().unwrap();
                    assert!(link.starts_with(&format!("{}{prefix}/contacts?", emu.base)), "{link}");
                    after = Some(paging["next"]["after"].as_str().unwrap().to_string());
                }
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, ids);
    }
    let id = &ids[4];
    let (status, by_email) = emu.get("/crm/v3/objects/contacts/p4@example.com?idProperty=email").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&by_email["id"], id.as_str());
    assert_eq!(by_email["properties"]["lastname"], Value::Null, "default properties are shown even when empty");
    let (status, _, patched) = emu
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/contacts/{id}"),
            Some(TOKEN),
            Some(json!({"properties": {"lastname": "Four"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["properties"]["lastname"], "Four");
    let (_, fetched) = emu.get(&format!("/crm/v3/objects/contacts/{id}?properties=lastname,firstname")).await;
    assert_eq!(fetched["properties"]["lastname"], "Four");
    assert_eq!(fetched["properties"]["firstname"], "P4");
    // A second contact may not take an existing email.
    let (status, _, conflict) = emu
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/contacts/{}", ids[5]),
            Some(TOKEN),
            Some(json!({"properties": {"email": "p4@example.com"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["message"], format!("Contact already exists. Existing ID: {id}"));
    let (status, _, _) = emu.call(Method::DELETE, &format!("/crm/v3/objects/contacts/{id}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, missing) = emu.get(&format!("/crm/v3/objects/contacts/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["category"], "OBJECT_NOT_FOUND");
    let (_, archived) = emu.get("/crm/v3/objects/contacts?archived=true").await;
    assert_eq!(archived["results"].as_array().unwrap().len(), 1);
    assert_eq!(archived["results"][0]["archived"], true);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn batch_read_returns_only_requested_properties() {
    let emu = start(EmulatorConfig { seed: 5, ..config_with_token() }).await;
    let (status, body) = emu
        .post(
            "/crm/v3/objects/contacts/batch/read",
            json!({"properties": ["firstname", "city", "no_such_property"], "inputs": [{"id": "1"}, {"id": "3"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "COMPLETE");
    assert!(body["startedAt"].is_string() && body["completedAt"].is_string());
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for o in results {
        let keys: BTreeSet<&str> = o["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["firstname", "city", "hs_object_id", "createdate", "lastmodifieddate"]));
    }
    // By a unique property, with one unknown id: HubSpot's 207 with the missing ids.
    let (_, _, first) = emu.call(Method::GET, "/_emulator/objects/contacts/2", None, None).await;
    let email = first["properties"]["email"].as_str().unwrap();
    let (status, body) = emu
        .post(
            "/crm/v3/objects/contacts/batch/read",
            json!({"properties": ["email"], "idProperty": "email", "inputs": [{"id": email}, {"id": "ghost@example.com"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["results"][0]["id"], "2");
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["ghost@example.com"]));
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn batch_upsert_reports_new_and_existing() {
    let emu = start(config_with_token()).await;
    let (status, _) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "old@example.com"}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let upsert = json!({"inputs": [
        {"id": "old@example.com", "idProperty": "email", "properties": {"firstname": "Old"}},
        {"id": "new@example.com", "idProperty": "email", "properties": {"firstname": "New"}},
    ]});
    let (status, body) = emu.post("/crm/v3/objects/contacts/batch/upsert", upsert.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let by_name: BTreeMap<&str, &Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["properties"]["firstname"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_name["Old"]["new"], false);
    assert_eq!(by_name["Old"]["id"], "1");
    assert_eq!(by_name["New"]["new"], true);
    let (_, again) = emu.post("/crm/v3/objects/contacts/batch/upsert", upsert).await;
    assert!(again["results"].as_array().unwrap().iter().all(|r| r["new"] == false));
    let (_, list) = emu.get("/crm/v3/objects/contacts").await;
    assert_eq!(list["results"].as_array().unwrap().len(), 2);
    // idProperty must name a unique property.
    let (status, body) = emu
        .post(
            "/crm/v3/objects/contacts/batch/upsert",
            json!({"inputs": [{"id": "Ada", "idProperty": "firstname", "properties": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn batches_take_at_most_100_inputs_and_fail_as_a_whole() {
    let emu = start(config_with_token()).await;
    let inputs: Vec<Value> = (0..101).map(|i| json!({"properties": {"dealname": format!("D{i}")}})).collect();
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/create", json!({ "inputs": inputs })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/create", json!({ "inputs": inputs[..100] })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["results"].as_array().unwrap().len(), 100);
    // One invalid value fails the whole call, and nothing of it is written.
    let bad = json!({"inputs": [{"properties": {"dealname": "ok"}}, {"properties": {"amount": "lots"}}]});
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/create", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("INVALID_FLOAT"));
    // With objectWriteTraceId, each input stands alone: HTTP 207.
    let traced = json!({"inputs": [
        {"properties": {"dealname": "ok"}, "objectWriteTraceId": "a"},
        {"properties": {"amount": "lots"}, "objectWriteTraceId": "b"},
    ]});
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/create", traced).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["results"][0]["objectWriteTraceId"], "a");
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["errors"][0]["context"]["objectWriteTraceId"], json!(["b"]));
    let (_, all) = emu.get("/crm/v3/objects/deals?limit=100&after=101").await;
    assert_eq!(all["results"].as_array().unwrap().len(), 1, "only the traced good input was written");
    // Updates of unknown records: the whole call fails, or only that input when traced.
    let update = |traced: bool| {
        let trace = |id: &str| if traced { json!(id) } else { Value::Null };
        json!({"inputs": [
            {"id": "1", "properties": {"amount": "7"}, "objectWriteTraceId": trace("one")},
            {"id": "999999", "properties": {"amount": "8"}, "objectWriteTraceId": trace("ghost")},
        ]})
    };
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/update", update(false)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["category"], "OBJECT_NOT_FOUND");
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/update", update(true)).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["results"][0]["properties"]["amount"], "7");
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["objectWriteTraceId"], json!(["ghost"]));
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn property_create_is_validated() {
    let emu = start(config_with_token()).await;
    let (_, list) = emu.get("/crm/v3/properties/contacts").await;
    let email = list["results"].as_array().unwrap().iter().find(|p| p["name"] == "email").unwrap();
    assert_eq!(email["hubspotDefined"], true);
    assert_eq!(
        (&email["type"], &email["fieldType"], &email["groupName"]),
        (&json!("string"), &json!("text"), &json!("contactinformation"))
    );
    let (status, body) =
        emu.post("/crm/v3/properties/contacts", json!({"name": "loyalty_tier", "label": "Loyalty tier"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let bad_pair = json!({"name": "loyalty_tier", "label": "Loyalty tier", "type": "number", "fieldType": "select", "groupName": "contactinformation"});
    assert_eq!(emu.post("/crm/v3/properties/contacts", bad_pair).await.0, StatusCode::BAD_REQUEST);
    let good = json!({
        "name": "customer_number", "label": "Customer number", "type": "string", "fieldType": "text",
        "groupName": "contactinformation", "hasUniqueValue": true,
    });
    let (status, created) = emu.post("/crm/properties/2026-03/contacts", good.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["name"], "customer_number");
    assert_eq!(created["hasUniqueValue"], true);
    assert!(created.get("hubspotDefined").is_none_or(|v| v == false));
    let (status, body) = emu.post("/crm/v3/properties/contacts", good).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["category"], "OBJECT_ALREADY_EXISTS");
    let (status, fetched) = emu.get("/crm/v3/properties/contacts/customer_number").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["label"], "Customer number");
    // The new unique property is enforced on writes.
    let (status, _) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"customer_number": "C-1"}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"customer_number": "C-1"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["category"], "CONFLICT");
    // HubSpot-defined properties stay; archived custom ones take no more values.
    let path = "/crm/v3/properties/contacts/email";
    assert_eq!(emu.call(Method::DELETE, path, Some(TOKEN), None).await.0, StatusCode::BAD_REQUEST);
    let path = "/crm/v3/properties/contacts/customer_number";
    assert_eq!(emu.call(Method::DELETE, path, Some(TOKEN), None).await.0, StatusCode::NO_CONTENT);
    let (status, body) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"customer_number": "C-2"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("PROPERTY_DOESNT_EXIST"));
    let (_, archived) = emu.get("/crm/v3/properties/contacts?archived=true").await;
    assert_eq!(archived["results"][0]["name"], "customer_number");
    // Groups: create, rename, and archive once empty.
    let (status, _) =
        emu.post("/crm/v3/properties/contacts/groups", json!({"name": "loyalty", "label": "Loyalty"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let group = json!({"name": "tier", "label": "Tier", "type": "string", "fieldType": "text", "groupName": "loyalty"});
    assert_eq!(emu.post("/crm/v3/properties/contacts", group).await.0, StatusCode::CREATED);
    let path = "/crm/v3/properties/contacts/groups/loyalty";
    let (status, _, renamed) =
        emu.call(Method::PATCH, path, Some(TOKEN), Some(json!({"label": "Loyalty programme"}))).await;
    assert_eq!((status, &renamed["label"]), (StatusCode::OK, &json!("Loyalty programme")));
    assert_eq!(emu.call(Method::DELETE, path, Some(TOKEN), None).await.0, StatusCode::BAD_REQUEST, "tier is in it");
    emu.call(Method::DELETE, "/crm/v3/properties/contacts/tier", Some(TOKEN), None).await;
    assert_eq!(emu.call(Method::DELETE, path, Some(TOKEN), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(emu.get(path).await.0, StatusCode::NOT_FOUND);
    let (status, body) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "not-an-email"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("INVALID_EMAIL"));
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn burst_limit_answers_429_with_headers() {
    let emu = start(EmulatorConfig { tier: Tier::Free, ..config_with_token() }).await;
    for i in 0..100u32 {
        let (status, headers, _) = emu.call(Method::GET, "/crm/v3/objects/contacts", Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
        assert_eq!(headers["x-hubspot-ratelimit-max"], "100");
        assert_eq!(headers["x-hubspot-ratelimit-remaining"], (99 - i).to_string().as_str());
    }
    let (status, headers, body) = emu.call(Method::GET, "/crm/v3/objects/contacts", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["message"], "You have reached your ten_secondly_rolling limit.");
    assert_uuid_shaped(&body["correlationId"]);
    assert_eq!(headers["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(headers["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    assert_eq!(headers["x-hubspot-ratelimit-daily"], "250000");
    assert_eq!(headers["x-hubspot-ratelimit-daily-remaining"], "249900");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn request_log_records_calls_without_tokens() {
    let emu = start(config_with_token()).await;
    emu.post("/oauth/v2/private-apps/get/access-token-info", json!({"tokenKey": TOKEN})).await;
    emu.get("/crm/v3/objects/deals?limit=5").await;
    let (_, _, log) = emu.call(Method::GET, "/_emulator/requests", None, None).await;
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(
        log[1],
        json!({"method": "GET", "path": "/crm/v3/objects/deals", "query": "limit=5", "body": null, "status": 200})
    );
    assert!(!log.to_string().contains(TOKEN));
    emu.call(Method::DELETE, "/_emulator/requests", None, None).await;
    let (_, _, log) = emu.call(Method::GET, "/_emulator/requests", None, None).await;
    assert_eq!(log, json!([]));
    emu.emulator.shutdown().await;
}

// ---------------------------------------------------------------- webhooks

/// One request the test webhook server received.
#[derive(Clone)]
struct Received {
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    events: Vec<WebhookEvent>,
}

/// A webhook target that records every request and answers the planned statuses in order
/// (200 once the plan is used up).
#[derive(Clone, Default)]
struct Target {
    received: Arc<Mutex<Vec<Received>>>,
    planned: Arc<Mutex<Vec<u16>>>,
    /// How long each answer takes.
    answer_after: Duration,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Target {
    async fn serve(planned: Vec<u16>) -> (Target, String) {
        Self::serve_with(planned, Duration::ZERO).await
    }

    async fn serve_with(planned: Vec<u16>, answer_after: Duration) -> (Target, String) {
        let target = Target { planned: Arc::new(Mutex::new(planned)), answer_after, ..Default::default() };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hubspot/webhooks?source=emulator", listener.local_addr().unwrap());
        let state = target.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let now_in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                state.max_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
                tokio::time::sleep(state.answer_after).await;
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                let host = headers["host"].to_str().unwrap().to_string();
                let events = serde_json::from_slice(&body).unwrap();
                let uri = format!("http://{host}{uri}");
                state.received.lock().unwrap().push(Received { uri, headers, body, events });
                let mut planned = state.planned.lock().unwrap();
                let status = if planned.is_empty() { 200 } else { planned.remove(0) };
                StatusCode::from_u16(status).unwrap()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (target, url)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until the received requests satisfy `done`.
    async fn wait_for(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        tokio::time::timeout(WAIT, async {
            loop {
                let received = self.received();
                if done(&received) {
                    return received;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("webhooks did not arrive in time")
    }
}

async fn wait_until_quiet(emu: &Emu) -> Value {
    wait_for_value(|| emu.webhook_status(), |s| s["pending"] == 0).await
}

async fn wait_for_value<F: Future<Output = Value>>(mut get: impl FnMut() -> F, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let v = get().await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition not reached in time")
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

const SECRET: &str = "test-client-secret";

fn webhook_config(url: String) -> EmulatorConfig {
    EmulatorConfig { webhook_url: Some(url), client_secret: SECRET.into(), ..config_with_token() }
}

#[tokio::test]
async fn webhooks_are_signed_batched_and_describe_api_writes() {
    let (target, url) = Target::serve(vec![]).await;
    let emu = start(webhook_config(url.clone())).await;
    let inputs: Vec<Value> = (0..150)
        .map(|i| json!({"properties": {"email": format!("w{i}@example.com"), "firstname": format!("W{i}")}}))
        .collect();
    let mut ids = BTreeSet::new();
    for chunk in inputs.chunks(100) {
        let (status, body) = emu.post("/crm/v3/objects/contacts/batch/create", json!({ "inputs": chunk })).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.extend(
            body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().parse::<u64>().unwrap()),
        );
    }
    // 150 creations plus a propertyChange for each of the two properties set.
    let received = target.wait_for(|r| r.iter().map(|x| x.events.len()).sum::<usize>() >= 450).await;
    assert!(received.len() >= 5, "450 events need at least five batches, got {}", received.len());
    let verifier = SignatureVerifier::new(SECRET, false);
    let mut events = vec![];
    for r in &received {
        assert!(!r.events.is_empty() && r.events.len() <= 100);
        assert_eq!(r.uri, url);
        assert_eq!(header(r, "content-type"), "application/json");
        assert_eq!(header(r, "user-agent"), "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon");
        assert_eq!(header(r, "x-hubspot-signature-version"), "v1");
        assert_eq!(header(r, "x-hubspot-signature"), sign_v1(SECRET, &r.body));
        let headers = SignatureHeaders {
            v3_signature: Some(header(r, "x-hubspot-signature-v3")),
            timestamp: Some(header(r, "x-hubspot-request-timestamp")),
            ..Default::default()
        };
        let now: i64 = header(r, "x-hubspot-request-timestamp").parse().unwrap();
        verifier.verify("POST", &r.uri, &r.body, &headers, now).expect("valid v3 signature");
        events.extend(r.events.iter().cloned());
    }
    assert_eq!(events.len(), 450);
    let event_ids: BTreeSet<u64> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(event_ids.len(), 450, "event ids are unique");
    let created: BTreeSet<u64> =
        events.iter().filter(|e| e.subscription_type == "contact.creation").map(|e| e.object_id).collect();
    assert_eq!(created, ids);
    for e in &events {
        assert_eq!((e.portal_id, e.app_id, e.attempt_number), (62515, 54321, 0));
        assert_eq!(e.change_source.as_deref(), Some("INTEGRATION"));
        assert_eq!(e.source_id.as_deref(), Some("54321"));
        match e.subscription_type.as_str() {
            "contact.creation" => assert_eq!(e.change_flag.as_deref(), Some("NEW")),
            "contact.propertyChange" => {
                let name = e.property_name.as_deref().unwrap();
                assert!(name == "email" || name == "firstname", "{name}");
                assert!(e.property_value.is_some());
            }
            other => panic!("unexpected {other}"),
        }
    }
    let status = wait_until_quiet(&emu).await;
    assert_eq!(status["delivered"], received.len());
    assert_eq!(status["failedAttempts"], 0);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_next_attempt_number() {
    let (target, url) = Target::serve(vec![500, 302]).await;
    let emu = start(webhook_config(url)).await;
    let (status, _, created) = emu
        .call(Method::POST, "/_emulator/objects/companies", None, Some(json!({"properties": {"name": "Acme"}})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let received = target.wait_for(|r| r.len() >= 3).await;
    let attempts = |r: &Received| r.events.iter().map(|e| e.attempt_number).collect::<BTreeSet<_>>();
    assert_eq!(attempts(&received[0]), BTreeSet::from([0]));
    assert_eq!(attempts(&received[1]), BTreeSet::from([1]));
    assert_eq!(attempts(&received[2]), BTreeSet::from([2]), "a redirect is a failed delivery too");
    let keys = |r: &Received| r.events.iter().map(WebhookEvent::dedup_key).collect::<Vec<_>>();
    assert_eq!(keys(&received[0]), keys(&received[1]), "the retry carries the same events");
    assert_eq!(keys(&received[0]), keys(&received[2]));
    assert_ne!(header(&received[0], "x-hubspot-signature"), header(&received[1], "x-hubspot-signature"));
    assert_eq!(header(&received[1], "x-hubspot-signature"), sign_v1(SECRET, &received[1].body));
    let creation = received[1].events.iter().find(|e| e.subscription_type == "company.creation").unwrap();
    assert_eq!(creation.object_id.to_string(), created["id"].as_str().unwrap());
    assert_eq!(creation.change_source.as_deref(), Some("CRM_UI"), "admin writes are user changes");
    let status = wait_until_quiet(&emu).await;
    assert_eq!(status["failedAttempts"], 2);
    assert_eq!(status["delivered"], 1);
    assert_eq!(status["log"][0], json!({"batchSize": 2, "attemptNumber": 0, "status": 500}));
    assert_eq!(status["log"][1], json!({"batchSize": 2, "attemptNumber": 1, "status": 302}));
    assert_eq!(status["log"][2], json!({"batchSize": 2, "attemptNumber": 2, "status": 200}));
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn duplicate_rate_one_delivers_every_batch_twice() {
    let (target, url) = Target::serve(vec![]).await;
    let emu = start(EmulatorConfig { duplicate_rate: 1.0, ..webhook_config(url) }).await;
    let (status, _, created) = emu
        .call(
            Method::POST,
            "/_emulator/objects/deals",
            None,
            Some(json!({"properties": {"dealname": "Big", "amount": "10"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let (status, _, _) = emu
        .call(
            Method::PATCH,
            &format!("/_emulator/objects/deals/{id}"),
            None,
            Some(json!({"properties": {"amount": "20"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let status = wait_until_quiet(&emu).await;
    let received = target.received();
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for e in received.iter().flat_map(|r| &r.events) {
        *copies.entry(e.dedup_key()).or_default() += 1;
    }
    assert_eq!(copies.len(), 4, "creation, two property changes, one update");
    assert!(copies.values().all(|n| *n == 2), "{copies:?}");
    assert_eq!(status["delivered"], received.len());
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn v2_signatures_cover_method_and_url() {
    let (target, url) = Target::serve(vec![]).await;
    let emu =
        start(EmulatorConfig { legacy_signature_version: LegacySignatureVersion::V2, ..webhook_config(url.clone()) })
            .await;
    emu.call(Method::POST, "/_emulator/objects/contacts", None, Some(json!({"properties": {"firstname": "V"}}))).await;
    let received = target.wait_for(|r| !r.is_empty()).await;
    let r = &received[0];
    assert_eq!(header(r, "x-hubspot-signature-version"), "v2");
    assert_eq!(header(r, "x-hubspot-signature"), sign_v2(SECRET, "POST", &url, &r.body));
    let headers = SignatureHeaders {
        signature: Some(header(r, "x-hubspot-signature")),
        version: Some("v2"),
        ..Default::default()
    };
    SignatureVerifier::new(SECRET, true).verify("POST", &url, &r.body, &headers, 0).expect("valid v2 signature");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn admin_api_acts_as_a_user_and_shows_raw_state() {
    let emu = start(config_with_token()).await;
    let (status, _, created) = emu
        .call(
            Method::POST,
            "/_emulator/objects/contacts",
            None,
            Some(json!({"properties": {"email": "u@example.com"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let (status, _, _) = emu.call(Method::DELETE, &format!("/_emulator/objects/contacts/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, raw) = emu.call(Method::GET, &format!("/_emulator/objects/contacts/{id}"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(raw["archived"], true);
    assert_eq!(raw["properties"]["email"], "u@example.com");
    let (status, _) = emu.get(&format!("/crm/v3/objects/contacts/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, all) = emu.call(Method::GET, "/_emulator/objects/contacts", None, None).await;
    assert_eq!(all, json!([raw]));
    let (_, _, requests) = emu.call(Method::GET, "/_emulator/requests", None, None).await;
    assert_eq!(requests.as_array().unwrap().len(), 1, "admin calls are not API calls");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn request_counts_tell_rate_limit_refusals_from_injected_faults() {
    let emu = start(EmulatorConfig { tier: Tier::Free, ..config_with_token() }).await;
    emu.call(Method::PUT, "/_emulator/faults", None, Some(json!({"status": 429, "count": 3}))).await;
    let mut statuses = Vec::new();
    for _ in 0..102 {
        statuses.push(emu.call(Method::GET, "/crm/v3/objects/contacts", Some(TOKEN), None).await.0);
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    // 3 injected, then 97 served (the window also counted the injected 3), then 2 refused.
    assert_eq!(refused, 5);
    let (_, _, counts) = emu.call(Method::GET, "/_emulator/requests/counts", None, None).await;
    assert_eq!(counts["rateLimited"], 2);
    assert_eq!(counts["injectedFaults"], 3);
    assert_eq!(
        counts["calls"],
        json!([
            {"method": "GET", "path": "/crm/v3/objects/contacts", "status": 200, "count": 97},
            {"method": "GET", "path": "/crm/v3/objects/contacts", "status": 429, "count": 5},
        ])
    );
    emu.call(Method::DELETE, "/_emulator/requests", None, None).await;
    let (_, _, counts) = emu.call(Method::GET, "/_emulator/requests/counts", None, None).await;
    assert_eq!(counts, json!({"calls": [], "rateLimited": 0, "injectedFaults": 0}));
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn injected_faults_answer_like_hubspot_under_load() {
    let emu = start(config_with_token()).await;
    let (status, _, plan) = emu
        .call(
            Method::PUT,
            "/_emulator/faults",
            None,
            Some(json!({"status": 503, "count": 2, "pathPrefix": "/crm/v3/objects"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plan["count"], 2);
    assert_eq!(emu.get("/crm/v3/properties/contacts").await.0, StatusCode::OK, "other paths are served");
    for _ in 0..2 {
        let (status, headers, body) = emu.call(Method::GET, "/crm/v3/objects/contacts", Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "error");
        assert!(headers.contains_key("x-hubspot-ratelimit-remaining"));
    }
    assert_eq!(emu.get("/crm/v3/objects/contacts").await.0, StatusCode::OK, "the plan ran out");
    assert_eq!(emu.call(Method::GET, "/_emulator/faults", None, None).await.2, Value::Null);
    emu.call(Method::PUT, "/_emulator/faults", None, Some(json!({"status": 429, "policyName": "DAILY"}))).await;
    let (status, body) = emu.get("/crm/v3/objects/deals").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((&body["errorType"], &body["policyName"]), (&json!("RATE_LIMIT"), &json!("DAILY")));
    assert_eq!(emu.call(Method::DELETE, "/_emulator/faults", None, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(emu.get("/crm/v3/objects/deals").await.0, StatusCode::OK);
    let (status, _, _) = emu.call(Method::PUT, "/_emulator/faults", None, Some(json!({"status": 404}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn reorder_shuffles_events_but_delivers_all() {
    let (target, url) = Target::serve(vec![]).await;
    let emu = start(EmulatorConfig { reorder: true, ..webhook_config(url) }).await;
    let inputs: Vec<Value> = (0..100).map(|i| json!({"properties": {"dealname": format!("R{i}")}})).collect();
    let (status, _) = emu.post("/crm/v3/objects/deals/batch/create", json!({ "inputs": inputs })).await;
    assert_eq!(status, StatusCode::CREATED);
    wait_until_quiet(&emu).await;
    let received = target.received();
    let ids: Vec<u64> = received.iter().flat_map(|r| r.events.iter().map(|e| e.event_id)).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 200, "every event arrives once");
    assert_eq!(ids.len(), 200);
    // 200 events in shuffled batches: arriving in creation order would take odds of 1 in 100!.
    assert!(ids.windows(2).any(|w| w[0] > w[1]), "events arrived in creation order");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn search_filters_and_carries_no_rate_limit_headers() {
    let emu = start(EmulatorConfig { seed: 30, ..config_with_token() }).await;
    let body = json!({
        "filterGroups": [{"filters": [
            {"propertyName": "city", "operator": "EQ", "value": "london"},
            {"propertyName": "lifecyclestage", "operator": "IN", "values": ["lead", "customer", "subscriber"]},
        ]}],
        "sorts": [{"propertyName": "email", "direction": "ASCENDING"}],
        "properties": ["email", "city"],
        "limit": 2,
    });
    let (status, headers, page) =
        emu.call(Method::POST, "/crm/v3/objects/contacts/search", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.keys().any(|k| k.as_str().starts_with("x-hubspot-ratelimit")), "{headers:?}");
    let results = page["results"].as_array().unwrap();
    assert!(page["total"].as_u64().unwrap() > 2);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["properties"]["city"] == "London"));
    assert!(results[0]["properties"]["email"].as_str() < results[1]["properties"]["email"].as_str());
    assert_eq!(page["paging"]["next"]["after"], "2");
    let (status, _, _) =
        emu.call(Method::POST, "/crm/objects/2026-03/deals/search", Some(TOKEN), Some(json!({"limit": 500}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn at_most_ten_webhook_requests_are_in_flight() {
    let (target, url) = Target::serve_with(vec![], Duration::from_millis(200)).await;
    let emu = start(webhook_config(url)).await;
    for chunk in 0..6 {
        let inputs: Vec<Value> =
            (0..100).map(|i| json!({"properties": {"dealname": format!("C{chunk}-{i}")}})).collect();
        let (status, _) = emu.post("/crm/v3/objects/deals/batch/create", json!({ "inputs": inputs })).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let status = wait_until_quiet(&emu).await;
    let received = target.received();
    assert_eq!(received.iter().map(|r| r.events.len()).sum::<usize>(), 1200);
    assert!(received.len() >= 12);
    assert_eq!(status["delivered"], received.len());
    let max = target.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=10).contains(&max), "{max} requests were in flight at once");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn reads_can_include_each_value_with_its_source() {
    let emu = start(config_with_token()).await;
    let (_, created) =
        emu.post("/crm/v3/objects/deals", json!({"properties": {"dealname": "H", "amount": "10"}})).await;
    let id = created["id"].as_str().unwrap();
    let (status, _, _) = emu
        .call(
            Method::PATCH,
            &format!("/_emulator/objects/deals/{id}"),
            None,
            Some(json!({"properties": {"amount": "20"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let read = json!({"properties": ["amount"], "propertiesWithHistory": ["amount"], "inputs": [{"id": id}]});
    let (status, body) = emu.post("/crm/v3/objects/deals/batch/read", read).await;
    assert_eq!(status, StatusCode::OK);
    let history = body["results"][0]["propertiesWithHistory"]["amount"].as_array().unwrap();
    let values: Vec<(&str, &str)> =
        history.iter().map(|h| (h["value"].as_str().unwrap(), h["sourceType"].as_str().unwrap())).collect();
    assert_eq!(values, vec![("20", "CRM_UI"), ("10", "INTEGRATION")], "newest first");
    assert_eq!(history[1]["sourceId"], "54321");
    assert!(history[0]["timestamp"].as_str().unwrap() >= history[1]["timestamp"].as_str().unwrap());
    let (_, single) = emu.get(&format!("/crm/v3/objects/deals/{id}?propertiesWithHistory=dealname")).await;
    assert_eq!(single["propertiesWithHistory"]["dealname"][0]["value"], "H");
    let too_many: Vec<Value> = (0..51).map(|i| json!({"id": i.to_string()})).collect();
    let (status, _) = emu
        .post("/crm/v3/objects/deals/batch/read", json!({"propertiesWithHistory": ["amount"], "inputs": too_many}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn only_subscribed_events_are_sent() {
    let (target, url) = Target::serve(vec![]).await;
    let subscriptions = vec!["contact.creation".parse().unwrap(), "contact.propertyChange:email".parse().unwrap()];
    let emu = start(EmulatorConfig { subscriptions, ..webhook_config(url) }).await;
    let (_, _, created) = emu
        .call(
            Method::POST,
            "/_emulator/objects/contacts",
            None,
            Some(json!({"properties": {"email": "s@example.com", "firstname": "S"}})),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/_emulator/objects/contacts/{id}");
    emu.call(Method::PATCH, &path, None, Some(json!({"properties": {"firstname": "Sam"}}))).await;
    emu.call(Method::PATCH, &path, None, Some(json!({"properties": {"email": "sam@example.com"}}))).await;
    emu.call(Method::DELETE, &path, None, None).await;
    emu.post("/crm/v3/objects/deals", json!({"properties": {"dealname": "unsubscribed"}})).await;
    wait_until_quiet(&emu).await;
    // Batches may arrive in any order: compare in the order the changes happened.
    let mut received: Vec<WebhookEvent> = target.received().iter().flat_map(|r| r.events.clone()).collect();
    received.sort_by_key(|e| e.event_id);
    let events: Vec<(String, Option<String>, Option<String>)> =
        received.into_iter().map(|e| (e.subscription_type, e.property_name, e.property_value)).collect();
    assert_eq!(
        events,
        vec![
            ("contact.creation".to_string(), None, None),
            ("contact.propertyChange".to_string(), Some("email".to_string()), Some("s@example.com".to_string())),
            ("contact.propertyChange".to_string(), Some("email".to_string()), Some("sam@example.com".to_string())),
        ]
    );
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn association_changes_are_sent_from_both_sides_when_subscribed() {
    let (target, url) = Target::serve(vec![]).await;
    let subscriptions =
        vec!["contact.associationChange".parse().unwrap(), "company.associationChange".parse().unwrap()];
    let emu = start(EmulatorConfig { subscriptions, ..webhook_config(url) }).await;
    let (_, contact) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "a@example.com"}})).await;
    let (_, company) = emu.post("/crm/v3/objects/companies", json!({"properties": {"name": "Acme"}})).await;
    let (contact, company) = (contact["id"].as_str().unwrap(), company["id"].as_str().unwrap());
    let path = format!("/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}");
    let (status, _, _) = emu.call(Method::PUT, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/crm/v4/objects/contacts/{contact}/associations/companies/{company}");
    let (status, _, _) = emu.call(Method::DELETE, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_until_quiet(&emu).await;
    let mut received: Vec<WebhookEvent> = target.received().iter().flat_map(|r| r.events.clone()).collect();
    received.sort_by_key(|e| e.event_id);
    let (contact, company): (u64, u64) = (contact.parse().unwrap(), company.parse().unwrap());
    type Change = (String, Option<String>, Option<u64>, Option<u64>, Option<bool>);
    let seen: Vec<Change> = received
        .into_iter()
        .map(|e| (e.subscription_type, e.association_type, e.from_object_id, e.to_object_id, e.association_removed))
        .collect();
    let change =
        |t: &str, a: &str, from, to, removed| (t.to_string(), Some(a.to_string()), Some(from), Some(to), Some(removed));
    assert_eq!(
        seen,
        vec![
            change("contact.associationChange", "CONTACT_TO_COMPANY", contact, company, false),
            change("company.associationChange", "COMPANY_TO_CONTACT", company, contact, false),
            change("contact.associationChange", "CONTACT_TO_COMPANY", contact, company, true),
            change("company.associationChange", "COMPANY_TO_CONTACT", company, contact, true),
        ]
    );
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn state_file_keeps_data_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("emulator-state.json");
    let config = || EmulatorConfig { state_file: Some(state.clone()), seed: 3, ..config_with_token() };

    let emu = start(config()).await;
    let (_, contact) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "kept@example.com"}})).await;
    let (status, schema) = emu
        .post(
            "/crm/v3/schemas",
            json!({
                "name": "cars",
                "labels": {"singular": "Car", "plural": "Cars"},
                "requiredProperties": ["vin"],
                "associatedObjects": ["CONTACT"],
                "properties": [{"name": "vin", "label": "VIN", "type": "string", "fieldType": "text"}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schema}");
    let car_type = schema["objectTypeId"].as_str().unwrap().to_string();
    let (_, car) = emu.post(&format!("/crm/v3/objects/{car_type}"), json!({"properties": {"vin": "V1"}})).await;
    let (contact_id, car_id) = (contact["id"].as_str().unwrap(), car["id"].as_str().unwrap());
    let path = format!("/crm/v4/objects/contacts/{contact_id}/associations/default/{car_type}/{car_id}");
    assert_eq!(emu.call(Method::PUT, &path, Some(TOKEN), None).await.0, StatusCode::OK);
    let hooks = format!("/webhooks/v3/54321/subscriptions?hapikey={}", emulator::DEFAULT_DEVELOPER_API_KEY);
    let subscription = json!({"eventType": "contact.propertyChange", "propertyName": "email", "active": true});
    let (status, _, created_subscription) = emu.call(Method::POST, &hooks, None, Some(subscription)).await;
    assert_eq!(status, StatusCode::CREATED);
    let templates = developer_path("/crm/v3/timeline/54321/event-templates");
    let template = json!({"name": "Visit", "objectType": "contacts", "tokens": []});
    let (_, _, template) = emu.call(Method::POST, &templates, None, Some(template)).await;
    let event = json!({"eventTemplateId": template["id"], "id": "visit-1", "objectId": contact_id, "tokens": {}});
    assert_eq!(emu.post("/crm/v3/timeline/events", event).await.0, StatusCode::CREATED);
    // Changes are saved while the emulator runs, not only when it stops.
    let saved = || std::fs::read_to_string(&state).unwrap_or_default();
    let subscription_id = created_subscription["id"].as_str().unwrap().to_string();
    let has_subscription = || Value::Bool(saved().contains(&subscription_id));
    wait_for_value(|| std::future::ready(has_subscription()), |v| v == &Value::Bool(true)).await;
    assert!(saved().contains("kept@example.com"));
    emu.emulator.shutdown().await;

    let emu = start(config()).await;
    let (status, contacts) = emu.get("/crm/v3/objects/contacts?limit=100&properties=email").await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<&str> =
        contacts["results"].as_array().unwrap().iter().map(|c| c["properties"]["email"].as_str().unwrap()).collect();
    assert_eq!(emails.len(), 4, "three seeded once, plus the one written: {emails:?}");
    assert!(emails.contains(&"kept@example.com"));
    let (status, car_back) = emu.get(&format!("/crm/v3/objects/p62515_cars/{car_id}?properties=vin")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(car_back["properties"]["vin"], "V1");
    let (_, associated) = emu.get(&format!("/crm/v4/objects/contacts/{contact_id}/associations/{car_type}")).await;
    assert_eq!(associated["results"][0]["toObjectId"].to_string(), car_id);
    let (_, _, subscriptions) = emu.call(Method::GET, &hooks, None, None).await;
    assert!(subscriptions["results"].as_array().unwrap().contains(&created_subscription));
    let (status, visit) =
        emu.get(&format!("/crm/v3/timeline/events/{}/visit-1", template["id"].as_str().unwrap())).await;
    assert_eq!((status, visit["objectId"].as_str()), (StatusCode::OK, Some(contact_id)));
    // Id counters carry on where they were.
    let (_, next) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "next@example.com"}})).await;
    assert!(next["id"].as_str().unwrap().parse::<u64>().unwrap() > contact_id.parse::<u64>().unwrap());
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn unreadable_state_file_stops_the_start_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, b"{ not json").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = EmulatorConfig { state_file: Some(state.clone()), ..config_with_token() };
    let error = RunningEmulator::start(config, listener).await.err().expect("refused");
    assert!(error.to_string().contains("not an emulator state file"), "{error}");
    assert_eq!(std::fs::read(&state).unwrap(), b"{ not json");
}

#[tokio::test]
async fn webhook_settings_set_the_target_and_the_concurrency() {
    let (target, url) = Target::serve_with(vec![], Duration::from_millis(200)).await;
    // No --webhook-url: the management API configures delivery.
    let emu = start(config_with_token()).await;
    let settings = format!("/webhooks/v3/54321/settings?hapikey={}", emulator::DEFAULT_DEVELOPER_API_KEY);
    let body = json!({"targetUrl": url, "throttling": {"maxConcurrentRequests": 5}});
    let (status, _, answer) = emu.call(Method::PUT, &settings, None, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for chunk in 0..6 {
        let inputs: Vec<Value> =
            (0..100).map(|i| json!({"properties": {"dealname": format!("S{chunk}-{i}")}})).collect();
        let (status, _) = emu.post("/crm/v3/objects/deals/batch/create", json!({ "inputs": inputs })).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    wait_until_quiet(&emu).await;
    let received = target.received();
    assert_eq!(received.iter().map(|r| r.events.len()).sum::<usize>(), 1200);
    let max = target.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=5).contains(&max), "{max} requests were in flight at once");
    emu.emulator.shutdown().await;
}

fn developer_path(path: &str) -> String {
    format!("{path}?hapikey={}", emulator::DEFAULT_DEVELOPER_API_KEY)
}

#[tokio::test]
async fn timeline_templates_and_events_follow_hubspots_contract() {
    let emu = start(config_with_token()).await;
    let templates = developer_path("/integrators/timeline/v3/54321/event-templates");
    let template = json!({
        "name": "Webinar registration",
        "objectType": "contacts",
        "headerTemplate": "Registered for {{webinarName}}",
        "detailTemplate": "Seats: {{seats}}, level {{level}}, via {{extraData.channel}}",
        "tokens": [
            {"name": "webinarName", "label": "Webinar", "type": "string", "objectPropertyName": "lastname"},
            {"name": "seats", "label": "Seats", "type": "number"},
            {"name": "level", "label": "Level", "type": "enumeration",
             "options": [{"label": "Beginner", "value": "beginner"}, {"label": "Expert", "value": "expert"}]},
        ],
    });
    let (status, _, created) = emu.call(Method::POST, &templates, None, Some(template.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let template_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["objectType"], "contacts");
    assert_eq!(created["tokens"][2]["options"][1]["value"], "expert");
    // The developer API key and the app id guard templates; HubSpot's reference path serves them too.
    let (status, _, _) =
        emu.call(Method::GET, "/crm/v3/timeline/54321/event-templates?hapikey=wrong", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) =
        emu.call(Method::GET, &developer_path("/crm/v3/timeline/999/event-templates"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, listed) =
        emu.call(Method::GET, &developer_path("/crm/v3/timeline/54321/event-templates"), None, None).await;
    assert_eq!(listed["results"][0]["id"], template_id.as_str());
    let bad_pair =
        json!({"name": "x", "objectType": "contacts", "tokens": [{"name": "t", "label": "T", "type": "enumeration"}]});
    assert_eq!(emu.call(Method::POST, &templates, None, Some(bad_pair)).await.0, StatusCode::BAD_REQUEST);

    // An event for an email nobody has creates the contact, and stamps lastname.
    let event = json!({
        "eventTemplateId": template_id, "id": "reg-1", "email": "New.Person@example.com",
        "tokens": {"webinarName": "Rust 101", "seats": 2, "level": "expert"},
        "extraData": {"channel": "ads"}, "timestamp": "2026-11-30T10:00:00.000Z",
    });
    let (status, answer) = emu.post("/integrators/timeline/v3/events", event.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!((answer["id"].as_str(), answer["objectType"].as_str()), (Some("reg-1"), Some("contacts")));
    assert_eq!(answer["timestamp"], "2026-11-30T10:00:00.000Z");
    let contact_id = answer["objectId"].as_str().unwrap().to_string();
    let (_, contact) = emu.get(&format!("/crm/v3/objects/contacts/{contact_id}?properties=email,lastname")).await;
    assert_eq!(contact["properties"]["email"], "new.person@example.com");
    assert_eq!(contact["properties"]["lastname"], "Rust 101");
    // Events are immutable: the same id again is a conflict; bad tokens are refused.
    assert_eq!(emu.post("/crm/v3/timeline/events", event.clone()).await.0, StatusCode::CONFLICT);
    let wrong_level = json!({"eventTemplateId": template_id, "objectId": contact_id, "tokens": {"level": "guru"}});
    let (status, refused) = emu.post("/crm/v3/timeline/events", wrong_level).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["message"].as_str().unwrap().contains("beginner"), "{refused}");
    let unknown_token = json!({"eventTemplateId": template_id, "objectId": contact_id, "tokens": {"color": "red"}});
    assert_eq!(emu.post("/crm/v3/timeline/events", unknown_token).await.0, StatusCode::BAD_REQUEST);
    // A value the stamped property refuses fails the event before a contact is made for it.
    let staged = json!({"name": "Stage", "objectType": "contacts",
                        "tokens": [{"name": "stage", "label": "Stage", "type": "string", "objectPropertyName": "lifecyclestage"}]});
    let (_, _, staged) = emu.call(Method::POST, &templates, None, Some(staged)).await;
    let refused =
        json!({"eventTemplateId": staged["id"], "email": "nobody@example.com", "tokens": {"stage": "no-such-stage"}});
    let (status, answer) = emu.post("/crm/v3/timeline/events", refused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["message"].as_str().unwrap().contains("lifecyclestage"), "{answer}");
    let (status, _) = emu.get("/crm/v3/objects/contacts/nobody@example.com?idProperty=email").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no contact was created for the refused event");

    // A batch creates what it can and names what it could not.
    let batch = json!({"inputs": [
        {"eventTemplateId": template_id, "id": "reg-2", "objectId": contact_id, "tokens": {"seats": "3"}},
        {"eventTemplateId": template_id, "id": "reg-3", "objectId": "999999", "tokens": {}},
    ]});
    let (status, answer) = emu.post("/integrators/timeline/v3/events/batch/create", batch).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{answer}");
    assert_eq!((answer["numErrors"].as_u64(), answer["results"][0]["id"].as_str()), (Some(1), Some("reg-2")));

    let (status, read) = emu.get(&format!("/integrators/timeline/v3/events/{template_id}/reg-1")).await;
    assert_eq!((status, read["tokens"]["seats"].clone()), (StatusCode::OK, json!(2)));
    let (_, detail) = emu.get(&format!("/crm/v3/timeline/events/{template_id}/reg-1/detail")).await;
    assert_eq!(detail["details"], "Seats: 2, level expert, via ads");
    let rendered = emu
        .http
        .get(format!("{}/crm/v3/timeline/events/{template_id}/reg-1/render", emu.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(rendered.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(rendered.text().await.unwrap(), "Registered for Rust 101");

    // Deleting the template removes its events.
    let one = developer_path(&format!("/integrators/timeline/v3/54321/event-templates/{template_id}"));
    assert_eq!(emu.call(Method::DELETE, &one, None, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(emu.get(&format!("/integrators/timeline/v3/events/{template_id}/reg-1")).await.0, StatusCode::NOT_FOUND);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn timeline_events_need_the_timeline_or_the_object_scope() {
    let config = EmulatorConfig {
        tokens: vec![
            TokenGrant { token: TOKEN.into(), scopes: None },
            TokenGrant { token: "deals-only".into(), scopes: Some(vec!["crm.objects.deals.write".into()]) },
        ],
        ..Default::default()
    };
    let emu = start(config).await;
    let templates = developer_path("/crm/v3/timeline/54321/event-templates");
    let template = json!({"name": "Call", "objectType": "contacts", "tokens": []});
    let (_, _, created) = emu.call(Method::POST, &templates, None, Some(template)).await;
    let (_, contact) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "a@example.com"}})).await;
    let event = json!({"eventTemplateId": created["id"], "objectId": contact["id"], "tokens": {}});
    let (status, _, refused) = emu.call(Method::POST, "/crm/v3/timeline/events", Some("deals-only"), Some(event)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["category"], "MISSING_SCOPES");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn app_events_follow_their_event_type() {
    let emu = start(config_with_token()).await;
    let definition = json!({
        "uid": "customer_login", "type": "app-event",
        "config": {"name": "Customer login", "objectType": "contacts",
                   "properties": [{"name": "channel", "label": "Channel", "type": "enumeration",
                                   "options": [{"label": "Mobile", "value": "mobile"}]}]},
    });
    let (status, _, defined) = emu.call(Method::POST, "/_emulator/app-event-types", None, Some(definition)).await;
    assert_eq!(status, StatusCode::CREATED, "{defined}");
    let name = defined["fullyQualifiedName"].as_str().unwrap().to_string();
    assert_eq!(name, "ae62515_customer_login");
    let (_, contact) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "l@example.com"}})).await;
    for prefix in ["/integrators/timeline/v4", "/integrators/timeline/2026-03"] {
        let id = format!("login{}", prefix.len());
        let event =
            json!({"eventTypeName": name, "id": id, "objectId": contact["id"], "properties": {"channel": "mobile"}});
        let (status, sent) = emu.post(&format!("{prefix}/events"), event.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{sent}");
        assert_eq!(emu.post(&format!("{prefix}/events"), event).await.0, StatusCode::CONFLICT);
        let (status, read) = emu.get(&format!("{prefix}/events/{name}/{id}")).await;
        assert_eq!((status, read["properties"]["channel"].as_str()), (StatusCode::OK, Some("mobile")));
    }
    let batch = json!({"inputs": [
        {"eventTypeName": name, "email": "l@example.com", "properties": {"channel": "mobile"}},
        {"eventTypeName": name, "email": "l@example.com", "properties": {"channel": "desktop"}},
        {"eventTypeName": "ae62515_nope", "email": "l@example.com", "properties": {}},
    ]});
    let (status, answer) = emu.post("/integrators/timeline/v4/events/batch/create", batch).await;
    assert_eq!((status, answer["numErrors"].as_u64()), (StatusCode::MULTI_STATUS, Some(2)), "{answer}");
    assert_eq!(answer["results"][0]["objectId"], contact["id"]);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn a_records_timeline_is_readable_through_the_admin_api() {
    let emu = start(config_with_token()).await;
    let definition = json!({
        "uid": "feature_used", "type": "app-event",
        "config": {"name": "Feature used", "objectType": "CONTACT", "headerTemplate": "Used {{feature}}",
                   "properties": [{"name": "feature", "label": "Feature", "type": "string"}]},
    });
    assert_eq!(
        emu.call(Method::POST, "/_emulator/app-event-types", None, Some(definition)).await.0,
        StatusCode::CREATED
    );
    let templates = developer_path("/integrators/timeline/v3/54321/event-templates");
    let template = json!({"name": "Invoice paid", "objectType": "contacts", "detailTemplate": "Paid {{amount}}",
                          "tokens": [{"name": "amount", "label": "Amount", "type": "number"}]});
    let (_, _, template) = emu.call(Method::POST, &templates, None, Some(template)).await;
    let (_, contact) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "t@example.com"}})).await;
    let (_, other) = emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "o@example.com"}})).await;

    // A batch whose inputs are all valid answers 201; a duplicate id within a later batch is
    // that input's 409 in a 207.
    let app_event = |id: &str, contact: &Value, at: &str| {
        json!({"eventTypeName": "ae62515_feature_used", "id": id, "objectId": contact["id"],
               "properties": {"feature": "export"}, "timestamp": at})
    };
    let batch = json!({"inputs": [app_event("use-1", &contact, "2026-12-01T10:00:00Z"),
                                  app_event("use-2", &other, "2026-12-01T11:00:00Z")]});
    let (status, answer) = emu.post("/integrators/timeline/v4/events/batch/create", batch).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let batch = json!({"inputs": [app_event("use-1", &contact, "2026-12-01T10:00:00Z")]});
    let (status, answer) = emu.post("/integrators/timeline/v4/events/batch/create", batch).await;
    assert_eq!((status, answer["errors"][0]["category"].as_str()), (StatusCode::MULTI_STATUS, Some("CONFLICT")));
    let event = json!({"eventTemplateId": template["id"], "id": "inv-1", "objectId": contact["id"],
                       "tokens": {"amount": 120}, "timestamp": "2026-12-02T09:00:00Z"});
    assert_eq!(emu.post("/integrators/timeline/v3/events", event).await.0, StatusCode::CREATED);

    let (status, _, timeline) = emu
        .call(Method::GET, &format!("/_emulator/timeline/contacts/{}", contact["id"].as_str().unwrap()), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let entries = timeline["results"].as_array().unwrap();
    let summary: Vec<_> = entries.iter().map(|e| (e["id"].as_str(), e["source"].as_str())).collect();
    assert_eq!(
        summary,
        [(Some("inv-1"), Some("timelineEvent")), (Some("use-1"), Some("appEvent"))],
        "newest first, this contact's only"
    );
    assert_eq!((entries[0]["detail"].as_str(), &entries[0]["header"]), (Some("Paid 120"), &Value::Null));
    assert_eq!(entries[1]["header"], "Used export");
    let (status, _, _) = emu.call(Method::GET, "/_emulator/timeline/contacts/999999", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    emu.emulator.shutdown().await;
}

const FIXTURE: &str = r#"
propertyGroups:
  contacts: [{name: loyalty, label: Loyalty}]
properties:
  contacts:
    - {name: tier, label: Tier, type: enumeration, fieldType: select, groupName: loyalty,
       options: [{label: Gold, value: gold}, {label: Silver, value: silver}]}
objects:
  contacts:
    - {ref: alice, properties: {email: alice@example.com, tier: gold}}
  companies:
    - {ref: acme, properties: {name: Acme}}
associations:
  - {from: contacts/alice, to: companies/acme}
"#;

#[tokio::test]
async fn fixtures_load_quietly_whole_or_not_at_all_and_reset_empties_the_account() {
    let (target, url) = Target::serve_with(vec![], Duration::ZERO).await;
    let emu = start(EmulatorConfig { webhook_url: Some(url), ..config_with_token() }).await;
    let post_fixture = |body: &'static str| {
        emu.http
            .post(format!("{}/_emulator/fixtures", emu.base))
            .header("content-type", "application/yaml")
            .body(body)
            .send()
    };
    let loaded = post_fixture(FIXTURE).await.unwrap();
    assert_eq!(loaded.status(), StatusCode::CREATED);
    let summary: Value = loaded.json().await.unwrap();
    assert_eq!(summary["objects"]["contacts"][0]["ref"], "alice");
    let alice = summary["objects"]["contacts"][0]["id"].as_str().unwrap().to_string();
    let (_, read) = emu.get(&format!("/crm/v3/objects/contacts/{alice}?properties=tier")).await;
    assert_eq!(read["properties"]["tier"], "gold");
    let (_, linked) = emu.get(&format!("/crm/v4/objects/contacts/{alice}/associations/companies")).await;
    assert_eq!(linked["results"].as_array().unwrap().len(), 1, "{linked}");

    // The second load refuses (alice exists) and leaves no second company behind.
    let refused = post_fixture(&FIXTURE[FIXTURE.find("objects:").unwrap()..]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let (_, companies) = emu.get("/crm/v3/objects/companies").await;
    assert_eq!(companies["results"].as_array().unwrap().len(), 1);
    // A fixture whose last entry fails leaves none of its properties behind either.
    let refused = post_fixture(
        "properties: {companies: [{name: size, label: Size, type: number, fieldType: number, groupName: companyinformation}]}\n\
         associations: [{from: contacts/nobody, to: companies/acme}]",
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let message = refused.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("contacts/nobody"), "{message}");
    assert_eq!(emu.get("/crm/v3/properties/companies/size").await.0, StatusCode::NOT_FOUND);
    let unknown = post_fixture("contacts: []").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let status = wait_until_quiet(&emu).await;
    assert_eq!(status["delivered"], 0, "fixtures send no webhooks: {status}");
    assert!(target.received().is_empty());

    let (status, _, _) = emu.call(Method::POST, "/_emulator/reset", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = emu.get(&format!("/crm/v3/objects/contacts/{alice}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(emu.get("/crm/v3/properties/contacts/tier").await.0, StatusCode::NOT_FOUND);
    let (_, _, log) = emu.call(Method::GET, "/_emulator/requests", None, None).await;
    assert_eq!(log.as_array().unwrap().len(), 2, "only the two calls after the reset: {log}");
    emu.emulator.shutdown().await;

    // --fixtures loads at start; a broken fixture stops the start.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fixture.yaml");
    std::fs::write(&file, FIXTURE).unwrap();
    let emu = start(EmulatorConfig { fixtures: vec![file.clone()], ..config_with_token() }).await;
    let (_, found) = emu.get("/crm/v3/objects/contacts/alice@example.com?idProperty=email&properties=tier").await;
    assert_eq!(found["properties"]["tier"], "gold");
    emu.emulator.shutdown().await;
    std::fs::write(&file, "objects: {contacts: [{properties: {tier: bronze}}]}").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = RunningEmulator::start(EmulatorConfig { fixtures: vec![file], ..config_with_token() }, listener)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("fixture.yaml"), "{error}");
}

#[tokio::test]
async fn search_sees_writes_only_after_the_indexing_lag() {
    let emu = start(EmulatorConfig { seed: 3, ..config_with_token() }).await;
    let (_, _, lag) = emu.call(Method::PUT, "/_emulator/search", None, Some(json!({"indexingLagMs": 600_000}))).await;
    assert_eq!(lag["indexingLagMs"], 600_000);
    let (_, listed) = emu.get("/crm/v3/objects/contacts?properties=firstname").await;
    let seeded = listed["results"][0].clone();
    let (id, old_name) = (seeded["id"].as_str().unwrap(), seeded["properties"]["firstname"].clone());
    emu.call(
        Method::PATCH,
        &format!("/crm/v3/objects/contacts/{id}"),
        Some(TOKEN),
        Some(json!({"properties": {"firstname": "Renamed"}})),
    )
    .await;
    emu.post("/crm/v3/objects/contacts", json!({"properties": {"email": "fresh@example.com"}})).await;
    let search = |value: Value| {
        json!({"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "EQ", "value": value}]}],
               "properties": ["firstname"]})
    };
    // The index still holds the old name and knows nothing of the new contact.
    let (_, by_new) = emu.post("/crm/v3/objects/contacts/search", search(json!("Renamed"))).await;
    assert_eq!(by_new["total"], 0, "{by_new}");
    let (_, by_old) = emu.post("/crm/v3/objects/contacts/search", search(old_name.clone())).await;
    assert_eq!(by_old["results"][0]["properties"]["firstname"], old_name);
    let (_, all) = emu.post("/crm/v3/objects/contacts/search", json!({})).await;
    assert_eq!(all["total"], 3);
    // Reads by id are never lagged.
    let (_, read) = emu.get(&format!("/crm/v3/objects/contacts/{id}?properties=firstname")).await;
    assert_eq!(read["properties"]["firstname"], "Renamed");
    emu.call(Method::PUT, "/_emulator/search", None, Some(json!({"indexingLagMs": 0}))).await;
    let (_, by_new) = emu.post("/crm/v3/objects/contacts/search", search(json!("Renamed"))).await;
    assert_eq!(by_new["total"], 1);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_answers_nothing_and_is_counted() {
    let emu = start(config_with_token()).await;
    let plan = json!({"dropConnection": true, "count": 1, "pathPrefix": "/crm/v3/objects"});
    emu.call(Method::PUT, "/_emulator/faults", None, Some(plan)).await;
    let dropped = emu.http.get(format!("{}/crm/v3/objects/contacts", emu.base)).bearer_auth(TOKEN).send().await;
    let error = dropped.expect_err("no response at all");
    assert!(error.is_request() || error.is_connect() || error.is_body(), "{error:?}");
    assert_eq!(emu.get("/crm/v3/objects/contacts").await.0, StatusCode::OK);
    let (_, _, counts) = emu.call(Method::GET, "/_emulator/requests/counts", None, None).await;
    assert_eq!(counts["injectedFaults"], 1);
    assert_eq!(
        counts["calls"][0],
        json!({"method": "GET", "path": "/crm/v3/objects/contacts", "status": 0, "count": 1})
    );
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn date_versioned_webhook_and_oauth_paths_answer_like_v3() {
    let emu = start(config_with_token()).await;
    let settings = developer_path("/webhooks/2026-03/54321/settings");
    let body = json!({"targetUrl": "https://example.com/hooks", "throttling": {"maxConcurrentRequests": 7}});
    assert_eq!(emu.call(Method::PUT, &settings, None, Some(body)).await.0, StatusCode::OK);
    let (_, _, v3) = emu.call(Method::GET, &developer_path("/webhooks/v3/54321/settings"), None, None).await;
    assert_eq!(v3["throttling"]["maxConcurrentRequests"], 7);
    let refused = emu
        .http
        .post(format!("{}/oauth/2026-03/token", emu.base))
        .form(&[("grant_type", "refresh_token"), ("client_id", "x"), ("client_secret", "y"), ("refresh_token", "z")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["status"], "BAD_CLIENT_ID");
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn a_property_in_use_cannot_be_archived() {
    let emu = start(config_with_token()).await;
    for name in ["tier", "visits"] {
        let body = json!({"name": name, "label": name, "type": "string", "fieldType": "text", "groupName": "contactinformation"});
        assert_eq!(emu.post("/crm/v3/properties/contacts", body).await.0, StatusCode::CREATED);
    }
    let uses = json!({"usedBy": ["workflow Onboarding"]});
    let (status, _, _) = emu.call(Method::PUT, "/_emulator/properties/contacts/tier/used-by", None, Some(uses)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, refused) = emu.call(Method::DELETE, "/crm/v3/properties/contacts/tier", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["message"].as_str().unwrap().contains("workflow Onboarding"), "{refused}");
    // A batch archive with one property in use archives none.
    let batch = json!({"inputs": [{"name": "visits"}, {"name": "tier"}]});
    let (status, _, _) =
        emu.call(Method::POST, "/crm/v3/properties/contacts/batch/archive", Some(TOKEN), Some(batch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(emu.get("/crm/v3/properties/contacts/visits").await.0, StatusCode::OK);

    // A timeline token that writes the property uses it too.
    let template = json!({"name": "Visit", "objectType": "contacts",
                          "tokens": [{"name": "count", "label": "Count", "type": "string", "objectPropertyName": "visits"}]});
    let (status, _, _) =
        emu.call(Method::POST, &developer_path("/crm/v3/timeline/54321/event-templates"), None, Some(template)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, refused) = emu.call(Method::DELETE, "/crm/v3/properties/contacts/visits", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["message"].as_str().unwrap().contains("timeline event template"), "{refused}");

    // Once nothing uses it, it goes.
    emu.call(Method::PUT, "/_emulator/properties/contacts/tier/used-by", None, Some(json!({"usedBy": []}))).await;
    let (status, _, _) = emu.call(Method::DELETE, "/crm/v3/properties/contacts/tier", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    emu.emulator.shutdown().await;
}

#[tokio::test]
async fn standing_faults_from_flags_hit_calls_until_changed() {
    use emulator::FaultPlan;
    let faults = vec![FaultPlan::server_errors(1.0, 502), FaultPlan::latency(Duration::from_millis(50))];
    let emu = start(EmulatorConfig { faults, ..config_with_token() }).await;
    let (status, body) = emu.get("/crm/v3/objects/contacts").await;
    assert_eq!((status, body["category"].as_str()), (StatusCode::BAD_GATEWAY, Some("BAD_GATEWAY")));
    let (_, _, standing) = emu.call(Method::GET, "/_emulator/faults/standing", None, None).await;
    assert_eq!(standing[0], json!({"status": 502, "rate": 1.0, "delayMs": 0}));
    let storm = json!([{"status": 429, "periodMs": 600_000, "activeMs": 600_000}]);
    let (status, _, _) = emu.call(Method::PUT, "/_emulator/faults/standing", None, Some(storm)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = emu.get("/crm/v3/objects/contacts").await;
    assert_eq!((status, body["policyName"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("TEN_SECONDLY_ROLLING")));
    let bad = json!([{"status": 502, "rate": 2.0}]);
    assert_eq!(emu.call(Method::PUT, "/_emulator/faults/standing", None, Some(bad)).await.0, StatusCode::BAD_REQUEST);
    // A reset brings back the flags' faults; clearing them serves calls again.
    emu.call(Method::POST, "/_emulator/reset", None, None).await;
    assert_eq!(emu.get("/crm/v3/objects/contacts").await.0, StatusCode::BAD_GATEWAY);
    emu.call(Method::DELETE, "/_emulator/faults/standing", None, None).await;
    assert_eq!(emu.get("/crm/v3/objects/contacts").await.0, StatusCode::OK);
    let (_, _, counts) = emu.call(Method::GET, "/_emulator/requests/counts", None, None).await;
    assert_eq!(counts["injectedFaults"], 1, "counted since the reset: {counts}");
    emu.emulator.shutdown().await;
}
