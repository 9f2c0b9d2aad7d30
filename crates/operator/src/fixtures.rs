//! Test fixtures: a scripted Kubernetes API server (tower-test mock) that asserts each call
//! the reconcilers make, in order, and answers as the API server would; a [`Scene`] of the
//! Kubernetes API stand-in and the HubSpot emulator, for tests that check what a reconcile left
//! behind rather than the order of its calls; and the objects both start from.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::{Action, Controller};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{Handle, SendResponse};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::{Context, Error, ResultLabels, error_policy, instrumented};
use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot::{ClientSettings, HubSpotClient};
use model::api::integration::{ApiSettings, Credentials, HubSpotIntegrationSpec, WebhookSettings};
use model::api::mapping::{
    Destination, Direction, FieldMapping, FileDestination, MappedRecords, MatchKey, PropertyMappingSpec,
};
use model::api::property::{
    DeletionPolicy, FieldType, ManagementPolicy, PropertyGroupSpec, PropertyOptionSpec, PropertyType,
};
use model::api::{HubSpotIntegration, HubSpotProperty, HubSpotPropertySpec, PropertyMapping, SecretKeyRef};
use test_support::{ApiCalls, FakeApiServer};

/// Upper bound on one scripted scenario; only reached when the reconciler and the script
/// disagree about the calls.
const SCENARIO_LIMIT: Duration = Duration::from_secs(30);

/// A context whose Kubernetes client talks to the returned scripted API server.
pub fn test_context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    (Arc::new(Context::new(client, "ghcr.io/hubspot-operator/hubspot-operator:test")), ApiServer(handle))
}

/// One request the reconciler sent.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// The scripted API server.
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Takes the next request and asserts its method and path.
    pub async fn expect(&mut self, method: Method, path: &str) -> (Call, SendResponse<Response<Body>>) {
        let (request, send) =
            self.0.next_request().await.unwrap_or_else(|| panic!("expected {method} {path}, but the client is gone"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let call = Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON request body")
            },
        };
        assert_eq!((&call.method, call.path.as_str()), (&method, path), "unexpected call (query {:?})", call.query);
        (call, send)
    }

    /// `GET path`, answered with `object`, or 404 when `None`.
    pub async fn get(&mut self, path: &str, object: Option<Value>) {
        let (_, send) = self.expect(Method::GET, path).await;
        match object {
            Some(object) => reply(send, StatusCode::OK, &object),
            None => reply(send, StatusCode::NOT_FOUND, &not_found(path)),
        }
    }

    /// A merge patch of `path` (a status subresource); answered with `object` patched as the
    /// API server would. Returns the patch.
    pub async fn merge_status(&mut self, path: &str, mut object: Value) -> Value {
        let (call, send) = self.expect(Method::PATCH, path).await;
        assert_eq!(call.content_type, "application/merge-patch+json");
        assert_eq!(call.body.as_object().map(|o| o.keys().collect::<Vec<_>>()), Some(vec![&"status".to_string()]));
        merge_patch(&mut object, &call.body);
        reply(send, StatusCode::OK, &object);
        call.body
    }

    /// A create (`POST path`); answered 201 with the posted object. Returns the posted object.
    pub async fn create(&mut self, path: &str) -> Value {
        let (call, send) = self.expect(Method::POST, path).await;
        reply(send, StatusCode::CREATED, &call.body);
        call.body
    }

    /// A replace (`PUT path`); answered with the object sent. Returns the object sent.
    pub async fn replace(&mut self, path: &str) -> Value {
        let (call, send) = self.expect(Method::PUT, path).await;
        reply(send, StatusCode::OK, &call.body);
        call.body
    }

    /// `method path`, answered with an API error of `code` (409 Conflict, 500, ...). Returns
    /// the body sent.
    pub async fn fail(&mut self, method: Method, path: &str, code: u16) -> Value {
        let (call, send) = self.expect(method, path).await;
        let status = StatusCode::from_u16(code).expect("an HTTP status code");
        let reason = status.canonical_reason().unwrap_or("Failure").replace(' ', "");
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path}: {reason}"), "reason": reason, "code": code
        });
        reply(send, status, &body);
        call.body
    }

    /// Answers the next call, whatever it is, with an API error of `code`; `None` once the
    /// client is gone.
    pub async fn fail_any(&mut self, code: u16) -> Option<()> {
        let (request, send) = self.0.next_request().await?;
        let path = request.uri().path().to_string();
        let status = StatusCode::from_u16(code).expect("an HTTP status code");
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path}: failed"), "reason": "InternalError", "code": code
        });
        reply(send, status, &body);
        Some(())
    }

    /// An Event published in the fixtures' namespace, asserted to have `reason` and `type_`
    /// (`Normal` or `Warning`). Returns the Event.
    pub async fn event(&mut self, type_: &str, reason: &str) -> Value {
        let event = self.create(&format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events")).await;
        assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some(type_), Some(reason)), "{event}");
        event
    }

    /// Asserts the client made no further call: the next request finds every client dropped.
    pub async fn assert_no_more_calls(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected extra call {} {}", request.method(), request.uri());
        }
    }
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (_, Some(_)) => {
            *target = Value::Object(Default::default());
            merge_patch(target, patch);
        }
        _ => *target = patch.clone(),
    }
}

