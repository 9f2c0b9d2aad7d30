//! The emulator's own API under `/_emulator/` (no authentication): act as a HubSpot user in the
//! UI, inspect stored objects, the log of API calls received and webhook delivery, inject
//! faults, load fixtures, and move the clock token expiry reads.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Shared, resolve_type};
use crate::auth::FIRST_USER_ID;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::faults::FaultPlan;
use crate::fixtures;
use crate::shared::Emulator;
use crate::store::timeline::AppEventType;
use crate::store::{Actor, Selection, Write, parse_properties};
use crate::webhooks::settings::AppWebhooks;

/// The user the admin API acts as.
const UI_USER: Actor = Actor::User { user_id: FIRST_USER_ID };

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CodeRequest {
    client_id: String,
    redirect_uri: Option<String>,
}

/// `POST /_emulator/oauth/codes` `{clientId, redirectUri?}` → `{code}`: what HubSpot hands the
/// app's redirect URL when a user installs it.
pub async fn issue_code(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
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
pub async fn issue_refresh_token(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let request: RefreshTokenRequest =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let token = emu.oauth.lock().expect("oauth lock").issue_refresh_token(&request.client_id, request.refresh_token)?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "refreshToken": token }))).into_response())
}

fn clock_json(emu: &Emulator) -> Value {
    json!({ "nowMs": emu.clock.now_ms(), "offsetMs": emu.clock.offset_ms() })
}

