//! HubSpot's HTTP surface: authentication, rate limits, token introspection, CRM objects and
//! properties. Handlers check scopes first, then parse, then touch the store under its lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Emulator;
use super::admin;
use super::associations;
use super::auth::Caller;
use super::clock::{iso8601, now_ms};
use super::custom_objects;
use super::error::{ApiFailure, ApiResult, CORRELATION_ID_HEADER, correlation_id};
use super::faults::FaultAnswer;
use super::merge;
use super::oauth;
use super::schema::{self, ObjectType, PropertyCreateBody, PropertyDef, PropertyGroup, PropertyUpdateBody};
use super::search;
use super::state::{Actor, Selection, Store, StoredObject, Write, normalize, parse_properties};
use super::timeline;
use super::webhook_settings;

type Shared = State<Arc<Emulator>>;
type Params = Query<Vec<(String, String)>>;

/// Most inputs one batch call takes.
pub const MAX_BATCH_INPUTS: usize = 100;
/// Most results one list page has.
const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 10;

pub fn router(emulator: Arc<Emulator>) -> Router {
    let objects = || {
        Router::new()
            .route("/{t}", get(list_objects).post(create_object))
            .route("/{t}/{id}", get(get_object).patch(update_object).delete(archive_object))
            .route("/{t}/search", post(search_objects))
            .route("/{t}/merge", post(merge::merge_objects))
            .route("/{t}/batch/read", post(batch_read))
            .route("/{t}/batch/create", post(batch_create))
            .route("/{t}/batch/update", post(batch_update))
            .route("/{t}/batch/upsert", post(batch_upsert))
            .route("/{t}/batch/archive", post(batch_archive))
    };
    let properties = || {
        Router::new()
            .route("/{t}", get(list_properties).post(create_property))
            .route("/{t}/{name}", get(get_property).patch(update_property).delete(archive_property))
            .route("/{t}/batch/read", post(batch_read_properties))
            .route("/{t}/batch/create", post(batch_create_properties))
            .route("/{t}/batch/archive", post(batch_archive_properties))
            .route("/{t}/groups", get(list_groups).post(create_group))
            .route("/{t}/groups/{name}", get(get_group).patch(update_group).delete(archive_group))
    };
    let crm = Router::new()
        .nest("/crm/v3/objects", objects())
        .nest("/crm/objects/2026-03", objects())
        .nest("/crm/v3/properties", properties())
        .nest("/crm/properties/2026-03", properties())
        .nest("/crm/v3/schemas", custom_objects::router())
        .nest("/crm/v4", associations::router())
        .nest("/crm-object-schemas/v3/schemas", custom_objects::router())
        .nest("/crm/v3/timeline", timeline::event_router())
        .nest("/integrators/timeline/v3", timeline::event_router())
        .nest("/integrators/timeline/v4", timeline::app_event_router())
        .nest("/integrators/timeline/2026-03", timeline::app_event_router())
        .route_layer(middleware::from_fn_with_state(emulator.clone(), authenticate));
    Router::new()
        .merge(crm)
        .route("/oauth/v2/private-apps/get/access-token-info", post(introspect))
        .nest("/webhooks/v3", webhook_settings::router())
        .nest("/webhooks/2026-03", webhook_settings::router())
        .nest("/crm/v3/timeline", timeline::template_router())
        .nest("/integrators/timeline/v3", timeline::template_router())
        .route("/oauth/v1/token", post(oauth::token))
        .route("/oauth/v3/token", post(oauth::token))
        .route("/oauth/2026-03/token", post(oauth::token))
        .route("/oauth/v3/token/introspect", post(oauth::introspect))
        .route("/oauth/2026-03/token/introspect", post(oauth::introspect))
        .route("/oauth/v1/access-tokens/{token}", get(oauth::access_token_info))
        .route("/oauth/v1/refresh-tokens/{token}", get(oauth::refresh_token_info).delete(oauth::revoke_refresh_token))
        .fallback(|| async { ApiFailure::route_not_found() })
        .layer(middleware::from_fn_with_state(emulator.clone(), admin::record_request))
        .nest("/_emulator", admin::router())
        .with_state(emulator)
}

