//! `POST /ingest/{namespace}/{mapping}`: external systems hand the receiver records for
//! HubSpot. Order: the ingest API must be on, the bearer token right, the mapping known, the
//! body within its limit and every record valid; only then are the records stored, and 202
//! answers once they are on disk. A request with any bad record stores nothing.
//!
//! `GET /ingest/rejected`: how many records HubSpot refused, and the newest refusal.
//!
//! Both are served by [`router`], which the receiver's public listener merges.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::store::{IngestRecord, ReverseStore};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::time::{now_ms, timestamp_ms};
use model::config::{IngestConfig, MappingConfig};
use model::contract::INGEST_PATH;

/// The ingest API's settings and queue.
#[derive(Clone)]
pub struct IngestState {
    token: Arc<str>,
    store: Arc<ReverseStore>,
    /// Mappings by `namespace/name`.
    mappings: Arc<BTreeMap<String, MappingConfig>>,
    max_body_bytes: usize,
}

/// What the ingest handlers share.
#[derive(Clone)]
struct IngestRoutes {
    /// `None` when the ingest API is off: the routes answer so.
    ingest: Option<IngestState>,
    metrics: Arc<Metrics>,
}

/// `POST /ingest/{namespace}/{mapping}` and `GET /ingest/rejected`; with `ingest` `None`, both
/// answer that the ingest API is off.
pub fn router(ingest: Option<IngestState>, metrics: Arc<Metrics>) -> Router {
    let max_body_bytes =
        ingest.as_ref().map_or(model::config::default_ingest_max_body_bytes(), |ingest| ingest.max_body_bytes);
    Router::new()
        .route(INGEST_PATH, post(receive).layer(DefaultBodyLimit::max(max_body_bytes)))
        .route("/ingest/rejected", get(rejected))
        .with_state(IngestRoutes { ingest, metrics })
}

impl IngestState {
    pub fn new(config: &IngestConfig, mappings: &[MappingConfig], store: Arc<ReverseStore>) -> IngestState {
        IngestState {
            token: config.token.as_str().into(),
            store,
            mappings: Arc::new(mappings.iter().map(|m| (m.name.clone(), m.clone())).collect()),
            max_body_bytes: config.max_body_bytes,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        hubspot::presents_bearer_token(headers, &self.token)
    }
}

/// One bad record of a request: its position in the array and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordProblem {
    pub index: usize,
    pub reasons: Vec<String>,
}

/// Turns the records of one request into queue entries for `mapping`, or lists every bad
/// record. A record is a JSON object keyed by external field names: it must carry the match
/// key's field, and may carry fields that flow to HubSpot (`ToHubSpot`, `Both`) and the
/// mapping's timestamp field. Values are strings, numbers or booleans; `null` clears the
/// property in HubSpot.
pub fn validate(
    mapping: &MappingConfig,
    records: &[Value],
    received_at: i64,
) -> Result<Vec<IngestRecord>, Vec<RecordProblem>> {
    let mut valid = Vec::with_capacity(records.len());
    let mut problems = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match validate_record(mapping, record, received_at) {
            Ok(record) => valid.push(record),
            Err(reasons) => problems.push(RecordProblem { index, reasons }),
        }
    }
    if problems.is_empty() { Ok(valid) } else { Err(problems) }
}

fn validate_record(mapping: &MappingConfig, record: &Value, received_at: i64) -> Result<IngestRecord, Vec<String>> {
    let Some(fields) = record.as_object() else {
        return Err(vec!["a record must be a JSON object keyed by external field names".into()]);
    };
    let key_field = &mapping.records.match_key.external_field;
    let timestamp_field = mapping.policy.external_timestamp_field.as_deref();
    let mut reasons = Vec::new();
    let key = match fields.get(key_field).map(scalar) {
        None => {
            reasons.push(format!("the match key field `{key_field}` is missing"));
            None
        }
        Some(Some(key)) if !key.trim().is_empty() => Some(key),
        Some(_) => {
            reasons.push(format!("the match key field `{key_field}` must be a non-empty string or number"));
            None
        }
    };
    let mut changed_at = received_at;
    let mut properties = BTreeMap::new();
    for (name, value) in fields {
        if name == key_field {
            continue;
        }
        if Some(name.as_str()) == timestamp_field {
            match external_timestamp(value) {
                Some(at) => changed_at = at,
                None => {
                    reasons.push(format!("`{name}` must be an RFC 3339 timestamp or epoch milliseconds, got {value}"))
                }
            }
            continue;
        }
        let Some(field) = mapping.records.fields.iter().find(|f| &f.external_field == name) else {
            reasons.push(format!("unknown field `{name}`: the mapping does not map it"));
            continue;
        };
        if !field.direction.to_hubspot() {
            reasons.push(format!("field `{name}` flows only from HubSpot (direction ToExternal)"));
            continue;
        }
        match value {
            Value::Null => {
                properties.insert(field.hubspot_property.clone(), String::new());
            }
            other => match scalar(other) {
                Some(text) => {
                    properties.insert(field.hubspot_property.clone(), text);
                }
                None => reasons.push(format!("field `{name}` must be a string, number, boolean or null")),
            },
        }
    }
    match key {
        Some(key) if reasons.is_empty() => {
            Ok(IngestRecord { mapping: mapping.name.clone(), key, properties, changed_at })
        }
        _ => Err(reasons),
    }
}

