//! Timeline events and app events.
//!
//! - Timeline v3, for apps with event templates: templates and their tokens under
//!   `{prefix}/{appId}/event-templates[/{id}[/tokens[/{name}]]]`, managed with the developer
//!   API key (`?hapikey=`); events under `{prefix}/events` (create, `batch/create`, read,
//!   `detail`, `render`) with a bearer token holding `timeline` or the template's object type
//!   scope. `{prefix}` is `/crm/v3/timeline` (HubSpot's reference) or
//!   `/integrators/timeline/v3` (the path HubSpot's SDKs call).
//! - App events, the developer platform's successor: `POST /integrators/timeline/v4/events`
//!   (and the date-versioned `/integrators/timeline/2026-03/events`), `.../events/batch/create`,
//!   with the `timeline` scope. Their event types are defined in a project's
//!   `app-event` `*-hsmeta.json` files, which no API creates: the emulator takes them through
//!   `POST /_emulator/app-event-types` or a fixture file.
//!
//! Events are immutable: a second event with the same id is refused with 409. A token with an
//! `objectPropertyName` also writes its value to that property of the record, as an update by
//! the calling app (webhooks follow). An event for a contact named by `email` creates the
//! contact when none has that email, as HubSpot does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Emulator;
use super::auth::{Caller, check_developer_key};
use super::clock::{iso8601, now_ms, parse_instant_ms};
use super::error::{ApiFailure, ApiResult, correlation_id};
use super::routes::{json_response, param, parse_json};
use super::schema::ObjectType;
use super::state::{Actor, Store, Write, property_value_string};

type Shared = State<Arc<Emulator>>;
type Params = Query<Vec<(String, String)>>;

/// Most event templates (and app event types) one app may have.
const MAX_TEMPLATES_PER_APP: usize = 750;
/// HubSpot numbers event templates from about a million up.
const FIRST_TEMPLATE_ID: u64 = 1_000_001;

