use super::*;
use tokio::sync::mpsc;

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const API: Actor = Actor::Integration { app_id: 7 };

fn every_event() -> SharedWebhooks {
    let webhooks = crate::webhooks::settings::AppWebhooks::new(Some("http://127.0.0.1:1/".into()), &[], 0);
    std::sync::Arc::new(std::sync::Mutex::new(webhooks))
}

#[test]
fn unique_email_conflicts_within_and_across_calls() {
    let mut store = Store::new(1, None);
    let t = ObjectType::Contacts;
    let created = store.apply_all(t, vec![Write::Create { properties: props(&[("email", "A@x.io")]) }], API).unwrap();
    assert_eq!(created[0].properties["email"], "a@x.io");
    let err = store.apply_all(t, vec![Write::Create { properties: props(&[("email", "a@X.io")]) }], API).unwrap_err();
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

#[test]
fn stage_writes_follow_the_records_pipeline() {
    let mut store = Store::new(1, None);
    let t = ObjectType::Tickets;
    let create = Write::Create { properties: props(&[("subject", "Printer on fire"), ("hs_pipeline_stage", "2")]) };
    let ticket = store.apply_all(t, vec![create], API).unwrap().remove(0);
    assert_eq!(ticket.properties["hs_pipeline"], "0", "a ticket without a pipeline is in the default one");
    let escalations =
        serde_json::json!({"label": "Escalations", "stages": [{"label": "Escalated"}, {"label": "Waiting"}]});
    let escalations = store.create_pipeline(t, serde_json::from_value(escalations).unwrap(), 0).unwrap();
    let (pipeline, stage) = (escalations["id"].as_str().unwrap(), escalations["stages"][0]["id"].as_str().unwrap());
    for wrong in [props(&[("hs_pipeline_stage", stage)]), props(&[("hs_pipeline", pipeline)])] {
        let err = store.apply_all(t, vec![Write::Update { id: ticket.id, properties: wrong }], API).unwrap_err();
        assert!(err.message().contains("INVALID_OPTION"), "{}", err.message());
    }
    let moved = props(&[("hs_pipeline", pipeline), ("hs_pipeline_stage", stage)]);
    assert!(store.apply_all(t, vec![Write::Update { id: ticket.id, properties: moved }], API).is_ok());
    let in_use = store.archive_stage(t, pipeline, stage, true, 0).unwrap_err();
    assert!(in_use.message().contains("in use by 1 ticket records"), "{}", in_use.message());
    assert!(store.archive_stage(t, pipeline, stage, false, 0).is_ok(), "v3 deletes without the check by default");
}

#[test]
fn contact_merges_make_new_records_that_every_old_id_resolves_to() {
    let mut store = Store::new(1, None);
    let t = ObjectType::Contacts;
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            let create = Write::Create { properties: props(&[("email", &format!("c{i}@x.io"))]) };
            store.apply_all(t, vec![create], API).unwrap()[0].id
        })
        .collect();
    let first = store.merge(t, ids[0], ids[1], API).unwrap();
    let second = store.merge(t, ids[2], first.id, API).unwrap();
    let old_ids = [ids[0], ids[1], ids[2], first.id];
    assert!(!old_ids.contains(&second.id));
    for old in old_ids {
        assert_eq!(store.find(t, &old.to_string(), None).unwrap().unwrap().id, second.id, "{old}");
    }
    let merged_ids = old_ids.map(|id| id.to_string()).join(";");
    assert_eq!(second.properties["hs_merged_object_ids"], merged_ids);
    assert_eq!(second.properties["hs_object_id"], second.id.to_string());
    assert_eq!(second.properties["email"], "c2@x.io", "the primary's values win");
    assert_eq!(store.of(t).objects.len(), 1);
}
