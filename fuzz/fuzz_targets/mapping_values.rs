//! The mapping's value conversions on the way to destinations: what HubSpot returned for the
//! planned objects becomes records (`build_records`), times become RFC 3339 text and back
//! (`format_ms`, `timestamp_ms`), association ids become a PostgreSQL array literal.
//!
//! Properties: one record per planned object; an upsert carries exactly the object's values
//! of the fields that flow to external systems, a deletion a time that reads back; every
//! record writes out as JSON and reads back equal, with the idempotency key of its content;
//! a time in RFC 3339's range formats and reads back to itself; an array literal reads back
//! as the ids it was made of.
#![no_main]

use std::collections::BTreeMap;

use hubspot::CrmObject;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use model::api::mapping::{AssociationMapping, Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::MappingConfig;
use receiver::sync::plan::{
    Associations, Hint, ObjectHint, Op, Record, TypePlan, build_records, format_ms, idempotency_key, timestamp_ms,
};
use receiver::sync::sinks::postgres::array_literal;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Planned objects: id, whether the newest hint is a deletion, and its time.
    planned: Vec<(&'a str, bool, i64)>,
    /// What HubSpot returned for them (and maybe for others).
    fetched: Vec<Object<'a>>,
    /// Associated companies by object id.
    companies: Vec<(&'a str, Vec<&'a str>)>,
    time_ms: i64,
    time_text: &'a str,
}

#[derive(Debug, Arbitrary)]
struct Object<'a> {
    id: &'a str,
    properties: Vec<(&'a str, Option<&'a str>)>,
    updated_at: Option<&'a str>,
    archived: bool,
}

/// 0000-01-01T00:00:00Z, the first time RFC 3339 writes.
const EARLIEST_MS: i64 = -62_167_219_200_000;

/// The last time the clock library knows (late in 9999), which a later one formats as.
fn latest_ms() -> i64 {
    timestamp_ms(&format_ms(i64::MAX)).expect("the latest time reads back")
}

fn mapping() -> MappingConfig {
    let fields = vec![
        FieldMapping::new("firstname", "first_name", Direction::ToExternal),
        FieldMapping::new("lifecyclestage", "stage", Direction::Both),
        FieldMapping::new("phone", "phone", Direction::ToHubSpot),
    ];
    let mut mapping =
        MappingConfig::new("crm/contacts", MappedRecords::new("contacts", MatchKey::new("email", "mail"), fields));
    mapping.associations = vec![AssociationMapping { to_object_type: "companies".into(), field: "company_ids".into() }];
    mapping
}

fuzz_target!(|input: Input<'_>| {
    let latest_ms = latest_ms();
    let mapping = mapping();
    let mut plan = TypePlan::default();
    for (id, deleted, occurred_at) in &input.planned {
        let hint = if *deleted { Hint::Deleted } else { Hint::Changed };
        plan.objects.insert(id.to_string(), ObjectHint { hint, occurred_at: *occurred_at });
    }
    // HubSpot returns each object once.
    let mut fetched: BTreeMap<&str, CrmObject> = BTreeMap::new();
    for object in &input.fetched {
        fetched.entry(object.id).or_insert_with(|| CrmObject {
            id: object.id.to_string(),
            properties: object.properties.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect(),
            created_at: None,
            updated_at: object.updated_at.map(str::to_string),
            archived: object.archived,
        });
    }
    let companies: BTreeMap<String, Vec<String>> = input
        .companies
        .iter()
        .map(|(id, ids)| (id.to_string(), ids.iter().map(|id| id.to_string()).collect()))
        .collect();
    let associations: Associations = BTreeMap::from([("companies".to_string(), companies.clone())]);
    let objects: Vec<CrmObject> = fetched.values().cloned().collect();

    let records = build_records(&mapping, &plan, &objects, &associations);
    assert_eq!(records.len(), plan.objects.len());
    // Deletions first, then upserts; each planned object once.
    let first_upsert = records.iter().position(|r| r.op == Op::Upsert).unwrap_or(records.len());
    assert!(records[first_upsert..].iter().all(|r| r.op == Op::Upsert), "deletions come first");
    let by_id: BTreeMap<&str, &Record> = records.iter().map(|r| (r.object_id.as_str(), r)).collect();
    assert_eq!(by_id.len(), records.len(), "one record per object");
    for (id, hint) in &plan.objects {
        let record = *by_id.get(id.as_str()).expect("a record for every planned object");
        match fetched.get(id.as_str()).filter(|o| !o.archived) {
            Some(object) => check_upsert(record, object, companies.get(id)),
            None => {
                assert_eq!(record.op, Op::Delete);
                assert!(record.fields.is_empty() && record.associations.is_empty());
                let at = timestamp_ms(&record.updated_at).expect("a deletion's time reads back");
                assert_eq!(at, hint.occurred_at.clamp(EARLIEST_MS, latest_ms));
            }
        }
        assert_eq!(record.idempotency_key, idempotency_key(record));
        let again: Record = serde_json::from_str(&serde_json::to_string(record).unwrap()).unwrap();
        assert_eq!(&again, record);
    }

    let formatted = format_ms(input.time_ms);
    assert_eq!(timestamp_ms(&formatted), Some(input.time_ms.clamp(EARLIEST_MS, latest_ms)), "{formatted}");
    if let Some(ms) = timestamp_ms(input.time_text) {
        assert_eq!(timestamp_ms(&format_ms(ms)), Some(ms.clamp(EARLIEST_MS, latest_ms)), "{:?}", input.time_text);
    }

    for ids in companies.values() {
        let literal = array_literal(ids);
        assert_eq!(read_array_literal(&literal).as_ref(), Some(ids), "{literal}");
    }
});

fn check_upsert(record: &Record, object: &CrmObject, companies: Option<&Vec<String>>) {
    let value = |property: &str| object.properties.get(property).cloned().flatten();
    assert_eq!(record.op, Op::Upsert);
    assert_eq!(record.key, value("email"));
    let expected = BTreeMap::from([
        ("first_name".to_string(), value("firstname")),
        ("stage".to_string(), value("lifecyclestage")),
    ]);
    assert_eq!(record.fields, expected, "exactly the fields that flow to external systems");
    assert_eq!(record.updated_at, object.updated_at.clone().unwrap_or_default());
    assert_eq!(
        record.associations,
        BTreeMap::from([("company_ids".to_string(), companies.cloned().unwrap_or_default())])
    );
}

/// The elements of a PostgreSQL array literal of double-quoted elements, as PostgreSQL reads
/// it: `{"a","b\"c"}`; `None` when it is not one.
fn read_array_literal(literal: &str) -> Option<Vec<String>> {
    let inner = literal.strip_prefix('{')?.strip_suffix('}')?;
    let mut elements = Vec::new();
    let mut chars = inner.chars();
    if inner.is_empty() {
        return Some(elements);
    }
    loop {
        if chars.next()? != '"' {
            return None;
        }
        let mut element = String::new();
        loop {
            match chars.next()? {
                '\\' => element.push(chars.next()?),
                '"' => break,
                c => element.push(c),
            }
        }
        elements.push(element);
        match chars.next() {
            None => return Some(elements),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}
