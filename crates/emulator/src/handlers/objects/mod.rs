//! CRM objects under `/crm/v3/objects/{t}` and `/crm/objects/2026-03/{t}`: list, create, read,
//! update and archive by id or `?idProperty=`, and search; batches in `batch`, merges in
//! `merge`.

pub mod batch;
pub mod merge;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{
    FullPath, Params, Shared, bool_param, json_response, list_param, next_link, object_type_with_scope, param,
    parse_json,
};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{ObjectType, PropertyDef};
use crate::search;
use crate::store::{Actor, Selection, StoredObject, Write, parse_properties};

/// Most results one list page has.
const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 10;

/// The requested properties, or the type's defaults when none are named.
pub fn requested_properties(t: ObjectType, named: Vec<String>) -> Vec<String> {
    if named.is_empty() { t.default_properties().iter().map(|s| s.to_string()).collect() } else { named }
}

/// Most objects one read returns when values come with their history.
pub const MAX_WITH_HISTORY: usize = 50;

/// An object as a read shows it: the `names` properties, and the `history` ones with every
/// value they have had.
pub fn object_json(
    t: ObjectType,
    object: &StoredObject,
    defs: &BTreeMap<String, PropertyDef>,
    names: &[String],
    history: &[String],
) -> Value {
    let mut v = object.to_json(t, defs, Selection::Named(names));
    if !history.is_empty() {
        v["propertiesWithHistory"] = object.history_json(defs, history);
    }
    v
}

/// Properties a write response shows: those written plus the ones always returned.
pub fn written_names(properties: &BTreeMap<String, String>) -> Vec<String> {
    properties.keys().cloned().collect()
}

pub async fn list_objects(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    Extension(FullPath(path)): Extension<FullPath>,
) -> ApiResult<Response> {
    let t = object_type_with_scope(&emu, &t, &caller, false)?;
    let limit = match param(&params, "limit") {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiFailure::validation(&format!("Invalid limit: {l} is not a number")))?
            .clamp(1, MAX_PAGE),
    };
    let after = match param(&params, "after") {
        None | Some("") => 0,
        Some(a) => a.parse::<u64>().map_err(|_| ApiFailure::validation(&format!("Invalid after cursor: {a}")))?,
    };
    let archived = bool_param(&params, "archived");
    let names = requested_properties(t, list_param(&params, "properties"));
    let history = list_param(&params, "propertiesWithHistory");
    let limit = if history.is_empty() { limit } else { limit.min(MAX_WITH_HISTORY) };
    let store = emu.store.lock().expect("store lock");
    let of = store.of(t);
    let mut matching = of.objects.range(after..).map(|(_, o)| o).filter(|o| o.is_archived() == archived);
    let results: Vec<Value> =
        matching.by_ref().take(limit).map(|o| object_json(t, o, &of.properties, &names, &history)).collect();
    let next_id = matching.next().map(|o| o.id);
    drop(store);
    let mut body = json!({ "results": results });
    if let Some(next) = next_id {
        body["paging"] =
            json!({ "next": { "after": next.to_string(), "link": next_link(&headers, &path, &params, next) } });
    }
    Ok(json_response(StatusCode::OK, body))
}

pub async fn get_object(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let t = object_type_with_scope(&emu, &t, &caller, false)?;
    let names = requested_properties(t, list_param(&params, "properties"));
    let archived = bool_param(&params, "archived");
    let store = emu.store.lock().expect("store lock");
    let found = if archived {
        // Archived objects can only be read by id.
        id.parse::<u64>().ok().and_then(|n| store.of(t).objects.get(&n)).filter(|o| o.is_archived())
    } else {
        store.find(t, &id, param(&params, "idProperty"))?
    };
    let object = found.ok_or_else(|| ApiFailure::not_found("resource not found"))?;
    let history = list_param(&params, "propertiesWithHistory");
    Ok(json_response(StatusCode::OK, object_json(t, object, &store.of(t).properties, &names, &history)))
}

#[derive(Deserialize)]
struct PropertiesBody {
    properties: Option<Value>,
}

pub async fn create_object(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let body: PropertiesBody = parse_json(&body)?;
    let properties = parse_properties(body.properties.as_ref())?;
    let names = written_names(&properties);
    let mut store = emu.store.lock().expect("store lock");
    let created =
        store.apply_all(t, vec![Write::Create { properties }], Actor::Integration { app_id: caller.app_id })?;
    Ok(json_response(StatusCode::CREATED, created[0].to_json(t, &store.of(t).properties, Selection::Named(&names))))
}

pub async fn update_object(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let body: PropertiesBody = parse_json(&body)?;
    let properties = parse_properties(body.properties.as_ref())?;
    let names = written_names(&properties);
    let mut store = emu.store.lock().expect("store lock");
    let id = store
        .find(t, &id, param(&params, "idProperty"))?
        .ok_or_else(|| ApiFailure::not_found("resource not found"))?
        .id;
    let updated =
        store.apply_all(t, vec![Write::Update { id, properties }], Actor::Integration { app_id: caller.app_id })?;
    Ok(json_response(StatusCode::OK, updated[0].to_json(t, &store.of(t).properties, Selection::Named(&names))))
}

pub async fn archive_object(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let mut store = emu.store.lock().expect("store lock");
    // Archiving is idempotent: an unknown or already archived id is no error.
    if let Some(id) = store.find(t, &id, param(&params, "idProperty"))?.map(|o| o.id) {
        store.archive(t, id, Actor::Integration { app_id: caller.app_id });
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn search_objects(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = object_type_with_scope(&emu, &t, &caller, false)?;
    let request: search::SearchRequest = parse_json(&body)?;
    let lag_ms = emu.search_lag_ms.load(std::sync::atomic::Ordering::Relaxed);
    let indexed_until = (lag_ms > 0).then(|| now_ms() - lag_ms as i64);
    let store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::OK, search::search(t, store.of(t), request, indexed_until)?))
}
