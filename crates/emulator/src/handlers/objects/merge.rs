//! `POST /crm/v3/objects/{t}/merge` `{primaryObjectId, objectIdToMerge}`: merges two records
//! (the rules, and which types get a new id, are the store's).

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Shared, json_response, parse_json, resolve_type};
use crate::auth::Caller;
use crate::error::{ApiFailure, ApiResult};
use crate::store::{Actor, Selection};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeBody {
    primary_object_id: Option<Value>,
    object_id_to_merge: Option<Value>,
}

/// An id given as a string (as the SDKs send it) or a number.
fn id_field(value: Option<Value>, field: &str) -> ApiResult<u64> {
    let value = value.ok_or_else(|| ApiFailure::validation(&format!("Invalid input JSON: {field} is required")))?;
    let parsed = match &value {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    parsed.ok_or_else(|| ApiFailure::validation(&format!("{field} {value} is not a valid object id")))
}

/// `POST /crm/v3/objects/{t}/merge` → the resulting record.
pub async fn merge_objects(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = resolve_type(&emu, &t)?;
    caller.require_any(&[t.write_scope()])?;
    let body: MergeBody = parse_json(&body)?;
    let primary = id_field(body.primary_object_id, "primaryObjectId")?;
    let merged = id_field(body.object_id_to_merge, "objectIdToMerge")?;
    let mut store = emu.store.lock().expect("store lock");
    let result = store.merge(t, primary, merged, Actor::Integration { app_id: caller.app_id })?;
    let names: Vec<String> = t.default_properties().iter().map(|s| s.to_string()).collect();
    Ok(json_response(StatusCode::OK, result.to_json(t, &store.of(t).properties, Selection::Named(&names))))
}
