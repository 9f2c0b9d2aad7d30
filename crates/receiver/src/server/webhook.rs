//! `POST /webhooks/hubspot`: size limit, signature, parse, durable append, answer.
//! The order matters: nothing unauthenticated is parsed, and 2xx means stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::Instrument;
use tracing::field::Empty;

use super::ServerState;
use crate::eventlog::{EncodedEvent, EventLogError};
use crate::metrics::OutcomeLabels;
use crate::time::now_ms;
use hubspot::signature::{
    HEADER_SIGNATURE, HEADER_SIGNATURE_V3, HEADER_SIGNATURE_VERSION, HEADER_TIMESTAMP, MAX_TIMESTAMP_AGE_MS,
    SignatureHeaders,
};

/// Seconds HubSpot is asked to wait before retrying when the log cannot store (full or down).
const RETRY_AFTER_SECONDS: &str = "5";

/// One `webhook` span per request: its outcome (the `webhook_requests` metric's), the events
/// it held and how many were new or duplicates; the append to the event log is a child span.
#[tracing::instrument(
    name = "webhook",
    level = "debug",
    skip_all,
    fields(outcome = Empty, events = Empty, appended = Empty, duplicates = Empty)
)]
pub(super) async fn receive(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            count_request(&state, "too_large");
            let limit = state.max_body_bytes;
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds {limit} bytes")).into_response();
        }
        // Answered 408 by the listener, which gave the body its deadline.
        Err(rejection) if crate::body_deadline::is_body_timeout(&rejection) => {
            count_request(&state, "timeout");
            return (StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time").into_response();
        }
        Err(rejection) => {
            count_request(&state, "malformed");
            return (StatusCode::BAD_REQUEST, format!("unreadable request body: {rejection}")).into_response();
        }
    };

    let signed_uri = signed_uri(state.public_url.as_deref(), &uri, &headers);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature_headers = SignatureHeaders {
        v3_signature: header(HEADER_SIGNATURE_V3),
        timestamp: header(HEADER_TIMESTAMP),
        signature: header(HEADER_SIGNATURE),
        version: header(HEADER_SIGNATURE_VERSION),
    };
    if let Err(e) = state.verifier.verify(method.as_str(), &signed_uri, &body, &signature_headers, now_ms()) {
        count_request(&state, "unauthorized");
        // The path only: a query string may carry a token of the sender.
        tracing::warn!(
            reason = e.label(),
            path = crate::logged::capped(uri.path()),
            "refused webhook request with an invalid signature"
        );
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }

    // HubSpot signs a request within MAX_TIMESTAMP_AGE_MS of sending it, and sends events
    // that already occurred: an event later than that window is no event of HubSpot's.
    let events = match EncodedEvent::split_batch(&body, now_ms().saturating_add(MAX_TIMESTAMP_AGE_MS)) {
        Ok(events) => events,
        Err(e) => {
            count_request(&state, "malformed");
            // The answer says what serde found; the log, which must hold no value, says where.
            tracing::warn!(error = %e.without_values(), "refused malformed webhook batch");
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };

    let span = tracing::Span::current();
    span.record("events", events.len());
    let append = tracing::debug_span!("eventlog.append", events = events.len());
    match state.log.append_encoded(events).instrument(append).await {
        Ok(outcome) => {
            count_request(&state, "accepted");
            count_events(&state, "appended", outcome.appended);
            count_events(&state, "duplicate", outcome.duplicates);
            span.record("appended", outcome.appended);
            span.record("duplicates", outcome.duplicates);
            tracing::debug!(appended = outcome.appended, duplicates = outcome.duplicates, "stored webhook batch");
            Json(json!({ "appended": outcome.appended, "duplicates": outcome.duplicates })).into_response()
        }
        Err(e) => answer_unstored(&state, e),
    }
}

/// Answers a batch the log could not store: HubSpot is asked to retry. Whatever the cause,
/// nothing of the batch may be answered 2xx: what was stored before the log filled or failed
/// is a duplicate when HubSpot retries.
fn answer_unstored(state: &ServerState, error: EventLogError) -> Response {
    let (outcome, body) = match error {
        EventLogError::Full { reason } => {
            tracing::warn!(reason = %reason, "event log is full; asking HubSpot to retry");
            ("log_full", "event log is full, retry later")
        }
        e @ (EventLogError::Unavailable(_) | EventLogError::Storage { .. }) => {
            tracing::error!(error = %e, "could not store webhook batch; asking HubSpot to retry");
            ("unavailable", "event log unavailable, retry later")
        }
    };
    count_request(state, outcome);
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)], body).into_response()
}

/// Counts the request by `outcome` and puts the outcome on its span.
fn count_request(state: &ServerState, outcome: &'static str) {
    state.metrics.webhook_request(outcome);
    tracing::Span::current().record("outcome", outcome);
}

fn count_events(state: &ServerState, outcome: &str, n: usize) {
    if n > 0 {
        state.metrics.webhook_events.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(n as u64);
    }
}

/// The URL HubSpot called, which the signature covers: the public base URL when the receiver
/// sits behind a proxy or ingress, else `http://` and the Host header.
fn signed_uri(public_url: Option<&str>, uri: &Uri, headers: &HeaderMap) -> String {
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    match public_url {
        Some(base) => format!("{base}{path_and_query}"),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| uri.authority().map(|a| a.as_str()))
                .unwrap_or_default();
            format!("http://{host}{path_and_query}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_uri_uses_public_base_or_host_header() {
        let uri: Uri = "/webhooks/hubspot?a=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "receiver.ns.svc:8080".parse().unwrap());
        assert_eq!(signed_uri(None, &uri, &headers), "http://receiver.ns.svc:8080/webhooks/hubspot?a=1");
        assert_eq!(
            signed_uri(Some("https://hooks.example.com/team-a"), &uri, &headers),
            "https://hooks.example.com/team-a/webhooks/hubspot?a=1"
        );
    }
}
