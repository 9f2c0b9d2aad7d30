//! Associations v4 (`/crm/v4/...`): associate records with their default or labelled types,
//! list a record's associations and the labels between two types, and batches of each.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{MAX_BATCH_INPUTS, Params, Shared, batch_response, json_response, param, parse_json, resolve_type};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use crate::shared::Emulator;
use crate::store::links::{AssociationType, ObjectRef};
use crate::store::{Actor, Store};

/// Most associations one read answers with.
const MAX_PAGE: usize = 500;

/// An association type as HubSpot's `AssociationSpecWithLabel`: an unlabelled type has no
/// `label` (the published description allows leaving it out, not null).
fn type_json(t: &AssociationType) -> Value {
    let mut spec = json!({ "category": t.category, "typeId": t.type_id });
    if let Some(label) = &t.label {
        spec["label"] = json!(label);
    }
    spec
}

/// Both object types of a call, with the caller's scopes checked: reads need read access to
/// both; writes need write access to the `from` type and read access to the other.
fn pair(emu: &Emulator, caller: &Caller, from: &str, to: &str, write: bool) -> ApiResult<(ObjectType, ObjectType)> {
    let (from, to) = (resolve_type(emu, from)?, resolve_type(emu, to)?);
    caller.require_any(&[if write { from.write_scope() } else { from.read_scope() }])?;
    caller.require_any(&[to.read_scope()])?;
    Ok((from, to))
}

fn record_id(id: &str) -> ApiResult<u64> {
    id.parse().map_err(|_| ApiFailure::validation(&format!("{id} is not a valid object id")))
}

fn default_association_json(from_id: u64, to_id: u64, t: &AssociationType) -> Value {
    json!({
        "from": { "id": from_id.to_string() },
        "to": { "id": to_id.to_string() },
        "associationSpec": { "associationCategory": t.category, "associationTypeId": t.type_id },
    })
}

pub async fn associate_default(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let (id, to_id) = (record_id(&id)?, record_id(&to_id)?);
    let mut store = emu.store.lock().expect("store lock");
    let t = store.default_association_type(from, to)?;
    store.associate((from, id), (to, to_id), &[t.type_id], Actor::Integration { app_id: caller.app_id })?;
    Ok(batch_response(StatusCode::OK, started, vec![default_association_json(id, to_id, &t)], vec![]))
}

/// One `{associationCategory, associationTypeId}` of a labelled create.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationSpec {
    association_category: String,
    association_type_id: u32,
}

/// The type ids of `specs`, each checked against the category HubSpot files it under.
fn spec_type_ids(store: &Store, from: ObjectType, to: ObjectType, specs: &[AssociationSpec]) -> ApiResult<Vec<u32>> {
    let known = store.association_types(from, to);
    specs
        .iter()
        .map(|s| match known.iter().find(|t| t.type_id == s.association_type_id) {
            Some(t) if t.category == s.association_category => Ok(t.type_id),
            Some(t) => Err(ApiFailure::validation(&format!(
                "associationTypeId {} is in category {}, not {}",
                t.type_id, t.category, s.association_category
            ))),
            None => Ok(s.association_type_id),
        })
        .collect()
}

/// `LabelsBetweenObjectPair`: the labels of the associations now between two records.
fn labels_json(store: &Store, from: ObjectRef, to: ObjectRef) -> Value {
    let types = store.association_types(from.0, to.0);
    let ids = store.associations_to(from, to.0).remove(&to.1).unwrap_or_default();
    let labels: Vec<&str> = ids.iter().filter_map(|id| types.iter().find(|t| t.type_id == *id)?.label).collect();
    json!({
        "fromObjectTypeId": from.0.object_type_id(),
        "fromObjectId": from.1,
        "toObjectTypeId": to.0.object_type_id(),
        "toObjectId": to.1,
        "labels": labels,
    })
}

