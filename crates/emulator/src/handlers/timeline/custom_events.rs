//! Custom (behavioral) events, a private app's way onto a record's timeline: event definitions
//! under `/events/v3/event-definitions` (scope `behavioral_events.event_definitions.read_write`),
//! occurrences sent to `/events/v3/send` and `/events/v3/send/batch` (scope
//! `analytics.behavioral_events.send`), and read back from `/events/v3/events` (scope `oauth`,
//! as HubSpot's OpenAPI description says).

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::event_input::{generated_event_id, target_object, timestamp_ms};
use crate::api::{Params, Shared, bool_param, json_response, param, parse_json};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use crate::shared::Emulator;
use crate::store::custom_events::{
    EventDefinition, EventOccurrence, MAX_DEFINITIONS, MAX_PROPERTIES, PropertyBody, name_from_label, primary_object,
    valid_internal_name,
};
use crate::store::{Actor, Store, property_value_string};

pub const DEFINITIONS_SCOPE: &str = "behavioral_events.event_definitions.read_write";
pub const SEND_SCOPE: &str = "analytics.behavioral_events.send";
/// The scope HubSpot's OpenAPI description names for reading occurrences.
pub const READ_SCOPE: &str = "oauth";
/// Most occurrences one `/events/v3/send/batch` call takes.
pub const MAX_SEND_BATCH: usize = 500;
/// Longest page of definitions or occurrences.
const MAX_PAGE: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionBody {
    label: Option<String>,
    name: Option<String>,
    description: Option<String>,
    primary_object: Option<String>,
    #[serde(default)]
    property_definitions: Vec<PropertyBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DefinitionUpdate {
    label: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OccurrenceBody {
    event_name: Option<String>,
    object_id: Option<Value>,
    email: Option<String>,
    utk: Option<String>,
    uuid: Option<String>,
    occurred_at: Option<Value>,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Deserialize)]
struct SendBatch {
    inputs: Vec<OccurrenceBody>,
}

fn require(caller: &Caller, scope: &str) -> ApiResult<()> {
    caller.require_any(&[scope.to_string()])
}

/// The first page of `items` after offset `after`: `(page, next offset)`.
fn page<T>(items: Vec<T>, params: &[(String, String)]) -> ApiResult<(Vec<T>, Option<usize>)> {
    let limit = match param(params, "limit") {
        None => MAX_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiFailure::validation(&format!("limit must be a whole number from 1 to {MAX_PAGE}")))?,
    };
    let after = param(params, "after").map_or(Ok(0), |a| {
        a.parse::<usize>().map_err(|_| ApiFailure::validation(&format!("Invalid paging cursor {a:?}")))
    })?;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(after).take(limit).collect();
    let next = (after + page.len() < total).then_some(after + page.len());
    Ok((page, next))
}

fn paged(mut body: Value, next: Option<usize>) -> Value {
    if let Some(next) = next {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    body
}

pub async fn create_definition(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let body: DefinitionBody = parse_json(&body)?;
    let label =
        body.label.filter(|l| !l.trim().is_empty()).ok_or_else(|| ApiFailure::validation("An event needs a label"))?;
    let name = body.name.unwrap_or_else(|| name_from_label(&label));
    if !valid_internal_name(&name) {
        return Err(ApiFailure::validation(&format!(
            "Invalid event name {name:?}: use at most 50 lower-case letters, digits, '_' and '-'"
        )));
    }
    let primary_object = primary_object(body.primary_object.as_deref())?;
    if body.property_definitions.len() > MAX_PROPERTIES {
        return Err(ApiFailure::validation(&format!("An event has at most {MAX_PROPERTIES} properties")));
    }
    let properties = body.property_definitions.into_iter().map(PropertyBody::checked).collect::<ApiResult<Vec<_>>>()?;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = properties.iter().find(|p| !seen.insert(p.name.as_str())) {
        return Err(ApiFailure::validation(&format!("Property {} is defined twice", twice.name)));
    }
    let mut store = emu.store.lock().expect("store lock");
    let fully_qualified_name = format!("pe{}_{name}", store.portal_id());
    let events = &store.timeline.custom_events;
    if events.definitions.contains_key(&name) {
        return Err(ApiFailure::already_exists(&format!("An event definition named {name} already exists")));
    }
    if events.definitions.len() >= MAX_DEFINITIONS {
        return Err(ApiFailure::validation(&format!("An account has at most {MAX_DEFINITIONS} event definitions")));
    }
    let events = &mut store.timeline_mut().custom_events;
    let id = events.next_definition_id.max(1);
    events.next_definition_id = id + 1;
    let now = now_ms();
    let definition = EventDefinition {
        id,
        name: name.clone(),
        fully_qualified_name,
        label,
        description: body.description,
        primary_object,
        properties,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let answer = definition.to_json(true);
    events.definitions.insert(name, definition);
    Ok(json_response(StatusCode::CREATED, answer))
}

/// `?searchString=` keeps the definitions whose name or label contains it; `?includeProperties=true`
/// adds each one's properties.
pub async fn list_definitions(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> ApiResult<Response> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let search = param(&params, "searchString").unwrap_or_default().to_lowercase();
    let with_properties = bool_param(&params, "includeProperties");
    let store = emu.store.lock().expect("store lock");
    let matching: Vec<Value> = store
        .timeline
        .custom_events
        .definitions
        .values()
        .filter(|d| d.name.contains(&search) || d.label.to_lowercase().contains(&search))
        .map(|d| d.to_json(with_properties))
        .collect();
    let total = matching.len();
    let (results, next) = page(matching, &params)?;
    Ok(json_response(StatusCode::OK, paged(json!({ "total": total, "results": results }), next)))
}

pub async fn get_definition(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::OK, store.timeline.custom_events.definition(&name)?.to_json(true)))
}