/// Every timeline template, event, app event type and app event of the account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineStore {
    templates: BTreeMap<u64, EventTemplate>,
    next_template_id: u64,
    /// Events by template id, then event id.
    events: BTreeMap<u64, BTreeMap<String, TimelineEvent>>,
    /// App event types by fully qualified name.
    app_event_types: BTreeMap<String, AppEventType>,
    /// App events by event type name, then event id.
    app_events: BTreeMap<String, BTreeMap<String, AppEvent>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTemplate {
    id: u64,
    app_id: u64,
    name: String,
    object_type: ObjectType,
    header_template: Option<String>,
    detail_template: Option<String>,
    tokens: Vec<TemplateToken>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// A token (HubSpot's UI calls them event properties) of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateToken {
    name: String,
    label: String,
    token_type: TokenType,
    options: Vec<TokenOption>,
    object_property_name: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenType {
    Date,
    Enumeration,
    Number,
    String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TokenOption {
    label: String,
    value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineEvent {
    id: String,
    template_id: u64,
    object_type: ObjectType,
    object_id: u64,
    email: Option<String>,
    domain: Option<String>,
    tokens: Map<String, Value>,
    extra_data: Option<Value>,
    timeline_iframe: Option<Value>,
    timestamp_ms: i64,
    created_at_ms: i64,
}

/// An app event type, as a project's `app-event` component declares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppEventType {
    pub fully_qualified_name: String,
    pub name: String,
    pub object_type: ObjectType,
    pub header_template: Option<String>,
    pub detail_template: Option<String>,
    pub properties: Vec<AppEventProperty>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppEventProperty {
    name: String,
    label: String,
    token_type: TokenType,
    options: Vec<TokenOption>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppEvent {
    id: String,
    event_type_name: String,
    object_type: ObjectType,
    object_id: u64,
    email: Option<String>,
    properties: Map<String, Value>,
    timestamp_ms: i64,
    created_at_ms: i64,
}

// ---- request bodies ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    name: Option<String>,
    label: Option<String>,
    #[serde(rename = "type")]
    token_type: Option<String>,
    #[serde(default)]
    options: Vec<TokenOption>,
    object_property_name: Option<String>,
}

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

#[derive(Deserialize)]
struct BatchBody<T> {
    inputs: Vec<T>,
}

// ---- validation ----------------------------------------------------------------------------

impl TokenType {
    const ALL: [TokenType; 4] = [TokenType::Date, TokenType::Enumeration, TokenType::Number, TokenType::String];

    fn name(self) -> &'static str {
        match self {
            TokenType::Date => "date",
            TokenType::Enumeration => "enumeration",
            TokenType::Number => "number",
            TokenType::String => "string",
        }
    }
}

fn token_type(s: Option<&str>) -> ApiResult<TokenType> {
    let s = s.ok_or_else(|| ApiFailure::validation("A token needs a type"))?;
    TokenType::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
        ApiFailure::validation(&format!("Invalid token type {s}: expected one of date, enumeration, number, string"))
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn checked_options(token_type: TokenType, options: Vec<TokenOption>, name: &str) -> ApiResult<Vec<TokenOption>> {
    match token_type {
        TokenType::Enumeration if options.is_empty() => {
            Err(ApiFailure::validation(&format!("Enumeration token {name} needs at least one option")))
        }
        TokenType::Enumeration => Ok(options),
        _ if !options.is_empty() => {
            Err(ApiFailure::validation(&format!("Only enumeration tokens have options; {name} is not one")))
        }
        _ => Ok(options),
    }
}

impl TokenBody {
    fn into_token(self, store: &Store, object_type: ObjectType, now: i64) -> ApiResult<TemplateToken> {
        let name = self.name.unwrap_or_default();
        if !valid_name(&name) {
            return Err(ApiFailure::validation(&format!(
                "Invalid token name {name:?}: use letters, digits, '_' and '-'"
            )));
        }
        let label = self
            .label
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| ApiFailure::validation(&format!("Token {name} needs a label")))?;
        let token_type = token_type(self.token_type.as_deref())?;
        let options = checked_options(token_type, self.options, &name)?;
        check_object_property(store, object_type, self.object_property_name.as_deref())?;
        Ok(TemplateToken {
            name,
            label,
            token_type,
            options,
            object_property_name: self.object_property_name,
            created_at_ms: now,
            updated_at_ms: now,
        })
    }
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

/// The value's string form when it fits the token's type; HubSpot's 400 otherwise.
fn check_token_value(name: &str, token_type: TokenType, options: &[TokenOption], value: &Value) -> ApiResult<String> {
    let text = property_value_string(value)
        .ok_or_else(|| ApiFailure::validation(&format!("Token {name} must be a string, number or boolean")))?;
    let fits = match token_type {
        TokenType::String => true,
        TokenType::Number => text.parse::<f64>().is_ok_and(f64::is_finite),
        TokenType::Date => text.parse::<i64>().is_ok(),
        TokenType::Enumeration => options.iter().any(|o| o.value == text),
    };
    if fits {
        Ok(text)
    } else {
        let expected = match token_type {
            TokenType::Number => "a number".to_string(),
            TokenType::Date => "a timestamp in epoch milliseconds".to_string(),
            _ => format!("one of {:?}", options.iter().map(|o| o.value.as_str()).collect::<Vec<_>>()),
        };
        Err(ApiFailure::validation(&format!("Token {name} has the value {text:?}, which is not {expected}")))
    }
}

fn timestamp_ms(value: Option<&Value>, now: i64) -> ApiResult<i64> {
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
fn target_object(
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

fn duplicate_event(id: &str) -> ApiFailure {
    ApiFailure::conflict(&format!("An event with id {id} already exists"))
}

fn generated_event_id(prefix: &str) -> String {
    format!("{prefix}-{}", correlation_id())
}

// ---- JSON answers --------------------------------------------------------------------------

impl TemplateToken {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "label": self.label,
            "type": self.token_type,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        if self.token_type == TokenType::Enumeration {
            v["options"] = json!(self.options);
        }
        if let Some(p) = &self.object_property_name {
            v["objectPropertyName"] = json!(p);
        }
        v
    }
}

impl EventTemplate {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "name": self.name,
            "objectType": self.object_type.plural(),
            "tokens": self.tokens.iter().map(TemplateToken::to_json).collect::<Vec<_>>(),
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        if let Some(h) = &self.header_template {
            v["headerTemplate"] = json!(h);
        }
        if let Some(d) = &self.detail_template {
            v["detailTemplate"] = json!(d);
        }
        v
    }
}

impl TimelineEvent {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "eventTemplateId": self.template_id.to_string(),
            "objectType": self.object_type.plural(),
            "objectId": self.object_id.to_string(),
            "tokens": self.tokens,
            "timestamp": iso8601(self.timestamp_ms),
            "createdAt": iso8601(self.created_at_ms),
        });
        for (key, value) in [
            ("email", self.email.clone().map(Value::String)),
            ("domain", self.domain.clone().map(Value::String)),
            ("extraData", self.extra_data.clone()),
            ("timelineIFrame", self.timeline_iframe.clone()),
        ] {
            if let Some(value) = value {
                v[key] = value;
            }
        }
        v
    }

    /// What the template's Handlebars-style `{{...}}` expressions can name.
    fn render_context(&self) -> Value {
        let mut context = Value::Object(self.tokens.clone());
        context["extraData"] = self.extra_data.clone().unwrap_or(Value::Null);
        context["objectId"] = json!(self.object_id.to_string());
        context["timestamp"] = json!(self.timestamp_ms);
        context
    }
}

