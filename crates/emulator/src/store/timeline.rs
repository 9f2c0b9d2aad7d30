//! Timelines as stored: event templates with their tokens, the events made from them, app event
//! types and app events; with the rules a token's value follows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::custom_events::CustomEventStore;
use super::object::property_value_string;
use crate::clock::iso8601;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;

/// Most event templates (and app event types) one app may have.
pub const MAX_TEMPLATES_PER_APP: usize = 750;
/// HubSpot numbers event templates from about a million up.
pub const FIRST_TEMPLATE_ID: u64 = 1_000_001;

/// Every timeline template, event, app event type and app event of the account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineStore {
    pub templates: BTreeMap<u64, EventTemplate>,
    pub next_template_id: u64,
    /// Events by template id, then event id.
    pub events: BTreeMap<u64, BTreeMap<String, TimelineEvent>>,
    /// App event types by fully qualified name.
    pub app_event_types: BTreeMap<String, AppEventType>,
    /// App events by event type name, then event id.
    pub app_events: BTreeMap<String, BTreeMap<String, AppEvent>>,
    /// Custom event definitions and occurrences; absent from files saved before they existed.
    #[serde(default)]
    pub custom_events: CustomEventStore,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTemplate {
    pub id: u64,
    pub app_id: u64,
    pub name: String,
    pub object_type: ObjectType,
    pub header_template: Option<String>,
    pub detail_template: Option<String>,
    pub tokens: Vec<TemplateToken>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A token (HubSpot's UI calls them event properties) of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateToken {
    pub name: String,
    pub label: String,
    pub token_type: TokenType,
    pub options: Vec<TokenOption>,
    pub object_property_name: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Date,
    Enumeration,
    Number,
    String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenOption {
    pub label: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    pub id: String,
    pub template_id: u64,
    pub object_type: ObjectType,
    pub object_id: u64,
    pub email: Option<String>,
    pub domain: Option<String>,
    pub tokens: Map<String, Value>,
    pub extra_data: Option<Value>,
    pub timeline_iframe: Option<Value>,
    pub timestamp_ms: i64,
    pub created_at_ms: i64,
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
    pub name: String,
    pub label: String,
    pub token_type: TokenType,
    pub options: Vec<TokenOption>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppEvent {
    pub id: String,
    pub event_type_name: String,
    pub object_type: ObjectType,
    pub object_id: u64,
    pub email: Option<String>,
    pub properties: Map<String, Value>,
    pub timestamp_ms: i64,
    pub created_at_ms: i64,
}

/// A token definition, as a template create or update sends it, and as an app event type
/// declares its properties.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    pub name: Option<String>,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub token_type: Option<String>,
    #[serde(default)]
    pub options: Vec<TokenOption>,
    pub object_property_name: Option<String>,
}

impl TokenType {
    pub const ALL: [TokenType; 4] = [TokenType::Date, TokenType::Enumeration, TokenType::Number, TokenType::String];

    pub fn name(self) -> &'static str {
        match self {
            TokenType::Date => "date",
            TokenType::Enumeration => "enumeration",
            TokenType::Number => "number",
            TokenType::String => "string",
        }
    }
}

/// The token type a definition names.
pub fn token_type(s: Option<&str>) -> ApiResult<TokenType> {
    let s = s.ok_or_else(|| ApiFailure::validation("A token needs a type"))?;
    TokenType::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
        ApiFailure::validation(&format!("Invalid token type {s}: expected one of date, enumeration, number, string"))
    })
}

