//! OAuth against the real emulator over HTTP: the token endpoints, expiry on the emulator's
//! clock, and the client's token source (refresh ahead of expiry, one refresh in flight, one
//! renewal on `EXPIRED_AUTHENTICATION`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestEmulator, WAIT};
use emulator::EmulatorConfig;
use hubspot::auth::ManualClock;
use hubspot::{Error, UpsertInput};
use serde_json::{Value, json};

const CLIENT_ID: &str = "client-1";
const CLIENT_SECRET: &str = "client-secret-1";
const REFRESH_TOKEN: &str = "na1-refresh-token-1";
const READER_ID: &str = "reader";
const READER_SECRET: &str = "reader-secret";
const READER_REFRESH: &str = "na1-reader-refresh";
const TOKEN_PATH: &str = "/oauth/v3/token";

async fn emulator() -> TestEmulator {
    TestEmulator::start(EmulatorConfig {
        oauth_apps: vec![
            format!("{CLIENT_ID}:{CLIENT_SECRET}").parse().unwrap(),
            format!("{READER_ID}:{READER_SECRET}=crm.objects.contacts.read").parse().unwrap(),
        ],
        refresh_tokens: vec![
            format!("{REFRESH_TOKEN}={CLIENT_ID}").parse().unwrap(),
            format!("{READER_REFRESH}={READER_ID}").parse().unwrap(),
        ],
        ..Default::default()
    })
    .await
}

/// Runs `f` with the bound every wait in these tests has.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

fn statuses(requests: &[Value]) -> Vec<(String, u64)> {
    requests.iter().map(|r| (r["path"].as_str().unwrap().to_string(), r["status"].as_u64().unwrap())).collect()
}

async fn token_by_form(emu: &TestEmulator, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    emu.http.post(emu.url(path)).form(form).send().await.unwrap()
}

#[tokio::test]
async fn refresh_token_gets_an_access_token_that_every_route_accepts() {
    let emu = emulator().await;
    emu.create_contact(json!({ "email": "ada@example.com" })).await;
    let client = emu.oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN);

    let page = bounded(client.list_objects_page("contacts", &["email".into()], None, 10)).await.unwrap();
    assert_eq!(page.results.len(), 1);
    let info = bounded(client.introspect_token()).await.unwrap();
    // One private-app token (the default) comes first, so the OAuth app has the next id.
    assert_eq!((info.hub_id, info.app_id), (62515, 54322));
    assert!(info.scopes.contains(&"crm.objects.contacts.write".to_string()));

    let log = emu.requests().await;
    assert_eq!(
        statuses(&log),
        vec![
            (TOKEN_PATH.to_string(), 200),
            ("/crm/v3/objects/contacts".to_string(), 200),
            ("/oauth/v1/access-tokens/[redacted]".to_string(), 200),
        ],
        "one token request serves both calls"
    );
    assert_eq!(log[0]["body"]["grant_type"], "refresh_token");
    assert_eq!(log[0]["body"]["client_id"], CLIENT_ID);
    let logged = serde_json::to_string(&log).unwrap();
    assert!(!logged.contains(CLIENT_SECRET) && !logged.contains(REFRESH_TOKEN), "{logged}");
}

#[tokio::test]
async fn access_token_is_renewed_ahead_of_expiry() {
    let emu = emulator().await;
    let clock = Arc::new(ManualClock::default());
    let client = emu.oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN).with_token_clock(clock.clone()).await;

    bounded(client.list_properties("contacts")).await.unwrap();
    // 26 of the 30 minutes pass on both sides: 4 minutes remain, inside the 5-minute margin.
    emu.advance_clock(26 * 60).await;
    clock.advance(Duration::from_secs(26 * 60));
    bounded(client.list_properties("contacts")).await.unwrap();

    let log = statuses(&emu.requests().await);
    let contacts = "/crm/v3/properties/contacts".to_string();
    assert_eq!(
        log,
        vec![(TOKEN_PATH.into(), 200), (contacts.clone(), 200), (TOKEN_PATH.into(), 200), (contacts, 200)],
        "the token is replaced before HubSpot refuses it"
    );
}

#[tokio::test]
async fn token_hubspot_calls_expired_is_renewed_once_and_the_call_retried() {
    let emu = emulator().await;
    // The client's clock stands still: it believes its token is fresh when HubSpot does not.
    let client = emu
        .oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .with_token_clock(Arc::new(ManualClock::default()))
        .await;
    bounded(client.list_properties("contacts")).await.unwrap();
    emu.advance_clock(31 * 60).await;
    bounded(client.list_properties("contacts")).await.unwrap();

    let contacts = "/crm/v3/properties/contacts".to_string();
    assert_eq!(
        statuses(&emu.requests().await),
        vec![
            (TOKEN_PATH.into(), 200),
            (contacts.clone(), 200),
            (contacts.clone(), 401),
            (TOKEN_PATH.into(), 200),
            (contacts, 200),
        ]
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let emu = emulator().await;
    let client = emu.oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN);
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move { client.list_objects_page("contacts", &[], None, 1).await }
    });
    let results = bounded(futures::future::join_all(calls)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(emu.requests_to(TOKEN_PATH).await.len(), 1);
    assert_eq!(emu.requests_to("/crm/v3/objects/contacts").await.len(), 20);
}

