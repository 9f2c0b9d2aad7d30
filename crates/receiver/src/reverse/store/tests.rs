use super::*;
use hubspot::WebhookEvent;

fn event(seq: u64, action: &str, property: Option<(&str, &str)>, source: &str, occurred_at: i64) -> StoredEvent {
    StoredEvent {
        seq,
        event: WebhookEvent {
            event_id: seq,
            occurred_at,
            subscription_type: format!("contact.{action}"),
            object_id: 7,
            change_source: Some(source.into()),
            source_id: Some("54321".into()),
            property_name: property.map(|(name, _)| name.into()),
            property_value: property.map(|(_, value)| value.into()),
            ..Default::default()
        },
        appended_at_ms: None,
    }
}

/// Rejections stored before resends existed have no change time: they are resent with
/// their rejection time instead.
#[tokio::test]
async fn rejections_of_an_older_store_can_be_resent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reverse.db");
    let old = Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE rejected (
             id INTEGER PRIMARY KEY AUTOINCREMENT, mapping TEXT NOT NULL, match_key TEXT NOT NULL,
             properties TEXT NOT NULL, status INTEGER NOT NULL, category TEXT NOT NULL,
             message TEXT NOT NULL, correlation_id TEXT NOT NULL, rejected_at INTEGER NOT NULL);
         INSERT INTO rejected (mapping, match_key, properties, status, category, message, correlation_id, rejected_at)
         VALUES ('crm/contacts', 'a@example.com', '{\"phone\":\"1\"}', 400, 'VALIDATION_ERROR', 'no', 'c-1', 5000);",
    )
    .unwrap();
    drop(old);
    let store = ReverseStore::open(&path).unwrap();
    let (listed, total) = store.rejected(&RejectionFilter::default(), 10).await.unwrap();
    assert_eq!((total, listed[0].rejection.changed_at), (1, 5000));
    let only_others = RejectionFilter { ids: vec![], mapping: Some("crm/companies".into()) };
    assert_eq!(store.resend(only_others).await.unwrap(), ResendReport::default());
    let report = store.resend(RejectionFilter { ids: vec![listed[0].id], mapping: None }).await.unwrap();
    assert_eq!(report, ResendReport { resent: 1, not_resendable: 0 });
    let queued = store.pending(10).await.unwrap();
    assert_eq!(queued[0].record.changed_at, 5000);
    assert_eq!(queued[0].record.properties, BTreeMap::from([("phone".to_string(), "1".to_string())]));
    assert_eq!(store.rejected_summary().await.unwrap().count, 0);
}

#[tokio::test]
async fn echoes_are_integration_changes_to_the_written_value_near_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReverseStore::open(&dir.path().join("reverse.db")).unwrap();
    let at = 1_000_000_000;
    store
        .complete(Completion {
            written: vec![WrittenValue {
                object_type: "contacts".into(),
                object_id: "7".into(),
                property: "phone".into(),
                value: "555".into(),
                written_at: at,
            }],
            created: vec![("contacts".into(), "7".into(), at)],
            ..Default::default()
        })
        .await
        .unwrap();
    let window = ECHO_WINDOW.as_millis() as i64;
    let events = vec![
        event(1, "propertyChange", Some(("phone", "555")), "INTEGRATION", at + 5),
        event(2, "creation", None, "INTEGRATION", at),
        // Another value, another property, a person, or long after: real changes.
        event(3, "propertyChange", Some(("phone", "556")), "INTEGRATION", at + 5),
        event(4, "propertyChange", Some(("firstname", "555")), "INTEGRATION", at + 5),
        event(5, "propertyChange", Some(("phone", "555")), "CRM_UI", at + 5),
        event(6, "propertyChange", Some(("phone", "555")), "INTEGRATION", at + window + 1),
        event(7, "deletion", None, "INTEGRATION", at),
    ];
    assert_eq!(store.echoes(events).await.unwrap(), vec![1, 2]);
}

#[tokio::test]
async fn a_merge_carries_the_merged_away_records_writes_to_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReverseStore::open(&dir.path().join("reverse.db")).unwrap();
    let written = |object_id: &str, property: &str, value: &str, written_at: i64| WrittenValue {
        object_type: "contacts".into(),
        object_id: object_id.into(),
        property: property.into(),
        value: value.into(),
        written_at,
    };
    store
        .complete(Completion {
            written: vec![
                written("1", "phone", "111", 10),
                written("1", "firstname", "Ada", 11),
                written("2", "phone", "222", 20),
                written("2", "lastname", "King", 21),
                // Written to the new record already: it stands.
                written("3", "firstname", "Adeline", 30),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let carried = store.follow_merge("contacts", "3", &["1".to_string(), "2".to_string()]).await.unwrap();
    assert_eq!(carried, 2, "the primary's phone and the secondary's lastname");
    let wanted = ["phone", "firstname", "lastname"].map(|p| ("3".to_string(), p.to_string())).to_vec();
    let found = store.last_written("contacts", wanted).await.unwrap();
    assert_eq!(
        found,
        BTreeMap::from([
            (("3".to_string(), "phone".to_string()), 10),
            (("3".to_string(), "firstname".to_string()), 30),
            (("3".to_string(), "lastname".to_string()), 21),
        ])
    );
    // An echo of the primary's value on the new record is recognised as one.
    let mut echo = event(1, "propertyChange", Some(("phone", "111")), "INTEGRATION", 15);
    echo.event.object_id = 3;
    assert_eq!(store.echoes(vec![echo]).await.unwrap(), vec![1]);
}