pub async fn show_clock(State(emu): Shared) -> Response {
    axum::Json(clock_json(&emu)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    seconds: u64,
}

/// `POST /_emulator/clock/advance` `{seconds}`: moves the clock token expiry uses forward.
pub async fn advance_clock(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
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

pub async fn create_as_user(State(emu): Shared, Path(t): Path<String>, body: Bytes) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let properties = parse_properties(body.get("properties"))?;
    let mut store = emu.store.lock().expect("store lock");
    let created = store.apply_all(t, vec![Write::Create { properties }], UI_USER)?;
    Ok((StatusCode::CREATED, axum::Json(created[0].to_json(t, &store.of(t).properties, Selection::All)))
        .into_response())
}

pub async fn update_as_user(
    State(emu): Shared,
    Path((t, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let properties = parse_properties(body.get("properties"))?;
    let mut store = emu.store.lock().expect("store lock");
    let updated = store.apply_all(t, vec![Write::Update { id, properties }], UI_USER)?;
    Ok(axum::Json(updated[0].to_json(t, &store.of(t).properties, Selection::All)).into_response())
}

pub async fn archive_as_user(State(emu): Shared, Path((t, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let t = resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let mut store = emu.store.lock().expect("store lock");
    if store.archive(t, id, UI_USER) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiFailure::not_found("resource not found"))
    }
}

pub async fn raw_object(State(emu): Shared, Path((t, id)): Path<(String, String)>) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let store = emu.store.lock().expect("store lock");
    let object = store.of(t).objects.get(&id).ok_or_else(|| ApiFailure::not_found("resource not found"))?;
    Ok(axum::Json(object.to_json(t, &store.of(t).properties, Selection::All)).into_response())
}

pub async fn raw_objects(State(emu): Shared, Path(t): Path<String>) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
    let store = emu.store.lock().expect("store lock");
    let of = store.of(t);
    let objects: Vec<Value> = of.objects.values().map(|o| o.to_json(t, &of.properties, Selection::All)).collect();
    Ok(axum::Json(objects).into_response())
}

pub async fn list_requests(State(emu): Shared) -> Response {
    let log = emu.requests.lock().expect("request log lock");
    axum::Json(log.entries().iter().collect::<Vec<_>>()).into_response()
}

/// `GET /_emulator/requests/counts`: every API call since the start or the last clear, counted
/// by method, path and status, with how many 429s the rate limits answered and how many answers
/// were injected faults.
pub async fn request_counts(State(emu): Shared) -> Response {
    axum::Json(emu.requests.lock().expect("request log lock").counts_json()).into_response()
}

pub async fn clear_requests(State(emu): Shared) -> StatusCode {
    emu.requests.lock().expect("request log lock").clear();
    StatusCode::NO_CONTENT
}

pub async fn webhook_status(State(emu): Shared) -> Response {
    axum::Json(emu.webhooks.snapshot()).into_response()
}

pub async fn show_faults(State(emu): Shared) -> Response {
    axum::Json(emu.faults.lock().expect("faults lock").current().cloned()).into_response()
}

pub async fn set_faults(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let plan: FaultPlan =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid fault plan: {e}")))?;
    plan.validate()?;
    emu.faults.lock().expect("faults lock").set(plan.clone());
    Ok(axum::Json(plan).into_response())
}

pub async fn clear_faults(State(emu): Shared) -> StatusCode {
    emu.faults.lock().expect("faults lock").clear();
    StatusCode::NO_CONTENT
}

/// `POST /_emulator/fixtures` with a YAML or JSON fixture (see `fixtures.rs`): 201 with what
/// was created, or 400 naming what is wrong, with nothing loaded.
pub async fn load_fixture(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let document = fixtures::parse(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let created = fixtures::load(&mut store, document)?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `POST /_emulator/reset`: an empty account again (HubSpot's own types and properties), the
/// webhook settings the flags gave, no request log, no fault plan, the flags' standing faults
/// and search lag. Tokens
/// and issued OAuth tokens stay valid; events already made are still delivered.
pub async fn reset(State(emu): Shared) -> StatusCode {
    emu.store.lock().expect("store lock").reset();
    *emu.app_webhooks.lock().expect("webhook settings lock") =
        AppWebhooks::new(emu.config.webhook_url.clone(), &emu.config.subscriptions, now_ms());
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

pub async fn show_search(State(emu): Shared) -> Response {
    axum::Json(search_json(&emu)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchSettings {
    indexing_lag_ms: u64,
}

/// `PUT /_emulator/search` `{indexingLagMs}`: how long writes take to show in search results.
pub async fn set_search(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let settings: SearchSettings =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    emu.search_lag_ms.store(settings.indexing_lag_ms, Ordering::Relaxed);
    Ok(axum::Json(search_json(&emu)).into_response())
}

/// `GET /_emulator/timeline/{t}/{id}`: the record's timeline as HubSpot's UI shows it, newest
/// first: `{results: [event with source (timelineEvent, appEvent), header, detail]}`.
pub async fn record_timeline(State(emu): Shared, Path((t, id)): Path<(String, String)>) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
    let id = object_id(&id)?;
    let store = emu.store.lock().expect("store lock");
    if !store.of(t).objects.contains_key(&id) {
        return Err(ApiFailure::not_found("resource not found"));
    }
    let results = store.timeline.record_timeline(t, id);
    Ok(axum::Json(json!({ "results": results })).into_response())
}

/// `GET /_emulator/app-event-types`: every app event type defined.
pub async fn list_app_event_types(State(emu): Shared) -> Response {
    let store = emu.store.lock().expect("store lock");
    let types: Vec<Value> = store.timeline.app_event_types.values().map(AppEventType::to_json).collect();
    axum::Json(json!(types)).into_response()
}

/// `POST /_emulator/app-event-types` with a project's `app-event` component (`{uid, type,
/// config}`), as `hs project upload` would deploy it: 201 with the event type.
pub async fn define_app_event_type(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let definition: Value =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))?;
    let mut store = emu.store.lock().expect("store lock");
    let event_type = AppEventType::from_definition(&definition, store.portal_id())?;
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
pub async fn declare_property_uses(
    State(emu): Shared,
    Path((t, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
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

pub async fn show_standing_faults(State(emu): Shared) -> Response {
    axum::Json(emu.faults.lock().expect("faults lock").standing()).into_response()
}

/// `PUT /_emulator/faults/standing` `[plan, ...]`: replaces the standing faults (what the
/// `--fault-*` flags set at start), which hit calls alongside the plan of `/_emulator/faults`.
pub async fn set_standing_faults(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let plans: Vec<FaultPlan> =
        serde_json::from_slice(&body).map_err(|e| ApiFailure::validation(&format!("Invalid fault plans: {e}")))?;
    plans.iter().try_for_each(FaultPlan::validate)?;
    emu.faults.lock().expect("faults lock").set_standing(plans.clone());
    Ok(axum::Json(plans).into_response())
}

pub async fn clear_standing_faults(State(emu): Shared) -> StatusCode {
    emu.faults.lock().expect("faults lock").set_standing(vec![]);
    StatusCode::NO_CONTENT
}
