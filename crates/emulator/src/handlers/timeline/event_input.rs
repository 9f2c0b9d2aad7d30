//! What timeline events and app events share: the record an event is about, its timestamp
//! and id, and creating one event or a batch of them.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{batch_response, json_response, parse_json};
use crate::auth::Caller;
use crate::clock::{now_ms, parse_instant_ms};
use crate::error::{ApiFailure, ApiResult, correlation_id};
use crate::schema::ObjectType;
use crate::shared::Emulator;
use crate::store::{Actor, Store, Write, property_value_string};

/// A batch create body.
#[derive(Deserialize)]
struct BatchBody<T> {
    inputs: Vec<T>,
}

/// When an event happened: epoch milliseconds or ISO 8601; now when absent.
pub fn timestamp_ms(value: Option<&Value>, now: i64) -> ApiResult<i64> {
    match value {
        None | Some(Value::Null) => Ok(now),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| ApiFailure::validation("timestamp must be a whole number")),
        Some(Value::String(s)) => {
            parse_instant_ms(s).ok_or_else(|| ApiFailure::validation(&format!("Invalid timestamp {s:?}")))
        }
        Some(_) => Err(ApiFailure::validation("timestamp must be an ISO 8601 string")),
    }
}

/// The record an event is about: by `objectId`, or (contacts only) by `email`, creating the
/// contact when none has that email.
pub fn target_object(
    store: &mut Store,
    t: ObjectType,
    object_id: Option<&Value>,
    email: Option<&str>,
    actor: Actor,
) -> ApiResult<u64> {
    if let Some(id) = object_id.and_then(property_value_string).filter(|s| !s.is_empty()) {
        return store
            .find(t, &id, None)?
            .map(|o| o.id)
            .ok_or_else(|| ApiFailure::not_found(&format!("No {} with id {id} exists", t.plural())));
    }
    let Some(email) = email.filter(|e| !e.trim().is_empty()) else {
        return Err(ApiFailure::validation("An event needs an objectId (or, for contacts, an email)"));
    };
    if t != ObjectType::Contacts {
        return Err(ApiFailure::validation(&format!(
            "email identifies contacts only; this event is about {}",
            t.plural()
        )));
    }
    if let Some(found) = store.find(t, email, Some("email"))? {
        return Ok(found.id);
    }
    let properties = BTreeMap::from([("email".to_string(), email.to_string())]);
    Ok(store.apply_all(t, vec![Write::Create { properties }], actor)?[0].id)
}

/// HubSpot's 409 for a second event with the same id: events are immutable.
pub fn duplicate_event(id: &str) -> ApiFailure {
    ApiFailure::conflict(&format!("An event with id {id} already exists"))
}

/// An id for an event whose input names none.
pub fn generated_event_id(prefix: &str) -> String {
    format!("{prefix}-{}", correlation_id())
}

/// Creates each input on its own: 201 when all were created, 207 with HubSpot's `errors` else.
fn batch_answer(results: Vec<ApiResult<Value>>, started_ms: i64) -> Response {
    let mut created = vec![];
    let mut errors = vec![];
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(v) => created.push(v),
            Err(failure) => errors.push(failure.as_batch_error(json!({ "index": [index.to_string()] }))),
        }
    }
    batch_response(StatusCode::CREATED, started_ms, created, errors)
}

/// Checks one input and stores it; its JSON.
pub type Create<B> = fn(&mut Store, &Caller, B) -> ApiResult<Value>;

/// Creates the one event of a request body: 201 with it.
pub fn create_one<B: DeserializeOwned>(
    emu: &Emulator,
    caller: &Caller,
    body: &Bytes,
    create: Create<B>,
) -> ApiResult<Response> {
    let input: B = parse_json(body)?;
    let mut store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::CREATED, create(&mut store, caller, input)?))
}

/// Creates the events of a `{inputs}` body, each on its own.
pub fn create_batch<B: DeserializeOwned>(
    emu: &Emulator,
    caller: &Caller,
    body: &Bytes,
    create: Create<B>,
) -> ApiResult<Response> {
    let started = now_ms();
    let batch: BatchBody<B> = parse_json(body)?;
    let mut store = emu.store.lock().expect("store lock");
    let results = batch.inputs.into_iter().map(|input| create(&mut store, caller, input)).collect();
    Ok(batch_answer(results, started))
}