impl AppEvent {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "eventTypeName": self.event_type_name,
            "objectType": self.object_type.plural(),
            "objectId": self.object_id.to_string(),
            "properties": self.properties,
            "timestamp": iso8601(self.timestamp_ms),
            "createdAt": iso8601(self.created_at_ms),
        });
        if let Some(email) = &self.email {
            v["email"] = json!(email);
        }
        v
    }
}

/// Substitutes `{{name}}` and `{{extraData.path}}`; block helpers (`{{#...}}`, `{{/...}}`)
/// and unknown names render as nothing.
fn render(template: &str, context: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expression = rest[start + 2..start + len].trim();
        let value = expression.split('.').try_fold(context, |v, key| v.get(key));
        if let Some(text) = value.and_then(property_value_string) {
            out.push_str(&text);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

// ---- the store's side ----------------------------------------------------------------------

impl TimelineStore {
    fn app_templates(&self, app_id: u64) -> impl Iterator<Item = &EventTemplate> {
        self.templates.values().filter(move |t| t.app_id == app_id)
    }

    fn template_of_app(&self, app_id: u64, id: &str) -> ApiResult<&EventTemplate> {
        id.parse::<u64>()
            .ok()
            .and_then(|id| self.templates.get(&id))
            .filter(|t| t.app_id == app_id)
            .ok_or_else(|| template_not_found(id))
    }

    fn template_of_app_mut(&mut self, app_id: u64, id: &str) -> ApiResult<&mut EventTemplate> {
        id.parse::<u64>()
            .ok()
            .and_then(|id| self.templates.get_mut(&id))
            .filter(|t| t.app_id == app_id)
            .ok_or_else(|| template_not_found(id))
    }

    /// Templates with a token that writes property `name` of type `t`.
    pub fn templates_writing(&self, t: ObjectType, name: &str) -> impl Iterator<Item = u64> {
        self.templates
            .values()
            .filter(move |template| {
                template.object_type == t
                    && template.tokens.iter().any(|token| token.object_property_name.as_deref() == Some(name))
            })
            .map(|template| template.id)
    }

    /// Adds an app event type (as a project deploy does); an existing name is replaced, except
    /// its object type, which HubSpot never lets change.
    pub fn define_app_event_type(&mut self, event_type: AppEventType) -> ApiResult<()> {
        if let Some(existing) = self.app_event_types.get(&event_type.fully_qualified_name)
            && existing.object_type != event_type.object_type
        {
            return Err(ApiFailure::validation(&format!(
                "The objectType of app event type {} cannot change",
                event_type.fully_qualified_name
            )));
        }
        if !self.app_event_types.contains_key(&event_type.fully_qualified_name)
            && self.app_event_types.len() >= MAX_TEMPLATES_PER_APP
        {
            return Err(ApiFailure::validation(&format!("An app has at most {MAX_TEMPLATES_PER_APP} event types")));
        }
        self.app_event_types.insert(event_type.fully_qualified_name.clone(), event_type);
        Ok(())
    }
}

fn template_not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Event template {id} was not found for this app"))
}

impl AppEventType {
    /// An event type from a project's `app-event` component: `{uid, type: "app-event", config:
    /// {name, objectType, headerTemplate, detailTemplate, properties: [{name, label, type,
    /// options}]}}`, or its `config` alone with a `fullyQualifiedName`. Without one the name is
    /// `ae{portalId}_{uid}`.
    pub fn from_definition(definition: &Value, portal_id: u64) -> ApiResult<Self> {
        let config = definition.get("config").unwrap_or(definition);
        let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_string);
        let uid = definition.get("uid").and_then(Value::as_str);
        let fully_qualified_name = definition
            .get("fullyQualifiedName")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| uid.map(|uid| format!("ae{portal_id}_{uid}")))
            .ok_or_else(|| ApiFailure::validation("An app event type needs a uid or a fullyQualifiedName"))?;
        let name = text("name").ok_or_else(|| ApiFailure::validation("An app event type needs a name"))?;
        let object_type = ObjectType::parse(&text("objectType").unwrap_or_default())
            .ok()
            .filter(|t| ObjectType::ALL.contains(t))
            .ok_or_else(|| ApiFailure::validation("objectType must be contacts, companies, deals or tickets"))?;
        let properties = config
            .get("properties")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let body: TokenBody = serde_json::from_value(p.clone())
                    .map_err(|e| ApiFailure::validation(&format!("Invalid app event property: {e}")))?;
                let name = body.name.filter(|n| valid_name(n)).ok_or_else(|| {
                    ApiFailure::validation("An app event property needs a name of letters, digits, '_' and '-'")
                })?;
                let token_type = token_type(body.token_type.as_deref())?;
                let options = checked_options(token_type, body.options, &name)?;
                Ok(AppEventProperty { label: body.label.unwrap_or_else(|| name.clone()), name, token_type, options })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(AppEventType {
            fully_qualified_name,
            name,
            object_type,
            header_template: text("headerTemplate"),
            detail_template: text("detailTemplate"),
            properties,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "fullyQualifiedName": self.fully_qualified_name,
            "name": self.name,
            "objectType": self.object_type.plural(),
            "headerTemplate": self.header_template,
            "detailTemplate": self.detail_template,
            "properties": self.properties.iter().map(|p| {
                let mut v = json!({"name": p.name, "label": p.label, "type": p.token_type});
                if p.token_type == TokenType::Enumeration {
                    v["options"] = json!(p.options);
                }
                v
            }).collect::<Vec<_>>(),
        })
    }
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
    let mut body = json!({
        "status": "COMPLETE",
        "results": created,
        "startedAt": iso8601(started_ms),
        "completedAt": iso8601(now_ms()),
    });
    if errors.is_empty() {
        return json_response(StatusCode::CREATED, body);
    }
    body["numErrors"] = json!(errors.len());
    body["errors"] = Value::Array(errors);
    json_response(StatusCode::MULTI_STATUS, body)
}