/// PATCH changes the label and description; the name and primary object never change.
pub async fn update_definition(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let update: DefinitionUpdate = parse_json(&body)?;
    if update.label.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err(ApiFailure::validation("An event's label cannot be empty"));
    }
    let mut store = emu.store.lock().expect("store lock");
    store.timeline.custom_events.definition(&name)?;
    let definition = store.timeline_mut().custom_events.definitions.get_mut(&name).expect("checked above");
    if let Some(label) = update.label {
        definition.label = label;
    }
    if let Some(description) = update.description {
        definition.description = Some(description);
    }
    definition.updated_at_ms = now_ms();
    Ok(json_response(StatusCode::OK, definition.to_json(true)))
}

/// Deleting a definition removes its occurrences too.
pub async fn delete_definition(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let mut store = emu.store.lock().expect("store lock");
    store.timeline.custom_events.definition(&name)?;
    let events = &mut store.timeline_mut().custom_events;
    let removed = events.definitions.remove(&name).expect("checked above");
    events.occurrences.retain(|o| o.event_name != removed.fully_qualified_name);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let property = parse_json::<PropertyBody>(&body)?.checked()?;
    let mut store = emu.store.lock().expect("store lock");
    let definition = store.timeline.custom_events.definition(&name)?;
    if definition.properties.iter().any(|p| p.name == property.name) {
        return Err(ApiFailure::already_exists(&format!("Property {} already exists on event {name}", property.name)));
    }
    if definition.properties.len() >= MAX_PROPERTIES {
        return Err(ApiFailure::validation(&format!("An event has at most {MAX_PROPERTIES} properties")));
    }
    let answer = property.to_json();
    let definition = store.timeline_mut().custom_events.definitions.get_mut(&name).expect("checked above");
    definition.properties.push(property);
    definition.updated_at_ms = now_ms();
    Ok(json_response(StatusCode::CREATED, answer))
}