/// The API server's answer for an object that does not exist.
fn not_found(path: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{path} not found"), "reason": "NotFound", "code": 404
    })
}

fn reply(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    send.send_response(Response::builder().status(status).body(Body::from(bytes)).unwrap());
}

/// Runs `reconcile` against the `script` of API server answers, both bounded in time; then
/// checks that nothing beyond the script was called.
pub async fn run_scenario<R, S>(api: ApiServer, reconcile: R, script: impl FnOnce(ApiServer) -> S) -> R::Output
where
    R: Future,
    S: Future<Output = ApiServer> + Send + 'static,
{
    let server = tokio::spawn(script(api));
    let outcome = tokio::time::timeout(SCENARIO_LIMIT, reconcile).await.expect("reconcile did not finish");
    let api = tokio::time::timeout(SCENARIO_LIMIT, server)
        .await
        .expect("the script waited for a call that never came")
        .expect("script assertions");
    tokio::time::timeout(SCENARIO_LIMIT, api.assert_no_more_calls()).await.expect("client still alive");
    outcome
}

/// Namespace of every fixture object.
pub const NAMESPACE: &str = "default";

/// Integration `crm` of portal 62515, token in Secret `hubspot` key `token`, client secret in
/// the same Secret under `client-secret`, calling HubSpot at `base_url`.
pub fn integration(base_url: &str, required_scopes: &[&str]) -> HubSpotIntegration {
    let mut i = HubSpotIntegration::new(
        "crm",
        HubSpotIntegrationSpec {
            portal_id: Some(62515),
            api: ApiSettings { base_url: base_url.into(), ..Default::default() },
            credentials: Credentials {
                private_app_token: Some(SecretKeyRef { name: "hubspot".into(), key: "token".into() }),
                oauth: None,
            },
            required_scopes: required_scopes.iter().map(|s| s.to_string()).collect(),
            webhooks: Some(WebhookSettings {
                client_secret: SecretKeyRef { name: "hubspot".into(), key: "client-secret".into() },
                public_url: Some("https://hooks.example.com/webhooks/hubspot".into()),
                subscriptions: vec![],
                max_concurrent_requests: None,
                management: None,
            }),
            receiver: Default::default(),
        },
    );
    i.metadata.namespace = Some(NAMESPACE.into());
    i.metadata.uid = Some("5f0e7f55-0c1e-4c38-9d43-1f1e6a1b2c3d".into());
    i.metadata.generation = Some(1);
    i.metadata.resource_version = Some("10".into());
    i
}

