//! The app's webhook configuration and HubSpot's management API for it (legacy public apps,
//! authenticated with the developer API key in `?hapikey=`): `GET|PUT|DELETE
//! /webhooks/v3/{appId}/settings`, `GET|POST /webhooks/v3/{appId}/subscriptions`, `GET|PATCH|DELETE
//! .../subscriptions/{subscriptionId}`, `POST .../subscriptions/batch/update`.
//!
//! Delivery reads this configuration as it goes: only events of active subscriptions are sent,
//! to the current `targetUrl`, with at most `maxConcurrentRequests` requests in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::check_developer_key;
use super::clock::{iso8601, now_ms};
use super::error::{ApiFailure, ApiResult};
use super::routes::{json_response, parse_json};
use super::{Emulator, Subscription};

/// Most subscriptions one app may have.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// HubSpot's default and smallest allowed `maxConcurrentRequests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 10;
const MIN_MAX_CONCURRENT_REQUESTS: usize = 5;
/// Id of the first subscription.
const FIRST_SUBSCRIPTION_ID: u64 = 2_100_001;

/// Every event type the emulator emits, which an app subscribes to when no `--subscription`
/// is given.
fn every_event_type() -> Vec<String> {
    ["contact", "company", "deal", "ticket", "object"]
        .iter()
        .flat_map(|o| {
            ["creation", "deletion", "propertyChange", "associationChange", "merge"].map(|a| format!("{o}.{a}"))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: u64,
    pub event_type: String,
    /// For `propertyChange`: only this property's changes (none: every property's).
    pub property_name: Option<String>,
    pub active: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// One of the "every event" subscriptions the emulator starts with when no
    /// `--subscription` is given: they deliver, but the management API neither lists nor
    /// changes them (HubSpot's API cannot express `object.*` or an all-properties
    /// `propertyChange`), and the app's first subscription made through the API replaces them.
    #[serde(default)]
    pub implicit: bool,
}

impl SubscriptionRecord {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "eventType": self.event_type,
            "active": self.active,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        if let Some(p) = &self.property_name {
            v["propertyName"] = json!(p);
        }
        v
    }

    fn covers(&self, subscription_type: &str, property: Option<&str>) -> bool {
        self.active
            && self.event_type == subscription_type
            && self.property_name.as_deref().is_none_or(|wanted| property == Some(wanted))
    }
}

/// The app's webhook settings and subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppWebhooks {
    pub target_url: Option<String>,
    pub max_concurrent_requests: usize,
    pub settings_created_at_ms: i64,
    pub settings_updated_at_ms: i64,
    pub subscriptions: BTreeMap<u64, SubscriptionRecord>,
}

/// Shared by the store (which asks what to emit), delivery and the management API.
pub type SharedWebhooks = Arc<Mutex<AppWebhooks>>;

impl AppWebhooks {
    /// The configuration flags describe: their target URL and subscriptions (every event type
    /// when none are given), all active.
    pub fn new(target_url: Option<String>, subscriptions: &[Subscription], now: i64) -> Self {
        let implicit = subscriptions.is_empty();
        let initial: Vec<(String, Option<String>)> = if implicit {
            every_event_type().into_iter().map(|t| (t, None)).collect()
        } else {
            subscriptions.iter().map(|s| (s.subscription_type.clone(), s.property_name.clone())).collect()
        };
        let subscriptions = initial
            .into_iter()
            .zip(FIRST_SUBSCRIPTION_ID..)
            .map(|((event_type, property_name), id)| {
                let record = SubscriptionRecord {
                    id,
                    event_type,
                    property_name,
                    active: true,
                    created_at_ms: now,
                    updated_at_ms: now,
                    implicit,
                };
                (id, record)
            })
            .collect();
        Self {
            target_url,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            settings_created_at_ms: now,
            settings_updated_at_ms: now,
            subscriptions,
        }
    }

    /// The id of the active subscription an event falls under; none when nothing would be
    /// delivered (no target URL, or no such subscription).
    pub fn subscription_for(&self, subscription_type: &str, property: Option<&str>) -> Option<u64> {
        self.target_url.as_ref()?;
        // A subscription to one property's changes is the more specific match.
        let mut matching: Vec<&SubscriptionRecord> =
            self.subscriptions.values().filter(|s| s.covers(subscription_type, property)).collect();
        matching.sort_by_key(|s| s.property_name.is_none());
        matching.first().map(|s| s.id)
    }

