//! Batches of CRM objects: `batch/{read,create,update,upsert,archive}`, at most 100 inputs
//! (reads with `propertiesWithHistory` at most 50). A batch fails as a whole when one input
//! fails, unless its inputs carry `objectWriteTraceId`: then the good inputs are written and the
//! others come back as `errors` with HTTP 207.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MAX_WITH_HISTORY, object_json, requested_properties, written_names};
use crate::api::{
    MAX_BATCH_INPUTS, Params, Shared, batch_response, bool_param, object_type_with_scope, parse_json, too_many_inputs,
};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use crate::shared::Emulator;
use crate::store::{Actor, Selection, Store, StoredObject, Write, normalize, parse_properties};

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

pub async fn batch_read(
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

pub async fn batch_create(
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

pub async fn batch_update(
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

pub async fn batch_upsert(
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

pub async fn batch_archive(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_ids_are_refused() {
        assert!(reject_duplicate_ids(&["1".into(), "2".into()]).is_ok());
        let err = reject_duplicate_ids(&["1".into(), "2".into(), "1".into()]).unwrap_err();
        assert!(err.message().contains("Duplicate IDs"));
    }
}