/// Mapping `contacts` of integration `integration`: match on `email`, map `fields`, deliver
/// to a file.
pub fn mapping(integration: &str, fields: &[&str]) -> PropertyMapping {
    let mut m = PropertyMapping::new(
        "contacts",
        PropertyMappingSpec {
            destinations: vec![Destination {
                file: Some(FileDestination { path: "contacts.jsonl".into() }),
                ..Default::default()
            }],
            ..PropertyMappingSpec::new(
                integration,
                MappedRecords::new(
                    "contacts",
                    MatchKey::new("email", "email"),
                    fields.iter().map(|f| FieldMapping::new(*f, *f, Direction::ToExternal)).collect(),
                ),
            )
        },
    );
    m.metadata.namespace = Some(NAMESPACE.into());
    m.metadata.uid = Some("8a4d1c7e-2b3f-4e5a-9c6d-7e8f9a0b1c2d".into());
    m.metadata.generation = Some(4);
    m.metadata.resource_version = Some("20".into());
    m
}

/// The spec of property `loyalty_tier` of integration `crm`: an enumeration (select) on
/// contacts with options gold and silver, in group `loyalty` (created when missing).
pub fn property_spec() -> HubSpotPropertySpec {
    HubSpotPropertySpec {
        integration_ref: model::api::property::IntegrationRef { name: "crm".into() },
        object_type: "contacts".into(),
        name: "loyalty_tier".into(),
        label: "Loyalty tier".into(),
        description: Some("Tier in the loyalty programme".into()),
        type_: PropertyType::Enumeration,
        field_type: FieldType::Select,
        group_name: "loyalty".into(),
        group: Some(PropertyGroupSpec { name: "loyalty".into(), label: "Loyalty".into() }),
        options: vec![
            PropertyOptionSpec { label: "Gold".into(), value: "gold".into(), display_order: None, hidden: false },
            PropertyOptionSpec { label: "Silver".into(), value: "silver".into(), display_order: None, hidden: false },
        ],
        has_unique_value: false,
        hidden: None,
        form_field: Some(true),
        display_order: None,
        deletion_policy: DeletionPolicy::Orphan,
        management_policy: ManagementPolicy::Manage,
    }
}

/// The `HubSpotProperty` `loyalty-tier` with `spec`, already carrying the finalizer.
pub fn property_resource(spec: HubSpotPropertySpec) -> HubSpotProperty {
    let mut p = HubSpotProperty::new("loyalty-tier", spec);
    p.metadata.namespace = Some(NAMESPACE.into());
    p.metadata.uid = Some("3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f".into());
    p.metadata.generation = Some(2);
    p.metadata.resource_version = Some("30".into());
    p.metadata.finalizers = Some(vec![crate::property::FINALIZER.into()]);
    p
}

/// A HubSpot client of `emulator` calling with `token`.
pub fn emulator_client(emulator: &RunningEmulator, token: &str) -> HubSpotClient {
    HubSpotClient::new(ClientSettings {
        base_url: emulator.base_url(),
        api_version: "v3".into(),
        access_token: token.into(),
        tier: Default::default(),
    })
}

/// `object` with the annotation `key: value` added.
pub fn annotated<K: kube::Resource>(mut object: K, key: &str, value: &str) -> K {
    object.meta_mut().annotations.get_or_insert_with(Default::default).insert(key.into(), value.into());
    object
}

/// Secret `hubspot` with the given keys, as the API server returns it (base64 `data`).
pub fn hubspot_secret(entries: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> =
        entries.iter().map(|(k, v)| (k.to_string(), Value::String(BASE64.encode(v)))).collect();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "hubspot", "namespace": NAMESPACE, "resourceVersion": "5" },
        "type": "Opaque", "data": data
    })
}

pub fn to_json(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap()
}

/// The condition of `type_` in a status patch body.
pub fn condition<'a>(patch: &'a Value, type_: &str) -> &'a Value {
    patch["status"]["conditions"]
        .as_array()
        .expect("conditions in the status patch")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {patch}"))
}

/// `(status, reason)` of the condition of `type_` in a status patch body.
pub fn condition_state(patch: &Value, type_: &str) -> (String, String) {
    let c = condition(patch, type_);
    (c["status"].as_str().unwrap().to_string(), c["reason"].as_str().unwrap().to_string())
}

/// A HubSpot emulator on an ephemeral port, for portal 62515, accepting each token with
/// exactly the scopes listed.
pub async fn hubspot(tokens: &[(&str, &[&str])]) -> RunningEmulator {
    hubspot_app(tokens, &[]).await
}

