//! Stored CRM records: their values with every value's history, the object types' stores, and
//! the string form HubSpot gives every property value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::iso8601;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::builtin::builtin_schema;
use crate::schema::{ObjectType, PropertyDef, PropertyGroup};

/// Who made a change: it decides `changeSource` and `sourceId` of the webhook events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// A call through the API with a token of this app.
    Integration { app_id: u64 },
    /// A person in HubSpot's UI (the admin API).
    User { user_id: u64 },
}

/// One stored CRM object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    pub id: u64,
    /// Values written by users and integrations, plus the ones HubSpot maintains.
    pub properties: BTreeMap<String, String>,
    /// Every value each property has had, oldest first.
    pub history: BTreeMap<String, Vec<HistoryEntry>>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived_at_ms: Option<i64>,
}

/// Where a property value came from, as `propertiesWithHistory` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueSource {
    Written(Actor),
    /// Maintained by HubSpot (ids, timestamps).
    Calculated,
    /// Seeded data, as if imported.
    Import,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub value: String,
    pub timestamp_ms: i64,
    pub source: ValueSource,
}

impl HistoryEntry {
    fn to_json(&self) -> Value {
        let mut v = json!({ "value": self.value, "timestamp": iso8601(self.timestamp_ms) });
        match self.source {
            ValueSource::Written(Actor::Integration { app_id }) => {
                v["sourceType"] = json!("INTEGRATION");
                v["sourceId"] = json!(app_id.to_string());
            }
            ValueSource::Written(Actor::User { user_id }) => {
                v["sourceType"] = json!("CRM_UI");
                v["sourceId"] = json!(format!("userId:{user_id}"));
                v["updatedByUserId"] = json!(user_id);
            }
            ValueSource::Calculated => v["sourceType"] = json!("CALCULATED"),
            ValueSource::Import => v["sourceType"] = json!("IMPORT"),
        }
        v
    }
}

/// Which properties an answer shows.
pub enum Selection<'a> {
    /// These (the ones the portal defines, each shown even when empty) plus the ones
    /// HubSpot always returns.
    Named(&'a [String]),
    /// Every property with a value.
    All,
}

impl StoredObject {
    /// HubSpot's JSON for the object.
    pub fn to_json(
        &self,
        object_type: ObjectType,
        defs: &BTreeMap<String, PropertyDef>,
        selection: Selection,
    ) -> Value {
        let mut props = serde_json::Map::new();
        match selection {
            Selection::Named(names) => {
                let always = object_type.always_returned();
                for name in names.iter().map(String::as_str).chain(always) {
                    if defs.get(name).is_some_and(|d| !d.archived) {
                        props.insert(name.to_string(), self.properties.get(name).map_or(Value::Null, |v| json!(v)));
                    }
                }
            }
            Selection::All => {
                for (k, v) in &self.properties {
                    props.insert(k.clone(), json!(v));
                }
            }
        }
        let mut v = json!({
            "id": self.id.to_string(),
            "properties": props,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
            "archived": self.archived_at_ms.is_some(),
        });
        if let Some(at) = self.archived_at_ms {
            v["archivedAt"] = json!(iso8601(at));
        }
        v
    }

    pub fn is_archived(&self) -> bool {
        self.archived_at_ms.is_some()
    }

    /// The object as it was at `instant`, from its value history: `None` when it did not exist
    /// yet or was already archived.
    pub fn as_of(&self, instant: i64) -> Option<StoredObject> {
        if self.created_at_ms > instant || self.archived_at_ms.is_some_and(|at| at <= instant) {
            return None;
        }
        let mut then = StoredObject {
            archived_at_ms: None,
            properties: BTreeMap::new(),
            updated_at_ms: self.created_at_ms,
            ..self.clone()
        };
        for (name, entries) in &self.history {
            if let Some(entry) = entries.iter().rev().find(|e| e.timestamp_ms <= instant) {
                then.properties.insert(name.clone(), entry.value.clone());
                then.updated_at_ms = then.updated_at_ms.max(entry.timestamp_ms);
            }
        }
        Some(then)
    }

    /// A new object with the values HubSpot sets on every object.
    pub(super) fn new(t: ObjectType, id: u64, at_ms: i64) -> Self {
        let mut object = StoredObject {
            id,
            properties: BTreeMap::new(),
            history: BTreeMap::new(),
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            archived_at_ms: None,
        };
        object.set("hs_object_id", id.to_string(), at_ms, ValueSource::Calculated);
        object.set(t.create_date_property(), iso8601(at_ms), at_ms, ValueSource::Calculated);
        object.set(t.last_modified_property(), iso8601(at_ms), at_ms, ValueSource::Calculated);
        object
    }

