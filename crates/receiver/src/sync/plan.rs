//! The pure half of the sync worker: which objects a batch of pending events is about, and
//! which records a mapping makes of what HubSpot returned. No I/O here.
//!
//! Events are change hints. Per object only the newest hint counts (HubSpot reorders and
//! repeats deliveries), and the record's content always comes from the fetched object.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::time::{format_ms, timestamp_ms};

use crate::eventlog::StoredEvent;
use hubspot::{CrmObject, WebhookEvent};
use model::config::MappingConfig;

/// What the newest event says about an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hint {
    /// The object may have changed: fetch it.
    Changed,
    /// The object is gone (deleted, or merged into another one).
    Deleted,
}

/// The newest hint about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHint {
    pub hint: Hint,
    /// Epoch milliseconds of the newest event.
    pub occurred_at: i64,
}

/// Every object of one type the pending events are about, and the events that said so.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypePlan {
    pub objects: BTreeMap<String, ObjectHint>,
    /// Log positions of the events behind this plan; released together once delivered.
    pub seqs: Vec<u64>,
    /// Per object, the log positions of the events about it (a merge event is about several).
    pub events_by_object: BTreeMap<String, Vec<u64>>,
    /// The merges among the events, by log position.
    pub merges: BTreeMap<u64, Merge>,
}

impl TypePlan {
    /// Objects to read from HubSpot: every one, those said to be deleted too, since a hint
    /// is no proof (a signed payload can say a live object was deleted); HubSpot's answer
    /// decides.
    pub fn ids_to_fetch(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    /// The plan of `objects` alone. It carries the events all of whose objects are among
    /// `objects`: an event also about an object left out stays pending, so that object is
    /// planned again from it.
    pub fn only(&self, objects: &BTreeSet<String>) -> TypePlan {
        let mut left_out: BTreeSet<u64> = BTreeSet::new();
        for (id, seqs) in &self.events_by_object {
            if !objects.contains(id) {
                left_out.extend(seqs);
            }
        }
        let keep = |id: &String| objects.contains(id);
        TypePlan {
            objects: self.objects.iter().filter(|(id, _)| keep(id)).map(|(id, h)| (id.clone(), h.clone())).collect(),
            seqs: self.seqs.iter().copied().filter(|seq| !left_out.contains(seq)).collect(),
            events_by_object: self
                .events_by_object
                .iter()
                .filter(|(id, _)| keep(id))
                .map(|(id, seqs)| (id.clone(), seqs.clone()))
                .collect(),
            merges: self
                .merges
                .iter()
                .filter(|(seq, _)| !left_out.contains(seq))
                .map(|(s, m)| (*s, m.clone()))
                .collect(),
        }
    }

    fn note(&mut self, seq: u64, object_id: u64, hint: Hint, occurred_at: i64) {
        let candidate = ObjectHint { hint, occurred_at };
        let id = object_id.to_string();
        let seqs = self.events_by_object.entry(id.clone()).or_default();
        if seqs.last() != Some(&seq) {
            seqs.push(seq);
        }
        self.objects
            .entry(id)
            .and_modify(|current| {
                // At the same instant a deletion wins: nothing follows a deletion in the same millisecond.
                if (candidate.occurred_at, candidate.hint) > (current.occurred_at, current.hint) {
                    *current = candidate.clone();
                }
            })
            .or_insert(candidate);
    }
}

/// What to do with a batch of pending events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Per object type that some mapping uses.
    pub by_type: BTreeMap<String, TypePlan>,
    /// Events no mapping cares about: released without any HubSpot call.
    pub ignored: Vec<u64>,
}