/// A string, number or boolean as HubSpot's string value.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn external_timestamp(value: &Value) -> Option<i64> {
    match value {
        Value::String(text) => timestamp_ms(text),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Counts the request by `outcome` and puts the outcome on its span.
fn count_request(state: &IngestRoutes, outcome: &'static str) {
    state.metrics.ingest_requests.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    tracing::Span::current().record("outcome", outcome);
}

fn count_records(state: &IngestRoutes, outcome: &str, n: usize) {
    state.metrics.ingest_records.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(n as u64);
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(crate) fn disabled() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "the ingest API is not enabled on this receiver (set spec.receiver.ingest.tokenSecretRef)".into(),
    )
}

pub(crate) fn unauthorized() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token".into());
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// One `ingest` span per request: the mapping, its outcome (the `ingest_requests` metric's)
/// and how many records it held.
#[tracing::instrument(
    name = "ingest",
    level = "debug",
    skip_all,
    fields(mapping = crate::logged::capped(&format!("{namespace}/{name}")), outcome = tracing::field::Empty, records = tracing::field::Empty)
)]
async fn receive(
    State(state): State<IngestRoutes>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(ingest) = state.ingest.clone() else {
        count_request(&state, "disabled");
        return disabled();
    };
    if !ingest.authorized(&headers) {
        count_request(&state, "unauthorized");
        tracing::warn!(
            mapping = crate::logged::capped(&format!("{namespace}/{name}")),
            "refused ingest request without a valid token"
        );
        return unauthorized();
    }
    let mapping_name = format!("{namespace}/{name}");
    let Some(mapping) = ingest.mappings.get(&mapping_name) else {
        count_request(&state, "unknown_mapping");
        return error(StatusCode::NOT_FOUND, format!("this receiver has no mapping {mapping_name}"));
    };
    if !mapping.records.fields.iter().any(|f| f.direction.to_hubspot()) {
        count_request(&state, "read_only_mapping");
        return error(
            StatusCode::FORBIDDEN,
            format!("mapping {mapping_name} takes no writes: none of its fields has direction ToHubSpot or Both"),
        );
    }
    let records = match read_records(body, ingest.max_body_bytes) {
        Ok(records) => records,
        Err((outcome, status, message)) => {
            count_request(&state, outcome);
            return error(status, message);
        }
    };
    let records = match validate(mapping, &records, now_ms()) {
        Ok(records) => records,
        Err(problems) => {
            count_request(&state, "invalid");
            count_records(&state, "invalid", problems.len());
            let body = json!({
                "error": format!("{} of {} records are invalid; none was stored", problems.len(), records.len()),
                "invalidRecords": problems,
            });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let accepted = records.len();
    match ingest.store.enqueue(records).await {
        Ok(()) => {
            count_request(&state, "accepted");
            count_records(&state, "accepted", accepted);
            (StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response()
        }
        Err(e) => {
            count_request(&state, "unavailable");
            tracing::error!(error = %e, "could not store ingested records");
            let mut response =
                error(StatusCode::SERVICE_UNAVAILABLE, "the ingest queue cannot store now; retry later".into());
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}

/// The records of a request body, a non-empty JSON array; or the outcome to count, and the
/// status and message to answer.
pub(crate) fn read_records(
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: usize,
) -> Result<Vec<Value>, (&'static str, StatusCode, String)> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("request body exceeds {max_body_bytes} bytes; send fewer records per request");
            return Err(("too_large", StatusCode::PAYLOAD_TOO_LARGE, message));
        }
        // Answered 408 by the listener, which gave the body its deadline.
        Err(rejection) if crate::body_deadline::is_body_timeout(&rejection) => {
            return Err(("timeout", StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time".into()));
        }
        Err(rejection) => {
            return Err(("malformed", StatusCode::BAD_REQUEST, format!("unreadable request body: {rejection}")));
        }
    };
    let records: Vec<Value> = serde_json::from_slice(&body)
        .map_err(|e| ("malformed", StatusCode::BAD_REQUEST, format!("expected a JSON array of records: {e}")))?;
    tracing::Span::current().record("records", records.len());
    if records.is_empty() {
        return Err(("malformed", StatusCode::BAD_REQUEST, "the request holds no records".into()));
    }
    Ok(records)
}

async fn rejected(State(state): State<IngestRoutes>, headers: HeaderMap) -> Response {
    let Some(ingest) = state.ingest.clone() else { return disabled() };
    if !ingest.authorized(&headers) {
        return unauthorized();
    }
    match ingest.store.rejected_summary().await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("reverse sync store unavailable: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_mappings::{self, field};
    use model::api::mapping::Direction;

    fn mapping() -> MappingConfig {
        let fields = vec![
            field("firstname", "first_name", Direction::ToExternal),
            field("lifecyclestage", "stage", Direction::Both),
            field("phone", "phone", Direction::ToHubSpot),
        ];
        let mut mapping = test_mappings::mapping("crm/contacts", "contacts", ("email", "mail"), fields);
        mapping.policy.external_timestamp_field = Some("modified".into());
        mapping
    }

    #[test]
    fn valid_records_become_hubspot_properties() {
        let records = [
            json!({"mail": "a@example.com", "stage": "lead", "phone": 5550100, "modified": "1970-01-01T00:00:01Z"}),
            json!({"mail": "b@example.com", "phone": null}),
            json!({"mail": 42, "modified": 7}),
        ];
        let valid = validate(&mapping(), &records, 99).unwrap();
        assert_eq!(
            valid,
            vec![
                IngestRecord {
                    mapping: "crm/contacts".into(),
                    key: "a@example.com".into(),
                    properties: BTreeMap::from([
                        ("lifecyclestage".into(), "lead".into()),
                        ("phone".into(), "5550100".into())
                    ]),
                    changed_at: 1000,
                },
                IngestRecord {
                    mapping: "crm/contacts".into(),
                    key: "b@example.com".into(),
                    properties: BTreeMap::from([("phone".into(), String::new())]),
                    changed_at: 99,
                },
                IngestRecord {
                    mapping: "crm/contacts".into(),
                    key: "42".into(),
                    properties: BTreeMap::new(),
                    changed_at: 7
                },
            ]
        );
    }

    /// A number is written to HubSpot as the number sent: `4.5e300` once read as a float one
    /// step away and written as `4.5000000000000005e+300` (found by fuzz target ingest_records).
    #[test]
    fn a_number_is_written_as_the_number_sent() {
        let body = r#"[{"mail": true, "phone": 4.5e300, "stage": 0.1}]"#;
        let records: Vec<Value> = serde_json::from_str(body).unwrap();
        let valid = validate(&mapping(), &records, 0).unwrap();
        assert_eq!(valid[0].key, "true");
        assert_eq!(valid[0].properties["phone"], "4.5e+300");
        assert_eq!(valid[0].properties["lifecyclestage"], "0.1");
    }

    #[test]
    fn every_bad_record_is_listed_with_its_reasons() {
        let records = [
            json!({"mail": "ok@example.com", "phone": "1"}),
            json!({"phone": "1"}),
            json!({"mail": "c@example.com", "first_name": "Ada", "nickname": "x"}),
            json!("not an object"),
            json!({"mail": "", "stage": {"nested": true}, "modified": "yesterday"}),
        ];
        let problems = validate(&mapping(), &records, 0).unwrap_err();
        assert_eq!(problems.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(problems[0].reasons, vec!["the match key field `mail` is missing"]);
        assert_eq!(
            problems[1].reasons,
            vec![
                "field `first_name` flows only from HubSpot (direction ToExternal)",
                "unknown field `nickname`: the mapping does not map it"
            ]
        );
        assert!(problems[2].reasons[0].contains("JSON object"));
        assert_eq!(problems[3].reasons.len(), 3, "{:?}", problems[3].reasons);
    }
}
