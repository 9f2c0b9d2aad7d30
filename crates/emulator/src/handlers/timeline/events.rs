//! Timeline v3 events under `{prefix}/events`: create, `batch/create`, read, `detail` and
//! `render`, with a bearer token holding `timeline` or the template's object type scope.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::event_input::{create_batch, create_one, duplicate_event, generated_event_id, target_object, timestamp_ms};
use crate::api::{Params, Shared, json_response, param};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::store::timeline::{EventTemplate, TimelineEvent, check_token_value, render_template, template_not_found};
use crate::store::{Actor, Store, Write};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventBody {
    event_template_id: Option<String>,
    id: Option<String>,
    object_id: Option<Value>,
    email: Option<String>,
    utk: Option<String>,
    domain: Option<String>,
    #[serde(default)]
    tokens: Map<String, Value>,
    extra_data: Option<Value>,
    #[serde(rename = "timelineIFrame")]
    timeline_iframe: Option<Value>,
    timestamp: Option<Value>,
}

/// Checks a timeline event, stamps its tokens onto the record, and stores it.
fn create_timeline_event(store: &mut Store, caller: &Caller, body: EventBody) -> ApiResult<Value> {
    let template_id = body.event_template_id.clone().unwrap_or_default();
    let template = template_id
        .parse::<u64>()
        .ok()
        .and_then(|id| store.timeline.templates.get(&id))
        .cloned()
        .ok_or_else(|| template_not_found(&template_id))?;
    let t = template.object_type;
    caller.require_any(&["timeline".to_string(), t.write_scope()])?;
    if body.utk.is_some() && body.object_id.is_none() && body.email.is_none() {
        return Err(ApiFailure::validation(
            "The emulator has no visitor cookies: name the record by objectId or email",
        ));
    }
    let mut stamps = BTreeMap::new();
    for (name, value) in &body.tokens {
        let token = template.tokens.iter().find(|t| &t.name == name).ok_or_else(|| {
            ApiFailure::validation(&format!("Token {name} is not a token of template {}", template.id))
        })?;
        let text = check_token_value(name, token.token_type, &token.options, value)?;
        if let Some(property) = &token.object_property_name {
            stamps.insert(property.clone(), text);
        }
    }
    let now = now_ms();
    let timestamp_ms = timestamp_ms(body.timestamp.as_ref(), now)?;
    let id = body.id.clone().filter(|id| !id.is_empty()).unwrap_or_else(|| generated_event_id(&template_id));
    if store.timeline.events.get(&template.id).is_some_and(|events| events.contains_key(&id)) {
        return Err(duplicate_event(&id));
    }
    // Stamped values are checked before the target is looked up: an event naming a new email
    // must not leave a contact behind when its event is refused.
    for (property, value) in &stamps {
        if let Some(Err(detail)) = store.of(t).live_property(property).map(|def| def.check_value(value)) {
            return Err(ApiFailure::validation(&format!(
                "The value of a token cannot be written to {property}: {}",
                detail["message"].as_str().unwrap_or("invalid value")
            )));
        }
    }
    let actor = Actor::Integration { app_id: caller.app_id };
    let object_id = target_object(store, t, body.object_id.as_ref(), body.email.as_deref(), actor)?;
    if !stamps.is_empty() {
        store.apply_all(t, vec![Write::Update { id: object_id, properties: stamps }], actor)?;
    }
    let event = TimelineEvent {
        id: id.clone(),
        template_id: template.id,
        object_type: t,
        object_id,
        email: body.email,
        domain: body.domain,
        tokens: body.tokens,
        extra_data: body.extra_data,
        timeline_iframe: body.timeline_iframe,
        timestamp_ms,
        created_at_ms: now,
    };
    let answer = event.to_json();
    store.timeline_mut().events.entry(template.id).or_default().insert(id, event);
    Ok(answer)
}

pub async fn create_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    create_one(&emu, &caller, &body, create_timeline_event)
}

pub async fn create_events(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    create_batch(&emu, &caller, &body, create_timeline_event)
}

/// The event and its template, for a caller allowed to read the template's object type.
fn readable_event(
    store: &Store,
    caller: &Caller,
    template_id: &str,
    event_id: &str,
) -> ApiResult<(TimelineEvent, EventTemplate)> {
    let not_found = || ApiFailure::not_found(&format!("Event {event_id} of template {template_id} was not found"));
    let template =
        template_id.parse::<u64>().ok().and_then(|id| store.timeline.templates.get(&id)).ok_or_else(not_found)?;
    caller.require_any(&["timeline".to_string(), template.object_type.read_scope()])?;
    let event =
        store.timeline.events.get(&template.id).and_then(|events| events.get(event_id)).ok_or_else(not_found)?;
    Ok((event.clone(), template.clone()))
}

pub async fn get_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((template_id, event_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let store = emu.store.lock().expect("store lock");
    let (event, _) = readable_event(&store, &caller, &template_id, &event_id)?;
    Ok(json_response(StatusCode::OK, event.to_json()))
}

pub async fn get_event_detail(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((template_id, event_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let store = emu.store.lock().expect("store lock");
    let (event, template) = readable_event(&store, &caller, &template_id, &event_id)?;
    let details = render_template(template.detail_template.as_deref().unwrap_or_default(), &event.render_context());
    Ok(json_response(StatusCode::OK, json!({ "details": details })))
}

pub async fn render_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((template_id, event_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let store = emu.store.lock().expect("store lock");
    let (event, template) = readable_event(&store, &caller, &template_id, &event_id)?;
    let detail = param(&params, "detail").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let source = if detail { &template.detail_template } else { &template.header_template };
    let html = render_template(source.as_deref().unwrap_or_default(), &event.render_context());
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}
