//! `POST /timeline/{namespace}/{name}`: external systems hand the receiver occurrences of a
//! timeline event type. Same order as the ingest API, and the same bearer token: the ingest
//! API must be on, the token right, the event type known, the body within its limit and every
//! occurrence valid; only then are the occurrences stored, and 202 answers once they are on
//! disk. A request with any bad occurrence stores nothing; an occurrence whose id the type
//! already has is not stored again.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::store::TimelineStore;
use super::validate::validate;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::reverse::ingest::{disabled, error, read_records, unauthorized};
use model::config::{IngestConfig, TimelineEventTypeConfig};
use model::contract::TIMELINE_PATH;

/// The timeline API's settings and store.
#[derive(Clone)]
pub struct TimelineApi {
    token: Arc<str>,
    store: Arc<TimelineStore>,
    /// Event types by `namespace/name`.
    types: Arc<BTreeMap<String, TimelineEventTypeConfig>>,
    max_body_bytes: usize,
}

impl TimelineApi {
    pub fn new(config: &IngestConfig, types: &[TimelineEventTypeConfig], store: Arc<TimelineStore>) -> TimelineApi {
        TimelineApi {
            token: config.token.as_str().into(),
            store,
            types: Arc::new(types.iter().map(|t| (t.qualified_name(), t.clone())).collect()),
            max_body_bytes: config.max_body_bytes,
        }
    }
}

#[derive(Clone)]
struct Routes {
    /// `None` when the ingest API is off: the route answers so.
    api: Option<TimelineApi>,
    metrics: Arc<Metrics>,
}

/// `POST /timeline/{namespace}/{name}`; with `api` `None`, it answers that the ingest API is off.
pub fn router(api: Option<TimelineApi>, metrics: Arc<Metrics>) -> Router {
    let max_body_bytes = api.as_ref().map_or(model::config::default_ingest_max_body_bytes(), |api| api.max_body_bytes);
    Router::new()
        .route(TIMELINE_PATH, post(receive).layer(DefaultBodyLimit::max(max_body_bytes)))
        .with_state(Routes { api, metrics })
}

fn count_request(routes: &Routes, outcome: &'static str) {
    routes.metrics.timeline_requests.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    tracing::Span::current().record("outcome", outcome);
}

fn count_occurrences(routes: &Routes, outcome: &str, n: u64) {
    routes.metrics.timeline_occurrences.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(n);
}

/// One `timeline` span per request: the event type, its outcome (the `timeline_requests`
/// metric's) and how many occurrences it held.
#[tracing::instrument(
    name = "timeline",
    level = "debug",
    skip_all,
    fields(event_type = crate::logged::capped(&format!("{namespace}/{name}")), outcome = tracing::field::Empty, records = tracing::field::Empty)
)]
async fn receive(
    State(routes): State<Routes>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(api) = routes.api.clone() else {
        count_request(&routes, "disabled");
        return disabled();
    };
    if !hubspot::presents_bearer_token(&headers, &api.token) {
        count_request(&routes, "unauthorized");
        tracing::warn!(
            event_type = crate::logged::capped(&format!("{namespace}/{name}")),
            "refused timeline request without a valid token"
        );
        return unauthorized();
    }
    let type_name = format!("{namespace}/{name}");
    let Some(event_type) = api.types.get(&type_name) else {
        count_request(&routes, "unknown_type");
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "this receiver has no timeline event type {type_name} (a HubSpotTimelineEventType of its integration that is Ready)"
            ),
        );
    };
    let occurrences = match read_records(body, api.max_body_bytes) {
        Ok(occurrences) => occurrences,
        Err((outcome, status, message)) => {
            count_request(&routes, outcome);
            return error(status, message);
        }
    };
    let valid = match validate(event_type, &occurrences) {
        Ok(valid) => valid,
        Err(problems) => {
            count_request(&routes, "invalid");
            count_occurrences(&routes, "invalid", problems.len() as u64);
            let body = json!({
                "error": format!("{} of {} occurrences are invalid; none was stored", problems.len(), occurrences.len()),
                "invalidOccurrences": problems,
            });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let total = valid.len() as u64;
    match api.store.enqueue(valid).await {
        Ok(accepted) => {
            count_request(&routes, "accepted");
            count_occurrences(&routes, "accepted", accepted);
            count_occurrences(&routes, "already_known", total - accepted);
            routes.metrics.timeline_activity.accepted(&type_name, accepted);
            (StatusCode::ACCEPTED, Json(json!({ "accepted": accepted, "alreadyKnown": total - accepted })))
                .into_response()
        }
        Err(e) => {
            count_request(&routes, "unavailable");
            tracing::error!(error = %e, "could not store timeline occurrences");
            let mut response =
                error(StatusCode::SERVICE_UNAVAILABLE, "the timeline store cannot store now; retry later".into());
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}
