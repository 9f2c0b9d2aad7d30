use super::*;
use crate::test_mappings::{self, field};
use model::api::mapping::{Direction, MatchKey};

fn mapping(name: &str, object_type: &str) -> MappingConfig {
    let fields = vec![
        field("firstname", "first_name", Direction::ToExternal),
        field("lifecyclestage", "stage", Direction::Both),
        field("crm_note", "note", Direction::ToHubSpot),
    ];
    test_mappings::mapping(name, object_type, ("email", "email"), fields)
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
        assert_eq!(contacts.ids_to_fetch(), vec!["7".to_string()], "HubSpot confirms the deletion");
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
    assert_eq!(contacts.merges[&1], Merge { survivor: 12, merged_away: vec![10, 11] }, "the primary first");

    let mappings = [mapping("ns/companies", "companies")];
    let mut company_merge = event(1, "company.merge", 20, 500);
    company_merge.event.primary_object_id = Some(20);
    company_merge.event.merged_object_ids = Some(vec![21, 22]);
    let companies = plan(&[company_merge], &mappings).by_type.remove("companies").unwrap();
    assert_eq!(companies.ids_to_fetch(), vec!["20".to_string(), "21".to_string(), "22".to_string()]);
    assert_eq!(companies.objects["21"], hint(Hint::Deleted, 500));
    assert_eq!(companies.objects["22"], hint(Hint::Deleted, 500));
}

/// HubSpot answers a read of a merged-away id with the record it now lives on, under that
/// record's id: the old ids become deletions, delivered before the new record takes their key.
#[test]
fn after_a_merge_the_old_ids_are_deleted_before_the_new_record_is_delivered() {
    let m = mapping("ns/contacts", "contacts");
    let mut merge = event(1, "contact.merge", 100, 500);
    merge.event.primary_object_id = Some(9);
    merge.event.merged_object_ids = Some(vec![10]);
    merge.event.new_object_id = Some(100);
    let type_plan = plan(&[merge], std::slice::from_ref(&m)).by_type["contacts"].clone();
    // One object for the three ids asked.
    let merged = object("100", "2026-11-26T18:00:00.500Z", &[("email", Some("ada@example.com"))]);
    let records = build_records(&m, &type_plan, std::slice::from_ref(&merged), &Associations::new());
    let summary: Vec<(&str, Op)> = records.iter().map(|r| (r.object_id.as_str(), r.op)).collect();
    assert_eq!(summary, vec![("10", Op::Delete), ("9", Op::Delete), ("100", Op::Upsert)]);
    assert_eq!(records[2].key.as_deref(), Some("ada@example.com"));
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
    let by_id = |id: &str| records.iter().find(|r| r.object_id == id).unwrap();

    let upsert = serde_json::to_value(by_id("1")).unwrap();
    let expected_key = idempotency_key(by_id("1"));
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
    assert_eq!((by_id("2").object_id.as_str(), by_id("2").op), ("2", Op::Delete));
    assert_eq!(by_id("2").updated_at, format_ms(100));
    assert_eq!((by_id("3").object_id.as_str(), by_id("3").op), ("3", Op::Delete));
    assert_eq!(by_id("3").updated_at, "2025-11-26T18:55:24.123Z");
    assert_eq!(by_id("3").updated_at_ms(), Some(1_764_183_324_123));
    assert!(by_id("3").fields.is_empty());
    assert_eq!(by_id("3").key, None);
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

/// A signed payload is a hint, no proof: a deletion of an object HubSpot still returns live,
/// dated far in the future, delivers the object as it is.
#[test]
fn a_deletion_of_an_object_hubspot_returns_live_is_not_delivered() {
    let m = mapping("ns/contacts", "contacts");
    let events = [event(1, "contact.creation", 1, 100), event(2, "contact.deletion", 1, i64::MAX)];
    let type_plan = plan(&events, std::slice::from_ref(&m)).by_type["contacts"].clone();
    assert_eq!(type_plan.objects["1"].hint, Hint::Deleted);
    let live = object("1", "2026-11-26T18:00:00.000Z", &[("email", Some("a@b.c"))]);
    let records = build_records(&m, &type_plan, &[live], &Associations::new());
    assert_eq!((records[0].op, records[0].updated_at.as_str()), (Op::Upsert, "2026-11-26T18:00:00.000Z"));

    // Gone in HubSpot: a deletion, at a time a destination can read.
    let records = build_records(&m, &type_plan, &[], &Associations::new());
    assert_eq!(records[0].op, Op::Delete);
    assert!(records[0].updated_at_ms().is_some(), "{}", records[0].updated_at);
}

#[test]
fn archived_objects_become_deletions() {
    let m = mapping("ns/contacts", "contacts");
    let type_plan = plan(&[event(1, "contact.creation", 1, 100)], std::slice::from_ref(&m)).by_type["contacts"].clone();
    let mut archived = object("1", "2026-11-26T18:00:00.000Z", &[("email", Some("a@b.c"))]);
    archived.archived = true;
    assert_eq!(build_records(&m, &type_plan, &[archived], &Associations::new())[0].op, Op::Delete);
}

#[test]
fn deletions_keyed_by_object_id_keep_their_key() {
    let mut m = mapping("ns/contacts", "contacts");
    m.records.match_key = MatchKey::new("hs_object_id", "id");
    let type_plan = plan(&[event(1, "contact.deletion", 5, 100)], std::slice::from_ref(&m)).by_type["contacts"].clone();
    let records = build_records(&m, &type_plan, &[], &Associations::new());
    assert_eq!((records[0].op, records[0].key.as_deref()), (Op::Delete, Some("5")));
}

#[test]
fn idempotency_key_is_stable_and_tells_states_apart() {
    let m = mapping("ns/contacts", "contacts");
    let type_plan = plan(&[event(1, "contact.creation", 1, 100)], std::slice::from_ref(&m)).by_type["contacts"].clone();
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
