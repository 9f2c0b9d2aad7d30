//! The client's retry, rate-limit and error behaviour against scripted HTTP answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hubspot::client::RetryPolicy;
use hubspot::{ClientSettings, Error, HubSpotClient, Tier};

/// A request as the server saw it: path and query, and the Authorization header.
type SeenRequest = (String, Option<String>);
/// Status, extra headers, body.
type ScriptedResponse = (u16, Vec<(&'static str, String)>, &'static str);

/// An HTTP server that answers each request with the next scripted response and records what it saw.
struct Scripted {
    base_url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

async fn scripted(responses: Vec<ScriptedResponse>) -> Scripted {
    let queue = Arc::new(Mutex::new(responses.into_iter()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_handler = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let queue = queue.clone();
        let seen = seen_in_handler.clone();
        async move {
            let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
            seen.lock().unwrap().push((uri.to_string(), auth));
            let (status, headers, body) = queue.lock().unwrap().next().expect("more requests than scripted");
            let mut response: Response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response.headers_mut().insert("content-type", "application/json".parse().unwrap());
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Scripted { base_url, seen }
}

fn client(base_url: &str, api_version: &str) -> HubSpotClient {
    HubSpotClient::new(ClientSettings {
        base_url: base_url.to_string(),
        api_version: api_version.to_string(),
        access_token: "pat-na1-secret".into(),
        tier: Tier::Professional,
    })
    .with_retry(RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_attempts: 3,
        ..RetryPolicy::default()
    })
}

const PROPERTIES: &str = r#"{"results":[{"name":"email","label":"Email","type":"string","fieldType":"text","groupName":"contactinformation","hubspotDefined":true}]}"#;
const SERVER_ERROR: &str =
    r#"{"status":"error","message":"internal","correlationId":"c-500","category":"INTERNAL_ERROR"}"#;

#[tokio::test]
async fn retries_server_errors_then_succeeds() {
    let server =
        scripted(vec![(503, vec![], SERVER_ERROR), (502, vec![], SERVER_ERROR), (200, vec![], PROPERTIES)]).await;
    let props = client(&server.base_url, "v3").list_properties("contacts").await.unwrap();
    assert_eq!(props[0].name, "email");
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(uri, auth)| uri == "/crm/v3/properties/contacts" && auth.as_deref() == Some("Bearer pat-na1-secret")));
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_hubspots_details() {
    let server = scripted(vec![(500, vec![], SERVER_ERROR); 3]).await;
    let err = client(&server.base_url, "v3").list_properties("contacts").await.unwrap_err();
    let Error::Api(api) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!((api.status, api.category.as_str(), api.correlation_id.as_str()), (500, "INTERNAL_ERROR", "c-500"));
    assert_eq!(server.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn waits_out_ten_secondly_limit_and_retries() {
    let limited = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c-429","policyName":"TEN_SECONDLY_ROLLING"}"#;
    let server = scripted(vec![(429, vec![("retry-after", "0.05".into())], limited), (200, vec![], PROPERTIES)]).await;
    let c = client(&server.base_url, "v3");
    assert_eq!(c.list_properties("contacts").await.unwrap().len(), 1);
    assert_eq!(server.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn daily_limit_is_terminal() {
    let daily = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","correlationId":"c-day","policyName":"DAILY"}"#;
    let server = scripted(vec![(429, vec![], daily)]).await;
    let err = client(&server.base_url, "v3").list_properties("contacts").await.unwrap_err();
    assert!(matches!(&err, Error::DailyLimitExhausted { correlation_id } if correlation_id == "c-day"), "{err:?}");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_scope_is_reported_not_retried() {
    let forbidden = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","correlationId":"c-403","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredScopes":["crm.objects.contacts.read"]}}],"category":"MISSING_SCOPES"}"#;
    let server = scripted(vec![(403, vec![], forbidden)]).await;
    let err =
        client(&server.base_url, "v3").batch_read("contacts", &["email".into()], &["1".into()]).await.unwrap_err();
    assert_eq!(err.missing_scopes(), Some(&["crm.objects.contacts.read".to_string()][..]));
    assert!(err.to_string().contains("c-403"));
    assert!(!err.to_string().contains("pat-na1-secret"));
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn rate_limit_headers_resize_the_budget() {
    let headers = vec![
        ("x-hubspot-ratelimit-max", "7".to_string()),
        ("x-hubspot-ratelimit-remaining", "6".to_string()),
        ("x-hubspot-ratelimit-interval-milliseconds", "10000".to_string()),
    ];
    let server = scripted(vec![(200, headers, PROPERTIES)]).await;
    let c = client(&server.base_url, "v3");
    c.list_properties("contacts").await.unwrap();
    assert_eq!(c.budget().max_per_interval(), 7);
}

#[tokio::test]
async fn date_versioned_paths() {
    let page = r#"{"results":[{"id":"1","properties":{"email":"a@b.c"},"createdAt":"2026-01-01T00:00:00.000Z","updatedAt":"2026-01-01T00:00:00.000Z","archived":false}],"paging":{"next":{"after":"1"}}}"#;
    let server = scripted(vec![(200, vec![], page), (200, vec![], PROPERTIES)]).await;
    let c = client(&server.base_url, "2026-03");
    let first = c.list_objects_page("contacts", &["email".into()], None, 100).await.unwrap();
    assert_eq!(first.next_after(), Some("1"));
    c.list_properties("contacts").await.unwrap();
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/crm/objects/2026-03/contacts?limit=100&archived=false&properties=email");
    assert_eq!(seen[1].0, "/crm/properties/2026-03/contacts");
}

#[test]
fn settings_debug_hides_the_token() {
    let settings = ClientSettings {
        base_url: "http://x".into(),
        api_version: "v3".into(),
        access_token: "pat-na1-secret".into(),
        tier: Tier::Free,
    };
    assert!(!format!("{settings:?}").contains("secret"));
}
