//! The emulator's own API under `/_emulator/` (no authentication): act as a HubSpot user in the
//! UI, inspect stored objects, the log of API calls received and webhook delivery.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Emulator;
use super::auth::FIRST_USER_ID;
use super::error::{ApiFailure, ApiResult};
use super::faults::FaultPlan;
use super::oauth::SECRET_FORM_FIELDS;
use super::state::{Actor, Selection, Write, parse_properties};
use super::{fixtures, timeline};

/// How many API calls the request log keeps.
const REQUEST_LOG_CAPACITY: usize = 10_000;
/// Largest request body the log reads (bigger ones are refused, as HubSpot refuses them).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The user the admin API acts as.
const UI_USER: Actor = Actor::User { user_id: FIRST_USER_ID };

/// Marks an answer that is a dropped connection: logged with status 0.
#[derive(Clone, Copy)]
pub struct DroppedConnection;

/// One API call received.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Value,
    pub status: u16,
}

/// The last API calls, and counts of every call since the start (or the last clear), which
/// long load runs read when the log itself has long rolled over.
#[derive(Default)]
pub struct RequestLog {
    entries: VecDeque<LoggedRequest>,
    /// Calls by (method, path, status).
    counts: BTreeMap<(String, String, u16), u64>,
    /// Calls the rate limits refused (429s the emulator's limiters answered).
    rate_limited: u64,
    /// Calls answered by an injected fault (`/_emulator/faults` with a status).
    injected_faults: u64,
}

impl RequestLog {
    fn push(&mut self, entry: LoggedRequest) {
        *self.counts.entry((entry.method.clone(), entry.path.clone(), entry.status)).or_default() += 1;
        if self.entries.len() == REQUEST_LOG_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn count_rate_limited(&mut self) {
        self.rate_limited += 1;
    }

    pub fn count_injected_fault(&mut self) {
        self.injected_faults += 1;
    }

    fn clear(&mut self) {
        *self = RequestLog::default();
    }

    fn counts_json(&self) -> Value {
        let calls: Vec<Value> = self
            .counts
            .iter()
            .map(|((method, path, status), count)| json!({"method": method, "path": path, "status": status, "count": count}))
            .collect();
        json!({"calls": calls, "rateLimited": self.rate_limited, "injectedFaults": self.injected_faults})
    }
}

/// Records every API call (not the admin API's) with its answer's status. Token introspection
/// bodies name a token: that value is never recorded.
pub async fn record_request(State(emu): State<Arc<Emulator>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_emulator/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiFailure::validation("Request body is too large").into_response(),
    };
    let is_form = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut logged_body: Value =
        if is_form { form_fields(&bytes) } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    if let Some(token) = logged_body.get_mut("tokenKey") {
        *token = json!("[redacted]");
    }
    for field in SECRET_FORM_FIELDS {
        if let Some(secret) = logged_body.get_mut(*field) {
            *secret = json!("[redacted]");
        }
    }
    let method = parts.method.to_string();
    let path = redact_token_path(parts.uri.path());
    let query = parts.uri.query().map(redact_query);
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status =
        if response.extensions().get::<DroppedConnection>().is_some() { 0 } else { response.status().as_u16() };
    let entry = LoggedRequest { method, path, query, body: logged_body, status };
    emu.requests.lock().expect("request log lock").push(entry);
    response
}

/// A form body (the OAuth endpoints') as a JSON object of its fields; `null` when it is none.
fn form_fields(bytes: &[u8]) -> Value {
    let Ok(uri) = format!("/?{}", String::from_utf8_lossy(bytes)).parse::<axum::http::Uri>() else {
        return Value::Null;
    };
    match axum::extract::Query::<std::collections::BTreeMap<String, String>>::try_from_uri(&uri) {
        Ok(fields) if !bytes.is_empty() => json!(fields.0),
        _ => Value::Null,
    }
}

/// The developer API key travels in `?hapikey=`: the log shows `[redacted]` in its place.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("hapikey") => format!("{name}=[redacted]"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Token metadata paths name the token: the log shows `[redacted]` in its place.
fn redact_token_path(path: &str) -> String {
    for prefix in ["/oauth/v1/access-tokens/", "/oauth/v1/refresh-tokens/"] {
        if path.starts_with(prefix) && path.len() > prefix.len() {
            return format!("{prefix}[redacted]");
        }
    }
    path.to_string()
}

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/objects/{t}", get(raw_objects).post(create_as_user))
        .route("/objects/{t}/{id}", get(raw_object).patch(update_as_user).delete(archive_as_user))
        .route("/requests", get(list_requests).delete(clear_requests))
        .route("/requests/counts", get(request_counts))
        .route("/webhooks", get(webhook_status))
        .route("/faults", get(show_faults).put(set_faults).delete(clear_faults))
        .route("/faults/standing", get(show_standing_faults).put(set_standing_faults).delete(clear_standing_faults))
        .route("/oauth/codes", post(issue_code))
        .route("/oauth/refresh-tokens", post(issue_refresh_token))
        .route("/properties/{t}/{name}/used-by", put(declare_property_uses))
        .route("/fixtures", post(load_fixture))
        .route("/reset", post(reset))
        .route("/search", get(show_search).put(set_search))
        .route("/app-event-types", get(list_app_event_types).post(define_app_event_type))
        .route("/clock", get(show_clock))
        .route("/clock/advance", post(advance_clock))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CodeRequest {
    client_id: String,
    redirect_uri: Option<String>,
}

