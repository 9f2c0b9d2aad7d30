//! Fixtures shared by the integration tests: sample webhook events, receiver configs, signed
//! webhook requests and a running receiver.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubspot::WebhookEvent;
use hubspot::signature::{HEADER_SIGNATURE_V3, HEADER_TIMESTAMP, sign_v3};
use model::config::{HubSpotConnection, ReceiverConfig, WebhookConfig};
use receiver::eventlog::EventLog;
use receiver::metrics::Metrics;
use receiver::{ListenerSettings, ServerState, router, serve, status_router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod nats_cluster;

pub const CLIENT_SECRET: &str = "test-client-secret-0000";

/// Bound for every wait in a test; generous, because a failing test is the only one to hit it.
pub const WAIT: Duration = Duration::from_secs(20);

/// A `contact.propertyChange` event of portal 62515; `event_id` and `object_id` tell events
/// apart.
pub fn sample_event(event_id: u64, object_id: u64) -> WebhookEvent {
    WebhookEvent {
        event_id,
        subscription_id: 12345,
        portal_id: 62515,
        app_id: 54321,
        occurred_at: 1_764_000_000_000 + event_id as i64,
        subscription_type: "contact.propertyChange".into(),
        attempt_number: 0,
        object_id,
        change_source: Some("CRM".into()),
        change_flag: None,
        source_id: None,
        property_name: Some("email".into()),
        property_value: Some(format!("user{object_id}@example.com")),
        object_type_id: None,
        primary_object_id: None,
        merged_object_ids: None,
        new_object_id: None,
        ..Default::default()
    }
}

/// The same delivery again, as HubSpot retries it.
pub fn redelivery(event: &WebhookEvent) -> WebhookEvent {
    WebhookEvent { attempt_number: event.attempt_number + 1, ..event.clone() }
}

pub fn receiver_config(data_dir: &Path) -> ReceiverConfig {
    let hubspot = HubSpotConnection::new("http://127.0.0.1:9", "pat-na1-test");
    let mut config = ReceiverConfig::new("default/test", data_dir, hubspot, WebhookConfig::new(CLIENT_SECRET));
    // Ephemeral ports: tests run receivers side by side.
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.status_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A POST of `body` to `url`, signed with v3 over `signed_uri` (the URL HubSpot believes it
/// calls) at `timestamp_ms`.
pub fn signed_request_at(
    client: &reqwest::Client,
    url: &str,
    signed_uri: &str,
    body: Vec<u8>,
    secret: &str,
    timestamp_ms: i64,
) -> reqwest::RequestBuilder {
    let signature = sign_v3(secret, "POST", signed_uri, &body, timestamp_ms);
    client
        .post(url)
        .header("content-type", "application/json")
        .header(HEADER_SIGNATURE_V3, signature)
        .header(HEADER_TIMESTAMP, timestamp_ms.to_string())
        .body(body)
}

/// A POST of `body` to `url` signed with v3 over `url` itself, now, with `CLIENT_SECRET`.
pub fn signed_request(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    signed_request_at(client, url, url, body, CLIENT_SECRET, now_ms())
}

pub fn batch_body(events: &[WebhookEvent]) -> Vec<u8> {
    serde_json::to_vec(events).unwrap()
}

/// A receiver serving on ephemeral ports of 127.0.0.1.
pub struct RunningReceiver {
    /// The public port: webhooks, the ingest API, the probes.
    pub base_url: String,
    /// The status port: `/metrics`, `/sync/status`, the probes.
    pub status_url: String,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl RunningReceiver {
    pub async fn start(config: &ReceiverConfig, log: Arc<dyn EventLog>) -> RunningReceiver {
        Self::start_with(config, log, None).await
    }

    /// The whole of `receiver::run`, the sync worker included, with the event log `config`
    /// names.
    pub async fn run(mut config: ReceiverConfig) -> RunningReceiver {
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        // `run` binds the status address itself, so the port must be known beforehand.
        if config.status_listen.port() == 0 {
            config.status_listen.set_port(free_port());
        }
        let status_url = format!("http://{}", config.status_listen);
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(receiver::run(config, listener, metrics.clone(), async move {
            let _ = stop.await;
        }));
        RunningReceiver { base_url, status_url, metrics, shutdown: Some(shutdown), server }
    }

    /// With the ingest API of `config` queueing into `store`.
    pub async fn start_with_ingest(
        config: &ReceiverConfig,
        log: Arc<dyn EventLog>,
        store: Arc<receiver::reverse::ReverseStore>,
    ) -> RunningReceiver {
        Self::start_with(config, log, Some(store)).await
    }

    async fn start_with(
        config: &ReceiverConfig,
        log: Arc<dyn EventLog>,
        store: Option<Arc<receiver::reverse::ReverseStore>>,
    ) -> RunningReceiver {
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let status_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let status_url = format!("http://{}", status_listener.local_addr().unwrap());
        let mut state = ServerState::new(config, log, metrics.clone());
        if let Some(store) = store {
            state = state.with_ingest(config, store);
        }
        let (public, status) = (router(state.clone()), status_router(state));
        let (limits, listener_metrics) = (config.http, metrics.clone());
        let settings = move |name| ListenerSettings { name, limits, metrics: listener_metrics.clone() };
        let (shutdown, stop) = oneshot::channel::<()>();
        // As `receiver::run` does: the status port closes once the public one has finished.
        let server = tokio::spawn(async move {
            let stop_status = tokio_util::sync::CancellationToken::new();
            let status =
                tokio::spawn(serve(status_listener, status, settings("status"), stop_status.clone().cancelled_owned()));
            let served = serve(listener, public, settings("public"), async move {
                let _ = stop.await;
            })
            .await;
            stop_status.cancel();
            status.await??;
            served
        });
        RunningReceiver { base_url, status_url, metrics, shutdown: Some(shutdown), server }
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/hubspot", self.base_url)
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.status_url)
    }

    /// Whether the receiver is still running: it has neither stopped nor failed.
    pub fn is_running(&self) -> bool {
        !self.server.is_finished()
    }

    /// Stops accepting connections and waits until the server has finished.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.server).await.expect("server did not shut down").unwrap()
    }
}

/// The HubSpot emulator on an ephemeral port, with helpers for its admin API.
pub struct TestEmulator {
    pub running: emulator::RunningEmulator,
    pub http: reqwest::Client,
}

impl TestEmulator {
    pub async fn start(config: emulator::EmulatorConfig) -> TestEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = emulator::RunningEmulator::start(config, listener).await.unwrap();
        TestEmulator { running, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{method} {path}: {}", response.status());
        let bytes = response.bytes().await.unwrap();
        if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap() }
    }

    /// Creates an object as a HubSpot user would; returns its id.
    pub async fn create(&self, object_type: &str, properties: serde_json::Value) -> String {
        let body = serde_json::json!({ "properties": properties });
        let created = self.admin(reqwest::Method::POST, &format!("/_emulator/objects/{object_type}"), Some(body)).await;
        created["id"].as_str().unwrap().to_string()
    }

    pub async fn create_contact(&self, properties: serde_json::Value) -> String {
        self.create("contacts", properties).await
    }

    /// Updates an object as a HubSpot user would.
    pub async fn update(&self, object_type: &str, id: &str, properties: serde_json::Value) {
        let body = serde_json::json!({ "properties": properties });
        self.admin(reqwest::Method::PATCH, &format!("/_emulator/objects/{object_type}/{id}"), Some(body)).await;
    }

    pub async fn update_contact(&self, id: &str, properties: serde_json::Value) {
        self.update("contacts", id, properties).await
    }

    /// Archives an object as a HubSpot user would.
    pub async fn archive(&self, object_type: &str, id: &str) {
        self.admin(reqwest::Method::DELETE, &format!("/_emulator/objects/{object_type}/{id}"), None).await;
    }

    /// The object as the emulator stores it.
    pub async fn object(&self, object_type: &str, id: &str) -> serde_json::Value {
        self.admin(reqwest::Method::GET, &format!("/_emulator/objects/{object_type}/{id}"), None).await
    }

    /// Every object of `object_type` the emulator stores, archived ones included.
    pub async fn objects(&self, object_type: &str) -> Vec<serde_json::Value> {
        serde_json::from_value(
            self.admin(reqwest::Method::GET, &format!("/_emulator/objects/{object_type}"), None).await,
        )
        .unwrap()
    }

    /// The live contact with this email, if any.
    pub async fn contact_by_email(&self, email: &str) -> Option<serde_json::Value> {
        self.objects("contacts")
            .await
            .into_iter()
            .find(|o| o["properties"]["email"] == email && !o["archived"].as_bool().unwrap_or(false))
    }

    /// Makes the next API calls fail as `plan` says (`{status, count, pathPrefix, ...}`).
    pub async fn set_faults(&self, plan: serde_json::Value) {
        self.admin(reqwest::Method::PUT, "/_emulator/faults", Some(plan)).await;
    }

    pub async fn clear_faults(&self) {
        self.admin(reqwest::Method::DELETE, "/_emulator/faults", None).await;
    }

    /// Ends the standing faults (`EmulatorConfig::faults`): HubSpot has recovered.
    pub async fn clear_standing_faults(&self) {
        self.admin(reqwest::Method::DELETE, "/_emulator/faults/standing", None).await;
    }

    /// Every API call the emulator received.
    pub async fn requests(&self) -> Vec<serde_json::Value> {
        serde_json::from_value(self.admin(reqwest::Method::GET, "/_emulator/requests", None).await).unwrap()
    }

    /// Bodies of the batch reads the emulator received.
    pub async fn batch_reads(&self) -> Vec<serde_json::Value> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/batch/read"))
            .map(|r| r["body"].clone())
            .collect()
    }

    /// API calls answered whose method is `method` and whose path ends with `suffix`, from
    /// the emulator's counts (`/_emulator/requests/counts`).
    pub async fn call_count(&self, method: &str, suffix: &str) -> u64 {
        self.request_counts().await["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["method"] == method && c["path"].as_str().unwrap().ends_with(suffix))
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    }

    /// `/_emulator/requests/counts`: `calls`, `rateLimited`, `injectedFaults`.
    pub async fn request_counts(&self) -> serde_json::Value {
        self.admin(reqwest::Method::GET, "/_emulator/requests/counts", None).await
    }

    /// Associates two records with the default type through Associations v4, as an
    /// integration holding `token` would.
    pub async fn associate(&self, token: &str, from: (&str, &str), to: (&str, &str)) {
        let path = format!("/crm/v4/objects/{}/{}/associations/default/{}/{}", from.0, from.1, to.0, to.1);
        let response = self.http.put(self.url(&path)).bearer_auth(token).send().await.unwrap();
        assert!(response.status().is_success(), "PUT {path}: {}", response.status());
    }

    /// Removes every association between two records through Associations v4.
    pub async fn dissociate(&self, token: &str, from: (&str, &str), to: (&str, &str)) {
        let path = format!("/crm/v4/objects/{}/{}/associations/{}/{}", from.0, from.1, to.0, to.1);
        let response = self.http.delete(self.url(&path)).bearer_auth(token).send().await.unwrap();
        assert!(response.status().is_success(), "DELETE {path}: {}", response.status());
    }

    /// The ids of the `to_type` records `from` is associated with now, ascending.
    pub async fn associated_ids(&self, token: &str, from: (&str, &str), to_type: &str) -> Vec<String> {
        let path = format!("/crm/v4/objects/{}/{}/associations/{to_type}", from.0, from.1);
        let body: serde_json::Value =
            self.http.get(self.url(&path)).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        let mut ids: Vec<u64> =
            body["results"].as_array().unwrap().iter().map(|r| r["toObjectId"].as_u64().unwrap()).collect();
        ids.sort();
        ids.iter().map(u64::to_string).collect()
    }

    /// Webhook delivery state: `pending`, `delivered`, `failedAttempts`, `log`.
    pub async fn webhooks(&self) -> serde_json::Value {
        self.admin(reqwest::Method::GET, "/_emulator/webhooks", None).await
    }

    /// Moves the emulator's token-expiry clock forward by `seconds`.
    pub async fn advance_clock(&self, seconds: u64) {
        self.admin(reqwest::Method::POST, "/_emulator/clock/advance", Some(serde_json::json!({ "seconds": seconds })))
            .await;
    }

    /// Issues a refresh token to the OAuth app `client_id`; returns it.
    pub async fn issue_refresh_token(&self, client_id: &str) -> String {
        let body = serde_json::json!({ "clientId": client_id });
        let issued = self.admin(reqwest::Method::POST, "/_emulator/oauth/refresh-tokens", Some(body)).await;
        issued["refreshToken"].as_str().unwrap().to_string()
    }

    /// The API calls received whose path is exactly `path`.
    pub async fn requests_to(&self, path: &str) -> Vec<serde_json::Value> {
        self.requests().await.into_iter().filter(|r| r["path"] == path).collect()
    }

    /// A client of the OAuth app `client_id` that renews its access token with `refresh_token`.
    pub fn oauth_client(&self, client_id: &str, client_secret: &str, refresh_token: &str) -> hubspot::HubSpotClient {
        hubspot::HubSpotClient::new_oauth(
            self.running.base_url(),
            "v3",
            Default::default(),
            hubspot::OAuthCredentials {
                client_id: client_id.into(),
                client_secret: hubspot::Secret::new(client_secret),
                refresh_token: hubspot::Secret::new(refresh_token),
                token_endpoint: Default::default(),
            },
        )
    }

    pub fn client(&self, token: &str) -> hubspot::HubSpotClient {
        hubspot::HubSpotClient::new(hubspot::ClientSettings {
            base_url: self.running.base_url(),
            api_version: "v3".into(),
            access_token: token.into(),
            tier: Default::default(),
        })
    }
}

/// One request a `TestDestination` received.
#[derive(Clone, Debug)]
pub struct SeenDelivery {
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
    /// Events pending in the observed event log when the request arrived.
    pub pending_in_log: Option<u64>,
}

impl SeenDelivery {
    pub fn records(&self) -> Vec<receiver::sync::Record> {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        serde_json::from_value(body["records"].clone()).unwrap()
    }
}

/// How a `TestDestination` answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    /// How long the destination takes to answer, after noting the request.
    pub delay: Duration,
}

