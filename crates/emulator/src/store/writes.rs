//! Writes to objects: every write of a call is checked against the schema and the unique
//! values held, then applied with its webhook events.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::pipelines::pipeline_properties;
use super::{Actor, Store, StoredObject, ValueSource, Write, normalize};
use crate::clock::{iso8601, now_ms};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;

impl Store {
    /// Checks every write of one call, then applies them all; nothing is written when any
    /// write fails. Events of the writes are emitted in order.
    pub fn apply_all(&mut self, t: ObjectType, writes: Vec<Write>, actor: Actor) -> ApiResult<Vec<StoredObject>> {
        let mut claimed = HashMap::new();
        let writes = writes.into_iter().map(|w| self.check(t, w, &mut claimed)).collect::<ApiResult<Vec<Write>>>()?;
        Ok(writes.into_iter().map(|w| self.apply(t, w, actor)).collect())
    }

    /// Checks each write on its own and applies those that pass; the result per input.
    pub fn apply_each(&mut self, t: ObjectType, writes: Vec<Write>, actor: Actor) -> Vec<ApiResult<StoredObject>> {
        let mut claimed = HashMap::new();
        let checked: Vec<ApiResult<Write>> = writes.into_iter().map(|w| self.check(t, w, &mut claimed)).collect();
        checked.into_iter().map(|w| w.map(|w| self.apply(t, w, actor))).collect()
    }

    /// Validates a write against the schema and against unique values held by other objects
    /// (and by earlier writes of the same call, recorded in `claimed`). Returns the write with
    /// its values normalised.
    fn check(
        &self,
        t: ObjectType,
        write: Write,
        claimed: &mut HashMap<(String, String), Option<u64>>,
    ) -> ApiResult<Write> {
        let store = self.of(t);
        let (target, properties) = match &write {
            Write::Create { properties } => (None, properties),
            Write::Update { id, properties } => {
                if store.objects.get(id).is_none_or(|o| o.is_archived()) {
                    return Err(ApiFailure::not_found(&format!(
                        "resource not found: {} {id} does not exist",
                        t.shouting()
                    )));
                }
                (Some(*id), properties)
            }
        };
        let mut invalid = vec![];
        for (name, value) in properties {
            match store.live_property(name) {
                None => invalid.push(json!({
                    "isValid": false,
                    "message": format!("Property \"{name}\" does not exist"),
                    "error": "PROPERTY_DOESNT_EXIST",
                    "name": name,
                    "localizedErrorMessage": format!("Property \"{name}\" does not exist"),
                })),
                Some(def) if def.read_only_value => invalid.push(json!({
                    "isValid": false,
                    "message": format!("\"{name}\" is a read only property; its value cannot be set."),
                    "error": "READ_ONLY_VALUE",
                    "name": name,
                    "localizedErrorMessage": format!("\"{name}\" is a read only property; its value cannot be set."),
                })),
                Some(def) => {
                    if let Err(detail) = def.check_value(value) {
                        invalid.push(detail);
                    }
                }
            }
        }
        if target.is_none() {
            for name in &store.required {
                if properties.get(name).is_none_or(String::is_empty) {
                    let message = format!("{name} is required to create a {}", t.shouting().to_ascii_lowercase());
                    invalid.push(json!({
                        "isValid": false,
                        "message": message,
                        "error": "REQUIRED_PROPERTY",
                        "name": name,
                        "localizedErrorMessage": message,
                    }));
                }
            }
        }
        if !invalid.is_empty() {
            return Err(ApiFailure::validation(&format!("Property values were not valid: {}", Value::Array(invalid))));
        }
        let mut properties: BTreeMap<String, String> =
            properties.iter().map(|(k, v)| (k.clone(), normalize(k, v))).collect();
        // A record created in a stage without naming its pipeline is in the default one, as
        // in HubSpot. (Tickets always have a stage: HubSpot requires it.)
        if target.is_none()
            && let Some((pipeline_property, stage_property)) = pipeline_properties(t)
            && properties.get(stage_property).is_some_and(|s| !s.is_empty())
            && let Some(default) = self.pipelines().default_for(t)
        {
            properties.entry(pipeline_property.to_string()).or_insert_with(|| default.id.clone());
        }
        let existing = target.and_then(|id| store.objects.get(&id)).map(|o| &o.properties);
        if let Some(problem) = self.stage_problem(t, &properties, existing) {
            return Err(ApiFailure::validation(&format!(
                "Property values were not valid: {}",
                Value::Array(vec![problem])
            )));
        }
        for (name, value) in &properties {
            if value.is_empty() || !store.properties[name].has_unique_value {
                continue;
            }
            let holder = store
                .objects
                .values()
                .find(|o| !o.is_archived() && Some(o.id) != target && o.properties.get(name) == Some(value));
            if let Some(holder) = holder {
                return Err(unique_conflict(t, name, value, Some(holder.id)));
            }
            match claimed.get(&(name.clone(), value.clone())) {
                Some(other) if target.is_none() || *other != target => {
                    return Err(unique_conflict(t, name, value, *other));
                }
                _ => {
                    claimed.insert((name.clone(), value.clone()), target);
                }
            }
        }
        Ok(match write {
            Write::Create { .. } => Write::Create { properties },
            Write::Update { id, .. } => Write::Update { id, properties },
        })
    }

    /// Makes a checked write and emits its events.
    fn apply(&mut self, t: ObjectType, write: Write, actor: Actor) -> StoredObject {
        let now = now_ms();
        let source = ValueSource::Written(actor);
        let (object, changed, created) = {
            let store = self.of_mut(t);
            match write {
                Write::Create { properties } => {
                    let id = store.next_id;
                    store.next_id += 1;
                    let mut object = StoredObject::new(t, id, now);
                    let mut changed = vec![];
                    for (k, v) in properties {
                        if !v.is_empty() {
                            changed.push((k.clone(), v.clone()));
                        }
                        object.set(&k, v, now, source);
                    }
                    store.objects.insert(id, object.clone());
                    (object, changed, true)
                }
                Write::Update { id, properties } => {
                    let object = store.objects.get_mut(&id).expect("checked: the object exists");
                    let mut changed = vec![];
                    for (k, v) in properties {
                        if object.properties.get(&k).map_or("", String::as_str) != v {
                            changed.push((k.clone(), v.clone()));
                            object.set(&k, v, now, source);
                        }
                    }
                    if !changed.is_empty() {
                        object.updated_at_ms = now;
                        object.set(t.last_modified_property(), iso8601(now), now, ValueSource::Calculated);
                    }
                    (object.clone(), changed, false)
                }
            }
        };
        if created {
            self.emit(t, "creation", object.id, now, actor, None);
        }
        for (name, value) in changed {
            self.emit(t, "propertyChange", object.id, now, actor, Some((name, value)));
        }
        object
    }
}

fn unique_conflict(t: ObjectType, property: &str, value: &str, existing: Option<u64>) -> ApiFailure {
    let existing = existing.map_or_else(|| "in this batch".to_string(), |id| id.to_string());
    if t == ObjectType::Contacts && property == "email" {
        ApiFailure::conflict(&format!("Contact already exists. Existing ID: {existing}"))
    } else {
        let singular = t.event_prefix();
        ApiFailure::conflict(&format!(
            "A {singular} with the value \"{value}\" for the unique property \"{property}\" already exists. Existing ID: {existing}"
        ))
    }
}
