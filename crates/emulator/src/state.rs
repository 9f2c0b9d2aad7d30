//! The portal's data: objects and property definitions per object type, and the rules every
//! write follows (known properties, valid values, unique values). Every change becomes webhook
//! events, in the order the changes happened.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::associations::{Link, ObjectRef};
use super::clock::{iso8601, now_ms};
use super::custom_objects::CustomSchema;
use super::error::{ApiFailure, ApiResult};
use super::schema::{ObjectType, PropertyDef, PropertyGroup, builtin_schema, unknown_object_type};
use super::timeline::TimelineStore;
use super::webhook_settings::SharedWebhooks;
use super::webhooks::EventQueue;
use hubspot::WebhookEvent;

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
    fn new(t: ObjectType, id: u64, at_ms: i64) -> Self {
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
    next_id: u64,
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

/// Where webhook events go, with the identity they carry.
pub struct EventSink {
    pub queue: EventQueue,
    pub portal_id: u64,
    pub app_id: u64,
    /// The app's webhook settings and subscriptions, which decide what is sent.
    pub webhooks: SharedWebhooks,
}

/// The whole portal. Held under one lock; no call awaits while holding it.
pub struct Store {
    portal_id: u64,
    /// Associations from each object; every association is stored in both directions.
    pub(super) associations: BTreeMap<ObjectRef, BTreeSet<Link>>,
    types: BTreeMap<ObjectType, TypeStore>,
    /// Custom object schemas by the `n` of their objectTypeId `2-n`, archived ones included.
    pub schemas: BTreeMap<u32, CustomSchema>,
    /// Timeline templates and events, app event types and app events.
    pub timeline: TimelineStore,
    sink: Option<EventSink>,
    next_event_id: u64,
    /// Counts changes, so that persistence knows when there is something to save.
    revision: u64,
}

/// Everything a store holds, in a form that survives a restart (`--state FILE`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSnapshot {
    types: Vec<(ObjectType, TypeStore)>,
    schemas: Vec<CustomSchema>,
    associations: Vec<(ObjectRef, BTreeSet<Link>)>,
    /// Absent from files saved before the emulator had timelines.
    #[serde(default)]
    timeline: TimelineStore,
    next_event_id: u64,
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

impl Store {
    pub fn new(portal_id: u64, sink: Option<EventSink>) -> Self {
        let now = now_ms();
        let types = ObjectType::ALL.into_iter().map(|t| (t, TypeStore::new(t, now))).collect();
        Self {
            portal_id,
            types,
            schemas: BTreeMap::new(),
            associations: BTreeMap::new(),
            timeline: TimelineStore::default(),
            sink,
            next_event_id: 1,
            revision: 0,
        }
    }

    pub fn portal_id(&self) -> u64 {
        self.portal_id
    }

    /// Runs `change` with webhooks off: for data that was there before anyone watched
    /// (fixtures).
    pub fn without_webhooks<R>(&mut self, change: impl FnOnce(&mut Store) -> R) -> R {
        let sink = self.sink.take();
        let result = change(self);
        self.sink = sink;
        result
    }

    /// Back to an empty portal: HubSpot's own object types and properties only.
    pub fn reset(&mut self) {
        // Event ids keep counting up: a receiver may still hold events from before.
        let (revision, next_event_id) = (self.revision, self.next_event_id);
        let sink = self.sink.take();
        *self = Store::new(self.portal_id, sink);
        self.revision = revision + 1;
        self.next_event_id = next_event_id;
    }

    /// The object type a path names: a built-in type's name or id, or a live custom type's
    /// objectTypeId (`2-<n>`), fullyQualifiedName (`p{portalId}_{name}`) or name.
    pub fn resolve_type(&self, s: &str) -> ApiResult<ObjectType> {
        let found = match ObjectType::parse(s) {
            Ok(ObjectType::Custom(n)) => self.schemas.get(&n).filter(|c| !c.archived).map(|c| c.object_type()),
            Ok(t) => Some(t),
            Err(_) => self
                .schemas
                .values()
                .filter(|c| !c.archived)
                .find(|c| {
                    s.eq_ignore_ascii_case(&c.fully_qualified_name(self.portal_id)) || s.eq_ignore_ascii_case(&c.name)
                })
                .map(CustomSchema::object_type),
        };
        found.ok_or_else(|| unknown_object_type(s))
    }

    /// Adds a custom object type with its own properties besides HubSpot's.
    pub fn add_custom_type(&mut self, schema: CustomSchema, properties: Vec<PropertyDef>, now_ms: i64) {
        let t = schema.object_type();
        let mut store = TypeStore::new(t, now_ms);
        for def in properties {
            store.properties.insert(def.name.clone(), def);
        }
        store.required = schema.required_properties.clone();
        store.searchable = schema.searchable_properties.clone();
        self.types.insert(t, store);
        self.schemas_mut().insert(schema.id, schema);
    }

    pub fn of(&self, t: ObjectType) -> &TypeStore {
        &self.types[&t]
    }

    /// Changes so far: any call that may change the store counts.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The store's contents, to be saved.
    pub fn snapshot(&self) -> serde_json::Result<Value> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Borrowed<'a> {
            types: Vec<(&'a ObjectType, &'a TypeStore)>,
            schemas: Vec<&'a CustomSchema>,
            associations: Vec<(&'a ObjectRef, &'a BTreeSet<Link>)>,
            timeline: &'a TimelineStore,
            next_event_id: u64,
        }
        serde_json::to_value(Borrowed {
            types: self.types.iter().collect(),
            schemas: self.schemas.values().collect(),
            associations: self.associations.iter().filter(|(_, links)| !links.is_empty()).collect(),
            timeline: &self.timeline,
            next_event_id: self.next_event_id,
        })
    }

    /// Replaces the contents with saved ones.
    pub fn restore(&mut self, snapshot: StoreSnapshot) {
        self.types.extend(snapshot.types);
        self.schemas = snapshot.schemas.into_iter().map(|s| (s.id, s)).collect();
        self.associations = snapshot.associations.into_iter().collect();
        self.timeline = snapshot.timeline;
        self.next_event_id = snapshot.next_event_id;
        self.revision += 1;
    }

    pub fn associations_mut(&mut self) -> &mut BTreeMap<ObjectRef, BTreeSet<Link>> {
        self.revision += 1;
        &mut self.associations
    }

    pub fn timeline_mut(&mut self) -> &mut TimelineStore {
        self.revision += 1;
        &mut self.timeline
    }

    pub fn schemas_mut(&mut self) -> &mut BTreeMap<u32, CustomSchema> {
        self.revision += 1;
        &mut self.schemas
    }

    pub fn of_mut(&mut self, t: ObjectType) -> &mut TypeStore {
        self.revision += 1;
        self.types.get_mut(&t).expect("every object type has a store")
    }

    /// The live (not archived) object with this id, or whose unique `id_property` has this value.
    pub fn find(&self, t: ObjectType, id: &str, id_property: Option<&str>) -> ApiResult<Option<&StoredObject>> {
        let store = self.of(t);
        match id_property.filter(|p| *p != "hs_object_id") {
            None => Ok(id
                .parse::<u64>()
                .ok()
                .and_then(|n| store.objects.get(&store.merged_into(n)))
                .filter(|o| !o.is_archived())),
            Some(prop) => {
                let def = store
                    .live_property(prop)
                    .ok_or_else(|| ApiFailure::validation(&format!("Property {prop} does not exist")))?;
                if !def.has_unique_value {
                    return Err(ApiFailure::validation(&format!(
                        "{prop} is not a unique identifier property; idProperty must name a property with unique values"
                    )));
                }
                let wanted = normalize(prop, id);
                Ok(store.objects.values().find(|o| !o.is_archived() && o.properties.get(prop) == Some(&wanted)))
            }
        }
    }

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
        if target.is_none() {
            for (name, value) in t.create_defaults() {
                properties.entry(name.to_string()).or_insert_with(|| value.to_string());
            }
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

    /// Archives a live object; false when there is none with that id.
    pub fn archive(&mut self, t: ObjectType, id: u64, actor: Actor) -> bool {
        let now = now_ms();
        let archived = match self.of_mut(t).objects.get_mut(&id) {
            Some(o) if !o.is_archived() => {
                o.archived_at_ms = Some(now);
                o.updated_at_ms = now;
                true
            }
            _ => false,
        };
        if archived {
            // HubSpot drops a deleted record's associations with it.
            self.remove_associations_of((t, id));
            self.emit(t, "deletion", id, now, actor, None);
        }
        archived
    }

    /// Stores an object without any webhook (for seeding), as if imported at `at_ms`.
    pub fn insert_quietly(&mut self, t: ObjectType, properties: BTreeMap<String, String>, at_ms: i64) -> u64 {
        let store = self.of_mut(t);
        let id = store.next_id;
        store.next_id += 1;
        let mut object = StoredObject::new(t, id, at_ms);
        for (k, v) in properties {
            object.set(&k, v, at_ms, ValueSource::Import);
        }
        store.objects.insert(id, object);
        id
    }

    fn emit(
        &mut self,
        t: ObjectType,
        action: &str,
        object_id: u64,
        occurred_at: i64,
        actor: Actor,
        change: Option<(String, String)>,
    ) {
        let (property_name, property_value) = change.unzip();
        self.emit_event(
            t,
            action,
            actor,
            WebhookEvent {
                occurred_at,
                object_id,
                change_flag: match action {
                    "creation" => Some("NEW".into()),
                    "deletion" => Some("DELETED".into()),
                    _ => None,
                },
                property_name,
                property_value,
                ..Default::default()
            },
        );
    }

    /// Sends `event` (its action-specific fields filled in) when the app subscribes to it,
    /// completing what every event carries: ids, subscription, source.
    pub(super) fn emit_event(&mut self, t: ObjectType, action: &str, actor: Actor, mut event: WebhookEvent) {
        let Some(sink) = &self.sink else { return };
        let subscription_type = format!("{}.{action}", t.event_prefix());
        let subscribed = sink
            .webhooks
            .lock()
            .expect("webhook settings lock")
            .subscription_for(&subscription_type, event.property_name.as_deref());
        let Some(subscription_id) = subscribed else { return };
        event.event_id = self.next_event_id;
        self.next_event_id += 1;
        self.revision += 1;
        let (change_source, source_id) = match actor {
            Actor::Integration { app_id } => ("INTEGRATION", app_id.to_string()),
            Actor::User { user_id } => ("CRM_UI", format!("userId:{user_id}")),
        };
        event.subscription_id = subscription_id;
        event.portal_id = sink.portal_id;
        event.app_id = sink.app_id;
        event.subscription_type = subscription_type;
        event.change_source = Some(change_source.into());
        event.source_id = Some(source_id);
        if matches!(t, ObjectType::Custom(_)) {
            event.object_type_id = Some(t.object_type_id());
        }
        sink.queue.push(event);
    }

    /// What uses a property: a custom object schema that requires, searches or displays it, a
    /// timeline token that writes it, and what the admin API declared.
    pub fn property_uses(&self, t: ObjectType, name: &str) -> Vec<String> {
        let mut uses: Vec<String> = self.of(t).properties.get(name).map(|def| def.used_by.clone()).unwrap_or_default();
        if let ObjectType::Custom(n) = t
            && let Some(schema) = self.schemas.get(&n).filter(|s| !s.archived)
        {
            let named = schema.required_properties.iter().any(|p| p == name)
                || schema.searchable_properties.iter().any(|p| p == name)
                || schema.primary_display_property.as_deref() == Some(name)
                || schema.secondary_display_properties.iter().any(|p| p == name);
            if named {
                uses.push(format!("the {} object schema", schema.name));
            }
        }
        uses.extend(self.timeline.templates_writing(t, name).map(|id| format!("timeline event template {id}")));
        uses
    }

    /// Number of unique-value properties a type has (HubSpot allows ten custom ones).
    pub fn custom_unique_count(&self, t: ObjectType) -> usize {
        self.of(t).properties.values().filter(|p| p.has_unique_value && !p.hubspot_defined && !p.archived).count()
    }
}