/// The request's path before nesting stripped its prefix (for `paging.next.link`).
#[derive(Clone)]
struct FullPath(String);

/// Resolves the bearer token, counts the call against the rate limits and applies any injected
/// fault; every answer to an authenticated call carries the `X-HubSpot-RateLimit-*` headers.
async fn authenticate(State(emu): Shared, mut request: Request, next: Next) -> Response {
    let caller = match oauth::bearer_caller(&emu, request.headers()) {
        Ok(caller) => caller,
        Err(failure) => return failure.into_response(),
    };
    // Search is limited per second on its own, and its answers carry no rate-limit headers.
    let (limit_headers, verdict) = if request.uri().path().ends_with("/search") {
        (HeaderMap::new(), emu.search_limiter.lock().expect("search limiter lock").admit())
    } else if caller.public_app {
        emu.limiter.lock().expect("limiter lock").admit_public_app(caller.app_id)
    } else {
        emu.limiter.lock().expect("limiter lock").admit(caller.app_id)
    };
    let mut response = match verdict {
        Ok(()) => {
            let path = request.uri().path().to_string();
            let fault = emu.faults.lock().expect("faults lock").take(&path);
            if let Some(delay) = fault.as_ref().map(|f| f.delay).filter(|d| !d.is_zero()) {
                tokio::time::sleep(delay).await;
            }
            match fault.map_or(FaultAnswer::Serve, |f| f.answer) {
                FaultAnswer::Fail(failure) => {
                    emu.requests.lock().expect("request log lock").count_injected_fault();
                    failure.into_response()
                }
                FaultAnswer::DropConnection => {
                    emu.requests.lock().expect("request log lock").count_injected_fault();
                    return dropped_connection();
                }
                FaultAnswer::Serve => {
                    request.extensions_mut().insert(FullPath(path));
                    request.extensions_mut().insert(caller);
                    next.run(request).await
                }
            }
        }
        Err(failure) => {
            emu.requests.lock().expect("request log lock").count_rate_limited();
            failure.into_response()
        }
    };
    response.headers_mut().extend(limit_headers);
    if !response.headers().contains_key(CORRELATION_ID_HEADER)
        && let Ok(id) = HeaderValue::from_str(&correlation_id())
    {
        response.headers_mut().insert(CORRELATION_ID_HEADER, id);
    }
    response
}

/// An answer whose body fails before its first byte: the server closes the connection and
/// the client sees it end with no response.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: connection dropped",
        ))
    });
    let mut response = Response::new(axum::body::Body::from_stream(failing));
    response.extensions_mut().insert(admin::DroppedConnection);
    response
}