/// `hubspot(tokens)` whose app (id 54321, developer API key `emulator-developer-api-key`)
/// starts with these webhook subscriptions (`contact.creation`, `contact.propertyChange:email`);
/// none: every event type.
pub async fn hubspot_app(tokens: &[(&str, &[&str])], subscriptions: &[&str]) -> RunningEmulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding an ephemeral port");
    let config = EmulatorConfig {
        tokens: tokens
            .iter()
            .map(|(token, scopes)| TokenGrant {
                token: token.to_string(),
                scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            })
            .collect(),
        portal_id: 62515,
        subscriptions: subscriptions.iter().map(|s| s.parse().expect("a subscription flag")).collect(),
        ..Default::default()
    };
    RunningEmulator::start(config, listener).await.expect("starting the emulator")
}

/// The OAuth app the emulator of [`hubspot_oauth`] knows.
pub const OAUTH_CLIENT_ID: &str = "client-1";
pub const OAUTH_CLIENT_SECRET: &str = "client-secret-1";
pub const OAUTH_REFRESH_TOKEN: &str = "na1-refresh-token-1";

/// An emulated HubSpot portal 62515 with the OAuth app [`OAUTH_CLIENT_ID`] installed (every
/// scope) and its refresh token [`OAUTH_REFRESH_TOKEN`].
pub async fn hubspot_oauth() -> RunningEmulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding an ephemeral port");
    let config = EmulatorConfig {
        oauth_apps: vec![format!("{OAUTH_CLIENT_ID}:{OAUTH_CLIENT_SECRET}").parse().unwrap()],
        refresh_tokens: vec![format!("{OAUTH_REFRESH_TOKEN}={OAUTH_CLIENT_ID}").parse().unwrap()],
        portal_id: 62515,
        ..Default::default()
    };
    RunningEmulator::start(config, listener).await.expect("starting the emulator")
}

/// `integration` with the OAuth app's credentials in Secret `hubspot-app` (keys
/// `client-secret` and `refresh-token`) instead of a private app token.
pub fn with_oauth(mut integration: HubSpotIntegration) -> HubSpotIntegration {
    integration.spec.credentials = Credentials {
        private_app_token: None,
        oauth: Some(model::api::integration::OAuthSettings {
            client_id: OAUTH_CLIENT_ID.into(),
            client_secret: SecretKeyRef { name: "hubspot-app".into(), key: "client-secret".into() },
            refresh_token: SecretKeyRef { name: "hubspot-app".into(), key: "refresh-token".into() },
            token_endpoint: None,
        }),
    };
    integration
}

/// The paths of the requests the emulator answered, in order (tokens in paths redacted).
pub async fn hubspot_calls(emulator: &RunningEmulator) -> Vec<String> {
    hubspot_calls_at(&emulator.base_url()).await
}

/// [`hubspot_calls`] of the emulator at `base_url`, for futures that do not hold the emulator.
pub async fn hubspot_calls_at(base_url: &str) -> Vec<String> {
    emulator_log(base_url).await.iter().map(|r| r["path"].as_str().unwrap().to_string()).collect()
}

/// The requests the emulator at `base_url` answered, in order, as it logs them.
async fn emulator_log(base_url: &str) -> Vec<Value> {
    reqwest::get(format!("{base_url}/_emulator/requests")).await.unwrap().json().await.unwrap()
}

/// A Kubernetes API stand-in on a free port holding `integration`, its token Secret (`token`)
/// and `mapping`, and a context whose client calls it: for tests that run a whole controller,
/// watches included.
pub async fn stand_in_context(
    integration: &HubSpotIntegration,
    token: &str,
    mapping: &PropertyMapping,
) -> (Arc<Context>, FakeApiServer) {
    let api = FakeApiServer::default();
    api.insert("hubspotintegrations", to_json(integration));
    api.insert("secrets", hubspot_secret(&[("token", token)]));
    api.insert("propertymappings", to_json(mapping));
    let ctx = served_context(&api).await;
    let (watching, client) = (ctx.clone(), ctx.client.clone());
    tokio::spawn(async move { watching.integrations.watch(client, Some(NAMESPACE)).await });
    (ctx, api)
}

