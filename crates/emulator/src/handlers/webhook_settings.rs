//! HubSpot's management API for the app's webhook configuration (legacy public apps,
//! authenticated with the developer API key in `?hapikey=`): `GET|PUT|DELETE
//! /webhooks/v3/{appId}/settings`, `GET|POST /webhooks/v3/{appId}/subscriptions`, `GET|PATCH|DELETE
//! .../subscriptions/{subscriptionId}`, `POST .../subscriptions/batch/update`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Params, Shared, batch_response, check_developer_key, json_response, parse_json};
use crate::clock::now_ms;
use crate::config::Subscription;
use crate::error::{ApiFailure, ApiResult};
use crate::shared::Emulator;
use crate::webhooks::settings::{
    AppWebhooks, DEFAULT_MAX_CONCURRENT_REQUESTS, FIRST_SUBSCRIPTION_ID, MAX_SUBSCRIPTIONS,
    MIN_MAX_CONCURRENT_REQUESTS, SharedWebhooks, SubscriptionRecord,
};

/// Checks the developer API key and that the path names the emulated app; its configuration.
fn authorize<'a>(emu: &'a Emulator, params: &[(String, String)], app_id: &str) -> ApiResult<&'a SharedWebhooks> {
    check_developer_key(emu, params, app_id)?;
    Ok(&emu.app_webhooks)
}

fn lock(shared: &SharedWebhooks) -> std::sync::MutexGuard<'_, AppWebhooks> {
    shared.lock().expect("webhook settings lock")
}

