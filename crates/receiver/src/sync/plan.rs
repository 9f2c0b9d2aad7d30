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
}

impl TypePlan {
    /// Objects to read from HubSpot: those whose newest hint is not a deletion.
    pub fn ids_to_fetch(&self) -> Vec<String> {
        self.objects.iter().filter(|(_, h)| h.hint == Hint::Changed).map(|(id, _)| id.clone()).collect()
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
                for gone in merge.merged_away {
                    type_plan.note(stored.seq, gone, Hint::Deleted, event.occurred_at);
                }
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
    let mut of_type = mappings.iter().filter(|m| m.object_type == object_type).peekable();
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
#[derive(Debug, PartialEq, Eq)]
struct Merge {
    survivor: u64,
    merged_away: BTreeSet<u64>,
}

impl Merge {
    /// Contacts get a new id on merge (`newObjectId`); other objects keep the primary's id.
    fn of(event: &WebhookEvent) -> Merge {
        let survivor = event.new_object_id.or(event.primary_object_id).unwrap_or(event.object_id);
        let merged_away = event
            .merged_object_ids
            .iter()
            .flatten()
            .copied()
            .chain(event.primary_object_id)
            .chain([event.object_id])
            .filter(|id| *id != survivor && *id != 0)
            .collect();
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
/// HubSpot returned for it. Objects HubSpot did not return, archived ones, and those whose
/// newest hint is a deletion become deletions.
pub fn build_records(
    mapping: &MappingConfig,
    type_plan: &TypePlan,
    fetched: &[CrmObject],
    associations: &Associations,
) -> Vec<Record> {
    let fetched: BTreeMap<&str, &CrmObject> = fetched.iter().map(|o| (o.id.as_str(), o)).collect();
    type_plan
        .objects
        .iter()
        .map(|(id, hint)| match (hint.hint, fetched.get(id.as_str())) {
            (Hint::Changed, Some(object)) if !object.archived => upsert_record(mapping, object, associations),
            _ => delete_record(mapping, id, hint.occurred_at),
        })
        .collect()
}

fn upsert_record(mapping: &MappingConfig, object: &CrmObject, associations: &Associations) -> Record {
    let value = |property: &str| object.properties.get(property).cloned().flatten();
    let fields = mapping
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
        object_type: mapping.object_type.clone(),
        object_id: object.id.clone(),
        op: Op::Upsert,
        key: value(&mapping.match_key.hubspot_property),
        fields,
        updated_at,
        idempotency_key: String::new(),
        associations,
    })
}

fn delete_record(mapping: &MappingConfig, object_id: &str, occurred_at: i64) -> Record {
    let updated_at = format_ms(occurred_at);
    // With `hs_object_id` as match key the key of a deleted object is still known.
    let key = (mapping.match_key.hubspot_property == "hs_object_id").then(|| object_id.to_string());
    with_idempotency_key(Record {
        mapping: mapping.name.clone(),
        object_type: mapping.object_type.clone(),
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
mod tests {
    use super::*;
    use model::api::mapping::{Direction, FieldMapping, MatchKey};

    fn mapping(name: &str, object_type: &str) -> MappingConfig {
        let field = |hubspot: &str, external: &str, direction| FieldMapping {
            hubspot_property: hubspot.into(),
            external_field: external.into(),
            direction,
        };
        MappingConfig {
            backfill: true,
            name: name.into(),
            object_type: object_type.into(),
            match_key: MatchKey { hubspot_property: "email".into(), external_field: "email".into() },
            fields: vec![
                field("firstname", "first_name", Direction::ToExternal),
                field("lifecyclestage", "stage", Direction::Both),
                field("crm_note", "note", Direction::ToHubSpot),
            ],
            sinks: vec![],
            conflict_policy: Default::default(),
            external_timestamp_field: None,
            sources: vec![],
            associations: vec![],
        }
    }

    fn event(seq: u64, subscription_type: &str, object_id: u64, occurred_at: i64) -> StoredEvent {
        StoredEvent {
            seq,
            event: WebhookEvent {
                event_id: seq,
                subscription_id: 1,
                portal_id: 62515,
                app_id: 54321,
                occurred_at,
                subscription_type: subscription_type.into(),
                attempt_number: 0,
                object_id,
                change_source: Some("CRM".into()),
                ..Default::default()
            },
            appended_at_ms: None,
        }
    }

    fn property_change(seq: u64, object_id: u64, occurred_at: i64, property: &str) -> StoredEvent {
        let mut e = event(seq, "contact.propertyChange", object_id, occurred_at);
        e.event.property_name = Some(property.into());
        e
    }

    fn object(id: &str, updated_at: &str, props: &[(&str, Option<&str>)]) -> CrmObject {
        CrmObject {
            id: id.into(),
            properties: props.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect(),
            created_at: None,
            updated_at: Some(updated_at.into()),
            archived: false,
        }
    }

    fn hint(hint: Hint, occurred_at: i64) -> ObjectHint {
        ObjectHint { hint, occurred_at }
    }

    #[test]
    fn newest_event_wins_whatever_the_arrival_order() {
        let mappings = [mapping("ns/contacts", "contacts")];
        let in_order = [event(1, "contact.creation", 7, 100), event(2, "contact.deletion", 7, 300)];
        let reversed = [event(1, "contact.deletion", 7, 300), event(2, "contact.creation", 7, 100)];
        for events in [&in_order[..], &reversed[..]] {
            let plan = plan(events, &mappings);
            let contacts = &plan.by_type["contacts"];
            assert_eq!(contacts.objects, BTreeMap::from([("7".to_string(), hint(Hint::Deleted, 300))]));
            assert_eq!(contacts.seqs, vec![1, 2]);
            assert!(contacts.ids_to_fetch().is_empty());
        }
        let restored = [event(1, "contact.deletion", 7, 300), event(2, "contact.restore", 7, 400)];
        assert_eq!(plan(&restored, &mappings).by_type["contacts"].ids_to_fetch(), vec!["7".to_string()]);
    }

    #[test]
    fn duplicates_collapse_into_one_object() {
        let mappings = [mapping("ns/contacts", "contacts")];
        let mut repeated = event(2, "contact.creation", 7, 100);
        repeated.event.attempt_number = 3;
        let events = [event(1, "contact.creation", 7, 100), repeated, event(3, "contact.creation", 8, 50)];
        let plan = plan(&events, &mappings);
        let contacts = &plan.by_type["contacts"];
        assert_eq!(contacts.ids_to_fetch(), vec!["7".to_string(), "8".to_string()]);
        assert_eq!(contacts.seqs, vec![1, 2, 3]);
        assert!(plan.ignored.is_empty());
    }

    #[test]
    fn events_no_mapping_needs_are_ignored() {
        let mappings = [mapping("ns/contacts", "contacts")];
        let mut generic_deal = event(4, "object.propertyChange", 9, 100);
        generic_deal.event.object_type_id = Some("0-3".into());
        let mut generic_contact = event(5, "object.creation", 10, 100);
        generic_contact.event.object_type_id = Some("0-1".into());
        let events = [
            event(1, "deal.creation", 1, 100),
            event(2, "conversation.creation", 2, 100),
            event(3, "contact.associationChange", 3, 100),
            generic_deal,
            event(9, "contact.propertyChange", 0, 100),
            property_change(6, 11, 100, "phone"),
            property_change(7, 12, 100, "firstname"),
            property_change(8, 13, 100, "crm_note"),
            generic_contact,
        ];
        let plan = plan(&events, &mappings);
        assert_eq!(plan.ignored, vec![1, 2, 3, 4, 9, 6, 8]);
        assert_eq!(plan.by_type.keys().collect::<Vec<_>>(), vec!["contacts"]);
        assert_eq!(plan.by_type["contacts"].ids_to_fetch(), vec!["10".to_string(), "12".to_string()]);
        assert_eq!(plan.by_type["contacts"].seqs, vec![7, 5]);
    }

    #[test]
    fn merge_fetches_the_survivor_and_deletes_the_merged_away() {
        let mappings = [mapping("ns/contacts", "contacts")];
        let mut contact_merge = event(1, "contact.merge", 10, 500);
        contact_merge.event.primary_object_id = Some(10);
        contact_merge.event.merged_object_ids = Some(vec![11]);
        contact_merge.event.new_object_id = Some(12);
        // An older change of a merged-away contact does not bring it back.
        let events = [contact_merge, event(2, "contact.propertyChange", 11, 400)];
        let contacts = plan(&events, &mappings).by_type.remove("contacts").unwrap();
        assert_eq!(
            contacts.objects,
            BTreeMap::from([
                ("10".to_string(), hint(Hint::Deleted, 500)),
                ("11".to_string(), hint(Hint::Deleted, 500)),
                ("12".to_string(), hint(Hint::Changed, 500)),
            ])
        );

        let mappings = [mapping("ns/companies", "companies")];
        let mut company_merge = event(1, "company.merge", 20, 500);
        company_merge.event.primary_object_id = Some(20);
        company_merge.event.merged_object_ids = Some(vec![21, 22]);
        let companies = plan(&[company_merge], &mappings).by_type.remove("companies").unwrap();
        assert_eq!(companies.ids_to_fetch(), vec!["20".to_string()]);
        assert_eq!(companies.objects["21"], hint(Hint::Deleted, 500));
        assert_eq!(companies.objects["22"], hint(Hint::Deleted, 500));
    }

    #[test]
    fn records_carry_only_mapped_fields_and_deletions_for_missing_objects() {
        let m = mapping("ns/contacts", "contacts");
        let events = [
            event(1, "contact.creation", 1, 100),
            event(2, "contact.creation", 2, 100),
            event(3, "contact.deletion", 3, 1_764_183_324_123),
        ];
        let type_plan = plan(&events, std::slice::from_ref(&m)).by_type.remove("contacts").unwrap();
        let fetched = [object(
            "1",
            "2026-11-26T18:00:00.000Z",
            &[
                ("email", Some("ada@example.com")),
                ("firstname", Some("Ada")),
                ("lifecyclestage", None),
                ("crm_note", Some("must not leave")),
                ("hs_object_id", Some("1")),
            ],
        )];
        let records = build_records(&m, &type_plan, &fetched, &Associations::new());
        assert_eq!(records.len(), 3);

        let upsert = serde_json::to_value(&records[0]).unwrap();
        let expected_key = idempotency_key(&records[0]);
        assert_eq!(
            upsert,
            serde_json::json!({
                "mapping": "ns/contacts",
                "objectType": "contacts",
                "objectId": "1",
                "op": "upsert",
                "key": "ada@example.com",
                "fields": {"first_name": "Ada", "stage": null},
                "updatedAt": "2026-11-26T18:00:00.000Z",
                "idempotencyKey": expected_key,
            })
        );

        // Not returned by HubSpot: gone since the event.
        assert_eq!((records[1].object_id.as_str(), records[1].op), ("2", Op::Delete));
        assert_eq!(records[1].updated_at, format_ms(100));
        assert_eq!((records[2].object_id.as_str(), records[2].op), ("3", Op::Delete));
        assert_eq!(records[2].updated_at, "2025-11-26T18:55:24.123Z");
        assert_eq!(records[2].updated_at_ms(), Some(1_764_183_324_123));
        assert!(records[2].fields.is_empty());
        assert_eq!(records[2].key, None);
    }

    fn association_change(seq: u64, from: u64, to: u64, association_type: &str, occurred_at: i64) -> StoredEvent {
        let mut e = event(seq, "contact.associationChange", 0, occurred_at);
        e.event.association_type = Some(association_type.into());
        e.event.from_object_id = Some(from);
        e.event.to_object_id = Some(to);
        e.event.association_removed = Some(false);
        e
    }

    fn with_companies(mut m: MappingConfig) -> MappingConfig {
        m.associations = vec![model::api::mapping::AssociationMapping {
            to_object_type: "companies".into(),
            field: "company_ids".into(),
        }];
        m
    }

    #[test]
    fn association_changes_hint_the_from_object_of_mappings_that_deliver_them() {
        let events = [
            association_change(1, 7, 70, "CONTACT_TO_COMPANY", 100),
            association_change(2, 8, 80, "CONTACT_TO_DEAL", 100),
            association_change(3, 0, 90, "CONTACT_TO_COMPANY", 100),
            // A custom object is not named: it may be one the mapping delivers.
            association_change(4, 9, 95, "CONTACT_TO_2-123", 100),
        ];
        let without = plan(&events, &[mapping("ns/contacts", "contacts")]);
        assert_eq!(without.ignored, vec![1, 2, 3, 4]);

        let with = plan(&events, &[with_companies(mapping("ns/contacts", "contacts"))]);
        assert_eq!(with.ignored, vec![2, 3]);
        let contacts = &with.by_type["contacts"];
        assert_eq!(contacts.ids_to_fetch(), vec!["7".to_string(), "9".to_string()]);
        assert_eq!(contacts.seqs, vec![1, 4]);
    }

    #[test]
    fn records_carry_associations_and_their_state_in_the_key() {
        let m = with_companies(mapping("ns/contacts", "contacts"));
        let events = [event(1, "contact.creation", 1, 100), event(2, "contact.creation", 2, 100)];
        let type_plan = plan(&events, std::slice::from_ref(&m)).by_type.remove("contacts").unwrap();
        let fetched = [
            object("1", "2026-11-26T18:00:00.000Z", &[("email", Some("a@b.c"))]),
            object("2", "2026-11-26T18:00:00.000Z", &[("email", Some("d@e.f"))]),
        ];
        let associations =
            Associations::from([("companies".into(), BTreeMap::from([("1".into(), vec!["5".into(), "40".into()])]))]);
        let records = build_records(&m, &type_plan, &fetched, &associations);
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(json["associations"], serde_json::json!({"company_ids": ["5", "40"]}));
        // No associations: an empty array, so the destination forgets removed ones.
        assert_eq!(records[1].associations["company_ids"], Vec::<String>::new());

        let moved = Associations::from([("companies".into(), BTreeMap::from([("1".into(), vec!["41".into()])]))]);
        let after_move = build_records(&m, &type_plan, &fetched, &moved);
        assert_eq!(after_move[0].updated_at, records[0].updated_at);
        assert_ne!(after_move[0].idempotency_key, records[0].idempotency_key);

        // A mapping without associations: no field, and the key it always had.
        let plain = mapping("ns/contacts", "contacts");
        let plain_record = &build_records(&plain, &type_plan, &fetched, &associations)[0];
        assert!(plain_record.associations.is_empty());
        assert!(serde_json::to_value(plain_record).unwrap().get("associations").is_none());
        let mut without_field = plain_record.clone();
        without_field.associations = BTreeMap::new();
        assert_eq!(plain_record.idempotency_key, idempotency_key(&without_field));
    }

    #[test]
    fn archived_objects_become_deletions() {
        let m = mapping("ns/contacts", "contacts");
        let type_plan =
            plan(&[event(1, "contact.creation", 1, 100)], std::slice::from_ref(&m)).by_type["contacts"].clone();
        let mut archived = object("1", "2026-11-26T18:00:00.000Z", &[("email", Some("a@b.c"))]);
        archived.archived = true;
        assert_eq!(build_records(&m, &type_plan, &[archived], &Associations::new())[0].op, Op::Delete);
    }

    #[test]
    fn deletions_keyed_by_object_id_keep_their_key() {
        let mut m = mapping("ns/contacts", "contacts");
        m.match_key = MatchKey { hubspot_property: "hs_object_id".into(), external_field: "id".into() };
        let type_plan =
            plan(&[event(1, "contact.deletion", 5, 100)], std::slice::from_ref(&m)).by_type["contacts"].clone();
        let records = build_records(&m, &type_plan, &[], &Associations::new());
        assert_eq!((records[0].op, records[0].key.as_deref()), (Op::Delete, Some("5")));
    }

    #[test]
    fn idempotency_key_is_stable_and_tells_states_apart() {
        let m = mapping("ns/contacts", "contacts");
        let type_plan =
            plan(&[event(1, "contact.creation", 1, 100)], std::slice::from_ref(&m)).by_type["contacts"].clone();
        let state = object("1", "2026-11-26T18:00:00.000Z", &[("email", Some("a@b.c")), ("firstname", Some("A"))]);
        let first = build_records(&m, &type_plan, std::slice::from_ref(&state), &Associations::new());
        let replay = build_records(&m, &type_plan, std::slice::from_ref(&state), &Associations::new());
        assert_eq!(first[0].idempotency_key, replay[0].idempotency_key);
        assert_eq!(first[0].idempotency_key.len(), 32);

        let base = &first[0];
        assert_eq!(base.idempotency_key, idempotency_key(base));
        let changed = |edit: &dyn Fn(&mut Record)| {
            let mut other = base.clone();
            edit(&mut other);
            idempotency_key(&other)
        };
        assert_ne!(base.idempotency_key, changed(&|r| r.updated_at = "2026-11-26T18:00:00.001Z".into()));
        assert_ne!(base.idempotency_key, changed(&|r| r.op = Op::Delete));
        assert_ne!(base.idempotency_key, changed(&|r| r.object_id = "2".into()));
        assert_ne!(base.idempotency_key, changed(&|r| r.mapping = "ns/other".into()));
        // Two writes in the same millisecond: same updatedAt, different values.
        assert_ne!(base.idempotency_key, changed(&|r| _ = r.fields.insert("first_name".into(), Some("B".into()))));
        assert_ne!(
            changed(&|r| (r.mapping, r.object_id) = ("a".into(), "bc".into())),
            changed(&|r| (r.mapping, r.object_id) = ("ab".into(), "c".into()))
        );
    }
}