impl From<u16> for Reply {
    fn from(status: u16) -> Reply {
        Reply { status, retry_after: None, delay: Duration::ZERO }
    }
}

/// An HTTP destination of records: answers with scripted replies, then with `fallback` (200
/// unless changed), and keeps every request. Requests carrying a record of an object it was
/// told to refuse get 400, as a destination that finds one record invalid answers.
#[derive(Clone)]
pub struct TestDestination {
    pub url: String,
    script: Arc<std::sync::Mutex<std::collections::VecDeque<Reply>>>,
    fallback: Arc<std::sync::atomic::AtomicU16>,
    refused_objects: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    seen: Arc<std::sync::Mutex<Vec<SeenDelivery>>>,
    observed_log: Option<Arc<dyn EventLog>>,
}

impl TestDestination {
    pub async fn start(script: Vec<Reply>) -> TestDestination {
        Self::start_observing(script, None).await
    }

    /// Also notes how many events `log` held when each request arrived.
    pub async fn start_observing(script: Vec<Reply>, observed_log: Option<Arc<dyn EventLog>>) -> TestDestination {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let destination = TestDestination {
            url: format!("http://{}/records", listener.local_addr().unwrap()),
            script: Arc::new(std::sync::Mutex::new(script.into())),
            fallback: Arc::new(std::sync::atomic::AtomicU16::new(200)),
            refused_objects: Arc::default(),
            seen: Arc::default(),
            observed_log,
        };
        let app =
            axum::Router::new().route("/records", axum::routing::post(Self::receive)).with_state(destination.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        destination
    }

    /// Answers `status` from now on, once the script is used up.
    pub fn answer(&self, status: u16) {
        self.fallback.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Refuses (400) every request with a record of one of `object_ids`, until told otherwise.
    pub fn refuse_objects(&self, object_ids: &[&str]) {
        *self.refused_objects.lock().unwrap() = object_ids.iter().map(|id| id.to_string()).collect();
    }

    pub fn seen(&self) -> Vec<SeenDelivery> {
        self.seen.lock().unwrap().clone()
    }

    pub fn statuses(&self) -> Vec<u16> {
        self.seen().iter().map(|s| s.status).collect()
    }

    /// Records of the requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<receiver::sync::Record> {
        self.seen().iter().filter(|s| (200..300).contains(&s.status)).flat_map(|s| s.records()).collect()
    }

    async fn receive(
        axum::extract::State(destination): axum::extract::State<TestDestination>,
        headers: reqwest::header::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let pending_in_log = match &destination.observed_log {
            Some(log) => Some(log.pending_count().await.unwrap()),
            None => None,
        };
        let refused = {
            let refused_objects = destination.refused_objects.lock().unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            body["records"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|record| record["objectId"].as_str().is_some_and(|id| refused_objects.contains(id)))
        };
        let reply = if refused {
            Reply::from(400)
        } else {
            destination
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Reply::from(destination.fallback.load(std::sync::atomic::Ordering::SeqCst)))
        };
        destination.seen.lock().unwrap().push(SeenDelivery {
            headers,
            body: body.to_vec(),
            status: reply.status,
            pending_in_log,
        });
        tokio::time::sleep(reply.delay).await;
        let status = axum::http::StatusCode::from_u16(reply.status).unwrap();
        match reply.retry_after {
            Some(wait) => (status, [("retry-after", wait)]).into_response(),
            None => status.into_response(),
        }
    }
}