    pub(super) fn set(&mut self, name: &str, value: String, at_ms: i64, source: ValueSource) {
        self.history.entry(name.to_string()).or_default().push(HistoryEntry {
            value: value.clone(),
            timestamp_ms: at_ms,
            source,
        });
        self.properties.insert(name.to_string(), value);
    }

    /// `propertiesWithHistory`: for each named property the portal defines, its values newest first.
    pub fn history_json(&self, defs: &BTreeMap<String, PropertyDef>, names: &[String]) -> Value {
        let mut out = serde_json::Map::new();
        for name in names.iter().filter(|n| defs.get(n.as_str()).is_some_and(|d| !d.archived)) {
            let entries =
                self.history.get(name).map_or(vec![], |h| h.iter().rev().map(HistoryEntry::to_json).collect());
            out.insert(name.clone(), Value::Array(entries));
        }
        Value::Object(out)
    }
}

/// Objects, properties and groups of one object type.
#[derive(Serialize, Deserialize)]
pub struct TypeStore {
    pub objects: BTreeMap<u64, StoredObject>,
    pub properties: BTreeMap<String, PropertyDef>,
    pub groups: Vec<PropertyGroup>,
    /// Properties a create must set.
    pub required: Vec<String>,
    /// Properties a search's `query` looks in.
    pub searchable: Vec<String>,
    /// Ids of records merged away, each with the id of the record it lives on in.
    pub merged: BTreeMap<u64, u64>,
    pub(super) next_id: u64,
}

impl TypeStore {
    /// The id a record now has: a merged record's id leads to the record it was merged into.
    pub fn merged_into(&self, id: u64) -> u64 {
        self.merged.get(&id).copied().unwrap_or(id)
    }

    /// A type with HubSpot's own properties for it and no objects.
    pub fn new(t: ObjectType, now_ms: i64) -> Self {
        let (properties, groups) = builtin_schema(t, now_ms);
        let strings = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        Self {
            objects: BTreeMap::new(),
            properties,
            groups,
            required: strings(t.builtin_required_on_create()),
            searchable: strings(t.builtin_searchable()),
            merged: BTreeMap::new(),
            next_id: 1,
        }
    }
}

impl TypeStore {
    /// Adds HubSpot's properties and groups this type lacks: a state file saved by an older
    /// emulator gains the standard properties added since.
    pub fn add_missing_builtins(&mut self, t: ObjectType, now_ms: i64) {
        let (properties, groups) = builtin_schema(t, now_ms);
        for (name, def) in properties {
            self.properties.entry(name).or_insert(def);
        }
        for group in groups {
            if !self.groups.iter().any(|g| g.name == group.name) {
                self.groups.push(group);
            }
        }
    }

    /// A property definition that is not archived.
    pub fn live_property(&self, name: &str) -> Option<&PropertyDef> {
        self.properties.get(name).filter(|p| !p.archived)
    }
}

/// A write to be made, once every input of its call has passed the checks.
#[derive(Clone, Debug)]
pub enum Write {
    Create { properties: BTreeMap<String, String> },
    Update { id: u64, properties: BTreeMap<String, String> },
}

/// Turns a JSON property value into HubSpot's string form (`null` clears the value).
pub fn property_value_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Reads a `properties` object of a request into strings, HubSpot's 400 otherwise.
pub fn parse_properties(v: Option<&Value>) -> ApiResult<BTreeMap<String, String>> {
    let Some(v) = v else { return Ok(BTreeMap::new()) };
    let Value::Object(map) = v else {
        return Err(ApiFailure::validation("Invalid input JSON: properties must be an object"));
    };
    map.iter()
        .map(|(k, v)| match property_value_string(v) {
            Some(s) => Ok((k.clone(), s)),
            None => Err(ApiFailure::validation(&format!(
                "Invalid input JSON: the value of property {k} must be a string, number or boolean"
            ))),
        })
        .collect()
}

/// HubSpot keeps contact emails in lower case; other values as written.
pub fn normalize(property: &str, value: &str) -> String {
    if property == "email" { value.trim().to_ascii_lowercase() } else { value.to_string() }
}