/// `POST /_emulator/oauth/codes` `{clientId, redirectUri?}` → `{code}`: what HubSpot hands the
/// app's redirect URL when a user installs it.
async fn issue_code(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let request: CodeRequest =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let code = emu.oauth.lock().expect("oauth lock").issue_code(&request.client_id, request.redirect_uri)?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "code": code }))).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RefreshTokenRequest {
    client_id: String,
    /// The token's value; a random one when absent.
    refresh_token: Option<String>,
}

/// `POST /_emulator/oauth/refresh-tokens` `{clientId, refreshToken?}` → `{refreshToken}`.
async fn issue_refresh_token(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let request: RefreshTokenRequest =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let token = emu.oauth.lock().expect("oauth lock").issue_refresh_token(&request.client_id, request.refresh_token)?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "refreshToken": token }))).into_response())
}

fn clock_json(emu: &Emulator) -> Value {
    json!({ "nowMs": emu.clock.now_ms(), "offsetMs": emu.clock.offset_ms() })
}

async fn show_clock(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(clock_json(&emu)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    seconds: u64,
}

/// `POST /_emulator/clock/advance` `{seconds}`: moves the clock token expiry uses forward.
async fn advance_clock(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let request: AdvanceRequest =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let ms = i64::try_from(request.seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| ApiFailure::validation("seconds is too large"))?;
    emu.clock.advance(ms);
    Ok(axum::Json(clock_json(&emu)).into_response())
}

fn object_id(id: &str) -> ApiResult<u64> {
    id.parse().map_err(|_| ApiFailure::not_found("resource not found"))
}

async fn create_as_user(State(emu): State<Arc<Emulator>>, Path(t): Path<String>, body: Bytes) -> ApiResult<Response> {
    let t = super::routes::resolve_type(&emu, &t)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let properties = parse_properties(body.get("properties"))?;
    let mut store = emu.store.lock().expect("store lock");
    let created = store.apply_all(t, vec![Write::Create { properties }], UI_USER)?;
    Ok((StatusCode::CREATED, axum::Json(created[0].to_json(t, &store.of(t).properties, Selection::All)))
        .into_response())
}

async fn update_as_user(
    State(emu): State<Arc<Emulator>>,
    Path((t, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = super::routes::resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let properties = parse_properties(body.get("properties"))?;
    let mut store = emu.store.lock().expect("store lock");
    let updated = store.apply_all(t, vec![Write::Update { id, properties }], UI_USER)?;
    Ok(axum::Json(updated[0].to_json(t, &store.of(t).properties, Selection::All)).into_response())
}

async fn archive_as_user(
    State(emu): State<Arc<Emulator>>,
    Path((t, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = super::routes::resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let mut store = emu.store.lock().expect("store lock");
    if store.archive(t, id, UI_USER) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiFailure::not_found("resource not found"))
    }
}

async fn raw_object(State(emu): State<Arc<Emulator>>, Path((t, id)): Path<(String, String)>) -> ApiResult<Response> {
    let t = super::routes::resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let store = emu.store.lock().expect("store lock");
    let object = store.of(t).objects.get(&id).ok_or_else(|| ApiFailure::not_found("resource not found"))?;
    Ok(axum::Json(object.to_json(t, &store.of(t).properties, Selection::All)).into_response())
}

async fn raw_objects(State(emu): State<Arc<Emulator>>, Path(t): Path<String>) -> ApiResult<Response> {
    let t = super::routes::resolve_type(&emu, &t)?;
    let store = emu.store.lock().expect("store lock");
    let of = store.of(t);
    let objects: Vec<Value> = of.objects.values().map(|o| o.to_json(t, &of.properties, Selection::All)).collect();
    Ok(axum::Json(objects).into_response())
}

async fn list_requests(State(emu): State<Arc<Emulator>>) -> Response {
    let log = emu.requests.lock().expect("request log lock");
    axum::Json(log.entries.iter().collect::<Vec<_>>()).into_response()
}

/// `GET /_emulator/requests/counts`: every API call since the start or the last clear, counted
/// by method, path and status, with how many 429s the rate limits answered and how many answers
/// were injected faults.
async fn request_counts(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(emu.requests.lock().expect("request log lock").counts_json()).into_response()
}

async fn clear_requests(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.requests.lock().expect("request log lock").clear();
    StatusCode::NO_CONTENT
}

async fn webhook_status(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(emu.webhooks.snapshot()).into_response()
}

async fn show_faults(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(emu.faults.lock().expect("faults lock").current().cloned()).into_response()
}

async fn set_faults(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let plan: FaultPlan =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid fault plan: {e}")))?;
    plan.validate()?;
    emu.faults.lock().expect("faults lock").set(plan.clone());
    Ok(axum::Json(plan).into_response())
}

async fn clear_faults(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.faults.lock().expect("faults lock").clear();
    StatusCode::NO_CONTENT
}

/// `POST /_emulator/fixtures` with a YAML or JSON fixture (see `fixtures.rs`): 201 with what
/// was created, or 400 naming what is wrong, with nothing loaded.
async fn load_fixture(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let document = fixtures::parse(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let created = fixtures::load(&mut store, document)?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `POST /_emulator/reset`: an empty account again (HubSpot's own types and properties), the
/// webhook settings the flags gave, no request log, no fault plan, the flags' standing faults
/// and search lag. Tokens
/// and issued OAuth tokens stay valid; events already made are still delivered.
async fn reset(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.store.lock().expect("store lock").reset();
    *emu.app_webhooks.lock().expect("webhook settings lock") = super::webhook_settings::AppWebhooks::new(
        emu.config.webhook_url.clone(),
        &emu.config.subscriptions,
        super::clock::now_ms(),
    );
    emu.requests.lock().expect("request log lock").clear();
    {
        let mut faults = emu.faults.lock().expect("faults lock");
        faults.clear();
        faults.set_standing(emu.config.faults.clone());
    }
    emu.search_lag_ms.store(emu.config.search_lag_ms, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

fn search_json(emu: &Emulator) -> Value {
    json!({ "indexingLagMs": emu.search_lag_ms.load(Ordering::Relaxed) })
}

async fn show_search(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(search_json(&emu)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchSettings {
    indexing_lag_ms: u64,
}

/// `PUT /_emulator/search` `{indexingLagMs}`: how long writes take to show in search results.
async fn set_search(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let settings: SearchSettings =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    emu.search_lag_ms.store(settings.indexing_lag_ms, Ordering::Relaxed);
    Ok(axum::Json(search_json(&emu)).into_response())
}

async fn list_app_event_types(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(timeline::app_event_types_json(&emu.store.lock().expect("store lock"))).into_response()
}

/// `POST /_emulator/app-event-types` with a project's `app-event` component (`{uid, type,
/// config}`), as `hs project upload` would deploy it: 201 with the event type.
async fn define_app_event_type(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let definition: Value =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let mut store = emu.store.lock().expect("store lock");
    let event_type = timeline::AppEventType::from_definition(&definition, store.portal_id())?;
    let defined = event_type.to_json();
    store.timeline_mut().define_app_event_type(event_type)?;
    Ok((StatusCode::CREATED, axum::Json(defined)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PropertyUses {
    used_by: Vec<String>,
}

/// `PUT /_emulator/properties/{t}/{name}/used-by` `{usedBy: ["workflow Onboarding"]}`: what in
/// HubSpot (workflows, lists, reports the emulator does not have) uses the property, so that
/// archiving it is refused as HubSpot refuses it. An empty list frees it.
async fn declare_property_uses(
    State(emu): State<Arc<Emulator>>,
    Path((t, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = super::routes::resolve_type(&emu, &t)?;
    let uses: PropertyUses =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let mut store = emu.store.lock().expect("store lock");
    let def = store
        .of_mut(t)
        .properties
        .get_mut(&name)
        .filter(|d| !d.archived)
        .ok_or_else(|| ApiFailure::not_found(&format!("Property {name} does not exist")))?;
    def.used_by = uses.used_by;
    Ok(axum::Json(json!({ "usedBy": def.used_by })).into_response())
}

async fn show_standing_faults(State(emu): State<Arc<Emulator>>) -> Response {
    axum::Json(emu.faults.lock().expect("faults lock").standing()).into_response()
}

/// `PUT /_emulator/faults/standing` `[plan, ...]`: replaces the standing faults (what the
/// `--fault-*` flags set at start), which hit calls alongside the plan of `/_emulator/faults`.
async fn set_standing_faults(State(emu): State<Arc<Emulator>>, body: Bytes) -> ApiResult<Response> {
    let plans: Vec<FaultPlan> =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid fault plans: {e}")))?;
    plans.iter().try_for_each(FaultPlan::validate)?;
    emu.faults.lock().expect("faults lock").set_standing(plans.clone());
    Ok(axum::Json(plans).into_response())
}

async fn clear_standing_faults(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.faults.lock().expect("faults lock").set_standing(vec![]);
    StatusCode::NO_CONTENT
}