/// A token or property name HubSpot accepts: letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Only enumeration tokens have options, and each has at least one.
pub fn checked_options(token_type: TokenType, options: Vec<TokenOption>, name: &str) -> ApiResult<Vec<TokenOption>> {
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

/// The value's string form when it fits the token's type; HubSpot's 400 otherwise.
pub fn check_token_value(
    name: &str,
    token_type: TokenType,
    options: &[TokenOption],
    value: &Value,
) -> ApiResult<String> {
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

/// Substitutes `{{name}}` and `{{extraData.path}}`; block helpers (`{{#...}}`, `{{/...}}`)
/// and unknown names render as nothing.
pub fn render_template(template: &str, context: &Value) -> String {
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

impl TemplateToken {
    pub fn to_json(&self) -> Value {
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
    pub fn to_json(&self) -> Value {
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
    pub fn to_json(&self) -> Value {
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
    pub fn render_context(&self) -> Value {
        let mut context = Value::Object(self.tokens.clone());
        context["extraData"] = self.extra_data.clone().unwrap_or(Value::Null);
        context["objectId"] = json!(self.object_id.to_string());
        context["timestamp"] = json!(self.timestamp_ms);
        context
    }
}

impl AppEvent {
    /// What the event type's `{{...}}` expressions can name.
    pub fn render_context(&self) -> Value {
        let mut context = Value::Object(self.properties.clone());
        context["objectId"] = json!(self.object_id.to_string());
        context["timestamp"] = json!(self.timestamp_ms);
        context
    }

    pub fn to_json(&self) -> Value {
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

impl TimelineStore {
    pub fn app_templates(&self, app_id: u64) -> impl Iterator<Item = &EventTemplate> {
        self.templates.values().filter(move |t| t.app_id == app_id)
    }

    pub fn template_of_app(&self, app_id: u64, id: &str) -> ApiResult<&EventTemplate> {
        id.parse::<u64>()
            .ok()
            .and_then(|id| self.templates.get(&id))
            .filter(|t| t.app_id == app_id)
            .ok_or_else(|| template_not_found(id))
    }

    pub fn template_of_app_mut(&mut self, app_id: u64, id: &str) -> ApiResult<&mut EventTemplate> {
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

    /// The timeline of record `id` of type `t` as HubSpot's UI shows it, newest first: each
    /// timeline event and app event with its header and detail rendered from its template, and
    /// each custom event occurrence headed by its definition's label.
    pub fn record_timeline(&self, t: ObjectType, id: u64) -> Vec<Value> {
        let on_record = |object_type: ObjectType, object_id: u64| object_type == t && object_id == id;
        let events = self.events.values().flat_map(BTreeMap::values).filter(|e| on_record(e.object_type, e.object_id));
        let mut entries: Vec<(i64, Value)> = events
            .map(|event| {
                let template = self.templates.get(&event.template_id);
                let templates = template.map(|t| (&t.header_template, &t.detail_template));
                (
                    event.timestamp_ms,
                    timeline_entry(event.to_json(), "timelineEvent", templates, &event.render_context()),
                )
            })
            .collect();
        let app_events =
            self.app_events.values().flat_map(BTreeMap::values).filter(|e| on_record(e.object_type, e.object_id));
        entries.extend(app_events.map(|event| {
            let event_type = self.app_event_types.get(&event.event_type_name);
            let templates = event_type.map(|t| (&t.header_template, &t.detail_template));
            (event.timestamp_ms, timeline_entry(event.to_json(), "appEvent", templates, &event.render_context()))
        }));
        entries.extend(self.custom_events.on_record(t, id).map(|occurrence| {
            let definition = self.custom_events.by_fully_qualified_name(&occurrence.event_name);
            let mut entry = timeline_entry(occurrence.to_json(), "customEvent", None, &Value::Null);
            entry["header"] = json!(definition.map(|d| d.label.clone()));
            (occurrence.occurred_at_ms, entry)
        }));
        entries.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        entries.into_iter().map(|(_, entry)| entry).collect()
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

/// An event as the record's timeline shows it: its JSON with its `source` and its header and
/// detail rendered from its template's (`null` where it has none).
fn timeline_entry(
    mut entry: Value,
    source: &str,
    templates: Option<(&Option<String>, &Option<String>)>,
    context: &Value,
) -> Value {
    let (header, detail) = templates.unwrap_or((&None, &None));
    entry["source"] = json!(source);
    entry["header"] = json!(header.as_deref().map(|h| render_template(h, context)));
    entry["detail"] = json!(detail.as_deref().map(|d| render_template(d, context)));
    entry
}

pub fn template_not_found(id: &str) -> ApiFailure {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_substitutes_tokens_and_extra_data() {
        let context = json!({"petName": "Art3mis", "age": 3, "extraData": {"owner": {"name": "Parzival"}}});
        assert_eq!(
            render_template(
                "# {{petName}} ({{ age }}) of {{extraData.owner.name}}{{#if x}}{{/if}}{{missing}}",
                &context
            ),
            "# Art3mis (3) of Parzival"
        );
        assert_eq!(render_template("no tokens", &context), "no tokens");
        assert_eq!(render_template("dangling {{petName", &context), "dangling {{petName");
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
