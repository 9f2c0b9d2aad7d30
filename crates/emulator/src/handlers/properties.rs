//! Properties under `/crm/v3/properties/{t}` and `/crm/properties/2026-03/{t}`: list, get,
//! create, update, archive (refused while a schema, a timeline token or a declared workflow
//! uses the property), batches; and property groups at `.../{t}/groups[/{name}]`.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{
    MAX_BATCH_INPUTS, Params, Shared, batch_response, bool_param, json_response, parse_json, resolve_type,
    too_many_inputs,
};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{self, GroupCreateBody, ObjectType, PropertyCreateBody, PropertyGroup, PropertyUpdateBody};
use crate::shared::Emulator;
use crate::store::Store;

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

pub async fn list_properties(
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

pub async fn get_property(
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

pub async fn create_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let body: PropertyCreateBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let created = store.add_property(t, body)?;
    Ok(json_response(StatusCode::CREATED, created))
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
pub async fn batch_read_properties(
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
pub async fn batch_create_properties(
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
        match store.add_property(t, input) {
            Ok(created) => results.push(created),
            Err(refused) => errors.push(refused.as_batch_error(json!({ "name": [name] }))),
        }
    }
    Ok(batch_response(StatusCode::CREATED, started, results, errors))
}

/// `POST /crm/v3/properties/{t}/batch/archive`: all or nothing, like the single archive.
pub async fn batch_archive_properties(
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

pub async fn update_property(
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

pub async fn archive_property(
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

pub async fn list_groups(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    let t = schema_type_for_read(&emu, &t, &caller)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.of(t).groups.iter().filter(|g| !g.archived).map(PropertyGroup::to_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

pub async fn get_group(
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

pub async fn update_group(
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

pub async fn archive_group(
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

pub async fn create_group(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = schema_type_for_write(&emu, &t, &caller)?;
    let body: GroupCreateBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::CREATED, store.add_group(t, body)?))
}