/// Waits until `condition` holds, checking every 50 ms, for at most `WAIT`.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_equal(what, &true, condition).await
}

/// Waits until `actual` gives `expected`, checking every 50 ms, for at most `WAIT`; a timeout
/// shows the last value beside the expected one.
pub async fn eventually_equal<T, F, Fut>(what: &str, expected: &T, actual: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    eventually_equal_within(WAIT, what, expected, actual).await
}

/// `eventually_equal` for at most `bound`, for waits that include a known longer delay.
pub async fn eventually_equal_within<T, F, Fut>(bound: Duration, what: &str, expected: &T, mut actual: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let value = actual().await;
        if value == *expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}\nexpected: {expected:?}\n  actual: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The address of a service the tests need, from environment variable `var`. Missing is a
/// failure, never a skip: `make test` and CI set these.
pub fn service_url(var: &str, example: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!("{var} is not set: point it at the test server (e.g. {example}); `make test` sets it"),
    }
}

/// A random lowercase suffix for names that parallel tests must not share.
pub fn unique_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

/// Runs `work` to completion on a runtime of its own, from anywhere (including `Drop` inside
/// a test's runtime). A panic in `work` is reported on stderr, not passed on: cleanup must not
/// abort a test that is already failing.
fn run_detached<F: std::future::Future<Output = ()> + Send + 'static>(work: F) {
    let cleanup = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work)
    });
    let _ = cleanup.join();
}