/// Groups pending events per object and keeps the newest hint of each. Events about object
/// types no mapping uses, about properties no mapping reads, or about associations no mapping
/// delivers are ignored.
pub fn plan(events: &[StoredEvent], mappings: &[MappingConfig]) -> Plan {
    let mut plan = Plan::default();
    for stored in events {
        let event = &stored.event;
        let Some(object_type) = event.object_type().filter(|t| is_relevant(event, t, mappings)) else {
            plan.ignored.push(stored.seq);
            continue;
        };
        let type_plan = plan.by_type.entry(object_type).or_default();
        type_plan.seqs.push(stored.seq);
        match event.action() {
            "deletion" | "privacyDeletion" => {
                type_plan.note(stored.seq, event.object_id, Hint::Deleted, event.occurred_at)
            }
            "merge" => {
                let merge = Merge::of(event);
                type_plan.note(stored.seq, merge.survivor, Hint::Changed, event.occurred_at);
                for gone in &merge.merged_away {
                    type_plan.note(stored.seq, *gone, Hint::Deleted, event.occurred_at);
                }
                type_plan.merges.insert(stored.seq, merge);
            }
            // The object on the `from` side; the other side has its own event.
            "associationChange" => {
                let from = event.from_object_id.unwrap_or_default();
                type_plan.note(stored.seq, from, Hint::Changed, event.occurred_at)
            }
            _ => type_plan.note(stored.seq, event.object_id, Hint::Changed, event.occurred_at),
        }
    }
    plan
}

fn is_relevant(event: &WebhookEvent, object_type: &str, mappings: &[MappingConfig]) -> bool {
    let mut of_type = mappings.iter().filter(|m| m.records.object_type == object_type).peekable();
    if of_type.peek().is_none() {
        return false;
    }
    if event.action() == "associationChange" {
        // A custom object on the other side is not named in `associationType`: any
        // association the mapping delivers may have changed.
        let other_side = event.associated_object_type();
        return event.from_object_id.is_some_and(|id| id != 0)
            && of_type.any(|m| m.associations.iter().any(|a| other_side.is_none_or(|t| t == a.to_object_type)));
    }
    // `objectId` defaults to 0 when an event leaves it out: nothing to fetch.
    if event.object_id == 0 && event.action() != "merge" {
        return false;
    }
    match (event.action(), event.property_name.as_deref()) {
        ("propertyChange", Some(property)) => of_type.any(|m| m.hubspot_properties().iter().any(|p| p == property)),
        _ => true,
    }
}

/// The ids a merge event names: the record that remains, and the ones merged into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    pub survivor: u64,
    /// The primary first (when it did not remain: contacts and companies get a new id), then
    /// the records merged into it; each once.
    pub merged_away: Vec<u64>,
}

impl Merge {
    /// Contacts and companies get a new id on merge (`newObjectId`); other objects keep the
    /// primary's id.
    fn of(event: &WebhookEvent) -> Merge {
        let survivor = event.new_object_id.or(event.primary_object_id).unwrap_or(event.object_id);
        let mut merged_away: Vec<u64> = Vec::new();
        let named = event.primary_object_id.into_iter().chain(event.merged_object_ids.iter().flatten().copied());
        for id in named.chain([event.object_id]) {
            if id != survivor && id != 0 && !merged_away.contains(&id) {
                merged_away.push(id);
            }
        }
        Merge { survivor, merged_away }
    }
}

/// Whether a record carries the current state or says the object is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Upsert,
    Delete,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

/// One record as destinations receive it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `namespace/name` of the mapping.
    pub mapping: String,
    pub object_type: String,
    pub object_id: String,
    pub op: Op,
    /// Value of the match key (the external key field). Deletions carry it only when the
    /// worker knows it from an earlier delivery.
    pub key: Option<String>,
    /// Every field mapped towards external systems; empty for deletions.
    pub fields: BTreeMap<String, Option<String>>,
    /// HubSpot's `updatedAt` of the object; for deletions the time of the deleting event.
    pub updated_at: String,
    /// Same HubSpot state, same key: lets destinations drop replays.
    pub idempotency_key: String,
    /// Per association field of the mapping, the ids of the associated records, ascending (an
    /// empty array when there are none). Absent for deletions and for mappings without
    /// associations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub associations: BTreeMap<String, Vec<String>>,
}

/// Associations read from HubSpot: per associated object type, per object id, the ids of the
/// associated records.
pub type Associations = BTreeMap<String, BTreeMap<String, Vec<String>>>;

impl Record {
    /// `updatedAt` in epoch milliseconds, when it is a valid RFC 3339 timestamp.
    pub fn updated_at_ms(&self) -> Option<i64> {
        timestamp_ms(&self.updated_at)
    }
}