#[tokio::test]
async fn expired_access_token_gets_hubspots_401() {
    let emu = emulator().await;
    let answer = token_by_form(
        &emu,
        "/oauth/v1/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
        ],
    )
    .await;
    assert_eq!(answer.status(), 200);
    let tokens: Value = answer.json().await.unwrap();
    assert_eq!((tokens["token_type"].as_str(), tokens["expires_in"].as_u64()), (Some("bearer"), Some(1800)));
    assert_eq!(tokens["refresh_token"], REFRESH_TOKEN);
    assert_eq!(tokens["hub_id"], 62515);
    let access = tokens["access_token"].as_str().unwrap();

    let fresh = emu.http.get(emu.url("/crm/v3/objects/contacts")).bearer_auth(access).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    // A public app: 110 per ten seconds, and no daily limit headers.
    assert_eq!(fresh.headers()["x-hubspot-ratelimit-max"], "110");
    assert!(fresh.headers().get("x-hubspot-ratelimit-daily").is_none());

    emu.advance_clock(1800 + 5 * 60).await;
    let expired = emu.http.get(emu.url("/crm/v3/objects/contacts")).bearer_auth(access).send().await.unwrap();
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["category"].as_str()), (Some("error"), Some("EXPIRED_AUTHENTICATION")));
    assert!(body["message"].as_str().unwrap().contains("expired 5 minute(s) ago"), "{body}");
    assert_eq!(body["correlationId"].as_str().unwrap().len(), 36);
    let info = emu.http.get(emu.url(&format!("/oauth/v1/access-tokens/{access}"))).send().await.unwrap();
    assert_eq!(info.status(), 404, "an expired token has no metadata");
}

#[tokio::test]
async fn bad_refresh_token_is_refused_in_hubspots_shape() {
    let emu = emulator().await;
    let answer = token_by_form(
        &emu,
        TOKEN_PATH,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", "na1-unknown"),
        ],
    )
    .await;
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(body["message"], "missing or invalid refresh token");
    assert!(body["correlationId"].is_string());

    // Another app's refresh token is as bad as an unknown one.
    let client = emu.oauth_client(CLIENT_ID, CLIENT_SECRET, READER_REFRESH);
    let error = bounded(client.list_properties("contacts")).await.unwrap_err();
    match &error {
        Error::Api(e) => assert_eq!((e.status, e.category.as_str()), (400, "BAD_REFRESH_TOKEN")),
        other => panic!("expected HubSpot's refusal, got {other:?}"),
    }
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(READER_REFRESH) && !shown.contains(CLIENT_SECRET), "{shown}");
    assert!(emu.requests_to("/crm/v3/properties/contacts").await.is_empty(), "no API call without a token");

    let wrong_secret = emu.oauth_client(CLIENT_ID, "not-the-secret", REFRESH_TOKEN);
    let error = bounded(wrong_secret.list_properties("contacts")).await.unwrap_err();
    assert!(matches!(&error, Error::Api(e) if e.category == "BAD_CLIENT_SECRET"), "{error:?}");
}

#[tokio::test]
async fn oauth_app_scopes_are_enforced() {
    let emu = emulator().await;
    let reader = emu.oauth_client(READER_ID, READER_SECRET, READER_REFRESH);
    bounded(reader.list_objects_page("contacts", &[], None, 10)).await.unwrap();
    let input = UpsertInput {
        id: "ada@example.com".into(),
        id_property: "email".into(),
        properties: [("firstname".to_string(), "Ada".to_string())].into(),
    };
    let error = bounded(reader.batch_upsert("contacts", &[input])).await.unwrap_err();
    assert_eq!(error.status(), Some(403));
    assert_eq!(error.missing_scopes(), Some(&["crm.objects.contacts.write".to_string()][..]));
    assert_eq!(emu.requests_to(TOKEN_PATH).await.len(), 1, "a refusal for scopes is no reason to refresh");
}

