//! App events, the developer platform's successor to timeline events: `POST
//! /integrators/timeline/v4/events` (and the date-versioned `/integrators/timeline/2026-03/events`),
//! `.../events/batch/create` and reads, with the `timeline` scope.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::event_input::{create_batch, create_one, duplicate_event, generated_event_id, target_object, timestamp_ms};
use crate::api::{Shared, json_response};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::store::timeline::{AppEvent, check_token_value};
use crate::store::{Actor, Store};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppEventBody {
    event_type_name: Option<String>,
    id: Option<String>,
    object_id: Option<Value>,
    email: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
    timestamp: Option<Value>,
}

/// Checks an app event against its event type and stores it.
fn create_app_event(store: &mut Store, caller: &Caller, body: AppEventBody) -> ApiResult<Value> {
    caller.require_any(&["timeline".to_string()])?;
    let type_name = body.event_type_name.clone().unwrap_or_default();
    let event_type = store
        .timeline
        .app_event_types
        .get(&type_name)
        .cloned()
        .ok_or_else(|| ApiFailure::not_found(&format!("App event type {type_name:?} does not exist")))?;
    let mut properties = Map::new();
    for (name, value) in body.properties {
        let property = event_type.properties.iter().find(|p| p.name == name).ok_or_else(|| {
            ApiFailure::validation(&format!("Property {name} is not declared by event type {type_name}"))
        })?;
        check_token_value(&name, property.token_type, &property.options, &value)?;
        properties.insert(name, value);
    }
    let now = now_ms();
    let timestamp_ms = timestamp_ms(body.timestamp.as_ref(), now)?;
    let id = body.id.filter(|id| !id.is_empty()).unwrap_or_else(|| generated_event_id(&type_name));
    if store.timeline.app_events.get(&type_name).is_some_and(|events| events.contains_key(&id)) {
        return Err(duplicate_event(&id));
    }
    let t = event_type.object_type;
    let actor = Actor::Integration { app_id: caller.app_id };
    let object_id = target_object(store, t, body.object_id.as_ref(), body.email.as_deref(), actor)?;
    let event = AppEvent {
        id: id.clone(),
        event_type_name: type_name.clone(),
        object_type: t,
        object_id,
        email: body.email,
        properties,
        timestamp_ms,
        created_at_ms: now,
    };
    let answer = event.to_json();
    store.timeline_mut().app_events.entry(type_name).or_default().insert(id, event);
    Ok(answer)
}

pub async fn send_app_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    create_one(&emu, &caller, &body, create_app_event)
}

pub async fn send_app_events(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    create_batch(&emu, &caller, &body, create_app_event)
}

pub async fn get_app_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((type_name, event_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_any(&["timeline".to_string()])?;
    let store = emu.store.lock().expect("store lock");
    let event = store
        .timeline
        .app_events
        .get(&type_name)
        .and_then(|events| events.get(&event_id))
        .ok_or_else(|| ApiFailure::not_found(&format!("App event {event_id} of type {type_name} was not found")))?;
    Ok(json_response(StatusCode::OK, event.to_json()))
}