/// The records a mapping makes of one object type's plan and the objects and associations
/// HubSpot returned for it. HubSpot's answer decides, whatever the hint: a live object it
/// returned is an upsert, one it did not return (or returned archived, or returned under
/// another id: merged into it) a deletion, at the time of the newest hint.
///
/// Deletions come first. A match key can pass from one object to another in one batch (a
/// merge gives the primary's key to the new record), and a destination keyed by the match key
/// that applies records in order must see the old object's deletion before the new upsert.
pub fn build_records(
    mapping: &MappingConfig,
    type_plan: &TypePlan,
    fetched: &[CrmObject],
    associations: &Associations,
) -> Vec<Record> {
    let fetched: BTreeMap<&str, &CrmObject> = fetched.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut records: Vec<Record> = type_plan
        .objects
        .iter()
        .map(|(id, hint)| match (hint.hint, fetched.get(id.as_str())) {
            (_, Some(object)) if !object.archived => upsert_record(mapping, object, associations),
            _ => delete_record(mapping, id, hint.occurred_at),
        })
        .collect();
    records.sort_by_key(|record| record.op != Op::Delete);
    records
}

fn upsert_record(mapping: &MappingConfig, object: &CrmObject, associations: &Associations) -> Record {
    let value = |property: &str| object.properties.get(property).cloned().flatten();
    let fields = mapping
        .records
        .fields
        .iter()
        .filter(|f| f.direction.to_external())
        .map(|f| (f.external_field.clone(), value(&f.hubspot_property)))
        .collect();
    let updated_at = object.updated_at.clone().unwrap_or_default();
    let associated = |to_type: &str| associations.get(to_type).and_then(|by_id| by_id.get(&object.id)).cloned();
    let associations = mapping
        .associations
        .iter()
        .map(|a| (a.field.clone(), associated(&a.to_object_type).unwrap_or_default()))
        .collect();
    with_idempotency_key(Record {
        mapping: mapping.name.clone(),
        object_type: mapping.records.object_type.clone(),
        object_id: object.id.clone(),
        op: Op::Upsert,
        key: value(&mapping.records.match_key.hubspot_property),
        fields,
        updated_at,
        idempotency_key: String::new(),
        associations,
    })
}

fn delete_record(mapping: &MappingConfig, object_id: &str, occurred_at: i64) -> Record {
    let updated_at = format_ms(occurred_at);
    // With `hs_object_id` as match key the key of a deleted object is still known.
    let key = (mapping.records.match_key.hubspot_property == "hs_object_id").then(|| object_id.to_string());
    with_idempotency_key(Record {
        mapping: mapping.name.clone(),
        object_type: mapping.records.object_type.clone(),
        object_id: object_id.to_string(),
        op: Op::Delete,
        key,
        fields: BTreeMap::new(),
        updated_at,
        idempotency_key: String::new(),
        associations: BTreeMap::new(),
    })
}

/// Stable hash of the state a record carries (mapping, object, op, `updatedAt`, the mapped
/// values and associations), hex. The values are part of it because two HubSpot writes can
/// share one millisecond `updatedAt`, and associations change without changing `updatedAt`;
/// the deletion key is not, as it is filled in after the fact. Records without associations
/// hash as they did before associations existed, so checkpoints stay valid.
pub fn idempotency_key(record: &Record) -> String {
    let mut hash = Sha256::new();
    let upsert_key = match record.op {
        Op::Upsert => record.key.as_deref().unwrap_or(""),
        Op::Delete => "",
    };
    let fields = serde_json::to_string(&record.fields).expect("a map of strings serialises");
    let associations = match record.associations.is_empty() {
        true => None,
        false => Some(serde_json::to_string(&record.associations).expect("a map of strings serialises")),
    };
    let parts = [&record.mapping, &record.object_id, record.op.as_str(), &record.updated_at, upsert_key, &fields];
    for part in parts.into_iter().chain(associations.as_deref()) {
        hash.update(part.as_bytes());
        // A separator that cannot occur in the parts keeps ("a","bc") and ("ab","c") apart.
        hash.update([0u8]);
    }
    hex::encode(&hash.finalize()[..16])
}

fn with_idempotency_key(mut record: Record) -> Record {
    record.idempotency_key = idempotency_key(&record);
    record
}

#[cfg(test)]
mod tests;
