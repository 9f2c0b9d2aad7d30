//! Custom (behavioral) events as stored: the account's event definitions, each with its
//! properties, and the occurrences sent for them; with the rules a definition and an
//! occurrence's property values follow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::object::property_value_string;
use super::timeline::{TokenOption, TokenType, check_token_value};
use crate::clock::{iso8601, parse_instant_ms};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;

/// Most event definitions one account may have.
pub const MAX_DEFINITIONS: usize = 500;
/// Most properties one event definition may have.
pub const MAX_PROPERTIES: usize = 50;
/// Longest internal name of a definition or a property.
pub const MAX_NAME_LEN: usize = 50;

/// Every event definition and occurrence of the account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomEventStore {
    /// Definitions by internal name (`name`, not the fully qualified one).
    pub definitions: BTreeMap<String, EventDefinition>,
    pub next_definition_id: u64,
    /// Occurrences in the order they were sent.
    pub occurrences: Vec<EventOccurrence>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinition {
    pub id: u64,
    pub name: String,
    pub fully_qualified_name: String,
    pub label: String,
    pub description: Option<String>,
    pub primary_object: ObjectType,
    pub properties: Vec<EventProperty>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventProperty {
    pub name: String,
    pub label: String,
    pub property_type: EventPropertyType,
    pub description: Option<String>,
    pub options: Vec<TokenOption>,
}

/// The property types a custom event definition declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventPropertyType {
    String,
    Number,
    Enumeration,
    Datetime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventOccurrence {
    pub id: String,
    pub event_name: String,
    pub object_type: ObjectType,
    pub object_id: u64,
    pub properties: Map<String, Value>,
    pub occurred_at_ms: i64,
}

/// A property definition as a create request sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyBody {
    pub name: Option<String>,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub property_type: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub options: Vec<TokenOption>,
}

impl EventPropertyType {
    const ALL: [EventPropertyType; 4] = [
        EventPropertyType::String,
        EventPropertyType::Number,
        EventPropertyType::Enumeration,
        EventPropertyType::Datetime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventPropertyType::String => "string",
            EventPropertyType::Number => "number",
            EventPropertyType::Enumeration => "enumeration",
            EventPropertyType::Datetime => "datetime",
        }
    }
}

/// An internal name HubSpot accepts: lower-case letters, digits, `_` and `-`, at most 50.
pub fn valid_internal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The internal name HubSpot makes from a label when a definition names none.
pub fn name_from_label(label: &str) -> String {
    let mut name: String =
        label.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    name.truncate(MAX_NAME_LEN);
    name
}

/// The object type a definition's `primaryObject` names: CONTACT (the default), COMPANY,
/// DEAL or TICKET.
pub fn primary_object(value: Option<&str>) -> ApiResult<ObjectType> {
    let Some(value) = value else { return Ok(ObjectType::Contacts) };
    ObjectType::parse(value).ok().filter(|t| ObjectType::ALL.contains(t)).ok_or_else(|| {
        ApiFailure::validation(&format!("Invalid primaryObject {value:?}: expected CONTACT, COMPANY, DEAL or TICKET"))
    })
}

impl PropertyBody {
    /// The property this body defines, or HubSpot's 400.
    pub fn checked(self) -> ApiResult<EventProperty> {
        let name = self.name.unwrap_or_default();
        if !valid_internal_name(&name) || name.starts_with("hs_") {
            return Err(ApiFailure::validation(&format!(
                "Invalid property name {name:?}: use at most {MAX_NAME_LEN} lower-case letters, digits, '_' and '-', \
                 not starting with hs_"
            )));
        }
        let label = self
            .label
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| ApiFailure::validation(&format!("Property {name} needs a label")))?;
        let type_name = self.property_type.unwrap_or_default();
        let property_type = EventPropertyType::ALL.into_iter().find(|t| t.name() == type_name).ok_or_else(|| {
            ApiFailure::validation(&format!(
                "Invalid type {type_name:?} of property {name}: expected string, number, enumeration or datetime"
            ))
        })?;
        match (property_type, self.options.is_empty()) {
            (EventPropertyType::Enumeration, true) => {
                return Err(ApiFailure::validation(&format!("Enumeration property {name} needs at least one option")));
            }
            (EventPropertyType::Enumeration, false) => {}
            (_, false) => {
                return Err(ApiFailure::validation(&format!(
                    "Only enumeration properties have options; {name} is not one"
                )));
            }
            (_, true) => {}
        }
        Ok(EventProperty { name, label, property_type, description: self.description, options: self.options })
    }
}

impl EventProperty {
    /// The value as stored (a string, as HubSpot keeps event properties) when it fits the
    /// property's type; HubSpot's 400 otherwise.
    pub fn check_value(&self, value: &Value) -> ApiResult<String> {
        let token_type = match self.property_type {
            EventPropertyType::String => TokenType::String,
            EventPropertyType::Number => TokenType::Number,
            EventPropertyType::Enumeration => TokenType::Enumeration,
            // A datetime takes epoch milliseconds or an ISO 8601 instant.
            EventPropertyType::Datetime => {
                let text = property_value_string(value).unwrap_or_default();
                return match text.parse::<i64>().ok().or_else(|| parse_instant_ms(&text)) {
                    Some(_) => Ok(text),
                    None => Err(ApiFailure::validation(&format!(
                        "Property {} has the value {text:?}, which is not epoch milliseconds or an ISO 8601 time",
                        self.name
                    ))),
                };
            }
        };
        check_token_value(&self.name, token_type, &self.options, value)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "label": self.label,
            "type": self.property_type.name(),
            "description": self.description.clone().unwrap_or_default(),
            "hidden": false,
            "archived": false,
        });
        if self.property_type == EventPropertyType::Enumeration {
            v["options"] = json!(self.options);
        }
        v
    }
}

