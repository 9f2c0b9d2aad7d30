//! Pipelines at `/crm/v3/pipelines/{objectType}` and `/crm/pipelines/2026-03/{objectType}`, for
//! deals and tickets: list, create, read, replace (PUT), update (PATCH), archive (DELETE), and
//! the same for the stages of one pipeline under `.../{pipelineId}/stages`. Deletes take
//! `validateReferencesBeforeDelete` / `validateDealStageUsagesBeforeDelete` (default false, as
//! in v3): with either set, a delete of a pipeline or stage records are in answers 400.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{Params, Shared, bool_param, json_response, object_type_with_scope, parse_json};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::ApiResult;
use crate::schema::ObjectType;
use crate::shared::Emulator;
use crate::store::pipelines::{PipelineInput, StageInput, stage_not_found};

/// The type a path names, for a caller who may read (or write) its records; types without
/// pipelines are refused by the store.
fn pipeline_type(emu: &Emulator, t: &str, caller: &Caller, write: bool) -> ApiResult<ObjectType> {
    object_type_with_scope(emu, t, caller, write)
}

/// Whether a delete must be refused while records use what it deletes.
fn validate_before_delete(params: &[(String, String)]) -> bool {
    bool_param(params, "validateReferencesBeforeDelete") || bool_param(params, "validateDealStageUsagesBeforeDelete")
}

pub async fn list_pipelines(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, false)?;
    let store = emu.store.lock().expect("store lock");
    store.pipelines().of(t)?;
    let results: Vec<Value> = store.pipelines().live(t).into_iter().map(|p| p.to_json()).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

pub async fn create_pipeline(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, true)?;
    let input: PipelineInput = parse_json(&body)?;
    let created = emu.store.lock().expect("store lock").create_pipeline(t, input, now_ms())?;
    Ok(json_response(StatusCode::CREATED, created))
}

pub async fn get_pipeline(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, false)?;
    let store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::OK, store.pipelines().find(t, &id)?.to_json()))
}

pub async fn replace_pipeline(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, true)?;
    let input: PipelineInput = parse_json(&body)?;
    let validate = validate_before_delete(&params);
    let replaced = emu.store.lock().expect("store lock").replace_pipeline(t, &id, input, validate, now_ms())?;
    Ok(json_response(StatusCode::OK, replaced))
}

pub async fn update_pipeline(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, true)?;
    let input: PipelineInput = parse_json(&body)?;
    let updated = emu.store.lock().expect("store lock").update_pipeline(t, &id, input, now_ms())?;
    Ok(json_response(StatusCode::OK, updated))
}

pub async fn archive_pipeline(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, true)?;
    let validate = validate_before_delete(&params);
    emu.store.lock().expect("store lock").archive_pipeline(t, &id, validate, now_ms())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_stages(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, false)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.pipelines().find(t, &id)?.live_stages().map(|s| s.to_json()).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

pub async fn create_stage(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, true)?;
    let input: StageInput = parse_json(&body)?;
    let created = emu.store.lock().expect("store lock").create_stage(t, &id, input, now_ms())?;
    Ok(json_response(StatusCode::CREATED, created))
}

pub async fn get_stage(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id, stage_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, false)?;
    let store = emu.store.lock().expect("store lock");
    let pipeline = store.pipelines().find(t, &id)?;
    let stage = pipeline.stages.iter().find(|s| s.id == stage_id).ok_or_else(|| stage_not_found(&id, &stage_id))?;
    Ok(json_response(StatusCode::OK, stage.to_json()))
}

async fn change_stage(
    emu: &Emulator,
    caller: &Caller,
    path: (String, String, String),
    body: &Bytes,
    replace: bool,
) -> ApiResult<Response> {
    let (t, id, stage_id) = path;
    let t = pipeline_type(emu, &t, caller, true)?;
    let input: StageInput = parse_json(body)?;
    let updated = emu.store.lock().expect("store lock").update_stage(t, &id, &stage_id, input, replace, now_ms())?;
    Ok(json_response(StatusCode::OK, updated))
}

pub async fn replace_stage(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(path): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    change_stage(&emu, &caller, path, &body, true).await
}

pub async fn update_stage(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(path): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    change_stage(&emu, &caller, path, &body, false).await
}

pub async fn archive_stage(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((t, id, stage_id)): Path<(String, String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let t = pipeline_type(&emu, &t, &caller, true)?;
    let validate = validate_before_delete(&params);
    emu.store.lock().expect("store lock").archive_stage(t, &id, &stage_id, validate, now_ms())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
