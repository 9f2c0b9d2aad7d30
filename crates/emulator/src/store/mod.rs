//! The portal's data: objects and property definitions per object type, custom object schemas,
//! associations and timelines, and the rules every write follows (known properties, valid
//! values, unique values). Every change becomes webhook events, in the order the changes
//! happened.
//!
//! `Store` and its core live here; `writes`, `associations`, `merge` and `properties` add the
//! operations of each kind of change. The data types the store holds live in leaf modules
//! (`object`, `links`, `custom_schema`, `timeline`, `custom_events`), which know nothing of `Store`, so that
//! imports only ever point from the operations to `Store` and from `Store` to its data.

mod associations;
pub mod custom_events;
pub mod custom_schema;
pub mod links;
mod merge;
mod object;
pub mod owners;
mod pipeline_changes;
pub mod pipelines;
mod properties;
pub mod timeline;
mod writes;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{ObjectType, PropertyDef, unknown_object_type};
use crate::webhooks::EventQueue;
use crate::webhooks::settings::SharedWebhooks;
use custom_schema::CustomSchema;
use hubspot::WebhookEvent;
use links::{Link, ObjectRef};
pub use object::{
    Actor, Selection, StoredObject, TypeStore, ValueSource, Write, normalize, parse_properties, property_value_string,
};
use owners::{OwnerInput, Owners};
use pipelines::Pipelines;
use timeline::TimelineStore;

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
    associations: BTreeMap<ObjectRef, BTreeSet<Link>>,
    types: BTreeMap<ObjectType, TypeStore>,
    /// Custom object schemas by the `n` of their objectTypeId `2-n`, archived ones included.
    pub schemas: BTreeMap<u32, CustomSchema>,
    /// Timeline templates and events, app event types and app events.
    pub timeline: TimelineStore,
    /// The users records can be assigned to (`hubspot_owner_id`).
    owners: Owners,
    /// Deal and ticket pipelines with their stages.
    pipelines: Pipelines,
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
    /// Absent from files saved before the emulator had owners.
    #[serde(default)]
    owners: Option<Owners>,
    /// Absent from files saved before the emulator had pipelines.
    #[serde(default)]
    pipelines: Option<Pipelines>,
    next_event_id: u64,
}

impl Store {
    pub fn new(portal_id: u64, sink: Option<EventSink>) -> Self {
        let now = now_ms();
        let types = ObjectType::ALL.into_iter().map(|t| (t, TypeStore::new(t, now))).collect();
        let mut store = Self {
            portal_id,
            types,
            schemas: BTreeMap::new(),
            associations: BTreeMap::new(),
            timeline: TimelineStore::default(),
            owners: Owners::default(),
            pipelines: Pipelines::default(),
            sink,
            next_event_id: 1,
            revision: 0,
        };
        // Every account has at least the user who created it, as an owner.
        let first_owner = OwnerInput {
            email: Some("admin@example.com".into()),
            first_name: Some("Account".into()),
            last_name: Some("Admin".into()),
            user_id: Some(crate::auth::FIRST_USER_ID),
            ..OwnerInput::default()
        };
        store.add_owner(first_owner, now).expect("an empty account takes its first owner");
        store.refresh_pipeline_options();
        store.revision = 0;
        store
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

    pub fn pipelines(&self) -> &Pipelines {
        &self.pipelines
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
            owners: &'a Owners,
            pipelines: &'a Pipelines,
            next_event_id: u64,
        }
        serde_json::to_value(Borrowed {
            types: self.types.iter().collect(),
            schemas: self.schemas.values().collect(),
            associations: self.associations.iter().filter(|(_, links)| !links.is_empty()).collect(),
            timeline: &self.timeline,
            owners: &self.owners,
            pipelines: &self.pipelines,
            next_event_id: self.next_event_id,
        })
    }

    /// Replaces the contents with saved ones.
    pub fn restore(&mut self, snapshot: StoreSnapshot) {
        self.types.extend(snapshot.types);
        let now = now_ms();
        for (t, store) in &mut self.types {
            store.add_missing_builtins(*t, now);
        }
        self.schemas = snapshot.schemas.into_iter().map(|s| (s.id, s)).collect();
        self.associations = snapshot.associations.into_iter().collect();
        self.timeline = snapshot.timeline;
        if let Some(owners) = snapshot.owners {
            self.owners = owners;
        }
        if let Some(pipelines) = snapshot.pipelines {
            self.pipelines = pipelines;
        }
        self.refresh_owner_options();
        self.refresh_pipeline_options();
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
    fn emit_event(&mut self, t: ObjectType, action: &str, actor: Actor, mut event: WebhookEvent) {
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
}

#[cfg(test)]
mod tests;