// ---- routes --------------------------------------------------------------------------------

/// Template routes (developer API key) for `/crm/v3/timeline` and `/integrators/timeline/v3`.
pub fn template_router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/{app_id}/event-templates", get(list_templates).post(create_template))
        .route(
            "/{app_id}/event-templates/{template_id}",
            get(get_template).put(update_template).delete(archive_template),
        )
        .route("/{app_id}/event-templates/{template_id}/tokens", post(create_token))
        .route("/{app_id}/event-templates/{template_id}/tokens/{token_name}", put(update_token).delete(archive_token))
}

/// Event routes (bearer token) for `/crm/v3/timeline` and `/integrators/timeline/v3`.
pub fn event_router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/events", post(create_event))
        .route("/events/batch/create", post(create_events))
        .route("/events/{template_id}/{event_id}", get(get_event))
        .route("/events/{template_id}/{event_id}/detail", get(get_event_detail))
        .route("/events/{template_id}/{event_id}/render", get(render_event))
}

/// App event routes (bearer token) for `/integrators/timeline/v4` and `/integrators/timeline/2026-03`.
pub fn app_event_router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/events", post(send_app_event))
        .route("/events/batch/create", post(send_app_events))
        .route("/events/{event_type_name}/{event_id}", get(get_app_event))
}