/// Serves `api` on a free port and returns a context whose client calls it; nothing watches
/// anything yet.
pub async fn served_context(api: &FakeApiServer) -> Arc<Context> {
    let client = fake_api_client(api).await;
    Arc::new(Context::new(client, "ghcr.io/hubspot-operator/hubspot-operator:test"))
}

/// Fills `ctx`'s integration cache as its watch would on listing `integrations` (JSON).
pub fn given_integrations(ctx: &Context, integrations: impl IntoIterator<Item = Value>) {
    ctx.integrations.apply(&kube::runtime::watcher::Event::Init);
    for integration in integrations {
        let integration = serde_json::from_value(integration).expect("a HubSpotIntegration");
        ctx.integrations.apply(&kube::runtime::watcher::Event::InitApply(integration));
    }
    ctx.integrations.apply(&kube::runtime::watcher::Event::InitDone);
}

/// Runs `controller` with `reconcile` (counted in the context's metrics, see [`reconciles`]) in
/// a task of its own, until the task is aborted.
pub fn spawn_controller<K, R, F>(controller: Controller<K>, reconcile: R, ctx: Arc<Context>) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<Context>) -> F + Copy + Send + 'static,
    F: Future<Output = Result<Action, Error>> + Send + 'static,
{
    tokio::spawn(controller.run(instrumented(reconcile), error_policy, ctx).for_each(|_| async {}))
}

/// The calls the stand-in answered, once half a second went by without any: the controllers
/// have settled.
pub async fn settled_calls(api: &FakeApiServer) -> ApiCalls {
    tokio::time::timeout(SCENARIO_LIMIT, async {
        let mut last = api.calls();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = api.calls();
            if now == last {
                return now;
            }
            last = now;
        }
    })
    .await
    .expect("the controllers never settled")
}

/// Reconciles of kind `K` finished so far in `ctx`, whatever their result.
pub fn reconciles<K: Resource<DynamicType = ()>>(ctx: &Context) -> u64 {
    let controller = K::kind(&()).to_lowercase();
    ["success", "requeue", "error"]
        .map(|result| {
            let labels = ResultLabels { controller: controller.clone(), result: result.into() };
            ctx.metrics.reconcile_total.get_or_create(&labels).get()
        })
        .iter()
        .sum()
}

/// Waits until more reconciles of kind `K` finished than `before`, a count taken before the
/// write whose reconcile is awaited (taken after, it may already count that reconcile).
pub async fn more_reconciles_than<K: Resource<DynamicType = ()>>(ctx: &Context, before: u64) -> u64 {
    tokio::time::timeout(SCENARIO_LIMIT, async {
        loop {
            let now = reconciles::<K>(ctx);
            if now > before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no reconcile came")
}

/// A receiver's public and status ports on loopback, over real stores in a temporary
/// directory: what its `GET /sync/status` reports of the mappings is what the test tells
/// `metrics.activity`.
pub struct ReportingReceiver {
    /// The public port, which does not serve `/sync/status`.
    pub address: std::net::SocketAddr,
    pub status_address: std::net::SocketAddr,
    pub metrics: Arc<receiver::metrics::Metrics>,
    _dir: tempfile::TempDir,
    _servers: [JoinHandle<()>; 2],
}

impl ReportingReceiver {
    pub async fn start(mappings: &[&str]) -> ReportingReceiver {
        use receiver::{ServerState, router, status_router};
        let dir = tempfile::tempdir().unwrap();
        let config: model::config::ReceiverConfig = serde_json::from_value(json!({
            "integration": "default/crm",
            "dataDir": dir.path(),
            "hubspot": { "baseUrl": "http://127.0.0.1:9", "accessToken": "unused" },
            "webhooks": { "clientSecret": "unused" },
        }))
        .unwrap();
        let metrics = Arc::new(receiver::metrics::Metrics::default());
        let log: Arc<dyn receiver::eventlog::EventLog> =
            Arc::new(receiver::eventlog::EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
        let reporter = receiver::sync::report::SyncReporter {
            log: log.clone(),
            activity: metrics.activity.clone(),
            dead_letters: receiver::sync::DeadLetterStore::open(
                &dir.path().join("dead-letters.db"),
                Default::default(),
            )
            .unwrap(),
            reverse: None,
            mappings: mappings.iter().map(|m| m.to_string()).collect(),
        };
        let state = ServerState::new(&config, log, metrics.clone()).with_sync_reporter(reporter);
        let serve = |app: axum::Router, listener: tokio::net::TcpListener| {
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() })
        };
        let (public, status) = (local_listener().await, local_listener().await);
        let (address, status_address) = (public.local_addr().unwrap(), status.local_addr().unwrap());
        let servers = [serve(router(state.clone()), public), serve(status_router(state), status)];
        ReportingReceiver { address, status_address, metrics, _dir: dir, _servers: servers }
    }

    /// The EndpointSlice of this receiver alone.
    pub fn endpoints(&self) -> Value {
        receiver_endpoints(&["127.0.0.1"], self.address.port(), self.status_address.port())
    }
}

async fn local_listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An EndpointSlice of the receiver Service of integration `crm`, with one ready endpoint per
/// address, whose `http` port is `http_port` and `metrics` port `metrics_port`.
pub fn receiver_endpoints(addresses: &[&str], http_port: u16, metrics_port: u16) -> Value {
    let endpoints: Vec<Value> =
        addresses.iter().map(|a| json!({ "addresses": [a], "conditions": { "ready": true } })).collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "crm-receiver-x7k2p", "namespace": NAMESPACE,
                      "labels": { "kubernetes.io/service-name": "crm-receiver" } },
        "addressType": "IPv4",
        "ports": [
            { "name": "http", "port": http_port, "protocol": "TCP" },
            { "name": "metrics", "port": metrics_port, "protocol": "TCP" },
        ],
        "endpoints": endpoints,
    })
}

