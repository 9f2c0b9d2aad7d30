//! Timeline event templates and their tokens, managed with the developer API key under
//! `{prefix}/{appId}/event-templates[/{id}[/tokens[/{name}]]]`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Params, Shared, check_developer_key, json_response, parse_json};
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use crate::store::Store;
use crate::store::timeline::{
    EventTemplate, FIRST_TEMPLATE_ID, MAX_TEMPLATES_PER_APP, TemplateToken, TokenBody, checked_options, token_type,
    valid_name,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateBody {
    id: Option<String>,
    name: Option<String>,
    object_type: Option<String>,
    header_template: Option<String>,
    detail_template: Option<String>,
    #[serde(default)]
    tokens: Vec<TokenBody>,
}

/// A template token from its definition, checked against the template's object type.
fn token_from_body(body: TokenBody, store: &Store, object_type: ObjectType, now: i64) -> ApiResult<TemplateToken> {
    let name = body.name.unwrap_or_default();
    if !valid_name(&name) {
        return Err(ApiFailure::validation(&format!("Invalid token name {name:?}: use letters, digits, '_' and '-'")));
    }
    let label = body
        .label
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ApiFailure::validation(&format!("Token {name} needs a label")))?;
    let token_type = token_type(body.token_type.as_deref())?;
    let options = checked_options(token_type, body.options, &name)?;
    check_object_property(store, object_type, body.object_property_name.as_deref())?;
    Ok(TemplateToken {
        name,
        label,
        token_type,
        options,
        object_property_name: body.object_property_name,
        created_at_ms: now,
        updated_at_ms: now,
    })
}

/// A token can stamp its value onto an existing, writable property of its object type.
fn check_object_property(store: &Store, t: ObjectType, name: Option<&str>) -> ApiResult<()> {
    let Some(name) = name else { return Ok(()) };
    match store.of(t).live_property(name) {
        Some(def) if !def.read_only_value => Ok(()),
        Some(_) => Err(ApiFailure::validation(&format!("objectPropertyName {name} is a read-only property"))),
        None => Err(ApiFailure::validation(&format!("objectPropertyName {name} is not a property of {}", t.plural()))),
    }
}

fn unique_token_names(tokens: &[TemplateToken]) -> ApiResult<()> {
    let mut seen = std::collections::BTreeSet::new();
    match tokens.iter().find(|t| !seen.insert(t.name.as_str())) {
        Some(t) => Err(ApiFailure::validation(&format!("Token {} is declared twice", t.name))),
        None => Ok(()),
    }
}