/// A PostgreSQL database of its own for one test, dropped when this value is.
pub struct TestDatabase {
    /// Connection string of the test database.
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = service_url("HUBSPOT_OPERATOR_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
        let name = format!("hsop_test_{}", unique_suffix());
        let admin = pg_connect(&admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        let url = with_database(&admin_url, &name);
        TestDatabase { url, name, admin_url }
    }

    /// A client of the test database.
    pub async fn client(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        run_detached(async move {
            // No panic here: during a failing test's unwinding it would abort and hide the failure.
            let admin = pg_connect(&admin_url).await;
            if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await {
                eprintln!("dropping test database {name}: {e}");
            }
        });
    }
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(WAIT, connect).await.expect("connecting timed out").unwrap();
    tokio::spawn(connection);
    client
}

/// `url` (a `postgres://` URL) with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").expect("a postgres:// URL") + 3;
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{database}{query}", &base[..authority_end])
}

/// A JetStream stream of its own for one test, capturing `subject`; deleted when this value is.
pub struct TestStream {
    pub url: String,
    pub name: String,
    pub subject: String,
    pub jetstream: async_nats::jetstream::Context,
}

impl TestStream {
    pub async fn create() -> TestStream {
        Self::create_on(nats_url()).await
    }

    /// On the NATS server at `url`.
    pub async fn create_on(url: String) -> TestStream {
        let suffix = unique_suffix();
        let (name, subject) = (format!("HSOP_TEST_{suffix}"), format!("hsop.test.{suffix}.records"));
        let jetstream = nats_jetstream(&url).await;
        let config = async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        };
        tokio::time::timeout(WAIT, jetstream.create_stream(config))
            .await
            .expect("creating a stream timed out")
            .unwrap();
        TestStream { url, name, subject, jetstream }
    }

    /// Messages the stream holds.
    pub async fn message_count(&self) -> u64 {
        let mut stream = self.jetstream.get_stream(&self.name).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// The message at `sequence`.
    pub async fn message(&self, sequence: u64) -> async_nats::jetstream::message::StreamMessage {
        let stream = self.jetstream.get_stream(&self.name).await.unwrap();
        stream.get_raw_message(sequence).await.unwrap()
    }

    /// Every record the stream holds, oldest first.
    pub async fn records(&self) -> Vec<receiver::sync::Record> {
        let mut records = Vec::new();
        for sequence in 1..=self.message_count().await {
            records.push(serde_json::from_slice(&self.message(sequence).await.payload).unwrap());
        }
        records
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        run_detached(async move {
            // No panic here: during a failing test's unwinding it would abort and hide the failure.
            if let Err(e) = nats_jetstream(&url).await.delete_stream(&name).await {
                eprintln!("deleting test stream {name}: {e}");
            }
        });
    }
}