impl EventDefinition {
    pub fn to_json(&self, with_properties: bool) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "name": self.name,
            "fullyQualifiedName": self.fully_qualified_name,
            "labels": { "singular": self.label, "plural": Value::Null },
            "description": self.description.clone().unwrap_or_default(),
            "primaryObject": self.primary_object.shouting(),
            "objectTypeId": self.primary_object.object_type_id(),
            "trackingType": "MANUAL",
            "archived": false,
            "associations": [],
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        if with_properties {
            v["properties"] = json!(self.properties.iter().map(EventProperty::to_json).collect::<Vec<_>>());
        }
        v
    }

    /// The occurrence's properties, each checked against its definition; every problem is
    /// named, as HubSpot's 400 lists them.
    pub fn check_properties(&self, properties: Map<String, Value>) -> Result<Map<String, Value>, Vec<String>> {
        let mut checked = Map::new();
        let mut problems = vec![];
        for (name, value) in properties {
            match self.properties.iter().find(|p| p.name == name) {
                Some(property) => match property.check_value(&value) {
                    Ok(text) => {
                        checked.insert(name, Value::String(text));
                    }
                    Err(failure) => problems.push(failure.message().to_string()),
                },
                // HubSpot's default event properties (hs_city, hs_page_url, ...) need no definition.
                None if name.starts_with("hs_") => match property_value_string(&value) {
                    Some(text) => {
                        checked.insert(name, Value::String(text));
                    }
                    None => problems.push(format!("Property {name} must be a string, number or boolean")),
                },
                None => {
                    problems.push(format!("Property {name} is not defined for event {}", self.fully_qualified_name))
                }
            }
        }
        if problems.is_empty() { Ok(checked) } else { Err(problems) }
    }
}

impl EventOccurrence {
    /// The occurrence as `GET /events/v3/events` answers it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "eventType": self.event_name,
            "objectType": self.object_type.shouting(),
            "objectId": self.object_id.to_string(),
            "occurredAt": iso8601(self.occurred_at_ms),
            "properties": self.properties,
        })
    }
}

impl CustomEventStore {
    /// The definition an occurrence names by its fully qualified name.
    pub fn by_fully_qualified_name(&self, name: &str) -> Option<&EventDefinition> {
        self.definitions.values().find(|d| d.fully_qualified_name == name)
    }

    pub fn definition(&self, name: &str) -> ApiResult<&EventDefinition> {
        self.definitions.get(name).ok_or_else(|| definition_not_found(name))
    }

    /// The occurrences on record `id` of type `t`.
    pub fn on_record(&self, t: ObjectType, id: u64) -> impl Iterator<Item = &EventOccurrence> {
        self.occurrences.iter().filter(move |o| o.object_type == t && o.object_id == id)
    }
}

pub fn definition_not_found(name: &str) -> ApiFailure {
    ApiFailure::not_found(&format!("Event definition {name} was not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property(name: &str, property_type: &str, options: Vec<TokenOption>) -> ApiResult<EventProperty> {
        PropertyBody {
            name: Some(name.into()),
            label: Some(name.into()),
            property_type: Some(property_type.into()),
            description: None,
            options,
        }
        .checked()
    }

    #[test]
    fn timelines_saved_before_custom_events_still_load() {
        let saved = json!({"templates": {}, "nextTemplateId": 0, "events": {}, "appEventTypes": {}, "appEvents": {}});
        let loaded: super::super::timeline::TimelineStore = serde_json::from_value(saved).unwrap();
        assert_eq!(loaded.custom_events, CustomEventStore::default());
    }

    #[test]
    fn names_follow_hubspots_rules() {
        assert!(valid_internal_name("feature_used-2"));
        assert!(!valid_internal_name("Feature"));
        assert!(!valid_internal_name(&"a".repeat(51)));
        assert_eq!(name_from_label(" Feature used! "), "feature_used_");
        assert_eq!(primary_object(None).unwrap(), ObjectType::Contacts);
        assert_eq!(primary_object(Some("DEAL")).unwrap(), ObjectType::Deals);
        assert!(primary_object(Some("2-7")).is_err());
    }

    #[test]
    fn properties_are_checked_on_definition_and_on_each_value() {
        let plan = vec![TokenOption { label: "Pro".into(), value: "pro".into() }];
        assert!(property("plan", "enumeration", vec![]).is_err(), "an enumeration needs options");
        assert!(property("seats", "number", plan.clone()).is_err(), "only enumerations have options");
        assert!(property("seats", "bool", vec![]).is_err());
        assert!(property("hs_city", "string", vec![]).is_err(), "hs_ names are HubSpot's");
        let now = 1_700_000_000_000;
        let definition = EventDefinition {
            id: 1,
            name: "used".into(),
            fully_qualified_name: "pe1_used".into(),
            label: "Used".into(),
            description: None,
            primary_object: ObjectType::Contacts,
            properties: vec![
                property("plan", "enumeration", plan).unwrap(),
                property("seats", "number", vec![]).unwrap(),
                property("at", "datetime", vec![]).unwrap(),
            ],
            created_at_ms: now,
            updated_at_ms: now,
        };
        let good = json!({"plan": "pro", "seats": 3, "at": "2026-01-02T03:04:05Z", "hs_city": "Lund"});
        let checked = definition.check_properties(good.as_object().unwrap().clone()).unwrap();
        assert_eq!(checked["seats"], json!("3"));
        let bad = json!({"plan": "free", "seats": "many", "at": "soon", "colour": "red"});
        let problems = definition.check_properties(bad.as_object().unwrap().clone()).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("colour")), "{problems:?}");
    }
}