pub async fn list_templates(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.timeline.app_templates(app_id).map(EventTemplate::to_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

pub async fn create_template(
    State(emu): Shared,
    Path(app_id): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let body: TemplateBody = parse_json(&body)?;
    let name =
        body.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| ApiFailure::validation("A template needs a name"))?;
    let object_type = ObjectType::parse(body.object_type.as_deref().unwrap_or_default())
        .ok()
        .filter(|t| ObjectType::ALL.contains(t))
        .ok_or_else(|| ApiFailure::validation("objectType must be contacts, companies, deals or tickets"))?;
    let mut store = emu.store.lock().expect("store lock");
    if store.timeline.app_templates(app_id).count() >= MAX_TEMPLATES_PER_APP {
        return Err(ApiFailure::validation(&format!("An app has at most {MAX_TEMPLATES_PER_APP} event templates")));
    }
    let now = now_ms();
    let tokens =
        body.tokens.into_iter().map(|t| token_from_body(t, &store, object_type, now)).collect::<ApiResult<Vec<_>>>()?;
    unique_token_names(&tokens)?;
    let timeline = store.timeline_mut();
    let id = timeline.next_template_id.max(FIRST_TEMPLATE_ID);
    timeline.next_template_id = id + 1;
    let template = EventTemplate {
        id,
        app_id,
        name,
        object_type,
        header_template: body.header_template,
        detail_template: body.detail_template,
        tokens,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let answer = template.to_json();
    timeline.templates.insert(id, template);
    Ok(json_response(StatusCode::CREATED, answer))
}

pub async fn get_template(
    State(emu): Shared,
    Path((app_id, template_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::OK, store.timeline.template_of_app(app_id, &template_id)?.to_json()))
}

/// PUT replaces the name, templates and tokens; the object type never changes.
pub async fn update_template(
    State(emu): Shared,
    Path((app_id, template_id)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let body: TemplateBody = parse_json(&body)?;
    if body.id.as_deref().is_some_and(|id| id != template_id) {
        return Err(ApiFailure::validation("The id in the body must be the template id of the path"));
    }
    let name =
        body.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| ApiFailure::validation("A template needs a name"))?;
    let mut store = emu.store.lock().expect("store lock");
    let existing = store.timeline.template_of_app(app_id, &template_id)?.clone();
    let now = now_ms();
    let tokens = body
        .tokens
        .into_iter()
        .map(|t| {
            let mut token = token_from_body(t, &store, existing.object_type, now)?;
            if let Some(old) = existing.tokens.iter().find(|o| o.name == token.name) {
                token.created_at_ms = old.created_at_ms;
            }
            Ok(token)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    unique_token_names(&tokens)?;
    let template = store.timeline_mut().template_of_app_mut(app_id, &template_id)?;
    template.name = name;
    template.header_template = body.header_template;
    template.detail_template = body.detail_template;
    template.tokens = tokens;
    template.updated_at_ms = now;
    Ok(json_response(StatusCode::OK, template.to_json()))
}

/// Deleting a template removes its events too.
pub async fn archive_template(
    State(emu): Shared,
    Path((app_id, template_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let mut store = emu.store.lock().expect("store lock");
    let id = store.timeline.template_of_app(app_id, &template_id)?.id;
    let timeline = store.timeline_mut();
    timeline.templates.remove(&id);
    timeline.events.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create_token(
    State(emu): Shared,
    Path((app_id, template_id)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let body: TokenBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let object_type = store.timeline.template_of_app(app_id, &template_id)?.object_type;
    let token = token_from_body(body, &store, object_type, now_ms())?;
    let template = store.timeline_mut().template_of_app_mut(app_id, &template_id)?;
    if template.tokens.iter().any(|t| t.name == token.name) {
        return Err(ApiFailure::already_exists(&format!(
            "Token {} already exists on template {template_id}",
            token.name
        )));
    }
    let answer = token.to_json();
    template.tokens.push(token);
    template.updated_at_ms = now_ms();
    Ok(json_response(StatusCode::OK, answer))
}

/// A token's name and type never change; its label, options and property do.
pub async fn update_token(
    State(emu): Shared,
    Path((app_id, template_id, token_name)): Path<(String, String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let body: TokenBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let template = store.timeline.template_of_app(app_id, &template_id)?;
    let object_type = template.object_type;
    let token =
        template.tokens.iter().find(|t| t.name == token_name).ok_or_else(|| {
            ApiFailure::not_found(&format!("Token {token_name} was not found on template {template_id}"))
        })?;
    let kept =
        TokenBody { name: Some(token.name.clone()), token_type: Some(token.token_type.name().to_string()), ..body };
    let updated = token_from_body(kept, &store, object_type, now_ms())?;
    let created_at_ms = token.created_at_ms;
    let template = store.timeline_mut().template_of_app_mut(app_id, &template_id)?;
    let slot = template.tokens.iter_mut().find(|t| t.name == token_name).expect("the token was found above");
    *slot = TemplateToken { created_at_ms, ..updated };
    Ok(json_response(StatusCode::OK, slot.to_json()))
}

pub async fn archive_token(
    State(emu): Shared,
    Path((app_id, template_id, token_name)): Path<(String, String, String)>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let mut store = emu.store.lock().expect("store lock");
    let template = store.timeline_mut().template_of_app_mut(app_id, &template_id)?;
    let before = template.tokens.len();
    template.tokens.retain(|t| t.name != token_name);
    if template.tokens.len() == before {
        return Err(ApiFailure::not_found(&format!("Token {token_name} was not found on template {template_id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