pub fn nats_url() -> String {
    service_url("HUBSPOT_OPERATOR_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

/// The largest message the NATS server at `url` takes.
pub async fn nats_max_payload(url: &str) -> usize {
    let client = tokio::time::timeout(WAIT, async_nats::connect(url)).await.expect("connecting timed out").unwrap();
    client.server_info().max_payload
}

pub async fn nats_jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = tokio::time::timeout(WAIT, async_nats::connect(url)).await.expect("connecting timed out").unwrap();
    async_nats::jetstream::new(client)
}

/// Contacts: email is the match key; firstname and lifecyclestage flow out; phone only flows
/// into HubSpot, so it must never be read.
pub fn contacts_mapping(sinks: Vec<model::config::SinkConfig>) -> model::config::MappingConfig {
    use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
    let fields = vec![
        FieldMapping::new("firstname", "first_name", Direction::ToExternal),
        FieldMapping::new("lifecyclestage", "stage", Direction::Both),
        FieldMapping::new("phone", "phone", Direction::ToHubSpot),
    ];
    let records = MappedRecords::new("contacts", MatchKey::new("email", "email"), fields);
    model::config::MappingConfig { sinks, ..model::config::MappingConfig::new("crm/contacts", records) }
}

/// A port on 127.0.0.1 that was free a moment ago, for processes that bind it themselves.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A receiver config whose HubSpot is `emulator` (with its default token) and whose one
/// mapping is `contacts_mapping(sinks)`.
pub fn emulator_receiver_config(
    data_dir: &Path,
    emulator: &TestEmulator,
    sinks: Vec<model::config::SinkConfig>,
) -> ReceiverConfig {
    let mut config = receiver_config(data_dir);
    config.hubspot.base_url = emulator.running.base_url();
    config.hubspot.access_token = emulator::DEFAULT_TOKEN.into();
    config.mappings = vec![contacts_mapping(sinks)];
    config
}

/// A contact event `event_id` about `object_id` at `occurred_at`.
pub fn contact_event(event_id: u64, subscription_type: &str, object_id: &str, occurred_at: i64) -> WebhookEvent {
    let mut event = sample_event(event_id, object_id.parse().unwrap());
    event.subscription_type = subscription_type.into();
    event.occurred_at = occurred_at;
    event.property_name = subscription_type.ends_with("propertyChange").then(|| "firstname".into());
    event
}

/// An event-log backend under test, with the storage every log it opens shares: a temporary
/// directory, or a pair of JetStream streams of their own (deleted when this value is).
pub enum LogBackend {
    Embedded(tempfile::TempDir),
    JetStream(TestLogStreams),
}

/// The streams of a JetStream event log for one test; both are deleted when this value is.
pub struct TestLogStreams {
    pub settings: receiver::eventlog::jetstream::Settings,
}

impl Drop for TestLogStreams {
    fn drop(&mut self) {
        let (url, names) =
            (self.settings.url.clone(), [self.settings.stream.clone(), format!("{}_seen", self.settings.stream)]);
        run_detached(async move {
            let jetstream = nats_jetstream(&url).await;
            for name in names {
                // Absent when the test failed before opening a log; nothing to report then.
                if let Err(e) = jetstream.delete_stream(&name).await {
                    eprintln!("deleting test stream {name}: {e}");
                }
            }
        });
    }
}

impl LogBackend {
    pub fn embedded() -> LogBackend {
        LogBackend::Embedded(tempfile::tempdir().unwrap())
    }

    /// Streams named for this test only; `ack_wait` is how long a dead log's events stay claimed.
    pub fn jetstream_with_ack_wait(ack_wait: Duration) -> LogBackend {
        let suffix = unique_suffix();
        LogBackend::JetStream(TestLogStreams {
            settings: receiver::eventlog::jetstream::Settings {
                url: nats_url(),
                stream: format!("hsop_test_log_{suffix}"),
                subject: format!("hsop.test.{suffix}.events"),
                replicas: 1,
                limits: Default::default(),
                ack_wait,
            },
        })
    }

    pub fn jetstream() -> LogBackend {
        Self::jetstream_with_ack_wait(Duration::from_secs(60))
    }

    /// A log over this backend's storage, with the default limits.
    pub async fn open(&self) -> Arc<dyn EventLog> {
        self.open_with(Default::default()).await
    }

    pub async fn open_with(&self, limits: model::config::LogLimits) -> Arc<dyn EventLog> {
        match self {
            LogBackend::Embedded(dir) => Arc::new(
                receiver::eventlog::EmbeddedEventLog::open_with(&dir.path().join("events.db"), limits).unwrap(),
            ),
            LogBackend::JetStream(streams) => {
                let settings = receiver::eventlog::jetstream::Settings { limits, ..streams.settings.clone() };
                let open = receiver::eventlog::JetStreamEventLog::open(&settings);
                Arc::new(tokio::time::timeout(WAIT, open).await.expect("opening the log timed out").unwrap())
            }
        }
    }
}

/// Runs each listed `async fn name(backend: LogBackend)` of the calling file once per event-log
/// backend, as the tests `embedded::name` and `jetstream::name`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::LogBackend::embedded()).await
                }
            )*
        }
        mod jetstream {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::LogBackend::jetstream()).await
                }
            )*
        }
    };
}