/// The value of the sample `line_start` (metric name and labels) in `metrics`.
pub fn sample(metrics: &str, line_start: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
}

/// HubSpot's property exactly as `property_spec()` declares it.
pub fn hubspot_property() -> hubspot::models::Property {
    hubspot::models::Property {
        name: "loyalty_tier".into(),
        label: "Loyalty tier".into(),
        type_: "enumeration".into(),
        field_type: "select".into(),
        group_name: "loyalty".into(),
        description: "Tier in the loyalty programme".into(),
        has_unique_value: false,
        hubspot_defined: None,
        options: vec![
            hubspot::models::PropertyOption {
                label: "Gold".into(),
                value: "gold".into(),
                display_order: 0,
                hidden: false,
            },
            hubspot::models::PropertyOption {
                label: "Silver".into(),
                value: "silver".into(),
                display_order: 1,
                hidden: false,
            },
        ],
        hidden: false,
        form_field: true,
        display_order: -1,
    }
}

/// `property_resource(property_spec())` as seen right after a successful visit at `at` that
/// handled the reconcile request `request`.
pub fn fresh_property(at: k8s_openapi::jiff::Timestamp, request: Option<&str>) -> HubSpotProperty {
    use model::api::property::condition_types::READY;
    let mut p = property_resource(property_spec());
    let ready = model::api::conditions::condition(READY, Some(true), "InSync", "in sync", Some(2));
    p.status = Some(model::api::HubSpotPropertyStatus {
        conditions: vec![ready],
        observed_generation: Some(2),
        last_sync_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
        hubspot_defined: Some(false),
        last_handled_reconcile_at: request.map(String::from),
        ..Default::default()
    });
    p
}

/// A client of `api`, served on a free port from now on.
async fn fake_api_client(api: &FakeApiServer) -> Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = kube::Config::new(format!("http://{}", listener.local_addr().unwrap()).parse().unwrap());
    config.default_namespace = NAMESPACE.into();
    tokio::spawn(api.clone().serve(listener));
    Client::try_from(config).unwrap()
}