pub async fn associate_labelled(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let (id, to_id) = (record_id(&id)?, record_id(&to_id)?);
    let specs: Vec<AssociationSpec> = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let type_ids = spec_type_ids(&store, from, to, &specs)?;
    store.associate((from, id), (to, to_id), &type_ids, Actor::Integration { app_id: caller.app_id })?;
    Ok(json_response(StatusCode::CREATED, labels_json(&store, (from, id), (to, to_id))))
}

pub async fn archive_pair(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let (id, to_id) = (record_id(&id)?, record_id(&to_id)?);
    emu.store.lock().expect("store lock").dissociate(
        (from, id),
        (to, to_id),
        Actor::Integration { app_id: caller.app_id },
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `{toObjectId, associationTypes: [{category, typeId, label}]}` for each associated record.
fn associated_json(store: &Store, from: ObjectRef, to_type: ObjectType, to_id: u64, type_ids: &[u32]) -> Value {
    let types = store.association_types(from.0, to_type);
    let association_types: Vec<Value> =
        type_ids.iter().filter_map(|id| types.iter().find(|t| t.type_id == *id)).map(type_json).collect();
    json!({ "toObjectId": to_id, "associationTypes": association_types })
}

/// One page of a record's associations to a type, after the `after` record id.
fn page(store: &Store, from: ObjectRef, to: ObjectType, after: u64, limit: usize) -> (Vec<Value>, Option<u64>) {
    let all = store.associations_to(from, to);
    let rest: Vec<(&u64, &Vec<u32>)> = all.range(after + 1..).collect();
    let results = rest.iter().take(limit).map(|(to_id, ids)| associated_json(store, from, to, **to_id, ids)).collect();
    let next = (rest.len() > limit).then(|| *rest[limit - 1].0);
    (results, next)
}

fn parse_after(after: Option<&str>) -> ApiResult<u64> {
    match after {
        None | Some("") => Ok(0),
        Some(a) => a.parse().map_err(|_| ApiFailure::validation(&format!("Invalid after cursor: {a}"))),
    }
}

pub async fn list_associations(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, id, to)): Path<(String, String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let (from, to) = pair(&emu, &caller, &from, &to, false)?;
    let id = record_id(&id)?;
    let limit = match param(&params, "limit") {
        None => MAX_PAGE,
        Some(l) => l.parse::<usize>().map_err(|_| ApiFailure::validation(&format!("Invalid limit: {l}")))?,
    }
    .clamp(1, MAX_PAGE);
    let after = parse_after(param(&params, "after"))?;
    let store = emu.store.lock().expect("store lock");
    store.require_live((from, id))?;
    let (results, next) = page(&store, (from, id), to, after, limit);
    let mut body = json!({ "results": results });
    if let Some(next) = next {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    Ok(json_response(StatusCode::OK, body))
}

pub async fn list_labels(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (from, to) = pair(&emu, &caller, &from, &to, false)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.association_types(from, to).iter().map(type_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

#[derive(Deserialize)]
struct IdRef {
    id: Value,
}

impl IdRef {
    fn id(&self) -> ApiResult<u64> {
        match &self.id {
            Value::String(s) => record_id(s),
            Value::Number(n) => {
                n.as_u64().ok_or_else(|| ApiFailure::validation(&format!("{n} is not a valid object id")))
            }
            other => Err(ApiFailure::validation(&format!("{other} is not a valid object id"))),
        }
    }
}

#[derive(Deserialize)]
struct Inputs<T> {
    inputs: Vec<T>,
}

fn parse_inputs<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<Vec<T>> {
    let Inputs { inputs } = parse_json(body)?;
    if inputs.len() > MAX_BATCH_INPUTS {
        return Err(ApiFailure::validation(&format!(
            "Batch input contains {} inputs; the maximum is {MAX_BATCH_INPUTS}.",
            inputs.len()
        )));
    }
    Ok(inputs)
}

#[derive(Deserialize)]
struct CreateInput {
    from: IdRef,
    to: IdRef,
    types: Vec<AssociationSpec>,
}

pub async fn batch_create(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let inputs: Vec<CreateInput> = parse_inputs(&body)?;
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut store = emu.store.lock().expect("store lock");
    let (mut results, mut errors) = (vec![], vec![]);
    for input in inputs {
        let outcome = (|| {
            let (id, to_id) = (input.from.id()?, input.to.id()?);
            let type_ids = spec_type_ids(&store, from, to, &input.types)?;
            store.associate((from, id), (to, to_id), &type_ids, actor)?;
            Ok::<_, ApiFailure>(labels_json(&store, (from, id), (to, to_id)))
        })();
        match outcome {
            Ok(v) => results.push(v),
            Err(failure) => errors.push(failure.as_batch_error(json!({}))),
        }
    }
    Ok(batch_response(StatusCode::CREATED, started, results, errors))
}

#[derive(Deserialize)]
struct PairInput {
    from: IdRef,
    to: IdRef,
}

pub async fn batch_associate_default(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let inputs: Vec<PairInput> = parse_inputs(&body)?;
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut store = emu.store.lock().expect("store lock");
    let t = store.default_association_type(from, to)?;
    let (mut results, mut errors) = (vec![], vec![]);
    for input in inputs {
        let outcome = (|| {
            let (id, to_id) = (input.from.id()?, input.to.id()?);
            store.associate((from, id), (to, to_id), &[t.type_id], actor)?;
            Ok::<_, ApiFailure>(default_association_json(id, to_id, &t))
        })();
        match outcome {
            Ok(v) => results.push(v),
            Err(failure) => errors.push(failure.as_batch_error(json!({}))),
        }
    }
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

#[derive(Deserialize)]
struct ReadInput {
    id: Value,
    after: Option<String>,
}

pub async fn batch_read(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let started = now_ms();
    let (from, to) = pair(&emu, &caller, &from, &to, false)?;
    let inputs: Vec<ReadInput> = parse_inputs(&body)?;
    let store = emu.store.lock().expect("store lock");
    let (mut results, mut missing) = (vec![], vec![]);
    for input in inputs {
        let id = IdRef { id: input.id.clone() }.id()?;
        let after = parse_after(input.after.as_deref())?;
        if store.require_live((from, id)).is_err() || store.associations_to((from, id), to).is_empty() {
            missing.push(id.to_string());
            continue;
        }
        let (to_records, next) = page(&store, (from, id), to, after, MAX_PAGE);
        let mut v = json!({ "from": { "id": id.to_string() }, "to": to_records });
        if let Some(next) = next {
            v["paging"] = json!({ "next": { "after": next.to_string() } });
        }
        results.push(v);
    }
    let errors = if missing.is_empty() {
        vec![]
    } else {
        vec![json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": format!("No {} is associated with {} {}.", to.shouting(), from.shouting(), missing.join(", ")),
            "context": { "fromObjectId": missing },
            "links": {},
            "errors": [],
        })]
    };
    Ok(batch_response(StatusCode::OK, started, results, errors))
}

#[derive(Deserialize)]
struct ArchiveInput {
    from: IdRef,
    to: Vec<IdRef>,
}

pub async fn batch_archive(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (from, to) = pair(&emu, &caller, &from, &to, true)?;
    let inputs: Vec<ArchiveInput> = parse_inputs(&body)?;
    let actor = Actor::Integration { app_id: caller.app_id };
    let mut pairs = vec![];
    for input in &inputs {
        let id = input.from.id()?;
        for to_ref in &input.to {
            pairs.push((id, to_ref.id()?));
        }
    }
    let mut store = emu.store.lock().expect("store lock");
    for (id, to_id) in pairs {
        store.dissociate((from, id), (to, to_id), actor);
    }
    Ok(StatusCode::NO_CONTENT)
}