/// The value of the sample `name` (with its labels, e.g. `x_total{a="b"}`) in `metrics`'
/// exposition, if present.
pub fn metric_sample(metrics: &receiver::metrics::Metrics, name: &str) -> Option<f64> {
    metrics.encode().lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The admin API of `worker` (and of `reverse`, the records bound for HubSpot) on an ephemeral
/// loopback port; returns its base URL.
pub async fn serve_admin(
    worker: &receiver::sync::Worker,
    reverse: Option<Arc<receiver::reverse::ReverseStore>>,
    token: Option<&str>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = receiver::server::admin::router(worker.clone(), reverse, token.map(str::to_string));
    let settings =
        ListenerSettings { name: "admin", limits: Default::default(), metrics: Arc::new(Metrics::default()) };
    tokio::spawn(receiver::serve(listener, router, settings, std::future::pending()));
    base
}

/// A program the tests run, from environment variable `var`, or a directory holding
/// `programs` when they are named. Missing or not executable is a failure, never a skip, as
/// for `service_url`.
pub fn service_program(var: &str, example: &str, programs: &[&str]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = match std::env::var(var) {
        Ok(path) if !path.trim().is_empty() => std::path::PathBuf::from(path),
        _ => panic!("{var} is not set: point it at the program (e.g. {example}); `make test` sets it"),
    };
    let executables =
        if programs.is_empty() { vec![path.clone()] } else { programs.iter().map(|p| path.join(p)).collect() };
    for program in executables {
        let executable = std::fs::metadata(&program).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        assert!(
            executable,
            "{var}={}: {} is not an executable file (e.g. {example})",
            path.display(),
            program.display()
        );
    }
    path
}

/// How a private server is stopped.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// SIGTERM: the server shuts down cleanly.
    Term,
    /// SIGKILL: nothing of the server's shutdown runs.
    Kill,
}

/// Sends SIGTERM to `child` and waits for it to exit.
fn terminate(child: &mut std::process::Child) {
    let sent = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -TERM {}: {sent}", child.id());
    child.wait().unwrap();
}

