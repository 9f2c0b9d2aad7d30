//! What every HubSpot endpoint has in common: JSON bodies and query parameters, JSON and batch
//! answers, paging links, object types named by a path with the caller's scopes checked, and
//! the developer API key of the app-level APIs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::clock::{iso8601, now_ms};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use crate::shared::Emulator;

/// The emulator, as handlers extract it.
pub type Shared = State<Arc<Emulator>>;
/// Query parameters in order, repeated ones included.
pub type Params = Query<Vec<(String, String)>>;

/// Most inputs one batch call takes.
pub const MAX_BATCH_INPUTS: usize = 100;

/// The request's path before nesting stripped its prefix (for `paging.next.link`).
#[derive(Clone)]
pub struct FullPath(pub String);

/// The JSON body of a request, or HubSpot's 400.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Last value of a query parameter.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `properties=a,b&properties=c` → `[a, b, c]` (HubSpot accepts both forms).
pub fn list_param(params: &[(String, String)], name: &str) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub fn bool_param(params: &[(String, String)], name: &str) -> bool {
    param(params, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// HubSpot's answer to a batch of more than 100 inputs.
pub fn too_many_inputs(count: usize) -> ApiFailure {
    ApiFailure::validation(&format!("Batch input contains {count} inputs; the maximum is {MAX_BATCH_INPUTS}."))
        .with_errors(vec![json!({
            "message": format!("size must be between 0 and {MAX_BATCH_INPUTS}"),
            "code": "INVALID_SIZE",
            "context": { "field": ["inputs"] },
        })])
}

/// `{status, results, startedAt, completedAt}`, with `numErrors` and `errors` (and HTTP 207)
/// when some inputs failed.
pub fn batch_response(ok_status: StatusCode, started_ms: i64, results: Vec<Value>, errors: Vec<Value>) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso8601(started_ms),
        "completedAt": iso8601(now_ms()),
    });
    if errors.is_empty() {
        json_response(ok_status, body)
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        json_response(StatusCode::MULTI_STATUS, body)
    }
}

/// The object type a path names (built-in or a live custom type).
pub fn resolve_type(emu: &Emulator, t: &str) -> ApiResult<ObjectType> {
    emu.store.lock().expect("store lock").resolve_type(t)
}

/// The object type a path names, for a caller with the scope to read it (or to write it).
pub fn object_type_with_scope(emu: &Emulator, t: &str, caller: &Caller, write: bool) -> ApiResult<ObjectType> {
    let t = resolve_type(emu, t)?;
    caller.require_any(&[if write { t.write_scope() } else { t.read_scope() }])?;
    Ok(t)
}

/// App-level APIs (webhook settings, timeline templates) take the developer API key in
/// `?hapikey=` and a path naming the emulated app; that app's id.
pub fn check_developer_key(emu: &Emulator, params: &[(String, String)], app_id: &str) -> ApiResult<u64> {
    if param(params, "hapikey") != Some(emu.config.developer_api_key.as_str()) {
        return Err(ApiFailure::invalid_authentication());
    }
    match app_id.parse::<u64>() {
        Ok(id) if id == emu.config.app_id => Ok(id),
        _ => Err(ApiFailure::not_found(&format!("App {app_id} not found for this developer account"))),
    }
}

/// The URL of the next page: this request's URL with `after` replaced.
pub fn next_link(headers: &HeaderMap, path: &str, params: &[(String, String)], after: u64) -> String {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let mut query: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "after").cloned().collect();
    query.push(("after".into(), after.to_string()));
    let encoded = encode_query(&query);
    format!("http://{host}{path}?{encoded}")
}

fn encode_query(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_param_takes_both_forms() {
        let params = vec![
            ("properties".to_string(), "a,b".to_string()),
            ("limit".to_string(), "5".to_string()),
            ("properties".to_string(), "c".to_string()),
        ];
        assert_eq!(list_param(&params, "properties"), vec!["a", "b", "c"]);
        assert_eq!(param(&params, "limit"), Some("5"));
        assert_eq!(percent_encode("a,b c"), "a%2Cb%20c");
    }
}