/// A Kubernetes API stand-in holding `objects` (`(plural, object)`), and a context whose client
/// calls it and whose integration cache holds `integrations`, as its watch would have listed
/// them: for reconciles whose outcome is read back from the stand-in.
pub async fn fake_api_context(
    objects: impl IntoIterator<Item = (&'static str, Value)>,
    integrations: impl IntoIterator<Item = Value>,
) -> (Arc<Context>, FakeApiServer) {
    let api = FakeApiServer::default();
    for (plural, object) in objects {
        api.insert(plural, object);
    }
    let client = fake_api_client(&api).await;
    let ctx = Arc::new(Context::new(client, "ghcr.io/hubspot-operator/hubspot-operator:test"));
    given_integrations(&ctx, integrations);
    (ctx, api)
}

/// `object` as `api` holds it now.
pub fn stored<K>(api: &FakeApiServer, object: &K) -> K
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let namespace = object.meta().namespace.as_deref();
    let name = object.meta().name.as_deref().expect("a named object");
    let path = format!("{}/{name}", K::url_path(&(), namespace));
    serde_json::from_value(api.get(&path).unwrap_or_else(|| panic!("{path} is not stored"))).expect("a stored object")
}

/// `(type, reason)` of each Event `api` was sent, sorted: what was announced, whatever the order.
pub fn event_reasons(api: &FakeApiServer) -> Vec<(String, String)> {
    let mut reasons: Vec<(String, String)> = api
        .events()
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or_default().into(), e["reason"].as_str().unwrap_or_default().into()))
        .collect();
    reasons.sort();
    reasons
}

/// `(type, reason)` pairs, sorted, to compare with [`event_reasons`].
pub fn reasons(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut reasons: Vec<(String, String)> = expected.iter().map(|(t, r)| (t.to_string(), r.to_string())).collect();
    reasons.sort();
    reasons
}

/// The one Event of `reason` `api` was sent.
pub fn event(api: &FakeApiServer, reason: &str) -> Value {
    let mut found = api.events().into_iter().filter(|e| e["reason"] == reason);
    let event = found.next().unwrap_or_else(|| panic!("no {reason} Event"));
    assert!(found.next().is_none(), "more than one {reason} Event");
    event
}

/// `(method, path, status)` of each request the emulator answered, sorted: which calls and how
/// many, whatever their order.
pub async fn hubspot_requests(emulator: &RunningEmulator) -> Vec<(String, String, u64)> {
    let mut requests: Vec<(String, String, u64)> = emulator_log(&emulator.base_url())
        .await
        .iter()
        .map(|r| {
            (r["method"].as_str().unwrap().into(), r["path"].as_str().unwrap().into(), r["status"].as_u64().unwrap())
        })
        .collect();
    requests.sort();
    requests
}

/// `(method, path, status)` triples, sorted, to compare with [`hubspot_requests`].
pub fn requests(expected: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    let mut requests: Vec<(String, String, u64)> =
        expected.iter().map(|(m, p, s)| (m.to_string(), p.to_string(), *s)).collect();
    requests.sort();
    requests
}

/// Forgets the requests the emulator answered so far (a test's own setup calls).
pub async fn forget_hubspot_requests(emulator: &RunningEmulator) {
    reqwest::Client::new().delete(format!("{}/_emulator/requests", emulator.base_url())).send().await.unwrap();
}

/// HubSpot, and the Kubernetes API stand-in holding integration `crm` calling it, with a
/// context calling both whose integration cache holds `crm`.
pub struct Scene {
    pub hubspot: RunningEmulator,
    pub ctx: Arc<Context>,
    pub api: FakeApiServer,
}

impl Scene {
    /// HubSpot accepting `token` with `scopes`; the stand-in holding integration `crm` (as
    /// `edit` makes it), Secret `hubspot` with `token`, and `objects` (`(plural, object)`).
    pub async fn new(
        token: &str,
        scopes: &[&str],
        edit: impl FnOnce(HubSpotIntegration) -> HubSpotIntegration,
        objects: impl IntoIterator<Item = (&'static str, Value)>,
    ) -> Scene {
        let hubspot = hubspot(&[(token, scopes)]).await;
        let integration = to_json(&edit(integration(&hubspot.base_url(), &[])));
        let given = [("hubspotintegrations", integration.clone()), ("secrets", hubspot_secret(&[("token", token)]))];
        let (ctx, api) = fake_api_context(given.into_iter().chain(objects), [integration]).await;
        Scene { hubspot, ctx, api }
    }
}