    fn settings_json(&self) -> Option<Value> {
        let url = self.target_url.as_ref()?;
        Some(json!({
            "targetUrl": url,
            "throttling": { "maxConcurrentRequests": self.max_concurrent_requests, "period": "SECONDLY" },
            "createdAt": iso8601(self.settings_created_at_ms),
            "updatedAt": iso8601(self.settings_updated_at_ms),
        }))
    }
}

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/{app_id}/settings", get(get_settings).put(put_settings).delete(delete_settings))
        .route("/{app_id}/subscriptions", get(list_subscriptions).post(create_subscription))
        .route("/{app_id}/subscriptions/batch/update", post(batch_update))
        .route(
            "/{app_id}/subscriptions/{id}",
            get(get_subscription).patch(patch_subscription).delete(delete_subscription),
        )
}

type Params = Query<Vec<(String, String)>>;

/// Checks the developer API key and that the path names the emulated app; its configuration.
fn authorize<'a>(emu: &'a Emulator, params: &[(String, String)], app_id: &str) -> ApiResult<&'a SharedWebhooks> {
    check_developer_key(emu, params, app_id)?;
    Ok(&emu.app_webhooks)
}

fn lock(shared: &SharedWebhooks) -> std::sync::MutexGuard<'_, AppWebhooks> {
    shared.lock().expect("webhook settings lock")
}

async fn get_settings(
    State(emu): State<Arc<Emulator>>,
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

async fn put_settings(
    State(emu): State<Arc<Emulator>>,
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

async fn delete_settings(
    State(emu): State<Arc<Emulator>>,
    Path(app_id): Path<String>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    let mut webhooks = lock(authorize(&emu, &params, &app_id)?);
    webhooks.target_url = None;
    webhooks.max_concurrent_requests = DEFAULT_MAX_CONCURRENT_REQUESTS;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_subscriptions(
    State(emu): State<Arc<Emulator>>,
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

async fn create_subscription(
    State(emu): State<Arc<Emulator>>,
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

async fn get_subscription(
    State(emu): State<Arc<Emulator>>,
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

async fn patch_subscription(
    State(emu): State<Arc<Emulator>>,
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

async fn delete_subscription(
    State(emu): State<Arc<Emulator>>,
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

async fn batch_update(
    State(emu): State<Arc<Emulator>>,
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
    let mut answer = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso8601(started),
        "completedAt": iso8601(now_ms()),
    });
    if missing.is_empty() {
        return Ok(json_response(StatusCode::OK, answer));
    }
    answer["numErrors"] = json!(1);
    answer["errors"] = json!([subscription_not_found(&missing.join(", ")).as_batch_error(json!({ "ids": missing }))]);
    Ok(json_response(StatusCode::MULTI_STATUS, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_subscriptions_with_a_target_match() {
        let flags: Vec<Subscription> =
            vec!["contact.propertyChange".parse().unwrap(), "contact.propertyChange:email".parse().unwrap()];
        let mut webhooks = AppWebhooks::new(None, &flags, 0);
        assert_eq!(webhooks.subscription_for("contact.propertyChange", Some("email")), None, "no target URL");
        webhooks.target_url = Some("http://127.0.0.1:1/hooks".into());
        let specific = webhooks.subscription_for("contact.propertyChange", Some("email")).unwrap();
        assert_eq!(webhooks.subscriptions[&specific].property_name.as_deref(), Some("email"));
        let general = webhooks.subscription_for("contact.propertyChange", Some("firstname")).unwrap();
        webhooks.subscriptions.get_mut(&general).unwrap().active = false;
        assert_eq!(webhooks.subscription_for("contact.propertyChange", Some("firstname")), None);
        assert_eq!(webhooks.subscription_for("deal.creation", None), None);
        let everything = AppWebhooks::new(Some("http://x/".into()), &[], 0);
        assert!(everything.subscription_for("ticket.merge", None).is_some());
    }
}