#[tokio::test]
async fn authorization_code_and_token_metadata() {
    let emu = emulator().await;
    let issued = emu
        .http
        .post(emu.url("/_emulator/oauth/codes"))
        .json(&json!({ "clientId": READER_ID, "redirectUri": "https://app.example/callback" }))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 201);
    let code = issued.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_string();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", READER_ID),
        ("client_secret", READER_SECRET),
        ("redirect_uri", "https://app.example/callback"),
        ("code", code.as_str()),
    ];
    let tokens: Value = token_by_form(&emu, TOKEN_PATH, &exchange).await.json().await.unwrap();
    let (access, refresh) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    assert_eq!(tokens["scopes"], json!(["crm.objects.contacts.read"]));
    let again: Value = token_by_form(&emu, TOKEN_PATH, &exchange).await.json().await.unwrap();
    assert_eq!(again["status"], "BAD_AUTH_CODE", "a code is used once");

    let info: Value =
        emu.http.get(emu.url(&format!("/oauth/v1/access-tokens/{access}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["token"], access);
    assert_eq!((info["hub_id"].as_u64(), info["app_id"].as_u64()), (Some(62515), Some(54323)));
    assert_eq!(info["scopes"], json!(["crm.objects.contacts.read"]));
    assert_eq!(info["token_type"], "access");
    assert!((1790..=1800).contains(&info["expires_in"].as_i64().unwrap()));
    for field in ["user", "hub_domain", "user_id"] {
        assert!(!info[field].is_null(), "{field} missing in {info}");
    }
    let refresh_info: Value = emu
        .http
        .get(emu.url(&format!("/oauth/v1/refresh-tokens/{refresh}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (refresh_info["client_id"].as_str(), refresh_info["token_type"].as_str()),
        (Some(READER_ID), Some("refresh"))
    );

    let introspect = |token: &str| {
        let form = [("client_id", READER_ID), ("client_secret", READER_SECRET), ("token", token)];
        let request = emu.http.post(emu.url("/oauth/v3/token/introspect")).form(&form);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let active = introspect(access).await;
    assert_eq!((active["active"].as_bool(), active["token_type"].as_str()), (Some(true), Some("access_token")));
    assert_eq!(active["scope"], "crm.objects.contacts.read");
    assert_eq!(introspect("na1-unknown").await, json!({ "active": false }));

    // Issued from the admin API, as an installation would: usable at once, revocable.
    let minted = emu.issue_refresh_token(READER_ID).await;
    let revoke = emu.http.delete(emu.url(&format!("/oauth/v1/refresh-tokens/{minted}"))).send().await.unwrap();
    assert_eq!(revoke.status(), 204);
    let client = emu.oauth_client(READER_ID, READER_SECRET, &minted);
    let error = bounded(client.list_objects_page("contacts", &[], None, 1)).await.unwrap_err();
    assert!(matches!(&error, Error::Api(e) if e.category == "BAD_REFRESH_TOKEN"), "{error:?}");

    let logged = serde_json::to_string(&emu.requests().await).unwrap();
    assert!(!logged.contains(access) && !logged.contains(refresh) && !logged.contains(&code), "{logged}");
}

/// An access token for the OAuth app, straight from the token endpoint.
async fn issued_access_token(emu: &TestEmulator) -> String {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", REFRESH_TOKEN),
    ];
    let answer: Value = token_by_form(emu, TOKEN_PATH, &form).await.json().await.unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn token_file_client_uses_whatever_token_the_file_holds_now() {
    let emu = emulator().await;
    emu.create_contact(json!({ "email": "ada@example.com" })).await;
    let first = issued_access_token(&emu).await;
    let second = issued_access_token(&emu).await;
    assert_ne!(first, second);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let client =
        hubspot::HubSpotClient::new_with_token_file(emu.running.base_url(), "v3", Default::default(), path.clone());

    // No file yet (the operator has not written the Secret): the call fails, nothing is sent.
    let missing = bounded(client.list_objects_page("contacts", &["email".into()], None, 10)).await.unwrap_err();
    assert!(matches!(missing, Error::Transport(ref m) if m.contains("access token file")), "{missing}");

    std::fs::write(&path, format!("{first}\n")).unwrap();
    let page = bounded(client.list_objects_page("contacts", &["email".into()], None, 10)).await.unwrap();
    assert_eq!(page.results.len(), 1);
    let info = bounded(client.introspect_token()).await.unwrap();
    assert_eq!(info.app_id, 54322, "introspected as an OAuth access token");

    // Replaced by a token HubSpot refuses, then by a good one: each next call uses the new file.
    std::fs::write(&path, "CJT-not-a-token").unwrap();
    let refused = bounded(client.list_objects_page("contacts", &["email".into()], None, 10)).await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    std::fs::write(&path, &second).unwrap();
    let page = bounded(client.list_objects_page("contacts", &["email".into()], None, 10)).await.unwrap();
    assert_eq!(page.results.len(), 1);

    let log = emu.requests().await;
    assert_eq!(
        statuses(&log)[2..],
        [
            ("/crm/v3/objects/contacts".to_string(), 200),
            ("/oauth/v1/access-tokens/[redacted]".to_string(), 200),
            ("/crm/v3/objects/contacts".to_string(), 401),
            ("/crm/v3/objects/contacts".to_string(), 200),
        ],
        "the two token requests, then the calls with the file's tokens"
    );
}