pub(super) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiFailure::validation(&format!("Invalid input JSON: {e}")))
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Last value of a query parameter.
pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `properties=a,b&properties=c` → `[a, b, c]` (HubSpot accepts both forms).
fn list_param(params: &[(String, String)], name: &str) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub(super) fn bool_param(params: &[(String, String)], name: &str) -> bool {
    param(params, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The requested properties, or the type's defaults when none are named.
fn requested_properties(t: ObjectType, named: Vec<String>) -> Vec<String> {
    if named.is_empty() { t.default_properties().iter().map(|s| s.to_string()).collect() } else { named }
}

/// Most objects one read returns when values come with their history.
const MAX_WITH_HISTORY: usize = 50;

/// An object as a read shows it: the `names` properties, and the `history` ones with every
/// value they have had.
fn object_json(
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
fn written_names(properties: &BTreeMap<String, String>) -> Vec<String> {
    properties.keys().cloned().collect()
}

// ---------------------------------------------------------------- token introspection

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenInfoRequest {
    token_key: Option<String>,
}

async fn introspect(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let request: TokenInfoRequest = parse_json(&body)?;
    let token = request.token_key.ok_or_else(|| ApiFailure::validation("tokenKey is required"))?;
    let caller = emu.tokens.get(&token).ok_or_else(ApiFailure::invalid_authentication)?;
    Ok(json_response(
        StatusCode::OK,
        json!({
            "userId": caller.user_id,
            "hubId": emu.config.portal_id,
            "appId": caller.app_id,
            "scopes": caller.scopes.iter().collect::<Vec<_>>(),
        }),
    ))
}

// ---------------------------------------------------------------- objects

/// The object type a path names (built-in or a live custom type).
pub(super) fn resolve_type(emu: &Emulator, t: &str) -> ApiResult<ObjectType> {
    emu.store.lock().expect("store lock").resolve_type(t)
}

fn object_type_with_scope(emu: &Emulator, t: &str, caller: &Caller, write: bool) -> ApiResult<ObjectType> {
    let t = resolve_type(emu, t)?;
    caller.require_any(&[if write { t.write_scope() } else { t.read_scope() }])?;
    Ok(t)
}

async fn list_objects(
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

/// The URL of the next page: this request's URL with `after` replaced.
fn next_link(headers: &HeaderMap, path: &str, params: &[(String, String)], after: u64) -> String {
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

async fn get_object(
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

async fn create_object(
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

async fn update_object(
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

async fn archive_object(
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

async fn search_objects(
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchBody {
    inputs: Option<Vec<Value>>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    properties_with_history: Vec<String>,
    id_property: Option<String>,
}

impl BatchBody {
    fn parse(body: &Bytes) -> ApiResult<(BatchBody, Vec<Value>)> {
        let mut parsed: BatchBody = parse_json(body)?;
        let inputs =
            parsed.inputs.take().ok_or_else(|| ApiFailure::validation("Invalid input JSON: inputs is required"))?;
        if inputs.len() > MAX_BATCH_INPUTS {
            return Err(too_many_inputs(inputs.len()));
        }
        Ok((parsed, inputs))
    }
}

/// HubSpot's answer to a batch of more than 100 inputs.
fn too_many_inputs(count: usize) -> ApiFailure {
    ApiFailure::validation(&format!("Batch input contains {count} inputs; the maximum is {MAX_BATCH_INPUTS}."))
        .with_errors(vec![json!({
            "message": format!("size must be between 0 and {MAX_BATCH_INPUTS}"),
            "code": "INVALID_SIZE",
            "context": { "field": ["inputs"] },
        })])
}

fn input_str(input: &Value, field: &str) -> Option<String> {
    match input.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required_input_str(input: &Value, field: &str) -> ApiResult<String> {
    input_str(input, field)
        .ok_or_else(|| ApiFailure::validation(&format!("Invalid input JSON: every input needs {field}")))
}

/// `{status, results, startedAt, completedAt}`, with `numErrors` and `errors` (and HTTP 207)
/// when some inputs failed.
pub(super) fn batch_response(
    ok_status: StatusCode,
    started_ms: i64,
    results: Vec<Value>,
    errors: Vec<Value>,
) -> Response {
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

async fn batch_read(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let t = object_type_with_scope(&emu, &t, &caller, false)?;
    let (body, inputs) = BatchBody::parse(&body)?;
    if !body.properties_with_history.is_empty() && inputs.len() > MAX_WITH_HISTORY {
        return Err(ApiFailure::validation(&format!(
            "Batch input contains {} inputs; with propertiesWithHistory the maximum is {MAX_WITH_HISTORY}.",
            inputs.len()
        )));
    }
    let ids = inputs.iter().map(|i| required_input_str(i, "id")).collect::<ApiResult<Vec<_>>>()?;
    let names = requested_properties(t, body.properties);
    let history = body.properties_with_history;
    let archived = bool_param(&params, "archived");
    let store = emu.store.lock().expect("store lock");
    let mut results = vec![];
    let mut missing = vec![];
    let mut seen = BTreeSet::new();
    for id in ids {
        let found = if archived {
            id.parse::<u64>().ok().and_then(|n| store.of(t).objects.get(&n)).filter(|o| o.is_archived())
        } else {
            store.find(t, &id, body.id_property.as_deref())?
        };
        match found {
            // Asking twice for one object returns it once.
            Some(o) if seen.insert(o.id) => results.push(object_json(t, o, &store.of(t).properties, &names, &history)),
            Some(_) => {}
            None => missing.push(id),
        }
    }
    let errors = if missing.is_empty() {
        vec![]
    } else {
        vec![json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", t.shouting()),
            "context": { "ids": missing },
            "links": {},
            "errors": [],
        })]
    };
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

/// The batch write endpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Create,
    Update,
    Upsert,
}

/// Writes a batch. `plan` turns the inputs into writes while the store is locked, so nothing
/// changes between looking records up and writing them; an input it cannot plan fails like a
/// write that fails its checks. Without `objectWriteTraceId` on the inputs, one bad input fails
/// the whole call and nothing is written; with them, each input succeeds or fails on its own.
fn write_batch(
    emu: &Emulator,
    t: ObjectType,
    caller: &Caller,
    kind: BatchKind,
    inputs: &[Value],
    started: i64,
    plan: impl FnOnce(&Store) -> ApiResult<Vec<ApiResult<Write>>>,
) -> ApiResult<Response> {
    let trace_ids: Vec<Option<String>> = inputs.iter().map(|i| input_str(i, "objectWriteTraceId")).collect();
    let per_input = trace_ids.iter().any(Option::is_some);
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut store = emu.store.lock().expect("store lock");
    let planned = plan(&store)?;
    // What each result shows: the properties written, and for upserts whether it was created.
    let shown: Vec<(Vec<String>, bool)> = planned
        .iter()
        .map(|w| match w {
            Ok(Write::Create { properties }) => (written_names(properties), true),
            Ok(Write::Update { properties, .. }) => (written_names(properties), false),
            Err(_) => (vec![], false),
        })
        .collect();
    let outcomes: Vec<ApiResult<StoredObject>> = if per_input {
        let writes: Vec<Write> = planned.iter().filter_map(|w| w.as_ref().ok().cloned()).collect();
        let mut applied = store.apply_each(t, writes, actor).into_iter();
        planned
            .into_iter()
            .map(|w| match w {
                Ok(_) => applied.next().expect("one outcome per planned write"),
                Err(failure) => Err(failure),
            })
            .collect()
    } else {
        let writes = planned.into_iter().collect::<ApiResult<Vec<Write>>>()?;
        store.apply_all(t, writes, actor)?.into_iter().map(Ok).collect()
    };
    let defs = &store.of(t).properties;
    let mut results = vec![];
    let mut errors = vec![];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(object) => {
                let (names, created) = &shown[i];
                let mut v = object.to_json(t, defs, Selection::Named(names));
                if kind == BatchKind::Upsert {
                    v["new"] = json!(created);
                }
                if let Some(trace) = &trace_ids[i] {
                    v["objectWriteTraceId"] = json!(trace);
                }
                results.push(v);
            }
            Err(failure) => {
                let trace: Vec<&String> = trace_ids[i].iter().collect();
                errors.push(failure.as_batch_error(json!({ "objectWriteTraceId": trace })));
            }
        }
    }
    let ok_status = if kind == BatchKind::Create { StatusCode::CREATED } else { StatusCode::OK };
    Ok(batch_response(ok_status, started, results, errors))
}

async fn batch_create(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let (_, inputs) = BatchBody::parse(&body)?;
    let writes = inputs
        .iter()
        .map(|i| Ok(Ok(Write::Create { properties: parse_properties(i.get("properties"))? })))
        .collect::<ApiResult<Vec<_>>>()?;
    write_batch(&emu, t, &caller, BatchKind::Create, &inputs, started, |_| Ok(writes))
}

/// Rejects inputs naming the same record twice, as HubSpot does for updates and upserts.
fn reject_duplicate_ids(ids: &[String]) -> ApiResult<()> {
    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<&String> = ids.iter().filter(|id| !seen.insert(*id)).collect();
    if duplicates.is_empty() {
        Ok(())
    } else {
        Err(ApiFailure::validation(&format!(
            "Duplicate IDs found in batch input: {:?}. IDs must be unique",
            duplicates.into_iter().collect::<Vec<_>>()
        )))
    }
}

async fn batch_update(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let (body, inputs) = BatchBody::parse(&body)?;
    let ids = inputs.iter().map(|i| required_input_str(i, "id")).collect::<ApiResult<Vec<_>>>()?;
    reject_duplicate_ids(&ids)?;
    let properties = inputs.iter().map(|i| parse_properties(i.get("properties"))).collect::<ApiResult<Vec<_>>>()?;
    write_batch(&emu, t, &caller, BatchKind::Update, &inputs, started, |store| {
        let mut writes = vec![];
        for ((input, id), properties) in inputs.iter().zip(&ids).zip(properties) {
            let id_property = input_str(input, "idProperty").or_else(|| body.id_property.clone());
            writes.push(match store.find(t, id, id_property.as_deref())? {
                Some(o) => Ok(Write::Update { id: o.id, properties }),
                None => {
                    Err(ApiFailure::not_found(&format!("resource not found: {} {id} does not exist", t.shouting())))
                }
            });
        }
        Ok(writes)
    })
}

async fn batch_upsert(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let (_, inputs) = BatchBody::parse(&body)?;
    let mut keyed = vec![];
    for input in &inputs {
        let id = required_input_str(input, "id")?;
        let id_property = input_str(input, "idProperty")
            .ok_or_else(|| ApiFailure::validation("Invalid input JSON: every upsert input needs idProperty"))?;
        keyed.push((normalize(&id_property, &id), id_property, parse_properties(input.get("properties"))?));
    }
    reject_duplicate_ids(&keyed.iter().map(|(id, prop, _)| format!("{prop}={id}")).collect::<Vec<_>>())?;
    write_batch(&emu, t, &caller, BatchKind::Upsert, &inputs, started, |store| {
        let mut writes = vec![];
        for (id, id_property, mut properties) in keyed {
            writes.push(Ok(match store.find(t, &id, Some(&id_property))? {
                Some(existing) => Write::Update { id: existing.id, properties },
                None => {
                    properties.insert(id_property, id);
                    Write::Create { properties }
                }
            }));
        }
        Ok(writes)
    })
}

async fn batch_archive(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let t = object_type_with_scope(&emu, &t, &caller, true)?;
    let (_, inputs) = BatchBody::parse(&body)?;
    let ids = inputs.iter().map(|i| required_input_str(i, "id")).collect::<ApiResult<Vec<_>>>()?;
    let mut store = emu.store.lock().expect("store lock");
    for id in ids.iter().filter_map(|id| id.parse::<u64>().ok()) {
        store.archive(t, id, Actor::Integration { app_id: caller.app_id });
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- properties

fn schema_type_for_read(emu: &Emulator, t: &str, caller: &Caller) -> ApiResult<ObjectType> {
    let t = resolve_type(emu, t)?;
    caller.require_any(&[t.read_scope(), t.schema_read_scope()])?;
    Ok(t)
}

fn schema_type_for_write(emu: &Emulator, t: &str, caller: &Caller) -> ApiResult<ObjectType> {
    let t = resolve_type(emu, t)?;
    caller.require_any(&[t.schema_write_scope()])?;
    Ok(t)
}

fn property_not_found(t: ObjectType, name: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Unable to find property {name} on object type {}", t.shouting()))
}

async fn list_properties(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let t = schema_type_for_read(&emu, &t, &caller)?;
    let archived = bool_param(&params, "archived");
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> =
        store.of(t).properties.values().filter(|p| p.archived == archived).map(|p| p.to_json()).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

async fn get_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, name)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let t = schema_type_for_read(&emu, &t, &caller)?;
    let archived = bool_param(&params, "archived");
    let store = emu.store.lock().expect("store lock");
    let property = store
        .of(t)
        .properties
        .get(&name)
        .filter(|p| p.archived == archived)
        .ok_or_else(|| property_not_found(t, &name))?;
    Ok(json_response(StatusCode::OK, property.to_json()))
}

async fn create_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let body: PropertyCreateBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let created = add_property(&mut store, t, body)?;
    Ok(json_response(StatusCode::CREATED, created))
}

/// Validates a property definition against the type's schema and stores it; the JSON of the
/// stored property.
pub(super) fn add_property(store: &mut Store, t: ObjectType, body: PropertyCreateBody) -> ApiResult<Value> {
    let def = schema::validate_create(body, now_ms())?;
    if store.of(t).properties.contains_key(&def.name) {
        return Err(ApiFailure::already_exists(&format!("Property named '{}' already exists.", def.name)));
    }
    if !store.of(t).groups.iter().any(|g| g.name == def.group_name && !g.archived) {
        return Err(ApiFailure::validation(&format!("Property group {} does not exist.", def.group_name)));
    }
    if def.has_unique_value && store.custom_unique_count(t) >= 10 {
        return Err(ApiFailure::validation("An object type can have at most 10 unique value properties."));
    }
    let created = def.to_json();
    store.of_mut(t).properties.insert(def.name.clone(), def);
    Ok(created)
}

#[derive(Deserialize)]
struct PropertyNameInput {
    name: String,
}

#[derive(Deserialize)]
struct PropertyBatchBody<T> {
    inputs: Vec<T>,
    #[serde(default)]
    archived: bool,
}

fn parse_property_batch<T: DeserializeOwned>(body: &Bytes) -> ApiResult<PropertyBatchBody<T>> {
    let batch: PropertyBatchBody<T> = parse_json(body)?;
    if batch.inputs.len() > MAX_BATCH_INPUTS {
        return Err(too_many_inputs(batch.inputs.len()));
    }
    Ok(batch)
}

/// `POST /crm/v3/properties/{t}/batch/read`: the named properties; unknown names are reported
/// per input (207), as object batch reads do.
async fn batch_read_properties(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let t = schema_type_for_read(&emu, &t, &caller)?;
    let batch: PropertyBatchBody<PropertyNameInput> = parse_property_batch(&body)?;
    let store = emu.store.lock().expect("store lock");
    let mut results = vec![];
    let mut errors = vec![];
    for input in batch.inputs {
        match store.of(t).properties.get(&input.name).filter(|p| p.archived == batch.archived) {
            Some(property) => results.push(property.to_json()),
            None => errors.push(property_not_found(t, &input.name).as_batch_error(json!({ "name": [input.name] }))),
        }
    }
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

/// `POST /crm/v3/properties/{t}/batch/create`: each definition is validated and created on its
/// own; refused ones are reported per input (207) and do not stop the others.
async fn batch_create_properties(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let batch: PropertyBatchBody<PropertyCreateBody> = parse_property_batch(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let mut results = vec![];
    let mut errors = vec![];
    for input in batch.inputs {
        let name = input.name.clone().unwrap_or_default();
        match add_property(&mut store, t, input) {
            Ok(created) => results.push(created),
            Err(refused) => errors.push(refused.as_batch_error(json!({ "name": [name] }))),
        }
    }
    Ok(batch_response(StatusCode::CREATED, started, results, errors))
}

/// `POST /crm/v3/properties/{t}/batch/archive`: all or nothing, like the single archive.
async fn batch_archive_properties(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let batch: PropertyBatchBody<PropertyNameInput> = parse_property_batch(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    for input in &batch.inputs {
        check_archivable(&store, t, &input.name)?;
    }
    let now = now_ms();
    for input in batch.inputs {
        if let Some(def) = store.of_mut(t).properties.get_mut(&input.name) {
            def.archived = true;
            def.updated_at_ms = now;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn update_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let body: PropertyUpdateBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    if let Some(group) = &body.group_name
        && !store.of(t).groups.iter().any(|g| &g.name == group && !g.archived)
    {
        return Err(ApiFailure::validation(&format!("Property group {group} does not exist.")));
    }
    let def = store
        .of_mut(t)
        .properties
        .get_mut(&name)
        .filter(|p| !p.archived)
        .ok_or_else(|| property_not_found(t, &name))?;
    if def.hubspot_defined {
        return Err(ApiFailure::validation(&format!("{name} is a HubSpot-defined property and cannot be changed.")));
    }
    schema::apply_update(def, body, now_ms())?;
    Ok(json_response(StatusCode::OK, def.to_json()))
}

async fn archive_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let mut store = emu.store.lock().expect("store lock");
    check_archivable(&store, t, &name)?;
    let def = store.of_mut(t).properties.get_mut(&name).expect("checked above");
    def.archived = true;
    def.updated_at_ms = now_ms();
    Ok(StatusCode::NO_CONTENT)
}

/// HubSpot refuses to archive its own properties and properties something else uses (400).
fn check_archivable(store: &Store, t: ObjectType, name: &str) -> ApiResult<()> {
    let def = store.of(t).properties.get(name).ok_or_else(|| property_not_found(t, name))?;
    if def.hubspot_defined {
        return Err(ApiFailure::validation(&format!("{name} is a HubSpot-defined property and cannot be archived.")));
    }
    let uses = store.property_uses(t, name);
    if !uses.is_empty() {
        return Err(ApiFailure::validation(&format!(
            "Property {name} is in use and cannot be archived: used by {}.",
            uses.join(", ")
        )));
    }
    Ok(())
}

async fn list_groups(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    let t = schema_type_for_read(&emu, &t, &caller)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.of(t).groups.iter().filter(|g| !g.archived).map(PropertyGroup::to_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

async fn get_group(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = schema_type_for_read(&emu, &t, &caller)?;
    let store = emu.store.lock().expect("store lock");
    let group =
        store.of(t).groups.iter().find(|g| g.name == name && !g.archived).ok_or_else(|| group_not_found(&name))?;
    Ok(json_response(StatusCode::OK, group.to_json()))
}

fn group_not_found(name: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Unable to find property group {name}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupUpdateBody {
    label: Option<String>,
    display_order: Option<i64>,
}

async fn update_group(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let body: GroupUpdateBody = parse_json(&body)?;
    if body.label.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err(ApiFailure::validation("A property group's label must not be empty."));
    }
    let mut store = emu.store.lock().expect("store lock");
    let group = store
        .of_mut(t)
        .groups
        .iter_mut()
        .find(|g| g.name == name && !g.archived)
        .ok_or_else(|| group_not_found(&name))?;
    if let Some(label) = body.label {
        group.label = label;
    }
    if let Some(order) = body.display_order {
        group.display_order = order;
    }
    Ok(json_response(StatusCode::OK, group.to_json()))
}

async fn archive_group(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let mut store = emu.store.lock().expect("store lock");
    let of = store.of_mut(t);
    if of.properties.values().any(|p| p.group_name == name && !p.archived) {
        return Err(ApiFailure::validation(&format!(
            "Property group {name} still holds properties; move or archive them first."
        )));
    }
    let group = of.groups.iter_mut().find(|g| g.name == name && !g.archived).ok_or_else(|| group_not_found(&name))?;
    group.archived = true;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GroupCreateBody {
    name: Option<String>,
    label: Option<String>,
    display_order: Option<i64>,
}

async fn create_group(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let body: GroupCreateBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::CREATED, add_group(&mut store, t, body)?))
}

/// Stores a new property group; its JSON.
pub(super) fn add_group(store: &mut Store, t: ObjectType, body: GroupCreateBody) -> ApiResult<Value> {
    let (Some(name), Some(label)) = (body.name.filter(|n| !n.is_empty()), body.label.filter(|l| !l.is_empty())) else {
        return Err(ApiFailure::validation("A property group needs a name and a label."));
    };
    if store.of(t).groups.iter().any(|g| g.name == name) {
        return Err(ApiFailure::already_exists(&format!("Property group named '{name}' already exists.")));
    }
    let group = PropertyGroup { name, label, display_order: body.display_order.unwrap_or(-1), archived: false };
    let created = group.to_json();
    store.of_mut(t).groups.push(group);
    Ok(created)
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

    #[test]
    fn duplicate_ids_are_refused() {
        assert!(reject_duplicate_ids(&["1".into(), "2".into()]).is_ok());
        let err = reject_duplicate_ids(&["1".into(), "2".into(), "1".into()]).unwrap_err();
        assert!(err.message().contains("Duplicate IDs"));
    }
}