async fn list_templates(State(emu): Shared, Path(app_id): Path<String>, Query(params): Params) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let store = emu.store.lock().expect("store lock");
    let results: Vec<Value> = store.timeline.app_templates(app_id).map(EventTemplate::to_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

async fn create_template(
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
        body.tokens.into_iter().map(|t| t.into_token(&store, object_type, now)).collect::<ApiResult<Vec<_>>>()?;
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

async fn get_template(
    State(emu): Shared,
    Path((app_id, template_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::OK, store.timeline.template_of_app(app_id, &template_id)?.to_json()))
}

/// PUT replaces the name, templates and tokens; the object type never changes.
async fn update_template(
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
            let mut token = t.into_token(&store, existing.object_type, now)?;
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
async fn archive_template(
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

async fn create_token(
    State(emu): Shared,
    Path((app_id, template_id)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult<Response> {
    let app_id = check_developer_key(&emu, &params, &app_id)?;
    let body: TokenBody = parse_json(&body)?;
    let mut store = emu.store.lock().expect("store lock");
    let object_type = store.timeline.template_of_app(app_id, &template_id)?.object_type;
    let token = body.into_token(&store, object_type, now_ms())?;
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
async fn update_token(
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
    let updated =
        TokenBody { name: Some(token.name.clone()), token_type: Some(token.token_type.name().to_string()), ..body }
            .into_token(&store, object_type, now_ms())?;
    let created_at_ms = token.created_at_ms;
    let template = store.timeline_mut().template_of_app_mut(app_id, &template_id)?;
    let slot = template.tokens.iter_mut().find(|t| t.name == token_name).expect("the token was found above");
    *slot = TemplateToken { created_at_ms, ..updated };
    Ok(json_response(StatusCode::OK, slot.to_json()))
}

async fn archive_token(
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

async fn create_event(State(emu): Shared, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult<Response> {
    create_one(&emu, &caller, &body, create_timeline_event)
}

async fn create_events(State(emu): Shared, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult<Response> {
    create_batch(&emu, &caller, &body, create_timeline_event)
}

async fn send_app_event(State(emu): Shared, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult<Response> {
    create_one(&emu, &caller, &body, create_app_event)
}

async fn send_app_events(State(emu): Shared, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult<Response> {
    create_batch(&emu, &caller, &body, create_app_event)
}

type Create<B> = fn(&mut Store, &Caller, B) -> ApiResult<Value>;

fn create_one<B: DeserializeOwned>(
    emu: &Emulator,
    caller: &Caller,
    body: &Bytes,
    create: Create<B>,
) -> ApiResult<Response> {
    let input: B = parse_json(body)?;
    let mut store = emu.store.lock().expect("store lock");
    Ok(json_response(StatusCode::CREATED, create(&mut store, caller, input)?))
}

fn create_batch<B: DeserializeOwned>(
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

async fn get_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((template_id, event_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let store = emu.store.lock().expect("store lock");
    let (event, _) = readable_event(&store, &caller, &template_id, &event_id)?;
    Ok(json_response(StatusCode::OK, event.to_json()))
}

async fn get_event_detail(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((template_id, event_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let store = emu.store.lock().expect("store lock");
    let (event, template) = readable_event(&store, &caller, &template_id, &event_id)?;
    let details = render(template.detail_template.as_deref().unwrap_or_default(), &event.render_context());
    Ok(json_response(StatusCode::OK, json!({ "details": details })))
}

async fn render_event(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path((template_id, event_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let store = emu.store.lock().expect("store lock");
    let (event, template) = readable_event(&store, &caller, &template_id, &event_id)?;
    let detail = param(&params, "detail").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let source = if detail { &template.detail_template } else { &template.header_template };
    let html = render(source.as_deref().unwrap_or_default(), &event.render_context());
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn get_app_event(
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

/// `GET /_emulator/app-event-types`: every app event type defined.
pub fn app_event_types_json(store: &Store) -> Value {
    json!(store.timeline.app_event_types.values().map(AppEventType::to_json).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_substitutes_tokens_and_extra_data() {
        let context = json!({"petName": "Art3mis", "age": 3, "extraData": {"owner": {"name": "Parzival"}}});
        assert_eq!(
            render("# {{petName}} ({{ age }}) of {{extraData.owner.name}}{{#if x}}{{/if}}{{missing}}", &context),
            "# Art3mis (3) of Parzival"
        );
        assert_eq!(render("no tokens", &context), "no tokens");
        assert_eq!(render("dangling {{petName", &context), "dangling {{petName");
    }

    #[test]
    fn token_values_are_checked_by_type() {
        let options = vec![TokenOption { label: "Black".into(), value: "black".into() }];
        assert_eq!(check_token_value("n", TokenType::Number, &[], &json!("3.5")).unwrap(), "3.5");
        assert_eq!(check_token_value("n", TokenType::Number, &[], &json!(7)).unwrap(), "7");
        assert!(check_token_value("n", TokenType::Number, &[], &json!("three")).is_err());
        assert!(check_token_value("d", TokenType::Date, &[], &json!("1491062400000")).is_ok());
        assert!(check_token_value("d", TokenType::Date, &[], &json!("yesterday")).is_err());
        assert!(check_token_value("e", TokenType::Enumeration, &options, &json!("black")).is_ok());
        let refused = check_token_value("e", TokenType::Enumeration, &options, &json!("pink")).unwrap_err();
        assert!(refused.message().contains("black"), "{}", refused.message());
        assert!(check_token_value("s", TokenType::String, &[], &json!({"a": 1})).is_err());
    }

    #[test]
    fn app_event_types_read_a_project_definition() {
        let definition = json!({
            "uid": "customer_login",
            "type": "app-event",
            "config": {
                "name": "Customer login",
                "objectType": "CONTACT",
                "headerTemplate": "{{customerName}} logged in",
                "properties": [
                    {"name": "customerName", "label": "Customer name", "type": "string"},
                    {"name": "channel", "label": "Channel", "type": "enumeration",
                     "options": [{"label": "Mobile", "value": "mobile"}]}
                ]
            }
        });
        let event_type = AppEventType::from_definition(&definition, 62515).unwrap();
        assert_eq!(event_type.fully_qualified_name, "ae62515_customer_login");
        assert_eq!(event_type.object_type, ObjectType::Contacts);
        assert_eq!(event_type.properties.len(), 2);
        let no_options = json!({"uid": "x", "config": {"name": "X", "objectType": "deals",
            "properties": [{"name": "stage", "type": "enumeration"}]}});
        assert!(AppEventType::from_definition(&no_options, 1).is_err());
        let custom = json!({"uid": "x", "config": {"name": "X", "objectType": "2-7"}});
        assert!(AppEventType::from_definition(&custom, 1).is_err());
        let mut store = TimelineStore::default();
        store.define_app_event_type(event_type.clone()).unwrap();
        let moved = AppEventType { object_type: ObjectType::Deals, ..event_type };
        assert!(store.define_app_event_type(moved).is_err(), "an event type keeps its object type");
    }
}