pub async fn get_settings(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let webhooks = lock(authorize(&emu, &params, &app_id)?);
    let settings = webhooks.settings_json().ok_or_else(|| ApiFailure::not_found("No webhook settings for this app"))?;
    Ok(json_response(StatusCode::OK, settings))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Throttling {
    max_concurrent_requests: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsBody {
    target_url: Option<String>,
    throttling: Option<Throttling>,
}

pub async fn put_settings(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let shared = authorize(&emu, &params, &app_id)?;
    let body: SettingsBody = parse_json(&body)?;
    let url = body.target_url.ok_or_else(|| ApiFailure::validation("targetUrl is required"))?;
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return Err(ApiFailure::validation(&format!("targetUrl {url} is not a valid URL"))),
    }
    let max = body
        .throttling
        .and_then(|t| t.max_concurrent_requests)
        .ok_or_else(|| ApiFailure::validation("throttling.maxConcurrentRequests is required"))?;
    if max < MIN_MAX_CONCURRENT_REQUESTS {
        return Err(ApiFailure::validation(&format!(
            "throttling.maxConcurrentRequests must be at least {MIN_MAX_CONCURRENT_REQUESTS}, was {max}"
        )));
    }
    let now = now_ms();
    let mut webhooks = lock(shared);
    if webhooks.target_url.is_none() {
        webhooks.settings_created_at_ms = now;
    }
    webhooks.target_url = Some(url);
    webhooks.max_concurrent_requests = max;
    webhooks.settings_updated_at_ms = now;
    Ok(json_response(StatusCode::OK, webhooks.settings_json().expect("just set")))
}

pub async fn delete_settings(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    let mut webhooks = lock(authorize(&emu, &params, &app_id)?);
    webhooks.target_url = None;
    webhooks.max_concurrent_requests = DEFAULT_MAX_CONCURRENT_REQUESTS;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_subscriptions(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let webhooks = lock(authorize(&emu, &params, &app_id)?);
    let results: Vec<Value> =
        webhooks.subscriptions.values().filter(|s| !s.implicit).map(SubscriptionRecord::to_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionBody {
    event_type: Option<String>,
    property_name: Option<String>,
    #[serde(default)]
    active: bool,
}

pub async fn create_subscription(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let shared = authorize(&emu, &params, &app_id)?;
    let body: SubscriptionBody = parse_json(&body)?;
    let event_type = body.event_type.ok_or_else(|| ApiFailure::validation("eventType is required"))?;
    let spec = match &body.property_name {
        Some(p) => format!("{event_type}:{p}"),
        None => event_type.clone(),
    };
    let parsed: Subscription = spec.parse().map_err(|e: String| ApiFailure::validation(&e))?;
    if event_type.ends_with(".propertyChange") && body.property_name.is_none() {
        return Err(ApiFailure::validation("propertyName is required for propertyChange subscriptions"));
    }
    let mut webhooks = lock(shared);
    webhooks.subscriptions.retain(|_, s| !s.implicit);
    if webhooks.subscriptions.len() >= MAX_SUBSCRIPTIONS {
        return Err(ApiFailure::validation(&format!(
            "App {app_id} has reached the limit of {MAX_SUBSCRIPTIONS} webhook subscriptions"
        )));
    }
    let duplicate = webhooks
        .subscriptions
        .values()
        .any(|s| s.event_type == parsed.subscription_type && s.property_name == parsed.property_name);
    if duplicate {
        return Err(ApiFailure::conflict(&format!("A subscription to {spec} already exists")));
    }
    let now = now_ms();
    let id = webhooks.subscriptions.keys().next_back().map_or(FIRST_SUBSCRIPTION_ID, |id| id + 1);
    let record = SubscriptionRecord {
        id,
        event_type: parsed.subscription_type,
        property_name: parsed.property_name,
        active: body.active,
        created_at_ms: now,
        updated_at_ms: now,
        implicit: false,
    };
    let answer = record.to_json();
    webhooks.subscriptions.insert(id, record);
    Ok(json_response(StatusCode::CREATED, answer))
}

fn subscription_not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Subscription {id} not found"))
}

fn subscription_id(id: &str) -> ApiResult<u64> {
    id.parse().map_err(|_| subscription_not_found(id))
}

pub async fn get_subscription(
    State(emu): Shared,
    Path((app_id, id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let webhooks = lock(authorize(&emu, &params, &app_id)?);
    let record = webhooks
        .subscriptions
        .get(&subscription_id(&id)?)
        .filter(|s| !s.implicit)
        .ok_or_else(|| subscription_not_found(&id))?;
    Ok(json_response(StatusCode::OK, record.to_json()))
}

#[derive(Deserialize)]
struct PatchBody {
    active: Option<bool>,
}

pub async fn patch_subscription(
    State(emu): Shared,
    Path((app_id, id)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let shared = authorize(&emu, &params, &app_id)?;
    let body: PatchBody = parse_json(&body)?;
    let mut webhooks = lock(shared);
    let record = webhooks
        .subscriptions
        .get_mut(&subscription_id(&id)?)
        .filter(|s| !s.implicit)
        .ok_or_else(|| subscription_not_found(&id))?;
    if let Some(active) = body.active {
        record.active = active;
        record.updated_at_ms = now_ms();
    }
    Ok(json_response(StatusCode::OK, record.to_json()))
}

pub async fn delete_subscription(
    State(emu): Shared,
    Path((app_id, id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let mut webhooks = lock(authorize(&emu, &params, &app_id)?);
    let id_number = subscription_id(&id)?;
    if webhooks.subscriptions.get(&id_number).is_none_or(|s| s.implicit) {
        return Err(subscription_not_found(&id));
    }
    webhooks.subscriptions.remove(&id_number);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct BatchUpdateInput {
    id: u64,
    active: bool,
}

#[derive(Deserialize)]
struct BatchUpdateBody {
    inputs: Vec<BatchUpdateInput>,
}

pub async fn batch_update(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let shared = authorize(&emu, &params, &app_id)?;
    let body: BatchUpdateBody = parse_json(&body)?;
    let mut webhooks = lock(shared);
    let (mut results, mut missing) = (vec![], vec![]);
    for input in body.inputs {
        match webhooks.subscriptions.get_mut(&input.id).filter(|s| !s.implicit) {
            Some(record) => {
                record.active = input.active;
                record.updated_at_ms = now_ms();
                results.push(record.to_json());
            }
            None => missing.push(input.id.to_string()),
        }
    }
    let errors = if missing.is_empty() {
        vec![]
    } else {
        vec![subscription_not_found(&missing.join(", ")).as_batch_error(json!({ "ids": missing }))]
    };
    Ok(batch_response(StatusCode::OK, started, results, errors))
}