/// HubSpot keeps contact emails in lower case; other values as written.
pub fn normalize(property: &str, value: &str) -> String {
    if property == "email" { value.trim().to_ascii_lowercase() } else { value.to_string() }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const API: Actor = Actor::Integration { app_id: 7 };

    fn every_event() -> SharedWebhooks {
        let webhooks = crate::webhook_settings::AppWebhooks::new(Some("http://127.0.0.1:1/".into()), &[], 0);
        std::sync::Arc::new(std::sync::Mutex::new(webhooks))
    }

    #[test]
    fn unique_email_conflicts_within_and_across_calls() {
        let mut store = Store::new(1, None);
        let t = ObjectType::Contacts;
        let created =
            store.apply_all(t, vec![Write::Create { properties: props(&[("email", "A@x.io")]) }], API).unwrap();
        assert_eq!(created[0].properties["email"], "a@x.io");
        let err =
            store.apply_all(t, vec![Write::Create { properties: props(&[("email", "a@X.io")]) }], API).unwrap_err();
        assert_eq!(err.message(), format!("Contact already exists. Existing ID: {}", created[0].id));
        let twice = vec![
            Write::Create { properties: props(&[("email", "b@x.io")]) },
            Write::Create { properties: props(&[("email", "b@x.io")]) },
        ];
        assert_eq!(store.apply_all(t, twice, API).unwrap_err().category(), "CONFLICT");
        assert_eq!(store.of(t).objects.len(), 1, "a failed call writes nothing");
        // Updating an object with its own value is no conflict.
        let same = Write::Update { id: created[0].id, properties: props(&[("email", "a@x.io")]) };
        assert!(store.apply_all(t, vec![same], API).is_ok());
    }

    #[test]
    fn events_follow_changes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let queue = EventQueue::new(tx, Default::default());
        let mut store = Store::new(1, Some(EventSink { queue, portal_id: 1, app_id: 7, webhooks: every_event() }));
        let t = ObjectType::Deals;
        let o = store
            .apply_all(t, vec![Write::Create { properties: props(&[("dealname", "D"), ("amount", "")]) }], API)
            .unwrap()
            .remove(0);
        let update = Write::Update { id: o.id, properties: props(&[("dealname", "D"), ("amount", "5")]) };
        store.apply_all(t, vec![update], Actor::User { user_id: 3 }).unwrap();
        assert!(store.archive(t, o.id, API));
        assert!(!store.archive(t, o.id, API));
        let mut events = vec![];
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        let kinds: Vec<(&str, Option<&str>, &str)> = events
            .iter()
            .map(|e| (e.subscription_type.as_str(), e.property_name.as_deref(), e.change_source.as_deref().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("deal.creation", None, "INTEGRATION"),
                ("deal.propertyChange", Some("dealname"), "INTEGRATION"),
                ("deal.propertyChange", Some("amount"), "CRM_UI"),
                ("deal.deletion", None, "INTEGRATION"),
            ]
        );
        assert!(events.windows(2).all(|w| w[0].event_id < w[1].event_id));
        assert_eq!(events[0].source_id.as_deref(), Some("7"));
        assert_eq!(events[0].change_flag.as_deref(), Some("NEW"));
    }

    #[test]
    fn custom_objects_come_as_generic_events_and_need_their_required_properties() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let queue = EventQueue::new(tx, Default::default());
        let mut store = Store::new(62515, Some(EventSink { queue, portal_id: 1, app_id: 7, webhooks: every_event() }));
        let schema = CustomSchema {
            id: 3_000_001,
            name: "cars".into(),
            singular_label: "Car".into(),
            plural_label: "Cars".into(),
            description: None,
            required_properties: vec!["hs_object_id".into()],
            searchable_properties: vec![],
            primary_display_property: None,
            secondary_display_properties: vec![],
            associated_objects: vec![],
            created_at_ms: 0,
            updated_at_ms: 0,
            archived: false,
        };
        store.add_custom_type(schema, vec![], 0);
        for name in ["2-3000001", "p62515_cars", "cars", "P62515_CARS"] {
            assert_eq!(store.resolve_type(name).unwrap(), ObjectType::Custom(3_000_001), "{name}");
        }
        assert!(store.resolve_type("2-3000002").is_err());
        let t = ObjectType::Custom(3_000_001);
        let refused = store.apply_all(t, vec![Write::Create { properties: props(&[]) }], API).unwrap_err();
        assert!(refused.message().contains("REQUIRED_PROPERTY"), "{}", refused.message());
        store.of_mut(t).required.clear();
        let created = store.apply_all(t, vec![Write::Create { properties: props(&[]) }], API).unwrap();
        assert!(created[0].properties.contains_key("hs_createdate"));
        let event = rx.try_recv().unwrap();
        assert_eq!(event.subscription_type, "object.creation");
        assert_eq!(event.object_type_id.as_deref(), Some("2-3000001"));
    }

    #[test]
    fn unknown_and_read_only_properties_are_refused() {
        let mut store = Store::new(1, None);
        let err = store
            .apply_all(
                ObjectType::Companies,
                vec![Write::Create { properties: props(&[("nope", "1"), ("hs_object_id", "5")]) }],
                API,
            )
            .unwrap_err();
        assert!(err.message().starts_with("Property values were not valid: "));
        assert!(err.message().contains("PROPERTY_DOESNT_EXIST") && err.message().contains("READ_ONLY_VALUE"));
    }
}