/// A NATS server with JetStream of its own for one test (`HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN`),
/// so a test may stop and restart it; killed when dropped.
pub struct PrivateNatsServer {
    program: std::path::PathBuf,
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateNatsServer {
    pub async fn start() -> PrivateNatsServer {
        let program = service_program("HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN", "/usr/sbin/nats-server", &[]);
        let mut server =
            PrivateNatsServer { program, port: free_port(), store: tempfile::tempdir().unwrap(), child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self, how: Stop) {
        let mut child = self.child.take().expect("the server is running");
        match how {
            Stop::Term => terminate(&mut child),
            Stop::Kill => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
    }

    /// Starts the server again on the same port and store; returns once JetStream answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let child = std::process::Command::new(&self.program)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        self.child = Some(child);
        let url = self.url();
        eventually("the private NATS server to serve JetStream", || async {
            let Ok(client) = async_nats::connect(url.as_str()).await else { return false };
            use futures::StreamExt as _;
            let mut names = async_nats::jetstream::new(client).stream_names();
            matches!(names.next().await, None | Some(Ok(_)))
        })
        .await;
    }
}

impl Drop for PrivateNatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A PostgreSQL cluster of its own for one test, in a temporary directory, so a test may stop
/// and start it (`HUBSPOT_OPERATOR_TEST_POSTGRES_BIN_DIR` holds `initdb` and `pg_ctl`). It runs
/// as the `postgres` OS user, since PostgreSQL refuses to run as root; stopped when dropped.
pub struct PrivatePostgres {
    bin_dir: std::path::PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

impl PrivatePostgres {
    pub async fn start() -> PrivatePostgres {
        let bin_dir = service_program(
            "HUBSPOT_OPERATOR_TEST_POSTGRES_BIN_DIR",
            "/usr/lib/postgresql/15/bin",
            &["initdb", "pg_ctl"],
        );
        let mut cluster =
            PrivatePostgres { bin_dir, port: free_port(), dir: tempfile::tempdir().unwrap(), running: false };
        succeed(std::process::Command::new("chown").arg("postgres").arg(cluster.dir.path()));
        succeed(
            cluster.as_postgres("initdb").arg("-D").arg(cluster.data_dir()).args(["-A", "trust", "-U", "postgres"]),
        );
        cluster.start_again().await;
        cluster
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// `program` of the bin dir, run as the `postgres` user.
    fn as_postgres(&self, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(self.bin_dir.join(program)).stdin(std::process::Stdio::null());
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.as_postgres("pg_ctl");
        command.arg("-D").arg(self.data_dir()).arg("-w").args(args);
        command
    }

    /// Connection string of database `postgres` as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster on its port; returns once it accepts connections.
    pub async fn start_again(&mut self) {
        assert!(!self.running, "the cluster is running");
        let log = self.dir.path().join("server.log").display().to_string();
        // No fsync: the tests stop the server, never the machine.
        let options = format!("-F -p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        succeed(&mut self.pg_ctl(&["-l", &log, "-o", &options, "start"]));
        self.running = true;
    }

    /// Stops the cluster: `fast` (clients are disconnected, then a clean shutdown) or
    /// `immediate` (every server process is killed, as in a crash).
    pub fn stop(&mut self, mode: &str) {
        assert!(self.running, "the cluster is stopped");
        succeed(&mut self.pg_ctl(&["-m", mode, "stop"]));
        self.running = false;
    }
}

/// Runs `command`; panics with its error output unless it succeeds.
fn succeed(command: &mut std::process::Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(output.status.success(), "{command:?}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            // No panic here: during a failing test's unwinding it would abort and hide the failure.
            let _ = self.pg_ctl(&["-m", "immediate", "stop"]).output();
        }
    }
}

/// The receiver binary running `config_path`; killed (SIGKILL) when dropped.
pub struct ReceiverProcess(std::process::Child);

impl ReceiverProcess {
    pub fn spawn(config_path: &Path) -> ReceiverProcess {
        Self::spawn_with(config_path, &[], std::process::Stdio::inherit())
    }

    /// With `env` added to the environment (no `OTEL_*` variable of the test's own is passed
    /// on) and its log going to `stderr`.
    pub fn spawn_with(config_path: &Path, env: &[(&str, &str)], stderr: std::process::Stdio) -> ReceiverProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hubspot-operator"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
            command.env_remove(name);
        }
        let child = command
            .args(["receiver", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the receiver binary starts");
        ReceiverProcess(child)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// SIGTERM, as Kubernetes stops a pod: waits until the receiver has shut down.
    pub fn terminate(mut self) {
        terminate(&mut self.0);
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the receiver at `base_url` is ready.
pub async fn wait_ready(base_url: &str) {
    let http = reqwest::Client::new();
    eventually("the receiver to be ready", || async {
        http.get(format!("{base_url}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// How long HubSpot waits for the answer to a webhook call before it counts it failed.
pub const HUBSPOT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// One attempt of a `ChangeSender` to deliver a batch.
#[derive(Clone, Debug)]
pub struct SendAttempt {
    /// `None`: no answer in time (the receiver was not listening, went away, or was too slow).
    pub status: Option<u16>,
    pub retry_after: bool,
    /// The test had declared an outage both when the batch went out and when the answer came.
    pub during_outage: bool,
}

/// HubSpot under load, as the receiver sees it: changes contacts in the emulator a batch at a
/// time, round after round, and sends each batch of change events (signed) until it is
/// answered 2xx, as HubSpot retries a delivery. So when every batch is acknowledged, the
/// emulator's state is what every acknowledged event leads to.
pub struct ChangeSender {
    /// Set by the test while something the receiver needs is down.
    pub outage: Arc<std::sync::atomic::AtomicBool>,
    finish: Arc<std::sync::atomic::AtomicBool>,
    acknowledged: Arc<std::sync::atomic::AtomicUsize>,
    attempts: Arc<std::sync::Mutex<Vec<SendAttempt>>>,
    task: JoinHandle<()>,
}

impl ChangeSender {
    /// Changes `batch` contacts of `ids` at a time (`firstname` becomes `"{id} round {n}"`) and
    /// sends their events to `webhook_url`.
    pub fn start(emulator: Arc<TestEmulator>, webhook_url: String, ids: Vec<String>, batch: usize) -> ChangeSender {
        use std::sync::atomic::Ordering::SeqCst;
        let outage = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finish = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let attempts: Arc<std::sync::Mutex<Vec<SendAttempt>>> = Arc::default();
        let shared = (outage.clone(), finish.clone(), acknowledged.clone(), attempts.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(HUBSPOT_WEBHOOK_TIMEOUT).build().unwrap();
            let mut event_id = 0;
            for round in 0.. {
                for chunk in ids.chunks(batch) {
                    if finish.load(SeqCst) {
                        return;
                    }
                    let mut events = Vec::new();
                    for id in chunk {
                        emulator
                            .update_contact(id, serde_json::json!({ "firstname": format!("{id} round {round}") }))
                            .await;
                        event_id += 1;
                        events.push(contact_event(event_id, "contact.propertyChange", id, now_ms()));
                    }
                    let body = batch_body(&events);
                    loop {
                        let down_before = outage.load(SeqCst);
                        let answer = signed_request(&http, &webhook_url, body.clone()).send().await;
                        let attempt = SendAttempt {
                            status: answer.as_ref().ok().map(|a| a.status().as_u16()),
                            retry_after: answer.as_ref().is_ok_and(|a| a.headers().contains_key("retry-after")),
                            during_outage: down_before && outage.load(SeqCst),
                        };
                        let accepted = attempt.status.is_some_and(|s| (200..300).contains(&s));
                        attempts.lock().unwrap().push(attempt);
                        if accepted {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    acknowledged.fetch_add(1, SeqCst);
                }
            }
        });
        ChangeSender { outage: shared.0, finish: shared.1, acknowledged: shared.2, attempts: shared.3, task }
    }

    /// Batches answered 2xx so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn attempts(&self) -> Vec<SendAttempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// Waits until `more` batches beyond those acknowledged now are acknowledged.
    pub async fn wait_for_more(&self, more: usize) {
        let target = self.acknowledged() + more;
        eventually("more batches to be acknowledged", || async { self.acknowledged() >= target }).await;
    }

    /// Stops once the batch under way is acknowledged; returns every attempt.
    pub async fn finish(self) -> Vec<SendAttempt> {
        self.finish.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(WAIT, self.task).await.expect("the last batch was not acknowledged").unwrap();
        self.attempts.lock().unwrap().clone()
    }
}

/// What `contacts_mapping` makes of a contact: (email, firstname), `None` once archived.
pub type ContactState = Option<(String, String)>;

/// The emulator's contacts `ids` as `contacts_mapping` delivers them, by id.
pub async fn expected_contacts(
    emulator: &TestEmulator,
    ids: &[String],
) -> std::collections::BTreeMap<String, ContactState> {
    let mut expected = std::collections::BTreeMap::new();
    for id in ids {
        let object = emulator.object("contacts", id).await;
        let text = |p: &str| object["properties"][p].as_str().unwrap_or_default().to_string();
        expected.insert(
            id.clone(),
            (!object["archived"].as_bool().unwrap_or(false)).then(|| (text("email"), text("firstname"))),
        );
    }
    expected
}

/// The state a destination that applies `records` in order ends with, by object id.
pub fn applied_contacts(records: &[receiver::sync::Record]) -> std::collections::BTreeMap<String, ContactState> {
    use receiver::sync::Op;
    records
        .iter()
        .map(|r| {
            let state = (r.op == Op::Upsert).then(|| {
                let first_name = r.fields.get("first_name").cloned().flatten().unwrap_or_default();
                (r.key.clone().unwrap_or_default(), first_name)
            });
            (r.object_id.clone(), state)
        })
        .collect()
}

/// The count of `family` (a per-sink metric) for sink `sink` (`postgres-0`, ...) of `crm/contacts`.
pub fn contacts_sink_count(
    family: &prometheus_client::metrics::family::Family<
        receiver::metrics::SinkLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    sink: &str,
) -> u64 {
    let labels = receiver::metrics::SinkLabels { mapping: "crm/contacts".into(), sink: sink.into() };
    family.get_or_create(&labels).get()
}