pub async fn delete_property(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((name, property_name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require(&caller, DEFINITIONS_SCOPE)?;
    let mut store = emu.store.lock().expect("store lock");
    if !store.timeline.custom_events.definition(&name)?.properties.iter().any(|p| p.name == property_name) {
        return Err(ApiFailure::not_found(&format!("Property {property_name} was not found on event {name}")));
    }
    let definition = store.timeline_mut().custom_events.definitions.get_mut(&name).expect("checked above");
    definition.properties.retain(|p| p.name != property_name);
    definition.updated_at_ms = now_ms();
    Ok(StatusCode::NO_CONTENT)
}

/// An occurrence checked against its definition, ready to store once its record is found.
struct Checked {
    body: OccurrenceBody,
    definition: EventDefinition,
    properties: Map<String, Value>,
    occurred_at_ms: i64,
}

/// Everything wrong with one occurrence, without changing the store.
fn check_occurrence(store: &Store, body: OccurrenceBody, now: i64) -> Result<Checked, Vec<String>> {
    let event_name = body.event_name.clone().unwrap_or_default();
    let Some(definition) = store.timeline.custom_events.by_fully_qualified_name(&event_name).cloned() else {
        return Err(vec![format!(
            "Event {event_name:?} is not defined; eventName is the fully qualified name pe<portalId>_<name>"
        )]);
    };
    let mut problems = vec![];
    let t = definition.primary_object;
    match (body.object_id.as_ref().and_then(property_value_string).filter(|s| !s.is_empty()), body.email.as_deref()) {
        (Some(id), _) => {
            if !matches!(store.find(t, &id, None), Ok(Some(_))) {
                problems.push(format!("No {} with id {id} exists", t.plural()));
            }
        }
        (None, Some(email)) if !email.trim().is_empty() && t == ObjectType::Contacts => {}
        (None, Some(_)) if t != ObjectType::Contacts => {
            problems.push(format!("email identifies contacts only; event {event_name} is about {}", t.plural()));
        }
        _ if body.utk.is_some() => {
            problems.push(
                "utk alone cannot be resolved: the emulator has no visitor tracking; send objectId or email".into(),
            );
        }
        _ => problems.push("An occurrence needs an objectId, an email or a utk".into()),
    }
    let occurred_at_ms = timestamp_ms(body.occurred_at.as_ref(), now)
        .map_err(|failure| problems.push(format!("occurredAt: {}", failure.message())))
        .unwrap_or(now);
    let properties = definition.check_properties(body.properties.clone()).unwrap_or_else(|mut more| {
        problems.append(&mut more);
        Map::new()
    });
    if problems.is_empty() { Ok(Checked { body, definition, properties, occurred_at_ms }) } else { Err(problems) }
}

/// Stores a checked occurrence on its record (a contact named by an unknown email is created).
fn store_occurrence(store: &mut Store, caller: &Caller, checked: Checked) -> ApiResult<()> {
    let Checked { body, definition, properties, occurred_at_ms } = checked;
    let t = definition.primary_object;
    let actor = Actor::Integration { app_id: caller.app_id };
    let object_id = target_object(store, t, body.object_id.as_ref(), body.email.as_deref(), actor)?;
    let id =
        body.uuid.filter(|u| !u.is_empty()).unwrap_or_else(|| generated_event_id(&definition.fully_qualified_name));
    let occurrence = EventOccurrence {
        id,
        event_name: definition.fully_qualified_name,
        object_type: t,
        object_id,
        properties,
        occurred_at_ms,
    };
    store.timeline_mut().custom_events.occurrences.push(occurrence);
    Ok(())
}

/// Checks every occurrence and stores them all, or none: 204, or HubSpot's 400 naming each
/// problem (by index in a batch).
fn send_all(emu: &Emulator, caller: &Caller, inputs: Vec<OccurrenceBody>, batch: bool) -> ApiResult<Response> {
    let now = now_ms();
    let mut store = emu.store.lock().expect("store lock");
    let mut checked = vec![];
    let mut errors = vec![];
    for (index, input) in inputs.into_iter().enumerate() {
        match check_occurrence(&store, input, now) {
            Ok(c) => checked.push(c),
            Err(problems) => errors.extend(problems.into_iter().map(|message| {
                let context = if batch { json!({ "index": [index.to_string()] }) } else { json!({}) };
                json!({ "message": message, "code": "INVALID_EVENT", "context": context })
            })),
        }
    }
    if !errors.is_empty() {
        let message = match errors.len() {
            1 => errors[0]["message"].as_str().unwrap_or_default().to_string(),
            n => format!("{n} problems with the event occurrences; nothing was stored"),
        };
        return Err(ApiFailure::validation(&message).with_errors(errors));
    }
    for c in checked {
        store_occurrence(&mut store, caller, c)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn send(State(emu): Shared, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult<Response> {
    require(&caller, SEND_SCOPE)?;
    send_all(&emu, &caller, vec![parse_json(&body)?], false)
}

pub async fn send_batch(State(emu): Shared, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult<Response> {
    require(&caller, SEND_SCOPE)?;
    let batch: SendBatch = parse_json(&body)?;
    if batch.inputs.len() > MAX_SEND_BATCH {
        return Err(ApiFailure::validation(&format!(
            "A batch has at most {MAX_SEND_BATCH} events; this one has {}",
            batch.inputs.len()
        )));
    }
    send_all(&emu, &caller, batch.inputs, true)
}

/// `GET /events/v3/events?objectType=&objectId=&eventType=&sort=&limit=&after=`: occurrences,
/// newest first unless `sort=ASCENDING`; `objectId` needs `objectType`.
pub async fn list_occurrences(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> ApiResult<Response> {
    require(&caller, READ_SCOPE)?;
    let object_type = param(&params, "objectType").map(ObjectType::parse).transpose()?;
    let object_id = param(&params, "objectId");
    if object_id.is_some() && object_type.is_none() {
        return Err(ApiFailure::validation("objectId needs objectType"));
    }
    let event_type = param(&params, "eventType");
    let ascending = param(&params, "sort").is_some_and(|s| s.eq_ignore_ascii_case("ASCENDING"));
    let store = emu.store.lock().expect("store lock");
    let mut matching: Vec<&EventOccurrence> = store
        .timeline
        .custom_events
        .occurrences
        .iter()
        .filter(|o| object_type.is_none_or(|t| o.object_type == t))
        .filter(|o| object_id.is_none_or(|id| o.object_id.to_string() == id))
        .filter(|o| event_type.is_none_or(|e| o.event_name == e))
        .collect();
    matching.sort_by_key(|o| o.occurred_at_ms);
    if !ascending {
        matching.reverse();
    }
    let (results, next) = page(matching, &params)?;
    let results: Vec<Value> = results.into_iter().map(EventOccurrence::to_json).collect();
    Ok(json_response(StatusCode::OK, paged(json!({ "results": results }), next)))
}

/// `GET /events/v3/events/event-types`: the names occurrences can be filtered on.
pub async fn list_event_types(State(emu): Shared, Extension(caller): Extension<Caller>) -> ApiResult<Response> {
    require(&caller, READ_SCOPE)?;
    let store = emu.store.lock().expect("store lock");
    let names: Vec<&str> =
        store.timeline.custom_events.definitions.values().map(|d| d.fully_qualified_name.as_str()).collect();
    Ok(json_response(StatusCode::OK, json!({ "eventTypes": names })))
}
