//! The receiver's admin API: inspect, redrive and discard dead letters, replay deliveries, and
//! list, resend or discard the records and timeline occurrences bound for HubSpot that HubSpot
//! refused (`/admin/rejected*` and `/admin/rejected/timeline*`).
//! It listens apart from the webhook ingress (loopback by default, see `AdminConfig`) and, when
//! a token is configured, requires `Authorization: Bearer <token>` on every request.
//! `hubspot-operator dead-letters` and `hubspot-operator rejected` are its command-line clients.

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, extract::rejection::JsonRejection};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use crate::reverse::{RejectionFilter, ReverseStore};
use crate::sync::{DeadLetter, DeadLetterFilter, OperationError, Worker};
use crate::timeline::{OccurrenceFilter, TimelineStore};

/// Dead letters listed when the request names no limit.
pub const DEFAULT_LIST_LIMIT: usize = 100;

#[derive(Clone)]
struct AdminState {
    worker: Worker,
    /// `None` when the receiver writes nothing to HubSpot.
    reverse: Option<Arc<ReverseStore>>,
    /// `None` when the receiver has no timeline event types.
    timeline: Option<Arc<TimelineStore>>,
    token: Option<String>,
}

/// The admin routes, on a listener of their own.
pub fn router(worker: Worker, reverse: Option<Arc<ReverseStore>>, token: Option<String>) -> Router {
    router_with_timeline(worker, reverse, None, token)
}

/// [`router`], with the refused occurrences of `timeline`.
pub fn router_with_timeline(
    worker: Worker,
    reverse: Option<Arc<ReverseStore>>,
    timeline: Option<Arc<TimelineStore>>,
    token: Option<String>,
) -> Router {
    let state = AdminState { worker, reverse, timeline, token };
    Router::new()
        .route("/admin/dead-letters", get(list))
        .route("/admin/dead-letters/{id}", get(show).delete(discard_one))
        .route("/admin/dead-letters/redrive", post(redrive))
        .route("/admin/dead-letters/discard", post(discard))
        .route("/admin/replay", post(replay))
        .route("/admin/rejected", get(list_rejected))
        .route("/admin/rejected/{id}", axum::routing::delete(discard_one_rejected))
        .route("/admin/rejected/resend", post(resend_rejected))
        .route("/admin/rejected/discard", post(discard_rejected))
        .route("/admin/rejected/timeline", get(list_rejected_occurrences))
        .route("/admin/rejected/timeline/resend", post(resend_rejected_occurrences))
        .route("/admin/rejected/timeline/discard", post(discard_rejected_occurrences))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token
        && !hubspot::presents_bearer_token(request.headers(), token)
    {
        return error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    next.run(request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    mapping: Option<String>,
    sink: Option<String>,
    limit: Option<usize>,
}

async fn list(State(state): State<AdminState>, Query(query): Query<ListQuery>) -> Response {
    let filter = DeadLetterFilter { ids: vec![], mapping: query.mapping, sink: query.sink };
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    let store = state.worker.dead_letters();
    match (store.list(&filter, limit).await, store.count().await) {
        (Ok(letters), Ok(total)) => Json(json!({ "deadLetters": letters, "total": total })).into_response(),
        (Err(e), _) | (_, Err(e)) => failed(e.into()),
    }
}

async fn show(State(state): State<AdminState>, Path(id): Path<i64>) -> Response {
    match state.worker.dead_letters().get(id).await {
        Ok(Some(letter)) => Json::<DeadLetter>(letter).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("no dead letter {id}")),
        Err(e) => failed(e.into()),
    }
}

async fn discard_one(State(state): State<AdminState>, Path(id): Path<i64>) -> Response {
    match state.worker.discard(&DeadLetterFilter { ids: vec![id], ..Default::default() }).await {
        Ok(0) => error(StatusCode::NOT_FOUND, &format!("no dead letter {id}")),
        Ok(discarded) => Json(json!({ "discarded": discarded })).into_response(),
        Err(e) => failed(e),
    }
}

/// Which dead letters a redrive or discard is about: ids, a filter, or explicitly all.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<i64>,
    mapping: Option<String>,
    sink: Option<String>,
    #[serde(default)]
    all: bool,
}

impl Selection {
    /// Nothing named is a mistake, not "everything": that takes `all`.
    fn filter(self) -> Result<DeadLetterFilter, String> {
        let filter = DeadLetterFilter { ids: self.ids, mapping: self.mapping, sink: self.sink };
        match (filter.is_everything(), self.all) {
            (false, false) | (true, true) => Ok(filter),
            (true, false) => Err("name ids, a mapping or sink, or \"all\": true".into()),
            (false, true) => Err("\"all\" cannot be combined with ids or a filter".into()),
        }
    }
}

async fn redrive(State(state): State<AdminState>, body: Result<Json<Selection>, JsonRejection>) -> Response {
    let filter = match selection(body) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match state.worker.redrive(&filter).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failed(e),
    }
}

