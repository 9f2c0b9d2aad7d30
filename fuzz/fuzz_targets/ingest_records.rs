//! A `POST /ingest/{namespace}/{mapping}` body, read as the ingest API reads it (a JSON array
//! of records) and validated against a mapping with every kind of field.
//!
//! Properties: a request is either wholly valid, one queue entry per record, or refused with
//! every bad record listed once, in order, each with its reasons. A valid entry has a
//! non-empty key, only properties the mapping writes to HubSpot, each the record's value as
//! HubSpot's text (`null` clears: empty), and its change time from the timestamp field or the
//! time received.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::MappingConfig;
use receiver::reverse::IngestRecord;
use receiver::reverse::ingest::validate;
use receiver::sync::plan::timestamp_ms;
use serde_json::Value;

const RECEIVED_AT: i64 = 1_700_000_000_000;

fn mapping() -> MappingConfig {
    let fields = vec![
        FieldMapping::new("firstname", "first_name", Direction::ToExternal),
        FieldMapping::new("lifecyclestage", "stage", Direction::Both),
        FieldMapping::new("phone", "phone", Direction::ToHubSpot),
    ];
    let mut mapping =
        MappingConfig::new("crm/contacts", MappedRecords::new("contacts", MatchKey::new("email", "mail"), fields));
    mapping.policy.external_timestamp_field = Some("modified".into());
    mapping
}

fuzz_target!(|data: &[u8]| {
    let Ok(records) = serde_json::from_slice::<Vec<Value>>(data) else { return };
    let mapping = mapping();
    match validate(&mapping, &records, RECEIVED_AT) {
        Ok(valid) => {
            assert_eq!(valid.len(), records.len());
            for (entry, record) in valid.iter().zip(&records) {
                check_entry(&mapping, entry, record);
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(problems.windows(2).all(|pair| pair[0].index < pair[1].index), "listed once, in order");
            for problem in &problems {
                assert!(problem.index < records.len());
                assert!(!problem.reasons.is_empty());
            }
            // Each record listed is refused on its own, and each one not listed is accepted.
            for (index, record) in records.iter().enumerate() {
                let alone = validate(&mapping, std::slice::from_ref(record), RECEIVED_AT);
                assert_eq!(alone.is_err(), problems.iter().any(|p| p.index == index), "record {index}");
            }
        }
    }
});

fn check_entry(mapping: &MappingConfig, entry: &IngestRecord, record: &Value) {
    let fields = record.as_object().expect("a valid record is an object");
    assert_eq!(entry.mapping, mapping.name);
    assert!(!entry.key.trim().is_empty());
    assert_eq!(Some(&entry.key), fields.get("mail").and_then(text).as_ref());
    for (property, value) in &entry.properties {
        let field = mapping.records.fields.iter().find(|f| &f.hubspot_property == property).expect("a mapped property");
        assert!(field.direction.to_hubspot(), "{property} flows to HubSpot");
        let sent = &fields[&field.external_field];
        let expected = if sent.is_null() { String::new() } else { text(sent).expect("a scalar") };
        assert_eq!(value, &expected);
        // A number's text reads back as the same number.
        if let Value::Number(number) = sent {
            assert_eq!(
                &serde_json::from_str::<Value>(value).expect("a number's text is JSON"),
                &Value::Number(number.clone())
            );
        }
    }
    let expected_at = match fields.get("modified") {
        None => RECEIVED_AT,
        Some(Value::String(at)) => timestamp_ms(at).expect("a valid timestamp"),
        Some(Value::Number(at)) => at.as_i64().expect("epoch milliseconds"),
        Some(other) => panic!("accepted timestamp {other}"),
    };
    assert_eq!(entry.changed_at, expected_at);
    let again: IngestRecord = serde_json::from_str(&serde_json::to_string(entry).unwrap()).unwrap();
    assert_eq!(&again, entry);
}

/// A string, number or boolean as text, as the ingest API stores it.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