async fn discard(State(state): State<AdminState>, body: Result<Json<Selection>, JsonRejection>) -> Response {
    let filter = match selection(body) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match state.worker.discard(&filter).await {
        Ok(discarded) => Json(json!({ "discarded": discarded })).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplayRequest {
    /// RFC 3339 time: objects delivered at or after it are sent again.
    since: String,
    mapping: String,
    sink: Option<String>,
}

async fn replay(State(state): State<AdminState>, body: Result<Json<ReplayRequest>, JsonRejection>) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let Some(since_ms) = crate::time::timestamp_ms(&request.since) else {
        let message = format!("since {:?} is not an RFC 3339 time such as 2026-11-26T18:00:00Z", request.since);
        return error(StatusCode::BAD_REQUEST, &message);
    };
    match state.worker.replay(&request.mapping, request.sink.as_deref(), since_ms).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectedQuery {
    mapping: Option<String>,
    limit: Option<usize>,
}

/// The answer of a receiver without a reverse sync store.
fn nothing_rejected() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this receiver writes nothing to HubSpot (no ingest API and no source), so nothing was rejected",
    )
}

async fn list_rejected(State(state): State<AdminState>, Query(query): Query<RejectedQuery>) -> Response {
    let Some(store) = &state.reverse else { return nothing_rejected() };
    let filter = RejectionFilter { ids: vec![], mapping: query.mapping };
    match store.rejected(&filter, query.limit.unwrap_or(DEFAULT_LIST_LIMIT)).await {
        Ok((rejected, total)) => Json(json!({ "rejected": rejected, "total": total })).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn discard_one_rejected(State(state): State<AdminState>, Path(id): Path<i64>) -> Response {
    let Some(store) = &state.reverse else { return nothing_rejected() };
    match store.discard_rejected(RejectionFilter { ids: vec![id], mapping: None }).await {
        Ok(0) => error(StatusCode::NOT_FOUND, &format!("no rejected record {id}")),
        Ok(discarded) => Json(json!({ "discarded": discarded })).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn resend_rejected(State(state): State<AdminState>, body: Result<Json<Selection>, JsonRejection>) -> Response {
    let Some(store) = &state.reverse else { return nothing_rejected() };
    let filter = match rejection_selection(body) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match store.resend(filter).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn discard_rejected(State(state): State<AdminState>, body: Result<Json<Selection>, JsonRejection>) -> Response {
    let Some(store) = &state.reverse else { return nothing_rejected() };
    let filter = match rejection_selection(body) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match store.discard_rejected(filter).await {
        Ok(discarded) => Json(json!({ "discarded": discarded })).into_response(),
        Err(e) => failed(e.into()),
    }
}

/// A selection of rejected records: ids, a mapping, or `all`; they have no destination.
fn rejection_selection(body: Result<Json<Selection>, JsonRejection>) -> Result<RejectionFilter, String> {
    let filter = selection(body)?;
    if filter.sink.is_some() {
        return Err("rejected records are bound for HubSpot: \"sink\" does not apply".into());
    }
    Ok(RejectionFilter { ids: filter.ids, mapping: filter.mapping })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RejectedOccurrencesQuery {
    event_type: Option<String>,
    limit: Option<usize>,
}

/// Which refused occurrences a resend or discard is about: ids, an event type, or `all`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OccurrenceSelection {
    #[serde(default)]
    ids: Vec<i64>,
    event_type: Option<String>,
    #[serde(default)]
    all: bool,
}

fn occurrence_selection(body: Result<Json<OccurrenceSelection>, JsonRejection>) -> Result<OccurrenceFilter, String> {
    let selection = body.map_err(|rejection| rejection.body_text())?.0;
    let filter = OccurrenceFilter { ids: selection.ids, event_type: selection.event_type };
    match (filter.ids.is_empty() && filter.event_type.is_none(), selection.all) {
        (false, false) | (true, true) => Ok(filter),
        (true, false) => Err("name ids, an eventType, or \"all\": true".into()),
        (false, true) => Err("\"all\" cannot be combined with ids or an eventType".into()),
    }
}

/// The answer of a receiver without a timeline store.
fn no_timeline() -> Response {
    error(StatusCode::NOT_FOUND, "this receiver has no timeline event types, so no occurrence was rejected")
}

async fn list_rejected_occurrences(
    State(state): State<AdminState>,
    Query(query): Query<RejectedOccurrencesQuery>,
) -> Response {
    let Some(store) = &state.timeline else { return no_timeline() };
    let filter = OccurrenceFilter { ids: vec![], event_type: query.event_type };
    match store.rejected(&filter, query.limit.unwrap_or(DEFAULT_LIST_LIMIT)).await {
        Ok((rejected, total)) => Json(json!({ "rejected": rejected, "total": total })).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn resend_rejected_occurrences(
    State(state): State<AdminState>,
    body: Result<Json<OccurrenceSelection>, JsonRejection>,
) -> Response {
    let Some(store) = &state.timeline else { return no_timeline() };
    let filter = match occurrence_selection(body) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match store.resend(filter).await {
        Ok(resent) => Json(json!({ "resent": resent })).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn discard_rejected_occurrences(
    State(state): State<AdminState>,
    body: Result<Json<OccurrenceSelection>, JsonRejection>,
) -> Response {
    let Some(store) = &state.timeline else { return no_timeline() };
    let filter = match occurrence_selection(body) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match store.discard(filter).await {
        Ok(discarded) => Json(json!({ "discarded": discarded })).into_response(),
        Err(e) => failed(e.into()),
    }
}

fn selection(body: Result<Json<Selection>, JsonRejection>) -> Result<DeadLetterFilter, String> {
    match body {
        Ok(Json(selection)) => selection.filter(),
        Err(rejection) => Err(rejection.body_text()),
    }
}

fn failed(e: OperationError) -> Response {
    match e {
        OperationError::BadRequest(message) => error(StatusCode::BAD_REQUEST, &message),
        OperationError::Failed(e) => {
            tracing::error!(error = format!("{e:#}"), "admin operation failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
